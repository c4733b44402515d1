//! A byte ring with a fixed capacity whose storage grows on demand.
//!
//! The send buffer keeps unacknowledged and unsent bytes; the receive buffer keeps in-order bytes
//! not yet read and, past them, out-of-order bytes written at an offset (their extent is kept by
//! the [`Assembler`](crate::assembler::Assembler)). Storage is allocated lazily, doubling up to the
//! capacity, so a connection that moves a few bytes costs a few bytes.

use synack_wire::copy_sum::{after_odd, copy_and_sum};

/// `x mod cap` for `x < 2 * cap` (every position here is a head below `cap` plus a length
/// within the storage): a compare, not a division, on the per-segment path.
#[inline(always)]
fn wrap(x: usize, cap: usize) -> usize {
    debug_assert!(x < 2 * cap);
    if x >= cap {
        x - cap
    } else {
        x
    }
}

/// A ring buffer of at most `capacity` bytes (below 4 GiB: positions are kept in 32 bits, so
/// that an idle connection's two rings take 40 bytes each).
#[derive(Debug, Default)]
pub struct RingBuffer {
    /// A boxed slice, not a `Vec`: its length is its capacity, and it saves a word.
    storage: Box<[u8]>,
    head: u32,
    len: u32,
    capacity: u32,
    /// Under memory pressure, the storage may not grow past this (`NO_LIMIT`: the capacity).
    limit: u32,
}

const NO_LIMIT: u32 = u32::MAX;

impl RingBuffer {
    /// A ring of `capacity` bytes (at most `u32::MAX - 1`).
    pub fn new(capacity: usize) -> RingBuffer {
        RingBuffer {
            storage: Box::default(),
            head: 0,
            len: 0,
            capacity: capacity.min(NO_LIMIT as usize - 1) as u32,
            limit: NO_LIMIT,
        }
    }

    /// Cap the storage at `limit` bytes (never below what it has), or lift the cap.
    pub fn set_limit(&mut self, limit: Option<usize>) {
        self.limit = limit.map_or(NO_LIMIT, |l| l.min(NO_LIMIT as usize - 1) as u32);
    }

    #[inline(always)]
    fn head(&self) -> usize {
        self.head as usize
    }

    /// The most storage may grow to now.
    #[inline]
    fn ceiling(&self) -> usize {
        let capacity = self.capacity as usize;
        if self.limit == NO_LIMIT {
            capacity
        } else {
            (self.limit as usize).max(self.storage.len()).min(capacity)
        }
    }

    /// Room behind the in-order bytes that storage can hold now or may grow to.
    #[inline]
    pub fn growable_free(&self) -> usize {
        self.ceiling().saturating_sub(self.len as usize)
    }

    /// Give the ring storage to use (from a pool), if it has none yet; the bytes in it are
    /// never read before being written.
    pub fn adopt(&mut self, storage: Vec<u8>) {
        if self.storage.is_empty() && self.len == 0 && !storage.is_empty() {
            // From `take_storage`: length and capacity agree, so this does not reallocate.
            self.storage = storage.into_boxed_slice();
            self.head = 0;
        }
    }

    /// Take the storage out (for a pool), leaving the ring empty.
    pub fn take_storage(&mut self) -> Vec<u8> {
        self.head = 0;
        self.len = 0;
        std::mem::take(&mut self.storage).into_vec()
    }

    /// Bytes held in order from the front.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Bytes of storage allocated so far (storage grows on demand up to the capacity).
    #[inline]
    pub fn allocated(&self) -> usize {
        self.storage.len()
    }

    /// Room left behind the in-order bytes.
    #[inline]
    pub fn free(&self) -> usize {
        (self.capacity - self.len) as usize
    }

    /// Make the storage hold at least `needed` bytes (never more than the capacity).
    fn reserve(&mut self, needed: usize) {
        let ceiling = self.ceiling();
        let needed = needed.min(ceiling);
        if needed <= self.storage.len() {
            return;
        }
        // Start at what is needed (a connection that moves a few bytes costs a few bytes),
        // then double.
        let new_len = needed
            .next_power_of_two()
            .max(self.storage.len() * 2)
            .max(64)
            .min(ceiling);
        let mut storage = vec![0u8; new_len].into_boxed_slice();
        // Linearize everything the ring may hold (including out-of-order bytes past `len`).
        let old = self.storage.len();
        if old > 0 {
            let (a, b) = self.storage.split_at(self.head());
            storage[..b.len()].copy_from_slice(b);
            storage[b.len()..old].copy_from_slice(a);
        }
        self.storage = storage;
        self.head = 0;
    }

    /// Copy `data` to `offset` bytes past the in-order end without making it readable; returns
    /// how many bytes fit.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        if offset >= self.free() {
            return 0;
        }
        let n = data.len().min(self.free() - offset);
        if n == 0 {
            return 0;
        }
        let len = self.len();
        self.reserve(len + offset + n);
        // Under a storage limit, only what fits.
        let n = n.min(self.storage.len().saturating_sub(len + offset));
        if n == 0 {
            return 0;
        }
        let cap = self.storage.len();
        let start = wrap(self.head() + len + offset, cap);
        let first = n.min(cap - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        self.storage[..n - first].copy_from_slice(&data[first..n]);
        n
    }

    /// [`write_at`](Self::write_at) of all of `data`, summing it for the Internet checksum as
    /// it is copied (one pass: RFC 1071 §2(D)); returns the partial sum from zero, as
    /// `ones_complement_sum(data, 0)` gives it. Only into storage the ring already has: `None`,
    /// with nothing written, when `data` does not fit there whole. Nothing becomes readable
    /// until [`commit`](Self::commit), so a caller that finds the sum wrong leaves the ring's
    /// contents as they were by not committing.
    pub fn write_at_and_sum(&mut self, offset: usize, data: &[u8]) -> Option<u64> {
        let n = data.len();
        let len = self.len();
        if offset + n > self.free() || len + offset + n > self.storage.len() {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        let cap = self.storage.len();
        let start = wrap(self.head() + len + offset, cap);
        let first = n.min(cap - start);
        let sum = copy_and_sum(&mut self.storage[start..start + first], &data[..first], 0);
        if first == n {
            return Some(sum);
        }
        let rest = copy_and_sum(&mut self.storage[..n - first], &data[first..], 0);
        let rest = if first % 2 == 1 {
            after_odd(rest)
        } else {
            rest
        };
        let (s, carry) = sum.overflowing_add(rest);
        Some(s + u64::from(carry))
    }

    /// Make `n` bytes written with `write_at(0, ..)` (and following) readable.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.free());
        self.len += n.min(self.free()) as u32;
    }

    /// Append as much of `data` as fits; returns the count.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = self.write_at(0, data);
        self.commit(n);
        n
    }

    /// Copy out and remove up to `buf.len()` bytes from the front.
    pub fn pop(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.len());
        let (a, b) = self.slices(0, n);
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..n].copy_from_slice(b);
        self.discard(n);
        n
    }

    /// Remove `n` bytes from the front.
    pub fn discard(&mut self, n: usize) {
        let n = n.min(self.len());
        self.len -= n as u32;
        if self.storage.is_empty() {
            return;
        }
        self.head = wrap(self.head() + n, self.storage.len()) as u32;
        if self.len == 0 {
            // Keep out-of-order bytes where they are; only reset when nothing can be there.
            // (The receive path rewrites them at the same logical offsets either way.)
        }
    }

    /// The in-order bytes `[offset, offset + len)` as at most two slices.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let len = len.min(self.len().saturating_sub(offset));
        if len == 0 {
            return (&[], &[]);
        }
        let cap = self.storage.len();
        let start = wrap(self.head() + offset, cap);
        let first = len.min(cap - start);
        (
            &self.storage[start..start + first],
            &self.storage[..len - first],
        )
    }

    /// Copy `[offset, offset + dst.len())` of the in-order bytes into `dst`.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        let (a, b) = self.slices(offset, dst.len());
        dst[..a.len()].copy_from_slice(a);
        dst[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// [`copy_out`](Self::copy_out), summing the bytes for the Internet checksum as they are
    /// copied (one pass, not two: RFC 1071 §2(D)); returns the count and the partial sum from
    /// zero, as `ones_complement_sum` of the bytes copied would give it.
    pub fn copy_out_and_sum(&self, offset: usize, dst: &mut [u8]) -> (usize, u64) {
        let (a, b) = self.slices(offset, dst.len());
        let (da, rest) = dst.split_at_mut(a.len());
        let sum = copy_and_sum(da, a, 0);
        if b.is_empty() {
            return (a.len(), sum);
        }
        let sb = copy_and_sum(&mut rest[..b.len()], b, 0);
        // The second piece pairs its bytes as the whole does only after an even first one.
        let sb = if a.len() % 2 == 1 { after_odd(sb) } else { sb };
        let (s, carry) = sum.overflowing_add(sb);
        (a.len() + b.len(), s + u64::from(carry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pop_wraps() {
        let mut r = RingBuffer::new(10);
        assert_eq!(r.push(b"abcdefgh"), 8);
        let mut out = [0; 5];
        assert_eq!(r.pop(&mut out), 5);
        assert_eq!(&out, b"abcde");
        assert_eq!(r.push(b"ijklmnop"), 7);
        let mut all = [0; 10];
        assert_eq!(r.pop(&mut all), 10);
        assert_eq!(&all, b"fghijklmno");
        assert!(r.is_empty());
    }

    #[test]
    fn out_of_order_write_then_commit() {
        let mut r = RingBuffer::new(8192);
        assert_eq!(r.write_at(3, b"def"), 3);
        assert_eq!(r.len(), 0);
        assert_eq!(r.write_at(0, b"abc"), 3);
        r.commit(6);
        let mut out = [0; 6];
        r.pop(&mut out);
        assert_eq!(&out, b"abcdef");
    }

    #[test]
    fn grows_preserving_out_of_order_bytes() {
        let mut r = RingBuffer::new(100_000);
        r.push(&[1; 4000]);
        let mut sink = [0; 3000];
        r.pop(&mut sink);
        // head is now at 3000 of a 4096 storage; write past the end to force growth.
        assert_eq!(r.write_at(5000, &[7; 10]), 10);
        // Offsets count from the end of the in-order bytes (1000 of them remain).
        assert_eq!(r.write_at(0, &[9; 5000]), 5000);
        r.commit(5010);
        let mut out = vec![0; 6010];
        assert_eq!(r.pop(&mut out), 6010);
        assert!(out[..1000].iter().all(|&b| b == 1));
        assert!(out[1000..6000].iter().all(|&b| b == 9));
        assert!(out[6000..].iter().all(|&b| b == 7));
    }

    #[test]
    fn copy_out_and_sum_across_the_wrap() {
        use synack_wire::checksum::{fold, ones_complement_sum};
        // Odd and even capacities put the wrap at odd and even offsets of what is copied.
        for cap in [64usize, 101, 4096] {
            let mut r = RingBuffer::new(cap);
            let fill: Vec<u8> = (0..cap).map(|i| (i * 31 + 7) as u8).collect();
            for skip in 0..cap.min(80) {
                r.discard(r.len());
                r.push(&fill[..skip]);
                r.discard(skip);
                assert_eq!(r.push(&fill), cap);
                for (offset, len) in [(0, cap), (1, cap - 1), (3, cap / 2), (cap / 3, 17)] {
                    let mut out = vec![0u8; len];
                    let (n, sum) = r.copy_out_and_sum(offset, &mut out);
                    assert_eq!(n, len);
                    assert_eq!(out, fill[offset..offset + len], "cap {cap} skip {skip}");
                    assert_eq!(
                        fold(sum),
                        fold(ones_complement_sum(&out, 0)),
                        "cap {cap} skip {skip} offset {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn write_at_and_sum_across_the_wrap_or_not_at_all() {
        use synack_wire::checksum::{fold, ones_complement_sum};
        for cap in [64usize, 101, 4096] {
            let data: Vec<u8> = (0..cap).map(|i| (i * 13 + 3) as u8).collect();
            for skip in 0..cap.min(70) {
                let mut r = RingBuffer::new(cap);
                // Storage allocated whole, the head moved to `skip`.
                r.push(&data);
                r.discard(cap);
                r.push(&data[..skip]);
                r.discard(skip);
                r.push(&data[..7]);
                let len = cap - 7 - 3;
                let sum = r.write_at_and_sum(2, &data[..len]).expect("fits");
                assert_eq!(fold(sum), fold(ones_complement_sum(&data[..len], 0)));
                // Not readable until committed.
                assert_eq!(r.len(), 7);
                assert_eq!(r.write_at(0, b"xy"), 2);
                r.commit(2 + len);
                let mut out = vec![0u8; 9 + len];
                assert_eq!(r.pop(&mut out), 9 + len);
                assert_eq!(&out[..7], &data[..7]);
                assert_eq!(&out[7..9], b"xy");
                assert_eq!(&out[9..], &data[..len], "cap {cap} skip {skip}");
            }
            // Past the free space, or past the storage allocated so far: nothing written.
            let mut r = RingBuffer::new(cap);
            assert_eq!(r.write_at_and_sum(0, &data[..1]), None);
            r.push(&data[..cap / 2]);
            assert_eq!(r.write_at_and_sum(cap / 2, &data[..1]), None);
            assert_eq!(r.write_at_and_sum(0, &data[..cap / 2 + 1]), None);
        }
    }

    #[test]
    fn never_exceeds_capacity() {
        let mut r = RingBuffer::new(4);
        assert_eq!(r.push(b"abcdef"), 4);
        assert_eq!(r.write_at(0, b"x"), 0);
        assert_eq!(r.write_at(10, b"x"), 0);
    }
}
