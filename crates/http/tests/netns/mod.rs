//! A network namespace per test, entered by a thread, deleted when dropped; and the checks
//! that skip a test (with a message) when root or a tool is missing, unless CI=true.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether namespaces and TUN devices can be made here; prints why not (or panics with
/// CI=true).
pub fn privileged(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        missing.push("root");
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("the ip command");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test} needs {}", missing.join(", "));
    assert!(!ci(), "{why} (CI=true: it must run)");
    eprintln!("skipping: {why}");
    false
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
    #[link_name = "setns"]
    fn libc_setns(fd: i32, nstype: i32) -> i32;
}

const CLONE_NEWNET: i32 = 0x4000_0000;

/// Whether `prog` runs (`prog args`); prints a message or, with CI=true, panics if not.
pub fn have_tool(prog: &str, args: &[&str], test: &str) -> bool {
    let ok = Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(!ci(), "{test} needs {prog} (CI=true: it must run)");
        eprintln!("skipping part of {test}: {prog} is not installed");
    }
    ok
}

/// A namespace that lives as long as this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        // Named for the crate whose tests share this file (http, trace).
        let name = format!("{}-{}-{tag}", env!("CARGO_PKG_NAME"), std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(ok.success(), "ip netns add {name}");
        let ns = Netns { name };
        let ok = Command::new("ip")
            .args(["-n", &ns.name, "link", "set", "lo", "up"])
            .status()
            .expect("ip link");
        assert!(ok.success());
        ns
    }

    /// `prog` run inside the namespace, bounded by `timeout SECS`.
    pub fn command(&self, secs: u32, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.name,
            "timeout",
            &secs.to_string(),
            prog,
        ]);
        c
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let h = std::thread::spawn(move || {
            let file = File::open(&path).expect("open the namespace");
            // SAFETY: a valid namespace descriptor; only this thread changes namespace.
            let r = unsafe { libc_setns(file.as_raw_fd(), CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
