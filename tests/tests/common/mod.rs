//! Shared helpers of the integration tests: an in-process server on free ports, joining,
//! paced senders that remember what they sent, and collectors of what arrived.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::net::UdpSocket;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use signaling::{Config, Server, ServerHandle};
use tests::media::{BodyInfo, synthetic_vp8_frame, vp8_packetize};
use tests::participant::{Event, JoinOptions, Participant};
use tests::protocol::{MediaKind, ServerMessage};
use tests::rtc::{LocalTrack, ReceivedRtp};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A contiguous block of `n` UDP ports on 127.0.0.1 that are free right now.
pub fn free_udp_range(n: u16) -> RangeInclusive<u16> {
    for _ in 0..200 {
        let base = 20_000 + (rand::random::<u16>() % 20_000);
        let end = base + n - 1;
        let all_free = (base..=end).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base..=end;
        }
    }
    panic!("no free block of {n} UDP ports");
}

/// A server running in this process, with its own UDP port block.
pub struct TestServer {
    handle: Option<ServerHandle>,
    /// `ws://127.0.0.1:<port>/ws`.
    pub url: String,
}

impl TestServer {
    /// Starts a server with default limits.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted its config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::ephemeral();
        config.sfu.udp_port = Some(0);
        tweak(&mut config);
        let server = Server::bind(config).await.expect("server binds");
        let handle = server.spawn();
        let url = handle.ws_url();
        TestServer {
            handle: Some(handle),
            url,
        }
    }

    /// The server's SFU.
    pub fn sfu(&self) -> sfu::Sfu {
        self.handle.as_ref().expect("running").sfu()
    }

    /// The embedded TURN server's counters, if it runs.
    pub fn turn_stats(&self) -> Option<signaling::turn::TurnSnapshot> {
        self.handle.as_ref().expect("running").turn_stats()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h.shutdown()).await;
        }
    }
}

/// Joins `room` as `name`.
pub async fn join(url: &str, room: &str, name: &str) -> Participant {
    Participant::join(JoinOptions::new(url, room, name))
        .await
        .unwrap_or_else(|e| panic!("{name} joins: {e}"))
}

/// Waits until `p` was told about `n` published tracks of others; returns them.
pub async fn wait_tracks_published(p: &mut Participant, n: usize) -> Vec<(u64, String, MediaKind)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let got = p
            .events
            .wait_server(Duration::from_secs(10), |m| match m {
                ServerMessage::TrackPublished {
                    participant,
                    track_id,
                    kind,
                } => Some((*participant, track_id.clone(), *kind)),
                _ => None,
            })
            .await;
        match got {
            Some(t) => seen.push(t),
            None => panic!("participant {} saw only {seen:?} of {n} tracks", p.id),
        }
    }
    seen
}

/// Waits until `p`'s subscribe connection has opened `n` forwarded tracks.
pub async fn wait_tracks_opened(p: &mut Participant, n: usize) {
    for i in 0..n {
        let got = p
            .events
            .wait_for(Duration::from_secs(10), |e| {
                matches!(e, Event::TrackOpened { .. }).then_some(())
            })
            .await;
        assert!(
            got.is_some(),
            "participant {} opened {i} of {n} tracks",
            p.id
        );
    }
}

/// A task sending paced RTP on one track, remembering every payload it sent.
pub struct Sender {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
    /// Every payload sent, in order.
    pub sent: Arc<Mutex<Vec<Bytes>>>,
    /// Packets sent so far.
    pub count: Arc<AtomicU64>,
    /// The track.
    pub track: LocalTrack,
}

impl Sender {
    /// Starts sending: audio 50 packets/s of 20 ms Opus-sized random payloads; video
    /// `fps` synthetic VP8 frames/s of `frame_bytes`, keyframe every 30th frame.
    pub fn start(track: LocalTrack, publisher: u64, fps: u32, frame_bytes: usize) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, sent, count, track) =
                (stop.clone(), sent.clone(), count.clone(), track.clone());
            tokio::spawn(async move {
                let period = Duration::from_secs(1) / fps.max(1);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let ts = (n as u32).wrapping_mul(track.clock_rate() / fps.max(1));
                    let payloads: Vec<Bytes> = match track.kind() {
                        MediaKind::Audio => {
                            let mut p = Vec::with_capacity(frame_bytes);
                            p.extend_from_slice(&publisher.to_be_bytes());
                            p.extend_from_slice(&n.to_be_bytes());
                            while p.len() < frame_bytes {
                                p.push(rand::random());
                            }
                            vec![Bytes::from(p)]
                        }
                        MediaKind::Video => {
                            let info = BodyInfo {
                                sender: publisher,
                                frame_no: n,
                                sent_at_us: 0,
                            };
                            let frame =
                                synthetic_vp8_frame(n.is_multiple_of(30), info, frame_bytes);
                            vp8_packetize(&frame, n as u16)
                                .into_iter()
                                .map(Bytes::from)
                                .collect()
                        }
                    };
                    let last = payloads.len().saturating_sub(1);
                    for (i, p) in payloads.into_iter().enumerate() {
                        let marker = track.kind() == MediaKind::Video && i == last;
                        if track.send(p.clone(), ts, marker).await.is_err() {
                            return;
                        }
                        if let Ok(mut s) = sent.lock() {
                            s.push(p);
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        };
        Sender {
            stop,
            task,
            sent,
            count,
            track,
        }
    }

    /// Stops sending and waits for the task.
    pub async fn stop(self) -> Vec<Bytes> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Received payloads per (publisher, track id), in arrival order.
pub type Received = HashMap<(u64, String), Vec<Bytes>>;

/// Collects a participant's received packets per (publisher, track id) in the background.
pub struct Collector {
    task: JoinHandle<mpsc::Receiver<ReceivedRtp>>,
    stop: Arc<AtomicBool>,
    /// Received payloads per (publisher, track id), in arrival order.
    pub got: Arc<Mutex<Received>>,
    /// Packets received so far.
    pub count: Arc<AtomicU64>,
}

impl Collector {
    /// Takes over `p.media` until [`Collector::stop`] gives it back.
    pub fn start(p: &mut Participant) -> Collector {
        let (placeholder_tx, placeholder) = mpsc::channel(1);
        drop(placeholder_tx);
        let mut media = std::mem::replace(&mut p.media, placeholder);
        let got: Arc<Mutex<Received>> = Arc::default();
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (got, count, stop) = (got.clone(), count.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(50), media.recv()).await {
                        Ok(Some(r)) => {
                            count.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut g) = got.lock() {
                                g.entry((r.publisher.unwrap_or(u64::MAX), r.track_id))
                                    .or_default()
                                    .push(r.packet.payload);
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                media
            })
        };
        Collector {
            task,
            stop,
            got,
            count,
        }
    }

    /// Stops collecting, hands the media receiver back and returns what arrived.
    pub async fn stop(self, p: &mut Participant) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(media) = self.task.await {
            p.media = media;
        }
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Checks that every received payload of a track is byte-identical to a sent one, that
/// they arrive in the order sent, and that at most `max_loss` (fraction) of what was sent
/// after the first arrival is missing. Returns (received, expected).
pub fn assert_forwarded(
    sent: &[Bytes],
    got: &[Bytes],
    max_loss: f64,
    what: &str,
) -> (usize, usize) {
    assert!(!got.is_empty(), "{what}: nothing received");
    let index: HashMap<&Bytes, usize> = sent.iter().enumerate().map(|(i, b)| (b, i)).collect();
    let mut last = None;
    for g in got {
        let Some(&i) = index.get(g) else {
            panic!(
                "{what}: received a payload that was never sent ({} bytes)",
                g.len()
            );
        };
        if let Some(l) = last {
            assert!(i > l, "{what}: payload {i} arrived after {l}");
        }
        last = Some(i);
    }
    let first = index[&got[0]];
    let last = last.unwrap_or(first);
    let expected = last - first + 1;
    let loss = 1.0 - got.len() as f64 / expected as f64;
    assert!(
        loss <= max_loss,
        "{what}: lost {:.2}% ({} of {expected})",
        loss * 100.0,
        expected - got.len()
    );
    (got.len(), expected)
}
