//! synack's TCP against smoltcp 0.14, side by side in one criterion run, doing the same work on
//! the same device.
//!
//! Run it as a user would ship it (fat LTO, one codegen unit):
//!
//! ```text
//! CARGO_PROFILE_BENCH_LTO=fat CARGO_PROFILE_BENCH_CODEGEN_UNITS=1 \
//!     cargo bench -p synack-stack --bench tcp_vs_smoltcp
//! ```
//!
//! and once more without the two variables (the workspace's bench profile, no LTO) to see how
//! much each stack owes to cross-crate inlining: under fat LTO smoltcp's whole path inlines into
//! one function and gains about a third on churn, synack about a tenth. Filter as usual, e.g.
//! `-- 'churn/pooled'`; criterion's `--warm-up-time 1 --measurement-time 3` shorten a run.
//! On a machine other work keeps busy, `BENCH_CPU_TIME=1` times both stacks by the CPU time of
//! the measuring thread instead of the wall clock (figures then read "per CPU second"); compare
//! the two sides of one run, never figures across runs.
//!
//! Groups (each scenario is built and verified byte-exact the first time it runs):
//! - `churn`: connect, one byte each way, close (the client closes first, so TIME-WAIT lands on
//!   it), in connections per second (`Throughput::Elements(1)` per connection). Both clients
//!   send their byte only once ESTABLISHED (smoltcp cannot send earlier), so both stacks move
//!   the same segments per connection: the count is printed for each at start.
//! - `bulk_mtu1500`, `bulk_mtu65535`: 64 MiB from client to server over one long-lived
//!   connection with 4 MiB send and receive buffers on both ends (`Throughput::Bytes`).
//! - `pingpong`: 64 B ping-pong with one message in flight: the client writes 64 B, the server
//!   reads them and echoes 64 B, the client reads them; one exchange per element.
//!
//! # The device: the same for both stacks
//!
//! Every packet crosses a [`Wire`], a FIFO of packets whose buffers the sender fills and the
//! receiver returns, in one of two modes, each a variant of every group (`pooled/…`,
//! `fresh/…`):
//! - `pooled`: each packet is copied into a buffer taken from a free list and given back once
//!   the receiver has processed it (a NIC ring or a TUN read buffer works this way);
//! - `fresh`: each packet gets a newly allocated, zero-filled `Vec` that is dropped after
//!   receipt, as smoltcp's `phy::Loopback` does.
//!
//! smoltcp runs one `Interface` owning both addresses, with the client and server sockets in one
//! `SocketSet` over a `Device` on one `Wire` (as its loopback example does over `Loopback`);
//! smoltcp's tx token lets it build each packet straight into the wire's buffer. synack runs two
//! `Interface`s (client 198.18.0.1, server 198.18.0.2), one `Wire` per direction, through
//! `Interface::transmit_to`, whose `TxQueue` the wire implements: synack asks for a buffer once
//! it knows a packet's length (40 bytes of room for an IP header, then the TCP segment: a
//! `fresh` buffer is 20 bytes longer than an IPv4 packet), builds the segment and its IP header
//! in it, and the wire queues it from where the IP header starts. Neither stack copies a packet
//! on its way into the wire: each builds it in place through its own device API.
//!
//! Bytes of bulk data, per stack: the application's buffer is copied into the send buffer, from
//! there into the packet, from the packet into the receive buffer and from there to the
//! application: four copies each. With checksums on, smoltcp sums each payload once more on
//! sending and once on receiving; synack sums it while copying it into the packet (one pass for
//! both) and once on receiving.
//!
//! # The variants, named for what they are
//!
//! - `synack`: synack's default `Config`: CUBIC, RFC 7323 timestamps, SACK offered (never
//!   used: nothing is lost here), Nagle on, and checksums computed and verified
//!   (`ChecksumCaps::FULL`, what a device without offload declares).
//! - `synack_csum_off`: the same with `ChecksumCaps::OFFLOADED` on both interfaces (TCP
//!   checksums neither computed nor verified, as an in-memory link or an offloading device
//!   allows; the IPv4 header checksum still is).
//! - `smoltcp_cubic_ts_csum`: like with like: CUBIC, a timestamp generator on both sockets,
//!   `ChecksumCapabilities::default()` (compute and verify every checksum), the MTU under test.
//! - `smoltcp_cubic_ts_csum_off`: the same with `ChecksumCapabilities::ignored()`: like with
//!   like for `synack_csum_off`.
//! - `smoltcp_defaults_csum_off` (reference, `pooled` only, not like with like): a fresh
//!   smoltcp 0.14 `tcp::Socket` as it comes, which in this build (`socket-tcp-cubic`) means CUBIC
//!   (`AnyController::new()` picks CUBIC when that feature is on) and no timestamps (no
//!   `tsval_generator`), with `phy::Loopback`'s `ChecksumCapabilities::ignored()` (checksums
//!   neither computed nor verified), at the MTU under test.
//!
//! So the like-for-like pairs are "checksums on" (`synack` against `smoltcp_cubic_ts_csum`)
//! and "checksums off" (`synack_csum_off` against `smoltcp_cubic_ts_csum_off`). smoltcp's
//! IPv4 header checksum follows its capabilities too (ignored: not computed); synack's is
//! always computed, 20 bytes a packet.
//!
//! # Clock and timers
//!
//! Both stacks run on a fake clock that the driver advances by `TICK_US` (10 µs) per round;
//! neither ever reads the wall clock. A round is: the clock ticks, timers due run, and packets
//! move until both sides are quiet; the application steps between rounds.
//!
//! TIME-WAIT: both stacks keep it. After each churn connection the driver jumps the fake clock
//! past the client's TIME-WAIT (synack: 2·MSL with the default `msl` of 30 s; smoltcp: its fixed
//! 10 s) and runs the timers, so every measured connection pays for entering *and* leaving
//! TIME-WAIT, and at most one TIME-WAIT entry exists at a time in either stack. (smoltcp would
//! also let `connect` reuse a socket straight out of TIME-WAIT; we do not use that shortcut.)
//!
//! Payloads are verified byte-exact before timing, so a broken transfer cannot be measured
//! silently; the timed loops still check byte counts, ping-pong contents and final states.

use std::collections::VecDeque;
use std::time::Duration as StdDuration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};

/// One round of the fake clock.
const TICK_US: u64 = 10;
/// Bytes moved per bulk iteration.
const BULK_BYTES: u64 = 64 << 20;
/// Send and receive buffers for bulk, on both stacks.
const BULK_BUFFER: usize = 4 << 20;
/// The application's read buffer, on both stacks.
const READ_CHUNK: usize = 64 << 10;
/// Rounds after which a scenario is declared stuck (a stack bug, not a slow run).
const MAX_ROUNDS: u64 = 10_000_000;
/// Connections checked before churn is timed.
const VERIFY_CONNECTIONS: u64 = 2_000;
/// Ping-pong message size.
const PING: usize = 64;
/// Exchanges checked before ping-pong is timed.
const VERIFY_EXCHANGES: u64 = 2_000;
/// The MTU of churn and ping-pong: synack's default.
const DEFAULT_MTU: usize = 1500;
const SERVER_PORT: u16 = 5001;

/// A deterministic pseudo-random pattern whose length is prime, so that no segment size lines
/// up with it and a misplaced segment shows in the comparison.
fn pattern() -> Vec<u8> {
    const LEN: usize = 1_048_573;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Whether `data`, received from stream offset `offset`, is the pattern at that offset.
fn matches_pattern(pattern: &[u8], offset: u64, data: &[u8]) -> bool {
    let mut pos = (offset % pattern.len() as u64) as usize;
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(pattern.len() - pos);
        if rest[..n] != pattern[pos..pos + n] {
            return false;
        }
        rest = &rest[n..];
        pos = 0;
    }
    true
}

/// The byte the client sends on connection `i`.
fn churn_byte(i: u64) -> u8 {
    (i.wrapping_mul(31) % 251) as u8 + 1
}

/// The message the client sends in ping-pong exchange `i`.
fn ping_message(i: u64) -> [u8; PING] {
    let mut m = [0u8; PING];
    for (k, b) in m.iter_mut().enumerate() {
        *b = (i.wrapping_mul(131).wrapping_add(k as u64 * 7) % 251) as u8;
    }
    m
}

/// How the [`Wire`] gets a buffer for each packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DevMode {
    /// Buffers (MTU-sized, zero-filled once) come from a free list and return to it.
    Pooled,
    /// A new zero-filled `Vec` of the packet's length per packet, dropped after receipt (as
    /// smoltcp's `phy::Loopback`).
    Fresh,
}

impl DevMode {
    fn name(self) -> &'static str {
        match self {
            DevMode::Pooled => "pooled",
            DevMode::Fresh => "fresh",
        }
    }
}

/// A FIFO of packets between stacks, the device both stacks run on.
pub struct Wire {
    mode: DevMode,
    mtu: usize,
    /// Packets: a buffer and the packet's range in it.
    queue: VecDeque<(Vec<u8>, usize, usize)>,
    pool: Vec<Vec<u8>>,
    /// The buffer last handed out to synack's `TxQueue::buffer`, and the length asked for.
    pending: Option<(Vec<u8>, usize)>,
    /// Packets sent into the wire so far.
    pub sent: u64,
}

impl Wire {
    pub fn new(mode: DevMode, mtu: usize) -> Wire {
        Wire {
            mode,
            mtu,
            queue: VecDeque::new(),
            pool: Vec::new(),
            pending: None,
            sent: 0,
        }
    }

    /// A buffer of at least `len` bytes for the next packet.
    fn buffer(&mut self, len: usize) -> Vec<u8> {
        match self.mode {
            DevMode::Pooled => {
                let mut b = self.pool.pop().unwrap_or_default();
                if b.len() < len {
                    b.resize(self.mtu.max(len), 0);
                }
                b
            }
            DevMode::Fresh => vec![0; len],
        }
    }

    /// Queue a packet: the first `len` bytes of `buf`.
    fn push(&mut self, buf: Vec<u8>, len: usize) {
        self.sent += 1;
        self.queue.push_back((buf, 0, len));
    }

    /// The next packet as a buffer and the packet's length at its start (smoltcp's packets
    /// start there).
    fn pop(&mut self) -> Option<(Vec<u8>, usize)> {
        let (buf, start, end) = self.queue.pop_front()?;
        debug_assert_eq!(start, 0);
        Some((buf, end))
    }

    /// The next packet as a buffer and the packet's range in it.
    fn pop_range(&mut self) -> Option<(Vec<u8>, usize, usize)> {
        self.queue.pop_front()
    }

    /// Give back a buffer the receiver is done with.
    fn recycle(&mut self, buf: Vec<u8>) {
        if self.mode == DevMode::Pooled {
            self.pool.push(buf);
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// synack's device API: the interface asks for a buffer of the packet's length (40 bytes of
/// headroom for the IP header, then the TCP segment), builds the packet in it and sends it from
/// where its IP header starts.
impl synack_stack::TxQueue for Wire {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        let reuse = match &self.pending {
            Some((b, _)) if self.mode == DevMode::Pooled => b.len() >= len,
            Some((b, _)) => b.len() == len,
            None => false,
        };
        if !reuse {
            if let Some((old, _)) = self.pending.take() {
                self.recycle(old);
            }
            self.pending = Some((self.buffer(len), len));
        }
        let (b, l) = self.pending.as_mut().unwrap();
        *l = len;
        &mut b[..len]
    }

    fn send(&mut self, start: usize) {
        let (buf, len) = self.pending.take().expect("send without a buffer");
        self.sent += 1;
        self.queue.push_back((buf, start, len));
    }
}

mod synack {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use synack_stack::{ChecksumCaps, Interface};
    use synack_tcp::{Config, ConnId, Duration, Instant, ListenerId, RecvError, State};

    use super::*;

    const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

    /// Two interfaces joined by a wire each way, and the fake clock.
    pub struct Pair {
        client: Interface,
        server: Interface,
        to_server: Wire,
        to_client: Wire,
        now: Instant,
        listener: ListenerId,
        rounds: u64,
    }

    impl Pair {
        pub fn new(config: Config, mode: DevMode, csum: ChecksumCaps) -> Pair {
            let mtu = config.mtu;
            let mut client = Interface::new(config.clone(), &[CLIENT_IP], [1; 16]);
            let mut server = Interface::new(config, &[SERVER_IP], [2; 16]);
            client.set_checksum(csum);
            server.set_checksum(csum);
            let listener = server
                .tcp_mut()
                .listen(SocketAddr::new(SERVER_IP, SERVER_PORT), 128)
                .expect("listen");
            Pair {
                client,
                server,
                to_server: Wire::new(mode, mtu),
                to_client: Wire::new(mode, mtu),
                now: Instant::ZERO,
                listener,
                rounds: 0,
            }
        }

        /// Packets moved so far, both directions.
        pub fn packets(&self) -> u64 {
            self.to_server.sent + self.to_client.sent
        }

        /// Tick the clock, run due timers, then move packets until both sides are quiet.
        fn round(&mut self) {
            self.rounds += 1;
            assert!(self.rounds < MAX_ROUNDS, "synack: scenario stuck");
            self.advance(Duration::from_micros(TICK_US));
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            let now = self.now;
            let Pair {
                client,
                server,
                to_server,
                to_client,
                ..
            } = self;
            for iface in [&mut *client, &mut *server] {
                if iface.poll_timeout().is_some_and(|t| t <= now) {
                    iface.handle_timeout(now);
                }
            }
            loop {
                client.transmit_to(now, to_server);
                server.transmit_to(now, to_client);
                if to_server.is_empty() && to_client.is_empty() {
                    break;
                }
                while let Some((b, start, end)) = to_server.pop_range() {
                    server.receive(now, &b[start..end]);
                    to_server.recycle(b);
                }
                while let Some((b, start, end)) = to_client.pop_range() {
                    client.receive(now, &b[start..end]);
                    to_client.recycle(b);
                }
            }
        }

        fn connect(&mut self) -> ConnId {
            let now = self.now;
            self.client
                .tcp_mut()
                .connect(
                    now,
                    CLIENT_IP,
                    None,
                    SocketAddr::new(SERVER_IP, SERVER_PORT),
                )
                .expect("connect")
        }

        /// Connect and run rounds until both ends are established.
        fn establish(&mut self) -> (ConnId, ConnId) {
            let client = self.connect();
            let mut server = None;
            while server.is_none() {
                self.round();
                server = self.server.tcp_mut().accept(self.listener);
            }
            assert_eq!(
                self.client.tcp().conn(client).map(|c| c.state()),
                Some(State::Established)
            );
            (client, server.unwrap())
        }
    }

    /// Connect, one byte each way once established, client closes, server closes, TIME-WAIT
    /// expires.
    pub struct Churn {
        pair: Pair,
        count: u64,
        msl: Duration,
    }

    impl Churn {
        pub fn new(mode: DevMode, csum: ChecksumCaps) -> Churn {
            let config = Config::default();
            let msl = config.msl;
            Churn {
                pair: Pair::new(config, mode, csum),
                count: 0,
                msl,
            }
        }

        pub fn packets_per_connection(&self) -> f64 {
            self.pair.packets() as f64 / self.count as f64
        }

        pub fn connection(&mut self) {
            let byte = churn_byte(self.count);
            self.count += 1;
            let p = &mut self.pair;
            // MAX_ROUNDS bounds one connection, not the whole run.
            p.rounds = 0;
            let c = p.connect();
            p.round();
            let mut server_conn = None;
            let mut sent = false;
            let mut echoed = false;
            let mut server_closed = false;
            let mut client_closed = false;
            loop {
                let now = p.now;
                // Like smoltcp, the client sends only once ESTABLISHED (synack would take the
                // byte in SYN-SENT and send it with the handshake's last ACK).
                if !sent {
                    let tcp = p.client.tcp_mut();
                    if tcp.conn(c).map(|c| c.state()) == Some(State::Established) {
                        let n = tcp.with_conn(now, c, |c| c.send(&[byte]));
                        assert_eq!(n, Some(Ok(1)));
                        sent = true;
                    }
                }
                if server_conn.is_none() {
                    server_conn = p.server.tcp_mut().accept(p.listener);
                }
                if let Some(s) = server_conn {
                    let tcp = p.server.tcp_mut();
                    if !echoed {
                        let mut b = [0u8; 1];
                        let r = tcp.with_conn(now, s, |c| match c.recv(&mut b) {
                            Ok(1) => c.send(&b).map(|_| true).unwrap_or(false),
                            _ => false,
                        });
                        if r == Some(true) {
                            assert_eq!(b[0], byte, "synack: server got the wrong byte");
                            echoed = true;
                        }
                    } else if !server_closed {
                        let fin = tcp.with_conn(now, s, |c| {
                            c.recv(&mut [0u8; 1]) == Err(RecvError::Finished)
                        });
                        if fin == Some(true) {
                            tcp.close(now, s);
                            server_closed = true;
                        }
                    }
                }
                if sent && !client_closed {
                    let tcp = p.client.tcp_mut();
                    let mut b = [0u8; 1];
                    let got = tcp.with_conn(now, c, |c| c.recv(&mut b));
                    if got == Some(Ok(1)) {
                        assert_eq!(b[0], byte, "synack: client got the wrong echo");
                        tcp.close(now, c);
                        client_closed = true;
                    }
                }
                if server_closed
                    && client_closed
                    && p.server.tcp().connection_count() == 0
                    && p.client.tcp().connection_count() == 1
                {
                    break;
                }
                p.round();
            }
            // The client sits in TIME-WAIT; let 2·MSL pass and the timer reap it.
            p.advance(self.msl * 2 + Duration::from_micros(TICK_US));
            assert_eq!(
                p.client.tcp().connection_count(),
                0,
                "synack: TIME-WAIT did not expire"
            );
        }

        /// Run connections checking everything the timed loop checks, plus the final states.
        pub fn verify(&mut self, n: u64) {
            for _ in 0..n {
                self.connection();
                let s = self.pair.server.tcp().stats();
                assert_eq!(s.resets_sent, 0);
            }
            let cs = self.pair.client.tcp().stats();
            assert_eq!(cs.connects, self.count);
            assert_eq!(self.pair.server.tcp().stats().accepted, self.count);
            assert_eq!(self.pair.client.stats().rx_bad_checksum, 0);
            assert_eq!(self.pair.server.stats().rx_bad_checksum, 0);
        }
    }

    /// One connection moving data from client to server.
    pub struct Bulk {
        pair: Pair,
        client: ConnId,
        server: ConnId,
        sent: u64,
        received: u64,
        pattern: Vec<u8>,
        read_buf: Vec<u8>,
    }

    impl Bulk {
        pub fn new(mtu: usize, mode: DevMode, csum: ChecksumCaps) -> Bulk {
            let config = Config {
                mtu,
                send_buffer: BULK_BUFFER,
                recv_buffer: BULK_BUFFER,
                ..Config::default()
            };
            let mut pair = Pair::new(config, mode, csum);
            let (client, server) = pair.establish();
            Bulk {
                pair,
                client,
                server,
                sent: 0,
                received: 0,
                pattern: pattern(),
                read_buf: vec![0; READ_CHUNK],
            }
        }

        pub fn packets(&self) -> u64 {
            self.pair.packets()
        }

        pub fn mss(&self) -> usize {
            self.pair.client.tcp().conn(self.client).unwrap().mss()
        }

        /// Move `n` more bytes; with `verify`, compare every byte with the pattern.
        pub fn transfer(&mut self, n: u64, verify: bool) {
            let target = self.received + n;
            let Bulk {
                pair,
                client,
                server,
                sent,
                received,
                pattern,
                read_buf,
            } = self;
            let plen = pattern.len() as u64;
            while *received < target {
                let now = pair.now;
                // The client keeps its send buffer full.
                let queued = pair.client.tcp_mut().with_conn(now, *client, |c| {
                    let mut queued = 0u64;
                    while *sent + queued < target {
                        let at = *sent + queued;
                        let off = (at % plen) as usize;
                        let want = ((target - at) as usize).min(pattern.len() - off);
                        match c.send(&pattern[off..off + want]) {
                            Ok(0) => break,
                            Ok(k) => queued += k as u64,
                            Err(e) => panic!("synack: send failed: {e:?}"),
                        }
                    }
                    queued
                });
                *sent += queued.expect("synack: client connection gone");
                // The server drains its receive buffer.
                let base = *received;
                let got = pair.server.tcp_mut().with_conn(now, *server, |c| {
                    let mut got = 0u64;
                    loop {
                        match c.recv(read_buf) {
                            Ok(0) => break got,
                            Ok(k) => {
                                if verify {
                                    assert!(
                                        matches_pattern(pattern, base + got, &read_buf[..k]),
                                        "synack: payload differs near byte {}",
                                        base + got
                                    );
                                }
                                got += k as u64;
                            }
                            Err(e) => panic!("synack: recv failed: {e:?}"),
                        }
                    }
                });
                *received += got.expect("synack: server connection gone");
                pair.round();
            }
            assert_eq!(*received, target);
        }
    }

    /// One connection, one 64 B message in flight: the client writes, the server echoes.
    pub struct PingPong {
        pair: Pair,
        client: ConnId,
        server: ConnId,
        count: u64,
    }

    impl PingPong {
        pub fn new(mode: DevMode, csum: ChecksumCaps) -> PingPong {
            let mut pair = Pair::new(Config::default(), mode, csum);
            let (client, server) = pair.establish();
            PingPong {
                pair,
                client,
                server,
                count: 0,
            }
        }

        pub fn packets_per_exchange(&self) -> f64 {
            self.pair.packets() as f64 / self.count as f64
        }

        /// One exchange; the client checks the echo byte for byte.
        pub fn exchange(&mut self) {
            let msg = ping_message(self.count);
            self.count += 1;
            let PingPong {
                pair: p,
                client,
                server,
                ..
            } = self;
            p.rounds = 0;
            let now = p.now;
            let n = p.client.tcp_mut().with_conn(now, *client, |c| c.send(&msg));
            assert_eq!(n, Some(Ok(PING)), "synack: client could not write");
            let mut at_server = [0u8; PING];
            let mut server_got = 0;
            let mut echoed = false;
            let mut at_client = [0u8; PING];
            let mut client_got = 0;
            loop {
                p.round();
                let now = p.now;
                if !echoed {
                    let tcp = p.server.tcp_mut();
                    let r = tcp.with_conn(now, *server, |c| {
                        match c.recv(&mut at_server[server_got..]) {
                            Ok(k) => server_got += k,
                            Err(e) => panic!("synack: server recv failed: {e:?}"),
                        }
                        if server_got == PING {
                            assert_eq!(c.send(&at_server), Ok(PING), "synack: echo");
                            true
                        } else {
                            false
                        }
                    });
                    echoed = r.expect("synack: server connection gone");
                }
                if echoed {
                    let tcp = p.client.tcp_mut();
                    tcp.with_conn(now, *client, |c| {
                        match c.recv(&mut at_client[client_got..]) {
                            Ok(k) => client_got += k,
                            Err(e) => panic!("synack: client recv failed: {e:?}"),
                        }
                    })
                    .expect("synack: client connection gone");
                    if client_got == PING {
                        break;
                    }
                }
            }
            assert_eq!(at_client, msg, "synack: wrong echo");
        }
    }
}

mod smol {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU32, Ordering};

    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::time::{Duration, Instant};
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

    use super::*;

    const CLIENT_IP: IpAddress = IpAddress::v4(198, 18, 0, 1);
    const SERVER_IP: IpAddress = IpAddress::v4(198, 18, 0, 2);
    /// smoltcp's TIME-WAIT (its `CLOSE_DELAY`, not configurable).
    const TIME_WAIT: Duration = Duration::from_secs(10);

    /// The fake clock in milliseconds, for the timestamp generator (a plain `fn`).
    static CLOCK_MS: AtomicU32 = AtomicU32::new(0);

    fn tsval() -> u32 {
        CLOCK_MS.load(Ordering::Relaxed)
    }

    /// How a smoltcp run is set up (see the module header for the names).
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Flavor {
        /// CUBIC, timestamps, checksums computed and verified: as synack's defaults.
        CubicTsCsum,
        /// CUBIC, timestamps, checksums neither computed nor verified
        /// (`ChecksumCapabilities::ignored()`): as `synack_csum_off`.
        CubicTsCsumOff,
        /// A fresh `tcp::Socket` as it comes (CUBIC in this build, no timestamps) and
        /// `phy::Loopback`'s checksum capabilities (ignored).
        DefaultsCsumOff,
    }

    impl Flavor {
        fn timestamps(self) -> bool {
            matches!(self, Flavor::CubicTsCsum | Flavor::CubicTsCsumOff)
        }
    }

    /// A `Device` over one [`Wire`], with the MTU under test and the flavor's checksums.
    pub struct Dev {
        wire: RefCell<Wire>,
        caps: DeviceCapabilities,
    }

    impl Dev {
        fn new(flavor: Flavor, mtu: usize, mode: DevMode) -> Dev {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ip;
            caps.max_transmission_unit = mtu;
            caps.checksum = match flavor {
                Flavor::CubicTsCsum => ChecksumCapabilities::default(),
                Flavor::CubicTsCsumOff => ChecksumCapabilities::ignored(),
                // What `phy::Loopback::capabilities` declares.
                Flavor::DefaultsCsumOff => ChecksumCapabilities::ignored(),
            };
            Dev {
                wire: RefCell::new(Wire::new(mode, mtu)),
                caps,
            }
        }
    }

    pub struct Rx<'a> {
        buf: Vec<u8>,
        len: usize,
        wire: &'a RefCell<Wire>,
    }

    impl phy::RxToken for Rx<'_> {
        fn consume<R, F>(self, f: F) -> R
        where
            F: FnOnce(&[u8]) -> R,
        {
            // `f` may transmit (through a `Tx` on the same wire): hold no borrow across it.
            let r = f(&self.buf[..self.len]);
            self.wire.borrow_mut().recycle(self.buf);
            r
        }
    }

    pub struct Tx<'a> {
        wire: &'a RefCell<Wire>,
    }

    impl phy::TxToken for Tx<'_> {
        fn consume<R, F>(self, len: usize, f: F) -> R
        where
            F: FnOnce(&mut [u8]) -> R,
        {
            let mut b = self.wire.borrow_mut().buffer(len);
            let r = f(&mut b[..len]);
            self.wire.borrow_mut().push(b, len);
            r
        }
    }

    impl Device for Dev {
        type RxToken<'a>
            = Rx<'a>
        where
            Self: 'a;
        type TxToken<'a>
            = Tx<'a>
        where
            Self: 'a;

        fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
            let (buf, len) = self.wire.get_mut().pop()?;
            let wire = &self.wire;
            Some((Rx { buf, len, wire }, Tx { wire }))
        }

        fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
            Some(Tx { wire: &self.wire })
        }

        fn capabilities(&self) -> DeviceCapabilities {
            self.caps.clone()
        }
    }

    /// One interface with both addresses, a client and a server socket, and the fake clock.
    pub struct Pair {
        dev: Dev,
        iface: Interface,
        sockets: SocketSet<'static>,
        client: SocketHandle,
        server: SocketHandle,
        now: Instant,
        flavor: Flavor,
        rounds: u64,
    }

    impl Pair {
        pub fn new(flavor: Flavor, mtu: usize, mode: DevMode, buffer: usize) -> Pair {
            let mut dev = Dev::new(flavor, mtu, mode);
            let mut config = Config::new(HardwareAddress::Ip);
            config.random_seed = 0x5eed;
            let now = Instant::from_micros(0);
            let mut iface = Interface::new(config, &mut dev, now);
            iface.update_ip_addrs(|addrs| {
                addrs.push(IpCidr::new(CLIENT_IP, 15)).unwrap();
                addrs.push(IpCidr::new(SERVER_IP, 15)).unwrap();
            });
            let mut sockets = SocketSet::new(Vec::new());
            let client = sockets.add(Pair::socket(flavor, buffer));
            let server = sockets.add(Pair::socket(flavor, buffer));
            CLOCK_MS.store(0, Ordering::Relaxed);
            Pair {
                dev,
                iface,
                sockets,
                client,
                server,
                now,
                flavor,
                rounds: 0,
            }
        }

        fn socket(flavor: Flavor, buffer: usize) -> tcp::Socket<'static> {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; buffer]),
                tcp::SocketBuffer::new(vec![0; buffer]),
            );
            // What a fresh socket does in this build: CUBIC, no timestamps.
            assert_eq!(s.congestion_control(), tcp::CongestionControl::Cubic);
            assert!(!s.timestamp_enabled());
            if flavor.timestamps() {
                s.set_tsval_generator(Some(tsval));
            }
            s
        }

        fn reset_socket_options(&mut self, h: SocketHandle) {
            // `connect`/`listen` reset the socket but keep these; set them anyway in case a
            // TIME-WAIT or RST path cleared the timestamp generator (smoltcp drops it when a
            // peer's SYN has no timestamp).
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if self.flavor.timestamps() {
                s.set_tsval_generator(Some(tsval));
            }
        }

        pub fn packets(&self) -> u64 {
            self.dev.wire.borrow().sent
        }

        fn round(&mut self) {
            self.rounds += 1;
            assert!(self.rounds < MAX_ROUNDS, "smoltcp: scenario stuck");
            self.advance(Duration::from_micros(TICK_US));
        }

        /// Tick the clock, then poll until the wire stays empty.
        fn advance(&mut self, by: Duration) {
            self.now += by;
            CLOCK_MS.store(self.now.total_millis() as u32, Ordering::Relaxed);
            loop {
                self.iface.poll(self.now, &mut self.dev, &mut self.sockets);
                if self.dev.wire.get_mut().is_empty() {
                    break;
                }
            }
        }

        fn client(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(self.client)
        }

        fn server(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(self.server)
        }

        fn listen(&mut self) {
            self.reset_socket_options(self.server);
            self.server()
                .listen((SERVER_IP, SERVER_PORT))
                .expect("listen");
        }

        fn connect(&mut self, port: u16) {
            self.reset_socket_options(self.client);
            let cx = self.iface.context();
            self.sockets
                .get_mut::<tcp::Socket>(self.client)
                .connect(cx, (SERVER_IP, SERVER_PORT), (CLIENT_IP, port))
                .expect("connect");
        }

        /// Listen, connect and run rounds until both ends are established.
        fn establish(&mut self) {
            self.listen();
            self.connect(40000);
            while !(self.client().state() == tcp::State::Established
                && self.server().state() == tcp::State::Established)
            {
                self.round();
            }
            // smoltcp drops its timestamp generator when the peer's SYN has no timestamp: both
            // still having one means timestamps were negotiated, as synack's are.
            let ts = self.flavor.timestamps();
            assert_eq!(self.client().timestamp_enabled(), ts);
            assert_eq!(self.server().timestamp_enabled(), ts);
        }
    }

    pub struct Churn {
        pair: Pair,
        count: u64,
    }

    impl Churn {
        pub fn new(flavor: Flavor, mode: DevMode) -> Churn {
            // The buffer sizes of synack's default `Config` (1 MiB), so both advertise the same
            // windows. smoltcp allocates them once per socket; synack's rings grow lazily.
            let buffer = synack_tcp::Config::default().recv_buffer;
            Churn {
                pair: Pair::new(flavor, DEFAULT_MTU, mode, buffer),
                count: 0,
            }
        }

        pub fn packets_per_connection(&self) -> f64 {
            self.pair.packets() as f64 / self.count as f64
        }

        pub fn connection(&mut self) {
            let byte = churn_byte(self.count);
            // Ephemeral ports as synack's range, one after another.
            let port = 32768 + (self.count % 28232) as u16;
            self.count += 1;
            let p = &mut self.pair;
            p.rounds = 0;
            p.listen();
            p.connect(port);
            p.round();
            let mut sent = false;
            let mut echoed = false;
            let mut client_closed = false;
            let mut server_closed = false;
            loop {
                // smoltcp takes bytes only once ESTABLISHED.
                if !sent && p.client().can_send() {
                    assert_eq!(p.client().send_slice(&[byte]), Ok(1));
                    sent = true;
                }
                if !echoed && p.server().can_recv() {
                    let mut b = [0u8; 1];
                    assert_eq!(p.server().recv_slice(&mut b), Ok(1));
                    assert_eq!(b[0], byte, "smoltcp: server got the wrong byte");
                    assert_eq!(p.server().send_slice(&b), Ok(1));
                    echoed = true;
                } else if echoed
                    && !server_closed
                    && p.server().recv_slice(&mut [0u8; 1]) == Err(tcp::RecvError::Finished)
                {
                    p.server().close();
                    server_closed = true;
                }
                if sent && !client_closed && p.client().can_recv() {
                    let mut b = [0u8; 1];
                    assert_eq!(p.client().recv_slice(&mut b), Ok(1));
                    assert_eq!(b[0], byte, "smoltcp: client got the wrong echo");
                    p.client().close();
                    client_closed = true;
                }
                if server_closed
                    && client_closed
                    && p.server().state() == tcp::State::Closed
                    && p.client().state() == tcp::State::TimeWait
                {
                    break;
                }
                p.round();
            }
            p.advance(TIME_WAIT + Duration::from_micros(TICK_US));
            assert_eq!(
                p.client().state(),
                tcp::State::Closed,
                "smoltcp: TIME-WAIT did not expire"
            );
        }

        pub fn verify(&mut self, n: u64) {
            for _ in 0..n {
                self.connection();
            }
        }
    }

    pub struct Bulk {
        pair: Pair,
        sent: u64,
        received: u64,
        pattern: Vec<u8>,
        read_buf: Vec<u8>,
    }

    impl Bulk {
        pub fn new(flavor: Flavor, mtu: usize, mode: DevMode) -> Bulk {
            let mut pair = Pair::new(flavor, mtu, mode, BULK_BUFFER);
            pair.establish();
            Bulk {
                pair,
                sent: 0,
                received: 0,
                pattern: pattern(),
                read_buf: vec![0; READ_CHUNK],
            }
        }

        pub fn packets(&self) -> u64 {
            self.pair.packets()
        }

        pub fn transfer(&mut self, n: u64, verify: bool) {
            let target = self.received + n;
            let plen = self.pattern.len() as u64;
            while self.received < target {
                let client = self.pair.sockets.get_mut::<tcp::Socket>(self.pair.client);
                while self.sent < target {
                    let off = (self.sent % plen) as usize;
                    let want = ((target - self.sent) as usize).min(self.pattern.len() - off);
                    match client.send_slice(&self.pattern[off..off + want]) {
                        Ok(0) => break,
                        Ok(k) => self.sent += k as u64,
                        Err(e) => panic!("smoltcp: send failed: {e:?}"),
                    }
                }
                let server = self.pair.sockets.get_mut::<tcp::Socket>(self.pair.server);
                loop {
                    match server.recv_slice(&mut self.read_buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            if verify {
                                assert!(
                                    matches_pattern(
                                        &self.pattern,
                                        self.received,
                                        &self.read_buf[..k]
                                    ),
                                    "smoltcp: payload differs near byte {}",
                                    self.received
                                );
                            }
                            self.received += k as u64;
                        }
                        Err(e) => panic!("smoltcp: recv failed: {e:?}"),
                    }
                }
                self.pair.round();
            }
            assert_eq!(self.received, target);
        }
    }

    /// One connection, one 64 B message in flight: the client writes, the server echoes.
    pub struct PingPong {
        pair: Pair,
        count: u64,
    }

    impl PingPong {
        pub fn new(flavor: Flavor, mode: DevMode) -> PingPong {
            let buffer = synack_tcp::Config::default().recv_buffer;
            let mut pair = Pair::new(flavor, DEFAULT_MTU, mode, buffer);
            pair.establish();
            PingPong { pair, count: 0 }
        }

        pub fn packets_per_exchange(&self) -> f64 {
            self.pair.packets() as f64 / self.count as f64
        }

        /// One exchange; the client checks the echo byte for byte.
        pub fn exchange(&mut self) {
            let msg = ping_message(self.count);
            self.count += 1;
            let p = &mut self.pair;
            p.rounds = 0;
            assert_eq!(
                p.client().send_slice(&msg),
                Ok(PING),
                "smoltcp: client write"
            );
            let mut at_server = [0u8; PING];
            let mut server_got = 0;
            let mut echoed = false;
            let mut at_client = [0u8; PING];
            let mut client_got = 0;
            loop {
                p.round();
                if !echoed {
                    server_got += p
                        .server()
                        .recv_slice(&mut at_server[server_got..])
                        .expect("smoltcp: server recv");
                    if server_got == PING {
                        assert_eq!(p.server().send_slice(&at_server), Ok(PING), "smoltcp: echo");
                        echoed = true;
                    }
                }
                if echoed {
                    client_got += p
                        .client()
                        .recv_slice(&mut at_client[client_got..])
                        .expect("smoltcp: client recv");
                    if client_got == PING {
                        break;
                    }
                }
            }
            assert_eq!(at_client, msg, "smoltcp: wrong echo");
        }
    }
}

fn configure<M: Measurement>(g: &mut criterion::BenchmarkGroup<'_, M>) {
    g.warm_up_time(StdDuration::from_secs(1));
    g.measurement_time(StdDuration::from_secs(3));
    g.sample_size(20);
}

// Each scenario is built (and verified) the first time its benchmark runs, so a filter such as
// `churn/pooled/synack` builds nothing else, and a profile of one function shows only that
// function. Within each device mode synack runs first and its smoltcp counterpart right after,
// so the pair sees the same machine.

const MODES: [DevMode; 2] = [DevMode::Pooled, DevMode::Fresh];

/// The smoltcp variants run in `mode`: the like-for-like one always, the reference one on the
/// pooled device only.
fn smol_flavors(mode: DevMode) -> Vec<(&'static str, smol::Flavor)> {
    let mut v = vec![
        ("smoltcp_cubic_ts_csum", smol::Flavor::CubicTsCsum),
        ("smoltcp_cubic_ts_csum_off", smol::Flavor::CubicTsCsumOff),
    ];
    if mode == DevMode::Pooled {
        v.push(("smoltcp_defaults_csum_off", smol::Flavor::DefaultsCsumOff));
    }
    v
}

/// synack's variants: checksums computed and verified, and not (the device's capability).
const SYNACK_VARIANTS: [(&str, synack_stack::ChecksumCaps); 2] = [
    ("synack", synack_stack::ChecksumCaps::FULL),
    ("synack_csum_off", synack_stack::ChecksumCaps::OFFLOADED),
];

fn churn<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("churn");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    for mode in MODES {
        let m = mode.name();
        for (name, csum) in SYNACK_VARIANTS {
            let mut syn = None;
            g.bench_function(format!("{m}/{name}"), |b| {
                let s = syn.get_or_insert_with(|| {
                    let mut s = synack::Churn::new(mode, csum);
                    s.verify(VERIFY_CONNECTIONS);
                    eprintln!(
                        "churn/{m}/{name}: {:.2} segments per connection",
                        s.packets_per_connection()
                    );
                    s
                });
                b.iter(|| s.connection())
            });
        }
        for (name, flavor) in smol_flavors(mode) {
            let mut smol = None;
            g.bench_function(format!("{m}/{name}"), |b| {
                let s = smol.get_or_insert_with(|| {
                    let mut s = smol::Churn::new(flavor, mode);
                    s.verify(VERIFY_CONNECTIONS);
                    eprintln!(
                        "churn/{m}/{name}: {:.2} segments per connection",
                        s.packets_per_connection()
                    );
                    s
                });
                b.iter(|| s.connection())
            });
        }
    }
    g.finish();
}

fn bulk_at<M: Measurement>(c: &mut Criterion<M>, mtu: usize) {
    // A first transfer, checked byte by byte, also opens the congestion windows: the timed
    // iterations measure the steady state of a long-lived connection.
    let group = format!("bulk_mtu{mtu}");
    let mut g = c.benchmark_group(&group);
    configure(&mut g);
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BULK_BYTES));
    for mode in MODES {
        let m = mode.name();
        for (name, csum) in SYNACK_VARIANTS {
            let mut syn = None;
            g.bench_function(format!("{m}/{name}"), |b| {
                let s = syn.get_or_insert_with(|| {
                    let mut s = synack::Bulk::new(mtu, mode, csum);
                    s.transfer(BULK_BYTES, true);
                    eprintln!(
                        "{group}/{m}/{name}: mss {}, {} segments per 64 MiB",
                        s.mss(),
                        s.packets()
                    );
                    s
                });
                b.iter(|| s.transfer(BULK_BYTES, false))
            });
        }
        for (name, flavor) in smol_flavors(mode) {
            let mut smol = None;
            g.bench_function(format!("{m}/{name}"), |b| {
                let s = smol.get_or_insert_with(|| {
                    let mut s = smol::Bulk::new(flavor, mtu, mode);
                    s.transfer(BULK_BYTES, true);
                    eprintln!("{group}/{m}/{name}: {} segments per 64 MiB", s.packets());
                    s
                });
                b.iter(|| s.transfer(BULK_BYTES, false))
            });
        }
    }
    g.finish();
}

fn bulk<M: Measurement>(c: &mut Criterion<M>) {
    bulk_at(c, 1500);
    bulk_at(c, 65535);
}

fn pingpong<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("pingpong");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    for mode in MODES {
        let m = mode.name();
        for (name, csum) in SYNACK_VARIANTS {
            let mut syn = None;
            g.bench_function(format!("{m}/{name}"), |b| {
                let s = syn.get_or_insert_with(|| {
                    let mut s = synack::PingPong::new(mode, csum);
                    for _ in 0..VERIFY_EXCHANGES {
                        s.exchange();
                    }
                    eprintln!(
                        "pingpong/{m}/{name}: {:.2} segments per exchange",
                        s.packets_per_exchange()
                    );
                    s
                });
                b.iter(|| s.exchange())
            });
        }
        for (name, flavor) in smol_flavors(mode) {
            let mut smol = None;
            g.bench_function(format!("{m}/{name}"), |b| {
                let s = smol.get_or_insert_with(|| {
                    let mut s = smol::PingPong::new(flavor, mode);
                    for _ in 0..VERIFY_EXCHANGES {
                        s.exchange();
                    }
                    eprintln!(
                        "pingpong/{m}/{name}: {:.2} segments per exchange",
                        s.packets_per_exchange()
                    );
                    s
                });
                b.iter(|| s.exchange())
            });
        }
    }
    g.finish();
}

/// The CPU time of the measuring thread (`CLOCK_THREAD_CPUTIME_ID`), for a busy machine: with
/// `BENCH_CPU_TIME=1` both stacks are timed by the CPU they used rather than the wall clock,
/// so that other processes taking the cores weigh less on each side's figure (they still share
/// its caches). Reported in the usual units, per CPU second.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec the call fills.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU as they are; throughput per CPU second, in GiB/s or elements/s.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns(cpu)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => {
                for v in values {
                    *v = b as f64 * 1e9 / *v / (1u64 << 30) as f64;
                }
                "GiB/s(cpu)"
            }
            Throughput::Elements(e) => {
                for v in values {
                    *v = e as f64 * 1e9 / *v;
                }
                "elem/s(cpu)"
            }
        }
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns(cpu)"
    }
}

fn run<M: Measurement>(mut c: Criterion<M>) {
    churn(&mut c);
    bulk(&mut c);
    pingpong(&mut c);
}

fn main() {
    if std::env::var_os("BENCH_CPU_TIME").is_some_and(|v| v == "1") {
        run(Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args());
    } else {
        run(Criterion::<WallTime>::default().configure_from_args());
    }
    Criterion::default().configure_from_args().final_summary();
}
