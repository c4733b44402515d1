//! Where an outgoing segment is written: a caller's plain buffer, or a device's packet buffer
//! handed out only once the segment's length is known.
//!
//! [`Connection::poll_transmit`](crate::Connection::poll_transmit) and
//! [`Endpoint::poll_transmit`](crate::Endpoint::poll_transmit) write into a `&mut [u8]`; their
//! `poll_transmit_to` variants write into a [`SegmentBuf`], so that a driver can let TCP build
//! each segment straight into the buffer the device sends (a pooled NIC buffer, a packet queue
//! entry allocated at the packet's length) instead of into a scratch buffer copied from after.

/// The room for one outgoing segment.
pub trait SegmentBuf {
    /// The longest segment that may be written (the room the MTU leaves after the IP header).
    fn room(&self) -> usize;

    /// The bytes of a segment of `len` bytes (`len <= self.room()`), to be written in full.
    /// Within one `poll_transmit_to` call it is asked for at most one length, and a second call
    /// returns the same bytes, as written so far.
    fn segment(&mut self, len: usize) -> &mut [u8];
}

/// A plain buffer: the segment is its first `len` bytes.
pub struct SliceBuf<'a>(pub &'a mut [u8]);

impl SegmentBuf for SliceBuf<'_> {
    #[inline]
    fn room(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn segment(&mut self, len: usize) -> &mut [u8] {
        &mut self.0[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_buf_is_its_prefix() {
        let mut b = [0u8; 8];
        let mut s = SliceBuf(&mut b);
        assert_eq!(s.room(), 8);
        s.segment(3).copy_from_slice(b"abc");
        assert_eq!(s.segment(3), b"abc");
        assert_eq!(&b[..4], b"abc\0");
    }
}
