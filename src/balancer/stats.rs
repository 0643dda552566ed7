//! A balancer's counters, and the view of them [`Balancer::stats`] gives.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Balancer, Shared};
use crate::member::Member;

/// Slow-path counters: written on deaths, refusals and refreshes, never on a plain pick.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) skipped_dead: AtomicU64,
    /// Turns round-robin picks passed over on the cursor beyond their own.
    pub(super) extra_turns: AtomicU64,
    pub(super) overloaded: AtomicU64,
    pub(super) refreshes: AtomicU64,
    pub(super) ejections: AtomicU64,
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
    /// Picks made since the balancer was built, refused ones included (the turns of all the
    /// cursor's stripes, less those round-robin picks passed over).
    pub picks: u64,
    /// Members found dead by picks, each counted once.
    pub skipped_dead: u64,
    /// Picks refused with [`PickError::Overloaded`](crate::PickError::Overloaded).
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
    /// Members of the current snapshot out of rotation for their failures
    /// ([outlier ejection](crate::BalancerBuilder::outlier_ejection)).
    pub ejected: usize,
    /// Ejections since the balancer was built.
    pub ejections: u64,
    /// Members in the current snapshot, dead and disabled included.
    pub members: usize,
}

impl<M: Member> Balancer<M> {
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
        shared.publish();
        BalancerStats {
            picks: shared.picks(),
            skipped_dead: c.skipped_dead.load(Relaxed),
            overloaded: c.overloaded.load(Relaxed),
            refreshes: c.refreshes.load(Relaxed),
            generation: snap.generation,
            alive: snap.alive(),
            original: snap.original,
            disabled: (0..snap.len()).filter(|&i| snap.is_disabled(i)).count(),
            ejected: (0..snap.len())
                .filter(|&i| snap.has_flag(i, crate::snapshot::EJECTED))
                .count(),
            ejections: c.ejections.load(Relaxed),
            members: snap.len(),
        }
    }
}

impl<M: Member> Balancer<M> {
    /// Sends the balancer's pick count, live members and load total to the `metrics`
    /// recorder now (with the `metrics` feature; without it, does nothing).
    ///
    /// Picks are counted by the cursor every pick moves anyway, not by a counter of their
    /// own, so the hot path writes nothing more for metrics. They reach the recorder, with
    /// the gauges, whenever something else is recorded (a refresh, a death found, the end of
    /// a drain), on [`stats`](Balancer::stats), and here: call it before a scrape, or from an
    /// interval, to keep `croupier_picks_total` current. See [the table](crate::docs::metrics).
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone)] struct W;
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().name("frontends").source(vec![W, W]).build()?;
    /// b.pick().unwrap();
    /// b.publish_metrics(); // croupier_picks_total{name="frontends"} is 1
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn publish_metrics(&self) {
        self.shared.publish();
    }
}

impl<M: Member> Shared<M> {
    /// Picks made so far: the turns of all the cursor's stripes, less the round-robin turns
    /// passed over.
    pub(super) fn picks(&self) -> u64 {
        (self.cursor.turns() as u64).wrapping_sub(self.counters.extra_turns.load(Relaxed))
    }

    /// Publishes picks, live members and the live members' load total.
    pub(super) fn publish(&self) {
        if !crate::telemetry::ENABLED {
            return;
        }
        let snap = self.snapshot.load();
        let (mut live, mut load) = (0, 0_usize);
        for i in 0..snap.len() {
            if let Ok(l) = snap.usable::<true>(i, usize::MAX) {
                live += 1;
                load = load.saturating_add(l);
            }
        }
        self.meter.publish(self.picks(), live, load);
    }
}
