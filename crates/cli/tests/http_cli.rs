//! `synack serve` and `synack get` on the kernel's loopback, and the keep-alive scenarios of
//! `synack demo`, run as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn synack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(args)
        .output()
        .expect("run synack")
}

/// The results-table row of `scenario`, as cells after the name.
fn row<'a>(out: &'a str, scenario: &str) -> Vec<&'a str> {
    let results = out.split("\nresults:\n").nth(1).expect("a results table");
    let line = results
        .lines()
        .find(|l| l.trim_start().starts_with(scenario))
        .unwrap_or_else(|| panic!("no row {scenario:?} in\n{results}"));
    line.trim_start()[scenario.len()..]
        .split_whitespace()
        .collect()
}

#[test]
fn demo_compares_a_connection_per_call_keepalive_and_a_pool() {
    let o = synack(&["demo", "--calls", "20", "--concurrency", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    // handshakes, handshake RTTs, requests, ms to last byte, RTTs, ms to closed, segments,
    // retransmitted; 50 ms RTT over the default 100 Mbit/s link. Each packet's serialization
    // (a few microseconds) makes an arrival fall between two of tokio's 1 ms timer ticks, so
    // the client and server tasks act up to 1 ms after it: about 3 ms more per call with a
    // connection each (handshake, request, reply), 2 ms more per call on one connection.
    let per_call = row(&out, "calls: new connection each");
    assert_eq!(per_call[..5], ["20", "20.01", "20", "2060.000", "41.20"]);
    let keepalive = row(&out, "calls: one keep-alive connection");
    assert_eq!(keepalive[..5], ["1", "1.00", "20", "1091.000", "21.82"]);
    // Four lanes, started 1 ms apart: 1 handshake RTT + 5 calls of 1 RTT, + 3 ms, + the
    // ticks.
    let pool = row(&out, "calls: pool, concurrency C");
    assert_eq!(pool[..5], ["4", "4.00", "20", "314.000", "6.28"]);
    for r in [&per_call, &keepalive, &pool] {
        assert_eq!(r[7], "0", "no retransmission");
    }
    assert!(out.contains("delivered:   request 920 B; reply 22840 B (2360 B head + 20 KiB body"));
    // Deterministic.
    let again = synack(&["demo", "--calls", "20", "--concurrency", "4"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), out);
    // Other counts.
    let o = synack(&[
        "demo",
        "--calls",
        "7",
        "--concurrency",
        "2",
        "--rtt",
        "100ms",
    ]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        row(&out, "calls: new connection each")[..3],
        ["7", "7.00", "7"]
    );
    assert_eq!(
        row(&out, "calls: pool, concurrency C")[..4],
        ["2", "2.00", "7", "509.000"]
    );
    // On a link of unlimited rate every arrival falls on a tick: whole round trips.
    let o = synack(&[
        "demo",
        "--calls",
        "20",
        "--concurrency",
        "4",
        "--bandwidth",
        "unlimited",
    ]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        row(&out, "calls: new connection each")[..5],
        ["20", "20.00", "20", "2000.000", "40.00"]
    );
    assert_eq!(
        row(&out, "calls: one keep-alive connection")[..5],
        ["1", "1.00", "20", "1050.000", "21.00"]
    );
    assert_eq!(
        row(&out, "calls: pool, concurrency C")[..5],
        ["4", "4.00", "20", "303.000", "6.06"]
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(port: u16, extra: &[&str]) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let mut c = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["serve", "--kernel", "--listen", &listen, "--stats"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synack serve");
    // It says when it listens.
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    c
}

fn stop_server(mut c: Child) -> String {
    // SAFETY: signals our own child by its pid.
    unsafe { kill(c.id() as i32, 2) };
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = c.try_wait() {
            let out = c.wait_with_output().unwrap();
            return String::from_utf8(out.stdout).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    panic!("synack serve did not stop on SIGINT");
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn serve_and_get_over_kernel_loopback() {
    let port = free_port();
    let server = start_server(port, &["--keepalive-header", "--keepalive-requests", "3"]);
    let base = format!("http://127.0.0.1:{port}");
    let urls: Vec<String> = ["/", "/bytes/5000", "/delay/20", "/", "/nope"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    let mut args = vec!["get", "--kernel", "-v", "--stats", "--no-body"];
    args.extend(urls.iter().map(String::as_str));
    let o = synack(&args);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    // The 404 makes the command fail, after printing everything.
    assert!(!o.status.success());
    assert!(stderr.contains("1 of 5 requests failed"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].contains("-> 200 OK") && lines[0].contains("new connection #1 (handshake"),
        "{stderr}"
    );
    assert!(
        lines[0].contains("server keep-alive: timeout=75, max=2"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("5000 bytes")
            && lines[1].contains("reused connection #1 (request 2 on it"),
        "{stderr}"
    );
    assert!(
        lines[2].contains("reused connection #1 (request 3 on it")
            && lines[2].contains("connection closed after it"),
        "{stderr}"
    );
    assert!(lines[3].contains("new connection #2"), "{stderr}");
    assert!(
        lines[4].contains("-> 404") && lines[4].contains("reused connection #2"),
        "{stderr}"
    );
    let json = stdout.lines().last().unwrap();
    for kv in [
        "\"connections_opened\":2,",
        "\"handshakes\":2,",
        "\"requests\":5,",
        "\"reused\":3,",
        "\"retries\":0,",
        "\"retired_by_server\":1,",
    ] {
        assert!(json.contains(kv), "{kv} in {json}");
    }
    let served = stop_server(server);
    let json = served.lines().last().unwrap();
    assert!(
        json.contains("\"connections\":2,") && json.contains("\"requests\":5,"),
        "{json}"
    );
    assert!(json.contains("\"closed_max_requests\":1,"), "{json}");
}

#[test]
fn get_rejects_what_it_cannot_fetch() {
    let o = synack(&["get", "--kernel", "https://127.0.0.1/"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("scheme \"https\" is not supported"), "{err}");
    let o = synack(&["serve", "--keepalive-timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid duration"));
}
