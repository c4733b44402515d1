//! The C ABI: `struct packetdrill_interface` and the functions it points to.
//!
//! Every function returns what the POSIX call would (a descriptor, a byte count, 0, or -1 with
//! the calling thread's `errno` set). None lets a panic unwind into C: a panic becomes -1 with
//! `EIO`. `userdata` is an `Arc<Shim>`; each call holds its own reference for its duration, so
//! `free` while another thread is blocked in a call is safe (that call returns -1 / `EIO`).

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use libc::{
    c_int, c_long, c_longlong, c_uint, c_ulong, epoll_event, iovec, loff_t, msghdr, nfds_t, pollfd,
    size_t, sockaddr, socklen_t, ssize_t, timeval, useconds_t,
};

use crate::flags::ShimConfig;
use crate::shim::{Dest, Errno, OptIn, OptValue, Shim, SysResult};
use crate::sockaddr as sa;
use synack_tcp::SendFlags;

/// `struct packetdrill_interface` from packetdrill's `packetdrill.h`; the field order is the
/// ABI. `fcntl` and `ioctl` are variadic in C, and are declared so here; they point to C
/// functions (`csrc/variadic.c`), since stable Rust cannot define a variadic function.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(clippy::type_complexity)]
pub struct PacketdrillInterface {
    pub userdata: *mut c_void,
    pub free: Option<unsafe extern "C" fn(*mut c_void)>,
    pub socket: Option<unsafe extern "C" fn(*mut c_void, c_int, c_int, c_int) -> c_int>,
    pub bind: Option<unsafe extern "C" fn(*mut c_void, c_int, *const sockaddr, socklen_t) -> c_int>,
    pub listen: Option<unsafe extern "C" fn(*mut c_void, c_int, c_int) -> c_int>,
    pub accept:
        Option<unsafe extern "C" fn(*mut c_void, c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    pub connect:
        Option<unsafe extern "C" fn(*mut c_void, c_int, *const sockaddr, socklen_t) -> c_int>,
    pub read: Option<unsafe extern "C" fn(*mut c_void, c_int, *mut c_void, size_t) -> ssize_t>,
    pub readv: Option<unsafe extern "C" fn(*mut c_void, c_int, *const iovec, c_int) -> ssize_t>,
    pub recv:
        Option<unsafe extern "C" fn(*mut c_void, c_int, *mut c_void, size_t, c_int) -> ssize_t>,
    pub recvfrom: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *mut c_void,
            size_t,
            c_int,
            *mut sockaddr,
            *mut socklen_t,
        ) -> ssize_t,
    >,
    pub recvmsg: Option<unsafe extern "C" fn(*mut c_void, c_int, *mut msghdr, c_int) -> ssize_t>,
    pub write: Option<unsafe extern "C" fn(*mut c_void, c_int, *const c_void, size_t) -> ssize_t>,
    pub writev: Option<unsafe extern "C" fn(*mut c_void, c_int, *const iovec, c_int) -> ssize_t>,
    pub send:
        Option<unsafe extern "C" fn(*mut c_void, c_int, *const c_void, size_t, c_int) -> ssize_t>,
    pub sendto: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const c_void,
            size_t,
            c_int,
            *const sockaddr,
            socklen_t,
        ) -> ssize_t,
    >,
    pub sendmsg: Option<unsafe extern "C" fn(*mut c_void, c_int, *const msghdr, c_int) -> ssize_t>,
    pub fcntl: Option<unsafe extern "C" fn(*mut c_void, c_int, c_int, ...) -> c_int>,
    pub ioctl: Option<unsafe extern "C" fn(*mut c_void, c_int, c_ulong, ...) -> c_int>,
    pub close: Option<unsafe extern "C" fn(*mut c_void, c_int) -> c_int>,
    pub shutdown: Option<unsafe extern "C" fn(*mut c_void, c_int, c_int) -> c_int>,
    pub getsockopt: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            c_int,
            c_int,
            *mut c_void,
            *mut socklen_t,
        ) -> c_int,
    >,
    pub setsockopt: Option<
        unsafe extern "C" fn(*mut c_void, c_int, c_int, c_int, *const c_void, socklen_t) -> c_int,
    >,
    pub poll: Option<unsafe extern "C" fn(*mut c_void, *mut pollfd, nfds_t, c_int) -> c_int>,
    pub netdev_send: Option<unsafe extern "C" fn(*mut c_void, *const c_void, size_t) -> c_int>,
    pub netdev_receive: Option<
        unsafe extern "C" fn(*mut c_void, *mut c_void, *mut size_t, *mut c_longlong) -> c_int,
    >,
    pub usleep: Option<unsafe extern "C" fn(*mut c_void, useconds_t) -> c_int>,
    pub gettimeofday: Option<unsafe extern "C" fn(*mut c_void, *mut timeval, *mut c_void) -> c_int>,
    pub epoll_create: Option<unsafe extern "C" fn(*mut c_void, c_int) -> c_int>,
    pub epoll_ctl:
        Option<unsafe extern "C" fn(*mut c_void, c_int, c_int, c_int, *mut epoll_event) -> c_int>,
    pub epoll_wait:
        Option<unsafe extern "C" fn(*mut c_void, c_int, *mut epoll_event, c_int, c_int) -> c_int>,
    pub pipe: Option<unsafe extern "C" fn(*mut c_void, *mut c_int) -> c_int>,
    pub splice: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *mut loff_t,
            c_int,
            *mut loff_t,
            size_t,
            c_uint,
        ) -> c_int,
    >,
}

impl PacketdrillInterface {
    /// A table with every entry empty.
    pub const fn empty() -> PacketdrillInterface {
        PacketdrillInterface {
            userdata: std::ptr::null_mut(),
            free: None,
            socket: None,
            bind: None,
            listen: None,
            accept: None,
            connect: None,
            read: None,
            readv: None,
            recv: None,
            recvfrom: None,
            recvmsg: None,
            write: None,
            writev: None,
            send: None,
            sendto: None,
            sendmsg: None,
            fcntl: None,
            ioctl: None,
            close: None,
            shutdown: None,
            getsockopt: None,
            setsockopt: None,
            poll: None,
            netdev_send: None,
            netdev_receive: None,
            usleep: None,
            gettimeofday: None,
            epoll_create: None,
            epoll_ctl: None,
            epoll_wait: None,
            pipe: None,
            splice: None,
        }
    }
}

/// The initializer packetdrill looks up with `dlsym`. Bad or unknown flags are reported on
/// stderr and skipped (the function has no way to fail); see [`crate::flags`].
///
/// # Safety
/// `flags` must be null or a NUL-terminated string; `ifc` must be null or point to a writable
/// `struct packetdrill_interface`.
#[no_mangle]
pub unsafe extern "C" fn packetdrill_interface_init(
    flags: *const c_char,
    ifc: *mut PacketdrillInterface,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if ifc.is_null() {
            return;
        }
        let text = if flags.is_null() {
            String::new()
        } else {
            // SAFETY: the caller passes a NUL-terminated string.
            unsafe { CStr::from_ptr(flags) }
                .to_string_lossy()
                .into_owned()
        };
        let (cfg, errors) = ShimConfig::parse(&text);
        for e in errors {
            eprintln!("synack-packetdrill: ignoring so_flags word: {e}");
        }
        let shim = Arc::new(Shim::new(&cfg));
        *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(&shim);
        let table = table(shim);
        // SAFETY: `ifc` points to a writable table (checked non-null).
        unsafe { ifc.write(table) };
    }));
}

/// The shim the last `packetdrill_interface_init` made, for
/// [`synack_packetdrill_getsockopt`].
static CURRENT: Mutex<Weak<Shim>> = Mutex::new(Weak::new());

/// `sendfile(2)` to a socket of the shim `packetdrill_interface_init` made last, from the
/// caller's file: packetdrill has no `sendfile` in its table and calls the C library's, which
/// `csrc/preload.c` routes here for our descriptors. Reads up to `count` bytes of `in_fd`
/// (at `*offset`, moving it, or from the file position) and writes them as `write` would.
/// Returns the bytes sent, or -1 with errno (`EBADF` when `out_fd` is not ours).
///
/// # Safety
/// As `sendfile(2)`: `offset` null or valid.
#[no_mangle]
pub unsafe extern "C" fn synack_packetdrill_sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off_t,
    count: size_t,
) -> ssize_t {
    let r = catch_unwind(AssertUnwindSafe(|| -> SysResult<usize> {
        let shim = CURRENT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .upgrade()
            .ok_or(Errno(libc::EBADF))?;
        if !shim.owns(out_fd) {
            return Err(Errno(libc::EBADF));
        }
        let mut buf = vec![0u8; count.min(1 << 20)];
        // SAFETY: `buf` has its length writable; `offset` is null or valid (the caller's).
        let n = unsafe {
            if offset.is_null() {
                libc::read(in_fd, buf.as_mut_ptr().cast(), buf.len())
            } else {
                libc::pread(in_fd, buf.as_mut_ptr().cast(), buf.len(), *offset)
            }
        };
        if n < 0 {
            return Err(Errno(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            ));
        }
        let sent = shim.send(out_fd, &buf[..n as usize], false, SendFlags::default())?;
        if !offset.is_null() {
            // SAFETY: as above.
            unsafe { *offset += sent as libc::off_t };
        } else if sent < n as usize {
            // Give back what was read and not sent.
            // SAFETY: a valid descriptor's position.
            unsafe {
                libc::lseek(
                    in_fd,
                    sent as libc::off_t - n as libc::off_t,
                    libc::SEEK_CUR,
                )
            };
        }
        Ok(sent)
    }));
    match r {
        Ok(Ok(v)) => v as ssize_t,
        Ok(Err(Errno(e))) => {
            set_errno(e);
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// `getsockopt` on a descriptor of the shim `packetdrill_interface_init` made last, for a
/// caller that has no table: packetdrill's `%{ }%` code events call the C library's
/// getsockopt on our descriptors, and `csrc/preload.c` (an `LD_PRELOAD` helper the upstream
/// script uses) routes the calls the kernel cannot answer here. Returns 0, or -1 with errno
/// (`EBADF` for a descriptor that is not ours).
///
/// # Safety
/// As `getsockopt(2)`: `val` must have `*len` writable bytes, `len` must be valid.
#[no_mangle]
pub unsafe extern "C" fn synack_packetdrill_getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let shim = CURRENT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .upgrade()
            .ok_or(Errno(libc::EBADF))?;
        // SAFETY: the caller's guarantees.
        unsafe { getsockopt_into(&shim, fd, level, name, val, len) }
    }));
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(Errno(e))) => {
            set_errno(e);
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// A filled table whose `userdata` holds `shim`.
pub fn table(shim: Arc<Shim>) -> PacketdrillInterface {
    PacketdrillInterface {
        userdata: Arc::into_raw(shim) as *mut c_void,
        free: Some(pd_free),
        socket: Some(pd_socket),
        bind: Some(pd_bind),
        listen: Some(pd_listen),
        accept: Some(pd_accept),
        connect: Some(pd_connect),
        read: Some(pd_read),
        readv: Some(pd_readv),
        recv: Some(pd_recv),
        recvfrom: Some(pd_recvfrom),
        recvmsg: Some(pd_recvmsg),
        write: Some(pd_write),
        writev: Some(pd_writev),
        send: Some(pd_send),
        sendto: Some(pd_sendto),
        sendmsg: Some(pd_sendmsg),
        fcntl: Some(synack_packetdrill_fcntl),
        ioctl: Some(synack_packetdrill_ioctl),
        close: Some(pd_close),
        shutdown: Some(pd_shutdown),
        getsockopt: Some(pd_getsockopt),
        setsockopt: Some(pd_setsockopt),
        poll: Some(pd_poll),
        netdev_send: Some(pd_netdev_send),
        netdev_receive: Some(pd_netdev_receive),
        usleep: Some(pd_usleep),
        gettimeofday: Some(pd_gettimeofday),
        epoll_create: Some(pd_epoll_create),
        epoll_ctl: Some(pd_epoll_ctl),
        epoll_wait: Some(pd_epoll_wait),
        pipe: Some(pd_pipe),
        splice: Some(pd_splice),
    }
}

/// The shim behind a table's `userdata`, with a reference of the caller's own.
///
/// # Safety
/// `ud` must be null or the `userdata` of a table made by [`table`] and not yet freed.
pub unsafe fn shim_of(ud: *mut c_void) -> Option<Arc<Shim>> {
    if ud.is_null() {
        return None;
    }
    let p = ud as *const Shim;
    // SAFETY: `p` came from Arc::into_raw and the table's reference is alive (not freed).
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Run `f` on the shim: `Err(e)` becomes `fail` with errno `e`, a panic `fail` with EIO.
fn call<R>(ud: *mut c_void, fail: R, f: impl FnOnce(&Shim) -> SysResult<R>) -> R {
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: packetdrill passes back the userdata we gave it.
        let shim = unsafe { shim_of(ud) }.ok_or(Errno(libc::EINVAL))?;
        f(&shim)
    }));
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(Errno(e))) => {
            set_errno(e);
            fail
        }
        Err(_) => {
            set_errno(libc::EIO);
            fail
        }
    }
}

/// A byte count as `ssize_t`.
fn count(n: usize) -> ssize_t {
    n.min(ssize_t::MAX as usize) as ssize_t
}

/// # Safety
/// `p` must be null (only when `len` is 0) or valid for `len` bytes.
unsafe fn slice<'a>(p: *const c_void, len: size_t) -> SysResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// # Safety
/// As [`slice`], writable.
unsafe fn slice_mut<'a>(p: *mut c_void, len: size_t) -> SysResult<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// The buffers of an iovec array.
///
/// # Safety
/// `iov` must point to `cnt` iovecs, each valid for its length.
unsafe fn iovecs<'a>(iov: *const iovec, cnt: c_int) -> SysResult<Vec<&'a mut [u8]>> {
    if !(0..=libc::UIO_MAXIOV).contains(&cnt) {
        return Err(Errno(libc::EINVAL));
    }
    if cnt > 0 && iov.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    let mut out = Vec::with_capacity(cnt as usize);
    for i in 0..cnt as usize {
        // SAFETY: `i < cnt` iovecs are readable.
        let v = unsafe { std::ptr::read_unaligned(iov.add(i)) };
        // SAFETY: each iovec describes a valid buffer.
        out.push(unsafe { slice_mut(v.iov_base, v.iov_len) }?);
    }
    Ok(out)
}

/// Map "not a socket" to "invalid" for read/write on an epoll descriptor, as Linux does.
fn rw_errno(r: SysResult<usize>) -> SysResult<usize> {
    r.map_err(|e| {
        if e.0 == libc::ENOTSOCK {
            Errno(libc::EINVAL)
        } else {
            e
        }
    })
}

/// recv flags we act on; the rest are accepted and ignored (MSG_WAITALL, MSG_NOSIGNAL, ...).
fn recv_flags(flags: c_int) -> SysResult<(bool, bool)> {
    if flags & libc::MSG_OOB != 0 {
        return Err(Errno(libc::EINVAL));
    }
    Ok((flags & libc::MSG_PEEK != 0, flags & libc::MSG_DONTWAIT != 0))
}

/// send flags we act on: MSG_DONTWAIT, and how the write ends (MSG_MORE, MSG_EOR); the rest
/// are accepted and ignored (MSG_NOSIGNAL, ...).
fn send_flags(flags: c_int) -> SysResult<(bool, SendFlags)> {
    if flags & libc::MSG_OOB != 0 {
        return Err(Errno(libc::EOPNOTSUPP));
    }
    let how = SendFlags {
        more: flags & libc::MSG_MORE != 0,
        eor: flags & libc::MSG_EOR != 0,
        seal: false,
    };
    Ok((flags & libc::MSG_DONTWAIT != 0, how))
}

/// The destination a `sendto`/`sendmsg` names, if any: `AF_UNSPEC` kept apart (Fast Open
/// refuses it).
///
/// # Safety
/// `addr` must be null or point to `len` readable bytes.
unsafe fn dest(addr: *const sockaddr, len: socklen_t) -> SysResult<Option<Dest>> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return Ok(None);
    }
    // SAFETY: at least the family is readable.
    let family = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sa_family_t>()) };
    if c_int::from(family) == libc::AF_UNSPEC {
        return Ok(Some(Dest::Unspec));
    }
    // SAFETY: the caller's guarantee.
    Ok(Some(Dest::Addr(unsafe { sa::read(addr, len) }?)))
}

/// Linux's `MAX_SKB_FRAGS`: page fragments in one skb.
const MAX_SKB_FRAGS: usize = 17;

/// After a send: a MSG_ZEROCOPY one gets its completion notification (with SO_ZEROCOPY).
fn zerocopy(s: &Shim, fd: c_int, flags: c_int, sent: usize) {
    if flags & libc::MSG_ZEROCOPY != 0 {
        s.zerocopy_sent(fd, sent);
    }
}

/// recvmsg(MSG_ERRQUEUE) of an SO_TIMESTAMPING report, as Linux's `ip_recv_error` hands it
/// out: an `SCM_TIMESTAMPING` control message (software time in the first of its three
/// timespecs), then `IP_RECVERR` (`IPV6_RECVERR`) with a `sock_extended_err` (ENOMSG, origin
/// SO_EE_ORIGIN_TIMESTAMPING, the report's kind and key) and a blank offender address; the
/// data (the packet's headers) is not copied: MSG_TRUNC. Returns 0 bytes read.
fn timestamp_errqueue(m: &mut msghdr, r: crate::shim::TsReport, v6: bool) -> ssize_t {
    let mut ts = [0u8; 48];
    ts[..8].copy_from_slice(&((r.usecs / 1_000_000) as i64).to_ne_bytes());
    ts[8..16].copy_from_slice(&(((r.usecs % 1_000_000) * 1000) as i64).to_ne_bytes());
    let mut ee = [0u8; 16];
    ee[..4].copy_from_slice(&(libc::ENOMSG as u32).to_ne_bytes());
    ee[4] = 4; // ee_origin: SO_EE_ORIGIN_TIMESTAMPING
    ee[8..12].copy_from_slice(&r.info.to_ne_bytes());
    ee[12..16].copy_from_slice(&r.key.to_ne_bytes());
    let mut err = ee.to_vec();
    err.resize(
        16 + if v6 {
            std::mem::size_of::<libc::sockaddr_in6>()
        } else {
            std::mem::size_of::<libc::sockaddr_in>()
        },
        0,
    );
    let (level, ty) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    let msgs: [(c_int, c_int, &[u8]); 2] = [
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &ts),
        (level, ty, &err),
    ];
    // SAFETY: CMSG_SPACE is arithmetic.
    let space: usize = msgs
        .iter()
        .map(|(_, _, d)| unsafe { libc::CMSG_SPACE(d.len() as u32) } as usize)
        .sum();
    m.msg_flags = libc::MSG_ERRQUEUE | libc::MSG_TRUNC;
    if m.msg_control.is_null() || m.msg_controllen < space {
        m.msg_flags |= libc::MSG_CTRUNC;
        m.msg_controllen = 0;
        return 0;
    }
    m.msg_controllen = space as _;
    // SAFETY: the control buffer has room for both messages (checked); CMSG_NXTHDR walks it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        for (level, ty, d) in msgs {
            (*c).cmsg_len = libc::CMSG_LEN(d.len() as u32) as _;
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            std::ptr::copy_nonoverlapping(d.as_ptr(), libc::CMSG_DATA(c), d.len());
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    0
}

/// `struct sock_extended_err` for a zero-copy completion of ids `first..=last`: errno 0,
/// origin SO_EE_ORIGIN_ZEROCOPY (5), code SO_EE_CODE_ZEROCOPY_COPIED (1: the data was copied).
fn zerocopy_ee(first: u32, last: u32) -> [u8; 16] {
    let mut ee = [0u8; 16];
    ee[4] = 5; // ee_origin
    ee[6] = 1; // ee_code
    ee[8..12].copy_from_slice(&first.to_ne_bytes());
    ee[12..16].copy_from_slice(&last.to_ne_bytes());
    ee
}

fn gather(bufs: &[&mut [u8]]) -> Vec<u8> {
    bufs.iter().flat_map(|b| b.iter().copied()).collect()
}

fn scatter(data: &[u8], bufs: &mut [&mut [u8]]) {
    let mut off = 0;
    for b in bufs.iter_mut() {
        let n = b.len().min(data.len() - off);
        b[..n].copy_from_slice(&data[off..off + n]);
        off += n;
        if off == data.len() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The entries.

unsafe extern "C" fn pd_free(ud: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if ud.is_null() {
            return;
        }
        // SAFETY: the table's own reference, given back exactly once.
        let shim = unsafe { Arc::from_raw(ud as *const Shim) };
        shim.shut();
    }));
}

unsafe extern "C" fn pd_socket(ud: *mut c_void, domain: c_int, ty: c_int, proto: c_int) -> c_int {
    call(ud, -1, |s| s.socket(domain, ty, proto))
}

unsafe extern "C" fn pd_bind(
    ud: *mut c_void,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    call(ud, -1, |s| {
        // SAFETY: packetdrill passes a sockaddr of `len` bytes.
        let a = unsafe { sa::read(addr, len) }?;
        s.bind(fd, a).map(|()| 0)
    })
}

unsafe extern "C" fn pd_listen(ud: *mut c_void, fd: c_int, backlog: c_int) -> c_int {
    call(ud, -1, |s| s.listen(fd, backlog).map(|()| 0))
}

unsafe extern "C" fn pd_accept(
    ud: *mut c_void,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    call(ud, -1, |s| {
        let (newfd, peer, v6) = s.accept(fd)?;
        // SAFETY: null or a buffer of `*len` bytes.
        unsafe { sa::write(peer, v6, addr, len) };
        Ok(newfd)
    })
}

unsafe extern "C" fn pd_connect(
    ud: *mut c_void,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    call(ud, -1, |s| {
        // SAFETY: packetdrill passes a sockaddr of `len` bytes.
        let a = unsafe { sa::read(addr, len) }?;
        s.connect(fd, a).map(|()| 0)
    })
}

unsafe extern "C" fn pd_read(ud: *mut c_void, fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    call(ud, -1, |s| {
        // SAFETY: `buf` has `n` writable bytes.
        let b = unsafe { slice_mut(buf, n) }?;
        rw_errno(s.recv(fd, b, false, false)).map(count)
    })
}

unsafe extern "C" fn pd_readv(
    ud: *mut c_void,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
) -> ssize_t {
    call(ud, -1, |s| {
        // SAFETY: `iov` holds `cnt` valid iovecs.
        let mut bufs = unsafe { iovecs(iov, cnt) }?;
        let mut tmp = vec![0u8; bufs.iter().map(|b| b.len()).sum()];
        let n = rw_errno(s.recv(fd, &mut tmp, false, false))?;
        scatter(&tmp[..n], &mut bufs);
        Ok(count(n))
    })
}

unsafe extern "C" fn pd_recv(
    ud: *mut c_void,
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
) -> ssize_t {
    call(ud, -1, |s| {
        let (peek, dontwait) = recv_flags(flags)?;
        // SAFETY: `buf` has `n` writable bytes.
        let b = unsafe { slice_mut(buf, n) }?;
        s.recv(fd, b, peek, dontwait).map(count)
    })
}

unsafe extern "C" fn pd_recvfrom(
    ud: *mut c_void,
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    _addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    call(ud, -1, |s| {
        let (peek, dontwait) = recv_flags(flags)?;
        // SAFETY: `buf` has `n` writable bytes.
        let b = unsafe { slice_mut(buf, n) }?;
        let r = s.recv(fd, b, peek, dontwait)?;
        // TCP leaves the source address empty (Linux's tcp_recvmsg sets no msg_name).
        if !addrlen.is_null() {
            // SAFETY: non-null and writable.
            unsafe { *addrlen = 0 };
        }
        Ok(count(r))
    })
}

unsafe extern "C" fn pd_recvmsg(
    ud: *mut c_void,
    fd: c_int,
    msg: *mut msghdr,
    flags: c_int,
) -> ssize_t {
    call(ud, -1, |s| {
        if msg.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: `msg` points to a msghdr.
        let m = unsafe { &mut *msg };
        if flags & libc::MSG_ERRQUEUE != 0 {
            if let Some((r, v6)) = s.recv_timestamp(fd)? {
                return Ok(timestamp_errqueue(m, r, v6));
            }
            // The error queue: a zero-copy completion as an IP_RECVERR (IPV6_RECVERR) control
            // message, no data, MSG_ERRQUEUE in msg_flags (Linux's ip_recv_error).
            let ((first, last), v6) = s.recv_errqueue(fd)?;
            let (level, ty) = if v6 {
                (libc::SOL_IPV6, libc::IPV6_RECVERR)
            } else {
                (libc::SOL_IP, libc::IP_RECVERR)
            };
            // The extended error, then its offender's address (none here: zeros of the
            // family's sockaddr size), as Linux lays out `struct errhdr`.
            let mut data = zerocopy_ee(first, last).to_vec();
            data.resize(
                16 + if v6 {
                    std::mem::size_of::<libc::sockaddr_in6>()
                } else {
                    std::mem::size_of::<libc::sockaddr_in>()
                },
                0,
            );
            let n = data.len() as u32;
            // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic.
            let (space, clen) = unsafe { (libc::CMSG_SPACE(n) as usize, libc::CMSG_LEN(n)) };
            m.msg_flags = libc::MSG_ERRQUEUE;
            if m.msg_control.is_null() || m.msg_controllen < space {
                m.msg_flags |= libc::MSG_CTRUNC;
                m.msg_controllen = 0;
                return Ok(0);
            }
            // SAFETY: the control buffer has room for one cmsg of this size (checked).
            unsafe {
                let c = libc::CMSG_FIRSTHDR(m);
                (*c).cmsg_len = clen as _;
                (*c).cmsg_level = level;
                (*c).cmsg_type = ty;
                std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(c), data.len());
            }
            m.msg_controllen = space as _;
            return Ok(0);
        }
        let (peek, dontwait) = recv_flags(flags)?;
        // SAFETY: its iovecs are valid.
        let mut bufs = unsafe { iovecs(m.msg_iov, m.msg_iovlen as c_int) }?;
        let mut tmp = vec![0u8; bufs.iter().map(|b| b.len()).sum()];
        let n = s.recv(fd, &mut tmp, peek, dontwait)?;
        scatter(&tmp[..n], &mut bufs);
        m.msg_namelen = 0;
        m.msg_flags = 0;
        // TCP_INQ: a TCP_CM_INQ control message with the bytes left to read.
        let inq = s.inq_hint(fd);
        // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic.
        let (space, clen) = unsafe { (libc::CMSG_SPACE(4) as usize, libc::CMSG_LEN(4)) };
        match inq {
            Some(v) if !m.msg_control.is_null() && m.msg_controllen >= space => {
                // SAFETY: the control buffer has room for one int message (checked).
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(m);
                    (*c).cmsg_len = clen as _;
                    (*c).cmsg_level = libc::SOL_TCP;
                    (*c).cmsg_type = crate::shim::TCP_INQ;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<c_int>(), v);
                }
                m.msg_controllen = space as _;
            }
            Some(_) => {
                m.msg_flags |= libc::MSG_CTRUNC;
                m.msg_controllen = 0;
            }
            None => m.msg_controllen = 0,
        }
        Ok(count(n))
    })
}

unsafe extern "C" fn pd_write(
    ud: *mut c_void,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
) -> ssize_t {
    call(ud, -1, |s| {
        // SAFETY: `buf` has `n` readable bytes.
        let b = unsafe { slice(buf, n) }?;
        rw_errno(s.send(fd, b, false, SendFlags::default())).map(count)
    })
}

unsafe extern "C" fn pd_writev(
    ud: *mut c_void,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
) -> ssize_t {
    call(ud, -1, |s| {
        // SAFETY: `iov` holds `cnt` valid iovecs.
        let bufs = unsafe { iovecs(iov, cnt) }?;
        rw_errno(s.send(fd, &gather(&bufs), false, SendFlags::default())).map(count)
    })
}

unsafe extern "C" fn pd_send(
    ud: *mut c_void,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
) -> ssize_t {
    call(ud, -1, |s| {
        let (dontwait, how) = send_flags(flags)?;
        // SAFETY: `buf` has `n` readable bytes.
        let b = unsafe { slice(buf, n) }?;
        let sent = s.send(fd, b, dontwait, how)?;
        zerocopy(s, fd, flags, sent);
        Ok(count(sent))
    })
}

unsafe extern "C" fn pd_sendto(
    ud: *mut c_void,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    // A connected TCP socket ignores the destination; an unconnected one uses it with
    // MSG_FASTOPEN (RFC 7413).
    call(ud, -1, |s| {
        let (dontwait, how) = send_flags(flags)?;
        // SAFETY: `buf` has `n` readable bytes.
        let b = unsafe { slice(buf, n) }?;
        // SAFETY: `addr` is null or has `len` bytes.
        let d = unsafe { dest(addr, len) }?;
        let sent = s.send_msg(fd, b, dontwait, flags & libc::MSG_FASTOPEN != 0, d, how)?;
        zerocopy(s, fd, flags, sent);
        Ok(count(sent))
    })
}

unsafe extern "C" fn pd_sendmsg(
    ud: *mut c_void,
    fd: c_int,
    msg: *const msghdr,
    flags: c_int,
) -> ssize_t {
    call(ud, -1, |s| {
        if msg.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        let (dontwait, how) = send_flags(flags)?;
        // SAFETY: `msg` points to a msghdr whose iovecs are valid.
        let bufs = unsafe { iovecs((*msg).msg_iov, (*msg).msg_iovlen as c_int) }?;
        // SAFETY: its name is null or `msg_namelen` bytes.
        let d = unsafe { dest((*msg).msg_name.cast(), (*msg).msg_namelen) }?;
        let fastopen = flags & libc::MSG_FASTOPEN != 0;
        let sent = if flags & libc::MSG_ZEROCOPY != 0 && !fastopen && s.zerocopy_on(fd) {
            // Each buffer is a page fragment of Linux's skb, which holds MAX_SKB_FRAGS (17):
            // a full one is pushed and closed (`tcp_sendmsg_locked`'s `tcp_mark_push` before
            // `new_segment`), and the rest goes in the next.
            let mut sent = 0;
            let groups: Vec<&[&mut [u8]]> = bufs.chunks(MAX_SKB_FRAGS).collect();
            for (i, g) in groups.iter().enumerate() {
                let data = gather(g);
                let last = i + 1 == groups.len();
                let part = SendFlags {
                    seal: !last,
                    more: how.more && last,
                    eor: how.eor && last,
                };
                match s.send_msg(fd, &data, dontwait, false, d, part) {
                    Ok(n) => {
                        sent += n;
                        if n < data.len() {
                            break;
                        }
                    }
                    Err(_) if sent > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            sent
        } else {
            s.send_msg(fd, &gather(&bufs), dontwait, fastopen, d, how)?
        };
        zerocopy(s, fd, flags, sent);
        Ok(count(sent))
    })
}

extern "C" {
    /// `csrc/variadic.c`: reads the optional argument with `va_arg` (for the commands that
    /// take one) and calls [`synack_packetdrill_fcntl_arg`].
    fn synack_packetdrill_fcntl(ud: *mut c_void, fd: c_int, cmd: c_int, ...) -> c_int;
    /// `csrc/variadic.c`: reads the optional argument with `va_arg` (for the requests that
    /// take one) and calls [`synack_packetdrill_ioctl_arg`].
    fn synack_packetdrill_ioctl(ud: *mut c_void, fd: c_int, req: c_ulong, ...) -> c_int;
}

/// `fcntl` with its optional argument read (0 when the command takes none), called by the C
/// variadic entry. Exported only for it.
///
/// # Safety
/// `ud` must be null or the `userdata` of a live table.
#[no_mangle]
pub unsafe extern "C" fn synack_packetdrill_fcntl_arg(
    ud: *mut c_void,
    fd: c_int,
    cmd: c_int,
    arg: c_long,
) -> c_int {
    call(ud, -1, |s| match cmd {
        libc::F_GETFL => s.get_flags(fd),
        libc::F_SETFL => {
            // An int argument: only its low 32 bits are meaningful.
            let flags = arg as c_int;
            s.set_nonblocking(fd, flags & libc::O_NONBLOCK != 0)
                .map(|()| 0)
        }
        libc::F_GETFD | libc::F_SETFD => s.get_flags(fd).map(|_| 0),
        _ => Err(Errno(libc::EINVAL)),
    })
}

/// `ioctl` with its optional argument read (null when the request takes none), called by the C
/// variadic entry. Exported only for it.
///
/// # Safety
/// `ud` must be null or the `userdata` of a live table; for FIONREAD, TIOCOUTQ and FIONBIO,
/// `arg` must be null or point to an `int`.
#[no_mangle]
pub unsafe extern "C" fn synack_packetdrill_ioctl_arg(
    ud: *mut c_void,
    fd: c_int,
    req: c_ulong,
    arg: *mut c_void,
) -> c_int {
    call(ud, -1, |s| {
        let int_arg = |v: c_int| -> SysResult<c_int> {
            if arg.is_null() {
                return Err(Errno(libc::EFAULT));
            }
            // SAFETY: these requests take an `int *`.
            unsafe { std::ptr::write_unaligned(arg.cast::<c_int>(), v) };
            Ok(0)
        };
        if req == libc::FIONREAD as c_ulong {
            int_arg(s.queued(fd, false)?)
        } else if req == libc::TIOCOUTQ as c_ulong {
            int_arg(s.queued(fd, true)?)
        } else if req == libc::FIONBIO as c_ulong {
            if arg.is_null() {
                return Err(Errno(libc::EFAULT));
            }
            // SAFETY: FIONBIO takes an `int *`.
            let on = unsafe { std::ptr::read_unaligned(arg.cast::<c_int>()) } != 0;
            s.set_nonblocking(fd, on).map(|()| 0)
        } else {
            s.get_flags(fd)?; // EBADF first, as the kernel does
            Err(Errno(libc::ENOTTY))
        }
    })
}

unsafe extern "C" fn pd_close(ud: *mut c_void, fd: c_int) -> c_int {
    call(ud, -1, |s| s.close(fd).map(|()| 0))
}

unsafe extern "C" fn pd_shutdown(ud: *mut c_void, fd: c_int, how: c_int) -> c_int {
    call(ud, -1, |s| s.shutdown(fd, how).map(|()| 0))
}

unsafe extern "C" fn pd_getsockopt(
    ud: *mut c_void,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: the caller's guarantees.
    call(ud, -1, |s| unsafe {
        getsockopt_into(s, fd, level, name, val, len)
    })
}

/// getsockopt on `s`, the value copied out as the system call does.
///
/// # Safety
/// `val` must have `*len` writable bytes; `len` must be null or valid.
unsafe fn getsockopt_into(
    s: &Shim,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> SysResult<c_int> {
    {
        if val.is_null() || len.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: non-null.
        let room = unsafe { *len } as usize;
        let bytes: Vec<u8> = match s.getsockopt(fd, level, name)? {
            OptValue::Int(v) => v.to_ne_bytes().to_vec(),
            OptValue::Linger { onoff, secs } => {
                let mut b = onoff.to_ne_bytes().to_vec();
                b.extend_from_slice(&secs.to_ne_bytes());
                b
            }
            OptValue::Bytes(b) => b,
        };
        let mut bytes = bytes;
        if level == libc::IPPROTO_TCP && name == libc::TCP_INFO {
            // A newer `struct tcp_info` than ours: its further fields read as zero, as an
            // older kernel leaves them (packetdrill insists on its own size).
            bytes.resize(bytes.len().max(room.min(4096)), 0);
        }
        let n = room.min(bytes.len());
        // SAFETY: `val` has `*len` writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), val.cast::<u8>(), n);
            *len = n as socklen_t;
        }
        Ok(0)
    }
}

unsafe extern "C" fn pd_setsockopt(
    ud: *mut c_void,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    call(ud, -1, |s| {
        if val.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        let len = len as usize;
        let int = |off: usize| -> c_int {
            // SAFETY: `off + 4 <= len` is checked by the callers below.
            unsafe { std::ptr::read_unaligned(val.cast::<u8>().add(off).cast::<c_int>()) }
        };
        let v = if level == libc::SOL_SOCKET && name == libc::SO_LINGER {
            if len < std::mem::size_of::<libc::linger>() {
                return Err(Errno(libc::EINVAL));
            }
            OptIn::Linger {
                onoff: int(0),
                secs: int(4),
            }
        } else if level == libc::IPPROTO_TCP && name == libc::TCP_FASTOPEN_KEY {
            // SAFETY: `val` has `len` readable bytes.
            OptIn::Bytes(unsafe { slice(val, len) }?.to_vec())
        } else {
            if len < std::mem::size_of::<c_int>() {
                return Err(Errno(libc::EINVAL));
            }
            OptIn::Int(int(0))
        };
        s.setsockopt(fd, level, name, v).map(|()| 0)
    })
}

unsafe extern "C" fn pd_poll(
    ud: *mut c_void,
    fds: *mut pollfd,
    n: nfds_t,
    timeout: c_int,
) -> c_int {
    call(ud, -1, |s| {
        if n > 4096 {
            return Err(Errno(libc::EINVAL));
        }
        if n > 0 && fds.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: `fds` holds `n` pollfds.
        let list = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
        let req: Vec<(c_int, u32)> = list
            .iter()
            .map(|p| (p.fd, p.events as u16 as u32))
            .collect();
        let rev = s.poll(&req, timeout)?;
        let mut ready = 0;
        for (p, r) in list.iter_mut().zip(rev) {
            p.revents = r as u16 as i16;
            ready += (r != 0) as c_int;
        }
        Ok(ready)
    })
}

unsafe extern "C" fn pd_netdev_send(ud: *mut c_void, buf: *const c_void, n: size_t) -> c_int {
    call(ud, -1, |s| {
        // SAFETY: `buf` has `n` readable bytes.
        let b = unsafe { slice(buf, n) }?;
        s.netdev_send(b).map(|()| 0)
    })
}

/// Returns 0 with a packet, or -1 with `*count = 0` (errno EAGAIN) when none could come:
/// packetdrill's so_netdev_receive calls again on -1, while a 0-byte "packet" would fail its
/// parser.
unsafe extern "C" fn pd_netdev_receive(
    ud: *mut c_void,
    buf: *mut c_void,
    n: *mut size_t,
    time: *mut c_longlong,
) -> c_int {
    call(ud, -1, |s| {
        if n.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: non-null; `buf` has `*n` writable bytes.
        let room = unsafe { *n };
        // SAFETY: as above.
        let b = unsafe { slice_mut(buf, room) }?;
        let got = s.netdev_receive(b);
        // SAFETY: `n` and `time` (when non-null) are writable.
        unsafe {
            match got {
                Ok(Some((len, t))) => {
                    *n = len;
                    if !time.is_null() {
                        *time = t as c_longlong;
                    }
                    Ok(0)
                }
                Ok(None) => {
                    *n = 0;
                    Err(Errno(libc::EAGAIN))
                }
                Err(e) => {
                    *n = 0;
                    Err(e)
                }
            }
        }
    })
}

unsafe extern "C" fn pd_usleep(ud: *mut c_void, usec: useconds_t) -> c_int {
    call(ud, -1, |s| {
        s.usleep(usec.into());
        Ok(0)
    })
}

unsafe extern "C" fn pd_gettimeofday(ud: *mut c_void, tv: *mut timeval, _tz: *mut c_void) -> c_int {
    call(ud, -1, |s| {
        let t = s.gettimeofday();
        if !tv.is_null() {
            // SAFETY: writable timeval.
            unsafe {
                (*tv).tv_sec = (t / 1_000_000) as libc::time_t;
                (*tv).tv_usec = (t % 1_000_000) as libc::suseconds_t;
            }
        }
        Ok(0)
    })
}

unsafe extern "C" fn pd_epoll_create(ud: *mut c_void, size: c_int) -> c_int {
    call(ud, -1, |s| s.epoll_create(size))
}

unsafe extern "C" fn pd_epoll_ctl(
    ud: *mut c_void,
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut epoll_event,
) -> c_int {
    call(ud, -1, |s| {
        let e = if ev.is_null() {
            None
        } else {
            // SAFETY: a readable epoll_event (packed on x86-64).
            let e = unsafe { std::ptr::read_unaligned(ev) };
            Some((e.events, e.u64))
        };
        s.epoll_ctl(epfd, op, fd, e).map(|()| 0)
    })
}

unsafe extern "C" fn pd_epoll_wait(
    ud: *mut c_void,
    epfd: c_int,
    evs: *mut epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    call(ud, -1, |s| {
        if max <= 0 {
            return Err(Errno(libc::EINVAL));
        }
        if evs.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        let ready = s.epoll_wait(epfd, max as usize, timeout)?;
        for (i, &(events, data)) in ready.iter().enumerate() {
            // SAFETY: `evs` has room for `max` events and `ready.len() <= max`.
            unsafe { std::ptr::write_unaligned(evs.add(i), epoll_event { events, u64: data }) };
        }
        Ok(ready.len() as c_int)
    })
}

/// pipe(2): a real pipe of the process (our descriptors are real ones too, so the numbers
/// never collide), for splice to and from our sockets.
unsafe extern "C" fn pd_pipe(ud: *mut c_void, fds: *mut c_int) -> c_int {
    call(ud, -1, |_| {
        if fds.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: `fds` points to two ints (the caller's guarantee, as pipe(2)).
        if unsafe { libc::pipe(fds) } != 0 {
            return Err(Errno(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            ));
        }
        Ok(0)
    })
}

/// splice(2) between one of our sockets and a descriptor of the process (a pipe): the bytes
/// pass through a buffer here. From a socket it stops at urgent data (Linux's
/// `tcp_splice_read`: 0 at the mark). Offsets are ignored (packetdrill passes a pointer even
/// for a script's NULL; sockets and pipes have none).
unsafe extern "C" fn pd_splice(
    ud: *mut c_void,
    fd_in: c_int,
    _off_in: *mut loff_t,
    fd_out: c_int,
    _off_out: *mut loff_t,
    len: size_t,
    _flags: c_uint,
) -> c_int {
    call(ud, -1, |s| {
        let len = len.min(1 << 20);
        let mut buf = vec![0u8; len];
        if s.owns(fd_in) {
            let limit = s.urgent_mark(fd_in).map_or(len, |m| m.min(len));
            if limit == 0 && len > 0 {
                return Ok(0);
            }
            let n = s.recv(fd_in, &mut buf[..limit], false, false)?;
            // SAFETY: `buf` holds `n` initialized bytes.
            let w = unsafe { libc::write(fd_out, buf.as_ptr().cast(), n) };
            if w < 0 {
                return Err(Errno(
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO),
                ));
            }
            return Ok(w as c_int);
        }
        if s.owns(fd_out) {
            // SAFETY: `buf` has `len` writable bytes.
            let n = unsafe { libc::read(fd_in, buf.as_mut_ptr().cast(), len) };
            if n < 0 {
                return Err(Errno(
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO),
                ));
            }
            let sent = s.send(fd_out, &buf[..n as usize], false, SendFlags::default())?;
            return Ok(sent as c_int);
        }
        Err(Errno(libc::EINVAL))
    })
}
