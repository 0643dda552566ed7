//! Round robin's schedule when weights differ, computed once per snapshot: the sequence of
//! Tijdeman's solution to the chairman assignment problem (R. Tijdeman, "The chairman
//! assignment problem", Discrete Mathematics 32, 1980).
//!
//! With `W = Σwᵢ` and `n` members of positive weight, step `t` goes to the member with the
//! earliest deadline `(cᵢ + 1 − 1/(2n−2)) / wᵢ` among those not ahead of their share
//! (`t·wᵢ/W − cᵢ ≥ 1/(2n−2)`), where `cᵢ` counts its steps so far. Over `W` steps member `i`
//! gets exactly `wᵢ`, and after any `t` steps its count is within `1 − 1/(2n−2)` of `t·wᵢ/W`:
//! always less than one pick away from its exact share. (nginx's smooth weighted round robin
//! spreads picks too, but can stray further: weights 8, 8, 1, 1, 1, 2, 8, 1 put a member
//! 1.07 picks off its share.)
//!
//! The schedule holds `W` entries, after dividing the weights by their greatest common
//! divisor. Building it costs `O((n + W) log d)` for `d` distinct weights: members of one
//! weight take their turns in index order, so each weight offers one candidate at a time, and
//! two binary heaps of weights stand in for a scan of every member at every step (one keyed on
//! the step at which a weight's candidate becomes eligible, one of the eligible keyed on their
//! deadline); see `smooth`.
//!
//! When `W` exceeds `cap`, 65 536 or the number of members with a weight if that is more, each
//! non-zero weight is scaled to `⌊wᵢ·cap/W⌋`, at least 1, and divided by the greatest common
//! divisor again: the schedule then holds at most `cap` entries plus one for each member
//! lifted to 1 (so never more than `2·cap`), and the shares are exact for the scaled weights.

use std::{
    cmp::{Ordering, Reverse},
    collections::{binary_heap::PeekMut, BinaryHeap},
};

/// The most entries a schedule may have, unless it has more members with a weight.
const MAX_LEN: u64 = 1 << 16;

/// The schedule for `weights`, as entry indices; `None` when every weight is the same
/// positive number (plain round robin), empty when every weight is 0.
pub(crate) fn schedule(weights: &[u32]) -> Option<Box<[u32]>> {
    let first = *weights.first()?;
    if first > 0 && weights.iter().all(|&w| w == first) {
        return None;
    }
    let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
    reduce(&mut w);
    let nonzero = w.iter().filter(|&&x| x > 0).count() as u64;
    let cap = MAX_LEN.max(nonzero);
    fit(&mut w, cap);
    Some(smooth(&w))
}

/// Scales the non-zero weights down in proportion when their total exceeds `cap`, each
/// keeping at least 1, and divides them by their greatest common divisor again.
fn fit(w: &mut [u64], cap: u64) {
    let total: u64 = w.iter().sum();
    if total > cap {
        for x in w.iter_mut().filter(|x| **x != 0) {
            let scaled = u128::from(*x) * u128::from(cap) / u128::from(total);
            *x = u64::try_from(scaled).unwrap_or(u64::MAX).max(1);
        }
        reduce(w);
    }
}

/// Divides the non-zero weights by their greatest common divisor.
fn reduce(w: &mut [u64]) {
    // Stops at 1, which most weights reach within a few members, rather than pay a division
    // or two for every member.
    let mut g = 0;
    for &x in w.iter() {
        g = gcd(g, x);
        if g == 1 {
            return;
        }
    }
    if g > 1 {
        for x in w.iter_mut() {
            *x /= g;
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Tijdeman's sequence over one period, in `O(n log d + W log d)` for `d` distinct weights.
///
/// Members of equal weight take their turns in index order: of them, the one with the fewest
/// steps so far (the lowest index among those) is the first to be eligible and has the
/// earliest deadline, so a scan of every member would choose it before the others. Each
/// weight is therefore one candidate at a time, and two heaps of weights replace the scan: one
/// keyed on the step at which a weight's candidate becomes eligible (a lag only grows until its
/// member is picked, so that step is computable), one of the eligible keyed on their deadline,
/// ties to the lower index. Each step moves the newly eligible across, picks the earliest
/// deadline, and files that weight's next candidate under its eligibility step.
fn smooth(w: &[u64]) -> Box<[u32]> {
    let mut classes = Classes::new(w);
    let total: u128 = classes
        .of
        .iter()
        .map(|class| class.weight * class.len as u128)
        .sum();
    let len = usize::try_from(total).unwrap_or(0);
    match classes.members[..] {
        [] => return Box::new([]),
        [only] => return vec![only; len].into_boxed_slice(),
        _ => {}
    }
    // With `m = 2n − 2`: eligible at step t when (t·wᵢ − cᵢ·W)·m ≥ W, that is from step
    // ⌈W·(1 + cᵢ·m) / (m·wᵢ)⌉ on; deadline ((cᵢ+1)·m − 1) / wᵢ.
    let m = 2 * classes.members.len() as u128 - 2;
    let eligible_from = |c: u128, weight: u128| (total * (1 + c * m)).div_ceil(m * weight);
    let mut waiting: BinaryHeap<Reverse<(u128, usize)>> = classes
        .of
        .iter()
        .enumerate()
        .map(|(k, class)| Reverse((eligible_from(0, class.weight), k)))
        .collect();
    let mut ready: BinaryHeap<Reverse<Deadline>> = BinaryHeap::with_capacity(classes.of.len());
    let mut out = Vec::with_capacity(len);
    for t in 1..=total {
        while let Some(&Reverse((from, k))) = waiting.peek() {
            // Tijdeman's theorem says some member is always eligible; should rounding ever say
            // otherwise, the one closest to it is a safe answer.
            if from > t && !ready.is_empty() {
                break;
            }
            waiting.pop();
            ready.push(Reverse(classes.deadline(k, m)));
        }
        let Some(mut top) = ready.peek_mut() else {
            break;
        };
        let Reverse(Deadline { index, class, .. }) = *top;
        out.push(index);
        // The next of the same weight with as many steps is as eligible as the one just
        // picked: it takes the place at the top, and only a new round of the weight (one step
        // more for each) asks for its eligibility again.
        if classes.advance(class) {
            let from = eligible_from(classes.of[class].count, classes.of[class].weight);
            if from > t + 1 {
                PeekMut::pop(top);
                waiting.push(Reverse((from, class)));
                continue;
            }
        }
        *top = Reverse(classes.deadline(class, m));
    }
    out.into_boxed_slice()
}

/// The members of positive weight grouped by weight, each group in index order, with whose
/// turn it is in each group.
#[derive(Debug)]
struct Classes {
    /// Member indices, grouped by weight (ascending), each group in index order.
    members: Vec<u32>,
    /// One per distinct positive weight.
    of: Vec<Class>,
}

/// The members of one weight: `Classes::members[start..start + len]`.
#[derive(Debug)]
struct Class {
    /// The weight its members share.
    weight: u128,
    /// Where its members begin in `Classes::members`.
    start: usize,
    /// How many members it has.
    len: usize,
    /// Whose turn it is: the first of the group with `count` steps; those before it have one
    /// more.
    turn: usize,
    /// The steps of the member whose turn it is.
    count: u128,
}

impl Classes {
    /// Groups the members of `w` with a positive weight (and an index that fits in `u32`):
    /// the distinct weights sorted, then a counting sort of the members into them, which keeps
    /// index order within each.
    fn new(w: &[u64]) -> Self {
        let mut distinct: Vec<u64> = w.iter().copied().filter(|&x| x > 0).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let class_of = |x: &u64| distinct.binary_search(x).unwrap_or(0);
        let weighted = || (0_u32..).zip(w).filter(|&(_, &x)| x > 0);
        let mut start = vec![0_usize; distinct.len() + 1];
        for (_, x) in weighted() {
            start[class_of(x) + 1] += 1;
        }
        for k in 1..start.len() {
            start[k] += start[k - 1];
        }
        let mut fill = start.clone();
        let mut members = vec![0_u32; start[distinct.len()]];
        for (i, x) in weighted() {
            let k = class_of(x);
            members[fill[k]] = i;
            fill[k] += 1;
        }
        let of = distinct
            .iter()
            .zip(start.windows(2))
            .map(|(&weight, range)| Class {
                weight: u128::from(weight),
                start: range[0],
                len: range[1] - range[0],
                turn: 0,
                count: 0,
            })
            .collect();
        Self { members, of }
    }

    /// The deadline of class `k`'s member whose turn it is, with `m = 2n − 2`.
    fn deadline(&self, k: usize, m: u128) -> Deadline {
        let class = &self.of[k];
        Deadline {
            num: (class.count + 1) * m - 1,
            weight: class.weight,
            index: self.members[class.start + class.turn],
            class: k,
        }
    }

    /// Counts a step for class `k`'s member whose turn it was and passes the turn on; true
    /// when that begins a new round of the class (its turn back to the first, one step more).
    fn advance(&mut self, k: usize) -> bool {
        let class = &mut self.of[k];
        class.turn += 1;
        let round = class.turn == class.len;
        if round {
            class.turn = 0;
            class.count += 1;
        }
        round
    }
}

/// A member's deadline `num / weight`, ordered by its value, then by the member's index (the
/// lower first, as a scan in order would choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    /// `(c + 1)·m − 1`, for a member with `c` steps so far.
    num: u128,
    /// The member's weight.
    weight: u128,
    /// The member.
    index: u32,
    /// Its weight's class.
    class: usize,
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.num * other.weight)
            .cmp(&(other.num * self.weight))
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

    use super::*;

    fn counts(s: &[u32], n: usize) -> Vec<u64> {
        let mut c = vec![0; n];
        for &i in s {
            c[i as usize] += 1;
        }
        c
    }

    #[test]
    fn equal_positive_weights_need_no_schedule() {
        assert_eq!(schedule(&[]), None);
        assert_eq!(schedule(&[1, 1, 1]), None);
        assert_eq!(schedule(&[7, 7]), None);
        assert_eq!(schedule(&[0, 0]).as_deref(), Some(&[][..]));
    }

    #[test]
    fn the_sequence_for_5_1_1_and_3_1() {
        assert_eq!(
            schedule(&[5, 1, 1]).as_deref(),
            Some(&[0, 0, 1, 0, 0, 2, 0][..])
        );
        assert_eq!(schedule(&[3, 1]).as_deref(), Some(&[0, 0, 1, 0][..]));
        // At step 2, member 2 is exactly at the eligibility bound ((2·5 − 1·8)·4 = 8 = W):
        // eligible (`≥`), and its deadline 7/5 is the earliest, so it goes again.
        assert_eq!(
            schedule(&[1, 2, 5]).as_deref(),
            Some(&[2, 2, 1, 2, 0, 2, 1, 2][..])
        );
    }

    /// Within `1 − 1/(2n−2)` of the exact share after every step, where nginx's smooth
    /// weighted round robin is 1.07 off. Members of weight 0 do not count in `n`: with eight
    /// more of them, the bound stays that of the eight weighted members.
    #[test]
    fn every_prefix_is_within_one_pick_of_its_share() {
        let weighted = [8_u32, 8, 1, 1, 1, 2, 8, 1];
        let with_zeros = [8_u32, 0, 8, 1, 0, 0, 1, 1, 2, 0, 8, 0, 0, 1, 0, 0];
        for w in [&weighted[..], &with_zeros[..]] {
            let s = schedule(w).unwrap();
            let total: u32 = w.iter().sum();
            let mut c = vec![0_i64; w.len()];
            for (t, &i) in s.iter().enumerate() {
                c[i as usize] += 1;
                for (k, &wk) in w.iter().enumerate() {
                    // |c − t·w/W| ≤ 1 − 1/14  ⇔  14·|c·W − t·w| ≤ 13·W
                    let off = (c[k] * i64::from(total) - (t as i64 + 1) * i64::from(wk)).abs();
                    assert!(14 * off <= 13 * i64::from(total), "{w:?}: {k} at step {t}");
                }
            }
            let want: Vec<u64> = w.iter().map(|&x| u64::from(x)).collect();
            assert_eq!(counts(&s, w.len()), want);
        }
    }

    #[test]
    fn weights_are_divided_by_their_gcd_and_zero_is_left_out() {
        assert_eq!(schedule(&[4, 0, 2]).as_deref(), Some(&[0, 2, 0][..]));
    }

    #[test]
    fn huge_weights_are_scaled_and_every_member_keeps_a_share() {
        let s = schedule(&[u32::MAX, 1, u32::MAX / 2]).unwrap();
        assert!(s.len() as u64 <= MAX_LEN, "{}", s.len());
        let c = counts(&s, 3);
        assert!(c[1] >= 1, "{c:?}");
        // 2 : 1 between the heavy two, to within the rounding of the scaling.
        let ratio = c[0] as f64 / c[2] as f64;
        assert!((ratio - 2.0).abs() < 0.01, "{c:?}");
    }

    /// A zero weight stays zero when heavy weights are scaled down.
    #[test]
    fn scaling_leaves_a_zero_weight_out() {
        let s = schedule(&[u32::MAX, 0, 1]).unwrap();
        assert_eq!(counts(&s, 3)[1], 0);
    }

    /// With more members of positive weight than 65 536, the cap is their number (never
    /// below), not counting those of weight 0: 70 000 weighted members of 71 000 share a cap
    /// of 70 000, the heavy one's 100 000 of 169 999 scale to
    /// ⌊100 000 · 70 000 / 169 999⌋ = 41 176, and each light one, scaled to 0, keeps 1.
    #[test]
    fn the_cap_is_never_below_the_weighted_members() {
        let mut weights = vec![100_000_u32];
        weights.extend([1; 69_999]);
        weights.extend([0; 1_000]);
        let s = schedule(&weights).unwrap();
        let c = counts(&s, weights.len());
        assert_eq!(c[0], 41_176);
        assert!(
            c[1..70_000].iter().all(|&n| n == 1),
            "each light member keeps 1"
        );
        assert!(c[70_000..].iter().all(|&n| n == 0), "weight 0 keeps none");
        assert_eq!(
            s.len(),
            41_176 + 69_999,
            "the cap plus the members lifted to 1, at most"
        );
    }

    /// Thousands of members keep their weights exactly when the total fits in 65 536: the
    /// cost of a build grows with `(n + W) log d`, not `W × n`, so the number of members no
    /// longer shrinks the cap.
    #[test]
    fn thousands_of_members_keep_their_exact_weights() {
        let weights: Vec<u32> = (0..5_000).map(|i| 1 + i % 3).collect();
        let s = schedule(&weights).unwrap();
        assert_eq!(s.len(), 9_999);
        let want: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
        assert_eq!(counts(&s, 5_000), want);
    }

    /// Past the cap the schedule is scaled: 50 000 members weighted 1 to 3 (99 999 in all)
    /// scale to ⌊wᵢ · 65 536 / 99 999⌋, at least 1: one entry each.
    #[test]
    fn many_members_keep_the_schedule_within_its_cap() {
        let weights: Vec<u32> = (0..50_000).map(|i| 1 + i % 3).collect();
        let s = schedule(&weights).unwrap();
        assert_eq!(
            s.len(),
            50_000,
            "one entry each: the scaled weights are all 1"
        );
        assert_eq!(counts(&s, 50_000), vec![1; 50_000]);
    }

    /// The scan of every member at every step that the heaps replaced, kept as the reference:
    /// Tijdeman's rule read literally.
    fn smooth_by_scan(w: &[u64]) -> Vec<u32> {
        let total = u128::from(w.iter().sum::<u64>());
        let live: Vec<(u32, u128)> = w
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x > 0)
            .map(|(i, &x)| (i as u32, u128::from(x)))
            .collect();
        if live.len() < 2 {
            return live
                .iter()
                .flat_map(|&(i, x)| vec![i; x as usize])
                .collect();
        }
        let m = 2 * live.len() as u128 - 2;
        let mut count = vec![0_u128; live.len()];
        let mut out = Vec::new();
        for t in 1..=total {
            let mut best: Option<usize> = None;
            for (k, &(_, weight)) in live.iter().enumerate() {
                let lag = (t * weight).checked_sub(count[k] * total);
                if !lag.is_some_and(|lag| lag * m >= total) {
                    continue;
                }
                let earlier = best.is_none_or(|b| {
                    ((count[k] + 1) * m - 1) * live[b].1 < ((count[b] + 1) * m - 1) * weight
                });
                if earlier {
                    best = Some(k);
                }
            }
            let k = best.expect("Tijdeman: some member is always eligible");
            count[k] += 1;
            out.push(live[k].0);
        }
        out
    }

    proptest::proptest! {
        /// The heaps choose exactly what the scan of every member chooses, step by step, with
        /// few distinct weights (many members sharing each) or many.
        #[test]
        fn the_heaps_give_the_sequence_of_the_scan(
            w in (1_u64..40).prop_flat_map(|most| {
                proptest::collection::vec(0..most, 1..24)
            })
        ) {
            proptest::prop_assume!(w.iter().any(|&x| x > 0));
            proptest::prop_assert_eq!(smooth(&w).to_vec(), smooth_by_scan(&w));
        }
    }
}
