//! Rooms: who is in, what is published, and who must hear about it.
//!
//! A room never awaits: it updates its bookkeeping under a short lock and tells each
//! participant's actor what to do ([`Cmd::Subscribe`], [`Cmd::Unsubscribe`]) or what to
//! tell its client (an event). The actors do the WebRTC work.

use crate::audio_level::ActiveSpeakers;
use crate::participant::Cmd;
use crate::receiver::Receiver;
use crate::stats::Counters;
use crate::{ParticipantEvent, ParticipantId, TrackKind};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// How often the room samples audio levels for active-speaker detection.
pub(crate) const SPEAKER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(300);

/// What the room holds of a participant.
#[derive(Clone)]
pub(crate) struct Member {
    /// Commands to the participant's actor.
    pub cmds: mpsc::UnboundedSender<Cmd>,
    /// Events to the participant's client (through signaling).
    pub events: mpsc::UnboundedSender<ParticipantEvent>,
    /// Set once the participant left (makes leaving idempotent).
    pub left: Arc<AtomicBool>,
}

/// Why a participant could not be added.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The id is taken.
    Duplicate,
    /// The room was closed (its owner dropped it, or the SFU shuts down).
    Closed,
}

/// One room.
pub(crate) struct Room {
    /// The room's name.
    pub name: String,
    state: Mutex<RoomState>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct RoomState {
    members: BTreeMap<ParticipantId, Member>,
    receivers: Vec<Arc<Receiver>>,
    speakers: ActiveSpeakers,
    closed: bool,
}

impl Room {
    /// An empty room.
    pub fn new(name: String, counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(Self {
            name,
            state: Mutex::default(),
            counters,
        })
    }

    fn state(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a participant and subscribes it to every track already published.
    pub fn add(&self, id: ParticipantId, member: Member) -> Result<(), AddError> {
        let mut state = self.state();
        if state.closed {
            return Err(AddError::Closed);
        }
        if state.members.contains_key(&id) {
            return Err(AddError::Duplicate);
        }
        for receiver in &state.receivers {
            let _ = member.cmds.send(Cmd::Subscribe(Arc::clone(receiver)));
        }
        state.members.insert(id, member);
        Ok(())
    }

    /// Removes a participant and everything it published. Returns `true` if it was there.
    pub fn remove(&self, id: ParticipantId) -> bool {
        let mut state = self.state();
        let removed = state.members.remove(&id).is_some();
        if removed {
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.receivers)
                .into_iter()
                .partition(|r| r.publisher == id);
            state.receivers = kept;
            for receiver in gone {
                Self::unpublish_locked(&state, &receiver, &self.counters);
            }
            state.speakers.remove(id);
        }
        removed
    }

    /// Closes the room: no participant is added and no track published any more. Who is
    /// still in it leaves as usual.
    pub fn close(&self) {
        self.state().closed = true;
    }

    /// Adds a published track and subscribes every other participant. `false` if its
    /// publisher is no longer in the room.
    pub fn publish(&self, receiver: Arc<Receiver>) -> bool {
        let mut state = self.state();
        if state.closed || !state.members.contains_key(&receiver.publisher) {
            return false;
        }
        if state
            .receivers
            .iter()
            .any(|r| r.publisher != receiver.publisher && r.track_id == receiver.track_id)
        {
            // Subscribers' PCs key tracks by id; browsers use UUIDs, so this is a client bug.
            tracing::warn!(room = %self.name, track_id = %receiver.track_id,
                "two publishers use the same track id; subscribers may mix them up");
        }
        for (id, member) in &state.members {
            if *id != receiver.publisher {
                let _ = member.cmds.send(Cmd::Subscribe(Arc::clone(&receiver)));
            }
        }
        state.receivers.push(receiver);
        Counters::inc(&self.counters.tracks);
        true
    }

    /// Removes a published track (it ended); subscribers drop their down tracks.
    pub fn unpublish(&self, receiver: &Arc<Receiver>) {
        let mut state = self.state();
        let before = state.receivers.len();
        state.receivers.retain(|r| !Arc::ptr_eq(r, receiver));
        if state.receivers.len() != before {
            Self::unpublish_locked(&state, receiver, &self.counters);
        }
    }

    fn unpublish_locked(state: &RoomState, receiver: &Arc<Receiver>, counters: &Counters) {
        receiver.close();
        Counters::dec(&counters.tracks);
        for (id, member) in &state.members {
            if *id != receiver.publisher {
                let _ = member.cmds.send(Cmd::Unsubscribe(Arc::clone(receiver)));
            }
        }
    }

    /// Samples every audio track's levels; tells everyone if the speaking set changed.
    pub fn sample_speakers(&self) {
        let mut state = self.state();
        let samples: Vec<(ParticipantId, u32, u32)> = state
            .receivers
            .iter()
            .filter(|r| r.kind == TrackKind::Audio)
            .map(|r| {
                let (count, sum) = r.levels.take();
                (r.publisher, count, sum)
            })
            .collect();
        if let Some(ids) = state.speakers.update(&samples) {
            for member in state.members.values() {
                let _ = member
                    .events
                    .send(ParticipantEvent::ActiveSpeakers { ids: ids.clone() });
            }
        }
    }

    /// Everyone in the room (for shutdown).
    pub fn members(&self) -> Vec<(ParticipantId, Member)> {
        self.state()
            .members
            .iter()
            .map(|(id, m)| (*id, m.clone()))
            .collect()
    }

    /// Whether the room was closed.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Number of tracks published in the room.
    #[cfg(test)]
    pub fn track_count(&self) -> usize {
        self.state().receivers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::down_track::DownTrackQueue;
    use crate::receiver::{Receiver, ReceiverInit};
    use std::time::Duration;

    struct Fake {
        cmds: mpsc::UnboundedReceiver<Cmd>,
        events: mpsc::UnboundedReceiver<ParticipantEvent>,
    }

    impl Fake {
        /// Drains commands as (subscribe?, publisher, track id).
        fn cmds(&mut self) -> Vec<(bool, ParticipantId, String)> {
            let mut out = vec![];
            while let Ok(cmd) = self.cmds.try_recv() {
                match cmd {
                    Cmd::Subscribe(r) => out.push((true, r.publisher, r.track_id.clone())),
                    Cmd::Unsubscribe(r) => out.push((false, r.publisher, r.track_id.clone())),
                    _ => {}
                }
            }
            out
        }

        fn speakers(&mut self) -> Vec<Vec<ParticipantId>> {
            let mut out = vec![];
            while let Ok(ev) = self.events.try_recv() {
                if let ParticipantEvent::ActiveSpeakers { ids } = ev {
                    out.push(ids);
                }
            }
            out
        }
    }

    fn member() -> (Member, Fake) {
        let (ctx, crx) = mpsc::unbounded_channel();
        let (etx, erx) = mpsc::unbounded_channel();
        (
            Member {
                cmds: ctx,
                events: etx,
                left: Arc::default(),
            },
            Fake {
                cmds: crx,
                events: erx,
            },
        )
    }

    fn track(room: &Room, publisher: ParticipantId, id: &str, kind: TrackKind) -> Arc<Receiver> {
        Receiver::new(
            ReceiverInit {
                publisher,
                track_id: id.to_owned(),
                kind,
                audio_level_ext: Some(1),
                pli_min_interval: Duration::from_millis(500),
                counters: Arc::clone(&room.counters),
                #[cfg(feature = "test-tap")]
                tap: Default::default(),
            },
            None,
        )
    }

    fn room() -> Arc<Room> {
        Room::new("r".into(), Arc::new(Counters::default()))
    }

    #[test]
    fn join_and_leave_bookkeeping() {
        let room = room();
        let (m1, _f1) = member();
        let (m2, _f2) = member();
        room.add(1, m1.clone()).expect("1 joins");
        assert_eq!(room.add(1, m1), Err(AddError::Duplicate));
        room.add(2, m2).expect("2 joins");
        assert_eq!(room.members().len(), 2);
        assert!(room.remove(1));
        assert!(!room.remove(1), "removing twice is harmless");
        assert!(room.remove(2));
        assert!(
            !room.is_closed(),
            "an empty room stays open while its owner keeps it"
        );
        let (m3, _f3) = member();
        room.add(3, m3.clone()).expect("3 joins the empty room");
        room.close();
        let (m4, _f4) = member();
        assert_eq!(room.add(4, m4), Err(AddError::Closed));
        assert!(room.remove(3), "who is in a closed room still leaves");
    }

    #[test]
    fn tracks_fan_out_to_others_and_to_newcomers() {
        let room = room();
        let (m1, mut f1) = member();
        let (m2, mut f2) = member();
        room.add(1, m1).expect("join");
        room.add(2, m2).expect("join");
        assert!(room.publish(track(&room, 1, "a1", TrackKind::Audio)));
        assert!(room.publish(track(&room, 1, "v1", TrackKind::Video)));
        assert!(
            f1.cmds().is_empty(),
            "a publisher does not subscribe to itself"
        );
        assert_eq!(
            f2.cmds(),
            vec![(true, 1, "a1".into()), (true, 1, "v1".into())]
        );
        assert_eq!(
            room.counters
                .tracks
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );

        let (m3, mut f3) = member();
        room.add(3, m3).expect("late joiner");
        assert_eq!(
            f3.cmds(),
            vec![(true, 1, "a1".into()), (true, 1, "v1".into())],
            "the newcomer gets every existing track"
        );

        assert!(room.publish(track(&room, 3, "a3", TrackKind::Audio)));
        assert_eq!(f1.cmds(), vec![(true, 3, "a3".into())]);
        assert_eq!(f2.cmds(), vec![(true, 3, "a3".into())]);
    }

    #[test]
    fn leaver_tracks_are_unpublished_everywhere() {
        let room = room();
        let (m1, _f1) = member();
        let (m2, mut f2) = member();
        let (m3, mut f3) = member();
        room.add(1, m1).expect("join");
        room.add(2, m2).expect("join");
        room.add(3, m3).expect("join");
        let a1 = track(&room, 1, "a1", TrackKind::Audio);
        let (q, _rx) = DownTrackQueue::new(2);
        a1.attach(q);
        room.publish(Arc::clone(&a1));
        room.publish(track(&room, 2, "a2", TrackKind::Audio));
        f2.cmds();
        f3.cmds();
        assert!(room.remove(1));
        assert!(a1.is_closed(), "the leaver's receiver stopped");
        assert!(a1.subscribers().is_empty());
        assert_eq!(f2.cmds(), vec![(false, 1, "a1".into())]);
        assert_eq!(f3.cmds(), vec![(false, 1, "a1".into())]);
        assert_eq!(room.track_count(), 1);
        assert_eq!(
            room.counters
                .tracks
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn publish_after_leave_is_refused() {
        let room = room();
        let (m1, _f1) = member();
        let (m2, _f2) = member();
        room.add(1, m1).expect("join");
        room.add(2, m2).expect("join");
        room.remove(1);
        assert!(!room.publish(track(&room, 1, "late", TrackKind::Video)));
        assert_eq!(room.track_count(), 0);
    }

    #[test]
    fn ended_track_is_unpublished_once() {
        let room = room();
        let (m1, _f1) = member();
        let (m2, mut f2) = member();
        room.add(1, m1).expect("join");
        room.add(2, m2).expect("join");
        let v = track(&room, 1, "v", TrackKind::Video);
        room.publish(Arc::clone(&v));
        f2.cmds();
        room.unpublish(&v);
        room.unpublish(&v);
        assert_eq!(f2.cmds(), vec![(false, 1, "v".into())]);
    }

    #[test]
    fn audio_levels_drive_active_speakers() {
        let room = room();
        let (m1, mut f1) = member();
        let (m2, mut f2) = member();
        room.add(1, m1).expect("join");
        room.add(2, m2).expect("join");
        let a1 = track(&room, 1, "a1", TrackKind::Audio);
        let a2 = track(&room, 2, "a2", TrackKind::Audio);
        room.publish(Arc::clone(&a1));
        room.publish(Arc::clone(&a2));
        for _ in 0..10 {
            a1.levels.record(30);
            a2.levels.record(120);
        }
        room.sample_speakers();
        assert_eq!(f1.speakers(), vec![vec![1]]);
        assert_eq!(f2.speakers(), vec![vec![1]]);
        for _ in 0..10 {
            a1.levels.record(30);
        }
        room.sample_speakers();
        assert!(f2.speakers().is_empty(), "no change, no event");
        for _ in 0..10 {
            a2.levels.record(10);
            a1.levels.record(30);
        }
        room.sample_speakers();
        assert_eq!(f2.speakers(), vec![vec![2, 1]], "loudest first");
    }
}
