//! Supervisors: start workers, restart the ones that crash, and give up when they crash too
//! often (OTP's restart intensity); grow and shrink at run time.
//!
//! The slots live behind one `ArcSwap`, read without a lock by everything that looks at them
//! (children, stats, size); a resize, a shutdown and a hard stop change them under one
//! `parking_lot` mutex, so that no slot is added after the supervisor has begun to stop.
//! A shrink takes the highest slots out: they read dead at once, their tasks move what is
//! queued to the slots that remain, finish the message in hand and stop.

mod builder;
pub(crate) mod error;
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

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFuture},
    task::TaskTracker,
};

pub use self::builder::{Backoff, Restart, SupervisorBuilder};
use self::error::ResizeError;
use crate::{
    balancer::{Balancer, WeakBalancer},
    member::{Member, Source},
    telemetry::SupervisorMeter,
    worker::{
        capacity::Capacity,
        mailbox::{mailbox, Mailbox},
        slot::Slot,
        Worker, WorkerId, WorkerRef,
    },
};

/// Runs a number of [`Worker`]s, each in its own tokio task, and restarts those that crash;
/// [`resize`](Supervisor::resize) changes the number at run time.
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
/// [`stopping`](Worker::stopping) hook, one abandoned mid-message does not. The hooks are
/// cut short too, so that no task outlives the hard stop whatever they do: a
/// [`started`](Worker::started) hook still running is abandoned where it waits (and
/// `stopping` does not run), and a `stopping` hook runs only up to its first `.await` that
/// waits.
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
    /// The current slots, in slot order. Read without a lock; replaced whole, under `layout`.
    pub(super) slots: ArcSwap<Vec<Arc<Slot<W>>>>,
    /// What changes the slots, one at a time: resizes, shutdown and hard stops. Slow path only.
    pub(super) layout: Mutex<Layout>,
    /// The kind of mailbox each slot gets, a new one too.
    mailbox: Mailbox,
    /// Wakes those waiting for a worker's load to fall.
    pub(crate) capacity: Arc<Capacity>,
    factory: Box<dyn Fn(WorkerId) -> W + Send + Sync>,
    restart: Restart,
    intensity: u32,
    window: Duration,
    backoff: Backoff,
    /// Once a message has run this long, the messages queued behind it that came through
    /// the pool move to free workers (`PoolBuilder::hand_back_after`).
    pub(crate) hand_back: Option<Duration>,
    /// Graceful shutdown: stop taking messages, finish the queued ones.
    drain: Signal,
    /// Hard stop (give-up or drop): finish the message in hand at most, return the rest.
    stop: Signal,
    tracker: TaskTracker,
    /// Where the slots' tasks run.
    runtime: tokio::runtime::Handle,
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

/// What only the slow paths that change the slots touch.
#[derive(Default)]
pub(super) struct Layout {
    /// The task of each current slot, in slot order.
    tasks: Vec<JoinHandle<()>>,
    /// For each place a shrink has emptied, the first incarnation a new slot there starts
    /// with, so that no worker id is handed out twice.
    first_free: Vec<u64>,
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
    /// Every slot's current incarnation, liveness and load, in slot order: as many as the
    /// supervisor's current [size](Supervisor::size).
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
    /// Messages queued plus the one in progress, plus calls reserved for the worker by ready
    /// `Pool` services (with the `tower` feature).
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
                .load()
                .iter()
                .map(|slot| WorkerStats {
                    id: WorkerId::new(slot.index, slot.last()),
                    alive: slot.state.serving().is_some(),
                    load: slot.load(),
                })
                .collect(),
        }
    }

    /// How many slots the supervisor runs now: as started, or as last
    /// [resized](Supervisor::resize). One lock-free load.
    #[must_use]
    pub fn size(&self) -> usize {
        self.inner.core.slots.load().len()
    }

    /// Grows or shrinks the supervisor to `n` slots.
    ///
    /// Growing starts new slots `size()..n`, each with a worker from the factory; shrinking
    /// takes out the highest slots, `n..size()`. Either way [`children`](Supervisor::children),
    /// [`size`](Supervisor::size) and [`stats`](Supervisor::stats) show the new set at once,
    /// and every [attached](Supervisor::attach) balancer is refreshed to it before this
    /// returns (or waits): a pick sees the old set or the new one, never half of each.
    ///
    /// A slot that a shrink takes out stops taking messages at once: its handles read dead,
    /// and a send or call through one answers `Dead` (a [`Pool`](crate::Pool) picks again).
    /// The messages queued in it move, one by one in queue order, to the remaining slots
    /// (each to the one with the least load then), with their callers: each queued call gets
    /// its reply from the worker that handles it, each queued send is handled there. Its
    /// worker finishes the message in hand, runs its [`stopping`](Worker::stopping) hook and
    /// stops; a crash in that last message is counted in `deaths` and restarts nothing. This
    /// waits for those slots to stop (but see below for a worker that resizes its own
    /// supervisor).
    ///
    /// A slot later grown in the same place starts its incarnations after the last one of
    /// the slot that was there, so a [`WorkerId`] is never handed out twice. Resizes from
    /// several tasks at once are applied one after the other.
    ///
    /// Messages still queued in a removed slot when the supervisor shuts down or gives up go
    /// where that would send them anyway: to the slots finishing their queues at a graceful
    /// shutdown, back to their callers as `Shutdown` at a hard stop. A queued message that no
    /// remaining slot can take (every one has ended for good) comes back as `Dead` (a sent
    /// one is counted in [`dropped`](SupervisorStats::dropped)).
    ///
    /// # Errors
    ///
    /// - [`ResizeError::TooLarge`] for more than 2²⁰ workers, as at start.
    /// - [`ResizeError::ZeroSize`] for `n == 0`: a supervisor runs at least one worker, as
    ///   at [`start`](SupervisorBuilder::start). [`shutdown`](Supervisor::shutdown) stops
    ///   them all.
    /// - [`ResizeError::Shutdown`] once the supervisor has shut down, begun to, or given up.
    ///
    /// Nothing changes in either case.
    ///
    /// # Cancel safety
    ///
    /// The resize happens at the first poll, in one step. Dropping the future after that does
    /// not undo it: the slots taken out go on moving their queues and stop in the background,
    /// and [`shutdown`](Supervisor::shutdown) still waits for them.
    ///
    /// A worker of this supervisor that awaits a resize (in its own task: a hook or a
    /// handler) does not wait for the slots taken out: this returns once they read dead and
    /// the balancers have been refreshed, and they move their queues and stop in the
    /// background. They move their queues into the slots that remain, the worker's own among
    /// them, and in a bounded mailbox they wait for room that only the worker can make once
    /// its message is done (and its own slot, if taken out, cannot stop before that either).
    /// Nothing is lost: the moved messages are handled as above.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Supervisor, Worker};
    ///
    /// struct Echo;
    /// impl Worker for Echo {
    ///     type Msg = u32;
    ///     type Reply = u32;
    ///     async fn handle(&mut self, n: u32) -> u32 { n }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sup = Supervisor::builder(|_| Echo).size(2).start()?;
    /// sup.resize(4).await?;
    /// assert_eq!(sup.size(), 4);
    /// assert_eq!(sup.children()[3].call(7).await?, 7);
    ///
    /// sup.resize(1).await?;
    /// assert_eq!(sup.stats().workers.len(), 1);
    /// assert_eq!(sup.children().len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn resize(&self, n: usize) -> Result<(), ResizeError> {
        let core = &self.inner.core;
        let leaving = core.resize(n)?;
        core.refresh_watchers();
        // New workers are room: wake those waiting for a worker's load to fall.
        core.capacity.released();
        for task in leaving {
            // The slot's task catches every panic of the worker's; an error here is the
            // runtime shutting down, which ends the wait as well.
            let _ = task.await;
        }
        Ok(())
    }

    /// A source of the current children that does not keep the workers running: used by
    /// [`Pool`](crate::Pool) so that dropping the pool stops them.
    pub(crate) fn children_source(&self) -> ChildrenSource<W> {
        ChildrenSource(Arc::clone(&self.inner.core))
    }
}

impl<W: Worker> Core<W> {
    /// A core over no slots yet; [`start_slots`](Core::start_slots) adds them.
    pub(super) fn new(config: CoreConfig<W>) -> Self {
        Self {
            slots: ArcSwap::from_pointee(Vec::new()),
            layout: Mutex::new(Layout::default()),
            mailbox: config.mailbox,
            capacity: Arc::new(Capacity::default()),
            factory: config.factory,
            restart: config.restart,
            intensity: config.intensity,
            window: config.window,
            backoff: config.backoff,
            hand_back: config.hand_back,
            drain: Signal::default(),
            stop: Signal::default(),
            tracker: TaskTracker::new(),
            runtime: config.runtime,
            recent_restarts: Mutex::new(VecDeque::new()),
            watchers: Mutex::new(Vec::new()),
            restarts: AtomicU64::new(0),
            deaths: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
            meter: config.meter,
        }
    }

    /// Changes the slots to `n`; returns the tasks of the slots taken out, to wait for: none
    /// when the caller runs in one of this supervisor's slot tasks (see [`Self::is_own_task`]).
    /// The caller refreshes the watchers.
    fn resize(self: &Arc<Self>, n: usize) -> Result<Vec<JoinHandle<()>>, ResizeError> {
        if n == 0 {
            return Err(ResizeError::ZeroSize);
        }
        if n > builder::MAX_WORKERS {
            return Err(ResizeError::TooLarge {
                max: builder::MAX_WORKERS,
            });
        }
        let mut layout = self.layout.lock();
        // Under the lock that `begin_shutdown` and `stop_now` take too: a stop either came
        // before this (and is seen), or comes after and shuts every slot this adds.
        if self.is_stopped() {
            return Err(ResizeError::Shutdown);
        }
        let current = self.slots.load_full();
        if n > current.len() {
            self.start_slots(&mut layout, n);
            Ok(Vec::new())
        } else {
            let own = Self::is_own_task(&layout);
            let leaving = self.remove_slots(&mut layout, &current, n);
            // Dropping a handle detaches the task; the tracker still waits for it.
            Ok(if own { Vec::new() } else { leaving })
        }
    }

    /// Whether the running task is one of the current slots' tasks: a worker of this
    /// supervisor, inside one of its hooks or handlers. Such a caller must not wait for the
    /// slots a shrink takes out. They move their queues into the slots that remain, its own
    /// among them: in a bounded mailbox they wait for room there, which only its worker can
    /// make, and only once the wait is over. (Its own slot, if taken out, could not stop
    /// before its worker finishes the message either.)
    fn is_own_task(layout: &Layout) -> bool {
        tokio::task::try_id().is_some_and(|me| layout.tasks.iter().any(|task| task.id() == me))
    }

    /// Starts slots from the current size up to `n`, each in its own task.
    pub(super) fn start_slots(self: &Arc<Self>, layout: &mut Layout, n: usize) {
        let current = self.slots.load_full();
        let mut slots = Vec::with_capacity(n);
        slots.extend(current.iter().cloned());
        let mut receivers = Vec::with_capacity(n.saturating_sub(current.len()));
        for index in current.len()..n {
            let first = layout.first_free.get(index).copied().unwrap_or(0);
            let (tx, rx) = mailbox(self.mailbox);
            let slot = Arc::new(Slot::new(index, first, tx, Arc::clone(&self.capacity)));
            receivers.push((Arc::clone(&slot), rx));
            slots.push(slot);
        }
        // The new slots read alive from here on; what is sent to them waits in their
        // mailboxes until their tasks run.
        self.slots.store(Arc::new(slots));
        for (slot, rx) in receivers {
            let task = runner::run_slot(Arc::clone(self), slot, rx);
            layout
                .tasks
                .push(self.tracker.spawn_on(task, &self.runtime));
        }
    }

    /// Takes slots `n..` out: they read dead at once and their tasks are told to move their
    /// queues on and stop. Returns those tasks.
    fn remove_slots(
        &self,
        layout: &mut Layout,
        current: &[Arc<Slot<W>>],
        n: usize,
    ) -> Vec<JoinHandle<()>> {
        let (kept, leaving) = current.split_at(n.min(current.len()));
        self.slots.store(Arc::new(kept.to_vec()));
        for slot in leaving {
            if let Some(first_free) = slot.state.remove() {
                if layout.first_free.len() <= slot.index {
                    layout.first_free.resize(slot.index + 1, 0);
                }
                layout.first_free[slot.index] = first_free;
            }
            slot.removed.cancel();
            slot.idle.wake();
        }
        layout.tasks.split_off(kept.len())
    }

    fn children(&self) -> Vec<WorkerRef<W>> {
        self.slots
            .load()
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
        {
            let _layout = self.layout.lock();
            for slot in self.slots.load().iter() {
                slot.state.shut();
            }
            self.tracker.close();
            self.drain.fire();
            self.wake_idle();
        }
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
        let _layout = self.layout.lock();
        for slot in self.slots.load().iter() {
            slot.state.shut();
        }
        self.tracker.close();
        self.stop.fire();
        self.wake_idle();
    }

    /// Wakes every slot task waiting idle for a message, after a signal was raised (under
    /// the layout lock, so that no slot is added meanwhile: one added later reads the
    /// signal's flag before it waits).
    fn wake_idle(&self) {
        for slot in self.slots.load().iter() {
            slot.idle.wake();
        }
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

/// What a [`Core`] is made from: the builder's settings.
pub(crate) struct CoreConfig<W: Worker> {
    pub(crate) factory: Box<dyn Fn(WorkerId) -> W + Send + Sync>,
    pub(crate) mailbox: Mailbox,
    pub(crate) restart: Restart,
    pub(crate) intensity: u32,
    pub(crate) window: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) hand_back: Option<Duration>,
    /// Where the slots' tasks run, those a resize adds too.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) meter: SupervisorMeter,
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
            .field("size", &core.slots.load().len())
            .field("restart", &core.restart)
            .field(
                "alive",
                &core.children().iter().filter(|w| w.is_alive()).count(),
            )
            .field("stopped", &core.is_stopped())
            .finish_non_exhaustive()
    }
}
