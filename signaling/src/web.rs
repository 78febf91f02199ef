//! The HTTP side: routes, static files and the security headers on every response.
//!
//! | route            | what                                                        |
//! |------------------|-------------------------------------------------------------|
//! | `GET /`          | `web/index.html` (landing page: create a meeting)           |
//! | `GET /m/{room}`  | the same `web/index.html`; the page reads path and fragment |
//! | `GET /ws`        | the signaling WebSocket ([`crate::websocket`])              |
//! | `GET /healthz`   | `200 ok` (with `--redis`: `503` while Redis is unreachable) |
//! | `GET /metrics`   | Prometheus text ([`crate::metrics`])                        |
//! | anything else    | a file of the web client, or 404                            |
//!
//! Where the web client's files come from ([`WebSource`], chosen at start-up):
//!
//! 1. `--web-dir DIR` / `SEALED_WEB_DIR` given explicitly: that folder, read on every
//!    request (edit the page and reload — the development override).
//! 2. Otherwise, if the binary carries the web client (built with feature `embed-web`,
//!    as `cargo xtask dist` does): that copy, served from memory (`web/embedded.rs`).
//! 3. Otherwise the `web/` folder of the checkout the binary was built from
//!    ([`crate::config::DEFAULT_WEB_DIR`]).
//!
//! Both sources answer alike: the same routes, MIME types, security headers and 404s.
//!
//! The meeting secret lives in the URL fragment, which browsers never send to a
//! server; still, every response says `Referrer-Policy: no-referrer` so the path
//! (which names the room) does not leak to other sites either, and the CSP keeps the
//! page from loading code or connecting anywhere but here.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

use crate::config::WebSource;
use crate::protocol::is_valid_room_name;
use crate::state::AppState;

#[cfg(feature = "embed-web")]
pub(crate) mod embedded;

/// The Content-Security-Policy of every response.
///
/// * `script-src 'self' 'wasm-unsafe-eval'`: our own scripts, and compiling our own
///   WebAssembly (no `eval`, no inline script).
/// * `worker-src 'self' blob:`: the encoded-transform Worker (`/worker.js`), or a
///   blob-built one.
/// * `connect-src 'self'`: fetches and the WebSocket go to this origin only (CSP 3
///   `'self'` covers `ws:`/`wss:` of the same host).
/// * `media-src 'self' blob: mediastream:`: local and remote camera streams.
/// * nothing may frame the page, and it has no plugins, no `<base>`, no forms
///   elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self' blob:; \
     connect-src 'self'; \
     media-src 'self' blob: mediastream:; \
     img-src 'self' data: blob:; \
     style-src 'self'; \
     font-src 'self'; \
     object-src 'none'; \
     base-uri 'none'; \
     form-action 'self'; \
     frame-ancestors 'none'";

/// Headers set on every response.
const SECURITY_HEADERS: [(HeaderName, &str); 7] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("permissions-policy"),
        "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
    ),
    // Files change with every build of the web client; always revalidate.
    (header::CACHE_CONTROL, "no-cache"),
];

/// Builds the application router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let hsts = state.tls.as_ref().is_some_and(|t| t.hsts());
    let router = Router::new()
        .route("/", get(index))
        .route("/m/{room}", get(meeting))
        .route("/ws", get(crate::websocket::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    let router = match &state.config.web {
        WebSource::Dir(dir) => {
            router.fallback_service(ServeDir::new(dir).append_index_html_on_directories(false))
        }
        #[cfg(feature = "embed-web")]
        WebSource::Embedded => router.fallback(embedded::file),
    };
    let router = router.layer(middleware::from_fn(headers)).with_state(state);
    if hsts {
        router.layer(middleware::from_fn(strict_transport_security))
    } else {
        router
    }
}

/// With a real certificate, browsers are told to come back over HTTPS only, for a
/// year (not with a self-signed one: see [`crate::tls::Tls::hsts`]).
async fn strict_transport_security(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

async fn index(State(state): State<Arc<AppState>>) -> Response {
    serve_index(&state).await
}

async fn meeting(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> Response {
    if !is_valid_room_name(&room) {
        return (
            StatusCode::NOT_FOUND,
            "not a valid room name: use 1 to 64 of A-Z a-z 0-9 _ -",
        )
            .into_response();
    }
    serve_index(&state).await
}

async fn serve_index(state: &AppState) -> Response {
    match &state.config.web {
        WebSource::Dir(dir) => serve_index_from(dir).await,
        #[cfg(feature = "embed-web")]
        WebSource::Embedded => embedded::index(),
    }
}

async fn serve_index_from(dir: &std::path::Path) -> Response {
    let path = dir.join("index.html");
    match tokio::fs::read(&path).await {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read index.html");
            (
                StatusCode::NOT_FOUND,
                "web/index.html not found: start sealed with --web-dir pointing at the web client",
            )
                .into_response()
        }
    }
}

/// Logs where the web client comes from, and warns when pages will not work.
pub(crate) fn check_source(web: &WebSource) {
    match web {
        WebSource::Dir(dir) => {
            tracing::info!(web_dir = %dir.display(), "serving the web client from a directory");
            if !dir.join("index.html").is_file() {
                tracing::warn!(
                    web_dir = %dir.display(),
                    "no index.html in the web directory; pages will 404"
                );
            }
        }
        #[cfg(feature = "embed-web")]
        WebSource::Embedded => {
            tracing::info!("serving the web client embedded in this binary");
            let missing = embedded::missing();
            if !missing.is_empty() {
                tracing::warn!(
                    ?missing,
                    "the embedded web client is incomplete (built before `cargo xtask build-web`?); \
                     pages will not work: rebuild, or pass --web-dir"
                );
            }
        }
    }
}

/// `200 ok`; in multi-node mode `503` while Redis is unreachable (rooms hosted here
/// keep running, but new rooms cannot be placed), so a load balancer can steer new
/// clients to nodes that can place them.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match &state.cluster {
        Some(cluster) if !cluster.healthy() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "redis unreachable: rooms hosted here keep running, new rooms cannot be placed",
        )
            .into_response(),
        _ => "ok".into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.render_metrics(),
    )
        .into_response()
}

/// Adds [`SECURITY_HEADERS`] and fixes one MIME type: `mime_guess` still calls
/// `.mjs` `application/javascript`, and module scripts want `text/javascript`.
async fn headers(request: Request, next: Next) -> Response {
    let is_mjs = request.uri().path().ends_with(".mjs");
    let mut response = next.run(request).await;
    let fix_mjs = is_mjs && response.status().is_success();
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if fix_mjs {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript"),
        );
    }
    response
}
