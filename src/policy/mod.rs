//! How a balancer chooses among its live members.
//!
//! Every policy reads one snapshot, makes one relaxed `fetch_add` on the balancer's cursor (the
//! only shared write of a pick), and never locks or allocates:
//!
//! | policy | cost | source |
//! | --- | --- | --- |
//! | [`Policy::RoundRobin`] | O(1) with all members alive | ballermann's `pid/1` |
//! | [`Policy::LeastLoaded`] | O(n): reads every member's load until one is idle | OTP `pool:get_node/0`, Akka's smallest mailbox |
//! | [`Policy::PowerOfTwo`] | O(1): reads two loads | Mitzenmacher, *The Power of Two Choices in Randomized Load Balancing* (2001) |
//!
//! Members that are disabled, dead, or at or above `max_load` are passed over by all three.

mod least_loaded;
mod p2c;
mod round_robin;

pub(crate) use least_loaded::least_loaded;
pub(crate) use p2c::{power_of_two, power_of_two_first};
pub(crate) use round_robin::{round_robin, round_robin_first};

use crate::{balancer::snapshot::Seen, PickError};

/// The rule a [`Balancer`](crate::Balancer) picks by.
///
/// # Example
///
/// ```
/// use croupier::{Balancer, Policy};
///
/// # #[derive(Clone)] struct W; impl croupier::Member for W { fn is_alive(&self) -> bool { true } }
/// let b = Balancer::builder()
///     .policy(Policy::PowerOfTwo)
///     .seed(7)
///     .source(vec![W, W, W])
///     .build()?;
/// assert_eq!(b.policy(), Policy::PowerOfTwo);
/// # Ok::<(), croupier::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Each live member in turn, in the source's order. With `n` live members and no changes,
    /// `k·n` consecutive picks from one thread return every member exactly `k` times, whether
    /// or not dead or disabled members sit between them. Under concurrent pickers the turns
    /// are shared out between threads and the rotation stays even.
    #[default]
    RoundRobin,
    /// A member with the smallest [`load`](crate::Member::load); ties go round robin so that
    /// equal loads spread. Stops at the first idle member (load 0); otherwise reads every
    /// member's load, so its cost grows with the pool: on a 2-core machine about 25 ns a pick
    /// at 8 busy members, 90 ns at 64 and 1.2 µs at 1024 (see `BENCHMARKS.md`). Beyond a few
    /// dozen members prefer [`Policy::PowerOfTwo`], which costs the same at any size and comes
    /// close in quality.
    LeastLoaded,
    /// Two distinct members sampled at random; the lighter one wins (ties: the first sample).
    /// Constant cost whatever the size, and close to least loaded in quality.
    PowerOfTwo,
}

/// What one pick noticed on the way, besides its answer.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Members this pick was the first to find dead.
    pub(crate) newly_dead: usize,
    /// Turns a round-robin pick passed over on the cursor, beyond its own.
    pub(crate) extra_turns: usize,
}

impl Scan {
    /// Folds a look at a slot into the scan; true if the slot may be handed out.
    #[inline]
    pub(crate) fn usable(&mut self, seen: Seen) -> bool {
        match seen {
            Seen::Usable => true,
            Seen::Skipped => false,
            Seen::NewlyDead => {
                self.newly_dead += 1;
                false
            }
        }
    }
}

/// The error for a pick that found nothing to hand out.
#[inline]
pub(crate) fn nothing(any_live: bool) -> PickError {
    if any_live {
        PickError::Overloaded
    } else {
        PickError::NoMembers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{balancer::snapshot::Snapshot, Member};

    #[derive(Clone, Debug)]
    struct M {
        alive: bool,
        load: usize,
    }

    impl Member for M {
        fn is_alive(&self) -> bool {
            self.alive
        }
        fn load(&self) -> usize {
            self.load
        }
    }

    /// Every small pool with every pattern of dead members, with and without a load limit.
    fn pools() -> impl Iterator<Item = (Snapshot<M>, usize)> {
        (1..=7_usize).flat_map(|n| {
            (0..1_u32 << n).flat_map(move |dead| {
                [usize::MAX, 3].map(|max_load| {
                    let members = (0..n)
                        .map(|i| M {
                            alive: dead >> i & 1 == 0,
                            load: (i * 7 + dead as usize) % 5,
                        })
                        .collect();
                    (Snapshot::new(members, 0, |_| false), max_load)
                })
            })
        })
    }

    #[test]
    fn fast_paths_answer_as_the_full_scans_do() {
        let cursor = crate::balancer::state::Cursor::new();
        let (mut fast_rr, mut fast_p2c) = (0, 0);
        for (snap, max_load) in pools() {
            for turn in 0..40 {
                if let Some(i) = round_robin_first(&snap, turn, max_load) {
                    let mut scan = Scan::default();
                    let full = round_robin(&snap, turn, &cursor, max_load, &mut scan);
                    assert_eq!(full, Ok(i), "round robin, turn {turn}");
                    assert_eq!((scan.newly_dead, scan.extra_turns), (0, 0));
                    fast_rr += 1;
                }
                if let Some(i) = power_of_two_first(&snap, turn, 9, max_load) {
                    let mut scan = Scan::default();
                    let full = power_of_two(&snap, turn, 9, max_load, &mut scan);
                    assert_eq!(full, Ok(i), "power of two, turn {turn}");
                    assert_eq!(scan.newly_dead, 0);
                    fast_p2c += 1;
                }
            }
        }
        // Both fast paths answered often, not only in corner cases.
        assert!(fast_rr > 2_000 && fast_p2c > 2_000, "{fast_rr} {fast_p2c}");
    }

    #[test]
    fn fast_paths_take_every_pick_of_a_healthy_pool() {
        let members = (0..8)
            .map(|i| M {
                alive: true,
                load: i,
            })
            .collect();
        let snap = Snapshot::new(members, 0, |_| false);
        for turn in 0..100 {
            assert_eq!(round_robin_first(&snap, turn, usize::MAX), Some(turn % 8));
            assert!(power_of_two_first(&snap, turn, 1, usize::MAX).is_some());
        }
    }
}
