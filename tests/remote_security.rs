//! The remote layer under attack: TLS and mutual TLS, the cookie, listening rules, hostile and
//! broken peers, and limits. Every property is shown by a peer that tries to break it.
#![cfg(feature = "remote")]

mod common_remote;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use common_remote::{master, start, until, within, worker, Authority, ECHO, WHO};
use croupier::remote::{ConnectError, Handler, Mode, Node, NodeId, RemoteError, StartError};
use tokio::{
    io::AsyncReadExt,
    net::TcpStream,
    sync::{Notify, Semaphore},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

const WAIT: Handler<(), ()> = Handler::new("test.wait");
const BIG: Handler<u32, Vec<u8>> = Handler::new("test.big");
const BLOB: Handler<Vec<u8>, usize> = Handler::new("test.blob");

/// A plain tonic channel to `addr`, optionally over TLS.
async fn channel(addr: SocketAddr, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        ep = ep.tls_config(tls).unwrap();
    }
    ep.connect().await.map_err(|e| format!("{e:?}"))
}

/// Asks grpc.health.v1 for the overall status; the error's text if the call fails.
async fn health(ch: Channel) -> Result<i32, String> {
    let mut client = HealthClient::new(ch);
    let req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    tokio::time::timeout(Duration::from_secs(3), client.check(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map(|r| r.into_inner().status)
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_peer_is_refused_by_a_tls_node() {
    let ca = Authority::new("cluster");
    let w = start(worker("tls-w").tls(ca.tls("tls-w"))).await;
    let addr = w.local_addr().unwrap();

    // A croupier master without TLS.
    let plain = start(master()).await;
    let refused = within(plain.connect(addr)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(plain.workers().is_empty());
    // A plain gRPC client: not even health answers it.
    let probe = match channel(addr, None).await {
        Ok(ch) => health(ch).await,
        Err(e) => Err(e),
    };
    assert!(probe.is_err(), "{probe:?}");

    // The control: a master of the same authority gets in, and calls.
    let good = start(master().tls(ca.tls("master"))).await;
    within(good.connect(addr)).await.unwrap();
    assert_eq!(within(good.call_least_loaded(ECHO, 3)).await, Ok(3));
    assert!(w.masters().contains(&NodeId::from("master")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_without_a_client_certificate_is_refused() {
    let ca = Authority::new("cluster");
    let w = start(worker("mtls-w").tls(ca.tls("mtls-w"))).await;
    let addr = w.local_addr().unwrap();

    // Trusts the node, but shows no certificate of its own.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.ca_pem))
        .domain_name("127.0.0.1");
    let probe = match channel(addr, Some(anonymous)).await {
        Ok(ch) => health(ch).await,
        Err(e) => Err(e),
    };
    assert!(
        probe.is_err(),
        "answered a peer without a certificate: {probe:?}"
    );

    // Shows a certificate, but from another authority.
    let rogue_ca = Authority::new("rogue");
    let rogue = rogue_ca.leaf("rogue");
    let forged = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.ca_pem))
        .identity(Identity::from_pem(&rogue.cert_pem, &rogue.key_pem))
        .domain_name("127.0.0.1");
    let probe = match channel(addr, Some(forged)).await {
        Ok(ch) => health(ch).await,
        Err(e) => Err(e),
    };
    assert!(
        probe.is_err(),
        "answered a certificate from another authority: {probe:?}"
    );
    // A croupier master of the other authority fails the same way (it does not trust the
    // node's certificate either).
    let m = start(master().tls(rogue_ca.tls("rogue-master"))).await;
    assert!(matches!(
        within(m.connect(addr)).await,
        Err(ConnectError::NotConnected(_))
    ));

    // The control: the right certificate gets an answer.
    let right = ca.leaf("client");
    let good = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.ca_pem))
        .identity(Identity::from_pem(&right.cert_pem, &right.key_pem))
        .domain_name("127.0.0.1");
    let ch = channel(addr, Some(good)).await.unwrap();
    assert_eq!(health(ch).await, Ok(1), "SERVING");
}

#[tokio::test]
async fn non_loopback_listen_without_tls_is_refused() {
    for cookie in [None, Some("secret")] {
        let mut b = Node::builder("w").mode(Mode::Worker).listen("0.0.0.0:0");
        if let Some(c) = cookie {
            b = b.cookie(c);
        }
        let err = b.start().await.unwrap_err();
        assert!(matches!(err, StartError::InsecureListen(_)), "{err}");
    }
    // With TLS it may listen anywhere.
    let ca = Authority::new("cluster");
    let ok = Node::builder("w")
        .mode(Mode::Worker)
        .listen("0.0.0.0:0")
        .tls(ca.tls("w"))
        .start()
        .await;
    assert!(ok.is_ok());
    // And a master without TLS will not send a cookie or a call to a non-loopback address.
    let m = start(master().cookie("secret")).await;
    let target: SocketAddr = "10.255.255.1:7001".parse().unwrap();
    assert!(matches!(
        within(m.connect(target)).await,
        Err(ConnectError::Insecure(a)) if a == target
    ));
    // Bad TLS settings are refused when read, with a message.
    let bad = croupier::remote::Tls::from_pem("not a certificate", "nor a key", "nor a CA");
    assert!(bad.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_is_refused() {
    let w = start(worker("cookie-w").cookie("right")).await;
    let addr = w.local_addr().unwrap();
    for wrong in [Some("wrong"), None] {
        let mut b = master();
        if let Some(c) = wrong {
            b = b.cookie(c);
        }
        let m = start(b).await;
        assert!(matches!(
            within(m.connect(addr)).await,
            Err(ConnectError::Unauthenticated)
        ));
    }
    // A raw gRPC call without the cookie is refused before its body is read...
    use croupier::remote::proto::croupier::v1::{croupier_client::CroupierClient, InvokeRequest};
    let ch = channel(addr, None).await.unwrap();
    let status = CroupierClient::new(ch.clone())
        .invoke(InvokeRequest {
            handler: "test.echo".into(),
            args: vec![1],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // ...while health answers a probe, which carries no cookie, with the status alone.
    assert_eq!(health(ch).await, Ok(1));

    let right = start(master().cookie("right")).await;
    within(right.connect(addr)).await.unwrap();
    assert_eq!(within(right.call_least_loaded(ECHO, 5)).await, Ok(5));
}

/// A peer that sends calls whose answers are large, then stops reading its socket: the node's
/// writes block. `shutdown` still returns, after its grace period, by cutting the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_stops_reading_does_not_hang_shutdown() {
    let started = Arc::new(Notify::new());
    let w = {
        let started = Arc::clone(&started);
        start(
            worker("flooded")
                .max_message(8 << 20)
                .shutdown_grace(Duration::from_millis(300))
                .handle(BIG, move |n: u32| {
                    started.notify_one();
                    async move { vec![7_u8; n as usize] }
                }),
        )
        .await
    };
    let addr = w.local_addr().unwrap();

    // An HTTP/2 client with huge windows over a socket with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut send, conn) = h2::client::Builder::new()
        .initial_window_size(64 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, bytes::Bytes>(stream)
        .await
        .unwrap();
    let mut conn = Box::pin(conn);
    let mut responses = Vec::new();
    for _ in 0..4 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/croupier.v1.Croupier/Invoke"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut body) = send.send_request(req, false).unwrap();
        // InvokeRequest { handler: "test.big", args: postcard(8 MiB - 64 as u32) }.
        let args = postcard::to_stdvec(&((8_u32 << 20) - 64)).unwrap();
        let mut msg = vec![0x0a, 8];
        msg.extend_from_slice(b"test.big");
        msg.push(0x12);
        msg.push(u8::try_from(args.len()).unwrap());
        msg.extend_from_slice(&args);
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(&msg);
        body.send_data(frame.into(), true).unwrap();
        responses.push(resp);
    }
    // Drive the connection until the node has started a handler: the requests are in.
    within(async {
        tokio::select! {
            r = &mut conn => panic!("the connection ended early: {r:?}"),
            () = started.notified() => {}
        }
    })
    .await;
    // From here on nobody reads the socket: `conn` is held, never polled again.

    let shutdown = tokio::spawn({
        let w = w.clone();
        async move { w.shutdown().await }
    });
    // Bounded by a plain thread, so a starved runtime cannot hide a hang.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let watchdog = std::thread::spawn(move || done_rx.recv_timeout(Duration::from_secs(10)));
    shutdown.await.unwrap();
    done_tx.send(()).unwrap();
    assert!(watchdog.join().unwrap().is_ok(), "shutdown hung");

    // The node cut the connection rather than leave a task blocked on it: read what is left,
    // and the answers end short of the 32 MiB they would have carried in full.
    drop(send);
    tokio::spawn(conn);
    let mut received = 0;
    for resp in responses {
        let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(10), resp).await else {
            continue;
        };
        let mut body = resp.into_body();
        while let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_secs(10), body.data()).await
        {
            received += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    }
    assert!(
        received < 4 * (8 << 20) - (1 << 20),
        "the connection outlived the shutdown: {received} bytes came"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_call_does_not_start_its_queued_job() {
    let gate = Arc::new(Semaphore::new(0));
    let blocked = Arc::new(Notify::new());
    let ran = Arc::new(AtomicUsize::new(0));
    const COUNT: Handler<(), ()> = Handler::new("test.count");
    let w = {
        let (gate, blocked, ran) = (Arc::clone(&gate), Arc::clone(&blocked), Arc::clone(&ran));
        start(
            worker("one-slot")
                .pool_size(1)
                .handle(WAIT, move |()| {
                    let (gate, blocked) = (Arc::clone(&gate), Arc::clone(&blocked));
                    async move {
                        blocked.notify_one();
                        gate.acquire().await.unwrap().forget();
                    }
                })
                .handle(COUNT, move |()| {
                    ran.fetch_add(1, SeqCst);
                    async {}
                }),
        )
        .await
    };
    // One master that waits long, one that gives up after 300 ms.
    let patient = start(master().call_timeout(Duration::from_secs(8))).await;
    let hasty = start(master().call_timeout(Duration::from_millis(300))).await;
    for m in [&patient, &hasty] {
        within(m.connect(w.local_addr().unwrap())).await.unwrap();
    }
    let node = NodeId::from("one-slot");

    // The only worker is busy; the counted job queues behind it and times out there.
    let busy = {
        let (m, node) = (patient.clone(), node.clone());
        tokio::spawn(async move { m.call(&node, WAIT, ()).await })
    };
    within(blocked.notified()).await;
    assert_eq!(
        within(hasty.call(&node, COUNT, ())).await,
        Err(RemoteError::Timeout)
    );
    // Let the worker go on: the abandoned job's turn comes, then this echo's.
    gate.add_permits(1);
    assert_eq!(within(busy).await.unwrap(), Ok(()));
    assert_eq!(within(patient.call(&node, ECHO, 1)).await, Ok(1));
    assert_eq!(ran.load(SeqCst), 0, "the timed-out job started");
    // The handler itself runs when nobody gives up on it.
    assert_eq!(within(patient.call(&node, COUNT, ())).await, Ok(()));
    assert_eq!(ran.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_argument_fails_only_its_call() {
    let gate = Arc::new(Semaphore::new(0));
    let w = {
        let gate = Arc::clone(&gate);
        start(
            worker("small")
                .max_message(1024)
                .handle(BLOB, |b: Vec<u8>| async move { b.len() })
                .handle(WAIT, move |()| {
                    let gate = Arc::clone(&gate);
                    async move { gate.acquire().await.unwrap().forget() }
                }),
        )
        .await
    };
    let m = start(master()).await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    let node = NodeId::from("small");
    // A call in flight on the same connection while the oversized one fails.
    let waiting = {
        let (m, node) = (m.clone(), node.clone());
        tokio::spawn(async move { m.call(&node, WAIT, ()).await })
    };
    let r = within(m.call(&node, BLOB, vec![0; 4096])).await;
    assert!(matches!(r, Err(RemoteError::TooLarge(_))), "{r:?}");
    assert_eq!(within(m.call(&node, BLOB, vec![0; 100])).await, Ok(100));
    gate.add_permits(1);
    assert_eq!(within(waiting).await.unwrap(), Ok(()));
    assert!(m.is_connected(&node));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_block_a_real_peer() {
    let w = start(worker("besieged").handshake_timeout(Duration::from_millis(500))).await;
    let addr = w.local_addr().unwrap();
    // Hundreds of connections that never say a word.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    assert_eq!(
        within(m.call_least_loaded(WHO, ())).await.unwrap(),
        "besieged"
    );
    // The node closes each of them once the handshake timeout passes (after its own
    // HTTP/2 settings, which it sends first).
    for mut s in idle {
        let mut sink = Vec::new();
        let _closed = within(s.read_to_end(&mut sink)).await;
    }

    // With a connection limit, the ones over it are closed at once and the limit frees up as
    // the half-open ones time out.
    let capped = start(
        worker("capped")
            .max_connections(20)
            .handshake_timeout(Duration::from_millis(300)),
    )
    .await;
    let addr = capped.local_addr().unwrap();
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    for mut s in flood {
        let mut sink = Vec::new();
        let _closed = within(s.read_to_end(&mut sink)).await;
    }
    within(m.connect(addr)).await.unwrap();
    assert_eq!(
        within(m.call(&NodeId::from("capped"), WHO, ()))
            .await
            .unwrap(),
        "capped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_for_a_name_does_not_flap() {
    // Two processes that both call themselves "twin".
    let first = start(worker("twin")).await;
    let second = start(worker("twin")).await;
    let m = start(master()).await;
    within(m.connect(first.local_addr().unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        within(m.connect(second.local_addr().unwrap())).await,
        Err(ConnectError::Rejected(_))
    ));
    // Over several report rounds the first stays the one connected, at its address.
    for _ in 0..5 {
        let changed = m.changed();
        let workers = m.workers();
        assert_eq!(workers.len(), 1);
        assert_eq!(workers[0].addr, first.local_addr().unwrap());
        within(changed).await;
    }
    // When the first goes away, the second may take the name: one at a time, never both.
    first.shutdown().await;
    drop(first);
    until(&m, |m| m.workers().is_empty()).await;
    within(m.connect(second.local_addr().unwrap()))
        .await
        .unwrap();
    let workers = m.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].addr, second.local_addr().unwrap());
}

/// A master holds at most `max_in_flight` calls to one node; the next waits for a place
/// within its own deadline, and a node bounds the streams of one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_to_a_node_are_bounded() {
    let gate = Arc::new(Semaphore::new(0));
    let w = {
        let gate = Arc::clone(&gate);
        start(worker("bounded").handle(WAIT, move |()| {
            let gate = Arc::clone(&gate);
            async move { gate.acquire().await.unwrap().forget() }
        }))
        .await
    };
    let m = start(
        master()
            .max_in_flight(256, 1)
            .call_timeout(Duration::from_secs(8)),
    )
    .await;
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    let node = NodeId::from("bounded");
    let first = {
        let (m, node) = (m.clone(), node.clone());
        tokio::spawn(async move { m.call(&node, WAIT, ()).await })
    };
    until(&m, |m| m.workers().first().is_some_and(|w| w.load > 0.0)).await;
    // The one place is taken: this call waits at the master (the node, with a free worker,
    // would answer it at once), and goes once the first is answered.
    let second = {
        let (m, node) = (m.clone(), node.clone());
        tokio::spawn(async move { m.call(&node, ECHO, 1).await })
    };
    let mut second = std::pin::pin!(second);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut second)
            .await
            .is_err(),
        "the second call went out while the first held the only place"
    );
    gate.add_permits(1);
    assert_eq!(within(first).await.unwrap(), Ok(()));
    assert_eq!(within(second).await.unwrap(), Ok(1));
}

/// A node serves at most `per_connection` streams of one HTTP/2 connection at once: a plain
/// gRPC client that knows the limit and opens more sees the rest wait (HTTP/2's own flow of
/// streams), none refused, and every call answered once places free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_one_connection_are_bounded_by_the_node() {
    use croupier::remote::proto::croupier::v1::{croupier_client::CroupierClient, InvokeRequest};
    const LIMIT: usize = 3;
    const CALLS: usize = 8;
    let gate = Arc::new(Semaphore::new(0));
    // How many calls are in a handler now, and the most there ever were.
    let (running, mut watch) = tokio::sync::watch::channel((0_usize, 0_usize));
    let running = Arc::new(running);
    let w = {
        let (gate, running) = (Arc::clone(&gate), Arc::clone(&running));
        start(
            worker("streams")
                .pool_size(CALLS)
                .max_in_flight(u32::try_from(LIMIT).unwrap(), 1024)
                .handle(WAIT, move |()| {
                    let (gate, running) = (Arc::clone(&gate), Arc::clone(&running));
                    async move {
                        running.send_modify(|(now, most)| {
                            *now += 1;
                            *most = (*most).max(*now);
                        });
                        gate.acquire().await.unwrap().forget();
                        running.send_modify(|(now, _)| *now -= 1);
                    }
                }),
        )
        .await
    };
    let ch = channel(w.local_addr().unwrap(), None).await.unwrap();
    // The node announces its limit in its SETTINGS frame. A client that opens streams before it
    // has read that frame may see the excess refused (RFC 9113, 5.1.2): one answered call first
    // means the client has read it.
    assert_eq!(health(ch.clone()).await, Ok(1), "the node is not serving");
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let mut client = CroupierClient::new(ch.clone());
            tokio::spawn(async move {
                client
                    .invoke(InvokeRequest {
                        handler: "test.wait".to_owned(),
                        args: postcard::to_stdvec(&()).unwrap(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{s:?}"))
            })
        })
        .collect();
    within(watch.wait_for(|&(now, _)| now >= LIMIT))
        .await
        .unwrap();
    // The node's pool has a worker for every call; only the connection's limit holds them.
    assert!(
        tokio::time::timeout(
            Duration::from_millis(200),
            watch.wait_for(|&(now, _)| now > LIMIT)
        )
        .await
        .is_err(),
        "a call beyond the connection's {LIMIT} streams reached a worker"
    );
    gate.add_permits(CALLS);
    for call in calls {
        assert_eq!(within(call).await.unwrap(), Ok(()));
    }
    let (now, most) = *watch.borrow();
    assert_eq!(
        (now, most),
        (0, LIMIT),
        "more than {LIMIT} streams ran at once"
    );
}

/// Forwards `from` to `to` until `frozen` turns true; then holds both ends open and silent,
/// as a peer that vanished without a FIN (a pulled cable, a dead host) would.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0_u8; 16 << 10];
    loop {
        let mut frozen = frozen.clone();
        tokio::select! {
            stop = async { frozen.wait_for(|&f| f).await.is_ok() } => {
                if stop {
                    std::future::pending::<()>().await;
                }
                return;
            }
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// A loopback TCP relay to `target` that can be made to drop everything silently.
async fn relay(target: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (freeze, frozen) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, frozen.clone()));
            tokio::spawn(pump(ro, wi, frozen.clone()));
        }
    });
    (addr, freeze)
}

/// A node that goes silent without closing its connection (no FIN, no RST) is found dead by
/// HTTP/2 keepalive pings: the master takes it out of selection and fails the call waiting on
/// it with `NodeDown`, long before the call's own timeout or the load reports' silence limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_finds_a_silent_peer_dead() {
    let slow_reports = (Duration::from_millis(10), Duration::from_secs(60));
    let w = start(
        worker("silent")
            .report_interval(slow_reports.0, slow_reports.1)
            .handle(WAIT, |()| std::future::pending::<()>()),
    )
    .await;
    let (addr, freeze) = relay(w.local_addr().unwrap()).await;
    let m = start(
        master()
            .report_interval(slow_reports.0, slow_reports.1)
            .call_timeout(Duration::from_secs(60))
            .keepalive(Duration::from_millis(200), Duration::from_millis(300)),
    )
    .await;
    within(m.connect(addr)).await.unwrap();
    let node = NodeId::from("silent");
    assert_eq!(m.get_node(), Some(node.clone()));
    let waiting = {
        let (m, node) = (m.clone(), node.clone());
        tokio::spawn(async move { m.call(&node, WAIT, ()).await })
    };
    until(&m, |m| m.workers().first().is_some_and(|w| w.load > 0.0)).await;

    freeze.send(true).unwrap();
    // GUARD (10 s) bounds both waits: far below the call's 60 s and the reports' 180 s.
    until(&m, |m| !m.is_connected(&node)).await;
    assert_eq!(m.get_node(), None);
    assert_eq!(
        within(waiting).await.unwrap(),
        Err(RemoteError::NodeDown(node))
    );
}

/// A peer's deadline header as long as a `u64` of milliseconds allows (about 585 million
/// years): the node answers the call, and goes on serving others.
#[tokio::test]
async fn a_deadline_header_past_the_clocks_range_costs_nothing() {
    use croupier::remote::proto::croupier::v1::{croupier_client::CroupierClient, InvokeRequest};
    let w = start(worker("far-deadline")).await;
    let addr = w.local_addr().unwrap();
    let ch = within(channel(addr, None)).await.unwrap();
    let mut req = tonic::Request::new(InvokeRequest {
        handler: ECHO.name().into(),
        // postcard's varint of 7u64.
        args: vec![7],
    });
    req.metadata_mut().insert(
        "croupier-deadline-ms",
        u64::MAX.to_string().parse().unwrap(),
    );
    let reply = within(CroupierClient::new(ch).invoke(req))
        .await
        .expect("the call is answered");
    assert_eq!(reply.into_inner().result, vec![7]);
    let m = start(master()).await;
    within(m.connect(addr)).await.unwrap();
    assert_eq!(within(m.call_least_loaded(ECHO, 5)).await, Ok(5));
}
