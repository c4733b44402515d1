//! Captures of a simulated host's interface: the pcap written by a tap reads back as exactly
//! what the tap saw, and tshark (when installed) accepts it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::rc::Rc;

use synack_stack::pcap::{PcapReader, PcapTap};
use synack_stack::sim::{Direction, HostId, Network, Node, PacketLog, PathConfig};
use synack_tcp::time::{Duration, Instant};

/// Sends scheduled packets when due and echoes (addresses swapped) what it receives.
#[derive(Default)]
struct Host {
    echo: bool,
    schedule: VecDeque<(Instant, Vec<u8>)>,
    outbox: Vec<Vec<u8>>,
}

impl Node for Host {
    fn receive(&mut self, _now: Instant, p: &[u8]) {
        if !self.echo {
            return;
        }
        let mut p = p.to_vec();
        match p.first().map(|b| b >> 4) {
            Some(4) if p.len() >= 20 => {
                let (s, d) = p[12..20].split_at_mut(4);
                s.swap_with_slice(d);
            }
            Some(6) if p.len() >= 40 => {
                let (s, d) = p[8..40].split_at_mut(16);
                s.swap_with_slice(d);
            }
            _ => return,
        }
        self.outbox.push(p);
    }

    fn transmit(&mut self, _now: Instant, send: &mut dyn FnMut(&[u8])) {
        for p in self.outbox.drain(..) {
            send(&p);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.schedule.front().map(|(t, _)| *t)
    }

    fn handle_timeout(&mut self, now: Instant) {
        while self.schedule.front().is_some_and(|(t, _)| *t <= now) {
            let (_, p) = self.schedule.pop_front().unwrap();
            self.outbox.push(p);
        }
    }
}

const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

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

/// IPv4/UDP to port 9 with a 4-byte payload `id` (no UDP checksum, valid IP checksum).
fn udp4(id: u32) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[4..6].copy_from_slice(&(id as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&A4.octets());
    p[16..20].copy_from_slice(&B4.octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p[28..32].copy_from_slice(&id.to_be_bytes());
    p
}

/// IPv6/UDP to port 9 with a 4-byte payload `id` and a valid UDP checksum (mandatory over
/// IPv6, RFC 8200 §8.1).
fn udp6(id: u32) -> Vec<u8> {
    let mut p = vec![0u8; 52];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&12u16.to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&A6.octets());
    p[24..40].copy_from_slice(&B6.octets());
    p[40..42].copy_from_slice(&40000u16.to_be_bytes());
    p[42..44].copy_from_slice(&9u16.to_be_bytes());
    p[44..46].copy_from_slice(&12u16.to_be_bytes());
    p[48..52].copy_from_slice(&id.to_be_bytes());
    // Pseudo-header: addresses, upper-layer length, next header; then the UDP datagram.
    let mut sum_input = p[8..40].to_vec();
    sum_input.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 17]);
    sum_input.extend_from_slice(&p[40..52]);
    let sum = checksum(&sum_input);
    p[46..48].copy_from_slice(&sum.to_be_bytes());
    p
}

/// a sends a mix of IPv4 and IPv6 packets over an impaired path to b, which echoes them.
fn network() -> (Network<Host>, HostId) {
    let schedule = (0..40u32)
        .map(|i| {
            let t = Instant::from_micros(1_000_000 + u64::from(i) * 1_250);
            (t, if i % 4 == 3 { udp6(i) } else { udp4(i) })
        })
        .collect();
    let mut net = Network::new(2024);
    let a = net.add_host(
        "a",
        &[IpAddr::V4(A4), IpAddr::V6(A6)],
        Host {
            schedule,
            ..Host::default()
        },
    );
    let b = net.add_host(
        "b",
        &[IpAddr::V4(B4), IpAddr::V6(B6)],
        Host {
            echo: true,
            ..Host::default()
        },
    );
    let path = PathConfig::delay(Duration::from_millis(15))
        .with_jitter(Duration::from_millis(2))
        .with_loss(0.1)
        .with_duplicate(0.1);
    net.link(a, b, path.clone(), path);
    (net, a)
}

#[test]
fn capture_reads_back_as_the_tap_saw_it() {
    let (mut net, a) = network();
    let log = PacketLog::new();
    let pcap = Rc::new(RefCell::new(PcapTap::new(Vec::new()).unwrap()));
    net.tap(a, Box::new(log.clone()));
    net.tap(a, Box::new(pcap.clone()));
    assert!(net.run_until_idle(Instant::from_millis(10_000)));
    drop(net.take_taps(a));

    let tap = Rc::try_unwrap(pcap).ok().unwrap().into_inner();
    assert_eq!(tap.lost(), 0);
    assert!(tap.error().is_none());
    let bytes = tap.into_inner();
    let got = PcapReader::read_all(&bytes).unwrap();
    let want: Vec<_> = log
        .packets()
        .into_iter()
        .map(|p| (p.time, p.bytes))
        .collect();
    assert_eq!(got, want);
    assert_eq!(log.filter(Direction::Tx).len(), 40);
    assert!(!log.filter(Direction::Rx).is_empty());
    assert!(got[0].0 >= Instant::from_millis(1000));
}

#[test]
fn tshark_accepts_a_sim_capture() {
    let version = Command::new("tshark").arg("--version").output();
    match version {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("tshark is not installed, and CI=true requires it");
            }
            eprintln!("skipping tshark_accepts_a_sim_capture: tshark is not installed");
            return;
        }
        Err(e) => panic!("cannot run tshark: {e}"),
        Ok(_) => {}
    }

    let path = std::env::temp_dir().join(format!("synack-sim-tshark-{}.pcap", std::process::id()));
    let (mut net, a) = network();
    let log = PacketLog::new();
    let file = BufWriter::new(File::create(&path).unwrap());
    let pcap = Rc::new(RefCell::new(PcapTap::new(file).unwrap()));
    net.tap(a, Box::new(log.clone()));
    net.tap(a, Box::new(pcap.clone()));
    assert!(net.run_until_idle(Instant::from_millis(10_000)));
    drop(net.take_taps(a));
    pcap.borrow_mut().flush().unwrap();
    drop(pcap);

    // Nothing tshark considers malformed or worth a warning.
    let expert = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= warning"])
        .output()
        .unwrap();
    assert!(expert.status.success());
    assert_eq!(String::from_utf8_lossy(&expert.stdout), "");

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst"])
        .args([
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "udp.dstport",
            "-e",
            "udp.srcport",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let packets = log.packets();
    assert_eq!(lines.len(), packets.len(), "{stdout}");
    for (line, p) in lines.iter().zip(&packets) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 7, "{line}");
        let epoch: f64 = f[0].parse().unwrap();
        let want = p.time.as_micros() as f64 / 1e6;
        assert!((epoch - want).abs() < 1e-6, "{line}: want {want}");
        let (src, dst) = if p.bytes[0] >> 4 == 4 {
            (f[1], f[2])
        } else {
            (f[3], f[4])
        };
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        match p.dir {
            Direction::Tx => assert!(src == IpAddr::V4(A4) || src == IpAddr::V6(A6), "{line}"),
            Direction::Rx => assert!(dst == IpAddr::V4(A4) || dst == IpAddr::V6(A6), "{line}"),
        }
        let _ = dst;
        // Port 9 is the request's destination and the echo's source.
        assert!(f[5] == "9" || f[6] == "9", "{line}");
    }
}
