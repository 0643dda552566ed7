//! Power of two choices (Mitzenmacher 2001): sample two distinct members, keep the lighter.
//!
//! The randomness is a SplitMix64 hash of the balancer's seed and the pick's
//! unique turn (`Turn::unique`: its place on its cursor stripe, with the stripe's rank in
//! this balancer in the top bits), so it needs no thread-local or shared RNG state, threads
//! on different stripes sample different pairs, and a seeded balancer picked from one thread
//! makes the same choices every run, whatever stripe that thread has (its rank is 0 when it
//! is the first to pick from the balancer).

use super::{least_loaded, wrap, Scan};
use crate::{
    member::Member,
    mix::{splitmix64, GOLDEN_GAMMA},
    policy::error::PickError,
    snapshot::Snapshot,
};

/// The fast path: the lighter of the two samples when both can be handed out as they stand
/// (the only member when there is one).
#[inline]
pub(super) fn first<M: Member>(
    snap: &Snapshot<M>,
    turn: u64,
    seed: u64,
    max_load: usize,
) -> Option<usize> {
    let n = snap.len();
    if n == 0 {
        return None;
    }
    let (a, b) = samples(n, turn, seed);
    let la = snap.usable::<true>(a, max_load).ok()?;
    let Some(b) = b else { return Some(a) };
    let lb = snap.usable::<true>(b, max_load).ok()?;
    Some(lighter_of(snap, (a, la), (b, lb)))
}

/// Samples two distinct entries; returns the lighter usable one under `max_load`.
///
/// When one sample cannot be handed out (dead, disabled, ejected, excluded or at the limit),
/// the other is not taken blindly: that would send it a share of the picks whatever its load
/// (with one member of four out, a member with 40 queued while the rest idle would get about
/// one pick in six). Up to [`REDRAWS`] more samples are drawn to find a second usable member
/// to compare with; when they are all out too, or neither first sample is usable, it falls
/// back to a least-loaded scan from the first sample, which finds the lightest usable member
/// or says why there is none.
pub(super) fn scan<M: Member>(
    snap: &Snapshot<M>,
    turn: u64,
    seed: u64,
    max_load: usize,
    scan: &mut Scan<'_, M>,
) -> Result<usize, PickError> {
    let n = snap.len();
    let (a, b) = samples(n, turn, seed);
    let Some(b) = b else {
        return least_loaded::from(snap, a, max_load, scan);
    };
    let (keep, other) = match (
        scan.look::<true>(snap, a, max_load),
        scan.look::<true>(snap, b, max_load),
    ) {
        (Some(la), Some(lb)) => return Ok(lighter_of(snap, (a, la), (b, lb))),
        (Some(la), None) => ((a, la), b),
        (None, Some(lb)) => ((b, lb), a),
        (None, None) => return least_loaded::from(snap, a, max_load, scan),
    };
    for k in 1..=REDRAWS {
        let c = redraw(n, turn, seed, k, keep.0, other);
        if let Some(lc) = scan.look::<true>(snap, c, max_load) {
            return Ok(lighter_of(snap, keep, (c, lc)));
        }
    }
    least_loaded::from(snap, a, max_load, scan)
}

/// How many more samples a pick draws when one of its two is out, before it scans.
const REDRAWS: u64 = 4;

/// The lighter of two usable samples; the first on a tie.
#[inline]
fn lighter_of<M>(snap: &Snapshot<M>, a: (usize, usize), b: (usize, usize)) -> usize {
    if least_loaded::lighter(snap, b, a) {
        b.0
    } else {
        a.0
    }
}

/// The `k`-th extra sample of turn `turn` among `n > 1` entries: never `keep` (the usable
/// sample it is to be compared with), and not `out` (the one found out) when `n > 2`.
#[inline]
fn redraw(n: usize, turn: u64, seed: u64, k: u64, keep: usize, out: usize) -> usize {
    if n == 2 {
        return out;
    }
    let r = splitmix64(
        seed.wrapping_add(turn.wrapping_mul(GOLDEN_GAMMA))
            .wrapping_add(k.wrapping_mul(REDRAW_GAMMA)),
    );
    // An offset in 1..n-1 from `keep`, skipping `out`.
    let offset = 1 + below(r, n - 2);
    let c = wrap(keep + offset, n);
    if wrap(out + n - keep, n) <= offset {
        wrap(c + 1, n)
    } else {
        c
    }
}

/// Spreads the redraws of one turn away from its first pair (any odd constant would do).
const REDRAW_GAMMA: u64 = 0xd1b5_4a32_d192_ed03;

/// The two distinct entries that turn `turn` samples among `n > 0`; no second one when
/// `n == 1`.
///
/// No division (a 64-bit `div` costs tens of cycles, a third of a pick): the first entry is
/// the high word of `r · n` (Lemire's multiply-shift, which weighs on `r`'s high bits), the
/// offset of the second is the same map of `r`'s low 32 bits onto `1..n`, and one
/// conditional subtraction wraps the sum.
#[inline]
fn samples(n: usize, turn: u64, seed: u64) -> (usize, Option<usize>) {
    let r = splitmix64(seed.wrapping_add(turn.wrapping_mul(GOLDEN_GAMMA)));
    let a = below(r, n);
    if n == 1 {
        return (a, None);
    }
    // A second, distinct slot: an offset in 1..n from the first.
    let offset = 1 + ((u128::from(r as u32) * (n as u128 - 1)) >> 32) as usize;
    let b = a + offset;
    (a, Some(if b >= n { b - n } else { b }))
}

/// `r` mapped onto `0..n`: the high word of `r · n`.
#[inline]
fn below(r: u64, n: usize) -> usize {
    ((u128::from(r) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples are always distinct, and both within range.
    #[test]
    fn samples_are_two_distinct_slots() {
        for n in 1..20 {
            for turn in 0..200 {
                let (a, b) = samples(n, turn, 0x5eed);
                assert!(a < n);
                match b {
                    None => assert_eq!(n, 1),
                    Some(b) => assert!(b < n && b != a, "n {n}, turn {turn}: {a} {b}"),
                }
            }
        }
    }

    /// The second sample is not tied to the first: over a few hundred turns every ordered
    /// pair of distinct slots is sampled, in pools of every small size.
    #[test]
    fn every_pair_of_slots_is_sampled() {
        for n in 2..12 {
            let mut seen = vec![vec![false; n]; n];
            for turn in 0..2_000 {
                let (a, b) = samples(n, turn, 0x5eed);
                seen[a][b.expect("two samples")] = true;
            }
            for (a, row) in seen.iter().enumerate() {
                for (b, &hit) in row.iter().enumerate() {
                    assert_eq!(hit, a != b, "n {n}: pair ({a}, {b})");
                }
            }
        }
    }

    /// Threads on different stripes take the same places on their stripes side by side: they
    /// must not sample the same pairs in step, and each stripe's samples must stay uniform
    /// over the ordered pairs (a chi-square test over 56 pairs of 8 members, far below the
    /// 0.1% critical value 93 of 55 degrees of freedom).
    #[test]
    fn samples_are_uniform_and_different_on_every_stripe() {
        use crate::policy::Turn;
        const N: usize = 8;
        const SEQS: usize = 56_000;
        let sample = |seq, stripe| {
            samples(
                N,
                Turn {
                    seq,
                    stripe,
                    rank: stripe,
                }
                .unique(),
                0x5eed,
            )
        };
        for stripe in [0, 1, 7, 15] {
            let mut counts = [[0_u32; N]; N];
            for seq in 0..SEQS {
                let (a, b) = sample(seq, stripe);
                counts[a][b.expect("two samples")] += 1;
            }
            let expected = (SEQS / (N * (N - 1))) as f64;
            let chi2: f64 = (0..N)
                .flat_map(|a| (0..N).filter(move |&b| b != a).map(move |b| (a, b)))
                .map(|(a, b)| (f64::from(counts[a][b]) - expected).powi(2) / expected)
                .sum();
            assert!(chi2 < 93.0, "stripe {stripe}: chi-square {chi2}");
        }
        for (x, y) in [(0, 1), (1, 2), (0, 15)] {
            let same = (0..10_000)
                .filter(|&seq| sample(seq, x) == sample(seq, y))
                .count();
            // By chance one pair in 56 matches: about 180 of 10 000.
            assert!(same < 400, "stripes {x} and {y} sampled alike {same} times");
        }
    }
    /// A redraw is never the usable sample it is compared with, nor (with three or more
    /// entries) the one found out, and over many turns reaches every other entry.
    #[test]
    fn redraws_avoid_both_first_samples() {
        for n in 2..12 {
            for keep in 0..n {
                for out in (0..n).filter(|&o| o != keep) {
                    let mut seen = vec![false; n];
                    for turn in 0..400 {
                        for k in 1..=REDRAWS {
                            let c = redraw(n, turn, 0x5eed, k, keep, out);
                            assert!(c < n && c != keep, "n {n}: {keep} {out} -> {c}");
                            assert!(n == 2 || c != out, "n {n}: {keep} {out} -> {c}");
                            seen[c] = true;
                        }
                    }
                    let reached = seen.iter().filter(|&&s| s).count();
                    assert_eq!(reached, if n == 2 { 1 } else { n - 2 }, "n {n}");
                }
            }
        }
    }
}
