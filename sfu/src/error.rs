//! Errors returned by the SFU API.

/// Everything that can go wrong on the SFU API. Messages are meant for logs and for the
/// `error` frame signaling sends back; none of them carries media or key material.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The configuration cannot work (empty port range, ...).
    #[error("invalid SFU configuration: {0}")]
    Config(String),
    /// Every UDP port of the configured range is in use.
    #[error("no free UDP port in the configured range")]
    NoFreePort,
    /// A participant with this id is already in the room.
    #[error("participant {0} is already in the room")]
    DuplicateParticipant(u64),
    /// The participant has left (or was never joined); the call has no effect.
    #[error("participant has left")]
    ParticipantGone,
    /// The SFU is shutting down and accepts no new participants.
    #[error("the SFU is shutting down")]
    ShuttingDown,
    /// The peer sent an SDP we cannot use.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// The peer sent an ICE candidate we cannot use.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// `subscribe_answer` arrived while no subscribe offer was outstanding.
    #[error("no subscribe offer is outstanding")]
    NoOfferOutstanding,
    /// The WebRTC stack failed (socket, DTLS, internal error).
    #[error("WebRTC: {0}")]
    Rtc(String),
}
