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

    /// Whether a drain is in progress, without taking a turn: a read-modify-write that changes
    /// nothing, so that, like [`next`](Cursor::next), it is ordered before or after the
    /// `fetch_or` that starts a drain in this location's modification order (a plain load
    /// could read a value from before a drain that has already begun).
    #[inline]
    pub(crate) fn check(&self) -> Result<(), ()> {
        if self.0.fetch_or(0, Relaxed) & DRAINING == 0 {
            Ok(())
        } else {
            Err(())
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

/// At most one ratio-triggered refresh at a time; pickers that ask for one never wait for it.
///
/// The first request of a flight makes its caller the flight's owner; later requests, made
/// while the flight is under way, only count themselves in, and the owner looks again for
/// every one of them before the flight lands. So a trigger is never lost: not even one that
/// comes from a newer snapshot while the owner is still busy with an older one.
///
/// A picker does not fly its own flight: it hands ownership to the balancer's refresher
/// ([`hand_off`](SingleFlight::hand_off)), which takes it up
/// ([`take_handoff`](SingleFlight::take_handoff)) and flies it on its own thread. Slow paths
/// that may wait (a push notice of death) fly theirs themselves.
#[derive(Debug)]
pub(crate) struct SingleFlight {
    /// Requests of the flight under way; 0 when none is.
    requests: AtomicUsize,
    /// 1 while a flight's ownership waits for the refresher to take it up.
    handoff: AtomicUsize,
}

impl SingleFlight {
    pub(crate) fn new() -> Self {
        Self {
            requests: AtomicUsize::new(0),
            handoff: AtomicUsize::new(0),
        }
    }

    /// Asks for a refresh; true if this call owns the new flight (and must fly it or hand it
    /// off), false if it joined one under way.
    pub(crate) fn request(&self) -> bool {
        // AcqRel: Release hands what this picker saw (the deaths it counted) to the owner
        // that reads this request; Acquire, for a new owner, sees the previous flight's work.
        self.requests.fetch_add(1, AcqRel) == 0
    }

    /// Gives the flight this caller owns to the refresher; the caller then wakes it.
    pub(crate) fn hand_off(&self) {
        // Release: pairs with the Acquire in `take_handoff`, so the refresher sees the
        // request this owner made. A swap, not a store, so that it is ordered with the
        // refresher's swaps as one more read-modify-write.
        self.handoff.swap(1, Release);
    }

    /// The refresher's side of [`hand_off`](SingleFlight::hand_off): true if a flight was
    /// handed over, which the caller now owns and must fly.
    pub(crate) fn take_handoff(&self) -> bool {
        // Acquire: pairs with the Release in `hand_off`.
        self.handoff.swap(0, Acquire) == 1
    }

    /// Whether a flight is under way (or handed off and not yet taken up).
    pub(crate) fn is_flying(&self) -> bool {
        self.requests.load(Relaxed) != 0
    }

    /// Flies the flight this caller owns: takes the writer lock (`lock`, which manual
    /// refreshes and disable/enable also take) and reloads (`reload`) if `needed` still says
    /// so with the lock held: the snapshot stored now is below the ratio. Repeats that for
    /// requests made meanwhile, then lands. Returns whether it reloaded.
    pub(crate) fn fly<L>(
        &self,
        mut lock: impl FnMut() -> L,
        mut needed: impl FnMut(&L) -> bool,
        mut reload: impl FnMut(&mut L),
    ) -> bool {
        // Acquire: sees every request counted so far, the owner's own included.
        let mut requests = self.requests.load(Acquire);
        let crash = Crash(&self.requests);
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
            // work to the next owner.
            match self.requests.compare_exchange(requests, 0, AcqRel, Acquire) {
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
        // Release: as a landing, hands this flight's end to the next owner's Acquire.
        self.0.store(0, Release);
    }
}

// The loom models in `loom/` check these under every interleaving; this checks the turn
// arithmetic itself, one step at a time. Not under loom, whose atomics need a model.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn turns_count_through_a_drain() {
        let c = Cursor::new();
        assert_eq!((c.next(), c.next()), (Ok(0), Ok(1)));
        assert_eq!(c.start_drain(), 2, "turns taken before the drain");
        assert!(c.is_draining());
        assert_eq!(
            (c.next(), c.next()),
            (Err(2), Err(3)),
            "refused, with their turns"
        );
        assert_eq!(c.end_drain(), 4, "turns taken before the end");
        assert!(!c.is_draining());
        c.skip(3);
        assert_eq!(c.next(), Ok(7));
        assert_eq!(c.turns(), 8);
    }
}
