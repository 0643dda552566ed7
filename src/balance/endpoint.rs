//! One member service of a [`Balance`](super::Balance), with the load state `Balance` keeps
//! for it: requests in flight, a peak-EWMA of latency, and a cooldown after a failure.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
// tokio's clock, so that paused time in tests measures what the services' sleeps say.
use tokio::time::Instant;

use crate::member::Member;

/// How a [`Balance`](super::Balance) measures a member's load.
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

/// What `Balance` knows of one member, kept by key across membership changes.
pub(crate) struct State {
    pub(crate) in_flight: AtomicUsize,
    /// The latency estimate in nanoseconds, mirrored for lock-free reads by `load`.
    estimate_ns: AtomicU64,
    /// The estimate and when it was last updated; written on responses only.
    ewma: Mutex<(f64, Instant)>,
    /// Out of rotation until this many ns after `epoch` (0: in rotation).
    out_until_ns: AtomicU64,
    epoch: Instant,
}

impl State {
    pub(crate) fn new(load: Load, epoch: Instant) -> Arc<Self> {
        let rtt = match load {
            Load::InFlight => 0.0,
            Load::PeakEwma { default_rtt, .. } => default_rtt.as_nanos() as f64,
        };
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            estimate_ns: AtomicU64::new(rtt as u64),
            ewma: Mutex::new((rtt, Instant::now())),
            out_until_ns: AtomicU64::new(0),
            epoch,
        })
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

    /// Takes the member out of rotation for `cooldown`.
    pub(crate) fn eject(&self, cooldown: Duration) {
        let until = self.epoch.elapsed() + cooldown;
        let ns = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.out_until_ns.store(ns, Relaxed);
    }

    /// Puts the member back if its cooldown is over; whether it was out and came back.
    pub(crate) fn readmit_if_due(&self) -> bool {
        let until = self.out_until_ns.load(Relaxed);
        if until == 0 {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now >= until
            && self
                .out_until_ns
                .compare_exchange(until, 0, Relaxed, Relaxed)
                .is_ok()
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

impl<K, S> Member for Endpoint<K, S>
where
    K: Clone + PartialEq + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    fn is_alive(&self) -> bool {
        !self.state.is_out()
    }

    /// In flight, or in flight plus one times the latency estimate in microseconds.
    fn load(&self) -> usize {
        let in_flight = self.state.in_flight.load(Relaxed);
        match self.load {
            Load::InFlight => in_flight,
            Load::PeakEwma { .. } => {
                let us = self.state.estimate_ns.load(Relaxed) / 1000;
                usize::try_from(us.max(1))
                    .unwrap_or(usize::MAX)
                    .saturating_mul(in_flight + 1)
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
