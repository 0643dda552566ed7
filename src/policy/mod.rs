//! How a balancer chooses among its live members.
//!
//! A policy is a pure function of one snapshot and the pick's turn (its place on its thread's
//! stripe of the balancer's cursor, and the stripe): it reads, decides, and reports what it
//! passed over; only the balancer writes the cursor and the counters. None locks or
//! allocates. Each has a fast path that only reads and answers nearly every pick of a healthy
//! pool, and a full scan that starts from the same member with the same turn, so the fast
//! path never changes an answer:
//!
//! | policy | cost | source |
//! | --- | --- | --- |
//! | [`Policy::RoundRobin`] | O(1) with all members alive | ballermann's `pid/1` |
//! | [`Policy::LeastLoaded`] | O(n): reads every member's load until one is idle | OTP `pool:get_node/0`, Akka's smallest mailbox |
//! | [`Policy::PowerOfTwo`] | O(1): reads two loads | Mitzenmacher, *The Power of Two Choices in Randomized Load Balancing* (2001) |
//!
//! Members that are disabled, dead, or at or above `max_load` are passed over by all three.

pub(crate) mod affinity;
pub(crate) mod error;
mod least_loaded;
mod p2c;
mod round_robin;

use crate::{
    member::Member,
    policy::error::PickError,
    snapshot::{Snapshot, Unusable},
};

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
    /// `k·n` consecutive picks from one thread, with nothing else picking meanwhile, return
    /// every member exactly `k` times, one after the other in source order, whether or not dead
    /// or disabled members sit between them.
    ///
    /// Each thread goes round on a stripe of the balancer's cursor of its own (threads take
    /// the 16 stripes in turn at their first pick; beyond 16 threads they share), so that
    /// pickers on different cores do not fight over one cache line, and every stripe's
    /// rotation starts at the first member. Under concurrent pickers the rotations run side by
    /// side: with every member alive and no changes, each member's count, over all the picks
    /// made, is within `S` of the mean (and any two members' counts within `S` of each other),
    /// where `S` is the number of stripes that took a turn: at most the number of picking
    /// threads, and at most 16. A stripe deals whole rotations plus one part-rotation, and only
    /// that part differs from member to member.
    ///
    /// When the members' [weights](crate::Member::weight) differ it is weighted round robin:
    /// over any `W = Σwᵢ` consecutive picks from one thread member `i` is picked exactly `wᵢ`
    /// times, and after any `t` picks its count is within one of `t·wᵢ/W` (a schedule made
    /// when the snapshot is built; a pick stays O(1)). Members of weight 0 get nothing.
    #[default]
    RoundRobin,
    /// A member with the smallest [`load`](crate::Member::load); ties go round robin so that
    /// equal loads spread (each thread's scans start one member on from its last, and
    /// threads on neighbouring cursor stripes start on neighbouring members). Stops at the first idle member (load 0); otherwise reads every
    /// member's load, so its cost grows with the pool: on a 2-core machine about 25 ns a pick
    /// at 8 busy members, 90 ns at 64 and 1.2 µs at 1024 (see `BENCHMARKS.md`). Beyond a few
    /// dozen members prefer [`Policy::PowerOfTwo`], which costs the same at any size and comes
    /// close in quality. With [weights](crate::Member::weight) that differ, the smallest load
    /// per unit of weight.
    LeastLoaded,
    /// Two distinct members sampled at random; the lighter one wins (ties: the first sample).
    /// The samples are drawn from a number of the pick's own (its turn and its cursor
    /// stripe), so threads never sample in step, and a seeded balancer picked from one thread
    /// repeats its choices when that thread has the same stripe.
    /// Constant cost whatever the size, and close to least loaded in quality. With
    /// [weights](crate::Member::weight) that differ, the samples compare load per unit of
    /// weight.
    PowerOfTwo,
}

/// A pick's turn, as the balancer's striped cursor gave it: the pick's place on its stripe,
/// its stripe and the stripe's rank. One thread picks on one stripe, so its picks' `seq` are consecutive;
/// threads on different stripes count through the same numbers side by side, so each policy
/// takes from a turn what it needs:
///
/// - round robin, the place on the stripe ([`seq`](Turn::seq)), so that one thread's picks go
///   round the members in order;
/// - least loaded's ties, [`spread`](Turn::spread), so that threads of neighbouring ranks
///   start their scans on neighbouring members, as consecutive turns of one counter did;
/// - power of two's sampling, [`unique`](Turn::unique), a number no other pick has, so that
///   threads do not sample the same pairs in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// Turns taken on the same stripe before this one.
    pub(crate) seq: usize,
    /// The cursor's stripe the turn was taken on; below 32.
    pub(crate) stripe: usize,
    /// The stripe's rank in this balancer (the order in which stripes first picked from it);
    /// below 32. What the policies tell threads apart by, so that one thread's picks of a
    /// seeded balancer repeat whatever its stripe.
    pub(crate) rank: usize,
}

impl Turn {
    /// Where least loaded starts (modulo the members): the place on the stripe, moved on by
    /// the stripe's rank and by the balancer's seed, so that balancers with seeds of their
    /// own (the default: one at random each) break ties apart instead of all starting with
    /// the first member.
    #[inline]
    fn spread(self, seed: u64) -> usize {
        self.seq.wrapping_add(self.rank).wrapping_add(seed as usize)
    }

    /// A number of its own for every pick: the stripe's rank in the top five bits of 64 and
    /// the place on the stripe below, so two turns share one only once a stripe has taken 2⁵⁹
    /// turns. The turns of the first stripe to pick are their own numbers.
    #[inline]
    fn unique(self) -> u64 {
        (self.seq as u64).wrapping_add((self.rank as u64) << 59)
    }
}

/// The settings a policy decides by, copied out of the balancer's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) policy: Policy,
    /// `usize::MAX` when there is no limit.
    pub(crate) max_load: usize,
    /// The balancer's seed: power of two's samples, least loaded's starting place.
    pub(crate) seed: u64,
    /// Key affinity's bounded loads: the slack ε over the average load, if set.
    pub(crate) bound: Option<f64>,
}

/// The fast path of every policy: the answer when the member (or both members) the turn
/// lands on can be handed out as they stand, `None` otherwise. Only reads. The full
/// [`scan`] with the same turn gives the same answer whenever this one gives any.
#[inline]
pub(crate) fn first<M: Member>(rule: &Rule, snap: &Snapshot<M>, turn: Turn) -> Option<usize> {
    match rule.policy {
        Policy::RoundRobin => round_robin::first(snap, turn.seq, rule.max_load),
        Policy::LeastLoaded => least_loaded::first(snap, turn.spread(rule.seed), rule.max_load),
        Policy::PowerOfTwo => p2c::first(snap, turn.unique(), rule.seed, rule.max_load),
    }
}

/// The full scan of every policy, for a non-empty snapshot: finds a member to hand out, or
/// says why there is none, and records in `scan` what it passed over.
#[cold]
pub(crate) fn scan<M: Member>(
    rule: &Rule,
    snap: &Snapshot<M>,
    turn: Turn,
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    match rule.policy {
        Policy::RoundRobin => round_robin::scan(snap, turn.seq, rule.max_load, scan),
        Policy::LeastLoaded => {
            least_loaded::scan(snap, turn.spread(rule.seed), rule.max_load, scan)
        }
        Policy::PowerOfTwo => p2c::scan(snap, turn.unique(), rule.seed, rule.max_load, scan),
    }
}

/// What one full scan noticed on the way, besides its answer, and which members it must
/// pass over besides the unusable ones.
pub(crate) struct Scan<'a, M> {
    /// Members the caller has already tried (failover): passed over like disabled ones.
    pub(crate) exclude: Option<&'a dyn Fn(&M) -> bool>,
    /// Members this pick was the first to find dead.
    pub(crate) newly_dead: usize,
    /// Turns a round-robin pick passed over, beyond its own: the balancer moves the cursor on
    /// by as many.
    pub(crate) extra_turns: usize,
    /// Whether a live member was passed over for its load (so "nothing" means overloaded).
    any_loaded: bool,
}

impl<M> Default for Scan<'_, M> {
    fn default() -> Self {
        Self {
            exclude: None,
            newly_dead: 0,
            extra_turns: 0,
            any_loaded: false,
        }
    }
}

impl<'a, M: Member> Scan<'a, M> {
    /// A scan that also passes over the members `exclude` says yes to.
    pub(crate) fn excluding(exclude: &'a dyn Fn(&M) -> bool) -> Self {
        Self {
            exclude: Some(exclude),
            ..Self::default()
        }
    }

    /// [`Snapshot::usable`], with what it turned down folded into the scan: a member found dead
    /// for the first time is marked and counted.
    #[inline]
    pub(crate) fn look<const LOAD: bool>(
        &mut self,
        snap: &Snapshot<M>,
        i: usize,
        max_load: usize,
    ) -> Option<usize> {
        if self.exclude.is_some_and(|ex| ex(&snap.entries[i].member)) {
            return None;
        }
        match snap.usable::<LOAD>(i, max_load) {
            Ok(load) => Some(load),
            Err(Unusable::Disabled) => None,
            Err(Unusable::Overloaded) => {
                self.any_loaded = true;
                None
            }
            Err(Unusable::Dead) => {
                if snap.mark_dead(i) {
                    self.newly_dead += 1;
                }
                None
            }
        }
    }

    /// The error for a scan that found nothing to hand out.
    pub(crate) fn nothing(&self) -> PickError {
        if self.any_loaded {
            PickError::Overloaded
        } else {
            PickError::NoMembers
        }
    }
}

/// `i % n` for `i < 2n`, without a division.
#[inline]
fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    (Snapshot::new(members, 0, |_| 0), max_load)
                })
            })
        })
    }

    const POLICIES: [Policy; 3] = [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo];

    #[test]
    fn fast_paths_answer_as_the_full_scans_do() {
        let mut fast = [0_usize; 3];
        for (snap, max_load) in pools() {
            for (k, policy) in POLICIES.into_iter().enumerate() {
                let rule = Rule {
                    policy,
                    max_load,
                    seed: 9,
                    bound: None,
                };
                for (seq, stripe) in (0..40).flat_map(|seq| [0, 1, 15].map(|s| (seq, s))) {
                    let turn = Turn {
                        seq,
                        stripe,
                        rank: stripe,
                    };
                    if let Some(i) = first(&rule, &snap, turn) {
                        let mut s = Scan::default();
                        let full = scan(&rule, &snap, turn, &mut s);
                        assert_eq!(full, Ok(i), "{policy:?}, {turn:?}");
                        assert_eq!((s.newly_dead, s.extra_turns), (0, 0));
                        fast[k] += 1;
                    }
                }
            }
        }
        // Every fast path answered often, not only in corner cases.
        assert!(fast.iter().all(|&n| n > 6_000), "{fast:?}");
    }

    #[test]
    fn fast_paths_take_every_pick_of_a_healthy_pool() {
        let members = (0..8)
            .map(|i| M {
                alive: true,
                load: i,
            })
            .collect();
        let snap = Snapshot::new(members, 0, |_| 0);
        let rule = |policy| Rule {
            policy,
            max_load: usize::MAX,
            seed: 1,
            bound: None,
        };
        for seq in 0..100 {
            for stripe in [0, 3] {
                let turn = Turn {
                    seq,
                    stripe,
                    rank: stripe,
                };
                assert_eq!(
                    first(&rule(Policy::RoundRobin), &snap, turn),
                    Some(seq % 8),
                    "every stripe goes round in order"
                );
                assert!(first(&rule(Policy::PowerOfTwo), &snap, turn).is_some());
            }
        }
        // Least loaded's fast path is the idle member its scan would stop at: it starts at
        // the turn, moved on by the stripe's rank and the seed (1 here).
        let turn = |seq, stripe| Turn {
            seq,
            stripe,
            rank: stripe,
        };
        assert_eq!(
            first(&rule(Policy::LeastLoaded), &snap, turn(7, 0)),
            Some(0)
        );
        assert_eq!(first(&rule(Policy::LeastLoaded), &snap, turn(0, 0)), None);
        assert_eq!(
            first(&rule(Policy::LeastLoaded), &snap, turn(6, 1)),
            Some(0)
        );
    }
}
