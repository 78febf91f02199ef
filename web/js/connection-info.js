// Which network path the meeting's media takes, and what to say when none works.
//
// The path comes from the selected ICE candidate pair in getStats(): a local
// candidate of type "relay" means the media goes through the server's TURN relay
// (its relayProtocol says how we reach the relay: udp, tcp or tls); otherwise it
// goes straight to the media server, over UDP or over ICE-TCP. Media is end-to-end
// encrypted on every path; the path only changes speed and reachability.

/** What each path is called in the connection details. */
export const PATH_LABELS = Object.freeze({
  'direct-udp': 'Direct (UDP)',
  'direct-tcp': 'Direct (TCP)',
  'relay-udp': 'Relayed by the server (TURN over UDP)',
  'relay-tcp': 'Relayed by the server (TURN over TCP)',
  'relay-tls': 'Relayed by the server (TURN over TLS)',
});

/** The path kind ('direct-udp', 'relay-tls', …) of a local candidate's stats. */
export function pathKind(localCandidate) {
  if (!localCandidate) return null;
  if (localCandidate.candidateType === 'relay') {
    const via = String(localCandidate.relayProtocol ?? 'udp').toLowerCase();
    return ['udp', 'tcp', 'tls'].includes(via) ? `relay-${via}` : 'relay-udp';
  }
  return String(localCandidate.protocol ?? 'udp').toLowerCase() === 'tcp' ? 'direct-tcp' : 'direct-udp';
}

/**
 * The selected candidate pair of a stats report (a Map of id → stats, as
 * RTCStatsReport is): `{ kind, label, local, remote }`, or null while none is
 * selected. Chromium names the pair on the transport stats; Firefox marks the
 * pair itself (`selected`).
 */
export function selectedPath(report) {
  let pair = null;
  for (const s of report.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) ?? pair;
  }
  if (!pair) {
    for (const s of report.values()) {
      if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
    }
  }
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  const kind = pathKind(local);
  if (!kind) return null;
  return {
    kind,
    label: PATH_LABELS[kind],
    local: local ? { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol ?? null } : null,
    remote: remote ? { type: remote.candidateType, protocol: remote.protocol } : null,
  };
}

/** The path a PeerConnection uses now, or null. */
export async function peerPath(pc) {
  if (!pc) return null;
  const report = await pc.getStats().catch(() => null);
  return report ? selectedPath(report) : null;
}

/** One line for the connection details: both directions, or one if they agree. */
export function describePaths({ publish, subscribe }) {
  const known = [publish, subscribe].filter(Boolean);
  if (known.length === 0) return 'Connecting…';
  if (!publish || !subscribe || publish.kind === subscribe.kind) return known[0].label;
  return `Sending: ${publish.label}. Receiving: ${subscribe.label}.`;
}

/**
 * What to tell a person whose media connection could not be established.
 * `relayOffered`: the server gave us TURN servers (so even the relay failed).
 */
export function failureMessage({ relayOffered }) {
  const first =
    'Your browser could not open a media connection to the meeting server, so nobody can see or hear you ' +
    'and you cannot see or hear them.';
  const why = relayOffered
    ? ' Direct connections and the server’s relay (UDP, TCP and TLS) were all blocked: this network — often a ' +
      'company, school or hotel network, or a VPN — lets no real-time media through.'
    : ' This network seems to block the direct connection (UDP), and this server offers no relay.';
  const what =
    ' Try another network (for example your phone’s hotspot), or ask the network’s administrator to allow ' +
    'connections to this server.';
  return first + why + what;
}

/** The "Connection" section of the meeting sidebar (or of `container`, whatever holds it). */
export class ConnectionPanel {
  constructor(container) {
    this.section = document.createElement('section');
    this.section.className = 'connection';
    this.section.setAttribute('aria-labelledby', 'connection-title');
    const title = document.createElement('h2');
    title.id = 'connection-title';
    title.textContent = 'Connection';
    const facts = document.createElement('dl');
    facts.className = 'security-facts';
    const term = document.createElement('dt');
    term.textContent = 'Media path';
    this.path = document.createElement('dd');
    this.path.id = 'media-path';
    this.path.textContent = 'Connecting…';
    facts.append(term, this.path);
    this.section.append(title, facts);
    (container ?? document.body).append(this.section);
  }

  /** Shows the paths `{ publish, subscribe }` (each from selectedPath, or null). */
  show(paths) {
    this.path.textContent = describePaths(paths);
    this.path.dataset.path = paths.subscribe?.kind ?? paths.publish?.kind ?? '';
  }
}
