//! The shim behind the function table: one synack host (an [`Interface`] over its TCP
//! endpoint) behind a mutex, a virtual clock, a table of descriptors (sockets and epoll
//! instances) and the queue of packets the stack emitted.
//!
//! Every call takes the lock, does its work at the virtual `now`, collects what the stack wants
//! to send, and wakes the threads blocked in calls. A blocking call (`connect`, `accept`, `read`,
//! `write`, `poll`, `epoll_wait`, `close` with a linger time) evaluates its condition under the
//! lock and, when it cannot finish, waits on the condition variable *without* the lock, until
//! something changes (a packet, a timer, another call) — never by reading a clock.
//!
//! Time moves only through [`Shim::usleep`], [`Shim::gettimeofday`] (by `tick_usecs`) and
//! [`Shim::netdev_receive`] (which, when nothing is queued, lets time run to the next timer, as a
//! kernel's sniffer would wait in real time). Whenever time moves, every timer due on the way
//! fires at its own deadline, and blocked callers get to react before time moves on.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use libc::c_int;
use synack_stack::Interface;
use synack_tcp::{
    Config, ConnId, ConnectError, ConnectOptions, ConnectionError, Duration, FastOpenKey, Instant,
    Keepalive, ListenError, ListenerId, RecvError, SendError, SendFlags, State,
};

use crate::flags::ShimConfig;
use crate::route::Route;
use crate::sysctl::SysctlSource;
use crate::tcpinfo::TcpInfo;

/// `TCP_INQ`, and its control message's type `TCP_CM_INQ` (the same number).
pub const TCP_INQ: c_int = 36;
/// `SO_ZEROCOPY` (the libc crate has no Linux value for it).
const SO_ZEROCOPY: c_int = 60;
/// `SO_MEMINFO` and the number of `u32`s it returns (`SK_MEMINFO_VARS`).
const SO_MEMINFO: c_int = 55;
const SK_MEMINFO_VARS: usize = 9;

/// `gettimeofday` reads `EPOCH_USECS + now`: the virtual clock starts at 2023-11-14 22:13:20 UTC.
pub const EPOCH_USECS: u64 = 1_700_000_000 * 1_000_000;

/// The first descriptor handed out (0–2 look like stdio to scripts).
const FIRST_FD: c_int = 3;
const MAX_FDS: usize = 4096;
/// Emitted packets kept for `netdev_receive`; older ones are dropped (and counted) past this.
const MAX_OUT: usize = 65536;
/// How long (wall clock) to wait for blocked threads to react to a change. It bounds a wait
/// that normally lasts microseconds; it never measures anything.
const SETTLE_GUARD: std::time::Duration = std::time::Duration::from_secs(2);
/// How long (wall clock) to wait for a thread that returned from a blocking call to call in
/// again (packetdrill's system-call thread reads the clock right after every call).
const RETURN_GUARD: std::time::Duration = std::time::Duration::from_millis(20);
/// How long (wall clock) `netdev_receive` lets other threads act before reporting "nothing".
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(5);
/// How far the clock moves each time `netdev_receive` finds nothing will ever be sent.
const IDLE_STEP: Duration = Duration::from_millis(100);
/// Virtual time `netdev_receive` waits for a packet that nothing will send before it fails
/// the script (packetdrill's own sniffer, waiting for a real device, would time out).
const IDLE_LIMIT: Duration = Duration::from_secs(10);
/// Bound on timer steps in one advance of the clock.
const MAX_STEPS: usize = 1_000_000;
/// Timer steps that may leave the clock where it is before the timer is deemed stuck.
const MAX_STILL_STEPS: usize = 16;

/// Readiness bits; poll(2) and epoll(7) share these values on Linux.
pub const POLLIN: u32 = 0x1;
pub const POLLOUT: u32 = 0x4;
pub const POLLERR: u32 = 0x8;
pub const POLLHUP: u32 = 0x10;
pub const POLLNVAL: u32 = 0x20;
pub const POLLRDNORM: u32 = 0x40;
pub const POLLWRNORM: u32 = 0x100;
pub const POLLRDHUP: u32 = 0x2000;
const EPOLLONESHOT: u32 = 1 << 30;

/// An errno value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub c_int);

pub type SysResult<T> = Result<T, Errno>;

/// The errno an application sees for a connection's failure.
pub fn conn_errno(e: ConnectionError) -> Errno {
    Errno(match e {
        ConnectionError::Refused => libc::ECONNREFUSED,
        ConnectionError::Reset => libc::ECONNRESET,
        ConnectionError::TimedOut => libc::ETIMEDOUT,
        ConnectionError::Unreachable => libc::EHOSTUNREACH,
        ConnectionError::Aborted => libc::ECONNABORTED,
    })
}

/// Socket options as set by the application; applied to the endpoint's [`Config`] at
/// `connect`/`listen` and to the connection whenever they change.
#[derive(Debug, Clone, Default)]
pub struct SockOpts {
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub keepidle: Option<u32>,
    pub keepintvl: Option<u32>,
    pub keepcnt: Option<u32>,
    pub nodelay: bool,
    /// TCP_CORK.
    pub cork: bool,
    /// SO_MAX_PACING_RATE in bytes per second (`u32::MAX`: none).
    pub max_pacing_rate: Option<u32>,
    /// IP_FREEBIND.
    pub freebind: bool,
    /// SO_TIMESTAMPING's flags (`SOF_TIMESTAMPING_*`).
    pub timestamping: u32,
    /// TCP_NOTSENT_LOWAT; 0 is "the sysctl's".
    pub notsent_lowat: u32,
    /// TCP_USER_TIMEOUT in milliseconds; 0 is "system default".
    pub user_timeout_ms: u32,
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    pub maxseg: Option<usize>,
    /// SO_LINGER: `Some(seconds)` when `l_onoff` is set.
    pub linger: Option<i32>,
    pub v6only: bool,
    /// TCP_FASTOPEN: the listener's Fast Open queue length.
    pub fastopen_qlen: Option<usize>,
    /// TCP_FASTOPEN_CONNECT: `connect` returns at once and the first write sends the SYN
    /// with its data.
    pub fastopen_connect: bool,
    /// TCP_FASTOPEN_KEY: the listener's own key, and a backup.
    pub fastopen_key: Option<(FastOpenKey, Option<FastOpenKey>)>,
    /// TCP_FASTOPEN_NO_COOKIE (remembered; the namespace's setting applies).
    pub fastopen_no_cookie: bool,
    /// TCP_SYNCNT: SYN retransmissions before the open fails.
    pub syncnt: Option<u32>,
    /// SO_ZEROCOPY: MSG_ZEROCOPY sends report their completion on the error queue.
    pub zerocopy: bool,
    /// SO_MARK (remembered; there is no routing to mark for).
    pub mark: u32,
    /// TCP_INQ: each recvmsg reports the bytes left to read (a TCP_CM_INQ message).
    pub inq: bool,
}

impl SockOpts {
    fn keepalive_params(&self) -> Option<Keepalive> {
        let d = Keepalive::default();
        self.keepalive.then(|| Keepalive {
            idle: self
                .keepidle
                .map_or(d.idle, |s| Duration::from_secs(s.into())),
            interval: self
                .keepintvl
                .map_or(d.interval, |s| Duration::from_secs(s.into())),
            count: self.keepcnt.unwrap_or(d.count),
        })
    }

    fn user_timeout(&self) -> Option<Duration> {
        (self.user_timeout_ms > 0).then(|| Duration::from_millis(self.user_timeout_ms.into()))
    }
}

#[derive(Debug, Clone)]
enum SockKind {
    /// Made by `socket`, maybe bound, neither connecting nor listening.
    Fresh,
    /// Listening; a dual-stack socket (`AF_INET6` on `::`) listens on both families.
    Listener(Vec<ListenerId>),
    /// An active or accepted connection. `connecting`: a non-blocking `connect` is under way and
    /// its completion has not been reported (Linux's `SS_CONNECTING`).
    Conn { id: ConnId, connecting: bool },
}

#[derive(Debug, Clone)]
struct Socket {
    /// Made with `AF_INET6` (addresses are reported as IPv4-mapped IPv6 when IPv4).
    v6: bool,
    nonblock: bool,
    /// The bound (or, once connected, the local) address.
    local: Option<SocketAddr>,
    kind: SockKind,
    opts: SockOpts,
    /// The connection's error was reported once (by a call or SO_ERROR): later reads see end
    /// of stream and later writes EPIPE, as Linux clears `sk_err` once read.
    error_reported: bool,
    read_shut: bool,
    write_shut: bool,
    /// MSG_ZEROCOPY sends not yet reported: (notification id, the sequence number their
    /// data ends at), in order (Linux's `sk_zckey` counts the ids).
    zc_pending: VecDeque<(u32, synack_tcp::SeqNum)>,
    zc_next: u32,
    /// Zero-copy completions so far (for edge-triggered epoll).
    zc_done: u64,
    /// SO_TIMESTAMPING with OPT_ID: the sequence number keys count from (Linux's
    /// `sk_tskey`, SND.UNA when the option was set).
    ts_base: synack_tcp::SeqNum,
    /// Writes whose transmit or acknowledgment is still to be reported: the sequence number
    /// of each one's last byte, and whether its transmission was reported.
    ts_pending: VecDeque<(synack_tcp::SeqNum, bool)>,
    /// Timestamp reports ready on the error queue, in order.
    ts_queue: VecDeque<TsReport>,
}

/// One SO_TIMESTAMPING report (Linux's `SCM_TSTAMP_*` in a `sock_extended_err`).
#[derive(Debug, Clone, Copy)]
pub struct TsReport {
    /// `SCM_TSTAMP_SND` (0), `SCM_TSTAMP_SCHED` (1) or `SCM_TSTAMP_ACK` (2).
    pub info: u32,
    /// The key (`ee_data`): the last byte's offset from the base with OPT_ID, else 0.
    pub key: u32,
    /// When, in µs of the virtual clock since the Unix epoch.
    pub usecs: u64,
}

/// `SOF_TIMESTAMPING_*` flags Linux's TCP acts on.
const SOF_TX_SOFTWARE: u32 = 1 << 1;
const SOF_SOFTWARE: u32 = 1 << 4;
const SOF_OPT_ID: u32 = 1 << 7;
const SOF_TX_SCHED: u32 = 1 << 8;
const SOF_TX_ACK: u32 = 1 << 9;
/// The reports a socket asks for: transmit (scheduled, sent) and acknowledgment.
const SOF_TX_ANY: u32 = SOF_TX_SOFTWARE | SOF_TX_SCHED | SOF_TX_ACK;

impl Socket {
    fn new(v6: bool, nonblock: bool) -> Socket {
        Socket {
            v6,
            nonblock,
            local: None,
            kind: SockKind::Fresh,
            opts: SockOpts::default(),
            error_reported: false,
            read_shut: false,
            write_shut: false,
            zc_pending: VecDeque::new(),
            zc_next: 0,
            zc_done: 0,
            ts_base: synack_tcp::SeqNum(0),
            ts_pending: VecDeque::new(),
            ts_queue: VecDeque::new(),
        }
    }

    /// The zero-copy notifications whose data is all acknowledged (or whose connection is
    /// gone): the range of ids `[first, last]` ready on the error queue.
    fn zc_ready(&self, tcp: &synack_tcp::Endpoint) -> Option<(u32, u32)> {
        let conn = self.conn_id().and_then(|id| tcp.conn(id));
        let done = |end: synack_tcp::SeqNum| {
            conn.is_none_or(|c| c.state() == State::Closed || c.snd_una().ge(end))
        };
        let mut it = self.zc_pending.iter().take_while(|&&(_, end)| done(end));
        let first = it.next()?.0;
        let last = it.last().map_or(first, |&(id, _)| id);
        Some((first, last))
    }

    fn conn_id(&self) -> Option<ConnId> {
        match self.kind {
            SockKind::Conn { id, .. } => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Epoll {
    /// fd → (event mask, user data).
    interest: BTreeMap<c_int, (u32, u64)>,
    /// EPOLLET entries: the socket's events as last reported (see `Inner::events_of`).
    edge: BTreeMap<c_int, [u64; 5]>,
}

const EPOLLET: u32 = 1 << 31;

#[derive(Debug, Clone)]
enum Fd {
    Socket(Box<Socket>),
    Epoll(Epoll),
}

/// A thread blocked in a call.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    /// The change count it last evaluated its condition at.
    seen: u64,
    /// Its virtual timeout (poll, epoll_wait, linger).
    deadline: Option<Instant>,
}

/// One emitted packet and the virtual time it left.
type Emitted = (Vec<u8>, Instant);

pub(crate) struct Inner {
    iface: Interface,
    /// The endpoint configuration from the flags, restored after per-socket settings.
    base: Config,
    now: Instant,
    out: VecDeque<Emitted>,
    out_dropped: u64,
    fds: BTreeMap<c_int, Fd>,
    /// Counts changes; blocked threads re-evaluate when it moves.
    epoch: u64,
    waiters: HashMap<u64, Waiter>,
    next_waiter: u64,
    /// Threads that just returned from a blocking call and have not called in since: the clock
    /// must not move before they read it.
    returning: HashSet<libc::pid_t>,
    next_port: u16,
    closed: bool,
    /// Where the namespace's TCP settings are read from.
    sysctl: SysctlSource,
    /// Descriptor numbers are real descriptors of the process (see `alloc_fd`).
    real_fds: bool,
    /// The real descriptors held, and their inodes.
    reserved: HashMap<c_int, (u64, u64)>,
    /// Real descriptors set aside because their number was still in use in our table.
    stale: Vec<c_int>,
    /// Since when `netdev_receive` has found nothing left to send.
    idle_since: Option<Instant>,
    /// The initial window the flags set (a route's `initcwnd` overrides it).
    flags_iw: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close what is still ours (the same inode: not a number someone reused since).
        for (fd, ino) in std::mem::take(&mut self.reserved) {
            if inode_of(fd) == Some(ino) {
                // SAFETY: the memfd we opened.
                unsafe { libc::close(fd) };
            }
        }
        for fd in std::mem::take(&mut self.stale) {
            // SAFETY: opened here and never handed out.
            unsafe { libc::close(fd) };
        }
    }
}

/// The device and inode of a descriptor, if it is open.
fn inode_of(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat writes a `stat` and reads nothing else; a bad descriptor is an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid `stat` to write to.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Where a `sendto`/`sendmsg` names its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Addr(SocketAddr),
    /// `AF_UNSPEC`: Linux refuses Fast Open to it (EOPNOTSUPP).
    Unspec,
}

/// Return early from a blocking condition with an error.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        }
    };
}

fn sock(fds: &BTreeMap<c_int, Fd>, fd: c_int) -> SysResult<&Socket> {
    match fds.get(&fd) {
        Some(Fd::Socket(s)) => Ok(s),
        Some(Fd::Epoll(_)) => Err(Errno(libc::ENOTSOCK)),
        None => Err(Errno(libc::EBADF)),
    }
}

fn sock_mut(fds: &mut BTreeMap<c_int, Fd>, fd: c_int) -> SysResult<&mut Socket> {
    match fds.get_mut(&fd) {
        Some(Fd::Socket(s)) => Ok(s),
        Some(Fd::Epoll(_)) => Err(Errno(libc::ENOTSOCK)),
        None => Err(Errno(libc::EBADF)),
    }
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl Inner {
    /// Take every packet the stack has due now.
    fn collect(&mut self) {
        let now = self.now;
        let Inner {
            iface,
            out,
            out_dropped,
            ..
        } = self;
        let mut peers: Vec<IpAddr> = Vec::new();
        iface.transmit(now, &mut |p: &[u8]| {
            if out.len() >= MAX_OUT {
                out.pop_front();
                *out_dropped += 1;
            }
            if let Some(dst) = packet_addr(p, false) {
                if !peers.contains(&dst) {
                    peers.push(dst);
                }
            }
            out.push_back((p.to_vec(), now));
        });
        for peer in peers {
            self.route_after_transmit(peer);
        }
        self.stamp();
    }

    /// The route to `peer` as the namespace has it now, when the namespace's settings are
    /// read (the `sysctl` flag).
    fn route_to(&self, peer: IpAddr) -> Option<Route> {
        self.sysctl.root.as_ref()?;
        Route::lookup(peer)
    }

    /// Apply the route to `peer` to new connections (Linux looks its route up when a SYN
    /// arrives and at `connect`).
    fn refresh_route(&mut self, peer: IpAddr) {
        if let Some(r) = self.route_to(peer) {
            r.apply(&mut self.base, self.flags_iw);
            r.apply(self.iface.tcp_mut().config_mut(), self.flags_iw);
        }
    }

    /// Packets went out to `peer`: a Linux socket checks its cached route as it transmits
    /// (`__sk_dst_check`) and so learns of a changed path MTU, which its next write or
    /// acknowledgment applies. Tell the connections to `peer` the same.
    fn route_after_transmit(&mut self, peer: IpAddr) {
        let Some(r) = self.route_to(peer) else {
            return;
        };
        let mtu = r.mtu.map_or(self.base.mtu, |m| m as usize);
        let now = self.now;
        let tcp = self.iface.tcp_mut();
        let ids: Vec<_> = tcp
            .connections()
            .filter(|&id| {
                tcp.conn(id).is_some_and(|c| {
                    c.tuple().remote.ip() == peer && c.path_mtu().is_some_and(|m| m != mtu)
                })
            })
            .collect();
        for id in ids {
            tcp.with_conn(now, id, |c| c.set_path_mtu(mtu));
        }
    }

    /// SO_TIMESTAMPING: report the writes whose last byte went out (`SCM_TSTAMP_SCHED`,
    /// `SCM_TSTAMP_SND`: the first transmission; no qdisc or device delays here) or was
    /// acknowledged (`SCM_TSTAMP_ACK`) since the last look, at the current time.
    fn stamp(&mut self) {
        let usecs = EPOCH_USECS + self.now.as_micros();
        let Inner { fds, iface, .. } = self;
        for f in fds.values_mut() {
            let Fd::Socket(s) = f else { continue };
            if s.ts_pending.is_empty() {
                continue;
            }
            let flags = s.opts.timestamping;
            let conn = s.conn_id().and_then(|id| iface.tcp().conn(id));
            let Some(c) = conn else {
                s.ts_pending.clear();
                continue;
            };
            let (snd_max, snd_una) = (c.snd_max(), c.snd_una());
            let base = s.ts_base;
            let key = |last: synack_tcp::SeqNum| {
                if flags & SOF_OPT_ID != 0 {
                    last.0.wrapping_sub(base.0)
                } else {
                    0
                }
            };
            for (last, sent) in s.ts_pending.iter_mut() {
                if !*sent && last.lt(snd_max) {
                    *sent = true;
                    for (bit, info) in [(SOF_TX_SCHED, 1), (SOF_TX_SOFTWARE, 0)] {
                        if flags & bit != 0 {
                            s.ts_queue.push_back(TsReport {
                                info,
                                key: key(*last),
                                usecs,
                            });
                        }
                    }
                }
            }
            while let Some(&(last, true)) = s.ts_pending.front() {
                if !last.lt(snd_una) {
                    break;
                }
                s.ts_pending.pop_front();
                if flags & SOF_TX_ACK != 0 {
                    s.ts_queue.push_back(TsReport {
                        info: 2,
                        key: key(last),
                        usecs,
                    });
                }
            }
        }
    }

    /// Something may have changed: collect output and let blocked callers look again.
    fn touch(&mut self) {
        self.collect();
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// A descriptor number for a new socket or epoll instance. With `real_fds`, a real
    /// descriptor of the process (a memfd, held until the descriptor is closed): the C
    /// library's `close` on it (packetdrill's teardown does that) then succeeds, and the
    /// kernel hands the number to nobody else (a script's own `open`). Otherwise the lowest
    /// number from 3 that is free in our table.
    fn alloc_fd(&mut self) -> SysResult<c_int> {
        if !self.real_fds {
            return (FIRST_FD..)
                .take(MAX_FDS)
                .find(|fd| !self.fds.contains_key(fd))
                .ok_or(Errno(libc::EMFILE));
        }
        if self.reserved.len() >= MAX_FDS {
            return Err(Errno(libc::EMFILE));
        }
        // SAFETY: a NUL-terminated name and valid flags.
        let fd =
            unsafe { libc::memfd_create(c"synack-packetdrill-fd".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Errno(libc::EMFILE));
        }
        let Some(ino) = inode_of(fd) else {
            // SAFETY: `fd` was just opened here.
            unsafe { libc::close(fd) };
            return Err(Errno(libc::EMFILE));
        };
        if self.fds.contains_key(&fd) {
            // Our table still names it: someone closed our descriptor behind our back and
            // the number came back. Keep the new one out of the way and try again.
            self.stale.push(fd);
            return self.alloc_fd();
        }
        self.reserved.insert(fd, ino);
        Ok(fd)
    }

    /// Give back the real descriptor behind `fd`, if it is still ours.
    fn release_fd(&mut self, fd: c_int) {
        if let Some(ino) = self.reserved.remove(&fd) {
            if inode_of(fd) == Some(ino) {
                // SAFETY: the descriptor is the memfd we opened (same inode).
                unsafe { libc::close(fd) };
            }
        }
    }

    /// The next moment something happens by itself: a TCP timer or a blocked call's timeout.
    fn next_event(&mut self) -> Option<Instant> {
        let timer = self.iface.poll_timeout();
        let now = self.now;
        let waiter = self
            .waiters
            .values()
            .filter_map(|w| w.deadline)
            .filter(|&d| d > now)
            .min();
        [timer, waiter].into_iter().flatten().min()
    }

    /// Every blocked call has looked at the latest change.
    fn waiters_settled(&self) -> bool {
        self.closed || self.waiters.values().all(|w| w.seen == self.epoch)
    }

    fn settled(&self) -> bool {
        self.waiters_settled() && (self.closed || self.returning.is_empty())
    }

    /// Read the namespace's TCP settings again (if a directory was named) and apply them to
    /// new sockets and to the endpoint, as the kernel reads its sysctls when it needs them.
    fn refresh_sysctls(&mut self) {
        if let Some(s) = self.sysctl.read() {
            s.apply(&mut self.base);
            s.apply(self.iface.tcp_mut().config_mut());
        }
    }

    /// An endpoint configuration with a socket's buffer and MSS settings.
    fn config_for(&self, o: &SockOpts, v6: bool) -> Config {
        let mut c = self.base.clone();
        if let Some(b) = o.rcvbuf {
            c.recv_buffer = b;
            c.window_scale = None;
        }
        if let Some(n) = o.syncnt {
            c.syn_retries = n;
        }
        if let Some(b) = o.sndbuf {
            c.send_buffer = b;
        }
        if let Some(m) = o.maxseg {
            let hdr = if v6 { 60 } else { 40 };
            c.mtu = (m + hdr).min(self.base.mtu);
        }
        c
    }

    fn ephemeral_port(&mut self) -> u16 {
        // Ports for bind(0)/listen without bind; connect's come from the endpoint (RFC 6056).
        let p = self.next_port;
        self.next_port = if p >= 32767 { 20000 } else { p + 1 };
        p
    }

    /// Apply a socket's per-connection options to its connection.
    fn apply_conn_opts(&mut self, id: ConnId, o: &SockOpts, keepalive: bool) {
        let now = self.now;
        let ka = o.keepalive_params();
        let ut = o.user_timeout();
        let nodelay = o.nodelay;
        let cork = o.cork;
        let pacing = o.max_pacing_rate;
        let lowat = match o.notsent_lowat {
            0 => self.base.notsent_lowat,
            v => Some(v as usize),
        };
        let syncnt = o.syncnt;
        self.iface.tcp_mut().with_conn(now, id, |c| {
            // Each a change only: setting TCP_NODELAY or TCP_CORK also pushes what waits,
            // which `setsockopt` asks for itself.
            if c.nodelay() != nodelay {
                c.set_nodelay(nodelay);
            }
            if c.cork() != cork {
                c.set_cork(cork);
            }
            if let Some(r) = pacing {
                c.set_max_pacing_rate((r != u32::MAX).then_some(u64::from(r)));
            }
            c.set_notsent_lowat(lowat);
            c.set_user_timeout(ut);
            if let Some(n) = syncnt {
                c.set_syn_retries(n);
            }
            if keepalive {
                c.set_keepalive(now, ka);
            }
        });
    }

    /// What has happened to a socket, as counters that only grow (bytes received, bytes
    /// acknowledged, zero-copy completions, the error, the state): an edge-triggered epoll
    /// entry reports again only when one moved (a read moves none).
    fn events_of(&self, fd: c_int) -> [u64; 5] {
        let Some(Fd::Socket(s)) = self.fds.get(&fd) else {
            return [0; 5];
        };
        let tcp = self.iface.tcp();
        match &s.kind {
            SockKind::Conn { id, .. } => tcp.conn(*id).map_or([0, 0, s.zc_done, 1, 0], |c| {
                let st = c.stats();
                [
                    st.bytes_received,
                    st.bytes_acked,
                    s.zc_done + s.zc_ready(tcp).map_or(0, |(a, b)| u64::from(b - a) + 1),
                    c.error().is_some() as u64,
                    crate::tcpinfo::linux_state(c.state()) as u64
                        + 16 * c.is_read_finished() as u64,
                ]
            }),
            SockKind::Listener(ids) => {
                [ids.iter().map(|&l| tcp.pending(l) as u64).sum(), 0, 0, 0, 0]
            }
            SockKind::Fresh => [0; 5],
        }
    }

    /// poll(2) readiness of a descriptor; `None` for an unknown one.
    fn readiness(&self, fd: c_int) -> Option<u32> {
        let s = match self.fds.get(&fd)? {
            Fd::Socket(s) => s,
            Fd::Epoll(ep) => {
                let ready = ep.interest.iter().any(|(&f, &(mask, _))| {
                    f != fd
                        && matches!(self.fds.get(&f), Some(Fd::Socket(_)))
                        && self.readiness(f).unwrap_or(0) & (mask | POLLERR | POLLHUP) != 0
                });
                return Some(if ready { POLLIN | POLLRDNORM } else { 0 });
            }
        };
        let tcp = self.iface.tcp();
        Some(match &s.kind {
            // Linux's tcp_poll on a socket in CLOSE: hung up, and writable (to fail at once).
            SockKind::Fresh => POLLOUT | POLLWRNORM | POLLHUP,
            SockKind::Listener(ids) => {
                if ids.iter().any(|&l| tcp.pending(l) > 0) {
                    POLLIN | POLLRDNORM
                } else {
                    0
                }
            }
            SockKind::Conn { id, .. } => {
                let Some(c) = tcp.conn(*id) else {
                    return Some(POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM | POLLHUP);
                };
                let st = c.state();
                let mut m = 0;
                if (c.error().is_some() && !s.error_reported) || s.zc_ready(tcp).is_some() {
                    m |= POLLERR;
                }
                let fin_in = c.is_read_finished()
                    || matches!(
                        st,
                        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                    );
                let rcv_shut = fin_in || s.read_shut || st == State::Closed;
                let snd_shut = s.write_shut
                    || matches!(
                        st,
                        State::FinWait1
                            | State::FinWait2
                            | State::Closing
                            | State::TimeWait
                            | State::LastAck
                            | State::Closed
                    );
                if c.recv_available() > 0 || rcv_shut {
                    m |= POLLIN | POLLRDNORM;
                }
                if fin_in || st == State::Closed || s.read_shut {
                    m |= POLLRDHUP;
                }
                if st == State::Closed || (rcv_shut && snd_shut) {
                    m |= POLLHUP;
                }
                // Writable once open; a Fast Open child while in SYN-RECEIVED, and a socket
                // whose SYN waits for its first write, already (as Linux's tcp_poll).
                let open = !matches!(st, State::SynSent | State::SynReceived)
                    || c.is_fast_open_child()
                    || c.is_syn_deferred();
                if open && (snd_shut || (c.send_capacity() > 0 && c.is_writable())) {
                    m |= POLLOUT | POLLWRNORM;
                }
                m
            }
        })
    }
}

/// Linux's smallest send buffer, `2 * (2048 + sizeof(struct sk_buff))` (`SOCK_MIN_SNDBUF`).
const SOCK_MIN_SNDBUF: usize = 4608;

/// What `getsockopt` returns.
pub enum OptValue {
    Int(c_int),
    Linger {
        onoff: c_int,
        secs: c_int,
    },
    /// Raw bytes (Linux's whole `struct tcp_info`, a key, `SO_MEMINFO`); the caller gets as
    /// many as it has room for.
    Bytes(Vec<u8>),
}

/// The host, its clock and its descriptors.
pub struct Shim {
    inner: Mutex<Inner>,
    cond: Condvar,
    tick: Duration,
}

impl Shim {
    pub fn new(cfg: &ShimConfig) -> Shim {
        let iface = Interface::new(cfg.tcp.clone(), &cfg.addrs, cfg.secret());
        Shim {
            inner: Mutex::new(Inner {
                iface,
                base: cfg.tcp.clone(),
                now: Instant::ZERO,
                out: VecDeque::new(),
                out_dropped: 0,
                fds: BTreeMap::new(),
                epoch: 0,
                waiters: HashMap::new(),
                next_waiter: 0,
                returning: HashSet::new(),
                next_port: 20000,
                closed: false,
                sysctl: SysctlSource {
                    root: cfg.sysctl_root.clone(),
                },
                real_fds: cfg.real_fds,
                reserved: HashMap::new(),
                stale: Vec::new(),
                idle_since: None,
                flags_iw: cfg.tcp.initial_window,
            }),
            cond: Condvar::new(),
            tick: Duration::from_micros(cfg.tick_usecs),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !g.returning.is_empty() && g.returning.remove(&thread_id()) {
            // A thread back from a blocking call: a `settle` may be waiting for it.
            self.cond.notify_all();
        }
        g
    }

    /// The lock, for bookkeeping at the end of a call that may have blocked: the thread stays
    /// marked as returning from it (a `settle` waits for its next call, which reads the clock
    /// for the return time).
    fn lock_quiet(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finish a call that changed (or may have changed) the stack.
    fn done(&self, mut g: MutexGuard<'_, Inner>) {
        g.touch();
        drop(g);
        self.cond.notify_all();
    }

    /// Wake every blocked call with EIO and refuse further blocking (the interface is being
    /// freed).
    pub fn shut(&self) {
        let mut g = self.lock();
        g.closed = true;
        drop(g);
        self.cond.notify_all();
    }

    /// Threads blocked in a call that have seen the latest change (for a driver that needs to
    /// know a call has blocked, as packetdrill reads /proc for a sleeping thread).
    pub fn blocked_calls(&self) -> usize {
        let g = self.lock();
        g.waiters.values().filter(|w| w.seen == g.epoch).count()
    }

    /// Packets emitted and not yet taken by `netdev_receive`.
    pub fn pending_packets(&self) -> usize {
        let mut g = self.lock();
        g.collect();
        g.out.len()
    }

    /// Packets dropped because nobody took them (more than the queue holds).
    pub fn dropped_packets(&self) -> u64 {
        self.lock().out_dropped
    }

    /// Run `cond` until it answers, waiting without the lock between tries. `cond` gets
    /// `timed_out = true` once the virtual clock reaches `deadline` and must answer then.
    fn block<'a, T>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        deadline: Option<Instant>,
        mut cond: impl FnMut(&mut Inner, bool) -> Option<SysResult<T>>,
    ) -> SysResult<T> {
        let id = g.next_waiter;
        g.next_waiter += 1;
        let mut waited = false;
        let result = loop {
            if g.closed {
                break Err(Errno(libc::EIO));
            }
            let timed_out = deadline.is_some_and(|d| g.now >= d);
            let before = g.epoch;
            if let Some(r) = cond(&mut g, timed_out) {
                break r;
            }
            if timed_out {
                break Err(Errno(libc::ETIMEDOUT));
            }
            if g.epoch != before {
                // The condition changed something itself (e.g. queued part of a write).
                continue;
            }
            let seen = g.epoch;
            waited = true;
            let prev = g.waiters.insert(id, Waiter { seen, deadline });
            if prev.map(|w| w.seen) != Some(seen) {
                // Tell a thread in `settle` that this one has looked.
                self.cond.notify_all();
            }
            while g.epoch == seen && !g.closed {
                g = self.cond.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
        };
        g.waiters.remove(&id);
        if waited {
            g.returning.insert(thread_id());
        }
        self.done(g);
        result
    }

    /// Wait (bounded) until every blocked call has looked at the latest change, and every
    /// thread back from one has called in again.
    fn settle<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        while !g.settled() {
            let guard = if g.waiters_settled() {
                RETURN_GUARD
            } else {
                SETTLE_GUARD
            };
            let (ng, t) = self
                .cond
                .wait_timeout(g, guard)
                .unwrap_or_else(PoisonError::into_inner);
            g = ng;
            if t.timed_out() {
                // A thread that does not call back is not waited for twice.
                g.returning.clear();
                break;
            }
        }
        g
    }

    /// Move the clock to `target`, stopping at every timer and timeout on the way.
    fn advance_to<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        target: Instant,
    ) -> MutexGuard<'a, Inner> {
        // Calls woken by the last change (a packet injected) act at the time it happened,
        // before the clock moves on: a blocking call returns when it would have.
        if target > g.now {
            g = self.settle(g);
        }
        let mut still = 0;
        for _ in 0..MAX_STEPS {
            match g.next_event() {
                Some(t) if t <= target => {
                    if t > g.now {
                        g.now = t;
                        still = 0;
                    } else {
                        // A timer at or before now: handled below. One that stays due after
                        // being handled would stop the clock for good: step over it.
                        still += 1;
                        if still > MAX_STILL_STEPS {
                            break;
                        }
                    }
                    let now = g.now;
                    g.iface.handle_timeout(now);
                    g.touch();
                    self.cond.notify_all();
                    g = self.settle(g);
                }
                _ => break,
            }
        }
        if target > g.now {
            g.now = target;
            g.touch();
            self.cond.notify_all();
            g = self.settle(g);
        }
        g
    }

    // -----------------------------------------------------------------------------------------
    // Clock and netdev.

    /// The virtual clock in microseconds since the Unix epoch. Each read moves it by
    /// `tick_usecs` (see [`crate::flags`]).
    pub fn gettimeofday(&self) -> u64 {
        let mut g = self.lock();
        if !self.tick.is_zero() {
            g.now += self.tick;
            let now = g.now;
            let timer_due = g.iface.poll_timeout().is_some_and(|t| t <= now);
            let waiter_due = g
                .waiters
                .values()
                .any(|w| w.deadline.is_some_and(|d| d <= now));
            if timer_due {
                g.iface.handle_timeout(now);
            }
            let t = EPOCH_USECS + now.as_micros();
            if timer_due || waiter_due {
                self.done(g);
            }
            return t;
        }
        EPOCH_USECS + g.now.as_micros()
    }

    /// The virtual clock without moving it.
    pub fn now(&self) -> Instant {
        self.lock().now
    }

    /// Let `usec` microseconds of virtual time pass.
    pub fn usleep(&self, usec: u64) {
        let g = self.lock();
        let target = g.now + Duration::from_micros(usec);
        let g = self.advance_to(g, target);
        drop(g);
    }

    /// Inject one IP packet into the stack.
    pub fn netdev_send(&self, packet: &[u8]) -> SysResult<()> {
        if packet.is_empty() {
            return Err(Errno(libc::EINVAL));
        }
        let mut g = self.lock();
        g.refresh_sysctls();
        if let Some(peer) = packet_addr(packet, true) {
            g.refresh_route(peer);
        }
        let now = g.now;
        g.iface.receive(now, packet);
        self.done(g);
        Ok(())
    }

    /// The next packet the stack emitted and its time (µs since the Unix epoch), or `None`.
    /// When none is queued, blocked calls get to act first, then time runs to the next timer
    /// until a packet comes out or nothing is left to happen.
    pub fn netdev_receive(&self, buf: &mut [u8]) -> SysResult<Option<(usize, u64)>> {
        let mut g = self.lock();
        g.collect();
        if g.out.is_empty() {
            g = self.settle(g);
            g.collect();
        }
        let mut still = 0;
        while g.out.is_empty() && !g.closed && still <= MAX_STILL_STEPS {
            let Some(t) = g.next_event() else { break };
            let before = g.now;
            g = self.advance_to(g, t.max(before));
            g.collect();
            if g.now == before {
                still += 1;
            }
        }
        if g.out.is_empty() {
            let (ng, _) = self
                .cond
                .wait_timeout(g, IDLE_WAIT)
                .unwrap_or_else(PoisonError::into_inner);
            g = ng;
            g.collect();
        }
        if g.out.is_empty() && !g.closed && g.next_event().is_none() {
            // Nothing will ever be sent, yet a packet is awaited: as a kernel's sniffer would
            // wait in real time, time passes; and since packetdrill's shared-object netdev
            // waits without a timeout, after IDLE_LIMIT of it we hand it a packet it cannot
            // parse, so that the script fails there rather than hang.
            let now = g.now;
            let since = *g.idle_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= IDLE_LIMIT {
                g.idle_since = None;
                eprintln!(
                    "synack-packetdrill: a packet is awaited but the stack has nothing left to \
                     send ({} s of virtual time idle): failing the script instead of hanging",
                    IDLE_LIMIT.as_secs()
                );
                buf[0] = 0;
                return Ok(Some((1, EPOCH_USECS + now.as_micros())));
            }
            g = self.advance_to(g, now + IDLE_STEP);
            g.collect();
        }
        let Some((p, t)) = g.out.pop_front() else {
            return Ok(None);
        };
        g.idle_since = None;
        if p.len() > buf.len() {
            return Err(Errno(libc::EMSGSIZE));
        }
        buf[..p.len()].copy_from_slice(&p);
        Ok(Some((p.len(), EPOCH_USECS + t.as_micros())))
    }

    // -----------------------------------------------------------------------------------------
    // Sockets.

    pub fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> SysResult<c_int> {
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            return Err(Errno(libc::EAFNOSUPPORT));
        }
        if ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != libc::SOCK_STREAM {
            return Err(Errno(libc::EPROTONOSUPPORT));
        }
        if protocol != 0 && protocol != libc::IPPROTO_TCP {
            return Err(Errno(libc::EPROTONOSUPPORT));
        }
        let mut g = self.lock();
        g.refresh_sysctls();
        let fd = g.alloc_fd()?;
        let s = Socket::new(domain == libc::AF_INET6, ty & libc::SOCK_NONBLOCK != 0);
        g.fds.insert(fd, Fd::Socket(Box::new(s)));
        Ok(fd)
    }

    pub fn bind(&self, fd: c_int, addr: SocketAddr) -> SysResult<()> {
        let mut g = self.lock();
        let inner = &mut *g;
        let s = sock(&inner.fds, fd)?;
        if s.local.is_some() || !matches!(s.kind, SockKind::Fresh) {
            return Err(Errno(libc::EINVAL));
        }
        if !s.v6 && addr.is_ipv6() {
            return Err(Errno(libc::EAFNOSUPPORT));
        }
        if !addr.ip().is_unspecified() && !inner.iface.addrs().contains(&addr.ip()) {
            return Err(Errno(libc::EADDRNOTAVAIL));
        }
        let reuse = s.opts.reuseaddr || s.opts.reuseport;
        if addr.port() != 0 {
            let clash = inner.fds.iter().any(|(&other, f)| {
                let Fd::Socket(o) = f else { return false };
                let Some(l) = o.local else { return false };
                other != fd
                    && l.port() == addr.port()
                    && (l.ip() == addr.ip()
                        || l.ip().is_unspecified()
                        || addr.ip().is_unspecified())
                    && (matches!(o.kind, SockKind::Listener(_))
                        || !(reuse && (o.opts.reuseaddr || o.opts.reuseport)))
            });
            if clash {
                return Err(Errno(libc::EADDRINUSE));
            }
        }
        let port = if addr.port() == 0 {
            inner.ephemeral_port()
        } else {
            addr.port()
        };
        sock_mut(&mut inner.fds, fd)?.local = Some(SocketAddr::new(addr.ip(), port));
        Ok(())
    }

    pub fn listen(&self, fd: c_int, backlog: c_int) -> SysResult<()> {
        let mut g = self.lock();
        g.refresh_sysctls();
        let inner = &mut *g;
        let s = sock(&inner.fds, fd)?.clone();
        match s.kind {
            SockKind::Listener(_) => return Ok(()),
            SockKind::Conn { .. } => return Err(Errno(libc::EINVAL)),
            SockKind::Fresh => {}
        }
        let local = match s.local {
            Some(a) => a,
            None => SocketAddr::new(unspecified(s.v6), inner.ephemeral_port()),
        };
        // Linux lets backlog+1 connections wait (capped by somaxconn, 4096).
        let arg = backlog.clamp(0, 4096) as usize;
        let backlog = arg.min(4095) + 1;
        // Fast Open on this listener: the socket option's queue length, else (with the
        // namespace's `TFO_SERVER_WO_SOCKOPT1`) the listen backlog, as Linux's inet_listen.
        let fo = inner.base.fast_open;
        let fo_qlen = s
            .opts
            .fastopen_qlen
            .unwrap_or(if fo.server && fo.server_all_listeners {
                arg
            } else {
                0
            });
        let mut addrs = vec![local];
        if s.v6 && local.ip().is_unspecified() && !s.opts.v6only {
            addrs.push(SocketAddr::new(unspecified(false), local.port()));
        }
        let config = inner.config_for(&s.opts, false);
        // Connections made on this listener's SYNs copy the endpoint configuration then: a
        // listener's buffer and MSS settings apply endpoint-wide until the next listen/connect.
        *inner.iface.tcp_mut().config_mut() = config;
        let mut ids = Vec::new();
        for a in addrs {
            match inner.iface.tcp_mut().listen(a, backlog) {
                Ok(l) => {
                    let tcp = inner.iface.tcp_mut();
                    tcp.set_fast_open(l, fo_qlen);
                    if let Some((k, backup)) = s.opts.fastopen_key {
                        tcp.set_fast_open_key(l, k, backup);
                    }
                    ids.push(l)
                }
                Err(e) => {
                    for l in ids {
                        inner.iface.tcp_mut().unlisten(l);
                    }
                    return Err(Errno(match e {
                        ListenError::AddrInUse => libc::EADDRINUSE,
                        ListenError::InvalidPort => libc::EINVAL,
                    }));
                }
            }
        }
        let s = sock_mut(&mut inner.fds, fd)?;
        s.local = Some(local);
        s.kind = SockKind::Listener(ids);
        Ok(())
    }

    /// Returns the new descriptor, the peer's address and whether the listener is `AF_INET6`.
    pub fn accept(&self, fd: c_int) -> SysResult<(c_int, SocketAddr, bool)> {
        let g = self.lock();
        self.block(g, None, |inner, _| {
            let s = tri!(sock(&inner.fds, fd));
            let SockKind::Listener(ids) = &s.kind else {
                return Some(Err(Errno(libc::EINVAL)));
            };
            let (ids, nonblock, v6, opts) = (ids.clone(), s.nonblock, s.v6, s.opts.clone());
            for l in ids {
                if inner.iface.tcp().pending(l) == 0 {
                    continue;
                }
                let newfd = tri!(inner.alloc_fd());
                let Some(id) = inner.iface.tcp_mut().accept(l) else {
                    inner.release_fd(newfd);
                    continue;
                };
                let Some(tuple) = inner.iface.tcp().conn(id).map(|c| c.tuple()) else {
                    inner.release_fd(newfd);
                    continue;
                };
                let mut ns = Socket::new(v6, false);
                ns.local = Some(tuple.local);
                ns.kind = SockKind::Conn {
                    id,
                    connecting: false,
                };
                ns.opts = opts.clone();
                inner.fds.insert(newfd, Fd::Socket(Box::new(ns)));
                inner.apply_conn_opts(id, &opts, opts.keepalive);
                inner.touch();
                return Some(Ok((newfd, tuple.remote, v6)));
            }
            if nonblock {
                Some(Err(Errno(libc::EAGAIN)))
            } else {
                None
            }
        })
    }

    pub fn connect(&self, fd: c_int, remote: SocketAddr) -> SysResult<()> {
        let mut g = self.lock();
        g.refresh_sysctls();
        let inner = &mut *g;
        let s = sock(&inner.fds, fd)?.clone();
        match s.kind {
            SockKind::Listener(_) => return Err(Errno(libc::EISCONN)),
            SockKind::Conn {
                connecting: false, ..
            } => return Err(Errno(libc::EISCONN)),
            SockKind::Conn {
                id,
                connecting: true,
            } => {
                // A SYN held for the first write (TCP_FASTOPEN_CONNECT): Linux says EISCONN.
                if inner
                    .iface
                    .tcp()
                    .conn(id)
                    .is_some_and(|c| c.is_syn_deferred())
                {
                    return Err(Errno(libc::EISCONN));
                }
                if s.nonblock {
                    // Linux's __inet_stream_connect in SS_CONNECTING: EALREADY while the
                    // handshake runs, 0 once it is done, the error once it failed.
                    let r = self.connect_outcome(inner, fd);
                    let r = r.unwrap_or(Err(Errno(libc::EALREADY)));
                    self.done(g);
                    return r;
                }
                return self.block(g, None, |inner, _| self.connect_outcome(inner, fd));
            }
            SockKind::Fresh => {}
        }
        // TCP_FASTOPEN_CONNECT: with a cookie cached (or none needed) the SYN waits for the
        // first write and connect returns at once; without, the SYN asks for a cookie now.
        let options = ConnectOptions {
            fast_open: s.opts.fastopen_connect,
            defer_syn: true,
        };
        let id = Self::open(inner, fd, &s, remote, options)?;
        if inner
            .iface
            .tcp()
            .conn(id)
            .is_some_and(|c| c.is_syn_deferred())
        {
            return Ok(());
        }
        if s.nonblock {
            self.done(g);
            return Err(Errno(libc::EINPROGRESS));
        }
        g.touch();
        self.cond.notify_all();
        self.block(g, None, |inner, _| self.connect_outcome(inner, fd))
    }

    /// Start an active open for socket `fd` (a snapshot of it is `s`) to `remote`; the socket
    /// is then connecting.
    fn open(
        inner: &mut Inner,
        fd: c_int,
        s: &Socket,
        remote: SocketAddr,
        options: ConnectOptions,
    ) -> SysResult<ConnId> {
        if !s.v6 && remote.is_ipv6() {
            return Err(Errno(libc::EAFNOSUPPORT));
        }
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(Errno(libc::ECONNREFUSED));
        }
        let local_ip = match s.local {
            Some(a) if !a.ip().is_unspecified() => {
                if a.is_ipv4() != remote.is_ipv4() {
                    return Err(Errno(libc::EINVAL));
                }
                a.ip()
            }
            _ => inner
                .iface
                .addr_for(remote.ip())
                .ok_or(Errno(libc::ENETUNREACH))?,
        };
        let local_port = s.local.map(|a| a.port()).filter(|&p| p != 0);
        inner.refresh_route(remote.ip());
        let config = inner.config_for(&s.opts, remote.is_ipv6());
        let now = inner.now;
        let tcp = inner.iface.tcp_mut();
        *tcp.config_mut() = config;
        let r = tcp.connect_with(now, local_ip, local_port, remote, options);
        *tcp.config_mut() = inner.base.clone();
        let id = r.map_err(|e| {
            Errno(match e {
                ConnectError::NoEphemeralPort => libc::EADDRNOTAVAIL,
                ConnectError::AddrInUse => libc::EADDRINUSE,
                ConnectError::InvalidAddress => libc::EINVAL,
                ConnectError::TooManyConnections => libc::EMFILE,
                ConnectError::NoBuffers => libc::ENOBUFS,
            })
        })?;
        let local = inner.iface.tcp().conn(id).map(|c| c.tuple().local);
        inner.apply_conn_opts(id, &s.opts, s.opts.keepalive);
        let sm = sock_mut(&mut inner.fds, fd)?;
        sm.local = local;
        sm.kind = SockKind::Conn {
            id,
            connecting: true,
        };
        Ok(id)
    }

    /// sendto(2)/sendmsg(2): `fastopen` is MSG_FASTOPEN, `dest` the address passed. With
    /// MSG_FASTOPEN on an unconnected socket, or any write on one whose SYN waits for data
    /// (TCP_FASTOPEN_CONNECT), this is Linux's `tcp_sendmsg_fastopen`: the SYN leaves with as
    /// much of the data as it may carry (RFC 7413 §4.2.1). A non-blocking call returns that
    /// count (or EINPROGRESS when the SYN carries none: it asks for a cookie); a blocking one
    /// waits for the handshake and writes the rest. Otherwise it is `send`.
    pub fn send_msg(
        &self,
        fd: c_int,
        data: &[u8],
        dontwait: bool,
        fastopen: bool,
        dest: Option<Dest>,
        flags: SendFlags,
    ) -> SysResult<usize> {
        let n = self.send_msg_inner(fd, data, dontwait, fastopen, dest, flags)?;
        if n > 0 {
            self.tx_timestamp(fd);
        }
        Ok(n)
    }

    /// SO_TIMESTAMPING: after a write, its last byte is to be reported when sent and when
    /// acknowledged (Linux's `tcp_tx_timestamp`).
    fn tx_timestamp(&self, fd: c_int) {
        let mut g = self.lock_quiet();
        let inner = &mut *g;
        let Ok(s) = sock(&inner.fds, fd) else { return };
        if s.opts.timestamping & SOF_TX_ANY == 0 || s.opts.timestamping & SOF_SOFTWARE == 0 {
            return;
        }
        let Some(end) = s
            .conn_id()
            .and_then(|id| inner.iface.tcp().conn(id))
            .map(|c| c.write_seq())
        else {
            return;
        };
        if let Ok(s) = sock_mut(&mut inner.fds, fd) {
            s.ts_pending.push_back((end - 1, false));
        }
        // It may have gone out already.
        inner.stamp();
    }

    /// recvmsg(MSG_ERRQUEUE) for SO_TIMESTAMPING: the next report, and whether the socket is
    /// `AF_INET6`; `None` when none waits.
    pub fn recv_timestamp(&self, fd: c_int) -> SysResult<Option<(TsReport, bool)>> {
        let mut g = self.lock();
        let s = sock_mut(&mut g.fds, fd)?;
        Ok(s.ts_queue.pop_front().map(|r| (r, s.v6)))
    }

    fn send_msg_inner(
        &self,
        fd: c_int,
        data: &[u8],
        dontwait: bool,
        fastopen: bool,
        dest: Option<Dest>,
        flags: SendFlags,
    ) -> SysResult<usize> {
        let mut g = self.lock();
        g.refresh_sysctls();
        let inner = &mut *g;
        let s = sock(&inner.fds, fd)?.clone();
        let deferred = s
            .conn_id()
            .and_then(|id| inner.iface.tcp().conn(id))
            .is_some_and(|c| c.is_syn_deferred());
        if !fastopen && !deferred {
            drop(g);
            return self.send_plain(fd, data, dontwait, flags);
        }
        if !inner.base.fast_open.client || dest == Some(Dest::Unspec) {
            return Err(Errno(libc::EOPNOTSUPP));
        }
        let nonblock = s.nonblock || dontwait;
        let id = match s.kind {
            SockKind::Listener(_) => return Err(Errno(libc::EPIPE)),
            SockKind::Conn { id, connecting } if !deferred => {
                let opening = inner
                    .iface
                    .tcp()
                    .conn(id)
                    .is_some_and(|c| matches!(c.state(), State::SynSent | State::SynReceived));
                if connecting && opening && nonblock {
                    return Err(Errno(libc::EALREADY));
                }
                drop(g);
                return self.send_plain(fd, data, dontwait, flags);
            }
            SockKind::Conn { id, .. } => id,
            SockKind::Fresh => {
                let Some(Dest::Addr(remote)) = dest else {
                    return Err(Errno(libc::EDESTADDRREQ));
                };
                let options = ConnectOptions {
                    fast_open: true,
                    defer_syn: false,
                };
                Self::open(inner, fd, &s, remote, options)?
            }
        };
        let now = inner.now;
        let tcp = inner.iface.tcp_mut();
        let room = tcp.conn(id).and_then(|c| c.fast_open_syn_room());
        if nonblock {
            let n = room.map_or(0, |r| r.min(data.len()));
            // Queueing (even nothing) releases a held SYN; it leaves at `done`.
            tcp.with_conn(now, id, |c| c.send_with(&data[..n], flags));
            self.done(g);
            return if n > 0 {
                Ok(n)
            } else {
                Err(Errno(libc::EINPROGRESS))
            };
        }
        let queued = match tcp.with_conn(now, id, |c| c.send_with(data, flags)) {
            Some(Ok(n)) => n,
            _ => 0,
        };
        g.touch();
        self.cond.notify_all();
        self.block(g, None, |inner, _| self.connect_outcome(inner, fd))?;
        if queued == data.len() {
            return Ok(queued);
        }
        match self.send_plain(fd, &data[queued..], dontwait, flags) {
            Ok(n) => Ok(queued + n),
            Err(_) if queued > 0 => Ok(queued),
            Err(e) => Err(e),
        }
    }

    /// The outcome of a connect under way, or `None` while the handshake runs.
    fn connect_outcome(&self, inner: &mut Inner, fd: c_int) -> Option<SysResult<()>> {
        let s = tri!(sock_mut(&mut inner.fds, fd));
        let SockKind::Conn { id, .. } = s.kind else {
            return Some(Err(Errno(libc::EBADF)));
        };
        let (state, err) = match inner.iface.tcp().conn(id) {
            Some(c) => (c.state(), c.error()),
            None => (State::Closed, None),
        };
        match state {
            State::SynSent | State::SynReceived if err.is_none() => None,
            State::Closed => {
                // Failed: report the error and let the socket connect again (Linux moves it
                // back to SS_UNCONNECTED).
                let e = if s.error_reported {
                    Errno(libc::ECONNABORTED)
                } else {
                    err.map_or(Errno(libc::ECONNABORTED), conn_errno)
                };
                s.kind = SockKind::Fresh;
                s.error_reported = false;
                inner.iface.tcp_mut().release(id);
                Some(Err(e))
            }
            _ => {
                s.kind = SockKind::Conn {
                    id,
                    connecting: false,
                };
                Some(Ok(()))
            }
        }
    }

    /// recv(2): `peek` leaves the bytes queued; `dontwait` is MSG_DONTWAIT.
    pub fn recv(&self, fd: c_int, buf: &mut [u8], peek: bool, dontwait: bool) -> SysResult<usize> {
        let g = self.lock();
        self.block(g, None, |inner, _| {
            let now = inner.now;
            let Inner { fds, iface, .. } = inner;
            let s = tri!(sock_mut(fds, fd));
            let nonblock = s.nonblock || dontwait;
            let Some(id) = s.conn_id() else {
                return Some(Err(Errno(libc::ENOTCONN)));
            };
            let Some(c) = iface.tcp().conn(id) else {
                return Some(Ok(0));
            };
            if buf.is_empty() {
                return Some(Ok(0));
            }
            if peek {
                let n = c.peek(buf);
                if n > 0 {
                    return Some(Ok(n));
                }
                if let Some(e) = c.error() {
                    if !s.error_reported {
                        s.error_reported = true;
                        return Some(Err(conn_errno(e)));
                    }
                    return Some(Ok(0));
                }
                if c.is_read_finished() || c.state() == State::Closed || s.read_shut {
                    return Some(Ok(0));
                }
            } else {
                match iface.tcp_mut().with_conn(now, id, |c| c.recv(buf)) {
                    Some(Ok(0)) => {}
                    Some(Ok(n)) => {
                        inner.touch();
                        return Some(Ok(n));
                    }
                    Some(Err(RecvError::Finished)) | None => return Some(Ok(0)),
                    Some(Err(RecvError::Connection(e))) => {
                        if s.error_reported {
                            return Some(Ok(0));
                        }
                        s.error_reported = true;
                        return Some(Err(conn_errno(e)));
                    }
                    Some(Err(RecvError::InvalidState)) => {
                        return Some(if s.read_shut || c_closed(iface, id) {
                            Ok(0)
                        } else {
                            Err(Errno(libc::ENOTCONN))
                        });
                    }
                }
                if s.read_shut {
                    return Some(Ok(0));
                }
            }
            if nonblock {
                Some(Err(Errno(libc::EAGAIN)))
            } else {
                None
            }
        })
    }

    /// send(2). A blocking socket queues every byte (waiting for room); a non-blocking one
    /// queues what fits, or fails with EAGAIN. Before the handshake ends, a blocking send waits
    /// for it (Linux's sk_stream_wait_connect).
    pub fn send(
        &self,
        fd: c_int,
        data: &[u8],
        dontwait: bool,
        flags: SendFlags,
    ) -> SysResult<usize> {
        self.send_msg(fd, data, dontwait, false, None, flags)
    }

    /// `send` on a socket that is no Fast Open case.
    fn send_plain(
        &self,
        fd: c_int,
        data: &[u8],
        dontwait: bool,
        flags: SendFlags,
    ) -> SysResult<usize> {
        let g = self.lock();
        let mut written = 0usize;
        self.block(g, None, |inner, _| {
            let now = inner.now;
            let Inner { fds, iface, .. } = inner;
            let s = tri!(sock_mut(fds, fd));
            let nonblock = s.nonblock || dontwait;
            if s.write_shut {
                return Some(Err(Errno(libc::EPIPE)));
            }
            // Linux answers EPIPE for a TCP socket that is not connected.
            let Some(id) = s.conn_id() else {
                return Some(Err(Errno(libc::EPIPE)));
            };
            let Some(c) = iface.tcp().conn(id) else {
                return Some(Err(Errno(libc::EPIPE)));
            };
            if let Some(e) = c.error() {
                if written > 0 {
                    return Some(Ok(written));
                }
                if s.error_reported {
                    return Some(Err(Errno(libc::EPIPE)));
                }
                s.error_reported = true;
                return Some(Err(conn_errno(e)));
            }
            // A Fast Open child may send before the handshake's ACK (RFC 7413 §4.2.2).
            if matches!(c.state(), State::SynSent | State::SynReceived) && !c.is_fast_open_child() {
                return if nonblock {
                    Some(Err(Errno(libc::EAGAIN)))
                } else {
                    None
                };
            }
            if data.is_empty() {
                return Some(Ok(0));
            }
            // An explicit SO_SNDBUF bounds what is queued as Linux accounts it: the value
            // doubled (at least SOCK_MIN_SNDBUF), each write-queue buffer charged its overhead.
            let rest = &data[written..];
            let n = s.opts.sndbuf.map_or(rest.len(), |b| {
                c.send_room_linux((2 * b).max(SOCK_MIN_SNDBUF), rest.len())
            });
            match iface
                .tcp_mut()
                .with_conn(now, id, |c| c.send_with(&rest[..n], flags))
            {
                Some(Ok(n)) => {
                    written += n;
                    if n > 0 {
                        inner.touch();
                    }
                    if written == data.len() || (nonblock && written > 0) {
                        Some(Ok(written))
                    } else if nonblock {
                        Some(Err(Errno(libc::EAGAIN)))
                    } else {
                        None
                    }
                }
                Some(Err(SendError::Connection(e))) if written == 0 => {
                    s.error_reported = true;
                    Some(Err(conn_errno(e)))
                }
                Some(Err(_)) | None if written > 0 => Some(Ok(written)),
                Some(Err(_)) | None => Some(Err(Errno(libc::EPIPE))),
            }
        })
    }

    pub fn close(&self, fd: c_int) -> SysResult<()> {
        let mut g = self.lock();
        let inner = &mut *g;
        let f = inner.fds.remove(&fd).ok_or(Errno(libc::EBADF))?;
        inner.release_fd(fd);
        for other in inner.fds.values_mut() {
            if let Fd::Epoll(ep) = other {
                ep.interest.remove(&fd);
            }
        }
        let Fd::Socket(s) = f else {
            self.done(g);
            return Ok(());
        };
        let now = inner.now;
        let tcp = inner.iface.tcp_mut();
        match s.kind {
            SockKind::Fresh => {}
            SockKind::Listener(ids) => {
                for l in ids {
                    tcp.unlisten(l);
                }
            }
            SockKind::Conn { id, .. } => match s.opts.linger {
                Some(0) => {
                    // SO_LINGER with a zero time: close resets (RFC 9293 §3.10.5 ABORT).
                    tcp.abort(id);
                    tcp.release(id);
                }
                Some(secs) if secs > 0 && !s.nonblock => {
                    tcp.close(now, id);
                    let deadline = now + Duration::from_secs(secs as u64);
                    g.touch();
                    self.cond.notify_all();
                    // Linger: wait until our FIN is acknowledged (or the connection is gone),
                    // at most `secs` of virtual time.
                    return self.block(g, Some(deadline), |inner, timed_out| {
                        let gone = inner.iface.tcp().conn(id).is_none_or(|c| {
                            matches!(c.state(), State::FinWait2 | State::TimeWait | State::Closed)
                        });
                        (gone || timed_out).then_some(Ok(()))
                    });
                }
                _ => tcp.close(now, id),
            },
        }
        self.done(g);
        Ok(())
    }

    pub fn shutdown(&self, fd: c_int, how: c_int) -> SysResult<()> {
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(Errno(libc::EINVAL)),
        };
        let mut g = self.lock();
        let inner = &mut *g;
        let now = inner.now;
        let Inner { fds, iface, .. } = inner;
        let s = sock_mut(fds, fd)?;
        match &s.kind {
            SockKind::Fresh => return Err(Errno(libc::ENOTCONN)),
            SockKind::Listener(ids) => {
                if rd {
                    for &l in ids {
                        iface.tcp_mut().unlisten(l);
                    }
                    s.kind = SockKind::Fresh;
                }
            }
            SockKind::Conn { id, .. } => {
                let id = *id;
                if c_closed(iface, id) {
                    return Err(Errno(libc::ENOTCONN));
                }
                if wr {
                    iface.tcp_mut().with_conn(now, id, |c| c.shutdown());
                    s.write_shut = true;
                }
                if rd {
                    s.read_shut = true;
                }
            }
        }
        self.done(g);
        Ok(())
    }

    pub fn set_nonblocking(&self, fd: c_int, on: bool) -> SysResult<()> {
        let mut g = self.lock();
        sock_mut(&mut g.fds, fd)?.nonblock = on;
        Ok(())
    }

    /// F_GETFL: O_RDWR plus O_NONBLOCK when set.
    pub fn get_flags(&self, fd: c_int) -> SysResult<c_int> {
        let g = self.lock();
        match g.fds.get(&fd) {
            Some(Fd::Socket(s)) => Ok(libc::O_RDWR | if s.nonblock { libc::O_NONBLOCK } else { 0 }),
            Some(Fd::Epoll(_)) => Ok(libc::O_RDWR),
            None => Err(Errno(libc::EBADF)),
        }
    }

    /// FIONREAD (bytes readable) or SIOCOUTQ (bytes not yet acknowledged).
    pub fn queued(&self, fd: c_int, outq: bool) -> SysResult<c_int> {
        let g = self.lock();
        let s = sock(&g.fds, fd)?;
        match s.kind {
            SockKind::Listener(_) => Err(Errno(libc::EINVAL)),
            SockKind::Fresh => Ok(0),
            SockKind::Conn { id, .. } => Ok(g.iface.tcp().conn(id).map_or(0, |c| {
                (if outq {
                    c.send_queued()
                } else {
                    c.recv_available()
                })
                .min(c_int::MAX as usize) as c_int
            })),
        }
    }

    pub fn setsockopt(&self, fd: c_int, level: c_int, name: c_int, val: OptIn) -> SysResult<()> {
        let mut g = self.lock();
        g.refresh_sysctls();
        let inner = &mut *g;
        let s = sock_mut(&mut inner.fds, fd)?;
        let int = || match val {
            OptIn::Int(v) => Ok(v),
            OptIn::Bytes(ref b) if b.len() >= 4 => {
                Ok(c_int::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            }
            OptIn::Linger { .. } | OptIn::Bytes(_) => Err(Errno(libc::EINVAL)),
        };
        // (keepalive changed, per-connection options changed)
        let mut keepalive = false;
        let mut conn_opts = false;
        let mut push = false;
        // A listener's MSS changed: for the connections its SYNs make from now on (their
        // SYN-ACKs announce it), as Linux copies `user_mss` to each child.
        let mut relisten = false;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.opts.reuseaddr = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => s.opts.reuseport = int()? != 0,
            (libc::SOL_SOCKET, SO_ZEROCOPY) => s.opts.zerocopy = int()? != 0,
            // IP_FREEBIND: binding to an address not (yet) ours. Every address the script
            // names is ours here; the flag is kept for getsockopt.
            (libc::IPPROTO_IP, libc::IP_FREEBIND) => s.opts.freebind = int()? != 0,
            (libc::IPPROTO_TCP, TCP_INQ) => s.opts.inq = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_MARK) => s.opts.mark = int()? as u32,
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => {
                s.opts.keepalive = int()? != 0;
                keepalive = true;
            }
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                s.opts.rcvbuf = Some((int()?.max(0) as usize).clamp(1024, 1 << 30));
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                s.opts.sndbuf = Some((int()?.max(0) as usize).clamp(1024, 1 << 30));
            }
            (libc::SOL_SOCKET, libc::SO_LINGER) => match val {
                OptIn::Linger { onoff, secs } => {
                    s.opts.linger = (onoff != 0).then_some(secs.max(0));
                }
                OptIn::Int(_) | OptIn::Bytes(_) => return Err(Errno(libc::EINVAL)),
            },
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN) => {
                // Linux: any value >= 0 on a socket not yet (or already) listening; the
                // queue is capped by somaxconn.
                let v = int()?;
                if v < 0 || matches!(s.kind, SockKind::Conn { .. }) {
                    return Err(Errno(libc::EINVAL));
                }
                let qlen = (v as usize).min(4096);
                s.opts.fastopen_qlen = Some(qlen);
                if let SockKind::Listener(ids) = &s.kind {
                    for &l in ids {
                        inner.iface.tcp_mut().set_fast_open(l, qlen);
                    }
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT) => {
                let v = int()?;
                if !(0..=1).contains(&v) {
                    return Err(Errno(libc::EINVAL));
                }
                if !inner.base.fast_open.client {
                    return Err(Errno(libc::EOPNOTSUPP));
                }
                if !matches!(s.kind, SockKind::Fresh) {
                    return Err(Errno(libc::EINVAL));
                }
                s.opts.fastopen_connect = v == 1;
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_KEY) => {
                // 16 bytes, or 32: a key and a backup (Linux's layout, as the sysctl's words
                // stored little-endian).
                let OptIn::Bytes(b) = &val else {
                    return Err(Errno(libc::EINVAL));
                };
                let key = |i: usize| {
                    let mut k = [0u8; 16];
                    k.copy_from_slice(&b[i..i + 16]);
                    FastOpenKey::from_bytes(k)
                };
                let keys = match b.len() {
                    16 => (key(0), None),
                    32 => (key(0), Some(key(16))),
                    _ => return Err(Errno(libc::EINVAL)),
                };
                s.opts.fastopen_key = Some(keys);
                if let SockKind::Listener(ids) = &s.kind {
                    for &l in ids {
                        inner.iface.tcp_mut().set_fast_open_key(l, keys.0, keys.1);
                    }
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_NO_COOKIE) => {
                s.opts.fastopen_no_cookie = int()? != 0;
            }
            (libc::IPPROTO_TCP, libc::TCP_SYNCNT) => {
                let v = int()?;
                if !(1..=127).contains(&v) {
                    return Err(Errno(libc::EINVAL));
                }
                s.opts.syncnt = Some(v as u32);
                conn_opts = true;
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
                s.opts.nodelay = int()? != 0;
                // Setting it (again) pushes what a cork or MSG_MORE holds.
                push = s.opts.nodelay;
                conn_opts = true;
            }
            (libc::IPPROTO_TCP, libc::TCP_CORK) => {
                s.opts.cork = int()? != 0;
                conn_opts = true;
            }
            (libc::SOL_SOCKET, libc::SO_MAX_PACING_RATE) => {
                s.opts.max_pacing_rate = Some(int()? as u32);
                conn_opts = true;
            }
            (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT) => {
                s.opts.notsent_lowat = int()? as u32;
                conn_opts = true;
            }
            (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => {
                let v = int()? as u32;
                if v & SOF_OPT_ID != 0 && s.opts.timestamping & SOF_OPT_ID == 0 {
                    // Keys count from SND.UNA (Linux: not on a listening or closed socket).
                    let Some(c) = s.conn_id().and_then(|id| inner.iface.tcp().conn(id)) else {
                        return Err(Errno(libc::EINVAL));
                    };
                    s.ts_base = c.snd_una();
                }
                s.opts.timestamping = v;
            }
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
                let v = int()?;
                // Linux: TCP_MAXSEG_MIN (88) to MAX_TCP_WINDOW; only before the handshake.
                if !(88..=32767).contains(&v) {
                    return Err(Errno(libc::EINVAL));
                }
                s.opts.maxseg = Some(v as usize);
                relisten = matches!(s.kind, SockKind::Listener(_));
            }
            (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => {
                let v = int()?;
                if v < 0 {
                    return Err(Errno(libc::EINVAL));
                }
                s.opts.user_timeout_ms = v as u32;
                conn_opts = true;
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL) => {
                let v = int()?;
                if !(1..=32767).contains(&v) {
                    return Err(Errno(libc::EINVAL));
                }
                if name == libc::TCP_KEEPIDLE {
                    s.opts.keepidle = Some(v as u32);
                } else {
                    s.opts.keepintvl = Some(v as u32);
                }
                keepalive = s.opts.keepalive;
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => {
                let v = int()?;
                if !(1..=127).contains(&v) {
                    return Err(Errno(libc::EINVAL));
                }
                s.opts.keepcnt = Some(v as u32);
                keepalive = s.opts.keepalive;
            }
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => {
                if !s.v6 {
                    return Err(Errno(libc::ENOPROTOOPT));
                }
                if !matches!(s.kind, SockKind::Fresh) {
                    return Err(Errno(libc::EINVAL));
                }
                s.opts.v6only = int()? != 0;
            }
            _ => return Err(Errno(libc::ENOPROTOOPT)),
        }
        if keepalive || conn_opts {
            if let Some(id) = s.conn_id() {
                let opts = s.opts.clone();
                inner.apply_conn_opts(id, &opts, keepalive);
                if push {
                    let now = inner.now;
                    inner
                        .iface
                        .tcp_mut()
                        .with_conn(now, id, |c| c.set_nodelay(true));
                }
                self.done(g);
                return Ok(());
            }
        }
        if relisten {
            let (opts, v6) = (s.opts.clone(), s.v6);
            let config = inner.config_for(&opts, v6);
            *inner.iface.tcp_mut().config_mut() = config;
        }
        Ok(())
    }

    pub fn getsockopt(&self, fd: c_int, level: c_int, name: c_int) -> SysResult<OptValue> {
        let mut g = self.lock();
        let inner = &mut *g;
        let now = inner.now;
        let Inner {
            fds, iface, base, ..
        } = inner;
        let s = sock_mut(fds, fd)?;
        let conn = s.conn_id().and_then(|id| iface.tcp().conn(id));
        let b = |v: bool| OptValue::Int(v as c_int);
        let v = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => {
                let e = conn.and_then(|c| c.error());
                match e {
                    Some(e) if !s.error_reported => {
                        s.error_reported = true;
                        OptValue::Int(conn_errno(e).0)
                    }
                    _ => OptValue::Int(0),
                }
            }
            (libc::SOL_SOCKET, libc::SO_TYPE) => OptValue::Int(libc::SOCK_STREAM),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => {
                OptValue::Int(if s.v6 { libc::AF_INET6 } else { libc::AF_INET })
            }
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => OptValue::Int(libc::IPPROTO_TCP),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => b(matches!(s.kind, SockKind::Listener(_))),
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => b(s.opts.reuseaddr),
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => b(s.opts.reuseport),
            (libc::SOL_SOCKET, SO_ZEROCOPY) => b(s.opts.zerocopy),
            (libc::IPPROTO_TCP, TCP_INQ) => b(s.opts.inq),
            (libc::SOL_SOCKET, libc::SO_MARK) => OptValue::Int(s.opts.mark as c_int),
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => b(s.opts.keepalive),
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => OptValue::Int(
                s.opts
                    .rcvbuf
                    .unwrap_or(base.recv_buffer)
                    .min(c_int::MAX as usize) as c_int,
            ),
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => OptValue::Int(
                s.opts
                    .sndbuf
                    .unwrap_or(base.send_buffer)
                    .min(c_int::MAX as usize) as c_int,
            ),
            (libc::SOL_SOCKET, libc::SO_LINGER) => OptValue::Linger {
                onoff: s.opts.linger.is_some() as c_int,
                secs: s.opts.linger.unwrap_or(0),
            },
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => b(s.opts.nodelay),
            (libc::IPPROTO_TCP, libc::TCP_CORK) => b(s.opts.cork),
            (libc::SOL_SOCKET, libc::SO_MAX_PACING_RATE) => {
                OptValue::Int(s.opts.max_pacing_rate.unwrap_or(u32::MAX) as c_int)
            }
            (libc::IPPROTO_IP, libc::IP_FREEBIND) => b(s.opts.freebind),
            (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT) => {
                OptValue::Int(s.opts.notsent_lowat as c_int)
            }
            (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => {
                OptValue::Int(s.opts.timestamping as c_int)
            }
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => OptValue::Int(match conn {
                Some(c) if c.state().is_synchronized() => c.mss() as c_int,
                // Linux reports the user's value, else TCP_MSS_DEFAULT (536), before a handshake.
                _ => s.opts.maxseg.unwrap_or(536) as c_int,
            }),
            (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => {
                OptValue::Int(s.opts.user_timeout_ms.min(c_int::MAX as u32) as c_int)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => {
                OptValue::Int(s.opts.keepidle.unwrap_or(7200) as c_int)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => {
                OptValue::Int(s.opts.keepintvl.unwrap_or(75) as c_int)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => {
                OptValue::Int(s.opts.keepcnt.unwrap_or(9) as c_int)
            }
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if s.v6 => b(s.opts.v6only),
            (libc::IPPROTO_TCP, libc::TCP_INFO) => {
                let ti = match (&s.kind, conn) {
                    (SockKind::Listener(_), _) => TcpInfo::of_state(State::Listen),
                    (_, Some(c)) => TcpInfo::of(c, now, iface.mtu()),
                    _ => TcpInfo::of_state(State::Closed),
                };
                OptValue::Bytes(ti.to_bytes())
            }
            // No congestion-control details to report: an empty answer, as Linux gives for
            // an algorithm without them.
            (libc::IPPROTO_TCP, libc::TCP_CC_INFO) => OptValue::Bytes(Vec::new()),
            (libc::SOL_SOCKET, SO_MEMINFO) => OptValue::Bytes(vec![0; 4 * SK_MEMINFO_VARS]),
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN) => {
                let qlen = match &s.kind {
                    SockKind::Listener(ids) => {
                        ids.first().map_or(0, |&l| iface.tcp().fast_open_qlen(l))
                    }
                    _ => s.opts.fastopen_qlen.unwrap_or(0),
                };
                OptValue::Int(qlen as c_int)
            }
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT) => b(s.opts.fastopen_connect),
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_NO_COOKIE) => b(s.opts.fastopen_no_cookie),
            (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_KEY) => {
                let key = match (&s.opts.fastopen_key, &s.kind) {
                    (Some((k, _)), _) => *k,
                    (None, SockKind::Listener(ids)) => {
                        iface.tcp().fast_open_key(ids.first().copied())
                    }
                    (None, _) => iface.tcp().fast_open_key(None),
                };
                OptValue::Bytes(key.as_bytes().to_vec())
            }
            (libc::IPPROTO_TCP, libc::TCP_SYNCNT) => {
                OptValue::Int(s.opts.syncnt.unwrap_or(base.syn_retries) as c_int)
            }
            _ => return Err(Errno(libc::ENOPROTOOPT)),
        };
        Ok(v)
    }

    /// poll(2) over `fds`: `(fd, events)` in, `revents` out (in order). `timeout_ms` is virtual:
    /// a blocking poll ends when something is ready or the virtual clock passes the timeout.
    pub fn poll(&self, fds: &[(c_int, u32)], timeout_ms: c_int) -> SysResult<Vec<u32>> {
        let g = self.lock();
        let deadline = (timeout_ms >= 0).then(|| g.now + Duration::from_millis(timeout_ms as u64));
        self.block(g, deadline, |inner, timed_out| {
            let mut any = false;
            let revents: Vec<u32> = fds
                .iter()
                .map(|&(fd, events)| {
                    if fd < 0 {
                        return 0;
                    }
                    let r = match inner.readiness(fd) {
                        None => POLLNVAL,
                        Some(r) => r & (events | POLLERR | POLLHUP),
                    };
                    any |= r != 0;
                    r
                })
                .collect();
            (any || timed_out).then_some(Ok(revents))
        })
    }

    pub fn epoll_create(&self, size: c_int) -> SysResult<c_int> {
        if size <= 0 {
            return Err(Errno(libc::EINVAL));
        }
        let mut g = self.lock();
        let fd = g.alloc_fd()?;
        g.fds.insert(fd, Fd::Epoll(Epoll::default()));
        Ok(fd)
    }

    pub fn epoll_ctl(
        &self,
        epfd: c_int,
        op: c_int,
        fd: c_int,
        ev: Option<(u32, u64)>,
    ) -> SysResult<()> {
        let mut g = self.lock();
        if !g.fds.contains_key(&fd) {
            return Err(Errno(libc::EBADF));
        }
        if fd == epfd || matches!(g.fds.get(&fd), Some(Fd::Epoll(_))) {
            return Err(Errno(libc::EINVAL));
        }
        let ep = match g.fds.get_mut(&epfd) {
            Some(Fd::Epoll(ep)) => ep,
            Some(_) => return Err(Errno(libc::EINVAL)),
            None => return Err(Errno(libc::EBADF)),
        };
        match op {
            libc::EPOLL_CTL_ADD => {
                let ev = ev.ok_or(Errno(libc::EFAULT))?;
                if ep.interest.contains_key(&fd) {
                    return Err(Errno(libc::EEXIST));
                }
                ep.interest.insert(fd, ev);
            }
            libc::EPOLL_CTL_MOD => {
                let ev = ev.ok_or(Errno(libc::EFAULT))?;
                let slot = ep.interest.get_mut(&fd).ok_or(Errno(libc::ENOENT))?;
                *slot = ev;
                // A modification re-arms an edge-triggered entry (as Linux re-polls it).
                ep.edge.remove(&fd);
            }
            libc::EPOLL_CTL_DEL => {
                ep.interest.remove(&fd).ok_or(Errno(libc::ENOENT))?;
                ep.edge.remove(&fd);
            }
            _ => return Err(Errno(libc::EINVAL)),
        }
        self.done(g);
        Ok(())
    }

    /// epoll_wait(2), level-triggered (EPOLLET is accepted and treated as level-triggered;
    /// EPOLLONESHOT disarms the entry once reported). Returns `(events, data)` pairs.
    pub fn epoll_wait(
        &self,
        epfd: c_int,
        max: usize,
        timeout_ms: c_int,
    ) -> SysResult<Vec<(u32, u64)>> {
        if max == 0 {
            return Err(Errno(libc::EINVAL));
        }
        let g = self.lock();
        match g.fds.get(&epfd) {
            Some(Fd::Epoll(_)) => {}
            Some(_) => return Err(Errno(libc::EINVAL)),
            None => return Err(Errno(libc::EBADF)),
        }
        let deadline = (timeout_ms >= 0).then(|| g.now + Duration::from_millis(timeout_ms as u64));
        self.block(g, deadline, |inner, timed_out| {
            let Some(Fd::Epoll(ep)) = inner.fds.get(&epfd) else {
                return Some(Err(Errno(libc::EBADF)));
            };
            let mut ready = Vec::new();
            for (&fd, &(mask, data)) in &ep.interest {
                if ready.len() >= max {
                    break;
                }
                let r = inner.readiness(fd).unwrap_or(0) & (mask | POLLERR | POLLHUP);
                // EPOLLET: only when something happened since the last report.
                let fresh = mask & EPOLLET == 0
                    || ep
                        .edge
                        .get(&fd)
                        .is_none_or(|&last| last != inner.events_of(fd));
                if r != 0 && fresh && mask & !(EPOLLONESHOT | EPOLLET) != 0 {
                    ready.push((fd, r, data));
                }
            }
            if ready.is_empty() && !timed_out {
                return None;
            }
            let events: Vec<(c_int, [u64; 5])> = ready
                .iter()
                .map(|&(fd, _, _)| (fd, inner.events_of(fd)))
                .collect();
            if let Some(Fd::Epoll(ep)) = inner.fds.get_mut(&epfd) {
                for (fd, ev) in events {
                    if let Some(e) = ep.interest.get_mut(&fd) {
                        if e.0 & EPOLLONESHOT != 0 {
                            e.0 = EPOLLONESHOT;
                        }
                        if e.0 & EPOLLET != 0 {
                            ep.edge.insert(fd, ev);
                        }
                    }
                }
            }
            Some(Ok(ready.into_iter().map(|(_, r, d)| (r, d)).collect()))
        })
    }

    /// With TCP_INQ on `fd`, the bytes left to read after a read, as Linux's
    /// `tcp_inq_hint`: one "fake" byte once everything is read and the peer has closed, so
    /// that the reader knows to read again for the end of the stream. `None` without TCP_INQ.
    pub fn inq_hint(&self, fd: c_int) -> Option<c_int> {
        let g = self.lock();
        let s = sock(&g.fds, fd).ok()?;
        if !s.opts.inq {
            return None;
        }
        let c = s.conn_id().and_then(|id| g.iface.tcp().conn(id));
        Some(c.map_or(0, |c| {
            let n = c.recv_available();
            if n == 0 && c.is_read_finished() {
                1
            } else {
                n.min(c_int::MAX as usize) as c_int
            }
        }))
    }

    /// Bytes readable on `fd` before urgent data, if some is ahead.
    pub fn urgent_mark(&self, fd: c_int) -> Option<usize> {
        let g = self.lock();
        let s = sock(&g.fds, fd).ok()?;
        s.conn_id()
            .and_then(|id| g.iface.tcp().conn(id))
            .and_then(|c| c.urgent_mark())
    }

    /// Whether `fd` is one of our sockets.
    pub fn owns(&self, fd: c_int) -> bool {
        let g = self.lock();
        sock(&g.fds, fd).is_ok()
    }

    /// Whether SO_ZEROCOPY is on for `fd`.
    pub fn zerocopy_on(&self, fd: c_int) -> bool {
        let g = self.lock();
        sock(&g.fds, fd).is_ok_and(|s| s.opts.zerocopy)
    }

    /// After a MSG_ZEROCOPY send of `n` bytes on `fd`: with SO_ZEROCOPY, the send gets the
    /// next notification id, reported on the error queue once its data is acknowledged
    /// (Linux's MSG_ZEROCOPY; the data was copied, so the report says so).
    pub fn zerocopy_sent(&self, fd: c_int, n: usize) {
        let mut g = self.lock_quiet();
        let inner = &mut *g;
        let Ok(s) = sock(&inner.fds, fd) else { return };
        let end = s
            .conn_id()
            .and_then(|id| inner.iface.tcp().conn(id))
            .map(|c| c.write_seq());
        let Ok(s) = sock_mut(&mut inner.fds, fd) else {
            return;
        };
        if let (true, true, Some(end)) = (s.opts.zerocopy, n > 0, end) {
            let id = s.zc_next;
            s.zc_next = s.zc_next.wrapping_add(1);
            s.zc_pending.push_back((id, end));
        }
    }

    /// recvmsg(MSG_ERRQUEUE): the next zero-copy notification, the range of ids completed
    /// (`ee_info`, `ee_data` of Linux's `sock_extended_err`), and whether the socket is
    /// `AF_INET6`; EAGAIN when there is none (the error queue never blocks).
    pub fn recv_errqueue(&self, fd: c_int) -> SysResult<((u32, u32), bool)> {
        let mut g = self.lock();
        let inner = &mut *g;
        let s = sock(&inner.fds, fd)?;
        let Some((first, last)) = s.zc_ready(inner.iface.tcp()) else {
            return Err(Errno(libc::EAGAIN));
        };
        let s = sock_mut(&mut inner.fds, fd)?;
        let n = last.wrapping_sub(first) as usize + 1;
        s.zc_pending.drain(..n.min(s.zc_pending.len()));
        s.zc_done += n as u64;
        let v6 = s.v6;
        self.done(g);
        Ok(((first, last), v6))
    }

    /// The local address of a socket and whether it is `AF_INET6` (for tests and drivers).
    pub fn local_addr(&self, fd: c_int) -> SysResult<(Option<SocketAddr>, bool)> {
        let g = self.lock();
        let s = sock(&g.fds, fd)?;
        Ok((s.local, s.v6))
    }

    /// The TCP state of a socket's connection (for tests and drivers).
    pub fn state(&self, fd: c_int) -> SysResult<Option<State>> {
        let g = self.lock();
        let s = sock(&g.fds, fd)?;
        Ok(match &s.kind {
            SockKind::Listener(_) => Some(State::Listen),
            SockKind::Fresh => None,
            SockKind::Conn { id, .. } => {
                Some(g.iface.tcp().conn(*id).map_or(State::Closed, |c| c.state()))
            }
        })
    }
}

/// The calling thread's kernel id. Not `std::thread::current()`: that registers a thread-local
/// destructor in this library's copy of std, which crashes the thread's exit if the library
/// was unloaded (dlclose) meanwhile.
fn thread_id() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn c_closed(iface: &Interface, id: ConnId) -> bool {
    iface
        .tcp()
        .conn(id)
        .is_none_or(|c| c.state() == State::Closed)
}

/// A `setsockopt` value.
#[derive(Debug, Clone)]
pub enum OptIn {
    Int(c_int),
    Linger {
        onoff: c_int,
        secs: c_int,
    },
    /// The option's bytes as passed (TCP_FASTOPEN_KEY).
    Bytes(Vec<u8>),
}

/// The source (`src`) or destination address of an IP packet.
fn packet_addr(p: &[u8], src: bool) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => {
            let at = if src { 12 } else { 16 };
            let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let at = if src { 8 } else { 24 };
            let b: [u8; 16] = p.get(at..at + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}
