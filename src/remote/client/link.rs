//! One remote worker node's state as a master keeps it across reconnections: its liveness,
//! its load reports, and the connection its calls go on.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Request, Status, Streaming};

use super::handshake::status_chain;
use crate::{
    penalty::FailurePenalty,
    remote::{
        auth,
        config::NodeConfig,
        identity::{Local, Mode, NodeId},
        logs,
        proto::{
            croupier::v1::{croupier_client::CroupierClient, HelloReply, LogRecord, LogsRequest},
            xds::data::orca::v3::OrcaLoadReport,
        },
        wire::{metric, mode_from_wire},
    },
};

/// One remote node's state; kept across reconnections.
pub(crate) struct Link {
    pub(crate) id: NodeId,
    pub(super) addr: Mutex<SocketAddr>,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) pool_size: u32,
    /// Connected and reporting. Relaxed: a liveness flag; calls go through `current`.
    pub(super) up: AtomicBool,
    /// Its last report said it drains.
    pub(super) draining: AtomicBool,
    /// Last reported load, in thousandths per pool worker.
    pub(super) reported: AtomicU64,
    /// This master's calls to it that have not ended yet (waiting for a permit included).
    pub(super) calls: AtomicU64,
    /// The last report's run queue less this master's calls then, in thousandths per pool
    /// worker: what others had queued there.
    pub(super) others: AtomicU64,
    /// The jobs per second the last report said the node completed, in thousandths per
    /// pool worker: how fast `others` drains.
    pub(super) drain_rate: AtomicU64,
    /// When the last report came, in nanoseconds after `epoch` on tokio's clock.
    pub(super) reported_at: AtomicU64,
    pub(super) epoch: tokio::time::Instant,
    /// The penalty of this master's recent failed calls to it.
    pub(super) penalty: FailurePenalty,
    /// The connection calls go on; empty while down.
    pub(super) current: ArcSwapOption<Current>,
    /// Bounds the calls in flight to this node.
    pub(super) in_flight: Semaphore,
    /// The report interval the node announced in its last hello, in ms: silence for three of
    /// them takes it out of selection.
    pub(crate) heartbeat_ms: AtomicU64,
    /// Held while a connection to the node is being made, so that two at once make one.
    pub(crate) connecting: tokio::sync::Mutex<()>,
    /// Cancelled when the node is removed or terminated: stop reconnecting.
    pub(crate) gone: CancellationToken,
    /// Bumped when this node goes up or down or reports its load: what `Node::changed`
    /// waits on.
    pub(super) changes: Arc<watch::Sender<u64>>,
    pub(super) cookie: Option<auth::Cookie>,
    pub(super) max_message: usize,
}

/// One connection to a node.
pub(crate) struct Current {
    pub(crate) channel: Channel,
    /// Cancelled when the connection is given up: calls on it fail at once.
    pub(crate) closed: CancellationToken,
}

impl Link {
    pub(crate) fn new(
        addr: SocketAddr,
        hello: &HelloReply,
        extra_tags: &[String],
        changes: Arc<watch::Sender<u64>>,
        local: &Local,
        cfg: &NodeConfig,
    ) -> Arc<Self> {
        let mut tags = hello.tags.clone();
        for t in extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        Arc::new(Self {
            id: NodeId::from(hello.name.as_str()),
            addr: Mutex::new(addr),
            mode: mode_from_wire(hello.mode).unwrap_or(Mode::Worker),
            tags,
            pool_size: hello.pool_size.clamp(1, MAX_POOL_SIZE),
            up: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            reported: AtomicU64::new(0),
            heartbeat_ms: AtomicU64::new(hello.heartbeat_ms),
            calls: AtomicU64::new(0),
            others: AtomicU64::new(0),
            drain_rate: AtomicU64::new(0),
            reported_at: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            penalty: FailurePenalty::new(),
            current: ArcSwapOption::empty(),
            in_flight: Semaphore::new(cfg.max_in_flight),
            connecting: tokio::sync::Mutex::new(()),
            gone: CancellationToken::new(),
            changes,
            cookie: local.cookie.clone(),
            max_message: cfg.max_message,
        })
    }

    /// Nanoseconds since the link was made, on tokio's clock.
    fn now(&self) -> u64 {
        crate::penalty::nanos_since(self.epoch)
    }

    /// What others queued on the node as of the last report, less what the node has
    /// completed since at its reported rate; reads the clock only while something is left.
    pub(super) fn others_now(&self) -> u64 {
        let others = self.others.load(Relaxed);
        if others == 0 {
            return 0;
        }
        let age = self.now().saturating_sub(self.reported_at.load(Relaxed));
        let drained = u128::from(self.drain_rate.load(Relaxed)) * u128::from(age) / 1_000_000_000;
        others.saturating_sub(u64::try_from(drained).unwrap_or(u64::MAX))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        *self.addr.lock()
    }

    pub(crate) fn set_addr(&self, addr: SocketAddr) {
        *self.addr.lock() = addr;
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Applies a load report.
    pub(super) fn apply(&self, r: &OrcaLoadReport) {
        let get = |k: &str| r.named_metrics.get(k).copied().unwrap_or(0.0);
        let pool = get(metric::POOL_SIZE);
        let pool = if pool.is_finite() { pool.max(1.0) } else { 1.0 };
        // Thousandths of a job per worker. A queue that is not a number, negative or beyond
        // any real node's reads as fully loaded (and never drains): an absurd report must not
        // make a node look idle.
        let queue = get(metric::RUN_QUEUE) * 1000.0 / pool;
        let reported = if (0.0..=FULL as f64).contains(&queue) {
            queue as u64
        } else {
            FULL
        };
        self.reported.store(reported, Relaxed);
        let mine = self.calls.load(Relaxed).saturating_mul(1000) / u64::from(self.pool_size.max(1));
        self.others.store(reported.saturating_sub(mine), Relaxed);
        let rate = r.rps_fractional * 1000.0 / pool;
        let rate = if reported < FULL && (0.0..=FULL as f64).contains(&rate) {
            rate as u64
        } else {
            0
        };
        self.drain_rate.store(rate, Relaxed);
        self.reported_at.store(self.now(), Relaxed);
        self.draining.store(get(metric::DRAINING) > 0.0, Relaxed);
    }

    /// Marks the node up on a new connection whose first report is `first`: calls can be
    /// sent at once.
    pub(crate) fn attach(&self, channel: Channel, first: &OrcaLoadReport) -> Arc<Current> {
        let current = Arc::new(Current {
            channel,
            closed: CancellationToken::new(),
        });
        self.apply(first);
        self.current.store(Some(Arc::clone(&current)));
        self.up.store(true, Relaxed);
        self.changed();
        current
    }

    /// Follows one connection's load reports until it closes, goes silent for three of the
    /// node's report intervals, the node is removed, or `cancel` fires; then marks the node
    /// down and fails the calls still on that connection.
    pub(crate) async fn run(
        &self,
        current: &Current,
        mut reports: Streaming<OrcaLoadReport>,
        cancel: &CancellationToken,
    ) {
        let silence = silence_limit(self.heartbeat_ms.load(Relaxed));
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => break,
                () = self.gone.cancelled() => break,
                next = tokio::time::timeout(silence, reports.message()) => next,
            };
            match next {
                Err(_silent) => {
                    tracing::warn!(node = %self.id, "croupier node's load reports stopped; taking it out of selection");
                    break;
                }
                Ok(Ok(Some(report))) => {
                    self.apply(&report);
                    self.changed();
                }
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    tracing::warn!(node = %self.id, error = %status_chain(&status), "croupier node's connection failed");
                    break;
                }
            }
        }
        // Only this connection's end marks the node down: a newer one may have taken over.
        let is_this =
            |c: &Option<Arc<Current>>| c.as_ref().is_some_and(|c| std::ptr::eq(&**c, current));
        let prev = self
            .current
            .rcu(|c| if is_this(c) { None } else { c.clone() });
        if is_this(&prev) {
            self.up.store(false, Relaxed);
        }
        current.closed.cancel();
        self.changed();
    }

    /// Opens the node's log stream on `channel`: once this returns, the node is sending.
    pub(crate) async fn open_logs(
        &self,
        channel: &Channel,
    ) -> Result<Streaming<LogRecord>, Status> {
        let mut req = Request::new(LogsRequest {});
        auth::present(self.cookie.as_ref(), &mut req);
        Ok(CroupierClient::new(channel.clone())
            .logs(req)
            .await?
            .into_inner())
    }

    /// Streams the node's log records into this process's `tracing` until the connection
    /// closes.
    pub(crate) async fn follow_logs(&self, current: &Current, mut stream: Streaming<LogRecord>) {
        loop {
            let next = tokio::select! {
                () = current.closed.cancelled() => return,
                next = stream.message() => next,
            };
            match next {
                Ok(Some(record)) => logs::emit(self.id.as_str(), &record),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// The largest pool size a master believes a worker announces: the calls of
/// `on_all_worker_cores` are as many as the pool's workers, so an absurd announcement must not
/// decide how many futures the master allocates.
pub(crate) const MAX_POOL_SIZE: u32 = 4096;

/// The most a report may say, in thousandths of a job per pool worker (a billion jobs per
/// worker): what an absurd report reads as.
const FULL: u64 = 1_000_000_000_000;

/// How long a node that announced a report interval of `heartbeat_ms` may stay silent before
/// it is taken out of selection: three of its intervals, the announced one held between 1 ms
/// and 10 minutes.
pub(crate) fn silence_limit(heartbeat_ms: u64) -> Duration {
    Duration::from_millis(heartbeat_ms.clamp(1, 600_000)) * 3
}
