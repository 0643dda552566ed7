//! The guard a pick hands out.

use std::{fmt, ops::Deref, sync::Arc};

use arc_swap::Guard;

use super::Balancer;
use crate::snapshot::Snapshot;

/// A member handed out by [`Balancer::pick`](crate::Balancer::pick), borrowed from the
/// snapshot it was picked from.
///
/// Dereferences to the member. Handing out a guard instead of a clone is what keeps picks
/// from different cores apart: cloning an `Arc`-backed handle writes its reference count, a
/// cache line every picker would then fight over. Call [`cloned`](Picked::cloned) when an
/// owned handle is needed (to move into a task, say).
///
/// A `Picked` keeps its snapshot alive: drop it soon, and never hold it across an `.await`.
///
/// # Example
///
/// ```
/// use croupier::{Balancer, Member};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct W(u32);
/// impl Member for W {
///     fn is_alive(&self) -> bool { true }
/// }
///
/// let b = Balancer::builder().source(vec![W(7)]).build()?;
/// let picked = b.pick().unwrap();
/// assert_eq!(picked.0, 7); // through Deref
/// let owned: W = picked.cloned();
/// assert_eq!(owned, W(7));
/// # Ok::<(), croupier::ConfigError>(())
/// ```
pub struct Picked<'a, M> {
    snapshot: Guard<Arc<Snapshot<M>>>,
    index: usize,
    balancer: &'a Balancer<M>,
}

impl<'a, M> Picked<'a, M> {
    pub(crate) fn new(
        balancer: &'a Balancer<M>,
        snapshot: Guard<Arc<Snapshot<M>>>,
        index: usize,
    ) -> Self {
        Self {
            snapshot,
            index,
            balancer,
        }
    }

    /// The balancer the member was picked from.
    pub(crate) fn balancer(&self) -> &'a Balancer<M> {
        self.balancer
    }

    /// An owned handle to the picked member.
    #[must_use]
    pub fn cloned(&self) -> M
    where
        M: Clone,
    {
        (**self).clone()
    }

    /// The member's position in the round-robin order of its snapshot.
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The generation of the snapshot the member was picked from.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.snapshot.generation
    }
}

impl<M> Deref for Picked<'_, M> {
    type Target = M;

    #[inline]
    fn deref(&self) -> &M {
        &self.snapshot.entries[self.index].member
    }
}

impl<M: fmt::Debug> fmt::Debug for Picked<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Picked").field(&**self).finish()
    }
}
