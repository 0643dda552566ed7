//! Failover: `pick_excluding` hands out each usable member at most once, by the policy's
//! order among those not yet tried.

mod common;

use common::{make, with_loads, POLICIES};
use croupier::{Balancer, PickError, Policy};

#[test]
fn failover_tries_distinct_members() {
    for policy in POLICIES {
        let members = make(6);
        let b = Balancer::builder()
            .policy(policy)
            .min_alive_ratio(0.1)
            .seed(11)
            .source(members.clone())
            .build()
            .unwrap();
        members[2].kill();
        b.disable(&members[4]);
        let mut tried = Vec::new();
        let error = loop {
            match b.pick_excluding(&tried) {
                Ok(p) => {
                    assert!(!tried.contains(&*p), "{policy:?}: {} twice", p.id);
                    tried.push(p.cloned());
                }
                Err(e) => break e,
            }
        };
        let mut ids: Vec<u32> = tried.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 3, 5], "{policy:?}: every usable member once");
        assert_eq!(error, PickError::NoMembers, "{policy:?}");
    }
}

#[test]
fn failover_follows_the_policy_among_the_rest() {
    // Least loaded: the lightest not yet tried, then the next lightest.
    let b = Balancer::builder()
        .policy(Policy::LeastLoaded)
        .source(with_loads(&[5, 1, 3, 2]))
        .build()
        .unwrap();
    let mut tried = Vec::new();
    for want in [1, 3, 2, 0] {
        let p = b.pick_excluding(&tried).unwrap();
        assert_eq!(p.id, want);
        tried.push(p.cloned());
    }
    // Round robin: the next in turn after the one that failed.
    let members = make(4);
    let b = Balancer::builder().source(members.clone()).build().unwrap();
    let first = b.pick().unwrap().cloned();
    assert_eq!(first.id, 0);
    assert_eq!(b.pick_excluding(&[first]).unwrap().id, 1);
    // An empty list is a plain pick.
    assert_eq!(b.pick_excluding(&[]).unwrap().id, 2);
}
