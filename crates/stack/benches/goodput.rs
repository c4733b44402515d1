//! Goodput over an impaired 100 Mbit/s, 40 ms RTT link: synack (NewReno and CUBIC, with and
//! without SACK) against smoltcp 0.14 on the same simulated link.
//!
//! Run with `cargo bench -p synack-stack --bench goodput`. Everything happens in the
//! simulator's virtual time ([`synack_stack::sim`]): goodput is bytes delivered *in order to the
//! receiving application* per virtual second, so the numbers are deterministic (the same on
//! every machine) and only the time the bench takes to print them depends on the CPU.
//!
//! The link, both directions: 20 ms one-way delay, 100 Mbit/s serialization, a drop-tail queue
//! of [`QUEUE_BYTES`] (one bandwidth-delay product, 100 Mbit/s × 40 ms = 500 kB) in front of
//! the serializer. Independent (Bernoulli) loss at the row's rate is applied to the data
//! direction only (client → server); ACKs are never lost at random. Every stack runs on the same
//! seeds, so the link draws from the same random streams (which packets die still differs
//! between stacks, since they do not send the same packets).
//!
//! The transfer: the client (198.18.0.1) connects to the server (198.18.0.2) at t = 0 and keeps
//! its send buffer full of a pseudo-random pattern for [`Scenario::duration`]; the server
//! reads everything as soon as it arrives and checks it against the pattern byte by byte (a
//! mismatch panics). Goodput is reported over the whole run and "after slow start", over
//! `[warmup, duration)`, excluding the first [`Scenario::warmup`] seconds.
//!
//! Both stacks get 4 MiB send and receive buffers (well above the 1 MB the window can usefully
//! reach: BDP plus a full queue), MTU 1500, timestamps on. smoltcp runs CUBIC
//! (`socket-tcp-cubic`) with its defaults otherwise: it sends SACK blocks as a receiver but does
//! no SACK-based recovery as a sender, and its minimum RTO is 1 s.
//!
//! The test `tests/goodput.rs` includes this file as a module and asserts the behaviour claims
//! on shorter runs; `main` at the bottom prints the table.
//!
//! Knobs (environment; the defaults make the table): `GOODPUT_SECS` (60), `GOODPUT_WARMUP` (2),
//! `GOODPUT_SEEDS` (5), `GOODPUT_THREADS` (2), `GOODPUT_SERIES=1` (per-second goodput of every
//! run), `GOODPUT_DUMP=label/loss%/seed/from_ms/to_ms` (print the synack sender's trace records
//! of one run in a window of virtual time, e.g. `CUBIC+SACK/0/1/400/2000`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use synack_stack::sim::{HostId, Network, Node, PathConfig, PathStats};
use synack_stack::Interface;
use synack_tcp::{
    Algorithm, Config, ConnId, Direction, Duration, Instant, ListenerId, RecvError,
    RetransmitCause, SeqNum, State, TraceEvent,
};

/// The bottleneck rate, both directions.
pub const LINK_BPS: u64 = 100_000_000;
/// One-way propagation delay, both directions (RTT 40 ms).
pub const ONE_WAY: Duration = Duration::from_millis(20);
/// Drop-tail queue in front of each serializer: one BDP (100 Mbit/s × 40 ms).
pub const QUEUE_BYTES: usize = 500_000;
/// Send and receive buffers of both stacks.
pub const BUFFER: usize = 4 << 20;
const SERVER_PORT: u16 = 5001;
const CLIENT_PORT: u16 = 40000;
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The application's read size.
const READ_CHUNK: usize = 64 << 10;

/// Which stack runs on both hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    Synack { congestion: Algorithm, sack: bool },
    Smoltcp,
}

impl Stack {
    /// The columns of the table, in order.
    pub const ALL: [Stack; 5] = [
        Stack::Synack {
            congestion: Algorithm::NewReno,
            sack: false,
        },
        Stack::Synack {
            congestion: Algorithm::NewReno,
            sack: true,
        },
        Stack::Synack {
            congestion: Algorithm::Cubic,
            sack: false,
        },
        Stack::Synack {
            congestion: Algorithm::Cubic,
            sack: true,
        },
        Stack::Smoltcp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stack::Synack {
                congestion: Algorithm::NewReno,
                sack: false,
            } => "NewReno",
            Stack::Synack {
                congestion: Algorithm::NewReno,
                sack: true,
            } => "NewReno+SACK",
            Stack::Synack {
                congestion: Algorithm::Cubic,
                sack: false,
            } => "CUBIC",
            Stack::Synack {
                congestion: Algorithm::Cubic,
                sack: true,
            } => "CUBIC+SACK",
            Stack::Smoltcp => "smoltcp",
        }
    }
}

/// One run: a loss rate, a seed and how long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Independent loss probability on the data direction.
    pub loss: f64,
    pub seed: u64,
    /// Virtual time measured, from the SYN (whole seconds).
    pub duration: Duration,
    /// The start of the "after slow start" window (whole seconds, below `duration`).
    pub warmup: Duration,
    /// The receive buffer of both stacks (the most either advertises); [`BUFFER`] in the
    /// table, smaller to cap the window below what overflows the queue.
    pub recv_buffer: usize,
}

impl Scenario {
    /// The table's setting: `loss` on the data direction, buffers of [`BUFFER`].
    pub fn new(loss: f64, seed: u64, duration_secs: u64, warmup_secs: u64) -> Scenario {
        Scenario {
            loss,
            seed,
            duration: Duration::from_secs(duration_secs),
            warmup: Duration::from_secs(warmup_secs),
            recv_buffer: BUFFER,
        }
    }
}

/// What the sender did, from synack's trace (segments, retransmissions, congestion events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Data-bearing segments sent.
    pub data_segments: u64,
    /// Of those, segments that were not new data (whatever the cause).
    pub resent_segments: u64,
    /// Data segments under 536 bytes (RFC 9293's default MSS): a healthy bulk sender sends
    /// almost none.
    pub runt_segments: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
    /// Segments resent by fast retransmit or on a partial ACK (RFC 5681, RFC 6582).
    pub fast_retransmits: u64,
    /// Segments resent by SACK recovery (RFC 6675).
    pub sack_retransmits: u64,
    /// Congestion-window changes reported (recovery entries and exits, timeouts, slow-start
    /// threshold moves).
    pub congestion_events: u64,
    /// When the congestion window first stopped growing (the first congestion event).
    pub slow_start_end: Option<Instant>,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub stack: Stack,
    pub scenario: Scenario,
    /// Bytes the server application read (all verified), at the end of every virtual second.
    pub delivered_per_second: Vec<u64>,
    /// synack only.
    pub sender: Option<SenderStats>,
    /// The data direction's counters.
    pub data_path: PathStats,
}

impl Outcome {
    pub fn delivered(&self) -> u64 {
        self.delivered_per_second.last().copied().unwrap_or(0)
    }

    /// Goodput over the whole run, in bits per second.
    pub fn goodput_bps(&self) -> f64 {
        self.delivered() as f64 * 8.0 / self.scenario.duration.as_secs_f64()
    }

    /// Goodput over `[warmup, duration)`, in bits per second.
    pub fn steady_bps(&self) -> f64 {
        let w = self.scenario.warmup.as_secs() as usize;
        let before = if w == 0 {
            0
        } else {
            self.delivered_per_second[w - 1]
        };
        let secs = (self.scenario.duration - self.scenario.warmup).as_secs_f64();
        (self.delivered() - before) as f64 * 8.0 / secs
    }
}

// -------------------------------------------------------------------------------------------
// The payload.

/// A pseudo-random pattern whose length is prime, so that no segment size lines up with it and
/// a misplaced segment shows in the comparison. The stream is the pattern repeated.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        const LEN: usize = 1_000_003;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..LEN)
            .map(|_| {
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    })
}

/// The longest run of the stream starting at `offset` that is one contiguous slice of the
/// pattern, at most `max` bytes.
fn stream_slice(offset: u64, max: u64) -> &'static [u8] {
    let p = pattern();
    let at = (offset % p.len() as u64) as usize;
    let n = (p.len() - at).min(usize::try_from(max).unwrap_or(usize::MAX));
    &p[at..at + n]
}

/// The receiving application: counts what it reads and checks every byte.
struct Sink {
    received: u64,
    buf: Vec<u8>,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            received: 0,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// Check `n` bytes just read into `buf` against the stream; panics on the first mismatch.
    fn take(&mut self, who: &str, n: usize) {
        let mut off = self.received;
        let mut rest = &self.buf[..n];
        while !rest.is_empty() {
            let want = stream_slice(off, rest.len() as u64);
            let k = want.len();
            if rest[..k] != *want {
                let i = rest[..k]
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!("{who}: payload corrupt at stream offset {}", off + i as u64);
            }
            rest = &rest[k..];
            off += k as u64;
        }
        self.received = off;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// What the measuring loop needs of a host.
trait Probe {
    /// Bytes the application has read so far (verified).
    fn delivered(&self) -> u64;
    fn sender_stats(&self) -> Option<SenderStats>;
    /// Whether the connection is still established (a run must not end in a dead connection
    /// that merely stopped delivering).
    fn established(&self) -> bool;
}

// -------------------------------------------------------------------------------------------
// synack.

/// A synack host: the `Interface`, and the application run after every event.
pub struct SynackHost {
    iface: Interface,
    role: Role,
    listener: Option<ListenerId>,
    conn: Option<ConnId>,
    sent: u64,
    sink: Sink,
    stats: SenderStats,
    /// The highest sequence number a data segment has reached, to tell resends from new data.
    high_sent: Option<SeqNum>,
    /// Print the sender's trace records in this window of virtual time (diagnostics).
    dump: Option<(Instant, Instant)>,
}

impl SynackHost {
    fn new(role: Role, config: Config, seed: u64) -> SynackHost {
        let (addr, host) = match role {
            Role::Client => (CLIENT_V4, 1u64),
            Role::Server => (SERVER_V4, 2u64),
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(&host.to_le_bytes());
        let mut iface = Interface::new(config, &[IpAddr::V4(addr)], key);
        let listener = match role {
            Role::Server => Some(
                iface
                    .tcp_mut()
                    .listen(SocketAddr::new(IpAddr::V4(SERVER_V4), SERVER_PORT), 8)
                    .expect("synack: listen"),
            ),
            Role::Client => {
                iface.tcp_mut().set_tracing(true);
                None
            }
        };
        SynackHost {
            iface,
            role,
            listener,
            conn: None,
            sent: 0,
            sink: Sink::new(),
            stats: SenderStats::default(),
            high_sent: None,
            dump: None,
        }
    }

    fn connect(&mut self, now: Instant) {
        let id = self
            .iface
            .tcp_mut()
            .connect(
                now,
                IpAddr::V4(CLIENT_V4),
                Some(CLIENT_PORT),
                SocketAddr::new(IpAddr::V4(SERVER_V4), SERVER_PORT),
            )
            .expect("synack: connect");
        self.conn = Some(id);
    }

    /// The application: the client keeps its send buffer full, the server reads everything.
    fn app(&mut self, now: Instant) {
        let tcp = self.iface.tcp_mut();
        if self.conn.is_none() {
            if let Some(l) = self.listener {
                self.conn = tcp.accept(l);
            }
        }
        let Some(id) = self.conn else { return };
        let SynackHost {
            role, sent, sink, ..
        } = self;
        let alive = tcp.with_conn(now, id, |c| {
            if let Some(e) = c.error() {
                panic!("synack {role:?}: connection failed at {now}: {e:?}");
            }
            match role {
                Role::Client => loop {
                    match c.send(stream_slice(*sent, u64::MAX)) {
                        Ok(0) => break,
                        Ok(n) => *sent += n as u64,
                        Err(e) => panic!("synack client: send failed at {now}: {e:?}"),
                    }
                },
                Role::Server => loop {
                    match c.recv(&mut sink.buf) {
                        Ok(0) => break,
                        Ok(n) => sink.take("synack server", n),
                        Err(RecvError::Finished) => panic!("synack server: unexpected EOF"),
                        Err(e) => panic!("synack server: recv failed at {now}: {e:?}"),
                    }
                },
            }
        });
        assert!(alive.is_some(), "synack {role:?}: connection vanished");
    }

    /// Count what the sender's trace shows.
    fn drain_trace(&mut self) {
        if self.role != Role::Client {
            return;
        }
        for r in self.iface.tcp_mut().drain_trace() {
            if let Some((from, to)) = self.dump {
                if r.time >= from && r.time <= to {
                    println!("{} {:?}", r.time, r.event);
                }
            }
            match r.event {
                TraceEvent::Segment {
                    dir: Direction::Sent,
                    seg,
                    ..
                } if seg.len > 0 => {
                    self.stats.data_segments += 1;
                    if seg.len < 536 {
                        self.stats.runt_segments += 1;
                    }
                    let end = seg.seq + seg.len;
                    match self.high_sent {
                        Some(h) if end.le(h) => self.stats.resent_segments += 1,
                        _ => self.high_sent = Some(end),
                    }
                }
                TraceEvent::Retransmit { cause, .. } => match cause {
                    RetransmitCause::Timeout => self.stats.rtos += 1,
                    RetransmitCause::FastRetransmit => self.stats.fast_retransmits += 1,
                    RetransmitCause::Sack | RetransmitCause::TailLossProbe => {
                        self.stats.sack_retransmits += 1
                    }
                },
                TraceEvent::Congestion { .. } => {
                    self.stats.congestion_events += 1;
                    self.stats.slow_start_end.get_or_insert(r.time);
                }
                _ => {}
            }
        }
    }
}

impl Node for SynackHost {
    fn receive(&mut self, now: Instant, packet: &[u8]) {
        self.iface.receive(now, packet);
    }

    fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
        self.app(now);
        self.iface.transmit(now, send);
        self.drain_trace();
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.iface.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.iface.handle_timeout(now);
    }
}

impl Probe for SynackHost {
    fn delivered(&self) -> u64 {
        self.sink.received
    }

    fn sender_stats(&self) -> Option<SenderStats> {
        Some(self.stats)
    }

    fn established(&self) -> bool {
        self.conn
            .and_then(|id| self.iface.tcp().conn(id))
            .is_some_and(|c| c.state() == State::Established)
    }
}

// -------------------------------------------------------------------------------------------
// smoltcp.

mod smol {
    use super::*;

    use smoltcp::iface::{Config as IfaceConfig, Interface as SmolIface, SocketHandle, SocketSet};
    use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SmolInstant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

    thread_local! {
        /// The virtual clock in milliseconds, for smoltcp's timestamp generator (a plain `fn`).
        static CLOCK_MS: Cell<u32> = const { Cell::new(0) };
    }

    fn tsval() -> u32 {
        CLOCK_MS.with(Cell::get)
    }

    fn smol_time(now: Instant) -> SmolInstant {
        SmolInstant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
    }

    /// A device backed by two queues: `rx` filled by [`Node::receive`], `tx` drained by
    /// [`Node::transmit`].
    pub struct QueueDevice {
        rx: VecDeque<Vec<u8>>,
        tx: VecDeque<Vec<u8>>,
        mtu: usize,
    }

    pub struct RxTok(Vec<u8>);

    impl phy::RxToken for RxTok {
        fn consume<R, F>(self, f: F) -> R
        where
            F: FnOnce(&[u8]) -> R,
        {
            f(&self.0)
        }
    }

    pub struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

    impl phy::TxToken for TxTok<'_> {
        fn consume<R, F>(self, len: usize, f: F) -> R
        where
            F: FnOnce(&mut [u8]) -> R,
        {
            let mut p = vec![0; len];
            let r = f(&mut p);
            self.0.push_back(p);
            r
        }
    }

    impl Device for QueueDevice {
        type RxToken<'a>
            = RxTok
        where
            Self: 'a;
        type TxToken<'a>
            = TxTok<'a>
        where
            Self: 'a;

        fn receive(&mut self, _: SmolInstant) -> Option<(RxTok, TxTok<'_>)> {
            let p = self.rx.pop_front()?;
            Some((RxTok(p), TxTok(&mut self.tx)))
        }

        fn transmit(&mut self, _: SmolInstant) -> Option<TxTok<'_>> {
            Some(TxTok(&mut self.tx))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ip;
            caps.max_transmission_unit = self.mtu;
            caps.checksum = ChecksumCapabilities::default();
            caps
        }
    }

    /// A smoltcp host: one interface (Medium::Ip, one IPv4 address), one TCP socket.
    pub struct SmolHost {
        iface: SmolIface,
        dev: QueueDevice,
        sockets: SocketSet<'static>,
        socket: SocketHandle,
        role: Role,
        now: Instant,
        sent: u64,
        sink: Sink,
    }

    impl SmolHost {
        pub(crate) fn new(role: Role, seed: u64, recv_buffer: usize) -> SmolHost {
            let mut dev = QueueDevice {
                rx: VecDeque::new(),
                tx: VecDeque::new(),
                mtu: 1500,
            };
            let mut config = IfaceConfig::new(HardwareAddress::Ip);
            config.random_seed = seed ^ (role as u64 + 1);
            let mut iface = SmolIface::new(config, &mut dev, smol_time(Instant::ZERO));
            let addr = match role {
                Role::Client => CLIENT_V4,
                Role::Server => SERVER_V4,
            };
            iface.update_ip_addrs(|a| {
                a.push(IpCidr::new(IpAddress::Ipv4(addr), 15))
                    .expect("smoltcp: address");
            });
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; recv_buffer]),
                tcp::SocketBuffer::new(vec![0; BUFFER]),
            );
            s.set_congestion_control(tcp::CongestionControl::Cubic);
            s.set_tsval_generator(Some(tsval));
            if role == Role::Server {
                s.listen(SERVER_PORT).expect("smoltcp: listen");
            }
            let mut sockets = SocketSet::new(Vec::new());
            let socket = sockets.add(s);
            SmolHost {
                iface,
                dev,
                sockets,
                socket,
                role,
                now: Instant::ZERO,
                sent: 0,
                sink: Sink::new(),
            }
        }

        pub(crate) fn connect(&mut self) {
            let cx = self.iface.context();
            self.sockets
                .get_mut::<tcp::Socket>(self.socket)
                .connect(
                    cx,
                    (IpAddress::Ipv4(SERVER_V4), SERVER_PORT),
                    (IpAddress::Ipv4(CLIENT_V4), CLIENT_PORT),
                )
                .expect("smoltcp: connect");
        }

        fn poll(&mut self, now: Instant) {
            self.now = now;
            CLOCK_MS.with(|c| c.set(now.as_millis() as u32));
            self.iface
                .poll(smol_time(now), &mut self.dev, &mut self.sockets);
        }

        fn app(&mut self) {
            let s = self.sockets.get_mut::<tcp::Socket>(self.socket);
            match self.role {
                Role::Client => {
                    if !s.may_send() {
                        return;
                    }
                    loop {
                        match s.send_slice(stream_slice(self.sent, u64::MAX)) {
                            Ok(0) => break,
                            Ok(n) => self.sent += n as u64,
                            Err(e) => panic!("smoltcp client: send failed: {e:?}"),
                        }
                    }
                }
                Role::Server => {
                    while s.can_recv() {
                        match s.recv_slice(&mut self.sink.buf) {
                            Ok(0) => break,
                            Ok(n) => self.sink.take("smoltcp server", n),
                            Err(e) => panic!("smoltcp server: recv failed: {e:?}"),
                        }
                    }
                }
            }
        }
    }

    impl Node for SmolHost {
        fn receive(&mut self, _now: Instant, packet: &[u8]) {
            self.dev.rx.push_back(packet.to_vec());
        }

        fn transmit(&mut self, now: Instant, send: &mut dyn FnMut(&[u8])) {
            self.poll(now);
            self.app();
            self.poll(now);
            while let Some(p) = self.dev.tx.pop_front() {
                send(&p);
            }
        }

        fn poll_timeout(&mut self) -> Option<Instant> {
            let at = self.iface.poll_at(smol_time(self.now), &self.sockets)?;
            Some(Instant::from_micros(
                u64::try_from(at.total_micros()).unwrap_or(0),
            ))
        }

        fn handle_timeout(&mut self, now: Instant) {
            self.poll(now);
        }
    }

    impl Probe for SmolHost {
        fn delivered(&self) -> u64 {
            self.sink.received
        }

        fn sender_stats(&self) -> Option<SenderStats> {
            None
        }

        fn established(&self) -> bool {
            self.sockets.get::<tcp::Socket>(self.socket).state() == tcp::State::Established
        }
    }
}

// -------------------------------------------------------------------------------------------
// Runs.

/// The link of the table: the data direction (client → server) lossy.
fn paths(loss: f64) -> (PathConfig, PathConfig) {
    let base = PathConfig::delay(ONE_WAY)
        .with_bandwidth(LINK_BPS)
        .with_queue_limit(QUEUE_BYTES);
    (base.clone().with_loss(loss), base)
}

/// The synack configuration of a column.
pub fn synack_config(congestion: Algorithm, sack: bool, recv_buffer: usize) -> Config {
    Config {
        congestion,
        sack,
        send_buffer: BUFFER,
        recv_buffer,
        ..Config::default()
    }
}

/// `GOODPUT_DUMP=label/loss%/seed/from_ms/to_ms` (e.g. `CUBIC+SACK/0/1/400/2000`) prints the
/// sender's trace records of that run (4 MiB buffers) in that window of virtual time.
fn dump_window(stack: Stack, sc: Scenario) -> Option<(Instant, Instant)> {
    let v = std::env::var("GOODPUT_DUMP").ok()?;
    let f: Vec<&str> = v.split('/').collect();
    let [label, loss, seed, from, to] = f[..] else {
        return None;
    };
    let loss: f64 = loss.parse().ok()?;
    let matches = label == stack.label()
        && sc.recv_buffer == BUFFER
        && (loss / 100.0 - sc.loss).abs() < 1e-9
        && seed.parse() == Ok(sc.seed);
    matches.then_some((
        Instant::from_millis(from.parse().ok()?),
        Instant::from_millis(to.parse().ok()?),
    ))
}

/// Run one scenario on one stack.
pub fn run(stack: Stack, sc: Scenario) -> Outcome {
    let (c2s, s2c) = paths(sc.loss);
    match stack {
        Stack::Synack { congestion, sack } => {
            let config = synack_config(congestion, sack, sc.recv_buffer);
            let mut net = Network::new(sc.seed);
            let c = SynackHost::new(Role::Client, config.clone(), sc.seed);
            let s = SynackHost::new(Role::Server, config, sc.seed);
            let client = net.add_host("client", &[IpAddr::V4(CLIENT_V4)], c);
            let server = net.add_host("server", &[IpAddr::V4(SERVER_V4)], s);
            net.link(client, server, c2s, s2c);
            net.host_mut(client).connect(Instant::ZERO);
            net.host_mut(client).dump = dump_window(stack, sc);
            measure(stack, sc, net, client, server)
        }
        Stack::Smoltcp => {
            let mut net = Network::new(sc.seed);
            let c = smol::SmolHost::new(Role::Client, sc.seed, sc.recv_buffer);
            let s = smol::SmolHost::new(Role::Server, sc.seed, sc.recv_buffer);
            let client = net.add_host("client", &[IpAddr::V4(CLIENT_V4)], c);
            let server = net.add_host("server", &[IpAddr::V4(SERVER_V4)], s);
            net.link(client, server, c2s, s2c);
            net.host_mut(client).connect();
            measure(stack, sc, net, client, server)
        }
    }
}

fn measure<N: Node + Probe>(
    stack: Stack,
    sc: Scenario,
    mut net: Network<N>,
    client: HostId,
    server: HostId,
) -> Outcome {
    assert!(
        sc.warmup < sc.duration && sc.duration.subsec_nanos() == 0 && sc.warmup.subsec_nanos() == 0,
        "duration and warmup are whole seconds, warmup first"
    );
    net.flush();
    let mut delivered_per_second = Vec::new();
    for s in 1..=sc.duration.as_secs() {
        net.run_until(Instant::from_millis(s * 1000));
        delivered_per_second.push(net.host(server).delivered());
    }
    let out = Outcome {
        stack,
        scenario: sc,
        delivered_per_second,
        sender: net.host(client).sender_stats(),
        data_path: *net.path_stats(client, server).expect("linked"),
    };
    assert!(
        out.delivered() > 0,
        "{}: nothing delivered at {:.1}% loss, seed {}",
        stack.label(),
        sc.loss * 100.0,
        sc.seed
    );
    for (who, id) in [("client", client), ("server", server)] {
        assert!(
            net.host(id).established(),
            "{}: the {who}'s connection is no longer established at the end ({:.1}% loss, seed \
             {})",
            stack.label(),
            sc.loss * 100.0,
            sc.seed
        );
    }
    out
}

// -------------------------------------------------------------------------------------------
// The table.

/// The rows: loss rates.
pub const LOSS_RATES: [f64; 5] = [0.0, 0.001, 0.01, 0.02, 0.05];
/// The receive buffer of the supplementary 0 % row: above the BDP (500 kB), below BDP plus a
/// full queue (1 MB), so the window can fill the link but never overflow the queue.
pub const CAPPED_RECV_BUFFER: usize = 768 << 10;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs every job on up to `threads` threads; each run is deterministic, so the order they
/// finish in does not matter. Results come back in job order.
fn run_all(jobs: &[(Stack, Scenario)], threads: usize) -> Vec<Outcome> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(stack, sc)) = jobs.get(i) else {
                    break;
                };
                let out = run(stack, sc);
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, out));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}

const LABEL_W: usize = 14;
const COL_W: usize = 14;

fn header(title: &str) {
    print!("{title:<LABEL_W$}");
    for s in Stack::ALL {
        print!("{:>COL_W$}", s.label());
    }
    println!();
}

fn loss_label(loss: f64) -> String {
    format!("{}%", loss * 100.0)
}

#[allow(dead_code)]
fn main() {
    let secs = env_u64("GOODPUT_SECS", 60);
    let warmup = env_u64("GOODPUT_WARMUP", 2);
    let seeds = env_u64("GOODPUT_SEEDS", 5);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(env_u64("GOODPUT_THREADS", 2) as usize);
    let started = std::time::Instant::now();

    // Rows × columns × seeds, then the capped-window 0 % row. Without loss the seed changes
    // nothing but the ISNs: one run suffices.
    let mut jobs = Vec::new();
    for &loss in &LOSS_RATES {
        let n = if loss == 0.0 { 1 } else { seeds };
        for &stack in &Stack::ALL {
            for seed in 1..=n {
                jobs.push((stack, Scenario::new(loss, seed, secs, warmup)));
            }
        }
    }
    for &stack in &Stack::ALL {
        let sc = Scenario {
            recv_buffer: CAPPED_RECV_BUFFER,
            ..Scenario::new(0.0, 1, secs, warmup)
        };
        jobs.push((stack, sc));
    }
    let results = run_all(&jobs, threads);
    let cell = |loss: f64, stack: Stack, recv_buffer: usize| -> Vec<&Outcome> {
        results
            .iter()
            .filter(|o| {
                o.stack == stack && o.scenario.loss == loss && o.scenario.recv_buffer == recv_buffer
            })
            .collect()
    };
    let avg = |loss: f64, stack: Stack, recv_buffer: usize, f: &dyn Fn(&Outcome) -> f64| {
        mean(cell(loss, stack, recv_buffer).into_iter().map(f))
    };
    let link = LINK_BPS as f64;

    println!();
    println!("synack goodput table (issue 3): `cargo bench -p synack-stack --bench goodput`");
    println!(
        "Goodput = bytes read in order by the receiving application (verified byte-exact) per \
         virtual second, in Mbit/s."
    );
    println!(
        "Link: 100 Mbit/s each way, 20 ms one-way delay (RTT 40 ms), drop-tail queue of {QUEUE_BYTES} \
         bytes (1 BDP) per direction; Bernoulli loss on the data direction (client -> server) only."
    );
    println!(
        "Run: {secs} s of virtual time from the SYN; 'after slow start' excludes the first \
         {warmup} s. Lossy rows: mean of seeds 1..={seeds}; 0 % rows: seed 1."
    );
    println!(
        "Both stacks: MTU 1500, timestamps, {} MiB send and receive buffers. smoltcp 0.14: CUBIC, \
         no SACK-based recovery, 1 s minimum RTO. Ceiling: 1448/1500 of the link = 96.5 Mbit/s.",
        BUFFER >> 20
    );

    let table = |title: &str, f: &dyn Fn(&Outcome) -> f64| {
        println!();
        print!("{title:<LABEL_W$}");
        for s in Stack::ALL {
            print!("{:>COL_W$}", s.label());
        }
        println!("{:>COL_W$}", "best/smoltcp");
        for &loss in &LOSS_RATES {
            print!("{:<LABEL_W$}", loss_label(loss));
            let vals: Vec<f64> = Stack::ALL
                .iter()
                .map(|&s| avg(loss, s, BUFFER, f))
                .collect();
            for v in &vals {
                print!("{:>COL_W$}", format!("{:.2}", v / 1e6));
            }
            let best = vals[..4].iter().copied().fold(0.0, f64::max);
            println!("{:>COL_W$}", format!("{:.2}x", best / vals[4]));
        }
        print!("{:<LABEL_W$}", "0% of link");
        for &s in &Stack::ALL {
            let v = avg(0.0, s, BUFFER, f);
            print!("{:>COL_W$}", format!("{:.1}%", v / link * 100.0));
        }
        println!();
        print!("{:<LABEL_W$}", "0%, rwnd 768K");
        for &s in &Stack::ALL {
            let v = avg(0.0, s, CAPPED_RECV_BUFFER, f);
            print!(
                "{:>COL_W$}",
                format!("{:.2} {:.0}%", v / 1e6, v / link * 100.0)
            );
        }
        println!();
    };
    table(&format!("after {warmup}s"), &|o: &Outcome| o.steady_bps());
    table("whole run", &|o: &Outcome| o.goodput_bps());
    println!(
        "('0%, rwnd 768K': receive buffers of 768 KiB, between the BDP and BDP + queue, so the \
         window can fill the link but never overflow the queue.)"
    );

    println!();
    println!("synack sender (from its trace), mean per run:");
    let synack_table = |title: &str, f: &dyn Fn(&[&Outcome]) -> String| {
        print!("{title:<LABEL_W$}");
        for s in &Stack::ALL[..4] {
            print!("{:>COL_W$}", s.label());
        }
        println!();
        for &loss in &LOSS_RATES {
            print!("{:<LABEL_W$}", loss_label(loss));
            for &s in &Stack::ALL[..4] {
                print!("{:>COL_W$}", f(&cell(loss, s, BUFFER)));
            }
            println!();
        }
    };
    let m = |runs: &[&Outcome], f: &dyn Fn(&SenderStats) -> u64| {
        mean(runs.iter().map(|o| f(&o.sender.unwrap_or_default()) as f64))
    };
    synack_table("resent/sent", &|r| {
        format!(
            "{:.0}/{:.0}",
            m(r, &|x| x.resent_segments),
            m(r, &|x| x.data_segments)
        )
    });
    println!("  (data segments sent again, any cause including go-back-N after an RTO / all sent)");
    synack_table("runts", &|r| format!("{:.0}", m(r, &|x| x.runt_segments)));
    println!("  (data segments under 536 bytes)");
    synack_table("RTO/FR/SACK", &|r| {
        format!(
            "{:.1}/{:.0}/{:.0}",
            m(r, &|x| x.rtos),
            m(r, &|x| x.fast_retransmits),
            m(r, &|x| x.sack_retransmits)
        )
    });
    println!(
        "  (retransmission timeouts / segments resent by fast retransmit or partial ACK / by SACK \
         recovery)"
    );
    synack_table("1st cong. (s)", &|r| {
        let t = mean(r.iter().map(|o| {
            o.sender
                .and_then(|x| x.slow_start_end)
                .map_or(f64::NAN, |t| t.as_micros() as f64 / 1e6)
        }));
        format!("{t:.2}")
    });
    println!("  (virtual time of the first congestion event: where slow start ended)");

    println!();
    println!("Data direction, mean per run: packets dropped at random / by the full queue");
    header("");
    for &loss in &LOSS_RATES {
        print!("{:<LABEL_W$}", loss_label(loss));
        for &s in &Stack::ALL {
            let l = avg(loss, s, BUFFER, &|o: &Outcome| {
                o.data_path.dropped_loss as f64
            });
            let q = avg(loss, s, BUFFER, &|o: &Outcome| {
                o.data_path.dropped_queue as f64
            });
            print!("{:>COL_W$}", format!("{l:.0}/{q:.0}"));
        }
        println!();
    }

    println!();
    println!(
        "0 % row, goodput in each of the first 10 virtual seconds, and over the second half of \
         the run (Mbit/s):"
    );
    for &s in &Stack::ALL {
        for o in cell(0.0, s, BUFFER) {
            let per: Vec<String> = o
                .delivered_per_second
                .iter()
                .take(10)
                .scan(0u64, |prev, &d| {
                    let v = d - *prev;
                    *prev = d;
                    Some(format!("{:5.1}", v as f64 * 8.0 / 1e6))
                })
                .collect();
            let half = o.delivered_per_second.len() / 2;
            let late = (o.delivered() - o.delivered_per_second[half - 1]) as f64 * 8.0
                / (o.delivered_per_second.len() - half) as f64;
            println!(
                "{:<LABEL_W$}{}   | s {}-{}: {:.2}",
                s.label(),
                per.join(" "),
                half,
                o.delivered_per_second.len(),
                late / 1e6
            );
        }
    }
    if std::env::var_os("GOODPUT_SERIES").is_some() {
        println!();
        for o in &results {
            let per: Vec<String> = o
                .delivered_per_second
                .iter()
                .scan(0u64, |prev, &d| {
                    let v = d - *prev;
                    *prev = d;
                    Some(format!("{:.1}", v as f64 * 8.0 / 1e6))
                })
                .collect();
            println!(
                "{} loss {}% seed {} rwnd {}: {}",
                o.stack.label(),
                o.scenario.loss * 100.0,
                o.scenario.seed,
                o.scenario.recv_buffer,
                per.join(" ")
            );
        }
    }
    println!();
    eprintln!(
        "{} runs in {:.1} s of wall-clock time on {threads} thread(s)",
        results.len(),
        started.elapsed().as_secs_f64()
    );
}
