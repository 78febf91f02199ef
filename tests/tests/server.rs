//! Native participants against the real server (signaling + SFU in-process, on loopback):
//! forwarding, keyframe requests, E2EE relay and departures.

mod common;

use std::time::Duration;

use common::{
    Collector, Sender, TestServer, assert_forwarded, join, wait_tracks_opened,
    wait_tracks_published,
};
use tests::participant::Event;
use tests::protocol::{MediaKind, ServerMessage, decode_b64, encode_b64};
use tests::signal::Outbound;

const T: Duration = Duration::from_secs(10);

/// Three participants; two publish Opus and VP8. Every other participant receives each
/// forwarded packet with its payload byte-identical to what was sent, in order, without
/// loss once the track is flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_payloads_are_byte_identical() {
    let server = TestServer::start().await;
    let mut a = join(&server.url, "forward", "ann").await;
    let mut b = join(&server.url, "forward", "bob").await;
    let mut c = join(&server.url, "forward", "cyd").await;

    let a_tracks = a
        .publish(&[MediaKind::Audio, MediaKind::Video])
        .await
        .expect("a publishes");
    let b_tracks = b
        .publish(&[MediaKind::Audio, MediaKind::Video])
        .await
        .expect("b publishes");

    // Media flows from the start, as from a browser.
    let ca = Collector::start(&mut a);
    let cb = Collector::start(&mut b);
    let cc = Collector::start(&mut c);
    let mut senders = Vec::new();
    for (who, tracks) in [(a.id, &a_tracks), (b.id, &b_tracks)] {
        for t in tracks.iter() {
            senders.push(match t.kind() {
                MediaKind::Audio => Sender::start(t.clone(), who, 50, 120),
                MediaKind::Video => Sender::start(t.clone(), who, 30, 3000),
            });
        }
    }

    // a sees b's two tracks, b sees a's, c sees all four.
    let pa = wait_tracks_published(&mut a, 2).await;
    assert!(pa.iter().all(|(p, _, _)| *p == b.id));
    let pb = wait_tracks_published(&mut b, 2).await;
    assert!(pb.iter().all(|(p, _, _)| *p == a.id));
    let pc = wait_tracks_published(&mut c, 4).await;
    for t in a_tracks.iter().chain(&b_tracks) {
        assert!(
            pc.iter()
                .any(|(_, id, k)| id == t.track_id() && *k == t.kind()),
            "c told about {}",
            t.track_id()
        );
    }

    wait_tracks_opened(&mut a, 2).await;
    wait_tracks_opened(&mut b, 2).await;
    wait_tracks_opened(&mut c, 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut sent = Vec::new();
    for s in senders {
        let id = s.track.track_id().to_owned();
        sent.push((id, s.stop().await));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_a = ca.stop(&mut a).await;
    let got_b = cb.stop(&mut b).await;
    let got_c = cc.stop(&mut c).await;

    for (who, got, others) in [
        ("a", &got_a, vec![(b.id, &b_tracks)]),
        ("b", &got_b, vec![(a.id, &a_tracks)]),
        ("c", &got_c, vec![(a.id, &a_tracks), (b.id, &b_tracks)]),
    ] {
        let expected_tracks: usize = others.iter().map(|(_, t)| t.len()).sum();
        assert_eq!(
            got.len(),
            expected_tracks,
            "{who} received from {:?}",
            got.keys().collect::<Vec<_>>()
        );
        for (publisher, tracks) in others {
            for t in tracks.iter() {
                let key = (publisher, t.track_id().to_owned());
                let recv = got
                    .get(&key)
                    .unwrap_or_else(|| panic!("{who} got nothing on {key:?}"));
                let s = &sent
                    .iter()
                    .find(|(id, _)| id == t.track_id())
                    .expect("sent")
                    .1;
                let (n, expected) = assert_forwarded(s, recv, 0.02, &format!("{who} <- {key:?}"));
                assert!(n > 20, "{who} <- {key:?}: only {n} packets");
                // Nothing lost at the end either: the last packets sent arrived.
                let last = s
                    .iter()
                    .position(|p| p == recv.last().expect("non-empty"))
                    .expect("sent");
                assert!(
                    s.len() - 1 - last <= 2,
                    "{who} <- {key:?}: tail lost ({last} of {})",
                    s.len()
                );
                eprintln!("{who} <- {key:?}: {n}/{expected}");
            }
        }
    }
    server.stop().await;
}

/// A subscriber arriving while video flows makes the SFU ask the publisher for a keyframe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_joiner_gets_a_keyframe_request_relayed() {
    let server = TestServer::start().await;
    let a = join(&server.url, "pli", "ann").await;
    let tracks = a.publish(&[MediaKind::Video]).await.expect("a publishes");
    let video = tracks[0].clone();
    let sender = Sender::start(video.clone(), a.id, 30, 2000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = video.keyframe_requests();

    let mut b = join(&server.url, "pli", "bob").await;
    wait_tracks_opened(&mut b, 1).await;
    let mut kf = video.keyframe_watch();
    let got = tokio::time::timeout(T, kf.wait_for(|n| *n > before))
        .await
        .map(|r| r.is_ok());
    assert!(
        got.is_ok(),
        "no keyframe request reached the publisher after a subscriber joined"
    );

    // And a subscriber's own PLI (decoder lost a frame) is relayed too, after the rate limit.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = video.keyframe_requests();
    b.request_keyframe(a.id, video.track_id())
        .await
        .expect("b sends PLI");
    let got = tokio::time::timeout(T, kf.wait_for(|n| *n > before))
        .await
        .map(|r| r.is_ok());
    assert!(
        got.is_ok(),
        "a subscriber's PLI was not relayed to the publisher"
    );
    sender.stop().await;
    server.stop().await;
}

/// `e2ee` messages reach exactly their recipient, with the server-stamped sender, even when
/// the sender tries to claim another `from`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2ee_messages_reach_exactly_their_recipient() {
    let server = TestServer::start().await;
    let mut a = join(&server.url, "relay", "ann").await;
    let mut b = join(&server.url, "relay", "bob").await;
    let mut c = join(&server.url, "relay", "cyd").await;

    let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    a.send_e2ee(b.id, &payload);
    let spoof = serde_json::json!({
        "type": "e2ee", "to": b.id, "payload": encode_b64(b"second"), "from": c.id
    });
    a.send_raw(Outbound::Text(spoof.to_string()));
    c.send_e2ee(a.id, b"to ann");

    let e2ee = |m: &ServerMessage| match m {
        ServerMessage::E2ee { from, payload } => {
            Some((*from, decode_b64(payload).expect("base64url")))
        }
        _ => None,
    };
    let first = b
        .events
        .wait_server(T, e2ee)
        .await
        .expect("b gets a's message");
    assert_eq!(first, (a.id, payload));
    // The spoofing attempt is either refused or delivered stamped with the real sender.
    if let Some(second) = b.events.wait_server(Duration::from_secs(2), e2ee).await {
        assert_eq!(
            second,
            (a.id, b"second".to_vec()),
            "server must stamp `from`"
        );
    }
    let to_a = a
        .events
        .wait_server(T, e2ee)
        .await
        .expect("a gets c's message");
    assert_eq!(to_a, (c.id, b"to ann".to_vec()));
    // c received nothing addressed to b, and a got nothing but c's message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.events
            .drain()
            .iter()
            .all(|e| !matches!(e, Event::Server(ServerMessage::E2ee { .. })))
    );
    assert!(
        a.events
            .drain()
            .iter()
            .all(|e| !matches!(e, Event::Server(ServerMessage::E2ee { .. })))
    );
    server.stop().await;
}

/// A participant that leaves (or just disconnects) is announced, and its tracks are
/// unpublished for everyone; the remaining media keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn departures_are_announced_and_tracks_removed() {
    let server = TestServer::start().await;
    let a = join(&server.url, "leave", "ann").await;
    let d = join(&server.url, "leave", "dan").await;
    let mut b = join(&server.url, "leave", "bob").await;
    let mut c = join(&server.url, "leave", "cyd").await;
    let a_tracks = a
        .publish(&[MediaKind::Audio, MediaKind::Video])
        .await
        .expect("a publishes");
    let d_tracks = d.publish(&[MediaKind::Audio]).await.expect("d publishes");
    let sa: Vec<Sender> = a_tracks
        .iter()
        .map(|t| Sender::start(t.clone(), a.id, 30, 500))
        .collect();
    let sd = Sender::start(d_tracks[0].clone(), d.id, 50, 100);
    wait_tracks_published(&mut b, 3).await;
    wait_tracks_published(&mut c, 3).await;
    for s in sa {
        s.stop().await;
    }

    {
        let (leaver_id, tracks) = (a.id, a_tracks.clone());
        a.leave().await;
        for p in [&mut b, &mut c] {
            let left = p
                .events
                .wait_server(T, |m| {
                    matches!(m, ServerMessage::ParticipantLeft { id } if *id == leaver_id)
                        .then_some(())
                })
                .await;
            assert!(left.is_some(), "{} told that {leaver_id} left", p.id);
            for t in &tracks {
                let gone = p
                    .events
                    .wait_server(T, |m| {
                        matches!(m, ServerMessage::TrackUnpublished { participant, track_id }
                            if *participant == leaver_id && track_id == t.track_id())
                        .then_some(())
                    })
                    .await;
                assert!(
                    gone.is_some(),
                    "{} told that {} was unpublished",
                    p.id,
                    t.track_id()
                );
            }
        }
    }

    // d's audio still reaches b after a's departure.
    let cb = Collector::start(&mut b);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = cb.stop(&mut b).await;
    assert!(
        got.get(&(d.id, d_tracks[0].track_id().to_owned()))
            .is_some_and(|v| v.len() > 20)
    );

    // A participant whose connection just drops is removed the same way.
    let d_id = d.id;
    sd.stop().await;
    d.disconnect().await;
    for p in [&mut b, &mut c] {
        let left = p
            .events
            .wait_server(T, |m| {
                matches!(m, ServerMessage::ParticipantLeft { id } if *id == d_id).then_some(())
            })
            .await;
        assert!(left.is_some(), "{} told that {d_id} dropped", p.id);
        let gone = p
            .events
            .wait_server(T, |m| matches!(m, ServerMessage::TrackUnpublished { participant, .. } if *participant == d_id).then_some(()))
            .await;
        assert!(
            gone.is_some(),
            "{} told that {d_id}'s track was unpublished",
            p.id
        );
    }
    server.stop().await;
}
