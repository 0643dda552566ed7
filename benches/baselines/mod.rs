//! What the croupier benches measure against, in the same run: the floor, a mutex, a
//! ballermann-style actor and tower's power of two choices, all over the same member type.
//!
//! Each bench uses only some of these.
#![allow(dead_code)]

use std::{
    convert::Infallible,
    future::{ready, Future, Ready},
    hint::black_box,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use criterion::{measurement::WallTime, BenchmarkGroup, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use croupier::{Balancer, Member, Policy};
use futures_util::task::noop_waker_ref;
use tokio::sync::{mpsc, oneshot};
use tower::{
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, PendingRequests},
    service_fn, Service,
};

/// A group with the settings every suite shares: 300 ms of warm-up, `measure_ms` of
/// measurement over `samples` samples, one element per iteration (so that a whole suite runs in
/// a minute or two).
pub fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    measure_ms: u64,
    samples: usize,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_millis(measure_ms))
        .sample_size(samples);
    group
}

/// The pool sizes every `pick` scenario runs at.
pub const SIZES: [usize; 3] = [8, 64, 1024];

/// A handle like a worker's: an `Arc` whose clone writes a shared reference count, with the
/// liveness flag and run-queue length behind it.
#[derive(Clone, Debug)]
pub struct Handle(Arc<Slot>);

/// What a [`Handle`] points at.
#[derive(Debug)]
pub struct Slot {
    alive: AtomicBool,
    load: AtomicUsize,
}

impl Handle {
    /// A live handle with run-queue length `load`.
    pub fn new(load: usize) -> Self {
        Self(Arc::new(Slot {
            alive: AtomicBool::new(true),
            load: AtomicUsize::new(load),
        }))
    }
}

impl Member for Handle {
    #[inline]
    fn is_alive(&self) -> bool {
        self.0.alive.load(Relaxed)
    }

    #[inline]
    fn load(&self) -> usize {
        self.0.load.load(Relaxed)
    }
}

/// `n` live handles with loads from 1 to 7: a busy pool, where least loaded finds no idle
/// member to stop at and reads every load.
pub fn handles(n: usize) -> Vec<Handle> {
    (0..n).map(|i| Handle::new(1 + i % 7)).collect()
}

/// A croupier balancer over `n` handles.
pub fn balancer(policy: Policy, n: usize) -> Balancer<Handle> {
    Balancer::builder()
        .policy(policy)
        .seed(1)
        .source(handles(n))
        .build()
        .expect("a valid configuration")
}

/// The floor: one relaxed `fetch_add` on a cache-padded cursor, indexing a `Vec`.
pub struct Floor {
    cursor: CachePadded<AtomicUsize>,
    members: Vec<Handle>,
}

impl Floor {
    /// A floor over `n` handles.
    pub fn new(n: usize) -> Self {
        Self {
            cursor: CachePadded::new(AtomicUsize::new(0)),
            members: handles(n),
        }
    }

    /// The cursor alone: which member's turn it is.
    #[inline]
    pub fn index(&self) -> usize {
        self.cursor.fetch_add(1, Relaxed) % self.members.len()
    }

    /// The next member, cloned (what a caller keeps).
    #[inline]
    pub fn pick(&self) -> Handle {
        self.members[self.index()].clone()
    }
}

/// A cursor behind a `parking_lot::Mutex`.
pub struct MutexCursor {
    cursor: parking_lot::Mutex<usize>,
    members: Vec<Handle>,
}

impl MutexCursor {
    /// A mutex cursor over `n` handles.
    pub fn new(n: usize) -> Self {
        Self {
            cursor: parking_lot::Mutex::new(0),
            members: handles(n),
        }
    }

    /// The next member, cloned.
    #[inline]
    pub fn pick(&self) -> Handle {
        let i = {
            let mut c = self.cursor.lock();
            let i = *c;
            *c = if i + 1 == self.members.len() {
                0
            } else {
                i + 1
            };
            i
        };
        self.members[i].clone()
    }
}

/// ballermann's and revolver's design: one task owns the members and answers "next handle"
/// requests in turn, over mpsc with a oneshot reply.
#[derive(Clone)]
pub struct Actor<T> {
    requests: mpsc::Sender<oneshot::Sender<T>>,
}

impl<T: Clone + Send + 'static> Actor<T> {
    /// Spawns the owning task on the current runtime.
    pub fn spawn(members: Vec<T>) -> Self {
        let (requests, mut rx) = mpsc::channel::<oneshot::Sender<T>>(1024);
        tokio::spawn(async move {
            let mut next = 0;
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(members[next].clone());
                next = (next + 1) % members.len();
            }
        });
        Self { requests }
    }

    /// Asks the owning task for the next member.
    pub async fn pick(&self) -> T {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.expect("the actor runs");
        rx.await.expect("the actor answers")
    }
}

type Trivial = tower::util::ServiceFn<fn(()) -> Ready<Result<(), Infallible>>>;

/// tower's `p2c::Balance` over services that count their pending requests: a "pick" is the
/// `poll_ready` that chooses a service and the `call` that goes to it.
pub struct TowerP2c {
    balance: Balance<ServiceList<Vec<PendingRequests<Trivial>>>, ()>,
}

impl TowerP2c {
    /// A tower balancer over `n` trivial services.
    pub fn new(n: usize) -> Self {
        let services = (0..n)
            .map(|_| {
                let svc: Trivial = service_fn(|()| ready(Ok(())));
                PendingRequests::new(svc, CompleteOnResponse::default())
            })
            .collect::<Vec<_>>();
        Self {
            balance: Balance::new(ServiceList::new(services)),
        }
    }

    /// Chooses a service and sends it one request, which completes at once.
    #[inline]
    pub fn pick(&mut self) {
        let mut cx = Context::from_waker(noop_waker_ref());
        match self.balance.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            _ => panic!("trivial services are always ready"),
        }
        let response = pin!(self.balance.call(()));
        let polled = response.poll(&mut cx);
        black_box(polled.is_ready());
    }
}

/// A handle with a weight.
#[derive(Clone, Debug)]
pub struct Weighted(pub Handle, pub u32);

impl Member for Weighted {
    fn is_alive(&self) -> bool {
        self.0.is_alive()
    }

    fn load(&self) -> usize {
        self.0.load()
    }

    fn weight(&self) -> u32 {
        self.1
    }
}
