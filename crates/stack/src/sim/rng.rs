//! The simulator's pseudo-random numbers: xoshiro256** seeded through SplitMix64.
//!
//! Both generators are by Blackman and Vigna ("Scrambled Linear Pseudorandom Number
//! Generators", ACM TOMS 47(4), 2021; <https://prng.di.unimi.it/>). They are written here from
//! the published algorithm so that the simulator needs no dependency and its streams can never
//! change under it with a crate upgrade: the same seed gives the same draws, bit for bit, on
//! every platform and every build.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): a 64-bit counter run through a strong mixing function.
///
/// Used to expand one `u64` seed into the 256-bit state of [`Xoshiro256StarStar`] and to derive
/// independent seeds (one per simulated path) from the network's seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is `mix(seed + golden gamma)`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }
}

/// SplitMix64's output function: a bijective avalanche mix of 64 bits.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xoshiro256** 1.0: a fast all-purpose generator with 256 bits of state and period 2^256 − 1.
#[derive(Clone, Debug)]
pub struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Seeds the 256-bit state with four outputs of [`SplitMix64`] started at `seed`, as the
    /// authors recommend. The state can never be all zeros this way (SplitMix64's output
    /// function is a bijection, so four consecutive outputs are never all zero).
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        Xoshiro256StarStar { s }
    }

    /// A generator with exactly this state (for test vectors). An all-zero state would only
    /// ever produce zeros, so it is replaced by the state `seed_from_u64(0)` gives.
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            return Self::seed_from_u64(0);
        }
        Xoshiro256StarStar { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n)`, or 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        scale_below(self.next_u64(), n)
    }

    /// True with probability `p` (never for `p <= 0` or NaN, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// Maps 64 random bits onto `[0, n)` by a 64×64→128 multiply (Lemire's method without the
/// rejection step; the bias is below 2^-64 · n, far under anything a simulation can observe).
pub(crate) fn scale_below(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

/// True with probability `p` for a uniform draw `u` in `[0, 1)`; NaN and `p <= 0` never fire.
pub(crate) fn fires(u: f64, p: f64) -> bool {
    u < p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_vector() {
        // The first outputs of SplitMix64 seeded with 0, as published with the reference code.
        let mut sm = SplitMix64::new(0);
        assert_eq!(sm.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(sm.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(sm.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn xoshiro_reference_vector() {
        // Worked by hand from the algorithm for state [1, 2, 3, 4].
        let mut x = Xoshiro256StarStar::from_state([1, 2, 3, 4]);
        assert_eq!(x.next_u64(), 11520);
        assert_eq!(x.next_u64(), 0);
        assert_eq!(x.next_u64(), 1_509_978_240);
        assert_eq!(x.next_u64(), 1_215_971_899_390_074_240);
    }

    #[test]
    fn all_zero_state_is_replaced() {
        let mut x = Xoshiro256StarStar::from_state([0; 4]);
        assert_ne!((x.next_u64(), x.next_u64()), (0, 0));
    }

    #[test]
    fn floats_are_in_unit_interval_and_roughly_uniform() {
        let mut x = Xoshiro256StarStar::seed_from_u64(7);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let f = x.next_f64();
            assert!((0.0..1.0).contains(&f));
            sum += f;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn below_stays_below() {
        let mut x = Xoshiro256StarStar::seed_from_u64(1);
        assert_eq!(x.below(0), 0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = x.below(7);
            assert!(v < 7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(scale_below(u64::MAX, 10), 9);
    }

    #[test]
    fn chance_edges() {
        let mut x = Xoshiro256StarStar::seed_from_u64(3);
        for _ in 0..1000 {
            assert!(!x.chance(0.0));
            assert!(!x.chance(-1.0));
            assert!(!x.chance(f64::NAN));
            assert!(x.chance(1.0));
            assert!(x.chance(2.0));
        }
    }
}
