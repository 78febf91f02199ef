//! Counters for `GET /metrics`, in the Prometheus text exposition format.
//!
//! Signaling counts what it sees (connections, messages by type, errors by code,
//! rooms and participants of its registry); the media numbers come from
//! [`sfu::Sfu::stats`]. Everything is a relaxed atomic: a scrape may see counters a
//! few increments apart, which Prometheus does not care about. No label ever carries a
//! room name, a display name or anything a client chose.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use sfu::SfuStats;

use crate::error::ErrorCode;
use crate::protocol::ClientMessageType;

/// Live counters of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    messages: [AtomicU64; ClientMessageType::ALL.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    rate_limited_drops: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    accept_errors: AtomicU64,
    header_timeouts: AtomicU64,
}

/// A room/participant count from the registry, taken at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegistryCounts {
    /// Rooms with at least one participant.
    pub rooms: usize,
    /// Joined participants.
    pub participants: usize,
    /// Open TCP connections (HTTP, WebSocket or silent).
    pub tcp_connections: usize,
    /// The connection cap in force.
    pub connection_cap: usize,
}

impl Metrics {
    /// A WebSocket connection was accepted.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// A WebSocket connection ended.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// `accept` failed (e.g. out of descriptors).
    pub(crate) fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// A connection was closed for not sending a request head in time.
    pub(crate) fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Relaxed);
    }

    /// A connection or upgrade was refused (connection cap, per-address limit,
    /// origin).
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// Open WebSocket connections right now.
    pub fn open_connections(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// A well-formed message of this type arrived.
    pub(crate) fn message(&self, kind: ClientMessageType) {
        self.messages[kind.index()].fetch_add(1, Relaxed);
    }

    /// An `error` with this code was sent.
    pub(crate) fn error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Relaxed);
    }

    /// A message was dropped by the rate limiter.
    pub(crate) fn rate_limited_drop(&self) {
        self.rate_limited_drops.fetch_add(1, Relaxed);
    }

    /// A client was disconnected because its outbound queue was full.
    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Relaxed);
    }

    /// Renders every counter as Prometheus text.
    pub fn render(&self, registry: RegistryCounts, sfu: SfuStats) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, value: u64| {
            metric(&mut out, name, "gauge", help, &[("", value)]);
        };
        gauge(
            "sealed_rooms",
            "Rooms with at least one joined participant.",
            registry.rooms as u64,
        );
        gauge(
            "sealed_participants",
            "Joined participants.",
            registry.participants as u64,
        );
        gauge(
            "sealed_connections",
            "Open WebSocket connections, joined or not.",
            self.connections_open.load(Relaxed),
        );
        gauge(
            "sealed_tcp_connections",
            "Open TCP connections (HTTP, WebSocket or not yet speaking), as counted against the cap.",
            registry.tcp_connections as u64,
        );
        gauge(
            "sealed_connection_cap",
            "Most TCP connections served at once (after the descriptor budget).",
            registry.connection_cap as u64,
        );
        gauge("sealed_sfu_rooms", "Rooms in the media plane.", sfu.rooms);
        gauge(
            "sealed_sfu_participants",
            "Participants in the media plane.",
            sfu.participants,
        );
        gauge(
            "sealed_sfu_tracks",
            "Published tracks being forwarded.",
            sfu.tracks,
        );

        let counters: [(&str, &str, u64); 12] = [
            (
                "sealed_connections_total",
                "WebSocket connections accepted.",
                self.connections_total.load(Relaxed),
            ),
            (
                "sealed_connections_refused_total",
                "Connections and WebSocket upgrades refused (connection cap, per-address limit, origin).",
                self.connections_refused.load(Relaxed),
            ),
            (
                "sealed_accept_errors_total",
                "Failed accept calls (e.g. out of file descriptors).",
                self.accept_errors.load(Relaxed),
            ),
            (
                "sealed_header_timeouts_total",
                "Connections closed for not sending a request head in time.",
                self.header_timeouts.load(Relaxed),
            ),
            (
                "sealed_rate_limited_messages_total",
                "Client messages dropped by the per-connection rate limit.",
                self.rate_limited_drops.load(Relaxed),
            ),
            (
                "sealed_slow_consumer_disconnects_total",
                "Clients disconnected because they did not read their messages.",
                self.slow_consumer_disconnects.load(Relaxed),
            ),
            (
                "sealed_sfu_forwarded_packets_total",
                "RTP packets forwarded to subscribers.",
                sfu.forwarded_packets,
            ),
            (
                "sealed_sfu_forwarded_bytes_total",
                "RTP payload bytes forwarded to subscribers.",
                sfu.forwarded_bytes,
            ),
            (
                "sealed_sfu_dropped_packets_total",
                "RTP packets dropped by the media plane.",
                sfu.dropped_packets,
            ),
            (
                "sealed_sfu_keyframe_requests_total",
                "Keyframe requests (PLI) sent to publishers.",
                sfu.keyframe_requests,
            ),
            (
                "sealed_sfu_retransmitted_packets_total",
                "RTP packets sent again on a subscriber's NACK.",
                sfu.retransmitted_packets,
            ),
            (
                "sealed_sfu_shed_packets_total",
                "Received media packets dropped for waiting too long (overload).",
                sfu.shed_packets,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut out, name, "counter", help, &[("", value)]);
        }

        let messages: Vec<(String, u64)> = ClientMessageType::ALL
            .iter()
            .map(|t| {
                (
                    format!("type=\"{}\"", t.as_str()),
                    self.messages[t.index()].load(Relaxed),
                )
            })
            .collect();
        metric_labeled(
            &mut out,
            "sealed_messages_received_total",
            "Well-formed client messages, by type.",
            &messages,
        );
        let errors: Vec<(String, u64)> = ErrorCode::ALL
            .iter()
            .map(|c| {
                (
                    format!("code=\"{}\"", c.as_str()),
                    self.errors[c.index()].load(Relaxed),
                )
            })
            .collect();
        metric_labeled(
            &mut out,
            "sealed_errors_total",
            "Error messages sent to clients, by code.",
            &errors,
        );
        out
    }
}

/// Writes one metric family (`# HELP`, `# TYPE`, samples) to `out`.
pub(crate) fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(&str, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn metric_labeled(out: &mut String, name: &str, help: &str, samples: &[(String, u64)]) {
    let samples: Vec<(&str, u64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(out, name, "counter", help, &samples);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_family_and_counts() {
        let m = Metrics::default();
        m.connection_opened();
        m.message(ClientMessageType::E2ee);
        m.message(ClientMessageType::E2ee);
        m.error(ErrorCode::BadJson);
        let text = m.render(
            RegistryCounts {
                rooms: 2,
                participants: 5,
                tcp_connections: 3,
                connection_cap: 9,
            },
            SfuStats {
                forwarded_packets: 77,
                ..SfuStats::default()
            },
        );
        for line in [
            "sealed_rooms 2",
            "sealed_participants 5",
            "sealed_connections 1",
            "sealed_tcp_connections 3",
            "sealed_connection_cap 9",
            "sealed_connections_total 1",
            "sealed_sfu_forwarded_packets_total 77",
            "sealed_messages_received_total{type=\"e2ee\"} 2",
            "sealed_messages_received_total{type=\"join\"} 0",
            "sealed_errors_total{code=\"bad_json\"} 1",
            "sealed_errors_total{code=\"internal\"} 0",
            "# TYPE sealed_errors_total counter",
            "# TYPE sealed_rooms gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Each family's TYPE line appears exactly once.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, 8 + 12 + 2);
    }
}
