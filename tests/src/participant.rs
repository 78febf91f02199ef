//! A native meeting participant: the signaling connection plus the two PeerConnections.
//!
//! [`Participant::join`] connects, creates the subscribe connection (the server offers on it
//! whenever tracks come and go; we answer), sends `join` and waits for `welcome`.
//! [`Participant::publish`] creates the publish connection with sendonly tracks and offers it.
//! A background driver routes SDP and ICE candidates between the server and the two
//! connections; everything else the server says arrives on [`Participant::events`], and
//! every received RTP packet on [`Participant::media`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::protocol::{
    Candidate, ClientMessage, MediaKind, ParticipantInfo, PcName, ServerMessage,
};
use crate::rtc::{LocalTrack, ReceivedRtp, RtcError, RtcEvent, RtcPeer, RtpSink};
use crate::signal::{Inbound, Outbound, SignalConnection, SignalError};

/// What can fail while joining or publishing.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// Signaling failed.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The media stack failed.
    #[error(transparent)]
    Rtc(#[from] RtcError),
    /// The server answered `join` with an error.
    #[error("join refused: {code}: {message}")]
    Refused {
        /// Error code.
        code: String,
        /// Error text.
        message: String,
    },
    /// The server said something unexpected.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// The participant's driver has stopped.
    #[error("participant is gone")]
    Gone,
}

/// How to join.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// `ws://host:port/ws`.
    pub url: String,
    /// Room name.
    pub room: String,
    /// Display name.
    pub name: String,
    /// 65-byte SEC1 public key (any 65 bytes if no E2EE is done).
    pub public_key: Vec<u8>,
    /// Optional access token.
    pub token: Option<String>,
    /// How many received packets may wait unread before new ones are dropped (counted).
    pub media_capacity: usize,
}

impl JoinOptions {
    /// Options with a placeholder public key and default capacity.
    pub fn new(url: &str, room: &str, name: &str) -> JoinOptions {
        let mut key = vec![4u8; 65];
        key[1..].iter_mut().for_each(|b| *b = rand::random());
        JoinOptions {
            url: url.to_owned(),
            room: room.to_owned(),
            name: name.to_owned(),
            public_key: key,
            token: None,
            media_capacity: 16_384,
        }
    }
}

/// Something that happened to the participant, other than media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A server message not handled by the driver (everything but SDP and ICE).
    Server(ServerMessage),
    /// A text frame that did not parse as a server message.
    Unparsed(String),
    /// A connection's state changed (lowercase W3C name).
    PcState(PcName, String),
    /// A forwarded track appeared on the subscribe connection.
    TrackOpened {
        /// Publisher id.
        publisher: Option<u64>,
        /// Track id.
        track_id: String,
        /// Kind.
        kind: MediaKind,
    },
    /// A forwarded track ended.
    TrackEnded {
        /// Publisher id.
        publisher: Option<u64>,
        /// Track id.
        track_id: String,
    },
    /// The driver could not apply something the server sent.
    DriverError(String),
    /// The signaling connection closed.
    Closed,
}

/// A participant's events, with a way to wait for a particular one without losing others.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    backlog: VecDeque<Event>,
}

const BACKLOG_LIMIT: usize = 10_000;

impl Events {
    /// The next event, or `None` when the participant is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        self.rx.recv().await
    }

    /// Events that arrived and were not consumed yet, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out: Vec<Event> = self.backlog.drain(..).collect();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }

    /// Waits up to `timeout` for the first event `f` maps to `Some`; other events are kept
    /// for later calls. `None` on timeout or when the participant is gone.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        if let Some(pos) = self.backlog.iter().position(|e| f(e).is_some()) {
            let e = self.backlog.remove(pos)?;
            return f(&e);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let e = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()??;
            if let Some(t) = f(&e) {
                return Some(t);
            }
            if self.backlog.len() >= BACKLOG_LIMIT {
                self.backlog.pop_front();
            }
            self.backlog.push_back(e);
        }
    }

    /// Waits for a server message `f` maps to `Some`.
    pub async fn wait_server<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Option<T> {
        self.wait_for(timeout, |e| match e {
            Event::Server(m) => f(m),
            _ => None,
        })
        .await
    }
}

/// Local candidates wait until the offer or answer they belong to has been sent.
#[derive(Default)]
struct CandidateGate {
    open: [bool; 2],
    pending: [Vec<Candidate>; 2],
}

fn slot(pc: PcName) -> usize {
    match pc {
        PcName::Publish => 0,
        PcName::Subscribe => 1,
    }
}

struct Shared {
    out: mpsc::UnboundedSender<Outbound>,
    gate: Mutex<CandidateGate>,
    publish: Mutex<Option<Arc<RtcPeer>>>,
    subscribe: Arc<RtcPeer>,
    publish_answered: watch::Sender<u64>,
    /// The first `error` the server sent after `welcome` (code, message), or why
    /// signaling ended: what a failed publish reports.
    server_error: watch::Sender<Option<(String, String)>>,
}

impl Shared {
    fn send(&self, m: ClientMessage) {
        let _ = self.out.send(Outbound::Json(m));
    }

    fn trickle(&self, pc: PcName, c: Candidate) {
        let Ok(mut g) = self.gate.lock() else { return };
        if g.open[slot(pc)] {
            self.send(ClientMessage::IceCandidate { pc, candidate: c });
        } else {
            g.pending[slot(pc)].push(c);
        }
    }

    /// Records the server's error unless an earlier one is recorded: the first one is
    /// the cause (a failed join's `internal` before the `not_joined` that follows it).
    fn first_error(&self, code: &str, message: &str) {
        self.server_error.send_if_modified(|e| {
            if e.is_some() {
                return false;
            }
            *e = Some((code.to_owned(), message.to_owned()));
            true
        });
    }

    /// Sends `m` (an offer or answer), then the candidates gathered meanwhile.
    fn send_description(&self, pc: PcName, m: ClientMessage) {
        let Ok(mut g) = self.gate.lock() else { return };
        self.send(m);
        g.open[slot(pc)] = true;
        for c in std::mem::take(&mut g.pending[slot(pc)]) {
            self.send(ClientMessage::IceCandidate { pc, candidate: c });
        }
    }
}

/// A joined participant.
pub struct Participant {
    /// Our server-assigned id.
    pub id: u64,
    /// The room.
    pub room: String,
    /// Who was there when we joined (ascending id).
    pub roster: Vec<ParticipantInfo>,
    /// Everything the server says that the driver does not handle itself.
    pub events: Events,
    /// Every RTP packet received on the subscribe connection.
    pub media: mpsc::Receiver<ReceivedRtp>,
    sink: RtpSink,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Participant {
    /// Connects, joins `opts.room` and waits up to 10 s for `welcome`.
    pub async fn join(opts: JoinOptions) -> Result<Participant, ParticipantError> {
        let conn = SignalConnection::connect(&opts.url).await?;
        let (out, mut incoming, writer) = conn.split();
        let (rtc_tx, mut rtc_rx) = mpsc::unbounded_channel();
        let (sink, media) = RtpSink::new(opts.media_capacity);
        let subscribe =
            Arc::new(RtcPeer::new(PcName::Subscribe, rtc_tx.clone(), Some(sink.clone())).await?);
        let (answered_tx, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            out,
            gate: Mutex::new(CandidateGate::default()),
            publish: Mutex::new(None),
            subscribe,
            publish_answered: answered_tx,
            server_error: watch::Sender::new(None),
        });
        shared.send(ClientMessage::join(
            &opts.room,
            &opts.name,
            &opts.public_key,
            opts.token.clone(),
        ));
        let welcome = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
            .await
            .map_err(|_| SignalError::Timeout(Duration::from_secs(10)))??;
        let (id, room, roster) = match welcome {
            Inbound::Message(ServerMessage::Welcome {
                id,
                room,
                participants,
                ..
            }) => (id, room, participants),
            Inbound::Message(ServerMessage::Error { code, message }) => {
                writer.abort();
                return Err(ParticipantError::Refused { code, message });
            }
            other => {
                writer.abort();
                return Err(ParticipantError::Unexpected(format!("{other:?}")));
            }
        };

        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let driver = {
            let shared = shared.clone();
            let ev_tx = ev_tx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        msg = incoming.recv() => match msg {
                            Ok(Inbound::Message(m)) => handle_server(&shared, &ev_tx, m).await,
                            Ok(Inbound::Unparsed(t)) => { let _ = ev_tx.send(Event::Unparsed(t)); }
                            Err(_) => {
                                shared.first_error(
                                    "closed",
                                    "the server closed the signaling connection",
                                );
                                let _ = ev_tx.send(Event::Closed);
                                break;
                            }
                        },
                        Some(e) = rtc_rx.recv() => handle_rtc(&shared, &ev_tx, e),
                    }
                }
            })
        };
        Ok(Participant {
            id,
            room,
            roster,
            events: Events {
                rx: ev_rx,
                backlog: VecDeque::new(),
            },
            media,
            sink,
            shared,
            tasks: vec![writer, driver],
        })
    }

    /// Publishes one sendonly track per entry of `kinds` with fresh unique track ids, waits
    /// for the server's answer and for the connection to be up, and returns the tracks.
    /// An `error` from the server since joining (e.g. the `internal` that follows
    /// `welcome` when the server could not add us to the media plane) fails it at once
    /// as [`ParticipantError::Refused`] with the first such error.
    pub async fn publish(&self, kinds: &[MediaKind]) -> Result<Vec<LocalTrack>, ParticipantError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pc = Arc::new(RtcPeer::new(PcName::Publish, tx, None).await?);
        let stream_id = format!("sealed-{}", self.id);
        let mut tracks = Vec::new();
        for kind in kinds {
            let track_id = format!(
                "{}-{}-{:016x}",
                match kind {
                    MediaKind::Audio => "audio",
                    MediaKind::Video => "video",
                },
                self.id,
                rand::random::<u64>()
            );
            tracks.push(pc.add_send_track(*kind, &track_id, &stream_id).await?);
        }
        // Candidates of the publish connection flow through the driver like the others.
        self.spawn_rtc_forwarder(rx);
        if let Ok(mut p) = self.shared.publish.lock() {
            *p = Some(pc.clone());
        }
        let mut answered = self.shared.publish_answered.subscribe();
        let before = *answered.borrow();
        let mut errors = self.shared.server_error.subscribe();
        // An error that arrived before we asked (e.g. right after `welcome`) counts too.
        let pending = errors.borrow_and_update().clone();
        if let Some((code, message)) = pending {
            return Err(ParticipantError::Refused { code, message });
        }
        let sdp = pc.create_offer().await?;
        self.shared
            .send_description(PcName::Publish, ClientMessage::PublishOffer { sdp });
        let wait = async {
            tokio::select! {
                answer = answered.wait_for(|n| *n > before) => {
                    answer.map(|_| ()).map_err(|_| ParticipantError::Gone)
                }
                Ok(refusal) = errors.wait_for(Option::is_some) => {
                    let (code, message) = refusal.clone().unwrap_or_default();
                    Err(ParticipantError::Refused { code, message })
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .map_err(|_| SignalError::Timeout(Duration::from_secs(10)))??;
        pc.wait_connected(Duration::from_secs(10)).await?;
        Ok(tracks)
    }

    fn spawn_rtc_forwarder(&self, mut rx: mpsc::UnboundedReceiver<RtcEvent>) {
        let shared = self.shared.clone();
        // Events of the publish connection are only candidates and state changes; state is
        // not reported as an event (publish() waits for it directly).
        let t = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let RtcEvent::LocalCandidate(pc, c) = e {
                    shared.trickle(pc, c);
                }
            }
        });
        // Not joined on drop: it ends with the connection's handler.
        drop(t);
    }

    /// Sends a protocol message.
    pub fn send(&self, m: ClientMessage) {
        self.shared.send(m);
    }

    /// Sends any frame (for bad-input tests).
    pub fn send_raw(&self, out: Outbound) {
        let _ = self.shared.out.send(out);
    }

    /// Sends an `e2ee` message.
    pub fn send_e2ee(&self, to: u64, payload: &[u8]) {
        self.shared.send(ClientMessage::e2ee(to, payload));
    }

    /// Asks the publisher of a received track for a keyframe (PLI), as a decoder would.
    pub async fn request_keyframe(&self, publisher: u64, track_id: &str) -> Result<(), RtcError> {
        self.shared
            .subscribe
            .request_keyframe(publisher, track_id)
            .await
    }

    /// Received packets dropped because `media` was not read fast enough.
    pub fn media_overflow(&self) -> u64 {
        self.sink.overflow()
    }

    /// Subscribe connection state.
    pub fn subscribe_state(&self) -> String {
        self.shared.subscribe.state()
    }

    /// Sends `leave`, closes both connections and the WebSocket.
    pub async fn leave(mut self) {
        self.shared.send(ClientMessage::Leave {});
        self.close_inner().await;
    }

    /// Closes everything without saying `leave` (like a closed browser tab).
    pub async fn disconnect(mut self) {
        self.close_inner().await;
    }

    async fn close_inner(&mut self) {
        let _ = self.shared.out.send(Outbound::Close);
        let publish = self.shared.publish.lock().ok().and_then(|mut p| p.take());
        if let Some(p) = publish {
            p.close().await;
        }
        self.shared.subscribe.close().await;
        // Let the writer flush `leave` and the close frame.
        if let Some(writer) = self.tasks.first_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn handle_server(shared: &Arc<Shared>, ev: &mpsc::UnboundedSender<Event>, m: ServerMessage) {
    let result: Result<(), RtcError> = match m {
        ServerMessage::PublishAnswer { sdp } => {
            let pc = shared.publish.lock().ok().and_then(|p| p.clone());
            match pc {
                Some(pc) => {
                    let r = pc.set_answer(&sdp).await;
                    shared.publish_answered.send_modify(|n| *n += 1);
                    r
                }
                None => Err(RtcError::WebRtc("publish_answer without an offer".into())),
            }
        }
        ServerMessage::SubscribeOffer { sdp } => match shared.subscribe.answer_offer(&sdp).await {
            Ok(answer) => {
                shared.send_description(
                    PcName::Subscribe,
                    ClientMessage::SubscribeAnswer { sdp: answer },
                );
                Ok(())
            }
            Err(e) => Err(e),
        },
        ServerMessage::IceCandidate { pc, candidate } => match pc {
            PcName::Subscribe => shared.subscribe.add_remote_candidate(candidate).await,
            PcName::Publish => {
                let pc = shared.publish.lock().ok().and_then(|p| p.clone());
                match pc {
                    Some(pc) => pc.add_remote_candidate(candidate).await,
                    None => Err(RtcError::WebRtc(
                        "publish candidate without an offer".into(),
                    )),
                }
            }
        },
        other => {
            if let ServerMessage::Error { code, message } = &other {
                shared.first_error(code, message);
            }
            let _ = ev.send(Event::Server(other));
            Ok(())
        }
    };
    if let Err(e) = result {
        let _ = ev.send(Event::DriverError(e.to_string()));
    }
}

fn handle_rtc(shared: &Arc<Shared>, ev: &mpsc::UnboundedSender<Event>, e: RtcEvent) {
    match e {
        RtcEvent::LocalCandidate(pc, c) => shared.trickle(pc, c),
        RtcEvent::State(pc, s) => {
            let _ = ev.send(Event::PcState(pc, s));
        }
        RtcEvent::TrackOpened {
            publisher,
            track_id,
            kind,
        } => {
            let _ = ev.send(Event::TrackOpened {
                publisher,
                track_id,
                kind,
            });
        }
        RtcEvent::TrackEnded {
            publisher,
            track_id,
        } => {
            let _ = ev.send(Event::TrackEnded {
                publisher,
                track_id,
            });
        }
    }
}
