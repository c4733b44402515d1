//! The `--so_flags` string: `key=value` words separated by spaces or commas.
//!
//! | key | value | default |
//! | --- | --- | --- |
//! | `local_ip` | an IPv4 or IPv6 address of the stack; may be repeated (one per family) | `192.168.0.1` (packetdrill's `--local_ip` default) |
//! | `mtu` | the interface MTU in bytes; the MSS announced is the MTU less 40 (IPv4) or 60 (IPv6) | `1500` |
//! | `min_rto` | the RTO floor (RFC 6298 §2.4 says 1 s; Linux uses 200 ms) | `200ms` |
//! | `initial_rto` | the RTO before any RTT sample (RFC 6298 §2.1) | `1s` |
//! | `max_rto` | the RTO ceiling | `120s` |
//! | `syn_retries` | SYN / SYN-ACK retransmissions before an open fails | `6` |
//! | `delayed_ack` | the delayed-ACK timeout, or `off` to acknowledge at once | `40ms` |
//! | `msl` | the maximum segment lifetime (TIME-WAIT lasts 2·MSL) | `30s` |
//! | `recv_buffer`, `send_buffer` | per-connection buffers in bytes | `1048576` |
//! | `seed` | keys ISNs and ephemeral ports (RFC 6528): the same seed gives the same numbers | `0` |
//! | `tick_usecs` | how far each `gettimeofday` moves the virtual clock (see below) | `1` |
//! | `sysctl` | a `/proc/sys`-like directory to read the namespace's TCP settings from, at every socket call (see [`crate::sysctl`]) | none: the built-in settings |
//! | `fastopen` | Linux's `net.ipv4.tcp_fastopen` bits (`0x1` client, `0x2` server, `0x4` data without cookie, `0x200` server without cookie, `0x400` every listener) | `0x1` |
//! | `fastopen_key` | the Fast Open server key, as the `tcp_fastopen_key` sysctl writes it | derived from `seed` |
//! | `ecn` | ECN (RFC 3168) as Linux's `net.ipv4.tcp_ecn`: 0 off, 1 ask and accept, 2 accept | `2` |
//! | `quick_ack` | Linux's quick-ACK mode at connection start (`on`/`off`) | `on` |
//! | `mtu_probing` | RFC 4821 probing as Linux's `net.ipv4.tcp_mtu_probing`: 0 off, 1 after repeated timeouts, 2 always | `0` |
//! | `base_mss` | the MSS the probing search starts from (`tcp_base_mss`) | `1024` |
//! | `path_mtu`, `advmss`, `initcwnd` | a route's metrics: the path MTU segments are sized for, the MSS announced, the initial window in segments | the interface MTU's; `10` |
//! | `offload` | the device segments TCP for us (`on`), or not (`off`: `ethtool -K dev gso off tso off`; see `synack_tcp::Config::segmentation_offload`) | `on` |
//! | `real_fds` | descriptor numbers are real descriptors of the process (memfds held while open), so that packetdrill's own `close()` at teardown succeeds and a script's `open()` never collides (`on`/`off`) | `on` |
//!
//! Durations take a unit (`us`, `ms`, `s`, `min`); a bare number is in **microseconds**, as
//! packetdrill's own time flags (`--tolerance_usecs`) are.
//!
//! `tick_usecs`: packetdrill busy-waits on `gettimeofday` for the last 20 µs before each event
//! and for 250 µs after choosing its start time. On a virtual clock that only `usleep` moves, that
//! loop would never end, so every clock read costs `tick_usecs` of virtual time. `0` gives a
//! clock that only `usleep` and `netdev_receive` move (for drivers that never spin).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use synack_tcp::fastopen::parse_linux_keys;
use synack_tcp::{Config, Duration};

/// packetdrill's default `--local_ip` for IPv4 scripts.
pub const DEFAULT_LOCAL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1));

/// Everything `packetdrill_interface_init` learns from its flags.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// The stack's addresses.
    pub addrs: Vec<IpAddr>,
    /// The TCP settings (its `mtu` is the interface's).
    pub tcp: Config,
    pub seed: u64,
    /// Virtual microseconds each `gettimeofday` call adds.
    pub tick_usecs: u64,
    /// Where to read the namespace's TCP settings (`/proc/sys`), if anywhere.
    pub sysctl_root: Option<PathBuf>,
    /// Hand out real descriptor numbers (see `real_fds` above).
    pub real_fds: bool,
}

impl Default for ShimConfig {
    fn default() -> ShimConfig {
        ShimConfig {
            addrs: vec![DEFAULT_LOCAL_IP],
            // Linux's defaults: recovery on the third duplicate until reordering is seen.
            tcp: Config {
                reorder_window: false,
                quick_ack: true,
                linux_rto: true,
                ..Config::default()
            },
            seed: 0,
            tick_usecs: 1,
            sysctl_root: None,
            real_fds: true,
        }
    }
}

/// A duration flag: a bare number is microseconds, otherwise a number with a unit.
pub fn parse_flag_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_micros)
            .map_err(|e| format!("{s:?}: {e}"));
    }
    synack_stack::sim::units::parse_duration(s)
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| format!("{key}={v}: {e}"))
}

impl ShimConfig {
    /// Parse a flags string. Every word is applied in order; the errors of the words that could
    /// not be applied are returned beside the configuration (which keeps the default for them),
    /// so that a caller with no way to fail (`packetdrill_interface_init`) can report them and go
    /// on.
    pub fn parse(flags: &str) -> (ShimConfig, Vec<String>) {
        let mut cfg = ShimConfig::default();
        let mut errors = Vec::new();
        let mut explicit_addrs = false;
        for word in flags
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
        {
            let Some((key, value)) = word.split_once('=') else {
                errors.push(format!("{word:?}: expected key=value"));
                continue;
            };
            if let Err(e) = cfg.apply(key, value, &mut explicit_addrs) {
                errors.push(e);
            }
        }
        (cfg, errors)
    }

    /// Parse a flags string, failing on the first bad word.
    pub fn parse_strict(flags: &str) -> Result<ShimConfig, String> {
        let (cfg, errors) = ShimConfig::parse(flags);
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(cfg),
        }
    }

    fn apply(&mut self, key: &str, v: &str, explicit_addrs: &mut bool) -> Result<(), String> {
        let t = &mut self.tcp;
        match key {
            "local_ip" => {
                let ip: IpAddr = v.parse().map_err(|e| format!("local_ip={v}: {e}"))?;
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(format!("local_ip={v}: not a unicast address"));
                }
                if !*explicit_addrs {
                    self.addrs.clear();
                    *explicit_addrs = true;
                }
                // One address per family: the later one replaces the earlier.
                self.addrs.retain(|a| a.is_ipv4() != ip.is_ipv4());
                self.addrs.push(ip);
            }
            "mtu" => {
                let mtu: usize = parse_num(key, v)?;
                if !(576..=65535).contains(&mtu) {
                    return Err(format!("mtu={v}: must be in 576..=65535"));
                }
                t.mtu = mtu;
            }
            "min_rto" => t.min_rto = parse_flag_duration(v)?,
            "initial_rto" => t.initial_rto = parse_flag_duration(v)?,
            "max_rto" => t.max_rto = parse_flag_duration(v)?,
            "syn_retries" => t.syn_retries = parse_num(key, v)?,
            "delayed_ack" => {
                t.delayed_ack = match v {
                    "off" | "0" | "none" => None,
                    _ => Some(parse_flag_duration(v)?),
                }
            }
            "msl" => t.msl = parse_flag_duration(v)?,
            "recv_buffer" => t.recv_buffer = parse_num::<usize>(key, v)?.max(1),
            "send_buffer" => t.send_buffer = parse_num::<usize>(key, v)?.max(1),
            "seed" => self.seed = parse_num(key, v)?,
            "tick_usecs" => self.tick_usecs = parse_num(key, v)?,
            "sysctl" => self.sysctl_root = Some(PathBuf::from(v)),
            "fastopen" => {
                let bits = match v.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16).map_err(|e| format!("{key}={v}: {e}"))?,
                    None => parse_num(key, v)?,
                };
                t.fast_open.set_linux_sysctl(bits);
            }
            "fastopen_key" => {
                let (k, backup) =
                    parse_linux_keys(v).ok_or_else(|| format!("{key}={v}: not a key"))?;
                t.fast_open.key = Some(k);
                t.fast_open.backup_key = backup;
            }
            "real_fds" => {
                self.real_fds = match v {
                    "on" | "1" => true,
                    "off" | "0" => false,
                    _ => return Err(format!("{key}={v}: on or off")),
                }
            }
            "ecn" => t.ecn = synack_tcp::Ecn::from_linux_sysctl(parse_num(key, v)?),
            "mtu_probing" => {
                t.mtu_probing.mode = synack_tcp::MtuProbeMode::from_linux_sysctl(parse_num(key, v)?)
            }
            "base_mss" => t.mtu_probing.base_mss = parse_num::<usize>(key, v)?.clamp(48, 65495),
            "path_mtu" => {
                let mtu: usize = parse_num(key, v)?;
                if !(68..=65535).contains(&mtu) {
                    return Err(format!("path_mtu={v}: must be in 68..=65535"));
                }
                t.path_mtu = Some(mtu);
            }
            "advmss" => t.advmss = Some(parse_num::<usize>(key, v)?.clamp(48, 65495)),
            "initcwnd" => t.initial_window = parse_num::<usize>(key, v)?.clamp(1, 1000),
            "offload" => {
                t.segmentation_offload = match v {
                    "on" | "1" => true,
                    "off" | "0" => false,
                    _ => return Err(format!("{key}={v}: on or off")),
                }
            }
            "quick_ack" => {
                t.quick_ack = match v {
                    "on" | "1" => true,
                    "off" | "0" => false,
                    _ => return Err(format!("{key}={v}: on or off")),
                }
            }
            _ => return Err(format!("{key}: unknown flag")),
        }
        if t.min_rto > t.max_rto {
            return Err(format!("{key}={v}: min_rto above max_rto"));
        }
        Ok(())
    }

    /// The 16-byte ISN secret derived from `seed`.
    pub fn secret(&self) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&self.seed.to_le_bytes());
        s[8..].copy_from_slice(&(!self.seed).to_le_bytes());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ShimConfig::parse_strict("").unwrap();
        assert_eq!(c.addrs, vec![DEFAULT_LOCAL_IP]);
        assert_eq!(c.tcp.min_rto, Duration::from_millis(200));
        assert_eq!(c.tick_usecs, 1);
    }

    #[test]
    fn words() {
        let c = ShimConfig::parse_strict(
            "local_ip=198.18.0.2, local_ip=fd00::2 mtu=1400 min_rto=300ms initial_rto=500000 \
             delayed_ack=off seed=7 tick_usecs=0",
        )
        .unwrap();
        assert_eq!(
            c.addrs,
            vec![
                "198.18.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        assert_eq!(c.tcp.mtu, 1400);
        assert_eq!(c.tcp.min_rto, Duration::from_millis(300));
        assert_eq!(c.tcp.initial_rto, Duration::from_millis(500));
        assert_eq!(c.tcp.delayed_ack, None);
        assert_eq!(c.seed, 7);
        assert_eq!(c.tick_usecs, 0);
    }

    #[test]
    fn bad_words_are_reported_and_skipped() {
        let (c, errors) = ShimConfig::parse("mtu=12 bogus=1 local_ip=nope novalue min_rto=1ms");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(c.tcp.mtu, 1500);
        assert_eq!(c.addrs, vec![DEFAULT_LOCAL_IP]);
        assert_eq!(c.tcp.min_rto, Duration::from_millis(1));
    }
}
