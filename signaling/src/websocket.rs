//! `GET /ws`: the gate in front of every signaling connection.
//!
//! Before a connection exists the handler checks, in order: the server is not
//! shutting down (503), the browser `Origin` is allowed (403), and — for a client
//! behind a trusted proxy, whose TCP connection was not counted per address — that
//! its forwarded address has a connection slot left (503). (The server-wide cap and
//! direct clients' per-address slots were taken at `accept`, see [`crate::accept`].)
//! It then sizes the WebSocket layer's buffers — small, so that an idle connection
//! costs little ([`READ_BUFFER_BYTES`]) — sets its hard size cap
//! ([`crate::limits::Limits::max_frame_bytes`]) and hands the socket to
//! [`crate::connection`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::addresses::{AddressKey, TrustedProxies};
use crate::proxy::ClientRequest;
use crate::state::AppState;

/// The WebSocket read buffer, allocated (and zeroed) for every connection up front.
/// tungstenite's default is 128 KiB, which made an idle connection cost ≈ 156 KB;
/// signaling messages are small, and a larger message grows the buffer as needed.
pub(crate) const READ_BUFFER_BYTES: usize = 4096;

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
    let client = state.admission.proxies.client_address(peer.ip(), &headers);
    let key = AddressKey::of(client);
    let address_slot = if state.admission.proxies.contains(peer.ip()) {
        match state.admission.addresses.connect(key) {
            Some(slot) => Some(slot),
            None => {
                state.metrics.connection_refused();
                tracing::info!(%peer, client = %key, "too many connections from one address");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many connections from your address",
                )
                    .into_response();
            }
        }
    } else {
        None
    };
    // Registered now, not after the upgrade, so a shutdown racing this request still
    // waits for the connection.
    let guard = state.shutdown.guard();
    let cap = state.config.limits.max_frame_bytes;
    let request = ClientRequest {
        host: host.map(str::to_owned),
        origin: origin.map(str::to_owned),
        client_ip: Some(client),
        routed_from: routed_from(&state.admission.proxies, peer.ip(), &headers),
    };
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write each frame at once instead of gathering 128 KiB first.
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            crate::connection::run(socket, state, peer, key, request).await;
            drop(address_slot);
            drop(guard);
        })
}

/// The node that routed this request here (`X-Sealed-Routed`), believed only from a
/// trusted proxy — the other nodes are listed in `--trusted-proxies` as the
/// balancer is. From anyone else the header would let a client choose where a new
/// room is placed, so it is ignored and the join is placed and routed as any other.
fn routed_from(proxies: &TrustedProxies, peer: IpAddr, headers: &HeaderMap) -> Option<String> {
    let node = headers.get(crate::proxy::ROUTED_HEADER)?.to_str().ok()?;
    if proxies.contains(peer) {
        Some(node.to_owned())
    } else {
        tracing::info!(%peer, "X-Sealed-Routed from a peer that is not a trusted proxy; ignored");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(node: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(crate::proxy::ROUTED_HEADER, node.parse().unwrap());
        headers
    }

    #[test]
    fn routed_header_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/24".parse().unwrap()]);
        let node: IpAddr = "10.0.0.7".parse().unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            routed_from(&proxies, node, &routed("node-b")).as_deref(),
            Some("node-b")
        );
        assert_eq!(routed_from(&proxies, client, &routed("node-b")), None);
        assert_eq!(routed_from(&proxies, node, &HeaderMap::new()), None);
        let nobody = TrustedProxies::new(Vec::new());
        assert_eq!(routed_from(&nobody, node, &routed("node-b")), None);
    }
}
