//! The [`Sfu`] (the port pool, counters, the rooms it must close on shutdown) and
//! [`Router`], one room of it, owned by whoever opened it.
//!
//! Rooms are owned once: signaling's room holds its [`Router`], adds participants through
//! it with the ids it assigns, and drops it when the room empties. The SFU has no room map
//! of its own to keep in step (no lookup by name, no retry when a room closes under a join):
//! a room re-created under the same name is a new `Router`, apart from the old one whose
//! last participants may still be leaving.

use crate::engine::{Engine, EngineRoom};
use crate::participant::{self, Parts};
use crate::port_pool::PortPool;
use crate::room::{AddError, Member, Room, SPEAKER_INTERVAL};
use crate::rtc::{NetSettings, Pc, PcEvent};
use crate::stats::{Counters, SfuStats};
use crate::{ParticipantEvent, ParticipantHandle, ParticipantId, PcKind, SfuConfig, SfuError};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// Events a participant's client may have queued before signaling reads them.
const EVENT_QUEUE: usize = 256;
/// Ports tried per PeerConnection before giving up (a port may be taken by another process).
const BIND_ATTEMPTS: usize = 5;

/// State shared by every task of one `Sfu`.
pub(crate) struct Shared {
    pub config: SfuConfig,
    net: NetSettings,
    ports: Arc<PortPool>,
    pub counters: Arc<Counters>,
    /// Open rooms, by serial number, for shutdown. Their [`Router`]s own them.
    rooms: Mutex<HashMap<u64, Weak<Room>>>,
    room_serial: AtomicU64,
    shutting_down: AtomicBool,
    /// The single-port engine, when `udp_port` is configured.
    engine: Option<Engine>,
    ssrc_seed: u32,
    ssrc_seq: AtomicU32,
    #[cfg(feature = "test-tap")]
    pub tap: crate::tap::TapSlot,
}

impl Shared {
    /// A fresh SSRC for a down track: a counter scrambled by a bijection, so SSRCs are unique
    /// per SFU (and so per subscriber PC) yet do not reveal join order.
    pub fn next_ssrc(&self) -> u32 {
        loop {
            let n = self.ssrc_seq.fetch_add(1, Ordering::Relaxed);
            if let Some(ssrc) = scramble_ssrc(n, self.ssrc_seed) {
                return ssrc;
            }
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Room>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds one PeerConnection on a port of the pool (trying a few ports if one cannot
    /// be bound).
    pub async fn build_pc(
        &self,
        kind: PcKind,
        events: &mpsc::UnboundedSender<PcEvent>,
    ) -> Result<Pc, SfuError> {
        let mut last_err = SfuError::NoFreePort;
        for _ in 0..BIND_ATTEMPTS {
            let lease = self.ports.acquire().ok_or(SfuError::NoFreePort)?;
            match Pc::new(kind, self.net, lease, events.clone()).await {
                Ok(pc) => return Ok(pc),
                Err(err) => {
                    tracing::warn!(?kind, %err, "PeerConnection setup failed; trying another port");
                    last_err = err;
                }
            }
        }
        Err(last_err)
    }
}

/// Counter `n` scrambled by a bijection keyed by `seed`: unique SSRCs that do not reveal
/// join order. `None` for the one `n` that maps to 0 (not a usable SSRC).
pub(crate) fn scramble_ssrc(n: u32, seed: u32) -> Option<u32> {
    let mut x = n ^ seed;
    x = (x ^ (x >> 16)).wrapping_mul(0x7feb_352d);
    x = (x ^ (x >> 15)).wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    (x != 0).then_some(x)
}

async fn speaker_loop(room: Weak<Room>) {
    let mut tick = tokio::time::interval(SPEAKER_INTERVAL);
    loop {
        tick.tick().await;
        let Some(room) = room.upgrade() else { return };
        if room.is_closed() {
            return;
        }
        room.sample_speakers();
    }
}

/// The SFU: rooms of participants whose media it forwards. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Sfu {
    shared: Arc<Shared>,
}

impl Sfu {
    /// Creates an SFU. Fails if the configuration cannot work (an empty port range, a public
    /// IP of another address family than the bind address).
    pub fn new(config: SfuConfig) -> Result<Sfu, SfuError> {
        if config.udp_ports.is_empty() {
            return Err(SfuError::Config("the UDP port range is empty".into()));
        }
        if config.bind_ip.is_unspecified() {
            // webrtc-rs would expand it to every interface but loopback; one explicit
            // address keeps announced candidates predictable.
            return Err(SfuError::Config(
                "bind_ip must be a concrete address (use public_ip for NAT)".into(),
            ));
        }
        if let Some(public) = config.public_ip
            && public.is_ipv4() != config.bind_ip.is_ipv4()
        {
            return Err(SfuError::Config(
                "public_ip and bind_ip must be the same address family".into(),
            ));
        }
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        let counters = Arc::new(Counters::default());
        #[cfg(feature = "test-tap")]
        let tap = crate::tap::TapSlot::default();
        let engine = match config.udp_port {
            Some(port) => Some(Engine::start(
                &config,
                port,
                Arc::clone(&counters),
                #[cfg(feature = "test-tap")]
                tap.clone(),
            )?),
            None => None,
        };
        Ok(Sfu {
            shared: Arc::new(Shared {
                net: NetSettings {
                    bind_ip: config.bind_ip,
                    public_ip: config.public_ip,
                },
                ports: PortPool::new(config.udp_ports.clone()),
                config,
                counters,
                rooms: Mutex::default(),
                room_serial: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                engine,
                ssrc_seed: seed,
                ssrc_seq: AtomicU32::new(1),
                #[cfg(feature = "test-tap")]
                tap,
            }),
        })
    }

    /// Opens a room. The returned [`Router`] owns it: participants join through it, and
    /// dropping it closes the room. Fails only while the SFU shuts down.
    pub fn open_room(&self, name: &str) -> Result<Router, SfuError> {
        let shared = &self.shared;
        if shared.shutting_down.load(Ordering::Acquire) {
            return Err(SfuError::ShuttingDown);
        }
        let engine_room = shared.engine.as_ref().map(|e| e.open_room(name));
        let room = Room::new(name.to_owned(), Arc::clone(&shared.counters));
        let serial = shared.room_serial.fetch_add(1, Ordering::Relaxed);
        shared.rooms().insert(serial, Arc::downgrade(&room));
        shared.counters.rooms.fetch_add(1, Ordering::Relaxed);
        if engine_room.is_none() {
            tokio::spawn(speaker_loop(Arc::downgrade(&room)));
        }
        tracing::info!(room = %name, "room opened");
        Ok(Router {
            shared: Arc::clone(shared),
            room,
            engine_room,
            serial,
        })
    }

    /// The single-port engine's UDP socket addresses (one per worker; empty with one port
    /// per PeerConnection). ICE candidates announce these (or `public_ip` with their ports).
    pub fn media_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.shared
            .engine
            .as_ref()
            .map(|e| e.local_addrs())
            .unwrap_or_default()
    }

    /// A cheap snapshot of the counters (atomics).
    pub fn stats(&self) -> SfuStats {
        self.shared.counters.snapshot()
    }

    /// Closes every PeerConnection; later joins fail with [`SfuError::ShuttingDown`].
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        if let Some(engine) = &self.shared.engine {
            engine.shutdown().await;
        }
        let rooms: Vec<Arc<Room>> = self
            .shared
            .rooms()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for room in rooms {
            room.close();
            for (id, member) in room.members() {
                participant::leave(&self.shared, &room, id, &member.cmds, &member.left).await;
            }
        }
    }

    /// Blocks the single-port engine's workers for `duration`, as overload would: what
    /// arrives meanwhile waits in the kernel (tests of ingress shedding).
    #[cfg(feature = "test-tap")]
    pub fn stall_media(&self, duration: std::time::Duration) {
        if let Some(engine) = &self.shared.engine {
            engine.stall(duration);
        }
    }

    /// Installs (or removes) a tap called with every payload the SFU forwards.
    #[cfg(feature = "test-tap")]
    pub fn set_tap(&self, tap: Option<Box<crate::tap::TapFn>>) {
        self.shared.tap.set(tap);
    }
}

/// One room of the SFU, owned by whoever opened it ([`Sfu::open_room`]); dropping it
/// closes the room (participants still in it leave as usual).
pub struct Router {
    shared: Arc<Shared>,
    /// The room's name and roster (the per-connection engine keeps its state here).
    room: Arc<Room>,
    /// The room on its worker, with the single-port engine.
    engine_room: Option<EngineRoom>,
    serial: u64,
}

impl Router {
    /// Adds participant `id` (assigned by the owner, unique in this room) and subscribes it
    /// to every track already published. Takes no media resources: its PeerConnections are
    /// built when its media starts. Events for it arrive on the returned receiver until it
    /// leaves.
    pub fn join(
        &self,
        id: ParticipantId,
    ) -> Result<(ParticipantHandle, mpsc::Receiver<ParticipantEvent>), SfuError> {
        let shared = &self.shared;
        if shared.shutting_down.load(Ordering::Acquire) {
            return Err(SfuError::ShuttingDown);
        }
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                if out_tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        if let Some(engine_room) = &self.engine_room {
            if self.room.is_closed() {
                return Err(SfuError::ShuttingDown);
            }
            let handle = engine_room.join(id, events_tx)?;
            return Ok((ParticipantHandle::engine(id, handle), out_rx));
        }
        let (cmds_tx, cmds_rx) = mpsc::unbounded_channel();
        let member = Member {
            cmds: cmds_tx,
            events: events_tx,
            left: Arc::default(),
        };
        match self.room.add(id, member.clone()) {
            Ok(()) => {}
            Err(AddError::Duplicate) => return Err(SfuError::DuplicateParticipant(id)),
            Err(AddError::Closed) => return Err(SfuError::ShuttingDown),
        }
        shared.counters.participants.fetch_add(1, Ordering::Relaxed);
        tracing::info!(room = %self.room.name, participant = id, "joined");
        let handle = participant::spawn(Parts {
            id,
            room: Arc::clone(&self.room),
            member,
            shared: Arc::clone(shared),
            cmds: cmds_rx,
        });
        Ok((ParticipantHandle::actor(handle), out_rx))
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.room.name
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.room.close();
        self.shared.rooms().remove(&self.serial);
        self.shared.counters.rooms.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(room = %self.room.name, "room closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_single_port_engine_binds_one_port_per_worker_for_udp_and_tcp() {
        let sfu = Sfu::new(SfuConfig {
            udp_port: Some(0),
            udp_workers: 2,
            ..SfuConfig::default()
        })
        .expect("sfu");
        let addrs = sfu.media_addrs();
        assert_eq!(addrs.len(), 2);
        assert_ne!(addrs[0], addrs[1]);
        for addr in &addrs {
            // The worker's ICE-TCP listener shares the port number.
            assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr}");
        }
        sfu.shutdown().await;
        let per_pc = Sfu::new(SfuConfig::default()).expect("sfu");
        assert!(
            per_pc.media_addrs().is_empty(),
            "the older engine has no fixed port"
        );
    }

    #[test]
    fn rejects_unusable_configs() {
        #[allow(clippy::reversed_empty_ranges)]
        let empty = SfuConfig {
            udp_ports: 10..=9,
            ..SfuConfig::default()
        };
        assert!(matches!(Sfu::new(empty), Err(SfuError::Config(_))));
        let mixed = SfuConfig {
            public_ip: Some("::1".parse().expect("ip")),
            ..SfuConfig::default()
        };
        assert!(matches!(Sfu::new(mixed), Err(SfuError::Config(_))));
        assert!(Sfu::new(SfuConfig::default()).is_ok());
    }

    /// A plain (full-ICE) client PeerConnection's offer with one send-only audio track.
    async fn client_offer() -> (impl webrtc::peer_connection::PeerConnection, String) {
        use webrtc::peer_connection::{
            PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, SettingEngineBuilder,
        };
        struct Nop;
        impl PeerConnectionEventHandler for Nop {}
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let mut engine = webrtc::peer_connection::MediaEngine::default();
        engine.register_default_codecs().expect("codecs");
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(engine)
            .with_setting_engine(settings)
            .with_handler(std::sync::Arc::new(Nop))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("client pc");
        pc.add_transceiver_from_kind(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio, None)
            .await
            .expect("transceiver");
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer).await.expect("set local");
        for _ in 0..100 {
            if let Some(desc) = pc.local_description().await
                && desc.sdp.contains("a=ice-ufrag")
                && desc.sdp.contains("a=candidate")
            {
                return (pc, desc.sdp);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sdp = pc.local_description().await.map(|d| d.sdp);
        panic!("client offer never got ICE credentials and a candidate: {sdp:?}");
    }

    fn small_sfu(ports: std::ops::RangeInclusive<u16>) -> Sfu {
        impatient_sfu(ports, SfuConfig::default().connect_timeout)
    }

    fn impatient_sfu(ports: std::ops::RangeInclusive<u16>, connect_timeout: Duration) -> Sfu {
        Sfu::new(SfuConfig {
            udp_ports: ports,
            connect_timeout,
            ..SfuConfig::default()
        })
        .expect("sfu")
    }

    /// Waits until `pred` holds for the pool's free port count.
    async fn wait_for_ports(sfu: &Sfu, pred: impl Fn(usize) -> bool, what: &str) {
        let start = std::time::Instant::now();
        while !pred(sfu.shared.ports.available()) {
            assert!(start.elapsed() < Duration::from_secs(5), "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn joining_takes_no_port_and_publishing_takes_one() {
        let sfu = small_sfu(47200..=47202);
        let mut joined = Vec::new();
        let room = sfu.open_room("ports").expect("room");
        for id in 1..=20 {
            joined.push(room.join(id).expect("a join takes no port"));
        }
        assert_eq!(sfu.shared.ports.available(), 3, "no port taken by joining");
        let (_client, offer) = client_offer().await;
        for (p, _) in &joined[..3] {
            p.publish_offer(&offer).await.expect("answer");
        }
        assert_eq!(
            sfu.shared.ports.available(),
            0,
            "one port per publish connection"
        );
        let err = joined[3].0.publish_offer(&offer).await;
        assert!(matches!(err, Err(SfuError::NoFreePort)), "{err:?}");
        for (p, _) in &joined {
            p.leave().await;
        }
        wait_for_ports(&sfu, |n| n == 3, "ports not returned").await;
        for port in 47200..=47202 {
            std::net::UdpSocket::bind(("127.0.0.1", port)).expect("socket was closed");
        }
        let s = sfu.stats();
        assert_eq!((s.rooms, s.participants, s.tracks), (1, 0, 0));
        let (again, _e) = room.join(30).expect("join");
        again
            .publish_offer(&offer)
            .await
            .expect("ports are reusable");
        again.leave().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unconnected_participant_is_reported_closed_and_its_ports_released() {
        let sfu = impatient_sfu(47210..=47219, Duration::from_millis(500));
        let room = sfu.open_room("timeout").expect("room");
        let (p, mut events) = room.join(1).expect("join");
        let (client, offer) = client_offer().await;
        p.publish_offer(&offer).await.expect("answer");
        assert_eq!(sfu.shared.ports.available(), 9);
        // The client never applies the answer: ICE never starts.
        drop(client);
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = events.recv().await {
                if let ParticipantEvent::Closed { reason } = event {
                    return Some(reason);
                }
            }
            None
        })
        .await
        .expect("Closed within the timeout");
        assert!(closed.is_some_and(|r| r.contains("timed out")));
        p.leave().await;
        assert_eq!(sfu.stats().participants, 0);
        wait_for_ports(&sfu, |n| n == 10, "ports not released").await;
        let ended = tokio::time::timeout(Duration::from_secs(2), async {
            while events.recv().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the event stream ends after leave");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_participant_without_media_is_never_timed_out() {
        let sfu = impatient_sfu(47230..=47231, Duration::from_millis(200));
        let room = sfu.open_room("idle").expect("room");
        let (p, mut events) = room.join(1).expect("join");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(event, ParticipantEvent::Closed { .. }),
                "closed without media: {event:?}"
            );
        }
        p.leave().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn public_ip_is_announced_instead_of_bind_address() {
        let sfu = Sfu::new(SfuConfig {
            udp_ports: 47220..=47229,
            public_ip: Some("198.51.100.7".parse().expect("ip")),
            ..SfuConfig::default()
        })
        .expect("sfu");
        let room = sfu.open_room("nat").expect("room");
        let (p, mut events) = room.join(1).expect("join");
        let (_client, offer) = client_offer().await;
        let answer = p.publish_offer(&offer).await.expect("answer");
        let candidates: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        assert!(!candidates.is_empty(), "the answer carries our candidate");
        for c in candidates {
            assert!(c.contains(" 198.51.100.7 "), "{c}");
            assert!(!c.contains("127.0.0.1"), "{c}");
        }
        while let Ok(event) = events.try_recv() {
            if let ParticipantEvent::IceCandidate { candidate, .. } = event {
                assert!(!candidate.candidate.contains("127.0.0.1"));
            }
        }
        p.leave().await;
    }

    #[test]
    fn ssrcs_are_unique_and_nonzero() {
        let sfu = Sfu::new(SfuConfig::default()).expect("sfu");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let s = sfu.shared.next_ssrc();
            assert_ne!(s, 0);
            assert!(seen.insert(s), "duplicate SSRC");
        }
    }
}
