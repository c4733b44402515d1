//! Reordering without loss: jitter delivers segments and ACKs out of order, and nothing is
//! lost. RFC 7323 §5.3 (reordered pure ACKs are used, not dropped), RFC 8985 §6.2 (a
//! reordering window before recovery), RFC 4737 and Linux's adaptive DupThresh (reordering
//! raises it), RFC 3522/4015 (a fast retransmission found spurious is undone).

mod common;

use common::*;
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, Duration, TraceEvent};

struct Run {
    retransmits: usize,
    millis: u64,
    reordering: usize,
    spurious: u64,
    acks_from_server: usize,
}

/// `bytes` from server to client over 50 ms RTT at 100 Mbit/s with `jitter` on both paths.
fn download(seed: u64, bytes: usize, jitter: Duration) -> Run {
    let path = PathConfig::delay(Duration::from_millis(25))
        .with_bandwidth(100_000_000)
        .with_jitter(jitter);
    let mut p = Pair::with_paths(
        seed,
        Config::default(),
        Config::default(),
        path.clone(),
        path,
    );
    let (c, s) = p.open(80, Duration::from_secs(2)).unwrap();
    let start = p.now();
    let down = pattern(3, bytes);
    let mut cf = Flow::new(Vec::new());
    let mut sf = Flow::new(down.clone());
    assert!(p.exchange(c, s, &mut cf, &mut sf, Duration::from_secs(60)));
    assert_eq!(cf.error, None);
    assert!(cf.got == down, "bytes differ");
    let millis = (p.now() - start).as_millis() as u64;
    let (reordering, spurious) = {
        let ep = p.net.host_mut(p.server).tcp_mut();
        let conn = ep.conn(s).expect("server connection");
        (conn.reordering(), conn.spurious_retransmits())
    };
    let trace = p.server_trace();
    let retransmits = trace
        .iter()
        .filter(|r| matches!(r.event, TraceEvent::Retransmit { .. }))
        .count();
    let acks_from_server = trace
        .iter()
        .filter(|r| {
            matches!(r.event, TraceEvent::Segment { dir: synack_tcp::Direction::Sent, seg, .. }
                if seg.len == 0 && !seg.flags.contains(synack_wire::TcpFlags::SYN)
                    && !seg.flags.contains(synack_wire::TcpFlags::FIN))
        })
        .count();
    Run {
        retransmits,
        millis,
        reordering,
        spurious,
        acks_from_server,
    }
}

#[test]
fn jitter_without_loss_costs_no_lasting_slowdown() {
    for seed in 1..=5 {
        let calm = download(seed, 4 << 20, Duration::ZERO);
        let r = download(seed, 4 << 20, Duration::from_millis(5));
        eprintln!(
            "seed {seed}: calm {} ms; jitter {} ms, {} retransmitted ({} undone), reordering {}, {} pure ACKs from the sender",
            calm.millis, r.millis, r.retransmits, r.spurious, r.reordering, r.acks_from_server
        );
        assert_eq!(calm.retransmits, 0);
        // Reordering without loss costs no retransmission: the reordering window outlasts
        // the jitter, and DupThresh learns the depth seen.
        assert_eq!(r.retransmits, 0, "seed {seed}");
        assert_eq!(r.spurious, 0, "seed {seed}");
        assert!(
            r.reordering > 3,
            "seed {seed}: DupThresh stayed {}",
            r.reordering
        );
        assert!(
            r.millis * 10 <= calm.millis * 11,
            "seed {seed}: {} ms with jitter against {} ms without",
            r.millis,
            calm.millis
        );
        // Reordered ACKs are used, not answered: the sender sends no pure ACKs back.
        assert!(
            r.acks_from_server <= 2,
            "seed {seed}: {} ACKs",
            r.acks_from_server
        );
    }
}
