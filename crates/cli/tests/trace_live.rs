//! `synack trace -i lo` (root): in a network namespace of the test's own, curl fetches three
//! URLs from nginx over one keep-alive connection while synack captures; the connection is
//! drawn as it closes (before synack is stopped), SIGINT ends the capture with the tables, and
//! the file `-w` saved reads back as the same connection. Skips with a message without root,
//! ip, nginx or curl; fails instead with CI=true.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn have(prog: &str, arg: &str) -> bool {
    Command::new(prog)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Deletes the namespace when dropped.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn in_ns(ns: &Ns, secs: u32, prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.0, "timeout", &secs.to_string(), prog]);
    c
}

#[test]
fn live_capture_draws_the_keepalive_connection() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = [
        (!root).then_some("root"),
        (!have("ip", "-V")).then_some("ip"),
        (!have("nginx", "-v")).then_some("nginx"),
        (!have("curl", "--version")).then_some("curl"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(!ci(), "needs {missing:?} (CI=true: it must run)");
        eprintln!("skipping: live_capture_draws_the_keepalive_connection needs {missing:?}");
        return;
    }
    let ns = Ns(format!("synack-trace-live-{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).output();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    let dir = std::env::temp_dir().join(format!("synack-trace-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:8080;\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let mut nginx = in_ns(&ns, 120, "nginx")
        .args(["-c", &format!("{d}/nginx.conf"), "-p", &d.to_string(), "-e"])
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let saved = dir.join("live.pcap");
    let mut trace = in_ns(&ns, 60, env!("CARGO_BIN_EXE_synack"))
        .args(["trace", "-i", "lo", "--port", "8080", "-w"])
        .arg(&saved)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it says it is capturing (its socket is bound).
    let mut err = BufReader::new(trace.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("capturing on lo"), "{line}");

    // nginx accepting: curl retries the connection for up to 10 s.
    let out = in_ns(&ns, 30, "curl")
        .args([
            "-sS",
            "--retry",
            "50",
            "--retry-connrefused",
            "--retry-delay",
            "0",
            "--retry-max-time",
            "10",
        ])
        .args([
            "http://127.0.0.1:8080/a",
            "http://127.0.0.1:8080/b",
            "http://127.0.0.1:8080/c",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\nok\nok\n",
        "{out:?}"
    );

    // The connection is drawn while synack still runs (at most 20 s).
    let mut stdout = BufReader::new(trace.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut l = String::new();
        while stdout.read_line(&mut l).unwrap_or(0) > 0 {
            if l.contains("TIME-WAIT: ") {
                let _ = tx.send(None);
            }
            all.push_str(&l);
            l.clear();
        }
        let _ = tx.send(Some(all));
    });
    let drawn = rx.recv_timeout(Duration::from_secs(20));
    // SAFETY: signals our own child (`ip netns exec` and `timeout` pass it on).
    unsafe {
        libc::kill(trace.id() as i32, libc::SIGINT);
    }
    assert!(
        matches!(drawn, Ok(None)),
        "the connection was not drawn while capturing"
    );
    let text = loop {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("synack trace ends")
        {
            Some(t) => break t,
            None => continue,
        }
    };
    let status = trace.wait().unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert!(status.success(), "{status:?}: {rest}");
    assert_eq!(
        text.matches("client ~~> server : GET /").count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches(" : SYN, seq=0,").count(), 1, "{text}");
    assert!(text.contains("1 TCP connection,"), "{text}");
    assert!(text.contains("TIME-WAIT: client"), "{text}");

    // The saved capture holds the same connection (Ethernet frames, each once).
    let j = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(["trace", "--json"])
        .arg(&saved)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    assert_eq!(j["link_types"], serde_json::json!([1]));
    let conns = j["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{j}");
    assert_eq!(conns[0]["http1_requests"], 3);
    assert_eq!(
        conns[0]["retransmissions"], 0,
        "a frame seen twice would look resent"
    );

    // SAFETY: signals our own child.
    unsafe {
        libc::kill(nginx.id() as i32, libc::SIGTERM);
    }
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
