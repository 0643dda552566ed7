//! `apply_within`: stop dealing, wait, run maintenance, resume — whatever happens.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::Duration,
};

use croupier::{
    Balancer, DrainError, Member, PickError, Pool, PoolCallError, PoolSendError, Wait, Worker,
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
