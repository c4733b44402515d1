//! Congestion control behind a small trait (RFC 5681 for the shared rules).
//!
//! The connection owns loss detection and recovery (duplicate ACKs, SACK, RTO); an algorithm only
//! answers how large the congestion window is and how it moves on the four events below.

use core::fmt::Debug;

use crate::time::{Duration, Instant};

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// RFC 5681 slow start and congestion avoidance, with RFC 6582 NewReno recovery.
    #[default]
    NewReno,
    /// RFC 9438 CUBIC.
    Cubic,
}

impl Algorithm {
    /// The built-in controllers, held inline by each connection (no allocation).
    pub fn controller(self, mss: usize, initial_window: usize) -> Controller {
        match self {
            Algorithm::NewReno => Controller::NewReno(NewReno::new(mss, initial_window)),
            Algorithm::Cubic => Controller::Cubic(crate::cubic::Cubic::new(mss, initial_window)),
        }
    }
}

/// One of the built-in algorithms, as a value: the connection's controller.
#[derive(Debug, Clone)]
pub enum Controller {
    NewReno(NewReno),
    Cubic(crate::cubic::Cubic),
}

macro_rules! delegate {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Controller::NewReno($c) => $e,
            Controller::Cubic($c) => $e,
        }
    };
}

impl CongestionControl for Controller {
    fn name(&self) -> &'static str {
        delegate!(self, c => c.name())
    }
    fn cwnd(&self) -> usize {
        delegate!(self, c => c.cwnd())
    }
    fn ssthresh(&self) -> usize {
        delegate!(self, c => c.ssthresh())
    }
    fn on_ack(&mut self, now: Instant, acked: usize, flight: usize, rtt: Option<Duration>) {
        delegate!(self, c => c.on_ack(now, acked, flight, rtt))
    }
    fn on_congestion_event(&mut self, now: Instant, flight: usize) {
        delegate!(self, c => c.on_congestion_event(now, flight))
    }
    fn on_recovery_end(&mut self, now: Instant) {
        delegate!(self, c => c.on_recovery_end(now))
    }
    fn on_rto(&mut self, now: Instant, flight: usize) {
        delegate!(self, c => c.on_rto(now, flight))
    }
    fn set_mss(&mut self, mss: usize) {
        delegate!(self, c => c.set_mss(mss))
    }
    fn exit_slow_start(&mut self) {
        delegate!(self, c => c.exit_slow_start())
    }
}

/// A congestion controller. Windows are in bytes.
pub trait CongestionControl: Debug + Send {
    fn name(&self) -> &'static str;
    fn cwnd(&self) -> usize;
    fn ssthresh(&self) -> usize;
    /// `acked` bytes of new data were acknowledged outside recovery; `rtt` is a fresh sample.
    fn on_ack(&mut self, now: Instant, acked: usize, flight: usize, rtt: Option<Duration>);
    /// Loss was detected by duplicate ACKs or SACK: enter recovery (RFC 5681 §3.2 step 2).
    fn on_congestion_event(&mut self, now: Instant, flight: usize);
    /// Recovery ended with a full acknowledgment (RFC 6582 §3.2 step 3).
    fn on_recovery_end(&mut self, now: Instant);
    /// The retransmission timer expired (RFC 5681 §3.1, equation 4 and the loss window).
    fn on_rto(&mut self, now: Instant, flight: usize);
    /// The MSS changed (e.g. once options are known).
    fn set_mss(&mut self, mss: usize);
    /// Leave slow start where the window is now (HyStart++, RFC 9406 §4.2, saw the queue
    /// building): `ssthresh = cwnd`.
    fn exit_slow_start(&mut self);
}

/// The RFC 6928 initial window: `min(10*MSS, max(2*MSS, 14600))`, or `segments` MSS when set.
pub fn initial_window(mss: usize, segments: usize) -> usize {
    if segments == 10 {
        (10 * mss).min((2 * mss).max(14600))
    } else {
        segments * mss
    }
}

/// RFC 5681 congestion control with NewReno recovery.
#[derive(Debug, Clone)]
pub struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged during congestion avoidance not yet turned into window growth.
    acked_ca: usize,
}

impl NewReno {
    pub fn new(mss: usize, initial_window: usize) -> NewReno {
        NewReno {
            mss,
            cwnd: initial_window,
            ssthresh: usize::MAX,
            acked_ca: 0,
        }
    }
}

impl CongestionControl for NewReno {
    fn name(&self) -> &'static str {
        "newreno"
    }

    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, _now: Instant, acked: usize, _flight: usize, _rtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            // Slow start, counting bytes acknowledged (RFC 3465). Without RFC 3465's L limit,
            // as Linux does: a stretch ACK for a whole flight still doubles the window.
            self.cwnd = (self.cwnd + acked).min(self.ssthresh.max(self.cwnd + self.mss));
        } else {
            // Congestion avoidance: one SMSS per cwnd of data acknowledged (RFC 5681 §3.1).
            self.acked_ca += acked;
            if self.acked_ca >= self.cwnd {
                self.acked_ca -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, flight: usize) {
        // RFC 5681 equation (4): ssthresh = max(FlightSize / 2, 2*SMSS)
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked_ca = 0;
    }

    fn on_recovery_end(&mut self, _now: Instant) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, _now: Instant, flight: usize) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        // The loss window, one segment (RFC 5681 §3.1).
        self.cwnd = self.mss;
        self.acked_ca = 0;
    }

    fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
    }

    fn exit_slow_start(&mut self) {
        self.ssthresh = self.cwnd;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6928_initial_window() {
        assert_eq!(initial_window(1460, 10), 14600);
        assert_eq!(initial_window(536, 10), 5360);
        assert_eq!(initial_window(8960, 10), 17920);
        assert_eq!(initial_window(1000, 4), 4000);
    }

    #[test]
    fn newreno_slow_start_then_avoidance() {
        let mut c = NewReno::new(1000, 10_000);
        c.on_ack(Instant::ZERO, 1000, 0, None);
        assert_eq!(c.cwnd(), 11_000);
        c.on_congestion_event(Instant::ZERO, 20_000);
        assert_eq!(c.ssthresh(), 10_000);
        assert_eq!(c.cwnd(), 10_000);
        for _ in 0..10 {
            c.on_ack(Instant::ZERO, 1000, 0, None);
        }
        assert_eq!(c.cwnd(), 11_000);
        c.on_rto(Instant::ZERO, 11_000);
        assert_eq!(c.cwnd(), 1000);
        assert_eq!(c.ssthresh(), 5500);
    }
}
