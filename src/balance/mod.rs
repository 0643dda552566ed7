//! tower integration (cargo feature `tower`): croupier's lock-free balancer in front of any
//! tower services.
//!
//! [`Balance<S>`] is a `tower::Service` over member services `S`, each picked by a croupier
//! [`Balancer`](crate::Balancer) with any [`Policy`](crate::Policy). Unlike
//! `tower::balance::p2c::Balance`, it is `Clone + Send + Sync` and picks through `&self`, so it
//! is shared by cloning, without a `Buffer` (a channel and a task) in front of it.
//!
//! - **Load** is measured by `Balance` itself: a member's requests in flight, counted from the
//!   pick to the response (or to the drop of the response future), or that count weighted by
//!   a peak-EWMA of the member's latency ([`Load::PeakEwma`], as Finagle and tower define it).
//!   The load reported by the services themselves (often zero through tonic) plays no part.
//! - **Failures**: a member whose `poll_ready` fails is taken out of rotation for a cooldown
//!   and the request goes to another member, up to a bounded number of tries; the request is
//!   never lost: it is sent once, to a member that was ready, or comes back in the error.
//! - **Membership**: from a `Vec<S>` ([`Balance::new`]), from any
//!   `tower::discover::Discover` ([`BalanceBuilder::discover`]: Insert/Remove by key, a member's
//!   load state kept as long as its key stays or returns), or from a croupier
//!   [`Source`](crate::Source) ([`BalanceBuilder::from_source`]).
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
    service::{Balance, BalanceBuilder, BalanceError, BalanceLayer},
};
