//! croupier's state machines, compiled from croupier's own `src/balancer/state.rs` and
//! `src/worker/state.rs` against loom's atomics, for the models below.
#![allow(dead_code)]

/// What `state.rs` reaches as `crate::sync`: loom's types under `--cfg loom`, std's otherwise.
pub(crate) mod sync {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic;
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic;
}

#[path = "../../src/balancer/state.rs"]
mod state;

#[path = "../../src/worker/state.rs"]
mod slot_state;

#[cfg(all(test, loom))]
use slot_state::{Closed, SlotState};
#[cfg(all(test, loom))]
use state::{Cursor, SingleFlight};

#[cfg(all(test, loom))]
mod models {
    use loom::{
        sync::{
            atomic::{
                AtomicBool, AtomicU64, AtomicUsize,
                Ordering::{AcqRel, SeqCst},
            },
            Arc, Mutex,
        },
        thread,
    };

    use super::{Closed, Cursor, SingleFlight, SlotState};

    /// Drain start and end against two pickers on two stripes of the cursor, one each: on
    /// every stripe, a pick succeeds exactly when its turn falls outside the window between
    /// the drain's flag on that stripe and its end there, and is refused exactly when it falls
    /// inside. The pick on stripe 1 may come after stripe 0 is flagged and before stripe 1 is:
    /// it is granted, and that is right, for the drain has not started until the last stripe
    /// is flagged (the next model shows what follows the start).
    #[test]
    fn no_pick_succeeds_while_draining() {
        loom::model(|| {
            let cursor = Arc::new(Cursor::<2>::new());
            let pickers: Vec<_> = (0..2)
                .map(|stripe| {
                    let cursor = Arc::clone(&cursor);
                    thread::spawn(move || {
                        let taken = [cursor.next(stripe), cursor.next(stripe)];
                        // A check takes no turn; it is refused exactly when a turn here would be.
                        let checked = cursor.check(stripe);
                        (stripe, taken, checked)
                    })
                })
                .collect();
            let start = cursor.start_drain();
            assert!(cursor.is_draining(0) && cursor.is_draining(1));
            let end = cursor.end_drain();
            for picker in pickers {
                let (s, taken, checked) = picker.join().unwrap();
                assert!(start[s] <= end[s]);
                for pick in taken {
                    match pick {
                        Ok(turn) => assert!(
                            turn < start[s] || turn >= end[s],
                            "stripe {s}: {turn} in {}..{}",
                            start[s],
                            end[s]
                        ),
                        Err(turn) => assert!(
                            start[s] <= turn && turn < end[s],
                            "stripe {s}: {turn} not in {}..{}",
                            start[s],
                            end[s]
                        ),
                    }
                }
                // The check came after both turns on its stripe, and takes no turn, so it may
                // fall on either side of an end that also came after both: a refused check
                // fell between the flag and the end, so the end came after both turns.
                if checked.is_err() {
                    assert_eq!(end[s], 2, "stripe {s}: refused check after the end");
                }
            }
            assert!(!cursor.is_draining(0) && !cursor.is_draining(1));
            assert_eq!(cursor.turns(), 4);
        });
    }

    /// Whatever happens after `start_drain` has returned (maintenance, and what it signals to
    /// other threads) sees every stripe flagged: a picker that learns the drain has started,
    /// through any synchronisation, is refused on both stripes, and checks and `is_draining`
    /// agree, until the drain ends; then it is granted on both. A pick on stripe 1 racing the
    /// start beforehand is ordered on its own stripe, either way.
    #[test]
    fn every_pick_after_the_start_is_refused() {
        loom::model(|| {
            let cursor = Arc::new(Cursor::<2>::new());
            let started = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicBool::new(false));
            let picker = {
                let (cursor, started, done) =
                    (Arc::clone(&cursor), Arc::clone(&started), Arc::clone(&done));
                thread::spawn(move || {
                    let racing = cursor.next(1);
                    while !started.load(SeqCst) {
                        thread::yield_now();
                    }
                    for stripe in 0..2 {
                        assert!(cursor.next(stripe).is_err(), "stripe {stripe} granted");
                        assert!(cursor.check(stripe).is_err(), "stripe {stripe} checked ok");
                        assert!(cursor.is_draining(stripe));
                    }
                    done.store(true, SeqCst);
                    racing
                })
            };
            let start = cursor.start_drain();
            started.store(true, SeqCst);
            while !done.load(SeqCst) {
                thread::yield_now();
            }
            let end = cursor.end_drain();
            let racing = picker.join().unwrap();
            // The racing pick was granted exactly when it came before stripe 1's flag.
            assert_eq!(
                racing.is_ok(),
                start[1] == 1,
                "{racing:?}, started at {start:?}"
            );
            assert_eq!(start[0], 0);
            assert_eq!(end, [1, 2], "every turn counted, refused ones too");
            for stripe in 0..2 {
                assert!(
                    cursor.next(stripe).is_ok(),
                    "stripe {stripe} refused after the end"
                );
                assert!(!cursor.is_draining(stripe));
            }
        });
    }

    /// The writer lock and the stored snapshot's state, as the balancer has them: its
    /// generation, and whether it is below the ratio (deaths counted, not yet refreshed).
    struct Balancer {
        flight: SingleFlight,
        writer: Mutex<()>,
        generation: AtomicU64,
        below_ratio: AtomicBool,
        refreshes: AtomicUsize,
    }

    impl Balancer {
        /// What a push notice of death does: ask, and fly the flight if this call owns it.
        fn refresh_by_ratio(&self) -> bool {
            self.flight.request() && self.fly()
        }

        fn fly(&self) -> bool {
            self.flight.fly(
                || self.writer.lock().unwrap(),
                |_| self.below_ratio.load(SeqCst),
                |_| self.reload(),
            )
        }

        /// What a pick does: ask, and hand a flight it owns to the refresher.
        fn ask_refresher(&self) {
            if self.flight.request() {
                self.flight.hand_off();
            }
        }

        /// The refresher's turn: fly a flight handed over, if any.
        fn refresher_turn(&self) -> bool {
            self.flight.take_handoff() && self.fly()
        }

        /// The body of `reload`, run with the writer lock held: a fresh snapshot is healthy.
        fn reload(&self) {
            self.refreshes.fetch_add(1, SeqCst);
            self.below_ratio.store(false, SeqCst);
            let g = self.generation.load(SeqCst);
            self.generation.store(g + 1, SeqCst);
        }

        /// A picker counting deaths in the stored snapshot, then asking for a refresh.
        fn deaths_cross_the_ratio(&self) -> bool {
            self.below_ratio.store(true, SeqCst);
            self.refresh_by_ratio()
        }
    }

    fn balancer() -> Arc<Balancer> {
        Arc::new(Balancer {
            flight: SingleFlight::new(),
            writer: Mutex::new(()),
            generation: AtomicU64::new(0),
            below_ratio: AtomicBool::new(false),
            refreshes: AtomicUsize::new(0),
        })
    }

    /// Two pickers cross the ratio on the same snapshot at once: exactly one refresh runs.
    #[test]
    fn two_pickers_crossing_the_ratio_refresh_once() {
        loom::model(|| {
            let b = balancer();
            b.below_ratio.store(true, SeqCst);
            let other = {
                let b = Arc::clone(&b);
                thread::spawn(move || b.refresh_by_ratio())
            };
            let mine = b.refresh_by_ratio();
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one of the two refreshes");
            assert_eq!(b.refreshes.load(SeqCst), 1);
            assert!(!b.below_ratio.load(SeqCst));
        });
    }

    /// A picker still busy refreshing generation 0 while another finds generation 1 below
    /// the ratio: the second trigger is not lost, whatever the interleaving.
    #[test]
    fn a_trigger_during_a_flight_is_not_lost() {
        loom::model(|| {
            let b = balancer();
            b.below_ratio.store(true, SeqCst);
            let first = {
                let b = Arc::clone(&b);
                thread::spawn(move || b.refresh_by_ratio())
            };
            // Deaths in generation 1, once it exists.
            while b.generation.load(SeqCst) == 0 {
                thread::yield_now();
            }
            b.deaths_cross_the_ratio();
            first.join().unwrap();
            assert!(
                !b.below_ratio.load(SeqCst),
                "a crossing was left unrefreshed"
            );
            assert_eq!(b.refreshes.load(SeqCst), 2);
        });
    }

    /// A manual refresh (writer lock, no flight) racing a ratio-triggered one: the ratio
    /// refresh runs only if it got the lock before the manual one made the snapshot healthy.
    #[test]
    fn manual_refresh_does_not_double_a_ratio_refresh() {
        loom::model(|| {
            let b = balancer();
            b.below_ratio.store(true, SeqCst);
            let manual = {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    let _writer = b.writer.lock().unwrap();
                    b.reload();
                })
            };
            let by_ratio = b.refresh_by_ratio();
            manual.join().unwrap();
            let expected = if by_ratio { 2 } else { 1 };
            assert_eq!(b.refreshes.load(SeqCst), expected);
            assert!(!b.below_ratio.load(SeqCst));
        });
    }

    /// Two pickers cross the ratio at once and hand the flight to the refresher, which takes
    /// its turns meanwhile: exactly one refresh runs, no trigger is lost, and the flight lands
    /// once the refresher's last turn is over.
    #[test]
    fn picks_hand_one_flight_to_the_refresher() {
        loom::model(|| {
            let b = balancer();
            b.below_ratio.store(true, SeqCst);
            let picker = {
                let b = Arc::clone(&b);
                thread::spawn(move || b.ask_refresher())
            };
            b.ask_refresher();
            let refresher = {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    let mut flown = 0;
                    for _ in 0..2 {
                        flown += usize::from(b.refresher_turn());
                    }
                    flown
                })
            };
            picker.join().unwrap();
            let flown = refresher.join().unwrap();
            // The refresher's turns may all come before the hand-off; one more turn (the wake
            // that followed the hand-off) always finds it.
            let last = usize::from(b.refresher_turn());
            assert_eq!(flown + last, 1, "exactly one flight was flown");
            assert_eq!(b.refreshes.load(SeqCst), 1);
            assert!(!b.below_ratio.load(SeqCst));
            assert!(
                !b.flight.is_flying(),
                "the flight landed: {flown} {last} {}",
                b.refreshes.load(SeqCst)
            );
        });
    }

    /// The refresher's signal word (`src/balancer/refresher.rs`, which needs tokio and so is
    /// not compiled here): the bits and the orderings of `Refresher::wake` and of a runner's
    /// fall-back to no runner (`Fallback`'s drop, when no thread can take over).
    const WOKEN: usize = 1;
    const INLINE: usize = 2;

    impl Balancer {
        /// What a pick does (`Shared::fly_ratio_refresh`): hand a flight it owns off and wake
        /// the refresher; with no refresher left, take it back and fly it here.
        fn ask_then_wake(&self, signal: &AtomicUsize) -> bool {
            if !self.flight.request() {
                return false;
            }
            self.flight.hand_off();
            let state = signal.fetch_or(WOKEN, AcqRel);
            state & INLINE != 0 && self.flight.take_handoff() && self.fly()
        }

        /// A runner that gives up: no refresher from here on; it flies a flight handed off
        /// before.
        fn fall_back(&self, signal: &AtomicUsize) -> bool {
            signal.fetch_or(INLINE, AcqRel);
            self.flight.take_handoff() && self.fly()
        }
    }

    /// A picker hands a flight off while the refresher falls back to none: whichever comes
    /// first, the flight is flown exactly once and lands, so the refresh asked for is not lost.
    ///
    /// This checks the protocol (who takes the flight), not the orderings: loom's
    /// read-modify-writes always read the latest write, so it would pass with `Relaxed` too.
    /// Why `AcqRel` is needed (and enough) is argued at `Refresher::wake`.
    #[test]
    fn a_flight_handed_off_as_the_refresher_falls_back_is_flown_once() {
        loom::model(|| {
            let b = balancer();
            b.below_ratio.store(true, SeqCst);
            let signal = Arc::new(AtomicUsize::new(0));
            let picker = {
                let (b, signal) = (Arc::clone(&b), Arc::clone(&signal));
                thread::spawn(move || b.ask_then_wake(&signal))
            };
            let by_fallback = b.fall_back(&signal);
            let by_picker = picker.join().unwrap();
            assert!(by_picker ^ by_fallback, "flown exactly once");
            assert_eq!(b.refreshes.load(SeqCst), 1);
            assert!(!b.flight.is_flying(), "the flight landed");
        });
    }

    /// A slot's incarnation retiring (to a successor, or ending) races a shutdown: the shut
    /// always wins, and no handle of either incarnation reads alive afterwards.
    #[test]
    fn shut_wins_over_a_racing_retire() {
        loom::model(|| {
            let state = Arc::new(SlotState::new(0));
            let runner = {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    state.retire(0, true);
                    state.retire(1, false);
                })
            };
            state.shut();
            runner.join().unwrap();
            assert!(state.is_shut(), "a retire overwrote the shut");
            assert_eq!(state.serving(), None);
            for incarnation in 0..3 {
                assert!(!state.is_serving(incarnation));
                assert_eq!(state.refusal(incarnation), Some(Closed::Shutdown));
            }
        });
    }

    /// The last-line `end` racing a retire to the successor: the slot ends either way, and
    /// the successor never reads alive once `end` has returned and the retire is done.
    #[test]
    fn end_wins_over_a_racing_retire() {
        loom::model(|| {
            let state = Arc::new(SlotState::new(0));
            let runner = {
                let state = Arc::clone(&state);
                thread::spawn(move || state.retire(0, true))
            };
            state.end();
            let moved = runner.join().unwrap();
            // A retire after `end` finds incarnation 0 gone and moves nothing; one before it
            // is overwritten by `end`.
            assert_eq!(state.serving(), None, "retired first: {moved}");
            assert_eq!(state.refusal(1), Some(Closed::Dead));
        });
    }

    /// A shrink removing a slot races its runner retiring incarnation 0 to a successor, as a
    /// crash does: whichever wins, the runner starts no incarnation at or beyond the first one
    /// `remove` hands to a new slot in the same place, so worker ids never repeat; and no
    /// handle reads alive afterwards.
    #[test]
    fn remove_bounds_the_incarnations_a_racing_retire_starts() {
        loom::model(|| {
            let state = Arc::new(SlotState::new(0));
            let runner = {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    // The runner's path: retire, then start the successor unless removed.
                    if state.retire(0, true) && !state.is_removed() {
                        Some(1_u64)
                    } else {
                        None
                    }
                })
            };
            let first_free = state
                .remove()
                .expect("the slot was neither shut nor removed");
            let started = runner.join().unwrap();
            if let Some(started) = started {
                assert!(
                    started < first_free,
                    "{started} may be reused ({first_free})"
                );
            }
            assert!(state.is_removed());
            assert_eq!(state.serving(), None);
            for incarnation in 0..3 {
                assert_eq!(state.refusal(incarnation), Some(Closed::Dead));
            }
            assert_eq!(state.remove(), None, "removed twice");
        });
    }
}
