//! What idle connections cost, and whether they slow the busy ones: N established connections
//! between two in-memory `Interface`s in this one process, counted by a counting allocator
//! (every byte the heap holds) and by the resident set size; then connection churn among them
//! against churn with none.
//!
//! ```text
//! cargo bench -p synack-stack --bench idle_memory -- [N] [CHURN]
//! ```
//!
//! N defaults to 100 000 idle connections (`1000000` for the issue's million), CHURN to
//! 20 000 connections timed each way. Both ends of every connection live in this one process
//! (two `Interface`s, a TCB in each), so the heap and the RSS counted are those of 2·N TCBs:
//! printed per connection (both ends) and per TCB (one end, what issue 15's "1 KiB per idle
//! connection" is about). Before each measurement the pair sits idle for 10 s of virtual time,
//! so that timers stopped since (the handshake's retransmission timers, delayed ACKs) have run
//! out of the timer heap as they would on any host left idle that long.
//! - `established, never used`: after the handshakes, nothing sent;
//! - `after 1 B each way`: every connection moved one byte each way and the application read
//!   it: buffers drained (a ring is released once drained, so this should match the first);
//! - `TIME-WAIT`: bytes per TIME-WAIT entry (the client closes first on N/10 connections of a
//!   separate pair and keeps TIME-WAIT for each);
//! - churn (connect, 1 B each way, client closes first, server closes, TIME-WAIT expires after
//!   2·MSL of virtual time) with the N idle connections present and with none, and the ratio.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant as WallInstant;

use synack_stack::Interface;
use synack_tcp::{Config, ConnId, Duration, Instant, ListenerId, RecvError, State};

#[path = "../../tcp/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::held;

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const SERVER_PORT: u16 = 80;
/// Local ports per client address (the ephemeral range, 32768..=60999).
const PORTS_PER_IP: usize = 28_000;
const TICK: Duration = Duration::from_micros(10);

fn client_ip(i: usize) -> IpAddr {
    let k = (i / PORTS_PER_IP) as u32;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 1)) + k))
}

fn client_port(i: usize) -> u16 {
    32768 + (i % PORTS_PER_IP) as u16
}

/// Two interfaces joined back to back (packets cross at once), and the fake clock.
struct Pair {
    client: Interface,
    server: Interface,
    listener: ListenerId,
    now: Instant,
    /// Reused packet buffers, each way.
    a: Vec<Vec<u8>>,
    b: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl Pair {
    /// `client_ips` addresses on the client (each gives `PORTS_PER_IP` connections).
    fn new(client_ips: usize) -> Pair {
        let config = Config {
            syn_backlog: 4096,
            ..Config::default()
        };
        let addrs: Vec<IpAddr> = (0..client_ips.max(1))
            .map(|k| client_ip(k * PORTS_PER_IP))
            .collect();
        let client = Interface::new(config.clone(), &addrs, [1; 16]);
        let mut server = Interface::new(config, &[SERVER_IP], [2; 16]);
        let listener = server
            .tcp_mut()
            .listen(SocketAddr::new(SERVER_IP, SERVER_PORT), 4096)
            .unwrap();
        Pair {
            client,
            server,
            listener,
            now: Instant::ZERO,
            a: Vec::new(),
            b: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Move packets until both sides are quiet.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let Pair {
                client,
                server,
                a,
                b,
                spare,
                ..
            } = self;
            client.transmit(now, &mut |p| {
                let mut v = spare.pop().unwrap_or_default();
                v.clear();
                v.extend_from_slice(p);
                a.push(v);
            });
            server.transmit(now, &mut |p| {
                let mut v = spare.pop().unwrap_or_default();
                v.clear();
                v.extend_from_slice(p);
                b.push(v);
            });
            if a.is_empty() && b.is_empty() {
                break;
            }
            for p in a.drain(..) {
                server.receive(now, &p);
                spare.push(p);
            }
            for p in b.drain(..) {
                client.receive(now, &p);
                spare.push(p);
            }
        }
    }

    /// Advance the clock by `by`, run due timers, move packets.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for iface in [&mut self.client, &mut self.server] {
            if iface.poll_timeout().is_some_and(|t| t <= now) {
                iface.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Sit idle for 10 s of virtual time.
    fn idle(&mut self) {
        for _ in 0..10 {
            self.advance(Duration::from_secs(1));
        }
    }

    fn connect(&mut self, i: usize) -> ConnId {
        let now = self.now;
        self.client
            .tcp_mut()
            .connect(
                now,
                client_ip(i),
                Some(client_port(i)),
                SocketAddr::new(SERVER_IP, SERVER_PORT),
            )
            .expect("connect")
    }

    /// Open connections `from..to` (held by both applications).
    fn open(&mut self, from: usize, to: usize, out: &mut Vec<(ConnId, ConnId)>) {
        let mut i = from;
        while i < to {
            let end = (i + 1000).min(to);
            let clients: Vec<ConnId> = (i..end).map(|k| self.connect(k)).collect();
            self.advance(TICK);
            for c in clients {
                let s = self
                    .server
                    .tcp_mut()
                    .accept(self.listener)
                    .expect("every SYN accepted");
                assert_eq!(
                    self.client.tcp().conn(c).map(|c| c.state()),
                    Some(State::Established)
                );
                out.push((c, s));
            }
            i = end;
        }
    }

    /// One byte each way on every connection, read by both applications.
    fn exchange_byte(&mut self, conns: &[(ConnId, ConnId)]) {
        for chunk in conns.chunks(1000) {
            let now = self.now;
            for &(c, _) in chunk {
                let n = self.client.tcp_mut().with_conn(now, c, |c| c.send(b"x"));
                assert_eq!(n, Some(Ok(1)));
            }
            self.advance(TICK);
            let now = self.now;
            for &(_, s) in chunk {
                let r = self.server.tcp_mut().with_conn(now, s, |c| {
                    let mut b = [0u8; 1];
                    assert_eq!(c.recv(&mut b), Ok(1));
                    c.send(b"y")
                });
                assert_eq!(r, Some(Ok(1)));
            }
            self.advance(TICK);
            let now = self.now;
            for &(c, _) in chunk {
                let r = self.client.tcp_mut().with_conn(now, c, |c| {
                    let mut b = [0u8; 1];
                    c.recv(&mut b)
                });
                assert_eq!(r, Some(Ok(1)));
            }
            // Delayed ACKs go out.
            self.advance(Duration::from_millis(50));
        }
    }

    /// Connect, one byte each way, client closes first, server closes, TIME-WAIT expires.
    fn churn_one(&mut self, i: usize) {
        let before = self.client.tcp().connection_count();
        let c = self.connect(i);
        self.advance(TICK);
        let s = self.server.tcp_mut().accept(self.listener).expect("accept");
        let now = self.now;
        let n = self.client.tcp_mut().with_conn(now, c, |c| c.send(b"q"));
        assert_eq!(n, Some(Ok(1)));
        self.advance(TICK);
        let now = self.now;
        let r = self.server.tcp_mut().with_conn(now, s, |c| {
            let mut b = [0u8; 1];
            assert_eq!(c.recv(&mut b), Ok(1));
            c.send(&b)
        });
        assert_eq!(r, Some(Ok(1)));
        self.advance(TICK);
        let now = self.now;
        let r = self.client.tcp_mut().with_conn(now, c, |c| {
            let mut b = [0u8; 1];
            c.recv(&mut b)
        });
        assert_eq!(r, Some(Ok(1)));
        self.client.tcp_mut().close(now, c);
        self.advance(TICK);
        let now = self.now;
        let fin = self
            .server
            .tcp_mut()
            .with_conn(now, s, |c| c.recv(&mut [0u8; 1]));
        assert_eq!(fin, Some(Err(RecvError::Finished)));
        self.server.tcp_mut().close(now, s);
        self.advance(TICK);
        assert_eq!(self.client.tcp().connection_count(), before + 1);
        let msl = self.client.tcp().config().msl;
        self.advance(msl * 2 + TICK);
        assert_eq!(self.client.tcp().connection_count(), before);
    }
}

fn per(bytes: usize, n: usize) -> f64 {
    bytes as f64 / n.max(1) as f64
}

/// Warm the pools: churn `count / 10` connections untimed.
fn warm(p: &mut Pair, from: usize, count: usize) {
    for i in 0..count / 10 {
        p.churn_one(from + i);
    }
}

/// Churn `count` connections; connections per second.
fn churn(p: &mut Pair, from: usize, count: usize) -> f64 {
    let start = WallInstant::now();
    for i in 0..count {
        p.churn_one(from + (i % (PORTS_PER_IP / 2)));
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Rounds of churn, alternating between the pair with the idle connections and the one
/// without, so that both see the same machine (a busy machine's load comes and goes).
const ROUNDS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(100_000);
    let churn_count = nums.get(1).copied().unwrap_or(20_000);
    println!(
        "size_of::<Connection>() = {} B, size_of::<TimeWait>() = {} B",
        std::mem::size_of::<synack_tcp::Connection>(),
        std::mem::size_of::<synack_tcp::conn::TimeWait>()
    );

    // N idle connections; the churn uses the last client address, unused by them.
    let ips = n.div_ceil(PORTS_PER_IP) + 1;
    let (held0, rss0) = (held(), rss());
    let mut p = Pair::new(ips);
    let mut conns = Vec::with_capacity(n);
    let t = WallInstant::now();
    p.open(0, n, &mut conns);
    let open_secs = t.elapsed().as_secs_f64();
    p.idle();
    // The handles are the application's, not the stack's.
    let handles = conns.capacity() * std::mem::size_of::<(ConnId, ConnId)>();
    let (held1, rss1) = (held() - handles, rss());
    println!(
        "{n} connections established in {open_secs:.1} s ({:.0}/s)",
        n as f64 / open_secs
    );
    let show = |what: &str, h: usize, r: usize| {
        println!(
            "{what:<28} heap {:>8.0} B/conn {:>7.0} B/TCB   RSS {:>8.0} B/conn   (heap {:.1} MiB, RSS {:.1} MiB)",
            per(h, n),
            per(h, 2 * n),
            per(r, n),
            h as f64 / (1 << 20) as f64,
            r as f64 / (1 << 20) as f64,
        )
    };
    show("established, never used", held1 - held0, rss1 - rss0);
    p.exchange_byte(&conns);
    p.idle();
    let (held2, rss2) = (held() - handles, rss());
    show("after 1 B each way", held2 - held0, rss2 - rss0);
    println!(
        "ring storage held: client {} B, server {} B",
        p.client.tcp().buffer_bytes(),
        p.server.tcp().buffer_bytes()
    );

    let churn_from = (ips - 1) * PORTS_PER_IP;
    let mut q = Pair::new(ips);
    warm(&mut p, churn_from, churn_count);
    warm(&mut q, churn_from, churn_count);
    let per_round = churn_count.div_ceil(ROUNDS);
    let (mut busy, mut alone, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let b = churn(&mut p, churn_from, per_round);
        let a = churn(&mut q, churn_from, per_round);
        busy.push(b);
        alone.push(a);
        ratios.push(b / a);
    }
    println!(
        "churn ({ROUNDS} interleaved rounds of {per_round}, medians): {:.0} conn/s alone, {:.0} conn/s among {n} idle: {:.2}x (rounds: {})",
        median(alone),
        median(busy),
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(conns);
    drop(p);
    drop(q);

    // TIME-WAIT: the client closes first on `tw` connections and keeps TIME-WAIT for each.
    let tw = (n / 10).max(1000);
    let h0 = held();
    let mut q = Pair::new(tw.div_ceil(PORTS_PER_IP));
    let mut conns = Vec::with_capacity(tw);
    q.open(0, tw, &mut conns);
    let handles = conns.capacity() * std::mem::size_of::<(ConnId, ConnId)>();
    for chunk in conns.chunks(1000) {
        let now = q.now;
        for &(c, _) in chunk {
            q.client.tcp_mut().close(now, c);
        }
        q.advance(TICK);
        let now = q.now;
        for &(_, s) in chunk {
            q.server.tcp_mut().close(now, s);
        }
        q.advance(TICK);
    }
    q.advance(Duration::from_millis(50));
    assert_eq!(q.server.tcp().connection_count(), 0);
    assert_eq!(q.client.tcp().connection_count(), tw);
    let h_tw = held() - handles;
    let msl = q.client.tcp().config().msl;
    q.advance(msl * 2 + TICK);
    assert_eq!(q.client.tcp().connection_count(), 0);
    let h_gone = held() - handles;
    // Freed when the entries expire: what each holds on its own (tables keep their capacity).
    println!(
        "TIME-WAIT: {tw} entries: {:.0} B/entry freed on expiry; {:.0} B/entry with the pair's tables",
        per(h_tw - h_gone, tw),
        per(h_tw - h0, tw),
    );
    drop(conns);
    drop(q);
}
