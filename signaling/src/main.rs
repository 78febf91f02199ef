//! `sealed`: the Sealed server. See `sealed --help` and `docs/DEPLOY.md`.

use clap::Parser as _;
use signaling::Server;
use signaling::cli::{Cli, Command, ServeArgs};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, filter::FilterExt as _};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().into_command() {
        Command::Serve(args) => serve(args).await,
        Command::Token(args) => {
            println!("{}", args.mint()?);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // tungstenite logs whole WebSocket frames at debug/trace, and those frames carry
    // E2EE key messages: never let a verbose RUST_LOG print them.
    // The turn crate logs every relayed datagram at debug: cap it like tungstenite.
    let filter = [
        "tungstenite=info",
        "tokio_tungstenite=info",
        "turn=info",
        "stun=info",
    ]
    .into_iter()
    .filter_map(|d| d.parse().ok())
    .fold(filter, EnvFilter::add_directive);
    // A peer can make a library log per packet: cap library lines (log_limit.rs).
    let limit = signaling::log_limit::LogLimit::default();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(filter.and(limit.clone())))
        .init();
    tokio::spawn(signaling::log_limit::report(limit));
    // Linux starts us with a soft limit of 1024 descriptors; the hard limit is what
    // the operator allows. The connection cap is derived from it in Server::bind.
    match signaling::descriptors::raise_limit() {
        Ok(limit) if limit.now > limit.before => {
            tracing::info!(from = limit.before, to = limit.now, "raised RLIMIT_NOFILE");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE"),
    }
    let config = args.into_config()?;
    let auth = if config.auth_secret.is_some() {
        "tokens required"
    } else {
        "open rooms"
    };
    let self_signed = matches!(
        config.tls.as_ref().map(|t| &t.source),
        Some(signaling::tls::TlsSource::SelfSigned { .. })
    );
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(trim_memory());
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let url = if addr.ip().is_unspecified() {
        format!("{scheme}://localhost:{}/", addr.port())
    } else {
        format!("{scheme}://{addr}/")
    };
    if let Some(f) = server.tls_fingerprints() {
        if self_signed {
            // For people comparing what the browser shows, and for Chromium's flag.
            println!(
                "TLS certificate (self-signed) SHA-256 fingerprint: {}",
                f.sha256
            );
            println!(
                "Chromium without warnings: --ignore-certificate-errors-spki-list={}",
                f.spki_sha256
            );
        }
        tracing::info!(sha256 = %f.sha256, "TLS certificate");
    }
    tracing::info!(%addr, auth, "Sealed is listening");
    println!("Sealed is running: open {url} to start a meeting");
    server.run(signaling::shutdown_signal()).await?;
    Ok(())
}

/// How often freed memory is handed back to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// glibc keeps memory freed by a flood of connections in its per-thread arenas
/// (RSS 135 → 579 MiB over six floods, 20 MiB after `malloc_trim`): give it back
/// periodically. `malloc_trim` walks every arena and releases whole free pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn trim_memory() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim only touches the allocator's own free lists.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}
