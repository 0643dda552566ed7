//! Membership from a `tower::discover::Discover` stream.

use std::{fmt, hash::Hash};

use tower::discover::{Change, Discover};

use super::{Balance, BalanceBuilder};
use crate::config::ConfigError;

impl BalanceBuilder {
    /// A balance fed by `discover`: `Insert(key, service)` adds a member or replaces the
    /// service of one (keeping its load state), `Remove(key)` takes it out. A task on the
    /// current tokio runtime follows the stream until it ends or the last handle of the
    /// balance is dropped; a discovery error is logged and ends it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoRuntime`] outside a tokio runtime; or a bad setting.
    pub fn discover<D>(self, discover: D) -> Result<Balance<D::Service, D::Key>, ConfigError>
    where
        D: Discover + Send + Unpin + 'static,
        D::Key: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
        D::Service: Clone + Send + Sync + 'static,
        D::Error: fmt::Display,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let balance = self.make(Vec::new())?;
        let weak = balance.downgrade();
        let stop = balance.stop_token();
        let mut discover = discover;
        runtime.spawn(async move {
            loop {
                let change = tokio::select! {
                    () = stop.cancelled() => return,
                    change = std::future::poll_fn(|cx| std::pin::Pin::new(&mut discover).poll_discover(cx)) => change,
                };
                let Some(balance) = Balance::upgrade(&weak) else {
                    return;
                };
                match change {
                    None => return,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "croupier balance: discovery failed; membership is frozen");
                        return;
                    }
                    Some(Ok(Change::Insert(key, service))) => balance.insert(key, service),
                    Some(Ok(Change::Remove(key))) => balance.remove(&key),
                }
            }
        });
        Ok(balance)
    }
}
