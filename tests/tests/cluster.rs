//! Several nodes (`sealed serve --redis`), as separate `sealed` processes sharing one
//! throwaway `redis-server`: participants connected to different nodes meet in one room
//! hosted by one node; the meeting survives the death of its node (everyone re-joins
//! through a live node, with new keys) and an outage of Redis (running rooms go on, new
//! rooms are refused with `cluster_unavailable` until Redis is back); new rooms spread
//! over the nodes.
//!
//! Each test starts its own Redis and nodes (logs in `target/cluster-logs/<test>/`) and
//! the tests take turns: together they would need more CPU than a small machine has.
//! The `sealed` binary is `SEALED_BIN` or the debug build next to the test executable
//! (`cargo build -p signaling --bin sealed`; `cargo test --workspace` builds it).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client_wasm::Session;
use tests::bot::{AudioSource, BotConfig, BotHandle, BotReport, SessionHook};
use tests::media::check_last_second_is_tone;
use tests::protocol::{ClientMessage, ServerMessage};
use tests::redis_server::RedisServer;
use tests::server_process::SealedProcess;
use tests::signal::{Inbound, SignalConnection};

/// One test at a time: three nodes and three media bots already keep two cores busy.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The log level of the nodes (`RUST_LOG` of the test run, else info).
fn node_log_level() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// `target/debug` (or wherever this test executable's `deps` directory is).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_owned()
}

/// The `sealed` binary: `SEALED_BIN`, else `<target>/<profile>/sealed`. It must have
/// multi-node mode (`--redis`).
fn sealed_bin() -> PathBuf {
    let bin = std::env::var_os("SEALED_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| build_dir().join("sealed"));
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p signaling --bin sealed) or set SEALED_BIN",
        bin.display()
    );
    let help = std::process::Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .unwrap_or_else(|e| panic!("running {} serve --help: {e}", bin.display()));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--redis"),
        "{} has no --redis flag (multi-node mode): rebuild it (cargo build -p signaling --bin sealed)",
        bin.display()
    );
    bin
}

/// A fresh `target/cluster-logs/<test>/`.
fn log_dir(test: &str) -> PathBuf {
    let dir = build_dir()
        .parent()
        .map_or_else(build_dir, Path::to_owned)
        .join("cluster-logs")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// A loopback port free for UDP (media) and TCP (ICE-TCP uses the same number), not in
/// `taken`.
fn free_media_port(taken: &HashSet<u16>) -> u16 {
    for _ in 0..200 {
        let Ok(udp) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = udp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP+TCP loopback port found in 200 tries");
}

/// The first sample of `name` in a Prometheus text exposition, labelled or not.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// True while `pid` runs (a killed, not yet reaped process counts as gone).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// One `sealed` node.
struct Node {
    name: String,
    proc: SealedProcess,
    udp_port: u16,
}

impl Node {
    fn ws_url(&self) -> String {
        self.proc.ws_url()
    }

    /// The first sample of `name` on `/metrics`, with or without labels
    /// (`sealed_cluster_nodes{node="node-a"} 3`).
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.proc.get("/metrics", Duration::from_secs(5)).await?;
        sample(&body, name)
    }

    /// `(sealed_rooms, sealed_cluster_redis_up, sealed_cluster_nodes)`.
    async fn gauges(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let Some((_, body)) = self.proc.get("/metrics", Duration::from_secs(5)).await else {
            return (None, None, None);
        };
        (
            sample(&body, "sealed_rooms"),
            sample(&body, "sealed_cluster_redis_up"),
            sample(&body, "sealed_cluster_nodes"),
        )
    }

    async fn rooms(&self) -> Option<f64> {
        self.metric("sealed_rooms").await
    }

    async fn healthz(&self) -> Option<(u16, String)> {
        self.proc.get("/healthz", Duration::from_secs(3)).await
    }
}

/// Redis and the nodes of one test.
struct Cluster {
    redis: RedisServer,
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts Redis and `n` nodes (node-a, node-b, …) and waits until every node sees
    /// all `n` as live.
    async fn start(test: &str, n: usize) -> Cluster {
        let bin = sealed_bin();
        let dir = log_dir(test);
        let redis = RedisServer::start(dir.join("redis.log"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut nodes = Vec::new();
        let mut taken = HashSet::new();
        for i in 0..n {
            let name = format!("node-{}", char::from(b'a' + i as u8));
            let udp_port = free_media_port(&taken);
            taken.insert(udp_port);
            let args: Vec<String> = [
                "--redis",
                &redis.url(),
                "--udp-port",
                &udp_port.to_string(),
                "--trusted-proxies",
                "127.0.0.1",
                "--node-id",
                &name,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let log = dir.join(format!("{name}.log"));
            let level = node_log_level();
            let proc = SealedProcess::spawn_with_env(
                &bin,
                &args,
                None,
                log.clone(),
                &[("RUST_LOG", &level), ("NO_COLOR", "1")],
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "starting {name} (udp {udp_port}): {e:#}; its log ({}):\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
            eprintln!(
                "{name}: pid {}, http {}, udp {udp_port}, log {}",
                proc.pid,
                proc.addr,
                log.display()
            );
            nodes.push(Node {
                name,
                proc,
                udp_port,
            });
        }
        let cluster = Cluster { redis, nodes, dir };
        cluster.wait_nodes_seen(n, Duration::from_secs(15)).await;
        cluster
    }

    /// Waits until every running node reports `sealed_cluster_nodes` = `n`.
    async fn wait_nodes_seen(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for node in self.nodes.iter().filter(|nd| process_alive(nd.proc.pid)) {
                if node.metric("sealed_cluster_nodes").await != Some(n as f64) {
                    all = false;
                }
            }
            if all {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "not every node saw {n} live nodes within {timeout:?}:\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `sealed_rooms` of every node (None for a dead or silent one).
    async fn rooms(&self) -> Vec<Option<f64>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            out.push(node.rooms().await);
        }
        out
    }

    /// Every node's pid, liveness, gauges, log and its last lines; Redis's state.
    async fn describe(&self) -> String {
        let mut s = format!(
            "redis {} (pid {:?}, answers PING: {}), log {}\n",
            self.redis.url(),
            self.redis.pid(),
            self.redis.ping(Duration::from_millis(500)).await,
            self.redis.log.display()
        );
        for node in &self.nodes {
            let alive = process_alive(node.proc.pid);
            let (rooms, up, seen) = if alive {
                node.gauges().await
            } else {
                (None, None, None)
            };
            s.push_str(&format!(
                "{} pid {} ({}) http {} udp {}: sealed_rooms {rooms:?}, sealed_cluster_redis_up {up:?}, sealed_cluster_nodes {seen:?}; log {}\n  last lines:\n    {}\n",
                node.name,
                node.proc.pid,
                if alive { "alive" } else { "dead" },
                node.proc.addr,
                node.udp_port,
                node.proc.log.display(),
                node.proc.log_tail(12).replace('\n', "\n    ")
            ));
        }
        s.push_str(&format!("all logs: {}\n", self.dir.display()));
        s
    }

    /// Stops every node and Redis, then checks that no node panicked.
    async fn stop(self) {
        let mut panics = Vec::new();
        for node in self.nodes {
            let n = node.proc.log_count("panicked");
            if n > 0 {
                panics.push(format!("{}: {n} in {}", node.name, node.proc.log.display()));
            }
            node.proc.stop().await;
        }
        let mut redis = self.redis;
        redis.stop().await;
        assert!(panics.is_empty(), "nodes panicked: {panics:?}");
    }
}

/// A bot sending `tone` and video through `node`.
fn bot_config(node: &Node, room: &str, name: &str, secret: [u8; 32], tone: f32) -> BotConfig {
    let mut cfg = BotConfig::new(&node.ws_url(), room, name, Some(secret));
    cfg.audio = Some(AudioSource::Tone(tone));
    cfg
}

async fn spawn_bot(cluster: &Cluster, cfg: BotConfig) -> BotHandle {
    match BotHandle::spawn(cfg.clone()).await {
        Ok(b) => b,
        Err(e) => panic!(
            "{} could not join {} through {}: {e}\n{}",
            cfg.name,
            cfg.room,
            cfg.url,
            cluster.describe().await
        ),
    }
}

/// Key material (SFrame keys) a group of bots held, collected at every key change.
#[derive(Clone, Default)]
struct KeyRing(Arc<Mutex<HashSet<Vec<u8>>>>);

impl KeyRing {
    fn hook(&self) -> SessionHook {
        let keys = self.0.clone();
        SessionHook(Arc::new(move |session: &Session| {
            let exported = session.export_secrets_for_tests();
            if let Ok(mut all) = keys.lock() {
                for e in exported.epochs {
                    for s in e.senders {
                        all.insert(s.sframe_key.to_vec());
                    }
                }
            }
        }))
    }

    fn keys(&self) -> HashSet<Vec<u8>> {
        self.0.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

/// (audio frames decrypted, video frames verified) of `r` from `from`.
fn got_from(r: &BotReport, from: u64) -> (u64, u64) {
    r.senders
        .get(&from)
        .map_or((0, 0), |s| (s.audio_frames, s.video_ok))
}

/// One line per bot: what it decrypted from whom, drops, epoch, connection.
fn describe_reports(reports: &[BotReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let from: Vec<String> = r
            .senders
            .iter()
            .map(|(id, st)| {
                format!(
                    "{id}: audio {} video ok {} bad {} failed {}",
                    st.audio_frames, st.video_ok, st.video_bad, st.failed
                )
            })
            .collect();
        s.push_str(&format!(
            "bot {}: sent {} audio {} video ({} held back), received {} frames, decrypted [{}], drops {:?}, epoch {:?}, connection {}\n",
            r.id,
            r.audio_sent,
            r.video_sent,
            r.not_sent_no_key,
            r.frames_received,
            from.join("; "),
            r.drops,
            r.epoch,
            if r.closed_at.is_some() { "closed" } else { "open" }
        ));
    }
    s
}

async fn reports(bots: &[&BotHandle]) -> Vec<BotReport> {
    let mut out = Vec::new();
    for b in bots {
        out.push(b.report().await.expect("bot report"));
    }
    out
}

/// True if every bot decrypted at least `audio` audio and `video` verified video frames
/// from every other bot.
fn all_decrypting(reports: &[BotReport], audio: u64, video: u64) -> bool {
    reports.iter().all(|r| {
        reports.iter().filter(|o| o.id != r.id).all(|o| {
            let (a, v) = got_from(r, o.id);
            a >= audio && v >= video
        })
    })
}

/// Waits until every bot decrypts every other (see [`all_decrypting`]); returns the
/// reports, or fails with what each bot got and the nodes' state.
async fn wait_all_decrypting(
    cluster: &Cluster,
    bots: &[&BotHandle],
    audio: u64,
    video: u64,
    timeout: Duration,
    what: &str,
) -> Vec<BotReport> {
    let deadline = Instant::now() + timeout;
    loop {
        let rs = reports(bots).await;
        if all_decrypting(&rs, audio, video) {
            return rs;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not every bot decrypted {audio} audio and {video} video frames from every other within {timeout:?}:\n{}{}",
                describe_reports(&rs),
                cluster.describe().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A participant without media: joined over the WebSocket, reading (and so answering
/// the server's pings) in the background until dropped.
struct SignalOnly {
    id: u64,
    /// The ids `welcome` listed as already in the room.
    roster: Vec<u64>,
    closed: Arc<AtomicBool>,
    /// The code of the server's close frame, once it closed with one.
    close_code: Arc<Mutex<Option<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SignalOnly {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a signaling-only join went wrong.
#[derive(Debug)]
enum JoinFailure {
    /// The server answered with `error`.
    Error { code: String, message: String },
    /// Anything else (no connection, closed, nothing in time, an unexpected message).
    Other(String),
}

impl std::fmt::Display for JoinFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinFailure::Error { code, message } => write!(f, "error {code}: {message}"),
            JoinFailure::Other(what) => f.write_str(what),
        }
    }
}

/// Connects to `url`, joins `room` and waits up to 10 s for `welcome` or `error`.
async fn join_signal_only(url: &str, room: &str, name: &str) -> Result<SignalOnly, JoinFailure> {
    let mut conn = SignalConnection::connect(url)
        .await
        .map_err(|e| JoinFailure::Other(e.to_string()))?;
    let mut key = vec![4u8; 65];
    key[1..].iter_mut().for_each(|b| *b = rand::random());
    conn.send(tests::signal::Outbound::Json(ClientMessage::join(
        room, name, &key, None,
    )))
    .await
    .map_err(|e| JoinFailure::Other(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, roster) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left).await {
            Ok(Inbound::Message(ServerMessage::Welcome {
                id, participants, ..
            })) => break (id, participants.iter().map(|p| p.id).collect()),
            Ok(Inbound::Message(ServerMessage::Error { code, message })) => {
                return Err(JoinFailure::Error { code, message });
            }
            Ok(Inbound::Unparsed(t)) => {
                return Err(JoinFailure::Other(format!("unparsed reply {t:?}")));
            }
            // Nothing else should come before `welcome`; keep waiting for it.
            Ok(Inbound::Message(_)) => {}
            Err(e) => return Err(JoinFailure::Other(e.to_string())),
        }
    };
    let closed = Arc::new(AtomicBool::new(false));
    let close_code = Arc::new(Mutex::new(None));
    let task = {
        let closed = closed.clone();
        let close_code = close_code.clone();
        tokio::spawn(async move {
            while conn.recv().await.is_ok() {}
            *close_code.lock().unwrap() = conn.close_code();
            closed.store(true, Ordering::Relaxed);
        })
    };
    Ok(SignalOnly {
        id,
        roster,
        closed,
        close_code,
        task,
    })
}

/// A fresh room name.
fn new_room(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Three bots, each connected to a different node, meet in one room: all hear each
/// other's tone and decrypt each other's video; one node hosts the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_one_room() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let cluster = Cluster::start("three_nodes_one_room", 3).await;
    let secret: [u8; 32] = rand::random();
    let room = new_room("three");
    let tones = [440.0f32, 660.0, 1000.0];
    let mut bots = Vec::new();
    for (i, tone) in tones.iter().enumerate() {
        let cfg = bot_config(&cluster.nodes[i], &room, &format!("bot{i}"), secret, *tone);
        bots.push(spawn_bot(&cluster, cfg).await);
    }
    let refs: Vec<&BotHandle> = bots.iter().collect();
    wait_all_decrypting(
        &cluster,
        &refs,
        100,
        30,
        Duration::from_secs(30),
        "three nodes",
    )
    .await;
    // A full second of decoded audio after that.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rs = reports(&refs).await;
    eprintln!("{}", describe_reports(&rs));
    for (i, r) in rs.iter().enumerate() {
        for (j, other) in rs.iter().enumerate().filter(|(j, _)| *j != i) {
            let s = &r.senders[&other.id];
            assert_eq!(s.video_bad, 0, "bot{i}: corrupted video from bot{j}");
            // The last second of decoded audio is bot j's tone, not the others'.
            if let Err(e) = check_last_second_is_tone(&s.pcm, &tones, j) {
                panic!("bot{i} hears bot{j}: {e}");
            }
        }
    }
    let rooms = cluster.rooms().await;
    let hosting = rooms.iter().filter(|r| **r == Some(1.0)).count();
    let idle = rooms.iter().filter(|r| **r == Some(0.0)).count();
    assert!(
        hosting == 1 && idle == 2,
        "sealed_rooms per node {rooms:?}: exactly one node must host the room\n{}",
        cluster.describe().await
    );
    // Media goes straight to the hosting node: the others forwarded none.
    let mut forwarded = Vec::new();
    for node in &cluster.nodes {
        forwarded.push(
            node.metric("sealed_sfu_forwarded_packets_total")
                .await
                .unwrap_or(0.0),
        );
    }
    eprintln!("sealed_sfu_forwarded_packets_total per node: {forwarded:?}");
    for ((node, rooms), packets) in cluster.nodes.iter().zip(&rooms).zip(&forwarded) {
        let hosts = *rooms == Some(1.0);
        assert!(
            if hosts {
                *packets > 1000.0
            } else {
                *packets == 0.0
            },
            "{} (sealed_rooms {rooms:?}) forwarded {packets} media packets; the hosting node must forward all of them, the others none",
            node.name
        );
    }
    for b in bots {
        b.stop().await.expect("bot stops");
    }
    cluster.stop().await;
    eprintln!("three_nodes_one_room took {:.1?}", started.elapsed());
}

/// The owner of a room is SIGKILLed: the nodes proxying its participants close their
/// WebSockets, the participants re-join through the same nodes and meet again on a
/// live node, with new keys, within 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_killed_meeting_resumes_elsewhere() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let cluster = Cluster::start("owner_killed_meeting_resumes_elsewhere", 3).await;
    let secret: [u8; 32] = rand::random();
    let room = new_room("failover");
    let old_keys = KeyRing::default();
    let new_keys = KeyRing::default();
    let configs: Vec<BotConfig> = [440.0f32, 660.0, 1000.0]
        .iter()
        .enumerate()
        .map(|(i, tone)| {
            let mut cfg = bot_config(
                &cluster.nodes[i],
                &room,
                &format!("bot{}", i + 1),
                secret,
                *tone,
            );
            cfg.on_keys = Some(old_keys.hook());
            cfg
        })
        .collect();
    // Bot 1 first, through node A: a tie between empty nodes goes to the receiving one.
    let b1 = spawn_bot(&cluster, configs[0].clone()).await;
    let rooms = cluster.rooms().await;
    assert_eq!(
        rooms,
        vec![Some(1.0), Some(0.0), Some(0.0)],
        "the first join through node-a must place the room on node-a\n{}",
        cluster.describe().await
    );
    let b2 = spawn_bot(&cluster, configs[1].clone()).await;
    let b3 = spawn_bot(&cluster, configs[2].clone()).await;
    wait_all_decrypting(
        &cluster,
        &[&b1, &b2, &b3],
        50,
        20,
        Duration::from_secs(30),
        "before the kill",
    )
    .await;
    assert_eq!(
        cluster.rooms().await,
        vec![Some(1.0), Some(0.0), Some(0.0)],
        "node-a must host the room\n{}",
        cluster.describe().await
    );

    // SIGKILL the owner.
    let pid_a = cluster.nodes[0].proc.pid;
    let killed_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid_a.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -9 {pid_a}: {status}");
    eprintln!("killed node-a (pid {pid_a})");

    // Bots 2 and 3 see their WebSockets (proxied by B and C) closed.
    let close_deadline = killed_at + Duration::from_secs(10);
    for (b, name) in [(&b2, "bot2"), (&b3, "bot3")] {
        loop {
            let r = b.report().await.expect("report");
            if let Some(at) = r.closed_at {
                eprintln!(
                    "{name}: connection closed {:.1?} after the kill",
                    at.saturating_duration_since(killed_at)
                );
                break;
            }
            assert!(
                Instant::now() < close_deadline,
                "{name}'s WebSocket (through {}) was still open 10 s after its room's node died\n{}{}",
                if name == "bot2" { "node-b" } else { "node-c" },
                describe_reports(&[r]),
                cluster.describe().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let old = [
        b1.stop().await.expect("bot1"),
        b2.stop().await.expect("bot2"),
        b3.stop().await.expect("bot3"),
    ];

    // Re-join through the same nodes, retrying every 500 ms.
    let rejoin_deadline = killed_at + Duration::from_secs(20);
    let rejoin = |mut cfg: BotConfig| {
        cfg.on_keys = Some(new_keys.hook());
        async move {
            let mut attempts = 0u32;
            let mut errors: Vec<String> = Vec::new();
            loop {
                attempts += 1;
                match BotHandle::spawn(cfg.clone()).await {
                    Ok(b) => return Ok((b, attempts, errors, Instant::now())),
                    Err(e) => {
                        let text = e.to_string();
                        if !errors.contains(&text) {
                            errors.push(text);
                        }
                    }
                }
                if Instant::now() > rejoin_deadline {
                    return Err((cfg.name.clone(), attempts, errors));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let (n2, n3) = tokio::join!(rejoin(configs[1].clone()), rejoin(configs[2].clone()));
    let mut new_bots = Vec::new();
    let mut rejoin_errors: Vec<String> = Vec::new();
    for r in [n2, n3] {
        match r {
            Ok((b, attempts, errors, at)) => {
                eprintln!(
                    "re-joined as {} after {attempts} attempts, {:.1?} after the kill; errors on the way: {errors:?}",
                    b.id,
                    at - killed_at
                );
                rejoin_errors.extend(errors);
                new_bots.push(b);
            }
            Err((name, attempts, errors)) => panic!(
                "{name} could not re-join within 20 s of the kill ({attempts} attempts); errors: {errors:?}\n{}",
                cluster.describe().await
            ),
        }
    }
    let refs: Vec<&BotHandle> = new_bots.iter().collect();
    let rs = wait_all_decrypting(
        &cluster,
        &refs,
        5,
        3,
        Duration::from_secs(30).saturating_sub(killed_at.elapsed()),
        "after the kill",
    )
    .await;
    let failover = killed_at.elapsed();
    println!("failover: {:.1} s", failover.as_secs_f64());
    eprintln!("{}", describe_reports(&rs));
    assert!(
        failover <= Duration::from_secs(15),
        "kill -> both decrypting took {failover:.1?} (> 15 s)\n{}",
        cluster.describe().await
    );
    // Errors while node-a's registration had not expired yet: cluster_unavailable, or a
    // connection that failed.
    let unexpected: Vec<&String> = rejoin_errors
        .iter()
        .filter(|e| {
            !(e.contains("cluster_unavailable")
                || e.contains("cannot reach")
                || e.contains("closed")
                || e.contains("websocket"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected errors while re-joining: {unexpected:?}"
    );

    // New keys: the new participants installed keys and epochs after the kill, and none
    // of their SFrame keys is one the old participants held.
    for r in &rs {
        assert!(
            r.epoch_changes.iter().any(|(t, _)| *t > killed_at),
            "bot {} has no sending epoch from after the kill",
            r.id
        );
        assert!(
            r.keys_installed.iter().any(|(t, _)| *t > killed_at),
            "bot {} installed no key after the kill",
            r.id
        );
    }
    let (old_set, new_set) = (old_keys.keys(), new_keys.keys());
    assert!(
        !old_set.is_empty() && !new_set.is_empty(),
        "{} old and {} new SFrame keys collected",
        old_set.len(),
        new_set.len()
    );
    let reused = old_set.intersection(&new_set).count();
    assert_eq!(
        reused, 0,
        "{reused} SFrame keys of the old meeting are in use again after the kill"
    );
    eprintln!(
        "keys: {} SFrame keys before the kill, {} after, none shared; old ids {:?}",
        old_set.len(),
        new_set.len(),
        old.iter().map(|r| r.id).collect::<Vec<_>>()
    );

    // The room lives on B or C now.
    assert!(
        !process_alive(pid_a),
        "node-a (pid {pid_a}) is still running"
    );
    let rooms = [
        cluster.nodes[1].rooms().await,
        cluster.nodes[2].rooms().await,
    ];
    assert!(
        rooms.contains(&Some(1.0)) && rooms.contains(&Some(0.0)),
        "sealed_rooms of node-b and node-c: {rooms:?}; one of them must host the room\n{}",
        cluster.describe().await
    );
    for b in new_bots {
        b.stop().await.expect("bot stops");
    }
    cluster.stop().await;
    eprintln!(
        "owner_killed_meeting_resumes_elsewhere took {:.1?}",
        started.elapsed()
    );
}

/// Redis goes away and comes back: the running meeting never notices, new rooms are
/// refused with `cluster_unavailable` meanwhile and the nodes say so in `/metrics` and
/// `/healthz`; once Redis is back new rooms work again without restarting a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_keeps_meetings_and_recovers() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut cluster = Cluster::start("redis_outage_keeps_meetings_and_recovers", 2).await;
    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.proc.pid).collect();
    let secret: [u8; 32] = rand::random();
    let room = new_room("outage");
    let b1 = spawn_bot(
        &cluster,
        bot_config(&cluster.nodes[0], &room, "bot1", secret, 440.0),
    )
    .await;
    let b2 = spawn_bot(
        &cluster,
        bot_config(&cluster.nodes[1], &room, "bot2", secret, 660.0),
    )
    .await;
    let bots = [&b1, &b2];
    wait_all_decrypting(
        &cluster,
        &bots,
        50,
        20,
        Duration::from_secs(30),
        "before the outage",
    )
    .await;
    for node in &cluster.nodes {
        let (rooms, up, seen) = node.gauges().await;
        assert_eq!(
            (up, seen),
            (Some(1.0), Some(2.0)),
            "{} before the outage: sealed_cluster_redis_up {up:?}, sealed_cluster_nodes {seen:?} (rooms {rooms:?})",
            node.name
        );
        let health = node.healthz().await;
        assert_eq!(
            health.as_ref().map(|h| h.0),
            Some(200),
            "{} /healthz before the outage: {health:?}",
            node.name
        );
    }

    // Redis goes away.
    cluster.redis.stop().await;
    let stopped_at = Instant::now();
    eprintln!("redis stopped");
    let mut before = reports(&bots).await;

    // New rooms are refused, through either node.
    for node in &cluster.nodes {
        let room = new_room("during-outage");
        match join_signal_only(&node.ws_url(), &room, "newcomer").await {
            Err(JoinFailure::Error { code, .. }) if code == "cluster_unavailable" => {}
            Ok(p) => panic!(
                "{}: joining new room {room} while Redis is down was welcomed (id {}); expected error cluster_unavailable\n{}",
                node.name,
                p.id,
                cluster.describe().await
            ),
            Err(other) => panic!(
                "{}: joining new room {room} while Redis is down: {other}; expected error cluster_unavailable\n{}",
                node.name,
                cluster.describe().await
            ),
        }
    }
    // The nodes say so.
    let deadline = stopped_at + Duration::from_secs(10);
    for node in &cluster.nodes {
        loop {
            let (_, up, _) = node.gauges().await;
            let health = node.healthz().await;
            let health_says_redis = health
                .as_ref()
                .is_some_and(|(s, b)| *s == 503 && b.to_lowercase().contains("redis"));
            if up == Some(0.0) && health_says_redis {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} 10 s into the outage: sealed_cluster_redis_up {up:?}, /healthz {health:?} (want 0 and 503 mentioning redis)\n{}",
                node.name,
                cluster.describe().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "both nodes report the outage {:.1?} after it began",
        stopped_at.elapsed()
    );
    // The meeting goes on: more frames decrypted every second, both ways, for 3 s.
    for second in 1..=3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = reports(&bots).await;
        for (i, r) in now.iter().enumerate() {
            let other = &now[1 - i];
            let (a0, v0) = got_from(&before[i], other.id);
            let (a1, v1) = got_from(r, other.id);
            assert!(
                a1 >= a0 + 20 && v1 > v0,
                "second {second} of the outage: bot{} decrypted {} audio and {} video frames of bot{} (want >= 20 and > 0)\n{}{}",
                i + 1,
                a1 - a0,
                v1 - v0,
                2 - i,
                describe_reports(&now),
                cluster.describe().await
            );
        }
        before = now;
    }

    // Redis comes back on the same port.
    cluster
        .redis
        .restart()
        .await
        .unwrap_or_else(|e| panic!("restarting redis: {e:#}"));
    let restarted_at = Instant::now();
    eprintln!("redis restarted on port {}", cluster.redis.port());
    let deadline = restarted_at + Duration::from_secs(10);
    let mut newcomers = Vec::new();
    for node in &cluster.nodes {
        loop {
            let room = new_room("after-outage");
            match join_signal_only(&node.ws_url(), &room, "newcomer").await {
                Ok(p) => {
                    eprintln!(
                        "{}: new room {room} welcomed {:.1?} after redis came back",
                        node.name,
                        restarted_at.elapsed()
                    );
                    newcomers.push(p);
                    break;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{}: no new room could be joined within 10 s of Redis coming back; last: {e}\n{}",
                    node.name,
                    cluster.describe().await
                ),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for node in &cluster.nodes {
        loop {
            let (_, up, seen) = node.gauges().await;
            let health = node.healthz().await;
            if up == Some(1.0) && health.as_ref().is_some_and(|(s, _)| *s == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} 10 s after Redis came back: sealed_cluster_redis_up {up:?}, sealed_cluster_nodes {seen:?}, /healthz {health:?} (want 1 and 200)\n{}",
                node.name,
                cluster.describe().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "both nodes healthy again {:.1?} after redis came back",
        restarted_at.elapsed()
    );
    // The original meeting still decrypts, and nobody was restarted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = reports(&bots).await;
    for (i, r) in now.iter().enumerate() {
        let other = &now[1 - i];
        let (a0, v0) = got_from(&before[i], other.id);
        let (a1, v1) = got_from(r, other.id);
        assert!(
            a1 > a0 + 20 && v1 > v0 && r.closed_at.is_none(),
            "after the outage: bot{} decrypted {} more audio and {} more video frames of bot{}\n{}{}",
            i + 1,
            a1 - a0,
            v1 - v0,
            2 - i,
            describe_reports(&now),
            cluster.describe().await
        );
    }
    for p in &newcomers {
        assert!(
            !p.closed.load(Ordering::Relaxed),
            "newcomer {} lost its connection",
            p.id
        );
    }
    for (node, pid) in cluster.nodes.iter_mut().zip(&pids) {
        assert_eq!(node.proc.pid, *pid);
        assert!(
            node.proc.alive(),
            "{} (pid {pid}) is no longer running",
            node.name
        );
    }
    eprintln!("{}", describe_reports(&now));
    // The running room was claimed again in the emptied Redis by its node's heartbeat:
    // a newcomer to it through the other node lands in the same meeting.
    let newcomer = join_signal_only(&cluster.nodes[1].ws_url(), &room, "late")
        .await
        .unwrap_or_else(|e| {
            panic!("joining the original room {room} through node-b after the outage: {e}")
        });
    let mut expected = vec![b1.id, b2.id];
    expected.sort_unstable();
    let mut roster = newcomer.roster.clone();
    roster.sort_unstable();
    assert_eq!(
        roster,
        expected,
        "a newcomer to {room} through node-b after the outage found {roster:?}, not the running meeting's {expected:?}; sealed_rooms {:?}\n{}",
        cluster.rooms().await,
        cluster.describe().await
    );
    drop(newcomer);
    drop(newcomers);
    b1.stop().await.expect("bot1");
    b2.stop().await.expect("bot2");
    cluster.stop().await;
    eprintln!(
        "redis_outage_keeps_meetings_and_recovers took {:.1?}",
        started.elapsed()
    );
}

/// Thirty rooms created one after another, each through node `i % 3`: the nodes end up
/// with 10 ± 2 rooms each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_spreads_rooms() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let cluster = Cluster::start("placement_spreads_rooms", 3).await;
    let mut participants = Vec::new();
    let mut rooms_joined = BTreeSet::new();
    for i in 0..30 {
        let node = &cluster.nodes[i % 3];
        let room = new_room(&format!("spread{i}"));
        match join_signal_only(&node.ws_url(), &room, &format!("p{i}")).await {
            Ok(p) => participants.push(p),
            Err(e) => panic!(
                "room {i} ({room}) through {}: {e}\n{}",
                node.name,
                cluster.describe().await
            ),
        }
        rooms_joined.insert(room);
    }
    assert_eq!(rooms_joined.len(), 30);
    let deadline = Instant::now() + Duration::from_secs(5);
    let rooms = loop {
        let rooms = cluster.rooms().await;
        let total: f64 = rooms.iter().map(|r| r.unwrap_or(0.0)).sum();
        if total == 30.0 || Instant::now() > deadline {
            break rooms;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("sealed_rooms per node: {rooms:?}");
    let total: f64 = rooms.iter().map(|r| r.unwrap_or(0.0)).sum();
    assert_eq!(
        total,
        30.0,
        "sealed_rooms per node {rooms:?} do not add up to the 30 rooms\n{}",
        cluster.describe().await
    );
    for (node, r) in cluster.nodes.iter().zip(&rooms) {
        let n = r.unwrap_or(-1.0);
        assert!(
            (8.0..=12.0).contains(&n),
            "{} hosts {n} of 30 rooms (want 8..=12); per node {rooms:?}\n{}",
            node.name,
            cluster.describe().await
        );
    }
    let closed: Vec<u64> = participants
        .iter()
        .filter(|p| p.closed.load(Ordering::Relaxed))
        .map(|p| p.id)
        .collect();
    assert!(
        closed.is_empty(),
        "participants disconnected: {closed:?}\n{}",
        cluster.describe().await
    );
    drop(participants);
    cluster.stop().await;
    eprintln!("placement_spreads_rooms took {:.1?}", started.elapsed());
}

/// After Redis lost its data, a join placed a room on another node while this one still
/// hosted it: at its next heartbeat the node that lost the claim closes the room with
/// 1012, and its participants, joining again through it, meet in the claimed node's room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_whose_claim_another_node_holds_is_closed_and_reunited_there() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start("claim_conflict", 2).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let room = new_room("conflict");
    let claim = format!("{{sealed}}:room:{room}");
    let first = join_signal_only(&a.ws_url(), &room, "first")
        .await
        .unwrap_or_else(|e| panic!("join through {}: {e}", a.name));
    assert_eq!(
        cluster
            .redis
            .command(&["GET", &claim])
            .await
            .unwrap()
            .as_deref(),
        Some(a.name.as_str()),
        "the receiving node takes a new room on a tie"
    );
    // What a join through node-b right after a Redis restart would have left.
    cluster
        .redis
        .command(&["SET", &claim, &b.name, "PX", "10000"])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !first.closed.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        first.closed.load(Ordering::Relaxed),
        "{} kept a room whose claim {} holds\n{}",
        a.name,
        b.name,
        cluster.describe().await
    );
    assert_eq!(
        *first.close_code.lock().unwrap(),
        Some(1012),
        "service restart: reconnect"
    );
    assert_eq!(
        a.metric("sealed_cluster_claim_conflicts_total").await,
        Some(1.0)
    );

    let again = join_signal_only(&a.ws_url(), &room, "first again")
        .await
        .unwrap_or_else(|e| panic!("re-join through {}: {e}", a.name));
    let second = join_signal_only(&b.ws_url(), &room, "second")
        .await
        .unwrap_or_else(|e| panic!("join through {}: {e}", b.name));
    assert_eq!(second.roster, vec![again.id], "one room, on {}", b.name);
    let deadline = Instant::now() + Duration::from_secs(5);
    let rooms = loop {
        let rooms = cluster.rooms().await;
        if rooms == [Some(0.0), Some(1.0)] || Instant::now() > deadline {
            break rooms;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        rooms,
        [Some(0.0), Some(1.0)],
        "only {} hosts the room\n{}",
        b.name,
        cluster.describe().await
    );
    assert!(!again.closed.load(Ordering::Relaxed) && !second.closed.load(Ordering::Relaxed));
    drop((first, again, second));
    cluster.stop().await;
}
