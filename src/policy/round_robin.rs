//! Round robin: each live member in turn (ballermann's `pid/1`).

use super::{nothing, Scan};
use crate::{balancer::snapshot::Snapshot, Member, PickError};

/// Scans from `cursor % n` for the first usable member under `max_load`.
///
/// With every member alive and under the limit this looks at exactly one slot, so consecutive
/// cursor values give consecutive members: exact round robin in source order.
#[inline]
pub(crate) fn round_robin<M: Member>(
    snap: &Snapshot<M>,
    cursor: usize,
    max_load: usize,
    scan: &mut Scan,
) -> Result<usize, PickError> {
    let n = snap.len();
    let first = cursor % n;
    let mut any_live = false;
    for k in 0..n {
        let i = wrap(first + k, n);
        if !scan.usable(snap.look(i)) {
            continue;
        }
        if max_load != usize::MAX && snap.slots[i].member.load() >= max_load {
            any_live = true;
            continue;
        }
        return Ok(i);
    }
    Err(nothing(any_live))
}

/// `i % n` for `i < 2n`, without a division.
#[inline]
pub(super) fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}
