//! TLS in the binary: HTTPS and WSS on the accept loop, security headers, reloading
//! the certificate without dropping a meeting, the handshake under the connection cap
//! and the header timeout, the HTTP→HTTPS redirect, and TURN over TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use signaling::tls::{TlsConfig, TlsSource};
use signaling::turn::{EmbeddedTurnConfig, TurnConfig};
use signaling::{Config, Limits, ServerHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{header, http_get_over, join_msg, start};

/// Accepts any certificate (these tests check *which* one is served) and remembers
/// the last one presented.
#[derive(Debug, Default)]
struct Presented(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Presented {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A TLS client that records the certificate it was shown.
fn connector(presented: &Arc<Presented>, alpn: &[&[u8]]) -> TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(presented.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, presented: &Arc<Presented>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(presented, &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sealed-tls-it-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a fresh certificate and key for `name` at `dir/server.{crt,key}`.
fn write_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn with_tls(source: TlsSource) -> Config {
    Config {
        tls: Some(TlsConfig {
            source,
            http_redirect: None,
        }),
        ..Config::ephemeral()
    }
}

async fn wss(
    server: &ServerHandle,
    presented: &Arc<Presented>,
) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = tls_connect(server.local_addr(), presented).await;
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), tls)
        .await
        .expect("WebSocket over TLS");
    ws
}

async fn next_json(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> serde_json::Value {
    use futures_util::StreamExt as _;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn https_and_wss_serve_the_meeting_with_hsts_only_for_a_real_certificate() {
    use futures_util::SinkExt as _;
    let dir = temp_dir();
    let (cert, key) = write_cert(&dir, "localhost");
    for (source, hsts) in [
        (TlsSource::Files { cert, key }, true),
        (
            TlsSource::SelfSigned {
                names: vec!["localhost".into()],
            },
            false,
        ),
    ] {
        let server = start(with_tls(source)).await;
        assert!(server.http_url().starts_with("https://"));
        let presented = Arc::new(Presented::default());
        let mut tls = tls_connect(server.local_addr(), &presented).await;
        let (status, headers, _) = http_get_over(&mut tls, "localhost", "/healthz").await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "strict-transport-security").is_some(),
            hsts,
            "{headers:?}"
        );
        assert!(header(&headers, "content-security-policy").is_some());
        let shown = presented.0.lock().unwrap().clone().unwrap();
        assert_eq!(
            fingerprint(&shown),
            server.tls_fingerprints().unwrap().sha256
        );

        let mut ws = wss(&server, &presented).await;
        ws.send(Message::text(join_msg("r", "A").to_string()))
            .await
            .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "welcome");

        // Plain HTTP on the TLS port is not served.
        let mut plain = TcpStream::connect(server.local_addr()).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_keeps_meetings_open() {
    use futures_util::SinkExt as _;
    let dir = temp_dir();
    let (cert, key) = write_cert(&dir, "localhost");
    let server = start(with_tls(TlsSource::Files { cert, key })).await;
    let old = server.tls_fingerprints().unwrap().sha256;
    let presented = Arc::new(Presented::default());
    let mut a = wss(&server, &presented).await;
    a.send(Message::text(join_msg("r", "A").to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut a).await["type"], "welcome");

    write_cert(&dir, "localhost");
    let new = server.reload_tls().expect("reload").sha256;
    assert_ne!(new, old);

    // A new connection sees the new certificate…
    let fresh = Arc::new(Presented::default());
    let mut b = wss(&server, &fresh).await;
    assert_eq!(fingerprint(&fresh.0.lock().unwrap().clone().unwrap()), new);
    b.send(Message::text(join_msg("r", "B").to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut b).await["type"], "welcome");
    // …and the meeting on the old one goes on.
    let joined = next_json(&mut a).await;
    assert_eq!(joined["type"], "participant_joined", "{joined}");

    // A broken renewal keeps the current certificate.
    std::fs::write(dir.join("server.crt"), "garbage").unwrap();
    assert!(server.reload_tls().is_err());
    let again = Arc::new(Presented::default());
    let _c = tls_connect(server.local_addr(), &again).await;
    assert_eq!(fingerprint(&again.0.lock().unwrap().clone().unwrap()), new);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_stalled_handshake_holds_a_connection_slot_until_the_header_timeout() {
    let config = Config {
        limits: Limits {
            max_connections: 1,
            header_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..with_tls(TlsSource::SelfSigned {
            names: vec!["localhost".into()],
        })
    };
    let server = start(config).await;
    // Connects and never starts the handshake.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The cap is reached: the next client gets the health-only server, over TLS.
    let presented = Arc::new(Presented::default());
    let mut full = tls_connect(server.local_addr(), &presented).await;
    assert_eq!(http_get_over(&mut full, "localhost", "/").await.0, 503);
    let mut health = tls_connect(server.local_addr(), &presented).await;
    assert_eq!(
        http_get_over(&mut health, "localhost", "/healthz").await.0,
        200
    );

    // The silent one is closed by the timeout, which frees the slot.
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut now = tls_connect(server.local_addr(), &presented).await;
    assert_eq!(http_get_over(&mut now, "localhost", "/").await.0, 200);
}

#[tokio::test]
async fn plain_http_is_redirected_to_https() {
    let config = Config {
        tls: Some(TlsConfig {
            source: TlsSource::SelfSigned {
                names: vec!["localhost".into()],
            },
            http_redirect: Some("127.0.0.1:0".parse().unwrap()),
        }),
        ..Config::ephemeral()
    };
    let server = signaling::Server::bind(config).await.unwrap();
    let redirect = server.redirect_addr().expect("redirect listener");
    let https_port = server.local_addr().port();
    let _handle = server.spawn();
    let mut plain = TcpStream::connect(redirect).await.unwrap();
    let (status, headers, _) = http_get_over(
        &mut plain,
        &format!("127.0.0.1:{}", redirect.port()),
        "/m/standup?token=x",
    )
    .await;
    assert_eq!(status, 308);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("https://127.0.0.1:{https_port}/m/standup?token=x").as_str())
    );
    let mut hostile = TcpStream::connect(redirect).await.unwrap();
    assert_eq!(
        http_get_over(&mut hostile, "evil.example/x?", "/").await.0,
        400
    );
}

#[tokio::test]
async fn turn_runs_over_tls_with_the_same_certificate() {
    let mut config = with_tls(TlsSource::SelfSigned {
        names: vec!["localhost".into()],
    });
    config.turn = TurnConfig {
        embedded: Some(EmbeddedTurnConfig::ephemeral()),
        ..TurnConfig::default()
    };
    let server = start(config).await;
    let addrs = server.turn_addrs().unwrap();
    let tls_addr = addrs.tls.expect("a TURN TLS listener");

    let presented = Arc::new(Presented::default());
    let mut ws = wss(&server, &presented).await;
    {
        use futures_util::SinkExt as _;
        ws.send(Message::text(join_msg("r", "A").to_string()))
            .await
            .unwrap();
    }
    let welcome = next_json(&mut ws).await;
    let urls = &welcome["ice_servers"][0]["urls"];
    assert_eq!(
        urls[2],
        json!(format!("turns:127.0.0.1:{}?transport=tcp", tls_addr.port())),
        "{urls}"
    );
    let username = welcome["ice_servers"][0]["username"].as_str().unwrap();
    let password = welcome["ice_servers"][0]["credential"].as_str().unwrap();

    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let turn_presented = Arc::new(Presented::default());
    let tls = connector(&turn_presented, &[])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TURN TLS handshake");
    assert_eq!(
        fingerprint(&turn_presented.0.lock().unwrap().clone().unwrap()),
        server.tls_fingerprints().unwrap().sha256
    );
    let mut client = crate::turn_client::TurnClient::stream(tls, username, password);
    client.allocate().await.expect("allocation over TLS");
    assert_eq!(server.turn_stats().unwrap().allocations, 1);
}

/// The `sealed` binary reloads its certificate on SIGHUP, and keeps serving.
#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_running_binary() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = temp_dir();
    let (cert, key) = write_cert(&dir, "localhost");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealed"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--turn",
            "off",
            "--tls-cert",
        ])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sealed");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("https://127.0.0.1:").nth(1) {
                return rest.split('/').next().unwrap().parse::<u16>().unwrap();
            }
        }
        panic!("sealed printed no https URL");
    })
    .await
    .expect("sealed starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let shown =
        |presented: &Arc<Presented>| fingerprint(&presented.0.lock().unwrap().clone().unwrap());

    let before = Arc::new(Presented::default());
    let _kept = tls_connect(addr, &before).await;
    write_cert(&dir, "localhost");
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut renewed = None;
    for _ in 0..50 {
        let after = Arc::new(Presented::default());
        let mut tls = tls_connect(addr, &after).await;
        if shown(&after) != shown(&before) {
            assert_eq!(
                http_get_over(&mut tls, "localhost", "/healthz").await.0,
                200
            );
            renewed = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(renewed.is_some(), "SIGHUP did not reload the certificate");
    assert!(
        child.try_wait().unwrap().is_none(),
        "sealed exited on SIGHUP"
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(dir);
}
