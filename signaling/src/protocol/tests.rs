//! Unit tests of the wire format and of every error the parser produces.

use super::*;
use serde_json::json;

fn key() -> String {
    let mut k = [7u8; PUBLIC_KEY_LEN];
    k[0] = 0x04;
    URL_SAFE_NO_PAD.encode(k)
}

fn parse(v: serde_json::Value) -> Result<ClientMessage, ProtocolError> {
    parse_client_message(&v.to_string(), &Limits::default())
}

fn code_of(v: serde_json::Value) -> ErrorCode {
    match parse(v) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e.code,
    }
}

fn candidate() -> Candidate {
    Candidate {
        candidate: "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

fn all_client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Join(Join {
            room: "team-42".into(),
            name: "Ada".into(),
            public_key: key(),
            token: Some("a.b.c".into()),
            protocol: 1,
        }),
        ClientMessage::Join(Join {
            room: "r".into(),
            name: "Bob".into(),
            public_key: key(),
            token: None,
            protocol: 1,
        }),
        ClientMessage::PublishOffer(PublishOffer {
            sdp: "v=0\r\n".into(),
        }),
        ClientMessage::SubscribeAnswer(SubscribeAnswer {
            sdp: "v=0\r\n".into(),
        }),
        ClientMessage::IceCandidate(IceCandidateMessage {
            pc: PcKind::Publish,
            candidate: candidate(),
        }),
        ClientMessage::IceCandidate(IceCandidateMessage {
            pc: PcKind::Subscribe,
            candidate: Candidate {
                candidate: String::new(),
                sdp_mid: None,
                sdp_mline_index: None,
                username_fragment: Some("abcd".into()),
            },
        }),
        ClientMessage::E2ee(E2eeSend {
            to: 3,
            payload: URL_SAFE_NO_PAD.encode(b"opaque"),
        }),
        ClientMessage::Mute(Mute {
            track: "t1".into(),
            muted: true,
        }),
        ClientMessage::Leave(Leave {}),
        ClientMessage::Chat(ChatSend {
            payload: URL_SAFE_NO_PAD.encode(b"sealed chat"),
        }),
    ]
}

#[test]
fn every_client_message_round_trips_through_the_parser() {
    for message in all_client_messages() {
        let text = serde_json::to_string(&message).unwrap();
        let back = parse_client_message(&text, &Limits::default()).unwrap();
        assert_eq!(back, message, "{text}");
        let plain: ClientMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(plain, message);
    }
}

#[test]
fn client_wire_shapes_match_the_contract() {
    let m = ClientMessage::IceCandidate(IceCandidateMessage {
        pc: PcKind::Publish,
        candidate: candidate(),
    });
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"type": "ice_candidate", "pc": "publish", "candidate": {
            "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
            "sdpMid": "0", "sdpMLineIndex": 0}})
    );
    assert_eq!(
        serde_json::to_value(ClientMessage::Leave(Leave {})).unwrap(),
        json!({"type": "leave"})
    );
    assert_eq!(
        serde_json::to_value(ClientMessage::E2ee(E2eeSend {
            to: 9,
            payload: "AQ".into()
        }))
        .unwrap(),
        json!({"type": "e2ee", "to": 9, "payload": "AQ"})
    );
    assert_eq!(
        serde_json::to_value(ClientMessage::Chat(ChatSend {
            payload: "AQ".into()
        }))
        .unwrap(),
        json!({"type": "chat", "payload": "AQ"})
    );
    assert_eq!(
        serde_json::to_value(ServerMessage::Chat {
            from: 4,
            payload: "AQ".into()
        })
        .unwrap(),
        json!({"type": "chat", "from": 4, "payload": "AQ"})
    );
}

#[test]
fn browser_nulls_in_candidates_are_accepted() {
    let m = parse(
        json!({"type": "ice_candidate", "pc": "subscribe", "candidate": {
        "candidate": "", "sdpMid": null, "sdpMLineIndex": null, "usernameFragment": null}}),
    )
    .unwrap();
    assert_eq!(
        m,
        ClientMessage::IceCandidate(IceCandidateMessage {
            pc: PcKind::Subscribe,
            candidate: Candidate {
                candidate: String::new(),
                sdp_mid: None,
                sdp_mline_index: None,
                username_fragment: None
            }
        })
    );
}

#[test]
fn unknown_extra_fields_are_ignored() {
    assert!(parse(json!({"type": "leave", "reason": "bye"})).is_ok());
}

#[test]
fn every_server_message_round_trips() {
    let info = ParticipantInfo {
        id: 2,
        name: "Ada".into(),
        public_key: key(),
    };
    let messages = vec![
        ServerMessage::Welcome {
            id: 3,
            room: "r".into(),
            participants: vec![info.clone()],
            ice_servers: vec![IceServer {
                urls: vec!["stun:example.org".into()],
                username: None,
                credential: None,
            }],
            ice_transport_policy: Some(IceTransportPolicy::Relay),
        },
        ServerMessage::ParticipantJoined { participant: info },
        ServerMessage::ParticipantLeft { id: 2 },
        ServerMessage::PublishAnswer { sdp: "v=0".into() },
        ServerMessage::SubscribeOffer { sdp: "v=0".into() },
        ServerMessage::IceCandidate {
            pc: PcKind::Subscribe,
            candidate: candidate(),
        },
        ServerMessage::Chat {
            from: 5,
            payload: "AQID".into(),
        },
        ServerMessage::E2ee {
            from: 2,
            payload: "AQ".into(),
        },
        ServerMessage::TrackPublished {
            participant: 2,
            track_id: "t".into(),
            kind: TrackKind::Video,
        },
        ServerMessage::TrackUnpublished {
            participant: 2,
            track_id: "t".into(),
        },
        ServerMessage::TrackMuted {
            participant: 2,
            track_id: "t".into(),
            muted: false,
        },
        ServerMessage::ActiveSpeakers { ids: vec![2, 5] },
        ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "full".into(),
        },
    ];
    for m in messages {
        let text = m.to_json();
        let back: ServerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m, "{text}");
    }
}

#[test]
fn server_wire_shapes_match_the_contract() {
    assert_eq!(
        serde_json::to_value(ServerMessage::Welcome {
            id: 1,
            room: "r".into(),
            participants: vec![],
            ice_servers: vec![],
            ice_transport_policy: None,
        })
        .unwrap(),
        json!({"type": "welcome", "id": 1, "room": "r", "participants": [], "ice_servers": []})
    );
    assert_eq!(
        serde_json::to_value(ServerMessage::TrackPublished {
            participant: 4,
            track_id: "x".into(),
            kind: TrackKind::Audio
        })
        .unwrap(),
        json!({"type": "track_published", "participant": 4, "track_id": "x", "kind": "audio"})
    );
    assert_eq!(
        serde_json::to_value(ServerMessage::Error {
            code: ErrorCode::BadJson,
            message: "m".into()
        })
        .unwrap(),
        json!({"type": "error", "code": "bad_json", "message": "m"})
    );
}

#[test]
fn malformed_json_is_bad_json() {
    let limits = Limits::default();
    for text in ["", "{", "nul", "{\"type\":\"leave\"", "\u{0}"] {
        let err = parse_client_message(text, &limits).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson, "{text:?}");
    }
    for v in [json!([1, 2]), json!("leave"), json!(5), json!(null)] {
        assert_eq!(code_of(v), ErrorCode::BadJson);
    }
}

#[test]
fn missing_or_mistyped_type_is_bad_field_and_unknown_type_is_unknown_type() {
    assert_eq!(code_of(json!({"room": "r"})), ErrorCode::BadField);
    assert_eq!(code_of(json!({"type": 5})), ErrorCode::BadField);
    assert_eq!(code_of(json!({"type": "dance"})), ErrorCode::UnknownType);
    // Server-only types are unknown when a client sends them.
    assert_eq!(code_of(json!({"type": "welcome"})), ErrorCode::UnknownType);
    let err = parse(json!({"type": "x".repeat(1000)})).unwrap_err();
    assert!(err.message.len() < 200, "echo is truncated");
}

#[test]
fn wrong_field_types_are_bad_field_and_name_the_field() {
    let err = parse(json!({"type": "e2ee", "to": "two", "payload": "AQ"})).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadField);
    assert!(err.message.contains("to"), "{}", err.message);

    let err = parse(json!({"type": "e2ee", "to": -1, "payload": "AQ"})).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadField);

    let err = parse(json!({"type": "publish_offer"})).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadField);
    assert!(err.message.contains("sdp"), "{}", err.message);

    let err = parse(json!({"type": "ice_candidate", "pc": "both",
        "candidate": {"candidate": ""}}))
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadField);
    assert!(err.message.contains("pc"), "{}", err.message);

    let err = parse(json!({"type": "ice_candidate", "pc": "publish",
        "candidate": {"candidate": "", "sdpMLineIndex": 70000}}))
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadField);
    assert!(err.message.contains("sdpMLineIndex"), "{}", err.message);

    assert_eq!(
        code_of(json!({"type": "mute", "track": "t", "muted": "yes"})),
        ErrorCode::BadField
    );
}

fn join(room: &str, name: &str, public_key: &str) -> serde_json::Value {
    json!({"type": "join", "room": room, "name": name, "public_key": public_key, "protocol": 1})
}

#[test]
fn join_protocol_version_is_checked_first() {
    assert_eq!(
        code_of(json!({"type": "join", "protocol": 2})),
        ErrorCode::UnsupportedProtocol
    );
    assert_eq!(
        code_of(json!({"type": "join", "protocol": 0, "room": "r"})),
        ErrorCode::UnsupportedProtocol
    );
    assert_eq!(
        code_of(json!({"type": "join", "protocol": 1.5})),
        ErrorCode::UnsupportedProtocol
    );
    assert_eq!(
        code_of(json!({"type": "join", "room": "r", "name": "n", "public_key": key()})),
        ErrorCode::BadField
    );
    assert_eq!(
        code_of(json!({"type": "join", "protocol": "1"})),
        ErrorCode::BadField
    );
}

#[test]
fn join_values_are_validated() {
    let k = key();
    assert!(parse(join("Room_1-a", "Ada Lovelace", &k)).is_ok());
    assert!(parse(join(&"r".repeat(64), &"é".repeat(64), &k)).is_ok());
    for room in ["", "a b", "a/b", "ä", "..", &"r".repeat(65)] {
        assert_eq!(
            code_of(join(room, "Ada", &k)),
            ErrorCode::BadField,
            "{room:?}"
        );
    }
    for name in ["", "   ", "a\nb", "\u{7}", &"n".repeat(65)] {
        assert_eq!(
            code_of(join("r", name, &k)),
            ErrorCode::BadField,
            "{name:?}"
        );
    }
    let mut compressed = [1u8; 33];
    compressed[0] = 0x02;
    let mut wrong_prefix = [1u8; 65];
    wrong_prefix[0] = 0x05;
    for pk in [
        String::new(),
        "not base64!".into(),
        format!("{k}="),
        URL_SAFE_NO_PAD.encode(compressed),
        URL_SAFE_NO_PAD.encode(wrong_prefix),
        base64::engine::general_purpose::STANDARD.encode([0xffu8; 65]),
    ] {
        assert_eq!(
            code_of(join("r", "Ada", &pk)),
            ErrorCode::BadField,
            "{pk:?}"
        );
    }
    let mut with_token = join("r", "Ada", &k);
    with_token["token"] = json!("t".repeat(MAX_TOKEN_LEN + 1));
    assert_eq!(code_of(with_token), ErrorCode::BadField);
}

#[test]
fn e2ee_payloads_are_checked_for_encoding_and_size() {
    let limits = Limits::default();
    let max = limits.max_e2ee_payload_bytes;
    let ok = URL_SAFE_NO_PAD.encode(vec![0xab; max]);
    assert!(parse(json!({"type": "e2ee", "to": 1, "payload": ok})).is_ok());
    assert!(parse(json!({"type": "e2ee", "to": 1, "payload": ""})).is_ok());

    let big = URL_SAFE_NO_PAD.encode(vec![0xab; max + 1]);
    assert_eq!(
        code_of(json!({"type": "e2ee", "to": 1, "payload": big})),
        ErrorCode::TooLarge
    );
    for bad in ["a+b/", "AQ==", "A", "*"] {
        assert_eq!(
            code_of(json!({"type": "e2ee", "to": 1, "payload": bad})),
            ErrorCode::BadField,
            "{bad:?}"
        );
    }
}

#[test]
fn chat_payloads_are_checked_for_encoding_and_their_own_size() {
    let limits = Limits::default();
    let max = limits.max_chat_payload_bytes;
    assert_eq!(max, 8 * 1024);
    let ok = URL_SAFE_NO_PAD.encode(vec![0xab; max]);
    assert!(parse(json!({"type": "chat", "payload": ok})).is_ok());
    let big = URL_SAFE_NO_PAD.encode(vec![0xab; max + 1]);
    let err = parse(json!({"type": "chat", "payload": big})).unwrap_err();
    assert_eq!(err.code, ErrorCode::TooLarge);
    assert!(err.message.contains("8192"), "{}", err.message);
    // Far beyond the limit: refused before decoding.
    let huge = "A".repeat(60 * 1024);
    assert_eq!(
        code_of(json!({"type": "chat", "payload": huge})),
        ErrorCode::TooLarge
    );
    for bad in ["a+b/", "AQ==", "A", "*"] {
        assert_eq!(
            code_of(json!({"type": "chat", "payload": bad})),
            ErrorCode::BadField,
            "{bad:?}"
        );
    }
    assert_eq!(
        code_of(json!({"type": "chat", "body": "hello"})),
        ErrorCode::BadField
    );
}

#[test]
fn oversized_messages_are_too_large_before_parsing() {
    let limits = Limits::default();
    let text = format!(
        "{{\"type\":\"publish_offer\",\"sdp\":\"v=0{}\"}}",
        "a".repeat(limits.max_message_bytes)
    );
    assert_eq!(
        parse_client_message(&text, &limits).unwrap_err().code,
        ErrorCode::TooLarge
    );
    // Even garbage: size is checked first.
    let junk = "{".repeat(limits.max_message_bytes + 1);
    assert_eq!(
        parse_client_message(&junk, &limits).unwrap_err().code,
        ErrorCode::TooLarge
    );
}

#[test]
fn sdp_and_mute_values_are_validated() {
    assert_eq!(
        code_of(json!({"type": "publish_offer", "sdp": "hello"})),
        ErrorCode::BadSdp
    );
    assert_eq!(
        code_of(json!({"type": "subscribe_answer", "sdp": ""})),
        ErrorCode::BadSdp
    );
    assert_eq!(
        code_of(json!({"type": "mute", "track": "", "muted": true})),
        ErrorCode::BadField
    );
    assert_eq!(
        code_of(json!({"type": "mute", "track": "t".repeat(MAX_TRACK_ID_LEN + 1), "muted": true})),
        ErrorCode::BadField
    );
}

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = parse_client_message(&text, &Limits::default()).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadJson);
}

#[test]
fn room_name_rule() {
    assert!(is_valid_room_name("a"));
    assert!(is_valid_room_name("A-z_09"));
    assert!(!is_valid_room_name(""));
    assert!(!is_valid_room_name("a.b"));
    assert!(!is_valid_room_name(&"a".repeat(65)));
}
