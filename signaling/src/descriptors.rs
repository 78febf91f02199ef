//! The file-descriptor budget: how many connections the process can hold before
//! `accept` would fail with EMFILE.
//!
//! Every TCP connection costs one descriptor, and so does every media socket, every
//! static file being served and the process's own plumbing (listener, epoll, eventfds,
//! stdio). Linux starts processes with a soft `RLIMIT_NOFILE` of 1024; the `sealed`
//! binary raises it to the hard limit at start-up ([`raise_limit`]), and the server
//! then caps connections at what is left after media and files
//! ([`connection_budget`]). Beyond the cap it refuses with HTTP 503 itself — long before
//! the kernel would refuse `accept` and take `/healthz` down with everything else.

use std::io;

/// Descriptors kept for everything that is not a client connection: the listener,
/// tokio's epoll and eventfds, stdio, static files being read, log files, the
/// refused-connection pool ([`crate::accept::REFUSED_SLOTS`]).
pub const RESERVED: usize = 192;

/// The smallest connection cap the server will run with, even when the descriptor
/// budget says less (the server then warns; `accept` may fail and backs off).
pub const MIN_CONNECTIONS: usize = 32;

/// The soft and hard `RLIMIT_NOFILE` before and after [`raise_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit before.
    pub before: u64,
    /// Soft limit now (the hard limit, if raising worked).
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Unprivileged, always allowed.
pub fn raise_limit() -> io::Result<NofileLimit> {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(hard)?;
    Ok(NofileLimit { before, now })
}

/// The soft `RLIMIT_NOFILE` in force, if the platform has one.
pub fn soft_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Descriptors the media plane may hold at most: per worker of the single-port engine
/// one UDP socket, its ICE-TCP listener and connections; else one UDP socket per port
/// of its range.
pub fn media_descriptors(sfu: &sfu::SfuConfig) -> usize {
    match sfu.udp_port {
        Some(_) => {
            let ice_tcp = match sfu.ice_tcp_max_conns {
                0 => 0,
                conns => 1 + conns,
            };
            sfu.udp_workers.max(1) * (1 + ice_tcp)
        }
        None => sfu.udp_ports.clone().count(),
    }
}

/// How many client connections fit in `soft_limit` descriptors next to `media` media
/// sockets and [`RESERVED`] others (at least [`MIN_CONNECTIONS`]).
pub fn connection_budget(soft_limit: u64, media: usize) -> usize {
    let soft = usize::try_from(soft_limit).unwrap_or(usize::MAX);
    soft.saturating_sub(media)
        .saturating_sub(RESERVED)
        .max(MIN_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_media_and_files() {
        assert_eq!(connection_budget(20_000, 1000), 20_000 - 1000 - RESERVED);
        assert_eq!(connection_budget(1024, 0), 1024 - RESERVED);
        // A limit too small for the media range still leaves a few connections.
        assert_eq!(connection_budget(1024, 1000), MIN_CONNECTIONS);
        assert_eq!(
            connection_budget(u64::MAX, 1000),
            usize::MAX - 1000 - RESERVED
        );
    }

    #[test]
    fn media_counts_sockets_and_ice_tcp_connections_per_worker() {
        let engine = sfu::SfuConfig {
            udp_port: Some(40000),
            udp_workers: 2,
            ice_tcp_max_conns: 256,
            ..sfu::SfuConfig::default()
        };
        // Per worker: its UDP socket, its TCP listener and 256 connections.
        assert_eq!(media_descriptors(&engine), 2 * (1 + 1 + 256));
        let udp_only = sfu::SfuConfig {
            ice_tcp_max_conns: 0,
            ..engine.clone()
        };
        assert_eq!(media_descriptors(&udp_only), 2);
        let older = sfu::SfuConfig {
            udp_port: None,
            udp_ports: 40000..=40099,
            ..engine
        };
        assert_eq!(media_descriptors(&older), 100);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let limit = raise_limit().unwrap();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(limit.now, soft);
        assert!(limit.now >= limit.before);
        // Some platforms cap the soft limit below an unlimited hard one.
        assert!(soft == hard || hard == rlimit::INFINITY);
    }
}
