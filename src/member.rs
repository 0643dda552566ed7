//! What a balancer hands out ([`Member`]) and where its members come from ([`Source`]).

use std::sync::Arc;

/// Something a [`Balancer`](crate::Balancer) can hand out: a cheap, cloneable handle to a worker,
/// a connection, a node.
///
/// A member answers two questions, both of which must be cheap (one atomic load is the
/// intended cost), because the balancer asks them on every pick:
///
/// - [`is_alive`](Member::is_alive): can it still take work? A member that answers `false` is
///   never handed out, and counts towards the refresh ratio.
/// - [`load`](Member::load): how long is its run queue (queued plus in progress)? Used by
///   [`Policy::LeastLoaded`](crate::Policy::LeastLoaded),
///   [`Policy::PowerOfTwo`](crate::Policy::PowerOfTwo) and
///   [`max_load`](crate::BalancerBuilder::max_load).
///
/// # Example
///
/// ```
/// use std::sync::{
///     atomic::{AtomicBool, AtomicUsize, Ordering},
///     Arc,
/// };
///
/// use croupier::Member;
///
/// #[derive(Clone)]
/// struct Conn {
///     open: Arc<AtomicBool>,
///     in_flight: Arc<AtomicUsize>,
/// }
///
/// impl Member for Conn {
///     fn is_alive(&self) -> bool {
///         self.open.load(Ordering::Relaxed)
///     }
///     fn load(&self) -> usize {
///         self.in_flight.load(Ordering::Relaxed)
///     }
/// }
/// # let c = Conn { open: Arc::new(AtomicBool::new(true)), in_flight: Arc::default() };
/// # assert!(c.is_alive());
/// ```
pub trait Member: Clone + Send + Sync + 'static {
    /// Whether the member can take more work. Once it answers `false` it is skipped.
    fn is_alive(&self) -> bool;

    /// The member's run-queue length: work queued plus work in progress. Defaults to `0`, which
    /// makes load-aware policies behave like round robin.
    fn load(&self) -> usize {
        0
    }

    /// The part of [`load`](Member::load) that a drain's [`Wait::idle`](crate::Wait::idle)
    /// waits to see at 0: work the member has taken on. Defaults to `load()`.
    ///
    /// A member whose load also counts work it has only been promised answers less: a pool
    /// worker's load counts the calls that ready `Pool` services have reserved it for
    /// (they hold back picks at [`max_load`](crate::BalancerBuilder::max_load)), but a drain
    /// must not wait for a reservation that may never be used.
    fn drain_load(&self) -> usize {
        self.load()
    }

    /// The member's share of the picks, relative to the others'; `1` by default. `0` hands
    /// it nothing (a soft drain: it stays alive and in the snapshot, but no policy picks it).
    ///
    /// Read when a snapshot is built (at `build` and at each refresh), not at each pick: a
    /// new weight takes effect at the next [`refresh`](crate::Balancer::refresh). With
    /// weights that differ, [`Policy::RoundRobin`](crate::Policy::RoundRobin) is smooth
    /// weighted round robin and the load-aware policies compare load divided by weight.
    ///
    /// # Example
    ///
    /// ```
    /// use croupier::{Balancer, Member};
    ///
    /// #[derive(Clone)]
    /// struct Host(&'static str, u32);
    /// impl Member for Host {
    ///     fn is_alive(&self) -> bool { true }
    ///     fn weight(&self) -> u32 { self.1 }
    /// }
    ///
    /// let b = Balancer::builder().source(vec![Host("big", 3), Host("small", 1)]).build()?;
    /// let picks: Vec<_> = (0..8).map(|_| b.pick().unwrap().0).collect();
    /// assert_eq!(picks, ["big", "big", "small", "big", "big", "big", "small", "big"]);
    /// # Ok::<(), croupier::ConfigError>(())
    /// ```
    fn weight(&self) -> u32 {
        1
    }

    /// Told by [outlier ejection](crate::BalancerBuilder::outlier_ejection) when it takes this
    /// member out of rotation (`true`) or brings it back (`false`), for each entry of the
    /// current snapshot that is this member; does nothing by default. A pool's worker uses it
    /// so that [hand-back](crate::PoolBuilder::hand_back_after) sends an ejected worker
    /// nothing. Called under the balancer's writer lock: keep it short, and never call the
    /// balancer from it.
    fn on_ejection(&self, ejected: bool) {
        let _ = ejected;
    }

    /// A stable identity for [key affinity](crate::Balancer::pick_for): the same member
    /// answers the same number across refreshes, and different members different numbers.
    /// `None` (the default) uses the member's position in the source's list, which is stable
    /// only as long as the list keeps its order; members that can come and go should answer
    /// a hash of their name or address, so that only about 1/n of the keys move when one
    /// does. Read when a snapshot is built.
    ///
    /// # Example
    ///
    /// ```
    /// use std::{collections::hash_map::DefaultHasher, hash::{BuildHasher, BuildHasherDefault}};
    ///
    /// use croupier::Member;
    ///
    /// #[derive(Clone)]
    /// struct Backend { addr: String }
    /// impl Member for Backend {
    ///     fn is_alive(&self) -> bool { true }
    ///     fn affinity_key(&self) -> Option<u64> {
    ///         Some(BuildHasherDefault::<DefaultHasher>::default().hash_one(&self.addr))
    ///     }
    /// }
    /// # assert!(Backend { addr: "10.0.0.1:80".into() }.affinity_key().is_some());
    /// ```
    fn affinity_key(&self) -> Option<u64> {
        None
    }
}

/// Where a balancer's members come from: asked at [`build`](crate::BalancerBuilder::build),
/// on [`Balancer::refresh`](crate::Balancer::refresh), and whenever the share of live members
/// falls below the [refresh ratio](crate::BalancerBuilder::min_alive_ratio).
///
/// The order of the returned members is the round-robin order.
///
/// Implemented for closures returning `Vec<M>`, for a fixed `Vec<M>` and for `Arc<S>`.
///
/// # Example
///
/// ```
/// use croupier::Source;
///
/// let fixed = vec![1_u32, 2, 3];
/// assert_eq!(fixed.members(), vec![1, 2, 3]);
///
/// let computed = || (0..2_u32).collect::<Vec<_>>();
/// assert_eq!(computed.members(), vec![0, 1]);
/// ```
pub trait Source<M>: Send + Sync + 'static {
    /// The current members, in round-robin order. May be empty.
    fn members(&self) -> Vec<M>;
}

impl<M, F> Source<M> for F
where
    F: Fn() -> Vec<M> + Send + Sync + 'static,
{
    fn members(&self) -> Vec<M> {
        self()
    }
}

impl<M> Source<M> for Vec<M>
where
    M: Clone + Send + Sync + 'static,
{
    fn members(&self) -> Vec<M> {
        self.clone()
    }
}

impl<M, S> Source<M> for Arc<S>
where
    S: Source<M> + ?Sized,
{
    fn members(&self) -> Vec<M> {
        (**self).members()
    }
}
