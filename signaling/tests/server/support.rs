//! Test support: an in-process server and a small JSON WebSocket client.

#![allow(dead_code)] // each test binary uses a different part

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use signaling::{Config, Server, ServerHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected message may take.
pub const STEP: Duration = Duration::from_secs(5);

/// Server-to-client message types that the media plane may send at any time; flow
/// assertions skip them.
const MEDIA_TYPES: [&str; 5] = [
    "subscribe_offer",
    "ice_candidate",
    "track_published",
    "track_unpublished",
    "active_speakers",
];

/// Starts a server in-process on a free port. Each server of this test binary gets
/// its own UDP port range, so that parallel tests' SFUs never compete for a port.
pub async fn start(config: Config) -> ServerHandle {
    start_with_ports(config).await.0
}

/// [`start`], also returning the SFU's UDP port range.
pub async fn start_with_ports(mut config: Config) -> (ServerHandle, RangeInclusive<u16>) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);
    let n = NEXT_RANGE.fetch_add(1, Ordering::Relaxed) % 100;
    let first = 45_000 + n * 40;
    config.sfu.udp_ports = first..=first + 39;
    let ports = config.sfu.udp_ports.clone();
    (Server::bind(config).await.expect("bind").spawn(), ports)
}

/// A server with default settings on a free port.
pub async fn start_default() -> ServerHandle {
    start(Config::ephemeral()).await
}

/// A valid-looking public key (shape only; the server does not check the curve).
pub fn public_key(seed: u8) -> String {
    let mut k = [seed; 65];
    k[0] = 0x04;
    URL_SAFE_NO_PAD.encode(k)
}

/// base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A join message.
pub fn join_msg(room: &str, name: &str) -> Value {
    json!({"type": "join", "room": room, "name": name, "public_key": public_key(1), "protocol": 1})
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code and reason.
    Frame(u16, String),
    /// The stream ended or failed without a close frame.
    Abrupt,
}

/// A signaling client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The id from `welcome`, once joined.
    pub id: u64,
}

impl Client {
    /// Connects to the server's `/ws`.
    pub async fn connect(server: &ServerHandle) -> Client {
        Client::connect_url(&server.ws_url()).await
    }

    /// Connects to a WebSocket URL (a server in another process).
    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Client { ws, id: 0 }
    }

    /// Connects with an `Origin` header; returns the HTTP status on refusal.
    pub async fn connect_with_origin(server: &ServerHandle, origin: &str) -> Result<Client, u16> {
        let mut request = server.ws_url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Client { ws, id: 0 }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// Connects from local address `from` (any 127.x.y.z works on Linux loopback)
    /// with extra request headers; returns the HTTP status on refusal.
    pub async fn connect_from(
        server: &ServerHandle,
        from: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let tcp = tcp_from(server, from).await;
        let mut request = server.ws_url().into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().append(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                value.parse().unwrap(),
            );
        }
        match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await {
            Ok((ws, _)) => Ok(Client { ws, id: 0 }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// Connects and joins; returns the client (with its id) and the welcome.
    pub async fn join(server: &ServerHandle, room: &str, name: &str) -> (Client, Value) {
        Client::join_url(&server.ws_url(), room, name).await
    }

    /// Connects to a WebSocket URL and joins.
    pub async fn join_url(url: &str, room: &str, name: &str) -> (Client, Value) {
        let mut client = Client::connect_url(url).await;
        client.send(join_msg(room, name)).await;
        let welcome = client.recv_type("welcome").await;
        client.id = welcome["id"].as_u64().expect("welcome.id");
        (client, welcome)
    }

    /// Sends a JSON value as a text frame.
    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// Sends an e2ee message.
    pub async fn send_e2ee(&mut self, to: u64, payload: &[u8]) {
        self.send(json!({"type": "e2ee", "to": to, "payload": URL_SAFE_NO_PAD.encode(payload)}))
            .await;
    }

    /// The next JSON message that is not a media-plane message, or None if the
    /// connection closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("timed out waiting for a message")?;
            match frame {
                Ok(Message::Text(text)) => {
                    let v: Value = serde_json::from_str(text.as_str()).expect("server sent JSON");
                    if MEDIA_TYPES.contains(&v["type"].as_str().unwrap_or_default()) {
                        continue;
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame of any kind, or None when the stream ended.
    pub async fn next_raw(&mut self) -> Option<Message> {
        tokio::time::timeout(STEP, self.ws.next())
            .await
            .expect("timed out waiting for a frame")
            .and_then(Result::ok)
    }

    /// The next message, which must have this type.
    pub async fn recv_type(&mut self, expected: &str) -> Value {
        let v = self
            .next()
            .await
            .unwrap_or_else(|| panic!("connection closed while waiting for {expected}"));
        assert_eq!(v["type"], expected, "expected {expected}, got {v}");
        v
    }

    /// The next message, which must be an error with this code.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        let v = self.recv_type("error").await;
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    /// Asserts nothing but media-plane messages arrive for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(None) => panic!("connection closed"),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert!(
                        MEDIA_TYPES.contains(&v["type"].as_str().unwrap_or_default()),
                        "expected silence, got {v}"
                    );
                }
                Ok(Some(Ok(Message::Close(c)))) => panic!("connection closed: {c:?}"),
                Ok(Some(_)) => {}
            }
        }
    }

    /// Reads until the connection ends, skipping messages; returns how it ended.
    pub async fn closed(&mut self) -> Closed {
        loop {
            let frame = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed::Frame(frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Closed::Abrupt,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The WebSocket itself (e.g. to split it).
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }

    /// Closes the socket from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A TCP connection to the server from local address `from` (e.g. "127.0.0.2").
pub async fn tcp_from(server: &ServerHandle, from: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server.local_addr()).await.unwrap()
}

/// A minimal HTTP/1.1 GET: returns status, lower-cased headers and body.
pub async fn http_get(server: &ServerHandle, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    http_get_over(&mut stream, &server.local_addr().to_string(), path).await
}

/// `GET path` with `Host: host` over any stream (plain TCP or TLS); returns status,
/// lower-cased headers and body. A TLS peer that closes without close_notify ends the
/// read like a TCP close does.
pub async fn http_get_over<S>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP timeout");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The value of a header.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A fresh web directory with a few files of each kind.
pub fn temp_web_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sealed-web-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>Sealed</title>",
    )
    .unwrap();
    std::fs::write(dir.join("app.js"), "export const x = 1;").unwrap();
    std::fs::write(dir.join("worker.js"), "onmessage = () => {};").unwrap();
    std::fs::write(dir.join("lib.mjs"), "export default 1;").unwrap();
    std::fs::write(dir.join("style.css"), "body{}").unwrap();
    std::fs::write(dir.join("pkg/client_wasm.js"), "export default 1;").unwrap();
    std::fs::write(dir.join("pkg/client_wasm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}
