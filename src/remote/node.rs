//! [`Node`]: one process's place in a cluster.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use backon::BackoffBuilder;
use futures_util::future::join_all;
use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::{
    net::{TcpListener, ToSocketAddrs},
    sync::{watch, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic_health::{server::HealthReporter, ServingStatus};

use super::{
    discovery::{self, Discovery, DiscoveryEvent},
    handler::{self, HandlerWorker, Registry},
    link::{self, Link, RemoteNode},
    listener::Bounds,
    proto::croupier::v1 as pb,
    service, ConnectError, Cookie, Handler, RemoteError, StartError, Tls,
};
use crate::{
    balancer::{Balancer, Wait},
    error::DrainError,
    member::Member,
    policy::Policy,
    pool::Pool,
};

/// What a node does in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Mode {
    /// Selects worker nodes and calls them.
    Master,
    /// Serves its local pool to masters.
    Worker,
    /// Both.
    Both,
}

impl Mode {
    /// Whether the node serves calls.
    #[must_use]
    pub fn serves(self) -> bool {
        matches!(self, Self::Worker | Self::Both)
    }

    /// Whether the node selects and calls others.
    #[must_use]
    pub fn calls(self) -> bool {
        matches!(self, Self::Master | Self::Both)
    }
}

/// A node's name, unique in its cluster.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", &*self.0)
    }
}

/// What a master knows of a worker node.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Its name.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its mode.
    pub mode: Mode,
    /// Its tags.
    pub tags: Vec<String>,
    /// How many workers its pool runs.
    pub pool_size: u32,
    /// Its load as this master weighs it when it selects a node: its own calls in flight to
    /// the node, plus the penalty of their recent failures, per pool worker.
    pub load: f64,
    /// Jobs queued or running per pool worker, as the node last reported (every report
    /// interval at most); not used to select a node (see [`RemoteNode`]).
    pub reported: f64,
    /// Whether it is connected and reporting.
    pub alive: bool,
}

/// Timeouts and limits; set through [`NodeBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    /// The largest invoke message (arguments or result), each way.
    pub(crate) max_message: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) call_timeout: Duration,
    /// Load reports go out at most this often...
    pub(crate) report_min: Duration,
    /// ...and at least this often (the heartbeat).
    pub(crate) report_max: Duration,
    /// How long `shutdown` lets the pool and the open calls finish.
    pub(crate) shutdown_grace: Duration,
    /// Open connections a serving node accepts at once.
    pub(crate) max_connections: usize,
    /// Concurrent streams (calls) per connection.
    pub(crate) max_streams: u32,
    /// Calls in flight from this master to one node.
    pub(crate) max_in_flight: usize,
    /// HTTP/2 keepalive: a ping after this much idle time...
    pub(crate) keepalive: Duration,
    /// ...and the connection is dead if its answer takes longer than this.
    pub(crate) keepalive_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_message: 4 << 20,
            handshake_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            report_min: Duration::from_millis(100),
            report_max: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1024,
            max_streams: 256,
            max_in_flight: 1024,
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
        }
    }
}

/// The smallest `max_message` a node accepts: its hello and load reports must fit.
const MIN_MESSAGE: usize = 1024;

impl NodeConfig {
    /// Refuses the settings that cannot work: no connection or call allowed at all, or more
    /// than a tokio semaphore counts. Caps every duration at thirty years, as good as for
    /// ever and short enough for any clock (and for hyper's keepalive) to add.
    fn check(&mut self) -> Result<(), StartError> {
        for d in [
            &mut self.handshake_timeout,
            &mut self.call_timeout,
            &mut self.report_min,
            &mut self.report_max,
            &mut self.shutdown_grace,
            &mut self.keepalive,
            &mut self.keepalive_timeout,
        ] {
            *d = (*d).min(super::deadline::FAR);
        }
        if self.max_message < MIN_MESSAGE {
            return Err(StartError::Setting {
                setting: "max_message",
                must: format!(
                    "{} bytes leave no room for the node's own messages (hello, load reports): \
                     use at least {MIN_MESSAGE}",
                    self.max_message
                ),
            });
        }
        if self.keepalive.min(self.keepalive_timeout) < Duration::from_millis(1) {
            return Err(StartError::Setting {
                setting: "keepalive",
                must: format!(
                    "a ping every {:?}, dead after {:?}: use at least 1 ms for both (a zero \
                     interval pings without rest, a zero timeout kills every connection)",
                    self.keepalive, self.keepalive_timeout
                ),
            });
        }
        if self.report_min < Duration::from_millis(1) {
            return Err(StartError::Setting {
                setting: "report_interval",
                must: format!(
                    "reports at most every {:?} would never rest: use a min of at least 1 ms",
                    self.report_min
                ),
            });
        }
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        let counts = [
            ("max_connections", self.max_connections),
            (
                "max_in_flight",
                usize::try_from(self.max_streams).unwrap_or(usize::MAX),
            ),
            ("max_in_flight", self.max_in_flight),
        ];
        for (setting, n) in counts {
            if n == 0 || n > most {
                return Err(StartError::Setting {
                    setting,
                    must: format!("must be between 1 and {most}, not {n}"),
                });
            }
        }
        Ok(())
    }
}

/// Who this node is, as it says in its hello.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) cookie: Option<Cookie>,
    pub(crate) tls: Option<Tls>,
}

/// What a node's tasks share. Tasks hold this; the last [`Node`] handle stops them.
pub(crate) struct NodeShared {
    pub(crate) local: Local,
    pub(crate) cfg: NodeConfig,
    pub(crate) registry: Registry,
    pub(crate) pool: Option<Pool<HandlerWorker>>,
    /// Every worker node known, up or down. Slow path only.
    peers: Arc<Mutex<Vec<RemoteNode>>>,
    /// Selects among `peers`.
    balancer: Balancer<RemoteNode>,
    /// Reconnecting tasks by address, to stop one when discovery removes it.
    keepers: Mutex<HashMap<SocketAddr, CancellationToken>>,
    /// Stops the node: no new connections, streams end, the server shuts down gracefully.
    pub(crate) stop: CancellationToken,
    /// Ends every connection at once: fired when the grace period is over.
    kill: CancellationToken,
    pub(crate) tracker: TaskTracker,
    local_addr: Option<SocketAddr>,
    advertiser: Mutex<Option<mdns_sd::ServiceDaemon>>,
    /// Bumped on every change of the worker nodes' set, liveness or load.
    changes: Arc<watch::Sender<u64>>,
    /// grpc.health.v1 statuses.
    pub(crate) health: HealthReporter,
    /// Calls this node's pool has answered (for the rate in ORCA reports).
    pub(crate) completed: std::sync::atomic::AtomicU64,
    /// The masters that said hello to this node, by name.
    pub(crate) masters: Mutex<BTreeSet<String>>,
    /// Whether this master wants its workers' logs.
    logs_here: watch::Sender<bool>,
}

/// One process's place in a croupier cluster: a master, a worker, or both.
///
/// A node is a cheap handle (an `Arc` inside). Dropping the last handle stops its tasks;
/// [`shutdown`](Node::shutdown) does so and waits for them.
///
/// See the [module documentation](super) for an example.
#[derive(Clone)]
pub struct Node {
    handle: Arc<Handle>,
}

/// Stops the node's tasks when the last `Node` goes.
struct Handle {
    shared: Arc<NodeShared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.shared.kill.cancel();
        if let Some(daemon) = self.shared.advertiser.lock().take() {
            let _ = daemon.shutdown();
        }
    }
}

/// Configures a [`Node`]; made by [`Node::builder`].
#[must_use = "a builder does nothing until .start()"]
pub struct NodeBuilder {
    name: String,
    mode: Mode,
    listen: Option<String>,
    cookie: Option<Cookie>,
    tls: Option<Tls>,
    tags: Vec<String>,
    registry: Registry,
    pool_size: usize,
    policy: Policy,
    discovery: Option<Box<dyn Discovery>>,
    advertise: bool,
    cfg: NodeConfig,
}

/// The mode as the protocol carries it.
pub(crate) fn mode_to_wire(mode: Mode) -> i32 {
    match mode {
        Mode::Master => pb::Mode::Master as i32,
        Mode::Worker => pb::Mode::Worker as i32,
        Mode::Both => pb::Mode::Both as i32,
    }
}

/// The mode the protocol carries, if it is one.
pub(crate) fn mode_from_wire(mode: i32) -> Option<Mode> {
    match pb::Mode::try_from(mode).ok()? {
        pb::Mode::Master => Some(Mode::Master),
        pb::Mode::Worker => Some(Mode::Worker),
        pb::Mode::Both => Some(Mode::Both),
        pb::Mode::Unspecified => None,
    }
}

/// One result per run of a handler, grouped by node.
pub type ByNode<O> = Vec<(NodeId, Vec<Result<O, RemoteError>>)>;

impl Node {
    /// Starts configuring a node called `name` (unique in its cluster). By default it is a
    /// master that listens nowhere.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            mode: Mode::Master,
            listen: None,
            cookie: None,
            tls: None,
            tags: Vec::new(),
            registry: Registry::new(),
            pool_size: std::thread::available_parallelism().map_or(1, |n| n.get()),
            policy: Policy::LeastLoaded,
            discovery: None,
            advertise: false,
            cfg: NodeConfig::default(),
        }
    }

    fn shared(&self) -> &Arc<NodeShared> {
        &self.handle.shared
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        NodeId::from(self.shared().local.name.as_str())
    }

    /// The address this node listens on, if it serves.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared().local_addr
    }

    /// The balancer that selects among this master's worker nodes.
    #[must_use]
    pub fn balancer(&self) -> &Balancer<RemoteNode> {
        &self.shared().balancer
    }

    /// Connects to the worker node at `addr`, and keeps reconnecting (jittered exponential
    /// backoff) if the connection drops, until the node is removed or terminated.
    ///
    /// One connection per node name: while a node of the same name is connected from another
    /// address, this one is refused ([`ConnectError::Rejected`]), so two processes of one name
    /// never take turns.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`] saying why the first attempt failed; nothing is kept then.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> Result<NodeInfo, ConnectError> {
        let shared = self.shared();
        if !shared.local.mode.calls() {
            return Err(ConnectError::Rejected(
                "this node is not a master; only masters connect".into(),
            ));
        }
        let addr = tokio::net::lookup_host(addr)
            .await
            .map_err(ConnectError::NotConnected)?
            .next()
            .ok_or_else(|| ConnectError::NotConnected(std::io::ErrorKind::NotFound.into()))?;
        let (link, attached) = shared.establish(addr, &[]).await?;
        let info = RemoteNode {
            link: Arc::clone(&link),
        }
        .info();
        if let Some(attached) = attached {
            shared.keep(addr, Vec::new(), Some(attached));
        }
        Ok(info)
    }

    /// Connects to the worker node at `addr` (OTP `pool:attach/1`); the same as
    /// [`connect`](Node::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Node::connect).
    pub async fn attach(&self, addr: impl ToSocketAddrs) -> Result<NodeInfo, ConnectError> {
        self.connect(addr).await
    }

    /// The worker nodes connected and reporting now.
    pub fn workers(&self) -> Vec<NodeInfo> {
        self.shared().live().iter().map(RemoteNode::info).collect()
    }

    /// Every worker node this master knows, up or down, by name (OTP `pool:get_nodes/0`).
    pub fn get_nodes(&self) -> Vec<NodeId> {
        let mut ids: Vec<_> = self
            .shared()
            .peers
            .lock()
            .iter()
            .map(|p| p.id().clone())
            .collect();
        ids.sort();
        ids
    }

    /// Whether worker node `node` is connected and reporting now.
    #[must_use]
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.shared().find(node).is_some_and(|p| p.is_alive())
    }

    /// The masters that have said hello to this node, by name (Skitter's `master`). A
    /// worker usually has one.
    pub fn masters(&self) -> Vec<NodeId> {
        self.shared()
            .masters
            .lock()
            .iter()
            .map(|n| NodeId::from(n.as_str()))
            .collect()
    }

    /// The live worker nodes that carry `tag`.
    pub fn workers_with_tag(&self, tag: &str) -> Vec<NodeInfo> {
        self.workers()
            .into_iter()
            .filter(|w| w.tags.iter().any(|t| t == tag))
            .collect()
    }

    /// Every tag of the live worker nodes.
    pub fn tags(&self) -> BTreeSet<String> {
        self.workers().into_iter().flat_map(|w| w.tags).collect()
    }

    /// The worker node with the lowest load as this master sees it (its calls in flight; see
    /// [`RemoteNode`]), by this master's policy (OTP's `pool:get_node/0`); `None` when none is live.
    pub fn get_node(&self) -> Option<NodeId> {
        self.balancer().pick().ok().map(|n| n.id().clone())
    }

    /// Runs handler `h` with `args` on node `node`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::UnknownNode`], [`RemoteError::NodeDown`], [`RemoteError::Timeout`],
    /// [`RemoteError::UnknownHandler`], [`RemoteError::Remote`], [`RemoteError::TooLarge`],
    /// [`RemoteError::Busy`], or an encoding error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call on the node: a job still queued there never
    /// starts, and a running handler's future is dropped.
    pub async fn call<A, O>(
        &self,
        node: &NodeId,
        h: Handler<A, O>,
        args: A,
    ) -> Result<O, RemoteError>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let peer = self
            .shared()
            .find(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.clone()))?;
        self.call_on(&peer, h, &args).await
    }

    /// Runs handler `h` on the worker node with the lowest expected load (OTP's `pspawn`, as
    /// a call). A node found down before the call was sent is passed over for another.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NoNodes`] when no worker is live; otherwise as [`call`](Node::call).
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call).
    pub async fn call_least_loaded<A, O>(&self, h: Handler<A, O>, args: A) -> Result<O, RemoteError>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let attempts = self.shared().peers.lock().len() + 1;
        for _ in 0..attempts {
            let Ok(picked) = self.balancer().pick() else {
                return Err(RemoteError::NoNodes);
            };
            let peer = picked.cloned();
            drop(picked);
            if !peer.is_alive() {
                continue;
            }
            return self.call_on(&peer, h, &args).await;
        }
        Err(RemoteError::NoNodes)
    }

    async fn call_on<A, O>(
        &self,
        peer: &RemoteNode,
        h: Handler<A, O>,
        args: &A,
    ) -> Result<O, RemoteError>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let bytes = postcard::to_stdvec(args).map_err(|e| RemoteError::Encode(e.to_string()))?;
        let reply = peer
            .call_raw(h.name(), bytes, self.shared().cfg.call_timeout)
            .await?;
        handler::decode_exact(&reply).map_err(RemoteError::Decode)
    }

    /// Runs `h` on each of `nodes` at once; one result per node, in order.
    pub async fn on_many<A, O>(
        &self,
        nodes: &[NodeId],
        h: Handler<A, O>,
        args: A,
    ) -> Vec<(NodeId, Result<O, RemoteError>)>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let calls = nodes.iter().map(|n| {
            let args = &args;
            async move {
                let result = match self.shared().find(n) {
                    Some(peer) => self.call_on(&peer, h, args).await,
                    None => Err(RemoteError::UnknownNode(n.clone())),
                };
                (n.clone(), result)
            }
        });
        join_all(calls).await
    }

    /// Runs `h` on every live worker node at once.
    pub async fn on_all_workers<A, O>(
        &self,
        h: Handler<A, O>,
        args: A,
    ) -> Vec<(NodeId, Result<O, RemoteError>)>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let ids: Vec<_> = self.workers().into_iter().map(|w| w.id).collect();
        self.on_many(&ids, h, args).await
    }

    /// Runs `h` on every live worker node tagged `tag`, at once.
    pub async fn on_tagged_workers<A, O>(
        &self,
        tag: &str,
        h: Handler<A, O>,
        args: A,
    ) -> Vec<(NodeId, Result<O, RemoteError>)>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let ids: Vec<_> = self
            .workers_with_tag(tag)
            .into_iter()
            .map(|w| w.id)
            .collect();
        self.on_many(&ids, h, args).await
    }

    /// Runs `h` `n` times, spread round robin over the live worker nodes (in name order), all
    /// at once; one result per run, in order.
    pub async fn on_n<A, O>(
        &self,
        n: usize,
        h: Handler<A, O>,
        args: A,
    ) -> Vec<(NodeId, Result<O, RemoteError>)>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let live = self.shared().live();
        if live.is_empty() {
            return Vec::new();
        }
        let calls = (0..n).map(|i| {
            let peer = live[i % live.len()].clone();
            let args = &args;
            async move { (peer.id().clone(), self.call_on(&peer, h, args).await) }
        });
        join_all(calls).await
    }

    /// Runs `h` `n` times on every live worker node, all at once (Skitter's
    /// `on_all_workers` with a count); results grouped by node, in name order.
    pub async fn n_times_on_all_workers<A, O>(
        &self,
        n: usize,
        h: Handler<A, O>,
        args: A,
    ) -> ByNode<O>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        self.runs_on(&self.shared().live(), |_| n, h, &args).await
    }

    /// Runs `h` once per pool worker of every live worker node, all at once (Skitter's "on
    /// every core of every worker"); results grouped by node, in name order. The calls of one
    /// node arrive together, so its least-loaded pool deals them one per worker.
    pub async fn on_all_worker_cores<A, O>(&self, h: Handler<A, O>, args: A) -> ByNode<O>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        self.runs_on(
            &self.shared().live(),
            |p| p.link.pool_size as usize,
            h,
            &args,
        )
        .await
    }

    /// Runs `h` once per pool worker of every live worker node tagged `tag`, all at once.
    pub async fn on_tagged_worker_cores<A, O>(
        &self,
        tag: &str,
        h: Handler<A, O>,
        args: A,
    ) -> ByNode<O>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let live: Vec<_> = self
            .shared()
            .live()
            .into_iter()
            .filter(|p| p.link.tags.iter().any(|t| t == tag))
            .collect();
        self.runs_on(&live, |p| p.link.pool_size as usize, h, &args)
            .await
    }

    async fn runs_on<A, O>(
        &self,
        peers: &[RemoteNode],
        times: impl Fn(&RemoteNode) -> usize,
        h: Handler<A, O>,
        args: &A,
    ) -> ByNode<O>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        let per_node = peers.iter().map(|peer| {
            let runs = (0..times(peer)).map(move |_| self.call_on(peer, h, args));
            async move { (peer.id().clone(), join_all(runs).await) }
        });
        join_all(per_node).await
    }

    /// Asks worker node `node` to stop serving and end (its [`terminated`](Node::terminated)
    /// resolves), and forgets it. The request goes out in the background.
    ///
    /// # Errors
    ///
    /// [`RemoteError::UnknownNode`], or [`RemoteError::NodeDown`] if it is not connected
    /// (it is forgotten all the same).
    pub fn terminate_worker(&self, node: &NodeId) -> Result<(), RemoteError> {
        let shared = self.shared();
        let peer = shared
            .find(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.clone()))?;
        let told = peer.terminate(&shared.tracker, shared.cfg.handshake_timeout);
        shared.forget(&peer);
        told
    }

    /// Asks every known worker node to end; returns how many were told.
    pub fn terminate_all_workers(&self) -> usize {
        self.get_nodes()
            .iter()
            .filter(|id| self.terminate_worker(id).is_ok())
            .count()
    }

    /// Streams the log events of every worker node, connected now or later, into this
    /// process's `tracing` (SimpleLocalnet's `redirectLogsHere`): each arrives as an event with
    /// target [`WORKER_LOG_TARGET`](super::WORKER_LOG_TARGET), its level, and the worker's name
    /// in the field `node`. Workers capture their events with [`LogLayer`](super::LogLayer).
    ///
    /// For a node connected after this call, the stream is open by the time
    /// [`connect`](Node::connect) returns: nothing it logs from then on is missed (up to the
    /// bounded buffer; see [`LogLayer`](super::LogLayer)). Nodes already connected open theirs
    /// in the background.
    pub fn redirect_logs_here(&self) {
        self.shared().logs_here.send_replace(true);
    }

    /// Waits until something changes among this master's worker nodes: one is added,
    /// removed, goes up or down, or reports its load.
    ///
    /// It subscribes when called, not when first polled: a change made after this call is
    /// seen even if it comes before the future is awaited. So "subscribe, then check, then
    /// wait" misses nothing:
    ///
    /// ```no_run
    /// # #[allow(dead_code)] async fn f(master: croupier::remote::Node) {
    /// loop {
    ///     let changed = master.changed();
    ///     if master.workers().len() >= 2 {
    ///         break;
    ///     }
    ///     changed.await;
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shared().changes.subscribe();
        async move {
            let _ = rx.changed().await;
        }
    }

    /// Resolves once the node has stopped: by [`shutdown`](Node::shutdown), or terminated
    /// by a master.
    pub async fn terminated(&self) {
        self.shared().stop.cancelled().await;
    }

    /// Pauses this worker node's pool for maintenance, as [`Pool::apply_within`] does: no
    /// new job is dealt, the node waits up to `idle_within` for the jobs under way, runs
    /// `maintenance`, and resumes. Meanwhile its health (grpc.health.v1) reads NOT_SERVING and
    /// its load reports say it drains, so masters leave it out of selection.
    ///
    /// A node that serves no pool has nothing to drain: it runs `maintenance` at once.
    ///
    /// # Errors
    ///
    /// [`DrainError`] as [`Pool::apply_within`]: jobs not done in time (maintenance not run),
    /// a panic, or a nested call.
    pub async fn apply_within<T, F, Fut>(
        &self,
        idle_within: Duration,
        maintenance: F,
    ) -> Result<T, DrainError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let shared = self.shared();
        let Some(pool) = &shared.pool else {
            return Ok(maintenance().await);
        };
        shared.set_health(ServingStatus::NotServing).await;
        let done = pool
            .apply_within(Wait::idle(idle_within), maintenance)
            .await;
        if !shared.stop.is_cancelled() {
            shared.set_health(ServingStatus::Serving).await;
        }
        done
    }

    /// Stops the node: it stops accepting, reads NOT_SERVING, ends its streams, and lets its
    /// pool and the calls under way finish for up to the
    /// [grace period](NodeBuilder::shutdown_grace); then it cuts every connection left (a
    /// peer that stopped reading included) and waits for its tasks. Always returns.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        shared.stop.cancel();
        shared.set_health(ServingStatus::NotServing).await;
        if let Some(daemon) = shared.advertiser.lock().take() {
            let _ = daemon.shutdown();
        }
        shared.tracker.close();
        let grace = shared.cfg.shutdown_grace;
        let pool = async {
            if let Some(pool) = &shared.pool {
                pool.shutdown().await;
            }
        };
        let finished = tokio::time::timeout(
            grace,
            futures_util::future::join(pool, shared.tracker.wait()),
        )
        .await;
        if finished.is_err() {
            tracing::warn!(node = %shared.local.name, "croupier node did not finish within its grace period; cutting its connections");
        }
        shared.kill.cancel();
        if tokio::time::timeout(grace, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = %shared.local.name, "croupier node's tasks did not end after its connections were cut");
        }
    }
}

/// A connection whose link is marked up: its connection, load stream, and log stream if this
/// master wants its workers' logs.
type Attached = (
    Arc<Link>,
    Arc<link::Current>,
    tonic::Streaming<super::proto::xds::data::orca::v3::OrcaLoadReport>,
    Option<tonic::Streaming<pb::LogRecord>>,
);

impl NodeShared {
    async fn set_health(&self, status: ServingStatus) {
        self.health.set_service_status("", status).await;
        self.health
            .set_service_status(super::SERVICE_NAME, status)
            .await;
    }

    /// Connects to `addr`, says hello, adopts the node it finds there (or refuses a second
    /// connection for a name already up elsewhere), and opens its load stream. `None` for the
    /// connection when the node was already up at that address.
    async fn establish(
        &self,
        addr: SocketAddr,
        extra_tags: &[String],
    ) -> Result<(Arc<Link>, Option<Attached>), ConnectError> {
        let hello = link::hello(addr, &self.local, &self.cfg).await?;
        let link = self.adopt(addr, &hello.reply, extra_tags)?;
        if link.is_up() {
            return Ok((link, None));
        }
        let (reports, first) = link::open_reports(&hello.channel, &self.local, &self.cfg).await?;
        // Open before the node counts as connected, so that its logs flow from then on.
        let wanted = *self.logs_here.borrow();
        let logs = match wanted {
            false => None,
            true => Some(
                link.open_logs(&hello.channel)
                    .await
                    .map_err(|s| ConnectError::Rejected(format!("the log stream: {s}")))?,
            ),
        };
        let current = link.attach(hello.channel, &first);
        Ok((Arc::clone(&link), Some((link, current, reports, logs))))
    }

    /// The link for the node that said `hello`, made if new (then the balancer refreshes).
    /// Tags a discovery source gave (a hosts file's) are added to the node's own.
    fn adopt(
        &self,
        addr: SocketAddr,
        hello: &pb::HelloReply,
        extra_tags: &[String],
    ) -> Result<Arc<Link>, ConnectError> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.iter().find(|p| p.id().as_str() == hello.name) {
            let link = &p.link;
            let at = link.addr();
            if at != addr {
                if link.is_up() {
                    return Err(ConnectError::Rejected(format!(
                        "a node named {:?} is already connected from {at}",
                        hello.name
                    )));
                }
                link.set_addr(addr);
            }
            // It may have come back with another report interval.
            link.heartbeat_ms
                .store(hello.heartbeat_ms, std::sync::atomic::Ordering::Relaxed);
            return Ok(Arc::clone(link));
        }
        let link = Link::new(
            addr,
            hello,
            extra_tags,
            Arc::clone(&self.changes),
            &self.local,
            &self.cfg,
        );
        peers.push(RemoteNode {
            link: Arc::clone(&link),
        });
        drop(peers);
        self.balancer.refresh();
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(link)
    }

    fn find(&self, id: &NodeId) -> Option<RemoteNode> {
        self.peers.lock().iter().find(|p| p.id() == id).cloned()
    }

    /// The live worker nodes, in name order.
    fn live(&self) -> Vec<RemoteNode> {
        let mut live: Vec<_> = self
            .peers
            .lock()
            .iter()
            .filter(|p| p.is_alive())
            .cloned()
            .collect();
        live.sort_by(|a, b| a.id().cmp(b.id()));
        live
    }

    /// Drops a node from the list and stops reconnecting to it.
    fn forget(&self, peer: &RemoteNode) {
        peer.link.gone.cancel();
        self.peers.lock().retain(|p| p != peer);
        if let Some(k) = self.keepers.lock().remove(&peer.link.addr()) {
            k.cancel();
        }
        self.balancer.refresh();
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Keeps a connection to `addr`: runs `first` if given, then reconnects with jittered
    /// exponential backoff whenever it drops, until the node is forgotten or this node stops.
    /// The backoff starts over only after a connection that stayed up for a while, so a node
    /// that accepts and drops at once is retried ever more slowly.
    fn keep(self: &Arc<Self>, addr: SocketAddr, tags: Vec<String>, first: Option<Attached>) {
        let token = self.stop.child_token();
        if let Some(old) = self.keepers.lock().insert(addr, token.clone()) {
            old.cancel();
        }
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            let mut first = first;
            let mut delays = Reconnect::new(shared.cfg.report_max);
            loop {
                let attempt = match first.take() {
                    Some(attached) => Ok(Some(attached)),
                    None => shared.establish(addr, &tags).await.map(|(_, a)| a),
                };
                match attempt {
                    Ok(Some((link, current, reports, logs))) => {
                        let since = tokio::time::Instant::now();
                        let logs = shared.follow_logs(&link, &current, logs);
                        let run = link.run(&current, reports, &token);
                        futures_util::future::join(run, logs).await;
                        if link.gone.is_cancelled() || token.is_cancelled() {
                            return;
                        }
                        delays.connection_ended(since.elapsed());
                        tracing::warn!(node = %link.id, %addr, "croupier node down; reconnecting");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "croupier could not connect; retrying");
                    }
                }
                let delay = delays.next_delay();
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        });
    }

    /// Follows the node's log stream on `current` (`opened` already, or once this master
    /// wants its workers' logs), until the connection ends.
    async fn follow_logs(
        &self,
        link: &Link,
        current: &link::Current,
        opened: Option<tonic::Streaming<pb::LogRecord>>,
    ) {
        let stream = match opened {
            Some(stream) => stream,
            None => {
                let mut wanted = self.logs_here.subscribe();
                tokio::select! {
                    () = current.closed.cancelled() => return,
                    w = wanted.wait_for(|on| *on) => if w.is_err() { return },
                }
                let opened = tokio::select! {
                    () = current.closed.cancelled() => return,
                    s = link.open_logs(&current.channel) => s,
                };
                match opened {
                    Ok(stream) => stream,
                    Err(status) => {
                        tracing::warn!(node = %link.id, error = %status, "croupier node refused its log stream");
                        return;
                    }
                }
            }
        };
        link.follow_logs(current, stream).await;
    }

    /// Follows a discovery's events: connects to added nodes, forgets removed ones.
    fn follow(self: &Arc<Self>, mut events: tokio::sync::mpsc::UnboundedReceiver<DiscoveryEvent>) {
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            loop {
                let event = tokio::select! {
                    () = shared.stop.cancelled() => return,
                    e = events.recv() => match e { Some(e) => e, None => return },
                };
                match event {
                    DiscoveryEvent::Added { addr, tags } => {
                        if !shared.keepers.lock().contains_key(&addr) {
                            shared.keep(addr, tags, None);
                        }
                    }
                    DiscoveryEvent::Removed { addr } => {
                        let peer = shared
                            .peers
                            .lock()
                            .iter()
                            .find(|p| p.link.addr() == addr)
                            .cloned();
                        match peer {
                            Some(peer) => shared.forget(&peer),
                            None => {
                                if let Some(k) = shared.keepers.lock().remove(&addr) {
                                    k.cancel();
                                }
                            }
                        }
                    }
                }
            }
        });
    }
}

/// When to try a node again: 100 ms doubled per failure in a row, at most 5 s, each plus a
/// random jitter of up to itself
/// (backon's exponential backoff). It starts over only after a connection that stayed up
/// `stable` (three report intervals, at least 1 s), so a node that accepts and drops at once
/// is retried ever more slowly instead of in a tight loop.
struct Reconnect {
    delays: backon::ExponentialBackoff,
    stable: Duration,
}

impl Reconnect {
    fn new(report_max: Duration) -> Self {
        Self {
            delays: Self::fresh(),
            stable: report_max.saturating_mul(3).max(Duration::from_secs(1)),
        }
    }

    fn fresh() -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// A connection ended after being up for `lived`.
    fn connection_ended(&mut self, lived: Duration) {
        if lived >= self.stable {
            self.delays = Self::fresh();
        }
    }

    fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(Duration::from_secs(5))
    }
}

impl NodeBuilder {
    /// Master, worker or both; [`Mode::Master`] by default.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Where the node listens, as `host:port` (port 0 picks a free one): required for a
    /// worker. A master that listens answers hellos with its mode, which connectors refuse
    /// ([`ConnectError::ModeMismatch`]). Listening anywhere but loopback needs
    /// [`tls`](NodeBuilder::tls).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// The cluster's shared secret, sent with every request and compared in constant time; a
    /// node with a cookie and one without cannot talk. Optional: over TLS, certificates
    /// already authenticate both ends.
    pub fn cookie(mut self, cookie: impl Into<Cookie>) -> Self {
        self.cookie = Some(cookie.into());
        self
    }

    /// TLS with mutual authentication, both when serving and when connecting: required to
    /// listen on, or connect to, anything but loopback.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Tags masters can select this worker by.
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Registers `f` as handler `h`: masters may then call it by name. It runs on the node's
    /// pool; a panic in it fails that one call with [`RemoteError::Remote`]. When the caller
    /// goes away (its deadline passed, or it dropped the call), a job not yet started never
    /// starts, and a running one's future is dropped at its next `.await`.
    pub fn handle<A, O, F, Fut>(mut self, h: Handler<A, O>, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
    {
        self.registry.insert(h.name(), handler::erase(f));
        self
    }

    /// Workers in the node's pool; the number of CPUs by default.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// How a master selects worker nodes; [`Policy::LeastLoaded`] by default (OTP's `pool`).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Where a master finds worker nodes, besides [`Node::connect`].
    pub fn discovery(mut self, d: impl Discovery) -> Self {
        self.discovery = Some(Box::new(d));
        self
    }

    /// Advertises this worker over mDNS for [`Mdns`](super::Mdns) discovery.
    pub fn advertise(mut self, on: bool) -> Self {
        self.advertise = on;
        self
    }

    /// How long a call may take in all (its gRPC deadline, which the node enforces); 30 s by
    /// default. The master waits a tenth longer (20 ms to 1 s) for the node's answer, so a
    /// [`RemoteError::Timeout`] means the node has cancelled the job.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.cfg.call_timeout = d;
        self
    }

    /// How long [`Node::shutdown`] lets the pool and open calls finish; 5 s by default.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.cfg.shutdown_grace = d;
        self
    }

    /// How long a connection may take to connect and say hello, and a peer's TLS handshake
    /// and HTTP/2 preface may take; 5 s by default.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.cfg.handshake_timeout = d;
        self
    }

    /// The largest call message (arguments or result) accepted or sent; 4 MiB by default. A
    /// larger one fails only its own call, with [`RemoteError::TooLarge`]. At least 1 KiB
    /// ([`start`](NodeBuilder::start) refuses less): the node's own messages must fit.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.cfg.max_message = bytes;
        self
    }

    /// The old name of [`max_message`](NodeBuilder::max_message), from when calls travelled
    /// in frames.
    #[deprecated(note = "use max_message: calls are gRPC messages now")]
    pub fn max_frame(self, bytes: usize) -> Self {
        self.max_message(bytes)
    }

    /// How many connections a serving node holds open at once (1024 by default); more are
    /// closed as they arrive. Connections that do not finish their TLS handshake and HTTP/2
    /// preface within the [handshake timeout](NodeBuilder::handshake_timeout) are closed.
    /// [`start`](NodeBuilder::start) refuses 0 and more than `Semaphore::MAX_PERMITS`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.cfg.max_connections = n;
        self
    }

    /// How many calls may run at once on one connection (256 by default; HTTP/2's concurrent
    /// streams), and from this master to one node (1024 by default; more wait within their
    /// deadline). [`start`](NodeBuilder::start) refuses 0 and more than
    /// `Semaphore::MAX_PERMITS`.
    pub fn max_in_flight(mut self, per_connection: u32, per_node: usize) -> Self {
        self.cfg.max_streams = per_connection;
        self.cfg.max_in_flight = per_node;
        self
    }

    /// HTTP/2 keepalive: a ping after `interval` of silence, and the connection is dead when
    /// its answer takes longer than `timeout`. 10 s and 5 s by default; at least 1 ms each
    /// ([`start`](NodeBuilder::start) refuses less).
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.cfg.keepalive = interval;
        self.cfg.keepalive_timeout = timeout;
        self
    }

    /// Load reports go out when the load changes, at most every `min` and at least every
    /// `max` (the heartbeat); a master takes a node silent for `3 × max` out of selection.
    /// 100 ms and 1 s by default; `min` at least 1 ms ([`start`](NodeBuilder::start) refuses
    /// less).
    pub fn report_interval(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.report_min = min;
        self.cfg.report_max = max.max(min);
        self
    }

    /// Starts the node: its pool and gRPC server if it serves, its discovery if it calls.
    ///
    /// # Errors
    ///
    /// A [`StartError`]: no or a bad listen address for a worker, a non-loopback address
    /// without TLS, TLS settings that cannot be used, a socket that cannot be bound, a pool
    /// that refuses its settings, or a discovery that cannot start.
    pub async fn start(mut self) -> Result<Node, StartError> {
        self.cfg.check()?;
        let acceptor = match &self.tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(
                tls.server_config().map_err(StartError::Tls)?,
            )),
            None => None,
        };
        let listener = match (self.mode.serves(), &self.listen) {
            (false, None) => None,
            (true, None) => return Err(StartError::NoListenAddress),
            (_, Some(addr)) => {
                let parsed = tokio::net::lookup_host(addr.as_str())
                    .await
                    .map_err(|_| StartError::BadAddress(addr.clone()))?
                    .next()
                    .ok_or_else(|| StartError::BadAddress(addr.clone()))?;
                if !parsed.ip().is_loopback() && self.tls.is_none() {
                    return Err(StartError::InsecureListen(parsed));
                }
                Some(
                    TcpListener::bind(parsed)
                        .await
                        .map_err(StartError::Listen)?,
                )
            }
        };
        let pool = match self.mode.serves() {
            false => None,
            true => Some(
                Pool::builder(|_| HandlerWorker)
                    .size(self.pool_size)
                    .policy(Policy::LeastLoaded)
                    .intensity(u32::MAX, Duration::from_secs(1))
                    .start()
                    .map_err(StartError::Pool)?,
            ),
        };
        let peers: Arc<Mutex<Vec<RemoteNode>>> = Arc::default();
        let balancer = {
            let peers = Arc::clone(&peers);
            Balancer::builder()
                .policy(self.policy)
                .source(move || peers.lock().clone())
                .build()
                .expect("the default ratio and no max_load are valid")
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let health = HealthReporter::new();
        let shared = Arc::new(NodeShared {
            local: Local {
                name: self.name,
                mode: self.mode,
                tags: self.tags,
                cookie: self.cookie,
                tls: self.tls,
            },
            cfg: self.cfg,
            registry: self.registry,
            pool,
            peers,
            balancer,
            keepers: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            kill: CancellationToken::new(),
            tracker: TaskTracker::new(),
            local_addr,
            advertiser: Mutex::new(None),
            changes: Arc::new(watch::channel(0).0),
            health,
            completed: std::sync::atomic::AtomicU64::new(0),
            masters: Mutex::new(BTreeSet::new()),
            logs_here: watch::channel(false).0,
        });
        if let Some(listener) = listener {
            let serving = if shared.local.mode.serves() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            shared.set_health(serving).await;
            let bounds = Bounds {
                connections: Arc::new(Semaphore::new(shared.cfg.max_connections)),
                handshake: shared.cfg.handshake_timeout,
                tls: acceptor,
                stop: shared.stop.clone(),
                kill: shared.kill.clone(),
            };
            shared
                .tracker
                .spawn(service::serve(Arc::clone(&shared), listener, bounds));
        }
        if let (true, Some(addr)) = (self.advertise, local_addr) {
            let daemon = discovery::advertise(&shared.local.name, addr, &shared.local.tags)
                .map_err(StartError::Discovery)?;
            *shared.advertiser.lock() = Some(daemon);
        }
        if let Some(d) = self.discovery {
            if shared.local.mode.calls() {
                shared.follow(d.start().map_err(StartError::Discovery)?);
            }
        }
        Ok(Node {
            handle: Arc::new(Handle { shared }),
        })
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared();
        f.debug_struct("Node")
            .field("name", &s.local.name)
            .field("mode", &s.local.mode)
            .field("local_addr", &s.local_addr)
            .field("workers", &s.peers.lock().len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("listen", &self.listen)
            .field("tags", &self.tags)
            .field("tls", &self.tls.is_some())
            .field("handlers", &self.registry.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jitter adds up to the base delay again: a delay of base `b` lies in `[b, 2b]`.
    fn within_jitter(d: Duration, base_ms: u64) -> bool {
        d >= Duration::from_millis(base_ms) && d <= Duration::from_millis(2 * base_ms)
    }

    #[test]
    fn reconnect_backs_off_and_does_not_reset_on_a_connection_that_dies_at_once() {
        let mut r = Reconnect::new(Duration::from_millis(500));
        assert!(within_jitter(r.next_delay(), 100));
        assert!(within_jitter(r.next_delay(), 200));
        // Up for 10 ms, then gone: the next delay keeps growing.
        r.connection_ended(Duration::from_millis(10));
        assert!(within_jitter(r.next_delay(), 400));
        r.connection_ended(Duration::from_millis(1400));
        assert!(
            within_jitter(r.next_delay(), 800),
            "1.4 s is under the 1.5 s that count"
        );
        for _ in 0..10 {
            r.next_delay();
        }
        assert!(within_jitter(r.next_delay(), 5000), "capped at 5 s");
        // Up for three report intervals: it starts over.
        r.connection_ended(Duration::from_millis(1500));
        assert!(within_jitter(r.next_delay(), 100));
    }
}
