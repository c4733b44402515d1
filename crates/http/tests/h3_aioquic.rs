//! Interop with aioquic (PyPI `aioquic`) on kernel UDP sockets on 127.0.0.1, both ways:
//! - aioquic's HTTP/3 client (`h3_support/aioquic_get.py`) against synack's HTTP/3 server:
//!   three GETs as streams of one QUIC connection, byte counts exact, then a second
//!   connection that resumes the session and sends its GET in 0-RTT, which the server accepts;
//! - synack's HTTP/3 client against aioquic's HTTP/3 server (`h3_support/aioquic_serve.py`):
//!   GETs as streams of one connection, bodies byte-exact, then a return visit that resumes
//!   with 0-RTT, which aioquic accepts.
//!
//! Skipped with a message when python3 or aioquic is missing, failed when CI=true.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use synack_http::h3::{self, H3Client, H3Config, H3ServerStats};
use synack_http::routes::{pattern_byte, Routes};
use synack_http::tls::SelfSigned;
use synack_http::{CertVerification, TlsClientConfig};

fn have_aioquic() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        assert!(
            !ci,
            "h3_aioquic needs python3 with aioquic (CI=true: it must run)"
        );
        eprintln!(
            "skipping h3_aioquic: python3 with aioquic is not installed (pip install aioquic)"
        );
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_client_gets_over_h3_and_resumes_in_0rtt() {
    if !have_aioquic() {
        return;
    }
    let cert = SelfSigned::for_addr("127.0.0.1".parse().unwrap()).unwrap();
    let cfg = H3Config {
        early_data: true,
        ..H3Config::default()
    };
    let scfg = h3::server_config(
        vec![cert.cert.clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        &cfg,
    )
    .unwrap();
    let ep = h3::kernel_endpoint("127.0.0.1:0".parse().unwrap(), Some(scfg)).unwrap();
    let port = ep.local_addr().unwrap().port();
    let stats = Arc::new(H3ServerStats::default());
    tokio::spawn(h3::serve_h3(ep.clone(), Routes::new(), true, stats.clone()));

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/h3_support/aioquic_get.py"
    );
    let port_s = port.to_string();
    let out = tokio::task::spawn_blocking(move || {
        // `timeout` bounds the client whatever it does.
        Command::new("timeout")
            .args(["50", "python3", script, "127.0.0.1", &port_s])
            .args(["--resume", "/bytes/100000", "/", "/bytes/5"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aioquic client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "1 200 100000 no",
            "1 200 18 no",
            "1 200 5 no",
            "2 200 100000 yes"
        ],
        "{stdout}"
    );
    assert_eq!(stats.connections.load(Ordering::Relaxed), 2);
    assert_eq!(stats.requests.load(Ordering::Relaxed), 4);
    ep.close(0u32.into(), b"");
}

/// Kills the child when dropped (by its pid: it is ours).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synack_client_gets_from_an_aioquic_server_and_resumes_in_0rtt() {
    use std::io::BufRead;
    if !have_aioquic() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("synack-aioquic-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = SelfSigned::for_addr("127.0.0.1".parse().unwrap()).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/h3_support/aioquic_serve.py"
    );
    let mut child = Child(
        // Not under `timeout`: killing that would leave the server running; this guard kills
        // the server itself when the test ends, however it ends.
        Command::new("python3")
            .arg(script)
            .arg(&cert_path)
            .arg(&key_path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("aioquic's server says where it listens");
    let port: u16 = first
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tls = TlsClientConfig {
        verification: CertVerification::ca_pem(cert.cert_pem.as_bytes()).unwrap(),
    };
    let config = h3::client_config(&tls, true).unwrap();
    let check = |r: &synack_http::h3::H3Response, n: usize| {
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), n);
        assert!(r
            .body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(i as u64)));
    };
    let limit = std::time::Duration::from_secs(20);
    // The first visit: three GETs at once on one connection.
    let ep = h3::kernel_endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let client = std::sync::Arc::new(H3Client::new(ep.clone(), config.clone(), true));
    let mut set = tokio::task::JoinSet::new();
    for n in [100_000usize, 1, 5000] {
        let c = client.clone();
        set.spawn(async move { (n, c.get(addr, "127.0.0.1", &format!("/bytes/{n}")).await) });
    }
    while let Some(r) = set.join_next().await {
        let (n, r) = r.unwrap();
        let r = r.unwrap_or_else(|e| panic!("GET /bytes/{n}: {e}"));
        assert!(!r.early);
        check(&r, n);
    }
    let s = client.stats();
    assert_eq!(
        (
            s.connections.load(Ordering::Relaxed),
            s.requests.load(Ordering::Relaxed)
        ),
        (1, 3)
    );
    // Let the session ticket arrive, then close.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    client.close().await;
    let _ = tokio::time::timeout(limit, ep.wait_idle()).await;

    // The return visit: a new endpoint with the same configuration (its session store)
    // resumes, and the GET goes in 0-RTT; aioquic accepts it.
    let ep2 = h3::kernel_endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let back = H3Client::new(ep2.clone(), config, true);
    let r = tokio::time::timeout(limit, back.get(addr, "127.0.0.1", "/bytes/777"))
        .await
        .expect("in time")
        .unwrap();
    check(&r, 777);
    // (Whether the GET itself left before the handshake ended is a race on loopback; that
    // the connection offered 0-RTT and aioquic accepted it is not.)
    // Wait for the handshake's verdict on 0-RTT.
    for _ in 0..100 {
        if back.stats().zero_rtt_accepted.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s = back.stats();
    assert_eq!(
        (
            s.connections.load(Ordering::Relaxed),
            s.zero_rtt_attempted.load(Ordering::Relaxed),
            s.zero_rtt_accepted.load(Ordering::Relaxed),
            s.retried.load(Ordering::Relaxed)
        ),
        (1, 1, 1, 0)
    );
    back.close().await;
    let _ = tokio::time::timeout(limit, ep2.wait_idle()).await;
    drop(child);
    // The server is gone; its last lines may still be on their way from the reader thread:
    // read until it sees the end of the pipe and hangs up.
    let mut requests = Vec::new();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(20)) {
        requests.push(l);
    }
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(
        requests.contains(&"request /bytes/777".to_owned()),
        "{requests:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
