//! The lock-free [`Balancer`]: its shared state here, the pick path in `pick.rs`, membership
//! (refresh, disable, notices of death) in `membership.rs`, counters in `stats.rs`, drains in
//! `drain.rs`, outlier ejection in `ejection.rs`, and each balancer's refresher (a task on
//! the runtime it was built on, or a thread of its own), which runs ratio-triggered refreshes
//! and re-admissions, in `refresher.rs`.

mod builder;
mod drain;
mod ejection;
mod membership;
mod pick;
mod picked;
mod refresher;
mod slow_start;
pub(crate) mod state;
mod stats;

use std::{
    borrow::Cow,
    fmt,
    sync::{atomic::AtomicBool, Arc, Weak},
};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

#[allow(deprecated)]
pub use self::stats::Stats;
pub use self::{
    builder::BalancerBuilder,
    drain::{DrainError, EachFn, Wait},
    ejection::{Ejection, Outcome, Ticket},
    picked::Picked,
    slow_start::SlowStart,
    stats::BalancerStats,
};
use self::{
    membership::Writer,
    refresher::Refresher,
    state::{Cursor, SingleFlight},
    stats::Counters,
};
use crate::{
    member::{Member, Source},
    policy::{Policy, Rule},
    snapshot::Snapshot,
    telemetry::BalancerMeter,
};

/// Hands out members of a set, lock-free: in turn, to the least loaded, or to the lighter of two.
///
/// A `Balancer` is a cheap handle (an [`Arc`] inside): clone it into every thread or task that
/// picks. [`pick`](Balancer::pick) reads one snapshot of the members through an
/// [`ArcSwap`], makes one relaxed `fetch_add` on its thread's stripe of a striped cursor (so
/// that pickers on different cores write different cache lines), takes no lock, makes no
/// heap allocation and no system call (but the one wake described below). Everything else
/// (refresh, disable, enable) happens on slow paths that never make pickers wait.
///
/// # Liveness and refresh
///
/// A member whose [`is_alive`](Member::is_alive) is false is never handed out. The first pick to
/// find it dead counts it; once the live members fall below
/// [`min_alive_ratio`](BalancerBuilder::min_alive_ratio) of those alive at the last refresh
/// (ballermann's rule, default `0.8`), that pick asks the balancer's refresher to reload the
/// members from the [`Source`], and returns at once from the snapshot it already holds: it
/// takes no lock, allocates nothing and does not run the source. Each balancer has its own
/// refresher: a task on the tokio runtime it was built on (which runs the source on the
/// blocking pool), or, built outside a runtime, a `croupier-refresh` thread of its own. Waking
/// it takes no lock of croupier's and allocates nothing: for a thread, one `futex` wake, the
/// only system call a pick can make; for a task, tokio's scheduling of it (see
/// [`docs::design`](crate::docs::design)). Only one refresh runs at a time; pickers keep dealing from the old snapshot
/// meanwhile and never wait for it. The members alive in the new snapshot become the new
/// original size. [`is_refreshing`](Balancer::is_refreshing) says whether a refresh asked
/// for has not landed yet.
///
/// A pick that finds no live member answers [`PickError::NoMembers`](crate::PickError::NoMembers) at once, even when the
/// refresh it asked for is about to find some: retry once it has landed.
///
/// A source that returns no member leaves the balancer answering [`PickError::NoMembers`](crate::PickError::NoMembers); it
/// is asked again on the next [`refresh`](Balancer::refresh), never in a loop. A source that
/// blocks delays its own balancer's background refreshes, and no other balancer's.
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
    /// The only value every pick writes, striped (each stripe's lowest bit is the drain flag):
    /// every stripe on a cache line of its own, so that threads picking on different stripes
    /// write different lines, and none evicts the snapshot pointer that every pick reads.
    cursor: Cursor,
    snapshot: ArcSwap<Snapshot<M>>,
    /// What the policies decide by.
    rule: Rule,
    /// The order in which stripes first picked from this balancer: what its policies mix in
    /// where they tell threads apart, so that a seeded balancer picked from one thread makes
    /// the same choices whichever stripe the thread has.
    ranks: pick::Ranks,
    min_alive_ratio: f64,
    /// Outlier ejection's settings, if it is on.
    ejection: Option<Ejection>,
    /// Slow start's settings, if it is on.
    slow_start: Option<SlowStart>,
    /// Whether two members are the same one for ejection (by affinity key, else equality):
    /// set by the first failure reported, for the refreshes to carry counts over with.
    same: std::sync::OnceLock<fn(&M, &M) -> bool>,
    source: Box<dyn Source<M>>,
    /// Serialises refreshes and disable/enable. Held on slow paths only.
    writer: Mutex<Writer<M>>,
    /// Single flight for ratio-triggered refreshes.
    refreshing: SingleFlight,
    /// This balancer's refresher, which flies the flights its pickers hand off and re-admits
    /// ejected members on time, by its clock.
    refresher: Refresher,
    counters: CachePadded<Counters>,
    drain: drain::DrainState,
    /// What the metrics recorder hears (nothing without the `metrics` feature).
    meter: BalancerMeter,
    /// Set by the first [`pick_for`](Balancer::pick_for): from then on every snapshot builds
    /// its affinity table when it is built, not at a pick.
    affinity_used: AtomicBool,
}

/// A balancer's settings, checked by the builder.
#[derive(Debug, Clone)]
struct Config {
    rule: Rule,
    min_alive_ratio: f64,
    name: Option<Cow<'static, str>>,
    ejection: Option<Ejection>,
    slow_start: Option<SlowStart>,
}

impl<M: Member> Balancer<M> {
    /// Starts configuring a balancer. See [`BalancerBuilder`].
    pub fn builder() -> BalancerBuilder<M> {
        BalancerBuilder::new()
    }

    fn from_parts(
        config: Config,
        source: Box<dyn Source<M>>,
        same: Option<fn(&M, &M) -> bool>,
    ) -> Self {
        let first = Snapshot::new(source.members(), 0, |_| 0);
        let shared = Arc::new(Shared {
            cursor: Cursor::new(),
            snapshot: ArcSwap::from_pointee(first),
            rule: config.rule,
            ranks: pick::Ranks::new(),
            min_alive_ratio: config.min_alive_ratio,
            ejection: config.ejection,
            slow_start: config.slow_start,
            same: same.map(std::sync::OnceLock::from).unwrap_or_default(),
            source,
            writer: Mutex::new(Writer::new()),
            refreshing: SingleFlight::new(),
            refresher: Refresher::new(),
            counters: CachePadded::new(Counters::default()),
            drain: drain::DrainState::default(),
            meter: BalancerMeter::new(config.name),
            affinity_used: AtomicBool::new(false),
        });
        shared.publish();
        let weak: Weak<Shared<M>> = Arc::downgrade(&shared);
        shared.refresher.start(weak);
        Self { shared }
    }

    /// The balancer's [name](BalancerBuilder::name), `"unnamed"` if none was set.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone)] struct W;
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().name("frontends").source(vec![W]).build()?;
    /// assert_eq!(b.name(), "frontends");
    /// let unnamed = Balancer::builder().source(vec![W]).build()?;
    /// assert_eq!(unnamed.name(), "unnamed");
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        self.shared.meter.name()
    }

    /// The policy this balancer picks by.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.shared.rule.policy
    }
}

/// A balancer that does not keep its members alive: what a supervisor holds to tell it of
/// restarts without a reference cycle.
pub(crate) struct WeakBalancer<M>(Weak<Shared<M>>);

impl<M> WeakBalancer<M> {
    pub(crate) fn upgrade(&self) -> Option<Balancer<M>> {
        self.0.upgrade().map(|shared| Balancer { shared })
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
            .field("policy", &shared.rule.policy)
            .field("members", &snap.len())
            .field("generation", &snap.generation)
            .finish_non_exhaustive()
    }
}
