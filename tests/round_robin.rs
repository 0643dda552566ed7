//! Round robin deals every live member in turn, in the source's order; every policy skips dead
//! and disabled members; an empty source is an error, not a panic, until a refresh fills it.

mod common;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use common::{ids, make, SharedSource, TestMember, POLICIES};
use croupier::{Balancer, PickError, Policy};

fn balancer(policy: Policy, members: Vec<TestMember>) -> Balancer<TestMember> {
    Balancer::builder()
        .policy(policy)
        .seed(0x5eed)
        .source(members)
        .build()
        .expect("a valid configuration")
}

fn pick_ids(b: &Balancer<TestMember>, picks: usize) -> Vec<u32> {
    (0..picks)
        .map(|_| b.pick().expect("a live member").id)
        .collect()
}

#[test]
fn fairness_over_k_rounds() {
    for n in [1_usize, 2, 3, 8, 64] {
        for k in [1_usize, 2, 5] {
            // Source order deliberately differs from id order.
            let members: Vec<_> = make(n).into_iter().rev().collect();
            let order = ids(&members);
            let b = balancer(Policy::RoundRobin, members);

            let dealt: Vec<(u32, usize)> = (0..k * n)
                .map(|_| {
                    let p = b.pick().expect("all members are alive");
                    (p.id, p.index())
                })
                .collect();

            let expected: Vec<(u32, usize)> =
                order.iter().copied().zip(0..).cycle().take(k * n).collect();
            assert_eq!(dealt, expected, "n = {n}, k = {k}: in source order");
            for id in &order {
                let times = dealt.iter().filter(|(d, _)| d == id).count();
                assert_eq!(
                    times, k,
                    "n = {n}, k = {k}: member {id} dealt {times} times"
                );
            }
            assert_eq!(b.stats().picks, (k * n) as u64);
        }
    }
}

#[test]
fn picks_from_clones_share_one_rotation() {
    let b = balancer(Policy::RoundRobin, make(4));
    let c = b.clone();
    let dealt: Vec<u32> = (0..8)
        .map(|i| if i % 2 == 0 { &b } else { &c })
        .map(|x| x.pick().unwrap().id)
        .collect();
    assert_eq!(dealt, [0, 1, 2, 3, 0, 1, 2, 3]);
}

/// With `n` live members, `k·n` consecutive picks return every live member exactly `k` times,
/// even with a dead member still in the snapshot (too few deaths to cross the refresh ratio):
/// the member after it must not take its turns too.
#[test]
fn fairness_over_k_rounds_with_a_dead_member_in_the_snapshot() {
    let members = make(5);
    let b = Balancer::builder()
        .policy(Policy::RoundRobin)
        .min_alive_ratio(0.5)
        .source(members.clone())
        .build()
        .unwrap();
    members[1].kill();
    let k = 3;
    let live = members.len() - 1;
    let dealt = pick_ids(&b, k * live);
    assert_eq!(
        b.stats().generation,
        0,
        "one death in five does not refresh"
    );
    let counts: Vec<usize> = [0, 2, 3, 4]
        .iter()
        .map(|id| dealt.iter().filter(|&d| d == id).count())
        .collect();
    assert_eq!(
        counts, [k; 4],
        "live members 0, 2, 3, 4 over {k} whole rotations: {dealt:?}"
    );
}

#[test]
fn dead_member_is_skipped() {
    for policy in POLICIES {
        let members = make(6);
        let b = balancer(policy, members.clone());
        members[1].kill();
        members[4].kill();

        let dealt = pick_ids(&b, 300);
        assert!(
            dealt.iter().all(|id| ![1, 4].contains(id)),
            "{policy:?} dealt a dead member: {dealt:?}"
        );
        let seen: BTreeSet<u32> = dealt.into_iter().collect();
        assert_eq!(
            seen,
            BTreeSet::from([0, 2, 3, 5]),
            "{policy:?} still deals every live member"
        );
        assert_eq!(
            b.stats().skipped_dead,
            2,
            "{policy:?}: each death counted once"
        );
    }
}

#[test]
fn round_robin_skips_dead_and_disabled_members_in_source_order() {
    let members = make(6);
    let b = Balancer::builder()
        .min_alive_ratio(0.5)
        .source(members.clone())
        .build()
        .unwrap();
    members[1].kill();
    b.disable(&members[4]);
    // Rotations from cursor 0 over the four live, enabled members, in source order.
    let dealt = pick_ids(&b, 8);
    assert_eq!(dealt, [0, 2, 3, 5, 0, 2, 3, 5]);
}

#[test]
fn every_member_dead_gives_no_members() {
    for policy in POLICIES {
        let members = make(3);
        let b = balancer(policy, members.clone());
        members.iter().for_each(TestMember::kill);
        for _ in 0..5 {
            assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
        }
    }
}

#[test]
fn disable_and_enable() {
    for policy in POLICIES {
        let members = make(4);
        let b = balancer(policy, members.clone());

        assert!(
            b.disable(&members[2]),
            "{policy:?}: member 2 is in the snapshot"
        );
        assert_eq!(b.stats().disabled, 1);
        let dealt = pick_ids(&b, 200);
        assert!(
            !dealt.contains(&2),
            "{policy:?} dealt a disabled member: {dealt:?}"
        );
        assert_eq!(
            ids(&b.members()),
            [0, 1, 2, 3],
            "a disabled member stays in members()"
        );

        assert!(b.enable(&members[2]));
        assert_eq!(b.stats().disabled, 0);
        let dealt = pick_ids(&b, 200);
        assert!(
            dealt.contains(&2),
            "{policy:?} never dealt the re-enabled member"
        );
    }
}

#[test]
fn disable_and_enable_report_whether_the_member_is_in_the_snapshot() {
    let b = balancer(Policy::RoundRobin, make(3));
    let stranger = TestMember::new(99);
    assert!(!b.disable(&stranger));
    assert!(!b.enable(&stranger));
    assert_eq!(b.stats().disabled, 0);
}

#[test]
fn disabling_every_member_gives_no_members_without_refreshing() {
    for policy in POLICIES {
        let members = make(3);
        let source = SharedSource::new(members.clone());
        let b = Balancer::builder()
            .policy(policy)
            .source(source.clone())
            .build()
            .unwrap();
        for m in &members {
            b.disable(m);
        }
        assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
        let stats = b.stats();
        assert_eq!(stats.generation, 0, "{policy:?}: disabling is not a death");
        assert_eq!(stats.alive, 3, "{policy:?}");
        assert_eq!(source.calls(), 1, "{policy:?}");
    }
}

#[test]
fn empty_source_gives_no_members_then_recovers() {
    let shared: Arc<Mutex<Vec<TestMember>>> = Arc::default();
    let calls = Arc::new(Mutex::new(0_usize));
    let source = {
        let shared = Arc::clone(&shared);
        let calls = Arc::clone(&calls);
        move || {
            *calls.lock().unwrap() += 1;
            shared.lock().unwrap().clone()
        }
    };
    for policy in POLICIES {
        shared.lock().unwrap().clear();
        *calls.lock().unwrap() = 0;
        let b = Balancer::builder()
            .policy(policy)
            .source(source.clone())
            .build()
            .expect("an empty source is a valid source");

        assert!(b.members().is_empty());
        for _ in 0..3 {
            assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
        }
        assert_eq!(b.stats().members, 0);

        // Members appear, but nothing asks the source again until a refresh.
        *shared.lock().unwrap() = make(3);
        assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
        assert_eq!(
            *calls.lock().unwrap(),
            1,
            "{policy:?}: the source is not polled"
        );

        assert_eq!(b.refresh(), 3);
        assert_eq!(*calls.lock().unwrap(), 2);
        assert_eq!(ids(&b.members()), [0, 1, 2]);
        let p = b.pick().expect("members after refresh");
        assert!(p.id < 3);
        assert_eq!(p.generation(), 1);
    }
}

/// Concurrent pickers, each on a cursor stripe of its own (or sharing one), each making a
/// whole number of rotations: every member is dealt within the documented bound of the
/// mean, one per stripe in use (at most one per thread). `tests/stripes.rs` checks the bound
/// with part-rotations.
#[test]
fn round_robin_is_even_under_concurrent_pickers() {
    const THREADS: usize = 4;
    const N: usize = 8;
    const PER_THREAD: usize = 2_000;
    let b = balancer(Policy::RoundRobin, make(N));
    let counts: Vec<std::sync::atomic::AtomicUsize> = (0..N)
        .map(|_| std::sync::atomic::AtomicUsize::new(0))
        .collect();
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..PER_THREAD {
                    let id = b.pick().unwrap().id as usize;
                    counts[id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let counts: Vec<usize> = counts
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let expected = THREADS * PER_THREAD / N;
    for (id, &c) in counts.iter().enumerate() {
        assert!(
            c.abs_diff(expected) <= THREADS,
            "member {id} dealt {c} times, expected {expected} ± {THREADS}: {counts:?}"
        );
    }
    assert_eq!(counts.iter().sum::<usize>(), THREADS * PER_THREAD);
}
