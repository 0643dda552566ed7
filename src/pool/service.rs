//! A [`Pool`] as a tower `Service` (cargo feature `tower`).
//!
//! `poll_ready` is the backpressure point: it picks a worker and reserves it for the next
//! `call`, or pends while every live worker is at `max_load` or the pool drains. It is woken
//! by the pool itself (a worker whose load falls, a drain that ends), never by a timer or by
//! polling again. A `call` without `poll_ready` works as [`Pool::call`] does.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::futures::OwnedNotified;

use super::{error::PoolCallError, Pool};
use crate::{
    error::{CallError, PickError},
    worker::{capacity::CapacityWait, Worker, WorkerRef},
};

/// One `Pool` handle's readiness: the worker reserved by `poll_ready`, or what it waits for.
/// A clone of the pool starts afresh.
pub(crate) struct Readiness<W: Worker> {
    reserved: Option<WorkerRef<W>>,
    waiting: Option<Waiting>,
}

impl<W: Worker> Default for Readiness<W> {
    fn default() -> Self {
        Self {
            reserved: None,
            waiting: None,
        }
    }
}

enum Waiting {
    /// Every live worker was at `max_load`: woken when a worker's load falls.
    Capacity(CapacityWait),
    /// The pool was draining: woken when the drain ends.
    Resumed(Pin<Box<OwnedNotified>>),
}

impl Waiting {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Self::Capacity(c) => c.notified.as_mut().poll(cx),
            Self::Resumed(n) => n.as_mut().poll(cx),
        }
    }
}

impl<W: Worker> Pool<W> {
    /// Registers for what the refusal `e` waits for, then picks again (so that a change in
    /// between still wakes the waiter): the worker, or what to wait for, or `None` when
    /// there is nothing to wait for (the call will report why).
    fn register(&self, e: &PickError) -> Result<WorkerRef<W>, Option<Waiting>> {
        let waiting = match e {
            PickError::Overloaded => Waiting::Capacity(self.supervisor.capacity().wait()),
            PickError::Draining => {
                let mut n = Box::pin(self.balancer.resumed().notified_owned());
                n.as_mut().enable();
                Waiting::Resumed(n)
            }
            _ => return Err(None),
        };
        match self.balancer.pick() {
            Ok(w) => Ok(w.cloned()),
            Err(again) if std::mem::discriminant(&again) == std::mem::discriminant(e) => {
                Err(Some(waiting))
            }
            // Refused for another reason now: the caller looks again from the top.
            Err(_) => Err(None),
        }
    }
}

impl<W: Worker> tower::Service<W::Msg> for Pool<W> {
    type Response = W::Reply;
    type Error = PoolCallError<W::Msg>;
    type Future = Pin<Box<dyn Future<Output = Result<W::Reply, PoolCallError<W::Msg>>> + Send>>;

    /// `Ready` once a worker is reserved for the next call (or when the call can only fail:
    /// no live worker, or the pool has shut down; the call then says why and hands the message
    /// back). `Pending` while every live worker is at `max_load` or the pool drains.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            if let Some(waiting) = &mut self.ready.waiting {
                if waiting.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.ready.waiting = None;
            }
            if self.ready.reserved.is_some() || self.supervisor.is_stopped() {
                return Poll::Ready(Ok(()));
            }
            let refused = match self.balancer.pick() {
                Ok(w) => {
                    self.ready.reserved = Some(w.cloned());
                    return Poll::Ready(Ok(()));
                }
                Err(e) => e,
            };
            match self.register(&refused) {
                Ok(worker) => {
                    self.ready.reserved = Some(worker);
                    return Poll::Ready(Ok(()));
                }
                Err(Some(waiting)) => self.ready.waiting = Some(waiting),
                Err(None) if matches!(refused, PickError::Overloaded | PickError::Draining) => {
                    // The refusal changed between two looks: look again.
                }
                Err(None) => return Poll::Ready(Ok(())),
            }
        }
    }

    fn call(&mut self, msg: W::Msg) -> Self::Future {
        let pool = self.clone();
        let reserved = self.ready.reserved.take();
        Box::pin(async move {
            if let Some(worker) = reserved {
                match worker.call(msg).await {
                    // It died since it was reserved: pick another.
                    Err(CallError::Dead(m)) => return pool.call(m).await,
                    other => return other.map_err(PoolCallError::from),
                }
            }
            pool.call(msg).await
        })
    }
}
