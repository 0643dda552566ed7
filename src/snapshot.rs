//! The one value that pickers read: members, generation and original size, swapped as a whole.
//!
//! It sits below the policies: a policy is a pure function of a snapshot and a turn, so the
//! snapshot is all it needs to know.

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed,
};

use crate::member::Member;

pub(crate) mod affinity;
mod weighted;

/// One member in a snapshot, with the flags pickers and the slow paths share.
///
/// The flags are per snapshot: a refresh builds new entries, so nothing here outlives the set
/// of members it describes.
#[derive(Debug)]
pub(crate) struct Entry<M> {
    pub(crate) member: M,
    /// Out of rotation: [`DISABLED`] by hand (`Balancer::disable`), [`EJECTED`] for its
    /// failures. Written on slow paths only; one load tells a pick whether either is set.
    flags: AtomicU8,
    /// Failures reported in a row (outlier ejection); written by reports, not by picks.
    pub(crate) failures: AtomicU32,
    /// Successes (high half) and failures (low half) over the member's recent reports, for
    /// success-rate ejection; written by reports only when it is on.
    pub(crate) outcomes: AtomicU64,
    /// Found dead (by a pick, or by a push notice); set once so each death is counted once.
    dead: AtomicBool,
    /// [`Member::weight`] when the snapshot was built; 0: never handed out.
    pub(crate) weight: u32,
}

/// [`Entry`] flag: disabled by hand.
pub(crate) const DISABLED: u8 = 1;
/// [`Entry`] flag: ejected for its failures until a timer re-admits it.
pub(crate) const EJECTED: u8 = 2;

/// Why an entry cannot be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Disabled by hand, ejected, or of weight 0.
    Disabled,
    /// Its member says it is dead.
    Dead,
    /// Alive, but its load is at or above `max_load`.
    Overloaded,
}

/// The members a balancer deals from, as of one refresh.
///
/// Everything that must change together lives here, behind one `ArcSwap`: a picker that loads a
/// snapshot sees members, generation and original size that belong to each other.
#[derive(Debug)]
pub(crate) struct Snapshot<M> {
    pub(crate) entries: Box<[Entry<M>]>,
    /// Incremented by every refresh.
    pub(crate) generation: u64,
    /// Members alive when the snapshot was built: the denominator of the refresh ratio.
    pub(crate) original: usize,
    /// Members of `original` found dead since. Written once per death, never on a plain pick.
    dead: AtomicUsize,
    /// Round robin's order when the weights differ: entry indices, each entry as many times
    /// as its (scaled) weight, spread by Tijdeman's schedule (`weighted`). `None` when every
    /// weight is the same positive number (plain round robin over the entries).
    pub(crate) schedule: Option<Box<[u32]>>,
    /// Key affinity's Maglev table: built with the snapshot once the balancer has been asked
    /// for a key, else by the first such pick.
    table: std::sync::OnceLock<affinity::Table>,
}

impl<M: Member> Snapshot<M> {
    /// Builds a snapshot, marking members that are already dead (they never count as original)
    /// and those `is_disabled` names.
    pub(crate) fn new(members: Vec<M>, generation: u64, flags: impl FnMut(&M) -> u8) -> Self {
        Self::with_weights(members, generation, flags, None)
    }

    /// [`new`](Snapshot::new), with `weights` (one a member) instead of each member's own
    /// when given (slow start's ramp).
    pub(crate) fn with_weights(
        members: Vec<M>,
        generation: u64,
        mut flags: impl FnMut(&M) -> u8,
        weights: Option<Vec<u32>>,
    ) -> Self {
        let mut weights = weights.map(Vec::into_iter);
        let entries: Box<[Entry<M>]> = members
            .into_iter()
            .map(|member| Entry {
                flags: AtomicU8::new(flags(&member)),
                failures: AtomicU32::new(0),
                outcomes: AtomicU64::new(0),
                dead: AtomicBool::new(!member.is_alive()),
                weight: weights
                    .as_mut()
                    .and_then(Iterator::next)
                    .unwrap_or_else(|| member.weight()),
                member,
            })
            .collect();
        let original = entries.iter().filter(|e| !e.dead.load(Relaxed)).count();
        let weights: Vec<u32> = entries.iter().map(|e| e.weight).collect();
        Self {
            entries,
            generation,
            original,
            dead: AtomicUsize::new(0),
            schedule: weighted::schedule(&weights),
            table: std::sync::OnceLock::new(),
        }
    }

    /// The Maglev table of key affinity, built now if it was not yet.
    pub(crate) fn table(&self) -> &affinity::Table {
        self.table.get_or_init(|| {
            let keys: Vec<u64> = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| e.member.affinity_key().unwrap_or(i as u64))
                .collect();
            let weights: Vec<u32> = self.entries.iter().map(|e| e.weight).collect();
            affinity::Table::new(&keys, &weights)
        })
    }

    /// The one answer to "can entry `i` be handed out as it stands": enabled, alive, and
    /// under `max_load`. On `Ok`, the member's load when `LOAD` asks for it (or a limit needs
    /// it), 0 otherwise: a policy that ignores load does not pay for reading it. Only reads.
    #[inline]
    pub(crate) fn usable<const LOAD: bool>(
        &self,
        i: usize,
        max_load: usize,
    ) -> Result<usize, Unusable> {
        let entry = &self.entries[i];
        if entry.flags.load(Relaxed) != 0 || entry.weight == 0 {
            return Err(Unusable::Disabled);
        }
        if !entry.member.is_alive() {
            return Err(Unusable::Dead);
        }
        if !LOAD && max_load == usize::MAX {
            return Ok(0);
        }
        let load = entry.member.load();
        if load < max_load {
            Ok(load)
        } else {
            Err(Unusable::Overloaded)
        }
    }
}

impl<M> Snapshot<M> {
    /// Whether the weights differ, so that loads must be compared per unit of weight.
    #[inline]
    pub(crate) fn is_weighted(&self) -> bool {
        self.schedule.is_some()
    }

    /// Records that entry `i` is dead; true if this call was the first to do so.
    pub(crate) fn mark_dead(&self, i: usize) -> bool {
        let entry = &self.entries[i];
        // Read before the swap so a long-dead member costs a load, not a write, per pick.
        if entry.dead.load(Relaxed) || entry.dead.swap(true, Relaxed) {
            return false;
        }
        self.dead.fetch_add(1, Relaxed);
        true
    }

    /// Members of `original` not (yet) found dead.
    pub(crate) fn alive(&self) -> usize {
        self.original.saturating_sub(self.dead.load(Relaxed))
    }

    /// Whether the live share has fallen below `ratio` of the original size (never for an
    /// empty snapshot: 0 is not below 0).
    pub(crate) fn below_ratio(&self, ratio: f64) -> bool {
        (self.alive() as f64) < ratio * self.original as f64
    }

    /// Sets or clears `flag` ([`DISABLED`] or [`EJECTED`]) of entry `i`.
    pub(crate) fn set_flag(&self, i: usize, flag: u8, on: bool) {
        let flags = &self.entries[i].flags;
        if on {
            flags.fetch_or(flag, Relaxed);
        } else {
            flags.fetch_and(!flag, Relaxed);
        }
    }

    /// Whether entry `i` has `flag` set.
    pub(crate) fn has_flag(&self, i: usize, flag: u8) -> bool {
        self.entries[i].flags.load(Relaxed) & flag != 0
    }

    pub(crate) fn is_disabled(&self, i: usize) -> bool {
        self.has_flag(i, DISABLED)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
