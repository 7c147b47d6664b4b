//! Micro-benchmark of `Peers::pick` for every policy, with a small and a large group.
//!
//! `pick` runs once per request (more on retries), so it must stay in the tens of
//! nanoseconds. Hash groups get a different URI-like key per iteration, ip_hash a different
//! client address; least_conn and random_two see some requests in flight.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringway::balance::{LocalCursor, Peers, Pick, PickKey, Policy, Server, Tried};

const POLICIES: [Policy; 5] = [
    Policy::RoundRobin,
    Policy::LeastConn,
    Policy::IpHash,
    Policy::Hash,
    Policy::RandomTwo,
];

fn servers(count: u16) -> Vec<Server> {
    (0..count)
        .map(|i| Server {
            addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8000)),
            weight: 1 + u32::from(i % 3),
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024)
        .map(|i| format!("/v1/chat/completions?user={i}"))
        .collect();
    let mut group = c.benchmark_group("pick");
    for policy in POLICIES {
        for count in [3u16, 64] {
            let peers = Peers::new(policy, servers(count));
            // Some load, so least_conn and random_two compare real counts.
            for idx in 0..usize::from(count) {
                (0..idx % 4).for_each(|_| peers.begin(idx));
            }
            let mut cursor = LocalCursor::new(&peers, 1);
            let tried = Tried::default();
            let id = BenchmarkId::new(format!("{policy:?}"), count);
            group.bench_function(id, |b| {
                let mut n = 0usize;
                b.iter(|| {
                    n = (n + 1) & 1023;
                    let key = match policy {
                        Policy::Hash => PickKey::Bytes(keys[n].as_bytes()),
                        Policy::IpHash => PickKey::Ip(IpAddr::V4(Ipv4Addr::from(n as u32 * 257))),
                        _ => PickKey::None,
                    };
                    let chosen = peers.pick(&mut cursor, black_box(key), &tried, 1);
                    assert!(matches!(chosen, Pick::Server(_)));
                    black_box(chosen)
                })
            });
        }
    }
    group.finish();
}

/// The retry path: the first choice was tried and failed, pick another.
fn pick_after_failure(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_retry");
    for policy in POLICIES {
        let peers = Peers::new(policy, servers(64));
        let mut cursor = LocalCursor::new(&peers, 1);
        let mut tried = Tried::default();
        (0..64).step_by(2).for_each(|idx| tried.insert(idx));
        group.bench_function(format!("{policy:?}/64_half_tried"), |b| {
            b.iter(|| {
                let key = PickKey::Bytes(b"/v1/completions");
                black_box(peers.pick(&mut cursor, black_box(key), &tried, 1))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pick, pick_after_failure);
criterion_main!(benches);
