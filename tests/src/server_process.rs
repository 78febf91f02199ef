//! A `sealed` server as a child process, for measurements that need its own RSS,
//! descriptors, logs and resource limits (the abuse harness).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

/// A running `sealed` child. Its log (stdout and stderr) goes to a file.
pub struct SealedProcess {
    /// The HTTP address it listens on.
    pub addr: SocketAddr,
    /// Its pid.
    pub pid: u32,
    /// Where its log goes.
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl SealedProcess {
    /// Starts `bin` listening on a free loopback port with `args`, optionally with
    /// soft = hard `RLIMIT_NOFILE` of `nofile`, and waits until it listens.
    pub async fn spawn(
        bin: &Path,
        args: &[String],
        nofile: Option<u64>,
        log: PathBuf,
    ) -> Result<SealedProcess> {
        Self::spawn_with_env(bin, args, nofile, log, &[]).await
    }

    /// [`spawn`](Self::spawn) with extra environment variables, set after the default
    /// `RUST_LOG=warn` (so `("RUST_LOG", "info")` overrides it).
    pub async fn spawn_with_env(
        bin: &Path,
        args: &[String],
        nofile: Option<u64>,
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Result<SealedProcess> {
        let mut command = tokio::process::Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs before exec.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, n, n));
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id().context("child has no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let file = tokio::fs::File::create(&log).await?;
        tokio::spawn(copy_log(stdout, stderr, file, addr_tx));
        let url = tokio::time::timeout(Duration::from_secs(20), addr_rx)
            .await
            .context("sealed did not start within 20 s")?
            .context("sealed exited during start-up")?;
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("cannot parse {url:?}"))?;
        Ok(SealedProcess {
            addr,
            pid,
            log,
            child,
        })
    }

    /// `ws://addr/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Open descriptors.
    pub fn descriptors(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .ok()?
                .count(),
        )
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// One GET with `Connection: close`; the status and body, or None on timeout or
    /// a broken connection.
    pub async fn get(&self, path: &str, timeout: Duration) -> Option<(u16, String)> {
        http_get(self.addr, path, timeout).await
    }

    /// A gauge or counter from `/metrics` (first sample of that name).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics", Duration::from_secs(5)).await?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines so far.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it (SIGKILL) and waits.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn copy_log(
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    mut file: tokio::fs::File,
    addr_tx: tokio::sync::oneshot::Sender<String>,
) {
    let mut addr_tx = Some(addr_tx);
    let mut out = tokio::io::BufReader::new(stdout).lines();
    let mut err = tokio::io::BufReader::new(stderr).lines();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
            l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
        };
        let Some(line) = line else { continue };
        if let Some(url) = line.strip_prefix("Sealed is running: open ")
            && let Some(tx) = addr_tx.take()
        {
            let _ = tx.send(url.split_whitespace().next().unwrap_or_default().to_owned());
        }
        let _ = file.write_all(line.as_bytes()).await;
        let _ = file.write_all(b"\n").await;
    }
    let _ = file.flush().await;
}

/// One HTTP/1.1 GET with `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let work = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// Polls `/healthz` every `every` until `stop`; returns (answered with 200, asked,
/// slowest answer).
pub async fn watch_health(addr: SocketAddr, every: Duration, stop: Stop) -> (u32, u32, Duration) {
    let (mut ok, mut asked, mut slowest) = (0, 0, Duration::ZERO);
    while !stop.is_set() {
        let start = Instant::now();
        asked += 1;
        if let Some((200, _)) = http_get(addr, "/healthz", Duration::from_secs(2)).await {
            ok += 1;
            slowest = slowest.max(start.elapsed());
        }
        tokio::time::sleep(every).await;
    }
    (ok, asked, slowest)
}

/// A stop flag shared by background tasks. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Tells everybody to stop.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once set.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The `sealed` binary to run: `explicit`, else the one next to this executable
/// (`target/release/sealed` for a release harness). Fails unless it exists.
pub fn sealed_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let bin = match explicit {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .join("sealed"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p signaling (or pass --sealed)",
            bin.display()
        );
    }
    Ok(bin)
}
