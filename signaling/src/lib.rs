//! Sealed's front door: HTTP, the signaling WebSocket, join tokens and the `sealed`
//! binary that wires signaling to the SFU.
//!
//! The server never sees keys or media plaintext: it assigns participant ids, keeps
//! each room's roster (names and public keys), relays E2EE messages as opaque bytes
//! with a server-stamped sender, and drives the SFU through its API.
//!
//! Where things live (one concept per file, mini-redis style):
//!
//! | file            | holds                                                          |
//! |-----------------|----------------------------------------------------------------|
//! | `server.rs`     | [`Server`]: bind, run, spawn in-process, graceful shutdown     |
//! | `accept.rs`     | the accept loop: connection cap, header timeout, refusals      |
//! | `addresses.rs`  | client addresses, trusted proxies, per-address limits          |
//! | `descriptors.rs`| RLIMIT_NOFILE and the connection budget it leaves              |
//! | `web.rs`        | HTTP routes, static files, security headers                    |
//! | `web/embedded.rs` | the web client compiled in (feature `embed-web`)             |
//! | `websocket.rs`  | the `/ws` gate: origin check, proxied address limit, buffers   |
//! | `connection.rs` | one connection's state machine (lobby → room → closed)         |
//! | `protocol.rs`   | the JSON messages and the validating parser                    |
//! | `error.rs`      | the stable error codes                                         |
//! | `registry.rs`   | all rooms, participant ids, room limits                        |
//! | `room.rs`       | one room's roster                                              |
//! | `outbox.rs`     | a connection's bounded outgoing queue                          |
//! | `media.rs`      | the seam to the SFU (events in, errors mapped)                 |
//! | `auth.rs`       | HS256 join tokens                                              |
//! | `origin.rs`     | the browser Origin check                                       |
//! | `rate_limit.rs` | the per-connection token bucket                                |
//! | `log_limit.rs`  | the cap on library log lines (per target, per window)          |
//! | `limits.rs`     | every resource limit and its default                           |
//! | `turn.rs`, `turn/` | TURN credentials and the embedded TURN server               |
//! | `metrics.rs`    | Prometheus counters                                            |
//! | `shutdown.rs`   | the shutdown signal and connection tracker                     |
//! | `config.rs`     | [`Config`]                                                     |
//! | `cli.rs`        | the `sealed` command line                                      |
//!
//! Wire format: `docs/PROTOCOL.md`. Deployment: `docs/DEPLOY.md`.
//!
//! # Running a server in-process (tests, the native participant)
//!
//! ```no_run
//! # async fn demo() -> Result<(), signaling::ServerError> {
//! use signaling::{Config, Limits, Server};
//!
//! let config = Config {
//!     // Tighter limits for a test, e.g. a quick flood cut-off:
//!     limits: Limits { rate_per_second: 10, ..Limits::default() },
//!     // 127.0.0.1 with an OS-chosen port. Tests that run several servers at once
//!     // should give each its own `config.sfu.udp_ports` range.
//!     ..Config::ephemeral()
//! };
//! let server = Server::bind(config).await?; // or Server::bind_with_sfu(config, my_sfu)
//! let handle = server.spawn();              // serves on a background task
//! let ws = handle.ws_url();                 // "ws://127.0.0.1:<port>/ws"
//! let http = handle.http_url();             // "http://127.0.0.1:<port>"
//! let sfu = handle.sfu();                   // e.g. to read `sfu.stats()`
//! assert_eq!(handle.counts(), (0, 0));      // (rooms, participants) in signaling
//! handle.shutdown().await?;                 // 1001 to every client, then sfu.shutdown()
//! # let _ = (ws, http, sfu); Ok(()) }
//! ```
//!
//! Dropping a [`ServerHandle`] also triggers shutdown (without waiting for it).

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod descriptors;
pub mod error;
pub mod limits;
pub mod log_limit;
pub mod metrics;
pub mod protocol;
pub mod rate_limit;
pub mod tls;
pub mod turn;

mod accept;
mod addresses;
mod connection;
mod host;
mod media;
mod origin;
mod outbox;
mod proxy;
mod registry;
mod room;
mod server;
mod shutdown;
mod state;
mod web;
mod websocket;

pub use addresses::TrustedProxies;
pub use config::{Config, OriginPolicy, WebSource};
pub use error::{ErrorCode, ProtocolError};
pub use limits::Limits;
pub use server::{SHUTDOWN_GRACE, Server, ServerError, ServerHandle};
pub use shutdown::signal as shutdown_signal;
pub use web::CONTENT_SECURITY_POLICY;
