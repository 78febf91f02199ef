//! Chat through real sessions: round trip, tampering, replay, wrong sender, epochs.

mod common;

use client_wasm::ChatError;
use common::Net;
use proptest::prelude::*;

/// Members 1, 2 and 3, keyed and sending on one epoch.
fn meeting() -> Net {
    let mut net = Net::new(b"chat");
    for id in 1..=3 {
        net.join(id);
    }
    net.run(3_000);
    assert!(net.converged_epoch().is_some());
    net
}

#[test]
fn everyone_reads_everyone() {
    let mut net = meeting();
    for from in 1..=3u64 {
        let text = format!("hi from {from}");
        let payload = net.session(from).encrypt_chat(text.as_bytes()).unwrap();
        for to in (1..=3u64).filter(|&t| t != from) {
            assert_eq!(
                net.session(to).decrypt_chat(from, &payload).unwrap(),
                text.as_bytes()
            );
        }
    }
}

#[test]
fn a_session_without_a_key_does_not_send() {
    let mut net = Net::new(b"chat-nokey");
    net.join_with(1, None);
    net.run(2_000);
    assert_eq!(
        net.session(1).encrypt_chat(b"x"),
        Err(ChatError::NotSending)
    );
}

#[test]
fn a_joiner_cannot_read_earlier_messages_and_a_leaver_cannot_read_later_ones() {
    let mut net = meeting();
    let before = net.session(1).encrypt_chat(b"before").unwrap();
    net.join(4);
    net.run(3_000);
    assert_eq!(
        net.session(4).decrypt_chat(1, &before),
        Err(ChatError::UnknownEpoch)
    );
    net.leave(3);
    net.run(3_000);
    let after = net.session(1).encrypt_chat(b"after").unwrap();
    assert_eq!(net.session(4).decrypt_chat(1, &after).unwrap(), b"after");
    let mut gone = net.departed.remove(&3).unwrap();
    assert_eq!(gone.decrypt_chat(1, &after), Err(ChatError::UnknownEpoch));
}

#[test]
fn too_large_and_malformed_are_refused() {
    let mut net = meeting();
    assert_eq!(
        net.session(1).encrypt_chat(&[b'a'; 4097]),
        Err(ChatError::TooLarge)
    );
    assert!(net.session(1).encrypt_chat(&[b'a'; 4096]).is_ok());
    assert_eq!(
        net.session(2).decrypt_chat(1, &[0; 31]),
        Err(ChatError::Malformed)
    );
    assert_eq!(
        net.session(2).decrypt_chat(1, &[0; 16 + 4096 + 17]),
        Err(ChatError::TooLarge)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn round_trip_tamper_replay_and_wrong_sender(
        text in proptest::collection::vec(any::<u8>(), 0..300),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut net = meeting();
        let payload = net.session(1).encrypt_chat(&text).unwrap();

        let mut tampered = payload.clone();
        let at = flip.index(tampered.len());
        tampered[at] ^= 1 << bit;
        prop_assert!(net.session(2).decrypt_chat(1, &tampered).is_err());

        prop_assert_eq!(
            net.session(2).decrypt_chat(3, &payload),
            Err(ChatError::Auth)
        );
        prop_assert_eq!(
            net.session(2).decrypt_chat(9, &payload),
            Err(ChatError::UnknownSender)
        );
        prop_assert_eq!(net.session(2).decrypt_chat(1, &payload).unwrap(), text);
        prop_assert_eq!(
            net.session(2).decrypt_chat(1, &payload),
            Err(ChatError::Replay)
        );
    }

    #[test]
    fn decrypt_chat_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), from in 0u64..6) {
        let mut net = meeting();
        let _ = net.session(2).decrypt_chat(from, &bytes);
    }
}
