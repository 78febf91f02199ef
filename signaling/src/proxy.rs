//! Multi-node routing: a client whose room lives on another node is relayed there.
//!
//! The receiving node opens a WebSocket to the owner's `/ws`, replays the client's
//! `join` on it and from then on copies messages both ways, unchanged — the owner runs
//! the session (roster, SFU, E2EE relay) exactly as for a direct client, and its ICE
//! candidates name its own media port, so media goes straight to it. The upstream
//! request carries what the owner needs to treat the client as if it had come
//! directly: `Host` and `Origin` of the client's request (the origin check and TURN
//! URLs), the client's address in `X-Forwarded-For` (honoured when the owner lists this
//! node in `--trusted-proxies`), and [`ROUTED_HEADER`] so the owner never routes it on.
//!
//! Why a WebSocket proxy rather than relaying messages through Redis: the join, the
//! SDP exchange and every `e2ee` message stay one ordered stream over one TCP
//! connection, with the same backpressure and close semantics as a direct client, and
//! Redis carries no per-message traffic (it stays a registry; docs/ARCHITECTURE.md).
//!
//! When the owner goes away (its node died), the client's WebSocket is closed with
//! 1012 (service restart) so that it reconnects and is placed on a live node.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as UpCloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as UpMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::state::AppState;

/// Marks a connection routed here by another node (its value: that node's id).
pub const ROUTED_HEADER: &str = "x-sealed-routed";

/// Longest the connection to the owner (TCP + WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest one write to either side may take before that side counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client's upgrade request said, for the owner.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientRequest {
    /// `Host`.
    pub host: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// The client's address as this node determined it.
    pub client_ip: Option<std::net::IpAddr>,
    /// Set when another node routed this connection here.
    pub routed_from: Option<String>,
}

/// The open connection to the owner.
pub(crate) type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the owner could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Connecting or the handshake failed.
    #[error("{0}")]
    Connect(#[from] tungstenite::Error),
    /// It took longer than [`CONNECT_TIMEOUT`].
    #[error("no answer within {CONNECT_TIMEOUT:?}")]
    Timeout,
}

/// Opens the WebSocket to the owner at `node_url` (`http://host:port`) for `request`,
/// and sends it the client's `join` as received.
pub(crate) async fn connect(
    node_url: &str,
    this_node: &str,
    request: &ClientRequest,
    join: &str,
    max_message: usize,
) -> Result<Upstream, ProxyError> {
    let ws_url = format!("ws{}/ws", node_url.trim_start_matches("http"));
    let mut upgrade = ws_url.into_client_request()?;
    let headers = upgrade.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    if let Some(host) = &request.host {
        set("host", host);
    }
    if let Some(origin) = &request.origin {
        set("origin", origin);
    }
    if let Some(ip) = request.client_ip {
        set("x-forwarded-for", &ip.to_string());
    }
    set(ROUTED_HEADER, this_node);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let connect = async {
        let (mut upstream, _) =
            tokio_tungstenite::connect_async_with_config(upgrade, Some(config), true).await?;
        upstream.send(UpMessage::text(join)).await?;
        Ok::<_, tungstenite::Error>(upstream)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ProxyError::Timeout),
    }
}

/// Copies messages between the client and the owner until either side ends, the
/// client goes silent, or the server shuts down; then closes the other side.
pub(crate) async fn relay(client: &mut WebSocket, mut upstream: Upstream, state: &AppState) {
    let interval = state.config.limits.keepalive_interval;
    let mut keepalive = tokio::time::interval_at(Instant::now() + interval, interval);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let (code, reason): (u16, String) = loop {
        tokio::select! {
            biased;
            () = state.shutdown.triggered() => {
                let _ = upstream.close(None).await;
                break (close_code::AWAY, "server shutting down".into());
            }
            from_owner = upstream.next() => match from_owner {
                Some(Ok(UpMessage::Text(text))) => {
                    if !write(client, Message::Text(text.as_str().into())).await {
                        let _ = upstream.close(None).await;
                        return;
                    }
                }
                Some(Ok(UpMessage::Binary(bytes))) => {
                    if !write(client, Message::Binary(bytes)).await {
                        let _ = upstream.close(None).await;
                        return;
                    }
                }
                Some(Ok(UpMessage::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                        .unwrap_or((close_code::NORMAL, String::new()));
                    break (code, reason);
                }
                // tungstenite answers the owner's pings itself.
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    tracing::warn!("the node hosting the room went away; closing the client so it reconnects");
                    break (close_code::RESTART, "the room's server went away; reconnect".into());
                }
            },
            from_client = client.recv() => {
                last_heard = Instant::now();
                let message = match from_client {
                    Some(Ok(Message::Text(text))) => UpMessage::text(text.as_str()),
                    Some(Ok(Message::Binary(bytes))) => UpMessage::Binary(bytes),
                    Some(Ok(Message::Close(frame))) => {
                        let frame = frame.map(|f| UpCloseFrame {
                            code: CloseCode::from(f.code),
                            reason: f.reason.as_str().into(),
                        });
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, upstream.close(frame)).await;
                        return;
                    }
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => {
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, upstream.close(None)).await;
                        return;
                    }
                };
                match tokio::time::timeout(WRITE_TIMEOUT, upstream.send(message)).await {
                    Ok(Ok(())) => {}
                    _ => break (close_code::RESTART, "the room's server went away; reconnect".into()),
                }
            }
            _ = keepalive.tick() => {
                if last_heard.elapsed() > interval * 2 {
                    tracing::info!("proxied client silent; dropping it");
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, upstream.close(None)).await;
                    return;
                }
                if !write(client, Message::Ping(Default::default())).await {
                    let _ = upstream.close(None).await;
                    return;
                }
            }
        }
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, client.send(Message::Close(Some(frame)))).await;
}

/// One bounded write to the client; false when it is gone.
async fn write(client: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, client.send(message)).await,
        Ok(Ok(()))
    )
}
