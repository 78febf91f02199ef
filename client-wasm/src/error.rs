//! Errors of the engine's public API.

use crate::codec::Codec;

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
    /// The underlying SFrame implementation failed in an unexpected way while encrypting.
    #[error("frame encryption failed")]
    Encryption,
}
