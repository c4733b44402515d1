//! Connection states and the errors an application sees.

use core::fmt;
use core::net::SocketAddr;

/// The eleven states of RFC 9293 §3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection: the TCB is gone (or was never made).
    Closed,
    /// Waiting for a connection request from any remote TCP and port.
    Listen,
    /// Waiting for a matching connection request after having sent one.
    SynSent,
    /// Waiting for a confirming acknowledgment after having received and sent a request.
    SynReceived,
    /// An open connection: data received can be delivered to the user.
    Established,
    /// Waiting for a termination request from the remote TCP, or an ACK of the one sent.
    FinWait1,
    /// Waiting for a termination request from the remote TCP.
    FinWait2,
    /// Waiting for a termination request from the local user.
    CloseWait,
    /// Waiting for an acknowledgment of our termination request, both having sent one.
    Closing,
    /// Waiting for an acknowledgment of the termination request sent to the remote TCP, which
    /// includes an acknowledgment of its termination request.
    LastAck,
    /// Waiting long enough to be sure the remote TCP received the acknowledgment of its
    /// termination request, and to keep stray segments away from a new incarnation.
    TimeWait,
}

impl State {
    /// RFC 9293 §3.3.2: every state after the handshake is synchronized.
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// States in which the peer may still send us data.
    pub fn may_receive(self) -> bool {
        matches!(
            self,
            State::Established | State::FinWait1 | State::FinWait2 | State::SynReceived
        )
    }

    /// States in which the application may still queue data.
    pub fn may_send(self) -> bool {
        matches!(
            self,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The local and remote ends of a connection. (`Hash` is in [`crate::hash`]: a few whole words.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FourTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl fmt::Display for FourTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <-> {}", self.local, self.remote)
    }
}

/// Why a connection ended other than by an orderly close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionError {
    /// The peer answered our SYN with a RST (RFC 9293 §3.10.7.3): nothing listens there.
    Refused,
    /// The peer reset an open connection (RFC 9293 §3.10.7.4).
    Reset,
    /// The open, a retransmission, the user timeout (RFC 5482) or keepalive gave up.
    TimedOut,
    /// An ICMP error reported the peer or network unreachable (RFC 5927, RFC 9293 §3.9.1).
    Unreachable,
    /// The local application aborted the connection.
    Aborted,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionError::Refused => "connection refused",
            ConnectionError::Reset => "connection reset by peer",
            ConnectionError::TimedOut => "connection timed out",
            ConnectionError::Unreachable => "destination unreachable",
            ConnectionError::Aborted => "connection aborted",
        })
    }
}

impl std::error::Error for ConnectionError {}

/// Why `send` refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The write side was shut down, or the connection never opened.
    InvalidState,
    /// The connection failed.
    Connection(ConnectionError),
}

/// Why `recv` returned no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The peer closed its side and every byte has been read (end of stream).
    Finished,
    /// The connection never opened, or the read side was closed locally.
    InvalidState,
    /// The connection failed.
    Connection(ConnectionError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::InvalidState => f.write_str("cannot send in this state"),
            SendError::Connection(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Finished => f.write_str("end of stream"),
            RecvError::InvalidState => f.write_str("cannot receive in this state"),
            RecvError::Connection(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}
impl std::error::Error for RecvError {}
