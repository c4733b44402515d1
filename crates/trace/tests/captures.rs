//! Captures synack did not make: nginx on 127.0.0.1 in a network namespace of the test's own,
//! `curl` fetching three URLs over one keep-alive connection and then three with
//! `Connection: close`, each captured at once by `tcpdump -i lo` (Ethernet), `tcpdump -i any`
//! (Linux cooked: SLL2 from tcpdump 4.99) and `tshark -F pcapng`. Every capture must show
//! exactly one connection carrying three requests, or three connections carrying one each.
//!
//! Needs root, ip, nginx, curl, tcpdump and tshark: skips with a message without them, fails
//! with CI=true.

#[path = "../../http/tests/netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use netns::{have_tool, privileged, Netns};
use synack_trace::capture::{linktype, CaptureReader, Format};
use synack_trace::{Analyzer, Finished};

const PORT: u16 = 8080;

fn start_nginx(ns: &Netns, dir: &Path) -> Child {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{PORT};\n    location / {{ return 200 \"ok $request_uri\\n\"; }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut c = ns.command(300, "nginx");
    c.arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("start nginx")
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Sends SIGTERM (`ip netns exec` and `timeout` pass it on) and waits for the exit, at most
/// 10 s; then kills.
fn stop(child: &mut Child) {
    // SAFETY: signals our own child by its pid.
    unsafe {
        libc_kill(child.id() as i32, 15);
    }
    if !wait_until(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    }) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits until `cond` holds, at most `limit`, looking every 10 ms (the events are outside
/// this process: nginx accepting).
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A capture tool running in the namespace, started once it says it is listening.
struct Capture {
    child: Child,
    path: PathBuf,
}

/// Starts `prog args` and waits (at most 20 s) for a line on its standard error containing
/// `ready`: tcpdump says "listening on", tshark "Capture started" (its "Capturing on" comes before dumpcap
/// is). With `stdout`, what the tool
/// writes to its standard output is copied to `path` (tshark flushes each packet to a pipe,
/// but buffers a file until it exits).
fn start_capture(
    ns: &Netns,
    prog: &str,
    args: &[&str],
    path: PathBuf,
    ready: &str,
    stdout: bool,
) -> Capture {
    let mut c = ns.command(120, prog);
    c.args(args)
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("start {prog}: {e}"));
    if let Some(mut out) = child.stdout.take() {
        let mut file = std::fs::File::create(&path).unwrap();
        std::thread::spawn(move || {
            // Copies as it comes: each read is written out at once.
            let mut buf = [0u8; 65536];
            loop {
                match std::io::Read::read(&mut out, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if std::io::Write::write_all(&mut file, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    let prog_name = prog.to_owned();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains(&ready) {
                let _ = tx.send(Ok(()));
                sent = true;
            }
            said.push(line);
        }
        if !sent {
            let _ = tx.send(Err(format!("{prog_name} said: {}", said.join(" | "))));
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{prog} did not start capturing: {e}"),
        Err(_) => panic!("{prog} did not say it was capturing within 20 s"),
    }
    Capture { child, path }
}

/// Reads a capture file with synack-trace, as `synack trace` does.
fn analyze(path: &Path) -> (Format, Finished) {
    try_analyze(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn try_analyze(path: &Path) -> Result<(Format, Finished), String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut r = CaptureReader::new(std::io::BufReader::new(f)).map_err(|e| e.to_string())?;
    let mut a = Analyzer::new();
    while let Some(frame) = r.next_frame() {
        a.push_frame(&frame.map_err(|e| e.to_string())?);
    }
    Ok((r.format(), a.finish()))
}

/// Waits (at most 20 s) until the capture at `path` holds `conns` connections, each with
/// its requests and responses, and (with `closed`) closed on both sides: the capture tool has
/// written out what curl did. Meanwhile a UDP datagram to the discard port is sent every
/// 10 ms: libpcap's TPACKET_V3 ring can hold the last packets until more come, and these make
/// no connection.
fn wait_for_capture(ns: &Netns, path: &Path, conns: usize, requests: u64, closed: bool) -> bool {
    wait_until(Duration::from_secs(20), || {
        ns.run(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
            let _ = s.send_to(b"nudge", "127.0.0.1:9");
        });
        try_analyze(path).is_ok_and(|(_, done)| {
            done.connections.len() == conns
                && done.connections.iter().all(|c| {
                    c.summary.http1_requests == requests
                        && c.summary.http1_responses == requests
                        && (!closed || c.summary.milestones.closed.is_some())
                })
        })
    })
}

/// Runs one scenario: the three captures around one curl command.
fn scenario(
    ns: &Netns,
    dir: &Path,
    tag: &str,
    conns: usize,
    requests: u64,
    curl_args: &[&str],
) -> Vec<(String, PathBuf)> {
    // The filter keeps out what the tools do themselves (tshark's extcap probes adb on
    // 127.0.0.1:5037) and lets the nudges below in.
    let filter = format!("tcp port {PORT} or udp port 9");
    let lo = dir.join(format!("{tag}-lo.pcap"));
    let any = dir.join(format!("{tag}-any.pcap"));
    let ng = dir.join(format!("{tag}-tshark.pcapng"));
    let mut caps = vec![
        start_capture(
            ns,
            "tcpdump",
            &[
                "-i",
                "lo",
                "-U",
                "-Z",
                "root",
                "-w",
                lo.to_str().unwrap(),
                &filter,
            ],
            lo.clone(),
            "listening on",
            false,
        ),
        start_capture(
            ns,
            "tcpdump",
            &[
                "-i",
                "any",
                "-U",
                "-Z",
                "root",
                "-w",
                any.to_str().unwrap(),
                &filter,
            ],
            any.clone(),
            "listening on",
            false,
        ),
        start_capture(
            ns,
            "tshark",
            &["-i", "lo", "-F", "pcapng", "-w", "-", "-f", &filter],
            ng.clone(),
            "Capture started",
            true,
        ),
    ];
    let out = ns
        .command(30, "curl")
        .args(["-sS", "--max-time", "10"])
        .args(curl_args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok /a\nok /b\nok /c\n",
        "nginx's answers"
    );
    for c in &mut caps {
        let whole = wait_for_capture(ns, &c.path, conns, requests, true);
        stop(&mut c.child);
        assert!(
            whole,
            "{}: not every connection was captured",
            c.path.display()
        );
    }
    vec![
        ("tcpdump -i lo".to_owned(), caps[0].path.clone()),
        ("tcpdump -i any".to_owned(), caps[1].path.clone()),
        ("tshark -F pcapng".to_owned(), caps[2].path.clone()),
    ]
}

#[test]
fn curl_against_nginx_captured_by_tcpdump_and_tshark() {
    let test = "curl_against_nginx_captured_by_tcpdump_and_tshark";
    if !privileged(test)
        || !have_tool("nginx", &["-v"], test)
        || !have_tool("curl", &["--version"], test)
        || !have_tool("tcpdump", &["--version"], test)
        || !have_tool("tshark", &["--version"], test)
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("synack-trace-captures-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ns = Netns::new("captures");
    let mut nginx = start_nginx(&ns, &dir);
    let up = wait_until(Duration::from_secs(20), || {
        ns.run(|| std::net::TcpStream::connect(("127.0.0.1", PORT)).is_ok())
    });
    assert!(up, "nginx did not start listening on 127.0.0.1:{PORT}");
    // That probe connection was not captured: the captures start after it.

    let urls: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|p| format!("http://127.0.0.1:{PORT}/{p}"))
        .collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let keepalive = scenario(&ns, &dir, "keepalive", 1, 3, &urls);
    let mut close_args = vec!["-H", "Connection: close"];
    close_args.extend_from_slice(&urls);
    let close = scenario(&ns, &dir, "close", 3, 1, &close_args);
    stop(&mut nginx);

    for (scenario, captures, conns, requests_each) in [
        ("keep-alive", &keepalive, 1usize, 3u64),
        ("Connection: close", &close, 3, 1),
    ] {
        for (tool, path) in captures {
            let what = format!("{scenario}, {tool} ({})", path.display());
            let (format, done) = analyze(path);
            let want_format = if tool.starts_with("tshark") {
                Format::PcapNg
            } else {
                Format::Pcap
            };
            assert_eq!(format, want_format, "{what}");
            let want_link = match tool.as_str() {
                "tcpdump -i any" => vec![linktype::LINUX_SLL2],
                _ => vec![linktype::ETHERNET],
            };
            // tcpdump before 4.99 writes SLL (113) for `any`.
            if !(tool == "tcpdump -i any" && done.link_types == [linktype::LINUX_SLL]) {
                assert_eq!(done.link_types, want_link, "{what}");
            }
            assert_eq!(done.stats.drops.total(), 0, "{what}: {:?}", done.stats);
            assert_eq!(done.connections.len(), conns, "{what}: connections");
            for c in &done.connections {
                let s = &c.summary;
                assert!(s.handshake_seen, "{what}: connection {}", s.id);
                assert_eq!(s.server.port(), PORT, "{what}");
                assert_eq!(s.http1_requests, requests_each, "{what}: requests");
                assert_eq!(s.http1_responses, requests_each, "{what}: responses");
                assert_eq!(s.retransmissions, 0, "{what}");
                assert_eq!(s.resets, 0, "{what}");
                assert!(s.rtt_us.is_some(), "{what}");
                // Both sides saw the close through: one of them waits in TIME-WAIT, the other
                // is closed.
                assert!(s.time_wait.is_some(), "{what}: {s:?}");
                let states = [s.client_state.as_str(), s.server_state.as_str()];
                assert!(
                    states == ["TIME-WAIT", "CLOSED"] || states == ["CLOSED", "TIME-WAIT"],
                    "{what}: {states:?}"
                );
                // Keep-alive: curl closes its connection when it exits, so the client waits
                // in TIME-WAIT. (With Connection: close either may close first: nginx after
                // its response, or curl as soon as it has read it.)
                if conns == 1 {
                    assert_eq!(s.time_wait.as_deref(), Some("client"), "{what}");
                }
                assert_eq!(s.inferred_fins, 0, "{what}");
            }
        }
    }
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}
