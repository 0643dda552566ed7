//! The cursor is striped, one stripe per picking thread (up to 16): round robin stays exact
//! for one thread alone, several threads drift apart by at most one pick per stripe in use,
//! and no thread's stripe or snapshot handle keeps a replaced snapshot alive.

mod common;

use std::sync::{mpsc, Arc, Barrier, Mutex};

use common::{make, TestMember};
use croupier::{Balancer, Member, Policy};

fn round_robin(members: Vec<TestMember>) -> Balancer<TestMember> {
    Balancer::builder()
        .policy(Policy::RoundRobin)
        .source(members)
        .build()
        .expect("a valid configuration")
}

/// Threads, more than there are stripes, each leave their stripe part-way through a rotation;
/// then one thread alone deals `k·n` picks: every member exactly `k` times, one after the
/// other in source order, from wherever its stripe stood.
#[test]
fn one_thread_round_robin_is_exact_with_stripes() {
    const THREADS: usize = 20;
    for n in [1_usize, 3, 8, 64] {
        // Source order deliberately differs from id order.
        let b = round_robin(make(n).into_iter().rev().collect());
        let start_line = Barrier::new(THREADS);
        let before = std::thread::scope(|s| {
            let pickers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (b, start_line) = (&b, &start_line);
                    s.spawn(move || {
                        start_line.wait();
                        let picks = 5 * n + t % n.max(2) + 1;
                        for _ in 0..picks {
                            b.pick().expect("all members are alive");
                        }
                        picks
                    })
                })
                .collect();
            pickers
                .into_iter()
                .map(|p| p.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(
            b.stats().picks,
            before as u64,
            "n = {n}: every stripe counted"
        );

        for k in [1_usize, 3] {
            // The test thread, then a thread that never picked before.
            let dealt = std::thread::scope(|s| {
                let here: Vec<usize> = (0..k * n).map(|_| b.pick().unwrap().index()).collect();
                let there = s
                    .spawn(|| (0..k * n).map(|_| b.pick().unwrap().index()).collect())
                    .join()
                    .unwrap();
                [here, there]
            });
            for seq in dealt {
                for pair in seq.windows(2) {
                    assert_eq!(pair[1], (pair[0] + 1) % n, "n = {n}, k = {k}: {seq:?}");
                }
                for i in 0..n {
                    let times = seq.iter().filter(|&&d| d == i).count();
                    assert_eq!(times, k, "n = {n}, k = {k}: entry {i} dealt {times} times");
                }
            }
        }
    }
}

/// Threads picking at once from one round-robin balancer, in bursts of counts that are not
/// multiples of the pool: after every burst each member's count is within the documented
/// bound of the mean, less than one pick per stripe in use (at most one per thread).
#[test]
fn multi_thread_drift_is_bounded() {
    const THREADS: usize = 6;
    for n in [3_usize, 8, 64] {
        let b = round_robin(make(n));
        let counts: Vec<_> = (0..n)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect();
        let (start_line, finish_line) = (Barrier::new(THREADS + 1), Barrier::new(THREADS + 1));
        let mut total = 0;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (b, counts, start_line, finish_line) = (&b, &counts, &start_line, &finish_line);
                s.spawn(move || {
                    for burst in 0..4 {
                        start_line.wait();
                        for _ in 0..burst_len(n, t, burst) {
                            let id = b.pick().expect("all members are alive").id as usize;
                            counts[id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        finish_line.wait();
                    }
                });
            }
            for burst in 0..4 {
                start_line.wait();
                finish_line.wait();
                total += (0..THREADS).map(|t| burst_len(n, t, burst)).sum::<usize>();
                let counts: Vec<usize> = counts
                    .iter()
                    .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                    .collect();
                assert_eq!(counts.iter().sum::<usize>(), total);
                assert_eq!(
                    b.stats().picks,
                    total as u64,
                    "every stripe's turns counted"
                );
                let mean = total as f64 / n as f64;
                for (id, &c) in counts.iter().enumerate() {
                    assert!(
                        (c as f64 - mean).abs() < THREADS as f64,
                        "n = {n}, burst {burst}: member {id} dealt {c} times, mean {mean}: \
                         {counts:?}"
                    );
                }
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(max - min <= THREADS, "n = {n}, burst {burst}: {counts:?}");
            }
        });
    }
}

/// Picks thread `t` makes in burst `burst`: never a whole number of rotations.
fn burst_len(n: usize, t: usize, burst: usize) -> usize {
    let len = 1_000 + 37 * t + 11 * burst;
    if n > 1 && len % n == 0 {
        len + 1
    } else {
        len
    }
}

/// A member that tells the test how many copies of its group are alive.
#[derive(Clone, Debug)]
struct Tracked {
    _group: Arc<()>,
}

impl Member for Tracked {
    fn is_alive(&self) -> bool {
        true
    }
}

/// A thread that picked from a snapshot, and then stops picking without exiting, does not
/// keep that snapshot's members alive once a refresh has replaced it and its `Picked` has
/// been dropped: its cursor stripe holds a count, and arc-swap's per-thread debt slot holds
/// no reference once the guard is gone. While the guard is held, it does keep them.
#[test]
fn replaced_snapshot_is_released() {
    for policy in [Policy::RoundRobin, Policy::PowerOfTwo] {
        let (old, new) = (Arc::new(()), Arc::new(()));
        let group = |g: &Arc<()>, ids: std::ops::Range<u32>| -> Vec<Tracked> {
            ids.map(|_| Tracked {
                _group: Arc::clone(g),
            })
            .collect()
        };
        let current = Arc::new(Mutex::new(group(&old, 0..4)));
        let b = {
            let current = Arc::clone(&current);
            Balancer::builder()
                .policy(policy)
                .source(move || current.lock().unwrap().clone())
                .build()
                .unwrap()
        };
        let (to_picker, picker_hears) = mpsc::channel::<()>();
        let (to_test, test_hears) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let b = &b;
            let picker = s.spawn(move || {
                // A few picks whose guards are dropped at once, then one held.
                for _ in 0..10 {
                    drop(b.pick().unwrap());
                }
                let held = b.pick().unwrap();
                to_test.send(()).unwrap();
                picker_hears.recv().unwrap();
                drop(held);
                to_test.send(()).unwrap();
                // Stays alive, picking nothing, until the test is done looking.
                picker_hears.recv().unwrap();
            });
            test_hears.recv().unwrap();
            *current.lock().unwrap() = group(&new, 10..14);
            assert_eq!(b.refresh(), 4);
            assert!(
                Arc::strong_count(&old) > 1,
                "{policy:?}: the held guard keeps its snapshot's members"
            );
            to_picker.send(()).unwrap();
            test_hears.recv().unwrap();
            assert_eq!(
                Arc::strong_count(&old),
                1,
                "{policy:?}: the replaced snapshot outlived its last guard"
            );
            // Only the source's list and the current snapshot hold the new ones.
            assert_eq!(Arc::strong_count(&new), 1 + 4 + 4, "{policy:?}");
            to_picker.send(()).unwrap();
            picker.join().unwrap();
        });
    }
}
