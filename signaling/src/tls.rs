//! TLS in the binary, through rustls: a certificate from PEM files (reloaded on
//! SIGHUP, so a renewed certificate is picked up without dropping a meeting) or one
//! generated at start for LAN trials, and the acceptors the web server and TURN over
//! TLS use.
//!
//! Why in the binary: browsers give camera, microphone and encoded transforms only to
//! secure contexts, so without TLS a host needs a reverse proxy before anyone can join;
//! and TURN over TLS (for networks that allow nothing but TLS) needs the certificate
//! anyway.
//!
//! A reload swaps the certificate behind a [`ResolvesServerCert`] that every new
//! handshake asks; established connections keep theirs. A reload that fails (missing
//! file, key that does not match) keeps the old certificate and says why in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use tokio_rustls::TlsAcceptor;

/// Where the certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: the certificate chain (leaf first) and its private key.
    Files {
        /// `--tls-cert`.
        cert: PathBuf,
        /// `--tls-key`.
        key: PathBuf,
    },
    /// A certificate generated at start for these names (DNS names or IPs). Browsers
    /// warn about it; Chromium accepts it silently with
    /// `--ignore-certificate-errors-spki-list=<the printed SPKI hash>`.
    SelfSigned {
        /// Subject alternative names.
        names: Vec<String>,
    },
}

/// TLS settings of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate.
    pub source: TlsSource,
    /// A plain-HTTP listener that redirects every request to HTTPS (e.g. `0.0.0.0:80`).
    pub http_redirect: Option<std::net::SocketAddr>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificate or key.
    #[error("the certificate and key do not work together: {0}")]
    Rustls(#[from] rustls::Error),
    /// rcgen could not make a certificate.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A reload was asked of a generated certificate.
    #[error("a generated certificate has no files to reload")]
    NothingToReload,
}

/// The certificate's fingerprints, for people comparing what their browser shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-256 of the certificate (DER), as `AB:CD:…` — what browsers show.
    pub sha256: String,
    /// base64 SHA-256 of the SubjectPublicKeyInfo: Chromium's
    /// `--ignore-certificate-errors-spki-list` value.
    pub spki_sha256: String,
}

/// TLS of a running server.
pub struct Tls {
    source: TlsSource,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    fingerprints: Fingerprints,
}

/// The certificate every new handshake gets; swapped on reload.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl Tls {
    /// Loads (or generates) the certificate.
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, fingerprints) = certified_key(&config.source, &provider)?;
        Ok(Tls {
            source: config.source.clone(),
            provider,
            current: Arc::new(CurrentCert(ArcSwap::from_pointee(key))),
            fingerprints,
        })
    }

    /// Re-reads the PEM files; on failure the old certificate stays.
    pub fn reload(&self) -> Result<Fingerprints, TlsError> {
        if !self.reloadable() {
            return Err(TlsError::NothingToReload);
        }
        let (key, fingerprints) = certified_key(&self.source, &self.provider)?;
        self.current.0.store(Arc::new(key));
        Ok(fingerprints)
    }

    /// The fingerprints of the certificate loaded at start.
    pub fn fingerprints(&self) -> &Fingerprints {
        &self.fingerprints
    }

    /// Whether the certificate comes from files that SIGHUP reloads.
    pub fn reloadable(&self) -> bool {
        matches!(self.source, TlsSource::Files { .. })
    }

    /// Whether responses should carry `Strict-Transport-Security`: with a real
    /// certificate only. HSTS on a name served with a self-signed certificate would
    /// make its warning impossible to click through for a year.
    pub fn hsts(&self) -> bool {
        self.reloadable()
    }

    /// The acceptor for HTTPS (ALPN `http/1.1`: the WebSocket needs HTTP/1.1).
    pub fn http_acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        self.acceptor(vec![b"http/1.1".to_vec()])
    }

    /// The acceptor for TURN over TLS (no ALPN: TURN clients rarely send one).
    pub fn turn_acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        self.acceptor(Vec::new())
    }

    fn acceptor(&self, alpn: Vec<Vec<u8>>) -> Result<TlsAcceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = alpn;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Builds the certificate of `source` and its fingerprints.
fn certified_key(
    source: &TlsSource,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Fingerprints), TlsError> {
    let (chain, key, spki) = match source {
        TlsSource::Files { cert, key } => {
            let chain = read_chain(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
            (chain, key, None)
        }
        TlsSource::SelfSigned { names } => {
            let generated = rcgen::generate_simple_self_signed(names.clone())?;
            let spki = rcgen::PublicKeyData::subject_public_key_info(&generated.signing_key);
            let key =
                PrivateKeyDer::try_from(generated.signing_key.serialize_der()).map_err(|e| {
                    TlsError::Pem {
                        path: PathBuf::from("(generated)"),
                        reason: e.to_string(),
                    }
                })?;
            (vec![generated.cert.der().clone()], key, Some(spki))
        }
    };
    let Some(leaf) = chain.first().cloned() else {
        return Err(TlsError::Pem {
            path: PathBuf::from("(certificate)"),
            reason: "no certificate in the file".into(),
        });
    };
    let certified = CertifiedKey::from_der(chain, key, provider)?;
    let spki = match spki {
        Some(spki) => spki,
        None => spki_of(&leaf)?,
    };
    let fingerprints = Fingerprints {
        sha256: colon_hex(&Sha256::digest(leaf.as_ref())),
        spki_sha256: STANDARD.encode(Sha256::digest(&spki)),
    };
    Ok((certified, fingerprints))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The SubjectPublicKeyInfo (DER) of a certificate.
fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::Pem {
        path: PathBuf::from("(certificate)"),
        reason: format!("not an X.509 certificate: {e}"),
    })?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The router of the plain-HTTP redirect listener: every request gets `308` to the
/// same host, path and query over HTTPS on `https_port`.
pub(crate) fn redirect_router(https_port: u16) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::IntoResponse as _;
    axum::Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(crate::host::host_name);
        let Some(host) = host else {
            return (StatusCode::BAD_REQUEST, "no valid Host header").into_response();
        };
        let port = if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{host}{port}{path}");
        (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
            "this server speaks HTTPS",
        )
            .into_response()
    })
}

/// Reloads the certificate on every SIGHUP until `stop` completes.
#[cfg(unix)]
pub(crate) async fn reload_on_sighup(tls: Arc<Tls>, stop: impl std::future::Future<Output = ()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; certificates will not reload");
            return;
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match tls.reload() {
            Ok(f) => tracing::info!(sha256 = %f.sha256, "TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sealed-tls-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes a fresh self-signed certificate and key as PEM files.
    fn write_pem(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn self_signed_certificates_print_matching_fingerprints() {
        let tls = Tls::new(&TlsConfig {
            source: TlsSource::SelfSigned {
                names: vec!["localhost".into(), "127.0.0.1".into()],
            },
            http_redirect: None,
        })
        .unwrap();
        let f = tls.fingerprints();
        assert_eq!(f.sha256.len(), 32 * 3 - 1);
        assert_eq!(STANDARD.decode(&f.spki_sha256).unwrap().len(), 32);
        // The SPKI hash of the served certificate equals the printed one.
        let served = tls.current.0.load_full();
        assert_eq!(
            STANDARD.encode(Sha256::digest(spki_of(&served.cert[0]).unwrap())),
            f.spki_sha256
        );
        assert!(!tls.hsts(), "no HSTS with a self-signed certificate");
        assert!(matches!(tls.reload(), Err(TlsError::NothingToReload)));
        tls.http_acceptor().unwrap();
        tls.turn_acceptor().unwrap();
    }

    #[test]
    fn pem_files_load_and_reload_and_bad_files_keep_the_old_certificate() {
        let dir = temp_dir();
        let (cert, key) = write_pem(&dir, "a.example");
        let tls = Tls::new(&TlsConfig {
            source: TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            http_redirect: None,
        })
        .unwrap();
        assert!(tls.hsts());
        let first = tls.fingerprints().sha256.clone();

        // Renewed certificate at the same paths.
        let (new_cert, new_key) = write_pem(&dir, "b.example");
        std::fs::rename(&new_cert, &cert).unwrap();
        std::fs::rename(&new_key, &key).unwrap();
        let renewed = tls.reload().unwrap();
        assert_ne!(renewed.sha256, first);
        let served = tls.current.0.load_full();
        assert_eq!(
            colon_hex(&Sha256::digest(served.cert[0].as_ref())),
            renewed.sha256
        );

        // A key that does not match, then a missing file: refused, old one kept.
        let (_, other_key) = write_pem(&dir, "c.example");
        std::fs::copy(&other_key, &key).unwrap();
        assert!(tls.reload().is_err());
        std::fs::remove_file(&cert).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::Pem { .. })));
        let still = tls.current.0.load_full();
        assert_eq!(
            colon_hex(&Sha256::digest(still.cert[0].as_ref())),
            renewed.sha256
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn garbage_is_refused_with_the_file_named() {
        let dir = temp_dir();
        let cert = dir.join("x.crt");
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = Tls::new(&TlsConfig {
            source: TlsSource::Files {
                cert: cert.clone(),
                key: cert.clone(),
            },
            http_redirect: None,
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("x.crt"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
