//! Round robin: each live member in turn (ballermann's `pid/1`).

use super::{wrap, Scan};
use crate::{member::Member, policy::error::PickError, snapshot::Snapshot};

/// The fast path: the member whose turn it is, if it can be handed out as it stands.
#[inline]
pub(super) fn first<M: Member>(snap: &Snapshot<M>, turn: usize, max_load: usize) -> Option<usize> {
    let i = match &snap.schedule {
        None => {
            let n = snap.len();
            if n == 0 {
                return None;
            }
            turn % n
        }
        Some(order) => {
            if order.is_empty() {
                return None;
            }
            order[turn % order.len()] as usize
        }
    };
    snap.usable::<false>(i, max_load).ok().map(|_| i)
}

/// Scans from entry `turn % n` (or position `turn % W` of the weighted schedule) for the first
/// usable member under `max_load`.
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
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    // The turns go round the entries, or round the weighted schedule when there is one.
    let order = snap.schedule.as_deref();
    let n = order.map_or(snap.len(), <[u32]>::len);
    if n == 0 {
        return Err(scan.nothing());
    }
    let start = turn % n;
    for k in 0..n {
        let at = wrap(start + k, n);
        let i = order.map_or(at, |o| o[at] as usize);
        if scan.look::<false>(snap, i, max_load).is_some() {
            scan.extra_turns += k;
            return Ok(i);
        }
    }
    Err(scan.nothing())
}
