//! SFU configuration.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// How the SFU binds, announces itself and paces keyframe requests.
#[derive(Clone, Debug)]
pub struct SfuConfig {
    /// UDP sockets bind here; default 127.0.0.1.
    pub bind_ip: IpAddr,
    /// Ports handed out to PeerConnections, one port per PeerConnection today.
    /// Default 40000..=40999.
    pub udp_ports: RangeInclusive<u16>,
    /// One UDP port for every participant (the single-port engine): worker `i` binds
    /// `udp_port + i`. `None` (the default for now) keeps one port per PeerConnection from
    /// `udp_ports`. Port 0 lets the OS choose (tests).
    pub udp_port: Option<u16>,
    /// Media worker threads of the single-port engine (each with its own port). Default 1.
    pub udp_workers: usize,
    /// ICE over TCP (RFC 6544, passive) beside each worker's UDP port, on the same port
    /// number, for clients whose UDP is blocked: at most this many connections per worker
    /// (each is a descriptor). 0 turns it off. Default 256.
    pub ice_tcp_max_conns: usize,
    /// NAT 1:1: announced in ICE candidates instead of `bind_ip`.
    pub public_ip: Option<IpAddr>,
    /// Minimum interval between keyframe requests (PLI) sent to one publisher's track.
    /// Default 500 ms.
    pub pli_min_interval: Duration,
    /// How long a PeerConnection may take to connect after its first offer/answer before
    /// the participant is closed and its media resources released. Default 15 s.
    pub connect_timeout: Duration,
    /// Media (SRTP/SRTCP) that waited longer than this before the single-port engine got
    /// to it — measured from the kernel's receive timestamp — is dropped and counted
    /// ([`crate::SfuStats::shed_packets`]) instead of forwarded late: under overload the
    /// engine sheds the oldest work rather than let latency grow. Default 100 ms.
    pub ingress_max_age: Duration,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_ports: 40000..=40999,
            udp_port: None,
            udp_workers: 1,
            ice_tcp_max_conns: 256,
            public_ip: None,
            pli_min_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
            ingress_max_age: Duration::from_millis(100),
        }
    }
}
