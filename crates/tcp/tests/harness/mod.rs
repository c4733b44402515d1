//! Fixtures for driving one `Connection` by hand: fixed ISS/IRS, template segments, and the
//! segments it answers with, parsed back from the bytes it wrote.
#![allow(dead_code)]

use std::net::SocketAddr;

use synack_tcp::{Config, Connection, Duration, FourTuple, Instant, SeqNum, State};
use synack_wire::{TcpFlags, TcpOptions, TcpRepr};

pub const ISS: u32 = 1000;
pub const IRS: u32 = 2000;

pub fn local() -> SocketAddr {
    "198.18.0.1:40000".parse().unwrap()
}

pub fn remote() -> SocketAddr {
    "198.18.0.2:80".parse().unwrap()
}

pub fn tuple() -> FourTuple {
    FourTuple {
        local: local(),
        remote: remote(),
    }
}

/// No options, immediate ACKs: the segments of the RFC's figures.
pub fn plain() -> Config {
    Config {
        timestamps: false,
        sack: false,
        window_scaling: false,
        delayed_ack: None,
        recv_buffer: 64 * 1024,
        send_buffer: 64 * 1024,
        // Recovery on the third duplicate, as the RFCs' figures draw it.
        reorder_window: false,
        ..Config::default()
    }
}

pub const F: TcpFlags = TcpFlags::FIN;
pub const S: TcpFlags = TcpFlags::SYN;
pub const R: TcpFlags = TcpFlags::RST;
pub const P: TcpFlags = TcpFlags::PSH;
pub const A: TcpFlags = TcpFlags::ACK;

/// A segment as a test writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub data: Vec<u8>,
    pub options: TcpOptions,
}

impl Seg {
    pub fn new(flags: TcpFlags, seq: u32, ack: u32) -> Seg {
        Seg {
            flags,
            seq,
            ack,
            win: 65535,
            data: Vec::new(),
            options: TcpOptions::default(),
        }
    }

    pub fn data(mut self, d: &[u8]) -> Seg {
        self.data = d.to_vec();
        self
    }

    pub fn win(mut self, w: u16) -> Seg {
        self.win = w;
        self
    }

    /// (flags, seq, ack, len) — what most assertions compare.
    pub fn key(&self) -> (TcpFlags, u32, u32, usize) {
        (self.flags, self.seq, self.ack, self.data.len())
    }
}

/// Feed a segment from the peer.
pub fn input(c: &mut Connection, now: Instant, s: &Seg) {
    input_on(c, now, s, tuple());
}

/// Feed a segment to a connection whose ends are `t` (the segment comes from `t.remote`).
pub fn input_on(c: &mut Connection, now: Instant, s: &Seg, t: FourTuple) {
    let repr = TcpRepr {
        src_port: t.remote.port(),
        dst_port: t.local.port(),
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        window: s.win,
        urgent: 0,
        options: s.options,
        payload: &s.data,
    };
    c.handle_segment(now, &repr);
}

/// Everything the connection sends now.
pub fn output(c: &mut Connection, now: Instant) -> Vec<Seg> {
    output_on(c, now, tuple())
}

/// Everything a connection whose ends are `t` sends now, checked and parsed back.
pub fn output_on(c: &mut Connection, now: Instant, t: FourTuple) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1600];
    while let Some(n) = c.poll_transmit(now, &mut buf) {
        let r = TcpRepr::parse(&buf[..n], Some((t.local.ip(), t.remote.ip())))
            .expect("the connection wrote a valid segment with a valid checksum");
        assert_eq!(r.src_port, t.local.port());
        assert_eq!(r.dst_port, t.remote.port());
        out.push(Seg {
            flags: r.flags,
            seq: r.seq,
            ack: r.ack,
            win: r.window,
            data: r.payload.to_vec(),
            options: r.options,
        });
        assert!(out.len() < 10_000, "runaway output");
    }
    out
}

pub fn keys(segs: &[Seg]) -> Vec<(TcpFlags, u32, u32, usize)> {
    segs.iter().map(Seg::key).collect()
}

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// SYN-SENT, the SYN already sent.
pub fn syn_sent(cfg: &Config) -> Connection {
    let mut c = Connection::connect(cfg, t(0), tuple(), SeqNum(ISS), 0);
    let out = output(&mut c, t(0));
    assert_eq!(keys(&out), vec![(S, ISS, 0, 0)]);
    c
}

/// ESTABLISHED by an active open; the handshake's ACK already sent.
pub fn established(cfg: &Config) -> Connection {
    let mut c = syn_sent(cfg);
    input(&mut c, t(10), &Seg::new(S | A, IRS, ISS + 1));
    assert_eq!(c.state(), State::Established);
    let out = output(&mut c, t(10));
    assert_eq!(keys(&out), vec![(A, ISS + 1, IRS + 1, 0)]);
    c
}

/// SYN-RECEIVED by a passive open; the SYN-ACK already sent.
pub fn syn_received(cfg: &Config) -> Connection {
    let syn = TcpRepr {
        src_port: remote().port(),
        dst_port: local().port(),
        seq: IRS,
        ack: 0,
        flags: S,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    let mut c = Connection::accept(cfg, t(0), tuple(), SeqNum(ISS), 0, &syn);
    assert_eq!(c.state(), State::SynReceived);
    let out = output(&mut c, t(0));
    assert_eq!(keys(&out), vec![(S | A, ISS, IRS + 1, 0)]);
    c
}

/// FIN-WAIT-1: we closed, our FIN (seq ISS+1) is out and unacknowledged.
pub fn fin_wait_1(cfg: &Config) -> Connection {
    let mut c = established(cfg);
    c.shutdown();
    assert_eq!(c.state(), State::FinWait1);
    assert_eq!(
        keys(&output(&mut c, t(20))),
        vec![(F | A, ISS + 1, IRS + 1, 0)]
    );
    c
}

/// FIN-WAIT-2: our FIN is acknowledged.
pub fn fin_wait_2(cfg: &Config) -> Connection {
    let mut c = fin_wait_1(cfg);
    input(&mut c, t(30), &Seg::new(A, IRS + 1, ISS + 2));
    assert_eq!(c.state(), State::FinWait2);
    assert!(output(&mut c, t(30)).is_empty());
    c
}

/// CLOSE-WAIT: the peer's FIN arrived and was acknowledged.
pub fn close_wait(cfg: &Config) -> Connection {
    let mut c = established(cfg);
    input(&mut c, t(20), &Seg::new(F | A, IRS + 1, ISS + 1));
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(keys(&output(&mut c, t(20))), vec![(A, ISS + 1, IRS + 2, 0)]);
    c
}

/// LAST-ACK: we closed after the peer; our FIN is out.
pub fn last_ack(cfg: &Config) -> Connection {
    let mut c = close_wait(cfg);
    c.shutdown();
    assert_eq!(c.state(), State::LastAck);
    assert_eq!(
        keys(&output(&mut c, t(30))),
        vec![(F | A, ISS + 1, IRS + 2, 0)]
    );
    c
}

/// CLOSING: both FINs crossed; ours is not yet acknowledged.
pub fn closing(cfg: &Config) -> Connection {
    let mut c = fin_wait_1(cfg);
    input(&mut c, t(30), &Seg::new(F | A, IRS + 1, ISS + 1));
    assert_eq!(c.state(), State::Closing);
    assert_eq!(keys(&output(&mut c, t(30))), vec![(A, ISS + 2, IRS + 2, 0)]);
    c
}

/// TIME-WAIT, entered at t = 40 ms.
pub fn time_wait(cfg: &Config) -> Connection {
    let mut c = fin_wait_2(cfg);
    input(&mut c, t(40), &Seg::new(F | A, IRS + 1, ISS + 2));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(keys(&output(&mut c, t(40))), vec![(A, ISS + 2, IRS + 2, 0)]);
    c
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// ESTABLISHED by an active open whose SYN-ACK carried `opts`.
pub fn established_with(cfg: &Config, opts: TcpOptions) -> Connection {
    let mut c = syn_sent(cfg);
    let mut synack = Seg::new(S | A, IRS, ISS + 1);
    synack.options = opts;
    input(&mut c, t(10), &synack);
    assert_eq!(c.state(), State::Established);
    let out = output(&mut c, t(10));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, A);
    c
}

/// An ACK from the peer for `ack` (relative to ISS+1), window `win`.
pub fn peer_ack(rel_ack: u32) -> Seg {
    Seg::new(A, IRS + 1, ISS + 1 + rel_ack)
}
