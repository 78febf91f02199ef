//! Down tracks: one per (subscriber, published track).
//!
//! The receiver's fan-out holds a [`DownTrackQueue`] per subscriber; pushing is a
//! non-blocking `try_send` of a packet whose payload is a `Bytes` clone (no copy). A writer
//! task per down track pops packets, lets the [`Forwarder`] rewrite the header, and hands
//! them to the subscriber's PeerConnection. A slow subscriber fills only its own queue.

use crate::ParticipantId;
use crate::forwarder::{Forwarder, RtpFields};
use crate::receiver::Receiver;
use crate::rtc::{LocalTrack, RtpPacket};
use crate::stats::Counters;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Packets a down track may hold before it drops (about a second of video at 300 pkt/s is
/// more than a healthy loopback ever needs; a stuck subscriber loses packets, nobody else).
const QUEUE_PACKETS: usize = 512;
/// Packets a writer takes from its queue per wake-up.
const BATCH: usize = 32;

/// The receiver-side end of a down track.
#[derive(Debug)]
pub(crate) struct DownTrackQueue {
    /// Who receives this down track.
    pub subscriber: ParticipantId,
    tx: mpsc::Sender<RtpPacket>,
}

impl DownTrackQueue {
    /// A queue for `subscriber` and the receiving end its writer drains.
    pub fn new(subscriber: ParticipantId) -> (Arc<Self>, mpsc::Receiver<RtpPacket>) {
        let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
        (Arc::new(Self { subscriber, tx }), rx)
    }

    /// Queues a packet; `false` if the queue is full or its writer is gone (a drop).
    pub fn push(&self, packet: RtpPacket) -> bool {
        self.tx.try_send(packet).is_ok()
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
        rx: mpsc::Receiver<RtpPacket>,
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
    mut rx: mpsc::Receiver<RtpPacket>,
    local: Arc<LocalTrack>,
    mut forwarder: Forwarder,
    counters: Arc<Counters>,
) {
    // Drain in batches: one wake-up of this task per burst, not per packet.
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for packet in batch.drain(..) {
            write_one(&local, &mut forwarder, &counters, packet).await;
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
