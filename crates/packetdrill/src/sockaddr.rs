//! `struct sockaddr` in and out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::{c_int, sa_family_t, sockaddr, sockaddr_in, sockaddr_in6, socklen_t};

use crate::shim::{Errno, SysResult};

/// Read a socket address. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is returned as IPv4,
/// so that an `AF_INET6` socket talks IPv4 as Linux's dual-stack sockets do.
///
/// # Safety
/// `addr` must be null or point to `len` readable bytes.
pub unsafe fn read(addr: *const sockaddr, len: socklen_t) -> SysResult<SocketAddr> {
    if addr.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    let len = len as usize;
    if len < std::mem::size_of::<sa_family_t>() {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: at least the family is readable (checked above); unaligned reads only.
    let family = unsafe { std::ptr::read_unaligned(addr.cast::<sa_family_t>()) } as c_int;
    match family {
        libc::AF_INET => {
            if len < std::mem::size_of::<sockaddr_in>() {
                return Err(Errno(libc::EINVAL));
            }
            // SAFETY: `len` covers a sockaddr_in.
            let sin = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            if len < std::mem::size_of::<sockaddr_in6>() {
                return Err(Errno(libc::EINVAL));
            }
            // SAFETY: `len` covers a sockaddr_in6.
            let sin6 = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Ok(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::new(IpAddr::V6(ip), port),
            })
        }
        _ => Err(Errno(libc::EAFNOSUPPORT)),
    }
}

/// Write `a` into `out` (at most `*len` bytes) and set `*len` to its full size, as accept(2)
/// does. For an `AF_INET6` socket an IPv4 address is written IPv4-mapped.
///
/// # Safety
/// `out` and `len` must be null or valid; `out` must have `*len` writable bytes.
pub unsafe fn write(a: SocketAddr, v6_socket: bool, out: *mut sockaddr, len: *mut socklen_t) {
    if out.is_null() || len.is_null() {
        return;
    }
    let a = match a {
        SocketAddr::V4(v4) if v6_socket => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        other => other,
    };
    let mut storage: libc::sockaddr_storage =
        // SAFETY: sockaddr_storage is plain bytes; all-zero is valid.
        unsafe { std::mem::zeroed() };
    let size = match a {
        SocketAddr::V4(v4) => {
            let sin = sockaddr_in {
                sin_family: libc::AF_INET as sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe {
                std::ptr::write_unaligned((&raw mut storage).cast::<sockaddr_in>(), sin);
            }
            std::mem::size_of::<sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = sockaddr_in6 {
                sin6_family: libc::AF_INET6 as sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe {
                std::ptr::write_unaligned((&raw mut storage).cast::<sockaddr_in6>(), sin6);
            }
            std::mem::size_of::<sockaddr_in6>()
        }
    };
    // SAFETY: the caller gave `*len` writable bytes at `out`.
    unsafe {
        let room = (*len as usize).min(size);
        std::ptr::copy_nonoverlapping((&raw const storage).cast::<u8>(), out.cast::<u8>(), room);
        *len = size as socklen_t;
    }
}

/// A `sockaddr_in` / `sockaddr_in6` as bytes, for callers building arguments (tests, the
/// script runner).
pub fn to_bytes(a: SocketAddr) -> Vec<u8> {
    let mut buf = vec![0u8; std::mem::size_of::<libc::sockaddr_storage>()];
    let mut len = buf.len() as socklen_t;
    // SAFETY: `buf` has `len` writable bytes.
    unsafe { write(a, a.is_ipv6(), buf.as_mut_ptr().cast(), &mut len) };
    buf.truncate(len as usize);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for a in ["192.0.2.1:8080", "[fd00::1]:443"] {
            let a: SocketAddr = a.parse().unwrap();
            let b = to_bytes(a);
            // SAFETY: `b` holds a whole sockaddr.
            let back = unsafe { read(b.as_ptr().cast(), b.len() as socklen_t) }.unwrap();
            assert_eq!(back, a);
        }
    }

    #[test]
    fn mapped_reads_as_v4_and_short_is_einval() {
        let a: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let mut buf = vec![0u8; 64];
        let mut len = buf.len() as socklen_t;
        // SAFETY: 64 writable bytes.
        unsafe { write(a, true, buf.as_mut_ptr().cast(), &mut len) };
        assert_eq!(len as usize, std::mem::size_of::<sockaddr_in6>());
        // SAFETY: `len` bytes are initialized.
        assert_eq!(unsafe { read(buf.as_ptr().cast(), len) }, Ok(a));
        // SAFETY: as above, but claiming fewer bytes.
        assert_eq!(
            unsafe { read(buf.as_ptr().cast(), 4) },
            Err(Errno(libc::EINVAL))
        );
        assert_eq!(
            // SAFETY: null is handled.
            unsafe { read(std::ptr::null(), 16) },
            Err(Errno(libc::EFAULT))
        );
    }
}
