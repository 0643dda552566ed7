//! Key affinity's lookup table: Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016), built once per snapshot.
//!
//! Every member with a positive weight gets a pseudo-random permutation of the table's `m`
//! slots (`m` prime), from its [`affinity_key`](crate::Member::affinity_key): an offset and a
//! skip. Members take turns, in the order of their keys (not the source's order, so the table
//! does not depend on it), each claiming the next free slot of its permutation, until every
//! slot has an owner; a member of weight `w` takes `w / w_max` turns per round. A key hashes to
//! one slot, and its member is that slot's owner: an O(1) lookup.
//!
//! Members that come or go move few keys: the table keeps its size and the permutations of
//! the others do not change, so most slots keep their owners (the paper measures this close
//! to the 1/n minimum when `m` is large against `n`). The size comes in three steps, each at
//! least 64 slots per member: 4 099 slots up to 64 members, 65 537 up to 1 024, 1 048 583
//! beyond; a change of step (the pool crossing 64 or 1 024 members) moves most keys once.
//! A member that is dead or over its bound keeps its slots; a pick walks on to the next slots
//! until it finds a member it may hand out, so its keys spread over the others, and come back
//! when it does.

use std::sync::atomic::AtomicUsize;

use crate::mix::splitmix64;

/// The table sizes (primes), and the most members each serves.
const SIZES: [(u64, usize); 3] = [(4_099, 64), (65_537, 1_024), (1_048_583, usize::MAX)];

/// A snapshot's Maglev table, and the load bound it last computed.
#[derive(Debug)]
pub(crate) struct Table {
    /// Entry index of each slot's owner; empty when no member has a positive weight.
    pub(crate) slots: Slots,
    /// Bounded loads: the capacity last computed (0 until the first).
    pub(crate) cap: AtomicUsize,
    /// Bounded loads: keys spilled off a member over the bound, which rotates where the
    /// next one starts looking for the lightest member.
    pub(crate) spills: AtomicUsize,
}

impl Table {
    /// The table for members with identities `keys` and weights `weights` (0: no slots).
    pub(crate) fn new(keys: &[u64], weights: &[u32]) -> Self {
        let mut order: Vec<usize> = (0..keys.len()).filter(|&i| weights[i] > 0).collect();
        // The members' turns go in the order of their keys (ties by position).
        order.sort_by_key(|&i| (keys[i], i));
        let slots = if order.is_empty() {
            Slots::Narrow(Box::default())
        } else {
            Slots::new(populate(&order, keys, weights))
        };
        Self {
            slots,
            cap: AtomicUsize::new(0),
            spills: AtomicUsize::new(0),
        }
    }
}

/// The owners of a table's slots: two bytes each while entry indices fit (up to 65 536
/// entries), which halves the table a lookup reads at random (128 KiB at 1 024 members,
/// against 256 KiB in four bytes).
#[derive(Debug)]
pub(crate) enum Slots {
    /// Owners below 65 536.
    Narrow(Box<[u16]>),
    /// Any owner.
    Wide(Box<[u32]>),
}

impl Slots {
    fn new(wide: Box<[u32]>) -> Self {
        if wide.iter().all(|&o| o <= u32::from(u16::MAX)) {
            Self::Narrow(wide.iter().map(|&o| o as u16).collect())
        } else {
            Self::Wide(wide)
        }
    }

    /// How many slots.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Narrow(s) => s.len(),
            Self::Wide(s) => s.len(),
        }
    }

    /// The entry index owning slot `s` (`s < len()`).
    #[inline]
    pub(crate) fn owner(&self, s: usize) -> usize {
        match self {
            Self::Narrow(o) => usize::from(o[s]),
            Self::Wide(o) => o[s] as usize,
        }
    }
}

fn populate(order: &[usize], keys: &[u64], weights: &[u32]) -> Box<[u32]> {
    let m = SIZES
        .iter()
        .find(|&&(_, most)| order.len() <= most)
        .map_or(SIZES[2].0, |&(m, _)| m);
    let heaviest = order
        .iter()
        .map(|&i| u64::from(weights[i]))
        .max()
        .unwrap_or(1);
    struct Perm {
        entry: u32,
        perm: (u64, u64),
        next: u64,
        weight: u64,
        credit: u64,
    }
    let mut perms: Vec<Perm> = order
        .iter()
        .filter_map(|&i| {
            Some(Perm {
                entry: u32::try_from(i).ok()?,
                perm: permutation(keys[i], m),
                next: 0,
                weight: u64::from(weights[i]),
                credit: 0,
            })
        })
        .collect();
    const EMPTY: u32 = u32::MAX;
    let mut slots = vec![EMPTY; usize::try_from(m).unwrap_or(usize::MAX)];
    let mut filled = 0_u64;
    // Rounds of turns until the last slot is claimed (every round claims at least one: the
    // heaviest member's credit reaches a turn each round).
    loop {
        for p in &mut perms {
            p.credit += p.weight;
            while p.credit >= heaviest {
                p.credit -= heaviest;
                // The next free slot of this member's permutation (one exists: filled < m,
                // and the permutation visits every slot).
                loop {
                    let c = nth_slot(p.perm, p.next, m);
                    p.next += 1;
                    let slot = &mut slots[usize::try_from(c).unwrap_or(0)];
                    if *slot == EMPTY {
                        *slot = p.entry;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return slots.into_boxed_slice();
                }
            }
        }
    }
}

/// A member's permutation of `m` slots (`m` prime), from its key: `(offset, skip)` with
/// `offset < m` and `1 <= skip < m`, so that [`nth_slot`] visits every slot once in `m` steps.
/// Two hashes of the key, as in the paper.
fn permutation(key: u64, m: u64) -> (u64, u64) {
    let h = splitmix64(key);
    (h % m, splitmix64(h ^ 0x5851_f42d_4c95_7f2d) % (m - 1) + 1)
}

/// Slot `j` of the permutation `(offset, skip)` of `m` slots: `(offset + j·skip) mod m`.
#[inline]
fn nth_slot((offset, skip): (u64, u64), j: u64, m: u64) -> u64 {
    (offset + j % m * skip) % m
}

/// The slot of a key's hash, among `m`: Lemire's multiply-shift, no division.
#[inline]
pub(crate) fn slot_of(hash: u64, m: usize) -> usize {
    ((u128::from(splitmix64(hash)) * m as u128) >> 64) as usize
}

/// The hasher `pick_for` hashes keys with: FxHash's multiply-rotate over the key's words
/// (rustc's hasher), finished by [`splitmix64`] at lookup. Fast for the short keys affinity is used
/// with; not meant to resist chosen keys (bounded loads caps what one hot key can do).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ (rest.len() as u64) << 56);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A key's hash, as `pick_for` uses it.
#[inline]
pub(crate) fn hash_key<K: std::hash::Hash + ?Sized>(key: &K) -> u64 {
    let mut h = KeyHasher::default();
    key.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(t: &Table, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for s in 0..t.slots.len() {
            c[t.slots.owner(s)] += 1;
        }
        c
    }

    #[test]
    fn every_slot_has_an_owner_and_shares_follow_weights() {
        let keys: Vec<u64> = (0..10).collect();
        let t = Table::new(&keys, &[1; 10]);
        assert_eq!(t.slots.len(), 4_099);
        let c = shares(&t, 10);
        let (lo, hi) = (*c.iter().min().unwrap(), *c.iter().max().unwrap());
        assert!(hi - lo <= 1, "{c:?}");

        let t = Table::new(&keys[..3], &[2, 1, 0]);
        let c = shares(&t, 3);
        assert_eq!(c[2], 0, "weight 0 owns nothing");
        assert!((c[0] as f64 / c[1] as f64 - 2.0).abs() < 0.05, "{c:?}");
    }

    #[test]
    fn the_source_order_does_not_change_the_owners() {
        let a = Table::new(&[10, 20, 30], &[1, 1, 1]);
        let b = Table::new(&[30, 10, 20], &[1, 1, 1]);
        let member = |t: &Table, keys: &[u64], s: usize| keys[t.slots.owner(s)];
        for s in 0..a.slots.len() {
            assert_eq!(member(&a, &[10, 20, 30], s), member(&b, &[30, 10, 20], s));
        }
    }

    /// Every member's permutation is a permutation: an offset below `m` and a skip in
    /// `1..m` (with `m` prime, the steps then visit each slot once), for every table size and
    /// many keys, and the slots step from the offset by the skip.
    #[test]
    fn each_permutation_visits_every_slot_once() {
        for (m, _) in SIZES {
            for key in (0..100_000).chain([u64::MAX - 1, u64::MAX]) {
                let (offset, skip) = permutation(key, m);
                assert!(offset < m, "key {key}: offset {offset} of {m} slots");
                assert!(
                    (1..m).contains(&skip),
                    "key {key}: skip {skip} of {m} slots"
                );
            }
        }
        let m = SIZES[0].0;
        for key in 0..20 {
            let p = permutation(key, m);
            assert_eq!(nth_slot(p, 0, m), p.0, "the first slot is the offset");
            let mut seen = vec![false; m as usize];
            let mut last = None;
            for j in 0..m {
                let s = nth_slot(p, j, m);
                if let Some(last) = last {
                    assert_eq!(s, (last + p.1) % m, "each slot is the last plus the skip");
                }
                assert!(
                    !std::mem::replace(&mut seen[s as usize], true),
                    "slot {s} twice"
                );
                last = Some(s);
            }
        }
    }

    /// The key hasher tells apart keys of one type: integers, pairs of them, strings of every
    /// length around its 8-byte words (a short tail, a tail of zero bytes, a difference past
    /// the first word), and slices that differ only in their length.
    #[test]
    fn different_keys_hash_apart() {
        fn apart<K: std::hash::Hash + std::fmt::Debug + ?Sized>(keys: &[&K]) {
            let mut seen = std::collections::HashMap::new();
            for &k in keys {
                if let Some(other) = seen.insert(hash_key(k), k) {
                    panic!("{k:?} and {other:?} hash alike");
                }
            }
        }
        let pairs: Vec<(u64, u64)> = (0..64).flat_map(|i| (0..64).map(move |j| (i, j))).collect();
        apart(&pairs.iter().collect::<Vec<_>>());
        let ints: Vec<u64> = (0..10_000).collect();
        apart(&ints.iter().collect::<Vec<_>>());
        apart::<str>(&[
            "",
            "a",
            "b",
            "ab",
            "ba",
            "\0",
            "\0\0",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefghj",
            "abcdefghij",
            "xbcdefghij",
        ]);
        apart::<[u64]>(&[&[], &[0], &[0, 0]]);
    }

    #[test]
    fn the_sizes_are_primes() {
        for (m, _) in SIZES {
            assert!((2..).take_while(|d| d * d <= m).all(|d| m % d != 0), "{m}");
        }
    }

    #[test]
    fn slots_are_narrow_while_owners_fit_in_two_bytes() {
        let narrow = Slots::new(vec![0, 65_535, 7].into_boxed_slice());
        assert!(matches!(narrow, Slots::Narrow(_)));
        assert_eq!(
            (0..3).map(|s| narrow.owner(s)).collect::<Vec<_>>(),
            [0, 65_535, 7]
        );
        let wide = Slots::new(vec![0, 65_536, 7].into_boxed_slice());
        assert!(matches!(wide, Slots::Wide(_)));
        assert_eq!(
            (0..3).map(|s| wide.owner(s)).collect::<Vec<_>>(),
            [0, 65_536, 7]
        );
        assert_eq!(wide.len(), 3);
    }

    #[test]
    fn no_weighted_member_no_slots() {
        assert_eq!(Table::new(&[1, 2], &[0, 0]).slots.len(), 0);
        assert_eq!(Table::new(&[], &[]).slots.len(), 0);
    }
}
