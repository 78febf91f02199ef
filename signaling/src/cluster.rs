//! Multi-node mode: nodes that share a Redis, each room on exactly one of them.
//!
//! Started with `--redis`; without it none of this exists and the server is one node
//! with no external service. The model is LiveKit's: Redis holds who is alive and who
//! owns which room, nothing else. No key, secret or E2EE payload ever goes there (the
//! server holds none), and no media crosses between nodes.
//!
//! **Keys** (all under the hash tag `{sealed}`, so the scripts below touch a single
//! slot and would also run on a Redis Cluster):
//!
//! | key                      | value                               | lifetime              |
//! |--------------------------|-------------------------------------|-----------------------|
//! | `{sealed}:nodes`         | set of node ids ever seen           | pruned of dead ids    |
//! | `{sealed}:node:<id>`     | [`NodeInfo`] as JSON                | [`NODE_TTL`], renewed every [`HEARTBEAT`] |
//! | `{sealed}:load:<id>`     | rooms the node hosts (+ placements since) | [`NODE_TTL`]    |
//! | `{sealed}:room:<room>`   | owner node id                       | [`CLAIM_TTL`], renewed every [`HEARTBEAT`] |
//!
//! A node is alive while its `node` key exists. **Placement** ([`Cluster::route`]) is
//! one Lua script, so two nodes placing rooms at the same time cannot both win: keep a
//! live owner; otherwise claim the room for the live node with the fewest rooms (ties
//! to the node that received the join) and count the placement in its load at once,
//! so rooms created in a burst spread before the next heartbeat. A node whose owner
//! died takes the room over as soon as the dead node's registration has expired, at
//! most [`NODE_TTL`] after its last heartbeat; an abandoned claim expires by itself
//! after [`CLAIM_TTL`].
//!
//! **Heartbeat** ([`Cluster::heartbeat`]): every [`HEARTBEAT`] the node rewrites its
//! registration and load, renews the claims of the rooms it hosts (re-claiming any
//! that vanished, e.g. after Redis restarted empty) and releases the claims of rooms
//! that have emptied.
//!
//! **Redis unreachable**: every call here fails within [`REDIS_TIMEOUT`]; rooms this
//! node already hosts keep running and take new participants (that needs no Redis),
//! a join that needs placement gets `cluster_unavailable`, `/healthz` says so, and the
//! connection manager reconnects by itself when Redis is back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

/// How often a node renews its registration and its room claims.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How long a room claim lives without renewal (the issue's bound: ≤ 10 s).
pub const CLAIM_TTL: Duration = Duration::from_secs(10);
/// Longest any single Redis call may take before it counts as failed.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// A claim this node made is kept this long even if no participant has arrived yet
/// (the join that placed it is still on its way).
const CLAIM_GRACE: Duration = Duration::from_secs(3);

/// Multi-node settings (`--redis`, `--node-url`, `--node-id`).
#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub redis_url: String,
    /// How other nodes reach this node's HTTP/WebSocket listener (`http://host:port`);
    /// `None`: `http://<listen address>`.
    pub node_url: Option<String>,
    /// This node's id in the registry; `None`: random at start.
    pub node_id: Option<String>,
}

impl std::fmt::Debug for ClusterConfig {
    /// The Redis URL's password (`redis://user:PASSWORD@host`) is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &redact_password(&self.redis_url))
            .field("node_url", &self.node_url)
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:***@{host}")
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL could not be parsed.
    #[error("--redis: {0}")]
    BadUrl(String),
    /// The node URL is not `http://host:port`.
    #[error(
        "--node-url must be http://HOST:PORT (nodes talk plain HTTP on a private network), not {0:?}"
    )]
    BadNodeUrl(String),
    /// Redis refused or failed the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {REDIS_TIMEOUT:?}")]
    Timeout,
    /// No live node is registered (this one's registration has not reached Redis yet).
    #[error("no live node is registered yet")]
    NoLiveNode,
    /// The owner's registration could not be read.
    #[error("the registration of node {0} is unreadable")]
    BadRegistration(String),
}

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Where other nodes reach its WebSocket (`http://host:port`).
    pub url: String,
    /// Its media addresses (what its ICE candidates name).
    pub media: Vec<String>,
    /// Rooms it hosts.
    pub rooms: usize,
    /// Participants in them.
    pub participants: usize,
    /// Its CPU use over the last heartbeat, in percent of one core.
    pub cpu_percent: f32,
    /// Its version.
    pub version: String,
}

/// Where a join goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This node hosts the room.
    Local,
    /// Another node does: proxy the client there.
    Remote {
        /// Its id.
        node: String,
        /// Its `http://host:port`.
        url: String,
    },
}

/// What claiming a room for a routed join found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutedClaim {
    /// The room is now (or was already) claimed for this node.
    Claimed,
    /// Another live node, with this id, holds the claim.
    HeldBy(String),
}

/// This node's membership of the cluster.
pub struct Cluster {
    id: String,
    url: String,
    media: Vec<String>,
    redis: ConnectionManager,
    scripts: Scripts,
    /// Whether the last Redis call succeeded.
    healthy: AtomicBool,
    /// Live nodes seen at the last heartbeat (this one included).
    live_nodes: AtomicUsize,
    /// Rooms this node claimed for itself, and when (for [`CLAIM_GRACE`]).
    claimed: Mutex<HashMap<String, Instant>>,
    /// Clients proxied to other nodes, now and in total.
    proxied_open: AtomicUsize,
    proxied_total: AtomicU64,
    /// Claims found taken by another live node at renewal.
    conflicts: AtomicU64,
    cpu: Mutex<CpuSampler>,
}

impl Cluster {
    /// Joins the cluster at `config.redis_url` as a node reached at `config.node_url`
    /// (default `http://{listen}`). Does not wait for Redis: a node started while
    /// Redis is down comes up and registers once it is back.
    pub fn new(
        config: &ClusterConfig,
        listen: SocketAddr,
        media: &[SocketAddr],
    ) -> Result<Cluster, ClusterError> {
        let url = match &config.node_url {
            Some(url) => validate_node_url(url)?,
            None => format!("http://{listen}"),
        };
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| ClusterError::BadUrl(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let redis = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        let id = config.node_id.clone().unwrap_or_else(random_node_id);
        Ok(Cluster {
            id,
            url,
            media: media.iter().map(ToString::to_string).collect(),
            redis,
            scripts: Scripts::new(),
            healthy: AtomicBool::new(false),
            live_nodes: AtomicUsize::new(0),
            claimed: Mutex::new(HashMap::new()),
            proxied_open: AtomicUsize::new(0),
            proxied_total: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            cpu: Mutex::new(CpuSampler::default()),
        })
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The IP address in this node's `--node-url`, if it names one (not a host name):
    /// where other nodes reach it, so the nodes' network.
    pub fn url_ip(&self) -> Option<std::net::IpAddr> {
        url_ip(&self.url)
    }

    /// Whether the last Redis call succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Where a join of `room` (not hosted here) goes: placed by the script described
    /// in the module docs.
    pub async fn route(&self, room: &str) -> Result<Route, ClusterError> {
        let mut invocation = self.scripts.place.key(room_key(room));
        invocation
            .key(NODES_KEY)
            .arg(&self.id)
            .arg(millis(CLAIM_TTL))
            .arg(NODE_PREFIX)
            .arg(LOAD_PREFIX);
        let mut redis = self.redis.clone();
        let placed: Option<(String, Option<String>)> =
            self.call(invocation.invoke_async(&mut redis)).await?;
        let Some((owner, info)) = placed else {
            return Err(ClusterError::NoLiveNode);
        };
        if owner == self.id {
            self.note_claimed(room);
            return Ok(Route::Local);
        }
        let info: NodeInfo = info
            .and_then(|json| serde_json::from_str(&json).ok())
            .ok_or_else(|| ClusterError::BadRegistration(owner.clone()))?;
        Ok(Route::Remote {
            node: owner,
            url: info.url,
        })
    }

    /// For a join another node routed here: claims `room` for this node unless a live
    /// node other than this one owns it (then the caller refuses the join rather than
    /// route it a second time).
    pub async fn claim_routed(&self, room: &str) -> Result<RoutedClaim, ClusterError> {
        let mut invocation = self.scripts.claim.key(room_key(room));
        invocation
            .arg(&self.id)
            .arg(millis(CLAIM_TTL))
            .arg(NODE_PREFIX);
        let mut redis = self.redis.clone();
        let owner: String = self.call(invocation.invoke_async(&mut redis)).await?;
        if owner == self.id {
            self.note_claimed(room);
            Ok(RoutedClaim::Claimed)
        } else {
            Ok(RoutedClaim::HeldBy(owner))
        }
    }

    /// One heartbeat: registration, load, claims of the `rooms` hosted here (renewed,
    /// or re-claimed if gone), claims of emptied rooms released, dead nodes pruned.
    /// Returns the rooms whose claim another live node holds: the caller closes them
    /// here, so that their participants reconnect and meet on that node.
    pub async fn heartbeat(
        &self,
        rooms: &[String],
        participants: usize,
    ) -> Result<Vec<String>, ClusterError> {
        let info = NodeInfo {
            id: self.id.clone(),
            url: self.url.clone(),
            media: self.media.clone(),
            rooms: rooms.len(),
            participants,
            cpu_percent: self.cpu.lock().map(|mut c| c.sample()).unwrap_or(0.0),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let json = serde_json::to_string(&info).unwrap_or_default();
        let mut redis = self.redis.clone();
        let mut register = self.scripts.register.key(node_key(&self.id));
        register
            .key(load_key(&self.id))
            .key(NODES_KEY)
            .arg(&self.id)
            .arg(json)
            .arg(millis(NODE_TTL))
            .arg(rooms.len())
            .arg(NODE_PREFIX);
        let live: usize = self.call(register.invoke_async(&mut redis)).await?;
        self.live_nodes.store(live, Ordering::Relaxed);

        let mut lost = Vec::new();
        if !rooms.is_empty() {
            let mut renew = self.scripts.renew.prepare_invoke();
            for room in rooms {
                renew.key(room_key(room));
            }
            renew.arg(&self.id).arg(millis(CLAIM_TTL)).arg(NODE_PREFIX);
            let keys: Vec<String> = self.call(renew.invoke_async(&mut redis)).await?;
            for key in keys {
                let room = key.strip_prefix(ROOM_PREFIX).unwrap_or(&key).to_owned();
                self.conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%room, "another live node claims a room this node hosts; closing it here");
                lost.push(room);
            }
        }

        let stale = self.stale_claims(rooms);
        if !stale.is_empty() {
            self.release(&stale).await?;
            tracing::debug!(
                released = stale.len(),
                "released the claims of emptied rooms"
            );
        }
        Ok(lost)
    }

    /// Deletes the claims of `rooms` that this node holds (one script call).
    async fn release(&self, rooms: &[String]) -> Result<(), ClusterError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut release = self.scripts.release.prepare_invoke();
        for room in rooms {
            release.key(room_key(room));
        }
        release.arg(&self.id);
        let mut redis = self.redis.clone();
        let _: usize = self.call(release.invoke_async(&mut redis)).await?;
        Ok(())
    }

    /// Leaves the cluster on a graceful shutdown: releases every claim and removes the
    /// registration, so that the rooms' participants are placed elsewhere at once.
    pub async fn deregister(&self) -> Result<(), ClusterError> {
        let rooms: Vec<String> = self
            .claimed
            .lock()
            .map(|mut c| c.drain().map(|(room, _)| room).collect())
            .unwrap_or_default();
        self.release(&rooms).await?;
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.del(node_key(&self.id))
            .del(load_key(&self.id))
            .srem(NODES_KEY, &self.id);
        let _: () = self.call(pipe.query_async(&mut redis)).await?;
        Ok(())
    }

    /// A proxied client started (the guard ends it).
    pub fn proxied(&self) -> ProxyGuard<'_> {
        self.proxied_open.fetch_add(1, Ordering::Relaxed);
        self.proxied_total.fetch_add(1, Ordering::Relaxed);
        ProxyGuard(self)
    }

    /// Appends the node-level series to `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let series: [(&str, &str, &str, u64); 5] = [
            (
                "sealed_cluster_redis_up",
                "gauge",
                "1 if the last Redis call succeeded, else 0.",
                u64::from(self.healthy()),
            ),
            (
                "sealed_cluster_nodes",
                "gauge",
                "Live nodes seen at the last heartbeat, this one included.",
                self.live_nodes.load(Ordering::Relaxed) as u64,
            ),
            (
                "sealed_cluster_proxied_connections",
                "gauge",
                "Clients of this node proxied to the node that hosts their room.",
                self.proxied_open.load(Ordering::Relaxed) as u64,
            ),
            (
                "sealed_cluster_proxied_connections_total",
                "counter",
                "Clients proxied to another node since start.",
                self.proxied_total.load(Ordering::Relaxed),
            ),
            (
                "sealed_cluster_claim_conflicts_total",
                "counter",
                "Heartbeats that found a room hosted here claimed by another live node.",
                self.conflicts.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{}\"}} {value}\n",
                self.id
            );
        }
    }

    /// Runs `call` with [`REDIS_TIMEOUT`] and records Redis health.
    async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let result = match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ClusterError::Redis(e)),
            Err(_) => Err(ClusterError::Timeout),
        };
        let up = result.is_ok();
        if self.healthy.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("redis reachable");
            } else if let Err(e) = &result {
                tracing::warn!(error = %e, "redis unreachable; rooms hosted here keep running, joins needing placement are refused");
            }
        }
        result
    }

    fn note_claimed(&self, room: &str) {
        if let Ok(mut claimed) = self.claimed.lock() {
            claimed.insert(room.to_owned(), Instant::now());
        }
    }

    /// Marks the hosted `rooms` as claimed and returns the claimed rooms that are no
    /// longer hosted (past [`CLAIM_GRACE`]), forgetting them.
    fn stale_claims(&self, rooms: &[String]) -> Vec<String> {
        let Ok(mut claimed) = self.claimed.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        for room in rooms {
            claimed.entry(room.clone()).or_insert(now);
        }
        let hosted: std::collections::HashSet<&String> = rooms.iter().collect();
        let stale: Vec<String> = claimed
            .iter()
            .filter(|(room, at)| !hosted.contains(room) && now.duration_since(**at) >= CLAIM_GRACE)
            .map(|(room, _)| room.clone())
            .collect();
        for room in &stale {
            claimed.remove(room);
        }
        stale
    }
}

/// Counts a proxied client while it lives.
pub struct ProxyGuard<'a>(&'a Cluster);

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        self.0.proxied_open.fetch_sub(1, Ordering::Relaxed);
    }
}

const NODES_KEY: &str = "{sealed}:nodes";
const NODE_PREFIX: &str = "{sealed}:node:";
const LOAD_PREFIX: &str = "{sealed}:load:";
const ROOM_PREFIX: &str = "{sealed}:room:";

fn node_key(id: &str) -> String {
    format!("{NODE_PREFIX}{id}")
}

fn load_key(id: &str) -> String {
    format!("{LOAD_PREFIX}{id}")
}

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The IP address `url` names as its host; `None` for a host name or an unspecified
/// address (a node listening on `0.0.0.0` without `--node-url`).
fn url_ip(url: &str) -> Option<std::net::IpAddr> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let ip: std::net::IpAddr = uri.host()?.trim_matches(['[', ']']).parse().ok()?;
    (!ip.is_unspecified()).then_some(ip)
}

/// `http://host:port` with nothing after it (a trailing `/` is dropped).
fn validate_node_url(url: &str) -> Result<String, ClusterError> {
    let bad = || ClusterError::BadNodeUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        return Err(bad());
    }
    Ok(format!("http://{authority}"))
}

/// 16 random hex digits.
fn random_node_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

/// The Lua scripts; `redis::Script` loads each once (EVALSHA, EVAL on a miss).
struct Scripts {
    place: redis::Script,
    claim: redis::Script,
    register: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            place: redis::Script::new(PLACE),
            claim: redis::Script::new(CLAIM),
            register: redis::Script::new(REGISTER),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        }
    }
}

/// KEYS: room, nodes set. ARGV: receiving node, claim ttl ms, node prefix, load prefix.
/// Returns `{owner, owner's registration}`, or nil when no node is alive.
const PLACE: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner then
  local info = redis.call('GET', ARGV[3] .. owner)
  if info then return {owner, info} end
end
local best, best_load, best_info = nil, nil, nil
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local info = redis.call('GET', ARGV[3] .. id)
  if info then
    local load = tonumber(redis.call('GET', ARGV[4] .. id) or '0') or 0
    if best == nil or load < best_load or (load == best_load and id == ARGV[1]) then
      best, best_load, best_info = id, load, info
    end
  else
    redis.call('SREM', KEYS[2], id)
  end
end
if best == nil then return nil end
redis.call('SET', KEYS[1], best, 'PX', ARGV[2])
redis.call('INCR', ARGV[4] .. best)
return {best, best_info}
";

/// KEYS: room. ARGV: this node, claim ttl ms, node prefix. Claims the room unless a
/// live other node owns it; returns the owner.
const CLAIM: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

/// KEYS: node, load, nodes set. ARGV: id, registration, node ttl ms, rooms hosted,
/// node prefix. Returns the number of live nodes.
const REGISTER: &str = r"
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
local live = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('EXISTS', ARGV[5] .. id) == 1 then
    live = live + 1
  else
    redis.call('SREM', KEYS[3], id)
  end
end
return live
";

/// KEYS: rooms hosted here. ARGV: this node, claim ttl ms, node prefix. Renews our
/// claims, re-claims vanished ones and takes over those of dead nodes; returns the keys
/// a live other node holds.
const RENEW: &str = r"
local lost = {}
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif (not owner) or redis.call('EXISTS', ARGV[3] .. owner) == 0 then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
";

/// KEYS: rooms. ARGV: this node. Deletes the claims this node holds; returns how many.
const RELEASE: &str = r"
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
";

/// CPU use of this process between two samples, from `/proc/self/stat`.
#[derive(Default)]
struct CpuSampler {
    last: Option<(Instant, u64)>,
}

impl CpuSampler {
    /// Percent of one core since the previous sample (0 at the first, or off Linux).
    fn sample(&mut self) -> f32 {
        let Some(ticks) = process_cpu_ticks() else {
            return 0.0;
        };
        let now = Instant::now();
        let percent = match self.last {
            Some((then, before)) => {
                let wall = now.duration_since(then).as_secs_f32();
                // The kernel reports in USER_HZ, 100 per second on Linux.
                let cpu = ticks.saturating_sub(before) as f32 / 100.0;
                if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        percent
    }
}

/// utime + stime of this process, in clock ticks.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_must_be_plain_http_host_and_port() {
        assert_eq!(
            validate_node_url("http://10.0.0.5:8080/").unwrap(),
            "http://10.0.0.5:8080"
        );
        for bad in [
            "https://10.0.0.5:8080",
            "http://10.0.0.5",
            "http://host:1/ws",
            "10.0.0.5:8080",
            "http://",
        ] {
            assert!(validate_node_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn node_url_ip_is_read_only_from_addresses() {
        assert_eq!(url_ip("http://10.0.0.5:8080"), "10.0.0.5".parse().ok());
        assert_eq!(url_ip("http://[fd00::5]:8080"), "fd00::5".parse().ok());
        assert_eq!(url_ip("http://node-a.internal:8080"), None);
        assert_eq!(url_ip("http://0.0.0.0:8080"), None);
    }

    #[test]
    fn debug_output_hides_the_redis_password() {
        let config = ClusterConfig {
            redis_url: "redis://:hunter2@10.0.0.5:6379/0".into(),
            node_url: None,
            node_id: None,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("10.0.0.5:6379"), "{shown}");
        assert_eq!(redact_password("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn keys_share_one_hash_tag() {
        for key in [
            room_key("r"),
            node_key("n"),
            load_key("n"),
            NODES_KEY.to_owned(),
        ] {
            assert!(key.starts_with("{sealed}:"), "{key}");
        }
    }

    #[tokio::test]
    async fn stale_claims_wait_out_the_grace_and_spare_hosted_rooms() {
        let cluster = Cluster::new(
            &ClusterConfig {
                redis_url: "redis://127.0.0.1:1".into(),
                node_url: None,
                node_id: Some("n1".into()),
            },
            "127.0.0.1:8080".parse().unwrap(),
            &[],
        )
        .unwrap();
        cluster.note_claimed("fresh");
        if let Ok(mut c) = cluster.claimed.lock() {
            c.insert("old".into(), Instant::now() - CLAIM_GRACE);
            c.insert("hosted".into(), Instant::now() - CLAIM_GRACE);
        }
        let stale = cluster.stale_claims(&["hosted".to_owned()]);
        assert_eq!(stale, vec!["old".to_owned()]);
        let left: Vec<String> = {
            let mut v: Vec<String> = cluster.claimed.lock().unwrap().keys().cloned().collect();
            v.sort();
            v
        };
        assert_eq!(left, vec!["fresh".to_owned(), "hosted".to_owned()]);
    }

    #[test]
    fn cpu_ticks_are_readable_here() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_ticks().is_some());
        }
    }
}
