//! Workers: tokio tasks with a mailbox, handed out through [`WorkerRef`]s.

pub(crate) mod capacity;
pub(crate) mod error;
pub(crate) mod mailbox;
pub(crate) mod slot;
pub(crate) mod state;
mod worker_ref;

use std::{fmt, future::Future};

#[cfg(feature = "tower")]
pub(crate) use self::worker_ref::Reservation;
pub(crate) use self::worker_ref::{PendingReply, TryCall, TrySend};
pub use self::{mailbox::Mailbox, worker_ref::WorkerRef};

/// A unit of work that lives in its own tokio task and handles one message at a time.
///
/// A [`Supervisor`](crate::Supervisor) makes workers with a factory, runs each in a task that
/// owns its mailbox, and restarts it if it panics. Messages are sent through a
/// [`WorkerRef`].
///
/// # Example
///
/// ```
/// use croupier::Worker;
///
/// struct Doubler;
///
/// impl Worker for Doubler {
///     type Msg = u64;
///     type Reply = u64;
///
///     async fn handle(&mut self, n: u64) -> u64 {
///         n * 2
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = croupier::Pool::builder(|_| Doubler).size(2).start()?;
/// assert_eq!(pool.call(21).await?, 42);
/// # Ok(()) }
/// ```
pub trait Worker: Send + 'static {
    /// What the worker is sent.
    type Msg: Send + 'static;
    /// What the worker answers to a [`call`](WorkerRef::call).
    type Reply: Send + 'static;

    /// Handles one message. A panic here ends this incarnation, whether it comes while the
    /// future is made or while it runs: the caller of this message gets
    /// [`CallError::WorkerDied`](crate::CallError::WorkerDied), and the messages queued behind
    /// it go to the successor.
    fn handle(&mut self, msg: Self::Msg) -> impl Future<Output = Self::Reply> + Send;

    /// Runs once when the incarnation starts, before its first message.
    ///
    /// A hard stop (the supervisor gave up or was dropped) abandons it at the `.await` where
    /// it waits, as it abandons a message in hand: the incarnation ends without its
    /// [`stopping`](Worker::stopping) hook, and the messages queued for it come back to their
    /// callers as [`Shutdown`](crate::CallError::Shutdown).
    fn started(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Runs once when the incarnation stops without panicking: at a graceful shutdown (after
    /// its queue is handled), at a hard stop (the supervisor gave up or was dropped) if the
    /// worker is not in the middle of a message, and when it has
    /// [finished](Worker::is_finished). It does not run when the incarnation panicked, nor
    /// when a hard stop abandons it mid-message.
    ///
    /// A hard stop cuts it short: run at a hard stop, it runs up to its first `.await` that
    /// waits and is abandoned there; running when one comes, it is abandoned at the `.await`
    /// where it waits. Dropping a pool thus ends its tasks at once, whatever the hook does.
    ///
    /// A panic here after the worker finished is a crash like any other (the restart rule
    /// applies); a panic at shutdown or a hard stop is logged and starts nothing: stopping
    /// goes on.
    fn stopping(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether `reply` says the work failed (a backend that answered with an error, a request
    /// that could not be served). `false` by default; a worker whose replies are `Result`s
    /// usually answers `reply.is_err()`.
    ///
    /// A pool counts a failure against the worker's slot: it weighs as load for a while (a
    /// worker that fails fast stops looking idle to least loaded and power of two: see
    /// [`WorkerRef`]'s load), and [`Pool::call`](crate::Pool::call) reports it to outlier
    /// ejection. A panic here is a crash.
    ///
    /// ```
    /// use croupier::Worker;
    ///
    /// struct Fetch;
    /// impl Worker for Fetch {
    ///     type Msg = String;
    ///     type Reply = Result<usize, String>;
    ///     async fn handle(&mut self, url: String) -> Result<usize, String> {
    ///         if url.is_empty() { Err("no url".into()) } else { Ok(url.len()) }
    ///     }
    ///     fn failed(reply: &Result<usize, String>) -> bool {
    ///         reply.is_err()
    ///     }
    /// }
    /// assert!(Fetch::failed(&Err("down".into())));
    /// ```
    fn failed(reply: &Self::Reply) -> bool {
        let _ = reply;
        false
    }

    /// Asked after every message: `true` ends the incarnation normally. A
    /// [`Restart::Permanent`](crate::Restart::Permanent) worker is then restarted, a
    /// transient or temporary one is not. `false` by default. A panic here is a crash.
    fn is_finished(&self) -> bool {
        false
    }
}

/// Which worker a handle points at: its slot in the supervisor and its incarnation there.
///
/// A restart keeps the slot and counts the incarnation up, so a handle to a crashed worker
/// never reaches its successor by mistake. Displays as `slot.incarnation`, like `3.1`.
///
/// # Example
///
/// ```
/// use croupier::WorkerId;
///
/// let id = WorkerId::new(3, 1);
/// assert_eq!(id.to_string(), "3.1");
/// assert_eq!((id.slot(), id.incarnation()), (3, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    slot: usize,
    incarnation: u64,
}

impl WorkerId {
    /// The id of incarnation `incarnation` in slot `slot`.
    #[must_use]
    pub const fn new(slot: usize, incarnation: u64) -> Self {
        Self { slot, incarnation }
    }

    /// The worker's slot: its position in the supervisor, kept across restarts.
    #[must_use]
    pub const fn slot(&self) -> usize {
        self.slot
    }

    /// How many times the slot's worker has been restarted before this one (0 for the first).
    #[must_use]
    pub const fn incarnation(&self) -> u64 {
        self.incarnation
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot, self.incarnation)
    }
}
