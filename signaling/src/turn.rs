//! TURN: media for participants whose network blocks the direct path to the SFU.
//!
//! Two sources of TURN service, usable together:
//!
//! * the **embedded** server ([`server`]): webrtc-rs's `turn` crate behind Sealed's own
//!   rules — UDP, TCP and (with TLS configured) TLS listeners, relaying only towards
//!   this node's media addresses ([`peers`]), allocations limited per credential and
//!   in total ([`quota`]), counters on `/metrics` ([`stats`]);
//! * an **external** server such as coturn with `use-auth-secret`, given by URL and
//!   shared secret.
//!
//! Either way a participant gets its own short-lived credential in
//! `welcome.ice_servers` ([`credentials`]), made fresh on every join (so a reconnect
//! gets a new one).

mod credentials;
mod peers;
mod quota;
mod relay;
mod server;
mod stats;
mod stream;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub use credentials::{
    Credential, CredentialError, MAX_CREDENTIAL_TTL, MIN_TURN_SECRET_LEN, TurnSecret, Username,
};
pub use peers::MediaPeers;
pub use server::{REALM, TurnAddrs};
pub use stats::TurnSnapshot;

use crate::auth::unix_now;
use crate::protocol::{IceServer, IceTransportPolicy};
use server::TurnServer;

/// Settings of the embedded TURN server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedTurnConfig {
    /// Address the listeners bind to (the media bind address by default).
    pub listen_ip: IpAddr,
    /// TURN over UDP (0: OS-chosen).
    pub udp_port: u16,
    /// TURN over TCP (0: OS-chosen).
    pub tcp_port: u16,
    /// TURN over TLS, used when TLS is configured (0: OS-chosen).
    pub tls_port: u16,
    /// Host name or IP put in the `turn:` URLs. Default: the host the client used to
    /// reach the server (its `Host` header), else `listen_ip`. A `turns:` URL needs the
    /// name the certificate was issued for.
    pub host: Option<String>,
    /// Most allocations at once, server-wide (each holds one UDP socket).
    pub max_allocations: usize,
    /// Most allocations one credential (one participant's join) may hold.
    pub max_allocations_per_user: usize,
}

impl Default for EmbeddedTurnConfig {
    fn default() -> Self {
        EmbeddedTurnConfig {
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port: 3478,
            tcp_port: 3478,
            tls_port: 5349,
            host: None,
            max_allocations: 1000,
            max_allocations_per_user: 16,
        }
    }
}

impl EmbeddedTurnConfig {
    /// Defaults on `127.0.0.1` with OS-chosen ports: what in-process tests want.
    pub fn ephemeral() -> Self {
        EmbeddedTurnConfig {
            udp_port: 0,
            tcp_port: 0,
            tls_port: 0,
            ..EmbeddedTurnConfig::default()
        }
    }
}

/// An external TURN server that shares a secret with us (coturn's
/// `use-auth-secret` + `static-auth-secret`).
#[derive(Clone, Debug)]
pub struct ExternalTurn {
    /// Its `turn:` / `turns:` URLs, as clients should use them.
    pub urls: Vec<String>,
    /// The shared secret.
    pub secret: TurnSecret,
}

/// Everything about TURN a server starts with.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// The embedded server, if on.
    pub embedded: Option<EmbeddedTurnConfig>,
    /// An external server, if any.
    pub external: Option<ExternalTurn>,
    /// Validity of each issued credential; at most [`MAX_CREDENTIAL_TTL`].
    pub credential_ttl: Duration,
    /// Test switch: tell every client to use relayed candidates only
    /// (`welcome.ice_transport_policy = "relay"`). Never weakens a call — relayed
    /// media is as end-to-end encrypted as direct media — but makes it slower.
    pub force_relay: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            embedded: None,
            external: None,
            credential_ttl: MAX_CREDENTIAL_TTL,
            force_relay: false,
        }
    }
}

impl TurnConfig {
    /// File descriptors the embedded server may hold at most: a relay socket and a
    /// TCP/TLS stream per allocation, plus its listeners.
    pub fn descriptors(&self) -> usize {
        self.embedded
            .as_ref()
            .map_or(0, |e| e.max_allocations.saturating_mul(2).saturating_add(3))
    }
}

/// What `welcome` tells a client about ICE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WelcomeIce {
    pub servers: Vec<IceServer>,
    pub transport_policy: Option<IceTransportPolicy>,
}

/// The TURN side of a running server: the embedded server, if any, and the credentials
/// every participant gets.
pub(crate) struct TurnService {
    config: TurnConfig,
    embedded: Option<(TurnServer, TurnSecret)>,
}

impl TurnService {
    /// Starts the embedded server if configured; `tls` adds its TLS listener.
    pub async fn start(
        config: TurnConfig,
        sfu: &sfu::SfuConfig,
        media_addrs: &[std::net::SocketAddr],
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<TurnService> {
        let embedded = match &config.embedded {
            Some(embedded) => {
                let secret = TurnSecret::random();
                let server = TurnServer::start(
                    embedded,
                    MediaPeers::from_sfu(sfu, media_addrs),
                    secret.clone(),
                    tls,
                )
                .await?;
                Some((server, secret))
            }
            None => None,
        };
        Ok(TurnService { config, embedded })
    }

    /// The ICE setup for one participant joining through a request with this `Host`
    /// header: fresh credentials for every TURN server.
    pub fn welcome_ice(&self, request_host: Option<&str>) -> WelcomeIce {
        let ttl = self.config.credential_ttl;
        let now = unix_now();
        let user = credentials::random_user();
        let mut servers = Vec::new();
        if let (Some((server, secret)), Some(config)) = (&self.embedded, &self.config.embedded) {
            let host = url_host(config.host.as_deref(), request_host, config.listen_ip);
            let addrs = server.addrs();
            let mut urls = vec![
                format!("turn:{host}:{}?transport=udp", addrs.udp.port()),
                format!("turn:{host}:{}?transport=tcp", addrs.tcp.port()),
            ];
            if let Some(tls) = addrs.tls {
                urls.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
            }
            let credential = secret.issue(&user, now, ttl);
            servers.push(IceServer {
                urls,
                username: Some(credential.username),
                credential: Some(credential.password),
            });
        }
        if let Some(external) = &self.config.external {
            let credential = external.secret.issue(&user, now, ttl);
            servers.push(IceServer {
                urls: external.urls.clone(),
                username: Some(credential.username),
                credential: Some(credential.password),
            });
        }
        WelcomeIce {
            servers,
            transport_policy: self.config.force_relay.then_some(IceTransportPolicy::Relay),
        }
    }

    /// Where the embedded server listens.
    pub fn addrs(&self) -> Option<TurnAddrs> {
        self.embedded.as_ref().map(|(server, _)| server.addrs())
    }

    /// The embedded server's counters.
    pub fn stats(&self) -> Option<TurnSnapshot> {
        self.embedded
            .as_ref()
            .map(|(server, _)| server.stats().snapshot())
    }

    /// Appends the embedded server's families to a `/metrics` body.
    pub fn render_metrics(&self, out: &mut String) {
        if let Some((server, _)) = &self.embedded {
            server.stats().render(out);
        }
    }

    /// Stops the embedded server.
    pub async fn close(&self) {
        if let Some((server, _)) = &self.embedded {
            server.close().await;
        }
    }
}

/// The host for `turn:` URLs: the configured one, else the host part of the client's
/// `Host` header when it is a plain host name or IP, else `fallback`.
fn url_host(configured: Option<&str>, request_host: Option<&str>, fallback: IpAddr) -> String {
    if let Some(host) = configured {
        return host.to_owned();
    }
    if let Some(host) = request_host.and_then(crate::host::host_name) {
        return host.to_owned();
    }
    match fallback {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_come_from_config_then_host_header_then_listen_ip() {
        let v4: IpAddr = "10.0.0.5".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            url_host(Some("turn.example"), Some("a:1"), v4),
            "turn.example"
        );
        assert_eq!(
            url_host(None, Some("meet.example.com"), v4),
            "meet.example.com"
        );
        assert_eq!(
            url_host(None, Some("meet.example.com:8443"), v4),
            "meet.example.com"
        );
        assert_eq!(url_host(None, Some("[::1]:8080"), v4), "[::1]");
        assert_eq!(url_host(None, Some("192.168.1.4:8080"), v4), "192.168.1.4");
        for hostile in ["", "a b", "x@y", "evil/?", "[::1]x", "[zz]"] {
            assert_eq!(url_host(None, Some(hostile), v4), "10.0.0.5", "{hostile:?}");
        }
        assert_eq!(url_host(None, None, v6), "[::1]");
    }
}
