//! A pool counts a worker's failures ([`Worker::failed`]) against it: they weigh as load for
//! a while, so a worker that fails fast stops looking idle, and outlier ejection hears of
//! them.

mod common_workers;

use std::time::Duration;

use common_workers::until;

use croupier::{Ejection, Policy, Pool, Worker};

/// Slot 0 fails every request, at once; the others serve.
struct Flaky {
    slot: usize,
}

impl Worker for Flaky {
    type Msg = ();
    type Reply = Result<usize, usize>;

    async fn handle(&mut self, (): ()) -> Result<usize, usize> {
        if self.slot == 0 {
            Err(0)
        } else {
            Ok(self.slot)
        }
    }

    fn failed(reply: &Result<usize, usize>) -> bool {
        reply.is_err()
    }
}

fn pool(policy: Policy) -> Pool<Flaky> {
    Pool::builder(|id| Flaky { slot: id.slot() })
        .size(2)
        .policy(policy)
        .seed(3)
        .start()
        .unwrap()
}

fn picks<W: Worker>(pool: &Pool<W>, n: usize) -> Vec<usize> {
    (0..n).map(|_| pool.pick().unwrap().id().slot()).collect()
}

#[tokio::test(start_paused = true)]
async fn failures_count_as_load_until_they_decay() {
    for policy in [Policy::LeastLoaded, Policy::PowerOfTwo] {
        let pool = pool(policy);
        // Both idle: both are picked.
        let before = picks(&pool, 40);
        assert!(before.contains(&0) && before.contains(&1), "{policy:?}");
        // Worker 0 fails a call...
        while pool.call(()).await.unwrap().is_ok() {}
        // ...and weighs more than its idle peer while its failure is recent.
        assert!(picks(&pool, 40).iter().all(|&s| s == 1), "{policy:?}");
        // The penalty decays on tokio's clock: two seconds on, worker 0 is picked again.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(picks(&pool, 40).contains(&0), "{policy:?}");
        pool.shutdown().await;
    }
}

/// A `Balance` counts a member's failed responses as load the same way: a member that fails
/// at once no longer draws every request of least loaded.
#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn a_balance_counts_failed_responses_as_load_until_they_decay() {
    use croupier::balance::{Balance, Load};
    use tower::{service_fn, BoxError, ServiceExt};

    for load in [Load::InFlight, Load::peak_ewma()] {
        // Member 0 fails at once; member 1 answers.
        let members: Vec<_> = (0..2_usize)
            .map(|i| {
                service_fn(move |()| async move {
                    if i == 0 {
                        Err::<usize, BoxError>("down".into())
                    } else {
                        Ok(i)
                    }
                })
            })
            .collect();
        let balance = Balance::builder()
            .policy(Policy::LeastLoaded)
            .load(load)
            .seed(3)
            .build(members)
            .unwrap();
        while balance.clone().oneshot(()).await.is_ok() {}
        let served: Vec<_> = {
            let mut out = Vec::new();
            for _ in 0..40 {
                out.push(balance.clone().oneshot(()).await.is_ok());
            }
            out
        };
        assert!(served.iter().all(|&ok| ok), "{load:?}: {served:?}");
        if load != Load::InFlight {
            // Peak EWMA: member 1's estimate decays with its responses while member 0's
            // stands, so least loaded keeps to member 1; the penalty's decay is the same.
            continue;
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut failed_again = false;
        for _ in 0..40 {
            failed_again |= balance.clone().oneshot(()).await.is_err();
        }
        assert!(
            failed_again,
            "{load:?}: member 0 tried again once its penalty decayed"
        );
    }
}

/// `Pool::call` reports a failed reply to outlier ejection: a worker whose replies fail is
/// ejected as one that panics would be.
#[tokio::test(start_paused = true)]
async fn a_pool_reports_failed_replies_to_outlier_ejection() {
    let pool = Pool::builder(|id| Flaky { slot: id.slot() })
        .size(2)
        .policy(Policy::RoundRobin)
        .outlier_ejection(Ejection::default().consecutive_failures(2).max_share(1.0))
        .start()
        .unwrap();
    let mut failures = 0;
    while failures < 2 {
        failures += usize::from(pool.call(()).await.unwrap().is_err());
    }
    assert_eq!(pool.balancer().stats().ejected, 1);
    assert!(picks(&pool, 20).iter().all(|&s| s == 1));
    // The other worker's replies are reported as successes: it stays in.
    for _ in 0..10 {
        assert_eq!(pool.call(()).await.unwrap(), Ok(1));
    }
    assert_eq!(pool.balancer().stats().ejected, 1);
    pool.shutdown().await;
}

/// A panic in `Worker::failed` is a crash: the caller still gets its reply (the work was
/// done), and the worker restarts.
#[tokio::test(start_paused = true)]
async fn a_panic_in_failed_is_a_crash_once_the_reply_is_sent() {
    struct Picky;
    impl Worker for Picky {
        type Msg = u32;
        type Reply = u32;
        async fn handle(&mut self, n: u32) -> u32 {
            n
        }
        fn failed(reply: &u32) -> bool {
            assert_ne!(*reply, 13, "13 judged (a panic expected by the test)");
            false
        }
    }
    let pool = Pool::builder(|_| Picky).size(1).start().unwrap();
    assert_eq!(pool.call(13).await.unwrap(), 13);
    until("the restart", || pool.stats().supervisor.restarts == 1).await;
    assert_eq!(pool.stats().supervisor.restarts, 1);
    assert_eq!(pool.call(7).await.unwrap(), 7);
    pool.shutdown().await;
}

/// A reply that is not a failure clears the penalty at once.
#[tokio::test(start_paused = true)]
async fn a_success_clears_the_penalty() {
    use croupier::Member;

    struct Told;
    impl Worker for Told {
        type Msg = bool;
        type Reply = Result<(), ()>;
        async fn handle(&mut self, fail: bool) -> Result<(), ()> {
            if fail {
                Err(())
            } else {
                Ok(())
            }
        }
        fn failed(reply: &Result<(), ()>) -> bool {
            reply.is_err()
        }
    }
    let pool = Pool::builder(|_| Told).size(1).start().unwrap();
    assert_eq!(pool.pick().unwrap().load(), 0);
    assert!(pool.call(true).await.unwrap().is_err());
    assert!(
        pool.pick().unwrap().load() > 0,
        "an idle worker weighs its failure"
    );
    pool.call(false).await.unwrap().unwrap();
    assert_eq!(pool.pick().unwrap().load(), 0, "its success cleared it");
    pool.shutdown().await;
}

/// A worker whose every message panics is ejected by its slot: each crash counts against the
/// slot, though it restarts the worker as a new incarnation (and refreshes the balancer), and
/// the slot stays out through its restarts.
#[tokio::test(start_paused = true)]
async fn pool_ejects_a_worker_that_keeps_panicking() {
    struct Crashy {
        slot: usize,
    }
    impl Worker for Crashy {
        type Msg = ();
        type Reply = usize;
        async fn handle(&mut self, (): ()) -> usize {
            assert_ne!(
                self.slot, 0,
                "slot 0 crashes (a panic expected by the test)"
            );
            self.slot
        }
    }
    let pool = Pool::builder(|id| Crashy { slot: id.slot() })
        .size(2)
        .policy(Policy::RoundRobin)
        .intensity(u32::MAX, Duration::from_secs(1))
        .outlier_ejection(Ejection::default().consecutive_failures(3).max_share(0.5))
        .start()
        .unwrap();
    let mut crashes = 0;
    for _ in 0..20 {
        match pool.call(()).await {
            Ok(slot) => assert_eq!(slot, 1),
            Err(_) => crashes += 1,
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(crashes, 3, "three crashes in a row eject slot 0");
    assert_eq!(pool.balancer().stats().ejected, 1);
    until("slot 0's restart", || {
        pool.stats().supervisor.workers[0].alive
    })
    .await;
    assert!(picks(&pool, 20).iter().all(|&s| s == 1), "slot 0 stays out");
    pool.shutdown().await;
}

/// A worker that fails every other request never fails five in a row, yet is ejected once
/// its success rate over its recent requests falls below the minimum.
#[tokio::test(start_paused = true)]
async fn success_rate_ejection_ejects_a_mostly_failing_member() {
    struct Alternating {
        slot: usize,
        calls: usize,
    }
    impl Worker for Alternating {
        type Msg = ();
        type Reply = Result<usize, usize>;
        async fn handle(&mut self, (): ()) -> Result<usize, usize> {
            self.calls += 1;
            if self.slot == 0 && self.calls % 2 == 0 {
                Err(0)
            } else {
                Ok(self.slot)
            }
        }
        fn failed(reply: &Result<usize, usize>) -> bool {
            reply.is_err()
        }
    }
    let start = |ejection: Ejection| {
        Pool::builder(|id| Alternating {
            slot: id.slot(),
            calls: 0,
        })
        .size(2)
        .policy(Policy::RoundRobin)
        .outlier_ejection(ejection.max_share(0.5))
        .start()
        .unwrap()
    };
    // Failures in a row alone never eject it: it fails half its requests.
    let pool = start(Ejection::default());
    let mut failed = 0;
    for _ in 0..200 {
        failed += usize::from(pool.call(()).await.unwrap().is_err());
    }
    assert_eq!(failed, 50);
    assert_eq!(pool.balancer().stats().ejected, 0);
    pool.shutdown().await;

    // At least 80 % successes over 20 requests: ejected once it has had 20, and no more of
    // its failures reach callers.
    let pool = start(Ejection::default().success_rate(0.8, 20));
    let mut failed = 0;
    for _ in 0..200 {
        failed += usize::from(pool.call(()).await.unwrap().is_err());
    }
    assert_eq!(pool.balancer().stats().ejected, 1);
    assert!(failed <= 10, "{failed} failures reached callers");
    assert!(picks(&pool, 20).iter().all(|&s| s == 1));
    pool.shutdown().await;
}
