//! The Internet checksum (RFC 1071) and the pseudo-headers of TCP, UDP and ICMPv6.
//!
//! The checksum is the 16-bit ones' complement of the ones' complement sum of the data taken as
//! big-endian 16-bit words (RFC 1071 §1), an odd final byte being padded with a zero byte.
//!
//! Values are carried in three forms:
//! * a *partial sum* (`u64`, as returned by [`ones_complement_sum`] and [`pseudo_header_sum`]):
//!   unfolded, congruent modulo `0xffff` to the ones' complement sum of the big-endian words
//!   seen so far, so that pieces can be chained by passing one result as the next `initial`;
//! * a *folded sum* ([`fold`]): the same value reduced to 16 bits, not complemented;
//! * the *checksum* ([`checksum`]): the complement of the folded sum, to store big-endian.
//!
//! When chaining, every piece but the last must have an even length (a piece of odd length
//! would shift the byte pairing of the next one).
//!
//! # Speed
//!
//! The data is summed eight bytes at a time in native byte order (RFC 1071 §2(B): the ones'
//! complement sum is independent of byte order, so the sum of the native-order words is the
//! byte-swapped sum of the big-endian words). Each 64-bit load is split into its two 32-bit
//! halves and both are added to a 64-bit accumulator, so no carry is lost and no per-word carry
//! handling is needed (RFC 1071 §2(C), deferred carries); the compiler vectorizes the loop.
//! Carries are folded once at the end.

use core::net::IpAddr;

/// Adds two partial sums, carrying the bit that falls off the top back in (end-around carry,
/// RFC 1071 §2(A)), so that the result stays congruent modulo `0xffff`.
#[inline]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // If the addition wrapped, `s < b <= u64::MAX`, so adding one cannot overflow.
    s + u64::from(carry)
}

/// Bytes summed between two folds of the accumulator in [`native_sum`]. Each 8-byte step adds
/// less than 2^33, so a block of 2^23 steps adds less than 2^56 and cannot overflow the `u64`.
const BLOCK: usize = 8 << 23;

/// Data shorter than this (headers, small segments) is summed by the compact [`short_sum`];
/// longer data by the vectorized [`long_sum`].
const LONG: usize = 256;

/// The ones' complement sum of `data` taken as 16-bit words in *native* byte order, unfolded.
///
/// Not inlined: one copy serves every transport checksum, filled or verified, so the code a
/// segment runs through stays small (the whole path of a connection competes for the
/// instruction cache); 20-byte IPv4 headers have their own inlined [`checksum20`].
#[inline(never)]
fn native_sum(data: &[u8]) -> u64 {
    if data.len() < LONG {
        short_sum(data)
    } else {
        long_sum(data)
    }
}

/// [`native_sum`] of short data: its 64-bit words added into a 128-bit accumulator (an add and
/// an add-with-carry each; the high half counts the carries out of the low one, and since
/// `2^64 ≡ 1` modulo `0xffff` it is added back once at the end), then the last 0 to 7 bytes.
#[inline(always)]
fn short_sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    let mut acc: u128 = 0;
    for c in &mut chunks {
        acc += u128::from(u64::from_ne_bytes(c.try_into().expect("8 bytes")));
    }
    let mut rest = chunks.remainder();
    if let Some((head, tail)) = rest.split_first_chunk::<4>() {
        acc += u128::from(u32::from_ne_bytes(*head));
        rest = tail;
    }
    // A 16-bit word, then an odd byte padded with zero (RFC 1071 §4.1: it is the high-order
    // byte of its word).
    acc += u128::from(match *rest {
        [a, b, c] => u32::from(u16::from_ne_bytes([a, b])) + u32::from(u16::from_ne_bytes([c, 0])),
        [a, b] => u32::from(u16::from_ne_bytes([a, b])),
        [a] => u32::from(u16::from_ne_bytes([a, 0])),
        _ => 0,
    });
    add_carry(acc as u64, (acc >> 64) as u64)
}

/// The Internet checksum of a 20-byte header (an IPv4 header without options) on its own:
/// [`checksum`]`(header, 0)`, inlined in a few instructions. Verify a received header by
/// checking for `0`.
#[inline]
pub fn checksum20(header: &[u8; 20]) -> u16 {
    let (a, rest) = header.split_at(8);
    let (b, c) = rest.split_at(8);
    let a = u64::from_ne_bytes(a.try_into().expect("8 bytes"));
    let b = u64::from_ne_bytes(b.try_into().expect("8 bytes"));
    let c = u32::from_ne_bytes(c.try_into().expect("4 bytes"));
    let native = fold(add_carry(add_carry(a, b), u64::from(c)));
    !u16::from_be_bytes(native.to_ne_bytes())
}

/// [`native_sum`] of at most [`BLOCK`] bytes: eight bytes a step, each split into its two
/// 32-bit halves and both added, in a loop the compiler vectorizes; then the last 0 to 7.
#[inline(always)]
fn block_sum(block: &[u8]) -> u64 {
    let mut chunks = block.chunks_exact(8);
    let mut acc: u64 = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(word);
        acc += (v & 0xffff_ffff) + (v >> 32);
    }
    let mut rest = chunks.remainder();
    if let Some((head, tail)) = rest.split_first_chunk::<4>() {
        acc += u64::from(u32::from_ne_bytes(*head));
        rest = tail;
    }
    // A 16-bit word, then an odd byte padded with zero (RFC 1071 §4.1: it is the high-order
    // byte of its word).
    acc + match *rest {
        [a, b, c] => u64::from(u16::from_ne_bytes([a, b])) + u64::from(u16::from_ne_bytes([c, 0])),
        [a, b] => u64::from(u16::from_ne_bytes([a, b])),
        [a] => u64::from(u16::from_ne_bytes([a, 0])),
        _ => 0,
    }
}

/// [`native_sum`] of any length, a [`BLOCK`] at a time.
#[inline(never)]
fn long_sum(data: &[u8]) -> u64 {
    data.chunks(BLOCK)
        .fold(0, |total, block| add_carry(total, block_sum(block)))
}

/// Adds the bytes of `data` (16-bit big-endian words, an odd last byte padded with zero) to the
/// partial sum `initial` and returns the new partial sum, unfolded (RFC 1071).
///
/// Pass `0` (or a [`pseudo_header_sum`]) as `initial` to start; pass the result as the
/// `initial` of the next piece to chain. All pieces but the last must have an even length.
#[inline]
pub fn ones_complement_sum(data: &[u8], initial: u64) -> u64 {
    let native = fold(native_sum(data));
    // Reinterpret the folded native-order sum as the big-endian one (RFC 1071 §2(B)).
    let big_endian = u16::from_be_bytes(native.to_ne_bytes());
    add_carry(initial, u64::from(big_endian))
}

/// Folds a partial sum to 16 bits with end-around carries (RFC 1071 §4.1). The result is *not*
/// complemented. It is `0` only if the sum is `0`.
#[inline]
pub fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32); // < 2^33
    let s = (s & 0xffff) + (s >> 16); // < 2^17 + 2^16
    let s = (s & 0xffff) + (s >> 16); // <= 0xffff + 2
    let s = (s & 0xffff) + (s >> 16); // <= 0xffff
    s as u16
}

/// The partial sum of the pseudo-header that the TCP, UDP and ICMPv6 checksums cover.
///
/// * IPv4 (RFC 9293 §3.1, RFC 768): source and destination addresses, a zero byte, the protocol
///   and the 16-bit upper-layer length.
/// * IPv6 (RFC 8200 §8.1): source and destination addresses, the 32-bit upper-layer packet
///   length, three zero bytes and the next header value.
///
/// The two layouts have the same ones' complement sum for the same values (zero words add
/// nothing), so `length` is summed as two 16-bit halves in both cases. With mixed address
/// families each address is summed as itself; that is meaningless but does not panic.
#[inline]
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, length: u32) -> u64 {
    let mut sum = addr_sum(src) + addr_sum(dst);
    sum += u64::from(protocol);
    sum += u64::from(length >> 16) + u64::from(length & 0xffff);
    sum
}

/// The sum of an address's 16-bit big-endian words (at most 8 × 0xffff).
#[inline]
fn addr_sum(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            u64::from(u16::from_be_bytes([o[0], o[1]]))
                + u64::from(u16::from_be_bytes([o[2], o[3]]))
        }
        IpAddr::V6(a) => a.segments().iter().map(|&w| u64::from(w)).sum(),
    }
}

/// The Internet checksum of `data` chained after the partial sum `initial`: the complement of
/// the folded sum (RFC 1071 §1), to be stored big-endian.
///
/// To verify a received header or segment, sum it *including* its checksum field: the result
/// is `0` when the checksum is right.
#[inline]
pub fn checksum(data: &[u8], initial: u64) -> u16 {
    !fold(ones_complement_sum(data, initial))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// The textbook definition, a big-endian word at a time.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        let mut pairs = data.chunks_exact(2);
        for p in &mut pairs {
            s += u64::from(u16::from_be_bytes([p[0], p[1]]));
        }
        if let [b] = pairs.remainder() {
            s += u64::from(*b) << 8;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// A small deterministic generator (xorshift64), so the tests need no dependency.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn matches_naive_on_random_lengths_and_offsets() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = vec![0u8; 70_000];
        for b in buf.iter_mut() {
            *b = rng.next() as u8;
        }
        for _ in 0..2000 {
            let off = (rng.next() % 16) as usize;
            let len = match rng.next() % 4 {
                0 => (rng.next() % 64) as usize,
                1 => (rng.next() % 1600) as usize,
                _ => (rng.next() % 65_536) as usize,
            };
            let data = &buf[off..off + len];
            assert_eq!(
                fold(ones_complement_sum(data, 0)),
                naive(data),
                "off {off} len {len}"
            );
        }
    }

    #[test]
    fn checksum20_is_checksum() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _ in 0..2000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                *b = rng.next() as u8;
            }
            if rng.next().is_multiple_of(4) {
                h = [0xff; 20];
            }
            assert_eq!(checksum20(&h), checksum(&h, 0));
        }
    }

    #[test]
    fn all_ones_and_all_zeros() {
        for len in 0..40 {
            let ones = vec![0xffu8; len];
            assert_eq!(
                fold(ones_complement_sum(&ones, 0)),
                naive(&ones),
                "len {len}"
            );
            let zeros = vec![0u8; len];
            assert_eq!(fold(ones_complement_sum(&zeros, 0)), 0);
            assert_eq!(checksum(&zeros, 0), 0xffff);
        }
        // A big all-ones buffer exercises the deferred carries.
        let ones = vec![0xffu8; 65_535];
        assert_eq!(fold(ones_complement_sum(&ones, 0)), naive(&ones));
    }

    #[test]
    fn chaining_even_pieces_equals_whole() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 37 + 11) as u8).collect();
        for split in (0..data.len()).step_by(2) {
            let (a, b) = data.split_at(split);
            let chained = ones_complement_sum(b, ones_complement_sum(a, 0));
            assert_eq!(fold(chained), naive(&data));
        }
        // Chaining after a huge initial value does not overflow.
        assert_eq!(
            fold(ones_complement_sum(&data, u64::MAX)),
            fold(ones_complement_sum(&data, 0xffff))
        );
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(ones_complement_sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn ipv4_header_example() {
        // A classic IPv4 header with checksum b861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr, 0), 0xb861);
        let mut with = hdr;
        with[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&with, 0), 0);
    }

    #[test]
    fn pseudo_header_matches_explicit_layout() {
        let s4 = Ipv4Addr::new(192, 168, 1, 2);
        let d4 = Ipv4Addr::new(10, 200, 3, 4);
        let mut ph = Vec::new();
        ph.extend_from_slice(&s4.octets());
        ph.extend_from_slice(&d4.octets());
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&1234u16.to_be_bytes());
        assert_eq!(
            fold(pseudo_header_sum(s4.into(), d4.into(), 6, 1234)),
            naive(&ph)
        );

        let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d6: Ipv6Addr = "fe80::ffff:1234:5678:9abc".parse().unwrap();
        let mut ph = Vec::new();
        ph.extend_from_slice(&s6.octets());
        ph.extend_from_slice(&d6.octets());
        ph.extend_from_slice(&70_000u32.to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            fold(pseudo_header_sum(s6.into(), d6.into(), 58, 70_000)),
            naive(&ph)
        );
    }
}
