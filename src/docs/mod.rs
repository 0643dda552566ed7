//! Documentation only: the reasoning behind croupier that outgrows a doc comment.
//!
//! - [`design`]: the layers, and why data flows down through them.
//! - [`guarantees`]: every promise, and the path by which each one is kept.
//! - [`metrics`]: what the `metrics` feature records, in one table.
//! - [`orderings`]: every atomic that is not `Relaxed`, and what it synchronises with.

pub mod design;
pub mod guarantees;
pub mod metrics;
pub mod orderings;
