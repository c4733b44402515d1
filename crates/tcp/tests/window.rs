//! The receive window we advertise (RFC 9293 §3.8.6.2.2, RFC 7323 §2.3): whatever the peer's
//! ISN, whatever it sends and whenever the application reads, the right edge of the window
//! never moves left and never promises more than the receive buffer can hold.

mod harness;

use harness::*;
use proptest::prelude::*;
use synack_tcp::{Config, Connection, SeqNum, State};
use synack_wire::{TcpOptions, TcpRepr};

const BUFFER: usize = 1 << 20;

fn config() -> Config {
    Config {
        delayed_ack: None,
        timestamps: false,
        sack: false,
        recv_buffer: BUFFER,
        ..Config::default()
    }
}

/// Our window scale for the configured buffer (the peer offers 7).
fn our_shift() -> u8 {
    synack_tcp::conn::wscale_for(BUFFER)
}

fn scale_opts() -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        ..TcpOptions::default()
    }
}

/// A connection established with a peer whose ISN is `irs`: actively (the first window goes
/// out on the handshake's ACK) or passively (on the SYN-ACK).
fn open(irs: u32, active: bool) -> (Connection, Vec<Seg>) {
    let cfg = config();
    if active {
        let mut c = Connection::connect(&cfg, t(0), tuple(), SeqNum(ISS), 0);
        let _syn = output(&mut c, t(0));
        let mut synack = Seg::new(S | A, irs, ISS + 1);
        synack.options = scale_opts();
        input(&mut c, t(10), &synack);
        assert_eq!(c.state(), State::Established);
        let out = output(&mut c, t(10));
        (c, out)
    } else {
        let opts = scale_opts();
        let syn = TcpRepr {
            src_port: remote().port(),
            dst_port: local().port(),
            seq: irs,
            ack: 0,
            flags: S,
            window: 65535,
            urgent: 0,
            options: opts,
            payload: &[],
        };
        let mut c = Connection::accept(&cfg, t(0), tuple(), SeqNum(ISS), 0, &syn);
        let out = output(&mut c, t(0));
        input(&mut c, t(10), &Seg::new(A, irs.wrapping_add(1), ISS + 1));
        assert_eq!(c.state(), State::Established);
        (c, out)
    }
}

/// Checks every segment's window against the last right edge and what the buffer holds.
struct Edges {
    last: Option<u32>,
    shift: u8,
    ring: usize,
}

impl Edges {
    fn check(&mut self, segs: &[Seg], unread: usize) {
        for s in segs {
            if !s.flags.contains(A) {
                continue;
            }
            let syn = s.flags.contains(S);
            let wnd = if syn {
                usize::from(s.win)
            } else {
                usize::from(s.win) << self.shift
            };
            // The field counts units of 2^shift: rounding it up to keep the edge in place
            // spends the ring's slack, never more.
            let room = if syn { BUFFER } else { self.ring } - unread;
            assert!(
                wnd <= room,
                "window {wnd} with {unread} bytes unread in a {}-byte ring: {s:?}",
                self.ring
            );
            let edge = s.ack.wrapping_add(wnd as u32);
            if let Some(last) = self.last {
                assert!(
                    edge.wrapping_sub(last) as i32 >= 0,
                    "the right edge moved left from {last} to {edge}: {s:?}"
                );
            }
            self.last = Some(edge);
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// The peer sends this many bytes in order (up to the window).
    Send(usize),
    /// The application reads up to this many bytes.
    Read(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..70_000).prop_map(Step::Send),
        (1usize..300_000).prop_map(Step::Read),
    ]
}

fn run(irs: u32, active: bool, steps: &[Step]) {
    let (mut c, first) = open(irs, active);
    let mut edges = Edges {
        last: None,
        shift: our_shift(),
        ring: c.recv_ring_capacity(),
    };
    assert!(edges.ring >= BUFFER && edges.ring <= BUFFER + BUFFER / 16 + 64);
    edges.check(&first, 0);
    let mut next = irs.wrapping_add(1);
    let mut unread = 0usize;
    let mut now = 20;
    let mut buf = vec![0u8; 300_000];
    let payload = vec![0x5a; 1460];
    for s in steps {
        now += 1;
        match *s {
            Step::Send(n) => {
                // The peer sends what our last advertisement allows, in full segments.
                let edge = edges.last.unwrap();
                let allowed = edge.wrapping_sub(next) as usize;
                let mut left = n.min(allowed);
                while left > 0 {
                    let len = left.min(payload.len());
                    input(
                        &mut c,
                        t(now),
                        &Seg::new(A, next, ISS + 1).data(&payload[..len]),
                    );
                    next = next.wrapping_add(len as u32);
                    unread += len;
                    left -= len;
                    let out = output(&mut c, t(now));
                    edges.check(&out, unread);
                }
                assert_eq!(c.recv_available(), unread, "every byte sent was accepted");
            }
            Step::Read(n) => {
                let n = n.min(buf.len());
                let got = c.recv(&mut buf[..n]).unwrap_or(0);
                unread -= got;
                let out = output(&mut c, t(now));
                edges.check(&out, unread);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn advertised_edge_never_moves_left_nor_past_the_buffer(
        irs in any::<u32>(),
        active in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        run(irs, active, &steps);
    }
}

/// The defect: with the peer's ISN at or above 2^31, the first ACK of an active open
/// advertised 65535 << scale (2 MiB for a 1 MiB buffer), as if nothing had been advertised
/// from sequence number 0.
#[test]
fn first_window_of_an_active_open_is_the_buffer_for_isns_in_either_half() {
    for irs in [0, 1 << 30, (1 << 31) - 1, 1 << 31, (1 << 31) + 7, u32::MAX] {
        let (_, out) = open(irs, true);
        assert_eq!(out.len(), 1);
        let wnd = usize::from(out[0].win) << our_shift();
        assert_eq!(wnd, BUFFER, "ISN {irs}: {:?}", out[0]);
    }
}
