//! One place in a supervisor: the mailbox, load and state that outlive the incarnations
//! serving it.

use std::sync::{
    atomic::{
        AtomicU64, AtomicUsize,
        Ordering::{Relaxed, SeqCst},
    },
    Arc,
};

use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::penalty::Penalty;
use tokio_util::sync::CancellationToken;

use super::{
    capacity::Capacity,
    mailbox::{Envelope, MailboxTx, Refused},
    state::SlotState,
    Worker,
};

/// One place in a supervisor: its mailbox and load outlive the incarnations that serve it, so
/// that messages queued for a worker that crashed go, in order, to its successor.
pub(crate) struct Slot<W: Worker> {
    pub(crate) index: usize,
    /// The slot's first incarnation: 0, or one past the last of a slot that a shrink removed
    /// from the same place, so that worker ids never repeat.
    pub(crate) first: u64,
    pub(crate) tx: MailboxTx<W>,
    /// Messages queued plus the one in progress, and calls reserved: what `WorkerRef::load`
    /// reads, on one cache line.
    pub(crate) load: CachePadded<Load>,
    /// Which incarnation serves the slot, or whether it has ended, been removed or been shut.
    pub(crate) state: SlotState,
    /// Wakes the slot's task when a shrink removes the slot (the state says so first).
    pub(crate) removed: CancellationToken,
    /// The slot's task while it waits for a message, idle: woken by the supervisor's stop and
    /// drain signals and by removal, after each sets its flag.
    pub(crate) idle: AtomicWaker,
    /// The last incarnation started, kept once the slot has stopped (for stats).
    last: AtomicU64,
    /// The supervisor's signal that some worker's load fell.
    capacity: Arc<Capacity>,
    /// What the failure penalty's instants count from (tokio's clock).
    epoch: Instant,
    /// Out of rotation by outlier ejection (`Member::on_ejection`): not a hand-back target.
    ejected: std::sync::atomic::AtomicBool,
}

impl<W: Worker> Slot<W> {
    pub(crate) fn new(index: usize, first: u64, tx: MailboxTx<W>, capacity: Arc<Capacity>) -> Self {
        Self {
            index,
            first,
            tx,
            load: CachePadded::new(Load::default()),
            state: SlotState::new(first),
            removed: CancellationToken::new(),
            idle: AtomicWaker::new(),
            last: AtomicU64::new(first),
            capacity,
            epoch: Instant::now(),
            ejected: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Records that incarnation `incarnation` has been started (for stats).
    pub(crate) fn started(&self, incarnation: u64) {
        self.last.store(incarnation, Relaxed);
    }

    /// The last incarnation started.
    pub(crate) fn last(&self) -> u64 {
        self.last.load(Relaxed)
    }

    /// Messages queued plus the one in progress, plus calls reserved: what stats show.
    pub(crate) fn load(&self) -> usize {
        self.queued()
            .saturating_add(self.load.reserved.load(Relaxed))
    }

    /// [`load`](Slot::load) plus what is left of the penalty of recent failures: what picks
    /// weigh. Reads the clock only while a penalty is set.
    #[inline]
    pub(crate) fn pick_load(&self) -> usize {
        let load = self.load();
        if self.load.penalty.is_set() {
            load.saturating_add(self.load.penalty.at(self.now()))
        } else {
            load
        }
    }

    /// Nanoseconds since the slot was made, on tokio's clock.
    fn now(&self) -> u64 {
        crate::penalty::nanos_since(self.epoch)
    }

    /// Marks the slot ejected by a balancer's outlier ejection, or back.
    pub(crate) fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Relaxed);
    }

    /// Free for hand-back: nothing queued, in hand or reserved, no failure penalty, and not
    /// ejected.
    pub(crate) fn is_free(&self) -> bool {
        !self.ejected.load(Relaxed) && self.pick_load() == 0
    }

    /// The serving incarnation's reply was a failure ([`Worker::failed`]).
    pub(crate) fn failed(&self) {
        self.load.penalty.failed(self.now());
    }

    /// The serving incarnation's reply was not a failure.
    #[inline]
    pub(crate) fn succeeded(&self) {
        self.load.penalty.succeeded();
    }

    /// Messages queued plus the one in progress: what a drain waits for.
    pub(crate) fn queued(&self) -> usize {
        self.load.queued.load(Relaxed)
    }

    /// One message fewer queued or in progress; wakes those waiting for capacity.
    pub(crate) fn unload(&self) {
        // SeqCst: ordered before the look at the waiters in `released` (see there).
        self.load.queued.fetch_sub(1, SeqCst);
        self.capacity.released();
    }

    /// Counts one call reserved for this slot (a ready `Pool` service's) into its load.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn reserve(&self) {
        self.load.reserved.fetch_add(1, Relaxed);
    }

    /// Uncounts a reservation; wakes those waiting for capacity, as the load fell.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn unreserve(&self) {
        // SeqCst: as in `unload`.
        self.load.reserved.fetch_sub(1, SeqCst);
        self.capacity.released();
    }

    /// Queues `env` at once, counted in the load, or says why not; whichever incarnation
    /// serves the slot takes it. `admit` is asked once the message is counted and before it
    /// is queued; if it says no, the count is undone and `env` comes back as
    /// [`Refused::Barred`].
    pub(crate) fn try_push(
        &self,
        env: Envelope<W>,
        admit: Admit<'_>,
    ) -> Result<(), Refused<Envelope<W>>> {
        let queued = Queued::new(self);
        if !admit() {
            return Err(Refused::Barred(env));
        }
        self.tx.try_send(env)?;
        queued.commit();
        Ok(())
    }

    /// Queues `env`, counted in the load, waiting for room in a bounded mailbox; hands it
    /// back if the mailbox closed.
    pub(crate) async fn push(&self, env: Envelope<W>) -> Result<(), Envelope<W>> {
        self.push_admitted(env, &|| true)
            .await
            .map_err(Refused::into_inner)
    }

    /// [`push`](Slot::push) behind `admit`, asked as in [`try_push`](Slot::try_push) before
    /// the wait for room: once admitted, the message is counted in the load while it waits,
    /// so a drain's idle wait waits for it too.
    pub(crate) async fn push_admitted(
        &self,
        env: Envelope<W>,
        admit: Admit<'_>,
    ) -> Result<(), Refused<Envelope<W>>> {
        let queued = Queued::new(self);
        if !admit() {
            return Err(Refused::Barred(env));
        }
        self.tx.send(env).await.map_err(Refused::Closed)?;
        queued.commit();
        Ok(())
    }
}

/// A slot's load: what is queued or in progress, what ready services have reserved, and the
/// penalty of its recent failures.
#[derive(Debug, Default)]
pub(crate) struct Load {
    queued: AtomicUsize,
    reserved: AtomicUsize,
    /// The penalty of the slot's recent failures, on the slot's clock (`Slot::now`).
    penalty: Penalty,
}

/// The gate a message passes after it is counted in a slot's load and before it is queued:
/// a pool's "has a drain begun since the pick?" (`Balancer::admits`).
pub(crate) type Admit<'a> = &'a (dyn Fn() -> bool + Sync);

/// Counts a message into the slot's load; uncounts it on drop unless committed, so a refused
/// or cancelled send leaves the load as it was.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new<W: Worker>(slot: &'a Slot<W>) -> Self {
        slot.load.queued.fetch_add(1, Relaxed);
        Self(&slot.load.queued)
    }

    /// The message is in the mailbox: the worker uncounts it once handled or returned.
    fn commit(self) {
        std::mem::forget(self);
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
