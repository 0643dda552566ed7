//! Round robin: each live member in turn (ballermann's `pid/1`).

use super::{nothing, Scan};
use crate::{
    balancer::{snapshot::Snapshot, state::Cursor},
    Member, PickError,
};

/// Scans from slot `turn % n` for the first usable member under `max_load`.
///
/// With every member alive and under the limit this looks at exactly one slot, so consecutive
/// turns give consecutive members: exact round robin in source order. A pick that has to look
/// past `k` members (dead, disabled or over the limit) moves the cursor on by `k` as well, so
/// that the next turn starts after the member it handed out, and the live members keep exact
/// turns from one thread whatever sits between them.
#[inline]
pub(crate) fn round_robin<M: Member>(
    snap: &Snapshot<M>,
    turn: usize,
    cursor: &Cursor,
    max_load: usize,
    scan: &mut Scan,
) -> Result<usize, PickError> {
    let n = snap.len();
    let first = turn % n;
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
        if k > 0 {
            cursor.skip(k);
            scan.extra_turns += k;
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

/// The fast path: the member whose turn it is, if it is usable as it stands; `None` sends the
/// pick to [`round_robin`], which starts from the same member.
#[inline]
pub(crate) fn round_robin_first<M: Member>(
    snap: &Snapshot<M>,
    turn: usize,
    max_load: usize,
) -> Option<usize> {
    let n = snap.len();
    if n == 0 {
        return None;
    }
    let i = turn % n;
    snap.is_usable(i, max_load).then_some(i)
}
