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

// The shared base: what both sides of a node use.
mod auth;
mod common;
mod config;
mod deadline;
pub(crate) mod error;
mod handler;
mod identity;
mod logs;
pub mod proto;
mod tls;
mod wire;

// The calling side, the serving side (which never import each other), and the node that
// composes them.
mod client;
mod node;
mod server;

pub use self::{
    auth::Cookie,
    client::{
        discovery::{
            Discovery, DiscoveryEvent, Dns, HostsFile, Mdns, Resolve, StaticList, MDNS_SERVICE,
        },
        RemoteNode,
    },
    error::{Cause, ConnectError, HostsError, RemoteError, StartError},
    handler::Handler,
    identity::{Mode, NodeId, NodeInfo, MAX_MASTERS_KEPT, MAX_NAME_LEN},
    logs::{LogLayer, WORKER_LOG_TARGET},
    node::{ByNode, Node, NodeBuilder},
    tls::Tls,
    wire::decode_any,
};
