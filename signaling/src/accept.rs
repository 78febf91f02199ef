//! The accept loop: every TCP connection is counted from the moment it is accepted
//! until its last byte, HTTP request or WebSocket alike.
//!
//! ```text
//! accept ──▶ admit ──▶ Serve(permit)  ──▶ serve_connection: HTTP/1.1 + upgrades
//!   │          │                              (header timeout, graceful shutdown)
//!   │          ├─▶ AtCapacity(turn)   ──▶ serve_refused: /healthz 200, else 503
//!   │          └─▶ Refuse(reason)     ──▶ a canned 503, closed at once
//!   └─ EMFILE/ENFILE ──▶ back off (10 ms … 1 s), one log line per 10 s
//! ```
//!
//! * **Cap.** [`Limits::max_connections`] permits, lowered to the descriptor budget
//!   ([`crate::descriptors`]), so the server refuses with 503 before the kernel
//!   refuses `accept`. A connection holds its permit inside its byte stream
//!   ([`Counted`]), so a WebSocket that hyper hands over on upgrade keeps it until it
//!   closes, and a client that connects and never sends a byte holds one too.
//! * **Health at the cap.** Connections over the cap are not dropped blindly: the
//!   latest [`REFUSED_SLOTS`] of them get a short-lived HTTP server that answers
//!   `/healthz` and says 503 to everything else, so monitoring still sees the
//!   server alive while it is full. When the pool is full the oldest is closed to
//!   make room ([`RefusedPool`]): a health check sends its request at once, so
//!   attackers that connect and stay silent cannot crowd it out.
//! * **Per address.** A client address over [`Limits::max_connections_per_address`]
//!   gets the canned 503 without being read (see [`crate::addresses`]).
//! * **Timeouts.** A client must send each request head within
//!   [`Limits::header_timeout`], including the first one and the WebSocket upgrade:
//!   a silent or trickling client is gone within seconds.
//!
//! HTTP/1.1 only: browsers speak HTTP/2 only over TLS and reverse proxies talk
//! HTTP/1.1 to their upstream; one request stream per connection keeps the
//! accounting exact.
//!
//! [`serve_connection`] takes any `AsyncRead + AsyncWrite` byte stream, so a TLS
//! acceptor slots in between `accept` and it without touching the rest.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::addresses::{AddressKey, AddressLimits, ConnectionSlot, TrustedProxies};
use crate::limits::Limits;
use crate::state::AppState;

/// Connections over the cap that may be in the health-only server at once.
pub(crate) const REFUSED_SLOTS: usize = 64;

/// How long a connection over the cap may take to send its request.
const REFUSED_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest HTTP request head buffered (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How often forgotten per-address entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// At most one log line per this interval while `accept` keeps failing.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Decides for each new connection whether it is served.
#[derive(Debug)]
pub(crate) struct Admission {
    cap: usize,
    slots: Arc<Semaphore>,
    refused: Arc<RefusedPool>,
    /// Per-address counters, shared with the WebSocket gate and the join path.
    pub addresses: Arc<AddressLimits>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub proxies: TrustedProxies,
}

/// What to do with a new connection.
pub(crate) enum Admit {
    /// Serve it; the permit counts it until it closes.
    Serve(ConnectionPermit),
    /// The server is full: answer `/healthz`, 503 to anything else, unless evicted.
    AtCapacity(RefusedTurn),
    /// Refuse with a canned 503 and close, with this reason.
    Refuse(&'static str),
}

/// A connection's place under the server cap (and its address's, unless the peer is
/// a trusted proxy). Freed when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    _address: Option<ConnectionSlot>,
}

impl Admission {
    /// Admission for `cap` connections and the per-address fields of `limits`.
    pub fn new(cap: usize, limits: &Limits, proxies: TrustedProxies) -> Self {
        Admission {
            cap,
            slots: Arc::new(Semaphore::new(cap)),
            refused: Arc::default(),
            addresses: Arc::new(AddressLimits::new(limits)),
            proxies,
        }
    }

    /// Decides about a connection from `peer`.
    pub fn admit(&self, peer: SocketAddr) -> Admit {
        let address = if self.proxies.contains(peer.ip()) {
            None
        } else {
            match self.addresses.connect(AddressKey::of(peer.ip())) {
                Some(slot) => Some(slot),
                None => return Admit::Refuse("too many connections from your address"),
            }
        };
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Admit::Serve(ConnectionPermit {
                _slot: slot,
                _address: address,
            }),
            Err(_) => Admit::AtCapacity(self.refused.enter()),
        }
    }

    /// The connection cap in force.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections holding a permit right now.
    pub fn open(&self) -> usize {
        self.cap - self.slots.available_permits()
    }
}

/// Accepts connections until shutdown. Each is served on its own task.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<AppState>, router: Router) {
    let mut errors = AcceptErrors::default();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        let accepted = tokio::select! {
            biased;
            () = state.shutdown.triggered() => break,
            _ = sweep.tick() => {
                state.admission.addresses.sweep(tokio::time::Instant::now());
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                errors.recovered();
                accepted
            }
            Err(e) => {
                state.metrics.accept_error();
                errors.back_off(&e).await;
                continue;
            }
        };
        match state.admission.admit(peer) {
            Admit::Serve(permit) => {
                // Signaling messages are small and latency matters more than packets.
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let router = router.clone();
                tokio::spawn(serve_connection(tcp, peer, permit, state, router));
            }
            Admit::AtCapacity(turn) => {
                state.metrics.connection_refused();
                tokio::spawn(serve_refused(tcp, turn));
            }
            Admit::Refuse(reason) => {
                state.metrics.connection_refused();
                refuse_now(&tcp, reason);
            }
        }
    }
    tracing::debug!("stopped accepting");
}

/// Serves HTTP/1.1 and WebSocket upgrades on one admitted connection until it
/// closes. `io` is any byte stream: a `TcpStream`, or a TLS stream around one.
pub(crate) async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    permit: ConnectionPermit,
    state: Arc<AppState>,
    router: Router,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Registered so that shutdown waits for in-flight requests.
    let _guard = state.shutdown.guard();
    let io = TokioIo::new(Counted {
        io,
        _permit: permit,
    });
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config.limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = state.shutdown.triggered() => {
            // Finish the request in flight, then close; idle connections close now.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        if e.is_timeout() {
            state.metrics.header_timeout();
            tracing::debug!(%peer, "no complete request head in time; closed");
        } else {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// Serves one connection that came in over the cap: `/healthz` answers, anything
/// else gets 503, and the connection closes after one request or
/// [`REFUSED_TIMEOUT`].
async fn serve_refused(tcp: TcpStream, turn: RefusedTurn) {
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        let (status, body) = if request.uri().path() == "/healthz" {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "too many connections")
        };
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from(body))
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(REFUSED_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = http.serve_connection(TokioIo::new(tcp), service);
    tokio::select! {
        _ = connection => {}
        () = turn.evicted.notified() => {}
        () = tokio::time::sleep(REFUSED_TIMEOUT * 2) => {}
    }
}

/// The connections being answered over the cap, oldest first. Entering a full pool
/// evicts the oldest, so the pool holds at most [`REFUSED_SLOTS`] connections and
/// the newest always gets a turn.
#[derive(Debug, Default)]
pub(crate) struct RefusedPool {
    inner: std::sync::Mutex<RefusedInner>,
}

#[derive(Debug, Default)]
struct RefusedInner {
    next_id: u64,
    turns: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

/// One connection's place in the [`RefusedPool`]; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct RefusedTurn {
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
    pool: Arc<RefusedPool>,
}

impl RefusedPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, RefusedInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enter(self: &Arc<Self>) -> RefusedTurn {
        let mut inner = self.lock();
        if inner.turns.len() >= REFUSED_SLOTS
            && let Some((_, oldest)) = inner.turns.pop_front()
        {
            // Stores a permit if that connection is not waiting yet: never lost.
            oldest.notify_one();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evicted = Arc::new(tokio::sync::Notify::new());
        inner.turns.push_back((id, evicted.clone()));
        RefusedTurn {
            id,
            evicted,
            pool: self.clone(),
        }
    }

    /// Connections in the pool.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().turns.len()
    }
}

impl Drop for RefusedTurn {
    fn drop(&mut self) {
        let mut inner = self.pool.lock();
        if let Some(i) = inner.turns.iter().position(|(id, _)| *id == self.id) {
            inner.turns.remove(i);
        }
    }
}

/// Writes a canned 503 without reading anything, and closes. The write fits in an
/// empty socket buffer, so it never waits.
fn refuse_now(tcp: &TcpStream, reason: &str) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 10\r\n\r\n{reason}",
        reason.len()
    );
    let _ = tcp.try_write(response.as_bytes());
}

/// A connection's byte stream together with its permit: whoever ends up owning the
/// stream (hyper, or the WebSocket after an upgrade) frees the permit by dropping it.
struct Counted<IO> {
    io: IO,
    _permit: ConnectionPermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Backs off while `accept` fails for lack of descriptors or memory, and logs such
/// failures at most once per [`ACCEPT_ERROR_LOG_EVERY`] instead of once per attempt.
#[derive(Debug)]
struct AcceptErrors {
    delay: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors {
            delay: BACKOFF_MIN,
            unlogged: 0,
            last_log: None,
        }
    }
}

impl AcceptErrors {
    fn recovered(&mut self) {
        self.delay = BACKOFF_MIN;
    }

    async fn back_off(&mut self, e: &io::Error) {
        if !is_resource_exhaustion(e) {
            // ECONNABORTED and friends: that one connection is gone, go on.
            tracing::debug!(error = %e, "accept failed");
            return;
        }
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY)
        {
            tracing::warn!(
                error = %e,
                failures = self.unlogged,
                retry_in = ?self.delay,
                "cannot accept connections; backing off"
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once only spins.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
        || e.kind() == io::ErrorKind::OutOfMemory
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(cap: usize, per_address: usize, proxies: &[&str]) -> Admission {
        let limits = Limits {
            max_connections_per_address: per_address,
            ..Limits::default()
        };
        let proxies = proxies
            .iter()
            .map(|p| TrustedProxies::parse_entry(p).unwrap())
            .collect();
        Admission::new(cap, &limits, TrustedProxies::new(proxies))
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 40_000)
    }

    #[test]
    fn over_the_cap_gets_the_health_only_server_newest_first() {
        let a = admission(2, 100, &[]);
        let p1 = a.admit(peer("192.0.2.1"));
        let _p2 = a.admit(peer("192.0.2.2"));
        assert_eq!(a.open(), 2);
        let refused: Vec<RefusedTurn> = (0..REFUSED_SLOTS + 3)
            .map(|_| match a.admit(peer("192.0.2.3")) {
                Admit::AtCapacity(turn) => turn,
                _ => panic!("expected the health-only server"),
            })
            .collect();
        assert_eq!(a.refused.len(), REFUSED_SLOTS);
        // The three oldest were told to go; the newest were not.
        let evicted = |t: &RefusedTurn| {
            let n = t.evicted.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(refused[..3].iter().all(evicted));
        assert!(!refused[3..].iter().any(evicted));
        drop(p1);
        drop(refused);
        assert_eq!(a.refused.len(), 0);
        assert!(matches!(a.admit(peer("192.0.2.4")), Admit::Serve(_)));
    }

    #[test]
    fn per_address_refusals_do_not_apply_to_trusted_proxies() {
        let a = admission(100, 1, &["127.0.0.1"]);
        let _first = a.admit(peer("192.0.2.1"));
        assert!(matches!(a.admit(peer("192.0.2.1")), Admit::Refuse(_)));
        let proxied: Vec<Admit> = (0..5).map(|_| a.admit(peer("127.0.0.1"))).collect();
        assert!(proxied.iter().all(|r| matches!(r, Admit::Serve(_))));
    }

    #[test]
    fn only_exhaustion_errors_back_off() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(24)));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(23)));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(103)));
    }
}
