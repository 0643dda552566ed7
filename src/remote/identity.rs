//! Who a node is: its name, its mode, and what a master knows of a worker node.

use std::{fmt, net::SocketAddr, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{auth::Cookie, tls::Tls};

/// The longest node name, in bytes: a longer one is refused at
/// [`start`](crate::remote::NodeBuilder::start), and a hello that carries one is refused by the
/// node it greets.
pub const MAX_NAME_LEN: usize = 255;

/// How many masters' names a worker node remembers ([`Node::masters`](crate::remote::Node::masters)):
/// beyond it, the name heard from longest ago is forgotten.
pub const MAX_MASTERS_KEPT: usize = 256;

/// What a node does in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Mode {
    /// Selects worker nodes and calls them.
    Master,
    /// Serves its local pool to masters.
    Worker,
    /// Both.
    Both,
}

impl Mode {
    /// Whether the node serves calls.
    #[must_use]
    pub fn serves(self) -> bool {
        matches!(self, Self::Worker | Self::Both)
    }

    /// Whether the node selects and calls others.
    #[must_use]
    pub fn calls(self) -> bool {
        matches!(self, Self::Master | Self::Both)
    }
}

/// A node's name, unique in its cluster.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", &*self.0)
    }
}

/// What a master knows of a worker node.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Its name.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its mode.
    pub mode: Mode,
    /// Its tags.
    pub tags: Vec<String>,
    /// How many workers its pool runs.
    pub pool_size: u32,
    /// Its load as this master weighs it when it selects a node: its own calls in flight to
    /// the node, plus the penalty of their recent failures, per pool worker.
    pub load: f64,
    /// Jobs queued or running per pool worker, as the node last reported (every report
    /// interval at most); not used to select a node (see [`RemoteNode`](super::RemoteNode)).
    pub reported: f64,
    /// Whether it is connected and reporting.
    pub alive: bool,
}

/// Who this node is, as it says in its hello.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) cookie: Option<Cookie>,
    pub(crate) tls: Option<Tls>,
}
