//! Copying bytes and summing them for the Internet checksum in one pass (RFC 1071 §2(D),
//! "combining with other operations": the data is read once, for the copy and the sum).
//!
//! A TCP sender copies each segment's payload from its send buffer into the packet and must
//! then sum it; a receiver sums the payload and copies it into its receive buffer. Done apart,
//! each of those is two passes over every byte; [`copy_and_sum`] makes it one. The sum is the
//! bottleneck of such a loop (a store costs next to nothing beside it), so the sum here runs
//! four independent 128-bit accumulators of native-order 64-bit words: each step is an add with
//! carry into the upper half, no carry is ever lost (RFC 1071 §2(C), deferred carries), and the
//! four chains keep the adders busy.

use crate::checksum::fold;

/// Adds two partial sums with an end-around carry (RFC 1071 §2(A)).
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// Copies `src` into `dst` and adds the bytes (16-bit big-endian words, an odd last byte
/// padded with zero) to the partial sum `initial`, returning the new partial sum unfolded: the
/// same value [`ones_complement_sum`](crate::checksum::ones_complement_sum)`(src, initial)`
/// gives, so the two chain freely (every piece but the last of even length).
///
/// # Panics
/// If `dst` and `src` differ in length.
#[inline]
pub fn copy_and_sum(dst: &mut [u8], src: &[u8], initial: u64) -> u64 {
    assert_eq!(dst.len(), src.len(), "copy_and_sum: lengths differ");
    let native = fold(copy_native_sum(dst, src));
    // The folded native-order sum is the byte-swapped big-endian one (RFC 1071 §2(B)).
    let big_endian = u16::from_be_bytes(native.to_ne_bytes());
    add_carry(initial, u64::from(big_endian))
}

/// Copies and sums 32 bytes a step as four native-order `u64` words, each into its own `u128`
/// accumulator (a `u128` cannot overflow from fewer than 2^64 words); the tail of 0 to 31 bytes
/// a word, a half, a quarter and a byte at a time. Returns the native-order sum, unfolded.
#[inline(never)]
fn copy_native_sum(dst: &mut [u8], src: &[u8]) -> u64 {
    let mut acc = [0u128; 4];
    let mut d = dst.chunks_exact_mut(32);
    let mut s = src.chunks_exact(32);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let mut w = [0u64; 4];
        for (i, w) in w.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&sc[8 * i..8 * i + 8]);
            *w = u64::from_ne_bytes(b);
        }
        for (i, &w) in w.iter().enumerate() {
            dc[8 * i..8 * i + 8].copy_from_slice(&w.to_ne_bytes());
            acc[i] += u128::from(w);
        }
    }
    let (dr, sr) = (d.into_remainder(), s.remainder());
    dr.copy_from_slice(sr);
    let total = acc[0] + acc[1] + acc[2] + acc[3];
    let mut sum = add_carry(total as u64, (total >> 64) as u64);
    let mut rest = sr;
    while let Some((w, tail)) = rest.split_first_chunk::<8>() {
        sum = add_carry(sum, u64::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        sum = add_carry(sum, u64::from(u32::from_ne_bytes(*w)));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<2>() {
        sum = add_carry(sum, u64::from(u16::from_ne_bytes(*w)));
        rest = tail;
    }
    if let [b] = *rest {
        // An odd byte is the high-order byte of its word (RFC 1071 §4.1).
        sum = add_carry(sum, u64::from(u16::from_ne_bytes([b, 0])));
    }
    sum
}

/// The partial sum of bytes that follow a piece of odd length, from the sum `sum` they have
/// taken alone: past an odd boundary every byte changes place within its word, and the
/// ones' complement sum of byte-swapped words is the byte-swapped sum (RFC 1071 §2(B)).
#[inline]
pub fn after_odd(sum: u64) -> u64 {
    u64::from(fold(sum).swap_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::ones_complement_sum;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn copies_exactly_and_sums_as_ones_complement_sum() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let src: Vec<u8> = (0..70_000).map(|_| rng.next() as u8).collect();
        let mut dst = vec![0u8; 70_000];
        for _ in 0..3000 {
            let off = (rng.next() % 16) as usize;
            let len = match rng.next() % 3 {
                0 => (rng.next() % 70) as usize,
                1 => (rng.next() % 1600) as usize,
                _ => (rng.next() % 65_536) as usize,
            };
            let doff = (rng.next() % 16) as usize;
            let initial = rng.next() >> (rng.next() % 64);
            dst.iter_mut().for_each(|b| *b = 0xa5);
            let got = copy_and_sum(&mut dst[doff..doff + len], &src[off..off + len], initial);
            let want = ones_complement_sum(&src[off..off + len], initial);
            assert_eq!(fold(got), fold(want), "off {off} len {len}");
            assert_eq!(&dst[doff..doff + len], &src[off..off + len]);
            // Nothing around the destination is touched.
            assert!(dst[..doff].iter().all(|&b| b == 0xa5));
            assert!(dst[doff + len..].iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn all_ones_keep_every_carry() {
        let src = vec![0xffu8; 65_535];
        let mut dst = vec![0u8; 65_535];
        assert_eq!(
            fold(copy_and_sum(&mut dst, &src, u64::MAX)),
            fold(ones_complement_sum(&src, u64::MAX))
        );
    }

    #[test]
    fn pieces_split_at_an_odd_boundary() {
        let data: Vec<u8> = (0..999u32).map(|i| (i * 97 + 5) as u8).collect();
        let mut out = vec![0u8; data.len()];
        for split in [1, 3, 499, 997] {
            let (a, b) = data.split_at(split);
            let (oa, ob) = out.split_at_mut(split);
            let sa = copy_and_sum(oa, a, 0);
            let sb = copy_and_sum(ob, b, 0);
            let whole = add_carry(sa, after_odd(sb));
            assert_eq!(fold(whole), fold(ones_complement_sum(&data, 0)), "{split}");
            assert_eq!(out, data);
        }
    }
}
