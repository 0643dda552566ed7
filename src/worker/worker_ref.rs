//! [`WorkerRef`]: the handle a balancer deals out, and the slot it points into.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
};

use tokio::sync::oneshot;

use super::{
    error::{CallError, SendError},
    mailbox::{Envelope, Outcome, Refused},
    slot::{Admit, Slot},
    state::Closed,
    Worker, WorkerId,
};
use crate::member::Member;

/// A handle to one incarnation of a supervised [`Worker`]: send it messages, call it, and hand
/// it out through a [`Balancer`](crate::Balancer) (it is a [`Member`]).
///
/// [`is_alive`](Member::is_alive) turns false the moment the incarnation dies: a restarted
/// worker gets a new `WorkerRef` with a new [`WorkerId`], so a stale handle never reaches the
/// successor by mistake, and a message sent through it comes back in the error.
/// [`load`](Member::load) is the slot's run-queue length, one atomic load.
///
/// Two `WorkerRef`s are equal when they point at the same incarnation.
///
/// # Example
///
/// ```
/// use croupier::{Member, Supervisor, Worker};
///
/// struct Echo;
/// impl Worker for Echo {
///     type Msg = String;
///     type Reply = String;
///     async fn handle(&mut self, s: String) -> String { s }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sup = Supervisor::builder(|_| Echo).size(1).start()?;
/// let worker = sup.children().remove(0);
/// assert_eq!(worker.id().to_string(), "0.0");
/// assert!(worker.is_alive());
/// assert_eq!(worker.call("hi".to_string()).await?, "hi");
/// sup.shutdown().await;
/// assert!(!worker.is_alive());
/// # Ok(()) }
/// ```
pub struct WorkerRef<W: Worker> {
    slot: Arc<Slot<W>>,
    incarnation: u64,
}

impl<W: Worker> WorkerRef<W> {
    pub(crate) fn new(slot: Arc<Slot<W>>, incarnation: u64) -> Self {
        Self { slot, incarnation }
    }

    /// Which worker this is: slot and incarnation.
    #[must_use]
    pub fn id(&self) -> WorkerId {
        WorkerId::new(self.slot.index, self.incarnation)
    }

    /// Queues `msg` without waiting for it to be handled (fire and forget).
    ///
    /// # Errors
    ///
    /// Hands the message back: [`SendError::Dead`] if this incarnation has died (pick again),
    /// [`SendError::Full`] if its bounded mailbox is full, [`SendError::Shutdown`] once the
    /// supervisor has stopped.
    pub fn send(&self, msg: W::Msg) -> Result<(), SendError<W::Msg>> {
        self.try_send(msg, &|| true, false).map_err(|e| match e {
            TrySend::Refused(e) => e,
            TrySend::Barred(_) => unreachable!("an open gate bars nothing"),
        })
    }

    /// [`send`](WorkerRef::send) behind `admit`, asked once the message is counted in the
    /// load and before it is queued (see [`Slot::try_push`]).
    pub(crate) fn try_send(
        &self,
        msg: W::Msg,
        admit: Admit<'_>,
        movable: bool,
    ) -> Result<(), TrySend<W::Msg>> {
        if let Some(why) = self.refusal() {
            return Err(TrySend::Refused(SendError::closed(msg, why)));
        }
        let env = Envelope {
            msg,
            reply: None,
            movable,
        };
        match self.slot.try_push(env, admit) {
            Ok(()) => Ok(()),
            Err(Refused::Full(env)) => Err(TrySend::Refused(SendError::Full(env.msg))),
            Err(Refused::Closed(env)) => Err(TrySend::Refused(SendError::closed(
                env.msg,
                self.closed_reason(),
            ))),
            Err(Refused::Barred(env)) => Err(TrySend::Barred(env.msg)),
        }
    }

    /// Sends `msg` and waits for the reply. In a bounded mailbox, waits for room first.
    ///
    /// # Errors
    ///
    /// [`CallError::WorkerDied`] if the worker panicked while handling this message; otherwise
    /// the message comes back unhandled: [`CallError::Dead`] (pick again) or
    /// [`CallError::Shutdown`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the message is queued leaves nothing behind. Dropping it
    /// after does not withdraw the message: the worker still handles it, and the reply is
    /// discarded.
    pub async fn call(&self, msg: W::Msg) -> Result<W::Reply, CallError<W::Msg>> {
        let open = &|| true;
        let queued = match self.try_call(msg, open, false) {
            Err(TryCall::Full(msg)) => self.call_when_room(msg, open, false).await,
            other => other,
        };
        match queued {
            Ok(pending) => pending.wait().await,
            Err(TryCall::Refused(e)) => Err(e),
            Err(TryCall::Full(_) | TryCall::Barred(_)) => {
                unreachable!("an open gate bars nothing, and waiting for room ends full")
            }
        }
    }

    /// Queues a call without waiting for room, behind `admit` (see [`Slot::try_push`]); the
    /// reply is awaited separately, so that the caller need not hold the handle (or a
    /// [`Picked`](crate::Picked)) while it waits.
    pub(crate) fn try_call(
        &self,
        msg: W::Msg,
        admit: Admit<'_>,
        movable: bool,
    ) -> Result<PendingReply<W>, TryCall<W::Msg>> {
        if let Some(why) = self.refusal() {
            return Err(TryCall::Refused(CallError::closed(msg, why)));
        }
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            msg,
            reply: Some(tx),
            movable,
        };
        match self.slot.try_push(env, admit) {
            Ok(()) => Ok(PendingReply(rx)),
            Err(e) => Err(self.not_queued(e)),
        }
    }

    /// The slow path of a call to a full bounded mailbox: waits for room (counted in the load
    /// once `admit` has let it through, see [`Slot::push_admitted`]), then queues. Never
    /// answers [`TryCall::Full`].
    pub(crate) async fn call_when_room(
        &self,
        msg: W::Msg,
        admit: Admit<'_>,
        movable: bool,
    ) -> Result<PendingReply<W>, TryCall<W::Msg>> {
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            msg,
            reply: Some(tx),
            movable,
        };
        match self.slot.push_admitted(env, admit).await {
            Ok(()) => Ok(PendingReply(rx)),
            Err(e) => Err(self.not_queued(e)),
        }
    }

    /// What a call that could not be queued tells its caller.
    fn not_queued(&self, refused: Refused<Envelope<W>>) -> TryCall<W::Msg> {
        match refused {
            Refused::Full(env) => TryCall::Full(env.msg),
            Refused::Closed(env) => {
                TryCall::Refused(CallError::closed(env.msg, self.closed_reason()))
            }
            Refused::Barred(env) => TryCall::Barred(env.msg),
        }
    }

    /// Counts a call reserved for this worker into its load until the reservation is used
    /// or dropped.
    #[cfg(feature = "tower")]
    pub(crate) fn reserve(&self) -> Reservation<W> {
        self.slot.reserve();
        Reservation(Some(self.clone()))
    }

    /// Why a message to this incarnation would be refused, if it would.
    fn refusal(&self) -> Option<Closed> {
        self.slot.state.refusal(self.incarnation)
    }

    /// Why the mailbox is closed: it closes only at shutdown, when the slot ends, or when a
    /// shrink removes it.
    fn closed_reason(&self) -> Closed {
        self.refusal().unwrap_or(Closed::Shutdown)
    }
}

/// Why `try_call` did not queue a message.
pub(crate) enum TryCall<M> {
    /// The bounded mailbox is full: waiting for room may succeed.
    Full(M),
    /// Refused for good, message inside.
    Refused(CallError<M>),
    /// The caller's gate said no (a drain began since the pick).
    Barred(M),
}

/// Why `try_send` did not queue a message.
pub(crate) enum TrySend<M> {
    /// Refused by the worker, message inside.
    Refused(SendError<M>),
    /// The caller's gate said no (a drain began since the pick).
    Barred(M),
}

/// A call reserved for a worker by a ready `Pool` service: counted in the worker's
/// [`load`](Member::load) (so that picks at `max_load` pass it over) but not in its
/// [`drain_load`](Member::drain_load) (a drain does not wait for it), until it is used or
/// dropped.
#[cfg(feature = "tower")]
pub(crate) struct Reservation<W: Worker>(Option<WorkerRef<W>>);

#[cfg(feature = "tower")]
impl<W: Worker> Reservation<W> {
    /// The worker reserved. Queue the call before dropping the reservation, so that the
    /// worker's load never dips in between.
    pub(crate) fn worker(&self) -> &WorkerRef<W> {
        self.0.as_ref().expect("only Drop takes the worker out")
    }
}

#[cfg(feature = "tower")]
impl<W: Worker> Drop for Reservation<W> {
    fn drop(&mut self) {
        if let Some(worker) = self.0.take() {
            worker.slot.unreserve();
        }
    }
}

/// A queued call's reply, still to come.
pub(crate) struct PendingReply<W: Worker>(oneshot::Receiver<Outcome<W>>);

impl<W: Worker> PendingReply<W> {
    /// Waits for the reply. A reply channel dropped unanswered means the worker died while
    /// handling the message.
    pub(crate) async fn wait(self) -> Result<W::Reply, CallError<W::Msg>> {
        self.wait_by().await.map(|(reply, _)| reply)
    }

    /// [`wait`](PendingReply::wait), with the slot of the worker that replied.
    pub(crate) async fn wait_by(self) -> Result<(W::Reply, usize), CallError<W::Msg>> {
        match self.0.await {
            Ok(Outcome::Reply(reply, by)) => Ok((reply, by)),
            Ok(Outcome::Returned(msg, why)) => Err(CallError::closed(msg, why)),
            Err(_) => Err(CallError::WorkerDied),
        }
    }
}

impl<W: Worker> Member for WorkerRef<W> {
    #[inline]
    fn is_alive(&self) -> bool {
        self.slot.state.is_serving(self.incarnation)
    }

    /// Messages queued and in progress, plus calls that ready `Pool` services have reserved
    /// this worker for, plus what is left of the penalty of its slot's recent failures
    /// (replies [`Worker::failed`](crate::Worker::failed) calls failures; a successor
    /// inherits it): each failure in a row doubles it and adds
    /// 4 (up to 1024), and it halves every 100 ms of tokio's clock after the last one, so a
    /// worker that fails fast stops looking idle, and is tried again once it has decayed; a
    /// reply that is not a failure clears it.
    #[inline]
    fn load(&self) -> usize {
        self.slot.pick_load()
    }

    /// Messages queued and in progress: what a drain's idle wait waits for.
    #[inline]
    fn drain_load(&self) -> usize {
        self.slot.queued()
    }

    /// The slot: a key stays with a slot across its worker's restarts.
    fn affinity_key(&self) -> Option<u64> {
        Some(self.slot.index as u64)
    }

    /// Marks the slot ejected (or back): hand-back sends it nothing meanwhile.
    fn on_ejection(&self, ejected: bool) {
        self.slot.set_ejected(ejected);
    }
}

impl<W: Worker> Clone for WorkerRef<W> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
            incarnation: self.incarnation,
        }
    }
}

impl<W: Worker> PartialEq for WorkerRef<W> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot) && self.incarnation == other.incarnation
    }
}

impl<W: Worker> Eq for WorkerRef<W> {}

impl<W: Worker> Hash for WorkerRef<W> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.slot).hash(state);
        self.incarnation.hash(state);
    }
}

impl<W: Worker> fmt::Debug for WorkerRef<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerRef")
            .field("id", &format_args!("{}", self.id()))
            .field("alive", &self.is_alive())
            .field("load", &self.load())
            .finish()
    }
}
