//! The lock-free [`Balancer`].

mod builder;
mod drain;
mod picked;
pub(crate) mod snapshot;
pub(crate) mod state;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

pub use self::{
    builder::BalancerBuilder,
    drain::{DrainError, EachFn, Wait},
    picked::Picked,
};
use self::{
    snapshot::Snapshot,
    state::{Cursor, SingleFlight},
};
use crate::{
    policy::{self, Scan},
    Member, PickError, Policy, Source,
};

/// Hands out members of a set, lock-free: in turn, to the least loaded, or to the lighter of two.
///
/// A `Balancer` is a cheap handle (an [`Arc`] inside): clone it into every thread or task that
/// picks. [`pick`](Balancer::pick) reads one snapshot of the members through an
/// [`ArcSwap`], makes one relaxed `fetch_add` on a cache-padded cursor, takes no lock, makes no
/// heap allocation and no system call. Everything else (refresh, disable, enable) happens on
/// slow paths that never make pickers wait.
///
/// # Liveness and refresh
///
/// A member whose [`is_alive`](Member::is_alive) is false is never handed out. The first pick to
/// find it dead counts it; once the live members fall below
/// [`min_alive_ratio`](BalancerBuilder::min_alive_ratio) of those alive at the last refresh
/// (ballermann's rule, default `0.8`), that pick reloads the members from the [`Source`]. Only
/// one refresh runs at a time; other pickers keep dealing from the old snapshot meanwhile and
/// never wait for it. The members alive in the new snapshot become the new original size.
///
/// A source that returns no member leaves the balancer answering [`PickError::NoMembers`]; it
/// is asked again on the next [`refresh`](Balancer::refresh), never in a loop.
///
/// # Example
///
/// ```
/// use croupier::{Balancer, Member, Policy};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Worker(&'static str);
///
/// impl Member for Worker {
///     fn is_alive(&self) -> bool {
///         true
///     }
/// }
///
/// let balancer = Balancer::builder()
///     .policy(Policy::RoundRobin)
///     .source(vec![Worker("a"), Worker("b"), Worker("c")])
///     .build()?;
///
/// let dealt: Vec<_> = (0..6).map(|_| balancer.pick().unwrap().0).collect();
/// assert_eq!(dealt, ["a", "b", "c", "a", "b", "c"]);
/// # Ok::<(), croupier::ConfigError>(())
/// ```
pub struct Balancer<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Balancer<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What every clone of a balancer shares.
struct Shared<M> {
    /// The only value every pick writes (its lowest bit is the drain flag); on a cache line of
    /// its own so that writing it does not evict the snapshot pointer that every pick reads.
    cursor: CachePadded<Cursor>,
    snapshot: ArcSwap<Snapshot<M>>,
    config: Config,
    source: Box<dyn Source<M>>,
    /// Serialises refreshes and disable/enable. Held on slow paths only.
    writer: Mutex<Writer<M>>,
    /// Single flight for ratio-triggered refreshes.
    refreshing: SingleFlight,
    counters: CachePadded<Counters>,
    drain: drain::DrainState,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    policy: Policy,
    min_alive_ratio: f64,
    /// `usize::MAX` when there is no limit.
    max_load: usize,
    seed: u64,
}

/// Slow-path counters: written on deaths, refusals and refreshes, never on a plain pick.
#[derive(Debug, Default)]
struct Counters {
    skipped_dead: AtomicU64,
    /// Turns round-robin picks passed over on the cursor beyond their own.
    extra_turns: AtomicU64,
    overloaded: AtomicU64,
    refreshes: AtomicU64,
}

/// State that only the holder of the writer lock touches.
struct Writer<M> {
    /// Members taken out of rotation by hand, re-applied at every refresh.
    disabled: Vec<M>,
    /// How `disabled` is matched; set by the first `disable`, which has `M: PartialEq`.
    eq: Option<fn(&M, &M) -> bool>,
}

impl<M> Writer<M> {
    fn is_disabled(&self, m: &M) -> bool {
        self.eq
            .is_some_and(|eq| self.disabled.iter().any(|d| eq(d, m)))
    }
}

/// The old name of [`BalancerStats`].
#[deprecated(
    since = "0.2.0",
    note = "renamed BalancerStats, beside SupervisorStats and PoolStats"
)]
pub type Stats = BalancerStats;

/// A point-in-time view of a balancer's counters, from [`Balancer::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BalancerStats {
    /// Picks made since the balancer was built, refused ones included (the cursor's turns,
    /// less those round-robin picks passed over).
    pub picks: u64,
    /// Members found dead by picks, each counted once.
    pub skipped_dead: u64,
    /// Picks refused with [`PickError::Overloaded`].
    pub overloaded: u64,
    /// Refreshes from the source, by ratio or by [`Balancer::refresh`].
    pub refreshes: u64,
    /// The current snapshot's generation: 0 at build, one more per refresh.
    pub generation: u64,
    /// Members of the current snapshot alive when it was built and not found dead since.
    pub alive: usize,
    /// Members alive when the current snapshot was built.
    pub original: usize,
    /// Members of the current snapshot disabled by hand.
    pub disabled: usize,
    /// Members in the current snapshot, dead and disabled included.
    pub members: usize,
}

impl<M: Member> Balancer<M> {
    /// Starts configuring a balancer. See [`BalancerBuilder`].
    pub fn builder() -> BalancerBuilder<M> {
        BalancerBuilder::new()
    }

    fn from_parts(config: Config, source: Box<dyn Source<M>>) -> Self {
        let first = Snapshot::new(source.members(), 0, |_| false);
        Self {
            shared: Arc::new(Shared {
                cursor: CachePadded::new(Cursor::new()),
                snapshot: ArcSwap::from_pointee(first),
                config,
                source,
                writer: Mutex::new(Writer {
                    disabled: Vec::new(),
                    eq: None,
                }),
                refreshing: SingleFlight::new(),
                counters: CachePadded::new(Counters::default()),
                drain: drain::DrainState::default(),
            }),
        }
    }

    /// Picks a member by the balancer's [`Policy`].
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
    ///   [`max_load`](BalancerBuilder::max_load).
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
        let Ok(turn) = self.shared.cursor.next() else {
            return Err(PickError::Draining);
        };
        // Round robin's fast path: the member whose turn it is can be handed out as it
        // stands, as it nearly always can. It only reads; otherwise the full scan starts from
        // that same member with the same turn and decides as if there were no fast path. It
        // is the only policy code inlined into callers: the rest stays out of line.
        let shared = &*self.shared;
        if shared.config.policy == Policy::RoundRobin {
            let snap = shared.snapshot.load();
            if let Some(i) = policy::round_robin_first(&snap, turn, shared.config.max_load) {
                return Ok(Picked::new(snap, i));
            }
            return self.pick_past_first(snap, turn);
        }
        self.pick_at(turn, true)
    }

    /// Round robin past its fast path: the full scan, in the snapshot the fast path read (a
    /// pick looks at one snapshot from its first look to its answer). Cold and out of line,
    /// which keeps the fast path small where it is inlined.
    #[cold]
    #[inline(never)]
    fn pick_past_first(
        &self,
        snap: arc_swap::Guard<Arc<Snapshot<M>>>,
        turn: usize,
    ) -> Result<Picked<'_, M>, PickError> {
        self.pick_in(snap, turn, true)
    }

    /// A pick that has its turn; `may_retry` allows one more look, with the same turn, at a
    /// snapshot that replaced this one while the pick found nothing but the dead.
    #[inline(never)]
    fn pick_at(&self, turn: usize, may_retry: bool) -> Result<Picked<'_, M>, PickError> {
        self.pick_in(self.shared.snapshot.load(), turn, may_retry)
    }

    /// [`pick_at`](Balancer::pick_at) in a snapshot already read.
    #[inline]
    fn pick_in(
        &self,
        snap: arc_swap::Guard<Arc<Snapshot<M>>>,
        turn: usize,
        may_retry: bool,
    ) -> Result<Picked<'_, M>, PickError> {
        let shared = &*self.shared;
        if shared.config.policy == Policy::PowerOfTwo {
            // Power of two's fast path: both samples usable as they stand; reads only, and
            // the full path below draws the same two samples otherwise.
            let Config { seed, max_load, .. } = shared.config;
            if let Some(i) = policy::power_of_two_first(&snap, turn, seed, max_load) {
                return Ok(Picked::new(snap, i));
            }
        }
        if snap.len() == 0 {
            return Err(PickError::NoMembers);
        }
        let Config {
            policy,
            max_load,
            seed,
            ..
        } = shared.config;
        let mut scan = Scan::default();
        let chosen = match policy {
            Policy::RoundRobin => {
                policy::round_robin(&snap, turn, &shared.cursor, max_load, &mut scan)
            }
            Policy::LeastLoaded => policy::least_loaded(&snap, turn, max_load, &mut scan),
            Policy::PowerOfTwo => policy::power_of_two(&snap, turn, seed, max_load, &mut scan),
        };
        if scan.newly_dead > 0 || scan.extra_turns > 0 {
            return self.after_skips(snap, chosen, &scan, turn, may_retry);
        }
        match chosen {
            Ok(index) => Ok(Picked::new(snap, index)),
            Err(e) => self.found_nothing(snap, e, turn, may_retry),
        }
    }

    /// The slow path of a pick that passed members over: count them, refresh if newly found
    /// deaths crossed the ratio, and if the pick found nothing while a newer snapshot was
    /// stored, look once more there.
    #[cold]
    fn after_skips(
        &self,
        snap: arc_swap::Guard<Arc<Snapshot<M>>>,
        chosen: Result<usize, PickError>,
        scan: &Scan,
        turn: usize,
        may_retry: bool,
    ) -> Result<Picked<'_, M>, PickError> {
        let c = &self.shared.counters;
        if scan.extra_turns > 0 {
            c.extra_turns
                .fetch_add(scan.extra_turns as u64, Ordering::Relaxed);
        }
        if scan.newly_dead > 0 {
            c.skipped_dead
                .fetch_add(scan.newly_dead as u64, Ordering::Relaxed);
            if snap.below_ratio(self.shared.config.min_alive_ratio) {
                self.refresh_by_ratio();
            }
        }
        match chosen {
            Ok(index) => Ok(Picked::new(snap, index)),
            Err(e) => self.found_nothing(snap, e, turn, may_retry),
        }
    }

    /// A pick that found no member in `snap`: if a newer snapshot has been stored meanwhile
    /// (this pick's refresh, or anyone's), look once more there, with the same turn; a pick
    /// that lagged behind a refresh must not answer `NoMembers` while live members exist.
    #[cold]
    fn found_nothing(
        &self,
        snap: arc_swap::Guard<Arc<Snapshot<M>>>,
        e: PickError,
        turn: usize,
        may_retry: bool,
    ) -> Result<Picked<'_, M>, PickError> {
        if e == PickError::NoMembers
            && may_retry
            && self.shared.snapshot.load().generation != snap.generation
        {
            drop(snap);
            return self.pick_at(turn, false);
        }
        Err(self.refused(e))
    }

    fn refused(&self, e: PickError) -> PickError {
        if e == PickError::Overloaded {
            self.shared
                .counters
                .overloaded
                .fetch_add(1, Ordering::Relaxed);
        }
        e
    }

    /// Refreshes if the stored snapshot is below the ratio, unless a refresh is already in
    /// flight (which then looks again on this call's behalf). Returns whether this call
    /// refreshed.
    fn refresh_by_ratio(&self) -> bool {
        let shared = &*self.shared;
        let ratio = shared.config.min_alive_ratio;
        shared.refreshing.refresh(
            || shared.writer.lock(),
            |_| shared.snapshot.load().below_ratio(ratio),
            |writer| {
                self.reload(writer);
            },
        )
    }

    /// Reloads the members from the source now, whatever the ratio, and returns how many of
    /// them are alive.
    ///
    /// Pickers are not held up: they deal from the old snapshot until the new one is stored,
    /// and a pick that begins after `refresh` returns deals only from the new one. Members that
    /// were [disabled](Balancer::disable) stay disabled if the source still returns them.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// use croupier::{Balancer, Member};
    ///
    /// #[derive(Clone)]
    /// struct W;
    /// impl Member for W {
    ///     fn is_alive(&self) -> bool { true }
    /// }
    ///
    /// let size = Arc::new(Mutex::new(2));
    /// let s = Arc::clone(&size);
    /// let b = Balancer::builder()
    ///     .source(move || vec![W; *s.lock().unwrap()])
    ///     .build()?;
    /// assert_eq!(b.members().len(), 2);
    ///
    /// *size.lock().unwrap() = 5;
    /// assert_eq!(b.refresh(), 5);
    /// assert_eq!(b.stats().generation, 1);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn refresh(&self) -> usize {
        let mut writer = self.shared.writer.lock();
        self.reload(&mut writer)
    }

    /// Builds and stores a new snapshot from the source. The caller holds the writer lock.
    fn reload(&self, writer: &mut Writer<M>) -> usize {
        let shared = &*self.shared;
        let members = shared.source.members();
        let generation = shared.snapshot.load().generation + 1;
        let next = Snapshot::new(members, generation, |m| writer.is_disabled(m));
        // Forget disabled members the source no longer returns, so the list cannot grow
        // without bound over restarts.
        if let Some(eq) = writer.eq {
            writer
                .disabled
                .retain(|d| next.slots.iter().any(|s| eq(d, &s.member)));
        }
        let alive = next.original;
        shared.snapshot.store(Arc::new(next));
        shared.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        alive
    }

    /// The members of the current snapshot, in round-robin order, dead and disabled included.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone, Debug, PartialEq)] struct W(u8);
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().source(vec![W(1), W(2)]).build()?;
    /// assert_eq!(b.members(), vec![W(1), W(2)]);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn members(&self) -> Vec<M> {
        self.shared
            .snapshot
            .load()
            .slots
            .iter()
            .map(|s| s.member.clone())
            .collect()
    }

    /// Records that `member` is dead without waiting for a pick to find out, as an Erlang
    /// monitor's `'DOWN'` message would, and refreshes if that crosses the ratio. Returns whether
    /// the member was in the current snapshot and not already known dead.
    ///
    /// The member must also answer `false` from [`is_alive`](Member::is_alive); this only
    /// makes the balancer learn of it sooner.
    pub fn notify_dead(&self, member: &M) -> bool
    where
        M: PartialEq,
    {
        let snap = self.shared.snapshot.load();
        let Some(i) = snap.slots.iter().position(|s| s.member == *member) else {
            return false;
        };
        if !snap.mark_dead(i) {
            return false;
        }
        self.shared
            .counters
            .skipped_dead
            .fetch_add(1, Ordering::Relaxed);
        if snap.below_ratio(self.shared.config.min_alive_ratio) {
            self.refresh_by_ratio();
        }
        true
    }

    /// Takes `member` out of rotation until [`enable`](Balancer::enable): it is not handed
    /// out, though it stays in [`members`](Balancer::members). Members are matched with
    /// [`PartialEq`]. A disabled member stays disabled across refreshes for as long as the
    /// source keeps returning it. Returns whether the member is in the current snapshot.
    ///
    /// Disabling does not count towards the refresh ratio: it is a decision, not a death.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone, Debug, PartialEq)] struct W(u8);
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().source(vec![W(1), W(2)]).build()?;
    /// assert!(b.disable(&W(1)));
    /// assert!((0..4).all(|_| *b.pick().unwrap() == W(2)));
    /// assert!(b.enable(&W(1)));
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn disable(&self, member: &M) -> bool
    where
        M: PartialEq,
    {
        let mut writer = self.shared.writer.lock();
        writer.eq = Some(<M as PartialEq>::eq);
        if !writer.disabled.contains(member) {
            writer.disabled.push(member.clone());
        }
        self.set_disabled(member, true)
    }

    /// Puts a member taken out by [`disable`](Balancer::disable) back into rotation. Returns
    /// whether the member is in the current snapshot.
    pub fn enable(&self, member: &M) -> bool
    where
        M: PartialEq,
    {
        let mut writer = self.shared.writer.lock();
        writer.disabled.retain(|d| d != member);
        self.set_disabled(member, false)
    }

    /// Sets the disabled flag of every slot holding `member`. The caller holds the writer lock,
    /// so no refresh can slip in between this and the writer's list.
    fn set_disabled(&self, member: &M, disabled: bool) -> bool
    where
        M: PartialEq,
    {
        let snap = self.shared.snapshot.load();
        let mut found = false;
        for (i, slot) in snap.slots.iter().enumerate() {
            if slot.member == *member {
                snap.set_disabled(i, disabled);
                found = true;
            }
        }
        found
    }

    /// The balancer's counters and the shape of its current snapshot.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone)] struct W;
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().source(vec![W, W, W]).build()?;
    /// b.pick().unwrap();
    /// let stats = b.stats();
    /// assert_eq!((stats.picks, stats.alive, stats.original), (1, 3, 3));
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn stats(&self) -> BalancerStats {
        let shared = &*self.shared;
        let snap = shared.snapshot.load();
        let c = &shared.counters;
        BalancerStats {
            picks: (shared.cursor.turns() as u64)
                .wrapping_sub(c.extra_turns.load(Ordering::Relaxed)),
            skipped_dead: c.skipped_dead.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            generation: snap.generation,
            alive: snap.alive(),
            original: snap.original,
            disabled: (0..snap.len()).filter(|&i| snap.is_disabled(i)).count(),
            members: snap.len(),
        }
    }

    /// The policy this balancer picks by.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.shared.config.policy
    }
}

/// A balancer that does not keep its members alive: what a supervisor holds to tell it of
/// restarts without a reference cycle.
pub(crate) struct WeakBalancer<M>(std::sync::Weak<Shared<M>>);

impl<M> WeakBalancer<M> {
    pub(crate) fn upgrade(&self) -> Option<Balancer<M>> {
        self.0.upgrade().map(|shared| Balancer { shared })
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl<M> Balancer<M> {
    pub(crate) fn downgrade(&self) -> WeakBalancer<M> {
        WeakBalancer(Arc::downgrade(&self.shared))
    }
}

impl<M> fmt::Debug for Balancer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &*self.shared;
        let snap = shared.snapshot.load();
        f.debug_struct("Balancer")
            .field("policy", &shared.config.policy)
            .field("members", &snap.len())
            .field("generation", &snap.generation)
            .finish_non_exhaustive()
    }
}
