//! Routing of the datagrams that arrive on the media plane's one UDP port to the
//! PeerConnection they belong to: [`classify`] (RFC 7983), [`binding_request_username`]
//! (the STUN USERNAME that names a PeerConnection on first contact) and [`Demux`], the
//! table from ICE username fragments and remote addresses to PeerConnection keys.
//!
//! A PeerConnection registers its local ICE ufrag. The first datagram from an address must
//! be a STUN Binding request whose USERNAME (`"<local ufrag>:<remote ufrag>"`, RFC 8445
//! §7.2.2) names a registered ufrag; the address is then learnt and everything after from
//! it is routed by address alone. An address moves to another PeerConnection (NAT
//! rebinding, ICE restart) only by such a request naming that PeerConnection's ufrag.
//!
//! The demux does not check MESSAGE-INTEGRITY: the ICE agent the request is routed to
//! does, and the loop calls [`Demux::forget_addr`] for an address whose request it
//! rejected. Each PeerConnection keeps at most a fixed number of addresses (the oldest is
//! forgotten), so no peer can grow the table.

use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{BINDING_REQUEST, Message, is_stun_message};
use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;

/// Addresses a PeerConnection keeps by default: a host and a relayed or reflexive path, with
/// room for a rebinding.
pub const DEFAULT_MAX_ADDRS_PER_KEY: usize = 4;

/// What a datagram on the media port is, by its first byte (RFC 7983 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClass {
    /// 0–3: STUN.
    Stun,
    /// 20–63: DTLS.
    Dtls,
    /// 128–191: RTP or RTCP (SRTP / SRTCP).
    Rtp,
    /// Anything else (ZRTP, TURN channels, garbage, empty): dropped.
    Other,
}

/// Classifies a datagram by its first byte (RFC 7983 §7).
pub fn classify(datagram: &[u8]) -> PacketClass {
    match datagram.first() {
        Some(0..=3) => PacketClass::Stun,
        Some(20..=63) => PacketClass::Dtls,
        Some(128..=191) => PacketClass::Rtp,
        _ => PacketClass::Other,
    }
}

/// The USERNAME of a STUN Binding request, split at its first `:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunUsername {
    /// The receiver's (our) ufrag.
    pub local: String,
    /// The sender's (the peer's) ufrag.
    pub remote: String,
}

/// Parses `datagram` as a STUN Binding request (with `rtc`'s STUN decoder) and returns its
/// USERNAME, or `None` when it is not a well-formed Binding request with a UTF-8
/// `local:remote` USERNAME.
pub fn binding_request_username(datagram: &[u8]) -> Option<StunUsername> {
    // Cheap checks before the decoder copies: header, magic cookie, Binding request type.
    if !is_stun_message(datagram) || datagram.get(..2)? != [0x00, 0x01] {
        return None;
    }
    let mut msg = Message::default();
    msg.unmarshal_binary(datagram).ok()?;
    if msg.typ != BINDING_REQUEST {
        return None;
    }
    let username = String::from_utf8(msg.get(ATTR_USERNAME).ok()?).ok()?;
    let (local, remote) = username.split_once(':')?;
    Some(StunUsername {
        local: local.to_owned(),
        remote: remote.to_owned(),
    })
}

/// Where [`Demux::route`] sends a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<K> {
    /// From a known address of this PeerConnection.
    Known(K),
    /// A STUN Binding request naming this PeerConnection's ufrag, from an address that was
    /// unknown (`previous: None`) or belonged to another PeerConnection (`previous`); the
    /// address now routes here.
    Learned {
        /// The PeerConnection the address now belongs to.
        key: K,
        /// The PeerConnection the address belonged to before, if any.
        previous: Option<K>,
    },
    /// Not from a known address and not a Binding request naming a registered ufrag:
    /// dropped.
    Unknown,
    /// Not a STUN, DTLS, RTP or RTCP datagram (RFC 7983): dropped.
    Invalid,
}

/// Why a ufrag cannot be registered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    /// The ufrag is empty or contains `:` (it could never match a USERNAME).
    #[error("invalid ICE ufrag")]
    InvalidUfrag,
    /// Another PeerConnection has registered this ufrag.
    #[error("ICE ufrag already registered by another PeerConnection")]
    DuplicateUfrag,
}

/// Counters of a [`Demux`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Datagrams routed by a known address.
    pub known: u64,
    /// Addresses learnt from a Binding request (moves included).
    pub learned: u64,
    /// Addresses moved from one PeerConnection to another.
    pub moved: u64,
    /// Addresses forgotten because their PeerConnection had too many.
    pub evicted: u64,
    /// Datagrams dropped as [`Route::Unknown`].
    pub unknown: u64,
    /// Datagrams dropped as [`Route::Invalid`].
    pub invalid: u64,
}

/// One registered PeerConnection.
#[derive(Debug)]
struct Entry {
    ufrag: String,
    /// Learnt addresses, oldest first.
    addrs: VecDeque<SocketAddr>,
}

/// The routing table of the media port, keyed by the caller's PeerConnection key `K`.
/// See the [module documentation](self).
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    entries: HashMap<K, Entry>,
    max_addrs_per_key: usize,
    stats: DemuxStats,
}

impl<K: Copy + Eq + Hash + Debug> Default for Demux<K> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ADDRS_PER_KEY)
    }
}

impl<K: Copy + Eq + Hash + Debug> Demux<K> {
    /// An empty table keeping at most `max_addrs_per_key` addresses (at least 1) per
    /// PeerConnection.
    pub fn new(max_addrs_per_key: usize) -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            entries: HashMap::new(),
            max_addrs_per_key: max_addrs_per_key.max(1),
            stats: DemuxStats::default(),
        }
    }

    /// Registers `key`'s local ICE ufrag. Registering a new ufrag for a registered key (an
    /// ICE restart) replaces its old ufrag and keeps its addresses.
    pub fn register_ufrag(&mut self, local_ufrag: &str, key: K) -> Result<(), DemuxError> {
        if local_ufrag.is_empty() || local_ufrag.contains(':') {
            return Err(DemuxError::InvalidUfrag);
        }
        match self.by_ufrag.get(local_ufrag) {
            Some(owner) if *owner != key => return Err(DemuxError::DuplicateUfrag),
            Some(_) => return Ok(()),
            None => {}
        }
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            ufrag: String::new(),
            addrs: VecDeque::new(),
        });
        let old = std::mem::replace(&mut entry.ufrag, local_ufrag.to_owned());
        self.by_ufrag.remove(&old);
        self.by_ufrag.insert(local_ufrag.to_owned(), key);
        Ok(())
    }

    /// Removes `key`: its ufrag and every address learnt for it. Returns whether it was
    /// registered.
    pub fn unregister(&mut self, key: K) -> bool {
        let Some(entry) = self.entries.remove(&key) else {
            return false;
        };
        self.by_ufrag.remove(&entry.ufrag);
        for addr in entry.addrs {
            self.by_addr.remove(&addr);
        }
        true
    }

    /// Forgets one learnt address (e.g. its Binding request failed the ICE agent's
    /// integrity check). Returns the key it belonged to.
    pub fn forget_addr(&mut self, addr: SocketAddr) -> Option<K> {
        let key = self.by_addr.remove(&addr)?;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.addrs.retain(|a| *a != addr);
        }
        Some(key)
    }

    /// The key whose local ufrag this is (what an ICE-TCP connection's first Binding
    /// request is checked against, see [`crate::ice_tcp`]).
    pub fn key_for_ufrag(&self, local_ufrag: &str) -> Option<K> {
        self.by_ufrag.get(local_ufrag).copied()
    }

    /// The key an address routes to, if it is known.
    pub fn key_of(&self, addr: SocketAddr) -> Option<K> {
        self.by_addr.get(&addr).copied()
    }

    /// The addresses learnt for `key`, oldest first.
    pub fn addrs_of(&self, key: K) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries
            .get(&key)
            .into_iter()
            .flat_map(|e| e.addrs.iter().copied())
    }

    /// Number of addresses known, over all keys.
    pub fn addr_count(&self) -> usize {
        self.by_addr.len()
    }

    /// The table's counters so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Routes one datagram received from `from`. See [`Route`] for the rules.
    pub fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> Route<K> {
        let class = classify(datagram);
        if class == PacketClass::Other {
            self.stats.invalid += 1;
            return Route::Invalid;
        }
        let current = self.by_addr.get(&from).copied();
        // Only a Binding request may (re)assign an address; anything else needs a known one.
        let named = if class == PacketClass::Stun {
            binding_request_username(datagram).and_then(|u| self.by_ufrag.get(&u.local).copied())
        } else {
            None
        };
        match (current, named) {
            (Some(key), None) => {
                self.stats.known += 1;
                Route::Known(key)
            }
            (Some(key), Some(named)) if key == named => {
                self.stats.known += 1;
                self.touch(key, from);
                Route::Known(key)
            }
            (previous, Some(key)) => {
                self.learn(from, key, previous);
                Route::Learned { key, previous }
            }
            (None, None) => {
                self.stats.unknown += 1;
                Route::Unknown
            }
        }
    }

    /// Marks `addr` as `key`'s most recently confirmed address (so eviction forgets the
    /// others first).
    fn touch(&mut self, key: K, addr: SocketAddr) {
        if let Some(entry) = self.entries.get_mut(&key)
            && let Some(pos) = entry.addrs.iter().position(|a| *a == addr)
            && pos + 1 != entry.addrs.len()
        {
            entry.addrs.remove(pos);
            entry.addrs.push_back(addr);
        }
    }

    fn learn(&mut self, addr: SocketAddr, key: K, previous: Option<K>) {
        if let Some(prev) = previous {
            if let Some(entry) = self.entries.get_mut(&prev) {
                entry.addrs.retain(|a| *a != addr);
            }
            self.stats.moved += 1;
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        entry.addrs.push_back(addr);
        self.by_addr.insert(addr, key);
        self.stats.learned += 1;
        while entry.addrs.len() > self.max_addrs_per_key {
            if let Some(old) = entry.addrs.pop_front() {
                self.by_addr.remove(&old);
                self.stats.evicted += 1;
                tracing::debug!(?key, addr = %old, "demux: oldest address forgotten");
            }
        }
        tracing::debug!(?key, %addr, ?previous, "demux: address learnt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rtc::stun::message::{BINDING_SUCCESS, MessageType, Setter, TransactionId};
    use rtc::stun::textattrs::TextAttribute;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn stun(typ: MessageType, username: Option<&str>) -> Vec<u8> {
        let mut setters: Vec<Box<dyn Setter>> = vec![Box::new(typ), Box::new(TransactionId::new())];
        if let Some(u) = username {
            setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, u.to_owned())));
        }
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m.raw
    }

    fn binding(username: &str) -> Vec<u8> {
        stun(BINDING_REQUEST, Some(username))
    }

    const RTP: &[u8] = &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xde, 0xad];
    const DTLS: &[u8] = &[22, 0xfe, 0xfd, 0, 0];

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(classify(&[0]), PacketClass::Stun);
        assert_eq!(classify(&[3]), PacketClass::Stun);
        assert_eq!(classify(&[4]), PacketClass::Other);
        assert_eq!(classify(&[19]), PacketClass::Other);
        assert_eq!(classify(&[20]), PacketClass::Dtls);
        assert_eq!(classify(&[63]), PacketClass::Dtls);
        assert_eq!(classify(&[64]), PacketClass::Other);
        assert_eq!(classify(&[127]), PacketClass::Other);
        assert_eq!(classify(&[128]), PacketClass::Rtp);
        assert_eq!(classify(&[191]), PacketClass::Rtp);
        assert_eq!(classify(&[192]), PacketClass::Other);
        assert_eq!(classify(&[]), PacketClass::Other);
    }

    #[test]
    fn parses_binding_request_username() {
        let u = binding_request_username(&binding("sfuA:peer1")).unwrap();
        assert_eq!(
            u,
            StunUsername {
                local: "sfuA".into(),
                remote: "peer1".into()
            }
        );
        assert_eq!(binding_request_username(&stun(BINDING_REQUEST, None)), None);
        assert_eq!(binding_request_username(&binding("nocolon")), None);
        assert_eq!(
            binding_request_username(&stun(BINDING_SUCCESS, Some("sfuA:peer1"))),
            None
        );
        let full = binding("sfuA:peer1");
        assert_eq!(
            binding_request_username(&full[..full.len() - 1]),
            None,
            "truncated"
        );
        assert_eq!(binding_request_username(RTP), None);
    }

    #[test]
    fn first_contact_needs_binding_request_with_registered_ufrag() {
        let mut d = Demux::default();
        d.register_ufrag("sfuA", 1u32).unwrap();
        assert_eq!(d.route(addr(1), RTP), Route::Unknown);
        assert_eq!(d.route(addr(1), DTLS), Route::Unknown);
        assert_eq!(d.route(addr(1), &binding("other:peer")), Route::Unknown);
        assert_eq!(
            d.route(addr(1), &stun(BINDING_SUCCESS, Some("sfuA:peer"))),
            Route::Unknown
        );
        assert_eq!(
            d.route(addr(1), &binding("peer:sfuA")),
            Route::Unknown,
            "the local part counts"
        );
        assert_eq!(d.stats().unknown, 5);
        assert_eq!(
            d.route(addr(1), &binding("sfuA:peer")),
            Route::Learned {
                key: 1,
                previous: None
            }
        );
        assert_eq!(d.key_of(addr(1)), Some(1));
    }

    #[test]
    fn known_address_routes_everything_by_address() {
        let mut d = Demux::default();
        d.register_ufrag("sfuA", 1u32).unwrap();
        d.route(addr(1), &binding("sfuA:peer"));
        assert_eq!(d.route(addr(1), RTP), Route::Known(1));
        assert_eq!(d.route(addr(1), DTLS), Route::Known(1));
        assert_eq!(d.route(addr(1), &binding("sfuA:peer")), Route::Known(1));
        assert_eq!(d.route(addr(1), &binding("unknown:peer")), Route::Known(1));
        assert_eq!(
            d.route(addr(2), RTP),
            Route::Unknown,
            "another port is another address"
        );
        assert_eq!(d.stats().known, 4);
    }

    #[test]
    fn invalid_datagrams_are_dropped_even_from_known_addresses() {
        let mut d = Demux::default();
        d.register_ufrag("sfuA", 1u32).unwrap();
        d.route(addr(1), &binding("sfuA:peer"));
        assert_eq!(d.route(addr(1), &[]), Route::Invalid);
        assert_eq!(d.route(addr(1), &[64, 0, 0, 4]), Route::Invalid);
        assert_eq!(d.route(addr(9), &[200]), Route::Invalid);
        assert_eq!(d.stats().invalid, 3);
    }

    #[test]
    fn address_moves_only_by_binding_request_naming_the_new_key() {
        let mut d = Demux::default();
        d.register_ufrag("sfuA", 1u32).unwrap();
        d.register_ufrag("sfuB", 2u32).unwrap();
        d.route(addr(1), &binding("sfuA:peer"));
        // Media or a non-request from key 1's address never moves it.
        assert_eq!(d.route(addr(1), RTP), Route::Known(1));
        assert_eq!(
            d.route(addr(1), &stun(BINDING_SUCCESS, Some("sfuB:peer"))),
            Route::Known(1)
        );
        assert_eq!(
            d.route(addr(1), &binding("sfuB:peer")),
            Route::Learned {
                key: 2,
                previous: Some(1)
            }
        );
        assert_eq!(d.route(addr(1), RTP), Route::Known(2));
        assert_eq!(d.addrs_of(1).count(), 0);
        assert_eq!(d.addrs_of(2).collect::<Vec<_>>(), vec![addr(1)]);
        assert_eq!(d.stats().moved, 1);
    }

    #[test]
    fn ufrags_are_looked_up_until_unregistered() {
        let mut d = Demux::default();
        d.register_ufrag("sfuA", 1u32).unwrap();
        assert_eq!(d.key_for_ufrag("sfuA"), Some(1));
        assert_eq!(d.key_for_ufrag("sfuB"), None);
        d.register_ufrag("sfuA2", 1u32).unwrap();
        assert_eq!(
            d.key_for_ufrag("sfuA"),
            None,
            "an ICE restart replaces the ufrag"
        );
        assert_eq!(d.key_for_ufrag("sfuA2"), Some(1));
        d.unregister(1);
        assert_eq!(d.key_for_ufrag("sfuA2"), None);
    }

    #[test]
    fn unregister_removes_ufrag_and_every_address() {
        let mut d = Demux::default();
        d.register_ufrag("sfuA", 1u32).unwrap();
        d.register_ufrag("sfuB", 2u32).unwrap();
        d.route(addr(1), &binding("sfuA:peer"));
        d.route(addr(2), &binding("sfuA:peer"));
        d.route(addr(3), &binding("sfuB:peer"));
        assert!(d.unregister(1));
        assert!(!d.unregister(1));
        assert_eq!(d.route(addr(1), RTP), Route::Unknown);
        assert_eq!(d.route(addr(2), RTP), Route::Unknown);
        assert_eq!(
            d.route(addr(4), &binding("sfuA:peer")),
            Route::Unknown,
            "ufrag gone"
        );
        assert_eq!(d.route(addr(3), RTP), Route::Known(2));
        assert_eq!(d.addr_count(), 1);
        // The ufrag is free again.
        d.register_ufrag("sfuA", 3u32).unwrap();
    }

    #[test]
    fn addresses_per_key_are_bounded_oldest_forgotten() {
        let mut d = Demux::new(3);
        d.register_ufrag("sfuA", 1u32).unwrap();
        for port in 1..=5 {
            d.route(addr(port), &binding("sfuA:peer"));
        }
        assert_eq!(
            d.addrs_of(1).collect::<Vec<_>>(),
            vec![addr(3), addr(4), addr(5)]
        );
        assert_eq!(d.addr_count(), 3);
        assert_eq!(d.route(addr(1), RTP), Route::Unknown);
        assert_eq!(d.stats().evicted, 2);
        // A fresh Binding request from a kept address makes it the newest.
        assert_eq!(d.route(addr(3), &binding("sfuA:peer")), Route::Known(1));
        d.route(addr(6), &binding("sfuA:peer"));
        assert_eq!(
            d.addrs_of(1).collect::<Vec<_>>(),
            vec![addr(5), addr(3), addr(6)]
        );
    }

    #[test]
    fn registration_rules() {
        let mut d = Demux::default();
        assert_eq!(d.register_ufrag("", 1u32), Err(DemuxError::InvalidUfrag));
        assert_eq!(d.register_ufrag("a:b", 1u32), Err(DemuxError::InvalidUfrag));
        d.register_ufrag("sfuA", 1).unwrap();
        d.register_ufrag("sfuA", 1).unwrap();
        assert_eq!(d.register_ufrag("sfuA", 2), Err(DemuxError::DuplicateUfrag));
        d.route(addr(1), &binding("sfuA:peer"));
        // ICE restart: a new ufrag replaces the old one; learnt addresses stay.
        d.register_ufrag("sfuA2", 1).unwrap();
        assert_eq!(d.route(addr(2), &binding("sfuA:peer")), Route::Unknown);
        assert_eq!(
            d.route(addr(2), &binding("sfuA2:peer")),
            Route::Learned {
                key: 1,
                previous: None
            }
        );
        assert_eq!(d.route(addr(1), RTP), Route::Known(1));
        assert_eq!(d.forget_addr(addr(1)), Some(1));
        assert_eq!(d.route(addr(1), RTP), Route::Unknown);
    }

    proptest! {
        #[test]
        fn route_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            port in any::<u16>(),
        ) {
            let mut d = Demux::new(2);
            d.register_ufrag("sfuA", 1u32).unwrap();
            d.route(addr(7), &binding("sfuA:peer"));
            let _ = d.route(addr(port), &bytes);
            let _ = d.route(addr(7), &bytes);
        }

        #[test]
        fn route_never_panics_on_stun_shaped_bytes(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            len in any::<u16>(),
            typ in prop_oneof![Just(0x0001u16), any::<u16>()],
        ) {
            // A STUN header with the magic cookie and an arbitrary (often lying) length.
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&(typ & 0x3fff).to_be_bytes());
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&0x2112_A442u32.to_be_bytes());
            bytes.extend_from_slice(&[7; 12]);
            bytes.extend_from_slice(&body);
            let mut d = Demux::new(2);
            d.register_ufrag("sfuA", 1u32).unwrap();
            let _ = d.route(addr(1), &bytes);
            let _ = binding_request_username(&bytes);
        }

        #[test]
        fn table_stays_bounded(ports in proptest::collection::vec((0u8..3, any::<u16>()), 0..200)) {
            let mut d = Demux::new(3);
            for k in 0..3u32 {
                d.register_ufrag(&format!("sfu{k}"), k).unwrap();
            }
            for (k, port) in ports {
                d.route(addr(port), &binding(&format!("sfu{k}:peer")));
                prop_assert!(d.addr_count() <= 9);
                for key in 0..3u32 {
                    prop_assert!(d.addrs_of(key).count() <= 3);
                    for a in d.addrs_of(key) {
                        prop_assert_eq!(d.key_of(a), Some(key));
                    }
                }
            }
        }
    }
}
