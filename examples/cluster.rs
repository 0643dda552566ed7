//! A croupier cluster across processes, like Cloud Haskell's SimpleLocalnet: start workers,
//! then a master that finds them in a hosts file, shows their loads, and spreads calls over
//! them by least load. Over gRPC; with `--tls DIR`, mutual TLS.
//!
//! ```sh
//! cargo run --example cluster --features remote -- worker 127.0.0.1 7001
//! cargo run --example cluster --features remote -- worker 127.0.0.1 7002
//! printf '127.0.0.1:7001\n127.0.0.1:7002\n' > hosts.txt
//! cargo run --example cluster --features remote -- master 127.0.0.1 7000 --hosts hosts.txt
//! ```
//!
//! With TLS (needed for any address but loopback): write a development authority and a node
//! certificate, then pass the folder to every process.
//!
//! ```sh
//! cargo run --example cluster --features remote -- certs dev-certs
//! cargo run --example cluster --features remote -- worker 127.0.0.1 7001 --tls dev-certs
//! cargo run --example cluster --features remote -- master 127.0.0.1 7000 --hosts hosts.txt --tls dev-certs
//! ```

use std::{
    collections::BTreeMap,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use croupier::remote::{Handler, HostsFile, Mode, Node, NodeBuilder, RemoteError, Tls};

/// Spins for the given number of microseconds on the worker, then says which worker it was.
const WORK: Handler<u64, String> = Handler::new("cluster.work");

const USAGE: &str = "\
usage: cluster worker HOST PORT [--tls DIR] [--cookie SECRET]
       cluster master HOST PORT --hosts FILE [--calls N] [--terminate] [--tls DIR] [--cookie SECRET]
       cluster certs DIR

  worker     serve a pool of workers on HOST:PORT (port 0 picks a free one)
  master     find the workers listed in FILE (one `host:port [tag,tag]` per line), spread
             N calls (20000) over them by least load, and print the shares
  certs      write a development certificate authority and a node certificate to DIR
             (ca.pem, node.pem, node.key; valid for 127.0.0.1, ::1 and localhost)
  --tls DIR  mutual TLS with the certificates in DIR (needed for any address but loopback)";

/// An error for people: what went wrong, and what to do about it.
struct Failure {
    what: String,
    hint: &'static str,
}

impl<E: std::fmt::Display> From<(E, &'static str)> for Failure {
    fn from((e, hint): (E, &'static str)) -> Self {
        Self {
            what: e.to_string(),
            hint,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let run = match args.first().map(String::as_str) {
        Some("worker") if args.len() >= 3 => worker(&args[1], &args[2], &args[3..]).await,
        Some("master") if args.len() >= 3 => master(&args[1], &args[2], &args[3..]).await,
        Some("certs") if args.len() == 2 => certs(Path::new(&args[1])),
        _ => Err(Failure {
            what: "missing or unknown command".into(),
            hint: USAGE,
        }),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}\n{}", f.what, f.hint);
            ExitCode::FAILURE
        }
    }
}

/// The options every command shares: `--tls DIR` and `--cookie SECRET`; the rest are left.
fn security(mut b: NodeBuilder, opts: &[String]) -> Result<(NodeBuilder, Vec<String>), Failure> {
    let mut rest = Vec::new();
    let mut it = opts.iter();
    while let Some(opt) = it.next() {
        match opt.as_str() {
            "--tls" => {
                let dir = it
                    .next()
                    .ok_or(("--tls needs a folder", "e.g. --tls dev-certs"))?;
                let tls = Tls::from_dir(dir).map_err(|e| {
                    (
                        e,
                        "make one with: cargo run --example cluster --features remote -- certs DIR",
                    )
                })?;
                b = b.tls(tls);
            }
            "--cookie" => {
                let c = it
                    .next()
                    .ok_or(("--cookie needs a secret", "e.g. --cookie s3cret"))?;
                b = b.cookie(c.as_str());
            }
            other => rest.push(other.to_owned()),
        }
    }
    Ok((b, rest))
}

async fn worker(host: &str, port: &str, opts: &[String]) -> Result<(), Failure> {
    let name = format!("worker-{port}-{}", std::process::id());
    let me = name.clone();
    let b = Node::builder(name.as_str())
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
        });
    let (b, rest) = security(b, opts)?;
    if let Some(extra) = rest.first() {
        return Err((format!("unknown option {extra:?}"), USAGE).into());
    }
    let node = b.start().await.map_err(|e| {
        (
            e,
            "listen on 127.0.0.1, or pass --tls DIR (see `cluster certs DIR`) to listen elsewhere",
        )
    })?;
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

async fn master(host: &str, port: &str, opts: &[String]) -> Result<(), Failure> {
    let b = Node::builder("master").mode(Mode::Master);
    let (mut b, rest) = security(b, opts)?;
    let mut hosts = None;
    let mut calls = 20_000_usize;
    let mut terminate = false;
    let mut it = rest.iter();
    while let Some(opt) = it.next() {
        match opt.as_str() {
            "--hosts" => hosts = it.next().cloned(),
            "--calls" => {
                calls = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or(("--calls needs a number", "e.g. --calls 5000"))?;
            }
            "--terminate" => terminate = true,
            other => return Err((format!("unknown option {other:?}"), USAGE).into()),
        }
    }
    let hosts = hosts.ok_or(("the master needs --hosts FILE", USAGE))?;
    let hosts = HostsFile::open(&hosts).map_err(|e| {
        (
            e,
            "the hosts file lists one worker per line: `host:port [tag,tag]`, e.g. `127.0.0.1:7001 gpu`",
        )
    })?;
    let expected = hosts.entries().len();
    if host != "-" {
        b = b.listen(format!("{host}:{port}"));
    }
    let node = b.discovery(hosts).start().await.map_err(|e| {
        (
            e,
            "listen on 127.0.0.1, or pass --tls DIR (see `cluster certs DIR`) to listen elsewhere",
        )
    })?;

    // Wait (at most 10 s) for every listed worker to connect.
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while node.workers().len() < expected {
            node.changed().await;
        }
    })
    .await;
    if found.is_err() {
        eprintln!(
            "only {} of {expected} workers answered within 10 s (are they running, with the same --tls and --cookie?)",
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
        let (counts, f) = t.await.map_err(|e| (e, "a caller task failed"))?;
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

/// Writes a development authority and one node certificate (for every node: the cluster
/// trusts the authority, and every node presents the same kind of certificate).
fn certs(dir: &Path) -> Result<(), Failure> {
    const HINT: &str = "give a folder you can write to, e.g. `cluster certs dev-certs`";
    let fail = |e: rcgen::Error| Failure::from((e, HINT));
    std::fs::create_dir_all(dir).map_err(|e| (e, HINT))?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "croupier development CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut node = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(fail)?;
    node.distinguished_name
        .push(rcgen::DnType::CommonName, "croupier node");
    node.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let node_key = rcgen::KeyPair::generate().map_err(fail)?;
    let node_cert = node.signed_by(&node_key, &issuer).map_err(fail)?;
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("node.pem", node_cert.pem()),
        ("node.key", node_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).map_err(|e| (e, HINT))?;
    }
    println!(
        "wrote {}/ca.pem, node.pem and node.key (for development only: the CA's key is not kept)",
        dir.display()
    );
    Ok(())
}
