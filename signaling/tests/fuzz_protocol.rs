//! Fuzz harness (stable Rust, a seeded mutation loop) for the signaling parser every client
//! reaches first: `protocol::parse_client_message`.
//!
//! Inputs are valid messages of every client type with random byte edits and JSON-aware
//! edits (a value swapped for another type, huge numbers, deep nesting, control characters,
//! long strings), plus pure noise. Each must be parsed or refused with an error, never a
//! panic, and no error message may echo an E2EE payload or a token.
//!
//! CI runs a short pass (2000 inputs); a long run:
//!
//! ```text
//! cargo xtask fuzz --iterations 1000000
//! # = SEALED_FUZZ_CASES=1000000 cargo test --workspace --all-features --test fuzz_protocol -- --nocapture
//! ```

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use signaling::Limits;
use signaling::protocol::parse_client_message;

/// A payload and a token no error message may ever contain.
const PAYLOAD: &str = "c2VjcmV0IHBheWxvYWQgbWFya2VyIDEyMzQ1Njc4OTA";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLW1hcmtlcg.sig";

fn seeds() -> Vec<String> {
    let pk = format!("B{}", "A".repeat(86));
    vec![
        format!(
            r#"{{"type":"join","room":"team","name":"Ada","public_key":"{pk}","token":"{TOKEN}","protocol":1}}"#
        ),
        r#"{"type":"publish_offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#.to_owned(),
        r#"{"type":"subscribe_answer","sdp":"v=0\r\n"}"#.to_owned(),
        r#"{"type":"ice_candidate","pc":"publish","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}"#.to_owned(),
        format!(r#"{{"type":"e2ee","to":3,"payload":"{PAYLOAD}"}}"#),
        r#"{"type":"mute","track":"c0ffee","muted":true}"#.to_owned(),
        r#"{"type":"leave"}"#.to_owned(),
    ]
}

/// Values of every JSON type and the edges parsers trip on.
const VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    "1e999",
    "18446744073709551616",
    "9007199254740993",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"𝄞\u{202e}\"",
    "\"\\\"\"",
    "[]",
    "{}",
    "[1,2,3]",
    "{\"type\":\"join\"}",
    "\"v=0\"",
    "\"AQIDBA\"",
    "\"====\"",
];

fn mutate(rng: &mut StdRng, seeds: &[String]) -> String {
    if rng.random_ratio(1, 10) {
        let len = rng.random_range(0..200);
        return String::from_utf8_lossy(&(0..len).map(|_| rng.random()).collect::<Vec<u8>>())
            .into_owned();
    }
    let mut text = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..5) {
        text = match rng.random_range(0..8) {
            0..=2 => swap_value(rng, &text),
            3 => nest(rng, &text),
            4 => {
                let at = boundary(&text, rng.random_range(0..=text.len()));
                let long = "x".repeat(rng.random_range(0..70_000));
                format!("{}\"{long}\"{}", &text[..at], &text[at..])
            }
            _ => {
                let mut bytes = text.into_bytes();
                if !bytes.is_empty() {
                    let at = rng.random_range(0..bytes.len());
                    match rng.random_range(0..4) {
                        0 => bytes[at] ^= 1 << rng.random_range(0..8),
                        1 => bytes[at] = rng.random(),
                        2 => {
                            bytes.remove(at);
                        }
                        _ => bytes.truncate(at),
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
    }
    text
}

/// Replaces the value after a random `:` with another from [`VALUES`].
fn swap_value(rng: &mut StdRng, text: &str) -> String {
    let colons: Vec<usize> = text.match_indices(':').map(|(i, _)| i).collect();
    if colons.is_empty() {
        return text.to_owned();
    }
    let start = colons[rng.random_range(0..colons.len())] + 1;
    let end = text[start..]
        .find([',', '}'])
        .map_or(text.len(), |i| start + i);
    let value = VALUES[rng.random_range(0..VALUES.len())];
    format!("{}{value}{}", &text[..start], &text[end..])
}

/// Wraps the whole message in deep arrays or objects.
fn nest(rng: &mut StdRng, text: &str) -> String {
    let depth = rng.random_range(1..300);
    if rng.random_bool(0.5) {
        format!("{}{text}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}{text}{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    }
}

fn boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[test]
fn parse_client_message_never_panics_nor_echoes_secrets() {
    let cases: u64 = std::env::var("SEALED_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("SEALED_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5ea1ed);
    let limits = Limits::default();
    let seeds = seeds();
    for s in &seeds {
        assert!(
            parse_client_message(s, &limits).is_ok(),
            "seed refused: {s}"
        );
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..cases {
        let text = mutate(&mut rng, &seeds);
        match parse_client_message(&text, &limits) {
            Ok(_) => accepted += 1,
            Err(e) => {
                refused += 1;
                assert!(
                    !e.message.contains(PAYLOAD) && !e.message.contains(TOKEN),
                    "input {i} (seed {seed}): the error echoes a secret: {}",
                    e.message
                );
            }
        }
    }
    println!(
        "fuzz signaling protocol: {cases} inputs ({accepted} accepted, {refused} refused), 0 panics, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
