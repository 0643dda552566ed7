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

use common::{make, TestMember};
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
fn picks_past_known_dead_and_disabled_members_do_not_allocate() {
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo] {
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
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo] {
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

#[test]
fn the_counter_sees_allocations() {
    let ops = heap_operations(|| {
        black_box(vec![1_u8; 16]);
    });
    assert_eq!(ops, 2, "one allocation and one deallocation");
}
