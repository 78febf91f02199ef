//! What every request handler and connection task shares.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::metrics::{Metrics, RegistryCounts};
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::turn::TurnService;

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
    /// One permit per open WebSocket ([`crate::limits::Limits::max_connections`]).
    pub connection_slots: Arc<Semaphore>,
    /// TURN credentials and the embedded TURN server.
    pub turn: TurnService,
}

impl AppState {
    /// Builds the state for `config` around an existing SFU and TURN service.
    pub fn new(config: Config, sfu: sfu::Sfu, turn: TurnService) -> Self {
        let limits = &config.limits;
        AppState {
            registry: Registry::new(limits.max_rooms, limits.max_participants),
            connection_slots: Arc::new(Semaphore::new(limits.max_connections)),
            metrics: Metrics::default(),
            sfu,
            turn,
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
            },
            self.sfu.stats(),
        );
        self.turn.render_metrics(&mut out);
        out
    }
}
