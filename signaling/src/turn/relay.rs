//! Relay sockets that can only talk to the SFU.
//!
//! The `turn` crate asks a [`RelayAddressGenerator`] for one UDP socket per allocation
//! and relays through whatever [`Conn`] it gets. Ours wraps the socket so that, whatever
//! permissions a client managed to create, a datagram only ever leaves towards one of
//! the SFU's media addresses ([`MediaPeers`]) and only datagrams from them come back:
//! the request-level check in [`super::server`] refuses bad peers with a clear 403,
//! this is the floor under it.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use turn::relay::RelayAddressGenerator;
use webrtc_util::Conn;

use super::peers::MediaPeers;
use super::stats::TurnStats;

/// Makes relay sockets on the SFU's interface, OS-chosen ports. They only exchange
/// packets with the SFU on this host, so no firewall needs to open them.
pub(crate) struct RelayGenerator {
    pub peers: MediaPeers,
    pub stats: Arc<TurnStats>,
}

#[async_trait]
impl RelayAddressGenerator for RelayGenerator {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let ip = self.peers.local_ip();
        if use_ipv4 != ip.is_ipv4() {
            return Err(turn::Error::Other(
                "the media plane does not use this address family".into(),
            ));
        }
        let socket = UdpSocket::bind(SocketAddr::new(ip, requested_port))
            .await
            .map_err(|e| turn::Error::Other(format!("cannot bind a relay socket: {e}")))?;
        let addr = socket
            .local_addr()
            .map_err(|e| turn::Error::Other(e.to_string()))?;
        let conn = SfuOnlySocket {
            socket,
            peers: self.peers.clone(),
            stats: self.stats.clone(),
        };
        Ok((Arc::new(conn), addr))
    }
}

/// One allocation's relay socket, restricted to the SFU's media addresses.
struct SfuOnlySocket {
    socket: UdpSocket,
    peers: MediaPeers,
    stats: Arc<TurnStats>,
}

fn refused() -> webrtc_util::Error {
    webrtc_util::Error::Other("relaying is only allowed towards this server's media ports".into())
}

#[async_trait]
impl Conn for SfuOnlySocket {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(refused())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(refused())
    }

    /// The next datagram from the SFU, reported under the address the client knows
    /// the SFU by; anything else that reaches the socket is dropped here.
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            match self.peers.from_local(from) {
                Some(peer) => {
                    self.stats.relayed_from_peer(n);
                    return Ok((n, peer));
                }
                None => self.stats.dropped(),
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(refused())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let Some(local) = self.peers.to_local(target) else {
            self.stats.dropped();
            return Err(refused());
        };
        let n = self.socket.send_to(buf, local).await?;
        self.stats.relayed_to_peer(n);
        Ok(n)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relay_sockets_reach_only_the_sfu() {
        // A stand-in "SFU" socket on loopback, and the media range around it.
        let sfu_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sfu_addr = sfu_socket.local_addr().unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other.local_addr().unwrap();
        let config = sfu::SfuConfig {
            bind_ip: sfu_addr.ip(),
            udp_ports: sfu_addr.port()..=sfu_addr.port(),
            ..sfu::SfuConfig::default()
        };
        let stats = Arc::new(TurnStats::default());
        let generator = RelayGenerator {
            peers: MediaPeers::from_sfu(&config, &[]),
            stats: stats.clone(),
        };
        let (relay, relay_addr) = generator.allocate_conn(true, 0).await.unwrap();
        assert!(generator.allocate_conn(false, 0).await.is_err());

        assert_eq!(relay.send_to(b"hello", sfu_addr).await.unwrap(), 5);
        let mut buf = [0u8; 16];
        let (n, from) = sfu_socket.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], relay_addr));

        assert!(relay.send_to(b"nope", other_addr).await.is_err());

        // A stranger's datagram is dropped; the SFU's comes through.
        other.send_to(b"spoof", relay_addr).await.unwrap();
        sfu_socket.send_to(b"reply", relay_addr).await.unwrap();
        let (n, from) = relay.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"reply"[..], sfu_addr));

        let s = stats.snapshot();
        assert_eq!((s.to_peer_bytes, s.from_peer_bytes), (5, 5));
        assert_eq!(s.dropped_packets, 2);
        // The stranger really sent nothing onwards.
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                other.recv_from(&mut buf)
            )
            .await
            .is_err()
        );
    }
}
