//! `synack demo --json` (schema `synack-demo/1`) holds the numbers the text prints: the
//! results table, each scenario's phase table, segment counts and handshakes, at a fixed seed.

use std::process::Command;

use serde_json::Value;

fn synack(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(args)
        .output()
        .expect("run synack");
    assert!(
        out.status.success(),
        "synack {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A table row's cells: separated by two spaces or more (names have single spaces).
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `us` as the text prints milliseconds.
fn ms(v: &Value) -> String {
    match v.as_u64() {
        Some(us) => format!("{}.{:03}", us / 1000, us % 1000),
        None => "-".into(),
    }
}

/// RTTs as the text prints them.
fn rtts(v: &Value) -> String {
    match v.as_f64() {
        Some(r) => format!("{r:.2}"),
        None => "-".into(),
    }
}

const ARGS: [&str; 6] = ["demo", "--calls", "3", "--seed", "3", "--bytes"];

#[test]
fn json_holds_the_numbers_of_the_text() {
    let text = synack(&[&ARGS[..], &["64KiB", "--loss", "3%"]].concat());
    let doc: Value = serde_json::from_str(&synack(
        &[&ARGS[..], &["64KiB", "--loss", "3%", "--json"]].concat(),
    ))
    .expect("one JSON document");
    assert_eq!(doc["schema"], "synack-demo/1");
    assert_eq!(doc["settings"]["seed"], 3);
    assert_eq!(doc["settings"]["calls"], 3);
    assert_eq!(doc["settings"]["rtt_us"], 50_000);
    let scenarios = doc["scenarios"].as_array().expect("scenarios");
    assert!(scenarios.len() >= 4, "{doc}");

    // The results table, row by row.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "results:")
        .expect("results table");
    let rows: Vec<Vec<String>> = lines[at + 2..at + 2 + scenarios.len()]
        .iter()
        .map(|l| cells(l))
        .collect();
    for (row, s) in rows.iter().zip(scenarios) {
        let tls = s["tls_handshakes"].as_u64().unwrap();
        let (handshakes, their_rtts) = if tls > 0 {
            (
                format!("{}+{tls}", s["handshakes"]),
                format!(
                    "{}+{}",
                    rtts(&s["handshake_rtts"]),
                    rtts(&s["tls_handshake_rtts"])
                ),
            )
        } else {
            (s["handshakes"].to_string(), rtts(&s["handshake_rtts"]))
        };
        let per_call = match s["call_us"].as_object() {
            Some(c) => format!(
                "{:.1}/{:.1}",
                c["median"].as_f64().unwrap() / 1000.0,
                c["max"].as_f64().unwrap() / 1000.0
            ),
            None => "-".into(),
        };
        let expect = vec![
            s["name"].as_str().expect("name").to_owned(),
            handshakes,
            their_rtts,
            s["requests"].to_string(),
            per_call,
            ms(&s["to_last_byte_us"]),
            rtts(&s["to_last_byte_rtts"]),
            ms(&s["to_closed_us"]),
            s["segments"].to_string(),
            s["retransmitted"].to_string(),
            rtts(&s["to_first_byte_rtts"]),
        ];
        assert_eq!(row, &expect, "results row of {}", s["name"]);
        // The time to the first response byte in RTTs is the µs over the RTT too.
        let (us, r) = (
            s["to_first_byte_us"].as_f64().expect("to_first_byte_us"),
            s["to_first_byte_rtts"]
                .as_f64()
                .expect("to_first_byte_rtts"),
        );
        assert!((us / 50_000.0 - r).abs() < 1e-9);
        // The staggered rows count the calls held up; the others have no such count.
        let paced = s["name"].as_str().unwrap().contains("one every");
        assert_eq!(s["held_up"].is_u64(), paced, "{}", s["name"]);
        // The handshake time in RTTs is the µs over the RTT.
        let (us, r) = (
            s["handshake_us"].as_f64().expect("handshake_us"),
            s["handshake_rtts"].as_f64().expect("handshake_rtts"),
        );
        assert!((us / 50_000.0 - r).abs() < 1e-9);
    }
    // The multi-call scenarios' counts at this seed.
    let classic: Vec<&Value> = scenarios
        .iter()
        .filter(|s| {
            [
                "one connection",
                "calls: new connection each",
                "calls: one keep-alive connection",
                "calls: pool, concurrency 4",
            ]
            .contains(&s["name"].as_str().unwrap())
        })
        .collect();
    let counts: Vec<(u64, u64)> = classic
        .iter()
        .map(|s| {
            (
                s["handshakes"].as_u64().unwrap(),
                s["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(1, 1), (3, 3), (1, 3), (3, 3)]);
    // At this seed the loss made every scenario resend something, and the JSON says so.
    for s in &classic {
        assert!(s["retransmitted"].as_u64().unwrap() > 0, "{text}");
    }

    // Each scenario's block: phase table, segments and handshakes lines.
    let blocks: Vec<&str> = text.split("== scenario: ").skip(1).collect();
    assert_eq!(blocks.len(), scenarios.len());
    for (block, s) in blocks.iter().zip(scenarios) {
        assert!(
            block.starts_with(s["name"].as_str().unwrap()),
            "{block:.80}"
        );
        assert!(block.contains(&format!("({})", s["description"].as_str().unwrap())));
        let phases = s["phases"].as_array().expect("phases");
        assert_eq!(phases.len(), 5);
        // The API-call scenarios print per-call figures instead of the phase table.
        let phases = if s["name"] == "one connection" {
            &phases[..]
        } else {
            &phases[..0]
        };
        for p in phases {
            let label = p["label"].as_str().unwrap();
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no phase row {label:?} in\n{block}"));
            let secs = |v: &Value| match v.as_u64() {
                Some(us) => format!("{}.{:06}", us / 1_000_000, us % 1_000_000),
                None => "-".into(),
            };
            assert_eq!(
                cells(line),
                vec![
                    label.to_owned(),
                    secs(&p["from_us"]),
                    secs(&p["to_us"]),
                    ms(&p["us"]),
                    rtts(&p["rtts"]),
                ],
                "{line}"
            );
        }
        let flows = s["flows"].as_array().unwrap();
        let total: u64 = flows.iter().map(|f| f["segments"].as_u64().unwrap()).sum();
        assert_eq!(total, s["segments"].as_u64().unwrap());
        let seg_line = block
            .lines()
            .find(|l| l.trim_start().starts_with("segments:"))
            .expect("segments line");
        for f in flows {
            let part = format!(
                "{} -> {} {} ({} with data)",
                f["from"].as_str().unwrap(),
                f["to"].as_str().unwrap(),
                f["segments"],
                f["data_segments"]
            );
            assert!(seg_line.contains(&part), "{seg_line} lacks {part}");
        }
        assert!(
            seg_line.ends_with(&format!("; {total} in all")),
            "{seg_line}"
        );
        let lost: u64 = flows.iter().map(|f| f["lost"].as_u64().unwrap()).sum();
        assert!(
            block.contains(&format!(
                "handshakes:  {}; retransmitted segments: {}; lost or dropped: {lost}",
                s["handshakes"], s["retransmitted"]
            )),
            "{block}"
        );
        let d = &s["delivered"];
        assert!(block.contains(&format!("request {} B;", d["request_bytes"])));
        // The calls: one per request, each ending after it started, in order of start.
        let calls = s["calls"].as_array().unwrap();
        if s["name"] == "one connection" {
            assert!(calls.is_empty());
        } else if !s["name"].as_str().unwrap().contains("HTTP") {
            assert_eq!(calls.len() as u64, s["requests"].as_u64().unwrap());
            let reused = calls.iter().filter(|c| c["reused"] == true).count() as u64;
            // Every call that did not reuse a connection opened one: a handshake each.
            assert_eq!(
                calls.len() as u64 - reused,
                s["handshakes"].as_u64().unwrap(),
                "{s}"
            );
            for c in calls {
                assert!(c["end_us"].as_u64() > c["start_us"].as_u64(), "{c}");
                assert_eq!(c["handshake_us"].is_null(), c["reused"] == true, "{c}");
            }
        }
    }
}

#[test]
fn json_is_the_only_output() {
    let out = synack(&["demo", "--calls", "2", "--json"]);
    let doc: Value = serde_json::from_str(&out).expect("nothing but one JSON document");
    assert_eq!(
        doc["scenarios"][3]["name"],
        "calls: one keep-alive connection"
    );
    assert_eq!(doc["scenarios"][3]["handshakes"], 1);
    assert_eq!(doc["scenarios"][2]["requests"], 2);
}
