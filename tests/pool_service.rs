//! A `Pool` as a tower `Service`: readiness is backpressure, woken by the pool itself.
#![cfg(feature = "tower")]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use croupier::{Member, Pool, PoolCallError, Wait, Worker};
use futures_util::task::{waker, ArcWake};
use tokio::sync::{Notify, Semaphore};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Doubles; waits at its gate first when asked to (an odd number).
struct Gated(Arc<Semaphore>);

impl Worker for Gated {
    type Msg = u64;
    type Reply = u64;
    async fn handle(&mut self, n: u64) -> u64 {
        if n % 2 == 1 {
            self.0.acquire().await.unwrap().forget();
        }
        n * 2
    }
}

fn pool(size: usize, max_load: Option<usize>) -> (Pool<Gated>, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let mut b = Pool::builder(move |_| Gated(Arc::clone(&g))).size(size);
    if let Some(n) = max_load {
        b = b.max_load(n);
    }
    (b.start().unwrap(), gate)
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Counting(AtomicUsize);

impl ArcWake for Counting {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, SeqCst);
    }
}

fn poll_ready(
    svc: &mut Pool<Gated>,
    wakes: &Arc<Counting>,
) -> Poll<Result<(), PoolCallError<u64>>> {
    let w = waker(Arc::clone(wakes));
    Service::<u64>::poll_ready(svc, &mut Context::from_waker(&w))
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("hung")
}

#[tokio::test]
async fn pool_is_a_tower_service() {
    let (pool, _gate) = pool(2, None);
    let mut svc = pool.clone();
    assert_eq!(
        within(svc.ready().await.unwrap().call(20)).await.unwrap(),
        40
    );
    assert_eq!(within(pool.clone().oneshot(4)).await.unwrap(), 8);
    // A call without poll_ready works as Pool::call does.
    assert_eq!(
        within(Service::call(&mut pool.clone(), 5 - 1))
            .await
            .unwrap(),
        8
    );
    // One pick per request: poll_ready reserves the worker the call then uses.
    let picks = pool.stats().balancer.picks;
    let mut svc = pool.clone();
    for n in [2, 4, 6] {
        assert_eq!(
            within(svc.ready().await.unwrap().call(n)).await.unwrap(),
            n * 2
        );
    }
    assert_eq!(pool.stats().balancer.picks - picks, 3);
    // After shutdown the call hands the message back.
    within(pool.shutdown()).await;
    let mut svc = pool.clone();
    let err = within(within(svc.ready()).await.unwrap().call(10))
        .await
        .unwrap_err();
    assert!(matches!(err, PoolCallError::Shutdown(10)), "{err}");
}

#[tokio::test]
async fn poll_ready_pends_while_overloaded_and_wakes() {
    let (pool, gate) = pool(1, Some(1));
    // The only worker takes a job that waits at the gate: its load is 1, the limit.
    let mut first = pool.clone();
    let busy = tokio::spawn(async move { first.ready().await.unwrap().call(1).await });
    let load_of = |p: &Pool<Gated>| p.balancer().members()[0].load();
    within(async {
        while load_of(&pool) < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let wakes = Arc::new(Counting::default());
    let mut svc = pool.clone();
    assert!(poll_ready(&mut svc, &wakes).is_pending());
    assert!(poll_ready(&mut svc, &wakes).is_pending(), "still full");
    assert_eq!(wakes.0.load(SeqCst), 0);
    // The job finishes: the worker's load falls, which wakes the waiter.
    gate.add_permits(1);
    assert_eq!(within(busy).await.unwrap().unwrap(), 2);
    assert!(
        wakes.0.load(SeqCst) >= 1,
        "not woken when capacity returned"
    );
    assert!(poll_ready(&mut svc, &wakes).is_ready());
    assert_eq!(svc.call(3 - 1).await.unwrap(), 4);
}

/// Growing the pool is room too: a `poll_ready` pending on every worker at `max_load` is
/// woken by a resize that adds workers, and reserves a new one.
#[tokio::test]
async fn poll_ready_pending_while_overloaded_wakes_when_the_pool_grows() {
    let (pool, gate) = pool(1, Some(1));
    let mut first = pool.clone();
    let busy = tokio::spawn(async move { first.ready().await.unwrap().call(1).await });
    let load_of = |p: &Pool<Gated>| p.balancer().members()[0].load();
    within(async {
        while load_of(&pool) < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let wakes = Arc::new(Counting::default());
    let mut svc = pool.clone();
    assert!(poll_ready(&mut svc, &wakes).is_pending());
    assert_eq!(wakes.0.load(SeqCst), 0);
    within(pool.resize(2)).await.unwrap();
    assert!(wakes.0.load(SeqCst) >= 1, "not woken when the pool grew");
    assert!(poll_ready(&mut svc, &wakes).is_ready());
    assert_eq!(within(svc.call(3 - 1)).await.unwrap(), 4);
    assert!(
        !busy.is_finished(),
        "served by the new worker, not the busy one"
    );
    gate.add_permits(1);
    assert_eq!(within(busy).await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn poll_ready_pends_while_draining_and_wakes() {
    let (pool, _gate) = pool(2, None);
    let (inside, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let drain = {
        let (pool, inside, release) = (pool.clone(), Arc::clone(&inside), Arc::clone(&release));
        tokio::spawn(async move {
            pool.apply_within(Wait::none(), || async move {
                inside.notify_one();
                release.notified().await;
            })
            .await
        })
    };
    within(inside.notified()).await;
    let wakes = Arc::new(Counting::default());
    let mut svc = pool.clone();
    assert!(poll_ready(&mut svc, &wakes).is_pending());
    assert_eq!(wakes.0.load(SeqCst), 0);
    release.notify_one();
    within(drain).await.unwrap().unwrap();
    assert!(wakes.0.load(SeqCst) >= 1, "not woken when the drain ended");
    assert!(poll_ready(&mut svc, &wakes).is_ready());
    assert_eq!(svc.call(8).await.unwrap(), 16);
}

#[tokio::test]
async fn pool_behind_timeout_and_concurrency_limit_layers() {
    let (pool, gate) = pool(2, None);
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .concurrency_limit(2)
        .service(pool.clone());
    assert_eq!(svc.clone().oneshot(10).await.unwrap(), 20);
    // A job that outlasts the timeout: the layer's error, the pool's worker still fine.
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    gate.add_permits(1);
    assert_eq!(svc.clone().oneshot(6).await.unwrap(), 12);
    // The pool's own errors come through as themselves.
    pool.shutdown().await;
    let err = svc.oneshot(4).await.unwrap_err();
    assert!(err.is::<PoolCallError<u64>>(), "{err}");
}

/// A second `poll_ready` before the call keeps the worker the first one reserved: one pick.
#[tokio::test]
async fn poll_ready_twice_keeps_its_reservation() {
    let (pool, _gate) = pool(2, None);
    let mut svc = pool.clone();
    let wakes = Arc::new(Counting::default());
    let picks = pool.stats().balancer.picks;
    assert!(matches!(poll_ready(&mut svc, &wakes), Poll::Ready(Ok(()))));
    assert!(matches!(poll_ready(&mut svc, &wakes), Poll::Ready(Ok(()))));
    assert_eq!(pool.stats().balancer.picks - picks, 1);
    assert_eq!(within(Service::call(&mut svc, 3 - 1)).await.unwrap(), 4);
    assert_eq!(
        pool.stats().balancer.picks - picks,
        1,
        "the call used the reservation"
    );
}

/// A worker that panics on 0 and otherwise echoes.
struct Fragile;

impl Worker for Fragile {
    type Msg = u64;
    type Reply = u64;
    async fn handle(&mut self, n: u64) -> u64 {
        assert_ne!(n, 0, "asked to crash");
        n
    }
}

/// With no live worker left (and none to come), `poll_ready` is ready at once, so that the
/// call can say why: it never loops or pends on a refusal nothing will lift.
#[tokio::test]
async fn poll_ready_is_ready_when_no_worker_is_left() {
    let pool = Pool::builder(|_| Fragile)
        .size(1)
        .restart(croupier::Restart::Temporary)
        .start()
        .unwrap();
    assert!(matches!(
        within(pool.call(0)).await,
        Err(PoolCallError::WorkerDied)
    ));
    let mut svc = pool.clone();
    // On a thread of its own, so that a poll_ready that loops fails the test, not hangs it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let wakes = Arc::new(Counting::default());
        let w = waker(Arc::clone(&wakes));
        let ready = Service::<u64>::poll_ready(&mut svc, &mut Context::from_waker(&w));
        let _ = tx.send((ready.is_ready(), svc));
    });
    let (ready, mut svc) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("poll_ready looped");
    assert!(ready);
    let err = within(Service::call(&mut svc, 7)).await.unwrap_err();
    assert!(matches!(err, PoolCallError::NoMembers(7)), "{err}");
}

/// A call reserved by `poll_ready` before a drain began is not handled during the drain's
/// maintenance: it comes back `Draining` with its message. And the unused reservation does
/// not hold the drain's idle wait up.
#[tokio::test]
async fn a_reserved_call_is_not_handled_during_a_drain() {
    let (pool, _gate) = pool(2, None);
    let mut ready = pool.clone();
    let wakes = Arc::new(Counting::default());
    assert!(poll_ready(&mut ready, &wakes).is_ready());
    // A second handle, ready and never used: the drain must not wait for it.
    let mut idle_reservation = pool.clone();
    assert!(poll_ready(&mut idle_reservation, &wakes).is_ready());
    let answer = within(
        pool.apply_within(Wait::idle(Duration::from_secs(5)), || async {
            // Handled now, this call would be handled during the maintenance.
            within(Service::call(&mut ready, 10)).await
        }),
    )
    .await
    .expect("the drain does not time out on an unused reservation");
    assert!(
        matches!(answer, Err(PoolCallError::Draining(10))),
        "{answer:?}"
    );
    // After the drain, the other reservation serves as usual.
    assert_eq!(
        within(Service::call(&mut idle_reservation, 4))
            .await
            .unwrap(),
        8
    );
}

/// A reservation counts toward `max_load` until it is used or dropped: four ready clones
/// cannot together put four calls on a `max_load(1)` worker.
#[tokio::test]
async fn ready_clones_respect_max_load() {
    let (pool, gate) = pool(1, Some(1));
    let wakes = Arc::new(Counting::default());
    let mut clones: Vec<_> = (0..4).map(|_| pool.clone()).collect();
    let ready: Vec<bool> = clones
        .iter_mut()
        .map(|c| poll_ready(c, &wakes).is_ready())
        .collect();
    assert_eq!(ready, [true, false, false, false], "one reservation fits");
    assert_eq!(
        pool.stats().supervisor.workers[0].load,
        1,
        "the reservation counts"
    );
    // The first uses its reservation on a call that waits at the gate: still a load of 1.
    let first = tokio::spawn(Service::call(&mut clones[0], 1));
    assert!(poll_ready(&mut clones[1], &wakes).is_pending());
    // It finishes: the load falls, a waiter is woken and gets the worker.
    gate.add_permits(1);
    assert_eq!(within(first).await.unwrap().unwrap(), 2);
    within(async {
        while wakes.0.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let ready: Vec<bool> = clones[1..]
        .iter_mut()
        .map(|c| poll_ready(c, &wakes).is_ready())
        .collect();
    assert_eq!(ready.iter().filter(|&&r| r).count(), 1, "{ready:?}");
    // Dropping the ready clone gives its reservation back.
    let at = ready.iter().position(|&r| r).unwrap() + 1;
    clones.remove(at);
    assert_eq!(pool.stats().supervisor.workers[0].load, 0);
    assert!(clones[1..]
        .iter_mut()
        .any(|c| poll_ready(c, &wakes).is_ready()));
}
