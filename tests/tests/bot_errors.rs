//! `sealed-bot` says what went wrong: an unreachable server is not a refused join, and
//! a join that the server welcomed and then failed (`welcome` followed by `error`)
//! reports the server's error at once instead of timing out on "is the server running?".

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tests::bot::{BotConfig, BotError, BotHandle};
use tokio_tungstenite::tungstenite::Message;

/// A fake server that welcomes every join and then reports `internal`, as Sealed does
/// when the media plane cannot take a participant.
async fn welcome_then_fail() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(frame)) = ws.next().await {
                    let Message::Text(text) = frame else { continue };
                    let reply = if text.contains("\"join\"") {
                        vec![
                            r#"{"type":"welcome","id":1,"room":"r","participants":[],"ice_servers":[]}"#,
                            r#"{"type":"error","code":"internal","message":"no free UDP port in the configured range"}"#,
                        ]
                    } else {
                        vec![
                            r#"{"type":"error","code":"not_joined","message":"`publish_offer` needs a `join` first"}"#,
                        ]
                    };
                    for r in reply {
                        let _ = ws.send(Message::text(r)).await;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_join_failed_after_welcome_reports_the_servers_error() {
    let url = welcome_then_fail().await;
    let started = Instant::now();
    let err = BotHandle::spawn(BotConfig::new(&url, "r", "bot", Some([1; 32])))
        .await
        .err()
        .expect("the join must fail");
    let text = err.to_string();
    assert!(matches!(err, BotError::Join(_)), "{text}");
    assert!(text.contains("participant 1"), "{text}");
    assert!(text.contains("internal"), "{text}");
    assert!(text.contains("no free UDP port"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_such() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let err = BotHandle::spawn(BotConfig::new(&url, "r", "bot", Some([1; 32])))
        .await
        .err()
        .expect("nothing listens there");
    assert!(matches!(err, BotError::Unreachable(_)), "{err}");
}
