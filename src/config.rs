//! [`ConfigError`]: what every builder refuses, at `build()` or `start()`.

use std::fmt;

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
