//! A node's timeouts and limits, and the checks that refuse the settings that cannot work.

use std::time::Duration;

use super::{deadline, error::StartError};

/// Timeouts and limits; set through [`NodeBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    /// The largest invoke message (arguments or result), each way.
    pub(crate) max_message: usize,
    pub(crate) handshake_timeout: Duration,
    /// A served connection with no call or stream open for this long is closed.
    pub(crate) idle_timeout: Duration,
    pub(crate) call_timeout: Duration,
    /// Load reports go out at most this often...
    pub(crate) report_min: Duration,
    /// ...and at least this often (the heartbeat).
    pub(crate) report_max: Duration,
    /// How long `shutdown` lets the pool and the open calls finish.
    pub(crate) shutdown_grace: Duration,
    /// Open connections a serving node accepts at once.
    pub(crate) max_connections: usize,
    /// Concurrent streams (calls) per connection.
    pub(crate) max_streams: u32,
    /// Calls in flight from this master to one node.
    pub(crate) max_in_flight: usize,
    /// HTTP/2 keepalive: a ping after this much idle time...
    pub(crate) keepalive: Duration,
    /// ...and the connection is dead if its answer takes longer than this.
    pub(crate) keepalive_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_message: 4 << 20,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
            report_min: Duration::from_millis(100),
            report_max: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1024,
            max_streams: 256,
            max_in_flight: 1024,
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
        }
    }
}

/// The smallest `max_message` a node accepts: its hello and load reports must fit.
const MIN_MESSAGE: usize = 1024;

impl NodeConfig {
    /// Refuses the settings that cannot work: no connection or call allowed at all, or more
    /// than a tokio semaphore counts. Caps every duration at thirty years, as good as for
    /// ever and short enough for any clock (and for hyper's keepalive) to add.
    pub(crate) fn check(&mut self) -> Result<(), StartError> {
        for d in [
            &mut self.handshake_timeout,
            &mut self.idle_timeout,
            &mut self.call_timeout,
            &mut self.report_min,
            &mut self.report_max,
            &mut self.shutdown_grace,
            &mut self.keepalive,
            &mut self.keepalive_timeout,
        ] {
            *d = (*d).min(deadline::FAR);
        }
        if self.max_message < MIN_MESSAGE {
            return Err(StartError::Setting {
                setting: "max_message",
                must: format!(
                    "{} bytes leave no room for the node's own messages (hello, load reports): \
                     use at least {MIN_MESSAGE}",
                    self.max_message
                ),
            });
        }
        if self.keepalive.min(self.keepalive_timeout) < Duration::from_millis(1) {
            return Err(StartError::Setting {
                setting: "keepalive",
                must: format!(
                    "a ping every {:?}, dead after {:?}: use at least 1 ms for both (a zero \
                     interval pings without rest, a zero timeout kills every connection)",
                    self.keepalive, self.keepalive_timeout
                ),
            });
        }
        if self.idle_timeout < Duration::from_millis(1) {
            return Err(StartError::Setting {
                setting: "idle_timeout",
                must: format!(
                    "{:?} would close every connection at once: use at least 1 ms",
                    self.idle_timeout
                ),
            });
        }
        if self.report_min < Duration::from_millis(1) {
            return Err(StartError::Setting {
                setting: "report_interval",
                must: format!(
                    "reports at most every {:?} would never rest: use a min of at least 1 ms",
                    self.report_min
                ),
            });
        }
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        let counts = [
            ("max_connections", self.max_connections),
            (
                "max_in_flight",
                usize::try_from(self.max_streams).unwrap_or(usize::MAX),
            ),
            ("max_in_flight", self.max_in_flight),
        ];
        for (setting, n) in counts {
            if n == 0 || n > most {
                return Err(StartError::Setting {
                    setting,
                    must: format!("must be between 1 and {most}, not {n}"),
                });
            }
        }
        Ok(())
    }
}
