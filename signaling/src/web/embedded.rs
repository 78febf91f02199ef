//! The web client compiled into the binary (feature `embed-web`), and how it is served.
//!
//! `cargo xtask dist` builds `sealed` with this feature: one file that serves the page,
//! its scripts and the WASM engine from memory, with nothing next to it on disk. The
//! responses match what [`tower_http::services::ServeDir`] gives for the same folder:
//! the MIME type guessed from the name (`mime_guess`, like `ServeDir`), `GET` and
//! `HEAD` only (405 otherwise), an empty 404 for anything not embedded — directories,
//! `..`, percent-encoded `..`, absolute or Windows-style paths never name an entry. On
//! top, a strong `ETag` (the file's SHA-256, computed at compile time) answers
//! `If-None-Match` with 304, so `Cache-Control: no-cache` revalidation is cheap.
//! The security headers come from the router's middleware, as for the folder.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The files of `web/` the page loads, read at compile time (relative to this crate's
/// `Cargo.toml`; `debug-embed` embeds them in debug builds too).
///
/// An allow-list by extension, so `README.md`, the TypeScript declarations that
/// wasm-bindgen writes into `pkg/`, hidden files and editor leftovers stay out of the
/// binary; a test checks that nothing else in `web/` is left out. `allow_missing`: a
/// build without the folder compiles (and serves nothing); a build before
/// `cargo xtask build-web` lacks `pkg/`, which [`missing`] reports. `build.rs` makes
/// Cargo recompile when a file in `web/` is added or removed, not only changed.
#[derive(rust_embed::Embed)]
#[folder = "../web/"]
#[allow_missing = true]
#[include = "*.html"]
#[include = "*.css"]
#[include = "*.js"]
#[include = "*.mjs"]
#[include = "*.wasm"]
#[include = "*.svg"]
#[include = "*.png"]
#[include = "*.ico"]
#[include = "*.woff2"]
#[exclude = ".*"]
#[exclude = "*/.*"]
struct Assets;

/// Files the page cannot work without.
const ESSENTIAL: [&str; 4] = [
    "index.html",
    "worker.js",
    "pkg/client_wasm.js",
    "pkg/client_wasm_bg.wasm",
];

/// Whether this binary carries a web client (its `index.html` at least).
pub(crate) fn available() -> bool {
    Assets::get("index.html").is_some()
}

/// The essential files this build lacks (empty when the page is complete); e.g. `pkg/`
/// when the binary was built before `cargo xtask build-web`.
pub(crate) fn missing() -> Vec<&'static str> {
    ESSENTIAL
        .into_iter()
        .filter(|f| Assets::get(f).is_none())
        .collect()
}

/// The embedded `index.html`, as [`super::serve_index`] serves the folder's.
pub(super) fn index() -> Response {
    match Assets::get("index.html") {
        Some(file) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            file.data,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this sealed was built without the web client: start it with --web-dir pointing at one",
        )
            .into_response(),
    }
}

/// Every other path: an embedded file, or 404 (the router's fallback).
pub(super) async fn file(method: Method, uri: Uri, request: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
    }
    let Some(file) = asset_key(uri.path()).and_then(|key| Assets::get(&key)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    if if_none_match(&request, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let content_type = HeaderValue::from_str(file.metadata.mimetype())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [(header::CONTENT_TYPE, content_type), (header::ETAG, etag)],
        file.data,
    )
        .into_response()
}

/// The embedded name a request path asks for: percent-decoded (as `ServeDir` does),
/// empty and `.` segments dropped; `None` for `..`, backslashes, NUL or invalid UTF-8,
/// so only plain `a/b/c` names reach the lookup.
fn asset_key(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains(['\\', '\0']) => return None,
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return None;
    }
    Some(segments.join("/"))
}

/// A strong validator: the hex SHA-256 of the content, quoted.
fn etag(hash: &[u8; 32]) -> HeaderValue {
    let mut tag = String::with_capacity(66);
    tag.push('"');
    for byte in hash {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    HeaderValue::from_str(&tag).expect("hex is a valid header value")
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak comparison, as RFC 9110
/// prescribes for this header.
fn if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn get(path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        get_with(Method::GET, path, HeaderMap::new()).await
    }

    async fn get_with(
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = file(method, path.parse().unwrap(), headers).await;
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap().to_vec();
        (parts.status, parts.headers, body)
    }

    fn content_type(headers: &HeaderMap) -> &str {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Where the web client lives in this checkout.
    fn web_dir() -> std::path::PathBuf {
        std::path::Path::new(crate::config::DEFAULT_WEB_DIR).to_path_buf()
    }

    #[test]
    fn the_page_is_embedded() {
        assert!(available(), "index.html is committed, so it is embedded");
        let html = Assets::get("index.html").unwrap();
        assert!(String::from_utf8_lossy(&html.data).contains("<title>Sealed"));
        // pkg/ exists only after `cargo xtask build-web`; when it does, it is embedded.
        let built = web_dir().join("pkg/client_wasm_bg.wasm").is_file();
        assert_eq!(missing().is_empty(), built, "missing: {:?}", missing());
    }

    #[tokio::test]
    async fn files_get_the_types_the_folder_gives_them() {
        let mut cases = vec![
            ("/worker.js", "text/javascript"),
            ("/js/app.js", "text/javascript"),
            ("/style.css", "text/css"),
            ("/index.html", "text/html"),
            ("/bench.html", "text/html"),
        ];
        if Assets::get("pkg/client_wasm_bg.wasm").is_some() {
            cases.push(("/pkg/client_wasm_bg.wasm", "application/wasm"));
            cases.push(("/pkg/client_wasm.js", "text/javascript"));
        }
        for (path, mime) in cases {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(
                content_type(&headers).starts_with(mime),
                "{path}: {headers:?}"
            );
            let on_disk = std::fs::read(web_dir().join(&path[1..])).unwrap();
            assert_eq!(body, on_disk, "{path}: the embedded copy is the file");
            assert!(headers.contains_key(header::ETAG), "{path}");
        }
        if let Some(wasm) = Assets::get("pkg/client_wasm_bg.wasm") {
            assert!(wasm.data.starts_with(b"\0asm"));
        }
        let (status, headers, _) = get_with(Method::HEAD, "/worker.js", HeaderMap::new()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type(&headers).starts_with("text/javascript"));
    }

    #[tokio::test]
    async fn unknown_paths_directories_and_traversal_are_404() {
        for path in [
            "/nope.js",
            "/README.md",
            "/js",
            "/js/",
            "/pkg/",
            "/",
            "/../Cargo.toml",
            "/..%2fCargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E/signaling/Cargo.toml",
            "/js/../../Cargo.toml",
            "/js/..%2f..%2fCargo.toml",
            "/js%5c..%5c..%5cCargo.toml",
            "/style.css%00.js",
            "/%ff.js",
            "/pkg/client_wasm.d.ts",
        ] {
            let (status, _, body) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(body.is_empty(), "{path}: like ServeDir, an empty 404");
        }
    }

    #[tokio::test]
    async fn equivalent_spellings_name_the_same_file() {
        for path in [
            "/js/./app.js",
            "//js//app.js",
            "/js/app%2Ejs",
            "/%6As/app.js",
        ] {
            let (status, headers, _) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(content_type(&headers).starts_with("text/javascript"));
        }
    }

    #[tokio::test]
    async fn only_get_and_head_and_etags_revalidate() {
        let (status, headers, _) = get_with(Method::POST, "/worker.js", HeaderMap::new()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET,HEAD");

        let (_, headers, _) = get("/worker.js").await;
        let etag = headers[header::ETAG].clone();
        for value in [
            etag.to_str().unwrap().to_owned(),
            format!("\"x\", W/{}", etag.to_str().unwrap()),
            "*".into(),
        ] {
            let mut conditional = HeaderMap::new();
            conditional.insert(header::IF_NONE_MATCH, value.parse().unwrap());
            let (status, headers, body) = get_with(Method::GET, "/worker.js", conditional).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{value}");
            assert_eq!(headers[header::ETAG], etag);
            assert!(body.is_empty());
        }
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, "\"0000\"".parse().unwrap());
        assert_eq!(
            get_with(Method::GET, "/worker.js", stale).await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn the_index_is_served_like_the_folders() {
        let response = index();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(body, std::fs::read(web_dir().join("index.html")).unwrap());
    }

    /// The allow-list leaves out only what the page never loads: a new kind of asset
    /// in `web/` must be added to the list (or here, deliberately).
    #[test]
    fn everything_the_page_may_load_is_embedded() {
        fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{name}/"), out);
                } else {
                    out.push(name);
                }
            }
        }
        let mut on_disk = Vec::new();
        walk(&web_dir(), "", &mut on_disk);
        let left_out = |name: &str| {
            name == "README.md"
                || name.ends_with(".d.ts")
                || name.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
        };
        let mut expected: Vec<String> = on_disk.into_iter().filter(|n| !left_out(n)).collect();
        expected.sort();
        let mut embedded: Vec<String> = Assets::iter().map(|n| n.into_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, expected);
    }

    #[test]
    fn request_paths_map_to_plain_names() {
        assert_eq!(
            asset_key("/pkg/client_wasm.js").as_deref(),
            Some("pkg/client_wasm.js")
        );
        assert_eq!(asset_key("/a/./b//c").as_deref(), Some("a/b/c"));
        for bad in [
            "/",
            "",
            "/..",
            "/a/../b",
            "/%2e%2e/x",
            "/a%5cb",
            "/a%00",
            "/%c3%28",
        ] {
            assert_eq!(asset_key(bad), None, "{bad}");
        }
    }
}
