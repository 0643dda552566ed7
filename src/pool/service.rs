//! A [`Pool`] as a tower `Service` (cargo feature `tower`).
//!
//! `poll_ready` is the backpressure point: it picks a worker and reserves it for the next
//! `call`, or pends while every live worker is at `max_load` or the pool drains. It is woken
//! by the pool itself (a worker whose load falls, a drain that ends), never by a timer or by
//! polling again. A `call` without `poll_ready` works as [`Pool::call`] does.
//!
//! A reservation counts in the worker's load from `poll_ready` until the `call` that uses it
//! or the drop of the handle that holds it, so ready clones cannot together push a worker
//! past `max_load`; a drain's idle wait does not wait for it (it may never be used). A call
//! made on a reservation once a drain has begun is refused with `Draining`, message inside,
//! like any other call during a drain.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use parking_lot::Mutex;
use tokio::sync::futures::OwnedNotified;

use super::{error::PoolCallError, Delivery, Pool};
use crate::{
    balancer::Balancer,
    policy::error::PickError,
    worker::error::CallError,
    worker::{capacity::CapacityWait, Reservation, TryCall, Worker},
};

/// One `Pool` handle's readiness: the worker reserved by `poll_ready`, or what it waits for.
/// A clone of the pool starts afresh.
pub(crate) struct Readiness<W: Worker> {
    /// Behind a lock because the inherent [`Pool::call`] (`&self`) uses it too: tower's
    /// `svc.ready().await?.call(msg)` resolves to the inherent method on a `Pool`. Locked
    /// only while `has_reservation` says there is one (never, for a pool used without tower).
    reserved: Mutex<Option<Reservation<W>>>,
    has_reservation: AtomicBool,
    waiting: Option<Waiting>,
}

impl<W: Worker> Default for Readiness<W> {
    fn default() -> Self {
        Self {
            reserved: Mutex::new(None),
            has_reservation: AtomicBool::new(false),
            waiting: None,
        }
    }
}

impl<W: Worker> Readiness<W> {
    /// Whether `poll_ready` has reserved a worker not yet used.
    fn is_reserved(&mut self) -> bool {
        self.reserved.get_mut().is_some()
    }

    fn reserve(&mut self, reservation: Reservation<W>) {
        *self.reserved.get_mut() = Some(reservation);
        // Relaxed: written under `&mut self`; whoever reads it through `&self` later got
        // that shared borrow after this, and the lock orders the reservation itself.
        self.has_reservation.store(true, Relaxed);
    }

    /// Takes the reservation, if there is one, for the call about to be made.
    pub(super) fn take(&self) -> Option<Reservation<W>> {
        if !self.has_reservation.load(Relaxed) {
            return None;
        }
        let taken = self.reserved.lock().take();
        self.has_reservation.store(false, Relaxed);
        taken
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
    fn register(&self, e: &PickError) -> Result<Reservation<W>, Option<Waiting>> {
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
            Ok(w) => Ok(w.reserve()),
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
            if self.ready.is_reserved() || self.supervisor.is_stopped() {
                return Poll::Ready(Ok(()));
            }
            let refused = match self.balancer.pick() {
                Ok(w) => {
                    let reservation = w.reserve();
                    self.ready.reserve(reservation);
                    return Poll::Ready(Ok(()));
                }
                Err(e) => e,
            };
            match self.register(&refused) {
                Ok(reservation) => {
                    self.ready.reserve(reservation);
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
        let reserved = self.ready.take();
        Box::pin(async move {
            match reserved {
                Some(reservation) => pool.call_reserved(reservation, msg).await,
                None => pool.call(msg).await,
            }
        })
    }
}

impl<W: Worker> Pool<W> {
    /// A call on the worker `poll_ready` reserved; another pick if it has died since.
    pub(super) async fn call_reserved(
        &self,
        reservation: Reservation<W>,
        msg: W::Msg,
    ) -> Result<W::Reply, PoolCallError<W::Msg>> {
        let admit = &|| self.balancer.admits();
        let delivery = Delivery::queue(reservation.worker(), msg, admit, true);
        // Queued (or not): the call's own count replaces the reservation's.
        drop(reservation);
        match delivery.answer().await {
            Ok((reply, _)) => Ok(reply),
            // A drain began after the reservation: refused like any call during a drain.
            Err(TryCall::Barred(m)) => Err(PoolCallError::Draining(m)),
            // It died since it was reserved: pick another.
            Err(TryCall::Refused(CallError::Dead(m))) => {
                self.call_by(m, Balancer::pick, None, true).await
            }
            Err(TryCall::Refused(e)) => Err(PoolCallError::from(e)),
            Err(TryCall::Full(_)) => unreachable!("a call waits for room, never ends full"),
        }
    }
}
