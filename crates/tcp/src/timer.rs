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
    /// The tail loss probe (RFC 8985 §7): a segment sent when the ACKs of a flight's tail stop
    /// coming, so a lost tail is repaired by fast recovery, not a timeout.
    Probe = 7,
    /// The reordering window (RFC 8985 §6.2): loss inferred from duplicate ACKs or SACKs is
    /// acted on only if the hole is still there when it runs out.
    Reorder = 8,
}

const COUNT: usize = 9;

const ALL: [Timer; COUNT] = [
    Timer::Retransmit,
    Timer::Persist,
    Timer::DelayedAck,
    Timer::Keepalive,
    Timer::Close,
    Timer::Connect,
    Timer::UserTimeout,
    Timer::Probe,
    Timer::Reorder,
];

/// A table of deadlines, one per [`Timer`], with the earliest kept at hand: `next` is asked
/// after every input, so it is a field read, not a scan.
#[derive(Debug, Clone, Copy)]
pub struct TimerTable {
    /// Microseconds; `u64::MAX` is "not set".
    deadlines: [u64; COUNT],
    next: u64,
}

const UNSET: u64 = u64::MAX;

impl Default for TimerTable {
    fn default() -> TimerTable {
        TimerTable {
            deadlines: [UNSET; COUNT],
            next: UNSET,
        }
    }
}

impl TimerTable {
    #[inline]
    pub fn set(&mut self, timer: Timer, at: Instant) {
        let at = at.as_micros().min(UNSET - 1);
        let old = self.deadlines[timer as usize];
        self.deadlines[timer as usize] = at;
        if at <= self.next {
            self.next = at;
        } else if old == self.next {
            self.recompute();
        }
    }

    #[inline]
    pub fn stop(&mut self, timer: Timer) {
        let old = self.deadlines[timer as usize];
        if old == UNSET {
            return;
        }
        self.deadlines[timer as usize] = UNSET;
        if old == self.next {
            self.recompute();
        }
    }

    /// Out of line: the earliest deadline moved later, which is rarer than setting or
    /// stopping a timer, and every caller shares this one copy.
    #[inline(never)]
    fn recompute(&mut self) {
        self.next = self.deadlines.iter().copied().min().unwrap_or(UNSET);
    }

    #[inline]
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        let at = self.deadlines[timer as usize];
        (at != UNSET).then_some(Instant::from_micros(at))
    }

    #[inline]
    pub fn is_set(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize] != UNSET
    }

    /// Whether `timer` is set and no other is.
    pub fn only(&self, timer: Timer) -> bool {
        ALL.iter()
            .all(|&t| (self.deadlines[t as usize] != UNSET) == (t == timer))
    }

    pub fn stop_all(&mut self) {
        self.deadlines = [UNSET; COUNT];
        self.next = UNSET;
    }

    /// The earliest deadline.
    #[inline]
    pub fn next(&self) -> Option<Instant> {
        (self.next != UNSET).then_some(Instant::from_micros(self.next))
    }

    /// Take (stop) one timer whose deadline is at or before `now`, earliest first.
    pub fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let now = now.as_micros();
        if self.next > now {
            return None;
        }
        let mut best: Option<(u64, Timer)> = None;
        for t in ALL {
            let at = self.deadlines[t as usize];
            if at <= now && best.is_none_or(|(b, _)| at < b) {
                best = Some((at, t));
            }
        }
        let (_, t) = best?;
        self.stop(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_earliest() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Retransmit, Instant::from_millis(200));
        t.set(Timer::DelayedAck, Instant::from_millis(40));
        assert_eq!(t.next(), Some(Instant::from_millis(40)));
        t.set(Timer::DelayedAck, Instant::from_millis(400));
        assert_eq!(t.next(), Some(Instant::from_millis(200)));
        t.stop(Timer::Retransmit);
        assert_eq!(t.next(), Some(Instant::from_millis(400)));
        assert_eq!(t.take_expired(Instant::from_millis(399)), None);
        assert_eq!(
            t.take_expired(Instant::from_millis(400)),
            Some(Timer::DelayedAck)
        );
        assert_eq!(t.next(), None);
    }
}
