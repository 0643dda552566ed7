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
    Member, Policy,
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
        .load(Load::InFlight)
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

/// A gate that never holds a request back.
fn open_gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
}

/// `n` answers of `balance`, one after the other.
async fn answers<S>(balance: &S, n: usize) -> Vec<usize>
where
    S: Service<(), Response = usize, Error = BoxError> + Clone,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(balance.clone().oneshot(()).await.unwrap());
    }
    out
}

/// How many of `answers` each of `n` members gave.
fn counts(answers: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &a in answers {
        c[a] += 1;
    }
    c
}

#[tokio::test]
async fn balance_weighted_round_robin_follows_weights() {
    let open = open_gate();
    let balance = Balance::builder()
        .policy(Policy::RoundRobin)
        .build_weighted(vec![
            (Backend::new(0, &open), 3),
            (Backend::new(1, &open), 1),
            (Backend::new(2, &open), 0),
        ])
        .unwrap();
    // Smooth: member 1's turns are spread among member 0's; member 2 (weight 0) gets nothing.
    let first = answers(&balance, 8).await;
    assert_eq!(first, [0, 0, 1, 0, 0, 0, 1, 0]);
    // New weights take effect at once (the balance refreshes).
    assert!(balance.set_weight(&0, 0));
    assert!(balance.set_weight(&2, 2));
    assert!(!balance.set_weight(&9, 1), "no member has key 9");
    assert_eq!(counts(&answers(&balance, 9).await, 3), [0, 3, 6]);
    // A member inserted with a weight joins the schedule; replacing a member's service with
    // `insert` keeps its weight.
    balance.insert_weighted(3, Backend::new(3, &open), 3);
    balance.insert(2, Backend::new(2, &open));
    assert_eq!(counts(&answers(&balance, 12).await, 4), [0, 2, 4, 6]);
    // Least loaded compares load per unit of weight: held requests settle in proportion to
    // the weights, 1:3 (by counts alone they would be 2:2).
    let gates: Vec<_> = (0..2).map(|_| Arc::new(Semaphore::new(0))).collect();
    let ll = Balance::builder()
        .policy(Policy::LeastLoaded)
        .build_weighted(vec![
            (Backend::new(0, &gates[0]), 1),
            (Backend::new(1, &gates[1]), 3),
        ])
        .unwrap();
    let held: Vec<_> = (0..4)
        .map(|_| tokio::spawn(ll.clone().oneshot(())))
        .collect();
    settle(|| ll.in_flight().iter().map(|(_, n)| n).sum::<usize>() == 4).await;
    assert_eq!(
        ll.in_flight(),
        [(0, 1), (1, 3)],
        "requests in proportion 1:3"
    );
    for g in &gates {
        g.add_permits(4);
    }
    for h in held {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn balance_call_for_is_sticky_and_moves_about_one_nth() {
    const KEYS: u32 = 2_000;
    const N: usize = 10;
    let open = open_gate();
    let balance = Balance::new((0..N).map(|i| Backend::new(i, &open)).collect()).unwrap();
    let mut home = Vec::new();
    for k in 0..KEYS {
        home.push(balance.call_for(&k, ()).await.unwrap());
    }
    // Every member gets keys, none much more than its share.
    let share = counts(&home, N);
    assert!(
        share.iter().all(|&c| c > 100 && c < 300),
        "uneven placement: {share:?}"
    );
    for k in 0..KEYS {
        assert_eq!(balance.call_for(&k, ()).await.unwrap(), home[k as usize]);
    }
    // Member 3 leaves: its keys move, and few others do.
    balance.remove(&3);
    let (mut moved_off_3, mut moved_others) = (0, 0);
    for k in 0..KEYS {
        let now = balance.call_for(&k, ()).await.unwrap();
        assert_ne!(now, 3, "a key went to a member that left");
        if home[k as usize] == 3 {
            moved_off_3 += 1;
        } else if now != home[k as usize] {
            moved_others += 1;
        }
    }
    assert_eq!(moved_off_3, share[3]);
    assert!(
        moved_others < KEYS as usize / N / 4,
        "{moved_others} keys of members that stayed moved"
    );
    // It comes back under its key: every key is home again.
    balance.insert(3, Backend::new(3, &open));
    for k in 0..KEYS {
        assert_eq!(balance.call_for(&k, ()).await.unwrap(), home[k as usize]);
    }
}

#[tokio::test]
async fn balance_with_affinity_routes_by_request_key() {
    let backends: Vec<_> = (0..4)
        .map(|i| tower::service_fn(move |_user: Option<u32>| async move { Ok::<_, BoxError>(i) }))
        .collect();
    let balance = Balance::builder()
        .policy(Policy::RoundRobin)
        .build(backends)
        .unwrap();
    let mut sticky = balance.clone().with_affinity(|user: &Option<u32>| *user);
    let mut home = Vec::new();
    for user in 0..64 {
        home.push(
            sticky
                .ready()
                .await
                .unwrap()
                .call(Some(user))
                .await
                .unwrap(),
        );
    }
    assert!(counts(&home, 4).iter().all(|&c| c > 0), "{home:?}");
    for user in 0..64 {
        let again = sticky
            .ready()
            .await
            .unwrap()
            .call(Some(user))
            .await
            .unwrap();
        assert_eq!(again, home[user as usize]);
        // The same key through `call_for` on the shared balance lands on the same member.
        let direct = balance.call_for(&user, None).await.unwrap();
        assert_eq!(direct, home[user as usize]);
    }
    // No key: the policy picks (round robin reaches every member in four requests).
    let mut free = Vec::new();
    for _ in 0..4 {
        free.push(sticky.ready().await.unwrap().call(None).await.unwrap());
    }
    free.sort_unstable();
    assert_eq!(free, [0, 1, 2, 3]);
}

#[tokio::test]
async fn balance_bounded_loads_cap_a_hot_key() {
    const HELD: usize = 40;
    const N: usize = 4;
    let total = |b: &Balance<Backend>| b.in_flight().iter().map(|(_, n)| n).sum::<usize>();
    for bounded in [false, true] {
        let gate = Arc::new(Semaphore::new(0));
        let backends = (0..N).map(|i| Backend::new(i, &gate)).collect();
        let mut builder = Balance::builder();
        if bounded {
            builder = builder.bounded_loads(0.25);
        }
        let balance = builder.build(backends).unwrap();
        let mut held = Vec::new();
        for _ in 0..HELD {
            held.push(tokio::spawn(balance.call_for("hot", ())));
            // Each request is counted before the next is picked.
            settle(|| total(&balance) == held.len()).await;
        }
        let loads: Vec<usize> = balance.in_flight().iter().map(|&(_, n)| n).collect();
        if bounded {
            let cap = (1.25 * HELD as f64 / N as f64).ceil() as usize;
            assert!(loads.iter().all(|&l| l <= cap), "{loads:?} over {cap}");
        } else {
            assert_eq!(loads.iter().max(), Some(&HELD), "{loads:?}");
        }
        gate.add_permits(HELD);
        for h in held {
            h.await.unwrap().unwrap();
        }
    }
}

/// A key removed with requests in flight keeps its load state only until the last of them
/// ends, and then nothing of it stays; a key inserted again meanwhile gets its state back, and
/// the old requests ending does not take it from the member it belongs to again.
#[tokio::test]
async fn removed_key_with_requests_in_flight_leaves_no_state() {
    let (gate_a, gate_b) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let balance = Balance::builder()
        .policy(Policy::RoundRobin)
        .build(vec![Backend::new(0, &gate_a), Backend::new(1, &gate_b)])
        .unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(balance.clone().oneshot(())))
        .collect();
    settle(|| balance.in_flight() == [(0, 1), (1, 1)]).await;

    // Member 1 leaves with its request in flight: its state is kept while that runs.
    balance.remove(&1);
    assert_eq!(balance.in_flight(), [(0, 1)]);
    assert_eq!(balance.removed_in_flight(), [(1, 1)]);
    gate_a.add_permits(1);
    gate_b.add_permits(1);
    for h in held {
        h.await.unwrap().unwrap();
    }
    assert_eq!(
        balance.removed_in_flight(),
        [],
        "the last request ended: nothing of key 1 stays"
    );

    // Member 0 leaves with a request in flight and comes back before it ends: the request
    // counts again, and its end does not forget the state of the member that is back.
    let old = tokio::spawn(balance.clone().oneshot(()));
    settle(|| balance.in_flight() == [(0, 1)]).await;
    balance.remove(&0);
    assert_eq!(balance.removed_in_flight(), [(0, 1)]);
    let gate_c = Arc::new(Semaphore::new(0));
    balance.insert(0, Backend::new(2, &gate_c));
    assert_eq!(
        balance.in_flight(),
        [(0, 1)],
        "the state came back with the key"
    );
    assert_eq!(balance.removed_in_flight(), []);
    assert!(balance.set_weight(&0, 3));
    gate_a.add_permits(1);
    assert_eq!(old.await.unwrap().unwrap(), 0);
    assert_eq!(balance.in_flight(), [(0, 0)]);
    // Replacing the service keeps the state (weight 3): it was not forgotten.
    balance.insert(0, Backend::new(3, &gate_c));
    assert_eq!(balance.balancer().pick().unwrap().weight(), 3);
    assert_eq!(balance.removed_in_flight(), []);
}

/// The same from a croupier `Source`: a member the source no longer lists, with a request in
/// flight, is kept only until that request ends.
#[tokio::test]
async fn member_dropped_by_the_source_with_a_request_in_flight_leaves_no_state() {
    let gate = Arc::new(Semaphore::new(0));
    let listed = Arc::new(std::sync::Mutex::new(vec![
        Backend::new(0, &gate),
        Backend::new(1, &gate),
    ]));
    let source = {
        let listed = Arc::clone(&listed);
        move || listed.lock().unwrap().clone()
    };
    let balance = Balance::builder()
        .policy(Policy::RoundRobin)
        .from_source(source)
        .unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(balance.clone().oneshot(())))
        .collect();
    settle(|| balance.in_flight() == [(0, 1), (1, 1)]).await;
    listed.lock().unwrap().pop();
    balance.refresh();
    assert_eq!(balance.removed_in_flight(), [(1, 1)]);
    gate.add_permits(2);
    for h in held {
        h.await.unwrap().unwrap();
    }
    assert_eq!(balance.removed_in_flight(), []);
}
