//! Retries within a budget ([`Pool::call_idempotent`]) and hedged requests
//! ([`Pool::call_hedged`]): a failed or slow attempt goes to another worker, and the extra
//! attempts stay within the pool's retry budget.

mod common_workers;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use croupier::{Policy, Pool, RetryBudget, Worker};

/// Slot 0 fails every request (or, `slow`, takes a second over it); the others serve at once.
/// Every worker counts the requests it handles.
struct Replica {
    slot: usize,
    slow: bool,
    handled: Arc<[AtomicUsize; 4]>,
}

impl Worker for Replica {
    type Msg = u32;
    type Reply = Result<usize, usize>;

    async fn handle(&mut self, _: u32) -> Result<usize, usize> {
        self.handled[self.slot].fetch_add(1, Relaxed);
        match (self.slot, self.slow) {
            (0, true) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(0)
            }
            (0, false) => Err(0),
            (slot, _) => Ok(slot),
        }
    }

    fn failed(reply: &Result<usize, usize>) -> bool {
        reply.is_err()
    }
}

fn replicas(slow: bool, budget: RetryBudget) -> (Pool<Replica>, Arc<[AtomicUsize; 4]>) {
    let handled: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let pool = Pool::builder({
        let handled = Arc::clone(&handled);
        move |id| Replica {
            slot: id.slot(),
            slow,
            handled: Arc::clone(&handled),
        }
    })
    .size(4)
    .policy(Policy::RoundRobin)
    .retry_budget(budget)
    .start()
    .unwrap();
    (pool, handled)
}

fn total(handled: &[AtomicUsize; 4]) -> usize {
    handled.iter().map(|h| h.load(Relaxed)).sum()
}

/// About a quarter of the calls fail on worker 0 and are retried elsewhere while the budget
/// has tokens: 10 % of the calls and no reserve allow 10 retries in 100 calls, no more; a
/// budget of 100 % lets every failed call through on a retry.
#[tokio::test(start_paused = true)]
async fn retries_stay_within_the_budget() {
    let (pool, handled) = replicas(false, RetryBudget::default().ratio(0.1).min_per_second(0));
    let mut failed = 0;
    for n in 0..100 {
        failed += usize::from(pool.call_idempotent(n).await.unwrap().is_err());
    }
    let extra = total(&handled) - 100;
    assert_eq!(extra, 10, "one retry a token: 100 calls at 10 %");
    // Worker 0 only ever gets first attempts (a retry excludes it): each retried one of
    // them succeeded elsewhere.
    let to_0 = handled[0].load(Relaxed);
    assert!(to_0 > 20, "{to_0}");
    assert_eq!(
        failed,
        to_0 - extra,
        "a retried call succeeds on another worker"
    );
    pool.shutdown().await;

    let (pool, handled) = replicas(false, RetryBudget::default().ratio(1.0).min_per_second(0));
    for n in 0..100 {
        assert!(pool.call_idempotent(n).await.unwrap().is_ok());
    }
    assert_eq!(total(&handled), 100 + handled[0].load(Relaxed));
    pool.shutdown().await;

    // Plain calls are never retried.
    let (pool, handled) = replicas(false, RetryBudget::default().ratio(1.0));
    let failed = {
        let mut failed = 0;
        for n in 0..100 {
            failed += usize::from(pool.call(n).await.unwrap().is_err());
        }
        failed
    };
    assert_eq!((failed, total(&handled)), (25, 100));
    pool.shutdown().await;
}

/// A call dealt to the slow worker gets a hedge to another after the delay, and the hedge's
/// answer comes back long before the slow one; a call to a fast worker is answered before the
/// delay and sends no hedge.
#[tokio::test(start_paused = true)]
async fn hedged_request_goes_to_another_member() {
    let (pool, handled) = replicas(true, RetryBudget::default());
    let start = tokio::time::Instant::now();
    // Round robin: the first call goes to worker 0, the slow one.
    let answer = pool
        .call_hedged(1, Duration::from_millis(10))
        .await
        .unwrap();
    assert_ne!(answer, Ok(0), "the hedge answered");
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert_eq!(handled[0].load(Relaxed), 1);
    assert_eq!(total(&handled), 2, "the first attempt and its hedge");
    // The next ones go to fast workers: no hedge.
    for n in 0..2 {
        let before = total(&handled);
        assert!(pool.call_hedged(n, Duration::from_millis(10)).await.is_ok());
        assert_eq!(total(&handled), before + 1);
    }

    // With an empty budget, no hedge: the slow answer is waited for.
    let (pool, handled) = replicas(true, RetryBudget::default().ratio(0.0).min_per_second(0));
    let start = tokio::time::Instant::now();
    assert_eq!(
        pool.call_hedged(1, Duration::from_millis(10))
            .await
            .unwrap(),
        Ok(0)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(total(&handled), 1);
}

/// `Balance` takes retries from tower: `tower::retry::Retry` with its `TpsBudget` over a
/// `Balance`. A request that fails on one member is tried again through the balancer, which
/// counts the failure in that member's load for a while (and so deals the retry elsewhere),
/// and the retries stay within the budget's share of the requests.
#[cfg(feature = "tower")]
#[tokio::test]
async fn balance_retries_under_towers_budget_reach_a_healthy_member() {
    use std::future::{ready, Ready};

    use tower::{
        retry::budget::{Budget, TpsBudget},
        BoxError, ServiceExt,
    };

    #[derive(Clone)]
    struct Idempotent(Arc<TpsBudget>);

    impl<T> tower::retry::Policy<u32, T, BoxError> for Idempotent {
        type Future = Ready<()>;

        fn retry(&mut self, _: &mut u32, result: &mut Result<T, BoxError>) -> Option<Ready<()>> {
            match result {
                Ok(_) => {
                    self.0.deposit();
                    None
                }
                Err(_) => self.0.withdraw().then(|| ready(())),
            }
        }

        fn clone_request(&mut self, req: &u32) -> Option<u32> {
            Some(*req)
        }
    }

    let members = |handled: &Arc<[AtomicUsize; 4]>| -> Vec<_> {
        (0..4)
            .map(|slot| {
                let handled = Arc::clone(handled);
                tower::util::BoxCloneSyncService::new(tower::service_fn(move |_: u32| {
                    handled[slot].fetch_add(1, Relaxed);
                    ready(if slot == 0 {
                        Err::<usize, BoxError>("member 0 is failing".into())
                    } else {
                        Ok(slot)
                    })
                }))
            })
            .collect()
    };
    let run = |policy: Policy, budget: TpsBudget| async move {
        let handled: Arc<[AtomicUsize; 4]> = Arc::default();
        let balance = croupier::balance::Balance::builder()
            .policy(policy)
            .build(members(&handled))
            .unwrap();
        let service = tower::retry::Retry::new(Idempotent(Arc::new(budget)), balance);
        let mut failed = 0;
        for n in 0..100 {
            failed += usize::from(service.clone().oneshot(n).await.is_err());
        }
        let to_0 = handled[0].load(Relaxed);
        (failed, to_0, total(&handled) - 100)
    };
    // Least loaded (the default): a failure weighs in member 0's load, so its retry goes
    // elsewhere and so does every request after it (member 0 is dealt one request at most,
    // as where the balancer's seed starts its ties says).
    let (failed, to_0, extra) = run(
        Policy::LeastLoaded,
        TpsBudget::new(Duration::from_secs(10), 1, 0.2),
    )
    .await;
    assert_eq!((failed, extra), (0, to_0));
    assert!(to_0 <= 1, "member 0 took {to_0}");
    // Round robin deals member 0 a quarter of the requests and of their retries; a budget of
    // 10 % of the requests (no reserve) retries ten of the failures, the rest reach the caller.
    let (failed, to_0, extra) = run(
        Policy::RoundRobin,
        TpsBudget::new(Duration::from_secs(10), 0, 0.1),
    )
    .await;
    assert!(extra <= 10, "{extra} retries");
    assert_eq!(
        failed + extra,
        to_0,
        "a failure is retried or reaches the caller"
    );
    assert!(failed >= 15, "{failed} failed");
}
