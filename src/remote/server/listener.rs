//! Accepting connections with bounds: a cap on open connections, a deadline on each TLS
//! handshake and on the HTTP/2 preface, and a kill switch that ends every connection when
//! the node's grace period is over (even one whose peer stopped reading).
//!
//! Each accepted socket takes a permit, or is closed at once when none is left. Its TLS
//! handshake (when the node has TLS) runs in a task of its own, so a slow one holds up no
//! other. The connection then goes to tonic, wrapped in [`Conn`], which fails its reads once
//! the handshake deadline passes before the 24 bytes of the HTTP/2 preface came, and fails
//! reads and writes alike once the node's kill token fires.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::Sleep,
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
            let Ok(permit) = Arc::clone(&bounds.connections).try_acquire_owned() else {
                tracing::warn!(%remote, "croupier node is at its connection limit; closing a new one");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, bounds) = (tx.clone(), bounds.clone());
            handshakes.spawn(async move {
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
                let conn = Conn {
                    io,
                    info: ConnInfo { remote, tls },
                    preface: Some(Box::pin(tokio::time::sleep(bounds.handshake))),
                    read: 0,
                    kill: Box::pin(bounds.kill.clone().cancelled_owned()),
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
