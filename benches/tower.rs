//! A request through `croupier::balance::Balance` over always-ready services, against tower's
//! `p2c::Balance` over the same services, bare (`&mut`, one task) and behind a `Buffer` (how a
//! tower balancer is shared), with 1 and 2 concurrent tasks. All in one run.

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion};
use croupier::{
    balance::{Balance, Load},
    Policy,
};
use tower::{
    balance::p2c,
    buffer::Buffer,
    discover::ServiceList,
    load::{CompleteOnResponse, PendingRequests},
    service_fn,
    util::BoxCloneSyncService,
    Service, ServiceExt,
};

type Svc = BoxCloneSyncService<u64, u64, Infallible>;

fn members(n: u64) -> Vec<Svc> {
    (0..n)
        .map(|i| BoxCloneSyncService::new(service_fn(move |r: u64| async move { Ok(r ^ i) })))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `iters` requests split over `tasks` tasks, each with its own handle from `make`.
fn run<S>(rt: &tokio::runtime::Runtime, iters: u64, tasks: u64, make: impl Fn() -> S) -> Duration
where
    S: Service<u64, Response = u64> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let mut svc = make();
                tokio::spawn(async move {
                    for i in 0..iters / tasks {
                        let r = svc.ready().await.unwrap().call(i).await.unwrap();
                        std::hint::black_box(r);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("tower/request");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(300));
    g.sample_size(20);
    for tasks in [1_u64, 2] {
        // Power of two over requests in flight, as tower's p2c with `PendingRequests` (and
        // `Balance`'s default before issue #24): the same work on both sides.
        let balance = Balance::builder()
            .policy(Policy::PowerOfTwo)
            .load(Load::InFlight)
            .build(members(8))
            .unwrap();
        g.bench_function(format!("croupier_balance/{tasks}"), |b| {
            b.iter_custom(|iters| run(&rt, iters, tasks, || balance.clone()));
        });
        let buffered = rt.block_on(async {
            let list = ServiceList::new(
                members(8)
                    .into_iter()
                    .map(|s| PendingRequests::new(s, CompleteOnResponse::default())),
            );
            Buffer::new(p2c::Balance::new(list), 1024)
        });
        g.bench_function(format!("tower_p2c_buffer/{tasks}"), |b| {
            b.iter_custom(|iters| run(&rt, iters, tasks, || buffered.clone()));
        });
        if tasks == 1 {
            g.bench_function("tower_p2c_bare/1", |b| {
                b.iter_custom(|iters| {
                    run(&rt, iters, 1, || {
                        let list = ServiceList::new(
                            members(8)
                                .into_iter()
                                .map(|s| PendingRequests::new(s, CompleteOnResponse::default())),
                        );
                        p2c::Balance::new(list)
                    })
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
