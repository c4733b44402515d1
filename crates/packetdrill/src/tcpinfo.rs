//! Linux's `struct tcp_info` (`include/uapi/linux/tcp.h`), filled from a synack connection.
//!
//! The layout is the kernel's ABI, field for field, up to `tcpi_total_rto_time`; a caller
//! that asks for more bytes (a newer layout) gets zeros for the rest, as an older kernel's
//! answer would be.

use synack_tcp::{Connection, Instant, State};

/// `tcpi_options` bits.
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
pub const TCPI_OPT_SACK: u8 = 2;
pub const TCPI_OPT_WSCALE: u8 = 4;
pub const TCPI_OPT_ECN: u8 = 8;
pub const TCPI_OPT_SYN_DATA: u8 = 32;
pub const TCPI_OPT_TFO_CHILD: u8 = 128;

/// `struct tcp_info` as Linux 6.x lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpInfo {
    pub tcpi_state: u8,
    pub tcpi_ca_state: u8,
    pub tcpi_retransmits: u8,
    pub tcpi_probes: u8,
    pub tcpi_backoff: u8,
    pub tcpi_options: u8,
    /// `tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4`, the first in the low bits.
    pub tcpi_snd_rcv_wscale: u8,
    /// `tcpi_delivery_rate_app_limited : 1, tcpi_fastopen_client_fail : 2`.
    pub tcpi_app_limited_fo_fail: u8,

    pub tcpi_rto: u32,
    pub tcpi_ato: u32,
    pub tcpi_snd_mss: u32,
    pub tcpi_rcv_mss: u32,

    pub tcpi_unacked: u32,
    pub tcpi_sacked: u32,
    pub tcpi_lost: u32,
    pub tcpi_retrans: u32,
    pub tcpi_fackets: u32,

    pub tcpi_last_data_sent: u32,
    pub tcpi_last_ack_sent: u32,
    pub tcpi_last_data_recv: u32,
    pub tcpi_last_ack_recv: u32,

    pub tcpi_pmtu: u32,
    pub tcpi_rcv_ssthresh: u32,
    pub tcpi_rtt: u32,
    pub tcpi_rttvar: u32,
    pub tcpi_snd_ssthresh: u32,
    pub tcpi_snd_cwnd: u32,
    pub tcpi_advmss: u32,
    pub tcpi_reordering: u32,

    pub tcpi_rcv_rtt: u32,
    pub tcpi_rcv_space: u32,

    pub tcpi_total_retrans: u32,

    pub tcpi_pacing_rate: u64,
    pub tcpi_max_pacing_rate: u64,
    pub tcpi_bytes_acked: u64,
    pub tcpi_bytes_received: u64,
    pub tcpi_segs_out: u32,
    pub tcpi_segs_in: u32,

    pub tcpi_notsent_bytes: u32,
    pub tcpi_min_rtt: u32,
    pub tcpi_data_segs_in: u32,
    pub tcpi_data_segs_out: u32,

    pub tcpi_delivery_rate: u64,

    pub tcpi_busy_time: u64,
    pub tcpi_rwnd_limited: u64,
    pub tcpi_sndbuf_limited: u64,

    pub tcpi_delivered: u32,
    pub tcpi_delivered_ce: u32,

    pub tcpi_bytes_sent: u64,
    pub tcpi_bytes_retrans: u64,
    pub tcpi_dsack_dups: u32,
    pub tcpi_reord_seen: u32,

    pub tcpi_rcv_ooopack: u32,

    pub tcpi_snd_wnd: u32,
    pub tcpi_rcv_wnd: u32,

    pub tcpi_rehash: u32,

    pub tcpi_total_rto: u16,
    pub tcpi_total_rto_recoveries: u16,
    pub tcpi_total_rto_time: u32,
}

/// Linux's numbering of TCP states (`tcpi_state`).
pub fn linux_state(s: State) -> u8 {
    match s {
        State::Established => 1,
        State::SynSent => 2,
        State::SynReceived => 3,
        State::FinWait1 => 4,
        State::FinWait2 => 5,
        State::TimeWait => 6,
        State::Closed => 7,
        State::CloseWait => 8,
        State::LastAck => 9,
        State::Listen => 10,
        State::Closing => 11,
    }
}

fn us(d: core::time::Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl TcpInfo {
    /// The information of a socket in `state` (a listener or a socket without a connection).
    pub fn of_state(state: State) -> TcpInfo {
        TcpInfo {
            tcpi_state: linux_state(state),
            ..TcpInfo::default()
        }
    }

    /// The information of a connection at `now`; `mtu` is the interface's.
    pub fn of(c: &Connection, now: Instant, mtu: usize) -> TcpInfo {
        let st = c.stats();
        let mss = c.mss().max(1);
        let mut o = 0u8;
        if c.timestamps_enabled() {
            o |= TCPI_OPT_TIMESTAMPS;
        }
        if c.sack_enabled() {
            o |= TCPI_OPT_SACK;
        }
        let (ours, theirs) = c.window_scales();
        if ours != 0 || theirs != 0 {
            o |= TCPI_OPT_WSCALE;
        }
        if c.ecn_enabled() {
            o |= TCPI_OPT_ECN;
        }
        if c.syn_data_acked() {
            o |= TCPI_OPT_SYN_DATA;
        }
        if c.is_fast_open_child() {
            o |= TCPI_OPT_TFO_CHILD;
        }
        let rto_count = c.rto_count().min(255) as u8;
        let srtt = c.srtt();
        TcpInfo {
            tcpi_state: linux_state(c.state()),
            tcpi_ca_state: c.ca_state(),
            tcpi_retransmits: rto_count,
            tcpi_backoff: rto_count,
            tcpi_options: o,
            tcpi_snd_rcv_wscale: (theirs & 0xf) | ((ours & 0xf) << 4),
            tcpi_rto: us(c.rto()),
            tcpi_ato: 40_000,
            tcpi_snd_mss: mss as u32,
            tcpi_rcv_mss: mss as u32,
            tcpi_unacked: (c.snd_nxt().0.wrapping_sub(c.snd_una().0) as usize).div_ceil(mss) as u32,
            tcpi_last_data_recv: st
                .last_data_recv
                .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u32),
            tcpi_pmtu: mtu as u32,
            tcpi_rtt: srtt.map_or(0, us),
            tcpi_rttvar: srtt.map_or(0, |d| us(d / 2)),
            tcpi_snd_ssthresh: (c.ssthresh() / mss).min(u32::MAX as usize) as u32,
            tcpi_snd_cwnd: (c.cwnd() / mss) as u32,
            tcpi_advmss: mss as u32,
            tcpi_sacked: c.sacked_out(),
            tcpi_lost: c.lost_out(),
            tcpi_reordering: c.reordering() as u32,
            tcpi_total_retrans: st.total_retrans,
            tcpi_retrans: c.retrans_out(),
            tcpi_busy_time: c.chrono_times(now).0.as_micros() as u64,
            tcpi_rwnd_limited: c.chrono_times(now).1.as_micros() as u64,
            tcpi_bytes_acked: st.bytes_acked,
            tcpi_bytes_received: st.bytes_received,
            tcpi_segs_out: st.segs_out,
            tcpi_segs_in: st.segs_in,
            tcpi_notsent_bytes: c
                .send_queued()
                .saturating_sub(c.snd_nxt().0.wrapping_sub(c.snd_una().0) as usize)
                as u32,
            tcpi_delivered: st.delivered,
            tcpi_snd_wnd: c.send_window().min(u32::MAX as usize) as u32,
            ..TcpInfo::default()
        }
    }

    /// The structure's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = (self as *const TcpInfo).cast::<u8>();
        // SAFETY: TcpInfo is `repr(C)` integers laid out without padding (its size is the sum
        // of its fields', checked by a test), so every byte is initialized; the slice covers
        // exactly the referenced value.
        unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<TcpInfo>()) }.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout is Linux's: the offsets of a few fields and the size up to
    /// `tcpi_total_rto_time`.
    #[test]
    fn layout_matches_linux() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(TcpInfo, tcpi_rto), 8);
        assert_eq!(offset_of!(TcpInfo, tcpi_rtt), 68);
        assert_eq!(offset_of!(TcpInfo, tcpi_total_retrans), 100);
        assert_eq!(offset_of!(TcpInfo, tcpi_pacing_rate), 104);
        assert_eq!(offset_of!(TcpInfo, tcpi_delivered), 192);
        assert_eq!(offset_of!(TcpInfo, tcpi_snd_wnd), 228);
        assert_eq!(std::mem::size_of::<TcpInfo>(), 248);
        // The first fields are the C library's `struct tcp_info`.
        assert_eq!(
            offset_of!(TcpInfo, tcpi_snd_cwnd),
            offset_of!(libc::tcp_info, tcpi_snd_cwnd)
        );
    }
}
