//! What a publish offer still sends: `rtc` emits no event when a client stops sending a
//! track (the m-line turns `inactive` or `recvonly`, or its msid disappears), so the
//! worker compares each offer's sending tracks with what the client published.

use std::collections::HashSet;

/// The msid track ids of every media section of `sdp` that sends (direction `sendrecv`
/// or `sendonly`, port not 0).
pub(crate) fn sending_track_ids(sdp: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut section: Option<Section> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if let Some(done) = section.take() {
                done.collect_into(&mut ids);
            }
            let rejected = m.split(' ').nth(1) == Some("0");
            section = Some(Section {
                rejected,
                sends: true,
                tracks: Vec::new(),
            });
            continue;
        }
        let Some(current) = section.as_mut() else {
            continue;
        };
        match line {
            "a=recvonly" | "a=inactive" => current.sends = false,
            "a=sendrecv" | "a=sendonly" => current.sends = true,
            _ => {
                if let Some(msid) = line.strip_prefix("a=msid:") {
                    current.push_msid(msid);
                } else if let Some(ssrc) = line.strip_prefix("a=ssrc:")
                    && let Some((_, attr)) = ssrc.split_once(' ')
                    && let Some(msid) = attr.strip_prefix("msid:")
                {
                    current.push_msid(msid);
                }
            }
        }
    }
    if let Some(done) = section {
        done.collect_into(&mut ids);
    }
    ids
}

struct Section {
    rejected: bool,
    sends: bool,
    tracks: Vec<String>,
}

impl Section {
    fn push_msid(&mut self, msid: &str) {
        if let Some(track) = msid.split_whitespace().nth(1) {
            self.tracks.push(track.to_owned());
        }
    }

    fn collect_into(self, ids: &mut HashSet<String>) {
        if self.sends && !self.rejected {
            ids.extend(self.tracks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=msid:s a1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendrecv\r\na=ssrc:5 msid:s v1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\na=msid:s v2\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=sendonly\r\na=msid:s v3\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:4\r\na=msid:s a4\r\n";

    #[test]
    fn sending_sections_count_inactive_rejected_and_recvonly_do_not() {
        let ids = sending_track_ids(OFFER);
        let mut ids: Vec<_> = ids.into_iter().collect();
        ids.sort();
        assert_eq!(ids, ["a1", "a4", "v1"]);
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(sending_track_ids("a=msid:x y\r\nnonsense").is_empty());
        assert!(sending_track_ids("m=audio\r\na=msid:\r\na=ssrc:1").is_empty());
    }
}
