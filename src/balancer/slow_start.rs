//! Slow start (gRPC A100, Envoy's `slow_start_config`): a member new to the source takes a
//! weight that grows from a minimum share to its full weight over a window, so that a cold
//! member is not sent its full share at once. The ramp is in the snapshot's weights, which
//! the balancer's refresher rebuilds in steps while any member warms.

use std::time::Duration;

use tokio::time::Instant;

use super::{membership::Writer, Shared};
use crate::{member::Member, snapshot::Snapshot};

/// How a new member's weight ramps up; set with
/// [`BalancerBuilder::slow_start`](crate::BalancerBuilder::slow_start).
///
/// A member the source returns that the balancer's previous snapshot did not have (by its
/// [`affinity_key`](crate::Member::affinity_key), else equality) starts warming: for
/// [`window`](SlowStart::window) its weight is its [`weight`](crate::Member::weight) times
/// `max(min_weight, (t / window)^(1 / aggression))`, `t` the time since it joined (at least
/// one second, as A100's formula), by the balancer's clock. Round robin and weighted key
/// affinity share by weight, so a warming member's share follows the ramp; least loaded and
/// power of two compare load per unit of weight, so a warming member with as much load as
/// another weighs more (idle members still tie). Defaults, as gRPC's and Envoy's: aggression
/// 1 (a straight line), a minimum of 10 %.
///
/// The members present when the balancer is built do not warm. The weights are rebuilt by
/// the balancer's refresher every twentieth of the window (at most every 100 ms) while a
/// member warms; a balancer without a refresher ramps only at its refreshes.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use croupier::SlowStart;
///
/// let s = SlowStart::new(Duration::from_secs(30)).aggression(2.0).min_weight(0.05);
/// assert_eq!(s.window(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    window: Duration,
    aggression: f64,
    min_weight: f64,
}

impl SlowStart {
    /// A ramp over `window` (at least 1 ms), a straight line from 10 %.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window: window.clamp(Duration::from_millis(1), FOR_EVER),
            aggression: 1.0,
            min_weight: 0.1,
        }
    }

    /// How the weight grows: `(t / window)^(1 / aggression)`; above 1 it rises faster early,
    /// below 1 later. Clamped to `[0.01, 100]` (NaN is 1).
    #[must_use]
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.aggression = if aggression.is_nan() {
            1.0
        } else {
            aggression.clamp(0.01, 100.0)
        };
        self
    }

    /// The least share of its weight a new member starts with, in `[0, 1]` (NaN is 0); a
    /// positive weight never scales below one unit.
    #[must_use]
    pub fn min_weight(mut self, share: f64) -> Self {
        self.min_weight = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// The window, as set.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The share of its weight a member that joined `age` ago has: `min_weight` at first, 1
    /// from the end of the window on (ages under one second count as one second, as in
    /// A100's formula).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::SlowStart;
    ///
    /// let s = SlowStart::new(Duration::from_secs(10));
    /// assert_eq!(s.factor(Duration::ZERO), 0.1);
    /// assert_eq!(s.factor(Duration::from_secs(5)), 0.5);
    /// assert_eq!(s.factor(Duration::from_secs(60)), 1.0);
    /// ```
    #[must_use]
    pub fn factor(&self, age: Duration) -> f64 {
        let t = age
            .max(Duration::from_secs(1))
            .min(self.window)
            .as_secs_f64();
        let ramp = (t / self.window.as_secs_f64()).powf(1.0 / self.aggression);
        ramp.max(self.min_weight).min(1.0)
    }

    /// How often the weights are rebuilt while a member warms.
    fn step(&self) -> Duration {
        (self.window / 20).max(Duration::from_millis(100))
    }
}

/// Thirty years: the longest window.
const FOR_EVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// Weights while some member warms are scaled by this, so that a tenth of a weight of 1 is
/// still a whole unit.
const SCALE: u32 = 100;

/// The members warming, and when the weights are next rebuilt; under the writer lock.
pub(super) struct Warming<M> {
    /// Each warming member and when it joined.
    members: Vec<(M, Instant)>,
    /// When the weights are next rebuilt.
    next: Option<Instant>,
}

impl<M> Default for Warming<M> {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            next: None,
        }
    }
}

impl<M: Member> Shared<M> {
    /// Notes the members of `members` that `prev` did not have as warming from `now`, forgets
    /// those that finished or left, and answers the weight each member is to have.
    pub(super) fn ramp_weights(
        &self,
        writer: &mut Writer<M>,
        prev: &Snapshot<M>,
        members: &[M],
        now: Instant,
    ) -> Option<Vec<u32>> {
        let (config, &same) = (self.slow_start?, self.same.get()?);
        let warming = &mut writer.warming.members;
        warming.retain(|(m, since)| {
            now.saturating_duration_since(*since) < config.window
                && members.iter().any(|n| same(m, n))
        });
        for (k, m) in members.iter().enumerate() {
            let known = prev.entries.get(k).is_some_and(|e| same(&e.member, m))
                || prev.entries.iter().any(|e| same(&e.member, m));
            if !known && !warming.iter().any(|(w, _)| same(w, m)) {
                warming.push((m.clone(), now));
            }
        }
        if warming.is_empty() {
            writer.warming.next = None;
            return None;
        }
        writer.warming.next = Some(now + config.step());
        let weights = members
            .iter()
            .map(|m| {
                let full = m.weight().saturating_mul(SCALE);
                match warming.iter().find(|(w, _)| same(w, m)) {
                    None => full,
                    Some((_, since)) if full > 0 => {
                        let f = config.factor(now.saturating_duration_since(*since));
                        ((f64::from(full) * f) as u32).max(1)
                    }
                    Some(_) => 0,
                }
            })
            .collect();
        Some(weights)
    }

    /// Rebuilds the weights if a step is due at `now`; when the next one is.
    pub(super) fn ramp_due(&self, writer: &mut Writer<M>, now: Instant) -> Option<Instant> {
        let next = writer.warming.next?;
        if next > now {
            return Some(next);
        }
        self.reload(writer);
        writer.warming.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_follows_a100s_formula() {
        let s = SlowStart::new(Duration::from_secs(10));
        let f = |secs| s.factor(Duration::from_secs(secs));
        assert!((f(0) - 0.1).abs() < 1e-9, "at least a second: 1/10");
        assert!((f(5) - 0.5).abs() < 1e-9);
        assert!((f(10) - 1.0).abs() < 1e-9);
        assert!((f(99) - 1.0).abs() < 1e-9);
        let s = s.aggression(2.0).min_weight(0.0);
        assert!((s.factor(Duration::from_millis(2500)) - 0.5).abs() < 1e-9);
        assert_eq!(s.step(), Duration::from_millis(500));
        assert_eq!(
            SlowStart::new(Duration::ZERO).window(),
            Duration::from_millis(1)
        );
        assert_eq!(
            SlowStart::new(Duration::from_secs(1)).step(),
            Duration::from_millis(100)
        );
        assert_eq!(
            SlowStart::new(Duration::MAX).window(),
            Duration::from_secs(30 * 365 * 86_400),
            "thirty years at most"
        );
    }
}
