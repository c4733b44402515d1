//! A connection's timers as data: one optional deadline per kind.

use crate::time::Instant;

/// The kinds of timer a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Retransmission of the SYN, SYN-ACK, data or FIN (RFC 6298).
    Retransmit = 0,
    /// Zero-window probe (RFC 9293 §3.8.6.1).
    Persist = 1,
    /// Delayed acknowledgment (RFC 9293 §3.8.6.3).
    DelayedAck = 2,
    /// Keepalive probe (RFC 9293 §3.8.4).
    Keepalive = 3,
    /// TIME-WAIT's 2·MSL, or the FIN-WAIT-2 limit of an orphaned connection.
    Close = 4,
    /// The overall limit on an active open.
    Connect = 5,
    /// The RFC 5482 user timeout on unacknowledged data.
    UserTimeout = 6,
}

const COUNT: usize = 7;

const ALL: [Timer; COUNT] = [
    Timer::Retransmit,
    Timer::Persist,
    Timer::DelayedAck,
    Timer::Keepalive,
    Timer::Close,
    Timer::Connect,
    Timer::UserTimeout,
];

/// A table of deadlines, one per [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; COUNT],
}

impl TimerTable {
    #[inline]
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    #[inline]
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    #[inline]
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    #[inline]
    pub fn is_set(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize].is_some()
    }

    pub fn stop_all(&mut self) {
        self.deadlines = [None; COUNT];
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Take (stop) one timer whose deadline is at or before `now`, earliest first.
    pub fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let mut best: Option<(Instant, Timer)> = None;
        for t in ALL {
            if let Some(at) = self.deadlines[t as usize] {
                if at <= now && best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, t));
                }
            }
        }
        let (_, t) = best?;
        self.stop(t);
        Some(t)
    }
}
