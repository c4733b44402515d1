//! Proportional Rate Reduction (RFC 6937), the window fast recovery sends by, as Linux runs
//! it for every fast recovery (`tcp_cwnd_reduction`).
//!
//! On entering recovery the congestion controller picks `ssthresh`; PRR then spreads the
//! reduction from the window before the loss (`RecoverFS`, Linux's `prior_cwnd`) down to
//! `ssthresh` over the ACKs of the recovery, instead of going silent until the pipe has
//! drained to the new window (or, as RFC 6675 alone does, sending a burst when many holes are
//! found at once). Each ACK (RFC 6937 §3.1):
//!
//! - `prr_delivered += DeliveredData` (bytes newly acknowledged or SACKed, rounded up to
//!   whole segments: Linux counts packets, so a short segment delivered frees a full one);
//! - while `pipe > ssthresh`, the proportional part:
//!   `sndcnt = ceil(prr_delivered * ssthresh / RecoverFS) - prr_out`;
//! - else the slow-start reduction bound: with an ACK that advanced `SND.UNA` and marked no
//!   new loss, PRR-SSRB: `sndcnt = min(ssthresh - pipe, max(prr_delivered - prr_out,
//!   DeliveredData) + MSS)`; otherwise PRR-CRB: `sndcnt = min(ssthresh - pipe,
//!   DeliveredData)` (Linux's choice between the two bounds);
//! - the first ACK of a recovery sends at least the fast retransmission (`sndcnt >= MSS`
//!   while `prr_out == 0`).
//!
//! The window is then `pipe + sndcnt`, kept until the next ACK that delivers data (an ACK that
//! delivers nothing changes nothing, as in Linux); every segment sent during the recovery,
//! retransmission or new data, counts into `prr_out`.

/// PRR's per-recovery state (RFC 6937 §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Prr {
    /// `RecoverFS`: the congestion window when the recovery began (Linux's `prior_cwnd`).
    recover_fs: usize,
    /// `prr_delivered`: bytes delivered to the receiver since the recovery began.
    delivered: usize,
    /// `prr_out`: bytes sent since the recovery began.
    out: usize,
    /// The window the recovery sends by: `pipe + sndcnt` of the last ACK.
    cwnd: usize,
}

impl Prr {
    /// A recovery begins with the window `prior_cwnd` and `pipe` bytes in flight: until the
    /// first ACK, only the fast retransmission goes (it is sent outside the window).
    pub(crate) fn start(prior_cwnd: usize, pipe: usize) -> Prr {
        Prr {
            recover_fs: prior_cwnd.max(1),
            delivered: 0,
            out: 0,
            cwnd: pipe,
        }
    }

    /// One ACK of the recovery delivered `delivered` bytes, leaving `pipe` bytes in flight;
    /// `una_advanced`: it moved `SND.UNA`; `newly_lost`: it showed bytes lost that were not
    /// before. Returns the new window.
    pub(crate) fn on_ack(
        &mut self,
        delivered: usize,
        pipe: usize,
        ssthresh: usize,
        una_advanced: bool,
        newly_lost: bool,
        mss: usize,
    ) -> usize {
        if delivered == 0 {
            return self.cwnd;
        }
        // Linux counts in packets: a segment delivered lets a segment go, however short.
        let delivered = delivered.div_ceil(mss.max(1)) * mss.max(1);
        self.delivered += delivered;
        let sndcnt = if pipe > ssthresh {
            // RFC 6937 §3.1, the proportional part, rounded up to whole segments as Linux
            // counts it in packets.
            let share = (self.delivered as u128 * ssthresh as u128)
                .div_ceil(self.recover_fs as u128 * mss.max(1) as u128);
            (share as usize * mss).saturating_sub(self.out)
        } else if una_advanced && !newly_lost {
            // PRR-SSRB: slow start back up to ssthresh, one segment beyond what was delivered.
            (ssthresh - pipe).min(self.delivered.saturating_sub(self.out).max(delivered) + mss)
        } else {
            // PRR-CRB: conservation, no more than was delivered.
            (ssthresh - pipe).min(delivered)
        };
        // The first ACK of a recovery sends the fast retransmission whatever the arithmetic.
        let sndcnt = if self.out == 0 {
            sndcnt.max(mss)
        } else {
            sndcnt
        };
        self.cwnd = pipe + sndcnt;
        self.cwnd
    }

    /// `len` bytes (and sequence space) were sent during the recovery.
    pub(crate) fn on_send(&mut self, len: usize) {
        self.out += len;
    }

    /// The window the recovery sends by now.
    pub(crate) fn cwnd(&self) -> usize {
        self.cwnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// RFC 6937's running example shape: 20 segments in flight, one lost, ssthresh 10: PRR
    /// sends one segment for every two delivered, never a burst, while pipe exceeds ssthresh.
    #[test]
    fn proportional_half_rate() {
        let mut p = Prr::start(20 * MSS, 19 * MSS);
        let mut sent = 0;
        let mut pipe = 19 * MSS;
        for i in 0..16 {
            let cwnd = p.on_ack(MSS, pipe - MSS, 10 * MSS, false, false, MSS);
            pipe -= MSS;
            let n = cwnd.saturating_sub(pipe) / MSS;
            for _ in 0..n {
                p.on_send(MSS);
                pipe += MSS;
            }
            sent += n;
            // After 2k+1 deliveries (first ACK forced) PRR has sent k+1 segments.
            assert_eq!(sent, i / 2 + 1, "after {} ACKs", i + 1);
        }
    }

    /// Below ssthresh, an ACK that advances SND.UNA with no new loss may send what was
    /// delivered and one segment more (PRR-SSRB); without, only what was delivered (PRR-CRB).
    #[test]
    fn slow_start_reduction_bound() {
        let mut p = Prr::start(10 * MSS, MSS);
        assert_eq!(p.on_ack(MSS, MSS, 7 * MSS, false, false, MSS), 2 * MSS);
        p.on_send(MSS);
        // Two segments delivered by an ACK of SND.UNA: 2 + 1 may go.
        assert_eq!(p.on_ack(2 * MSS, MSS, 7 * MSS, true, false, MSS), 4 * MSS);
        p.on_send(3 * MSS);
        // Conservation when the ACK also marked a loss.
        assert_eq!(
            p.on_ack(2 * MSS, 2 * MSS, 7 * MSS, true, true, MSS),
            4 * MSS
        );
        // Never beyond ssthresh.
        assert_eq!(
            p.on_ack(5 * MSS, 6 * MSS, 7 * MSS, true, false, MSS),
            7 * MSS
        );
        // An ACK that delivers nothing keeps the window.
        assert_eq!(p.on_ack(0, 0, 7 * MSS, true, false, MSS), 7 * MSS);
    }
}
