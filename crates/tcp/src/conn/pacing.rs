//! Pacing, as Linux paces a flow when the `fq` qdisc or its internal pacing (`SO_MAX_PACING_RATE`,
//! BBR) asks for it (`tcp_update_pacing_rate`, `tcp_update_skb_after_send`).
//!
//! The rate is the congestion window (or the flight, if larger) per smoothed RTT, times 200 %
//! while in slow start below half of `ssthresh` (`tcp_pacing_ss_ratio`) and 120 % after
//! (`tcp_pacing_ca_ratio`), so that a window's worth goes out over part of an RTT instead of in
//! one burst. Each write-queue buffer sent (two segments, Linux's skb) moves the earliest time
//! of the next one on by its length at that rate; a flow that sends later than its slot gets
//! up to half of that back (Linux's allowance for scheduling jitter, which `fq` also grants).
//! The initial window's first ten segments go unpaced, as `fq` leaves them.

use crate::time::{Duration, Instant};

/// Linux's `tcp_pacing_ss_ratio` and `tcp_pacing_ca_ratio` defaults, in percent.
pub(crate) const SS_RATIO: u64 = 200;
pub(crate) const CA_RATIO: u64 = 120;

/// The segments sent before pacing starts (`fq`'s and Linux's initial allowance).
const UNPACED_SEGMENTS: u32 = 10;

/// When the next buffer may go (Linux's `tcp_wstamp_ns`), and what the current one has sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pacer {
    /// The earliest time the next buffer may leave.
    next: Option<Instant>,
    /// Bytes of the buffer under way, charged when it ends.
    owed: usize,
    /// Data segments sent so far (up to the unpaced allowance).
    segments: u32,
    /// A wake-up is owed at `next`: sending waits for it.
    waiting: bool,
    /// `SO_MAX_PACING_RATE` in bytes per second; 0: none.
    pub(crate) max_rate: u64,
}

impl Pacer {
    /// Whether a new buffer may start at `now` (one under way always continues).
    pub(crate) fn may_send(&self, now: Instant) -> bool {
        self.owed > 0 || self.next.is_none_or(|t| now >= t)
    }

    /// Sending waits: the caller is owed a wake-up at [`wake_at`](Self::wake_at).
    pub(crate) fn hold(&mut self) {
        self.waiting = true;
    }

    /// When the connection must be polled again to send what pacing held back.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.next.filter(|_| self.waiting)
    }

    /// The wake-up time came.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if self.next.is_some_and(|t| t <= now) {
            self.waiting = false;
        }
    }

    /// `len` bytes of data went out at `now`; `buffer_end`: they end a write-queue buffer, so
    /// the buffer's bytes are charged at `rate` bytes per second.
    pub(crate) fn on_send(&mut self, now: Instant, len: usize, buffer_end: bool, rate: u64) {
        self.waiting = false;
        self.segments = self.segments.saturating_add(1);
        self.owed += len;
        if !buffer_end {
            return;
        }
        let owed = std::mem::take(&mut self.owed);
        let rate = match (rate, self.max_rate) {
            (0, m) | (m, 0) => m,
            (r, m) => r.min(m),
        };
        if self.segments < UNPACED_SEGMENTS || rate == 0 {
            self.next = Some(self.next.map_or(now, |t| t.max(now)));
            return;
        }
        let prior = self.next.unwrap_or(now);
        let start = prior.max(now);
        let len_ns = (owed as u128 * 1_000_000_000 / rate as u128) as u64;
        // Sent late by `credit`: up to half of this buffer's time is given back.
        let credit = start.saturating_duration_since(prior).as_nanos() as u64;
        let len_ns = len_ns - (len_ns / 2).min(credit);
        self.next = Some(start + Duration::from_nanos(len_ns));
    }
}

/// The pacing rate in bytes per second: `cwnd` (or the flight, if larger) per `srtt`, by the
/// slow-start or congestion-avoidance ratio; unlimited (0) before an RTT is known.
pub(crate) fn rate(cwnd: usize, ssthresh: usize, flight: usize, srtt: Option<Duration>) -> u64 {
    let Some(srtt) = srtt.filter(|d| !d.is_zero()) else {
        return 0;
    };
    let ratio = if cwnd < ssthresh / 2 {
        SS_RATIO
    } else {
        CA_RATIO
    };
    let bytes = cwnd.max(flight) as u128 * ratio as u128 / 100;
    (bytes * 1_000_000 / srtt.as_micros().max(1)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn slow_start_rate_is_twice_the_window_per_rtt() {
        let r = rate(14_600, usize::MAX, 0, Some(Duration::from_millis(100)));
        assert_eq!(r, 292_000);
        assert_eq!(
            rate(14_600, 20_000, 0, Some(Duration::from_millis(100))),
            175_200,
            "120 % at or above half of ssthresh"
        );
        assert_eq!(rate(14_600, usize::MAX, 0, None), 0);
    }

    /// Ten segments go unpaced; then each buffer waits its length at the rate, less up to
    /// half for having been sent late.
    #[test]
    fn buffers_are_spaced_by_their_length_at_the_rate() {
        let mut p = Pacer::default();
        for _ in 0..5 {
            assert!(p.may_send(ms(0)));
            p.on_send(ms(0), 1000, false, 1_000_000);
            p.on_send(ms(0), 1000, true, 1_000_000);
        }
        // The tenth segment starts pacing: 2 ms for 2000 bytes at 1 MB/s, on time: no credit.
        assert_eq!(p.next, Some(ms(2)));
        assert!(!p.may_send(ms(1)));
        p.hold();
        assert_eq!(p.wake_at(), Some(ms(2)));
        // 100 ms late: half of the 2 ms is given back.
        p.on_send(ms(102), 2000, true, 1_000_000);
        assert_eq!(p.next, Some(ms(103)));
        assert_eq!(p.wake_at(), None);
    }
}

/// PRR's state (during a SACK recovery) and the pacer (when pacing), boxed together and only
/// while either exists: most connections carry one empty pointer.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateState(Option<Box<RateInner>>);

#[derive(Debug, Clone, Default)]
struct RateInner {
    prr: Option<super::Prr>,
    pacer: Option<Pacer>,
}

impl RateState {
    pub(crate) fn with_pacer() -> RateState {
        let mut r = RateState::default();
        r.pacer_or_default();
        r
    }

    pub(crate) fn prr(&self) -> Option<&super::Prr> {
        self.0.as_ref()?.prr.as_ref()
    }

    pub(crate) fn prr_mut(&mut self) -> Option<&mut super::Prr> {
        self.0.as_mut()?.prr.as_mut()
    }

    pub(crate) fn set_prr(&mut self, prr: Option<super::Prr>) {
        match (prr, self.0.as_mut()) {
            (None, None) => {}
            (p, Some(inner)) => inner.prr = p,
            (p, None) => {
                self.0 = Some(Box::new(RateInner {
                    prr: p,
                    pacer: None,
                }))
            }
        }
        if self
            .0
            .as_ref()
            .is_some_and(|i| i.prr.is_none() && i.pacer.is_none())
        {
            self.0 = None;
        }
    }

    pub(crate) fn pacer(&self) -> Option<&Pacer> {
        self.0.as_ref()?.pacer.as_ref()
    }

    pub(crate) fn pacer_mut(&mut self) -> Option<&mut Pacer> {
        self.0.as_mut()?.pacer.as_mut()
    }

    pub(crate) fn pacer_or_default(&mut self) -> &mut Pacer {
        self.0
            .get_or_insert_with(Box::default)
            .pacer
            .get_or_insert_with(Pacer::default)
    }
}
