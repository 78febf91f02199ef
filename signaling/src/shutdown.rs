//! Graceful shutdown, in the manner of mini-redis.
//!
//! One [`Shutdown`] is shared by the whole server. It carries two things:
//!
//! * a *signal* (a `CancellationToken`, tokio-util's broadcast-once channel): every
//!   connection task selects on [`Shutdown::triggered`] next to its socket, so when
//!   the server is told to stop each client gets a WebSocket close `1001 server
//!   shutting down` and the connection cleans up after itself (leaves its room,
//!   leaves the SFU);
//! * a *tracker* (a `TaskTracker`): every connection holds a [`ConnectionGuard`]
//!   while it runs, so the server can wait, after triggering, until all of them have
//!   finished — and only then shut the SFU down and return.
//!
//! axum's own graceful shutdown covers plain HTTP requests; upgraded WebSockets are
//! detached from hyper, which is why they need this.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Server-wide shutdown signal plus the set of running connections. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shutdown {
    signal: CancellationToken,
    tracker: TaskTracker,
}

/// Held by a running connection; the server's final wait ends when all are dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    _token: TaskTrackerToken,
}

impl Shutdown {
    /// Tells every connection (and the accept loop) to stop. Idempotent.
    pub fn trigger(&self) {
        self.signal.cancel();
    }

    /// True once [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.signal.is_cancelled()
    }

    /// Completes when shutdown is triggered (immediately if it already was).
    pub async fn triggered(&self) {
        self.signal.cancelled().await;
    }

    /// Registers a running connection.
    pub fn guard(&self) -> ConnectionGuard {
        ConnectionGuard {
            _token: self.tracker.token(),
        }
    }

    /// After triggering: waits until every connection has finished, at most
    /// `timeout`. Returns false on timeout.
    pub async fn wait_for_connections(&self, timeout: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
