//! A media worker: one thread, one UDP socket, the rooms pinned to it.
//!
//! The loop waits on three things — the socket, the command channel, the earliest timer —
//! and after each wake sends whatever the connections it touched want to send, grouped by
//! connection (so by destination: one GSO run per subscriber where the kernel allows).

use super::downstream::{RtxStream, SendHistory, SendReport, VIDEO_HISTORY, marshal_into};
use super::peer::{Peer, Read};
use super::tcp::{self, TcpEvent};
use super::{Command, RoomKey};
use crate::audio_level::{AUDIO_LEVEL_URI, ActiveSpeakers, extmap_id, parse_level};
use crate::demux::{Demux, PacketClass, Route, classify};
use crate::forwarder::{Forwarder, RtpFields};
use crate::ice_tcp::IceTcpListener;
use crate::negotiation::{Negotiation, NextStep};
use crate::room::SPEAKER_INTERVAL;
use crate::rtc::{NetSettings, OPUS_CLOCK_RATE, OPUS_PT, VP8_CLOCK_RATE, VP8_PT};
use crate::rtcp::{KeyframeLimiter, is_keyframe_request};
use crate::stats::Counters;
use crate::udp::{BatchSocket, BufferPool, Datagram, Outgoing};
use crate::{IceCandidate, ParticipantEvent, ParticipantId, PcKind, SfuError, TrackKind};
use bytes::BytesMut;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::TransportProtocol;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::mpsc;

/// Addresses one connection may be reached from at once (a browser's candidate pairs).
const MAX_ADDRS_PER_PC: usize = 4;
/// Receive calls handled per wake before commands and timers get a turn.
const RECV_CALLS_PER_WAKE: usize = 16;
/// Datagrams waiting for a writable socket before the oldest are dropped.
const MAX_OUTGOING: usize = 8192;
/// How soon datagrams the kernel refused (its send buffer full) are offered again. The
/// socket is not registered for writability: edge-triggered, that reports an event after
/// every send, which cost a second `epoll_wait` per wake.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);
/// Connection timers (rtc's NACK generation and TWCC feedback every 100 ms, reports, ICE,
/// DTLS retransmissions) are served on a shared grid of this step instead of each at its
/// own instant: a due timer waits at most this long, and a room's connections share one
/// wake instead of each costing its own. Packets arriving in between serve due timers too.
const TIMER_GRID: Duration = Duration::from_millis(20);
/// How often deadlines (connect timeouts) and active speakers are looked at.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How often each subscribe connection gets its sender reports (RFC 3550 §6.2: about
/// every few seconds at these bandwidths; browsers use them for lip sync and RTT).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Ssrc-free "sender" of the PLIs the SFU sends.
const PLI_SENDER_SSRC: u32 = 0;

/// What a worker needs besides its socket.
pub(crate) struct Settings {
    pub net: NetSettings,
    pub connect_timeout: Duration,
    pub ingress_max_age: Duration,
    pub pli_min_interval: Duration,
    pub counters: Arc<Counters>,
    #[cfg(feature = "test-tap")]
    pub tap: crate::tap::TapSlot,
}

/// A member's key on its worker.
type MemberKey = u64;
/// A published track's key on its worker.
type TrackKey = u64;

/// Which connection a datagram belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PcKey {
    member: MemberKey,
    kind: PcKind,
}

/// Where a down track is in its negotiation: media flows only when the subscriber has
/// answered the offer naming it and its connection has SRTP keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Added,
    Offered,
    Answered,
    Live,
}

/// One published track as forwarded to one subscriber.
struct Down {
    track: TrackKey,
    sender: RTCRtpSenderId,
    /// The SSRC it sends as (what the subscriber's RTCP names).
    ssrc: u32,
    forwarder: Forwarder,
    /// What a NACK may ask for again (video only: browsers do not NACK Opus).
    history: Option<SendHistory>,
    /// The SSRC its retransmissions are announced with (video).
    rtx_ssrc: Option<u32>,
    /// Where retransmissions go when the subscriber took RTX; without, they are sent
    /// again as they were.
    rtx: Option<RtxStream>,
    /// Counters and clock of its sender reports.
    report: SendReport,
    stage: Stage,
    /// No keyframe was asked for it yet.
    fresh: bool,
}

/// A subscribe transceiver whose down track was removed, on its way to being reusable: its
/// removal must reach the subscriber (offered, then answered) before another track may
/// take it, or the browser could see one m-line change its track without an `ontrack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freed {
    Pending,
    Offered,
    Ready,
}

struct Member {
    room: RoomKey,
    id: ParticipantId,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    publish: Option<Peer>,
    subscribe: Option<Peer>,
    /// Candidates for a connection not built yet.
    early: Vec<(PcKind, IceCandidate)>,
    negotiation: Negotiation,
    downs: Vec<Down>,
    /// Subscribe transceivers freed by removed down tracks.
    freed: Vec<(TrackKind, Freed)>,
    /// Tracks this member publishes, by its track id.
    published: HashMap<String, TrackKey>,
    audio_level_ext: u8,
    closed_sent: bool,
}

impl Member {
    fn peer(&mut self, kind: PcKind) -> Option<&mut Peer> {
        match kind {
            PcKind::Publish => self.publish.as_mut(),
            PcKind::Subscribe => self.subscribe.as_mut(),
        }
    }

    fn send(&self, event: ParticipantEvent) {
        let _ = self.events.send(event);
    }
}

struct Track {
    room: RoomKey,
    publisher: MemberKey,
    publisher_id: ParticipantId,
    track_id: String,
    kind: TrackKind,
    receiver: RTCRtpReceiverId,
    media_ssrc: u32,
    limiter: KeyframeLimiter,
    /// RFC 6464 levels since the last sample: (packets, sum).
    levels: (u32, u32),
    subscribers: Vec<MemberKey>,
}

struct Room {
    name: String,
    members: BTreeMap<ParticipantId, MemberKey>,
    tracks: Vec<TrackKey>,
    speakers: ActiveSpeakers,
}

struct Worker {
    settings: Settings,
    local: std::net::SocketAddr,
    /// Shared with the ICE-TCP tasks of this thread (they look up ufrags).
    demux: Rc<RefCell<Demux<PcKey>>>,
    /// The ICE-TCP listening address, when ICE-TCP is on.
    local_tcp: Option<std::net::SocketAddr>,
    /// Open ICE-TCP connections by peer address: their PeerConnection and output.
    tcp_conns: HashMap<std::net::SocketAddr, (PcKey, mpsc::Sender<BytesMut>)>,
    /// The last nominating Binding request of each ICE-TCP connection whose
    /// PeerConnection is not connected yet (see [`Worker::tcp_event`]).
    tcp_nominations: HashMap<std::net::SocketAddr, BytesMut>,
    rooms: HashMap<RoomKey, Room>,
    members: HashMap<MemberKey, Member>,
    tracks: HashMap<TrackKey, Track>,
    next_key: u64,
    ssrc_seed: u32,
    /// Connections that may have something to send.
    dirty: HashSet<PcKey>,
    outgoing: Vec<Outgoing>,
    next_housekeeping: Instant,
    next_speakers: Instant,
    next_reports: Instant,
    /// Origin of the timer grid ([`TIMER_GRID`]).
    epoch: Instant,
    /// Send buffers, reused: forwarded packets are marshalled and protected in one, and
    /// `send_batch` gives it back once sent.
    pool: BufferPool,
}

/// The first grid point (`epoch` + k × [`TIMER_GRID`]) at or after `t`.
fn on_grid(epoch: Instant, t: Instant) -> Instant {
    let step = TIMER_GRID.as_nanos();
    let since = t.saturating_duration_since(epoch).as_nanos();
    let steps = u32::try_from(since.div_ceil(step)).unwrap_or(u32::MAX);
    epoch + TIMER_GRID * steps
}

/// The worker thread's body: a current-thread runtime around [`Worker::run`].
pub(crate) fn run(
    socket: BatchSocket,
    ice_tcp: Option<IceTcpListener>,
    commands: mpsc::UnboundedReceiver<Command>,
    settings: Settings,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(%err, "media worker cannot start its runtime");
            return;
        }
    };
    let local = socket.local_addr();
    let now = Instant::now();
    let worker = Worker {
        settings,
        local,
        demux: Rc::new(RefCell::new(Demux::new(MAX_ADDRS_PER_PC))),
        local_tcp: ice_tcp.as_ref().map(IceTcpListener::local_addr),
        tcp_conns: HashMap::new(),
        tcp_nominations: HashMap::new(),
        rooms: HashMap::new(),
        members: HashMap::new(),
        tracks: HashMap::new(),
        next_key: 1,
        ssrc_seed: rand::random(),
        dirty: HashSet::new(),
        outgoing: Vec::new(),
        next_housekeeping: now + HOUSEKEEPING,
        next_speakers: now + SPEAKER_INTERVAL,
        next_reports: now + SENDER_REPORT_INTERVAL,
        epoch: now,
        pool: BufferPool::default(),
    };
    // A LocalSet: the ICE-TCP tasks share this thread (and its demux) with the loop.
    let local_set = tokio::task::LocalSet::new();
    local_set.block_on(&runtime, async move {
        let (tcp_tx, tcp_rx) = mpsc::unbounded_channel();
        if let Some(listener) = ice_tcp {
            tokio::task::spawn_local(tcp::listen(listener, Rc::clone(&worker.demux), tcp_tx));
        }
        worker.run(socket, commands, tcp_rx).await;
    });
}

impl Worker {
    async fn run(
        mut self,
        socket: BatchSocket,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tcp_events: mpsc::UnboundedReceiver<TcpEvent>,
    ) {
        // SAFETY: the AsyncFd owns the BatchSocket, whose descriptor stays open and the
        // same until the AsyncFd drops it.
        let registered = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
        let mut socket = match registered {
            Ok(fd) => fd,
            Err(err) => {
                tracing::error!(%err, "media worker cannot register its socket");
                return;
            }
        };
        tracing::info!(addr = %self.local, "media worker started");
        let mut batch: Vec<Datagram> = Vec::with_capacity(64);
        // One timer, moved only when the deadline moves (not a new one every wake).
        let timer = tokio::time::sleep_until(self.next_deadline().into());
        tokio::pin!(timer);
        let recv_batch = socket.get_ref().capabilities().recv_batch;
        loop {
            self.flush(&mut socket);
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                command = commands.recv() => {
                    match command {
                        None => break,
                        Some(Command::Shutdown { reply }) => {
                            self.close_everything();
                            self.flush(&mut socket);
                            let _ = reply.send(());
                            break;
                        }
                        Some(command) => self.command(command),
                    }
                }
                ready = socket.ready_mut(Interest::READABLE) => {
                    let Ok(mut guard) = ready else { break };
                    if guard.ready().is_readable() {
                        for _ in 0..RECV_CALLS_PER_WAKE {
                            batch.clear();
                            match guard.get_inner_mut().recv_batch(&mut batch) {
                                Ok(received) => {
                                    // Fewer than a full batch: the socket was drained, and
                                    // asking again would cost a system call that finds
                                    // nothing. What arrives from now on raises readiness
                                    // anew (tokio keeps a newer event's readiness).
                                    let drained = received < recv_batch;
                                    let now = Instant::now();
                                    let wall = unix_time();
                                    for datagram in batch.drain(..) {
                                        self.datagram(now, wall, datagram);
                                    }
                                    self.drain_dirty();
                                    // Send each batch's fan-out at once: held for the whole
                                    // wake it could outgrow MAX_OUTGOING in a large room.
                                    group_by_destination(&mut self.outgoing);
                                    if let Err(err) = guard.get_inner_mut().send_batch(&mut self.outgoing, &mut self.pool)
                                        && err.kind() != io::ErrorKind::WouldBlock
                                    {
                                        tracing::warn!(%err, "UDP send");
                                    }
                                    if drained {
                                        guard.clear_ready_matching(Ready::READABLE);
                                        break;
                                    }
                                }
                                Err(err) => {
                                    if err.kind() == io::ErrorKind::WouldBlock {
                                        guard.clear_ready_matching(Ready::READABLE);
                                    } else {
                                        tracing::debug!(%err, "UDP receive");
                                    }
                                    break;
                                }
                            }
                        }
                    }
                }
                Some(event) = tcp_events.recv() => self.tcp_event(event),
                () = &mut timer => {}
            }
            self.timers(Instant::now());
        }
        let udp = socket.get_ref().stats();
        tracing::info!(
            addr = %self.local,
            recv_syscalls = udp.recv_syscalls,
            recv_datagrams = udp.recv_datagrams,
            send_syscalls = udp.send_syscalls,
            send_messages = udp.send_messages,
            send_datagrams = udp.send_datagrams,
            "media worker stopped"
        );
    }

    /// Sends what is queued; what the kernel does not take now waits for writability.
    fn flush(&mut self, socket: &mut AsyncFd<BatchSocket>) {
        self.drain_dirty();
        if self.outgoing.is_empty() {
            return;
        }
        group_by_destination(&mut self.outgoing);
        if let Err(err) = socket
            .get_mut()
            .send_batch(&mut self.outgoing, &mut self.pool)
            && err.kind() != io::ErrorKind::WouldBlock
        {
            tracing::warn!(%err, "UDP send");
        }
        if self.outgoing.len() > MAX_OUTGOING {
            let excess = self.outgoing.len() - MAX_OUTGOING;
            self.outgoing.drain(..excess);
            self.settings
                .counters
                .dropped_packets
                .fetch_add(excess as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// When the loop must wake without traffic: the first timer, moved up to the grid, or
    /// sooner to offer a send backlog again.
    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_housekeeping.min(self.next_reports);
        for member in self.members.values() {
            for peer in [&member.publish, &member.subscribe].into_iter().flatten() {
                if let Some(t) = peer.next_timeout
                    && t < deadline
                {
                    deadline = t;
                }
            }
        }
        let deadline = on_grid(self.epoch, deadline);
        if self.outgoing.is_empty() {
            deadline
        } else {
            deadline.min(Instant::now() + BACKLOG_RETRY)
        }
    }

    fn key(&mut self) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    /// A fresh down-track SSRC (unique, not revealing join order).
    fn next_ssrc(&mut self) -> u32 {
        loop {
            let n = self.key() as u32;
            if let Some(ssrc) = crate::sfu::scramble_ssrc(n, self.ssrc_seed) {
                return ssrc;
            }
        }
    }

    // ----- commands -------------------------------------------------------------------

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::OpenRoom { room, name } => {
                self.rooms.insert(
                    room,
                    Room {
                        name,
                        members: BTreeMap::new(),
                        tracks: Vec::new(),
                        speakers: ActiveSpeakers::default(),
                    },
                );
            }
            Command::CloseRoom { room } => {
                let members: Vec<MemberKey> = self
                    .rooms
                    .get(&room)
                    .map(|r| r.members.values().copied().collect())
                    .unwrap_or_default();
                for member in members {
                    self.remove_member(member);
                }
                if let Some(room) = self.rooms.remove(&room) {
                    tracing::debug!(room = %room.name, "room closed on its worker");
                }
            }
            Command::Join { room, id, events } => self.join(room, id, events),
            Command::PublishOffer {
                room,
                id,
                sdp,
                reply,
            } => {
                let result = self.publish_offer(now, room, id, &sdp);
                let _ = reply.send(result);
            }
            Command::SubscribeAnswer {
                room,
                id,
                sdp,
                reply,
            } => {
                let result = self.subscribe_answer(now, room, id, &sdp);
                let _ = reply.send(result);
            }
            Command::Candidate {
                room,
                id,
                pc,
                candidate,
                reply,
            } => {
                let result = self.candidate(room, id, pc, candidate);
                let _ = reply.send(result);
            }
            Command::Leave { room, id, reply } => {
                if let Some(key) = self.member_key(room, id) {
                    self.remove_member(key);
                }
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                self.close_everything();
                let _ = reply.send(());
            }
            #[cfg(feature = "test-tap")]
            Command::Stall(duration) => std::thread::sleep(duration),
        }
    }

    fn member_key(&self, room: RoomKey, id: ParticipantId) -> Option<MemberKey> {
        self.rooms.get(&room)?.members.get(&id).copied()
    }

    fn join(
        &mut self,
        room_key: RoomKey,
        id: ParticipantId,
        events: mpsc::UnboundedSender<ParticipantEvent>,
    ) {
        let key = self.key();
        let Some(room) = self.rooms.get_mut(&room_key) else {
            let _ = events.send(ParticipantEvent::Closed {
                reason: "the room is closed".into(),
            });
            return;
        };
        if room.members.contains_key(&id) {
            let _ = events.send(ParticipantEvent::Closed {
                reason: format!("participant {id} is already in the room"),
            });
            return;
        }
        room.members.insert(id, key);
        let existing = room.tracks.clone();
        tracing::info!(room = %room.name, participant = id, "joined");
        self.members.insert(
            key,
            Member {
                room: room_key,
                id,
                events,
                publish: None,
                subscribe: None,
                early: Vec::new(),
                negotiation: Negotiation::default(),
                downs: Vec::new(),
                freed: Vec::new(),
                published: HashMap::new(),
                audio_level_ext: 0,
                closed_sent: false,
            },
        );
        Counters::inc(&self.settings.counters.participants);
        for track in existing {
            self.subscribe(key, track);
        }
        self.renegotiate(key);
    }

    fn publish_offer(
        &mut self,
        now: Instant,
        room: RoomKey,
        id: ParticipantId,
        sdp: &str,
    ) -> Result<String, SfuError> {
        let key = self.member_key(room, id).ok_or(SfuError::ParticipantGone)?;
        self.ensure_peer(key, PcKind::Publish)?;
        let timeout = self.settings.connect_timeout;
        let member = self
            .members
            .get_mut(&key)
            .ok_or(SfuError::ParticipantGone)?;
        let peer = member.publish.as_mut().ok_or(SfuError::ParticipantGone)?;
        let answer = peer.answer(now, sdp, timeout)?;
        member.audio_level_ext = extmap_id(sdp, AUDIO_LEVEL_URI).unwrap_or(0);
        // rtc reports no track ending: a track the new offer no longer sends has ended.
        let sending = super::sdp::sending_track_ids(sdp);
        let ended: Vec<TrackKey> = member
            .published
            .iter()
            .filter(|(id, _)| !sending.contains(*id))
            .map(|(_, k)| *k)
            .collect();
        self.dirty.insert(PcKey {
            member: key,
            kind: PcKind::Publish,
        });
        for track in ended {
            self.unpublish(track);
        }
        Ok(answer)
    }

    fn subscribe_answer(
        &mut self,
        now: Instant,
        room: RoomKey,
        id: ParticipantId,
        sdp: &str,
    ) -> Result<(), SfuError> {
        let key = self.member_key(room, id).ok_or(SfuError::ParticipantGone)?;
        let timeout = self.settings.connect_timeout;
        let member = self
            .members
            .get_mut(&key)
            .ok_or(SfuError::ParticipantGone)?;
        let Some(peer) = member.subscribe.as_mut() else {
            return Err(SfuError::NoOfferOutstanding);
        };
        let next = member
            .negotiation
            .answered()
            .map_err(|_| SfuError::NoOfferOutstanding)?;
        if let Err(err) = peer.apply_answer(now, sdp, timeout) {
            member.negotiation.answer_rejected();
            return Err(err);
        }
        for down in &mut member.downs {
            if down.stage == Stage::Offered {
                down.stage = Stage::Answered;
                // The subscriber's answer says whether it takes RTX for this track.
                down.rtx = down
                    .rtx_ssrc
                    .zip(peer.rtx_payload_type(down.sender))
                    .map(|(ssrc, payload_type)| RtxStream::new(ssrc, payload_type));
            }
        }
        for freed in &mut member.freed {
            if freed.1 == Freed::Offered {
                freed.1 = Freed::Ready;
            }
        }
        self.dirty.insert(PcKey {
            member: key,
            kind: PcKind::Subscribe,
        });
        self.go_live(now, key);
        if next == NextStep::Offer {
            self.renegotiate(key);
        }
        Ok(())
    }

    fn candidate(
        &mut self,
        room: RoomKey,
        id: ParticipantId,
        kind: PcKind,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        let key = self.member_key(room, id).ok_or(SfuError::ParticipantGone)?;
        let member = self
            .members
            .get_mut(&key)
            .ok_or(SfuError::ParticipantGone)?;
        if let Some(peer) = member.peer(kind) {
            return peer.add_candidate(candidate);
        }
        if member.early.len() >= super::peer::MAX_PENDING_CANDIDATES {
            return Err(SfuError::BadCandidate(
                "too many candidates before the offer".into(),
            ));
        }
        member.early.push((kind, candidate));
        Ok(())
    }

    /// Builds the member's `kind` connection if it has none yet.
    fn ensure_peer(&mut self, key: MemberKey, kind: PcKind) -> Result<(), SfuError> {
        let member = self
            .members
            .get_mut(&key)
            .ok_or(SfuError::ParticipantGone)?;
        if member.peer(kind).is_some() {
            return Ok(());
        }
        let mut peer = Peer::new(kind, self.local, self.local_tcp, self.settings.net)?;
        let pc_key = PcKey { member: key, kind };
        self.demux
            .borrow_mut()
            .register_ufrag(&peer.ufrag, pc_key)
            .map_err(|e| SfuError::Rtc(format!("register ICE ufrag: {e}")))?;
        let early = std::mem::take(&mut member.early);
        for (k, candidate) in early {
            if k == kind {
                if let Err(err) = peer.add_candidate(candidate) {
                    tracing::debug!(%err, "early candidate rejected");
                }
            } else {
                member.early.push((k, candidate));
            }
        }
        peer.refresh_timeout();
        match kind {
            PcKind::Publish => member.publish = Some(peer),
            PcKind::Subscribe => member.subscribe = Some(peer),
        }
        Ok(())
    }

    // ----- rooms and tracks -----------------------------------------------------------

    /// A publisher's new track: announce it and subscribe everyone else.
    fn publish_track(
        &mut self,
        publisher: MemberKey,
        track_id: String,
        kind: TrackKind,
        receiver: RTCRtpReceiverId,
        media_ssrc: u32,
    ) {
        let Some(member) = self.members.get(&publisher) else {
            return;
        };
        if let Some(existing) = member.published.get(&track_id) {
            // rtc announces a track again after every renegotiation of the publish
            // connection: keep the track, follow its receiver.
            if let Some(track) = self.tracks.get_mut(existing) {
                track.receiver = receiver;
                track.media_ssrc = media_ssrc;
            }
            return;
        }
        let (room_key, publisher_id) = (member.room, member.id);
        let key = self.key();
        let Some(room) = self.rooms.get_mut(&room_key) else {
            return;
        };
        room.tracks.push(key);
        let others: Vec<MemberKey> = room
            .members
            .values()
            .copied()
            .filter(|m| *m != publisher)
            .collect();
        tracing::info!(room = %room.name, participant = publisher_id, %track_id, ?kind, "track published");
        self.tracks.insert(
            key,
            Track {
                room: room_key,
                publisher,
                publisher_id,
                track_id: track_id.clone(),
                kind,
                receiver,
                media_ssrc,
                limiter: KeyframeLimiter::new(self.settings.pli_min_interval),
                levels: (0, 0),
                subscribers: Vec::new(),
            },
        );
        if let Some(member) = self.members.get_mut(&publisher) {
            member.published.insert(track_id, key);
        }
        Counters::inc(&self.settings.counters.tracks);
        for other in others {
            self.subscribe(other, key);
            self.renegotiate(other);
        }
    }

    /// Adds a down track of `track` to `subscriber`'s subscribe connection (offered at the
    /// next renegotiation).
    fn subscribe(&mut self, subscriber: MemberKey, track: TrackKey) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let (publisher_id, track_id, kind) = (t.publisher_id, t.track_id.clone(), t.kind);
        if let Err(err) = self.ensure_peer(subscriber, PcKind::Subscribe) {
            tracing::warn!(%err, "cannot build the subscribe connection");
            self.report_closed(subscriber, format!("cannot start media: {err}"));
            return;
        }
        let ssrc = self.next_ssrc();
        let rtx_ssrc = (kind == TrackKind::Video).then(|| self.next_ssrc());
        let Some(member) = self.members.get_mut(&subscriber) else {
            return;
        };
        let Some(peer) = member.subscribe.as_mut() else {
            return;
        };
        // Reuse only when no removal of this kind is still on its way: `add_track` takes
        // the first free transceiver of the kind, which must be a negotiated one.
        let reuse = member.freed.contains(&(kind, Freed::Ready))
            && !member
                .freed
                .iter()
                .any(|(k, f)| *k == kind && *f != Freed::Ready);
        let sender = match peer.add_down_track(
            &publisher_id.to_string(),
            &track_id,
            kind,
            ssrc,
            rtx_ssrc,
            reuse,
        ) {
            Ok(sender) => {
                if reuse
                    && let Some(i) = member.freed.iter().position(|f| *f == (kind, Freed::Ready))
                {
                    member.freed.swap_remove(i);
                }
                sender
            }
            Err(err) => {
                tracing::warn!(participant = member.id, %track_id, %err, "cannot subscribe");
                return;
            }
        };
        let payload_type = match kind {
            TrackKind::Audio => OPUS_PT,
            TrackKind::Video => VP8_PT,
        };
        let (history, clock_rate) = match kind {
            TrackKind::Audio => (None, OPUS_CLOCK_RATE),
            TrackKind::Video => (Some(SendHistory::new(VIDEO_HISTORY)), VP8_CLOCK_RATE),
        };
        member.downs.push(Down {
            track,
            sender,
            ssrc,
            forwarder: Forwarder::new(ssrc, payload_type),
            history,
            rtx_ssrc,
            rtx: None,
            report: SendReport::new(clock_rate),
            stage: Stage::Added,
            fresh: true,
        });
        member.negotiation.changed();
        member.send(ParticipantEvent::TrackPublished {
            publisher: publisher_id,
            track_id,
            kind,
        });
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subscribers.push(subscriber);
        }
    }

    /// Removes `track` from `subscriber` (the track ended or its publisher left).
    fn unsubscribe(&mut self, subscriber: MemberKey, track: TrackKey) {
        let Some(member) = self.members.get_mut(&subscriber) else {
            return;
        };
        let Some(index) = member.downs.iter().position(|d| d.track == track) else {
            return;
        };
        let down = member.downs.swap_remove(index);
        if let Some(peer) = member.subscribe.as_mut() {
            match peer.remove_down_track(down.sender) {
                Ok(()) => {
                    if let Some(t) = self.tracks.get(&track) {
                        member.freed.push((t.kind, Freed::Pending));
                    }
                }
                Err(err) => tracing::debug!(%err, "remove down track"),
            }
        }
        if let Some(t) = self.tracks.get(&track) {
            member.send(ParticipantEvent::TrackUnpublished {
                publisher: t.publisher_id,
                track_id: t.track_id.clone(),
            });
        }
        member.negotiation.changed();
        self.renegotiate(subscriber);
    }

    /// A published track is gone: every subscriber drops it.
    fn unpublish(&mut self, track: TrackKey) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let subscribers = t.subscribers.clone();
        for subscriber in subscribers {
            self.unsubscribe(subscriber, track);
        }
        if let Some(t) = self.tracks.remove(&track) {
            if let Some(room) = self.rooms.get_mut(&t.room) {
                room.tracks.retain(|k| *k != track);
            }
            if let Some(member) = self.members.get_mut(&t.publisher) {
                member.published.remove(&t.track_id);
            }
            Counters::dec(&self.settings.counters.tracks);
        }
    }

    /// Sends a new subscribe offer if one is due and none is in flight.
    fn renegotiate(&mut self, key: MemberKey) {
        let now = Instant::now();
        let Some(member) = self.members.get_mut(&key) else {
            return;
        };
        if !member.negotiation.should_offer() {
            return;
        }
        let Some(peer) = member.subscribe.as_mut() else {
            return;
        };
        match peer.offer(now) {
            Ok(sdp) => {
                member.negotiation.offer_sent();
                for down in &mut member.downs {
                    if down.stage == Stage::Added {
                        down.stage = Stage::Offered;
                    }
                }
                for freed in &mut member.freed {
                    if freed.1 == Freed::Pending {
                        freed.1 = Freed::Offered;
                    }
                }
                if peer.connect_deadline.is_none() && !peer.connected {
                    peer.connect_deadline = Some(now + self.settings.connect_timeout);
                }
                member.send(ParticipantEvent::SubscribeOffer { sdp });
                self.dirty.insert(PcKey {
                    member: key,
                    kind: PcKind::Subscribe,
                });
            }
            Err(err) => {
                member.negotiation.offer_failed();
                tracing::warn!(participant = member.id, %err, "cannot create a subscribe offer");
            }
        }
    }

    /// Down tracks that are answered on a connected subscribe connection start carrying
    /// media; a video one asks its publisher for a keyframe.
    fn go_live(&mut self, now: Instant, key: MemberKey) {
        let Some(member) = self.members.get_mut(&key) else {
            return;
        };
        if !member.subscribe.as_ref().is_some_and(|p| p.connected) {
            return;
        }
        let mut wanted = Vec::new();
        for down in &mut member.downs {
            if down.stage == Stage::Answered {
                down.stage = Stage::Live;
            }
            if down.stage == Stage::Live && down.fresh {
                down.fresh = false;
                wanted.push(down.track);
            }
        }
        for track in wanted {
            self.request_keyframe(now, track);
        }
    }

    /// Sends a PLI for `track` to its publisher, rate-limited.
    fn request_keyframe(&mut self, now: Instant, track: TrackKey) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        if t.kind != TrackKind::Video || !t.limiter.allow(now) {
            return;
        }
        let (publisher, receiver, media_ssrc) = (t.publisher, t.receiver, t.media_ssrc);
        let Some(peer) = self
            .members
            .get_mut(&publisher)
            .and_then(|m| m.publish.as_mut())
        else {
            return;
        };
        let Some(mut rtp_receiver) = peer.pc.rtp_receiver(receiver) else {
            return;
        };
        match rtp_receiver.write_rtcp(
            now,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: PLI_SENDER_SSRC,
                media_ssrc,
            })],
        ) {
            Ok(()) => {
                Counters::inc(&self.settings.counters.keyframe_requests);
                self.dirty.insert(PcKey {
                    member: publisher,
                    kind: PcKind::Publish,
                });
            }
            Err(err) => tracing::debug!(%err, "send PLI"),
        }
    }

    /// Tells signaling the participant must go (it then calls leave).
    fn report_closed(&mut self, key: MemberKey, reason: String) {
        if let Some(member) = self.members.get_mut(&key)
            && !member.closed_sent
        {
            member.closed_sent = true;
            tracing::info!(participant = member.id, %reason, "media closed");
            member.send(ParticipantEvent::Closed { reason });
        }
    }

    fn remove_member(&mut self, key: MemberKey) {
        let Some(member) = self.members.get(&key) else {
            return;
        };
        let published: Vec<TrackKey> = member.published.values().copied().collect();
        let subscribed: Vec<TrackKey> = member.downs.iter().map(|d| d.track).collect();
        for track in published {
            self.unpublish(track);
        }
        for track in subscribed {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.subscribers.retain(|m| *m != key);
            }
        }
        let Some(mut member) = self.members.remove(&key) else {
            return;
        };
        for kind in [PcKind::Publish, PcKind::Subscribe] {
            let pc_key = PcKey { member: key, kind };
            self.demux.borrow_mut().unregister(pc_key);
            self.dirty.remove(&pc_key);
            if let Some(peer) = member.peer(kind) {
                if let Err(err) = peer.pc.close() {
                    tracing::debug!(%err, "close");
                }
                // DTLS close_notify, so the client learns at once.
                while let Some(out) = peer.pc.poll_write() {
                    route_output(
                        &mut self.outgoing,
                        &self.tcp_conns,
                        out,
                        &self.settings.counters,
                    );
                }
            }
        }
        // Dropping their output side ends the connections' tasks (and closes them).
        self.tcp_conns.retain(|_, (k, _)| k.member != key);
        let tcp_conns = &self.tcp_conns;
        self.tcp_nominations
            .retain(|peer, _| tcp_conns.contains_key(peer));
        if let Some(room) = self.rooms.get_mut(&member.room) {
            room.members.remove(&member.id);
            room.speakers.remove(member.id);
            tracing::info!(room = %room.name, participant = member.id, "left");
        }
        Counters::dec(&self.settings.counters.participants);
    }

    fn close_everything(&mut self) {
        let keys: Vec<MemberKey> = self.members.keys().copied().collect();
        for key in keys {
            self.remove_member(key);
        }
        self.rooms.clear();
    }

    // ----- ICE over TCP ------------------------------------------------------------------

    fn tcp_event(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened { peer, key, out } => {
                if self.members.contains_key(&key.member) {
                    self.tcp_conns.insert(peer, (key, out));
                }
            }
            TcpEvent::Frame {
                peer,
                key,
                frame,
                received,
            } => {
                let now = Instant::now();
                if self.shed(&frame, now.saturating_duration_since(received)) {
                    return;
                }
                let Some(pc) = self
                    .members
                    .get_mut(&key.member)
                    .and_then(|m| m.peer(key.kind))
                else {
                    return;
                };
                // rtc's ICE-lite agent answers a nomination only once its own triggered
                // check of the pair has succeeded; a nomination that arrives earlier gets
                // no answer. Over UDP the browser retransmits it; over TCP it never does
                // (RFC 6544), and the pair would hang. So the nomination is kept and fed
                // again when the browser answers our check: the agent then selects the
                // pair and answers the browser's still-open transaction.
                let replay = if pc.connected {
                    self.tcp_nominations.remove(&peer);
                    None
                } else if tcp::is_nomination(&frame) {
                    self.tcp_nominations.insert(peer, frame.clone());
                    None
                } else if tcp::is_binding_success(&frame) {
                    self.tcp_nominations.get(&peer).cloned()
                } else {
                    None
                };
                // Whatever path each took, `drain` collects it all.
                pc.read(now, peer, frame, true);
                if let Some(nomination) = replay {
                    pc.read(now, peer, nomination, true);
                }
                self.drain(now, key);
                self.drain_dirty();
            }
            TcpEvent::Closed { peer } => {
                self.tcp_conns.remove(&peer);
                self.tcp_nominations.remove(&peer);
            }
        }
    }

    // ----- the packet path -------------------------------------------------------------

    fn datagram(&mut self, now: Instant, wall: Duration, datagram: Datagram) {
        if let Some(received) = datagram.received
            && self.shed(&datagram.data, wall.saturating_sub(received))
        {
            return;
        }
        let route = self.demux.borrow_mut().route(datagram.from, &datagram.data);
        let key = match route {
            Route::Known(key) | Route::Learned { key, .. } => key,
            Route::Unknown | Route::Invalid => return,
        };
        let Some(peer) = self
            .members
            .get_mut(&key.member)
            .and_then(|m| m.peer(key.kind))
        else {
            return;
        };
        match peer.read(now, datagram.from, datagram.data, false) {
            Read::Media => self.forward_media(now, key),
            Read::Full => self.drain(now, key),
        }
    }

    /// Handles the media a connection's short read path yielded (no events came with it),
    /// and marks it for sending and a new timer (its interceptors saw the packet).
    fn forward_media(&mut self, now: Instant, key: PcKey) {
        self.dirty.insert(key);
        loop {
            let Some(message) = self
                .members
                .get_mut(&key.member)
                .and_then(|m| m.peer(key.kind))
                .and_then(Peer::next_media)
            else {
                return;
            };
            self.pc_message(now, key, message);
        }
    }

    /// Whether a received packet that waited `age` is dropped unprocessed (and counted):
    /// media older than the bound, under overload. STUN and DTLS are always handled — a
    /// late keepalive still keeps a connection alive.
    fn shed(&mut self, data: &[u8], age: Duration) -> bool {
        let stale = age > self.settings.ingress_max_age && classify(data) == PacketClass::Rtp;
        if stale {
            Counters::inc(&self.settings.counters.shed_packets);
        }
        stale
    }

    /// Handles everything a connection has to say after it was fed: events, received
    /// RTP/RTCP (forwarded at once), and marks it for sending.
    fn drain(&mut self, now: Instant, key: PcKey) {
        self.dirty.insert(key);
        self.take_events(now, key);
    }

    fn pc_event(&mut self, now: Instant, key: PcKey, event: RTCPeerConnectionEvent) {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                tracing::debug!(pc = ?key.kind, %state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        if let Some(peer) = self
                            .members
                            .get_mut(&key.member)
                            .and_then(|m| m.peer(key.kind))
                        {
                            peer.connected = true;
                            peer.connect_deadline = None;
                        }
                        if key.kind == PcKind::Subscribe {
                            self.go_live(now, key.member);
                        }
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.report_closed(
                            key.member,
                            format!("{:?} connection {state}", key.kind),
                        );
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if key.kind == PcKind::Publish =>
            {
                let kind = self
                    .members
                    .get_mut(&key.member)
                    .and_then(|m| m.publish.as_mut())
                    .and_then(|p| {
                        p.pc.rtp_receiver(init.receiver_id)
                            .map(|r| r.track().kind())
                    });
                let kind = match kind {
                    Some(RtpCodecKind::Audio) => TrackKind::Audio,
                    Some(RtpCodecKind::Video) => TrackKind::Video,
                    _ => {
                        tracing::debug!(track_id = %init.track_id, "ignoring track of unknown kind");
                        return;
                    }
                };
                self.publish_track(key.member, init.track_id, kind, init.receiver_id, init.ssrc);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id))
                if key.kind == PcKind::Publish =>
            {
                let track = self
                    .members
                    .get(&key.member)
                    .and_then(|m| m.published.get(&track_id).copied());
                if let Some(track) = track {
                    self.unpublish(track);
                }
            }
            _ => {}
        }
    }

    fn pc_message(&mut self, now: Instant, key: PcKey, message: TaggedRTCMessage) {
        match message.message {
            RTCMessage::RtpPacket(track_id, packet) if key.kind == PcKind::Publish => {
                self.forward(now, key.member, &track_id, packet);
            }
            RTCMessage::RtcpPacket(_, packets) if key.kind == PcKind::Subscribe => {
                for nack in packets
                    .iter()
                    .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
                {
                    self.answer_nack(now, key.member, nack);
                }
                // The message's track tag comes from its first packet only: map each
                // keyframe request by the SSRC it names instead.
                let wanted: Vec<TrackKey> = packets
                    .iter()
                    .filter(|p| is_keyframe_request(p.as_ref()))
                    .flat_map(|p| p.destination_ssrc())
                    .filter_map(|ssrc| {
                        self.members
                            .get(&key.member)
                            .and_then(|m| m.downs.iter().find(|d| d.ssrc == ssrc).map(|d| d.track))
                    })
                    .collect();
                for track in wanted {
                    self.request_keyframe(now, track);
                }
            }
            _ => {}
        }
    }

    /// Fans one received RTP packet out to every live subscriber of its track.
    fn forward(
        &mut self,
        now: Instant,
        publisher: MemberKey,
        track_id: &str,
        mut packet: rtc::rtp::Packet,
    ) {
        let counters = Arc::clone(&self.settings.counters);
        let Some(member) = self.members.get(&publisher) else {
            return;
        };
        let level_ext = member.audio_level_ext;
        let Some(track_key) = member.published.get(track_id).copied() else {
            return;
        };
        let Some(track) = self.tracks.get_mut(&track_key) else {
            return;
        };
        track.media_ssrc = packet.header.ssrc;
        if track.kind == TrackKind::Audio
            && level_ext != 0
            && let Some(level) = packet
                .header
                .get_extension(level_ext)
                .and_then(|e| parse_level(&e))
        {
            track.levels.0 += 1;
            track.levels.1 += u32::from(level);
        }
        // Extensions are negotiated per connection; the subscriber's leg has its own ids.
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extensions_padding = 0;
        packet.header.csrc.clear();
        #[cfg(feature = "test-tap")]
        self.settings
            .tap
            .record(track.publisher_id, &track.track_id, &packet.payload);
        let source = RtpFields {
            ssrc: packet.header.ssrc,
            payload_type: packet.header.payload_type,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
        };
        let payload_len = packet.payload.len();
        for &subscriber in &track.subscribers {
            let Some(member) = self.members.get_mut(&subscriber) else {
                continue;
            };
            let Some(down) = member
                .downs
                .iter_mut()
                .find(|d| d.track == track_key && d.stage == Stage::Live)
            else {
                continue;
            };
            let Some(peer) = member.subscribe.as_mut() else {
                continue;
            };
            let mut fields = source;
            down.forwarder.rewrite(&mut fields);
            packet.header.ssrc = fields.ssrc;
            packet.header.payload_type = fields.payload_type;
            packet.header.sequence_number = fields.sequence_number;
            packet.header.timestamp = fields.timestamp;
            match protect_rtp(peer, now, &packet, &mut self.pool) {
                Some(out) => {
                    down.report.sent(now, fields.timestamp, payload_len);
                    if let Some(history) = &mut down.history {
                        history.push(&packet);
                    }
                    route_output(&mut self.outgoing, &self.tcp_conns, out, &counters);
                    Counters::inc(&counters.forwarded_packets);
                    counters
                        .forwarded_bytes
                        .fetch_add(payload_len as u64, std::sync::atomic::Ordering::Relaxed);
                }
                None => Counters::inc(&counters.dropped_packets),
            }
        }
    }

    /// Sends again, from the history of the stream `media_ssrc` names, the packets a
    /// subscriber's NACK lists (those still kept; the rest are too old to help).
    fn answer_nack(&mut self, now: Instant, subscriber: MemberKey, nack: &TransportLayerNack) {
        let Some(member) = self.members.get_mut(&subscriber) else {
            return;
        };
        let Some(Down {
            history: Some(history),
            rtx,
            ..
        }) = member
            .downs
            .iter_mut()
            .find(|d| d.ssrc == nack.media_ssrc && d.stage == Stage::Live)
        else {
            return;
        };
        let Some(peer) = member.subscribe.as_mut() else {
            return;
        };
        let counters = &self.settings.counters;
        for pair in &nack.nacks {
            for sequence_number in pair.packet_list() {
                let Some(mut packet) = history.resend(sequence_number, now) else {
                    continue;
                };
                if let Some(rtx) = rtx {
                    packet = rtx.wrap(&packet);
                }
                if let Some(out) = protect_rtp(peer, now, &packet, &mut self.pool) {
                    route_output(&mut self.outgoing, &self.tcp_conns, out, counters);
                    Counters::inc(&counters.retransmitted_packets);
                }
            }
        }
    }

    /// Sends every subscribe connection one compound RTCP packet with a sender report for
    /// each stream that has sent anything (what rtc's report interceptor did before
    /// forwarded packets bypassed it).
    fn sender_reports(&mut self, now: Instant) {
        let wall = SystemTime::now();
        for member in self.members.values_mut() {
            let reports: Vec<Box<dyn rtc::rtcp::Packet>> = member
                .downs
                .iter()
                .filter(|d| d.stage == Stage::Live)
                .filter_map(|d| d.report.report(d.ssrc, now, wall))
                .map(|sr| Box::new(sr) as Box<dyn rtc::rtcp::Packet>)
                .collect();
            if reports.is_empty() {
                continue;
            }
            let Some(peer) = member.subscribe.as_mut() else {
                continue;
            };
            let sent = rtc::rtcp::packet::marshal(&reports)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    peer.pc
                        .protect_rtcp_bypass(now, &bytes)
                        .map_err(|e| e.to_string())
                });
            match sent {
                Ok(Some(out)) => route_output(
                    &mut self.outgoing,
                    &self.tcp_conns,
                    out,
                    &self.settings.counters,
                ),
                Ok(None) => {}
                Err(err) => tracing::debug!(%err, "sender report"),
            }
        }
    }

    /// Collects what every touched connection wants to send, grouped by connection.
    fn drain_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let now = Instant::now();
        let dirty: Vec<PcKey> = self.dirty.drain().collect();
        for key in dirty {
            // Events first: an API call (offer, answer) may have produced some.
            self.take_events(now, key);
            let Some(peer) = self
                .members
                .get_mut(&key.member)
                .and_then(|m| m.peer(key.kind))
            else {
                continue;
            };
            while let Some(out) = peer.pc.poll_write() {
                route_output(
                    &mut self.outgoing,
                    &self.tcp_conns,
                    out,
                    &self.settings.counters,
                );
            }
            peer.refresh_timeout();
        }
    }

    /// Handles a connection's events and received RTP/RTCP until it has none.
    fn take_events(&mut self, now: Instant, key: PcKey) {
        loop {
            let Some(peer) = self
                .members
                .get_mut(&key.member)
                .and_then(|m| m.peer(key.kind))
            else {
                return;
            };
            if let Some(event) = peer.pc.poll_event() {
                self.pc_event(now, key, event);
                continue;
            }
            let Some(message) = peer.pc.poll_read() else {
                return;
            };
            self.pc_message(now, key, message);
        }
    }

    // ----- timers ----------------------------------------------------------------------

    fn timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (&member, m) in &self.members {
            for (kind, peer) in [
                (PcKind::Publish, &m.publish),
                (PcKind::Subscribe, &m.subscribe),
            ] {
                if let Some(peer) = peer
                    && peer.next_timeout.is_some_and(|t| t <= now)
                {
                    due.push(PcKey { member, kind });
                }
            }
        }
        for key in due {
            if let Some(peer) = self
                .members
                .get_mut(&key.member)
                .and_then(|m| m.peer(key.kind))
            {
                peer.on_timer(now);
                peer.next_timeout = None;
            }
            self.drain(now, key);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.deadlines(now);
        }
        if now >= self.next_speakers {
            self.next_speakers = now + SPEAKER_INTERVAL;
            self.sample_speakers();
        }
        if now >= self.next_reports {
            self.next_reports = now + SENDER_REPORT_INTERVAL;
            self.sender_reports(now);
        }
        self.drain_dirty();
    }

    /// Connections that did not come up in time end their participant.
    fn deadlines(&mut self, now: Instant) {
        let late: Vec<(MemberKey, PcKind)> = self
            .members
            .iter()
            .flat_map(|(&key, m)| {
                [
                    (PcKind::Publish, &m.publish),
                    (PcKind::Subscribe, &m.subscribe),
                ]
                .into_iter()
                .filter_map(move |(kind, peer)| {
                    peer.as_ref()
                        .filter(|p| !p.connected && p.connect_deadline.is_some_and(|d| d <= now))
                        .map(|_| (key, kind))
                })
            })
            .collect();
        for (key, kind) in late {
            if let Some(peer) = self.members.get_mut(&key).and_then(|m| m.peer(kind)) {
                peer.connect_deadline = None;
            }
            self.report_closed(
                key,
                format!(
                    "{kind:?} connection not established within {:?}",
                    self.settings.connect_timeout
                ),
            );
        }
    }

    fn sample_speakers(&mut self) {
        let tracks = &mut self.tracks;
        for room in self.rooms.values_mut() {
            let mut samples: Vec<(ParticipantId, u32, u32)> = Vec::new();
            for key in &room.tracks {
                if let Some(t) = tracks.get_mut(key)
                    && t.kind == TrackKind::Audio
                {
                    let (count, sum) = std::mem::take(&mut t.levels);
                    samples.push((t.publisher_id, count, sum));
                }
            }
            if let Some(ids) = room.speakers.update(&samples) {
                for member in room.members.values().filter_map(|k| self.members.get(k)) {
                    member.send(ParticipantEvent::ActiveSpeakers { ids: ids.clone() });
                }
            }
        }
    }
}

/// Now as time since the Unix epoch: the clock of the kernel's receive timestamps.
fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Orders what is queued by destination, keeping each destination's order: a fan-out
/// interleaves subscribers packet by packet, and runs to one destination can share one
/// GSO send.
fn group_by_destination(outgoing: &mut [Outgoing]) {
    outgoing.sort_by_key(|o| o.to);
}

/// Marshals `packet` into a pooled buffer and protects it there with the subscriber
/// connection's SRTP context, past rtc's handler chain (see `third_party/rtc/PATCHES.md`).
/// `None` (counted by the caller) while the connection has no keys or no selected pair, or
/// when the packet cannot be protected; the buffer goes back to the pool then.
fn protect_rtp(
    peer: &mut Peer,
    now: Instant,
    packet: &rtc::rtp::Packet,
    pool: &mut BufferPool,
) -> Option<rtc::shared::TaggedBytesMut> {
    let mut buf = pool.take();
    if let Err(err) = marshal_into(packet, &mut buf) {
        tracing::trace!(%err, "marshal RTP");
        pool.give(buf);
        return None;
    }
    match peer.pc.protect_rtp_bypass(now, &mut buf, &packet.header) {
        Ok(Some(transport)) => Some(rtc::shared::TaggedBytesMut {
            now,
            transport,
            message: buf,
        }),
        Ok(None) => {
            pool.give(buf);
            None
        }
        Err(err) => {
            tracing::trace!(%err, "protect RTP");
            pool.give(buf);
            None
        }
    }
}

/// Sends a connection's output where it goes: UDP datagrams to the batch, TCP frames to
/// their connection's task (dropped and counted when its queue is full or it is gone).
fn route_output(
    outgoing: &mut Vec<Outgoing>,
    tcp_conns: &HashMap<std::net::SocketAddr, (PcKey, mpsc::Sender<BytesMut>)>,
    out: rtc::shared::TaggedBytesMut,
    counters: &Counters,
) {
    if out.transport.transport_protocol == TransportProtocol::TCP {
        let sent = tcp_conns
            .get(&out.transport.peer_addr)
            .is_some_and(|(_, tx)| tx.try_send(out.message).is_ok());
        if !sent {
            Counters::inc(&counters.dropped_packets);
        }
        return;
    }
    outgoing.push(Outgoing {
        to: out.transport.peer_addr,
        data: out.message,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_wait_for_the_next_grid_point_and_no_longer() {
        let epoch = Instant::now();
        assert_eq!(on_grid(epoch, epoch), epoch);
        assert_eq!(on_grid(epoch, epoch - Duration::from_secs(1)), epoch);
        let step = TIMER_GRID;
        assert_eq!(on_grid(epoch, epoch + step), epoch + step);
        assert_eq!(
            on_grid(epoch, epoch + step + Duration::from_nanos(1)),
            epoch + step * 2
        );
        for ms in [1u64, 7, 19, 21, 99, 1_001, 86_400_000] {
            let t = epoch + Duration::from_millis(ms);
            let woken = on_grid(epoch, t);
            assert!(woken >= t && woken - t < step, "{ms} ms → {woken:?}");
            assert_eq!((woken - epoch).as_nanos() % step.as_nanos(), 0);
        }
    }
}
