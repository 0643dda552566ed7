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
    slot::Slot,
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
        if let Some(why) = self.refusal() {
            return Err(SendError::closed(msg, why));
        }
        match self.slot.try_push(Envelope { msg, reply: None }) {
            Ok(()) => Ok(()),
            Err(Refused::Full(env)) => Err(SendError::Full(env.msg)),
            Err(Refused::Closed(env)) => Err(SendError::closed(env.msg, self.closed_reason())),
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
        match self.try_call(msg) {
            Ok(pending) => pending.wait().await,
            Err(TryCall::Full(msg)) => self.call_when_room(msg).await,
            Err(TryCall::Refused(e)) => Err(e),
        }
    }

    /// Queues a call without waiting for room; the reply is awaited separately, so that the
    /// caller need not hold the handle (or a [`Picked`](crate::Picked)) while it waits.
    pub(crate) fn try_call(&self, msg: W::Msg) -> Result<PendingReply<W>, TryCall<W::Msg>> {
        if let Some(why) = self.refusal() {
            return Err(TryCall::Refused(CallError::closed(msg, why)));
        }
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            msg,
            reply: Some(tx),
        };
        match self.slot.try_push(env) {
            Ok(()) => Ok(PendingReply(rx)),
            Err(Refused::Full(env)) => Err(TryCall::Full(env.msg)),
            Err(Refused::Closed(env)) => Err(TryCall::Refused(CallError::closed(
                env.msg,
                self.closed_reason(),
            ))),
        }
    }

    /// The slow path of `call` for a full bounded mailbox: wait for room, then for the reply.
    async fn call_when_room(&self, msg: W::Msg) -> Result<W::Reply, CallError<W::Msg>> {
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            msg,
            reply: Some(tx),
        };
        if let Err(env) = self.slot.push(env).await {
            return Err(CallError::closed(env.msg, self.closed_reason()));
        }
        PendingReply(rx).wait().await
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
}

/// A queued call's reply, still to come.
pub(crate) struct PendingReply<W: Worker>(oneshot::Receiver<Outcome<W>>);

impl<W: Worker> PendingReply<W> {
    /// Waits for the reply. A reply channel dropped unanswered means the worker died while
    /// handling the message.
    pub(crate) async fn wait(self) -> Result<W::Reply, CallError<W::Msg>> {
        match self.0.await {
            Ok(Outcome::Reply(reply)) => Ok(reply),
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

    #[inline]
    fn load(&self) -> usize {
        self.slot.load()
    }

    /// The slot: a key stays with a slot across its worker's restarts.
    fn affinity_key(&self) -> Option<u64> {
        Some(self.slot.index as u64)
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
