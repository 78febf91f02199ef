//! `cargo xtask dist`: one self-contained `sealed` — the server with the web client
//! compiled in (feature `embed-web` of `signaling`) — at `<repo>/dist/sealed`, and the
//! check that it really needs nothing next to it.
//!
//! The check ([`self_check`]) copies the binary alone into a fresh temporary
//! directory, starts it there on free ports, and fetches the page, a route, a script,
//! the WASM engine and two paths that must not exist over plain HTTP, comparing the
//! bytes with the files the binary was built from. Its `web/` folder is still on this
//! machine (a binary falls back to it when it carries no page), so the check also
//! insists on what only the embedded copy does: the start-up line that names it, and a
//! 404 for `web/README.md`, which a folder would serve.
//!
//! The `dist` stage of `cargo xtask test` runs [`build_binary`] in debug and
//! [`self_check`] on the result (see `steps::dist_check`).

use anyhow::{Context, Result, bail, ensure};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::steps::{self, run};

/// The log line (`signaling::web::check_source`) of a server serving its embedded copy.
const EMBEDDED_LOG: &str = "serving the web client embedded in this binary";

/// What `sealed` prints once it listens; the URL follows.
const RUNNING_LINE: &str = "Sealed is running: open ";

/// How long the server may take to start, and each request to finish.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `cargo xtask dist [--debug]`: the web package and the binary (both release unless
/// `debug`), `dist/sealed`, then [`self_check`] on it.
pub fn dist(root: &Path, release: bool) -> Result<PathBuf> {
    steps::build_web(root, release)?;
    let bin = copy_to_dist(root, &build_binary(root, release)?)?;
    self_check(&bin, &root.join("web"))?;
    eprintln!(
        "xtask: {} is ready: copy it anywhere and run it",
        bin.display()
    );
    Ok(bin)
}

/// `--debug` or nothing: whether `dist` builds in release.
pub fn parse_release(args: &[String]) -> Result<bool> {
    match args {
        [] => Ok(true),
        [flag] if flag == "--debug" => Ok(false),
        _ => bail!("usage: cargo xtask dist [--debug]"),
    }
}

/// Builds `sealed` with the web client inside (the `web/` folder as it is now: build
/// the web package first); returns where Cargo put it (`target/<profile>/sealed`).
pub fn build_binary(root: &Path, release: bool) -> Result<PathBuf> {
    let mut build = steps::cargo(root);
    build.args([
        "build",
        "-p",
        "signaling",
        "--bin",
        "sealed",
        "--features",
        "embed-web",
    ]);
    if release {
        build.arg("--release");
    }
    run(&mut build)?;
    let profile = if release { "release" } else { "debug" };
    Ok(steps::target_dir(root).join(profile).join("sealed"))
}

/// Copies `built` to `<root>/dist/sealed`, which it returns.
fn copy_to_dist(root: &Path, built: &Path) -> Result<PathBuf> {
    let dist = root.join("dist");
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    // Copy next to it, then rename: a `dist/sealed` that is running gets replaced, not
    // refused with "text file busy".
    let partial = dist.join(".sealed.partial");
    let out = dist.join("sealed");
    std::fs::copy(built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("xtask: {} -> {}", built.display(), out.display());
    Ok(out)
}

/// Starts a copy of `bin`, alone in a fresh directory, and checks that it serves the
/// web client of `web` (the folder it was built from) from memory; the server is
/// stopped and the directory removed afterwards, also on failure.
pub fn self_check(bin: &Path, web: &Path) -> Result<()> {
    let dir = TempDir::new("sealed-dist-check")?;
    let copy = dir.0.join("sealed");
    std::fs::copy(bin, &copy).with_context(|| format!("copying {}", bin.display()))?;
    let udp = free_media_port()?;
    let mut command = Command::new(&copy);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--udp-port"])
        .arg(udp.to_string())
        .current_dir(&dir.0)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Nothing from this shell may point it at a web directory (or change anything else).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SEALED_") {
            command.env_remove(name);
        }
    }
    eprintln!(
        "xtask: dist check: starting {} alone in {} (media port {udp})",
        copy.display(),
        dir.0.display()
    );
    let mut server = Server::start(command)?;
    let addr = server.wait_until_running()?;
    let result = check_responses(addr, web, &server);
    if result.is_err() {
        server.drain();
        eprintln!(
            "xtask: dist check failed; the server said:\n{}",
            server.log()
        );
    }
    server.stop();
    result?;
    eprintln!("xtask: dist check passed");
    Ok(())
}

/// The requests of [`self_check`] against a server at `addr`.
fn check_responses(addr: SocketAddr, web: &Path, server: &Server) -> Result<()> {
    let read = |name: &str| {
        let path = web.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let report = |path: &str, r: &HttpResponse, what: &str| {
        eprintln!(
            "xtask: dist check: GET {path} -> {} {}, {} bytes{what}",
            r.status,
            r.header("content-type").unwrap_or("(no content-type)"),
            r.body.len()
        );
    };

    ensure!(
        server.log().contains(EMBEDDED_LOG),
        "the server did not log {EMBEDDED_LOG:?}: it does not serve an embedded web client"
    );
    eprintln!("xtask: dist check: the server says it serves its embedded web client");

    let index = read("index.html")?;
    let root = http_get(addr, "/")?;
    root.expect(200, "text/html", "/")?;
    ensure!(
        root.header("content-security-policy").is_some(),
        "/ has no Content-Security-Policy"
    );
    ensure!(root.body == index, "/ is not web/index.html");
    ensure!(
        String::from_utf8_lossy(&root.body).contains("<title>Sealed"),
        "/ is not the Sealed page"
    );
    report(
        "/",
        &root,
        ", equals web/index.html, with the security headers",
    );

    let meeting = http_get(addr, "/m/some-room")?;
    meeting.expect(200, "text/html", "/m/some-room")?;
    ensure!(meeting.body == index, "/m/some-room is not web/index.html");
    report("/m/some-room", &meeting, ", the same index");

    let worker = http_get(addr, "/worker.js")?;
    worker.expect(200, "text/javascript", "/worker.js")?;
    ensure!(worker.body == read("worker.js")?, "/worker.js differs");
    report("/worker.js", &worker, ", equals web/worker.js");

    let wasm_path = "/pkg/client_wasm_bg.wasm";
    let wasm = http_get(addr, wasm_path)?;
    wasm.expect(200, "application/wasm", wasm_path)?;
    ensure!(
        wasm.body.starts_with(b"\0asm"),
        "{wasm_path} is not WebAssembly"
    );
    ensure!(
        wasm.body == read("pkg/client_wasm_bg.wasm")?,
        "{wasm_path} differs from the built web/pkg/client_wasm_bg.wasm"
    );
    report(
        wasm_path,
        &wasm,
        ", \\0asm, equals the built web/pkg/client_wasm_bg.wasm",
    );

    for (path, why) in [
        ("/no-such-file.js", "unknown path"),
        (
            "/README.md",
            "in web/ but not embedded: not read from a folder",
        ),
    ] {
        let missing = http_get(addr, path)?;
        ensure!(
            missing.status == 404,
            "{path}: expected 404, got {}",
            missing.status
        );
        report(path, &missing, &format!(" ({why})"));
    }
    Ok(())
}

/// A server child process; killed (and reaped) when dropped.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    fn start(mut command: Command) -> Result<Server> {
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        forward_lines(stdout, tx.clone());
        forward_lines(stderr, tx);
        Ok(Server {
            child,
            lines,
            log: Vec::new(),
        })
    }

    /// Waits for the "Sealed is running" line; the address it names.
    fn wait_until_running(&mut self) -> Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let url = line
                        .strip_prefix(RUNNING_LINE)
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(str::to_owned);
                    self.log.push(line);
                    if let Some(url) = url {
                        // Lines logged together with it (the embedded-client line comes
                        // first) are already in the channel.
                        self.drain();
                        return url
                            .trim_start_matches("http://")
                            .trim_end_matches('/')
                            .parse()
                            .with_context(|| format!("cannot parse the address in {url:?}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "sealed did not start within {START_TIMEOUT:?}:\n{}",
                        self.log()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("sealed exited ({status}) during start-up:\n{}", self.log())
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// Everything it printed so far.
    fn log(&self) -> String {
        self.log.join("\n")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn forward_lines(pipe: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for UDP (media) and TCP (ICE over TCP uses the same number).
fn free_media_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no port free for both UDP and TCP on 127.0.0.1")
}

/// An HTTP response: status, lower-cased header names, body.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fails unless the status is `status` and the content type starts with `mime`.
    fn expect(&self, status: u16, mime: &str, path: &str) -> Result<()> {
        ensure!(
            self.status == status,
            "{path}: expected {status}, got {}",
            self.status
        );
        let content_type = self.header("content-type").unwrap_or_default();
        ensure!(
            content_type.starts_with(mime),
            "{path}: expected Content-Type {mime}, got {content_type:?}"
        );
        Ok(())
    }
}

/// One `GET` over HTTP/1.1 with `Connection: close`.
fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse> {
    let mut tcp = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    tcp.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)
        .with_context(|| format!("reading the response to GET {path}"))?;
    parse_response(&raw).with_context(|| format!("GET {path}"))
}

/// Parses a complete HTTP/1.1 response (`Content-Length` or chunked body).
fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    let head = std::str::from_utf8(&raw[..split]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let body = if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().context("bad Content-Length")?;
        ensure!(
            rest.len() >= length,
            "body cut short: {} of {length} bytes",
            rest.len()
        );
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { body, ..response })
}

/// The body of a chunked transfer encoding.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        ensure!(data.len() >= size + 2, "chunk cut short");
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dist_takes_only_debug() {
        assert!(parse_release(&args(&[])).unwrap());
        assert!(!parse_release(&args(&["--debug"])).unwrap());
        assert!(parse_release(&args(&["--release"])).is_err());
        assert!(parse_release(&args(&["--debug", "--debug"])).is_err());
    }

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let plain = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/wasm\r\ncontent-length: 4\r\n\r\n\0asm",
        )
        .unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-type"), Some("application/wasm"));
        assert_eq!(plain.body, b"\0asm");
        assert!(plain.expect(200, "application/wasm", "/x").is_ok());
        assert!(plain.expect(200, "text/html", "/x").is_err());
        assert!(plain.expect(404, "application/wasm", "/x").is_err());

        let chunked = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (404, &b"abcde"[..])
        );

        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn media_ports_are_free_for_udp_and_tcp() {
        let port = free_media_port().unwrap();
        UdpSocket::bind(("127.0.0.1", port)).unwrap();
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
