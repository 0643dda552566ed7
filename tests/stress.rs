//! Pickers on several threads while a writer replaces the members and refreshes.
//!
//! The writer deals in generations of members with distinct ids (`id / PER_GENERATION` is the
//! generation). For generation `g` it sets the source, calls `refresh()`, publishes `g`
//! (Release), and only then kills generation `g - 1`. A picker reads the published generation
//! (Acquire) before each pick, so the pick began after `refresh()` for that generation returned
//! and must deal from it or a newer one: never from an older set.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Barrier,
    },
    thread,
};

use common::{ids, make_from, SharedSource, TestMember};
use croupier::{Balancer, PickError, Policy};

const PER_GENERATION: u32 = 8;
const GENERATIONS: u32 = 2_000;
const PICKERS: usize = 3;
/// An upper bound on each picker's loop, in case the writer finishes long before it.
const MAX_PICKS: usize = 2_000_000;

fn generation_of(m: &TestMember) -> u64 {
    u64::from(m.id / PER_GENERATION)
}

fn generation(g: u32) -> Vec<TestMember> {
    make_from(g * PER_GENERATION, PER_GENERATION as usize)
}

#[derive(Debug, Default)]
struct PickerReport {
    dealt: usize,
    stale_refusals: usize,
}

fn pickers_never_see_an_older_generation(policy: Policy) {
    let source = SharedSource::new(generation(0));
    let b = Balancer::builder()
        .policy(policy)
        .seed(5)
        .source(source.clone())
        .build()
        .unwrap();
    let published = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let picks = AtomicUsize::new(0);
    let barrier = Barrier::new(PICKERS + 1);

    let reports: Vec<PickerReport> = thread::scope(|s| {
        let pickers: Vec<_> = (0..PICKERS)
            .map(|_| {
                s.spawn(|| {
                    let mut report = PickerReport::default();
                    let mut last_snapshot = 0;
                    barrier.wait();
                    for i in 0..MAX_PICKS {
                        if done.load(Ordering::Acquire) {
                            break;
                        }
                        if i % 16 == 15 {
                            // Leave the writer some CPU on machines with few cores.
                            thread::yield_now();
                        }
                        let floor = published.load(Ordering::Acquire);
                        picks.fetch_add(1, Ordering::Relaxed);
                        match b.pick() {
                            Ok(p) => {
                                let g = generation_of(&p);
                                assert!(
                                    g >= floor,
                                    "{policy:?}: dealt member {} of generation {g} after \
                                     generation {floor} was published",
                                    p.id
                                );
                                assert!(
                                    p.generation() >= last_snapshot,
                                    "{policy:?}: snapshots went back on one thread"
                                );
                                last_snapshot = p.generation();
                                report.dealt += 1;
                            }
                            // Only a picker still on a replaced snapshot, whose members have
                            // all been killed since, may find nobody: so a newer generation
                            // must have been published meanwhile.
                            Err(PickError::NoMembers) => {
                                let now = published.load(Ordering::Acquire);
                                assert!(
                                    now > floor,
                                    "{policy:?}: NoMembers on the current generation {now}"
                                );
                                report.stale_refusals += 1;
                            }
                            Err(e) => panic!("{policy:?}: unexpected {e:?}"),
                        }
                    }
                    report
                })
            })
            .collect();

        barrier.wait();
        let mut previous = source.get();
        for g in 1..=GENERATIONS {
            let next = generation(g);
            source.set(next.clone());
            b.refresh();
            published.store(u64::from(g), Ordering::Release);
            previous.iter().for_each(TestMember::kill);
            previous = next;
            // Let the pickers make some picks on each generation, so that the generations
            // interleave with picks however the threads are scheduled. (A picker that has
            // stopped, by panicking, releases the writer so the panic is reported.)
            let target = picks.load(Ordering::Relaxed) + PICKERS;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while picks.load(Ordering::Relaxed) < target && !pickers.iter().any(|h| h.is_finished())
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "pickers made no progress for 20 s"
                );
                thread::yield_now();
            }
        }
        done.store(true, Ordering::Release);

        pickers.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let dealt: usize = reports.iter().map(|r| r.dealt).sum();
    let refused: usize = reports.iter().map(|r| r.stale_refusals).sum();
    assert!(
        dealt + refused >= GENERATIONS as usize * PICKERS,
        "{policy:?}: {reports:?}"
    );
    assert!(dealt > 0, "{policy:?}: {reports:?}");
    assert_eq!(ids(&b.members()), ids(&generation(GENERATIONS)));
    let stats = b.stats();
    assert!(stats.generation >= u64::from(GENERATIONS), "{stats:?}");
    assert_eq!(stats.refreshes, stats.generation, "{stats:?}");
    for _ in 0..PER_GENERATION {
        assert_eq!(generation_of(&b.pick().unwrap()), u64::from(GENERATIONS));
    }
}

#[test]
fn round_robin_pickers_never_see_an_older_generation() {
    pickers_never_see_an_older_generation(Policy::RoundRobin);
}

#[test]
fn least_loaded_pickers_never_see_an_older_generation() {
    pickers_never_see_an_older_generation(Policy::LeastLoaded);
}

#[test]
fn power_of_two_pickers_never_see_an_older_generation() {
    pickers_never_see_an_older_generation(Policy::PowerOfTwo);
}

#[test]
fn concurrent_refreshes_are_all_counted() {
    const REFRESHERS: usize = 4;
    const EACH: usize = 200;
    let source = SharedSource::new(make_from(0, 16));
    let b = Balancer::builder().source(source.clone()).build().unwrap();
    let barrier = Barrier::new(REFRESHERS + PICKERS);
    let refreshing = AtomicBool::new(true);

    thread::scope(|s| {
        for _ in 0..PICKERS {
            s.spawn(|| {
                barrier.wait();
                let mut last = 0;
                for i in 0..MAX_PICKS {
                    if !refreshing.load(Ordering::Acquire) {
                        break;
                    }
                    if i % 16 == 15 {
                        thread::yield_now();
                    }
                    let p = b.pick().expect("every member stays alive");
                    assert!(p.generation() >= last, "snapshots went back on one thread");
                    last = p.generation();
                }
            });
        }
        let refreshers: Vec<_> = (0..REFRESHERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..EACH {
                        assert_eq!(b.refresh(), 16);
                    }
                })
            })
            .collect();
        for r in refreshers {
            r.join().unwrap();
        }
        refreshing.store(false, Ordering::Release);
    });

    let stats = b.stats();
    let total = (REFRESHERS * EACH) as u64;
    assert_eq!(stats.refreshes, total, "no refresh lost");
    assert_eq!(stats.generation, total, "one generation per refresh");
    assert_eq!(source.calls(), REFRESHERS * EACH + 1);
}

#[test]
fn disable_and_enable_race_with_pickers_without_dealing_a_member_disabled_before_the_pick() {
    // Member 0 is disabled for good before pickers start; member 1 flips on and off meanwhile.
    let members = make_from(0, 4);
    let b = Balancer::builder().source(members.clone()).build().unwrap();
    b.disable(&members[0]);
    let barrier = Barrier::new(PICKERS + 1);
    let flipping = AtomicBool::new(true);

    thread::scope(|s| {
        for _ in 0..PICKERS {
            s.spawn(|| {
                barrier.wait();
                for i in 0..MAX_PICKS {
                    if !flipping.load(Ordering::Acquire) {
                        break;
                    }
                    if i % 16 == 15 {
                        thread::yield_now();
                    }
                    let p = b.pick().expect("members 2 and 3 are always enabled");
                    assert_ne!(p.id, 0, "dealt a member disabled before the pick began");
                }
            });
        }
        barrier.wait();
        for _ in 0..2_000 {
            assert!(b.disable(&members[1]));
            assert!(b.enable(&members[1]));
        }
        flipping.store(false, Ordering::Release);
    });

    assert_eq!(b.stats().disabled, 1);
    assert!((0..8).all(|_| b.pick().unwrap().id != 0));
    assert!((0..8).any(|_| b.pick().unwrap().id == 1));
}
