//! The remote layer (cargo feature `remote`): nodes in separate processes that select each
//! other with a [`Balancer`](crate::Balancer) and run named handlers on each other's pools.
//!
//! It is OTP's `pool` and Cloud Haskell's SimpleLocalnet for croupier:
//!
//! - a [`Node`] runs in each process, as a [`Mode::Master`] (selects and calls), a
//!   [`Mode::Worker`] (serves its local [`Pool`](crate::Pool) to the cluster), or both;
//! - a master sees each worker node as a [`RemoteNode`], a [`Member`](crate::Member) whose
//!   load is the node's last reported load plus the calls sent since: node selection is a
//!   `Balancer<RemoteNode>`, with the same policies as everywhere else;
//! - workers push their load when it changes, at most every 100 ms and at least every second
//!   (the heartbeat); a node silent for three of those is marked down;
//! - remote work is done by named, typed [`Handler`]s registered at start, because closures
//!   cannot travel between processes;
//! - the transport is TCP, length-delimited frames (16 MiB at most by default) and postcard;
//!   nodes authenticate each other with a shared [`Cookie`] that is never sent (mutual
//!   HMAC-SHA256 challenge-response);
//! - masters find workers by [`connect`](Node::connect), a [`StaticList`], a [`HostsFile`],
//!   or [`Mdns`] on the local network.
//!
//! # Example
//!
//! ```
//! use croupier::remote::{Handler, Mode, Node};
//!
//! const DOUBLE: Handler<u64, u64> = Handler::new("math.double");
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = Node::builder("worker-1")
//!     .mode(Mode::Worker)
//!     .listen("127.0.0.1:0")
//!     .handle(DOUBLE, |n| async move { n * 2 })
//!     .start()
//!     .await?;
//!
//! let master = Node::builder("master").mode(Mode::Master).start().await?;
//! let info = master.connect(worker.local_addr().unwrap()).await?;
//! assert_eq!(info.id.as_str(), "worker-1");
//!
//! assert_eq!(master.call_least_loaded(DOUBLE, 21).await?, 42);
//! master.shutdown().await;
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod discovery;
mod error;
mod handler;
mod link;
mod listener;
mod logs;
mod node;
pub mod proto;
mod service;
mod tls;

pub(crate) use self::node::{Local, NodeConfig, NodeShared};
pub use self::{
    auth::Cookie,
    discovery::{
        Discovery, DiscoveryEvent, Dns, HostsFile, Mdns, Resolve, StaticList, MDNS_SERVICE,
    },
    error::{ConnectError, HostsError, RemoteError, StartError},
    handler::Handler,
    link::RemoteNode,
    logs::{LogLayer, WORKER_LOG_TARGET},
    node::{ByNode, Mode, Node, NodeBuilder, NodeId, NodeInfo},
    tls::Tls,
};

/// The protocol version this build speaks: 3, croupier.v1 over gRPC (1 and 2 were a framed
/// protocol of croupier's own over TCP).
pub(crate) const VERSION: u32 = 3;

/// croupier's gRPC service, as grpc.health.v1 names it.
pub(crate) const SERVICE_NAME: &str = "croupier.v1.Croupier";

/// Throws arbitrary bytes at the decoder of a call: `true` if they decode as an invoke
/// request. Kept (hidden) for property tests outside the crate.
#[doc(hidden)]
pub fn decode_any(bytes: &[u8]) -> bool {
    <proto::croupier::v1::InvokeRequest as prost::Message>::decode(bytes).is_ok()
}
