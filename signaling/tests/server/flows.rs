//! The happy paths: join, welcome, roster changes, E2EE relay, mute relay, leave.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn join_welcome_joined_and_left() {
    let server = start_default().await;

    let (mut a, welcome_a) = Client::join(&server, "team", "Ada").await;
    assert_eq!(welcome_a["room"], "team");
    assert_eq!(welcome_a["participants"], json!([]));
    assert_eq!(welcome_a["ice_servers"], json!([]));

    let (mut b, welcome_b) = Client::join(&server, "team", "Bob").await;
    assert!(b.id > a.id, "ids increase in join order");
    assert_eq!(
        welcome_b["participants"],
        json!([{"id": a.id, "name": "Ada", "public_key": public_key(1)}])
    );
    let joined = a.recv_type("participant_joined").await;
    assert_eq!(
        joined["participant"],
        json!({"id": b.id, "name": "Bob", "public_key": public_key(1)})
    );

    // A third participant sees both, in ascending id order.
    let (mut c, welcome_c) = Client::join(&server, "team", "Cy").await;
    let ids: Vec<u64> = welcome_c["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![a.id, b.id]);
    a.recv_type("participant_joined").await;
    b.recv_type("participant_joined").await;
    assert_eq!(server.counts(), (1, 3));

    // Explicit leave: the leaver gets a normal close, the others participant_left.
    b.send(json!({"type": "leave"})).await;
    assert_eq!(b.closed().await, Closed::Frame(1000, "left".into()));
    for other in [&mut a, &mut c] {
        let left = other.recv_type("participant_left").await;
        assert_eq!(left["id"], b.id);
    }

    // Dropping the socket counts as leaving too.
    let c_id = c.id;
    c.close().await;
    assert_eq!(a.recv_type("participant_left").await["id"], c_id);

    // A room that emptied is gone, its media with it; re-created, it starts again at 1
    // (a new meeting: its first epoch secret is fresh, so reused ids meet no old keys).
    a.send(json!({"type": "leave"})).await;
    a.closed().await;
    wait_until(|| server.counts() == (0, 0)).await;
    assert_eq!(server.sfu().stats().rooms, 0);
    let (d, welcome_d) = Client::join(&server, "team", "Dee").await;
    assert_eq!(d.id, 1);
    assert_eq!(welcome_d["participants"], json!([]));
    assert_eq!(server.sfu().stats().rooms, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn rooms_are_separate() {
    let server = start_default().await;
    let (mut a, _) = Client::join(&server, "one", "Ada").await;
    let (_b, welcome_b) = Client::join(&server, "two", "Bob").await;
    assert_eq!(welcome_b["participants"], json!([]));
    a.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(server.counts(), (2, 2));
}

/// A, B and C in room "r" (each has seen the others join), D alone in another room.
async fn three_in_a_room_and_one_elsewhere(server: &signaling::ServerHandle) -> [Client; 4] {
    let (mut a, _) = Client::join(server, "r", "A").await;
    let (mut b, _) = Client::join(server, "r", "B").await;
    let (c, _) = Client::join(server, "r", "C").await;
    let (d, _) = Client::join(server, "elsewhere", "D").await;
    a.recv_type("participant_joined").await;
    a.recv_type("participant_joined").await;
    b.recv_type("participant_joined").await;
    [a, b, c, d]
}

#[tokio::test]
async fn e2ee_reaches_exactly_its_recipient_with_a_server_stamped_sender() {
    let server = start_default().await;
    let [mut a, mut b, mut c, mut d] = three_in_a_room_and_one_elsewhere(&server).await;

    // `from` in the client's message is ignored: the server stamps it.
    a.send(json!({"type": "e2ee", "to": b.id, "from": c.id, "payload": "c2VhbGVk"}))
        .await;
    let got = b.recv_type("e2ee").await;
    assert_eq!(
        got,
        json!({"type": "e2ee", "from": a.id, "payload": "c2VhbGVk"})
    );

    // The largest allowed payload passes unchanged.
    let big = vec![0x5a; 16 * 1024];
    c.send_e2ee(a.id, &big).await;
    let got = a.recv_type("e2ee").await;
    assert_eq!(got["from"], c.id);
    assert_eq!(got["payload"], base64url(&big));

    for quiet in [&mut a, &mut c, &mut d] {
        quiet.expect_silence(Duration::from_millis(300)).await;
    }
    b.expect_silence(Duration::from_millis(100)).await;

    // Another room's participant, yourself and nobody are unknown recipients.
    for to in [d.id, a.id, 9_999_999] {
        a.send_e2ee(to, b"x").await;
        a.recv_error("unknown_recipient").await;
    }
    d.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn chat_reaches_every_other_member_of_the_room_with_a_server_stamped_sender() {
    let server = start_default().await;
    let [mut a, mut b, mut c, mut d] = three_in_a_room_and_one_elsewhere(&server).await;

    // `from` in the client's message is ignored: the server stamps it.
    a.send(json!({"type": "chat", "from": c.id, "payload": "c2VhbGVk"}))
        .await;
    for member in [&mut b, &mut c] {
        assert_eq!(
            member.recv_type("chat").await,
            json!({"type": "chat", "from": a.id, "payload": "c2VhbGVk"})
        );
    }
    a.expect_silence(Duration::from_millis(200)).await;
    d.expect_silence(Duration::from_millis(100)).await;

    // The largest allowed payload passes unchanged; one byte more is refused.
    let big = vec![0x5a; 8 * 1024];
    b.send(json!({"type": "chat", "payload": base64url(&big)}))
        .await;
    assert_eq!(a.recv_type("chat").await["payload"], base64url(&big));
    assert_eq!(c.recv_type("chat").await["from"], b.id);
    let too_big = vec![0x5a; 8 * 1024 + 1];
    b.send(json!({"type": "chat", "payload": base64url(&too_big)}))
        .await;
    b.recv_error("too_large").await;
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn chat_has_its_own_rate_limit_and_each_dropped_message_is_refused() {
    let server = start_default().await;
    let (mut a, _) = Client::join(&server, "r", "A").await;
    let (mut b, _) = Client::join(&server, "r", "B").await;
    a.recv_type("participant_joined").await;
    // Burst of 10 passes, the next two are refused one by one...
    for i in 0..12u8 {
        a.send(json!({"type": "chat", "payload": base64url(&[i])}))
            .await;
    }
    for i in 0..10u8 {
        assert_eq!(b.recv_type("chat").await["payload"], base64url(&[i]));
    }
    b.expect_silence(Duration::from_millis(100)).await;
    a.recv_error("rate_limited").await;
    a.recv_error("rate_limited").await;
    // ...while everything else still flows (the general bucket is not empty).
    a.send_e2ee(b.id, b"k").await;
    assert_eq!(b.recv_type("e2ee").await["from"], a.id);
    // Tokens come back at 5/s.
    tokio::time::sleep(Duration::from_millis(450)).await;
    a.send(json!({"type": "chat", "payload": "AQ"})).await;
    assert_eq!(b.recv_type("chat").await["payload"], "AQ");
}

#[tokio::test]
async fn chat_needs_a_join() {
    let server = start_default().await;
    let mut a = Client::connect(&server).await;
    a.send(json!({"type": "chat", "payload": "AQ"})).await;
    a.recv_error("not_joined").await;
}

#[tokio::test]
async fn mute_is_relayed_to_the_others() {
    let server = start_default().await;
    let (mut a, _) = Client::join(&server, "r", "A").await;
    let (mut b, _) = Client::join(&server, "r", "B").await;
    a.recv_type("participant_joined").await;
    a.send(json!({"type": "mute", "track": "cam-1", "muted": true}))
        .await;
    assert_eq!(
        b.recv_type("track_muted").await,
        json!({"type": "track_muted", "participant": a.id, "track_id": "cam-1", "muted": true})
    );
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_connection_that_never_joins_is_closed() {
    let config = signaling::Config {
        limits: signaling::Limits {
            join_timeout: Duration::from_millis(300),
            ..signaling::Limits::default()
        },
        ..signaling::Config::ephemeral()
    };
    let server = start(config).await;
    let mut idle = Client::connect(&server).await;
    assert_eq!(
        idle.closed().await,
        Closed::Frame(1008, "no join in time".into())
    );
}

#[tokio::test]
async fn the_server_pings_and_drops_peers_that_go_silent() {
    let config = signaling::Config {
        limits: signaling::Limits {
            keepalive_interval: Duration::from_millis(200),
            ..signaling::Limits::default()
        },
        ..signaling::Config::ephemeral()
    };
    let server = start(config).await;
    let (mut awake, _) = Client::join(&server, "r", "Awake").await;
    let (asleep, _) = Client::join(&server, "r", "Asleep").await;
    let asleep_id = asleep.id;

    // The awake client reads, so its WebSocket layer answers the pings.
    let mut pings = 0;
    let left = loop {
        match awake.next_raw().await.expect("still open") {
            Message::Ping(_) => pings += 1,
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "participant_left" {
                    break v;
                }
            }
            _ => {}
        }
    };
    // The asleep client never polled its socket, so it never answered: dropped.
    assert_eq!(left["id"], asleep_id);
    assert!(pings >= 2, "pings {pings}");
    assert_eq!(server.counts(), (1, 1));
    drop(asleep);
}

/// Polls a condition for up to five seconds.
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached");
}
