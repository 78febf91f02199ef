//! Engine benchmarks: frame encryption/decryption by size, and epoch rotation cost by roster
//! size (leader: issue + wrap for everyone; member: unwrap + install).
//!
//! `cargo bench -p client-wasm -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use client_wasm::key_schedule::{pairwise_key, roster_hash};
use client_wasm::message::KeyMessage;
use client_wasm::secret::MeetingSecret;
use client_wasm::{Codec, DeterministicRandom, Identity, Session, SessionConfig};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const ROOM: &str = "bench";
const SECRET: [u8; 32] = [3; 32];

fn identity(id: u64) -> Identity {
    Identity::generate_with(&mut DeterministicRandom::new(&id.to_be_bytes()))
}

fn session(id: u64) -> Session {
    let rng = Box::new(DeterministicRandom::new(b"bench"));
    Session::with_rng(
        ROOM,
        id,
        Some(SECRET),
        identity(id),
        SessionConfig::default(),
        rng,
    )
    .unwrap()
}

/// Two sessions sharing an epoch.
fn pair() -> (Session, Session) {
    let mut a = session(1);
    let mut b = session(2);
    a.member_joined(0, 2, &identity(2).public_key()).unwrap();
    b.member_joined(0, 1, &identity(1).public_key()).unwrap();
    for now in (0..3000).step_by(10) {
        a.tick(now);
        b.tick(now);
        while let Some(o) = a.poll_outgoing() {
            b.receive(now, 1, &o.payload);
        }
        while let Some(o) = b.poll_outgoing() {
            a.receive(now, 2, &o.payload);
        }
    }
    assert!(a.epoch().is_some() && a.epoch() == b.epoch());
    (a, b)
}

fn frames(c: &mut Criterion) {
    let (mut a, mut b) = pair();
    let mut group = c.benchmark_group("frame");
    for size in [100usize, 1200, 30_000, 100_000] {
        let frame = vec![0x31u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encrypt", size), &frame, |bench, f| {
            bench.iter(|| black_box(a.encrypt(Codec::Vp8, f).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("decrypt", size), &frame, |bench, f| {
            bench.iter_batched(
                || a.encrypt(Codec::Vp8, f).unwrap(),
                |ct| black_box(b.decrypt(Codec::Vp8, &ct).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A leader (id 1) with members 2..=n.
fn leader_with(n: u64) -> Session {
    let mut s = session(1);
    for id in 2..=n {
        s.member_joined(0, id, &identity(id).public_key()).unwrap();
    }
    s
}

fn rotation(c: &mut Criterion) {
    let mut group = c.benchmark_group("rotation");
    group.sample_size(20);
    for n in [10u64, 50, 100] {
        let mut leader = leader_with(n);
        let mut now = 10_000;
        group.bench_function(BenchmarkId::new("leader_issue_and_wrap", n), |bench| {
            bench.iter(|| {
                now += 1;
                leader.rotate(now);
                let mut sent = 0;
                while let Some(o) = leader.poll_outgoing() {
                    sent += o.payload.len();
                }
                black_box(sent)
            })
        });

        // Member 2 of a roster 1..=n receives fresh epoch keys from leader 1.
        let ids: Vec<u64> = (1..=n).collect();
        let mut member = session(2);
        for &id in ids.iter().filter(|&&id| id != 2) {
            member
                .member_joined(0, id, &identity(id).public_key())
                .unwrap();
        }
        let leader_identity = identity(1);
        let member_pk = identity(2).public_key();
        let shared = {
            let sk = p256::SecretKey::from_slice(&leader_secret_bytes(1)).unwrap();
            let pk = p256::PublicKey::from_sec1_bytes(&member_pk).unwrap();
            let x = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
            <[u8; 32]>::from(*x.raw_secret_bytes())
        };
        let key = pairwise_key(
            &MeetingSecret::from_bytes(SECRET),
            ROOM,
            &shared,
            &leader_identity.public_key(),
            &member_pk,
        );
        let pks: Vec<[u8; 65]> = ids.iter().map(|&id| identity(id).public_key()).collect();
        let hash = roster_hash(ids.iter().copied().zip(pks.iter()));
        let mut epoch = 0u64;
        let mut t = 0u64;
        group.bench_function(BenchmarkId::new("member_unwrap_and_install", n), |bench| {
            bench.iter_custom(|iters| {
                let msgs: Vec<Vec<u8>> = (0..iters)
                    .map(|_| {
                        epoch += 1;
                        KeyMessage::EpochKey {
                            epoch,
                            roster: ids.clone(),
                            roster_hash: hash,
                        }
                        .seal(
                            &key,
                            &[epoch as u8; 12],
                            ROOM,
                            1,
                            2,
                            &[9; 32],
                        )
                    })
                    .collect();
                let start = Instant::now();
                for m in &msgs {
                    t += 1;
                    member.receive(t, 1, m);
                    while member.poll_outgoing().is_some() {}
                    while member.poll_event().is_some() {}
                }
                start.elapsed()
            })
        });
        assert!(
            member.counters().messages_accepted > 0 && member.counters().messages_auth_failed == 0
        );
    }
    group.finish();
}

/// The secret scalar `identity(id)` was generated from (first valid 32 bytes of its RNG).
fn leader_secret_bytes(id: u64) -> [u8; 32] {
    use client_wasm::RandomSource;
    let mut rng = DeterministicRandom::new(&id.to_be_bytes());
    loop {
        let mut b = [0u8; 32];
        rng.fill(&mut b);
        if Identity::from_secret_bytes(&b).is_ok() {
            return b;
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = frames, rotation
}
criterion_main!(benches);
