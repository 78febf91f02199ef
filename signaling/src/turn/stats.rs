//! Counters of the embedded TURN server, rendered on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::metrics::metric;

/// Why a TURN request was refused by Sealed's own checks (the crate's protocol errors
/// — bad requests, stale nonces — are not counted here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, expired or wrongly signed credential on an Allocate.
    Credential,
    /// The per-user or total allocation limit was reached.
    Quota,
    /// A permission or channel for a peer other than this node's media addresses.
    Peer,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::Credential, Refusal::Quota, Refusal::Peer];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Credential => "credential",
            Refusal::Quota => "quota",
            Refusal::Peer => "peer",
        }
    }
}

/// Live counters; relaxed atomics, like the rest of `/metrics`.
#[derive(Debug, Default)]
pub struct TurnStats {
    allocations: AtomicU64,
    allocations_total: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    to_peer_bytes: AtomicU64,
    to_peer_packets: AtomicU64,
    from_peer_bytes: AtomicU64,
    from_peer_packets: AtomicU64,
    dropped_packets: AtomicU64,
    stream_connections: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnSnapshot {
    /// Allocations alive now.
    pub allocations: u64,
    /// Allocations ever created.
    pub allocations_total: u64,
    /// Refused for a bad credential.
    pub refused_credential: u64,
    /// Refused for the allocation limits.
    pub refused_quota: u64,
    /// Refused for naming a peer other than the SFU.
    pub refused_peer: u64,
    /// Bytes relayed from clients to the SFU.
    pub to_peer_bytes: u64,
    /// Datagrams relayed from clients to the SFU.
    pub to_peer_packets: u64,
    /// Bytes relayed from the SFU to clients.
    pub from_peer_bytes: u64,
    /// Datagrams relayed from the SFU to clients.
    pub from_peer_packets: u64,
    /// Datagrams dropped: from or to an address that is not the SFU, or for a TCP
    /// client whose queue was full.
    pub dropped_packets: u64,
    /// TURN-over-TCP/TLS connections open now.
    pub stream_connections: u64,
}

impl TurnStats {
    pub(crate) fn allocation_opened(&self) {
        self.allocations.fetch_add(1, Relaxed);
        self.allocations_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn allocation_closed(&self) {
        self.allocations.fetch_sub(1, Relaxed);
    }

    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn relayed_to_peer(&self, bytes: usize) {
        self.to_peer_packets.fetch_add(1, Relaxed);
        self.to_peer_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn relayed_from_peer(&self, bytes: usize) {
        self.from_peer_packets.fetch_add(1, Relaxed);
        self.from_peer_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.dropped_packets.fetch_add(1, Relaxed);
    }

    pub(crate) fn stream_opened(&self) {
        self.stream_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn stream_closed(&self) {
        self.stream_connections.fetch_sub(1, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> TurnSnapshot {
        let refused = |why: Refusal| self.refused[why as usize].load(Relaxed);
        TurnSnapshot {
            allocations: self.allocations.load(Relaxed),
            allocations_total: self.allocations_total.load(Relaxed),
            refused_credential: refused(Refusal::Credential),
            refused_quota: refused(Refusal::Quota),
            refused_peer: refused(Refusal::Peer),
            to_peer_bytes: self.to_peer_bytes.load(Relaxed),
            to_peer_packets: self.to_peer_packets.load(Relaxed),
            from_peer_bytes: self.from_peer_bytes.load(Relaxed),
            from_peer_packets: self.from_peer_packets.load(Relaxed),
            dropped_packets: self.dropped_packets.load(Relaxed),
            stream_connections: self.stream_connections.load(Relaxed),
        }
    }

    /// Appends the `sealed_turn_*` families to a `/metrics` body.
    pub(crate) fn render(&self, out: &mut String) {
        let s = self.snapshot();
        metric(
            out,
            "sealed_turn_allocations",
            "gauge",
            "TURN allocations alive.",
            &[("", s.allocations)],
        );
        metric(
            out,
            "sealed_turn_stream_connections",
            "gauge",
            "TURN-over-TCP/TLS connections open.",
            &[("", s.stream_connections)],
        );
        metric(
            out,
            "sealed_turn_allocations_total",
            "counter",
            "TURN allocations created.",
            &[("", s.allocations_total)],
        );
        let refused: Vec<(String, u64)> = Refusal::ALL
            .iter()
            .map(|r| (format!("reason=\"{}\"", r.as_str()), refused_of(&s, *r)))
            .collect();
        let refused: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            out,
            "sealed_turn_refused_total",
            "counter",
            "TURN requests refused, by reason.",
            &refused,
        );
        let relayed = [
            ("bytes", "Bytes", s.to_peer_bytes, s.from_peer_bytes),
            (
                "packets",
                "Datagrams",
                s.to_peer_packets,
                s.from_peer_packets,
            ),
        ];
        for (unit, what, to_sfu, from_sfu) in relayed {
            metric(
                out,
                &format!("sealed_turn_relayed_{unit}_total"),
                "counter",
                &format!("{what} relayed between TURN clients and the SFU, by direction."),
                &[
                    ("direction=\"to_sfu\"", to_sfu),
                    ("direction=\"from_sfu\"", from_sfu),
                ],
            );
        }
        metric(
            out,
            "sealed_turn_dropped_packets_total",
            "counter",
            "Datagrams the relay dropped (not to or from the SFU, or a full TCP queue).",
            &[("", s.dropped_packets)],
        );
    }
}

fn refused_of(s: &TurnSnapshot, why: Refusal) -> u64 {
    match why {
        Refusal::Credential => s.refused_credential,
        Refusal::Quota => s.refused_quota,
        Refusal::Peer => s.refused_peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let stats = TurnStats::default();
        stats.allocation_opened();
        stats.relayed_to_peer(100);
        stats.relayed_from_peer(40);
        stats.refused(Refusal::Peer);
        let mut out = String::new();
        stats.render(&mut out);
        for line in [
            "sealed_turn_allocations 1",
            "sealed_turn_allocations_total 1",
            "sealed_turn_relayed_bytes_total{direction=\"to_sfu\"} 100",
            "sealed_turn_relayed_bytes_total{direction=\"from_sfu\"} 40",
            "sealed_turn_refused_total{reason=\"peer\"} 1",
            "sealed_turn_refused_total{reason=\"quota\"} 0",
            "# TYPE sealed_turn_relayed_bytes_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
