//! Compile-time checks that the public handles, and the futures of the async calls users
//! spawn, are `Send` (and `Sync` where they are shared), as tokio's `async_send_sync.rs`
//! does. A regression here is a compile error, not a failed run.

use std::{future::Future, time::Duration};

use croupier::{
    Balancer, BalancerBuilder, BalancerStats, CallError, ConfigError, DrainError, Member,
    PickError, Policy, Pool, PoolBuilder, PoolCallError, PoolSendError, PoolStats, ResizeError,
    SendError, Supervisor, SupervisorStats, Wait, Worker, WorkerId, WorkerRef,
};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>(_: &T) {}
fn sync_type<T: Send + Sync>() {}
fn send_future<F: Future + Send>(f: F) -> F {
    f
}

/// A message type that is `Send` but not `Sync`: handles must not need more than that.
struct NotSync(std::cell::Cell<u32>);

struct Echo;
impl Worker for Echo {
    type Msg = NotSync;
    type Reply = u32;
    async fn handle(&mut self, msg: NotSync) -> u32 {
        msg.0.get()
    }
}

#[derive(Clone)]
struct M;
impl Member for M {
    fn is_alive(&self) -> bool {
        true
    }
}

#[test]
fn public_types_are_send_and_sync() {
    sync_type::<Balancer<M>>();
    sync_type::<BalancerBuilder<M>>();
    sync_type::<BalancerStats>();
    sync_type::<Pool<Echo>>();
    sync_type::<Supervisor<Echo>>();
    sync_type::<WorkerRef<Echo>>();
    sync_type::<PoolStats>();
    sync_type::<SupervisorStats>();
    sync_type::<WorkerId>();
    sync_type::<Policy>();
    sync_type::<PickError>();
    sync_type::<ConfigError>();
    sync_type::<DrainError>();
    sync_type::<ResizeError>();
    sync_type::<Wait<M>>();
    // Errors that carry a message are as Send/Sync as the message.
    sync_type::<SendError<u32>>();
    sync_type::<CallError<u32>>();
    sync_type::<PoolSendError<u32>>();
    sync_type::<PoolCallError<u32>>();
}

#[allow(dead_code)]
fn builders_are_send(pool: PoolBuilder<Echo>) {
    send(&pool);
}

#[tokio::test]
async fn futures_of_the_async_calls_are_send() {
    let pool = Pool::builder(|_| Echo).size(1).start().unwrap();
    let worker = pool.supervisor().children().remove(0);
    send_sync(&pool);
    send_sync(&worker);

    let call = send_future(pool.call(NotSync(std::cell::Cell::new(3))));
    assert_eq!(call.await.unwrap(), 3);
    let call = send_future(worker.call(NotSync(std::cell::Cell::new(4))));
    assert_eq!(call.await.unwrap(), 4);
    let drain = send_future(pool.apply_within(Wait::none(), || async { 5 }));
    assert_eq!(drain.await.unwrap(), 5);
    let picked = send_future(pool.balancer().pick_wait(Duration::from_secs(1)));
    assert!(picked.await.is_ok());
    let replies = send_future(pool.map(|_| NotSync(std::cell::Cell::new(6))));
    assert_eq!(replies.await[0].1.as_ref().ok(), Some(&6));
    send_future(pool.resize(2)).await.unwrap();
    send_future(pool.supervisor().resize(1)).await.unwrap();
    let shutdown = send_future(pool.shutdown());
    shutdown.await;

    let b = Balancer::builder().source(vec![M]).build().unwrap();
    let drain = send_future(b.apply_within(Wait::idle(Duration::from_secs(1)), || async {}));
    drain.await.unwrap();
    assert!(send_future(b.pick_wait(Duration::from_secs(1)))
        .await
        .is_ok());

    // `broadcast` needs a `Clone` message; its future is `Send` with one that is not `Sync`.
    #[derive(Clone)]
    struct CloneNotSync(std::cell::Cell<u32>);
    struct Echo2;
    impl Worker for Echo2 {
        type Msg = CloneNotSync;
        type Reply = u32;
        async fn handle(&mut self, msg: CloneNotSync) -> u32 {
            msg.0.get()
        }
    }
    let pool = Pool::builder(|_| Echo2).size(2).start().unwrap();
    let replies = send_future(pool.broadcast(CloneNotSync(std::cell::Cell::new(7))));
    let replies: Vec<u32> = replies.await.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(replies, [7, 7]);
    pool.shutdown().await;
}
