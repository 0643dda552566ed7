//! The refresher: one thread per process that runs the refreshes pickers ask for, so that
//! the pick that finds the live share below the ratio never runs a [`Source`] itself, and
//! brings ejected members back when their time is up (it sleeps until the first is due).
//!
//! A picker that starts a flight hands it off (`SingleFlight::hand_off`) and calls [`wake`]:
//! one atomic swap and, when the refresher thread is parked, one `futex` wake system call
//! (`std::thread::Thread::unpark`). Neither takes a lock nor allocates. The thread then looks
//! at every registered balancer, flies the flights handed to it, and parks again. Because
//! `unpark` before `park` makes `park` return at once, no wake is ever lost.
//!
//! The thread is started by the first balancer built, and registration happens at
//! `build()` (a slow path that may lock and allocate). It holds balancers weakly, so it
//! keeps none alive.
//!
//! [`Source`]: crate::member::Source

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{OnceLock, Weak},
    thread::{self, Thread},
    time::Instant,
};

use parking_lot::Mutex;

/// A balancer, as the refresher sees it.
pub(super) trait Target: Send + Sync {
    /// Flies the flight handed to the refresher, if one was.
    fn fly_handed_off(&self);

    /// Re-admits the ejected members whose time is up; when the next one is due, if any.
    fn readmit_due(&self, now: Instant) -> Option<Instant>;
}

struct Refresher {
    thread: Thread,
    targets: Mutex<Vec<Weak<dyn Target>>>,
}

static REFRESHER: OnceLock<Option<Refresher>> = OnceLock::new();

/// Registers a balancer with the refresher, starting its thread on first use. Returns false
/// when no thread could be started: the balancer then flies its flights on the picking thread.
pub(super) fn register(target: Weak<dyn Target>) -> bool {
    let Some(refresher) = REFRESHER.get_or_init(start) else {
        return false;
    };
    let mut targets = refresher.targets.lock();
    // Balancers dropped since are forgotten here, so the list stays as long as the number of
    // live balancers.
    targets.retain(|t| t.strong_count() > 0);
    targets.push(target);
    true
}

/// Wakes the refresher: lock-free and allocation-free; a `futex` wake when it sleeps.
#[inline]
pub(super) fn wake() {
    if let Some(Some(refresher)) = REFRESHER.get() {
        refresher.thread.unpark();
    }
}

fn start() -> Option<Refresher> {
    let spawned = thread::Builder::new()
        .name("croupier-refresh".into())
        .spawn(run);
    match spawned {
        Ok(handle) => Some(Refresher {
            thread: handle.thread().clone(),
            targets: Mutex::new(Vec::new()),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "croupier could not start its refresher thread; \
                ratio-triggered refreshes run on the picking thread");
            None
        }
    }
}

fn run() {
    // When the next ejected member is due back, in any balancer.
    let mut next: Option<Instant> = None;
    loop {
        match next {
            Some(at) => thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => thread::park(),
        }
        next = None;
        let Some(Some(refresher)) = REFRESHER.get() else {
            // `start` has not stored us yet; the wake that was meant for us comes again with
            // the next request, and until then there is nothing registered to fly.
            continue;
        };
        let targets: Vec<_> = refresher.targets.lock().clone();
        for target in &targets {
            // A source is user code, and so are the members' `Drop`s when the last handle of
            // a balancer goes here: a panic costs the refresher nothing (the flight's own
            // guard has landed it already).
            let flown = catch_unwind(AssertUnwindSafe(|| {
                if let Some(target) = target.upgrade() {
                    target.fly_handed_off();
                    target.readmit_due(Instant::now())
                } else {
                    None
                }
            }));
            match flown {
                Ok(due) => {
                    next = match (next, due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                Err(_) => {
                    tracing::error!("croupier: a balancer's source panicked during a refresh")
                }
            }
        }
    }
}
