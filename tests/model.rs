//! Random sequences of operations against a simple model of the balancer, for each policy.
//!
//! The model knows every member ever made (alive or not, its load), the source's current list,
//! the balancer's current snapshot (ids in order), the list of disabled members and the
//! generation. Whether a pick refreshes by ratio is read from the balancer (the model does not
//! replay the dead-counting), and its consequences are then checked like those of `refresh()`.

mod common;

use common::{ids, SharedSource, TestMember};
use croupier::{Balancer, PickError, Policy};
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
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<Index>().prop_map(Op::Kill),
        2 => any::<Index>().prop_map(Op::Revive),
        1 => (any::<Index>(), 0..4_usize).prop_map(|(i, l)| Op::SetLoad(i, l)),
        2 => (prop::collection::vec(any::<Index>(), 0..5), 0..4_usize)
            .prop_map(|(keep, fresh)| Op::Replace { keep, fresh }),
        8 => Just(Op::Pick),
        1 => Just(Op::Refresh),
        2 => any::<Index>().prop_map(Op::Disable),
        1 => any::<Index>().prop_map(Op::Enable),
    ]
}

struct Model {
    /// Every member ever made; a member's id is its index here.
    all: Vec<TestMember>,
    alive: Vec<bool>,
    source: SharedSource,
    /// The ids the balancer's current snapshot should hold, in order.
    snapshot: Vec<u32>,
    /// The balancer's list of disabled members.
    disabled: Vec<u32>,
    generation: u64,
}

impl Model {
    fn new(initial: usize) -> Self {
        let mut model = Self {
            all: Vec::new(),
            alive: Vec::new(),
            source: SharedSource::default(),
            snapshot: Vec::new(),
            disabled: Vec::new(),
            generation: 0,
        };
        let first = model.fresh(initial);
        model.source.set(first.clone());
        model.snapshot = ids(&first);
        model
    }

    fn fresh(&mut self, n: usize) -> Vec<TestMember> {
        (0..n)
            .map(|_| {
                let m = TestMember::new(u32::try_from(self.all.len()).unwrap());
                self.all.push(m.clone());
                self.alive.push(true);
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

    fn usable(&self, snapshot: &[u32]) -> bool {
        snapshot
            .iter()
            .any(|&id| self.is_alive(id) && !self.is_disabled(id))
    }

    /// What any reload does: the source's list becomes the snapshot, disabled members the
    /// source no longer returns are forgotten, the generation moves on.
    fn reload(&mut self) {
        self.snapshot = ids(&self.source.get());
        let snapshot = &self.snapshot;
        self.disabled.retain(|id| snapshot.contains(id));
        self.generation += 1;
    }
}

fn check_invariants(b: &Balancer<TestMember>, model: &Model, last_generation: &mut u64) {
    let stats = b.stats();
    assert!(stats.generation >= *last_generation, "generation went back");
    *last_generation = stats.generation;
    assert_eq!(stats.generation, model.generation);
    assert_eq!(ids(&b.members()), model.snapshot);
    assert_eq!(stats.members, model.snapshot.len());
    let disabled = model
        .snapshot
        .iter()
        .filter(|&&id| model.is_disabled(id))
        .count();
    assert_eq!(stats.disabled, disabled, "disabled flags of the snapshot");
    assert!(stats.alive <= stats.original);
    assert!(stats.original <= stats.members);
}

fn pick(b: &Balancer<TestMember>, model: &mut Model) {
    let before = model.snapshot.clone();
    let usable_before = model.usable(&before);
    let disabled_before = model.disabled.clone();
    let generation_before = model.generation;

    let result = b.pick();
    // A refresh the pick asked for runs on the refresher's thread.
    common::settle(b);
    let generation_after = b.stats().generation;
    assert!(
        generation_after == generation_before || generation_after == generation_before + 1,
        "one pick reloads at most once ({generation_before} -> {generation_after})"
    );
    let refreshed = generation_after > generation_before;
    if refreshed {
        model.reload();
    }

    match result {
        Ok(p) => {
            let id = p.id;
            assert!(model.is_alive(id), "dealt dead member {id}");
            assert!(!disabled_before.contains(&id), "dealt disabled member {id}");
            // The member comes from the snapshot the pick loaded: the current one, or the one
            // replaced by the refresh this very pick asked for when it crossed the ratio.
            let from = if p.generation() == model.generation {
                &model.snapshot
            } else {
                assert_eq!(p.generation(), generation_before);
                assert!(
                    refreshed,
                    "dealt from a replaced snapshot without refreshing"
                );
                &before
            };
            assert_eq!(from.get(p.index()), Some(&id), "index matches the snapshot");
        }
        Err(PickError::NoMembers) => {
            assert!(
                !usable_before,
                "NoMembers with a live, enabled member in {before:?}"
            );
        }
        Err(e) => panic!("unexpected {e:?} without max_load"),
    }
}

fn run(policy: Policy, ratio: f64, initial: usize, ops: &[Op]) {
    let mut model = Model::new(initial);
    let b = Balancer::builder()
        .policy(policy)
        .min_alive_ratio(ratio)
        .seed(initial as u64)
        .source(model.source.clone())
        .build()
        .expect("a valid configuration");
    let mut last_generation = 0;
    check_invariants(&b, &model, &mut last_generation);

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
                if let Some((_, m)) = model.member(i) {
                    m.set_load(*load);
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
                model.source.set(next);
            }
            Op::Pick => pick(&b, &mut model),
            Op::Refresh => {
                let live = b.refresh();
                model.reload();
                let expected = model
                    .snapshot
                    .iter()
                    .filter(|&&id| model.is_alive(id))
                    .count();
                assert_eq!(live, expected, "refresh() returns the live count");
                assert_eq!(ids(&b.members()), ids(&model.source.get()));
                let stats = b.stats();
                assert_eq!((stats.original, stats.alive), (live, live));
            }
            Op::Disable(i) => {
                let Some((_, m)) = model.member(i) else {
                    continue;
                };
                let present = model.snapshot.contains(&m.id);
                assert_eq!(b.disable(&m), present, "disable({}) reports presence", m.id);
                if !model.disabled.contains(&m.id) {
                    model.disabled.push(m.id);
                }
            }
            Op::Enable(i) => {
                let Some((_, m)) = model.member(i) else {
                    continue;
                };
                let present = model.snapshot.contains(&m.id);
                assert_eq!(b.enable(&m), present, "enable({}) reports presence", m.id);
                model.disabled.retain(|&id| id != m.id);
            }
        }
        check_invariants(&b, &model, &mut last_generation);
    }
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.3), Just(0.5), Just(0.8), Just(1.0)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn round_robin_agrees_with_the_model(
        ratio in ratio(),
        initial in 0..8_usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(Policy::RoundRobin, ratio, initial, &ops);
    }

    #[test]
    fn least_loaded_agrees_with_the_model(
        ratio in ratio(),
        initial in 0..8_usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(Policy::LeastLoaded, ratio, initial, &ops);
    }

    #[test]
    fn power_of_two_agrees_with_the_model(
        ratio in ratio(),
        initial in 0..8_usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(Policy::PowerOfTwo, ratio, initial, &ops);
    }
}
