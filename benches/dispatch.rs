//! `dispatch`: a trivial message end to end through 8 workers on a 2-worker multi-thread
//! runtime: `Pool::send` and `Pool::call` against raw tokio mpsc senders picked round robin,
//! and against an actor-hop pool (ask a balancing task for a sender, then send: the design of
//! kameo's and ractor's pools).
//!
//! Calls are measured in three patterns: one caller with `IN_FLIGHT` calls joined at once
//! (`_call`), `CALLERS` tasks each calling in a loop (`_call_tasks`), and one caller awaiting
//! each reply before the next call (`_call_serial`, the latency-bound case).
//!
//! `cargo bench --bench dispatch`. Criterion's time is per message: the sends and the
//! handling of every one of them.

mod baselines;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use baselines::Actor;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crossbeam_utils::CachePadded;
use croupier::{Pool, Worker, WorkerId};
use futures_util::future::join_all;
use tokio::{
    runtime::Runtime,
    sync::{mpsc, oneshot, Notify},
};

const WORKERS: usize = 8;
/// Calls in flight at once in the `call` scenarios.
const IN_FLIGHT: usize = 64;
/// Caller tasks in the `call_tasks` scenarios.
const CALLERS: u64 = 64;

/// Counts handled messages and wakes the producer when the count reaches its target.
#[derive(Default)]
struct Done {
    handled: CachePadded<AtomicU64>,
    target: AtomicU64,
    reached: Notify,
}

impl Done {
    fn handled(&self) {
        if self.handled.fetch_add(1, Relaxed) + 1 == self.target.load(Relaxed) {
            self.reached.notify_one();
        }
    }

    /// Sets the target `more` messages beyond those handled so far.
    fn expect(&self, more: u64) {
        self.target
            .store(self.handled.load(Relaxed) + more, Relaxed);
    }

    async fn wait(&self) {
        self.reached.notified().await;
    }
}

/// A croupier worker that counts what it handles.
struct Counter(Arc<Done>);

impl Worker for Counter {
    type Msg = u64;
    type Reply = u64;

    async fn handle(&mut self, msg: u64) -> u64 {
        self.0.handled();
        msg
    }
}

/// What the raw workers are sent: a number, and where to answer for a call.
type Envelope = (u64, Option<oneshot::Sender<u64>>);

/// Raw tokio workers: one unbounded mpsc receiver each, the same handling as [`Counter`].
fn raw_workers(done: &Arc<Done>) -> Vec<mpsc::UnboundedSender<Envelope>> {
    (0..WORKERS)
        .map(|_| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
            let done = Arc::clone(done);
            tokio::spawn(async move {
                while let Some((msg, reply)) = rx.recv().await {
                    done.handled();
                    if let Some(reply) = reply {
                        let _ = reply.send(msg);
                    }
                }
            });
            tx
        })
        .collect()
}

/// Raw senders picked round robin by a relaxed cursor.
struct RawRoundRobin {
    cursor: AtomicUsize,
    senders: Vec<mpsc::UnboundedSender<Envelope>>,
}

impl RawRoundRobin {
    fn next(&self) -> &mpsc::UnboundedSender<Envelope> {
        &self.senders[self.cursor.fetch_add(1, Relaxed) % self.senders.len()]
    }
}

/// Runs `task` as a task on the runtime's workers (not on the thread that blocks on it) and
/// waits for its result.
fn on_runtime<T: Send + 'static>(
    rt: &Runtime,
    task: impl Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(async move { tokio::spawn(task).await.expect("the task runs") })
}

/// Times `iters` messages sent by `send` from a task on the runtime, until all are handled.
fn time_sends<S>(rt: &Runtime, done: &Arc<Done>, iters: u64, send: S) -> Duration
where
    S: Fn(u64) + Send + 'static,
{
    let done = Arc::clone(done);
    on_runtime(rt, async move {
        done.expect(iters);
        let start = Instant::now();
        for i in 0..iters {
            send(i);
        }
        done.wait().await;
        start.elapsed()
    })
}

/// Times `iters` calls made by `call`, `IN_FLIGHT` at a time, from a task on the runtime.
fn time_calls<C, F>(rt: &Runtime, iters: u64, call: C) -> Duration
where
    C: Fn(u64) -> F + Send + 'static,
    F: Future<Output = u64> + Send,
{
    on_runtime(rt, async move {
        let start = Instant::now();
        let mut left = iters;
        while left > 0 {
            let batch = left.min(IN_FLIGHT as u64);
            let replies = join_all((0..batch).map(&call)).await;
            assert_eq!(replies.len() as u64, batch);
            left -= batch;
        }
        start.elapsed()
    })
}

/// Times `iters` calls made by `call` from `CALLERS` tasks, each awaiting its calls one by one.
fn time_call_tasks<C, F>(rt: &Runtime, iters: u64, call: C) -> Duration
where
    C: Fn(u64) -> F + Clone + Send + 'static,
    F: Future<Output = u64> + Send,
{
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|t| {
                let call = call.clone();
                // The calls shared out: the first `iters % CALLERS` tasks make one more.
                let mine = iters / CALLERS + u64::from(t < iters % CALLERS);
                tokio::spawn(async move {
                    for i in 0..mine {
                        call(i).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("a caller runs");
        }
        start.elapsed()
    })
}

/// Times `iters` calls made by `call` from one task that awaits each before the next.
fn time_call_serial<C, F>(rt: &Runtime, iters: u64, call: C) -> Duration
where
    C: Fn(u64) -> F + Send + 'static,
    F: Future<Output = u64> + Send,
{
    on_runtime(rt, async move {
        let start = Instant::now();
        for i in 0..iters {
            assert_eq!(call(i).await, i);
        }
        start.elapsed()
    })
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let mut group = baselines::group(c, "dispatch", 2000, 30);
    let id = |name: &str| BenchmarkId::new(name, WORKERS);

    let done = Arc::new(Done::default());
    let pool = rt.block_on(async {
        let d = Arc::clone(&done);
        Arc::new(
            Pool::builder(move |_: WorkerId| Counter(Arc::clone(&d)))
                .size(WORKERS)
                .start()
                .expect("a valid configuration"),
        )
    });
    let raw = Arc::new(RawRoundRobin {
        cursor: AtomicUsize::new(0),
        senders: rt.block_on(async { raw_workers(&done) }),
    });
    let actor = rt.block_on(async { Actor::spawn(raw.senders.clone()) });

    group.bench_function(id("raw_mpsc_send"), |b| {
        b.iter_custom(|iters| {
            let raw = Arc::clone(&raw);
            time_sends(&rt, &done, iters, move |i| {
                raw.next().send((i, None)).expect("the worker runs");
            })
        })
    });
    group.bench_function(id("croupier_pool_send"), |b| {
        b.iter_custom(|iters| {
            let pool = Arc::clone(&pool);
            time_sends(&rt, &done, iters, move |i| {
                pool.send(i).expect("the pool runs");
            })
        })
    });
    group.bench_function(id("actor_hop_send"), |b| {
        b.iter_custom(|iters| {
            let actor = actor.clone();
            let done = Arc::clone(&done);
            // The actor is asked from within the producer, so the producer is async here.
            on_runtime(&rt, async move {
                done.expect(iters);
                let start = Instant::now();
                for i in 0..iters {
                    actor.pick().await.send((i, None)).expect("the worker runs");
                }
                done.wait().await;
                start.elapsed()
            })
        })
    });

    // One call each: a raw channel + oneshot, and the pool; measured in three patterns.
    let raw_call = {
        let raw = Arc::clone(&raw);
        move |i| {
            let (tx, rx) = oneshot::channel();
            raw.next().send((i, Some(tx))).expect("the worker runs");
            async move { rx.await.expect("the worker answers") }
        }
    };
    let pool_call = {
        let pool = Arc::clone(&pool);
        move |i| {
            let pool = Arc::clone(&pool);
            async move { pool.call(i).await.expect("the pool answers") }
        }
    };
    group.bench_function(id("raw_mpsc_call"), |b| {
        b.iter_custom(|iters| time_calls(&rt, iters, raw_call.clone()))
    });
    group.bench_function(id("croupier_pool_call"), |b| {
        b.iter_custom(|iters| time_calls(&rt, iters, pool_call.clone()))
    });
    group.bench_function(id("raw_mpsc_call_tasks"), |b| {
        b.iter_custom(|iters| time_call_tasks(&rt, iters, raw_call.clone()))
    });
    group.bench_function(id("croupier_pool_call_tasks"), |b| {
        b.iter_custom(|iters| time_call_tasks(&rt, iters, pool_call.clone()))
    });
    group.bench_function(id("raw_mpsc_call_serial"), |b| {
        b.iter_custom(|iters| time_call_serial(&rt, iters, raw_call.clone()))
    });
    group.bench_function(id("croupier_pool_call_serial"), |b| {
        b.iter_custom(|iters| time_call_serial(&rt, iters, pool_call.clone()))
    });
    group.finish();
    rt.block_on(pool.shutdown());
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
