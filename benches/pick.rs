//! `pick`: the cost of one pick on one thread, for each policy at 8, 64 and 1024 members, beside
//! the floor, a mutex cursor, a ballermann-style actor and tower's p2c balancer; and weighted
//! round robin and key affinity (`pick_for`, plain and with bounded loads) beside plain round
//! robin. Then `pick_refused`: a refused `pick` beside a refused `pick_for` at 2 000 members.
//!
//! `cargo bench --bench pick` (about a minute and a half); add `-- --quick` for a faster look.

mod baselines;

use std::{
    hint::black_box,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
    time::Instant,
};

use baselines::{balancer, handles, Actor, Floor, Handle, MutexCursor, TowerP2c, Weighted, SIZES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crossbeam_utils::CachePadded;
use croupier::{Balancer, Member, Policy};

/// The floor with croupier's way of reading its members: the cursor, then an
/// `ArcSwap::load` of the members list and the release of its guard, so that the pick benches
/// show what the lock-free snapshot read costs by itself.
struct SnapshotFloor {
    cursor: CachePadded<AtomicUsize>,
    members: arc_swap::ArcSwap<Vec<Handle>>,
}

impl SnapshotFloor {
    /// A snapshot floor over `n` handles.
    fn new(n: usize) -> Self {
        Self {
            cursor: CachePadded::new(AtomicUsize::new(0)),
            members: arc_swap::ArcSwap::from_pointee(handles(n)),
        }
    }

    /// The next member's liveness, read through a loaded snapshot (no handle kept).
    #[inline]
    fn peek(&self) -> bool {
        let members = self.members.load();
        let i = self.cursor.fetch_add(1, Relaxed) % members.len();
        members[i].is_alive()
    }
}

fn pick(c: &mut Criterion) {
    let mut group = baselines::group(c, "pick", 1200, 40);

    let policies = [
        ("croupier_rr", Policy::RoundRobin),
        ("croupier_p2c", Policy::PowerOfTwo),
        ("croupier_ll", Policy::LeastLoaded),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");

    for n in SIZES {
        for (name, policy) in policies {
            let b = balancer(policy, n);
            // The guard: what a caller that sends at once uses, no reference count written.
            group.bench_function(BenchmarkId::new(name, n), |bench| {
                bench.iter(|| {
                    let picked = b.pick().expect("live members");
                    black_box(&*picked);
                })
            });
            // An owned handle: the comparison with the floor and the peers, which all clone.
            group.bench_function(BenchmarkId::new(format!("{name}_cloned"), n), |bench| {
                bench.iter(|| b.pick().expect("live members").cloned())
            });
        }

        // Weighted round robin (weights 1 to 4) and key affinity, beside plain round robin.
        let weighted = Balancer::builder()
            .source(
                handles(n)
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| Weighted(h, 1 + (i % 4) as u32))
                    .collect::<Vec<_>>(),
            )
            .build()
            .expect("a valid configuration");
        group.bench_function(BenchmarkId::new("croupier_wrr", n), |bench| {
            bench.iter(|| {
                let picked = weighted.pick().expect("live members");
                black_box(&*picked);
            })
        });
        let b = balancer(Policy::RoundRobin, n);
        let mut key = 0_u64;
        group.bench_function(BenchmarkId::new("croupier_pick_for", n), |bench| {
            bench.iter(|| {
                key = key.wrapping_add(1);
                let picked = b.pick_for(&key).expect("live members");
                black_box(&*picked);
            })
        });
        let bounded = Balancer::builder()
            .bounded_loads(0.25)
            .source(handles(n))
            .build()
            .expect("a valid configuration");
        group.bench_function(BenchmarkId::new("croupier_pick_for_bounded", n), |bench| {
            bench.iter(|| {
                key = key.wrapping_add(1);
                let picked = bounded.pick_for(&key).expect("live members");
                black_box(&*picked);
            })
        });

        let floor = Floor::new(n);
        group.bench_function(BenchmarkId::new("floor_cursor", n), |bench| {
            bench.iter(|| floor.index())
        });
        group.bench_function(BenchmarkId::new("floor_cloned", n), |bench| {
            bench.iter(|| floor.pick())
        });
        let snapshot_floor = SnapshotFloor::new(n);
        group.bench_function(BenchmarkId::new("floor_snapshot", n), |bench| {
            bench.iter(|| snapshot_floor.peek())
        });

        let mutex = MutexCursor::new(n);
        group.bench_function(BenchmarkId::new("mutex_cloned", n), |bench| {
            bench.iter(|| mutex.pick())
        });

        // The owning task and its caller share one thread: the actor's cheapest case.
        let actor = rt.block_on(async { Actor::spawn(handles(n)) });
        group.bench_function(BenchmarkId::new("actor_cloned", n), |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(actor.pick().await);
                    }
                    start.elapsed()
                })
            })
        });

        let mut tower = TowerP2c::new(n);
        group.bench_function(BenchmarkId::new("tower_p2c", n), |bench| {
            bench.iter(|| tower.pick())
        });
    }
    group.finish();
}

/// A refused pick at 2 000 members, every one at `max_load` (the handles' loads are 1 to 7,
/// the limit 1): plain `pick` (round robin, which looks at each member once), beside
/// `pick_for`, plain and with bounded loads, whose walk ends by looking at the members too.
fn refused(c: &mut Criterion) {
    const N: usize = 2_000;
    let mut group = baselines::group(c, "pick_refused", 1200, 40);
    let full = |bound: Option<f64>| {
        let builder = Balancer::builder().max_load(1);
        let builder = match bound {
            Some(epsilon) => builder.bounded_loads(epsilon),
            None => builder,
        };
        builder
            .source(handles(N))
            .build()
            .expect("a valid configuration")
    };
    let b = full(None);
    group.bench_function(BenchmarkId::new("pick", N), |bench| {
        bench.iter(|| black_box(b.pick().is_err()))
    });
    let mut key = 0_u64;
    group.bench_function(BenchmarkId::new("pick_for", N), |bench| {
        bench.iter(|| {
            key = key.wrapping_add(1);
            black_box(b.pick_for(&key).is_err())
        })
    });
    let bounded = full(Some(0.25));
    group.bench_function(BenchmarkId::new("pick_for_bounded", N), |bench| {
        bench.iter(|| {
            key = key.wrapping_add(1);
            black_box(bounded.pick_for(&key).is_err())
        })
    });
    group.finish();
}

criterion_group!(benches, pick, refused);
criterion_main!(benches);
