//! SYN cookies (RFC 4987 §3.6): when a listener's SYN queue is full, the SYN-ACK's sequence
//! number carries what the connection needs, and no state is kept until the handshake's ACK
//! comes back with it.
//!
//! The cookie is the ISS: a 5-bit counter of 64-second periods, a 3-bit index into a table of
//! MSS values, and 24 bits of a keyed hash of the 4-tuple, the peer's ISN, the counter and the
//! index. It is valid for two periods (up to about two minutes, as Linux's). Window scale and
//! SACK do not fit in 32 bits; as Linux does, they ride in the low 6 bits of the SYN-ACK's
//! timestamp, which the ACK echoes, so a peer without timestamps gets neither.

use core::net::SocketAddr;

use crate::isn::IsnGenerator;
use crate::seq::SeqNum;
use crate::time::Instant;

/// MSS values a cookie can say (3 bits): the largest not above the peer's is used.
pub const MSS_TABLE: [u16; 8] = [88, 536, 1220, 1300, 1440, 1460, 4312, 8960];

/// Seconds per counter period, and how many periods a cookie stays valid for.
const PERIOD_SECS: u64 = 64;
const VALID_PERIODS: u32 = 2;

/// Low TSval bits used for options: 4 bits of window scale (15: none), 1 bit of SACK.
const TS_OPTION_BITS: u32 = 6;
const TS_NO_WSCALE: u32 = 0xF;

/// What a cookie carries back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOptions {
    pub mss: u16,
    pub window_scale: Option<u8>,
    pub sack: bool,
}

fn counter(now: Instant) -> u32 {
    ((now.as_millis() / 1000 / PERIOD_SECS) & 0x1F) as u32
}

fn hash(
    isn: &IsnGenerator,
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    counter: u32,
    mss_index: u32,
) -> u32 {
    isn.cookie_hash(local, remote, peer_isn, counter << 3 | mss_index) & 0x00FF_FFFF
}

/// The ISS for a SYN from `remote` (whose ISN is `peer_isn`, offering `peer_mss`).
pub fn make(
    isn: &IsnGenerator,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    peer_mss: u16,
) -> (SeqNum, u16) {
    let index = MSS_TABLE.iter().rposition(|&m| m <= peer_mss).unwrap_or(0);
    let c = counter(now);
    let h = hash(isn, local, remote, peer_isn, c, index as u32);
    (SeqNum(c << 27 | (index as u32) << 24 | h), MSS_TABLE[index])
}

/// The MSS a valid cookie (the ACK's acknowledgment less one) carries, or `None` if the
/// cookie is forged or too old.
pub fn check(
    isn: &IsnGenerator,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    cookie: u32,
) -> Option<u16> {
    let c = cookie >> 27;
    let index = (cookie >> 24) & 0x7;
    let age = counter(now).wrapping_sub(c) & 0x1F;
    if age >= VALID_PERIODS {
        return None;
    }
    (hash(isn, local, remote, peer_isn, c, index) == cookie & 0x00FF_FFFF)
        .then(|| MSS_TABLE[index as usize])
}

/// Our SYN-ACK's TSval with the options in its low bits, never ahead of our clock `ts_now`.
pub fn encode_ts(ts_now: u32, window_scale: Option<u8>, sack: bool) -> u32 {
    let opts = u32::from(window_scale.unwrap_or(TS_NO_WSCALE as u8)).min(TS_NO_WSCALE)
        | u32::from(sack) << 4;
    let ts = (ts_now & !((1 << TS_OPTION_BITS) - 1)) | opts;
    if (ts.wrapping_sub(ts_now) as i32) > 0 {
        ts.wrapping_sub(1 << TS_OPTION_BITS)
    } else {
        ts
    }
}

/// The options encoded in an echoed TSval.
pub fn decode_ts(tsecr: u32) -> (Option<u8>, bool) {
    let ws = tsecr & 0xF;
    let window_scale = (ws != TS_NO_WSCALE).then_some(ws.min(14) as u8);
    (window_scale, tsecr & 0x10 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_cookie_checks_for_two_periods_and_only_for_its_tuple_and_isn() {
        let g = IsnGenerator::new([9; 16]);
        let (l, r) = (sa("198.18.0.2:80"), sa("198.18.0.1:40000"));
        let t0 = Instant::from_millis(1_000_000);
        let (iss, mss) = make(&g, t0, l, r, 777, 1460);
        assert_eq!(mss, 1460);
        assert_eq!(check(&g, t0, l, r, 777, iss.0), Some(1460));
        let later = t0 + crate::Duration::from_secs(PERIOD_SECS);
        assert_eq!(check(&g, later, l, r, 777, iss.0), Some(1460));
        let too_late = t0 + crate::Duration::from_secs(3 * PERIOD_SECS);
        assert_eq!(check(&g, too_late, l, r, 777, iss.0), None);
        assert_eq!(check(&g, t0, l, r, 778, iss.0), None);
        assert_eq!(check(&g, t0, l, sa("198.18.0.1:40001"), 777, iss.0), None);
        assert_eq!(check(&g, t0, l, r, 777, iss.0 ^ 1), None);
        // A small MSS is never rounded up.
        assert_eq!(make(&g, t0, l, r, 1, 1000).1, 536);
        assert_eq!(make(&g, t0, l, r, 1, 100).1, 88);
    }

    #[test]
    fn options_round_trip_through_the_timestamp() {
        for ws in [None, Some(0), Some(7), Some(14)] {
            for sack in [false, true] {
                for now in [0u32, 5, 63, 64, 1000, u32::MAX] {
                    let ts = encode_ts(now, ws, sack);
                    assert!(
                        (now.wrapping_sub(ts) as i32) >= 0,
                        "never ahead of the clock"
                    );
                    assert!(now.wrapping_sub(ts) < 128);
                    assert_eq!(decode_ts(ts), (ws, sack));
                }
            }
        }
    }
}
