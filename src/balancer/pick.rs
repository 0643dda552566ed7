//! The pick path: one small fast path inlined into callers, one cold path out of line.

use std::{
    hash::Hash,
    sync::{
        atomic::{AtomicU8, Ordering::Relaxed},
        Arc,
    },
};

use arc_swap::Guard;

use super::{
    state::{home_stripe, STRIPES},
    Balancer, Picked, Shared,
};
use crate::{
    member::Member,
    policy::error::PickError,
    policy::{self, affinity, Scan, Turn},
    snapshot::{affinity::hash_key, Snapshot},
    telemetry::Refusal,
};

// `Turn::unique` keeps the top five bits of 64 for the stripe.
const _: () = assert!(STRIPES <= 32, "a stripe index fits in five bits");

impl<M: Member> Balancer<M> {
    /// Picks a member by the balancer's [`Policy`](crate::Policy).
    ///
    /// The returned guard dereferences to the member without touching its reference count, so
    /// that pickers on different cores do not fight over it; call [`Picked::cloned`] for an
    /// owned handle. Do not hold a `Picked` across an `.await` or for long: it keeps the
    /// snapshot it came from alive.
    ///
    /// # Errors
    ///
    /// - [`PickError::NoMembers`] when no member is alive and enabled.
    /// - [`PickError::Overloaded`] when every live member's load is at or above
    ///   [`max_load`](crate::BalancerBuilder::max_load).
    /// - [`PickError::Draining`] while [`apply_within`](Balancer::apply_within) runs.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member, PickError};
    ///
    /// #[derive(Clone, Debug)]
    /// struct Busy(usize);
    /// impl Member for Busy {
    ///     fn is_alive(&self) -> bool { true }
    ///     fn load(&self) -> usize { self.0 }
    /// }
    ///
    /// let b = Balancer::builder().max_load(10).source(vec![Busy(12), Busy(3)]).build()?;
    /// assert_eq!(b.pick().unwrap().0, 3);
    ///
    /// let full = Balancer::builder().max_load(10).source(vec![Busy(10)]).build()?;
    /// assert_eq!(full.pick().unwrap_err(), PickError::Overloaded);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    #[inline]
    pub fn pick(&self) -> Result<Picked<'_, M>, PickError> {
        let shared = &*self.shared;
        let turn = self.take_turn()?;
        let snap = shared.snapshot.load();
        // The member (or both members) the turn lands on can nearly always be handed out as
        // they stand. The fast path only reads; otherwise the full scan starts from the same
        // member with the same turn and decides as if there were no fast path.
        if let Some(i) = policy::first(&shared.rule, &snap, turn) {
            return Ok(Picked::new(self, snap, i));
        }
        self.pick_slow(snap, turn, true, None)
    }

    /// Takes this thread's next turn on its stripe of the cursor, or refuses while a drain
    /// is in progress: the first step of [`pick`](Balancer::pick) and
    /// [`pick_excluding`](Balancer::pick_excluding).
    #[inline]
    fn take_turn(&self) -> Result<Turn, PickError> {
        let shared = &*self.shared;
        let stripe = home_stripe();
        match shared.cursor.next(stripe) {
            Ok(seq) => Ok(Turn {
                seq,
                stripe,
                rank: shared.ranks.of(stripe),
            }),
            Err(_) => {
                shared.meter.refused(Refusal::Draining);
                Err(PickError::Draining)
            }
        }
    }

    /// Like [`pick`](Balancer::pick), but never one of `tried`: the next member to retry a
    /// request on after those failed (pingora's `select_with`), chosen by the same policy
    /// among the others. Members are matched with [`PartialEq`]. [`Pool::call`] uses it to
    /// try each worker at most once.
    ///
    /// # Errors
    ///
    /// As [`pick`](Balancer::pick); `NoMembers` once every usable member has been tried.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member, PickError};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Replica(u8);
    /// impl Member for Replica {
    ///     fn is_alive(&self) -> bool { true }
    /// }
    ///
    /// let b = Balancer::builder().source(vec![Replica(0), Replica(1), Replica(2)]).build()?;
    /// let mut tried = Vec::new();
    /// loop {
    ///     match b.pick_excluding(&tried) {
    ///         // Say every replica fails: try the next one.
    ///         Ok(replica) => tried.push(replica.cloned()),
    ///         Err(e) => {
    ///             assert_eq!(e, PickError::NoMembers);
    ///             break;
    ///         }
    ///     }
    /// }
    /// assert_eq!(tried.len(), 3);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    ///
    /// [`Pool::call`]: crate::Pool::call
    pub fn pick_excluding(&self, tried: &[M]) -> Result<Picked<'_, M>, PickError>
    where
        M: PartialEq,
    {
        if tried.is_empty() {
            return self.pick();
        }
        let shared = &*self.shared;
        let turn = self.take_turn()?;
        let snap = shared.snapshot.load();
        let exclude = |m: &M| tried.contains(m);
        if let Some(i) = policy::first(&shared.rule, &snap, turn) {
            if !exclude(&snap.entries[i].member) {
                return Ok(Picked::new(self, snap, i));
            }
        }
        self.pick_slow(snap, turn, true, Some(&exclude))
    }

    /// The full scan, in the snapshot the fast path read (a pick looks at one snapshot from
    /// its first look to its answer), and what it found on the way: extra round-robin turns
    /// for the cursor, deaths to count and perhaps a refresh to ask for. `may_retry` allows one
    /// more look, with the same turn, at a snapshot that replaced this one while the pick
    /// found nothing.
    #[cold]
    #[inline(never)]
    fn pick_slow(
        &self,
        snap: Guard<Arc<Snapshot<M>>>,
        turn: Turn,
        may_retry: bool,
        exclude: Option<&dyn Fn(&M) -> bool>,
    ) -> Result<Picked<'_, M>, PickError> {
        let shared = &*self.shared;
        if snap.len() == 0 {
            return self.found_nothing(snap, PickError::NoMembers, turn, may_retry, exclude);
        }
        let mut scan = match exclude {
            Some(f) => Scan::excluding(f),
            None => Scan::default(),
        };
        let chosen = policy::scan(&shared.rule, &snap, turn, &mut scan);
        let c = &shared.counters;
        if scan.extra_turns != 0 {
            // Only the balancer writes the cursor: the policy reported what it passed over,
            // and the turns move on on the stripe this pick took its turn from.
            shared.cursor.skip(turn.stripe, scan.extra_turns);
            c.extra_turns.fetch_add(scan.extra_turns as u64, Relaxed);
        }
        if scan.newly_dead > 0 {
            c.skipped_dead.fetch_add(scan.newly_dead as u64, Relaxed);
            shared.meter.found_dead(scan.newly_dead as u64);
            if snap.below_ratio(shared.min_alive_ratio) {
                shared.ask_for_refresh();
            }
        }
        match chosen {
            Ok(index) => Ok(Picked::new(self, snap, index)),
            Err(e) => self.found_nothing(snap, e, turn, may_retry, exclude),
        }
    }

    /// A pick that found no member in `snap`: if a newer snapshot has been stored meanwhile,
    /// look once more there, with the same turn; a pick that lagged behind a refresh must
    /// not answer `NoMembers` (or `Overloaded`) from members that are gone.
    fn found_nothing(
        &self,
        snap: Guard<Arc<Snapshot<M>>>,
        e: PickError,
        turn: Turn,
        may_retry: bool,
        exclude: Option<&dyn Fn(&M) -> bool>,
    ) -> Result<Picked<'_, M>, PickError> {
        if may_retry {
            let now = self.shared.snapshot.load();
            if now.generation != snap.generation {
                drop(snap);
                return self.pick_slow(now, turn, false, exclude);
            }
        }
        let meter = &self.shared.meter;
        match e {
            PickError::Overloaded => {
                self.shared.counters.overloaded.fetch_add(1, Relaxed);
                meter.refused(Refusal::Overloaded);
            }
            PickError::NoMembers => meter.refused(Refusal::NoMembers),
            PickError::Draining => meter.refused(Refusal::Draining),
        }
        Err(e)
    }

    /// The member for `key`: the same key gets the same member while that member can be
    /// handed out, and when members come and go only about 1/n of the keys move (Maglev
    /// hashing over the members' [`affinity_key`](Member::affinity_key)s; weights give
    /// shares of the keys). A key whose member is dead, disabled or at `max_load` goes to the
    /// next member along the table, and comes back when its member does. With
    /// [`bounded_loads`](crate::BalancerBuilder::bounded_loads), a member carrying more than
    /// `1 + ε` times the average load passes its keys to the lightest member, so one hot key
    /// cannot pile up on one member.
    ///
    /// The next member along the table is found by walking the table's slots on from the
    /// key's. A walk that has passed as many slots as there are members looks at each member
    /// once: if none can take the key it answers at once, so a refusal costs O(n) loads read,
    /// about what a refused `pick` costs, and not a walk of the whole table (over a million
    /// slots beyond 1 024 members); if one can, the walk goes on to the first such member
    /// along the table, the same answer as an unbounded walk.
    ///
    /// Lock-free and allocation-free, like [`pick`](Balancer::pick): the table is built with
    /// each snapshot once the balancer has been asked for a key (the first call builds the
    /// current snapshot's). It does not move the round-robin cursor, so round robin's
    /// sequence stays exact around it, and it is not counted in
    /// [`stats().picks`](crate::BalancerStats::picks).
    ///
    /// # Errors
    ///
    /// As [`pick`](Balancer::pick): `NoMembers`, `Overloaded` (every live member at
    /// `max_load`), `Draining`.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Shard(u32);
    /// impl Member for Shard {
    ///     fn is_alive(&self) -> bool { true }
    ///     fn affinity_key(&self) -> Option<u64> { Some(u64::from(self.0)) }
    /// }
    ///
    /// let b = Balancer::builder().source((0..8).map(Shard).collect::<Vec<_>>()).build()?;
    /// let first = b.pick_for("user-42").unwrap().0;
    /// for _ in 0..10 {
    ///     assert_eq!(b.pick_for("user-42").unwrap().0, first);
    /// }
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn pick_for<K: Hash + ?Sized>(&self, key: &K) -> Result<Picked<'_, M>, PickError> {
        let shared = &*self.shared;
        if shared.cursor.check(home_stripe()).is_err() {
            shared.meter.refused(Refusal::Draining);
            return Err(PickError::Draining);
        }
        let hash = hash_key(key);
        let snap = shared.snapshot.load();
        if !shared.affinity_used.load(Relaxed) {
            shared.affinity_used.store(true, Relaxed);
        }
        let rule = &shared.rule;
        let table = snap.table();
        if let Some(i) = affinity::first(&snap, table, hash, rule.max_load, rule.bound) {
            return Ok(Picked::new(self, snap, i));
        }
        self.pick_for_slow(snap, hash, true)
    }

    /// [`pick_for`](Balancer::pick_for)'s full walk, with what it found on the way, and one
    /// more look at a newer snapshot if this one had nothing.
    #[cold]
    #[inline(never)]
    fn pick_for_slow(
        &self,
        snap: Guard<Arc<Snapshot<M>>>,
        hash: u64,
        may_retry: bool,
    ) -> Result<Picked<'_, M>, PickError> {
        let shared = &*self.shared;
        let rule = &shared.rule;
        let mut scan = Scan::default();
        let chosen = affinity::scan(
            &snap,
            snap.table(),
            hash,
            rule.max_load,
            rule.bound,
            &mut scan,
        );
        if scan.newly_dead > 0 {
            shared
                .counters
                .skipped_dead
                .fetch_add(scan.newly_dead as u64, Relaxed);
            shared.meter.found_dead(scan.newly_dead as u64);
            if snap.below_ratio(shared.min_alive_ratio) {
                shared.ask_for_refresh();
            }
        }
        match chosen {
            Ok(index) => Ok(Picked::new(self, snap, index)),
            Err(e) => {
                if may_retry {
                    let now = shared.snapshot.load();
                    if now.generation != snap.generation {
                        drop(snap);
                        return self.pick_for_slow(now, hash, false);
                    }
                }
                if e == PickError::Overloaded {
                    shared.counters.overloaded.fetch_add(1, Relaxed);
                    shared.meter.refused(Refusal::Overloaded);
                } else {
                    shared.meter.refused(Refusal::NoMembers);
                }
                Err(e)
            }
        }
    }

    /// Whether a ratio-triggered refresh has been asked for and has not landed yet.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone)] struct W;
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().source(vec![W, W]).build()?;
    /// assert!(!b.is_refreshing());
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    #[must_use]
    pub fn is_refreshing(&self) -> bool {
        self.shared.refreshing.is_flying()
    }
}

impl<M: Member> Shared<M> {
    /// Asks for a ratio refresh from a pick: joins the flight under way, or starts one and
    /// hands it to this balancer's refresher (a task on its runtime, or its own thread). No
    /// lock and no allocation of croupier's; the wake is a `futex` wake for a thread, or
    /// tokio's scheduling of the task. Without a refresher the picker flies the flight itself.
    fn ask_for_refresh(&self) {
        if !self.refreshing.request() {
            return;
        }
        self.fly_ratio_refresh();
    }
}

/// The rank of each cursor stripe in one balancer: the order in which stripes first took a
/// turn on it (the first stripe to pick ranks 0).
///
/// A thread's stripe is chosen once per process, by the order in which threads first pick
/// from any balancer: it says nothing about this balancer. Least loaded's start and power of
/// two's sampling tell threads apart by this rank instead, so that a seeded balancer picked
/// from one thread makes the same choices from run to run whatever stripe that thread got
/// (a test runner's threads, a simulation's runtime thread), while threads that pick it side
/// by side still rank apart and do not sample in step.
#[derive(Debug)]
pub(super) struct Ranks {
    ranks: [AtomicU8; STRIPES],
    next: AtomicU8,
}

/// A stripe that has not picked from this balancer yet.
const UNRANKED: u8 = u8::MAX;

// Ranks are below `STRIPES`, and `UNRANKED` is none of them.
const _: () = assert!(STRIPES < UNRANKED as usize, "a rank fits below UNRANKED");

impl Ranks {
    pub(super) fn new() -> Self {
        Self {
            ranks: std::array::from_fn(|_| AtomicU8::new(UNRANKED)),
            next: AtomicU8::new(0),
        }
    }

    /// `stripe`'s rank, given on its first turn. Relaxed: a rank is a number and publishes
    /// nothing; the compare-exchange gives each stripe one rank for good.
    #[inline]
    pub(super) fn of(&self, stripe: usize) -> usize {
        match self.ranks[stripe % STRIPES].load(Relaxed) {
            UNRANKED => self.rank(stripe),
            r => usize::from(r),
        }
    }

    #[cold]
    #[inline(never)]
    fn rank(&self, stripe: usize) -> usize {
        // Every stripe takes at most one number that sticks; a number lost to a racing
        // compare-exchange is skipped, and ranks wrap past `STRIPES` (only threads beyond
        // that many share one, as they share stripes).
        #[allow(clippy::cast_possible_truncation)]
        let mine = self.next.fetch_add(1, Relaxed) % STRIPES as u8;
        match self.ranks[stripe % STRIPES].compare_exchange(UNRANKED, mine, Relaxed, Relaxed) {
            Ok(_) => usize::from(mine),
            Err(theirs) => usize::from(theirs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ranks;

    /// Stripes rank in the order they first pick from a balancer, each keeps its rank, and
    /// ranks stay below the stripe count (they fit the top bits of a unique turn).
    #[test]
    fn stripes_rank_in_the_order_they_first_pick() {
        let ranks = Ranks::new();
        assert_eq!(ranks.of(5), 0);
        assert_eq!(ranks.of(3), 1);
        assert_eq!(ranks.of(5), 0);
        assert_eq!(ranks.of(14), 2);
        assert_eq!(ranks.of(3), 1);
        let fresh = Ranks::new();
        assert_eq!(fresh.of(3), 0, "a rank belongs to one balancer");
        for stripe in 0..super::STRIPES {
            assert!(ranks.of(stripe) < super::STRIPES);
        }
    }
}
