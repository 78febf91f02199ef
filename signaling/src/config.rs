//! Everything a [`crate::Server`] needs to start, with defaults that run a local
//! meeting out of the box. `sealed serve` builds one from flags and `SEALED_*`
//! environment variables; tests build one in code.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::addresses::TrustedProxies;
use crate::auth::AuthSecret;
use crate::cluster::ClusterConfig;
use crate::limits::Limits;
use crate::tls::TlsConfig;
use crate::turn::TurnConfig;

/// The web directory of this checkout (`<repo>/web`), fixed at compile time so that
/// `cargo run -p signaling` serves the page from any working directory.
pub const DEFAULT_WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");

/// Where the web client's files (`index.html`, `js/`, `pkg/`…) come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebSource {
    /// A directory, read on every request.
    Dir(PathBuf),
    /// The copy compiled into this binary (feature `embed-web`), served from memory.
    #[cfg(feature = "embed-web")]
    Embedded,
}

impl WebSource {
    /// The start-up rule: an explicitly given directory wins (the development
    /// override); else the embedded copy when this binary carries one; else
    /// [`DEFAULT_WEB_DIR`].
    pub fn resolve(explicit_dir: Option<PathBuf>) -> WebSource {
        match explicit_dir {
            Some(dir) => WebSource::Dir(dir),
            None => WebSource::default(),
        }
    }
}

impl Default for WebSource {
    /// The embedded copy when this binary carries one, else [`DEFAULT_WEB_DIR`].
    fn default() -> Self {
        #[cfg(feature = "embed-web")]
        if crate::web::embedded::available() {
            return WebSource::Embedded;
        }
        WebSource::Dir(PathBuf::from(DEFAULT_WEB_DIR))
    }
}

/// The default HTTP listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Which browser origins may open the WebSocket.
///
/// Browsers send `Origin` on WebSocket upgrades and do not apply the same-origin
/// policy to them, so without this check any web page a participant visits could
/// drive a meeting connection in their name. Non-browser clients send no `Origin` and
/// are always allowed (they could forge it anyway; tokens are the real gate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Allow an `Origin` whose host (and port) equals the request's `Host` header —
    /// the page this server served — and loopback origins (`localhost`, `127.0.0.1`,
    /// `[::1]`, any port) for local development.
    #[default]
    SameHost,
    /// Allow exactly these origins (`scheme://host[:port]`, compared
    /// case-insensitively, no trailing slash); `*` in the list allows any origin.
    List(Vec<String>),
}

/// Configuration of one server.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP + WebSocket listen address. Use port 0 to let the OS pick (tests).
    pub listen: SocketAddr,
    /// Media plane settings (UDP ports, bind/public IP).
    pub sfu: sfu::SfuConfig,
    /// With a secret, every join needs a token (see [`crate::auth`]); without, rooms
    /// are open to anyone who can reach the server.
    pub auth_secret: Option<AuthSecret>,
    /// Which browser origins may connect.
    pub origins: OriginPolicy,
    /// Where the web client is served from (see [`WebSource::resolve`]).
    pub web: WebSource,
    /// Resource limits.
    pub limits: Limits,
    /// TURN: the embedded server and/or an external one, and credential lifetime.
    pub turn: TurnConfig,
    /// HTTPS (and TURN over TLS) when set; plain HTTP otherwise.
    pub tls: Option<TlsConfig>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (see
    /// [`crate::addresses`]); empty: every client is its TCP peer.
    pub trusted_proxies: TrustedProxies,
    /// Multi-node mode (`--redis`); `None`: a single node with no external service.
    pub cluster: Option<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            sfu: sfu::SfuConfig::default(),
            auth_secret: None,
            origins: OriginPolicy::default(),
            web: WebSource::default(),
            limits: Limits::default(),
            turn: TurnConfig::default(),
            tls: None,
            trusted_proxies: TrustedProxies::default(),
            cluster: None,
        }
    }
}

impl Config {
    /// The defaults, listening on `127.0.0.1` with an OS-chosen port: what in-process
    /// tests want.
    pub fn ephemeral() -> Self {
        Config {
            listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            ..Config::default()
        }
    }
}
