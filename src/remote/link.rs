//! The calling side: remote worker nodes as [`Member`]s, their connections, and calls.

use std::{
    error::Error as _,
    fmt,
    hash::{Hash, Hasher},
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::{
    transport::{Channel, Endpoint},
    Code, Request, Status, Streaming,
};

use super::{
    auth,
    node::{mode_from_wire, mode_to_wire},
    proto::{
        croupier::v1::{
            croupier_client::CroupierClient, HelloReply, HelloRequest, InvokeRequest, LogsRequest,
            TerminateRequest,
        },
        xds::{
            data::orca::v3::OrcaLoadReport,
            service::orca::v3::{
                open_rca_service_client::OpenRcaServiceClient, OrcaLoadReportRequest,
            },
        },
    },
    service::metric,
    ConnectError, Local, Mode, NodeConfig, NodeId, NodeInfo, RemoteError, VERSION,
};
use crate::member::Member;

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

/// One remote node's state; kept across reconnections.
pub(crate) struct Link {
    pub(crate) id: NodeId,
    addr: Mutex<SocketAddr>,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) pool_size: u32,
    /// Connected and reporting. Relaxed: a liveness flag; calls go through `current`.
    up: AtomicBool,
    /// Its last report said it drains.
    draining: AtomicBool,
    /// Last reported load, in thousandths per pool worker.
    reported: AtomicU64,
    /// This master's calls to it that have not ended yet (waiting for a permit included).
    calls: AtomicU64,
    /// The last report's run queue less this master's calls then, in thousandths per pool
    /// worker: what others had queued there.
    others: AtomicU64,
    /// The jobs per second the last report said the node completed, in thousandths per
    /// pool worker: how fast `others` drains.
    drain_rate: AtomicU64,
    /// When the last report came, in nanoseconds after `epoch` on tokio's clock.
    reported_at: AtomicU64,
    epoch: tokio::time::Instant,
    /// The penalty of this master's recent failed calls to it.
    penalty: crate::FailurePenalty,
    /// The connection calls go on; empty while down.
    current: ArcSwapOption<Current>,
    /// Bounds the calls in flight to this node.
    in_flight: Semaphore,
    /// The report interval the node announced in its last hello, in ms: silence for three of
    /// them takes it out of selection.
    pub(crate) heartbeat_ms: AtomicU64,
    /// Cancelled when the node is removed or terminated: stop reconnecting.
    pub(crate) gone: CancellationToken,
    /// Bumped when this node goes up or down or reports its load: what `Node::changed`
    /// waits on.
    changes: Arc<watch::Sender<u64>>,
    cookie: Option<auth::Cookie>,
    max_message: usize,
}

/// One connection to a node.
pub(crate) struct Current {
    pub(crate) channel: Channel,
    /// Cancelled when the connection is given up: calls on it fail at once.
    pub(crate) closed: CancellationToken,
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
        let timeout = timeout.min(super::deadline::FAR);
        let deadline = super::deadline::after(timeout);
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
            super::service::DEADLINE_KEY,
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

/// A connection that said hello, before its load stream is open.
pub(crate) struct Hello {
    pub(crate) channel: Channel,
    pub(crate) reply: HelloReply,
}

/// Connects to `addr` and says hello, within the handshake timeout.
pub(crate) async fn hello(
    addr: SocketAddr,
    local: &Local,
    cfg: &NodeConfig,
) -> Result<Hello, ConnectError> {
    if !addr.ip().is_loopback() && local.tls.is_none() {
        return Err(ConnectError::Insecure(addr));
    }
    let attempt = async {
        let scheme = if local.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ConnectError::NotConnected(io::Error::other(chain(&e))))?
            .connect_timeout(cfg.handshake_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(cfg.keepalive)
            .keep_alive_timeout(cfg.keepalive_timeout)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(2 << 20);
        if let Some(tls) = &local.tls {
            endpoint = endpoint
                .tls_config(tls.client_config(addr))
                .map_err(|e| ConnectError::NotConnected(io::Error::other(chain(&e))))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ConnectError::NotConnected(io::Error::other(chain(&e))))?;
        let mut req = Request::new(HelloRequest {
            name: local.name.clone(),
            mode: mode_to_wire(local.mode),
            version: VERSION,
        });
        auth::present(local.cookie.as_ref(), &mut req);
        let reply = CroupierClient::new(channel.clone())
            .hello(req)
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        if reply.version != VERSION {
            return Err(ConnectError::Incompatible {
                ours: VERSION,
                theirs: reply.version,
            });
        }
        let mode = mode_from_wire(reply.mode).ok_or(ConnectError::NotCroupier)?;
        if !mode.serves() {
            return Err(ConnectError::ModeMismatch);
        }
        if reply.name == local.name {
            return Err(ConnectError::Rejected(format!(
                "the node at {addr} has this node's own name, {:?}",
                reply.name
            )));
        }
        Ok(Hello { channel, reply })
    };
    tokio::time::timeout(cfg.handshake_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// Opens the node's ORCA stream and reads its first report, within the handshake timeout.
pub(crate) async fn open_reports(
    channel: &Channel,
    local: &Local,
    cfg: &NodeConfig,
) -> Result<(Streaming<OrcaLoadReport>, OrcaLoadReport), ConnectError> {
    let attempt = async {
        let mut req = Request::new(OrcaLoadReportRequest {
            report_interval: prost_types::Duration::try_from(cfg.report_min).ok(),
            request_cost_names: Vec::new(),
        });
        auth::present(local.cookie.as_ref(), &mut req);
        let mut reports = OpenRcaServiceClient::new(channel.clone())
            .stream_core_metrics(req)
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        match reports.message().await {
            Ok(Some(first)) => Ok((reports, first)),
            Ok(None) => Err(ConnectError::NotCroupier),
            Err(s) => Err(refusal(&s)),
        }
    };
    tokio::time::timeout(cfg.handshake_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// What a refused hello means.
fn refusal(s: &Status) -> ConnectError {
    match s.code() {
        Code::Unauthenticated | Code::PermissionDenied => ConnectError::Unauthenticated,
        Code::AlreadyExists | Code::FailedPrecondition => {
            ConnectError::Rejected(s.message().to_owned())
        }
        Code::Unavailable => ConnectError::NotConnected(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            status_chain(s),
        )),
        _ => ConnectError::NotCroupier,
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn status_chain(s: &Status) -> String {
    match s.source() {
        Some(inner) => format!("{}: {}", s.message(), chain(inner)),
        None => s.message().to_owned(),
    }
}

impl Link {
    pub(crate) fn new(
        addr: SocketAddr,
        hello: &HelloReply,
        extra_tags: &[String],
        changes: Arc<watch::Sender<u64>>,
        local: &Local,
        cfg: &NodeConfig,
    ) -> Arc<Self> {
        let mut tags = hello.tags.clone();
        for t in extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        Arc::new(Self {
            id: NodeId::from(hello.name.as_str()),
            addr: Mutex::new(addr),
            mode: mode_from_wire(hello.mode).unwrap_or(Mode::Worker),
            tags,
            pool_size: hello.pool_size,
            up: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            reported: AtomicU64::new(0),
            heartbeat_ms: AtomicU64::new(hello.heartbeat_ms),
            calls: AtomicU64::new(0),
            others: AtomicU64::new(0),
            drain_rate: AtomicU64::new(0),
            reported_at: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            penalty: crate::FailurePenalty::new(),
            current: ArcSwapOption::empty(),
            in_flight: Semaphore::new(cfg.max_in_flight),
            gone: CancellationToken::new(),
            changes,
            cookie: local.cookie.clone(),
            max_message: cfg.max_message,
        })
    }

    /// Nanoseconds since the link was made, on tokio's clock.
    fn now(&self) -> u64 {
        crate::penalty::nanos_since(self.epoch)
    }

    /// What others queued on the node as of the last report, less what the node has
    /// completed since at its reported rate; reads the clock only while something is left.
    fn others_now(&self) -> u64 {
        let others = self.others.load(Relaxed);
        if others == 0 {
            return 0;
        }
        let age = self.now().saturating_sub(self.reported_at.load(Relaxed));
        let drained = u128::from(self.drain_rate.load(Relaxed)) * u128::from(age) / 1_000_000_000;
        others.saturating_sub(u64::try_from(drained).unwrap_or(u64::MAX))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        *self.addr.lock()
    }

    pub(crate) fn set_addr(&self, addr: SocketAddr) {
        *self.addr.lock() = addr;
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Applies a load report.
    fn apply(&self, r: &OrcaLoadReport) {
        let get = |k: &str| r.named_metrics.get(k).copied().unwrap_or(0.0);
        let run_queue = get(metric::RUN_QUEUE).max(0.0);
        let pool = get(metric::POOL_SIZE).max(1.0);
        // Thousandths of a job per worker; f64 to u64 saturates (and NaN is 0).
        let reported = (run_queue * 1000.0 / pool) as u64;
        self.reported.store(reported, Relaxed);
        let mine = self.calls.load(Relaxed).saturating_mul(1000) / u64::from(self.pool_size.max(1));
        self.others.store(reported.saturating_sub(mine), Relaxed);
        let rate = r.rps_fractional.max(0.0) * 1000.0 / pool;
        self.drain_rate.store(rate as u64, Relaxed);
        self.reported_at.store(self.now(), Relaxed);
        self.draining.store(get(metric::DRAINING) > 0.0, Relaxed);
    }

    /// Marks the node up on a new connection whose first report is `first`: calls can be
    /// sent at once.
    pub(crate) fn attach(&self, channel: Channel, first: &OrcaLoadReport) -> Arc<Current> {
        let current = Arc::new(Current {
            channel,
            closed: CancellationToken::new(),
        });
        self.apply(first);
        self.current.store(Some(Arc::clone(&current)));
        self.up.store(true, Relaxed);
        self.changed();
        current
    }

    /// Follows one connection's load reports until it closes, goes silent for three of the
    /// node's report intervals, the node is removed, or `cancel` fires; then marks the node
    /// down and fails the calls still on that connection.
    pub(crate) async fn run(
        &self,
        current: &Current,
        mut reports: Streaming<OrcaLoadReport>,
        cancel: &CancellationToken,
    ) {
        let silence = silence_limit(self.heartbeat_ms.load(Relaxed));
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => break,
                () = self.gone.cancelled() => break,
                next = tokio::time::timeout(silence, reports.message()) => next,
            };
            match next {
                Err(_silent) => {
                    tracing::warn!(node = %self.id, "croupier node's load reports stopped; taking it out of selection");
                    break;
                }
                Ok(Ok(Some(report))) => {
                    self.apply(&report);
                    self.changed();
                }
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    tracing::warn!(node = %self.id, error = %status_chain(&status), "croupier node's connection failed");
                    break;
                }
            }
        }
        self.up.store(false, Relaxed);
        self.current.store(None);
        current.closed.cancel();
        self.changed();
    }

    /// Opens the node's log stream on `channel`: once this returns, the node is sending.
    pub(crate) async fn open_logs(
        &self,
        channel: &Channel,
    ) -> Result<Streaming<super::proto::croupier::v1::LogRecord>, Status> {
        let mut req = Request::new(LogsRequest {});
        auth::present(self.cookie.as_ref(), &mut req);
        Ok(CroupierClient::new(channel.clone())
            .logs(req)
            .await?
            .into_inner())
    }

    /// Streams the node's log records into this process's `tracing` until the connection
    /// closes.
    pub(crate) async fn follow_logs(
        &self,
        current: &Current,
        mut stream: Streaming<super::proto::croupier::v1::LogRecord>,
    ) {
        loop {
            let next = tokio::select! {
                () = current.closed.cancelled() => return,
                next = stream.message() => next,
            };
            match next {
                Ok(Some(record)) => super::logs::emit(self.id.as_str(), &record),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// How long a node that announced a report interval of `heartbeat_ms` may stay silent before
/// it is taken out of selection: three of its intervals, the announced one held between 1 ms
/// and 10 minutes.
pub(crate) fn silence_limit(heartbeat_ms: u64) -> Duration {
    Duration::from_millis(heartbeat_ms.clamp(1, 600_000)) * 3
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{Balancer, Policy};

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
        let (local, cfg) = (
            Local {
                name: "master".into(),
                mode: Mode::Master,
                tags: Vec::new(),
                cookie: None,
                tls: None,
            },
            NodeConfig::default(),
        );
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
}
