//! Power of two choices keeps comparing loads when one of its two samples cannot be handed
//! out: it draws another instead of taking the other sample blindly.

mod common;

use common::{with_loads, TestMember};
use croupier::{Balancer, Ejection, Outcome, Policy};

/// Ways a member can be out of the running.
#[derive(Debug, Clone, Copy)]
enum Out {
    Dead,
    Disabled,
    Ejected,
    OverMaxLoad,
}

const MAX_LOAD: usize = 50;
const BUSY: usize = 40;

/// A power-of-two balancer over members `0..loads.len()` with `out` taken out of the running
/// the way `how` says; every other member has the load `loads` gives it.
fn balancer(loads: &[usize], out: &[usize], how: Out) -> (Balancer<TestMember>, Vec<TestMember>) {
    let members = with_loads(loads);
    let b = Balancer::builder()
        .policy(Policy::PowerOfTwo)
        .seed(7)
        .max_load(MAX_LOAD)
        .min_alive_ratio(0.01)
        .outlier_ejection(Ejection::default().consecutive_failures(1).max_share(1.0))
        .source(members.clone())
        .build()
        .unwrap();
    for &i in out {
        match how {
            Out::Dead => members[i].kill(),
            Out::Disabled => assert!(b.disable(&members[i])),
            Out::Ejected => {
                // Picks until member i comes up, and fails it.
                let ticket = loop {
                    let p = b.pick().unwrap();
                    if p.id as usize == i {
                        break p.ticket();
                    }
                };
                b.report(ticket, Outcome::Failure);
            }
            Out::OverMaxLoad => members[i].set_load(MAX_LOAD),
        }
    }
    (b, members)
}

/// The share of `picks` picks that go to member `busy`.
fn share_of(b: &Balancer<TestMember>, busy: u32, picks: usize) -> f64 {
    let hits = (0..picks).filter(|_| b.pick().unwrap().id == busy).count();
    hits as f64 / picks as f64
}

#[test]
fn power_of_two_compares_loads_when_a_sample_is_out() {
    for how in [Out::Dead, Out::Disabled, Out::Ejected, Out::OverMaxLoad] {
        // Four members, one out, one busy, two idle: the busy one is always the heavier of
        // any pair it is in, so it should get (almost) nothing.
        let (b, _members) = balancer(&[BUSY, 0, 0, 0], &[1], how);
        let share = share_of(&b, 0, 20_000);
        assert!(share < 0.005, "{how:?}, 4 members: busy share {share}");
        // Ten members, three out.
        let mut loads = [0; 10];
        loads[0] = BUSY;
        let (b, _members) = balancer(&loads, &[3, 5, 8], how);
        let share = share_of(&b, 0, 20_000);
        assert!(share < 0.005, "{how:?}, 10 members: busy share {share}");
        // The out members get nothing, and the idle ones share the picks.
        let mut counts = [0_usize; 10];
        for _ in 0..20_000 {
            counts[b.pick().unwrap().id as usize] += 1;
        }
        for i in [3, 5, 8] {
            assert_eq!(counts[i], 0, "{how:?}: member {i} is out");
        }
        for i in [1, 2, 4, 6, 7, 9] {
            assert!(
                (2_500..4_200).contains(&counts[i]),
                "{how:?}: idle member {i} got {} of 20 000",
                counts[i]
            );
        }
    }
}

/// When the busy member is the only one left in the running beside those out, it is still
/// handed out: comparing loads never refuses a pick that could be served.
#[test]
fn power_of_two_still_hands_out_the_only_usable_member() {
    for how in [Out::Dead, Out::Disabled, Out::Ejected, Out::OverMaxLoad] {
        let (b, _members) = balancer(&[BUSY, 0, 0, 0], &[1, 2, 3], how);
        assert!((0..100).all(|_| b.pick().unwrap().id == 0), "{how:?}");
    }
}

/// The picks a seeded balancer makes from a fresh thread, over members of distinct loads (so
/// that each choice depends on the sampled pair), with `policy`.
fn picks_from_a_fresh_thread(policy: Policy) -> Vec<u32> {
    std::thread::spawn(move || {
        let members = with_loads(&[3, 0, 5, 1, 7, 2, 6, 4, 9, 8, 11, 10, 12, 15, 13, 14]);
        // Ties everywhere for least loaded: where it starts decides.
        if policy == Policy::LeastLoaded {
            members.iter().for_each(|m| m.set_load(1));
        }
        let b = Balancer::builder()
            .policy(policy)
            .seed(42)
            .source(members)
            .build()
            .unwrap();
        (0..64).map(|_| b.pick().unwrap().id).collect()
    })
    .join()
    .unwrap()
}

/// A seeded balancer picked from one thread makes the same choices whatever cursor stripe the
/// thread got. Stripes are handed out in the order threads first pick from any balancer in
/// the process, so a run's choices used to depend on how many threads had picked before (a
/// test runner's, a simulation's): each fresh thread below takes the next stripe.
#[test]
fn a_seeded_balancer_repeats_its_picks_whatever_the_threads_stripe() {
    for policy in [Policy::PowerOfTwo, Policy::LeastLoaded] {
        let first = picks_from_a_fresh_thread(policy);
        for _ in 0..3 {
            assert_eq!(picks_from_a_fresh_thread(policy), first, "{policy:?}");
        }
    }
}
