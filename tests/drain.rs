//! `apply_within`: stop dealing, wait, run maintenance, resume — whatever happens.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::Duration,
};

use croupier::{
    Balancer, DrainError, Member, PickError, Policy, Pool, PoolBuilder, PoolCallError,
    PoolSendError, Wait, Worker,
};
use tokio::sync::{oneshot, Notify, Semaphore};

#[derive(Clone, Debug)]
struct Seat {
    id: usize,
    load: Arc<AtomicUsize>,
}

impl PartialEq for Seat {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Member for Seat {
    fn is_alive(&self) -> bool {
        true
    }
    fn load(&self) -> usize {
        self.load.load(SeqCst)
    }
}

fn seats(n: usize) -> Vec<Seat> {
    (0..n)
        .map(|id| Seat {
            id,
            load: Arc::default(),
        })
        .collect()
}

fn balancer(members: Vec<Seat>) -> Balancer<Seat> {
    Balancer::builder().source(members).build().unwrap()
}

#[tokio::test]
async fn pick_returns_draining_during_maintenance() {
    let b = balancer(seats(3));
    assert!(!b.is_draining());
    let seen = b
        .apply_within(Wait::none(), || async {
            (b.is_draining(), b.pick().map(|p| p.id).unwrap_err())
        })
        .await
        .unwrap();
    assert_eq!(seen, (true, PickError::Draining));
    assert!(!b.is_draining());
    assert!(b.pick().is_ok());
}

#[tokio::test(start_paused = true)]
async fn pick_wait_resumes_after_drain() {
    let b = balancer(seats(2));
    let (started_tx, started_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let drain = {
        let b = b.clone();
        tokio::spawn(async move {
            b.apply_within(Wait::none(), || async move {
                started_tx.send(()).unwrap();
                release_rx.await.unwrap();
            })
            .await
        })
    };
    started_rx.await.unwrap();

    // A short wait runs out while the drain goes on.
    assert_eq!(
        b.pick_wait(Duration::from_millis(10)).await.unwrap_err(),
        PickError::Draining
    );
    // A long one is woken by the drain's end.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.pick_wait(Duration::from_secs(3600)).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    release_tx.send(()).unwrap();
    drain.await.unwrap().unwrap();
    let picked = waiter.await.unwrap().unwrap();
    assert!(picked.id < 2);
}

/// Each message holds its worker until the gate lets it through.
struct Gated(Arc<Semaphore>);

impl Worker for Gated {
    type Msg = ();
    type Reply = ();
    async fn handle(&mut self, (): ()) {
        self.0.acquire().await.unwrap().forget();
    }
}

#[tokio::test(start_paused = true)]
async fn idle_waits_for_queued_work() {
    let gate = Arc::new(Semaphore::new(0));
    let pool = {
        let gate = Arc::clone(&gate);
        Pool::builder(move |_| Gated(Arc::clone(&gate)))
            .size(2)
            .start()
            .unwrap()
    };
    for _ in 0..6 {
        pool.send(()).unwrap();
    }
    let ran = Arc::new(AtomicBool::new(false));
    let drain = {
        let pool = pool.clone();
        let ran = Arc::clone(&ran);
        tokio::spawn(async move {
            pool.apply_within(Wait::idle(Duration::from_secs(60)), || async {
                ran.store(true, SeqCst);
                pool.stats()
                    .supervisor
                    .workers
                    .iter()
                    .map(|w| w.load)
                    .sum::<usize>()
            })
            .await
        })
    };
    // Five seconds of (paused) time pass: the queued work is still held at the gate.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!ran.load(SeqCst));
    assert!(pool.balancer().is_draining());

    gate.add_permits(6);
    let load_during_maintenance = drain.await.unwrap().unwrap();
    assert_eq!(load_during_maintenance, 0);
    assert!(ran.load(SeqCst));
    assert!(!pool.balancer().is_draining());
}

#[tokio::test]
async fn each_is_awaited_for_every_member() {
    let b = balancer(seats(5));
    let visited = Arc::new(Mutex::new(Vec::new()));
    let wait = {
        let visited = Arc::clone(&visited);
        Wait::each(move |s: Seat| {
            let visited = Arc::clone(&visited);
            async move {
                tokio::task::yield_now().await;
                visited.lock().unwrap().push(s.id);
            }
        })
    };
    let seen_by_maintenance = b
        .apply_within(wait, || async { visited.lock().unwrap().len() })
        .await
        .unwrap();
    assert_eq!(seen_by_maintenance, 5);
    let mut ids = visited.lock().unwrap().clone();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn timeout_skips_maintenance_and_resumes() {
    let members = seats(3);
    members[1].load.store(4, SeqCst);
    let b = balancer(members);
    let ran = AtomicBool::new(false);

    let idle = b
        .apply_within(Wait::idle(Duration::from_secs(1)), || async {
            ran.store(true, SeqCst)
        })
        .await;
    assert_eq!(idle, Err(DrainError::Timeout { pending: 1 }));

    let each = b
        .apply_within(
            Wait::each(|s: Seat| async move {
                if s.id != 0 {
                    std::future::pending::<()>().await;
                }
            })
            .timeout(Duration::from_secs(1)),
            || async { ran.store(true, SeqCst) },
        )
        .await;
    assert_eq!(each, Err(DrainError::Timeout { pending: 2 }));

    assert!(
        !ran.load(SeqCst),
        "maintenance must not run after a timeout"
    );
    assert!(!b.is_draining());
    assert!(b.pick().is_ok());
}

#[tokio::test]
async fn panic_in_maintenance_resumes() {
    let b = balancer(seats(2));
    let result: Result<(), _> = b
        .apply_within(Wait::none(), || async { panic!("maintenance failed") })
        .await;
    assert_eq!(result, Err(DrainError::Panicked));
    assert!(!b.is_draining());
    assert!(b.pick().is_ok());

    // A panic in the wait function: maintenance is not run, dealing resumes.
    let ran = AtomicBool::new(false);
    let result = b
        .apply_within(
            Wait::each(|s: Seat| async move { assert_ne!(s.id, 1, "member 1 is broken") }),
            || async { ran.store(true, SeqCst) },
        )
        .await;
    assert_eq!(result, Err(DrainError::Panicked));
    assert!(!ran.load(SeqCst));
    assert!(b.pick().is_ok());
}

#[tokio::test(start_paused = true)]
async fn dropped_apply_within_resumes() {
    let b = balancer(seats(2));
    let entered = Notify::new();
    {
        let drain = b.apply_within(Wait::none(), || async {
            entered.notify_one();
            std::future::pending::<()>().await
        });
        tokio::pin!(drain);
        tokio::select! {
            _ = &mut drain => unreachable!("maintenance never ends"),
            () = entered.notified() => {}
        }
        // Maintenance is running: nothing is dealt.
        assert!(b.is_draining());
        assert_eq!(b.pick().unwrap_err(), PickError::Draining);
        // The future is dropped here, half-way through maintenance.
    }
    assert!(!b.is_draining());
    assert!(b.pick().is_ok());
    // And the next drain is not blocked by the abandoned one.
    assert_eq!(b.apply_within(Wait::none(), || async { 1 }).await, Ok(1));
}

#[tokio::test(start_paused = true)]
async fn concurrent_apply_within_serialises() {
    let b = balancer(seats(2));
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (b, active, most) = (b.clone(), Arc::clone(&active), Arc::clone(&most));
            tokio::spawn(async move {
                b.apply_within(Wait::duration(Duration::from_millis(5)), || async {
                    let now = active.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    active.fetch_sub(1, SeqCst);
                })
                .await
            })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert_eq!(most.load(SeqCst), 1, "two maintenances overlapped");
    assert!(!b.is_draining());
}

#[tokio::test]
async fn nested_apply_within_errors() {
    let b = balancer(seats(2));
    let inner = b
        .apply_within(Wait::none(), || async {
            b.apply_within(Wait::none(), || async {}).await
        })
        .await
        .unwrap();
    assert_eq!(inner, Err(DrainError::Nested));
    assert!(!b.is_draining());
    assert!(b.pick().is_ok());
}

#[test]
fn blocking_form_runs_without_a_runtime() {
    let b = balancer(seats(2));
    let inside = b
        .apply_within_blocking(Wait::duration(Duration::from_millis(1)), || {
            b.pick().map(|p| p.id).unwrap_err()
        })
        .unwrap();
    assert_eq!(inside, PickError::Draining);
    assert!(b.pick().is_ok());
}

#[tokio::test]
async fn blocking_form_refuses_inside_a_runtime() {
    let b = balancer(seats(1));
    assert_eq!(
        b.apply_within_blocking(Wait::none(), || ()),
        Err(DrainError::InRuntime)
    );
    assert!(!b.is_draining());
}

#[tokio::test]
async fn pool_refuses_with_draining_during_maintenance() {
    struct Echo;
    impl Worker for Echo {
        type Msg = u8;
        type Reply = u8;
        async fn handle(&mut self, n: u8) -> u8 {
            n
        }
    }
    let pool = Pool::builder(|_| Echo).size(2).start().unwrap();
    let (called, sent) = pool
        .apply_within(Wait::none(), || async {
            (pool.call(7).await.unwrap_err(), pool.send(9).unwrap_err())
        })
        .await
        .unwrap();
    assert!(matches!(called, PoolCallError::Draining(7)), "{called:?}");
    assert!(matches!(sent, PoolSendError::Draining(9)), "{sent:?}");
    assert_eq!(pool.call(8).await.unwrap(), 8);
    pool.shutdown().await;
}

/// `Wait::idle` looks at the current snapshot each time, so a member that a refresh adds
/// during the wait is waited for too.
#[tokio::test(start_paused = true)]
async fn idle_wait_sees_members_added_by_a_refresh() {
    let first = seats(2);
    let current = Arc::new(Mutex::new(first.clone()));
    let b = {
        let current = Arc::clone(&current);
        Balancer::builder()
            .source(move || current.lock().unwrap().clone())
            .build()
            .unwrap()
    };
    // A busy newcomer, not yet in the balancer.
    let newcomer = Seat {
        id: 9,
        load: Arc::new(AtomicUsize::new(1)),
    };
    first[0].load.store(1, SeqCst);
    let ran = Arc::new(AtomicBool::new(false));
    let drain = tokio::spawn({
        let (b, ran, newcomer) = (b.clone(), Arc::clone(&ran), newcomer.clone());
        async move {
            b.apply_within(Wait::idle(Duration::from_secs(60)), || async move {
                // Maintenance starts only once the newcomer is idle too.
                assert_eq!(
                    newcomer.load.load(SeqCst),
                    0,
                    "ran while the newcomer was busy"
                );
                ran.store(true, SeqCst);
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(b.is_draining() && !ran.load(SeqCst));
    // The refresh lands during the wait, then the first member finishes.
    current.lock().unwrap().push(newcomer.clone());
    b.refresh();
    first[0].load.store(0, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !ran.load(SeqCst),
        "maintenance did not wait for the member the refresh added"
    );
    newcomer.load.store(0, SeqCst);
    drain.await.unwrap().unwrap();
    assert!(ran.load(SeqCst));
}

/// Dropping `apply_within` while it is still waiting (before maintenance) lowers the drain
/// flag and wakes every `pick_wait`er at once, long before their own deadline.
#[tokio::test(start_paused = true)]
async fn dropping_apply_within_while_waiting_resumes_and_wakes() {
    let b = balancer(seats(2));
    let maintained = Arc::new(AtomicBool::new(false));
    let drain = tokio::spawn({
        let (b, maintained) = (b.clone(), Arc::clone(&maintained));
        async move {
            b.apply_within(Wait::duration(Duration::from_secs(3600)), || async move {
                maintained.store(true, SeqCst);
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(b.is_draining());
    let began = tokio::time::Instant::now();
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.pick_wait(Duration::from_secs(600)).await.map(|s| s.id) }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "pick_wait returned during the drain");

    drain.abort();
    assert!(drain.await.unwrap_err().is_cancelled());
    assert!(
        !b.is_draining(),
        "dropping the drain in its wait resumed dealing"
    );
    let picked = waiter.await.unwrap();
    assert!(picked.is_ok(), "{picked:?}");
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "the waiter was not woken: it waited {:?}",
        began.elapsed()
    );
    assert!(
        !maintained.load(SeqCst),
        "maintenance ran though the drain was dropped"
    );
    assert!(b.pick().is_ok());
}

#[test]
fn drain_errors_say_what_happened() {
    let cases = [
        (DrainError::Timeout { pending: 3 }, "3 member(s) still busy"),
        (DrainError::Panicked, "panicked"),
        (DrainError::Nested, "inside its own"),
        (DrainError::InRuntime, "await apply_within instead"),
    ];
    for (e, says) in cases {
        let text = e.to_string();
        assert!(text.contains(says), "{e:?} displays {text:?}");
    }
}

/// What the chaos test's workers panic with.
const PLANNED_CRASH: &str = "one of the 1 % of calls that crash their worker";

/// A worker that records whether a drain's maintenance was running when it handled a
/// message; 1 % of its calls panic (it restarts).
struct Watchful {
    maintaining: Arc<AtomicBool>,
    handled_inside: Arc<AtomicUsize>,
    handled: Arc<AtomicUsize>,
}

impl Worker for Watchful {
    type Msg = u64;
    type Reply = u64;
    async fn handle(&mut self, n: u64) -> u64 {
        if self.maintaining.load(SeqCst) {
            self.handled_inside.fetch_add(1, SeqCst);
        }
        self.handled.fetch_add(1, SeqCst);
        tokio::task::yield_now().await;
        assert!(n % 100 != 99, "{PLANNED_CRASH}");
        n
    }
}

/// What the `Watchful` workers of a pool share with the test.
#[derive(Clone, Default)]
struct Watch {
    maintaining: Arc<AtomicBool>,
    handled_inside: Arc<AtomicUsize>,
    handled: Arc<AtomicUsize>,
}

impl Watch {
    /// A pool builder whose workers are `Watchful`, and what they share.
    fn pool() -> (Self, PoolBuilder<Watchful>) {
        let watch = Self::default();
        let shared = watch.clone();
        let builder = Pool::builder(move |_| Watchful {
            maintaining: Arc::clone(&shared.maintaining),
            handled_inside: Arc::clone(&shared.handled_inside),
            handled: Arc::clone(&shared.handled),
        });
        (watch, builder)
    }
}

/// Users calling and sending in loops, workers crashing and restarting, and maintenance
/// windows after `Wait::idle`: no message is handled while maintenance runs, every call
/// returns, and every accepted send is handled. Twenty runs a policy, on two threads.
#[test]
fn no_message_is_handled_during_maintenance_under_chaos() {
    // The planned crashes are many: keep their reports (and backtraces) out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains(PLANNED_CRASH) {
            report(info);
        }
    }));
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo] {
        for run in 0..20 {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (inside, sent, handled_sends) = rt.block_on(chaos(policy, run));
            assert_eq!(
                inside, 0,
                "{policy:?}, run {run}: handled during maintenance"
            );
            assert_eq!(sent, handled_sends, "{policy:?}, run {run}: sends lost");
        }
    }
}

/// One run of the chaos: returns the messages handled during maintenance, the sends
/// accepted, and the sends handled.
async fn chaos(policy: Policy, run: u64) -> (usize, usize, usize) {
    let (watch, builder) = Watch::pool();
    let Watch {
        maintaining,
        handled_inside,
        handled,
    } = watch;
    let pool = builder
        .size(6)
        .policy(policy)
        .seed(run)
        .intensity(1_000_000, Duration::from_secs(1))
        .start()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let calls_answered = Arc::new(AtomicUsize::new(0));
    let sends_accepted = Arc::new(AtomicUsize::new(0));
    let mut users = Vec::new();
    for u in 0..6_u64 {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        let (answered, accepted) = (Arc::clone(&calls_answered), Arc::clone(&sends_accepted));
        users.push(tokio::spawn(async move {
            let mut n = u * 1_000_000;
            while !stop.load(SeqCst) {
                n += 1;
                if u < 4 {
                    // Every call returns: a reply, a crash, or a refusal with the message.
                    let _ = pool.call(n).await;
                    answered.fetch_add(1, SeqCst);
                    // A refused call returns without yielding: let the others run.
                    tokio::task::yield_now().await;
                } else {
                    // A send accepted is handled (numbers ending in 0: no crash on a send).
                    if pool.send(n * 10).is_ok() {
                        accepted.fetch_add(1, SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for _ in 0..25 {
        // Let the users get some work in between windows.
        let (calls, sends) = (calls_answered.load(SeqCst), sends_accepted.load(SeqCst));
        tokio::time::timeout(Duration::from_secs(10), async {
            while calls_answered.load(SeqCst) < calls + 5 || sends_accepted.load(SeqCst) < sends + 5
            {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the users make progress between windows");
        let m = Arc::clone(&maintaining);
        pool.apply_within(Wait::idle(Duration::from_secs(5)), || async move {
            m.store(true, SeqCst);
            tokio::task::yield_now().await;
            // Maintenance that takes a while (its work, not a wait for anything).
            tokio::time::sleep(Duration::from_millis(1)).await;
            m.store(false, SeqCst);
        })
        .await
        .expect("the pool falls idle well within 5 s");
        tokio::task::yield_now().await;
    }
    stop.store(true, SeqCst);
    for user in users {
        tokio::time::timeout(Duration::from_secs(10), user)
            .await
            .expect("every user's call returns")
            .unwrap();
    }
    // Everything accepted is handled by the time the pool has shut down.
    pool.shutdown().await;
    let sends = sends_accepted.load(SeqCst);
    let handled = handled.load(SeqCst);
    let calls = calls_answered.load(SeqCst);
    assert!(handled >= sends, "handled {handled} < sends {sends}");
    // Each call was handled at most once; the sends handled are the rest.
    let handled_sends = sends.min(handled);
    assert!(calls >= 125 && sends >= 125);
    (handled_inside.load(SeqCst), sends, handled_sends)
}

/// A key whose hash parks the thread that computes it, once, until released: it stops a
/// `call_for` after its pick has passed the drain flag and before it queues.
struct ParkingKey {
    parked: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl std::hash::Hash for ParkingKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let parked = self.parked.lock().unwrap().take();
        if let Some(parked) = parked {
            parked.send(()).unwrap();
            // Bounded: a test that is wrong fails instead of hanging.
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        }
        17_u64.hash(state);
    }
}

/// The race behind the chaos test, staged: a call picks its worker, a drain begins and
/// finds every worker idle, maintenance starts, and only then does the call go on to queue
/// its message. It must come back `Draining` with the message, not be handled during the
/// maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pick_taken_before_the_drain_is_not_handled_during_maintenance() {
    let (watch, builder) = Watch::pool();
    let Watch {
        maintaining,
        handled_inside,
        handled,
    } = watch;
    let pool = builder.size(2).start().unwrap();
    let (parked_tx, parked) = oneshot::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let key = ParkingKey {
        parked: Mutex::new(Some(parked_tx)),
        release: Mutex::new(release_rx),
    };
    // The caller runs on a thread of its own, so that parking it stalls nothing else.
    let (done_tx, done) = oneshot::channel();
    let caller = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let answer = rt.block_on(pool.call_for(&key, 7));
            let _ = done_tx.send(answer);
        })
    };
    parked.await.unwrap();
    let m = Arc::clone(&maintaining);
    let answer = pool
        .apply_within(Wait::idle(Duration::from_secs(5)), || async move {
            m.store(true, SeqCst);
            release.send(()).unwrap();
            // Whatever the call does now, it does during the maintenance.
            let answer = tokio::time::timeout(Duration::from_secs(10), done)
                .await
                .expect("the call returns")
                .unwrap();
            m.store(false, SeqCst);
            answer
        })
        .await
        .unwrap();
    caller.join().unwrap();
    assert_eq!(handled_inside.load(SeqCst), 0, "handled during maintenance");
    assert!(
        matches!(answer, Err(PoolCallError::Draining(7))),
        "{answer:?}"
    );
    // Dealing resumed: the same call goes through now.
    assert_eq!(pool.call(8).await.unwrap(), 8);
    assert_eq!(handled.load(SeqCst), 1);
}
