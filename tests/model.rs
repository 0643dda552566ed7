//! Random sequences of operations against a model of the balancer, for each policy.
//!
//! The model replays what the balancer documents, on its own: the snapshot each refresh
//! builds (members dead at build are not original), which members a pick looks at and finds
//! dead (each counted once), the ratio rule that triggers a refresh, the cursor's turns and
//! the extra turns round robin passes over, `max_load` and `Overloaded`, disabled members,
//! push notices of death, and drains. It never asks the balancer whether something happened;
//! it predicts it and compares.
//!
//! Round robin and least loaded are replayed exactly: the member each pick hands out, and the
//! members it finds dead on the way. Power of two samples by a hash the model does not
//! replay; there the model checks what holds whatever the samples: the member is usable, it is
//! never the strictly heaviest when every member is usable, the deaths counted are real ones,
//! and the ratio rule, computed by the model from those counts, is obeyed.
//!
//! While a pick runs, the source holds back the refresher, so that a refresh the pick asks for
//! lands only after it has answered; the model then waits for it and replays it.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering::SeqCst},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{ids, settle, SharedSource, TestMember};
use croupier::{Balancer, PickError, Policy, Source, Wait};
use proptest::{prelude::*, sample::Index};

#[derive(Debug, Clone)]
enum Op {
    Kill(Index),
    Revive(Index),
    SetLoad(Index, usize),
    /// New source list: some known members (by index into all members ever made, duplicates
    /// dropped), then `fresh` new live ones.
    Replace {
        keep: Vec<Index>,
        fresh: usize,
    },
    Pick,
    Refresh,
    Disable(Index),
    Enable(Index),
    /// `notify_dead` for a member that is dead.
    NotifyDead(Index),
    /// A pick while `apply_within` runs.
    PickWhileDraining,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<Index>().prop_map(Op::Kill),
        2 => any::<Index>().prop_map(Op::Revive),
        3 => (any::<Index>(), 0..4_usize).prop_map(|(i, l)| Op::SetLoad(i, l)),
        2 => (prop::collection::vec(any::<Index>(), 0..5), 0..4_usize)
            .prop_map(|(keep, fresh)| Op::Replace { keep, fresh }),
        10 => Just(Op::Pick),
        1 => Just(Op::Refresh),
        2 => any::<Index>().prop_map(Op::Disable),
        1 => any::<Index>().prop_map(Op::Enable),
        1 => any::<Index>().prop_map(Op::NotifyDead),
        1 => Just(Op::PickWhileDraining),
    ]
}

/// The test's source: the shared list, and a hold that keeps the refresher waiting while a
/// pick runs.
#[derive(Clone)]
struct HeldSource {
    inner: SharedSource,
    hold: Arc<AtomicBool>,
}

impl Source<TestMember> for HeldSource {
    fn members(&self) -> Vec<TestMember> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.hold.load(SeqCst) {
            assert!(Instant::now() < deadline, "the hold was never released");
            std::thread::yield_now();
        }
        self.inner.members()
    }
}

/// One entry of the modelled snapshot.
#[derive(Debug, Clone)]
struct Entry {
    id: u32,
    /// Found dead (or dead at build): never counted again.
    marked: bool,
}

struct Model {
    policy: Policy,
    ratio: f64,
    max_load: usize,
    /// Every member ever made; a member's id is its index here.
    all: Vec<TestMember>,
    alive: Vec<bool>,
    load: Vec<usize>,
    source: HeldSource,
    snapshot: Vec<Entry>,
    original: usize,
    /// Members of `original` found dead since the snapshot was built.
    dead: usize,
    /// The balancer's list of disabled members.
    disabled: Vec<u32>,
    generation: u64,
    /// The cursor's turns on this thread's stripe, extra ones included.
    turns: usize,
    /// This thread's cursor stripe plus the balancer's seed: least loaded starts its scan
    /// that many entries on.
    stripe: usize,
    picks: u64,
    skipped_dead: u64,
    overloaded: u64,
    refreshes: u64,
}

impl Model {
    fn new(policy: Policy, ratio: f64, max_load: usize, initial: usize) -> Self {
        let mut model = Self {
            policy,
            ratio,
            max_load,
            all: Vec::new(),
            alive: Vec::new(),
            load: Vec::new(),
            source: HeldSource {
                inner: SharedSource::default(),
                hold: Arc::default(),
            },
            snapshot: Vec::new(),
            original: 0,
            dead: 0,
            disabled: Vec::new(),
            generation: 0,
            turns: 0,
            // The balancer is seeded with `initial`, which moves least loaded's start on too.
            stripe: this_threads_stripe() + initial,
            picks: 0,
            skipped_dead: 0,
            overloaded: 0,
            refreshes: 0,
        };
        let first = model.fresh(initial);
        model.source.inner.set(first);
        model.build_snapshot();
        model
    }

    fn fresh(&mut self, n: usize) -> Vec<TestMember> {
        (0..n)
            .map(|_| {
                let m = TestMember::new(u32::try_from(self.all.len()).unwrap());
                self.all.push(m.clone());
                self.alive.push(true);
                self.load.push(0);
                m
            })
            .collect()
    }

    /// The member `i` picks among all members ever made; none before the first is made.
    fn member(&self, i: &Index) -> Option<(usize, TestMember)> {
        if self.all.is_empty() {
            return None;
        }
        let i = i.index(self.all.len());
        Some((i, self.all[i].clone()))
    }

    fn is_alive(&self, id: u32) -> bool {
        self.alive[id as usize]
    }

    fn is_disabled(&self, id: u32) -> bool {
        self.disabled.contains(&id)
    }

    /// Alive and enabled: may be handed out if its load allows.
    fn is_live(&self, id: u32) -> bool {
        self.is_alive(id) && !self.is_disabled(id)
    }

    fn is_usable(&self, id: u32) -> bool {
        self.is_live(id) && self.load[id as usize] < self.max_load
    }

    /// The snapshot a refresh builds from the source as it stands.
    fn build_snapshot(&mut self) {
        self.snapshot = ids(&self.source.inner.get())
            .into_iter()
            .map(|id| Entry {
                id,
                marked: !self.alive[id as usize],
            })
            .collect();
        self.original = self.snapshot.iter().filter(|e| !e.marked).count();
        self.dead = 0;
    }

    /// What any reload does: a new snapshot, disabled members the source no longer returns
    /// forgotten, the generation moved on.
    fn reload(&mut self) {
        self.build_snapshot();
        let snapshot = &self.snapshot;
        self.disabled
            .retain(|id| snapshot.iter().any(|e| e.id == *id));
        self.generation += 1;
        self.refreshes += 1;
    }

    fn below_ratio(&self) -> bool {
        self.original > 0
            && ((self.original - self.dead) as f64) < self.ratio * self.original as f64
    }

    /// Marks entry `i` found dead; true if it was not already.
    fn mark(&mut self, i: usize) -> bool {
        if self.snapshot[i].marked {
            return false;
        }
        self.snapshot[i].marked = true;
        self.dead += 1;
        self.skipped_dead += 1;
        true
    }

    /// One look of a full scan at entry `i`, as the balancer makes it: disabled, then dead
    /// (marked), then over the limit. `Some(load)` if it can be handed out.
    fn look(&mut self, i: usize, newly: &mut usize, any_loaded: &mut bool) -> Option<usize> {
        let id = self.snapshot[i].id;
        if self.is_disabled(id) {
            return None;
        }
        if !self.is_alive(id) {
            if self.mark(i) {
                *newly += 1;
            }
            return None;
        }
        let load = self.load[id as usize];
        if load >= self.max_load {
            *any_loaded = true;
            return None;
        }
        Some(load)
    }

    /// Replays a round-robin or least-loaded pick at `turn`: the entry handed out (or why
    /// none), the members newly found dead, and the extra turns.
    fn replay(&mut self, turn: usize) -> (Result<usize, PickError>, usize, usize) {
        let n = self.snapshot.len();
        if n == 0 {
            return (Err(PickError::NoMembers), 0, 0);
        }
        // Least loaded moves the start on by the stripe and the seed, so that threads on
        // different stripes, and balancers seeded apart, spread their ties; round robin goes round from the stripe's turn alone.
        let start = match self.policy {
            Policy::LeastLoaded => (turn + self.stripe) % n,
            _ => turn % n,
        };
        let first = self.snapshot[start].id;
        // The fast paths, which only read.
        match self.policy {
            Policy::RoundRobin if self.is_usable(first) => return (Ok(start), 0, 0),
            Policy::LeastLoaded if self.is_usable(first) && self.load[first as usize] == 0 => {
                return (Ok(start), 0, 0)
            }
            _ => {}
        }
        let (mut newly, mut any_loaded) = (0, false);
        let mut best: Option<(usize, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(load) = self.look(i, &mut newly, &mut any_loaded) else {
                continue;
            };
            if self.policy == Policy::RoundRobin {
                return (Ok(i), newly, k);
            }
            if best.map_or(true, |(_, b)| load < b) {
                best = Some((i, load));
                if load == 0 {
                    break;
                }
            }
        }
        let nothing = if any_loaded {
            PickError::Overloaded
        } else {
            PickError::NoMembers
        };
        (best.map(|(i, _)| i).ok_or(nothing), newly, 0)
    }
}

/// The calling thread's stripe of the balancers' cursors: a fresh least-loaded balancer over
/// 32 idle members (more than there are stripes) seeded 0 starts its first pick, turn 0, on
/// the entry the stripe moves it to.
fn this_threads_stripe() -> usize {
    let idle: Vec<_> = (0..32).map(TestMember::new).collect();
    let b = Balancer::builder()
        .policy(Policy::LeastLoaded)
        .seed(0)
        .source(idle)
        .build()
        .expect("a valid configuration");
    let stripe = b.pick().expect("idle members").index();
    assert_eq!(
        b.pick().expect("idle members").index(),
        stripe + 1,
        "ties spread"
    );
    stripe
}

fn check_invariants(b: &Balancer<TestMember>, model: &Model) {
    let stats = b.stats();
    assert_eq!(stats.generation, model.generation, "generation");
    assert_eq!(stats.refreshes, model.refreshes, "refreshes");
    assert_eq!(stats.picks, model.picks, "picks: one per call to pick()");
    assert_eq!(
        stats.skipped_dead, model.skipped_dead,
        "deaths counted, each once"
    );
    assert_eq!(stats.overloaded, model.overloaded, "overloaded refusals");
    let want: Vec<u32> = model.snapshot.iter().map(|e| e.id).collect();
    assert_eq!(ids(&b.members()), want, "the snapshot's members, in order");
    assert_eq!(stats.members, want.len());
    let disabled = want.iter().filter(|&&id| model.is_disabled(id)).count();
    assert_eq!(stats.disabled, disabled, "disabled flags of the snapshot");
    assert_eq!(stats.original, model.original, "original size");
    assert_eq!(stats.alive, model.original - model.dead, "live share");
}

fn pick(b: &Balancer<TestMember>, model: &mut Model) {
    let turn = model.turns;
    model.turns += 1;
    model.picks += 1;
    let before = model.skipped_dead;

    model.source.hold.store(true, SeqCst);
    let result = b.pick().map(|p| (p.index(), p.id, p.generation()));
    model.source.hold.store(false, SeqCst);
    settle(b);

    let newly = if model.policy == Policy::PowerOfTwo {
        // The samples are not replayed: take the deaths the balancer counted, and check that
        // they could be real ones.
        let counted = (b.stats().skipped_dead - before) as usize;
        let unmarked_dead = model
            .snapshot
            .iter()
            .filter(|e| !e.marked && !model.is_alive(e.id))
            .count();
        assert!(
            counted <= unmarked_dead,
            "counted {counted} deaths of {unmarked_dead}"
        );
        model.skipped_dead += counted as u64;
        model.dead += counted;
        check_power_of_two(model, result);
        counted
    } else {
        let (expected, newly, extra) = model.replay(turn);
        model.turns += extra;
        let got = result.map(|(i, id, generation)| {
            assert_eq!(
                generation, model.generation,
                "dealt from the current snapshot"
            );
            assert_eq!(model.snapshot[i].id, id, "index matches the snapshot");
            i
        });
        assert_eq!(got, expected, "{:?} at turn {turn}", model.policy);
        newly
    };
    if result == Err(PickError::Overloaded) {
        model.overloaded += 1;
    }
    // The ratio rule, by the model: deaths this pick found that leave the live share below
    // the ratio make the refresher reload.
    if newly > 0 && model.below_ratio() {
        model.reload();
    }
}

/// What holds for a power-of-two pick whatever its two samples were.
fn check_power_of_two(model: &Model, result: Result<(usize, u32, u64), PickError>) {
    let ids: Vec<u32> = model.snapshot.iter().map(|e| e.id).collect();
    let any_usable = ids.iter().any(|&id| model.is_usable(id));
    let any_live = ids.iter().any(|&id| model.is_live(id));
    match result {
        Ok((i, id, generation)) => {
            assert_eq!(generation, model.generation);
            assert_eq!(ids[i], id, "index matches the snapshot");
            assert!(
                model.is_usable(id),
                "dealt {id}, which cannot be handed out"
            );
            // With every member usable, both samples always are: the lighter one wins, so the
            // strictly heaviest never does.
            if ids.len() >= 2 && ids.iter().all(|&id| model.is_usable(id)) {
                let load = |id: u32| model.load[id as usize];
                let heaviest = ids.iter().map(|&id| load(id)).max().unwrap();
                let at_max = ids.iter().filter(|&&id| load(id) == heaviest).count();
                assert!(
                    !(at_max == 1 && load(id) == heaviest),
                    "dealt {id}, the strictly heaviest member"
                );
            }
        }
        Err(PickError::Overloaded) => assert!(any_live && !any_usable, "Overloaded wrongly"),
        Err(PickError::NoMembers) => assert!(!any_live, "NoMembers with a live member"),
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn run(policy: Policy, ratio: f64, max_load: Option<usize>, initial: usize, ops: &[Op]) {
    let mut model = Model::new(policy, ratio, max_load.unwrap_or(usize::MAX), initial);
    let builder = Balancer::builder()
        .policy(policy)
        .min_alive_ratio(ratio)
        .seed(initial as u64)
        .source(model.source.clone());
    let b = match max_load {
        Some(n) => builder.max_load(n),
        None => builder,
    }
    .build()
    .expect("a valid configuration");
    check_invariants(&b, &model);

    for op in ops {
        match op {
            Op::Kill(i) => {
                if let Some((i, m)) = model.member(i) {
                    m.kill();
                    model.alive[i] = false;
                }
            }
            Op::Revive(i) => {
                if let Some((i, m)) = model.member(i) {
                    m.revive();
                    model.alive[i] = true;
                }
            }
            Op::SetLoad(i, load) => {
                if let Some((i, m)) = model.member(i) {
                    m.set_load(*load);
                    model.load[i] = *load;
                }
            }
            Op::Replace { keep, fresh } => {
                let mut next: Vec<TestMember> = Vec::new();
                for (_, m) in keep.iter().filter_map(|i| model.member(i)) {
                    if !next.contains(&m) {
                        next.push(m);
                    }
                }
                next.extend(model.fresh(*fresh));
                model.source.inner.set(next);
            }
            Op::Pick => pick(&b, &mut model),
            Op::Refresh => {
                let live = b.refresh();
                model.reload();
                assert_eq!(live, model.original, "refresh() returns the live count");
            }
            Op::Disable(i) => {
                let Some((_, m)) = model.member(i) else {
                    continue;
                };
                let present = model.snapshot.iter().any(|e| e.id == m.id);
                assert_eq!(b.disable(&m), present, "disable({}) reports presence", m.id);
                if !model.disabled.contains(&m.id) {
                    model.disabled.push(m.id);
                }
            }
            Op::Enable(i) => {
                let Some((_, m)) = model.member(i) else {
                    continue;
                };
                let present = model.snapshot.iter().any(|e| e.id == m.id);
                assert_eq!(b.enable(&m), present, "enable({}) reports presence", m.id);
                model.disabled.retain(|&id| id != m.id);
            }
            Op::NotifyDead(i) => {
                let Some((i, m)) = model.member(i) else {
                    continue;
                };
                if model.alive[i] {
                    continue;
                }
                let noticed = b.notify_dead(&m);
                let at = model.snapshot.iter().position(|e| e.id == m.id);
                if policy == Policy::PowerOfTwo {
                    // Which entries earlier picks marked is not replayed: follow the answer.
                    if noticed {
                        let at = at.expect("noticed a member of the snapshot");
                        assert!(!model.snapshot[at].marked, "noticed a member dead at build");
                        model.snapshot[at].marked = true;
                        model.dead += 1;
                        model.skipped_dead += 1;
                    }
                } else {
                    let expected = at.is_some_and(|at| model.mark(at));
                    assert_eq!(noticed, expected, "notify_dead({}) answer", m.id);
                }
                // The notice flies its own refresh, on this thread, if it crosses the ratio.
                if noticed && model.below_ratio() {
                    model.reload();
                }
            }
            Op::PickWhileDraining => {
                let refused = b
                    .apply_within_blocking(Wait::none(), || b.pick().err())
                    .expect("the drain runs");
                assert_eq!(refused, Some(PickError::Draining));
                // A refused pick still takes its turn, and counts as a pick.
                model.turns += 1;
                model.picks += 1;
                assert!(!b.is_draining());
            }
        }
        check_invariants(&b, &model);
    }
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.3), Just(0.5), Just(0.8), Just(1.0)]
}

fn max_load() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![Just(None), Just(Some(2))]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn round_robin_agrees_with_the_model(
        ratio in ratio(),
        max_load in max_load(),
        initial in 0..8_usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(Policy::RoundRobin, ratio, max_load, initial, &ops);
    }

    #[test]
    fn least_loaded_agrees_with_the_model(
        ratio in ratio(),
        max_load in max_load(),
        initial in 0..8_usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(Policy::LeastLoaded, ratio, max_load, initial, &ops);
    }

    #[test]
    fn power_of_two_agrees_with_the_model(
        ratio in ratio(),
        max_load in max_load(),
        initial in 0..8_usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(Policy::PowerOfTwo, ratio, max_load, initial, &ops);
    }
}
