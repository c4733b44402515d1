//! `synack bench`: on the simulated network (virtual time) and over the in-memory pipe, with
//! small counts: every workload reaches its count exactly, without errors, and the table and
//! the JSON (schema `synack-bench/1`) hold the same runs.

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

const SMALL: [&str; 10] = [
    "--conns",
    "40",
    "--bytes",
    "1MiB",
    "--pings",
    "30",
    "--requests",
    "50",
    "--concurrency",
    "4",
];

#[test]
fn sim_runs_every_workload_to_its_exact_count() {
    let args = [&["bench", "--device", "sim", "--json"][..], &SMALL[..]].concat();
    let doc: Value = serde_json::from_str(&synack(&args)).expect("one JSON document");
    assert_eq!(doc["schema"], "synack-bench/1");
    assert_eq!(doc["device"], "sim");
    assert_eq!(doc["virtual_time"], true);
    let runs = doc["runs"].as_array().expect("runs");
    let got: Vec<(&str, u64, u64, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap(),
                r["workers"].as_u64().unwrap(),
                r["done"].as_u64().unwrap(),
                r["errors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("churn", 1, 40, 0),
            ("bulk", 1, 1 << 20, 0),
            ("bulk-in", 1, 1 << 20, 0),
            ("pingpong", 1, 30, 0),
            ("http", 1, 50, 0),
        ]
    );
    for r in runs {
        assert_eq!(r["done"], r["target"]);
        assert!(r["seconds"].as_f64().unwrap() > 0.0);
        assert!(r["rate"].as_f64().unwrap() > 0.0);
    }
    // Virtual time: the same run gives the same numbers.
    let again: Value = serde_json::from_str(&synack(&args)).unwrap();
    assert_eq!(again["runs"], doc["runs"]);
}

#[test]
fn pipe_table_and_json_hold_the_same_runs_on_1_and_2_workers() {
    let table = synack(&[&["bench", "--only", "churn,http"][..], &SMALL[..]].concat());
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("synack bench: device Pipe, "),
        "{table}"
    );
    assert!(lines[1].split_whitespace().eq([
        "stack", "workload", "workers", "target", "done", "errors", "seconds", "rate", "vs", "1",
        "cores", "per", "cpu-s"
    ]));
    let rows: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for (row, (w, n, count)) in rows.iter().zip([
        ("churn", "1", "40"),
        ("churn", "2", "40"),
        ("http", "1", "50"),
        ("http", "2", "50"),
    ]) {
        assert_eq!(&row[..6], ["synack", w, n, count, count, "0"], "{table}");
    }
    // rate, its unit, then the speed-up over 1 worker, cores and work per CPU second.
    assert_eq!(rows[0][9], "-");
    assert!(rows[1][9].ends_with('x'), "{table}");

    let doc: Value = serde_json::from_str(&synack(
        &[
            &["bench", "--only", "pingpong", "--workers", "2", "--json"][..],
            &SMALL[..],
        ]
        .concat(),
    ))
    .unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["workers"], 2);
    assert_eq!(runs[0]["done"], 30);
    assert_eq!(runs[0]["errors"], 0);
    assert_eq!(runs[0]["unit"], "rtt/s");
}

#[test]
fn bad_worker_counts_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["bench", "--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}
