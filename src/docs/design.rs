//! # Design: the layers
//!
//! Each layer depends only on those above it; data flows down and never climbs back.
//!
//! ```text
//! Member, Source          what can be handed out, and where the current set comes from
//!   │
//! Snapshot                one immutable view of the members, built when the set changes,
//!   │                     read by every pick (private)
//! Policy                  round robin, least loaded, power of two: pure functions of a
//!   │                     snapshot and a turn, which report what they passed over
//! Balancer<M>             lock-free pick() over one ArcSwap'd snapshot; the striped cursor;
//!   │                     liveness; ratio-triggered refresh on the refresher thread; overload;
//!   │                     apply_within (drain)
//! Worker, WorkerRef,      tokio tasks with mailboxes; a WorkerRef is a Member whose load is
//! Supervisor              its run-queue length; the Supervisor restarts crashed workers and
//!   │                     is a Source
//! Pool<W>                 Supervisor + Balancer in one value: the everyday entry point
//!   │
//! remote (feature)        nodes that pick each other by reported load
//! ```
//!
//! ## One pick path
//!
//! [`Balancer::pick`](crate::Balancer::pick) takes a turn from its thread's stripe of the
//! cursor (one relaxed `fetch_add`, whose lowest bit is the drain flag; the stripes keep
//! pickers on different cores off each other's cache lines), loads the snapshot, and asks
//! the policy's fast path whether the member the turn lands on can be handed out as it
//! stands. That path only reads and is small enough to inline into callers. Anything else (a
//! dead or disabled member, a load over `max_load`, least loaded with a busy member at the
//! turn) goes to one cold path out of line: the policy's full scan, from the same member with
//! the same turn, so that the fast path never changes an answer. The scan reports what it
//! passed over; the balancer, and only the balancer, moves the pick's stripe on by the extra
//! turns, counts the dead, and asks for a refresh.
//!
//! "Can this member be handed out" is one function of the snapshot (enabled, alive, under the
//! limit), which every policy's fast path and scan call.
//!
//! ## Refresh off the pick path
//!
//! A pick that finds the live share below the ratio does not run the [`Source`](crate::Source):
//! it starts (or joins) a single flight and hands it to the refresher, one thread per
//! process, which reloads under the balancer's writer lock and stores the new snapshot.
//! Waking that thread is one atomic swap and, when it sleeps, one `futex` wake. A source that
//! panics there is caught; the flight lands, and the next crossing asks again.
//!
//! ## Errors per layer
//!
//! A worker ref can answer dead, full, shut down, or died while handling
//! ([`SendError`](crate::SendError), [`CallError`](crate::CallError)). A pool adds the
//! balancer's refusals ([`PoolSendError`](crate::PoolSendError),
//! [`PoolCallError`](crate::PoolCallError)) through `From`. Every public error lives in
//! [`croupier::error`](crate::error).
//!
//! ## A worker slot
//!
//! A slot is one place in a supervisor: its mailbox and load outlive the incarnations that
//! serve it. Its state is one atomic word with named transitions (serving incarnation *i*,
//! ended, shut); `retire` moves it on when an incarnation ends, `shut` wins over everything,
//! and a loom model checks that a retire racing a shutdown never leaves a handle reading
//! alive.
