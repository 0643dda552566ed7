//! A pool of 8 supervised workers with uneven job costs, called a few hundred thousand times
//! under each policy while some workers are killed on the way; prints calls/s, latency,
//! restarts, refreshes and calls lost (always 0: a crash costs a caller nothing).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use croupier::{Policy, Pool, Worker, WorkerId};

/// What the demo sends: a job of some cost, or an order to crash.
enum Job {
    Work { cost: Duration },
    Crash,
}

/// Spins for each job's cost, as a CPU-bound handler would; panics on `Crash`.
struct Spinner;

impl Worker for Spinner {
    type Msg = Job;
    type Reply = ();

    async fn handle(&mut self, job: Job) {
        match job {
            Job::Work { cost } => {
                let end = Instant::now() + cost;
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
                // Let other workers in between jobs, as a real handler awaiting I/O would.
                tokio::task::yield_now().await;
            }
            Job::Crash => panic!("killed by the demo"),
        }
    }
}

const WORKERS: usize = 8;
const CALLS: u64 = 320_000;
const CLIENTS: u64 = 32;
const KILLS: u64 = 4;

/// 95 % short jobs, 5 % twenty times longer, spread by a hash of the call's number.
fn cost(n: u64) -> Duration {
    let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    if h % 100 < 5 {
        Duration::from_micros(20)
    } else {
        Duration::from_micros(1)
    }
}

struct Row {
    policy: Policy,
    calls_per_s: f64,
    p50: Duration,
    p99: Duration,
    restarts: u64,
    refreshes: u64,
    failed: u64,
    lost: u64,
}

async fn run(policy: Policy) -> Result<Row, Box<dyn std::error::Error>> {
    let pool = Pool::builder(|_: WorkerId| Spinner)
        .size(WORKERS)
        .policy(policy)
        .seed(7)
        .intensity(100, Duration::from_secs(1))
        .start()?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();

    // The killer: crash one worker each time another fifth of the calls is done.
    let killer = {
        let pool = pool.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            for k in 1..=KILLS {
                while done.load(Relaxed) < k * CALLS / (KILLS + 1) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let victim = &pool.supervisor().children()[(k as usize * 3) % WORKERS];
                let _ = victim.send(Job::Crash);
            }
        })
    };

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let pool = pool.clone();
            let done = Arc::clone(&done);
            let failed = Arc::clone(&failed);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity((CALLS / CLIENTS) as usize);
                for i in 0..CALLS / CLIENTS {
                    let n = c * (CALLS / CLIENTS) + i;
                    let t = Instant::now();
                    match pool.call(Job::Work { cost: cost(n) }).await {
                        Ok(()) => latencies.push(t.elapsed()),
                        Err(_) => {
                            failed.fetch_add(1, Relaxed);
                        }
                    }
                    done.fetch_add(1, Relaxed);
                }
                latencies
            })
        })
        .collect();

    let mut latencies = Vec::with_capacity(CALLS as usize);
    for client in clients {
        latencies.extend(client.await?);
    }
    let elapsed = start.elapsed();
    killer.await?;
    latencies.sort_unstable();
    let stats = pool.stats();
    pool.shutdown().await;
    let answered = latencies.len() as u64 + failed.load(Relaxed);
    Ok(Row {
        policy,
        calls_per_s: CALLS as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
        restarts: stats.supervisor.restarts,
        refreshes: stats.balancer.refreshes,
        failed: failed.load(Relaxed),
        lost: CALLS - answered,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The killed workers' panics are expected; keep their messages off the table.
    std::panic::set_hook(Box::new(|_| {}));
    println!(
        "{WORKERS} workers, {CALLS} calls from {CLIENTS} tasks, jobs 95 % 1 µs / 5 % 20 µs, \
         {KILLS} workers killed per run\n"
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>9} {:>10} {:>7} {:>6}",
        "policy", "calls/s", "p50", "p99", "restarts", "refreshes", "failed", "lost"
    );
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo] {
        let r = run(policy).await?;
        println!(
            "{:<12} {:>10.0} {:>10.1?} {:>10.1?} {:>9} {:>10} {:>7} {:>6}",
            format!("{:?}", r.policy),
            r.calls_per_s,
            r.p50,
            r.p99,
            r.restarts,
            r.refreshes,
            r.failed,
            r.lost
        );
    }
    Ok(())
}
