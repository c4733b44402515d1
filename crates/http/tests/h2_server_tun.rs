//! synack's HTTP/2 server on synack's TCP over a TUN device, in a network namespace each
//! test makes (root needed: skipped with a message otherwise, failed when CI=true): h2load
//! with 20000 requests over 4 connections, 50 streams each, no error; nghttp shows the
//! SETTINGS; curl with prior knowledge, and curl --http2 -k over TLS with three URLs on one
//! connection.
//!
//! In the namespace, the TUN device's kernel side is 198.18.0.1/24 and synack's stack is
//! 198.18.0.2. Every tool runs under `timeout`; every load is bounded.

mod netns;

use std::net::IpAddr;
use std::process::{Command, Output};
use std::time::Duration;

use netns::{have_tool, privileged, Netns};
use synack_http::routes::Routes;
use synack_http::tls::TlsServerConfig;
use synack_http::{serve, ServerConfig};
use synack_stack::net::nc::{self, TunOpts};
use synack_stack::net::{Stack, TcpListener};

const OURS: &str = "198.18.0.2";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open_stack(dev: &str) -> Stack {
    nc::open_stack(&TunOpts::new(dev, format!("{OURS}/24").parse().unwrap()))
        .expect("TUN device and stack")
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run the tool")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ours() -> IpAddr {
    OURS.parse().unwrap()
}

/// h2c over TUN: h2load (20000 requests, 4 connections, 50 streams at once each: no error,
/// 4 connections), nghttp (the SETTINGS synack sent, two URLs on one connection) and curl
/// with prior knowledge.
#[test]
fn h2load_nghttp_and_curl_against_the_synack_server_over_tun() {
    let test = "h2load_nghttp_and_curl_against_the_synack_server_over_tun";
    if !privileged(test) {
        return;
    }
    let h2load = have_tool("h2load", &["--version"], test);
    let nghttp = have_tool("nghttp", &["--version"], test);
    let curl = have_tool("curl", &["--version"], test);
    let ns = Netns::new("h2c");
    let name = ns.name.clone();
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack("synh2c0");
            let l = TcpListener::bind(&stack, (ours(), 80)).await.unwrap();
            let config = ServerConfig {
                h2c: true,
                keepalive_requests: 100_000,
                ..ServerConfig::default()
            };
            let srv = serve(l, config, Routes::new());
            let ns = Netns { name };
            if h2load {
                let mut c = ns.command(120, "h2load");
                c.args(["-n", "20000", "-c", "4", "-m", "50"])
                    .arg(format!("http://{OURS}/"));
                let out = run(c).await;
                let s = text(&out.stdout);
                eprintln!("{s}");
                assert!(
                    s.contains("requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout"),
                    "{s}\n{}",
                    text(&out.stderr)
                );
                let st = srv.stats();
                assert_eq!((st.h2_connections, st.requests), (4, 20000), "{st:?}");
                assert_eq!(st.errors, 0);
            }
            let before = srv.stats();
            if nghttp {
                let mut c = ns.command(30, "nghttp");
                c.args(["-nv", &format!("http://{OURS}/"), &format!("http://{OURS}/bytes/100000")]);
                let out = run(c).await;
                let s = text(&out.stdout);
                assert!(out.status.success(), "{s}{}", text(&out.stderr));
                assert!(s.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):128]"), "{s}");
                assert!(s.contains("[SETTINGS_INITIAL_WINDOW_SIZE(0x04):1048576]"), "{s}");
                assert_eq!(s.matches(":status: 200").count(), 2, "{s}");
                let st = srv.stats();
                assert_eq!(st.h2_connections - before.h2_connections, 1);
                assert_eq!(st.h2_streams - before.h2_streams, 2);
            }
            if curl {
                let mut c = ns.command(30, "curl");
                c.args(["-sS", "--http2-prior-knowledge", "-w", "%{http_version} %{num_connects}\n", "-o", "/dev/null"])
                    .arg(format!("http://{OURS}/bytes/100000"));
                let out = run(c).await;
                assert_eq!(text(&out.stdout), "2 1\n", "{}", text(&out.stderr));
            }
            std::mem::forget(ns);
            let st = srv.shutdown(Duration::from_secs(10)).await;
            assert_eq!((st.errors, st.goaway_errors), (0, 0), "{st:?}");
            stack.wait_idle(Duration::from_secs(5)).await;
        })
    });
}

/// TLS over TUN: curl --http2 -k fetches three URLs on one connection (num_connects 1, 0,
/// 0), each over HTTP/2; the server counts one handshake, ALPN h2.
#[test]
fn curl_http2_over_tls_over_tun_uses_one_connection() {
    let test = "curl_http2_over_tls_over_tun_uses_one_connection";
    if !privileged(test) || !have_tool("curl", &["--version"], test) {
        return;
    }
    let ns = Netns::new("h2tls");
    let name = ns.name.clone();
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack("synh2t0");
            let l = TcpListener::bind(&stack, (ours(), 443)).await.unwrap();
            let (tls, _cert) = TlsServerConfig::self_signed(ours()).unwrap();
            let config = ServerConfig {
                tls: Some(tls),
                ..ServerConfig::default()
            };
            let srv = serve(l, config, Routes::new());
            let ns = Netns { name };
            let mut c = ns.command(30, "curl");
            c.args([
                "-sS",
                "-k",
                "--http2",
                "-w",
                "%{http_version} %{num_connects}\n",
            ]);
            for path in ["/", "/bytes/200000", "/delay/10"] {
                c.args(["-o", "/dev/null"])
                    .arg(format!("https://{OURS}{path}"));
            }
            let out = run(c).await;
            std::mem::forget(ns);
            assert_eq!(
                text(&out.stdout),
                "2 1\n2 0\n2 0\n",
                "{}",
                text(&out.stderr)
            );
            let st = srv.shutdown(Duration::from_secs(10)).await;
            assert_eq!(
                (st.tls_handshakes, st.alpn_h2, st.h2_streams),
                (1, 1, 3),
                "{st:?}"
            );
            assert_eq!(st.errors, 0);
            stack.wait_idle(Duration::from_secs(5)).await;
        })
    });
}
