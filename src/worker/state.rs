//! A worker slot's state machine: which incarnation serves the slot, or whether it has ended
//! or been shut.
//!
//! ```text
//!             retire(i, successor)            retire(i, no successor)
//!  Serving(i) ─────────────────────▶ Serving(i + 1)      Serving(i) ──▶ Ended
//!      │                                                      │
//!      └──────────── shut() from any state ──▶ Shut ◀─────────┘
//! ```
//!
//! `Shut` (shutdown, give-up, or the supervisor dropped) wins over everything: a retire that
//! comes after it changes nothing, and `shut` overwrites any state. `Ended` is final except
//! for `shut`. Every handle of incarnation `i` reads alive exactly while the state is
//! `Serving(i)`.
//!
//! The file is written against `crate::sync`, so that the loom model in `loom/` compiles this
//! very file against loom's atomics.

use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The value once the supervisor has shut down or given up.
const SHUT: u64 = u64::MAX;
/// The value once the slot's worker stopped and was not restarted.
const ENDED: u64 = u64::MAX - 1;

/// Why a slot no longer takes messages for an incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// That incarnation is over: the slot serves a successor, or has ended.
    Dead,
    /// The supervisor shut down or gave up.
    Shutdown,
}

/// What a slot is doing, as one atomic word.
///
/// Relaxed throughout: it is a liveness flag that publishes no other memory. Messages travel
/// through the mailbox channel and replies through oneshot channels, which synchronise on
/// their own; a retire that must be seen before a caller hears of a crash is stored before the
/// reply channel is dropped, and that drop (a release) carries it to the caller.
#[derive(Debug)]
pub(crate) struct SlotState(AtomicU64);

impl SlotState {
    /// A slot served by incarnation 0.
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The incarnation serving the slot now, if any.
    #[inline]
    pub(crate) fn serving(&self) -> Option<u64> {
        let v = self.0.load(Relaxed);
        (v < ENDED).then_some(v)
    }

    /// Whether incarnation `incarnation` is the one serving: one atomic load.
    #[inline]
    pub(crate) fn is_serving(&self, incarnation: u64) -> bool {
        self.0.load(Relaxed) == incarnation
    }

    /// Why a message to `incarnation` would be refused, if it would.
    #[inline]
    pub(crate) fn refusal(&self, incarnation: u64) -> Option<Closed> {
        match self.0.load(Relaxed) {
            v if v == incarnation => None,
            SHUT => Some(Closed::Shutdown),
            _ => Some(Closed::Dead),
        }
    }

    /// Whether the supervisor has shut the slot.
    pub(crate) fn is_shut(&self) -> bool {
        self.0.load(Relaxed) == SHUT
    }

    /// Ends incarnation `incarnation`: the slot moves on to its successor, or ends. Does
    /// nothing unless `incarnation` is the one serving (a shut slot stays shut). Returns
    /// whether it moved.
    pub(crate) fn retire(&self, incarnation: u64, successor: bool) -> bool {
        let next = if successor { incarnation + 1 } else { ENDED };
        self.0
            .compare_exchange(incarnation, next, Relaxed, Relaxed)
            .is_ok()
    }

    /// Ends the slot whatever incarnation serves it, unless it is shut: the last line when the
    /// slot's task fails in a way no incarnation's exit covers.
    pub(crate) fn end(&self) {
        let mut v = self.0.load(Relaxed);
        while v != SHUT && v != ENDED {
            match self.0.compare_exchange_weak(v, ENDED, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// Shuts the slot for good: every handle reads dead, and sends answer `Shutdown`.
    pub(crate) fn shut(&self) {
        // A swap, not a store: as a read-modify-write it is ordered with the retires' and
        // `end`'s compare-exchanges, so a retire that comes after it always sees it.
        self.0.swap(SHUT, Relaxed);
    }
}
