//! Receivers: one per published track. The receiver reads the publisher's RTP and fans each
//! packet out to every subscriber's down track.
//!
//! The hot path takes no lock and allocates nothing per packet: the fan-out list is an
//! `ArcSwap` snapshot (subscribers come and go by swapping in a new list), extensions are
//! cleared once so header clones are allocation-free, and payloads are shared `Bytes`.

use crate::audio_level::{LevelMeter, parse_level};
use crate::down_track::DownTrackQueue;
use crate::rtc::{KeyframeRequester, RemoteEvent, RemoteTrack, RtpPacket};
use crate::rtcp::KeyframeLimiter;
use crate::stats::Counters;
use crate::{ParticipantId, TrackKind};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::time::{Duration, Instant};

/// One published track and its subscribers.
pub(crate) struct Receiver {
    /// Who publishes it.
    pub publisher: ParticipantId,
    /// The publisher's track id (SDP msid track id).
    pub track_id: String,
    /// Audio or video.
    pub kind: TrackKind,
    down_tracks: ArcSwap<Vec<Arc<DownTrackQueue>>>,
    /// RFC 6464 levels of this track since the room last sampled them (audio only).
    pub levels: LevelMeter,
    /// Negotiated id of the audio-level header extension, 0 if none.
    audio_level_ext: u8,
    limiter: KeyframeLimiter,
    /// A refused keyframe request is waiting for the interval to pass.
    keyframe_deferred: AtomicBool,
    requester: Option<KeyframeRequester>,
    /// SSRC the publisher sends this track with (last seen), for PLI.
    media_ssrc: AtomicU32,
    /// Set once the receiver stopped (track ended or publisher left).
    closed: AtomicBool,
    counters: Arc<Counters>,
    #[cfg(feature = "test-tap")]
    tap: crate::tap::TapSlot,
}

/// What a receiver is made from, besides the webrtc-rs track.
pub(crate) struct ReceiverInit {
    pub publisher: ParticipantId,
    pub track_id: String,
    pub kind: TrackKind,
    pub audio_level_ext: Option<u8>,
    pub pli_min_interval: Duration,
    pub counters: Arc<Counters>,
    #[cfg(feature = "test-tap")]
    pub tap: crate::tap::TapSlot,
}

impl Receiver {
    /// A receiver with no subscribers; `requester` sends PLIs to the publisher (`None` in
    /// unit tests).
    pub fn new(init: ReceiverInit, requester: Option<KeyframeRequester>) -> Arc<Self> {
        Arc::new(Self {
            publisher: init.publisher,
            track_id: init.track_id,
            kind: init.kind,
            down_tracks: ArcSwap::from_pointee(Vec::new()),
            levels: LevelMeter::default(),
            audio_level_ext: init.audio_level_ext.unwrap_or(0),
            limiter: KeyframeLimiter::new(init.pli_min_interval),
            keyframe_deferred: AtomicBool::new(false),
            requester,
            media_ssrc: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            counters: init.counters,
            #[cfg(feature = "test-tap")]
            tap: init.tap,
        })
    }

    /// Adds a subscriber's down track to the fan-out.
    pub fn attach(&self, queue: Arc<DownTrackQueue>) {
        self.down_tracks.rcu(|list| {
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(Arc::clone(&queue));
            next
        });
    }

    /// Removes a down track from the fan-out.
    pub fn detach(&self, queue: &Arc<DownTrackQueue>) {
        self.down_tracks.rcu(|list| {
            list.iter()
                .filter(|q| !Arc::ptr_eq(q, queue))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Subscribers currently in the fan-out.
    #[cfg(test)]
    pub fn subscribers(&self) -> Vec<ParticipantId> {
        self.down_tracks
            .load()
            .iter()
            .map(|q| q.subscriber)
            .collect()
    }

    /// Whether the receiver stopped.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Stops fanning out (the track ended or the publisher left).
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        self.down_tracks.store(Arc::new(Vec::new()));
    }

    /// Handles one packet from the publisher: audio level, then fan-out.
    pub fn forward(&self, mut packet: RtpPacket) {
        self.media_ssrc.store(packet.header.ssrc, Relaxed);
        if self.audio_level_ext != 0
            && let Some(ext) = packet.header.get_extension(self.audio_level_ext)
            && let Some(level) = parse_level(&ext)
        {
            self.levels.record(level);
        }
        // Extension ids are per connection: the subscriber's leg negotiates its own, so the
        // publisher's do not travel. Clearing also keeps every clone below allocation-free.
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extensions_padding = 0;
        packet.header.csrc.clear();

        #[cfg(feature = "test-tap")]
        self.tap
            .record(self.publisher, &self.track_id, &packet.payload);

        let list = self.down_tracks.load();
        let now = Instant::now();
        for queue in list.iter() {
            if !queue.push(now, packet.clone()) {
                self.counters.dropped_packets.fetch_add(1, Relaxed);
                tracing::trace!(subscriber = queue.subscriber, track_id = %self.track_id,
                    "down track queue full: packet dropped");
            }
        }
    }

    /// Asks the publisher for a keyframe, at most once per `pli_min_interval`.
    ///
    /// A request the limiter refuses is not dropped but sent once the interval has passed
    /// (one deferred request at a time): a subscriber that asked just after another one
    /// would otherwise wait for the publisher's next keyframe, and a still shared screen
    /// may send none for a long time.
    pub fn request_keyframe(self: &Arc<Self>) {
        let ssrc = self.media_ssrc.load(Relaxed);
        if self.kind != TrackKind::Video || ssrc == 0 || self.is_closed() {
            return;
        }
        if !self.limiter.allow(Instant::now()) {
            if !self.keyframe_deferred.swap(true, AcqRel) {
                let receiver = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(receiver.limiter.interval()).await;
                    receiver.keyframe_deferred.store(false, Release);
                    receiver.request_keyframe();
                });
            }
            return;
        }
        self.counters.keyframe_requests.fetch_add(1, Relaxed);
        let Some(requester) = self.requester.clone() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(err) = requester.send_pli(ssrc).await {
                tracing::debug!(%err, "PLI not sent");
            }
        });
    }
}

/// Reads the publisher's track until it ends, fanning out every packet.
///
/// Upstream of this loop webrtc-rs hands packets over a bounded (256) channel per track and
/// drops (and counts in its inbound stats) when it is full; it does not bound how long a
/// packet waits there, so this loop does nothing but a non-blocking fan-out to stay ahead.
pub(crate) async fn run(receiver: Arc<Receiver>, track: RemoteTrack) {
    while let Some(event) = track.next().await {
        if receiver.is_closed() {
            break;
        }
        if let RemoteEvent::Rtp(packet) = event {
            receiver.forward(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    pub(crate) fn receiver(publisher: ParticipantId, kind: TrackKind) -> Arc<Receiver> {
        Receiver::new(
            ReceiverInit {
                publisher,
                track_id: format!("t{publisher}"),
                kind,
                audio_level_ext: Some(1),
                pli_min_interval: Duration::from_millis(500),
                counters: Arc::new(Counters::default()),
                #[cfg(feature = "test-tap")]
                tap: Default::default(),
            },
            None,
        )
    }

    fn packet(seq: u16, payload: &'static [u8]) -> RtpPacket {
        let mut p = RtpPacket::default();
        p.header.version = 2;
        p.header.ssrc = 1234;
        p.header.payload_type = 111;
        p.header.sequence_number = seq;
        p.payload = Bytes::from_static(payload);
        p
    }

    #[test]
    fn fans_out_to_every_subscriber_without_copying_payload() {
        let r = receiver(1, TrackKind::Video);
        let (qa, mut ra) = DownTrackQueue::new(2);
        let (qb, mut rb) = DownTrackQueue::new(3);
        r.attach(qa.clone());
        r.attach(qb);
        assert_eq!(r.subscribers(), vec![2, 3]);
        let original = packet(7, b"ciphertext");
        let ptr = original.payload.as_ptr();
        r.forward(original);
        let a = ra.try_recv().expect("a got it").packet;
        let b = rb.try_recv().expect("b got it").packet;
        assert_eq!(a.payload, Bytes::from_static(b"ciphertext"));
        assert_eq!(a.payload.as_ptr(), ptr, "same bytes, not a copy");
        assert_eq!(b.payload.as_ptr(), ptr);
        assert_eq!(b.header.sequence_number, 7);

        r.detach(&qa);
        r.forward(packet(8, b"x"));
        assert!(ra.try_recv().is_err(), "detached subscriber gets nothing");
        assert!(rb.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_refused_keyframe_request_goes_out_after_the_interval() {
        let r = receiver(1, TrackKind::Video);
        r.media_ssrc.store(1234, Relaxed);
        let sent = || r.counters.keyframe_requests.load(Relaxed);
        r.request_keyframe();
        assert_eq!(sent(), 1);
        r.request_keyframe();
        r.request_keyframe();
        assert_eq!(sent(), 1, "within the 500 ms interval: held back");
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            sent(),
            2,
            "the held-back requests went out, after the interval"
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(sent(), 2, "and only once");
    }

    #[test]
    fn reads_audio_level_and_strips_extensions() {
        let r = receiver(1, TrackKind::Audio);
        let (q, mut rx) = DownTrackQueue::new(2);
        r.attach(q);
        let mut p = packet(1, b"opus");
        p.header
            .set_extension(1, Bytes::from_static(&[0x80 | 25]))
            .expect("extension");
        r.forward(p);
        assert_eq!(r.levels.take(), (1, 25));
        let out = rx.try_recv().expect("forwarded").packet;
        assert!(!out.header.extension && out.header.extensions.is_empty());
        assert_eq!(out.payload, Bytes::from_static(b"opus"));
    }

    #[test]
    fn full_queue_counts_a_drop_and_spares_others() {
        let r = receiver(1, TrackKind::Audio);
        let (slow, _keep_rx) = DownTrackQueue::new(2);
        let (fast, mut fast_rx) = DownTrackQueue::new(3);
        r.attach(slow);
        r.attach(fast);
        let n = 600;
        for i in 0..n {
            r.forward(packet(i, b"p"));
            while fast_rx.try_recv().is_ok() {}
        }
        let dropped = r.counters.dropped_packets.load(Relaxed);
        assert_eq!(
            dropped,
            u64::from(n) - crate::down_track::QUEUE_PACKETS as u64,
            "only the slow queue overflowed"
        );
    }

    #[test]
    fn closed_receiver_fans_out_nothing() {
        let r = receiver(1, TrackKind::Video);
        let (q, mut rx) = DownTrackQueue::new(2);
        r.attach(q);
        r.close();
        r.forward(packet(1, b"x"));
        assert!(rx.try_recv().is_err());
        assert!(r.is_closed());
    }
}
