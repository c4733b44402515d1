//! `synack serve --kernel` speaking HTTP/2 on 127.0.0.1, against real clients: nghttp (the
//! SETTINGS it shows), curl (h2c with prior knowledge; h2 over TLS, several URLs on one
//! connection; a certificate from PEM files verified with --cacert) and h2load (20000
//! requests, 4 connections, 50 streams each, no error). Each tool missing skips its test
//! with a message, and fails it when CI=true. Every tool runs under `timeout`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to say it listens, or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

/// Whether `prog` runs; prints a message or, with CI=true, panics if not.
fn have(prog: &str, test: &str) -> bool {
    let ok = Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs {prog} (CI=true: it must run)"
        );
        eprintln!("skipping {test}: {prog} is not installed");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `synack serve --kernel --stats`, and what it said before it listened and
/// just after (its TLS lines).
struct Server {
    child: Child,
    said: Vec<String>,
}

fn start(port: u16, extra: &[&str]) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let mut c = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["serve", "--kernel", "--listen", &listen, "--stats"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synack serve");
    let err = c.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // The listening line, then two lines for --tls (names, fingerprint), one for --cert.
    let want = if extra.contains(&"--tls") {
        3
    } else if extra.contains(&"--cert") {
        2
    } else {
        1
    };
    std::thread::spawn(move || {
        let mut err = BufReader::new(err);
        let mut said = Vec::new();
        let mut line = String::new();
        while said.len() < want && err.read_line(&mut line).unwrap_or(0) > 0 {
            said.push(std::mem::take(&mut line));
            if !said.last().unwrap().contains("synack serve:") {
                break;
            }
        }
        let _ = tx.send(said);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(said) if said.first().is_some_and(|l| l.contains("listening on")) => {
            Server { child: c, said }
        }
        r => {
            let _ = c.kill();
            panic!("synack serve did not say it listens: {r:?}");
        }
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Stops the server with SIGINT; the JSON of its counters.
fn stop(s: Server) -> String {
    let mut c = s.child;
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
            out.lines().last().unwrap_or("").to_owned()
        }
        Err(_) => {
            // SAFETY: our own child, not yet reaped.
            unsafe { kill(pid as i32, 9) };
            panic!("synack serve did not stop on SIGINT");
        }
    }
}

fn run(secs: u32, prog: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(prog)
        .args(args)
        .output()
        .expect("run the tool")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A counter of the server's JSON.
fn counter(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + key.len();
    json[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// h2load's "requests:" line: (succeeded, failed, errored).
fn h2load_result(out: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line in\n{out}"));
    let n = |what: &str| -> u64 {
        let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        let i = words.iter().position(|w| *w == what).unwrap();
        words[i - 1].parse().unwrap()
    };
    (n("succeeded"), n("failed"), n("errored"))
}

/// nghttp shows the SETTINGS synack sent, as set by the flags, and fetches two URLs on one
/// connection; curl with prior knowledge gets HTTP/2; an HTTP/1.1 curl is served on the
/// same port.
#[test]
fn nghttp_shows_the_settings_and_curl_speaks_h2c() {
    let test = "nghttp_shows_the_settings_and_curl_speaks_h2c";
    if !have("nghttp", test) || !have("curl", test) {
        return;
    }
    let port = free_port();
    let srv = start(
        port,
        &[
            "--http2",
            "--http2-max-concurrent-streams",
            "50",
            "--http2-initial-window",
            "256KiB",
            "--http2-max-frame-size",
            "32KiB",
            "--http2-max-header-list",
            "8KiB",
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let o = run(
        20,
        "nghttp",
        &["-nv", &format!("{base}/"), &format!("{base}/bytes/100")],
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let settings = out
        .split("recv SETTINGS frame <length=24, flags=0x00, stream_id=0>")
        .nth(1)
        .unwrap_or_else(|| panic!("no SETTINGS from the server in\n{out}"));
    for s in [
        "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):50]",
        "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):262144]",
        "[SETTINGS_MAX_FRAME_SIZE(0x05):32768]",
        "[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):8192]",
    ] {
        assert!(settings.contains(s), "{s} in\n{out}");
    }
    assert_eq!(out.matches(":status: 200").count(), 2, "{out}");

    let o = run(
        20,
        "curl",
        &[
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "%{http_version} %{num_connects}\n",
            "-o",
            "/dev/null",
            &format!("{base}/bytes/1000"),
        ],
    );
    assert_eq!(text(&o.stdout), "2 1\n", "{}", text(&o.stderr));
    let o = run(
        20,
        "curl",
        &["-sS", "-w", " %{http_version}", &format!("{base}/")],
    );
    assert_eq!(text(&o.stdout), "hello from synack\n 1.1");
    let json = stop(srv);
    assert_eq!(counter(&json, "connections"), 3, "{json}");
    assert_eq!(counter(&json, "h2_connections"), 2, "{json}");
    assert_eq!(counter(&json, "h2_streams"), 3, "{json}");
    assert_eq!(counter(&json, "requests"), 4, "{json}");
    assert_eq!(counter(&json, "errors"), 0, "{json}");
}

/// h2load: 20000 requests over 4 connections, 50 streams at once on each, all succeed, on
/// exactly 4 connections.
#[test]
fn h2load_h2c_has_no_errors() {
    let test = "h2load_h2c_has_no_errors";
    if !have("h2load", test) {
        return;
    }
    let port = free_port();
    let srv = start(port, &["--http2", "--keepalive-requests", "100000"]);
    let url = format!("http://127.0.0.1:{port}/");
    let o = run(120, "h2load", &["-n", "20000", "-c", "4", "-m", "50", &url]);
    let out = text(&o.stdout);
    assert_eq!(h2load_result(&out), (20000, 0, 0), "{out}");
    assert!(out.contains("20000 2xx"), "{out}");
    let json = stop(srv);
    assert_eq!(counter(&json, "h2_connections"), 4, "{json}");
    assert_eq!(counter(&json, "requests"), 20000, "{json}");
    assert_eq!(
        counter(&json, "max_requests_per_connection"),
        5000,
        "{json}"
    );
    assert_eq!(counter(&json, "errors"), 0, "{json}");
}

/// Over TLS with a self-signed certificate: curl --http2 -k fetches three URLs on one
/// connection (num_connects 1, 0, 0; HTTP/2 each time), and --http1.1 two on one; the
/// fingerprint is printed; h2load over TLS has no errors.
#[test]
fn curl_http2_over_tls_uses_one_connection() {
    let test = "curl_http2_over_tls_uses_one_connection";
    if !have("curl", test) {
        return;
    }
    let port = free_port();
    let srv = start(port, &["--tls"]);
    let fp = srv
        .said
        .iter()
        .find_map(|l| l.trim().strip_prefix("synack serve: SHA-256 fingerprint "))
        .unwrap_or_else(|| panic!("no fingerprint in {:?}", srv.said))
        .to_owned();
    assert_eq!(fp.len(), 95, "{fp}");
    assert!(srv.said[0].contains("https://127.0.0.1:"), "{:?}", srv.said);
    let base = format!("https://127.0.0.1:{port}");
    let mut args = vec![
        "-sS",
        "-k",
        "--http2",
        "-w",
        "%{http_version} %{num_connects}\n",
    ];
    let urls: Vec<String> = ["/", "/bytes/100000", "/delay/10"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    for u in &urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let o = run(30, "curl", &args);
    assert_eq!(text(&o.stdout), "2 1\n2 0\n2 0\n", "{}", text(&o.stderr));
    let o = run(
        30,
        "curl",
        &[
            "-sS",
            "-k",
            "--http1.1",
            "-w",
            "%{http_version} %{num_connects}\n",
            "-o",
            "/dev/null",
            &urls[0],
            "-o",
            "/dev/null",
            &urls[1],
        ],
    );
    assert_eq!(text(&o.stdout), "1.1 1\n1.1 0\n", "{}", text(&o.stderr));
    let mut h2load_ran = false;
    if have("h2load", test) {
        let o = run(
            60,
            "h2load",
            &["-n", "2000", "-c", "2", "-m", "10", &urls[0]],
        );
        let out = text(&o.stdout);
        assert_eq!(h2load_result(&out), (2000, 0, 0), "{out}");
        assert!(out.contains("Application protocol: h2"), "{out}");
        h2load_ran = true;
    }
    let json = stop(srv);
    let extra = if h2load_ran { 2 } else { 0 };
    assert_eq!(counter(&json, "tls_handshakes"), 2 + extra, "{json}");
    assert_eq!(counter(&json, "alpn_h2"), 1 + extra, "{json}");
    assert_eq!(counter(&json, "alpn_http11"), 1, "{json}");
    assert_eq!(counter(&json, "h2_streams"), 3 + 2000 * extra / 2, "{json}");
    assert_eq!(counter(&json, "tls_handshake_failures"), 0, "{json}");
}

/// --cert and --key: a certificate from PEM files, which curl verifies with --cacert (no
/// -k), and whose fingerprint the server prints.
#[test]
fn a_certificate_from_files_verifies_with_cacert() {
    let test = "a_certificate_from_files_verifies_with_cacert";
    if !have("curl", test) {
        return;
    }
    let cert = synack_http::tls::SelfSigned::for_addr("127.0.0.1".parse().unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("synack-h2-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cp, kp) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cp, &cert.cert_pem).unwrap();
    std::fs::write(&kp, &cert.key_pem).unwrap();
    let port = free_port();
    let srv = start(
        port,
        &[
            "--cert",
            cp.to_str().unwrap(),
            "--key",
            kp.to_str().unwrap(),
        ],
    );
    assert!(
        srv.said.iter().any(|l| l.contains(&cert.fingerprint())),
        "{:?}",
        srv.said
    );
    let o = run(
        20,
        "curl",
        &[
            "-sS",
            "--cacert",
            cp.to_str().unwrap(),
            "--http2",
            "-w",
            " %{http_version}",
            &format!("https://127.0.0.1:{port}/"),
        ],
    );
    assert_eq!(
        text(&o.stdout),
        "hello from synack\n 2",
        "{}",
        text(&o.stderr)
    );
    let json = stop(srv);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(counter(&json, "alpn_h2"), 1, "{json}");
}

/// Flags out of RFC 9113's ranges are refused before the server starts.
#[test]
fn out_of_range_http2_settings_are_refused() {
    for (flag, value, says) in [
        ("--http2-max-frame-size", "1KiB", "max frame size"),
        ("--http2-initial-window", "4GiB", "too large"),
        ("--http2-connection-window", "3GiB", "connection window"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_synack"))
            .args([
                "serve",
                "--kernel",
                "--listen",
                "127.0.0.1:0",
                "--http2",
                flag,
                value,
            ])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{flag} {value}");
        let err = text(&o.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}
