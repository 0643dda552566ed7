//! A worker's mailbox: the queue in front of its slot, kept across restarts.

use tokio::sync::{mpsc, oneshot};

use super::state::Closed;

/// How many messages a worker's mailbox holds.
///
/// # Example
///
/// ```
/// use croupier::Mailbox;
///
/// assert_eq!(Mailbox::default(), Mailbox::Unbounded);
/// let bounded = Mailbox::Bounded(64); // send() answers Full once 64 messages wait
/// # let _ = bounded;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mailbox {
    /// No limit: `send` always queues while the worker is alive.
    #[default]
    Unbounded,
    /// At most this many queued messages: [`send`](crate::WorkerRef::send) answers
    /// [`Full`](crate::SendError::Full) beyond it, and [`call`](crate::WorkerRef::call) waits
    /// for room. Must be positive.
    Bounded(usize),
}

/// What a sender puts in a mailbox.
pub(crate) struct Envelope<W: super::Worker> {
    pub(crate) msg: W::Msg,
    /// Where the reply goes; `None` for `send`. Dropped unanswered if the worker panics while
    /// handling the message, which its caller reads as `WorkerDied`.
    pub(crate) reply: Option<oneshot::Sender<Outcome<W>>>,
    /// Queued through the pool (`Pool::call`, `Pool::send`), which chose the worker: it may
    /// move to a free worker while this one is slow (see `PoolBuilder::hand_back_after`).
    /// Messages addressed to this worker (by handle, by key, broadcast) stay.
    pub(crate) movable: bool,
}

/// What a caller of `call` gets through its reply channel.
pub(crate) enum Outcome<W: super::Worker> {
    /// The reply, and the slot of the worker that made it (another than the one the message
    /// was queued for, when hand-back moved it).
    Reply(W::Reply, usize),
    Returned(W::Msg, Closed),
}

/// The sending half of a mailbox.
pub(crate) enum MailboxTx<W: super::Worker> {
    Unbounded(mpsc::UnboundedSender<Envelope<W>>),
    Bounded(mpsc::Sender<Envelope<W>>),
}

/// Why a message could not be queued; holds the message.
pub(crate) enum Refused<T> {
    /// The bounded mailbox is full.
    Full(T),
    /// The mailbox is closed.
    Closed(T),
    /// The sender's gate said no once the message was counted (a drain began).
    Barred(T),
}

impl<T> Refused<T> {
    /// The message, whatever the reason.
    pub(crate) fn into_inner(self) -> T {
        match self {
            Self::Full(t) | Self::Closed(t) | Self::Barred(t) => t,
        }
    }
}

/// The receiving half of a mailbox, owned by the slot's task across incarnations.
pub(crate) struct MailboxRx<W: super::Worker> {
    rx: Rx<W>,
    /// A message taken out and put back: the head of the queue, received first.
    front: Option<Envelope<W>>,
}

enum Rx<W: super::Worker> {
    Unbounded(mpsc::UnboundedReceiver<Envelope<W>>),
    Bounded(mpsc::Receiver<Envelope<W>>),
}

/// Makes a mailbox of the given kind. `Bounded(0)` is refused by the builders before this.
pub(crate) fn mailbox<W: super::Worker>(kind: Mailbox) -> (MailboxTx<W>, MailboxRx<W>) {
    match kind {
        Mailbox::Unbounded => {
            let (tx, rx) = mpsc::unbounded_channel();
            (MailboxTx::Unbounded(tx), MailboxRx::new(Rx::Unbounded(rx)))
        }
        Mailbox::Bounded(n) => {
            let (tx, rx) = mpsc::channel(n.max(1));
            (MailboxTx::Bounded(tx), MailboxRx::new(Rx::Bounded(rx)))
        }
    }
}

impl<W: super::Worker> MailboxTx<W> {
    /// Queues at once, or says why not.
    pub(crate) fn try_send(&self, env: Envelope<W>) -> Result<(), Refused<Envelope<W>>> {
        match self {
            Self::Unbounded(tx) => tx.send(env).map_err(|e| Refused::Closed(e.0)),
            Self::Bounded(tx) => tx.try_send(env).map_err(|e| match e {
                mpsc::error::TrySendError::Full(env) => Refused::Full(env),
                mpsc::error::TrySendError::Closed(env) => Refused::Closed(env),
            }),
        }
    }

    /// Queues, waiting for room in a bounded mailbox; hands the envelope back if it closed.
    pub(crate) async fn send(&self, env: Envelope<W>) -> Result<(), Envelope<W>> {
        match self {
            Self::Unbounded(tx) => tx.send(env).map_err(|e| e.0),
            Self::Bounded(tx) => tx.send(env).await.map_err(|e| e.0),
        }
    }
}

impl<W: super::Worker> MailboxRx<W> {
    fn new(rx: Rx<W>) -> Self {
        Self { rx, front: None }
    }

    /// The next message (the one put back first), waiting for one; `None` once the mailbox
    /// is closed and empty.
    pub(crate) async fn recv(&mut self) -> Option<Envelope<W>> {
        if let Some(env) = self.front.take() {
            return Some(env);
        }
        match &mut self.rx {
            Rx::Unbounded(rx) => rx.recv().await,
            Rx::Bounded(rx) => rx.recv().await,
        }
    }

    /// The next message if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Option<Envelope<W>> {
        if let Some(env) = self.front.take() {
            return Some(env);
        }
        match &mut self.rx {
            Rx::Unbounded(rx) => rx.try_recv().ok(),
            Rx::Bounded(rx) => rx.try_recv().ok(),
        }
    }

    /// Puts a message just taken back at the head of the queue (one at most).
    pub(crate) fn put_front(&mut self, env: Envelope<W>) {
        debug_assert!(self.front.is_none(), "one message put back at a time");
        self.front = Some(env);
    }

    /// Refuses new messages; those already queued can still be received.
    pub(crate) fn close(&mut self) {
        match &mut self.rx {
            Rx::Unbounded(rx) => rx.close(),
            Rx::Bounded(rx) => rx.close(),
        }
    }
}
