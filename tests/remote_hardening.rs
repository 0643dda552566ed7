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

/// Waits on a grpc.health.v1 `Watch` of the node's overall status until it reads `want`
/// (1 SERVING, 2 NOT_SERVING).
async fn health_becomes(ch: &Channel, want: i32) {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let mut stream = within(HealthClient::new(ch.clone()).watch(HealthCheckRequest {
        service: String::new(),
    }))
    .await
    .unwrap()
    .into_inner();
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
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    // A grace period far beyond `within`'s bound: waiting it out fails the test.
    let w = start(worker("w").shutdown_grace(Duration::from_secs(600))).await;
    let ch = channel(w.local_addr().unwrap()).await;
    let mut watch = within(HealthClient::new(ch).watch(HealthCheckRequest {
        service: String::new(),
    }))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(within(watch.message()).await.unwrap().unwrap().status, 1);
    within(w.shutdown()).await;
    // The watcher sees its stream end (cleanly or not) instead of hanging: `within` fails
    // the test on a hang.
    within(async { while let Ok(Some(_)) = watch.message().await {} }).await;
}
