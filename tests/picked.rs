//! The pick guard: it borrows the member from its snapshot instead of cloning it, and keeps
//! that snapshot alive for as long as it is held, across refreshes.

use std::sync::{
    atomic::{AtomicBool, Ordering::SeqCst},
    Arc, Mutex,
};

use croupier::{Balancer, Member};

/// A member backed by an `Arc`, whose reference count the tests read.
#[derive(Clone, Debug)]
struct Handle(Arc<AtomicBool>);

impl Member for Handle {
    fn is_alive(&self) -> bool {
        self.0.load(SeqCst)
    }
}

#[test]
fn picked_does_not_touch_the_reference_count() {
    let member = Handle(Arc::new(AtomicBool::new(true)));
    let b = Balancer::builder()
        .source(vec![member.clone()])
        .build()
        .unwrap();
    // The test's handle, the source's `Vec` and the snapshot's copy.
    let at_rest = Arc::strong_count(&member.0);
    assert_eq!(at_rest, 3);

    let picked = b.pick().unwrap();
    assert!(Arc::ptr_eq(&picked.0, &member.0));
    assert_eq!(
        Arc::strong_count(&member.0),
        at_rest,
        "a pick cloned the member"
    );
    let guards: Vec<_> = (0..10).map(|_| b.pick().unwrap()).collect();
    assert_eq!(Arc::strong_count(&member.0), at_rest);
    drop(guards);

    // Only `cloned` makes an owned handle.
    let owned = picked.cloned();
    assert_eq!(Arc::strong_count(&member.0), at_rest + 1);
    drop((owned, picked));
    assert_eq!(Arc::strong_count(&member.0), at_rest);
}

#[test]
fn guard_keeps_its_snapshot_across_a_refresh() {
    let old = Handle(Arc::new(AtomicBool::new(true)));
    let new = Handle(Arc::new(AtomicBool::new(true)));
    let current = Arc::new(Mutex::new(vec![old.clone()]));
    let b = {
        let current = Arc::clone(&current);
        Balancer::builder()
            .source(move || current.lock().unwrap().clone())
            .build()
            .unwrap()
    };
    let picked = b.pick().unwrap();
    assert_eq!(picked.generation(), 0);

    // The refresh replaces the snapshot that holds `old`; the source forgets it too.
    *current.lock().unwrap() = vec![new.clone()];
    b.refresh();
    assert_eq!(b.stats().generation, 1);
    assert!(Arc::ptr_eq(&b.pick().unwrap().0, &new.0));

    // The guard still reads its member from generation 0, which it alone keeps alive.
    assert!(Arc::ptr_eq(&picked.0, &old.0));
    assert_eq!(picked.generation(), 0);
    assert!(picked.is_alive());
    assert_eq!(
        Arc::strong_count(&old.0),
        2,
        "the test's handle and the old snapshot's"
    );
    drop(picked);
    assert_eq!(
        Arc::strong_count(&old.0),
        1,
        "the old snapshot was released with its guard"
    );
}
