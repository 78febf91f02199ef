//! Join tokens over the wire, and the browser Origin check.

use serde_json::json;
use signaling::auth::{AuthSecret, Claims, unix_now};
use signaling::{Config, OriginPolicy};

use crate::support::*;

const SECRET: &str = "test secret that is at least 32 bytes long";

fn secret() -> AuthSecret {
    AuthSecret::new(SECRET).unwrap()
}

fn join_with(room: &str, name: &str, token: Option<&str>) -> serde_json::Value {
    let mut m = join_msg(room, name);
    if let Some(t) = token {
        m["token"] = json!(t);
    }
    m
}

#[tokio::test]
async fn with_a_secret_joins_need_a_valid_token() {
    let server = start(Config {
        auth_secret: Some(secret()),
        ..Config::ephemeral()
    })
    .await;
    let mut x = Client::connect(&server).await;

    let good = secret().mint(&Claims {
        room: "r".into(),
        name: "Ada".into(),
        exp: unix_now() + 600,
    });
    let expired = secret().mint(&Claims {
        room: "r".into(),
        name: "Ada".into(),
        exp: unix_now() - 1,
    });
    let other_secret = AuthSecret::new("another secret, also 32 bytes or more")
        .unwrap()
        .mint(&Claims {
            room: "r".into(),
            name: "Ada".into(),
            exp: unix_now() + 600,
        });
    // Flip the first character of the signature (the last one also carries padding
    // bits, so changing it could make the token malformed rather than mis-signed).
    let tampered = {
        let dot = good.rfind('.').unwrap();
        let first = &good[dot + 1..dot + 2];
        let flipped = if first == "A" { "B" } else { "A" };
        format!("{}{}{}", &good[..=dot], flipped, &good[dot + 2..])
    };
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (join_with("r", "Ada", None), "requires a token"),
        (join_with("r", "Ada", Some("garbage")), "malformed"),
        (join_with("r", "Ada", Some(&expired)), "expired"),
        (join_with("r", "Ada", Some(&other_secret)), "signature"),
        (join_with("r", "Ada", Some(&tampered)), "signature"),
        (join_with("elsewhere", "Ada", Some(&good)), "another room"),
        (join_with("r", "Mallory", Some(&good)), "another name"),
    ];
    for (message, why) in cases {
        x.send(message).await;
        let err = x.recv_error("unauthorized").await;
        assert!(err["message"].as_str().unwrap().contains(why), "{err}");
    }
    assert_eq!(server.counts(), (0, 0));

    // The same connection can still join with a good token.
    x.send(join_with("r", "Ada", Some(&good))).await;
    x.recv_type("welcome").await;
    assert_eq!(server.counts(), (1, 1));
}

#[tokio::test]
async fn without_a_secret_rooms_are_open_and_tokens_are_ignored() {
    let server = start_default().await;
    let mut x = Client::connect(&server).await;
    x.send(join_with("r", "Ada", Some("anything"))).await;
    x.recv_type("welcome").await;
}

#[tokio::test]
async fn browser_origins_are_checked() {
    let server = start_default().await;
    // The page this server served (Origin host == Host header) and loopback pages.
    let same = format!("http://{}", server.local_addr());
    assert!(Client::connect_with_origin(&server, &same).await.is_ok());
    assert!(
        Client::connect_with_origin(&server, "http://localhost:3000")
            .await
            .is_ok()
    );
    for evil in [
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        assert_eq!(
            Client::connect_with_origin(&server, evil).await.err(),
            Some(403),
            "{evil}"
        );
    }

    let listed = start(Config {
        origins: OriginPolicy::List(vec!["https://meet.example.com".into()]),
        ..Config::ephemeral()
    })
    .await;
    assert!(
        Client::connect_with_origin(&listed, "https://meet.example.com")
            .await
            .is_ok()
    );
    let same = format!("http://{}", listed.local_addr());
    assert_eq!(
        Client::connect_with_origin(&listed, &same).await.err(),
        Some(403)
    );
    // Non-browser clients send no Origin.
    Client::connect(&listed).await;
}
