//! Remote calls over loopback (gRPC): one call's round trip, and calls per second over one
//! connection with 1, 16 and 64 in flight. Baselines in the same run: a bare tonic unary echo
//! service (the same `croupier.v1` messages, with no pool, balancer or cookie behind them) and
//! a raw tokio TCP echo, so the figures read as ratios to the gRPC stack and to the transport.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use croupier::remote::{
    proto::croupier::v1::{
        croupier_client::CroupierClient,
        croupier_server::{Croupier, CroupierServer},
        HelloReply, HelloRequest, InvokeReply, InvokeRequest, LogRecord, LogsRequest,
        TerminateReply, TerminateRequest,
    },
    Handler, Mode, Node, NodeId,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};
use tonic::{transport::Channel, Request, Response, Status};

const ECHO: Handler<u64, u64> = Handler::new("bench.echo");

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The baseline: a tonic service that answers every invoke with its own arguments.
struct BareEcho;

#[tonic::async_trait]
impl Croupier for BareEcho {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn invoke(&self, req: Request<InvokeRequest>) -> Result<Response<InvokeReply>, Status> {
        Ok(Response::new(InvokeReply {
            result: req.into_inner().args,
        }))
    }
    async fn terminate(
        &self,
        _: Request<TerminateRequest>,
    ) -> Result<Response<TerminateReply>, Status> {
        Err(Status::unimplemented("bench"))
    }
    type LogsStream = futures_util::stream::Empty<Result<LogRecord, Status>>;
    async fn logs(&self, _: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        Err(Status::unimplemented("bench"))
    }
}

async fn bare_echo() -> Channel {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(l, |l| async move {
        let accepted = l.accept().await.map(|(s, _)| {
            s.set_nodelay(true).unwrap();
            s
        });
        Some((accepted, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CroupierServer::new(BareEcho))
            .serve_with_incoming(incoming),
    );
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

async fn bare_call(client: &CroupierClient<Channel>, i: u64) {
    let mut client = client.clone();
    let args = postcard::to_stdvec(&i).unwrap();
    let reply = client
        .invoke(InvokeRequest {
            handler: "bench.echo".into(),
            args,
        })
        .await
        .unwrap();
    assert!(!reply.into_inner().result.is_empty());
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (worker, master, bare) = rt.block_on(async {
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
        (worker, master, CroupierClient::new(bare_echo().await))
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
    g.bench_function("tonic_unary_echo", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    bare_call(&bare, i).await;
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
        g.bench_function(format!("tonic_unary_echo/{in_flight}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let calls = (0..in_flight).map(|i| bare_call(&bare, i));
                        futures_util::future::join_all(calls).await;
                    }
                    start.elapsed()
                })
            });
        });
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
