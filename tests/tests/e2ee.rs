//! End-to-end secrecy through the real server: bots that exchange keys like browsers hear
//! and see each other; the SFU forwards only ciphertext; leavers, late joiners and holders
//! of a wrong meeting secret decrypt nothing they must not; the server logs no secret.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use client_wasm::Session;
use common::TestServer;
use tests::bot::{BotConfig, BotHandle, BotReport, CapturedFrame, SessionHook, sframe_kid};
use tests::media::{PLAINTEXT_MARKER, check_last_second_is_tone, vp8_descriptor};
use tests::protocol::MediaKind;

/// Everything the server (and this process) logged, at trace level.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer_buf.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Key material the bots of one test held, collected at every key change: (what, bytes).
type Secrets = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A bot hook that adds everything its engine holds to `secrets` (test-only key export).
fn collect_keys(secrets: &Secrets) -> SessionHook {
    let secrets = secrets.clone();
    SessionHook(Arc::new(move |session: &Session| {
        let exported = session.export_secrets_for_tests().all();
        if let Ok(mut all) = secrets.lock() {
            for (what, bytes) in exported {
                if !all.iter().any(|(_, b)| *b == bytes) {
                    all.push((what, bytes));
                }
            }
        }
    }))
}

/// What to look for in logs so that no common rendering of `bytes` goes unnoticed: hex in
/// both cases, standard and URL-safe base64 (padded and not, and at each of the three
/// alignments it has inside a longer blob) and Rust `Debug` (decimal and hex). Long
/// renderings are cut to a prefix of at least 64 bits, so truncated output is caught too.
fn renderings(bytes: &[u8]) -> Vec<(String, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    const PREFIX: usize = 24;
    let cut = |s: String| s.chars().take(PREFIX).collect::<String>();
    let mut out = vec![
        ("lowercase hex".to_owned(), cut(hex::encode(bytes))),
        ("uppercase hex".to_owned(), cut(hex::encode_upper(bytes))),
        ("base64".to_owned(), cut(STANDARD.encode(bytes))),
        (
            "base64 unpadded".to_owned(),
            cut(STANDARD_NO_PAD.encode(bytes)),
        ),
        ("base64url".to_owned(), cut(URL_SAFE.encode(bytes))),
        (
            "base64url unpadded".to_owned(),
            cut(URL_SAFE_NO_PAD.encode(bytes)),
        ),
    ];
    for skip in 0..3 {
        // Inside a longer blob only complete 4-character groups are fixed by these bytes.
        let rest = &bytes[skip..];
        let complete = rest.len() / 3 * 4;
        for (name, engine) in [("base64", STANDARD), ("base64url", URL_SAFE_NO_PAD)] {
            out.push((
                format!("{name} inside a blob (offset {skip})"),
                cut(engine.encode(rest)[..complete].to_owned()),
            ));
        }
    }
    // `[1, 2, ...` and `[1, 2, ...]`: the first 8 bytes, open-ended, and the whole array.
    let head = &bytes[..bytes.len().min(8)];
    let debug = format!("{head:?}");
    out.push(("Debug".to_owned(), debug.trim_end_matches(']').to_owned()));
    for (form, shown) in [
        ("Debug hex", format!("{head:x?}")),
        ("Debug hex, two digits", format!("{head:02x?}")),
        ("Debug uppercase hex", format!("{head:02X?}")),
    ] {
        out.push((form.to_owned(), shown.trim_end_matches(']').to_owned()));
    }
    out.push(("Debug (whole)".to_owned(), format!("{bytes:?}")));
    out
}

/// The first rendering of any secret found in `text`: (what, form, context).
fn find_secret(text: &str, secrets: &[(String, Vec<u8>)]) -> Option<(String, String, String)> {
    let mut labels = Vec::new();
    let mut probes = Vec::new();
    for (what, bytes) in secrets {
        for (form, probe) in renderings(bytes) {
            labels.push((what.clone(), form));
            probes.push(probe);
        }
    }
    let ac = AhoCorasick::new(&probes).expect("probes build");
    let m = ac.find(text)?;
    let (what, form) = labels[m.pattern().as_usize()].clone();
    let from = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
    let to = text[m.end()..]
        .find('\n')
        .map_or(text.len(), |i| m.end() + i);
    Some((what, form, text[from..to].to_owned()))
}

/// The search finds every rendering, so the log test can fail.
#[test]
fn the_log_search_finds_every_rendering_of_a_secret() {
    let secret: Vec<u8> = (1..=32).map(|i| i * 7).collect();
    let salt: Vec<u8> = (1..=12).map(|i| i * 11).collect();
    for bytes in [&secret, &salt] {
        let secrets = [("x".to_owned(), bytes.clone())];
        let b = &bytes[..];
        let mut shown = vec![
            hex::encode(b),
            hex::encode_upper(b),
            format!("{b:?}"),
            format!("{b:x?}"),
            format!("{b:02x?}"),
            format!("{b:02X?}"),
        ];
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        for e in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            shown.push(e.encode(b));
            for pre in 1..3 {
                // Embedded in a longer blob at every alignment.
                let mut blob = vec![0xee; pre];
                blob.extend_from_slice(b);
                blob.push(0xff);
                shown.push(e.encode(&blob));
            }
        }
        for s in shown {
            let line = format!("2026 TRACE signaling::x: message payload={s} more");
            assert!(find_secret(&line, &secrets).is_some(), "missed {s}");
        }
        assert!(find_secret("TRACE signaling::x: message", &secrets).is_none());
    }
}

/// Asserts that the captured trace-level logs (server and bots alike) hold no rendering of
/// the meeting secret or any key material the bots held, and no E2EE payload.
fn assert_logs_clean(meeting_secret: &[u8; 32], secrets: &Secrets, reports: &[&BotReport]) {
    let logs = log_buffer();
    let text = String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned();
    // Our server code's lines; tungstenite's own trace output prints whole frames.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" signaling") || l.contains(" sfu"))
        .collect();
    assert!(!ours.is_empty(), "no server log lines captured");
    assert!(
        ours.iter().any(|l| l.contains(" TRACE ")),
        "the server's trace-level events were not captured"
    );
    let mut all = secrets.lock().expect("secrets").clone();
    all.push(("meeting secret".to_owned(), meeting_secret.to_vec()));
    let kinds = |label: &str| all.iter().filter(|(w, _)| w.contains(label)).count();
    eprintln!(
        "log check: {} bytes of logs; {} secrets ({} epoch secrets, {} base keys, {} SFrame keys, {} salts, {} pairwise keys)",
        text.len(),
        all.len(),
        kinds(" secret") - kinds("meeting"),
        kinds("base key"),
        kinds("sframe key"),
        kinds("sframe salt"),
        kinds("pairwise"),
    );
    assert!(kinds("sframe salt") > 0, "no key material was collected");
    if let Some((what, form, line)) = find_secret(&text, &all) {
        panic!("{what} found in logs as {form}: {line}");
    }
    // Our server code must not log E2EE payloads either (they are wrapped key material).
    for r in reports {
        for p in &r.e2ee_payloads {
            let probe = &p[..p.len().min(32)];
            if let Some(line) = ours.iter().find(|l| l.contains(probe)) {
                panic!("the server logged an E2EE payload: {line}");
            }
        }
    }
}

fn secret() -> [u8; 32] {
    rand::random()
}

async fn bot(
    keys: &Secrets,
    url: &str,
    room: &str,
    name: &str,
    secret: Option<[u8; 32]>,
    f: impl FnOnce(&mut BotConfig),
) -> BotHandle {
    let mut cfg = BotConfig::new(url, room, name, secret);
    cfg.on_keys = Some(collect_keys(keys));
    f(&mut cfg);
    BotHandle::spawn(cfg)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Packets the SFU forwarded: (publisher, track id, payload).
type Tapped = Arc<Mutex<Vec<(u64, String, Vec<u8>)>>>;

fn tap(server: &TestServer) -> Tapped {
    let tapped: Tapped = Arc::default();
    let t = tapped.clone();
    server
        .sfu()
        .set_tap(Some(Box::new(move |publisher, track_id, payload| {
            if let Ok(mut v) = t.lock() {
                v.push((publisher, track_id.to_owned(), payload.to_vec()));
            }
        })));
    tapped
}

/// Three bots with distinct tones: each decrypts, decodes and recognises the other two;
/// video checksums verify; everything the SFU forwarded is SFrame ciphertext that no key
/// the server could hold opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bots_hear_each_other_and_the_sfu_forwards_only_ciphertext() {
    three_tones(false).await;
}

/// The same, with every bot reaching the SFU only through the embedded TURN server
/// (relayed candidates only), as a participant behind a UDP-blocking firewall would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_the_turn_relay_bots_hear_each_other_and_the_sfu_forwards_only_ciphertext() {
    three_tones(true).await;
}

async fn three_tones(relay: bool) {
    log_buffer();
    let server = if relay {
        TestServer::start_with(|c| {
            c.turn.embedded = Some(signaling::turn::EmbeddedTurnConfig::ephemeral());
        })
        .await
    } else {
        TestServer::start().await
    };
    let tapped = tap(&server);
    let m = secret();
    let keys = Secrets::default();
    let tones = [440.0f32, 660.0, 1000.0];
    let mut bots = Vec::new();
    for (i, f) in tones.iter().enumerate() {
        bots.push(
            bot(
                &keys,
                &server.url,
                "tones",
                &format!("bot{i}"),
                Some(m),
                |c| {
                    c.audio = Some(tests::bot::AudioSource::Tone(*f));
                    c.keep_plaintext = true;
                    c.relay = relay;
                },
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.sfu().set_tap(None);
    // Everyone shows the same safety number (read while all are still there).
    let mut numbers = Vec::new();
    for b in &bots {
        numbers.push(b.report().await.expect("bot report").safety_number);
    }
    assert!(
        numbers.iter().all(|n| *n == numbers[0] && n.len() == 47),
        "{numbers:?}"
    );
    let mut reports = Vec::new();
    for b in bots {
        reports.push(b.stop().await.expect("bot report"));
    }
    if relay {
        // All media went through the relay: three bots × (publish + subscribe).
        let turn = server.turn_stats().expect("TURN runs");
        eprintln!("TURN: {turn:?}");
        assert!(turn.allocations_total >= 6, "{turn:?}");
        assert!(
            turn.to_peer_bytes > 100_000 && turn.from_peer_bytes > 100_000,
            "{turn:?}"
        );
    }
    for (i, r) in reports.iter().enumerate() {
        eprintln!("bot{i}:\n{}", r.summary());
        for (j, other) in reports.iter().enumerate().filter(|(j, _)| *j != i) {
            let s = r
                .senders
                .get(&other.id)
                .unwrap_or_else(|| panic!("bot{i} got nothing from bot{j}"));
            assert!(
                s.audio_frames > 50,
                "bot{i} decrypted {} audio frames of bot{j}",
                s.audio_frames
            );
            assert!(
                s.video_ok > 30,
                "bot{i} verified {} video frames of bot{j}",
                s.video_ok
            );
            assert_eq!(s.video_bad, 0, "bot{i}: corrupted video from bot{j}");
            // The last second of decoded audio is bot j's tone, not the others'.
            if let Err(e) = check_last_second_is_tone(&s.pcm, &tones, j) {
                panic!("bot{i} hears bot{j}: {e}");
            }
        }
    }

    // What the SFU forwarded.
    let tapped = std::mem::take(&mut *tapped.lock().expect("tap"));
    assert!(tapped.len() > 500, "tap saw {} packets", tapped.len());
    let plain_windows: std::collections::HashSet<&[u8]> = reports
        .iter()
        .flat_map(|r| r.plaintext_audio.iter())
        .filter(|f| f.len() >= 17)
        .map(|f| &f[1..17])
        .collect();
    // Steady tones make few distinct Opus frames; there must still be some to look for.
    assert!(!plain_windows.is_empty());
    let mut frames = Vec::new();
    let mut video_frame: std::collections::HashMap<(u64, String), Vec<u8>> = Default::default();
    for (publisher, track, payload) in &tapped {
        assert!(
            !payload
                .windows(PLAINTEXT_MARKER.len())
                .any(|w| w == PLAINTEXT_MARKER),
            "plaintext marker forwarded by the SFU"
        );
        if track.starts_with("audio") {
            assert!(
                !payload.windows(16).any(|w| plain_windows.contains(w)),
                "plaintext Opus bytes forwarded by the SFU"
            );
            frames.push(CapturedFrame {
                publisher: *publisher,
                kind: MediaKind::Audio,
                data: payload.clone(),
                at: Instant::now(),
            });
        } else if let Some((start, n)) = vp8_descriptor(payload) {
            let key = (*publisher, track.clone());
            if start && let Some(done) = video_frame.remove(&key) {
                frames.push(CapturedFrame {
                    publisher: *publisher,
                    kind: MediaKind::Video,
                    data: done,
                    at: Instant::now(),
                });
            }
            // A frame is only put together from its first packet on: when that packet
            // was lost and comes back later as a retransmission (the relay variant on
            // a loaded machine loses a few), the pieces before it are not a frame.
            if start {
                video_frame.insert(key.clone(), Vec::new());
            }
            if let Some(frame) = video_frame.get_mut(&key) {
                frame.extend_from_slice(&payload[n..]);
            }
        }
    }
    // Every forwarded frame is an SFrame whose KID names its sender.
    for f in &frames {
        let kid = f.kid().expect("SFrame header");
        assert_eq!(
            kid >> 8,
            f.publisher,
            "KID {kid:#x} of a frame from {}",
            f.publisher
        );
    }
    // Keys the server could hold: none (no meeting secret), or a guessed secret. A bot
    // in the room with such a key ring opens none of the forwarded frames.
    for (name, guess) in [("no secret", None), ("guessed secret", Some(secret()))] {
        let outsider = bot(&keys, &server.url, "tones", name, guess, |c| {
            c.audio = None;
            c.video = false;
            c.relay = relay;
        })
        .await;
        let opened = outsider.try_decrypt(frames.clone()).await.expect("try");
        assert_eq!(
            opened.iter().filter(|o| **o).count(),
            0,
            "{name} opened forwarded frames"
        );
        outsider.stop().await.expect("stop");
    }
    eprintln!(
        "tap: {} packets, {} frames checked",
        tapped.len(),
        frames.len()
    );
    server.stop().await;
    assert_logs_clean(&m, &keys, &reports.iter().collect::<Vec<_>>());
}

/// A bot that leaves keeps its keys but cannot open frames sent after the rotation that
/// follows; the rotation is measured (participant_left → every remaining sender on the new
/// epoch) and the remaining receivers lose no frame during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaver_cannot_decrypt_after_the_rotation() {
    log_buffer();
    let server = TestServer::start().await;
    let m = secret();
    let keys = Secrets::default();
    let a = bot(&keys, &server.url, "leave", "a", Some(m), |_| {}).await;
    let b = bot(&keys, &server.url, "leave", "b", Some(m), |c| {
        c.capture = true
    })
    .await;
    let c = bot(&keys, &server.url, "leave", "c", Some(m), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_a = a.report().await.expect("a");
    let before_b = b.report().await.expect("b");
    let epoch_before = before_a.epoch.expect("a has an epoch");
    let c_id = c.id;
    c.leave().await.expect("c leaves");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ra = a.report().await.expect("a");
    let rb = b.report().await.expect("b");

    // Rotation time: from each remaining bot seeing c leave to its sending epoch change.
    let mut rotation = Duration::ZERO;
    let mut left_at = None;
    for r in [&ra, &rb] {
        let (t_left, _) = *r
            .left
            .iter()
            .find(|(_, id)| *id == c_id)
            .expect("saw c leave");
        left_at = Some(left_at.map_or(t_left, |t: Instant| t.min(t_left)));
        let (t_switch, e) = *r
            .epoch_changes
            .iter()
            .find(|(t, e)| *t >= t_left && *e > epoch_before)
            .unwrap_or_else(|| panic!("{} never switched to a new epoch", r.id));
        rotation = rotation.max(t_switch - t_left);
        eprintln!(
            "bot {}: epoch {epoch_before} -> {e} {:?} after participant_left",
            r.id,
            t_switch - t_left
        );
    }
    eprintln!(
        "rotation time (participant_left -> every remaining sender on the new epoch): {rotation:?}"
    );
    assert!(
        rotation <= Duration::from_secs(2),
        "rotation took {rotation:?}"
    );
    // No frame lost at the remaining receivers during the rotation.
    let failed = |r: &BotReport, from: u64| r.senders.get(&from).map_or(0, |s| s.failed);
    let lost_b = failed(&rb, a.id) - failed(&before_b, a.id);
    let lost_a = failed(&ra, b.id) - failed(&before_a, b.id);
    eprintln!("frames lost during rotation: at a {lost_a}, at b {lost_b}");
    assert_eq!(
        lost_a + lost_b,
        0,
        "remaining receivers lost frames during rotation"
    );

    // Frames b captured from a: those under the new epoch stay closed to c.
    let new_epoch = ra
        .epoch_changes
        .iter()
        .map(|(_, e)| *e)
        .filter(|e| *e > epoch_before)
        .min()
        .expect("new epoch");
    let left_at = left_at.expect("left");
    let after: Vec<CapturedFrame> = rb
        .captured
        .iter()
        .filter(|f| f.publisher == a.id && f.at > left_at)
        .cloned()
        .collect();
    let (new, old): (Vec<_>, Vec<_>) = after
        .into_iter()
        .partition(|f| f.kid().is_some_and(|k| (k & 0xff) >= (new_epoch & 0xff)));
    assert!(
        new.len() > 50,
        "only {} new-epoch frames captured",
        new.len()
    );
    let opened = c.try_decrypt(new.clone()).await.expect("try");
    assert_eq!(
        opened.iter().filter(|o| **o).count(),
        0,
        "the leaver decrypted frames sent after the rotation"
    );
    // Control: c's key ring does work on old-epoch frames it never saw.
    if !old.is_empty() {
        let opened = c.try_decrypt(old.clone()).await.expect("try");
        eprintln!(
            "control: leaver opened {} of {} old-epoch frames sent after it left",
            opened.iter().filter(|o| **o).count(),
            old.len()
        );
        assert!(
            opened.iter().any(|o| *o),
            "control failed: the leaver's keys open nothing at all"
        );
    }
    let ra = a.stop().await.expect("a");
    let rb = b.stop().await.expect("b");
    let rc = c.stop().await.expect("c");
    server.stop().await;
    assert_logs_clean(&m, &keys, &[&ra, &rb, &rc]);
}

/// A bot joining late cannot open frames sent before it joined, but decrypts what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_joiner_cannot_decrypt_earlier_frames() {
    log_buffer();
    let server = TestServer::start().await;
    let m = secret();
    let keys = Secrets::default();
    let a = bot(&keys, &server.url, "late", "a", Some(m), |_| {}).await;
    let b = bot(&keys, &server.url, "late", "b", Some(m), |c| {
        c.capture = true
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let joined_at = Instant::now();
    let d = bot(&keys, &server.url, "late", "d", Some(m), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rb = b.report().await.expect("b");
    let earlier: Vec<CapturedFrame> = rb
        .captured
        .iter()
        .filter(|f| f.publisher == a.id && f.at < joined_at)
        .cloned()
        .collect();
    assert!(earlier.len() > 50, "only {} earlier frames", earlier.len());
    let opened = d.try_decrypt(earlier).await.expect("try");
    assert_eq!(
        opened.iter().filter(|o| **o).count(),
        0,
        "the late joiner decrypted frames from before it joined"
    );
    let rd = d.stop().await.expect("d");
    let from_a = rd.senders.get(&a.id).map_or(0, |s| s.audio_frames);
    assert!(
        from_a > 50,
        "late joiner decrypted only {from_a} frames of a"
    );
    let ra = a.stop().await.expect("a");
    let rb = b.stop().await.expect("b");
    server.stop().await;
    assert_logs_clean(&m, &keys, &[&ra, &rb, &rd]);
}

/// A bot with the wrong meeting secret decrypts nothing and says so; the others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_decrypts_nothing() {
    log_buffer();
    let server = TestServer::start().await;
    let m = secret();
    let keys = Secrets::default();
    let a = bot(&keys, &server.url, "wrong", "a", Some(m), |_| {}).await;
    let b = bot(&keys, &server.url, "wrong", "b", Some(m), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let w = bot(&keys, &server.url, "wrong", "w", Some(secret()), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = a
        .report()
        .await
        .expect("a")
        .senders
        .get(&b.id)
        .map_or(0, |s| s.audio_frames);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rw = w.stop().await.expect("w");
    eprintln!("wrong-secret bot:\n{}", rw.summary());
    assert!(
        rw.frames_received > 50,
        "w received {} frames",
        rw.frames_received
    );
    assert_eq!(rw.decrypted(), 0, "a wrong secret decrypted frames");
    assert!(
        rw.summary().contains("wrong meeting secret"),
        "the bot does not say why"
    );
    assert_eq!(
        rw.audio_sent + rw.video_sent,
        0,
        "w sent media without a key"
    );
    let ra = a.stop().await.expect("a");
    let after = ra.senders.get(&b.id).map_or(0, |s| s.audio_frames);
    assert!(
        after > before + 50,
        "a stopped decrypting b after w joined ({before} -> {after})"
    );
    let rb = b.stop().await.expect("b");
    server.stop().await;
    assert_logs_clean(&m, &keys, &[&ra, &rb]);
    let _ = sframe_kid;
}

/// `sealed-bot --say`: a bot's chat text reaches the others decrypted (the relay carries
/// only ciphertext, the log holds no plaintext), and a bot with a wrong secret reads
/// nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bots_chat_end_to_end_encrypted() {
    let logs = log_buffer();
    let server = TestServer::start().await;
    let m = secret();
    let keys = Secrets::default();
    let text = format!("agenda item {}", rand::random::<u64>());
    let a = bot(&keys, &server.url, "chat", "a", Some(m), |c| {
        c.video = false;
    })
    .await;
    // w joins before b speaks, so the relay brings it b's message too.
    let w = bot(&keys, &server.url, "chat", "w", Some(secret()), |c| {
        c.video = false;
    })
    .await;
    let b = bot(&keys, &server.url, "chat", "b", Some(m), |c| {
        c.video = false;
        c.say = vec![text.clone()];
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let heard = a.report().await.expect("a").chat_received;
        if heard.iter().any(|l| l.text.as_deref() == Ok(text.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a never read b's chat: {heard:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rb = b.stop().await.expect("b");
    assert_eq!(rb.chat_sent, vec![text.clone()]);
    let ra = a.stop().await.expect("a");
    let line = ra
        .chat_received
        .iter()
        .find(|l| l.text.is_ok())
        .expect("a read it");
    assert_eq!(line.from, rb.id, "the server-stamped sender");
    let rw = w.stop().await.expect("w");
    assert!(
        !rw.chat_received.is_empty() && rw.chat_received.iter().all(|l| l.text.is_err()),
        "a wrong secret must get b's message and read none of it: {:?}",
        rw.chat_received
    );
    server.stop().await;
    let logged = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(!logged.contains(&text), "the chat plaintext is in the log");
    assert_logs_clean(&m, &keys, &[&ra, &rb]);
}
