//! Least loaded: the member with the shortest run queue (OTP `pool`, Akka's smallest mailbox).

use super::{nothing, round_robin::wrap, Scan};
use crate::{balancer::snapshot::Snapshot, Member, PickError};

/// Scans every member from `cursor % n` and keeps the first with the smallest load under
/// `max_load`; starting at the cursor sends ties round robin. A load of zero ends the scan early,
/// since nothing can be lighter.
#[inline]
pub(crate) fn least_loaded<M: Member>(
    snap: &Snapshot<M>,
    cursor: usize,
    max_load: usize,
    scan: &mut Scan,
) -> Result<usize, PickError> {
    let n = snap.len();
    least_loaded_from(snap, cursor % n, max_load, scan)
}

/// [`least_loaded`] starting at slot `first` (which must be below the snapshot's length).
pub(super) fn least_loaded_from<M: Member>(
    snap: &Snapshot<M>,
    first: usize,
    max_load: usize,
    scan: &mut Scan,
) -> Result<usize, PickError> {
    let n = snap.len();
    let mut best: Option<(usize, usize)> = None;
    let mut any_live = false;
    for k in 0..n {
        let i = wrap(first + k, n);
        if !scan.usable(snap.look(i)) {
            continue;
        }
        any_live = true;
        let load = snap.slots[i].member.load();
        if load >= max_load {
            continue;
        }
        if best.map_or(true, |(_, b)| load < b) {
            best = Some((i, load));
            if load == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| nothing(any_live))
}
