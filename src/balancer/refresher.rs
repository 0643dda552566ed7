//! The refresher: each balancer's own runner of the ratio refreshes its pickers ask for, so
//! that the pick that finds the live share below the ratio never runs a [`Source`] itself, and
//! of its ejected members' re-admissions (it sleeps until the first is due).
//!
//! One per balancer, so that a source that blocks holds up its own balancer's refresh and no
//! other's. Where the balancer was built decides what it is:
//!
//! - **On a tokio runtime** (`build()` ran where `Handle::try_current` finds one), a task on
//!   that runtime. It flies a flight through `spawn_blocking`, so that a slow source holds one
//!   of the runtime's blocking threads, not the runtime; it re-admits on the runtime's own
//!   thread (on the blocking pool only when a refresh holds the writer lock), and it sleeps
//!   with `tokio::time::sleep_until`. Every instant it reads, and every instant the balancer
//!   stamps an ejection with, is `tokio::time::Instant` read on that runtime, so ejection and
//!   re-admission follow the runtime's clock, paused and advanced by hand if the test says so.
//! - **Without a runtime**, a thread of its own (`croupier-refresh`), on the system clock.
//! - When no thread can be started, nothing: whoever asks does the work (the pick that asks
//!   flies the flight, a report re-admits the due members).
//!
//! A picker that starts a flight hands it off (`SingleFlight::hand_off`) and wakes its
//! balancer's refresher ([`Refresher::wake`]): one atomic read-modify-write on the signal, and
//! an [`AtomicWaker`]'s wake. Neither takes a croupier lock nor allocates. The wake itself is
//! the runner's: for a thread, one `futex` wake system call when it sleeps
//! (`Thread::unpark`); for a task, tokio's scheduling of it (see `docs::design`). A wake is
//! never lost: the runner registers its waker before it looks at the signal.
//!
//! The runner holds its balancer weakly, so it keeps it alive only while it works; it ends
//! when the balancer is dropped. If the runtime shuts down first, the task's drop starts a
//! thread that takes over (on the system clock from then on), so a refresh asked for is never
//! lost: the signal and the hand-off flag keep what was asked until the thread looks.
//!
//! [`Source`]: crate::member::Source

use std::{
    future::{poll_fn, Future},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::pin,
    sync::{
        atomic::{
            AtomicUsize,
            Ordering::{AcqRel, Relaxed},
        },
        Arc, Weak,
    },
    task::{Poll, Wake, Waker},
    thread,
};

use futures_util::task::AtomicWaker;
use tokio::{runtime::Handle, time::Instant};

/// A balancer, as its refresher sees it.
pub(super) trait Target: Send + Sync {
    /// Takes up the flight a picker handed off, if one was: the caller then owns it.
    fn take_handoff(&self) -> bool;

    /// Flies the flight the caller owns: runs the source, under the writer lock. May block.
    fn fly(&self);

    /// Hands a flight the caller owns, but will not fly, back to the refresher, as a picker
    /// would hand it.
    fn hand_back(&self);

    /// Re-admits the ejected members due at `now`; when the next one is due, if any. Waits
    /// for the writer lock.
    fn readmit_due(&self, now: Instant) -> Option<Instant>;

    /// [`readmit_due`](Target::readmit_due), or `Err(Busy)` at once if the writer lock is
    /// held (a refresh is under way).
    fn try_readmit_due(&self, now: Instant) -> Result<Option<Instant>, Busy>;
}

/// The writer lock is held: what needs it must wait, off the runtime's thread.
#[derive(Debug)]
pub(super) struct Busy;

/// Work was asked for since the runner last looked.
const WOKEN: usize = 1;
/// No runner: whoever asks does the work.
const INLINE: usize = 2;
/// The runtime the balancer was built on has shut down: its clock is no longer read.
const RUNTIME_GONE: usize = 4;

/// How those who ask reach the runner; shared by the balancer and its runner.
#[derive(Debug)]
struct Signal {
    /// `WOKEN`, `INLINE`, `RUNTIME_GONE`.
    state: AtomicUsize,
    /// The runner's waker: a task's, or one that unparks a thread.
    waker: AtomicWaker,
}

impl Signal {
    /// Whether work was asked for since the last call; clears the request.
    fn take_woken(&self) -> bool {
        // AcqRel: as every read-modify-write of `state`, one link of the chain that orders a
        // wake against a fall-back to `INLINE` (see `Refresher::wake`).
        self.state.fetch_and(!WOKEN, AcqRel) & WOKEN != 0
    }
}

/// A balancer's side of its refresher: a field of the balancer's shared state.
#[derive(Debug)]
pub(super) struct Refresher {
    signal: Arc<Signal>,
    /// The runtime the balancer was built on, whose clock times it; `None` without one.
    runtime: Option<Handle>,
}

impl Refresher {
    /// A refresher on the runtime the caller runs on, if any; started by
    /// [`start`](Refresher::start).
    pub(super) fn new() -> Self {
        Self {
            signal: Arc::new(Signal {
                state: AtomicUsize::new(0),
                waker: AtomicWaker::new(),
            }),
            runtime: Handle::try_current().ok(),
        }
    }

    /// Starts the runner for `target`, the balancer this refresher belongs to: a task on its
    /// runtime, a thread without one, or neither if no thread can be started.
    pub(super) fn start(&self, target: Weak<dyn Target>) {
        match &self.runtime {
            Some(runtime) => {
                let fallback = Fallback {
                    target,
                    signal: Arc::clone(&self.signal),
                };
                // A runtime shutting down drops the task unpolled: `Fallback` takes over.
                drop(runtime.spawn(run_task(fallback)));
            }
            None => {
                if let Err(e) = spawn_thread(target, Arc::clone(&self.signal)) {
                    tracing::warn!(error = %e, "croupier could not start a refresher thread; \
                        ratio-triggered refreshes run on the picking thread");
                    self.signal.state.fetch_or(INLINE, AcqRel);
                }
            }
        }
    }

    /// Tells the runner there is work (a flight handed off, an ejection to time). Returns
    /// false when there is no runner: the caller does the work itself (and, for a flight it
    /// handed off, takes it back first: the runner may have fallen back meanwhile and taken
    /// it, and then the caller's take finds nothing).
    ///
    /// No lock, no allocation: one read-modify-write, then the waker's wake.
    #[inline]
    pub(super) fn wake(&self) -> bool {
        // AcqRel. Release: a runner that falls back to `INLINE` does so with an Acquire
        // read-modify-write of `state` that comes after this one, or this one reads `INLINE`.
        // In the first case, everything the caller did before (its `hand_off`) happens before
        // the fall-back's `take_handoff`, which then finds it; in the second the caller takes
        // it back itself. So a flight handed off is flown by someone, whichever comes first.
        // Acquire: reads the fall-back's `INLINE`, with what it did before.
        let state = self.signal.state.fetch_or(WOKEN, AcqRel);
        if state & INLINE != 0 {
            return false;
        }
        self.signal.waker.wake();
        true
    }

    /// Whether there is no runner, so that whoever asks does the work.
    pub(super) fn is_inline(&self) -> bool {
        // Relaxed: a hint for reports, which re-admit when it says so; a report that misses
        // a fall-back that is under way leaves the due members to the next one.
        self.signal.state.load(Relaxed) & INLINE != 0
    }

    /// Now, by this balancer's clock: its runtime's (read inside it, so that a paused clock
    /// is followed from any thread), or the system's.
    pub(super) fn now(&self) -> Instant {
        match &self.runtime {
            // Relaxed: which clock to read; one read a moment late reads the runtime's clock
            // once more, which still runs until the runtime is gone.
            Some(runtime) if self.signal.state.load(Relaxed) & RUNTIME_GONE == 0 => {
                let _inside = runtime.enter();
                Instant::now()
            }
            _ => system_now(),
        }
    }
}

impl Drop for Refresher {
    /// The balancer is gone: wakes the runner, which finds it gone and ends.
    fn drop(&mut self) {
        self.wake();
    }
}

fn system_now() -> Instant {
    Instant::from_std(std::time::Instant::now())
}

/// The task a balancer built on a runtime refreshes on.
async fn run_task(fallback: Fallback) {
    let Fallback { target, signal } = &fallback;
    let mut next: Option<Instant> = None;
    loop {
        woken_or_due(signal, next).await;
        // Read on the runtime's thread: a paused clock's now.
        let now = Instant::now();
        let Some(balancer) = Held::upgrade(target) else {
            return;
        };
        if balancer.take_handoff() {
            let flight = Flight(Some(balancer.clone()));
            if let Err(e) = tokio::task::spawn_blocking(move || flight.fly()).await {
                if e.is_cancelled() {
                    // The runtime is shutting down: the flight was handed back, and
                    // `Fallback` takes over.
                    return;
                }
            }
        }
        next = match balancer.try_readmit_due(now) {
            Ok(next) => next,
            Err(Busy) => {
                let on_blocking = balancer.clone();
                let readmit = move || guarded(|| on_blocking.readmit_due(now)).flatten();
                match tokio::task::spawn_blocking(readmit).await {
                    Ok(next) => next,
                    Err(e) if e.is_cancelled() => return,
                    Err(_) => None,
                }
            }
        };
    }
}

/// Waits until work is asked for or `next` comes, by the runtime's clock.
async fn woken_or_due(signal: &Signal, next: Option<Instant>) {
    let mut sleep = pin!(next.map(tokio::time::sleep_until));
    poll_fn(|cx| {
        // Register before looking, so that a wake in between is not lost.
        signal.waker.register(cx.waker());
        if signal.take_woken() {
            return Poll::Ready(());
        }
        match sleep.as_mut().as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Pending,
        }
    })
    .await;
}

/// What a balancer's task leaves behind when it ends: if the balancer is still alive (its
/// runtime shut down first), a thread takes over, or, failing that, whoever asks.
struct Fallback {
    target: Weak<dyn Target>,
    signal: Arc<Signal>,
}

impl Drop for Fallback {
    fn drop(&mut self) {
        if self.target.strong_count() == 0 {
            return;
        }
        // From here on, the balancer's clock is the system's.
        // AcqRel: one more link of `state`'s chain (see `Refresher::wake`).
        self.signal.state.fetch_or(RUNTIME_GONE, AcqRel);
        // The task's waker wakes nothing any more; the thread registers its own.
        drop(self.signal.waker.take());
        let Err(e) = spawn_thread(self.target.clone(), Arc::clone(&self.signal)) else {
            return;
        };
        tracing::warn!(error = %e, "croupier: a balancer's runtime shut down and no refresher \
            thread could take over; ratio-triggered refreshes run on the picking thread");
        // Acquire (of AcqRel): pairs with the Release of every `wake` before this, so that a
        // flight handed off before it is found by `take_handoff` below; a wake after it reads
        // `INLINE` and its caller flies its flight itself.
        self.signal.state.fetch_or(INLINE, AcqRel);
        if let Some(balancer) = Held::upgrade(&self.target) {
            if balancer.take_handoff() {
                guarded(|| balancer.fly());
            }
        }
    }
}

/// Starts the thread a balancer without a runtime refreshes on.
fn spawn_thread(target: Weak<dyn Target>, signal: Arc<Signal>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("croupier-refresh".into())
        .spawn(move || run_thread(&target, &signal))
        .map(drop)
}

fn run_thread(target: &Weak<dyn Target>, signal: &Signal) {
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    loop {
        // Look first: what was asked before this thread started (or took over from a task
        // whose runtime shut down) is done now.
        let now = system_now();
        let Some(balancer) = Held::upgrade(target) else {
            return;
        };
        if balancer.take_handoff() {
            guarded(|| balancer.fly());
        }
        let next = guarded(|| balancer.readmit_due(now)).flatten();
        drop(balancer);
        loop {
            // Register before looking, so that a wake in between is not lost.
            signal.waker.register(&waker);
            if signal.take_woken() {
                break;
            }
            let now = system_now();
            match next {
                Some(at) if at <= now => break,
                Some(at) => thread::park_timeout(at - now),
                None => thread::park(),
            }
        }
    }
}

/// Wakes a refresher thread.
struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A balancer held by its refresher while it works. Its drop may be the balancer's last,
/// which drops the members and the source: user code, so it is guarded.
#[derive(Clone)]
struct Held(Option<Arc<dyn Target>>);

impl Held {
    fn upgrade(target: &Weak<dyn Target>) -> Option<Self> {
        target.upgrade().map(|t| Self(Some(t)))
    }
}

impl std::ops::Deref for Held {
    type Target = dyn Target;

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(target) = self.0.take() {
            guarded(move || drop(target));
        }
    }
}

/// A flight taken up by a task, on its way to the blocking pool. If the pool drops it
/// unflown (its runtime is shutting down), it is handed back, never lost.
struct Flight(Option<Held>);

impl Flight {
    fn fly(mut self) {
        if let Some(balancer) = self.0.take() {
            guarded(|| balancer.fly());
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(balancer) = self.0.take() {
            guarded(|| balancer.hand_back());
        }
    }
}

/// Runs user code (a source, members' `Drop`): a panic costs the refresher nothing (a
/// flight's own guard has landed it already), and is logged.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!("croupier: a balancer's user code panicked on its refresher");
            None
        }
    }
}
