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

use super::{capacity::Capacity, mailbox::MailboxTx, state::SlotState, Worker};

/// One place in a supervisor: its mailbox and load outlive the incarnations that serve it, so
/// that messages queued for a worker that crashed go, in order, to its successor.
pub(crate) struct Slot<W: Worker> {
    pub(crate) index: usize,
    pub(crate) tx: MailboxTx<W>,
    /// Messages queued plus the one in progress: what `WorkerRef::load` reads in one load.
    pub(crate) load: CachePadded<AtomicUsize>,
    /// Which incarnation serves the slot, or whether it has ended or been shut.
    pub(crate) state: SlotState,
    /// The last incarnation started, kept once the slot has stopped (for stats).
    last: AtomicU64,
    /// The supervisor's signal that some worker's load fell.
    capacity: Arc<Capacity>,
}

impl<W: Worker> Slot<W> {
    pub(crate) fn new(index: usize, tx: MailboxTx<W>, capacity: Arc<Capacity>) -> Self {
        Self {
            index,
            tx,
            load: CachePadded::new(AtomicUsize::new(0)),
            state: SlotState::new(),
            last: AtomicU64::new(0),
            capacity,
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

    /// Messages queued plus the one in progress.
    pub(crate) fn load(&self) -> usize {
        self.load.load(Relaxed)
    }

    /// One message fewer queued or in progress; wakes those waiting for capacity.
    pub(crate) fn unload(&self) {
        // SeqCst: ordered before the look at the waiters in `released` (see there).
        self.load.fetch_sub(1, SeqCst);
        self.capacity.released();
    }
}
