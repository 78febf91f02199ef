//! Errors of the engine's public API.

use crate::codec::Codec;
use crate::epoch::PauseReason;

/// Why the engine refused a call that sets up or changes the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Sender ids are shifted left by 8 bits into the SFrame KID, so they must be below 2^56.
    #[error("sender id {0} is too large (sender ids must be below 2^56)")]
    SenderIdTooLarge(u64),
    /// The public key is not a 65-byte SEC1 uncompressed P-256 point.
    #[error("public key is not a valid 65-byte uncompressed P-256 point")]
    InvalidPublicKey,
    /// A member was announced with our own id.
    #[error("member id {0} is our own id")]
    OwnId(u64),
    /// Ids are never reused within a room, so a second, different key for one id is refused.
    #[error("member {0} is already known with a different public key")]
    PublicKeyChanged(u64),
    /// The room name is empty or contains a NUL byte (NUL separates it in key derivation).
    #[error("room name must be non-empty and contain no NUL byte")]
    InvalidRoom,
    /// A secret key given as bytes is not a valid P-256 scalar.
    #[error("secret key is not a valid P-256 scalar")]
    InvalidSecretKey,
}

/// Why a frame could not be encrypted or was dropped on decryption.
///
/// Every decryption error is also counted in [`Counters`](crate::Counters) under the matching
/// `dropped_*` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No sending key yet: the session waits for the leader's epoch secret (or has no
    /// meeting secret at all).
    #[error("no sending key yet")]
    NoSendingKey,
    /// Sending is paused (fail closed) until a usable epoch arrives.
    #[error("sending paused: {}", .0.code())]
    SendingPaused(PauseReason),
    /// The frame is shorter than the clear prefix its codec requires.
    #[error("{codec:?} frame of {len} bytes is shorter than its {prefix}-byte clear prefix")]
    TooShort {
        /// Codec the frame was given as.
        codec: Codec,
        /// Length of the frame.
        len: usize,
        /// Length of the clear prefix the codec requires.
        prefix: usize,
    },
    /// The frame counter of the current key is used up (2^64 frames): wait for the next epoch.
    #[error("frame counter exhausted")]
    CounterExhausted,
    /// No key for the frame's KID (unknown sender or epoch, or a retired epoch).
    #[error("no key for KID {0:#x}")]
    UnknownKeyId(u64),
    /// The frame failed authentication (wrong key, tampered bytes).
    #[error("frame failed authentication")]
    Authentication,
    /// The frame's counter was already seen for its KID, or is too old for the replay window.
    #[error("frame replayed or too old")]
    Replay,
    /// The frame is not a parsable `prefix ‖ SFrame` for its codec.
    #[error("malformed frame")]
    Malformed,
    /// The frame's KID names another sender than the one whose track it arrived on (e.g. a
    /// track the server re-labelled).
    #[error("frame from sender {kid_sender} on the track of {expected}")]
    WrongSender {
        /// The participant the track belongs to.
        expected: u64,
        /// The sender named by the frame's KID.
        kid_sender: u64,
    },
    /// The underlying SFrame implementation failed in an unexpected way while encrypting.
    #[error("frame encryption failed")]
    Encryption,
}

/// Why a received frame was dropped: the typed counterpart of the `dropped_*` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No key for the frame's KID (yet).
    UnknownKeyId,
    /// Authentication failed.
    Authentication,
    /// Replayed or too old.
    Replay,
    /// Not a parsable frame.
    Malformed,
    /// The KID names another sender than the track's.
    WrongSender,
}

impl DropReason {
    /// A stable snake_case code (`unknown_kid`, `auth`, `replay`, `malformed`,
    /// `wrong_sender`).
    pub fn code(self) -> &'static str {
        match self {
            DropReason::UnknownKeyId => "unknown_kid",
            DropReason::Authentication => "auth",
            DropReason::Replay => "replay",
            DropReason::Malformed => "malformed",
            DropReason::WrongSender => "wrong_sender",
        }
    }
}

impl FrameError {
    /// The drop reason of an error returned by decryption.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            FrameError::UnknownKeyId(_) => DropReason::UnknownKeyId,
            FrameError::Authentication => DropReason::Authentication,
            FrameError::Replay => DropReason::Replay,
            FrameError::WrongSender { .. } => DropReason::WrongSender,
            _ => DropReason::Malformed,
        }
    }
}
