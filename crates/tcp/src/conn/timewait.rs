//! TIME-WAIT as a compact entry, as Linux keeps it (`inet_timewait_sock`): once a connection
//! the application has let go of settles in TIME-WAIT, the endpoint frees the full TCB and
//! keeps only what TIME-WAIT still needs (RFC 9293 §3.6.1 and §3.10.7.4, RFC 6191, RFC 7323):
//! the 4-tuple, `SND.NXT` and `RCV.NXT`, `TS.Recent`, the window it re-acknowledges with, when
//! it last answered an unacceptable segment, and its expiry.
//!
//! A segment for the entry (a retransmitted FIN, a SYN, a RST, an old duplicate) brings the TCB
//! back with [`Connection::restore_time_wait`], the ordinary code handles it, and the endpoint
//! compacts it again once quiet: the compact form changes what TIME-WAIT costs, never what it
//! does. A connection whose state the entry could not carry exactly (IPv6, a pending ACK or
//! reset, settings changed since it was made) simply stays a full TCB.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{AckDue, Connection};
use crate::buffer::RingBuffer;
use crate::config::Config;
use crate::seq::SeqNum;
use crate::state::{FourTuple, State};
use crate::time::Instant;
use crate::timer::Timer;

const TS_ENABLED: u8 = 1;
const SACK_ENABLED: u8 = 2;
const WS_AGREED: u8 = 4;
const ECN: u8 = 8;
const ECN_ECHO: u8 = 16;
const PASSIVE: u8 = 32;

/// A connection in TIME-WAIT, in 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWait {
    /// When 2·MSL runs out (microseconds of the endpoint's clock).
    expiry: u64,
    /// When an unacceptable segment was last answered (RFC 5961 §7 pace); `u64::MAX`: never.
    last_oow_ack: u64,
    local: [u8; 4],
    remote: [u8; 4],
    local_port: u16,
    remote_port: u16,
    snd_nxt: u32,
    rcv_nxt: u32,
    ts_recent: u32,
    /// The right edge of the window advertised last.
    rcv_adv: u32,
    max_snd_wnd: u32,
    /// The receive ring's capacity and its rounding slack: the window to re-ACK with.
    rcv_cap: u32,
    rcv_slack: u32,
    rcv_mss: u16,
    snd_mss: u16,
    seg_budget: u16,
    rcv_wscale: u8,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<TimeWait>() <= 64);

impl TimeWait {
    /// The connection's addresses and ports.
    pub fn tuple(&self) -> FourTuple {
        FourTuple {
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(self.local)), self.local_port),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(self.remote)), self.remote_port),
        }
    }

    /// When TIME-WAIT ends.
    pub fn expiry(&self) -> Instant {
        Instant::from_micros(self.expiry)
    }
}

fn small<T: TryFrom<usize>>(v: usize) -> Option<T> {
    T::try_from(v).ok()
}

impl Connection {
    /// The compact form of this connection, if it is in TIME-WAIT with nothing pending and
    /// everything the entry cannot carry as `config` would make it again. (Its timestamp
    /// offset is the endpoint's keyed function of the tuple, drawn again on restore.)
    pub(crate) fn compact_time_wait(&self, config: &Config) -> Option<TimeWait> {
        let (IpAddr::V4(local), IpAddr::V4(remote)) =
            (self.tuple().local.ip(), self.tuple().remote.ip())
        else {
            return None;
        };
        let quiet = self.state == State::TimeWait
            && self.orphaned
            && self.error.is_none()
            && self.send_buf.is_empty()
            && self.recv_buf.is_empty()
            && self.assembler.is_empty()
            && self.ooo_fin.is_none()
            && self.fin_received
            && self.fin_queued
            && self.snd_una == self.snd_nxt
            && self.snd_nxt == self.snd_max
            && self.send_buf_seq + 1 == self.snd_nxt
            && self.last_ack_sent == self.rcv_nxt
            && self.ack_due == AckDue::None
            && !self.challenge_pending
            && !self.send_rst
            && self.rst_reply.is_none()
            && !self.probe_due
            && !self.tlp_due
            && self.retransmit_at.is_none()
            && self.dsack.is_none()
            && self.timers.only(Timer::Close)
            && self.events.is_empty();
        let same_settings = self.msl.get() == config.msl
            && self.challenge_ack_interval.get() == config.challenge_ack_interval
            && self.ecn_mode == config.ecn;
        if !quiet || !same_settings {
            return None;
        }
        let mut flags = 0;
        for (on, bit) in [
            (self.ts_enabled, TS_ENABLED),
            (self.sack_enabled, SACK_ENABLED),
            (self.window_scaling_agreed, WS_AGREED),
            (self.ecn, ECN),
            (self.ecn_echo, ECN_ECHO),
            (self.passive, PASSIVE),
        ] {
            if on {
                flags |= bit;
            }
        }
        Some(TimeWait {
            expiry: self.timers.get(Timer::Close)?.as_micros(),
            last_oow_ack: self.last_oow_ack,
            local: local.octets(),
            remote: remote.octets(),
            local_port: self.tuple().local.port(),
            remote_port: self.tuple().remote.port(),
            snd_nxt: self.snd_nxt.0,
            rcv_nxt: self.rcv_nxt.0,
            ts_recent: self.ts_recent,
            rcv_adv: self.rcv_adv.0,
            max_snd_wnd: small(self.max_snd_wnd)?,
            rcv_cap: small(self.recv_buf.capacity())?,
            rcv_slack: small(self.rcv_slack)?,
            rcv_mss: small(self.rcv_mss)?,
            snd_mss: small(self.snd_mss)?,
            seg_budget: small(self.seg_budget)?,
            rcv_wscale: self.rcv_wscale,
            flags,
        })
    }

    /// Make this TCB the connection `tw` was compacted from, as far as TIME-WAIT can tell:
    /// every field its segments and ACKs depend on is back, the rest is as new.
    pub(crate) fn restore_time_wait(
        &mut self,
        config: &Config,
        tw: &TimeWait,
        ts_offset: u32,
        now: Instant,
    ) {
        let snd_nxt = SeqNum(tw.snd_nxt);
        let rcv_nxt = SeqNum(tw.rcv_nxt);
        // The SYN and the FIN each took one sequence number.
        self.reset(config, now, tw.tuple(), snd_nxt - 2, ts_offset);
        let flag = |bit: u8| tw.flags & bit != 0;
        self.state = State::TimeWait;
        self.passive = flag(PASSIVE);
        self.snd_una = snd_nxt;
        self.snd_max = snd_nxt;
        self.snd_nxt = snd_nxt;
        self.snd_wl1 = rcv_nxt;
        self.snd_wl2 = snd_nxt;
        self.max_snd_wnd = tw.max_snd_wnd as usize;
        self.snd_wnd = self.max_snd_wnd;
        self.recover_mark = snd_nxt;
        self.high_rxt = snd_nxt;
        self.snd_sml = snd_nxt;
        self.irs = rcv_nxt - 2;
        self.rcv_nxt = rcv_nxt;
        self.rcv_adv = SeqNum(tw.rcv_adv);
        self.rcv_slack = tw.rcv_slack as usize;
        self.rcv_wscale = tw.rcv_wscale;
        self.wscale_offer = None;
        self.window_scaling_agreed = flag(WS_AGREED);
        self.rcv_mss = tw.rcv_mss as usize;
        self.snd_mss = tw.snd_mss as usize;
        self.seg_budget = tw.seg_budget as usize;
        self.ts_enabled = flag(TS_ENABLED);
        self.ts_recent = tw.ts_recent;
        self.last_ack_sent = rcv_nxt;
        self.sack_enabled = flag(SACK_ENABLED);
        self.send_buf = RingBuffer::new(config.send_buffer);
        self.send_buf_seq = snd_nxt - 1;
        self.fin_queued = true;
        self.recv_buf = RingBuffer::new(tw.rcv_cap as usize);
        self.fin_received = true;
        self.read_closed = true;
        self.orphaned = true;
        self.timers.set(Timer::Close, tw.expiry());
        self.last_oow_ack = tw.last_oow_ack;
        self.ecn = flag(ECN);
        self.ecn_echo = flag(ECN_ECHO);
    }
}
