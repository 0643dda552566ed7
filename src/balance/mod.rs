//! tower integration (cargo feature `tower`): croupier's lock-free balancer in front of any
//! tower services.
//!
//! [`Balance<S>`] is a `tower::Service` over member services `S`, each picked by a croupier
//! [`Balancer`](crate::Balancer) with any [`Policy`](crate::Policy). Unlike
//! `tower::balance::p2c::Balance`, it is `Clone + Send + Sync` and picks through `&self`, so it
//! is shared by cloning, without a `Buffer` (a channel and a task) in front of it.
//!
//! - **Load** is measured by `Balance` itself: a member's requests in flight, counted from the
//!   pick to the response (or to the drop of the response future), weighted by a peak-EWMA of
//!   the member's latency ([`Load::PeakEwma`], as Finagle and tower define it; the default,
//!   with least loaded), or not ([`Load::InFlight`]). A member whose responses fail carries a
//!   penalty in that count for a while, so one that fails fast does not look idle. The load
//!   reported by the services themselves (often zero through tonic) plays no part.
//! - **Failures**: a member whose `poll_ready` fails is taken out of rotation for a cooldown
//!   and the request goes to another member, up to a bounded number of tries; the request is
//!   never lost: it is sent once, to a member that was ready, or comes back in the error.
//! - **Weights**: [`BalanceBuilder::build_weighted`], [`Balance::insert_weighted`] and
//!   [`Balance::set_weight`]: smooth weighted round robin, load per unit of weight for the
//!   load-aware policies, weight 0 for a soft drain.
//! - **Key affinity**: [`Balance::call_for`], or [`Balance::with_affinity`] as a `Service`
//!   that reads the key from each request: the same key to the same member (Maglev hashing on
//!   the members' keys, about 1/n of keys moving when a member comes or goes), with
//!   [`BalanceBuilder::bounded_loads`] so that one hot key cannot pile up on one member.
//! - **Outlier ejection**: [`BalanceBuilder::outlier_ejection`], every response reported.
//! - **Membership**: from a `Vec<S>` ([`Balance::new`]), from any
//!   `tower::discover::Discover` ([`BalanceBuilder::discover`]: Insert/Remove by key, a member's
//!   load state kept as long as its key stays or returns), or from a croupier
//!   [`Source`](crate::Source) ([`BalanceBuilder::from_source`]). A removed member's load
//!   state is kept while requests to it are in flight, and forgotten when the last ends
//!   ([`Balance::removed_in_flight`] lists those still running).
//!
//! # Example
//!
//! ```
//! use croupier::{balance::Balance, Policy};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! let backends: Vec<_> = (0..3)
//!     .map(|i| service_fn(move |req: u32| async move { Ok::<_, tower::BoxError>(req + i) }))
//!     .collect();
//! let mut balance = Balance::builder().policy(Policy::LeastLoaded).build(backends)?;
//! let answer = balance.ready().await?.call(10).await?;
//! assert!((10..13).contains(&answer));
//! # Ok(()) }
//! ```

mod discover;
mod endpoint;
mod service;

pub use self::{
    endpoint::Load,
    service::{AffinityBalance, Balance, BalanceBuilder, BalanceError, BalanceLayer},
};
