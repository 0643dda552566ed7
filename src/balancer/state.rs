//! The balancer's two small state machines: the striped pick cursor that carries the drain
//! flag, and the single flight of ratio-triggered refreshes.
//!
//! They are written against `crate::sync`, so that the loom models in `loom/` compile this
//! very file against loom's atomics and check every interleaving.

use std::cell::Cell;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

/// How many stripes a balancer's cursor has: threads beyond this many share stripes.
pub(crate) const STRIPES: usize = 16;

/// The cursor every pick advances, striped so that pickers on different cores write different
/// cache lines, with the drain flag in the lowest bit of every stripe.
///
/// A thread picks on its own stripe ([`home_stripe`]), and a pick is one `fetch_add` there:
/// the value it returns gives the pick its turn on that stripe *and* says whether a drain had
/// begun. One thread's turns are consecutive, so round robin stays exact for one thread; the
/// stripes' turns together count every pick.
///
/// A drain sets the flag on every stripe, one `fetch_or` each, and clears it the same way. All
/// read-modify-writes of one stripe are totally ordered, so each pick is ordered either before
/// the `fetch_or` that flags its stripe (it may succeed) or after it (it sees the flag and is
/// refused), and likewise around the `fetch_and` that clears it. A drain counts as started once
/// [`start_drain`](Cursor::start_drain) has flagged the last stripe: anything that happens after
/// that (maintenance, and every pick that happens after it) comes after every stripe's
/// `fetch_or`, and by coherence a read-modify-write that happens after a write to a location
/// is later than it in that location's modification order: refused, on whatever stripe. A
/// pick that races the flagging may be refused a little early (its stripe was flagged first)
/// or granted (its stripe was not flagged yet); either way it was not after the start. See
/// [the orderings](crate::docs::orderings).
///
/// Relaxed for picks: the flag orders picks against drains through the modification order of
/// each stripe, and through the happens-before that the drain's callers already have with
/// what follows it. Only [`admit`](Cursor::admit) (Release) and the drain's start (Acquire)
/// publish memory: the load counted for a message about to be queued.
///
/// `N`, the number of stripes, must be a power of two; the loom models use 2.
#[derive(Debug)]
pub(crate) struct Cursor<const N: usize = STRIPES> {
    stripes: [CachePadded<AtomicUsize>; N],
}

/// The drain flag's bit.
const DRAINING: usize = 1;
/// What each pick adds: the turn lives above the flag bit.
const STEP: usize = 2;

impl<const N: usize> Cursor<N> {
    /// A power of two, so that `& (N - 1)` keeps any index in bounds without a check.
    const MASK: usize = {
        assert!(N.is_power_of_two(), "the stripe count is a power of two");
        N - 1
    };

    pub(crate) fn new() -> Self {
        Self {
            stripes: std::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
        }
    }

    #[inline]
    fn stripe(&self, stripe: usize) -> &AtomicUsize {
        &self.stripes[stripe & Self::MASK]
    }

    /// Takes a turn on `stripe`: `Ok(turn)`, or `Err(turn)` if a drain is in progress. `turn`
    /// counts the turns taken on this stripe before this one.
    #[inline]
    pub(crate) fn next(&self, stripe: usize) -> Result<usize, usize> {
        let c = self.stripe(stripe).fetch_add(STEP, Relaxed);
        if c & DRAINING == 0 {
            Ok(c >> 1)
        } else {
            Err(c >> 1)
        }
    }

    /// Whether a drain is in progress, without taking a turn: a read-modify-write on `stripe`
    /// that changes nothing, so that, like [`next`](Cursor::next), it is ordered before or
    /// after the `fetch_or` that flags that stripe in its modification order (a plain load
    /// could read a value from before a drain that has already flagged it). One stripe is
    /// enough for the same reason it is for a pick: a check that happens after the drain's
    /// start comes after every stripe's flag.
    #[inline]
    pub(crate) fn check(&self, stripe: usize) -> Result<(), ()> {
        if self.stripe(stripe).fetch_or(0, Relaxed) & DRAINING == 0 {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Whether work counted into a member's load may now be queued for it: the second look
    /// at the drain flag that a pool makes after it has counted a picked message into its
    /// worker's load and before it queues it, so that a pick made before a drain began cannot
    /// deliver its message after the drain's idle wait has looked.
    ///
    /// Release, paired with the Acquire of [`start_drain`](Cursor::start_drain)'s
    /// `fetch_or`: both are read-modify-writes of the stripe, so one precedes the other in
    /// its modification order. If this comes first it reads the flag down (admitted), and
    /// the `fetch_or` reads a value of this one's release sequence (every later write to a
    /// stripe is a read-modify-write too): this synchronises with it, so the count made
    /// before this happens before everything the drain does next, its look at the loads
    /// included. If the `fetch_or` comes first, this reads the flag up (not admitted).
    #[inline]
    pub(crate) fn admit(&self, stripe: usize) -> bool {
        self.stripe(stripe).fetch_or(0, Release) & DRAINING == 0
    }

    /// Passes over `turns` turns of `stripe` at once: a round-robin pick that had to look past
    /// dead or disabled members moves its stripe past them too, so that its thread's next pick
    /// does not land on the one it just handed out.
    #[inline]
    pub(crate) fn skip(&self, stripe: usize, turns: usize) {
        self.stripe(stripe)
            .fetch_add(turns.wrapping_mul(STEP), Relaxed);
    }

    /// Raises the drain flag on every stripe, in order. Returns the turns taken on each stripe
    /// before its flag: every turn on it from there on is refused until
    /// [`end_drain`](Cursor::end_drain). The drain has started once this returns.
    ///
    /// Acquire: pairs with the Release of [`admit`](Cursor::admit), so that every message
    /// admitted before the flag went up on its stripe is counted in its member's load for
    /// whatever the drain looks at next.
    pub(crate) fn start_drain(&self) -> [usize; N] {
        std::array::from_fn(|s| self.stripes[s].fetch_or(DRAINING, Acquire) >> 1)
    }

    /// Lowers the drain flag on every stripe, in order. Returns the turns taken on each stripe
    /// before it was lowered there: every turn on it from there on is granted again.
    pub(crate) fn end_drain(&self) -> [usize; N] {
        std::array::from_fn(|s| self.stripes[s].fetch_and(!DRAINING, Relaxed) >> 1)
    }

    /// Whether `stripe` carries the drain flag. Read on the caller's own stripe, it agrees with
    /// the caller's picks: a `true` means the caller's next pick is refused unless the drain
    /// ends meanwhile (coherence of one location read, then read-modified, by one thread),
    /// and, called after a drain has started (or ended), it reads `true` (or `false`).
    pub(crate) fn is_draining(&self, stripe: usize) -> bool {
        self.stripe(stripe).load(Relaxed) & DRAINING != 0
    }

    /// Turns taken so far on all stripes together (refused ones included), modulo the word
    /// size. Exact once the picks it should count happen before it; while picks run, a sum
    /// of values each read at its own moment.
    pub(crate) fn turns(&self) -> usize {
        self.stripes
            .iter()
            .fold(0, |sum, s| sum.wrapping_add(s.load(Relaxed) >> 1))
    }
}

/// Where the next thread to pick gets its stripe: threads take stripes in turn, so the first
/// [`STRIPES`] threads to pick in a process each have one of their own.
static NEXT_STRIPE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// No stripe chosen yet.
const UNSET: usize = usize::MAX;

std::thread_local! {
    /// The calling thread's stripe, in every balancer, chosen at its first pick. A `Cell`
    /// with a constant initialiser and no destructor: no allocation, no registration.
    static HOME: Cell<usize> = const { Cell::new(UNSET) };
}

/// The calling thread's stripe, in `0..STRIPES`; the first call on a thread chooses it.
#[inline]
pub(crate) fn home_stripe() -> usize {
    let s = HOME.with(Cell::get);
    if s != UNSET {
        return s;
    }
    choose_stripe()
}

#[cold]
#[inline(never)]
fn choose_stripe() -> usize {
    // Relaxed: a ticket, and nothing else; any order of tickets shares the stripes out.
    let s = NEXT_STRIPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
    HOME.with(|h| h.set(s));
    s
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
        let c: Cursor<2> = Cursor::new();
        assert_eq!((c.next(0), c.next(0), c.next(1)), (Ok(0), Ok(1), Ok(0)));
        assert_eq!(c.start_drain(), [2, 1], "turns taken before the drain");
        assert!(c.is_draining(0) && c.is_draining(1));
        assert_eq!(
            (c.next(0), c.next(1), c.check(1)),
            (Err(2), Err(1), Err(())),
            "refused, with their turns"
        );
        assert_eq!(c.end_drain(), [3, 2], "turns taken before the end");
        assert!(!c.is_draining(0) && !c.is_draining(1));
        assert_eq!(c.check(0), Ok(()));
        c.skip(1, 3);
        assert_eq!((c.next(1), c.next(0)), (Ok(5), Ok(3)));
        assert_eq!(c.turns(), 4 + 6);
    }

    #[test]
    fn a_stripe_index_stays_in_bounds() {
        let c: Cursor<4> = Cursor::new();
        assert_eq!(c.next(4 + 1), Ok(0));
        assert_eq!(c.next(1), Ok(1), "stripe 5 is stripe 1");
        assert!(home_stripe() < STRIPES);
        assert_eq!(home_stripe(), home_stripe(), "a thread keeps its stripe");
    }

    /// However many threads have chosen before, a stripe is always one of the cursor's: the
    /// tickets wrap round the stripes.
    #[test]
    fn every_stripe_chosen_is_in_range() {
        let chosen: Vec<usize> = (0..20 * STRIPES + 3).map(|_| choose_stripe()).collect();
        assert!(chosen.iter().all(|&s| s < STRIPES), "{chosen:?}");
        assert_eq!(home_stripe(), *chosen.last().unwrap());
    }
}
