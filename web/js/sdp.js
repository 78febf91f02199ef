// The little the page reads out of session descriptions.
//
// Every track in Sealed is named by its SDP `msid` (`a=msid:<stream id> <track id>`):
// the SFU announces a publisher's track with the track id the publisher's offer
// gave it (`track_published.track_id`), and offers it to subscribers as
// `a=msid:<publisher id> <track id>`. Browsers do not promise that a
// MediaStreamTrack's `id` equals that msid track id (a replaced track never
// does), so the page maps media sections (`mid`) to msids itself.

/**
 * The msid of every media section of `sdp`, by mid: `Map(mid → {stream, track})`.
 * Sections without a mid or an msid are left out.
 */
export function msidsByMid(sdp) {
  const result = new Map();
  for (const lines of mediaSections(sdp)) {
    let mid = null;
    let msid = null;
    for (const line of lines) {
      if (line.startsWith('a=mid:')) mid = line.slice('a=mid:'.length).trim();
      else if (line.startsWith('a=msid:') && msid === null) {
        const [stream, track] = line.slice('a=msid:'.length).trim().split(/\s+/);
        if (stream && track) msid = { stream, track };
      }
    }
    if (mid !== null && msid !== null) result.set(mid, msid);
  }
  return result;
}

/** One line per media section: "mid kind direction ssrcs", for diagnostics. */
export function sectionSummary(sdp) {
  return mediaSections(sdp).map((lines) => {
    const mid = lines.find((l) => l.startsWith('a=mid:'))?.slice(6) ?? '?';
    const dir = lines.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) ?? '?';
    const ssrcs = [...new Set(lines.filter((l) => l.startsWith('a=ssrc:')).map((l) => l.split(/[: ]/)[1]))];
    return `${mid} ${lines[0].split(' ')[0]} ${dir} ${ssrcs.join(',')}`;
  });
}

/** The lines of each media section of `sdp`, the first being its m-line without "m=". */
function mediaSections(sdp) {
  return (sdp ?? '')
    .split(/\r?\nm=/)
    .slice(1)
    .map((section) => section.split(/\r?\n/));
}
