//! synack's TCP against smoltcp 0.14, side by side in one criterion run.
//!
//! Groups:
//! - `churn`: connect, one byte each way, close (the client closes first, so TIME-WAIT lands on
//!   it), in connections per second (`Throughput::Elements(1)` per connection);
//! - `bulk_mtu1500`, `bulk_mtu65535`: 64 MiB from client to server over one long-lived
//!   connection with 4 MiB send and receive buffers on both ends (`Throughput::Bytes`).
//!
//! Each group has `synack` and `smoltcp` (configured like synack, see "Like with like" below);
//! `churn` and `bulk_mtu65535` also have `smoltcp_no_cc_no_ts_no_csum`, for reference: smoltcp
//! over `phy::Loopback` as it comes (MTU 65535, checksums neither computed nor verified), with
//! congestion control turned off and no timestamps. That is not smoltcp's default here: built
//! with `socket-tcp-cubic`, its sockets default to CUBIC; this variant turns it off, so it shows
//! smoltcp's per-packet path with the least work, not a like-for-like comparison.
//!
//! Both stacks run on a fake clock that the driver advances by `TICK_US` (10 µs) per round;
//! neither ever reads the wall clock. A round is: application steps on both ends, then the clock
//! ticks, timers due run, and packets move until both sides are quiet.
//!
//! - synack: two `Interface`s (client 198.18.0.1, server 198.18.0.2) joined back to back in
//!   memory: every packet one `transmit`s is handed straight to the other's `receive`.
//! - smoltcp: one `Interface` owning both addresses, with the client and server sockets in one
//!   `SocketSet` over `phy::Loopback` (Medium::Ip), as smoltcp's loopback example does. The
//!   `smoltcp` function wraps the Loopback only to report the MTU under test and smoltcp's
//!   default `ChecksumCapabilities` (compute and verify every checksum: synack always does);
//!   the Loopback itself reports MTU 65535 and ignores checksums.
//!
//! Like with like: smoltcp is built with `socket-tcp-cubic` and its sockets get a timestamp
//! generator, because synack's default `Config` runs CUBIC with RFC 7323 timestamps. SACK is
//! offered by synack but no segment is ever lost here, so no SACK block is ever sent.
//!
//! TIME-WAIT: both stacks keep it. After each churn connection the driver jumps the fake clock
//! past the client's TIME-WAIT (synack: 2·MSL with the default `msl` of 30 s; smoltcp: its fixed
//! 10 s) and runs the timers, so every measured connection pays for entering *and* leaving
//! TIME-WAIT, and at most one TIME-WAIT entry exists at a time in either stack. (smoltcp would
//! also let `connect` reuse a socket straight out of TIME-WAIT; we do not use that shortcut.)
//!
//! Payloads are verified byte-exact once, outside the timed loops, so a broken transfer cannot
//! be measured silently; the timed loops still check byte counts and final states.
//!
//! The build profile matters for churn. Under the workspace's bench profile (no LTO), each
//! crate's code is inlined only within that crate, unless a function is marked `#[inline]`.
//! Under `lto = "fat"` with one codegen unit, smoltcp's whole path inlines into one function and
//! gains about a third; synack gains about a tenth. To compare both ways, run the bench once as
//! is and once with `CARGO_PROFILE_BENCH_LTO=fat CARGO_PROFILE_BENCH_CODEGEN_UNITS=1`.

use std::time::Duration as StdDuration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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
/// Connections checked byte-exact before churn is timed.
const VERIFY_CONNECTIONS: u64 = 2_000;
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

mod synack {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use synack_stack::Interface;
    use synack_tcp::{Config, ConnId, Duration, Instant, ListenerId, RecvError, State};

    use super::*;

    const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

    /// Two interfaces wired back to back, and the fake clock.
    pub struct Pair {
        client: Interface,
        server: Interface,
        now: Instant,
        listener: ListenerId,
        /// Packets moved, both directions.
        pub packets: u64,
        rounds: u64,
    }

    impl Pair {
        pub fn new(config: Config) -> Pair {
            let client = Interface::new(config.clone(), &[CLIENT_IP], [1; 16]);
            let mut server = Interface::new(config, &[SERVER_IP], [2; 16]);
            let listener = server
                .tcp_mut()
                .listen(SocketAddr::new(SERVER_IP, SERVER_PORT), 128)
                .expect("listen");
            Pair {
                client,
                server,
                now: Instant::ZERO,
                listener,
                packets: 0,
                rounds: 0,
            }
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
            let Pair { client, server, .. } = self;
            for iface in [&mut *client, &mut *server] {
                if iface.poll_timeout().is_some_and(|t| t <= now) {
                    iface.handle_timeout(now);
                }
            }
            loop {
                let mut moved = 0u64;
                client.transmit(now, &mut |p| {
                    server.receive(now, p);
                    moved += 1;
                });
                server.transmit(now, &mut |p| {
                    client.receive(now, p);
                    moved += 1;
                });
                self.packets += moved;
                if moved == 0 {
                    break;
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
    }

    /// Connect, one byte each way, client closes, server closes, TIME-WAIT expires.
    pub struct Churn {
        pair: Pair,
        count: u64,
        msl: Duration,
    }

    impl Churn {
        pub fn new() -> Churn {
            let config = Config::default();
            let msl = config.msl;
            Churn {
                pair: Pair::new(config),
                count: 0,
                msl,
            }
        }

        pub fn packets_per_connection(&self) -> f64 {
            self.pair.packets as f64 / self.count as f64
        }

        pub fn connection(&mut self) {
            let byte = churn_byte(self.count);
            self.count += 1;
            let p = &mut self.pair;
            // MAX_ROUNDS bounds one connection, not the whole run.
            p.rounds = 0;
            let c = p.connect();
            let now = p.now;
            // synack takes bytes in SYN-SENT; they leave with the handshake's last ACK.
            let n = p.client.tcp_mut().with_conn(now, c, |c| c.send(&[byte]));
            assert_eq!(n, Some(Ok(1)));
            p.round();
            let mut server_conn = None;
            let mut echoed = false;
            let mut server_closed = false;
            let mut client_closed = false;
            loop {
                let now = p.now;
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
                if !client_closed {
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
        pub fn new(mtu: usize) -> Bulk {
            let config = Config {
                mtu,
                send_buffer: BULK_BUFFER,
                recv_buffer: BULK_BUFFER,
                ..Config::default()
            };
            let mut pair = Pair::new(config);
            let client = pair.connect();
            let mut server = None;
            while server.is_none() {
                pair.round();
                server = pair.server.tcp_mut().accept(pair.listener);
            }
            let server = server.unwrap();
            assert_eq!(
                pair.client.tcp().conn(client).map(|c| c.state()),
                Some(State::Established)
            );
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
            self.pair.packets
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
}

mod smol {
    use std::sync::atomic::{AtomicU32, Ordering};

    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Loopback, Medium};
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

    /// How a smoltcp run is set up.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Flavor {
        /// The MTU under test, checksums computed and verified, CUBIC and timestamps: as
        /// synack's defaults.
        Matched { mtu: usize },
        /// `phy::Loopback` as it comes (MTU 65535, checksums ignored), congestion control off
        /// (the default would be CUBIC in this build) and no timestamps (the default).
        NoCcNoTsNoCsum,
    }

    /// `phy::Loopback`, reporting chosen capabilities and counting packets in and out.
    pub struct Dev {
        inner: Loopback,
        caps: DeviceCapabilities,
        sent: u64,
        received: u64,
    }

    impl Dev {
        fn new(flavor: Flavor) -> Dev {
            let inner = Loopback::new(Medium::Ip);
            let mut caps = inner.capabilities();
            if let Flavor::Matched { mtu } = flavor {
                caps.max_transmission_unit = mtu;
                caps.checksum = ChecksumCapabilities::default();
            }
            Dev {
                inner,
                caps,
                sent: 0,
                received: 0,
            }
        }

        fn pending(&self) -> u64 {
            self.sent - self.received
        }
    }

    pub struct Tx<'a> {
        inner: <Loopback as Device>::TxToken<'a>,
        sent: &'a mut u64,
    }

    impl phy::TxToken for Tx<'_> {
        fn consume<R, F>(self, len: usize, f: F) -> R
        where
            F: FnOnce(&mut [u8]) -> R,
        {
            *self.sent += 1;
            self.inner.consume(len, f)
        }
    }

    impl Device for Dev {
        type RxToken<'a>
            = <Loopback as Device>::RxToken<'a>
        where
            Self: 'a;
        type TxToken<'a>
            = Tx<'a>
        where
            Self: 'a;

        fn receive(&mut self, ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
            let Dev {
                inner,
                sent,
                received,
                ..
            } = self;
            let (rx, tx) = inner.receive(ts)?;
            *received += 1;
            Some((rx, Tx { inner: tx, sent }))
        }

        fn transmit(&mut self, ts: Instant) -> Option<Self::TxToken<'_>> {
            let Dev { inner, sent, .. } = self;
            inner.transmit(ts).map(|tx| Tx { inner: tx, sent })
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
        pub fn new(flavor: Flavor, buffer: usize) -> Pair {
            let mut dev = Dev::new(flavor);
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
            match flavor {
                Flavor::Matched { .. } => {
                    s.set_congestion_control(tcp::CongestionControl::Cubic);
                    s.set_tsval_generator(Some(tsval));
                }
                Flavor::NoCcNoTsNoCsum => {
                    s.set_congestion_control(tcp::CongestionControl::None);
                    s.set_tsval_generator(None);
                }
            }
            s
        }

        fn reset_socket_options(&mut self, h: SocketHandle) {
            // `connect`/`listen` reset the socket but keep these; set them anyway in case a
            // TIME-WAIT or RST path cleared the timestamp generator (smoltcp drops it when a
            // peer's SYN has no timestamp).
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if let Flavor::Matched { .. } = self.flavor {
                s.set_tsval_generator(Some(tsval));
            }
        }

        pub fn packets(&self) -> u64 {
            self.dev.sent
        }

        fn round(&mut self) {
            self.rounds += 1;
            assert!(self.rounds < MAX_ROUNDS, "smoltcp: scenario stuck");
            self.advance(Duration::from_micros(TICK_US));
        }

        /// Tick the clock, then poll until the loopback queue stays empty.
        fn advance(&mut self, by: Duration) {
            self.now += by;
            CLOCK_MS.store(self.now.total_millis() as u32, Ordering::Relaxed);
            loop {
                self.iface.poll(self.now, &mut self.dev, &mut self.sockets);
                if self.dev.pending() == 0 {
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
    }

    pub struct Churn {
        pair: Pair,
        count: u64,
    }

    impl Churn {
        pub fn new(flavor: Flavor) -> Churn {
            // The buffer sizes of synack's default `Config` (1 MiB), so both advertise the same
            // windows. smoltcp allocates them once per socket; synack's rings grow lazily.
            let buffer = synack_tcp::Config::default().recv_buffer;
            Churn {
                pair: Pair::new(flavor, buffer),
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
        pub fn new(flavor: Flavor) -> Bulk {
            let mut pair = Pair::new(flavor, BULK_BUFFER);
            pair.listen();
            pair.connect(40000);
            while !(pair.client().state() == tcp::State::Established
                && pair.server().state() == tcp::State::Established)
            {
                pair.round();
            }
            // smoltcp drops its timestamp generator when the peer's SYN has no timestamp: both
            // still having one means timestamps were negotiated, as synack's are.
            let ts = flavor != Flavor::NoCcNoTsNoCsum;
            assert_eq!(pair.client().timestamp_enabled(), ts);
            assert_eq!(pair.server().timestamp_enabled(), ts);
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
}

fn configure(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.warm_up_time(StdDuration::from_secs(1));
    g.measurement_time(StdDuration::from_secs(3));
    g.sample_size(20);
}

// Each scenario is built (and verified) the first time its benchmark runs, so a filter such as
// `churn/synack` builds nothing else, and a profile of one function shows only that function.

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("churn");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    let mut syn = None;
    g.bench_function("synack", |b| {
        let s = syn.get_or_insert_with(|| {
            let mut s = synack::Churn::new();
            s.verify(VERIFY_CONNECTIONS);
            eprintln!(
                "churn/synack: {:.1} packets per connection",
                s.packets_per_connection()
            );
            s
        });
        b.iter(|| s.connection())
    });
    for (name, flavor) in [
        ("smoltcp", smol::Flavor::Matched { mtu: 1500 }),
        ("smoltcp_no_cc_no_ts_no_csum", smol::Flavor::NoCcNoTsNoCsum),
    ] {
        let mut smol = None;
        g.bench_function(name, |b| {
            let s = smol.get_or_insert_with(|| {
                let mut s = smol::Churn::new(flavor);
                s.verify(VERIFY_CONNECTIONS);
                eprintln!(
                    "churn/{name}: {:.1} packets per connection",
                    s.packets_per_connection()
                );
                s
            });
            b.iter(|| s.connection())
        });
    }
    g.finish();
}

fn bulk_at(c: &mut Criterion, mtu: usize, with_bare: bool) {
    // A first transfer, checked byte by byte, also opens the congestion windows: the timed
    // iterations measure the steady state of a long-lived connection.
    let group = format!("bulk_mtu{mtu}");
    let mut g = c.benchmark_group(&group);
    configure(&mut g);
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BULK_BYTES));
    let mut syn = None;
    g.bench_function("synack", |b| {
        let s = syn.get_or_insert_with(|| {
            let mut s = synack::Bulk::new(mtu);
            s.transfer(BULK_BYTES, true);
            eprintln!(
                "{group}/synack: mss {}, {} packets per 64 MiB",
                s.mss(),
                s.packets()
            );
            s
        });
        b.iter(|| s.transfer(BULK_BYTES, false))
    });
    let mut flavors = vec![("smoltcp", smol::Flavor::Matched { mtu })];
    if with_bare {
        flavors.push(("smoltcp_no_cc_no_ts_no_csum", smol::Flavor::NoCcNoTsNoCsum));
    }
    for (name, flavor) in flavors {
        let mut smol = None;
        g.bench_function(name, |b| {
            let s = smol.get_or_insert_with(|| {
                let mut s = smol::Bulk::new(flavor);
                s.transfer(BULK_BYTES, true);
                eprintln!("{group}/{name}: {} packets per 64 MiB", s.packets());
                s
            });
            b.iter(|| s.transfer(BULK_BYTES, false))
        });
    }
    g.finish();
}

fn bulk(c: &mut Criterion) {
    bulk_at(c, 1500, false);
    bulk_at(c, 65535, true);
}

criterion_group!(benches, churn, bulk);
criterion_main!(benches);
