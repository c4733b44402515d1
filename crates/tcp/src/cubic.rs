//! CUBIC congestion control, RFC 9438.

use crate::cc::CongestionControl;
use crate::time::{Duration, Instant};

/// RFC 9438 §4.6: β_cubic.
const BETA: f64 = 0.7;
/// RFC 9438 §5: C.
const C: f64 = 0.4;

/// CUBIC's window as a function of time since the last congestion event, with the Reno-friendly
/// region of RFC 9438 §4.3.
#[derive(Debug, Clone)]
pub struct Cubic {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// W_max in segments (RFC 9438 §4.1).
    w_max: f64,
    /// K in seconds.
    k: f64,
    /// Start of the current congestion-avoidance epoch, in microseconds ([`NONE`]: none).
    epoch: u64,
    /// cwnd at the start of the epoch, in segments.
    cwnd_epoch: f64,
    /// W_est of the Reno-friendly region, in segments.
    w_est: f64,
    /// Bytes acknowledged not yet turned into window growth.
    acked: usize,
    /// The smallest RTT seen, in nanoseconds ([`NONE`]: none yet).
    min_rtt: u64,
}

/// No epoch, no RTT: kept as plain integers, so that the controller takes 16 bytes less in
/// every connection than with `Option<Instant>` and `Option<Duration>`.
const NONE: u64 = u64::MAX;

impl Cubic {
    pub fn new(mss: usize, initial_window: usize) -> Cubic {
        Cubic {
            mss,
            cwnd: initial_window,
            ssthresh: usize::MAX,
            w_max: 0.0,
            k: 0.0,
            epoch: NONE,
            cwnd_epoch: 0.0,
            w_est: 0.0,
            acked: 0,
            min_rtt: NONE,
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd as f64 / self.mss as f64
    }
}

impl CongestionControl for Cubic {
    fn name(&self) -> &'static str {
        "cubic"
    }

    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, now: Instant, acked: usize, _flight: usize, rtt: Option<Duration>) {
        if let Some(r) = rtt {
            let ns = crate::time::duration_nanos(r).min(NONE - 1);
            self.min_rtt = self.min_rtt.min(ns);
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = (self.cwnd + acked).min(self.ssthresh.max(self.cwnd + self.mss));
            return;
        }
        if self.epoch == NONE {
            // RFC 9438 §4.2: a new epoch; K from the current window when W_max is below it.
            self.cwnd_epoch = self.cwnd as f64 / self.mss as f64;
            self.w_est = self.cwnd_epoch;
            if self.w_max <= self.cwnd_epoch {
                self.k = 0.0;
                self.w_max = self.cwnd_epoch;
            } else {
                self.k = ((self.w_max - self.cwnd_epoch) / C).cbrt();
            }
            self.epoch = now.as_micros().min(NONE - 1);
        }
        let epoch = Instant::from_micros(self.epoch);
        let rtt = if self.min_rtt == NONE {
            Duration::from_millis(100)
        } else {
            Duration::from_nanos(self.min_rtt)
        }
        .as_secs_f64();
        let t = (now - epoch).as_secs_f64();
        // RFC 9438 §4.2, equation (1), evaluated one RTT ahead.
        let target = C * (t + rtt - self.k).powi(3) + self.w_max;
        let cwnd = self.segments();
        // RFC 9438 §4.3: W_est grows as Reno with the AIMD factor α = 3(1-β)/(1+β).
        let alpha = 3.0 * (1.0 - BETA) / (1.0 + BETA);
        self.w_est += alpha * (acked as f64 / self.mss as f64) / cwnd;
        let goal = if self.w_est > target {
            self.w_est
        } else {
            // RFC 9438 §4.4: target limited to 1.5 cwnd.
            target.clamp(cwnd, 1.5 * cwnd)
        };
        // Increase by (goal - cwnd)/cwnd segments per acknowledged segment.
        self.acked += acked;
        let per_segment = ((goal - cwnd) / cwnd).max(0.0);
        let segs = self.acked / self.mss;
        if segs > 0 {
            self.acked %= self.mss;
            let grow = per_segment * segs as f64 * self.mss as f64;
            self.cwnd += grow as usize;
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, _flight: usize) {
        let cwnd = self.segments();
        // RFC 9438 §4.7 fast convergence.
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.ssthresh = ((self.cwnd as f64 * BETA) as usize).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.epoch = NONE;
        self.acked = 0;
    }

    fn on_recovery_end(&mut self, _now: Instant) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, now: Instant, flight: usize) {
        self.on_congestion_event(now, flight);
        self.cwnd = self.mss;
    }

    fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
    }

    fn exit_slow_start(&mut self) {
        self.ssthresh = self.cwnd;
        self.epoch = NONE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_by_beta_and_regrows_toward_w_max() {
        let mss = 1000;
        let mut c = Cubic::new(mss, 100 * mss);
        c.on_ack(Instant::ZERO, 1000, 0, Some(Duration::from_millis(40)));
        c.on_congestion_event(Instant::ZERO, 101 * mss);
        assert_eq!(c.cwnd(), 70_700);
        // One RTT at a time, each acknowledging a whole window: the window climbs back toward
        // W_max (101 segments) and plateaus near it before probing beyond.
        let mut now = Instant::ZERO;
        let mut last = c.cwnd();
        for _ in 0..40 {
            now += Duration::from_millis(40);
            let w = c.cwnd();
            c.on_ack(now, w, w, Some(Duration::from_millis(40)));
            assert!(c.cwnd() >= last);
            last = c.cwnd();
        }
        assert!(c.cwnd() > 90 * mss, "cwnd {}", c.cwnd());
    }
}
