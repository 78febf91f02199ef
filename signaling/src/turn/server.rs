//! The embedded TURN server: listeners, and the checks Sealed adds in front of the
//! `turn` crate's request handling.
//!
//! The crate (webrtc-rs's TURN server) implements RFC 5766/8656: nonces, long-term
//! credentials, allocations, permissions, channels, relaying. We drive its per-message
//! [`Request`] ourselves instead of its `Server` read loop, because that is where three
//! rules of ours go, each answered with the RFC's error code:
//!
//! | request | check | refusal |
//! |---|---|---|
//! | Allocate | credential expired (`expiry:user` in the past) | 401 Unauthorized |
//! | Allocate | this credential's or the server's allocation limit | 486 Allocation Quota Reached |
//! | CreatePermission, ChannelBind | every XOR-PEER-ADDRESS is an SFU media address | 403 Forbidden |
//!
//! The checks run only on requests whose MESSAGE-INTEGRITY verifies (anything else is
//! left to the crate, which challenges or refuses it), and their refusals carry
//! MESSAGE-INTEGRITY so a client can trust them. The credential's expiry is checked on
//! Allocate only: it bounds when a credential can *open* a relay; an allocation it
//! opened lives while its client keeps refreshing it, so a relayed call can outlast
//! the credential (a reconnect gets a fresh one).
//!
//! Listeners: UDP, TCP and — when TLS is configured — TLS, each with its own
//! allocation table (an allocation belongs to one transport's 5-tuple). A request that
//! panics inside the crate is dropped and logged; the listener keeps serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use stun::attributes::{
    ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
};
use stun::error_code::{
    CODE_ALLOC_QUOTA_REACHED, CODE_FORBIDDEN, CODE_UNAUTHORIZED, ErrorCode, ErrorCodeAttribute,
};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_REQUEST, Getter as _, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, Message, MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use turn::allocation::AllocationInfo;
use turn::allocation::allocation_manager::{Manager, ManagerConfig};
use turn::allocation::five_tuple::FiveTuple;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::proto::PROTO_UDP;
use turn::proto::chandata::ChannelData;
use turn::proto::lifetime::DEFAULT_LIFETIME;
use turn::proto::peeraddr::PeerAddress;
use turn::server::request::Request;
use webrtc_util::Conn;

use super::EmbeddedTurnConfig;
use super::credentials::{TurnSecret, Username};
use super::peers::MediaPeers;
use super::quota::{Exceeded, Quota, Reservation};
use super::relay::RelayGenerator;
use super::stats::{Refusal, TurnStats};
use super::stream;
use crate::auth::unix_now;

/// The REALM of every challenge.
pub const REALM: &str = "sealed";

/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 2048;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TURN stream with no frame for this long is closed. Clients refresh permissions
/// every 4 minutes and allocations before their 10 minutes run out.
const STREAM_IDLE: Duration = Duration::from_secs(600);

/// Nonces are dropped after the crate's own lifetime (one hour) …
const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// … and, beyond this many outstanding, oldest first: every unauthenticated request
/// mints one, and a flood of them must not grow memory without bound. A client
/// whose nonce was dropped gets 438 Stale Nonce and retries with a new one.
const MAX_NONCES: usize = 50_000;

/// How often old nonces are swept.
const NONCE_SWEEP: Duration = Duration::from_secs(30);

/// The addresses the embedded TURN server listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TurnAddrs {
    /// TURN over UDP.
    pub udp: SocketAddr,
    /// TURN over TCP.
    pub tcp: SocketAddr,
    /// TURN over TLS, when TLS is configured.
    pub tls: Option<SocketAddr>,
}

/// A running embedded TURN server.
pub(crate) struct TurnServer {
    addrs: TurnAddrs,
    stats: Arc<TurnStats>,
    listeners: Vec<Arc<Listener>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// What every listener shares.
struct Engine {
    secret: TurnSecret,
    auth: Arc<dyn AuthHandler + Send + Sync>,
    nonces: Arc<Mutex<HashMap<String, Instant>>>,
    quota: Arc<Quota>,
    peers: MediaPeers,
    stats: Arc<TurnStats>,
}

/// One transport's allocations and the pipeline in front of the crate.
struct Listener {
    engine: Arc<Engine>,
    manager: Arc<Manager>,
}

/// The crate's credential lookup: the long-term key of a username in our scheme.
struct SecretAuth {
    secret: TurnSecret,
}

impl AuthHandler for SecretAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        // Expiry is deliberately not checked here, see the module docs.
        Username::parse(username).map_err(|e| turn::Error::Other(e.to_string()))?;
        Ok(generate_auth_key(
            username,
            realm,
            &self.secret.password(username),
        ))
    }
}

impl TurnServer {
    /// Binds the listeners and starts serving. `tls` enables the TLS listener.
    pub async fn start(
        config: &EmbeddedTurnConfig,
        peers: MediaPeers,
        secret: TurnSecret,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<TurnServer> {
        let ip = config.listen_ip;
        let udp = Arc::new(UdpSocket::bind(SocketAddr::new(ip, config.udp_port)).await?);
        let tcp = TcpListener::bind(SocketAddr::new(ip, config.tcp_port)).await?;
        let tls_listener = match &tls {
            Some(_) => Some(TcpListener::bind(SocketAddr::new(ip, config.tls_port)).await?),
            None => None,
        };
        let stats = Arc::new(TurnStats::default());
        let engine = Arc::new(Engine {
            auth: Arc::new(SecretAuth {
                secret: secret.clone(),
            }),
            secret,
            nonces: Arc::new(Mutex::new(HashMap::new())),
            quota: Quota::new(config.max_allocations, config.max_allocations_per_user),
            peers,
            stats: stats.clone(),
        });
        let addrs = TurnAddrs {
            udp: udp.local_addr()?,
            tcp: tcp.local_addr()?,
            tls: tls_listener
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
        };
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        // At most as many streams as allocations: each relayed stream client needs one.
        let slots = Arc::new(Semaphore::new(config.max_allocations));

        let mut listeners = Vec::new();
        let udp_listener = Listener::new(&engine);
        tasks.spawn(serve_udp(udp_listener.clone(), udp, stop.clone()));
        listeners.push(udp_listener);
        let tcp_listener = Listener::new(&engine);
        tasks.spawn(serve_streams(
            tcp_listener.clone(),
            tcp,
            None,
            slots.clone(),
            stop.clone(),
            tasks.clone(),
        ));
        listeners.push(tcp_listener);
        if let (Some(listener), Some(acceptor)) = (tls_listener, tls) {
            let tls_listener = Listener::new(&engine);
            tasks.spawn(serve_streams(
                tls_listener.clone(),
                listener,
                Some(acceptor),
                slots,
                stop.clone(),
                tasks.clone(),
            ));
            listeners.push(tls_listener);
        }
        tasks.spawn(sweep_nonces(engine.nonces.clone(), stop.clone()));
        tracing::info!(udp = %addrs.udp, tcp = %addrs.tcp, tls = ?addrs.tls, "TURN is listening");
        Ok(TurnServer {
            addrs,
            stats,
            listeners,
            stop,
            tasks,
        })
    }

    /// Where it listens.
    pub fn addrs(&self) -> TurnAddrs {
        self.addrs
    }

    /// Its counters.
    pub fn stats(&self) -> &TurnStats {
        &self.stats
    }

    /// Stops listening and closes every allocation.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        for listener in &self.listeners {
            let _ = listener.manager.close().await;
        }
    }
}

impl Listener {
    /// A listener with its own allocation table; allocation ends are fed back into the
    /// quota and the gauges.
    fn new(engine: &Arc<Engine>) -> Arc<Listener> {
        let (closed_tx, mut closed_rx) = mpsc::channel::<AllocationInfo>(1024);
        let manager = Arc::new(Manager::new(ManagerConfig {
            relay_addr_generator: Box::new(RelayGenerator {
                peers: engine.peers.clone(),
                stats: engine.stats.clone(),
            }),
            alloc_close_notify: Some(closed_tx),
        }));
        // Ends when the manager (and with it the sender) is dropped.
        let accounting = engine.clone();
        tokio::spawn(async move {
            while let Some(info) = closed_rx.recv().await {
                if accounting.quota.release(&info.username) {
                    accounting.stats.allocation_closed();
                }
            }
        });
        Arc::new(Listener {
            engine: engine.clone(),
            manager,
        })
    }

    /// Handles one datagram or stream frame from `src`; replies go through `conn`.
    async fn handle(&self, conn: Arc<dyn Conn + Send + Sync>, src: SocketAddr, frame: Vec<u8>) {
        let handled = AssertUnwindSafe(self.process(conn, src, frame))
            .catch_unwind()
            .await;
        if handled.is_err() {
            tracing::error!(%src, "TURN request handling panicked; request dropped");
        }
    }

    async fn process(&self, conn: Arc<dyn Conn + Send + Sync>, src: SocketAddr, frame: Vec<u8>) {
        let mut allocating = None;
        if !ChannelData::is_channel_data(&frame) {
            let mut m = Message::new();
            m.raw = frame.clone();
            if m.decode().is_err() {
                return; // not STUN: the crate would drop it too
            }
            if m.typ.class == CLASS_REQUEST {
                match self.check(&conn, src, &m).await {
                    Checked::Refused => return,
                    Checked::Allocating(reservation, five_tuple) => {
                        allocating = Some((reservation, five_tuple));
                    }
                    Checked::Pass => {}
                }
            }
        }
        let mut request = Request {
            conn,
            src_addr: src,
            buff: frame,
            allocation_manager: self.manager.clone(),
            nonces: self.engine.nonces.clone(),
            auth_handler: self.engine.auth.clone(),
            realm: REALM.to_owned(),
            channel_bind_timeout: DEFAULT_LIFETIME,
        };
        if let Err(e) = request.handle_request().await {
            // Refused requests, stray packets, data for expired permissions: routine.
            tracing::trace!(%src, error = %e, "TURN request not served");
        }
        if let Some((reservation, five_tuple)) = allocating
            && self.manager.get_allocation(&five_tuple).await.is_some()
        {
            reservation.keep();
            self.engine.stats.allocation_opened();
        }
    }

    /// Sealed's rules for one authenticated request (see the module docs).
    async fn check(
        &self,
        conn: &Arc<dyn Conn + Send + Sync>,
        src: SocketAddr,
        m: &Message,
    ) -> Checked {
        let method = m.typ.method;
        let guarded = [
            METHOD_ALLOCATE,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&method);
        if !guarded || !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Checked::Pass;
        }
        let Some((username, integrity)) = self.engine.authenticate(m) else {
            if method == METHOD_ALLOCATE {
                self.engine.stats.refused(Refusal::Credential);
            }
            return Checked::Pass; // the crate refuses it
        };
        if method == METHOD_ALLOCATE {
            let Ok(local) = conn.local_addr() else {
                return Checked::Pass;
            };
            let five_tuple = FiveTuple {
                protocol: PROTO_UDP,
                src_addr: src,
                dst_addr: local,
            };
            if self.manager.get_allocation(&five_tuple).await.is_some() {
                return Checked::Pass; // the crate answers 437 Allocation Mismatch
            }
            let expired = Username::parse(&username)
                .and_then(|u| u.check_expiry(unix_now()))
                .is_err();
            if expired {
                self.engine.stats.refused(Refusal::Credential);
                tracing::debug!(%src, "TURN allocate with an expired credential refused");
                let nonce = self.engine.fresh_nonce().await;
                let reply = error_response(
                    m,
                    CODE_UNAUTHORIZED,
                    "credential expired",
                    Some(nonce),
                    None,
                );
                if let Some(raw) = reply {
                    let _ = conn.send_to(&raw, src).await;
                }
                return Checked::Refused;
            }
            return match self.engine.quota.reserve(&username) {
                Ok(reservation) => Checked::Allocating(reservation, five_tuple),
                Err(limit) => {
                    self.engine.stats.refused(Refusal::Quota);
                    let reason = match limit {
                        Exceeded::User => "allocation limit of this credential reached",
                        Exceeded::Total => "allocation limit of this server reached",
                    };
                    tracing::info!(%src, reason, "TURN allocate refused");
                    reply_error(
                        conn,
                        src,
                        m,
                        CODE_ALLOC_QUOTA_REACHED,
                        reason,
                        Some(integrity),
                    )
                    .await;
                    Checked::Refused
                }
            };
        }
        // CreatePermission / ChannelBind: every peer must be an SFU media address. (The
        // crate reads only the first XOR-PEER-ADDRESS; we check them all.)
        for attr in m
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        {
            let mut single = Message::new();
            single.transaction_id = m.transaction_id;
            single.add(attr.typ, &attr.value);
            let mut peer = PeerAddress::default();
            if peer.get_from(&single).is_err() {
                return Checked::Pass; // malformed: the crate answers 400
            }
            let peer = SocketAddr::new(peer.ip, peer.port);
            if !self.engine.peers.allows(peer) {
                self.engine.stats.refused(Refusal::Peer);
                tracing::info!(%src, %peer, "TURN permission for a peer other than the SFU refused");
                reply_error(
                    conn,
                    src,
                    m,
                    CODE_FORBIDDEN,
                    "this server relays only to its own media ports",
                    Some(integrity),
                )
                .await;
                return Checked::Refused;
            }
        }
        Checked::Pass
    }
}

/// What [`Listener::check`] decided.
enum Checked {
    /// Hand it to the crate.
    Pass,
    /// Hand it to the crate; an allocation may result, holding this slot.
    Allocating(Reservation, FiveTuple),
    /// Already answered with an error.
    Refused,
}

impl Engine {
    /// The request's username and the integrity key, if its MESSAGE-INTEGRITY verifies
    /// under our secret.
    fn authenticate(&self, m: &Message) -> Option<(String, MessageIntegrity)> {
        let username = TextAttribute::get_from_as(m, ATTR_USERNAME).ok()?.text;
        let realm = TextAttribute::get_from_as(m, ATTR_REALM).ok()?.text;
        Username::parse(&username).ok()?;
        let integrity = MessageIntegrity(generate_auth_key(
            &username,
            &realm,
            &self.secret.password(&username),
        ));
        integrity.check(&mut m.clone()).ok()?;
        Some((username, integrity))
    }

    /// A nonce the crate will accept on the client's next try.
    async fn fresh_nonce(&self) -> String {
        let nonce = format!("{:032x}", rand::random::<u128>());
        self.nonces
            .lock()
            .await
            .insert(nonce.clone(), Instant::now());
        nonce
    }
}

/// Sends an error response to request `m`.
async fn reply_error(
    conn: &Arc<dyn Conn + Send + Sync>,
    src: SocketAddr,
    m: &Message,
    code: ErrorCode,
    reason: &str,
    integrity: Option<MessageIntegrity>,
) {
    if let Some(raw) = error_response(m, code, reason, None, integrity) {
        let _ = conn.send_to(&raw, src).await;
    }
}

/// The bytes of an error response to `m`; a 401 carries a fresh NONCE and the REALM.
fn error_response(
    m: &Message,
    code: ErrorCode,
    reason: &str,
    nonce: Option<String>,
    integrity: Option<MessageIntegrity>,
) -> Option<Vec<u8>> {
    let mut attrs: Vec<Box<dyn Setter>> = vec![
        Box::new(m.transaction_id),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason.as_bytes().to_vec(),
        }),
    ];
    if let Some(nonce) = nonce {
        attrs.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce)));
        attrs.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.to_owned())));
    }
    if let Some(integrity) = integrity {
        attrs.push(Box::new(integrity));
    }
    let mut reply = Message::new();
    reply.build(&attrs).ok()?;
    Some(reply.raw)
}

/// The UDP listener: one datagram at a time, like the crate's own loop.
async fn serve_udp(listener: Arc<Listener>, socket: Arc<UdpSocket>, stop: CancellationToken) {
    let conn: Arc<dyn Conn + Send + Sync> = socket.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        match received {
            Ok((n, src)) => listener.handle(conn.clone(), src, buf[..n].to_vec()).await,
            Err(e) => {
                tracing::debug!(error = %e, "TURN UDP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A TCP or TLS listener: one task per client stream.
async fn serve_streams(
    listener: Arc<Listener>,
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let Ok(local) = tcp.local_addr() else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = tcp.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "TURN accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "TURN stream limit reached; connection refused");
            continue;
        };
        let listener = listener.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let stats = listener.engine.stats.clone();
            stats.stream_opened();
            let serve = {
                let listener = listener.clone();
                async move {
                    let handle = |conn, frame| {
                        let listener = listener.clone();
                        async move { listener.handle(conn, peer, frame).await }
                    };
                    let stats = listener.engine.stats.clone();
                    match tls {
                        None => {
                            stream::serve(socket, local, peer, STREAM_IDLE, stats, handle).await
                        }
                        Some(acceptor) => {
                            match tokio::time::timeout(
                                TLS_HANDSHAKE_TIMEOUT,
                                acceptor.accept(socket),
                            )
                            .await
                            {
                                Ok(Ok(tls)) => {
                                    stream::serve(tls, local, peer, STREAM_IDLE, stats, handle)
                                        .await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TURN TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "TURN TLS handshake timed out"),
                            }
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                () = stop.cancelled() => {}
            }
            // A stream's allocation ends with its connection (RFC 8656 §2.2).
            let five_tuple = FiveTuple {
                protocol: PROTO_UDP,
                src_addr: peer,
                dst_addr: local,
            };
            listener.manager.delete_allocation(&five_tuple).await;
            stats.stream_closed();
            drop(slot);
        });
    }
}

/// Drops nonces older than the lifetime, and the oldest beyond [`MAX_NONCES`].
async fn sweep_nonces(nonces: Arc<Mutex<HashMap<String, Instant>>>, stop: CancellationToken) {
    let mut timer = tokio::time::interval(NONCE_SWEEP);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = timer.tick() => {}
        }
        let mut nonces = nonces.lock().await;
        let now = Instant::now();
        nonces.retain(|_, made| now.duration_since(*made) < NONCE_LIFETIME);
        if nonces.len() > MAX_NONCES {
            let mut ages: Vec<Instant> = nonces.values().copied().collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() - MAX_NONCES / 2];
            nonces.retain(|_, made| *made >= cutoff);
        }
    }
}
