//! Outlier ejection: failures in a row take a member out of rotation for a while, never more
//! than a set share of the members, and a timer brings it back.

mod common;

use std::time::{Duration, Instant};

use common::{make, SharedSource, TestMember};
use croupier::{Balancer, Ejection, Outcome};

/// Picks round robin until `id` comes up, and reports `outcome` for it; the others succeed.
fn report_for(b: &Balancer<TestMember>, id: u32, outcome: Outcome) {
    for _ in 0..100 {
        let p = b.pick().unwrap();
        if p.id == id {
            p.report(outcome);
            return;
        }
        p.report(Outcome::Success);
    }
    panic!("member {id} never came up");
}

/// Waits (bounded) until `cond` holds, for what a real timer does.
fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::yield_now();
    }
}

#[test]
fn consecutive_failures_eject_and_readmit() {
    let base = Duration::from_millis(50);
    let members = make(3);
    let source = SharedSource::new(members);
    let b = Balancer::builder()
        .outlier_ejection(
            Ejection::default()
                .consecutive_failures(3)
                .base_time(base)
                .max_share(0.5),
        )
        .source(source)
        .build()
        .unwrap();

    // Two failures, a success, two failures: never three in a row.
    for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
        report_for(&b, 0, outcome);
    }
    report_for(&b, 0, Outcome::Failure);
    report_for(&b, 0, Outcome::Failure);
    assert_eq!((b.stats().ejected, b.stats().ejections), (0, 0));

    // The third in a row ejects it: out of rotation, and it stays out across a refresh.
    let ejected_at = Instant::now();
    report_for(&b, 0, Outcome::Failure);
    assert_eq!((b.stats().ejected, b.stats().ejections), (1, 1));
    b.refresh();
    assert_eq!(b.stats().ejected, 1, "the ejection outlives a refresh");
    for _ in 0..30 {
        let p = b.pick().unwrap();
        assert_ne!(p.id, 0);
    }

    // The timer brings it back after about its base time (± 10 %), failures forgotten.
    until("re-admission", || b.stats().ejected == 0);
    assert!(ejected_at.elapsed() >= base.mul_f64(0.9));
    assert!((0..3).any(|_| b.pick().unwrap().id == 0));
    report_for(&b, 0, Outcome::Failure);
    report_for(&b, 0, Outcome::Failure);
    assert_eq!(b.stats().ejected, 0, "the count started again from zero");

    // The second ejection lasts twice as long.
    let second = Instant::now();
    report_for(&b, 0, Outcome::Failure);
    assert_eq!((b.stats().ejected, b.stats().ejections), (1, 2));
    until("second re-admission", || b.stats().ejected == 0);
    assert!(
        second.elapsed() >= (base * 2).mul_f64(0.9),
        "{:?}",
        second.elapsed()
    );
}

#[test]
fn ejection_never_exceeds_its_share() {
    for (share, most) in [(0.2, 2), (0.0, 1), (0.55, 5)] {
        let b = Balancer::builder()
            .outlier_ejection(
                Ejection::default()
                    .consecutive_failures(1)
                    .max_share(share)
                    .base_time(Duration::from_secs(60)),
            )
            .source(make(10))
            .build()
            .unwrap();
        // Every member fails every request.
        for _ in 0..100 {
            b.pick().unwrap().report(Outcome::Failure);
        }
        let stats = b.stats();
        assert_eq!(
            (stats.ejected, stats.ejections),
            (most, most as u64),
            "share {share}"
        );
        // Those left keep serving.
        assert!(b.pick().is_ok());
    }
}

#[test]
fn reports_do_nothing_without_ejection_or_for_a_replaced_snapshot() {
    let b = Balancer::builder().source(make(2)).build().unwrap();
    for _ in 0..20 {
        b.pick().unwrap().report(Outcome::Failure);
    }
    assert_eq!(b.stats().ejected, 0);

    // A member without an affinity key is known only in the snapshot it was picked from.
    #[derive(Clone, Debug, PartialEq)]
    struct Keyless(u8);
    impl croupier::Member for Keyless {
        fn is_alive(&self) -> bool {
            true
        }
    }
    let b = Balancer::builder()
        .outlier_ejection(Ejection::default().consecutive_failures(1))
        .source(vec![Keyless(0), Keyless(1)])
        .build()
        .unwrap();
    let ticket = b.pick().unwrap().ticket();
    b.refresh();
    b.report(ticket, Outcome::Failure);
    assert_eq!(b.stats().ejected, 0, "the ticket's snapshot is gone");
    let picked = b.pick().unwrap();
    let (ticket, bad) = (picked.ticket(), picked.0);
    drop(picked);
    b.report(ticket, Outcome::Failure);
    assert_eq!(b.stats().ejected, 1);
    assert!(
        (0..4).all(|_| b.pick().unwrap().0 != bad),
        "known by equality"
    );

    // One with a key is found by it in the new snapshot, wherever it moved.
    let members = make(3);
    let source = SharedSource::new(members.clone());
    let b = Balancer::builder()
        .outlier_ejection(Ejection::default().consecutive_failures(1))
        .source(source.clone())
        .build()
        .unwrap();
    let picked = b.pick().unwrap();
    let (ticket, id) = (picked.ticket(), picked.id);
    drop(picked);
    let mut reversed = members.clone();
    reversed.reverse();
    source.set(reversed);
    b.refresh();
    b.report(ticket, Outcome::Failure);
    assert_eq!(b.stats().ejected, 1, "found by its key");
    assert!((0..6).all(|_| b.pick().unwrap().id != id));

    // A member that left is not found: its report is dropped, even from past the end of
    // the shorter snapshot.
    source.set(members.clone());
    let b = Balancer::builder()
        .outlier_ejection(Ejection::default().consecutive_failures(1))
        .source(source.clone())
        .build()
        .unwrap();
    let last = loop {
        let p = b.pick().unwrap();
        if p.index() == 2 {
            break p.ticket();
        }
    };
    source.set(members[..2].to_vec());
    b.refresh();
    b.report(last, Outcome::Failure);
    assert_eq!(b.stats().ejected, 0);
    // Further past the end: a snapshot of one.
    source.set(members.clone());
    b.refresh();
    let last = loop {
        let p = b.pick().unwrap();
        if p.index() == 2 {
            break p.ticket();
        }
    };
    source.set(members[..1].to_vec());
    b.refresh();
    b.report(last, Outcome::Failure);
    assert_eq!(b.stats().ejected, 0);
}

/// A member the source stops returning is forgotten with its ejection: when it comes back it
/// is in rotation at once.
#[test]
fn a_member_that_leaves_forgets_its_ejection() {
    let members = make(3);
    let source = SharedSource::new(members.clone());
    let b = Balancer::builder()
        .outlier_ejection(
            Ejection::default()
                .consecutive_failures(1)
                .max_share(0.5)
                .base_time(Duration::from_secs(600)),
        )
        .source(source.clone())
        .build()
        .unwrap();
    report_for(&b, 1, Outcome::Failure);
    assert_eq!(b.stats().ejected, 1);
    source.set(vec![members[0].clone(), members[2].clone()]);
    b.refresh();
    assert_eq!(b.stats().ejected, 0);
    source.set(members);
    b.refresh();
    assert_eq!(b.stats().ejected, 0, "back from the source, not ejected");
    assert!((0..3).any(|_| b.pick().unwrap().id == 1));
}

/// Members ejected together come back each at its own time: the one due first does not take
/// the other back with it.
#[test]
fn each_ejected_member_comes_back_at_its_own_time() {
    let base = Duration::from_millis(200);
    let members = make(4);
    let b = Balancer::builder()
        .outlier_ejection(
            Ejection::default()
                .consecutive_failures(1)
                .max_share(1.0)
                .base_time(base),
        )
        .source(members)
        .build()
        .unwrap();
    // Member 0's first ejection, and its re-admission.
    report_for(&b, 0, Outcome::Failure);
    until("member 0 back", || b.stats().ejected == 0);
    // Now member 0's second (about 2 × 200 ms) and member 1's first (about 200 ms) at once.
    report_for(&b, 0, Outcome::Failure);
    report_for(&b, 1, Outcome::Failure);
    assert_eq!(b.stats().ejected, 2);
    until("member 1 back", || b.stats().ejected < 2);
    assert_eq!(b.stats().ejected, 1, "member 0 is due about 200 ms later");
    assert!((0..12).all(|_| b.pick().unwrap().id != 0));
    until("member 0 back again", || b.stats().ejected == 0);
}

/// On a tokio runtime, ejections are timed by tokio's clock: with the clock paused, an
/// ejected member comes back once the clock is advanced past its time, and not before,
/// without any real waiting.
#[tokio::test(start_paused = true)]
async fn readmission_follows_tokios_paused_clock() {
    readmission_on_the_paused_clock().await;
}

/// The same once the paused clock has run an hour ahead of the system's: an ejection is
/// stamped by the runtime's clock, not the system's (which would make it due an hour ago,
/// and back at once).
#[tokio::test(start_paused = true)]
async fn an_ejection_is_stamped_by_the_runtimes_clock_when_it_runs_ahead() {
    tokio::time::advance(Duration::from_secs(3600)).await;
    readmission_on_the_paused_clock().await;
}

async fn readmission_on_the_paused_clock() {
    let base = Duration::from_secs(30);
    let b = Balancer::builder()
        .outlier_ejection(
            Ejection::default()
                .consecutive_failures(1)
                .max_share(0.5)
                .base_time(base),
        )
        .source(make(2))
        .build()
        .unwrap();
    let real = Instant::now();
    report_for(&b, 0, Outcome::Failure);
    assert_eq!(b.stats().ejected, 1);

    // Not before its time (30 s ± 10 %).
    tokio::time::advance(base.mul_f64(0.85)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.stats().ejected, 1, "re-admitted before its time");

    // Past it: back in rotation, with no real time spent waiting.
    tokio::time::advance(base.mul_f64(0.3)).await;
    let mut turns = 0;
    while b.stats().ejected != 0 {
        turns += 1;
        assert!(
            turns < 10_000 && real.elapsed() < Duration::from_secs(5),
            "not re-admitted after the paused clock passed its time"
        );
        tokio::task::yield_now().await;
    }
    assert!((0..2).any(|_| b.pick().unwrap().id == 0));
    assert!(real.elapsed() < Duration::from_secs(5));
}

/// A re-admission that falls due while a refresh holds the writer lock (its source is slow)
/// waits for the lock off the runtime's thread, which goes on running, and lands once the
/// refresh is done.
#[tokio::test(start_paused = true)]
async fn a_readmission_due_during_a_slow_refresh_waits_off_the_runtime() {
    let base = Duration::from_secs(30);
    let members = make(2);
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (entered_tx, gate) = (
        std::sync::Mutex::new(entered_tx),
        std::sync::Mutex::new(gate),
    );
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let source = move || {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            let _ = entered_tx.lock().unwrap().send(());
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }
        members.clone()
    };
    let b = Balancer::builder()
        .outlier_ejection(
            Ejection::default()
                .consecutive_failures(1)
                .max_share(0.5)
                .base_time(base),
        )
        .source(source)
        .build()
        .unwrap();
    let real = Instant::now();
    report_for(&b, 0, Outcome::Failure);
    assert_eq!(b.stats().ejected, 1);

    let refresh = std::thread::spawn({
        let b = b.clone();
        move || b.refresh()
    });
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the refresh is in its source, holding the writer lock");
    tokio::time::advance(base.mul_f64(1.2)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.stats().ejected, 1, "the refresh holds the lock");
    assert!(
        real.elapsed() < Duration::from_secs(5),
        "the runtime's thread waited for the lock"
    );

    release.send(()).unwrap();
    while b.stats().ejected != 0 {
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "not re-admitted once the refresh was done"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(refresh.join().unwrap(), 2);
}

/// A ticket from another balancer (whose snapshot is larger) is reported without a panic and
/// ejects nothing it does not name.
#[test]
fn a_ticket_from_another_balancer_is_harmless() {
    let build = |n| {
        Balancer::builder()
            .outlier_ejection(Ejection::default().consecutive_failures(1))
            .source(make(n))
            .build()
            .unwrap()
    };
    let (big, small) = (build(3), build(2));
    let ticket = loop {
        let p = big.pick().unwrap();
        if p.index() == 2 {
            break p.ticket();
        }
    };
    small.report(ticket, Outcome::Failure);
    assert_eq!(small.stats().ejected, 0);
}
