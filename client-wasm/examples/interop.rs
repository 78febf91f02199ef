//! Native half of the WASM interop test (`tests/node/interop.test.mjs` drives it).
//!
//! `interop write DIR` runs a deterministic two-member key exchange natively (member 1 = A,
//! member 2 = B), then writes `DIR/fixture.json`: the inputs a second implementation of B
//! needs (room, meeting secret, B's secret key, A's public key, every key message A sent to
//! B with its time) and frames A encrypted. The Node side rebuilds B in WASM from that, checks
//! it decrypts A's frames, and writes `DIR/replies.json`: frames B encrypted.
//! `interop check DIR` rebuilds A (same seeds, same exchange) and checks it decrypts every
//! reply. Exit code 0 on success.

use std::path::Path;

use client_wasm::{Codec, DeterministicRandom, Identity, Session, SessionConfig};
use serde_json::{Value, json};

const ROOM: &str = "interop";
const SECRET: [u8; 32] = [0x42; 32];
const A_KEY: [u8; 32] = [0x11; 32];
const B_KEY: [u8; 32] = [0x22; 32];
const B_SEED: &str = "interop-b";

struct Exchange {
    a: Session,
    to_b: Vec<(u64, Vec<u8>)>,
}

fn session(id: u64, key: &[u8; 32], seed: &str) -> Session {
    let identity = Identity::from_secret_bytes(key).expect("valid test key");
    let rng = Box::new(DeterministicRandom::new(seed.as_bytes()));
    Session::with_rng(
        ROOM,
        id,
        Some(SECRET),
        identity,
        SessionConfig::default(),
        rng,
    )
    .expect("valid session")
}

/// Deterministic: the same calls in the same order with the same seeds.
fn exchange() -> Exchange {
    let mut a = session(1, &A_KEY, "interop-a");
    let mut b = session(2, &B_KEY, B_SEED);
    let a_pk = Identity::from_secret_bytes(&A_KEY)
        .expect("key")
        .public_key();
    let b_pk = Identity::from_secret_bytes(&B_KEY)
        .expect("key")
        .public_key();
    let mut now = 1_000;
    a.member_joined(now, 2, &b_pk).expect("join");
    b.member_joined(now, 1, &a_pk).expect("join");
    let mut to_b = Vec::new();
    while now < 5_000 {
        now += 10;
        a.tick(now);
        b.tick(now);
        while let Some(o) = a.poll_outgoing() {
            b.receive(now, 1, &o.payload);
            to_b.push((now, o.payload));
        }
        while let Some(o) = b.poll_outgoing() {
            a.receive(now, 2, &o.payload);
        }
    }
    assert!(
        a.epoch().is_some() && a.epoch() == b.epoch(),
        "native exchange converged"
    );
    Exchange { a, to_b }
}

fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Vp8 => "vp8",
        Codec::Opus => "opus",
        Codec::Other => "other",
    }
}

fn sample_frames() -> Vec<(Codec, Vec<u8>)> {
    let mut frames = vec![
        (Codec::Opus, vec![0xfc; 1]),
        (Codec::Opus, (0..120u8).collect()),
        (
            Codec::Vp8,
            [
                vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01],
                vec![7; 1200],
            ]
            .concat(),
        ),
        (Codec::Vp8, [vec![0x31, 0x05, 0x00], vec![9; 300]].concat()),
        (Codec::Other, vec![]),
        (Codec::Other, vec![0x55; 30_000]),
    ];
    frames.push((Codec::Vp8, vec![0x11, 0x00, 0x00]));
    frames
}

fn write(dir: &Path) -> anyhow_like::Result {
    let mut ex = exchange();
    let frames: Vec<Value> = sample_frames()
        .into_iter()
        .map(|(codec, plaintext)| {
            let ciphertext = ex.a.encrypt(codec, &plaintext).expect("encrypt");
            json!({"codec": codec_name(codec), "plaintext": hex::encode(&plaintext), "ciphertext": hex::encode(ciphertext)})
        })
        .collect();
    let fixture = json!({
        "room": ROOM,
        "meeting_secret": hex::encode(SECRET),
        "a": {"id": 1, "public_key": hex::encode(Identity::from_secret_bytes(&A_KEY).expect("key").public_key())},
        "b": {"id": 2, "secret_key": hex::encode(B_KEY), "seed": B_SEED},
        "epoch": ex.a.epoch(),
        "to_b": ex.to_b.iter().map(|(at, p)| json!({"at": at, "payload": hex::encode(p)})).collect::<Vec<_>>(),
        "frames": frames,
    });
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("fixture.json"),
        serde_json::to_string_pretty(&fixture)?,
    )?;
    println!("wrote {}", dir.join("fixture.json").display());
    Ok(())
}

fn check(dir: &Path) -> anyhow_like::Result {
    let mut ex = exchange();
    let replies: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("replies.json"))?)?;
    let replies = replies.as_array().ok_or("replies.json must be an array")?;
    if replies.len() < 3 {
        return Err("expected at least 3 replies".into());
    }
    for (i, r) in replies.iter().enumerate() {
        let codec = Codec::from_name(r["codec"].as_str().unwrap_or("")).ok_or("bad codec")?;
        let plaintext = hex::decode(r["plaintext"].as_str().ok_or("plaintext")?)?;
        let ciphertext = hex::decode(r["ciphertext"].as_str().ok_or("ciphertext")?)?;
        match ex.a.decrypt(codec, &ciphertext) {
            Ok(p) if p == plaintext => {}
            other => return Err(format!("reply {i}: {other:?}").into()),
        }
    }
    println!("native side decrypted {} frames from wasm", replies.len());
    Ok(())
}

mod anyhow_like {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}

fn main() -> anyhow_like::Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "write" => write(Path::new(dir)),
        [cmd, dir] if cmd == "check" => check(Path::new(dir)),
        _ => Err("usage: interop write|check DIR".into()),
    }
}
