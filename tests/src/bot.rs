//! A native E2EE participant that takes part in the key exchange like a browser.
//!
//! The bot feeds the engine ([`client_wasm::Session`]) with the roster, relays its key
//! messages through signaling, ticks it every 20 ms, encrypts every encoded frame it sends
//! (whole frame, then packetized: Opus one frame per packet, VP8 split with the payload
//! descriptor) and decrypts every frame it receives. Audio is real Opus (a tone or given
//! samples); video is synthetic VP8-shaped frames ([`crate::media`]).
//!
//! Each bot is a tokio task owning its engine; [`BotHandle`] talks to it through a channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client_wasm::{Codec, Counters, FrameError, Identity, Session, SessionConfig, SessionEvent};
use tokio::sync::{mpsc, oneshot};

use crate::media::{
    BodyInfo, FrameAssembler, check_body, synthetic_vp8_frame, tone, vp8_body, vp8_packetize,
};
use crate::participant::{Event, JoinOptions, Participant, ParticipantError};
use crate::protocol::{ClientMessage, MediaKind, ServerMessage, decode_b64, encode_b64};
use crate::rtc::{LocalTrack, ReceivedRtp};
use crate::signal::SignalError;

/// Samples per 20 ms Opus frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Audio sample rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// What the bot sends as audio.
#[derive(Clone, Debug)]
pub enum AudioSource {
    /// A sine tone at this frequency (Hz).
    Tone(f32),
    /// 48 kHz mono samples, looped.
    Samples(Arc<Vec<i16>>),
}

/// Called with the bot's engine each time it installs a key or changes its sending epoch
/// (tests use it to read key material through the engine's test-only export).
#[derive(Clone)]
pub struct SessionHook(pub Arc<dyn Fn(&Session) + Send + Sync>);

impl std::fmt::Debug for SessionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHook")
    }
}

/// How a bot behaves.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// `ws://host:port/ws`.
    pub url: String,
    /// Room.
    pub room: String,
    /// Display name.
    pub name: String,
    /// The meeting secret from the link fragment (`None`: no keys can be derived).
    pub secret: Option<[u8; 32]>,
    /// Audio to publish, if any.
    pub audio: Option<AudioSource>,
    /// Publish synthetic VP8 video at 30 frames/s.
    pub video: bool,
    /// A keyframe every this many video frames (and on every keyframe request).
    pub keyframe_every: u64,
    /// Opus-decode received audio and keep the PCM per sender.
    pub decode_audio: bool,
    /// Keep every encrypted frame received (before decryption) for later analysis.
    pub capture: bool,
    /// Keep the plaintext of every audio frame sent (for ciphertext checks).
    pub keep_plaintext: bool,
    /// Run on every key install and sending-epoch change.
    pub on_keys: Option<SessionHook>,
    /// Reach the SFU only through the server's TURN relay.
    pub relay: bool,
    /// Chat texts to send, end-to-end encrypted, once we have a sending epoch.
    pub say: Vec<String>,
}

impl BotConfig {
    /// A bot sending a tone and video, decoding audio, capturing nothing.
    pub fn new(url: &str, room: &str, name: &str, secret: Option<[u8; 32]>) -> BotConfig {
        BotConfig {
            url: url.to_owned(),
            room: room.to_owned(),
            name: name.to_owned(),
            secret,
            audio: Some(AudioSource::Tone(440.0)),
            video: true,
            keyframe_every: 60,
            decode_audio: true,
            capture: false,
            keep_plaintext: false,
            on_keys: None,
            relay: false,
            say: Vec::new(),
        }
    }
}

/// An encrypted frame as a receiver got it, before decryption.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// Who sent it.
    pub publisher: u64,
    /// Audio (Opus) or video (VP8).
    pub kind: MediaKind,
    /// The encrypted frame (clear prefix ‖ SFrame header ‖ ciphertext ‖ tag).
    pub data: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl CapturedFrame {
    /// The codec the engine needs for this frame.
    pub fn codec(&self) -> Codec {
        match self.kind {
            MediaKind::Audio => Codec::Opus,
            MediaKind::Video => Codec::Vp8,
        }
    }

    /// The SFrame key id in its header (`sender_id << 8 | epoch mod 256`).
    pub fn kid(&self) -> Option<u64> {
        sframe_kid(self.codec().prefix_len(&self.data), &self.data)
    }
}

/// Reads the KID of an SFrame header (RFC 9605 §4.3) that starts at `offset`.
pub fn sframe_kid(offset: usize, frame: &[u8]) -> Option<u64> {
    let b = *frame.get(offset)?;
    let k = u64::from((b >> 4) & 0x07);
    if b & 0x80 == 0 {
        return Some(k);
    }
    let n = k as usize + 1;
    let bytes = frame.get(offset + 1..offset + 1 + n)?;
    Some(bytes.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

/// What one bot saw from one other sender.
#[derive(Clone, Debug, Default)]
pub struct SenderStats {
    /// Audio frames decrypted.
    pub audio_frames: u64,
    /// Video frames decrypted whose synthetic body checked out.
    pub video_ok: u64,
    /// Video frames decrypted whose body did not check out.
    pub video_bad: u64,
    /// Frames that failed to decrypt.
    pub failed: u64,
    /// Decoded audio (48 kHz mono), if decoding is on.
    pub pcm: Vec<i16>,
}

/// One chat payload the bot received: who sent it and what it said, or the engine's code
/// for why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    /// Sender (server-stamped).
    pub from: u64,
    /// The text (hand raises and screen announcements described in words), or the error
    /// code (`auth`, `unknown_epoch`, …, `unreadable` for a plaintext that is no chat message).
    pub text: Result<String, String>,
}

/// The plaintext of a chat text message (docs/PROTOCOL.md, "Chat plaintext").
pub fn chat_text_plaintext(body: &str) -> Vec<u8> {
    serde_json::json!({ "t": "text", "body": body })
        .to_string()
        .into_bytes()
}

/// Reads a decrypted chat plaintext as words; `None` for a message type to ignore.
pub fn describe_chat_plaintext(plaintext: &[u8]) -> Result<Option<String>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(plaintext).map_err(|_| "unreadable".to_owned())?;
    let field = |name: &str| value.get(name).cloned().unwrap_or_default();
    match value.get("t").and_then(|t| t.as_str()) {
        Some("text") => match field("body").as_str() {
            Some(body) => Ok(Some(body.to_owned())),
            None => Err("unreadable".to_owned()),
        },
        Some("hand") => Ok(Some(
            if field("up").as_bool() == Some(true) {
                "(raised their hand)"
            } else {
                "(lowered their hand)"
            }
            .to_owned(),
        )),
        Some("screen") => Ok(Some(
            if field("track").is_string() {
                "(is presenting)"
            } else {
                "(stopped presenting)"
            }
            .to_owned(),
        )),
        Some(_) => Ok(None),
        None => Err("unreadable".to_owned()),
    }
}

/// Everything a bot observed.
#[derive(Clone, Debug, Default)]
pub struct BotReport {
    /// Our id.
    pub id: u64,
    /// Audio frames encrypted and sent.
    pub audio_sent: u64,
    /// Video frames encrypted and sent.
    pub video_sent: u64,
    /// Frames not sent because no sending key was there yet.
    pub not_sent_no_key: u64,
    /// Frames received (audio packets + reassembled video frames).
    pub frames_received: u64,
    /// Video frames lost in transport (missing packet).
    pub video_incomplete: u64,
    /// Decryption failures by reason.
    pub drops: BTreeMap<String, u64>,
    /// Engine counters.
    pub counters: Counters,
    /// (when, epoch) each time our sending epoch changed.
    pub epoch_changes: Vec<(Instant, u64)>,
    /// (when, epoch) each time an epoch key was installed for receiving.
    pub keys_installed: Vec<(Instant, u64)>,
    /// (when, id) of every `participant_left` seen.
    pub left: Vec<(Instant, u64)>,
    /// (when, id) of every `participant_joined` seen.
    pub joined: Vec<(Instant, u64)>,
    /// When the signaling connection ended without us leaving (the server, or a node
    /// proxying to it, closed it); `None` while connected or after [`BotHandle::leave`].
    pub closed_at: Option<Instant>,
    /// The engine said it has no meeting secret.
    pub keys_unavailable: bool,
    /// Per other sender.
    pub senders: BTreeMap<u64, SenderStats>,
    /// Safety number at report time.
    pub safety_number: String,
    /// Current sending epoch.
    pub epoch: Option<u64>,
    /// base64url of every E2EE payload sent or received (to check logs for them).
    pub e2ee_payloads: Vec<String>,
    /// Encrypted frames received (if capturing).
    pub captured: Vec<CapturedFrame>,
    /// Plaintext audio frames sent (if kept).
    pub plaintext_audio: Vec<Vec<u8>>,
    /// Chat texts sent (encrypted) so far.
    pub chat_sent: Vec<String>,
    /// Chat payloads received, in order.
    pub chat_received: Vec<ChatLine>,
}

impl BotReport {
    /// Frames decrypted from anyone.
    pub fn decrypted(&self) -> u64 {
        self.counters.frames_decrypted
    }

    /// A human summary, one line per fact.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let decrypted = self.decrypted();
        s.push_str(&format!("participant id: {}\n", self.id));
        s.push_str(&format!("safety number: {}\n", self.safety_number));
        s.push_str(&format!(
            "sent: {} audio frames, {} video frames ({} held back: no key yet)\n",
            self.audio_sent, self.video_sent, self.not_sent_no_key
        ));
        s.push_str(&format!(
            "received: {} frames, decrypted {decrypted}, video lost in transport {}\n",
            self.frames_received, self.video_incomplete
        ));
        if self.drops.is_empty() {
            s.push_str("dropped: none\n");
        } else {
            let d: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s.push_str(&format!("dropped: {}\n", d.join(", ")));
        }
        let epochs: Vec<String> = self
            .epoch_changes
            .iter()
            .map(|(_, e)| e.to_string())
            .collect();
        s.push_str(&format!(
            "sending epochs: [{}] (now {:?})\n",
            epochs.join(", "),
            self.epoch
        ));
        for (id, st) in &self.senders {
            s.push_str(&format!(
                "from {id}: {} audio frames, {} video frames ok, {} bad, {} failed\n",
                st.audio_frames, st.video_ok, st.video_bad, st.failed
            ));
        }
        if self.keys_unavailable {
            s.push_str(
                "WARNING: no meeting secret: this bot can derive no key and decrypts nothing\n",
            );
        } else if self.frames_received > 0 && decrypted == 0 {
            s.push_str(&format!(
                "WARNING: decrypted 0 of {} frames (key messages failing authentication: {}); wrong meeting secret?\n",
                self.frames_received, self.counters.messages_auth_failed
            ));
        }
        s
    }
}

/// Why a bot could not start.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The signaling server could not be reached (or refused the WebSocket).
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The server refused the join, or took it and then failed it.
    #[error("cannot join: {0}")]
    Join(String),
    /// The bot's task ended.
    #[error("bot stopped")]
    Stopped,
}

enum Cmd {
    Report(oneshot::Sender<BotReport>),
    Leave(oneshot::Sender<()>),
    TryDecrypt(Vec<CapturedFrame>, oneshot::Sender<Vec<bool>>),
    Stop(oneshot::Sender<BotReport>),
}

/// A running bot.
pub struct BotHandle {
    /// Our participant id.
    pub id: u64,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BotHandle {
    /// Starts a bot as a tokio task and waits until it joined and published.
    pub async fn spawn(cfg: BotConfig) -> Result<BotHandle, BotError> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(run(cfg, cmd_rx, ready_tx));
        match ready_rx.await {
            Ok(Ok(id)) => Ok(BotHandle {
                id,
                cmd: cmd_tx,
                task: Some(task),
            }),
            Ok(Err(e)) => {
                let _ = task.await;
                Err(e)
            }
            Err(_) => Err(BotError::Stopped),
        }
    }

    /// A snapshot of what the bot observed so far.
    pub async fn report(&self) -> Result<BotReport, BotError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Report(tx))
            .map_err(|_| BotError::Stopped)?;
        rx.await.map_err(|_| BotError::Stopped)
    }

    /// Leaves the meeting but keeps the engine (and its keys) for [`BotHandle::try_decrypt`].
    pub async fn leave(&self) -> Result<(), BotError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Leave(tx))
            .map_err(|_| BotError::Stopped)?;
        rx.await.map_err(|_| BotError::Stopped)
    }

    /// Tries to decrypt frames someone else captured, with every key this bot holds.
    pub async fn try_decrypt(&self, frames: Vec<CapturedFrame>) -> Result<Vec<bool>, BotError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::TryDecrypt(frames, tx))
            .map_err(|_| BotError::Stopped)?;
        rx.await.map_err(|_| BotError::Stopped)
    }

    /// Stops the bot (leaving if still joined) and returns its final report.
    pub async fn stop(mut self) -> Result<BotReport, BotError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Stop(tx))
            .map_err(|_| BotError::Stopped)?;
        let report = rx.await.map_err(|_| BotError::Stopped)?;
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        Ok(report)
    }
}

fn drop_reason(e: &FrameError) -> String {
    e.drop_reason().code().into()
}

/// The bot's state inside its task.
struct Bot {
    cfg: BotConfig,
    session: Session,
    start: Instant,
    report: BotReport,
    audio_track: Option<LocalTrack>,
    video_track: Option<LocalTrack>,
    encoder: Option<opus::Encoder>,
    decoders: HashMap<u64, opus::Decoder>,
    assemblers: HashMap<(u64, String), FrameAssembler>,
    /// Video track ids of each publisher (for keyframe requests).
    video_tracks: HashMap<u64, Vec<String>>,
    audio_n: u64,
    video_n: u64,
    keyframe_requests_seen: u64,
    keyframe_due: bool,
    /// Keyframe requests to send (publisher, video track id).
    keyframe_asks: Vec<(u64, String)>,
}

impl Bot {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn flush(&mut self, p: &Participant) {
        while let Some(out) = self.session.poll_outgoing() {
            self.report.e2ee_payloads.push(encode_b64(&out.payload));
            p.send_e2ee(out.to, &out.payload);
        }
        let mut keys_changed = false;
        while let Some(ev) = self.session.poll_event() {
            keys_changed |= matches!(
                ev,
                SessionEvent::EpochChanged { .. } | SessionEvent::KeyInstalled { .. }
            );
            match ev {
                SessionEvent::EpochChanged { epoch } => {
                    self.report.epoch_changes.push((Instant::now(), epoch))
                }
                SessionEvent::KeyInstalled { epoch, .. } => {
                    self.report.keys_installed.push((Instant::now(), epoch))
                }
                SessionEvent::KeysUnavailable => self.report.keys_unavailable = true,
                SessionEvent::KeyframeNeeded { senders } => {
                    for s in senders {
                        for t in self.video_tracks.get(&s).cloned().unwrap_or_default() {
                            self.keyframe_asks.push((s, t));
                        }
                    }
                }
                _ => {}
            }
        }
        if keys_changed && let Some(hook) = &self.cfg.on_keys {
            (hook.0)(&self.session);
        }
        self.say_pending(p);
    }

    /// Sends the chat texts not sent yet, once the engine may send.
    fn say_pending(&mut self, p: &Participant) {
        while self.report.chat_sent.len() < self.cfg.say.len() {
            let text = self.cfg.say[self.report.chat_sent.len()].clone();
            match self.session.encrypt_chat(&chat_text_plaintext(&text)) {
                Ok(payload) => {
                    p.send(ClientMessage::chat(&payload));
                    self.report.chat_sent.push(text);
                }
                // No sending epoch yet: try again after the next key event.
                Err(_) => return,
            }
        }
    }

    fn on_chat(&mut self, from: u64, payload: &str) {
        let text = match decode_b64(payload) {
            None => Err("malformed".to_owned()),
            Some(bytes) => match self.session.decrypt_chat(from, &bytes) {
                Err(e) => Err(e.code().to_owned()),
                Ok(plain) => match describe_chat_plaintext(&plain) {
                    Ok(None) => return,
                    Ok(Some(text)) => Ok(text),
                    Err(code) => Err(code),
                },
            },
        };
        self.report.chat_received.push(ChatLine { from, text });
    }

    fn on_event(&mut self, p: &Participant, e: Event) {
        let now = self.now_ms();
        match e {
            Event::Server(ServerMessage::ParticipantJoined { participant }) => {
                self.report.joined.push((Instant::now(), participant.id));
                if let Some(pk) = participant.public_key_bytes() {
                    let _ = self.session.member_joined(now, participant.id, &pk);
                }
            }
            Event::Server(ServerMessage::ParticipantLeft { id }) => {
                self.report.left.push((Instant::now(), id));
                self.session.member_left(now, id);
                self.video_tracks.remove(&id);
            }
            Event::Server(ServerMessage::Chat { from, payload }) => self.on_chat(from, &payload),
            Event::Server(ServerMessage::E2ee { from, payload }) => {
                if let Some(bytes) = decode_b64(&payload) {
                    self.session.receive(now, from, &bytes);
                }
                self.report.e2ee_payloads.push(payload);
            }
            Event::Server(ServerMessage::TrackPublished {
                participant,
                track_id,
                kind: MediaKind::Video,
            }) => self
                .video_tracks
                .entry(participant)
                .or_default()
                .push(track_id),
            Event::Server(ServerMessage::TrackUnpublished {
                participant,
                track_id,
            }) => {
                if let Some(v) = self.video_tracks.get_mut(&participant) {
                    v.retain(|t| *t != track_id);
                }
            }
            _ => {}
        }
        self.flush(p);
    }

    fn on_media(&mut self, r: ReceivedRtp) {
        let Some(publisher) = r.publisher else { return };
        let frame = match r.kind {
            MediaKind::Audio => Some(r.packet.payload.to_vec()),
            MediaKind::Video => {
                let a = self
                    .assemblers
                    .entry((publisher, r.track_id.clone()))
                    .or_default();
                let before = a.incomplete;
                let f = a.push(
                    r.packet.sequence_number,
                    r.packet.timestamp,
                    r.packet.marker,
                    &r.packet.payload,
                );
                self.report.video_incomplete += a.incomplete - before;
                f
            }
        };
        let Some(frame) = frame else { return };
        self.report.frames_received += 1;
        if self.cfg.capture {
            self.report.captured.push(CapturedFrame {
                publisher,
                kind: r.kind,
                data: frame.clone(),
                at: r.received_at,
            });
        }
        let codec = match r.kind {
            MediaKind::Audio => Codec::Opus,
            MediaKind::Video => Codec::Vp8,
        };
        let stats = self.report.senders.entry(publisher).or_default();
        // The track's participant, as the SFU labelled it: a frame keyed by anyone else
        // is dropped (wrong_sender) rather than shown under the wrong name.
        match self.session.decrypt_from(codec, publisher, &frame) {
            Ok(plain) => match r.kind {
                MediaKind::Audio => {
                    stats.audio_frames += 1;
                    if self.cfg.decode_audio {
                        let dec = self.decoders.entry(publisher).or_insert_with(|| {
                            opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
                                .expect("opus decoder")
                        });
                        let mut pcm = vec![0i16; FRAME_SAMPLES * 6];
                        if let Ok(n) = dec.decode(&plain, &mut pcm, false) {
                            stats.pcm.extend_from_slice(&pcm[..n]);
                        }
                    }
                }
                MediaKind::Video => {
                    if vp8_body(&plain).and_then(check_body).is_some() {
                        stats.video_ok += 1;
                    } else {
                        stats.video_bad += 1;
                    }
                }
            },
            Err(e) => {
                stats.failed += 1;
                *self.report.drops.entry(drop_reason(&e)).or_default() += 1;
            }
        }
    }

    async fn send_audio(&mut self) {
        let (Some(track), Some(enc), Some(src)) = (
            self.audio_track.clone(),
            self.encoder.as_mut(),
            self.cfg.audio.as_ref(),
        ) else {
            return;
        };
        let start = self.audio_n * FRAME_SAMPLES as u64;
        let pcm = match src {
            AudioSource::Tone(f) => tone(*f, SAMPLE_RATE, 0.3, start, FRAME_SAMPLES),
            AudioSource::Samples(s) if !s.is_empty() => (0..FRAME_SAMPLES)
                .map(|i| s[((start as usize) + i) % s.len()])
                .collect(),
            AudioSource::Samples(_) => vec![0; FRAME_SAMPLES],
        };
        let mut buf = [0u8; 1500];
        let Ok(n) = enc.encode(&pcm, &mut buf) else {
            return;
        };
        let plain = &buf[..n];
        let rtp_time = (self.audio_n * FRAME_SAMPLES as u64) as u32;
        self.audio_n += 1;
        match self.session.encrypt(Codec::Opus, plain) {
            Ok(ct) => {
                if self.cfg.keep_plaintext {
                    self.report.plaintext_audio.push(plain.to_vec());
                }
                if track.send(Bytes::from(ct), rtp_time, false).await.is_ok() {
                    self.report.audio_sent += 1;
                }
            }
            Err(_) => self.report.not_sent_no_key += 1,
        }
    }

    async fn send_video(&mut self, id: u64) {
        let Some(track) = self.video_track.clone() else {
            return;
        };
        let requests = track.keyframe_requests();
        if requests != self.keyframe_requests_seen {
            self.keyframe_requests_seen = requests;
            self.keyframe_due = true;
        }
        let key = self.keyframe_due || self.video_n.is_multiple_of(self.cfg.keyframe_every.max(1));
        let info = BodyInfo {
            sender: id,
            frame_no: self.video_n,
            sent_at_us: crate::media::now_us(),
        };
        let frame = synthetic_vp8_frame(key, info, if key { 4000 } else { 1200 });
        let rtp_time = (self.video_n * 3000) as u32;
        let picture_id = self.video_n as u16;
        self.video_n += 1;
        match self.session.encrypt(Codec::Vp8, &frame) {
            Ok(ct) => {
                let packets = vp8_packetize(&ct, picture_id);
                let last = packets.len() - 1;
                for (i, p) in packets.into_iter().enumerate() {
                    if track
                        .send(Bytes::from(p), rtp_time, i == last)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                self.report.video_sent += 1;
                if key {
                    self.keyframe_due = false;
                }
            }
            Err(_) => {
                self.report.not_sent_no_key += 1;
                // The first frame with a key must let receivers start decoding.
                self.keyframe_due = true;
            }
        }
    }

    fn snapshot(&self) -> BotReport {
        let mut r = self.report.clone();
        r.counters = self.session.counters();
        r.safety_number = self.session.safety_number();
        r.epoch = self.session.epoch();
        r
    }

    fn try_decrypt(&mut self, frames: &[CapturedFrame]) -> Vec<bool> {
        frames
            .iter()
            .map(|f| self.session.decrypt(f.codec(), &f.data).is_ok())
            .collect()
    }
}

async fn run(
    cfg: BotConfig,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ready: oneshot::Sender<Result<u64, BotError>>,
) {
    let identity = Identity::generate();
    let mut opts = JoinOptions::new(&cfg.url, &cfg.room, &cfg.name);
    opts.public_key = identity.public_key().to_vec();
    opts.relay = cfg.relay;
    let p = match Participant::join(opts).await {
        Ok(p) => p,
        Err(e @ ParticipantError::Signal(SignalError::Connect { .. })) => {
            let _ = ready.send(Err(BotError::Unreachable(e.to_string())));
            return;
        }
        Err(e) => {
            let _ = ready.send(Err(BotError::Join(e.to_string())));
            return;
        }
    };
    let session = match Session::new(
        &p.room,
        p.id,
        cfg.secret,
        identity,
        SessionConfig::default(),
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(BotError::Join(format!("engine: {e}"))));
            return;
        }
    };
    let mut kinds = Vec::new();
    if cfg.audio.is_some() {
        kinds.push(MediaKind::Audio);
    }
    if cfg.video {
        kinds.push(MediaKind::Video);
    }
    let tracks = if kinds.is_empty() {
        Vec::new()
    } else {
        match p.publish(&kinds).await {
            Ok(t) => t,
            Err(e) => {
                // A failed join shows as `welcome` followed by an error.
                let _ = ready.send(Err(BotError::Join(format!(
                    "the server welcomed us as participant {} but then refused our media: {e}",
                    p.id
                ))));
                return;
            }
        }
    };
    let id = p.id;
    let mut bot = Bot {
        encoder: cfg.audio.as_ref().and_then(|_| {
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).ok()
        }),
        cfg,
        session,
        start: Instant::now(),
        report: BotReport {
            id,
            ..Default::default()
        },
        audio_track: tracks
            .iter()
            .find(|t| t.kind() == MediaKind::Audio)
            .cloned(),
        video_track: tracks
            .iter()
            .find(|t| t.kind() == MediaKind::Video)
            .cloned(),
        decoders: HashMap::new(),
        assemblers: HashMap::new(),
        video_tracks: HashMap::new(),
        audio_n: 0,
        video_n: 0,
        keyframe_requests_seen: 0,
        keyframe_due: true,
        keyframe_asks: Vec::new(),
    };
    let now = bot.now_ms();
    for m in p.roster.clone() {
        if let Some(pk) = m.public_key_bytes() {
            let _ = bot.session.member_joined(now, m.id, &pk);
        }
    }
    bot.flush(&p);
    let _ = ready.send(Ok(id));

    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let mut video_tick = tokio::time::interval(Duration::from_millis(33));
    audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    video_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut joined = Some(p);
    // While in the meeting.
    let stop_reply = loop {
        let Some(p) = joined.as_mut() else { break None };
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => break None,
                Some(Cmd::Report(tx)) => { let _ = tx.send(bot.snapshot()); }
                Some(Cmd::TryDecrypt(frames, tx)) => { let _ = tx.send(bot.try_decrypt(&frames)); }
                Some(Cmd::Leave(tx)) => {
                    if let Some(p) = joined.take() {
                        p.leave().await;
                    }
                    let _ = tx.send(());
                }
                Some(Cmd::Stop(tx)) => break Some(tx),
            },
            _ = audio_tick.tick() => {
                let now = bot.now_ms();
                bot.session.tick(now);
                bot.flush(p);
                for (s, t) in std::mem::take(&mut bot.keyframe_asks) {
                    // A lost request is repeated at the next miss.
                    let _ = p.request_keyframe(s, &t).await;
                }
                bot.send_audio().await;
            }
            _ = video_tick.tick(), if bot.video_track.is_some() => bot.send_video(id).await,
            ev = p.events.recv() => match ev {
                Some(Event::Closed) | None => {
                    bot.report.closed_at = Some(Instant::now());
                    joined = None;
                }
                Some(e) => bot.on_event(p, e),
            },
            Some(r) = p.media.recv() => bot.on_media(r),
        }
    };
    // After leaving: the engine stays for try_decrypt until stopped.
    let stop_reply = match stop_reply {
        Some(tx) => Some(tx),
        None => loop {
            match cmds.recv().await {
                None => break None,
                Some(Cmd::Report(tx)) => {
                    let _ = tx.send(bot.snapshot());
                }
                Some(Cmd::TryDecrypt(frames, tx)) => {
                    let _ = tx.send(bot.try_decrypt(&frames));
                }
                Some(Cmd::Leave(tx)) => {
                    let _ = tx.send(());
                }
                Some(Cmd::Stop(tx)) => break Some(tx),
            }
        },
    };
    if let Some(p) = joined.take() {
        p.leave().await;
    }
    if let Some(tx) = stop_reply {
        let _ = tx.send(bot.snapshot());
    }
}
