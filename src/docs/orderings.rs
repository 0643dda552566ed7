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
//! | `balancer/state.rs`, `Cursor::admit` / `start_drain` | `fetch_or(0)` / `fetch_or(DRAINING)` on a stripe | `Release` / `Acquire` | a pool message counted into its worker's load before the drain flag went up is seen by the drain's idle wait; otherwise the second look reads the flag up and the message comes back `Draining` |
//! | `balancer/refresher.rs`, `Refresher::wake` and the runner | `fetch_or` / `fetch_and` on the signal word | `AcqRel` | a flight handed off is flown exactly once, by the refresher or, once it has fallen back to none, by the picker (see the comments there) |
//! | `supervisor/mod.rs`, `Signal::fire` / `is_fired` | store / load of the flag | `Release` / `Acquire` | a task that sees the signal also sees every slot marked shut and the task tracker closed before it was raised |
//!
//! Relaxed, on purpose:
//!
//! - the pick cursor (`balancer/state.rs`), but for `admit` and the drain's start: the drain flag orders picks against drains through
//!   the modification order of each stripe, as set out below (loom models
//!   `no_pick_succeeds_while_draining` and `every_pick_after_the_start_is_refused`);
//! - a slot's state (`worker/state.rs`): a retire that a caller must see before it hears of a
//!   crash is stored before the reply channel is dropped, and that drop carries it;
//! - the per-snapshot dead and disabled flags, the load counters and the statistics.
//!
//! ## Why a striped drain flag is exact
//!
//! The cursor is `STRIPES` (16) cache-padded counters, each with the drain flag in its lowest
//! bit; a pick is one relaxed `fetch_add` on its thread's stripe, which returns the flag with
//! the turn. [`apply_within`](crate::Balancer::apply_within) calls `start_drain`, which sets
//! the flag with a `fetch_or` (Acquire, for `admit`) on stripe 0, then 1, and so on to the last, and only
//! then waits and runs maintenance; the drop guard's `end_drain` clears them the same way.
//!
//! - **Per stripe, exact.** The read-modify-writes of one stripe are totally ordered (its
//!   modification order), and each reads the value the one before it wrote. So a pick on
//!   stripe `s` is either before that stripe's `fetch_or` (it reads no flag: granted) or after
//!   it and before its `fetch_and` (it reads the flag: refused), or after that (granted). On
//!   every stripe, the refused turns are exactly those between its flag and its end.
//! - **The drain starts when the last stripe is flagged.** `start_drain` returns after its
//!   last `fetch_or`, and maintenance is sequenced after it, so every stripe's `fetch_or`
//!   *happens before* maintenance and before anything that happens after maintenance. A pick
//!   that happens after the start (a thread that learns of the drain, or of anything
//!   maintenance did, through any synchronisation) makes its `fetch_add` after that stripe's
//!   `fetch_or` has happened before it; by write-read coherence (C++ \[intro.races\]: a
//!   read-modify-write that happens after a write to the same location reads that write or
//!   one later in its modification order), it reads the flag: refused, on whatever stripe.
//!   Relaxed is enough: the happens-before comes from the drain's own thread and from
//!   whatever synchronisation links the picker to it, not from the cursor.
//! - **Picks racing the start are not after it.** A pick on stripe 3 while stripes 0 to 2 are
//!   flagged and 3 is not is ordered before stripe 3's `fetch_or` and granted; nothing that
//!   happens after the start can be ordered so, by the point above, so this pick is concurrent
//!   with the start, as a pick just before a single flag would be. A pick on stripe 0 then is
//!   refused a moment early, which promises nothing away: `pick_wait` registers for the
//!   drain's end before it looks, and the end wakes every waiter after clearing every stripe.
//!   The same holds, mirrored, around `end_drain`.
//! - **Checks and `is_draining`.** `pick_for` checks its thread's stripe with `fetch_or(0)`, a
//!   read-modify-write that changes nothing: it sits in that stripe's modification order like
//!   a pick, so the two points above apply to it unchanged; one stripe is enough because the
//!   argument never needs the other stripes. A plain load would also see the flag once the
//!   start happens before it, but could read an older value than a concurrent pick's turn
//!   did, so it would not be ordered with picks on its stripe. `Balancer::is_draining` loads
//!   its thread's stripe: after a started drain it reads `true`, and a `true` means the
//!   thread's next pick is refused unless the drain ends meanwhile (read-read coherence on one
//!   location).
//!
//! The loom models in `loom/` compile `balancer/state.rs` with two stripes: a pick on each
//! stripe racing a drain's start and end (`no_pick_succeeds_while_draining`: refused exactly
//! inside each stripe's window), and a picker that learns the drain has started and is then
//! refused on both stripes, by checks too, until the end (`every_pick_after_the_start_is_refused`).
//! Flagging only the first stripe fails both.
