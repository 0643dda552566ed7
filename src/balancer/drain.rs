//! `apply_within`: stop dealing, wait, run maintenance, resume (ballermann's `apply_within/2`).

use std::{
    any::Any, fmt, future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration,
};

use futures_util::{stream::FuturesUnordered, FutureExt, StreamExt};
use tokio::{
    sync::{Mutex, Notify},
    time::Instant,
};

use super::Balancer;
use crate::{member::Member, policy::error::PickError};

/// How [`Balancer::apply_within`] waits between stopping and running maintenance.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use croupier::Wait;
/// # #[derive(Clone)] struct W; impl croupier::Member for W { fn is_alive(&self) -> bool { true } }
///
/// let _: Wait<W> = Wait::none();
/// let _: Wait<W> = Wait::duration(Duration::from_millis(50));
/// let _: Wait<W> = Wait::idle(Duration::from_secs(2));
/// let _: Wait<W> = Wait::each(|_w: W| async { /* e.g. a ping call */ })
///     .timeout(Duration::from_secs(1));
/// ```
#[non_exhaustive]
pub enum Wait<M> {
    /// Run maintenance at once.
    None,
    /// Wait this long (ballermann's numeric wait), then run maintenance.
    Duration(Duration),
    /// Wait until every member's [`drain_load`](Member::drain_load) (its
    /// [`load`](Member::load) unless it says otherwise) is 0, checked every millisecond;
    /// past `timeout`, give up without running maintenance.
    ///
    /// Dead members of the current snapshot count as well: a crashed worker's queued
    /// messages move to its successor, which the snapshot may not hold yet, and a
    /// [`WorkerRef`](crate::WorkerRef)'s load is its slot's queue. A member type whose load
    /// means nothing once it is dead should answer 0 then.
    Idle {
        /// The deadline, counted from the start of the wait.
        timeout: Duration,
    },
    /// Await a function for every live member (ballermann's fun), all at once; past
    /// `timeout`, give up without running maintenance.
    Each {
        /// Called once per member; maintenance waits for every future it returns.
        f: EachFn<M>,
        /// The deadline, counted from the start of the wait.
        timeout: Duration,
    },
}

/// The function of [`Wait::Each`], boxed.
pub type EachFn<M> =
    Box<dyn Fn(M) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static>;

/// How long [`Wait::each`] waits by default: 5 s, like a `gen_server:call`.
const EACH_TIMEOUT: Duration = Duration::from_secs(5);

impl<M: Member> Wait<M> {
    /// Run maintenance at once.
    #[must_use]
    pub fn none() -> Self {
        Self::None
    }

    /// Wait for `d`, then run maintenance.
    #[must_use]
    pub fn duration(d: Duration) -> Self {
        Self::Duration(d)
    }

    /// Wait until every member, live or dead, is idle (`load() == 0`), at most `timeout`.
    #[must_use]
    pub fn idle(timeout: Duration) -> Self {
        Self::Idle { timeout }
    }

    /// Await `f(member)` for every live member, at most 5 s unless
    /// [`timeout`](Wait::timeout) says otherwise. A ping call that returns once the worker has
    /// handled everything queued before it is the classic use.
    pub fn each<F, Fut>(f: F) -> Self
    where
        F: Fn(M) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
    {
        Self::Each {
            f: Box::new(move |m| Box::pin(f(m).map(|_| ()))),
            timeout: EACH_TIMEOUT,
        }
    }

    /// Sets the deadline of an `idle` or `each` wait; other waits are unchanged.
    #[must_use]
    pub fn timeout(self, d: Duration) -> Self {
        match self {
            Self::Idle { .. } => Self::Idle { timeout: d },
            Self::Each { f, .. } => Self::Each { f, timeout: d },
            other => other,
        }
    }
}

impl<M> fmt::Debug for Wait<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("Wait::None"),
            Self::Duration(d) => write!(f, "Wait::Duration({d:?})"),
            Self::Idle { timeout } => write!(f, "Wait::Idle {{ timeout: {timeout:?} }}"),
            Self::Each { timeout, .. } => write!(f, "Wait::Each {{ timeout: {timeout:?}, .. }}"),
        }
    }
}

/// Why [`Balancer::apply_within`] did not return maintenance's result. Whatever the error, the
/// balancer has resumed dealing by the time it is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainError {
    /// The wait passed its deadline with `pending` members still busy (`idle`) or still not
    /// answered (`each`). Maintenance was **not** run.
    Timeout {
        /// Members still busy or unanswered at the deadline.
        pending: usize,
    },
    /// The wait function or maintenance panicked; the panic was caught (its message is
    /// logged with `tracing`). If the wait panicked, maintenance was not run.
    Panicked,
    /// `apply_within` was called from inside an `apply_within` of the same balancer (in its
    /// wait function or maintenance), which could only deadlock.
    Nested,
    /// [`apply_within_blocking`](Balancer::apply_within_blocking) was called from inside a
    /// tokio runtime, where blocking would stall it: use `apply_within(..).await` there.
    InRuntime,
}

impl fmt::Display for DrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { pending } => write!(
                f,
                "drain timed out with {pending} member(s) still busy; maintenance was not run"
            ),
            Self::Panicked => f.write_str("the drain's wait function or maintenance panicked"),
            Self::Nested => f.write_str(
                "apply_within called from inside its own maintenance or wait; it would deadlock",
            ),
            Self::InRuntime => f.write_str(
                "apply_within_blocking called inside a tokio runtime; await apply_within instead",
            ),
        }
    }
}

impl std::error::Error for DrainError {}

/// What a balancer keeps for drains: slow-path only, never read by a pick.
#[derive(Debug, Default)]
pub(super) struct DrainState {
    /// One drain at a time; the next waits its turn.
    serial: Mutex<()>,
    /// Woken when a drain ends, for `pick_wait` and a pool's `poll_ready`.
    pub(crate) resumed: std::sync::Arc<Notify>,
}

tokio::task_local! {
    /// The balancers whose `apply_within` the current task is inside, to refuse nesting.
    static DRAINING: Vec<usize>;
}

impl<M: Member> Balancer<M> {
    /// Stops handing out members, waits as `wait` says, runs `maintenance`, and resumes
    /// (ballermann's `apply_within`). Returns maintenance's output.
    ///
    /// While it runs, [`pick`](Balancer::pick) returns [`PickError::Draining`] at once and
    /// [`pick_wait`](Balancer::pick_wait) waits. Members handed out before the drain began may
    /// still be in use; [`Wait::idle`] and [`Wait::each`] are how to wait for them.
    ///
    /// # What a member picked before the drain may still do
    ///
    /// A drain does not revoke a [`Picked`](crate::Picked) (or a member cloned from one) taken
    /// before it began: whatever its holder hands that member afterwards reaches it, during
    /// the wait and during maintenance too. What the wait covers:
    ///
    /// - [`Wait::idle`] waits for the work that is counted in a member's
    ///   [`drain_load`](Member::drain_load) when it looks. Work counted before the drain
    ///   began is waited for; work a holder hands over after the wait saw the member idle is
    ///   not.
    /// - A [`Pool`](crate::Pool) closes that gap for every message that enters a worker
    ///   through it ([`call`](crate::Pool::call), [`call_for`](crate::Pool::call_for),
    ///   [`send`](crate::Pool::send), the tower `Service`): it counts the message into the
    ///   worker's load and only then looks at the drain flag once more, handing the message
    ///   back with `Draining` if the drain has begun. So with `Wait::idle`, no message that
    ///   goes through the pool is handled once maintenance has begun.
    ///   [`Pool::broadcast`](crate::Pool::broadcast) and [`Pool::map`](crate::Pool::map) go
    ///   to the workers, not through the balancer, and are not held back.
    /// - [`Wait::none`] and [`Wait::duration`] wait for nothing in particular: what was
    ///   queued before the drain may be handled during maintenance.
    ///
    /// Refreshes may still happen during a drain. [`Wait::idle`] checks the current snapshot
    /// each time, so members added meanwhile are waited for too. [`Wait::each`] awaits its
    /// function for every live member of the current snapshot; if a refresh replaced the
    /// snapshot meanwhile, it does so again for the new snapshot's members, until a round ends
    /// with no newer snapshot or the deadline passes.
    ///
    /// Two drains of one balancer run one after the other, never interleaved.
    ///
    /// # Errors
    ///
    /// - [`DrainError::Timeout`]: an `idle` or `each` wait passed its deadline; maintenance
    ///   was not run.
    /// - [`DrainError::Panicked`]: the wait function or maintenance panicked.
    /// - [`DrainError::Nested`]: called from inside this balancer's own `apply_within`.
    ///
    /// The balancer resumes dealing in every case.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future at any point resumes dealing (a drop guard lowers the
    /// drain flag and wakes `pick_wait`ers); maintenance that had started is abandoned at its
    /// current `.await`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::{Balancer, Member, PickError, Wait};
    /// # #[derive(Clone, Debug)] struct W; impl Member for W { fn is_alive(&self) -> bool { true } }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = Balancer::builder().source(vec![W, W]).build()?;
    /// let inside = b
    ///     .apply_within(Wait::idle(Duration::from_secs(1)), || async {
    ///         // Nothing is dealt while maintenance runs.
    ///         b.pick().unwrap_err()
    ///     })
    ///     .await?;
    /// assert_eq!(inside, PickError::Draining);
    /// assert!(b.pick().is_ok()); // and dealing resumed
    /// # Ok(()) }
    /// ```
    pub async fn apply_within<T, F, Fut>(
        &self,
        wait: Wait<M>,
        maintenance: F,
    ) -> Result<T, DrainError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let me = Arc::as_ptr(&self.shared) as *const () as usize;
        let mut chain = DRAINING.try_with(Vec::clone).unwrap_or_default();
        if chain.contains(&me) {
            return Err(DrainError::Nested);
        }
        let _turn = self.shared.drain.serial.lock().await;
        self.shared.cursor.start_drain();
        let _resume = Resume(self, Instant::now());
        chain.push(me);
        DRAINING
            .scope(chain, async {
                self.wait_out(wait).await?;
                AssertUnwindSafe(async { maintenance().await })
                    .catch_unwind()
                    .await
                    .map_err(|panic| panicked("maintenance", &*panic))
            })
            .await
    }

    /// [`apply_within`](Balancer::apply_within) for callers without a tokio runtime: runs it
    /// on a private current-thread runtime and blocks until it is done. `maintenance` is a
    /// plain closure.
    ///
    /// # Errors
    ///
    /// As `apply_within`, and [`DrainError::InRuntime`] when called inside a tokio runtime.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::{Balancer, Member, Wait};
    /// # #[derive(Clone)] struct W; impl Member for W { fn is_alive(&self) -> bool { true } }
    ///
    /// let b = Balancer::builder().source(vec![W]).build()?;
    /// let n = b.apply_within_blocking(Wait::duration(Duration::from_millis(1)), || 42)?;
    /// assert_eq!(n, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_within_blocking<T>(
        &self,
        wait: Wait<M>,
        maintenance: impl FnOnce() -> T,
    ) -> Result<T, DrainError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(DrainError::InRuntime);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime with only a timer builds on any supported platform");
        runtime.block_on(self.apply_within(wait, || async { maintenance() }))
    }

    /// Like [`pick`](Balancer::pick), but waits out a drain instead of answering `Draining`,
    /// for at most `timeout`; returns an owned member. Woken by the drain's end, not by
    /// polling.
    ///
    /// # Errors
    ///
    /// [`PickError::Draining`] if the drain outlasts `timeout`; otherwise as `pick`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it holds nothing but its place in the queue of waiters.
    pub async fn pick_wait(&self, timeout: Duration) -> Result<M, PickError> {
        let deadline = Instant::now() + timeout;
        loop {
            let resumed = self.shared.drain.resumed.notified();
            tokio::pin!(resumed);
            // Register before looking, so a drain that ends in between still wakes us.
            resumed.as_mut().enable();
            match self.pick() {
                Err(PickError::Draining) => {}
                other => return other.map(|p| p.cloned()),
            }
            if tokio::time::timeout_at(deadline, resumed).await.is_err() {
                return Err(PickError::Draining);
            }
        }
    }

    /// Whether work counted into a picked member's load may be queued for it now: false once
    /// a drain has begun. A pool asks this after it has counted a message into its worker's
    /// load and before it queues it, so that a drain's idle wait either sees that count or the
    /// message is refused (see [`Cursor::admit`](super::state::Cursor::admit)).
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        self.shared.cursor.admit(super::state::home_stripe())
    }

    /// What a drain's end wakes.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn resumed(&self) -> std::sync::Arc<Notify> {
        std::sync::Arc::clone(&self.shared.drain.resumed)
    }

    /// Whether an [`apply_within`](Balancer::apply_within) is in progress.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.shared.cursor.is_draining(super::state::home_stripe())
    }

    /// The wait phase of a drain.
    async fn wait_out(&self, wait: Wait<M>) -> Result<(), DrainError> {
        match wait {
            Wait::None => Ok(()),
            Wait::Duration(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Wait::Idle { timeout } => self.wait_idle(Instant::now() + timeout).await,
            Wait::Each { f, timeout } => self.wait_each(&f, Instant::now() + timeout).await,
        }
    }

    async fn wait_idle(&self, deadline: Instant) -> Result<(), DrainError> {
        const POLL: Duration = Duration::from_millis(1);
        loop {
            let busy = self
                .shared
                .snapshot
                .load()
                .entries
                .iter()
                // Dead members count too: a dead worker's queue moves to its successor,
                // which the snapshot may not hold yet.
                .filter(|s| s.member.drain_load() > 0)
                .count();
            if busy == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DrainError::Timeout { pending: busy });
            }
            tokio::time::sleep_until(deadline.min(Instant::now() + POLL)).await;
        }
    }

    async fn wait_each(&self, f: &EachFn<M>, deadline: Instant) -> Result<(), DrainError> {
        let mut generation = None;
        loop {
            let snap = self.shared.snapshot.load_full();
            if generation == Some(snap.generation) {
                return Ok(());
            }
            generation = Some(snap.generation);
            let mut round: FuturesUnordered<_> = snap
                .entries
                .iter()
                .filter(|s| s.member.is_alive())
                .map(|s| {
                    let member = s.member.clone();
                    AssertUnwindSafe(async move { f(member).await }).catch_unwind()
                })
                .collect();
            drop(snap);
            let mut pending = round.len();
            let finished = tokio::time::timeout_at(deadline, async {
                while let Some(done) = round.next().await {
                    done.map_err(|panic| panicked("wait function", &*panic))?;
                    pending -= 1;
                }
                Ok(())
            })
            .await;
            match finished {
                Err(_elapsed) => return Err(DrainError::Timeout { pending }),
                Ok(result) => result?,
            }
        }
    }
}

/// Resumes dealing when a drain ends, however it ends.
/// Its instant is tokio's, so that a paused clock times the drain as it times the rest.
struct Resume<'a, M: Member>(&'a Balancer<M>, Instant);

impl<M: Member> Drop for Resume<'_, M> {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        shared.cursor.end_drain();
        shared.drain.resumed.notify_waiters();
        shared.meter.drained(self.1.elapsed());
        shared.publish();
    }
}

/// Logs a caught panic and turns it into the error.
fn panicked(during: &str, panic: &(dyn Any + Send)) -> DrainError {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(
        during,
        message,
        "croupier drain caught a panic; dealing resumes"
    );
    DrainError::Panicked
}
