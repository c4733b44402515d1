//! Network namespaces for the TUN tests, and the byte pattern they send.
//!
//! Every test makes its own namespace (`ip netns add synack-test-<pid>-<tag>`), runs its body
//! on a thread that joined it (`setns(CLONE_NEWNET)`; threads, runtimes and processes started
//! from that thread are inside it too), and deletes it when done, whether the body passed,
//! failed or panicked. Real packets never leave the namespace, and every address is in
//! 198.18.0.0/15 or 2001:2::/48 (benchmarking ranges, RFC 2544 and RFC 5180).
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether this process may make namespaces and TUN devices. When it may not, prints why and
/// returns false, so that the test passes as skipped; with `CI=true` it panics instead.
pub fn privileged(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root");
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("the ip command (iproute2)");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test} needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: it must run)");
    }
    eprintln!("skipping: {why}");
    false
}

/// Whether `prog` can be run; with `CI=true`, a missing tool fails the test.
pub fn have_tool(prog: &str, test: &str) -> bool {
    let ok = Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test} needs {prog} (CI=true: it must run)");
        }
        eprintln!("skipping part of {test}: {prog} is not installed");
    }
    ok
}

fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// A network namespace that exists as long as this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Makes `synack-test-<pid>-<tag>` with its loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("synack-test-{}-{tag}", std::process::id());
        // A namespace left by a crashed run of the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name])).expect("ip netns add");
        let ns = Netns { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"])).expect("lo up");
        // No duplicate address detection for the namespace's interfaces: a fresh IPv6 address
        // would stay "tentative" for a second or more, and the kernel would meanwhile pick its
        // link-local source or fail to connect.
        run(Command::new("ip")
            .args(["netns", "exec", &ns.name, "sh", "-c"])
            .arg(
                "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; \
             echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad",
            ))
        .expect("disable DAD");
        ns
    }

    /// A command run inside the namespace (`ip netns exec NAME prog`).
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// `ip -n NAME args...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut c = Command::new("ip");
        c.arg("-n").arg(&self.name).args(args);
        run(&mut c).expect("ip command");
    }

    /// Runs `f` on a new thread that joined the namespace, and returns what it returns (a
    /// panic in `f` is resumed here, after the thread is gone).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let h = std::thread::Builder::new()
            .name(format!("netns {}", self.name))
            .spawn(move || {
                enter(&path);
                f()
            })
            .expect("spawn");
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &str) {
    let f = File::open(path).expect("open the namespace");
    // SAFETY: setns with a valid namespace descriptor; it changes only this thread's network
    // namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// How often [`wait_until`] looks.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds, for at most `limit`, and returns whether it did. It looks every
/// 10 ms: this is for events outside this process that give nothing to block on (a port that
/// starts accepting, a process that exits, a capture file that gets written), so the wait is a
/// bounded poll of the event itself, never a guess at how long it takes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`], failing the test with `what` if `limit` passes first.
pub fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(wait_until(limit, cond), "{what}: not within {limit:?}");
}

/// Receives what another thread sends on `rx` (the signal that an event happened there), for
/// at most `limit`.
pub fn signalled<T>(what: &str, rx: &std::sync::mpsc::Receiver<T>, limit: Duration) -> T {
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: no signal within {limit:?} ({e})"))
}

/// The pattern: byte `i` of a stream is `i mod 251`, so a lost, repeated or shifted range
/// shows at once.
pub const PERIOD: usize = 251;

/// A buffer of the pattern starting at offset 0, a whole number of periods long (~1 MiB).
pub fn pattern_buf() -> Vec<u8> {
    (0..PERIOD * 4096).map(|i| (i % PERIOD) as u8).collect()
}

/// Writes `total` bytes of the pattern.
pub fn write_pattern(w: &mut impl Write, total: u64) -> io::Result<()> {
    write_pattern_range(w, 0, total)
}

/// Writes the pattern from stream offset `from` up to (not including) `to`.
pub fn write_pattern_range(w: &mut impl Write, from: u64, to: u64) -> io::Result<()> {
    let buf = pattern_buf();
    let (mut off, total) = (from, to);
    while off < total {
        let start = (off % PERIOD as u64) as usize;
        let n = ((buf.len() - start) as u64).min(total - off) as usize;
        w.write_all(&buf[start..start + n])?;
        off += n as u64;
    }
    Ok(())
}

/// Reads to the end, checking every byte against the pattern; returns how many came.
pub fn read_pattern(r: &mut impl Read) -> io::Result<u64> {
    let expect = pattern_buf();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(off);
        }
        check(&expect, off, &buf[..n])?;
        off += n as u64;
    }
}

/// Checks that `got`, found at stream offset `off`, is the pattern.
pub fn check(expect: &[u8], off: u64, got: &[u8]) -> io::Result<()> {
    let mut i = 0;
    while i < got.len() {
        let start = ((off + i as u64) % PERIOD as u64) as usize;
        let n = (expect.len() - start).min(got.len() - i);
        if got[i..i + n] != expect[start..start + n] {
            let bad = (0..n)
                .find(|&k| got[i + k] != expect[start + k])
                .unwrap_or(0);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("byte {} differs from the pattern", off + (i + bad) as u64),
            ));
        }
        i += n;
    }
    Ok(())
}

/// Async twins of the above, for synack's streams.
pub mod asynch {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    pub async fn write_pattern<W: AsyncWrite + Unpin>(w: &mut W, total: u64) -> io::Result<()> {
        write_pattern_range(w, 0, total).await
    }

    /// Writes the pattern from stream offset `from` up to (not including) `to`.
    pub async fn write_pattern_range<W: AsyncWrite + Unpin>(
        w: &mut W,
        from: u64,
        to: u64,
    ) -> io::Result<()> {
        let buf = pattern_buf();
        let (mut off, total) = (from, to);
        while off < total {
            let start = (off % PERIOD as u64) as usize;
            let n = ((buf.len() - start) as u64).min(total - off) as usize;
            w.write_all(&buf[start..start + n]).await?;
            off += n as u64;
        }
        Ok(())
    }

    /// [`wait_until`](super::wait_until) for async code: looks every 10 ms without blocking
    /// the runtime.
    pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// [`wait_until`], failing the test with `what` if `limit` passes first.
    pub async fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
        assert!(
            wait_until(limit, cond).await,
            "{what}: not within {limit:?}"
        );
    }

    pub async fn read_pattern<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<u64> {
        let expect = pattern_buf();
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Ok(off);
            }
            check(&expect, off, &buf[..n])?;
            off += n as u64;
        }
    }
}
