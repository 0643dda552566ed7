//! Every numeric knob of every builder, at its extremes: each setting is either refused with
//! a typed error where it is given (`build()`, `start()`, the call), or it works, and nothing
//! panics or overflows afterwards.

mod common;
#[cfg(feature = "remote")]
mod common_remote;

use std::time::Duration;

use common::{make, TestMember};
use croupier::{
    Backoff, Balancer, ConfigError, Ejection, Mailbox, Outcome, Policy, Pool, ResizeError, Worker,
};

const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(3_600),
    Duration::MAX,
];
const RATIOS: [f64; 9] = [
    f64::NAN,
    f64::NEG_INFINITY,
    -1.0,
    0.0,
    f64::MIN_POSITIVE,
    0.5,
    1.0,
    2.0,
    f64::INFINITY,
];
const COUNTS: [usize; 4] = [0, 1, 2, usize::MAX];

/// Picks, keyed picks, failures (ejections), successes and refreshes on a balancer that
/// was built: none may panic.
fn exercise(b: &Balancer<TestMember>) {
    for round in 0..50 {
        if let Ok(p) = b.pick() {
            p.report(if round % 3 == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            });
        }
        let _ = b.pick_for(&round);
        let _ = b.pick_excluding(&[]);
    }
    b.refresh();
    let _ = b.stats();
}

#[test]
fn extreme_settings_are_refused_or_work() {
    // The refresh ratio: in (0, 1], or refused.
    for ratio in RATIOS {
        let built = Balancer::builder()
            .min_alive_ratio(ratio)
            .source(make(3))
            .build();
        match built {
            Ok(b) => {
                assert!(ratio > 0.0 && ratio <= 1.0, "{ratio} accepted");
                exercise(&b);
            }
            Err(e) => assert!(matches!(e, ConfigError::InvalidRatio(_)), "{ratio}: {e}"),
        }
    }
    // max_load, seed and bounded loads, under every policy.
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo] {
        for max_load in COUNTS {
            for seed in [0, u64::MAX] {
                let built = Balancer::builder()
                    .policy(policy)
                    .max_load(max_load)
                    .seed(seed)
                    .source(make(3))
                    .build();
                match built {
                    Ok(b) => exercise(&b),
                    Err(e) => assert_eq!((max_load, e), (0, ConfigError::ZeroMaxLoad)),
                }
            }
        }
        for epsilon in RATIOS.into_iter().chain([f64::MAX]) {
            let built = Balancer::builder()
                .policy(policy)
                .bounded_loads(epsilon)
                .source(make(3))
                .build();
            match built {
                Ok(b) => {
                    assert!(epsilon.is_finite() && epsilon > 0.0, "{epsilon} accepted");
                    exercise(&b);
                }
                Err(e) => assert!(
                    matches!(e, ConfigError::InvalidEpsilon(_)),
                    "{epsilon}: {e}"
                ),
            }
        }
    }
    // Outlier ejection: every count, time and share. Duration::MAX means "for ever".
    for failures in [0, 1, u32::MAX] {
        for base in DURATIONS {
            for max in DURATIONS {
                for share in RATIOS {
                    let ejection = Ejection::default()
                        .consecutive_failures(failures)
                        .base_time(base)
                        .max_time(max)
                        .max_share(share);
                    let b = Balancer::builder()
                        .outlier_ejection(ejection)
                        .source(make(3))
                        .build()
                        .expect("every ejection setting is taken as given or clamped");
                    exercise(&b);
                }
            }
        }
    }
}

struct Echo;

impl Worker for Echo {
    type Msg = u32;
    type Reply = u32;
    async fn handle(&mut self, n: u32) -> u32 {
        n
    }
}

/// A pool that starts answers a call, a send and a resize (which may be refused).
async fn exercise_pool(pool: &Pool<Echo>) {
    assert_eq!(pool.call(7).await.unwrap(), 7);
    pool.send(8).unwrap();
    for n in [0, 1, 3, usize::MAX] {
        match pool.resize(n).await {
            Ok(()) => assert!(n > 0 && n < usize::MAX, "resize({n}) accepted"),
            Err(e) => assert!(
                matches!(e, ResizeError::ZeroSize | ResizeError::TooLarge { .. }),
                "resize({n}): {e}"
            ),
        }
    }
    assert_eq!(pool.call(9).await.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn extreme_pool_settings_are_refused_or_work() {
    for size in [0, 1, 4, usize::MAX] {
        match Pool::builder(|_| Echo).size(size).start() {
            Ok(pool) => {
                exercise_pool(&pool).await;
                pool.shutdown().await;
            }
            Err(e) => assert!(
                matches!(
                    e,
                    ConfigError::ZeroSize | ConfigError::TooManyWorkers { .. }
                ),
                "size({size}): {e}"
            ),
        }
    }
    // The largest a tokio channel counts is taken; one more is refused.
    let largest = tokio::sync::Semaphore::MAX_PERMITS;
    for mailbox in [0, 1, largest, largest + 1, usize::MAX] {
        match Pool::builder(|_| Echo)
            .size(2)
            .mailbox(Mailbox::Bounded(mailbox))
            .start()
        {
            Ok(pool) => {
                exercise_pool(&pool).await;
                pool.shutdown().await;
            }
            Err(e) => assert!(
                matches!((mailbox, &e), (0, ConfigError::ZeroMailbox))
                    || (mailbox > largest && e == ConfigError::MailboxTooLarge { max: largest }),
                "Bounded({mailbox}): {e}"
            ),
        }
    }
    for max_restarts in [0, 1, u32::MAX] {
        for window in DURATIONS {
            for backoff in DURATIONS {
                let started = Pool::builder(|_| Echo)
                    .size(2)
                    .intensity(max_restarts, window)
                    .backoff(Backoff::exponential(backoff, Duration::MAX))
                    .start();
                match started {
                    Ok(pool) => {
                        exercise_pool(&pool).await;
                        pool.shutdown().await;
                    }
                    Err(e) => assert_eq!(
                        (window, e),
                        (Duration::ZERO, ConfigError::ZeroIntensityWindow)
                    ),
                }
            }
        }
    }
    // And the balancer's knobs through the pool's builder.
    for ejection_time in DURATIONS {
        let pool = Pool::builder(|_| Echo)
            .size(2)
            .max_load(usize::MAX)
            .bounded_loads(f64::MAX)
            .outlier_ejection(
                Ejection::default()
                    .consecutive_failures(1)
                    .base_time(ejection_time)
                    .max_time(Duration::MAX),
            )
            .start()
            .unwrap();
        exercise_pool(&pool).await;
        assert_eq!(pool.call_for("key", 3).await.unwrap(), 3);
        pool.shutdown().await;
    }
}

/// A tower member: ready or failing its `poll_ready`, answering or failing its calls.
#[cfg(feature = "tower")]
#[derive(Clone)]
struct Backend {
    ready: bool,
    answers: bool,
}

#[cfg(feature = "tower")]
impl tower::Service<u32> for Backend {
    type Response = u32;
    type Error = tower::BoxError;
    type Future = std::future::Ready<Result<u32, tower::BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), tower::BoxError>> {
        std::task::Poll::Ready(if self.ready {
            Ok(())
        } else {
            Err("not ready".into())
        })
    }

    fn call(&mut self, n: u32) -> Self::Future {
        std::future::ready(if self.answers {
            Ok(n)
        } else {
            Err("failed".into())
        })
    }
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn extreme_balance_settings_are_refused_or_work() {
    use croupier::balance::{Balance, Load};
    use tower::ServiceExt;

    let backends = || {
        vec![
            Backend {
                ready: true,
                answers: true,
            },
            Backend {
                ready: false,
                answers: true,
            },
            Backend {
                ready: true,
                answers: false,
            },
        ]
    };
    let mut loads = vec![Load::InFlight, Load::peak_ewma()];
    for decay in DURATIONS {
        for default_rtt in DURATIONS {
            loads.push(Load::PeakEwma { decay, default_rtt });
        }
    }
    for load in loads {
        for cooldown in DURATIONS {
            for tries in COUNTS {
                for max_load in COUNTS {
                    let built = Balance::builder()
                        .load(load)
                        .cooldown(cooldown)
                        .tries(tries)
                        .max_load(max_load)
                        .bounded_loads(f64::MAX)
                        .outlier_ejection(
                            Ejection::default()
                                .consecutive_failures(1)
                                .base_time(cooldown)
                                .max_time(Duration::MAX),
                        )
                        .build(backends());
                    let balance = match built {
                        Ok(b) => b,
                        Err(e) => {
                            assert_eq!((max_load, e), (0, ConfigError::ZeroMaxLoad));
                            continue;
                        }
                    };
                    for n in 0..20 {
                        // Answers, errors and refusals are all fine; a panic is not.
                        let _ = balance.clone().oneshot(n).await;
                        let _ = balance.call_for(&n, n).await;
                        tokio::time::advance(Duration::from_millis(500)).await;
                    }
                    let _ = balance.refresh();
                }
            }
        }
    }
}

/// What became of a worker and a master built with one extreme setting.
#[cfg(feature = "remote")]
#[derive(Debug)]
enum NodeRun {
    /// `start()` refused the worker's or the master's settings.
    Refused(croupier::remote::StartError),
    /// Both started; the master's connection and call ended thus.
    Ran(Result<u64, String>),
}

/// Starts a worker and a master, connects, calls ECHO once and shuts both down: every step
/// bounded in time, and no panic on the test's thread (where the nodes' tasks run).
#[cfg(feature = "remote")]
async fn run_nodes(
    worker: croupier::remote::NodeBuilder,
    master: croupier::remote::NodeBuilder,
) -> NodeRun {
    use common_remote::{within, ECHO};
    let w = match within(worker.start()).await {
        Ok(w) => w,
        Err(e) => return NodeRun::Refused(e),
    };
    let m = match within(master.start()).await {
        Ok(m) => m,
        Err(e) => {
            within(w.shutdown()).await;
            return NodeRun::Refused(e);
        }
    };
    let answer = match within(m.connect(w.local_addr().unwrap())).await {
        Ok(_) => within(m.call_least_loaded(ECHO, 7))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    within(m.shutdown()).await;
    within(w.shutdown()).await;
    NodeRun::Ran(answer)
}

/// Panics seen on threads whose name starts with `prefix` (the test's, where a current-thread
/// runtime runs the nodes' tasks).
#[cfg(feature = "remote")]
fn count_panics(prefix: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::{atomic::AtomicUsize, Arc};
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&seen);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(prefix))
        {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        previous(info);
    }));
    seen
}

#[cfg(feature = "remote")]
#[tokio::test]
async fn extreme_node_settings_are_refused_or_work() {
    use common_remote::{master, worker};
    use croupier::remote::{NodeBuilder, StartError};

    let panics = count_panics("extreme_node_settings");
    // Each knob at its extremes, on the worker and on the master alike, and what must come
    // of it on each: refused at `start()` with a typed error naming the setting, a working
    // call, or (where the setting leaves a call no time) either a working call or a typed
    // error.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Expect {
        Refused,
        Works,
        WorksOrFails,
    }
    use Expect::{Refused, Works, WorksOrFails};
    type Knob = (&'static str, fn(NodeBuilder) -> NodeBuilder, Expect, Expect);
    let knobs: Vec<Knob> = vec![
        // The master has no pool.
        ("pool_size(0)", |b| b.pool_size(0), Refused, Works),
        (
            "pool_size(MAX)",
            |b| b.pool_size(usize::MAX),
            Refused,
            Works,
        ),
        (
            "call_timeout(0)",
            |b| b.call_timeout(Duration::ZERO),
            Works,
            WorksOrFails,
        ),
        (
            "call_timeout(1 ns)",
            |b| b.call_timeout(Duration::from_nanos(1)),
            Works,
            WorksOrFails,
        ),
        (
            "call_timeout(MAX)",
            |b| b.call_timeout(Duration::MAX),
            Works,
            Works,
        ),
        (
            "shutdown_grace(0)",
            |b| b.shutdown_grace(Duration::ZERO),
            Works,
            Works,
        ),
        (
            "shutdown_grace(MAX)",
            |b| b.shutdown_grace(Duration::MAX),
            Works,
            Works,
        ),
        (
            "handshake_timeout(0)",
            |b| b.handshake_timeout(Duration::ZERO),
            WorksOrFails,
            WorksOrFails,
        ),
        (
            "handshake_timeout(MAX)",
            |b| b.handshake_timeout(Duration::MAX),
            Works,
            Works,
        ),
        ("max_message(0)", |b| b.max_message(0), Refused, Refused),
        (
            "max_message(MAX)",
            |b| b.max_message(usize::MAX),
            Works,
            Works,
        ),
        (
            "max_connections(0)",
            |b| b.max_connections(0),
            Refused,
            Refused,
        ),
        (
            "max_connections(MAX)",
            |b| b.max_connections(usize::MAX),
            Refused,
            Refused,
        ),
        (
            "max_in_flight(0, 0)",
            |b| b.max_in_flight(0, 0),
            Refused,
            Refused,
        ),
        (
            "max_in_flight(MAX, MAX)",
            |b| b.max_in_flight(u32::MAX, usize::MAX),
            Refused,
            Refused,
        ),
        (
            "keepalive(0, 0)",
            |b| b.keepalive(Duration::ZERO, Duration::ZERO),
            Refused,
            Refused,
        ),
        (
            "keepalive(MAX, MAX)",
            |b| b.keepalive(Duration::MAX, Duration::MAX),
            Works,
            Works,
        ),
        (
            "report_interval(0, 0)",
            |b| b.report_interval(Duration::ZERO, Duration::ZERO),
            Refused,
            Refused,
        ),
        (
            "report_interval(MAX, MAX)",
            |b| b.report_interval(Duration::MAX, Duration::MAX),
            Works,
            Works,
        ),
    ];
    for (name, knob, on_worker_expect, on_master_expect) in knobs {
        for on_worker in [true, false] {
            let (w, m, expect) = if on_worker {
                (knob(worker("w")), master(), on_worker_expect)
            } else {
                (worker("w"), knob(master()), on_master_expect)
            };
            let run = run_nodes(w, m).await;
            let side = if on_worker { "worker" } else { "master" };
            match (&run, expect) {
                // A refusal names the setting.
                (NodeRun::Refused(StartError::Setting { setting, .. }), Refused) => {
                    assert!(name.starts_with(setting), "{side} {name}: {run:?}");
                }
                (NodeRun::Refused(StartError::Pool(_)), Refused) => {
                    assert!(name.starts_with("pool_size"), "{side} {name}: {run:?}");
                }
                (NodeRun::Ran(Ok(7)), Works | WorksOrFails)
                | (NodeRun::Ran(Err(_)), WorksOrFails) => {}
                _ => panic!("{side} {name}: expected {expect:?}, got {run:?}"),
            }
            assert_eq!(
                panics.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "{side} {name}: a panic"
            );
        }
    }
}
