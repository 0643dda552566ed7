//! A croupier cluster across processes, like Cloud Haskell's SimpleLocalnet: start workers,
//! then a master that finds them in a hosts file, shows their loads, and spreads calls over
//! them by least load.
//!
//! ```sh
//! cargo run --example cluster --features remote -- worker 127.0.0.1 7001
//! cargo run --example cluster --features remote -- worker 127.0.0.1 7002
//! printf '127.0.0.1:7001\n127.0.0.1:7002\n' > hosts.txt
//! cargo run --example cluster --features remote -- master 127.0.0.1 7000 --hosts hosts.txt
//! ```
//!
//! Master options: `--calls N` (default 20000), `--terminate` (end the workers afterwards).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use croupier::remote::{Handler, HostsFile, Mode, Node, RemoteError};

/// Spins for the given number of microseconds on the worker, then says which worker it was.
const WORK: Handler<u64, String> = Handler::new("cluster.work");

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") if args.len() >= 3 => worker(&args[1], &args[2]).await,
        Some("master") if args.len() >= 3 => master(&args[1], &args[2], &args[3..]).await,
        _ => {
            eprintln!(
                "usage: cluster worker HOST PORT\n       cluster master HOST PORT --hosts FILE [--calls N] [--terminate]"
            );
            std::process::exit(2);
        }
    }
}

async fn worker(host: &str, port: &str) -> Result<(), Error> {
    let name = format!("worker-{port}-{}", std::process::id());
    let me = name.clone();
    let node = Node::builder(name.as_str())
        .mode(Mode::Worker)
        .listen(format!("{host}:{port}"))
        .handle(WORK, move |micros| {
            let me = me.clone();
            async move {
                let end = Instant::now() + Duration::from_micros(micros);
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
                me
            }
        })
        .start()
        .await?;
    // The line tests and scripts read to find the worker.
    println!(
        "{name} listening on {}",
        node.local_addr().expect("a worker listens")
    );
    node.terminated().await;
    println!("{name} terminated by its master");
    node.shutdown().await;
    Ok(())
}

async fn master(host: &str, port: &str, opts: &[String]) -> Result<(), Error> {
    let mut hosts = None;
    let mut calls = 20_000_usize;
    let mut terminate = false;
    let mut it = opts.iter();
    while let Some(opt) = it.next() {
        match opt.as_str() {
            "--hosts" => hosts = it.next().cloned(),
            "--calls" => calls = it.next().ok_or("--calls needs a number")?.parse()?,
            "--terminate" => terminate = true,
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    let hosts = HostsFile::open(hosts.ok_or("the master needs --hosts FILE")?)?;
    let expected = hosts.entries().len();
    let node = Node::builder("master")
        .mode(Mode::Master)
        .listen(format!("{host}:{port}"))
        .discovery(hosts)
        .start()
        .await?;

    // Wait (at most 10 s) for every listed worker to connect.
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while node.workers().len() < expected {
            node.changed().await;
        }
    })
    .await;
    if found.is_err() {
        eprintln!(
            "only {} of {expected} workers answered within 10 s",
            node.workers().len()
        );
    }
    println!("workers found:");
    for w in node.workers() {
        println!(
            "  {:<28} {:<21} pool {:>2}  load {:.3}  tags {:?}",
            w.id.to_string(),
            w.addr.to_string(),
            w.pool_size,
            w.load,
            w.tags
        );
    }

    // Spread the calls by least load from 64 concurrent callers; jobs of 20 or 200 µs.
    let start = Instant::now();
    let callers = 64;
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
                let mut failed = 0_usize;
                for i in (c..calls).step_by(callers) {
                    let cost = if i % 10 == 0 { 200 } else { 20 };
                    match node.call_least_loaded(WORK, cost).await {
                        Ok(who) => *per_node.entry(who).or_default() += 1,
                        Err(RemoteError::NoNodes) => return (per_node, failed + 1),
                        Err(_) => failed += 1,
                    }
                }
                (per_node, failed)
            })
        })
        .collect();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for t in tasks {
        let (counts, f) = t.await?;
        failed += f;
        for (k, v) in counts {
            *per_node.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed();
    println!("\n{:<28} {:>8} {:>7}", "node", "calls", "share");
    let total: usize = per_node.values().sum();
    for (node, n) in &per_node {
        println!(
            "{node:<28} {n:>8} {:>6.1}%",
            100.0 * *n as f64 / total.max(1) as f64
        );
    }
    println!(
        "\n{total} calls in {elapsed:.2?} ({:.0} calls/s), {failed} failed",
        total as f64 / elapsed.as_secs_f64()
    );
    if terminate {
        println!("terminated {} workers", node.terminate_all_workers());
    }
    node.shutdown().await;
    Ok(())
}
