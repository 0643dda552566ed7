//! Accepting connections with bounds: a cap on open connections, a deadline on each TLS
//! handshake, on the HTTP/2 preface and on authentication, an idle timeout, and a kill switch
//! that ends every connection when the node's grace period is over (even one whose peer
//! stopped reading).
//!
//! Each accepted socket takes a permit. When none is left, the newcomer evicts the connection
//! that has waited longest without authenticating, or else the one idle longest (no call or
//! stream open), and takes its permit once it is gone; with neither, it is closed at once. So
//! connections that do nothing cannot lock a real master out. Its TLS handshake (when the node
//! has TLS) runs in a task of its own, so a slow one holds up no other. The connection then
//! goes to tonic, wrapped in [`Conn`], which fails its reads once the handshake deadline passes
//! before the 24 bytes of the HTTP/2 preface came, once a node with a cookie has not seen it
//! on the connection within the handshake timeout (a TLS peer authenticated with its
//! certificate), once it has had no call or stream open for the idle timeout, and fails reads
//! and writes alike once the connection is evicted or the node's kill token fires.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Weak,
    },
    task::{Context, Poll},
    time::Duration,
};

use parking_lot::Mutex;

use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

/// The length of the HTTP/2 client preface (RFC 9113, section 3.4).
const PREFACE_LEN: usize = 24;

/// What a handler can learn of the connection its request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The peer's address.
    pub(crate) remote: SocketAddr,
    /// Whether the peer passed TLS, with a certificate from the cluster's authority.
    pub(crate) tls: bool,
    /// The connection's state, which requests authenticate and keep busy.
    pub(crate) state: Arc<ConnState>,
}

/// One connection's state, shared by its reads (which end it), the cookie check (which
/// authenticates it) and the handlers (which count its calls and streams).
#[derive(Debug)]
pub(crate) struct ConnState {
    /// The peer's address.
    ip: std::net::IpAddr,
    /// It presented the cookie, or passed TLS.
    authenticated: AtomicBool,
    /// Calls and streams open on it.
    open: AtomicUsize,
    /// When its last call or stream ended (or it came), in nanoseconds after `epoch`.
    quiet_since: AtomicU64,
    epoch: Instant,
    /// Ends it: cancelled on eviction, and by the node's kill.
    close: CancellationToken,
}

impl ConnState {
    fn new(ip: std::net::IpAddr, authenticated: bool, close: CancellationToken) -> Self {
        Self {
            ip,
            authenticated: AtomicBool::new(authenticated),
            open: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            epoch: Instant::now(),
            close,
        }
    }

    /// The connection presented the node's cookie.
    pub(crate) fn authenticate(&self) {
        self.authenticated.store(true, Relaxed);
    }

    /// Counts a call or stream open on the connection while the guard lives.
    pub(crate) fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Relaxed);
        Open(Arc::clone(self))
    }

    fn quiet_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.quiet_since.load(Relaxed))
    }
}

/// A call or stream open on a connection: it is not idle while one lives.
#[derive(Debug)]
pub(crate) struct Open(Arc<ConnState>);

impl Drop for Open {
    fn drop(&mut self) {
        let since = u64::try_from(self.0.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.quiet_since.store(since, Relaxed);
        self.0.open.fetch_sub(1, Relaxed);
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, as tonic serves it.
pub(crate) struct Conn {
    io: Io,
    info: ConnInfo,
    /// Until the preface has been read: fires after the handshake timeout.
    preface: Option<Pin<Box<Sleep>>>,
    /// Until the connection authenticates, where the node asks it to: fires after the
    /// handshake timeout.
    auth: Option<Pin<Box<Sleep>>>,
    /// Fires to look whether the connection has been idle for `idle_after`.
    idle: Pin<Box<Sleep>>,
    idle_after: Duration,
    state: Arc<ConnState>,
    read: usize,
    kill: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The kill token fired (its future is not polled again).
    dead: bool,
    _permit: OwnedSemaphorePermit,
}

/// The bounds an accept loop applies.
#[derive(Clone)]
pub(crate) struct Bounds {
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) handshake: Duration,
    /// A connection with no call or stream open for this long is closed.
    pub(crate) idle: Duration,
    /// The node has a cookie: a connection that has not presented it within the handshake
    /// timeout is closed (one that passed TLS is authenticated by its certificate).
    pub(crate) needs_auth: bool,
    /// The connections open, to choose one to evict.
    pub(crate) open: Arc<Mutex<Vec<Weak<ConnState>>>>,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Stops accepting.
    pub(crate) stop: CancellationToken,
    /// Ends every connection.
    pub(crate) kill: CancellationToken,
}

/// Accepts until `stop`; hands connections that passed their handshake to the returned
/// stream.
pub(crate) fn incoming(
    listener: TcpListener,
    bounds: Bounds,
    tracker: &tokio_util::task::TaskTracker,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Conn>(64);
    let handshakes = tracker.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = bounds.stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "croupier node could not accept a connection");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let permit = Arc::clone(&bounds.connections).try_acquire_owned().ok();
            if permit.is_none() && !bounds.evict_one(remote.ip()) {
                tracing::warn!(%remote, "croupier node is at its connection limit; closing a new one");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let (tx, bounds) = (tx.clone(), bounds.clone());
            handshakes.spawn(async move {
                // Evicted for it: the permit comes back when that connection has gone.
                let permit = match permit {
                    Some(permit) => permit,
                    None => {
                        let wait = tokio::time::timeout(
                            bounds.handshake,
                            Arc::clone(&bounds.connections).acquire_owned(),
                        );
                        match wait.await {
                            Ok(Ok(permit)) => permit,
                            _ => return,
                        }
                    }
                };
                let (io, tls) = match &bounds.tls {
                    None => (Io::Plain(stream), false),
                    Some(acceptor) => {
                        let shake = tokio::time::timeout(bounds.handshake, acceptor.accept(stream));
                        let done = tokio::select! {
                            () = bounds.stop.cancelled() => return,
                            done = shake => done,
                        };
                        match done {
                            Ok(Ok(s)) => (Io::Tls(Box::new(s)), true),
                            Ok(Err(e)) => {
                                tracing::warn!(%remote, error = %e, "croupier node refused a TLS handshake");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(%remote, "croupier TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                let close = bounds.kill.child_token();
                let state = Arc::new(ConnState::new(
                    remote.ip(),
                    tls || !bounds.needs_auth,
                    close.clone(),
                ));
                {
                    let mut open = bounds.open.lock();
                    open.retain(|c| c.strong_count() > 0);
                    open.push(Arc::downgrade(&state));
                }
                let conn = Conn {
                    io,
                    info: ConnInfo {
                        remote,
                        tls,
                        state: Arc::clone(&state),
                    },
                    preface: Some(Box::pin(tokio::time::sleep(bounds.handshake))),
                    auth: (!tls && bounds.needs_auth)
                        .then(|| Box::pin(tokio::time::sleep(bounds.handshake))),
                    idle: Box::pin(tokio::time::sleep(bounds.idle)),
                    idle_after: bounds.idle,
                    state,
                    read: 0,
                    kill: Box::pin(close.cancelled_owned()),
                    dead: false,
                    _permit: permit,
                };
                let _ = tx.send(conn).await;
            });
        }
    });
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
    )
}

impl Bounds {
    /// At the connection limit, for a newcomer from `ip`: ends the connection that has waited
    /// longest without authenticating, or else the one idle longest, or else, when another
    /// address holds more than half the slots, that address's oldest connection: one peer
    /// address cannot keep others out. False when none of these is found.
    fn evict_one(&self, ip: std::net::IpAddr) -> bool {
        let mut open = self.open.lock();
        open.retain(|c| c.strong_count() > 0);
        let live: Vec<_> = open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.close.is_cancelled())
            .collect();
        drop(open);
        let unauthenticated = live
            .iter()
            .filter(|c| !c.authenticated.load(Relaxed))
            .min_by_key(|c| c.epoch);
        let idle = || {
            live.iter()
                .filter(|c| c.open.load(Relaxed) == 0)
                .min_by_key(|c| c.quiet_since())
        };
        let hog = || {
            let share = live.len() / 2;
            let held = |who| live.iter().filter(|c| c.ip == who).count();
            live.iter()
                .filter(|c| c.ip != ip && held(c.ip) > share)
                .min_by_key(|c| c.epoch)
        };
        match unauthenticated.or_else(idle).or_else(hog) {
            Some(victim) => {
                tracing::debug!("croupier node at its connection limit: closing a connection that is unauthenticated or idle");
                victim.close.cancel();
                true
            }
            None => false,
        }
    }
}

impl Conn {
    /// An error if the node is killing its connections.
    fn killed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.dead && self.kill.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead.then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the croupier node stopped",
            )
        })
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(cx) {
            return Poll::Ready(Err(e));
        }
        if let Some(deadline) = &mut this.preface {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the handshake timeout",
                )));
            }
        }
        if let Some(deadline) = &mut this.auth {
            if this.state.authenticated.load(Relaxed) {
                this.auth = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "not authenticated within the handshake timeout",
                )));
            }
        }
        while this.idle.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let next = if this.state.open.load(Relaxed) > 0 {
                now + this.idle_after
            } else {
                let idle_at = this.state.quiet_since() + this.idle_after;
                if idle_at <= now {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no call or stream for the idle timeout",
                    )));
                }
                idle_at
            };
            this.idle.as_mut().reset(next);
        }
        let before = buf.filled().len();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            this.read += buf.filled().len() - before;
            if this.read >= PREFACE_LEN {
                this.preface = None;
            }
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}
