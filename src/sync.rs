//! The synchronisation types the balancer's state machines use. Here they are std's; the loom
//! models in `loom/` compile `balancer/state.rs` against a `sync` module of loom's instead.

pub(crate) use std::sync::atomic;
