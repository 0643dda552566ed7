//! What croupier tells the [`metrics`](https://docs.rs/metrics) facade, with the `metrics`
//! feature: a [`Meter`] per balancer and per supervisor, holding the handles it registered
//! when it was built. Without the feature a `Meter` is empty and every method does nothing.
//!
//! Nothing here runs on a plain pick: picks are counted by the balancer's cursor and reach the
//! recorder as a difference since the last publication (see [`Meter::publish`]). Gauges are
//! published as differences too, so that balancers sharing a name add up instead of
//! overwriting each other, and a dropped balancer takes its share back.

use std::{borrow::Cow, time::Duration};

/// Whether metrics are recorded at all (the `metrics` feature).
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

/// The name a balancer, supervisor or pool carries in the `name` label when none was set.
pub(crate) const UNNAMED: &str = "unnamed";

/// Why a pick was refused, as the `kind` label of `croupier_refusals_total` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoMembers,
    Overloaded,
    Draining,
}

#[cfg(feature = "metrics")]
mod on {
    use std::sync::atomic::AtomicU64;

    use metrics::{Counter, Gauge, Histogram};
    use parking_lot::Mutex;

    /// What a balancer has published of its gauges and its pick count, so that the next
    /// publication sends only the difference.
    #[derive(Debug, Default)]
    pub(super) struct Published {
        pub(super) live: f64,
        pub(super) run_queue: f64,
    }

    #[derive(Debug)]
    pub(super) struct Balancer {
        pub(super) picks: Counter,
        pub(super) picks_published: AtomicU64,
        pub(super) no_members: Counter,
        pub(super) overloaded: Counter,
        pub(super) draining: Counter,
        pub(super) refreshes: Counter,
        pub(super) dead: Counter,
        pub(super) live: Gauge,
        pub(super) run_queue: Gauge,
        pub(super) drain: Histogram,
        pub(super) ejections: Counter,
        pub(super) readmissions: Counter,
        pub(super) published: Mutex<Published>,
    }

    #[derive(Debug)]
    pub(super) struct Supervisor {
        pub(super) restarts: Counter,
        pub(super) deaths: Counter,
        pub(super) dropped: Counter,
    }
}

/// A balancer's handles on the recorder.
#[derive(Debug)]
pub(crate) struct BalancerMeter {
    name: Cow<'static, str>,
    #[cfg(feature = "metrics")]
    on: on::Balancer,
}

impl BalancerMeter {
    /// Registers the balancer's metrics with the recorder installed now.
    pub(crate) fn new(name: Option<Cow<'static, str>>) -> Self {
        let name = name.unwrap_or(Cow::Borrowed(UNNAMED));
        #[cfg(feature = "metrics")]
        let on = {
            let label = name.clone().into_owned();
            let refusal = |kind: &'static str| metrics::counter!("croupier_refusals_total", "name" => label.clone(), "kind" => kind);
            on::Balancer {
                picks: metrics::counter!("croupier_picks_total", "name" => label.clone()),
                picks_published: Default::default(),
                no_members: refusal("no_members"),
                overloaded: refusal("overloaded"),
                draining: refusal("draining"),
                refreshes: metrics::counter!("croupier_refreshes_total", "name" => label.clone()),
                dead: metrics::counter!("croupier_dead_found_total", "name" => label.clone()),
                live: metrics::gauge!("croupier_live_members", "name" => label.clone()),
                run_queue: metrics::gauge!("croupier_run_queue", "name" => label.clone()),
                drain: metrics::histogram!("croupier_drain_seconds", "name" => label.clone()),
                ejections: metrics::counter!("croupier_ejections_total", "name" => label.clone()),
                readmissions: metrics::counter!("croupier_readmissions_total", "name" => label),
                published: Default::default(),
            }
        };
        Self {
            name,
            #[cfg(feature = "metrics")]
            on,
        }
    }

    /// The name in the `name` label.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A pick refused.
    #[cold]
    pub(crate) fn refused(&self, why: Refusal) {
        #[cfg(feature = "metrics")]
        match why {
            Refusal::NoMembers => self.on.no_members.increment(1),
            Refusal::Overloaded => self.on.overloaded.increment(1),
            Refusal::Draining => self.on.draining.increment(1),
        }
        #[cfg(not(feature = "metrics"))]
        let _ = why;
    }

    /// A refresh from the source.
    pub(crate) fn refreshed(&self) {
        #[cfg(feature = "metrics")]
        self.on.refreshes.increment(1);
    }

    /// `n` members found dead by picks or by a notice of death.
    pub(crate) fn found_dead(&self, n: u64) {
        #[cfg(feature = "metrics")]
        self.on.dead.increment(n);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// A member ejected for its failures.
    pub(crate) fn ejected(&self) {
        #[cfg(feature = "metrics")]
        self.on.ejections.increment(1);
    }

    /// An ejected member back in rotation.
    pub(crate) fn readmitted(&self) {
        #[cfg(feature = "metrics")]
        self.on.readmissions.increment(1);
    }

    /// A drain (`apply_within`) that lasted `d`, from the stop of dealing to its resumption.
    pub(crate) fn drained(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        self.on.drain.record(d.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = d;
    }

    /// Sends what changed since the last publication: picks (`picks` so far, from the
    /// cursor), live members and the total of their loads (a pool's run-queue total).
    pub(crate) fn publish(&self, picks: u64, live: usize, run_queue: usize) {
        #[cfg(feature = "metrics")]
        {
            let before = self
                .on
                .picks_published
                .fetch_max(picks, std::sync::atomic::Ordering::Relaxed);
            if picks > before {
                self.on.picks.increment(picks - before);
            }
            let mut published = self.on.published.lock();
            let live = live as f64;
            self.on.live.increment(live - published.live);
            published.live = live;
            let queue = run_queue as f64;
            self.on.run_queue.increment(queue - published.run_queue);
            published.run_queue = queue;
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (picks, live, run_queue);
    }
}

#[cfg(feature = "metrics")]
impl Drop for BalancerMeter {
    /// A balancer that goes takes its share of the gauges with it.
    fn drop(&mut self) {
        let published = self.on.published.get_mut();
        self.on.live.decrement(published.live);
        self.on.run_queue.decrement(published.run_queue);
    }
}

/// A supervisor's handles on the recorder.
#[derive(Debug)]
pub(crate) struct SupervisorMeter {
    #[cfg(feature = "metrics")]
    on: on::Supervisor,
}

impl SupervisorMeter {
    /// Registers the supervisor's metrics with the recorder installed now.
    pub(crate) fn new(name: Option<Cow<'static, str>>) -> Self {
        #[cfg(feature = "metrics")]
        {
            let label = name.unwrap_or(Cow::Borrowed(UNNAMED)).into_owned();
            Self {
                on: on::Supervisor {
                    restarts: metrics::counter!("croupier_restarts_total", "name" => label.clone()),
                    deaths: metrics::counter!("croupier_deaths_total", "name" => label.clone()),
                    dropped: metrics::counter!("croupier_dropped_total", "name" => label),
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = name;
            Self {}
        }
    }

    /// A worker restarted.
    pub(crate) fn restarted(&self) {
        #[cfg(feature = "metrics")]
        self.on.restarts.increment(1);
    }

    /// A worker's incarnation ended by a crash.
    pub(crate) fn died(&self) {
        #[cfg(feature = "metrics")]
        self.on.deaths.increment(1);
    }

    /// `n` messages dropped without an answer.
    pub(crate) fn dropped(&self, n: u64) {
        #[cfg(feature = "metrics")]
        self.on.dropped.increment(n);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }
}
