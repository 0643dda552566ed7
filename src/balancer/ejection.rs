//! Outlier ejection (passive health checking, as Envoy's `outlier_detection`): callers report
//! how each request went; a member with too many failures in a row leaves rotation for a
//! while, never more than a set share of the members at once, and a timer brings it back.
//!
//! Reports touch the picked entry only (a counter of failures in a row), so they cost a pick
//! nothing. Ejecting and re-admitting are slow paths under the writer lock; the ejected set is
//! kept there, by member, so that it survives refreshes. The balancer's refresher re-admits
//! members when their time is up (and so does any report that finds one due, should the
//! balancer have no refresher).
//!
//! Ejections are timed by the balancer's clock (`Refresher::now`): the runtime's it was built
//! on, so that a paused clock times them too, or the system's without one.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use parking_lot::MutexGuard;
use tokio::time::Instant;

use super::{membership::Writer, Balancer, Picked, Shared};
use crate::{
    member::Member,
    snapshot::{Snapshot, EJECTED},
};

/// When a member is ejected and for how long; set with
/// [`BalancerBuilder::outlier_ejection`](crate::BalancerBuilder::outlier_ejection).
///
/// After [`consecutive_failures`](Ejection::consecutive_failures) failures in a row a member
/// leaves rotation for [`base_time`](Ejection::base_time) times the number of times it has
/// been ejected, at most [`max_time`](Ejection::max_time), give or take 10 % (so members
/// ejected together do not all come back at once). No more than
/// [`max_share`](Ejection::max_share) of the members are out at once (at least one may be).
/// Defaults, as Envoy's: 5 failures, 30 s, 300 s, 10 %. With
/// [`success_rate`](Ejection::success_rate), a member whose recent requests mostly fail is
/// ejected too, failures in a row or not.
///
/// A member is known across refreshes by its [`affinity_key`](crate::Member::affinity_key)
/// when it has one (a pool's worker by its slot, a remote node by its name), else by
/// `PartialEq`: so a pool worker that keeps crashing is ejected, though each crash restarts it
/// as a new incarnation, and it stays out through its restarts.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use croupier::Ejection;
///
/// let e = Ejection::default()
///     .consecutive_failures(3)
///     .base_time(Duration::from_secs(10))
///     .max_share(0.5);
/// assert_eq!(e.max_time_value(), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ejection {
    failures: u32,
    base: Duration,
    max: Duration,
    share: f64,
    rate: Option<SuccessRate>,
}

/// Success-rate ejection's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SuccessRate {
    /// The least share of successes a member may have.
    min: f64,
    /// Over at least this many of its recent requests.
    requests: u32,
}

/// The largest `min_requests`: the window's two counts (up to twice it) fit 32 bits each.
const MAX_REQUESTS: u32 = 1 << 30;

impl Default for Ejection {
    fn default() -> Self {
        Self {
            failures: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
            share: 0.1,
            rate: None,
        }
    }
}

impl Ejection {
    /// Failures in a row that eject a member (at least 1).
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.failures = n.max(1);
        self
    }

    /// The first ejection's length; the `k`-th lasts `k` times as long. `Duration::MAX`
    /// means for ever (in practice, thirty years); `Duration::ZERO`, back at the refresher's
    /// next look.
    #[must_use]
    pub fn base_time(mut self, d: Duration) -> Self {
        self.base = d;
        self
    }

    /// The longest an ejection lasts; `Duration::MAX` (no cap) and `Duration::ZERO` are
    /// both accepted.
    #[must_use]
    pub fn max_time(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// The largest share of the members out at once, in `[0, 1]`; at least one member may
    /// be ejected whatever the share.
    #[must_use]
    pub fn max_share(mut self, share: f64) -> Self {
        self.share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// Also ejects a member whose share of successes over its recent requests falls below
    /// `min_rate`, once it has had at least `min_requests` of them (Envoy's
    /// `failure_percentage`, with an absolute threshold: a member that fails half its
    /// requests, alternating, never fails five in a row). Off by default.
    ///
    /// The window is counted in requests, not time, so that reports read no clock: each
    /// member's successes and failures are counted until they reach `2 × min_requests`, then
    /// both are halved, so the rate covers its last `min_requests` to `2 × min_requests`
    /// requests, older ones weighing less. `min_rate` is clamped to `[0, 1]` (NaN is 0: off),
    /// `min_requests` to `1..=2³⁰`. Each report writes a counter while this is on.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Ejection, Member, Outcome};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Backend(u8);
    /// impl Member for Backend {
    ///     fn is_alive(&self) -> bool { true }
    /// }
    ///
    /// let b = Balancer::builder()
    ///     .outlier_ejection(Ejection::default().success_rate(0.8, 10).max_share(0.5))
    ///     .source(vec![Backend(0), Backend(1)])
    ///     .build()?;
    /// // Backend(0) fails every other request: never five in a row, but half of them.
    /// let mut zeros = 0;
    /// for _ in 0..40 {
    ///     let p = b.pick().unwrap();
    ///     let fails = p.0 == 0 && { zeros += 1; zeros % 2 == 0 };
    ///     p.report(if fails { Outcome::Failure } else { Outcome::Success });
    /// }
    /// assert_eq!(b.stats().ejected, 1);
    /// assert!((0..4).all(|_| b.pick().unwrap().0 == 1));
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    #[must_use]
    pub fn success_rate(mut self, min_rate: f64, min_requests: u32) -> Self {
        let min = if min_rate.is_nan() {
            0.0
        } else {
            min_rate.clamp(0.0, 1.0)
        };
        self.rate = Some(SuccessRate {
            min,
            requests: min_requests.clamp(1, MAX_REQUESTS),
        });
        self
    }

    /// The longest an ejection lasts, as set.
    #[must_use]
    pub fn max_time_value(&self) -> Duration {
        self.max
    }

    /// How long the `times`-th ejection lasts: base × times, at most the max, then scaled by
    /// `0.9 + r / 10 000` for `r` in `0..=2000` (± 10 %).
    fn length(&self, times: u32, r: u64) -> Duration {
        let length = self.base.saturating_mul(times).min(self.max);
        // Saturating: `Duration::MAX` (for ever) stays for ever, jitter or not.
        Duration::try_from_secs_f64(length.as_secs_f64() * (0.9 + (r % 2001) as f64 / 10_000.0))
            .unwrap_or(Duration::MAX)
    }
}

/// How a request to a picked member went, for [`Picked::report`] and [`Balancer::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It answered: its failures in a row start again from zero.
    Success,
    /// It failed (an error, a timeout): one more failure in a row.
    Failure,
}

/// Which member a report is about: the snapshot and position a pick handed out. `Copy`, so
/// a caller keeps it while the [`Picked`] guard is long gone (across an `.await`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    generation: u64,
    index: usize,
    /// The member's affinity key, when ejection is on and it has one: what finds it again in
    /// a newer snapshot.
    seat: Option<u64>,
}

impl Ticket {
    /// The ticket of the member with affinity key `seat` instead (a pool worker that took a
    /// message handed back by the one picked): found by that key in the current snapshot.
    /// Without ejection (no key kept), the report is dropped.
    pub(crate) fn handled_by(self, seat: u64) -> Self {
        Self {
            generation: u64::MAX,
            index: self.index,
            seat: self.seat.map(|_| seat),
        }
    }
}

impl<M: Member> Picked<'_, M> {
    /// The ticket to [report](Balancer::report) this pick's outcome with, later.
    #[must_use]
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation(),
            index: self.index(),
            seat: if self.balancer().shared.ejection.is_some() {
                self.affinity_key()
            } else {
                None
            },
        }
    }
}

impl<M: Member + PartialEq> Picked<'_, M> {
    /// Reports how the request to this member went (see [`Balancer::report`]).
    pub fn report(self, outcome: Outcome) {
        let (balancer, ticket) = (self.balancer(), self.ticket());
        drop(self);
        balancer.report(ticket, outcome);
    }
}

/// The ejected members and the ejection history, kept under the writer lock.
pub(super) struct Ejections<M> {
    /// Out of rotation until the instant.
    out: Vec<(M, Instant)>,
    /// How many times each member has been ejected.
    times: Vec<(M, u32)>,
    /// Ejections so far, for the jitter.
    total: u64,
    /// Whether two members are the same one ([`same`]); set by the first ejection.
    pub(super) same: Option<fn(&M, &M) -> bool>,
}

impl<M> Default for Ejections<M> {
    fn default() -> Self {
        Self {
            out: Vec::new(),
            times: Vec::new(),
            total: 0,
            same: None,
        }
    }
}

impl<M> Ejections<M> {
    pub(super) fn is_ejected(&self, m: &M) -> bool {
        self.same
            .is_some_and(|same| self.out.iter().any(|(o, _)| same(o, m)))
    }

    /// Keeps only the members the source still returns (those of `next`, by [`same`]).
    pub(super) fn retain_in(&mut self, next: &Snapshot<M>) {
        let Some(same) = self.same else { return };
        let keep = |m: &M| next.entries.iter().any(|e| same(m, &e.member));
        self.out.retain(|(m, _)| keep(m));
        self.times.retain(|(m, _)| keep(m));
    }

    /// How many are out now.
    pub(super) fn len(&self) -> usize {
        self.out.len()
    }

    /// When the next one is due back.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.out.iter().map(|&(_, t)| t).min()
    }
}

impl<M: Member> Balancer<M> {
    /// Reports how a request to a picked member went, for outlier ejection (configured with
    /// [`outlier_ejection`](crate::BalancerBuilder::outlier_ejection); without it a report
    /// does nothing). [`Pool::call`](crate::Pool::call) and
    /// [`Balance`](crate::balance::Balance) report on their own.
    ///
    /// A report is counted against the member it was picked as. After a refresh, it finds the
    /// member in the new snapshot by its [`affinity_key`](Member::affinity_key) (so a pool
    /// worker's crash counts against its slot, restarted or not); a member without one is
    /// found only in the snapshot it was picked from, and the report is dropped once a
    /// refresh has replaced that. Failures in a row and success rates carry over a refresh
    /// for members that keep their place and key (or equality).
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Ejection, Member, Outcome};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Backend(u8);
    /// impl Member for Backend {
    ///     fn is_alive(&self) -> bool { true }
    /// }
    ///
    /// let b = Balancer::builder()
    ///     .outlier_ejection(Ejection::default().consecutive_failures(2).max_share(0.5))
    ///     .source(vec![Backend(0), Backend(1)])
    ///     .build()?;
    /// for _ in 0..2 {
    ///     let p = b.pick().unwrap();
    ///     let outcome = if p.0 == 0 { Outcome::Failure } else { Outcome::Success };
    ///     let ticket = p.ticket();
    ///     drop(p); // the guard goes before the request is awaited
    ///     b.report(ticket, outcome);
    /// }
    /// let p = b.pick().unwrap();
    /// p.report(Outcome::Failure); // Backend(0)'s second failure in a row: ejected
    /// assert_eq!(b.stats().ejected, 1);
    /// assert!((0..4).all(|_| b.pick().unwrap().0 == 1));
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn report(&self, ticket: Ticket, outcome: Outcome)
    where
        M: PartialEq,
    {
        let shared = &*self.shared;
        let Some(config) = shared.ejection else {
            return;
        };
        let snap = shared.snapshot.load();
        let Some(i) = locate(&snap, ticket) else {
            return;
        };
        let entry = &snap.entries[i];
        match outcome {
            Outcome::Success => {
                // Read first: a healthy member's reports write nothing.
                if entry.failures.load(Relaxed) != 0 {
                    entry.failures.store(0, Relaxed);
                }
                if let Some(rate) = config.rate {
                    tally(&entry.outcomes, true, rate);
                }
            }
            Outcome::Failure => {
                let _ = shared.same.set(same::<M>);
                let n = entry.failures.fetch_add(1, Relaxed) + 1;
                let by_rate = config
                    .rate
                    .is_some_and(|rate| tally(&entry.outcomes, false, rate));
                if (n >= config.failures || by_rate) && !snap.has_flag(i, EJECTED) {
                    shared.eject(&snap, i, config);
                }
            }
        }
        if shared.readmits_on_reports() {
            shared.readmit_locked(shared.writer.lock(), shared.refresher.now());
        }
    }
}

impl<M: Member> Shared<M> {
    /// Whether reports re-admit due members themselves: only when no refresher does.
    fn readmits_on_reports(&self) -> bool {
        self.refresher.is_inline()
    }

    /// Ejects entry `i` of `snap` if the share allows.
    fn eject(&self, snap: &Snapshot<M>, i: usize, config: Ejection)
    where
        M: PartialEq,
    {
        let mut writer = self.writer.lock();
        writer.ejection.same = Some(same::<M>);
        let member = &snap.entries[i].member;
        if writer.ejection.is_ejected(member) {
            return;
        }
        let members = snap.len();
        let allowed = ((config.share * members as f64).floor() as usize).max(1);
        if writer.ejection.len() >= allowed {
            tracing::debug!(
                balancer = self.meter.name(),
                ejected = writer.ejection.len(),
                "croupier: a member failed enough to be ejected, but the ejected share is full"
            );
            return;
        }
        let e = &mut writer.ejection;
        let times = match e.times.iter_mut().find(|(m, _)| same(m, member)) {
            Some((_, t)) => {
                *t = t.saturating_add(1);
                *t
            }
            None => {
                e.times.push((member.clone(), 1));
                1
            }
        };
        e.total += 1;
        // ±10 %, from the ejection count: repeatable, and different for members ejected
        // together.
        let length = config.length(times, crate::mix::splitmix64(e.total ^ self.rule.seed));
        let until = ends(self.refresher.now(), length);
        e.out.push((member.clone(), until));
        // Flag it in the current snapshot (which may be newer than `snap`).
        let now = self.snapshot.load();
        for (k, entry) in now.entries.iter().enumerate() {
            if same(&entry.member, member) {
                now.set_flag(k, EJECTED, true);
                entry.member.on_ejection(true);
            }
        }
        drop(writer);
        self.counters
            .ejections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.meter.ejected();
        tracing::warn!(
            balancer = self.meter.name(),
            index = i,
            times,
            for_ms = length.as_millis() as u64,
            "croupier: member ejected after failures in a row"
        );
        // Without a refresher, reports re-admit: nothing to wake.
        self.refresher.wake();
    }

    /// Re-admits every ejected member whose time is up at `now`, under the writer lock the
    /// caller took; returns when the next one is due.
    pub(super) fn readmit_locked(
        &self,
        mut writer: MutexGuard<'_, Writer<M>>,
        now: Instant,
    ) -> Option<Instant> {
        let next = writer.ejection.next_due()?;
        if !is_due(next, now) {
            return Some(next);
        }
        let same = writer.ejection.same?;
        let snap = self.snapshot.load();
        let mut back = 0;
        writer.ejection.out.retain(|(m, until)| {
            if !is_due(*until, now) {
                return true;
            }
            for (k, entry) in snap.entries.iter().enumerate() {
                if same(&entry.member, m) {
                    snap.set_flag(k, EJECTED, false);
                    entry.failures.store(0, Relaxed);
                    entry.outcomes.store(0, Relaxed);
                    entry.member.on_ejection(false);
                }
            }
            back += 1;
            false
        });
        let next = writer.ejection.next_due();
        drop(writer);
        for _ in 0..back {
            self.meter.readmitted();
        }
        tracing::info!(
            balancer = self.meter.name(),
            readmitted = back,
            "croupier: ejected member(s) back in rotation"
        );
        self.publish();
        next
    }
}

/// Whether `a` and `b` are the same member for ejection: by
/// [`affinity_key`](Member::affinity_key) when both have one, else by equality.
pub(super) fn same<M: Member + PartialEq>(a: &M, b: &M) -> bool {
    match (a.affinity_key(), b.affinity_key()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The entry of `snap` a ticket's report is about: its own index in the snapshot it was
/// picked from; in a newer one, the entry with its affinity key (at the same index first).
fn locate<M: Member>(snap: &Snapshot<M>, ticket: Ticket) -> Option<usize> {
    let i = ticket.index;
    if snap.generation == ticket.generation {
        return (i < snap.len()).then_some(i);
    }
    let seat = Some(ticket.seat?);
    if i < snap.len() && snap.entries[i].member.affinity_key() == seat {
        return Some(i);
    }
    snap.entries
        .iter()
        .position(|e| e.member.affinity_key() == seat)
}

/// Counts one report in a member's recent outcomes (successes in the high half, failures in
/// the low), halving both once they reach twice the window; true when the report is a
/// failure that leaves the member's success share below the minimum over enough requests.
fn tally(outcomes: &AtomicU64, success: bool, rate: SuccessRate) -> bool {
    let add = if success { 1 << 32 } else { 1 };
    let now = outcomes.fetch_add(add, Relaxed).wrapping_add(add);
    let (successes, failures) = (now >> 32, now & u64::from(u32::MAX));
    let total = successes + failures;
    let window = u64::from(rate.requests);
    if total >= 2 * window {
        // A racing report makes this miss; the next one halves.
        let halved = ((successes / 2) << 32) | (failures / 2);
        let _ = outcomes.compare_exchange(now, halved, Relaxed, Relaxed);
    }
    !success && total >= window && (successes as f64) < rate.min * total as f64
}

/// Thirty years: as far as an ejection "for ever" (`Duration::MAX`) is put off, so that its
/// end is still an instant the clocks can hold.
const FOR_EVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// When an ejection of `length` that starts at `now` ends: `length` capped at thirty years.
fn ends(now: Instant, length: Duration) -> Instant {
    now.checked_add(length.min(FOR_EVER))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// Whether an ejection that ends at `until` is over at `now`.
fn is_due(until: Instant, now: Instant) -> bool {
    until <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Duration::MAX` is for ever: thirty years on, jitter and all, never an overflow.
    #[test]
    fn an_ejection_for_ever_ends_thirty_years_on() {
        let e = Ejection::default()
            .base_time(Duration::MAX)
            .max_time(Duration::MAX);
        assert_eq!(e.length(u32::MAX, 2000), Duration::MAX);
        let now = Instant::now();
        let thirty_years = Duration::from_secs(30 * 365 * 86_400);
        assert_eq!(ends(now, Duration::MAX) - now, thirty_years);
        assert_eq!(
            ends(now, Duration::from_secs(5)) - now,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn lengths_grow_with_each_ejection_up_to_the_max_within_ten_percent() {
        let e = Ejection::default()
            .base_time(Duration::from_secs(10))
            .max_time(Duration::from_secs(25));
        assert_eq!(e.max_time_value(), Duration::from_secs(25));
        let mid = 1000; // no jitter: 0.9 + 0.1
        assert_eq!(e.length(1, mid), Duration::from_secs(10));
        assert_eq!(e.length(2, mid), Duration::from_secs(20));
        assert_eq!(e.length(3, mid), Duration::from_secs(25), "capped");
        assert_eq!(e.length(1, 0), Duration::from_secs(9));
        assert_eq!(e.length(1, 2000), Duration::from_secs(11));
        assert_eq!(
            e.length(1, 2001),
            Duration::from_secs(9),
            "r wraps into 0..=2000"
        );
        assert_eq!(
            Ejection::default().max_time_value(),
            Duration::from_secs(300)
        );
    }

    /// The success tally: a failure ejects once enough requests were counted and successes
    /// fall short; both counts halve at twice the window.
    #[test]
    fn the_success_tally_counts_a_window_of_requests() {
        let rate = SuccessRate {
            min: 0.5,
            requests: 4,
        };
        let t = AtomicU64::new(0);
        assert!(!tally(&t, false, rate), "one request is not enough");
        assert!(!tally(&t, true, rate));
        assert!(!tally(&t, false, rate), "3 requests");
        assert!(tally(&t, false, rate), "4 requests, 1 success: below half");
        assert!(!tally(&t, true, rate), "a success never ejects");
        // 5 requests (2 successes, 3 failures): below 8, no halving yet.
        assert_eq!(t.load(Relaxed), (2 << 32) | 3);
        for _ in 0..3 {
            tally(&t, true, rate);
        }
        // 8 requests (5, 3): halved to (2, 1).
        assert_eq!(t.load(Relaxed), (2 << 32) | 1);
        assert!(
            !tally(&t, false, rate),
            "4 requests, 2 successes: not below half"
        );
        // Eight failures in a row: halved to (0, 4), not to (0, 8 mod 2).
        let t = AtomicU64::new(0);
        for _ in 0..8 {
            tally(&t, false, rate);
        }
        assert_eq!(t.load(Relaxed), 4);
        let strict = SuccessRate {
            min: 1.0,
            requests: 1,
        };
        assert!(tally(&AtomicU64::new(0), false, strict));
        assert!(!tally(&AtomicU64::new(0), true, strict));
        let e = Ejection::default().success_rate(f64::NAN, 0);
        assert_eq!(
            e.rate,
            Some(SuccessRate {
                min: 0.0,
                requests: 1
            })
        );
        let e = Ejection::default().success_rate(2.0, u32::MAX);
        assert_eq!(
            e.rate,
            Some(SuccessRate {
                min: 1.0,
                requests: MAX_REQUESTS
            })
        );
    }

    #[test]
    fn settings_are_kept_in_range() {
        let e = Ejection::default()
            .consecutive_failures(0)
            .max_share(f64::NAN);
        assert_eq!((e.failures, e.share), (1, 0.0));
        assert_eq!(Ejection::default().max_share(2.0).share, 1.0);
    }
}
