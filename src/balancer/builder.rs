//! Configuration of a [`Balancer`], checked at `build()`.

use std::{
    borrow::Cow,
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hasher},
};

use super::{Balancer, Config, Ejection, SlowStart};
use crate::{
    config::ConfigError,
    member::{Member, Source},
    policy::{Policy, Rule},
};

/// Configures a [`Balancer`]; made by [`Balancer::builder`].
///
/// Only [`source`](BalancerBuilder::source) is required. Settings are checked at
/// [`build`](BalancerBuilder::build), which refuses bad ones with a [`ConfigError`].
///
/// # Example
///
/// ```
/// use croupier::{Balancer, ConfigError, Member, Policy};
/// # #[derive(Clone)] struct W;
/// # impl Member for W { fn is_alive(&self) -> bool { true } }
///
/// let b = Balancer::builder()
///     .policy(Policy::LeastLoaded)
///     .min_alive_ratio(0.5)
///     .max_load(1000)
///     .source(|| vec![W, W])
///     .build()?;
/// assert_eq!(b.members().len(), 2);
///
/// let bad = Balancer::<W>::builder().min_alive_ratio(1.5).source(Vec::new()).build();
/// assert_eq!(bad.unwrap_err(), ConfigError::InvalidRatio(1.5));
/// # Ok::<(), ConfigError>(())
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct BalancerBuilder<M> {
    policy: Policy,
    min_alive_ratio: f64,
    max_load: Option<usize>,
    seed: Option<u64>,
    bound: Option<f64>,
    ejection: Option<Ejection>,
    slow_start: Option<(SlowStart, Same<M>)>,
    source: Option<Box<dyn Source<M>>>,
    name: Option<Cow<'static, str>>,
}

impl<M: Member> BalancerBuilder<M> {
    pub(super) fn new() -> Self {
        Self {
            policy: Policy::default(),
            min_alive_ratio: DEFAULT_MIN_ALIVE_RATIO,
            max_load: None,
            seed: None,
            bound: None,
            ejection: None,
            slow_start: None,
            source: None,
            name: None,
        }
    }

    /// The rule to pick by; [`Policy::RoundRobin`] by default.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Refresh from the source once live members fall below this share of those alive at the
    /// last refresh. Must lie in `(0, 1]`; ballermann's default, `0.8`, if unset.
    pub fn min_alive_ratio(mut self, ratio: f64) -> Self {
        self.min_alive_ratio = ratio;
        self
    }

    /// Pass over members whose [`load`](Member::load) is `n` or more, and refuse with
    /// [`PickError::Overloaded`](crate::PickError::Overloaded) when all are (revolver's
    /// `max_message_queue_length`). Must be positive; no limit if unset.
    pub fn max_load(mut self, n: usize) -> Self {
        self.max_load = Some(n);
        self
    }

    /// Seeds [`Policy::PowerOfTwo`]'s sampling and [`Policy::LeastLoaded`]'s starting place
    /// (which breaks its ties) so that picks from one thread repeat exactly from run to run.
    /// Random if unset, so that balancers in different processes (masters of one cluster,
    /// say) break ties apart rather than all on the first member.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The balancer's name: the `name` label of its metrics (with the `metrics` feature; see
    /// [the table](crate::docs::metrics)) and what [`Balancer::name`] answers. `"unnamed"` if
    /// unset; balancers that share a name add up in one series.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Key affinity with bounded loads ([`pick_for`](Balancer::pick_for)): a key's member
    /// takes it only while its load is below `(1 + epsilon)` times the average (plus one),
    /// otherwise the key goes to the lightest member (Mirrokni, Thorup and Zadimoghaddam's
    /// consistent hashing with bounded loads, spilling to the lightest member rather than
    /// along the ring). Smaller keeps loads tighter and moves more of the other keys off their
    /// member: in the arena's S8 (one key in ten requests hot, seven members at 85 %), a `Pool`
    /// with `0.4` kept p99 at 1.6× the ideal and 77 % of the other keys at their member,
    /// `0.55` 1.8× and 82 %, `0.9` 2.2× and 89 %. Must be positive and finite.
    /// Without it, a key stays on its member whatever its load (up to `max_load`).
    pub fn bounded_loads(mut self, epsilon: f64) -> Self {
        self.bound = Some(epsilon);
        self
    }

    /// Outlier ejection: members with too many failures in a row, as callers
    /// [report](Balancer::report) them, leave rotation for a while. Off if unset.
    pub fn outlier_ejection(mut self, ejection: Ejection) -> Self {
        self.ejection = Some(ejection);
        self
    }

    /// Slow start: a member new to the source ramps up from a small share of its weight over
    /// a window (see [`SlowStart`]). Off if unset.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use croupier::{Balancer, Member, SlowStart};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Backend(u8);
    /// impl Member for Backend {
    ///     fn is_alive(&self) -> bool { true }
    /// }
    ///
    /// let b = Balancer::builder()
    ///     .slow_start(SlowStart::new(Duration::from_secs(30)))
    ///     .source(vec![Backend(0), Backend(1)])
    ///     .build()?;
    /// // The members there at build do not warm: both are dealt in turn.
    /// assert_eq!(b.pick().unwrap().0, 0);
    /// assert_eq!(b.pick().unwrap().0, 1);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self
    where
        M: PartialEq,
    {
        self.slow_start = Some((slow_start, super::ejection::same::<M>));
        self
    }

    /// Where the members come from: a `Vec<M>`, a closure returning one, or any [`Source`].
    /// Asked once at [`build`](BalancerBuilder::build) and again at every refresh.
    pub fn source(mut self, source: impl Source<M>) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Checks the settings, asks the source for the first members, and builds the balancer.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidRatio`] when the ratio is not in `(0, 1]` (NaN included).
    /// - [`ConfigError::ZeroMaxLoad`] for `max_load(0)`.
    /// - [`ConfigError::MissingSource`] when no source was given.
    pub fn build(self) -> Result<Balancer<M>, ConfigError> {
        self.check()?;
        let ratio = self.min_alive_ratio;
        let source = self.source.ok_or(ConfigError::MissingSource)?;
        let config = Config {
            rule: Rule {
                policy: self.policy,
                max_load: self.max_load.unwrap_or(usize::MAX),
                seed: self.seed.unwrap_or_else(random_seed),
                bound: self.bound,
            },
            min_alive_ratio: ratio,
            name: self.name,
            ejection: self.ejection,
            slow_start: self.slow_start.map(|(s, _)| s),
        };
        Ok(Balancer::from_parts(
            config,
            source,
            self.slow_start.map(|(_, same)| same),
        ))
    }
}

impl<M> BalancerBuilder<M> {
    /// Checks every setting but the source.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let ratio = self.min_alive_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(ConfigError::InvalidRatio(ratio));
        }
        if self.max_load == Some(0) {
            return Err(ConfigError::ZeroMaxLoad);
        }
        if let Some(e) = self.bound {
            if !(e > 0.0 && e.is_finite()) {
                return Err(ConfigError::InvalidEpsilon(e));
            }
        }
        Ok(())
    }
}

impl<M> fmt::Debug for BalancerBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerBuilder")
            .field("policy", &self.policy)
            .field("min_alive_ratio", &self.min_alive_ratio)
            .field("max_load", &self.max_load)
            .field("seed", &self.seed)
            .field("bounded_loads", &self.bound)
            .field("outlier_ejection", &self.ejection)
            .field("slow_start", &self.slow_start.map(|(s, _)| s))
            .field("name", &self.name)
            .field("source", &self.source.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Whether two members are the same one across refreshes (by affinity key, else equality).
type Same<M> = fn(&M, &M) -> bool;

/// ballermann's default refresh ratio.
pub(crate) const DEFAULT_MIN_ALIVE_RATIO: f64 = 0.8;

/// A seed from the standard library's per-process random hash keys.
fn random_seed() -> u64 {
    RandomState::new().build_hasher().finish()
}
