//! # Guarantees, and how each is kept
//!
//! ## `pick()` takes no lock, makes no allocation and (almost) no system call
//!
//! Every pick loads one snapshot through `ArcSwap` (lock-free; each thread gets a node of its
//! own on its first load), takes one turn from its thread's stripe of the cursor and reads
//! members' flags and loads.
//! The pick that finds the live share below the refresh ratio hands the refresh to its
//! balancer's refresher: a few atomic read-modify-writes and one wake, the only system call a
//! pick can make. Without a runtime the refresher is a thread and the wake a `futex` wake if it
//! is parked; on a runtime it is a task and the wake is tokio's scheduling of it, which takes
//! no croupier lock and allocates nothing, but from outside the runtime's threads takes tokio's
//! injection-queue mutex and may wake a sleeping worker ([the
//! design](crate::docs::design#refresh-off-the-pick-path-on-each-balancers-own-refresher)).
//! The pick returns from the snapshot it holds. Tests: `tests/no_alloc.rs`,
//! `ratio_crossing_pick_allocates_nothing` and
//! `ratio_crossing_pick_on_a_runtime_allocates_nothing` included.
//!
//! A [`Picked`](crate::Picked) guard keeps its snapshot alive; if a refresh replaced that
//! snapshot meanwhile, dropping the guard may free it on the picking thread. Do not hold a
//! guard across an `.await`. Nothing else a thread keeps holds a snapshot: once a refresh has
//! replaced it and its last guard is dropped, it is freed with its members, even if a thread
//! that picked from it lives on without picking again. A cursor stripe holds only a count, and
//! arc-swap's per-thread debt slot is cleared when the guard drops (a guard whose snapshot was
//! replaced while it was held holds a full reference, which its drop releases). Test:
//! `tests/stripes.rs`, `replaced_snapshot_is_released`.
//!
//! ## One balancer's slow source delays no other balancer
//!
//! Each balancer has a refresher of its own: a task on the runtime it was built on, which runs
//! the source on the blocking pool, or a thread of its own without one. Tests:
//! `tests/refresh.rs`, `a_slow_source_does_not_delay_another_balancers_refresh` (with and
//! without a runtime); `tests/refresher.rs` (one per balancer, ended with it, taking over
//! when the runtime goes first).
//!
//! ## Picks on different cores write different cache lines
//!
//! The cursor is 16 stripes, each a cache-padded counter; a thread takes one at its first pick
//! (threads take them in turn, from a process-wide ticket; a `const` thread-local, so no
//! allocation) and every pick it makes writes that stripe only. Up to 16 threads never write
//! a line another's picks write; beyond that, threads that share a stripe share its line.
//! What a pick reads (the snapshot pointer, the members' flags and loads) is written only on
//! slow paths. What the stripes cost:
//!
//! - Round robin is exact per thread, not across threads: one thread alone deals every member
//!   exactly `k` times in `k·n` picks, in source order, from wherever its stripe stands; under
//!   concurrent pickers, each member's count stays within `S` of the mean, `S` being the
//!   stripes in use (at most the threads, at most 16). Tests: `tests/stripes.rs`,
//!   `one_thread_round_robin_is_exact_with_stripes` and `multi_thread_drift_is_bounded`.
//! - A fresh balancer's stripes all start at the first member, so a burst of single picks from
//!   many threads lands on the first members (within the bound above).
//! - [`stats().picks`](crate::BalancerStats::picks) sums the stripes: exact once the picks it
//!   counts have happened before the call, a sum of values read one after the other while
//!   picks run.
//!
//! ## A refresh never blocks pickers
//!
//! Pickers deal from the old snapshot until the new one is stored. A pick that begins after
//! [`refresh()`](crate::Balancer::refresh) returned deals only from the new one. A pick that
//! finds no live member answers `NoMembers` at once, even when the refresh it asked for is
//! about to find some; if a newer snapshot is already stored, it looks once more there.
//!
//! ## A draining balancer hands out nothing, and always resumes
//!
//! The drain flag is the lowest bit of every cursor stripe. A drain sets it on every stripe
//! (one `fetch_or` each) before it waits or runs maintenance, and counts as started once the
//! last stripe is flagged; a pick's `fetch_add` is ordered before or after its stripe's
//! `fetch_or` in that stripe's modification order, and any pick that happens after the start
//! comes after every stripe's flag, so none slips through (the argument, and the loom models
//! that check it, are in [the orderings](crate::docs::orderings)). A drop guard lowers the
//! flag on every stripe on success, timeout, error, panic, or when the future is dropped.
//! [`pick_for`](crate::Balancer::pick_for) takes no turn (round robin's sequence stays exact
//! around it) but reads the flag of its thread's stripe with a read-modify-write that changes
//! nothing (`fetch_or(0)`), which is ordered in the same modification order as a pick on that
//! stripe, so none of its picks slips through either. A pick that races the start (its stripe
//! flagged or not yet) may be refused a moment early or granted; neither is after the start.
//!
//! ## Weights, affinity and ejection cost a pick nothing at pick time
//!
//! The weighted round-robin schedule and the affinity table are built with the snapshot
//! (the table from the first `pick_for` on, for every later snapshot), so a pick only reads
//! them: O(1), no lock, no allocation (`tests/no_alloc.rs`). Reports touch the reported
//! entry's failure counter and nothing else; ejecting and re-admitting take the writer lock
//! on a slow path, and the balancer's refresher re-admits on time, by tokio's clock on a
//! runtime (paused, if the test pauses it) and the system's without one. The bound of bounded loads is
//! cached in the table and recomputed when a key's member looks over it, so a key never
//! moves on a stale bound.
//!
//! ## A panic anywhere in worker code is a crash like any other
//!
//! The factory, `started`, `handle` (both the call that makes its future and every poll),
//! `is_finished`, `stopping`, and the `Drop` of the worker, its futures, messages and replies
//! all run inside the guard of the slot's task. A panic there ends the incarnation: its
//! handles read dead at once, and the slot restarts by its [`Restart`](crate::Restart) rule
//! or ends. The slot task as a whole is caught once more; if anything else unwinds, the slot
//! ends visibly and its queued messages come back. A panicking `stopping` at shutdown or at a
//! hard stop is logged and starts nothing. A panicking [`Source`](crate::Source) of an
//! attached balancer is logged and costs the supervisor nothing.
//!
//! ## Nothing a caller handed over is lost in silence
//!
//! A message that a `send` or `call` queued is handled, or comes back to its caller inside an
//! error (`Dead`, `Shutdown`), or its caller hears `WorkerDied` (the worker died while
//! handling it), or — when nobody waits for it — it is counted in
//! [`SupervisorStats::dropped`](crate::SupervisorStats::dropped) and traced. When a slot
//! closes, it waits for sends already under way before it hands the queue back, so none slips
//! in behind its last look. At a hard stop, a message taken but not yet started comes back as
//! `Shutdown`; one in the middle of its handling is abandoned (`WorkerDied`, or counted).
//!
//! A shrink ([`resize`](crate::Supervisor::resize)) keeps this too: a slot taken out reads
//! dead at once, closes its mailbox, waits for sends already under way, and moves every queued
//! message with its caller to a slot that remains (the least loaded), where it is handled and
//! answered; only when no slot remains that could take it does it come back (`Dead`, or
//! `Shutdown` at a hard stop) or get counted.
//!
//! So does a pool's [hand-back](crate::PoolBuilder::hand_back_after): a message that came
//! through the pool and waits behind a slow one moves, with its caller, to a free worker,
//! which handles and answers it; if that worker's mailbox has closed meanwhile, the message
//! goes back to the head of the queue it came from. Messages addressed to a worker (by its
//! handle, by key, broadcast) never move, and neither does anything behind them.
//!
//! ## A hard stop ends every task at once
//!
//! Dropping the last handle of a [`Supervisor`](crate::Supervisor) or [`Pool`](crate::Pool)
//! without `shutdown`, or a give-up, is a hard stop: every handler and every hook (`started`,
//! `stopping`) that waits is abandoned at its `.await`, raced against the stop signal, so no
//! slot task outlives it whatever the worker's async code does. (Code that blocks its thread
//! without awaiting cannot be cut short.)
//!
//! ## A resize is one step, and ids never repeat
//!
//! The slots sit behind one `ArcSwap`; a resize replaces them whole under the mutex that
//! shutdown and hard stops take too, so no slot is added once stopping has begun, and the
//! attached balancers are refreshed to the new set before the resize returns. A slot grown
//! where one was removed starts after the last incarnation the removed one served or could
//! still start (the removal and the runner's retire are compare-exchanges on the one state
//! word; `loom/` models the race).
//!
//! ## Shutdown always returns
//!
//! A graceful shutdown lets every worker finish its queue, then runs its `stopping` hook. A
//! slot in a restart backoff starts its successor at once to finish its queue; a worker that
//! crashes during shutdown is restarted only while it makes progress through its queue; the
//! restart loop yields to the runtime on every turn.
//!
//! ## Bad settings are refused at `build()` / `start()`
//!
//! With a [`ConfigError`](crate::ConfigError) that says what to change.
