//! Where relayed traffic may go: this node's own media sockets, nowhere else.
//!
//! An open relay (any peer the client names) would let anyone who joins a meeting use
//! the server to send UDP anywhere, from our address. The embedded TURN server exists
//! only so that a client which cannot reach the SFU directly can reach it through us,
//! so the only allowed peers are the SFU's media addresses, taken from the SFU's own
//! configuration by [`MediaPeers::from_sfu`] — the one place that has to follow the
//! SFU when its socket layout changes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

/// The SFU's media addresses as clients see them (the IPs it announces in ICE
/// candidates, the UDP ports it listens on), and the local IP to reach them on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPeers {
    /// IPs the SFU announces (its bind address, and its public address behind 1:1 NAT).
    announced: Vec<IpAddr>,
    /// The IP the SFU's sockets are bound to: where relayed packets really go, so that
    /// a relay never depends on the NAT hairpinning the public address back to us.
    local: IpAddr,
    /// UDP ports the SFU's media sockets use.
    ports: Vec<RangeInclusive<u16>>,
}

impl MediaPeers {
    /// The media addresses of an SFU with this configuration, running with the
    /// single-port engine's sockets `media_addrs` ([`sfu::Sfu::media_addrs`]).
    ///
    /// With the single-port engine: the workers' real ports (read from the running SFU,
    /// so an OS-chosen port is covered); otherwise every port of `udp_ports` (one per
    /// PeerConnection). Both on `bind_ip` and `public_ip`.
    pub fn from_sfu(config: &sfu::SfuConfig, media_addrs: &[SocketAddr]) -> Self {
        let local = if config.bind_ip.is_unspecified() {
            // A wildcard-bound SFU is reached on loopback from this host.
            match config.bind_ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            }
        } else {
            config.bind_ip
        };
        let mut announced = vec![local];
        if let Some(public) = config.public_ip
            && public != local
        {
            announced.push(public);
        }
        MediaPeers {
            announced,
            local,
            ports: if media_addrs.is_empty() {
                vec![config.udp_ports.clone()]
            } else {
                media_addrs.iter().map(|a| a.port()..=a.port()).collect()
            },
        }
    }

    /// The local IP relay sockets bind to (same interface as the SFU).
    pub fn local_ip(&self) -> IpAddr {
        self.local
    }

    /// Whether `peer` is one of the SFU's media addresses.
    pub fn allows(&self, peer: SocketAddr) -> bool {
        self.announced.contains(&peer.ip()) && self.ports.iter().any(|r| r.contains(&peer.port()))
    }

    /// Where to send a packet a client addressed to `peer`: the same port on the SFU's
    /// local IP; `None` if `peer` is not allowed.
    pub fn to_local(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.allows(peer)
            .then(|| SocketAddr::new(self.local, peer.port()))
    }

    /// The address a client knows a packet from `local` by (the announced IP, which is
    /// what its permission names); `None` if `local` is not an SFU media socket.
    pub fn from_local(&self, local: SocketAddr) -> Option<SocketAddr> {
        let announced = *self.announced.last()?;
        let peer = SocketAddr::new(announced, local.port());
        (local.ip() == self.local && self.allows(peer)).then_some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sfu(bind: &str, public: Option<&str>) -> sfu::SfuConfig {
        sfu::SfuConfig {
            bind_ip: bind.parse().unwrap(),
            public_ip: public.map(|p| p.parse().unwrap()),
            udp_ports: 40000..=40009,
            ..sfu::SfuConfig::default()
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_sfu_ports_on_its_ips_are_allowed() {
        let peers = MediaPeers::from_sfu(&sfu("10.0.0.5", Some("203.0.113.7")), &[]);
        for ok in ["10.0.0.5:40000", "10.0.0.5:40009", "203.0.113.7:40005"] {
            assert!(peers.allows(addr(ok)), "{ok}");
        }
        for refused in [
            "10.0.0.5:39999",
            "10.0.0.5:40010",
            "10.0.0.5:22",
            "10.0.0.6:40000",
            "127.0.0.1:40000",
            "8.8.8.8:53",
            "[::1]:40000",
        ] {
            assert!(!peers.allows(addr(refused)), "{refused}");
            assert_eq!(peers.to_local(addr(refused)), None, "{refused}");
        }
    }

    #[test]
    fn public_addresses_map_to_the_bound_one_and_back() {
        let peers = MediaPeers::from_sfu(&sfu("10.0.0.5", Some("203.0.113.7")), &[]);
        assert_eq!(peers.local_ip(), addr("10.0.0.5:1").ip());
        assert_eq!(
            peers.to_local(addr("203.0.113.7:40001")),
            Some(addr("10.0.0.5:40001"))
        );
        assert_eq!(
            peers.from_local(addr("10.0.0.5:40001")),
            Some(addr("203.0.113.7:40001"))
        );
        assert_eq!(peers.from_local(addr("10.0.0.5:5000")), None);
        assert_eq!(peers.from_local(addr("10.0.0.9:40001")), None);

        let plain = MediaPeers::from_sfu(&sfu("127.0.0.1", None), &[]);
        assert_eq!(
            plain.from_local(addr("127.0.0.1:40002")),
            Some(addr("127.0.0.1:40002"))
        );
    }

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        let peers = MediaPeers::from_sfu(&sfu("0.0.0.0", None), &[]);
        assert!(peers.allows(addr("127.0.0.1:40000")));
        assert!(!peers.allows(addr("0.0.0.0:40000")));
    }
}
