//! # Choosing a policy
//!
//! | if | choose | why |
//! | --- | --- | --- |
//! | jobs cost about the same, or the members cannot tell their load | [`Policy::RoundRobin`](crate::Policy::RoundRobin) | the cheapest pick, exact turns; with [weights](crate::Member::weight) it shares by capacity |
//! | job costs vary and the members know their run queue | [`Policy::LeastLoaded`](crate::Policy::LeastLoaded) | tail latency close to one shared queue (see `examples/quality.rs`); reads every member's load, so keep it to a few dozen members |
//! | many members, or you want least loaded's quality at round robin's price | [`Policy::PowerOfTwo`](crate::Policy::PowerOfTwo) | two loads read whatever the size; close to least loaded in quality |
//! | a key's work belongs together (a session, a cache shard) | [`pick_for`](crate::Balancer::pick_for) / [`Pool::call_for`](crate::Pool::call_for) | consistent hashing; add [`bounded_loads`](crate::BalancerBuilder::bounded_loads) so one hot key cannot swamp a member |
//! | members fail without dying (a backend answering errors) | any policy + [`outlier_ejection`](crate::BalancerBuilder::outlier_ejection) | failures in a row take a member out for a while |
//!
//! Add [`max_load`](crate::BalancerBuilder::max_load) to any of them to refuse rather than
//! queue behind long run queues: the caller gets [`Overloaded`](crate::PickError::Overloaded)
//! and the message back, and a `Pool` behind tower pends in `poll_ready` instead.
//!
//! The measurements behind this advice, all ratios from one run on a 2-core machine, are in
//! `BENCHMARKS.md`.
//!
//! ```
//! use croupier::{Balancer, Member, Policy};
//!
//! #[derive(Clone)]
//! struct Conn(usize);
//! impl Member for Conn {
//!     fn is_alive(&self) -> bool { true }
//!     fn load(&self) -> usize { self.0 }
//! }
//!
//! let b = Balancer::builder()
//!     .policy(Policy::LeastLoaded)
//!     .max_load(8)
//!     .source(vec![Conn(3), Conn(1), Conn(8)])
//!     .build()?;
//! assert_eq!(b.pick().unwrap().0, 1);
//! # Ok::<(), croupier::ConfigError>(())
//! ```
