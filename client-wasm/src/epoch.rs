//! The epoch manager: a deterministic, sans-IO state machine that decides who holds which
//! epoch secret. Roster events and key messages go in (with the current time), key messages
//! ([`Outgoing`]), [`SessionEvent`]s and key actions for the frame layer come out.
//!
//! Rules (details and the races they answer in `docs/PROTOCOL.md`):
//! - the leader is the lowest id of the roster (self included);
//! - on every roster change the leader issues a fresh random epoch secret, debounced
//!   (`debounce_ms`, never postponed beyond `max_debounce_ms` after the first change), with
//!   the number one above the highest epoch it knows (hand-over keeps epochs increasing);
//! - a member accepts an epoch key only from its own view's leader and only if it was made
//!   for exactly its own view of the roster (ids and public keys); one made for another view
//!   is kept aside and accepted if our view catches up; a difference that lasts
//!   `roster_settle_ms` (timed across epochs) is reported and pauses sending;
//! - members install it for receiving at once and ack; they switch sending on the leader's
//!   commit or after `switch_delay_ms`, whichever is first; the leader commits when every
//!   member acked or after `switch_delay_ms`;
//! - after a member leaves, sending on an epoch that member held stops once
//!   `rekey_deadline_ms` pass without a newer epoch, and resumes by itself when one arrives
//!   (fail closed: a withheld rekey never keeps a leaver reading);
//! - older epochs stay for receiving for `grace_ms` after a newer one was installed;
//! - the leader resends unacknowledged keys every `resend_interval_ms` (at most
//!   `max_resends` times), which heals messages lost to brief roster disagreement;
//! - a member that already holds an epoch at least as new answers `Stale`, and the leader
//!   re-issues above it; claimed epochs may be at most [`MAX_EPOCH_STEP`] above ours, and
//!   ack-caused rotations happen at most once per `ack_rotation_interval_ms`; if the epoch
//!   space ever ran out the session stops sending and says so;
//! - every rejected message is counted and dropped, never fatal.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::error::EngineError;
use crate::identity::{Identity, PUBLIC_KEY_LEN, parse_public_key};
use subtle::ConstantTimeEq;

use crate::key_schedule::{check_sender_id, pairwise_key, roster_hash};
use crate::message::{AckStatus, KeyMessage, MAX_ROSTER, Parsed};
use crate::random::RandomSource;
use crate::secret::{EpochSecret, MeetingSecret, PairwiseKey};

/// Epoch numbers stay below this bound, so that no peer can push them to overflow.
pub const EPOCH_LIMIT: u64 = 1 << 62;
/// Largest step above the newest epoch we hold that a peer may claim (in an epoch key or a
/// stale ack): enough for any hand-over race, far too little to exhaust [`EPOCH_LIMIT`].
pub const MAX_EPOCH_STEP: u64 = 256;

/// Timing and window parameters of a session. `Default` gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Quiet time after a roster change before the leader rotates (default 200 ms).
    pub debounce_ms: u64,
    /// Longest a rotation is postponed by further roster changes (default 1000 ms).
    pub max_debounce_ms: u64,
    /// Longest a member waits for the leader's commit before switching sending (default 1000 ms).
    pub switch_delay_ms: u64,
    /// How long older epochs stay for receiving after a newer one was installed (default 10 s).
    pub grace_ms: u64,
    /// Interval of the leader's resends of unacknowledged keys (default 500 ms).
    pub resend_interval_ms: u64,
    /// Most resends per rotation (default 10).
    pub max_resends: u32,
    /// How long a disagreement between the leader's roster and ours may last before it is
    /// reported as [`SessionEvent::RosterMismatch`] (default 2000 ms).
    pub roster_settle_ms: u64,
    /// Replay window per KID, in frames (default 1024).
    pub replay_window: usize,
    /// After a member leaves, how long we keep sending on an epoch that member held before
    /// pausing until a newer epoch arrives (default 2500 ms, so sending stops within 3 s
    /// with a 100 ms tick).
    pub rekey_deadline_ms: u64,
    /// Least time between two rotations caused by stale acks (default 1000 ms).
    pub ack_rotation_interval_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            debounce_ms: 200,
            max_debounce_ms: 1000,
            switch_delay_ms: 1000,
            grace_ms: 10_000,
            resend_interval_ms: 500,
            max_resends: 10,
            roster_settle_ms: 2000,
            replay_window: 1024,
            rekey_deadline_ms: 2500,
            ack_rotation_interval_ms: 1000,
        }
    }
}

/// A key message to send through signaling (`e2ee` {to, payload}).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Recipient's sender id.
    pub to: u64,
    /// The opaque payload.
    pub payload: Vec<u8>,
}

/// Why a session refuses to send (frames and chat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// A member left and no newer epoch arrived in time: the leaver still holds our sending
    /// key. Resumes when the new epoch arrives.
    RekeyOverdue,
    /// The leader's roster and ours have differed for too long, or a public key differs:
    /// sending could reach someone we do not see. Resumes when an epoch for our exact view
    /// arrives.
    RosterMismatch,
    /// The epoch numbers are used up (only a peer pushing them could get there): this
    /// session can never rotate again. Leave and start a new meeting.
    EpochsExhausted,
}

impl PauseReason {
    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            PauseReason::RekeyOverdue => "rekey_overdue",
            PauseReason::RosterMismatch => "roster_mismatch",
            PauseReason::EpochsExhausted => "epochs_exhausted",
        }
    }
}

/// Something the application may want to show or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session has no meeting secret: it derives no key and cannot send or receive media.
    KeysUnavailable,
    /// An epoch secret was installed for receiving.
    KeyInstalled {
        /// The epoch.
        epoch: u64,
        /// Who issued it.
        leader: u64,
    },
    /// Frames are now sent with this epoch.
    EpochChanged {
        /// The epoch.
        epoch: u64,
    },
    /// The leader (lowest id of the roster) changed.
    LeaderChanged {
        /// The new leader (may be self).
        leader: u64,
    },
    /// The leader made an epoch for a roster that differs from ours.
    RosterMismatch {
        /// The epoch concerned.
        epoch: u64,
        /// Who issued it.
        leader: u64,
        /// Ids in the leader's roster but not in ours.
        only_leader: Vec<u64>,
        /// Ids in our roster but not in the leader's.
        only_local: Vec<u64>,
        /// Same ids, but the public keys differ (a key substitution somewhere).
        keys_differ: bool,
    },
    /// Frames of these senders were dropped for lack of a key, which has now arrived: ask
    /// them for a keyframe.
    KeyframeNeeded {
        /// The senders.
        senders: Vec<u64>,
    },
    /// This session stopped sending (frames and chat): show "not sending".
    SendingPaused {
        /// Why.
        reason: PauseReason,
    },
    /// This session sends again, on this epoch.
    SendingResumed {
        /// The epoch it sends on.
        epoch: u64,
    },
}

/// Key-message counters (every rejection is counted under one reason).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageCounters {
    /// Messages accepted and acted upon.
    pub accepted: u64,
    /// Unparsable messages (bad version, type, length, field).
    pub malformed: u64,
    /// Messages that failed authentication.
    pub auth_failed: u64,
    /// Messages about an epoch older than what we hold.
    pub stale: u64,
    /// Repeats of a message already acted upon.
    pub duplicate: u64,
    /// Messages from an id not in our roster.
    pub unknown_sender: u64,
    /// Epoch keys or commits from someone who is not the leader.
    pub not_leader: u64,
    /// Messages not meant for us (e.g. an epoch roster without us).
    pub foreign: u64,
    /// Messages received while we have no meeting secret.
    pub no_secret: u64,
    /// Epoch keys made for a roster other than our view (kept aside until it matches).
    pub roster_differs: u64,
    /// Epoch keys or stale acks claiming an epoch too far above ours.
    pub out_of_range: u64,
    /// Epochs this session issued as leader.
    pub rotations: u64,
    /// Key messages resent by this session as leader.
    pub resends: u64,
}

/// The meeting secret and the pairwise key with each member (test-only export).
#[cfg(feature = "test-export")]
pub(crate) type ExportedKeys = (Option<[u8; 32]>, Vec<(u64, [u8; 32])>);

/// Instructions for the frame layer.
#[derive(Debug)]
pub(crate) enum KeyAction {
    Install {
        epoch: u64,
        secret: EpochSecret,
        members: Vec<u64>,
    },
    SetSending(u64),
    Retire(u64),
}

struct Member {
    public_key: [u8; PUBLIC_KEY_LEN],
    pairwise: Option<PairwiseKey>,
}

struct InstalledEpoch {
    leader: u64,
    roster_hash: [u8; 32],
    members: Vec<u64>,
}

/// An authenticated epoch key from our leader, made for a roster other than our view.
struct PendingKey {
    from: u64,
    epoch: u64,
    secret: EpochSecret,
    roster: Vec<u64>,
    hash: [u8; 32],
}

/// A member left while we sent on an epoch it held: a newer epoch is due by `deadline`.
struct RekeyDue {
    /// The newest epoch when the member left; any epoch above it excludes the leaver.
    floor: Option<u64>,
    deadline: u64,
}

struct Recipient {
    payload: Vec<u8>,
    acked: bool,
}

/// The leader's state for the epoch it issued last.
struct Issued {
    epoch: u64,
    hash: [u8; 32],
    recipients: BTreeMap<u64, Recipient>,
    next_resend: u64,
    resends_left: u32,
    commit_at: u64,
    committed: bool,
}

/// The epoch state machine of one session.
pub(crate) struct EpochManager {
    room: String,
    own_id: u64,
    identity: Identity,
    meeting_secret: Option<MeetingSecret>,
    config: SessionConfig,
    rng: Box<dyn RandomSource>,
    roster: BTreeMap<u64, Member>,
    started: bool,
    last_leader: u64,
    installed: BTreeMap<u64, InstalledEpoch>,
    highest: Option<u64>,
    sending: Option<u64>,
    pending_switch: Option<(u64, u64)>,
    retire_at: BTreeMap<u64, u64>,
    pending_key: Option<PendingKey>,
    /// Since when the leader's roster and ours differ (cleared only by an epoch for our view).
    divergent_since: Option<u64>,
    /// The difference was reported and blocks sending.
    mismatch: bool,
    rekey_due: Option<RekeyDue>,
    exhausted: bool,
    paused: Option<PauseReason>,
    rotation_due: Option<u64>,
    rotation_first: Option<u64>,
    min_next_epoch: u64,
    last_ack_rotation: Option<u64>,
    issued: Option<Issued>,
    pub(crate) outgoing: VecDeque<Outgoing>,
    pub(crate) events: VecDeque<SessionEvent>,
    pub(crate) actions: VecDeque<KeyAction>,
    pub(crate) counters: MessageCounters,
}

impl EpochManager {
    pub(crate) fn new(
        room: &str,
        own_id: u64,
        meeting_secret: Option<MeetingSecret>,
        identity: Identity,
        config: SessionConfig,
        rng: Box<dyn RandomSource>,
    ) -> Result<EpochManager, EngineError> {
        check_sender_id(own_id)?;
        if room.is_empty() || room.as_bytes().contains(&0) {
            return Err(EngineError::InvalidRoom);
        }
        let mut events = VecDeque::new();
        if meeting_secret.is_none() {
            events.push_back(SessionEvent::KeysUnavailable);
        }
        Ok(EpochManager {
            room: room.to_owned(),
            own_id,
            identity,
            meeting_secret,
            config,
            rng,
            roster: BTreeMap::new(),
            started: false,
            last_leader: own_id,
            installed: BTreeMap::new(),
            highest: None,
            sending: None,
            pending_switch: None,
            retire_at: BTreeMap::new(),
            pending_key: None,
            divergent_since: None,
            mismatch: false,
            rekey_due: None,
            exhausted: false,
            paused: None,
            rotation_due: None,
            rotation_first: None,
            min_next_epoch: 0,
            last_ack_rotation: None,
            issued: None,
            outgoing: VecDeque::new(),
            events,
            actions: VecDeque::new(),
            counters: MessageCounters::default(),
        })
    }

    pub(crate) fn own_id(&self) -> u64 {
        self.own_id
    }

    pub(crate) fn room(&self) -> &str {
        &self.room
    }

    /// The meeting secret and every pairwise key (test-only export).
    #[cfg(feature = "test-export")]
    pub(crate) fn export_secrets(&self) -> ExportedKeys {
        let meeting = self.meeting_secret.as_ref().map(|m| *m.as_bytes());
        let pairwise = self
            .roster
            .iter()
            .filter_map(|(&id, m)| m.pairwise.as_ref().map(|k| (id, *k.as_bytes())))
            .collect();
        (meeting, pairwise)
    }

    pub(crate) fn has_meeting_secret(&self) -> bool {
        self.meeting_secret.is_some()
    }

    /// Lowest id of the roster, self included.
    pub(crate) fn leader(&self) -> u64 {
        self.roster
            .keys()
            .next()
            .map_or(self.own_id, |&first| first.min(self.own_id))
    }

    fn is_leader(&self) -> bool {
        self.leader() == self.own_id
    }

    /// Sending epoch.
    pub(crate) fn sending_epoch(&self) -> Option<u64> {
        self.sending
    }

    /// Why sending is paused, if it is.
    pub(crate) fn paused(&self) -> Option<PauseReason> {
        self.paused
    }

    /// Roster including self, ascending, with public keys.
    pub(crate) fn full_roster(&self) -> Vec<(u64, [u8; PUBLIC_KEY_LEN])> {
        let own = (self.own_id, self.identity.public_key());
        let mut all: Vec<_> = self
            .roster
            .iter()
            .map(|(&id, m)| (id, m.public_key))
            .collect();
        let at = all.partition_point(|(id, _)| *id < self.own_id);
        all.insert(at, own);
        all
    }

    pub(crate) fn member_joined(
        &mut self,
        now: u64,
        id: u64,
        public_key: &[u8],
    ) -> Result<(), EngineError> {
        self.advance(now);
        check_sender_id(id)?;
        if id == self.own_id {
            return Err(EngineError::OwnId(id));
        }
        let parsed = parse_public_key(public_key)?;
        let mut pk = [0u8; PUBLIC_KEY_LEN];
        pk.copy_from_slice(public_key);
        if let Some(existing) = self.roster.get(&id) {
            return if existing.public_key == pk {
                Ok(())
            } else {
                Err(EngineError::PublicKeyChanged(id))
            };
        }
        let pairwise = self.meeting_secret.as_ref().map(|m| {
            let shared = self.identity.shared_x(&parsed);
            pairwise_key(m, &self.room, &shared, &self.identity.public_key(), &pk)
        });
        self.roster.insert(
            id,
            Member {
                public_key: pk,
                pairwise,
            },
        );
        self.roster_changed(now);
        Ok(())
    }

    pub(crate) fn member_left(&mut self, now: u64, id: u64) {
        self.advance(now);
        if self.roster.remove(&id).is_none() {
            return;
        }
        if let Some(issued) = self.issued.as_mut() {
            issued.recipients.remove(&id);
        }
        let held_by_leaver = [self.sending, self.pending_switch.map(|(e, _)| e)]
            .into_iter()
            .flatten()
            .any(|e| {
                self.installed
                    .get(&e)
                    .is_some_and(|i| i.members.binary_search(&id).is_ok())
            });
        if held_by_leaver {
            let deadline = self
                .rekey_due
                .as_ref()
                .map_or(now.saturating_add(self.config.rekey_deadline_ms), |r| {
                    r.deadline
                });
            self.rekey_due = Some(RekeyDue {
                floor: self.highest,
                deadline,
            });
        }
        self.roster_changed(now);
        self.commit_if_all_acked(now);
    }

    fn roster_changed(&mut self, now: u64) {
        let leader = self.leader();
        if leader != self.last_leader {
            self.last_leader = leader;
            self.events
                .push_back(SessionEvent::LeaderChanged { leader });
        }
        self.request_rotation(now);
        self.retry_pending_key(now);
    }

    fn request_rotation(&mut self, now: u64) {
        let first = *self.rotation_first.get_or_insert(now);
        let due = now
            .saturating_add(self.config.debounce_ms)
            .min(first.saturating_add(self.config.max_debounce_ms));
        self.rotation_due = Some(due);
    }

    /// Asks for a rotation now (issued only if we lead; members' requests are ignored).
    pub(crate) fn rotate_now(&mut self, now: u64) {
        self.advance(now);
        if self.is_leader() {
            self.rotation_due = Some(now);
            self.advance(now);
        }
    }

    /// Runs every timer that is due at `now`.
    pub(crate) fn advance(&mut self, now: u64) {
        if !self.started {
            self.started = true;
            self.request_rotation(now);
        }
        if self.rotation_due.is_some_and(|due| now >= due) {
            self.rotation_due = None;
            self.rotation_first = None;
            if self.is_leader() {
                self.rotate(now);
            }
        }
        self.leader_timers(now);
        if let Some((epoch, deadline)) = self.pending_switch
            && now >= deadline
        {
            self.switch_to(epoch);
        }
        let due: Vec<u64> = self
            .retire_at
            .iter()
            .filter(|&(_, &t)| t <= now)
            .map(|(&e, _)| e)
            .collect();
        for epoch in due {
            if Some(epoch) == self.sending {
                self.retire_at
                    .insert(epoch, now.saturating_add(self.config.grace_ms));
                continue;
            }
            self.retire_at.remove(&epoch);
            self.installed.remove(&epoch);
            self.actions.push_back(KeyAction::Retire(epoch));
        }
        self.check_divergence(now);
        self.update_pause(now);
    }

    /// Recomputes why sending is paused and reports changes.
    fn update_pause(&mut self, now: u64) {
        let want = if self.exhausted {
            Some(PauseReason::EpochsExhausted)
        } else if self.mismatch {
            Some(PauseReason::RosterMismatch)
        } else if self.rekey_due.as_ref().is_some_and(|r| now >= r.deadline) {
            Some(PauseReason::RekeyOverdue)
        } else {
            None
        };
        if want == self.paused {
            return;
        }
        self.paused = want;
        match (want, self.sending) {
            (Some(reason), _) => self
                .events
                .push_back(SessionEvent::SendingPaused { reason }),
            (None, Some(epoch)) => self
                .events
                .push_back(SessionEvent::SendingResumed { epoch }),
            (None, None) => {}
        }
    }

    /// Reports a roster difference that outlived `roster_settle_ms`, across any number of
    /// epochs: from then on this session does not send until an epoch for its view arrives.
    fn check_divergence(&mut self, now: u64) {
        let Some(since) = self.divergent_since else {
            return;
        };
        if self.mismatch || now < since.saturating_add(self.config.roster_settle_ms) {
            return;
        }
        self.report_mismatch();
    }

    fn report_mismatch(&mut self) {
        self.mismatch = true;
        let local: BTreeSet<u64> = self.full_roster().iter().map(|(id, _)| *id).collect();
        let (epoch, leader, leader_ids) = match self.pending_key.as_ref() {
            Some(p) => (p.epoch, p.from, p.roster.iter().copied().collect()),
            None => (self.highest.unwrap_or(0), self.leader(), local.clone()),
        };
        let leader_ids: BTreeSet<u64> = leader_ids;
        self.events.push_back(SessionEvent::RosterMismatch {
            epoch,
            leader,
            only_leader: leader_ids.difference(&local).copied().collect(),
            only_local: local.difference(&leader_ids).copied().collect(),
            keys_differ: leader_ids == local,
        });
    }

    fn leader_timers(&mut self, now: u64) {
        let Some(issued) = self.issued.as_mut() else {
            return;
        };
        if now >= issued.next_resend && issued.resends_left > 0 {
            issued.resends_left -= 1;
            issued.next_resend = now.saturating_add(self.config.resend_interval_ms);
            for (&to, r) in &issued.recipients {
                if !r.acked {
                    self.outgoing.push_back(Outgoing {
                        to,
                        payload: r.payload.clone(),
                    });
                    self.counters.resends += 1;
                }
            }
        }
        if !issued.committed && now >= issued.commit_at {
            self.commit(now);
        }
    }

    fn random<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.rng.fill(&mut out);
        out
    }

    /// Issues a new epoch for the current roster (leader only).
    fn rotate(&mut self, now: u64) {
        if self.meeting_secret.is_none() {
            return;
        }
        let next = match self.highest {
            Some(h) => h.saturating_add(1),
            None => 0,
        }
        .max(self.min_next_epoch);
        if next >= EPOCH_LIMIT {
            // Fail closed and visibly: no epoch can exclude a leaver any more.
            self.exhausted = true;
            return;
        }
        let roster = self.full_roster();
        if roster.len() > MAX_ROSTER {
            return;
        }
        let mut secret_bytes = zeroize::Zeroizing::new([0u8; 32]);
        self.rng.fill(secret_bytes.as_mut());
        let secret = EpochSecret::from_bytes(*secret_bytes);
        let ids: Vec<u64> = roster.iter().map(|(id, _)| *id).collect();
        let hash = roster_hash(roster.iter().map(|(id, pk)| (*id, pk)));
        let message = KeyMessage::EpochKey {
            epoch: next,
            roster: ids.clone(),
            roster_hash: hash,
        };
        let mut recipients = BTreeMap::new();
        let targets: Vec<(u64, PairwiseKey)> = self
            .roster
            .iter()
            .filter_map(|(&id, m)| m.pairwise.clone().map(|k| (id, k)))
            .collect();
        for (to, key) in targets {
            let nonce = self.random::<12>();
            let payload =
                message.seal(&key, &nonce, &self.room, self.own_id, to, secret.as_bytes());
            self.outgoing.push_back(Outgoing {
                to,
                payload: payload.clone(),
            });
            recipients.insert(
                to,
                Recipient {
                    payload,
                    acked: false,
                },
            );
        }
        self.counters.rotations += 1;
        self.install(now, next, secret, ids, self.own_id, hash);
        self.pending_key = None;
        self.divergent_since = None;
        self.mismatch = false;
        if recipients.is_empty() || self.paused.is_some() {
            self.switch_to(next);
        }
        if recipients.is_empty() {
            self.issued = None;
        } else {
            self.issued = Some(Issued {
                epoch: next,
                hash,
                recipients,
                next_resend: now.saturating_add(self.config.resend_interval_ms),
                resends_left: self.config.max_resends,
                commit_at: now.saturating_add(self.config.switch_delay_ms),
                committed: false,
            });
        }
    }

    fn install(
        &mut self,
        now: u64,
        epoch: u64,
        secret: EpochSecret,
        members: Vec<u64>,
        leader: u64,
        hash: [u8; 32],
    ) {
        // Same KIDs as the new epoch: the frame layer replaces them.
        self.installed
            .retain(|&e, _| e == epoch || e & 0xff != epoch & 0xff);
        self.retire_at
            .retain(|&e, _| e == epoch || e & 0xff != epoch & 0xff);
        let grace_end = now.saturating_add(self.config.grace_ms);
        for &older in self.installed.keys().filter(|&&e| e < epoch) {
            self.retire_at.entry(older).or_insert(grace_end);
        }
        self.installed.insert(
            epoch,
            InstalledEpoch {
                leader,
                roster_hash: hash,
                members: members.clone(),
            },
        );
        self.highest = Some(self.highest.map_or(epoch, |h| h.max(epoch)));
        self.actions.push_back(KeyAction::Install {
            epoch,
            secret,
            members,
        });
        self.events
            .push_back(SessionEvent::KeyInstalled { epoch, leader });
    }

    fn switch_to(&mut self, epoch: u64) {
        if self.pending_switch.is_some_and(|(e, _)| e <= epoch) {
            self.pending_switch = None;
        }
        if self.sending.is_some_and(|s| s >= epoch) || !self.installed.contains_key(&epoch) {
            return;
        }
        self.sending = Some(epoch);
        self.actions.push_back(KeyAction::SetSending(epoch));
        self.events.push_back(SessionEvent::EpochChanged { epoch });
        if self
            .rekey_due
            .as_ref()
            .is_some_and(|r| r.floor.is_none_or(|f| epoch > f))
        {
            self.rekey_due = None;
        }
    }

    fn commit(&mut self, _now: u64) {
        let Some(issued) = self.issued.as_mut() else {
            return;
        };
        if issued.committed {
            return;
        }
        issued.committed = true;
        let (epoch, hash) = (issued.epoch, issued.hash);
        let to: Vec<u64> = issued.recipients.keys().copied().collect();
        for id in to {
            self.send_commit(id, epoch, hash);
        }
        self.switch_to(epoch);
    }

    fn send_commit(&mut self, to: u64, epoch: u64, roster_hash: [u8; 32]) {
        let Some(key) = self.roster.get(&to).and_then(|m| m.pairwise.clone()) else {
            return;
        };
        let nonce = self.random::<12>();
        let payload = KeyMessage::Commit { epoch, roster_hash }.seal(
            &key,
            &nonce,
            &self.room,
            self.own_id,
            to,
            &[],
        );
        self.outgoing.push_back(Outgoing { to, payload });
    }

    /// Our own view's roster hash, self included.
    fn own_roster_hash(&self) -> [u8; 32] {
        let roster = self.full_roster();
        roster_hash(roster.iter().map(|(id, pk)| (*id, pk)))
    }

    fn send_ack(&mut self, to: u64, key: &PairwiseKey, epoch: u64, status: AckStatus) {
        let highest = self.highest.unwrap_or(0);
        let nonce = self.random::<12>();
        let payload = KeyMessage::Ack {
            epoch,
            status,
            highest,
            roster_hash: self.own_roster_hash(),
        }
        .seal(key, &nonce, &self.room, self.own_id, to, &[]);
        self.outgoing.push_back(Outgoing { to, payload });
    }

    fn commit_if_all_acked(&mut self, now: u64) {
        if self
            .issued
            .as_ref()
            .is_some_and(|i| !i.committed && i.recipients.values().all(|r| r.acked))
        {
            self.commit(now);
        }
    }

    /// Handles a key message from `from`. Rejections are counted, never fatal.
    pub(crate) fn receive(&mut self, now: u64, from: u64, payload: &[u8]) {
        self.advance(now);
        self.handle(now, from, payload);
        self.advance(now);
    }

    fn handle(&mut self, now: u64, from: u64, payload: &[u8]) {
        if self.meeting_secret.is_none() {
            self.counters.no_secret += 1;
            return;
        }
        let Some(key) = self.roster.get(&from).and_then(|m| m.pairwise.clone()) else {
            self.counters.unknown_sender += 1;
            return;
        };
        let Ok(parsed) = KeyMessage::parse(payload) else {
            self.counters.malformed += 1;
            return;
        };
        match parsed.message.clone() {
            KeyMessage::EpochKey {
                epoch,
                roster,
                roster_hash,
            } => self.on_epoch_key(now, from, &key, &parsed, epoch, roster, roster_hash),
            KeyMessage::Ack {
                epoch,
                status,
                highest,
                roster_hash,
            } => self.on_ack(
                now,
                from,
                &key,
                &parsed,
                epoch,
                status,
                highest,
                roster_hash,
            ),
            KeyMessage::Commit { epoch, roster_hash } => {
                self.on_commit(from, &key, &parsed, epoch, roster_hash)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_epoch_key(
        &mut self,
        now: u64,
        from: u64,
        key: &PairwiseKey,
        parsed: &Parsed<'_>,
        epoch: u64,
        roster: Vec<u64>,
        hash: [u8; 32],
    ) {
        if from != self.leader() {
            self.counters.not_leader += 1;
            return;
        }
        if roster.first() != Some(&from) || roster.binary_search(&self.own_id).is_err() {
            self.counters.foreign += 1;
            return;
        }
        let Some(plain) = parsed.open(key, &self.room, from, self.own_id) else {
            self.counters.auth_failed += 1;
            return;
        };
        if plain.len() != 32 {
            self.counters.malformed += 1;
            return;
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&plain);
        let secret = EpochSecret::from_bytes(*bytes);
        if epoch >= EPOCH_LIMIT {
            self.counters.malformed += 1;
            return;
        }
        if self
            .installed
            .get(&epoch)
            .is_some_and(|i| i.leader == from && bool::from(i.roster_hash.ct_eq(&hash)))
        {
            if Some(epoch) == self.highest && self.matches_own_view(&roster, &hash) {
                // Our ack may have been lost: answer again.
                self.counters.duplicate += 1;
                self.send_ack(from, key, epoch, AckStatus::Installed);
            } else {
                // A replay of an epoch we already moved past.
                self.counters.stale += 1;
            }
            return;
        }
        if self
            .highest
            .is_some_and(|h| epoch > h.saturating_add(MAX_EPOCH_STEP))
        {
            self.counters.out_of_range += 1;
            return;
        }
        if !self.matches_own_view(&roster, &hash) {
            // Made for another roster: keep it aside (our view may be catching up), and time
            // the difference across epochs.
            self.counters.roster_differs += 1;
            if self.highest.is_some_and(|h| epoch <= h) {
                return;
            }
            let same_ids = self
                .full_roster()
                .iter()
                .map(|(id, _)| *id)
                .eq(roster.iter().copied());
            self.pending_key = Some(PendingKey {
                from,
                epoch,
                secret,
                roster,
                hash,
            });
            self.divergent_since.get_or_insert(now);
            if same_ids && !self.mismatch {
                // Same ids, other public keys: a substituted key, no reason to wait.
                self.report_mismatch();
            }
            return;
        }
        if self.highest.is_some_and(|h| epoch <= h) {
            // We hold an epoch this new from someone else: the leader must go above it.
            self.counters.stale += 1;
            self.send_ack(from, key, epoch, AckStatus::Stale);
            return;
        }
        self.accept_epoch(now, from, key, epoch, secret, roster, hash);
    }

    /// Whether `roster` (ids) and `hash` describe exactly our view, self included.
    fn matches_own_view(&self, roster: &[u64], hash: &[u8; 32]) -> bool {
        let own = self.full_roster();
        own.iter().map(|(id, _)| *id).eq(roster.iter().copied())
            && bool::from(self.own_roster_hash().ct_eq(hash))
    }

    /// Installs an epoch made by our leader for our exact view, acks it, and clears any
    /// roster difference.
    #[allow(clippy::too_many_arguments)]
    fn accept_epoch(
        &mut self,
        now: u64,
        from: u64,
        key: &PairwiseKey,
        epoch: u64,
        secret: EpochSecret,
        roster: Vec<u64>,
        hash: [u8; 32],
    ) {
        self.counters.accepted += 1;
        // Someone else leads now: whatever we issued is moot.
        self.issued = None;
        if self.pending_key.as_ref().is_some_and(|p| p.epoch <= epoch) {
            self.pending_key = None;
        }
        self.divergent_since = None;
        let was_paused = self.paused.is_some();
        self.mismatch = false;
        self.install(now, epoch, secret, roster, from, hash);
        self.send_ack(from, key, epoch, AckStatus::Installed);
        if was_paused {
            // We are not sending anyway: take the new epoch at once.
            self.switch_to(epoch);
        } else {
            self.pending_switch = Some((epoch, now.saturating_add(self.config.switch_delay_ms)));
        }
    }

    /// Accepts the key kept aside if our view now matches the roster it was made for.
    fn retry_pending_key(&mut self, now: u64) {
        let Some(pending) = self.pending_key.take() else {
            return;
        };
        if pending.from != self.leader() || self.highest.is_some_and(|h| pending.epoch <= h) {
            return;
        }
        if !self.matches_own_view(&pending.roster, &pending.hash) {
            self.pending_key = Some(pending);
            return;
        }
        let Some(key) = self
            .roster
            .get(&pending.from)
            .and_then(|m| m.pairwise.clone())
        else {
            return;
        };
        let PendingKey {
            from,
            epoch,
            secret,
            roster,
            hash,
        } = pending;
        self.accept_epoch(now, from, &key, epoch, secret, roster, hash);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ack(
        &mut self,
        now: u64,
        from: u64,
        key: &PairwiseKey,
        parsed: &Parsed<'_>,
        epoch: u64,
        status: AckStatus,
        highest: u64,
        hash: [u8; 32],
    ) {
        let Some((issued_epoch, issued_hash)) = self.issued.as_ref().map(|i| (i.epoch, i.hash))
        else {
            self.counters.stale += 1;
            return;
        };
        if parsed.open(key, &self.room, from, self.own_id).is_none() {
            self.counters.auth_failed += 1;
            return;
        }
        if epoch != issued_epoch {
            self.counters.stale += 1;
            return;
        }
        if !bool::from(issued_hash.ct_eq(&hash)) {
            // The member's view is not the roster we keyed: its ack counts for nothing.
            self.counters.roster_differs += 1;
            return;
        }
        match status {
            AckStatus::Installed => {
                let Some(issued) = self.issued.as_mut() else {
                    return;
                };
                let committed = issued.committed;
                let Some(r) = issued.recipients.get_mut(&from) else {
                    self.counters.foreign += 1;
                    return;
                };
                if r.acked {
                    self.counters.duplicate += 1;
                    return;
                }
                r.acked = true;
                self.counters.accepted += 1;
                if committed {
                    // A late ack: this member missed the commit.
                    self.send_commit(from, epoch, issued_hash);
                } else {
                    self.commit_if_all_acked(now);
                }
            }
            AckStatus::Stale => {
                let current = self.highest.unwrap_or(0);
                if highest < current || !self.is_leader() {
                    self.counters.stale += 1;
                    return;
                }
                if highest > current.saturating_add(MAX_EPOCH_STEP) || highest >= EPOCH_LIMIT - 1 {
                    // A forged claim would otherwise push us to the end of the epoch space.
                    self.counters.out_of_range += 1;
                    return;
                }
                self.counters.accepted += 1;
                self.min_next_epoch = self.min_next_epoch.max(highest + 1);
                // At most one ack-caused rotation per interval: acks are not a flood lever.
                let at = self.last_ack_rotation.map_or(now, |last| {
                    now.max(last.saturating_add(self.config.ack_rotation_interval_ms))
                });
                self.last_ack_rotation = Some(at);
                self.rotation_due = Some(self.rotation_due.map_or(at, |due| due.min(at)));
            }
        }
    }

    fn on_commit(
        &mut self,
        from: u64,
        key: &PairwiseKey,
        parsed: &Parsed<'_>,
        epoch: u64,
        hash: [u8; 32],
    ) {
        let Some(installed) = self.installed.get(&epoch) else {
            self.counters.stale += 1;
            return;
        };
        if installed.leader != from {
            self.counters.not_leader += 1;
            return;
        }
        if !bool::from(installed.roster_hash.ct_eq(&hash)) {
            self.counters.roster_differs += 1;
            return;
        }
        if parsed.open(key, &self.room, from, self.own_id).is_none() {
            self.counters.auth_failed += 1;
            return;
        }
        if self.sending.is_some_and(|s| s >= epoch) {
            self.counters.duplicate += 1;
            return;
        }
        self.counters.accepted += 1;
        self.switch_to(epoch);
    }
}

impl std::fmt::Debug for EpochManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochManager")
            .field("room", &self.room)
            .field("own_id", &self.own_id)
            .field("roster", &self.roster.keys().collect::<Vec<_>>())
            .field("highest", &self.highest)
            .field("sending", &self.sending)
            .finish_non_exhaustive()
    }
}
