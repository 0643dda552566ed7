//! Hand-back ([`PoolBuilder::hand_back_after`]): the messages queued behind a slow one move to
//! free workers, but those addressed to the slow worker itself keep their place.

use std::time::Duration;

use croupier::{Policy, Pool, Worker};
use tokio::{task::JoinHandle, time::Instant};

/// `Slow` takes a second; `Fast` no time. Both answer with the handling worker's slot.
#[derive(Clone, Copy)]
enum Msg {
    Slow,
    Fast,
}

struct Job(usize);

impl Worker for Job {
    type Msg = Msg;
    type Reply = usize;

    async fn handle(&mut self, msg: Msg) -> usize {
        if let Msg::Slow = msg {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.0
    }
}

/// Like [`Job`], but worker 1 fails every `Fast` message at once ([`Worker::failed`]).
struct OneFails(usize);

impl Worker for OneFails {
    type Msg = Msg;
    type Reply = Result<usize, usize>;

    async fn handle(&mut self, msg: Msg) -> Result<usize, usize> {
        match (msg, self.0) {
            (Msg::Slow, _) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(self.0)
            }
            (Msg::Fast, 1) => Err(1),
            (Msg::Fast, slot) => Ok(slot),
        }
    }

    fn failed(reply: &Result<usize, usize>) -> bool {
        reply.is_err()
    }
}

/// A pool of two, round robin, with hand-back after `hand_back` (the default: 1 ms).
fn start(hand_back: Option<Duration>) -> Pool<Job> {
    let builder = Pool::builder(|id| Job(id.slot()))
        .size(2)
        .policy(Policy::RoundRobin);
    match hand_back {
        Some(after) => builder.hand_back_after(after),
        None => builder,
    }
    .start()
    .unwrap()
}

/// Spawns a pool call of `msg`, and lets it queue; answers with when it was answered.
async fn spawn_call(pool: &Pool<Job>, msg: Msg) -> JoinHandle<(usize, Duration)> {
    let pool = pool.clone();
    let start = Instant::now();
    let call = tokio::spawn(async move { (pool.call(msg).await.unwrap(), start.elapsed()) });
    tokio::task::yield_now().await;
    call
}

#[tokio::test(start_paused = true)]
async fn a_slow_workers_queue_moves_to_free_workers() {
    // Round robin deals worker 0 the slow message, then alternates: the two fast calls dealt
    // to worker 0 queue behind the slow one, and move to worker 1 once the slow one has run
    // 10 ms (worker 1 being free then).
    let pool = start(Some(Duration::from_millis(10)));
    let slow = spawn_call(&pool, Msg::Slow).await;
    let mut fast = Vec::new();
    for _ in 0..4 {
        fast.push(spawn_call(&pool, Msg::Fast).await);
    }
    for call in fast {
        let (slot, took) = call.await.unwrap();
        assert_eq!(slot, 1, "every fast call handled by the free worker");
        assert!(took <= Duration::from_millis(10), "{took:?}");
    }
    assert_eq!(slow.await.unwrap(), (0, Duration::from_secs(1)));
    assert_eq!(pool.stats().supervisor.dropped, 0);
    pool.shutdown().await;

    // A message addressed to worker 0 keeps its place, and so do the pool's behind it.
    let pool = start(Some(Duration::from_millis(10)));
    let slow = spawn_call(&pool, Msg::Slow).await;
    let w0 = pool.supervisor().children()[0].clone();
    let direct = tokio::spawn(async move { w0.call(Msg::Fast).await.unwrap() });
    tokio::task::yield_now().await;
    pool.pick().unwrap(); // round robin: skip worker 1's turn
    let behind = spawn_call(&pool, Msg::Fast).await;
    assert_eq!(direct.await.unwrap(), 0);
    assert_eq!(behind.await.unwrap(), (0, Duration::from_secs(1)));
    assert_eq!(slow.await.unwrap().0, 0);
    pool.shutdown().await;

    // Without hand-back, the fast calls dealt to worker 0 wait out the slow one.
    let pool = start(Some(Duration::MAX));
    let slow = spawn_call(&pool, Msg::Slow).await;
    let fast: Vec<_> = {
        let mut fast = Vec::new();
        for _ in 0..4 {
            fast.push(spawn_call(&pool, Msg::Fast).await);
        }
        fast
    };
    let waited = {
        let mut waited = 0;
        for call in fast {
            let (slot, took) = call.await.unwrap();
            if slot == 0 {
                assert_eq!(took, Duration::from_secs(1));
                waited += 1;
            }
        }
        waited
    };
    assert_eq!(waited, 2);
    slow.await.unwrap();
    pool.shutdown().await;
}

/// A worker that fails fast looks free (nothing queued), but its failure penalty keeps
/// hand-back from sending it the slow worker's queue.
#[tokio::test(start_paused = true)]
async fn hand_back_skips_a_failing_worker() {
    let pool = Pool::builder(|id| OneFails(id.slot()))
        .size(2)
        .policy(Policy::RoundRobin)
        .hand_back_after(Duration::from_millis(10))
        .start()
        .unwrap();
    let call = |msg| {
        let pool = pool.clone();
        let start = Instant::now();
        tokio::spawn(async move { (pool.call(msg).await.unwrap(), start.elapsed()) })
    };
    let slow = call(Msg::Slow);
    tokio::task::yield_now().await;
    // Worker 1 fails at once: a penalty, nothing queued.
    assert_eq!(call(Msg::Fast).await.unwrap().0, Err(1));
    // Dealt to worker 0, behind the slow message: it stays there.
    let queued = call(Msg::Fast);
    assert_eq!(queued.await.unwrap(), (Ok(0), Duration::from_secs(1)));
    assert_eq!(slow.await.unwrap().0, Ok(0));
    pool.shutdown().await;
}

/// Two [`OneFails`] workers, round robin, hand-back after 10 ms, and ejection at the first
/// failure (of at most one of the two).
fn ejecting_pool() -> Pool<OneFails> {
    Pool::builder(|id| OneFails(id.slot()))
        .size(2)
        .policy(Policy::RoundRobin)
        .hand_back_after(Duration::from_millis(10))
        .outlier_ejection(
            croupier::Ejection::default()
                .consecutive_failures(1)
                .max_share(0.5),
        )
        .start()
        .unwrap()
}

/// A message handed back is reported, for outlier ejection, against the worker that handled
/// it, not the one it was dealt to.
#[tokio::test(start_paused = true)]
async fn a_handed_back_failure_counts_against_the_worker_that_failed() {
    let pool = ejecting_pool();
    let slow = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.call(Msg::Slow).await.unwrap() })
    };
    tokio::task::yield_now().await;
    pool.pick().unwrap(); // round robin: skip worker 1's turn
                          // Dealt to worker 0, handed to worker 1, which fails it.
    assert_eq!(pool.call(Msg::Fast).await.unwrap(), Err(1));
    assert_eq!(pool.balancer().stats().ejected, 1);
    let picks: Vec<usize> = (0..6).map(|_| pool.pick().unwrap().id().slot()).collect();
    assert_eq!(picks, [0; 6], "worker 1 is out, worker 0 in");
    assert_eq!(slow.await.unwrap(), Ok(0));
    pool.shutdown().await;
}

/// An ejected worker is no hand-back target either, once its failure penalty has decayed.
#[tokio::test(start_paused = true)]
async fn hand_back_skips_an_ejected_worker() {
    let pool = ejecting_pool();
    pool.pick().unwrap(); // round robin: worker 1 next
    assert_eq!(pool.call(Msg::Fast).await.unwrap(), Err(1));
    assert_eq!(pool.balancer().stats().ejected, 1);
    // Its penalty gone (the ejection lasts 30 s), worker 1 has nothing queued or in hand.
    tokio::time::advance(Duration::from_secs(2)).await;
    let start = Instant::now();
    let slow = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.call(Msg::Slow).await.unwrap() })
    };
    tokio::task::yield_now().await;
    // Round robin passes over the ejected worker: this queues behind the slow message, and
    // stays there.
    assert_eq!(pool.call(Msg::Fast).await.unwrap(), Ok(0));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(slow.await.unwrap(), Ok(0));
    pool.shutdown().await;
}
