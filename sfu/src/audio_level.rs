//! RFC 6464 audio levels → active speakers, without touching payloads.
//!
//! Publishers' audio packets carry a one-byte header extension
//! (`urn:ietf:params:rtp-hdrext:ssrc-audio-level`): a voice-activity bit and the level in
//! −dBov (0 = loudest, 127 = silence). Each audio receiver accumulates levels lock-free
//! ([`LevelMeter`]); a room task samples the meters a few times a second and feeds
//! [`ActiveSpeakers`], which reports the speaking set only when it changes.

use crate::ParticipantId;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The RFC 6464 header extension URI.
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Mean level (−dBov) at or below which an interval counts as speech. Speech typically sits
/// at −20…−40 dBov; background noise and DTX comfort noise well below −50.
const SPEAKING_LEVEL: u32 = 50;
/// Intervals a participant stays "speaking" after its last loud interval, so short pauses
/// between words do not flicker the indicator.
const HOLD_INTERVALS: u8 = 2;

/// The level (−dBov, 0..=127) from an RFC 6464 extension body, or `None` if malformed.
pub(crate) fn parse_level(ext: &[u8]) -> Option<u8> {
    // One-byte form: V(1) | level(7). The two-byte header form may pad; only byte 0 counts.
    ext.first().map(|b| b & 0x7f)
}

/// The extension id an SDP assigns to `uri` (`a=extmap:<id>[/direction] <uri>`), if any.
pub(crate) fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim_end().strip_prefix("a=extmap:")?;
        let (id, value) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        (value.split_whitespace().next()? == uri)
            .then(|| id.parse::<u8>().ok())
            .flatten()
    })
}

/// Lock-free accumulator of one audio track's levels between two samples.
#[derive(Debug, Default)]
pub(crate) struct LevelMeter {
    /// High 32 bits: packet count; low 32 bits: sum of levels. One atomic so a sample never
    /// sees a sum without its count.
    packed: AtomicU64,
}

impl LevelMeter {
    /// Records one packet's level (hot path: one atomic add).
    pub fn record(&self, level: u8) {
        self.packed.fetch_add((1 << 32) | u64::from(level), Relaxed);
    }

    /// Takes (count, sum) accumulated since the last call.
    pub fn take(&self) -> (u32, u32) {
        let v = self.packed.swap(0, Relaxed);
        ((v >> 32) as u32, v as u32)
    }
}

/// Decides the room's speaking set from per-interval level means.
#[derive(Debug, Default)]
pub(crate) struct ActiveSpeakers {
    /// Participants currently considered speaking: (id, intervals of hold left, mean level
    /// of their last loud interval).
    speaking: Vec<(ParticipantId, u8, u32)>,
    last_reported: Vec<ParticipantId>,
}

impl ActiveSpeakers {
    /// Feeds one interval: `(participant, packet count, sum of levels)` for each audio track
    /// (a participant may appear more than once). Returns the new speaking set, loudest
    /// first, if it differs from the last one returned.
    pub fn update(&mut self, samples: &[(ParticipantId, u32, u32)]) -> Option<Vec<ParticipantId>> {
        for entry in &mut self.speaking {
            entry.1 = entry.1.saturating_sub(1);
        }
        for &(id, count, sum) in samples {
            if count == 0 {
                continue;
            }
            let mean = sum / count;
            if mean > SPEAKING_LEVEL {
                continue;
            }
            match self.speaking.iter_mut().find(|e| e.0 == id) {
                // Several tracks of one participant: keep the loudest of this interval.
                Some(entry) if entry.1 == HOLD_INTERVALS => entry.2 = entry.2.min(mean),
                Some(entry) => *entry = (id, HOLD_INTERVALS, mean),
                None => self.speaking.push((id, HOLD_INTERVALS, mean)),
            }
        }
        self.speaking.retain(|e| e.1 > 0);
        let mut order = self.speaking.clone();
        order.sort_by_key(|e| (e.2, e.0));
        let ids: Vec<ParticipantId> = order.into_iter().map(|e| e.0).collect();
        if ids == self.last_reported {
            return None;
        }
        self.last_reported.clone_from(&ids);
        Some(ids)
    }

    /// Forgets a participant (it left); the next update reports the change.
    pub fn remove(&mut self, id: ParticipantId) {
        self.speaking.retain(|e| e.0 != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_level_and_ignores_vad_bit() {
        assert_eq!(parse_level(&[0x80 | 30]), Some(30));
        assert_eq!(parse_level(&[127]), Some(127));
        assert_eq!(parse_level(&[]), None);
    }

    #[test]
    fn finds_extmap_id() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
                   a=extmap:1/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(extmap_id(sdp, AUDIO_LEVEL_URI), Some(1));
        assert_eq!(extmap_id(sdp, "urn:nope"), None);
        assert_eq!(
            extmap_id(
                "a=extmap:x urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                AUDIO_LEVEL_URI
            ),
            None
        );
    }

    #[test]
    fn meter_accumulates_and_resets() {
        let m = LevelMeter::default();
        m.record(20);
        m.record(40);
        assert_eq!(m.take(), (2, 60));
        assert_eq!(m.take(), (0, 0));
    }

    #[test]
    fn reports_speakers_loudest_first_only_on_change() {
        let mut a = ActiveSpeakers::default();
        // 1 speaks at -30 dBov, 2 at -20 (louder), 3 is silent.
        let s = [(1, 10, 300), (2, 10, 200), (3, 10, 1270)];
        assert_eq!(a.update(&s), Some(vec![2, 1]));
        assert_eq!(a.update(&s), None, "unchanged: no event");
        // 2 goes quiet: held for HOLD_INTERVALS, then dropped.
        let s2 = [(1, 10, 300), (2, 10, 1270)];
        let mut changes = vec![];
        for _ in 0..4 {
            if let Some(ids) = a.update(&s2) {
                changes.push(ids);
            }
        }
        assert_eq!(changes.last(), Some(&vec![1]));
        // Nobody sends (DTX / muted): eventually empty.
        let mut last = None;
        for _ in 0..4 {
            if let Some(ids) = a.update(&[]) {
                last = Some(ids);
            }
        }
        assert_eq!(last, Some(vec![]));
    }

    #[test]
    fn removed_participant_disappears() {
        let mut a = ActiveSpeakers::default();
        assert_eq!(a.update(&[(5, 5, 50)]), Some(vec![5]));
        a.remove(5);
        assert_eq!(a.update(&[]), Some(vec![]));
    }
}
