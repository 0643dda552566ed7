//! The one value that pickers read: members, generation and original size, swapped as a whole.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crate::Member;

/// One member in a snapshot, with the flags pickers and the slow paths share.
///
/// The flags are per snapshot: a refresh builds new slots, so nothing here outlives the set of
/// members it describes.
#[derive(Debug)]
pub(crate) struct Slot<M> {
    pub(crate) member: M,
    /// Taken out of rotation by hand (`Balancer::disable`). Written on the slow path only.
    disabled: AtomicBool,
    /// Found dead (by a pick, or by a push notice); set once so each death is counted once.
    dead: AtomicBool,
}

/// What a pick saw when it looked at a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Alive and enabled: may be handed out.
    Usable,
    /// Disabled by hand, or already known dead.
    Skipped,
    /// Dead, and this look was the first to notice.
    NewlyDead,
}

/// The members a balancer deals from, as of one refresh.
///
/// Everything that must change together lives here, behind one `ArcSwap`: a picker that loads a
/// snapshot sees members, generation and original size that belong to each other.
#[derive(Debug)]
pub(crate) struct Snapshot<M> {
    pub(crate) slots: Box<[Slot<M>]>,
    /// Incremented by every refresh.
    pub(crate) generation: u64,
    /// Members alive when the snapshot was built: the denominator of the refresh ratio.
    pub(crate) original: usize,
    /// Members of `original` found dead since. Written once per death, never on a plain pick.
    dead: AtomicUsize,
}

impl<M: Member> Snapshot<M> {
    /// Builds a snapshot, marking members that are already dead (they never count as original)
    /// and those `is_disabled` names.
    pub(crate) fn new(
        members: Vec<M>,
        generation: u64,
        mut is_disabled: impl FnMut(&M) -> bool,
    ) -> Self {
        let slots: Box<[Slot<M>]> = members
            .into_iter()
            .map(|member| Slot {
                disabled: AtomicBool::new(is_disabled(&member)),
                dead: AtomicBool::new(!member.is_alive()),
                member,
            })
            .collect();
        let original = slots.iter().filter(|s| !s.dead.load(Relaxed)).count();
        Self {
            slots,
            generation,
            original,
            dead: AtomicUsize::new(0),
        }
    }

    /// Looks at slot `i`: usable, skipped, or newly found dead (then counted, once).
    /// The load of member `i` if it can be handed out as it stands (enabled, alive, under
    /// `max_load`), read once; `None` otherwise. Only reads: a member it turns down is looked
    /// at again, and counted if dead, by [`look`](Snapshot::look).
    #[inline]
    pub(crate) fn usable_load(&self, i: usize, max_load: usize) -> Option<usize> {
        let slot = &self.slots[i];
        if slot.disabled.load(Relaxed) || !slot.member.is_alive() {
            return None;
        }
        let load = slot.member.load();
        (load < max_load).then_some(load)
    }

    /// Whether member `i` can be handed out as it stands; reads its load only when there is
    /// a `max_load` to compare it with.
    #[inline]
    pub(crate) fn is_usable(&self, i: usize, max_load: usize) -> bool {
        let slot = &self.slots[i];
        !slot.disabled.load(Relaxed)
            && slot.member.is_alive()
            && (max_load == usize::MAX || slot.member.load() < max_load)
    }

    #[inline]
    pub(crate) fn look(&self, i: usize) -> Seen {
        let slot = &self.slots[i];
        if slot.disabled.load(Relaxed) {
            return Seen::Skipped;
        }
        if slot.member.is_alive() {
            return Seen::Usable;
        }
        if self.mark_dead(i) {
            Seen::NewlyDead
        } else {
            Seen::Skipped
        }
    }
}

impl<M> Snapshot<M> {
    /// Records that slot `i` is dead; true if this call was the first to do so.
    pub(crate) fn mark_dead(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        // Read before the swap so a long-dead member costs a load, not a write, per pick.
        if slot.dead.load(Relaxed) || slot.dead.swap(true, Relaxed) {
            return false;
        }
        self.dead.fetch_add(1, Relaxed);
        true
    }

    /// Members of `original` not (yet) found dead.
    pub(crate) fn alive(&self) -> usize {
        self.original.saturating_sub(self.dead.load(Relaxed))
    }

    /// Whether the live share has fallen below `ratio` of the original size.
    pub(crate) fn below_ratio(&self, ratio: f64) -> bool {
        self.original > 0 && (self.alive() as f64) < ratio * self.original as f64
    }

    pub(crate) fn set_disabled(&self, i: usize, disabled: bool) {
        self.slots[i].disabled.store(disabled, Relaxed);
    }

    pub(crate) fn is_disabled(&self, i: usize) -> bool {
        self.slots[i].disabled.load(Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}
