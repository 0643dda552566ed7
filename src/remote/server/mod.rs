//! The serving side of a node: croupier's gRPC service and ORCA load reports on one bounded
//! listener, grpc.health.v1, and the handlers it runs as jobs of its pool. It never imports
//! the calling side ([`super::client`]).

mod gate;
mod jobs;
mod listener;
mod served;
mod service;

pub(crate) use self::{jobs::HandlerWorker, listener::Bounds, served::Served, service::serve};
