//! Initial sequence numbers, RFC 6528 §3: `ISN = M + F(localip, localport, remoteip, remoteport,
//! secretkey)`, where `M` is a timer ticking every 4 microseconds and `F` a keyed hash.
//!
//! `F` is SipHash-2-4 under a 128-bit key that each stack draws once (the driver supplies it: from
//! the seeded RNG in the simulator, from the OS in a real stack). The same generator derives the
//! per-connection timestamp offset (RFC 7323 §5.4: the other half of the ISN's hash) and the
//! ephemeral-port offset (RFC 6056 §3.3.3, under another domain byte), so none of them reveals
//! another.

use core::hash::Hasher;
use core::net::{IpAddr, SocketAddr};

use siphasher::sip::SipHasher24;

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
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write_u8(domain);
        write_addr(&mut h, local.ip());
        h.write_u16(local.port());
        if let Some(remote) = remote {
            write_addr(&mut h, remote.ip());
            h.write_u16(remote.port());
        }
        h.finish()
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

    /// A per-destination starting offset for ephemeral port search, RFC 6056 §3.3.3.
    pub fn port_offset(&self, local_ip: IpAddr, remote: SocketAddr) -> u32 {
        self.hash(2, SocketAddr::new(local_ip, 0), Some(remote)) as u32
    }
}

fn write_addr(h: &mut SipHasher24, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
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
