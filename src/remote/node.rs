//! [`Node`]: one process's place in a cluster.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use futures_util::future::join_all;
use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::{
    net::{TcpListener, ToSocketAddrs},
    sync::watch,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    discovery::{self, Discovery, DiscoveryEvent},
    handler::{self, HandlerWorker, Registry},
    peer::{self, Link, RemoteNode, Welcome},
    server,
    wire::Transport,
    ConnectError, Cookie, Handler, RemoteError, StartError,
};
use crate::{Balancer, Member, Policy, Pool};

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
    /// Its expected load: jobs queued or running per pool worker, as last reported plus the
    /// calls sent since.
    pub load: f64,
    /// Whether it is connected and reporting.
    pub alive: bool,
}

/// Timeouts and limits; set through [`NodeBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub(crate) max_frame: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) call_timeout: Duration,
    /// Load reports go out at most this often...
    pub(crate) report_min: Duration,
    /// ...and at least this often (the heartbeat; masters ping as often).
    pub(crate) report_max: Duration,
    /// How long `shutdown` lets the pool finish its queued work.
    pub(crate) shutdown_grace: Duration,
}

/// Who this node is, as it says in its hello.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) cookie: Option<Cookie>,
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
    pub(crate) stop: CancellationToken,
    pub(crate) tracker: TaskTracker,
    local_addr: Option<SocketAddr>,
    advertiser: Mutex<Option<mdns_sd::ServiceDaemon>>,
    /// Bumped on every change of the worker nodes' set, liveness or load.
    changes: Arc<watch::Sender<u64>>,
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
    }
}

/// Configures a [`Node`]; made by [`Node::builder`].
#[must_use = "a builder does nothing until .start()"]
pub struct NodeBuilder {
    name: String,
    mode: Mode,
    listen: Option<String>,
    cookie: Option<Cookie>,
    tags: Vec<String>,
    registry: Registry,
    pool_size: usize,
    policy: Policy,
    discovery: Option<Box<dyn Discovery>>,
    advertise: bool,
    cfg: NodeConfig,
}

impl Node {
    /// Starts configuring a node called `name` (unique in its cluster). By default it is a
    /// master that listens nowhere.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            mode: Mode::Master,
            listen: None,
            cookie: None,
            tags: Vec::new(),
            registry: Registry::new(),
            pool_size: std::thread::available_parallelism().map_or(1, |n| n.get()),
            policy: Policy::LeastLoaded,
            discovery: None,
            advertise: false,
            cfg: NodeConfig {
                max_frame: 16 << 20,
                handshake_timeout: Duration::from_secs(5),
                call_timeout: Duration::from_secs(30),
                report_min: Duration::from_millis(100),
                report_max: Duration::from_secs(1),
                shutdown_grace: Duration::from_secs(5),
            },
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

    /// Connects to the worker node at `addr`, and keeps reconnecting (jittered backoff) if the
    /// connection drops, until the node is removed or terminated.
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
        let (transport, welcome) = peer::connect(addr, &shared.local, &shared.cfg).await?;
        let link = shared.adopt(addr, &welcome, &[]);
        let outbox = link.attach();
        let info = RemoteNode {
            link: Arc::clone(&link),
        }
        .info();
        shared.keep(addr, Vec::new(), Some((transport, link, outbox)));
        Ok(info)
    }

    /// The worker nodes connected and reporting now.
    pub fn workers(&self) -> Vec<NodeInfo> {
        self.shared().live().iter().map(RemoteNode::info).collect()
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

    /// The worker node with the lowest expected load (OTP's `pool:get_node/0`), by this
    /// master's policy; `None` when none is live.
    pub fn get_node(&self) -> Option<NodeId> {
        self.balancer().pick().ok().map(|n| n.id().clone())
    }

    /// Runs handler `h` with `args` on node `node`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::UnknownNode`], [`RemoteError::NodeDown`], [`RemoteError::Timeout`],
    /// [`RemoteError::UnknownHandler`], [`RemoteError::Remote`], or an encoding error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future withdraws the call and asks the node to cancel it.
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
        super::wire::decode_exact(&reply).map_err(RemoteError::Decode)
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
        let mut live = self.shared().live();
        live.sort_by(|a, b| a.id().cmp(b.id()));
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

    /// Asks worker node `node` to stop serving and end (its [`terminated`](Node::terminated)
    /// resolves), and forgets it.
    ///
    /// # Errors
    ///
    /// [`RemoteError::UnknownNode`], or [`RemoteError::NodeDown`] if it could not be told.
    pub fn terminate_worker(&self, node: &NodeId) -> Result<(), RemoteError> {
        let shared = self.shared();
        let peer = shared
            .find(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.clone()))?;
        let told = peer.terminate();
        shared.forget(&peer);
        told
    }

    /// Asks every known worker node to end; returns how many were told.
    pub fn terminate_all_workers(&self) -> usize {
        let peers = self.shared().peers.lock().clone();
        peers
            .iter()
            .filter(|p| self.terminate_worker(p.id()).is_ok())
            .count()
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

    /// Stops the node: closes its connections, stops its pool (letting queued work finish
    /// for up to the [grace period](NodeBuilder::shutdown_grace); what is left then is
    /// abandoned), and waits for its tasks.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        shared.stop.cancel();
        if let Some(daemon) = shared.advertiser.lock().take() {
            let _ = daemon.shutdown();
        }
        shared.tracker.close();
        shared.tracker.wait().await;
        if let Some(pool) = &shared.pool {
            if tokio::time::timeout(shared.cfg.shutdown_grace, pool.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(node = %shared.local.name, "croupier node's pool did not finish within the grace period");
            }
        }
    }
}

impl NodeShared {
    /// The link for the node that sent `w`, made if new (then the balancer refreshes).
    /// Tags a discovery source gave (a hosts file's) are added to the node's own.
    fn adopt(&self, addr: SocketAddr, w: &Welcome, extra_tags: &[String]) -> Arc<Link> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.iter().find(|p| p.id().as_str() == w.name) {
            // It may have come back with another heartbeat.
            p.link
                .heartbeat_ms
                .store(w.heartbeat_ms, std::sync::atomic::Ordering::Relaxed);
            return Arc::clone(&p.link);
        }
        let link = Link::new(addr, w, extra_tags, Arc::clone(&self.changes));
        peers.push(RemoteNode {
            link: Arc::clone(&link),
        });
        drop(peers);
        self.balancer.refresh();
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
        link
    }

    fn find(&self, id: &NodeId) -> Option<RemoteNode> {
        self.peers.lock().iter().find(|p| p.id() == id).cloned()
    }

    fn live(&self) -> Vec<RemoteNode> {
        self.peers
            .lock()
            .iter()
            .filter(|p| p.is_alive())
            .cloned()
            .collect()
    }

    /// Drops a node from the list and stops reconnecting to it.
    fn forget(&self, peer: &RemoteNode) {
        peer.link.gone.cancel();
        self.peers.lock().retain(|p| p != peer);
        if let Some(k) = self.keepers.lock().remove(&peer.link.addr) {
            k.cancel();
        }
        self.balancer.refresh();
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Keeps a connection to `addr`: runs `first` if given, then reconnects with jittered
    /// backoff whenever it drops, until the node is forgotten or this node stops.
    fn keep(self: &Arc<Self>, addr: SocketAddr, tags: Vec<String>, first: Option<Attached>) {
        let token = self.stop.child_token();
        if let Some(old) = self.keepers.lock().insert(addr, token.clone()) {
            old.cancel();
        }
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            let mut first = first;
            let mut failures = 0_u32;
            loop {
                let attempt = match first.take() {
                    Some(attached) => Ok(attached),
                    None => peer::connect(addr, &shared.local, &shared.cfg)
                        .await
                        .map(|(transport, welcome)| {
                            let link = shared.adopt(addr, &welcome, &tags);
                            let outbox = link.attach();
                            (transport, link, outbox)
                        }),
                };
                match attempt {
                    Ok((transport, link, outbox)) => {
                        failures = 0;
                        link.run(transport, outbox, &shared.cfg, &token).await;
                        if link.gone.is_cancelled() {
                            return;
                        }
                        tracing::warn!(node = %link.id, %addr, "croupier node down; reconnecting");
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::debug!(%addr, error = %e, failures, "croupier could not connect; retrying");
                    }
                }
                let delay = backoff(failures);
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        });
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
                            .find(|p| p.link.addr == addr)
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

/// A connection whose link is marked up, with the queue of frames for it.
type Attached = (
    Transport,
    Arc<Link>,
    tokio::sync::mpsc::UnboundedReceiver<super::wire::Frame>,
);

/// 100 ms doubled per failure in a row, at most 5 s, jittered to 50–150 %.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(5));
    let mut r = [0_u8; 2];
    let jitter = match getrandom::fill(&mut r) {
        Ok(()) => f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    base.mul_f64(0.5 + jitter)
}

impl NodeBuilder {
    /// Master, worker or both; [`Mode::Master`] by default.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Where the node listens, as `host:port` (port 0 picks a free one): required for a
    /// worker. A master that listens answers handshakes with its mode, which connectors
    /// refuse ([`ConnectError::ModeMismatch`]). Listening anywhere but loopback needs a
    /// [`cookie`](NodeBuilder::cookie).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// The cluster's shared secret. Nodes prove they know it without sending it; a node with
    /// a cookie and one without cannot connect.
    pub fn cookie(mut self, cookie: impl Into<Cookie>) -> Self {
        self.cookie = Some(cookie.into());
        self
    }

    /// Tags masters can select this worker by.
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Registers `f` as handler `h`: masters may then call it by name. It runs on the node's
    /// pool; a panic in it fails that one call with [`RemoteError::Remote`].
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

    /// How long a call may wait for its reply; 30 s by default.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.cfg.call_timeout = d;
        self
    }

    /// How long [`Node::shutdown`] lets the pool finish queued work; 5 s by default.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.cfg.shutdown_grace = d;
        self
    }

    /// How long a handshake may take; 5 s by default.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.cfg.handshake_timeout = d;
        self
    }

    /// The largest frame accepted; 16 MiB by default. A peer that sends a larger one is
    /// disconnected.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = bytes;
        self
    }

    /// Load reports go out when the load changes, at most every `min` and at least every
    /// `max` (the heartbeat); a peer silent for `3 × max` is marked down. 100 ms and 1 s by
    /// default.
    pub fn report_interval(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.report_min = min;
        self.cfg.report_max = max.max(min);
        self
    }

    /// Starts the node: its pool and listener if it serves, its discovery if it calls.
    ///
    /// # Errors
    ///
    /// A [`StartError`]: no or a bad listen address for a worker, a non-loopback address
    /// without a cookie, a socket that cannot be bound, a pool that refuses its settings, or a
    /// discovery that cannot start.
    pub async fn start(self) -> Result<Node, StartError> {
        let listener = match (self.mode.serves(), &self.listen) {
            (false, None) => None,
            (true, None) => return Err(StartError::NoListenAddress),
            (_, Some(addr)) => {
                let parsed = tokio::net::lookup_host(addr.as_str())
                    .await
                    .map_err(|_| StartError::BadAddress(addr.clone()))?
                    .next()
                    .ok_or_else(|| StartError::BadAddress(addr.clone()))?;
                if !parsed.ip().is_loopback() && self.cookie.is_none() {
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
        let shared = Arc::new(NodeShared {
            local: Local {
                name: self.name,
                mode: self.mode,
                tags: self.tags,
                cookie: self.cookie,
            },
            cfg: self.cfg,
            registry: self.registry,
            pool,
            peers,
            balancer,
            keepers: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            local_addr,
            advertiser: Mutex::new(None),
            changes: Arc::new(watch::channel(0).0),
        });
        if let Some(listener) = listener {
            shared
                .tracker
                .spawn(server::accept(Arc::clone(&shared), listener));
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
            .field("handlers", &self.registry.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
