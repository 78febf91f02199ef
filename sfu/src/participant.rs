//! Participants: two PeerConnections and the actor that owns them.
//!
//! A participant takes no media resources until it needs them: its publish PC (and its UDP
//! port) is built by its client's first publish offer, its subscribe PC when there is a
//! first track to send it. Participants that join and never start media hold nothing the
//! next participant needs, and a PC that has not connected
//! [`SfuConfig::connect_timeout`](crate::SfuConfig) after its first offer/answer ends the
//! participant ([`ParticipantEvent::Closed`]), which releases everything.
//!
//! Every participant runs one actor task that owns its publish and subscribe PCs and does
//! all their WebRTC work in order: the client's offers, answers and candidates (from
//! [`ActorHandle`]), subscriptions the room asks for, and PC events (new tracks,
//! candidates, failures). One owner means no locks around a PC and a natural queue for
//! renegotiation ([`Negotiation`]): changes that arrive while an offer is out are folded
//! into the next one.
//!
//! Events for the client go through an unbounded hand-off to a pump task that feeds the
//! bounded channel signaling reads, so neither the room nor the actor ever waits on a slow
//! signaling connection.

use crate::audio_level::{AUDIO_LEVEL_URI, extmap_id};
use crate::down_track::{DownTrack, DownTrackQueue};
use crate::negotiation::Negotiation;
use crate::receiver::{self, Receiver, ReceiverInit};
use crate::room::{Member, Room};
use crate::rtc::{OPUS_PT, Pc, PcEvent, RemoteTrack, VP8_PT};
use crate::sfu::Shared;
use crate::{IceCandidate, ParticipantEvent, ParticipantId, PcKind, SfuError, TrackKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Remote candidates kept while a PC has no remote description yet.
const MAX_PENDING_CANDIDATES: usize = 32;
/// How long `leave()` waits for the actor to close its PCs.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a participant's actor is asked to do.
pub(crate) enum Cmd {
    /// The client's publish offer; reply with our answer.
    PublishOffer(String, oneshot::Sender<Result<String, SfuError>>),
    /// The client's answer to our subscribe offer.
    SubscribeAnswer(String, oneshot::Sender<Result<(), SfuError>>),
    /// A client ICE candidate.
    Candidate(PcKind, IceCandidate, oneshot::Sender<Result<(), SfuError>>),
    /// Start receiving another participant's track.
    Subscribe(Arc<Receiver>),
    /// Stop receiving a track (it ended or its publisher left).
    Unsubscribe(Arc<Receiver>),
    /// Close everything; reply when done.
    Leave(oneshot::Sender<()>),
}

/// One participant's handle on its actor (behind [`crate::ParticipantHandle`]). Cheap to clone.
#[derive(Clone)]
pub(crate) struct ActorHandle {
    id: ParticipantId,
    room: Arc<Room>,
    /// Not the whole [`Member`]: the handle must not keep the event stream open after leave.
    cmds: mpsc::UnboundedSender<Cmd>,
    left: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl ActorHandle {
    /// This participant's id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// Client offered on its publish PC; returns the SFU's answer SDP.
    pub async fn publish_offer(&self, sdp: &str) -> Result<String, SfuError> {
        self.ask(|tx| Cmd::PublishOffer(sdp.to_owned(), tx)).await?
    }

    /// Client answered the SFU's last subscribe offer.
    pub async fn subscribe_answer(&self, sdp: &str) -> Result<(), SfuError> {
        self.ask(|tx| Cmd::SubscribeAnswer(sdp.to_owned(), tx))
            .await?
    }

    /// Adds a client ICE candidate to one of the participant's PCs. Candidates that arrive
    /// before the PC has a remote description are kept until it has one.
    pub async fn add_ice_candidate(
        &self,
        pc: PcKind,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        self.ask(|tx| Cmd::Candidate(pc, candidate, tx)).await?
    }

    /// Idempotent: closes both PCs, removes its tracks from every subscriber, tells the room.
    pub async fn leave(&self) {
        leave(&self.shared, &self.room, self.id, &self.cmds, &self.left).await;
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, SfuError> {
        if self.left.load(Ordering::Acquire) {
            return Err(SfuError::ParticipantGone);
        }
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(cmd(tx))
            .map_err(|_| SfuError::ParticipantGone)?;
        rx.await.map_err(|_| SfuError::ParticipantGone)
    }
}

/// Removes a participant from its room and closes its PCs (idempotent).
pub(crate) async fn leave(
    shared: &Shared,
    room: &Arc<Room>,
    id: ParticipantId,
    cmds: &mpsc::UnboundedSender<Cmd>,
    left: &AtomicBool,
) {
    if left.swap(true, Ordering::AcqRel) {
        return;
    }
    room.remove(id);
    shared.counters.participants.fetch_sub(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    if cmds.send(Cmd::Leave(tx)).is_ok() {
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, rx).await;
    }
    tracing::info!(room = %room.name, participant = id, "left");
}

/// Everything `spawn` needs to start a participant.
pub(crate) struct Parts {
    pub id: ParticipantId,
    pub room: Arc<Room>,
    pub member: Member,
    pub shared: Arc<Shared>,
    pub cmds: mpsc::UnboundedReceiver<Cmd>,
}

/// Starts the participant's actor and returns its handle.
pub(crate) fn spawn(parts: Parts) -> ActorHandle {
    let handle = ActorHandle {
        id: parts.id,
        room: Arc::clone(&parts.room),
        cmds: parts.member.cmds.clone(),
        left: Arc::clone(&parts.member.left),
        shared: Arc::clone(&parts.shared),
    };
    let (pc_tx, pc_events) = mpsc::unbounded_channel();
    let actor = Actor {
        id: parts.id,
        room: parts.room,
        events: parts.member.events.clone(),
        shared: parts.shared,
        pc_tx,
        publish: None,
        subscribe: None,
        early_candidates: Vec::new(),
        negotiation: Negotiation::default(),
        subscriptions: Vec::new(),
        published: Vec::new(),
        audio_level_ext: None,
        closed_sent: false,
    };
    tokio::spawn(actor.run(parts.cmds, pc_events));
    handle
}

struct PcState {
    pc: Pc,
    connect_timeout: Duration,
    has_remote: bool,
    connected: bool,
    deadline: Option<Instant>,
    pending: Vec<IceCandidate>,
}

impl PcState {
    fn new(pc: Pc, connect_timeout: Duration) -> Self {
        Self {
            pc,
            connect_timeout,
            has_remote: false,
            connected: false,
            deadline: None,
            pending: Vec::new(),
        }
    }

    /// A description was exchanged: apply held candidates, start the connect timer.
    async fn negotiated(&mut self) {
        self.has_remote = true;
        if !self.connected && self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.connect_timeout);
        }
        for candidate in std::mem::take(&mut self.pending) {
            if let Err(err) = self.pc.add_candidate(candidate).await {
                tracing::debug!(%err, "held candidate rejected");
            }
        }
    }
}

struct Subscription {
    receiver: Arc<Receiver>,
    down_track: DownTrack,
    /// Added since the subscriber last connected/answered: wants a keyframe once it can.
    fresh: bool,
    /// Where the subscriber stands on this down track.
    stage: Stage,
}

/// How far a down track got in the subscribe negotiation.
///
/// Media flows only once the subscriber has answered an offer naming the track: webrtc-rs
/// sends on a sender from the moment it is added, and Firefox mis-routes RTP that reaches
/// it before the offer announcing its SSRC (it never decodes that track afterwards). And
/// only once the subscribe PC is connected: before DTLS has given it SRTP keys, webrtc-rs
/// drops every packet with a warning (a log line per forwarded packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not in any offer yet.
    Added,
    /// In the offer that waits for its answer.
    Offered,
    /// Answered, waiting for the subscribe PC to connect.
    Answered,
    /// Answered and connected: attached to the publisher's fan-out.
    Live,
}

struct Actor {
    id: ParticipantId,
    room: Arc<Room>,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    shared: Arc<Shared>,
    /// Handed to each PC built, for its events.
    pc_tx: mpsc::UnboundedSender<PcEvent>,
    /// Built by the client's first publish offer.
    publish: Option<PcState>,
    /// Built when the first down track is added.
    subscribe: Option<PcState>,
    /// Client candidates for a PC that was not built yet.
    early_candidates: Vec<(PcKind, IceCandidate)>,
    negotiation: Negotiation,
    subscriptions: Vec<Subscription>,
    published: Vec<(Arc<Receiver>, JoinHandle<()>)>,
    audio_level_ext: Option<u8>,
    closed_sent: bool,
}

impl Actor {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut pc_events: mpsc::UnboundedReceiver<PcEvent>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Leave(done)) => {
                        self.close().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                Some(event) = pc_events.recv() => self.on_pc_event(event).await,
                _ = tick.tick() => self.check_deadlines(),
            }
            if cmds.is_empty() && self.negotiation.should_offer() {
                self.send_offer().await;
            }
        }
        self.close().await;
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::PublishOffer(sdp, reply) => {
                let _ = reply.send(self.publish_offer(&sdp).await);
            }
            Cmd::SubscribeAnswer(sdp, reply) => {
                let _ = reply.send(self.subscribe_answer(&sdp).await);
            }
            Cmd::Candidate(kind, candidate, reply) => {
                let _ = reply.send(self.candidate(kind, candidate).await);
            }
            Cmd::Subscribe(receiver) => self.subscribe(receiver).await,
            Cmd::Unsubscribe(receiver) => self.unsubscribe(&receiver).await,
            Cmd::Leave(_) => {} // handled in run()
        }
    }

    async fn publish_offer(&mut self, sdp: &str) -> Result<String, SfuError> {
        // Read before applying: tracks announced by this offer may start right away.
        self.audio_level_ext = extmap_id(sdp, AUDIO_LEVEL_URI);
        let publish = self.pc_state(PcKind::Publish).await?;
        let answer = publish.pc.answer(sdp).await?;
        publish.negotiated().await;
        Ok(answer)
    }

    /// The PC of `kind`, built (taking a port) and handed the candidates that waited for
    /// it on first use.
    async fn pc_state(&mut self, kind: PcKind) -> Result<&mut PcState, SfuError> {
        let slot = match kind {
            PcKind::Publish => &mut self.publish,
            PcKind::Subscribe => &mut self.subscribe,
        };
        if slot.is_none() {
            let pc = self.shared.build_pc(kind, &self.pc_tx).await?;
            let mut state = PcState::new(pc, self.shared.config.connect_timeout);
            let (early, others) = std::mem::take(&mut self.early_candidates)
                .into_iter()
                .partition(|(k, _)| *k == kind);
            self.early_candidates = others;
            state.pending = early.into_iter().map(|(_, c)| c).collect();
            tracing::debug!(participant = self.id, pc = ?kind, "PeerConnection built");
            *slot = Some(state);
        }
        slot.as_mut()
            .ok_or_else(|| SfuError::Rtc("PeerConnection missing".into()))
    }

    async fn subscribe_answer(&mut self, sdp: &str) -> Result<(), SfuError> {
        let Some(subscribe) = self.subscribe.as_mut() else {
            return Err(SfuError::NoOfferOutstanding);
        };
        self.negotiation
            .answered()
            .map_err(|_| SfuError::NoOfferOutstanding)?;
        if let Err(err) = subscribe.pc.apply_answer(sdp).await {
            // Our offer is still the one outstanding; the client may answer again.
            self.negotiation.answer_rejected();
            return Err(err);
        }
        subscribe.negotiated().await;
        for sub in &mut self.subscriptions {
            if sub.stage == Stage::Offered {
                sub.stage = Stage::Answered;
            }
        }
        self.go_live();
        Ok(())
    }

    /// Once the subscribe PC is connected, attaches every answered down track to its
    /// publisher's fan-out and asks for keyframes where a subscriber needs one.
    fn go_live(&mut self) {
        if !self.subscribe.as_ref().is_some_and(|s| s.connected) {
            return;
        }
        for sub in &mut self.subscriptions {
            if sub.stage == Stage::Answered {
                sub.stage = Stage::Live;
                sub.receiver.attach(Arc::clone(&sub.down_track.queue));
            }
        }
        self.request_fresh_keyframes();
    }

    async fn candidate(&mut self, kind: PcKind, candidate: IceCandidate) -> Result<(), SfuError> {
        let slot = match kind {
            PcKind::Publish => &mut self.publish,
            PcKind::Subscribe => &mut self.subscribe,
        };
        let Some(state) = slot else {
            if self.early_candidates.len() >= MAX_PENDING_CANDIDATES {
                return Err(SfuError::BadCandidate(
                    "too many candidates before the offer".into(),
                ));
            }
            self.early_candidates.push((kind, candidate));
            return Ok(());
        };
        if state.has_remote {
            state.pc.add_candidate(candidate).await
        } else if state.pending.len() < MAX_PENDING_CANDIDATES {
            state.pending.push(candidate);
            Ok(())
        } else {
            Err(SfuError::BadCandidate(
                "too many candidates before the offer".into(),
            ))
        }
    }

    async fn subscribe(&mut self, receiver: Arc<Receiver>) {
        if receiver.is_closed()
            || self
                .subscriptions
                .iter()
                .any(|s| Arc::ptr_eq(&s.receiver, &receiver))
        {
            return;
        }
        if let Err(err) = self.pc_state(PcKind::Subscribe).await {
            tracing::warn!(participant = self.id, %err, "cannot build the subscribe connection");
            self.report_closed(format!("cannot start media: {err}"));
            return;
        }
        let Some(subscribe) = &self.subscribe else {
            return;
        };
        let ssrc = self.shared.next_ssrc();
        let local = match subscribe
            .pc
            .add_down_track(
                receiver.publisher.to_string(),
                receiver.track_id.clone(),
                receiver.kind,
                ssrc,
            )
            .await
        {
            Ok(local) => local,
            Err(err) => {
                tracing::warn!(participant = self.id, track_id = %receiver.track_id, %err,
                    "cannot subscribe");
                return;
            }
        };
        let payload_type = match receiver.kind {
            TrackKind::Audio => OPUS_PT,
            TrackKind::Video => VP8_PT,
        };
        let (queue, rx) = DownTrackQueue::new(self.id);
        let down_track = DownTrack::start(
            queue,
            rx,
            local,
            ssrc,
            payload_type,
            Arc::clone(&receiver),
            Arc::clone(&self.shared.counters),
        );
        let _ = self.events.send(ParticipantEvent::TrackPublished {
            publisher: receiver.publisher,
            track_id: receiver.track_id.clone(),
            kind: receiver.kind,
        });
        self.subscriptions.push(Subscription {
            receiver,
            down_track,
            fresh: true,
            stage: Stage::Added,
        });
        self.negotiation.changed();
    }

    async fn unsubscribe(&mut self, receiver: &Arc<Receiver>) {
        let Some(index) = self
            .subscriptions
            .iter()
            .position(|s| Arc::ptr_eq(&s.receiver, receiver))
        else {
            return;
        };
        let sub = self.subscriptions.swap_remove(index);
        receiver.detach(&sub.down_track.queue);
        if let Some(subscribe) = &self.subscribe
            && let Err(err) = subscribe.pc.remove_down_track(&sub.down_track.local).await
        {
            tracing::debug!(%err, "remove down track");
        }
        let _ = self.events.send(ParticipantEvent::TrackUnpublished {
            publisher: receiver.publisher,
            track_id: receiver.track_id.clone(),
        });
        self.negotiation.changed();
    }

    async fn send_offer(&mut self) {
        let Some(subscribe) = self.subscribe.as_mut() else {
            return;
        };
        match subscribe.pc.offer().await {
            Ok(sdp) => {
                self.negotiation.offer_sent();
                for sub in &mut self.subscriptions {
                    if sub.stage == Stage::Added {
                        sub.stage = Stage::Offered;
                    }
                }
                if !subscribe.connected && subscribe.deadline.is_none() {
                    subscribe.deadline = Some(Instant::now() + subscribe.connect_timeout);
                }
                let _ = self.events.send(ParticipantEvent::SubscribeOffer { sdp });
            }
            Err(err) => {
                tracing::warn!(participant = self.id, %err, "subscribe offer failed");
                self.negotiation.offer_failed();
            }
        }
    }

    async fn on_pc_event(&mut self, event: PcEvent) {
        let kind = match &event {
            PcEvent::LocalCandidate(kind, _)
            | PcEvent::Connected(kind)
            | PcEvent::Failed(kind, _) => Some(*kind),
            PcEvent::Track(_) => None,
        };
        let state = match kind {
            Some(PcKind::Publish) => self.publish.as_mut(),
            Some(PcKind::Subscribe) => self.subscribe.as_mut(),
            None => None,
        };
        match event {
            PcEvent::LocalCandidate(pc, candidate) => {
                // Host candidates are gathered at once and put in the SDP; trickle only
                // what the SDP could not carry (gathering outlived the wait).
                if state.is_some_and(|s| !s.pc.sdp_has_all_candidates()) {
                    let _ = self
                        .events
                        .send(ParticipantEvent::IceCandidate { pc, candidate });
                }
            }
            PcEvent::Connected(kind) => {
                if let Some(state) = state {
                    state.connected = true;
                    state.deadline = None;
                }
                if kind == PcKind::Subscribe {
                    for sub in &mut self.subscriptions {
                        sub.fresh = true;
                    }
                    self.go_live();
                }
            }
            PcEvent::Failed(kind, reason) => {
                tracing::debug!(participant = self.id, pc = ?kind, "PeerConnection failed");
                self.report_closed(reason);
            }
            PcEvent::Track(track) => self.on_track(track),
        }
    }

    fn on_track(&mut self, track: RemoteTrack) {
        let receiver = Receiver::new(
            ReceiverInit {
                publisher: self.id,
                track_id: track.track_id.clone(),
                kind: track.kind,
                audio_level_ext: self.audio_level_ext,
                pli_min_interval: self.shared.config.pli_min_interval,
                counters: Arc::clone(&self.shared.counters),
                #[cfg(feature = "test-tap")]
                tap: self.shared.tap.clone(),
            },
            Some(track.keyframe_requester()),
        );
        if !self.room.publish(Arc::clone(&receiver)) {
            receiver.close();
            return;
        }
        tracing::info!(room = %self.room.name, participant = self.id,
            track_id = %receiver.track_id, kind = ?receiver.kind, "track published");
        let room = Arc::clone(&self.room);
        let r = Arc::clone(&receiver);
        let task = tokio::spawn(async move {
            receiver::run(Arc::clone(&r), track).await;
            room.unpublish(&r);
        });
        self.published.push((receiver, task));
    }

    /// Asks the publisher of every newly live down track for a keyframe.
    fn request_fresh_keyframes(&mut self) {
        for sub in &mut self.subscriptions {
            if sub.fresh && sub.stage == Stage::Live {
                sub.fresh = false;
                sub.receiver.request_keyframe();
            }
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        let expired = [
            (
                PcKind::Publish,
                self.publish.as_ref().and_then(|s| s.deadline),
            ),
            (
                PcKind::Subscribe,
                self.subscribe.as_ref().and_then(|s| s.deadline),
            ),
        ]
        .into_iter()
        .find(|(_, deadline)| deadline.is_some_and(|d| now >= d));
        if let Some((kind, _)) = expired {
            self.report_closed(format!("{kind:?} connection timed out"));
        }
    }

    fn report_closed(&mut self, reason: String) {
        if self.closed_sent {
            return;
        }
        self.closed_sent = true;
        for state in [&mut self.publish, &mut self.subscribe]
            .into_iter()
            .flatten()
        {
            state.deadline = None;
        }
        tracing::info!(participant = self.id, %reason, "participant connection closed");
        let _ = self.events.send(ParticipantEvent::Closed { reason });
    }

    async fn close(&mut self) {
        for (receiver, task) in self.published.drain(..) {
            receiver.close();
            task.abort();
        }
        for sub in self.subscriptions.drain(..) {
            sub.receiver.detach(&sub.down_track.queue);
        }
        for state in [self.publish.take(), self.subscribe.take()]
            .into_iter()
            .flatten()
        {
            state.pc.close().await;
        }
    }
}
