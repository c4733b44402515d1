//! A QUIC connection drawn as a ladder: each UDP datagram on its own line, by what can be read
//! on the wire (the packets it carries: Initial, 0-RTT, Handshake, Retry, 1-RTT, with their
//! sizes and coalescing, RFC 9000 §12.2 and §17), whether it arrived, and between them what
//! the QUIC implementation said happened (handshake done, streams opened and closed, packets
//! declared lost), each at its time.

use std::fmt::Write as _;

use synack_tcp::Instant;

use crate::decode::quic;

/// One line of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicRow {
    /// A datagram sent at `time`.
    Datagram {
        time: Instant,
        from_client: bool,
        /// The UDP payload's size.
        size: usize,
        /// What it carries ([`quic::describe`]).
        what: String,
        /// It never arrived.
        lost: bool,
    },
    /// Something an endpoint reported.
    Event {
        time: Instant,
        client: bool,
        what: String,
    },
}

impl QuicRow {
    /// A datagram with its UDP payload.
    pub fn datagram(time: Instant, from_client: bool, payload: &[u8], lost: bool) -> QuicRow {
        QuicRow::Datagram {
            time,
            from_client,
            size: payload.len(),
            what: quic::describe(payload),
            lost,
        }
    }

    pub fn time(&self) -> Instant {
        match self {
            QuicRow::Datagram { time, .. } | QuicRow::Event { time, .. } => *time,
        }
    }
}

/// Counts over the rows, for the line under the ladder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicTally {
    pub datagrams: usize,
    pub lost: usize,
    /// Datagrams carrying more than one packet.
    pub coalesced: usize,
}

/// The rows sorted by time (stable: rows of one instant keep their order), one line each,
/// `client` on the left and `server` on the right.
pub fn render(rows: &mut [QuicRow], client: &str, server: &str) -> (Vec<String>, QuicTally) {
    rows.sort_by_key(QuicRow::time);
    let mut out = Vec::with_capacity(rows.len());
    let mut tally = QuicTally::default();
    for r in rows.iter() {
        let mut line = String::new();
        match r {
            QuicRow::Datagram {
                time,
                from_client,
                size,
                what,
                lost,
            } => {
                tally.datagrams += 1;
                tally.lost += usize::from(*lost);
                tally.coalesced += usize::from(what.contains("(coalesced)"));
                let arrow = if *from_client { "-->" } else { "<--" };
                let _ = write!(
                    line,
                    "{time}  {client} {arrow} {server}  {size:>5} B  {what}{}",
                    if *lost { "  (lost)" } else { "" }
                );
            }
            QuicRow::Event {
                time,
                client: c,
                what,
            } => {
                let who = if *c { client } else { server };
                let _ = write!(line, "{time}  [{who}] {what}");
            }
        }
        out.push(line);
    }
    (out, tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_drawn() {
        let t = |ms: u64| Instant::from_micros(ms * 1000);
        let mut init = vec![0xc0, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa];
        init.resize(1200, 0);
        let mut back = vec![0xc0, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa];
        back.extend_from_slice(&[0xe0, 0, 0, 0, 1, 0, 0, 2, 1, 2]);
        let mut rows = vec![
            QuicRow::Event {
                time: t(50),
                client: true,
                what: "handshake done".into(),
            },
            QuicRow::datagram(t(25), false, &back, false),
            QuicRow::datagram(t(0), true, &init, false),
            QuicRow::datagram(t(50), true, &[0x41, 1, 2], true),
        ];
        let (lines, tally) = render(&mut rows, "client", "server");
        assert_eq!(
            lines,
            [
                "0.000000  client --> server   1200 B  Initial 10",
                "0.025000  client <-- server     20 B  Initial 10 + Handshake 10 (coalesced)",
                "0.050000  [client] handshake done",
                "0.050000  client --> server      3 B  1-RTT 3  (lost)",
            ]
        );
        assert_eq!(
            tally,
            QuicTally {
                datagrams: 3,
                lost: 1,
                coalesced: 1
            }
        );
    }
}
