//! Measures the signaling server in-process on loopback: time from `join` to
//! `welcome`, one-way `e2ee` relay latency, and `e2ee` relay throughput.
//!
//! Run: `cargo run -p signaling --example relay_bench` (add `--release` for
//! release numbers). Prints medians; asserts nothing.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use signaling::{Config, Limits, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const JOINS: usize = 200;
const PINGS: usize = 2000;
const BURST: usize = 20_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config {
        limits: Limits {
            rate_per_second: 1_000_000,
            rate_burst: 1_000_000,
            max_participants: 1000,
            outbound_queue: 100_000,
            ..Limits::default()
        },
        ..Config::ephemeral()
    };
    let server = Server::bind(config).await?.spawn();
    let url = server.ws_url();
    let key = format!("BA{}", "A".repeat(85));

    // join → welcome, each in its own room (a fresh connection every time).
    let mut join_times = Vec::with_capacity(JOINS);
    for i in 0..JOINS {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
        let start = Instant::now();
        send(&mut ws, json!({"type": "join", "room": format!("j{i}"), "name": "n", "public_key": key, "protocol": 1})).await;
        let welcome = recv(&mut ws).await;
        join_times.push(start.elapsed());
        assert_eq!(welcome["type"], "welcome");
        let _ = ws.close(None).await;
    }

    // Two participants for the relay measurements.
    let (mut a, _) = tokio_tungstenite::connect_async(&url).await?;
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await?;
    send(
        &mut a,
        json!({"type": "join", "room": "relay", "name": "A", "public_key": key, "protocol": 1}),
    )
    .await;
    recv(&mut a).await;
    send(
        &mut b,
        json!({"type": "join", "room": "relay", "name": "B", "public_key": key, "protocol": 1}),
    )
    .await;
    let b_id = recv(&mut b).await["id"].as_u64().unwrap_or_default();
    recv(&mut a).await; // participant_joined

    // One-way latency: A sends, B receives, one message in flight at a time.
    let payload = "A".repeat(200); // ~150 bytes decoded, the size of a wrapped epoch key
    let mut relay_times = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let start = Instant::now();
        send(
            &mut a,
            json!({"type": "e2ee", "to": b_id, "payload": payload}),
        )
        .await;
        let got = recv(&mut b).await;
        relay_times.push(start.elapsed());
        assert_eq!(got["type"], "e2ee");
    }

    // Throughput: A sends BURST messages as fast as it can while B reads them.
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        for _ in 0..BURST {
            recv(&mut b).await;
        }
    });
    let text = json!({"type": "e2ee", "to": b_id, "payload": payload}).to_string();
    for _ in 0..BURST {
        a.feed(Message::text(text.clone())).await.ok();
    }
    a.flush().await.ok();
    reader.await?;
    let elapsed = start.elapsed();

    println!(
        "join → welcome   median {:?} (p90 {:?}) over {JOINS}",
        median(&mut join_times),
        p90(&mut join_times)
    );
    println!(
        "e2ee one-way     median {:?} (p90 {:?}) over {PINGS}",
        median(&mut relay_times),
        p90(&mut relay_times)
    );
    println!(
        "e2ee throughput  {:.0} messages/s ({BURST} messages of {} bytes in {elapsed:?})",
        BURST as f64 / elapsed.as_secs_f64(),
        text.len()
    );
    server.shutdown().await?;
    Ok(())
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.ok();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).unwrap_or_default();
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() * 9 / 10]
}
