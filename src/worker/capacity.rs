//! Wakes those who wait for a worker's load to fall: a [`Pool`](crate::Pool) used as a tower
//! `Service` whose `poll_ready` found every live worker at `max_load`.
//!
//! A worker that finishes a message pays one atomic load here while nobody waits, and wakes
//! the waiters otherwise.

use std::sync::{
    atomic::{AtomicUsize, Ordering::SeqCst},
    Arc,
};

use tokio::sync::{futures::OwnedNotified, Notify};

/// A supervisor's "some worker's load fell" signal.
#[derive(Debug, Default)]
pub(crate) struct Capacity {
    /// Registered waiters.
    waiters: AtomicUsize,
    notify: Arc<Notify>,
}

impl Capacity {
    /// Called after a worker's load fell.
    pub(crate) fn released(&self) {
        // SeqCst, with the increment in `wait` and the load's decrement before this: either
        // the waiter, looking again after it registered, sees the lower load, or this sees
        // the waiter and wakes it.
        if self.waiters.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Registers a waiter; the caller looks at the loads again after this, then polls the
    /// returned wait.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn wait(self: &Arc<Self>) -> CapacityWait {
        let mut notified = Box::pin(Arc::clone(&self.notify).notified_owned());
        notified.as_mut().enable();
        // SeqCst: see `released`.
        self.waiters.fetch_add(1, SeqCst);
        CapacityWait {
            notified,
            capacity: Arc::clone(self),
        }
    }
}

/// A registered wait for capacity; unregisters when dropped.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) struct CapacityWait {
    pub(crate) notified: std::pin::Pin<Box<OwnedNotified>>,
    capacity: Arc<Capacity>,
}

impl Drop for CapacityWait {
    fn drop(&mut self) {
        self.capacity.waiters.fetch_sub(1, SeqCst);
    }
}
