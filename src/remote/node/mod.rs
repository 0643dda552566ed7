//! [`Node`]: one process's place in a cluster.

mod builder;
mod calls;

use std::{collections::BTreeSet, fmt, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::net::ToSocketAddrs;
use tonic_health::ServingStatus;

pub use self::builder::NodeBuilder;
use crate::{
    balancer::DrainError,
    balancer::{Balancer, Wait},
    member::Member,
    remote::{
        client::{Peers, RemoteNode},
        common::Common,
        error::{ConnectError, RemoteError},
        identity::{NodeId, NodeInfo},
        server::Served,
    },
};

/// What a node's tasks share: its calling side and its serving side over what both share.
/// The last [`Node`] handle stops them.
pub(crate) struct NodeShared {
    common: Arc<Common>,
    peers: Arc<Peers>,
    served: Arc<Served>,
    local_addr: Option<SocketAddr>,
    advertiser: Mutex<Option<mdns_sd::ServiceDaemon>>,
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
        self.shared.common.stop.cancel();
        self.shared.common.kill.cancel();
        if let Some(daemon) = self.shared.advertiser.lock().take() {
            let _ = daemon.shutdown();
        }
    }
}

/// Sets a node's health back to SERVING, unless it stops meanwhile, when an
/// [`apply_within`](Node::apply_within) is dropped before it ends.
struct ServeAgain(Option<Arc<Served>>);

impl Drop for ServeAgain {
    fn drop(&mut self) {
        let Some(served) = self.0.take() else { return };
        if served.common.stop.is_cancelled() {
            return;
        }
        let tracker = served.common.tracker.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(tracker.track_future(async move {
                if !served.common.stop.is_cancelled() {
                    served.set_health(ServingStatus::Serving).await;
                }
            }));
        }
    }
}

/// One result per run of a handler, grouped by node.
pub type ByNode<O> = Vec<(NodeId, Vec<Result<O, RemoteError>>)>;

impl Node {
    fn shared(&self) -> &Arc<NodeShared> {
        &self.handle.shared
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        NodeId::from(self.shared().common.local.name.as_str())
    }

    /// The address this node listens on, if it serves.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared().local_addr
    }

    /// The balancer that selects among this master's worker nodes.
    #[must_use]
    pub fn balancer(&self) -> &Balancer<RemoteNode> {
        &self.shared().peers.balancer
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
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, it keeps nothing: a connection half made is closed, a node
    /// met for the first time is not listed, and nothing reconnects to it.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> Result<NodeInfo, ConnectError> {
        let shared = self.shared();
        if !shared.common.local.mode.calls() {
            return Err(ConnectError::Rejected(
                "this node is not a master; only masters connect".into(),
            ));
        }
        let addr = tokio::net::lookup_host(addr)
            .await
            .map_err(ConnectError::NotConnected)?
            .next()
            .ok_or_else(|| ConnectError::NotConnected(std::io::ErrorKind::NotFound.into()))?;
        let (link, attached) = shared.peers.establish(addr, &[]).await?;
        let info = RemoteNode {
            link: Arc::clone(&link),
        }
        .info();
        if let Some(attached) = attached {
            shared.peers.keep(addr, Vec::new(), Some(attached));
        }
        Ok(info)
    }

    /// Connects to the worker node at `addr` (OTP `pool:attach/1`); the same as
    /// [`connect`](Node::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Node::connect).
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](Node::connect).
    pub async fn attach(&self, addr: impl ToSocketAddrs) -> Result<NodeInfo, ConnectError> {
        self.connect(addr).await
    }

    /// The worker nodes connected and reporting now.
    pub fn workers(&self) -> Vec<NodeInfo> {
        self.shared()
            .peers
            .live()
            .iter()
            .map(RemoteNode::info)
            .collect()
    }

    /// Every worker node this master knows, up or down, by name (OTP `pool:get_nodes/0`).
    pub fn get_nodes(&self) -> Vec<NodeId> {
        self.shared().peers.ids()
    }

    /// Whether worker node `node` is connected and reporting now.
    #[must_use]
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.shared().peers.find(node).is_some_and(|p| p.is_alive())
    }

    /// The masters that have said hello to this node, by name (Skitter's `master`). A
    /// worker usually has one; it remembers at most [`MAX_MASTERS_KEPT`](crate::remote::MAX_MASTERS_KEPT),
    /// forgetting the one heard from longest ago.
    pub fn masters(&self) -> Vec<NodeId> {
        let mut names: Vec<_> = self
            .shared()
            .served
            .masters
            .lock()
            .iter()
            .map(|n| NodeId::from(n.as_str()))
            .collect();
        names.sort();
        names
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
            .peers
            .find(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.clone()))?;
        let told = peer.terminate(&shared.common.tracker, shared.common.cfg.handshake_timeout);
        shared.peers.forget(&peer);
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
    /// target [`WORKER_LOG_TARGET`](crate::remote::WORKER_LOG_TARGET), its level, and the worker's name
    /// in the field `node`. Workers capture their events with [`LogLayer`](crate::remote::LogLayer).
    ///
    /// For a node connected after this call, the stream is open by the time
    /// [`connect`](Node::connect) returns: nothing it logs from then on is missed (up to the
    /// bounded buffer; see [`LogLayer`](crate::remote::LogLayer)). Nodes already connected open theirs
    /// in the background.
    pub fn redirect_logs_here(&self) {
        self.shared().peers.want_logs();
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
        let mut rx = self.shared().peers.subscribe();
        async move {
            let _ = rx.changed().await;
        }
    }

    /// Resolves once the node has stopped: by [`shutdown`](Node::shutdown), or terminated
    /// by a master.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn terminated(&self) {
        self.shared().common.stop.cancelled().await;
    }

    /// Pauses this worker node's pool for maintenance, as [`Pool::apply_within`](crate::Pool::apply_within) does: no
    /// new job is dealt, the node waits up to `idle_within` for the jobs under way, runs
    /// `maintenance`, and resumes. Meanwhile its health (grpc.health.v1) reads NOT_SERVING and
    /// its load reports say it drains, so masters leave it out of selection.
    ///
    /// A node that serves no pool has nothing to drain: it runs `maintenance` at once.
    ///
    /// # Errors
    ///
    /// [`DrainError`] as [`Pool::apply_within`](crate::Pool::apply_within): jobs not done in time (maintenance not run),
    /// a panic, or a nested call.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it ends (during the wait or the maintenance), the pool resumes as
    /// [`Pool::apply_within`](crate::Pool::apply_within)'s does, and the node reads SERVING
    /// again (set on a task of its own, unless the node stops meanwhile).
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
        let Some(pool) = &shared.served.pool else {
            return Ok(maintenance().await);
        };
        shared.served.set_health(ServingStatus::NotServing).await;
        // Dropped from here on, the node still serves again (the pool resumes by itself).
        let mut back = ServeAgain(Some(Arc::clone(&shared.served)));
        let done = pool
            .apply_within(Wait::idle(idle_within), maintenance)
            .await;
        back.0 = None;
        if !shared.common.stop.is_cancelled() {
            shared.served.set_health(ServingStatus::Serving).await;
        }
        done
    }

    /// Stops the node: it reads NOT_SERVING, stops accepting, ends its streams, and lets its
    /// pool and the calls under way finish for up to the
    /// [grace period](NodeBuilder::shutdown_grace); then it cuts every connection left (a
    /// peer that stopped reading included) and waits for its tasks. Always returns.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the node still stops: it stops accepting and its tasks end
    /// on their own, and every connection is cut when the last [`Node`] handle is dropped;
    /// only the wait for them (and the pool's own shutdown) is lost.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        // Stops once NOT_SERVING is set, or at once if this future is dropped before.
        let stopping = shared.common.stop.clone().drop_guard();
        shared.served.set_health(ServingStatus::NotServing).await;
        drop(stopping);
        if let Some(daemon) = shared.advertiser.lock().take() {
            let _ = daemon.shutdown();
        }
        shared.common.tracker.close();
        let grace = shared.common.cfg.shutdown_grace;
        let pool = async {
            if let Some(pool) = &shared.served.pool {
                pool.shutdown().await;
            }
        };
        let finished = tokio::time::timeout(
            grace,
            futures_util::future::join(pool, shared.common.tracker.wait()),
        )
        .await;
        if finished.is_err() {
            tracing::warn!(node = %shared.common.local.name, "croupier node did not finish within its grace period; cutting its connections");
        }
        shared.common.kill.cancel();
        if tokio::time::timeout(grace, shared.common.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = %shared.common.local.name, "croupier node's tasks did not end after its connections were cut");
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared();
        f.debug_struct("Node")
            .field("name", &s.common.local.name)
            .field("mode", &s.common.local.mode)
            .field("local_addr", &s.local_addr)
            .field("workers", &s.peers.len())
            .finish_non_exhaustive()
    }
}
