//! Every public error of croupier, one type per operation, each with a message a user can act
//! on.
//!
//! Each layer's error holds only what that layer can answer, and the layer above adds its own
//! cases through `From`:
//!
//! | layer | errors |
//! | --- | --- |
//! | configuration | [`ConfigError`], refused at `build()` / `start()` |
//! | balancer | [`PickError`] (a pick), [`DrainError`] (`apply_within`) |
//! | worker ref | [`SendError`], [`CallError`]: dead, full, shut down, died while handling |
//! | supervisor | [`ResizeError`]: a size of zero, or a supervisor that has stopped |
//! | pool | [`PoolSendError`], [`PoolCallError`]: a worker ref's errors plus the balancer's refusals |
//!
//! Errors that refuse a message hand it back (`into_inner`), and their `Debug` does not
//! require the message to be `Debug`.

use std::fmt;

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

#[cfg(feature = "remote")]
pub use crate::remote::{ConnectError, HostsError, RemoteError, StartError};
pub use crate::{
    balancer::DrainError,
    pool::error::{PoolCallError, PoolSendError},
    supervisor::error::ResizeError,
    worker::error::{CallError, SendError},
};

/// Why a builder refused its configuration.
///
/// Bad configuration is refused when the value is built, never discovered later.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The refresh ratio must lie in `(0, 1]`.
    InvalidRatio(f64),
    /// `max_load(0)` would refuse every pick; leave it unset for no limit.
    ZeroMaxLoad,
    /// The balancer has nowhere to take its members from.
    MissingSource,
    /// A supervisor or pool needs at least one worker.
    ZeroSize,
    /// `Mailbox::Bounded(0)` could never queue a message.
    ZeroMailbox,
    /// The restart intensity's window must be positive.
    ZeroIntensityWindow,
    /// Workers are tokio tasks: `start()` must be called inside a tokio runtime.
    NoRuntime,
    /// The slack of [bounded loads](crate::BalancerBuilder::bounded_loads) must be a
    /// positive, finite number.
    InvalidEpsilon(f64),
    /// More workers than a supervisor or pool runs: each is a task with its own mailbox.
    TooManyWorkers {
        /// The most a supervisor or pool runs.
        max: usize,
    },
    /// A bounded mailbox larger than a channel can count (tokio's semaphores hold at most
    /// `usize::MAX >> 3` permits); use [`Mailbox::Unbounded`](crate::Mailbox::Unbounded).
    MailboxTooLarge {
        /// The largest bounded mailbox.
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRatio(r) => write!(
                f,
                "min_alive_ratio must be greater than 0 and at most 1 (got {r})"
            ),
            Self::ZeroMaxLoad => f.write_str(
                "max_load(0) would refuse every pick; use a positive limit or leave it unset",
            ),
            Self::MissingSource => {
                f.write_str("no source of members: call .source(..) before .build()")
            }
            Self::ZeroSize => {
                f.write_str("size(0): a pool or supervisor needs at least one worker")
            }
            Self::ZeroMailbox => {
                f.write_str("Mailbox::Bounded(0) could never queue a message; use 1 or more")
            }
            Self::ZeroIntensityWindow => {
                f.write_str("the restart intensity window must be longer than zero")
            }
            Self::InvalidEpsilon(e) => write!(
                f,
                "bounded_loads needs a positive, finite epsilon such as 0.25 (got {e})"
            ),
            Self::NoRuntime => {
                f.write_str("start() was called outside a tokio runtime; workers are tokio tasks")
            }
            Self::TooManyWorkers { max } => write!(
                f,
                "a pool or supervisor runs at most {max} workers; use a smaller size"
            ),
            Self::MailboxTooLarge { max } => write!(
                f,
                "Mailbox::Bounded holds at most {max} messages; use Mailbox::Unbounded for no limit"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why [`Balancer::pick`](crate::Balancer::pick) handed out nothing.
///
/// A pick never blocks: each of these is returned at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PickError {
    /// No live, enabled member: the source returned none, or all of them are dead or disabled.
    /// Calling [`Balancer::refresh`](crate::Balancer::refresh) asks the source again.
    NoMembers,
    /// Every live member's load is at or above [`max_load`](crate::BalancerBuilder::max_load).
    /// Back off and retry, or shed the work.
    Overloaded,
    /// The balancer is draining for maintenance and hands out nothing until it resumes.
    Draining,
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoMembers => "no live member to pick (all dead or disabled, or none at all)",
            Self::Overloaded => "every live member is at or above max_load",
            Self::Draining => "the balancer is draining for maintenance",
        })
    }
}

impl std::error::Error for PickError {}
