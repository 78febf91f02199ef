//! The forwarder: rewrites the RTP header fields a down track owns.
//!
//! A down track sends with its own SSRC and the payload type negotiated on the subscriber's
//! connection. Sequence numbers and timestamps pass through unchanged while the source stream
//! stays the same; when the source restarts with a new SSRC (the publisher renegotiated or
//! replaced its track) they are rebased so the subscriber sees one continuous stream.
//! The payload is never looked at.

/// Header fields the forwarder reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RtpFields {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
}

/// Rewrite state of one down track.
#[derive(Debug)]
pub(crate) struct Forwarder {
    out_ssrc: u32,
    out_payload_type: u8,
    /// Source SSRC the offsets were computed for.
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_out_seq: u16,
    last_out_ts: u32,
}

/// Timestamp step inserted between the last packet of an old source and the first packet of
/// a new one, so the new source does not appear to go back in time (one 20 ms audio frame at
/// 48 kHz, or a 90 kHz video frame at ~30 fps — both are "about one frame later").
const SOURCE_SWITCH_TS_STEP: u32 = 960;

impl Forwarder {
    /// A forwarder that sends as `out_ssrc` with payload type `out_payload_type`.
    pub fn new(out_ssrc: u32, out_payload_type: u8) -> Self {
        Self {
            out_ssrc,
            out_payload_type,
            source_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            last_out_seq: 0,
            last_out_ts: 0,
        }
    }

    /// Rewrites `fields` in place for sending on this down track.
    pub fn rewrite(&mut self, fields: &mut RtpFields) {
        match self.source_ssrc {
            Some(ssrc) if ssrc == fields.ssrc => {}
            None => self.source_ssrc = Some(fields.ssrc),
            Some(_) => {
                // New source: continue right after what the subscriber saw last.
                self.source_ssrc = Some(fields.ssrc);
                self.seq_offset = self
                    .last_out_seq
                    .wrapping_add(1)
                    .wrapping_sub(fields.sequence_number);
                self.ts_offset = self
                    .last_out_ts
                    .wrapping_add(SOURCE_SWITCH_TS_STEP)
                    .wrapping_sub(fields.timestamp);
            }
        }
        let seq = fields.sequence_number.wrapping_add(self.seq_offset);
        let ts = fields.timestamp.wrapping_add(self.ts_offset);
        // Only move "last" forward, so a reordered packet does not rewind the rebase point.
        if seq_newer(seq, self.last_out_seq) || self.last_out_seq == 0 {
            self.last_out_seq = seq;
            self.last_out_ts = ts;
        }
        fields.ssrc = self.out_ssrc;
        fields.payload_type = self.out_payload_type;
        fields.sequence_number = seq;
        fields.timestamp = ts;
    }
}

/// Whether sequence number `a` is after `b` in RTP's wrapping order.
fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> RtpFields {
        RtpFields {
            ssrc,
            payload_type: 120,
            sequence_number: seq,
            timestamp: ts,
        }
    }

    #[test]
    fn same_source_keeps_seq_and_ts_and_rewrites_ssrc_pt() {
        let mut f = Forwarder::new(7, 111);
        for (seq, ts) in [(100u16, 1000u32), (101, 1960), (103, 3880), (102, 2920)] {
            let mut p = pkt(42, seq, ts);
            f.rewrite(&mut p);
            assert_eq!(p, pkt(7, seq, ts).with_pt(111));
        }
    }

    #[test]
    fn new_source_continues_sequence_and_time() {
        let mut f = Forwarder::new(7, 96);
        let mut p = pkt(1, 65535, 10_000);
        f.rewrite(&mut p);
        let mut q = pkt(2, 500, 77);
        f.rewrite(&mut q);
        assert_eq!(q.sequence_number, 0, "wraps to the next number");
        assert_eq!(q.timestamp, 10_000 + SOURCE_SWITCH_TS_STEP);
        let mut r = pkt(2, 501, 77 + 3000);
        f.rewrite(&mut r);
        assert_eq!(r.sequence_number, 1);
        assert_eq!(r.timestamp, 10_000 + SOURCE_SWITCH_TS_STEP + 3000);
        assert_eq!(r.ssrc, 7);
    }

    #[test]
    fn wrapping_order() {
        assert!(seq_newer(0, 65535));
        assert!(seq_newer(10, 5));
        assert!(!seq_newer(5, 10));
        assert!(!seq_newer(5, 5));
    }

    impl RtpFields {
        fn with_pt(mut self, pt: u8) -> Self {
            self.payload_type = pt;
            self
        }
    }
}
