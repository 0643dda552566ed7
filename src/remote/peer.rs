//! The connecting side: remote worker nodes as [`Member`]s, their connections, and calls.

use std::{
    collections::HashMap,
    fmt,
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot, watch},
};
use tokio_util::sync::CancellationToken;

use super::{
    auth::{self, Side, Transcript},
    wire::{self, Frame, Preamble, Refusal, Transport, WireError},
    ConnectError, Local, Mode, NodeConfig, NodeId, NodeInfo, RemoteError,
};
use crate::Member;

/// A worker node as a master sees it: a [`Member`] of the master's node balancer.
///
/// It is alive while connected and its load reports keep coming; its
/// [`load`](Member::load) is the last reported load plus the calls sent to it since, in
/// thousandths of a job per pool worker. Two `RemoteNode`s are equal when they name the same
/// node.
#[derive(Clone)]
pub struct RemoteNode {
    pub(crate) link: Arc<Link>,
}

/// One remote node's state; kept across reconnections.
pub(crate) struct Link {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) pool_size: u32,
    /// Connected and reporting. Relaxed: a liveness flag; calls travel through the channel.
    up: AtomicBool,
    /// Last reported load, in thousandths per pool worker.
    reported: AtomicU64,
    /// Calls sent since that report.
    sent_since: AtomicU64,
    /// Where frames for the current connection go; empty while down.
    outbox: ArcSwapOption<mpsc::UnboundedSender<Frame>>,
    /// Calls awaiting a reply, by id. Slow path: one lock per call.
    pending: Mutex<HashMap<u64, ReplyTo>>,
    next_id: AtomicU64,
    /// The heartbeat the node announced in its last handshake, in ms: silence for three of
    /// them marks it down.
    pub(crate) heartbeat_ms: AtomicU64,
    /// Cancelled when the node is removed or terminated: stop reconnecting.
    pub(crate) gone: CancellationToken,
    /// Bumped when this node goes up or down or reports its load: what `Node::changed`
    /// waits on.
    changes: Arc<watch::Sender<u64>>,
}

impl Member for RemoteNode {
    fn is_alive(&self) -> bool {
        self.link.up.load(Relaxed)
    }

    /// The last report plus the calls sent since; 0 while the node is down (it is never
    /// dealt then, and a drain's idle wait must not wait for a node that cannot answer).
    fn load(&self) -> usize {
        let l = &self.link;
        if !l.up.load(Relaxed) {
            return 0;
        }
        let sent = l.sent_since.load(Relaxed) * 1000 / u64::from(l.pool_size.max(1));
        (l.reported.load(Relaxed) + sent) as usize
    }
}

impl RemoteNode {
    /// The node's id (its name).
    #[must_use]
    pub fn id(&self) -> &NodeId {
        &self.link.id
    }

    /// What is known of the node now.
    pub fn info(&self) -> NodeInfo {
        let l = &self.link;
        NodeInfo {
            id: l.id.clone(),
            addr: l.addr,
            mode: l.mode,
            tags: l.tags.clone(),
            pool_size: l.pool_size,
            load: self.load() as f64 / 1000.0,
            alive: self.is_alive(),
        }
    }

    /// Sends a call and waits for its reply, at most `timeout`.
    pub(crate) async fn call_raw(
        &self,
        handler: &str,
        args: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        let link = &self.link;
        let down = || RemoteError::NodeDown(link.id.clone());
        if !self.is_alive() {
            return Err(down());
        }
        let id = link.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending.lock().insert(id, tx);
        let mut pending = Pending {
            link,
            id,
            sent: false,
        };
        let sent = link.outbox.load().as_ref().is_some_and(|out| {
            out.send(Frame::Call {
                id,
                handler: handler.to_owned(),
                args,
            })
            .is_ok()
        });
        if !sent {
            return Err(down());
        }
        pending.sent = true;
        link.sent_since.fetch_add(1, Relaxed);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => {
                pending.sent = false;
                result
            }
            // The connection dropped and took the reply channel with it.
            Ok(Err(_)) => Err(down()),
            Err(_) => Err(RemoteError::Timeout),
        }
    }

    /// Asks the node to stop serving and end (SimpleLocalnet's `terminateSlave`).
    pub(crate) fn terminate(&self) -> Result<(), RemoteError> {
        let link = &self.link;
        // Queue the goodbye before ending the connection: the writer flushes it first.
        let sent = link
            .outbox
            .load()
            .as_ref()
            .is_some_and(|out| out.send(Frame::Goodbye { terminate: true }).is_ok());
        link.gone.cancel();
        if sent {
            Ok(())
        } else {
            Err(RemoteError::NodeDown(link.id.clone()))
        }
    }
}

/// Where a call's reply goes.
type ReplyTo = oneshot::Sender<Result<Vec<u8>, RemoteError>>;

/// A call awaiting its reply: dropped early (timeout, or the caller's future dropped), it
/// withdraws the call and, if it was sent, tells the node to cancel it.
struct Pending<'a> {
    link: &'a Link,
    id: u64,
    sent: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.link.pending.lock().remove(&self.id);
        if self.sent {
            if let Some(out) = self.link.outbox.load().as_ref() {
                let _ = out.send(Frame::Cancel { id: self.id });
            }
        }
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
            .field("addr", &self.link.addr)
            .field("alive", &self.is_alive())
            .field("load", &self.load())
            .finish()
    }
}

/// What the listener said of itself in its `HelloAck`.
pub(crate) struct Welcome {
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) tags: Vec<String>,
    pub(crate) pool_size: u32,
    /// The first load report, which says the listener accepted our proof.
    pub(crate) load: u64,
    /// How often, at least, the listener said it sends a frame, in ms.
    pub(crate) heartbeat_ms: u64,
}

/// Connects to `addr` and runs the handshake as the connecting side.
pub(crate) async fn connect(
    addr: SocketAddr,
    local: &Local,
    cfg: &NodeConfig,
) -> Result<(Transport, Welcome), ConnectError> {
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ConnectError::NotConnected)?;
        stream
            .set_nodelay(true)
            .map_err(ConnectError::NotConnected)?;
        let mut t = wire::transport(stream, cfg.max_frame);
        handshake(&mut t, local, cfg.report_max)
            .await
            .map(|w| (t, w))
    };
    tokio::time::timeout(cfg.handshake_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// The connecting side of the handshake; `heartbeat` is how often this node pings.
async fn handshake(
    t: &mut Transport,
    local: &Local,
    heartbeat: Duration,
) -> Result<Welcome, ConnectError> {
    send(t, wire::preamble()).await?;
    match wire::check_preamble(&recv(t).await?) {
        Preamble::Ok => {}
        Preamble::NotCroupier => return Err(ConnectError::NotCroupier),
        Preamble::Incompatible(theirs) => {
            return Err(ConnectError::Incompatible {
                ours: wire::VERSION,
                theirs,
            })
        }
    }
    let my_nonce = auth::nonce();
    let hello = Frame::Hello {
        name: local.name.clone(),
        mode: local.mode,
        tags: local.tags.clone(),
        nonce: my_nonce,
        has_cookie: local.cookie.is_some(),
        heartbeat_ms: wire::heartbeat_ms(heartbeat),
    };
    send(t, hello.encode()).await?;
    let Ok(Frame::HelloAck {
        name,
        mode,
        tags,
        pool_size,
        nonce,
        proof,
        refusal,
        heartbeat_ms,
    }) = Frame::decode(&recv(t).await?)
    else {
        return Err(ConnectError::NotCroupier);
    };
    match refusal {
        Some(Refusal::Unauthenticated) => return Err(ConnectError::Unauthenticated),
        Some(Refusal::Rejected(why)) => return Err(ConnectError::Rejected(why)),
        None => {}
    }
    let transcript = Transcript {
        connector_nonce: &my_nonce,
        listener_nonce: &nonce,
        connector_name: &local.name,
        listener_name: &name,
    };
    if !auth::check(
        local.cookie.as_ref(),
        Side::Listener,
        &transcript,
        proof.as_ref(),
    ) {
        return Err(ConnectError::Unauthenticated);
    }
    if !mode.serves() {
        return Err(ConnectError::ModeMismatch);
    }
    let proof = local
        .cookie
        .as_ref()
        .map(|c| c.prove(Side::Connector, &transcript));
    send(t, Frame::Proof { proof }.encode()).await?;
    // The listener answers a good proof with its first load report, a bad one by closing.
    match recv(t).await.map(|b| Frame::decode(&b)) {
        Ok(Ok(Frame::Load { milli })) => Ok(Welcome {
            name,
            mode,
            tags,
            pool_size,
            load: milli,
            heartbeat_ms,
        }),
        Ok(Ok(Frame::Goodbye { .. })) | Err(_) => Err(ConnectError::Unauthenticated),
        Ok(_) => Err(ConnectError::NotCroupier),
    }
}

async fn send(t: &mut Transport, frame: bytes::Bytes) -> Result<(), ConnectError> {
    t.send(frame).await.map_err(ConnectError::NotConnected)
}

async fn recv(t: &mut Transport) -> Result<bytes::BytesMut, ConnectError> {
    match t.next().await {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(ConnectError::NotCroupier)
        }
        Some(Err(e)) => Err(ConnectError::NotConnected(e)),
        None => Err(ConnectError::NotConnected(
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
    }
}

impl Link {
    pub(crate) fn new(
        addr: SocketAddr,
        w: &Welcome,
        extra_tags: &[String],
        changes: Arc<watch::Sender<u64>>,
    ) -> Arc<Self> {
        let mut tags = w.tags.clone();
        for t in extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        Arc::new(Self {
            id: NodeId::from(w.name.as_str()),
            addr,
            mode: w.mode,
            tags,
            pool_size: w.pool_size,
            up: AtomicBool::new(false),
            reported: AtomicU64::new(w.load),
            heartbeat_ms: AtomicU64::new(w.heartbeat_ms),
            sent_since: AtomicU64::new(0),
            outbox: ArcSwapOption::empty(),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            gone: CancellationToken::new(),
            changes,
        })
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Marks the node up on a new connection: calls can be sent at once. Returns where
    /// they queue for [`run`](Link::run) to write.
    pub(crate) fn attach(&self) -> mpsc::UnboundedReceiver<Frame> {
        let (tx, rx) = mpsc::unbounded_channel::<Frame>();
        self.outbox.store(Some(Arc::new(tx)));
        self.up.store(true, Relaxed);
        self.changed();
        rx
    }

    /// Serves one connection, [attached](Link::attach) before, until it closes, goes silent,
    /// the node is removed, or `cancel` fires (this node stops, or discovery drops the
    /// address).
    pub(crate) async fn run(
        self: &Arc<Self>,
        transport: Transport,
        mut rx: mpsc::UnboundedReceiver<Frame>,
        cfg: &NodeConfig,
        cancel: &CancellationToken,
    ) {
        let (mut sink, mut stream) = transport.split();
        let conn = CancellationToken::new();
        let writer = {
            let conn = conn.clone();
            let ping_every = cfg.report_max;
            tokio::spawn(async move {
                let mut ping = tokio::time::interval(ping_every);
                loop {
                    let frame = tokio::select! {
                        () = conn.cancelled() => break,
                        f = rx.recv() => match f { Some(f) => f, None => break },
                        _ = ping.tick() => Frame::Ping,
                    };
                    let last = matches!(frame, Frame::Goodbye { .. });
                    if sink.send(frame.encode()).await.is_err() || last {
                        break;
                    }
                }
                let _ = sink.close().await;
            })
        };
        // Marked down after three of the heartbeats it announced, whatever ours is.
        let silence = wire::silence_limit(self.heartbeat_ms.load(Relaxed));
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => break,
                () = self.gone.cancelled() => break,
                next = tokio::time::timeout(silence, stream.next()) => next,
            };
            let bytes = match next {
                Err(_silent) => {
                    tracing::warn!(node = %self.id, "croupier node missed its load reports; marking it down");
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!(node = %self.id, error = %e, "croupier connection failed");
                    break;
                }
                Ok(Some(Ok(b))) => b,
            };
            match Frame::decode(&bytes) {
                Ok(Frame::Reply { id, result }) => {
                    if let Some(tx) = self.pending.lock().remove(&id) {
                        let _ = tx.send(result.map_err(|e| match e {
                            WireError::UnknownHandler(h) => RemoteError::UnknownHandler(h),
                            WireError::Decode(e) => RemoteError::Decode(e),
                            WireError::Failed(e) => RemoteError::Remote(e),
                        }));
                    }
                }
                Ok(Frame::Load { milli }) => {
                    self.reported.store(milli, Relaxed);
                    self.sent_since.store(0, Relaxed);
                    self.changed();
                }
                Ok(Frame::Goodbye { .. }) => break,
                Ok(other) => {
                    tracing::warn!(node = %self.id, frame = ?other, "croupier peer sent an unexpected frame; closing");
                    break;
                }
                Err(e) => {
                    tracing::warn!(node = %self.id, error = %e, "croupier peer sent a malformed frame; closing");
                    break;
                }
            }
        }
        self.up.store(false, Relaxed);
        self.changed();
        if self.gone.is_cancelled() {
            // Let a goodbye already queued go out before closing.
            self.outbox.store(None);
            let _ = writer.await;
        } else {
            self.outbox.store(None);
            conn.cancel();
            let _ = writer.await;
        }
        // Every call still waiting fails now: its reply can no longer come.
        let pending: Vec<_> = self.pending.lock().drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(RemoteError::NodeDown(self.id.clone())));
        }
    }
}
