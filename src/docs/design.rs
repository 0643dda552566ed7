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
//!   │                     liveness; ratio-triggered refresh on its own refresher; overload;
//!   │                     apply_within (drain)
//! Worker, WorkerRef,      tokio tasks with mailboxes; a WorkerRef is a Member whose load is
//! Supervisor              its run-queue length; the Supervisor restarts crashed workers and
//!   │                     is a Source
//! Pool<W>                 Supervisor + Balancer in one value: the everyday entry point
//!   │
//! remote (feature)        nodes that pick each other by calls in flight; reports for liveness
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
//! ## Refresh off the pick path, on each balancer's own refresher
//!
//! A pick that finds the live share below the ratio does not run the [`Source`](crate::Source):
//! it starts (or joins) a single flight and hands it to its balancer's refresher, which
//! reloads under the balancer's writer lock and stores the new snapshot. The same refresher
//! re-admits ejected members when their time is up. A source that panics there is caught;
//! the flight lands, and the next crossing asks again.
//!
//! Every balancer has a refresher of its own, so that a source that takes seconds holds up its
//! own balancer's refresh and no other's. What it is depends on where `build()` runs:
//!
//! - **On a tokio runtime**: a task spawned there. It runs a flight's source through
//!   `spawn_blocking`, so a slow source holds one of the runtime's blocking threads (there
//!   are hundreds), not the runtime and not another balancer. It re-admits on the runtime's
//!   thread, or through `spawn_blocking` when a refresh holds the writer lock, and sleeps
//!   until the next re-admission with `tokio::time::sleep_until`.
//! - **Without a runtime**: a thread of its own (`croupier-refresh`), started at `build()`,
//!   parked while there is nothing to do, ended when the balancer is dropped.
//! - **When no thread can be started**: none; the pick that asks flies its flight itself, and
//!   reports re-admit due members.
//!
//! Why these. A process-wide thread, as before, let one slow source delay every balancer. A
//! small shared pool only moves the limit: as many slow sources as threads, and every
//! balancer waits again; a pool that grows on demand is more machinery than it saves. A thread
//! per balancer isolates completely, for one parked thread each, and is kept for balancers
//! built without a runtime (few and long-lived: pools, tower `Balance` and remote nodes are
//! built on a runtime). On a runtime an OS thread is the wrong thing on two counts: it is a
//! thread per balancer where the runtime already has a blocking pool for exactly this, and it
//! times with the system's clock, which the arena cannot drive. A task on the runtime follows
//! the runtime's clock, paused or not, and is ordered with the arena's other tasks: while a
//! source runs on the blocking pool, a paused current-thread runtime does not auto-advance
//! (tokio inhibits it while a blocking task runs), and a re-admission runs on the runtime's
//! thread at the virtual instant it is due.
//!
//! What a pick pays to ask. It hands the flight off (one `swap`), sets the refresher's signal
//! (one `fetch_or`) and wakes its [`AtomicWaker`](futures_util::task::AtomicWaker) (two more
//! read-modify-writes and the waker's wake). croupier takes no lock and allocates nothing. The
//! wake is the runner's: for a thread, `Thread::unpark`, a `futex` wake when it sleeps; for a
//! task, tokio's scheduling of it, which allocates nothing either but is tokio's own: from one
//! of the runtime's threads, a push onto that thread's run queue (on a current-thread runtime
//! a `VecDeque` that grows only past the most tasks it ever held at once, 64 to start with);
//! from any other thread, a push onto the runtime's injection queue under tokio's mutex, and
//! a wake (a system call) if the runtime sleeps. `tests/no_alloc.rs` counts both.
//!
//! Lifetime. The runner holds its balancer weakly and ends when the balancer is dropped (the
//! balancer's drop wakes it to find that out). While it works it holds it strongly, so the
//! last handle may be dropped on the refresher: the members' and the source's `Drop` run there
//! inside a guard, as a source does. If the runtime shuts down before the balancer, the task's
//! drop starts a thread that takes over (from then on on the system clock); a flight handed
//! off, or taken up but not flown, is kept in the hand-off flag and the signal until that
//! thread looks, so a refresh asked for is never lost. If no thread can be started then, those
//! who ask do the work. Two consequences to know: a balancer built on a current-thread runtime
//! refreshes only while something drives that runtime (as its `block_on` does, or its drop,
//! after which a thread takes over); and tokio's runtime shutdown waits for a source running
//! on its blocking pool, as it waits for any blocking task (`Runtime::shutdown_timeout` bounds
//! that). [`notify_dead`](crate::Balancer::notify_dead) still runs the refresh it triggers on
//! its caller's thread.
//!
//! ## Time: tokio's clock where there is a runtime
//!
//! Every duration croupier measures is a `tokio::time::Instant`: ejection and re-admission
//! (read by the balancer's clock: inside the runtime it was built on, `Handle::enter` when
//! the caller is elsewhere, so that a report from any thread stamps an ejection in the
//! runtime's time; the system's clock without one), `Balance`'s cooldowns and peak-EWMA
//! latencies, the supervisor's restart window and backoff, a drain's timeouts and the length
//! it reports to metrics. `tokio::time::Instant::now()` reads the system's clock where no
//! clock is paused, so a `Balancer` used without tokio keeps working as before. With tokio's
//! `test-util`, `start_paused` and `tokio::time::advance` drive all of it
//! (`readmission_follows_tokios_paused_clock`, `drain_seconds_follow_tokios_paused_clock`).
//! No separate clock is injected: tokio's clock is the one a simulation drives, and pausing
//! it is how a test injects time.
//!
//! Randomness is seeded: power of two's sampling and ejection's jitter mix the balancer's
//! seed (random unless [`seed`](crate::BalancerBuilder::seed) sets it, so that independent
//! processes do not sample in step) with the pick's turn and its stripe's rank in the balancer
//! (the order in which stripes first picked from it), never with the thread's stripe, which a
//! process hands out in the order its threads first pick. So a seeded balancer picked from
//! one thread makes the same choices from run to run
//! (`a_seeded_balancer_repeats_its_picks_whatever_the_threads_stripe`).
//!
//! The arena (`arena/`) builds on both: each run is a current-thread runtime started paused,
//! every croupier builder seeded, tower's p2c built with `from_rng` over a seeded generator.
//! tokio's timers count whole milliseconds, so the arena's own events (arrivals, service
//! times, faults, reports) wait in a heap of its own at nanosecond precision; the runtime's
//! `on_thread_park` hook, called when nothing can run, lets the arena move the paused clock
//! with `tokio::time::advance` to its next event or the next millisecond boundary, whichever
//! is first, so croupier's and tokio's timers still fire on their own millisecond. The same
//! seed gives byte-identical output on any machine and any number of threads
//! (`arena_is_deterministic`).
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
