//! Round robin: each live member in turn (ballermann's `pid/1`).

use super::{wrap, Scan};
use crate::{error::PickError, member::Member, snapshot::Snapshot};

/// The fast path: the member whose turn it is, if it can be handed out as it stands.
#[inline]
pub(super) fn first<M: Member>(snap: &Snapshot<M>, turn: usize, max_load: usize) -> Option<usize> {
    let n = snap.len();
    if n == 0 {
        return None;
    }
    let i = turn % n;
    snap.usable::<false>(i, max_load).ok().map(|_| i)
}

/// Scans from entry `turn % n` for the first usable member under `max_load`.
///
/// With every member alive and under the limit this looks at exactly one entry, so
/// consecutive turns give consecutive members: exact round robin in source order. A pick that
/// has to look past `k` members (dead, disabled or over the limit) reports `k` extra turns,
/// which the balancer adds to the cursor, so that the next turn starts after the member it
/// handed out and the live members keep exact turns from one thread whatever sits between
/// them.
pub(super) fn scan<M: Member>(
    snap: &Snapshot<M>,
    turn: usize,
    max_load: usize,
    scan: &mut Scan,
) -> Result<usize, PickError> {
    let n = snap.len();
    let start = turn % n;
    for k in 0..n {
        let i = wrap(start + k, n);
        if scan.look::<false, M>(snap, i, max_load).is_some() {
            scan.extra_turns += k;
            return Ok(i);
        }
    }
    Err(scan.nothing())
}
