//! What both sides of a node share: who it is, its settings, and the signals that stop it.

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{config::NodeConfig, identity::Local};

/// Who a node is, its settings, and how its tasks stop. Its calling side
/// ([`Peers`](super::client::Peers)) and its serving side ([`Served`](super::server::Served))
/// each hold it.
pub(crate) struct Common {
    pub(crate) local: Local,
    pub(crate) cfg: NodeConfig,
    /// Stops the node: no new connections, streams end, the server shuts down gracefully.
    pub(crate) stop: CancellationToken,
    /// Ends every connection at once: fired when the grace period is over.
    pub(crate) kill: CancellationToken,
    pub(crate) tracker: TaskTracker,
}
