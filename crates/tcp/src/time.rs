//! Time as the core sees it: a monotonic [`Instant`] handed in by the driver.
//!
//! The core never reads a clock. An `Instant` counts microseconds from an epoch the driver
//! chooses (the start of a simulation, or the moment a real stack was made), so the same core
//! runs on the simulator's virtual clock and on the wall clock.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
pub use core::time::Duration;

/// A point in time, in microseconds since the driver's epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);
    /// Later than any deadline the core sets.
    pub const MAX: Instant = Instant(u64::MAX);

    pub const fn from_micros(us: u64) -> Instant {
        Instant(us)
    }

    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms.saturating_mul(1000))
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// The time since `earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// `d` in whole microseconds, saturating at `u64::MAX` (as `d.as_micros()`, without its
/// 128-bit arithmetic: this runs on every timer set).
#[inline]
pub(crate) fn duration_micros(d: Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(u64::from(d.subsec_micros())))
        .unwrap_or(u64::MAX)
}

/// `d` in whole nanoseconds, saturating at `u64::MAX` (as `d.as_nanos()`, in 64 bits).
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    #[inline]
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_micros(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Seconds with microsecond precision, as the ladder prints time: `1.250000`.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-bit conversions agree with `as_micros`/`as_nanos`, saturating where those exceed
    /// `u64::MAX`.
    #[test]
    fn conversions_match_the_128_bit_ones() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(999),
            Duration::from_nanos(1_001),
            Duration::from_micros(1_234_567),
            Duration::from_millis(200),
            Duration::new(18_446_744_073, 709_551_615),
            Duration::new(18_446_744_073_709, 551_616_000),
            Duration::new(u64::MAX / 1_000_000, 999_999_999),
            Duration::MAX,
        ];
        for d in cases {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            assert_eq!(duration_micros(d), us, "{d:?}");
            assert_eq!(duration_nanos(d), ns, "{d:?}");
            assert_eq!(
                Instant::from_micros(5) + d,
                Instant::from_micros(5u64.saturating_add(us))
            );
        }
    }
}
