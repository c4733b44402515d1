//! HTTP/2 frames in a byte stream (RFC 9113), as the ladder draws them: the client's
//! connection preface (§3.4) and each frame with the value a control frame carries. The
//! reading itself is [`synack_wire::h2::FrameReader`]'s, the one the HTTP client and server
//! watch their connections with; payloads are skipped, so a stream of any length is read in
//! constant memory.

pub use synack_wire::h2::{kind, Frame, FrameHeader, FLAG_ACK, FLAG_END_STREAM, PREFACE};
use synack_wire::h2::{Event, FrameReader};

/// What an [`H2Stream`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Event {
    /// The client connection preface.
    Preface,
    /// A frame (reported when its header and the value bytes it carries are read).
    Frame(Frame),
    /// The preface did not match: the stream is not HTTP/2.
    Lost,
}

/// One direction of an HTTP/2 connection, read in order: the client's starts with the
/// preface, the server's with frames.
///
/// ```
/// use synack_trace::decode::h2::{H2Event, H2Stream, PREFACE};
///
/// let mut s = H2Stream::client();
/// let mut data = PREFACE.to_vec();
/// // WINDOW_UPDATE on stream 0, increment 65535.
/// data.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
/// let mut out = Vec::new();
/// s.feed(&data, &mut out);
/// assert_eq!(out[0], H2Event::Preface);
/// let H2Event::Frame(f) = out[1] else { panic!() };
/// assert_eq!(f.to_string(), "WINDOW_UPDATE stream=0 +65535");
/// ```
#[derive(Debug, Clone)]
pub struct H2Stream {
    reader: FrameReader,
}

impl H2Stream {
    /// The client's direction: the preface first.
    pub fn client() -> H2Stream {
        H2Stream {
            reader: FrameReader::client(),
        }
    }

    /// A direction of frames only (the server's, or the client's after an HTTP/1 reader
    /// consumed the preface).
    pub fn frames() -> H2Stream {
        H2Stream {
            reader: FrameReader::frames(),
        }
    }

    /// Whether the stream stopped (its preface did not match).
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<H2Event>) {
        self.reader.feed(data, |e| match e {
            Event::Preface => out.push(H2Event::Preface),
            Event::Frame(f) => out.push(H2Event::Frame(f)),
            Event::Lost => out.push(H2Event::Lost),
            Event::Setting { .. } | Event::End(_) => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_the_preface_are_reported_and_settings_entries_are_not() {
        let mut data = PREFACE.to_vec();
        data.extend_from_slice(&[0, 0, 6, kind::SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        data.extend_from_slice(&[0, 0, 0, kind::HEADERS, 5, 0, 0, 0, 1]);
        let mut out = Vec::new();
        let mut s = H2Stream::client();
        for c in data.chunks(1) {
            s.feed(c, &mut out);
        }
        let shown: Vec<String> = out
            .iter()
            .map(|e| match e {
                H2Event::Frame(f) => f.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shown, ["Preface", "SETTINGS", "HEADERS stream=1 end"]);
    }

    #[test]
    fn not_a_preface() {
        let mut s = H2Stream::client();
        let mut out = Vec::new();
        s.feed(b"GET / HTTP/1.1\r\n", &mut out);
        assert_eq!(out, [H2Event::Lost]);
        assert!(s.is_done());
    }
}
