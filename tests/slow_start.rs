//! Slow start: a member new to the source ramps up from a small share of its weight to its
//! full weight over the window, as the balancer's refresher rebuilds the weights in steps.

mod common;

use std::time::Duration;

use common::{make, SharedSource, TestMember};
use croupier::{Balancer, Policy, SlowStart};

/// Member `id`'s share of `n` round-robin picks.
fn share(b: &Balancer<TestMember>, id: u32, n: usize) -> f64 {
    (0..n).filter(|_| b.pick().unwrap().id == id).count() as f64 / n as f64
}

/// Lets the refresher, woken by the paused clock, rebuild the weights: waits (bounded, by
/// yielding) until the snapshot's generation passes `after`.
async fn rebuilt(b: &Balancer<TestMember>, after: u64) {
    for _ in 0..10_000 {
        if b.stats().generation > after {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the refresher never rebuilt the weights");
}

/// Three members, then a fourth: its share follows `max(10 %, t / 10 s)` of a full weight
/// (gRPC A100's line), 1/31 at first, 1/7 halfway, 1/4 from the end of the window on; the
/// members there from the start never warm.
#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_member() {
    let members = make(4);
    let source = SharedSource::new(members[..3].to_vec());
    let b = Balancer::builder()
        .policy(Policy::RoundRobin)
        .slow_start(SlowStart::new(Duration::from_secs(10)))
        .source(source.clone())
        .build()
        .unwrap();
    assert!(
        (share(&b, 0, 3000) - 1.0 / 3.0).abs() < 1e-9,
        "no warming at build"
    );

    source.set(members.clone());
    b.refresh();
    let expect = |f: f64| f / (3.0 + f);
    let s = share(&b, 3, 3100);
    assert!((s - expect(0.1)).abs() < 0.01, "joined: {s}");

    let before = b.stats().generation;
    tokio::time::advance(Duration::from_secs(5)).await;
    rebuilt(&b, before).await;
    let s = share(&b, 3, 3500);
    assert!((s - expect(0.5)).abs() < 0.01, "halfway: {s}");

    let before = b.stats().generation;
    tokio::time::advance(Duration::from_secs(5)).await;
    rebuilt(&b, before).await;
    let s = share(&b, 3, 4000);
    assert!((s - 0.25).abs() < 1e-9, "full weight: {s}");
    // Done warming: the refresher stops rebuilding.
    let done = b.stats().generation;
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.stats().generation, done, "no rebuild once nothing warms");

    // Members that only moved in the source's list do not warm.
    let mut reversed = members.clone();
    reversed.reverse();
    source.set(reversed);
    b.refresh();
    for id in 0..4 {
        let s = share(&b, id, 4000);
        assert!((s - 0.25).abs() < 1e-9, "member {id} moved: {s}");
    }
    source.set(members.clone());
    b.refresh();

    // A new member of weight 0 gets nothing while it warms, as after.
    let zero = TestMember::new(9);
    zero.set_weight(0);
    let mut with_zero = members.clone();
    with_zero.push(zero);
    source.set(with_zero);
    b.refresh();
    assert_eq!(share(&b, 9, 4000), 0.0);
    source.set(members.clone());
    b.refresh();

    // A member that leaves and comes back warms again.
    source.set(members[..3].to_vec());
    b.refresh();
    source.set(members.clone());
    b.refresh();
    let s = share(&b, 3, 3100);
    assert!((s - expect(0.1)).abs() < 0.01, "rejoined: {s}");
}
