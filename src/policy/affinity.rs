//! Key affinity: the member a key hashes to in the snapshot's Maglev table
//! ([`crate::snapshot::affinity`]), and, with bounded loads, the lightest member when that
//! one carries more than its share.
//!
//! Bounded loads follow Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded
//! Loads" (SODA 2018): a member takes a key only while its load is below
//! `⌈(1 + ε) · (L + 1) / n⌉`, where `L` is the live members' total load and `n` their number.
//! So no member carries more than `1 + ε` times the average, and one hot key spills instead of
//! piling up on one member. Where the paper walks on along the hash ring, a key whose member is
//! over the bound goes to the lightest member: the next members along the table would fill
//! with the hot key's spill and pass their own keys on in turn (a dead or disabled member's
//! keys still walk on along the table, so they stay together).
//!
//! The bound needs every member's load, which a pick must not read one by one: it is cached
//! in the table, recomputed when a key's member looks over it (so a key never spills on a
//! stale bound) and otherwise every 64 affinity picks of a thread that found its member busy.
//!
//! A walk is bounded in what it costs to refuse: past as many slots as there are members, it
//! asks each member once whether it may take the key, and refuses if none can; otherwise it
//! walks on to the first that can (see [`scan`]).

use std::cell::Cell;

use super::Scan;
use crate::{
    member::Member,
    policy::error::PickError,
    snapshot::{
        affinity::{slot_of, Table},
        Snapshot,
    },
};

/// How often a thread recomputes a bound it has not had to question.
const RECHECK: u32 = 64;

thread_local! {
    /// Busy-member affinity picks this thread has made since it last recomputed a bound.
    static SINCE_RECHECK: Cell<u32> = const { Cell::new(0) };
}

/// The fast path: the key's own member, if it may be handed out as it stands.
#[inline]
pub(crate) fn first<M: Member>(
    snap: &Snapshot<M>,
    table: &Table,
    hash: u64,
    max_load: usize,
    bound: Option<f64>,
) -> Option<usize> {
    let m = table.slots.len();
    if m == 0 {
        return None;
    }
    let i = table.slots.owner(slot_of(hash, m));
    let Some(epsilon) = bound else {
        return snap.usable::<false>(i, max_load).ok().map(|_| i);
    };
    let load = snap.usable::<true>(i, max_load).ok()?;
    if load == 0 {
        return Some(i);
    }
    let cap = if recheck_due() {
        recompute(snap, table, epsilon)
    } else {
        table.cap.load(std::sync::atomic::Ordering::Relaxed)
    };
    (load < cap).then_some(i)
}

/// Where the next spilled key starts looking for the lightest member, so that ties among
/// idle members go round instead of always to the members after the key's own. Counted in the
/// table (per balancer and snapshot), so that a seeded balancer picked from one thread makes
/// the same choices every run.
fn next_spill(table: &Table) -> usize {
    table
        .spills
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .wrapping_add(1)
}

/// Counts a busy-member pick on this thread; true every [`RECHECK`]-th time.
fn recheck_due() -> bool {
    SINCE_RECHECK.with(|c| {
        let n = c.get() + 1;
        let due = n >= RECHECK;
        c.set(if due { 0 } else { n });
        due
    })
}

/// The full walk: from the key's slot, the first member that may take the key, checked
/// against a freshly computed bound.
///
/// A walk that has passed as many slots as there are members without finding one asks the
/// members themselves (one look at each) whether any may take the key, and answers at once
/// if none can: a refusal (every member at `max_load`, or none alive) costs about what a
/// refused [`pick`](crate::Balancer::pick) does, not a walk of the whole table (over a
/// million slots beyond 1 024 members). If one can, the walk goes on to it, so the answer is
/// the one the whole walk gives.
pub(crate) fn scan<M: Member>(
    snap: &Snapshot<M>,
    table: &Table,
    hash: u64,
    max_load: usize,
    bound: Option<f64>,
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    let m = table.slots.len();
    if m == 0 {
        return Err(scan.nothing());
    }
    let cap = bound.map_or(usize::MAX, |epsilon| recompute(snap, table, epsilon));
    let takes = |scan: &mut Scan<'_, M>, i| {
        scan.look::<true>(snap, i, max_load)
            .is_some_and(|load| load < cap)
    };
    let start = slot_of(hash, m);
    if bound.is_some() {
        let home = table.slots.owner(start);
        if let Some(load) = scan.look::<true>(snap, home, max_load) {
            if load < cap {
                return Ok(home);
            }
            // Over the bound: the lightest member, not the next along the table. A hot key's
            // spill then lands where there is room instead of filling the members after it,
            // which would pass their own keys on in turn (the arena's S8: 80 % of the other
            // keys stayed at their member instead of 66 %, and p99 fell by a sixth).
            let from = (home + next_spill(table) % snap.len()) % snap.len();
            return super::least_loaded::from(snap, from, max_load, scan);
        }
    }
    let stretch = snap.len().min(m);
    for k in 0..m {
        if k == stretch && !(0..snap.len()).any(|i| takes(scan, i)) {
            return Err(scan.nothing());
        }
        let i = table.slots.owner(super::wrap(start + k, m));
        if takes(scan, i) {
            return Ok(i);
        }
    }
    // Below the bound there is always a member (the lightest is under the average), unless
    // the loads moved while the walk read them, or the one that can take the key owns no
    // slot (a weight too small against the heaviest for a turn while the table was filled):
    // then any usable member will do.
    super::least_loaded::from(snap, table.slots.owner(start), max_load, scan)
}

/// The bound now: `⌈(1 + ε) · (L + 1) / n⌉` over the usable members; cached in the table.
fn recompute<M: Member>(snap: &Snapshot<M>, table: &Table, epsilon: f64) -> usize {
    let (mut n, mut total) = (0_usize, 0_usize);
    for i in 0..snap.len() {
        if let Ok(load) = snap.usable::<true>(i, usize::MAX) {
            n += 1;
            total = total.saturating_add(load);
        }
    }
    let cap = if n == 0 {
        usize::MAX
    } else {
        let share = (1.0 + epsilon) * (total as f64 + 1.0) / n as f64;
        (share.ceil() as usize).max(1)
    };
    table.cap.store(cap, std::sync::atomic::Ordering::Relaxed);
    SINCE_RECHECK.with(|c| c.set(0));
    cap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::affinity::hash_key;

    #[derive(Clone, Debug)]
    struct M {
        alive: bool,
        load: usize,
    }

    impl Member for M {
        fn is_alive(&self) -> bool {
            self.alive
        }
        fn load(&self) -> usize {
            self.load
        }
    }

    fn snap(members: Vec<M>) -> Snapshot<M> {
        Snapshot::new(members, 0, |_| 0)
    }

    /// The fast path answers as the full walk does, and answers most picks of a healthy pool.
    #[test]
    fn the_fast_path_answers_as_the_walk_does() {
        let mut fast = 0;
        for dead in [usize::MAX, 2, 5] {
            let members = (0..8)
                .map(|i| M {
                    alive: i != dead,
                    load: i % 3,
                })
                .collect();
            let s = snap(members);
            for bound in [None, Some(0.5)] {
                for key in 0..200_u32 {
                    let h = hash_key(&key);
                    if let Some(i) = first(&s, s.table(), h, usize::MAX, bound) {
                        let mut walk = Scan::default();
                        assert_eq!(scan(&s, s.table(), h, usize::MAX, bound, &mut walk), Ok(i));
                        fast += 1;
                    }
                }
            }
        }
        assert!(fast > 800, "the fast path answered {fast} of 1200");
    }

    /// A key whose walk passes more slots than there are members before it reaches a member
    /// that may take it still ends at the first such member along the table, not at the
    /// lightest: the members are asked, some can, and the walk goes on.
    #[test]
    fn a_walk_past_more_slots_than_members_still_ends_at_the_first_that_may_take_the_key() {
        const N: usize = 2_000;
        const FIRST: usize = 1_234;
        const LIGHTER: usize = 77;
        let loads = |i| match i {
            FIRST => 4,
            LIGHTER => 3,
            _ => 5,
        };
        let s = snap(
            (0..N)
                .map(|i| M {
                    alive: true,
                    load: loads(i),
                })
                .collect(),
        );
        let table = s.table();
        let m = table.slots.len();
        let distance = |h: u64, to: usize| {
            let start = slot_of(h, m);
            (0..m)
                .position(|k| table.slots.owner(super::super::wrap(start + k, m)) == to)
                .expect("the member owns a slot")
        };
        let far = (0..1_000_u32)
            .map(|k| hash_key(&k))
            .find(|&h| distance(h, FIRST) > N && distance(h, FIRST) < distance(h, LIGHTER))
            .expect("a key more than N slots before FIRST's next slot, and that before LIGHTER's");
        for bound in [None, Some(0.25)] {
            assert_eq!(first(&s, table, far, 5, bound), None);
            let mut walk = Scan::default();
            assert_eq!(scan(&s, table, far, 5, bound, &mut walk), Ok(FIRST));
        }
        // With every member at the limit, the same walk refuses.
        let full = snap(
            (0..N)
                .map(|_| M {
                    alive: true,
                    load: 5,
                })
                .collect(),
        );
        let mut walk = Scan::default();
        assert_eq!(
            scan(&full, full.table(), far, 5, None, &mut walk),
            Err(PickError::Overloaded)
        );
    }

    /// A key whose member is over the bound goes to the lightest member, not to the next
    /// member along the table, which would fill with a hot key's spill and pass its own keys
    /// on in turn; a dead member's keys still walk on along the table.
    #[test]
    fn a_key_over_the_bound_goes_to_the_lightest_member() {
        const N: usize = 8;
        let probe = snap(
            (0..N)
                .map(|_| M {
                    alive: true,
                    load: 0,
                })
                .collect(),
        );
        let table = probe.table();
        let m = table.slots.len();
        let along = |h: u64| {
            let start = slot_of(h, m);
            let home = table.slots.owner(start);
            let next = (1..m)
                .map(|k| table.slots.owner(super::super::wrap(start + k, m)))
                .find(|&i| i != home)
                .expect("another member owns a slot");
            (home, next)
        };
        let (key, home, next) = (0..1_000_u32)
            .map(|k| hash_key(&k))
            .map(|h| (h, along(h)))
            .find(|&(_, (home, next))| next != N - 1 && home != N - 1)
            .map(|(h, (home, next))| (h, home, next))
            .expect("a key whose first two members are not the last");
        // Loads: the key's member 6 (over the bound ⌈1.25 · 12 / 8⌉ = 2), the next along the
        // table 1 (under it), the last member 0, every other 1.
        let loads = |i| match i {
            _ if i == home => 6,
            _ if i == N - 1 => 0,
            _ => 1,
        };
        let s = snap(
            (0..N)
                .map(|i| M {
                    alive: true,
                    load: loads(i),
                })
                .collect(),
        );
        assert_eq!(s.table().slots.owner(slot_of(key, m)), home);
        for _ in 0..N {
            let mut walk = Scan::default();
            assert_eq!(
                scan(&s, s.table(), key, usize::MAX, Some(0.25), &mut walk),
                Ok(N - 1)
            );
        }
        // The same key with its member dead walks on along the table.
        let dead = snap(
            (0..N)
                .map(|i| M {
                    alive: i != home,
                    load: loads(i),
                })
                .collect(),
        );
        let mut walk = Scan::default();
        assert_eq!(
            scan(&dead, dead.table(), key, usize::MAX, Some(0.25), &mut walk),
            Ok(next)
        );
    }

    /// A hot key's spills onto idle members go round them, not always to the first idle one
    /// after its own member.
    #[test]
    fn spills_go_round_the_idle_members() {
        const N: usize = 8;
        const HOME: usize = 4;
        let probe = snap(
            (0..N)
                .map(|_| M {
                    alive: true,
                    load: 0,
                })
                .collect(),
        );
        let m = probe.table().slots.len();
        let key = (0..10_000_u32)
            .map(|k| hash_key(&k))
            .find(|&h| probe.table().slots.owner(slot_of(h, m)) == HOME)
            .expect("a key whose member is 4");
        let s = snap(
            (0..N)
                .map(|i| M {
                    alive: true,
                    load: if i == HOME { 10 } else { 0 },
                })
                .collect(),
        );
        let mut chosen = std::collections::BTreeSet::new();
        for _ in 0..N {
            let mut walk = Scan::default();
            chosen.insert(scan(&s, s.table(), key, usize::MAX, Some(0.25), &mut walk).unwrap());
        }
        assert_eq!(chosen.len(), N - 1, "{chosen:?}");
        assert!(!chosen.contains(&HOME));
    }

    /// A member whose load the test sets.
    #[derive(Clone, Debug)]
    struct Loaded(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Member for Loaded {
        fn is_alive(&self) -> bool {
            true
        }
        fn load(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    /// A bound cached while loads were high is recomputed within [`RECHECK`] busy picks of a
    /// thread, so a key does not stay on a member over the bound for long.
    #[test]
    fn a_stale_bound_is_recomputed_within_recheck_picks() {
        use std::sync::{atomic::AtomicUsize, atomic::Ordering::Relaxed, Arc};
        let loads = [
            Arc::new(AtomicUsize::new(10)),
            Arc::new(AtomicUsize::new(10)),
        ];
        let s = Snapshot::new(
            loads.iter().map(|l| Loaded(Arc::clone(l))).collect(),
            0,
            |_| 0,
        );
        let table = s.table();
        let key = (0..100_u32)
            .map(|k| hash_key(&k))
            .find(|&h| table.slots.owner(slot_of(h, table.slots.len())) == 0)
            .expect("some key lands on member 0");
        // Loads 10 and 10: the bound is ⌈1.25 · 21 / 2⌉ = 14, and member 0 takes the key.
        let mut walk = Scan::default();
        assert_eq!(
            scan(&s, table, key, usize::MAX, Some(0.25), &mut walk),
            Ok(0)
        );
        assert_eq!(table.cap.load(Relaxed), 14);
        // Member 1 goes idle: the bound is now ⌈1.25 · 11 / 2⌉ = 7, below member 0's 10.
        loads[1].store(0, Relaxed);
        let refused =
            (0..=RECHECK).position(|_| first(&s, table, key, usize::MAX, Some(0.25)).is_none());
        assert!(refused.is_some(), "the stale bound was never recomputed");
        assert_eq!(table.cap.load(Relaxed), 7);
    }
}
