//! Least loaded: the member with the shortest run queue (OTP `pool`, Akka's smallest mailbox).

use super::{wrap, Scan};
use crate::{member::Member, policy::error::PickError, snapshot::Snapshot};

/// The fast path: the member at the turn, if it is idle (load 0) and usable. Nothing can be
/// lighter, and the scan, which starts there, would stop there too.
#[inline]
pub(super) fn first<M: Member>(snap: &Snapshot<M>, turn: usize, max_load: usize) -> Option<usize> {
    let n = snap.len();
    if n == 0 {
        return None;
    }
    let i = turn % n;
    (snap.usable::<true>(i, max_load) == Ok(0)).then_some(i)
}

/// Scans every member from `turn % n` and keeps the first with the smallest load under
/// `max_load`; starting at the turn sends ties round robin. A load of zero ends the scan
/// early, since nothing can be lighter.
pub(super) fn scan<M: Member>(
    snap: &Snapshot<M>,
    turn: usize,
    max_load: usize,
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    from(snap, turn % snap.len(), max_load, scan)
}

/// [`scan`] starting at entry `start` (which must be below the snapshot's length).
pub(super) fn from<M: Member>(
    snap: &Snapshot<M>,
    start: usize,
    max_load: usize,
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    if scan.exclude.is_none() && !snap.is_weighted() {
        return from_plain(snap, start, max_load, scan);
    }
    let n = snap.len();
    let mut best: Option<(usize, usize)> = None;
    for k in 0..n {
        let i = wrap(start + k, n);
        let Some(load) = scan.look::<true>(snap, i, max_load) else {
            continue;
        };
        if best.map_or(true, |(b, lb)| lighter(snap, (i, load), (b, lb))) {
            best = Some((i, load));
            if load == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| scan.nothing())
}

/// [`from`] in the common case, loads compared as they stand (equal weights) and nothing
/// excluded: the same choice in a loop about half as long, which matters because a busy pool
/// has it read every member. A member that cannot be handed out goes through `scan.look` for
/// the bookkeeping (found dead, over the limit).
fn from_plain<M: Member>(
    snap: &Snapshot<M>,
    start: usize,
    max_load: usize,
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    let mut best: Option<(usize, usize)> = None;
    let mut best_load = usize::MAX;
    for i in (start..snap.len()).chain(0..start) {
        let Ok(load) = snap.usable::<true>(i, max_load) else {
            scan.look::<true>(snap, i, max_load);
            continue;
        };
        if load < best_load {
            best_load = load;
            best = Some((i, load));
            if load == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| scan.nothing())
}

/// Whether entry `a` (with its load) is strictly lighter than entry `b`: by load, or by load
/// per unit of weight when the weights differ. Both weights are positive (usable members).
#[inline]
pub(super) fn lighter<M>(
    snap: &Snapshot<M>,
    (a, la): (usize, usize),
    (b, lb): (usize, usize),
) -> bool {
    if !snap.is_weighted() {
        return la < lb;
    }
    let (wa, wb) = (snap.entries[a].weight, snap.entries[b].weight);
    (la as u128) * u128::from(wb) < (lb as u128) * u128::from(wa)
}
