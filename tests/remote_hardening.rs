//! The remote layer against what went wrong under attack and review (issue #25): bounded
//! memory for what peers say, absurd reports, racing connects, dropped maintenance, and
//! shutdown with watchers. Loopback only; every wait bounded.
#![cfg(feature = "remote")]

mod common_remote;

use std::{net::SocketAddr, time::Duration};

use common_remote::{master, start, within, worker, ECHO};
use croupier::remote::proto::croupier::v1::{croupier_client::CroupierClient, HelloRequest};
use tonic::transport::{Channel, Endpoint};

async fn channel(addr: SocketAddr) -> Channel {
    within(
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap()
}

/// A raw hello, as a master sends it, under `name`.
async fn hello(ch: &Channel, name: String) -> Result<(), tonic::Status> {
    CroupierClient::new(ch.clone())
        .max_encoding_message_size(8 << 20)
        .hello(HelloRequest {
            name,
            mode: 1,
            version: 3,
        })
        .await
        .map(|_| ())
}

/// Hellos with huge names are refused, and however many distinct names say hello, the
/// worker remembers a bounded number of them (it kept every one, 1 MiB each, for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_names_cannot_grow_memory() {
    let w = start(worker("w")).await;
    let ch = channel(w.local_addr().unwrap()).await;
    for i in 0..48 {
        let name = format!("{i:02}{}", "x".repeat(1 << 20));
        let status = within(hello(&ch, name)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    assert!(w.masters().is_empty(), "no long name is kept");
    for i in 0..1_000 {
        within(hello(&ch, format!("master-{i:04}"))).await.unwrap();
    }
    let kept = w.masters();
    assert!(
        !kept.is_empty() && kept.len() <= croupier::remote::MAX_MASTERS_KEPT,
        "{} names kept",
        kept.len()
    );
    assert!(
        kept.iter().any(|n| n.as_str() == "master-0999"),
        "the latest master is among those kept"
    );
    // A real master still connects and calls.
    let m = start(master()).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    assert_eq!(within(m.call_least_loaded(ECHO, 7)).await, Ok(7));
    m.shutdown().await;
    w.shutdown().await;
}

/// A node name over the limit is refused at start, with the setting named.
#[tokio::test]
async fn a_node_name_over_the_limit_is_refused_at_start() {
    let long = "n".repeat(croupier::remote::MAX_NAME_LEN + 1);
    let err = croupier::remote::Node::builder(long)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            croupier::remote::StartError::Setting {
                setting: "name",
                ..
            }
        ),
        "{err:?}"
    );
    let fits = "n".repeat(croupier::remote::MAX_NAME_LEN);
    let node = croupier::remote::Node::builder(fits).start().await.unwrap();
    node.shutdown().await;
}

/// Two `connect`s to one worker at once: both succeed, and the worker stays up and called
/// (the second attempt's keeper used to cancel the first's, whose end marked the node down
/// for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_to_one_worker_keep_it_up() {
    let w = start(worker("w")).await;
    let m = start(master()).await;
    let addr = w.local_addr().unwrap();
    let (a, b) = within(async { tokio::join!(m.connect(addr), m.connect(addr)) }).await;
    assert_eq!(a.unwrap().id.as_str(), "w");
    assert_eq!(b.unwrap().id.as_str(), "w");
    // Several report intervals' worth of calls: the node stays up through them all.
    for i in 0..50 {
        assert_eq!(
            within(m.call_least_loaded(ECHO, i)).await,
            Ok(i),
            "call {i}"
        );
        tokio::task::yield_now().await;
    }
    assert!(m.is_connected(&croupier::remote::NodeId::from("w")));
    assert_eq!(m.get_nodes().len(), 1);
    m.shutdown().await;
    w.shutdown().await;
}

/// A grpc.health.v1 `Watch` of the node's overall status on `ch`.
async fn watch_health(ch: Channel) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    within(HealthClient::new(ch).watch(HealthCheckRequest {
        service: String::new(),
    }))
    .await
    .unwrap()
    .into_inner()
}

/// Waits on a grpc.health.v1 `Watch` of the node's overall status until it reads `want`
/// (1 SERVING, 2 NOT_SERVING).
async fn health_becomes(ch: &Channel, want: i32) {
    let mut stream = watch_health(ch.clone()).await;
    within(async {
        while let Some(status) = stream.message().await.unwrap() {
            if status.status == want {
                return;
            }
        }
        panic!("the health stream ended");
    })
    .await;
}

/// A `Node::apply_within` dropped during its maintenance leaves the node serving again: its
/// health reads SERVING and masters call it (it stayed NOT_SERVING for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_apply_within_serves_again() {
    let w = start(worker("w")).await;
    let addr = w.local_addr().unwrap();
    let ch = channel(addr).await;
    let (started, is_started) = tokio::sync::oneshot::channel();
    let apply = w.apply_within(Duration::from_secs(1), move || async move {
        started.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    tokio::select! {
        _ = apply => unreachable!("the maintenance never ends"),
        _ = within(is_started) => {}
    }
    // Dropped during its maintenance.
    health_becomes(&ch, 1).await;
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    assert_eq!(within(m.call_least_loaded(ECHO, 3)).await, Ok(3));
    m.shutdown().await;
    w.shutdown().await;
}

/// A grpc.health.v1 `Watch` subscriber does not hold a node's shutdown for its grace period:
/// the watch stream ends with the node, as the ORCA and log streams do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_watcher_does_not_delay_shutdown() {
    // A grace period far beyond `within`'s bound: waiting it out fails the test.
    let w = start(worker("w").shutdown_grace(Duration::from_secs(600))).await;
    let ch = channel(w.local_addr().unwrap()).await;
    let mut watch = watch_health(ch).await;
    assert_eq!(within(watch.message()).await.unwrap().unwrap().status, 1);
    within(w.shutdown()).await;
    // The watcher sees its stream end (cleanly or not) instead of hanging: `within` fails
    // the test on a hang.
    within(async { while let Ok(Some(_)) = watch.message().await {} }).await;
}

/// A CPU-bound job: holds its thread for `ms` milliseconds, as a long computation would.
const GRIND: croupier::remote::Handler<u64, u64> = croupier::remote::Handler::new("test.grind");

/// A worker node on a runtime of its own (two threads, as a small machine's process has),
/// on a thread of its own: its address, and a sender that shuts it down.
fn worker_elsewhere(
    pool: usize,
    blocking: bool,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let grind = |ms: u64| {
                // The computation itself: this thread is busy for `ms`.
                std::thread::sleep(Duration::from_millis(ms));
                ms
            };
            let b = worker("busy").pool_size(pool);
            let b = if blocking {
                b.handle_blocking(GRIND, grind)
            } else {
                b.handle(GRIND, move |ms| async move { grind(ms) })
            };
            let w = b.start().await.unwrap();
            addr_tx.send(w.local_addr().unwrap()).unwrap();
            let _ = stop_rx.await;
            w.shutdown().await;
        });
    });
    let addr = addr_rx.recv_timeout(common_remote::GUARD).unwrap();
    (addr, stop_tx, thread)
}

/// Four CPU-bound calls on each of a worker's two pool workers, which are also its runtime's
/// two threads: the worker keeps answering pings and reporting (its transport runs apart
/// from its handlers), so the master does not mark it down or fail the calls under way (it
/// did at three report intervals, failing both calls in flight with `NodeDown`; a retry would
/// have run the job twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_handlers_do_not_make_a_node_look_dead() {
    let (addr, stop, thread) = worker_elsewhere(2, false);
    // Reports at least every 200 ms: silent for 600 ms, a node is taken for dead.
    let m = start(
        master()
            .report_interval(Duration::from_millis(10), Duration::from_millis(200))
            .call_timeout(Duration::from_secs(30)),
    )
    .await;
    within(m.connect(addr)).await.unwrap();
    let calls = (0..4).map(|_| m.call_least_loaded(GRIND, 2_500));
    let answers = within(futures_util::future::join_all(calls)).await;
    assert_eq!(answers, vec![Ok(2_500); 4]);
    assert!(m.is_connected(&croupier::remote::NodeId::from("busy")));
    m.shutdown().await;
    stop.send(()).unwrap();
    thread.join().unwrap();
}

/// A worker whose pool is busy with CPU-bound jobs reports every call it has accepted, those
/// still waiting for a pool worker included: 24 calls outstanding on a pool of two read as a
/// run queue of 24 (it read at most 1: the calls waiting were not counted, and the reports
/// themselves waited for a free thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_counts_calls_waiting_for_a_worker() {
    use croupier::remote::proto::xds::service::orca::v3::{
        open_rca_service_client::OpenRcaServiceClient, OrcaLoadReportRequest,
    };
    let (addr, stop, thread) = worker_elsewhere(2, false);
    let mut reports = within(
        OpenRcaServiceClient::new(channel(addr).await).stream_core_metrics(OrcaLoadReportRequest {
            report_interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 20_000_000,
            }),
            request_cost_names: Vec::new(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let m = start(master().call_timeout(Duration::from_secs(30))).await;
    within(m.connect(addr)).await.unwrap();
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.call_least_loaded(GRIND, 200).await })
        })
        .collect();
    let most = within(async {
        let mut most = 0.0_f64;
        while most < 24.0 {
            let r = reports.message().await.unwrap().unwrap();
            most = most.max(r.named_metrics["croupier.run_queue"]);
        }
        most
    })
    .await;
    assert_eq!(most, 24.0);
    for c in calls {
        assert_eq!(within(c).await.unwrap(), Ok(200));
    }
    m.shutdown().await;
    stop.send(()).unwrap();
    thread.join().unwrap();
}

/// Handlers registered with `handle_blocking` run on tokio's blocking pool: while two of
/// them hold their threads, the worker's runtime (two threads) still runs its other
/// handlers, so a quick call answers before they end. (Registered with `handle`, the two hold
/// both runtime threads and the quick call waits for them: this test with `[false]` fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handlers_leave_the_runtime_free() {
    for blocking in [true] {
        let (addr, stop, thread) = worker_elsewhere(4, blocking);
        let m = start(master().call_timeout(Duration::from_secs(30))).await;
        within(m.connect(addr)).await.unwrap();
        let grinds = {
            let m = m.clone();
            tokio::spawn(async move {
                futures_util::future::join_all((0..2).map(|_| m.call_least_loaded(GRIND, 1_000)))
                    .await
            })
        };
        tokio::pin!(grinds);
        // Both grinds are under way once the worker reports them.
        common_remote::until(&m, |m| {
            m.workers().first().is_some_and(|w| w.reported >= 0.5)
        })
        .await;
        let quick_first = within(async {
            tokio::select! {
                biased;
                done = &mut grinds => {
                    assert_eq!(done.unwrap(), vec![Ok(1_000); 2]);
                    false
                }
                echo = m.call_least_loaded(ECHO, 5) => {
                    assert_eq!(echo, Ok(5));
                    true
                }
            }
        })
        .await;
        assert_eq!(quick_first, blocking, "blocking: {blocking}");
        if quick_first {
            assert_eq!(within(grinds).await.unwrap(), vec![Ok(1_000); 2]);
        }
        m.shutdown().await;
        stop.send(()).unwrap();
        thread.join().unwrap();
    }
}

/// A raw HTTP/2 connection that says nothing after its preface and SETTINGS, as an idle
/// client or an attacker holds one; it answers nothing either.
struct RawH2(tokio::net::TcpStream);

impl RawH2 {
    async fn open(addr: SocketAddr) -> Self {
        use tokio::io::AsyncWriteExt;
        let mut s = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
        s.write_all(&hello).await.unwrap();
        let mut raw = Self(s);
        // The node's own SETTINGS: it serves the connection.
        assert_eq!(raw.frame().await.map(|(kind, _)| kind), Some(4));
        raw
    }

    /// The next frame's type and flags; `None` once the node has closed the connection.
    async fn frame(&mut self) -> Option<(u8, u8)> {
        use tokio::io::AsyncReadExt;
        let mut head = [0_u8; 9];
        self.0.read_exact(&mut head).await.ok()?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut body = vec![0; len];
        self.0.read_exact(&mut body).await.ok()?;
        Some((head[3], head[4]))
    }

    /// Reads until the node closes the connection (bounded by `within`).
    async fn closed(&mut self) {
        within(async { while self.frame().await.is_some() {} }).await;
    }

    /// Pings: the node answers while it keeps the connection.
    async fn answers_a_ping(&mut self) -> bool {
        use tokio::io::AsyncWriteExt;
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        if self.0.write_all(&ping).await.is_err() {
            return false;
        }
        within(async {
            while let Some((kind, flags)) = self.frame().await {
                if kind == 6 && flags & 1 == 1 {
                    return true;
                }
            }
            false
        })
        .await
    }
}

/// A node with a cookie closes a connection that has not presented it within the handshake
/// timeout (it kept one for ever); a cookie-less loopback node keeps the same connection,
/// so stock gRPC clients (health probes, ORCA readers) still reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_closed() {
    let shake = Duration::from_millis(300);
    let guarded = start(
        worker("guarded")
            .cookie("secret")
            .handshake_timeout(shake)
            .idle_timeout(Duration::from_secs(600)),
    )
    .await;
    let open = start(
        worker("open")
            .handshake_timeout(shake)
            .idle_timeout(Duration::from_secs(600)),
    )
    .await;
    let mut to_guarded = RawH2::open(guarded.local_addr().unwrap()).await;
    let mut to_open = RawH2::open(open.local_addr().unwrap()).await;
    to_guarded.closed().await;
    // Past the same handshake timeout, the cookie-less node still answers.
    assert!(to_open.answers_a_ping().await);
    // A master with the cookie is not closed: it still calls after the deadline.
    let m = start(master().cookie("secret")).await;
    within(m.connect(guarded.local_addr().unwrap()))
        .await
        .unwrap();
    let mut late = RawH2::open(guarded.local_addr().unwrap()).await;
    late.closed().await;
    assert_eq!(within(m.call_least_loaded(ECHO, 4)).await, Ok(4));
    m.shutdown().await;
    guarded.shutdown().await;
    open.shutdown().await;
}

/// Connections that do nothing cannot lock a master out: at the connection limit, a
/// newcomer evicts the connection that has not authenticated, or else the one idle longest
/// (four idle connections filled `max_connections(4)`, and the master got `NotCroupier`).
/// Connections in use are never evicted: a master beyond the limit of busy ones is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_lock_out_a_master() {
    for cookie in [None, Some("secret")] {
        let mut b = worker("w")
            .max_connections(4)
            .idle_timeout(Duration::from_secs(600));
        if let Some(c) = cookie {
            b = b.cookie(c);
        }
        let w = start(b).await;
        let addr = w.local_addr().unwrap();
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(RawH2::open(addr).await);
        }
        let mut m = master();
        if let Some(c) = cookie {
            m = m.cookie(c);
        }
        let m = start(m).await;
        within(m.connect(addr)).await.unwrap();
        assert_eq!(
            within(m.call_least_loaded(ECHO, 9)).await,
            Ok(9),
            "cookie {cookie:?}"
        );
        // One idle connection made room for it.
        let mut gone = 0;
        for conn in &mut idle {
            if !conn.answers_a_ping().await {
                gone += 1;
            }
        }
        assert_eq!(gone, 1, "cookie {cookie:?}");
        m.shutdown().await;
        w.shutdown().await;
    }

    // Busy connections stay: two masters fill max_connections(2), a third is refused.
    let w = start(worker("w").max_connections(2)).await;
    let addr = w.local_addr().unwrap();
    let (a, b, c) = (
        start(master()).await,
        start(master()).await,
        start(master()).await,
    );
    within(a.connect(addr)).await.unwrap();
    within(b.connect(addr)).await.unwrap();
    assert!(within(c.connect(addr)).await.is_err());
    for m in [&a, &b] {
        assert_eq!(within(m.call_least_loaded(ECHO, 1)).await, Ok(1));
    }
    for m in [a, b, c] {
        m.shutdown().await;
    }
    w.shutdown().await;
}

/// A connection with no call or stream open for the idle timeout is closed; a master's, which
/// holds its load stream, is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_time_out() {
    let w = start(worker("w").idle_timeout(Duration::from_millis(200))).await;
    let addr = w.local_addr().unwrap();
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    let mut idle = RawH2::open(addr).await;
    idle.closed().await;
    // Past the idle timeout, the master's connection still carries calls.
    assert_eq!(within(m.call_least_loaded(ECHO, 2)).await, Ok(2));
    assert!(m.is_connected(&croupier::remote::NodeId::from("w")));
    m.shutdown().await;
    w.shutdown().await;
}

/// A node's pool holds at most `max_queue` calls per worker (64 by default): beyond, a call
/// is answered at once with `RESOURCE_EXHAUSTED` (`Busy`), not queued without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_pool_queue_is_bounded() {
    const HOLD: croupier::remote::Handler<(), ()> = croupier::remote::Handler::new("test.hold");
    for (max_queue, admitted) in [(None, 64), (Some(3), 3)] {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let mut b = worker("w").pool_size(1);
        if let Some(n) = max_queue {
            b = b.max_queue(n);
        }
        let w = {
            let gate = std::sync::Arc::clone(&gate);
            start(b.handle(HOLD, move |()| {
                let gate = std::sync::Arc::clone(&gate);
                async move { gate.acquire().await.unwrap().forget() }
            }))
            .await
        };
        let m = start(master()).await;
        within(m.connect(w.local_addr().unwrap())).await.unwrap();
        let node = croupier::remote::NodeId::from("w");
        let calls: Vec<_> = (0..admitted)
            .map(|_| {
                let (m, node) = (m.clone(), node.clone());
                tokio::spawn(async move { m.call(&node, HOLD, ()).await })
            })
            .collect();
        // Every admitted call is queued or running: the node reports them.
        common_remote::until(&m, |m| {
            m.workers()
                .first()
                .is_some_and(|n| n.reported >= admitted as f64)
        })
        .await;
        let refused = within(m.call(&node, HOLD, ())).await;
        assert!(
            matches!(refused, Err(croupier::remote::RemoteError::Busy(_))),
            "{refused:?}"
        );
        gate.add_permits(admitted);
        for c in calls {
            assert_eq!(within(c).await.unwrap(), Ok(()));
        }
        m.shutdown().await;
        w.shutdown().await;
    }
}

/// A node whose calls fail weighs its failures in its load for a while, so least loaded sends
/// the next calls to a healthy node: a handful of the calls fail, not half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_is_passed_over_after_its_failures() {
    const FLAKY: croupier::remote::Handler<u64, u64> = croupier::remote::Handler::new("test.flaky");
    let good = start(worker("good").handle(FLAKY, |n| async move { n })).await;
    let bad = start(worker("bad").handle(FLAKY, |_| async move {
        panic!("this node fails every call (expected by the test)")
    }))
    .await;
    let m = start(master()).await;
    for w in [&good, &bad] {
        within(m.connect(w.local_addr().unwrap())).await.unwrap();
    }
    let mut failed = 0;
    for i in 0..40 {
        if within(m.call_least_loaded(FLAKY, i)).await.is_err() {
            failed += 1;
        }
    }
    assert!((1..=3).contains(&failed), "{failed} of 40 calls failed");
    m.shutdown().await;
    good.shutdown().await;
    bad.shutdown().await;
}

/// A worker that comes back at its address under another name replaces its old name in
/// `get_nodes()` (the old name stayed there for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_back_under_a_new_name_replaces_the_old_one() {
    let old = start(worker("old-name")).await;
    let addr = old.local_addr().unwrap();
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    old.shutdown().await;
    drop(old);
    common_remote::until(&m, |m| m.workers().is_empty()).await;
    let new = start(worker("new-name").listen(addr.to_string())).await;
    common_remote::until(&m, |m| m.workers().len() == 1).await;
    assert_eq!(m.get_nodes(), [croupier::remote::NodeId::from("new-name")]);
    assert_eq!(within(m.call_least_loaded(ECHO, 8)).await, Ok(8));
    m.shutdown().await;
    new.shutdown().await;
}

/// A remote error carries its cause as a typed source: the node's gRPC status for a handler
/// that failed there, the encoder's error for arguments that cannot be encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_errors_carry_their_cause_as_a_typed_source() {
    use std::error::Error as _;

    use croupier::remote::RemoteError;
    const FAILS: croupier::remote::Handler<u64, u64> = croupier::remote::Handler::new("test.fails");
    /// Arguments whose encoding fails.
    struct Unencodable;
    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value cannot be encoded"))
        }
    }
    const ODD: croupier::remote::Handler<Unencodable, u64> =
        croupier::remote::Handler::new("test.odd");

    let w = start(worker("w").handle(FAILS, |_| async move {
        panic!("this handler fails (expected by the test)")
    }))
    .await;
    let m = start(master()).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    let e = within(m.call_least_loaded(FAILS, 1)).await.unwrap_err();
    assert!(matches!(e, RemoteError::Remote(_)), "{e:?}");
    let status = e
        .source()
        .and_then(|s| s.downcast_ref::<tonic::Status>())
        .expect("the node's status");
    assert_eq!(status.code(), tonic::Code::Internal);

    let e = within(m.call_least_loaded(ODD, Unencodable))
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Encode(_)), "{e:?}");
    assert!(e.source().is_some(), "the encoder's error: {e:?}");
    m.shutdown().await;
    w.shutdown().await;
}

/// One peer address cannot keep others out: four busy connections from 127.0.0.2 (each with a
/// health watch open) fill `max_connections(4)`, and a master from 127.0.0.1 still gets in,
/// in place of one of them; a fifth from 127.0.0.2 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_address_cannot_hold_every_slot() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let w = start(
        worker("w")
            .max_connections(4)
            .idle_timeout(Duration::from_secs(600)),
    )
    .await;
    let addr = w.local_addr().unwrap();
    let from_two = || {
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .local_address(Some([127, 0, 0, 2].into()))
    };
    let mut watches = Vec::new();
    for _ in 0..4 {
        let ch = within(from_two().connect()).await.unwrap();
        let mut watch = watch_health(ch).await;
        assert_eq!(within(watch.message()).await.unwrap().unwrap().status, 1);
        watches.push(watch);
    }
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    assert_eq!(within(m.call_least_loaded(ECHO, 6)).await, Ok(6));
    // A fifth from 127.0.0.2 finds every slot busy and no other address over its share:
    // refused, and the master keeps its slot.
    let refused = async {
        let ch = from_two().connect().await.map_err(|e| e.to_string())?;
        HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| e.to_string())
    };
    assert!(within(refused).await.is_err());
    assert_eq!(within(m.call_least_loaded(ECHO, 7)).await, Ok(7));
    m.shutdown().await;
    w.shutdown().await;
}
