//! synack's TCP, sans-IO (RFC 9293).
//!
//! This crate contains no networking code: no sockets, no clock, no threads, no async. Time comes
//! in as an [`Instant`] the driver passes to every call; segments come in as parsed bytes and go
//! out as bytes written into the driver's buffers; the next deadline goes out from
//! `poll_timeout`. The same core therefore runs in the simulator, over TUN, under packetdrill and
//! in unit tests.

pub mod time;

pub use time::{Duration, Instant};

pub mod assembler;
pub mod buffer;
pub mod cc;
pub mod config;
pub mod conn;
pub mod cubic;
pub mod fastopen;
pub mod isn;
pub mod rtt;
pub mod segbuf;
pub mod seq;
pub mod state;
pub mod syncookie;
pub mod timer;

pub use cc::{Algorithm, CongestionControl};
pub use config::{Config, Ecn, Keepalive, MtuProbeMode, MtuProbing};
pub use conn::{ConnStats, Connection, Event, IcmpError, RetransmitCause, SendFlags};
pub use fastopen::{FastOpenConfig, FastOpenKey};
pub use isn::IsnGenerator;
pub use segbuf::{SegmentBuf, SliceBuf};
pub use seq::SeqNum;
pub use state::{ConnectionError, FourTuple, RecvError, SendError, State};
pub use timer::Timer;
pub mod endpoint;
pub mod hash;
mod table;
pub mod trace;

pub use endpoint::{
    ConnId, ConnectError, ConnectOptions, Endpoint, ListenError, ListenerId, Transmit,
};
pub use trace::{Direction, SegmentInfo, TraceEvent, TraceRecord};
