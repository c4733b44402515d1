//! Packetization Layer Path MTU Discovery (RFC 4821) as Linux's `tcp_mtu_probing=2` runs it,
//! the path MTU a connection sizes its segments for, and the bursts Linux sends without
//! segmentation offload: the exact segments.

mod harness;

use harness::*;
use synack_tcp::{Config, Connection, MtuProbeMode, MtuProbing, State};
use synack_wire::TcpOptions;

/// Probing on from the start, the search from a 512-byte MSS (MTU 552) up to the peer's
/// 1460 (MTU 1500), an initial window of 11 segments (Linux probes from 11).
fn probing() -> Config {
    Config {
        mtu_probing: MtuProbing {
            mode: MtuProbeMode::Always,
            base_mss: 512,
            ..MtuProbing::default()
        },
        initial_window: 11,
        ..plain()
    }
}

fn open(cfg: &Config) -> Connection {
    established_with(
        cfg,
        TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        },
    )
}

/// (relative seq, len, PSH) of the data segments the connection sends now.
fn sent(c: &mut Connection, ms: u64) -> Vec<(u32, usize, bool)> {
    output(c, t(ms))
        .iter()
        .filter(|s| !s.data.is_empty())
        .map(|s| (s.seq - (ISS + 1), s.data.len(), s.flags.contains(P)))
        .collect()
}

/// An active open with probing sizes its segments by the search's lower bound (Linux's
/// `tcp_sync_mss` once `tcp_mtup_init` ran). The first write with enough behind it sends one
/// probe of the midpoint, MTU (552 + 1500) / 2 = 1026, so 986 bytes, then 512-byte segments;
/// its acknowledgment moves the search's lower bound to 1026 and the segments to 986 bytes.
/// The next probe, MTU (1026 + 1500) / 2 = 1263, needs 1223 + 4 × 986 bytes queued.
#[test]
fn an_acknowledged_probe_raises_the_mss() {
    let mut c = open(&probing());
    assert_eq!(c.mss(), 512);
    assert_eq!(c.mtu_search_range(), Some((552, 1500)));
    c.send(&[7u8; 4000]).unwrap();
    // (Where PSH goes with segmentation offload on is the write queue's business: see
    // `without_offload_each_burst_ends_pushed` for the case Linux's own test pins down.)
    let out: Vec<_> = sent(&mut c, 20).iter().map(|&(s, l, _)| (s, l)).collect();
    assert_eq!(
        out,
        vec![
            (0, 986),
            (986, 512),
            (1498, 512),
            (2010, 512),
            (2522, 512),
            (3034, 512),
            (3546, 454),
        ]
    );
    assert_eq!(c.mtu_probe_in_flight(), Some(1026));
    let cwnd = c.cwnd();
    input(&mut c, t(30), &peer_ack(4000));
    assert_eq!(c.mss(), 986);
    assert_eq!(c.mtu_search_range(), Some((1026, 1500)));
    assert_eq!(c.mtu_probe_in_flight(), None);
    assert_eq!(
        c.cwnd(),
        cwnd + 4000,
        "slow start, whatever the segment size"
    );

    // 2000 bytes are too few to probe behind: plain 986-byte segments.
    c.send(&[8u8; 2000]).unwrap();
    assert_eq!(
        sent(&mut c, 40),
        vec![(4000, 986, false), (4986, 986, true), (5972, 28, true)]
    );
    input(&mut c, t(50), &peer_ack(6000));
    c.send(&[9u8; 6000]).unwrap();
    let out = sent(&mut c, 60);
    assert_eq!(out[0], (6000, 1223, false), "the next probe: MTU 1263");
    assert!(out[1..].iter().all(|&(_, len, _)| len <= 986));
    assert_eq!(c.mtu_probe_in_flight(), Some(1263));
}

/// A lost probe (three duplicate ACKs for its first byte) is no congestion: the search's
/// upper bound falls below it (MTU 1025), its bytes go again as 512-byte segments, the
/// congestion window stays, and the next probe is smaller: MTU (552 + 1025) / 2 = 788.
#[test]
fn a_lost_probe_lowers_the_search_and_keeps_the_window() {
    let mut c = open(&probing());
    c.send(&[7u8; 4000]).unwrap();
    assert_eq!(sent(&mut c, 20).len(), 7);
    let cwnd = c.cwnd();
    for _ in 0..3 {
        input(&mut c, t(30), &peer_ack(0));
    }
    assert!(
        c.may_transmit(),
        "a driver that polls only when told must send them"
    );
    assert_eq!(sent(&mut c, 30), vec![(0, 512, false), (512, 474, false)]);
    assert_eq!(c.cwnd(), cwnd, "no window reduction");
    assert_eq!(c.mtu_search_range(), Some((552, 1025)));
    assert_eq!(c.mtu_probe_in_flight(), None);
    // A fourth duplicate of the same flight starts no recovery either.
    input(&mut c, t(31), &peer_ack(0));
    assert_eq!(sent(&mut c, 31), vec![]);
    input(&mut c, t(40), &peer_ack(4000));
    assert_eq!(c.mss(), 512, "the probe's size was never confirmed");
    assert_eq!(c.cwnd(), cwnd + 4000);
    c.send(&[8u8; 4000]).unwrap();
    let out = sent(&mut c, 50);
    assert_eq!(out[0], (4000, 748, false), "no probe at 986 again: MTU 788");
    assert_eq!(c.mtu_probe_in_flight(), Some(788));
}

/// Probing off (Linux's default): the peer's MSS from the start, no probe, no search.
#[test]
fn probing_off_changes_nothing() {
    let mut c = open(&Config {
        initial_window: 11,
        ..plain()
    });
    assert_eq!(c.mss(), 1460);
    assert_eq!(c.mtu_search_range(), None);
    c.send(&[7u8; 4000]).unwrap();
    assert_eq!(
        sent(&mut c, 20),
        vec![(0, 1460, false), (1460, 1460, true), (2920, 1080, true)]
    );
    assert_eq!(c.mtu_probe_in_flight(), None);
}

/// Probing needs 11 segments of congestion window (Linux's `tcp_mtu_probe`): with the
/// default 10, none is sent.
#[test]
fn no_probe_below_eleven_segments_of_window() {
    let mut c = open(&Config {
        initial_window: 10,
        ..probing()
    });
    c.send(&[7u8; 4000]).unwrap();
    let out: Vec<_> = sent(&mut c, 20).iter().map(|&(s, l, _)| (s, l)).collect();
    let mut want: Vec<_> = (0..7).map(|i| (512 * i, 512)).collect();
    want.push((3584, 416));
    assert_eq!(out, want);
    assert_eq!(c.mtu_probe_in_flight(), None);
}

/// A route's MTU (`Config::path_mtu`) and `advmss`: the SYN announces `advmss`, segments are
/// sized for the path MTU; a new path MTU applies at the next write (Linux's
/// `tcp_current_mss`), not to what is already queued in segments.
#[test]
fn the_route_sets_the_announced_mss_and_the_segment_size() {
    let cfg = Config {
        advmss: Some(600),
        path_mtu: Some(640),
        ..plain()
    };
    let mut c = Connection::connect(&cfg, t(0), tuple(), synack_tcp::SeqNum(ISS), 0);
    let syn = output(&mut c, t(0));
    assert_eq!(syn[0].options.mss, Some(600));
    let mut synack = Seg::new(S | A, IRS, ISS + 1);
    synack.options.mss = Some(1460);
    input(&mut c, t(10), &synack);
    assert_eq!(c.state(), State::Established);
    output(&mut c, t(10));
    assert_eq!(c.mss(), 600);
    c.set_path_mtu(1500);
    assert_eq!(c.mss(), 600, "not before the next write");
    c.send(&[1u8; 3000]).unwrap();
    assert_eq!(c.mss(), 1460);
    assert_eq!(
        sent(&mut c, 20),
        vec![(0, 1460, false), (1460, 1460, true), (2920, 80, true)]
    );
    // A smaller one: at the next acknowledgment.
    c.set_path_mtu(1000);
    input(&mut c, t(30), &peer_ack(3000));
    assert_eq!(c.mss(), 960);
}

/// Without segmentation offload and on a path whose RTT is under a millisecond, Linux sends
/// bursts of half the congestion window (`tcp_cwnd_test`), each one software-segmented
/// packet whose last segment carries PSH; the probe is a packet of its own. (An initial
/// window of 11, 600-byte segments: the probe, then 5 segments, then the rest.)
#[test]
fn without_offload_each_burst_ends_pushed() {
    let cfg = Config {
        segmentation_offload: false,
        advmss: Some(600),
        path_mtu: Some(640),
        ..probing()
    };
    let mut c = Connection::connect(&cfg, t(0), tuple(), synack_tcp::SeqNum(ISS), 0);
    output(&mut c, t(0));
    let mut synack = Seg::new(S | A, IRS, ISS + 1);
    synack.options.mss = Some(1460);
    input(&mut c, t(0), &synack);
    output(&mut c, t(0));
    // An active open with probing starts at the search's lower bound, 512.
    c.send(&[1u8; 1]).unwrap();
    input(&mut c, t(0), &peer_ack(0));
    assert_eq!(sent(&mut c, 0), vec![(0, 1, true)]);
    input(&mut c, t(0), &peer_ack(1));
    c.set_path_mtu(1500);
    c.send(&[2u8; 4000]).unwrap();
    assert_eq!(
        sent(&mut c, 0),
        vec![
            (1, 986, false),
            (987, 512, false),
            (1499, 512, false),
            (2011, 512, false),
            (2523, 512, false),
            (3035, 512, true),
            (3547, 454, true),
        ]
    );
}

/// `BlackHole` mode (Linux's `tcp_mtu_probing=1`): no probing while all goes well; once
/// timeouts keep coming (past `tcp_retries1`, 3), segments drop to `base_mss` (1024) and the
/// search is on; a further timeout halves its lower bound (MSS 512), as Linux's
/// `tcp_mtu_probing()` does for a path that silently drops large segments.
#[test]
fn black_hole_mode_shrinks_segments_after_repeated_timeouts() {
    let mut c = open(&Config {
        mtu_probing: MtuProbing {
            mode: MtuProbeMode::BlackHole,
            ..MtuProbing::default()
        },
        ..plain()
    });
    assert_eq!(c.mss(), 1460);
    assert_eq!(c.mtu_search_range(), None);
    c.send(&[7u8; 3000]).unwrap();
    assert_eq!(sent(&mut c, 20)[0].1, 1460);
    let mut first_resent = Vec::new();
    for _ in 0..5 {
        let at = c.poll_timeout().unwrap();
        c.handle_timeout(at);
        let out = sent(&mut c, at.as_millis());
        first_resent.push(out[0].1);
    }
    assert_eq!(first_resent, vec![1460, 1460, 1460, 1024, 512]);
    assert_eq!(c.mtu_search_range(), Some((552, 1500)));
}

/// With SACK: the peer SACKs everything after the probe, which is lost. No fast recovery:
/// only the probe's bytes go again, in 512-byte segments, and the window stays.
#[test]
fn a_probe_lost_under_sack_is_resent_alone() {
    let cfg = Config {
        sack: true,
        ..probing()
    };
    let mut c = established_with(
        &cfg,
        TcpOptions {
            mss: Some(1460),
            sack_permitted: true,
            ..TcpOptions::default()
        },
    );
    c.send(&[7u8; 4000]).unwrap();
    assert_eq!(sent(&mut c, 20)[0], (0, 986, false));
    let cwnd = c.cwnd();
    let mut ack = peer_ack(0);
    ack.options.push_sack(synack_wire::SackBlock {
        left: ISS + 1 + 986,
        right: ISS + 1 + 4000,
    });
    input(&mut c, t(30), &ack);
    assert_eq!(sent(&mut c, 30), vec![(0, 512, false), (512, 474, false)]);
    assert_eq!(c.cwnd(), cwnd);
    assert_eq!(c.mtu_search_range(), Some((552, 1025)));
    input(&mut c, t(40), &peer_ack(4000));
    assert_eq!(c.mss(), 512);
    assert_eq!(c.cwnd(), cwnd + 4000);
}
