//! Counters kept with atomics so the forwarding path never takes a lock to count.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the SFU's counters (see [`crate::Sfu::stats`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SfuStats {
    /// Rooms with at least one participant.
    pub rooms: u64,
    /// Participants currently joined.
    pub participants: u64,
    /// Published tracks currently forwarded.
    pub tracks: u64,
    /// RTP packets handed to subscribers' connections.
    pub forwarded_packets: u64,
    /// RTP payload bytes handed to subscribers' connections.
    pub forwarded_bytes: u64,
    /// Packets dropped: a full subscriber queue, a packet that waited in it too long (see
    /// `down_track`), a write the stack refused, garbage RTP.
    pub dropped_packets: u64,
    /// Keyframe requests (PLI) sent to publishers, after rate limiting.
    pub keyframe_requests: u64,
    /// Packets sent again because a subscriber's NACK asked for them (single-port engine;
    /// the older engine leaves NACKs to webrtc-rs and does not count them).
    pub retransmitted_packets: u64,
    /// Received media packets dropped unprocessed because they had waited longer than
    /// [`crate::SfuConfig::ingress_max_age`] (single-port engine).
    pub shed_packets: u64,
}

/// The live counters behind [`SfuStats`]; shared by every task of one `Sfu`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub rooms: AtomicU64,
    pub participants: AtomicU64,
    pub tracks: AtomicU64,
    pub forwarded_packets: AtomicU64,
    pub forwarded_bytes: AtomicU64,
    pub dropped_packets: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub retransmitted_packets: AtomicU64,
    pub shed_packets: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> SfuStats {
        SfuStats {
            rooms: self.rooms.load(Relaxed),
            participants: self.participants.load(Relaxed),
            tracks: self.tracks.load(Relaxed),
            forwarded_packets: self.forwarded_packets.load(Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Relaxed),
            dropped_packets: self.dropped_packets.load(Relaxed),
            keyframe_requests: self.keyframe_requests.load(Relaxed),
            retransmitted_packets: self.retransmitted_packets.load(Relaxed),
            shed_packets: self.shed_packets.load(Relaxed),
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Relaxed);
    }
}
