//! One signaling connection, from upgrade to close.
//!
//! A connection is a small state machine — *lobby* (connected, not joined) →
//! *in a room* → closed — driven by one task that waits on four things at once:
//!
//! 1. the server's shutdown signal → close `1001 server shutting down`;
//! 2. the "too slow" signal of its own outbox → close `1008`;
//! 3. its outbox (messages from the room and from the SFU) → write them out;
//! 4. the keepalive timer → ping, or drop a peer that has gone silent;
//! 5. the socket → rate-limit, parse, act.
//!
//! The select is `biased` in that order, so everything queued for the client (its
//! `welcome` above all) is written before the next client message is read.
//!
//! Replies to the client's own requests (`publish_answer`, errors) are written
//! directly rather than queued: a `publish_answer` must reach the client before the
//! SFU's trickled publish candidates, which the SFU may already have queued.
//!
//! Every rejected message gets an `error` and the connection stays usable; the
//! connection is closed only when continuing would hurt the server: a flood that does
//! not stop (1008), a frame over the hard size cap (1009), a text frame that is not
//! UTF-8 (1007), a client that does not read (1008), no `join` within the join timeout
//! (1008), or a media failure (1011).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::addresses::{AddressKey, JoinRefusal, RoomSlot};
use crate::auth::{TokenError, unix_now};
use crate::cluster::{Route, RoutedClaim};
use crate::error::{ErrorCode, ProtocolError};
use crate::media;
use crate::outbox::{Outbound, Outbox, OutboxReceiver};
use crate::protocol::{ClientMessage, Join, ParticipantId, ServerMessage, parse_client_message};
use crate::proxy::{ClientRequest, Upstream};
use crate::rate_limit::{RateLimiter, Verdict};
use crate::registry::Joined;
use crate::state::AppState;

/// Longest `error.message` sent: messages may quote client input, which must not be
/// echoed back at length.
const MAX_ERROR_MESSAGE: usize = 256;

/// How long to wait for the client's half of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Longest a single frame write may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a connection to completion. Never panics on client input. `request` is what
/// the upgrade request said (its `Host` is the name TURN URLs use by default).
pub(crate) async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    peer: SocketAddr,
    client: AddressKey,
    request: ClientRequest,
) {
    let span = tracing::info_span!(
        "conn",
        %peer,
        client = tracing::field::Empty,
        room = tracing::field::Empty,
        participant = tracing::field::Empty
    );
    if client != AddressKey::of(peer.ip()) {
        span.record("client", tracing::field::display(client));
    }
    async move {
        state.metrics.connection_opened();
        tracing::debug!("connected");
        let mut connection = Connection::new(socket, state.clone(), client, request);
        connection.serve().await;
        connection.leave_room().await;
        state.metrics.connection_closed();
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await;
}

/// A participant that has joined: where it is, and its SFU side.
struct Session {
    room: String,
    /// Which room of that name (see [`crate::registry::Registry::leave`]).
    instance: u64,
    id: ParticipantId,
    media: sfu::ParticipantHandle,
    forwarder: JoinHandle<()>,
}

/// What the loop does after handling one event.
enum Flow {
    Continue,
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
    /// The socket is gone; just stop.
    Gone,
    /// The room lives on another node: relay this client there from now on.
    Proxy(Box<Upstream>),
}

/// Something the connection woke up for.
enum Event {
    Shutdown,
    TooSlow,
    Queued(Option<Outbound>),
    Keepalive,
    Frame(Option<Result<Message, axum::Error>>),
    JoinTimeout,
}

struct Connection {
    socket: WebSocket,
    state: Arc<AppState>,
    /// Our own outbox; a clone goes to the registry and the SFU event forwarder.
    outbox: Outbox,
    inbox: OutboxReceiver,
    limiter: RateLimiter,
    /// `chat` has a bucket of its own: each message fans out to the whole room.
    chat_limiter: RateLimiter,
    session: Option<Session>,
    join_deadline: Instant,
    keepalive: tokio::time::Interval,
    /// When the client last sent anything (data, ping or pong).
    last_heard: Instant,
    /// The client's address, for the per-address limits.
    client: AddressKey,
    /// This participant's place among its address's participants in the room.
    room_slot: Option<RoomSlot>,
    /// What the upgrade request said (`Host`, `Origin`, client address, routing).
    request: ClientRequest,
    /// The client's last text frame, replayed to the owner when the join is routed.
    last_text: Option<axum::extract::ws::Utf8Bytes>,
}

impl Connection {
    fn new(
        socket: WebSocket,
        state: Arc<AppState>,
        client: AddressKey,
        request: ClientRequest,
    ) -> Self {
        let limits = &state.config.limits;
        let now = Instant::now();
        let (outbox, inbox) = Outbox::new(limits.outbound_queue);
        Connection {
            limiter: RateLimiter::new(
                limits.rate_per_second,
                limits.rate_burst,
                limits.flood_close_after,
                now,
            ),
            // Never closes by itself: the general limiter handles floods.
            chat_limiter: RateLimiter::new(
                limits.chat_rate_per_second,
                limits.chat_rate_burst,
                u32::MAX,
                now,
            ),
            join_deadline: now + limits.join_timeout,
            keepalive: keepalive_timer(now, limits.keepalive_interval),
            last_heard: now,
            request,
            last_text: None,
            socket,
            outbox,
            inbox,
            session: None,
            client,
            room_slot: None,
            state,
        }
    }

    /// The event loop; returns when the connection should end.
    async fn serve(&mut self) {
        let flow = loop {
            let event = tokio::select! {
                biased;
                () = self.state.shutdown.triggered() => Event::Shutdown,
                () = self.inbox.too_slow.notified() => Event::TooSlow,
                item = self.inbox.rx.recv() => Event::Queued(item),
                _ = self.keepalive.tick() => Event::Keepalive,
                frame = self.socket.recv() => Event::Frame(frame),
                () = tokio::time::sleep_until(self.join_deadline), if self.session.is_none() => {
                    Event::JoinTimeout
                }
            };
            let flow = match event {
                Event::Shutdown => Flow::Close(close_code::AWAY, "server shutting down"),
                Event::TooSlow => {
                    self.state.metrics.slow_consumer();
                    tracing::warn!("client does not read its messages; disconnecting");
                    Flow::Close(close_code::POLICY, "too slow: outbound queue full")
                }
                Event::JoinTimeout => Flow::Close(close_code::POLICY, "no join in time"),
                Event::Queued(Some(item)) => self.deliver(item).await,
                Event::Queued(None) => Flow::Gone,
                Event::Keepalive => self.keepalive().await,
                Event::Frame(None) => Flow::Gone,
                Event::Frame(Some(Err(e))) => read_error(&e),
                Event::Frame(Some(Ok(message))) => {
                    self.last_heard = Instant::now();
                    // An SFU call may take a while; do not let it hold up shutdown.
                    let state = self.state.clone();
                    // Boxed: handling a message (a join, an SFU call) is a large future,
                    // and inline it would make every idle connection's task that large.
                    tokio::select! {
                        flow = Box::pin(self.on_message(message)) => flow,
                        () = state.shutdown.triggered() => {
                            Flow::Close(close_code::AWAY, "server shutting down")
                        }
                    }
                }
            };
            match flow {
                Flow::Continue => {}
                end => break end,
            }
        };
        if let Flow::Proxy(upstream) = flow {
            let cluster = self.state.cluster.clone();
            let _counted = cluster.as_ref().map(|c| c.proxied());
            crate::proxy::relay(&mut self.socket, *upstream, &self.state).await;
            return;
        }
        if let Flow::Close(code, reason) = flow {
            tracing::debug!(code, reason, "closing");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            // Send the close and let the client answer it, so it sees a clean close;
            // bounded, because a client that does not read may never let us.
            let socket = &mut self.socket;
            let close = async {
                if socket.send(Message::Close(Some(frame))).await.is_ok() {
                    while let Some(Ok(_)) = socket.recv().await {}
                }
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
        }
    }

    /// Pings the client, or gives up on it if it has been silent for two intervals.
    async fn keepalive(&mut self) -> Flow {
        let interval = self.state.config.limits.keepalive_interval;
        if self.last_heard.elapsed() > interval * 2 {
            tracing::info!("client silent for {:?}; dropping it", interval * 2);
            return Flow::Gone;
        }
        self.write(Message::Ping(Default::default())).await
    }

    /// Writes one queued item.
    async fn deliver(&mut self, item: Outbound) -> Flow {
        match item {
            Outbound::Text(text) => self.write(Message::Text(text)).await,
            Outbound::MediaClosed(reason) => {
                tracing::warn!(%reason, "media connection failed; removing participant");
                self.leave_room().await;
                let err = ProtocolError::new(
                    ErrorCode::MediaFailed,
                    format!("media connection failed: {reason}"),
                );
                match self.send_error(err).await {
                    Flow::Continue => Flow::Close(close_code::ERROR, "media connection failed"),
                    other => other,
                }
            }
            Outbound::Moved => {
                tracing::info!(
                    "the room is hosted by another node now; closing so the client reconnects"
                );
                self.leave_room().await;
                Flow::Close(
                    close_code::RESTART,
                    "the room moved to another server; reconnect",
                )
            }
        }
    }

    /// Handles one frame from the client.
    async fn on_message(&mut self, message: Message) -> Flow {
        if let Message::Close(_) = message {
            return Flow::Gone;
        }
        match self.limiter.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Drop { notify } => {
                self.state.metrics.rate_limited_drop();
                if !notify {
                    return Flow::Continue;
                }
                let limits = &self.state.config.limits;
                let err = ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} messages per second (burst {}); messages are being dropped",
                        limits.rate_per_second, limits.rate_burst
                    ),
                );
                return self.send_error(err).await;
            }
            Verdict::Close => {
                tracing::info!("flood did not stop; disconnecting");
                return Flow::Close(close_code::POLICY, "rate limit exceeded");
            }
        }
        match message {
            Message::Text(text) => {
                if self.session.is_none() {
                    self.last_text = Some(text.clone());
                }
                match parse_client_message(text.as_str(), &self.state.config.limits) {
                    Ok(message) => {
                        let kind = message.message_type();
                        self.state.metrics.message(kind);
                        tracing::trace!(r#type = kind.as_str(), "message");
                        match self.dispatch(message).await {
                            Ok(flow) => flow,
                            Err(err) => self.send_error(err).await,
                        }
                    }
                    Err(err) => self.send_error(err).await,
                }
            }
            Message::Binary(_) => {
                let err = ProtocolError::new(
                    ErrorCode::BadJson,
                    "binary frames are not part of the protocol; send JSON text frames",
                );
                self.send_error(err).await
            }
            // The WebSocket layer answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Flow::Continue,
        }
    }

    /// Acts on a well-formed message according to the connection's state.
    async fn dispatch(&mut self, message: ClientMessage) -> Result<Flow, ProtocolError> {
        let Some(session) = &self.session else {
            return match message {
                ClientMessage::Join(join) => self.join(join).await,
                other => Err(ProtocolError::new(
                    ErrorCode::NotJoined,
                    format!("`{}` needs a `join` first", other.message_type().as_str()),
                )),
            };
        };
        let (room, id, media) = (session.room.clone(), session.id, session.media.clone());
        let sfu_error = |e: sfu::SfuError| {
            tracing::debug!(error = %e, "SFU refused a request");
            media::sfu_error(&e)
        };
        match message {
            ClientMessage::Join(_) => Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                format!("this connection already joined room {room} as participant {id}"),
            )),
            ClientMessage::PublishOffer(offer) => {
                let sdp = media.publish_offer(&offer.sdp).await.map_err(sfu_error)?;
                Ok(self.send(&ServerMessage::PublishAnswer { sdp }).await)
            }
            ClientMessage::SubscribeAnswer(answer) => {
                media
                    .subscribe_answer(&answer.sdp)
                    .await
                    .map_err(sfu_error)?;
                Ok(Flow::Continue)
            }
            ClientMessage::IceCandidate(ice) => {
                media
                    .add_ice_candidate(ice.pc.into(), ice.candidate.into())
                    .await
                    .map_err(sfu_error)?;
                Ok(Flow::Continue)
            }
            ClientMessage::E2ee(e2ee) => {
                // The payload is opaque: relayed as received, never logged.
                self.state
                    .registry
                    .relay_e2ee(&room, id, e2ee.to, e2ee.payload)?;
                Ok(Flow::Continue)
            }
            ClientMessage::Chat(chat) => {
                if self.chat_limiter.check(Instant::now()) != Verdict::Allow {
                    // Refused one by one (not once per flood like the general limit),
                    // so the sender knows which message did not go out.
                    self.state.metrics.rate_limited_drop();
                    let limits = &self.state.config.limits;
                    return Err(ProtocolError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "more than {} chat messages per second (burst {}); this one was dropped",
                            limits.chat_rate_per_second, limits.chat_rate_burst
                        ),
                    ));
                }
                // The payload is opaque: relayed as received, never logged, never kept.
                let relay = ServerMessage::Chat {
                    from: id,
                    payload: chat.payload,
                };
                self.state.registry.broadcast(&room, id, &relay);
                Ok(Flow::Continue)
            }
            ClientMessage::Mute(mute) => {
                let relay = ServerMessage::TrackMuted {
                    participant: id,
                    track_id: mute.track,
                    muted: mute.muted,
                };
                self.state.registry.broadcast(&room, id, &relay);
                Ok(Flow::Continue)
            }
            ClientMessage::Leave(_) => {
                self.leave_room().await;
                Ok(Flow::Close(close_code::NORMAL, "left"))
            }
        }
    }

    /// `join`: token check, then one step that adds the roster entry and the SFU
    /// participant and queues `welcome`.
    async fn join(&mut self, join: Join) -> Result<Flow, ProtocolError> {
        if let Some(secret) = &self.state.config.auth_secret {
            let verdict = match &join.token {
                None => Err(TokenError::Missing),
                Some(token) => secret.verify(token, &join.room, &join.name, unix_now()),
            };
            if let Err(e) = verdict {
                tracing::info!(room = %join.room, reason = %e, "join refused");
                return Err(ProtocolError::new(ErrorCode::Unauthorized, e.to_string()));
            }
        }
        let state = self.state.clone();
        let room_slot = state
            .admission
            .addresses
            .join(self.client, &join.room, Instant::now())
            .map_err(|refusal| address_refusal(refusal, &state.config.limits))?;
        if let Some(upstream) = self.route(&join.room).await? {
            tracing::info!(room = %join.room, "routed to the node hosting the room");
            self.room_slot = Some(room_slot);
            return Ok(Flow::Proxy(upstream));
        }
        let Joined {
            id,
            instance,
            media,
            events,
        } = state.registry.join_with(
            &join.room,
            &join.name,
            &join.public_key,
            self.outbox.clone(),
            state.turn.welcome_ice(self.request.host.as_deref()),
        )?;
        let span = tracing::Span::current();
        span.record("room", join.room.as_str());
        span.record("participant", id);
        let forwarder =
            tokio::spawn(media::forward_events(events, self.outbox.clone()).instrument(span));
        tracing::info!("joined");
        self.last_text = None;
        self.room_slot = Some(room_slot);
        self.session = Some(Session {
            room: join.room,
            instance,
            id,
            media,
            forwarder,
        });
        Ok(Flow::Continue)
    }

    /// In multi-node mode, where a join of `room` goes: `None` to join here (the room
    /// is hosted here already — which needs no Redis — or was just placed here), or
    /// the open connection to the node that hosts it.
    async fn route(&mut self, room: &str) -> Result<Option<Box<Upstream>>, ProtocolError> {
        let Some(cluster) = &self.state.cluster else {
            return Ok(None);
        };
        if self.state.registry.has_room(room) {
            return Ok(None);
        }
        let unreachable = |e: crate::cluster::ClusterError| {
            tracing::warn!(%room, error = %e, "cannot place the room");
            ProtocolError::new(
                ErrorCode::ClusterUnavailable,
                "this server cannot reach the cluster registry to place the room right now; try again",
            )
        };
        if self.request.routed_from.is_some() {
            return match cluster.claim_routed(room).await.map_err(unreachable)? {
                RoutedClaim::Claimed => Ok(None),
                RoutedClaim::HeldBy(owner) => {
                    tracing::info!(%room, %owner, "routed join for a room another node took; refused");
                    Err(ProtocolError::new(
                        ErrorCode::ClusterUnavailable,
                        "the room moved to another server while joining; try again",
                    ))
                }
            };
        }
        let (node, url) = match cluster.route(room).await.map_err(unreachable)? {
            Route::Local => return Ok(None),
            Route::Remote { node, url } => (node, url),
        };
        let Some(join) = self.last_text.as_ref() else {
            return Err(ProtocolError::new(ErrorCode::Internal, "join text lost"));
        };
        let max = self.state.config.limits.max_frame_bytes;
        match crate::proxy::connect(&url, cluster.id(), &self.request, join.as_str(), max).await {
            Ok(upstream) => Ok(Some(Box::new(upstream))),
            Err(e) => {
                tracing::warn!(%room, owner = %node, error = %e, "cannot reach the node hosting the room");
                Err(ProtocolError::new(
                    ErrorCode::ClusterUnavailable,
                    "the server hosting this room cannot be reached right now; try again",
                ))
            }
        }
    }

    /// Leaves the room and the SFU, if in one. Idempotent.
    async fn leave_room(&mut self) {
        self.room_slot = None;
        let Some(session) = self.session.take() else {
            return;
        };
        self.state
            .registry
            .leave(&session.room, session.instance, session.id);
        session.media.leave().await;
        session.forwarder.abort();
        tracing::info!("left");
    }

    async fn send(&mut self, message: &ServerMessage) -> Flow {
        self.write(Message::Text(message.to_json().into())).await
    }

    /// Writes one frame. A client that does not read makes this wait for TCP buffer
    /// space, possibly forever, so the write gives up when the outbox overflows
    /// meanwhile, when the server shuts down, or after [`WRITE_TIMEOUT`]. A write
    /// abandoned halfway leaves the socket unusable, hence `Gone`.
    async fn write(&mut self, frame: Message) -> Flow {
        let state = self.state.clone();
        tokio::select! {
            sent = self.socket.send(frame) => match sent {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Gone,
            },
            () = self.inbox.too_slow.notified() => {
                self.state.metrics.slow_consumer();
                tracing::warn!("client does not read its messages; dropping it");
                Flow::Gone
            }
            () = state.shutdown.triggered() => Flow::Gone,
            () = tokio::time::sleep(WRITE_TIMEOUT) => {
                tracing::warn!("write timed out; dropping the client");
                Flow::Gone
            }
        }
    }

    async fn send_error(&mut self, mut err: ProtocolError) -> Flow {
        self.state.metrics.error(err.code);
        tracing::debug!(code = err.code.as_str(), "rejected");
        if err.message.len() > MAX_ERROR_MESSAGE {
            let cut = (0..=MAX_ERROR_MESSAGE)
                .rev()
                .find(|&i| err.message.is_char_boundary(i))
                .unwrap_or(0);
            err.message.truncate(cut);
            err.message.push('…');
        }
        self.send(&ServerMessage::error(&err)).await
    }
}

/// The error for a join refused by a per-address limit.
fn address_refusal(refusal: JoinRefusal, limits: &crate::limits::Limits) -> ProtocolError {
    match refusal {
        JoinRefusal::Joins => ProtocolError::new(
            ErrorCode::RateLimited,
            format!(
                "more than {} joins a minute from your address; try again later",
                limits.joins_per_minute_per_address
            ),
        ),
        JoinRefusal::InRoom => ProtocolError::new(
            ErrorCode::RoomFull,
            format!(
                "this room already has {} participants from your address",
                limits.participants_per_address_per_room
            ),
        ),
    }
}

/// A timer that first fires one interval from now and never bursts to catch up.
fn keepalive_timer(now: Instant, interval: Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval_at(now + interval, interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// A read error ends the connection; an oversized message gets a proper 1009 first,
/// a text message that is not UTF-8 a 1007 (RFC 6455 §8.1).
fn read_error(e: &axum::Error) -> Flow {
    // tungstenite reports the size cap as a capacity error ("Message too long" /
    // "Space limit exceeded") and bad text as "UTF-8 encoding error"; axum only
    // exposes them as text.
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") {
        tracing::info!("message over the hard size cap; closing");
        Flow::Close(close_code::SIZE, "message too big")
    } else if text.contains("UTF-8") {
        tracing::info!("text message that is not UTF-8; closing");
        Flow::Close(close_code::INVALID, "invalid UTF-8 in a text message")
    } else {
        tracing::debug!(error = %text, "read error");
        Flow::Gone
    }
}
