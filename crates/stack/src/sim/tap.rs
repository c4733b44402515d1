//! Taps: observers of the packets crossing one host's interface.

use std::cell::{Ref, RefCell};
use std::rc::Rc;

use synack_tcp::time::Instant;

/// Which way a packet crossed the tapped host's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The host emitted it (recorded before any impairment, even if the network then drops it).
    Tx,
    /// It was delivered to the host (recorded after impairments, corruption included).
    Rx,
}

/// An observer of one host's interface, attached with
/// [`Network::tap`](super::Network::tap).
///
/// Each packet the host sends is seen once as [`Direction::Tx`] and each packet delivered to it
/// once as [`Direction::Rx`], so a capture of one host shows every segment once.
pub trait Tap {
    /// A packet crossed the interface at `now`.
    fn packet(&mut self, now: Instant, dir: Direction, packet: &[u8]);
}

/// A tap behind a shared handle: keep a clone of the `Rc` to read the tap after handing it to
/// the network.
impl<T: Tap + ?Sized> Tap for Rc<RefCell<T>> {
    fn packet(&mut self, now: Instant, dir: Direction, packet: &[u8]) {
        self.borrow_mut().packet(now, dir, packet);
    }
}

impl<T: Tap + ?Sized> Tap for Box<T> {
    fn packet(&mut self, now: Instant, dir: Direction, packet: &[u8]) {
        (**self).packet(now, dir, packet);
    }
}

/// One packet seen by a [`PacketLog`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoggedPacket {
    /// When it crossed the interface.
    pub time: Instant,
    /// Which way.
    pub dir: Direction,
    /// The IP packet, as it was at that point (so an Rx copy shows any corruption).
    pub bytes: Vec<u8>,
}

/// A tap that keeps every packet in memory, behind a shared handle.
///
/// Clones share the same log: hand one clone to [`Network::tap`](super::Network::tap) and read
/// the other.
///
/// ```
/// use synack_stack::sim::{Direction, PacketLog, Tap};
/// use synack_tcp::time::Instant;
///
/// let log = PacketLog::new();
/// let mut tap: Box<dyn Tap> = Box::new(log.clone());
/// tap.packet(Instant::ZERO, Direction::Tx, &[0x45]);
/// assert_eq!(log.len(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct PacketLog {
    inner: Rc<RefCell<Vec<LoggedPacket>>>,
}

impl PacketLog {
    /// An empty log.
    pub fn new() -> Self {
        PacketLog::default()
    }

    /// A copy of everything logged so far.
    pub fn packets(&self) -> Vec<LoggedPacket> {
        self.inner.borrow().clone()
    }

    /// A borrow of the log, without copying. Do not hold it across a network step.
    pub fn borrow(&self) -> Ref<'_, Vec<LoggedPacket>> {
        self.inner.borrow()
    }

    /// The packets seen in one direction.
    pub fn filter(&self, dir: Direction) -> Vec<LoggedPacket> {
        self.inner
            .borrow()
            .iter()
            .filter(|p| p.dir == dir)
            .cloned()
            .collect()
    }

    /// How many packets were logged.
    pub fn len(&self) -> usize {
        self.inner.borrow().len()
    }

    /// Whether nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.inner.borrow().is_empty()
    }

    /// Forgets everything logged so far.
    pub fn clear(&self) {
        self.inner.borrow_mut().clear();
    }
}

impl Tap for PacketLog {
    fn packet(&mut self, now: Instant, dir: Direction, packet: &[u8]) {
        self.inner.borrow_mut().push(LoggedPacket {
            time: now,
            dir,
            bytes: packet.to_vec(),
        });
    }
}
