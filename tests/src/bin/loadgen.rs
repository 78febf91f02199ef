//! `loadgen`: puts a fixed load on a Sealed server over loopback and reports what the SFU
//! did with it.
//!
//! Each room gets `--publishers` participants sending Opus-sized audio (50 packets/s) and
//! VP8-shaped video (`--video-pps` packets/s) and `--subscribers` participants that only
//! receive. Every payload carries its track's packet counter and its send time, so
//! receivers measure loss and one-way latency. By default the server is a separate
//! process (`target/release/sealed` next to this binary) so its CPU time and RSS can be
//! read from `/proc/<pid>`; `--server URL` uses a running server instead (no CPU figures
//! unless `--server-pid` is given).
//!
//! ```text
//! cargo build --release -p signaling -p tests
//! cargo run --release -p tests --bin loadgen -- --rooms 1 --publishers 4 --subscribers 4 --duration 20s
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use tests::media::vp8_packetize;
use tests::participant::{Event, JoinOptions, Participant};
use tests::protocol::MediaKind;
use tests::rtc::{LocalTrack, ReceivedRtp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Marks loadgen payloads (and keeps them apart from anything else).
const MAGIC: &[u8; 8] = b"LOADGEN1";

#[derive(Parser, Debug)]
#[command(about = "Load generator for the Sealed SFU (loopback only)")]
struct Args {
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room (each sends one audio and one video track).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Receive-only participants per room.
    #[arg(long, default_value_t = 4)]
    subscribers: usize,
    /// Measurement duration (e.g. `30s`, `2m`), after everyone is connected.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Video packets per second per publisher (30 frames/s, split evenly).
    #[arg(long, default_value_t = 300)]
    video_pps: u32,
    /// Video payload bytes per packet.
    #[arg(long, default_value_t = 1000)]
    video_bytes: usize,
    /// Use this running server (`ws://127.0.0.1:PORT/ws`) instead of spawning one.
    #[arg(long)]
    server: Option<String>,
    /// With `--server`: the server's pid, for CPU and RSS figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The `sealed` binary to spawn (default: next to this executable).
    #[arg(long)]
    sealed: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s:?} (use ms, s or m)")),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A payload: magic, track index, counter, send time, padding.
fn payload(track: u32, counter: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(28));
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(&track.to_be_bytes());
    p.extend_from_slice(&counter.to_be_bytes());
    p.extend_from_slice(&now_us().to_be_bytes());
    p.resize(len.max(28), 0xa5);
    p
}

fn parse_payload(p: &[u8]) -> Option<(u32, u64, u64)> {
    if p.len() < 28 || &p[..8] != MAGIC {
        return None;
    }
    Some((
        u32::from_be_bytes(p[8..12].try_into().ok()?),
        u64::from_be_bytes(p[12..20].try_into().ok()?),
        u64::from_be_bytes(p[20..28].try_into().ok()?),
    ))
}

/// The server under test, spawned or given.
struct ServerProc {
    url: String,
    http: String,
    pid: Option<u32>,
    child: Option<tokio::process::Child>,
}

impl ServerProc {
    async fn start(args: &Args) -> Result<ServerProc> {
        if let Some(url) = &args.server {
            let http = url
                .replacen("ws://", "http://", 1)
                .trim_end_matches("/ws")
                .to_owned();
            return Ok(ServerProc {
                url: url.clone(),
                http,
                pid: args.server_pid,
                child: None,
            });
        }
        let bin = match &args.sealed {
            Some(p) => p.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("executable has no directory")?
                .join("sealed"),
        };
        if !bin.is_file() {
            bail!(
                "{} not found: build it (cargo build --release -p signaling) or pass --sealed/--server",
                bin.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = tokio::process::Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--udp-ports",
                "41000-42999",
                "--max-participants",
                "1000",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id();
        let http = format!("http://127.0.0.1:{port}");
        // Wait for /healthz.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if http_get(&http, "/healthz")
                .await
                .is_ok_and(|b| b.contains("ok"))
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("sealed exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("sealed did not become healthy within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(ServerProc {
            url: format!("ws://127.0.0.1:{port}/ws"),
            http,
            pid,
            child: Some(child),
        })
    }

    /// (CPU seconds user+system, RSS bytes) of the server process.
    fn usage(&self) -> Option<(f64, u64)> {
        proc_usage(self.pid?)
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(&self.http, "/metrics").await.ok()?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

/// (CPU seconds user+system, RSS bytes) of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SC_CLK_TCK is 100 on Linux.
    let cpu = (utime + stime) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss_kb * 1024))
}

/// A minimal HTTP/1.0 GET on loopback.
async fn http_get(base: &str, path: &str) -> Result<String> {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timeout")??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
        .await
        .context("read timeout")??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// What receivers measured.
#[derive(Default)]
struct Measure {
    received: u64,
    latencies_us: Vec<u64>,
    /// Per (receiver, track index): (min counter, max counter, count).
    spans: HashMap<(u64, u32), (u64, u64, u64)>,
}

/// Sends one track's packets at `pps` until `stop`.
fn spawn_sender(
    track: LocalTrack,
    index: u32,
    pps: u32,
    bytes: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        let (frames_per_s, packets_per_frame) = match track.kind() {
            MediaKind::Audio => (pps, 1),
            MediaKind::Video => (30.min(pps).max(1), (pps / 30).max(1)),
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1) / frames_per_s);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut counter = 0u64;
        let mut frame = 0u32;
        let ts_step = track.clock_rate() / frames_per_s;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            for i in 0..packets_per_frame {
                let p = payload(index, counter, bytes);
                let p = match track.kind() {
                    // A VP8 payload descriptor in front, as real video has.
                    MediaKind::Video => vp8_packetize(&p, frame as u16).remove(0),
                    MediaKind::Audio => p,
                };
                let marker = track.kind() == MediaKind::Video && i + 1 == packets_per_frame;
                if track
                    .send(Bytes::from(p), frame.wrapping_mul(ts_step), marker)
                    .await
                    .is_err()
                {
                    return;
                }
                counter += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            frame = frame.wrapping_add(1);
        }
    });
}

fn spawn_receiver(
    mut p: Participant,
    measuring: Arc<AtomicBool>,
    out: Arc<Mutex<Measure>>,
) -> tokio::task::JoinHandle<Participant> {
    tokio::spawn(async move {
        let id = p.id;
        let mut local = Measure::default();
        let mut flush = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                r = p.media.recv() => {
                    let Some(r) = r else { break };
                    record(&mut local, id, &r, measuring.load(Ordering::Relaxed));
                }
                _ = flush.tick() => {
                    if let Ok(mut m) = out.lock() {
                        m.received += std::mem::take(&mut local.received);
                        m.latencies_us.append(&mut local.latencies_us);
                        for (k, (lo, hi, n)) in local.spans.drain() {
                            let e = m.spans.entry(k).or_insert((lo, hi, 0));
                            e.0 = e.0.min(lo);
                            e.1 = e.1.max(hi);
                            e.2 += n;
                        }
                    }
                    if p.events.drain().iter().any(|e| matches!(e, Event::Closed)) {
                        break;
                    }
                }
            }
        }
        p
    })
}

fn record(m: &mut Measure, receiver: u64, r: &ReceivedRtp, measuring: bool) {
    if !measuring {
        return;
    }
    let body = match r.kind {
        MediaKind::Video => r.packet.payload.get(4..).unwrap_or(&[]),
        MediaKind::Audio => &r.packet.payload[..],
    };
    let Some((track, counter, sent_us)) = parse_payload(body) else {
        return;
    };
    m.received += 1;
    m.latencies_us.push(now_us().saturating_sub(sent_us));
    let e = m
        .spans
        .entry((receiver, track))
        .or_insert((counter, counter, 0));
    e.0 = e.0.min(counter);
    e.1 = e.1.max(counter);
    e.2 += 1;
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.rooms == 0 || args.publishers == 0 {
        bail!("need at least one room and one publisher");
    }
    let server = ServerProc::start(&args).await?;
    let result = run(&args, &server).await;
    server.stop().await;
    result
}

async fn run(args: &Args, server: &ServerProc) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let measure = Arc::new(Mutex::new(Measure::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let per_room = args.publishers + args.subscribers;
    let tracks_per_room = 2 * args.publishers;
    let setup_started = Instant::now();
    let mut receivers = Vec::new();
    let mut track_index = 0u32;
    for room in 0..args.rooms {
        let room_name = format!("load-{room}");
        for i in 0..per_room {
            let mut opts = JoinOptions::new(&server.url, &room_name, &format!("p{i}"));
            opts.media_capacity = 65_536;
            let p = Participant::join(opts)
                .await
                .with_context(|| format!("joining room {room_name}"))?;
            if i < args.publishers {
                let tracks = p
                    .publish(&[MediaKind::Audio, MediaKind::Video])
                    .await
                    .with_context(|| format!("publishing in {room_name}"))?;
                for t in tracks {
                    let pps = if t.kind() == MediaKind::Audio {
                        50
                    } else {
                        args.video_pps
                    };
                    let bytes = if t.kind() == MediaKind::Audio {
                        120
                    } else {
                        args.video_bytes
                    };
                    spawn_sender(t, track_index, pps, bytes, stop.clone(), sent.clone());
                    track_index += 1;
                }
            }
            receivers.push(p);
        }
    }
    // Wait until every participant receives every track of its room but its own.
    let mut handles = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (n, mut p) in receivers.into_iter().enumerate() {
        let own = if n % per_room < args.publishers { 2 } else { 0 };
        let want = tracks_per_room - own;
        let mut opened = 0;
        while opened < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = p
                .events
                .wait_for(left, |e| {
                    matches!(e, Event::TrackOpened { .. }).then_some(())
                })
                .await;
            if got.is_none() {
                eprintln!(
                    "warning: participant {} opened {opened} of {want} tracks",
                    p.id
                );
                break;
            }
            opened += 1;
        }
        handles.push(spawn_receiver(p, measuring.clone(), measure.clone()));
    }
    let setup = setup_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let fwd_before = server.metric("sealed_sfu_forwarded_packets_total").await;
    let usage_before = server.usage();
    let own_before = proc_usage(std::process::id());
    let sent_before = sent.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let usage_after = server.usage();
    let own_after = proc_usage(std::process::id());
    let fwd_after = server.metric("sealed_sfu_forwarded_packets_total").await;
    let dropped = server.metric("sealed_sfu_dropped_packets_total").await;
    let sent_n = sent.load(Ordering::Relaxed) - sent_before;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(700)).await;

    let m = {
        let mut g = measure.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        std::mem::take(&mut *g)
    };
    for h in &handles {
        h.abort();
    }
    let mut lat = m.latencies_us.clone();
    lat.sort_unstable();
    let (expected, got): (u64, u64) = m
        .spans
        .values()
        .fold((0, 0), |(e, g), (lo, hi, n)| (e + hi - lo + 1, g + n));
    let loss = if expected == 0 {
        0.0
    } else {
        1.0 - got as f64 / expected as f64
    };
    let fwd_server = match (fwd_before, fwd_after) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let forwarded = fwd_server.unwrap_or(m.received as f64);
    let (cpu, rss) = match (usage_before, usage_after) {
        (Some((c0, _)), Some((c1, r))) => (Some(c1 - c0), Some(r)),
        _ => (None, None),
    };

    println!("| setting | value |");
    println!("|---|---|");
    println!(
        "| rooms × (publishers + subscribers) | {} × ({} + {}) = {} participants |",
        args.rooms,
        args.publishers,
        args.subscribers,
        args.rooms * per_room
    );
    println!(
        "| per publisher | audio 50 pkt/s × 120 B, video {} pkt/s × {} B |",
        args.video_pps, args.video_bytes
    );
    println!(
        "| setup (join + publish + all tracks open) | {:.1} s |",
        setup.as_secs_f64()
    );
    println!("| measured | {elapsed:.1} s |");
    println!(
        "| packets sent by publishers | {:.0} /s |",
        sent_n as f64 / elapsed
    );
    match fwd_server {
        Some(f) => println!(
            "| packets forwarded (SFU counter) | {:.0} /s |",
            f / elapsed
        ),
        None => println!("| packets forwarded (SFU counter) | n/a |"),
    }
    println!(
        "| packets received by participants | {:.0} /s |",
        m.received as f64 / elapsed
    );
    println!(
        "| loss at receivers | {:.3} % ({} of {expected}) |",
        loss * 100.0,
        expected.saturating_sub(got)
    );
    if let Some(d) = dropped {
        println!("| SFU dropped packets (total) | {d:.0} |");
    }
    println!(
        "| one-way latency p50 / p99 | {:.2} ms / {:.2} ms |",
        percentile(&lat, 0.5) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0
    );
    match cpu {
        Some(c) => {
            println!(
                "| SFU CPU | {:.2} s in {elapsed:.1} s ({:.0} % of one core) |",
                c,
                100.0 * c / elapsed
            );
            println!(
                "| SFU CPU per 1000 forwarded packets | {:.2} ms |",
                1000.0 * c / (forwarded / 1000.0).max(1e-9)
            );
        }
        None => println!("| SFU CPU | n/a (no server pid) |"),
    }
    if let (Some((c0, _)), Some((c1, _))) = (own_before, own_after) {
        // The participants run in this process: when it nears 100 % per core, the figures
        // above measure the load generator, not the SFU.
        println!(
            "| loadgen (all participants) CPU | {:.0} % of one core |",
            100.0 * (c1 - c0) / elapsed
        );
    }
    match rss {
        Some(r) => println!("| server RSS | {:.1} MiB |", r as f64 / (1024.0 * 1024.0)),
        None => println!("| server RSS | n/a |"),
    }
    Ok(())
}
