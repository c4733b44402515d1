//! The ladder drawn as the trace is recorded: a [`LadderBuilder`] fed while a transfer runs
//! gives the rows, summary and phases a [`Ladder`] gives over the whole trace, under every
//! impairment, and holds a bounded number of records however long the transfer.

#[path = "../../stack/tests/common/mod.rs"]
mod common;

use common::*;
use synack_stack::sim::PathConfig;
use synack_tcp::{Config, ConnId, Duration, RecvError, TraceRecord};
use synack_trace::ladder::{BuiltLadder, Ladder, LadderBuilder, Row};

/// Steps between two drains of the endpoints' traces into the builder.
const DRAIN_EVERY: usize = 16;

/// What one streamed transfer left.
struct Streamed {
    built: BuiltLadder,
    /// Rows taken while it ran, then those left at the end.
    rows: Vec<Row>,
    /// The most records and rows the builder held at once.
    peak_held: usize,
    /// Records recorded in all, per host (client, server), if kept.
    traces: Option<(Vec<TraceRecord>, Vec<TraceRecord>)>,
    records: usize,
}

fn read_all(p: &mut Pair, host: bool, id: ConnId) -> (usize, bool) {
    let now = p.now();
    let h = if host { p.client } else { p.server };
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    loop {
        match p
            .net
            .host_mut(h)
            .tcp_mut()
            .with_conn(now, id, |c| c.recv(&mut buf))
            .expect("connection handle")
        {
            Ok(0) => return (got, false),
            Ok(n) => got += n,
            Err(RecvError::Finished) => return (got, true),
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// The server sends `bytes` to the client, which closes when it has them all; the server
/// closes on the client's FIN; everything runs out (TIME-WAIT included). The traces go to a
/// builder every few steps; with `keep`, a copy of them too.
fn stream(seed: u64, path: PathConfig, bytes: usize, fold: bool, keep: bool) -> Streamed {
    let cfg = Config::default();
    let mut p = Pair::with_paths(seed, cfg.clone(), cfg, path.clone(), path.clone());
    let horizon = path.max_transit(1500).expect("a bounded path");
    let mut b = LadderBuilder::new(&["client", "server"])
        .fold(fold)
        .loss_horizon(horizon)
        .host_addr(0, ip(CLIENT_IP))
        .host_addr(1, ip(SERVER_IP));
    let mut kept: (Vec<TraceRecord>, Vec<TraceRecord>) = Default::default();
    let mut rows = Vec::new();
    let mut peak_held = 0;
    let mut records = 0;
    let mut feed = |p: &mut Pair, b: &mut LadderBuilder, rows: &mut Vec<Row>| {
        let (c, s) = (p.client_trace(), p.server_trace());
        records += c.len() + s.len();
        if keep {
            kept.0.extend_from_slice(&c);
            kept.1.extend_from_slice(&s);
        }
        b.push(0, c);
        b.push(1, s);
        peak_held = peak_held.max(b.held());
        b.advance(p.now());
        peak_held = peak_held.max(b.held());
        rows.extend(b.take_rows());
    };

    let l = p.listen(80);
    let c = p.connect(80);
    let mut s = None;
    let (mut sent, mut got) = (0usize, 0usize);
    let chunk = vec![0x5au8; 65536];
    let (mut client_closed, mut server_closed) = (false, false);
    let mut steps = 0;
    let deadline = p.now() + Duration::from_secs(3600);
    loop {
        let now = p.now();
        if s.is_none() {
            s = p.net.host_mut(p.server).tcp_mut().accept(l);
        }
        if let Some(sid) = s {
            while sent < bytes {
                let n = (bytes - sent).min(chunk.len());
                let took = p
                    .net
                    .host_mut(p.server)
                    .tcp_mut()
                    .with_conn(now, sid, |c| c.send(&chunk[..n]).unwrap())
                    .unwrap();
                if took == 0 {
                    break;
                }
                sent += took;
            }
            if client_closed && !server_closed && read_all(&mut p, false, sid).1 {
                p.net.host_mut(p.server).tcp_mut().close(now, sid);
                server_closed = true;
            }
        }
        if !client_closed {
            got += read_all(&mut p, true, c).0;
            if got == bytes {
                p.net.host_mut(p.client).tcp_mut().close(now, c);
                client_closed = true;
            }
        }
        p.net.flush();
        steps += 1;
        if steps == DRAIN_EVERY {
            steps = 0;
            feed(&mut p, &mut b, &mut rows);
        }
        match p.net.next_event() {
            Some(t) if t <= deadline => {
                p.net.step();
            }
            _ => break,
        }
    }
    assert_eq!(got, bytes, "the transfer completed");
    assert!(server_closed);
    assert_eq!(p.net.host(p.client).tcp().connection_count(), 0);
    assert_eq!(p.net.host(p.server).tcp().connection_count(), 0);
    feed(&mut p, &mut b, &mut rows);
    let built = b.finish();
    rows.extend(built.rows.iter().cloned());
    Streamed {
        built,
        rows,
        peak_held,
        traces: keep.then_some(kept),
        records,
    }
}

fn rtt50() -> PathConfig {
    PathConfig::delay(Duration::from_millis(25))
}

/// Streamed and whole-trace ladders agree on every row, the summary and the phases.
fn assert_same_as_whole(name: &str, path: PathConfig, bytes: usize, fold: bool) {
    for seed in 1..=3 {
        let s = stream(seed, path.clone(), bytes, fold, true);
        let (c, sv) = s.traces.as_ref().unwrap();
        let whole = Ladder::new(&[("client", c), ("server", sv)]).fold(fold);
        assert_eq!(s.rows, whole.rows(), "{name}, seed {seed}: rows differ");
        assert_eq!(
            s.built.summary,
            whole.summary(),
            "{name}, seed {seed}: summary"
        );
        assert_eq!(
            s.built.phases,
            whole.phases(),
            "{name}, seed {seed}: phases"
        );
        assert_eq!(s.built.connections, 1);
    }
}

#[test]
fn streamed_equals_whole_on_a_clean_path() {
    assert_same_as_whole("clean", rtt50(), 300_000, true);
    assert_same_as_whole("clean, unfolded", rtt50(), 100_000, false);
}

#[test]
fn streamed_equals_whole_under_loss() {
    let p = rtt50().with_loss(0.03);
    assert_same_as_whole("loss 3%", p.clone(), 400_000, true);
    assert_same_as_whole("loss 3%, unfolded", p, 200_000, false);
}

#[test]
fn streamed_equals_whole_under_reordering_duplication_corruption_and_a_bottleneck() {
    let p = rtt50()
        .with_reorder(0.02)
        .with_duplicate(0.02)
        .with_corrupt(0.01)
        .with_jitter(Duration::from_millis(3))
        .with_bandwidth(20_000_000)
        .with_queue_limit(64 * 1024);
    assert_same_as_whole("everything", p.clone(), 400_000, true);
    assert_same_as_whole("everything, unfolded", p, 150_000, false);
}

/// The most records and rows a builder may hold for the transfers below.
const HELD_BOUND: usize = 4096;

#[test]
fn a_long_transfer_is_held_in_bounded_memory() {
    // 100 Mbit/s, 50 ms RTT, 2 % loss: a sender keeps up to a window (1 MiB, ~720
    // segments) in flight; the builder holds about that many records plus those of one
    // drain interval, whatever the length of the transfer.
    let path = rtt50()
        .with_loss(0.02)
        .with_bandwidth(100_000_000)
        .with_queue_limit(625_000);
    let s = stream(7, path, 48 << 20, true, false);
    assert!(
        s.records >= 10 * HELD_BOUND,
        "the transfer is long enough: {} records",
        s.records
    );
    assert!(
        s.peak_held < HELD_BOUND,
        "held {} records at once (bound {HELD_BOUND}) of {}",
        s.peak_held,
        s.records
    );
    // One folded line (its losses counted inside) among a few handshake and close lines.
    let folded: Vec<_> = s
        .rows
        .iter()
        .filter_map(|r| match r {
            Row::Folded(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(folded.len(), 1, "{:?}", s.rows);
    assert_eq!(folded[0].span(), (48 << 20) as u64);
    assert!(folded[0].lost > 0 && folded[0].retransmitted > 0);
    assert!(s.rows.len() < 40, "{} rows", s.rows.len());
    let lost: usize = s.built.summary.flows.iter().map(|f| f.lost).sum();
    assert!(lost >= folded[0].lost);
}
