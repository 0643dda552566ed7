//! The penalty of a member's recent failures: what makes one that fails fast stop looking
//! idle to least loaded and power of two (linkerd2-proxy's failure-aware load). A `Pool`
//! keeps one per worker slot, a `Balance` one per member.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::Duration,
};

/// What one failure adds to a penalty, which doubles first: 4, 12, 28, 60, ... up to
/// [`MAX`] for failures in a row.
const STEP: usize = 4;
/// The largest penalty: a member that keeps failing is tried again once it has decayed,
/// about 1.1 s after its last failure.
const MAX: usize = 1024;
/// A penalty halves every this long after the failure that set it.
pub(crate) const HALF_LIFE: Duration = Duration::from_millis(100);

/// A failure penalty in units of load, decaying with time. One writer at a time (a slot's
/// serving incarnation, or a member's responses, which may race: a lost update only shifts
/// the penalty by a step); readers may be anywhere.
#[derive(Debug, Default)]
pub(crate) struct Penalty {
    /// The penalty as of `at`; 0 once a reply was not a failure.
    value: AtomicUsize,
    /// When the last failure was counted, in nanoseconds on the owner's clock.
    at: AtomicU64,
}

impl Penalty {
    /// Whether a penalty is set (decayed or not): the one read a pick makes when none is.
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.value.load(Relaxed) != 0
    }

    /// What is left of the penalty at `now` (nanoseconds on the owner's clock).
    pub(crate) fn at(&self, now: u64) -> usize {
        let value = self.value.load(Relaxed);
        if value == 0 {
            return 0;
        }
        let half_life = u64::try_from(HALF_LIFE.as_nanos()).unwrap_or(u64::MAX);
        let halvings = now.saturating_sub(self.at.load(Relaxed)) / half_life;
        value
            .checked_shr(u32::try_from(halvings).unwrap_or(u32::MAX))
            .unwrap_or(0)
    }

    /// A failure at `now`: the penalty doubles and grows by a step, and decays from now.
    pub(crate) fn failed(&self, now: u64) {
        let next = self
            .value
            .load(Relaxed)
            .saturating_mul(2)
            .saturating_add(STEP)
            .min(MAX);
        self.at.store(now, Relaxed);
        self.value.store(next, Relaxed);
    }

    /// A reply that was not a failure: the penalty is gone.
    #[inline]
    pub(crate) fn succeeded(&self) {
        if self.is_set() {
            self.value.store(0, Relaxed);
        }
    }
}

/// Nanoseconds from `epoch` to now on tokio's clock (so a paused clock times them too), 0
/// before it, saturating: the instants penalties and reports are stamped with.
pub(crate) fn nanos_since(epoch: tokio::time::Instant) -> u64 {
    u64::try_from(
        tokio::time::Instant::now()
            .saturating_duration_since(epoch)
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

/// The failure-aware part of a load, for a [`Member`](crate::Member) of your own: what makes a
/// member that fails fast stop looking idle to least loaded and power of two (linkerd2-proxy's
/// failure-aware load). `Pool`, `Balance` and the remote layer keep one per member already.
///
/// Each failure in a row doubles the penalty and adds 4 (4, 12, 28, … up to 1024 units of
/// load); it halves every 100 ms of tokio's clock after the last failure (so a paused clock
/// times it too), and a success clears it. Add [`value`](FailurePenalty::value) to the
/// member's [`load`](crate::Member::load). Cheap: no clock read while no penalty is set.
///
/// Must be made inside a tokio runtime (it reads tokio's clock).
///
/// # Example
///
/// ```
/// use croupier::FailurePenalty;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let p = FailurePenalty::new();
/// p.failed();
/// p.failed();
/// assert_eq!(p.value(), 12);
/// tokio::time::advance(std::time::Duration::from_millis(100)).await;
/// assert_eq!(p.value(), 6, "halved after 100 ms");
/// p.succeeded();
/// assert_eq!(p.value(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct FailurePenalty {
    penalty: Penalty,
    epoch: tokio::time::Instant,
}

impl Default for FailurePenalty {
    fn default() -> Self {
        Self::new()
    }
}

impl FailurePenalty {
    /// No penalty yet. Reads tokio's clock: call it inside a runtime.
    #[must_use]
    pub fn new() -> Self {
        Self {
            penalty: Penalty::default(),
            epoch: tokio::time::Instant::now(),
        }
    }

    /// Nanoseconds since `new`, on tokio's clock.
    fn now(&self) -> u64 {
        nanos_since(self.epoch)
    }

    /// One more failure in a row.
    pub fn failed(&self) {
        self.penalty.failed(self.now());
    }

    /// A success: the penalty is cleared.
    #[inline]
    pub fn succeeded(&self) {
        self.penalty.succeeded();
    }

    /// What is left of the penalty now, in units of load.
    #[inline]
    #[must_use]
    pub fn value(&self) -> usize {
        if self.penalty.is_set() {
            self.penalty.at(self.now())
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_penalty_grows_with_failures_in_a_row_halves_with_time_and_clears_on_success() {
        let p = Penalty::default();
        assert_eq!(p.at(0), 0);
        p.failed(0);
        assert_eq!(p.at(0), 4);
        assert_eq!(p.at(99 * MS), 4);
        assert_eq!(p.at(100 * MS), 2);
        assert_eq!(p.at(300 * MS), 0);
        for _ in 0..20 {
            p.failed(1_000 * MS);
        }
        assert_eq!(p.at(1_000 * MS), MAX);
        assert_eq!(p.at(1_000 * MS + 1_000 * MS), 1);
        assert_eq!(p.at(1_000 * MS + 1_100 * MS), 0);
        assert_eq!(p.at(u64::MAX), 0);
        p.succeeded();
        assert!(!p.is_set());
        assert_eq!(p.at(1_000 * MS), 0);
    }
}
