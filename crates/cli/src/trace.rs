//! `synack trace`: any capture (or an interface, live) drawn as synack draws its own
//! connections: a ladder of each TCP connection's handshake and close with both sides'
//! states, the phases in RTTs, and tables per connection and per host pair.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use synack_stack::sim::units::parse_duration;
use synack_trace::capture::{CaptureReader, Frame};
use synack_trace::html::{self, capture::FlowCollector, Block, Page, Section, Table};
use synack_trace::live::{self, LiveCapture};
use synack_trace::report::{connection_block, heading, phases_line, Filter, Only, Report};
use synack_trace::{Analyzer, ConnTrace};

pub const EXAMPLES: &str = "\
Examples:
  tcpdump -i lo -w lo.pcap port 80 & curl http://127.0.0.1/{a,b,c}; kill %1
  synack trace lo.pcap                      # one connection, three requests on it
  synack trace any.pcapng --port 443        # TLS: ClientHello, ServerHello, ALPN, what they cost
  synack trace big.pcap --only retransmissions
  synack trace demo-per-call.pcap --json    # the numbers, schema synack-trace/1
  synack trace lo.pcap --html lo.html       # a page: tables, sequence diagrams, plots
  synack trace -i lo -w lo.pcap --count 200 # live (root): each connection drawn as it closes

Sequence numbers are relative to each direction's ISN unless --absolute. The ladder keeps the
handshake and the close; the data in between is one summary line per direction, with
retransmissions, zero windows and RSTs drawn, and ~~> lines saying what the payload carried
(HTTP/1.1 request and status lines, HTTP/2 frames, TLS records).";

/// Files at least this long get a progress bar (when standard error is a terminal).
const PROGRESS_BYTES: u64 = 16 << 20;

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// A pcap or pcapng capture (tcpdump, Wireshark, tshark, `synack --pcap`); `-` reads
    /// standard input
    #[arg(value_name = "FILE", required_unless_present = "interface")]
    pub file: Option<PathBuf>,

    /// Capture live from this interface instead (root; Linux AF_PACKET)
    #[arg(short = 'i', long, value_name = "IFACE", conflicts_with = "file")]
    pub interface: Option<String>,

    /// With -i: also save what is captured to FILE (pcap)
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        requires = "interface"
    )]
    pub write: Option<PathBuf>,

    /// With -i: stop after N frames
    #[arg(long, value_name = "N", requires = "interface")]
    pub count: Option<u64>,

    /// With -i: stop after this long (e.g. 30s); Ctrl-C stops too
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "interface")]
    pub duration: Option<Duration>,

    /// Only connection number N (connections are numbered in the order they appear)
    #[arg(long, value_name = "N", help_heading = "Filters")]
    pub conn: Option<u64>,

    /// Only connections with this port on either side
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub port: Option<u16>,

    /// Only connections with this address on either side
    #[arg(long, value_name = "ADDR", help_heading = "Filters")]
    pub host: Option<IpAddr>,

    /// Only these rows of each ladder, and the connections that have them
    #[arg(long, value_name = "WHAT", value_parser = parse_only, help_heading = "Filters")]
    pub only: Option<Only>,

    /// Raw sequence numbers instead of numbers relative to each direction's ISN
    #[arg(long)]
    pub absolute: bool,

    /// Print the numbers of the tables as JSON (schema synack-trace/1) instead
    #[arg(long)]
    pub json: bool,

    /// Print only the tables, not the ladders
    #[arg(long, conflicts_with = "json")]
    pub tables_only: bool,

    /// Also write the report as one self-contained HTML page to OUT (opens from disk, no
    /// network): the tables, each connection's sequence diagram, and plots of bytes in
    /// flight, RTT and goodput derived from its segments
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

/// The most connections the HTML report draws.
const HTML_CONNECTIONS: usize = 200;

/// What the HTML report collects as the capture is read.
struct HtmlParts {
    flows: FlowCollector,
    /// Per connection drawn: its heading, its phases, its diagram and plots.
    conns: Vec<Vec<Block>>,
    headings: Vec<String>,
    /// Connections not drawn (past [`HTML_CONNECTIONS`]).
    more: u64,
}

fn parse_only(s: &str) -> Result<Only, String> {
    s.parse()
}

impl TraceArgs {
    fn filter(&self) -> Filter {
        Filter {
            conn: self.conn,
            port: self.port,
            host: self.host,
            only: self.only,
        }
    }
}

/// What the command writes its ladders to as connections finish.
struct Out<'a, W: Write> {
    w: &'a mut W,
    args: &'a TraceArgs,
    filter: Filter,
    report: Report,
    capture_start: Option<u64>,
    shown: u64,
    html: Option<HtmlParts>,
}

impl<W: Write> Out<'_, W> {
    fn conn(&mut self, t: &ConnTrace) -> io::Result<()> {
        if !self.filter.matches(&t.summary) {
            return Ok(());
        }
        self.report.add(&t.summary);
        if let Some(h) = self.html.as_mut() {
            if h.conns.len() < HTML_CONNECTIONS {
                let origin = self
                    .capture_start
                    .unwrap_or(t.summary.milestones.first_packet);
                let d = html::capture::diagram(t, !self.args.absolute, &self.filter, origin);
                let mut blocks = vec![Block::Text(phases_line(&t.summary))];
                let plots = h.flows.plots(t, origin);
                if !plots.is_empty() {
                    blocks.push(Block::Plots(plots));
                }
                blocks.push(Block::Diagram(d));
                h.headings.push(heading(&t.summary, self.capture_start));
                h.conns.push(blocks);
            } else {
                h.more += 1;
            }
        }
        if self.args.json || self.args.tables_only {
            return Ok(());
        }
        if self.shown > 0 {
            writeln!(self.w)?;
        }
        self.shown += 1;
        let block = connection_block(t, !self.args.absolute, &self.filter, self.capture_start);
        self.w.write_all(block.as_bytes())?;
        self.w.flush()
    }
}

/// A reader that counts the bytes read through it (for the progress bar).
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

/// Runs `synack trace`, writing to `w`.
pub fn run(args: &TraceArgs, w: &mut impl Write) -> io::Result<()> {
    if let Some(iface) = &args.interface {
        return run_live(args, iface, w);
    }
    let path = args.file.clone().unwrap_or_else(|| PathBuf::from("-"));
    let name = path.display().to_string();
    let read = Arc::new(AtomicU64::new(0));
    let (source, size): (Box<dyn Read>, Option<u64>) = if name == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let f = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let source = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: source,
            n: read.clone(),
        },
    );
    let mut frames = CaptureReader::new(source)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))?;
    let format = frames.format().to_string();

    let bar = match size {
        Some(total) if total >= PROGRESS_BYTES && io::stderr().is_terminal() => {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        _ => ProgressBar::hidden(),
    };

    let mut analyzer = Analyzer::new();
    let mut out = Out {
        w,
        args,
        filter: args.filter(),
        report: Report::new(),
        capture_start: None,
        shown: 0,
        html: args.html.as_ref().map(|_| HtmlParts {
            flows: FlowCollector::new(args.filter()),
            conns: Vec::new(),
            headings: Vec::new(),
            more: 0,
        }),
    };
    let mut error = None;
    let mut n = 0u64;
    while let Some(frame) = frames.next_frame() {
        match frame {
            Ok(f) => {
                if let Some(h) = out.html.as_mut() {
                    h.flows.push_frame(&f);
                }
                analyzer.push_frame(&f);
                if out.capture_start.is_none() {
                    out.capture_start = analyzer.stats().first_time;
                }
            }
            Err(e) => {
                // What came before is analyzed; the rest cannot be read.
                error = Some(format!("{name}: {e}"));
                break;
            }
        }
        n += 1;
        if n & 4095 == 0 {
            bar.set_position(read.load(Ordering::Relaxed));
            bar.set_message(format!("{} connections open", analyzer.open_connections()));
            for t in analyzer.take_finished() {
                out.conn(&t)?;
            }
        }
    }
    bar.finish_and_clear();
    let done = analyzer.finish();
    out.capture_start = done.stats.first_time;
    for t in &done.connections {
        out.conn(t)?;
    }
    let filter = out.filter;
    for q in done.quic.iter().filter(|q| filter.matches_quic(q)) {
        out.report.add_quic(q);
    }
    out.report
        .set_capture(done.stats, Some(format), done.link_types.clone());
    finish(out, &name, error)
}

fn finish<W: Write>(out: Out<'_, W>, name: &str, error: Option<String>) -> io::Result<()> {
    let Out {
        w,
        args,
        report,
        html,
        ..
    } = out;
    if let (Some(path), Some(parts)) = (&args.html, html) {
        let page = html_page(name, &report, parts);
        std::fs::write(path, page)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    if args.json {
        writeln!(w, "{}", report.json())?;
    } else {
        if !args.tables_only && !report.connections().is_empty() {
            writeln!(w)?;
        }
        writeln!(w, "{}", report.capture_line(name))?;
        let tables = report.tables();
        if !tables.is_empty() {
            writeln!(w)?;
            w.write_all(tables.as_bytes())?;
        }
    }
    w.flush()?;
    match error {
        // A capture cut short (tcpdump killed mid-write) is still worth its ladders: say
        // what happened, after them.
        Some(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        None => Ok(()),
    }
}

/// `synack trace -i IFACE`: capture live, draw each connection as it finishes, and the tables
/// at the end (Ctrl-C, `--count` or `--duration`).
fn run_live(args: &TraceArgs, iface: &str, w: &mut impl Write) -> io::Result<()> {
    let mut cap = LiveCapture::open(iface)?;
    live::stop_on_signals();
    let mut writer = match &args.write {
        Some(p) => {
            let f = File::create(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let header = pcap_file::pcap::PcapHeader {
                datalink: pcap_file::DataLink::from(cap.link_type()),
                snaplen: 262_144,
                ..Default::default()
            };
            Some(
                pcap_file::pcap::PcapWriter::with_header(io::BufWriter::new(f), header)
                    .map_err(|e| io::Error::other(format!("{}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    let start = std::time::Instant::now();
    eprintln!(
        "synack trace: capturing on {iface}{}; Ctrl-C stops",
        args.write
            .as_ref()
            .map(|p| format!(", saving to {}", p.display()))
            .unwrap_or_default()
    );
    let mut analyzer = Analyzer::new();
    let mut out = Out {
        w,
        args,
        filter: args.filter(),
        report: Report::new(),
        capture_start: None,
        shown: 0,
        html: args.html.as_ref().map(|_| HtmlParts {
            flows: FlowCollector::new(args.filter()),
            conns: Vec::new(),
            headings: Vec::new(),
            more: 0,
        }),
    };
    let mut frames = 0u64;
    loop {
        if live::stop_requested()
            || args.count.is_some_and(|c| frames >= c)
            || args.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        let Some(f): Option<Frame> = cap.next_frame(Duration::from_millis(100))? else {
            // Nothing for a while: connections closed by now are drawn.
            flush_live(&mut analyzer, &mut out)?;
            continue;
        };
        frames += 1;
        if let Some(wr) = writer.as_mut() {
            let secs = f.time.as_micros();
            let p =
                pcap_file::pcap::PcapPacket::new(Duration::from_micros(secs), f.orig_len, &f.data);
            wr.write_packet(&p)
                .map_err(|e| io::Error::other(format!("writing the capture: {e}")))?;
        }
        if let Some(h) = out.html.as_mut() {
            h.flows.push_frame(&f);
        }
        analyzer.push_frame(&f);
        if out.capture_start.is_none() {
            out.capture_start = analyzer.stats().first_time;
        }
        flush_live(&mut analyzer, &mut out)?;
    }
    if let Some(wr) = writer {
        let mut inner = wr.into_writer();
        inner.flush()?;
    }
    let done = analyzer.finish();
    for t in &done.connections {
        out.conn(t)?;
    }
    let filter = out.filter;
    for q in done.quic.iter().filter(|q| filter.matches_quic(q)) {
        out.report.add_quic(q);
    }
    out.report
        .set_capture(done.stats, Some("live".into()), done.link_types.clone());
    finish(out, iface, None)
}

/// Draws the connections the analyzer handed out.
fn flush_live<W: Write>(a: &mut Analyzer, out: &mut Out<'_, W>) -> io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    a.flush_closed(synack_tcp::Instant::from_micros(
        u64::try_from(now.as_micros()).unwrap_or(u64::MAX),
    ));
    for t in a.take_finished() {
        out.conn(&t)?;
    }
    Ok(())
}

/// The HTML report of a capture: its summary line, the tables, then each connection (the
/// first three open) with its phases, plots and sequence diagram.
fn html_page(name: &str, report: &Report, parts: HtmlParts) -> String {
    let mut page = Page {
        title: format!("synack trace {name}"),
        lines: vec![report.capture_line(name)],
        sections: Vec::new(),
    };
    let mut blocks = Vec::new();
    for t in report.table_data() {
        let text_columns = match t.title {
            title if title.starts_with("connections") => 4,
            _ => 2,
        };
        blocks.push(Block::Table(Table {
            caption: Some(t.title.to_owned()),
            header: t.header.iter().map(|h| (*h).to_owned()).collect(),
            rows: t.rows,
            text_columns,
            links: Vec::new(),
        }));
    }
    if blocks.is_empty() {
        blocks.push(Block::Text(
            "No TCP connection or QUIC flow in the capture.".into(),
        ));
    }
    page.sections.push(Section {
        id: "tables".into(),
        title: "Tables".into(),
        blocks,
    });
    let mut conns = Vec::new();
    for (i, (heading, blocks)) in parts.headings.into_iter().zip(parts.conns).enumerate() {
        conns.push(Block::Fold {
            summary: heading,
            open: i < 3,
            blocks,
        });
    }
    if parts.more > 0 {
        conns.push(Block::Text(format!(
            "{} more connections are in the tables but not drawn (the report draws the first \
             {HTML_CONNECTIONS}).",
            parts.more
        )));
    }
    if !conns.is_empty() {
        conns.insert(
            0,
            Block::Text(
                "Each connection as a sequence diagram: one arrow per segment drawn, from the \
                 sender's lifeline to the receiver's. The capture saw each packet in one place, \
                 so when it left and arrived are estimated from the handshake (half of each \
                 side's round trip to the capture point). The data between the handshake and \
                 the close is one band per direction. Red: a retransmission."
                    .into(),
            ),
        );
        page.sections.push(Section {
            id: "connections".into(),
            title: "Connections".into(),
            blocks: conns,
        });
    }
    html::render(&page)
}
