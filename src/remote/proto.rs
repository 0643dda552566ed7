//! The gRPC messages and services croupier nodes speak, generated from the `.proto` files in
//! the repository's `proto/` folder (regenerate with
//! `cargo run --manifest-path proto/gen/Cargo.toml`; no system `protoc` is needed).
//!
//! - [`croupier::v1`]: croupier's own service (hello, invoke, terminate, logs);
//! - [`xds::service::orca::v3`] and [`xds::data::orca::v3`]: ORCA's out-of-band load reports,
//!   with the names and field numbers of the cncf/xds definitions, so that Envoy and gRPC
//!   clients in other languages read a croupier node's load;
//! - health is `grpc.health.v1`, served by `tonic-health` (whose own client reads it).
//!
//! Use these to talk to a node from code of your own, or to check what a node says.
#![allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]

/// croupier's own protocol.
pub mod croupier {
    /// Version 1 of the `croupier.v1` package.
    pub mod v1 {
        include!("proto/croupier.v1.rs");
    }
}

/// The xDS protos croupier serves (from github.com/cncf/xds).
pub mod xds {
    /// Data types.
    pub mod data {
        /// Open Request Cost Aggregation.
        pub mod orca {
            /// `xds.data.orca.v3`.
            pub mod v3 {
                include!("proto/xds.data.orca.v3.rs");
            }
        }
    }
    /// Services.
    pub mod service {
        /// Open Request Cost Aggregation.
        pub mod orca {
            /// `xds.service.orca.v3`.
            pub mod v3 {
                include!("proto/xds.service.orca.v3.rs");
            }
        }
    }
}
