//! The balancer's two small state machines: the pick cursor that carries the drain flag, and
//! the single flight of ratio-triggered refreshes.
//!
//! They are written against `crate::sync`, so that the loom models in `loom/` compile this
//! very file against loom's atomics and check every interleaving.

use crate::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

/// The cursor every pick advances, with the drain flag in its lowest bit.
///
/// A pick is one `fetch_add`: the value it returns gives the pick its turn *and* says whether
/// a drain had begun. All read-modify-writes of one atomic are totally ordered, so each pick
/// is ordered either before the `fetch_or` that starts a drain (it may succeed) or after it
/// (it sees the flag and is refused) — and likewise around the `fetch_and` that ends it. No
/// pick that comes after the start and before the end succeeds, and the check costs nothing
/// beyond the increment every round-robin pick makes anyway.
///
/// Relaxed throughout: the drain flag orders picks against drains through the modification
/// order of this one location; it publishes no other memory.
#[derive(Debug)]
pub(crate) struct Cursor(AtomicUsize);

/// The drain flag's bit.
const DRAINING: usize = 1;
/// What each pick adds: the turn lives above the flag bit.
const STEP: usize = 2;

impl Cursor {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Takes a turn: `Ok(turn)`, or `Err(turn)` if a drain is in progress. `turn` counts the
    /// turns taken before this one.
    #[inline]
    pub(crate) fn next(&self) -> Result<usize, usize> {
        let c = self.0.fetch_add(STEP, Relaxed);
        if c & DRAINING == 0 {
            Ok(c >> 1)
        } else {
            Err(c >> 1)
        }
    }

    /// Raises the drain flag. Returns the turns taken before it: every turn from there on is
    /// refused until [`end_drain`](Cursor::end_drain).
    pub(crate) fn start_drain(&self) -> usize {
        self.0.fetch_or(DRAINING, Relaxed) >> 1
    }

    /// Lowers the drain flag. Returns the turns taken before it: every turn from there on is
    /// granted again.
    pub(crate) fn end_drain(&self) -> usize {
        self.0.fetch_and(!DRAINING, Relaxed) >> 1
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.0.load(Relaxed) & DRAINING != 0
    }

    /// Turns taken so far (refused ones included), modulo the word size.
    pub(crate) fn turns(&self) -> usize {
        self.0.load(Relaxed) >> 1
    }
}

/// At most one ratio-triggered refresh at a time; pickers that find one running go on
/// without it and never wait.
#[derive(Debug)]
pub(crate) struct SingleFlight(AtomicBool);

impl SingleFlight {
    pub(crate) fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Runs a refresh of generation `seen` unless one is in flight or generation `seen` has
    /// already been replaced; returns whether this call refreshed.
    ///
    /// `lock` takes the writer lock (which manual refreshes and disable/enable also take),
    /// `generation` reads the stored snapshot's generation, and `reload` replaces it while the
    /// lock is held. A picker that lost the race to an earlier refresh of the same generation
    /// finds the generation moved on and does nothing: each generation is refreshed at most
    /// once by the ratio.
    pub(crate) fn refresh<L>(
        &self,
        seen: u64,
        lock: impl FnOnce() -> L,
        generation: impl FnOnce(&L) -> u64,
        reload: impl FnOnce(&mut L),
    ) -> bool {
        // Acquire pairs with the Release in `Landing::drop`: a winner sees what the previous
        // flight did before it landed.
        if self.0.swap(true, Acquire) {
            return false;
        }
        let _landing = Landing(&self.0);
        let mut guard = lock();
        if generation(&guard) != seen {
            return false;
        }
        reload(&mut guard);
        true
    }
}

/// Clears the single-flight flag however the refresh ends, a panicking source included.
struct Landing<'a>(&'a AtomicBool);

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        // Release pairs with the Acquire swap in `SingleFlight::refresh`.
        self.0.store(false, Release);
    }
}
