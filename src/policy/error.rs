//! [`PickError`]: why a pick handed out nothing.

use std::fmt;

/// Why [`Balancer::pick`](crate::Balancer::pick) handed out nothing.
///
/// A pick never blocks: each of these is returned at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PickError {
    /// No live, enabled member: the source returned none, or all of them are dead or disabled.
    /// Calling [`Balancer::refresh`](crate::Balancer::refresh) asks the source again.
    NoMembers,
    /// Every live member's load is at or above [`max_load`](crate::BalancerBuilder::max_load).
    /// Back off and retry, or shed the work.
    Overloaded,
    /// The balancer is draining for maintenance and hands out nothing until it resumes.
    Draining,
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoMembers => "no live member to pick (all dead or disabled, or none at all)",
            Self::Overloaded => "every live member is at or above max_load",
            Self::Draining => "the balancer is draining for maintenance",
        })
    }
}

impl std::error::Error for PickError {}
