//! synack's client against nginx serving HTTP/2: in cleartext with prior knowledge (`listen
//! ... http2`) and over TLS (`listen ... ssl http2`, a self-signed certificate the test
//! makes, accepted with `InsecureAcceptAnyCertificate` and with it as the only root), on the
//! kernel's loopback and, as root, over TUN in a network namespace of the test's own. The
//! connection and stream counts are checked in nginx's access log (`$connection`,
//! `$connection_requests`): several URLs, one connection. nginx's `keepalive_requests`
//! sends a GOAWAY after N streams (RFC 9113 §6.8): every request is still logged once.
//!
//! nginx missing: skipped with a message, failed when CI=true. Everything runs under
//! `timeout`; nginx is stopped by its pid.
//!
//! A measurement (ignored by default: wall-clock requests per second, not an assertion),
//! HTTP/1.1 on 16 connections against HTTP/2 on one, in cleartext and over TLS:
//! ```text
//! cargo test --release -p synack-http --test h2_client_nginx -- --ignored --nocapture
//! ```
//! `SYNACK_RPS_REQUESTS` sets the requests per case (default 20000).

mod netns;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use netns::{have_tool, privileged, Netns};
use synack_http::{
    CertVerification, Client, ClientConfig, Connector, Http2ClientConfig, KernelConnector, Metrics,
    Protocol, RequestInfo, SynackConnector, TlsClientConfig,
};
use synack_stack::net::nc::{self, TunOpts};

/// The ports: h2c, TLS, h2c with `keepalive_requests 10`.
#[derive(Debug, Clone, Copy)]
struct Ports {
    h2c: u16,
    tls: u16,
    goaway: u16,
}

fn write_conf(dir: &Path, ip: &str, p: &Ports, root_user: bool) -> PathBuf {
    let d = dir.display();
    let user = if root_user { "user root;\n" } else { "" };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n{user}pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 128; }}\n\
         http {{\n  log_format conns '$connection $connection_requests $server_protocol \
         $server_port $request_method $request_uri';\n  access_log {d}/access.log conns;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         server {{ listen {ip}:{h2c} http2; location / {{ return 200 \"h2c $request_uri\\n\"; }} }}\n\
         server {{ listen {ip}:{tls} ssl http2; ssl_certificate {d}/cert.pem;\n\
           ssl_certificate_key {d}/key.pem; ssl_protocols TLSv1.2 TLSv1.3;\n\
           location / {{ return 200 \"tls $request_uri\\n\"; }} }}\n\
         server {{ listen {ip}:{goaway} http2; keepalive_requests 10;\n\
           location / {{ return 200 \"goaway $request_uri\\n\"; }} }}\n}}\n",
        h2c = p.h2c,
        tls = p.tls,
        goaway = p.goaway,
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// A certificate for `localhost` and 127.0.0.1 / 198.18.0.1, with its key, in `dir`.
fn make_cert(dir: &Path) -> String {
    let ck = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "198.18.0.1".to_owned(),
    ])
    .unwrap();
    let pem = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &pem).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    pem
}

fn spawn_nginx(mut c: Command, dir: &Path, conf: &Path) -> Child {
    c.arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("start nginx")
}

/// Waits until `cond` holds, for at most `limit`, looking every 10 ms: nginx accepting and
/// writing its log happen outside this process, with nothing to block on.
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

fn stop(child: &mut Child) {
    // SAFETY: signals our own child by its pid (SIGTERM: `timeout` passes it on).
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

/// nginx, stopped when dropped (also when an assertion failed).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            stop(&mut self.0);
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// One access-log line: connection serial, request number on it, protocol, port, method,
/// URI.
#[derive(Debug, Clone)]
struct Logged {
    connection: u64,
    nth: u64,
    protocol: String,
    port: u16,
    uri: String,
}

fn read_log(path: &Path) -> Vec<Logged> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Logged {
                connection: f.first()?.parse().ok()?,
                nth: f.get(1)?.parse().ok()?,
                protocol: f.get(2)?.to_string(),
                port: f.get(3)?.parse().ok()?,
                uri: f.get(5)?.to_string(),
            })
        })
        .collect()
}

/// Requests logged per nginx connection, for one port.
fn per_connection(log: &[Logged], port: u16) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    for l in log.iter().filter(|l| l.port == port) {
        *m.entry(l.connection).or_insert(0) += 1;
        assert_eq!(l.protocol, "HTTP/2.0", "{l:?}");
    }
    m
}

fn info(r: &http::Response<Bytes>) -> RequestInfo {
    r.extensions().get::<RequestInfo>().unwrap().clone()
}

/// `n` GETs of `base/{tag}{i}` at once; each must say `{word} /{tag}{i}`.
async fn fetch_concurrently(
    c: &Client,
    base: &str,
    tag: &str,
    word: &str,
    n: usize,
) -> Vec<RequestInfo> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (c, url) = (c.clone(), format!("{base}/{tag}{i}"));
        let expect = format!("{word} /{tag}{i}\n");
        set.spawn(async move {
            let r = c.get(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(r.status(), 200, "{url}");
            assert_eq!(r.body(), expect.as_bytes(), "{url}");
            info(&r)
        });
    }
    let mut v = Vec::new();
    while let Some(r) = set.join_next().await {
        v.push(r.unwrap());
    }
    v
}

/// What one run against nginx gave.
struct Run {
    h2c: Metrics,
    tls_insecure: Metrics,
    tls_root: Metrics,
    goaway: Metrics,
}

/// The client side: h2c (3 sequential + 10 concurrent URLs), TLS with `-k` and with the
/// certificate as the only root (5 + 5 each), and 25 at once against `keepalive_requests
/// 10`.
async fn exercise<C: Connector + Clone>(connector: C, ip: &str, p: &Ports, cert_pem: &str) -> Run {
    let prior = ClientConfig {
        http2: Http2ClientConfig {
            prior_knowledge: true,
            ..Http2ClientConfig::default()
        },
        ..ClientConfig::default()
    };
    let c = Client::new(connector.clone(), prior.clone());
    let base = format!("http://{ip}:{}", p.h2c);
    for i in 0..3 {
        let r = c.get(&format!("{base}/s{i}")).await.unwrap();
        assert_eq!(r.body(), format!("h2c /s{i}\n").as_bytes());
        let inf = info(&r);
        assert_eq!((inf.protocol, inf.connection), (Protocol::Http2, 1));
    }
    let infos = fetch_concurrently(&c, &base, "c", "h2c", 10).await;
    assert!(infos.iter().all(|i| i.connection == 1));
    let h2c = c.metrics();

    let tls = |verification| ClientConfig {
        tls: TlsClientConfig { verification },
        ..ClientConfig::default()
    };
    let mut tls_runs = Vec::new();
    for (verification, host) in [
        (CertVerification::InsecureAcceptAnyCertificate, ip),
        (
            CertVerification::ca_pem(cert_pem.as_bytes()).unwrap(),
            if ip == "127.0.0.1" { "localhost" } else { ip },
        ),
    ] {
        let c = Client::new(connector.clone(), tls(verification));
        let base = format!("https://{host}:{}", p.tls);
        let infos = fetch_concurrently(&c, &base, "t", "tls", 5).await;
        for i in 0..5 {
            let r = c.get(&format!("{base}/u{i}")).await.unwrap();
            assert_eq!(r.body(), format!("tls /u{i}\n").as_bytes());
            let inf = info(&r);
            assert!(inf.reused && inf.protocol == Protocol::Http2);
            assert_eq!(inf.tls.unwrap().alpn.as_deref(), Some("h2"));
        }
        assert!(infos.iter().all(|i| i.connection == 1));
        tls_runs.push(c.metrics());
    }

    let c = Client::new(connector, prior);
    let base = format!("http://{ip}:{}", p.goaway);
    fetch_concurrently(&c, &base, "g", "goaway", 25).await;
    let goaway = c.metrics();
    Run {
        h2c,
        tls_insecure: tls_runs[0],
        tls_root: tls_runs[1],
        goaway,
    }
}

fn check(run: &Run, log: &[Logged], p: &Ports) {
    // h2c: 13 requests, one connection, 13 streams.
    let m = &run.h2c;
    assert_eq!(
        (m.connections_opened, m.h2_connections, m.h2_streams),
        (1, 1, 13)
    );
    assert_eq!((m.responses, m.failures), (13, 0));
    let conns = per_connection(log, p.h2c);
    assert_eq!(
        conns.values().copied().collect::<Vec<_>>(),
        [13],
        "{conns:?}"
    );
    let nths: Vec<u64> = log
        .iter()
        .filter(|l| l.port == p.h2c)
        .map(|l| l.nth)
        .collect();
    assert_eq!(*nths.iter().max().unwrap(), 13);

    // TLS: each client, one connection and one TLS handshake for 10 requests.
    for m in [&run.tls_insecure, &run.tls_root] {
        assert_eq!(
            (m.connections_opened, m.tls_handshakes, m.h2_connections),
            (1, 1, 1)
        );
        assert_eq!((m.h2_streams, m.responses, m.failures), (10, 10, 0));
    }
    let conns = per_connection(log, p.tls);
    assert_eq!(
        conns.values().copied().collect::<Vec<_>>(),
        [10, 10],
        "{conns:?}"
    );

    // keepalive_requests 10: 25 at once take 3 connections (10 + 10 + 5); the streams above
    // each GOAWAY's last-stream-id were resent, and nginx logged each request once.
    let m = &run.goaway;
    assert_eq!((m.responses, m.failures), (25, 0));
    assert_eq!(m.connections_opened, 3, "{m:?}");
    assert_eq!(m.goaways_received, 2, "{m:?}");
    // Each send nginx did not process was resent (at most 15 + 5: a request may start after
    // the GOAWAY arrived and go straight to the next connection).
    assert_eq!(m.requests, 25 + m.retries_goaway, "{m:?}");
    assert!((1..=20).contains(&m.retries_goaway), "{m:?}");
    let conns = per_connection(log, p.goaway);
    assert_eq!(conns.values().copied().collect::<Vec<_>>(), [10, 10, 5]);
    let mut uris: Vec<&str> = log
        .iter()
        .filter(|l| l.port == p.goaway)
        .map(|l| l.uri.as_str())
        .collect();
    uris.sort();
    uris.dedup();
    assert_eq!(uris.len(), 25, "each URI once");
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synack-h2c-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn accepting(ip: &str, port: u16) -> bool {
    let to: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok()
}

#[test]
fn synack_client_against_nginx_h2c_and_tls_on_kernel_sockets() {
    let test = "synack_client_against_nginx_h2c_and_tls_on_kernel_sockets";
    if !have_tool("nginx", &["-v"], test) {
        return;
    }
    let dir = temp_dir("kernel");
    let pem = make_cert(&dir);
    let p = Ports {
        h2c: free_port(),
        tls: free_port(),
        goaway: free_port(),
    };
    let conf = write_conf(&dir, "127.0.0.1", &p, false);
    let mut c = Command::new("timeout");
    c.args(["120", "nginx"]);
    let mut nginx = Running(spawn_nginx(c, &dir, &conf));
    if !wait_until(Duration::from_secs(20), || {
        accepting("127.0.0.1", p.h2c) && accepting("127.0.0.1", p.tls)
    }) {
        stop(&mut nginx.0);
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not start:\n{log}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = rt.block_on(exercise(KernelConnector::new(), "127.0.0.1", &p, &pem));
    let log_path = dir.join("access.log");
    // 13 + 20 + 25 requests; nginx writes its log in its own time.
    wait_until(Duration::from_secs(10), || read_log(&log_path).len() >= 58);
    drop(nginx);
    let log = read_log(&log_path);
    check(&run, &log, &p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synack_client_against_nginx_h2c_and_tls_over_tun() {
    let test = "synack_client_against_nginx_h2c_and_tls_over_tun";
    if !privileged(test) || !have_tool("nginx", &["-v"], test) {
        return;
    }
    const KERNEL: &str = "198.18.0.1";
    let dir = temp_dir("tun");
    let pem = make_cert(&dir);
    let p = Ports {
        h2c: 8080,
        tls: 8443,
        goaway: 8081,
    };
    let conf = write_conf(&dir, KERNEL, &p, true);
    let ns = Netns::new("h2c");
    let name = ns.name.clone();
    let d = dir.clone();
    let ports = p;
    let (run, log) = ns.run(move || {
        let p = ports;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // The TUN device first: nginx listens on its kernel-side address.
            let stack = nc::open_stack(&TunOpts::new("synh2c0", "198.18.0.2/24".parse().unwrap()))
                .expect("TUN device and stack");
            let ns = Netns { name };
            let mut nginx = Running(spawn_nginx(ns.command(120, "nginx"), &d, &conf));
            std::mem::forget(ns);
            if !wait_until(Duration::from_secs(20), || {
                accepting(KERNEL, p.h2c) && accepting(KERNEL, p.tls)
            }) {
                stop(&mut nginx.0);
                let log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
                panic!("nginx did not start:\n{log}");
            }
            let run = exercise(SynackConnector::new(&stack), KERNEL, &p, &pem).await;
            stack.wait_idle(Duration::from_secs(5)).await;
            let log_path = d.join("access.log");
            wait_until(Duration::from_secs(10), || read_log(&log_path).len() >= 58);
            drop(nginx);
            (run, read_log(&log_path))
        })
    });
    drop(ns);
    check(&run, &log, &p);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `n` GETs of `url`, `lanes` at a time; requests per second.
async fn load(c: &Client, url: &str, n: usize, lanes: usize) -> f64 {
    // Warm up: the connections are open before the clock starts.
    let warm: Vec<_> = (0..lanes)
        .map(|_| {
            let (c, u) = (c.clone(), url.to_owned());
            tokio::spawn(async move { c.get(&u).await.unwrap() })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let t0 = std::time::Instant::now();
    let tasks: Vec<_> = (0..lanes)
        .map(|k| {
            let (c, u) = (c.clone(), url.to_owned());
            let mine = (n + lanes - 1 - k) / lanes;
            tokio::spawn(async move {
                for _ in 0..mine {
                    let r = c.get(&u).await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn requests_per_second_http1_pool_against_http2_streams() {
    let test = "requests_per_second_http1_pool_against_http2_streams";
    if !have_tool("nginx", &["-v"], test) {
        return;
    }
    let n: usize = std::env::var("SYNACK_RPS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = temp_dir("rps");
    make_cert(&dir);
    let p = Ports {
        h2c: free_port(),
        tls: free_port(),
        goaway: free_port(),
    };
    let h1 = free_port();
    let conf = write_conf(&dir, "127.0.0.1", &p, false);
    // An HTTP/1.1 server too, and no limit of requests per connection anywhere.
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "http {\n",
        &format!(
            "http {{\n  keepalive_requests 1000000000;\n  server {{ listen 127.0.0.1:{h1}; \
             location / {{ return 200 \"h1 $request_uri\\n\"; }} }}\n"
        ),
    );
    std::fs::write(&conf, text.replace("access_log", "access_log off; #")).unwrap();
    let mut c = Command::new("timeout");
    c.args(["600", "nginx"]);
    let nginx = Running(spawn_nginx(c, &dir, &conf));
    assert!(wait_until(Duration::from_secs(20), || {
        accepting("127.0.0.1", h1) && accepting("127.0.0.1", p.h2c) && accepting("127.0.0.1", p.tls)
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool16 = ClientConfig {
            pool: synack_http::PoolConfig {
                max_per_origin: 16,
                max_idle_per_origin: 16,
                ..synack_http::PoolConfig::default()
            },
            ..ClientConfig::default()
        };
        let prior = ClientConfig {
            http2: Http2ClientConfig {
                prior_knowledge: true,
                ..Http2ClientConfig::default()
            },
            ..ClientConfig::default()
        };
        let tls = ClientConfig {
            tls: TlsClientConfig {
                verification: CertVerification::InsecureAcceptAnyCertificate,
            },
            ..ClientConfig::default()
        };
        let h1_url = format!("http://127.0.0.1:{h1}/");
        let h2_url = format!("http://127.0.0.1:{}/", p.h2c);
        let tls_url = format!("https://127.0.0.1:{}/", p.tls);
        for (name, config, url, lanes) in [
            (
                "HTTP/1.1, 16 connections, 16 in flight",
                &pool16,
                &h1_url,
                16,
            ),
            (
                "HTTP/2 h2c, 1 connection, 16 in flight",
                &prior,
                &h2_url,
                16,
            ),
            (
                "HTTP/2 h2c, 1 connection, 100 in flight",
                &prior,
                &h2_url,
                100,
            ),
            (
                "HTTP/2 TLS, 1 connection, 100 in flight",
                &tls,
                &tls_url,
                100,
            ),
        ] {
            let c = Client::new(KernelConnector::new(), config.clone());
            let rps = load(&c, url, n, lanes).await;
            let m = c.metrics();
            println!(
                "{name:<42} {rps:>9.0} requests/s ({} connections, {} requests)",
                m.connections_opened, m.requests
            );
        }
        // hyper's HTTP/2 client alone, on one connection: what the pool and its counting
        // cost.
        let s = tokio::net::TcpStream::connect(("127.0.0.1", p.h2c))
            .await
            .unwrap();
        s.set_nodelay(true).unwrap();
        let (send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, http_body_util::Full<Bytes>>(hyper_util::rt::TokioIo::new(s))
                .await
                .unwrap();
        tokio::spawn(conn);
        let lanes = 100;
        let t0 = std::time::Instant::now();
        let tasks: Vec<_> = (0..lanes)
            .map(|k| {
                let (mut send, url) = (send.clone(), h2_url.clone());
                let mine = (n + lanes - 1 - k) / lanes;
                tokio::spawn(async move {
                    for _ in 0..mine {
                        let req = http::Request::get(&url)
                            .body(http_body_util::Full::new(Bytes::new()))
                            .unwrap();
                        let r = send.send_request(req).await.unwrap();
                        http_body_util::BodyExt::collect(r.into_body())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rps = n as f64 / t0.elapsed().as_secs_f64();
        println!(
            "{:<42} {rps:>9.0} requests/s",
            "hyper alone, h2c, 100 in flight"
        );
    });
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}
