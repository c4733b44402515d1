//! The flow (TCP 4-tuple) a packet belongs to, read straight from its headers, and the shard
//! that owns a flow.
//!
//! The driver reads the flow of every packet that enters or leaves a shard: to steer it to the
//! shard that owns it (like a NIC's receive-side scaling), and to mark the connection it
//! touched so that only those connections are looked at for waking (the ready set).

use std::net::SocketAddr;

use crate::iface::quoted;

const TCP: u8 = 6;

/// The IP protocol and the offset of the transport header of an IPv4 or IPv6 packet (no IPv6
/// extension headers: the stack sends none and drops what carries them).
fn transport(packet: &[u8]) -> Option<(u8, usize)> {
    match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let h = packet.get(..20)?;
            // A fragment after the first carries no transport header (RFC 791).
            let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            (ihl >= 20 && frag_offset == 0).then_some((h[9], ihl))
        }
        6 => Some((*packet.get(6)?, 40)),
        _ => None,
    }
}

/// The quoted packet of an ICMPv4 or ICMPv6 error (destination unreachable, packet too big,
/// time exceeded, parameter problem: RFC 792, RFC 4443 §3), after the ICMP header's 8 bytes.
fn icmp_quote(packet: &[u8], proto: u8, off: usize) -> Option<&[u8]> {
    let ty = *packet.get(off)?;
    let error = match proto {
        1 => matches!(ty, 3 | 11 | 12),
        58 => matches!(ty, 1..=4),
        _ => false,
    };
    if error {
        packet.get(off + 8..)
    } else {
        None
    }
}

/// The TCP flow of a packet arriving at the stack, as `(local, remote)`: a TCP segment's
/// destination and source, or for an ICMP error the segment it quotes, which the stack sent
/// (its source is ours). `None` for anything else (UDP, ICMP echo, junk).
pub(crate) fn rx_flow(packet: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let (proto, off) = transport(packet)?;
    if proto == TCP {
        let (src, dst, _) = quoted(packet, TCP)?;
        return Some((dst, src));
    }
    let inner = icmp_quote(packet, proto, off)?;
    let (src, dst, _) = quoted(inner, TCP)?;
    Some((src, dst))
}

/// The TCP flow of a segment the stack sends, as `(local, remote)`.
pub(crate) fn tx_flow(packet: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let (proto, _) = transport(packet)?;
    if proto != TCP {
        return None;
    }
    let (src, dst, _) = quoted(packet, TCP)?;
    Some((src, dst))
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn endpoint_hash(a: SocketAddr) -> u64 {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v) => u64::from(u32::from(v)),
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            mix(x as u64) ^ (x >> 64) as u64
        }
    };
    mix(ip ^ (u64::from(a.port()) << 40))
}

/// The shard (of `shards`) that owns the flow between `a` and `b`, the same whichever side is
/// local: both ends of an in-memory multiqueue pipe, and a stack's receive and send paths,
/// agree on it. Not keyed: it spreads flows, it does not defend against a peer choosing ports
/// to load one shard (a keyed Toeplitz hash, as NICs use, would).
pub fn shard_of(a: SocketAddr, b: SocketAddr, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let (x, y) = (endpoint_hash(a), endpoint_hash(b));
    // Symmetric: the sum and the product of the two halves do not depend on their order.
    let h = mix(x.wrapping_add(y) ^ x.wrapping_mul(y).rotate_left(17));
    (((h >> 32) * shards as u64) >> 32) as usize
}

/// The shard that should receive `packet` (TCP by its flow, ICMP errors by the flow they
/// quote, everything else — UDP, ICMP echo, junk — on shard 0).
pub fn rx_shard(packet: &[u8], shards: usize) -> usize {
    match rx_flow(packet) {
        Some((l, r)) => shard_of(l, r, shards),
        None => 0,
    }
}

/// The shard whose queue a packet the stack sends belongs on (by its flow).
pub fn tx_shard(packet: &[u8], shards: usize) -> usize {
    match tx_flow(packet) {
        Some((l, r)) => shard_of(l, r, shards),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_the_same_from_both_ends_and_flows_spread() {
        let mut per = [0usize; 4];
        for port in 40_000..41_000u16 {
            let a: SocketAddr = format!("198.18.0.1:{port}").parse().unwrap();
            let b: SocketAddr = "198.18.0.2:80".parse().unwrap();
            let s = shard_of(a, b, 4);
            assert_eq!(s, shard_of(b, a, 4));
            per[s] += 1;
        }
        assert!(per.iter().all(|&n| n > 200), "{per:?}");
        let a: SocketAddr = "198.18.0.1:1".parse().unwrap();
        assert_eq!(shard_of(a, a, 1), 0);
    }
}
