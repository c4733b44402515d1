//! `synack trace`, run as a user would, on captures `synack demo --pcap` makes: the numbers it
//! finds are the demo's own (connections, handshakes, requests per connection, who waits in
//! TIME-WAIT), the ladder and filters print what they say, and bad files are clear errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn synack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(args)
        .output()
        .expect("run synack")
}

fn ok(args: &[&str]) -> String {
    let out = synack(args);
    assert!(
        out.status.success(),
        "synack {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("synack-trace-cli-{}-{name}", std::process::id()))
}

/// The demo's captures, made once per test: `--calls 5`, the default seed.
fn demo_captures(tag: &str) -> (String, [PathBuf; 4]) {
    let base = temp(&format!("{tag}.pcap"));
    let out = ok(&["demo", "--calls", "5", "--pcap", base.to_str().unwrap()]);
    let with = |suffix: &str| {
        base.with_file_name(format!(
            "synack-trace-cli-{}-{tag}{suffix}.pcap",
            std::process::id()
        ))
    };
    (
        out,
        [
            base.clone(),
            with("-per-call"),
            with("-keepalive"),
            with("-pool"),
        ],
    )
}

fn json(path: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["trace", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).expect("valid JSON")
}

/// The demo's results row of `scenario`: its numbers.
fn results_row(out: &str, scenario: &str) -> Vec<String> {
    let results = out.split("\nresults:\n").nth(1).expect("a results table");
    results
        .lines()
        .find(|l| {
            l.trim_start()
                .strip_prefix(scenario)
                .is_some_and(|rest| rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no row {scenario}"))
        .trim_start()[scenario.len()..]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn demo_captures_give_the_demos_numbers() {
    let (out, [single, per_call, keepalive, pool]) = demo_captures("numbers");
    for (path, scenario, conns, requests_each) in [
        (&single, "one connection", 1, 1),
        (&per_call, "calls: new connection each", 5, 1),
        (&keepalive, "calls: one keep-alive connection", 1, 5),
        (&pool, "calls: pool, concurrency 4", 0, 0),
    ] {
        let j = json(path, &[]);
        assert_eq!(j["schema"], "synack-trace/1");
        assert_eq!(j["format"], "pcap");
        assert_eq!(j["link_types"], serde_json::json!([101]));
        assert_eq!(j["stats"]["drops"]["bad_ip"], 0);
        let row = results_row(&out, scenario);
        let handshakes: u64 = row[0].parse().unwrap();
        let requests: u64 = row[2].parse().unwrap();
        let segments: u64 = row[7].parse().unwrap();
        let c = j["connections"].as_array().unwrap();
        assert_eq!(j["stats"]["tcp_segments"], segments, "{scenario}");
        assert_eq!(
            c.len() as u64,
            handshakes,
            "{scenario}: one connection per handshake"
        );
        if conns > 0 {
            assert_eq!(c.len(), conns, "{scenario}");
        }
        let total: u64 = c
            .iter()
            .map(|c| c["http1_requests"].as_u64().unwrap())
            .sum();
        assert_eq!(total, requests, "{scenario}: requests");
        for conn in c {
            assert_eq!(conn["handshake_seen"], true);
            assert_eq!(conn["protocol"], "http1");
            assert_eq!(conn["retransmissions"], 0);
            assert_eq!(conn["http1_responses"], conn["http1_requests"]);
            if requests_each > 0 {
                assert_eq!(conn["http1_requests"], requests_each, "{scenario}");
            }
            // The demo's link: 50 ms RTT (25 ms each way, plus the transmission time).
            let rtt = conn["rtt_us"].as_u64().unwrap();
            assert!((50_000..51_000).contains(&rtt), "{scenario}: RTT {rtt} us");
            let tw = conn["time_wait"].as_str().unwrap();
            let states = (
                conn["client_state"].as_str().unwrap(),
                conn["server_state"].as_str().unwrap(),
            );
            match tw {
                "client" => assert_eq!(states, ("TIME-WAIT", "CLOSED"), "{scenario}"),
                _ => assert_eq!(states, ("CLOSED", "TIME-WAIT"), "{scenario}"),
            }
        }
        let pairs = j["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0]["connections"], handshakes);
        assert_eq!(pairs[0]["http1_requests"], requests);
        let cost = pairs[0]["handshake_cost"]["tcp_rtts"].as_f64().unwrap();
        assert!(
            (cost - handshakes as f64).abs() < 1e-9,
            "{scenario}: {cost}"
        );
    }
    for p in [single, per_call, keepalive, pool] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn the_ladder_and_the_filters() {
    let (_, [single, per_call, keepalive, pool]) = demo_captures("ladder");
    // The keep-alive connection: one handshake, five requests drawn, one close.
    let text = ok(&["trace", keepalive.to_str().unwrap()]);
    assert_eq!(
        text.matches("client ~~> server : GET /bytes/").count(),
        5,
        "{text}"
    );
    assert_eq!(text.matches(" : SYN, seq=0,").count(), 1, "{text}");
    assert!(text.contains("client   CLOSED -> SYN-SENT"), "{text}");
    assert!(
        text.contains("server   SYN-RECEIVED -> ESTABLISHED"),
        "{text}"
    );
    assert!(text.contains("TIME-WAIT: client"), "{text}");
    assert!(text.contains("1 TCP connection,"), "{text}");

    // --conn 3 --only handshakes: connection 3's opening and nothing else.
    let text = ok(&[
        "trace",
        per_call.to_str().unwrap(),
        "--conn",
        "3",
        "--only",
        "handshakes",
    ]);
    let ladder: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("  RTT"))
        .collect();
    assert!(ladder[0].starts_with("connection 3: "), "{text}");
    let segments: Vec<&str> = ladder
        .iter()
        .filter(|l| l.contains(" --> "))
        .copied()
        .collect();
    assert_eq!(segments.len(), 3, "{text}");
    assert!(
        segments[0].contains("client --> server : SYN, seq=0, "),
        "{text}"
    );
    assert!(
        segments[1].contains("server --> client : SYN-ACK, seq=0, ack=1, "),
        "{text}"
    );
    assert!(
        segments[2].contains("client --> server : ACK, seq=1, ack=1, "),
        "{text}"
    );
    assert!(!text.contains("FIN"), "{text}");
    assert!(!text.contains("connection 2:"), "{text}");

    // --absolute: the SYN's own ISN instead of 0.
    let text = ok(&[
        "trace",
        single.to_str().unwrap(),
        "--only",
        "handshakes",
        "--absolute",
    ]);
    let syn = text.lines().find(|l| l.contains(" : SYN, seq=")).unwrap();
    assert!(!syn.contains("seq=0,"), "{syn}");

    // --port and --host that match nothing leave empty tables.
    let j = json(&pool, &["--port", "443"]);
    assert_eq!(j["connections"].as_array().unwrap().len(), 0);
    let j = json(&pool, &["--host", "198.18.0.2"]);
    assert!(!j["connections"].as_array().unwrap().is_empty());
    let j = json(&per_call, &["--conn", "2"]);
    assert_eq!(j["connections"][0]["id"], 2);
    assert_eq!(j["connections"].as_array().unwrap().len(), 1);
    for p in [single, per_call, keepalive, pool] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let empty = temp("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let out = synack(&["trace", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng capture"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let text = temp("text.pcap");
    std::fs::write(&text, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let err =
        String::from_utf8_lossy(&synack(&["trace", text.to_str().unwrap()]).stderr).into_owned();
    assert!(
        err.contains("not a pcap or pcapng capture (it starts with 47 45 54 20)"),
        "{err}"
    );

    // A capture cut in the middle of a record: what came before is drawn, then the error.
    let (_, [single, per_call, keepalive, pool]) = demo_captures("cut");
    let bytes = std::fs::read(&per_call).unwrap();
    let cut = temp("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let out = synack(&["trace", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated capture"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connection 5: "), "{stdout}");

    let missing = synack(&["trace", "/nonexistent/x.pcap"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("/nonexistent/x.pcap"), "{err}");
    for p in [empty, text, cut, single, per_call, keepalive, pool] {
        let _ = std::fs::remove_file(p);
    }
}
