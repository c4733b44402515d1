//! `synack serve` and `synack get` on the kernel's loopback, and the keep-alive scenarios of
//! `synack demo`, run as a user would.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
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
        .find(|l| {
            l.trim_start()
                .strip_prefix(scenario)
                .is_some_and(|rest| rest.starts_with("  "))
        })
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
    // retransmitted, RTTs to the first response byte; 50 ms RTT over the default 100 Mbit/s link. Each packet's serialization
    // (a few microseconds) makes an arrival fall between two of tokio's 1 ms timer ticks, so
    // the client and server tasks act up to 1 ms after it: about 3 ms more per call with a
    // connection each (handshake, request, reply), 2 ms more per call on one connection.
    // Columns: handshakes (TCP+TLS), their RTTs (parallel handshakes counted once), requests,
    // ms per call (median/max), ms to last byte, RTTs.
    let per_call = row(&out, "calls: new connection each");
    assert_eq!(
        per_call[..6],
        ["20", "20.01", "20", "103.0/103.0", "2060.000", "41.20"]
    );
    // TCP Fast Open (issue 11): the first connection brings a cookie; each later SYN carries
    // its request, and the call takes one round trip, as on a kept-alive connection.
    let tfo = row(&out, "calls: new connection each, TCP Fast Open");
    assert_eq!(
        tfo[..6],
        ["20", "20.01", "20", "52.0/103.0", "1091.000", "21.82"]
    );
    let keepalive = row(&out, "calls: one keep-alive connection");
    assert_eq!(
        keepalive[..6],
        ["1", "1.00", "20", "52.0/103.0", "1091.000", "21.82"]
    );
    // Four lanes, started 1 ms apart: 1 handshake RTT + 5 calls of 1 RTT, + 3 ms, + the
    // ticks. The four handshakes overlap: 1.06 RTTs in all, not 4.
    let pool = row(&out, "calls: pool, concurrency 4");
    assert_eq!(
        pool[..6],
        ["4", "1.06", "20", "52.0/103.0", "314.000", "6.28"]
    );
    // HTTP/2 (issue 12): every call a stream of one connection, one handshake. The replies
    // (20 KiB and their frames) outgrow the server's initial window of 10 segments: the last
    // ones come a round trip later.
    let h2 = row(&out, "calls: HTTP/2, one connection");
    assert_eq!(
        h2[..6],
        ["1", "1.00", "20", "103.0/153.0", "153.000", "3.06"]
    );
    // Over TLS 1.3: one TCP and one TLS handshake, one round trip each.
    let h2tls = row(&out, "calls: HTTP/2 over TLS");
    assert_eq!(
        h2tls[..6],
        ["1+1", "1.00+1.04", "20", "155.0/205.0", "205.000", "4.10"]
    );
    // HTTPS/1.1 with a connection per call: both handshakes on every call.
    let https = row(&out, "calls: HTTPS/1.1, new connection each");
    assert_eq!(
        https[..6],
        [
            "20+20",
            "20.01+20.80",
            "20",
            "155.0/155.0",
            "3100.000",
            "62.00"
        ]
    );
    // Flow control: four calls at once, the first read only after 500 ms.
    let slow = row(&out, "calls: HTTP/2, small windows, a slow reader");
    assert_eq!(slow[..4], ["1", "1.00", "4", "363.0/762.0"]);
    // Head-of-line blocking at 2 % loss: a lost segment of HTTP/2's one connection holds up
    // every stream behind it, so its calls end together and late, while the pool's four
    // connections let most calls end early.
    let ms = |cell: &str, i: usize| -> f64 { cell.split('/').nth(i).unwrap().parse().unwrap() };
    let pool_loss = row(&out, "calls: pool, concurrency 4, 2% loss");
    let h2_loss = row(&out, "calls: HTTP/2, one connection, 2% loss");
    assert_eq!((pool_loss[0], h2_loss[0]), ("4", "1"));
    assert!(
        ms(pool_loss[3], 0) * 3.0 < ms(h2_loss[3], 0),
        "{pool_loss:?} {h2_loss:?}"
    );
    assert!(ms(h2_loss[3], 0) > ms(h2_loss[3], 1) * 0.9, "{h2_loss:?}");
    assert!(
        ms(pool_loss[3], 0) < ms(pool_loss[3], 1) * 0.5,
        "{pool_loss:?}"
    );
    // Headers say the numbers, not placeholders.
    // Head-of-line blocking call by call: 100 calls of 100 bytes, one every 5 ms after the
    // first, at 2 % loss. A call alone takes 52 ms; on HTTP/2's one TCP connection a lost
    // segment holds up every call after it until it is repaired (37 calls over 1.5 RTTs), on
    // HTTP/3's one QUIC connection only the call whose stream it carried (4).
    let h2_paced = row(&out, "calls: HTTP/2, one every 5ms, 2% loss");
    let h3_paced = row(&out, "calls: HTTP/3, one every 5ms, 2% loss");
    assert_eq!(h2_paced[..5], ["1", "1.00", "100", "52.0/122.0", "695.000"]);
    assert_eq!(h3_paced[..5], ["1", "1.04", "100", "52.0/111.0", "646.000"]);
    let paced = out
        .split("== scenario: calls: HTTP/2, one every 5ms")
        .nth(1)
        .expect("the staggered rows");
    let held: Vec<&str> = paced
        .lines()
        .filter_map(|l| l.trim().strip_prefix("held up:"))
        .map(str::trim)
        .collect();
    assert_eq!(
        held,
        [
            "37 of 100 calls took over 1.5 RTTs (75.000 ms); one call every 5ms",
            "4 of 100 calls took over 1.5 RTTs (75.000 ms); one call every 5ms"
        ]
    );
    // The time to the first response byte (the last column), in RTTs: a TCP handshake and
    // a round trip for the call (with or without keep-alive, a pool or HTTP/2: the first
    // call opens a connection); TLS adds one; QUIC's handshake carries TLS in its one round
    // trip, and a return visit sends its requests in 0-RTT.
    let first_byte = |name: &str| row(&out, name)[9].to_owned();
    for (name, rtts) in [
        ("one connection", "2.00"),
        ("calls: new connection each", "2.06"),
        ("calls: new connection each, TCP Fast Open", "2.06"),
        ("calls: one keep-alive connection", "2.06"),
        ("calls: pool, concurrency 4", "2.06"),
        ("calls: HTTP/2, one connection", "2.06"),
        ("calls: HTTP/2 over TLS", "3.10"),
        ("calls: HTTPS/1.1, new connection each", "3.10"),
        ("calls: HTTP/3 (QUIC), one connection", "2.08"),
        ("calls: HTTP/3, return visit, 0-RTT", "1.04"),
    ] {
        assert_eq!(first_byte(name), rtts, "{name}");
    }
    for header in [
        "== scenario: one connection (connect, GET /bytes/1024, read the reply, close",
        "== scenario: calls: new connection each (20 calls of GET /bytes/1024 one after another",
        "== scenario: calls: pool, concurrency 4 (20 calls of GET /bytes/1024 through the pool, \
         4 at a time: 4 connections, 4 handshakes)",
    ] {
        assert!(out.contains(header), "{header:?} in\n{out}");
    }
    for r in [&per_call, &keepalive, &pool, &h2, &h2tls, &https, &slow] {
        assert_eq!(r[8], "0", "no retransmission");
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
        row(&out, "calls: pool, concurrency 2")[..5],
        ["2", "1.01", "7", "102.0/203.0", "509.000"]
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
        row(&out, "calls: new connection each")[..6],
        ["20", "20.00", "20", "100.0/100.0", "2000.000", "40.00"]
    );
    assert_eq!(
        row(&out, "calls: one keep-alive connection")[..6],
        ["1", "1.00", "20", "50.0/100.0", "1050.000", "21.00"]
    );
    assert_eq!(
        row(&out, "calls: pool, concurrency 4")[..6],
        ["4", "1.06", "20", "50.0/100.0", "303.000", "6.06"]
    );
    // Whole round trips for HTTP/2 and TLS too: the handshake, then one round trip for the
    // requests, and one more for the replies past the initial window; TLS adds one.
    assert_eq!(
        row(&out, "calls: HTTP/2, one connection")[..6],
        ["1", "1.00", "20", "100.0/150.0", "150.000", "3.00"]
    );
    assert_eq!(
        row(&out, "calls: HTTP/2 over TLS")[..6],
        ["1+1", "1.00+1.00", "20", "150.0/200.0", "200.000", "4.00"]
    );
    assert_eq!(
        row(&out, "calls: HTTPS/1.1, new connection each")[..6],
        [
            "20+20",
            "20.00+20.00",
            "20",
            "150.0/150.0",
            "3000.000",
            "60.00"
        ]
    );
    // And the time to the first response byte is whole round trips: 2 over TCP, 3 with TLS,
    // 2 over QUIC, 1 in 0-RTT.
    for (name, rtts) in [
        ("calls: new connection each", "2.00"),
        ("calls: HTTP/2 over TLS", "3.00"),
        ("calls: HTTPS/1.1, new connection each", "3.00"),
        ("calls: HTTP/3 (QUIC), one connection", "2.00"),
        ("calls: HTTP/3, return visit, 0-RTT", "1.00"),
    ] {
        assert_eq!(row(&out, name)[9], rtts, "{name}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long a server may take to say it listens, or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

fn start_server(port: u16, extra: &[&str]) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let mut c = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["serve", "--kernel", "--listen", &listen, "--stats"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synack serve");
    // It says when it listens: wait for that line (at most PATIENCE), then keep reading its
    // standard error so that it never writes into a full or closed pipe.
    let err = c.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut err = BufReader::new(err);
        let mut line = String::new();
        let _ = err.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(line) if line.contains("listening on") => c,
        r => {
            let _ = c.kill();
            panic!("synack serve did not say it listens: {r:?}");
        }
    }
}

/// Stops the server with SIGINT and waits for it to exit (at most PATIENCE); its stdout.
fn stop_server(mut c: Child) -> String {
    let pid = c.id();
    let mut stdout = c.stdout.take().unwrap();
    // SAFETY: signals our own child by its pid.
    unsafe { kill(pid as i32, 2) };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send((c.wait(), out));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok((status, out)) => {
            assert!(status.is_ok(), "{status:?}");
            out
        }
        Err(_) => {
            // SAFETY: our own child, which has not been reaped (its waiter is still waiting).
            unsafe { kill(pid as i32, 9) };
            panic!("synack serve did not stop on SIGINT");
        }
    }
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
fn get_refuses_an_invalid_url_before_fetching_anything() {
    for (url, why) in [
        (
            "http://127.0.0.1:99999/",
            "port 99999 is out of range (1 to 65535)",
        ),
        (
            "http://127.0.0.1:65536/",
            "port 65536 is out of range (1 to 65535)",
        ),
        ("http://127.0.0.1:80abc/", "port \"80abc\" is not a number"),
        ("http://127.0.0.1:-1/", "port \"-1\" is not a number"),
    ] {
        let o = synack(&["get", "--kernel", url]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{url}: {err}");
        assert_eq!(
            err.trim_end(),
            format!("synack get: error: invalid URL {url}: {why}"),
            "{url}"
        );
        assert!(o.stdout.is_empty());
    }
    // With a good URL first: nothing is fetched at all.
    let port = free_port();
    let server = start_server(port, &[]);
    let good = format!("http://127.0.0.1:{port}/");
    let o = synack(&["get", "--kernel", &good, "http://127.0.0.1:65536/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let served = stop_server(server);
    assert!(
        served
            .lines()
            .last()
            .unwrap()
            .starts_with("{\"connections\":0,"),
        "{served}"
    );
}

#[test]
fn get_rejects_what_it_cannot_fetch() {
    let o = synack(&["get", "--kernel", "ftp://127.0.0.1/"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("scheme \"ftp\" is not supported"), "{err}");
    let o = synack(&["serve", "--keepalive-timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid duration"));
}

/// The peak resident memory of process `pid` so far (VmHWM), in bytes, while it runs.
fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn get_streams_a_large_body_to_stdout_as_it_arrives() {
    const BIG: u64 = 64 << 20;
    let port = free_port();
    let server = start_server(port, &[]);
    let url = format!("http://127.0.0.1:{port}/bytes/{BIG}");
    let mut get = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["get", "--kernel", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synack get");
    let mut out = get.stdout.take().unwrap();
    // Read the body a block at a time, checking it against the pattern and sampling both
    // processes' peak memory as it goes: they hold a bounded part of the 64 MiB at a time.
    let mut block = vec![0u8; 1 << 20];
    let (mut got, mut peak_get, mut peak_serve) = (0u64, 0, 0);
    loop {
        let n = out.read(&mut block).unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in block[..n].iter().enumerate() {
            let at = got + i as u64;
            assert_eq!(u64::from(*b), at % 251, "byte {at}");
        }
        got += n as u64;
        peak_get = peak_get.max(peak_rss(get.id()).unwrap_or(0));
        peak_serve = peak_serve.max(peak_rss(server.id()).unwrap_or(0));
    }
    let status = get.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(got, BIG);
    // Before, each held the whole body (over 64 MiB resident).
    for (who, peak) in [("get", peak_get), ("serve", peak_serve)] {
        assert!(peak > 0 && peak < 32 << 20, "synack {who}: peak RSS {peak}");
    }
    stop_server(server);
}

/// Without `-v`, a failed request still says what failed: a 404's status, and a refused
/// connection naming the request once (issue 14 item 5).
#[test]
fn get_says_what_failed_without_verbose() {
    let port = free_port();
    let server = start_server(port, &[]);
    let closed = free_port();
    let nope = format!("http://127.0.0.1:{port}/nope");
    let ok = format!("http://127.0.0.1:{port}/bytes/5");
    let refused = format!("http://127.0.0.1:{closed}/");
    let o = synack(&["get", "--kernel", "--no-body", &nope, &ok, &refused]);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_eq!(lines[0], format!("synack get: GET {nope}: 404 Not Found"));
    assert!(
        lines[1].starts_with(&format!("synack get: GET {refused}: could not connect: ")),
        "{stderr}"
    );
    assert_eq!(
        lines[1].matches(&format!("{closed}")).count(),
        1,
        "{stderr}"
    );
    assert_eq!(lines[2], "synack get: error: 2 of 3 requests failed");
    stop_server(server);
}

/// `synack get --json` (issue 14 item 4): one document with each request's status, size,
/// connection and protocol, and the client's metrics; no bodies.
#[test]
fn get_json_gives_each_request_and_the_metrics() {
    let port = free_port();
    let server = start_server(port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let o = synack(&[
        "get",
        "--kernel",
        "--json",
        &format!("{base}/bytes/10"),
        &format!("{base}/bytes/20"),
        &format!("{base}/nothing-here"),
    ]);
    let _ = stop_server(server);
    // The 404 fails the command, and the document still says everything.
    assert!(!o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(doc["schema"], "synack-get/1");
    let r = doc["requests"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        r.iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [200, 200, 404]
    );
    assert_eq!(
        (r[0]["bytes"].as_u64(), r[1]["bytes"].as_u64()),
        (Some(10), Some(20))
    );
    assert_eq!(r[0]["new_connection"], true);
    assert_eq!(r[1]["reused"], true);
    assert_eq!(r[1]["request_on_connection"], 2);
    assert_eq!(r[0]["protocol"], "HTTP/1.1");
    assert_eq!(doc["metrics"]["connections_opened"], 1);
    assert_eq!(doc["metrics"]["requests"], 3);
}

/// `synack get -v` says why the previous connection went out of use when a request opens a
/// new one (issue 14 item 5).
#[test]
fn get_verbose_says_why_a_new_connection_was_needed() {
    let port = free_port();
    let server = start_server(port, &["--keepalive-requests", "2"]);
    let url = format!("http://127.0.0.1:{port}/bytes/1");
    let o = synack(&["get", "--kernel", "-v", "--no-body", &url, &url, &url]);
    let closing = synack(&["get", "--kernel", "-v", "--no-body", "--close", &url, &url]);
    let _ = stop_server(server);
    assert!(o.status.success() && closing.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].contains("new connection #1"), "{err}");
    assert!(!lines[0].contains("was dropped"), "{err}");
    assert!(lines[1].contains("connection closed after it"), "{err}");
    assert!(
        lines[2].contains("new connection #2")
            && lines[2].contains("#1 was dropped: the server said Connection: close"),
        "{err}"
    );
    let err = String::from_utf8(closing.stderr).unwrap();
    assert!(
        err.contains("#1 was dropped: the request said Connection: close"),
        "{err}"
    );
}
