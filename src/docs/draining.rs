//! # Draining: stop dealing, wait, maintain, resume
//!
//! [`apply_within`](crate::Balancer::apply_within) is ballermann's: it raises the drain flag
//! (from then on every [`pick`](crate::Balancer::pick) answers
//! [`Draining`](crate::PickError::Draining) at once), waits as its [`Wait`](crate::Wait)
//! says, runs your maintenance, and lowers the flag, whatever happens: success, timeout,
//! panic in the maintenance, or the future dropped.
//!
//! | wait | until |
//! | --- | --- |
//! | [`Wait::none()`](crate::Wait::none) | at once |
//! | [`Wait::duration(d)`](crate::Wait::duration) | `d` has passed |
//! | [`Wait::idle(timeout)`](crate::Wait::idle) | every live member's load is 0 (members a refresh adds meanwhile included), or the timeout |
//! | [`Wait::each(timeout, f)`](crate::Wait::each) | `f(member)` has finished for every live member |
//!
//! Callers that would rather wait than be refused use
//! [`pick_wait`](crate::Balancer::pick_wait): woken when the drain ends, not by polling. A
//! `Pool` behind tower pends in `poll_ready` during a drain and is woken when it ends; a
//! remote node answers `NOT_SERVING` on `grpc.health.v1` while it drains.
//!
//! ```
//! use std::time::Duration;
//!
//! use croupier::{Pool, Wait, Worker};
//!
//! struct Echo;
//! impl Worker for Echo {
//!     type Msg = u32;
//!     type Reply = u32;
//!     async fn handle(&mut self, n: u32) -> u32 { n }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(|_| Echo).size(2).start()?;
//! let rotated = pool
//!     .apply_within(Wait::idle(Duration::from_secs(1)), || async { "logs rotated" })
//!     .await?;
//! assert_eq!(rotated, "logs rotated");
//! assert_eq!(pool.call(1).await?, 1); // dealing resumed
//! # Ok(()) }
//! ```
