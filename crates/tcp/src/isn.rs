//! Initial sequence numbers, RFC 6528 §3: `ISN = M + F(localip, localport, remoteip, remoteport,
//! secretkey)`, where `M` is a timer ticking every 4 microseconds and `F` a keyed hash.
//!
//! `F` is SipHash-2-4 under a 128-bit key that each stack draws once (the driver supplies it: from
//! the seeded RNG in the simulator, from the OS in a real stack). The same generator derives the
//! per-connection timestamp offset (RFC 7323 §5.4: the other half of the ISN's hash) and the
//! ephemeral-port offset (RFC 6056 §3.3.3, under another domain byte), so none of them reveals
//! another.
//!
//! SipHash-2-4 is written out here over one short message, a few dozen instructions, rather
//! than through a general streaming hasher: every connection, active or passive, computes it
//! once, and churn is bound by code size as much as by instruction count. A test checks it
//! against the `siphasher` crate.

use core::net::{IpAddr, SocketAddr};

use crate::seq::SeqNum;
use crate::time::Instant;

/// Keyed generator of initial sequence numbers and other per-tuple secrets.
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl IsnGenerator {
    pub fn new(key: [u8; 16]) -> IsnGenerator {
        IsnGenerator { key }
    }

    fn hash(&self, domain: u8, local: SocketAddr, remote: Option<SocketAddr>) -> u64 {
        // The message: the domain byte, then each address's octets and port (little-endian).
        if let (SocketAddr::V4(l), Some(SocketAddr::V4(r))) = (local, remote) {
            // The same 13 bytes for an IPv4 tuple, in two fixed words (no loop, no copy of a
            // variable length: every connection hashes its tuple).
            let mut msg = [0u8; 16];
            msg[0] = domain;
            msg[1..5].copy_from_slice(&l.ip().octets());
            msg[5..7].copy_from_slice(&l.port().to_le_bytes());
            msg[7..11].copy_from_slice(&r.ip().octets());
            msg[11..13].copy_from_slice(&r.port().to_le_bytes());
            return siphash24_13(&self.key, &msg);
        }
        let mut msg = [0u8; 1 + 2 * 18];
        msg[0] = domain;
        let mut len = 1;
        for addr in core::iter::once(local).chain(remote) {
            // One inlined copy per family, so each is of a fixed size (no copy call).
            let mut put = |octets: &[u8]| {
                let end = len + octets.len() + 2;
                if let Some(out) = msg.get_mut(len..end) {
                    out[..octets.len()].copy_from_slice(octets);
                    out[octets.len()..].copy_from_slice(&addr.port().to_le_bytes());
                    len = end;
                }
            };
            match addr.ip() {
                IpAddr::V4(a) => put(&a.octets()),
                IpAddr::V6(a) => put(&a.octets()),
            }
        }
        siphash24(&self.key, &msg[..len])
    }

    /// The ISN and the timestamp offset from one keyed hash of the tuple: its low 32 bits are
    /// `F` of RFC 6528, its high 32 bits the offset of RFC 7323 §5.4 (neither reveals the
    /// other: halves of a PRF output are independent).
    pub fn isn_and_ts_offset(
        &self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> (SeqNum, u32) {
        let h = self.hash(0, local, Some(remote));
        let m = (now.as_micros() / 4) as u32;
        (SeqNum(m.wrapping_add(h as u32)), (h >> 32) as u32)
    }

    /// The ISN for a connection: `M + F(tuple, key)`, RFC 6528 §3.
    pub fn isn(&self, now: Instant, local: SocketAddr, remote: SocketAddr) -> SeqNum {
        self.isn_and_ts_offset(now, local, remote).0
    }

    /// The keyed hash of a SYN cookie (RFC 4987 §3.6): the tuple, the peer's ISN and `extra`
    /// (the cookie's counter and MSS index), under its own domain byte.
    pub fn cookie_hash(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: u32,
        extra: u32,
    ) -> u32 {
        let h = self.hash(3, local, Some(remote));
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&h.to_le_bytes());
        msg[8..12].copy_from_slice(&peer_isn.to_le_bytes());
        msg[12..].copy_from_slice(&extra.to_le_bytes());
        siphash24(&self.key, &msg) as u32
    }

    /// A 16-byte key for another purpose (`domain` says which), derived from this one: two
    /// SipHash outputs under it, so that neither key reveals the other.
    pub fn derive_key(&self, domain: u8) -> [u8; 16] {
        let a = siphash24(&self.key, &[domain, 0]);
        let b = siphash24(&self.key, &[domain, 1]);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&a.to_le_bytes());
        k[8..].copy_from_slice(&b.to_le_bytes());
        k
    }

    /// A per-destination starting offset for ephemeral port search, RFC 6056 §3.3.3.
    pub fn port_offset(&self, local_ip: IpAddr, remote: SocketAddr) -> u32 {
        self.hash(2, SocketAddr::new(local_ip, 0), Some(remote)) as u32
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of `msg` under the 128-bit `key`.
pub(crate) fn siphash24(key: &[u8; 16], msg: &[u8]) -> u64 {
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let (k0, k1) = (word(&key[..8]), word(&key[8..]));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let chunks = msg.chunks_exact(8);
    let tail = word(chunks.remainder()) | ((msg.len() as u64) << 56);
    for m in chunks.map(word).chain(core::iter::once(tail)) {
        v[3] ^= m;
        sip_rounds(&mut v, 2);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    sip_rounds(&mut v, 4);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// [`siphash24`] of the first 13 bytes of `msg`, whose last 3 bytes are zero: one whole word
/// and the tail word, read straight from the array.
fn siphash24_13(key: &[u8; 16], msg: &[u8; 16]) -> u64 {
    let (k0, k1) = key.split_at(8);
    let (k0, k1) = (
        u64::from_le_bytes(k0.try_into().expect("8 bytes")),
        u64::from_le_bytes(k1.try_into().expect("8 bytes")),
    );
    let (m0, m1) = msg.split_at(8);
    let m0 = u64::from_le_bytes(m0.try_into().expect("8 bytes"));
    // The tail word: bytes 8..13, zero padding, the message length in the top byte.
    let tail = u64::from_le_bytes(m1.try_into().expect("8 bytes")) | (13u64 << 56);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    for m in [m0, tail] {
        v[3] ^= m;
        sip_rounds(&mut v, 2);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    sip_rounds(&mut v, 4);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Not inlined, so that the rounds stay one small loop rather than unrolling into the caller.
#[inline(never)]
fn sip_rounds(v: &mut [u64; 4], n: usize) {
    for _ in 0..n {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
}

impl core::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IsnGenerator { key: <secret> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The compact SipHash-2-4 is SipHash-2-4: equal to the `siphasher` crate's for every
    /// message length up to the longest this module hashes, under a few keys.
    #[test]
    fn siphash_matches_the_reference() {
        use core::hash::Hasher;
        for seed in 0..8u8 {
            let key: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(31) ^ seed);
            let msg: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(7) ^ seed).collect();
            for len in 0..=msg.len() {
                let mut h = siphasher::sip::SipHasher24::new_with_key(&key);
                h.write(&msg[..len]);
                assert_eq!(siphash24(&key, &msg[..len]), h.finish(), "len {len}");
            }
        }
    }

    /// The message layout did not change: the ISN of a fixed tuple under a fixed key, as the
    /// earlier streaming `siphasher` version computed it (so traces stay the same).
    #[test]
    fn same_isn_as_the_streaming_hasher() {
        use core::hash::Hasher;
        let key = [9u8; 16];
        let (l, r) = (sa("198.18.0.1:40000"), sa("[2001:2::2]:80"));
        let mut h = siphasher::sip::SipHasher24::new_with_key(&key);
        h.write_u8(0);
        h.write(&[198, 18, 0, 1]);
        h.write_u16(40000);
        if let IpAddr::V6(a) = r.ip() {
            h.write(&a.octets());
        }
        h.write_u16(80);
        assert_eq!(IsnGenerator::new(key).hash(0, l, Some(r)), h.finish());
    }

    /// The IPv4 shortcut hashes the same 13 bytes as the general path.
    #[test]
    fn ipv4_shortcut_is_the_general_hash() {
        for seed in 0..8u8 {
            let key: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ seed);
            let g = IsnGenerator::new(key);
            let (l, r) = (sa("198.18.0.1:40000"), sa("10.1.2.3:443"));
            for domain in [0, 2, 3] {
                let mut msg = vec![domain, 198, 18, 0, 1];
                msg.extend_from_slice(&40000u16.to_le_bytes());
                msg.extend_from_slice(&[10, 1, 2, 3]);
                msg.extend_from_slice(&443u16.to_le_bytes());
                assert_eq!(g.hash(domain, l, Some(r)), siphash24(&key, &msg));
            }
        }
    }

    #[test]
    fn differs_across_tuples_and_keys_and_advances_with_time() {
        let g = IsnGenerator::new([1; 16]);
        let a = g.isn(Instant::ZERO, sa("198.18.0.1:40000"), sa("198.18.0.2:80"));
        let b = g.isn(Instant::ZERO, sa("198.18.0.1:40001"), sa("198.18.0.2:80"));
        assert_ne!(a, b);
        let other = IsnGenerator::new([2; 16]);
        let c = other.isn(Instant::ZERO, sa("198.18.0.1:40000"), sa("198.18.0.2:80"));
        assert_ne!(a, c);
        // M ticks every 4 µs: 4 ms later the same tuple's ISN is 1000 higher.
        let later = g.isn(
            Instant::from_micros(4000),
            sa("198.18.0.1:40000"),
            sa("198.18.0.2:80"),
        );
        assert_eq!(later.diff(a), 1000);
    }
}
