//! What a [`WorkerRef`](crate::WorkerRef) can answer: its worker is dead, its mailbox is full,
//! its supervisor has shut down, or its worker died while handling the message. Nothing more:
//! the refusals of a balancer are the pool's errors
//! ([`PoolSendError`](crate::error::PoolSendError), [`PoolCallError`](crate::error::PoolCallError)).
//!
//! Every error that refuses a message hands it back, and its `Debug` does not require the
//! message to be `Debug`.

use std::fmt;

use super::state::Closed;

/// Writes the `is_*` predicates of an error enum: one `#[must_use]` method a variant, each
/// true when the error is that variant.
macro_rules! predicates {
    ($ty:ident { $($(#[$doc:meta])* $name:ident => $variant:ident),* $(,)? }) => {
        impl<M> $ty<M> {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(&self) -> bool {
                    matches!(self, Self::$variant { .. })
                }
            )*
        }
    };
}
pub(crate) use predicates;

/// Why [`WorkerRef::send`](crate::WorkerRef::send) did not queue a message; the message comes
/// back inside.
///
/// # Example
///
/// ```
/// use croupier::{SendError, Supervisor, Worker};
///
/// struct Echo;
/// impl Worker for Echo {
///     type Msg = u32;
///     type Reply = u32;
///     async fn handle(&mut self, n: u32) -> u32 { n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sup = Supervisor::builder(|_| Echo).start()?;
/// let worker = sup.children().remove(0);
/// sup.shutdown().await;
/// match worker.send(7) {
///     Err(SendError::Shutdown(n)) => assert_eq!(n, 7),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError<M> {
    /// The worker this handle points at has died (a successor may have taken its slot: pick
    /// again).
    Dead(M),
    /// The worker's bounded mailbox is full.
    Full(M),
    /// The supervisor shut down or gave up: no worker will take it.
    Shutdown(M),
}

/// Why [`WorkerRef::call`](crate::WorkerRef::call) got no reply.
///
/// Every variant but [`WorkerDied`](CallError::WorkerDied) hands the message back unhandled.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError<M> {
    /// The worker was dead before it took the message; pick again.
    Dead(M),
    /// The worker panicked while handling this message, or was stopped in the middle of it
    /// (its supervisor gave up or was dropped): it was taken, and may have been partly
    /// handled, so it is not handed back.
    WorkerDied,
    /// The supervisor shut down or gave up before the message was handled.
    Shutdown(M),
}

impl<M> SendError<M> {
    /// The message that was not queued.
    pub fn into_inner(self) -> M {
        match self {
            Self::Dead(m) | Self::Full(m) | Self::Shutdown(m) => m,
        }
    }

    pub(crate) fn closed(msg: M, why: Closed) -> Self {
        match why {
            Closed::Dead => Self::Dead(msg),
            Closed::Shutdown => Self::Shutdown(msg),
        }
    }
}

impl<M> CallError<M> {
    /// The message that was not handled, unless the worker died while handling it.
    pub fn into_inner(self) -> Option<M> {
        match self {
            Self::Dead(m) | Self::Shutdown(m) => Some(m),
            Self::WorkerDied => None,
        }
    }

    pub(crate) fn closed(msg: M, why: Closed) -> Self {
        match why {
            Closed::Dead => Self::Dead(msg),
            Closed::Shutdown => Self::Shutdown(msg),
        }
    }
}

predicates!(SendError {
    /// Whether the worker was dead (pick again).
    is_dead => Dead,
    /// Whether the bounded mailbox was full.
    is_full => Full,
    /// Whether the supervisor had shut down or given up.
    is_shutdown => Shutdown,
});

predicates!(CallError {
    /// Whether the worker was dead before it took the message (pick again).
    is_dead => Dead,
    /// Whether the worker died while handling the message.
    is_worker_died => WorkerDied,
    /// Whether the supervisor had shut down or given up.
    is_shutdown => Shutdown,
});

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => "SendError::Dead(..)",
            Self::Full(_) => "SendError::Full(..)",
            Self::Shutdown(_) => "SendError::Shutdown(..)",
        })
    }
}

impl<M> fmt::Debug for CallError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => "CallError::Dead(..)",
            Self::WorkerDied => "CallError::WorkerDied",
            Self::Shutdown(_) => "CallError::Shutdown(..)",
        })
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => {
                "the worker is dead; the message was not queued (pick a live worker and resend)"
            }
            Self::Full(_) => {
                "the worker's mailbox is full; the message was not queued (retry later, or \
                 use call, which waits for room)"
            }
            Self::Shutdown(_) => "the supervisor has shut down; the message was not queued",
        })
    }
}

impl<M> fmt::Display for CallError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => {
                "the worker is dead; the message was not handled (pick a live worker and retry)"
            }
            Self::WorkerDied => {
                "the worker panicked or was stopped while handling this message; it may have \
                 been partly handled, so retry only if it is idempotent"
            }
            Self::Shutdown(_) => "the supervisor has shut down; the message was not handled",
        })
    }
}

impl<M> std::error::Error for SendError<M> {}
impl<M> std::error::Error for CallError<M> {}
