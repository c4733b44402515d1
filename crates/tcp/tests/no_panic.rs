//! Property tests: arbitrary segments, timeouts and application calls against a connection in
//! each of the eleven states never panic and never break the sequence-space invariants.

mod harness;

use std::net::SocketAddr;

use harness::*;
use proptest::prelude::*;
use synack_tcp::{Config, Connection, Endpoint, Instant, State};
use synack_wire::{SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamp};

#[derive(Debug, Clone)]
enum Op {
    Segment {
        flags: u8,
        seq_off: i64,
        ack_off: i64,
        win: u16,
        len: usize,
        opts: u8,
    },
    Advance(u64),
    Send(usize),
    Recv(usize),
    Shutdown,
    Close,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), -70_000i64..70_000, -70_000i64..70_000, any::<u16>(), 0usize..1600, any::<u8>())
            .prop_map(|(flags, seq_off, ack_off, win, len, opts)| Op::Segment { flags, seq_off, ack_off, win, len, opts }),
        2 => (0u64..5_000_000).prop_map(Op::Advance),
        1 => (0usize..5000).prop_map(Op::Send),
        1 => (0usize..5000).prop_map(Op::Recv),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Close),
        1 => Just(Op::Abort),
    ]
}

fn options(bits: u8, seq: u32) -> TcpOptions {
    let mut o = TcpOptions::default();
    if bits & 1 != 0 {
        o.mss = Some(u16::from(bits).wrapping_mul(97));
    }
    if bits & 2 != 0 {
        o.window_scale = Some(bits >> 4);
    }
    if bits & 4 != 0 {
        o.sack_permitted = true;
    }
    if bits & 8 != 0 {
        o.timestamp = Some(Timestamp {
            tsval: u32::from(bits).wrapping_mul(7919),
            tsecr: 0,
        });
    }
    if bits & 16 != 0 {
        o.push_sack(SackBlock {
            left: seq.wrapping_add(100),
            right: seq.wrapping_add(1000 + u32::from(bits)),
        });
    }
    o
}

fn fixture(state: State, cfg: &Config) -> Connection {
    match state {
        State::SynSent => syn_sent(cfg),
        State::SynReceived => syn_received(cfg),
        State::Established => established(cfg),
        State::FinWait1 => fin_wait_1(cfg),
        State::FinWait2 => fin_wait_2(cfg),
        State::CloseWait => close_wait(cfg),
        State::Closing => closing(cfg),
        State::LastAck => last_ack(cfg),
        State::TimeWait => time_wait(cfg),
        State::Closed => {
            let mut c = established(cfg);
            c.abort();
            output(&mut c, t(10));
            assert_eq!(c.state(), State::Closed);
            c
        }
        State::Listen => unreachable!("LISTEN is the endpoint's"),
    }
}

fn run(mut c: Connection, ops: Vec<Op>) {
    let mut now = t(50);
    let payload = vec![0xabu8; 1600];
    let mut buf = vec![0u8; 8000];
    for op in ops {
        match op {
            Op::Segment {
                flags,
                seq_off,
                ack_off,
                win,
                len,
                opts,
            } => {
                let seq = (c.rcv_nxt().0 as i64 + seq_off) as u32;
                let ack = (c.snd_una().0 as i64 + ack_off) as u32;
                let repr = TcpRepr {
                    src_port: remote().port(),
                    dst_port: local().port(),
                    seq,
                    ack,
                    flags: TcpFlags(flags),
                    window: win,
                    urgent: 0,
                    options: options(opts, ack),
                    payload: &payload[..len],
                };
                c.handle_segment(now, &repr);
            }
            Op::Advance(us) => {
                now += std::time::Duration::from_micros(us);
                if let Some(d) = c.poll_timeout() {
                    if d <= now {
                        c.handle_timeout(now);
                    }
                }
            }
            Op::Send(n) => {
                let _ = c.send(&payload[..n.min(payload.len())]);
            }
            Op::Recv(n) => {
                let _ = c.recv(&mut buf[..n]);
            }
            Op::Shutdown => c.shutdown(),
            Op::Close => c.close(),
            Op::Abort => c.abort(),
        }
        let _ = output(&mut c, now);
        // Invariants: SND.UNA <= SND.NXT, deadlines not in the past after handling them.
        assert!(c.snd_una().le(c.snd_nxt()));
        assert!(c.recv_available() <= 64 * 1024);
        if let Some(d) = c.poll_timeout() {
            if d <= now {
                c.handle_timeout(now);
                let _ = output(&mut c, now);
            }
        }
    }
}

fn configs() -> impl Strategy<Value = Config> {
    any::<bool>().prop_map(|opts| {
        if opts {
            Config {
                recv_buffer: 64 * 1024,
                send_buffer: 64 * 1024,
                ..Config::default()
            }
        } else {
            plain()
        }
    })
}

macro_rules! state_props {
    ($($name:ident => $state:expr),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(cfg in configs(), ops in proptest::collection::vec(op(), 1..40)) {
                    run(fixture($state, &cfg), ops);
                }
            )*
        }
    };
}

state_props! {
    closed => State::Closed,
    syn_sent_state => State::SynSent,
    syn_received_state => State::SynReceived,
    established_state => State::Established,
    fin_wait_1_state => State::FinWait1,
    fin_wait_2_state => State::FinWait2,
    close_wait_state => State::CloseWait,
    closing_state => State::Closing,
    last_ack_state => State::LastAck,
    time_wait_state => State::TimeWait,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// LISTEN (and CLOSED ports) belong to the endpoint: arbitrary segments to a listener and to
    /// a closed port, with timeouts between them.
    #[test]
    fn listen_and_closed_ports(segs in proptest::collection::vec(
        (any::<u8>(), any::<u32>(), any::<u32>(), any::<u16>(), 0usize..200, any::<u8>(), prop_oneof![Just(80u16), Just(81u16)], any::<u16>()),
        1..60,
    )) {
        let mut ep = Endpoint::new(Config { syn_backlog: 4, ..Config::default() }, [7; 16]);
        let server: SocketAddr = "198.18.0.2:80".parse().unwrap();
        let l = ep.listen(server, 2).unwrap();
        let mut now = Instant::ZERO;
        let mut buf = vec![0u8; 2000];
        let payload = [1u8; 200];
        for (flags, seq, ack, win, len, opts, port, sport) in segs {
            let repr = TcpRepr {
                src_port: sport,
                dst_port: port,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: win,
                urgent: 0,
                options: options(opts, ack),
                payload: &payload[..len],
            };
            ep.handle_segment(now, remote().ip(), server.ip(), &repr);
            let mut sent = 0;
            while let Some(tx) = ep.poll_transmit(now, &mut buf) {
                prop_assert!(TcpRepr::parse(&buf[..tx.len], Some((tx.src, tx.dst))).is_ok());
                sent += 1;
                prop_assert!(sent < 1000);
            }
            now += std::time::Duration::from_millis(u64::from(win % 3000));
            ep.handle_timeout(now);
            while ep.poll_transmit(now, &mut buf).is_some() {}
            if let Some(c) = ep.accept(l) {
                ep.close(now, c);
            }
        }
    }
}
