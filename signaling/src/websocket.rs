//! `GET /ws`: the gate in front of every signaling connection.
//!
//! Before a connection exists the handler checks, in order: the server is not
//! shutting down (503), the browser `Origin` is allowed (403), and a connection slot
//! is free (503). It then sets the WebSocket layer's hard size cap
//! ([`crate::limits::Limits::max_frame_bytes`]) and hands the socket to
//! [`crate::connection`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The axum handler for `GET /ws`.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_triggered() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server shutting down").into_response();
    }
    // A non-UTF-8 Origin is kept as "" so that it is refused rather than ignored.
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or_default());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !crate::origin::allowed(&state.config.origins, origin, host) {
        state.metrics.connection_refused();
        tracing::warn!(%peer, origin = origin.unwrap_or_default(), "WebSocket origin refused");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let Ok(slot) = state.connection_slots.clone().try_acquire_owned() else {
        state.metrics.connection_refused();
        tracing::warn!(%peer, "connection limit reached");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    };
    // Registered now, not after the upgrade, so a shutdown racing this request still
    // waits for the connection.
    let guard = state.shutdown.guard();
    let cap = state.config.limits.max_frame_bytes;
    let host = host.map(str::to_owned);
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| async move {
            crate::connection::run(socket, state, peer, host).await;
            drop(slot);
            drop(guard);
        })
}
