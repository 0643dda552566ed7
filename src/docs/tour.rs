//! # A tour
//!
//! croupier hands out handles to members, in turn, to the least loaded, or to the lighter of
//! two, without a lock on the way. Three layers, each usable alone:
//!
//! 1. [`Balancer`](crate::Balancer) over any [`Member`](crate::Member) (a connection, a
//!    worker handle, a node): `pick()` is one snapshot load and one atomic increment.
//! 2. [`Supervisor`](crate::Supervisor): tokio workers restarted when they crash, whose
//!    handles are members; [`Pool`](crate::Pool) joins the two.
//! 3. Around them: [`balance::Balance`](crate::balance) over any tower services (feature
//!    `tower`), metrics (feature `metrics`), and nodes on other machines over gRPC
//!    ([`remote`](crate::remote), feature `remote`).
//!
//! ```
//! use croupier::{Policy, Pool, Worker};
//!
//! struct Resize;
//! impl Worker for Resize {
//!     type Msg = (u32, u32);
//!     type Reply = u32;
//!     async fn handle(&mut self, (w, h): (u32, u32)) -> u32 { w * h }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(|_| Resize)
//!     .size(4)
//!     .policy(Policy::LeastLoaded)
//!     .start()?;
//! assert_eq!(pool.call((640, 480)).await?, 307_200);
//! pool.resize(8).await?; // more workers, at run time
//! assert_eq!(pool.broadcast((2, 3)).await.len(), 8); // every worker answers
//! pool.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Where to go next: [`choosing_a_policy`](super::choosing_a_policy),
//! [`draining`](super::draining), [`remote`](super::remote),
//! [`coming_from_erlang`](super::coming_from_erlang), and [`guarantees`](super::guarantees)
//! for every promise and how it is kept.
