//! Weights: smooth weighted round robin, zero weight as a soft drain, and load compared per
//! unit of weight by the load-aware policies.

mod common;

use common::{with_loads, with_weights, SharedSource, POLICIES};
use croupier::{Balancer, PickError, Policy};
use proptest::prelude::*;

/// The ids of `k` consecutive round-robin picks.
fn picks(b: &Balancer<common::TestMember>, k: usize) -> Vec<u32> {
    (0..k).map(|_| b.pick().unwrap().id).collect()
}

/// Checks both promises of weighted round robin over `seq`, picks from the start of a
/// balancer over `weights`: every window of `W = Σw` consecutive picks has member `i`
/// exactly `wᵢ` times, and after any `t` picks member `i`'s count is within 1 of `t·wᵢ/W`.
fn assert_exact_and_smooth(weights: &[u32], seq: &[u32]) -> Result<(), String> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let w = usize::try_from(total).unwrap();
    for start in 0..seq.len().saturating_sub(w) + 1 {
        let mut counts = vec![0_u32; weights.len()];
        for &id in &seq[start..start + w] {
            counts[id as usize] += 1;
        }
        if counts != weights {
            return Err(format!(
                "window at {start}: {counts:?}, weights {weights:?}"
            ));
        }
    }
    let mut counts = vec![0_u64; weights.len()];
    for (t, &id) in seq.iter().enumerate() {
        counts[id as usize] += 1;
        let t = t as u64 + 1;
        for (i, (&c, &wi)) in counts.iter().zip(weights).enumerate() {
            // |c − t·wᵢ/W| < 1  ⇔  |c·W − t·wᵢ| < W
            let diff = (i128::from(c) * i128::from(total) - i128::from(t) * i128::from(wi)).abs();
            if diff >= i128::from(total) {
                return Err(format!(
                    "member {i} after {t} picks: {c} of weight {wi}/{total}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn weighted_round_robin_is_exact_and_smooth() {
    let weights = [5, 1, 1, 3, 2];
    let b = Balancer::builder()
        .source(with_weights(&weights))
        .build()
        .unwrap();
    let seq = picks(&b, 12 * 4);
    assert_exact_and_smooth(&weights, &seq).unwrap();
    // Spread, not bunched: the heaviest member never gets more than two picks in a row.
    assert!(
        seq.windows(3)
            .all(|w| !(w[0] == 0 && w[1] == 0 && w[2] == 0)),
        "{seq:?}"
    );
    // Equal weights are plain round robin in source order, whatever the weight.
    let b = Balancer::builder()
        .source(with_weights(&[4, 4, 4]))
        .build()
        .unwrap();
    assert_eq!(picks(&b, 6), [0, 1, 2, 0, 1, 2]);
}

#[test]
fn weighted_round_robin_skips_dead_members_and_keeps_the_others_shares() {
    let members = with_weights(&[3, 1, 2]);
    let b = Balancer::builder()
        .min_alive_ratio(0.1)
        .source(members.clone())
        .build()
        .unwrap();
    members[0].kill();
    let seq = picks(&b, 30);
    let ones = seq.iter().filter(|&&id| id == 1).count();
    let twos = seq.iter().filter(|&&id| id == 2).count();
    assert_eq!((ones, twos, ones + twos), (10, 20, 30), "{seq:?}");
}

#[test]
fn zero_weight_gets_nothing() {
    for policy in POLICIES {
        let members = with_weights(&[1, 0, 2]);
        let source = SharedSource::new(members.clone());
        let b = Balancer::builder()
            .policy(policy)
            .source(source.clone())
            .build()
            .unwrap();
        let seq = picks(&b, 300);
        assert!(!seq.contains(&1), "{policy:?}: {seq:?}");
        assert!(seq.contains(&0) && seq.contains(&2), "{policy:?}");
        // A soft drain: alive, in the snapshot, not dead.
        let stats = b.stats();
        assert_eq!((stats.alive, stats.members, stats.skipped_dead), (3, 3, 0));

        // Every weight 0: nothing to hand out.
        for m in &members {
            m.set_weight(0);
        }
        b.refresh();
        assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
        // A weight read again at the refresh brings the member back.
        members[1].set_weight(1);
        b.refresh();
        assert!(picks(&b, 10).iter().all(|&id| id == 1), "{policy:?}");
    }
}

#[test]
fn load_aware_policies_compare_load_per_weight() {
    // Member 0 carries 4 at weight 4 (1 per unit), member 1 carries 3 at weight 1.
    for policy in [Policy::LeastLoaded, Policy::PowerOfTwo] {
        let members = with_loads(&[4, 3]);
        members[0].set_weight(4);
        let b = Balancer::builder()
            .policy(policy)
            .seed(3)
            .source(members)
            .build()
            .unwrap();
        for _ in 0..20 {
            assert_eq!(b.pick().unwrap().id, 0, "{policy:?}");
        }
    }
}

/// 20 000 members weighted 1 and 2 (a total of 30 000): one period of picks gives each member
/// exactly its weight, unscaled, and after every pick each member's count is within
/// `1 − 1/(2n−2)` of its exact share (checked where a member's error peaks: just before and
/// just after each of its picks).
#[test]
fn weighted_schedule_of_many_members_is_exact() {
    let weights: Vec<u32> = (0..20_000).map(|i| 1 + i % 2).collect();
    let b = Balancer::builder()
        .source(with_weights(&weights))
        .build()
        .unwrap();
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let seq = picks(&b, total as usize);
    let mut counts = vec![0_i64; weights.len()];
    let m = 2 * weights.len() as i64 - 2;
    // |c − t·w/W| ≤ 1 − 1/m  ⇔  m·|c·W − t·w| ≤ (m − 1)·W
    let within =
        |c: i64, t: i64, w: u32| m * (c * total - t * i64::from(w)).abs() <= (m - 1) * total;
    for (t, &id) in seq.iter().enumerate() {
        let (t, i) = (t as i64 + 1, id as usize);
        assert!(
            within(counts[i], t - 1, weights[i]),
            "member {i} before its pick at {t}"
        );
        counts[i] += 1;
        assert!(
            within(counts[i], t, weights[i]),
            "member {i} after its pick at {t}"
        );
    }
    let want: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
    assert!(counts == want, "the period's shares are the weights");
    // The next period repeats the first.
    assert_eq!(picks(&b, seq.len()), seq);
}

proptest! {
    /// Any weights (some zero, not all) give exact, smooth shares from one thread.
    #[test]
    fn weighted_fairness_model(weights in prop::collection::vec(0_u32..7, 1..8)) {
        prop_assume!(weights.iter().any(|&w| w > 0));
        let b = Balancer::builder().source(with_weights(&weights)).build().unwrap();
        let total: u32 = weights.iter().sum();
        let seq = picks(&b, 3 * total as usize);
        // Equal weights reduce to plain round robin, whose windows of n hold each once;
        // compare against the weights divided by their gcd.
        let g = weights.iter().fold(0, |g, &w| gcd(g, w));
        let reduced: Vec<u32> = weights.iter().map(|&w| w / g).collect();
        prop_assert_eq!(assert_exact_and_smooth(&reduced, &seq), Ok(()));
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
