//! What a resize can answer: the size asked for is not one a supervisor can run, or the
//! supervisor no longer runs at all.

use std::fmt;

/// Why [`Supervisor::resize`](crate::Supervisor::resize) (or
/// [`Pool::resize`](crate::Pool::resize)) changed nothing.
///
/// # Example
///
/// ```
/// use croupier::{error::ResizeError, Pool, Worker};
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
/// assert_eq!(pool.resize(0).await, Err(ResizeError::ZeroSize));
/// assert_eq!(pool.supervisor().size(), 2);
/// pool.shutdown().await;
/// assert_eq!(pool.resize(3).await, Err(ResizeError::Shutdown));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResizeError {
    /// `resize(0)`: a supervisor needs at least one worker, as
    /// [`start`](crate::SupervisorBuilder::start) says with
    /// [`ConfigError::ZeroSize`](crate::ConfigError::ZeroSize). To stop every worker, shut
    /// down.
    ZeroSize,
    /// The supervisor has shut down, begun to, or given up: it starts no worker any more.
    Shutdown,
    /// More workers than a supervisor runs, as
    /// [`ConfigError::TooManyWorkers`](crate::ConfigError::TooManyWorkers) says at start.
    TooLarge {
        /// The most a supervisor or pool runs.
        max: usize,
    },
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroSize => {
                "resize(0): a pool or supervisor needs at least one worker; shut it down to stop \
                 every worker"
            }
            Self::Shutdown => {
                "the supervisor has shut down or given up; it cannot be resized (start a new one)"
            }
            Self::TooLarge { max } => {
                return write!(
                    f,
                    "a pool or supervisor runs at most {max} workers; resize to fewer"
                );
            }
        })
    }
}

impl std::error::Error for ResizeError {}
