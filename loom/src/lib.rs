//! croupier's balancer state machines, compiled from croupier's own `src/balancer/state.rs`
//! against loom's atomics, for the models in `tests/`.
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

#[cfg(all(test, loom))]
use state::{Cursor, SingleFlight};

#[cfg(all(test, loom))]
mod models {
    use loom::{
        sync::{
            atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst},
            Arc, Mutex,
        },
        thread,
    };

    use super::{Cursor, SingleFlight};

    /// Drain start and end against two pickers: a pick succeeds exactly when its turn falls
    /// outside the window between the drain's start and its end, and is refused exactly when
    /// it falls inside.
    #[test]
    fn no_pick_succeeds_while_draining() {
        loom::model(|| {
            let cursor = Arc::new(Cursor::new());
            let pickers: Vec<_> = (0..2)
                .map(|_| {
                    let cursor = Arc::clone(&cursor);
                    thread::spawn(move || [cursor.next(), cursor.next()])
                })
                .collect();
            let start = cursor.start_drain();
            assert!(cursor.is_draining());
            let end = cursor.end_drain();
            assert!(start <= end);
            for picker in pickers {
                for pick in picker.join().unwrap() {
                    match pick {
                        Ok(turn) => {
                            assert!(turn < start || turn >= end, "{turn} in {start}..{end}")
                        }
                        Err(turn) => {
                            assert!(start <= turn && turn < end, "{turn} not in {start}..{end}")
                        }
                    }
                }
            }
            assert!(!cursor.is_draining());
            assert_eq!(cursor.turns(), 4);
        });
    }

    /// The writer lock and the generation of the stored snapshot, as the balancer has them.
    struct Balancer {
        flight: SingleFlight,
        writer: Mutex<()>,
        generation: AtomicU64,
        refreshes: AtomicUsize,
    }

    impl Balancer {
        fn refresh_by_ratio(&self, seen: u64) -> bool {
            self.flight.refresh(
                seen,
                || self.writer.lock().unwrap(),
                |_| self.generation.load(SeqCst),
                |_| self.reload(),
            )
        }

        /// The body of `reload`, run with the writer lock held.
        fn reload(&self) {
            self.refreshes.fetch_add(1, SeqCst);
            let g = self.generation.load(SeqCst);
            self.generation.store(g + 1, SeqCst);
        }
    }

    fn balancer() -> Arc<Balancer> {
        Arc::new(Balancer {
            flight: SingleFlight::new(),
            writer: Mutex::new(()),
            generation: AtomicU64::new(0),
            refreshes: AtomicUsize::new(0),
        })
    }

    /// Two pickers cross the ratio on generation 0 at once: exactly one refresh runs.
    #[test]
    fn two_pickers_crossing_the_ratio_refresh_once() {
        loom::model(|| {
            let b = balancer();
            let other = {
                let b = Arc::clone(&b);
                thread::spawn(move || b.refresh_by_ratio(0))
            };
            let mine = b.refresh_by_ratio(0);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one of the two refreshes");
            assert_eq!(b.refreshes.load(SeqCst), 1);
            assert_eq!(b.generation.load(SeqCst), 1);
        });
    }

    /// A manual refresh (writer lock, no flight) racing a ratio-triggered one: the ratio
    /// refresh runs only if it got the lock before the manual one replaced generation 0.
    #[test]
    fn manual_refresh_does_not_double_a_ratio_refresh() {
        loom::model(|| {
            let b = balancer();
            let manual = {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    let _writer = b.writer.lock().unwrap();
                    b.reload();
                })
            };
            let by_ratio = b.refresh_by_ratio(0);
            manual.join().unwrap();
            let expected = if by_ratio { 2 } else { 1 };
            assert_eq!(b.refreshes.load(SeqCst), expected);
            assert_eq!(b.generation.load(SeqCst), expected as u64);
        });
    }
}
