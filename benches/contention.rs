//! `contention`: aggregate picks per second from 1, 2 and 4 threads (4 oversubscribes a
//! 2-core machine) on one balancer of 8 members (and of 64 for `_64`), beside the floor, a
//! mutex cursor and tower's p2c shared behind a mutex.
//!
//! `cargo bench --bench contention`; `CROUPIER_BENCH_THREADS=1,2,4,8,16` sets the thread
//! counts on a bigger machine. Criterion's time is per round of one pick on every thread; its
//! throughput line is the aggregate.

mod baselines;

use std::{
    hint::black_box,
    sync::Barrier,
    time::{Duration, Instant},
};

use baselines::{balancer, Floor, MutexCursor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use croupier::Policy;

const MEMBERS: usize = 8;

/// Thread counts: `CROUPIER_BENCH_THREADS` (comma-separated) or 1, 2, 4.
fn thread_counts() -> Vec<usize> {
    std::env::var("CROUPIER_BENCH_THREADS")
        .ok()
        .and_then(|v| {
            v.split(',')
                .map(|t| t.trim().parse().ok().filter(|&t| t > 0))
                .collect()
        })
        .unwrap_or_else(|| vec![1, 2, 4])
}

/// Runs `op` `iters` times on each of `threads` threads, all released together; returns the
/// time from the release to the last thread's end.
fn on_threads<F: Fn() + Sync>(threads: usize, iters: u64, op: F) -> Duration {
    let start_line = Barrier::new(threads + 1);
    let finish_line = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start_line.wait();
                for _ in 0..iters {
                    op();
                }
                finish_line.wait();
            });
        }
        start_line.wait();
        let start = Instant::now();
        finish_line.wait();
        start.elapsed()
    })
}

fn contention(c: &mut Criterion) {
    let mut group = baselines::group(c, "contention", 1500, 30);

    let rr = balancer(Policy::RoundRobin, MEMBERS);
    let p2c = balancer(Policy::PowerOfTwo, MEMBERS);
    let rr_64 = balancer(Policy::RoundRobin, 64);
    let p2c_64 = balancer(Policy::PowerOfTwo, 64);
    // tower's balancer needs `&mut self`: shared here behind a mutex (a `Buffer` adds a task
    // and a channel on top; see benches/tower.rs).
    let tower = parking_lot::Mutex::new(baselines::TowerP2c::new(MEMBERS));
    let floor = Floor::new(MEMBERS);
    let mutex = MutexCursor::new(MEMBERS);

    for threads in thread_counts() {
        group.throughput(Throughput::Elements(threads as u64));
        let id = |name: &str| BenchmarkId::new(name, format!("{threads}_threads"));

        group.bench_function(id("croupier_rr"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(&*rr.pick().expect("live members"));
                })
            })
        });
        group.bench_function(id("croupier_rr_cloned"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(rr.pick().expect("live members").cloned());
                })
            })
        });
        group.bench_function(id("croupier_p2c"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(&*p2c.pick().expect("live members"));
                })
            })
        });
        group.bench_function(id("croupier_rr_64"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(&*rr_64.pick().expect("live members"));
                })
            })
        });
        group.bench_function(id("croupier_p2c_64"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(&*p2c_64.pick().expect("live members"));
                })
            })
        });
        group.bench_function(id("tower_p2c_mutex"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    tower.lock().pick();
                })
            })
        });
        group.bench_function(id("floor_cursor"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(floor.index());
                })
            })
        });
        group.bench_function(id("floor_cloned"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(floor.pick());
                })
            })
        });
        group.bench_function(id("mutex_cloned"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    black_box(mutex.pick());
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
