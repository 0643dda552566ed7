//! One member service of a [`Balance`](super::Balance), with the load state `Balance` keeps
//! for it: requests in flight, a peak-EWMA of latency, and a cooldown after a failure.

use std::{
    fmt,
    sync::{
        atomic::{
            AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
            Ordering::{Relaxed, SeqCst},
        },
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
// tokio's clock, so that paused time in tests measures what the services' sleeps say.
use tokio::time::Instant;

use crate::{member::Member, penalty::Penalty};

/// How a [`Balance`](super::Balance) measures a member's load.
///
/// Either way, a member whose service answered with an error carries a penalty, counted as
/// requests in flight: each failure in a row doubles it and adds 4 (up to 1024), and it
/// halves every 100 ms of tokio's clock after the last one; a success clears it. So a member
/// that fails fast stops looking idle (linkerd2-proxy's failure-aware load), and is tried
/// again once its penalty has decayed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Load {
    /// Requests in flight: picked and not yet answered (or dropped).
    InFlight,
    /// Requests in flight plus one, times a peak-EWMA of the member's latency: a latency above
    /// the estimate replaces it at once, one below it pulls it down with a time constant of
    /// `decay` (Finagle's and tower's peak EWMA). A member not yet measured counts as
    /// `default_rtt`.
    PeakEwma {
        /// The time constant over which lower latencies pull the estimate down.
        decay: Duration,
        /// The estimate before the first response.
        default_rtt: Duration,
    },
}

impl Load {
    /// A peak EWMA with a decay of 10 s and a first estimate of 30 ms.
    #[must_use]
    pub fn peak_ewma() -> Self {
        Self::PeakEwma {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

/// What the members of one `Balance` share: the clock their cooldowns count from, and how
/// many of them are out of rotation (so that a request looks for members to readmit only
/// when there are some).
#[derive(Debug)]
pub(crate) struct Common {
    epoch: Instant,
    /// Members out of rotation: one more for each that goes out, one less for each that comes
    /// back or is dropped while out. Never less than the truth.
    ejected: AtomicUsize,
}

impl Common {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            ejected: AtomicUsize::new(0),
        })
    }

    /// Nanoseconds since the balance was made, on tokio's clock.
    fn now(&self) -> u64 {
        crate::penalty::nanos_since(self.epoch)
    }

    /// Whether any member may be out of rotation.
    pub(crate) fn any_out(&self) -> bool {
        self.ejected.load(Relaxed) != 0
    }
}

/// What `Balance` knows of one member, kept by key across membership changes.
pub(crate) struct State {
    pub(crate) in_flight: AtomicUsize,
    /// The latency estimate in nanoseconds, mirrored for lock-free reads by `load`.
    estimate_ns: AtomicU64,
    /// The estimate and when it was last updated; written on responses only.
    ewma: Mutex<(f64, Instant)>,
    /// Out of rotation until this many ns after `epoch` (0: in rotation).
    out_until_ns: AtomicU64,
    /// The penalty of the member's recent failed responses, in ns after `epoch`.
    penalty: Penalty,
    /// The member's weight, read when the balancer builds a snapshot.
    weight: AtomicU32,
    /// Its key was removed while requests to it were in flight: the last of them to end
    /// forgets the state. Written under the lock of the balance's map of states.
    removed: AtomicBool,
    common: Arc<Common>,
}

impl State {
    pub(crate) fn new(load: Load, common: &Arc<Common>) -> Arc<Self> {
        let rtt = match load {
            Load::InFlight => 0.0,
            Load::PeakEwma { default_rtt, .. } => default_rtt.as_nanos() as f64,
        };
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            estimate_ns: AtomicU64::new(rtt as u64),
            ewma: Mutex::new((rtt, Instant::now())),
            out_until_ns: AtomicU64::new(0),
            penalty: Penalty::default(),
            weight: AtomicU32::new(1),
            removed: AtomicBool::new(false),
            common: Arc::clone(common),
        })
    }

    /// Marks the member's key as removed; whether no request is in flight, so that the
    /// caller forgets the state now (otherwise the last request to end does, see
    /// [`end_request`](Self::end_request)). Called with the map of states locked.
    pub(crate) fn mark_removed(&self) -> bool {
        // SeqCst, here and on the load below, with `end_request`'s decrement and its load of
        // the flag: of a removal and the end of the last request, at least one sees the
        // other (the flag set, or no request left), so the state is never kept for ever.
        self.removed.store(true, SeqCst);
        self.in_flight.load(SeqCst) == 0
    }

    /// The member's key is back (inserted again, or the source lists it again): its state
    /// stays. Called with the map of states locked.
    pub(crate) fn restore(&self) {
        self.removed.store(false, Relaxed);
    }

    /// Whether the member's key is removed and no request to it is in flight: its state can
    /// be forgotten. Called with the map of states locked, which orders it after any
    /// `mark_removed` or `restore`.
    pub(crate) fn is_forgettable(&self) -> bool {
        self.removed.load(Relaxed) && self.in_flight.load(Relaxed) == 0
    }

    /// Counts a request's end; true when it was the last in flight for a member whose key
    /// was removed, so that the caller forgets the state (checking again under the lock).
    pub(crate) fn end_request(&self) -> bool {
        // SeqCst: see `mark_removed`.
        self.in_flight.fetch_sub(1, SeqCst) == 1 && self.removed.load(SeqCst)
    }

    /// Records a response's latency in the peak EWMA.
    pub(crate) fn observe(&self, rtt: Duration, decay: Duration) {
        let rtt = rtt.as_nanos() as f64;
        let mut ewma = self.ewma.lock();
        let now = Instant::now();
        let (estimate, at) = *ewma;
        let next = if rtt > estimate {
            rtt
        } else {
            let elapsed = now.saturating_duration_since(at).as_nanos() as f64;
            let w = (-elapsed / decay.as_nanos().max(1) as f64).exp();
            estimate * w + rtt * (1.0 - w)
        };
        *ewma = (next, now);
        self.estimate_ns.store(next as u64, Relaxed);
    }

    /// Counts a response: a failure weighs on the member's load for a while, a success
    /// clears that.
    pub(crate) fn responded(&self, ok: bool) {
        if ok {
            self.penalty.succeeded();
        } else {
            self.penalty.failed(self.common.now());
        }
    }

    /// What is left of the failure penalty: 0 without a clock read when none is set.
    #[inline]
    fn penalty(&self) -> usize {
        if self.penalty.is_set() {
            self.penalty.at(self.common.now())
        } else {
            0
        }
    }

    /// Takes the member out of rotation for `cooldown`; `Duration::MAX` (or anything past
    /// 584 years from the balance's start) means for ever.
    pub(crate) fn eject(&self, cooldown: Duration) {
        let until = self.common.epoch.elapsed().saturating_add(cooldown);
        let ns = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX).max(1);
        if self.out_until_ns.swap(ns, Relaxed) == 0 {
            self.common.ejected.fetch_add(1, Relaxed);
        }
    }

    /// Puts the member back if its cooldown is over; whether it was out and came back.
    pub(crate) fn readmit_if_due(&self) -> bool {
        let until = self.out_until_ns.load(Relaxed);
        if until == 0 {
            return false;
        }
        let now = u64::try_from(self.common.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let back = now >= until
            && self
                .out_until_ns
                .compare_exchange(until, 0, Relaxed, Relaxed)
                .is_ok();
        if back {
            self.common.ejected.fetch_sub(1, Relaxed);
        }
        back
    }

    /// The weight the next snapshot gives the member.
    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// Sets the weight; it takes effect at the balancer's next refresh.
    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Relaxed);
    }

    pub(crate) fn is_out(&self) -> bool {
        self.out_until_ns.load(Relaxed) != 0
    }
}

/// A member service as the balancer holds it: equal by key.
pub(crate) struct Endpoint<K, S> {
    pub(crate) key: K,
    pub(crate) service: S,
    pub(crate) state: Arc<State>,
    pub(crate) load: Load,
}

impl<K: Clone, S: Clone> Clone for Endpoint<K, S> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            service: self.service.clone(),
            state: Arc::clone(&self.state),
            load: self.load,
        }
    }
}

impl<K: PartialEq, S> PartialEq for Endpoint<K, S> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Drop for State {
    /// A member forgotten while out of rotation is no longer waited for.
    fn drop(&mut self) {
        if *self.out_until_ns.get_mut() != 0 {
            self.common.ejected.fetch_sub(1, Relaxed);
        }
    }
}

impl<K, S> Member for Endpoint<K, S>
where
    K: Clone + PartialEq + std::hash::Hash + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    fn is_alive(&self) -> bool {
        !self.state.is_out()
    }

    /// As set by [`Balance::set_weight`](super::Balance::set_weight) and the weighted
    /// constructors; 1 by default.
    fn weight(&self) -> u32 {
        self.state.weight()
    }

    /// The key: a request key stays with a member's key across membership changes.
    fn affinity_key(&self) -> Option<u64> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        Some(
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one(&self.key),
        )
    }

    /// In flight, or in flight plus one times the latency estimate in microseconds; either
    /// way with what is left of the penalty of recent failed responses added to the requests
    /// in flight (see [`Load`]).
    fn load(&self) -> usize {
        let in_flight = self
            .state
            .in_flight
            .load(Relaxed)
            .saturating_add(self.state.penalty());
        match self.load {
            Load::InFlight => in_flight,
            Load::PeakEwma { .. } => {
                let us = self.state.estimate_ns.load(Relaxed) / 1000;
                usize::try_from(us.max(1))
                    .unwrap_or(usize::MAX)
                    .saturating_mul(in_flight.saturating_add(1))
            }
        }
    }
}

impl<K: fmt::Debug, S> fmt::Debug for Endpoint<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.key)
            .field("in_flight", &self.state.in_flight.load(Relaxed))
            .field("out", &self.state.is_out())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_count_of_members_out_follows_ejections_readmissions_and_drops() {
        let common = Common::new();
        let (a, b) = (
            State::new(Load::InFlight, &common),
            State::new(Load::InFlight, &common),
        );
        assert!(!common.any_out());
        a.eject(Duration::from_secs(1));
        a.eject(Duration::from_secs(2)); // still one member out
        b.eject(Duration::from_secs(1));
        assert_eq!(common.ejected.load(Relaxed), 2);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(b.readmit_if_due());
        assert!(!a.readmit_if_due(), "a's second cooldown runs to 2 s");
        assert_eq!(common.ejected.load(Relaxed), 1);
        drop(a);
        assert!(
            !common.any_out(),
            "a member dropped while out is not waited for"
        );
        drop(b);
        assert!(!common.any_out());
    }
}
