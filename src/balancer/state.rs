//! The balancer's two small state machines: the pick cursor that carries the drain flag, and
//! the single flight of ratio-triggered refreshes.
//!
//! They are written against `crate::sync`, so that the loom models in `loom/` compile this
//! very file against loom's atomics and check every interleaving.

use crate::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
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

    /// Passes over `turns` turns at once: a round-robin pick that had to look past dead or
    /// disabled members moves the cursor past them too, so the next pick does not land on
    /// the one it just handed out.
    #[inline]
    pub(crate) fn skip(&self, turns: usize) {
        self.0.fetch_add(turns.wrapping_mul(STEP), Relaxed);
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
///
/// A picker that finds a refresh in flight leaves a request behind instead (the counter goes
/// up); the refresher, before it lands, looks again for every request that came in meanwhile.
/// So a trigger is never lost: not even one that comes from a newer snapshot while the
/// refresher is still busy with an older one.
#[derive(Debug)]
pub(crate) struct SingleFlight(AtomicUsize);

impl SingleFlight {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Asks for a refresh; returns whether this call ran one.
    ///
    /// If no refresh is in flight, this call becomes the refresher: it takes the writer lock
    /// (`lock`, which manual refreshes and disable/enable also take), and reloads (`reload`)
    /// if `needed` still says so with the lock held: the snapshot stored now is below the ratio.
    /// It repeats that for requests made while it worked, then lands. Otherwise it leaves its
    /// request to the refresher in flight and returns at once.
    pub(crate) fn refresh<L>(
        &self,
        mut lock: impl FnMut() -> L,
        mut needed: impl FnMut(&L) -> bool,
        mut reload: impl FnMut(&mut L),
    ) -> bool {
        // AcqRel: Release hands what this picker saw (the deaths it counted) to the refresher
        // that reads this request; Acquire, for the winner, sees the previous flight's work.
        let mut requests = self.0.fetch_add(1, AcqRel) + 1;
        if requests > 1 {
            return false;
        }
        let crash = Crash(&self.0);
        let mut refreshed = false;
        loop {
            let mut guard = lock();
            if needed(&guard) {
                reload(&mut guard);
                refreshed = true;
            }
            drop(guard);
            // Land only if no request came in meanwhile; otherwise look again for them.
            // AcqRel: Acquire pairs with the requests' Release; Release hands this flight's
            // work to the next winner.
            match self.0.compare_exchange(requests, 0, AcqRel, Acquire) {
                Ok(_) => {
                    std::mem::forget(crash);
                    return refreshed;
                }
                Err(now) => requests = now,
            }
        }
    }
}

/// Lands the flight if the refresh panics (a panicking source), so that later triggers are
/// not refused forever. The requests pending then are dropped with the panic: the next death
/// below the ratio asks again.
struct Crash<'a>(&'a AtomicUsize);

impl Drop for Crash<'_> {
    fn drop(&mut self) {
        // Release: as a landing, hands this flight's end to the next winner's Acquire.
        self.0.store(0, Release);
    }
}
