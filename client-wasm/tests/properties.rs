//! Property tests of the frame layer and of the engine's robustness against peer input.

mod common;

use client_wasm::{Codec, FrameError, Session};
use common::Net;
use proptest::prelude::*;

/// Two members (1 and 2) sharing an epoch.
fn pair() -> Net {
    let mut net = Net::new(b"pair");
    net.join(1);
    net.join(2);
    net.run(2_000);
    assert!(net.converged_epoch().is_some());
    net
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Vp8), Just(Codec::Opus), Just(Codec::Other)]
}

fn frame_for(codec: Codec) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 10..3000).prop_map(move |mut f| {
        if codec == Codec::Vp8 && f.len() < 10 {
            f[0] |= 1;
        }
        f
    })
}

fn codec_and_frame() -> impl Strategy<Value = (Codec, Vec<u8>)> {
    codec().prop_flat_map(|c| (Just(c), frame_for(c)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_keeps_the_prefix_clear((codec, frame) in codec_and_frame()) {
        let mut net = pair();
        let ct = net.session(1).encrypt(codec, &frame).unwrap();
        let prefix = codec.prefix_len(&frame);
        prop_assert_eq!(&ct[..prefix], &frame[..prefix]);
        prop_assert_eq!(net.session(2).decrypt(codec, &ct).unwrap(), frame);
    }

    #[test]
    fn any_flipped_byte_fails((codec, frame) in codec_and_frame(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut net = pair();
        let ct = net.session(1).encrypt(codec, &frame).unwrap();
        let mut bad = ct.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(net.session(2).decrypt(codec, &bad).is_err());
        // a failed attempt does not spend the genuine frame's counter
        prop_assert_eq!(net.session(2).decrypt(codec, &ct).unwrap(), frame);
    }

    #[test]
    fn replay_fails((codec, frame) in codec_and_frame()) {
        let mut net = pair();
        let ct = net.session(1).encrypt(codec, &frame).unwrap();
        prop_assert!(net.session(2).decrypt(codec, &ct).is_ok());
        prop_assert_eq!(net.session(2).decrypt(codec, &ct), Err(FrameError::Replay));
        prop_assert_eq!(net.session(2).counters().dropped_replay, 1);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), from in 0u64..5, codec in codec()) {
        let mut net = pair();
        let s = net.session(2);
        s.receive(5_000, from, &data);
        let _ = s.decrypt(codec, &data);
        // and with a valid-looking version/type prefix
        let mut msg = vec![1u8, (data.len() % 4) as u8];
        msg.extend_from_slice(&data);
        s.receive(5_000, 1, &msg);
        let c = s.counters();
        prop_assert!(c.messages_accepted + c.messages_malformed + c.messages_auth_failed + c.messages_unknown_sender + c.messages_not_leader + c.messages_foreign + c.messages_stale + c.messages_duplicate >= 2);
    }
}

#[test]
fn frames_of_other_senders_decrypt_out_of_order_within_the_window() {
    let mut net = pair();
    let frames: Vec<Vec<u8>> = (0..100u8)
        .map(|i| net.session(1).encrypt(Codec::Other, &[i; 50]).unwrap())
        .collect();
    for (i, ct) in frames.iter().enumerate().rev() {
        assert_eq!(
            net.session(2).decrypt(Codec::Other, ct).unwrap(),
            vec![i as u8; 50]
        );
    }
}

#[test]
fn overhead_is_at_most_22_bytes() {
    // KID (sender < 256) fits 2 bytes, the counter 3 until 2^24 frames: 1 + 2 + 3 + 16 = 22.
    let mut net = Net::new(b"overhead");
    for id in [1, 2, 255] {
        net.join(id);
    }
    net.run(2_000);
    for id in [1, 255] {
        let s = net.session(id);
        for i in 0..1000 {
            let frame = vec![0x11u8; 1 + i % 300];
            let ct = s.encrypt(Codec::Other, &frame).unwrap();
            assert!(
                ct.len() - frame.len() <= 22,
                "{} bytes",
                ct.len() - frame.len()
            );
        }
    }
}

#[test]
fn frames_shorter_than_their_prefix_are_refused() {
    let mut net = pair();
    let s = net.session(1);
    assert!(matches!(
        s.encrypt(Codec::Opus, &[]),
        Err(FrameError::TooShort { prefix: 1, .. })
    ));
    assert!(matches!(
        s.encrypt(Codec::Vp8, &[0x10, 1, 2, 3]),
        Err(FrameError::TooShort { prefix: 10, .. })
    ));
    assert!(matches!(
        s.encrypt(Codec::Vp8, &[0x11, 1]),
        Err(FrameError::TooShort { prefix: 3, .. })
    ));
    assert!(s.encrypt(Codec::Other, &[]).is_ok());
    assert!(s.encrypt(Codec::Opus, &[0xfc]).is_ok());
    // and on receipt: a VP8 keyframe prefix with nothing after it
    let s2 = net.session(2);
    assert_eq!(
        s2.decrypt(Codec::Vp8, &[0x10; 10]),
        Err(FrameError::Malformed)
    );
    assert_eq!(s2.counters().dropped_malformed, 1);
}

#[test]
fn drops_are_counted_by_reason() {
    let mut net = pair();
    let ct = net.session(1).encrypt(Codec::Other, b"x").unwrap();
    let s = net.session(2);
    let mut unknown = ct.clone();
    unknown[0] = 0x0f; // KID 7 (< 8, in the config byte), no such key
    let _ = s.decrypt(Codec::Other, &unknown);
    let mut tampered = ct.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let _ = s.decrypt(Codec::Other, &tampered);
    let _ = s.decrypt(Codec::Other, &[]);
    s.decrypt(Codec::Other, &ct).unwrap();
    let _ = s.decrypt(Codec::Other, &ct);
    let c = s.counters();
    assert_eq!(
        (
            c.dropped_unknown_kid,
            c.dropped_auth,
            c.dropped_malformed,
            c.dropped_replay,
            c.frames_decrypted
        ),
        (1, 1, 1, 1, 1)
    );
}

#[test]
fn sender_ids_at_or_above_2_pow_56_are_refused() {
    let id = client_wasm::Identity::generate();
    let pk = id.public_key();
    assert!(Session::new("r", 1 << 56, None, id.clone(), Default::default()).is_err());
    let mut s = Session::new("r", 1, None, id, Default::default()).unwrap();
    assert_eq!(
        s.member_joined(0, 1 << 56, &pk),
        Err(client_wasm::EngineError::SenderIdTooLarge(1 << 56))
    );
    assert!(s.member_joined(0, (1 << 56) - 1, &pk).is_ok());
}
