//! What an idle established connection holds on the heap, counted by the allocator (issue 15:
//! at most 1 KiB a connection with empty buffers): N connections between two endpoints in
//! memory, a byte each way on every one (so that rings, write-queue marks and timers were
//! used), time run on past every timer, then the bytes both endpoints hold, per TCB.
//!
//! The count is of `Layout` sizes (what the program asks for, not the allocator's own
//! overhead), taken while this file's one test runs alone in its binary.

use std::net::{IpAddr, SocketAddr};

use synack_tcp::{Config, ConnId, Duration, Endpoint, Instant, State};
use synack_wire::TcpRepr;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::held;

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";
/// Just under a power of two: the slot vector and the table are then nearly full, as they are
/// at a million (2^20 slots, 2^21 buckets).
const N: usize = 16_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Pair {
    client: Endpoint,
    server: Endpoint,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                let seg = TcpRepr::parse(&self.buf[..t.len], Some((t.src, t.dst))).unwrap();
                self.server.handle_segment(self.now, t.src, t.dst, &seg);
            }
            while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                let seg = TcpRepr::parse(&self.buf[..t.len], Some((t.src, t.dst))).unwrap();
                self.client.handle_segment(self.now, t.src, t.dst, &seg);
            }
            if !moved {
                break;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for ep in [&mut self.client, &mut self.server] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
        self.pump();
    }
}

#[test]
fn an_idle_connection_holds_at_most_1_kib() {
    let config = Config {
        syn_backlog: 4096,
        ..Config::default()
    };
    let before = held();
    let mut p = Pair {
        client: Endpoint::new(config.clone(), [1; 16]),
        server: Endpoint::new(config, [2; 16]),
        now: Instant::from_millis(1),
        buf: vec![0u8; 2048],
    };
    let l = p
        .server
        .listen(SocketAddr::new(ip(SERVER), 80), 4096)
        .unwrap();
    let mut conns: Vec<(ConnId, ConnId)> = Vec::with_capacity(N);
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let cs: Vec<ConnId> = chunk
            .iter()
            .map(|&i| {
                p.client
                    .connect(
                        p.now,
                        ip(CLIENT),
                        Some(20000 + i as u16),
                        SocketAddr::new(ip(SERVER), 80),
                    )
                    .unwrap()
            })
            .collect();
        p.pump();
        for c in cs {
            let s = p.server.accept(l).expect("accepted");
            assert_eq!(
                p.client.conn(c).map(|c| c.state()),
                Some(State::Established)
            );
            conns.push((c, s));
        }
    }
    // A byte each way on every connection, read by both applications.
    for chunk in conns.chunks(1000) {
        let now = p.now;
        for &(c, _) in chunk {
            assert_eq!(p.client.with_conn(now, c, |c| c.send(b"x")), Some(Ok(1)));
        }
        p.pump();
        for &(_, s) in chunk {
            let r = p.server.with_conn(now, s, |c| {
                let mut b = [0u8; 1];
                assert_eq!(c.recv(&mut b), Ok(1));
                c.send(b"y")
            });
            assert_eq!(r, Some(Ok(1)));
        }
        p.pump();
        for &(c, _) in chunk {
            let r = p.client.with_conn(now, c, |c| c.recv(&mut [0u8; 1]));
            assert_eq!(r, Some(Ok(1)));
        }
        p.advance(Duration::from_millis(50));
    }
    // Idle: every timer (delayed ACKs, retransmission timers stopped since) has run out.
    for _ in 0..10 {
        p.advance(Duration::from_secs(1));
    }
    assert_eq!(p.client.connection_count(), N);
    assert_eq!(p.server.connection_count(), N);
    assert_eq!(p.client.buffer_bytes() + p.server.buffer_bytes(), 0);
    let handles = conns.capacity() * std::mem::size_of::<(ConnId, ConnId)>();
    let held = held() - before - handles - p.buf.capacity();
    let per_tcb = held as f64 / (2 * N) as f64;
    println!("{per_tcb:.0} B per idle connection (per TCB, allocator-counted)");
    assert!(per_tcb <= 1024.0, "{per_tcb:.0} B per idle TCB");
    drop(conns);
}
