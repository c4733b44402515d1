//! The report as one self-contained HTML page: tables, a sequence diagram per connection,
//! plots over time and per-call waterfalls, all inline (CSS, SVG and a few lines of script;
//! nothing is fetched, so the file opens from disk anywhere).
//!
//! The page is described by a [`Page`] of [`Section`]s holding [`Block`]s, and drawn by
//! [`render`]. [`records`] builds diagrams and plots from synack's own traces (the demo's
//! [`TraceRecord`](synack_tcp::TraceRecord)s), [`capture`] from a capture's
//! [`ConnTrace`](crate::ConnTrace)s and its packets.
//!
//! # The sequence diagram
//!
//! Two lifelines, the client's at the left and the server's at the right, time running down.
//! Each segment is one arrow (an SVG `<g class="seg">`) from the sender's lifeline at the
//! time it was sent to the receiver's at the time it arrived, so its slope is its delay; it
//! is labelled as the text ladder labels it (flags, seq, ack, len, win, options). A
//! retransmission is drawn in red; a lost segment is a dashed arrow that stops short, with a
//! cross where it ended. Each side's state changes are written beside its lifeline. A folded
//! run of data is one band (`<g class="band" data-segments="N">`, N the data segments and
//! ACKs it stands for) with its summary. Time is to scale (one RTT is 120 pixels) except
//! that simultaneous events are stacked and long gaps are shortened, with the real time
//! written beside a break on the time axis.

mod svg;

pub mod capture;
pub mod records;

use std::fmt::Write as _;

/// A side of a sequence diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's lifeline.
    Left,
    /// The server's lifeline.
    Right,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// A whole page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The page's title (and its first heading).
    pub title: String,
    /// Lines under the title: what was run, with which settings.
    pub lines: Vec<String>,
    pub sections: Vec<Section>,
}

/// A titled part of the page, with an anchor.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The anchor (`#id`); made unique by [`render`] if needed.
    pub id: String,
    pub title: String,
    pub blocks: Vec<Block>,
}

/// Something on the page.
#[derive(Debug, Clone)]
pub enum Block {
    /// A paragraph of text.
    Text(String),
    /// Key figures in a row of boxes: (label, value).
    Figures(Vec<(String, String)>),
    Table(Table),
    Diagram(Diagram),
    /// Plots side by side.
    Plots(Vec<Plot>),
    Waterfall(Waterfall),
    /// A collapsible group (`<details>`).
    Fold {
        summary: String,
        open: bool,
        blocks: Vec<Block>,
    },
}

/// A table of text cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub caption: Option<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The first this many columns are text (left-aligned); the rest are numbers.
    pub text_columns: usize,
    /// Links for the first cell of each row (`#anchor`), if any.
    pub links: Vec<Option<String>>,
}

/// The sequence diagram of one connection.
#[derive(Debug, Clone, Default)]
pub struct Diagram {
    pub title: String,
    /// The names over the lifelines (with their addresses).
    pub left: String,
    pub right: String,
    /// The round-trip time, which sets the scale (one RTT is 120 pixels); without one, the
    /// scale is taken from the gaps between events.
    pub rtt_us: Option<u64>,
    /// Times are microseconds since this instant on the time axis.
    pub origin_us: u64,
    pub events: Vec<Event>,
}

/// Something drawn on a sequence diagram. Times are microseconds (the diagram's clock).
#[derive(Debug, Clone)]
pub enum Event {
    Segment(Arrow),
    Band(Band),
    /// A state change beside a lifeline (`SYN-SENT -> ESTABLISHED`).
    State {
        side: Side,
        t: u64,
        text: String,
    },
    /// A retransmission or congestion event beside a lifeline.
    Note {
        side: Side,
        t: u64,
        text: String,
    },
    /// What a segment's payload carried (`GET /a HTTP/1.1`), between the lifelines.
    Annotation {
        from: Side,
        t: u64,
        text: String,
    },
    /// A line of text across the diagram (what was left out).
    Elided {
        t: u64,
        text: String,
    },
}

impl Event {
    /// When it starts.
    pub fn time(&self) -> u64 {
        match self {
            Event::Segment(a) => a.sent,
            Event::Band(b) => b.start,
            Event::State { t, .. }
            | Event::Note { t, .. }
            | Event::Annotation { t, .. }
            | Event::Elided { t, .. } => *t,
        }
    }
}

/// One segment.
#[derive(Debug, Clone)]
pub struct Arrow {
    pub from: Side,
    pub sent: u64,
    /// When it arrived, or (for a lost one) when it would have.
    pub arrived: u64,
    /// The arrival time is estimated (a capture sees a packet in one place only).
    pub estimated: bool,
    pub lost: bool,
    pub retransmission: bool,
    /// The ladder's text: `SYN, seq=0, win=65535, mss=1460`.
    pub label: String,
}

/// A folded run of data segments and the ACKs coming back.
#[derive(Debug, Clone)]
pub struct Band {
    pub from: Side,
    pub start: u64,
    pub end: u64,
    /// When the first and the last data arrived (or would have).
    pub arrive_start: u64,
    pub arrive_end: u64,
    /// The ladder's summary line.
    pub label: String,
    /// Segments it stands for: data segments and ACKs.
    pub segments: usize,
    pub retransmitted: usize,
}

/// A plot over time.
#[derive(Debug, Clone, Default)]
pub struct Plot {
    pub title: String,
    /// The y axis: `KiB`, `ms`, `Mbit/s`.
    pub unit: String,
    pub series: Vec<Series>,
    /// A line under the plot (where the numbers come from).
    pub note: Option<String>,
    /// The time axis (seconds) at least spans this, so that plots of one connection line up.
    pub x_range: Option<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Points joined by straight lines.
    Line,
    /// A value that holds until the next point.
    Step,
    /// Points only.
    Dots,
}

/// One series of a plot: (seconds, value) in time order.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub kind: SeriesKind,
    pub points: Vec<(f64, f64)>,
}

/// Calls as bars on a time line.
#[derive(Debug, Clone, Default)]
pub struct Waterfall {
    pub title: String,
    pub rows: Vec<WaterfallRow>,
}

/// One call.
#[derive(Debug, Clone, Default)]
pub struct WaterfallRow {
    pub label: String,
    pub bars: Vec<Bar>,
    /// Shown at the right of the bars (`reused`, `new connection`).
    pub note: String,
}

/// What a part of a call was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Waiting for a connection (from the call to its SYN, or to its request on a reused
    /// connection).
    Queue,
    /// SYN sent to ESTABLISHED.
    Handshake,
    /// Request sent to the first byte of the response.
    Request,
    /// First to last byte of the response.
    Response,
}

impl BarKind {
    pub fn name(self) -> &'static str {
        match self {
            BarKind::Queue => "wait for a connection",
            BarKind::Handshake => "handshake",
            BarKind::Request => "request → first byte",
            BarKind::Response => "response",
        }
    }
}

/// One part of a call, in microseconds since the start of the run.
#[derive(Debug, Clone, Copy)]
pub struct Bar {
    pub kind: BarKind,
    pub start: u64,
    pub end: u64,
}

/// Escapes text for HTML (and SVG) content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--c2s:#0969da;--s2c:#1a7f37;--rex:#cf222e;--lost:#9a6700;--band:#54aeff}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:var(--fg);margin:0;background:#fff}
header{background:#24292f;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#d1d9e0;font-size:13px}
nav{padding:8px 28px;background:var(--bg);border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
nav a{margin-right:14px;color:var(--c2s);text-decoration:none;font-size:13px}
main{max-width:1320px;margin:0 auto;padding:8px 28px 40px}
section{margin-top:26px}
h2{font-size:18px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);white-space:nowrap}
th{background:var(--bg);text-align:left;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:hover{background:#fff8c5}
a{color:var(--c2s)}
.figs{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.fig{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:120px;background:var(--bg)}
.fig b{display:block;font-size:20px;font-variant-numeric:tabular-nums}
.fig span{color:var(--muted);font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.plot{border:1px solid var(--line);border-radius:6px;padding:6px;flex:1 1 380px;max-width:490px}
.plot svg{width:100%;height:auto}
.plot p{margin:2px 4px;color:var(--muted);font-size:12px}
.tablewrap{overflow-x:auto;max-width:100%}
details{margin:6px 0;border:1px solid var(--line);border-radius:6px;padding:4px 10px}
details[open]{padding-bottom:10px}
summary{cursor:pointer;font-weight:600;padding:4px 0}
svg{display:block;max-width:100%;height:auto}
svg text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.diagram{overflow-x:auto}
.seg text,.band text{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.seg:hover line,.seg:hover path{stroke-width:2.6}
.seg:hover text{font-weight:700}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:var(--muted);margin:4px 0}
.legend i{display:inline-block;width:22px;height:3px;vertical-align:middle;margin-right:5px}
.muted{color:var(--muted)}
.readout{font-size:12px;color:var(--muted);min-height:16px;margin:0 4px}
"#;

/// A few lines of script: a readout of the plots under the pointer, and buttons that open
/// or close every diagram.
const JS: &str = r#"
(function(){
  document.querySelectorAll('svg.plotsvg').forEach(function(svg){
    var out = svg.parentNode.querySelector('.readout');
    if (!out) return;
    svg.addEventListener('mousemove', function(ev){
      var r = svg.getBoundingClientRect();
      var vb = svg.viewBox.baseVal;
      var x = (ev.clientX - r.left) * vb.width / r.width;
      var x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, t0 = +svg.dataset.t0, t1 = +svg.dataset.t1;
      if (!(x1 > x0) || x < x0 || x > x1) { out.textContent = ''; return; }
      var t = t0 + (x - x0) / (x1 - x0) * (t1 - t0);
      out.textContent = 't = ' + t.toFixed(4) + ' s';
    });
  });
  var all = document.getElementById('openall'), none = document.getElementById('closeall');
  function set(v){ document.querySelectorAll('details').forEach(function(d){ d.open = v; }); }
  if (all) all.addEventListener('click', function(){ set(true); });
  if (none) none.addEventListener('click', function(){ set(false); });
})();
"#;

/// The page as one HTML document.
pub fn render(page: &Page) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<header><h1>{}</h1>",
        esc(&page.title),
        esc(&page.title)
    );
    for l in &page.lines {
        let _ = write!(o, "<p>{}</p>", esc(l));
    }
    o.push_str("</header>\n<nav>");
    let mut ids = Vec::new();
    for (i, s) in page.sections.iter().enumerate() {
        let mut id: String =
            s.id.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
        if id.is_empty() || ids.contains(&id) {
            id = format!("s{i}-{id}");
        }
        let _ = write!(o, "<a href=\"#{id}\">{}</a>", esc(&s.title));
        ids.push(id);
    }
    o.push_str(
        "<button id=\"openall\" type=\"button\">open all diagrams</button> \
         <button id=\"closeall\" type=\"button\">close all</button></nav>\n<main>\n",
    );
    let mut n = 0usize;
    for (s, id) in page.sections.iter().zip(&ids) {
        let _ = writeln!(o, "<section id=\"{id}\"><h2>{}</h2>", esc(&s.title));
        for b in &s.blocks {
            block(&mut o, b, &mut n);
        }
        o.push_str("</section>\n");
    }
    let _ = write!(o, "</main>\n<script>{JS}</script>\n</body></html>\n");
    o
}

/// Draws a block; `n` numbers the SVGs (for unique marker ids).
fn block(o: &mut String, b: &Block, n: &mut usize) {
    match b {
        Block::Text(t) => {
            let _ = writeln!(o, "<p>{}</p>", esc(t));
        }
        Block::Figures(f) => {
            o.push_str("<div class=\"figs\">");
            for (label, value) in f {
                let _ = write!(
                    o,
                    "<div class=\"fig\"><b>{}</b><span>{}</span></div>",
                    esc(value),
                    esc(label)
                );
            }
            o.push_str("</div>\n");
        }
        Block::Table(t) => table(o, t),
        Block::Diagram(d) => {
            *n += 1;
            o.push_str("<div class=\"diagram\">");
            o.push_str(&svg::diagram(d, *n));
            o.push_str("</div>\n");
        }
        Block::Plots(ps) => {
            o.push_str("<div class=\"plots\">");
            for p in ps {
                *n += 1;
                o.push_str("<div class=\"plot\">");
                o.push_str(&svg::plot(p, *n));
                o.push_str("<div class=\"readout\"></div>");
                if let Some(note) = &p.note {
                    let _ = write!(o, "<p>{}</p>", esc(note));
                }
                o.push_str("</div>");
            }
            o.push_str("</div>\n");
        }
        Block::Waterfall(w) => {
            *n += 1;
            o.push_str(&svg::waterfall(w, *n));
        }
        Block::Fold {
            summary,
            open,
            blocks,
        } => {
            let _ = writeln!(
                o,
                "<details{}><summary>{}</summary>",
                if *open { " open" } else { "" },
                esc(summary)
            );
            for b in blocks {
                block(o, b, n);
            }
            o.push_str("</details>\n");
        }
    }
}

fn table(o: &mut String, t: &Table) {
    o.push_str("<div class=\"tablewrap\"><table>");
    if let Some(c) = &t.caption {
        let _ = write!(o, "<caption>{}</caption>", esc(c));
    }
    o.push_str("<thead><tr>");
    for (i, h) in t.header.iter().enumerate() {
        let class = if i < t.text_columns {
            ""
        } else {
            " class=\"n\""
        };
        let _ = write!(o, "<th{class}>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>");
    for (r, row) in t.rows.iter().enumerate() {
        o.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if i < t.text_columns {
                ""
            } else {
                " class=\"n\""
            };
            match t.links.get(r).and_then(Option::as_ref) {
                Some(href) if i == 0 => {
                    let _ = write!(
                        o,
                        "<td{class}><a href=\"{}\">{}</a></td>",
                        esc(href),
                        esc(c)
                    );
                }
                _ => {
                    let _ = write!(o, "<td{class}>{}</td>", esc(c));
                }
            }
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let page = Page {
            title: "a <b> & \"c\"".into(),
            lines: vec!["<script>x</script>".into()],
            sections: vec![Section {
                id: "one two".into(),
                title: "T".into(),
                blocks: vec![Block::Text("<i>".into())],
            }],
        };
        let h = render(&page);
        assert!(h.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(!h.contains("<script>x"));
        assert!(h.contains("id=\"one-two\""));
        assert!(h.contains("&lt;i&gt;"));
    }
}
