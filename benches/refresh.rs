//! `refresh`: what a pick costs while another thread refreshes the snapshot without pause, and
//! the worst single pick seen during such a refresh storm (p99.9 and max, printed).
//!
//! Then `refresh_build`: what one `refresh()` costs by itself at 1 000 and 20 000 members, with
//! equal weights (`unweighted`) and with weights 1 and 2 (`weighted`, which builds round robin's
//! schedule), so that the weighted figure reads as a ratio to the unweighted one.
//!
//! `cargo bench --bench refresh`.

mod baselines;

use std::{
    hint::black_box,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::Instant,
};

use baselines::{handles, Handle, Weighted};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use croupier::{Balancer, Policy};

/// A balancer whose source hands out the same `n` handles again on every refresh, as a pool's
/// supervisor does; each refresh builds and stores a new snapshot.
fn refreshing_balancer(policy: Policy, n: usize) -> Balancer<Handle> {
    let members = handles(n);
    Balancer::builder()
        .policy(policy)
        .source(move || members.clone())
        .build()
        .expect("a valid configuration")
}

/// Runs `f` with another thread refreshing `b` in a loop (when `storm`), and returns what `f`
/// returns and how many refreshes ran meanwhile.
fn with_storm<T>(b: &Balancer<Handle>, storm: bool, f: impl FnOnce() -> T) -> (T, u64) {
    let stop = AtomicBool::new(false);
    let refreshes = AtomicU64::new(0);
    std::thread::scope(|s| {
        if storm {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    b.refresh();
                    refreshes.fetch_add(1, Relaxed);
                }
            });
        }
        let out = f();
        stop.store(true, Relaxed);
        (out, refreshes.load(Relaxed))
    })
}

fn refresh(c: &mut Criterion) {
    let mut group = baselines::group(c, "refresh", 1500, 30);

    for n in [8, 64] {
        for (name, policy) in [
            ("croupier_rr", Policy::RoundRobin),
            ("croupier_p2c", Policy::PowerOfTwo),
        ] {
            let b = refreshing_balancer(policy, n);
            for (label, storm) in [("quiet", false), ("storm", true)] {
                group.bench_function(BenchmarkId::new(format!("{name}_{label}"), n), |bench| {
                    bench.iter_custom(|iters| {
                        let (elapsed, _) = with_storm(&b, storm, || {
                            let start = Instant::now();
                            for _ in 0..iters {
                                black_box(&*b.pick().expect("live members"));
                            }
                            start.elapsed()
                        });
                        elapsed
                    })
                });
            }
        }
    }
    group.finish();
    refresh_build(c);
    worst_picks();
}

/// One `refresh()` at a time, no picks: equal weights against weights 1 and 2 at the same size.
fn refresh_build(c: &mut Criterion) {
    let mut group = baselines::group(c, "refresh_build", 1500, 20);
    for n in [1_000, 20_000] {
        for (name, weights) in [("unweighted", [1, 1]), ("weighted", [1, 2])] {
            let members: Vec<Weighted> = handles(n)
                .into_iter()
                .enumerate()
                .map(|(i, h)| Weighted(h, weights[i % 2]))
                .collect();
            let b = Balancer::builder()
                .source(move || members.clone())
                .build()
                .expect("a valid configuration");
            group.bench_function(BenchmarkId::new(name, n), |bench| {
                bench.iter(|| b.refresh())
            });
        }
    }
    group.finish();
}

/// Times every one of a few million picks during a storm and prints the tail, beside the same
/// with no refresh running. A pick's time includes one `Instant::now()` (tens of ns).
fn worst_picks() {
    const PICKS: usize = 2_000_000;
    println!(
        "\nrefresh storm, single picks timed one by one ({PICKS} picks, n = 64, round robin):"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "refreshes", "p50 ns", "p99 ns", "p99.9 ns", "max ns"
    );
    let b = refreshing_balancer(Policy::RoundRobin, 64);
    for (label, storm) in [("quiet", false), ("storm", true)] {
        let (mut ns, refreshes) = with_storm(&b, storm, || {
            let mut ns = Vec::with_capacity(PICKS);
            let mut last = Instant::now();
            for _ in 0..PICKS {
                black_box(&*b.pick().expect("live members"));
                let now = Instant::now();
                ns.push(now.duration_since(last).as_nanos() as u64);
                last = now;
            }
            ns
        });
        ns.sort_unstable();
        let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
        println!(
            "{label:<8} {refreshes:>10} {:>10} {:>10} {:>10} {:>10}",
            at(0.5),
            at(0.99),
            at(0.999),
            ns[ns.len() - 1]
        );
    }
}

criterion_group!(benches, refresh);
criterion_main!(benches);
