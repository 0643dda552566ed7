//! croupier hands out handles to workers the way a croupier deals around a table: in turn
//! (round robin), to whoever is least busy (least loaded), or to the lighter of two picked at
//! random (power of two choices), without a lock on the hot path.
//!
//! It is the Rust heir of Erlang's [ballermann] and revolver and of OTP's `pool`:
//!
//! - a [`Balancer`] deals from any set of [`Member`]s, skips dead ones, reloads from its
//!   [`Source`] once too few are alive, and refuses with [`PickError::Overloaded`] when every
//!   member's queue is too long;
//! - [`Balancer::pick`] reads one [`arc_swap`] snapshot and bumps its thread's stripe of a
//!   cache-padded atomic cursor: no lock, no allocation, no cache line that another core's
//!   picks write, and no system call but the one wake of the rare pick that hands a
//!   refresh to its balancer's refresher.
//!
//! The reasoning behind the design, every guarantee and every memory ordering are in
//! [`docs`]; every public error is in [`error`].
//!
//! # A short tour
//!
//! ```
//! use std::sync::{
//!     atomic::{AtomicBool, Ordering},
//!     Arc,
//! };
//!
//! use croupier::{Balancer, Member, PickError, Policy};
//!
//! #[derive(Clone, Debug)]
//! struct Conn {
//!     name: &'static str,
//!     up: Arc<AtomicBool>,
//! }
//!
//! impl Member for Conn {
//!     fn is_alive(&self) -> bool {
//!         self.up.load(Ordering::Relaxed)
//!     }
//! }
//!
//! let conns: Vec<Conn> = ["a", "b", "c"]
//!     .into_iter()
//!     .map(|name| Conn { name, up: Arc::new(AtomicBool::new(true)) })
//!     .collect();
//!
//! let balancer = Balancer::builder()
//!     .policy(Policy::RoundRobin)
//!     .source(conns.clone())
//!     .build()?;
//!
//! // In turn, in the source's order.
//! let names: Vec<_> = (0..3).map(|_| balancer.pick().unwrap().name).collect();
//! assert_eq!(names, ["a", "b", "c"]);
//!
//! // A dead member is never handed out.
//! conns[1].up.store(false, Ordering::Relaxed);
//! assert!((0..10).all(|_| balancer.pick().unwrap().name != "b"));
//!
//! // With nobody alive, the balancer says so rather than blocking.
//! conns.iter().for_each(|c| c.up.store(false, Ordering::Relaxed));
//! assert_eq!(balancer.pick().unwrap_err(), PickError::NoMembers);
//! # Ok::<(), croupier::ConfigError>(())
//! ```
//!
//! [ballermann]: https://github.com/odo/ballermann
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod balance;
mod balancer;
mod config;
pub mod docs;
pub mod error;
mod member;
mod mix;
mod penalty;
pub mod policy;
mod pool;
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub mod remote;
mod snapshot;
mod supervisor;
mod sync;
mod telemetry;
mod worker;

#[allow(deprecated)]
pub use crate::balancer::Stats;
pub use crate::{
    balancer::{
        Balancer, BalancerBuilder, BalancerStats, EachFn, Ejection, Outcome, Picked, SlowStart,
        Ticket, Wait,
    },
    error::{
        CallError, ConfigError, DrainError, PickError, PoolCallError, PoolSendError, ResizeError,
        SendError,
    },
    member::{Member, Source},
    penalty::FailurePenalty,
    policy::Policy,
    pool::{retry::RetryBudget, Pool, PoolBuilder, PoolStats},
    supervisor::{Backoff, Restart, Supervisor, SupervisorBuilder, SupervisorStats, WorkerStats},
    worker::{Mailbox, Worker, WorkerId, WorkerRef},
};
