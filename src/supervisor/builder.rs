//! Configuration of a [`Supervisor`], checked at `start()`.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use super::{Core, CoreConfig, Inner, Supervisor};
use crate::{
    config::ConfigError,
    telemetry::SupervisorMeter,
    worker::{mailbox::Mailbox, Worker, WorkerId},
};

/// When a supervisor restarts a worker whose incarnation ended (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Restart {
    /// Always: after a panic and after it [finished](Worker::is_finished).
    #[default]
    Permanent,
    /// Only after a panic; a worker that finishes stays stopped.
    Transient,
    /// Never: the slot ends with its first incarnation.
    Temporary,
}

impl Restart {
    /// Whether an incarnation that ended this way is replaced.
    pub(crate) fn restarts(self, panicked: bool) -> bool {
        match self {
            Self::Permanent => true,
            Self::Transient => panicked,
            Self::Temporary => false,
        }
    }
}

/// How long a slot waits before starting a new incarnation. Messages sent meanwhile queue in
/// its mailbox.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use croupier::Backoff;
///
/// let b = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1));
/// assert_eq!(b.delay(0), Duration::from_millis(10));
/// assert_eq!(b.delay(3), Duration::from_millis(80));
/// assert_eq!(b.delay(30), Duration::from_secs(1));
/// assert_eq!(Backoff::from(Duration::from_millis(5)).delay(9), Duration::from_millis(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Restart at once (the default).
    #[must_use]
    pub const fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        }
    }

    /// The same delay before every restart.
    #[must_use]
    pub const fn fixed(delay: Duration) -> Self {
        Self {
            initial: delay,
            max: delay,
        }
    }

    /// `initial`, doubled for each crash in a row of the same slot, at most `max`. A slot's
    /// count starts again once an incarnation has handled a message.
    #[must_use]
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before a restart that follows `crashes_in_a_row` earlier ones.
    #[must_use]
    pub fn delay(&self, crashes_in_a_row: u32) -> Duration {
        let factor = 1_u32.checked_shl(crashes_in_a_row).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl From<Duration> for Backoff {
    fn from(delay: Duration) -> Self {
        Self::fixed(delay)
    }
}

/// The most workers a supervisor (or pool) runs: each is a task with a mailbox, and a size
/// past this is a mistake, not a plan (`size(usize::MAX)` would exhaust memory).
pub(crate) const MAX_WORKERS: usize = 1 << 20;

/// The largest bounded mailbox: what a tokio channel's semaphore can count.
pub(crate) const MAX_MAILBOX: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Configures a [`Supervisor`]; made by [`Supervisor::builder`].
///
/// Defaults: 1 worker, [`Restart::Permanent`], at most 10 restarts a second, no backoff, an
/// unbounded mailbox.
#[must_use = "a builder does nothing until .start()"]
pub struct SupervisorBuilder<W: Worker> {
    factory: Box<dyn Fn(WorkerId) -> W + Send + Sync>,
    pub(crate) size: usize,
    restart: Restart,
    intensity: u32,
    window: Duration,
    backoff: Backoff,
    mailbox: Mailbox,
    pub(crate) name: Option<Cow<'static, str>>,
    /// Set by `PoolBuilder` (1 ms unless `hand_back_after` says otherwise); `None` for a bare
    /// supervisor, whose messages all come through handles and never move.
    pub(crate) hand_back: Option<Duration>,
}

impl<W: Worker> SupervisorBuilder<W> {
    pub(super) fn new(factory: Box<dyn Fn(WorkerId) -> W + Send + Sync>) -> Self {
        Self {
            factory,
            size: 1,
            restart: Restart::default(),
            intensity: 10,
            window: Duration::from_secs(1),
            backoff: Backoff::none(),
            mailbox: Mailbox::default(),
            hand_back: None,
            name: None,
        }
    }

    /// How many workers (slots) to run: at least 1, at most 2²⁰ (1 048 576).
    pub fn size(mut self, n: usize) -> Self {
        self.size = n;
        self
    }

    /// When to restart a worker whose incarnation ended.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Give up once there are more than `max_restarts` restarts, across all slots, within
    /// `window` (OTP's intensity and period). `max_restarts` may be 0: give up on the first
    /// crash. The window must be positive.
    pub fn intensity(mut self, max_restarts: u32, window: Duration) -> Self {
        self.intensity = max_restarts;
        self.window = window;
        self
    }

    /// The delay before each restart: a [`Duration`] for a fixed one, or a [`Backoff`].
    pub fn backoff(mut self, backoff: impl Into<Backoff>) -> Self {
        self.backoff = backoff.into();
        self
    }

    /// Each worker's mailbox: unbounded, or bounded (then `send` answers `Full`).
    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// The supervisor's name: the `name` label of its metrics (with the `metrics` feature;
    /// see [the table](crate::docs::metrics)). `"unnamed"` if unset.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks the settings without starting anything.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.size == 0 {
            return Err(ConfigError::ZeroSize);
        }
        if self.window.is_zero() {
            return Err(ConfigError::ZeroIntensityWindow);
        }
        if self.size > MAX_WORKERS {
            return Err(ConfigError::TooManyWorkers { max: MAX_WORKERS });
        }
        match self.mailbox {
            Mailbox::Bounded(0) => return Err(ConfigError::ZeroMailbox),
            Mailbox::Bounded(n) if n > MAX_MAILBOX => {
                return Err(ConfigError::MailboxTooLarge { max: MAX_MAILBOX })
            }
            _ => {}
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::NoRuntime);
        }
        Ok(())
    }

    /// Checks the settings and starts every worker, each in its own task on the current tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroSize`], [`ConfigError::TooManyWorkers`] (more than 2²⁰),
    /// [`ConfigError::ZeroIntensityWindow`], [`ConfigError::ZeroMailbox`],
    /// [`ConfigError::MailboxTooLarge`], or [`ConfigError::NoRuntime`] when called outside a
    /// tokio runtime.
    pub fn start(self) -> Result<Supervisor<W>, ConfigError> {
        self.check()?;
        let core = Arc::new(Core::new(CoreConfig {
            factory: self.factory,
            mailbox: self.mailbox,
            restart: self.restart,
            intensity: self.intensity,
            window: self.window,
            backoff: self.backoff,
            hand_back: self.hand_back,
            runtime: tokio::runtime::Handle::current(),
            meter: SupervisorMeter::new(self.name),
        }));
        core.start_slots(&mut core.layout.lock(), self.size);
        Ok(Supervisor {
            inner: Arc::new(Inner { core }),
        })
    }
}

impl<W: Worker> fmt::Debug for SupervisorBuilder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("size", &self.size)
            .field("restart", &self.restart)
            .field("intensity", &self.intensity)
            .field("window", &self.window)
            .field("backoff", &self.backoff)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}
