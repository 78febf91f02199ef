//! Media the native participant makes and checks: synthetic VP8-shaped frames, the VP8
//! RTP payload descriptor (RFC 7741), a frame assembler, tones and tone detection.
//!
//! Synthetic video frames look like VP8 to anything that parses the uncompressed data
//! chunk (frame tag, and on keyframes the start code and dimensions), which is all the E2EE
//! clear-prefix logic reads. Their body carries a plaintext marker, who sent it, a frame
//! number, a send timestamp and a checksum, so a receiver can verify every byte.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Marker at the start of every synthetic frame body; must never appear in what the SFU
/// forwards when E2EE is on.
pub const PLAINTEXT_MARKER: &[u8; 12] = b"SEALED-PLAIN";

/// Bytes of a synthetic body before the filler: marker, sender, frame number, send time.
const BODY_HEADER: usize = 12 + 8 + 8 + 8;

/// The largest payload of one RTP packet we produce (fits an Ethernet MTU with headers).
pub const MAX_RTP_PAYLOAD: usize = 1_100;

/// 64-bit FNV-1a, the checksum of synthetic bodies.
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a synthetic body says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyInfo {
    /// Who made it.
    pub sender: u64,
    /// Frame number within its track.
    pub frame_no: u64,
    /// Sender's clock (µs since the Unix epoch) when it was made.
    pub sent_at_us: u64,
}

/// A synthetic body of `len` bytes (at least the header and checksum): marker, sender,
/// frame number, send time, deterministic filler, 8-byte checksum.
pub fn synthetic_body(info: BodyInfo, len: usize) -> Vec<u8> {
    let len = len.max(BODY_HEADER + 8);
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(PLAINTEXT_MARKER);
    b.extend_from_slice(&info.sender.to_be_bytes());
    b.extend_from_slice(&info.frame_no.to_be_bytes());
    b.extend_from_slice(&info.sent_at_us.to_be_bytes());
    let mut x = info.frame_no ^ info.sender.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    while b.len() < len - 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.push(x as u8);
    }
    let sum = fnv1a64(&b);
    b.extend_from_slice(&sum.to_be_bytes());
    b
}

/// Checks a synthetic body; `None` if the marker or checksum is wrong.
pub fn check_body(b: &[u8]) -> Option<BodyInfo> {
    if b.len() < BODY_HEADER + 8 || !b.starts_with(PLAINTEXT_MARKER) {
        return None;
    }
    let (data, sum) = b.split_at(b.len() - 8);
    if fnv1a64(data).to_be_bytes() != sum {
        return None;
    }
    let u = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    Some(BodyInfo {
        sender: u(12),
        frame_no: u(20),
        sent_at_us: u(28),
    })
}

/// A VP8-shaped frame: the uncompressed data chunk of RFC 6386 §9.1 then a synthetic body.
/// Keyframes have the 10-byte header (tag, start code, 640×360), others the 3-byte tag.
pub fn synthetic_vp8_frame(keyframe: bool, info: BodyInfo, body_len: usize) -> Vec<u8> {
    let body = synthetic_body(info, body_len);
    // First partition size: claim the whole body (19 bits).
    let part = (body.len() as u32) & 0x7_ffff;
    // bit 0: frame type (0 = key), bits 1-3: version 0, bit 4: show_frame.
    let tag = (if keyframe { 0 } else { 1 }) | (1 << 4) | (part << 5);
    let mut f = Vec::with_capacity(body.len() + 10);
    f.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        f.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        f.extend_from_slice(&640u16.to_le_bytes());
        f.extend_from_slice(&360u16.to_le_bytes());
    }
    f.extend_from_slice(&body);
    f
}

/// Whether a (decrypted) VP8 frame is a keyframe, per its frame tag.
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// The synthetic body of a VP8-shaped frame, after its uncompressed data chunk.
pub fn vp8_body(frame: &[u8]) -> Option<&[u8]> {
    let skip = if vp8_is_keyframe(frame) { 10 } else { 3 };
    frame.get(skip..)
}

/// Splits an (encrypted) VP8 frame into RTP payloads, each with a VP8 payload descriptor
/// carrying a 15-bit picture id (as browsers send): `X=1, S` on the first packet, `I=1, M=1`.
pub fn vp8_packetize(frame: &[u8], picture_id: u16) -> Vec<Vec<u8>> {
    let chunk = MAX_RTP_PAYLOAD - 4;
    let pid = picture_id & 0x7fff;
    frame
        .chunks(chunk.max(1))
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::with_capacity(c.len() + 4);
            p.push(if i == 0 { 0x90 } else { 0x80 });
            p.push(0x80);
            p.push(0x80 | (pid >> 8) as u8);
            p.push(pid as u8);
            p.extend_from_slice(c);
            p
        })
        .collect()
}

/// Parses a VP8 payload descriptor; returns (start of partition, descriptor length).
pub fn vp8_descriptor(payload: &[u8]) -> Option<(bool, usize)> {
    let b0 = *payload.first()?;
    let start = b0 & 0x10 != 0;
    let mut n = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        n = 2;
        if x & 0x80 != 0 {
            // I: picture id, 7 or 15 bits.
            let m = *payload.get(n)?;
            n += if m & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            n += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            n += 1; // T/K: TID/KEYIDX
        }
    }
    (payload.len() >= n).then_some((start, n))
}

/// Rebuilds frames from RTP packets of one track: packets sharing a timestamp, the last one
/// with the marker bit. A frame with a missing packet is reported as lost, never returned
/// corrupted.
#[derive(Default)]
pub struct FrameAssembler {
    current: Option<u32>,
    parts: BTreeMap<u16, Vec<u8>>,
    first_seq: Option<u16>,
    /// Frames given up on because a packet was missing.
    pub incomplete: u64,
}

impl FrameAssembler {
    /// Feeds one packet (`payload` with its VP8 descriptor); returns a complete frame
    /// (descriptors removed) when the marker packet completes it.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let (start, n) = vp8_descriptor(payload)?;
        if self.current != Some(timestamp) {
            if !self.parts.is_empty() {
                self.incomplete += 1;
            }
            self.parts.clear();
            self.first_seq = None;
            self.current = Some(timestamp);
        }
        if start {
            self.first_seq = Some(seq);
        }
        self.parts.insert(seq, payload[n..].to_vec());
        if !marker {
            return None;
        }
        let first = self.first_seq?;
        let count = seq.wrapping_sub(first) as usize + 1;
        // Sequence numbers may wrap within a frame, so walk them rather than the map order.
        let mut frame = Vec::new();
        for i in 0..count {
            match self.parts.get(&first.wrapping_add(i as u16)) {
                Some(p) => frame.extend_from_slice(p),
                None => {
                    self.incomplete += 1;
                    self.parts.clear();
                    self.current = None;
                    return None;
                }
            }
        }
        self.parts.clear();
        self.current = None;
        Some(frame)
    }
}

/// `n` samples of a sine tone at `freq` Hz, amplitude `amp` (0..1), starting at sample
/// index `start` of a continuous tone at `rate` Hz.
pub fn tone(freq: f32, rate: u32, amp: f32, start: u64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (start + i as u64) as f64 / f64::from(rate);
            let v = (2.0 * std::f64::consts::PI * f64::from(freq) * t).sin() * f64::from(amp);
            (v * f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// Checks that the last second of `pcm` (48 kHz) is sender `j`'s tone (`tones[j]`
/// clearly present) and carries none of the others' tones; the error says what was
/// heard instead.
pub fn check_last_second_is_tone(pcm: &[i16], tones: &[f32], j: usize) -> Result<(), String> {
    let tail = &pcm[pcm.len().saturating_sub(48_000)..];
    if tail.len() < 24_000 {
        return Err(format!("decoded only {} samples", tail.len()));
    }
    let own = goertzel(tail, 48_000, tones[j]);
    if own <= 0.5 {
        return Err(format!("its {} Hz tone at only {own:.2}", tones[j]));
    }
    for (k, f) in tones.iter().enumerate().filter(|(k, _)| *k != j) {
        let p = goertzel(tail, 48_000, *f);
        if p >= 0.05 {
            return Err(format!("{f} Hz (sender {k}) in its audio at {p:.2}"));
        }
    }
    Ok(())
}

/// Relative power of `freq` in `samples` (Goertzel), normalised to the signal's energy:
/// near 1 for a pure tone at `freq`, near 0 for unrelated content.
pub fn goertzel(samples: &[i16], rate: u32, freq: f32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let n = samples.len() as f64;
    let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &x in samples {
        let x = f64::from(x) / 32768.0;
        energy += x * x;
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        // A pure sine of energy E gives power ≈ E·N/2.
        power / (energy * n / 2.0)
    }
}

/// Wall-clock microseconds since the Unix epoch, for `sent_at_us` stamps: sender and
/// receiver share this machine's clock, so their difference is the one-way latency.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: u64) -> BodyInfo {
        BodyInfo {
            sender: 7,
            frame_no: n,
            sent_at_us: 1_000_000 + n,
        }
    }

    #[test]
    fn bodies_check_and_detect_corruption() {
        let mut b = synthetic_body(info(3), 500);
        assert_eq!(b.len(), 500);
        assert_eq!(check_body(&b), Some(info(3)));
        b[100] ^= 1;
        assert_eq!(check_body(&b), None);
    }

    #[test]
    fn vp8_frames_have_the_right_header() {
        let k = synthetic_vp8_frame(true, info(0), 300);
        assert!(vp8_is_keyframe(&k));
        assert_eq!(&k[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(check_body(vp8_body(&k).unwrap()), Some(info(0)));
        let d = synthetic_vp8_frame(false, info(1), 300);
        assert!(!vp8_is_keyframe(&d));
        assert_eq!(check_body(vp8_body(&d).unwrap()), Some(info(1)));
    }

    #[test]
    fn packetize_and_reassemble_across_sequence_wrap() {
        let frame = synthetic_vp8_frame(true, info(9), 5000);
        let packets = vp8_packetize(&frame, 0x1234);
        assert!(packets.len() > 1);
        assert!(packets.iter().all(|p| p.len() <= MAX_RTP_PAYLOAD));
        let mut a = FrameAssembler::default();
        let n = packets.len();
        let mut out = None;
        for (i, p) in packets.iter().enumerate() {
            let seq = 65534u16.wrapping_add(i as u16);
            out = a.push(seq, 90_000, i == n - 1, p);
        }
        assert_eq!(out.as_deref(), Some(&frame[..]));
    }

    #[test]
    fn a_missing_packet_loses_the_frame() {
        let frame = synthetic_vp8_frame(false, info(2), 3000);
        let packets = vp8_packetize(&frame, 1);
        let mut a = FrameAssembler::default();
        let n = packets.len();
        let mut out = None;
        for (i, p) in packets.iter().enumerate().filter(|(i, _)| *i != 1) {
            out = a.push(i as u16, 1, i == n - 1, p);
        }
        assert!(out.is_none());
        assert_eq!(a.incomplete, 1);
    }

    #[test]
    fn goertzel_finds_its_tone() {
        let s = tone(440.0, 48_000, 0.5, 0, 4800);
        assert!(goertzel(&s, 48_000, 440.0) > 0.8);
        assert!(goertzel(&s, 48_000, 660.0) < 0.05);
    }
}
