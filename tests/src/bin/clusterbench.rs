//! `clusterbench`: what multi-node routing costs a signaling client.
//!
//! Starts a throwaway `redis-server` and two `sealed` nodes (`n1`, `n2`) sharing it,
//! waits until both see each other, and measures over loopback:
//!
//! 1. **Join latency**: from opening the WebSocket to receiving `welcome`, for a
//!    signaling-only participant (no media), each sample a fresh connection that sends
//!    `leave` after the welcome and waits for the close. Cases, interleaved round by
//!    round (the order rotates every round):
//!    - (a) the existing room `bench`, hosted by `n1` (a keeper stays in it), joined
//!      directly at `n1`: no Redis at all;
//!    - (b) the same room joined at `n2`: `n2` runs the placement script (the room has a
//!      live owner, so it only reads it), opens a WebSocket to `n1` and relays;
//!    - (c1) a new room joined at `n1` and placed on `n1`: the placement script claims it;
//!    - (c2) a new room joined at `n1` and placed on `n2`: placement, the WebSocket to
//!      `n2` and `n2`'s claim of the routed join (a second script).
//!
//!    Placement picks the node with the fewest rooms, so (c1) and (c2) are forced by
//!    writing both nodes' load keys (`{sealed}:load:<id>`, what each node's heartbeat
//!    publishes) into Redis before each sample: 0 for the node that should get the room,
//!    10⁹ for the other. After the welcome the room's owner is read back from Redis; a
//!    sample placed elsewhere (a heartbeat overwrote a load in between) is discarded,
//!    retried and counted.
//! 2. **E2EE relay round trip**: two members A and B of `bench` (hosted by `n1`); A sends
//!    an `e2ee` message (`--payload-bytes` random bytes, base64url) to B, B echoes it to
//!    A as soon as it arrives; A's send → echo-received time. (i) A and B connected to
//!    `n1`; (ii) both connected to `n2` (A → n2 → n1 → n2 → B and back); (iii) A at `n1`,
//!    B at `n2`. One pair per case, one round trip per case per round, rounds started
//!    every `--rt-interval-ms` (default 25 ms: 40 messages/s per connection, under the
//!    default rate limit of 50/s; the nodes keep their default rate limits).
//!
//! The nodes get `--per-address-joins-per-minute 1000000` (every client is 127.0.0.1,
//! and the default 300 joins a minute would refuse the join samples) and
//! `--trusted-proxies 127.0.0.1`; everything else is default. Their log level is
//! `--node-log` (default `warn`). Children are killed on every exit path (error,
//! Ctrl-C, SIGTERM). Logs go to `--logs` (default `target/clusterbench`).
//!
//! ```text
//! cargo build --release -p signaling --bin sealed && cargo build --release -p tests --bin clusterbench
//! taskset -c 1 target/release/clusterbench --pin-nodes 0
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use tests::protocol::{ClientMessage, ServerMessage, encode_b64};
use tests::redis_server::RedisServer;
use tests::server_process::{SealedProcess, http_get};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Parser, Debug)]
#[command(about = "Join latency and E2EE relay round trips across two Sealed nodes (loopback)")]
struct Args {
    /// The `sealed` binary (or a wrapper script that execs it). Default:
    /// `target/release/sealed` if it exists, else `target/debug/sealed`.
    #[arg(long)]
    sealed: Option<PathBuf>,
    /// Join samples per case.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// E2EE round trips per case.
    #[arg(long, default_value_t = 1000)]
    round_trips: usize,
    /// Unrecorded join samples per case first (script cache, connection set-up).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Unrecorded round trips per case first.
    #[arg(long, default_value_t = 20)]
    warmup_round_trips: usize,
    /// Random bytes per `e2ee` payload (768 → 1,024 base64url characters).
    #[arg(long, default_value_t = 768)]
    payload_bytes: usize,
    /// Milliseconds between the starts of two rounds of round trips (each connection
    /// sends one message per round; at least 21 keeps it under the default 50/s).
    #[arg(long, default_value_t = 25)]
    rt_interval_ms: u64,
    /// Run both nodes under `taskset -c CPUS` (a wrapper script in the log directory).
    #[arg(long)]
    pin_nodes: Option<String>,
    /// `RUST_LOG` of the nodes.
    #[arg(long, default_value = "warn")]
    node_log: String,
    /// Where the logs (and the pinning wrapper) go.
    #[arg(long, default_value = "target/clusterbench")]
    logs: PathBuf,
    /// Also write every recorded sample to this CSV file
    /// (`phase,case,round,position,ms`; position: its place in the round, 0 first).
    #[arg(long)]
    raw: Option<PathBuf>,
}

/// One recorded sample, for `--raw`.
struct RawSample {
    phase: &'static str,
    case: &'static str,
    round: usize,
    position: usize,
    took: Duration,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The room everything but the new-room samples happens in; hosted by `n1`.
const ROOM: &str = "bench";
/// The load written for the node that must not get a new room.
const HEAVY: &str = "1000000000";
/// How long any single protocol step may take before the run fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Dropping `run` (on a signal) drops the children, which kills them (kill_on_drop).
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted; nodes and redis-server killed")),
        _ = sigterm.recv() => Err(anyhow!("terminated; nodes and redis-server killed")),
    }
}

async fn run(args: Args) -> Result<()> {
    if args.samples == 0 || args.round_trips == 0 {
        bail!("--samples and --round-trips must be at least 1");
    }
    if args.rt_interval_ms < 21 {
        bail!(
            "--rt-interval-ms {} would send more than the default rate limit (50 messages/s per connection)",
            args.rt_interval_ms
        );
    }
    std::fs::create_dir_all(&args.logs)
        .with_context(|| format!("creating {}", args.logs.display()))?;
    let logs = args.logs.canonicalize()?;
    let sealed = sealed_binary(args.sealed.as_deref())?;
    let launcher = match &args.pin_nodes {
        Some(cpus) => pin_wrapper(&sealed, cpus, &logs)?,
        None => sealed.clone(),
    };

    let cluster = Cluster::start(&launcher, &logs, &args.node_log).await?;
    eprintln!(
        "redis {} (pid {:?}); n1 pid {} http {}; n2 pid {} http {}; logs in {}",
        cluster.redis.url(),
        cluster.redis.pid(),
        cluster.n1.pid,
        cluster.n1.addr,
        cluster.n2.pid,
        cluster.n2.addr,
        logs.display()
    );
    let result = measure(&args, &cluster).await;
    if result.is_err() {
        eprintln!(
            "n1 log ({}):\n{}\nn2 log ({}):\n{}",
            cluster.n1.log.display(),
            cluster.n1.log_tail(15),
            cluster.n2.log.display(),
            cluster.n2.log_tail(15)
        );
    }
    let (join_table, rt_table, checks) = result?;

    println!("## clusterbench");
    println!();
    println!(
        "sealed: {}{}; nodes n1, n2 + redis-server on loopback; node log level {}",
        sealed.display(),
        args.pin_nodes
            .as_ref()
            .map(|c| format!(" (nodes pinned: taskset -c {c})"))
            .unwrap_or_default(),
        args.node_log
    );
    println!();
    println!(
        "### Join: WebSocket open → welcome ({} samples per case, {} warm-up)",
        args.samples, args.warmup
    );
    println!();
    println!("{join_table}");
    println!(
        "### E2EE relay round trip, {} B payload ({} base64url chars), {} per case, one round every {} ms",
        args.payload_bytes,
        encode_b64(&vec![0; args.payload_bytes]).len(),
        args.round_trips,
        args.rt_interval_ms
    );
    println!();
    println!("{rt_table}");
    println!("{checks}");
    cluster.stop().await;
    Ok(())
}

/// Both measurements; returns the two tables and the sanity-check line.
async fn measure(args: &Args, cluster: &Cluster) -> Result<(String, String, String)> {
    let mut redis = Resp::connect(cluster.redis.port()).await?;

    // The keeper: the member that keeps `bench` alive on n1.
    redis.set_loads(&[("n1", "0"), ("n2", HEAVY)]).await?;
    let (keeper_ws, keeper_id) = join(&cluster.n1.ws_url(), ROOM, "keeper").await?;
    let owner = redis.room_owner(ROOM).await?;
    if owner.as_deref() != Some("n1") {
        bail!("room {ROOM} was placed on {owner:?}, not n1");
    }
    let keeper = tokio::spawn(drain(keeper_ws));

    let urls = Urls {
        n1: cluster.n1.ws_url(),
        n2: cluster.n2.ws_url(),
    };
    let mut raw = Vec::new();
    let joins = join_phase(args, &urls, &mut redis, keeper_id, &mut raw).await?;
    let rts = rt_phase(args, &urls, &mut raw).await?;
    keeper.abort();
    if let Some(path) = &args.raw {
        let mut csv = String::from("phase,case,round,position,ms\n");
        for r in &raw {
            csv.push_str(&format!(
                "{},{},{},{},{:.4}\n",
                r.phase,
                r.case,
                r.round,
                r.position,
                r.took.as_secs_f64() * 1e3
            ));
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }

    let proxied_n1 = metric(cluster.n1.addr, "sealed_cluster_proxied_connections_total").await;
    let proxied_n2 = metric(cluster.n2.addr, "sealed_cluster_proxied_connections_total").await;
    let rate_limited = (
        metric(cluster.n1.addr, "sealed_rate_limited_messages_total").await,
        metric(cluster.n2.addr, "sealed_rate_limited_messages_total").await,
    );
    let checks = format!(
        "Checks: placement retries (c1) {}, (c2) {}; clients proxied since start: by n1 {} \
         (expected: (c2) samples + warm-up + (c1) retries = {}), by n2 {} (expected: (b) \
         samples + warm-up + 3 E2EE members = {}); rate-limited messages n1 {}, n2 {}.",
        joins.retries[2],
        joins.retries[3],
        fmt_metric(proxied_n1),
        args.samples + args.warmup + joins.retries[2],
        fmt_metric(proxied_n2),
        args.samples + args.warmup + 3,
        fmt_metric(rate_limited.0),
        fmt_metric(rate_limited.1),
    );

    let join_table = table(
        &[
            (
                "(a) existing room, at its node (direct)",
                &joins.samples[0],
                None,
            ),
            (
                "(b) existing room, at the other node (proxied)",
                &joins.samples[1],
                Some(0),
            ),
            (
                "(c1) new room, placed on the receiving node",
                &joins.samples[2],
                Some(0),
            ),
            (
                "(c2) new room, placed on the other node (proxied)",
                &joins.samples[3],
                Some(2),
            ),
        ],
        &["(a)", "(b)", "(c1)", "(c2)"],
    );
    let rt_table = table(
        &[
            (
                "(i) A and B at n1 (direct; 4 WebSocket hops)",
                &rts[0],
                None,
            ),
            (
                "(ii) A and B at n2 (both proxied; 8 hops)",
                &rts[1],
                Some(0),
            ),
            (
                "(iii) A at n1, B at n2 (one proxied; 6 hops)",
                &rts[2],
                Some(0),
            ),
        ],
        &["(i)", "(ii)", "(iii)"],
    );
    Ok((join_table, rt_table, checks))
}

struct Urls {
    n1: String,
    n2: String,
}

/// The join cases, in table order.
#[derive(Clone, Copy, Debug)]
enum JoinCase {
    Direct,
    Proxied,
    NewLocal,
    NewRemote,
}

const JOIN_CASES: [JoinCase; 4] = [
    JoinCase::Direct,
    JoinCase::Proxied,
    JoinCase::NewLocal,
    JoinCase::NewRemote,
];

const JOIN_NAMES: [&str; 4] = ["a", "b", "c1", "c2"];

struct JoinResults {
    samples: [Vec<Duration>; 4],
    retries: [usize; 4],
}

async fn join_phase(
    args: &Args,
    urls: &Urls,
    redis: &mut Resp,
    keeper_id: u64,
    raw: &mut Vec<RawSample>,
) -> Result<JoinResults> {
    let mut results = JoinResults {
        samples: Default::default(),
        retries: [0; 4],
    };
    let nonce: u32 = rand::random();
    let mut counter = 0u64;
    let rounds = args.warmup + args.samples;
    let started = Instant::now();
    for round in 0..rounds {
        for j in 0..JOIN_CASES.len() {
            let index = (round + j) % JOIN_CASES.len();
            let case = JOIN_CASES[index];
            let mut attempts = 0;
            let took = loop {
                counter += 1;
                let fresh = format!("new-{nonce:08x}-{counter}");
                match join_sample(case, urls, redis, keeper_id, &fresh)
                    .await
                    .with_context(|| format!("join sample {round} of {case:?}"))?
                {
                    Some(took) => break took,
                    None => {
                        results.retries[index] += 1;
                        attempts += 1;
                        if attempts >= 10 {
                            bail!(
                                "{case:?}: the new room was placed on the wrong node 10 times in a row"
                            );
                        }
                    }
                }
            };
            if round >= args.warmup {
                results.samples[index].push(took);
                raw.push(RawSample {
                    phase: "join",
                    case: JOIN_NAMES[index],
                    round: round - args.warmup,
                    position: j,
                    took,
                });
            }
        }
        if round % 50 == 49 {
            eprintln!(
                "joins: {} of {rounds} rounds ({:.1} s)",
                round + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(results)
}

/// One join sample; `None` when a new room landed on the wrong node.
async fn join_sample(
    case: JoinCase,
    urls: &Urls,
    redis: &mut Resp,
    keeper_id: u64,
    fresh: &str,
) -> Result<Option<Duration>> {
    let (url, room, owner) = match case {
        JoinCase::Direct => (&urls.n1, ROOM, None),
        JoinCase::Proxied => (&urls.n2, ROOM, None),
        JoinCase::NewLocal => {
            redis.set_loads(&[("n1", "0"), ("n2", HEAVY)]).await?;
            (&urls.n1, fresh, Some("n1"))
        }
        JoinCase::NewRemote => {
            redis.set_loads(&[("n1", HEAVY), ("n2", "0")]).await?;
            (&urls.n1, fresh, Some("n2"))
        }
    };
    let message = join_message(room, "sample");
    let start = Instant::now();
    let mut ws = connect(url).await?;
    send(&mut ws, &message).await?;
    let welcome = wait_welcome(&mut ws).await?;
    let took = start.elapsed();

    let ServerMessage::Welcome { participants, .. } = &welcome else {
        unreachable!("wait_welcome returns a welcome");
    };
    let placed_right = match owner {
        None => {
            if !participants.iter().any(|p| p.id == keeper_id) {
                bail!("the welcome to {ROOM} does not list the keeper: {welcome:?}");
            }
            true
        }
        Some(expected) => redis.room_owner(room).await?.as_deref() == Some(expected),
    };
    send(&mut ws, &ClientMessage::Leave {}).await?;
    wait_closed(&mut ws).await;
    Ok(placed_right.then_some(took))
}

/// The round-trip cases: (A's node, B's node) as 1 or 2.
const RT_CASES: [(u8, u8); 3] = [(1, 1), (2, 2), (1, 2)];
const RT_NAMES: [&str; 3] = ["i", "ii", "iii"];

async fn rt_phase(
    args: &Args,
    urls: &Urls,
    raw: &mut Vec<RawSample>,
) -> Result<[Vec<Duration>; 3]> {
    let url = |n: u8| if n == 1 { &urls.n1 } else { &urls.n2 };
    let mut senders = Vec::new();
    let mut echoes = Vec::new();
    for (i, (a_node, b_node)) in RT_CASES.iter().enumerate() {
        let (a, _) = join(url(*a_node), ROOM, &format!("a{i}")).await?;
        let (b, b_id) = join(url(*b_node), ROOM, &format!("b{i}")).await?;
        senders.push((a, b_id));
        echoes.push(tokio::spawn(echo(b)));
    }
    let interval = Duration::from_millis(args.rt_interval_ms);
    let mut rng = rand::rng();
    let mut body = vec![0u8; args.payload_bytes.max(8)];
    let mut results: [Vec<Duration>; 3] = Default::default();
    let rounds = args.warmup_round_trips + args.round_trips;
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    for round in 0..rounds {
        next += interval;
        for j in 0..RT_CASES.len() {
            let index = (round + j) % RT_CASES.len();
            let (ws, to) = &mut senders[index];
            rng.fill(&mut body[..]);
            body[..8].copy_from_slice(&(round as u64).to_le_bytes());
            let payload = encode_b64(&body);
            let message = ClientMessage::E2ee {
                to: *to,
                payload: payload.clone(),
            };
            let took = round_trip(ws, *to, &message, &payload)
                .await
                .with_context(|| format!("round trip {round} of case {index}"))?;
            if round >= args.warmup_round_trips {
                results[index].push(took);
                raw.push(RawSample {
                    phase: "e2ee",
                    case: RT_NAMES[index],
                    round: round - args.warmup_round_trips,
                    position: j,
                    took,
                });
            }
        }
        if round % 250 == 249 {
            eprintln!(
                "round trips: {} of {rounds} rounds ({:.1} s)",
                round + 1,
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep_until(next).await;
    }
    for (mut ws, _) in senders {
        let _ = send(&mut ws, &ClientMessage::Leave {}).await;
        wait_closed(&mut ws).await;
    }
    for e in echoes {
        e.abort();
    }
    Ok(results)
}

/// Sends `message` (an `e2ee` to `to` carrying `payload`) and waits for it to come back.
async fn round_trip(
    ws: &mut Ws,
    to: u64,
    message: &ClientMessage,
    payload: &str,
) -> Result<Duration> {
    let text = serde_json::to_string(message)?;
    let start = Instant::now();
    ws.send(Message::text(text)).await?;
    loop {
        match recv(ws).await? {
            ServerMessage::E2ee { from, payload: got } if from == to && got == payload => {
                return Ok(start.elapsed());
            }
            ServerMessage::E2ee { from, .. } => bail!("unexpected e2ee from {from}"),
            ServerMessage::Error { code, message } => bail!("server error {code}: {message}"),
            _ => {}
        }
    }
}

/// B: echoes every `e2ee` back to its sender at once.
async fn echo(mut ws: Ws) {
    while let Ok(message) = recv(&mut ws).await {
        match message {
            ServerMessage::E2ee { from, payload } => {
                let back = ClientMessage::E2ee { to: from, payload };
                if send(&mut ws, &back).await.is_err() {
                    return;
                }
            }
            ServerMessage::Error { code, message } => {
                eprintln!("echo: server error {code}: {message}");
            }
            _ => {}
        }
    }
}

/// The keeper: reads (and so answers pings and drains roster changes) until closed.
async fn drain(mut ws: Ws) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// A `join` with a well-formed random public key.
fn join_message(room: &str, name: &str) -> ClientMessage {
    let mut key = [4u8; 65];
    key[1..].iter_mut().for_each(|b| *b = rand::random());
    ClientMessage::join(room, name, &key, None)
}

/// Connects and joins; the socket and the participant id.
async fn join(url: &str, room: &str, name: &str) -> Result<(Ws, u64)> {
    let mut ws = connect(url).await?;
    send(&mut ws, &join_message(room, name)).await?;
    match wait_welcome(&mut ws).await? {
        ServerMessage::Welcome { id, .. } => Ok((ws, id)),
        _ => unreachable!("wait_welcome returns a welcome"),
    }
}

/// Opens `/ws` with Nagle off (as the nodes' own upstream connections do).
async fn connect(url: &str) -> Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url, None, true),
    )
    .await
    .map_err(|_| anyhow!("connecting to {url} timed out"))?
    .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

async fn send(ws: &mut Ws, message: &ClientMessage) -> Result<()> {
    ws.send(Message::text(serde_json::to_string(message)?))
        .await
        .context("sending")
}

/// The next protocol message (frames this client cannot parse are skipped).
async fn recv(ws: &mut Ws) -> Result<ServerMessage> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no message within {STEP_TIMEOUT:?}"))?;
        match frame {
            None => bail!("connection closed"),
            Some(Err(e)) => bail!("websocket: {e}"),
            Some(Ok(Message::Text(text))) => {
                if let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) {
                    return Ok(message);
                }
            }
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for `welcome`; an `error` fails.
async fn wait_welcome(ws: &mut Ws) -> Result<ServerMessage> {
    loop {
        match recv(ws).await? {
            welcome @ ServerMessage::Welcome { .. } => return Ok(welcome),
            ServerMessage::Error { code, message } => bail!("join refused: {code}: {message}"),
            _ => {}
        }
    }
}

/// Reads until the server has closed (after `leave`), at most a few seconds.
async fn wait_closed(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Redis and the two nodes. Dropping it kills them all.
struct Cluster {
    redis: RedisServer,
    n1: SealedProcess,
    n2: SealedProcess,
}

impl Cluster {
    async fn start(launcher: &Path, logs: &Path, log_level: &str) -> Result<Cluster> {
        let redis = RedisServer::start(logs.join("redis.log")).await?;
        let mut taken = HashSet::new();
        let n1 = start_node(launcher, logs, log_level, "n1", &redis, &mut taken).await?;
        let n2 = start_node(launcher, logs, log_level, "n2", &redis, &mut taken).await?;
        let cluster = Cluster { redis, n1, n2 };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = (
                metric(cluster.n1.addr, "sealed_cluster_nodes").await,
                metric(cluster.n2.addr, "sealed_cluster_nodes").await,
            );
            if seen == (Some(2.0), Some(2.0)) {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!(
                    "the nodes did not both see 2 live nodes within 20 s (sealed_cluster_nodes: {seen:?}); logs in {}",
                    logs.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.n1.stop().await;
        self.n2.stop().await;
        let mut redis = self.redis;
        redis.stop().await;
    }
}

async fn start_node(
    launcher: &Path,
    logs: &Path,
    log_level: &str,
    id: &str,
    redis: &RedisServer,
    taken: &mut HashSet<u16>,
) -> Result<SealedProcess> {
    let udp_port = free_media_port(taken)?;
    taken.insert(udp_port);
    let args: Vec<String> = [
        "--redis",
        &redis.url(),
        "--node-id",
        id,
        "--udp-port",
        &udp_port.to_string(),
        "--trusted-proxies",
        "127.0.0.1",
        "--per-address-joins-per-minute",
        "1000000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let log = logs.join(format!("{id}.log"));
    SealedProcess::spawn_with_env(
        launcher,
        &args,
        None,
        log.clone(),
        &[("RUST_LOG", log_level), ("NO_COLOR", "1")],
    )
    .await
    .with_context(|| format!("starting node {id}; its log: {}", log.display()))
}

/// A loopback port free for UDP (media) and TCP (ICE-TCP uses the same number).
fn free_media_port(taken: &HashSet<u16>) -> Result<u16> {
    for _ in 0..200 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free UDP+TCP loopback port in 200 tries")
}

/// `--sealed`, else `target/release/sealed` if it exists, else `target/debug/sealed`
/// (the target directory this executable lives in, then the current directory's
/// `target/`). It must know `--redis`.
fn sealed_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let bin = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let mut targets = Vec::new();
            if let Some(target) = std::env::current_exe()?.parent().and_then(Path::parent) {
                targets.push(target.to_owned());
            }
            targets.push(PathBuf::from("target"));
            targets
                .iter()
                .flat_map(|t| [t.join("release/sealed"), t.join("debug/sealed")])
                .find(|p| p.is_file())
                .context(
                    "no target/release/sealed or target/debug/sealed: \
                     cargo build --release -p signaling --bin sealed (or pass --sealed)",
                )?
        }
    };
    let help = std::process::Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .with_context(|| format!("running {} serve --help", bin.display()))?;
    if !String::from_utf8_lossy(&help.stdout).contains("--redis") {
        bail!(
            "{} has no --redis flag (multi-node mode): rebuild it (cargo build --release -p signaling --bin sealed)",
            bin.display()
        );
    }
    Ok(bin.canonicalize()?)
}

/// A script in `dir` that execs `bin` under `taskset -c cpus` (same pid).
fn pin_wrapper(bin: &Path, cpus: &str, dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if !cpus
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        || cpus.is_empty()
    {
        bail!("--pin-nodes takes a CPU list such as 0 or 0-1, not {cpus:?}");
    }
    let path = dir.join("sealed-pinned.sh");
    let bin = bin.display().to_string().replace('\'', r"'\''");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec taskset -c {cpus} '{bin}' \"$@\"\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// A sample from `/metrics` (`name value` or `name{labels} value`).
async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics", Duration::from_secs(5)).await?;
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn fmt_metric(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| format!("{v}"))
}

/// A minimal RESP client: enough for `SET` and `GET`.
struct Resp {
    stream: BufReader<TcpStream>,
}

impl Resp {
    async fn connect(port: u16) -> Result<Resp> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        Ok(Resp {
            stream: BufReader::new(tcp),
        })
    }

    /// Writes the load keys of the nodes (as their heartbeats do, with the same 5 s
    /// lifetime), pipelined.
    async fn set_loads(&mut self, loads: &[(&str, &str)]) -> Result<()> {
        let mut out = Vec::new();
        for (node, load) in loads {
            encode_command(
                &mut out,
                &[
                    "SET",
                    &format!("{{sealed}}:load:{node}"),
                    load,
                    "PX",
                    "5000",
                ],
            );
        }
        self.stream.get_mut().write_all(&out).await?;
        for _ in loads {
            match self.read_reply().await? {
                Some(reply) if reply == b"OK" => {}
                other => bail!("SET answered {other:?}"),
            }
        }
        Ok(())
    }

    /// The node that owns `room` in the registry.
    async fn room_owner(&mut self, room: &str) -> Result<Option<String>> {
        let mut out = Vec::new();
        encode_command(&mut out, &["GET", &format!("{{sealed}}:room:{room}")]);
        self.stream.get_mut().write_all(&out).await?;
        Ok(self
            .read_reply()
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// One simple-string or bulk-string reply (`None` for nil); errors fail.
    async fn read_reply(&mut self) -> Result<Option<Vec<u8>>> {
        let mut line = String::new();
        let read = tokio::time::timeout(STEP_TIMEOUT, self.stream.read_line(&mut line)).await;
        if read.map_err(|_| anyhow!("redis did not answer"))?? == 0 {
            bail!("redis closed the connection");
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "+" => Ok(Some(rest.as_bytes().to_vec())),
            "-" => bail!("redis error: {rest}"),
            "$" => {
                let len: i64 = rest.parse().context("bulk length")?;
                if len < 0 {
                    return Ok(None);
                }
                let mut buf = vec![0u8; len as usize + 2];
                self.stream.read_exact(&mut buf).await?;
                buf.truncate(len as usize);
                Ok(Some(buf))
            }
            _ => bail!("unexpected redis reply {line:?}"),
        }
    }
}

fn encode_command(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

/// min, median, p95, p99 (nearest rank) in ms.
fn stats(samples: &[Duration]) -> [f64; 4] {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
        ms[i]
    };
    [ms[0], rank(0.5), rank(0.95), rank(0.99)]
}

/// A markdown table; each row may name an earlier row to divide its median and p95 by.
fn table(rows: &[(&str, &Vec<Duration>, Option<usize>)], short: &[&str]) -> String {
    let all: Vec<[f64; 4]> = rows.iter().map(|(_, s, _)| stats(s)).collect();
    let mut out = String::from(
        "| case | n | min ms | median ms | p95 ms | p99 ms | median ÷ | p95 ÷ |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, (name, samples, base)) in rows.iter().enumerate() {
        let [min, median, p95, p99] = all[i];
        let (ratio_median, ratio_p95) = match base {
            Some(b) => (
                format!("{:.2}× {}", median / all[*b][1], short[*b]),
                format!("{:.2}× {}", p95 / all[*b][2], short[*b]),
            ),
            None => ("—".to_owned(), "—".to_owned()),
        };
        out.push_str(&format!(
            "| {name} | {} | {min:.3} | {median:.3} | {p95:.3} | {p99:.3} | {ratio_median} | {ratio_p95} |\n",
            samples.len()
        ));
    }
    out
}
