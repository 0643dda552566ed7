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
//! divisor. Building it costs `W × n` steps, so `W` is kept to at most 65 536 and to
//! 16 Mi steps (whichever is smaller, but never below the number of members with a weight):
//! heavier weights are scaled down in proportion, each non-zero weight keeping at least 1,
//! and the shares are then exact for the scaled weights.

/// The most entries a schedule may have.
const MAX_LEN: u64 = 1 << 16;
/// The most credit updates building one may take.
const MAX_STEPS: u64 = 1 << 24;

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
    let cap = MAX_LEN
        .min(MAX_STEPS / (w.len() as u64).max(1))
        .max(nonzero);
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
    let g = w.iter().fold(0, |g, &x| gcd(g, x));
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

/// Tijdeman's sequence over one period.
fn smooth(w: &[u64]) -> Box<[u32]> {
    let total = u128::from(w.iter().sum::<u64>());
    let live: Vec<(u32, u128)> = w
        .iter()
        .enumerate()
        .filter(|&(_, &x)| x > 0)
        .filter_map(|(i, &x)| Some((u32::try_from(i).ok()?, u128::from(x))))
        .collect();
    match live[..] {
        [] => return Box::new([]),
        [(only, _)] => return vec![only; usize::try_from(total).unwrap_or(0)].into_boxed_slice(),
        _ => {}
    }
    // With `m = 2n − 2`: eligible when (t·wᵢ − cᵢ·W)·m ≥ W; deadline ((cᵢ+1)·m − 1) / wᵢ.
    let m = 2 * live.len() as u128 - 2;
    let mut count = vec![0_u128; live.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for t in 1..=total {
        let mut best: Option<usize> = None;
        for (k, &(_, weight)) in live.iter().enumerate() {
            let due = t * weight;
            let had = count[k] * total;
            // Eligible: not ahead of its share by 1/m or more (due − had ≥ W/m).
            if !due.checked_sub(had).is_some_and(|lag| lag * m >= total) {
                continue;
            }
            let earlier = best.map_or(true, |b| {
                let (_, wb) = live[b];
                ((count[k] + 1) * m - 1) * wb < ((count[b] + 1) * m - 1) * weight
            });
            if earlier {
                best = Some(k);
            }
        }
        // Tijdeman's theorem says some member is always eligible; the first is a safe answer
        // should rounding ever say otherwise.
        let k = best.unwrap_or(0);
        count[k] += 1;
        out.push(live[k].0);
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
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

    /// With more members than the step budget allows entries for, the cap is the number of
    /// members with a weight (never below), not counting those of weight 0: 5 000 weighted
    /// members of 6 000 over 16 Mi steps (2 796 each) share a cap of 5 000, and the heavy
    /// one's 1 000 of 5 999 scale to ⌊1 000 · 5 000 / 5 999⌋ = 833.
    #[test]
    fn the_cap_is_never_below_the_weighted_members() {
        let mut weights = vec![1_000_u32];
        weights.extend([1; 4_999]);
        weights.extend([0; 1_000]);
        let s = schedule(&weights).unwrap();
        let c = counts(&s, weights.len());
        assert_eq!(c[0], 833);
        assert!(
            c[1..5_000].iter().all(|&n| n == 1),
            "each light member keeps 1"
        );
        assert!(c[5_000..].iter().all(|&n| n == 0), "weight 0 keeps none");
    }

    #[test]
    fn many_members_keep_the_build_bounded() {
        let weights: Vec<u32> = (0..5_000).map(|i| 1 + i % 3).collect();
        let s = schedule(&weights).unwrap();
        assert_eq!(
            s.len(),
            5_000,
            "one entry each: the scaled weights are all 1"
        );
        assert_eq!(counts(&s, 5_000), vec![1; 5_000]);
    }
}
