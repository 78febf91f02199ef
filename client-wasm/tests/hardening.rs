//! Issue 8: what a server that drops, replays and relabels messages, or a member that forges
//! acks, can no longer do. Each test failed on the engine before the hardening.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use client_wasm::epoch::EPOCH_LIMIT;
use client_wasm::key_schedule::{pairwise_key, roster_hash};
use client_wasm::message::{AckStatus, KeyMessage};
use client_wasm::secret::{MeetingSecret, PairwiseKey};
use client_wasm::{
    Codec, DeterministicRandom, FrameError, Identity, PauseReason, RandomSource, SessionEvent,
};
use common::{Net, ROOM, SECRET, meeting};

/// The secret scalar `Net::session_for` gives member `id` (same deterministic draw).
fn secret_scalar(id: u64) -> [u8; 32] {
    let mut rng = DeterministicRandom::new(&id.to_be_bytes());
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    assert!(Identity::from_secret_bytes(&bytes).is_ok());
    bytes
}

/// The pairwise key of members `a` and `b`, as a malicious member `a` computes it.
fn pairwise(a: u64, b: u64) -> PairwiseKey {
    let ia = Identity::from_secret_bytes(&secret_scalar(a)).unwrap();
    let ib = Identity::from_secret_bytes(&secret_scalar(b)).unwrap();
    let sk = p256::SecretKey::from_slice(&secret_scalar(a)).unwrap();
    let pk = p256::PublicKey::from_sec1_bytes(&ib.public_key()).unwrap();
    let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    let x: [u8; 32] = (*shared.raw_secret_bytes()).into();
    pairwise_key(
        &MeetingSecret::from_bytes(SECRET),
        ROOM,
        &x,
        &ia.public_key(),
        &ib.public_key(),
    )
}

/// A policy that drops every key message to `to` while the flag is set.
fn withhold_to(net: &mut Net, to: u64) -> Rc<Cell<bool>> {
    let flag = Rc::new(Cell::new(false));
    let f = flag.clone();
    net.policy = Some(Box::new(
        move |_, dst, _| {
            if f.get() && dst == to { None } else { Some(0) }
        },
    ));
    flag
}

/// Members 1-4; 3 leaves and the server withholds every key message to 4 from then on.
fn withheld_rekey(seed: &[u8]) -> (Net, Rc<Cell<bool>>) {
    let mut net = meeting(&[1, 2, 3, 4], seed);
    let withhold = withhold_to(&mut net, 4);
    withhold.set(true);
    net.leave(3);
    (net, withhold)
}

fn paused_events(net: &Net, id: u64) -> Vec<PauseReason> {
    net.events.get(&id).map_or(Vec::new(), |events| {
        events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::SendingPaused { reason } => Some(*reason),
                _ => None,
            })
            .collect()
    })
}

// Item 1: a withheld rekey keeps a leaver reading.

#[test]
fn a_withheld_rekey_after_a_leave_stops_sending_and_the_leaver_reads_nothing() {
    let (mut net, _withhold) = withheld_rekey(b"withheld");
    net.run(3_000);
    // The others moved on without 3; 4 never got the key and must not send.
    assert_eq!(net.session(1).epoch(), net.session(2).epoch());
    let frame = [0xfc, 1, 2, 3];
    let mut sent = Vec::new();
    for _ in 0..10 {
        net.run(100);
        if let Ok(ct) = net.session(4).encrypt(Codec::Opus, &frame) {
            sent.push(ct);
        }
    }
    assert!(sent.is_empty(), "4 kept sending on the epoch 3 holds");
    assert!(net.session(4).encrypt_chat(b"hi").is_err());
    let gone = net.departed.get_mut(&3).unwrap();
    assert!(sent.iter().all(|ct| gone.decrypt(Codec::Opus, ct).is_err()));
}

#[test]
fn sending_pauses_within_three_seconds_says_why_and_resumes_when_the_key_arrives() {
    let (mut net, withhold) = withheld_rekey(b"resume");
    net.run(2_400);
    assert_eq!(net.session(4).paused(), None, "not before the bound");
    net.run(600);
    assert_eq!(net.session(4).paused(), Some(PauseReason::RekeyOverdue));
    assert_eq!(paused_events(&net, 4), vec![PauseReason::RekeyOverdue]);
    assert_eq!(
        net.session(4).encrypt(Codec::Opus, &[0xfc, 1]),
        Err(FrameError::SendingPaused(PauseReason::RekeyOverdue))
    );

    // The leader's resends get through once the server stops withholding.
    withhold.set(false);
    net.run(1_000);
    assert_eq!(net.session(4).paused(), None);
    let resumed = net.events[&4]
        .iter()
        .any(|e| matches!(e, SessionEvent::SendingResumed { .. }));
    assert!(resumed, "{:?}", net.events[&4]);
    let ct = net.session(4).encrypt(Codec::Opus, &[0xfc, 9, 9]).unwrap();
    assert_eq!(
        net.session(1).decrypt(Codec::Opus, &ct).unwrap(),
        [0xfc, 9, 9]
    );
    assert!(
        net.departed
            .get_mut(&3)
            .unwrap()
            .decrypt(Codec::Opus, &ct)
            .is_err()
    );
}

#[test]
fn ordinary_leaves_and_joins_never_pause_anyone() {
    let mut net = meeting(&[1, 2, 3, 4, 5], b"calm");
    net.leave(3);
    net.run(3_000);
    net.leave(1); // the leader: a hand-over
    net.run(3_000);
    net.join(6);
    net.run(3_000);
    for id in [2, 4, 5, 6] {
        assert!(
            paused_events(&net, id).is_empty(),
            "{id}: {:?}",
            net.events[&id]
        );
    }
    assert!(net.all_can_talk());
}

#[test]
fn a_departed_leaders_replayed_key_for_an_old_roster_is_refused() {
    let mut net = meeting(&[1, 2, 3, 4], b"readd");
    let withhold = withhold_to(&mut net, 3);
    let leader_pk = net.public_keys[&1];
    // 5 joins; the server withholds the leader's new epoch from 3 (and all that follows).
    withhold.set(true);
    net.join(5);
    net.run(2_000);
    let epoch = net.session(1).epoch().unwrap();
    let replay = net
        .log
        .iter()
        .rev()
        .find(|(from, to, p)| *from == 1 && *to == 3 && p[1] == 1)
        .map(|(_, _, p)| p.clone())
        .unwrap();
    net.leave(5);
    net.leave(1);
    net.run(3_000);
    // The server re-adds the departed leader for 3 only and replays its key.
    let now = net.now;
    net.session(3).member_joined(now, 1, &leader_pk).unwrap();
    net.inject(1, 3, &replay);
    net.run(100);
    assert!(
        !net.session(3).receiving_epochs().contains(&epoch),
        "3 installed epoch {epoch} made for a roster it is not in"
    );
    assert_ne!(net.session(3).epoch(), Some(epoch));
}

// Item 2: one forged ack freezes rotation.

#[test]
fn a_forged_stale_ack_cannot_exhaust_the_epochs_and_a_leaver_is_still_excluded() {
    let mut net = meeting(&[1, 2, 3], b"forged-ack");
    let epoch = net.converged_epoch().unwrap();
    // Member 3 (holding the meeting secret) forges a Stale ack to the leader.
    let key = pairwise(3, 1);
    let forged = KeyMessage::Ack {
        epoch,
        status: AckStatus::Stale,
        highest: EPOCH_LIMIT - 2,
        roster_hash: [0; 32],
    }
    .seal(&key, &[9; 12], ROOM, 3, 1, &[]);
    net.inject(3, 1, &forged);
    net.run(1_000);
    net.leave(2);
    net.run(3_000);
    let after = net.converged_epoch().expect("a new epoch after the leave");
    assert!(after > epoch && after < 1_000, "epoch {after}");
    let ct = net.session(1).encrypt(Codec::Opus, &[0xfc, 5]).unwrap();
    assert!(
        net.departed
            .get_mut(&2)
            .unwrap()
            .decrypt(Codec::Opus, &ct)
            .is_err()
    );
    assert!(net.all_can_talk());
}

#[test]
fn stale_acks_rotate_at_most_once_a_second() {
    let mut net = meeting(&[1, 2, 3], b"ack-flood");
    let key = pairwise(3, 1);
    let rotations = net.session(1).counters().rotations;
    for i in 0..20u8 {
        let epoch = net.session(1).epoch().unwrap();
        let highest = epoch + 1;
        // Each ack must carry 3's view of the roster to count at all.
        let members: Vec<(u64, [u8; 65])> = net.public_keys.iter().map(|(i, p)| (*i, *p)).collect();
        let hash = roster_hash(members.iter().map(|(id, pk)| (*id, pk)));
        let ack = KeyMessage::Ack {
            epoch,
            status: AckStatus::Stale,
            highest,
            roster_hash: hash,
        }
        .seal(&key, &[i; 12], ROOM, 3, 1, &[]);
        net.inject(3, 1, &ack);
        net.run(100);
    }
    let caused = net.session(1).counters().rotations - rotations;
    assert!(caused <= 3, "{caused} rotations in 2 s of acks");
}

#[test]
fn running_out_of_epochs_fails_closed_and_says_so() {
    // A malicious leader hands 2 the last epoch number; when 2 must rotate, it cannot.
    let mut net = Net::new(b"exhausted");
    net.join(2);
    let leader_pk = Identity::from_secret_bytes(&secret_scalar(1))
        .unwrap()
        .public_key();
    let now = net.now;
    net.session(2).member_joined(now, 1, &leader_pk).unwrap();
    let members = [(1u64, leader_pk), (2, net.public_keys[&2])];
    let hash = roster_hash(members.iter().map(|(id, pk)| (*id, pk)));
    let last = EPOCH_LIMIT - 1;
    let key = KeyMessage::EpochKey {
        epoch: last,
        roster: vec![1, 2],
        roster_hash: hash,
    }
    .seal(&pairwise(1, 2), &[3; 12], ROOM, 1, 2, &[7; 32]);
    net.inject(1, 2, &key);
    net.run(1_500);
    assert_eq!(net.session(2).epoch(), Some(last));
    let now = net.now;
    net.session(2).member_left(now, 1);
    net.run(3_000);
    assert_eq!(net.session(2).paused(), Some(PauseReason::EpochsExhausted));
    assert!(paused_events(&net, 2).contains(&PauseReason::EpochsExhausted));
    assert!(net.session(2).encrypt(Codec::Opus, &[0xfc, 1]).is_err());
}

// Item 3: the server can show Alice's video in Bob's tile.

#[test]
fn a_frame_from_sender_1_presented_as_sender_2_is_dropped() {
    let mut net = meeting(&[1, 2, 3], b"relabel");
    let ct = net.session(1).encrypt(Codec::Opus, &[0xfc, 1, 2]).unwrap();
    let err = net
        .session(3)
        .decrypt_from(Codec::Opus, 2, &ct)
        .unwrap_err();
    assert_eq!(
        err,
        FrameError::WrongSender {
            expected: 2,
            kid_sender: 1
        }
    );
    assert_eq!(err.drop_reason().code(), "wrong_sender");
    assert_eq!(net.session(3).counters().dropped_wrong_sender, 1);
    assert_eq!(
        net.session(3).decrypt_from(Codec::Opus, 1, &ct).unwrap(),
        [0xfc, 1, 2]
    );
}

// Item 4: roster divergence goes unreported.

#[test]
fn a_hidden_member_with_a_rotation_every_1500_ms_raises_the_mismatch() {
    let mut net = meeting(&[1, 2, 3], b"hidden");
    let before = net.session(3).epoch();
    net.hidden.push((3, 4));
    net.join(4);
    for _ in 0..6 {
        net.run(1_500);
        let now = net.now;
        net.session(1).rotate(now);
        net.flush();
    }
    assert!(
        net.events[&3].iter().any(|e| matches!(
            e,
            SessionEvent::RosterMismatch { only_leader, keys_differ: false, .. } if only_leader == &vec![4]
        )),
        "{:?}",
        net.events[&3]
    );
    // 3 never sent on an epoch made for a roster it does not see.
    assert_eq!(net.session(3).epoch(), before);
    assert_eq!(net.session(3).paused(), Some(PauseReason::RosterMismatch));
}

#[test]
fn a_substituted_key_blocks_sending_at_once() {
    let mut net = meeting(&[1, 2, 3], b"substituted");
    let mut rng = DeterministicRandom::new(&99u64.to_be_bytes());
    let fake = Identity::generate_with(&mut rng).public_key();
    net.substituted.push((3, 4, fake));
    net.join(4);
    net.run(1_500);
    assert_eq!(net.session(3).paused(), Some(PauseReason::RosterMismatch));
    assert!(net.session(3).encrypt(Codec::Opus, &[0xfc]).is_err());
    assert!(net.session(3).encrypt_chat(b"x").is_err());
}
