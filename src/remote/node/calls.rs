//! The call family: one node, the least loaded, many, all, tagged, `n` times, every core.

use futures_util::future::join_all;
use serde::{de::DeserializeOwned, Serialize};

use super::{ByNode, Node};
use crate::{
    member::Member,
    remote::{
        client::RemoteNode,
        error::{Cause, RemoteError},
        handler::{self, Handler},
        identity::NodeId,
    },
};

impl Node {
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
            .peers
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
        let attempts = self.shared().peers.len() + 1;
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
        let bytes = postcard::to_stdvec(args)
            .map_err(|e| RemoteError::Encode(Cause::new(e.to_string(), e)))?;
        let reply = peer
            .call_raw(h.name(), bytes, self.shared().common.cfg.call_timeout)
            .await?;
        handler::decode_exact(&reply).map_err(RemoteError::Decode)
    }

    /// Runs `h` on each of `nodes` at once; one result per node, in order.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
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
                let result = match self.shared().peers.find(n) {
                    Some(peer) => self.call_on(&peer, h, args).await,
                    None => Err(RemoteError::UnknownNode(n.clone())),
                };
                (n.clone(), result)
            }
        });
        join_all(calls).await
    }

    /// Runs `h` on every live worker node at once.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
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
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
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
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
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
        let live = self.shared().peers.live();
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
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
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
        self.runs_on(&self.shared().peers.live(), |_| n, h, &args)
            .await
    }

    /// Runs `h` once per pool worker of every live worker node, all at once (Skitter's "on
    /// every core of every worker"); results grouped by node, in name order. The calls of one
    /// node arrive together, so its least-loaded pool deals them one per worker.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
    pub async fn on_all_worker_cores<A, O>(&self, h: Handler<A, O>, args: A) -> ByNode<O>
    where
        A: Serialize,
        O: DeserializeOwned,
    {
        self.runs_on(
            &self.shared().peers.live(),
            |p| p.link.pool_size as usize,
            h,
            &args,
        )
        .await
    }

    /// Runs `h` once per pool worker of every live worker node tagged `tag`, all at once.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Node::call): dropping the future cancels every call under way on its
    /// node; the results of those that had finished are lost with it.
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
            .peers
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
}
