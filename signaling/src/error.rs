//! The stable error codes of the signaling protocol.
//!
//! Every problem the server reports to a client travels as
//! `{"type":"error","code":"<code>","message":"<human text>"}`. Clients branch on
//! `code`, never on `message`: the codes below are part of protocol v1 and are never
//! renamed; the messages may be reworded at any time.

use serde::{Deserialize, Serialize};

/// Why the server rejected a client message (the `code` of an `error` message).
///
/// The wire form is the snake_case name, e.g. [`ErrorCode::BadJson`] is `"bad_json"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text frame is not valid JSON, is not a JSON object, or was a binary frame.
    BadJson,
    /// The `type` field names no message of this protocol version.
    UnknownType,
    /// A field is missing, has the wrong JSON type, or has an invalid value
    /// (room name charset, name length, public key shape, base64url, …).
    BadField,
    /// The message needs a joined participant, but this connection has not joined.
    NotJoined,
    /// `join` on a connection that already joined.
    AlreadyJoined,
    /// `e2ee.to` names no other participant of the room.
    UnknownRecipient,
    /// The message (or an `e2ee` payload) exceeds its size limit.
    TooLarge,
    /// The connection sent messages faster than its rate limit; the excess was dropped.
    RateLimited,
    /// The room already holds the maximum number of participants.
    RoomFull,
    /// The server already hosts the maximum number of rooms.
    TooManyRooms,
    /// Joining needs a valid token for this room and name (missing, malformed, bad
    /// signature, expired, other room or other name).
    Unauthorized,
    /// `join.protocol` is not a version this server speaks.
    UnsupportedProtocol,
    /// The media server could not use the SDP (offer or answer) or ICE candidate.
    BadSdp,
    /// The media connections failed (ICE/DTLS); the participant has been removed.
    MediaFailed,
    /// Something went wrong on the server; not the client's fault.
    Internal,
    /// Multi-node mode: the room could not be placed or reached right now (the
    /// cluster registry or the node hosting the room is unreachable). Transient:
    /// retry the join.
    ClusterUnavailable,
}

impl ErrorCode {
    /// Every code, in declaration order (used by metrics and tests).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadField,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::UnknownRecipient,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::RoomFull,
        ErrorCode::TooManyRooms,
        ErrorCode::Unauthorized,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::BadSdp,
        ErrorCode::MediaFailed,
        ErrorCode::Internal,
        ErrorCode::ClusterUnavailable,
    ];

    /// The wire name, e.g. `"bad_json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadField => "bad_field",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::UnknownRecipient => "unknown_recipient",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::BadSdp => "bad_sdp",
            ErrorCode::MediaFailed => "media_failed",
            ErrorCode::Internal => "internal",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
        }
    }

    /// Position in [`ErrorCode::ALL`], for counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected client message: the code the client sees and a human explanation.
///
/// Produced by the parser ([`crate::protocol::parse_client_message`]) and by the
/// connection's state machine; sent back as an `error` message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people. Never contains E2EE payloads or tokens.
    pub message: String,
}

impl ProtocolError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_index_matches_all() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *code);
            assert_eq!(code.index(), i);
        }
    }
}
