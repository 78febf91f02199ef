//! Client addresses and what one address may do at once.
//!
//! One client address may hold [`Limits::max_connections_per_address`] connections,
//! make [`Limits::joins_per_minute_per_address`] joins a minute (a token bucket) and be
//! [`Limits::participants_per_address_per_room`] participants of one room. The
//! defaults are far above what a meeting of colleagues behind one office NAT needs
//! (see `docs/DEPLOY.md`); they stop one machine from taking the whole server or a
//! whole room.
//!
//! **Which address.** The TCP peer, unless the peer is one of the configured
//! `--trusted-proxies`: then the client is the rightmost `X-Forwarded-For` entry that
//! is not itself a trusted proxy (entries further left are whatever the client chose
//! to send). IPv6 clients are keyed by their /64, the block one subscriber normally
//! gets, so a single host cannot multiply itself by changing its interface id.
//!
//! Connections from a trusted proxy are not counted per address at `accept` (the
//! proxy is one address for everybody); their WebSocket is counted under the
//! forwarded address instead, once its headers are read.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use tokio::time::Instant;

use crate::limits::Limits;

/// The key one client address is counted under: an IPv4 address, or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `ip` (IPv4-mapped IPv6 counts as the IPv4 address).
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    AddressKey(IpAddr::V6(net))
                }
            },
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The configured reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Proxies at these addresses or networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Parses `10.0.0.1` or `10.0.0.0/8` (IPv4 or IPv6).
    pub fn parse_entry(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{s:?} is not an IP address or network (a.b.c.d[/n])"))
    }

    /// True if `ip` is a configured proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer`, or for a trusted `peer` the rightmost
    /// `X-Forwarded-For` entry that is not a trusted proxy. A missing or unreadable
    /// header leaves `peer`.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Several headers are one list, in order (RFC 9110 §5.3).
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for entry in entries.iter().rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                // Garbage: stop at what we could trust so far.
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// Per-address counters of one server.
#[derive(Debug)]
pub(crate) struct AddressLimits {
    max_connections: usize,
    joins_per_minute: u32,
    max_in_room: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    addresses: HashMap<AddressKey, Entry>,
    /// Participants per (address, room).
    in_room: HashMap<(AddressKey, Box<str>), usize>,
}

#[derive(Debug)]
struct Entry {
    connections: usize,
    join_tokens: f64,
    last_join: Instant,
}

/// Why a per-address limit refused a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    /// Too many joins from this address in the last minute.
    Joins,
    /// Too many participants from this address in the room.
    InRoom,
}

/// One connection of an address; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    limits: Arc<AddressLimits>,
    key: AddressKey,
}

/// One participant of an address in a room; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct RoomSlot {
    limits: Arc<AddressLimits>,
    key: AddressKey,
    room: Box<str>,
}

impl AddressLimits {
    /// Counters enforcing the per-address fields of `limits`.
    pub fn new(limits: &Limits) -> Self {
        AddressLimits {
            max_connections: limits.max_connections_per_address,
            joins_per_minute: limits.joins_per_minute_per_address,
            max_in_room: limits.participants_per_address_per_room,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain counters: consistent after any panic elsewhere.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry<'a>(&self, inner: &'a mut Inner, key: AddressKey, now: Instant) -> &'a mut Entry {
        inner.addresses.entry(key).or_insert_with(|| Entry {
            connections: 0,
            join_tokens: f64::from(self.joins_per_minute),
            last_join: now,
        })
    }

    /// Takes a connection slot for `key`; `None` when the address holds the maximum
    /// already.
    pub fn connect(self: &Arc<Self>, key: AddressKey) -> Option<ConnectionSlot> {
        let mut inner = self.lock();
        let entry = self.entry(&mut inner, key, Instant::now());
        if entry.connections >= self.max_connections {
            return None;
        }
        entry.connections += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Charges one join to `key` and takes a participant slot in `room`.
    pub fn join(
        self: &Arc<Self>,
        key: AddressKey,
        room: &str,
        now: Instant,
    ) -> Result<RoomSlot, JoinRefusal> {
        let mut inner = self.lock();
        // Every attempt costs a join, refused or not: the bucket bounds the work.
        let per_second = f64::from(self.joins_per_minute) / 60.0;
        let burst = f64::from(self.joins_per_minute);
        let entry = self.entry(&mut inner, key, now);
        let elapsed = now.saturating_duration_since(entry.last_join).as_secs_f64();
        entry.join_tokens = (entry.join_tokens + elapsed * per_second).min(burst);
        entry.last_join = now;
        if entry.join_tokens < 1.0 {
            return Err(JoinRefusal::Joins);
        }
        entry.join_tokens -= 1.0;
        let room_key = (key, Box::<str>::from(room));
        let in_room = inner.in_room.entry(room_key).or_insert(0);
        if *in_room >= self.max_in_room {
            return Err(JoinRefusal::InRoom);
        }
        *in_room += 1;
        Ok(RoomSlot {
            limits: self.clone(),
            key,
            room: room.into(),
        })
    }

    /// Forgets addresses with no connection whose join bucket has refilled (so
    /// forgetting them changes nothing). Called periodically.
    pub fn sweep(&self, now: Instant) {
        let refill = Duration::from_secs(60);
        self.lock().addresses.retain(|_, e| {
            e.connections > 0 || now.saturating_duration_since(e.last_join) < refill
        });
    }

    /// Addresses currently tracked.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.lock().addresses.len()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut inner = self.limits.lock();
        if let Some(entry) = inner.addresses.get_mut(&self.key) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }
}

impl Drop for RoomSlot {
    fn drop(&mut self) {
        let mut inner = self.limits.lock();
        let key = (self.key, std::mem::take(&mut self.room));
        if let Some(n) = inner.in_room.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.in_room.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(conns: usize, joins: u32, in_room: usize) -> Arc<AddressLimits> {
        Arc::new(AddressLimits::new(&Limits {
            max_connections_per_address: conns,
            joins_per_minute_per_address: joins,
            participants_per_address_per_room: in_room,
            ..Limits::default()
        }))
    }

    fn key(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn connections_per_address_are_counted_and_freed() {
        let l = limits(2, 10, 10);
        let a1 = l.connect(key("192.0.2.1")).unwrap();
        let _a2 = l.connect(key("192.0.2.1")).unwrap();
        assert!(l.connect(key("192.0.2.1")).is_none());
        let _b = l.connect(key("192.0.2.2")).unwrap();
        drop(a1);
        let _a3 = l.connect(key("192.0.2.1")).unwrap();
    }

    #[test]
    fn joins_refill_per_minute_and_rooms_count_participants() {
        let l = limits(10, 4, 2);
        let t0 = Instant::now();
        let a = key("192.0.2.1");
        let s1 = l.join(a, "r", t0).unwrap();
        let _s2 = l.join(a, "r", t0).unwrap();
        // A refused attempt costs a join too.
        assert_eq!(l.join(a, "r", t0).err(), Some(JoinRefusal::InRoom));
        let _s3 = l.join(a, "other", t0).unwrap();
        assert_eq!(l.join(a, "third", t0).err(), Some(JoinRefusal::Joins));
        // 15 s at 4 a minute = one join back; leaving frees the room slot.
        drop(s1);
        let _s4 = l.join(a, "r", t0 + Duration::from_secs(15)).unwrap();
        assert_eq!(
            l.join(a, "third", t0 + Duration::from_secs(15)).err(),
            Some(JoinRefusal::Joins)
        );
        // Another address is not affected.
        let _b = l.join(key("192.0.2.2"), "r", t0).unwrap();
    }

    #[test]
    fn sweep_forgets_only_idle_refilled_addresses() {
        let l = limits(10, 3, 2);
        let t0 = Instant::now();
        let held = l.connect(key("192.0.2.1")).unwrap();
        drop(l.join(key("192.0.2.2"), "r", t0).unwrap());
        assert_eq!(l.tracked(), 2);
        l.sweep(t0 + Duration::from_secs(30));
        assert_eq!(l.tracked(), 2);
        l.sweep(t0 + Duration::from_secs(61));
        assert_eq!(l.tracked(), 1);
        drop(held);
        l.sweep(t0 + Duration::from_secs(3600));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(vec![
            TrustedProxies::parse_entry("10.0.0.0/8").unwrap(),
            TrustedProxies::parse_entry("127.0.0.1").unwrap(),
        ]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.2.3.4, 198.51.100.7, 10.1.1.1".parse().unwrap(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From a proxy: the rightmost entry that is not a proxy.
        assert_eq!(
            proxies.client_address(ip("127.0.0.1"), &h),
            ip("198.51.100.7")
        );
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            proxies.client_address(ip("203.0.113.9"), &h),
            ip("203.0.113.9")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            proxies.client_address(ip("10.2.2.2"), &HeaderMap::new()),
            ip("10.2.2.2")
        );
        h.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(proxies.client_address(ip("10.2.2.2"), &h), ip("10.2.2.2"));
        // IPv4-mapped peers match IPv4 proxies.
        assert!(proxies.contains(ip("::ffff:127.0.0.1")));
        assert!(TrustedProxies::parse_entry("nope").is_err());
    }
}
