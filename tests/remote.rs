//! The remote layer on 127.0.0.1: several nodes in one test process.
#![cfg(feature = "remote")]

mod common_remote;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use common_remote::{master, start, until, within, ECHO, WHO};
use croupier::remote::{
    ConnectError, Cookie, Handler, HostsFile, Mode, Node, NodeId, RemoteError, StartError,
    StaticList,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

const WAIT: Handler<(), ()> = Handler::new("test.wait");
const PANIC: Handler<(), ()> = Handler::new("test.panic");

/// The shared worker, with a handler that panics.
fn worker(name: &str) -> croupier::remote::NodeBuilder {
    common_remote::worker(name).handle(PANIC, |()| async {
        panic!("handler failed (expected by the test)")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_call_and_least_loaded() {
    let w1 = start(worker("w1").tags(["gpu"])).await;
    let w2 = start(worker("w2")).await;
    let m = start(master()).await;

    let info = within(m.connect(w1.local_addr().unwrap())).await.unwrap();
    assert_eq!(info.id, NodeId::from("w1"));
    assert_eq!(info.tags, ["gpu"]);
    assert_eq!(info.pool_size, 2);
    within(m.connect(w2.local_addr().unwrap())).await.unwrap();

    assert_eq!(m.workers().len(), 2);
    assert_eq!(within(m.call(&NodeId::from("w2"), ECHO, 7)).await, Ok(7));
    assert_eq!(
        within(m.call(&NodeId::from("w1"), WHO, ())).await.unwrap(),
        "w1"
    );
    assert_eq!(within(m.call_least_loaded(ECHO, 9)).await, Ok(9));
    assert!(m.get_node().is_some());
    assert_eq!(
        within(m.call(&NodeId::from("nobody"), ECHO, 1)).await,
        Err(RemoteError::UnknownNode(NodeId::from("nobody")))
    );
    m.shutdown().await;
    w1.shutdown().await;
    w2.shutdown().await;
}

#[tokio::test]
async fn unknown_handler_and_remote_panic_are_typed_errors() {
    let w = start(worker("w")).await;
    let m = start(master()).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    let nope: Handler<u64, u64> = Handler::new("not.registered");
    assert_eq!(
        within(m.call_least_loaded(nope, 1)).await,
        Err(RemoteError::UnknownHandler("not.registered".into()))
    );
    assert!(matches!(
        within(m.call_least_loaded(PANIC, ())).await,
        Err(RemoteError::Remote(_))
    ));
    // The node keeps serving after both.
    assert_eq!(within(m.call_least_loaded(ECHO, 3)).await, Ok(3));
}

#[tokio::test]
async fn wrong_cookie_is_refused_both_ways() {
    let w = start(worker("w").cookie("right")).await;
    let addr = w.local_addr().unwrap();

    let wrong = start(master().cookie("wrong")).await;
    assert!(matches!(
        within(wrong.connect(addr)).await,
        Err(ConnectError::Unauthenticated)
    ));
    let none = start(master()).await;
    assert!(matches!(
        within(none.connect(addr)).await,
        Err(ConnectError::Unauthenticated)
    ));
    let right = start(master().cookie(Cookie::new("right"))).await;
    assert!(within(right.connect(addr)).await.is_ok());
    assert_eq!(within(right.call_least_loaded(ECHO, 5)).await, Ok(5));

    // A worker without a cookie refuses a master that has one.
    let open = start(worker("open")).await;
    assert!(matches!(
        within(right.connect(open.local_addr().unwrap())).await,
        Err(ConnectError::Unauthenticated)
    ));
}

#[tokio::test]
async fn connect_errors_are_precise() {
    let m = start(master()).await;

    // Nobody listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    assert!(matches!(
        within(m.connect(closed)).await,
        Err(ConnectError::NotConnected(_))
    ));

    // Something that is not croupier: answers with an HTTP error.
    let http = fake(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    })
    .await;
    assert!(matches!(
        within(m.connect(http)).await,
        Err(ConnectError::NotCroupier)
    ));

    // A croupier of another protocol version.
    let future = future_croupier(99).await;
    match within(m.connect(future)).await {
        Err(ConnectError::Incompatible { ours, theirs }) => {
            assert_eq!(theirs, 99);
            assert_ne!(ours, 99);
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }

    // A peer that accepts and then says nothing.
    let silent = fake(|s| async move {
        let _hold = s;
        std::future::pending::<()>().await;
    })
    .await;
    assert!(matches!(
        within(m.connect(silent)).await,
        Err(ConnectError::Timeout)
    ));

    // Another master listening: it does not serve calls.
    let other_master = start(
        Node::builder("other-master")
            .mode(Mode::Master)
            .listen("127.0.0.1:0"),
    )
    .await;
    assert!(matches!(
        within(m.connect(other_master.local_addr().unwrap())).await,
        Err(ConnectError::ModeMismatch)
    ));

    // A worker with the master's own name refuses it.
    let twin = start(worker("master")).await;
    assert!(matches!(
        within(m.connect(twin.local_addr().unwrap())).await,
        Err(ConnectError::Rejected(_))
    ));

    // Only masters connect.
    let w = start(worker("w")).await;
    assert!(matches!(
        within(w.connect(twin.local_addr().unwrap())).await,
        Err(ConnectError::Rejected(_))
    ));
    assert!(m.workers().is_empty());
}

/// A TCP server on 127.0.0.1 that runs `serve` on each connection.
async fn fake<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// A croupier.v1 server of the test's own that answers every hello with protocol `version`.
async fn future_croupier(version: u32) -> SocketAddr {
    use croupier::remote::proto::croupier::v1::{
        croupier_server::{Croupier, CroupierServer},
        HelloReply, HelloRequest, InvokeReply, InvokeRequest, LogRecord, LogsRequest,
        TerminateReply, TerminateRequest,
    };
    use tonic::{Request, Response, Status};
    struct Future(u32);
    #[tonic::async_trait]
    impl Croupier for Future {
        async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
            Ok(Response::new(HelloReply {
                name: "from-the-future".into(),
                mode: 2,
                version: self.0,
                ..HelloReply::default()
            }))
        }
        async fn invoke(&self, _: Request<InvokeRequest>) -> Result<Response<InvokeReply>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn terminate(
            &self,
            _: Request<TerminateRequest>,
        ) -> Result<Response<TerminateReply>, Status> {
            Err(Status::unimplemented("test"))
        }
        type LogsStream = futures_util::stream::Empty<Result<LogRecord, Status>>;
        async fn logs(
            &self,
            _: Request<LogsRequest>,
        ) -> Result<Response<Self::LogsStream>, Status> {
            Err(Status::unimplemented("test"))
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let incoming =
        futures_util::stream::unfold(
            l,
            |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) },
        );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CroupierServer::new(Future(version)))
            .serve_with_incoming(incoming),
    );
    addr
}

#[tokio::test]
async fn oversized_and_garbage_frames_close_only_their_connection() {
    let w = start(worker("w").handshake_timeout(Duration::from_millis(300))).await;
    let addr = w.local_addr().unwrap();

    // Garbage instead of the HTTP/2 preface: the node closes the connection.
    let mut junk = TcpStream::connect(addr).await.unwrap();
    junk.write_all(b"\xff\xfe garbage, not HTTP/2 at all.....")
        .await
        .unwrap();
    let mut all = Vec::new();
    let closed = within(junk.read_to_end(&mut all)).await;
    assert!(
        closed.is_ok() || closed.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "the node closed the garbage connection"
    );

    // Truncated: a few bytes of the preface, then nothing: closed at the handshake timeout.
    let mut cut = TcpStream::connect(addr).await.unwrap();
    cut.write_all(b"PRI * HTTP").await.unwrap();
    let mut all = Vec::new();
    within(cut.read_to_end(&mut all))
        .await
        .expect("the node closed the truncated connection");

    // The node still serves a proper master.
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    assert_eq!(within(m.call_least_loaded(ECHO, 11)).await, Ok(11));
}

#[tokio::test]
async fn insecure_listen_is_refused() {
    let err = Node::builder("w")
        .mode(Mode::Worker)
        .listen("0.0.0.0:0")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::InsecureListen(_)), "{err}");
    let err = Node::builder("w")
        .mode(Mode::Worker)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::NoListenAddress));
    // A cookie is not enough: it would cross the network in the clear.
    let err = Node::builder("w")
        .mode(Mode::Worker)
        .listen("0.0.0.0:0")
        .cookie("secret")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::InsecureListen(_)), "{err}");
    assert!(err.to_string().contains(".tls("), "says what to do: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_select_workers() {
    let gpu = start(worker("gpu-1").tags(["gpu", "big"])).await;
    let cpu = start(worker("cpu-1").tags(["cpu"])).await;
    let m = start(master()).await;
    for w in [&gpu, &cpu] {
        within(m.connect(w.local_addr().unwrap())).await.unwrap();
    }
    let tagged: Vec<_> = m
        .workers_with_tag("gpu")
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(tagged, [NodeId::from("gpu-1")]);
    assert_eq!(
        m.tags().into_iter().collect::<Vec<_>>(),
        ["big", "cpu", "gpu"]
    );
    let results = within(m.on_tagged_workers("gpu", WHO, ())).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].1.as_deref(), Ok("gpu-1"));
    let everyone = within(m.on_all_workers(WHO, ())).await;
    assert_eq!(everyone.len(), 2);
    assert!(everyone
        .iter()
        .all(|(id, r)| r.as_deref() == Ok(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_n_spreads_round_robin() {
    let nodes = [
        start(worker("a")).await,
        start(worker("b")).await,
        start(worker("c")).await,
    ];
    let m = start(master()).await;
    for w in &nodes {
        within(m.connect(w.local_addr().unwrap())).await.unwrap();
    }
    let results = within(m.on_n(7, WHO, ())).await;
    assert_eq!(results.len(), 7);
    let mut per_node = BTreeMap::new();
    for (id, r) in &results {
        assert_eq!(r.as_deref(), Ok(id.as_str()), "ran where it says");
        *per_node.entry(id.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        per_node,
        BTreeMap::from([("a".into(), 3), ("b".into(), 2), ("c".into(), 2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_node_is_chosen() {
    let gate = Arc::new(Semaphore::new(0));
    let busy = {
        let gate = Arc::clone(&gate);
        start(worker("busy").handle(WAIT, move |()| {
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await.unwrap().forget();
            }
        }))
        .await
    };
    let idle = start(worker("idle")).await;
    let m = start(master().policy(croupier::Policy::LeastLoaded)).await;
    within(m.connect(busy.local_addr().unwrap())).await.unwrap();
    within(m.connect(idle.local_addr().unwrap())).await.unwrap();

    // Load "busy" with calls that wait at its gate: 16 on a pool of 2, a load of 8. Each call
    // to "idle" counts 0.5 to its expected load until its next report, so the five calls
    // below cannot bring it level with "busy" however late that report comes.
    let waiting: Vec<_> = (0..16)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.call(&NodeId::from("busy"), WAIT, ()).await })
        })
        .collect();
    until(&m, |m| {
        m.workers()
            .iter()
            .any(|w| w.id.as_str() == "busy" && w.load >= 8.0)
    })
    .await;
    assert_eq!(m.get_node(), Some(NodeId::from("idle")));
    for _ in 0..5 {
        assert_eq!(within(m.call_least_loaded(WHO, ())).await.unwrap(), "idle");
    }
    gate.add_permits(16);
    for w in waiting {
        within(w).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_fails_pending_calls_and_is_excluded() {
    let stuck = start(worker("stuck").handle(WAIT, |()| std::future::pending::<()>())).await;
    let other = start(worker("other")).await;
    let m = start(master()).await;
    within(m.connect(stuck.local_addr().unwrap()))
        .await
        .unwrap();
    within(m.connect(other.local_addr().unwrap()))
        .await
        .unwrap();

    let pending = {
        let m = m.clone();
        tokio::spawn(async move { m.call(&NodeId::from("stuck"), WAIT, ()).await })
    };
    until(&m, |m| {
        m.workers()
            .iter()
            .any(|w| w.id.as_str() == "stuck" && w.load > 0.0)
    })
    .await;
    stuck.shutdown().await;
    drop(stuck);

    assert_eq!(
        within(pending).await.unwrap(),
        Err(RemoteError::NodeDown(NodeId::from("stuck")))
    );
    until(&m, |m| m.workers().len() == 1).await;
    for _ in 0..4 {
        assert_eq!(within(m.call_least_loaded(WHO, ())).await.unwrap(), "other");
    }
}

/// A TCP relay on 127.0.0.1 to `to` that the test can freeze: while frozen, nothing crosses
/// it either way (what was read is held), as in a network partition. Its tasks end with the
/// test's runtime.
async fn freezable_relay(to: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    async fn pipe(
        mut from: OwnedReadHalf,
        mut to: OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut buf = vec![0; 16 << 10];
        loop {
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (frozen, watch) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(to).await else {
                continue;
            };
            let ((ri, wi), (ro, wo)) = (inbound.into_split(), outbound.into_split());
            tokio::spawn(pipe(ri, wo, watch.clone()));
            tokio::spawn(pipe(ro, wi, watch.clone()));
        }
    });
    (addr, frozen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_goes_stale_and_comes_back() {
    // The master reaches the worker through a relay the test freezes: no load report, no
    // answer, until the master has marked the worker down, whatever the time that takes.
    // (A worker whose runtime is blocked no longer goes silent: its transport runs on a
    // thread of its own.)
    let w = start(worker("sleepy")).await;
    let (addr, frozen) = freezable_relay(w.local_addr().unwrap()).await;
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    assert_eq!(m.workers().len(), 1);

    // Frozen: marked down (stale) and left out of selection.
    frozen.send_replace(true);
    until(&m, |m| m.workers().is_empty()).await;
    assert_eq!(m.get_node(), None);
    assert!(matches!(
        within(m.call_least_loaded(ECHO, 1)).await,
        Err(RemoteError::NoNodes)
    ));
    // Thawed: the master reconnects by itself.
    frozen.send_replace(false);
    until(&m, |m| m.workers().len() == 1).await;
    assert_eq!(within(m.call_least_loaded(ECHO, 2)).await, Ok(2));
    m.shutdown().await;
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_waits_for_the_heartbeats_the_other_announced() {
    // The master pings every 30 ms, so three of its own heartbeats are 90 ms; the idle worker
    // reports every 300 ms. Judged by the master's own interval it would go down between
    // every two reports; judged by the one it announced, never.
    let slow = Duration::from_millis(300);
    let w = start(worker("slow-beat").report_interval(Duration::from_millis(100), slow)).await;
    let m =
        start(master().report_interval(Duration::from_millis(10), Duration::from_millis(30))).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    // Every change the master sees for the next four idle reports (over a second) leaves the
    // worker up: a mark-down would be a change too, seen here with the worker missing.
    for _ in 0..4 {
        let changed = m.changed();
        assert_eq!(m.workers().len(), 1, "marked down between its heartbeats");
        within(changed).await;
    }
    assert_eq!(m.workers().len(), 1, "marked down between its heartbeats");
    assert_eq!(within(m.call_least_loaded(ECHO, 3)).await, Ok(3));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_worker_ends_it() {
    let w = start(worker("w")).await;
    let m = start(master()).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    m.terminate_worker(&NodeId::from("w")).unwrap();
    within(w.terminated()).await;
    assert!(m.workers().is_empty());
    assert_eq!(
        m.terminate_worker(&NodeId::from("w")),
        Err(RemoteError::UnknownNode(NodeId::from("w")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_from_static_list_and_hosts_file() {
    let a = start(worker("a")).await;
    let b = start(worker("b").tags(["x"])).await;
    let m = start(master().discovery(StaticList::new([a.local_addr().unwrap()]))).await;
    until(&m, |m| m.workers().len() == 1).await;

    let hosts = format!(
        "# test cluster\n{} x\n\n{} from-file,second\n",
        b.local_addr().unwrap(),
        a.local_addr().unwrap()
    );
    let dir = std::env::temp_dir().join(format!("croupier-hosts-{}", std::process::id()));
    std::fs::write(&dir, hosts).unwrap();
    let file = HostsFile::open(&dir).unwrap();
    std::fs::remove_file(&dir).unwrap();
    assert_eq!(file.entries()[0].1, ["x"]);
    let m2 = start(master().discovery(file)).await;
    until(&m2, |m| m.workers().len() == 2).await;
    // The file's tags are added to the node's own.
    let from_file: Vec<_> = m2
        .workers_with_tag("from-file")
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(from_file, [NodeId::from("a")]);

    let missing = HostsFile::open("/nonexistent/croupier/hosts").unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/croupier/hosts"));
}

/// mDNS needs multicast on a network interface; CI sandboxes often have none, so this test
/// runs only when asked: `cargo test --features remote -- --ignored mdns`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs multicast on the local network"]
async fn mdns_discovery_finds_an_advertised_worker() {
    let w = start(worker("mdns-worker").advertise(true).tags(["zeroconf"])).await;
    let m = start(master().discovery(croupier::remote::Mdns)).await;
    until(&m, |m| !m.workers().is_empty()).await;
    assert_eq!(m.workers()[0].id, NodeId::from("mdns-worker"));
    assert_eq!(within(m.call_least_loaded(ECHO, 4)).await, Ok(4));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_master_does_not_kill_the_workers() {
    let w = start(worker("w")).await;
    let first = start(master()).await;
    within(first.connect(w.local_addr().unwrap()))
        .await
        .unwrap();
    first.shutdown().await;
    drop(first);

    let second = start(
        Node::builder("second")
            .report_interval(Duration::from_millis(10), Duration::from_millis(100)),
    )
    .await;
    within(second.connect(w.local_addr().unwrap()))
        .await
        .unwrap();
    assert_eq!(within(second.call_least_loaded(ECHO, 8)).await, Ok(8));
}

/// A call whose handler does not answer within the master's call timeout fails with
/// `Timeout`, and the node stays usable for other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_fails_with_timeout() {
    let w = start(worker("slow").handle(WAIT, |()| std::future::pending::<()>())).await;
    let m = start(master().call_timeout(Duration::from_millis(200))).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    let r = within(m.call(&NodeId::from("slow"), WAIT, ())).await;
    assert_eq!(r, Err(RemoteError::Timeout));
    assert_eq!(within(m.call(&NodeId::from("slow"), ECHO, 5)).await, Ok(5));
    m.shutdown().await;
    w.shutdown().await;
}

/// Arguments or a result that do not decode as the other side's types are typed errors: a
/// handler called with the wrong argument type answers `Decode`, and so does a result read
/// as the wrong type on the master's side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_types_are_decode_errors() {
    // The same names as ECHO and WHO, with other types.
    const ECHO_AS_TEXT: Handler<String, u64> = Handler::new("test.echo");
    const WHO_AS_NUMBER: Handler<(), u64> = Handler::new("test.who");
    let w = start(worker("typed")).await;
    let m = start(master()).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    let node = NodeId::from("typed");
    let r = within(m.call(&node, ECHO_AS_TEXT, "not a number, and too long".into())).await;
    assert!(matches!(r, Err(RemoteError::Decode(_))), "{r:?}");
    let r = within(m.call(&node, WHO_AS_NUMBER, ())).await;
    assert!(matches!(r, Err(RemoteError::Decode(_))), "{r:?}");
    // The connection survives both.
    assert_eq!(within(m.call(&node, ECHO, 6)).await, Ok(6));
    m.shutdown().await;
    w.shutdown().await;
}

/// A discovery source of the test's own: `Added` connects, `Removed` disconnects the node
/// and takes it out of selection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_removed_disconnects_the_node() {
    struct Manual(tokio::sync::mpsc::UnboundedReceiver<croupier::remote::DiscoveryEvent>);
    impl croupier::remote::Discovery for Manual {
        fn start(
            self: Box<Self>,
        ) -> Result<tokio::sync::mpsc::UnboundedReceiver<croupier::remote::DiscoveryEvent>, String>
        {
            Ok(self.0)
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let a = start(worker("kept")).await;
    let b = start(worker("removed")).await;
    let m = start(master().discovery(Manual(rx))).await;
    for w in [&a, &b] {
        tx.send(croupier::remote::DiscoveryEvent::Added {
            addr: w.local_addr().unwrap(),
            tags: Vec::new(),
        })
        .unwrap();
    }
    until(&m, |m| m.workers().len() == 2).await;

    tx.send(croupier::remote::DiscoveryEvent::Removed {
        addr: b.local_addr().unwrap(),
    })
    .unwrap();
    until(&m, |m| m.workers().len() == 1).await;
    assert_eq!(m.workers()[0].id, NodeId::from("kept"));
    for _ in 0..4 {
        assert_eq!(within(m.call_least_loaded(WHO, ())).await.unwrap(), "kept");
    }
    m.shutdown().await;
}

/// A first `connect` that fails after the hello (here: the peer serves croupier.v1's hello
/// but no load reports) keeps nothing: the node is not listed, and nothing reconnects to it
/// (it stayed in `get_nodes()` for ever).
#[tokio::test]
async fn a_failed_first_connect_keeps_nothing() {
    let addr = future_croupier(3).await;
    let m = start(master()).await;
    assert!(within(m.connect(addr)).await.is_err());
    assert!(m.get_nodes().is_empty(), "{:?}", m.get_nodes());
    assert!(m.workers().is_empty());
    m.shutdown().await;
}
