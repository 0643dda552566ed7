//! What a serving node serves from: its handlers, its pool, its health, and what its load
//! reports say.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

use parking_lot::Mutex;
use tokio::time::Instant;
use tonic_health::{server::HealthReporter, ServingStatus};

use super::jobs::HandlerWorker;
use crate::{
    member::Member,
    pool::Pool,
    remote::{
        common::Common,
        handler::Registry,
        identity::MAX_MASTERS_KEPT,
        proto::xds::data::orca::v3::OrcaLoadReport,
        wire::{metric, SERVICE_NAME},
    },
};

/// The worker side of a node: what its gRPC service, its load reports and its health read.
pub(crate) struct Served {
    pub(crate) common: Arc<Common>,
    pub(crate) registry: Registry,
    pub(crate) pool: Option<Pool<HandlerWorker>>,
    /// grpc.health.v1 statuses.
    pub(crate) health: HealthReporter,
    /// Calls this node's pool has answered (for the rate in ORCA reports).
    pub(crate) completed: AtomicU64,
    /// Calls this node has accepted and not answered yet.
    pub(crate) accepted: AtomicU64,
    /// The masters that said hello to this node, by name, the latest last; at most
    /// [`MAX_MASTERS_KEPT`].
    pub(crate) masters: Mutex<VecDeque<String>>,
}

/// What a report carries of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) run_queue: u64,
    pub(crate) pool_size: u32,
    pub(crate) draining: bool,
}

/// Counts a call among those accepted while it lives.
pub(crate) struct Accepted<'a>(&'a AtomicU64);

impl<'a> Accepted<'a> {
    pub(crate) fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Relaxed);
        Self(count)
    }
}

impl Drop for Accepted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Served {
    /// Remembers a master that said hello, forgetting the one heard from longest ago when
    /// [`MAX_MASTERS_KEPT`] are known.
    pub(crate) fn greeted_by(&self, name: &str) {
        let mut masters = self.masters.lock();
        if let Some(at) = masters.iter().position(|m| m == name) {
            masters.remove(at);
        } else if masters.len() >= MAX_MASTERS_KEPT {
            masters.pop_front();
        }
        masters.push_back(name.to_owned());
    }

    /// Sets the health of the node and of croupier's service.
    pub(crate) async fn set_health(&self, status: ServingStatus) {
        self.health.set_service_status("", status).await;
        self.health.set_service_status(SERVICE_NAME, status).await;
    }

    /// The pool's run queue (jobs queued or running), its size, and whether it drains.
    pub(crate) fn load(&self) -> Load {
        let Some(pool) = &self.pool else {
            return Load {
                run_queue: 0,
                pool_size: 0,
                draining: false,
            };
        };
        let queued: usize = pool.balancer().members().iter().map(Member::load).sum();
        // Every call accepted and not answered: those the pool holds, and those still on
        // their way to a worker.
        let run_queue = (queued as u64).max(self.accepted.load(Relaxed));
        Load {
            run_queue,
            pool_size: self.pool_size(),
            draining: pool.balancer().is_draining(),
        }
    }

    pub(crate) fn pool_size(&self) -> u32 {
        self.pool.as_ref().map_or(0, |p| {
            u32::try_from(p.supervisor().size()).unwrap_or(u32::MAX)
        })
    }

    /// An ORCA report of `load`: the run queue and pool size as named metrics, the queue per
    /// worker (at most 1) as application utilisation, and the calls completed per second since
    /// the last report (for gRFC A58's weighted round robin).
    pub(crate) fn report(
        &self,
        load: Load,
        completed: u64,
        last: Option<&(Instant, Load, u64)>,
        now: Instant,
    ) -> OrcaLoadReport {
        let per_worker = load.run_queue as f64 / f64::from(load.pool_size.max(1));
        let rps = last.map_or(0.0, |(at, _, before)| {
            let secs = (now - *at).as_secs_f64();
            if secs > 0.0 {
                completed.saturating_sub(*before) as f64 / secs
            } else {
                0.0
            }
        });
        OrcaLoadReport {
            application_utilization: per_worker.min(1.0),
            rps_fractional: rps,
            named_metrics: HashMap::from([
                (metric::RUN_QUEUE.to_owned(), load.run_queue as f64),
                (metric::POOL_SIZE.to_owned(), f64::from(load.pool_size)),
                (
                    metric::DRAINING.to_owned(),
                    f64::from(u8::from(load.draining)),
                ),
            ]),
            ..OrcaLoadReport::default()
        }
    }
}
