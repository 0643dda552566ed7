//! Virtual time to the nanosecond, on tokio's paused clock.
//!
//! tokio's timers count whole milliseconds: on a paused clock a 0.3 ms sleep ends at the next
//! millisecond, and arrivals a few microseconds apart would land together. The arena's own
//! events (arrivals, service completions, reports, faults) therefore wait on this module's
//! [`sleep_until`], which keeps them in a heap ordered by (instant, order of registration),
//! while croupier, tower and tokio keep their own timers.
//!
//! Time moves only when the runtime is idle: the runtime's `on_thread_park` hook
//! ([`on_park`]) wakes the [`drive`] task whenever nothing else can run and an arena event is
//! pending. The driver then moves tokio's paused clock with [`tokio::time::advance`], to the
//! next arena event or to the next millisecond boundary, whichever comes first, so that a
//! tokio timer (due on a boundary) fires at its own instant, and fires the arena events that
//! are due. Nothing reads the wall clock; the same inputs give the same run, to the
//! nanosecond.
//!
//! One limit: work on tokio's blocking pool (a croupier refresh whose source is slow) runs
//! on another thread, and the runtime looks idle meanwhile, so the driver may move time on
//! while it runs. No scenario triggers one: a pool refreshes on its own thread at each
//! restart, and the ratio-triggered refresh that would fly on the pool needs more members
//! dead than any scenario kills.

use std::{
    cell::RefCell,
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;

/// One millisecond, tokio's timer resolution, in nanoseconds.
const TICK: u64 = 1_000_000;

/// A registered wait: fired once, then its waker is woken.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    fired: bool,
    waker: Option<Waker>,
}

struct Entry {
    at: u64,
    order: u64,
    slot: Arc<Slot>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

struct Sched {
    origin: Instant,
    heap: BinaryHeap<Reverse<Entry>>,
    order: u64,
    /// The driver, while it waits for the runtime to go idle.
    idle_waiter: Option<Waker>,
    idle: bool,
}

thread_local! {
    static SCHED: RefCell<Option<Sched>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&mut Sched) -> T) -> T {
    SCHED.with(|s| {
        let mut s = s.borrow_mut();
        f(s.as_mut()
            .expect("arena clock: call inside an arena run (clock::install)"))
    })
}

/// Starts virtual time on this thread; call first thing inside the paused runtime's
/// `block_on`, before time has moved, so that millisecond boundaries line up with tokio's.
pub fn install() {
    SCHED.with(|s| {
        *s.borrow_mut() = Some(Sched {
            origin: Instant::now(),
            heap: BinaryHeap::new(),
            order: 0,
            idle_waiter: None,
            idle: false,
        });
    });
}

/// Ends virtual time on this thread.
pub fn uninstall() {
    SCHED.with(|s| s.borrow_mut().take());
}

/// Virtual nanoseconds since [`install`].
#[must_use]
pub fn now() -> u64 {
    let origin = with(|s| s.origin);
    u64::try_from(Instant::now().duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// The runtime's `on_thread_park` hook: the runtime has nothing to run. If an arena event is
/// pending, wakes the driver (so the runtime does not advance the clock by itself).
pub fn on_park() {
    SCHED.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            if !s.heap.is_empty() {
                if let Some(w) = s.idle_waiter.take() {
                    s.idle = true;
                    w.wake();
                }
            }
        }
    });
}

/// Builds the current-thread, paused runtime the arena runs on.
///
/// # Panics
/// If tokio cannot build a runtime (no thread can be made).
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .on_thread_park(on_park)
        .build()
        .expect("arena: a current-thread tokio runtime")
}

/// Moves virtual time, for ever: spawn it once per run, after [`install`].
pub async fn drive() {
    loop {
        fire_due(now());
        std::future::poll_fn(|cx| {
            with(|s| {
                if s.idle {
                    s.idle = false;
                    Poll::Ready(())
                } else {
                    s.idle_waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        let now = now();
        let Some(next) = with(|s| s.heap.peek().map(|Reverse(e)| e.at)) else {
            continue;
        };
        let boundary = (now / TICK + 1) * TICK;
        let target = next.min(boundary);
        if target > now {
            tokio::time::advance(Duration::from_nanos(target - now)).await;
        }
    }
}

fn fire_due(now: u64) {
    loop {
        let entry = with(|s| {
            if s.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                s.heap.pop().map(|Reverse(e)| e)
            } else {
                None
            }
        });
        let Some(entry) = entry else { return };
        let waker = {
            let mut st = entry.slot.state.lock();
            st.fired = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Waits until virtual instant `at` (nanoseconds since [`install`]).
pub fn sleep_until(at: u64) -> Sleep {
    Sleep { at, slot: None }
}

/// Waits `d` of virtual time.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(now().saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
}

/// Waits `ns` virtual nanoseconds.
pub fn sleep_ns(ns: u64) -> Sleep {
    sleep_until(now().saturating_add(ns))
}

/// The future of [`sleep_until`].
pub struct Sleep {
    at: u64,
    slot: Option<Arc<Slot>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(slot) = &self.slot {
            let mut st = slot.state.lock();
            if st.fired {
                return Poll::Ready(());
            }
            st.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let at = self.at;
        if at <= now() {
            return Poll::Ready(());
        }
        let slot = Arc::new(Slot::default());
        slot.state.lock().waker = Some(cx.waker().clone());
        with(|s| {
            s.order += 1;
            s.heap.push(Reverse(Entry {
                at,
                order: s.order,
                slot: Arc::clone(&slot),
            }));
        });
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.state.lock().waker = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_millisecond_sleeps_end_at_their_instant() {
        let rt = runtime();
        rt.block_on(async {
            install();
            let driver = tokio::spawn(drive());
            let a = tokio::spawn(async {
                sleep_ns(300_000).await;
                now()
            });
            let b = tokio::spawn(async {
                sleep_ns(1_700_123).await;
                now()
            });
            // A tokio timer between them still fires on its own millisecond.
            let c = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                now()
            });
            assert_eq!(a.await.unwrap(), 300_000);
            assert_eq!(b.await.unwrap(), 1_700_123);
            assert_eq!(c.await.unwrap(), 1_000_000);
            driver.abort();
            uninstall();
        });
    }
}
