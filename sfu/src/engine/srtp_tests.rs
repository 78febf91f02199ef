//! The patched `rtc-srtp`'s in-place RTP protection (`third_party/rtc-srtp/PATCHES.md`),
//! which every forwarded packet goes through: known answers from the crate's own vectors,
//! and round trips through the unpatched decryption, for both SRTP profiles browsers use.

use bytes::BytesMut;
use proptest::prelude::*;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

const KEY_GCM: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const SALT_GCM: [u8; 12] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
];
const KEY_CM: [u8; 16] = [
    0x0d, 0xcd, 0x21, 0x3e, 0x4c, 0xbc, 0xf2, 0x8f, 0x01, 0x7f, 0x69, 0x94, 0x40, 0x1e, 0x28, 0x89,
];
const SALT_CM: [u8; 14] = [
    0x62, 0x77, 0x60, 0x38, 0xc0, 0x6d, 0xc9, 0x41, 0x9f, 0x6d, 0xd9, 0x43, 0x3e, 0x7c,
];

/// A context keyed for `profile`, with a replay window as rtc gives a connection's receiving
/// context.
fn context(profile: ProtectionProfile) -> Context {
    let provider = rtc::crypto::default_provider().expect("a built-in crypto provider");
    let (key, salt): (&[u8], &[u8]) = match profile {
        ProtectionProfile::AeadAes128Gcm => (&KEY_GCM, &SALT_GCM),
        _ => (&KEY_CM, &SALT_CM),
    };
    let replay = Some(rtc::srtp::option::srtp_replay_protection(64));
    Context::new(key, salt, profile, replay, None, provider.crypto()).expect("SRTP context")
}

/// Protects `plain` the way the engine does: in the buffer it was marshalled into.
fn protect(ctx: &mut Context, plain: &[u8]) -> BytesMut {
    let header = rtc::rtp::Header::unmarshal(&mut &plain[..]).expect("header");
    let mut buf = BytesMut::with_capacity(plain.len() + 16);
    buf.extend_from_slice(plain);
    let before = buf.as_ptr();
    ctx.encrypt_rtp_in_place(&mut buf, &header)
        .expect("encrypt in place");
    assert_eq!(buf.as_ptr(), before, "protected where it lay, not copied");
    buf
}

/// Decrypts `protected` with rtc's (unpatched) decryption.
fn unprotect(ctx: &mut Context, protected: &[u8]) -> rtc::shared::error::Result<BytesMut> {
    ctx.decrypt_rtp(protected)
}

#[test]
fn aead_aes_128_gcm_in_place_gives_the_known_answer() {
    let plain = [
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0xab, 0xab, 0xab,
        0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
    ];
    let expected = [
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0xc5, 0x00, 0x2e,
        0xde, 0x04, 0xcf, 0xdd, 0x2e, 0xb9, 0x11, 0x59, 0xe0, 0x88, 0x0a, 0xa0, 0x6e, 0xd2, 0x97,
        0x68, 0x26, 0xf7, 0x96, 0xb2, 0x01, 0xdf, 0x31, 0x31, 0xa1, 0x27, 0xe8, 0xa3, 0x92,
    ];
    let mut ctx = context(ProtectionProfile::AeadAes128Gcm);
    assert_eq!(protect(&mut ctx, &plain)[..], expected[..]);
    let mut receiver = context(ProtectionProfile::AeadAes128Gcm);
    assert_eq!(
        unprotect(&mut receiver, &expected).expect("decrypt")[..],
        plain[..]
    );
}

#[test]
fn aes_128_cm_hmac_sha1_80_in_place_gives_the_known_answers() {
    let cases: [(u16, [u8; 16]); 2] = [
        (
            5000,
            [
                0x6d, 0xd3, 0x7e, 0xd5, 0x99, 0xb7, 0x2d, 0x28, 0xb1, 0xf3, 0xa1, 0xf0, 0x0c, 0xfb,
                0xfd, 0x08,
            ],
        ),
        (
            5001,
            [
                0xda, 0x47, 0x0b, 0x2a, 0x74, 0x53, 0x65, 0xbd, 0x2f, 0xeb, 0xdc, 0x4b, 0x6d, 0x23,
                0xf3, 0xde,
            ],
        ),
    ];
    let mut ctx = context(ProtectionProfile::Aes128CmHmacSha1_80);
    let mut receiver = context(ProtectionProfile::Aes128CmHmacSha1_80);
    for (sequence_number, encrypted) in cases {
        let header = rtc::rtp::Header {
            sequence_number,
            ..Default::default()
        };
        let plain = rtc::rtp::Packet {
            header: header.clone(),
            payload: bytes::Bytes::from_static(&[0, 1, 2, 3, 4, 5]),
        }
        .marshal()
        .expect("marshal");
        let got = protect(&mut ctx, &plain);
        assert_eq!(got[..12], plain[..12], "header left in clear");
        assert_eq!(
            got[12..],
            encrypted[..],
            "sequence number {sequence_number}"
        );
        let decrypted = unprotect(&mut receiver, &got).expect("decrypt");
        assert_eq!(decrypted[..], plain[..]);
    }
}

proptest! {
    /// Across a sequence-number wrap (the rollover counter) and for any payload, what is
    /// protected in place decrypts, with rtc's unpatched decryption, to what was sent and
    /// matches what the copying `encrypt_rtp` makes of it; a flipped bit or a replay is
    /// refused.
    #[test]
    fn in_place_protection_round_trips(
        gcm in any::<bool>(),
        start in 65_500u16..,
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1200), 1..80),
        flip in any::<usize>(),
    ) {
        let profile = if gcm {
            ProtectionProfile::AeadAes128Gcm
        } else {
            ProtectionProfile::Aes128CmHmacSha1_80
        };
        let mut sender = context(profile);
        let mut copying = context(profile);
        let mut receiver = context(profile);
        for (i, payload) in payloads.iter().enumerate() {
            let plain = rtc::rtp::Packet {
                header: rtc::rtp::Header {
                    version: 2,
                    payload_type: 96,
                    sequence_number: start.wrapping_add(i as u16),
                    timestamp: 90 * i as u32,
                    ssrc: 0x1234_5678,
                    ..Default::default()
                },
                payload: bytes::Bytes::copy_from_slice(payload),
            }
            .marshal()
            .expect("marshal");
            let protected = protect(&mut sender, &plain);
            prop_assert_eq!(protected.len(), plain.len() + if gcm { 16 } else { 10 });
            prop_assert_eq!(&copying.encrypt_rtp(&plain).expect("encrypt")[..], &protected[..]);
            if i + 1 == payloads.len() {
                let mut tampered = protected.to_vec();
                let at = flip % tampered.len();
                tampered[at] ^= 1;
                prop_assert!(unprotect(&mut receiver, &tampered).is_err(), "tampered at {}", at);
            }
            let decrypted = unprotect(&mut receiver, &protected).expect("decrypt");
            prop_assert_eq!(&decrypted[..], &plain[..]);
            prop_assert!(unprotect(&mut receiver, &protected).is_err(), "a replay");
        }
    }
}
