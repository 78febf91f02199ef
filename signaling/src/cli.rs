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
use crate::config::{Config, DEFAULT_WEB_DIR, OriginPolicy};
use crate::limits::Limits;

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
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Mint a join token for a server started with --auth-secret.
    Token(TokenArgs),
}

/// Flags of `sealed serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "SEALED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// UDP ports for media, `FIRST-LAST` (one port per PeerConnection; each
    /// participant uses two).
    #[arg(long, env = "SEALED_UDP_PORTS", default_value = "40000-40999", value_parser = parse_port_range)]
    pub udp_ports: RangeInclusive<u16>,
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
    /// Directory with the web client (index.html, app.js, pkg/).
    #[arg(long, env = "SEALED_WEB_DIR", default_value = DEFAULT_WEB_DIR)]
    pub web_dir: PathBuf,
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
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn into_config(self) -> anyhow::Result<Config> {
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
                udp_ports: self.udp_ports,
                public_ip: self.public_ip,
                ..sfu::SfuConfig::default()
            },
            auth_secret,
            origins,
            web_dir: self.web_dir,
            limits,
            trusted_proxies: TrustedProxies::new(self.trusted_proxies),
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

    #[test]
    fn serve_is_the_default_and_flags_map_to_config() {
        let cli = Cli::try_parse_from(["sealed", "--listen", "127.0.0.1:9000", "--max-rooms", "7"])
            .unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve");
        };
        let config = args.into_config().unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.max_rooms, 7);
        assert_eq!(config.origins, OriginPolicy::SameHost);
        assert!(config.auth_secret.is_none());

        let cli = Cli::try_parse_from([
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
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve");
        };
        let config = args.into_config().unwrap();
        assert_eq!(config.sfu.udp_ports, 50000..=50009);
        assert_eq!(config.sfu.public_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(
            config.origins,
            OriginPolicy::List(vec!["https://a.example".into(), "https://b.example".into()])
        );
        assert!(config.auth_secret.is_some());

        let cli = Cli::try_parse_from([
            "sealed",
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8",
            "--per-address-connections",
            "9",
            "--max-connections",
            "77",
        ])
        .unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve");
        };
        let config = args.into_config().unwrap();
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
    fn weak_secrets_are_refused_at_startup() {
        let cli = Cli::try_parse_from(["sealed", "--auth-secret", "short"]).unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve");
        };
        assert!(args.into_config().is_err());
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
