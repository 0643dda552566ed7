//! Cluster features: DNS discovery, worker logs at the master, and the seed functions
//! (Skitter's per-core calls, OTP pool's get_nodes/attach, connection and master queries).
#![cfg(feature = "remote")]

mod common_remote;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common_remote::{master, start, until, within, worker, WHO};
use croupier::remote::{Dns, Handler, NodeId, WORKER_LOG_TARGET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_a_name() {
    let a = start(worker("dns-a")).await;
    let b = start(worker("dns-b")).await;
    // A name whose answer the test changes, as a headless service's does when pods come
    // and go.
    let answer: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(vec![a.local_addr().unwrap()]));
    let resolve: croupier::remote::Resolve = {
        let answer = Arc::clone(&answer);
        Arc::new(move || {
            let now = answer.lock().unwrap().clone();
            Box::pin(async move { Ok(now) })
        })
    };
    let m =
        start(master().discovery(
            Dns::with_resolver("workers.test", resolve).every(Duration::from_millis(50)),
        ))
        .await;
    until(&m, |m| m.workers().len() == 1).await;
    assert_eq!(m.workers()[0].id, NodeId::from("dns-a"));

    // The name now points at b only: a goes, b comes.
    *answer.lock().unwrap() = vec![b.local_addr().unwrap()];
    until(&m, |m| {
        let ids: Vec<_> = m.workers().into_iter().map(|w| w.id).collect();
        ids == [NodeId::from("dns-b")]
    })
    .await;
    assert_eq!(m.get_nodes(), [NodeId::from("dns-b")]);
    assert_eq!(within(m.call_least_loaded(WHO, ())).await.unwrap(), "dns-b");

    // The system resolver, on a real name.
    let port = a.local_addr().unwrap().port();
    let sys = start(
        master().discovery(Dns::new(format!("localhost:{port}")).every(Duration::from_millis(50))),
    )
    .await;
    until(&sys, |m| m.workers().len() == 1).await;
    assert_eq!(sys.workers()[0].id, NodeId::from("dns-a"));
}

/// A layer that keeps the events a master emits for its workers' records.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(String, String)>>>, Arc<tokio::sync::Notify>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != WORKER_LOG_TARGET {
            return;
        }
        #[derive(Default)]
        struct Fields(String, String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "node" => self.0 = format!("{v:?}"),
                    "message" => self.1 = format!("{v:?}"),
                    _ => {}
                }
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                if f.name() == "node" {
                    self.0 = v.to_owned();
                } else {
                    self.record_debug(f, &v);
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push((fields.0, fields.1));
        self.1.notify_one();
    }
}

#[tokio::test]
async fn worker_logs_reach_the_master() {
    use tracing_subscriber::layer::SubscriberExt;
    const SHOUT: Handler<String, ()> = Handler::new("test.shout");
    let captured = Captured::default();
    // One thread: the worker's and the master's tasks all log through this subscriber.
    let subscriber = tracing_subscriber::registry()
        .with(croupier::remote::LogLayer::new())
        .with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = start(worker("chatty").handle(SHOUT, |words: String| async move {
        tracing::warn!(answer = 42, "{words}");
    }))
    .await;
    let m = start(master()).await;
    m.redirect_logs_here();
    within(m.connect(w.local_addr().unwrap())).await.unwrap();
    // The log stream is open once connect returns: one call, one event, heard.
    m.call_least_loaded(SHOUT, "hello from the worker".into())
        .await
        .unwrap();
    within(async {
        loop {
            let heard = captured.0.lock().unwrap().iter().any(|(node, msg)| {
                node == "chatty"
                    && msg.contains("hello from the worker")
                    && msg.contains("answer=42")
            });
            if heard {
                return;
            }
            captured.1.notified().await;
        }
    })
    .await;
    // The master's own re-emitted events are not forwarded again: every captured event came
    // from the worker's node.
    assert!(captured
        .0
        .lock()
        .unwrap()
        .iter()
        .all(|(node, _)| node == "chatty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_functions_have_counterparts() {
    const SLOT: Handler<(), String> = Handler::new("test.slot");
    let slot = |name: &'static str| {
        worker(name)
            .pool_size(3)
            .handle(SLOT, move |()| async move {
                format!("{name}:{:?}", std::thread::current().id())
            })
    };
    let a = start(slot("cores-a").tags(["gpu"])).await;
    let b = start(slot("cores-b")).await;
    let m = start(master()).await;
    within(m.attach(a.local_addr().unwrap())).await.unwrap();
    within(m.connect(b.local_addr().unwrap())).await.unwrap();
    assert_eq!(
        m.get_nodes(),
        [NodeId::from("cores-a"), NodeId::from("cores-b")]
    );
    assert!(m.is_connected(&NodeId::from("cores-a")));
    assert!(!m.is_connected(&NodeId::from("nobody")));
    assert_eq!(a.masters(), [NodeId::from("master")]);

    // Once per pool worker of every worker node, grouped by node.
    let per_core = within(m.on_all_worker_cores(SLOT, ())).await;
    let shape: Vec<_> = per_core
        .iter()
        .map(|(id, r)| (id.to_string(), r.len()))
        .collect();
    assert_eq!(shape, [("cores-a".into(), 3), ("cores-b".into(), 3)]);
    for (id, results) in &per_core {
        for r in results {
            assert!(r.as_ref().unwrap().starts_with(id.as_str()));
        }
    }
    let tagged = within(m.on_tagged_worker_cores("gpu", SLOT, ())).await;
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].0, NodeId::from("cores-a"));
    assert_eq!(tagged[0].1.len(), 3);

    let twice = within(m.n_times_on_all_workers(2, WHO, ())).await;
    assert_eq!(twice.len(), 2);
    for (id, results) in &twice {
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.as_deref() == Ok(id.as_str())));
    }
    // Terminating all forgets all.
    assert_eq!(m.terminate_all_workers(), 2);
    within(a.terminated()).await;
    within(b.terminated()).await;
    assert!(m.get_nodes().is_empty());
}
