//! The simulated network, driven by tiny test nodes: exact timing, impairments and their
//! counters, determinism, routing, bounded stepping and garbage input.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use proptest::prelude::*;
use synack_stack::sim::{
    destination_addr, source_addr, Direction, GilbertElliott, HostId, Network, Node, PacketLog,
    PathConfig, Tap,
};
use synack_tcp::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Test nodes and packets.

/// A scriptable host: sends scheduled packets when their time comes, optionally a packet every
/// `period`, optionally echoes what it receives (IPv4 addresses swapped), and records
/// everything it receives.
#[derive(Default)]
struct TestNode {
    echo: bool,
    schedule: VecDeque<(Instant, Vec<u8>)>,
    ticker: Option<(Instant, Duration, Vec<u8>)>,
    outbox: Vec<Vec<u8>>,
    received: Vec<(Instant, Vec<u8>)>,
    timeouts: Vec<Instant>,
    /// A deadline returned by `poll_timeout` until handled (for past-deadline tests).
    fixed_deadline: Option<Instant>,
}

impl TestNode {
    fn echo() -> Self {
        TestNode {
            echo: true,
            ..Default::default()
        }
    }

    /// Sends `packet` at 0, `period`, 2 × `period`, ... forever.
    fn pinging(period: Duration, packet: Vec<u8>) -> Self {
        TestNode {
            ticker: Some((Instant::ZERO, period, packet)),
            ..Default::default()
        }
    }

    /// Sends `packets` at the given instants (in order).
    fn sending(packets: impl IntoIterator<Item = (Instant, Vec<u8>)>) -> Self {
        TestNode {
            schedule: packets.into_iter().collect(),
            ..Default::default()
        }
    }

    fn received_ids(&self) -> Vec<u32> {
        self.received.iter().filter_map(|(_, p)| id_of(p)).collect()
    }
}

impl Node for TestNode {
    fn receive(&mut self, now: Instant, packet: &[u8]) {
        self.received.push((now, packet.to_vec()));
        if self.echo && packet.len() >= 20 && packet[0] >> 4 == 4 {
            let mut p = packet.to_vec();
            let (src, dst) = p[12..20].split_at_mut(4);
            src.swap_with_slice(dst);
            self.outbox.push(p);
        }
    }

    fn transmit(&mut self, _now: Instant, send: &mut dyn FnMut(&[u8])) {
        for p in self.outbox.drain(..) {
            send(&p);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.schedule.front().map(|(t, _)| *t),
            self.ticker.as_ref().map(|(t, _, _)| *t),
            self.fixed_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.timeouts.push(now);
        while self.schedule.front().is_some_and(|(t, _)| *t <= now) {
            let (_, p) = self.schedule.pop_front().unwrap();
            self.outbox.push(p);
        }
        if let Some((next, period, p)) = &mut self.ticker {
            if *next <= now {
                self.outbox.push(p.clone());
                *next += *period;
            }
        }
        if self.fixed_deadline.is_some_and(|d| d <= now) {
            self.fixed_deadline = None;
        }
    }
}

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

fn ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// An IPv4/UDP packet `src → dst` of `len` bytes (at least 32), carrying `id` after the UDP
/// header. The IPv4 header checksum is valid; the UDP checksum is 0 (none).
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, id: u32, len: usize) -> Vec<u8> {
    let len = len.max(32);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[4..6].copy_from_slice(&(id as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    p[28..32].copy_from_slice(&id.to_be_bytes());
    p
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn id_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(28..32)?.try_into().ok()?))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// `n` packets A → B with ids 0..n, all at `t`.
fn burst(n: u32, t: Instant, len: usize) -> Vec<(Instant, Vec<u8>)> {
    (0..n).map(|i| (t, udp4(A, B, i, len))).collect()
}

/// Hosts a (10.0.0.1) and b (10.0.0.2), linked.
fn pair(
    seed: u64,
    a: TestNode,
    b: TestNode,
    a_to_b: PathConfig,
    b_to_a: PathConfig,
) -> (Network<TestNode>, HostId, HostId) {
    let mut net = Network::new(seed);
    let ha = net.add_host("a", &[ip(A)], a);
    let hb = net.add_host("b", &[ip(B)], b);
    net.link(ha, hb, a_to_b, b_to_a);
    (net, ha, hb)
}

// ---------------------------------------------------------------------------------------------
// Basics.

#[test]
fn starts_at_zero_and_idle() {
    let mut net: Network<TestNode> = Network::new(7);
    assert_eq!(net.now(), Instant::ZERO);
    assert_eq!(net.seed(), 7);
    assert!(!net.step());
    assert!(net.run_until_idle(at_ms(10)));
    assert_eq!(net.now(), Instant::ZERO);
    net.run_until(at_ms(10));
    assert_eq!(net.now(), at_ms(10));
    net.run_until(at_ms(5)); // never backwards
    assert_eq!(net.now(), at_ms(10));
}

#[test]
fn hosts_and_addresses() {
    let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    let mut net = Network::new(1);
    let a = net.add_host("alice", &[ip(A), v6], TestNode::default());
    let b = net.add_host("bob", &[ip(B)], TestNode::echo());
    assert_eq!(a, HostId(0));
    assert_eq!(b, HostId(1));
    assert_eq!(net.host_name(a), "alice");
    assert_eq!(net.host_name(b), "bob");
    assert_eq!(net.host_by_addr(ip(A)), Some(a));
    assert_eq!(net.host_by_addr(v6), Some(a));
    assert_eq!(net.host_by_addr(ip(B)), Some(b));
    assert_eq!(net.host_by_addr(ip(C)), None);
    assert_eq!(net.host_addrs(a), &[ip(A), v6]);
    assert!(net.host(b).echo);
    net.host_mut(a).echo = true;
    assert!(net.host(a).echo);
    assert_eq!(net.host_ids().collect::<Vec<_>>(), vec![a, b]);
    assert!(net.path_stats(a, b).is_none());
    net.link(a, b, PathConfig::delay(ms(1)), PathConfig::default());
    assert_eq!(net.path_config(a, b).unwrap().delay, ms(1));
    assert_eq!(net.path_config(b, a).unwrap().delay, Duration::ZERO);
}

#[test]
#[should_panic(expected = "already owned")]
fn duplicate_address_panics() {
    let mut net = Network::new(1);
    net.add_host("a", &[ip(A)], TestNode::default());
    net.add_host("b", &[ip(A)], TestNode::default());
}

#[test]
fn address_helpers() {
    let p = udp4(A, B, 1, 40);
    assert_eq!(destination_addr(&p), Some(ip(B)));
    assert_eq!(source_addr(&p), Some(ip(A)));
    let mut v6 = vec![0u8; 40];
    v6[0] = 0x60;
    v6[23] = 1;
    v6[39] = 2;
    assert_eq!(source_addr(&v6), Some("::1".parse().unwrap()));
    assert_eq!(destination_addr(&v6), Some("::2".parse().unwrap()));
    assert_eq!(destination_addr(&v6[..39]), None);
    assert_eq!(destination_addr(&p[..19]), None);
    assert_eq!(destination_addr(&[]), None);
    assert_eq!(destination_addr(&[0x50; 60]), None);
}

// ---------------------------------------------------------------------------------------------
// Timing.

#[test]
fn delay_is_exact() {
    let sends = vec![
        (at_ms(0), udp4(A, B, 0, 100)),
        (Instant::from_micros(3_001), udp4(A, B, 1, 100)),
        (Instant::from_micros(7_500), udp4(A, B, 2, 100)),
    ];
    let (mut net, a, b) = pair(
        1,
        TestNode::sending(sends.clone()),
        TestNode::default(),
        PathConfig::delay(ms(40)),
        PathConfig::default(),
    );
    let tx = PacketLog::new();
    let rx = PacketLog::new();
    net.tap(a, Box::new(tx.clone()));
    net.tap(b, Box::new(rx.clone()));
    assert!(net.run_until_idle(Instant::from_millis(1000)));
    let got: Vec<_> = net.host(b).received.clone();
    let want: Vec<_> = sends
        .iter()
        .map(|(t, p)| (*t + ms(40), p.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(net.now(), Instant::from_micros(47_500));
    // Taps: Tx at the send instants on a, Rx at the arrival instants on b.
    let txs: Vec<_> = tx.packets().into_iter().map(|p| (p.time, p.dir)).collect();
    assert_eq!(
        txs,
        sends
            .iter()
            .map(|(t, _)| (*t, Direction::Tx))
            .collect::<Vec<_>>()
    );
    let rxs: Vec<_> = rx.packets().into_iter().map(|p| (p.time, p.dir)).collect();
    assert_eq!(
        rxs,
        want.iter()
            .map(|(t, _)| (*t, Direction::Rx))
            .collect::<Vec<_>>()
    );
    let s = net.path_stats(a, b).unwrap();
    assert_eq!((s.sent, s.delivered, s.bytes_delivered), (3, 3, 300));
}

#[test]
fn echo_round_trip_takes_both_delays() {
    let (mut net, a, b) = pair(
        1,
        TestNode::sending([(at_ms(1), udp4(A, B, 9, 60))]),
        TestNode::echo(),
        PathConfig::delay(ms(10)),
        PathConfig::delay(ms(25)),
    );
    assert!(net.run_until_idle(at_ms(100)));
    assert_eq!(net.host(b).received[0].0, at_ms(11));
    let (t, p) = &net.host(a).received[0];
    assert_eq!(*t, at_ms(36));
    assert_eq!(source_addr(p), Some(ip(B)));
    assert_eq!(destination_addr(p), Some(ip(A)));
    assert_eq!(id_of(p), Some(9));
}

#[test]
fn bandwidth_serialization_spacing_is_exact() {
    // 1500 bytes at 12 Mbit/s: exactly 1 ms per packet, back to back, plus 5 ms of delay.
    let (mut net, a, b) = pair(
        1,
        TestNode::sending(burst(10, at_ms(0), 1500)),
        TestNode::default(),
        PathConfig::delay(ms(5)).with_bandwidth(12_000_000),
        PathConfig::default(),
    );
    assert!(net.run_until_idle(at_ms(1000)));
    let times: Vec<_> = net.host(b).received.iter().map(|(t, _)| *t).collect();
    let want: Vec<_> = (0..10).map(|i| at_ms(6 + i)).collect();
    assert_eq!(times, want);
    assert_eq!(net.host(b).received_ids(), (0..10).collect::<Vec<_>>());
    assert_eq!(net.path_stats(a, b).unwrap().delivered, 10);

    // A packet sent after the link went idle starts serializing at once.
    let mut sends = burst(2, at_ms(0), 1500);
    sends.push((at_ms(50), udp4(A, B, 2, 750)));
    let (mut net, _, b) = pair(
        1,
        TestNode::sending(sends),
        TestNode::default(),
        PathConfig::default().with_bandwidth(12_000_000),
        PathConfig::default(),
    );
    net.run_until_idle(at_ms(1000));
    let times: Vec<_> = net.host(b).received.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![at_ms(1), at_ms(2), Instant::from_micros(50_500)]
    );
}

#[test]
fn queue_tail_drop_counts() {
    // One packet on the wire, three (4500 bytes) may wait, the other six are tail-dropped.
    let mut sends = burst(10, at_ms(0), 1500);
    // At 2.5 ms two have left, one is on the wire and one waits (1500 bytes): two more fit.
    sends.extend((10..13).map(|i| (Instant::from_micros(2_500), udp4(A, B, i, 1500))));
    let (mut net, a, b) = pair(
        1,
        TestNode::sending(sends),
        TestNode::default(),
        PathConfig::default()
            .with_bandwidth(12_000_000)
            .with_queue_limit(4500),
        PathConfig::default(),
    );
    net.flush();
    assert!(net.step()); // t = 0: the burst is offered
    assert_eq!(net.now(), at_ms(0));
    assert_eq!(net.queued_bytes(a, b), Some(4500));
    assert_eq!(net.path_stats(a, b).unwrap().dropped_queue, 6);
    assert!(net.run_until_idle(at_ms(1000)));
    let s = *net.path_stats(a, b).unwrap();
    assert_eq!(s.sent, 13);
    assert_eq!(s.dropped_queue, 7);
    assert_eq!(s.delivered, 6);
    assert_eq!(net.host(b).received_ids(), vec![0, 1, 2, 3, 10, 11]);
    assert_eq!(net.host(b).received.last().unwrap().0, at_ms(6));
    assert_eq!(net.stats().paths.dropped_queue, 7);
    assert_eq!(net.queued_bytes(a, b), Some(0));
}

#[test]
fn jitter_stays_in_bounds_and_varies() {
    let sends: Vec<_> = (0..2000)
        .map(|i| (at_ms(i), udp4(A, B, i as u32, 40)))
        .collect();
    let (mut net, _, b) = pair(
        3,
        TestNode::sending(sends),
        TestNode::default(),
        PathConfig::delay(ms(10)).with_jitter(ms(5)),
        PathConfig::default(),
    );
    net.run_until_idle(Instant::from_millis(10_000));
    let mut extra = BTreeSet::new();
    for (t, p) in &net.host(b).received {
        let sent = at_ms(u64::from(id_of(p).unwrap()));
        let d = *t - sent;
        assert!(d >= ms(10) && d < ms(15), "{d:?}");
        extra.insert(d);
    }
    assert_eq!(net.host(b).received.len(), 2000);
    assert!(
        extra.len() > 1000,
        "jitter should spread: {} values",
        extra.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Impairments.

#[test]
fn bernoulli_loss_rate_over_100k_packets() {
    let n = 100_000;
    for (seed, p) in [(1u64, 0.1f64), (2, 0.01), (3, 0.5)] {
        let (mut net, a, b) = pair(
            seed,
            TestNode::sending(burst(n, at_ms(0), 32)),
            TestNode::default(),
            PathConfig::default().with_loss(p),
            PathConfig::default(),
        );
        assert!(net.run_until_idle(at_ms(1)));
        let s = *net.path_stats(a, b).unwrap();
        assert_eq!(s.sent, u64::from(n));
        assert_eq!(s.delivered + s.dropped_loss, s.sent);
        assert_eq!(net.host(b).received.len() as u64, s.delivered);
        let rate = s.dropped_loss as f64 / f64::from(n);
        // Five standard deviations of a binomial proportion.
        let tol = 5.0 * (p * (1.0 - p) / f64::from(n)).sqrt();
        assert!(
            (rate - p).abs() < tol,
            "p={p}: measured {rate}, tolerance {tol}"
        );
    }
}

/// Lengths of the runs of consecutive lost ids, given the ids received out of 0..n.
fn loss_bursts(received: &[u32], n: u32) -> Vec<u32> {
    let got: BTreeSet<u32> = received.iter().copied().collect();
    let mut bursts = Vec::new();
    let mut run = 0;
    for i in 0..n {
        if got.contains(&i) {
            if run > 0 {
                bursts.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    bursts
}

#[test]
fn gilbert_elliott_produces_bursts() {
    let n = 100_000;
    let ge = GilbertElliott::gilbert(0.02, 0.25);
    let (mut net, a, b) = pair(
        11,
        TestNode::sending(burst(n, at_ms(0), 32)),
        TestNode::default(),
        PathConfig::default().with_gilbert_elliott(ge),
        PathConfig::default(),
    );
    net.run_until_idle(at_ms(1));
    let s = *net.path_stats(a, b).unwrap();
    let bursts = loss_bursts(&net.host(b).received_ids(), n);
    let lost: u32 = bursts.iter().sum();
    assert_eq!(u64::from(lost), s.dropped_loss);
    let mean_burst = f64::from(lost) / bursts.len() as f64;
    // Geometric with mean 1 / p_bad_to_good = 4 packets.
    assert!((mean_burst - 4.0).abs() < 0.4, "mean burst {mean_burst}");
    let rate = f64::from(lost) / f64::from(n);
    assert!(
        (rate - ge.mean_loss()).abs() < 0.01,
        "rate {rate} vs {}",
        ge.mean_loss()
    );

    // The same average loss, independently: bursts are barely longer than one packet.
    let (mut net, _, b) = pair(
        11,
        TestNode::sending(burst(n, at_ms(0), 32)),
        TestNode::default(),
        PathConfig::default().with_loss(ge.mean_loss()),
        PathConfig::default(),
    );
    net.run_until_idle(at_ms(1));
    let bursts = loss_bursts(&net.host(b).received_ids(), n);
    let mean = bursts.iter().sum::<u32>() as f64 / bursts.len() as f64;
    assert!(mean < 1.2, "independent loss mean burst {mean}");
}

#[test]
fn gilbert_elliott_loss_in_good_state_and_partial_bad() {
    // Elliott's extension: some loss in Good, not all in Bad.
    let n = 100_000;
    let ge = GilbertElliott {
        p_good_to_bad: 0.05,
        p_bad_to_good: 0.2,
        loss_good: 0.01,
        loss_bad: 0.5,
    };
    let (mut net, a, b) = pair(
        5,
        TestNode::sending(burst(n, at_ms(0), 32)),
        TestNode::default(),
        PathConfig::default().with_gilbert_elliott(ge),
        PathConfig::default(),
    );
    net.run_until_idle(at_ms(1));
    let rate = net.path_stats(a, b).unwrap().dropped_loss as f64 / f64::from(n);
    // π_bad = 0.2, so 0.8 · 0.01 + 0.2 · 0.5 = 0.108.
    assert!((ge.mean_loss() - 0.108).abs() < 1e-12);
    assert!((rate - 0.108).abs() < 0.01, "rate {rate}");
    assert_eq!(
        net.host(b).received.len() as u64,
        net.path_stats(a, b).unwrap().delivered
    );
}

#[test]
fn duplication_counts_and_order() {
    let n = 10_000;
    let sends: Vec<_> = (0..n)
        .map(|i| (at_ms(u64::from(i)), udp4(A, B, i, 40)))
        .collect();
    let (mut net, a, b) = pair(
        21,
        TestNode::sending(sends),
        TestNode::default(),
        PathConfig::delay(ms(3)).with_duplicate(0.1),
        PathConfig::default(),
    );
    let rx = PacketLog::new();
    net.tap(b, Box::new(rx.clone()));
    net.run_until_idle(Instant::from_millis(100_000));
    let s = *net.path_stats(a, b).unwrap();
    assert_eq!(s.sent, u64::from(n));
    assert!(
        (850..1150).contains(&s.duplicated),
        "duplicated {}",
        s.duplicated
    );
    assert_eq!(s.delivered, s.sent + s.duplicated);
    assert_eq!(rx.len() as u64, s.delivered);
    // Every copy arrives right after its original, at the same instant, with the same bytes.
    let got = &net.host(b).received;
    let mut dups = 0;
    for w in got.windows(2) {
        if w[0].1 == w[1].1 {
            assert_eq!(w[0].0, w[1].0);
            dups += 1;
        }
    }
    assert_eq!(dups, s.duplicated);
    let ids: Vec<u32> = net.host(b).received_ids();
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "duplication must not reorder"
    );
}

#[test]
fn reorder_counts_and_hold_back() {
    let n = 10_000;
    let sends: Vec<_> = (0..n)
        .map(|i| (at_ms(u64::from(i)), udp4(A, B, i, 40)))
        .collect();
    let (mut net, a, b) = pair(
        31,
        TestNode::sending(sends),
        TestNode::default(),
        PathConfig::delay(ms(10)).with_reorder(0.1),
        PathConfig::default(),
    );
    net.run_until_idle(Instant::from_millis(100_000));
    let s = *net.path_stats(a, b).unwrap();
    assert!(
        (850..1150).contains(&s.reordered),
        "reordered {}",
        s.reordered
    );
    assert_eq!(s.delivered, u64::from(n));
    // Held back packets take delay + 2 × delay = 30 ms, the others exactly 10 ms.
    let mut held = BTreeSet::new();
    for (t, p) in &net.host(b).received {
        let id = id_of(p).unwrap();
        match *t - at_ms(u64::from(id)) {
            d if d == ms(10) => {}
            d if d == ms(30) => {
                held.insert(id);
            }
            d => panic!("unexpected transit {d:?}"),
        }
    }
    assert_eq!(held.len() as u64, s.reordered);
    // A held-back packet is overtaken (arrives after a higher id), and only those are; the
    // last few ids may have nothing left to overtake them.
    let mut max_seen = 0;
    let mut late = BTreeSet::new();
    for id in net.host(b).received_ids() {
        if id < max_seen {
            late.insert(id);
        }
        max_seen = max_seen.max(id);
    }
    assert!(late.is_subset(&held));
    let early_held: BTreeSet<u32> = held.iter().copied().filter(|&id| id < n - 20).collect();
    assert!(early_held.is_subset(&late));

    // An explicit hold-back.
    let (mut net, _, b) = pair(
        31,
        TestNode::sending([(at_ms(0), udp4(A, B, 0, 40))]),
        TestNode::default(),
        PathConfig::delay(ms(10))
            .with_reorder(1.0)
            .with_reorder_delay(ms(7)),
        PathConfig::default(),
    );
    net.run_until_idle(at_ms(100));
    assert_eq!(net.host(b).received[0].0, at_ms(17));
}

fn bit_difference(a: &[u8], b: &[u8]) -> u32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[test]
fn corruption_flips_exactly_one_bit() {
    let n = 2000;
    let (mut net, a, b) = pair(
        41,
        TestNode::sending(burst(n, at_ms(0), 64)),
        TestNode::default(),
        PathConfig::default().with_corrupt(1.0),
        PathConfig::default(),
    );
    let tx = PacketLog::new();
    net.tap(a, Box::new(tx.clone()));
    net.run_until_idle(at_ms(1));
    assert_eq!(net.path_stats(a, b).unwrap().corrupted, u64::from(n));
    let mut positions = BTreeSet::new();
    for (i, (_, got)) in net.host(b).received.iter().enumerate() {
        let sent = udp4(A, B, i as u32, 64);
        assert_eq!(bit_difference(&sent, got), 1, "packet {i}");
        positions.insert(sent.iter().zip(got).position(|(x, y)| x != y).unwrap());
        // The Tx tap saw the packet as sent.
        assert_eq!(tx.borrow()[i].bytes, sent);
    }
    assert!(
        positions.len() > 50,
        "flips should land all over the packet"
    );

    // Partial corruption: the counter matches what arrived damaged; duplicates arrive intact.
    let (mut net, a, b) = pair(
        42,
        TestNode::sending(burst(n, at_ms(0), 64)),
        TestNode::default(),
        PathConfig::default().with_corrupt(0.3).with_duplicate(0.5),
        PathConfig::default(),
    );
    net.run_until_idle(at_ms(1));
    let s = *net.path_stats(a, b).unwrap();
    let damaged = net
        .host(b)
        .received
        .iter()
        .filter(|(_, p)| {
            let id = id_of(p).unwrap_or(u32::MAX);
            id >= n || *p != udp4(A, B, id, 64)
        })
        .count() as u64;
    assert_eq!(damaged, s.corrupted);
    assert!(
        (500..700).contains(&s.corrupted),
        "corrupted {}",
        s.corrupted
    );
}

#[test]
fn tx_is_tapped_even_when_dropped() {
    let (mut net, a, b) = pair(
        1,
        TestNode::sending(burst(5, at_ms(0), 40)),
        TestNode::default(),
        PathConfig::default().with_loss(1.0),
        PathConfig::default(),
    );
    let ta = PacketLog::new();
    let tb = PacketLog::new();
    net.tap(a, Box::new(ta.clone()));
    net.tap(b, Box::new(tb.clone()));
    net.run_until_idle(at_ms(10));
    assert_eq!(ta.filter(Direction::Tx).len(), 5);
    assert!(ta.filter(Direction::Rx).is_empty());
    assert!(tb.is_empty());
    assert_eq!(net.path_stats(a, b).unwrap().dropped_loss, 5);
    assert_eq!(net.stats().emitted, 5);
}

#[test]
fn taps_can_be_taken_back() {
    let (mut net, a, _) = pair(
        1,
        TestNode::sending([(at_ms(0), udp4(A, B, 0, 40)), (at_ms(5), udp4(A, B, 1, 40))]),
        TestNode::default(),
        PathConfig::default(),
        PathConfig::default(),
    );
    let log = PacketLog::new();
    let shared = Rc::new(RefCell::new(PacketLog::new()));
    net.tap(a, Box::new(log.clone()));
    net.tap(a, Box::new(shared.clone()));
    net.run_until(at_ms(1));
    assert_eq!(log.len(), 1);
    assert_eq!(shared.borrow().len(), 1);
    let taps = net.take_taps(a);
    assert_eq!(taps.len(), 2);
    net.run_until_idle(at_ms(10));
    assert_eq!(log.len(), 1, "a taken tap sees nothing more");
    assert!(net.take_taps(a).is_empty());
    assert!(net.take_taps(HostId(99)).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Determinism.

/// A busy, heavily impaired exchange; returns both hosts' tap logs.
fn impaired_run(
    seed: u64,
) -> (
    Vec<synack_stack::sim::LoggedPacket>,
    Vec<synack_stack::sim::LoggedPacket>,
) {
    let sends: Vec<_> = (0..500)
        .map(|i| {
            (
                Instant::from_micros(i * 700),
                udp4(A, B, i as u32, 100 + (i as usize % 900)),
            )
        })
        .collect();
    let path = PathConfig::delay(ms(20))
        .with_jitter(ms(4))
        .with_bandwidth(5_000_000)
        .with_queue_limit(20_000)
        .with_loss(0.05)
        .with_gilbert_elliott(GilbertElliott::gilbert(0.01, 0.3))
        .with_reorder(0.05)
        .with_duplicate(0.05)
        .with_corrupt(0.05);
    let (mut net, a, b) = pair(
        seed,
        TestNode::sending(sends),
        TestNode::echo(),
        path.clone(),
        path,
    );
    let la = PacketLog::new();
    let lb = PacketLog::new();
    net.tap(a, Box::new(la.clone()));
    net.tap(b, Box::new(lb.clone()));
    assert!(net.run_until_idle(Instant::from_millis(60_000)));
    let s = net.stats();
    assert!(s.paths.dropped_loss > 0 && s.paths.duplicated > 0 && s.paths.corrupted > 0);
    (la.packets(), lb.packets())
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let one = impaired_run(1234);
    let again = impaired_run(1234);
    assert_eq!(one, again);
    let other = impaired_run(1235);
    assert_ne!(one.1, other.1);
}

/// Hosts a, b, c with a → b lossy; returns what b received.
fn three_hosts(seed: u64, a_to_c: PathConfig, link_c_first: bool) -> Vec<(Instant, Vec<u8>)> {
    let mut sends = Vec::new();
    for i in 0..2000u32 {
        sends.push((at_ms(u64::from(i)), udp4(A, B, i, 60)));
        sends.push((at_ms(u64::from(i)), udp4(A, C, i, 60)));
    }
    let mut net = Network::new(seed);
    let a = net.add_host("a", &[ip(A)], TestNode::sending(sends));
    let b = net.add_host("b", &[ip(B)], TestNode::default());
    let c = net.add_host("c", &[ip(C)], TestNode::default());
    let ab = PathConfig::delay(ms(5))
        .with_loss(0.2)
        .with_jitter(ms(3))
        .with_duplicate(0.1);
    if link_c_first {
        net.link(a, c, a_to_c, PathConfig::default());
        net.link(a, b, ab, PathConfig::default());
    } else {
        net.link(a, b, ab, PathConfig::default());
        net.link(a, c, a_to_c, PathConfig::default());
    }
    net.run_until_idle(Instant::from_millis(100_000));
    net.host(b).received.clone()
}

#[test]
fn impairing_one_path_does_not_change_another() {
    let plain = three_hosts(9, PathConfig::default(), false);
    let impaired = three_hosts(
        9,
        PathConfig::delay(ms(1))
            .with_loss(0.5)
            .with_corrupt(0.5)
            .with_reorder(0.3),
        false,
    );
    assert_eq!(plain, impaired);
    // Nor does the order in which links were made.
    assert_eq!(plain, three_hosts(9, PathConfig::default(), true));
    assert_ne!(plain, three_hosts(10, PathConfig::default(), false));
}

#[test]
fn changing_one_impairment_keeps_the_others_draws() {
    // Every packet takes the same draws whatever the configuration: adding duplication does
    // not change which packets are lost.
    let run = |dup: f64| {
        let (mut net, _, b) = pair(
            77,
            TestNode::sending(burst(5000, at_ms(0), 32)),
            TestNode::default(),
            PathConfig::default().with_loss(0.3).with_duplicate(dup),
            PathConfig::default(),
        );
        net.run_until_idle(at_ms(1));
        net.host(b)
            .received_ids()
            .into_iter()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(run(0.0), run(0.5));
}

// ---------------------------------------------------------------------------------------------
// Routing.

#[test]
fn no_route_drops_are_counted() {
    let v6_a: IpAddr = "fd00::1".parse().unwrap();
    let mut v6_to_unlinked = vec![0u8; 48];
    v6_to_unlinked[0] = 0x60;
    v6_to_unlinked[24..40].copy_from_slice(&"fd00::3".parse::<Ipv6Addr>().unwrap().octets());
    let sends = vec![
        (at_ms(0), udp4(A, Ipv4Addr::new(192, 0, 2, 1), 0, 40)), // nobody owns it
        (at_ms(0), udp4(A, C, 1, 40)),                           // c exists, not linked to a
        (at_ms(0), udp4(A, A, 2, 40)),                           // itself
        (at_ms(0), vec![0x50; 40]),                              // IP version 5
        (at_ms(0), vec![]),                                      // empty
        (at_ms(0), vec![0x45; 19]),                              // too short for an address
        (at_ms(0), v6_to_unlinked),                              // IPv6 to c, not linked
        (at_ms(0), udp4(A, B, 3, 40)),                           // fine
    ];
    let mut net = Network::new(1);
    let a = net.add_host("a", &[ip(A), v6_a], TestNode::sending(sends));
    let b = net.add_host("b", &[ip(B)], TestNode::default());
    let c = net.add_host(
        "c",
        &[ip(C), "fd00::3".parse().unwrap()],
        TestNode::default(),
    );
    net.link(a, b, PathConfig::default(), PathConfig::default());
    let _ = c;
    net.run_until_idle(at_ms(10));
    let s = net.stats();
    assert_eq!(s.emitted, 8);
    assert_eq!(s.dropped_no_route, 7);
    assert_eq!(s.paths.delivered, 1);
    assert_eq!(net.host(b).received_ids(), vec![3]);
    assert!(net.host(c).received.is_empty());
}

#[test]
fn ipv6_packets_are_routed() {
    let a6: Ipv6Addr = "2001:db8::a".parse().unwrap();
    let b6: Ipv6Addr = "2001:db8::b".parse().unwrap();
    let mut p = vec![0u8; 60];
    p[0] = 0x60;
    p[8..24].copy_from_slice(&a6.octets());
    p[24..40].copy_from_slice(&b6.octets());
    let mut net = Network::new(1);
    let a = net.add_host(
        "a",
        &[IpAddr::V6(a6)],
        TestNode::sending([(at_ms(2), p.clone())]),
    );
    let b = net.add_host("b", &[IpAddr::V6(b6)], TestNode::default());
    net.link(a, b, PathConfig::delay(ms(3)), PathConfig::default());
    net.run_until_idle(at_ms(100));
    assert_eq!(net.host(b).received, vec![(at_ms(5), p)]);
}

#[test]
fn boxed_nodes_of_different_types() {
    /// Counts what it receives, nothing else.
    struct Sink(Rc<RefCell<u32>>);
    impl Node for Sink {
        fn receive(&mut self, _: Instant, _: &[u8]) {
            *self.0.borrow_mut() += 1;
        }
        fn transmit(&mut self, _: Instant, _: &mut dyn FnMut(&[u8])) {}
        fn poll_timeout(&mut self) -> Option<Instant> {
            None
        }
        fn handle_timeout(&mut self, _: Instant) {}
    }
    let count = Rc::new(RefCell::new(0));
    let mut net: Network<Box<dyn Node>> = Network::new(1);
    let a = net.add_host(
        "a",
        &[ip(A)],
        Box::new(TestNode::sending(burst(3, at_ms(1), 40))),
    );
    let b = net.add_host("b", &[ip(B)], Box::new(Sink(count.clone())));
    net.link(a, b, PathConfig::delay(ms(1)), PathConfig::default());
    assert!(net.run_until_idle(at_ms(10)));
    assert_eq!(*count.borrow(), 3);
    assert_eq!(net.now(), at_ms(2));
}

// ---------------------------------------------------------------------------------------------
// Stepping.

#[test]
fn step_by_step() {
    let (mut net, a, b) = pair(
        1,
        TestNode::sending([(at_ms(5), udp4(A, B, 0, 40))]),
        TestNode::echo(),
        PathConfig::delay(ms(10)),
        PathConfig::delay(ms(10)),
    );
    assert_eq!(net.next_event(), Some(at_ms(5)));
    assert!(net.step());
    assert_eq!(net.now(), at_ms(5));
    assert_eq!(net.host(a).timeouts, vec![at_ms(5)]);
    assert_eq!(net.in_flight(), 1);
    assert!(net.step());
    assert_eq!(net.now(), at_ms(15));
    assert_eq!(net.host(b).received.len(), 1);
    assert_eq!(net.in_flight(), 1, "the echo is already on its way");
    assert!(net.step());
    assert_eq!(net.now(), at_ms(25));
    assert_eq!(net.host(a).received.len(), 1);
    assert!(!net.step());
    assert_eq!(net.now(), at_ms(25));
}

#[test]
fn flush_sends_what_a_test_queued_between_steps() {
    let (mut net, a, b) = pair(
        1,
        TestNode::default(),
        TestNode::default(),
        PathConfig::delay(ms(10)),
        PathConfig::default(),
    );
    net.run_until(at_ms(100));
    net.host_mut(a).outbox.push(udp4(A, B, 1, 40));
    net.flush();
    assert_eq!(net.in_flight(), 1);
    assert_eq!(net.now(), at_ms(100));
    net.run_until(at_ms(200));
    assert_eq!(net.host(b).received[0].0, at_ms(110));
}

#[test]
fn run_until_includes_events_at_the_limit() {
    let sends = vec![
        (at_ms(10), udp4(A, B, 0, 40)),
        (at_ms(20), udp4(A, B, 1, 40)),
    ];
    let (mut net, _, b) = pair(
        1,
        TestNode::sending(sends),
        TestNode::default(),
        PathConfig::default(),
        PathConfig::default(),
    );
    net.run_until(at_ms(10));
    assert_eq!(net.host(b).received_ids(), vec![0]);
    assert_eq!(net.now(), at_ms(10));
    net.run_until(Instant::from_micros(19_999));
    assert_eq!(net.host(b).received_ids(), vec![0]);
    net.run_until(at_ms(20));
    assert_eq!(net.host(b).received_ids(), vec![0, 1]);
}

#[test]
fn run_until_idle_reports_the_limit() {
    let pinger = TestNode::pinging(ms(10), udp4(A, B, 0, 40));
    let (mut net, _, b) = pair(
        1,
        pinger,
        TestNode::default(),
        PathConfig::delay(ms(1)),
        PathConfig::default(),
    );
    assert!(!net.run_until_idle(at_ms(95)));
    assert_eq!(net.now(), at_ms(95));
    assert_eq!(net.host(b).received.len(), 10); // arrivals at 1, 11, ..., 91 ms
}

#[test]
fn run_while_stops_at_its_limit_or_when_cond_fails() {
    let pinger = TestNode::pinging(ms(10), udp4(A, B, 0, 40));
    let (mut net, _, b) = pair(
        1,
        pinger,
        TestNode::default(),
        PathConfig::delay(ms(3)),
        PathConfig::default(),
    );
    // The condition never fails: the pinger runs forever, but virtual time is bounded.
    assert!(!net.run_while(at_ms(1000), |_| true));
    assert_eq!(net.now(), at_ms(1000));
    assert_eq!(net.host(b).received.len(), 100);

    // The condition fails after five more packets: stopped at the fifth arrival.
    let target = net.host(b).received.len() + 5;
    assert!(net.run_while(at_ms(10_000), |n| n.host(b).received.len() < target));
    assert_eq!(net.now(), at_ms(1043));

    // A condition on time alone, with an idle network: checked once more at the limit.
    let mut idle: Network<TestNode> = Network::new(1);
    assert!(idle.run_while(at_ms(50), |n| n.now() < at_ms(50)));
    assert_eq!(idle.now(), at_ms(50));
    let mut idle: Network<TestNode> = Network::new(1);
    assert!(!idle.run_while(at_ms(50), |_| true));
}

#[test]
fn past_deadlines_are_handled_now_and_time_never_goes_back() {
    let (mut net, a, _) = pair(
        1,
        TestNode::default(),
        TestNode::default(),
        PathConfig::default(),
        PathConfig::default(),
    );
    net.run_until(at_ms(500));
    net.host_mut(a).fixed_deadline = Some(at_ms(100));
    assert_eq!(net.next_event(), Some(at_ms(500)));
    assert!(net.step());
    assert_eq!(net.now(), at_ms(500));
    assert_eq!(net.host(a).timeouts, vec![at_ms(500)]);
    assert!(!net.step());
}

#[test]
#[should_panic(expected = "livelock")]
fn zero_delay_echo_ping_pong_is_reported_as_livelock() {
    let (mut net, _, _) = pair(
        1,
        TestNode::sending([(at_ms(0), udp4(A, B, 0, 40))]),
        TestNode::echo(),
        PathConfig::default(),
        PathConfig::default(),
    );
    // a is not an echo, but make it one so the packet bounces forever at t = 0.
    net.host_mut(HostId(0)).echo = true;
    net.set_livelock_limit(1000);
    net.run_until(at_ms(1));
}

// ---------------------------------------------------------------------------------------------
// Garbage.

/// Sends whatever bytes it is given at t = 0 and echoes whatever it gets.
fn garbage_net(packets: Vec<Vec<u8>>, path: PathConfig) -> Network<TestNode> {
    let sends = packets.into_iter().map(|p| (at_ms(0), p));
    let (mut net, _, _) = pair(
        9,
        TestNode::sending(sends),
        TestNode::echo(),
        path.clone(),
        path,
    );
    let log = PacketLog::new();
    net.tap(HostId(0), Box::new(log));
    net
}

fn harsh_path() -> PathConfig {
    PathConfig::delay(ms(1))
        .with_jitter(ms(1))
        .with_bandwidth(1_000_000)
        .with_queue_limit(3000)
        .with_loss(0.1)
        .with_reorder(0.2)
        .with_duplicate(0.2)
        .with_corrupt(0.5)
}

#[test]
fn garbage_packets_do_not_panic() {
    let mut packets = vec![
        vec![],
        vec![0x45],
        vec![0x60],
        vec![0x40; 19],
        vec![0x60; 39],
    ];
    // Well-formed enough to route (version 4, destination b), garbage otherwise.
    let mut p = vec![0xff; 20];
    p[0] = 0x4f;
    p[16..20].copy_from_slice(&B.octets());
    packets.push(p);
    let mut huge = vec![0u8; 70_000];
    huge[0] = 0x45;
    huge[16..20].copy_from_slice(&B.octets());
    packets.push(huge);
    let mut net = garbage_net(packets, harsh_path());
    assert!(net.run_until_idle(Instant::from_millis(60_000)));
    let s = net.stats();
    assert_eq!(s.emitted, s.dropped_no_route + s.paths.sent);
    assert_eq!(
        s.paths.sent + s.paths.duplicated,
        s.paths.delivered + s.paths.dropped_loss + s.paths.dropped_queue
    );
    assert!(s.dropped_no_route >= 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_do_not_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..20),
        version_bias in proptest::collection::vec(prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()], 20),
        seed in any::<u64>(),
    ) {
        let mut packets = packets;
        for (p, v) in packets.iter_mut().zip(&version_bias) {
            if let Some(first) = p.first_mut() {
                *first = *v;
            }
            if p.len() >= 20 && *v == 0x45 {
                p[16..20].copy_from_slice(&B.octets());
            }
        }
        let sends = packets.into_iter().map(|p| (at_ms(0), p));
        let path = harsh_path();
        let (mut net, _, _) = pair(seed, TestNode::sending(sends), TestNode::echo(), path.clone(), path);
        prop_assert!(net.run_until_idle(Instant::from_millis(60_000)));
        let s = net.stats();
        prop_assert_eq!(s.emitted, s.dropped_no_route + s.paths.sent);
        prop_assert_eq!(
            s.paths.sent + s.paths.duplicated,
            s.paths.delivered + s.paths.dropped_loss + s.paths.dropped_queue
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Accounting.

#[test]
fn counters_add_up() {
    let sends: Vec<_> = (0..300)
        .map(|i| (at_ms(i), udp4(A, B, i as u32, 500)))
        .collect();
    let path = PathConfig::delay(ms(5))
        .with_bandwidth(2_000_000)
        .with_queue_limit(2000)
        .with_loss(0.1)
        .with_duplicate(0.1)
        .with_reorder(0.1);
    let (mut net, a, b) = pair(
        3,
        TestNode::sending(sends),
        TestNode::echo(),
        path.clone(),
        path,
    );
    let la = PacketLog::new();
    net.tap(a, Box::new(la.clone()));
    net.run_until_idle(Instant::from_millis(60_000));
    let ab = *net.path_stats(a, b).unwrap();
    let ba = *net.path_stats(b, a).unwrap();
    for s in [ab, ba] {
        assert_eq!(
            s.sent + s.duplicated,
            s.delivered + s.dropped_loss + s.dropped_queue
        );
    }
    assert!(
        ab.dropped_queue > 0,
        "the queue should overflow at 2 Mbit/s"
    );
    assert_eq!(ba.sent, ab.delivered, "b echoes every delivery");
    assert_eq!(la.filter(Direction::Tx).len() as u64, ab.sent);
    assert_eq!(la.filter(Direction::Rx).len() as u64, ba.delivered);
    let total = net.stats();
    assert_eq!(total.paths.sent, ab.sent + ba.sent);
    assert_eq!(total.emitted, ab.sent + ba.sent);
    assert_eq!(
        total.paths.bytes_delivered,
        ab.bytes_delivered + ba.bytes_delivered
    );
    assert_eq!(ab.bytes_delivered, 500 * ab.delivered);
}

#[test]
fn relinking_replaces_config_and_keeps_counters() {
    let pinger = TestNode::pinging(ms(10), udp4(A, B, 0, 40));
    let (mut net, a, b) = pair(
        1,
        pinger,
        TestNode::default(),
        PathConfig::delay(ms(1)),
        PathConfig::default(),
    );
    net.run_until(at_ms(45));
    assert_eq!(net.path_stats(a, b).unwrap().delivered, 5);
    // The link goes down one way.
    net.set_path(a, b, PathConfig::default().with_loss(1.0));
    net.run_until(at_ms(95));
    let s = *net.path_stats(a, b).unwrap();
    assert_eq!((s.sent, s.delivered, s.dropped_loss), (10, 5, 5));
    net.link(a, b, PathConfig::delay(ms(2)), PathConfig::default());
    net.run_until(at_ms(105));
    assert_eq!(net.host(b).received.last().unwrap().0, at_ms(102));
}

#[test]
fn tap_trait_object_through_rc() {
    let log = Rc::new(RefCell::new(PacketLog::new()));
    let mut tap: Box<dyn Tap> = Box::new(log.clone());
    tap.packet(at_ms(1), Direction::Rx, &[1, 2]);
    assert_eq!(log.borrow().packets()[0].bytes, vec![1, 2]);
}
