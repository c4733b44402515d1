//! Reliable delivery over a hostile simulated network: every transfer is byte-exact, or ends in
//! an explicit error once the user timeout passes; none hangs (each run is bounded in virtual
//! time).

mod common;

use common::*;
use proptest::prelude::*;
use synack_stack::sim::{GilbertElliott, PathConfig};
use synack_tcp::{Algorithm, Config, ConnectionError, Duration, Keepalive};

#[derive(Debug, Clone)]
struct Impairment {
    loss: f64,
    bursty: bool,
    reorder: f64,
    duplicate: f64,
    corrupt: f64,
    queue: Option<usize>,
    jitter_ms: u64,
}

fn path(i: &Impairment, delay_ms: u64) -> PathConfig {
    let mut p = PathConfig::delay(Duration::from_millis(delay_ms))
        .with_jitter(Duration::from_millis(i.jitter_ms))
        .with_reorder(i.reorder)
        .with_duplicate(i.duplicate)
        .with_corrupt(i.corrupt);
    if i.bursty {
        // Mean loss about i.loss, in bursts of ~3 packets.
        let b2g = 1.0 / 3.0;
        let g2b = (i.loss * b2g / (1.0 - i.loss).max(0.01)).min(1.0);
        p = p.with_gilbert_elliott(GilbertElliott {
            p_good_to_bad: g2b,
            p_bad_to_good: b2g,
            loss_good: 0.0,
            loss_bad: 1.0,
        });
    } else {
        p = p.with_loss(i.loss);
    }
    if let Some(q) = i.queue {
        p = p.with_bandwidth(20_000_000).with_queue_limit(q);
    }
    p
}

fn impairment() -> impl Strategy<Value = Impairment> {
    (
        prop_oneof![Just(0.0), Just(0.01), Just(0.05), Just(0.1), 0.0f64..0.2],
        any::<bool>(),
        prop_oneof![Just(0.0), 0.0f64..0.1],
        prop_oneof![Just(0.0), 0.0f64..0.05],
        prop_oneof![Just(0.0), 0.0f64..0.02],
        prop_oneof![Just(None), (3000usize..60_000).prop_map(Some)],
        0u64..10,
    )
        .prop_map(
            |(loss, bursty, reorder, duplicate, corrupt, queue, jitter_ms)| Impairment {
                loss,
                bursty,
                reorder,
                duplicate,
                corrupt,
                queue,
                jitter_ms,
            },
        )
}

/// Runs one exchange; returns an error description if the outcome is not acceptable.
fn run(seed: u64, imp: &Impairment, algo: Algorithm, sack: bool, up: usize, down: usize) {
    let cfg = Config {
        congestion: algo,
        sack,
        user_timeout: Some(Duration::from_secs(30)),
        // A peer that gave up may be unreachable even for its RST: keepalive finds out.
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(20),
            interval: Duration::from_secs(2),
            count: 5,
        }),
        recv_buffer: 256 * 1024,
        send_buffer: 256 * 1024,
        ..Config::default()
    };
    let mut p = Pair::with_paths(seed, cfg.clone(), cfg, path(imp, 10), path(imp, 10));
    // The handshake itself may fail under heavy loss (SYN retries exhausted): an explicit error.
    let l = p.listen(80);
    let c = p.connect(80);
    let mut s = None;
    let server = p.server;
    let client = p.client;
    p.run_until(Duration::from_secs(200), |p| {
        s = p.net.host_mut(server).tcp_mut().accept(l);
        s.is_some() || p.net.host(client).tcp().error(c).is_some()
    });
    let Some(s) = s else {
        let e = p.net.host(client).tcp().error(c);
        // Explicit: the SYN retries ran out, or the server gave up on its SYN-ACK first and
        // reset the client's first segment.
        assert!(
            matches!(e, Some(ConnectionError::TimedOut | ConnectionError::Reset)),
            "seed {seed}: the open neither completed nor failed explicitly: {e:?}"
        );
        return;
    };
    let up_data = pattern(seed as u8, up);
    let down_data = pattern(!seed as u8, down);
    let mut cf = Flow::new(up_data.clone());
    let mut sf = Flow::new(down_data.clone());
    let finished = p.exchange(c, s, &mut cf, &mut sf, Duration::from_secs(600));
    assert!(
        finished,
        "seed {seed} {imp:?}: hung (client sent {}/{} got {}/{}, server got {}/{})",
        cf.sent,
        up,
        cf.got.len(),
        down,
        sf.got.len(),
        up
    );
    match (cf.error, sf.error) {
        (None, None) => {
            assert!(
                sf.got == up_data,
                "seed {seed} {imp:?}: client->server bytes differ"
            );
            assert!(
                cf.got == down_data,
                "seed {seed} {imp:?}: server->client bytes differ"
            );
        }
        (e1, e2) => {
            // Only the user timeout may end a transfer, and what arrived is a prefix.
            for e in [e1, e2].into_iter().flatten() {
                assert!(
                    matches!(e, ConnectionError::TimedOut | ConnectionError::Reset),
                    "seed {seed}: unexpected error {e:?}"
                );
            }
            assert!(
                up_data.starts_with(&sf.got),
                "seed {seed}: corrupted prefix"
            );
            assert!(
                down_data.starts_with(&cf.got),
                "seed {seed}: corrupted prefix"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn byte_exact_or_explicit_error_under_any_impairment(
        seed in any::<u64>(),
        imp in impairment(),
        cubic in any::<bool>(),
        sack in any::<bool>(),
        up in 0usize..150_000,
        down in 0usize..150_000,
    ) {
        let algo = if cubic { Algorithm::Cubic } else { Algorithm::NewReno };
        run(seed, &imp, algo, sack, up, down);
    }
}

#[test]
fn heavy_loss_grid_both_algorithms() {
    for seed in 0..40u64 {
        for loss in [0.0, 0.02, 0.1, 0.2] {
            for (algo, sack) in [
                (Algorithm::NewReno, false),
                (Algorithm::NewReno, true),
                (Algorithm::Cubic, true),
            ] {
                let imp = Impairment {
                    loss,
                    bursty: seed % 2 == 0,
                    reorder: 0.02,
                    duplicate: 0.01,
                    corrupt: 0.005,
                    queue: None,
                    jitter_ms: 1,
                };
                run(seed, &imp, algo, sack, 60_000, 60_000);
            }
        }
    }
}
