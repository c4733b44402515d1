//! SVG drawings: the sequence diagram, plots over time, the waterfall of calls.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{esc, Arrow, Band, BarKind, Diagram, Event, Plot, SeriesKind, Side, Waterfall};

/// Diagram geometry (pixels).
const WIDTH: f64 = 980.0;
const X_LEFT: f64 = 250.0;
const X_RIGHT: f64 = 760.0;
const TOP: f64 = 62.0;
/// Vertical room of one label.
const SLOT: f64 = 17.0;
/// One RTT, drawn to scale.
const RTT_PX: f64 = 120.0;
/// Longer gaps are shortened to [`BREAK`], with the real time written in them.
const MAX_GAP: f64 = 150.0;
const BREAK: f64 = 60.0;
/// A lost segment's arrow stops this far along.
const LOST_AT: f64 = 0.55;
/// A band's label is wrapped at this many characters.
const BAND_WRAP: usize = 68;

const C2S: &str = "#0969da";
const S2C: &str = "#1a7f37";
const REX: &str = "#cf222e";
const LOST: &str = "#9a6700";

/// Which column a label takes: none (an arrival), a side's state column, or the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    Anchor,
    Left,
    Middle,
    Right,
    /// Arrivals at the left and at the right lifeline: segments that arrive at one instant
    /// are stacked as they were sent, so that their arrows stay parallel.
    ArriveLeft,
    ArriveRight,
}

const LANES: usize = 6;

/// Where times go on the page: each event's label gets its own slot, a time to scale gets a
/// y, long gaps are shortened.
struct TimeMap {
    /// Per time: its y.
    y: BTreeMap<u64, f64>,
    /// Per event (by index): its label's y.
    slot: Vec<f64>,
    /// Per segment (by event index): its arrival's y.
    arrival: Vec<f64>,
    /// Gaps shortened: (y from, y to, real microseconds).
    breaks: Vec<(f64, f64, u64)>,
    /// Times that got a label, with their y (for the time axis).
    labelled: Vec<(u64, f64)>,
    bottom: f64,
}

impl TimeMap {
    fn new(d: &Diagram) -> TimeMap {
        // (time, lane, event index or usize::MAX for anchors)
        let mut items: Vec<(u64, Lane, usize)> = Vec::new();
        for (i, e) in d.events.iter().enumerate() {
            match e {
                Event::Segment(a) => {
                    items.push((a.sent, Lane::Middle, i));
                    let lane = match a.from {
                        Side::Left => Lane::ArriveRight,
                        Side::Right => Lane::ArriveLeft,
                    };
                    items.push((a.arrived.max(a.sent), lane, i));
                }
                Event::Band(b) => {
                    items.push((b.start, Lane::Middle, i));
                    for t in [b.end, b.arrive_start, b.arrive_end] {
                        items.push((t.max(b.start), Lane::Anchor, usize::MAX));
                    }
                    // Room for its label's lines, drawn under its start.
                    for _ in 0..wrap(&b.label, BAND_WRAP).len() {
                        items.push((b.start, Lane::Middle, usize::MAX - 1));
                    }
                }
                Event::State { side, t, .. } | Event::Note { side, t, .. } => {
                    let lane = if *side == Side::Left {
                        Lane::Left
                    } else {
                        Lane::Right
                    };
                    items.push((*t, lane, i));
                }
                Event::Annotation { t, .. } | Event::Elided { t, .. } => {
                    items.push((*t, Lane::Middle, i));
                }
            }
        }
        // Stable: events of one time keep their order.
        items.sort_by_key(|x| x.0);
        let scale = RTT_PX / d.rtt_us.filter(|r| *r > 0).unwrap_or_else(|| guess_rtt(d)) as f64;
        let mut map = TimeMap {
            y: BTreeMap::new(),
            slot: vec![TOP; d.events.len()],
            arrival: vec![TOP; d.events.len()],
            breaks: Vec::new(),
            labelled: Vec::new(),
            bottom: TOP,
        };
        let mut last: [f64; LANES] = [f64::MIN; LANES];
        let mut prev: Option<(u64, f64)> = None;
        let mut i = 0;
        while i < items.len() {
            let t = items[i].0;
            let j = i + items[i..].iter().take_while(|x| x.0 == t).count();
            let group = &items[i..j];
            let mut y = match prev {
                None => TOP,
                Some((pt, py)) => {
                    let real = (t - pt) as f64 * scale;
                    if real > MAX_GAP {
                        map.breaks.push((py, py + BREAK, t - pt));
                        py + BREAK
                    } else {
                        py + real
                    }
                }
            };
            for x in group {
                if x.1 != Lane::Anchor {
                    y = y.max(last[x.1 as usize] + SLOT);
                }
            }
            let mut next = [y; LANES];
            let mut labelled = false;
            for x in group {
                if x.1 == Lane::Anchor {
                    continue;
                }
                let lane = x.1 as usize;
                if matches!(x.1, Lane::ArriveLeft | Lane::ArriveRight) {
                    map.arrival[x.2] = next[lane];
                } else if x.2 < map.slot.len() {
                    map.slot[x.2] = next[lane];
                    labelled = true;
                }
                last[lane] = next[lane];
                next[lane] += SLOT;
            }
            if labelled {
                map.labelled.push((t, y));
            }
            map.y.insert(t, y);
            map.bottom = map
                .bottom
                .max(y)
                .max(last.iter().copied().fold(y, f64::max));
            prev = Some((t, y));
            i = j;
        }
        map
    }

    fn at(&self, t: u64) -> f64 {
        match self.y.range(..=t).next_back() {
            Some((_, y)) => *y,
            None => TOP,
        }
    }
}

/// Twice the longest delay of a segment, or 50 ms.
fn guess_rtt(d: &Diagram) -> u64 {
    let m = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Segment(a) if !a.lost => Some(a.arrived.saturating_sub(a.sent)),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    if m == 0 {
        50_000
    } else {
        2 * m
    }
}

fn x_of(s: Side) -> f64 {
    match s {
        Side::Left => X_LEFT,
        Side::Right => X_RIGHT,
    }
}

/// `12.345` (milliseconds with microseconds) of `us`.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// A span for humans: `850 µs`, `12.5 ms`, `59.8 s`.
fn span(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.3} s", us as f64 / 1e6)
    }
}

/// Splits a long label into lines of at most `max` characters at `, ` and `; `.
fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for (i, part) in s.split_inclusive([',', ';']).enumerate() {
        let cur = lines.last_mut().expect("one line");
        if i > 0 && cur.chars().count() + part.chars().count() > max {
            lines.push(part.trim_start().to_owned());
        } else {
            cur.push_str(part);
        }
    }
    lines
}

/// The sequence diagram; `n` makes its marker ids unique on the page.
pub(super) fn diagram(d: &Diagram, n: usize) -> String {
    let map = TimeMap::new(d);
    let height = map.bottom + 40.0;
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"ladder\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height:.0}\" \
         width=\"{WIDTH}\" height=\"{height:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(&d.title)
    );
    let _ = write!(o, "<defs>");
    for (id, color) in [("b", C2S), ("g", S2C), ("r", REX)] {
        let _ = write!(
            o,
            "<marker id=\"ah{n}{id}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
             markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{color}\"/></marker>"
        );
    }
    o.push_str("</defs>");
    // Compressed gaps (not those inside a band: data flowed then).
    let bands: Vec<(f64, f64)> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Band(b) => Some((map.at(b.start), map.at(b.arrive_end.max(b.end)))),
            _ => None,
        })
        .collect();
    for &(y0, y1, us) in &map.breaks {
        if bands.iter().any(|&(a, b)| y0 >= a && y1 <= b) {
            continue;
        }
        let _ = write!(
            o,
            "<rect x=\"0\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"{:.1}\" fill=\"#f6f8fa\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#59636e\">\
             ⋯ {} later ⋯</text>",
            y0 + 6.0,
            (y1 - y0 - 12.0).max(1.0),
            (X_LEFT + X_RIGHT) / 2.0,
            (y0 + y1) / 2.0 + 4.0,
            span(us)
        );
    }
    // Lifelines and their heads.
    for (x, name) in [(X_LEFT, &d.left), (X_RIGHT, &d.right)] {
        let _ = write!(
            o,
            "<line x1=\"{x}\" y1=\"36\" x2=\"{x}\" y2=\"{:.0}\" stroke=\"#8c959f\" stroke-width=\"1.5\"/>\
             <rect x=\"{:.0}\" y=\"8\" width=\"220\" height=\"28\" rx=\"5\" fill=\"#24292f\"/>\
             <text x=\"{x}\" y=\"27\" text-anchor=\"middle\" font-size=\"12\" fill=\"#fff\">{}</text>",
            height - 14.0,
            x - 110.0,
            esc(name)
        );
    }
    let _ = write!(
        o,
        "<text x=\"8\" y=\"27\" font-size=\"11\" fill=\"#59636e\">ms</text>"
    );
    // The time axis.
    let mut last_y = f64::MIN;
    for &(t, y) in &map.labelled {
        if y < last_y + 12.0 {
            continue;
        }
        last_y = y;
        let _ = write!(
            o,
            "<text x=\"70\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10.5\" fill=\"#59636e\">{}</text>",
            y + 4.0,
            ms(t.saturating_sub(d.origin_us))
        );
    }
    for (i, e) in d.events.iter().enumerate() {
        let y = map.slot[i];
        match e {
            Event::Segment(a) => arrow(&mut o, a, y, map.arrival[i], n, d.origin_us),
            Event::Band(b) => band(&mut o, b, y, &map),
            Event::State { side, text, .. } => {
                let x = x_of(*side);
                let (tx, anchor) = match side {
                    Side::Left => (x - 10.0, "end"),
                    Side::Right => (x + 10.0, "start"),
                };
                let _ = write!(
                    o,
                    "<g class=\"state\"><circle cx=\"{x}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"#24292f\"/>\
                     <text x=\"{tx}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"11\" \
                     font-weight=\"600\" fill=\"#24292f\">{}</text></g>",
                    y + 4.0,
                    esc(text)
                );
            }
            Event::Note { side, text, .. } => {
                let x = x_of(*side);
                let (tx, anchor) = match side {
                    Side::Left => (x - 10.0, "end"),
                    Side::Right => (x + 10.0, "start"),
                };
                let _ = write!(
                    o,
                    "<text class=\"note\" x=\"{tx}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"10.5\" \
                     font-style=\"italic\" fill=\"{REX}\">{}</text>",
                    y + 4.0,
                    esc(text)
                );
            }
            Event::Annotation { from, text, .. } => {
                let arrow = if *from == Side::Left { "⇢" } else { "⇠" };
                let _ = write!(
                    o,
                    "<text class=\"app\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" \
                     font-style=\"italic\" fill=\"#8250df\">{arrow} {}</text>",
                    (X_LEFT + X_RIGHT) / 2.0,
                    y + 4.0,
                    esc(text)
                );
            }
            Event::Elided { text, .. } => {
                let _ = write!(
                    o,
                    "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" \
                     fill=\"#59636e\">… {} …</text>",
                    (X_LEFT + X_RIGHT) / 2.0,
                    y + 4.0,
                    esc(text)
                );
            }
        }
    }
    o.push_str("</svg>");
    o
}

fn arrow(o: &mut String, a: &Arrow, y0: f64, y1: f64, n: usize, origin: u64) {
    let (x0, x1) = (x_of(a.from), x_of(a.from.other()));
    let y1 = y1.max(y0);
    let (color, marker, class) = if a.retransmission {
        (REX, "r", "rex")
    } else if a.from == Side::Left {
        (C2S, "b", "c2s")
    } else {
        (S2C, "g", "s2c")
    };
    let (color, lost) = if a.lost { (LOST, " lost") } else { (color, "") };
    let delay = a.arrived.saturating_sub(a.sent);
    let title = format!(
        "{}\nsent at {} ms; {} {} ms later{}",
        a.label,
        ms(a.sent.saturating_sub(origin)),
        if a.lost {
            "lost (would have arrived"
        } else {
            "arrived"
        },
        ms(delay),
        match (a.lost, a.estimated) {
            (true, _) => ")",
            (false, true) => " (estimated: the capture saw it in one place)",
            (false, false) => "",
        }
    );
    let _ = write!(
        o,
        "<g class=\"seg {class}{lost}\"><title>{}</title>",
        esc(&title)
    );
    if a.lost {
        let xe = x0 + (x1 - x0) * LOST_AT;
        let ye = y0 + (y1 - y0) * LOST_AT;
        let _ = write!(
            o,
            "<line x1=\"{x0}\" y1=\"{y0:.1}\" x2=\"{xe:.1}\" y2=\"{ye:.1}\" stroke=\"{color}\" \
             stroke-width=\"1.6\" stroke-dasharray=\"5 3\"/>\
             <path d=\"M{:.1},{:.1} l10,10 M{:.1},{:.1} l10,-10\" stroke=\"{REX}\" stroke-width=\"2.2\"/>",
            xe - 5.0,
            ye - 5.0,
            xe - 5.0,
            ye + 5.0
        );
    } else {
        let _ = write!(
            o,
            "<line x1=\"{x0}\" y1=\"{y0:.1}\" x2=\"{x1}\" y2=\"{y1:.1}\" stroke=\"{color}\" \
             stroke-width=\"1.6\"{} marker-end=\"url(#ah{n}{marker})\"/>",
            if a.estimated {
                " stroke-dasharray=\"1 0\""
            } else {
                ""
            }
        );
    }
    // The label along the arrow, over its middle, upright.
    let (lx, ly, rx, ry) = if x0 < x1 {
        (x0, y0, x1, y1)
    } else {
        (x1, y1, x0, y0)
    };
    let angle = (ry - ly).atan2(rx - lx).to_degrees();
    let (mx, my) = ((lx + rx) / 2.0, (ly + ry) / 2.0);
    let weight = if a.retransmission || a.lost {
        " font-weight=\"600\""
    } else {
        ""
    };
    let _ = write!(
        o,
        "<text x=\"{mx:.1}\" y=\"{my:.1}\" dy=\"-4\" text-anchor=\"middle\" font-size=\"11\" \
         fill=\"{color}\"{weight} transform=\"rotate({angle:.2} {mx:.1} {my:.1})\">{}</text></g>",
        esc(&a.label)
    );
}

fn band(o: &mut String, b: &Band, y0: f64, map: &TimeMap) {
    let (x0, x1) = (x_of(b.from), x_of(b.from.other()));
    let ye = map.at(b.end).max(y0 + 8.0);
    let ya = map.at(b.arrive_start).max(y0);
    let yb = map.at(b.arrive_end).max(ye).max(ya + 8.0);
    let color = if b.retransmitted > 0 {
        REX
    } else if b.from == Side::Left {
        C2S
    } else {
        S2C
    };
    let _ = write!(
        o,
        "<g class=\"band\" data-segments=\"{}\"><title>{}</title>\
         <polygon points=\"{x0},{y0:.1} {x1},{ya:.1} {x1},{yb:.1} {x0},{ye:.1}\" fill=\"{color}\" \
         fill-opacity=\"0.13\" stroke=\"{color}\" stroke-opacity=\"0.7\"/>",
        b.segments,
        esc(&b.label)
    );
    let lines = wrap(&b.label, BAND_WRAP);
    let mid = y0 + SLOT;
    for (i, l) in lines.iter().enumerate() {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"600\" \
             fill=\"{color}\">{}</text>",
            (x0 + x1) / 2.0,
            mid + 4.0 + i as f64 * SLOT,
            esc(l)
        );
    }
    o.push_str("</g>");
}

/// Tick values for [lo, hi]: about `n` of them at 1, 2 or 5 × 10^k.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || !hi.is_finite() || !lo.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * 0.75)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut x = (lo / step).ceil() * step;
    while x <= hi + step * 1e-9 {
        v.push(x);
        x += step;
    }
    v
}

/// A number for an axis: no more decimals than the tick step needs.
fn tick_text(x: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{x:.decimals$}")
}

const PALETTE: [&str; 5] = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700"];

/// At most about two points per pixel column: the lowest and highest of each.
fn thin(points: &[(f64, f64)], t0: f64, t1: f64, columns: usize) -> Vec<(f64, f64)> {
    if points.len() <= columns * 2 || t1 <= t0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(columns * 2);
    let col = |t: f64| (((t - t0) / (t1 - t0)) * columns as f64) as usize;
    let mut i = 0;
    while i < points.len() {
        let c = col(points[i].0);
        let j = i + points[i..].iter().take_while(|p| col(p.0) == c).count();
        let chunk = &points[i..j];
        let lo = chunk
            .iter()
            .copied()
            .fold(chunk[0], |a, p| if p.1 < a.1 { p } else { a });
        let hi = chunk
            .iter()
            .copied()
            .fold(chunk[0], |a, p| if p.1 > a.1 { p } else { a });
        if lo.0 <= hi.0 {
            out.push(lo);
            if hi != lo {
                out.push(hi);
            }
        } else {
            out.push(hi);
            out.push(lo);
        }
        i = j;
    }
    out
}

/// A plot of series over time.
pub(super) fn plot(p: &Plot, n: usize) -> String {
    const W: f64 = 470.0;
    const H: f64 = 240.0;
    const L: f64 = 58.0;
    const R: f64 = 14.0;
    const T: f64 = 40.0;
    const B: f64 = 34.0;
    let all = p.series.iter().flat_map(|s| s.points.iter());
    let (mut t0, mut t1, mut ymax) = (f64::MAX, f64::MIN, 0f64);
    for &(t, y) in all {
        t0 = t0.min(t);
        t1 = t1.max(t);
        ymax = ymax.max(y);
    }
    if let Some((a, b)) = p.x_range {
        (t0, t1) = (a.min(t0), b.max(t1));
    }
    if t0 > t1 {
        (t0, t1) = (0.0, 1.0);
    }
    if t1 - t0 < 1e-6 {
        t1 = t0 + 1e-3;
    }
    if ymax <= 0.0 {
        ymax = 1.0;
    }
    let yt = ticks(0.0, ymax * 1.05, 5);
    let ystep = yt.get(1).map_or(1.0, |b| b - yt[0]);
    let ytop = yt.last().copied().unwrap_or(ymax).max(ymax);
    let xt = ticks(t0, t1, 5);
    let xstep = xt.get(1).map_or(1.0, |b| b - xt[0]);
    let sx = |t: f64| L + (t - t0) / (t1 - t0) * (W - L - R);
    let sy = |v: f64| H - B - v / ytop * (H - T - B);
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"plotsvg\" id=\"plot{n}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" data-x0=\"{L}\" data-x1=\"{}\" data-t0=\"{t0}\" data-t1=\"{t1}\" \
         role=\"img\" aria-label=\"{}\">\
         <text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"600\" fill=\"#1f2328\" \
         style=\"font-family:system-ui,sans-serif\">{}</text>",
        W - R,
        esc(&p.title),
        esc(&p.title)
    );
    for &v in &yt {
        let y = sy(v);
        let _ = write!(
            o,
            "<line x1=\"{L}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\" fill=\"#59636e\">{}</text>",
            W - R,
            L - 5.0,
            y + 3.5,
            tick_text(v, ystep)
        );
    }
    for &t in &xt {
        let x = sx(t);
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#59636e\">{}</text>",
            H - B,
            H - B + 4.0,
            H - B + 15.0,
            tick_text(t, xstep)
        );
    }
    let _ = write!(
        o,
        "<line x1=\"{L}\" x2=\"{L}\" y1=\"{T}\" y2=\"{}\" stroke=\"#8c959f\"/>\
         <line x1=\"{L}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10.5\" fill=\"#59636e\">time (s)</text>\
         <text x=\"12\" y=\"{}\" font-size=\"10.5\" fill=\"#59636e\" transform=\"rotate(-90 12 {})\" \
         text-anchor=\"middle\">{}</text>",
        H - B,
        W - R,
        H - B,
        H - B,
        (L + W - R) / 2.0,
        H - 4.0,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        esc(&p.unit)
    );
    let mut lx = L;
    for (i, s) in p.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts = thin(&s.points, t0, t1, (W - L - R) as usize);
        match s.kind {
            SeriesKind::Dots => {
                let _ = write!(o, "<g class=\"series\" fill=\"{color}\">");
                for &(t, v) in &pts {
                    let _ = write!(
                        o,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>",
                        sx(t),
                        sy(v)
                    );
                }
                o.push_str("</g>");
            }
            SeriesKind::Line | SeriesKind::Step => {
                let mut d = String::new();
                let mut prev: Option<f64> = None;
                for &(t, v) in &pts {
                    let (x, y) = (sx(t), sy(v));
                    match prev {
                        None => {
                            let _ = write!(d, "{x:.1},{y:.1}");
                        }
                        Some(py) if s.kind == SeriesKind::Step => {
                            let _ = write!(d, " {x:.1},{py:.1} {x:.1},{y:.1}");
                        }
                        Some(_) => {
                            let _ = write!(d, " {x:.1},{y:.1}");
                        }
                    }
                    prev = Some(y);
                }
                if s.kind == SeriesKind::Step {
                    if let Some(py) = prev {
                        let _ = write!(d, " {:.1},{py:.1}", sx(t1));
                    }
                }
                // Later series dashed, so that equal values stay visible.
                let dash = if i > 0 {
                    " stroke-dasharray=\"6 3\""
                } else {
                    ""
                };
                let _ = write!(
                    o,
                    "<polyline class=\"series\" points=\"{d}\" fill=\"none\" stroke=\"{color}\" \
                     stroke-width=\"{}\"{dash} stroke-linejoin=\"round\"/>",
                    if i > 0 { 2.0 } else { 1.5 }
                );
                if pts.len() == 1 {
                    let (t, v) = pts[0];
                    let _ = write!(
                        o,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                        sx(t),
                        sy(v)
                    );
                }
            }
        }
        // Legend, across the top.
        let _ = write!(
            o,
            "<rect x=\"{lx:.0}\" y=\"24\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{:.0}\" y=\"30\" font-size=\"10.5\" fill=\"#1f2328\" \
             style=\"font-family:system-ui,sans-serif\">{}</text>",
            lx + 18.0,
            esc(&s.name)
        );
        lx += 26.0 + s.name.chars().count() as f64 * 6.0;
    }
    o.push_str("</svg>");
    o
}

fn bar_color(k: BarKind) -> &'static str {
    match k {
        BarKind::Queue => "#afb8c1",
        BarKind::Handshake => "#fb8f44",
        BarKind::Request => "#0969da",
        BarKind::Response => "#1a7f37",
    }
}

/// The waterfall of calls.
pub(super) fn waterfall(w: &Waterfall, _n: usize) -> String {
    const W: f64 = 980.0;
    const X0: f64 = 230.0;
    const X1: f64 = 770.0;
    const ROW: f64 = 20.0;
    const TOP: f64 = 30.0;
    let mut o = String::new();
    o.push_str("<div class=\"legend\">");
    for k in [
        BarKind::Queue,
        BarKind::Handshake,
        BarKind::Request,
        BarKind::Response,
    ] {
        let _ = write!(
            o,
            "<span><i style=\"background:{};height:10px\"></i>{}</span>",
            bar_color(k),
            esc(k.name())
        );
    }
    o.push_str("</div>");
    let end = w
        .rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.end))
        .max()
        .unwrap_or(1)
        .max(1);
    let start = w
        .rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.start))
        .min()
        .unwrap_or(0)
        .min(end - 1);
    let height = TOP + ROW * w.rows.len() as f64 + 10.0;
    let sx = |us: u64| X0 + (us.saturating_sub(start)) as f64 / (end - start) as f64 * (X1 - X0);
    let _ = write!(
        o,
        "<svg class=\"waterfall\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height:.0}\" \
         width=\"{W}\" height=\"{height:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(&w.title)
    );
    let tk = ticks(start as f64 / 1000.0, end as f64 / 1000.0, 8);
    let step = tk.get(1).map_or(1.0, |b| b - tk[0]);
    for &t in &tk {
        let x = sx((t * 1000.0) as u64);
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{:.0}\" stroke=\"#eaeef2\"/>\
             <text x=\"{x:.1}\" y=\"18\" text-anchor=\"middle\" font-size=\"10\" fill=\"#59636e\">{} ms</text>",
            TOP - 4.0,
            height - 6.0,
            tick_text(t, step)
        );
    }
    for (i, r) in w.rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        if i % 2 == 1 {
            let _ = write!(
                o,
                "<rect x=\"0\" y=\"{y:.0}\" width=\"{W}\" height=\"{ROW}\" fill=\"#f6f8fa\" fill-opacity=\"0.7\"/>"
            );
        }
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.0}\" text-anchor=\"end\" font-size=\"11\" fill=\"#1f2328\">{}</text>",
            X0 - 8.0,
            y + 14.0,
            esc(&r.label)
        );
        for b in &r.bars {
            let (x0, x1) = (sx(b.start), sx(b.end.max(b.start)));
            let _ = write!(
                o,
                "<rect class=\"bar\" x=\"{x0:.1}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{}\" rx=\"2\" fill=\"{}\">\
                 <title>{}: {} ms (from {} to {} ms)</title></rect>",
                y + 4.0,
                (x1 - x0).max(1.5),
                ROW - 8.0,
                bar_color(b.kind),
                esc(b.kind.name()),
                ms(b.end.saturating_sub(b.start)),
                ms(b.start),
                ms(b.end)
            );
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.0}\" font-size=\"10.5\" fill=\"#59636e\">{}</text>",
            X1 + 12.0,
            y + 14.0,
            esc(&r.note)
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.013, 0.42, 4);
        assert!(t.len() >= 3 && t.len() <= 6, "{t:?}");
    }

    #[test]
    fn labels_wrap_at_commas() {
        let w = wrap("738 data segments, seq=1..1048621 (1.00 MiB) in 791.870 ms, 13 retransmitted; 610 ACKs back", 40);
        assert!(w.len() >= 3, "{w:?}");
        assert!(w.iter().all(|l| l.len() <= 45), "{w:?}");
    }

    #[test]
    fn thinning_keeps_the_extremes() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let t = thin(&pts, 0.0, 10_000.0, 100);
        assert!(t.len() <= 200);
        assert!(t.iter().any(|p| p.1 == 6.0) && t.iter().any(|p| p.1 == 0.0));
    }

    #[test]
    fn one_arrow_per_segment_and_time_runs_down() {
        let mk = |from, sent, arrived, lost| {
            Event::Segment(Arrow {
                from,
                sent,
                arrived,
                estimated: false,
                lost,
                retransmission: false,
                label: "ACK".into(),
            })
        };
        let d = Diagram {
            title: "t".into(),
            left: "client".into(),
            right: "server".into(),
            rtt_us: Some(50_000),
            origin_us: 0,
            events: vec![
                mk(Side::Left, 0, 25_000, false),
                mk(Side::Right, 25_000, 50_000, false),
                mk(Side::Left, 50_000, 75_000, true),
                mk(Side::Left, 10_000_000, 10_025_000, false),
            ],
        };
        let s = diagram(&d, 1);
        assert_eq!(s.matches("class=\"seg ").count(), 4);
        assert_eq!(s.matches(" lost\"").count(), 1);
        // The 10 s gap is shortened and said.
        assert!(s.contains("9.925 s later"), "{s}");
        let map = TimeMap::new(&d);
        assert!(map.at(25_000) > map.at(0));
        assert!((map.at(50_000) - map.at(0) - RTT_PX).abs() < 1.0);
    }
}
