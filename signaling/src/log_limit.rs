//! A rate limit for log lines from the libraries the server runs (webrtc-rs, the TURN
//! server, hyper, ...).
//!
//! A peer can make a library log per packet or per message (webrtc-rs warned once per
//! forwarded packet to a subscriber whose connection had no SRTP keys yet: 100 lines a
//! second per such participant). [`LogLimit`] lets through at most `burst` events per
//! target and level in each window and counts the rest; [`LogLimit::take_suppressed`]
//! hands the counts to a task that logs one summary line per target and window. Our own
//! crates' events are not limited: they are written to be rare, and each names its
//! participant. Events more verbose than INFO are not limited either: an operator who
//! turns on debug logging for a library wants all of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::layer::{Context, Filter};

/// Events let through per target and level in one window by default.
pub const DEFAULT_BURST: u32 = 10;
/// The default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Crates whose events are never limited (module-path targets start with the crate name).
const OURS: [&str; 3] = ["signaling", "sfu", "sealed"];

/// The limiter; cheap to clone (shared state), used as a per-layer [`Filter`].
#[derive(Clone)]
pub struct LogLimit {
    burst: u32,
    window: Duration,
    state: Arc<Mutex<State>>,
}

struct State {
    window_start: Instant,
    /// Events seen this window per (target, level).
    seen: HashMap<(String, Level), u32>,
    /// Events dropped since the last [`LogLimit::take_suppressed`], per target.
    suppressed: BTreeMap<String, u64>,
}

impl LogLimit {
    /// At most `burst` events per target and level every `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            state: Arc::new(Mutex::new(State {
                window_start: Instant::now(),
                seen: HashMap::new(),
                suppressed: BTreeMap::new(),
            })),
        }
    }

    /// The window this limiter counts in.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether an event of `level` from `target` at `now` may be written (and counts it).
    pub fn admit(&self, target: &str, level: Level, now: Instant) -> bool {
        if !limited(target, level) {
            return true;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(state.window_start) >= self.window {
            state.window_start = now;
            state.seen.clear();
        }
        let seen = state.seen.entry((target.to_owned(), level)).or_insert(0);
        *seen = seen.saturating_add(1);
        if *seen <= self.burst {
            return true;
        }
        *state.suppressed.entry(target.to_owned()).or_insert(0) += 1;
        false
    }

    /// How many events each target had suppressed since the last call.
    pub fn take_suppressed(&self) -> BTreeMap<String, u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.suppressed)
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new(DEFAULT_BURST, DEFAULT_WINDOW)
    }
}

/// Whether events of `level` from `target` are subject to the limit.
fn limited(target: &str, level: Level) -> bool {
    // In tracing, more verbose levels compare greater: TRACE > DEBUG > INFO > WARN.
    if level > Level::INFO {
        return false;
    }
    let krate = target.split("::").next().unwrap_or(target);
    !OURS.contains(&krate)
}

impl<S> Filter<S> for LogLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() && limited(meta.target(), *meta.level()) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        // A line from a library that logs through `log` (rtc, rtc-ice, rtc-dtls, ...)
        // arrives as an event of tracing-log's callsite, whose target is just "log":
        // its own target is in the event's fields. Without this every such library would
        // share one burst, and one chatty module would hide all the others' lines.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        self.admit(meta.target(), *meta.level(), Instant::now())
    }

    /// The limit lowers no level: the filter it is combined with decides the maximum.
    /// Without this hint the combination's maximum is unknown, `log` records (webrtc-rs's
    /// `trace!` on every packet) all pass `log::max_level()` and reach the subscriber,
    /// which cost ≈ 8 % of the media worker's CPU before they were rejected there.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

/// Logs, once per window, how many lines each library had suppressed. Runs until the
/// process ends.
pub async fn report(limit: LogLimit) {
    let mut tick = tokio::time::interval(limit.window());
    tick.tick().await;
    loop {
        tick.tick().await;
        for (target, count) in limit.take_suppressed() {
            tracing::warn!(%target, suppressed = count, window = ?limit.window(),
                "repeated library log lines suppressed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_with_a_level_filter_the_maximum_level_stays_known() {
        use tracing::level_filters::LevelFilter;
        use tracing_subscriber::filter::FilterExt as _;
        // As main.rs composes them.
        let combined = tracing_subscriber::EnvFilter::new("info").and(LogLimit::default());
        assert_eq!(
            Filter::<tracing_subscriber::Registry>::max_level_hint(&combined),
            Some(LevelFilter::INFO)
        );
    }
    use std::io::Write;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, fmt};

    #[test]
    fn only_libraries_at_info_and_above_are_limited() {
        assert!(limited("rtc::peer_connection::handler::srtp", Level::WARN));
        assert!(limited("turn::server", Level::INFO));
        assert!(!limited("rtc::ice", Level::DEBUG));
        assert!(!limited("signaling::connection", Level::WARN));
        assert!(!limited("sfu::participant", Level::ERROR));
        assert!(!limited("sealed", Level::INFO));
    }

    #[test]
    fn a_burst_per_target_and_level_then_counted_until_the_window_ends() {
        let limit = LogLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let srtp = "rtc::peer_connection::handler::srtp";
        let admitted = (0..100)
            .filter(|_| limit.admit(srtp, Level::WARN, t0))
            .count();
        assert_eq!(admitted, 3);
        // Another level and another target have their own bursts.
        assert!(limit.admit(srtp, Level::ERROR, t0));
        assert!(limit.admit("turn::server", Level::WARN, t0));
        // Our own lines always pass.
        assert!((0..100).all(|_| limit.admit("sfu::room", Level::WARN, t0)));
        assert_eq!(
            limit.take_suppressed(),
            BTreeMap::from([(srtp.to_owned(), 97)])
        );
        assert!(
            limit.take_suppressed().is_empty(),
            "counts are handed out once"
        );
        assert!(!limit.admit(srtp, Level::WARN, t0 + Duration::from_secs(9)));
        assert!(limit.admit(srtp, Level::WARN, t0 + Duration::from_secs(10)));
    }

    /// A writer collecting what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a fmt layer behind `limit` writes while `emit` runs.
    fn written_through(limit: &LogLimit, emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .with_writer(move || writer.clone())
                .with_filter(limit.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn libraries_logging_through_log_get_a_burst_each() {
        // What the server's subscriber does: `log` records become tracing events.
        let _ = tracing_log::LogTracer::init();
        let limit = LogLimit::new(5, Duration::from_secs(60));
        let text = written_through(&limit, || {
            for n in 0..100 {
                log::info!(target: "rtc::peer_connection::handler::dtls", "chatty {n}");
            }
            log::info!(target: "rtc_ice::agent", "Setting new connection state: Connected");
        });
        assert_eq!(text.matches("chatty").count(), 5, "{text}");
        assert_eq!(
            text.matches("Setting new connection state").count(),
            1,
            "another module's line is not hidden by the chatty one's: {text}"
        );
        assert_eq!(
            limit.take_suppressed(),
            BTreeMap::from([("rtc::peer_connection::handler::dtls".to_owned(), 95)])
        );
    }

    #[test]
    fn a_library_warning_per_packet_becomes_a_few_lines() {
        let limit = LogLimit::new(5, Duration::from_secs(60));
        let text = written_through(&limit, || {
            for n in 0..1000 {
                tracing::warn!(target: "rtc::peer_connection::handler::srtp", n, "srtp not ready");
            }
            tracing::warn!(target: "signaling::connection", "ours");
        });
        assert_eq!(text.matches("srtp not ready").count(), 5, "{text}");
        assert_eq!(text.matches("ours").count(), 1);
        assert_eq!(
            limit
                .take_suppressed()
                .get("rtc::peer_connection::handler::srtp"),
            Some(&995)
        );
    }
}
