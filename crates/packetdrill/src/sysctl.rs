//! The TCP settings of the network namespace, read from `/proc/sys` as Linux applies them.
//!
//! packetdrill scripts configure the stack under test with `sysctl` and by writing
//! `/proc/sys/net/ipv4/*` (the suite's `defaults.sh`, and lines such as
//! `sysctl -q net.ipv4.tcp_timestamps=0` between sockets). A kernel reads those values when a
//! socket is made, connects, listens or a SYN arrives; the shared object, which those commands
//! never reach, reads the same files at the same moments (only when the `sysctl` flag names the
//! directory: our own scripts run without, on the built-in defaults). A file that is missing or
//! does not parse leaves the setting as it was.

use std::path::{Path, PathBuf};

use synack_tcp::fastopen::parse_linux_keys;
use synack_tcp::{Config, Duration, Keepalive};

/// The values read; `None` where a file was missing or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sysctls {
    pub tcp_fastopen: Option<u32>,
    pub tcp_fastopen_key: Option<String>,
    /// `tcp_rmem`: min, default, max.
    pub tcp_rmem: Option<[usize; 3]>,
    /// `net.core.rmem_max`.
    pub rmem_max: Option<usize>,
    pub tcp_timestamps: Option<u32>,
    pub tcp_sack: Option<u32>,
    pub tcp_window_scaling: Option<u32>,
    pub tcp_syn_retries: Option<u32>,
    pub tcp_synack_retries: Option<u32>,
    pub tcp_syncookies: Option<u32>,
    pub tcp_fin_timeout: Option<u64>,
    pub tcp_keepalive_time: Option<u64>,
    pub tcp_keepalive_intvl: Option<u64>,
    pub tcp_keepalive_probes: Option<u32>,
    pub tcp_ecn: Option<u32>,
    pub tcp_notsent_lowat: Option<u64>,
    /// `tcp_congestion_control`: the namespace's congestion control.
    pub tcp_congestion_control: Option<String>,
    /// RFC 4821 probing: `tcp_mtu_probing`, `tcp_base_mss`, `tcp_probe_threshold`,
    /// `tcp_probe_interval` (seconds), `tcp_mtu_probe_floor`.
    pub tcp_mtu_probing: Option<u32>,
    pub tcp_base_mss: Option<usize>,
    pub tcp_probe_threshold: Option<usize>,
    pub tcp_probe_interval: Option<u64>,
    pub tcp_mtu_probe_floor: Option<usize>,
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

fn num<T: std::str::FromStr>(root: &Path, rel: &str) -> Option<T> {
    read(root, rel)?.trim().parse().ok()
}

/// A number as `sysctl` takes it: decimal, or hexadecimal with `0x` (`tcp_fastopen=0x70403`
/// reads back as decimal, but scripts write either).
fn bits(root: &Path, rel: &str) -> Option<u32> {
    let s = read(root, rel)?;
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Sysctls {
    /// Read the values under `root` (normally `/proc/sys`).
    pub fn read(root: &Path) -> Sysctls {
        let rmem = read(root, "net/ipv4/tcp_rmem").and_then(|s| {
            let v: Vec<usize> = s
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (v.len() == 3).then(|| [v[0], v[1], v[2]])
        });
        Sysctls {
            tcp_fastopen: bits(root, "net/ipv4/tcp_fastopen"),
            tcp_fastopen_key: read(root, "net/ipv4/tcp_fastopen_key"),
            tcp_rmem: rmem,
            rmem_max: num(root, "net/core/rmem_max"),
            tcp_timestamps: num(root, "net/ipv4/tcp_timestamps"),
            tcp_sack: num(root, "net/ipv4/tcp_sack"),
            tcp_window_scaling: num(root, "net/ipv4/tcp_window_scaling"),
            tcp_syn_retries: num(root, "net/ipv4/tcp_syn_retries"),
            tcp_synack_retries: num(root, "net/ipv4/tcp_synack_retries"),
            tcp_syncookies: num(root, "net/ipv4/tcp_syncookies"),
            tcp_fin_timeout: num(root, "net/ipv4/tcp_fin_timeout"),
            tcp_keepalive_time: num(root, "net/ipv4/tcp_keepalive_time"),
            tcp_keepalive_intvl: num(root, "net/ipv4/tcp_keepalive_intvl"),
            tcp_keepalive_probes: num(root, "net/ipv4/tcp_keepalive_probes"),
            tcp_ecn: num(root, "net/ipv4/tcp_ecn"),
            tcp_notsent_lowat: num(root, "net/ipv4/tcp_notsent_lowat"),
            tcp_congestion_control: read(root, "net/ipv4/tcp_congestion_control")
                .map(|s| s.trim().to_owned()),
            tcp_mtu_probing: num(root, "net/ipv4/tcp_mtu_probing"),
            tcp_base_mss: num(root, "net/ipv4/tcp_base_mss"),
            tcp_probe_threshold: num(root, "net/ipv4/tcp_probe_threshold"),
            tcp_probe_interval: num(root, "net/ipv4/tcp_probe_interval"),
            tcp_mtu_probe_floor: num(root, "net/ipv4/tcp_mtu_probe_floor"),
        }
    }

    /// The window-scale shift Linux offers: `ilog2` of the largest receive buffer a
    /// connection may grow to (`max(tcp_rmem[2], net.core.rmem_max)`) less 15, within 0..=14
    /// (`tcp_select_initial_window`).
    pub fn window_scale(&self) -> Option<u8> {
        let max = self.tcp_rmem?[2].max(self.rmem_max.unwrap_or(0));
        let ilog2 = usize::BITS - 1 - max.max(1).leading_zeros();
        Some(ilog2.saturating_sub(15).min(14) as u8)
    }

    /// Apply what was read to `c`, as the kernel would to a new socket.
    pub fn apply(&self, c: &mut Config) {
        if let Some(b) = self.tcp_fastopen {
            c.fast_open.set_linux_sysctl(b);
        }
        if let Some((k, backup)) = self.tcp_fastopen_key.as_deref().and_then(parse_linux_keys) {
            c.fast_open.key = Some(k);
            c.fast_open.backup_key = backup;
        }
        if let Some(s) = self.window_scale() {
            c.window_scale = Some(s);
        }
        if let Some(v) = self.tcp_timestamps {
            c.timestamps = v != 0;
        }
        if let Some(v) = self.tcp_sack {
            c.sack = v != 0;
        }
        if let Some(v) = self.tcp_window_scaling {
            c.window_scaling = v != 0;
        }
        if let Some(v) = self.tcp_syn_retries {
            c.syn_retries = v;
        }
        if let Some(v) = self.tcp_synack_retries {
            c.synack_retries = Some(v);
        }
        if let Some(v) = self.tcp_ecn {
            c.ecn = synack_tcp::Ecn::from_linux_sysctl(v);
        }
        if let Some(cc) = self.tcp_congestion_control.as_deref() {
            // A congestion control that asks for pacing (BBR: Linux's internal pacing,
            // `SK_PACING_NEEDED`) has the kernel pace every flow of the namespace; synack keeps
            // its own window and paces it as Linux then does (`Config::pacing`). Where BBR is
            // the only choice a namespace has, a script's `tcp_congestion_control=cubic` fails
            // and leaves it in place, so the kernel's flows there are paced too.
            c.pacing = cc == "bbr";
        }
        if let Some(v) = self.tcp_notsent_lowat {
            // UINT_MAX (the default) is no limit.
            c.notsent_lowat = (v < u64::from(u32::MAX)).then_some(v as usize);
        }
        let p = &mut c.mtu_probing;
        if let Some(v) = self.tcp_mtu_probing {
            p.mode = synack_tcp::MtuProbeMode::from_linux_sysctl(v);
        }
        if let Some(v) = self.tcp_base_mss {
            p.base_mss = v.clamp(48, 65495);
        }
        if let Some(v) = self.tcp_probe_threshold {
            p.threshold = v;
        }
        if let Some(v) = self.tcp_probe_interval {
            p.interval = Duration::from_secs(v);
        }
        if let Some(v) = self.tcp_mtu_probe_floor {
            p.floor = v.clamp(48, 65495);
        }
        if let Some(v) = self.tcp_syncookies {
            c.syn_cookies = v != 0;
        }
        if let Some(v) = self.tcp_fin_timeout {
            c.fin_wait2_timeout = Duration::from_secs(v);
        }
        let d = Keepalive::default();
        let ka = Keepalive {
            idle: self.tcp_keepalive_time.map_or(d.idle, Duration::from_secs),
            interval: self
                .tcp_keepalive_intvl
                .map_or(d.interval, Duration::from_secs),
            count: self.tcp_keepalive_probes.unwrap_or(d.count),
        };
        if let Some(k) = c.keepalive.as_mut() {
            *k = ka;
        }
    }
}

/// Where to read from, and the last values read (files are read again at every socket call;
/// they are few and small).
#[derive(Debug, Clone, Default)]
pub struct SysctlSource {
    pub root: Option<PathBuf>,
}

impl SysctlSource {
    pub fn read(&self) -> Option<Sysctls> {
        self.root.as_deref().map(Sysctls::read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_applies_a_tree() {
        let dir = std::env::temp_dir().join(format!("synack-sysctl-{}", std::process::id()));
        let ipv4 = dir.join("net/ipv4");
        std::fs::create_dir_all(&ipv4).unwrap();
        std::fs::create_dir_all(dir.join("net/core")).unwrap();
        let put = |f: &str, v: &str| std::fs::write(dir.join(f), v).unwrap();
        put("net/ipv4/tcp_fastopen", "0x70403\n");
        put(
            "net/ipv4/tcp_fastopen_key",
            "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4\n",
        );
        put("net/ipv4/tcp_rmem", "4096\t540000\t15728640\n");
        put("net/core/rmem_max", "212992\n");
        put("net/ipv4/tcp_timestamps", "0\n");
        put("net/ipv4/tcp_syn_retries", "5\n");
        put("net/ipv4/tcp_mtu_probing", "2\n");
        put("net/ipv4/tcp_base_mss", "512\n");
        let s = Sysctls::read(&dir);
        assert_eq!(s.window_scale(), Some(8));
        let mut c = Config::default();
        s.apply(&mut c);
        assert!(c.fast_open.server && c.fast_open.server_all_listeners);
        assert_eq!(
            c.fast_open.key.unwrap().to_linux_string(),
            "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
        );
        assert_eq!(c.window_scale, Some(8));
        assert!(!c.timestamps);
        assert!(c.sack, "a missing file changes nothing");
        assert_eq!(c.syn_retries, 5);
        assert_eq!(c.mtu_probing.mode, synack_tcp::MtuProbeMode::Always);
        assert_eq!(c.mtu_probing.base_mss, 512);
        assert_eq!(c.mtu_probing.threshold, 8, "a missing file changes nothing");
        assert!(!c.pacing, "no congestion control named: no pacing");
        // Linux's default 6 MiB maximum gives 7.
        put("net/ipv4/tcp_rmem", "4096 131072 6291456");
        assert_eq!(Sysctls::read(&dir).window_scale(), Some(7));
        // BBR paces every flow: so does synack then; CUBIC does not (without fq).
        put("net/ipv4/tcp_congestion_control", "bbr\n");
        Sysctls::read(&dir).apply(&mut c);
        assert!(c.pacing);
        put("net/ipv4/tcp_congestion_control", "cubic\n");
        Sysctls::read(&dir).apply(&mut c);
        assert!(!c.pacing);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
