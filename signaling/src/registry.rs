//! The room registry: every room of this server, the participant id counter and the
//! room/participant limits.
//!
//! All roster changes happen under one short, synchronous lock (never held across an
//! `.await`), which gives the protocol its ordering guarantees for free:
//!
//! * A joiner's `welcome` is queued *before* it becomes visible to the others, so it
//!   is always the first message the joiner receives, and its roster is exactly the
//!   set of participants that will later send it `participant_left`.
//! * Ids are taken from the counter under the same lock as the insertion, so within a
//!   room a higher id always means a later join (the E2EE leader is the lowest id).
//!
//! * The SFU participant is added under the same lock, before `welcome` is queued: a
//!   joiner that anybody hears of is in the media plane already, and a join the SFU
//!   refuses (only while it shuts down) sends no `welcome` and needs no rollback.
//!
//! Each room owns its SFU room ([`sfu::Router`]): created with the room, dropped when it
//! empties. There is no second room map to keep in step with this one.
//!
//! **Participant ids** come from a counter per room starting at 1: unique within the
//! room, never reused while it exists, increasing in join order — the properties the
//! E2EE layer needs for SFrame sender ids. Small ids also keep frames small: the
//! SFrame KID is `id << 8 | epoch`, so ids below 256 keep the KID at two bytes and the
//! per-frame overhead within 22 bytes; a server-wide counter would pass 255 after a
//! few hundred joins anywhere on the server. A room re-created after it emptied starts
//! again at 1, in a new SFU room apart from the old one (whose last participants may
//! still be leaving), which is safe for E2EE because every epoch secret is fresh and
//! random: a sender id met again never meets its old keys.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use crate::error::{ErrorCode, ProtocolError};
use crate::outbox::{Outbound, Outbox};
use crate::protocol::{ParticipantId, ParticipantInfo, ServerMessage};
use crate::room::{Member, Room};
use crate::turn::WelcomeIce;

/// All rooms of one server.
pub(crate) struct Registry {
    max_rooms: usize,
    max_participants: usize,
    sfu: sfu::Sfu,
    inner: Mutex<Inner>,
}

struct Inner {
    rooms: HashMap<String, Room>,
    participants: usize,
    /// The instance number the next new room gets.
    next_instance: u64,
}

/// A participant that joined: its id and its handle and events in the media plane.
pub(crate) struct Joined {
    /// The id `welcome` gave it.
    pub id: ParticipantId,
    /// Which room of that name it joined: what [`Registry::leave`] needs.
    pub instance: u64,
    /// Its SFU participant.
    pub media: sfu::ParticipantHandle,
    /// What the SFU tells it.
    pub events: mpsc::Receiver<sfu::ParticipantEvent>,
}

impl Registry {
    /// An empty registry with the given limits, opening its rooms' media on `sfu`.
    pub fn new(max_rooms: usize, max_participants: usize, sfu: sfu::Sfu) -> Self {
        Registry {
            max_rooms,
            max_participants,
            sfu,
            inner: Mutex::new(Inner {
                rooms: HashMap::new(),
                participants: 0,
                next_instance: 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can panic halfway through a change; if something
        // ever did, the map is still consistent enough to keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a participant to `room` (creating it) and to its SFU room, queues its
    /// `welcome` on `outbox` and tells the others with `participant_joined`.
    #[cfg(test)]
    pub fn join(
        &self,
        room: &str,
        name: &str,
        public_key: &str,
        outbox: Outbox,
    ) -> Result<Joined, ProtocolError> {
        self.join_with(room, name, public_key, outbox, WelcomeIce::default())
    }

    /// [`Registry::join`] with the ICE servers (and policy) its `welcome` carries.
    pub fn join_with(
        &self,
        room: &str,
        name: &str,
        public_key: &str,
        outbox: Outbox,
        ice: WelcomeIce,
    ) -> Result<Joined, ProtocolError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        match inner.rooms.get(room) {
            Some(existing) if existing.len() >= self.max_participants => {
                return Err(ProtocolError::new(
                    ErrorCode::RoomFull,
                    format!(
                        "room {room} already has {} participants",
                        self.max_participants
                    ),
                ));
            }
            None if inner.rooms.len() >= self.max_rooms => {
                return Err(ProtocolError::new(
                    ErrorCode::TooManyRooms,
                    format!("this server already hosts {} rooms", self.max_rooms),
                ));
            }
            _ => {}
        }

        if !inner.rooms.contains_key(room) {
            let router = self
                .sfu
                .open_room(room)
                .map_err(|e| crate::media::sfu_error(&e))?;
            let instance = inner.next_instance;
            inner.next_instance += 1;
            inner
                .rooms
                .insert(room.to_owned(), Room::new(router, instance));
        }
        let Some(entry) = inner.rooms.get_mut(room) else {
            return Err(ProtocolError::new(ErrorCode::Internal, "room vanished"));
        };
        let (media, events) = match entry.router().join(entry.next_id()) {
            Ok(joined) => joined,
            Err(err) => {
                if entry.is_empty() {
                    inner.rooms.remove(room);
                }
                return Err(crate::media::sfu_error(&err));
            }
        };
        let id = entry.take_id();
        let info = ParticipantInfo {
            id,
            name: name.to_owned(),
            public_key: public_key.to_owned(),
        };
        outbox.send(&ServerMessage::Welcome {
            id,
            room: room.to_owned(),
            participants: entry.roster(),
            ice_servers: ice.servers,
            ice_transport_policy: ice.transport_policy,
        });
        let joined = text(&ServerMessage::ParticipantJoined {
            participant: info.clone(),
        });
        entry.broadcast(id, &joined);
        entry.insert(Member { info, outbox });
        inner.participants += 1;
        Ok(Joined {
            id,
            instance: entry.instance(),
            media,
            events,
        })
    }

    /// Removes a participant of room `instance` and tells the others with
    /// `participant_left`; drops the room when it empties. Idempotent: returns false if
    /// it was not there — also when its room was closed ([`Registry::close_room`]) and
    /// another of the same name, whose ids start again at 1, exists now.
    pub fn leave(&self, room: &str, instance: u64, id: ParticipantId) -> bool {
        let mut inner = self.lock();
        let Some(entry) = inner
            .rooms
            .get_mut(room)
            .filter(|r| r.instance() == instance)
        else {
            return false;
        };
        if entry.remove(id).is_none() {
            return false;
        }
        entry.broadcast(id, &text(&ServerMessage::ParticipantLeft { id }));
        if entry.is_empty() {
            // Drops its SFU room too.
            inner.rooms.remove(room);
        }
        inner.participants -= 1;
        true
    }

    /// Closes `room` at once, without `participant_left`: it leaves the registry (and
    /// its SFU room goes), so the next join of that name is placed afresh, and each
    /// participant's connection is told with `item()` to leave and close. Returns how
    /// many participants it had (0 if there was no such room).
    pub fn close_room(&self, room: &str, item: impl Fn() -> Outbound) -> usize {
        let mut inner = self.lock();
        let Some(entry) = inner.rooms.remove(room) else {
            return 0;
        };
        for member in entry.members() {
            member.outbox.push(item());
        }
        inner.participants -= entry.len();
        entry.len()
    }

    /// Delivers an E2EE payload to exactly one other participant of the room, with
    /// `from` stamped by the server.
    pub fn relay_e2ee(
        &self,
        room: &str,
        from: ParticipantId,
        to: ParticipantId,
        payload: String,
    ) -> Result<(), ProtocolError> {
        let inner = self.lock();
        let recipient = inner
            .rooms
            .get(room)
            .and_then(|r| r.get(to))
            .filter(|_| to != from);
        match recipient {
            Some(member) => {
                member.outbox.send(&ServerMessage::E2ee { from, payload });
                Ok(())
            }
            None => Err(ProtocolError::new(
                ErrorCode::UnknownRecipient,
                format!("participant {to} is not another member of room {room}"),
            )),
        }
    }

    /// Queues `message` for everybody in `room` except `from`.
    pub fn broadcast(&self, room: &str, from: ParticipantId, message: &ServerMessage) {
        let inner = self.lock();
        if let Some(entry) = inner.rooms.get(room) {
            entry.broadcast(from, &text(message));
        }
    }

    /// `(rooms, participants)` right now.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.rooms.len(), inner.participants)
    }

    /// Whether this server hosts `room` right now.
    pub fn has_room(&self, room: &str) -> bool {
        self.lock().rooms.contains_key(room)
    }

    /// The names of the rooms hosted here, and the participant count.
    pub fn room_names(&self) -> (Vec<String>, usize) {
        let inner = self.lock();
        (inner.rooms.keys().cloned().collect(), inner.participants)
    }

    /// The roster of a room (ascending id); empty if the room does not exist.
    #[cfg(test)]
    pub fn roster(&self, room: &str) -> Vec<ParticipantInfo> {
        self.lock()
            .rooms
            .get(room)
            .map(Room::roster)
            .unwrap_or_default()
    }
}

fn text(message: &ServerMessage) -> Utf8Bytes {
    message.to_json().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Outbound, OutboxReceiver};

    fn registry(max_rooms: usize, max_participants: usize) -> Registry {
        let sfu = sfu::Sfu::new(sfu::SfuConfig::default()).expect("sfu");
        Registry::new(max_rooms, max_participants, sfu)
    }

    fn member() -> (Outbox, OutboxReceiver) {
        Outbox::new(16)
    }

    fn drain(rx: &mut OutboxReceiver) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        while let Ok(item) = rx.rx.try_recv() {
            match item {
                Outbound::Text(t) => out.push(serde_json::from_str(t.as_str()).unwrap()),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    fn info(id: u64, name: &str) -> ParticipantInfo {
        ParticipantInfo {
            id,
            name: name.into(),
            public_key: format!("pk{id}"),
        }
    }

    #[tokio::test]
    async fn join_welcomes_with_the_roster_and_announces_to_the_others() {
        let reg = registry(10, 10);
        let (a, mut a_rx) = member();
        let (b, mut b_rx) = member();
        assert_eq!(reg.join("r", "A", "pk1", a).unwrap().id, 1);
        assert_eq!(reg.join("r", "B", "pk2", b).unwrap().id, 2);

        assert_eq!(
            drain(&mut a_rx),
            vec![
                ServerMessage::Welcome {
                    id: 1,
                    room: "r".into(),
                    participants: vec![],
                    ice_servers: vec![],
                    ice_transport_policy: None,
                },
                ServerMessage::ParticipantJoined {
                    participant: info(2, "B")
                },
            ]
        );
        assert_eq!(
            drain(&mut b_rx),
            vec![ServerMessage::Welcome {
                id: 2,
                room: "r".into(),
                participants: vec![info(1, "A")],
                ice_servers: vec![],
                ice_transport_policy: None,
            }]
        );
        assert_eq!(reg.counts(), (1, 2));
    }

    #[tokio::test]
    async fn ids_count_per_room_in_join_order_and_restart_in_a_recreated_room() {
        let reg = registry(10, 10);
        let a = reg.join("r", "A", "pk", member().0).unwrap();
        let (id1, id2) = (a.id, reg.join("r", "B", "pk", member().0).unwrap().id);
        let other = reg.join("s", "C", "pk", member().0).unwrap().id;
        assert_eq!(
            (id1, id2, other),
            (1, 2, 1),
            "small per-room ids keep KIDs short"
        );
        assert_eq!(reg.sfu.stats().rooms, 2, "each room has its SFU room");
        assert!(reg.leave("r", a.instance, id1) && reg.leave("r", a.instance, id2));
        assert_eq!(reg.counts(), (1, 1), "empty room is dropped");
        assert_eq!(reg.sfu.stats().rooms, 1, "and its SFU room with it");
        let again = reg.join("r", "A", "pk", member().0).unwrap();
        assert_eq!(again.id, 1, "a re-created room starts again");
        assert_eq!(
            reg.sfu.stats().participants,
            4,
            "in a new SFU room, apart from the old"
        );
    }

    #[tokio::test]
    async fn a_join_the_media_plane_refuses_sends_no_welcome_and_leaves_nothing() {
        let reg = registry(10, 10);
        let (a, mut a_rx) = member();
        let a_id = reg.join("r", "A", "pk1", a).unwrap().id;
        drain(&mut a_rx);
        reg.sfu.shutdown().await;
        for room in ["r", "new"] {
            let (b, mut b_rx) = member();
            let refused = reg.join(room, "B", "pk2", b).err().expect("refused");
            assert_eq!(refused.code, ErrorCode::Internal);
            assert!(drain(&mut b_rx).is_empty(), "no welcome to roll back");
        }
        assert!(drain(&mut a_rx).is_empty(), "nobody heard of B");
        assert_eq!(reg.roster("r"), vec![info(a_id, "A")]);
        assert_eq!(reg.counts(), (1, 1), "no room left behind");
    }

    #[tokio::test]
    async fn leave_announces_and_is_idempotent() {
        let reg = registry(10, 10);
        let (a, mut a_rx) = member();
        let joined_a = reg.join("r", "A", "pk1", a).unwrap();
        let (id_a, instance) = (joined_a.id, joined_a.instance);
        let id_b = reg.join("r", "B", "pk2", member().0).unwrap().id;
        drain(&mut a_rx);
        assert!(reg.leave("r", instance, id_b));
        assert!(!reg.leave("r", instance, id_b));
        assert!(!reg.leave("nope", instance, id_a));
        assert!(
            !reg.leave("r", instance + 1, id_a),
            "another room of that name"
        );
        assert_eq!(
            drain(&mut a_rx),
            vec![ServerMessage::ParticipantLeft { id: id_b }]
        );
        assert_eq!(reg.roster("r"), vec![info(id_a, "A")]);
    }

    #[tokio::test]
    async fn room_and_participant_limits_hold() {
        let reg = registry(2, 2);
        let instance = reg.join("r", "A", "pk", member().0).unwrap().instance;
        reg.join("r", "B", "pk", member().0).unwrap();
        assert_eq!(
            reg.join("r", "C", "pk", member().0)
                .err()
                .expect("refused")
                .code,
            ErrorCode::RoomFull
        );
        reg.join("s", "D", "pk", member().0).unwrap();
        assert_eq!(
            reg.join("t", "E", "pk", member().0)
                .err()
                .expect("refused")
                .code,
            ErrorCode::TooManyRooms
        );
        // Joining an existing room is fine while the room count is at its limit.
        reg.join("s", "F", "pk", member().0).unwrap();
        assert_eq!(reg.counts(), (2, 4));
        // A refused join consumed no id: the next one follows the last success.
        let (g, mut g_rx) = member();
        assert!(reg.leave("r", instance, 2));
        assert_eq!(reg.join("r", "G", "pk", g).unwrap().id, 3);
        assert!(matches!(
            drain(&mut g_rx).first(),
            Some(ServerMessage::Welcome { id: 3, .. })
        ));
    }

    #[tokio::test]
    async fn a_closed_room_tells_its_members_and_their_late_leaves_touch_nothing_new() {
        let reg = registry(10, 10);
        let (a, mut a_rx) = member();
        let (b, mut b_rx) = member();
        let old = reg.join("r", "A", "pk1", a).unwrap();
        let old_b = reg.join("r", "B", "pk2", b).unwrap();
        reg.join("s", "C", "pk3", member().0).unwrap();
        drain(&mut a_rx);
        drain(&mut b_rx);
        let closing = || Outbound::MediaClosed("room moved".into());
        assert_eq!(reg.close_room("r", closing), 2);
        assert_eq!(reg.close_room("r", closing), 0, "already closed");
        assert_eq!(reg.counts(), (1, 1));
        assert!(!reg.has_room("r"));
        for rx in [&mut a_rx, &mut b_rx] {
            let items: Vec<Outbound> = std::iter::from_fn(|| rx.rx.try_recv().ok()).collect();
            assert!(
                matches!(items.as_slice(), [Outbound::MediaClosed(_)]),
                "no participant_left, only the close: {items:?}"
            );
        }
        // A new room of that name starts at id 1 again; the old members leaving late
        // must not remove its participants.
        let (d, _d_rx) = member();
        let new = reg.join("r", "D", "pk1", d).unwrap();
        assert_eq!(new.id, old.id);
        assert_ne!(new.instance, old.instance);
        assert!(!reg.leave("r", old.instance, old.id));
        assert!(!reg.leave("r", old_b.instance, old_b.id));
        assert_eq!(reg.roster("r"), vec![info(1, "D")]);
        assert_eq!(reg.counts(), (2, 2));
    }

    #[tokio::test]
    async fn e2ee_reaches_exactly_its_recipient_with_stamped_sender() {
        let reg = registry(10, 10);
        let (a, mut a_rx) = member();
        let (b, mut b_rx) = member();
        let (c, mut c_rx) = member();
        let (other, mut other_rx) = member();
        let a_id = reg.join("r", "A", "pk", a).unwrap().id;
        let b_id = reg.join("r", "B", "pk", b).unwrap().id;
        let _c_id = reg.join("r", "C", "pk", c).unwrap().id;
        let other_id = reg.join("elsewhere", "O", "pk", other).unwrap().id;
        for rx in [&mut a_rx, &mut b_rx, &mut c_rx, &mut other_rx] {
            drain(rx);
        }

        reg.relay_e2ee("r", a_id, b_id, "AQID".into()).unwrap();
        assert_eq!(
            drain(&mut b_rx),
            vec![ServerMessage::E2ee {
                from: a_id,
                payload: "AQID".into()
            }]
        );
        assert!(drain(&mut a_rx).is_empty());
        assert!(drain(&mut c_rx).is_empty());

        for to in [a_id, other_id, 999] {
            assert_eq!(
                reg.relay_e2ee("r", a_id, to, "AQ".into()).unwrap_err().code,
                ErrorCode::UnknownRecipient,
                "to {to}"
            );
        }
        assert!(drain(&mut other_rx).is_empty());
    }

    #[tokio::test]
    async fn a_full_outbox_signals_too_slow_and_does_not_block_others() {
        let reg = registry(10, 10);
        let (slow, slow_rx) = Outbox::new(1);
        let (a, mut a_rx) = member();
        let slow_id = reg.join("r", "S", "pk", slow).unwrap().id; // welcome fills it
        let a_id = reg.join("r", "A", "pk", a).unwrap().id; // joined: dropped, too slow
        reg.relay_e2ee("r", a_id, slow_id, "AQ".into()).unwrap();
        use futures_util::FutureExt as _;
        assert!(
            slow_rx.too_slow.notified().now_or_never().is_some(),
            "the too_slow permit must be stored"
        );
        assert!(matches!(
            drain(&mut a_rx).first(),
            Some(ServerMessage::Welcome { .. })
        ));
    }
}
