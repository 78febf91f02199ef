//! Every kind of bad input gets its error code, never a panic, and never disturbs the
//! other participants: after each bad message a bystander pair proves the server
//! still relays for them, and the offending connection stays usable.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Two well-behaved participants that keep talking.
struct Bystanders {
    a: Client,
    b: Client,
    n: u32,
}

impl Bystanders {
    async fn new(server: &signaling::ServerHandle) -> Self {
        let (mut a, _) = Client::join(server, "calm", "A").await;
        let (b, _) = Client::join(server, "calm", "B").await;
        a.recv_type("participant_joined").await;
        Bystanders { a, b, n: 0 }
    }

    /// A → B still works.
    async fn still_fine(&mut self) {
        self.n += 1;
        let payload = format!("ping {}", self.n);
        self.a.send_e2ee(self.b.id, payload.as_bytes()).await;
        let got = self.b.recv_type("e2ee").await;
        assert_eq!(got["from"], self.a.id);
        assert_eq!(got["payload"], base64url(payload.as_bytes()));
    }
}

#[tokio::test]
async fn bad_input_gets_a_code_and_disturbs_nobody() {
    let server = start_default().await;
    let mut calm = Bystanders::new(&server).await;
    let mut x = Client::connect(&server).await;

    // Before joining.
    let before_join: Vec<(Message, &str)> = vec![
        (Message::text("{"), "bad_json"),
        (Message::text("not json at all"), "bad_json"),
        (Message::text("[1,2,3]"), "bad_json"),
        (Message::text(""), "bad_json"),
        (Message::binary(vec![1u8, 2, 3]), "bad_json"),
        (Message::text(r#"{"room":"r"}"#), "bad_field"),
        (Message::text(r#"{"type":42}"#), "bad_field"),
        (Message::text(r#"{"type":"explode"}"#), "unknown_type"),
        (Message::text(r#"{"type":"welcome","id":1}"#), "unknown_type"),
        (Message::text(r#"{"type":"e2ee","to":"someone","payload":"AA"}"#), "bad_field"),
        (Message::text(r#"{"type":"e2ee","to":1,"payload":"AA"}"#), "not_joined"),
        (Message::text(r#"{"type":"leave"}"#), "not_joined"),
        (Message::text(r#"{"type":"publish_offer","sdp":"v=0\r\n"}"#), "not_joined"),
        (Message::text(r#"{"type":"mute","track":"t","muted":true}"#), "not_joined"),
        (
            Message::text(
                json!({"type": "join", "room": "r", "name": "X", "public_key": public_key(1), "protocol": 2})
                    .to_string(),
            ),
            "unsupported_protocol",
        ),
        (
            Message::text(json!({"type": "join", "room": "bad room!", "name": "X", "public_key": public_key(1), "protocol": 1}).to_string()),
            "bad_field",
        ),
        (
            Message::text(json!({"type": "join", "room": "r", "name": "", "public_key": public_key(1), "protocol": 1}).to_string()),
            "bad_field",
        ),
        (
            Message::text(json!({"type": "join", "room": "r", "name": "X", "public_key": "AAAA", "protocol": 1}).to_string()),
            "bad_field",
        ),
        (Message::text(format!("{{\"type\":\"leave\",\"pad\":\"{}\"}}", "x".repeat(70_000))), "too_large"),
    ];
    for (message, code) in before_join {
        x.send_raw(message).await;
        x.recv_error(code).await;
        calm.still_fine().await;
    }

    // Join works on the same connection after all that.
    x.send(join_msg("calm", "X")).await;
    let welcome = x.recv_type("welcome").await;
    x.id = welcome["id"].as_u64().unwrap();
    assert_eq!(welcome["participants"].as_array().unwrap().len(), 2);
    calm.a.recv_type("participant_joined").await;
    calm.b.recv_type("participant_joined").await;

    // After joining.
    let too_big_payload = base64url(&vec![1u8; 16 * 1024 + 1]);
    let after_join: Vec<(Value, &str)> = vec![
        (join_msg("calm", "X"), "already_joined"),
        (join_msg("other", "X"), "already_joined"),
        (
            json!({"type": "e2ee", "to": 123_456_789, "payload": "AA"}),
            "unknown_recipient",
        ),
        (
            json!({"type": "e2ee", "to": x.id, "payload": "AA"}),
            "unknown_recipient",
        ),
        (
            json!({"type": "e2ee", "to": calm.b.id, "payload": "not+base64url/"}),
            "bad_field",
        ),
        (
            json!({"type": "e2ee", "to": calm.b.id, "payload": "AA=="}),
            "bad_field",
        ),
        (
            json!({"type": "e2ee", "to": calm.b.id, "payload": too_big_payload}),
            "too_large",
        ),
        (json!({"type": "e2ee", "to": calm.b.id}), "bad_field"),
        (
            json!({"type": "e2ee", "to": -5, "payload": "AA"}),
            "bad_field",
        ),
        (json!({"type": "publish_offer", "sdp": "hello"}), "bad_sdp"),
        (json!({"type": "publish_offer", "sdp": 5}), "bad_field"),
        (json!({"type": "subscribe_answer", "sdp": ""}), "bad_sdp"),
        (
            json!({"type": "ice_candidate", "pc": "sideways", "candidate": {"candidate": ""}}),
            "bad_field",
        ),
        (
            json!({"type": "ice_candidate", "pc": "publish"}),
            "bad_field",
        ),
        (
            json!({"type": "mute", "track": "t", "muted": "yes"}),
            "bad_field",
        ),
        (json!({"type": "unknown"}), "unknown_type"),
    ];
    for (message, code) in after_join {
        x.send(message).await;
        x.recv_error(code).await;
        calm.still_fine().await;
    }
    // The bystanders never heard about any of it.
    calm.a.expect_silence(Duration::from_millis(200)).await;

    // The offending connection is still a working participant.
    x.send_e2ee(calm.a.id, b"still here").await;
    let got = calm.a.recv_type("e2ee").await;
    assert_eq!(got["from"], x.id);

    // Errors were counted by code.
    let (_, _, body) = http_get(&server, "/metrics").await;
    let metrics = String::from_utf8(body).unwrap();
    for code in [
        "bad_json",
        "unknown_type",
        "bad_field",
        "not_joined",
        "already_joined",
        "unknown_recipient",
        "too_large",
        "unsupported_protocol",
        "bad_sdp",
    ] {
        let line = format!("sealed_errors_total{{code=\"{code}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line}"))
            .parse()
            .unwrap();
        assert!(count >= 1, "{code} not counted");
    }
}

#[tokio::test]
async fn a_subscribe_answer_without_an_offer_is_refused() {
    let server = start_default().await;
    let (mut x, _) = Client::join(&server, "r", "X").await;
    x.send(json!({"type": "subscribe_answer", "sdp": "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}))
        .await;
    let err = x.recv_type("error").await;
    assert!(
        err["code"] == "bad_sdp" || err["code"] == "internal",
        "{err}"
    );
    // Still usable.
    x.send(json!({"type": "mute", "track": "t", "muted": false}))
        .await;
    x.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_disconnected_while_others_carry_on() {
    let config = signaling::Config {
        limits: signaling::Limits {
            rate_per_second: 1,
            rate_burst: 20,
            flood_close_after: 100,
            ..signaling::Limits::default()
        },
        ..signaling::Config::ephemeral()
    };
    let server = start(config).await;
    let mut calm = Bystanders::new(&server).await;
    let (mut x, _) = Client::join(&server, "calm", "X").await;
    calm.a.recv_type("participant_joined").await;
    calm.b.recv_type("participant_joined").await;

    // 40 mutes at once: about a burst's worth is relayed, then one rate_limited
    // error (not one per dropped message).
    for i in 0..40 {
        x.send(json!({"type": "mute", "track": format!("t{i}"), "muted": true}))
            .await;
    }
    x.recv_error("rate_limited").await;
    x.expect_silence(Duration::from_millis(200)).await;
    let relayed = count_track_muted(&mut calm.b).await;
    assert!((18..=21).contains(&relayed), "relayed {relayed}");
    assert_eq!(count_track_muted(&mut calm.a).await, relayed);
    calm.still_fine().await;

    // A flood that does not stop closes the connection with 1008.
    for _ in 0..400 {
        x.send(json!({"type": "mute", "track": "t", "muted": true}))
            .await;
    }
    assert_eq!(
        x.closed().await,
        Closed::Frame(1008, "rate limit exceeded".into())
    );
    for bystander in [&mut calm.a, &mut calm.b] {
        let left = loop {
            let v = bystander.next().await.expect("open");
            if v["type"] == "participant_left" {
                break v;
            }
            assert_eq!(v["type"], "track_muted", "{v}");
        };
        assert_eq!(left["id"], x.id);
    }
    calm.still_fine().await;
}

/// Counts `track_muted` messages until the client has been quiet for 200 ms.
async fn count_track_muted(client: &mut Client) -> usize {
    let mut n = 0;
    while let Ok(v) = tokio::time::timeout(Duration::from_millis(200), client.next()).await {
        let v = v.expect("open");
        assert_eq!(v["type"], "track_muted", "{v}");
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_frame_over_the_hard_cap_closes_with_1009_and_others_carry_on() {
    let server = start_default().await;
    let mut calm = Bystanders::new(&server).await;
    let mut x = Client::connect(&server).await;
    x.send_text(&"x".repeat(300 * 1024)).await;
    assert_eq!(
        x.closed().await,
        Closed::Frame(1009, "message too big".into())
    );
    calm.still_fine().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_not_buffered() {
    let config = signaling::Config {
        limits: signaling::Limits {
            outbound_queue: 8,
            rate_per_second: 100_000,
            rate_burst: 100_000,
            ..signaling::Limits::default()
        },
        ..signaling::Config::ephemeral()
    };
    let server = start(config).await;
    let (mut sender, _) = Client::join(&server, "r", "S").await;
    let (sleeper, _) = Client::join(&server, "r", "Z").await;
    sender.recv_type("participant_joined").await;
    // The sleeper never reads; 16 KiB payloads fill the socket buffers, then its
    // queue, then the server lets it go.
    let payload = vec![7u8; 16 * 1024];
    let left = loop {
        sender.send_e2ee(sleeper.id, &payload).await;
        // Drain whatever arrives for the sender without blocking the loop.
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(1), sender.next()).await {
            break v;
        }
    };
    assert_eq!(left["type"], "participant_left", "{left}");
    assert_eq!(left["id"], sleeper.id);
    drop(sleeper);
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_others_carry_on() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = start_default().await;
    let mut calm = Bystanders::new(&server).await;
    let (mut x, _) = Client::join(&server, "calm", "X").await;
    calm.a.recv_type("participant_joined").await;
    calm.b.recv_type("participant_joined").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    x.send_raw(Message::Frame(frame)).await;
    assert_eq!(
        x.closed().await,
        Closed::Frame(1007, "invalid UTF-8 in a text message".into())
    );
    calm.a.recv_type("participant_left").await;
    calm.b.recv_type("participant_left").await;
    calm.still_fine().await;
}

/// The documented rule: a flood is one `rate_limited` error, and more than 200
/// dropped messages before the client pauses close it — also when it sends only a
/// few times the allowed rate, so that tokens trickle back during the flood.
#[tokio::test]
async fn a_moderate_flood_gets_one_notice_and_is_closed() {
    use futures_util::{SinkExt as _, StreamExt as _};
    let server = start_default().await;
    let (x, _) = Client::join(&server, "r", "X").await;
    let (mut sink, mut stream) = x.into_inner().split();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5)); // 200 messages/s
        for _ in 0..2000 {
            tick.tick().await;
            let mute = json!({"type": "mute", "track": "t", "muted": true}).to_string();
            if sink.send(Message::text(mute)).await.is_err() {
                return;
            }
        }
    });
    let mut notices = 0;
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(8), stream.next())
            .await
            .expect("a 200/s flood was not closed");
        match frame {
            Some(Ok(Message::Text(t))) if t.contains("\"rate_limited\"") => notices += 1,
            Some(Ok(Message::Close(close))) => break close,
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break None,
        }
    };
    sender.abort();
    let close = close.expect("a close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1008, "rate limit exceeded")
    );
    assert_eq!(notices, 1);
}
