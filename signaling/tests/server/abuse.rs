//! Holding up under abuse: silent and trickling clients, the connection cap counted
//! per TCP connection, `/healthz` at the cap, per-address limits, trusted proxies, and
//! the descriptor budget of a real `sealed` process with a low RLIMIT_NOFILE.

use std::time::{Duration, Instant};

use signaling::{Config, Limits, TrustedProxies};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::*;

/// Waits until the server closes `tcp` (EOF or reset); returns how long that took.
async fn time_until_closed(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, tcp.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

fn short_headers(limits: Limits) -> Config {
    Config {
        limits: Limits {
            header_timeout: Duration::from_secs(1),
            ..limits
        },
        ..Config::ephemeral()
    }
}

#[tokio::test]
async fn silent_and_trickling_clients_are_closed_within_the_header_timeout() {
    let server = start(short_headers(Limits::default())).await;

    let mut silent = tcp_from(&server, "127.0.0.1").await;
    let took = time_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    // One byte every 200 ms: the whole head would take 8 s; the deadline is for
    // the whole head, not per byte.
    let mut slow = tcp_from(&server, "127.0.0.1").await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: sealed.example\r\n\r\n";
    let start = Instant::now();
    let mut closed = false;
    for byte in request {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("answered a trickled head: {:?}", &buf[..n]),
        }
    }
    assert!(closed, "a trickling client was served");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // Idle between requests on a kept-alive connection: the same deadline.
    let mut kept = tcp_from(&server, "127.0.0.1").await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = tokio::io::BufReader::new(&mut kept);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let took = time_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    crate::flows::wait_until(|| server.open_tcp_connections() == 0).await;
}

#[tokio::test]
async fn silent_connections_count_against_the_cap_and_healthz_still_answers() {
    let server = start(short_headers(Limits {
        max_connections: 2,
        ..Limits::default()
    }))
    .await;
    assert_eq!(server.connection_cap(), 2);
    let _silent = [
        tcp_from(&server, "127.0.0.1").await,
        tcp_from(&server, "127.0.0.1").await,
    ];
    crate::flows::wait_until(|| server.open_tcp_connections() == 2).await;
    assert_eq!(
        Client::connect_from(&server, "127.0.0.1", &[]).await.err(),
        Some(503)
    );
    let (status, _, body) = http_get(&server, "/healthz").await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    let (status, _, _) = http_get(&server, "/").await;
    assert_eq!(status, 503);
    // The header timeout frees both slots; the server serves again.
    crate::flows::wait_until(|| server.open_tcp_connections() == 0).await;
    let (_client, _) = Client::join(&server, "r", "A").await;
    assert_eq!(server.open_tcp_connections(), 1);
}

#[tokio::test]
async fn connections_per_address_are_limited_and_other_addresses_are_not() {
    let server = start(Config {
        limits: Limits {
            max_connections_per_address: 2,
            ..Limits::default()
        },
        ..Config::ephemeral()
    })
    .await;
    let _a1 = Client::connect_from(&server, "127.0.0.2", &[])
        .await
        .unwrap();
    let _a2 = Client::connect_from(&server, "127.0.0.2", &[])
        .await
        .unwrap();
    // Refused before anything is read: a canned 503.
    let mut third = tcp_from(&server, "127.0.0.2").await;
    let mut answer = String::new();
    tokio::time::timeout(STEP, third.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.ends_with("too many connections from your address"));
    let _b = Client::connect_from(&server, "127.0.0.3", &[])
        .await
        .unwrap();
    assert_eq!(server.open_tcp_connections(), 3);
}

#[tokio::test]
async fn joins_per_minute_and_participants_per_room_are_limited_per_address() {
    let server = start(Config {
        limits: Limits {
            joins_per_minute_per_address: 3,
            participants_per_address_per_room: 2,
            ..Limits::default()
        },
        ..Config::ephemeral()
    })
    .await;
    let mut a1 = Client::connect_from(&server, "127.0.0.4", &[])
        .await
        .unwrap();
    a1.send(join_msg("r", "A1")).await;
    a1.recv_type("welcome").await;
    let mut a2 = Client::connect_from(&server, "127.0.0.4", &[])
        .await
        .unwrap();
    a2.send(join_msg("r", "A2")).await;
    a2.recv_type("welcome").await;
    let mut a3 = Client::connect_from(&server, "127.0.0.4", &[])
        .await
        .unwrap();
    a3.send(join_msg("r", "A3")).await;
    let refusal = a3.recv_error("room_full").await;
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("your address"),
        "{refusal}"
    );
    // Three joins were charged (the refused one too): the bucket is empty.
    a3.send(join_msg("other", "A3")).await;
    a3.recv_error("rate_limited").await;
    // Another address joins the same room.
    let mut b = Client::connect_from(&server, "127.0.0.5", &[])
        .await
        .unwrap();
    b.send(join_msg("r", "B")).await;
    b.recv_type("welcome").await;
    // Leaving frees the room slot (the join bucket stays empty for a while).
    a1.send(serde_json::json!({"type": "leave"})).await;
    assert_eq!(a1.closed().await, Closed::Frame(1000, "left".into()));
    crate::flows::wait_until(|| server.counts() == (1, 2)).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let server = start(Config {
        limits: Limits {
            max_connections_per_address: 1,
            participants_per_address_per_room: 1,
            ..Limits::default()
        },
        trusted_proxies: TrustedProxies::new(vec![
            TrustedProxies::parse_entry("127.0.0.6").unwrap(),
        ]),
        ..Config::ephemeral()
    })
    .await;
    let via = |client: &'static str| [("x-forwarded-for", client)];
    // The proxy itself is one address for many clients: not limited per address.
    let mut c1 = Client::connect_from(&server, "127.0.0.6", &via("198.51.100.1"))
        .await
        .unwrap();
    let mut c2 = Client::connect_from(&server, "127.0.0.6", &via("198.51.100.2"))
        .await
        .unwrap();
    // The forwarded address is: a second WebSocket of 198.51.100.1 is refused.
    assert_eq!(
        Client::connect_from(&server, "127.0.0.6", &via("198.51.100.1"))
            .await
            .err(),
        Some(503)
    );
    c1.send(join_msg("r", "C1")).await;
    c1.recv_type("welcome").await;
    c2.send(join_msg("r", "C2")).await;
    c2.recv_type("welcome").await;
    // From an untrusted peer the header is ignored: 127.0.0.7 is its own address.
    let mut d = Client::connect_from(&server, "127.0.0.7", &via("198.51.100.1"))
        .await
        .unwrap();
    d.send(join_msg("r", "D")).await;
    d.recv_type("welcome").await;
    assert_eq!(server.counts(), (1, 3));
}

/// A real `sealed` with soft = hard RLIMIT_NOFILE of 300: it derives its cap from the
/// budget, refuses beyond it with 503 before `accept` can fail, and `/healthz`
/// answers at the cap.
#[tokio::test]
async fn a_low_descriptor_limit_caps_connections_before_accept_fails() {
    const NOFILE: u64 = 300;
    const UDP_PORTS: usize = 50;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealed"));
    command
        .args(["--listen", "127.0.0.1:0", "--udp-ports", "47100-47149"])
        .env("RUST_LOG", "warn")
        .env_remove("SEALED_MAX_CONNECTIONS")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::NOFILE, NOFILE, NOFILE));
    }
    let mut child = command.spawn().expect("spawn sealed");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(STEP, stdout.next_line())
            .await
            .expect("sealed did not start")
            .unwrap()
            .expect("sealed exited");
        if let Some(rest) = line.strip_prefix("Sealed is running: open http://") {
            let url = rest.split_whitespace().next().unwrap_or_default();
            break url.trim_end_matches('/').to_owned();
        }
    };
    let log = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = stdout.next_line().await {
            lines.push(line);
        }
        lines
    });

    let cap = (NOFILE as usize) - UDP_PORTS - signaling::descriptors::RESERVED;
    let url = format!("ws://{addr}/ws");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..cap + 100 {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => held.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 503);
                refused += 1;
            }
            Err(e) => panic!("connection failed instead of a 503: {e}"),
        }
    }
    assert_eq!((held.len(), refused), (cap, 100));
    let health = raw_get(&addr, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    // A slot freed is a slot served.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("a freed slot serves again");

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let log = log.await.unwrap().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("cannot accept"), "{log}");
}

async fn raw_get(addr: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(STEP, tcp.read_to_string(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    answer
}
