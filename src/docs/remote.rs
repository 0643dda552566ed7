//! # Nodes on other machines (feature `remote`)
//!
//! A [`Node`](crate::remote::Node) is a worker (it serves named
//! [`Handler`](crate::remote::Handler)s on its own pool), a master (it calls workers, choosing
//! them with a [`Balancer`](crate::Balancer)), or both. They speak gRPC (tonic over HTTP/2):
//!
//! - **Security**: mutual TLS with rustls ([`Tls::from_dir`](crate::remote::Tls::from_dir):
//!   `ca.pem`, `node.pem`, `node.key`); a node refuses peers without a certificate from the
//!   cluster's authority, and refuses to listen beyond loopback without TLS. An optional
//!   cookie travels in metadata and is compared in constant time.
//! - **Load**: workers push xDS ORCA load reports (`OpenRcaService/StreamCoreMetrics`) with
//!   their run queue; masters read them (for liveness, draining and `NodeInfo::reported`, while
//!   they select by their own calls in flight: stale reports would herd them), and so can
//!   Envoy or any gRPC client. A node silent for three report intervals leaves selection.
//! - **Health**: `grpc.health.v1` answers `SERVING`, and `NOT_SERVING` while the node drains
//!   ([`Node::apply_within`](crate::remote::Node::apply_within)) or shuts down.
//! - **Limits**: message size, connections, streams per connection, calls in flight per
//!   node, HTTP/2 keepalive, and a deadline on every call that cancels the remote job.
//! - **Discovery**: a static list, a hosts file, DNS names re-resolved (a Kubernetes headless
//!   service), or mDNS.
//!
//! `examples/cluster.rs` runs workers and a master from the command line, with `--tls DIR`
//! and a `certs DIR` command that writes a development authority and node certificates.
//!
//! ```
//! # #[cfg(feature = "remote")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use croupier::remote::{Handler, Mode, Node};
//!
//! const SQUARE: Handler<u64, u64> = Handler::new("square");
//!
//! let worker = Node::builder("w1")
//!     .mode(Mode::Worker)
//!     .listen("127.0.0.1:0") // loopback: TLS optional
//!     .handle(SQUARE, |n| async move { n * n })
//!     .start()
//!     .await?;
//! let master = Node::builder("m").mode(Mode::Master).start().await?;
//! master.connect(worker.local_addr().unwrap()).await?;
//! assert_eq!(master.call_least_loaded(SQUARE, 12).await?, 144);
//! master.shutdown().await;
//! worker.shutdown().await;
//! # Ok(()) }
//! # #[cfg(not(feature = "remote"))]
//! # fn main() {}
//! ```
