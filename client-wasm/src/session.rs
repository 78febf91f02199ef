//! [`Session`]: one participant's engine for one join, tying the epoch manager (keys) to the
//! frame layer (media).

use crate::chat::{ChatError, ChatState, MAX_CHAT_PLAINTEXT};
use crate::codec::Codec;
use crate::epoch::{
    EpochManager, KeyAction, MessageCounters, Outgoing, PauseReason, SessionConfig, SessionEvent,
};
use crate::error::{EngineError, FrameError};
use crate::frame::{FrameCounters, FrameCrypto};
use crate::identity::Identity;
use crate::random::{OsRandom, RandomSource};
use crate::safety::safety_number;
use crate::secret::MeetingSecret;

/// Every counter of a session: frames by outcome, key messages by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames encrypted.
    pub frames_encrypted: u64,
    /// Frames decrypted.
    pub frames_decrypted: u64,
    /// Frames dropped: no key for their KID.
    pub dropped_unknown_kid: u64,
    /// Frames dropped: authentication failed.
    pub dropped_auth: u64,
    /// Frames dropped: replayed or too old.
    pub dropped_replay: u64,
    /// Frames dropped: malformed.
    pub dropped_malformed: u64,
    /// Frames dropped: the KID names another sender than the track's.
    pub dropped_wrong_sender: u64,
    /// Key messages accepted.
    pub messages_accepted: u64,
    /// Key messages rejected: malformed.
    pub messages_malformed: u64,
    /// Key messages rejected: authentication failed.
    pub messages_auth_failed: u64,
    /// Key messages rejected: about an older epoch.
    pub messages_stale: u64,
    /// Key messages rejected: duplicates.
    pub messages_duplicate: u64,
    /// Key messages rejected: sender not in the roster.
    pub messages_unknown_sender: u64,
    /// Key messages rejected: epoch key or commit from a non-leader.
    pub messages_not_leader: u64,
    /// Key messages rejected: not meant for us.
    pub messages_foreign: u64,
    /// Key messages ignored: no meeting secret.
    pub messages_no_secret: u64,
    /// Key messages made for a roster other than our view (epoch keys kept aside, acks and
    /// commits ignored).
    pub messages_roster_differs: u64,
    /// Key messages claiming an epoch too far above ours.
    pub messages_out_of_range: u64,
    /// Epochs issued by this session as leader.
    pub rotations: u64,
    /// Key messages resent by this session as leader.
    pub resends: u64,
}

impl Counters {
    fn new(f: &FrameCounters, m: &MessageCounters) -> Counters {
        Counters {
            frames_encrypted: f.encrypted,
            frames_decrypted: f.decrypted,
            dropped_unknown_kid: f.dropped_unknown_kid,
            dropped_auth: f.dropped_auth,
            dropped_replay: f.dropped_replay,
            dropped_malformed: f.dropped_malformed,
            dropped_wrong_sender: f.dropped_wrong_sender,
            messages_accepted: m.accepted,
            messages_malformed: m.malformed,
            messages_auth_failed: m.auth_failed,
            messages_stale: m.stale,
            messages_duplicate: m.duplicate,
            messages_unknown_sender: m.unknown_sender,
            messages_not_leader: m.not_leader,
            messages_foreign: m.foreign,
            messages_no_secret: m.no_secret,
            messages_roster_differs: m.roster_differs,
            messages_out_of_range: m.out_of_range,
            rotations: m.rotations,
            resends: m.resends,
        }
    }

    /// Every counter as (snake_case name, value), in declaration order.
    pub fn fields(&self) -> [(&'static str, u64); 20] {
        [
            ("frames_encrypted", self.frames_encrypted),
            ("frames_decrypted", self.frames_decrypted),
            ("dropped_unknown_kid", self.dropped_unknown_kid),
            ("dropped_auth", self.dropped_auth),
            ("dropped_replay", self.dropped_replay),
            ("dropped_malformed", self.dropped_malformed),
            ("dropped_wrong_sender", self.dropped_wrong_sender),
            ("messages_accepted", self.messages_accepted),
            ("messages_malformed", self.messages_malformed),
            ("messages_auth_failed", self.messages_auth_failed),
            ("messages_stale", self.messages_stale),
            ("messages_duplicate", self.messages_duplicate),
            ("messages_unknown_sender", self.messages_unknown_sender),
            ("messages_not_leader", self.messages_not_leader),
            ("messages_foreign", self.messages_foreign),
            ("messages_no_secret", self.messages_no_secret),
            ("messages_roster_differs", self.messages_roster_differs),
            ("messages_out_of_range", self.messages_out_of_range),
            ("rotations", self.rotations),
            ("resends", self.resends),
        ]
    }
}

/// One participant's E2EE engine for one join. Sans-IO: it never reads a clock or a socket;
/// pass the current time in milliseconds (any monotonic origin) to every call that takes it,
/// call [`tick`](Session::tick) every ~50-100 ms, and after each call drain
/// [`poll_outgoing`](Session::poll_outgoing) (send each through signaling) and
/// [`poll_event`](Session::poll_event).
pub struct Session {
    epochs: EpochManager,
    frames: FrameCrypto,
    chat: ChatState,
}

impl Session {
    /// A session for `own_id` in `room`, with the platform's randomness.
    ///
    /// Without a meeting secret the session derives no key (it reports
    /// [`SessionEvent::KeysUnavailable`]), but still tracks the roster and safety number.
    pub fn new(
        room: &str,
        own_id: u64,
        meeting_secret: Option<[u8; 32]>,
        identity: Identity,
        config: SessionConfig,
    ) -> Result<Session, EngineError> {
        Session::with_rng(
            room,
            own_id,
            meeting_secret,
            identity,
            config,
            Box::new(OsRandom),
        )
    }

    /// Like [`Session::new`] with injected randomness (deterministic tests and fixtures).
    pub fn with_rng(
        room: &str,
        own_id: u64,
        meeting_secret: Option<[u8; 32]>,
        identity: Identity,
        config: SessionConfig,
        rng: Box<dyn RandomSource>,
    ) -> Result<Session, EngineError> {
        let secret = meeting_secret.map(MeetingSecret::from_bytes);
        let epochs = EpochManager::new(room, own_id, secret, identity, config, rng)?;
        Ok(Session {
            epochs,
            frames: FrameCrypto::new(own_id, config.replay_window),
            chat: ChatState::default(),
        })
    }

    /// Our sender id.
    pub fn own_id(&self) -> u64 {
        self.epochs.own_id()
    }

    /// Whether this session has a meeting secret (and thus can derive keys).
    pub fn has_meeting_secret(&self) -> bool {
        self.epochs.has_meeting_secret()
    }

    /// A member joined (from `welcome` or `participant_joined`). Idempotent for the same key.
    pub fn member_joined(
        &mut self,
        now_ms: u64,
        id: u64,
        public_key: &[u8],
    ) -> Result<(), EngineError> {
        let result = self.epochs.member_joined(now_ms, id, public_key);
        self.apply();
        result
    }

    /// A member left (`participant_left`). Unknown ids are ignored.
    pub fn member_left(&mut self, now_ms: u64, id: u64) {
        self.epochs.member_left(now_ms, id);
        self.apply();
    }

    /// A key message from `from` (signaling `e2ee`). Rejections are counted, never fatal.
    pub fn receive(&mut self, now_ms: u64, from: u64, payload: &[u8]) {
        self.epochs.receive(now_ms, from, payload);
        self.apply();
    }

    /// Runs the timers (debounce, resend, commit, switch, grace, roster check).
    pub fn tick(&mut self, now_ms: u64) {
        self.epochs.advance(now_ms);
        self.apply();
    }

    /// Issues a fresh epoch now if this session leads (e.g. a "re-key" button); otherwise
    /// does nothing. Rotations on roster changes happen by themselves.
    pub fn rotate(&mut self, now_ms: u64) {
        self.epochs.rotate_now(now_ms);
        self.apply();
    }

    /// Next key message to send, if any.
    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.epochs.outgoing.pop_front()
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.epochs.events.pop_front()
    }

    /// Encrypts one encoded frame: `clear prefix ‖ SFrame`. Fails with
    /// [`FrameError::SendingPaused`] while sending is paused (see [`Session::paused`]).
    pub fn encrypt(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        if let Some(reason) = self.epochs.paused() {
            return Err(FrameError::SendingPaused(reason));
        }
        self.frames.encrypt(codec, frame)
    }

    /// Decrypts one frame of the track of participant `sender`: a frame whose KID names
    /// anyone else is dropped ([`FrameError::WrongSender`]), so a track the server
    /// re-labelled never plays under the wrong name. Drops are counted by reason;
    /// [`FrameError::drop_reason`] gives it typed.
    pub fn decrypt_from(
        &mut self,
        codec: Codec,
        sender: u64,
        frame: &[u8],
    ) -> Result<Vec<u8>, FrameError> {
        self.frames.decrypt(codec, frame, Some(sender))
    }

    /// Decrypts one frame from any member, for callers that do not know whose track it
    /// came on (tests, tools). Prefer [`Session::decrypt_from`].
    pub fn decrypt(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        self.frames.decrypt(codec, frame, None)
    }

    /// Why sending (frames and chat) is paused, if it is: a rekey after a leave is overdue,
    /// the roster differs from the leader's, or the epoch numbers ran out.
    pub fn paused(&self) -> Option<PauseReason> {
        self.epochs.paused()
    }

    /// Encrypts a chat message (at most 4096 bytes) under the epoch this session sends
    /// frames on: the payload `epoch ‖ seq ‖ ciphertext ‖ tag` to relay to the room.
    ///
    /// Fails with [`ChatError::NotSending`] whenever [`encrypt`](Session::encrypt) would
    /// (no key yet, or sending paused) and with [`ChatError::TooLarge`] for a longer text.
    pub fn encrypt_chat(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, ChatError> {
        if plaintext.len() > MAX_CHAT_PLAINTEXT {
            return Err(ChatError::TooLarge);
        }
        if self.epochs.paused().is_some() {
            return Err(ChatError::NotSending);
        }
        let epoch = self.frames.sending_epoch().ok_or(ChatError::NotSending)?;
        let (secret, _) = self.frames.epoch_keys(epoch).ok_or(ChatError::NotSending)?;
        let own_id = self.epochs.own_id();
        self.chat
            .encrypt(self.epochs.room(), own_id, epoch, secret, plaintext)
    }

    /// Decrypts a chat payload relayed from `from` (the id the server stamped). Rejects
    /// malformed or oversized payloads, epochs not held (sent before we joined or past their
    /// grace), senders outside the epoch's roster, authentication failures and replays
    /// (a `seq` not above the last accepted from that sender in that epoch).
    pub fn decrypt_chat(&mut self, from: u64, payload: &[u8]) -> Result<Vec<u8>, ChatError> {
        let frames = &self.frames;
        self.chat.retain_epochs(|e| frames.epoch_keys(e).is_some());
        self.chat
            .decrypt(self.epochs.room(), from, payload, |e| frames.epoch_keys(e))
    }

    /// The safety number over the roster, self included.
    pub fn safety_number(&self) -> String {
        let roster = self.epochs.full_roster();
        safety_number(roster.iter().map(|(id, pk)| (*id, pk)))
    }

    /// The epoch frames are currently sent with.
    pub fn epoch(&self) -> Option<u64> {
        self.epochs.sending_epoch()
    }

    /// The current leader (lowest id of the roster, self included).
    pub fn leader(&self) -> u64 {
        self.epochs.leader()
    }

    /// Roster ids, self included, ascending.
    pub fn roster(&self) -> Vec<u64> {
        self.epochs
            .full_roster()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Epochs whose keys are held for receiving, ascending.
    pub fn receiving_epochs(&self) -> Vec<u64> {
        self.frames.installed_epochs().collect()
    }

    /// **Test-only** (feature `test-export`): every secret this session holds: the meeting
    /// secret, pairwise keys, installed epoch secrets and, for each KID of each installed
    /// epoch's roster, the base key and the SFrame key and salt.
    #[cfg(feature = "test-export")]
    pub fn export_secrets_for_tests(&self) -> crate::export::ExportedSecrets {
        let (meeting_secret, pairwise_keys) = self.epochs.export_secrets();
        let epochs = self
            .frames
            .export_epochs()
            .into_iter()
            .map(|(epoch, secret, members)| crate::export::ExportedEpoch {
                epoch,
                secret,
                senders: members
                    .iter()
                    .filter_map(|&m| crate::export::sender_keys(epoch, &secret, m))
                    .collect(),
            })
            .collect();
        crate::export::ExportedSecrets {
            meeting_secret,
            pairwise_keys,
            epochs,
        }
    }

    /// All counters.
    pub fn counters(&self) -> Counters {
        Counters::new(&self.frames.counters, &self.epochs.counters)
    }

    /// Applies the epoch manager's key actions to the frame layer.
    fn apply(&mut self) {
        while let Some(action) = self.epochs.actions.pop_front() {
            match action {
                KeyAction::Install {
                    epoch,
                    secret,
                    members,
                } => {
                    self.frames.install(epoch, secret, members);
                    if !self.frames.unknown_kid_senders.is_empty() {
                        let senders = std::mem::take(&mut self.frames.unknown_kid_senders);
                        self.epochs
                            .events
                            .push_back(SessionEvent::KeyframeNeeded { senders });
                    }
                }
                KeyAction::SetSending(epoch) => {
                    self.frames.set_sending(epoch);
                }
                KeyAction::Retire(epoch) => self.frames.retire(epoch),
            }
        }
    }
}

// A session may live in a multi-threaded async task.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Session>();
};

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("epochs", &self.epochs)
            .field("frames", &self.frames)
            .finish()
    }
}
