//! The remote layer's errors: connecting, calling, starting a node, reading a hosts file.

use std::{fmt, io, net::SocketAddr, path::PathBuf};

use super::NodeId;
use crate::ConfigError;

/// Why [`Node::connect`](super::Node::connect) did not connect (Skitter.Remote's list, plus
/// authentication).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// No TCP connection could be made, or it broke during the handshake.
    NotConnected(io::Error),
    /// The peer does not speak croupier's protocol.
    NotCroupier,
    /// The cookies differ, or only one side has one.
    Unauthenticated,
    /// The peer speaks another version of the protocol.
    Incompatible {
        /// Our protocol version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The peer is not in a mode that serves calls: it is a master only.
    ModeMismatch,
    /// The peer refused the connection, for the reason given.
    Rejected(String),
    /// The handshake did not finish within the handshake timeout.
    Timeout,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected(e) => write!(f, "could not connect: {e}"),
            Self::NotCroupier => f.write_str("the peer is not a croupier node"),
            Self::Unauthenticated => {
                f.write_str("authentication failed: the nodes' cookies differ (or one has none)")
            }
            Self::Incompatible { ours, theirs } => write!(
                f,
                "incompatible protocol: we speak version {ours}, the peer speaks {theirs}"
            ),
            Self::ModeMismatch => f.write_str(
                "mode mismatch: the peer is a master only, and masters connect to workers",
            ),
            Self::Rejected(why) => write!(f, "the peer rejected the connection: {why}"),
            Self::Timeout => f.write_str("the handshake timed out"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotConnected(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a remote call returned no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteError {
    /// The node has no handler registered under this name.
    UnknownHandler(String),
    /// The node is not connected (or went down while the call was in flight; the call may or
    /// may not have run).
    NodeDown(NodeId),
    /// No reply within the call timeout; a `Cancel` was sent.
    Timeout,
    /// The handler failed on the remote node (it panicked, or its pool refused the work).
    Remote(String),
    /// The arguments or the result could not be decoded.
    Decode(String),
    /// The arguments could not be encoded.
    Encode(String),
    /// No worker node is connected.
    NoNodes,
    /// The node is unknown to this master.
    UnknownNode(NodeId),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownHandler(h) => write!(f, "no handler named {h:?} is registered there"),
            Self::NodeDown(n) => write!(f, "node {n} is down"),
            Self::Timeout => f.write_str("the call timed out"),
            Self::Remote(e) => write!(f, "the handler failed remotely: {e}"),
            Self::Decode(e) => write!(f, "could not decode: {e}"),
            Self::Encode(e) => write!(f, "could not encode the arguments: {e}"),
            Self::NoNodes => f.write_str("no worker node is connected"),
            Self::UnknownNode(n) => write!(f, "node {n} is not known to this master"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// Why [`NodeBuilder::start`](super::NodeBuilder::start) did not start a node.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The listening socket could not be bound.
    Listen(io::Error),
    /// Listening on an address other than loopback needs a cookie.
    InsecureListen(SocketAddr),
    /// A worker needs an address to listen on.
    NoListenAddress,
    /// The listen address could not be parsed.
    BadAddress(String),
    /// The node's pool refused its settings.
    Pool(ConfigError),
    /// Discovery could not start.
    Discovery(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listen(e) => write!(f, "could not listen: {e}"),
            Self::InsecureListen(a) => write!(
                f,
                "refusing to listen on {a} without a cookie: set .cookie(..) or listen on loopback"
            ),
            Self::NoListenAddress => f.write_str("a worker node needs .listen(addr)"),
            Self::BadAddress(a) => write!(f, "not a socket address: {a:?}"),
            Self::Pool(e) => write!(f, "the node's pool: {e}"),
            Self::Discovery(e) => write!(f, "discovery: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Listen(e) => Some(e),
            Self::Pool(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a hosts file could not be read: names the file, and the line when one is malformed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostsError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A line is not `host:port [tag,tag]`.
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for HostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Malformed { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for HostsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Malformed { .. } => None,
        }
    }
}
