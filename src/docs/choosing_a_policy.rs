//! # Choosing a policy
//!
//! Defaults: a [`Pool`](crate::Pool) and a [`Balance`](crate::balance::Balance) pick
//! [least loaded](crate::Policy::LeastLoaded) (they count their members' loads themselves:
//! run queues; requests in flight weighted by a peak-EWMA of latency,
//! [`Load::peak_ewma`](crate::balance::Load::peak_ewma)), and so does the remote layer's
//! master (over its own calls in flight to each node); a bare
//! [`Balancer`](crate::Balancer) picks [round robin](crate::Policy::RoundRobin), as its
//! members' loads may be reported late.
//!
//! The arena (`arena/`, `BENCHMARKS.md`) measures each against the ideal (one shared queue)
//! and tower's p2c, in virtual time: with uneven jobs, mixed speeds, a member 8× slower or a
//! cold one, least loaded keeps p99 within 1.08–1.33× of the ideal, in a `Pool` as in a
//! `Balance`; round robin lets a slower member's queue grow without bound (p99 from 6× to
//! thousands of times the ideal). A `Pool` also [hands back](crate::PoolBuilder::hand_back_after)
//! a slow worker's queue to free workers (by default after 1 ms): 1.04–1.16× with least
//! loaded, and round robin too stays within 0.99–1.24× but in a crash loop. A worker or member that fails fast carries a penalty in its
//! load ([`Worker::failed`](crate::Worker::failed), a `Balance` member's error responses), so
//! least loaded and power of two stop sending it most of the traffic. Where loads are
//! reported late (16 callers over 8 members, reports every 100 ms), least loaded over the
//! reports as they stand herds onto the member that looked idle last (83× the ideal), power
//! of two less (12×), round robin least (3.7×); the remote layer therefore weighs each
//! master's own calls in flight and drains a report at the node's reported pace (2.7×, and no
//! member over 1.21× its share: least loaded stays its default).
//!
//! | if | choose | why |
//! | --- | --- | --- |
//! | jobs cost about the same, or the members cannot tell their load | [`Policy::RoundRobin`](crate::Policy::RoundRobin) | the cheapest pick, exact turns; with [weights](crate::Member::weight) it shares by capacity |
//! | job costs vary and the members know their run queue (a `Pool`'s and a `Balance`'s default) | [`Policy::LeastLoaded`](crate::Policy::LeastLoaded) | tail latency close to one shared queue (the arena: 1.08–1.33× in S1–S7); reads every member's load |
//! | many members (least loaded reads every load: thousands of members make its pick slow) | [`Policy::PowerOfTwo`](crate::Policy::PowerOfTwo) | two loads read whatever the size; in the arena its p99 is about 2× the ideal's where least loaded's is 1.1–1.3× |
//! | a key's work belongs together (a session, a cache shard) | [`pick_for`](crate::Balancer::pick_for) / [`Pool::call_for`](crate::Pool::call_for) | consistent hashing; add [`bounded_loads`](crate::BalancerBuilder::bounded_loads) so one hot key cannot swamp a member |
//! | members fail without dying (a backend answering errors) | least loaded or power of two, with [`Worker::failed`](crate::Worker::failed) for a pool; add [`outlier_ejection`](crate::BalancerBuilder::outlier_ejection) | a failure weighs in the member's load for a while, so one that fails fast stops drawing requests; failures in a row take a member out |
//!
//! Add [`max_load`](crate::BalancerBuilder::max_load) to any of them to refuse rather than
//! queue behind long run queues: the caller gets [`Overloaded`](crate::PickError::Overloaded)
//! and the message back, and a `Pool` behind tower pends in `poll_ready` instead.
//!
//! Beside the policy:
//!
//! | if | add | what it does |
//! | --- | --- | --- |
//! | a member fails some requests but rarely several in a row | [`Ejection::success_rate`](crate::Ejection::success_rate) | ejects a member whose share of successes over its recent requests falls below a minimum |
//! | new members start cold (caches, JIT, connection pools) | [`slow_start`](crate::BalancerBuilder::slow_start) | ramps a new member's weight over a window (gRPC A100); round robin's share follows it exactly |
//! | a `Pool` job may run twice (idempotent) | [`Pool::call_idempotent`](crate::Pool::call_idempotent), [`Pool::call_hedged`](crate::Pool::call_hedged) | retries a failed call, or hedges a slow one, on another worker, within a [`RetryBudget`](crate::RetryBudget) |
//! | a `Balance` request may be sent twice | tower's `retry::Retry` with its `retry::budget::TpsBudget` over the `Balance` | each retry is a new pick, and a failure weighs in its member's load for a while, so least loaded deals the retry elsewhere (`balance_retries_under_towers_budget_reach_a_healthy_member` in `tests/retries.rs` shows the policy, a dozen lines) |
//! | a `Pool`'s jobs vary a lot in length | nothing: [hand-back](crate::PoolBuilder::hand_back_after) is on (1 ms) | a slow worker's queued calls move to free workers |
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
