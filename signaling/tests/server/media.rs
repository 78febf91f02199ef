//! The SFU wiring at the signaling level, without a real media peer: a browser-shaped
//! offer gets an answer from the SFU through `publish_offer` / `publish_answer`, and
//! SDP the SFU cannot use comes back as `bad_sdp`. (Media actually flowing through
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
    a.send(json!({"type": "publish_offer", "sdp": "v=0\r\nthis is not sdp\r\n"}))
        .await;
    a.recv_error("bad_sdp").await;
    // The connection stays usable and a good offer still works.
    a.send(json!({"type": "publish_offer", "sdp": opus_offer()}))
        .await;
    a.recv_type("publish_answer").await;
}
