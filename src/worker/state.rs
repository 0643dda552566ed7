//! A worker slot's state machine: which incarnation serves the slot, or whether it has ended,
//! been removed by a shrink, or been shut.
//!
//! ```text
//!             retire(i, successor)            retire(i, no successor)
//!  Serving(i) ─────────────────────▶ Serving(i + 1)      Serving(i) ──▶ Ended(i)
//!      │  │                                                 │  │
//!      │  └──────────────────── remove() ──▶ Removed(i) ◀───┘  │
//!      └──────────── shut() from any state ──▶ Shut ◀──────────┘
//! ```
//!
//! `Shut` (shutdown, give-up, or the supervisor dropped) wins over everything: a retire that
//! comes after it changes nothing, and `shut` overwrites any state. `Ended` is final except
//! for `remove` and `shut`; `Removed` (the slot left the supervisor in a shrink) is final
//! except for `shut`. Every handle of incarnation `i` reads alive exactly while the state is
//! `Serving(i)`.
//!
//! `Ended` and `Removed` keep the last incarnation in the low bits, so that `remove` can say
//! which incarnation a new slot in the same place may start with without any other load.
//!
//! The file is written against `crate::sync`, so that the loom model in `loom/` compiles this
//! very file against loom's atomics.

use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The value once the supervisor has shut down or given up.
const SHUT: u64 = u64::MAX;
/// Set, with the last incarnation below it, once the slot's worker stopped and was not
/// restarted.
const ENDED: u64 = 1 << 63;
/// Set, with the last incarnation below it, once a shrink took the slot out of its supervisor.
const REMOVED: u64 = 1 << 62;
/// The bits that hold an incarnation. No slot restarts 2^62 times: the restart intensity
/// stops it long before.
const INCARNATION: u64 = REMOVED - 1;

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
    /// A slot served by incarnation `first`.
    pub(crate) fn new(first: u64) -> Self {
        Self(AtomicU64::new(first & INCARNATION))
    }

    /// The incarnation serving the slot now, if any.
    #[inline]
    pub(crate) fn serving(&self) -> Option<u64> {
        let v = self.0.load(Relaxed);
        (v <= INCARNATION).then_some(v)
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

    /// Whether a shrink has taken the slot out of its supervisor.
    #[inline]
    pub(crate) fn is_removed(&self) -> bool {
        let v = self.0.load(Relaxed);
        v != SHUT && v & REMOVED != 0
    }

    /// Ends incarnation `incarnation`: the slot moves on to its successor, or ends. Does
    /// nothing unless `incarnation` is the one serving (a shut slot stays shut). Returns
    /// whether it moved.
    pub(crate) fn retire(&self, incarnation: u64, successor: bool) -> bool {
        let next = if successor {
            incarnation + 1
        } else {
            ENDED | incarnation
        };
        self.0
            .compare_exchange(incarnation, next, Relaxed, Relaxed)
            .is_ok()
    }

    /// Ends the slot whatever incarnation serves it, unless it is shut, removed or already
    /// ended: the last line when the slot's task fails in a way no incarnation's exit covers.
    pub(crate) fn end(&self) {
        let mut v = self.0.load(Relaxed);
        while v <= INCARNATION {
            match self.0.compare_exchange_weak(v, ENDED | v, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// Takes the slot out of its supervisor (a shrink): every handle reads dead and sends
    /// answer `Dead`, and no retire moves it on any more. Returns the first incarnation a new
    /// slot in the same place may start with: one past any incarnation this slot has served
    /// or may still start. `None` if the slot was already removed or shut.
    pub(crate) fn remove(&self) -> Option<u64> {
        let mut v = self.0.load(Relaxed);
        loop {
            if v == SHUT || v & REMOVED != 0 {
                return None;
            }
            let last = v & INCARNATION;
            match self
                .0
                .compare_exchange_weak(v, REMOVED | last, Relaxed, Relaxed)
            {
                // A retire that lost to this finds the slot removed and starts nothing; one
                // that won moved the slot to `last`, the highest incarnation it may start.
                Ok(_) => return Some(last + 1),
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `remove` answers the first incarnation free for the slot's place once, then `None`:
    /// a removed slot is not removed again, and a shut one never.
    #[test]
    fn a_slot_is_removed_once_and_a_shut_one_never() {
        let state = SlotState::new(4);
        assert!(state.retire(4, true), "incarnation 4 hands over to 5");
        assert_eq!(state.remove(), Some(6));
        assert!(state.is_removed());
        assert_eq!(state.remove(), None, "already removed");
        let shut = SlotState::new(0);
        shut.shut();
        assert_eq!(shut.remove(), None, "shut");
        assert!(!shut.is_removed());
    }
}
