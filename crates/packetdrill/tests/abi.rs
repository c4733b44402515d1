//! The built shared object, loaded with `dlopen` (libloading) and driven through its function
//! table exactly as packetdrill drives it: socket calls (blocking ones from a second thread,
//! detected as blocked by the thread's state in /proc, as packetdrill does), packets injected
//! with `netdev_send` and sniffed with `netdev_receive`, time moved with `usleep` and read with
//! `gettimeofday`. Packets are built and parsed with synack-wire.
//!
//! The shim runs with `tick_usecs=0` so that every time below is exact.

use std::ffi::{c_char, c_int, c_void, CString};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use libloading::os::unix::Library;
use synack_packetdrill::sockaddr;
use synack_packetdrill::PacketdrillInterface;
use synack_wire::{IpProtocol, IpRepr, TcpFlags, TcpOptions, TcpRepr, Timestamp};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1));
const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// gettimeofday's epoch: 1_700_000_000 s.
const T0: i64 = 1_700_000_000_000_000;

type Init = unsafe extern "C" fn(*const c_char, *mut PacketdrillInterface);

/// `target/{debug,release}/libsynack_packetdrill.so`, found from this test binary
/// (`target/debug/deps/abi-*`).
fn so_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    for dir in exe.ancestors().skip(1).take(3) {
        let p = dir.join("libsynack_packetdrill.so");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "libsynack_packetdrill.so not found next to {} or its parents: build the crate's \
         cdylib (cargo test -p synack-packetdrill does)",
        exe.display()
    );
}

/// The loaded object and one interface from it.
struct Pd {
    ifc: PacketdrillInterface,
    _lib: Arc<Library>,
    /// One instance at a time in this process, as packetdrill runs one script per process:
    /// descriptors are the process's own, and the lookup of a descriptor that is not in a
    /// table (`synack_packetdrill_getsockopt`) searches every live instance, so a closed
    /// socket of a test running beside this one could answer for a reused number.
    _one_at_a_time: OneAtATime,
}

/// A turn to hold an instance (taken in [`Pd::new`], given back when the `Pd` is dropped,
/// on whatever thread).
struct OneAtATime;

static TAKEN: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

impl OneAtATime {
    fn take() -> OneAtATime {
        let mut t = TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *t {
            t = FREED
                .wait(t)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *t = true;
        OneAtATime
    }
}

impl Drop for OneAtATime {
    fn drop(&mut self) {
        *TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        FREED.notify_one();
    }
}

// SAFETY: the table's functions are thread-safe (the shim locks); userdata lives until Drop.
unsafe impl Send for Pd {}
// SAFETY: as above.
unsafe impl Sync for Pd {}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `-1` and the errno, or the value.
fn res(r: i64) -> Result<i64, c_int> {
    if r == -1 {
        Err(errno())
    } else {
        Ok(r)
    }
}

impl Pd {
    fn new(flags: &str) -> Pd {
        let one = OneAtATime::take();
        // packetdrill's own dlopen flags (so_testing.c): the library is never unloaded.
        let mode = libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NODELETE | libc::RTLD_DEEPBIND;
        // SAFETY: loading our own library, whose initializers are Rust's.
        let lib = unsafe { Library::open(Some(so_path()), mode) }
            .expect("dlopen libsynack_packetdrill.so");
        let mut ifc = PacketdrillInterface::empty();
        let flags = CString::new(flags).unwrap();
        {
            // SAFETY: the symbol has this type (crates/packetdrill/src/ffi.rs).
            let init = unsafe { lib.get::<Init>(b"packetdrill_interface_init\0") }
                .expect("packetdrill_interface_init exported");
            // SAFETY: a NUL-terminated string and a writable table.
            unsafe { init(flags.as_ptr(), &mut ifc) };
        }
        assert!(!ifc.userdata.is_null());
        Pd {
            ifc,
            _lib: Arc::new(lib),
            _one_at_a_time: one,
        }
    }

    /// An exact clock, and descriptors numbered from 3 in our own table (not real ones).
    fn exact() -> Pd {
        Pd::new("local_ip=192.168.0.1 tick_usecs=0 real_fds=off")
    }

    fn ud(&self) -> *mut c_void {
        self.ifc.userdata
    }

    fn socket(&self) -> Result<i64, c_int> {
        // SAFETY (all wrappers below): the table's functions with valid arguments.
        res(unsafe {
            self.ifc.socket.unwrap()(
                self.ud(),
                libc::AF_INET,
                libc::SOCK_STREAM,
                libc::IPPROTO_TCP,
            )
        }
        .into())
    }

    fn bind(&self, fd: i64, a: SocketAddr) -> Result<i64, c_int> {
        let b = sockaddr::to_bytes(a);
        res(unsafe {
            self.ifc.bind.unwrap()(self.ud(), fd as c_int, b.as_ptr().cast(), b.len() as u32)
        }
        .into())
    }

    fn listen(&self, fd: i64) -> Result<i64, c_int> {
        res(unsafe { self.ifc.listen.unwrap()(self.ud(), fd as c_int, 8) }.into())
    }

    fn accept(&self, fd: i64) -> Result<(i64, SocketAddr), c_int> {
        let mut sa = [0u8; 128];
        let mut len = sa.len() as u32;
        let r = res(unsafe {
            self.ifc.accept.unwrap()(self.ud(), fd as c_int, sa.as_mut_ptr().cast(), &mut len)
        }
        .into())?;
        // SAFETY: accept wrote `len` bytes.
        let a =
            unsafe { sockaddr::read(sa.as_ptr().cast(), len) }.expect("accept fills the address");
        Ok((r, a))
    }

    fn connect(&self, fd: i64, a: SocketAddr) -> Result<i64, c_int> {
        let b = sockaddr::to_bytes(a);
        res(unsafe {
            self.ifc.connect.unwrap()(self.ud(), fd as c_int, b.as_ptr().cast(), b.len() as u32)
        }
        .into())
    }

    fn nonblock(&self, fd: i64) {
        let r = unsafe {
            self.ifc.fcntl.unwrap()(
                self.ud(),
                fd as c_int,
                libc::F_SETFL,
                libc::O_RDWR | libc::O_NONBLOCK,
            )
        };
        assert_eq!(r, 0);
        let fl = unsafe { self.ifc.fcntl.unwrap()(self.ud(), fd as c_int, libc::F_GETFL) };
        assert_eq!(fl, libc::O_RDWR | libc::O_NONBLOCK);
    }

    fn read(&self, fd: i64, n: usize) -> Result<Vec<u8>, c_int> {
        let mut b = vec![0u8; n];
        let r =
            res(
                unsafe { self.ifc.read.unwrap()(self.ud(), fd as c_int, b.as_mut_ptr().cast(), n) }
                    as i64,
            )?;
        b.truncate(r as usize);
        Ok(b)
    }

    fn write(&self, fd: i64, data: &[u8]) -> Result<i64, c_int> {
        res(unsafe {
            self.ifc.write.unwrap()(self.ud(), fd as c_int, data.as_ptr().cast(), data.len())
        } as i64)
    }

    fn close(&self, fd: i64) -> Result<i64, c_int> {
        res(unsafe { self.ifc.close.unwrap()(self.ud(), fd as c_int) }.into())
    }

    fn setsockopt_int(&self, fd: i64, level: c_int, name: c_int, v: c_int) -> Result<i64, c_int> {
        res(unsafe {
            self.ifc.setsockopt.unwrap()(
                self.ud(),
                fd as c_int,
                level,
                name,
                (&raw const v).cast(),
                4,
            )
        }
        .into())
    }

    fn getsockopt_int(&self, fd: i64, level: c_int, name: c_int) -> Result<c_int, c_int> {
        let mut v: c_int = -7;
        let mut len: u32 = 4;
        res(unsafe {
            self.ifc.getsockopt.unwrap()(
                self.ud(),
                fd as c_int,
                level,
                name,
                (&raw mut v).cast(),
                &mut len,
            )
        }
        .into())?;
        assert_eq!(len, 4);
        Ok(v)
    }

    fn poll1(&self, fd: i64, events: i16, timeout: c_int) -> Result<i16, c_int> {
        let mut p = libc::pollfd {
            fd: fd as c_int,
            events,
            revents: 0,
        };
        res(unsafe { self.ifc.poll.unwrap()(self.ud(), &mut p, 1, timeout) }.into())?;
        Ok(p.revents)
    }

    fn now(&self) -> i64 {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        assert_eq!(
            unsafe { self.ifc.gettimeofday.unwrap()(self.ud(), &mut tv, std::ptr::null_mut()) },
            0
        );
        tv.tv_sec * 1_000_000 + tv.tv_usec
    }

    fn usleep(&self, us: u32) {
        assert_eq!(unsafe { self.ifc.usleep.unwrap()(self.ud(), us) }, 0);
    }

    fn inject(&self, p: &[u8]) {
        assert_eq!(
            unsafe { self.ifc.netdev_send.unwrap()(self.ud(), p.as_ptr().cast(), p.len()) },
            0
        );
    }

    /// The next packet out and its time, or None.
    fn sniff(&self) -> Option<(Vec<u8>, i64)> {
        let mut b = vec![0u8; 65536];
        let mut n = b.len();
        let mut t: libc::c_longlong = 0;
        let r = unsafe {
            self.ifc.netdev_receive.unwrap()(self.ud(), b.as_mut_ptr().cast(), &mut n, &mut t)
        };
        if r != 0 {
            assert_eq!(n, 0);
            assert_eq!(errno(), libc::EAGAIN);
            return None;
        }
        b.truncate(n);
        Some((b, t))
    }

    /// The next packet out, parsed (checksums verified).
    fn expect(&self) -> Seg {
        let (p, t) = self.sniff().expect("a packet from the stack");
        Seg::parse(&p, t)
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: the table's userdata, freed once.
        unsafe { self.ifc.free.unwrap()(self.ud()) };
    }
}

/// A TCP segment the stack sent.
#[derive(Debug)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    window: u16,
    options: TcpOptions,
    payload: Vec<u8>,
    /// Microseconds after T0.
    at: i64,
}

impl Seg {
    fn parse(p: &[u8], t: i64) -> Seg {
        let (ip, payload) = IpRepr::parse(p).expect("a valid IP packet");
        assert_eq!(ip.protocol(), IpProtocol::Tcp);
        let tcp = TcpRepr::parse(payload, Some((ip.src(), ip.dst()))).expect("a valid TCP segment");
        Seg {
            src: SocketAddr::new(ip.src(), tcp.src_port),
            dst: SocketAddr::new(ip.dst(), tcp.dst_port),
            flags: tcp.flags,
            seq: tcp.seq,
            ack: tcp.ack,
            window: tcp.window,
            options: tcp.options,
            payload: tcp.payload.to_vec(),
            at: t - T0,
        }
    }
}

/// An IP packet from `src` to `dst`.
#[allow(clippy::too_many_arguments)]
fn packet(
    src: SocketAddr,
    dst: SocketAddr,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    window: u16,
    options: TcpOptions,
    payload: &[u8],
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq,
        ack,
        flags,
        window,
        urgent: 0,
        options,
        payload,
    };
    let ip = IpRepr::new(src.ip(), dst.ip(), IpProtocol::Tcp, tcp.buffer_len(), 64).unwrap();
    let mut out = vec![0u8; ip.buffer_len()];
    ip.emit(&mut out);
    tcp.emit(&mut out[ip.header_len()..], src.ip(), dst.ip());
    out
}

fn syn_options() -> TcpOptions {
    TcpOptions {
        mss: Some(1000),
        window_scale: Some(7),
        sack_permitted: true,
        ..TcpOptions::default()
    }
}

/// A thread's scheduler state from /proc: 'S' when it sleeps (blocked), as packetdrill reads it.
fn thread_state(tid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": the state follows the last ')'.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Run `f` on another thread and return once that thread is blocked (sleeping) or done.
fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() }).unwrap();
        f()
    });
    let tid = rx.recv().unwrap();
    // A bounded spin: no sleeping, no clock.
    for _ in 0..50_000_000u64 {
        if h.is_finished() || thread_state(tid) == Some('S') {
            return h;
        }
        std::thread::yield_now();
    }
    panic!("the call neither blocked nor returned");
}

/// Passive open on port 8080 from `remote`: returns (listener fd, accepted fd, our ISN).
fn passive_open(pd: &Pd, remote: SocketAddr) -> (i64, i64, u32) {
    let local = SocketAddr::new(LOCAL, 8080);
    let l = pd.socket().unwrap();
    assert_eq!(
        pd.setsockopt_int(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1),
        Ok(0)
    );
    assert_eq!(pd.bind(l, local), Ok(0));
    assert_eq!(pd.listen(l), Ok(0));
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::SYN,
        1000,
        0,
        65535,
        syn_options(),
        &[],
    ));
    let synack = pd.expect();
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((synack.src, synack.dst), (local, remote));
    assert_eq!(synack.ack, 1001);
    assert_eq!(synack.options.mss, Some(1460));
    assert!(synack.options.sack_permitted);
    assert_eq!(synack.options.window_scale, Some(5));
    assert_eq!(synack.options.timestamp, None, "the SYN offered none");
    let isn = synack.seq;
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        isn.wrapping_add(1),
        1000,
        TcpOptions::default(),
        &[],
    ));
    let (fd, peer) = pd.accept(l).unwrap();
    assert_eq!(peer, remote);
    (l, fd, isn)
}

#[test]
fn table_layout_and_init() {
    // 33 pointers, in packetdrill.h's order.
    assert_eq!(
        std::mem::size_of::<PacketdrillInterface>(),
        33 * std::mem::size_of::<*const ()>()
    );
    assert_eq!(std::mem::offset_of!(PacketdrillInterface, splice), 32 * 8);
    assert_eq!(
        std::mem::offset_of!(PacketdrillInterface, netdev_send),
        24 * 8
    );
    // Unknown or bad words are reported on stderr and skipped: the table is still filled.
    let pd = Pd::new("local_ip=198.18.0.2 bogus=1 mtu=nope min_rto=300ms");
    let i = &pd.ifc;
    assert!(i.free.is_some() && i.socket.is_some() && i.splice.is_some() && i.epoll_wait.is_some());
    // The clock starts at the fixed epoch and moves one microsecond per read by default.
    let a = pd.now();
    let b = pd.now();
    assert_eq!((a - T0, b - a), (1, 1));
    pd.usleep(250_000);
    assert_eq!(pd.now() - b, 250_001);
}

#[test]
fn active_open_data_both_ways_and_active_close() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 8080);
    let fd = pd.socket().unwrap();
    assert_eq!(fd, 3);
    pd.nonblock(fd);
    assert_eq!(pd.connect(fd, remote), Err(libc::EINPROGRESS));
    assert_eq!(pd.connect(fd, remote), Err(libc::EALREADY));
    let syn = pd.expect();
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.dst, remote);
    assert_eq!(syn.src.ip(), LOCAL);
    assert_eq!(syn.at, 0);
    assert_eq!(syn.options.mss, Some(1460));
    assert!(syn.options.sack_permitted);
    assert_eq!(syn.options.window_scale, Some(5));
    let ts = syn.options.timestamp.expect("timestamps offered");
    assert_eq!(ts.tsecr, 0);
    let local = syn.src;
    let iss = syn.seq;

    // The SYN-ACK, 50 ms later.
    pd.usleep(50_000);
    let opts = TcpOptions {
        mss: Some(1200),
        window_scale: Some(2),
        sack_permitted: true,
        timestamp: Some(Timestamp {
            tsval: 7000,
            tsecr: ts.tsval,
        }),
        ..TcpOptions::default()
    };
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::SYN | TcpFlags::ACK,
        5000,
        iss.wrapping_add(1),
        20000,
        opts,
        &[],
    ));
    let ack = pd.expect();
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!(
        (ack.seq, ack.ack, ack.at),
        (iss.wrapping_add(1), 5001, 50_000)
    );
    assert_eq!(ack.options.timestamp.map(|t| t.tsecr), Some(7000));
    assert_eq!(pd.connect(fd, remote), Ok(0), "completion reported once");
    assert_eq!(pd.connect(fd, remote), Err(libc::EISCONN));
    assert_eq!(
        pd.getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG),
        Ok(1188)
    );

    // Our data, byte for byte.
    let msg: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(pd.write(fd, &msg), Ok(300));
    let d = pd.expect();
    assert_eq!(d.flags, TcpFlags::PSH | TcpFlags::ACK);
    assert_eq!((d.seq, d.ack, d.at), (iss.wrapping_add(1), 5001, 50_000));
    assert_eq!(d.payload, msg);

    // The peer's data, acknowledging ours; read back byte for byte.
    let reply: Vec<u8> = (0..500u32).map(|i| (i * 13) as u8).collect();
    let peer_ts = TcpOptions {
        timestamp: Some(Timestamp {
            tsval: 7050,
            tsecr: 0,
        }),
        ..TcpOptions::default()
    };
    pd.usleep(50_000);
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::PSH | TcpFlags::ACK,
        5001,
        iss.wrapping_add(301),
        20000,
        peer_ts,
        &reply,
    ));
    assert_eq!(pd.poll1(fd, libc::POLLIN, 0), Ok(libc::POLLIN));
    assert_eq!(pd.read(fd, 1000), Ok(reply.clone()));
    assert_eq!(pd.read(fd, 1000), Err(libc::EAGAIN));
    // The connection's first data: acknowledged at once (Linux's quick-ACK mode), not
    // 40 ms later by the delayed-ACK timer.
    let a = pd.expect();
    assert_eq!((a.flags, a.ack, a.at), (TcpFlags::ACK, 5501, 100_000));

    // Active close: FIN, the peer's ACK and FIN, our last ACK.
    assert_eq!(pd.close(fd), Ok(0));
    let fin = pd.expect();
    assert_eq!(fin.flags, TcpFlags::FIN | TcpFlags::ACK);
    assert_eq!((fin.seq, fin.ack), (iss.wrapping_add(301), 5501));
    let fin_ack = TcpOptions {
        timestamp: Some(Timestamp {
            tsval: 7100,
            tsecr: 0,
        }),
        ..TcpOptions::default()
    };
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::FIN | TcpFlags::ACK,
        5501,
        iss.wrapping_add(302),
        20000,
        fin_ack,
        &[],
    ));
    let last = pd.expect();
    assert_eq!(last.flags, TcpFlags::ACK);
    assert_eq!((last.seq, last.ack), (iss.wrapping_add(302), 5502));
    assert_eq!(pd.close(fd), Err(libc::EBADF));
}

#[test]
fn passive_open_and_passive_close() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 40001);
    let local = SocketAddr::new(LOCAL, 8080);
    let (l, fd, isn) = passive_open(&pd, remote);
    assert_eq!((l, fd), (3, 4));
    assert_eq!(
        pd.getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR),
        Ok(0)
    );
    // No window update follows the handshake (as Linux; see tests/packetdrill/
    // passive-open-window-update.pkt).

    // The peer closes: its FIN is acknowledged at once; we read end of stream.
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::FIN | TcpFlags::ACK,
        1001,
        isn.wrapping_add(1),
        1000,
        TcpOptions::default(),
        &[],
    ));
    let a = pd.expect();
    assert_eq!(
        (a.flags, a.seq, a.ack),
        (TcpFlags::ACK, isn.wrapping_add(1), 1002)
    );
    assert_eq!(pd.read(fd, 10), Ok(vec![]));
    let rev = pd
        .poll1(fd, libc::POLLIN | libc::POLLOUT | 0x2000, 0)
        .unwrap();
    assert_eq!(rev, libc::POLLIN | libc::POLLOUT | 0x2000);
    // We close: FIN (LAST-ACK), the peer's ACK, and the descriptor is gone.
    assert_eq!(pd.close(fd), Ok(0));
    let fin = pd.expect();
    assert_eq!(
        (fin.flags, fin.seq, fin.ack),
        (TcpFlags::FIN | TcpFlags::ACK, isn.wrapping_add(1), 1002)
    );
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1002,
        isn.wrapping_add(2),
        1000,
        TcpOptions::default(),
        &[],
    ));
    assert_eq!(pd.poll1(fd, libc::POLLIN, 0), Ok(libc::POLLNVAL));
    assert_eq!(pd.close(l), Ok(0));
    // Nothing more: no timer left, nothing queued.
    assert!(pd.sniff().is_none());
}

#[test]
fn rst_to_a_closed_port() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 40002);
    let closed = SocketAddr::new(LOCAL, 9);
    pd.inject(&packet(
        remote,
        closed,
        TcpFlags::SYN,
        77,
        0,
        1000,
        syn_options(),
        &[],
    ));
    let r = pd.expect();
    assert_eq!(r.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(
        (r.src, r.dst, r.seq, r.ack, r.window),
        (closed, remote, 0, 78, 0)
    );
    // An ACK gets <SEQ=SEG.ACK><CTL=RST>; a RST gets nothing.
    pd.inject(&packet(
        remote,
        closed,
        TcpFlags::ACK,
        78,
        4242,
        1000,
        TcpOptions::default(),
        &[],
    ));
    let r = pd.expect();
    assert_eq!((r.flags, r.seq), (TcpFlags::RST, 4242));
    pd.inject(&packet(
        remote,
        closed,
        TcpFlags::RST,
        78,
        0,
        1000,
        TcpOptions::default(),
        &[],
    ));
    assert!(pd.sniff().is_none());
    // A packet for another host is not ours: dropped without reply.
    let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 99)), 8080);
    pd.inject(&packet(
        remote,
        other,
        TcpFlags::SYN,
        1,
        0,
        1000,
        syn_options(),
        &[],
    ));
    assert!(pd.sniff().is_none());
}

#[test]
fn syn_retransmitted_after_the_rto() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 8080);
    let fd = pd.socket().unwrap();
    pd.nonblock(fd);
    assert_eq!(pd.connect(fd, remote), Err(libc::EINPROGRESS));
    let syn = pd.expect();
    assert_eq!(syn.at, 0);
    // usleep past the RTO: the timer fires at its deadline (1 s, RFC 6298 §2.1), not when the
    // sleep ends.
    pd.usleep(1_500_000);
    let again = pd.expect();
    assert_eq!(
        (again.flags, again.seq, again.at),
        (TcpFlags::SYN, syn.seq, 1_000_000)
    );
    // With nothing queued, netdev_receive lets time run to the next timer: the backed-off RTO
    // of 2 s (§5.5).
    let third = pd.expect();
    assert_eq!((third.flags, third.at), (TcpFlags::SYN, 3_000_000));
    assert_eq!(pd.now() - T0, 3_000_000);
    assert_eq!(pd.poll1(fd, libc::POLLOUT, 0), Ok(0));
}

#[test]
fn min_rto_from_the_flags() {
    // A 100 ms RTT sample would give an RTO of 300 ms; with min_rto=500ms it is 600 ms: the
    // shim's RTO is Linux's, SRTT + max(4·RTTVAR, floor).
    let pd = Pd::new("local_ip=192.168.0.1 tick_usecs=0 min_rto=500ms real_fds=off");
    let remote = SocketAddr::new(REMOTE, 8080);
    let fd = pd.socket().unwrap();
    pd.nonblock(fd);
    assert_eq!(pd.connect(fd, remote), Err(libc::EINPROGRESS));
    let syn = pd.expect();
    pd.usleep(100_000);
    let opts = TcpOptions {
        mss: Some(1000),
        ..TcpOptions::default()
    };
    pd.inject(&packet(
        remote,
        syn.src,
        TcpFlags::SYN | TcpFlags::ACK,
        1,
        syn.seq.wrapping_add(1),
        20000,
        opts,
        &[],
    ));
    pd.expect(); // ACK
    assert_eq!(pd.write(fd, b"x"), Ok(1));
    let d = pd.expect();
    assert_eq!(d.at, 100_000);
    let rx = pd.expect();
    assert_eq!((rx.payload.as_slice(), rx.at), (&b"x"[..], 700_000));
}

#[test]
fn blocking_accept_released_by_a_handshake_from_another_thread() {
    let pd = Arc::new(Pd::exact());
    let remote = SocketAddr::new(REMOTE, 40003);
    let local = SocketAddr::new(LOCAL, 8080);
    let l = pd.socket().unwrap();
    assert_eq!(pd.bind(l, local), Ok(0));
    assert_eq!(pd.listen(l), Ok(0));
    let p = Arc::clone(&pd);
    let h = spawn_blocking(move || {
        let r = p.accept(l);
        (r, p.now() - T0)
    });
    assert!(!h.is_finished(), "accept returned before any connection");
    pd.usleep(100_000);
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::SYN,
        1000,
        0,
        65535,
        syn_options(),
        &[],
    ));
    let synack = pd.expect();
    pd.usleep(100_000);
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        synack.seq.wrapping_add(1),
        1000,
        TcpOptions::default(),
        &[],
    ));
    let (r, at) = h.join().unwrap();
    assert_eq!(r, Ok((4, remote)));
    assert_eq!(at, 200_000, "accept returned when the handshake completed");
}

#[test]
fn blocking_read_released_by_data_then_by_a_reset() {
    let pd = Arc::new(Pd::exact());
    let remote = SocketAddr::new(REMOTE, 40004);
    let local = SocketAddr::new(LOCAL, 8080);
    let (_l, fd, isn) = passive_open(&pd, remote);

    let p = Arc::clone(&pd);
    let h = spawn_blocking(move || p.read(fd, 100));
    pd.usleep(10_000);
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::PSH | TcpFlags::ACK,
        1001,
        isn.wrapping_add(1),
        1000,
        TcpOptions::default(),
        b"ping",
    ));
    assert_eq!(h.join().unwrap(), Ok(b"ping".to_vec()));

    let p = Arc::clone(&pd);
    let h = spawn_blocking(move || p.read(fd, 100));
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::RST,
        1005,
        0,
        0,
        TcpOptions::default(),
        &[],
    ));
    assert_eq!(h.join().unwrap(), Err(libc::ECONNRESET));
    // Reported once: then end of stream for reads, EPIPE for writes.
    assert_eq!(pd.read(fd, 100), Ok(vec![]));
    assert_eq!(pd.write(fd, b"x"), Err(libc::EPIPE));
}

#[test]
fn blocking_poll_and_epoll_time_out_on_the_virtual_clock() {
    let pd = Arc::new(Pd::exact());
    let local = SocketAddr::new(LOCAL, 8080);
    let remote = SocketAddr::new(REMOTE, 40005);
    let l = pd.socket().unwrap();
    assert_eq!(pd.bind(l, local), Ok(0));
    assert_eq!(pd.listen(l), Ok(0));

    // poll with a 100 ms timeout returns 0 when usleep moves the clock past it.
    let p = Arc::clone(&pd);
    let h = spawn_blocking(move || (p.poll1(l, libc::POLLIN, 100), p.now() - T0));
    pd.usleep(250_000);
    assert_eq!(h.join().unwrap(), (Ok(0), 100_000));

    // epoll: the listener becomes readable when a handshake completes.
    let ep = unsafe { pd.ifc.epoll_create.unwrap()(pd.ud(), 1) };
    assert!(ep > 0);
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0xfeed,
    };
    assert_eq!(
        unsafe { pd.ifc.epoll_ctl.unwrap()(pd.ud(), ep, libc::EPOLL_CTL_ADD, l as c_int, &mut ev) },
        0
    );
    assert_eq!(
        unsafe { pd.ifc.epoll_ctl.unwrap()(pd.ud(), ep, libc::EPOLL_CTL_ADD, l as c_int, &mut ev) },
        -1
    );
    assert_eq!(errno(), libc::EEXIST);
    let p = Arc::clone(&pd);
    let h = spawn_blocking(move || {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = unsafe { p.ifc.epoll_wait.unwrap()(p.ud(), ep, out.as_mut_ptr(), 4, -1) };
        (n, { out[0].events }, { out[0].u64 })
    });
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::SYN,
        1000,
        0,
        65535,
        syn_options(),
        &[],
    ));
    let synack = pd.expect();
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        synack.seq.wrapping_add(1),
        1000,
        TcpOptions::default(),
        &[],
    ));
    assert_eq!(h.join().unwrap(), (1, libc::EPOLLIN as u32, 0xfeed));
}

#[test]
fn socket_options_reach_the_connection() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 40006);
    let local = SocketAddr::new(LOCAL, 8080);
    let (_l, fd, isn) = passive_open(&pd, remote);
    // Keepalive after 10 s idle: a probe <SEQ=SND.UNA-1> (RFC 9293 §3.8.4).
    assert_eq!(
        pd.setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 10),
        Ok(0)
    );
    assert_eq!(
        pd.setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 5),
        Ok(0)
    );
    assert_eq!(
        pd.setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3),
        Ok(0)
    );
    assert_eq!(
        pd.setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        Ok(0)
    );
    assert_eq!(
        pd.getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        Ok(1)
    );
    assert_eq!(
        pd.getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        Ok(10)
    );
    let t = pd.now() - T0;
    let probe = pd.expect();
    assert_eq!(
        (probe.seq, probe.payload.len(), probe.at),
        (isn, 0, t + 10_000_000)
    );
    assert_eq!(
        pd.setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0),
        Ok(0)
    );
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        isn.wrapping_add(1),
        1000,
        TcpOptions::default(),
        &[],
    ));

    // Invalid values and unknown options.
    assert_eq!(
        pd.setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 0),
        Err(libc::EINVAL)
    );
    assert_eq!(
        pd.setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, -1),
        Err(libc::EINVAL)
    );
    assert_eq!(
        pd.setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, 1),
        Err(libc::ENOPROTOOPT)
    );
    assert_eq!(
        pd.getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE),
        Ok(libc::SOCK_STREAM)
    );

    // TCP_INFO: state and negotiated options.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as u32;
    let r = unsafe {
        pd.ifc.getsockopt.unwrap()(
            pd.ud(),
            fd as c_int,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut ti).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0);
    assert_eq!(ti.tcpi_state, 1, "TCP_ESTABLISHED");
    assert_eq!(
        ti.tcpi_options,
        2 | 4,
        "SACK and window scaling, no timestamps"
    );
    assert_eq!(ti.tcpi_snd_rcv_wscale, 7 | (5 << 4));
    assert_eq!(ti.tcpi_snd_mss, 1000);

    // SO_LINGER with a zero time: close resets.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let r = unsafe {
        pd.ifc.setsockopt.unwrap()(
            pd.ud(),
            fd as c_int,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            8,
        )
    };
    assert_eq!(r, 0);
    assert_eq!(pd.close(fd), Ok(0));
    let rst = pd.expect();
    assert_eq!(
        (rst.flags, rst.seq),
        (TcpFlags::RST | TcpFlags::ACK, isn.wrapping_add(1))
    );
}

#[test]
fn unsupported_and_bad_calls_fail_cleanly() {
    let pd = Pd::exact();
    let ud = pd.ud();
    let i = &pd.ifc;
    unsafe {
        // pipe() is a real pipe of the process (for splice with our sockets).
        let mut fds = [0 as c_int; 2];
        assert_eq!(i.pipe.unwrap()(ud, fds.as_mut_ptr()), 0);
        assert_eq!(libc::write(fds[1], b"x".as_ptr().cast(), 1), 1);
        libc::close(fds[0]);
        libc::close(fds[1]);
        // splice between descriptors neither of which is ours.
        assert_eq!(
            i.splice.unwrap()(ud, 3, std::ptr::null_mut(), 4, std::ptr::null_mut(), 10, 0),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(
            i.socket.unwrap()(ud, libc::AF_UNIX, libc::SOCK_STREAM, 0),
            -1
        );
        assert_eq!(errno(), libc::EAFNOSUPPORT);
        assert_eq!(
            i.socket.unwrap()(ud, libc::AF_INET, libc::SOCK_DGRAM, 0),
            -1
        );
        assert_eq!(errno(), libc::EPROTONOSUPPORT);
        assert_eq!(i.read.unwrap()(ud, 42, std::ptr::null_mut(), 0), -1);
        assert_eq!(errno(), libc::EBADF);
        let fd = i.socket.unwrap()(
            ud,
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
            0,
        );
        assert_eq!(fd, 3);
        assert_eq!(
            i.ioctl.unwrap()(
                ud,
                fd,
                0x1234 as libc::c_ulong,
                std::ptr::null_mut::<c_void>()
            ),
            -1
        );
        assert_eq!(errno(), libc::ENOTTY);
        assert_eq!(i.read.unwrap()(ud, fd, std::ptr::null_mut(), 10), -1);
        assert_eq!(errno(), libc::EFAULT);
        let mut b = [0u8; 4];
        assert_eq!(i.read.unwrap()(ud, fd, b.as_mut_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::ENOTCONN);
        assert_eq!(i.write.unwrap()(ud, fd, b.as_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::EPIPE);
        assert_eq!(i.shutdown.unwrap()(ud, fd, libc::SHUT_WR), -1);
        assert_eq!(errno(), libc::ENOTCONN);
        assert_eq!(
            i.listen.unwrap()(ud, fd, 1),
            0,
            "an unbound socket listens on a port of its own"
        );
        assert_eq!(
            i.accept.unwrap()(ud, fd, std::ptr::null_mut(), std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EAGAIN);
        assert_eq!(i.bind.unwrap()(ud, fd, std::ptr::null(), 16), -1);
        assert_eq!(errno(), libc::EFAULT);
        let short = [2u8, 0, 0, 80];
        assert_eq!(i.connect.unwrap()(ud, fd, short.as_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::EINVAL);
        // Malformed packets are dropped by the stack; the call itself succeeds.
        let junk = [0x45u8, 0, 0, 3, 9, 9];
        assert_eq!(
            i.netdev_send.unwrap()(ud, junk.as_ptr().cast(), junk.len()),
            0
        );
        assert_eq!(i.netdev_send.unwrap()(ud, junk.as_ptr().cast(), 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        // A null userdata is an error, not a crash.
        assert_eq!(
            i.socket.unwrap()(std::ptr::null_mut(), libc::AF_INET, libc::SOCK_STREAM, 0),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
    }
    assert!(pd.sniff().is_none());
}

#[test]
fn an_inet6_socket_on_any_address_accepts_ipv4_as_mapped() {
    let pd = Pd::exact();
    let ud = pd.ud();
    let remote = SocketAddr::new(REMOTE, 40007);
    let local = SocketAddr::new(LOCAL, 8080);
    // SAFETY: the table's functions with valid arguments.
    let l = unsafe { pd.ifc.socket.unwrap()(ud, libc::AF_INET6, libc::SOCK_STREAM, 0) } as i64;
    let any: SocketAddr = "[::]:8080".parse().unwrap();
    assert_eq!(pd.bind(l, any), Ok(0));
    assert_eq!(pd.listen(l), Ok(0));
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::SYN,
        1000,
        0,
        65535,
        syn_options(),
        &[],
    ));
    let synack = pd.expect();
    assert_eq!(synack.src, local);
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        synack.seq.wrapping_add(1),
        1000,
        TcpOptions::default(),
        &[],
    ));
    let mut sa = [0u8; 128];
    let mut len = sa.len() as u32;
    // SAFETY: a buffer of `len` bytes.
    let fd = unsafe { pd.ifc.accept.unwrap()(ud, l as c_int, sa.as_mut_ptr().cast(), &mut len) };
    assert_eq!(fd, 4);
    assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in6>());
    assert_eq!(u16::from_ne_bytes([sa[0], sa[1]]), libc::AF_INET6 as u16);
    let mapped: [u8; 16] = sa[8..24].try_into().unwrap();
    assert_eq!(
        std::net::Ipv6Addr::from(mapped).to_ipv4_mapped(),
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(
        pd.getsockopt_int(4, libc::SOL_SOCKET, libc::SO_DOMAIN),
        Ok(libc::AF_INET6)
    );
}

/// The variadic entries, called as C calls them: `fcntl` reads an `int` for F_SETFL and F_SETFD
/// and nothing for F_GETFL and F_GETFD; `ioctl` reads an `int *` for FIONBIO, FIONREAD and
/// TIOCOUTQ, and never reads the argument of a request it refuses.
#[test]
fn variadic_fcntl_and_ioctl_read_their_argument() {
    let pd = Pd::exact();
    let (i, ud) = (pd.ifc, pd.ud());
    let fd = pd.socket().unwrap() as c_int;
    // SAFETY: the table's functions, with the arguments each command takes.
    unsafe {
        let fcntl = i.fcntl.unwrap();
        let ioctl = i.ioctl.unwrap();
        assert_eq!(fcntl(ud, fd, libc::F_GETFL), libc::O_RDWR);
        assert_eq!(
            fcntl(ud, fd, libc::F_SETFL, libc::O_RDWR | libc::O_NONBLOCK),
            0
        );
        assert_eq!(
            fcntl(ud, fd, libc::F_GETFL),
            libc::O_RDWR | libc::O_NONBLOCK
        );
        assert_eq!(fcntl(ud, fd, libc::F_SETFL, libc::O_RDWR), 0);
        assert_eq!(fcntl(ud, fd, libc::F_GETFL), libc::O_RDWR);
        assert_eq!(fcntl(ud, fd, libc::F_SETFD, libc::FD_CLOEXEC), 0);
        assert_eq!(fcntl(ud, fd, libc::F_GETFD), 0);
        // A command the shim does not do, with a pointer argument it must not read as an int.
        let mut lock: libc::flock = std::mem::zeroed();
        assert_eq!(
            fcntl(ud, fd, libc::F_GETLK, &mut lock as *mut libc::flock),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(fcntl(ud, 99, libc::F_GETFL), -1);
        assert_eq!(errno(), libc::EBADF);

        let mut on: c_int = 1;
        assert_eq!(
            ioctl(
                ud,
                fd,
                libc::FIONBIO as libc::c_ulong,
                &mut on as *mut c_int
            ),
            0
        );
        assert_eq!(
            fcntl(ud, fd, libc::F_GETFL),
            libc::O_RDWR | libc::O_NONBLOCK
        );
        let mut off: c_int = 0;
        assert_eq!(
            ioctl(
                ud,
                fd,
                libc::FIONBIO as libc::c_ulong,
                &mut off as *mut c_int
            ),
            0
        );
        assert_eq!(fcntl(ud, fd, libc::F_GETFL), libc::O_RDWR);
        for req in [
            libc::FIONREAD as libc::c_ulong,
            libc::TIOCOUTQ as libc::c_ulong,
        ] {
            let mut n: c_int = -7;
            assert_eq!(ioctl(ud, fd, req, &mut n as *mut c_int), 0);
            assert_eq!(n, 0, "nothing queued on a new socket");
        }
        assert_eq!(
            ioctl(
                ud,
                fd,
                libc::FIONREAD as libc::c_ulong,
                std::ptr::null_mut::<c_int>()
            ),
            -1
        );
        assert_eq!(errno(), libc::EFAULT);
        // A request it refuses, called with no argument at all.
        assert_eq!(ioctl(ud, fd, 0x5401 as libc::c_ulong), -1);
        assert_eq!(errno(), libc::ENOTTY);
    }
}

/// By default the descriptors handed out are real descriptors of the process (so that
/// packetdrill's own `close()` at teardown works): open while the socket is, closed with it.
/// And `synack_packetdrill_getsockopt`, which the LD_PRELOAD helper calls for the C library's
/// getsockopt, answers TCP_INFO for them (Linux's layout) and EBADF for others.
#[test]
fn descriptors_are_real_and_tcp_info_reachable_without_the_table() {
    let pd = Pd::new("local_ip=192.168.0.1 tick_usecs=0");
    let fd = pd.socket().unwrap() as c_int;
    // SAFETY: F_GETFD on any number is harmless.
    assert!(
        unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0,
        "fd {fd} is open"
    );
    type GetSockOpt =
        unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut libc::socklen_t) -> c_int;
    // SAFETY: the symbol has this type (crates/packetdrill/src/ffi.rs).
    let get = unsafe {
        pd._lib
            .get::<GetSockOpt>(b"synack_packetdrill_getsockopt\0")
    }
    .expect("synack_packetdrill_getsockopt exported");
    let mut info = [0xffu8; 300];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: a buffer of `len` bytes.
    let r = unsafe {
        get(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(
        (r, len),
        (0, 300),
        "a longer struct tcp_info is filled with zeros"
    );
    assert_eq!(info[0], 7, "tcpi_state: TCP_CLOSE");
    assert!(info[248..].iter().all(|&b| b == 0));
    // SAFETY: as above.
    let r = unsafe {
        get(
            9999,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!((r, errno()), (-1, libc::EBADF));
    assert_eq!(pd.close(fd as i64), Ok(0));
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_GETFD) },
        -1,
        "closed with the socket"
    );
}

/// MSG_ZEROCOPY with SO_ZEROCOPY (Linux's zero-copy sends): each send gets a notification id,
/// reported on the error queue once its data is acknowledged, consecutive ones in one range
/// (`ee_info`..=`ee_data`), as an IP_RECVERR control message with MSG_ERRQUEUE; EAGAIN when
/// none is ready; POLLERR while one is. And an EPOLLET entry reports only what is new.
#[test]
fn zerocopy_completions_and_edge_triggered_epoll() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 40003);
    let local = SocketAddr::new(LOCAL, 8080);
    let (_l, fd, isn) = passive_open(&pd, remote);
    pd.nonblock(fd);
    assert_eq!(pd.setsockopt_int(fd, libc::SOL_SOCKET, 60, 1), Ok(0)); // SO_ZEROCOPY
    let i = &pd.ifc;
    let ud = pd.ud();
    // SAFETY (all calls below): the table's functions with valid arguments.
    let ep = unsafe { i.epoll_create.unwrap()(ud, 1) };
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLOUT | libc::EPOLLET) as u32,
        u64: 7,
    };
    assert_eq!(
        unsafe { i.epoll_ctl.unwrap()(ud, ep, libc::EPOLL_CTL_ADD, fd as c_int, &mut ev) },
        0
    );
    let wait = || {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 2];
        let n = unsafe { i.epoll_wait.unwrap()(ud, ep, out.as_mut_ptr(), 2, 0) };
        (n, out[0].events)
    };
    assert_eq!(wait(), (1, libc::EPOLLOUT as u32));
    assert_eq!(wait().0, 0, "edge-triggered: nothing new");
    let errqueue = || {
        let mut control = [0u8; 64];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        let r = unsafe { i.recvmsg.unwrap()(ud, fd as c_int, &mut msg, libc::MSG_ERRQUEUE) };
        if r < 0 {
            return Err(errno());
        }
        assert_eq!(msg.msg_flags, libc::MSG_ERRQUEUE);
        let c = unsafe { &*libc::CMSG_FIRSTHDR(&msg) };
        assert_eq!(
            (c.cmsg_level, c.cmsg_type),
            (libc::SOL_IP, libc::IP_RECVERR)
        );
        let d = unsafe { std::slice::from_raw_parts(libc::CMSG_DATA(c), 16) };
        let word = |o: usize| u32::from_ne_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
        assert_eq!(
            (word(0), d[4], d[6]),
            (0, 5, 1),
            "errno 0, origin ZEROCOPY, COPIED"
        );
        Ok((word(8), word(12)))
    };
    assert_eq!(errqueue(), Err(libc::EAGAIN));
    let send = |n: usize| unsafe {
        let b = vec![0u8; n];
        i.send.unwrap()(ud, fd as c_int, b.as_ptr().cast(), n, libc::MSG_ZEROCOPY)
    };
    let mut acked = 1u32;
    for _ in 0..2 {
        assert_eq!(send(1000), 1000);
        let d = pd.expect();
        assert_eq!(d.payload.len(), 1000);
        acked += 1000;
        pd.inject(&packet(
            remote,
            local,
            TcpFlags::ACK,
            1001,
            isn.wrapping_add(acked),
            1000,
            TcpOptions::default(),
            &[],
        ));
    }
    assert_eq!(pd.poll1(fd, libc::POLLERR, 0), Ok(libc::POLLERR));
    assert_eq!(
        wait(),
        (1, (libc::EPOLLOUT | libc::EPOLLERR) as u32),
        "new: completions"
    );
    assert_eq!(wait().0, 0);
    assert_eq!(errqueue(), Ok((0, 1)), "both sends, one range");
    assert_eq!(errqueue(), Err(libc::EAGAIN));
    // A send not yet acknowledged is not reported.
    assert_eq!(send(10), 10);
    let _ = pd.expect();
    assert_eq!(errqueue(), Err(libc::EAGAIN));
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        isn.wrapping_add(acked + 10),
        1000,
        TcpOptions::default(),
        &[],
    ));
    assert_eq!(errqueue(), Ok((2, 2)));
}

/// TCP_INQ: every recvmsg carries a TCP_CM_INQ control message with the bytes left to read
/// (Linux's `tcp_inq_hint`), and 1 once all is read and the peer has closed.
#[test]
fn tcp_inq_reports_the_bytes_left() {
    let pd = Pd::exact();
    let remote = SocketAddr::new(REMOTE, 40004);
    let local = SocketAddr::new(LOCAL, 8080);
    let (_l, fd, isn) = passive_open(&pd, remote);
    assert_eq!(pd.setsockopt_int(fd, libc::IPPROTO_TCP, 36, 1), Ok(0));
    assert_eq!(pd.getsockopt_int(fd, libc::IPPROTO_TCP, 36), Ok(1));
    let ack = isn.wrapping_add(1);
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::ACK,
        1001,
        ack,
        1000,
        TcpOptions::default(),
        &[7; 3000],
    ));
    let i = &pd.ifc;
    let recvmsg = |n: usize| {
        let mut data = vec![0u8; n];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: n,
        };
        let mut control = [0u8; 64];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: a msghdr with valid buffers.
        let r = unsafe { i.recvmsg.unwrap()(pd.ud(), fd as c_int, &mut msg, 0) };
        // SAFETY: the shim wrote one message.
        let c = unsafe { &*libc::CMSG_FIRSTHDR(&msg) };
        assert_eq!((c.cmsg_level, c.cmsg_type), (libc::SOL_TCP, 36));
        // SAFETY: an int follows the header.
        let v = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<c_int>()) };
        (r, v)
    };
    assert_eq!(recvmsg(1000), (1000, 2000));
    assert_eq!(recvmsg(2000), (2000, 0));
    pd.inject(&packet(
        remote,
        local,
        TcpFlags::FIN | TcpFlags::ACK,
        4001,
        ack,
        1000,
        TcpOptions::default(),
        &[],
    ));
    assert_eq!(
        recvmsg(10),
        (0, 1),
        "the end of the stream is one more read"
    );
}
