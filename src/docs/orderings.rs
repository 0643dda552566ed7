//! # Memory orderings
//!
//! Every atomic operation in croupier is `Relaxed` unless listed here. Relaxed ones are
//! counters and flags that publish no other memory: messages travel through tokio's channels,
//! which synchronise on their own, and snapshots through `ArcSwap`.
//!
//! | where | operation | ordering | synchronises with |
//! | --- | --- | --- | --- |
//! | `balancer/state.rs`, `SingleFlight::request` | `fetch_add` on the request count | `AcqRel` | Release: hands what the requesting picker saw (the deaths it counted) to the flight's owner; Acquire: a new owner sees the previous flight's work |
//! | `SingleFlight::fly` | first load of the request count | `Acquire` | the requests' Release |
//! | `SingleFlight::fly` | landing `compare_exchange` | `AcqRel` / `Acquire` | Acquire pairs with the requests' Release; Release hands the flight's work to the next owner |
//! | `SingleFlight`'s crash guard | store of 0 | `Release` | a landing after a panicking source, for the next owner's Acquire |
//! | `SingleFlight::hand_off` / `take_handoff` | `swap` on the hand-off flag | `Release` / `Acquire` | the refresher sees the request of the picker that handed the flight over |
//! | `supervisor/mod.rs`, `Signal::fire` / `is_fired` | store / load of the flag | `Release` / `Acquire` | a task that sees the signal also sees every slot marked shut and the task tracker closed before it was raised |
//!
//! Relaxed, on purpose:
//!
//! - the pick cursor (`balancer/state.rs`): the drain flag orders picks against drains through
//!   the modification order of that one location (loom model `no_pick_succeeds_while_draining`);
//! - a slot's state (`worker/state.rs`): a retire that a caller must see before it hears of a
//!   crash is stored before the reply channel is dropped, and that drop carries it;
//! - the per-snapshot dead and disabled flags, the load counters and the statistics.
