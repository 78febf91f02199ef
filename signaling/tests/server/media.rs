//! The SFU wiring at the signaling level, without a real media peer: a browser-shaped
//! offer gets an answer from the SFU through `publish_offer` / `publish_answer`, and
//! SDP the SFU cannot use comes back as `bad_sdp`; media resources are taken only when
//! media starts and released when it never connects. (Media actually flowing through
//! the server is covered by the native-participant tests in `tests/`.)

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// A minimal browser-like offer: one send-only Opus track.
fn opus_offer() -> String {
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS stream1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=msid:stream1 track1",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1111 cname:sealed-test",
        "",
    ]
    .join("\r\n")
}

#[tokio::test]
async fn publish_offer_gets_the_sfus_answer() {
    let server = start_default().await;
    let (mut a, _) = Client::join(&server, "r", "A").await;
    a.send(json!({"type": "publish_offer", "sdp": opus_offer()}))
        .await;
    let answer = a.recv_type("publish_answer").await;
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(sdp.starts_with("v=0"), "{sdp}");
    assert!(sdp.contains("m=audio"), "{sdp}");
    assert!(
        sdp.contains("a=recvonly") || sdp.contains("a=inactive"),
        "{sdp}"
    );

    // Still a working participant afterwards.
    a.send(json!({"type": "ice_candidate", "pc": "publish",
        "candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}}))
        .await;
    a.send(json!({"type": "mute", "track": "track1", "muted": true}))
        .await;
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn sdp_the_sfu_cannot_use_is_bad_sdp() {
    let server = start_default().await;
    let (mut a, _) = Client::join(&server, "r", "A").await;
    a.send(json!({"type": "publish_offer", "sdp": two_audio_sections_first_without_ssrc()}))
        .await;
    a.recv_error("bad_sdp").await;
    a.send(json!({"type": "publish_offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"}))
        .await;
    a.recv_error("bad_sdp").await;
    a.send(json!({"type": "publish_offer", "sdp": "v=0\r\nthis is not sdp\r\n"}))
        .await;
    a.recv_error("bad_sdp").await;
    // The connection stays usable and a good offer still works.
    a.send(json!({"type": "publish_offer", "sdp": opus_offer()}))
        .await;
    a.recv_type("publish_answer").await;
}

/// A server whose SFU has exactly `ports` (a range no other test uses).
async fn server_with_ports(
    ports: std::ops::RangeInclusive<u16>,
    connect_timeout: Duration,
) -> signaling::ServerHandle {
    let mut config = signaling::Config::ephemeral();
    config.sfu.udp_ports = ports;
    config.sfu.connect_timeout = connect_timeout;
    signaling::Server::bind(config).await.expect("bind").spawn()
}

/// A browser-shaped offer with two send-only audio sections: the first has an msid
/// but no SSRC (found by fuzzing; was answered with `internal`).
fn two_audio_sections_first_without_ssrc() -> String {
    let offer = opus_offer().replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1");
    let first = offer.replace("a=ssrc:1111 cname:sealed-test\r\n", "");
    let media_at = offer.find("m=audio").expect("audio section");
    let second = offer[media_at..]
        .replace("a=mid:0", "a=mid:1")
        .replace("a=msid:stream1 track1", "a=msid:stream1 track2")
        .replace("a=ssrc:1111", "a=ssrc:2222");
    format!("{first}{second}")
}

#[tokio::test]
async fn participants_without_media_hold_no_ports() {
    let server = server_with_ports(44_900..=44_901, Duration::from_secs(15)).await;
    let mut squatters = Vec::new();
    for i in 0..20 {
        squatters.push(Client::join(&server, &format!("squat-{}", i % 4), "squatter").await);
    }
    // Two ports, one per publish connection: two newcomers start media.
    let (mut a, _) = Client::join(&server, "work-a", "A").await;
    let (mut b, _) = Client::join(&server, "work-b", "B").await;
    for client in [&mut a, &mut b] {
        client
            .send(json!({"type": "publish_offer", "sdp": opus_offer()}))
            .await;
        client.recv_type("publish_answer").await;
    }
    // The range is really that small: a third publisher finds no port.
    let (mut c, _) = Client::join(&server, "other", "C").await;
    c.send(json!({"type": "publish_offer", "sdp": opus_offer()}))
        .await;
    c.recv_error("internal").await;
}

#[tokio::test]
async fn a_media_connection_that_never_connects_is_released() {
    let server = server_with_ports(44_910..=44_910, Duration::from_secs(1)).await;
    let (mut a, _) = Client::join(&server, "r", "A").await;
    a.send(json!({"type": "publish_offer", "sdp": opus_offer()}))
        .await;
    a.recv_type("publish_answer").await;
    // Nobody answers the SFU's connectivity checks: after the bound the participant is
    // told and removed, and the one port is free again.
    let err = a.recv_error("media_failed").await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("timed out")),
        "{err}"
    );
    assert!(matches!(a.closed().await, Closed::Frame(..)));
    let (mut b, _) = Client::join(&server, "r", "B").await;
    b.send(json!({"type": "publish_offer", "sdp": opus_offer()}))
        .await;
    b.recv_type("publish_answer").await;
    assert_eq!(server.sfu().stats().participants, 1);
}

/// Inodes of the UDP sockets (IPv4 and IPv6) bound to each local port, from
/// `/proc/net/udp*` (hex `local_address` `ADDR:PORT`, inode in column 10).
fn udp_inodes_by_port() -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, inode.parse()) {
                out.push((port, inode));
            }
        }
    }
    out
}

/// The local ports of the UDP sockets process `pid` holds, read from `/proc` (its
/// descriptors' socket inodes, matched against the kernel's UDP tables).
fn udp_ports_of(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the server's descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut ports: Vec<u16> = udp_inodes_by_port()
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(port, _)| port)
        .collect();
    ports.sort_unstable();
    ports
}

/// The real `sealed` binary with the single-port engine: 24 participants in 4 rooms start
/// media, and the process holds exactly one UDP socket for all of them — counted by the
/// kernel, not by our own counters.
#[tokio::test]
async fn the_single_port_engine_holds_one_udp_socket_for_every_participant() {
    use tokio::io::AsyncBufReadExt as _;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealed"))
        .args(["serve", "--listen", "127.0.0.1:0", "--turn", "off"])
        .args(["--udp-port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sealed");
    let pid = child.id().expect("pid");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.split("http://").nth(1) {
                return rest
                    .trim_end_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        panic!("sealed exited before it said where it listens");
    })
    .await
    .expect("sealed starts");
    let url = format!("ws://{addr}/ws");
    assert_eq!(udp_ports_of(pid), [port], "before anyone joined");
    let tcp_listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(tcp_listening, "ICE-TCP listens on the same port number");

    let mut clients = Vec::new();
    for i in 0..24 {
        let (mut client, _) = Client::join_url(&url, &format!("room-{}", i % 4), "P").await;
        client
            .send(json!({"type": "publish_offer", "sdp": opus_offer()}))
            .await;
        let answer = client.recv_type("publish_answer").await;
        let sdp = answer["sdp"].as_str().unwrap_or_default();
        assert!(
            sdp.contains(&format!(" udp 2130706431 127.0.0.1 {port} typ host"))
                && sdp.contains(&format!(
                    " tcp 2124414975 127.0.0.1 {port} typ host tcptype passive"
                )),
            "every answer names the one port, over UDP and ICE-TCP: {sdp}"
        );
        clients.push(client);
    }
    assert_eq!(
        udp_ports_of(pid),
        [port],
        "24 publish connections in 4 rooms share the one media socket"
    );
    drop(clients);
    child.kill().await.expect("stop sealed");
}
