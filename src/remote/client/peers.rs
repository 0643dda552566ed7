//! The worker nodes a master knows, up or down: the connections it keeps to them (with
//! reconnection and backoff), the balancer that selects among them, and the discovery events
//! that add and remove them.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use backon::BackoffBuilder;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    discovery::DiscoveryEvent,
    handshake,
    link::{Current, Link},
    member::RemoteNode,
};
use crate::{
    balancer::Balancer,
    member::Member,
    policy::Policy,
    remote::{common::Common, error::ConnectError, identity::NodeId, proto::croupier::v1 as pb},
};

/// A master's worker nodes. Tasks hold it; the node's stop ends them.
pub(crate) struct Peers {
    pub(crate) common: Arc<Common>,
    /// Every worker node known, up or down. Slow path only.
    list: Arc<Mutex<Vec<RemoteNode>>>,
    /// Selects among `list`.
    pub(crate) balancer: Balancer<RemoteNode>,
    /// Reconnecting tasks by address, to stop one when discovery removes it.
    keepers: Mutex<HashMap<SocketAddr, CancellationToken>>,
    /// Bumped on every change of the worker nodes' set, liveness or load.
    changes: Arc<watch::Sender<u64>>,
    /// Whether this master wants its workers' logs.
    logs_here: watch::Sender<bool>,
}

/// A connection whose link is marked up: its connection, load stream, and log stream if this
/// master wants its workers' logs.
pub(crate) type Attached = (
    Arc<Link>,
    Arc<Current>,
    tonic::Streaming<crate::remote::proto::xds::data::orca::v3::OrcaLoadReport>,
    Option<tonic::Streaming<pb::LogRecord>>,
);

impl Peers {
    /// No worker node yet; `policy` selects among those to come.
    pub(crate) fn new(common: Arc<Common>, policy: Policy) -> Self {
        let list: Arc<Mutex<Vec<RemoteNode>>> = Arc::default();
        let balancer = {
            let list = Arc::clone(&list);
            Balancer::builder()
                .policy(policy)
                .source(move || list.lock().clone())
                .build()
                .expect("the default ratio and no max_load are valid")
        };
        Self {
            common,
            list,
            balancer,
            keepers: Mutex::new(HashMap::new()),
            changes: Arc::new(watch::channel(0).0),
            logs_here: watch::channel(false).0,
        }
    }

    /// Every worker node known, up or down, by name.
    pub(crate) fn ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<_> = self.list.lock().iter().map(|p| p.id().clone()).collect();
        ids.sort();
        ids
    }

    /// How many worker nodes are known, up or down.
    pub(crate) fn len(&self) -> usize {
        self.list.lock().len()
    }

    /// A receiver of the count of changes among the worker nodes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// From now on, streams the logs of every worker node into this process's `tracing`.
    pub(crate) fn want_logs(&self) {
        self.logs_here.send_replace(true);
    }

    /// Connects to `addr`, says hello, adopts the node it finds there (or refuses a second
    /// connection for a name already up elsewhere), and opens its load stream. `None` for the
    /// connection when the node was already up at that address.
    pub(crate) async fn establish(
        &self,
        addr: SocketAddr,
        extra_tags: &[String],
    ) -> Result<(Arc<Link>, Option<Attached>), ConnectError> {
        let hello = handshake::hello(addr, &self.common.local, &self.common.cfg).await?;
        let (link, new) = self.adopt(addr, &hello.reply, extra_tags)?;
        // A node met for the first time is not kept unless this connection comes up: not when
        // its handshake fails, nor when this future is dropped half way.
        let mut unkept = Unkept {
            peers: self,
            link: new.then(|| Arc::clone(&link)),
        };
        // One connection at a time: a second attempt waits for the first, then finds the node
        // up and leaves it be.
        let connecting = link.connecting.lock().await;
        if link.is_up() {
            drop(connecting);
            return Ok((link, None));
        }
        let opened =
            handshake::open_reports(&hello.channel, &self.common.local, &self.common.cfg).await;
        let (reports, first) = opened?;
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
        unkept.link = None;
        drop(connecting);
        Ok((Arc::clone(&link), Some((link, current, reports, logs))))
    }

    /// The link for the node that said `hello`, made if new (then the balancer refreshes),
    /// and whether it is new.
    /// Tags a discovery source gave (a hosts file's) are added to the node's own.
    fn adopt(
        &self,
        addr: SocketAddr,
        hello: &pb::HelloReply,
        extra_tags: &[String],
    ) -> Result<(Arc<Link>, bool), ConnectError> {
        let mut peers = self.list.lock();
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
            return Ok((Arc::clone(link), false));
        }
        let link = Link::new(
            addr,
            hello,
            extra_tags,
            Arc::clone(&self.changes),
            &self.common.local,
            &self.common.cfg,
        );
        // A node down at this address under another name is this one, back renamed: forget
        // the old name (its reconnecting task is this connection's, and stays).
        peers.retain(|p| {
            let renamed = p.link.addr() == addr && !p.link.is_up();
            if renamed {
                p.link.gone.cancel();
            }
            !renamed
        });
        peers.push(RemoteNode {
            link: Arc::clone(&link),
        });
        drop(peers);
        self.balancer.refresh();
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok((link, true))
    }

    pub(crate) fn find(&self, id: &NodeId) -> Option<RemoteNode> {
        self.list.lock().iter().find(|p| p.id() == id).cloned()
    }

    /// The live worker nodes, in name order.
    pub(crate) fn live(&self) -> Vec<RemoteNode> {
        let mut live: Vec<_> = self
            .list
            .lock()
            .iter()
            .filter(|p| p.is_alive())
            .cloned()
            .collect();
        live.sort_by(|a, b| a.id().cmp(b.id()));
        live
    }

    /// Drops a node from the list and stops reconnecting to it.
    pub(crate) fn forget(&self, peer: &RemoteNode) {
        peer.link.gone.cancel();
        self.list.lock().retain(|p| p != peer);
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
    pub(crate) fn keep(
        self: &Arc<Self>,
        addr: SocketAddr,
        tags: Vec<String>,
        first: Option<Attached>,
    ) {
        let token = self.common.stop.child_token();
        if let Some(old) = self.keepers.lock().insert(addr, token.clone()) {
            old.cancel();
        }
        let shared = Arc::clone(self);
        self.common.tracker.spawn(async move {
            let mut first = first;
            let mut delays = Reconnect::new(shared.common.cfg.report_max);
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
        current: &Current,
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
    pub(crate) fn follow(
        self: &Arc<Self>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<DiscoveryEvent>,
    ) {
        let shared = Arc::clone(self);
        self.common.tracker.spawn(async move {
            loop {
                let event = tokio::select! {
                    () = shared.common.stop.cancelled() => return,
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
                            .list
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

/// Forgets a node met for the first time when its first connection does not come up.
struct Unkept<'a> {
    peers: &'a Peers,
    link: Option<Arc<Link>>,
}

impl Drop for Unkept<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            if !link.is_up() {
                self.peers.forget(&RemoteNode { link });
            }
        }
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
