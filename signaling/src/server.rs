//! Starting, running and stopping a server — also in-process, for tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), signaling::ServerError> {
//! use signaling::{Config, Server};
//!
//! // Port 0: the OS picks a free port; `Config::ephemeral()` does exactly that.
//! let server = Server::bind(Config::ephemeral()).await?;
//! let handle = server.spawn();
//! let ws_url = handle.ws_url(); // "ws://127.0.0.1:<port>/ws"
//! // … connect clients to `ws_url`, fetch `handle.http_url()` …
//! handle.shutdown().await?; // closes every WebSocket with 1001, then the SFU
//! # Ok(()) }
//! ```
//!
//! Connections are accepted and counted by [`crate::accept`]. The shutdown sequence
//! (see [`crate::shutdown`]): stop accepting, finish in-flight HTTP requests, tell every WebSocket `1001 server shutting down` and wait for the
//! connection tasks to leave their rooms (bounded by [`SHUTDOWN_GRACE`]), then
//! [`sfu::Sfu::shutdown`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, ClusterError, HEARTBEAT};
use crate::config::Config;
use crate::outbox::Outbound;
use crate::state::AppState;
use crate::tls::{Fingerprints, Tls};
use crate::turn::{TurnAddrs, TurnService, TurnSnapshot};
use tokio_rustls::TlsAcceptor;

/// Longest wait for WebSocket connections to finish after shutdown was triggered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The SFU refused its configuration.
    #[error("cannot start the media server: {0}")]
    Sfu(#[from] sfu::SfuError),
    /// The embedded TURN server could not bind its ports.
    #[error("cannot start the TURN server: {0}")]
    Turn(std::io::Error),
    /// The certificate could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// Multi-node mode could not start (a bad `--redis` or `--node-url`).
    #[error("multi-node mode: {0}")]
    Cluster(#[from] ClusterError),
    /// The server task panicked or was cancelled.
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The plain-HTTP listener that redirects to HTTPS, if configured.
    redirect: Option<TcpListener>,
    /// The HTTPS handshake, when TLS is on.
    https: Option<TlsAcceptor>,
    state: Arc<AppState>,
}

impl Server {
    /// Binds the listen address and creates the SFU. Nothing is served until
    /// [`Server::run`] or [`Server::spawn`].
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let sfu = sfu::Sfu::new(config.sfu.clone())?;
        Self::bind_with_sfu(config, sfu).await
    }

    /// Like [`Server::bind`] around an SFU the caller made (e.g. one whose test tap
    /// the caller wants to observe). `config.sfu` must describe that SFU: the embedded
    /// TURN server relays only to the media addresses it names.
    ///
    /// The connection cap is `config.limits.max_connections` lowered to what the
    /// process's descriptor limit allows next to the media sockets
    /// ([`crate::descriptors::connection_budget`]).
    pub async fn bind_with_sfu(mut config: Config, sfu: sfu::Sfu) -> Result<Server, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr()?;
        config.limits.max_connections = connection_cap(&config);
        crate::web::check_source(&config.web);
        let tls = match &config.tls {
            Some(tls) => Some(Arc::new(Tls::new(tls)?)),
            None => None,
        };
        let https = tls.as_ref().map(|t| t.http_acceptor()).transpose()?;
        let redirect = match config.tls.as_ref().and_then(|t| t.http_redirect) {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let turn_tls = tls.as_ref().map(|t| t.turn_acceptor()).transpose()?;
        let turn = TurnService::start(
            config.turn.clone(),
            &config.sfu,
            &sfu.media_addrs(),
            turn_tls,
        )
        .await
        .map_err(ServerError::Turn)?;
        let cluster = match &config.cluster {
            Some(cluster) => {
                // What clients' ICE candidates name: the public IP when one is set.
                let media: Vec<SocketAddr> = sfu
                    .media_addrs()
                    .into_iter()
                    .map(|a| SocketAddr::new(config.sfu.public_ip.unwrap_or(a.ip()), a.port()))
                    .collect();
                let cluster = Cluster::new(cluster, local_addr, &media)?;
                tracing::info!(node = cluster.id(), "multi-node mode");
                if let Some(ip) = cluster.url_ip()
                    && !config.trusted_proxies.contains(ip)
                {
                    // Then the other nodes' routed joins count as clients of their
                    // address and may be routed again.
                    tracing::warn!(
                        %ip,
                        "this node's --node-url is not in --trusted-proxies; list the nodes' network there"
                    );
                }
                Some(Arc::new(cluster))
            }
            None => None,
        };
        Ok(Server {
            listener,
            local_addr,
            redirect,
            https,
            state: Arc::new(AppState::new(config, sfu, turn, tls, cluster)),
        })
    }

    /// The bound address (with the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's SFU (a cheap clone).
    pub fn sfu(&self) -> sfu::Sfu {
        self.state.sfu.clone()
    }

    /// Where the embedded TURN server listens, if it runs.
    pub fn turn_addrs(&self) -> Option<TurnAddrs> {
        self.state.turn.addrs()
    }

    /// The certificate's fingerprints, when TLS is on.
    pub fn tls_fingerprints(&self) -> Option<Fingerprints> {
        self.state.tls.as_ref().map(|t| t.fingerprints().clone())
    }

    /// Where the HTTP→HTTPS redirect listens, if configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `signal` completes (e.g. [`crate::shutdown_signal`]), then shuts
    /// down gracefully.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state;
        let shutdown = state.shutdown.clone();
        let router = crate::web::router(state.clone());
        let graceful = async {
            tokio::select! {
                () = signal => {}
                () = shutdown.triggered() => {}
            }
            shutdown.trigger();
            tracing::info!("shutting down");
        };
        let redirect = async {
            if let Some(listener) = self.redirect {
                let router = crate::tls::redirect_router(self.local_addr.port());
                crate::accept::accept_loop(listener, state.clone(), router, None).await;
            }
        };
        let reload = async {
            #[cfg(unix)]
            if let Some(tls) = state.tls.clone().filter(|t| t.reloadable()) {
                crate::tls::reload_on_sighup(tls, shutdown.triggered()).await;
            }
        };
        let heartbeat = async {
            if let Some(cluster) = state.cluster.clone() {
                heartbeat(&state, &cluster).await;
            }
        };
        // The accept loops (and the reloader, and the heartbeat) end on the same trigger.
        tokio::join!(
            crate::accept::accept_loop(self.listener, state.clone(), router, self.https),
            redirect,
            reload,
            heartbeat,
            graceful
        );
        if !shutdown.wait_for_connections(SHUTDOWN_GRACE).await {
            tracing::warn!("some connections did not finish within {SHUTDOWN_GRACE:?}");
        }
        if let Some(cluster) = &state.cluster {
            match cluster.deregister().await {
                Ok(()) => tracing::info!("left the cluster"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not leave the cluster; its claims expire by themselves")
                }
            }
        }
        state.turn.close().await;
        state.sfu.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Runs the server on a background task; the returned handle stops it.
    pub fn spawn(self) -> ServerHandle {
        let local_addr = self.local_addr;
        let state = self.state.clone();
        let task = tokio::spawn(self.run(std::future::pending()));
        ServerHandle {
            local_addr,
            state,
            task: Some(task),
        }
    }
}

/// Renews this node's registration and room claims every [`HEARTBEAT`] until shutdown.
async fn heartbeat(state: &AppState, cluster: &Cluster) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.triggered() => return,
            _ = ticks.tick() => {}
        }
        let (rooms, participants) = state.registry.room_names();
        match cluster.heartbeat(&rooms, participants).await {
            Ok(lost) => {
                for room in lost {
                    let closed = state.registry.close_room(&room, || Outbound::Moved);
                    tracing::info!(%room, participants = closed, "closed a room another node owns");
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }
}

/// The configured connection cap, lowered to the descriptor budget.
fn connection_cap(config: &Config) -> usize {
    let configured = config.limits.max_connections;
    let Some(nofile) = crate::descriptors::soft_limit() else {
        return configured;
    };
    // The embedded TURN server's relay sockets and streams come out of the same budget.
    let media = crate::descriptors::media_descriptors(&config.sfu) + config.turn.descriptors();
    let budget = crate::descriptors::connection_budget(nofile, media);
    let cap = configured.min(budget);
    if cap < configured && configured != crate::Limits::default().max_connections {
        tracing::warn!(
            configured,
            cap,
            nofile,
            "--max-connections is above what the descriptor limit allows; lowered"
        );
    }
    tracing::info!(
        cap,
        nofile,
        media_sockets = media,
        reserved = crate::descriptors::RESERVED,
        "connection cap"
    );
    cap
}

/// A server running on a background task (see [`Server::spawn`]). Dropping the handle
/// triggers shutdown without waiting for it; call [`ServerHandle::shutdown`] to wait.
pub struct ServerHandle {
    local_addr: SocketAddr,
    state: Arc<AppState>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<addr>` (`https://` with TLS; no trailing slash), for HTTP requests.
    pub fn http_url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.local_addr)
    }

    /// `ws://<addr>/ws` (`wss://` with TLS), the signaling endpoint.
    pub fn ws_url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", self.local_addr)
    }

    /// The certificate's fingerprints, when TLS is on.
    pub fn tls_fingerprints(&self) -> Option<Fingerprints> {
        self.state.tls.as_ref().map(|t| t.fingerprints().clone())
    }

    /// Re-reads the certificate files, as SIGHUP does; new connections get the new
    /// certificate, open ones keep theirs.
    pub fn reload_tls(&self) -> Result<Fingerprints, crate::tls::TlsError> {
        match &self.state.tls {
            Some(tls) => tls.reload(),
            None => Err(crate::tls::TlsError::NothingToReload),
        }
    }

    /// The server's SFU (a cheap clone).
    pub fn sfu(&self) -> sfu::Sfu {
        self.state.sfu.clone()
    }

    /// Where the embedded TURN server listens, if it runs.
    pub fn turn_addrs(&self) -> Option<TurnAddrs> {
        self.state.turn.addrs()
    }

    /// The embedded TURN server's counters, if it runs.
    pub fn turn_stats(&self) -> Option<TurnSnapshot> {
        self.state.turn.stats()
    }

    /// `(rooms, participants)` in the signaling registry right now.
    pub fn counts(&self) -> (usize, usize) {
        self.state.registry.counts()
    }

    /// Open WebSocket connections right now.
    pub fn open_connections(&self) -> u64 {
        self.state.metrics.open_connections()
    }

    /// Open TCP connections counted against the cap right now (HTTP, WebSocket, or
    /// not speaking yet).
    pub fn open_tcp_connections(&self) -> usize {
        self.state.admission.open()
    }

    /// The connection cap in force (the configured one, lowered to the descriptor
    /// budget).
    pub fn connection_cap(&self) -> usize {
        self.state.admission.cap()
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.state.shutdown.trigger();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.state.shutdown.trigger();
    }
}
