//! What travels on the wire beside the generated messages: the protocol's version, names and
//! metadata keys, the named metrics of load reports, and conversions to and from the messages.

use super::{identity::Mode, proto::croupier::v1 as pb};

/// The protocol version this build speaks: 3, croupier.v1 over gRPC (1 and 2 were a framed
/// protocol of croupier's own over TCP).
pub(crate) const VERSION: u32 = 3;

/// croupier's gRPC service, as grpc.health.v1 names it.
pub(crate) const SERVICE_NAME: &str = "croupier.v1.Croupier";

/// The metadata key of a croupier caller's deadline, in milliseconds from the request's
/// arrival. The node enforces it itself, cancelling the job before it answers
/// `DEADLINE_EXCEEDED`; gRPC's own `grpc-timeout`, a little later, is the backstop.
pub(crate) const DEADLINE_KEY: &str = "croupier-deadline-ms";

/// Named metrics in croupier's ORCA reports.
pub(crate) mod metric {
    /// Jobs queued or running, over the whole pool.
    pub(crate) const RUN_QUEUE: &str = "croupier.run_queue";
    /// The pool's size.
    pub(crate) const POOL_SIZE: &str = "croupier.pool_size";
    /// 1 while the pool drains (it takes no work), else 0.
    pub(crate) const DRAINING: &str = "croupier.draining";
}

/// The mode as the protocol carries it.
pub(crate) fn mode_to_wire(mode: Mode) -> i32 {
    match mode {
        Mode::Master => pb::Mode::Master as i32,
        Mode::Worker => pb::Mode::Worker as i32,
        Mode::Both => pb::Mode::Both as i32,
    }
}

/// The mode the protocol carries, if it is one.
pub(crate) fn mode_from_wire(mode: i32) -> Option<Mode> {
    match pb::Mode::try_from(mode).ok()? {
        pb::Mode::Master => Some(Mode::Master),
        pb::Mode::Worker => Some(Mode::Worker),
        pb::Mode::Both => Some(Mode::Both),
        pb::Mode::Unspecified => None,
    }
}

/// Throws arbitrary bytes at the decoder of a call: `true` if they decode as an invoke
/// request. Kept (hidden) for property tests outside the crate.
#[doc(hidden)]
pub fn decode_any(bytes: &[u8]) -> bool {
    <pb::InvokeRequest as prost::Message>::decode(bytes).is_ok()
}
