//! Documentation only: a guide to croupier, and the reasoning behind it that outgrows a doc
//! comment.
//!
//! - [`tour`]: the three layers, in one example.
//! - [`choosing_a_policy`]: which policy, affinity or ejection for which load.
//! - [`draining`]: `apply_within`, its waits, and who waits for the drain to end.
//! - [`remote`]: nodes over gRPC: TLS, load reports, health, limits, discovery.
//! - [`coming_from_erlang`]: ballermann, revolver, OTP `pool`, Skitter and SimpleLocalnet
//!   calls, and their croupier counterparts.
//! - [`design`]: the layers, and why data flows down through them.
//! - [`guarantees`]: every promise, and the path by which each one is kept.
//! - [`metrics`]: what the `metrics` feature records, in one table.
//! - [`orderings`]: every atomic that is not `Relaxed`, and what it synchronises with.

pub mod choosing_a_policy;
pub mod coming_from_erlang;
pub mod design;
pub mod draining;
pub mod guarantees;
pub mod metrics;
pub mod orderings;
pub mod remote;
pub mod tour;
