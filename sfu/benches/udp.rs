//! The media plane's send path: one burst of forwarded packets (1,200-byte datagrams,
//! each to the next of 16 subscribers, as a fan-out writes them) through one `sendto`
//! per datagram vs `BatchSocket::send_batch` (`sendmmsg`, GSO runs where consecutive
//! datagrams share a destination and size).
//!
//! `cargo bench -p sfu --bench udp`; results in docs/BENCHMARKS.md. The receivers never
//! read: loopback drops what does not fit their buffers, and the sender never blocks.

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sfu::udp::{BatchSocket, BufferPool, Outgoing};
use std::net::{SocketAddr, UdpSocket};

const BURST: usize = 64;
const SUBSCRIBERS: usize = 16;
const SIZE: usize = 1_200;

fn send(c: &mut Criterion) {
    let receivers: Vec<UdpSocket> = (0..SUBSCRIBERS)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("receiver"))
        .collect();
    let targets: Vec<SocketAddr> = receivers
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect();
    let payload = vec![0xa5u8; SIZE];
    let burst = |by_destination: bool| -> Vec<Outgoing> {
        (0..BURST)
            .map(|i| {
                // Interleaved (packet k to every subscriber in turn) or grouped by
                // subscriber (what a batching forwarder can choose to emit).
                let to = if by_destination {
                    targets[i * SUBSCRIBERS / BURST]
                } else {
                    targets[i % SUBSCRIBERS]
                };
                Outgoing {
                    to,
                    data: BytesMut::from(&payload[..]),
                }
            })
            .collect()
    };

    let mut group = c.benchmark_group("udp send, 64 × 1200 B to 16 subscribers");
    group.throughput(Throughput::Elements(BURST as u64));

    let plain = UdpSocket::bind("127.0.0.1:0").expect("sender");
    group.bench_function("sendto per datagram", |b| {
        b.iter_batched(
            || burst(false),
            |batch| {
                for out in &batch {
                    let _ = plain.send_to(&out.data, out.to);
                }
            },
            BatchSize::SmallInput,
        )
    });

    for (name, grouped) in [
        ("send_batch, interleaved", false),
        ("send_batch, grouped by subscriber", true),
    ] {
        let mut socket = BatchSocket::bind("127.0.0.1:0").expect("batch sender");
        let mut pool = BufferPool::default();
        group.bench_function(name, |b| {
            b.iter_batched(
                || burst(grouped),
                |mut batch| {
                    let _ = socket.send_batch(&mut batch, &mut pool);
                },
                BatchSize::SmallInput,
            )
        });
        let stats = socket.stats();
        println!(
            "{name}: {:.1} datagrams per send syscall ({} datagrams, {} calls)",
            stats.send_datagrams as f64 / stats.send_syscalls.max(1) as f64,
            stats.send_datagrams,
            stats.send_syscalls
        );
    }
    group.finish();
}

criterion_group!(benches, send);
criterion_main!(benches);
