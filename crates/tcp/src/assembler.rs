//! Out-of-order reassembly bookkeeping: which ranges past `RCV.NXT` hold data.
//!
//! The bytes themselves live in the receive ring, so memory is bounded by the receive buffer
//! however the peer behaves; this keeps only the ranges, at most [`MAX_RANGES`] of them. It also
//! yields SACK blocks in the order RFC 2018 §4 asks: the block holding the most recent segment
//! first, then the others most recent first.

use crate::seq::SeqNum;

/// Most out-of-order ranges tracked at once. When full, the highest range is forgotten to make
/// room for a lower one, as Linux prunes its out-of-order queue from the end: data nearer
/// `RCV.NXT` is worth more. (The bytes live in the receive ring, bounded by the window.)
pub const MAX_RANGES: usize = 256;

/// Ranges of received bytes, as offsets from the current `RCV.NXT`. Nothing is allocated while
/// nothing is held out of order (an idle connection keeps one word here); the ranges go once
/// the hole fills.
#[derive(Debug, Default, Clone)]
pub struct Assembler {
    inner: Option<Box<Ranges>>,
}

#[derive(Debug, Default, Clone)]
struct Ranges {
    /// Sorted, disjoint, non-adjacent `(start, end)` offsets, with the age of their last update
    /// (ages only order the ranges held: the clock may start over once none is).
    ranges: Vec<(usize, usize, u64)>,
    clock: u64,
}

impl Assembler {
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Drop the storage once nothing is held.
    #[inline]
    fn tidy(&mut self) {
        if self.inner.as_ref().is_some_and(|r| r.ranges.is_empty()) {
            self.inner = None;
        }
    }

    /// Record `[offset, offset+len)` as received. Returns false if it could not be recorded.
    pub fn add(&mut self, offset: usize, len: usize) -> bool {
        if len == 0 {
            return true;
        }
        let ok = self.inner.get_or_insert_default().add(offset, len);
        self.tidy();
        ok
    }

    /// `n` in-order bytes arrived at offset 0: returns how far the data is now contiguous from
    /// offset 0 (at least `n`), taking out every range that joined, and shifts the rest down by
    /// that much. Never fails, however many ranges are held.
    pub fn fill_front(&mut self, n: usize) -> usize {
        let Some(r) = self.inner.as_mut() else {
            return n;
        };
        let end = r.fill_front(n);
        self.tidy();
        end
    }

    /// Shift every range down by `n` after `RCV.NXT` advanced by `n` in-order bytes that were
    /// not themselves recorded here.
    pub fn advance(&mut self, n: usize) {
        if let Some(r) = self.inner.as_mut() {
            r.advance(n);
            self.tidy();
        }
    }

    /// SACK blocks for `rcv_nxt`, most recently updated first (RFC 2018 §4).
    pub fn sack_blocks(&self, rcv_nxt: SeqNum, out: &mut [(SeqNum, SeqNum)]) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |r| r.sack_blocks(rcv_nxt, out))
    }

    /// Bytes held out of order.
    pub fn held(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.held())
    }

    /// The end of the last range (the highest offset holding data).
    pub fn highest(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.highest())
    }

    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.inner
            .iter()
            .flat_map(|r| r.ranges.iter().map(|r| (r.0, r.1)))
    }
}
impl Ranges {
    fn add(&mut self, offset: usize, len: usize) -> bool {
        self.clock += 1;
        let (mut start, mut end) = (offset, offset + len);
        // Merge with every range it touches or overlaps.
        let mut i = 0;
        let mut insert_at = self.ranges.len();
        while i < self.ranges.len() {
            let (s, e, _) = self.ranges[i];
            if e < start {
                i += 1;
                continue;
            }
            if s > end {
                insert_at = i;
                break;
            }
            start = start.min(s);
            end = end.max(e);
            self.ranges.remove(i);
            insert_at = i;
        }
        if self.ranges.len() >= MAX_RANGES {
            if insert_at >= self.ranges.len() {
                // Above everything held: this one is the one to forget.
                return false;
            }
            self.ranges.pop();
        }
        self.ranges
            .insert(insert_at.min(self.ranges.len()), (start, end, self.clock));
        true
    }

    /// `n` in-order bytes arrived at offset 0: returns how far the data is now contiguous from
    /// offset 0 (at least `n`), taking out every range that joined, and shifts the rest down by
    /// that much. Never fails, however many ranges are held.
    fn fill_front(&mut self, n: usize) -> usize {
        let mut end = n;
        while let Some(&(s, e, _)) = self.ranges.first() {
            if s > end {
                break;
            }
            end = end.max(e);
            self.ranges.remove(0);
        }
        for r in &mut self.ranges {
            r.0 -= end;
            r.1 -= end;
        }
        end
    }

    /// Shift every range down by `n` after `RCV.NXT` advanced by `n` in-order bytes that were
    /// not themselves recorded here.
    fn advance(&mut self, n: usize) {
        self.ranges.retain_mut(|r| {
            if r.1 <= n {
                return false;
            }
            r.0 = r.0.saturating_sub(n);
            r.1 -= n;
            true
        });
    }

    /// SACK blocks for `rcv_nxt`, most recently updated first (RFC 2018 §4).
    fn sack_blocks(&self, rcv_nxt: SeqNum, out: &mut [(SeqNum, SeqNum)]) -> usize {
        let mut order: Vec<&(usize, usize, u64)> = self.ranges.iter().collect();
        order.sort_by_key(|r| std::cmp::Reverse(r.2));
        let n = order.len().min(out.len());
        for (slot, r) in out.iter_mut().zip(order) {
            *slot = (rcv_nxt + r.0, rcv_nxt + r.1);
        }
        n
    }

    /// Bytes held out of order.
    fn held(&self) -> usize {
        self.ranges.iter().map(|r| r.1 - r.0).sum()
    }

    /// The end of the last range (the highest offset holding data).
    fn highest(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_fills_the_front() {
        let mut a = Assembler::default();
        assert!(a.add(10, 5));
        assert!(a.add(20, 5));
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(10, 15), (20, 25)]);
        assert!(a.add(15, 5));
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(10, 25)]);
        assert!(a.add(0, 10));
        assert_eq!(a.fill_front(0), 25);
        assert!(a.is_empty());
    }

    #[test]
    fn sack_blocks_most_recent_first() {
        let mut a = Assembler::default();
        a.add(100, 10);
        a.add(300, 10);
        a.add(200, 10);
        let mut out = [(SeqNum(0), SeqNum(0)); 3];
        assert_eq!(a.sack_blocks(SeqNum(1000), &mut out), 3);
        assert_eq!(out[0], (SeqNum(1200), SeqNum(1210)));
        assert_eq!(out[1], (SeqNum(1300), SeqNum(1310)));
        assert_eq!(out[2], (SeqNum(1100), SeqNum(1110)));
    }

    #[test]
    fn advance_drops_covered_ranges() {
        let mut a = Assembler::default();
        a.add(5, 5);
        a.add(20, 5);
        a.advance(8);
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(0, 2), (12, 17)]);
    }

    #[test]
    fn bounded_number_of_ranges_forgets_the_highest() {
        let mut a = Assembler::default();
        for i in 0..MAX_RANGES {
            assert!(a.add(i * 10 + 1, 1));
        }
        // Above everything held: refused.
        assert!(!a.add(MAX_RANGES * 10 + 100, 1));
        // Below the highest: the highest range makes room.
        let highest = a.highest();
        assert!(a.add(5, 1));
        assert!(a.highest() < highest);
        assert_eq!(a.ranges().count(), MAX_RANGES);
        // In-order data is always taken, however many ranges are held.
        assert_eq!(a.fill_front(3), 3);
    }

    #[test]
    fn fill_front_joins_ranges_it_reaches() {
        let mut a = Assembler::default();
        a.add(5, 5);
        a.add(12, 3);
        a.add(30, 1);
        assert_eq!(a.fill_front(5), 10);
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(2, 5), (20, 21)]);
    }
}
