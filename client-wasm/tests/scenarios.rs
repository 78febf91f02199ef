//! Scenario tests: several in-memory members behind a relaying "server" with controllable
//! delivery, across joins, leaves, leader hand-over and near-simultaneous changes.

mod common;

use client_wasm::{Codec, FrameError, SessionEvent};
use common::{Net, SECRET, meeting};

#[test]
fn four_members_converge_on_one_epoch_and_can_talk() {
    let mut net = meeting(&[1, 2, 3, 4], b"four");
    // joins within the debounce window share one rotation
    assert_eq!(net.converged_epoch(), Some(0));
    assert!(net.all_can_talk());
    // safety numbers agree
    let codes: Vec<String> = net.sessions.values().map(|s| s.safety_number()).collect();
    assert!(codes.windows(2).all(|w| w[0] == w[1]), "{codes:?}");
    // the leader is 1 and it issued every epoch
    assert!(net.session(1).counters().rotations >= 1);
    assert_eq!(net.session(2).counters().rotations, 0);
    net.join(5);
    net.run(3_000);
    assert_eq!(net.converged_epoch(), Some(1));
    assert!(net.all_can_talk());
}

#[test]
fn a_lone_member_keys_itself() {
    let mut net = Net::new(b"lone");
    net.join(7);
    assert_eq!(net.session(7).epoch(), None);
    net.run(300);
    assert_eq!(net.session(7).epoch(), Some(0));
    let ct = net
        .session(7)
        .encrypt(Codec::Opus, &[0xfc, 1, 2, 3])
        .unwrap();
    assert_eq!(
        net.session(7).decrypt(Codec::Opus, &ct).unwrap(),
        vec![0xfc, 1, 2, 3]
    );
}

#[test]
fn leaver_cannot_decrypt_frames_after_the_rotation() {
    let mut net = meeting(&[1, 2, 3, 4, 5], b"leave");
    let before = net.converged_epoch().unwrap();
    net.leave(3);
    net.run(3_000);
    let after = net.converged_epoch().expect("converged after leave");
    assert!(after > before);
    let mut leaver = net.departed.remove(&3).unwrap();
    for id in [1, 2, 4, 5] {
        let ct = net.session(id).encrypt(Codec::Vp8, &[0x10; 40]).unwrap();
        let err = leaver.decrypt(Codec::Vp8, &ct).unwrap_err();
        assert!(matches!(err, FrameError::UnknownKeyId(_)), "{err:?}");
    }
    assert!(net.all_can_talk());
}

#[test]
fn leader_leaving_hands_over_and_epochs_keep_increasing() {
    let mut net = meeting(&[1, 2, 3, 4], b"handover");
    let before = net.converged_epoch().unwrap();
    net.leave(1);
    net.run(3_000);
    let after = net.converged_epoch().expect("converged after hand-over");
    assert!(after > before, "{after} > {before}");
    assert_eq!(net.session(3).leader(), 2);
    assert!(net.session(2).counters().rotations >= 1);
    assert!(
        net.events[&3].contains(&SessionEvent::LeaderChanged { leader: 2 }),
        "{:?}",
        net.events[&3]
    );
    let mut old_leader = net.departed.remove(&1).unwrap();
    let ct = net.session(4).encrypt(Codec::Other, b"after").unwrap();
    assert!(old_leader.decrypt(Codec::Other, &ct).is_err());
    assert!(net.all_can_talk());
}

#[test]
fn joiner_cannot_decrypt_frames_sent_before_it_joined() {
    let mut net = meeting(&[1, 2, 3, 4], b"join");
    let mut earlier = Vec::new();
    for id in [1, 2, 3, 4] {
        earlier.push(
            net.session(id)
                .encrypt(Codec::Opus, &[0x78, 9, 9, 9])
                .unwrap(),
        );
    }
    net.join(5);
    // frames sent in the window between the join and the rotation, too
    net.run(100);
    for id in [1, 2, 3, 4] {
        earlier.push(
            net.session(id)
                .encrypt(Codec::Opus, &[0x78, 8, 8, 8])
                .unwrap(),
        );
    }
    net.run(3_000);
    net.converged_epoch().expect("converged after join");
    for ct in &earlier {
        assert!(net.session(5).decrypt(Codec::Opus, ct).is_err());
    }
    assert!(net.all_can_talk());
}

#[test]
fn near_simultaneous_changes_converge() {
    let mut net = meeting(&[1, 2, 3, 4, 5], b"burst");
    net.jitter = 80;
    net.join(6);
    net.run(10);
    net.leave(2);
    net.run(15);
    net.join(7);
    net.leave(1); // the leader too
    net.run(20);
    net.join(8);
    net.run(4_000);
    net.converged_epoch().expect("converged after a burst");
    assert!(net.all_can_talk());
    for s in net.sessions.values() {
        assert_eq!(s.roster(), vec![3, 4, 5, 6, 7, 8]);
    }
}

#[test]
fn random_schedules_with_reordering_converge() {
    for seed in 0u8..12 {
        let mut net = Net::new(&[seed]);
        net.fifo = seed % 2 == 0;
        net.jitter = 10 + u64::from(seed) * 15;
        let mut next_id = 1;
        let mut present: Vec<u64> = Vec::new();
        for step in 0..14u64 {
            let r = (u64::from(seed) * 31 + step * 17) % 5;
            if r < 3 || present.len() < 3 {
                net.join(next_id);
                present.push(next_id);
                next_id += 1;
            } else {
                let victim =
                    present.remove(((u64::from(seed) + step) % present.len() as u64) as usize);
                net.leave(victim);
            }
            net.run(((u64::from(seed) + step) % 4) * 60);
        }
        net.run(5_000);
        assert!(
            net.converged_epoch().is_some(),
            "seed {seed}: {:?}",
            net.sessions
        );
        assert!(net.all_can_talk(), "seed {seed}");
    }
}

#[test]
fn lost_key_messages_are_resent() {
    let mut net = meeting(&[1, 2, 3], b"loss");
    let mut dropped = 0;
    net.policy = Some(Box::new(move |from, to, _| {
        if from == 1 && to == 4 && dropped < 2 {
            dropped += 1;
            None
        } else {
            Some(0)
        }
    }));
    net.join(4);
    net.run(4_000);
    net.converged_epoch().expect("converged despite loss");
    assert!(net.session(1).counters().resends >= 1);
    assert!(net.all_can_talk());
}

#[test]
fn new_leader_reissues_above_an_epoch_it_never_saw() {
    // Leader 1 issues an epoch that reaches 3 and 4 but not 2, then leaves: 2 continues from
    // its own highest epoch, 3 and 4 answer "stale", and 2 issues above theirs.
    let mut net = meeting(&[1, 2, 3, 4], b"stale");
    let base = net.converged_epoch().unwrap();
    net.policy = Some(Box::new(
        |from, to, _| if from == 1 && to == 2 { None } else { Some(0) },
    ));
    net.join(5);
    net.run(400);
    net.leave(1);
    net.policy = None;
    net.run(4_000);
    let e = net.converged_epoch().expect("converged");
    // 2 first issued base + 1 (all it knew of), which 3, 4 and 5 already held from 1
    assert_eq!(e, base + 2);
    assert_eq!(net.session(2).counters().rotations, 2);
    assert!(
        net.session(3).counters().messages_stale >= 1
            || net.session(4).counters().messages_stale >= 1
    );
    assert!(net.all_can_talk());
}

#[test]
fn wrong_meeting_secret_derives_no_key() {
    let mut net = meeting(&[1, 2, 3, 4], b"wrong");
    let mut secret = SECRET;
    secret[0] ^= 1;
    net.join_with(9, Some(secret));
    net.run(4_000);
    let intruder = net.sessions.remove(&9).unwrap();
    assert_eq!(intruder.epoch(), None);
    assert!(intruder.receiving_epochs().is_empty());
    assert!(intruder.counters().messages_auth_failed >= 1);
    let mut intruder = intruder;
    let ct = net.session(2).encrypt(Codec::Other, b"secret").unwrap();
    assert!(intruder.decrypt(Codec::Other, &ct).is_err());
    assert!(matches!(
        intruder.encrypt(Codec::Other, b"x"),
        Err(FrameError::NoSendingKey)
    ));
    // the others carry on
    net.run(2_000);
    assert!(net.converged_epoch().is_some());
    assert!(net.all_can_talk());
}

#[test]
fn no_meeting_secret_says_so_and_derives_nothing() {
    let mut net = meeting(&[1, 2], b"nosecret");
    net.join_with(3, None);
    net.run(3_000);
    assert!(net.events[&3].contains(&SessionEvent::KeysUnavailable));
    let s = net.session(3);
    assert_eq!(s.epoch(), None);
    assert!(s.counters().messages_no_secret >= 1);
    assert_eq!(s.safety_number(), net.sessions[&1].safety_number());
}

#[test]
fn substituted_key_changes_safety_number_and_raises_mismatch() {
    let mut net = meeting(&[1, 2, 3], b"mitm");
    // The server tells 3 a different key for newcomer 4.
    let mut rng = client_wasm::DeterministicRandom::new(&99u64.to_be_bytes());
    let fake_pk = client_wasm::Identity::generate_with(&mut rng).public_key();
    net.substituted.push((3, 4, fake_pk));
    net.join(4);
    net.run(3_000);
    let codes: Vec<String> = net.sessions.values().map(|s| s.safety_number()).collect();
    assert_ne!(codes[2], codes[0]);
    assert_eq!(codes[0], codes[1]);
    assert!(
        net.events[&3].iter().any(|e| matches!(
            e,
            SessionEvent::RosterMismatch {
                keys_differ: true,
                ..
            }
        )),
        "{:?}",
        net.events[&3]
    );
}

#[test]
fn a_view_that_stays_different_is_reported() {
    let mut net = meeting(&[1, 2, 3], b"view");
    // The server never tells 3 about 4.
    net.hidden.push((3, 4));
    net.join(4);
    net.run(4_000);
    assert!(
        net.events[&3].iter().any(|e| matches!(
            e,
            SessionEvent::RosterMismatch { only_leader, keys_differ: false, .. } if only_leader == &vec![4]
        )),
        "{:?}",
        net.events[&3]
    );
}

#[test]
fn replayed_stale_foreign_and_garbage_messages_are_counted_not_fatal() {
    let mut net = meeting(&[1, 2, 3, 4], b"replay");
    net.join(5);
    net.run(3_000);
    let log = net.log.clone();
    let (_, _, first_key) = log
        .iter()
        .find(|(f, t, p)| *f == 1 && *t == 2 && p[1] == 1)
        .unwrap()
        .clone();
    let (_, _, last_key) = log
        .iter()
        .rev()
        .find(|(f, t, p)| *f == 1 && *t == 2 && p[1] == 1)
        .unwrap()
        .clone();
    let before = net.session(2).counters();
    net.inject(1, 2, &last_key); // duplicate of the current epoch
    net.inject(1, 2, &first_key); // replay of an old epoch
    net.inject(1, 3, &last_key); // addressed to 2, not 3
    net.inject(1, 2, b"\x01\x01garbage");
    net.inject(77, 2, &last_key); // unknown sender
    net.inject(3, 2, &last_key); // not the leader
    let after = net.session(2).counters();
    assert_eq!(after.messages_duplicate, before.messages_duplicate + 1);
    assert!(after.messages_stale > before.messages_stale);
    assert_eq!(after.messages_malformed, before.messages_malformed + 1);
    assert_eq!(
        after.messages_unknown_sender,
        before.messages_unknown_sender + 1
    );
    assert_eq!(after.messages_not_leader, before.messages_not_leader + 1);
    assert_eq!(net.session(3).counters().messages_auth_failed, 1);
    // The roster hash (and everything else in the clear part) is bound: a server that edits
    // it breaks authentication.
    let mut edited = last_key.clone();
    let hash_at = edited.len() - 12 - 48 - 32;
    edited[hash_at] ^= 1;
    net.inject(1, 2, &edited);
    assert_eq!(
        net.session(2).counters().messages_auth_failed,
        before.messages_auth_failed + 1
    );
    net.run(2_000);
    assert!(net.converged_epoch().is_some());
    assert!(net.all_can_talk());
}

#[test]
fn old_epochs_are_kept_for_the_grace_period_then_dropped() {
    let mut net = meeting(&[1, 2, 3], b"grace");
    let old = net.converged_epoch().unwrap();
    let late = net.session(2).encrypt(Codec::Other, b"in flight").unwrap();
    net.join(4);
    net.run(2_000);
    assert!(net.converged_epoch().unwrap() > old);
    assert_eq!(
        net.session(3).decrypt(Codec::Other, &late).unwrap(),
        b"in flight"
    );
    let late2 = late.clone();
    net.run(10_000);
    assert!(!net.session(3).receiving_epochs().contains(&old));
    assert!(matches!(
        net.session(1).decrypt(Codec::Other, &late2),
        Err(FrameError::UnknownKeyId(_))
    ));
}
