//! `synack listen` and `synack connect` over TUN, against the kernel, in a network namespace
//! this test makes (and removes). Needs root; skips with a message otherwise unless CI=true.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn privileged() -> bool {
    // SAFETY-free check: root is uid 0 as `id -u` reports it.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if root && tun {
        return true;
    }
    let why = "synack listen/connect tests need root and /dev/net/tun";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: they must run)");
    }
    eprintln!("skipping: {why}");
    false
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("synack-cli-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        Netns(name)
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, prog]);
        c
    }

    /// Wait (bounded) until a kernel socket listens on `port` in the namespace.
    fn wait_listening(&self, port: u16) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.0, "ss", "-ltnH"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listens on {port}");
    }

    /// Wait (bounded) until `tun` exists with its address in the namespace.
    fn wait_for(&self, dev: &str, addr: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let out = Command::new("ip")
                .args(["-n", &self.0, "addr", "show", "dev", dev])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(addr) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{dev} with {addr} never appeared");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_synack");

#[test]
fn listen_echoes_to_a_kernel_client() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("listen");
    let _server = Kill(
        ns.cmd(BIN)
            .args(["listen", "--tun", "synack0", "--ip", "198.18.0.2/24"])
            .args(["--port", "7000", "--max-conns", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    ns.wait_for("synack0", "198.18.0.1");
    // A kernel client (python3's socket module, in the namespace) sends and reads the echo.
    let script = r#"
import socket, sys
s = socket.create_connection(("198.18.0.2", 7000), timeout=10)
s.sendall(b"hello through synack\n")
s.shutdown(socket.SHUT_WR)
d = b""
while True:
    c = s.recv(4096)
    if not c:
        break
    d += c
sys.stdout.write(d.decode())
"#;
    let out = ns
        .cmd("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello through synack\n"
    );
}

#[test]
fn connect_pipes_stdio_to_a_kernel_server() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("connect");
    let script = r#"
import socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 7001))
l.listen(1)
l.settimeout(20)
c, _ = l.accept()
c.settimeout(20)
c.sendall(b"from the kernel\n")
d = b""
while True:
    x = c.recv(4096)
    if not x:
        break
    d += x
print(d.decode(), end="")
"#;
    let server = ns
        .cmd("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The kernel listens on the wildcard address before the TUN device (and its address)
    // exists; wait until it does.
    ns.wait_listening(7001);
    let mut client = Kill(
        ns.cmd(BIN)
            .args(["connect", "--tun", "synack1", "--ip", "198.18.1.2/24"])
            .arg("198.18.1.1:7001")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = client.0.stdin.take().unwrap();
    stdin.write_all(b"from synack\n").unwrap();
    drop(stdin);
    let out = server.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from synack\n");
    let mut got = String::new();
    client
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "from the kernel\n");
    let status = client.0.wait().unwrap();
    assert!(status.success());
}
