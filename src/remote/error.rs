//! The remote layer's errors: connecting, calling, starting a node, reading a hosts file.

use std::{error::Error, fmt, io, net::SocketAddr, ops::Deref, path::PathBuf, sync::Arc};

use super::identity::NodeId;
use crate::config::ConfigError;

/// The cause a remote error carries: a message saying what went wrong, and the typed error
/// behind it when there is one (the node's gRPC status, the encoder's error), as
/// [`source`](Error::source).
///
/// It reads as the message: it dereferences to `str`, compares with other causes by message,
/// and is made from a `&str` or `String`.
///
/// ```
/// use std::error::Error as _;
///
/// use croupier::remote::{Cause, RemoteError};
///
/// let e = RemoteError::Remote(Cause::from("the handler panicked"));
/// let RemoteError::Remote(cause) = &e else { unreachable!() };
/// assert!(cause.contains("panicked"));
/// assert!(cause.source().is_none(), "a message alone has no typed source");
/// assert_eq!(e, RemoteError::Remote("the handler panicked".into()));
/// ```
#[derive(Clone)]
pub struct Cause {
    message: Arc<str>,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl Cause {
    /// `message`, caused by `source`.
    pub fn new(message: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        Self {
            message: message.into().into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The message.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.message
    }
}

impl Deref for Cause {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.message, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Why [`Node::connect`](super::Node::connect) did not connect (Skitter.Remote's list, plus
/// authentication).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// No connection could be made (nobody listening, TLS refused, a certificate from another
    /// authority), or it broke during the hello.
    NotConnected(io::Error),
    /// The peer answers, but not as a croupier node (no `croupier.v1` service there).
    NotCroupier,
    /// The cookies differ, or only one side has one.
    Unauthenticated,
    /// The address is not loopback and this node has no TLS: the cookie and the calls would
    /// cross the network in the clear. Set [`NodeBuilder::tls`](super::NodeBuilder::tls).
    Insecure(SocketAddr),
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
    /// The connection and hello did not finish within the handshake timeout.
    Timeout,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected(e) => write!(f, "could not connect: {e}"),
            Self::NotCroupier => f.write_str(
                "the peer is not a croupier node (it does not serve croupier.v1): check the address",
            ),
            Self::Insecure(a) => write!(
                f,
                "refusing to connect to {a} without TLS: only loopback may be plaintext; set .tls(..)"
            ),
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
            Self::Timeout => f.write_str(
                "the connection or the hello timed out: is the node up, and is it croupier?",
            ),
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
    /// No reply within the call timeout. The call was cancelled: a job still queued on the
    /// node never starts, a running handler's future is dropped.
    Timeout,
    /// The handler failed on the remote node (it panicked, or its pool refused the work).
    Remote(Cause),
    /// The arguments or the result could not be decoded.
    Decode(Cause),
    /// The arguments could not be encoded.
    Encode(Cause),
    /// No worker node is connected.
    NoNodes,
    /// The node is unknown to this master.
    UnknownNode(NodeId),
    /// The arguments or the result are larger than the message limit
    /// ([`NodeBuilder::max_message`](super::NodeBuilder::max_message)); only this call failed.
    TooLarge(Cause),
    /// The node's pool refused the work for now (draining, or every worker over its load);
    /// another node may take it.
    Busy(Cause),
    /// The node refused this master's credentials (cookie).
    Unauthenticated(Cause),
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
            Self::TooLarge(e) => write!(
                f,
                "the message is over the size limit (raise .max_message(..) on both nodes): {e}"
            ),
            Self::Busy(e) => write!(f, "the node refused the work for now: {e}"),
            Self::Unauthenticated(e) => write!(f, "the node refused our credentials: {e}"),
        }
    }
}

impl std::error::Error for RemoteError {
    /// The typed error behind the cause, when there is one: the node's gRPC status, or the
    /// encoder's error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Remote(c)
            | Self::Decode(c)
            | Self::Encode(c)
            | Self::TooLarge(c)
            | Self::Busy(c)
            | Self::Unauthenticated(c) => c.source(),
            _ => None,
        }
    }
}

/// Why [`NodeBuilder::start`](super::NodeBuilder::start) did not start a node.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The listening socket could not be bound.
    Listen(io::Error),
    /// Listening on an address other than loopback needs TLS ([`NodeBuilder::tls`](super::NodeBuilder::tls)).
    InsecureListen(SocketAddr),
    /// A worker needs an address to listen on.
    NoListenAddress,
    /// The listen address could not be parsed.
    BadAddress(String),
    /// The node's pool refused its settings.
    Pool(ConfigError),
    /// Discovery could not start.
    Discovery(Cause),
    /// The TLS settings could not be used.
    Tls(io::Error),
    /// A numeric setting that cannot work (no connection or call allowed at all, or more
    /// than a semaphore can count): the builder method named, and what to use instead.
    Setting {
        /// The [`NodeBuilder`](super::NodeBuilder) method, as `max_connections`.
        setting: &'static str,
        /// What it must be.
        must: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listen(e) => write!(f, "could not listen: {e}"),
            Self::InsecureListen(a) => write!(
                f,
                "refusing to listen on {a} without TLS: set .tls(..) (see the cluster example's certs command) or listen on loopback"
            ),
            Self::NoListenAddress => f.write_str("a worker node needs .listen(addr)"),
            Self::BadAddress(a) => write!(f, "not a socket address: {a:?}"),
            Self::Pool(e) => write!(f, "the node's pool: {e}"),
            Self::Discovery(e) => write!(f, "discovery: {e}"),
            Self::Tls(e) => write!(f, "TLS settings: {e}"),
            Self::Setting { setting, must } => write!(f, "NodeBuilder::{setting}: {must}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Listen(e) | Self::Tls(e) => Some(e),
            Self::Pool(e) => Some(e),
            Self::Discovery(c) => Some(c),
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

impl RemoteError {
    /// The error a call to `node`'s handler `handler` ends with when the node answers `status`:
    /// each gRPC code keeps its meaning.
    pub(crate) fn from_status(status: &tonic::Status, node: &NodeId, handler: &str) -> Self {
        use tonic::Code;
        let msg = || Cause::new(status.message(), status.clone());
        match status.code() {
            Code::NotFound => Self::UnknownHandler(handler.to_owned()),
            Code::InvalidArgument => Self::Decode(msg()),
            Code::Internal => Self::Remote(msg()),
            Code::DeadlineExceeded => Self::Timeout,
            Code::OutOfRange => Self::TooLarge(msg()),
            Code::ResourceExhausted => Self::Busy(msg()),
            Code::Unauthenticated | Code::PermissionDenied => Self::Unauthenticated(msg()),
            _ => Self::NodeDown(node.clone()),
        }
    }

    /// The error a call ends with on `status`, `past_deadline` saying whether the call's own
    /// deadline had passed when it came. `CANCELLED` has two sources: the node's backstop for
    /// the deadline (gRPC's `grpc-timeout`, which answers only after the deadline), and the
    /// client's connection ending under a request it had not sent yet (hyper cancels those).
    /// Before the deadline it can only be the second: the node is down, not slow.
    pub(crate) fn from_call_status(
        status: &tonic::Status,
        node: &NodeId,
        handler: &str,
        past_deadline: bool,
    ) -> Self {
        match status.code() {
            tonic::Code::Cancelled if past_deadline => Self::Timeout,
            _ => Self::from_status(status, node, handler),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request the connection dropped before sending (hyper's "connection closed", which
    /// tonic reports as `CANCELLED`) fails with `NodeDown`: it is not a timeout, since the
    /// deadline has not passed. After the deadline, `CANCELLED` is the node's timeout.
    #[test]
    fn cancelled_before_the_deadline_is_node_down_and_after_it_a_timeout() {
        let node = NodeId::from("a");
        let closed = tonic::Status::cancelled("connection closed");
        assert_eq!(
            RemoteError::from_call_status(&closed, &node, "h", false),
            RemoteError::NodeDown(node.clone())
        );
        assert_eq!(
            RemoteError::from_call_status(&closed, &node, "h", true),
            RemoteError::Timeout
        );
        let late = tonic::Status::deadline_exceeded("late");
        for past in [false, true] {
            assert_eq!(
                RemoteError::from_call_status(&late, &node, "h", past),
                RemoteError::Timeout
            );
        }
        let missing = tonic::Status::not_found("no such handler");
        assert_eq!(
            RemoteError::from_call_status(&missing, &node, "h", false),
            RemoteError::UnknownHandler("h".into())
        );
    }
}
