//! Packet captures in the classic libpcap file format, with raw IP link type.
//!
//! The format is described in draft-ietf-opsawg-pcap ("PCAP Capture File Format") and the
//! libpcap `pcap-savefile(5)` manual page: a 24-byte global header (magic `0xa1b2c3d4` for
//! microsecond timestamps, version 2.4, snap length, link type), then for each packet a 16-byte
//! record header (seconds, microseconds, captured length, original length) and the bytes.
//! The link type is `LINKTYPE_RAW` (101): each packet starts at its IPv4 or IPv6 header, which
//! is what the simulator and a TUN device carry. Wireshark, tshark and tcpdump read it.
//!
//! Timestamps are the virtual [`Instant`]s of the simulation (or of a real stack's epoch), so a
//! capture of a simulated run starts at 1970-01-01 00:00:00 in a viewer's absolute time.
//!
//! Files are written little-endian; the reader accepts both byte orders and the nanosecond
//! variant (`0xa1b23c4d`), converting its timestamps to microseconds.

#![warn(missing_docs)]

use std::error::Error;
use std::fmt;
use std::io::{self, Write};

use synack_tcp::time::Instant;

use crate::sim::{Direction, Tap};

/// The magic number of a pcap file with microsecond timestamps.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// The magic number of a pcap file with nanosecond timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// `LINKTYPE_RAW`: packets begin with an IPv4 or IPv6 header, no link-layer header.
pub const LINKTYPE_RAW: u32 = 101;
/// The snap length written: packets longer than this are truncated in the file (the record
/// keeps the original length). 262144 is what current tcpdump and Wireshark use.
pub const SNAPLEN: u32 = 262_144;

const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;

/// Writes a pcap stream: the global header on creation, then one record per packet.
///
/// The header and each record are handed to the writer in one `write_all` call, so a writer
/// that writes out whole calls (as [`LiveFile`] does) never leaves half a record in the file.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
    /// A record being assembled (header and bytes).
    record: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header to `w` and returns the writer.
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        h[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // thiszone (i32) and sigfigs (u32) stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter {
            w,
            record: Vec::new(),
        })
    }

    /// Writes one packet captured at `time` (seconds and microseconds since the epoch of the
    /// `Instant`s). Packets longer than [`SNAPLEN`] are truncated to it. Fails with
    /// `InvalidInput`, writing nothing, if `time` is past what 32-bit seconds can hold
    /// (about 136 years).
    pub fn write_packet(&mut self, time: Instant, packet: &[u8]) -> io::Result<()> {
        let us = time.as_micros();
        let secs = u32::try_from(us / 1_000_000).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("timestamp {time} does not fit a pcap record"),
            )
        })?;
        let micros = (us % 1_000_000) as u32;
        let caplen = packet.len().min(SNAPLEN as usize);
        let orig = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&micros.to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig.to_le_bytes());
        self.record.clear();
        self.record.extend_from_slice(&h);
        self.record.extend_from_slice(&packet[..caplen]);
        self.w.write_all(&self.record)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// The underlying writer, mutably (writing to it directly corrupts the capture).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    /// Returns the underlying writer (not flushed: call [`flush`](Self::flush) first if it
    /// buffers).
    pub fn into_inner(self) -> W {
        self.w
    }
}

/// A [`Tap`] that writes every packet of a host's interface, both directions, to a pcap stream.
///
/// A tap cannot return errors, so write errors are remembered instead: after the first one,
/// nothing more is written (a half-written record would make the rest of the file unreadable)
/// and every packet not written is counted in [`lost`](Self::lost).
///
/// To get the writer back after handing the tap to a network, wrap it in
/// `Rc<RefCell<PcapTap<W>>>` (which is a `Tap` too) and keep a clone, or take it back with
/// [`Network::take_taps`](crate::sim::Network::take_taps) and drop it (a `BufWriter` flushes
/// on drop).
#[derive(Debug)]
pub struct PcapTap<W: Write> {
    writer: PcapWriter<W>,
    error: Option<io::Error>,
    lost: u64,
    written: u64,
}

impl<W: Write> PcapTap<W> {
    /// Writes the global header to `w` and returns the tap.
    pub fn new(w: W) -> io::Result<Self> {
        Ok(PcapTap::from_writer(PcapWriter::new(w)?))
    }

    /// A tap over an existing writer.
    pub fn from_writer(writer: PcapWriter<W>) -> Self {
        PcapTap {
            writer,
            error: None,
            lost: 0,
            written: 0,
        }
    }

    /// Packets written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Packets not written because of a write error.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Flushes the writer; fails with the remembered error if there was one.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        self.writer.flush()
    }

    /// The pcap writer.
    pub fn writer(&self) -> &PcapWriter<W> {
        &self.writer
    }

    /// Returns the pcap writer.
    pub fn into_writer(self) -> PcapWriter<W> {
        self.writer
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}

impl<W: Write> Tap for PcapTap<W> {
    fn packet(&mut self, now: Instant, _dir: Direction, packet: &[u8]) {
        if self.error.is_some() {
            self.lost += 1;
            return;
        }
        match self.writer.write_packet(now, packet) {
            Ok(()) => self.written += 1,
            Err(e) => {
                self.error = Some(e);
                self.lost += 1;
            }
        }
    }
}

/// How long bytes handed to a [`LiveFile`] may wait before they are in the file.
pub const LIVE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Bytes a [`LiveFile`] buffers before writing early, and before writers wait for it.
const LIVE_HIGH_WATER: usize = 1 << 20;
const LIVE_MAX_BUFFERED: usize = 16 << 20;

/// A file written by a thread of its own, so that what is handed to it is in the file (where
/// `tshark -r` reads it) within [`LIVE_FLUSH_INTERVAL`], without the writer ever waiting for
/// the disk: a capture that can be read while it grows and survives the program being
/// stopped.
///
/// Each `write` call is written out whole, never split across two writes to the file (so a
/// [`PcapWriter`] on a `LiveFile` leaves the file ending on a record boundary). `flush`
/// returns once everything written before it is in the file; dropping the `LiveFile`
/// writes out the rest and ends the thread. A failed write to the file is returned by the
/// next `write` or `flush`, and nothing more is written.
///
/// ```
/// use std::io::Write;
/// use synack_stack::pcap::{LiveFile, PcapReader, PcapWriter};
/// use synack_tcp::time::Instant;
///
/// let path = std::env::temp_dir().join(format!("synack-live-doc-{}.pcap", std::process::id()));
/// let mut w = PcapWriter::new(LiveFile::create(&path).unwrap()).unwrap();
/// w.write_packet(Instant::from_micros(7), &[0x45, 0, 0, 20]).unwrap();
/// w.flush().unwrap();
/// let data = std::fs::read(&path).unwrap();
/// assert_eq!(PcapReader::read_all(&data).unwrap().len(), 1);
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct LiveFile {
    shared: std::sync::Arc<LiveShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct LiveShared {
    state: std::sync::Mutex<LiveState>,
    /// Signalled to the thread: data, a flush request, or the end.
    work: std::sync::Condvar,
    /// Signalled by the thread: a write to the file finished.
    written: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct LiveState {
    buf: Vec<u8>,
    /// When the oldest byte in `buf` was handed over.
    since: Option<std::time::Instant>,
    flush_requested: u64,
    flushed: u64,
    closing: bool,
    error: Option<(io::ErrorKind, String)>,
}

impl LiveShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LiveState {
    fn check(&self) -> io::Result<()> {
        match &self.error {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }
}

impl LiveFile {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: impl AsRef<std::path::Path>) -> io::Result<LiveFile> {
        std::fs::File::create(path).map(LiveFile::new)
    }

    /// Writes to `file` from a new thread.
    pub fn new(file: std::fs::File) -> LiveFile {
        let shared = std::sync::Arc::new(LiveShared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("synack-pcap".into())
                .spawn(move || live_writer(&shared, file))
                .ok()
        };
        let file = LiveFile { shared, thread };
        if file.thread.is_none() {
            file.shared.lock().error = Some((
                io::ErrorKind::Other,
                "could not start the capture's writer thread".into(),
            ));
        }
        file
    }
}

/// The thread of a [`LiveFile`]: writes out what it is given, at the latest
/// [`LIVE_FLUSH_INTERVAL`] after it was given, at once when asked to flush or when much is
/// waiting.
fn live_writer(shared: &LiveShared, mut file: std::fs::File) {
    let mut st = shared.lock();
    loop {
        let due = st.since.map(|t| t + LIVE_FLUSH_INTERVAL);
        let now = std::time::Instant::now();
        let go = st.closing
            || st.flush_requested > st.flushed
            || st.buf.len() >= LIVE_HIGH_WATER
            || due.is_some_and(|d| now >= d);
        if !go {
            st = match due {
                Some(d) => {
                    shared
                        .work
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => shared
                    .work
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            continue;
        }
        let data = std::mem::take(&mut st.buf);
        st.since = None;
        let asked = st.flush_requested;
        let closing = st.closing;
        let failed = st.error.is_some();
        drop(st);
        let r = if failed || data.is_empty() {
            Ok(())
        } else {
            file.write_all(&data)
        };
        st = shared.lock();
        if let Err(e) = r {
            st.error.get_or_insert((e.kind(), e.to_string()));
        }
        st.flushed = st.flushed.max(asked);
        shared.written.notify_all();
        if closing && st.buf.is_empty() {
            return;
        }
    }
}

impl Write for LiveFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut st = self.shared.lock();
        st.check()?;
        while st.buf.len() >= LIVE_MAX_BUFFERED && st.error.is_none() {
            // The disk is behind: wait for it rather than hold more.
            self.shared.work.notify_one();
            st = self
                .shared
                .written
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.check()?;
        let first = st.buf.is_empty();
        if first {
            st.since = Some(std::time::Instant::now());
        }
        st.buf.extend_from_slice(data);
        if first || st.buf.len() >= LIVE_HIGH_WATER {
            // The thread learns when this is due (or that it is due now).
            self.shared.work.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut st = self.shared.lock();
        st.flush_requested += 1;
        let want = st.flush_requested;
        self.shared.work.notify_one();
        while st.flushed < want && st.error.is_none() {
            st = self
                .shared
                .written
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.check()
    }
}

impl Drop for LiveFile {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a pcap buffer could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcapError {
    /// The buffer ends inside the global header or a record (`offset` is where the
    /// incomplete part starts).
    Truncated {
        /// Byte offset of the incomplete header or record.
        offset: usize,
    },
    /// The first four bytes are not a pcap magic number.
    BadMagic(u32),
    /// A version other than 2.x.
    BadVersion(u16, u16),
    /// A link type other than [`LINKTYPE_RAW`].
    BadLinkType(u32),
    /// A record claims more bytes than the snap length allows.
    RecordTooLong {
        /// Byte offset of the record header.
        offset: usize,
        /// Its captured length.
        len: u32,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Truncated { offset } => {
                write!(f, "pcap data truncated at byte {offset}")
            }
            PcapError::BadMagic(m) => write!(f, "not a pcap file (magic {m:#010x})"),
            PcapError::BadVersion(a, b) => write!(f, "unsupported pcap version {a}.{b}"),
            PcapError::BadLinkType(t) => {
                write!(
                    f,
                    "unsupported pcap link type {t} (expected {LINKTYPE_RAW}, raw IP)"
                )
            }
            PcapError::RecordTooLong { offset, len } => {
                write!(
                    f,
                    "pcap record at byte {offset} claims {len} bytes, over the snap length"
                )
            }
        }
    }
}

impl Error for PcapError {}

/// Reads a pcap byte buffer with raw IP link type (as [`PcapWriter`] writes): mainly for tests.
///
/// ```
/// use synack_stack::pcap::{PcapReader, PcapWriter};
/// use synack_tcp::time::Instant;
///
/// let mut w = PcapWriter::new(Vec::new()).unwrap();
/// w.write_packet(Instant::from_micros(1_500_000), &[0x45, 0, 0, 20]).unwrap();
/// let packets = PcapReader::read_all(&w.into_inner()).unwrap();
/// assert_eq!(packets, vec![(Instant::from_micros(1_500_000), vec![0x45, 0, 0, 20])]);
/// ```
#[derive(Clone, Debug)]
pub struct PcapReader<'a> {
    data: &'a [u8],
    pos: usize,
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    failed: bool,
}

impl<'a> PcapReader<'a> {
    /// Checks the global header of `data`; the packets are then read by iterating.
    pub fn new(data: &'a [u8]) -> Result<Self, PcapError> {
        let header = data.get(..24).ok_or(PcapError::Truncated { offset: 0 })?;
        let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (big_endian, nanos) = match magic_le {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            m => return Err(PcapError::BadMagic(m)),
        };
        let mut r = PcapReader {
            data,
            pos: 24,
            big_endian,
            nanos,
            snaplen: 0,
            failed: false,
        };
        let major = r.u16_at(4);
        let minor = r.u16_at(6);
        if major != VERSION_MAJOR {
            return Err(PcapError::BadVersion(major, minor));
        }
        r.snaplen = r.u32_at(16);
        let linktype = r.u32_at(20) & 0x0fff_ffff; // upper bits are FCS flags
        if linktype != LINKTYPE_RAW {
            return Err(PcapError::BadLinkType(linktype));
        }
        Ok(r)
    }

    /// Reads every packet of `data` as `(timestamp, bytes)`.
    pub fn read_all(data: &[u8]) -> Result<Vec<(Instant, Vec<u8>)>, PcapError> {
        PcapReader::new(data)?.collect()
    }

    /// The snap length of the file.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Whether timestamps in the file are in nanoseconds (they are returned in microseconds).
    pub fn is_nanosecond(&self) -> bool {
        self.nanos
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = [self.data[at], self.data[at + 1]];
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    /// Callers check that `at + 4 <= data.len()`.
    fn u32_at(&self, at: usize) -> u32 {
        let b = [
            self.data[at],
            self.data[at + 1],
            self.data[at + 2],
            self.data[at + 3],
        ];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn next_record(&mut self) -> Result<(Instant, Vec<u8>), PcapError> {
        let at = self.pos;
        if self.data.len().saturating_sub(at) < 16 {
            return Err(PcapError::Truncated { offset: at });
        }
        let secs = u64::from(self.u32_at(at));
        let frac = u64::from(self.u32_at(at + 4));
        let caplen = self.u32_at(at + 8);
        if caplen > self.snaplen.max(SNAPLEN) {
            return Err(PcapError::RecordTooLong {
                offset: at,
                len: caplen,
            });
        }
        let body = at + 16;
        let end = body
            .checked_add(caplen as usize)
            .ok_or(PcapError::Truncated { offset: at })?;
        let bytes = self
            .data
            .get(body..end)
            .ok_or(PcapError::Truncated { offset: at })?;
        let micros = if self.nanos { frac / 1000 } else { frac };
        self.pos = end;
        Ok((
            Instant::from_micros(secs * 1_000_000 + micros),
            bytes.to_vec(),
        ))
    }
}

/// Yields each record; after an error, yields nothing more.
impl Iterator for PcapReader<'_> {
    type Item = Result<(Instant, Vec<u8>), PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let r = self.next_record();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(Instant::ZERO, &[0x45; 20]).unwrap();
        w.write_packet(Instant::from_micros(3_000_001), &[0x60; 40])
            .unwrap();
        w.write_packet(Instant::from_micros(999_999), &[]).unwrap();
        w.into_inner()
    }

    #[test]
    fn global_header_bytes() {
        let b = PcapWriter::new(Vec::new()).unwrap().into_inner();
        assert_eq!(
            b,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 101, 0, 0,
                0
            ]
        );
    }

    #[test]
    fn record_bytes() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(Instant::from_micros(2_000_003), &[1, 2, 3])
            .unwrap();
        let b = w.into_inner();
        assert_eq!(
            &b[24..],
            &[2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3]
        );
    }

    #[test]
    fn round_trip() {
        let got = PcapReader::read_all(&sample()).unwrap();
        assert_eq!(
            got,
            vec![
                (Instant::ZERO, vec![0x45; 20]),
                (Instant::from_micros(3_000_001), vec![0x60; 40]),
                (Instant::from_micros(999_999), vec![]),
            ]
        );
    }

    #[test]
    fn big_endian_and_nanosecond_files() {
        let mut b = vec![];
        b.extend_from_slice(&MAGIC_NANOS.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&101u32.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&5_000u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&[9, 9]);
        let r = PcapReader::new(&b).unwrap();
        assert!(r.is_nanosecond());
        assert_eq!(r.snaplen(), 65535);
        assert_eq!(
            PcapReader::read_all(&b).unwrap(),
            vec![(Instant::from_micros(7_000_005), vec![9, 9])]
        );
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(
            PcapReader::read_all(&[]).unwrap_err(),
            PcapError::Truncated { offset: 0 }
        );
        let mut b = sample();
        b[0] = 0;
        assert!(matches!(
            PcapReader::read_all(&b),
            Err(PcapError::BadMagic(_))
        ));
        let mut b = sample();
        b[20] = 1; // Ethernet
        assert_eq!(
            PcapReader::read_all(&b).unwrap_err(),
            PcapError::BadLinkType(1)
        );
        let mut b = sample();
        b[4] = 3;
        assert_eq!(
            PcapReader::read_all(&b).unwrap_err(),
            PcapError::BadVersion(3, 4)
        );
        let b = sample();
        let cut = &b[..b.len() - 20];
        assert!(matches!(
            PcapReader::read_all(cut),
            Err(PcapError::Truncated { .. })
        ));
        let cut = &b[..24 + 16 + 20 + 5];
        assert_eq!(
            PcapReader::read_all(cut).unwrap_err(),
            PcapError::Truncated { offset: 60 }
        );
        let mut b = sample();
        b[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            PcapReader::read_all(&b),
            Err(PcapError::RecordTooLong { .. })
        ));
        assert!(PcapError::BadLinkType(1)
            .to_string()
            .contains("link type 1"));
    }

    #[test]
    fn reader_never_panics_on_prefixes_or_flips() {
        let b = sample();
        for n in 0..=b.len() {
            let _ = PcapReader::read_all(&b[..n]);
        }
        for i in 0..b.len() * 8 {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            let _ = PcapReader::read_all(&c);
        }
    }

    #[test]
    fn long_packets_are_truncated_to_snaplen() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let big = vec![0x45; SNAPLEN as usize + 10];
        w.write_packet(Instant::ZERO, &big).unwrap();
        let b = w.into_inner();
        assert_eq!(&b[24 + 8..24 + 12], &SNAPLEN.to_le_bytes());
        assert_eq!(&b[24 + 12..24 + 16], &(SNAPLEN + 10).to_le_bytes());
        let got = PcapReader::read_all(&b).unwrap();
        assert_eq!(got[0].1.len(), SNAPLEN as usize);
    }

    #[test]
    fn timestamps_past_u32_seconds_are_refused() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let e = w
            .write_packet(Instant::from_micros(u64::MAX), &[1])
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(w.into_inner().len(), 24);
    }

    /// A writer that accepts `budget` bytes and then fails.
    struct Failing {
        budget: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tap_remembers_errors() {
        let mut tap = PcapTap::new(Failing {
            budget: 24 + 16 + 20,
        })
        .unwrap();
        tap.packet(Instant::ZERO, Direction::Tx, &[0x45; 20]);
        tap.packet(Instant::ZERO, Direction::Rx, &[0x45; 20]);
        tap.packet(Instant::ZERO, Direction::Rx, &[0x45; 20]);
        assert_eq!(tap.written(), 1);
        assert_eq!(tap.lost(), 2);
        assert_eq!(tap.error().unwrap().to_string(), "disk full");
        assert!(tap.flush().is_err());
        assert!(PcapTap::new(Failing { budget: 3 }).is_err());
    }

    /// Records the length of each `write` call.
    struct Calls(Vec<usize>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_header_and_each_record_are_one_write() {
        let mut w = PcapWriter::new(Calls(Vec::new())).unwrap();
        w.write_packet(Instant::ZERO, &[0x45; 20]).unwrap();
        w.write_packet(Instant::ZERO, &[0x45; 1500]).unwrap();
        assert_eq!(w.into_inner().0, [24, 16 + 20, 16 + 1500]);
    }

    fn live_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("synack-live-{}-{tag}.pcap", std::process::id()))
    }

    #[test]
    fn a_live_file_holds_every_record_after_flush_and_after_drop() {
        let path = live_path("flush");
        let mut w = PcapWriter::new(LiveFile::create(&path).unwrap()).unwrap();
        let packet = |i: u64| vec![(i % 251) as u8; (i % 1500) as usize];
        for i in 0..3000 {
            w.write_packet(Instant::from_micros(i), &packet(i)).unwrap();
        }
        w.flush().unwrap();
        // Still open, and already whole.
        let got = PcapReader::read_all(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(got.len(), 3000);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (t, p))| *t == Instant::from_micros(i as u64) && *p == packet(i as u64)));
        for i in 3000..3100 {
            w.write_packet(Instant::from_micros(i), &packet(i)).unwrap();
        }
        drop(w);
        let got = PcapReader::read_all(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(got.len(), 3100);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_live_file_reports_a_failed_write() {
        // Every write to /dev/full fails with ENOSPC.
        let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("skipping: no /dev/full");
            return;
        };
        let mut l = LiveFile::new(f);
        assert!(l.write(b"accepted, then lost").is_ok());
        let e = l.flush().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
        assert!(l.write(b"more").is_err());
        assert!(l.flush().is_err());
    }
}
