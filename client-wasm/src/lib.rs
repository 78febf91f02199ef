//! Sealed's end-to-end encryption engine: pure Rust, built natively (tests, the native
//! participant) and for wasm32 (the browser's encoded-transform worker, through the thin
//! `wasm` face compiled only for `target_arch = "wasm32"`).
//!
//! # What it does
//!
//! - **Frames** ([`frame`], [`codec`]): every encoded media frame becomes
//!   `clear prefix ‖ SFrame(header ‖ ciphertext ‖ tag)` (RFC 9605, suite
//!   AES_128_GCM_SHA256_128, through the `sframe` crate). The prefix (VP8 10/3 bytes, Opus 1,
//!   others 0) stays readable for packetizers and is authenticated as SFrame metadata.
//!   Receivers keep a replay window per KID and count drops by reason.
//! - **Keys** ([`key_schedule`], [`message`], [`epoch`]): members agree on per-epoch group
//!   secrets. The leader (lowest id) draws a random epoch secret on every roster change and
//!   wraps it with AES-256-GCM under a pairwise key per member (P-256 ECDH + HKDF salted with
//!   the meeting secret from the link, which the server never sees). Sender keys are
//!   `HKDF-Expand(epoch secret, sender id)`; `KID = sender_id << 8 | epoch mod 256`.
//! - **Chat** ([`chat`]): text messages sealed with AES-128-GCM under a per-sender,
//!   per-epoch key from the same epoch secrets, relayed by the server as opaque bytes
//!   ([`Session::encrypt_chat`], [`Session::decrypt_chat`]).
//! - **Safety number** ([`safety`]): eight groups of five digits (SHA-512) over the roster's
//!   (id, public key) pairs; equal on every screen means no key substitution.
//!
//! Byte layouts, message rules and the races they answer are in `docs/PROTOCOL.md`
//! (section "E2EE"); `tests/vectors/key-schedule.json` holds known answers for an independent
//! implementation.
//!
//! # Using a [`Session`]
//!
//! The engine is sans-IO: it never reads a clock, a socket or (unless you let it) the OS
//! random generator. Feed it roster events and key messages with the current time, run
//! [`Session::tick`] periodically, and drain what it wants sent and reported:
//!
//! ```
//! use client_wasm::{Codec, Identity, Session, SessionConfig};
//!
//! let secret = [7u8; 32]; // from the meeting link's fragment
//! let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
//! let (alice_pk, bob_pk) = (alice_id.public_key(), bob_id.public_key());
//! let mut alice = Session::new("room", 1, Some(secret), alice_id, SessionConfig::default())?;
//! let mut bob = Session::new("room", 2, Some(secret), bob_id, SessionConfig::default())?;
//! alice.member_joined(0, 2, &bob_pk)?; // from `welcome` / `participant_joined`
//! bob.member_joined(0, 1, &alice_pk)?;
//!
//! // The signaling loop: relay `e2ee` messages and tick.
//! for now in (0..2_000).step_by(50) {
//!     alice.tick(now);
//!     bob.tick(now);
//!     while let Some(out) = alice.poll_outgoing() {
//!         assert_eq!(out.to, 2);
//!         bob.receive(now, 1, &out.payload);
//!     }
//!     while let Some(out) = bob.poll_outgoing() {
//!         alice.receive(now, 2, &out.payload);
//!     }
//! }
//! assert_eq!(alice.epoch(), bob.epoch());
//! assert_eq!(alice.safety_number(), bob.safety_number());
//!
//! // The media path.
//! let opus_frame = [0xfc, 1, 2, 3];
//! let wire = alice.encrypt(Codec::Opus, &opus_frame).unwrap();
//! assert_eq!(bob.decrypt(Codec::Opus, &wire).unwrap(), opus_frame);
//! # Ok::<(), client_wasm::EngineError>(())
//! ```
//!
//! # Security notes
//!
//! - Secrets (meeting secret, pairwise keys, epoch secrets, base keys, identity scalars, SFrame
//!   keys) are wiped on drop and print as `<redacted>`; `Debug` of every type shows no key.
//! - Nothing a peer sends can panic the engine: malformed, stale, replayed, foreign or forged
//!   input is dropped and counted ([`Counters`]); property tests feed random bytes to
//!   [`Session::receive`] and [`Session::decrypt`].
//! - AEAD tag checks are constant-time in the AES-GCM implementation.
//! - Sender ids must be below 2^56 (the KID layout); larger ones are refused with
//!   [`EngineError::SenderIdTooLarge`].

pub mod chat;
pub mod codec;
pub mod epoch;
pub mod error;
#[cfg(feature = "test-export")]
pub mod export;
pub mod frame;
pub mod identity;
pub mod key_schedule;
pub mod message;
pub mod random;
pub mod safety;
pub mod secret;
mod session;

pub use chat::ChatError;
pub use codec::Codec;
pub use epoch::{MessageCounters, Outgoing, PauseReason, SessionConfig, SessionEvent};
pub use error::{DropReason, EngineError, FrameError};
pub use frame::CIPHER_SUITE;
pub use identity::Identity;
pub use random::{DeterministicRandom, OsRandom, RandomSource};
pub use session::{Counters, Session};

#[cfg(target_arch = "wasm32")]
mod wasm;
