//! Membership: refresh from the source, members taken out by hand, notices of death, and the
//! balancer's side of ratio-triggered refreshes, which its refresher flies.

use std::sync::{atomic::Ordering::Relaxed, Arc};

use tokio::time::Instant;

use super::ejection::Ejections;
use super::{
    refresher::{Busy, Target},
    Balancer, Shared,
};
use crate::{
    member::Member,
    snapshot::{Snapshot, DISABLED, EJECTED},
};

/// State that only the holder of the writer lock touches.
pub(super) struct Writer<M> {
    /// Members taken out of rotation by hand, re-applied at every refresh.
    disabled: Vec<M>,
    /// How `disabled` and ejected members are matched; set by the first `disable` or
    /// report, which have `M: PartialEq`.
    pub(super) eq: Option<fn(&M, &M) -> bool>,
    /// Members ejected for their failures, and how often each has been.
    pub(super) ejection: Ejections<M>,
    /// Members new to the source, ramping up (slow start).
    pub(super) warming: super::slow_start::Warming<M>,
}

impl<M> Writer<M> {
    pub(super) fn new() -> Self {
        Self {
            disabled: Vec::new(),
            eq: None,
            ejection: Ejections::default(),
            warming: super::slow_start::Warming::default(),
        }
    }

    fn is_disabled(&self, m: &M) -> bool {
        self.eq
            .is_some_and(|eq| self.disabled.iter().any(|d| eq(d, m)))
    }

    /// The flags a new snapshot gives `m`: disabled by hand, ejected.
    fn flags(&self, m: &M) -> u8 {
        let mut flags = 0;
        if self.is_disabled(m) {
            flags |= DISABLED;
        }
        if self.ejection.is_ejected(m) {
            flags |= EJECTED;
        }
        flags
    }
}

impl<M: Member> Balancer<M> {
    /// Reloads the members from the source now, whatever the ratio, and returns how many of
    /// them are alive.
    ///
    /// Pickers are not held up: they deal from the old snapshot until the new one is stored,
    /// and a pick that begins after `refresh` returns deals only from the new one. Members that
    /// were [disabled](Balancer::disable) stay disabled if the source still returns them.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// use croupier::{Balancer, Member};
    ///
    /// #[derive(Clone)]
    /// struct W;
    /// impl Member for W {
    ///     fn is_alive(&self) -> bool { true }
    /// }
    ///
    /// let size = Arc::new(Mutex::new(2));
    /// let s = Arc::clone(&size);
    /// let b = Balancer::builder()
    ///     .source(move || vec![W; *s.lock().unwrap()])
    ///     .build()?;
    /// assert_eq!(b.members().len(), 2);
    ///
    /// *size.lock().unwrap() = 5;
    /// assert_eq!(b.refresh(), 5);
    /// assert_eq!(b.stats().generation, 1);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn refresh(&self) -> usize {
        let mut writer = self.shared.writer.lock();
        self.shared.reload(&mut writer)
    }

    /// The members of the current snapshot, in round-robin order, dead and disabled included.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone, Debug, PartialEq)] struct W(u8);
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().source(vec![W(1), W(2)]).build()?;
    /// assert_eq!(b.members(), vec![W(1), W(2)]);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn members(&self) -> Vec<M> {
        self.shared
            .snapshot
            .load()
            .entries
            .iter()
            .map(|e| e.member.clone())
            .collect()
    }

    /// Records that `member` is dead without waiting for a pick to find out, as an Erlang
    /// monitor's `'DOWN'` message would, and refreshes if that crosses the ratio. Returns whether
    /// the member was in the current snapshot and not already known dead.
    ///
    /// The member must also answer `false` from [`is_alive`](Member::is_alive); this only
    /// makes the balancer learn of it sooner. Unlike a pick, it runs a refresh it triggers
    /// itself, on the calling thread (unless one is already under way).
    pub fn notify_dead(&self, member: &M) -> bool
    where
        M: PartialEq,
    {
        let shared = &*self.shared;
        let snap = shared.snapshot.load();
        let Some(i) = snap.entries.iter().position(|e| e.member == *member) else {
            return false;
        };
        if !snap.mark_dead(i) {
            return false;
        }
        shared.counters.skipped_dead.fetch_add(1, Relaxed);
        shared.meter.found_dead(1);
        if snap.below_ratio(shared.min_alive_ratio) {
            drop(snap);
            if shared.refreshing.request() {
                shared.fly_here();
            }
        }
        true
    }

    /// Takes `member` out of rotation until [`enable`](Balancer::enable): it is not handed
    /// out, though it stays in [`members`](Balancer::members). Members are matched with
    /// [`PartialEq`]. A disabled member stays disabled across refreshes for as long as the
    /// source keeps returning it. Returns whether the member is in the current snapshot.
    ///
    /// Disabling does not count towards the refresh ratio: it is a decision, not a death.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    /// # #[derive(Clone, Debug, PartialEq)] struct W(u8);
    /// # impl Member for W { fn is_alive(&self) -> bool { true } }
    /// let b = Balancer::builder().source(vec![W(1), W(2)]).build()?;
    /// assert!(b.disable(&W(1)));
    /// assert!((0..4).all(|_| *b.pick().unwrap() == W(2)));
    /// assert!(b.enable(&W(1)));
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn disable(&self, member: &M) -> bool
    where
        M: PartialEq,
    {
        let mut writer = self.shared.writer.lock();
        writer.eq = Some(<M as PartialEq>::eq);
        if !writer.disabled.contains(member) {
            writer.disabled.push(member.clone());
        }
        self.set_disabled(member, true)
    }

    /// Puts a member taken out by [`disable`](Balancer::disable) back into rotation. Returns
    /// whether the member is in the current snapshot.
    pub fn enable(&self, member: &M) -> bool
    where
        M: PartialEq,
    {
        let mut writer = self.shared.writer.lock();
        writer.disabled.retain(|d| d != member);
        self.set_disabled(member, false)
    }

    /// Sets the disabled flag of every entry holding `member`. The caller holds the writer
    /// lock, so no refresh can slip in between this and the writer's list.
    fn set_disabled(&self, member: &M, disabled: bool) -> bool
    where
        M: PartialEq,
    {
        let snap = self.shared.snapshot.load();
        let mut found = false;
        for (i, entry) in snap.entries.iter().enumerate() {
            if entry.member == *member {
                snap.set_flag(i, DISABLED, disabled);
                found = true;
            }
        }
        found
    }
}

impl<M: Member> Shared<M> {
    /// Sends the ratio-refresh flight the caller owns on its way: hands it to this balancer's
    /// refresher and wakes it (no lock, no allocation: what a pick does), or, when there is no
    /// refresher, flies it here.
    pub(super) fn fly_ratio_refresh(&self) {
        self.refreshing.hand_off();
        // Taken back only when there is no refresher; if one fell back meanwhile and took it
        // first, it flies it, and this take finds nothing.
        if !self.refresher.wake() && self.refreshing.take_handoff() {
            self.fly_here();
        }
    }

    /// Flies the ratio-refresh flight the caller owns, on this thread: reloads if the stored
    /// snapshot is below the ratio, and again for requests made meanwhile. Returns whether it
    /// reloaded.
    fn fly_here(&self) -> bool {
        let ratio = self.min_alive_ratio;
        self.refreshing.fly(
            || self.writer.lock(),
            |_| self.snapshot.load().below_ratio(ratio),
            |writer| {
                self.reload(writer);
            },
        )
    }

    /// Builds and stores a new snapshot from the source. The caller holds the writer lock.
    pub(super) fn reload(&self, writer: &mut Writer<M>) -> usize {
        let members = self.source.members();
        let generation = self.snapshot.load().generation + 1;
        let prev = self.snapshot.load();
        let weights = self.ramp_weights(writer, &prev, &members, self.refresher.now());
        let warming = weights.is_some();
        let next = Snapshot::with_weights(members, generation, |m| writer.flags(m), weights);
        if let Some(&same) = self.same.get() {
            carry_reports(&prev, &next, same);
        }
        drop(prev);
        if self.affinity_used.load(Relaxed) {
            next.table();
        }
        // Forget disabled members the source no longer returns, so the list cannot grow
        // without bound over restarts.
        if let Some(eq) = writer.eq {
            writer
                .disabled
                .retain(|d| next.entries.iter().any(|e| eq(d, &e.member)));
        }
        writer.ejection.retain_in(&next);
        let alive = next.original;
        self.snapshot.store(Arc::new(next));
        self.counters.refreshes.fetch_add(1, Relaxed);
        self.meter.refreshed();
        self.publish();
        if warming {
            // The refresher times the ramp's next step.
            self.refresher.wake();
        }
        alive
    }
}

impl<M: Member> Target for Shared<M> {
    fn take_handoff(&self) -> bool {
        self.refreshing.take_handoff()
    }

    fn fly(&self) {
        self.fly_here();
    }

    fn hand_back(&self) {
        self.fly_ratio_refresh();
    }

    fn readmit_due(&self, now: Instant) -> Option<Instant> {
        if self.ejection.is_none() && self.slow_start.is_none() {
            return None;
        }
        self.timed_locked(self.writer.lock(), now)
    }

    fn try_readmit_due(&self, now: Instant) -> Result<Option<Instant>, Busy> {
        if self.ejection.is_none() && self.slow_start.is_none() {
            return Ok(None);
        }
        let writer = self.writer.try_lock().ok_or(Busy)?;
        Ok(self.timed_locked(writer, now))
    }
}

/// Carries what reports counted (failures in a row, recent outcomes) from `old` to `next`
/// for the members that kept their place and are the same one by `same`: so a pool worker's
/// crash, which refreshes the balancer, does not wipe its slot's count.
fn carry_reports<M>(old: &Snapshot<M>, next: &Snapshot<M>, same: fn(&M, &M) -> bool) {
    for (was, now) in old.entries.iter().zip(next.entries.iter()) {
        if same(&was.member, &now.member) {
            now.failures.store(was.failures.load(Relaxed), Relaxed);
            now.outcomes.store(was.outcomes.load(Relaxed), Relaxed);
        }
    }
}

impl<M: Member> Shared<M> {
    /// What the refresher does on time, under the writer lock: slow start's next step, then
    /// re-admissions; when the next of either is due.
    fn timed_locked(
        &self,
        mut writer: parking_lot::MutexGuard<'_, Writer<M>>,
        now: Instant,
    ) -> Option<Instant> {
        let ramp = self.ramp_due(&mut writer, now);
        let readmit = if self.ejection.is_some() {
            self.readmit_locked(writer, now)
        } else {
            None
        };
        match (ramp, readmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
