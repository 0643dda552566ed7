//! Shared fixtures for the integration tests: a member whose liveness and load the test sets by
//! hand, and a source whose set of members can be swapped and whose calls are counted.
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst},
    Arc, Mutex,
};

use croupier::{Member, Policy, Source};

/// Every policy, for the tests that hold for each.
pub const POLICIES: [Policy; 3] = [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo];

/// A member with an id, a shared alive flag and a shared load.
///
/// Clones share the flag and the load, so a test can keep one clone and kill, revive or load
/// the copy the balancer holds. Equality is by id only.
#[derive(Clone, Debug)]
pub struct TestMember {
    pub id: u32,
    alive: Arc<AtomicBool>,
    load: Arc<AtomicUsize>,
    weight: Arc<AtomicU32>,
}

impl TestMember {
    /// A live member with load 0.
    pub fn new(id: u32) -> Self {
        Self {
            id,
            alive: Arc::new(AtomicBool::new(true)),
            load: Arc::new(AtomicUsize::new(0)),
            weight: Arc::new(AtomicU32::new(1)),
        }
    }

    pub fn kill(&self) {
        self.alive.store(false, SeqCst);
    }

    pub fn revive(&self) {
        self.alive.store(true, SeqCst);
    }

    pub fn set_load(&self, load: usize) {
        self.load.store(load, SeqCst);
    }

    /// The weight the next snapshot reads (at build or refresh).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, SeqCst);
    }
}

impl PartialEq for TestMember {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for TestMember {}

impl Member for TestMember {
    fn is_alive(&self) -> bool {
        self.alive.load(SeqCst)
    }

    fn load(&self) -> usize {
        self.load.load(SeqCst)
    }

    fn weight(&self) -> u32 {
        self.weight.load(SeqCst)
    }

    fn affinity_key(&self) -> Option<u64> {
        Some(u64::from(self.id))
    }
}

/// `n` live members with ids `0..n`.
pub fn make(n: usize) -> Vec<TestMember> {
    make_from(0, n)
}

/// `n` live members with ids `first..first + n`.
pub fn make_from(first: u32, n: usize) -> Vec<TestMember> {
    let n = u32::try_from(n).expect("test sizes fit in u32");
    (first..first + n).map(TestMember::new).collect()
}

/// Live members with ids `0..loads.len()` and the given loads.
pub fn with_loads(loads: &[usize]) -> Vec<TestMember> {
    let members = make(loads.len());
    for (m, &load) in members.iter().zip(loads) {
        m.set_load(load);
    }
    members
}

/// Live members with ids `0..weights.len()` and the given weights.
pub fn with_weights(weights: &[u32]) -> Vec<TestMember> {
    let members = make(weights.len());
    for (m, &w) in members.iter().zip(weights) {
        m.set_weight(w);
    }
    members
}

/// The ids of `members`, in order.
pub fn ids(members: &[TestMember]) -> Vec<u32> {
    members.iter().map(|m| m.id).collect()
}

/// A source backed by a shared `Mutex<Vec<_>>` whose contents a test replaces at will, counting
/// how often the balancer asks it. Clones share the set and the count.
#[derive(Clone, Debug, Default)]
pub struct SharedSource {
    members: Arc<Mutex<Vec<TestMember>>>,
    calls: Arc<AtomicUsize>,
}

impl SharedSource {
    pub fn new(members: Vec<TestMember>) -> Self {
        Self {
            members: Arc::new(Mutex::new(members)),
            calls: Arc::default(),
        }
    }

    /// Replaces the set the next refresh will load.
    pub fn set(&self, members: Vec<TestMember>) {
        *self.members.lock().unwrap() = members;
    }

    /// The set the next refresh will load.
    pub fn get(&self) -> Vec<TestMember> {
        self.members.lock().unwrap().clone()
    }

    /// How many times the balancer has asked for members (`build` included).
    pub fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }
}

impl Source<TestMember> for SharedSource {
    fn members(&self) -> Vec<TestMember> {
        self.calls.fetch_add(1, SeqCst);
        self.get()
    }
}

/// Waits until a refresh that a pick asked for, if any, has landed (the balancer's refresher
/// runs it on its own thread); fails after 10 s instead of hanging.
pub fn settle<M: croupier::Member>(b: &croupier::Balancer<M>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.is_refreshing() {
        assert!(
            std::time::Instant::now() < deadline,
            "a refresh asked for never landed"
        );
        std::thread::yield_now();
    }
}
