//! A remote worker node as a [`Member`] of a master's node balancer, and the calls that go
//! to it.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use tonic::Request;

use super::link::Link;
use crate::{
    member::Member,
    remote::{
        auth, deadline,
        error::RemoteError,
        identity::{NodeId, NodeInfo},
        proto::croupier::v1::{croupier_client::CroupierClient, InvokeRequest, TerminateRequest},
        wire::DEADLINE_KEY,
    },
};

/// A worker node as a master sees it: a [`Member`] of the master's node balancer.
///
/// It is alive while connected, not draining, and its ORCA load reports keep coming (a node
/// silent for three of the report intervals it announced is taken out of selection and
/// reconnected, as gRFC A58 expires stale weights).
///
/// Its [`load`](Member::load), in thousandths of a job per pool worker, is this master's own
/// calls in flight to the node, plus the [penalty](crate::FailurePenalty) of their recent
/// failures, plus what the node's last report says *others* queued there (its run queue
/// less this master's calls then) **drained since at the rate the node reported completing
/// jobs**. A report is up to an interval old, and every master reads the same one: taken as
/// it stands, it sends every master to the node that looked idle then (the arena's S9: 16
/// masters with least loaded over "last report + calls sent since" had 83× the ideal p99).
/// Drained at the node's own pace, a report of short jobs fades within a few jobs' time,
/// while one of long jobs (seconds) keeps steering for as long as they run. The report as
/// it came is [`NodeInfo::reported`]. Two `RemoteNode`s are equal when they name the same
/// node.
#[derive(Clone)]
pub struct RemoteNode {
    pub(crate) link: Arc<Link>,
}

impl Member for RemoteNode {
    fn is_alive(&self) -> bool {
        self.link.up.load(Relaxed) && !self.link.draining.load(Relaxed)
    }

    /// This master's calls in flight to the node, plus the penalty of their recent failures,
    /// plus what others queued there as of the last report, drained since at the node's
    /// reported pace, in thousandths per pool worker (see [`RemoteNode`]); 0 while the node
    /// is down (it is never dealt then, and
    /// a drain's idle wait must not wait for a node that cannot answer).
    fn load(&self) -> usize {
        let l = &self.link;
        if !l.up.load(Relaxed) {
            return 0;
        }
        let calls = l
            .calls
            .load(Relaxed)
            .saturating_add(l.penalty.value() as u64);
        let own = calls.saturating_mul(1000) / u64::from(l.pool_size.max(1));
        usize::try_from(own.saturating_add(l.others_now())).unwrap_or(usize::MAX)
    }

    /// The node's name: a key stays with a node across reconnects and membership changes.
    fn affinity_key(&self) -> Option<u64> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        Some(
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one(&self.link.id),
        )
    }
}

impl RemoteNode {
    /// The node's id (its name).
    #[must_use]
    pub fn id(&self) -> &NodeId {
        &self.link.id
    }

    /// What is known of the node now.
    #[must_use]
    pub fn info(&self) -> NodeInfo {
        let l = &self.link;
        NodeInfo {
            id: l.id.clone(),
            addr: l.addr(),
            mode: l.mode,
            tags: l.tags.clone(),
            pool_size: l.pool_size,
            load: self.load() as f64 / 1000.0,
            reported: l.reported.load(Relaxed) as f64 / 1000.0,
            alive: self.is_alive(),
        }
    }

    /// Calls `handler` with encoded `args`, waiting at most `timeout` in all. The call counts
    /// in the node's load until it ends (or is dropped); a failure the node is to blame for
    /// (down, late, its handler failed or its pool refused) adds to its penalty, any other
    /// answer clears it.
    pub(crate) async fn call_raw(
        &self,
        handler: &str,
        args: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        let link = &self.link;
        let _in_flight = InFlight::new(&link.calls);
        let answer = self.call_on(handler, args, timeout).await;
        match &answer {
            Err(
                RemoteError::NodeDown(_)
                | RemoteError::Timeout
                | RemoteError::Remote(_)
                | RemoteError::Busy(_),
            ) => link.penalty.failed(),
            _ => link.penalty.succeeded(),
        }
        answer
    }

    async fn call_on(
        &self,
        handler: &str,
        args: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        let link = &self.link;
        let down = || RemoteError::NodeDown(link.id.clone());
        let timeout = timeout.min(deadline::FAR);
        let deadline = deadline::after(timeout);
        let Some(current) = link.current.load_full() else {
            return Err(down());
        };
        let _permit = tokio::select! {
            () = current.closed.cancelled() => return Err(down()),
            p = tokio::time::timeout_at(deadline, link.in_flight.acquire()) => match p {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(down()),
                Err(_) => return Err(RemoteError::Timeout),
            },
        };
        let mut client = CroupierClient::new(current.channel.clone())
            .max_decoding_message_size(link.max_message)
            .max_encoding_message_size(link.max_message);
        let mut req = Request::new(InvokeRequest {
            handler: handler.to_owned(),
            args,
        });
        // The node holds the deadline and answers DEADLINE_EXCEEDED once it has cancelled the
        // job (see `invoke`); gRPC's `grpc-timeout` a margin later is the node's backstop, and
        // the master waits a margin more for the answer, so that a `Timeout` it returns means
        // the job is cancelled there. Dropping this future resets the stream, which cancels
        // the job too, a moment later.
        let margin = (timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        req.set_timeout(left + margin);
        req.metadata_mut().insert(
            DEADLINE_KEY,
            u64::try_from(left.as_millis()).unwrap_or(u64::MAX).into(),
        );
        auth::present(link.cookie.as_ref(), &mut req);
        tokio::select! {
            () = current.closed.cancelled() => Err(down()),
            r = tokio::time::timeout_at(deadline + margin * 2, client.invoke(req)) => match r {
                Err(_) => Err(RemoteError::Timeout),
                Ok(Ok(reply)) => Ok(reply.into_inner().result),
                Ok(Err(status)) => Err(RemoteError::from_call_status(
                    &status,
                    &link.id,
                    handler,
                    tokio::time::Instant::now() >= deadline,
                )),
            },
        }
    }

    /// Asks the node to stop serving and end (SimpleLocalnet's `terminateSlave`): the request
    /// goes out on a task of `tracker`, and the node is marked gone.
    pub(crate) fn terminate(
        &self,
        tracker: &tokio_util::task::TaskTracker,
        timeout: Duration,
    ) -> Result<(), RemoteError> {
        let link = &self.link;
        let current = link.current.load_full();
        link.gone.cancel();
        let Some(current) = current else {
            return Err(RemoteError::NodeDown(link.id.clone()));
        };
        let mut req = Request::new(TerminateRequest {});
        req.set_timeout(timeout);
        auth::present(link.cookie.as_ref(), &mut req);
        let id = link.id.clone();
        tracker.spawn(async move {
            let told = CroupierClient::new(current.channel.clone())
                .terminate(req)
                .await;
            if let Err(status) = told {
                tracing::warn!(node = %id, error = %status, "croupier could not terminate a node");
            }
        });
        Ok(())
    }
}

/// Counts a call in its node's load while it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(calls: &'a AtomicU64) -> Self {
        calls.fetch_add(1, Relaxed);
        Self(calls)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl PartialEq for RemoteNode {
    fn eq(&self, other: &Self) -> bool {
        self.link.id == other.link.id
    }
}

impl Eq for RemoteNode {}

impl Hash for RemoteNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.link.id.hash(state);
    }
}

impl fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteNode")
            .field("id", &self.link.id)
            .field("addr", &self.link.addr())
            .field("alive", &self.is_alive())
            .field("load", &self.load())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::remote::{
        config::NodeConfig,
        identity::{Local, Mode},
        proto::{croupier::v1::HelloReply, xds::data::orca::v3::OrcaLoadReport},
        wire::metric,
    };
    use crate::{balancer::Balancer, policy::Policy};
    use std::net::SocketAddr;
    use tonic::transport::Endpoint;

    /// A master's identity and default settings.
    fn master() -> (Local, NodeConfig) {
        let local = Local {
            name: "master".into(),
            mode: Mode::Master,
            tags: Vec::new(),
            cookie: None,
            tls: None,
        };
        (local, NodeConfig::default())
    }

    /// A report of `run_queue` jobs on one worker, `rps` completed a second.
    fn report(run_queue: f64, rps: f64) -> OrcaLoadReport {
        OrcaLoadReport {
            rps_fractional: rps,
            named_metrics: HashMap::from([
                (metric::RUN_QUEUE.to_owned(), run_queue),
                (metric::POOL_SIZE.to_owned(), 1.0),
            ]),
            ..OrcaLoadReport::default()
        }
    }

    /// One master's view of `nodes` worker nodes of one worker each, connected (on channels
    /// that never dial) and with a first report of nothing queued.
    fn view(nodes: usize) -> Vec<RemoteNode> {
        let (local, cfg) = master();
        (0..nodes)
            .map(|k| {
                let hello = HelloReply {
                    name: format!("node-{k}"),
                    pool_size: 1,
                    ..HelloReply::default()
                };
                let addr = SocketAddr::from(([127, 0, 0, 1], 1));
                let link = Link::new(addr, &hello, &[], Arc::default(), &local, &cfg);
                let channel = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
                link.attach(channel, &report(0.0, 0.0));
                RemoteNode { link }
            })
            .collect()
    }

    /// How many of `masters` first picks land on each node.
    fn first_picks(masters: &[Balancer<RemoteNode>]) -> HashMap<NodeId, usize> {
        let mut counts = HashMap::new();
        for b in masters {
            *counts.entry(b.pick().unwrap().id().clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Sixteen masters over eight nodes, each with links (and so loads) of its own, as
    /// processes of one cluster have: no node may get more than twice its share of their
    /// picks, whether the nodes look alike (ties) or the last report, long out of date by the
    /// nodes' own pace, says one was idle. A report of long jobs still steers.
    #[tokio::test(start_paused = true)]
    async fn stale_loads_do_not_herd() {
        const MASTERS: usize = 16;
        const NODES: usize = 8;
        let views: Vec<Vec<RemoteNode>> = (0..MASTERS).map(|_| view(NODES)).collect();
        let masters: Vec<Balancer<RemoteNode>> = views
            .iter()
            .enumerate()
            .map(|(m, v)| {
                Balancer::builder()
                    .policy(Policy::LeastLoaded)
                    .seed(m as u64)
                    .source(v.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        let most = 2 * MASTERS / NODES;

        // Ties: every node reported nothing queued.
        let picks = first_picks(&masters);
        assert!(picks.values().all(|&n| n <= most), "ties herd: {picks:?}");

        // Node k reported k jobs queued, completing 1 000 a second: 50 ms on, long done.
        for v in &views {
            for (k, node) in v.iter().enumerate() {
                node.link.apply(&report(k as f64, 1000.0));
            }
        }
        tokio::time::advance(Duration::from_millis(50)).await;
        let picks = first_picks(&masters);
        assert!(
            picks.values().all(|&n| n <= most),
            "a stale report herds: {picks:?}"
        );

        // Node 0 reports four jobs of which none completed over the interval (long jobs):
        // every master keeps off it while that holds.
        for v in &views {
            for (k, node) in v.iter().enumerate() {
                node.link
                    .apply(&report(if k == 0 { 4.0 } else { 0.0 }, 0.0));
            }
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        let picks = first_picks(&masters);
        assert_eq!(picks.get(&NodeId::from("node-0")), None, "{picks:?}");
    }

    /// A node that reports an absurd queue (1e30 jobs, infinity, NaN, a negative rate) reads
    /// as fully loaded: it does not wrap to look idle after a call, and picking never panics
    /// on its load. A master keeps off it while another node has room.
    #[tokio::test(start_paused = true)]
    async fn an_absurd_load_report_does_not_attract_calls() {
        let nodes = view(2);
        let balancer = Balancer::builder()
            .policy(Policy::LeastLoaded)
            .source(nodes.clone())
            .build()
            .unwrap();
        for (queue, rps) in [
            (1e30, 0.0),
            (f64::INFINITY, 1e30),
            (f64::NAN, f64::NAN),
            (1e30, -1.0),
            (f64::MAX, f64::MAX),
        ] {
            nodes[0].link.apply(&report(queue, rps));
            nodes[1].link.apply(&report(0.0, 0.0));
            for calls in 0..3_u64 {
                nodes[0].link.calls.store(calls, Relaxed);
                nodes[1].link.calls.store(calls + 8, Relaxed);
                tokio::time::advance(Duration::from_millis(10)).await;
                let absurd = nodes[0].load();
                assert!(
                    absurd >= nodes[1].load(),
                    "{queue} jobs at {rps}/s, {calls} calls: load {absurd} under the sane node's"
                );
                assert!(nodes[0].info().load >= nodes[1].info().load);
                let picked = balancer.pick().unwrap().id().clone();
                assert_eq!(picked, NodeId::from("node-1"), "{queue} jobs at {rps}/s");
            }
        }
    }

    /// A worker that announces an absurd pool size is believed up to `MAX_POOL_SIZE`
    /// (`on_all_worker_cores` makes one call per announced worker), and one that announces
    /// none counts as one.
    #[test]
    fn an_announced_pool_size_is_bounded() {
        let (local, cfg) = master();
        for (announced, believed) in [
            (u32::MAX, super::super::link::MAX_POOL_SIZE),
            (0, 1),
            (8, 8),
        ] {
            let hello = HelloReply {
                name: "w".into(),
                pool_size: announced,
                ..HelloReply::default()
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], 1));
            let link = Link::new(addr, &hello, &[], Arc::default(), &local, &cfg);
            assert_eq!(link.pool_size, believed);
        }
    }

    /// A node's load is this master's calls in flight per pool worker, in thousandths, and
    /// its info shows it in jobs per worker.
    #[tokio::test(start_paused = true)]
    async fn load_is_calls_in_flight_per_pool_worker() {
        let (local, cfg) = master();
        let hello = HelloReply {
            name: "w".into(),
            pool_size: 4,
            ..HelloReply::default()
        };
        let link = Link::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            &hello,
            &[],
            Arc::default(),
            &local,
            &cfg,
        );
        link.attach(
            Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
            &report(0.0, 0.0),
        );
        let node = RemoteNode { link };
        node.link.calls.store(2, Relaxed);
        assert_eq!(node.load(), 500);
        assert_eq!(node.info().load, 0.5);
        // A report of 8 jobs queued on the 4 workers (2 each), 10 completed a second (2.5
        // each), with this master's 2 calls in flight (0.5 each): others' 1.5 a worker,
        // drained at 2.5 a second; 100 ms on, 1.25 are left.
        let mut four = report(8.0, 10.0);
        four.named_metrics.insert(metric::POOL_SIZE.to_owned(), 4.0);
        node.link.apply(&four);
        assert_eq!(node.load(), 500 + 1_500);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(node.load(), 500 + 1_250);
        // A report that says the node drains takes it out of selection; the next brings it
        // back.
        assert!(node.is_alive());
        let mut draining = report(0.0, 0.0);
        draining
            .named_metrics
            .insert(metric::DRAINING.to_owned(), 1.0);
        node.link.apply(&draining);
        assert!(!node.is_alive());
        node.link.apply(&report(0.0, 0.0));
        assert!(node.is_alive());
        // A call that ends, however it ends, no longer counts.
        node.link.calls.store(0, Relaxed);
        let failed = node
            .call_raw("test.echo", Vec::new(), Duration::from_secs(1))
            .await;
        assert!(failed.is_err(), "nothing listens there");
        assert_eq!(node.link.calls.load(Relaxed), 0);
    }
}
