//! Three HTTP backends on loopback, one of them slow, and one hyper client balanced in front
//! of them: by `croupier::balance::Balance` under each policy, and by tower's p2c behind a
//! `Buffer` (how tower users share it). Every balancer gets the same request schedule; the
//! table gives latency percentiles and throughput.
//!
//! ```text
//! cargo run --release --example http_balance --features tower
//! ```
//!
//! Each backend serves at most 4 requests at a time (like a small thread pool); the others
//! wait in its queue. The two fast ones take 1 ms per request, the slow one 8 ms: a balancer
//! that sends it a third of the traffic builds a queue there, one that sees the requests in
//! flight sends it less.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use croupier::{balance::Balance, Policy};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::{Service, ServiceExt};

/// Concurrent callers, and requests each makes, per balancer.
const CALLERS: usize = 32;
const PER_CALLER: usize = 150;

/// A backend on 127.0.0.1 that handles `slots` requests at a time, each taking `work`.
async fn backend(work: Duration, slots: usize) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(slots));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let slots = Arc::clone(&slots);
                    async move {
                        let _slot = slots.acquire().await.expect("never closed");
                        tokio::time::sleep(work).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                // A connection that ends badly ends only itself.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// One backend seen through a shared hyper client: a `tower::Service` that is `Clone`.
#[derive(Clone)]
struct Backend {
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: hyper::Uri,
}

impl Service<()> for Backend {
    type Response = ();
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let (client, uri) = (self.client.clone(), self.uri.clone());
        Box::pin(async move {
            let resp = client.get(uri).await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

/// What one balancer did with the schedule.
struct Run {
    name: &'static str,
    latencies: Vec<Duration>,
    elapsed: Duration,
    failed: usize,
}

/// Runs the schedule through `svc`: `CALLERS` tasks, each making `PER_CALLER` requests in a row.
async fn run<S>(name: &'static str, svc: S) -> Run
where
    S: Service<(), Response = ()> + Clone + Send + 'static,
    S::Error: std::fmt::Display,
    S::Future: Send,
{
    let start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(PER_CALLER);
                let mut failed = 0;
                for _ in 0..PER_CALLER {
                    let t = Instant::now();
                    match svc.clone().oneshot(()).await {
                        Ok(()) => latencies.push(t.elapsed()),
                        Err(_) => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(CALLERS * PER_CALLER);
    let mut failed = 0;
    for caller in callers {
        let (l, f) = caller.await.expect("a caller panicked");
        latencies.extend(l);
        failed += f;
    }
    latencies.sort_unstable();
    Run {
        name,
        latencies,
        elapsed: start.elapsed(),
        failed,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

const USAGE: &str = "usage: cargo run --release --example http_balance --features tower\n\
    Runs three HTTP backends on 127.0.0.1 (one slow) and the same requests through each \
    balancer; takes no arguments.";

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).is_some() {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Box::from)
        .and_then(|rt| rt.block_on(compare()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "http_balance: {e}\n(loopback sockets are all it needs; is 127.0.0.1 usable here?)"
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn compare() -> Result<(), Box<dyn std::error::Error>> {
    let works = [
        Duration::from_millis(1),
        Duration::from_millis(1),
        Duration::from_millis(8),
    ];
    let mut backends = Vec::new();
    for work in works {
        backends.push(backend(work, 4).await?);
    }
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let services: Vec<Backend> = backends
        .iter()
        .map(|addr| Backend {
            client: client.clone(),
            uri: format!("http://{addr}/").parse().expect("a valid uri"),
        })
        .collect();
    println!(
        "3 backends on loopback (1 ms, 1 ms, 8 ms per request; 4 at a time each), \
         {CALLERS} callers x {PER_CALLER} requests per balancer"
    );

    let mut runs = Vec::new();
    for (name, policy) in [
        ("croupier RoundRobin", Policy::RoundRobin),
        ("croupier LeastLoaded", Policy::LeastLoaded),
        ("croupier PowerOfTwo", Policy::PowerOfTwo),
    ] {
        let balance = Balance::builder().policy(policy).build(services.clone())?;
        eprintln!("running {name} ...");
        runs.push(run(name, balance).await);
    }
    eprintln!("running tower p2c + Buffer ...");
    let list: Vec<_> = services
        .iter()
        .cloned()
        .map(|s| tower::load::PendingRequests::new(s, tower::load::CompleteOnResponse::default()))
        .collect();
    let p2c = tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(list));
    let buffered = tower::buffer::Buffer::new(p2c, 1024);
    runs.push(run("tower p2c + Buffer", buffered).await);

    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>7}",
        "balancer", "p50 ms", "p99 ms", "req/s", "failed"
    );
    for r in &runs {
        println!(
            "{:<22} {:>9} {:>9} {:>10.0} {:>7}",
            r.name,
            ms(percentile(&r.latencies, 0.50)),
            ms(percentile(&r.latencies, 0.99)),
            r.latencies.len() as f64 / r.elapsed.as_secs_f64(),
            r.failed
        );
    }
    let failed: usize = runs.iter().map(|r| r.failed).sum();
    if failed > 0 {
        return Err(format!("{failed} request(s) failed").into());
    }
    Ok(())
}
