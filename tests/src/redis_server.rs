//! A throwaway `redis-server` (Debian's package) as a child process, for the multi-node
//! tests: no persistence, loopback only, on a free port; it can be stopped and started
//! again on the same port to simulate an outage.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped, to be restarted) `redis-server`.
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    /// Where its output goes (appended to across restarts).
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port with its log in `log`, and waits
    /// until it answers `PING`.
    pub async fn start(log: PathBuf) -> Result<RedisServer> {
        let bin = redis_binary()?;
        let port = free_tcp_port()?;
        let mut server = RedisServer {
            bin,
            port,
            log,
            child: None,
        };
        server.launch().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Kills it (SIGKILL, by pid) and waits until it is gone and its port refuses
    /// connections.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Starts it again on the same port and waits until it answers `PING`.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.launch().await
    }

    /// Runs one command (see [`command`]).
    pub async fn command(&self, args: &[&str]) -> Result<Option<String>> {
        command(self.port, args, Duration::from_secs(5)).await
    }

    /// True if it answers `PING` with `+PONG` within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> bool {
        ping(self.port, timeout).await
    }

    async fn launch(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let err = log.try_clone()?;
        let dir = self.log.parent().unwrap_or(Path::new("."));
        let mut child = tokio::process::Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let started = Instant::now();
        loop {
            if ping(self.port, Duration::from_millis(500)).await {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "redis-server on port {} exited with {status} during start-up; its log ({}):\n{}",
                    self.port,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}; its log ({}):\n{}",
                    self.port,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// `redis-server` from PATH, else `/usr/bin/redis-server`.
pub fn redis_binary() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("redis-server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    let fallback = PathBuf::from("/usr/bin/redis-server");
    match on_path {
        Some(p) => Ok(p),
        None if fallback.is_file() => Ok(fallback),
        None => bail!(
            "redis-server not found (neither on PATH nor at /usr/bin/redis-server): \
             `cargo xtask test` installs the Debian package `redis-server` \
             (or: apt-get install -y redis-server)"
        ),
    }
}

/// One raw RESP `PING` to 127.0.0.1:`port`; true on `+PONG`.
pub async fn ping(port: u16, timeout: Duration) -> bool {
    matches!(command(port, &["PING"], timeout).await, Ok(Some(reply)) if reply == "PONG")
}

/// Sends one command to 127.0.0.1:`port` and reads its reply: a simple string or a bulk
/// string (`None` for a nil one), e.g. `SET k v PX 10000` → `OK`, `GET k` → the value.
/// An error reply, another reply type or a timeout is an error.
pub async fn command(port: u16, args: &[&str], timeout: Duration) -> Result<Option<String>> {
    let work = async {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.write_all(&request).await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            if let Some(parsed) = parse_reply(&reply)? {
                return Ok(parsed);
            }
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                bail!("connection closed before a whole reply");
            }
            reply.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .with_context(|| format!("redis {args:?} timed out"))?
}

/// A whole reply in `bytes`, or `Ok(None)` when more bytes are needed.
fn parse_reply(bytes: &[u8]) -> Result<Option<Option<String>>> {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&bytes[1..end]).into_owned();
    match bytes.first() {
        Some(b'+') => Ok(Some(Some(line))),
        Some(b'-') => bail!("redis error: {line}"),
        Some(b'$') => {
            let len: i64 = line.parse().context("bulk length")?;
            if len < 0 {
                return Ok(Some(None));
            }
            let start = end + 2;
            let len = len as usize;
            if bytes.len() < start + len + 2 {
                return Ok(None);
            }
            let value = String::from_utf8_lossy(&bytes[start..start + len]).into_owned();
            Ok(Some(Some(value)))
        }
        _ => bail!("unexpected reply {line:?}"),
    }
}

/// A loopback TCP port nobody listens on right now.
fn free_tcp_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_whole() {
        assert_eq!(parse_reply(b"+OK\r\n").unwrap(), Some(Some("OK".into())));
        assert_eq!(
            parse_reply(b"$6\r\nnode-b\r\n").unwrap(),
            Some(Some("node-b".into()))
        );
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some(None));
        assert_eq!(
            parse_reply(b"$6\r\nnode").unwrap(),
            None,
            "half a bulk string"
        );
        assert_eq!(parse_reply(b"+O").unwrap(), None);
        assert!(parse_reply(b"-ERR wrong\r\n").is_err());
        assert!(parse_reply(b":1\r\n").is_err());
    }
}
