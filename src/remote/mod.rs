//! The remote layer (cargo feature `remote`): nodes in separate processes that select each
//! other with a [`Balancer`](crate::Balancer) and run named handlers on each other's pools.
//!
//! It is OTP's `pool` and Cloud Haskell's SimpleLocalnet for croupier, on gRPC (tonic):
//!
//! - a [`Node`] runs in each process, as a [`Mode::Master`] (selects and calls), a
//!   [`Mode::Worker`] (serves its local [`Pool`](crate::Pool) to the cluster), or both;
//! - a master sees each worker node as a [`RemoteNode`], a [`Member`](crate::Member) whose
//!   load is this master's own calls in flight to it (plus the penalty of their recent
//!   failures): node selection is a `Balancer<RemoteNode>`, with the same policies as
//!   everywhere else;
//! - workers report their load on xDS ORCA's standard stream
//!   (`xds.service.orca.v3.OpenRcaService/StreamCoreMetrics`): when it changes, at most every
//!   100 ms and at least every second. A node silent for three of its intervals is taken out
//!   of selection and reconnected, as gRFC A58 expires stale weights. Envoy and gRPC clients
//!   in other languages read the same reports;
//! - workers serve `grpc.health.v1` (SERVING, or NOT_SERVING while draining or stopping) to
//!   any probe: it needs no cookie and reveals nothing but the status;
//! - remote work is done by named, typed [`Handler`]s registered at start, because closures
//!   cannot travel between processes; arguments and results are postcard inside croupier's
//!   own `croupier.v1` service (see [`proto`]);
//! - [`Tls`]: TLS with mutual authentication through rustls (ring). Anything but loopback needs
//!   it, both to listen and to connect. A [`Cookie`] may be added as a shared secret in each
//!   request's metadata;
//! - everything is bounded: message sizes, connections, streams per connection, calls in
//!   flight per node, the TLS handshake and HTTP/2 preface, and shutdown, which cuts what is
//!   left after its grace period;
//! - a call's deadline travels with it; a call that times out or is dropped cancels its job;
//! - masters find workers by [`connect`](Node::connect), a [`StaticList`], a [`HostsFile`],
//!   [`Dns`] (re-resolved), or [`Mdns`] on the local network, and can receive their logs
//!   ([`Node::redirect_logs_here`], [`LogLayer`]).
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
mod deadline;
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
