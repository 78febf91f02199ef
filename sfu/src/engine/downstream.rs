//! What the SFU keeps per forwarded stream now that forwarded RTP no longer passes rtc's
//! interceptor chain (see `third_party/rtc/PATCHES.md`): the recent packets a NACK can ask
//! for again, and the counters and timestamp mapping of the RTCP sender reports.

use bytes::{BufMut, Bytes, BytesMut};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Packets of one video stream a NACK may still ask for: about a second at 300 packets/s,
/// several round trips on any link a meeting survives.
pub(crate) const VIDEO_HISTORY: usize = 512;

/// The least time between two retransmissions of one packet: a NACK repeated sooner
/// (or a subscriber asking for the same packet over and over) gets nothing more.
pub(crate) const RESEND_INTERVAL: Duration = Duration::from_millis(100);

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The last packets sent on one stream, by sequence number, as sent (rewritten header
/// fields, payload shared with every other subscriber's copy). Kept compact — the fields
/// a forwarded header has (extensions and CSRCs are stripped) and the payload handle —
/// because it is written for every packet forwarded.
pub(crate) struct SendHistory {
    slots: Vec<Option<Sent>>,
}

/// One kept packet.
struct Sent {
    sequence_number: u16,
    timestamp: u32,
    ssrc: u32,
    payload_type: u8,
    marker: bool,
    payload: Bytes,
    /// When it was last sent again.
    resent: Option<Instant>,
}

impl SendHistory {
    /// An empty history of `capacity` packets.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: std::iter::repeat_with(|| None)
                .take(capacity.max(1))
                .collect(),
        }
    }

    /// Keeps `packet`, replacing the one `capacity` sequence numbers before it.
    pub(crate) fn push(&mut self, packet: &rtp::Packet) {
        let header = &packet.header;
        let index = self.index(header.sequence_number);
        self.slots[index] = Some(Sent {
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            payload_type: header.payload_type,
            marker: header.marker,
            payload: packet.payload.clone(),
            resent: None,
        });
    }

    /// The packet sent with `sequence_number`, to send again at `now`: if it is still kept
    /// and was not sent again within [`RESEND_INTERVAL`].
    pub(crate) fn resend(&mut self, sequence_number: u16, now: Instant) -> Option<rtp::Packet> {
        let index = self.index(sequence_number);
        let sent = self.slots[index]
            .as_mut()
            .filter(|s| s.sequence_number == sequence_number)?;
        if sent
            .resent
            .is_some_and(|at| now.saturating_duration_since(at) < RESEND_INTERVAL)
        {
            return None;
        }
        sent.resent = Some(now);
        Some(rtp::Packet {
            header: rtp::Header {
                version: 2,
                marker: sent.marker,
                payload_type: sent.payload_type,
                sequence_number: sent.sequence_number,
                timestamp: sent.timestamp,
                ssrc: sent.ssrc,
                ..Default::default()
            },
            payload: sent.payload.clone(),
        })
    }

    fn index(&self, sequence_number: u16) -> usize {
        usize::from(sequence_number) % self.slots.len()
    }
}

/// The RTX stream (RFC 4588) of one forwarded video stream: where its retransmissions go
/// when the subscriber took RTX.
pub(crate) struct RtxStream {
    ssrc: u32,
    payload_type: u8,
    next_sequence_number: u16,
}

impl RtxStream {
    /// The RTX stream announced as `ssrc`, negotiated with `payload_type`; its sequence
    /// numbers start at a random point (RFC 3550 §5.1).
    pub(crate) fn new(ssrc: u32, payload_type: u8) -> Self {
        Self {
            ssrc,
            payload_type,
            next_sequence_number: rand::random(),
        }
    }

    /// `original` as an RTX packet (RFC 4588 §4): this stream's SSRC, payload type and
    /// next sequence number; the original sequence number (OSN) ahead of the original
    /// payload; timestamp and marker kept.
    pub(crate) fn wrap(&mut self, original: &rtp::Packet) -> rtp::Packet {
        let mut payload = BytesMut::with_capacity(2 + original.payload.len());
        payload.put_u16(original.header.sequence_number);
        payload.extend_from_slice(&original.payload);
        let sequence_number = self.next_sequence_number;
        self.next_sequence_number = sequence_number.wrapping_add(1);
        rtp::Packet {
            header: rtp::Header {
                version: 2,
                marker: original.header.marker,
                payload_type: self.payload_type,
                sequence_number,
                timestamp: original.header.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: payload.freeze(),
        }
    }
}

/// Sender-report state of one stream (RFC 3550 §6.4.1): packets and payload octets sent,
/// and the RTP timestamp of the newest frame with the instant it was sent.
pub(crate) struct SendReport {
    clock_rate: u32,
    packets: u32,
    octets: u32,
    last: Option<(u32, Instant)>,
}

impl SendReport {
    /// Nothing sent yet on a stream whose RTP clock runs at `clock_rate` Hz.
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    /// Counts one packet sent at `now`.
    pub(crate) fn sent(&mut self, now: Instant, timestamp: u32, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self
            .octets
            .wrapping_add(u32::try_from(payload_len).unwrap_or(u32::MAX));
        // The first packet of each frame maps its timestamp to wall-clock time; later
        // packets of the frame would only add the time spent sending it.
        if self.last.is_none_or(|(ts, _)| ts != timestamp) {
            self.last = Some((timestamp, now));
        }
    }

    /// The sender report for `ssrc` at `now` (`wall` is the same moment as system time),
    /// or `None` before anything was sent.
    pub(crate) fn report(&self, ssrc: u32, now: Instant, wall: SystemTime) -> Option<SenderReport> {
        let (timestamp, at) = self.last?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        Some(SenderReport {
            ssrc,
            ntp_time: ntp_time(wall),
            rtp_time: timestamp.wrapping_add((elapsed * f64::from(self.clock_rate)) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

/// `wall` as a 64-bit NTP timestamp (seconds since 1900 in the high word, fraction low).
pub(crate) fn ntp_time(wall: SystemTime) -> u64 {
    let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// Marshals `packet` into `buf` (emptied first; a pooled send buffer, so the packet is
/// protected where it lies and sent from there).
pub(crate) fn marshal_into(
    packet: &rtp::Packet,
    buf: &mut BytesMut,
) -> Result<(), rtc::shared::error::Error> {
    use rtc::shared::marshal::{Marshal, MarshalSize};
    buf.clear();
    if packet.header.padding {
        // rtp writes the padding; rare enough to zero the whole buffer first.
        buf.resize(packet.marshal_size(), 0);
        let written = packet.marshal_to(&mut buf[..])?;
        buf.truncate(written);
        return Ok(());
    }
    // Only the header is written into zeroed space; the payload is copied once, no memset.
    buf.resize(packet.header.marshal_size(), 0);
    let written = packet.header.marshal_to(&mut buf[..])?;
    buf.truncate(written);
    buf.extend_from_slice(&packet.payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, len: usize) -> rtp::Packet {
        rtp::Packet {
            header: rtp::Header {
                version: 2,
                sequence_number: seq,
                timestamp: ts,
                ssrc: 7,
                payload_type: 96,
                ..Default::default()
            },
            payload: Bytes::from(vec![0xab; len]),
        }
    }

    #[test]
    fn history_returns_what_was_sent_until_it_is_overwritten() {
        let mut history = SendHistory::new(4);
        for seq in 65_534..=65_535 {
            history.push(&rtp(seq, 0, 10));
        }
        for seq in 0..3u16 {
            history.push(&rtp(seq, 0, 10));
        }
        let now = Instant::now();
        // 65,534 shares its slot with 2 (65,534 % 4 == 2): gone; the wrap kept the rest.
        assert!(history.resend(65_534, now).is_none());
        for seq in [65_535u16, 0, 1, 2] {
            assert_eq!(history.resend(seq, now), Some(rtp(seq, 0, 10)), "as sent");
        }
        assert!(history.resend(3, now).is_none(), "never sent");
        assert!(history.resend(6, now).is_none(), "slot of 2, other number");
        assert!(
            history.resend(1, now).is_none(),
            "asked again at once: nothing"
        );
        assert!(
            history.resend(1, now + RESEND_INTERVAL).is_some(),
            "asked again a little later: sent again"
        );
    }

    #[test]
    fn rtx_carries_the_original_sequence_number_ahead_of_the_payload() {
        let mut rtx = RtxStream::new(99, 97);
        let mut original = rtp(40_000, 1234, 3);
        original.header.marker = true;
        let first = rtx.wrap(&original);
        let second = rtx.wrap(&rtp(40_007, 1300, 1));
        assert_eq!(first.header.ssrc, 99);
        assert_eq!(first.header.payload_type, 97);
        assert_eq!(first.header.timestamp, 1234);
        assert!(first.header.marker);
        assert_eq!(&first.payload[..], &[0x9c, 0x40, 0xab, 0xab, 0xab]);
        assert_eq!(&second.payload[..2], &40_007u16.to_be_bytes());
        assert_eq!(
            second.header.sequence_number,
            first.header.sequence_number.wrapping_add(1),
            "its own sequence numbers, one after another"
        );
    }

    #[test]
    fn a_report_counts_packets_and_extrapolates_the_frame_clock() {
        let mut report = SendReport::new(90_000);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        assert!(report.report(1, t0, wall).is_none(), "nothing sent yet");
        report.sent(t0, 1_000, 100);
        report.sent(t0 + Duration::from_millis(5), 1_000, 100);
        report.sent(t0 + Duration::from_millis(33), 4_000, 50);
        let sr = report
            .report(1, t0 + Duration::from_millis(133), wall)
            .expect("report");
        assert_eq!(sr.ssrc, 1);
        assert_eq!(sr.packet_count, 3);
        assert_eq!(sr.octet_count, 250);
        // 100 ms after the frame at 4,000 began: 4,000 + 9,000 ticks of 90 kHz.
        assert!((12_990..=13_010).contains(&sr.rtp_time), "{}", sr.rtp_time);
        assert_eq!(sr.ntp_time, ntp_time(wall));
    }

    #[test]
    fn ntp_time_is_seconds_since_1900_with_a_binary_fraction() {
        let wall = UNIX_EPOCH + Duration::from_millis(1_500);
        let ntp = ntp_time(wall);
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31);
    }

    #[test]
    fn marshal_into_writes_what_rtc_marshals_padding_extensions_and_csrcs_too() {
        use rtc::shared::marshal::Marshal;
        let plain = rtp(1, 2, 101);
        let mut padded = rtp(3, 4, 101);
        padded.header.padding = true;
        let mut extended = rtp(5, 6, 64);
        extended.header.csrc = vec![11, 12];
        extended
            .header
            .set_extension(3, Bytes::from_static(&[1, 2, 3]))
            .expect("extension");
        let mut buf = BytesMut::with_capacity(4);
        for packet in [plain, padded, extended] {
            marshal_into(&packet, &mut buf).expect("marshal");
            assert_eq!(buf, packet.marshal().expect("rtc marshal"));
        }
    }

    #[test]
    fn marshal_into_writes_header_and_payload() {
        let packet = rtp(9, 90, 20);
        let mut bytes = BytesMut::from(&b"left over from the last packet"[..]);
        marshal_into(&packet, &mut bytes).expect("marshal");
        assert_eq!(bytes.len(), 12 + 20);
        assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), 9);
        let mut reader = &bytes[..];
        let parsed = {
            use rtc::shared::marshal::Unmarshal;
            rtp::Packet::unmarshal(&mut reader).expect("parse")
        };
        assert_eq!(parsed, packet);
    }
}
