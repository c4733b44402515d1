//! Sequence-number arithmetic, RFC 9293 §3.4: a 32-bit space compared modulo 2³².

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence number. Ordering is modular (RFC 9293 §3.4): `a < b` when `b - a`, taken as a
/// signed 32-bit difference, is positive. It is therefore not a total order over all of `u32`,
/// only over windows narrower than 2³¹, which every window TCP uses is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// The signed distance from `other` to `self`.
    #[inline]
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    #[inline]
    pub fn lt(self, other: SeqNum) -> bool {
        self.diff(other) < 0
    }

    #[inline]
    pub fn le(self, other: SeqNum) -> bool {
        self.diff(other) <= 0
    }

    #[inline]
    pub fn gt(self, other: SeqNum) -> bool {
        self.diff(other) > 0
    }

    #[inline]
    pub fn ge(self, other: SeqNum) -> bool {
        self.diff(other) >= 0
    }

    /// The later of the two.
    #[inline]
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self.ge(other) {
            self
        } else {
            other
        }
    }

    /// The earlier of the two.
    #[inline]
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self.le(other) {
            self
        } else {
            other
        }
    }

    /// `start <= self < end`, modular.
    #[inline]
    pub fn in_range(self, start: SeqNum, end: SeqNum) -> bool {
        self.ge(start) && self.lt(end)
    }

    /// The distance from `earlier` to `self` as a length; zero if `earlier` is later.
    #[inline]
    pub fn since(self, earlier: SeqNum) -> usize {
        self.diff(earlier).max(0) as usize
    }
}

impl Add<usize> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn add(self, n: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }
}

impl AddAssign<usize> for SeqNum {
    #[inline]
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

impl Sub<usize> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn sub(self, n: usize) -> SeqNum {
        SeqNum(self.0.wrapping_sub(n as u32))
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_around() {
        let a = SeqNum(u32::MAX - 1);
        let b = a + 4;
        assert_eq!(b, SeqNum(2));
        assert!(a.lt(b));
        assert!(b.gt(a));
        assert_eq!(b.diff(a), 4);
        assert_eq!(b.since(a), 4);
        assert_eq!(a.since(b), 0);
        assert!(SeqNum(0).in_range(a, b));
        assert!(!b.in_range(a, b));
    }

    proptest! {
        #[test]
        fn add_then_diff_is_identity(a: u32, n in 0u32..(1 << 31)) {
            let s = SeqNum(a);
            prop_assert_eq!((s + n as usize).diff(s), n as i32);
            prop_assert!((s + n as usize).ge(s));
        }

        #[test]
        fn order_is_antisymmetric_within_half_space(a: u32, n in 1u32..(1 << 31)) {
            let x = SeqNum(a);
            let y = x + n as usize;
            prop_assert!(x.lt(y));
            prop_assert!(!y.lt(x));
            prop_assert!(y.gt(x));
            prop_assert_eq!(x.max(y), y);
            prop_assert_eq!(x.min(y), x);
        }

        #[test]
        fn order_is_translation_invariant(a: u32, b: u32, t: u32) {
            let (x, y) = (SeqNum(a), SeqNum(b));
            prop_assert_eq!(x.lt(y), (x + t as usize).lt(y + t as usize));
        }

        #[test]
        fn sub_undoes_add(a: u32, n: u32) {
            prop_assert_eq!(SeqNum(a) + n as usize - n as usize, SeqNum(a));
        }
    }
}
