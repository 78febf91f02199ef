//! What every request handler and connection task shares.

use crate::accept::Admission;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::{Metrics, RegistryCounts};
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::tls::Tls;
use crate::turn::TurnService;
use std::sync::Arc;

/// Server-wide state, behind an `Arc`.
pub(crate) struct AppState {
    /// The configuration the server started with.
    pub config: Config,
    /// Rooms and rosters.
    pub registry: Registry,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The media plane.
    pub sfu: sfu::Sfu,
    /// Shutdown signal and connection tracker.
    pub shutdown: Shutdown,
    /// Connection cap and per-address counters.
    pub admission: Admission,
    /// TURN credentials and the embedded TURN server.
    pub turn: TurnService,
    /// The certificate, when TLS is on.
    pub tls: Option<Arc<Tls>>,
    /// Multi-node membership, with `--redis`.
    pub cluster: Option<Arc<Cluster>>,
}

impl AppState {
    /// Builds the state for `config` around an existing SFU and TURN service,
    /// accepting at most `config.limits.max_connections` connections.
    pub fn new(
        config: Config,
        sfu: sfu::Sfu,
        turn: TurnService,
        tls: Option<Arc<Tls>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let limits = &config.limits;
        AppState {
            registry: Registry::new(limits.max_rooms, limits.max_participants, sfu.clone()),
            admission: Admission::new(
                limits.max_connections,
                limits,
                config.trusted_proxies.clone(),
            ),
            metrics: Metrics::default(),
            sfu,
            turn,
            tls,
            cluster,
            shutdown: Shutdown::default(),
            config,
        }
    }

    /// Renders `/metrics`.
    pub fn render_metrics(&self) -> String {
        let (rooms, participants) = self.registry.counts();
        let mut out = self.metrics.render(
            RegistryCounts {
                rooms,
                participants,
                tcp_connections: self.admission.open(),
                connection_cap: self.admission.cap(),
            },
            self.sfu.stats(),
        );
        self.turn.render_metrics(&mut out);
        if let Some(cluster) = &self.cluster {
            cluster.render_metrics(&mut out);
        }
        out
    }
}
