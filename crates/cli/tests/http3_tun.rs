//! HTTP/3 over synack's UDP on a TUN device, in a network namespace the test makes and
//! removes (addresses in 198.18.0.0/15): `synack serve --tun --http3` answers the kernel's
//! QUIC clients (`synack get --kernel --http3`, and aioquic's, resuming in 0-RTT, when
//! installed), its capture decodes in tshark as QUIC with no malformed packet; and
//! `synack get --tun --http3` fetches from a kernel server. Needs root; skips with a message
//! otherwise, unless CI=true. `synack get --tun --http3` also fetches from aioquic's HTTP/3
//! server in the namespace, resuming in 0-RTT (when aioquic is installed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_synack");
const STEP: Duration = Duration::from_secs(20);

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn privileged() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root && std::path::Path::new("/dev/net/tun").exists() {
        return true;
    }
    assert!(
        !ci(),
        "the HTTP/3 TUN tests need root and /dev/net/tun (CI=true)"
    );
    eprintln!("skipping: the HTTP/3 TUN tests need root and /dev/net/tun");
    false
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("synack-h3-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let _ = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status();
        Netns(name)
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("timeout");
        c.args(["60", "ip", "netns", "exec", &self.0, prog]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A server in the namespace, stopped (SIGINT, then SIGKILL) when dropped.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(ns: &Netns, args: &[&str], ready: &str) -> Server {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.0, BIN]).args(args);
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start synack serve");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let _ = tx.send(l);
            }
        });
        let t0 = std::time::Instant::now();
        loop {
            match lines.recv_timeout(STEP) {
                Ok(l) if l.contains(ready) => break,
                Ok(_) if t0.elapsed() < STEP => {}
                r => panic!("the server did not say {ready:?}: {r:?}"),
            }
        }
        Server { child, lines }
    }

    /// SIGINT, then what it printed to the end.
    fn stop(self) -> String {
        // SAFETY: signals our own child (`ip netns exec` execs the program: same pid).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(STEP) {
            out.push(l);
        }
        out.join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_http3_over_tun_answers_kernel_clients_and_decodes_in_tshark() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("serve");
    let pcap = std::env::temp_dir().join(format!("synack-h3-{}.pcap", std::process::id()));
    let pcap_s = pcap.to_str().unwrap();
    let server = Server::start(
        &ns,
        &[
            "serve",
            "--tun",
            "sqh3s",
            "--ip",
            "198.18.20.2/24",
            "--port",
            "443",
            "--tls",
            "--http3",
            "--early-data",
            "-v",
            "--pcap",
            pcap_s,
        ],
        "HTTP/3 on udp://198.18.20.2:443",
    );
    let o = ns
        .cmd(BIN)
        .args(["get", "--kernel", "--http3", "-k", "-v", "--no-body"])
        .args(["https://198.18.20.2/", "https://198.18.20.2/bytes/1000000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("1000000 bytes") && err.contains("reused QUIC connection"),
        "{err}"
    );
    assert!(err.contains("2 requests on 1 QUIC connections"), "{err}");
    let mut conns = 1;
    let aioquic = Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if aioquic {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../http/tests/h3_support/aioquic_get.py"
        );
        let o = ns
            .cmd("python3")
            .args([
                script,
                "198.18.20.2",
                "443",
                "--resume",
                "/bytes/100000",
                "/",
            ])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            ["1 200 100000 no", "1 200 18 no", "2 200 100000 yes"],
            "{out}"
        );
        conns += 2;
    } else {
        assert!(!ci(), "aioquic is needed (CI=true)");
        eprintln!("skipping the aioquic part: python3 with aioquic is not installed");
    }
    let said = server.stop();
    assert!(
        said.contains(&format!("HTTP/3: {conns} QUIC connections")),
        "{said}"
    );
    match Command::new("tshark")
        .args(["-r", pcap_s, "-Y", "quic"])
        .output()
    {
        Ok(o) if o.status.success() => {
            let quic = String::from_utf8_lossy(&o.stdout);
            assert!(quic.lines().count() > 20, "{quic}");
            assert!(quic.contains("Initial"), "{quic}");
            let bad = Command::new("tshark")
                .args(["-r", pcap_s, "-Y", "_ws.malformed"])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&bad.stdout).trim(),
                "",
                "malformed packets"
            );
        }
        _ => {
            assert!(!ci(), "tshark is needed (CI=true)");
            eprintln!("skipping the tshark part: tshark is not installed");
        }
    }
    let _ = std::fs::remove_file(&pcap);
}

#[test]
fn get_http3_over_tun_fetches_from_a_kernel_server() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("get");
    let server = Server::start(
        &ns,
        &[
            "serve",
            "--kernel",
            "--listen",
            "0.0.0.0:443",
            "--tls",
            "--http3",
            "-v",
        ],
        "HTTP/3 on udp://",
    );
    let o = ns
        .cmd(BIN)
        .args([
            "get",
            "--tun",
            "sqh3g",
            "--ip",
            "198.18.21.2/24",
            "--http3",
            "-k",
            "-v",
        ])
        .args([
            "--no-body",
            "https://198.18.21.1/",
            "https://198.18.21.1/bytes/1000000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("1000000 bytes") && err.contains("reused QUIC connection"),
        "{err}"
    );
    assert!(err.contains("2 requests on 1 QUIC connections"), "{err}");
    let said = server.stop();
    assert!(said.contains("HTTP/3: 1 QUIC connections"), "{said}");
}

/// Kills the child (by its pid) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// synack's client over TUN against aioquic's HTTP/3 server on the kernel's UDP in the
/// namespace: a first connection, then a second that resumes and sends its GET in 0-RTT,
/// which aioquic accepts.
#[test]
fn get_http3_over_tun_from_an_aioquic_server_resumes_in_0rtt() {
    if !privileged() {
        return;
    }
    let aioquic = Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !aioquic {
        assert!(!ci(), "aioquic is needed (CI=true)");
        eprintln!("skipping: python3 with aioquic is not installed");
        return;
    }
    let ns = Netns::new("aioq");
    let dir = std::env::temp_dir().join(format!("synack-h3-aioq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = synack_http::tls::SelfSigned::for_addr("198.18.22.1".parse().unwrap()).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, &cert.cert_pem).unwrap();
    std::fs::write(&k, &cert.key_pem).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../http/tests/h3_support/aioquic_serve.py"
    );
    // On every address of the namespace: the TUN device's comes when synack makes it.
    let mut server = Killed(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "python3", script])
            .arg(&c)
            .arg(&k)
            .arg("0.0.0.0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    let url = |p: &str| format!("https://198.18.22.1:{port}{p}");
    let o = ns
        .cmd(BIN)
        .args(["get", "--tun", "sqh3a", "--ip", "198.18.22.2/24", "--http3"])
        .args(["--early-data", "--close", "-k", "-v", "--no-body"])
        .args([url("/bytes/100000"), url("/bytes/5")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let l: Vec<&str> = err.lines().collect();
    assert!(
        l[0].contains("(100000 bytes") && l[0].contains("new QUIC connection"),
        "{err}"
    );
    // Whether the GET left before the handshake ended is a race on a path this fast (the
    // line then says "sent in 0-RTT"); that the resumed connection offered 0-RTT and aioquic
    // accepted it is not.
    assert!(
        l[1].contains("(5 bytes") && l[1].contains("new QUIC connection"),
        "{err}"
    );
    assert!(
        err.contains("2 requests on 2 QUIC connections (1 tried 0-RTT, 1 accepted, 0 retried)"),
        "{err}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
