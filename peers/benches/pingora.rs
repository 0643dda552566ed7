//! `pick` beside pingora: croupier's round robin and the floor against
//! `pingora-load-balancing`'s `LoadBalancer<RoundRobin>::select`, at 8, 64 and 1024 members,
//! on one thread, in one run.
//!
//! `cargo bench --manifest-path peers/Cargo.toml` (needs cmake to build pingora's zlib-ng).

#[path = "../../benches/baselines/mod.rs"]
mod baselines;

use std::hint::black_box;

use baselines::{balancer, Floor, SIZES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use croupier::Policy;
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};

fn pick(c: &mut Criterion) {
    let mut group = baselines::group(c, "pick", 1200, 40);

    for n in SIZES {
        let b = balancer(Policy::RoundRobin, n);
        group.bench_function(BenchmarkId::new("croupier_rr_cloned", n), |bench| {
            bench.iter(|| b.pick().expect("live members").cloned())
        });

        let floor = Floor::new(n);
        group.bench_function(BenchmarkId::new("floor_cloned", n), |bench| {
            bench.iter(|| floor.pick())
        });

        let addrs = (0..n).map(|i| format!("127.0.0.1:{}", 10_000 + i));
        let lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs).expect("valid addresses");
        group.bench_function(BenchmarkId::new("pingora_rr", n), |bench| {
            bench.iter(|| black_box(lb.select(b"", 256)).expect("a backend"))
        });
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
