//! `croupier::balance::Balance`: croupier's balancer in front of tower services.
#![cfg(feature = "tower")]

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use croupier::{
    balance::{Balance, Load},
    Policy,
};
use tokio::sync::Semaphore;
use tower::{discover::Change, BoxError, Service, ServiceExt};

/// A member service: answers its own id once the gate lets it, counting its calls.
#[derive(Clone)]
struct Backend {
    id: usize,
    gate: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
}

impl Backend {
    fn new(id: usize, gate: &Arc<Semaphore>) -> Self {
        Self {
            id,
            gate: Arc::clone(gate),
            calls: Arc::default(),
        }
    }
}

impl Service<()> for Backend {
    type Response = usize;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.calls.fetch_add(1, SeqCst);
        let (id, gate) = (self.id, Arc::clone(&self.gate));
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            Ok(id)
        })
    }
}

/// Lets the tasks of a current-thread runtime run until `cond` holds (at most 10 000 turns).
async fn settle(mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("did not settle");
}

#[tokio::test]
async fn balance_spreads_by_in_flight() {
    let gates: Vec<_> = (0..3).map(|_| Arc::new(Semaphore::new(0))).collect();
    let backends: Vec<_> = (0..3).map(|i| Backend::new(i, &gates[i])).collect();
    let balance = Balance::builder()
        .policy(Policy::LeastLoaded)
        .build(backends.clone())
        .unwrap();
    let total = |b: &Balance<Backend>| b.in_flight().iter().map(|(_, n)| n).sum::<usize>();
    let calls: Vec<_> = (0..6)
        .map(|_| tokio::spawn(balance.clone().oneshot(())))
        .collect();
    settle(|| total(&balance) == 6).await;
    assert_eq!(balance.in_flight(), [(0, 2), (1, 2), (2, 2)]);
    // Member 1 answers its two; the next request goes to it, the least loaded now.
    gates[1].add_permits(2);
    settle(|| balance.in_flight()[1].1 == 0).await;
    let next = tokio::spawn(balance.clone().oneshot(()));
    settle(|| total(&balance) == 5).await;
    assert_eq!(balance.in_flight(), [(0, 2), (1, 1), (2, 2)]);
    for g in &gates {
        g.add_permits(3);
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(next.await.unwrap().unwrap(), 1);
    // A request counts from the pick to its answer: all answered, nothing counted.
    assert_eq!(total(&balance), 0);
    // A dropped request stops counting too.
    let gate = Arc::new(Semaphore::new(0));
    let held = Balance::new(vec![Backend::new(0, &gate)]).unwrap();
    let mut dropped = Box::pin(held.clone().oneshot(()));
    let waker = futures_util::task::noop_waker();
    assert!(dropped
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    assert_eq!(held.in_flight(), [(0, 1)]);
    drop(dropped);
    assert_eq!(held.in_flight(), [(0, 0)]);
}

/// A member whose readiness fails.
#[derive(Clone)]
struct Broken(Arc<AtomicUsize>);

impl Service<()> for Broken {
    type Response = usize;
    type Error = BoxError;
    type Future = std::future::Ready<Result<usize, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.fetch_add(1, SeqCst);
        Poll::Ready(Err("connection refused".into()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        panic!("called without being ready")
    }
}

#[tokio::test(start_paused = true)]
async fn balance_routes_around_a_failing_member() {
    type Either =
        tower::util::Either<Broken, tower::util::BoxCloneSyncService<(), usize, BoxError>>;
    let probes = Arc::new(AtomicUsize::new(0));
    let ok = |id: usize| {
        tower::util::BoxCloneSyncService::new(tower::service_fn(move |()| async move {
            Ok::<_, BoxError>(id)
        }))
    };
    let members: Vec<Either> = vec![
        Either::Left(Broken(Arc::clone(&probes))),
        Either::Right(ok(1)),
        Either::Right(ok(2)),
    ];
    let balance = Balance::builder()
        .policy(Policy::RoundRobin)
        .cooldown(Duration::from_secs(5))
        .build(members)
        .unwrap();
    // Every request is answered, by a good member, though round robin lands on the broken
    // one first.
    for _ in 0..30 {
        let who = balance.clone().oneshot(()).await.unwrap();
        assert!(who == 1 || who == 2);
    }
    // Out of rotation after its first failure: probed once in the cooldown.
    assert_eq!(probes.load(SeqCst), 1);
    // After the cooldown it is tried again, fails again, and the request still succeeds.
    tokio::time::advance(Duration::from_secs(6)).await;
    for _ in 0..3 {
        assert!(balance.clone().oneshot(()).await.is_ok());
    }
    assert_eq!(probes.load(SeqCst), 2);

    // Only broken members: the request fails, unsent, after the bounded tries.
    let all_broken = Balance::builder()
        .tries(2)
        .build(vec![Broken(Arc::default()), Broken(Arc::default())])
        .unwrap();
    let err = all_broken.oneshot(()).await.unwrap_err();
    assert!(err.to_string().contains("not sent"), "{err}");
}

#[tokio::test]
async fn discover_insert_and_remove_keep_load_state() {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, rx) =
        tokio::sync::mpsc::unbounded_channel::<Result<Change<&str, Backend>, Infallible>>();
    let changes =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let balance = Balance::builder()
        .policy(Policy::LeastLoaded)
        .discover(Box::pin(changes))
        .unwrap();
    tx.send(Ok(Change::Insert("a", Backend::new(0, &gate))))
        .unwrap();
    tx.send(Ok(Change::Insert("b", Backend::new(1, &gate))))
        .unwrap();
    settle(|| balance.in_flight().len() == 2).await;

    // Two requests on each.
    let held: Vec<_> = (0..4)
        .map(|_| tokio::spawn(balance.clone().oneshot(())))
        .collect();
    settle(|| balance.in_flight() == [("a", 2), ("b", 2)]).await;

    // c joins, b leaves: a keeps its two in flight, so the next request goes to c.
    let c = Backend::new(2, &gate);
    tx.send(Ok(Change::Insert("c", c.clone()))).unwrap();
    tx.send(Ok(Change::Remove("b"))).unwrap();
    settle(|| balance.in_flight() == [("a", 2), ("c", 0)]).await;
    let to_c = tokio::spawn(balance.clone().oneshot(()));
    settle(|| balance.in_flight() == [("a", 2), ("c", 1)]).await;

    // a's service is replaced under the same key: its load state stays.
    tx.send(Ok(Change::Insert("a", Backend::new(3, &gate))))
        .unwrap();
    settle(|| balance.in_flight() == [("a", 2), ("c", 1)]).await;
    // b comes back while its two requests are still in flight: they still count.
    tx.send(Ok(Change::Insert("b", Backend::new(1, &gate))))
        .unwrap();
    settle(|| balance.in_flight().len() == 3).await;
    assert_eq!(balance.in_flight(), [("a", 2), ("c", 1), ("b", 2)]);

    gate.add_permits(5);
    for h in held {
        h.await.unwrap().unwrap();
    }
    assert_eq!(to_c.await.unwrap().unwrap(), 2);
    assert_eq!(balance.in_flight(), [("a", 0), ("c", 0), ("b", 0)]);
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_the_fast_member() {
    let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let member = |id: usize, latency: Duration| {
        let hits = Arc::clone(&hits);
        tower::util::BoxCloneSyncService::new(tower::service_fn(move |()| {
            hits[id].fetch_add(1, SeqCst);
            async move {
                tokio::time::sleep(latency).await;
                Ok::<_, BoxError>(id)
            }
        }))
    };
    let balance = Balance::builder()
        .policy(Policy::LeastLoaded)
        .load(Load::peak_ewma())
        .build(vec![
            member(0, Duration::from_millis(50)),
            member(1, Duration::from_millis(2)),
        ])
        .unwrap();
    // One request at a time: in flight is always 0, only the latency estimate differs.
    for _ in 0..50 {
        balance.clone().oneshot(()).await.unwrap();
    }
    let (slow, fast) = (hits[0].load(SeqCst), hits[1].load(SeqCst));
    assert_eq!(slow + fast, 50);
    assert!(slow <= 1, "the slow member got {slow} of 50");

    // By in-flight count alone the two are alike: least loaded's ties go round robin.
    let hits_before = [hits[0].load(SeqCst), hits[1].load(SeqCst)];
    let plain = Balance::builder()
        .policy(Policy::LeastLoaded)
        .build(vec![
            member(0, Duration::from_millis(50)),
            member(1, Duration::from_millis(2)),
        ])
        .unwrap();
    for _ in 0..10 {
        plain.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(hits[0].load(SeqCst) - hits_before[0], 5);
}

/// A member that is ready but whose responses fail ejects itself (outlier ejection), while
/// the others keep answering; every response is reported by `Balance` itself.
#[tokio::test]
async fn balance_ejects_a_member_whose_responses_fail() {
    let failing_calls = Arc::new(AtomicUsize::new(0));
    let members: Vec<tower::util::BoxCloneSyncService<(), usize, BoxError>> = (0..3)
        .map(|id| {
            let failing_calls = Arc::clone(&failing_calls);
            tower::util::BoxCloneSyncService::new(tower::service_fn(move |()| {
                let failing_calls = Arc::clone(&failing_calls);
                async move {
                    if id == 0 {
                        failing_calls.fetch_add(1, SeqCst);
                        Err::<usize, BoxError>("500".into())
                    } else {
                        Ok(id)
                    }
                }
            }))
        })
        .collect();
    let balance = Balance::builder()
        .policy(Policy::RoundRobin)
        .outlier_ejection(
            croupier::Ejection::default()
                .consecutive_failures(2)
                .max_share(0.5)
                .base_time(Duration::from_secs(600)),
        )
        .build(members)
        .unwrap();
    let mut failed = 0;
    for _ in 0..30 {
        if balance.clone().oneshot(()).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(
        failing_calls.load(SeqCst),
        2,
        "ejected after its second failure"
    );
    assert_eq!(failed, 2);
    assert_eq!(balance.balancer().stats().ejected, 1);
}
