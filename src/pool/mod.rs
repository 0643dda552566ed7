//! [`Pool`]: a supervisor and a balancer in one value, the everyday entry point.

pub(crate) mod error;
pub(crate) mod retry;
#[cfg(feature = "tower")]
mod service;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures_util::future::join_all;

use self::error::{PoolCallError, PoolSendError};
use crate::{
    balancer::{Balancer, BalancerBuilder, BalancerStats, DrainError, Outcome, Picked, Wait},
    config::ConfigError,
    policy::error::PickError,
    policy::Policy,
    supervisor::{
        error::ResizeError, Backoff, Restart, Supervisor, SupervisorBuilder, SupervisorStats,
    },
    worker::{
        error::{CallError, SendError},
        slot::Admit,
        Mailbox, PendingReply, TryCall, TrySend, Worker, WorkerId, WorkerRef,
    },
};

/// A pool of supervised workers dealt out by a lock-free balancer.
///
/// [`broadcast`](Pool::broadcast) and [`map`](Pool::map) call every live worker at once;
/// [`resize`](Pool::resize) grows or shrinks the pool while it serves.
///
/// [`call`](Pool::call) and [`send`](Pool::send) pick a worker by the pool's [`Policy`] and
/// hand it the message; if the worker turns out to have died in between, they pick again (a
/// bounded number of times), so a crash costs the caller nothing but the message that was
/// in progress. The balancer learns of every restart at once.
///
/// Dropping the last clone of a pool without [`shutdown`](Pool::shutdown) stops its workers.
///
/// # Example
///
/// ```
/// use croupier::{Policy, Pool, Worker};
///
/// struct Square;
/// impl Worker for Square {
///     type Msg = u64;
///     type Reply = u64;
///     async fn handle(&mut self, n: u64) -> u64 {
///         n * n
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder(|_id| Square)
///     .size(4)
///     .policy(Policy::LeastLoaded)
///     .start()?;
/// assert_eq!(pool.call(7).await?, 49);
/// pool.send(3)?; // fire and forget
/// pool.shutdown().await; // the queued 3 is handled before this returns
/// # Ok(()) }
/// ```
pub struct Pool<W: Worker> {
    supervisor: Supervisor<W>,
    balancer: Balancer<WorkerRef<W>>,
    /// What retries and hedges spend; shared by every clone.
    budget: Arc<retry::Budget>,
    /// As a tower `Service`: this handle's reserved worker or what it waits for.
    #[cfg(feature = "tower")]
    ready: service::Readiness<W>,
}

/// A pool's default [hand-back](PoolBuilder::hand_back_after) delay.
const HAND_BACK: Duration = Duration::from_millis(1);

/// A pool's balancer and supervisor statistics together, from [`Pool::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The balancer's counters.
    pub balancer: BalancerStats,
    /// The supervisor's counters and every worker's load.
    pub supervisor: SupervisorStats,
}

impl<W: Worker> Pool<W> {
    /// Starts configuring a pool whose workers `factory` makes. See [`PoolBuilder`].
    pub fn builder<F>(factory: F) -> PoolBuilder<W>
    where
        F: Fn(WorkerId) -> W + Send + Sync + 'static,
    {
        let mut supervisor = Supervisor::builder(factory);
        supervisor.hand_back = Some(HAND_BACK);
        PoolBuilder {
            supervisor,
            balancer: Balancer::builder().policy(Policy::LeastLoaded),
            budget: retry::RetryBudget::default(),
        }
    }

    /// Picks a worker and calls it, picking again if the one picked has just died.
    ///
    /// # Errors
    ///
    /// - [`PoolCallError::WorkerDied`]: the worker panicked while handling this message.
    /// - [`PoolCallError::Shutdown`]: the pool has shut down or its supervisor gave up.
    /// - [`PoolCallError::NoMembers`], [`PoolCallError::Overloaded`],
    ///   [`PoolCallError::Draining`]: the balancer refused (see [`PickError`]).
    /// - [`PoolCallError::Dead`]: every worker picked died before taking the message, more
    ///   times in a row than the pool has workers (a crash storm).
    ///
    /// All but `WorkerDied` hand the message back.
    ///
    /// A call whose pick was made before a drain began but that would queue its message
    /// after it is refused with `Draining` too: once [`apply_within`](Pool::apply_within)'s
    /// wait has begun, no message enters a worker through the pool.
    ///
    /// With the `tower` feature, a call on a handle that `poll_ready` has made ready goes to
    /// the worker it reserved (as `svc.ready().await?.call(msg)` does, which on a `Pool`
    /// resolves to this method).
    ///
    /// # Cancel safety
    ///
    /// As [`WorkerRef::call`]: dropped before the message is queued (while it waits for room
    /// in a bounded mailbox), nothing is left behind; once queued, the message is handled even
    /// if the future is dropped, and the reply is discarded.
    ///
    /// A retry never goes back to a worker found dead (it reads dead from then on). With
    /// [outlier ejection](PoolBuilder::outlier_ejection) on, each reply is reported a success
    /// (or a failure, as [`Worker::failed`] says) and each `WorkerDied` a failure, against the
    /// worker's slot: a crash restarts the worker as a new incarnation, yet the count goes on,
    /// so a worker that keeps crashing is ejected, and its slot stays out through its restarts
    /// until its time is up.
    pub async fn call(&self, msg: W::Msg) -> Result<W::Reply, PoolCallError<W::Msg>> {
        // `svc.ready().await?.call(msg)` lands here on a `Pool`: use what `poll_ready`
        // reserved.
        #[cfg(feature = "tower")]
        if let Some(reservation) = self.ready.take() {
            return self.call_reserved(reservation, msg).await;
        }
        self.call_by(msg, Balancer::pick, None, true).await
    }

    /// Like [`call`](Pool::call), but to the worker of `key` ([`Balancer::pick_for`]): the
    /// same key goes to the same worker (slot) while it can take it, across the worker's
    /// restarts; with [`bounded_loads`](PoolBuilder::bounded_loads), a busy worker passes a
    /// hot key on.
    ///
    /// # Errors
    ///
    /// As [`call`](Pool::call).
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Pool::call).
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Pool, Worker, WorkerId};
    ///
    /// struct Who(WorkerId);
    /// impl Worker for Who {
    ///     type Msg = ();
    ///     type Reply = WorkerId;
    ///     async fn handle(&mut self, (): ()) -> WorkerId { self.0 }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Who).size(4).start()?;
    /// let first = pool.call_for("session-17", ()).await?;
    /// for _ in 0..5 {
    ///     assert_eq!(pool.call_for("session-17", ()).await?, first);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn call_for<K: std::hash::Hash + ?Sized>(
        &self,
        key: &K,
        msg: W::Msg,
    ) -> Result<W::Reply, PoolCallError<W::Msg>> {
        self.call_by(msg, |b| b.pick_for(key), None, false).await
    }

    /// Like [`call`](Pool::call), for a message that may be handled more than once: when the
    /// worker fails it (it panics, or [`Worker::failed`] calls its reply a failure), a clone
    /// goes to another worker ([`Balancer::pick_excluding`]), as long as the pool's
    /// [retry budget](PoolBuilder::retry_budget) has a token for it; each worker is tried at
    /// most once. The last answer is returned: a failed reply, or
    /// [`PoolCallError::WorkerDied`], when no other worker or no token was left.
    ///
    /// # Errors
    ///
    /// As [`call`](Pool::call), for the last attempt.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Pool::call): an attempt already queued is handled even if the future is
    /// dropped.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Pool, RetryBudget, Worker};
    ///
    /// /// Worker 0 fails every request; the others serve.
    /// struct Replica(usize);
    /// impl Worker for Replica {
    ///     type Msg = u32;
    ///     type Reply = Result<u32, String>;
    ///     async fn handle(&mut self, n: u32) -> Result<u32, String> {
    ///         if self.0 == 0 { Err("disk full".into()) } else { Ok(n) }
    ///     }
    ///     fn failed(reply: &Result<u32, String>) -> bool { reply.is_err() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(|id| Replica(id.slot()))
    ///     .size(2)
    ///     .retry_budget(RetryBudget::default())
    ///     .start()?;
    /// for n in 0..10 {
    ///     assert_eq!(pool.call_idempotent(n).await?, Ok(n));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn call_idempotent(&self, msg: W::Msg) -> Result<W::Reply, PoolCallError<W::Msg>>
    where
        W::Msg: Clone,
    {
        self.budget.deposit();
        let mut tried: Vec<WorkerRef<W>> = Vec::new();
        loop {
            let seen = parking_lot::Mutex::new(None);
            let answer = self
                .call_by(msg.clone(), |b| b.pick_excluding(&tried), Some(&seen), true)
                .await;
            let Some(worker) = seen.into_inner() else {
                return answer;
            };
            if !is_failure::<W>(&answer) || !self.budget.withdraw() {
                return answer;
            }
            tried.push(worker);
            if tried.len() >= self.supervisor.size() {
                return answer;
            }
        }
    }

    /// Like [`call`](Pool::call), with a hedge: when no answer has come `after` the message
    /// was queued, a clone goes to another worker ([`Balancer::pick_excluding`]) if the
    /// pool's [retry budget](PoolBuilder::retry_budget) has a token for it, and the first
    /// answer that is not a failure wins (the other is still handled; its reply is
    /// discarded). So one slow worker does not make a call slow. The message may be handled
    /// twice.
    ///
    /// # Errors
    ///
    /// As [`call`](Pool::call); when both attempts fail, the second's error.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Pool::call), for each attempt.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::{Policy, Pool, Worker};
    ///
    /// /// Worker 0 takes a second a request; worker 1 answers at once.
    /// struct Replica(usize);
    /// impl Worker for Replica {
    ///     type Msg = ();
    ///     type Reply = usize;
    ///     async fn handle(&mut self, (): ()) -> usize {
    ///         if self.0 == 0 {
    ///             tokio::time::sleep(Duration::from_secs(1)).await;
    ///         }
    ///         self.0
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(|id| Replica(id.slot()))
    ///     .size(2)
    ///     .policy(Policy::RoundRobin)
    ///     .start()?;
    /// let start = tokio::time::Instant::now();
    /// // Round robin deals worker 0 first: after 10 ms, worker 1 gets a copy and answers.
    /// assert_eq!(pool.call_hedged((), Duration::from_millis(10)).await?, 1);
    /// assert!(start.elapsed() < Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub async fn call_hedged(
        &self,
        msg: W::Msg,
        after: Duration,
    ) -> Result<W::Reply, PoolCallError<W::Msg>>
    where
        W::Msg: Clone,
    {
        self.budget.deposit();
        let seen = parking_lot::Mutex::new(None);
        let first = self.call_by(msg.clone(), Balancer::pick, Some(&seen), true);
        tokio::pin!(first);
        tokio::select! {
            biased;
            answer = &mut first => return answer,
            () = tokio::time::sleep(after) => {}
        }
        let tried: Vec<WorkerRef<W>> = seen.lock().iter().cloned().collect();
        if !self.budget.withdraw() {
            return first.await;
        }
        let second = self.call_by(msg, |b| b.pick_excluding(&tried), None, true);
        tokio::pin!(second);
        tokio::select! {
            answer = &mut first => {
                if is_failure::<W>(&answer) { second.await } else { answer }
            }
            answer = &mut second => {
                if is_failure::<W>(&answer) { first.await } else { answer }
            }
        }
    }

    /// Calls the worker `pick` chooses, again while the chosen one turns out dead, and
    /// reports each outcome; the worker that took the message is left in `seen`.
    async fn call_by<'a>(
        &'a self,
        mut msg: W::Msg,
        pick: impl Fn(&'a Balancer<WorkerRef<W>>) -> Result<Picked<'a, WorkerRef<W>>, PickError>,
        seen: Option<&parking_lot::Mutex<Option<WorkerRef<W>>>>,
        movable: bool,
    ) -> Result<W::Reply, PoolCallError<W::Msg>> {
        let admit = &|| self.balancer.admits();
        for _ in 0..self.attempts() {
            if self.supervisor.is_stopped() {
                return Err(PoolCallError::Shutdown(msg));
            }
            // The pick guard must not live across an await: settle what to wait for first.
            let (mut ticket, picked, waiting) = match pick(&self.balancer) {
                Err(e) => return Err(PoolCallError::refused(e, msg)),
                Ok(worker) => {
                    if let Some(seen) = seen {
                        *seen.lock() = Some(worker.cloned());
                    }
                    (
                        worker.ticket(),
                        worker.id().slot(),
                        Delivery::queue(&worker, msg, admit, movable),
                    )
                }
            };
            let answer = match waiting.answer().await {
                // A drain began between the pick and the queueing: the message was never
                // queued, and must not be handled during the maintenance.
                Err(TryCall::Barred(m)) => return Err(PoolCallError::Draining(m)),
                Err(TryCall::Refused(CallError::Dead(m))) => {
                    msg = m;
                    continue;
                }
                Err(TryCall::Refused(e)) => Err(e),
                Err(TryCall::Full(_)) => unreachable!("a call waits for room, never ends full"),
                Ok((reply, by)) => {
                    // Hand-back moved it: the report is about the worker that replied.
                    if by != picked {
                        ticket = ticket.handled_by(by as u64);
                    }
                    Ok(reply)
                }
            };
            let outcome = match &answer {
                Err(CallError::WorkerDied) => Outcome::Failure,
                Ok(reply) if judged_failed::<W>(reply) => Outcome::Failure,
                _ => Outcome::Success,
            };
            self.balancer.report(ticket, outcome);
            return answer.map_err(PoolCallError::from);
        }
        Err(PoolCallError::Dead(msg))
    }

    /// Picks a worker and queues `msg` for it without waiting, picking again if the one
    /// picked has just died.
    ///
    /// # Errors
    ///
    /// Hands the message back: [`PoolSendError::Full`] (the picked worker's bounded mailbox
    /// is full), [`PoolSendError::Shutdown`], [`PoolSendError::NoMembers`],
    /// [`PoolSendError::Overloaded`], [`PoolSendError::Draining`], or
    /// [`PoolSendError::Dead`] after too many dead picks in a row.
    pub fn send(&self, mut msg: W::Msg) -> Result<(), PoolSendError<W::Msg>> {
        for _ in 0..self.attempts() {
            if self.supervisor.is_stopped() {
                return Err(PoolSendError::Shutdown(msg));
            }
            let worker = match self.balancer.pick() {
                Ok(worker) => worker,
                Err(e) => return Err(PoolSendError::refused(e, msg)),
            };
            match worker.try_send(msg, &|| self.balancer.admits(), true) {
                Err(TrySend::Refused(SendError::Dead(m))) => msg = m,
                // A drain began between the pick and the queueing: not queued.
                Err(TrySend::Barred(m)) => return Err(PoolSendError::Draining(m)),
                Err(TrySend::Refused(e)) => return Err(PoolSendError::from(e)),
                Ok(()) => return Ok(()),
            }
        }
        Err(PoolSendError::Dead(msg))
    }

    /// Calls every live worker (the supervisor's current [children](Supervisor::children))
    /// with a clone of `msg`, all at once, and waits for every reply: revolver's `map/2`,
    /// kameo's broadcast. One result a worker, in slot order, with the id of the worker its
    /// copy was addressed to.
    ///
    /// Neither the balancer's [`max_load`](PoolBuilder::max_load) nor a drain
    /// ([`apply_within`](Pool::apply_within)) holds it back: it goes to the workers, not
    /// through the balancer. Each message is queued behind those already waiting in its
    /// worker's mailbox (in a full bounded one, once there is room).
    ///
    /// A queued copy goes where its mailbox's messages go. If its worker crashes on an
    /// earlier message, the successor in the same slot handles the copy; if a
    /// [shrink](Pool::resize) takes the worker out, a worker that remains handles it (and so
    /// handles two copies). Either way the result still carries the id the copy was
    /// addressed to: a reply that must name the worker that made it can carry that worker's
    /// own id.
    ///
    /// An empty `Vec` means that no worker was live: the pool has shut down, its supervisor
    /// gave up, or every worker ended for good.
    ///
    /// # Errors
    ///
    /// Each worker's result is its [`WorkerRef::call`]'s:
    /// - [`CallError::WorkerDied`]: the worker handling the copy panicked while doing so.
    /// - [`CallError::Dead`]: the worker had died by the time the copy was queued, or its
    ///   slot ended for good (no successor) with the copy still queued, or a shrink took it
    ///   out and no worker remained to take the copy. The copy is not sent to another
    ///   worker then: the others got theirs once.
    /// - [`CallError::Shutdown`]: the pool stopped first.
    ///
    /// The copy comes back in the error but for `WorkerDied`.
    ///
    /// # Cancel safety
    ///
    /// Every copy is queued at the first poll (but one that waits for room in a bounded
    /// mailbox). Dropping the future then does not withdraw them: the workers still handle
    /// them, and the replies are discarded.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Pool, Worker, WorkerId};
    ///
    /// struct Counter(u64);
    /// impl Worker for Counter {
    ///     type Msg = u64;
    ///     type Reply = u64;
    ///     async fn handle(&mut self, n: u64) -> u64 {
    ///         self.0 += n;
    ///         self.0
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(|_| Counter(0)).size(3).start()?;
    /// let replies = pool.broadcast(5).await;
    /// assert_eq!(replies.len(), 3);
    /// for (slot, (id, reply)) in replies.into_iter().enumerate() {
    ///     assert_eq!(id, WorkerId::new(slot, 0));
    ///     assert_eq!(reply?, 5);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn broadcast(
        &self,
        msg: W::Msg,
    ) -> Vec<(WorkerId, Result<W::Reply, CallError<W::Msg>>)>
    where
        W::Msg: Clone,
    {
        // The clones are made before the first await: the future holds no borrow of `msg`,
        // so it is `Send` whenever the message is, `Sync` or not.
        let calls = self.queue_each(|_| msg.clone());
        join_all(calls).await
    }

    /// Calls every live worker (the supervisor's current [children](Supervisor::children))
    /// with the message `f` makes for it from its id, all at once, and waits for every reply.
    /// One result a worker, in slot order, with the id `f` was called with for it. `f` is
    /// called once a worker, in slot order, before anything is awaited.
    ///
    /// As [`broadcast`](Pool::broadcast) (which is `map` with a clone for each), but the
    /// messages need not be `Clone` and may differ: a shard each, a worker's own settings.
    /// A message goes where its mailbox's messages go, as there: to the successor in the
    /// same slot after a crash, to a worker that remains after a shrink. Its result is still
    /// reported under the id it was made for.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Pool::broadcast), one result a worker.
    ///
    /// # Cancel safety
    ///
    /// As [`broadcast`](Pool::broadcast).
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Pool, Worker};
    ///
    /// struct Sum;
    /// impl Worker for Sum {
    ///     type Msg = Vec<u64>;
    ///     type Reply = u64;
    ///     async fn handle(&mut self, shard: Vec<u64>) -> u64 {
    ///         shard.iter().sum()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(|_| Sum).size(2).start()?;
    /// let data: Vec<u64> = (1..=10).collect();
    /// // Worker in slot i sums the i-th half.
    /// let replies = pool.map(|id| data.chunks(5).nth(id.slot()).unwrap().to_vec()).await;
    /// let sums: Vec<u64> = replies.into_iter().map(|(_, r)| r.unwrap()).collect();
    /// assert_eq!(sums, [15, 40]);
    /// # Ok(()) }
    /// ```
    pub async fn map(
        &self,
        f: impl FnMut(WorkerId) -> W::Msg,
    ) -> Vec<(WorkerId, Result<W::Reply, CallError<W::Msg>>)> {
        let calls = self.queue_each(f);
        join_all(calls).await
    }

    /// Queues a call to every live worker, in slot order, with the message `f` makes for it;
    /// returns what each waits for, under the id the message was addressed to. `f` is spent
    /// before anything is awaited.
    fn queue_each(
        &self,
        mut f: impl FnMut(WorkerId) -> W::Msg,
    ) -> Vec<impl Future<Output = EachReply<W>>> {
        self.supervisor
            .children()
            .into_iter()
            .map(|worker| {
                let id = worker.id();
                let waiting = Delivery::queue(&worker, f(id), &open, false);
                async move { (id, waiting.reply().await) }
            })
            .collect()
    }

    /// Grows or shrinks the pool to `n` workers: [`Supervisor::resize`] on the pool's
    /// supervisor, whose balancer follows before this returns (or waits).
    ///
    /// Growing adds workers `size()..n` from the factory to the rotation. Shrinking takes
    /// workers `n..size()` out: no new message goes to them, their queued messages move to
    /// the workers that remain (each queued [`call`](Pool::call) gets its reply from the
    /// worker that handles it, each queued [`send`](Pool::send) is handled there), and they
    /// finish the message in hand, run their [`stopping`](Worker::stopping) hook and stop,
    /// which this waits for, unless it is awaited by one of the pool's own workers (see
    /// [`Supervisor::resize`]: then it returns once they read dead, and they finish in the
    /// background). [`stats`](Pool::stats) and [`Supervisor::size`] show the new
    /// size at once.
    ///
    /// # Errors
    ///
    /// [`ResizeError::ZeroSize`] for `resize(0)` (a pool runs at least one worker; use
    /// [`shutdown`](Pool::shutdown) to stop them all), [`ResizeError::Shutdown`] once the
    /// pool has shut down or its supervisor gave up. Nothing changes in either case.
    ///
    /// # Cancel safety
    ///
    /// As [`Supervisor::resize`]: the resize is done at the first poll; dropping the future
    /// afterwards leaves the workers taken out to finish and stop in the background.
    ///
    /// # Example
    ///
    /// ```
    /// use std::collections::HashSet;
    ///
    /// use croupier::{Pool, Worker, WorkerId};
    ///
    /// struct Who(WorkerId);
    /// impl Worker for Who {
    ///     type Msg = ();
    ///     type Reply = WorkerId;
    ///     async fn handle(&mut self, (): ()) -> WorkerId { self.0 }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Who).size(2).start()?;
    /// pool.resize(4).await?;
    /// let mut seen = HashSet::new();
    /// for _ in 0..4 {
    ///     seen.insert(pool.call(()).await?);
    /// }
    /// assert_eq!(seen.len(), 4, "the new workers are picked (ties among idle ones go round)");
    ///
    /// pool.resize(1).await?;
    /// assert_eq!(pool.stats().supervisor.workers.len(), 1);
    /// assert_eq!(pool.call(()).await?, WorkerId::new(0, 0));
    /// # Ok(()) }
    /// ```
    pub async fn resize(&self, n: usize) -> Result<(), ResizeError> {
        self.supervisor.resize(n).await
    }

    /// Picks a worker without sending it anything. See [`Balancer::pick`].
    ///
    /// # Errors
    ///
    /// As [`Balancer::pick`].
    pub fn pick(&self) -> Result<Picked<'_, WorkerRef<W>>, PickError> {
        self.balancer.pick()
    }

    /// The pool's balancer.
    #[must_use]
    pub fn balancer(&self) -> &Balancer<WorkerRef<W>> {
        &self.balancer
    }

    /// The pool's supervisor.
    #[must_use]
    pub fn supervisor(&self) -> &Supervisor<W> {
        &self.supervisor
    }

    /// Stops dealing, waits, runs `maintenance`, and resumes: [`Balancer::apply_within`] on
    /// the pool's balancer. Meanwhile [`call`](Pool::call), [`call_for`](Pool::call_for) and
    /// [`send`](Pool::send) answer `Draining` with the message inside, and so does one whose
    /// pick came before the drain but whose message would be queued after it began: with
    /// [`Wait::idle`], no message that goes through the pool is handled during
    /// maintenance (see [`Balancer::apply_within`] for the details).
    ///
    /// # Errors
    ///
    /// As [`Balancer::apply_within`].
    ///
    /// # Cancel safety
    ///
    /// As [`Balancer::apply_within`]: dropping the future resumes dealing.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::{Pool, Wait, Worker};
    ///
    /// struct Echo;
    /// impl Worker for Echo {
    ///     type Msg = u32;
    ///     type Reply = u32;
    ///     async fn handle(&mut self, n: u32) -> u32 { n }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(|_| Echo).size(2).start()?;
    /// pool.send(1)?;
    /// // Wait until both workers are idle, then "rotate the logs".
    /// let rotated = pool
    ///     .apply_within(Wait::idle(Duration::from_secs(1)), || async { "rotated" })
    ///     .await?;
    /// assert_eq!(rotated, "rotated");
    /// assert_eq!(pool.call(2).await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn apply_within<T, F, Fut>(
        &self,
        wait: Wait<WorkerRef<W>>,
        maintenance: F,
    ) -> Result<T, DrainError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.balancer.apply_within(wait, maintenance).await
    }

    /// Balancer and supervisor statistics.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            balancer: self.balancer.stats(),
            supervisor: self.supervisor.stats(),
        }
    }

    /// Stops dealing at once, lets every worker finish its queued messages, and waits for
    /// every task to end. Later calls get `Shutdown`.
    ///
    /// # Cancel safety
    ///
    /// As [`Supervisor::shutdown`]: dropping the future does not undo the shutdown.
    pub async fn shutdown(&self) {
        self.supervisor.shutdown().await;
    }

    /// Sends the pool's picks, live workers and run-queue total to the `metrics` recorder now
    /// (with the `metrics` feature). See [`Balancer::publish_metrics`].
    pub fn publish_metrics(&self) {
        self.balancer.publish_metrics();
    }

    /// How many picks a call makes before it gives up on dead workers.
    fn attempts(&self) -> usize {
        self.supervisor.size() + 2
    }
}

/// One worker's answer to [`Pool::map`] or [`Pool::broadcast`].
type EachReply<W> = (
    WorkerId,
    Result<<W as Worker>::Reply, CallError<<W as Worker>::Msg>>,
);

/// What a call waits for once its message is queued or refused (and any pick guard gone).
enum Delivery<'a, W: Worker> {
    Reply(PendingReply<W>),
    /// The bounded mailbox was full: wait for room, behind the same gate.
    Room(WorkerRef<W>, W::Msg, Admit<'a>, bool),
    NotQueued(TryCall<W::Msg>),
}

impl<'a, W: Worker> Delivery<'a, W> {
    /// Queues a call to `worker` without waiting, behind `admit` (see
    /// [`Balancer::admits`]): a drain that began since the pick bars it.
    /// `movable`: the pool chose the worker, so the message may move to a free one.
    fn queue(worker: &WorkerRef<W>, msg: W::Msg, admit: Admit<'a>, movable: bool) -> Self {
        match worker.try_call(msg, admit, movable) {
            Ok(pending) => Self::Reply(pending),
            Err(TryCall::Full(m)) => Self::Room(worker.clone(), m, admit, movable),
            Err(e) => Self::NotQueued(e),
        }
    }

    /// Waits for room if need be, then for the reply and the slot of the worker that made
    /// it; a call that was not queued says why.
    async fn answer(self) -> Result<(W::Reply, usize), TryCall<W::Msg>> {
        let pending = match self {
            Self::Reply(pending) => pending,
            Self::Room(worker, m, admit, movable) => {
                worker.call_when_room(m, admit, movable).await?
            }
            Self::NotQueued(e) => return Err(e),
        };
        pending.wait_by().await.map_err(TryCall::Refused)
    }

    /// [`answer`](Delivery::answer) for a call queued through the open gate.
    async fn reply(self) -> Result<W::Reply, CallError<W::Msg>> {
        self.answer()
            .await
            .map(|(reply, _)| reply)
            .map_err(|e| match e {
                TryCall::Refused(e) => e,
                TryCall::Full(_) | TryCall::Barred(_) => {
                    unreachable!("an open gate bars nothing, and waiting for room ends full")
                }
            })
    }
}

/// The gate of a message that goes to a worker whatever the balancer says (a broadcast).
fn open() -> bool {
    true
}

/// The worker's own rule ([`Worker::failed`]); a panic in it counts as a failure, not the
/// caller's.
fn judged_failed<W: Worker>(reply: &W::Reply) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| W::failed(reply))).unwrap_or(true)
}

/// Whether a call's answer is the worker's failure: it died handling it, or its reply is one.
fn is_failure<W: Worker>(answer: &Result<W::Reply, PoolCallError<W::Msg>>) -> bool {
    match answer {
        Err(PoolCallError::WorkerDied) => true,
        Ok(reply) => judged_failed::<W>(reply),
        Err(_) => false,
    }
}

impl<W: Worker> Clone for Pool<W> {
    fn clone(&self) -> Self {
        Self {
            supervisor: self.supervisor.clone(),
            balancer: self.balancer.clone(),
            budget: Arc::clone(&self.budget),
            #[cfg(feature = "tower")]
            ready: service::Readiness::default(),
        }
    }
}

impl<W: Worker> fmt::Debug for Pool<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("supervisor", &self.supervisor)
            .field("balancer", &self.balancer)
            .finish()
    }
}

/// Configures a [`Pool`]: the settings of its [`SupervisorBuilder`] and
/// [`BalancerBuilder`] in one place. Made by [`Pool::builder`].
///
/// Defaults: 1 worker, [`Policy::LeastLoaded`] (the arena's best for a pool: see
/// [choosing a policy](crate::docs::choosing_a_policy)), [`Restart::Permanent`], at most 10 restarts a
/// second, an unbounded mailbox.
#[must_use = "a builder does nothing until .start()"]
pub struct PoolBuilder<W: Worker> {
    supervisor: SupervisorBuilder<W>,
    balancer: BalancerBuilder<WorkerRef<W>>,
    budget: retry::RetryBudget,
}

impl<W: Worker> PoolBuilder<W> {
    /// How many workers to run: at least 1, at most 2²⁰ (1 048 576).
    pub fn size(mut self, n: usize) -> Self {
        self.supervisor = self.supervisor.size(n);
        self
    }

    /// The rule to pick workers by; [`Policy::LeastLoaded`] by default.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.balancer = self.balancer.policy(policy);
        self
    }

    /// See [`BalancerBuilder::min_alive_ratio`](crate::BalancerBuilder::min_alive_ratio).
    /// A pool also refreshes at every restart, so this matters only for deaths that are not
    /// followed by one.
    pub fn min_alive_ratio(mut self, ratio: f64) -> Self {
        self.balancer = self.balancer.min_alive_ratio(ratio);
        self
    }

    /// Pass over workers with `n` or more messages queued or in progress; refuse with
    /// `Overloaded` when all have. See
    /// [`BalancerBuilder::max_load`](crate::BalancerBuilder::max_load).
    pub fn max_load(mut self, n: usize) -> Self {
        self.balancer = self.balancer.max_load(n);
        self
    }

    /// Seeds [`Policy::PowerOfTwo`]'s samples and [`Policy::LeastLoaded`]'s starting place
    /// (see [`BalancerBuilder::seed`](crate::BalancerBuilder::seed)).
    pub fn seed(mut self, seed: u64) -> Self {
        self.balancer = self.balancer.seed(seed);
        self
    }

    /// The pool's name: the `name` label of its balancer's and its supervisor's metrics (with
    /// the `metrics` feature; see [the table](crate::docs::metrics)). `"unnamed"` if unset.
    ///
    /// # Example
    ///
    /// ```
    /// # use croupier::{Pool, Worker};
    /// # struct Echo;
    /// # impl Worker for Echo {
    /// #     type Msg = u32;
    /// #     type Reply = u32;
    /// #     async fn handle(&mut self, m: u32) -> u32 { m }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(|_| Echo).size(2).name("resize").start().unwrap();
    /// assert_eq!(pool.call(7).await.unwrap(), 7);
    /// pool.publish_metrics(); // croupier_picks_total{name="resize"} is 1
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        let name = name.into();
        self.supervisor = self.supervisor.name(name.clone());
        self.balancer = self.balancer.name(name);
        self
    }

    /// Key affinity with bounded loads for [`call_for`](Pool::call_for): see
    /// [`BalancerBuilder::bounded_loads`](crate::BalancerBuilder::bounded_loads).
    pub fn bounded_loads(mut self, epsilon: f64) -> Self {
        self.balancer = self.balancer.bounded_loads(epsilon);
        self
    }

    /// Slow start for the workers a [`resize`](Pool::resize) adds (restarts keep their
    /// slot's place, and do not warm): see
    /// [`BalancerBuilder::slow_start`](crate::BalancerBuilder::slow_start).
    pub fn slow_start(mut self, slow_start: crate::balancer::SlowStart) -> Self {
        self.balancer = self.balancer.slow_start(slow_start);
        self
    }

    /// Hand-back of a slow worker's queue: once a worker has been on one message for `after`,
    /// the messages queued behind it that came through the pool ([`call`](Pool::call),
    /// [`send`](Pool::send), [`call_idempotent`](Pool::call_idempotent),
    /// [`call_hedged`](Pool::call_hedged), the tower `Service`) move to free workers (serving,
    /// with nothing queued or in hand, no recent [failure](Worker::failed), not
    /// [ejected](PoolBuilder::outlier_ejection)), one each, and again whenever another worker frees up
    /// while it is still on that message. So a call does not wait behind a slow one while a
    /// worker sits idle: what one shared queue gives, without sharing one. A message
    /// addressed to the worker ([`WorkerRef`], [`call_for`](Pool::call_for),
    /// [`broadcast`](Pool::broadcast)) keeps its place, and so does every message behind it.
    /// Moved messages are handled out of the order they were queued in; none is lost, and
    /// nothing moves during a shutdown or a drain.
    ///
    /// On by default, after 1 ms: in the arena it brings a `Pool`'s p99 from 1.08–1.33× the
    /// ideal (one shared queue) to 1.04–1.16× across uneven jobs, mixed speeds, a slow, failing,
    /// dead, crash-looping or cold worker (`BENCHMARKS.md`). `Duration::MAX` turns it off (a
    /// worker's queue then waits for it, as a plain mailbox does). A handler that finishes on
    /// its first poll costs nothing; one that waits arms a timer for the delay.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::{Policy, Pool, Worker};
    ///
    /// /// Message `true` takes a second; the others, no time.
    /// struct Job(usize);
    /// impl Worker for Job {
    ///     type Msg = bool;
    ///     type Reply = usize;
    ///     async fn handle(&mut self, slow: bool) -> usize {
    ///         if slow {
    ///             tokio::time::sleep(Duration::from_secs(1)).await;
    ///         }
    ///         self.0
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(|id| Job(id.slot()))
    ///     .size(2)
    ///     .policy(Policy::RoundRobin)
    ///     .hand_back_after(Duration::from_millis(5))
    ///     .start()?;
    /// let slow = tokio::spawn({ let pool = pool.clone(); async move { pool.call(true).await } });
    /// tokio::task::yield_now().await; // worker 0 takes the slow one
    /// pool.pick()?; // round robin's next turn is worker 1's: skip it
    /// // Queued behind the slow message on worker 0, then handed to worker 1.
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(pool.call(false).await?, 1);
    /// assert_eq!(start.elapsed(), Duration::from_millis(5));
    /// assert_eq!(slow.await??, 0);
    /// # Ok(()) }
    /// ```
    pub fn hand_back_after(mut self, after: Duration) -> Self {
        self.supervisor.hand_back = (after != Duration::MAX).then_some(after);
        self
    }

    /// How many retries and hedges [`call_idempotent`](Pool::call_idempotent) and
    /// [`call_hedged`](Pool::call_hedged) may make: [`RetryBudget`](crate::RetryBudget)'s
    /// default (20 % of the calls plus 10 a second) unless set.
    pub fn retry_budget(mut self, budget: retry::RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Outlier ejection of workers whose calls fail: see
    /// [`BalancerBuilder::outlier_ejection`](crate::BalancerBuilder::outlier_ejection) and
    /// [`Pool::call`].
    pub fn outlier_ejection(mut self, ejection: crate::balancer::Ejection) -> Self {
        self.balancer = self.balancer.outlier_ejection(ejection);
        self
    }

    /// See [`SupervisorBuilder::restart`].
    pub fn restart(mut self, restart: Restart) -> Self {
        self.supervisor = self.supervisor.restart(restart);
        self
    }

    /// See [`SupervisorBuilder::intensity`].
    pub fn intensity(mut self, max_restarts: u32, window: std::time::Duration) -> Self {
        self.supervisor = self.supervisor.intensity(max_restarts, window);
        self
    }

    /// See [`SupervisorBuilder::backoff`].
    pub fn backoff(mut self, backoff: impl Into<Backoff>) -> Self {
        self.supervisor = self.supervisor.backoff(backoff);
        self
    }

    /// See [`SupervisorBuilder::mailbox`].
    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.supervisor = self.supervisor.mailbox(mailbox);
        self
    }

    /// Checks every setting, then starts the workers and the balancer over them.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`] of the supervisor's or the balancer's settings; nothing is started
    /// then.
    pub fn start(self) -> Result<Pool<W>, ConfigError> {
        self.supervisor.check()?;
        // Check the balancer's settings before any task starts.
        self.balancer.check()?;
        let supervisor = self.supervisor.start()?;
        let balancer = self.balancer.source(supervisor.children_source()).build()?;
        supervisor.attach(&balancer);
        Ok(Pool {
            supervisor,
            balancer,
            budget: Arc::new(retry::Budget::new(self.budget)),
            #[cfg(feature = "tower")]
            ready: service::Readiness::default(),
        })
    }
}

impl<W: Worker> fmt::Debug for PoolBuilder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("supervisor", &self.supervisor)
            .field("balancer", &self.balancer)
            .finish()
    }
}
