//! The ladder of real exchanges on the simulated network: exact lines for a handshake, a small
//! exchange and the close; folding of a bulk transfer; relative and absolute numbering; lost
//! and retransmitted segments.

#[path = "../../stack/tests/common/mod.rs"]
mod common;

use common::*;
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, ConnId, Duration, RecvError, State, TraceRecord};
use synack_trace::ladder::{Ladder, Row};

/// What one exchange left behind.
struct Run {
    pair: Pair,
    client: Vec<TraceRecord>,
    server: Vec<TraceRecord>,
    client_iss: u32,
    server_iss: u32,
}

impl Run {
    fn ladder(&self) -> Ladder {
        Ladder::new(&[("client", &self.client), ("server", &self.server)])
    }
}

/// Reads everything available; `Some(true)` at end of stream.
fn drain(p: &mut Pair, host: bool, id: ConnId, into: &mut Vec<u8>) -> bool {
    let now = p.now();
    let h = if host { p.client } else { p.server };
    let mut buf = vec![0u8; 65536];
    loop {
        let r = p
            .net
            .host_mut(h)
            .tcp_mut()
            .with_conn(now, id, |c| c.recv(&mut buf))
            .expect("connection handle");
        match r {
            Ok(0) => return false,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(RecvError::Finished) => return true,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// Client connects, sends `request` once ESTABLISHED; the server answers with `reply` once it
/// has the request; the client closes once it has the reply; the server closes on EOF. Runs
/// until both sides are gone (TIME-WAIT included).
fn exchange(seed: u64, c2s: PathConfig, s2c: PathConfig, request: &[u8], reply: &[u8]) -> Run {
    let cfg = Config::default();
    let mut p = Pair::with_paths(seed, cfg.clone(), cfg, c2s, s2c);
    let l = p.listen(80);
    let c = p.connect(80);
    let client_iss = p.net.host(p.client).tcp().conn(c).unwrap().iss().0;
    assert!(p.run_until(Duration::from_secs(5), |p| p
        .net
        .host(p.client)
        .tcp()
        .conn(c)
        .unwrap()
        .state()
        == State::Established));
    let now = p.now();
    let n = p
        .net
        .host_mut(p.client)
        .tcp_mut()
        .with_conn(now, c, |c| c.send(request).unwrap())
        .unwrap();
    assert_eq!(n, request.len());
    p.net.flush();
    let mut s = None;
    let mut got = Vec::new();
    assert!(p.run_until(Duration::from_secs(10), |p| {
        if s.is_none() {
            s = p.net.host_mut(p.server).tcp_mut().accept(l);
        }
        if let Some(s) = s {
            drain(p, false, s, &mut got);
        }
        got.len() == request.len()
    }));
    assert_eq!(got, request);
    let s = s.unwrap();
    let server_iss = p.net.host(p.server).tcp().conn(s).unwrap().iss().0;
    let mut sent = 0;
    let mut answer = Vec::new();
    assert!(p.run_until(Duration::from_secs(60), |p| {
        let now = p.now();
        if sent < reply.len() {
            sent += p
                .net
                .host_mut(p.server)
                .tcp_mut()
                .with_conn(now, s, |c| c.send(&reply[sent..]).unwrap())
                .unwrap();
        }
        drain(p, true, c, &mut answer);
        answer.len() == reply.len()
    }));
    assert!(answer == reply, "reply differs");
    let now = p.now();
    p.net.host_mut(p.client).tcp_mut().close(now, c);
    p.net.flush();
    let mut closed = false;
    assert!(p.run_until(Duration::from_secs(60), |p| {
        if !closed && drain(p, false, s, &mut Vec::new()) {
            let now = p.now();
            p.net.host_mut(p.server).tcp_mut().close(now, s);
            p.net.flush();
            closed = true;
        }
        closed
    }));
    p.run_until(Duration::from_secs(300), |_| false);
    assert_eq!(p.net.host(p.client).tcp().connection_count(), 0);
    assert_eq!(p.net.host(p.server).tcp().connection_count(), 0);
    let client = p.client_trace();
    let server = p.server_trace();
    Run {
        pair: p,
        client,
        server,
        client_iss,
        server_iss,
    }
}

fn rtt50() -> PathConfig {
    PathConfig::delay(Duration::from_millis(25))
}

fn small() -> Run {
    exchange(1, rtt50(), rtt50(), b"hello", b"world!")
}

#[test]
fn handshake_exchange_and_close_exact_lines() {
    let run = small();
    let text = run.ladder().render();
    let expected = [
        "  0.000000  client   CLOSED -> SYN-SENT",
        "            client --> server : SYN, seq=0, win=65535, mss=1460, wscale=5, sackOK, TS",
        "  0.025000                                    server   LISTEN -> SYN-RECEIVED",
        "            server --> client : SYN-ACK, seq=0, ack=1, win=65535, mss=1460, wscale=5, sackOK, TS",
        "  0.050000  client   SYN-SENT -> ESTABLISHED",
        "            client --> server : ACK, seq=1, ack=1, win=1048576",
        "            client --> server : PSH-ACK, seq=1, ack=1, len=5, win=1048576",
        "  0.075000                                    server   SYN-RECEIVED -> ESTABLISHED",
        "            server --> client : PSH-ACK, seq=1, ack=6, len=6, win=1048576",
        "  0.100000  client   ESTABLISHED -> FIN-WAIT-1",
        "            client --> server : FIN-ACK, seq=6, ack=7, win=1048576",
        "  0.125000                                    server   ESTABLISHED -> CLOSE-WAIT",
        "            server --> client : ACK, seq=7, ack=7, win=1048576",
        "                                              server   CLOSE-WAIT -> LAST-ACK",
        "            server --> client : FIN-ACK, seq=7, ack=7, win=1048576",
        "  0.150000  client   FIN-WAIT-1 -> FIN-WAIT-2",
        "            client   FIN-WAIT-2 -> TIME-WAIT",
        "            client --> server : ACK, seq=7, ack=8, win=1048576",
        "  0.175000                                    server   LAST-ACK -> CLOSED",
        " 60.150000  client   TIME-WAIT -> CLOSED",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "got:\n{text}");
    assert!(text.ends_with('\n'));
}

#[test]
fn phases_of_the_small_exchange() {
    let p = small().ladder().phases();
    let ms = |t: Option<synack_tcp::Instant>| t.map(|t| t.as_micros() / 1000);
    assert_eq!(p.client.as_deref(), Some("client"));
    assert_eq!(p.server.as_deref(), Some("server"));
    assert_eq!(ms(p.connect_start), Some(0));
    assert_eq!(ms(p.handshake_done), Some(50));
    assert_eq!(ms(p.request_sent), Some(50));
    assert_eq!(ms(p.first_response_byte), Some(100));
    assert_eq!(ms(p.last_response_byte), Some(100));
    assert_eq!(ms(p.close_start), Some(100));
    assert_eq!(ms(p.closed), Some(175));
    assert_eq!(p.active_closer.as_deref(), Some("client"));
    assert_eq!(ms(p.time_wait_start), Some(150));
    assert_eq!(ms(p.time_wait_end), Some(60_150));
}

#[test]
fn summary_counts_each_direction() {
    let s = small().ladder().summary();
    assert_eq!(s.handshakes, 1);
    assert_eq!(s.flows.len(), 2);
    let c = &s.flows[0];
    assert_eq!((c.from.as_str(), c.to.as_str()), ("client", "server"));
    // SYN, ACK, request, FIN, last ACK.
    assert_eq!((c.segments, c.data_segments, c.bytes_sent), (5, 1, 5));
    let v = &s.flows[1];
    // SYN-ACK, reply (carrying the delayed ACK of the request), ACK of FIN, FIN.
    assert_eq!((v.segments, v.data_segments, v.bytes_sent), (4, 1, 6));
    assert_eq!(c.retransmitted + c.lost + v.retransmitted + v.lost, 0);
}

#[test]
fn relative_and_absolute_numbering() {
    let run = small();
    let rel = run.ladder().rows();
    let abs = run.ladder().relative(false).rows();
    assert_eq!(rel.len(), abs.len());
    let (ci, si) = (run.client_iss, run.server_iss);
    let mut segments = 0;
    for (r, a) in rel.iter().zip(&abs) {
        match (r, a) {
            (Row::Segment(r), Row::Segment(a)) => {
                segments += 1;
                // Each direction's ISN becomes 0; acks are numbered like the other direction.
                let (mine, theirs) = if r.from == "client" {
                    (ci, si)
                } else {
                    (si, ci)
                };
                assert_eq!(a.seq, r.seq.wrapping_add(mine), "{r:?}");
                assert_eq!(a.ack.map(|x| x.wrapping_sub(theirs)), r.ack, "{r:?}");
                assert_eq!((a.flags, a.len, a.window), (r.flags, r.len, r.window));
            }
            (r, a) => assert_eq!(r, a, "only segments are numbered"),
        }
    }
    assert_eq!(segments, 9);
    let Row::Segment(syn) = &abs[1] else {
        panic!("the SYN is the second row: {:?}", abs[1]);
    };
    assert_eq!(syn.seq, ci);
    assert_eq!(syn.ack, None);
    let text = run.ladder().absolute(true).render();
    let second = text.lines().nth(1).unwrap();
    assert_eq!(
        second,
        format!(
            "            client --> server : SYN, seq={ci}, win=65535, mss=1460, wscale=5, sackOK, TS"
        )
    );
    let synack = text.lines().nth(3).unwrap();
    assert_eq!(
        synack,
        format!(
            "            server --> client : SYN-ACK, seq={si}, ack={}, win=65535, mss=1460, \
             wscale=5, sackOK, TS",
            ci.wrapping_add(1)
        )
    );
}

#[test]
fn a_mebibyte_folds_into_one_line() {
    let reply: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let run = exchange(7, rtt50(), rtt50(), b"GET", &reply);
    let ladder = run.ladder();
    let rows = ladder.rows();
    let folded: Vec<_> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Folded(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(folded.len(), 1, "{}", ladder.render());
    let f = folded[0];
    let sum = ladder.summary();
    let s2c = sum.flows.iter().find(|f| f.from == "server").unwrap();
    assert_eq!((f.from.as_str(), f.to.as_str()), ("server", "client"));
    assert_eq!(f.segments, s2c.data_segments);
    assert!(f.segments >= 700, "{} segments", f.segments);
    assert_eq!((f.seq_start, f.seq_end), (1, 1 + (1 << 20)));
    assert_eq!(f.span(), 1 << 20);
    assert_eq!(f.bytes_sent, 1 << 20);
    assert_eq!((f.retransmitted, f.lost, f.acks_lost), (0, 0, 0));
    // Every client segment but the handshake, the request and the close is a folded ACK.
    let c2s = sum.flows.iter().find(|f| f.from == "client").unwrap();
    assert_eq!(f.acks, c2s.segments - 5);
    let line = ladder
        .render()
        .lines()
        .find(|l| l.contains("data segments"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(&format!(
            "server --> client : {} data segments, seq=1..1048577 (1 MiB) in ",
            f.segments
        )),
        "{line}"
    );
    assert!(line.ends_with(&format!("; {} ACKs back", f.acks)), "{line}");
    // Unfolded, every data segment has its own line, and the ladder is otherwise the same.
    let flat = ladder.clone().fold(false).rows();
    let data_rows = flat
        .iter()
        .filter(|r| matches!(r, Row::Segment(s) if s.from == "server" && s.len > 0))
        .count();
    assert_eq!(data_rows, f.segments);
    assert!(!flat.iter().any(|r| matches!(r, Row::Folded(_))));
    assert_eq!(flat.len(), rows.len() - 1 + f.segments + f.acks);
}

#[test]
fn lost_segments_and_retransmissions_are_marked() {
    let reply: Vec<u8> = (0..256u32 * 1024).map(|i| (i % 253) as u8).collect();
    let lossy = rtt50().with_loss(0.03);
    let run = exchange(3, rtt50(), lossy, b"GET", &reply);
    let ladder = run.ladder();
    let sum = ladder.summary();
    let s2c = sum.flows.iter().find(|f| f.from == "server").unwrap();
    let dropped = run
        .pair
        .net
        .path_stats(run.pair.server, run.pair.client)
        .unwrap()
        .dropped_loss;
    assert!(dropped > 0);
    // Each packet the path dropped is a segment the ladder calls lost, and nothing else is.
    assert_eq!(s2c.lost as u64, dropped);
    assert!(s2c.retransmitted > 0);
    let c2s = sum.flows.iter().find(|f| f.from == "client").unwrap();
    assert_eq!(c2s.lost, 0);
    // Unfolded, the marks are on the lines.
    let text = ladder.clone().fold(false).render();
    assert_eq!(text.matches("(lost)").count(), s2c.lost, "{text}");
    assert_eq!(
        text.matches("(retransmission)").count(),
        s2c.retransmitted + c2s.retransmitted
    );
    // Folded, the counts are on the summary lines.
    let (mut retx, mut lost) = (0, 0);
    for r in ladder.rows() {
        match r {
            Row::Folded(f) => {
                retx += f.retransmitted;
                lost += f.lost;
            }
            Row::Segment(s) if s.from == "server" => {
                retx += s.retransmission as usize;
                lost += s.lost as usize;
            }
            _ => {}
        }
    }
    assert_eq!((retx, lost), (s2c.retransmitted, s2c.lost));
    assert!(ladder.render().contains(" retransmitted"));
}

#[test]
fn same_seed_same_ladder() {
    let a = small().ladder().render();
    let b = small().ladder().render();
    assert_eq!(a, b);
}
