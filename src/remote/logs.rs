//! Worker logs at the master (SimpleLocalnet's `redirectLogsHere`).
//!
//! A worker process adds [`LogLayer`] to its `tracing` subscriber; its node then streams the
//! events it captures to every master that asks ([`Node::redirect_logs_here`]). The master
//! emits each one as an event of its own, with target [`WORKER_LOG_TARGET`], at the same
//! level, with the worker's name in the field `node` and the original target in `origin`.
//! Events with that target are never captured again, so a process that is master and worker at
//! once does not loop.
//!
//! Memory is bounded: records wait in a broadcast buffer of 1024 (a master too slow to read
//! loses the oldest, and is told how many in a warning), and a message is cut at 4 KiB.
//!
//! [`Node::redirect_logs_here`]: super::Node::redirect_logs_here

use std::{
    fmt::{self, Write as _},
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::broadcast;
use tracing::{field::Field, Event, Level, Subscriber};
use tracing_subscriber::{layer::Context, Layer};

use super::proto::croupier::v1::LogRecord;

/// The target of the events a master emits for its workers' log records.
pub const WORKER_LOG_TARGET: &str = "croupier::worker_log";

/// The longest message forwarded, in bytes; longer ones are cut (on a character boundary).
const MAX_MESSAGE: usize = 4096;

/// Records not yet streamed to a master.
const BUFFER: usize = 1024;

/// The process's captured events, for every node in it that serves.
pub(crate) fn records() -> &'static broadcast::Sender<LogRecord> {
    static RECORDS: OnceLock<broadcast::Sender<LogRecord>> = OnceLock::new();
    RECORDS.get_or_init(|| broadcast::channel(BUFFER).0)
}

/// A `tracing` layer that captures this process's events for the masters that asked for them
/// ([`Node::redirect_logs_here`](super::Node::redirect_logs_here)).
///
/// While no master listens it costs one atomic load per event.
///
/// # Example
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let subscriber = tracing_subscriber::registry().with(croupier::remote::LogLayer::new());
/// tracing::subscriber::with_default(subscriber, || tracing::info!("seen by the masters"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LogLayer {
    _private: (),
}

impl LogLayer {
    /// The layer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let records = records();
        if records.receiver_count() == 0 || meta.target() == WORKER_LOG_TARGET {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut message = message.0;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let unix_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let _ = records.send(LogRecord {
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            message,
            unix_micros,
        });
    }
}

/// The message first, then `name=value` for the other fields.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.0.len() > MAX_MESSAGE {
            return;
        }
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// Emits a worker's record as an event of this process's.
pub(crate) fn emit(node: &str, r: &LogRecord) {
    let level = r.level.parse::<Level>().unwrap_or(Level::INFO);
    let (origin, message) = (r.target.as_str(), r.message.as_str());
    match level {
        Level::ERROR => {
            tracing::error!(target: WORKER_LOG_TARGET, node, origin, "{message}");
        }
        Level::WARN => tracing::warn!(target: WORKER_LOG_TARGET, node, origin, "{message}"),
        Level::INFO => tracing::info!(target: WORKER_LOG_TARGET, node, origin, "{message}"),
        Level::DEBUG => {
            tracing::debug!(target: WORKER_LOG_TARGET, node, origin, "{message}");
        }
        Level::TRACE => {
            tracing::trace!(target: WORKER_LOG_TARGET, node, origin, "{message}");
        }
    }
}
