//! Supervisors: start workers, restart the ones that crash, and give up when they crash too
//! often (OTP's restart intensity).

mod builder;
mod runner;

use std::{
    collections::VecDeque,
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{
            AtomicBool, AtomicU64,
            Ordering::{Acquire, Relaxed, Release},
        },
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFuture},
    task::TaskTracker,
};

pub use self::builder::{Backoff, Restart, SupervisorBuilder};
use crate::{
    balancer::{Balancer, WeakBalancer},
    member::{Member, Source},
    telemetry::SupervisorMeter,
    worker::{capacity::Capacity, slot::Slot, Worker, WorkerId, WorkerRef},
};

/// Runs a fixed number of [`Worker`]s, each in its own tokio task, and restarts those that
/// crash.
///
/// Each worker lives in a *slot*. When it panics (or finishes, if
/// [`Restart::Permanent`]) the slot starts a new incarnation from the factory: the old
/// [`WorkerRef`] turns dead at once, the messages still queued for it go, in order, to the
/// successor, and the caller of the message being handled gets
/// [`CallError::WorkerDied`](crate::CallError::WorkerDied). More restarts than the
/// [intensity](SupervisorBuilder::intensity) allows within its window and the supervisor gives
/// up: every worker stops and every queued message comes back to its caller as
/// [`Shutdown`](crate::CallError::Shutdown).
///
/// A `Supervisor` is a [`Source`] of its current children, so a [`Balancer`] can deal them;
/// [`attach`](Supervisor::attach) the balancer too and it learns of every restart at once.
/// [`Pool`](crate::Pool) does both.
///
/// Dropping the last handle without [`shutdown`](Supervisor::shutdown) stops the tasks at
/// once, as giving up does (a *hard stop*): every handle reads dead; a message a worker is in
/// the middle of handling is abandoned at its current `.await` (its caller gets
/// [`CallError::WorkerDied`](crate::CallError::WorkerDied); a sent one is counted in
/// [`dropped`](SupervisorStats::dropped)); one taken from the mailbox but not yet started,
/// and every queued one, comes back to its caller as `Shutdown` (or is counted in `dropped`
/// when nobody waits for it); a worker that is not in the middle of a message runs its
/// [`stopping`](Worker::stopping) hook, one abandoned mid-message does not.
///
/// A panic anywhere in the worker's code (the factory, a hook, `handle` before or after it
/// returns its future, `is_finished`, a `Drop`) is a crash like any other: the slot restarts
/// by its [`Restart`] rule or ends, and its handles read dead either way.
///
/// # Example
///
/// ```
/// use croupier::{Restart, Supervisor, Worker};
///
/// struct Adder(u64);
/// impl Worker for Adder {
///     type Msg = u64;
///     type Reply = u64;
///     async fn handle(&mut self, n: u64) -> u64 {
///         self.0 += n;
///         self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sup = Supervisor::builder(|_id| Adder(0))
///     .size(2)
///     .restart(Restart::Permanent)
///     .start()?;
/// let workers = sup.children();
/// assert_eq!(workers.len(), 2);
/// assert_eq!(workers[0].call(5).await?, 5);
/// assert_eq!(workers[0].call(5).await?, 10);
/// sup.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Supervisor<W: Worker> {
    inner: Arc<Inner<W>>,
}

/// Owns the tasks: dropped with the last `Supervisor`, it stops them.
struct Inner<W: Worker> {
    core: Arc<Core<W>>,
}

impl<W: Worker> Drop for Inner<W> {
    fn drop(&mut self) {
        self.core.stop_now();
    }
}

/// A one-way signal: an atomic flag that every message and every send reads, and a token that
/// wakes the tasks waiting for it. (A token alone answers `is_cancelled` under a mutex, which
/// all the slots and senders would then share.)
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    token: CancellationToken,
}

impl Signal {
    /// Raises the signal for good and wakes its waiters.
    fn fire(&self) {
        // Release: pairs with the Acquire in `is_fired`, so that a task that sees the signal
        // also sees what was done before it was raised: every slot marked shut
        // (`begin_shutdown`, `stop_now`) and the task tracker closed.
        self.fired.store(true, Release);
        self.token.cancel();
    }

    /// Whether the signal was raised: one atomic load.
    #[inline]
    pub(crate) fn is_fired(&self) -> bool {
        // Acquire: pairs with the Release in `fire`.
        self.fired.load(Acquire)
    }

    /// Completes once the signal is raised.
    pub(crate) fn fired(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }
}

/// What the slot tasks share. Tasks hold this, never `Inner`, so that dropping the last
/// `Supervisor` is seen.
pub(crate) struct Core<W: Worker> {
    slots: Box<[Arc<Slot<W>>]>,
    /// Wakes those waiting for a worker's load to fall.
    pub(crate) capacity: Arc<Capacity>,
    factory: Box<dyn Fn(WorkerId) -> W + Send + Sync>,
    restart: Restart,
    intensity: u32,
    window: Duration,
    backoff: Backoff,
    /// Graceful shutdown: stop taking messages, finish the queued ones.
    drain: Signal,
    /// Hard stop (give-up or drop): finish the message in hand at most, return the rest.
    stop: Signal,
    tracker: TaskTracker,
    /// When recent restarts happened, for the intensity check. Slow path only.
    recent_restarts: Mutex<VecDeque<Instant>>,
    /// Balancers to tell of restarts and deaths. Slow path only.
    watchers: Mutex<Vec<WeakBalancer<WorkerRef<W>>>>,
    restarts: AtomicU64,
    deaths: AtomicU64,
    dropped: AtomicU64,
    gave_up: AtomicBool,
    /// What the metrics recorder hears (nothing without the `metrics` feature).
    pub(crate) meter: SupervisorMeter,
}

/// A point-in-time view of a supervisor, from [`Supervisor::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupervisorStats {
    /// Incarnations started to replace one that ended.
    pub restarts: u64,
    /// Incarnations that panicked or finished (shutdown not counted).
    pub deaths: u64,
    /// Messages accepted (a `send` or `call` that returned `Ok` or was queued) that nobody
    /// waits for any more and that will never be handled: sent with `send`, or called by a
    /// caller that stopped waiting, and still queued when their slot ended or the supervisor
    /// stopped hard, or abandoned in the middle of their handling by a hard stop. Also
    /// reported by a `tracing` warning. A message whose handler panicked is not counted here:
    /// it was handled, and the death is counted in `deaths`.
    pub dropped: u64,
    /// Whether the supervisor gave up after too many restarts.
    pub gave_up: bool,
    /// Every slot's current incarnation, liveness and load.
    pub workers: Vec<WorkerStats>,
}

/// One slot's state in [`SupervisorStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The slot's current (or last) incarnation.
    pub id: WorkerId,
    /// Whether that incarnation is serving.
    pub alive: bool,
    /// Messages queued plus the one in progress.
    pub load: usize,
}

impl<W: Worker> Supervisor<W> {
    /// The signal that some worker's load fell.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn capacity(&self) -> &Arc<Capacity> {
        &self.inner.core.capacity
    }

    /// Starts configuring a supervisor whose workers `factory` makes; it is called with the id
    /// of each incarnation it makes. See [`SupervisorBuilder`].
    pub fn builder<F>(factory: F) -> SupervisorBuilder<W>
    where
        F: Fn(WorkerId) -> W + Send + Sync + 'static,
    {
        SupervisorBuilder::new(Box::new(factory))
    }

    /// The current incarnation of every slot still serving, in slot order.
    ///
    /// Empty once the supervisor has shut down or given up.
    pub fn children(&self) -> Vec<WorkerRef<W>> {
        self.inner.core.children()
    }

    /// Tells `balancer` of every restart (it refreshes) and every worker that ends for good
    /// (it learns of the death at once), as an Erlang monitor would, instead of waiting for
    /// a pick to find out. Holds the balancer weakly: attaching keeps nothing alive.
    pub fn attach(&self, balancer: &Balancer<WorkerRef<W>>) {
        self.inner.core.watchers.lock().push(balancer.downgrade());
    }

    /// Stops gracefully: refuses new messages at once, lets every worker finish the messages
    /// already queued, runs their [`stopping`](Worker::stopping) hooks, and waits for every
    /// task to end. A slot waiting out a restart [backoff](SupervisorBuilder::backoff) starts
    /// its successor at once to finish its queue; a worker that crashes during shutdown is
    /// restarted only while it makes progress through its queue (one that crashes before
    /// taking a message is not, and its queued messages come back as `Shutdown`). A panicking
    /// `stopping` hook is logged and restarts nothing. Later sends and calls get `Shutdown`. Calling it again, or from several
    /// tasks, waits for the same end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not undo the shutdown: the workers go on finishing their
    /// queues in the background.
    pub async fn shutdown(&self) {
        let core = &self.inner.core;
        core.begin_shutdown();
        core.tracker.wait().await;
    }

    /// Whether the supervisor has shut down, begun to, or given up.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.inner.core.is_stopped()
    }

    /// Counters and the state of every slot.
    pub fn stats(&self) -> SupervisorStats {
        let core = &self.inner.core;
        SupervisorStats {
            restarts: core.restarts.load(Relaxed),
            deaths: core.deaths.load(Relaxed),
            dropped: core.dropped.load(Relaxed),
            gave_up: core.gave_up.load(Relaxed),
            workers: core
                .slots
                .iter()
                .map(|slot| WorkerStats {
                    id: WorkerId::new(slot.index, slot.last()),
                    alive: slot.state.serving().is_some(),
                    load: slot.load(),
                })
                .collect(),
        }
    }

    /// How many slots the supervisor runs.
    #[must_use]
    pub fn size(&self) -> usize {
        self.inner.core.slots.len()
    }

    /// A source of the current children that does not keep the workers running: used by
    /// [`Pool`](crate::Pool) so that dropping the pool stops them.
    pub(crate) fn children_source(&self) -> ChildrenSource<W> {
        ChildrenSource(Arc::clone(&self.inner.core))
    }
}

impl<W: Worker> Core<W> {
    fn children(&self) -> Vec<WorkerRef<W>> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let incarnation = slot.state.serving()?;
                Some(WorkerRef::new(Arc::clone(slot), incarnation))
            })
            .collect()
    }

    fn is_stopped(&self) -> bool {
        self.drain.is_fired() || self.stop.is_fired()
    }

    /// Refuses new messages everywhere and lets the slots drain.
    fn begin_shutdown(&self) {
        for slot in self.slots.iter() {
            slot.state.shut();
        }
        self.tracker.close();
        self.drain.fire();
        self.refresh_watchers();
    }

    /// Records a restart; false when it is one more than the intensity allows in the window.
    fn allow_restart(&self) -> bool {
        let now = Instant::now();
        let mut recent = self.recent_restarts.lock();
        while recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        recent.len() <= self.intensity as usize
    }

    /// Too many restarts: stop everything. Queued messages come back as `Shutdown`.
    fn give_up(&self, last: WorkerId) {
        if self.gave_up.swap(true, Relaxed) {
            return;
        }
        tracing::error!(
            worker = %last,
            intensity = self.intensity,
            window = ?self.window,
            "croupier supervisor gave up: too many restarts; stopping every worker"
        );
        self.stop_now();
        self.refresh_watchers();
    }

    /// Hard stop: every handle reads dead at once; each slot abandons the message in hand
    /// and hands queued ones back as `Shutdown`.
    fn stop_now(&self) {
        for slot in self.slots.iter() {
            slot.state.shut();
        }
        self.tracker.close();
        self.stop.fire();
    }

    /// Balancers attached to this supervisor, still alive; forgets those dropped since.
    fn watchers(&self) -> Vec<Balancer<WorkerRef<W>>> {
        let mut watchers = self.watchers.lock();
        let mut live = Vec::with_capacity(watchers.len());
        watchers.retain(|w| {
            let Some(b) = w.upgrade() else {
                return false;
            };
            live.push(b);
            true
        });
        live
    }

    /// Tells every attached balancer to reload. A balancer's source is user code: a panic
    /// there is logged and costs this supervisor nothing.
    fn refresh_watchers(&self) {
        for b in self.watchers() {
            if catch_unwind(AssertUnwindSafe(|| b.refresh())).is_err() {
                tracing::error!(
                    "croupier: an attached balancer's source panicked during a refresh"
                );
            }
        }
    }

    /// Tells every attached balancer that `old` is dead (which may make it refresh).
    fn notify_dead(&self, old: &WorkerRef<W>) {
        for b in self.watchers() {
            if catch_unwind(AssertUnwindSafe(|| b.notify_dead(old))).is_err() {
                tracing::error!(
                    "croupier: an attached balancer's source panicked during a refresh"
                );
            }
        }
    }
}

/// The children of a supervisor's core, as a [`Source`] that does not own the tasks.
pub(crate) struct ChildrenSource<W: Worker>(Arc<Core<W>>);

impl<W: Worker> Source<WorkerRef<W>> for ChildrenSource<W> {
    fn members(&self) -> Vec<WorkerRef<W>> {
        self.0.children()
    }
}

impl<W: Worker> Source<WorkerRef<W>> for Supervisor<W> {
    fn members(&self) -> Vec<WorkerRef<W>> {
        self.children()
    }
}

impl<W: Worker> Clone for Supervisor<W> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<W: Worker> fmt::Debug for Supervisor<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.inner.core;
        f.debug_struct("Supervisor")
            .field("size", &core.slots.len())
            .field("restart", &core.restart)
            .field(
                "alive",
                &core.children().iter().filter(|w| w.is_alive()).count(),
            )
            .field("stopped", &core.is_stopped())
            .finish_non_exhaustive()
    }
}
