//! The goodput claims of issue 3, as fast deterministic tests: synack only, one seed, shorter
//! runs than the table (`cargo bench -p synack-stack --bench goodput`), whose code they share.
//!
//! Goodput here is bytes delivered per *virtual* second over the simulated 100 Mbit/s, 40 ms RTT
//! link: the same on every machine, so a threshold is a behaviour assertion, not a timing one.
//! Every byte the receiving application reads is checked against the sent pattern.

#[path = "../benches/goodput.rs"]
#[allow(dead_code)]
mod goodput;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use goodput::{run, Outcome, Scenario, Stack, CAPPED_RECV_BUFFER, LINK_BPS};
use synack_tcp::{Algorithm, Config, Endpoint, Instant};
use synack_wire::{TcpFlags, TcpOptions, TcpRepr};

/// The table's synack columns.
fn synack() -> impl Iterator<Item = Stack> {
    Stack::ALL
        .into_iter()
        .filter(|s| matches!(s, Stack::Synack { .. }))
}

fn mbps(bps: f64) -> f64 {
    bps / 1e6
}

fn describe(o: &Outcome) -> String {
    format!(
        "{} at {}% loss, seed {}, rwnd {}: {:.2} Mbit/s after {:?} ({:.2} over the run), per \
         second {:?}, sender {:?}, data path {:?}",
        o.stack.label(),
        o.scenario.loss * 100.0,
        o.scenario.seed,
        o.scenario.recv_buffer,
        mbps(o.steady_bps()),
        o.scenario.warmup,
        mbps(o.goodput_bps()),
        o.delivered_per_second,
        o.sender,
        o.data_path,
    )
}

/// When the window is held below what overflows the queue (a 768 KiB receive buffer: above the
/// 500 kB BDP, below BDP plus the 500 kB queue), slow start ends without a loss and every
/// variant fills the link: at least 95 % of 100 Mbit/s after the first 2 s, nothing resent.
#[test]
fn zero_loss_fills_the_link_when_the_window_fits_the_queue() {
    for stack in synack() {
        let sc = Scenario {
            recv_buffer: CAPPED_RECV_BUFFER,
            ..Scenario::new(0.0, 1, 6, 2)
        };
        let o = run(stack, sc);
        println!("{}", describe(&o));
        assert!(o.steady_bps() >= 0.95 * LINK_BPS as f64, "{}", describe(&o));
        let s = o.sender.expect("synack sender stats");
        assert_eq!(s.resent_segments, 0, "{}", describe(&o));
        assert_eq!(o.data_path.dropped_queue, 0, "{}", describe(&o));
    }
}

/// The claim with the table's 4 MiB buffers: slow start overshoots the 1-BDP queue and
/// loses a few hundred segments in one window; recovery must be over within the first 2 s, so
/// that the rest of the run fills the link.
#[test]
fn zero_loss_fills_the_link_after_slow_start() {
    for stack in synack() {
        let o = run(stack, Scenario::new(0.0, 1, 10, 2));
        println!("{}", describe(&o));
        assert!(o.steady_bps() >= 0.95 * LINK_BPS as f64, "{}", describe(&o));
    }
}

/// At 1 % random loss on the data direction, CUBIC with SACK keeps its goodput: 3.48 Mbit/s
/// measured on seed 1 over [2 s, 20 s) (the Mathis model, MSS/RTT × 1.22/√p, gives 3.5 for a
/// 1448-byte MSS at 40 ms), asserted with a margin so that a regression fails.
#[test]
fn one_percent_loss_cubic_sack_keeps_its_goodput() {
    let o = run(
        Stack::Synack {
            congestion: Algorithm::Cubic,
            sack: true,
        },
        Scenario::new(0.01, 1, 20, 2),
    );
    println!("{}", describe(&o));
    assert!(o.steady_bps() >= 3.0e6, "{}", describe(&o));
    assert!(o.data_path.dropped_loss > 0, "the path did lose packets");
}

/// The receiver must always take the segment at `RCV.NXT`, however many out-of-order ranges it
/// already tracks: 40 segments arrive out of order, each leaving a hole before it, then the
/// segment that fills the first hole arrives and must be delivered.
#[test]
fn in_order_data_is_taken_with_more_than_32_holes() {
    let client = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    let server = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    let mut ep = Endpoint::new(Config::default(), [7; 16]);
    let listener = ep.listen(SocketAddr::new(server, 5001), 8).unwrap();
    let now = Instant::from_millis(1);
    let seg = |seq: u32, ack: u32, flags: TcpFlags, payload: &'static [u8]| TcpRepr {
        src_port: 40000,
        dst_port: 5001,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions {
            mss: flags.contains(TcpFlags::SYN).then_some(1460),
            ..TcpOptions::default()
        },
        payload,
    };
    let isn = 1000u32;
    ep.handle_segment(now, client, server, &seg(isn, 0, TcpFlags::SYN, &[]));
    let mut buf = [0u8; 2048];
    let t = ep.poll_transmit(now, &mut buf).expect("SYN-ACK");
    let synack = TcpRepr::parse(&buf[..t.len], None).unwrap();
    let server_next = synack.seq.wrapping_add(1);
    ep.handle_segment(
        now,
        client,
        server,
        &seg(isn + 1, server_next, TcpFlags::ACK, &[]),
    );
    let id = ep.accept(listener).expect("accepted");
    // Nothing is owed after the handshake's ACK (and a bounded loop cannot hang).
    for _ in 0..16 {
        if ep.poll_transmit(now, &mut buf).is_none() {
            break;
        }
    }

    static DATA: [u8; 100] = [0x5a; 100];
    for k in 0..40u32 {
        let seq = isn + 1 + 200 * (k + 1);
        ep.handle_segment(
            now,
            client,
            server,
            &seg(seq, server_next, TcpFlags::ACK, &DATA),
        );
    }
    ep.handle_segment(
        now,
        client,
        server,
        &seg(isn + 1, server_next, TcpFlags::ACK, &DATA),
    );
    let mut got = [0u8; 4096];
    let n = ep
        .with_conn(now, id, |c| c.recv(&mut got))
        .expect("connection")
        .expect("recv");
    // The first 100 bytes; a hole follows them.
    assert_eq!(n, 100, "the segment at RCV.NXT was not taken");
}
