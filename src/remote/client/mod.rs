//! The calling side of a node: worker nodes as [`Member`](crate::Member)s of a master's
//! balancer, the connection to each and its handshake, the set of known nodes with
//! reconnection, and discovery. It never imports the serving side ([`super::server`]).

pub(crate) mod discovery;
mod handshake;
mod link;
mod member;
mod peers;

pub use self::member::RemoteNode;
pub(crate) use self::peers::Peers;
