//! `synack get` speaking HTTP/2 to nginx on the kernel's loopback: with prior knowledge
//! (`--http2`, nginx `listen ... http2`) and by ALPN over TLS (`listen ... ssl http2`, a
//! self-signed certificate made with openssl), with `-k` and with `--cacert`; several URLs
//! go as streams of one connection, which `--stats` and nginx's access log (`$connection`)
//! both say. nginx or openssl missing: skipped with a message, failed when CI=true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn have(prog: &str, args: &[&str], test: &str) -> bool {
    let ok = Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(!ci(), "{test} needs {prog} (CI=true: it must run)");
        eprintln!("skipping {test}: {prog} is not installed");
    }
    ok
}

fn synack(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_synack"))
        .args(args)
        .output()
        .expect("run synack")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        // nginx accepting and writing its log happen outside this process.
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Nginx {
    child: Child,
    dir: PathBuf,
    h2c: u16,
    tls: u16,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        let (h2c, tls) = (free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
             http {{\n  log_format conns '$connection $connection_requests $server_protocol \
             $server_port $request_uri';\n  access_log {d}/access.log conns;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{h2c} http2; location / {{ return 200 \"h2c $request_uri\\n\"; }} }}\n\
             server {{ listen 127.0.0.1:{tls} ssl http2; ssl_certificate {d}/cert.pem;\n\
               ssl_certificate_key {d}/key.pem;\n\
               location / {{ return 200 \"tls $request_uri\\n\"; }} }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("timeout")
            .args(["120", "nginx", "-c"])
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            child,
            dir: dir.to_owned(),
            h2c,
            tls,
        };
        let up = |p: u16| {
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], p));
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok()
        };
        if !wait_until(Duration::from_secs(20), || up(h2c) && up(tls)) {
            n.stop();
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx did not start:\n{log}");
        }
        n
    }

    /// Requests logged per connection, for `port`, once `n` lines in all are there.
    fn per_connection(&self, port: u16, n: usize) -> BTreeMap<u64, u64> {
        let path = self.dir.join("access.log");
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        wait_until(Duration::from_secs(10), || read().lines().count() >= n);
        let mut m = BTreeMap::new();
        for l in read().lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) == Some(&port.to_string().as_str()) {
                assert_eq!(f[2], "HTTP/2.0", "{l}");
                *m.entry(f[0].parse::<u64>().unwrap()).or_insert(0) += 1;
            }
        }
        m
    }

    fn stop(&mut self) {
        // SAFETY: signals our own child by its pid (`timeout` passes SIGTERM on to nginx).
        unsafe { kill(self.child.id() as i32, 15) };
        if !wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Nginx {
    /// Also when an assertion failed: no nginx outlives its test.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.stop();
        }
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// A JSON number field of the `--stats` line.
fn stat(json: &str, key: &str) -> u64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {json}"));
    json[at + key.len() + 3..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn get_speaks_http2_to_nginx_in_cleartext_and_over_tls() {
    let test = "get_speaks_http2_to_nginx_in_cleartext_and_over_tls";
    if !have("nginx", &["-v"], test) || !have("openssl", &["version"], test) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("synack-get-h2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            // Not CN=localhost: Debian's ssl-cert-snakeoil.pem (RSA, CN=localhost) sits in
            // /etc/ssl/certs, and a path through it fails on its key type, not as unknown.
            "/CN=synack get test",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let nginx = Nginx::start(&dir);

    // h2c: five URLs, five at once, one connection.
    let urls: Vec<String> = (0..5)
        .map(|i| format!("http://127.0.0.1:{}/p{i}", nginx.h2c))
        .collect();
    let mut args = vec![
        "get",
        "--kernel",
        "--http2",
        "--parallel",
        "5",
        "-v",
        "--stats",
    ];
    args.extend(urls.iter().map(String::as_str));
    let o = synack(&args);
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // The bodies in URL order, then the metrics.
    assert_eq!(
        lines[..5],
        ["h2c /p0", "h2c /p1", "h2c /p2", "h2c /p3", "h2c /p4"]
    );
    let json = lines[5];
    assert_eq!(stat(json, "connections_opened"), 1, "{json}");
    assert_eq!(stat(json, "h2_connections"), 1, "{json}");
    assert_eq!(stat(json, "h2_streams"), 5, "{json}");
    assert_eq!(stat(json, "goaways_received"), 0, "{json}");
    assert_eq!(stat(json, "tls_handshakes"), 0, "{json}");
    assert!(err.contains("; HTTP/2"), "{err}");
    assert!(err.contains("1 HTTP/2 connections, 5 streams"), "{err}");

    // TLS, -k: ALPN h2, two URLs, one connection, one TLS handshake.
    let base = format!("https://127.0.0.1:{}", nginx.tls);
    let (a, b) = (format!("{base}/k1"), format!("{base}/k2"));
    let o = synack(&["get", "--kernel", "-k", "-v", "--stats", &a, &b]);
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("tls /k1\ntls /k2\n"), "{out}");
    let json = out.lines().last().unwrap();
    assert_eq!(stat(json, "connections_opened"), 1, "{json}");
    assert_eq!(stat(json, "tls_handshakes"), 1, "{json}");
    assert_eq!(stat(json, "h2_streams"), 2, "{json}");
    assert!(err.contains("ALPN h2"), "{err}");

    // --cacert: the certificate as the only root, by name and by address.
    let ca = dir.join("cert.pem");
    let ca = ca.to_str().unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let base = format!("https://{host}:{}", nginx.tls);
        let urls = [
            format!("{base}/c1"),
            format!("{base}/c2"),
            format!("{base}/c3"),
        ];
        let mut args = vec![
            "get",
            "--kernel",
            "--cacert",
            ca,
            "--parallel",
            "3",
            "--stats",
        ];
        args.extend(urls.iter().map(String::as_str));
        let o = synack(&args);
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.starts_with("tls /c1\ntls /c2\ntls /c3\n"), "{out}");
        let json = out.lines().last().unwrap();
        assert_eq!(stat(json, "connections_opened"), 1, "{json}");
        assert_eq!(stat(json, "h2_streams"), 3, "{json}");
    }

    // The system's roots: refused, saying why and what to do.
    let o = synack(&["get", "--kernel", &a]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not connect: TLS handshake with 127.0.0.1: invalid peer certificate"),
        "{err}"
    );
    assert!(
        err.contains("--cacert FILE to trust its issuer, or -k"),
        "{err}"
    );
    // --http1.1 over TLS: ALPN http/1.1 (nginx logs HTTP/1.1, not counted below).
    let o = synack(&["get", "--kernel", "-k", "-v", "--http1.1", &a]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("HTTP/1.1 over TLS"));

    // nginx's log: the h2c run on one connection (5 streams); the TLS runs on one each.
    let h2c = nginx.per_connection(nginx.h2c, 5 + 2 + 6 + 1);
    assert_eq!(h2c.values().copied().collect::<Vec<_>>(), [5], "{h2c:?}");
    let path = dir.join("access.log");
    let tls_h2: Vec<u64> = {
        let mut m = BTreeMap::new();
        for l in std::fs::read_to_string(&path).unwrap().lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f[3] == nginx.tls.to_string() && f[2] == "HTTP/2.0" {
                *m.entry(f[0].to_owned()).or_insert(0u64) += 1;
            }
        }
        m.into_values().collect()
    };
    assert_eq!(tls_h2, [2, 3, 3], "streams per TLS connection");
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}
