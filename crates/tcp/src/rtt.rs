//! The retransmission timeout, RFC 6298.

use crate::time::Duration;

/// No RTT sample yet.
const NO_SRTT: u64 = u64::MAX;

/// SRTT, RTTVAR and RTO as RFC 6298 §2 computes them, with the clock granularity `G` taken as
/// 1 ms and the floor and ceiling configurable (RFC 6298 §2.4 asks for 1 s; Linux uses 200 ms).
/// Kept in integer microseconds: this runs on every acknowledgment.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// Smoothed RTT in µs; [`NO_SRTT`] before the first measurement (8 bytes, not an
    /// `Option`'s 16).
    srtt: u64,
    rttvar: u64,
    rto: u64,
    min_rto: u64,
    max_rto: u64,
    /// Exponential backoff shift applied after timeouts (RFC 6298 §5.5).
    backoff: u32,
    /// The floor applies to the variance term (Linux), not to the sum (RFC 6298 §2.4).
    linux: bool,
}

const G_US: u64 = 1000;

#[inline]
fn us(d: Duration) -> u64 {
    crate::time::duration_micros(d)
}

impl RttEstimator {
    /// Before any measurement the RTO is `initial` (RFC 6298 §2.1: 1 s).
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        let (min_rto, max_rto) = (us(min_rto), us(max_rto).max(us(min_rto)));
        RttEstimator {
            srtt: NO_SRTT,
            rttvar: 0,
            rto: us(initial).clamp(min_rto, max_rto),
            min_rto,
            max_rto,
            backoff: 0,
            linux: false,
        }
    }

    /// Linux's RTO: SRTT + max(4·RTTVAR, floor), for the samples to come.
    pub fn set_linux(&mut self, on: bool) {
        self.linux = on;
    }

    /// Fold in one RTT measurement (RFC 6298 §2.2 and §2.3). Karn's rule (§3) is the caller's:
    /// no sample from a retransmitted segment unless timestamps disambiguate it.
    pub fn sample(&mut self, r: Duration) {
        let r = us(r);
        let r = r.min(NO_SRTT - 1);
        let prev = (self.srtt != NO_SRTT).then_some(self.srtt);
        let srtt = match prev {
            None => {
                self.rttvar = r / 2;
                r
            }
            Some(srtt) => {
                // RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|, beta = 1/4
                self.rttvar = self.rttvar * 3 / 4 + srtt.abs_diff(r) / 4;
                // SRTT <- (1 - alpha) * SRTT + alpha * R', alpha = 1/8
                srtt * 7 / 8 + r / 8
            }
        };
        self.srtt = srtt;
        let var = self.rttvar.saturating_mul(4).max(G_US);
        let var = if self.linux {
            var.max(self.min_rto)
        } else {
            var
        };
        self.rto = srtt.saturating_add(var).clamp(self.min_rto, self.max_rto);
        // A new measurement ends any backoff (RFC 6298 §5.7's spirit: the RTO is recomputed).
        self.backoff = 0;
    }

    /// The timeout to arm now, with backoff applied and capped.
    pub fn rto(&self) -> Duration {
        let factor = 1u64.checked_shl(self.backoff).unwrap_or(u64::MAX);
        Duration::from_micros(self.rto.saturating_mul(factor).min(self.max_rto))
    }

    /// RFC 6298 §5.5: double the RTO after a timeout.
    pub fn back_off(&mut self) {
        if us(self.rto()) < self.max_rto {
            self.backoff += 1;
        }
    }

    /// Drop the backoff once an ACK acknowledges new data (RFC 6298 §5.3 restarts the timer with
    /// the current RTO).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us().map(Duration::from_micros)
    }

    /// [`srtt`](Self::srtt) in microseconds.
    #[inline]
    pub fn srtt_us(&self) -> Option<u64> {
        (self.srtt != NO_SRTT).then_some(self.srtt)
    }

    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar)
    }

    /// RFC 6298 §5.7: after the SYN's timer expired, an established connection starts from an
    /// RTO of 3 s if no RTT was measured.
    pub fn set_base(&mut self, rto: Duration) {
        self.rto = us(rto).clamp(self.min_rto, self.max_rto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn first_sample_sets_srtt_and_rttvar() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        // 100 + 4*50 = 300 ms
        assert_eq!(e.rto(), Duration::from_millis(300));
    }

    #[test]
    fn later_samples_smooth() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        e.sample(Duration::from_millis(200));
        // rttvar = 3/4*50 + 1/4*100 = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.rto(), Duration::from_micros(362_500));
    }

    #[test]
    fn backoff_doubles_and_caps_and_resets() {
        let mut e = est();
        e.back_off();
        assert_eq!(e.rto(), Duration::from_secs(2));
        e.back_off();
        assert_eq!(e.rto(), Duration::from_secs(4));
        for _ in 0..10 {
            e.back_off();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.reset_backoff();
        assert_eq!(e.rto(), Duration::from_secs(1));
    }

    #[test]
    fn linux_floors_the_variance() {
        let mut e = est();
        e.set_linux(true);
        e.sample(Duration::from_millis(10));
        // 10 + max(4·5, 200) ms.
        assert_eq!(e.rto(), Duration::from_millis(210));
        let mut e = est();
        e.set_linux(true);
        e.sample(Duration::from_millis(100));
        assert_eq!(e.rto(), Duration::from_millis(300));
    }

    #[test]
    fn floor_applies() {
        let mut e = est();
        e.sample(Duration::from_millis(1));
        assert_eq!(e.rto(), Duration::from_millis(200));
    }
}
