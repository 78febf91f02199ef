//! Signaling protocol v1 as a client speaks it (CONTRACTS.md §2, docs/PROTOCOL.md).
//!
//! These types are written from the client's side on purpose: the tests check the server
//! against the contract, not against the server's own types.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The protocol version this client speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Which of a participant's two PeerConnections a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcName {
    /// The client-offered connection carrying the participant's own tracks.
    Publish,
    /// The server-offered connection carrying everybody else's tracks.
    Subscribe,
}

/// An entry of `welcome.ice_servers` (the browser's `RTCIceServer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:` / `turns:` / `stun:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default)]
    pub credential: Option<String>,
}

/// An ICE candidate in the browser's `RTCIceCandidateInit` JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The `candidate:` attribute line.
    pub candidate: String,
    /// The m-section's mid.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The m-section's index.
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    /// The ICE ufrag the candidate belongs to.
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// A message from the client to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter a room.
    Join {
        /// Room name.
        room: String,
        /// Display name.
        name: String,
        /// base64url (no padding) of the 65-byte SEC1 uncompressed P-256 public key.
        public_key: String,
        /// Optional access token.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Protocol version, [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// Offer for the publish PeerConnection.
    PublishOffer {
        /// SDP offer.
        sdp: String,
    },
    /// Answer to the server's last subscribe offer.
    SubscribeAnswer {
        /// SDP answer.
        sdp: String,
    },
    /// A local ICE candidate (trickle).
    IceCandidate {
        /// Which connection it belongs to.
        pc: PcName,
        /// The candidate.
        candidate: Candidate,
    },
    /// An opaque E2EE key-exchange message for one other participant.
    E2ee {
        /// Recipient participant id.
        to: u64,
        /// base64url (no padding) payload.
        payload: String,
    },
    /// Announce that one of our tracks is muted or unmuted.
    Mute {
        /// Our track id.
        track: String,
        /// Muted or not.
        muted: bool,
    },
    /// Leave the room.
    Leave {},
    /// An end-to-end encrypted chat payload for everybody else in the room.
    Chat {
        /// base64url (no padding) payload.
        payload: String,
    },
}

impl ClientMessage {
    /// A `join` with the public key encoded as the protocol wants.
    pub fn join(room: &str, name: &str, public_key: &[u8], token: Option<String>) -> Self {
        ClientMessage::Join {
            room: room.to_owned(),
            name: name.to_owned(),
            public_key: encode_b64(public_key),
            token,
            protocol: PROTOCOL_VERSION,
        }
    }

    /// A `chat` message carrying `payload` to the room.
    pub fn chat(payload: &[u8]) -> Self {
        ClientMessage::Chat {
            payload: encode_b64(payload),
        }
    }

    /// An `e2ee` message carrying `payload` to `to`.
    pub fn e2ee(to: u64, payload: &[u8]) -> Self {
        ClientMessage::E2ee {
            to,
            payload: encode_b64(payload),
        }
    }
}

/// One other participant as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ParticipantInfo {
    /// Server-assigned id, increasing with join order.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// base64url of its public key.
    pub public_key: String,
}

impl ParticipantInfo {
    /// The decoded public key, if it is valid base64url.
    pub fn public_key_bytes(&self) -> Option<Vec<u8>> {
        decode_b64(&self.public_key)
    }
}

/// Media kind of a published track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

/// A message from the server to the client.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to `join`.
    Welcome {
        /// Our id.
        id: u64,
        /// Room name.
        room: String,
        /// Others already present, ascending id.
        participants: Vec<ParticipantInfo>,
        /// ICE servers to use: the server's TURN with our credential.
        #[serde(default)]
        ice_servers: Vec<IceServer>,
        /// `"relay"` on test servers that force relayed media.
        #[serde(default)]
        ice_transport_policy: Option<String>,
    },
    /// Someone entered.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        id: u64,
    },
    /// Answer to our publish offer.
    PublishAnswer {
        /// SDP answer.
        sdp: String,
    },
    /// (Re)negotiation of our subscribe connection.
    SubscribeOffer {
        /// SDP offer.
        sdp: String,
    },
    /// A server ICE candidate.
    IceCandidate {
        /// Which connection it belongs to.
        pc: PcName,
        /// The candidate.
        candidate: Candidate,
    },
    /// An E2EE message from another participant.
    E2ee {
        /// Sender, stamped by the server.
        from: u64,
        /// base64url payload.
        payload: String,
    },
    /// A chat payload from another participant of the room.
    Chat {
        /// Sender, stamped by the server.
        from: u64,
        /// base64url payload.
        payload: String,
    },
    /// Another participant published a track.
    TrackPublished {
        /// Publisher id.
        participant: u64,
        /// Publisher's track id.
        track_id: String,
        /// Kind.
        kind: MediaKind,
    },
    /// A track went away.
    TrackUnpublished {
        /// Publisher id.
        participant: u64,
        /// Publisher's track id.
        track_id: String,
    },
    /// Relay of another participant's `mute`.
    TrackMuted {
        /// Publisher id.
        participant: u64,
        /// Track id.
        track_id: String,
        /// Muted or not.
        muted: bool,
    },
    /// Who is speaking.
    ActiveSpeakers {
        /// Speaker ids.
        ids: Vec<u64>,
    },
    /// Something we sent was refused.
    Error {
        /// Stable snake_case code.
        code: String,
        /// Human-readable text.
        message: String,
    },
}

/// base64url without padding, as the protocol encodes binary blobs.
pub fn encode_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` if it is not.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_leave_serialize_as_the_contract_says() {
        let join = ClientMessage::join("r1", "ann", &[4u8; 65], None);
        let v: serde_json::Value = serde_json::to_value(&join).unwrap();
        assert_eq!(v["type"], "join");
        assert_eq!(v["protocol"], 1);
        assert!(v.get("token").is_none());
        assert_eq!(
            decode_b64(v["public_key"].as_str().unwrap()).unwrap(),
            [4u8; 65]
        );
        let leave = serde_json::to_string(&ClientMessage::Leave {}).unwrap();
        assert_eq!(leave, r#"{"type":"leave"}"#);
    }

    #[test]
    fn candidates_use_browser_field_names() {
        let msg = ClientMessage::IceCandidate {
            pc: PcName::Subscribe,
            candidate: Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
                username_fragment: None,
            },
        };
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["pc"], "subscribe");
        assert_eq!(v["candidate"]["sdpMid"], "0");
        assert_eq!(v["candidate"]["sdpMLineIndex"], 0);
        assert!(v["candidate"].get("usernameFragment").is_none());
    }

    #[test]
    fn server_messages_parse() {
        let m: ServerMessage = serde_json::from_str(
            r#"{"type":"track_published","participant":3,"track_id":"a","kind":"video"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServerMessage::TrackPublished {
                participant: 3,
                track_id: "a".into(),
                kind: MediaKind::Video
            }
        );
        let m: ServerMessage = serde_json::from_str(
            r#"{"type":"welcome","id":1,"room":"r","participants":[],"ice_servers":[]}"#,
        )
        .unwrap();
        assert!(matches!(m, ServerMessage::Welcome { id: 1, .. }));
        let m: ServerMessage = serde_json::from_str(
            r#"{"type":"welcome","id":1,"room":"r","participants":[],"ice_transport_policy":"relay",
                "ice_servers":[{"urls":["turn:h:3478?transport=udp"],"username":"9:u","credential":"p"}]}"#,
        )
        .unwrap();
        let ServerMessage::Welcome {
            ice_servers,
            ice_transport_policy,
            ..
        } = m
        else {
            panic!("not a welcome");
        };
        assert_eq!(ice_servers[0].username.as_deref(), Some("9:u"));
        assert_eq!(ice_transport_policy.as_deref(), Some("relay"));
    }
}
