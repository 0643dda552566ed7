//! Real worker processes (the `cluster` example binary) and a master in this process: one
//! worker is killed mid-load; calls fail over and nothing hangs.
#![cfg(feature = "remote")]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use croupier::remote::{Handler, Mode, Node, RemoteError};
use tokio::sync::Notify;

/// The handler the example's workers register.
const WORK: Handler<u64, String> = Handler::new("cluster.work");

/// The example binary, built by `cargo test --features remote` beside the test binaries.
fn cluster_binary() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir
        .join("examples")
        .join(format!("cluster{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the tests with --features remote so cargo builds the example",
        bin.display()
    );
    bin
}

/// A worker process on a free loopback port; returns it with the address it printed.
fn spawn_worker() -> (Child, SocketAddr) {
    let mut child = Command::new(cluster_binary())
        .args(["worker", "127.0.0.1", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from the worker: {line:?}"));
    (child, addr)
}

/// Kills the worker processes however the test ends.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_process_mid_load_fails_over() {
    let (a, a_addr) = spawn_worker();
    let (b, b_addr) = spawn_worker();
    let mut reap = Reap(vec![a, b]);

    let master = Node::builder("master")
        .mode(Mode::Master)
        .report_interval(Duration::from_millis(20), Duration::from_millis(200))
        .call_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let a_info = master.connect(a_addr).await.unwrap();
    let b_info = master.connect(b_addr).await.unwrap();
    assert_eq!(master.workers().len(), 2);

    // Load from 8 callers; each call spins 200 µs on a worker. Answers from a and from b are
    // counted as they come, with a notification for each.
    let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let answer = Arc::new(Notify::new());
    // Set once worker a's process is dead: calls begun after it are told apart.
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let master = master.clone();
            let (answered, answer) = (Arc::clone(&answered), Arc::clone(&answer));
            let killed = Arc::clone(&killed);
            let a_id = a_info.id.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..300 {
                    let after_kill = killed.load(Relaxed);
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        master.call_least_loaded(WORK, 200),
                    )
                    .await
                    .expect("a call hung");
                    if let Ok(who) = &r {
                        answered[usize::from(who.as_str() != a_id.as_str())].fetch_add(1, Relaxed);
                        answer.notify_one();
                    }
                    outcomes.push((after_kill, r));
                }
                outcomes
            })
        })
        .collect();

    // Once both workers have answered some calls, kill worker a.
    tokio::time::timeout(Duration::from_secs(10), async {
        while answered.iter().any(|n| n.load(Relaxed) == 0) {
            answer.notified().await;
        }
    })
    .await
    .expect("both workers answered");
    reap.0[0].kill().unwrap();
    reap.0[0].wait().unwrap();
    killed.store(true, Relaxed);

    // Calls begun after the kill: none is answered by the dead node, and b answers them.
    let (mut after_ok_b, mut after_ok_a, mut ok_before) = (0, 0, 0);
    for c in callers {
        for (after_kill, r) in c.await.unwrap() {
            match r {
                Ok(who) if !after_kill => {
                    assert!(who == a_info.id.as_str() || who == b_info.id.as_str());
                    ok_before += 1;
                }
                Ok(who) if who == b_info.id.as_str() => after_ok_b += 1,
                Ok(who) => {
                    assert_eq!(who, a_info.id.as_str());
                    after_ok_a += 1;
                }
                Err(RemoteError::NodeDown(id)) => {
                    assert_eq!(id, a_info.id, "only the killed node is down");
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
    assert!(ok_before > 0, "no call was answered before the kill");
    assert_eq!(
        after_ok_a, 0,
        "a call begun after the kill was answered by the dead node"
    );
    assert!(
        after_ok_b > 0,
        "no call begun after the kill was answered: the load did not fail over"
    );
    // Once the master has seen the death, it deals only to b.
    tokio::time::timeout(Duration::from_secs(10), async {
        while master.workers().len() != 1 {
            master.changed().await;
        }
    })
    .await
    .expect("the killed worker is marked down");
    for _ in 0..10 {
        let who = master.call_least_loaded(WORK, 1).await.unwrap();
        assert_eq!(who, b_info.id.as_str());
    }
    master.shutdown().await;
}
