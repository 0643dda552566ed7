//! Refresh: by hand, and by ratio once too few of the members alive at the last refresh are
//! left; single flight under concurrent pickers; push notices of death.

mod common;

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc, Barrier, Mutex,
    },
    thread,
};

use common::{ids, make, make_from, settle, SharedSource, TestMember, POLICIES};
use croupier::{Balancer, PickError, Policy};

fn balancer(policy: Policy, ratio: f64, source: &SharedSource) -> Balancer<TestMember> {
    Balancer::builder()
        .policy(policy)
        .min_alive_ratio(ratio)
        .seed(11)
        .source(source.clone())
        .build()
        .expect("a valid configuration")
}

/// Enough picks for every policy to look at every member of a small snapshot: whole rotations
/// for round robin and least loaded, and with power of two, a miss probability far below 1e-15
/// per member (and a fixed seed makes it repeatable anyway).
fn pick_rounds(b: &Balancer<TestMember>, n: usize) {
    for _ in 0..20 * n {
        b.pick().expect("some member is alive");
    }
    // A refresh these picks asked for lands on the refresher's thread.
    settle(b);
}

#[test]
fn refresh_below_ratio() {
    for policy in POLICIES {
        let members = make(10);
        let source = SharedSource::new(members.clone());
        let b = balancer(policy, 0.8, &source);
        assert_eq!(source.calls(), 1, "build asks the source once");
        assert_eq!(b.stats().original, 10);

        // 8 of 10 alive is not below 0.8.
        members[3].kill();
        members[7].kill();
        pick_rounds(&b, 10);
        let stats = b.stats();
        assert_eq!(stats.refreshes, 0, "{policy:?}: 8/10 is not below 0.8");
        assert_eq!(stats.generation, 0, "{policy:?}");
        assert_eq!(stats.skipped_dead, 2, "{policy:?}");
        assert_eq!(stats.alive, 8, "{policy:?}");
        assert_eq!(source.calls(), 1, "{policy:?}");

        // 7 of 10 is.
        members[5].kill();
        pick_rounds(&b, 10);
        let stats = b.stats();
        assert_eq!(stats.refreshes, 1, "{policy:?}: exactly one refresh");
        assert_eq!(stats.generation, 1, "{policy:?}");
        assert_eq!(source.calls(), 2, "{policy:?}");
        assert_eq!(
            stats.members, 10,
            "{policy:?}: the source still returns all ten"
        );
        assert_eq!(
            stats.original, 7,
            "{policy:?}: the live size is the new original"
        );
        assert_eq!(stats.alive, 7, "{policy:?}");

        // Against the new original of 7: 6 alive is not below 5.6, 5 is.
        members[0].kill();
        pick_rounds(&b, 10);
        assert_eq!(b.stats().generation, 1, "{policy:?}: 6/7 is not below 0.8");
        members[1].kill();
        pick_rounds(&b, 10);
        let stats = b.stats();
        assert_eq!(stats.generation, 2, "{policy:?}: 5/7 is below 0.8");
        assert_eq!(stats.refreshes, 2, "{policy:?}");
        assert_eq!(stats.original, 5, "{policy:?}");
        assert_eq!(source.calls(), 3, "{policy:?}");
    }
}

#[test]
fn ratio_one_refreshes_on_the_first_death() {
    let members = make(4);
    let source = SharedSource::new(members.clone());
    let b = balancer(Policy::RoundRobin, 1.0, &source);
    members[2].kill();
    pick_rounds(&b, 4);
    assert_eq!(b.stats().generation, 1);
    assert_eq!(b.stats().original, 3);
}

#[test]
fn members_dead_at_refresh_are_not_counted_again() {
    let members = make(10);
    let source = SharedSource::new(members.clone());
    let b = balancer(Policy::RoundRobin, 0.8, &source);
    for m in &members[..3] {
        m.kill();
    }
    pick_rounds(&b, 10);
    assert_eq!(b.stats().generation, 1);
    let skipped = b.stats().skipped_dead;
    pick_rounds(&b, 10);
    let stats = b.stats();
    assert_eq!(
        stats.generation, 1,
        "the dead at refresh do not trigger another"
    );
    assert_eq!(stats.skipped_dead, skipped, "nor are they found dead again");
}

fn refresh_once_under_concurrent_pickers(policy: Policy, pickers: usize, round: usize) {
    let members = make(64);
    let source = SharedSource::new(members.clone());
    let b = balancer(policy, 0.8, &source);
    assert_eq!(source.calls(), 1);

    // Half of them die at once: far below the ratio, found by whichever pickers look first.
    for m in members.iter().step_by(2) {
        m.kill();
    }
    let barrier = Barrier::new(pickers);
    thread::scope(|s| {
        for _ in 0..pickers {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..2_000 {
                    let p = b.pick().expect("half the members are alive");
                    assert!(p.id % 2 == 1, "{policy:?} dealt dead member {}", p.id);
                }
            });
        }
    });
    settle(&b);

    let stats = b.stats();
    assert_eq!(
        source.calls(),
        2,
        "{policy:?}, round {round}: one refresh after the build"
    );
    assert_eq!(stats.refreshes, 1, "{policy:?}, round {round}");
    assert_eq!(stats.generation, 1, "{policy:?}, round {round}");
    assert_eq!(stats.original, 32, "{policy:?}, round {round}");
    // The 13th death crosses 0.8 of 64; pickers still on the old snapshot may find a few more
    // before the new one lands; the rest are known dead when the new snapshot is built.
    assert!(
        (13..=32).contains(&stats.skipped_dead),
        "{policy:?}, round {round}: {} deaths counted",
        stats.skipped_dead
    );
}

#[test]
fn refresh_runs_once_under_concurrent_pickers() {
    for round in 0..10 {
        for policy in POLICIES {
            refresh_once_under_concurrent_pickers(policy, 4, round);
        }
    }
}

#[test]
fn refresh_runs_once_when_every_member_dies_under_concurrent_pickers() {
    const PICKERS: usize = 4;
    for round in 0..10 {
        for policy in POLICIES {
            let old = make(32);
            let source = SharedSource::new(old.clone());
            let b = balancer(policy, 0.8, &source);
            let fresh = make_from(100, 32);
            source.set(fresh.clone());
            old.iter().for_each(TestMember::kill);

            let barrier = Barrier::new(PICKERS);
            let dealt = AtomicUsize::new(0);
            thread::scope(|s| {
                for _ in 0..PICKERS {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..500 {
                            match b.pick() {
                                Ok(p) => {
                                    assert!(p.id >= 100, "{policy:?} dealt dead member {}", p.id);
                                    dealt.fetch_add(1, SeqCst);
                                }
                                // A picker still on the old snapshot while another refreshes.
                                Err(PickError::NoMembers) => {}
                                Err(e) => panic!("{policy:?}: unexpected {e:?}"),
                            }
                        }
                    });
                }
            });

            settle(&b);
            assert_eq!(source.calls(), 2, "{policy:?}, round {round}");
            assert_eq!(b.stats().refreshes, 1, "{policy:?}, round {round}");
            assert_eq!(ids(&b.members()), ids(&fresh));
            // Pickers that looked before the refresh landed were told NoMembers; every one
            // after it is dealt a fresh member.
            assert!(b.pick().unwrap().id >= 100);
            let _ = dealt.load(SeqCst);
        }
    }
}

/// A pick that finds everyone dead asks for a refresh and answers from the snapshot it holds:
/// `NoMembers`, unless the refresh has already been stored by the time it has looked, in which
/// case it looks once more there, with the same turn. Either way, once the refresh has landed,
/// every pick deals from the refreshed members.
#[test]
fn pick_that_finds_everyone_dead_retries_on_the_refreshed_snapshot() {
    for policy in POLICIES {
        let old = make(3);
        let source = SharedSource::new(old.clone());
        let b = balancer(policy, 0.8, &source);
        source.set(make_from(10, 2));
        old.iter().for_each(TestMember::kill);

        match b.pick() {
            Ok(p) => {
                assert!([10, 11].contains(&p.id), "{policy:?}");
                assert_eq!(p.generation(), 1, "{policy:?}: retried on the new snapshot");
            }
            Err(e) => assert_eq!(e, PickError::NoMembers, "{policy:?}"),
        }
        settle(&b);
        let p = b.pick().expect("the refreshed snapshot has live members");
        assert!([10, 11].contains(&p.id), "{policy:?}");
        assert_eq!(p.generation(), 1, "{policy:?}");
        drop(p);
        assert_eq!(b.stats().refreshes, 1, "{policy:?}");
    }
}

/// A member whose first liveness check refreshes its balancer: the refresh lands while a pick
/// is looking at the old snapshot, before the pick gives up on it.
#[derive(Clone, Debug)]
struct Refreshing {
    id: u32,
    alive: bool,
    on_check: Arc<Mutex<Option<Balancer<Refreshing>>>>,
}

impl croupier::Member for Refreshing {
    fn is_alive(&self) -> bool {
        let b = self.on_check.lock().unwrap().take();
        if let Some(b) = b {
            b.refresh();
        }
        self.alive
    }
}

/// The race that `pick_that_finds_everyone_dead_retries_on_the_refreshed_snapshot` cannot
/// stage, staged: the new snapshot is stored while the pick scans the old one, whose members
/// are all dead. The pick (every policy, and `pick_for`) then looks once more, at the new one,
/// and deals from it instead of answering `NoMembers`.
#[test]
fn a_pick_that_finds_everyone_dead_looks_again_at_a_snapshot_stored_meanwhile() {
    // `None`: `pick_for` (with the default policy).
    for policy in POLICIES.map(Some).into_iter().chain([None]) {
        let how = policy.map_or_else(|| "pick_for".to_owned(), |p| format!("{p:?}"));
        let on_check = Arc::new(Mutex::new(None));
        let dead = |id| Refreshing {
            id,
            alive: false,
            on_check: Arc::clone(&on_check),
        };
        let next = Refreshing {
            id: 10,
            alive: true,
            on_check: Arc::default(),
        };
        let members = Arc::new(Mutex::new(vec![dead(0), dead(1), dead(2)]));
        let source = {
            let members = Arc::clone(&members);
            move || members.lock().unwrap().clone()
        };
        let b = Balancer::builder()
            .policy(policy.unwrap_or_default())
            .source(source)
            .build()
            .unwrap();
        *members.lock().unwrap() = vec![next];
        *on_check.lock().unwrap() = Some(b.clone());

        let picked = match policy {
            Some(_) => b.pick().map(|p| (p.id, p.generation())),
            None => b.pick_for("k").map(|p| (p.id, p.generation())),
        };
        assert!(
            on_check.lock().unwrap().is_none(),
            "{how}: the refresh was staged"
        );
        // Generation 1, or 2 if the refresh this pick asked for (every member dead) has
        // landed on the refresher's thread in the meantime: either is newer than the pick's.
        let (id, generation) = picked.unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(id, 10, "{how}: dealt from a snapshot stored meanwhile");
        assert!(generation >= 1, "{how}: generation {generation}");
        settle(&b);
    }
}

/// `BalancerStats::picks` counts calls to `pick()`: one that retried on a refreshed snapshot
/// takes one turn, not two.
#[test]
fn stats_counts_a_pick_that_retried_after_refresh_once() {
    let old = make(3);
    let source = SharedSource::new(old.clone());
    let b = balancer(Policy::RoundRobin, 0.8, &source);
    source.set(make_from(10, 2));
    old.iter().for_each(TestMember::kill);

    let _ = b.pick();
    settle(&b);
    assert_eq!(b.stats().picks, 1, "one call to pick()");
    b.pick().expect("the refreshed snapshot has live members");
    assert_eq!(b.stats().picks, 2);
}

#[test]
fn refresh_returns_live_count() {
    let members = make(5);
    let source = SharedSource::new(members.clone());
    let b = balancer(Policy::RoundRobin, 0.8, &source);

    assert_eq!(b.refresh(), 5);
    members[0].kill();
    members[3].kill();
    assert_eq!(b.refresh(), 3, "dead members are not counted");
    let stats = b.stats();
    assert_eq!(stats.members, 5, "but they are loaded");
    assert_eq!((stats.original, stats.alive), (3, 3));

    source.set(make_from(20, 7));
    assert_eq!(b.refresh(), 7);
    source.set(Vec::new());
    assert_eq!(b.refresh(), 0);
    assert_eq!(b.pick().unwrap_err(), PickError::NoMembers);
    assert_eq!(b.stats().generation, 4);
    assert_eq!(b.stats().refreshes, 4);
    assert_eq!(source.calls(), 5);
}

#[test]
fn refresh_loads_the_source_in_order() {
    let source = SharedSource::new(make(3));
    let b = balancer(Policy::RoundRobin, 0.8, &source);
    let next: Vec<_> = make_from(40, 4).into_iter().rev().collect();
    source.set(next.clone());
    assert_eq!(
        ids(&b.members()),
        [0, 1, 2],
        "nothing changes before a refresh"
    );

    b.refresh();
    assert_eq!(ids(&b.members()), ids(&next));
    let dealt: Vec<u32> = (0..4).map(|_| b.pick().unwrap().id).collect();
    let mut sorted = dealt.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [40, 41, 42, 43]);
}

#[test]
fn a_pick_after_refresh_returns_deals_only_from_the_new_members() {
    for policy in POLICIES {
        let source = SharedSource::new(make(4));
        let b = balancer(policy, 0.8, &source);
        for g in 1..20_u32 {
            source.set(make_from(g * 10, 4));
            b.refresh();
            for _ in 0..8 {
                let p = b.pick().unwrap();
                assert_eq!(p.id / 10, g, "{policy:?}");
                assert_eq!(p.generation(), u64::from(g), "{policy:?}");
            }
        }
    }
}

#[test]
fn disabled_member_stays_disabled_across_refresh_while_the_source_returns_it() {
    let members = make(3);
    let source = SharedSource::new(members.clone());
    let b = balancer(Policy::RoundRobin, 0.8, &source);
    b.disable(&members[1]);

    b.refresh();
    assert_eq!(b.stats().disabled, 1);
    assert!((0..9).all(|_| b.pick().unwrap().id != 1));

    // Dropped by the source: forgotten. Returned again later: enabled.
    source.set(vec![members[0].clone(), members[2].clone()]);
    b.refresh();
    assert_eq!(b.stats().disabled, 0);
    source.set(members.clone());
    b.refresh();
    assert_eq!(b.stats().disabled, 0);
    assert!((0..9).any(|_| b.pick().unwrap().id == 1));
}

#[test]
fn disabling_a_member_before_the_source_returns_it_applies_at_refresh() {
    let source = SharedSource::new(make(2));
    let b = balancer(Policy::RoundRobin, 0.8, &source);
    let newcomer = TestMember::new(7);
    assert!(!b.disable(&newcomer), "not in the snapshot yet");
    source.set(vec![TestMember::new(0), newcomer.clone()]);
    b.refresh();
    assert_eq!(b.stats().disabled, 1);
    assert!((0..6).all(|_| b.pick().unwrap().id == 0));
}

#[test]
fn notify_dead_triggers_refresh() {
    let members = make(5);
    let source = SharedSource::new(members.clone());
    let b = balancer(Policy::RoundRobin, 0.8, &source);

    members[0].kill();
    assert!(b.notify_dead(&members[0]));
    assert!(!b.notify_dead(&members[0]), "a death is learnt once");
    assert!(!b.notify_dead(&TestMember::new(99)), "not a member");
    let stats = b.stats();
    assert_eq!(
        (stats.alive, stats.generation, stats.skipped_dead),
        (4, 0, 1)
    );
    assert_eq!(source.calls(), 1, "4/5 is not below 0.8");

    // No pick needed: the notice itself crosses the ratio.
    members[1].kill();
    assert!(b.notify_dead(&members[1]));
    let stats = b.stats();
    assert_eq!(stats.generation, 1);
    assert_eq!(stats.refreshes, 1);
    assert_eq!(source.calls(), 2);
    assert_eq!(stats.original, 3);

    // Already known dead at the refresh: nothing to learn.
    assert!(!b.notify_dead(&members[1]));
}

#[test]
fn notify_dead_from_many_threads_refreshes_once() {
    const THREADS: usize = 8;
    for round in 0..20 {
        let members = make(64);
        let source = SharedSource::new(members.clone());
        let b = balancer(Policy::RoundRobin, 0.8, &source);
        let dying: Vec<_> = members.iter().step_by(2).cloned().collect();
        dying.iter().for_each(TestMember::kill);

        let barrier = &Barrier::new(THREADS);
        let learnt = &AtomicUsize::new(0);
        let b = &b;
        thread::scope(|s| {
            for chunk in dying.chunks(dying.len() / THREADS) {
                s.spawn(move || {
                    barrier.wait();
                    for m in chunk {
                        if b.notify_dead(m) {
                            learnt.fetch_add(1, SeqCst);
                        }
                    }
                });
            }
        });

        assert_eq!(
            source.calls(),
            2,
            "round {round}: one refresh after the build"
        );
        let stats = b.stats();
        assert_eq!(stats.generation, 1, "round {round}");
        assert_eq!(stats.original, 32, "round {round}");
        // Notices on the old snapshot count; those after the refresh find the death known.
        let learnt = learnt.load(SeqCst);
        assert!(
            (13..=32).contains(&learnt),
            "round {round}: {learnt} notices learnt"
        );
        assert_eq!(stats.skipped_dead, learnt as u64, "round {round}");
    }
}

#[test]
fn notify_dead_is_counted_once_with_picks() {
    let members = make(10);
    let source = SharedSource::new(members.clone());
    let b = balancer(Policy::RoundRobin, 0.5, &source);
    members[4].kill();
    assert!(b.notify_dead(&members[4]));
    pick_rounds(&b, 10);
    assert_eq!(b.stats().skipped_dead, 1, "a pick does not count it again");
    members[6].kill();
    pick_rounds(&b, 10);
    assert!(!b.notify_dead(&members[6]), "a pick already found it");
    assert_eq!(b.stats().skipped_dead, 2);
}

#[test]
fn refresh_after_a_panicking_source_still_runs() {
    let members = make(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let fail_next = Arc::new(Mutex::new(false));
    let b = {
        let members = members.clone();
        let calls = Arc::clone(&calls);
        let fail_next = Arc::clone(&fail_next);
        Balancer::builder()
            .source(move || {
                calls.fetch_add(1, SeqCst);
                let fail = std::mem::take(&mut *fail_next.lock().unwrap());
                assert!(!fail, "source failure (expected by the test)");
                members.clone()
            })
            .build()
            .unwrap()
    };

    *fail_next.lock().unwrap() = true;
    for m in &members[..3] {
        m.kill();
    }
    // The source runs on the refresher's thread: its panic never reaches a picker.
    let outcome = catch_unwind(AssertUnwindSafe(|| pick_rounds(&b, 10)));
    assert!(outcome.is_ok(), "the source's panic reached a picker");
    assert_eq!(calls.load(SeqCst), 2);
    assert_eq!(b.stats().generation, 0);
    // The snapshot stays below the ratio, but deaths already counted ask for nothing more.
    pick_rounds(&b, 10);
    assert_eq!(
        calls.load(SeqCst),
        2,
        "picks past deaths already counted refreshed"
    );
    assert_eq!(b.stats().generation, 0);

    // The single-flight flag was released: the next death below the ratio refreshes.
    members[3].kill();
    pick_rounds(&b, 10);
    assert_eq!(calls.load(SeqCst), 3);
    assert_eq!(b.stats().generation, 1);
    assert_eq!(b.stats().original, 6);
}

/// Members whose `is_alive` and `PartialEq` can be made to stop at a gate, so that a test can
/// hold a picker in the middle of a pick, or a writer in the middle of `disable`, and line up
/// a race step by step. A gate is a pair of flags spun on with `yield_now`: no sleeps.
mod gated {
    use std::{
        sync::{
            atomic::{AtomicBool, Ordering::SeqCst},
            Arc,
        },
        thread,
        time::{Duration, Instant},
    };

    use croupier::Member;

    /// How long a gate waits before it fails the test instead of hanging it.
    const LIMIT: Duration = Duration::from_secs(10);

    #[derive(Debug, Default)]
    pub struct Gate {
        armed: AtomicBool,
        reached: AtomicBool,
        open: AtomicBool,
    }

    impl Gate {
        pub fn arm(&self) {
            self.armed.store(true, SeqCst);
        }

        /// Called by the gated code: if armed, disarms, says so, and waits to be let through.
        fn pass(&self) {
            if self.armed.swap(false, SeqCst) {
                self.reached.store(true, SeqCst);
                let deadline = Instant::now() + LIMIT;
                while !self.open.load(SeqCst) {
                    assert!(Instant::now() < deadline, "a gate was never opened");
                    thread::yield_now();
                }
            }
        }

        /// Called by the gated code: if armed, disarms and says so, without waiting.
        fn signal(&self) {
            if self.armed.swap(false, SeqCst) {
                self.reached.store(true, SeqCst);
            }
        }

        pub fn wait_reached(&self) {
            let deadline = Instant::now() + LIMIT;
            while !self.reached.load(SeqCst) {
                assert!(Instant::now() < deadline, "a gate was never reached");
                thread::yield_now();
            }
        }

        pub fn open(&self) {
            self.open.store(true, SeqCst);
        }
    }

    #[derive(Clone, Debug)]
    pub struct GatedMember {
        pub id: u32,
        alive: Arc<AtomicBool>,
        /// Stops `is_alive` until opened.
        pub stop: Arc<Gate>,
        /// Signals a call to `is_alive` that answers true.
        pub seen_alive: Arc<Gate>,
        /// Stops `==` until opened.
        pub eq_stop: Arc<Gate>,
        /// Stops the drop of a clone until opened.
        pub drop_stop: Arc<Gate>,
    }

    impl GatedMember {
        pub fn new(id: u32, seen_alive: &Arc<Gate>) -> Self {
            Self {
                id,
                alive: Arc::new(AtomicBool::new(true)),
                stop: Arc::default(),
                seen_alive: Arc::clone(seen_alive),
                eq_stop: Arc::default(),
                drop_stop: Arc::default(),
            }
        }

        pub fn kill(&self) {
            self.alive.store(false, SeqCst);
        }
    }

    impl Drop for GatedMember {
        fn drop(&mut self) {
            self.drop_stop.pass();
        }
    }

    impl PartialEq for GatedMember {
        fn eq(&self, other: &Self) -> bool {
            self.eq_stop.pass();
            other.eq_stop.pass();
            self.id == other.id
        }
    }

    impl Member for GatedMember {
        fn is_alive(&self) -> bool {
            self.stop.pass();
            let alive = self.alive.load(SeqCst);
            if alive {
                self.seen_alive.signal();
            }
            alive
        }
    }
}

/// A ratio-triggered refresh must not be lost because a flight for an older snapshot is
/// still under way.
///
/// Picker X, holding generation 0, finds it below the ratio and hands the flight to the
/// refresher, which waits for the writer lock (held here by a `disable`). Meanwhile picker Y
/// finds generation 1 below the ratio and joins the flight under way. Were Y's request lost,
/// both deaths it found would be counted and no later pick would find them "newly" dead:
/// generation 1 would stay below the ratio. The flight must look again for Y's request
/// before it lands.
///
/// Then, while that flight has reloaded (generation 2) but not yet landed, picker Z finds
/// generation 2 below the ratio too: the flight must look again for Z's request before it
/// lands, or generation 2 would stay below the ratio.
///
/// Every step is staged and checked: each picker's deaths are counted, the flight is still
/// under way when Y and Z join it, and the generation stored at each step is the expected one.
#[test]
fn a_ratio_refresh_is_not_lost_to_a_stale_refresh_in_flight() {
    use gated::GatedMember;

    for round in 0..3 {
        let seen = Arc::default();
        let old: Vec<_> = (0..8).map(|i| GatedMember::new(i, &seen)).collect();
        let new: Vec<_> = (10..18).map(|i| GatedMember::new(i, &seen)).collect();
        let current = Arc::new(Mutex::new(old.clone()));
        let b = {
            let current = Arc::clone(&current);
            Balancer::builder()
                .policy(Policy::RoundRobin)
                .min_alive_ratio(0.8)
                .source(move || current.lock().unwrap().clone())
                .build()
                .unwrap()
        };
        let probe = GatedMember::new(99, &Arc::default());

        thread::scope(|s| {
            // X starts a pick on generation 0 and stops inside it, at its first look.
            old[0].stop.arm();
            let x = s.spawn(|| drop(b.pick()));
            old[0].stop.wait_reached();

            // Generation 1: eight new live members.
            *current.lock().unwrap() = new.clone();
            assert_eq!(b.refresh(), 8);

            // A writer takes the lock and stops inside it.
            probe.eq_stop.arm();
            let d = s.spawn(|| b.disable(&probe));
            probe.eq_stop.wait_reached();

            // X finds two of generation 0 dead (6 of 8 is below 0.8): its turn was 0, and it
            // passed over two members, so its stripe stands at 3 after it.
            old[0].kill();
            old[1].kill();
            old[0].stop.open();
            x.join().unwrap();
            assert_eq!(
                b.stats().skipped_dead,
                2,
                "round {round}: X counted its deaths"
            );
            assert!(b.is_refreshing(), "round {round}: X's flight is under way");

            // Y picks on a cursor stripe of its own (or X's, if they share one): one pick of
            // the healthy generation 1 shows where Y's turns stand. Then Y's next turn lands on
            // the entry after that one, and finds it and the next dead: below the ratio too.
            let at = b.pick().expect("generation 1 is alive").index();
            let entry = |k: usize| (at + k) % new.len();
            new[entry(1)].kill();
            new[entry(2)].kill();
            let y = b.pick().expect("six of generation 1 are alive");
            assert_eq!(
                y.index(),
                entry(3),
                "round {round}: Y passed over the two it found dead"
            );
            assert_eq!(y.generation(), 1);
            drop(y);
            let stats = b.stats();
            assert_eq!(stats.skipped_dead, 4, "round {round}: Y counted its deaths");
            assert_eq!(
                stats.generation, 1,
                "round {round}: the flight has not landed"
            );
            assert!(
                b.is_refreshing(),
                "round {round}: Y joined the flight under way"
            );

            // The flight takes the lock, reloads (generation 2) and, before it lands, drops
            // generation 1: the drop of new[0]'s copy stops there.
            new[0].drop_stop.arm();
            probe.eq_stop.open();
            assert!(!d.join().unwrap(), "the probe is not a member");
            new[0].drop_stop.wait_reached();
            assert_eq!(
                b.stats().generation,
                2,
                "round {round}: Y's request was served"
            );
            assert!(
                b.is_refreshing(),
                "round {round}: the flight has not landed"
            );

            // Z, on Y's thread and stripe, takes the turn after Y's (Y passed over two) in
            // generation 2 and finds two more dead: 4 of 6 is below the ratio. The flight
            // must look again before landing.
            new[entry(4)].kill();
            new[entry(5)].kill();
            let z = b.pick().expect("four of generation 2 are alive");
            assert_eq!(
                (z.id, z.generation()),
                (new[entry(6)].id, 2),
                "round {round}"
            );
            drop(z);
            assert_eq!(
                b.stats().skipped_dead,
                6,
                "round {round}: Z counted its deaths"
            );
            new[0].drop_stop.open();
        });

        settle(&b);
        let stats = b.stats();
        assert_eq!(
            stats.generation, 3,
            "round {round}: a trigger made during the flight was lost: {stats:?}"
        );
        assert_eq!((stats.original, stats.alive), (4, 4), "round {round}");
    }
}

/// A refresh whose source is slow (here: stopped at a gate) never makes a picker wait: picks
/// on other threads go on dealing from the old snapshot the whole time, and a pick that
/// begins after the refresh returned deals from the new one.
#[test]
fn slow_source_does_not_block_pickers() {
    let members = make(4);
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let entered_tx = Mutex::new(entered_tx);
    let calls = AtomicUsize::new(0);
    let b = {
        let fresh = make_from(10, 2);
        let members = members.clone();
        Balancer::builder()
            .source(move || {
                if calls.fetch_add(1, SeqCst) == 0 {
                    return members.clone();
                }
                entered_tx.lock().unwrap().send(()).unwrap();
                // Bounded, so that a regression fails instead of hanging.
                let _ = gate
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(10));
                fresh.clone()
            })
            .build()
            .unwrap()
    };
    thread::scope(|s| {
        let refresher = s.spawn(|| b.refresh());
        entered.recv().unwrap();
        // The source is inside the refresh, holding the writer lock: picks go on.
        let picker = s.spawn(|| {
            for _ in 0..1_000 {
                let p = b.pick().expect("the old snapshot is alive");
                assert!(p.id < 4, "dealt {} before the refresh landed", p.id);
            }
        });
        picker.join().expect("pickers were not held up");
        assert_eq!(b.stats().generation, 0, "the refresh has not landed yet");
        release.send(()).unwrap();
        assert_eq!(refresher.join().unwrap(), 2);
    });
    assert!((0..10).all(|_| b.pick().unwrap().id >= 10));
}

/// A balancer is refreshed only when it asks: one left below the ratio by a failed refresh
/// is not refreshed because another balancer's refresh ran meanwhile.
#[test]
fn a_balancer_is_refreshed_only_when_it_asks() {
    let members = make(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let fail_next = Arc::new(Mutex::new(true));
    let failing = {
        let (members, calls, fail_next) =
            (members.clone(), Arc::clone(&calls), Arc::clone(&fail_next));
        Balancer::builder()
            .source(move || {
                if calls.fetch_add(1, SeqCst) > 0 {
                    let fail = std::mem::take(&mut *fail_next.lock().unwrap());
                    assert!(!fail, "source failure (expected by the test)");
                }
                members.clone()
            })
            .build()
            .unwrap()
    };
    for m in &members[..3] {
        m.kill();
    }
    pick_rounds(&failing, 10);
    assert_eq!(calls.load(SeqCst), 2, "the refresh ran, and failed");
    assert_eq!(failing.stats().generation, 0);

    // Another balancer crosses its ratio and is refreshed.
    let others = make(4);
    let source = SharedSource::new(others.clone());
    let other = balancer(Policy::RoundRobin, 0.8, &source);
    others[0].kill();
    pick_rounds(&other, 4);
    assert_eq!(
        other.stats().generation,
        1,
        "the other balancer was refreshed"
    );
    settle(&failing);
    assert_eq!(
        calls.load(SeqCst),
        2,
        "the failed balancer was refreshed without asking"
    );
    assert_eq!(failing.stats().generation, 0);
}

/// A source that returns `members` at the build and, at every later call, says so on
/// `entered` and then waits for the test to open `gate` (at most 10 s, so that a regression
/// fails instead of hanging; a test that panics drops its sender, which opens the gate too).
fn gated_source(
    members: Vec<TestMember>,
) -> (
    impl Fn() -> Vec<TestMember> + Send + Sync + 'static,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (entered_tx, gate) = (Mutex::new(entered_tx), Mutex::new(gate));
    let calls = AtomicUsize::new(0);
    let source = move || {
        if calls.fetch_add(1, SeqCst) > 0 {
            let _ = entered_tx.lock().unwrap().send(());
            let _ = gate
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(10));
        }
        members.clone()
    };
    (source, entered, release)
}

/// Picks until the balancer has asked for a ratio refresh (bounded).
fn pick_until_refreshing(b: &Balancer<TestMember>) {
    for _ in 0..1_000 {
        if b.is_refreshing() || b.stats().generation > 0 {
            return;
        }
        b.pick().expect("some member is alive");
    }
    panic!("no refresh was asked for");
}

/// Each balancer's refreshes run apart from every other's: a source that blocks holds up its
/// own balancer's refresh only, and another balancer's refresh lands meanwhile.
#[test]
fn a_slow_source_does_not_delay_another_balancers_refresh() {
    let slow_members = make(4);
    let (source, entered, release) = gated_source(slow_members.clone());
    let slow = Balancer::builder().source(source).build().unwrap();
    let quick_members = make(4);
    let quick = balancer(
        Policy::RoundRobin,
        0.8,
        &SharedSource::new(quick_members.clone()),
    );

    // The slow balancer's refresh starts, and blocks in its source.
    slow_members[0].kill();
    pick_until_refreshing(&slow);
    entered
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the slow balancer's refresh started");

    // The quick one's lands while the slow one's source is still blocked.
    quick_members[0].kill();
    pick_until_refreshing(&quick);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while quick.stats().generation == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the quick balancer's refresh waited for the slow balancer's source"
        );
        thread::yield_now();
    }
    assert!(slow.is_refreshing(), "the slow source is still blocked");
    assert_eq!(slow.stats().generation, 0);

    release.send(()).unwrap();
    settle(&slow);
    assert_eq!(slow.stats().generation, 1);
}

/// The same on a tokio runtime, where a balancer built on it refreshes on it: a source that
/// blocks holds one of the runtime's blocking threads, not the runtime, and not another
/// balancer's refresh.
#[tokio::test]
async fn a_slow_source_does_not_delay_another_balancers_refresh_on_a_runtime() {
    let slow_members = make(4);
    let (source, entered, release) = gated_source(slow_members.clone());
    let slow = Balancer::builder().source(source).build().unwrap();
    let quick_members = make(4);
    let quick = balancer(
        Policy::RoundRobin,
        0.8,
        &SharedSource::new(quick_members.clone()),
    );

    slow_members[0].kill();
    pick_until_refreshing(&slow);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while entered.try_recv().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow balancer's refresh never started"
        );
        tokio::task::yield_now().await;
    }

    quick_members[0].kill();
    pick_until_refreshing(&quick);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while quick.stats().generation == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the quick balancer's refresh waited for the slow balancer's source"
        );
        tokio::task::yield_now().await;
    }
    assert!(slow.is_refreshing(), "the slow source is still blocked");

    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while slow.stats().generation == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow balancer's refresh never landed"
        );
        tokio::task::yield_now().await;
    }
}
