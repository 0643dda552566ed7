//! Load-aware picking: max_load, least loaded, power of two choices, and configuration errors.

mod common;

use std::collections::BTreeSet;

use common::{make, with_loads, TestMember, POLICIES};
use croupier::{Balancer, ConfigError, Member, PickError, Policy};
use proptest::prelude::*;

fn balancer(
    policy: Policy,
    members: Vec<TestMember>,
    max_load: Option<usize>,
) -> Balancer<TestMember> {
    let builder = Balancer::builder().policy(policy).seed(99).source(members);
    match max_load {
        Some(n) => builder.max_load(n),
        None => builder,
    }
    .build()
    .expect("a valid configuration")
}

fn picked_set(b: &Balancer<TestMember>, picks: usize) -> BTreeSet<u32> {
    (0..picks)
        .map(|_| b.pick().expect("a member under max_load").id)
        .collect()
}

#[test]
fn max_load_passes_over_loaded_members() {
    for policy in POLICIES {
        // max_load 5: loads of 5 and more are passed over.
        let members = with_loads(&[5, 0, 7, 4, 9, 1]);
        let b = balancer(policy, members.clone(), Some(5));
        for _ in 0..300 {
            let p = b.pick().expect("members 1, 3 and 5 are under max_load");
            assert!(
                p.load() < 5,
                "{policy:?} dealt member {} at load {}",
                p.id,
                p.load()
            );
        }
        assert_eq!(b.stats().overloaded, 0, "{policy:?}");
    }
    let members = with_loads(&[5, 0, 7, 4, 9, 1]);
    let rr = balancer(Policy::RoundRobin, members.clone(), Some(5));
    assert_eq!(picked_set(&rr, 12), BTreeSet::from([1, 3, 5]));
    let ll = balancer(Policy::LeastLoaded, members, Some(5));
    assert_eq!(picked_set(&ll, 12), BTreeSet::from([1]));
}

#[test]
fn load_just_under_max_load_is_dealt() {
    for policy in POLICIES {
        let b = balancer(policy, with_loads(&[10, 9, 10]), Some(10));
        for _ in 0..20 {
            assert_eq!(b.pick().unwrap().id, 1, "{policy:?}");
        }
    }
}

#[test]
fn every_member_at_or_over_max_load_is_overloaded() {
    for policy in POLICIES {
        let members = with_loads(&[3, 4, 8]);
        let b = balancer(policy, members.clone(), Some(3));
        for _ in 0..10 {
            assert_eq!(b.pick().unwrap_err(), PickError::Overloaded, "{policy:?}");
        }
        let stats = b.stats();
        assert_eq!(stats.overloaded, 10, "{policy:?}");
        assert_eq!(stats.picks, 10, "{policy:?}: refused picks are picks");

        // As soon as one drains below the limit, it is dealt.
        members[2].set_load(2);
        assert_eq!(b.pick().unwrap().id, 2, "{policy:?}");
        assert_eq!(b.stats().overloaded, 10, "{policy:?}");
    }
}

#[test]
fn overloaded_when_the_live_are_loaded_and_the_rest_dead() {
    for policy in POLICIES {
        let members = with_loads(&[0, 6, 0, 7]);
        let b = Balancer::builder()
            .policy(policy)
            .min_alive_ratio(0.25)
            .max_load(5)
            .source(members.clone())
            .build()
            .unwrap();
        members[0].kill();
        members[2].kill();
        for _ in 0..8 {
            assert_eq!(b.pick().unwrap_err(), PickError::Overloaded, "{policy:?}");
        }
        assert_eq!(b.stats().overloaded, 8, "{policy:?}");
    }
}

#[test]
fn all_dead_is_no_members_not_overloaded() {
    for policy in POLICIES {
        let members = with_loads(&[9, 9]);
        let b = balancer(policy, members.clone(), Some(5));
        members.iter().for_each(TestMember::kill);
        assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
        assert_eq!(b.stats().overloaded, 0, "{policy:?}");
    }
}

#[test]
fn disabled_members_do_not_make_a_pick_overloaded() {
    for policy in POLICIES {
        let members = with_loads(&[9, 0]);
        let b = balancer(policy, members.clone(), Some(5));
        b.disable(&members[1]);
        assert_eq!(b.pick().unwrap_err(), PickError::Overloaded, "{policy:?}");
        b.disable(&members[0]);
        assert_eq!(b.pick().unwrap_err(), PickError::NoMembers, "{policy:?}");
    }
}

proptest! {
    #[test]
    fn least_loaded_returns_a_minimum_load_member(
        members in prop::collection::vec((0..12_usize, prop::bool::weighted(0.8)), 1..24),
        reloads in prop::collection::vec(prop::collection::vec(0..12_usize, 24), 1..6),
    ) {
        let ms = make(members.len());
        for (m, &(load, alive)) in ms.iter().zip(&members) {
            m.set_load(load);
            if !alive {
                m.kill();
            }
        }
        let b = balancer(Policy::LeastLoaded, ms.clone(), None);
        for loads in reloads {
            for (m, &load) in ms.iter().zip(&loads) {
                m.set_load(load);
            }
            let min = ms.iter().filter(|m| m.is_alive()).map(Member::load).min();
            for _ in 0..ms.len() {
                match (b.pick(), min) {
                    (Ok(p), Some(min)) => {
                        prop_assert!(p.is_alive());
                        prop_assert_eq!(p.load(), min, "dealt member {}", p.id);
                    }
                    (Err(PickError::NoMembers), None) => {}
                    (got, min) => prop_assert!(false, "got {:?} with minimum {:?}", got, min),
                }
            }
        }
    }
}

#[test]
fn least_loaded_spreads_ties_round_robin() {
    // All equal, zero or not: exact round robin, from the member this thread's cursor stripe
    // starts it on (threads on neighbouring stripes start on neighbouring members).
    for load in [0, 3] {
        let b = balancer(Policy::LeastLoaded, with_loads(&[load; 5]), None);
        let dealt: Vec<u32> = (0..10).map(|_| b.pick().unwrap().id).collect();
        let expected: Vec<u32> = (0..10).map(|k| (dealt[0] + k) % 5).collect();
        assert_eq!(dealt, expected, "load {load}");
    }
    // Several share the minimum: each of them is dealt within one rotation, nobody else is.
    for min in [0, 2] {
        let loads = [min + 1, min, min + 1, min, min];
        let b = balancer(Policy::LeastLoaded, with_loads(&loads), None);
        assert_eq!(
            picked_set(&b, 5),
            BTreeSet::from([1, 3, 4]),
            "minimum {min}"
        );
    }
}

#[test]
fn power_of_two_never_returns_the_heavier_sample() {
    for seed in 0..20 {
        // Of three, the heaviest loses every pair it is sampled in; the other two each win one.
        let b = Balancer::builder()
            .policy(Policy::PowerOfTwo)
            .seed(seed)
            .source(with_loads(&[0, 1, 2]))
            .build()
            .unwrap();
        let dealt = picked_set(&b, 300);
        assert_eq!(dealt, BTreeSet::from([0, 1]), "seed {seed}");

        // Of two, both are always sampled: always the lighter.
        for loads in [[4, 1], [1, 4]] {
            let b = Balancer::builder()
                .policy(Policy::PowerOfTwo)
                .seed(seed)
                .source(with_loads(&loads))
                .build()
                .unwrap();
            let lighter = if loads[0] < loads[1] { 0 } else { 1 };
            assert_eq!(picked_set(&b, 50), BTreeSet::from([lighter]), "seed {seed}");
        }
    }
}

#[test]
fn power_of_two_never_returns_the_heaviest_of_many() {
    let loads: Vec<usize> = (0..16).collect();
    let b = balancer(Policy::PowerOfTwo, with_loads(&loads), None);
    let dealt = picked_set(&b, 2_000);
    assert!(!dealt.contains(&15), "{dealt:?}");
    assert!(dealt.contains(&0));
}

#[test]
fn power_of_two_spreads_equal_loads() {
    let b = balancer(Policy::PowerOfTwo, make(8), None);
    assert_eq!(picked_set(&b, 1_000), (0..8).collect());
}

#[test]
fn power_of_two_with_one_member_deals_it() {
    let b = balancer(Policy::PowerOfTwo, with_loads(&[3]), None);
    assert!((0..10).all(|_| b.pick().unwrap().id == 0));
}

fn p2c_indices(seed: u64, picks: usize) -> Vec<usize> {
    let b = Balancer::builder()
        .policy(Policy::PowerOfTwo)
        .seed(seed)
        .source(with_loads(&[
            1, 3, 0, 2, 2, 5, 1, 0, 4, 1, 3, 2, 0, 1, 2, 3,
        ]))
        .build()
        .unwrap();
    (0..picks).map(|_| b.pick().unwrap().index()).collect()
}

#[test]
fn power_of_two_is_repeatable_with_a_seed() {
    for seed in [0, 1, 42, u64::MAX] {
        assert_eq!(
            p2c_indices(seed, 200),
            p2c_indices(seed, 200),
            "seed {seed}"
        );
    }
    assert_ne!(p2c_indices(1, 200), p2c_indices(2, 200));
    assert_ne!(p2c_indices(0, 200), p2c_indices(u64::MAX, 200));
}

fn build_with(
    configure: impl FnOnce(
        croupier::BalancerBuilder<TestMember>,
    ) -> croupier::BalancerBuilder<TestMember>,
) -> Result<Balancer<TestMember>, ConfigError> {
    configure(Balancer::builder()).build()
}

#[test]
fn config_errors() {
    for ratio in [
        0.0,
        -0.0,
        1.5,
        -0.5,
        1.000_001,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        let err = build_with(|b| b.min_alive_ratio(ratio).source(make(1))).unwrap_err();
        assert_eq!(err, ConfigError::InvalidRatio(ratio), "ratio {ratio}");
        assert!(err.to_string().contains("min_alive_ratio"), "{err}");
    }

    let err = build_with(|b| b.min_alive_ratio(f64::NAN).source(make(1))).unwrap_err();
    assert!(
        matches!(err, ConfigError::InvalidRatio(r) if r.is_nan()),
        "{err:?}"
    );
    assert!(!err.to_string().is_empty());

    let err = build_with(|b| b.max_load(0).source(make(1))).unwrap_err();
    assert_eq!(err, ConfigError::ZeroMaxLoad);
    assert!(!err.to_string().is_empty());

    let err = build_with(|b| b.policy(Policy::LeastLoaded)).unwrap_err();
    assert_eq!(err, ConfigError::MissingSource);
    assert!(!err.to_string().is_empty());

    // Errors are std errors, usable with `?` into a boxed error.
    let boxed: Box<dyn std::error::Error> = Box::new(ConfigError::MissingSource);
    assert!(boxed.to_string().contains("source"));
}

#[test]
fn config_boundaries_are_accepted() {
    for ratio in [1.0, 0.5, f64::MIN_POSITIVE] {
        assert!(
            build_with(|b| b.min_alive_ratio(ratio).source(make(1))).is_ok(),
            "ratio {ratio}"
        );
    }
    assert!(build_with(|b| b.max_load(1).source(make(1))).is_ok());
    assert!(build_with(|b| b.max_load(usize::MAX).source(make(1))).is_ok());
}

#[test]
fn the_source_is_not_asked_when_the_configuration_is_refused() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let err = build_with(|b| {
        b.max_load(0).source(move || {
            c.fetch_add(1, SeqCst);
            make(1)
        })
    })
    .unwrap_err();
    assert_eq!(err, ConfigError::ZeroMaxLoad);
    assert_eq!(calls.load(SeqCst), 0);
}

#[test]
fn pick_errors_display_a_message() {
    for e in [
        PickError::NoMembers,
        PickError::Overloaded,
        PickError::Draining,
    ] {
        assert!(!e.to_string().is_empty(), "{e:?}");
    }
}

/// Pearson's chi-square statistic of `counts` against `expected` shares of `total`.
fn chi_square(counts: &[usize], expected: &[f64], total: usize) -> f64 {
    counts
        .iter()
        .zip(expected)
        .map(|(&c, &p)| {
            let e = p * total as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

/// Power of two's samples are uniform: with distinct loads, member `r` places from the
/// lightest wins when it is sampled with a heavier one, which uniform, distinct samples make
/// happen with probability `2 (n - 1 - r) / (n (n - 1))`. A chi-square test over many picks
/// checks the whole distribution (which needs both samples uniform and distinct); at equal
/// loads the first sample wins, and every member should win `1/n` of the picks. Seeds are
/// fixed, so the test is repeatable; the bounds are the 0.1 % points of chi-square with 7
/// degrees of freedom (24.3) and 15 (37.7).
#[test]
fn power_of_two_samples_are_uniform() {
    const PICKS: usize = 40_000;
    for seed in [1_u64, 7, 99] {
        // Distinct loads: member i has load i, so its rank from the lightest is i.
        let n = 8;
        let b = Balancer::builder()
            .policy(Policy::PowerOfTwo)
            .seed(seed)
            .source(with_loads(&(0..n).collect::<Vec<_>>()))
            .build()
            .unwrap();
        let mut counts = vec![0; n];
        for _ in 0..PICKS {
            counts[b.pick().unwrap().index()] += 1;
        }
        let expected: Vec<f64> = (0..n)
            .map(|r| 2.0 * (n - 1 - r) as f64 / (n * (n - 1)) as f64)
            .collect();
        assert_eq!(counts[n - 1], 0, "seed {seed}: the heaviest won a pick");
        // The heaviest's expected share is 0: leave it out of the statistic.
        let chi = chi_square(&counts[..n - 1], &expected[..n - 1], PICKS);
        assert!(
            chi < 24.3,
            "seed {seed}: chi-square {chi:.1} for {counts:?}"
        );

        // Equal loads.
        let n = 16;
        let b = Balancer::builder()
            .policy(Policy::PowerOfTwo)
            .seed(seed)
            .source(make(n))
            .build()
            .unwrap();
        let mut counts = vec![0; n];
        for _ in 0..PICKS {
            counts[b.pick().unwrap().index()] += 1;
        }
        let chi = chi_square(&counts, &vec![1.0 / n as f64; n], PICKS);
        assert!(
            chi < 37.7,
            "seed {seed}: chi-square {chi:.1} for {counts:?}"
        );
    }
}

/// Consecutive picks are independent: the pick's turn goes up by one each time, and a weak
/// mix of it would show in the pairs of consecutive choices. A chi-square test over the 64
/// pairs of 8 members at equal load (63 degrees of freedom; 0.1 % point 103.4).
#[test]
fn power_of_two_consecutive_samples_are_independent() {
    const PICKS: usize = 64_000;
    let n = 8;
    for seed in [1_u64, 7, 99] {
        let b = Balancer::builder()
            .policy(Policy::PowerOfTwo)
            .seed(seed)
            .source(make(n))
            .build()
            .unwrap();
        let picks: Vec<usize> = (0..=PICKS).map(|_| b.pick().unwrap().index()).collect();
        let mut pairs = vec![0; n * n];
        for w in picks.windows(2) {
            pairs[w[0] * n + w[1]] += 1;
        }
        let chi = chi_square(&pairs, &vec![1.0 / (n * n) as f64; n * n], PICKS);
        assert!(
            chi < 103.4,
            "seed {seed}: chi-square {chi:.1} over consecutive pairs"
        );
    }
}

#[test]
fn policy_reports_the_configured_one() {
    for policy in POLICIES {
        assert_eq!(balancer(policy, make(2), None).policy(), policy);
    }
    let default = Balancer::builder().source(make(1)).build().unwrap();
    assert_eq!(
        default.policy(),
        Policy::RoundRobin,
        "round robin by default"
    );
}

/// Without `.seed(..)`, each balancer draws its own seed: two of them sample differently.
#[test]
fn unseeded_balancers_sample_differently() {
    let sequence = || {
        let b = Balancer::builder()
            .policy(Policy::PowerOfTwo)
            .source(make(16))
            .build()
            .unwrap();
        (0..64)
            .map(|_| b.pick().unwrap().index())
            .collect::<Vec<_>>()
    };
    let first = sequence();
    assert!(
        (0..3).any(|_| sequence() != first),
        "every unseeded balancer made the same choices: the seed is not random"
    );
}
