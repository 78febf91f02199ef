//! HTTP routes: pages, static files with their MIME types, headers, health, metrics.

use signaling::{Config, WebSource};

use crate::support::*;

async fn web_server() -> signaling::ServerHandle {
    start(Config {
        web: WebSource::Dir(temp_web_dir()),
        ..Config::ephemeral()
    })
    .await
}

#[tokio::test]
async fn pages_and_static_files_have_the_right_types_and_headers() {
    let server = web_server().await;
    let cases = [
        ("/", "text/html"),
        ("/m/team-42", "text/html"),
        ("/app.js", "text/javascript"),
        ("/worker.js", "text/javascript"),
        ("/lib.mjs", "text/javascript"),
        ("/pkg/client_wasm.js", "text/javascript"),
        ("/pkg/client_wasm_bg.wasm", "application/wasm"),
        ("/style.css", "text/css"),
    ];
    for (path, mime) in cases {
        let (status, headers, body) = http_get(&server, path).await;
        assert_eq!(status, 200, "{path}");
        let content_type = header(&headers, "content-type").unwrap_or_default();
        assert!(content_type.starts_with(mime), "{path}: {content_type}");
        assert!(!body.is_empty());
        assert_eq!(
            header(&headers, "cache-control"),
            Some("no-cache"),
            "{path}"
        );
        assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        let csp = header(&headers, "content-security-policy").unwrap();
        assert!(csp.contains("'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"));
    }
    let (_, _, index) = http_get(&server, "/m/abc").await;
    assert!(
        String::from_utf8(index)
            .unwrap()
            .contains("<title>Sealed</title>")
    );
}

#[tokio::test]
async fn unknown_paths_bad_rooms_and_traversal_are_refused() {
    let server = web_server().await;
    for path in [
        "/nope.js",
        "/m/bad.room",
        "/m/",
        "/../Cargo.toml",
        "/pkg/../../etc/passwd",
        "/%2e%2e/Cargo.toml",
    ] {
        let (status, headers, _) = http_get(&server, path).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    }
}

#[tokio::test]
async fn healthz_and_metrics() {
    let server = start_default().await;
    let (status, _, body) = http_get(&server, "/healthz").await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));

    let (_a, _) = Client::join(&server, "r", "A").await;
    let (status, headers, body) = http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    for line in [
        "sealed_rooms 1",
        "sealed_participants 1",
        "sealed_connections 1",
        "sealed_messages_received_total{type=\"join\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    for family in [
        "sealed_sfu_rooms",
        "sealed_sfu_participants",
        "sealed_sfu_tracks",
        "sealed_sfu_forwarded_packets_total",
        "sealed_sfu_forwarded_bytes_total",
        "sealed_sfu_dropped_packets_total",
        "sealed_errors_total{code=\"rate_limited\"}",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
}

/// The web client compiled into the binary answers like the folder: same routes,
/// types, security headers, 404s (also for traversal sent raw on the wire).
#[cfg(feature = "embed-web")]
#[tokio::test]
async fn the_embedded_web_client_is_served_like_the_folder() {
    let server = start(Config {
        web: WebSource::Embedded,
        ..Config::ephemeral()
    })
    .await;
    let index =
        std::fs::read(format!("{}/index.html", signaling::config::DEFAULT_WEB_DIR)).unwrap();
    let mut cases = vec![
        ("/", "text/html"),
        ("/m/team-42", "text/html"),
        ("/worker.js", "text/javascript"),
        ("/js/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ];
    let wasm = format!(
        "{}/pkg/client_wasm_bg.wasm",
        signaling::config::DEFAULT_WEB_DIR
    );
    if std::path::Path::new(&wasm).is_file() {
        // Only after `cargo xtask build-web` (the rust stage of `cargo xtask test` runs
        // before it); build.rs then rebuilds the crate with `pkg/` inside.
        cases.push(("/pkg/client_wasm_bg.wasm", "application/wasm"));
    }
    for (path, mime) in cases {
        let (status, headers, body) = http_get(&server, path).await;
        assert_eq!(status, 200, "{path}");
        let content_type = header(&headers, "content-type").unwrap_or_default();
        assert!(content_type.starts_with(mime), "{path}: {content_type}");
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        let csp = header(&headers, "content-security-policy").unwrap();
        assert!(csp.contains("'wasm-unsafe-eval'"));
        if path == "/" || path.starts_with("/m/") {
            assert_eq!(body, index, "{path}: the index, byte for byte");
        }
        if path.ends_with(".wasm") {
            assert_eq!(body, std::fs::read(&wasm).unwrap());
        }
    }
    for path in [
        "/nope.js",
        "/README.md",
        "/m/bad.room",
        "/js/",
        "/../Cargo.toml",
        "/pkg/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2e%2e/signaling/Cargo.toml",
    ] {
        let (status, headers, _) = http_get(&server, path).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    }
}
