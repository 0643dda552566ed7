//! Remote calls over loopback: one call's round trip, and calls per second over one
//! connection with many in flight. Baseline in the same run: a raw tokio TCP echo of the same
//! size, one request at a time, so the figures read as a ratio to the transport.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use croupier::remote::{Handler, Mode, Node, NodeId};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

const ECHO: Handler<u64, u64> = Handler::new("bench.echo");

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (worker, master) = rt.block_on(async {
        let worker = Node::builder("bench-worker")
            .mode(Mode::Worker)
            .listen("127.0.0.1:0")
            .pool_size(2)
            .handle(ECHO, |n| async move { n })
            .start()
            .await
            .unwrap();
        let master = Node::builder("bench-master").start().await.unwrap();
        master.connect(worker.local_addr().unwrap()).await.unwrap();
        (worker, master)
    });
    let node = NodeId::from("bench-worker");

    // The transport alone: a 16-byte request echoed by a raw tokio task.
    let echo_addr = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0_u8; 16];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        addr
    });
    let mut raw = rt.block_on(async {
        let s = TcpStream::connect(echo_addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        s
    });

    let mut g = c.benchmark_group("remote/round_trip");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(30);
    g.bench_function("raw_tcp_echo", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut buf = [7_u8; 16];
                let start = Instant::now();
                for _ in 0..iters {
                    raw.write_all(&buf).await.unwrap();
                    raw.read_exact(&mut buf).await.unwrap();
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("croupier_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    master.call(&node, ECHO, i).await.unwrap();
                }
                start.elapsed()
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("remote/throughput");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
    for in_flight in [1_u64, 16, 64] {
        g.throughput(Throughput::Elements(in_flight));
        g.bench_function(format!("calls_in_flight/{in_flight}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let calls = (0..in_flight).map(|i| master.call(&node, ECHO, i));
                        for r in futures_util::future::join_all(calls).await {
                            r.unwrap();
                        }
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
    rt.block_on(async {
        master.shutdown().await;
        worker.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
