//! `loadgen`: puts a fixed load on a Sealed server over loopback and reports what the SFU
//! did with it.
//!
//! Each room gets `--publishers` participants sending audio (50 frames/s of 120 B) and
//! VP8-shaped video (30 frames/s of `--video-pps` / 30 × `--video-bytes` B, packetized) and
//! `--subscribers` participants that only receive. Every participant runs the real E2EE
//! engine ([`client_wasm::Session`]) and takes part in the key exchange through signaling,
//! as a browser does: publishers encrypt each frame (SFrame) before packetizing it, and
//! receivers reassemble, decrypt and check it. The frame's sender, number and send time are
//! inside the encrypted payload, so receivers measure loss and one-way latency only on what
//! they decrypted; decryption failures are counted. Audio is not Opus-encoded or decoded
//! (synthetic bytes behind an Opus TOC byte): the load generator stays cheap.
//!
//! By default the server is a separate
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
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use client_wasm::{Codec, Identity, Session, SessionConfig};
use tests::media::{
    BodyInfo, FrameAssembler, check_body, synthetic_body, synthetic_vp8_frame, vp8_body,
    vp8_packetize,
};
use tests::participant::{Event, JoinOptions, Participant};
use tests::protocol::{MediaKind, ServerMessage, decode_b64};
use tests::rtc::{LocalTrack, ReceivedRtp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    #[arg(long, default_value = "20s", value_parser = tests::duration::parse_duration)]
    duration: Duration,
    /// Video size per publisher, in packets per second: 30 frames/s, each of
    /// `video_pps / 30 × video_bytes` bytes before encryption and packetizing.
    #[arg(long, default_value_t = 300)]
    video_pps: u32,
    /// Video bytes per packet's worth (see `--video-pps`).
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
    /// Media port of the spawned server's single-port engine (`--udp-port`); without it
    /// the server gets `--udp-ports 41000-42999` (the older engine, and what builds
    /// before the single-port engine understand).
    #[arg(long)]
    udp_port: Option<u16>,
    /// Once everyone is connected, limit the server to this percentage of one core (a
    /// Linux cgroup CPU quota; needs root): a way to offer more than the SFU can forward —
    /// an overload — with a load generator that is itself no faster than the SFU.
    #[arg(long)]
    sfu_cpu_quota: Option<u32>,
}

/// A CPU-quota cgroup holding the server (`--sfu-cpu-quota`); removed when dropped.
struct CpuQuota {
    dir: PathBuf,
    pid: u32,
}

impl CpuQuota {
    /// Shortest period of the quota: short, so a throttled server waits milliseconds.
    const MIN_PERIOD_US: u64 = 10_000;
    /// The kernel's smallest quota per period.
    const MIN_QUOTA_US: u64 = 1_000;

    /// `cpu.max`'s quota and period (µs) for `percent` % of one core: the period long enough
    /// that the quota is at least the kernel's minimum (rounded up: 3 % is 1,000 of 33,334
    /// µs, not 999 of 33,333, which the kernel refuses).
    fn quota_and_period(percent: u32) -> (u64, u64) {
        let percent = u64::from(percent.clamp(1, 100));
        let period = Self::MIN_PERIOD_US.max((Self::MIN_QUOTA_US * 100).div_ceil(percent));
        (period * percent / 100, period)
    }

    /// Moves `pid` into a new cgroup allowed `percent` % of one core (cgroup v2's `cpu.max`
    /// when the cpu controller is there, else v1's CFS quota).
    fn apply(pid: u32, percent: u32) -> Result<CpuQuota> {
        let (quota, period) = Self::quota_and_period(percent);
        let name = format!("sealed-loadgen-{pid}");
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let v2_has_cpu = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
        let dir = if v2_has_cpu {
            let dir = v2.join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
            dir
        } else {
            let dir = PathBuf::from("/sys/fs/cgroup/cpu").join(&name);
            std::fs::create_dir_all(&dir).context("no cgroup cpu controller (v1 or v2)")?;
            std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            dir
        };
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", dir.display()))?;
        Ok(CpuQuota { dir, pid })
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // A cgroup is removable once empty: hand the server back to the parent first.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::write(parent.join("cgroup.procs"), self.pid.to_string());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
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
        let media = match args.udp_port {
            Some(udp) => ["--udp-port".to_owned(), udp.to_string()],
            None => ["--udp-ports".to_owned(), "41000-42999".to_owned()],
        };
        let mut child = tokio::process::Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--max-participants",
                "1000",
            ])
            .args(media)
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

/// What receivers measured (during the measurement window only).
#[derive(Default)]
struct Measure {
    /// RTP packets received.
    packets: u64,
    /// Frames decrypted and checked.
    frames: u64,
    /// Frames that failed to decrypt.
    decrypt_failures: u64,
    /// Frames that decrypted but whose body did not check out.
    corrupt: u64,
    /// Video frames lost in transport (a packet missing).
    incomplete: u64,
    /// Send-to-decrypted latency of every frame.
    latencies_us: Vec<u64>,
    /// Per (receiver, track index): (min frame number, max frame number, count).
    spans: HashMap<(u64, u64), (u64, u64, u64)>,
}

impl Measure {
    fn merge_into(&mut self, m: &mut Measure) {
        m.packets += std::mem::take(&mut self.packets);
        m.frames += std::mem::take(&mut self.frames);
        m.decrypt_failures += std::mem::take(&mut self.decrypt_failures);
        m.corrupt += std::mem::take(&mut self.corrupt);
        m.incomplete += std::mem::take(&mut self.incomplete);
        m.latencies_us.append(&mut self.latencies_us);
        for (k, (lo, hi, n)) in self.spans.drain() {
            let e = m.spans.entry(k).or_insert((lo, hi, 0));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
            e.2 += n;
        }
    }
}

/// Flags and totals shared by every participant task.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    measuring: AtomicBool,
    frames_sent: AtomicU64,
    packets_sent: AtomicU64,
    /// Frames not sent for lack of a sending key (before the key exchange settled).
    not_sent_no_key: AtomicU64,
    /// Decryption failures outside the measurement window (during key exchange).
    setup_decrypt_failures: AtomicU64,
}

/// A participant's progress, read by the setup loop.
struct Status {
    /// Forwarded tracks opened on its subscribe connection.
    opened: AtomicU64,
    /// Its sending epoch (`u64::MAX`: none yet).
    epoch: AtomicU64,
}

/// One published track and the index that names it in frames.
struct Outgoing {
    track: LocalTrack,
    index: u64,
    frame_no: u64,
}

/// One participant: signaling, key exchange, sending and receiving, in one task.
struct LoadParticipant {
    p: Participant,
    session: Session,
    start: Instant,
    audio: Option<Outgoing>,
    video: Option<Outgoing>,
    video_body: usize,
    assemblers: HashMap<(u64, String), FrameAssembler>,
    local: Measure,
}

impl LoadParticipant {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Sends what the engine wants sent; drops its events (nothing here acts on them).
    fn flush(&mut self, status: &Status) {
        while let Some(out) = self.session.poll_outgoing() {
            self.p.send_e2ee(out.to, &out.payload);
        }
        while self.session.poll_event().is_some() {}
        status
            .epoch
            .store(self.session.epoch().unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn on_event(&mut self, e: Event, status: &Status) {
        let now = self.now_ms();
        match e {
            Event::Server(ServerMessage::ParticipantJoined { participant }) => {
                if let Some(pk) = participant.public_key_bytes() {
                    let _ = self.session.member_joined(now, participant.id, &pk);
                }
            }
            Event::Server(ServerMessage::ParticipantLeft { id }) => {
                self.session.member_left(now, id);
            }
            Event::Server(ServerMessage::E2ee { from, payload }) => {
                if let Some(bytes) = decode_b64(&payload) {
                    self.session.receive(now, from, &bytes);
                }
            }
            Event::TrackOpened { .. } => {
                status.opened.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.flush(status);
    }

    /// Encrypts one frame (its number and send time inside) and sends it.
    async fn send(&mut self, kind: MediaKind, shared: &Shared) {
        let body = self.video_body;
        let out = match kind {
            MediaKind::Audio => self.audio.as_mut(),
            MediaKind::Video => self.video.as_mut(),
        };
        let Some(out) = out else { return };
        let info = BodyInfo {
            sender: out.index,
            frame_no: out.frame_no,
            sent_at_us: tests::media::now_us(),
        };
        let (codec, plain) = match kind {
            MediaKind::Audio => {
                // An Opus TOC byte (clear prefix), then the synthetic body.
                let mut f = vec![0xfc];
                f.extend_from_slice(&synthetic_body(info, AUDIO_FRAME_BYTES - 1));
                (Codec::Opus, f)
            }
            MediaKind::Video => {
                let key = out.frame_no.is_multiple_of(KEYFRAME_EVERY);
                (Codec::Vp8, synthetic_vp8_frame(key, info, body))
            }
        };
        let frame_no = out.frame_no;
        out.frame_no += 1;
        let ct = match self.session.encrypt(codec, &plain) {
            Ok(ct) => ct,
            Err(_) => {
                shared.not_sent_no_key.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let track = &out.track;
        let rtp_time = (frame_no as u32).wrapping_mul(match kind {
            MediaKind::Audio => 960,
            MediaKind::Video => 3000,
        });
        let packets = match kind {
            MediaKind::Audio => vec![ct],
            MediaKind::Video => vp8_packetize(&ct, frame_no as u16),
        };
        let last = packets.len() - 1;
        for (i, p) in packets.into_iter().enumerate() {
            let marker = kind == MediaKind::Video && i == last;
            if track.send(Bytes::from(p), rtp_time, marker).await.is_err() {
                return;
            }
            shared.packets_sent.fetch_add(1, Ordering::Relaxed);
        }
        shared.frames_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Reassembles, decrypts and checks a received frame; measures after decryption.
    fn on_media(&mut self, r: ReceivedRtp, shared: &Shared) {
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let Some(publisher) = r.publisher else { return };
        if measuring {
            self.local.packets += 1;
        }
        let frame = match r.kind {
            MediaKind::Audio => Some(r.packet.payload.to_vec()),
            MediaKind::Video => {
                let a = self.assemblers.entry((publisher, r.track_id)).or_default();
                let before = a.incomplete;
                let f = a.push(
                    r.packet.sequence_number,
                    r.packet.timestamp,
                    r.packet.marker,
                    &r.packet.payload,
                );
                if measuring {
                    self.local.incomplete += a.incomplete - before;
                }
                f
            }
        };
        let Some(frame) = frame else { return };
        let (codec, skip) = match r.kind {
            MediaKind::Audio => (Codec::Opus, 1),
            MediaKind::Video => (Codec::Vp8, 0),
        };
        let plain = match self.session.decrypt(codec, &frame) {
            Ok(plain) => plain,
            Err(_) => {
                if measuring {
                    self.local.decrypt_failures += 1;
                } else {
                    shared
                        .setup_decrypt_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        let body = match r.kind {
            MediaKind::Audio => plain.get(skip..),
            MediaKind::Video => vp8_body(&plain),
        };
        let Some(info) = body.and_then(check_body) else {
            if measuring {
                self.local.corrupt += 1;
            }
            return;
        };
        if !measuring {
            return;
        }
        let m = &mut self.local;
        m.frames += 1;
        m.latencies_us
            .push(tests::media::now_us().saturating_sub(info.sent_at_us));
        let e =
            m.spans
                .entry((self.p.id, info.sender))
                .or_insert((info.frame_no, info.frame_no, 0));
        e.0 = e.0.min(info.frame_no);
        e.1 = e.1.max(info.frame_no);
        e.2 += 1;
    }
}

/// Opus-sized audio frames (plaintext bytes).
const AUDIO_FRAME_BYTES: usize = 120;
/// A video keyframe every this many frames.
const KEYFRAME_EVERY: u64 = 60;

/// Runs one participant until `stop` (or its connection closes).
async fn run_participant(
    mut lp: LoadParticipant,
    shared: Arc<Shared>,
    status: Arc<Status>,
    out: Arc<Mutex<Measure>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let mut video_tick = tokio::time::interval(Duration::from_secs(1) / 30);
    let mut report = tokio::time::interval(Duration::from_millis(500));
    for t in [&mut tick, &mut audio_tick, &mut video_tick, &mut report] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    }
    let now = lp.now_ms();
    for m in lp.p.roster.clone() {
        if let Some(pk) = m.public_key_bytes() {
            let _ = lp.session.member_joined(now, m.id, &pk);
        }
    }
    lp.flush(&status);
    let (has_audio, has_video) = (lp.audio.is_some(), lp.video.is_some());
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                let now = lp.now_ms();
                lp.session.tick(now);
                lp.flush(&status);
            }
            _ = audio_tick.tick(), if has_audio => lp.send(MediaKind::Audio, &shared).await,
            _ = video_tick.tick(), if has_video => lp.send(MediaKind::Video, &shared).await,
            _ = report.tick() => {
                if let Ok(mut m) = out.lock() {
                    lp.local.merge_into(&mut m);
                }
            }
            ev = lp.p.events.recv() => match ev {
                Some(Event::Closed) | None => break,
                Some(e) => lp.on_event(e, &status),
            },
            Some(r) = lp.p.media.recv() => lp.on_media(r, &shared),
        }
    }
    if let Ok(mut m) = out.lock() {
        lp.local.merge_into(&mut m);
    }
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
    let shared = Arc::new(Shared::default());
    let measure = Arc::new(Mutex::new(Measure::default()));
    let per_room = args.publishers + args.subscribers;
    let tracks_per_room = 2 * args.publishers as u64;
    let video_body = (args.video_pps / 30).max(1) as usize * args.video_bytes;
    let setup_started = Instant::now();
    let mut statuses = Vec::new();
    let mut track_index = 0u64;
    for room in 0..args.rooms {
        let room_name = format!("load-{room}");
        // The meeting secret of the room's link, known to its participants only.
        let secret: [u8; 32] = rand::random();
        for i in 0..per_room {
            let identity = Identity::generate();
            let mut opts = JoinOptions::new(&server.url, &room_name, &format!("p{i}"));
            opts.media_capacity = 65_536;
            opts.public_key = identity.public_key().to_vec();
            let p = Participant::join(opts)
                .await
                .with_context(|| format!("joining room {room_name}"))?;
            let session = Session::new(
                &p.room,
                p.id,
                Some(secret),
                identity,
                SessionConfig::default(),
            )
            .context("engine session")?;
            let (mut audio, mut video) = (None, None);
            if i < args.publishers {
                let tracks = p
                    .publish(&[MediaKind::Audio, MediaKind::Video])
                    .await
                    .with_context(|| format!("publishing in {room_name}"))?;
                for track in tracks {
                    let kind = track.kind();
                    let out = Some(Outgoing {
                        track,
                        index: track_index,
                        frame_no: 0,
                    });
                    track_index += 1;
                    match kind {
                        MediaKind::Audio => audio = out,
                        MediaKind::Video => video = out,
                    }
                }
            }
            let own = if i < args.publishers { 2 } else { 0 };
            let status = Arc::new(Status {
                opened: AtomicU64::new(0),
                epoch: AtomicU64::new(u64::MAX),
            });
            statuses.push((p.id, tracks_per_room - own, status.clone()));
            let lp = LoadParticipant {
                p,
                session,
                start: Instant::now(),
                audio,
                video,
                video_body,
                assemblers: HashMap::new(),
                local: Measure::default(),
            };
            tokio::spawn(run_participant(lp, shared.clone(), status, measure.clone()));
        }
    }
    // Wait until every participant receives every track of its room but its own and the
    // key exchange settled: everyone sends with its room's newest epoch.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let opened = statuses
            .iter()
            .all(|(_, want, s)| s.opened.load(Ordering::Relaxed) >= *want);
        let epochs: Vec<u64> = statuses
            .iter()
            .map(|(_, _, s)| s.epoch.load(Ordering::Relaxed))
            .collect();
        let settled = statuses.chunks(per_room).all(|room| {
            let e = room[0].2.epoch.load(Ordering::Relaxed);
            e != u64::MAX
                && room
                    .iter()
                    .all(|(_, _, s)| s.epoch.load(Ordering::Relaxed) == e)
        });
        if opened && settled {
            break;
        }
        if Instant::now() > deadline {
            for (id, want, s) in &statuses {
                eprintln!(
                    "warning: participant {id} opened {} of {want} tracks, epoch {:?}",
                    s.opened.load(Ordering::Relaxed),
                    Some(s.epoch.load(Ordering::Relaxed)).filter(|e| *e != u64::MAX)
                );
            }
            eprintln!("warning: measuring anyway (epochs {epochs:?})");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup = setup_started.elapsed();
    let _quota = match (args.sfu_cpu_quota, server.pid) {
        (Some(percent), Some(pid)) => Some(CpuQuota::apply(pid, percent)?),
        (Some(_), None) => bail!("--sfu-cpu-quota needs the server's pid (--server-pid)"),
        (None, _) => None,
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let fwd_before = server.metric("sealed_sfu_forwarded_packets_total").await;
    let usage_before = server.usage();
    let own_before = proc_usage(std::process::id());
    let frames_before = shared.frames_sent.load(Ordering::Relaxed);
    let packets_before = shared.packets_sent.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let usage_after = server.usage();
    let own_after = proc_usage(std::process::id());
    let fwd_after = server.metric("sealed_sfu_forwarded_packets_total").await;
    let dropped = server.metric("sealed_sfu_dropped_packets_total").await;
    let shed = server.metric("sealed_sfu_shed_packets_total").await;
    let frames_sent = shared.frames_sent.load(Ordering::Relaxed) - frames_before;
    let packets_sent = shared.packets_sent.load(Ordering::Relaxed) - packets_before;
    // Let every task hand over what it measured, then stop them.
    tokio::time::sleep(Duration::from_millis(700)).await;
    shared.stop.store(true, Ordering::Relaxed);

    let m = {
        let mut g = measure.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        std::mem::take(&mut *g)
    };
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
    let forwarded = fwd_server.unwrap_or(m.packets as f64);
    let (cpu, rss) = match (usage_before, usage_after) {
        (Some((c0, _)), Some((c1, r))) => (Some(c1 - c0), Some(r)),
        _ => (None, None),
    };
    let video_packets = vp8_packetize(&vec![0; video_body + 10 + 40], 0).len();

    println!("| setting | value |");
    println!("|---|---|");
    println!(
        "| rooms × (publishers + subscribers) | {} × ({} + {}) = {} participants, each with an E2EE engine |",
        args.rooms,
        args.publishers,
        args.subscribers,
        args.rooms * per_room
    );
    println!(
        "| per publisher (SFrame-encrypted frames) | audio 50 frames/s × {AUDIO_FRAME_BYTES} B, video 30 frames/s × {video_body} B ({video_packets} packets each) |",
    );
    println!(
        "| setup (join + publish + tracks open + keys agreed) | {:.1} s |",
        setup.as_secs_f64()
    );
    println!("| measured | {elapsed:.1} s |");
    println!(
        "| sent by publishers | {:.0} frames/s, {:.0} packets/s |",
        frames_sent as f64 / elapsed,
        packets_sent as f64 / elapsed
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
        m.packets as f64 / elapsed
    );
    println!(
        "| frames decrypted and verified | {:.0} /s ({} frames) |",
        m.frames as f64 / elapsed,
        m.frames
    );
    println!(
        "| decrypt failures | {} while measuring, {} during setup; {} corrupt after decryption |",
        m.decrypt_failures,
        shared.setup_decrypt_failures.load(Ordering::Relaxed),
        m.corrupt
    );
    println!(
        "| frame loss at receivers | {:.3} % ({} of {expected}; {} video frames incomplete) |",
        loss * 100.0,
        expected.saturating_sub(got),
        m.incomplete
    );
    if let Some(d) = dropped {
        println!("| SFU dropped packets (total) | {d:.0} |");
    }
    if let Some(s) = shed {
        println!("| SFU shed packets, waited too long (total) | {s:.0} |");
    }
    if let Some(percent) = args.sfu_cpu_quota {
        println!("| SFU CPU quota | {percent} % of one core |");
    }
    println!(
        "| one-way latency send → decrypted, p50 / p99 | {:.2} ms / {:.2} ms |",
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

// Not `mod tests`: that name would shadow the `tests` crate this binary uses.
#[cfg(test)]
mod quota_tests {
    use super::CpuQuota;

    #[test]
    fn every_percentage_gives_a_quota_the_kernel_accepts() {
        for percent in 0..=120 {
            let (quota, period) = CpuQuota::quota_and_period(percent);
            let want = percent.clamp(1, 100) as f64 / 100.0;
            assert!(
                quota >= CpuQuota::MIN_QUOTA_US,
                "{percent} %: quota {quota}"
            );
            assert!(
                period >= CpuQuota::MIN_PERIOD_US,
                "{percent} %: period {period}"
            );
            let got = quota as f64 / period as f64;
            assert!((got - want).abs() < 0.001, "{percent} %: {quota}/{period}");
        }
    }
}
