//! The one hash croupier's pseudo-random choices share: power of two's samples, key
//! affinity's table and key slots, and outlier ejection's jitter.

/// SplitMix64's increment (the golden ratio in 64 bits): consecutive states of the generator.
pub(crate) const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function (Steele, Lea, Flood 2014): the generator's output for state
/// `z`, which spreads `z`'s bits over the whole word.
#[inline]
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mixer is SplitMix64: the first outputs of the reference generator (Vigna's
    /// `splitmix64.c`) seeded with 0.
    #[test]
    fn the_mixer_is_splitmix64() {
        let expected = [
            0xe220_a839_7b1d_cdaf,
            0x6e78_9e6a_a1b9_65f4,
            0x06c4_5d18_8009_454f,
        ];
        for (k, want) in expected.into_iter().enumerate() {
            let state = GOLDEN_GAMMA.wrapping_mul(k as u64);
            assert_eq!(splitmix64(state), want, "output {k}");
        }
    }
}
