//! A [`Pool`](crate::Pool)'s errors: what a worker ref can answer
//! ([`SendError`], [`CallError`]), plus the refusals of the pool's balancer
//! ([`PickError`]), each through `From`.
//!
//! Every variant but `WorkerDied` hands the message back, and `Debug` does not require the
//! message to be `Debug`.

use std::fmt;

use crate::{
    policy::error::PickError,
    worker::error::predicates,
    worker::error::{CallError, SendError},
};

/// Why [`Pool::send`](crate::Pool::send) did not queue a message; the message comes back
/// inside.
///
/// # Example
///
/// ```
/// use croupier::{error::PoolSendError, Pool, Worker};
///
/// struct Echo;
/// impl Worker for Echo {
///     type Msg = u32;
///     type Reply = u32;
///     async fn handle(&mut self, n: u32) -> u32 { n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder(|_| Echo).start()?;
/// pool.shutdown().await;
/// match pool.send(7) {
///     Err(PoolSendError::Shutdown(n)) => assert_eq!(n, 7),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolSendError<M> {
    /// Every worker picked had died, more times in a row than the pool has workers (a crash
    /// storm).
    Dead(M),
    /// The picked worker's bounded mailbox is full.
    Full(M),
    /// The pool has shut down or its supervisor gave up.
    Shutdown(M),
    /// Every live worker's load is at or above `max_load`.
    Overloaded(M),
    /// No live worker to send to.
    NoMembers(M),
    /// The pool is draining for maintenance ([`apply_within`](crate::Pool::apply_within));
    /// retry once it resumes.
    Draining(M),
}

/// Why [`Pool::call`](crate::Pool::call) got no reply.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolCallError<M> {
    /// Every worker picked had died before it took the message, more times in a row than the
    /// pool has workers (a crash storm).
    Dead(M),
    /// The worker panicked while handling this message, or was stopped in the middle of it:
    /// it may have been partly handled, so it is not handed back.
    WorkerDied,
    /// The pool has shut down or its supervisor gave up before the message was handled.
    Shutdown(M),
    /// Every live worker's load is at or above `max_load`.
    Overloaded(M),
    /// No live worker to call.
    NoMembers(M),
    /// The pool is draining for maintenance ([`apply_within`](crate::Pool::apply_within));
    /// retry once it resumes.
    Draining(M),
}

impl<M> PoolSendError<M> {
    /// The message that was not queued.
    pub fn into_inner(self) -> M {
        match self {
            Self::Dead(m)
            | Self::Full(m)
            | Self::Shutdown(m)
            | Self::Overloaded(m)
            | Self::NoMembers(m)
            | Self::Draining(m) => m,
        }
    }

    /// The error for a pick that handed out nothing.
    pub(crate) fn refused(e: PickError, msg: M) -> Self {
        match e {
            PickError::Overloaded => Self::Overloaded(msg),
            PickError::NoMembers => Self::NoMembers(msg),
            PickError::Draining => Self::Draining(msg),
        }
    }
}

impl<M> PoolCallError<M> {
    /// The message that was not handled, unless the worker died while handling it.
    pub fn into_inner(self) -> Option<M> {
        match self {
            Self::Dead(m)
            | Self::Shutdown(m)
            | Self::Overloaded(m)
            | Self::NoMembers(m)
            | Self::Draining(m) => Some(m),
            Self::WorkerDied => None,
        }
    }

    /// The error for a pick that handed out nothing.
    pub(crate) fn refused(e: PickError, msg: M) -> Self {
        match e {
            PickError::Overloaded => Self::Overloaded(msg),
            PickError::NoMembers => Self::NoMembers(msg),
            PickError::Draining => Self::Draining(msg),
        }
    }
}

predicates!(PoolSendError {
    /// Whether every worker picked had died.
    is_dead => Dead,
    /// Whether the picked worker's mailbox was full.
    is_full => Full,
    /// Whether the pool had shut down.
    is_shutdown => Shutdown,
    /// Whether every live worker was at `max_load`.
    is_overloaded => Overloaded,
    /// Whether no live worker was there.
    is_no_members => NoMembers,
    /// Whether the pool was draining.
    is_draining => Draining,
});

predicates!(PoolCallError {
    /// Whether every worker picked had died before taking the message.
    is_dead => Dead,
    /// Whether the worker died while handling the message.
    is_worker_died => WorkerDied,
    /// Whether the pool had shut down.
    is_shutdown => Shutdown,
    /// Whether every live worker was at `max_load`.
    is_overloaded => Overloaded,
    /// Whether no live worker was there.
    is_no_members => NoMembers,
    /// Whether the pool was draining.
    is_draining => Draining,
});

impl<M> From<SendError<M>> for PoolSendError<M> {
    fn from(e: SendError<M>) -> Self {
        match e {
            SendError::Dead(m) => Self::Dead(m),
            SendError::Full(m) => Self::Full(m),
            SendError::Shutdown(m) => Self::Shutdown(m),
        }
    }
}

impl<M> From<CallError<M>> for PoolCallError<M> {
    fn from(e: CallError<M>) -> Self {
        match e {
            CallError::Dead(m) => Self::Dead(m),
            CallError::WorkerDied => Self::WorkerDied,
            CallError::Shutdown(m) => Self::Shutdown(m),
        }
    }
}

impl<M> fmt::Debug for PoolSendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => "PoolSendError::Dead(..)",
            Self::Full(_) => "PoolSendError::Full(..)",
            Self::Shutdown(_) => "PoolSendError::Shutdown(..)",
            Self::Overloaded(_) => "PoolSendError::Overloaded(..)",
            Self::NoMembers(_) => "PoolSendError::NoMembers(..)",
            Self::Draining(_) => "PoolSendError::Draining(..)",
        })
    }
}

impl<M> fmt::Debug for PoolCallError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => "PoolCallError::Dead(..)",
            Self::WorkerDied => "PoolCallError::WorkerDied",
            Self::Shutdown(_) => "PoolCallError::Shutdown(..)",
            Self::Overloaded(_) => "PoolCallError::Overloaded(..)",
            Self::NoMembers(_) => "PoolCallError::NoMembers(..)",
            Self::Draining(_) => "PoolCallError::Draining(..)",
        })
    }
}

/// The sentences both pool errors share for the balancer's refusals.
const OVERLOADED: &str =
    "every live worker is at or above max_load; back off and retry, or shed the work";
const NO_MEMBERS: &str = "no live worker in the pool; retry once a worker has restarted";
const DRAINING: &str = "the pool is draining for maintenance; retry once it resumes";
const CRASH_STORM: &str = "every worker picked had died, more times in a row than the pool \
                           has workers (a crash storm); retry later";

impl<M> fmt::Display for PoolSendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => CRASH_STORM,
            Self::Full(_) => {
                "the picked worker's mailbox is full; the message was not queued (retry later, \
                 or use call, which waits for room)"
            }
            Self::Shutdown(_) => "the pool has shut down; the message was not queued",
            Self::Overloaded(_) => OVERLOADED,
            Self::NoMembers(_) => NO_MEMBERS,
            Self::Draining(_) => DRAINING,
        })
    }
}

impl<M> fmt::Display for PoolCallError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WorkerDied => fmt::Display::fmt(&CallError::<M>::WorkerDied, f),
            Self::Dead(_) => f.write_str(CRASH_STORM),
            Self::Shutdown(_) => f.write_str("the pool has shut down; the message was not handled"),
            Self::Overloaded(_) => f.write_str(OVERLOADED),
            Self::NoMembers(_) => f.write_str(NO_MEMBERS),
            Self::Draining(_) => f.write_str(DRAINING),
        }
    }
}

impl<M> std::error::Error for PoolSendError<M> {}
impl<M> std::error::Error for PoolCallError<M> {}
