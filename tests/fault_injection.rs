//! Fault injection: workers that panic on about 1 % of their messages, called from several
//! tasks on a multi-thread runtime. Every message must reach a worker exactly once (a re-pick
//! never delivers it twice, a crash never loses one), and every call's answer must match what
//! became of its message.
//!
//! This file installs a process-wide panic hook that hides the injected panics (and only
//! those); each file under `tests/` is its own process, so no other test is affected.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use croupier::{Policy, Pool, PoolCallError, Worker};

const INJECTED: &str = "injected fault";

/// Doubles its message; panics on multiples of 97 (chosen by the message, so deterministic).
/// Records how many times each message reached a worker.
struct Flaky {
    processed: Arc<AtomicU64>,
    deliveries: Arc<Vec<AtomicU8>>,
}

impl Worker for Flaky {
    type Msg = u64;
    type Reply = u64;

    async fn handle(&mut self, n: u64) -> u64 {
        self.deliveries[n as usize].fetch_add(1, Relaxed);
        if n % 97 == 0 {
            std::panic::panic_any(INJECTED);
        }
        // Let other tasks in now and then, as a worker awaiting I/O would.
        if n % 5 == 0 {
            tokio::task::yield_now().await;
        }
        self.processed.fetch_add(1, Relaxed);
        n * 2
    }
}

fn hide_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&INJECTED) {
            default(info);
        }
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_injection_every_call_returns_once() {
    const CALLS: u64 = 100_000;
    const TASKS: u64 = 8;
    hide_injected_panics();

    let processed = Arc::new(AtomicU64::new(0));
    // How many times each message reached a worker.
    let deliveries: Arc<Vec<AtomicU8>> = Arc::new((0..CALLS).map(|_| AtomicU8::new(0)).collect());
    let pool = Pool::builder({
        let processed = Arc::clone(&processed);
        let deliveries = Arc::clone(&deliveries);
        move |_| Flaky {
            processed: Arc::clone(&processed),
            deliveries: Arc::clone(&deliveries),
        }
    })
    .size(4)
    .policy(Policy::LeastLoaded)
    .intensity(u32::MAX, Duration::from_secs(3600))
    .start()
    .unwrap();

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let (mut ok, mut died) = (0_u64, 0_u64);
                // Anything but the two expected answers, kept to be reported all together.
                let mut unexpected = Vec::new();
                for n in (t..CALLS).step_by(TASKS as usize) {
                    match pool.call(n).await {
                        Ok(reply) if reply == n * 2 && n % 97 != 0 => ok += 1,
                        Err(PoolCallError::WorkerDied) if n % 97 == 0 => died += 1,
                        other => unexpected.push((n, format!("{other:?}"))),
                    }
                }
                (ok, died, unexpected)
            })
        })
        .collect();

    let results = tokio::time::timeout(Duration::from_secs(120), async {
        let mut totals = Vec::new();
        for t in tasks {
            totals.push(t.await.expect("a calling task panicked"));
        }
        totals
    })
    .await
    .expect("hang guard: the calls did not all return");

    let unexpected: Vec<_> = results.iter().flat_map(|r| r.2.iter()).collect();
    assert!(
        unexpected.is_empty(),
        "{} calls answered neither Ok nor WorkerDied as expected (message, answer): {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    let ok: u64 = results.iter().map(|r| r.0).sum();
    let died: u64 = results.iter().map(|r| r.1).sum();
    let crashes = (0..CALLS).filter(|n| n % 97 == 0).count() as u64;
    assert_eq!(crashes, 1031);
    let not_once: Vec<_> = (0..CALLS)
        .filter(|&n| deliveries[n as usize].load(Relaxed) != 1)
        .take(10)
        .collect();
    assert!(
        not_once.is_empty(),
        "messages that did not reach a worker exactly once: {not_once:?}"
    );
    assert_eq!(ok + died, CALLS);
    assert_eq!(died, crashes);
    assert_eq!(ok, processed.load(Relaxed), "every Ok is a message handled");

    // Loads are uncounted before a reply (or its absence) reaches the caller.
    let stats = pool.stats().supervisor;
    assert!(
        stats.workers.iter().all(|w| w.load == 0),
        "{:?}",
        stats.workers
    );
    assert!(!stats.gave_up);
    tokio::time::timeout(Duration::from_secs(30), pool.shutdown())
        .await
        .expect("hang guard: shutdown");
    // Read the counters once every slot task has ended, so that none is still being updated.
    let stats = pool.stats().supervisor;
    assert_eq!(stats.deaths, crashes);
    assert_eq!(stats.restarts, crashes);
    assert_eq!(stats.dropped, 0);
    assert!(!stats.gave_up);
    assert_eq!(processed.load(Relaxed), ok, "nothing handled twice");
}
