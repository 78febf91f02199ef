//! Down tracks: one per (subscriber, published track).
//!
//! The receiver's fan-out holds a [`DownTrackQueue`] per subscriber; pushing is a
//! non-blocking `try_send` of a packet whose payload is a `Bytes` clone (no copy). A writer
//! task per down track pops packets, lets the [`Forwarder`] rewrite the header, and hands
//! them to the subscriber's PeerConnection. A slow subscriber fills only its own queue.
//!
//! # Dropping instead of queueing
//!
//! A real-time forwarder must shed load, not buffer it: a packet that waited too long is
//! useless to the subscriber and only adds latency to every packet behind it. Two bounds
//! keep both latency and memory flat under overload:
//!
//! * the queue holds at most [`QUEUE_PACKETS`]; when it is full the receiver drops the new
//!   packet (counted in `dropped_packets`);
//! * every packet carries the instant it was queued, and the writer drops (and counts) any
//!   packet older than [`MAX_QUEUE_DELAY`] instead of sending it — so when a writer falls
//!   behind it skips the stale head of its queue (drop-oldest) and resumes with fresh media.
//!
//! The rest of the path is webrtc-rs's: `TrackLocalStaticRTP::write_rtp` awaits a bounded
//! (256) per-PeerConnection channel to the connection's driver task, which SRTP-protects
//! and sends synchronously. That await is the only backpressure we get from it, so the
//! staleness check runs right before each write, after any wait for the previous one.

use crate::ParticipantId;
use crate::forwarder::{Forwarder, RtpFields};
use crate::receiver::Receiver;
use crate::rtc::{LocalTrack, RtpPacket};
use crate::stats::Counters;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Packets a down track may hold before it drops new ones (under a second of video at
/// 300 pkt/s; a stuck subscriber loses packets, nobody else does).
pub(crate) const QUEUE_PACKETS: usize = 256;
/// Oldest a packet may be when its writer gets to it; older ones are dropped, not sent.
/// Well above a healthy queueing delay (sub-millisecond), well below what a call tolerates.
pub(crate) const MAX_QUEUE_DELAY: Duration = Duration::from_millis(200);
/// Packets a writer takes from its queue per wake-up.
const BATCH: usize = 32;

/// A packet waiting in a down-track queue, with the instant it was queued.
#[derive(Debug)]
pub(crate) struct Queued {
    /// When the receiver queued it.
    pub at: Instant,
    /// The packet, header not yet rewritten.
    pub packet: RtpPacket,
}

impl Queued {
    /// Whether the packet waited longer than [`MAX_QUEUE_DELAY`] by `now`.
    pub fn is_stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) > MAX_QUEUE_DELAY
    }
}

/// The receiver-side end of a down track.
#[derive(Debug)]
pub(crate) struct DownTrackQueue {
    /// Who receives this down track.
    pub subscriber: ParticipantId,
    tx: mpsc::Sender<Queued>,
}

impl DownTrackQueue {
    /// A queue for `subscriber` and the receiving end its writer drains.
    pub fn new(subscriber: ParticipantId) -> (Arc<Self>, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
        (Arc::new(Self { subscriber, tx }), rx)
    }

    /// Queues a packet received at `at`; `false` if the queue is full or its writer is gone
    /// (a drop).
    pub fn push(&self, at: Instant, packet: RtpPacket) -> bool {
        self.tx.try_send(Queued { at, packet }).is_ok()
    }
}

/// The running parts of one down track: writer and keyframe-request relay.
pub(crate) struct DownTrack {
    pub queue: Arc<DownTrackQueue>,
    pub local: Arc<LocalTrack>,
    writer: JoinHandle<()>,
    rtcp: JoinHandle<()>,
}

impl DownTrack {
    /// Starts the writer (sending as `ssrc` with `payload_type`) and the keyframe-request
    /// relay towards `receiver`.
    pub fn start(
        queue: Arc<DownTrackQueue>,
        rx: mpsc::Receiver<Queued>,
        local: LocalTrack,
        ssrc: u32,
        payload_type: u8,
        receiver: Arc<Receiver>,
        counters: Arc<Counters>,
    ) -> Self {
        let local = Arc::new(local);
        let writer = tokio::spawn(write_loop(
            rx,
            Arc::clone(&local),
            Forwarder::new(ssrc, payload_type),
            counters,
        ));
        let rtcp_local = Arc::clone(&local);
        let rtcp = tokio::spawn(async move {
            while rtcp_local.next_keyframe_request().await.is_some() {
                receiver.request_keyframe();
            }
        });
        Self {
            queue,
            local,
            writer,
            rtcp,
        }
    }
}

impl Drop for DownTrack {
    fn drop(&mut self) {
        self.writer.abort();
        self.rtcp.abort();
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Queued>,
    local: Arc<LocalTrack>,
    mut forwarder: Forwarder,
    counters: Arc<Counters>,
) {
    // Drain in batches: one wake-up of this task per burst, not per packet.
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for queued in batch.drain(..) {
            // Checked per packet: the previous write may have waited on the driver.
            if queued.is_stale(Instant::now()) {
                counters.dropped_packets.fetch_add(1, Relaxed);
                continue;
            }
            write_one(&local, &mut forwarder, &counters, queued.packet).await;
        }
    }
}

async fn write_one(
    local: &LocalTrack,
    forwarder: &mut Forwarder,
    counters: &Counters,
    mut packet: RtpPacket,
) {
    {
        let h = &mut packet.header;
        let mut fields = RtpFields {
            ssrc: h.ssrc,
            payload_type: h.payload_type,
            sequence_number: h.sequence_number,
            timestamp: h.timestamp,
        };
        forwarder.rewrite(&mut fields);
        h.ssrc = fields.ssrc;
        h.payload_type = fields.payload_type;
        h.sequence_number = fields.sequence_number;
        h.timestamp = fields.timestamp;
    }
    let bytes = packet.payload.len() as u64;
    match local.write(packet).await {
        Ok(()) => {
            counters.forwarded_packets.fetch_add(1, Relaxed);
            counters.forwarded_bytes.fetch_add(bytes, Relaxed);
        }
        Err(err) => {
            counters.dropped_packets.fetch_add(1, Relaxed);
            tracing::trace!(%err, "down track write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_older_than_the_limit_are_stale() {
        let now = Instant::now();
        let fresh = Queued {
            at: now,
            packet: RtpPacket::default(),
        };
        assert!(!fresh.is_stale(now));
        assert!(!fresh.is_stale(now + MAX_QUEUE_DELAY));
        assert!(fresh.is_stale(now + MAX_QUEUE_DELAY + Duration::from_millis(1)));
        // A clock that appears to go backwards never makes a packet stale.
        let later = Queued {
            at: now + Duration::from_secs(1),
            packet: RtpPacket::default(),
        };
        assert!(!later.is_stale(now));
    }

    #[test]
    fn queue_is_bounded_and_refuses_when_full() {
        let (q, mut rx) = DownTrackQueue::new(7);
        let now = Instant::now();
        let accepted = (0..QUEUE_PACKETS + 10)
            .filter(|_| q.push(now, RtpPacket::default()))
            .count();
        assert_eq!(accepted, QUEUE_PACKETS);
        assert!(rx.try_recv().is_ok());
        assert!(q.push(now, RtpPacket::default()), "room again after a pop");
        drop(rx);
        assert!(!q.push(now, RtpPacket::default()), "writer gone is a drop");
    }
}
