//! [`NodeBuilder`]: a node's settings, and its start.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic_health::{server::HealthReporter, ServingStatus};

use super::{Handle, Node, NodeShared};
use crate::{
    policy::Policy,
    pool::Pool,
    remote::{
        auth::Cookie,
        client::{
            discovery::{self, Discovery},
            Peers,
        },
        common::Common,
        config::NodeConfig,
        error::StartError,
        handler::{self, Handler, Registry},
        identity::{Local, Mode, MAX_NAME_LEN},
        server::{self, Bounds, HandlerWorker, Served},
        tls::Tls,
    },
};

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
    max_queue: usize,
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
            tls: None,
            tags: Vec::new(),
            registry: Registry::new(),
            pool_size: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_queue: 64,
            policy: Policy::LeastLoaded,
            discovery: None,
            advertise: false,
            cfg: NodeConfig::default(),
        }
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
    /// ([`ConnectError::ModeMismatch`](crate::remote::ConnectError::ModeMismatch)). Listening anywhere but loopback needs
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
    /// pool; a panic in it fails that one call with [`RemoteError::Remote`](crate::remote::RemoteError::Remote). When the caller
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

    /// Registers the blocking function `f` as handler `h`, for CPU-bound work: each call runs
    /// `f` on tokio's blocking pool ([`spawn_blocking`](tokio::task::spawn_blocking)), so it
    /// holds a blocking thread rather than one of the runtime's (whose threads the node's
    /// pool, and everything else of the process, share). It still takes a pool worker while
    /// it runs, so the pool's size bounds how many run at once. A panic in it fails that one
    /// call with [`RemoteError::Remote`](crate::remote::RemoteError::Remote). A call whose
    /// caller goes away before `f` starts never starts; once started, `f` runs to its end
    /// (a thread cannot be interrupted) and its result is dropped.
    ///
    /// The node's transport (gRPC, load reports, health, keepalive) runs on a thread of its
    /// own either way, so even handlers registered with [`handle`](Self::handle) that hog
    /// the runtime's threads do not make the node look dead to its masters.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::remote::{Handler, Mode, Node};
    ///
    /// const PRIMES: Handler<u64, usize> = Handler::new("math.primes_below");
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let worker = Node::builder("worker")
    ///     .mode(Mode::Worker)
    ///     .listen("127.0.0.1:0")
    ///     .handle_blocking(PRIMES, |n| (2..n).filter(|k| (2..*k).all(|d| k % d != 0)).count())
    ///     .start()
    ///     .await?;
    /// let master = Node::builder("master").start().await?;
    /// master.connect(worker.local_addr().unwrap()).await?;
    /// assert_eq!(master.call_least_loaded(PRIMES, 20).await?, 8);
    /// # master.shutdown().await;
    /// # worker.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn handle_blocking<A, O, F>(mut self, h: Handler<A, O>, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(A) -> O + Send + Sync + 'static,
    {
        self.registry.insert(h.name(), handler::erase_blocking(f));
        self
    }

    /// Workers in the node's pool; the number of CPUs by default.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// How many calls each worker of the node's pool holds at most, queued or running; 64 by
    /// default, at least 1. A call that finds every worker full is answered at once with
    /// `RESOURCE_EXHAUSTED` ([`RemoteError::Busy`](crate::remote::RemoteError::Busy) to a
    /// croupier master, which may send it to another node) instead of queueing without bound.
    pub fn max_queue(mut self, per_worker: usize) -> Self {
        self.max_queue = per_worker;
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

    /// Advertises this worker over mDNS for [`Mdns`]((crate::remote::Mdns)) discovery.
    pub fn advertise(mut self, on: bool) -> Self {
        self.advertise = on;
        self
    }

    /// How long a call may take in all (its gRPC deadline, which the node enforces); 30 s by
    /// default. The master waits a tenth longer (20 ms to 1 s) for the node's answer, so a
    /// [`RemoteError::Timeout`](crate::remote::RemoteError::Timeout) means the node has cancelled the job.
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
    /// and HTTP/2 preface may take; 5 s by default. On a node with a [cookie](Self::cookie),
    /// a connection must also present it within this time (a TLS peer is authenticated by
    /// its certificate), or be closed; a node without a cookie or TLS (loopback only) keeps
    /// stock gRPC clients' connections (health probes, ORCA readers) until they are idle.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.cfg.handshake_timeout = d;
        self
    }

    /// How long a connection to this node may have no call or stream open before the node
    /// closes it; 60 s by default, at least 1 ms. A master's connection always has its load
    /// stream open, so only connections that do nothing are closed. (At its
    /// [connection limit](Self::max_connections), a node also closes the connection idle
    /// longest, or one that has not authenticated, to let a newcomer in.)
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = d;
        self
    }

    /// The largest call message (arguments or result) accepted or sent; 4 MiB by default. A
    /// larger one fails only its own call, with [`RemoteError::TooLarge`](crate::remote::RemoteError::TooLarge). At least 1 KiB
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

    /// How many connections a serving node holds open at once (1024 by default). At the limit,
    /// a newcomer evicts the connection that has waited longest without authenticating, or
    /// else the one [idle](NodeBuilder::idle_timeout) longest (no call or stream open), or
    /// else, when another peer address holds more than half the slots, that address's oldest
    /// connection: connections that do nothing, or one address's, cannot lock a master out.
    /// Otherwise it is closed as it arrives. Connections that do not finish their TLS handshake and HTTP/2
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
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, no node starts: the socket and the pool made so far are
    /// dropped with the future (the transport thread starts only after its last `.await`).
    pub async fn start(mut self) -> Result<Node, StartError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(StartError::Setting {
                setting: "name",
                must: format!(
                    "a node name is at most {MAX_NAME_LEN} bytes, not {}",
                    self.name.len()
                ),
            });
        }
        if self.max_queue == 0 {
            return Err(StartError::Setting {
                setting: "max_queue",
                must: "0 would refuse every call: use 1 or more".into(),
            });
        }
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
                    .max_load(self.max_queue)
                    .intensity(u32::MAX, Duration::from_secs(1))
                    .start()
                    .map_err(StartError::Pool)?,
            ),
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let common = Arc::new(Common {
            local: Local {
                name: self.name,
                mode: self.mode,
                tags: self.tags,
                cookie: self.cookie,
                tls: self.tls,
            },
            cfg: self.cfg,
            stop: CancellationToken::new(),
            kill: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let shared = Arc::new(NodeShared {
            peers: Arc::new(Peers::new(Arc::clone(&common), self.policy)),
            served: Arc::new(Served {
                common: Arc::clone(&common),
                registry: self.registry,
                pool,
                health: HealthReporter::new(),
                completed: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                masters: Mutex::new(VecDeque::new()),
            }),
            common,
            local_addr,
            advertiser: Mutex::new(None),
        });
        if let Some(listener) = listener {
            let serving = if shared.common.local.mode.serves() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            shared.served.set_health(serving).await;
            let bounds = Bounds {
                connections: Arc::new(Semaphore::new(shared.common.cfg.max_connections)),
                handshake: shared.common.cfg.handshake_timeout,
                idle: shared.common.cfg.idle_timeout,
                needs_auth: shared.common.local.cookie.is_some(),
                open: Arc::default(),
                tls: acceptor,
                stop: shared.common.stop.clone(),
                kill: shared.common.kill.clone(),
            };
            // The transport runs on a runtime of its own, on a thread of its own: handlers that
            // hold the process's runtime threads (CPU-bound work) must not keep the node from
            // answering pings, reporting its load and accepting calls, or its masters would
            // take it for dead and fail the calls it is running.
            let listener = listener.into_std().map_err(StartError::Listen)?;
            let transport = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(StartError::Listen)?;
            let served = Arc::clone(&shared.served);
            let serving = shared.common.tracker.track_future(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => server::serve(served, listener, bounds).await,
                    Err(e) => {
                        tracing::error!(error = %e, "croupier node could not listen on its transport thread");
                    }
                }
            });
            std::thread::Builder::new()
                .name("croupier-transport".into())
                .spawn(move || transport.block_on(serving))
                .map_err(StartError::Listen)?;
        }
        if let (true, Some(addr)) = (self.advertise, local_addr) {
            let daemon =
                discovery::advertise(&shared.common.local.name, addr, &shared.common.local.tags)
                    .map_err(|e| StartError::Discovery(e.into()))?;
            *shared.advertiser.lock() = Some(daemon);
        }
        if let Some(d) = self.discovery {
            if shared.common.local.mode.calls() {
                shared
                    .peers
                    .follow(d.start().map_err(|e| StartError::Discovery(e.into()))?);
            }
        }
        Ok(Node {
            handle: Arc::new(Handle { shared }),
        })
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
