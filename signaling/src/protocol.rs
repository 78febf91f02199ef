//! Signaling protocol v1: the JSON messages and the parser that guards the server.
//!
//! One JSON object per WebSocket text frame, discriminated by its `type` field
//! (see `docs/PROTOCOL.md`). Both directions are plain serde types, so a Rust client
//! can reuse them; the server, however, never deserializes client input straight into
//! [`ClientMessage`]: it calls [`parse_client_message`], which
//!
//! 1. rejects oversized text before parsing it (`too_large`),
//! 2. parses generic JSON (`bad_json`),
//! 3. reads `type` (`bad_field` if missing, `unknown_type` if unknown),
//! 4. checks `join.protocol` before anything else in a join (`unsupported_protocol`),
//!    so a future client learns the version mismatch rather than a field error,
//! 5. deserializes the variant's fields, naming the offending field (`bad_field`),
//! 6. validates values serde cannot express: room name charset, name length, public
//!    key shape, base64url and size of E2EE payloads, SDP shape.
//!
//! Anything that passes is safe to act on; everything else becomes a
//! [`ProtocolError`] whose code is stable.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, ProtocolError};
use crate::limits::Limits;

/// The protocol version this server speaks (`join.protocol`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Participant ids: assigned by the server, room-unique, never reused, increasing in
/// join order. The same number is the participant's SFrame `sender_id` and the SFU's
/// [`sfu::ParticipantId`].
pub type ParticipantId = u64;

/// Length of a SEC1 uncompressed P-256 public key (`0x04 ‖ X ‖ Y`).
pub const PUBLIC_KEY_LEN: usize = 65;
/// Longest room name, in characters.
pub const MAX_ROOM_LEN: usize = 64;
/// Longest display name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Longest track id in `mute`, in bytes.
pub const MAX_TRACK_ID_LEN: usize = 256;
/// Longest token, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

// ---------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------

/// Which of a participant's two PeerConnections a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcKind {
    /// Client offers; carries the participant's own tracks to the SFU.
    Publish,
    /// SFU offers; carries everybody else's tracks to the participant.
    Subscribe,
}

/// Kind of a published track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// An Opus track.
    Audio,
    /// A VP8 track.
    Video,
}

/// An ICE candidate in the browser's `RTCIceCandidateInit` JSON shape (camelCase).
///
/// An empty `candidate` string is the browser's end-of-candidates marker and is
/// passed through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The `candidate:…` attribute value.
    pub candidate: String,
    /// The media section's mid.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment the candidate belongs to.
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// One roster entry: who is in the room and with which public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Server-assigned id.
    pub id: ParticipantId,
    /// Display name as the participant sent it (or as its token named it).
    pub name: String,
    /// base64url (no padding) of the 65-byte SEC1 uncompressed P-256 public key.
    pub public_key: String,
}

/// An entry of `welcome.ice_servers`, in the browser's `RTCIceServer` shape: the
/// server's TURN servers with a short-lived credential for this participant (see
/// [`crate::turn`]); empty when the server offers no TURN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` / `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `welcome.ice_transport_policy`, the browser's `RTCIceTransportPolicy`. Only sent
/// by a server started with the test switch `--test-force-relay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceTransportPolicy {
    /// Use relayed (TURN) candidates only.
    Relay,
}

// ---------------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------------

/// `join`: enter a room. Must be the first message of a connection, and only once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Room name: 1..=64 of `[A-Za-z0-9_-]`.
    pub room: String,
    /// Display name: 1..=64 characters, no control characters.
    pub name: String,
    /// base64url (no padding) of the 65-byte SEC1 uncompressed P-256 public key.
    pub public_key: String,
    /// Access token; required when the server runs with `--auth-secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Must be [`PROTOCOL_VERSION`].
    pub protocol: u32,
}

/// `publish_offer`: the client's offer for its publish PeerConnection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishOffer {
    /// SDP offer.
    pub sdp: String,
}

/// `subscribe_answer`: the client's answer to the last `subscribe_offer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeAnswer {
    /// SDP answer.
    pub sdp: String,
}

/// `ice_candidate` (both directions): a trickled ICE candidate for one of the two
/// PeerConnections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidateMessage {
    /// Which PeerConnection.
    pub pc: PcKind,
    /// The candidate.
    pub candidate: Candidate,
}

/// `e2ee` from a client: an opaque payload for exactly one other participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct E2eeSend {
    /// Recipient's participant id.
    pub to: ParticipantId,
    /// base64url (no padding); at most 16 KiB decoded. The server never looks inside.
    pub payload: String,
}

/// `chat`: an end-to-end encrypted chat message (or hand raise) for everybody else in
/// the room. Opaque to the server, like `e2ee`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSend {
    /// base64url (no padding); at most 8 KiB decoded. The server never looks inside,
    /// never logs it and never stores it.
    pub payload: String,
}

/// `mute`: tell the others that one of my tracks is (un)muted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    /// The track id (MediaStreamTrack id, as in `track_published`).
    pub track: String,
    /// New state.
    pub muted: bool,
}

/// `leave`: leave the room; the server then closes the connection (1000).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {}

/// A message from a client to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// See [`Join`].
    Join(Join),
    /// See [`PublishOffer`].
    PublishOffer(PublishOffer),
    /// See [`SubscribeAnswer`].
    SubscribeAnswer(SubscribeAnswer),
    /// See [`IceCandidateMessage`].
    IceCandidate(IceCandidateMessage),
    /// See [`E2eeSend`].
    E2ee(E2eeSend),
    /// See [`Mute`].
    Mute(Mute),
    /// See [`Leave`].
    Leave(Leave),
    /// See [`ChatSend`].
    Chat(ChatSend),
}

/// The `type` of a client message, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientMessageType {
    /// `join`
    Join,
    /// `publish_offer`
    PublishOffer,
    /// `subscribe_answer`
    SubscribeAnswer,
    /// `ice_candidate`
    IceCandidate,
    /// `e2ee`
    E2ee,
    /// `mute`
    Mute,
    /// `leave`
    Leave,
    /// `chat`
    Chat,
}

impl ClientMessageType {
    /// Every type, in declaration order.
    pub const ALL: [ClientMessageType; 8] = [
        ClientMessageType::Join,
        ClientMessageType::PublishOffer,
        ClientMessageType::SubscribeAnswer,
        ClientMessageType::IceCandidate,
        ClientMessageType::E2ee,
        ClientMessageType::Mute,
        ClientMessageType::Leave,
        ClientMessageType::Chat,
    ];

    /// The wire name (`type` value).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMessageType::Join => "join",
            ClientMessageType::PublishOffer => "publish_offer",
            ClientMessageType::SubscribeAnswer => "subscribe_answer",
            ClientMessageType::IceCandidate => "ice_candidate",
            ClientMessageType::E2ee => "e2ee",
            ClientMessageType::Mute => "mute",
            ClientMessageType::Leave => "leave",
            ClientMessageType::Chat => "chat",
        }
    }

    /// Looks a wire name up.
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Position in [`ClientMessageType::ALL`], for counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl ClientMessage {
    /// This message's `type`.
    pub fn message_type(&self) -> ClientMessageType {
        match self {
            ClientMessage::Join(_) => ClientMessageType::Join,
            ClientMessage::PublishOffer(_) => ClientMessageType::PublishOffer,
            ClientMessage::SubscribeAnswer(_) => ClientMessageType::SubscribeAnswer,
            ClientMessage::IceCandidate(_) => ClientMessageType::IceCandidate,
            ClientMessage::E2ee(_) => ClientMessageType::E2ee,
            ClientMessage::Mute(_) => ClientMessageType::Mute,
            ClientMessage::Leave(_) => ClientMessageType::Leave,
            ClientMessage::Chat(_) => ClientMessageType::Chat,
        }
    }
}

// ---------------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------------

/// A message from the server to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to a successful `join`; always the first message after it.
    Welcome {
        /// Your participant id.
        id: ParticipantId,
        /// The room you joined.
        room: String,
        /// Everybody else already in the room, ascending id.
        participants: Vec<ParticipantInfo>,
        /// ICE servers for the PeerConnections: TURN with this participant's
        /// credentials, or empty.
        ice_servers: Vec<IceServer>,
        /// Test servers only: the ICE transport policy to use (absent: `all`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ice_transport_policy: Option<IceTransportPolicy>,
    },
    /// Someone joined your room.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left your room (or was disconnected).
    ParticipantLeft {
        /// Who.
        id: ParticipantId,
    },
    /// The SFU's answer to your `publish_offer`.
    PublishAnswer {
        /// SDP answer.
        sdp: String,
    },
    /// The SFU (re)negotiates your subscribe PeerConnection; reply `subscribe_answer`.
    SubscribeOffer {
        /// SDP offer.
        sdp: String,
    },
    /// A trickled ICE candidate of the SFU.
    IceCandidate {
        /// Which PeerConnection.
        pc: PcKind,
        /// The candidate.
        candidate: Candidate,
    },
    /// An opaque E2EE payload from another participant.
    E2ee {
        /// Sender, stamped by the server: clients cannot forge it.
        from: ParticipantId,
        /// base64url (no padding), exactly as the sender sent it.
        payload: String,
    },
    /// An end-to-end encrypted chat payload from another participant of your room.
    Chat {
        /// Sender, stamped by the server: clients cannot forge it.
        from: ParticipantId,
        /// base64url (no padding), exactly as the sender sent it.
        payload: String,
    },
    /// Another participant's track is now forwarded to you.
    TrackPublished {
        /// Publisher.
        participant: ParticipantId,
        /// The publisher's track id (also the SDP msid track id).
        track_id: String,
        /// Audio or video.
        kind: TrackKind,
    },
    /// Another participant's track went away.
    TrackUnpublished {
        /// Publisher.
        participant: ParticipantId,
        /// The track id.
        track_id: String,
    },
    /// Relay of another participant's `mute`.
    TrackMuted {
        /// Publisher.
        participant: ParticipantId,
        /// The track id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// Who is speaking now (room-wide, on change).
    ActiveSpeakers {
        /// Speaking participants.
        ids: Vec<ParticipantId>,
    },
    /// Your last message was rejected, or something happened to your session.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human explanation.
        message: String,
    },
}

impl ServerMessage {
    /// The `error` message for a [`ProtocolError`].
    pub fn error(err: &ProtocolError) -> Self {
        ServerMessage::Error {
            code: err.code,
            message: err.message.clone(),
        }
    }

    /// Serializes to the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no
        // custom Serialize impls. Fall back to a fixed error rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization failed"}"#.to_owned()
        })
    }
}

// ---------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------

/// Parses and validates one client text frame. See the module docs for the order of
/// checks; the result is safe to act on.
pub fn parse_client_message(text: &str, limits: &Limits) -> Result<ClientMessage, ProtocolError> {
    if text.len() > limits.max_message_bytes {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {} bytes",
                text.len(),
                limits.max_message_bytes
            ),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::BadJson, format!("invalid JSON: {e}")))?;
    let Value::Object(object) = &value else {
        return Err(ProtocolError::new(
            ErrorCode::BadJson,
            "a message must be a JSON object",
        ));
    };
    let type_name = match object.get("type") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(bad_field("`type` must be a string")),
        None => return Err(bad_field("missing field `type`")),
    };
    let Some(message_type) = ClientMessageType::from_wire(type_name) else {
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {:?}", truncate(type_name, 64)),
        ));
    };
    if message_type == ClientMessageType::Join {
        check_protocol_version(object.get("protocol"))?;
    }

    let message = match message_type {
        ClientMessageType::Join => ClientMessage::Join(fields(value)?),
        ClientMessageType::PublishOffer => ClientMessage::PublishOffer(fields(value)?),
        ClientMessageType::SubscribeAnswer => ClientMessage::SubscribeAnswer(fields(value)?),
        ClientMessageType::IceCandidate => ClientMessage::IceCandidate(fields(value)?),
        ClientMessageType::E2ee => ClientMessage::E2ee(fields(value)?),
        ClientMessageType::Mute => ClientMessage::Mute(fields(value)?),
        ClientMessageType::Leave => ClientMessage::Leave(fields(value)?),
        ClientMessageType::Chat => ClientMessage::Chat(fields(value)?),
    };
    validate(&message, limits)?;
    Ok(message)
}

/// `protocol` is checked before the other join fields: a client of another version
/// may shape its join differently, and must learn the version mismatch.
fn check_protocol_version(protocol: Option<&Value>) -> Result<(), ProtocolError> {
    match protocol {
        None => Err(bad_field("missing field `protocol`")),
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => Ok(()),
        Some(Value::Number(n)) => Err(ProtocolError::new(
            ErrorCode::UnsupportedProtocol,
            format!(
                "protocol {n} is not supported; this server speaks protocol {PROTOCOL_VERSION}"
            ),
        )),
        Some(_) => Err(bad_field("`protocol` must be a number")),
    }
}

/// Deserializes a variant's fields, reporting the path of the offending field.
fn fields<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ProtocolError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            bad_field(inner.to_string())
        } else {
            bad_field(format!("field `{path}`: {inner}"))
        }
    })
}

fn validate(message: &ClientMessage, limits: &Limits) -> Result<(), ProtocolError> {
    match message {
        ClientMessage::Join(join) => {
            validate_room(&join.room)?;
            validate_name(&join.name)?;
            decode_public_key(&join.public_key)?;
            if let Some(token) = &join.token
                && token.len() > MAX_TOKEN_LEN
            {
                return Err(bad_field(format!(
                    "`token` is longer than {MAX_TOKEN_LEN} bytes"
                )));
            }
            Ok(())
        }
        ClientMessage::PublishOffer(PublishOffer { sdp })
        | ClientMessage::SubscribeAnswer(SubscribeAnswer { sdp }) => validate_sdp(sdp),
        ClientMessage::IceCandidate(_) => Ok(()),
        ClientMessage::E2ee(e2ee) => {
            validate_opaque_payload(&e2ee.payload, limits.max_e2ee_payload_bytes)
        }
        ClientMessage::Chat(chat) => {
            validate_opaque_payload(&chat.payload, limits.max_chat_payload_bytes)
        }
        ClientMessage::Mute(mute) => {
            if mute.track.is_empty() || mute.track.len() > MAX_TRACK_ID_LEN {
                Err(bad_field(format!(
                    "`track` must be 1..={MAX_TRACK_ID_LEN} bytes"
                )))
            } else {
                Ok(())
            }
        }
        ClientMessage::Leave(_) => Ok(()),
    }
}

/// Room names are 1..=64 characters of `[A-Za-z0-9_-]`: safe in a URL path, a log
/// line and a metrics label without escaping.
pub fn is_valid_room_name(room: &str) -> bool {
    (1..=MAX_ROOM_LEN).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_room(room: &str) -> Result<(), ProtocolError> {
    if is_valid_room_name(room) {
        Ok(())
    } else {
        Err(bad_field(format!(
            "`room` must be 1..={MAX_ROOM_LEN} characters of A-Z a-z 0-9 _ -"
        )))
    }
}

fn validate_name(name: &str) -> Result<(), ProtocolError> {
    let chars = name.chars().count();
    if !(1..=MAX_NAME_LEN).contains(&chars) {
        return Err(bad_field(format!(
            "`name` must be 1..={MAX_NAME_LEN} characters"
        )));
    }
    if name.trim().is_empty() {
        return Err(bad_field("`name` must not be blank"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad_field("`name` must not contain control characters"));
    }
    Ok(())
}

/// Decodes and shape-checks a public key: base64url without padding of
/// `0x04 ‖ X ‖ Y` (65 bytes). Whether the point is on the curve is the E2EE engine's
/// business; the server only relays it.
pub fn decode_public_key(public_key: &str) -> Result<[u8; PUBLIC_KEY_LEN], ProtocolError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(public_key)
        .map_err(|_| bad_field("`public_key` is not base64url without padding"))?;
    match <[u8; PUBLIC_KEY_LEN]>::try_from(bytes.as_slice()) {
        Ok(key) if key[0] == 0x04 => Ok(key),
        _ => Err(bad_field(
            "`public_key` must be a 65-byte SEC1 uncompressed P-256 point (0x04 ‖ X ‖ Y)",
        )),
    }
}

/// Checks an opaque payload's (`e2ee`, `chat`) encoding and decoded size without
/// keeping the decoded bytes: the server relays the sender's string unchanged.
fn validate_opaque_payload(payload: &str, max_decoded: usize) -> Result<(), ProtocolError> {
    // 4 base64 characters carry 3 bytes; refuse before decoding anything huge.
    let max_encoded = max_decoded.div_ceil(3) * 4;
    if payload.len() > max_encoded {
        return Err(payload_too_large(max_decoded));
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad_field("`payload` is not base64url without padding"))?;
    if decoded.len() > max_decoded {
        return Err(payload_too_large(max_decoded));
    }
    Ok(())
}

fn payload_too_large(max_decoded: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::TooLarge,
        format!("`payload` is larger than {max_decoded} bytes decoded"),
    )
}

/// A cheap sanity check; the SFU parses the SDP for real and may still refuse it.
fn validate_sdp(sdp: &str) -> Result<(), ProtocolError> {
    if sdp.starts_with("v=0") {
        Ok(())
    } else {
        Err(ProtocolError::new(
            ErrorCode::BadSdp,
            "`sdp` is not a session description (must start with \"v=0\")",
        ))
    }
}

fn bad_field(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadField, message)
}

/// Cuts client-supplied text that is echoed in an error message.
fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests;
