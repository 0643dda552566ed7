//! The listening side: a worker node serving its pool to the cluster.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::AbortHandle,
    time::Instant,
};

use super::{
    auth::{self, Side, Transcript},
    handler::Job,
    wire::{self, Frame, Preamble, Refusal, Transport, WireError},
    NodeShared,
};
use crate::Member;

/// Accepts connections until the node stops; each is served in its own task, and a bad one
/// never affects the others.
pub(crate) async fn accept(node: Arc<NodeShared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = node.stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let node2 = Arc::clone(&node);
                node.tracker
                    .spawn(async move { serve(node2, stream, peer).await });
            }
            Err(e) => {
                tracing::warn!(error = %e, "croupier node could not accept a connection");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve(node: Arc<NodeShared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut t = wire::transport(stream, node.cfg.max_frame);
    let hello = tokio::time::timeout(node.cfg.handshake_timeout, handshake(&node, &mut t)).await;
    let (master, heartbeat_ms) = match hello {
        Ok(Ok(said)) => said,
        Ok(Err(why)) => {
            tracing::warn!(%peer, why, "croupier node refused a connection");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "croupier handshake timed out; closing");
            return;
        }
    };
    tracing::debug!(%peer, %master, "croupier master connected");
    if node.local.mode.serves() {
        run(&node, t, &master, wire::silence_limit(heartbeat_ms)).await;
    }
    // A node that does not serve answered the hello with its mode, which the connector
    // refuses; nothing more to do.
}

/// The listening side of the handshake; returns the connector's name and announced heartbeat
/// (ms), or why it was refused.
async fn handshake(node: &NodeShared, t: &mut Transport) -> Result<(String, u64), &'static str> {
    let first = recv(t).await?;
    t.send(wire::preamble())
        .await
        .map_err(|_| "connection lost")?;
    match wire::check_preamble(&first) {
        Preamble::Ok => {}
        Preamble::NotCroupier => return Err("not a croupier peer"),
        Preamble::Incompatible(_) => return Err("incompatible protocol version"),
    }
    let Ok(Frame::Hello {
        name,
        mode: _,
        tags: _,
        nonce: their_nonce,
        has_cookie,
        heartbeat_ms,
    }) = Frame::decode(&recv(t).await?)
    else {
        return Err("malformed hello");
    };
    let local = &node.local;
    let my_nonce = auth::nonce();
    let transcript = Transcript {
        connector_nonce: &their_nonce,
        listener_nonce: &my_nonce,
        connector_name: &name,
        listener_name: &local.name,
    };
    let refusal = if has_cookie != local.cookie.is_some() {
        Some(Refusal::Unauthenticated)
    } else if name == local.name {
        Some(Refusal::Rejected(format!(
            "a node named {name:?} cannot connect to itself"
        )))
    } else {
        None
    };
    let ack = Frame::HelloAck {
        name: local.name.clone(),
        mode: local.mode,
        tags: local.tags.clone(),
        pool_size: node.pool_size(),
        nonce: my_nonce,
        proof: local
            .cookie
            .as_ref()
            .map(|c| c.prove(Side::Listener, &transcript)),
        refusal: refusal.clone(),
        heartbeat_ms: wire::heartbeat_ms(node.cfg.report_max),
    };
    t.send(ack.encode()).await.map_err(|_| "connection lost")?;
    if refusal.is_some() {
        return Err("refused in the hello");
    }
    let Ok(Frame::Proof { proof }) = Frame::decode(&recv(t).await?) else {
        return Err("malformed proof");
    };
    if !auth::check(
        local.cookie.as_ref(),
        Side::Connector,
        &transcript,
        proof.as_ref(),
    ) {
        let _ = t.send(Frame::Goodbye { terminate: false }.encode()).await;
        return Err("wrong cookie");
    }
    // The first load report tells the connector it is in.
    t.send(
        Frame::Load {
            milli: node.load_milli(),
        }
        .encode(),
    )
    .await
    .map_err(|_| "connection lost")?;
    Ok((name, heartbeat_ms))
}

async fn recv(t: &mut Transport) -> Result<bytes::BytesMut, &'static str> {
    match t.next().await {
        Some(Ok(b)) => Ok(b),
        Some(Err(_)) => Err("bad frame"),
        None => Err("closed during the handshake"),
    }
}

/// Serves one master's calls until it leaves, goes silent for `silence` (three of its
/// announced heartbeats), misbehaves, or the node stops.
async fn run(node: &Arc<NodeShared>, t: Transport, master: &str, silence: Duration) {
    let (mut sink, mut stream) = t.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let conn = node.stop.child_token();
    let writer = {
        let conn = conn.clone();
        let node = Arc::clone(node);
        tokio::spawn(async move {
            // Load reports: when the load changes, at most every `report_min`, and at least
            // every `report_max` as a heartbeat.
            let mut tick = tokio::time::interval(node.cfg.report_min);
            let mut last = (node.load_milli(), Instant::now());
            loop {
                let frame = tokio::select! {
                    () = conn.cancelled() => break,
                    f = rx.recv() => match f { Some(f) => f, None => break },
                    _ = tick.tick() => {
                        let load = node.load_milli();
                        if load == last.0 && last.1.elapsed() < node.cfg.report_max {
                            continue;
                        }
                        last = (load, Instant::now());
                        Frame::Load { milli: load }
                    }
                };
                if sink.send(frame.encode()).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        })
    };
    let running: Arc<Mutex<HashMap<u64, AbortHandle>>> = Arc::default();
    loop {
        let next = tokio::select! {
            () = conn.cancelled() => break,
            next = tokio::time::timeout(silence, stream.next()) => next,
        };
        let bytes = match next {
            Err(_silent) => {
                tracing::warn!(
                    master,
                    "croupier master went silent; closing its connection"
                );
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(master, error = %e, "croupier connection failed (oversized frame?); closing it");
                break;
            }
            Ok(Some(Ok(b))) => b,
        };
        match Frame::decode(&bytes) {
            Ok(Frame::Call { id, handler, args }) => {
                start_call(node, &tx, &running, id, &handler, args)
            }
            Ok(Frame::Cancel { id }) => {
                if let Some(task) = running.lock().remove(&id) {
                    task.abort();
                }
            }
            Ok(Frame::Ping) => {}
            Ok(Frame::Goodbye { terminate }) => {
                if terminate {
                    tracing::info!(master, "croupier node terminated by its master");
                    node.stop.cancel();
                }
                break;
            }
            Ok(other) => {
                tracing::warn!(master, frame = ?other, "croupier master sent an unexpected frame; closing");
                break;
            }
            Err(e) => {
                tracing::warn!(master, error = %e, "croupier master sent a malformed frame; closing");
                break;
            }
        }
    }
    conn.cancel();
    for (_, task) in running.lock().drain() {
        task.abort();
    }
    let _ = writer.await;
}

fn start_call(
    node: &Arc<NodeShared>,
    tx: &mpsc::UnboundedSender<Frame>,
    running: &Arc<Mutex<HashMap<u64, AbortHandle>>>,
    id: u64,
    handler: &str,
    args: Vec<u8>,
) {
    let Some(h) = node.registry.get(handler).cloned() else {
        let _ = tx.send(Frame::Reply {
            id,
            result: Err(WireError::UnknownHandler(handler.to_owned())),
        });
        return;
    };
    let Some(pool) = node.pool.clone() else {
        let _ = tx.send(Frame::Reply {
            id,
            result: Err(WireError::Failed("this node serves no pool".into())),
        });
        return;
    };
    let (tx, running2) = (tx.clone(), Arc::clone(running));
    // Hold the map's lock across the spawn so that the task cannot remove its entry before
    // it is inserted.
    let mut map = running.lock();
    let task = tokio::spawn(async move {
        let result = match pool.call(Job { handler: h, args }).await {
            Ok(result) => result,
            Err(e) => Err(WireError::Failed(e.to_string())),
        };
        running2.lock().remove(&id);
        let _ = tx.send(Frame::Reply { id, result });
    });
    map.insert(id, task.abort_handle());
}

impl NodeShared {
    /// The pool's run-queue lengths summed and divided by its size, in thousandths.
    pub(crate) fn load_milli(&self) -> u64 {
        let Some(pool) = &self.pool else { return 0 };
        let sup = pool.supervisor();
        let total: usize = pool.balancer().members().iter().map(Member::load).sum();
        (total as u64 * 1000) / sup.size().max(1) as u64
    }

    pub(crate) fn pool_size(&self) -> u32 {
        self.pool.as_ref().map_or(0, |p| {
            u32::try_from(p.supervisor().size()).unwrap_or(u32::MAX)
        })
    }
}
