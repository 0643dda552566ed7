//! Every public error of croupier, one type per operation, each with a message a user can act
//! on.
//!
//! Each layer's error holds only what that layer can answer, and the layer above adds its own
//! cases through `From`:
//!
//! | layer | errors |
//! | --- | --- |
//! | configuration | [`ConfigError`], refused at `build()` / `start()` |
//! | balancer | [`PickError`] (a pick), [`DrainError`] (`apply_within`) |
//! | worker ref | [`SendError`], [`CallError`]: dead, full, shut down, died while handling |
//! | supervisor | [`ResizeError`]: a size of zero, or a supervisor that has stopped |
//! | pool | [`PoolSendError`], [`PoolCallError`]: a worker ref's errors plus the balancer's refusals |
//!
//! Errors that refuse a message hand it back (`into_inner`), and their `Debug` does not
//! require the message to be `Debug`.

#[cfg(feature = "remote")]
pub use crate::remote::error::{ConnectError, HostsError, RemoteError, StartError};
pub use crate::{
    balancer::DrainError,
    config::ConfigError,
    policy::error::PickError,
    pool::error::{PoolCallError, PoolSendError},
    supervisor::error::ResizeError,
    worker::error::{CallError, SendError},
};
