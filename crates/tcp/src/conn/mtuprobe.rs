//! The path MTU a connection sizes its segments for, and Packetization Layer Path MTU
//! Discovery (RFC 4821) as Linux does it (`net.ipv4.tcp_mtu_probing`; `tcp_mtu_probe` in
//! `tcp_output.c`, `tcp_mtup_probe_success`/`_failed` in `tcp_input.c`).
//!
//! A connection keeps what its host last said the route's MTU is (Linux's `dst_mtu`) apart from
//! the MTU its segment size was computed for (Linux's `icsk_pmtu_cookie`). The segment size
//! follows a new route MTU only where Linux looks at its route again (`tcp_current_mss`): at a
//! write and after an acknowledgment or a timeout. A host that learns of a route change when it
//! next transmits (as Linux's socket does, `__sk_dst_check` in `ip_queue_xmit`) calls
//! [`Connection::set_path_mtu`] then.
//!
//! With probing on, the search runs between `search_low` (the MTU of `base_mss`, RFC 4821
//! §7.2's starting point) and `search_high` (the peer's MSS plus the headers, or the route's MTU
//! if lower): a probe is one segment of the midpoint's size (§7.3), built from the head of the
//! data not yet sent, sent only when enough data waits behind it to detect its loss by
//! duplicate acknowledgments (§7.4: the probe plus DupThresh + 1 segments, Linux's
//! `size_needed`), the peer's window has room for all of it, at least 11 segments of congestion
//! window are open and two of them free, and the connection is in no recovery. Acknowledged,
//! `search_low` rises to the probe's size and the segment size with it (§7.6.1); lost (the
//! loss detection that would start a fast recovery finds the probe at `SND.UNA`),
//! `search_high` falls below it, the probe's bytes are sent again in segments of the current
//! size and the congestion window is left as it was (§7.6.2: a probe's loss is no congestion
//! signal). Once the range is narrower than `threshold` the search stops until `interval`
//! has passed (§7.7). In the `BlackHole` mode (Linux's 1) probing starts only when timeouts
//! suggest large segments vanish (Linux's `tcp_mtu_probing()` in `tcp_timer.c`).
//!
//! Linux counts its congestion window in packets: it takes one off while a probe (one packet
//! worth more than one segment) is out, and rescales the window by old over new MTU when the
//! segment size grows. synack counts bytes, in which both come out the same without either.
//!
//! Without segmentation offload (`Config::segmentation_offload` off, `ethtool -K dev gso off
//! tso off`), Linux still queues large buffers (its size goal is half the peer's largest
//! window, at most 64 KB) and sends each burst as one packet that software segmentation cuts
//! up, the last segment of each carrying PSH: a burst holds what the pacing rate allows in one
//! packet (`tcp_tso_autosize`: two segments on a 100 ms path, up to 64 KB on a sub-millisecond
//! one), at most half the congestion window (`tcp_cwnd_test`). That is modelled here too, as
//! a probe is one such packet of its own.

use crate::cc::CongestionControl;
use crate::config::Config;
use crate::seq::SeqNum;
use crate::time::{Duration, Instant};

use super::{Connection, MIN_SND_MSS};

/// When a connection probes (Linux's `net.ipv4.tcp_mtu_probing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtuProbeMode {
    /// Never (Linux's 0, its default).
    #[default]
    Off,
    /// Once repeated timeouts suggest a black hole for large segments (Linux's 1).
    BlackHole,
    /// From the start of every connection (Linux's 2).
    Always,
}

impl MtuProbeMode {
    /// The mode of a `net.ipv4.tcp_mtu_probing` value.
    pub fn from_linux_sysctl(v: u32) -> MtuProbeMode {
        match v {
            0 => MtuProbeMode::Off,
            1 => MtuProbeMode::BlackHole,
            _ => MtuProbeMode::Always,
        }
    }
}

/// RFC 4821 probing settings, with Linux's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtuProbing {
    pub mode: MtuProbeMode,
    /// The MSS the search starts from (`tcp_base_mss`: 1024).
    pub base_mss: usize,
    /// The search stops once its range is narrower than this many bytes
    /// (`tcp_probe_threshold`: 8).
    pub threshold: usize,
    /// A finished search starts again after this long (`tcp_probe_interval`: 600 s).
    pub interval: Duration,
    /// The lowest MSS a black hole makes the search fall back to (`tcp_mtu_probe_floor`: 48).
    pub floor: usize,
}

impl Default for MtuProbing {
    fn default() -> MtuProbing {
        MtuProbing {
            mode: MtuProbeMode::Off,
            base_mss: 1024,
            threshold: 8,
            interval: Duration::from_secs(600),
            floor: 48,
        }
    }
}

/// Retransmission timeouts after which `BlackHole` probing starts (Linux's `tcp_retries1`).
const BLACK_HOLE_TIMEOUTS: u32 = 3;

/// Linux's largest GSO packet and its room for headers (`GSO_LEGACY_MAX_SIZE`,
/// `MAX_TCP_HEADER`): the size goal of a write-queue buffer without segmentation offload.
const GSO_MAX_SIZE: usize = 65536;
const MAX_TCP_HEADER: usize = 320;

/// A connection's path MTU state; boxed, and only where a setting asks for it.
#[derive(Debug, Clone)]
pub(crate) struct PathMtu {
    cfg: MtuProbing,
    /// The route's MTU as the host last reported it (Linux's `dst_mtu`).
    route: u32,
    /// The MTU the segment size was last computed for (Linux's `icsk_pmtu_cookie`); 0 until
    /// the peer's MSS is known.
    cookie: u32,
    /// Our own bound on the MSS (`Config::mtu` less the headers).
    own: u32,
    /// The largest MSS, options included, the peer's SYN and our settings allow (Linux's
    /// `mss_clamp`).
    clamp: u32,
    enabled: bool,
    /// RFC 4821 §7.2's search range, as MTUs.
    search_low: u32,
    search_high: u32,
    /// The MTU of the probe in flight; 0: none.
    probe_size: u32,
    probe_start: SeqNum,
    probe_end: SeqNum,
    /// When the search last (re)started.
    probe_stamp: Instant,
    /// A lost probe's bytes still to send again in segments of the current size: next, end.
    repair: Option<(SeqNum, SeqNum)>,
    /// No segmentation offload: PSH ends each burst (see the module's text).
    no_offload: bool,
    /// Where the burst being sent ends.
    burst_end: Option<SeqNum>,
}

/// What probing says about the next new data (Linux's `tcp_mtu_probe` results).
pub(super) enum ProbePlan {
    /// No probe: send as usual (-1).
    Continue,
    /// Send nothing now: the probe waits for the flight to drain (0).
    Wait,
    /// Send a probe of this many bytes from `SND.NXT` (1).
    Send(usize),
}

impl PathMtu {
    /// The state `config` asks for, if any.
    pub(crate) fn for_config(config: &Config, ipv6: bool) -> Option<Box<PathMtu>> {
        if config.mtu_probing.mode == MtuProbeMode::Off
            && config.path_mtu.is_none()
            && config.advmss.is_none()
            && config.segmentation_offload
        {
            return None;
        }
        let own = super::mss_for_mtu(config.mtu, ipv6) as u32;
        Some(Box::new(PathMtu::new(
            config.mtu_probing,
            config.path_mtu.unwrap_or(config.mtu) as u32,
            own,
            !config.segmentation_offload,
        )))
    }

    fn new(cfg: MtuProbing, route: u32, own: u32, no_offload: bool) -> PathMtu {
        PathMtu {
            cfg,
            route,
            cookie: 0,
            own,
            clamp: own,
            enabled: false,
            search_low: 0,
            search_high: 0,
            probe_size: 0,
            probe_start: SeqNum(0),
            probe_end: SeqNum(0),
            probe_stamp: Instant::ZERO,
            repair: None,
            no_offload,
            burst_end: None,
        }
    }
}

impl Connection {
    fn ip_header_len(&self) -> u32 {
        if self.tuple().local.is_ipv6() {
            40
        } else {
            20
        }
    }

    fn ts_len(&self) -> u32 {
        if self.ts_enabled {
            12
        } else {
            0
        }
    }

    /// The segment budget (MSS with options) an MTU gives: Linux's `__tcp_mtu_to_mss`.
    fn budget_for(&self, mtu: u32) -> u32 {
        let clamp = self.path.as_deref().map_or(u32::MAX, |p| p.clamp);
        mtu.saturating_sub(self.ip_header_len() + 20)
            .min(clamp)
            .max(MIN_SND_MSS as u32)
    }

    /// Payload bytes per segment for an MTU (Linux's `tcp_mtu_to_mss`).
    fn mss_for(&self, mtu: u32) -> u32 {
        self.budget_for(mtu).saturating_sub(self.ts_len()).max(1)
    }

    /// The MTU of segments carrying `mss` payload bytes (Linux's `tcp_mss_to_mtu`).
    fn mtu_for(&self, mss: u32) -> u32 {
        mss + self.ts_len() + 20 + self.ip_header_len()
    }

    /// Size segments for path MTU `pmtu` (Linux's `tcp_sync_mss`): the search's upper bound
    /// never exceeds it, and while probing, segments stay at the search's lower bound.
    fn sync_mss(&mut self, pmtu: u32) {
        let Some(p) = self.path.as_deref() else {
            return;
        };
        let (enabled, low) = (p.enabled, p.search_low);
        let mut budget = self.budget_for(pmtu);
        if enabled {
            budget = budget.min(self.budget_for(low));
        }
        if let Some(p) = self.path.as_deref_mut() {
            p.search_high = p.search_high.min(pmtu);
            p.cookie = pmtu;
        }
        self.seg_budget = budget as usize;
        self.snd_mss = (budget - self.ts_len()).max(1) as usize;
        self.cc.set_mss(self.snd_mss);
    }

    /// Reset the search (Linux's `tcp_mtup_init`): from `base_mss` up to the peer's MSS.
    fn mtup_init(&mut self, now: Option<Instant>) {
        let hdr = 20 + self.ip_header_len();
        let Some(p) = self.path.as_deref() else {
            return;
        };
        let base = p.cfg.base_mss as u32;
        let low = self.mtu_for(base);
        let Some(p) = self.path.as_deref_mut() else {
            return;
        };
        p.enabled = p.cfg.mode == MtuProbeMode::Always;
        p.search_high = p.clamp + hdr;
        p.search_low = low;
        p.probe_size = 0;
        if let Some(now) = now {
            p.probe_stamp = now;
        }
    }

    /// The peer's MSS is known (its SYN or SYN-ACK): size segments for the route's MTU. An
    /// active open sets up probing here already (Linux's `tcp_rcv_synsent_state_process`), so
    /// its first segments are no larger than `base_mss`; a passive one at the handshake's end.
    pub(super) fn path_on_negotiated(&mut self, peer_mss: usize) {
        let passive = self.passive;
        let Some(p) = self.path.as_deref_mut() else {
            return;
        };
        p.clamp = (peer_mss.max(MIN_SND_MSS) as u32).min(p.own);
        let route = p.route;
        if !passive {
            self.mtup_init(None);
        }
        self.sync_mss(route);
    }

    /// The handshake completed (Linux's `tcp_init_transfer`): the search starts.
    pub(super) fn path_on_established(&mut self, now: Instant) {
        self.mtup_init(Some(now));
    }

    /// Look at the route again where Linux does (`tcp_current_mss`): a write, an ACK, a
    /// timeout. A new path MTU resizes segments now.
    pub(super) fn path_refresh(&mut self) {
        if let Some(p) = self.path.as_deref() {
            if p.cookie != 0 && p.route != p.cookie {
                let route = p.route;
                self.sync_mss(route);
            }
        }
    }

    /// The host's route to the peer now has path MTU `mtu` (a route change; Linux's socket
    /// sees it when it next transmits). Segments follow at the next write, acknowledgment or
    /// timeout, where Linux looks at its route. An MTU below IPv4's 68 (IPv6's 1280) is taken
    /// as that floor.
    pub fn set_path_mtu(&mut self, mtu: usize) {
        let floor = if self.tuple().local.is_ipv6() {
            1280
        } else {
            68
        };
        let mtu = mtu.clamp(floor, 65535) as u32;
        if self.path.is_none() {
            if mtu as usize == self.seg_budget + 20 + self.ip_header_len() as usize {
                return;
            }
            // No setting asked for this state: the segment size so far was the peer's MSS
            // bounded by our own, which is then the clamp.
            let own = self.adv_mss as u32;
            let mut p = PathMtu::new(MtuProbing::default(), mtu, own, false);
            if self.state.is_synchronized() {
                p.clamp = self.seg_budget as u32;
                p.cookie = self.seg_budget as u32 + 20 + self.ip_header_len();
            }
            self.path = Some(Box::new(p));
        }
        if let Some(p) = self.path.as_deref_mut() {
            p.route = mtu;
        }
    }

    /// The path MTU the connection was last told of, if any setting or call gave one.
    pub fn path_mtu(&self) -> Option<usize> {
        self.path.as_deref().map(|p| p.route as usize)
    }

    /// The MTU of the probe in flight, if any.
    pub fn mtu_probe_in_flight(&self) -> Option<usize> {
        self.path
            .as_deref()
            .filter(|p| p.probe_size != 0)
            .map(|p| p.probe_size as usize)
    }

    /// RFC 4821 §7.2's search range as MTUs, `(search_low, search_high)`, while probing is on.
    pub fn mtu_search_range(&self) -> Option<(usize, usize)> {
        self.path
            .as_deref()
            .filter(|p| p.enabled)
            .map(|p| (p.search_low as usize, p.search_high as usize))
    }

    /// An ICMP Packet Too Big lowered the segment size for `mtu`: the route and the search
    /// know it too, so that no later resize undoes it.
    pub(super) fn path_on_too_big(&mut self, mtu: u32) {
        if let Some(p) = self.path.as_deref_mut() {
            p.route = p.route.min(mtu);
            if p.cookie != 0 {
                p.cookie = p.cookie.min(mtu);
            }
            p.search_high = p.search_high.min(mtu);
        }
    }

    /// Whether to probe with the new data at `seq` (Linux's `tcp_mtu_probe`); `buf_len`: the
    /// room for the whole segment.
    pub(super) fn mtu_probe_plan(
        &mut self,
        now: Instant,
        seq: SeqNum,
        buf_len: usize,
    ) -> ProbePlan {
        let Some(p) = self.path.as_deref() else {
            return ProbePlan::Continue;
        };
        // Not probing already, in no recovery or loss state (not even after an ECE), no
        // duplicate ACK or SACK pending, enough window, and not sending SACK blocks (their
        // room varies).
        let in_cwr = self.ecn_high.is_some_and(|h| self.snd_una.lt(h));
        let mss = self.snd_mss.max(1);
        let cwnd = self.cc.cwnd() / mss;
        if !p.enabled
            || p.probe_size != 0
            || seq != self.snd_max
            || self.recover.is_some()
            || self.rto_count > 0
            || self.dupacks > 0
            || self.scoreboard.highest().is_some()
            || in_cwr
            || cwnd < 11
            || !self.assembler.is_empty()
            || self.dsack.is_some()
        {
            return ProbePlan::Continue;
        }
        let (low, high) = (p.search_low, p.search_high);
        let threshold = p.cfg.threshold as u32;
        let probe = self.mss_for((low + high) / 2) as usize;
        let size_needed = probe + (self.reordering + 1) * mss;
        if probe > self.mss_for(high) as usize || high.saturating_sub(low) < threshold {
            self.check_reprobe(now);
            return ProbePlan::Continue;
        }
        // Enough data queued, and a window for it all (RFC 4821 §7.4).
        if self.fin_seq().since(self.snd_nxt) < size_needed || self.snd_wnd < size_needed {
            return ProbePlan::Continue;
        }
        if (self.snd_nxt + size_needed).gt(self.snd_una + self.snd_wnd) {
            return ProbePlan::Wait;
        }
        // Room for the probe and one more segment in the congestion window; with nothing in
        // flight there is no ACK to wait for.
        let in_flight = self.snd_nxt.since(self.snd_una).div_ceil(mss);
        if in_flight + 2 > cwnd {
            return if in_flight == 0 {
                ProbePlan::Continue
            } else {
                ProbePlan::Wait
            };
        }
        // The probe does not cross a record's end (Linux's `tcp_can_coalesce_send_queue_head`),
        // and fits the caller's buffer.
        if self.hard_end_after(seq).is_some_and(|h| h.lt(seq + probe))
            || buf_len < 20 + self.ts_len() as usize + probe
        {
            return ProbePlan::Continue;
        }
        let size = self.mtu_for(probe as u32);
        if let Some(p) = self.path.as_deref_mut() {
            p.probe_size = size;
            p.probe_start = seq;
            p.probe_end = seq + probe;
        }
        ProbePlan::Send(probe)
    }

    /// The search is over: after `interval`, start it again from the current segment size
    /// (Linux's `tcp_mtu_check_reprobe`, RFC 4821 §7.7).
    fn check_reprobe(&mut self, now: Instant) {
        let hdr = 20 + self.ip_header_len();
        let low = self.mtu_for(self.snd_mss as u32);
        if let Some(p) = self.path.as_deref_mut() {
            if now.saturating_duration_since(p.probe_stamp) >= p.cfg.interval {
                p.probe_size = 0;
                p.search_high = p.clamp + hdr;
                p.search_low = low;
                p.probe_stamp = now;
            }
        }
    }

    /// New data was acknowledged. All of the probe (RFC 4821 §7.6.1): the path carries its
    /// size, the search's lower bound rises to it and segments grow (Linux's
    /// `tcp_mtup_probe_success`). Then the route is looked at again.
    pub(super) fn path_on_ack(&mut self) {
        if let Some(p) = self.path.as_deref_mut() {
            if p.probe_size != 0 && self.snd_una.ge(p.probe_end) {
                p.search_low = p.probe_size;
                p.probe_size = 0;
                let cookie = p.cookie;
                self.sync_mss(cookie);
            }
            if let Some(p) = self.path.as_deref_mut() {
                if p.repair.is_some_and(|(_, end)| self.snd_una.ge(end)) {
                    p.repair = None;
                }
            }
        }
        self.path_refresh();
    }

    /// Loss detection is about to start a fast recovery. If what is lost is the probe (at
    /// `SND.UNA`), the probe failed instead (RFC 4821 §7.6.2, Linux's
    /// `tcp_mtup_probe_failed` and `tcp_simple_retransmit`): the search's upper bound falls
    /// below it, its bytes go again in segments of the current size, and the congestion window
    /// is not reduced; duplicates of this flight start no recovery. Returns whether it was so.
    pub(super) fn path_probe_lost(&mut self) -> bool {
        let in_cwr = self.ecn_high.is_some_and(|h| self.snd_una.lt(h));
        let Some(p) = self.path.as_deref_mut() else {
            return false;
        };
        if p.probe_size == 0 || self.snd_una != p.probe_start || self.recover.is_some() || in_cwr {
            return false;
        }
        p.search_high = p.probe_size - 1;
        p.probe_size = 0;
        p.repair = Some((p.probe_start, p.probe_end));
        self.recover_mark = self.snd_max;
        self.reorder_head = None;
        self.timers.stop(crate::timer::Timer::Reorder);
        self.rtt_timed = None;
        true
    }

    /// A lost probe's bytes wait to be sent again.
    pub(super) fn path_repair_due(&self) -> bool {
        self.path.as_deref().is_some_and(|p| p.repair.is_some())
    }

    /// The next piece of a lost probe to send again, `[seq, end)`, at most `mss` bytes,
    /// skipping what the peer SACKed.
    pub(super) fn path_repair_next(&mut self, mss: usize) -> Option<(SeqNum, SeqNum)> {
        let (mut next, end) = self.path.as_deref()?.repair?;
        next = next.max(self.snd_una);
        while let Some(e) = self.scoreboard.sacked_until(next) {
            next = e;
        }
        if !next.lt(end) || !next.lt(self.snd_max) {
            if let Some(p) = self.path.as_deref_mut() {
                p.repair = None;
            }
            return None;
        }
        let mut piece = (next + mss).min(end);
        if let Some(s) = self.next_sacked_after(next) {
            piece = piece.min(s);
        }
        if let Some(p) = self.path.as_deref_mut() {
            p.repair = Some((piece, end));
        }
        Some((next, piece))
    }

    /// A retransmission timeout (`rto_count` already counts it). A probe at `SND.UNA` is lost
    /// (RFC 4821 §7.6.2). In the `BlackHole` mode, timeouts that keep coming start probing,
    /// and then halve the search's lower bound (Linux's `tcp_mtu_probing()`): large segments
    /// may be what the path drops. Then the route is looked at again.
    pub(super) fn path_on_rto(&mut self, now: Instant) {
        let Some(p) = self.path.as_deref() else {
            return;
        };
        let black_hole = p.cfg.mode != MtuProbeMode::Off && self.rto_count > BLACK_HOLE_TIMEOUTS;
        let halved = (self.mss_for(p.search_low) / 2)
            .min(p.cfg.base_mss as u32)
            .max(p.cfg.floor as u32)
            .max(MIN_SND_MSS as u32);
        let halved_low = self.mtu_for(halved);
        let una = self.snd_una;
        let Some(p) = self.path.as_deref_mut() else {
            return;
        };
        if p.probe_size != 0 && una == p.probe_start {
            p.search_high = p.probe_size - 1;
            p.probe_size = 0;
        }
        if black_hole {
            if p.enabled {
                p.search_low = halved_low;
            } else {
                p.enabled = true;
                p.probe_stamp = now;
            }
            if p.cookie != 0 {
                let cookie = p.cookie;
                self.sync_mss(cookie);
            }
        }
        self.path_refresh();
    }

    /// Without segmentation offload, the size a write-queue buffer grows to (Linux's
    /// `tcp_xmit_size_goal`): 64 KB less header room, bounded by half the peer's largest
    /// window (`tcp_bound_to_half_wnd`), in whole segments.
    pub(super) fn unoffloaded_size_goal(&self) -> Option<usize> {
        self.path.as_deref().filter(|p| p.no_offload)?;
        let mss = self.snd_mss.max(1);
        let mut goal = GSO_MAX_SIZE - 1 - MAX_TCP_HEADER;
        if self.max_snd_wnd > 536 {
            goal = goal.min(self.max_snd_wnd / 2);
        }
        Some((goal / mss).max(1) * mss)
    }

    /// The segments one packet may hold at the pacing rate (Linux's `tcp_tso_autosize`): a
    /// millisecond's worth (`rate >> sk_pacing_shift`), plus up to 64 KB on a path whose RTT
    /// is under a few hundred microseconds (`tcp_tso_rtt_log`), and at least two
    /// (`tcp_min_tso_segs`). Before an RTT is known the rate is unlimited.
    fn autosize_segments(&self, mss: usize) -> usize {
        let srtt = self.rtt.srtt();
        let rate = super::pacing::rate(
            self.cc.cwnd(),
            self.cc.ssthresh(),
            self.snd_max.since(self.snd_una),
            srtt,
        );
        let mut bytes = if rate == 0 {
            GSO_MAX_SIZE
        } else {
            (rate >> 10) as usize
        };
        let shift = srtt.map_or(0, |d| d.as_micros() >> 9);
        if shift < 32 {
            bytes += GSO_MAX_SIZE >> shift;
        }
        (bytes.min(GSO_MAX_SIZE) / mss).max(2)
    }

    /// Without segmentation offload, whether the new data `[seq, seq + len)` ends its burst
    /// and so carries PSH. A burst (Linux's GSO packet from `tcp_write_xmit`) is at most what
    /// the pacing rate allows in one packet, half the congestion window and what it leaves
    /// free (`tcp_cwnd_test`), within one write-queue buffer and the peer's window; a probe is
    /// a burst of its own.
    pub(super) fn burst_push(&mut self, seq: SeqNum, len: usize, new_data: bool) -> bool {
        let Some(p) = self.path.as_deref() else {
            return false;
        };
        if !p.no_offload || len == 0 || !new_data {
            return false;
        }
        let end = seq + len;
        if p.probe_size != 0 && seq == p.probe_start && end == p.probe_end {
            if let Some(p) = self.path.as_deref_mut() {
                p.burst_end = None;
            }
            return false;
        }
        let burst_end = match p.burst_end {
            Some(b) if seq.lt(b) => b,
            _ => {
                let mss = self.snd_mss.max(1);
                let cwnd = (self.cc.cwnd() / mss).max(1);
                let in_flight = self.snd_nxt.since(self.snd_una).div_ceil(mss);
                let quota = self
                    .autosize_segments(mss)
                    .min((cwnd / 2).max(1))
                    .min(cwnd.saturating_sub(in_flight))
                    .max(1);
                let i = self.send_marks.partition_point(|m| m.end.le(seq));
                let buffer_end = self.send_marks.get(i).map_or(self.fin_seq(), |m| m.end);
                (seq + quota * mss)
                    .min(buffer_end)
                    .min(self.snd_una + self.snd_wnd)
            }
        };
        let last = end.ge(burst_end);
        if let Some(p) = self.path.as_deref_mut() {
            p.burst_end = (!last).then_some(burst_end);
        }
        last
    }
}
