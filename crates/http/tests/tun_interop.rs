//! Interop over a TUN device in a network namespace each test makes (root needed: skipped
//! with a message otherwise, failed when CI=true): curl and h2load/wrk against synack's
//! server, and synack's client against nginx on the kernel's TCP.
//!
//! In the namespace, the TUN device's kernel side is 198.18.0.1/24 and synack's stack is
//! 198.18.0.2. Every external tool runs under `timeout`, and every load is bounded.

mod netns;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use netns::{have_tool, privileged, Netns};
use synack_http::routes::Routes;
use synack_http::{serve, Client, ClientConfig, ServerConfig, SynackConnector};
use synack_stack::net::nc::{self, TunOpts};
use synack_stack::net::{Stack, TcpListener};

const KERNEL: &str = "198.18.0.1";
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

/// curl fetches three URLs in one invocation from synack's server: one connection
/// (`num_connects` 1, then 0, 0) and the `Keep-Alive` header in every response.
#[test]
fn curl_reuses_one_connection_to_the_synack_server() {
    let test = "curl_reuses_one_connection_to_the_synack_server";
    if !privileged(test) || !have_tool("curl", &["--version"], test) {
        return;
    }
    let ns = Netns::new("curl");
    let name = ns.name.clone();
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack("synhttp0");
            let l = TcpListener::bind(&stack, (OURS.parse::<std::net::IpAddr>().unwrap(), 80))
                .await
                .unwrap();
            let config = ServerConfig {
                keepalive_header: true,
                keepalive_timeout: Duration::from_secs(5),
                keepalive_requests: 100,
                ..ServerConfig::default()
            };
            let srv = serve(l, config, Routes::new());
            let ns = Netns { name };
            let mut c = ns.command(30, "curl");
            c.args(["-sS", "-D", "-", "-w", "connects=%{num_connects}\\n"]);
            for path in ["/", "/bytes/100000", "/delay/10"] {
                c.arg(format!("http://{OURS}{path}"))
                    .args(["-o", "/dev/null"]);
            }
            let out = run(c).await;
            std::mem::forget(ns); // the namespace is deleted by the outer value
            let stdout = text(&out.stdout);
            assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
            let connects: Vec<&str> = stdout
                .lines()
                .filter_map(|l| l.strip_prefix("connects="))
                .collect();
            assert_eq!(connects, ["1", "0", "0"], "{stdout}");
            for max in [99, 98, 97] {
                let h = format!("keep-alive: timeout=5, max={max}");
                assert!(stdout.to_ascii_lowercase().contains(&h), "{h} in\n{stdout}");
            }
            assert_eq!(
                stdout
                    .to_ascii_lowercase()
                    .matches("connection: keep-alive")
                    .count(),
                3
            );
            let stats = srv.shutdown(Duration::from_secs(10)).await;
            assert_eq!((stats.connections, stats.requests), (1, 3));
            assert_eq!(stats.errors, 0);
            stack.wait_idle(Duration::from_secs(5)).await;
        })
    });
}

/// h2load (HTTP/1.1, 2000 requests over 8 connections) and wrk (2 s, 8 connections) against
/// synack's server: no error, no failed request, every connection kept alive.
#[test]
fn h2load_and_wrk_against_the_synack_server() {
    let test = "h2load_and_wrk_against_the_synack_server";
    if !privileged(test) {
        return;
    }
    let h2load = have_tool("h2load", &["--version"], test);
    let wrk = have_tool("wrk", &["-v"], test) || Command::new("wrk").output().is_ok();
    if !h2load && !wrk {
        return;
    }
    let ns = Netns::new("load");
    let name = ns.name.clone();
    ns.run(move || {
        runtime().block_on(async move {
            let stack = open_stack("synhttp1");
            let l = TcpListener::bind(&stack, (OURS.parse::<std::net::IpAddr>().unwrap(), 80))
                .await
                .unwrap();
            let srv = serve(l, ServerConfig::default(), Routes::new());
            let ns = Netns { name };
            if h2load {
                let mut c = ns.command(120, "h2load");
                c.args(["--h1", "-n", "2000", "-c", "8", "-t", "1"])
                    .arg(format!("http://{OURS}/bytes/512"));
                let out = run(c).await;
                let s = text(&out.stdout);
                assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
                eprintln!("{s}");
                assert!(
                    s.contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"),
                    "{s}"
                );
                assert!(s.contains("status codes: 2000 2xx"), "{s}");
                let st = srv.stats();
                assert_eq!(st.connections, 8, "one connection per h2load client");
                assert_eq!(st.requests, 2000);
                assert_eq!(st.errors, 0);
            }
            if wrk {
                let before = srv.stats();
                let mut c = ns.command(60, "wrk");
                c.args(["-t", "2", "-c", "8", "-d", "2s"])
                    .arg(format!("http://{OURS}/"));
                let out = run(c).await;
                let s = text(&out.stdout);
                assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
                eprintln!("{s}");
                assert!(!s.contains("Socket errors"), "{s}");
                assert!(!s.contains("Non-2xx"), "{s}");
                let st = srv.stats();
                // wrk reconnects only when the server closes: after each connection's 1000th
                // request (keepalive_requests). It stops after 2 s by dropping its 8
                // connections, possibly with requests in flight: the server counts those (at
                // most 8) as client aborts, never as errors.
                let new = st.connections - before.connections;
                let by_max = st.closed_max_requests - before.closed_max_requests;
                let by_wrk = st.closed_by_peer - before.closed_by_peer;
                let torn = st.aborted_by_peer - before.aborted_by_peer;
                assert_eq!(st.errors, before.errors, "{st:?}");
                assert!(torn <= 8, "{st:?}");
                assert!(by_max > 0, "{st:?}");
                assert!(
                    new >= 8 && new - 8 <= by_max + by_wrk + torn,
                    "{new} connections, {st:?}"
                );
                assert!(st.requests - before.requests > 100, "{st:?}");
            }
            std::mem::forget(ns);
            srv.shutdown(Duration::from_secs(10)).await;
            stack.wait_idle(Duration::from_secs(5)).await;
        })
    });
}

/// Starts nginx in the namespace with its own configuration in `dir`: `keepalive_timeout
/// 2s; keepalive_requests 5;` on the kernel side of the TUN device.
fn start_nginx(ns: &Netns, dir: &std::path::Path) -> Child {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         keepalive_timeout 2s;\n  keepalive_requests 5;\n\
         server {{\n    listen {KERNEL}:8080;\n    location / {{ return 200 \"ok $request_uri\\n\"; }}\n  }}\n}}\n"
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
        .stderr(Stdio::piped());
    c.spawn().expect("start nginx")
}

fn stop(child: &mut Child) {
    // `ip netns exec` and `timeout` pass SIGTERM on to nginx, whose master then stops its
    // worker.
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

/// How often the waits below look.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds, for at most `limit`, and returns whether it did. It looks every
/// 10 ms: these are events outside this process with nothing to block on (nginx accepting,
/// exiting, writing its log), so the wait is a bounded poll of the event itself.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] in async code, without blocking the runtime.
async fn wait_until_async(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether synack holds a connection to `to` that the peer has not closed (ESTABLISHED).
fn open_to(stack: &Stack, to: SocketAddr) -> bool {
    stack.with_interface(|i| {
        let ep = i.tcp();
        ep.connections()
            .filter_map(|id| ep.conn(id))
            .any(|c| c.tuple().remote == to && c.state() == synack_tcp::State::Established)
    })
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// synack's client against nginx (`keepalive_timeout 2s; keepalive_requests 5`): 12
/// requests back to back take 3 connections (5 + 5 + 2); after 3 s idle nginx has closed the
/// last one, so 4 more take a 4th; after 3 s more, one takes a 5th. No request is lost, and
/// nginx logged every one.
#[test]
fn synack_client_against_nginx_keepalive_limits() {
    let test = "synack_client_against_nginx_keepalive_limits";
    if !privileged(test) || !have_tool("nginx", &["-v"], test) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("synack-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ns = Netns::new("nginx");
    let name = ns.name.clone();
    let d = dir.clone();
    let result = ns.run(move || {
        runtime().block_on(async move {
            // The TUN device first: nginx listens on its kernel-side address.
            let stack = open_stack("synhttp2");
            let ns = Netns { name };
            let mut nginx = start_nginx(&ns, &d);
            std::mem::forget(ns);
            let to: SocketAddr = format!("{KERNEL}:8080").parse().unwrap();
            // Wait until nginx accepts (kernel socket, inside the namespace).
            if !wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok()
            }) {
                stop(&mut nginx);
                let log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
                panic!("nginx did not start:\n{log}");
            }
            let before = count_lines(&d.join("access.log"));
            let client = Client::new(SynackConnector::new(&stack), ClientConfig::default());
            let mut got = Vec::new();
            let fetch = |n: usize, tag: &'static str| {
                let client = client.clone();
                async move {
                    let mut v = Vec::new();
                    for i in 0..n {
                        let url = format!("http://{KERNEL}:8080/{tag}/{i}");
                        let r = client
                            .get(&url)
                            .await
                            .unwrap_or_else(|e| panic!("{url}: {e}"));
                        assert_eq!(r.status(), 200);
                        assert_eq!(r.body().as_ref(), format!("ok /{tag}/{i}\n").as_bytes());
                        v.push(
                            r.extensions()
                                .get::<synack_http::RequestInfo>()
                                .unwrap()
                                .clone(),
                        );
                    }
                    v
                }
            };
            // nginx closes an idle connection after its keepalive_timeout (2 s): wait for that
            // FIN (bounded), rather than for a guess at when it comes.
            let nginx_idle_close = || async {
                assert!(
                    wait_until_async(Duration::from_secs(10), || !open_to(&stack, to)).await,
                    "nginx kept the idle connection open"
                );
            };
            got.extend(fetch(12, "a").await);
            assert_eq!(client.metrics().connections_opened, 3, "5 + 5 + 2");
            nginx_idle_close().await;
            got.extend(fetch(4, "b").await);
            assert_eq!(client.metrics().connections_opened, 4);
            nginx_idle_close().await;
            got.extend(fetch(1, "c").await);
            let m = client.metrics();
            let conns: Vec<u64> = got.iter().map(|i| i.connection).collect();
            drop(client);
            stack.wait_idle(Duration::from_secs(5)).await;
            // Wait until nginx has logged the 17 requests (it writes in its own time).
            let log = d.join("access.log");
            wait_until_async(Duration::from_secs(10), || count_lines(&log) - before >= 17).await;
            let logged = count_lines(&log) - before;
            stop(&mut nginx);
            (m, conns, logged)
        })
    });
    let (m, conns, logged) = result;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        conns,
        [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 4, 4, 4, 4, 5],
        "connection of each request"
    );
    assert_eq!(m.connections_opened, 5);
    assert_eq!(m.requests, 17);
    assert_eq!(m.responses, 17);
    assert_eq!(m.failures, 0);
    assert_eq!(
        m.retired_by_server, 2,
        "Connection: close on each 5th response"
    );
    assert_eq!(
        m.peer_closed, 2,
        "nginx's idle closes, noticed before reuse"
    );
    assert_eq!(logged, 17, "nginx logged every request once");
}

fn count_lines(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}
