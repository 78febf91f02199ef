//! Hostile clients for the abuse harness: connections that hold a server's resources
//! from many loopback source addresses (127.0.0.2–127.0.0.251, so per-address limits
//! see many clients, as on the internet), and the attacker roles of the
//! hostile-message scenario.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::server_process::Stop;

/// Source addresses used for hostile traffic: 127.0.0.2 ..= 127.0.0.251.
pub const SOURCES: usize = 250;

/// The `i`-th hostile source address (cycling through [`SOURCES`]).
pub fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES) as u8))
}

/// A TCP connection to `server` from `from`.
pub async fn tcp_from(from: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(server).await
}

/// A WebSocket on `/ws` of `server` from `from`; `Err(status)` if refused
/// (0: not even an HTTP answer).
pub async fn ws_from(from: IpAddr, server: SocketAddr) -> Result<WebSocketStream<TcpStream>, u16> {
    let tcp = tcp_from(from, server).await.map_err(|_| 0u16)?;
    let request = format!("ws://{server}/ws")
        .into_client_request()
        .map_err(|_| 0u16)?;
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// What a holder keeps open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// A TCP connection that never sends a byte.
    Silent,
    /// An HTTP request head sent one byte a second.
    Trickle,
    /// A WebSocket that never joins.
    IdleWebSocket,
}

/// Counters of a group of holders.
#[derive(Debug, Default)]
pub struct HoldStats {
    /// Connections open right now.
    pub held: AtomicUsize,
    /// Connections opened in total.
    pub opened: AtomicU64,
    /// Connection attempts refused (HTTP 503, reset, or connect failure).
    pub refused: AtomicU64,
    /// Connections the server closed.
    pub closed_by_server: AtomicU64,
}

/// Runs `n` holders of `kind` from hostile source addresses (holder `i` uses
/// [`source`]`(offset + i)`); each reopens its connection when the server closes or
/// refuses it (after `retry`), until `stop`.
pub fn hold(
    kind: Hold,
    n: usize,
    offset: usize,
    server: SocketAddr,
    retry: Duration,
    stop: Stop,
) -> Arc<HoldStats> {
    let stats = Arc::new(HoldStats::default());
    for i in 0..n {
        let (stats, stop) = (stats.clone(), stop.clone());
        let from = source(offset + i);
        tokio::spawn(async move {
            // Spread the start over a second so the server sees a ramp, not a spike.
            tokio::time::sleep(Duration::from_micros((i as u64 * 997) % 1_000_000)).await;
            while !stop.is_set() {
                if hold_once(kind, from, server, &stats, &stop).await {
                    stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(retry).await;
            }
        });
    }
    stats
}

/// Opens one connection and keeps it until the server closes it (true) or `stop`;
/// false if it could not be opened.
async fn hold_once(
    kind: Hold,
    from: IpAddr,
    server: SocketAddr,
    stats: &HoldStats,
    stop: &Stop,
) -> bool {
    let opened = || {
        stats.held.fetch_add(1, Ordering::Relaxed);
        stats.opened.fetch_add(1, Ordering::Relaxed);
    };
    let result = match kind {
        Hold::Silent | Hold::Trickle => {
            let Ok(mut tcp) = tcp_from(from, server).await else {
                return false;
            };
            opened();
            let head = b"GET /healthz HTTP/1.1\r\nHost: sealed\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let mut sent = 0;
            let mut buf = [0u8; 512];
            loop {
                if stop.is_set() {
                    break false;
                }
                if kind == Hold::Trickle && sent < head.len() {
                    if tcp.write_all(&head[sent..=sent]).await.is_err() {
                        break true;
                    }
                    sent += 1;
                }
                match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
                    Err(_) => {}
                    // A 503 answer means refused; EOF or reset means closed.
                    Ok(Ok(0) | Err(_)) => break true,
                    Ok(Ok(_)) => {}
                }
            }
        }
        Hold::IdleWebSocket => {
            let Ok(mut ws) = ws_from(from, server).await else {
                return false;
            };
            opened();
            loop {
                if stop.is_set() {
                    let _ = ws.close(None).await;
                    break false;
                }
                match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                    Err(_) => {}
                    Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break true,
                    Ok(Some(Ok(_))) => {}
                }
            }
        }
    };
    stats.held.fetch_sub(1, Ordering::Relaxed);
    result
}

/// A signaling `join` message with a throwaway public key.
pub fn join_message(room: &str, name: &str) -> String {
    let mut key = [4u8; 65];
    key[1..].iter_mut().for_each(|b| *b = rand::random());
    serde_json::json!({
        "type": "join", "room": room, "name": name, "protocol": 1,
        "public_key": crate::protocol::encode_b64(&key),
    })
    .to_string()
}

/// Joins `room` over a fresh WebSocket from `from` and waits for `welcome`; returns
/// the socket and the assigned id.
pub async fn join_from(
    from: IpAddr,
    server: SocketAddr,
    room: &str,
    name: &str,
) -> Option<(WebSocketStream<TcpStream>, u64)> {
    let mut ws = ws_from(from, server).await.ok()?;
    ws.send(Message::text(join_message(room, name)))
        .await
        .ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        let Ok(Message::Text(text)) = frame else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
        match v["type"].as_str() {
            Some("welcome") => return Some((ws, v["id"].as_u64()?)),
            Some("error") => return None,
            _ => {}
        }
    }
}
