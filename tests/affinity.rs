//! Key affinity (`pick_for`): stable keys, few moves when members come and go, and bounded
//! loads that keep one hot key from piling up on one member.

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
};

use common::{make, make_from, SharedSource, TestMember};
use croupier::{Balancer, ConfigError, Member, PickError};
use proptest::prelude::*;

const KEYS: u32 = 20_000;

fn owners(b: &Balancer<TestMember>) -> Vec<u32> {
    (0..KEYS).map(|k| b.pick_for(&k).unwrap().id).collect()
}

fn moved(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
}

#[test]
fn affinity_is_stable_and_moves_about_one_nth() {
    let members = make(10);
    let source = SharedSource::new(members.clone());
    let b = Balancer::builder()
        .min_alive_ratio(0.1)
        .source(source.clone())
        .build()
        .unwrap();
    let before = owners(&b);
    assert_eq!(owners(&b), before, "the same key, the same member");
    let mut share: HashMap<u32, usize> = HashMap::new();
    for &o in &before {
        *share.entry(o).or_default() += 1;
    }
    assert_eq!(share.len(), 10);
    for (&id, &n) in &share {
        let f = n as f64 / f64::from(KEYS);
        assert!(
            (0.07..0.13).contains(&f),
            "member {id} has {f:.3} of the keys"
        );
    }

    // One of ten leaves: its keys move, and few others.
    let mut nine = members.clone();
    nine.remove(3);
    source.set(nine);
    b.refresh();
    let after = owners(&b);
    for (k, (&x, &y)) in before.iter().zip(&after).enumerate() {
        assert!(x != 3 || y != 3, "key {k} stayed on the member that left");
    }
    let m = moved(&before, &after);
    assert!((0.09..0.13).contains(&m), "{m:.3} of the keys moved");

    // One joins: about 1/11 of the keys move to it, and few others.
    source.set(make(11));
    b.refresh();
    let joined = owners(&b);
    let m = moved(&before, &joined);
    assert!((0.08..0.12).contains(&m), "{m:.3} of the keys moved");

    // A member that dies keeps its place: its keys go elsewhere, no other key moves, and they
    // come back when it does.
    let members = make(10);
    let b = Balancer::builder()
        .min_alive_ratio(0.1)
        .source(members.clone())
        .build()
        .unwrap();
    let before = owners(&b);
    members[6].kill();
    let during = owners(&b);
    for (k, (&x, &y)) in before.iter().zip(&during).enumerate() {
        if x == 6 {
            assert_ne!(y, 6, "key {k}");
        } else {
            assert_eq!(x, y, "key {k} moved though its member lives");
        }
    }
    let orphans: Vec<u32> = before
        .iter()
        .zip(&during)
        .filter(|(&x, _)| x == 6)
        .map(|(_, &y)| y)
        .collect();
    let mut spread: Vec<u32> = orphans.clone();
    spread.sort_unstable();
    spread.dedup();
    assert!(spread.len() >= 5, "a dead member's keys spread: {spread:?}");
}

#[test]
fn bounded_loads_cap_a_hot_key() {
    const HELD: usize = 200;
    // Every pick of one key is held (its member's load goes up by one).
    let hold_all = |b: &Balancer<TestMember>, members: &[TestMember]| {
        for _ in 0..HELD {
            let id = b.pick_for("hot").unwrap().id;
            let m = &members[id as usize];
            m.set_load(croupier::Member::load(m) + 1);
        }
        members
            .iter()
            .map(croupier::Member::load)
            .collect::<Vec<_>>()
    };

    // Plain consistent hashing: the hot key piles up on one member.
    let members = make(4);
    let plain = Balancer::builder().source(members.clone()).build().unwrap();
    let loads = hold_all(&plain, &members);
    assert_eq!(loads.iter().max(), Some(&HELD), "{loads:?}");

    // Bounded loads: no member above ⌈1.25 · total / n⌉.
    let members = make(4);
    let bounded = Balancer::builder()
        .bounded_loads(0.25)
        .source(members.clone())
        .build()
        .unwrap();
    let loads = hold_all(&bounded, &members);
    let cap = (1.25 * HELD as f64 / 4.0).ceil() as usize;
    assert_eq!(loads.iter().sum::<usize>(), HELD);
    assert!(loads.iter().all(|&l| l <= cap), "{loads:?} over {cap}");

    // Once the load is gone, the key is back on its own member.
    let home = plain.pick_for("hot").unwrap().id;
    for m in &members {
        m.set_load(0);
    }
    assert_eq!(bounded.pick_for("hot").unwrap().id, home);
}

#[test]
fn pick_for_honours_max_load_draining_and_its_settings() {
    let members = make(3);
    let b = Balancer::builder()
        .max_load(2)
        .source(members.clone())
        .build()
        .unwrap();
    let home = b.pick_for(&7_u64).unwrap().id;
    members[home as usize].set_load(2);
    assert_ne!(b.pick_for(&7_u64).unwrap().id, home);
    for m in &members {
        m.set_load(2);
    }
    assert_eq!(b.pick_for(&7_u64).unwrap_err(), PickError::Overloaded);
    assert_eq!(b.stats().overloaded, 1, "the refusal is counted");
    for m in &members {
        m.kill();
    }
    assert_eq!(b.pick_for(&7_u64).unwrap_err(), PickError::NoMembers);
    assert_eq!(b.stats().overloaded, 1, "no members is not overloaded");

    let empty = Balancer::<TestMember>::builder()
        .source(Vec::new())
        .build()
        .unwrap();
    assert_eq!(empty.pick_for("k").unwrap_err(), PickError::NoMembers);

    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = Balancer::<TestMember>::builder()
            .bounded_loads(bad)
            .source(Vec::new())
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::InvalidEpsilon(_)), "{bad}: {e:?}");
    }
}

/// `pick_for` walking past dead members counts each once (`skipped_dead`) and asks for a
/// refresh once too few are alive, as `pick` does; while the snapshot stays below the ratio
/// (here the refresh fails: the source panics), walking past deaths already counted asks for
/// no more.
#[test]
fn pick_for_counts_the_dead_it_skips_and_refreshes_below_the_ratio_once() {
    let members = make(4);
    let calls = Arc::new(AtomicUsize::new(0));
    let b = {
        let (members, calls) = (members.clone(), Arc::clone(&calls));
        Balancer::builder()
            .min_alive_ratio(0.75)
            .source(move || {
                let n = calls.fetch_add(1, SeqCst);
                assert!(n == 0, "source failure (expected by the test)");
                members.clone()
            })
            .build()
            .unwrap()
    };
    let calls = || calls.load(SeqCst);
    let walk = |b: &Balancer<TestMember>| {
        for k in 0..400_u64 {
            assert!(b.pick_for(&k).unwrap().is_alive());
        }
        common::settle(b);
    };
    members[0].kill();
    walk(&b);
    assert_eq!(b.stats().skipped_dead, 1);
    assert_eq!(calls(), 1, "3 of 4 alive is not below 0.75");

    members[1].kill();
    walk(&b);
    assert_eq!(b.stats().skipped_dead, 2);
    assert_eq!(calls(), 2, "2 of 4 is: one refresh (which fails)");

    walk(&b);
    assert_eq!(b.stats().skipped_dead, 2);
    assert_eq!(calls(), 2, "nothing newly dead: no refresh asked");
    assert_eq!(b.stats().generation, 0);
}

#[tokio::test]
async fn pick_for_is_refused_while_draining() {
    let b = Balancer::builder().source(make(2)).build().unwrap();
    let inside = b
        .apply_within(
            croupier::Wait::duration(std::time::Duration::ZERO),
            || async { b.pick_for("k").unwrap_err() },
        )
        .await
        .unwrap();
    assert_eq!(inside, PickError::Draining);
    assert!(b.pick_for("k").is_ok());
}

/// A member whose load is set by the test and that counts how often its load is read, in a
/// count shared by all members of one test.
#[derive(Clone, Debug)]
struct Counted {
    load: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
}

impl Member for Counted {
    fn is_alive(&self) -> bool {
        true
    }

    fn load(&self) -> usize {
        self.reads.fetch_add(1, SeqCst);
        self.load.load(SeqCst)
    }
}

/// `n` members at load `load` sharing one read count, which is returned with them.
fn counted(n: usize, load: usize) -> (Vec<Counted>, Arc<AtomicUsize>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let members = (0..n)
        .map(|_| Counted {
            load: Arc::new(AtomicUsize::new(load)),
            reads: Arc::clone(&reads),
        })
        .collect();
    (members, reads)
}

/// With every member at `max_load`, `pick_for` still answers `Overloaded` (and counts it), and
/// finds that out by reading each member's load a few times, as a refused `pick` does, not by
/// walking the whole table (over a million slots at 2 000 members), plain or with bounded
/// loads.
#[test]
fn refused_pick_for_reads_each_member_a_few_times_not_the_whole_table() {
    const N: usize = 2_000;
    for bounded in [false, true] {
        let (members, reads) = counted(N, 5);
        let builder = Balancer::builder().max_load(5);
        let builder = if bounded {
            builder.bounded_loads(0.25)
        } else {
            builder
        };
        let b = builder.source(members).build().unwrap();
        for key in 0..20_u32 {
            reads.store(0, SeqCst);
            assert_eq!(b.pick_for(&key).unwrap_err(), PickError::Overloaded);
            let r = reads.load(SeqCst);
            assert!(r <= 4 * N, "bounded {bounded}, key {key}: {r} loads read");
        }
        assert_eq!(b.stats().overloaded, 20, "every refusal is counted");
    }
}

/// One member of 2 000 under `max_load`: every key finds it, however many slots of the others
/// lie between the key's slot and the next of its own (about 2 000 on average, so many keys
/// pass more slots than there are members before they reach it), plain or with bounded loads.
#[test]
fn pick_for_finds_the_one_member_under_max_load_however_far_along_the_table() {
    const N: usize = 2_000;
    for bounded in [false, true] {
        let (members, reads) = counted(N, 5);
        members[1_234].load.store(4, SeqCst);
        let builder = Balancer::builder().max_load(5);
        let builder = if bounded {
            builder.bounded_loads(0.25)
        } else {
            builder
        };
        let b = builder.source(members.clone()).build().unwrap();
        for key in 0..200_u32 {
            reads.store(0, SeqCst);
            let picked = b.pick_for(&key).unwrap();
            assert!(
                Arc::ptr_eq(&picked.load, &members[1_234].load),
                "bounded {bounded}, key {key}"
            );
            // The walk reads each slot's member once and, past n slots, every member once
            // more: a few thousand loads, not n for every slot walked.
            let r = reads.load(SeqCst);
            assert!(r <= 50 * N, "bounded {bounded}, key {key}: {r} loads read");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of member sets: a key always gets a live member of the current set, the
    /// same one while the set stands, and a change moves about as many keys as it must.
    #[test]
    fn affinity_model_under_membership_changes(
        sets in prop::collection::vec(prop::collection::btree_set(0_u32..24, 1..16), 2..6)
    ) {
        let source = SharedSource::new(Vec::new());
        let b = Balancer::builder().min_alive_ratio(0.1).source(source.clone()).build().unwrap();
        let mut last: Option<(Vec<u32>, Vec<u32>)> = None;
        for set in sets {
            let ids: Vec<u32> = set.iter().copied().collect();
            source.set(ids.iter().map(|&id| make_from(id, 1).remove(0)).collect());
            b.refresh();
            let now: Vec<u32> = (0..2_000_u32).map(|k| b.pick_for(&k).unwrap().id).collect();
            let again: Vec<u32> = (0..2_000_u32).map(|k| b.pick_for(&k).unwrap().id).collect();
            prop_assert_eq!(&now, &again);
            prop_assert!(now.iter().all(|id| set.contains(id)));
            if let Some((prev_ids, prev)) = last {
                // Keys that had to move: those whose member left, plus the new members'
                // share. Maglev moves a little more than that; allow 10 % of all keys.
                let left: Vec<u32> = prev_ids.iter().copied().filter(|id| !set.contains(id)).collect();
                let joined = ids.iter().filter(|id| !prev_ids.contains(id)).count();
                let must = prev.iter().filter(|id| left.contains(id)).count() as f64 / 2_000.0
                    + joined as f64 / ids.len() as f64;
                let m = moved(&prev, &now);
                prop_assert!(m <= must + 0.10, "moved {} where {} had to", m, must);
            }
            last = Some((ids, now));
        }
    }
}
