//! The namespace's route to a peer, as Linux's TCP consults it: the route's metrics (`ip route
//! ... advmss 600 mtu lock 640 initcwnd 11`) and whether its device segments for TCP (`ethtool
//! -K dev gso off tso off`).
//!
//! Read with one `RTM_GETROUTE` netlink request (what `ip route get` sends) and, for the
//! device, the `ETHTOOL_GGSO`/`ETHTOOL_GTSO` ioctls. Only when the shim reads the namespace's
//! settings (its `sysctl` flag): our own scripts run on the flags alone.

use std::net::IpAddr;

use synack_tcp::Config;

/// What the route to one address says; `None` where it says nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    /// `mtu` (locked or not): the path MTU.
    pub mtu: Option<u32>,
    /// `advmss`: the MSS to announce.
    pub advmss: Option<u32>,
    /// `initcwnd`: the initial congestion window in segments.
    pub initcwnd: Option<u32>,
    /// The output device segments TCP for us (TSO or GSO on).
    pub offload: Option<bool>,
}

const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_METRICS: u16 = 8;
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
const RTAX_INITCWND: u16 = 11;
const NLMSG_HDR: usize = 16;
const RTMSG_LEN: usize = 12;
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_GGSO: u32 = 0x23;

impl Route {
    /// Look up the route to `dst`; `None` if there is none or netlink fails.
    pub fn lookup(dst: IpAddr) -> Option<Route> {
        let (family, addr): (u8, Vec<u8>) = match dst {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let attr_len = 4 + addr.len();
        let total = NLMSG_HDR + RTMSG_LEN + attr_len.next_multiple_of(4);
        let mut req = vec![0u8; total];
        req[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETROUTE.to_ne_bytes());
        req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req[8..12].copy_from_slice(&1u32.to_ne_bytes());
        let r = NLMSG_HDR;
        req[r] = family;
        req[r + 1] = (addr.len() * 8) as u8;
        let a = NLMSG_HDR + RTMSG_LEN;
        req[a..a + 2].copy_from_slice(&(attr_len as u16).to_ne_bytes());
        req[a + 2..a + 4].copy_from_slice(&RTA_DST.to_ne_bytes());
        req[a + 4..a + 4 + addr.len()].copy_from_slice(&addr);
        let reply = netlink_roundtrip(&req)?;
        let mut route = parse_reply(&reply)?;
        if let Some(oif) = route.1 {
            route.0.offload = device_offload(oif);
        }
        Some(route.0)
    }

    /// Apply the route to a new connection's settings (Linux reads the route when it answers
    /// a SYN or connects): `flags_iw` is the initial window the flags set, kept where the route
    /// names none.
    pub fn apply(&self, c: &mut Config, flags_iw: usize) {
        c.path_mtu = self.mtu.map(|m| m as usize);
        c.advmss = self.advmss.map(|m| m as usize);
        c.initial_window = self.initcwnd.map_or(flags_iw, |n| n as usize);
        c.segmentation_offload = self.offload.unwrap_or(true);
    }
}

/// Send one request on a fresh `NETLINK_ROUTE` socket and return the first reply.
fn netlink_roundtrip(req: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: plain socket calls on a descriptor opened and closed here, with buffers of the
    // lengths passed.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return None;
        }
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mut out = None;
        if libc::send(fd, req.as_ptr().cast(), req.len(), 0) == req.len() as isize {
            let mut buf = vec![0u8; 8192];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n > 0 {
                buf.truncate(n as usize);
                out = Some(buf);
            }
        }
        libc::close(fd);
        out
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Attributes `(type, payload)` packed from `b` on (each 4-byte aligned).
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    let mut i = 0;
    while let (Some(len), Some(ty)) = (u16_at(b, i), u16_at(b, i + 2)) {
        let len = len as usize;
        if len < 4 || i + len > b.len() {
            break;
        }
        v.push((ty & 0x3fff, &b[i + 4..i + len]));
        i += len.next_multiple_of(4);
    }
    v
}

/// The route in an `RTM_NEWROUTE` reply, and its output interface.
fn parse_reply(b: &[u8]) -> Option<(Route, Option<u32>)> {
    let len = u32_at(b, 0)? as usize;
    let ty = u16_at(b, 4)?;
    if ty == NLMSG_ERROR || ty != RTM_NEWROUTE || len > b.len() {
        return None;
    }
    let body = b.get(NLMSG_HDR + RTMSG_LEN..len)?;
    let mut route = Route::default();
    let mut oif = None;
    for (ty, data) in attrs(body) {
        match ty {
            RTA_OIF => oif = u32_at(data, 0),
            RTA_METRICS => {
                for (m, v) in attrs(data) {
                    let v = u32_at(v, 0).filter(|&v| v != 0);
                    match m {
                        RTAX_MTU => route.mtu = v,
                        RTAX_ADVMSS => route.advmss = v,
                        RTAX_INITCWND => route.initcwnd = v,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((route, oif))
}

/// Whether device `ifindex` has TSO or GSO on (`ethtool -k`).
fn device_offload(ifindex: u32) -> Option<bool> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes at most.
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return None;
    }
    let get = |cmd: u32| -> Option<bool> {
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        #[repr(C)]
        struct IfReq {
            name: [libc::c_char; libc::IF_NAMESIZE],
            data: *mut EthtoolValue,
            _pad: [u8; 16],
        }
        let mut v = EthtoolValue { cmd, data: 0 };
        let mut ifr = IfReq {
            name,
            data: &mut v,
            _pad: [0; 16],
        };
        // SAFETY: a datagram socket opened and closed here; `ifr` points at `v`, both live
        // across the ioctl, laid out as the kernel's `struct ifreq` and `ethtool_value`.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return None;
            }
            let r = libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr as *mut IfReq);
            libc::close(fd);
            (r == 0).then_some(v.data != 0)
        }
    };
    let tso = get(ETHTOOL_GTSO)?;
    let gso = get(ETHTOOL_GGSO)?;
    Some(tso || gso)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the kernel builds it for `ip route get 192.0.2.1` on a route with
    /// `mtu lock 640 advmss 600 initcwnd 11` out of interface 7.
    #[test]
    fn parses_metrics_and_interface() {
        let mut b = vec![0u8; NLMSG_HDR + RTMSG_LEN];
        b[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        let attr = |ty: u16, data: &[u8]| {
            let mut a = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
            a.extend_from_slice(&ty.to_ne_bytes());
            a.extend_from_slice(data);
            while !a.len().is_multiple_of(4) {
                a.push(0);
            }
            a
        };
        b.extend(attr(RTA_DST, &[192, 0, 2, 1]));
        b.extend(attr(RTA_OIF, &7u32.to_ne_bytes()));
        let mut m = attr(1, &2u32.to_ne_bytes()); // RTAX_LOCK: the MTU
        m.extend(attr(RTAX_MTU, &640u32.to_ne_bytes()));
        m.extend(attr(RTAX_ADVMSS, &600u32.to_ne_bytes()));
        m.extend(attr(RTAX_INITCWND, &11u32.to_ne_bytes()));
        b.extend(attr(RTA_METRICS, &m));
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        let (r, oif) = parse_reply(&b).unwrap();
        assert_eq!(oif, Some(7));
        assert_eq!(
            r,
            Route {
                mtu: Some(640),
                advmss: Some(600),
                initcwnd: Some(11),
                offload: None,
            }
        );
        let mut c = Config::default();
        r.apply(&mut c, 10);
        assert_eq!(
            (c.path_mtu, c.advmss, c.initial_window),
            (Some(640), Some(600), 11)
        );
        assert!(c.segmentation_offload, "unknown offload: Linux's default");
        // An error reply is no route.
        b[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_reply(&b), None);
        // A truncated attribute ends the walk without a panic.
        assert!(attrs(&[8, 0, 1, 0, 1]).is_empty());
    }
}
