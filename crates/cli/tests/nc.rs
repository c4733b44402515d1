//! `synack listen`, `synack connect` and `synack serve` over TUN, against the kernel, in a
//! network namespace each test makes (and removes): their data, and their captures, which
//! can be read while they run and are whole after SIGINT or SIGTERM. Needs root; skips with a
//! message otherwise unless CI=true.
//!
//! Nothing here sleeps: each step waits for the event itself (a line a program prints, a
//! change of the capture file, a process ending), with a bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use synack_stack::pcap::PcapReader;
use synack_wire::{IpProtocol, IpRepr, TcpFlags, TcpRepr};

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(20);

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

/// tshark, or `None` (with a message) when it is not installed and CI is not set.
fn tshark(test: &str) -> Option<&'static str> {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => Some("tshark"),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: tshark is not installed, and CI=true requires it");
            }
            eprintln!("skipping the tshark part of {test}: tshark is not installed");
            None
        }
    }
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
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A child process, killed if the test ends before it does.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        Proc(Some(cmd.spawn().expect("spawn")))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Whether it is still running.
    fn running(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_none()
    }

    /// Sends it a signal (`ip netns exec` runs the program in its own process: the pid is
    /// the program's).
    fn signal(&mut self, sig: libc::c_int) {
        let pid = self.child().id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// Waits (at most `STEP`) for it to end.
    fn wait(&mut self) -> ExitStatus {
        let mut child = self.0.take().expect("running");
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(STEP) {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                // SAFETY: as in `signal`; the waiting thread reaps it.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("process {pid} did not end within {STEP:?}");
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lines a child writes to a pipe, read by a thread of their own, waited for with a bound.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even when nobody listens any more: a closed pipe would make
            // the child's writes fail.
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `STEP`) for a line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let end = Instant::now() + STEP;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e:?}); lines: {:?}", self.seen),
            }
        }
    }
}

/// Watches a file for changes (inotify), to wait for it to grow without polling.
struct Watch {
    fd: OwnedFd,
}

impl Watch {
    fn new(path: &Path) -> Watch {
        // SAFETY: plain syscalls; the fd is checked and then owned.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0, "inotify_init1");
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let w = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c.as_ptr(),
                libc::IN_MODIFY | libc::IN_CLOSE_WRITE,
            )
        };
        assert!(w >= 0, "inotify_add_watch {}", path.display());
        Watch { fd }
    }

    /// Waits until the file changes or `until` passes; drains the events.
    fn wait(&self, until: Instant) {
        let left = until.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
        let mut buf = [0u8; 4096];
        // SAFETY: reads into our buffer from our non-blocking fd.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// The TCP segments of a capture: (source port, destination port, flags, payload length).
fn segments(data: &[u8]) -> Result<Vec<(u16, u16, TcpFlags, usize)>, String> {
    let packets = PcapReader::read_all(data).map_err(|e| e.to_string())?;
    let mut segs = Vec::new();
    for (_, p) in &packets {
        let (ip, payload) = IpRepr::parse(p).map_err(|e| format!("{e:?}"))?;
        // The kernel's own IPv6 chatter on the new device (router solicitations) is there too.
        if ip.protocol() != IpProtocol::Tcp {
            continue;
        }
        let tcp =
            TcpRepr::parse(payload, Some((ip.src(), ip.dst()))).map_err(|e| format!("{e:?}"))?;
        segs.push((tcp.src_port, tcp.dst_port, tcp.flags, tcp.payload.len()));
    }
    Ok(segs)
}

/// Whether the segments hold the 3-way handshake of a connection to `port`.
fn has_handshake(segs: &[(u16, u16, TcpFlags, usize)], port: u16) -> bool {
    let syn = segs
        .iter()
        .position(|s| s.1 == port && s.2 == TcpFlags::SYN);
    let synack = segs
        .iter()
        .position(|s| s.0 == port && s.2 == TcpFlags::SYN | TcpFlags::ACK);
    let ack = segs
        .iter()
        .position(|s| s.1 == port && s.2 == TcpFlags::ACK && s.3 == 0);
    matches!((syn, synack, ack), (Some(a), Some(b), Some(c)) if a < b && b < c)
}

/// Waits (at most `STEP`) until the capture at `path` parses whole and `done` holds for its
/// segments; returns them.
fn wait_capture(
    path: &Path,
    done: impl Fn(&[(u16, u16, TcpFlags, usize)]) -> bool,
) -> Vec<(u16, u16, TcpFlags, usize)> {
    let watch = Watch::new(path);
    let end = Instant::now() + STEP;
    loop {
        let data = std::fs::read(path).expect("read the capture");
        let last = match segments(&data) {
            Ok(s) if done(&s) => return s,
            Ok(s) => format!("{} segments: {s:?}", s.len()),
            Err(e) => format!("{} bytes: {e}", data.len()),
        };
        assert!(
            Instant::now() < end,
            "the capture {} never got there: {last}",
            path.display()
        );
        watch.wait(end);
    }
}

/// tshark reads the whole file: as many frames as synack's reader, no complaint.
fn assert_tshark_reads(bin: &str, file: &Path) {
    let data = std::fs::read(file).expect("read the capture");
    let frames = PcapReader::read_all(&data).expect("a whole capture").len();
    let out = Command::new(bin)
        .arg("-r")
        .arg(file)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {err}");
    assert!(!err.contains("cut short"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), frames);
}

fn capture_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("synack-cli-{}-{tag}.pcap", std::process::id()))
}

const BIN: &str = env!("CARGO_BIN_EXE_synack");

#[test]
fn listen_echoes_to_a_kernel_client() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("listen");
    let mut server = Proc::spawn(
        ns.cmd(BIN)
            .args(["listen", "--tun", "synack0", "--ip", "198.18.0.2/24", "-v"])
            .args(["--port", "7000", "--max-conns", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    // The device and its addresses are made before the listener: once it listens, the
    // kernel can connect.
    Lines::new(server.child().stderr.take().unwrap()).wait_for("listening on 198.18.0.2:7000");
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
    assert!(server.wait().success(), "one connection served, then done");
}

#[test]
fn connect_pipes_stdio_to_a_kernel_server() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("connect");
    let script = r#"
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 7001))
l.listen(1)
sys.stderr.write("ready\n")
sys.stderr.flush()
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
    let mut server = Proc::spawn(
        ns.cmd("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // The kernel listens on the wildcard address before the TUN device (and its address)
    // exists.
    Lines::new(server.child().stderr.take().unwrap()).wait_for("ready");
    let mut client = Proc::spawn(
        ns.cmd(BIN)
            .args(["connect", "--tun", "synack1", "--ip", "198.18.1.2/24"])
            .arg("198.18.1.1:7001")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = client.child().stdin.take().unwrap();
    stdin.write_all(b"from synack\n").unwrap();
    drop(stdin);
    let mut from_server = String::new();
    let mut out = server.child().stdout.take().unwrap();
    out.read_to_string(&mut from_server).unwrap();
    assert!(server.wait().success());
    assert_eq!(from_server, "from synack\n");
    let mut got = String::new();
    client
        .child()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "from the kernel\n");
    assert!(client.wait().success());
}

#[test]
fn a_listen_capture_is_readable_while_it_runs_and_whole_after_sigint() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("pcap-listen");
    let file = capture_path("listen");
    let _ = std::fs::remove_file(&file);
    let mut synack = Proc::spawn(
        ns.cmd(BIN)
            .args(["listen", "--tun", "synack2", "--ip", "198.18.2.2/24", "-v"])
            .args(["--port", "7002", "--pcap"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut log = Lines::new(synack.child().stderr.take().unwrap());
    log.wait_for("listening on 198.18.2.2:7002");
    // A kernel client gets its echo, then waits for synack to close the connection.
    let script = r#"
import socket, sys
s = socket.create_connection(("198.18.2.2", 7002), timeout=30)
s.sendall(b"captured\n")
d = b""
while not d.endswith(b"\n"):
    c = s.recv(4096)
    if not c:
        sys.exit("closed before the echo")
    d += c
print("echoed", flush=True)
while s.recv(4096):
    pass
print("closed", flush=True)
"#;
    let mut client = Proc::spawn(
        ns.cmd("python3")
            .args(["-c", script])
            .stdout(Stdio::piped()),
    );
    let mut client_out = Lines::new(client.child().stdout.take().unwrap());
    client_out.wait_for("echoed");
    // While synack runs, the capture holds the handshake and the data both ways.
    let live = wait_capture(&file, |s| {
        has_handshake(s, 7002)
            && s.iter().any(|x| x.1 == 7002 && x.3 == 9)
            && s.iter().any(|x| x.0 == 7002 && x.3 == 9)
    });
    assert!(synack.running(), "synack still runs");
    if let Some(bin) = tshark("a_listen_capture_is_readable_while_it_runs") {
        assert_tshark_reads(bin, &file);
    }
    // Ctrl-C: synack closes the connection, writes out the capture and exits as a program
    // stopped by SIGINT does.
    synack.signal(libc::SIGINT);
    let status = synack.wait();
    assert_eq!(status.code(), Some(130), "{status}");
    client_out.wait_for("closed");
    assert!(client.wait().success());
    let data = std::fs::read(&file).unwrap();
    let all = segments(&data).expect("the capture parses whole");
    assert!(has_handshake(&all, 7002), "{all:?}");
    assert_eq!(&all[..live.len()], &live[..], "what was there stays");
    // The close after the signal is in it too: synack's FIN, the kernel's.
    assert!(
        all.iter()
            .any(|s| s.0 == 7002 && s.2.contains(TcpFlags::FIN)),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|s| s.1 == 7002 && s.2.contains(TcpFlags::FIN)),
        "{all:?}"
    );
    if let Some(bin) = tshark("a_listen_capture_is_readable_while_it_runs_and_whole_after_sigint") {
        assert_tshark_reads(bin, &file);
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_connect_capture_is_whole_after_sigterm() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("pcap-connect");
    let file = capture_path("connect");
    let _ = std::fs::remove_file(&file);
    let script = r#"
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 7003))
l.listen(1)
sys.stderr.write("ready\n")
sys.stderr.flush()
l.settimeout(30)
c, _ = l.accept()
c.settimeout(30)
c.sendall(b"hello\n")
while c.recv(4096):
    pass
"#;
    let mut server = Proc::spawn(
        ns.cmd("python3")
            .args(["-c", script])
            .stderr(Stdio::piped()),
    );
    Lines::new(server.child().stderr.take().unwrap()).wait_for("ready");
    let mut synack = Proc::spawn(
        ns.cmd(BIN)
            .args(["connect", "--tun", "synack3", "--ip", "198.18.3.2/24", "-v"])
            .arg("--pcap")
            .arg(&file)
            .arg("198.18.3.1:7003")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    // Standard input stays open: synack would run until the server closes.
    let _stdin = synack.child().stdin.take().unwrap();
    Lines::new(synack.child().stdout.take().unwrap()).wait_for("hello");
    let live = wait_capture(&file, |s| {
        has_handshake(s, 7003) && s.iter().any(|x| x.0 == 7003 && x.3 == 6)
    });
    assert!(synack.running());
    synack.signal(libc::SIGTERM);
    let status = synack.wait();
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(
        server.wait().success(),
        "the kernel saw the connection close"
    );
    let all = segments(&std::fs::read(&file).unwrap()).expect("the capture parses whole");
    assert_eq!(&all[..live.len()], &live[..]);
    assert!(all
        .iter()
        .any(|s| s.1 == 7003 && s.2.contains(TcpFlags::FIN)));
    if let Some(bin) = tshark("a_connect_capture_is_whole_after_sigterm") {
        assert_tshark_reads(bin, &file);
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_serve_capture_is_readable_while_it_runs_and_whole_after_sigint() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("pcap-serve");
    let file = capture_path("serve");
    let _ = std::fs::remove_file(&file);
    let mut synack = Proc::spawn(
        ns.cmd(BIN)
            .args([
                "serve",
                "--tun",
                "synack4",
                "--ip",
                "198.18.4.2/24",
                "--pcap",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut log = Lines::new(synack.child().stderr.take().unwrap());
    log.wait_for("listening on http://198.18.4.2:80");
    // One request with a kernel client, connection closed by the client.
    let script = r#"
import socket
s = socket.create_connection(("198.18.4.2", 80), timeout=30)
s.sendall(b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    d += c
assert d.startswith(b"HTTP/1.1 200"), d[:40]
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
    let live = wait_capture(&file, |s| {
        has_handshake(s, 80) && s.iter().filter(|x| x.2.contains(TcpFlags::FIN)).count() == 2
    });
    assert!(synack.running());
    synack.signal(libc::SIGINT);
    assert!(synack.wait().success());
    let all = segments(&std::fs::read(&file).unwrap()).expect("the capture parses whole");
    assert_eq!(&all[..live.len()], &live[..]);
    if let Some(bin) = tshark("a_serve_capture_is_readable_while_it_runs_and_whole_after_sigint") {
        assert_tshark_reads(bin, &file);
    }
    let _ = std::fs::remove_file(&file);
}
