//! The README's promises on every path a worker written in ordinary ways can take: a panic
//! anywhere in worker code restarts the worker, shutdown finishes whatever the hooks do, and
//! no message that was accepted is lost uncounted.

mod common_workers;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use croupier::{
    Backoff, Balancer, CallError, Member, Pool, PoolCallError, Restart, Supervisor, Wait, Worker,
    WorkerId,
};
use tokio::time::Instant;

use crate::common_workers::{until, within, Event, Msg, Probe, Reply, TestWorker};

/// Keeps the panics these tests cause on purpose out of the output; any other panic (a
/// failed assertion) is reported as usual.
fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        if !(message.contains("on purpose") || message.contains("intentional panic")) {
            default(info);
        }
    }));
}

/// Runs `f` on a runtime of its own in a plain thread and fails if it has not finished
/// within `limit`: a watchdog that fires even when the runtime under test is starved.
fn with_watchdog(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        f();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) => runner.join().expect("the test body panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().expect_err("the body ended without a word"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: not finished within {limit:?}"),
    }
}

/// A worker whose `handle` does its checking before it builds a future: a panic there comes
/// before the first poll.
struct Strict;

impl Worker for Strict {
    type Msg = u32;
    type Reply = u32;

    #[allow(clippy::manual_async_fn)]
    fn handle(&mut self, n: u32) -> impl Future<Output = u32> + Send {
        assert!(
            n != 0,
            "zero is refused on purpose, before any future exists"
        );
        std::future::ready(n)
    }
}

#[tokio::test]
async fn panic_before_the_first_poll_restarts_the_worker() {
    quiet_panics();
    let pool = Pool::builder(|_| Strict).size(1).start().unwrap();
    let first = pool.supervisor().children()[0].clone();

    let r = within(pool.call(0)).await;
    assert!(matches!(r, Err(PoolCallError::WorkerDied)), "{r:?}");
    assert!(!first.is_alive(), "the crashed incarnation must read dead");

    // The slot lives on in a new incarnation, and the pool deals it.
    let r = within(pool.call(5)).await;
    assert_eq!(r.unwrap(), 5);
    let now = pool.supervisor().children();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id().incarnation(), 1);
    assert_eq!(pool.stats().supervisor.restarts, 1);
    within(pool.shutdown()).await;
}

/// A worker whose first incarnation panics in `started`; it answers with its id.
struct FirstStartFails(WorkerId);

impl Worker for FirstStartFails {
    type Msg = u32;
    type Reply = WorkerId;

    async fn started(&mut self) {
        assert!(self.0.incarnation() > 0, "the first start fails on purpose");
    }

    async fn handle(&mut self, _: u32) -> WorkerId {
        self.0
    }
}

/// A panic in `started`, before the worker has taken any message, restarts it like any other
/// crash; what was queued for the crashed incarnation goes to its successor.
#[tokio::test]
async fn panic_in_started_restarts_the_worker_and_its_successor_takes_the_queue() {
    quiet_panics();
    let sup = Supervisor::builder(FirstStartFails).start().unwrap();
    let first = sup.children()[0].clone();
    // Queued before the first incarnation has even started.
    let by = within(first.call(7)).await.unwrap();
    assert_eq!(by, WorkerId::new(0, 1));
    assert!(!first.is_alive());
    assert_eq!(sup.stats().restarts, 1);
    within(sup.shutdown()).await;
}

/// Says it has finished after a message it is told to finish on, and panics in `is_finished`
/// when told to; counts the hooks it runs.
struct Moody {
    panic_in_is_finished: bool,
    stopped: Arc<AtomicU64>,
}

impl Worker for Moody {
    type Msg = bool;
    type Reply = ();

    async fn handle(&mut self, panic_next: bool) {
        self.panic_in_is_finished = panic_next;
    }

    fn is_finished(&self) -> bool {
        assert!(!self.panic_in_is_finished, "is_finished panics on purpose");
        false
    }

    async fn stopping(&mut self) {
        self.stopped.fetch_add(1, SeqCst);
    }
}

#[tokio::test]
async fn panic_in_is_finished_restarts_the_worker() {
    quiet_panics();
    let stopped = Arc::new(AtomicU64::new(0));
    let pool = Pool::builder({
        let stopped = Arc::clone(&stopped);
        move |_| Moody {
            panic_in_is_finished: false,
            stopped: Arc::clone(&stopped),
        }
    })
    .size(1)
    .start()
    .unwrap();
    let first = pool.supervisor().children()[0].clone();

    // The handler itself succeeds, so its caller gets the reply; the panic comes after.
    within(pool.call(true)).await.unwrap();
    until("the crash is noticed", || !first.is_alive()).await;
    until("the successor serves", || {
        pool.supervisor()
            .children()
            .first()
            .is_some_and(|w| w.id().incarnation() == 1)
    })
    .await;
    within(pool.call(false)).await.unwrap();
    let stats = pool.stats().supervisor;
    assert_eq!((stats.deaths, stats.restarts), (1, 1));
    assert_eq!(
        stopped.load(SeqCst),
        0,
        "a crashed incarnation does not run stopping"
    );
    within(pool.shutdown()).await;
    assert_eq!(stopped.load(SeqCst), 1, "the successor stopped at shutdown");
}

/// Panics in every `stopping` hook.
struct BadStop;

impl Worker for BadStop {
    type Msg = ();
    type Reply = ();

    async fn handle(&mut self, (): ()) {}

    async fn stopping(&mut self) {
        panic!("stopping panics on purpose");
    }
}

#[test]
fn panicking_stopping_does_not_restart_at_shutdown() {
    quiet_panics();
    with_watchdog(Duration::from_secs(20), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = Pool::builder(|_| BadStop)
                .size(4)
                .intensity(1_000_000, Duration::from_secs(1))
                .start()
                .unwrap();
            pool.call(()).await.unwrap();
            pool.shutdown().await;
            let stats = pool.stats().supervisor;
            assert_eq!(
                stats.restarts, 0,
                "a panicking stopping started a new incarnation"
            );
            assert!(stats.workers.iter().all(|w| !w.alive));

            // A hard stop (dropping the pool) with the same hook ends too.
            let pool = Pool::builder(|_| BadStop)
                .size(4)
                .intensity(1_000_000, Duration::from_secs(1))
                .start()
                .unwrap();
            let workers = pool.supervisor().children();
            pool.call(()).await.unwrap();
            drop(pool);
            for w in &workers {
                assert!(!w.is_alive());
            }
        });
    });
}

/// Counts the error events logged on the thread it is the default subscriber of.
struct ErrorCount(Arc<AtomicU64>);

impl tracing::Subscriber for ErrorCount {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The errors logged on this thread while `f` runs to the end on a current-thread runtime.
fn errors_logged(f: impl Future<Output = ()>) -> u64 {
    let errors = Arc::new(AtomicU64::new(0));
    let _logging = tracing::subscriber::set_default(ErrorCount(Arc::clone(&errors)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(within(f));
    drop(rt);
    errors.load(SeqCst)
}

/// A `stopping` hook that panics at shutdown is logged as an error, once for each worker; a
/// shutdown whose hooks return cleanly logs no error.
#[test]
fn a_panicking_stopping_hook_at_shutdown_is_logged_as_an_error() {
    quiet_panics();
    let bad = errors_logged(async {
        let pool = Pool::builder(|_| BadStop).size(2).start().unwrap();
        pool.call(()).await.unwrap();
        pool.shutdown().await;
    });
    assert_eq!(bad, 2, "one error for each panicking stopping hook");
    let clean = errors_logged(async {
        let pool = Pool::builder(|_| Strict).size(2).start().unwrap();
        assert_eq!(pool.call(1).await.unwrap(), 1);
        pool.shutdown().await;
    });
    assert_eq!(clean, 0, "a clean shutdown logs no error");
}

/// A log sink that panics at the first warning logged on its thread (and only then): a fault
/// outside the worker's code, in the middle of the slot's own work.
#[derive(Default)]
struct FailsAtFirstWarning(AtomicBool);

impl tracing::Subscriber for FailsAtFirstWarning {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN && !self.0.swap(true, SeqCst) {
            panic!("the log sink fails on purpose");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` to the end on a current-thread runtime whose log sink fails at the first warning.
fn with_failing_log_sink(f: impl Future<Output = ()>) {
    quiet_panics();
    let _logging = tracing::subscriber::set_default(FailsAtFirstWarning::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(within(f));
}

/// One worker whose call blocks and will panic when let go, and one call queued behind it.
async fn crash_with_one_queued() -> (
    Arc<Probe>,
    Supervisor<TestWorker>,
    croupier::WorkerRef<TestWorker>,
    tokio::task::JoinHandle<Result<Reply, CallError<Msg>>>,
    tokio::task::JoinHandle<Result<Reply, CallError<Msg>>>,
) {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory()).start().unwrap();
    let w = sup.children()[0].clone();
    let crashing = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::BlockThenPanic).await }
    });
    events
        .wait_for(Event::Entered(croupier::WorkerId::new(0, 0)))
        .await;
    let queued = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(1)).await }
    });
    until("the call queued", || w.load() == 2).await;
    (probe, sup, w, crashing, queued)
}

/// A panic in the slot's own work, outside the worker's code (here the log sink fails as the
/// slot restarts a crashed worker), ends the slot visibly: no handle reads alive with nobody
/// serving it, and the calls queued behind the crash come back `Dead`, message inside.
#[test]
fn a_panic_outside_the_workers_code_ends_the_slot_and_hands_its_queue_back() {
    with_failing_log_sink(async {
        let (probe, sup, w, crashing, queued) = crash_with_one_queued().await;

        probe.open(1);
        let r = crashing.await.unwrap();
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
        let r = queued.await.unwrap();
        assert!(matches!(r, Err(CallError::Dead(Msg::Work(1)))), "{r:?}");
        assert!(!w.is_alive());
        assert!(sup.children().is_empty(), "an ended slot has no live child");
        assert!(sup.stats().workers.iter().all(|w| !w.alive));
        assert!(probe.handled().is_empty());
        sup.shutdown().await;
    });
}

/// The same fault during a graceful shutdown: the slot stays shut, and what was queued comes
/// back `Shutdown`.
#[test]
fn a_panic_outside_the_workers_code_during_shutdown_hands_the_queue_back_as_shutdown() {
    with_failing_log_sink(async {
        let (probe, sup, _w, crashing, queued) = crash_with_one_queued().await;
        let shutdown = tokio::spawn({
            let sup = sup.clone();
            async move { sup.shutdown().await }
        });
        until("shutdown begun", || sup.is_stopped()).await;

        probe.open(1);
        shutdown.await.unwrap();
        let r = crashing.await.unwrap();
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
        let r = queued.await.unwrap();
        assert!(matches!(r, Err(CallError::Shutdown(Msg::Work(1)))), "{r:?}");
        assert!(sup.children().is_empty());
        assert!(probe.handled().is_empty());
    });
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_a_restart_backoff() {
    quiet_panics();
    let (probe, mut events) = Probe::new(1);
    let pool = Pool::builder(probe.factory())
        .size(1)
        .backoff(Backoff::fixed(Duration::from_secs(3600)))
        .start()
        .unwrap();
    let w = pool.supervisor().children()[0].clone();
    let crash = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::BlockThenPanic).await }
    });
    events.wait_for(Event::Entered(w.id())).await;
    // Queued behind the crash: the successor, an hour away, is to handle them.
    for n in 1..=3 {
        pool.send(Msg::Work(n)).unwrap();
    }
    probe.open(1);
    let r = within(crash).await.unwrap();
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");

    let began = Instant::now();
    within(pool.shutdown()).await;
    let waited = began.elapsed();
    assert!(
        waited < Duration::from_secs(60),
        "shutdown waited out the backoff: {waited:?}"
    );
    // The successor started at once and finished the queue before shutdown returned.
    assert_eq!(probe.handled(), vec![1, 2, 3]);
    assert_eq!(pool.stats().supervisor.dropped, 0);
}

/// Counts what it handles; panics on `None`. Every handler waits once, so that a hard stop
/// often finds workers in the middle of a message.
struct Counting(Arc<AtomicU64>);

impl Worker for Counting {
    type Msg = Option<u64>;
    type Reply = ();

    async fn handle(&mut self, msg: Option<u64>) {
        tokio::task::yield_now().await;
        assert!(msg.is_some(), "None kills the worker on purpose");
        self.0.fetch_add(1, SeqCst);
    }
}

/// Every `send` that returned `Ok` is handled, counted in `dropped`, or was the very message
/// whose handler crashed (a death) — whatever races between the sends and the slots
/// closing. Slots close in both ways: temporary workers that end for good at their first
/// crash, and a supervisor that gives up at the first crash (a hard stop) while the other
/// workers are in the middle of messages.
#[test]
fn no_send_is_lost_when_a_slot_closes() {
    quiet_panics();
    const ROUNDS: usize = 30;
    const SENDERS: usize = 2;
    const PER_SENDER: u64 = 400;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..ROUNDS {
        let (restart, intensity) = if round % 2 == 0 {
            (Restart::Temporary, 1_000)
        } else {
            (Restart::Transient, 0)
        };
        let handled = Arc::new(AtomicU64::new(0));
        let pool = {
            let _enter = rt.enter();
            let handled = Arc::clone(&handled);
            Pool::builder(move |_| Counting(Arc::clone(&handled)))
                .size(4)
                .restart(restart)
                .intensity(intensity, Duration::from_secs(3600))
                .start()
                .unwrap()
        };
        let accepted = Arc::new(AtomicU64::new(0));
        let go = Arc::new(AtomicBool::new(false));
        thread::scope(|s| {
            for sender in 0..SENDERS as u64 {
                let (pool, accepted, go) = (pool.clone(), &accepted, &go);
                s.spawn(move || {
                    while !go.load(SeqCst) {
                        std::hint::spin_loop();
                    }
                    for i in 0..PER_SENDER {
                        // A few crashes, spread over the run.
                        let msg = (i % 97 != 13 || sender != 0).then_some(i);
                        if pool.send(msg).is_ok() {
                            accepted.fetch_add(1, SeqCst);
                        }
                    }
                });
            }
            go.store(true, SeqCst);
        });
        rt.block_on(within(pool.shutdown()));
        let stats = pool.stats().supervisor;
        let accounted = handled.load(SeqCst) + stats.dropped + stats.deaths;
        assert_eq!(
            accounted,
            accepted.load(SeqCst),
            "round {round} ({restart:?}): {} handled + {} dropped + {} deaths",
            handled.load(SeqCst),
            stats.dropped,
            stats.deaths
        );
        assert!(stats.deaths > 0, "round {round}: no crash was staged");
    }
}

#[tokio::test]
async fn idle_wait_counts_queued_work_moving_to_a_successor() {
    quiet_panics();
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .start()
        .unwrap();
    // A balancer of the user's own over the supervisor, not attached: it learns of the
    // crash only when it looks.
    let balancer: Balancer<_> = Balancer::builder()
        .min_alive_ratio(0.1)
        .source(sup.clone())
        .build()
        .unwrap();
    let w0 = sup.children()[0].clone();
    let crash = tokio::spawn({
        let w0 = w0.clone();
        async move { w0.call(Msg::BlockThenPanic).await }
    });
    events.wait_for(Event::Entered(w0.id())).await;
    // Queued behind the crash; the first blocks the successor at the gate too.
    w0.send(Msg::Block(1)).unwrap();
    w0.send(Msg::Work(2)).unwrap();
    probe.open(1);
    let r = within(crash).await.unwrap();
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    assert!(!w0.is_alive());
    events
        .wait_for(Event::Entered(croupier::WorkerId::new(0, 1)))
        .await;
    // The balancer still holds the dead incarnation; its slot's queue now belongs to the
    // successor, and the maintenance must wait for it.
    assert_eq!(balancer.members()[0], w0);

    let drain = tokio::spawn({
        let balancer = balancer.clone();
        let probe = Arc::clone(&probe);
        async move {
            balancer
                .apply_within(Wait::idle(Duration::from_secs(20)), || async move {
                    probe.handled()
                })
                .await
        }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !drain.is_finished() && balancer.is_draining(),
        "maintenance started while the successor still had queued work"
    );
    probe.open(1);
    let handled_at_maintenance = within(drain).await.unwrap().unwrap();
    assert_eq!(handled_at_maintenance, vec![1, 2]);
    within(sup.shutdown()).await;
}
