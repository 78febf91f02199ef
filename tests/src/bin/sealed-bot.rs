//! `sealed-bot`: a native meeting participant that exchanges keys like a browser, sends
//! end-to-end encrypted Opus (a tone or a WAV) and optional synthetic VP8 video, and
//! decrypts, decodes and records what it receives.
//!
//! ```text
//! sealed-bot join 'http://127.0.0.1:8080/m/standup#<secret>' --name bot --tone 440 \
//!     --record out.wav --video synthetic --say "hello from the bot" --duration 30s
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tests::bot::{AudioSource, BotConfig, BotError, BotHandle, BotReport, ChatLine, SAMPLE_RATE};
use tests::protocol::decode_b64;

#[derive(Parser, Debug)]
#[command(
    name = "sealed-bot",
    about = "A native end-to-end encrypted Sealed participant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Join a meeting by its link.
    Join(JoinArgs),
}

#[derive(Parser, Debug)]
struct JoinArgs {
    /// The meeting link, with the secret after `#`: `http://host:port/m/<room>#<secret>`.
    link: String,
    /// Display name.
    #[arg(long, default_value = "sealed-bot")]
    name: String,
    /// Send a sine tone at this frequency (Hz).
    #[arg(long, conflicts_with = "wav")]
    tone: Option<f32>,
    /// Send this WAV file (48 kHz, 16-bit; the first channel is used), looped.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Write the decrypted audio mix here (and one `<stem>-<id>.wav` per participant).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Also send video.
    #[arg(long, value_enum)]
    video: Option<VideoKind>,
    /// How long to stay (e.g. `30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = tests::duration::parse_duration)]
    duration: Duration,
    /// Join even though the link has no secret (such a bot can decrypt nothing).
    #[arg(long)]
    no_secret: bool,
    /// Reach the SFU only through the server's TURN relay (relayed ICE candidates only),
    /// as a client behind a firewall that blocks direct media would.
    #[arg(long)]
    relay: bool,
    /// Say this in the meeting's chat (end-to-end encrypted) once the bot holds a key;
    /// repeat for several messages. Received chat is printed as it arrives.
    #[arg(long)]
    say: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum VideoKind {
    /// VP8-shaped frames with a checksummed body.
    Synthetic,
}

/// What a meeting link says.
#[derive(Debug, PartialEq, Eq)]
struct Link {
    ws_url: String,
    room: String,
    secret: Option<[u8; 32]>,
}

fn parse_link(link: &str) -> Result<Link> {
    let (base, fragment) = match link.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (link, None),
    };
    let (scheme, rest) = base
        .split_once("://")
        .with_context(|| format!("not a meeting link (no scheme): {link:?}"))?;
    let ws_scheme = match scheme {
        "http" => "ws",
        "https" => "wss",
        _ => bail!("not a meeting link: scheme must be http or https, got {scheme:?}"),
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        bail!("not a meeting link: no host in {link:?}");
    }
    let room = path
        .strip_prefix("m/")
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| !r.is_empty() && !r.contains('/'))
        .with_context(|| format!("not a meeting link: expected /m/<room>, got /{path}"))?;
    let secret = match fragment.filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => {
            let bytes = decode_b64(f).context("the secret after # is not base64url")?;
            let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                anyhow::anyhow!("the secret after # must be 32 bytes, got {}", b.len())
            })?;
            Some(arr)
        }
    };
    Ok(Link {
        ws_url: format!("{ws_scheme}://{host}/ws"),
        room: room.to_owned(),
        secret,
    })
}

fn read_wav(path: &Path) -> Result<Vec<i16>> {
    let mut r =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = r.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        bail!(
            "{}: need 48000 Hz 16-bit PCM, got {} Hz {}-bit {:?}",
            path.display(),
            spec.sample_rate,
            spec.bits_per_sample,
            spec.sample_format
        );
    }
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<i16> = r
        .samples::<i16>()
        .step_by(channels)
        .collect::<Result<_, _>>()
        .with_context(|| format!("decoding {}", path.display()))?;
    Ok(samples)
}

fn write_wav(path: &Path, samples: &[i16]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("writing {}", path.display()))?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()?;
    Ok(())
}

fn record(path: &Path, report: &BotReport) -> Result<()> {
    let len = report
        .senders
        .values()
        .map(|s| s.pcm.len())
        .max()
        .unwrap_or(0);
    let mut mix = vec![0i32; len];
    for (id, s) in &report.senders {
        for (m, x) in mix.iter_mut().zip(&s.pcm) {
            *m += i32::from(*x);
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("record");
        let each = path.with_file_name(format!("{stem}-{id}.wav"));
        write_wav(&each, &s.pcm)?;
        println!(
            "wrote {} ({:.1} s from participant {id})",
            each.display(),
            s.pcm.len() as f64 / f64::from(SAMPLE_RATE)
        );
    }
    let mix: Vec<i16> = mix
        .into_iter()
        .map(|x| x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
        .collect();
    write_wav(path, &mix)?;
    println!(
        "wrote {} ({:.1} s mix)",
        path.display(),
        mix.len() as f64 / f64::from(SAMPLE_RATE)
    );
    Ok(())
}

async fn join(args: JoinArgs) -> Result<()> {
    let link = parse_link(&args.link)?;
    if link.secret.is_none() && !args.no_secret {
        bail!(
            "the link has no meeting secret after '#': without it no key can be derived \
             (copy the whole link, or pass --no-secret to join anyway)"
        );
    }
    let audio = match (&args.wav, args.tone) {
        (Some(p), _) => Some(AudioSource::Samples(Arc::new(read_wav(p)?))),
        (None, Some(f)) => Some(AudioSource::Tone(f)),
        (None, None) => Some(AudioSource::Tone(440.0)),
    };
    let mut cfg = BotConfig::new(&link.ws_url, &link.room, &args.name, link.secret);
    cfg.audio = audio;
    cfg.video = args.video.is_some();
    cfg.decode_audio = true;
    cfg.relay = args.relay;
    cfg.say = args.say.clone();
    let bot = match BotHandle::spawn(cfg).await {
        Ok(bot) => bot,
        Err(e @ BotError::Unreachable(_)) => {
            bail!("{e} at {} (is the server running?)", link.ws_url)
        }
        Err(e) => bail!("room {:?} at {}: {e}", link.room, link.ws_url),
    };
    println!("joined room {:?} as participant {}", link.room, bot.id);
    let mut last_epoch = None;
    let (mut said, mut heard) = (0, 0);
    let deadline = tokio::time::Instant::now() + args.duration;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                let r = bot.report().await?;
                if r.epoch != last_epoch {
                    println!("sending epoch {:?}, safety number {}", r.epoch, r.safety_number);
                    last_epoch = r.epoch;
                }
                for text in &r.chat_sent[said..] {
                    println!("chat > {text}");
                }
                said = r.chat_sent.len();
                for line in &r.chat_received[heard..] {
                    print_chat(line);
                }
                heard = r.chat_received.len();
            }
        }
    }
    let report = bot.stop().await?;
    print!("{}", report.summary());
    if let Some(path) = &args.record {
        record(path, &report)?;
    }
    Ok(())
}

/// One received chat line on stdout; other participants' text is printed with control
/// characters escaped, so it cannot drive the terminal.
fn print_chat(line: &ChatLine) {
    match &line.text {
        Ok(text) => println!("chat < {}: {}", line.from, text.escape_debug()),
        Err(code) => println!("chat < {}: cannot decrypt ({code})", line.from),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Join(args) => join(args).await,
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn links_parse() {
        let s = ::tests::protocol::encode_b64(&[9u8; 32]);
        let l = parse_link(&format!("http://127.0.0.1:8080/m/stand-up#{s}")).unwrap();
        assert_eq!(
            l,
            Link {
                ws_url: "ws://127.0.0.1:8080/ws".into(),
                room: "stand-up".into(),
                secret: Some([9u8; 32])
            }
        );
        assert_eq!(
            parse_link("https://x.example/m/r").unwrap().ws_url,
            "wss://x.example/ws"
        );
        assert!(
            parse_link("https://x.example/m/r")
                .unwrap()
                .secret
                .is_none()
        );
        assert!(parse_link("ftp://x/m/r").is_err());
        assert!(parse_link("http://x/rooms/r").is_err());
        assert!(parse_link("http://x/m/r#notbase64!").is_err());
        assert!(parse_link("http://x/m/r#AAAA").is_err());
    }
}
