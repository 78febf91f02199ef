//! The `sealed` command line: `sealed [serve] [flags]` and `sealed token …`.
//!
//! Every serve flag also reads an environment variable (`SEALED_LISTEN`,
//! `SEALED_AUTH_SECRET`, …), so a container or a systemd unit needs no config file.
//! Prefer the environment for the auth secret: command lines are visible to every
//! user of the machine (`ps`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::addresses::TrustedProxies;
use crate::auth::AuthSecret;
use crate::cluster::ClusterConfig;
use crate::config::{Config, OriginPolicy, WebSource};
use crate::limits::Limits;
use crate::tls::{TlsConfig, TlsSource};
use crate::turn::{EmbeddedTurnConfig, ExternalTurn, MAX_CREDENTIAL_TTL, TurnConfig, TurnSecret};

/// End-to-end encrypted video meetings: the server (signaling + SFU).
#[derive(Debug, Parser)]
#[command(name = "sealed", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand name too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// The subcommand to run, with `serve` as the default.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up; boxing buys nothing
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Mint a join token for a server started with --auth-secret.
    Token(TokenArgs),
}

/// Flags of `sealed serve`.
/// The media port when neither `--udp-port` nor `--udp-ports` is given.
pub const DEFAULT_UDP_PORT: u16 = 40000;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "SEALED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The one UDP port every participant's media uses (default 40000). With
    /// `--udp-workers N`, worker `i` listens on this port + `i`.
    #[arg(long, env = "SEALED_UDP_PORT", conflicts_with = "udp_ports")]
    pub udp_port: Option<u16>,
    /// Instead of `--udp-port`: the older media engine, one UDP port per PeerConnection
    /// from this range, `FIRST-LAST` (each participant with media uses two). Kept for
    /// side-by-side measurements.
    #[arg(long, env = "SEALED_UDP_PORTS", value_parser = parse_port_range)]
    pub udp_ports: Option<RangeInclusive<u16>>,
    /// Media worker threads of the single-port engine (one UDP port each).
    #[arg(long, env = "SEALED_UDP_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub udp_workers: u16,
    /// ICE over TCP connections each media worker accepts at most (on TCP, same port
    /// number as its UDP port), for clients whose UDP is blocked; 0 turns ICE-TCP off.
    #[arg(long, env = "SEALED_ICE_TCP_CONNS", default_value_t = 256)]
    pub ice_tcp_conns: usize,
    /// Milliseconds a received media packet may wait for a busy media worker; older ones
    /// are dropped and counted (`sealed_sfu_shed_packets_total`) rather than forwarded late.
    #[arg(long, env = "SEALED_INGRESS_MAX_AGE_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub ingress_max_age_ms: u64,
    /// Local IP the media sockets bind to.
    #[arg(long, env = "SEALED_BIND_IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind_ip: IpAddr,
    /// IP announced to clients in ICE candidates, for 1:1 NAT (e.g. a cloud VM's
    /// public address while binding the private one).
    #[arg(long, env = "SEALED_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Require join tokens signed with this secret (at least 32 bytes). Prefer the
    /// environment variable: command lines are visible to other users.
    #[arg(long, env = "SEALED_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// Browser origins allowed to open the WebSocket, comma separated
    /// (e.g. `https://meet.example.com`); `*` allows any. Default: the page's own
    /// host (the request's Host header) and loopback origins.
    #[arg(long, env = "SEALED_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Serve the web client (index.html, js/, pkg/) from this directory, read on every
    /// request: the development override. Without it, a binary built with the web
    /// client inside (feature `embed-web`, e.g. `cargo xtask dist`) serves that copy
    /// from memory; any other binary serves the `web/` directory of the checkout it
    /// was built from.
    #[arg(long, env = "SEALED_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Most rooms at once.
    #[arg(long, env = "SEALED_MAX_ROOMS", default_value_t = Limits::default().max_rooms)]
    pub max_rooms: usize,
    /// Most participants per room.
    #[arg(long, env = "SEALED_MAX_PARTICIPANTS", default_value_t = Limits::default().max_participants)]
    pub max_participants: usize,
    /// Most simultaneous TCP connections (HTTP and WebSocket); more get HTTP 503.
    /// Default: as many as the descriptor limit allows next to the media sockets.
    #[arg(long, env = "SEALED_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most simultaneous connections from one client address (IPv6: one /64).
    #[arg(long, env = "SEALED_PER_ADDRESS_CONNECTIONS", default_value_t = Limits::default().max_connections_per_address)]
    pub per_address_connections: usize,
    /// Joins one client address may make per minute.
    #[arg(long, env = "SEALED_PER_ADDRESS_JOINS_PER_MINUTE", default_value_t = Limits::default().joins_per_minute_per_address)]
    pub per_address_joins_per_minute: u32,
    /// Most participants from one client address in one room.
    #[arg(long, env = "SEALED_PER_ADDRESS_PARTICIPANTS", default_value_t = Limits::default().participants_per_address_per_room)]
    pub per_address_participants: usize,
    /// How long a client may take to send a complete HTTP request head (e.g. `5s`).
    #[arg(long, env = "SEALED_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_ttl)]
    pub header_timeout: Duration,
    /// How long a WebSocket may stay open without joining (e.g. `10s`).
    #[arg(long, env = "SEALED_JOIN_TIMEOUT", default_value = "10s", value_parser = parse_ttl)]
    pub join_timeout: Duration,
    /// Reverse proxies (addresses or networks, comma separated, e.g.
    /// `127.0.0.1,10.0.0.0/8`) whose `X-Forwarded-For` header names the client.
    /// Without it the header is ignored.
    #[arg(long, env = "SEALED_TRUSTED_PROXIES", value_delimiter = ',', value_parser = TrustedProxies::parse_entry)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Messages per second one connection may send (sustained).
    #[arg(long, env = "SEALED_RATE_LIMIT", default_value_t = Limits::default().rate_per_second)]
    pub rate_limit: u32,
    /// Messages one connection may send in a burst.
    #[arg(long, env = "SEALED_RATE_BURST", default_value_t = Limits::default().rate_burst)]
    pub rate_burst: u32,
    /// Serve HTTPS with this certificate chain (PEM, leaf first). Reloaded, with the
    /// key, on SIGHUP.
    #[arg(
        long,
        env = "SEALED_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, env = "SEALED_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate generated at start, for trials on a LAN; its
    /// fingerprints are printed. Browsers warn about it.
    #[arg(long, env = "SEALED_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// Names (DNS names or IPs) of the generated certificate, comma separated.
    /// Default: localhost, 127.0.0.1, ::1 and the listen address.
    #[arg(
        long,
        env = "SEALED_TLS_NAMES",
        value_delimiter = ',',
        requires = "tls_self_signed"
    )]
    pub tls_names: Vec<String>,
    /// Also listen for plain HTTP here and redirect every request to HTTPS
    /// (e.g. `0.0.0.0:80`). Needs TLS.
    #[arg(long, env = "SEALED_HTTP_REDIRECT")]
    pub http_redirect: Option<SocketAddr>,
    /// The embedded TURN server: `auto` runs it unless media binds a loopback address
    /// (where every client reaches the SFU directly), `on`, or `off`.
    #[arg(long, env = "SEALED_TURN", value_enum, default_value_t = TurnMode::Auto)]
    pub turn: TurnMode,
    /// Embedded TURN over UDP: port (0: OS-chosen).
    #[arg(long, env = "SEALED_TURN_UDP_PORT", default_value_t = EmbeddedTurnConfig::default().udp_port)]
    pub turn_udp_port: u16,
    /// Embedded TURN over TCP: port (0: OS-chosen).
    #[arg(long, env = "SEALED_TURN_TCP_PORT", default_value_t = EmbeddedTurnConfig::default().tcp_port)]
    pub turn_tcp_port: u16,
    /// Embedded TURN over TLS, when TLS is configured: port (0: OS-chosen).
    #[arg(long, env = "SEALED_TURN_TLS_PORT", default_value_t = EmbeddedTurnConfig::default().tls_port)]
    pub turn_tls_port: u16,
    /// Host name put in the TURN URLs clients get. Default: the host they reached this
    /// server by. With TLS it must be a name the certificate covers.
    #[arg(long, env = "SEALED_TURN_HOST")]
    pub turn_host: Option<String>,
    /// Most TURN allocations at once (each holds one UDP socket).
    #[arg(long, env = "SEALED_TURN_MAX_ALLOCATIONS", default_value_t = EmbeddedTurnConfig::default().max_allocations)]
    pub turn_max_allocations: usize,
    /// Most TURN allocations one participant may hold.
    #[arg(long, env = "SEALED_TURN_USER_ALLOCATIONS", default_value_t = EmbeddedTurnConfig::default().max_allocations_per_user)]
    pub turn_user_allocations: usize,
    /// How long each participant's TURN credential may open new relays (at most 1h).
    #[arg(long, env = "SEALED_TURN_CREDENTIAL_TTL", default_value = "1h", value_parser = parse_ttl)]
    pub turn_credential_ttl: Duration,
    /// An external TURN server (e.g. coturn with `use-auth-secret`): its URLs, comma
    /// separated, e.g. `turn:turn.example.com:3478,turns:turn.example.com:5349`.
    #[arg(long, env = "SEALED_TURN_URL", value_delimiter = ',')]
    pub turn_url: Vec<String>,
    /// The external TURN server's `static-auth-secret`. Prefer the environment variable.
    #[arg(long, env = "SEALED_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Multi-node mode: the Redis every node of the deployment shares
    /// (`redis://[user:password@]host:port[/db]`). Rooms are placed on the least loaded
    /// live node; a client may connect to any node. Without it: one node, no external
    /// service.
    #[arg(long, env = "SEALED_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// Multi-node mode: how the other nodes reach this node's HTTP listener,
    /// `http://HOST:PORT` on the private network. Default: `http://` + `--listen`.
    #[arg(long, env = "SEALED_NODE_URL", requires = "redis")]
    pub node_url: Option<String>,
    /// Multi-node mode: this node's id in the registry (default: random at start).
    #[arg(long, env = "SEALED_NODE_ID", requires = "redis")]
    pub node_id: Option<String>,
    /// Test switch: every client uses relayed (TURN) candidates only.
    #[arg(long, env = "SEALED_TEST_FORCE_RELAY", hide = true)]
    pub test_force_relay: bool,
}

/// Whether the embedded TURN server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TurnMode {
    /// On unless media binds a loopback address.
    Auto,
    /// Always on.
    On,
    /// Never.
    Off,
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let turn = self.turn_config()?;
        let tls = self.tls_config()?;
        let auth_secret = match self.auth_secret {
            Some(s) => Some(AuthSecret::new(s).map_err(|e| anyhow::anyhow!("--auth-secret: {e}"))?),
            None => None,
        };
        let origins = if self.allowed_origins.is_empty() {
            OriginPolicy::SameHost
        } else {
            OriginPolicy::List(
                self.allowed_origins
                    .into_iter()
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
            )
        };
        let limits = Limits {
            max_rooms: self.max_rooms,
            max_participants: self.max_participants,
            max_connections: self
                .max_connections
                .unwrap_or(Limits::default().max_connections),
            max_connections_per_address: self.per_address_connections,
            joins_per_minute_per_address: self.per_address_joins_per_minute,
            participants_per_address_per_room: self.per_address_participants,
            header_timeout: self.header_timeout,
            join_timeout: self.join_timeout,
            rate_per_second: self.rate_limit,
            rate_burst: self.rate_burst,
            ..Limits::default()
        };
        Ok(Config {
            listen: self.listen,
            sfu: sfu::SfuConfig {
                bind_ip: self.bind_ip,
                udp_ports: self
                    .udp_ports
                    .clone()
                    .unwrap_or(sfu::SfuConfig::default().udp_ports),
                udp_port: match (self.udp_port, &self.udp_ports) {
                    (Some(port), _) => Some(port),
                    (None, Some(_)) => None,
                    (None, None) => Some(DEFAULT_UDP_PORT),
                },
                udp_workers: usize::from(self.udp_workers),
                ice_tcp_max_conns: self.ice_tcp_conns,
                ingress_max_age: Duration::from_millis(self.ingress_max_age_ms),
                public_ip: self.public_ip,
                ..sfu::SfuConfig::default()
            },
            auth_secret,
            origins,
            web: WebSource::resolve(self.web_dir),
            limits,
            turn,
            tls,
            trusted_proxies: TrustedProxies::new(self.trusted_proxies),
            cluster: self.redis.map(|redis_url| ClusterConfig {
                redis_url,
                node_url: self.node_url,
                node_id: self.node_id,
            }),
        })
    }

    /// The TLS part of the configuration.
    fn tls_config(&self) -> anyhow::Result<Option<TlsConfig>> {
        let source = match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), false) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, true) => {
                let mut names = self.tls_names.clone();
                if names.is_empty() {
                    names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
                    let ip = self.listen.ip();
                    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
                        names.push(ip.to_string());
                    }
                }
                TlsSource::SelfSigned { names }
            }
            (None, None, false) => {
                if self.http_redirect.is_some() {
                    anyhow::bail!(
                        "--http-redirect needs TLS (--tls-cert/--tls-key or --tls-self-signed)"
                    );
                }
                return Ok(None);
            }
            _ => anyhow::bail!("use --tls-cert with --tls-key, or --tls-self-signed"),
        };
        Ok(Some(TlsConfig {
            source,
            http_redirect: self.http_redirect,
        }))
    }

    /// The TURN part of the configuration.
    fn turn_config(&self) -> anyhow::Result<TurnConfig> {
        let on = match self.turn {
            TurnMode::On => true,
            TurnMode::Off => false,
            TurnMode::Auto => !self.bind_ip.is_loopback(),
        };
        let embedded = on.then(|| EmbeddedTurnConfig {
            listen_ip: self.bind_ip,
            udp_port: self.turn_udp_port,
            tcp_port: self.turn_tcp_port,
            tls_port: self.turn_tls_port,
            host: self.turn_host.clone(),
            max_allocations: self.turn_max_allocations,
            max_allocations_per_user: self.turn_user_allocations,
        });
        let external = match (self.turn_url.is_empty(), &self.turn_secret) {
            (true, None) => None,
            (false, Some(secret)) => {
                let urls: Vec<String> = self.turn_url.iter().map(|u| u.trim().to_owned()).collect();
                if let Some(bad) = urls
                    .iter()
                    .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
                {
                    anyhow::bail!("--turn-url {bad:?} is not a turn: or turns: URL");
                }
                let secret = TurnSecret::new(secret.as_bytes())
                    .map_err(|e| anyhow::anyhow!("--turn-secret: {e}"))?;
                Some(ExternalTurn { urls, secret })
            }
            (true, Some(_)) => anyhow::bail!("--turn-secret needs --turn-url"),
            (false, None) => anyhow::bail!("--turn-url needs --turn-secret"),
        };
        if self.turn_credential_ttl > MAX_CREDENTIAL_TTL {
            anyhow::bail!("--turn-credential-ttl may be at most 1h");
        }
        if self.test_force_relay && embedded.is_none() && external.is_none() {
            anyhow::bail!("--test-force-relay needs a TURN server (--turn on or --turn-url)");
        }
        Ok(TurnConfig {
            embedded,
            external,
            credential_ttl: self.turn_credential_ttl,
            force_relay: self.test_force_relay,
        })
    }
}

/// Flags of `sealed token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The room the token admits to.
    #[arg(long)]
    pub room: String,
    /// The display name the bearer must join with.
    #[arg(long)]
    pub name: String,
    /// Validity from now: a number with s, m, h or d (30s, 10m, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// The server's secret (same as `serve --auth-secret`).
    #[arg(long, env = "SEALED_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: String,
}

impl TokenArgs {
    /// Mints the token.
    pub fn mint(&self) -> anyhow::Result<String> {
        if !crate::protocol::is_valid_room_name(&self.room) {
            anyhow::bail!("--room must be 1 to 64 of A-Z a-z 0-9 _ -");
        }
        let secret = AuthSecret::new(self.auth_secret.as_bytes())
            .map_err(|e| anyhow::anyhow!("--auth-secret: {e}"))?;
        Ok(secret.mint_for(&self.room, &self.name, self.ttl))
    }
}

/// Parses `FIRST-LAST` (or a single port) into an inclusive range.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = s.split_once('-').unwrap_or((s, s));
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let (first, last) = (port(first)?, port(last)?);
    if first == 0 || first > last {
        return Err(format!(
            "{s:?} is not a port range FIRST-LAST with 0 < FIRST <= LAST"
        ));
    }
    Ok(first..=last)
}

/// Parses a positive duration like `30s`, `10m`, `1h` or `2d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration like 30s, 10m, 1h or 2d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(err)?;
    if secs == 0 {
        return Err(format!("{s:?}: must be at least one second"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        for bad in [
            "",
            "h",
            "1",
            "1x",
            "-1h",
            "1.5h",
            "0s",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(parse_port_range("40000-40999"), Ok(40000..=40999));
        assert_eq!(parse_port_range("5000"), Ok(5000..=5000));
        for bad in ["", "0-10", "10-5", "a-b", "1-70000", "-"] {
            assert!(parse_port_range(bad).is_err(), "{bad:?}");
        }
    }

    /// The serve configuration that `args` (argv, program name first) make.
    fn config_of(args: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from(args.iter().copied()).map_err(anyhow::Error::from)?;
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve");
        };
        args.into_config()
    }

    #[test]
    fn serve_is_the_default_and_flags_map_to_config() {
        let config =
            config_of(&["sealed", "--listen", "127.0.0.1:9000", "--max-rooms", "7"]).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.max_rooms, 7);
        assert_eq!(
            config.sfu.udp_port,
            Some(DEFAULT_UDP_PORT),
            "one media port by default"
        );
        assert_eq!(config.origins, OriginPolicy::SameHost);
        assert!(config.auth_secret.is_none());

        let config = config_of(&[
            "sealed",
            "serve",
            "--udp-ports",
            "50000-50009",
            "--public-ip",
            "203.0.113.5",
            "--allowed-origins",
            "https://a.example,https://b.example",
            "--auth-secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .unwrap();
        assert_eq!(config.sfu.udp_ports, 50000..=50009);
        assert_eq!(
            config.sfu.udp_port, None,
            "a port range asks for the older engine"
        );
        let workers = config_of(&["sealed", "--udp-port", "41000", "--udp-workers", "2"]).unwrap();
        assert_eq!(
            (workers.sfu.udp_port, workers.sfu.udp_workers),
            (Some(41000), 2)
        );
        assert_eq!(workers.sfu.ice_tcp_max_conns, 256);
        let no_tcp = config_of(&["sealed", "--ice-tcp-conns", "0"]).unwrap();
        assert_eq!(no_tcp.sfu.ice_tcp_max_conns, 0);
        assert_eq!(workers.sfu.ingress_max_age, Duration::from_millis(100));
        let patient = config_of(&["sealed", "--ingress-max-age-ms", "5000"]).unwrap();
        assert_eq!(patient.sfu.ingress_max_age, Duration::from_secs(5));
        assert!(config_of(&["sealed", "--ingress-max-age-ms", "0"]).is_err());
        assert!(config_of(&["sealed", "--udp-port", "1", "--udp-ports", "2-3"]).is_err());
        assert_eq!(config.sfu.public_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(
            config.origins,
            OriginPolicy::List(vec!["https://a.example".into(), "https://b.example".into()])
        );
        assert!(config.auth_secret.is_some());

        let config = config_of(&[
            "sealed",
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8",
            "--per-address-connections",
            "9",
            "--max-connections",
            "77",
        ])
        .unwrap();
        assert!(config.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
        assert!(!config.trusted_proxies.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(config.limits.max_connections_per_address, 9);
        assert_eq!(config.limits.max_connections, 77);
        assert_eq!(
            config.limits.header_timeout,
            Limits::default().header_timeout
        );
        assert!(Cli::try_parse_from(["sealed", "--trusted-proxies", "x"]).is_err());
    }

    #[test]
    fn turn_runs_by_default_off_loopback_only_and_takes_an_external_server() {
        let local = config_of(&["sealed"]).unwrap();
        assert!(local.turn.embedded.is_none(), "auto: off on loopback");
        assert!(local.tls.is_none());
        let lan = config_of(&["sealed", "--bind-ip", "192.0.2.10"]).unwrap();
        let embedded = lan.turn.embedded.expect("auto: on off loopback");
        assert_eq!(
            (embedded.udp_port, embedded.tcp_port, embedded.tls_port),
            (3478, 3478, 5349)
        );
        assert_eq!(embedded.listen_ip, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert!(
            config_of(&["sealed", "--bind-ip", "192.0.2.10", "--turn", "off"])
                .unwrap()
                .turn
                .embedded
                .is_none()
        );

        let external = config_of(&[
            "sealed",
            "--turn-url",
            "turn:turn.example:3478,turns:turn.example:5349",
            "--turn-secret",
            "0123456789abcdef",
        ])
        .unwrap();
        let ext = external.turn.external.expect("external TURN");
        assert_eq!(
            ext.urls,
            ["turn:turn.example:3478", "turns:turn.example:5349"]
        );
        for bad in [
            &["sealed", "--turn-url", "turn:x"][..],
            &["sealed", "--turn-secret", "0123456789abcdef"],
            &[
                "sealed",
                "--turn-url",
                "http://x",
                "--turn-secret",
                "0123456789abcdef",
            ],
            &["sealed", "--turn-url", "turn:x", "--turn-secret", "short"],
            &["sealed", "--turn", "on", "--turn-credential-ttl", "2h"],
            &["sealed", "--test-force-relay"],
        ] {
            assert!(config_of(bad).is_err(), "{bad:?}");
        }
        let forced = config_of(&["sealed", "--turn", "on", "--test-force-relay"]).unwrap();
        assert!(forced.turn.force_relay);
    }

    #[test]
    fn tls_flags_map_to_config() {
        let files = config_of(&[
            "sealed",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--http-redirect",
            "0.0.0.0:80",
        ])
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(
            files.source,
            TlsSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
        assert_eq!(files.http_redirect, Some("0.0.0.0:80".parse().unwrap()));
        let generated = config_of(&["sealed", "--listen", "192.0.2.4:8443", "--tls-self-signed"])
            .unwrap()
            .tls
            .unwrap();
        let TlsSource::SelfSigned { names } = generated.source else {
            panic!("self-signed");
        };
        assert!(names.contains(&"localhost".to_owned()) && names.contains(&"192.0.2.4".to_owned()));
        for bad in [
            &["sealed", "--tls-cert", "c.pem"][..],
            &[
                "sealed",
                "--tls-self-signed",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
            &["sealed", "--http-redirect", "0.0.0.0:80"],
            &["sealed", "--tls-names", "a.example"],
        ] {
            assert!(config_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_explicit_web_dir_wins_over_the_built_in_client() {
        let given = config_of(&["sealed", "--web-dir", "/srv/web"]).unwrap();
        assert_eq!(given.web, WebSource::Dir("/srv/web".into()));
        let default = config_of(&["sealed"]).unwrap();
        assert_eq!(default.web, WebSource::default());
        #[cfg(feature = "embed-web")]
        assert_eq!(default.web, WebSource::Embedded, "the page is compiled in");
        #[cfg(not(feature = "embed-web"))]
        assert_eq!(
            default.web,
            WebSource::Dir(crate::config::DEFAULT_WEB_DIR.into())
        );
    }

    #[test]
    fn weak_secrets_are_refused_at_startup() {
        assert!(config_of(&["sealed", "--auth-secret", "short"]).is_err());
    }

    #[test]
    fn token_subcommand_mints_a_verifiable_token() {
        let secret = "0123456789abcdef0123456789abcdef";
        let cli = Cli::try_parse_from([
            "sealed",
            "token",
            "--room",
            "r1",
            "--name",
            "Ada",
            "--ttl",
            "10m",
            "--auth-secret",
            secret,
        ])
        .unwrap();
        let Command::Token(args) = cli.into_command() else {
            panic!("expected token");
        };
        let token = args.mint().unwrap();
        let claims = AuthSecret::new(secret)
            .unwrap()
            .verify(&token, "r1", "Ada", crate::auth::unix_now())
            .unwrap();
        assert!(claims.exp > crate::auth::unix_now() + 590);
    }
}
