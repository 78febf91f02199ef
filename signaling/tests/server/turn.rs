//! The embedded TURN server: credentials in `welcome`, relaying to the SFU over UDP and
//! TCP, and every refusal — wrong or expired credential, a peer other than the SFU,
//! allocations beyond the limits.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value;
use signaling::turn::{EmbeddedTurnConfig, TurnConfig};
use signaling::{Config, ServerHandle};
use tokio::net::UdpSocket;

use crate::support::{Client, http_get, start_with_ports};
use crate::turn_client::TurnClient;

/// A server with the embedded TURN server on OS-chosen ports.
async fn turn_server(
    embedded: EmbeddedTurnConfig,
    ttl: Duration,
) -> (ServerHandle, RangeInclusive<u16>) {
    let config = Config {
        turn: TurnConfig {
            embedded: Some(embedded),
            credential_ttl: ttl,
            ..TurnConfig::default()
        },
        ..Config::ephemeral()
    };
    start_with_ports(config).await
}

async fn default_turn_server() -> (ServerHandle, RangeInclusive<u16>) {
    turn_server(EmbeddedTurnConfig::ephemeral(), Duration::from_secs(3600)).await
}

/// `(username, password)` of a welcome's first ICE server.
fn credential(welcome: &Value) -> (String, String) {
    let server = &welcome["ice_servers"][0];
    (
        server["username"].as_str().expect("username").to_owned(),
        server["credential"]
            .as_str()
            .expect("credential")
            .to_owned(),
    )
}

/// A UDP socket standing in for the SFU on one of its media ports.
async fn sfu_peer(ports: &RangeInclusive<u16>) -> UdpSocket {
    UdpSocket::bind(("127.0.0.1", *ports.end()))
        .await
        .expect("bind a port of the SFU range")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn welcome_carries_a_fresh_credential_per_join() {
    let (server, _) = default_turn_server().await;
    let addrs = server.turn_addrs().expect("TURN runs");
    let (a, welcome_a) = Client::join(&server, "r", "A").await;
    let (_b, welcome_b) = Client::join(&server, "r", "B").await;

    let ice = &welcome_a["ice_servers"];
    assert_eq!(ice.as_array().unwrap().len(), 1, "{ice}");
    assert_eq!(
        ice[0]["urls"],
        serde_json::json!([
            format!("turn:127.0.0.1:{}?transport=udp", addrs.udp.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", addrs.tcp.port()),
        ])
    );
    assert!(welcome_a.get("ice_transport_policy").is_none());
    let (username, password) = credential(&welcome_a);
    let (expiry, user) = username.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry.abs_diff(unix_now() + 3600) <= 5, "expiry {expiry}");
    assert!(
        user.len() == 16 && user.chars().all(|c| c.is_ascii_hexdigit()),
        "the user part is an opaque label, not a room or a name: {user}"
    );
    assert_eq!(password.len(), 28, "base64 of a 20-byte HMAC-SHA1");

    // Another participant, and the same one reconnecting, get credentials of their own.
    assert_ne!(credential(&welcome_b), credential(&welcome_a));
    a.close().await;
    let (_a2, welcome_a2) = Client::join(&server, "r", "A").await;
    assert_ne!(credential(&welcome_a2), credential(&welcome_a));
}

#[tokio::test]
async fn relays_to_the_sfu_over_udp_and_tcp_and_counts_the_bytes() {
    let (server, ports) = default_turn_server().await;
    let addrs = server.turn_addrs().unwrap();
    let (_client, welcome) = Client::join(&server, "r", "A").await;
    let (username, password) = credential(&welcome);
    let sfu = sfu_peer(&ports).await;
    let sfu_addr = sfu.local_addr().unwrap();
    let mut buf = [0u8; 64];

    let mut udp = TurnClient::udp(addrs.udp, &username, &password).await;
    let mut tcp = TurnClient::tcp(addrs.tcp, &username, &password).await;
    for (name, client) in [("udp", &mut udp), ("tcp", &mut tcp)] {
        let relayed = client
            .allocate()
            .await
            .unwrap_or_else(|c| panic!("{name}: allocate {c}"));
        assert_eq!(relayed.ip().to_string(), "127.0.0.1");
        client.create_permission(sfu_addr).await.unwrap();

        // Send indication → the SFU sees the datagram from the relayed address…
        client.send_indication(sfu_addr, b"ping").await;
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), sfu.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..n], from), (&b"ping"[..], relayed), "{name}");
        // … and its answer comes back as a Data indication.
        sfu.send_to(b"pong", relayed).await.unwrap();
        let (peer, data) = client
            .recv_data(Duration::from_secs(5))
            .await
            .expect("data");
        assert_eq!(
            (peer, data.as_slice()),
            (Some(sfu_addr), &b"pong"[..]),
            "{name}"
        );

        // The same through a channel (how browsers relay media).
        client.channel_bind(0x4000, sfu_addr).await.unwrap();
        client.send_channel_data(0x4000, b"media!").await;
        let (n, _) = sfu.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"media!", "{name}");
        sfu.send_to(b"back", relayed).await.unwrap();
        let (peer, data) = client
            .recv_data(Duration::from_secs(5))
            .await
            .expect("channel data");
        assert_eq!((peer, data.as_slice()), (None, &b"back"[..]), "{name}");
    }

    let stats = server.turn_stats().unwrap();
    assert_eq!(stats.allocations, 2);
    assert_eq!(stats.to_peer_bytes, 2 * (4 + 6));
    assert_eq!(stats.from_peer_bytes, 2 * (4 + 4));
    let (_, _, body) = http_get(&server, "/metrics").await;
    let body = String::from_utf8(body).unwrap();
    for line in [
        "sealed_turn_allocations 2",
        "sealed_turn_relayed_bytes_total{direction=\"to_sfu\"} 20",
        "sealed_turn_relayed_bytes_total{direction=\"from_sfu\"} 16",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in /metrics"
        );
    }

    // A TCP client's allocation ends with its connection.
    drop(tcp);
    wait_for("the TCP allocation to end", || {
        server.turn_stats().unwrap().allocations == 1
    })
    .await;
}

#[tokio::test]
async fn refuses_to_relay_to_anything_but_the_sfu() {
    let (server, ports) = default_turn_server().await;
    let addrs = server.turn_addrs().unwrap();
    let (_client, welcome) = Client::join(&server, "r", "A").await;
    let (username, password) = credential(&welcome);
    let mut client = TurnClient::udp(addrs.udp, &username, &password).await;
    client.allocate().await.unwrap();

    // A socket on this host that is not an SFU media port.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger_addr = stranger.local_addr().unwrap();
    let other_ip_sfu_port: SocketAddr = format!("127.0.0.2:{}", ports.start()).parse().unwrap();
    for peer in [stranger_addr, server.local_addr(), other_ip_sfu_port] {
        assert_eq!(client.create_permission(peer).await, Err(403), "{peer}");
    }
    assert_eq!(client.channel_bind(0x4001, stranger_addr).await, Err(403));
    // Without a permission nothing is relayed there either.
    client.send_indication(stranger_addr, b"attack").await;
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stranger.recv_from(&mut buf))
            .await
            .is_err(),
        "the stranger received a relayed datagram"
    );
    // The SFU itself stays reachable through the same allocation.
    let sfu = sfu_peer(&ports).await;
    client
        .create_permission(sfu.local_addr().unwrap())
        .await
        .unwrap();
    assert_eq!(server.turn_stats().unwrap().refused_peer, 4);
}

#[tokio::test]
async fn refuses_wrong_and_expired_credentials() {
    let (server, _) = default_turn_server().await;
    let addrs = server.turn_addrs().unwrap();
    let (_client, welcome) = Client::join(&server, "r", "A").await;
    let (username, password) = credential(&welcome);

    let mut wrong_password =
        TurnClient::udp(addrs.udp, &username, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=").await;
    assert_eq!(wrong_password.allocate().await, Err(400));
    let mut not_ours = TurnClient::udp(addrs.udp, "alice", &password).await;
    assert_eq!(not_ours.allocate().await, Err(400));
    // Someone else's password under a forged expiry does not verify either.
    let forged = format!(
        "{}:{}",
        unix_now() + 86_400,
        username.split_once(':').unwrap().1
    );
    let mut forged = TurnClient::udp(addrs.udp, &forged, &password).await;
    assert_eq!(forged.allocate().await, Err(400));
    assert_eq!(server.turn_stats().unwrap().allocations, 0);

    // A server whose credentials expire at once: correctly signed, but too late.
    let (expiring, _) = turn_server(EmbeddedTurnConfig::ephemeral(), Duration::ZERO).await;
    let (_client, welcome) = Client::join(&expiring, "r", "A").await;
    let (username, password) = credential(&welcome);
    let mut late = TurnClient::udp(expiring.turn_addrs().unwrap().udp, &username, &password).await;
    assert_eq!(late.allocate().await, Err(401));
    let stats = expiring.turn_stats().unwrap();
    assert_eq!((stats.allocations, stats.refused_credential), (0, 1));
}

#[tokio::test]
async fn limits_allocations_per_participant_and_in_total() {
    let limits = EmbeddedTurnConfig {
        max_allocations: 3,
        max_allocations_per_user: 2,
        ..EmbeddedTurnConfig::ephemeral()
    };
    let (server, _) = turn_server(limits, Duration::from_secs(3600)).await;
    let udp = server.turn_addrs().unwrap().udp;
    let (_a, welcome_a) = Client::join(&server, "r", "A").await;
    let (_b, welcome_b) = Client::join(&server, "r", "B").await;
    let (user_a, pass_a) = credential(&welcome_a);
    let (user_b, pass_b) = credential(&welcome_b);

    let mut a1 = TurnClient::udp(udp, &user_a, &pass_a).await;
    let mut a2 = TurnClient::udp(udp, &user_a, &pass_a).await;
    let mut a3 = TurnClient::udp(udp, &user_a, &pass_a).await;
    a1.allocate().await.unwrap();
    a2.allocate().await.unwrap();
    assert_eq!(a3.allocate().await, Err(486), "per-participant limit");

    let mut b1 = TurnClient::udp(udp, &user_b, &pass_b).await;
    let mut b2 = TurnClient::udp(udp, &user_b, &pass_b).await;
    b1.allocate().await.unwrap();
    assert_eq!(b2.allocate().await, Err(486), "server-wide limit");
    assert_eq!(server.turn_stats().unwrap().refused_quota, 2);

    // A released allocation frees its slot.
    a1.refresh(Duration::ZERO).await.unwrap();
    wait_for("the released allocation to be counted", || {
        server.turn_stats().unwrap().allocations == 2
    })
    .await;
    b2.allocate().await.unwrap();
    assert_eq!(a3.allocate().await, Err(486), "still the server-wide limit");
}
