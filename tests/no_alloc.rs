//! A pick allocates nothing: no heap allocation, reallocation or deallocation on the calling
//! thread, for every policy, once the thread has made its first pick (arc-swap gives each
//! thread a node of its own on first use).
//!
//! Allocations are counted per thread, so the harness running other tests in parallel threads
//! does not disturb the count.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    hint::black_box,
};

use common::{make, TestMember, POLICIES};
use croupier::{Balancer, Member, PickError, Policy};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// thread-local `Cell`, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        System.dealloc(ptr, layout);
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap operations made by this thread while `f` runs.
fn heap_operations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const PICKS: usize = 1_000;

fn balancer(
    policy: Policy,
    members: Vec<TestMember>,
    max_load: Option<usize>,
) -> Balancer<TestMember> {
    let builder = Balancer::builder()
        .policy(policy)
        .min_alive_ratio(0.5)
        .seed(3)
        .source(members);
    match max_load {
        Some(n) => builder.max_load(n),
        None => builder,
    }
    .build()
    .unwrap()
}

fn assert_picks_do_not_allocate(policy: Policy) {
    let members = make(64);
    for (i, m) in members.iter().enumerate() {
        m.set_load(i % 5 + 1);
    }
    let b = balancer(policy, members.clone(), None);
    drop(b.pick().unwrap()); // warm-up: arc-swap's per-thread node

    let ops = heap_operations(|| {
        for _ in 0..PICKS {
            let p = b.pick().unwrap();
            black_box(p.id);
            black_box(p.load());
            black_box(&*p);
        }
    });
    assert_eq!(ops, 0, "{policy:?}: {ops} heap operations in {PICKS} picks");
    assert_eq!(b.stats().picks, PICKS as u64 + 1);
}

#[test]
fn round_robin_pick_does_not_allocate() {
    assert_picks_do_not_allocate(Policy::RoundRobin);
}

#[test]
fn least_loaded_pick_does_not_allocate() {
    assert_picks_do_not_allocate(Policy::LeastLoaded);
}

#[test]
fn power_of_two_pick_does_not_allocate() {
    assert_picks_do_not_allocate(Policy::PowerOfTwo);
}

#[test]
fn weighted_picks_do_not_allocate() {
    for policy in POLICIES {
        let members = make(64);
        for (i, m) in members.iter().enumerate() {
            m.set_load(i % 5 + 1);
            m.set_weight(u32::try_from(i % 4).unwrap()); // some 0: never picked
        }
        let b = balancer(policy, members, None);
        drop(b.pick().unwrap());
        let ops = heap_operations(|| {
            for _ in 0..PICKS {
                black_box(b.pick().unwrap().id);
            }
        });
        assert_eq!(ops, 0, "{policy:?}: {ops} heap operations in {PICKS} picks");
    }
}

#[test]
fn affinity_picks_do_not_allocate() {
    for bounded in [false, true] {
        let members = make(64);
        for (i, m) in members.iter().enumerate() {
            m.set_load(i % 5);
        }
        members[3].kill();
        let builder = Balancer::builder().min_alive_ratio(0.5).source(members);
        let b = if bounded {
            builder.bounded_loads(0.25)
        } else {
            builder
        }
        .build()
        .unwrap();
        // Warm-up: arc-swap's per-thread node, and the table the first pick_for builds.
        drop(b.pick_for(&0_u64).unwrap());
        let ops = heap_operations(|| {
            for k in 0..PICKS as u64 {
                black_box(b.pick_for(&k).unwrap().id);
                black_box(b.pick_for("a string key").unwrap().id);
            }
        });
        assert_eq!(
            ops, 0,
            "bounded {bounded}: {ops} heap operations in {PICKS} picks"
        );
        // A refresh builds the new snapshot's table itself: the picks after it build nothing.
        b.refresh();
        let ops = heap_operations(|| {
            for k in 0..PICKS as u64 {
                black_box(b.pick_for(&k).unwrap().id);
            }
        });
        assert_eq!(
            ops, 0,
            "bounded {bounded}, after a refresh: {ops} heap operations"
        );
    }
}

#[test]
fn picks_past_known_dead_and_disabled_members_do_not_allocate() {
    for policy in POLICIES {
        let members = make(64);
        let b = balancer(policy, members.clone(), None);
        // Deaths and disables below the refresh ratio, found by a warm-up round.
        for m in members.iter().step_by(4) {
            m.kill();
        }
        for m in members.iter().skip(1).step_by(8) {
            b.disable(m);
        }
        for _ in 0..10 * members.len() {
            drop(b.pick().unwrap());
        }
        assert_eq!(b.stats().generation, 0, "{policy:?}: no refresh");

        let ops = heap_operations(|| {
            for _ in 0..PICKS {
                black_box(b.pick().unwrap().id);
            }
        });
        assert_eq!(ops, 0, "{policy:?}: {ops} heap operations in {PICKS} picks");
    }
}

#[test]
fn refused_picks_do_not_allocate() {
    for policy in POLICIES {
        let members = make(64);
        members.iter().for_each(|m| m.set_load(10));
        let b = balancer(policy, members, Some(10));
        assert_eq!(b.pick().unwrap_err(), PickError::Overloaded);

        let ops = heap_operations(|| {
            for _ in 0..PICKS {
                black_box(b.pick().unwrap_err());
            }
        });
        assert_eq!(
            ops, 0,
            "{policy:?}: {ops} heap operations in {PICKS} refusals"
        );
        assert_eq!(b.stats().overloaded, PICKS as u64 + 1);
    }
}

/// The pick that finds the live share below the refresh ratio asks the refresher thread for
/// the refresh and returns from the snapshot it holds: no allocation, though the refresh it
/// asks for (the source's `Vec`, the new snapshot) allocates plenty on the other thread. The
/// source is held at a gate until the pick is measured, which also shows that the pick does
/// not wait for it.
#[test]
fn ratio_crossing_pick_allocates_nothing() {
    for policy in POLICIES {
        let (b, release, members) = gated_balancer(policy);
        // Warm-up: arc-swap's per-thread node.
        drop(b.pick().unwrap());
        // Every member but one dies: whichever the pick looks at first crosses the ratio.
        for m in &members[1..] {
            m.kill();
        }

        let mut generation = None;
        let ops = heap_operations(|| {
            let p = b.pick().expect("member 0 is alive");
            generation = Some(p.generation());
            black_box(p.id);
        });
        assert_eq!(
            ops, 0,
            "{policy:?}: {ops} heap operations in the crossing pick"
        );
        assert_eq!(
            generation,
            Some(0),
            "{policy:?}: answered from the old snapshot"
        );
        assert!(
            b.is_refreshing(),
            "{policy:?}: the crossing pick asked for a refresh"
        );

        release.send(()).unwrap();
        common::settle(&b);
        assert_eq!(b.stats().generation, 1, "{policy:?}: the refresh landed");
    }
}

/// The same on a tokio runtime, where the refresher is a task on it: the crossing pick's wake
/// is tokio's scheduling of that task, which allocates nothing either, whether the pick runs
/// on the runtime's own thread (current-thread runtime, `block_on`) or on a thread outside a
/// multi-thread runtime.
#[test]
fn ratio_crossing_pick_on_a_runtime_allocates_nothing() {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let crossing = current.block_on(async { crossing_pick_on_this_runtime().await });
    assert_eq!(crossing, 0, "current-thread: {crossing} heap operations");

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let b = multi.block_on(async { gated_balancer(Policy::RoundRobin) });
    let crossing = crossing_pick(&b);
    b.1.send(()).unwrap();
    common::settle(&b.0);
    assert_eq!(b.0.stats().generation, 1, "the refresh landed");
    assert_eq!(
        crossing, 0,
        "multi-thread, from outside: {crossing} heap operations"
    );
}

/// A balancer of 8 members whose source, past the build, waits at a gate the returned sender
/// opens (bounded, so that a balancer that ran its source on the picking thread fails
/// instead of hanging); min alive ratio 0.9.
fn gated_balancer(
    policy: Policy,
) -> (
    Balancer<TestMember>,
    std::sync::mpsc::Sender<()>,
    Vec<TestMember>,
) {
    let members = make(8);
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let source = {
        let members = members.clone();
        move || {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                let _ = gate
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(5));
            }
            members.clone()
        }
    };
    let b = Balancer::builder()
        .policy(policy)
        .min_alive_ratio(0.9)
        .seed(5)
        .source(source)
        .build()
        .unwrap();
    (b, release, members)
}

/// Heap operations of the pick that crosses the ratio of `gated_balancer`'s balancer.
fn crossing_pick(
    (b, _, members): &(
        Balancer<TestMember>,
        std::sync::mpsc::Sender<()>,
        Vec<TestMember>,
    ),
) -> usize {
    drop(b.pick().unwrap()); // warm-up: arc-swap's per-thread node
    for m in &members[1..] {
        m.kill();
    }
    let ops = heap_operations(|| {
        black_box(b.pick().expect("member 0 is alive").id);
    });
    assert!(b.is_refreshing(), "the crossing pick asked for a refresh");
    ops
}

async fn crossing_pick_on_this_runtime() -> usize {
    let b = gated_balancer(Policy::RoundRobin);
    let ops = crossing_pick(&b);
    b.1.send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.0.stats().generation == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never landed"
        );
        tokio::task::yield_now().await;
    }
    ops
}

#[test]
fn the_counter_sees_allocations() {
    let ops = heap_operations(|| {
        black_box(vec![1_u8; 16]);
    });
    assert_eq!(ops, 2, "one allocation and one deallocation");
}
