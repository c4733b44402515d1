//! A fast keyed hash for the connection table.
//!
//! Every segment looks its connection up by 4-tuple, so the hash is on the hot path; a peer
//! chooses the tuples, so the hash must not be predictable, or a flood of colliding tuples could
//! turn lookups linear. Like Linux's `inet_ehashfn` (a keyed jhash), this keys a fast mixing
//! function with a per-endpoint secret: a folded 64×64→128-bit multiply per word (the core of
//! wyhash/foldhash), and a final avalanche.

use core::hash::{BuildHasher, Hash, Hasher};

use crate::state::FourTuple;

/// Folded multiply: the high and low halves of the 128-bit product, xored.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`TupleHasher`]s under one secret key.
#[derive(Clone, Copy, Debug)]
pub struct TupleHashBuilder {
    k0: u64,
    k1: u64,
}

impl TupleHashBuilder {
    pub fn new(secret: [u8; 16]) -> TupleHashBuilder {
        let k0 = u64::from_le_bytes(secret[..8].try_into().unwrap_or([0; 8]));
        let k1 = u64::from_le_bytes(secret[8..].try_into().unwrap_or([0; 8]));
        // Odd multipliers, never zero, derived from the key.
        TupleHashBuilder {
            k0: (k0 ^ 0x243f_6a88_85a3_08d3) | 1,
            k1: (k1 ^ 0x1319_8a2e_0370_7344) | 1,
        }
    }
}

impl BuildHasher for TupleHashBuilder {
    type Hasher = TupleHasher;
    #[inline]
    fn build_hasher(&self) -> TupleHasher {
        TupleHasher {
            state: self.k1,
            k: self.k0,
        }
    }
}

/// The hasher; see the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct TupleHasher {
    state: u64,
    k: u64,
}

impl Hasher for TupleHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.state = fold_mul(self.state ^ v, self.k);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A last multiply and shift so every input bit reaches the high bits the table uses.
        let x = fold_mul(self.state, 0x9e37_79b9_7f4a_7c15 ^ self.k);
        x ^ (x >> 29)
    }
}

/// Hash a tuple as a few whole words instead of field by field.
impl Hash for FourTuple {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        let ports = (u64::from(self.local.port()) << 16) | u64::from(self.remote.port());
        match (self.local.ip(), self.remote.ip()) {
            (core::net::IpAddr::V4(l), core::net::IpAddr::V4(r)) => {
                h.write_u64((u64::from(u32::from(l)) << 32) | u64::from(u32::from(r)));
                h.write_u64(ports);
            }
            (l, r) => {
                for ip in [l, r] {
                    let b = match ip {
                        core::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                        core::net::IpAddr::V6(a) => a.octets(),
                    };
                    let n = u128::from_be_bytes(b);
                    h.write_u64(n as u64);
                    h.write_u64((n >> 64) as u64);
                }
                h.write_u64(ports | (1 << 40));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::SocketAddr;

    fn t(l: &str, r: &str) -> FourTuple {
        FourTuple {
            local: l.parse::<SocketAddr>().unwrap(),
            remote: r.parse::<SocketAddr>().unwrap(),
        }
    }

    fn h(b: &TupleHashBuilder, x: &FourTuple) -> u64 {
        b.hash_one(x)
    }

    #[test]
    fn spreads_ports_and_depends_on_the_key() {
        let b = TupleHashBuilder::new([5; 16]);
        let other = TupleHashBuilder::new([6; 16]);
        let mut seen = HashSet::new();
        for port in 32768..42768u16 {
            let x = t(&format!("198.18.0.1:{port}"), "198.18.0.2:80");
            // The low 12 bits (a table of 4096 buckets) still spread out.
            seen.insert(h(&b, &x) & 0xfff);
            assert_ne!(h(&b, &x), h(&other, &x));
        }
        assert!(
            seen.len() > 3500,
            "only {} of 4096 buckets used",
            seen.len()
        );
        let v6 = t("[2001:2::1]:1000", "[2001:2::2]:80");
        let v6b = t("[2001:2::1]:1000", "[2001:2::3]:80");
        assert_ne!(h(&b, &v6), h(&b, &v6b));
    }
}
