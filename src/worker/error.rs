//! Errors of sending to and calling workers. Each one that refuses a message hands it back.

use std::fmt;

use crate::PickError;

/// Why [`send`](crate::WorkerRef::send) did not queue a message; the message comes back inside.
///
/// `Debug` does not require the message to be `Debug`.
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
    /// (Pools) every live worker's load is at or above `max_load`.
    Overloaded(M),
    /// (Pools) no live worker to send to.
    NoMembers(M),
    /// (Pools) the pool is draining for maintenance
    /// ([`apply_within`](crate::Pool::apply_within)); retry once it resumes.
    Draining(M),
}

/// Why [`call`](crate::WorkerRef::call) got no reply.
///
/// Every variant but [`WorkerDied`](CallError::WorkerDied) hands the message back unhandled.
/// `Debug` does not require the message to be `Debug`.
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
    /// (Pools) every live worker's load is at or above `max_load`.
    Overloaded(M),
    /// (Pools) no live worker to call.
    NoMembers(M),
    /// (Pools) the pool is draining for maintenance
    /// ([`apply_within`](crate::Pool::apply_within)); retry once it resumes.
    Draining(M),
}

impl<M> SendError<M> {
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

    /// The same error for a pick that handed out nothing.
    pub(crate) fn from_pick(e: PickError, msg: M) -> Self {
        match e {
            PickError::Overloaded => Self::Overloaded(msg),
            PickError::NoMembers => Self::NoMembers(msg),
            PickError::Draining => Self::Draining(msg),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Dead(_) => "Dead",
            Self::Full(_) => "Full",
            Self::Shutdown(_) => "Shutdown",
            Self::Overloaded(_) => "Overloaded",
            Self::NoMembers(_) => "NoMembers",
            Self::Draining(_) => "Draining",
        }
    }
}

impl<M> CallError<M> {
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

    /// The same error for a pick that handed out nothing.
    pub(crate) fn from_pick(e: PickError, msg: M) -> Self {
        match e {
            PickError::Overloaded => Self::Overloaded(msg),
            PickError::NoMembers => Self::NoMembers(msg),
            PickError::Draining => Self::Draining(msg),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Dead(_) => "Dead",
            Self::WorkerDied => "WorkerDied",
            Self::Shutdown(_) => "Shutdown",
            Self::Overloaded(_) => "Overloaded",
            Self::NoMembers(_) => "NoMembers",
            Self::Draining(_) => "Draining",
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendError::{}(..)", self.name())
    }
}

impl<M> fmt::Debug for CallError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WorkerDied => f.write_str("CallError::WorkerDied"),
            _ => write!(f, "CallError::{}(..)", self.name()),
        }
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => "the worker is dead; the message was not queued (pick again)",
            Self::Full(_) => "the worker's mailbox is full; the message was not queued",
            Self::Shutdown(_) => "the supervisor has shut down; the message was not queued",
            Self::Overloaded(_) => "every live worker is at or above max_load",
            Self::NoMembers(_) => "no live worker to send to",
            Self::Draining(_) => "the pool is draining for maintenance; retry once it resumes",
        })
    }
}

impl<M> fmt::Display for CallError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dead(_) => "the worker is dead; the message was not handled (pick again)",
            Self::WorkerDied => "the worker panicked while handling this message",
            Self::Shutdown(_) => "the supervisor has shut down; the message was not handled",
            Self::Overloaded(_) => "every live worker is at or above max_load",
            Self::NoMembers(_) => "no live worker to call",
            Self::Draining(_) => "the pool is draining for maintenance; retry once it resumes",
        })
    }
}

impl<M> std::error::Error for SendError<M> {}
impl<M> std::error::Error for CallError<M> {}
