//! Interop: aioquic's HTTP/3 client (PyPI `aioquic`, driven by `h3_support/aioquic_get.py`)
//! against synack's HTTP/3 server on a kernel UDP socket on 127.0.0.1: three GETs as streams
//! of one QUIC connection, byte counts exact, then a second connection that resumes the
//! session and sends its GET in 0-RTT, which the server accepts. Skipped with a message when
//! python3 or aioquic is missing, failed when CI=true.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use synack_http::h3::{self, H3Config, H3ServerStats};
use synack_http::routes::Routes;
use synack_http::tls::SelfSigned;

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
