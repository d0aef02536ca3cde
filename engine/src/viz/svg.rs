//! The report's plots as SVG text, written by hand (see README: smaller and faster than a
//! plotting library for these five kinds of plot, measured).
//!
//! Every mark carries its exact count (`data-count`) and every series its total
//! (`data-total`), so a plot can be checked against the stats document it came from; each
//! mark has a `<title>` (the tooltip a browser shows).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::model::Capped;

/// Colours of the reasons, in order of their totals (Tableau 10, then a few more).
const PALETTE: [&str; 14] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1b9e77", "#7570b3", "#d95f02", "#66a61e",
];
const OTHER_COLOUR: &str = "#8c8c8c";

/// Text escaped for XML (content and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// Reasons and their colours: the given order (most first) takes the palette.
#[derive(Debug, Default)]
pub struct Colours {
    order: Vec<String>,
}

impl Colours {
    pub fn new(order: Vec<String>) -> Colours {
        Colours { order }
    }
    pub fn of(&self, reason: &str) -> &'static str {
        self.order
            .iter()
            .position(|r| r == reason)
            .and_then(|i| PALETTE.get(i))
            .copied()
            .unwrap_or(OTHER_COLOUR)
    }
}

fn open(w: u32, h: u32, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
font-family=\"sans-serif\" font-size=\"12\" role=\"img\"><title>{}</title>\
<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\
<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
    s
}

/// A round step for about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    (m * mag).max(f64::MIN_POSITIVE)
}

/// A number for an axis or label: 1234567 -> "1.23M".
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn empty_plot(title: &str, why: &str) -> String {
    let mut s = open(600, 80, title);
    let _ = write!(
        s,
        "<text x=\"10\" y=\"50\" fill=\"#555\">{}</text></svg>",
        esc(why)
    );
    s
}

/// One point of a timeline: bucket start (Unix ns), (reason, events).
pub type Point = (u64, Vec<(String, u64)>);

/// Stacked bars of events per second per reason over time. `bucket_ns` is each point's
/// width; points are drawn at their place between the first and the last (gaps stay
/// empty). When there are more buckets than pixels, neighbours share a column (the counts
/// add; the rate is over the column's time).
pub fn timeline(title: &str, points: &[Point], bucket_ns: u64, colours: &Colours) -> String {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return empty_plot(title, "no events over time in this input");
    };
    let bucket_ns = bucket_ns.max(1);
    let (w, h) = (1100u32, 360u32);
    let (left, right, top, bottom) = (70.0, 210.0, 36.0, 46.0);
    let pw = f64::from(w) - left - right;
    let ph = f64::from(h) - top - bottom;
    let t0 = first.0 / bucket_ns;
    let span = (last.0 / bucket_ns).saturating_sub(t0) + 1;
    // Buckets per column.
    let per_col = span.div_ceil(pw as u64).max(1);
    let cols = span.div_ceil(per_col).max(1);
    let col_secs = (per_col as f64) * bucket_ns as f64 / 1e9;
    // Column -> reason -> events.
    let mut grid: BTreeMap<u64, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (t, pairs) in points {
        let c = (t / bucket_ns).saturating_sub(t0) / per_col;
        for (r, n) in pairs {
            *grid.entry(c).or_default().entry(r.as_str()).or_insert(0) += n;
            *totals.entry(r.as_str()).or_insert(0) += n;
        }
    }
    let max_rate = grid
        .values()
        .map(|m| m.values().sum::<u64>() as f64 / col_secs)
        .fold(0.0, f64::max);
    let step = nice_step(max_rate, 5.0);
    let ymax = (max_rate / step).ceil().max(1.0) * step;
    let colw = pw / cols as f64;
    let mut s = open(w, h, title);
    // Axes and grid.
    let mut y = 0.0;
    while y <= ymax + step / 2.0 {
        let py = top + ph - y / ymax * ph;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e0e0e0\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            left + pw,
            left - 6.0,
            py + 4.0,
            short(y)
        );
        y += step;
    }
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\" fill=\"#333\">events/s</text>",
        top + ph / 2.0,
        top + ph / 2.0
    );
    let span_s = span as f64 * bucket_ns as f64 / 1e9;
    let xstep = nice_step(span_s, 8.0);
    let mut x = 0.0;
    while x <= span_s {
        let px = left + x / span_s * pw;
        let _ = write!(
            s,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">+{}s</text>",
            top + ph,
            top + ph + 5.0,
            top + ph + 18.0,
            short(x)
        );
        x += xstep;
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">seconds from {} (buckets of {} s)</text>",
        left + pw / 2.0,
        f64::from(h) - 8.0,
        esc(&crate::timefmt::rfc3339_ns(first.0)),
        short(bucket_ns as f64 / 1e9)
    );
    // Reasons, most events first; each a group of its bars.
    let mut order: Vec<(&str, u64)> = totals.iter().map(|(r, n)| (*r, *n)).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    // Stacking: the height already used in each column.
    let mut used: BTreeMap<u64, f64> = BTreeMap::new();
    for (reason, total) in &order {
        let colour = colours.of(reason);
        let _ = write!(
            s,
            "<g class=\"series\" data-reason=\"{}\" data-total=\"{total}\" fill=\"{colour}\">",
            esc(reason)
        );
        for (c, m) in &grid {
            let Some(n) = m.get(reason) else { continue };
            let rate = *n as f64 / col_secs;
            let hh = rate / ymax * ph;
            let base = used.entry(*c).or_insert(0.0);
            let py = top + ph - *base - hh;
            *base += hh;
            let t_ns = (t0 + c * per_col).saturating_mul(bucket_ns);
            let _ = write!(
                s,
                "<rect x=\"{:.2}\" y=\"{py:.2}\" width=\"{:.2}\" height=\"{hh:.2}\" data-t-ns=\"{t_ns}\" data-count=\"{n}\">\
<title>{}: {n} events, {} /s at {}</title></rect>",
                left + *c as f64 * colw,
                colw.max(0.5),
                esc(reason),
                short(rate),
                esc(&crate::timefmt::rfc3339_ns(t_ns)),
            );
        }
        s.push_str("</g>");
    }
    legend(&mut s, left + pw + 12.0, top, &order, colours);
    s.push_str("</svg>");
    s
}

fn legend(s: &mut String, x: f64, y: f64, order: &[(&str, u64)], colours: &Colours) {
    for (i, (r, n)) in order.iter().enumerate().take(20) {
        let yy = y + i as f64 * 18.0;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{yy:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{} ({})</text>",
            colours.of(r),
            x + 16.0,
            yy + 10.0,
            esc(&truncate(r, 20)),
            short(*n as f64)
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A horizontal bar per item: (label, reason for the colour, count, tooltip).
pub fn bars(
    title: &str,
    unit: &str,
    items: &[(String, String, u64, String)],
    colours: &Colours,
    empty: &str,
) -> String {
    if items.is_empty() {
        return empty_plot(title, empty);
    }
    let row = 22.0;
    let (left, top) = (470.0, 36.0);
    let w = 1100u32;
    let pw = f64::from(w) - left - 120.0;
    let h = (top + row * items.len() as f64 + 16.0) as u32;
    let max = items.iter().map(|i| i.2).max().unwrap_or(1).max(1) as f64;
    let mut s = open(w, h, title);
    for (i, (label, reason, n, tip)) in items.iter().enumerate() {
        let y = top + i as f64 * row;
        let bw = (*n as f64 / max * pw).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\">{}</text>\
<rect class=\"bar\" x=\"{left}\" y=\"{:.1}\" width=\"{bw:.2}\" height=\"{:.1}\" fill=\"{}\" data-label=\"{}\" data-reason=\"{}\" data-count=\"{n}\"><title>{}</title></rect>\
<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{n} {}</text>",
            left - 6.0,
            y + 15.0,
            esc(&truncate(label, 70)),
            y + 3.0,
            row - 6.0,
            colours.of(reason),
            esc(label),
            esc(reason),
            esc(tip),
            left + bw + 6.0,
            y + 15.0,
            esc(unit)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars per key, stacked by reason (interfaces, pods): the top `n` keys, then
/// one bar for the rest.
pub fn stacked_bars(title: &str, c: &Capped, n: usize, colours: &Colours, empty: &str) -> String {
    let ranked = c.ranked();
    if ranked.is_empty() {
        return empty_plot(title, empty);
    }
    let mut rows: Vec<(String, u64, BTreeMap<String, u64>)> = ranked
        .iter()
        .take(n)
        .map(|(k, t, m)| ((*k).to_string(), *t, (*m).clone()))
        .collect();
    let mut rest: BTreeMap<String, u64> = c.other.clone();
    let mut rest_keys = 0u64;
    for (_, _, m) in ranked.iter().skip(n) {
        rest_keys += 1;
        for (r, v) in m.iter() {
            *rest.entry(r.clone()).or_insert(0) += v;
        }
    }
    if !rest.is_empty() {
        rows.push((format!("{rest_keys} others"), rest.values().sum(), rest));
    }
    let row = 22.0;
    let (left, top) = (330.0, 36.0);
    let w = 1100u32;
    let pw = f64::from(w) - left - 120.0;
    let h = (top + row * rows.len() as f64 + 16.0) as u32;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let mut s = open(w, h, title);
    for (i, (key, total, m)) in rows.iter().enumerate() {
        let y = top + i as f64 * row;
        let _ = write!(
            s,
            "<g class=\"key\" data-key=\"{}\" data-total=\"{total}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\">{}</text>",
            esc(key),
            left - 6.0,
            y + 15.0,
            esc(&truncate(key, 48))
        );
        let mut x = left;
        let mut parts: Vec<(&String, &u64)> = m.iter().collect();
        parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (r, v) in parts {
            let bw = *v as f64 / max * pw;
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{:.1}\" width=\"{bw:.2}\" height=\"{:.1}\" fill=\"{}\" data-reason=\"{}\" data-count=\"{v}\"><title>{}: {} {v}</title></rect>",
                y + 3.0,
                row - 6.0,
                colours.of(r),
                esc(r),
                esc(key),
                esc(r)
            );
            x += bw;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{total}</text></g>",
            x + 6.0,
            y + 15.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Reasons (rows) x drop locations (columns): cells shaded by log count, with the count.
/// The `cols` locations with most drops, then one column for the rest.
pub fn heatmap(title: &str, c: &Capped, cols: usize, empty: &str) -> String {
    let ranked = c.ranked();
    if ranked.is_empty() {
        return empty_plot(title, empty);
    }
    let mut columns: Vec<(String, BTreeMap<String, u64>)> = ranked
        .iter()
        .take(cols)
        .map(|(k, _, m)| ((*k).to_string(), (*m).clone()))
        .collect();
    let mut rest: BTreeMap<String, u64> = c.other.clone();
    let mut rest_keys = 0u64;
    for (_, _, m) in ranked.iter().skip(cols) {
        rest_keys += 1;
        for (r, v) in m.iter() {
            *rest.entry(r.clone()).or_insert(0) += v;
        }
    }
    if !rest.is_empty() {
        columns.push((
            if c.other_rows > 0 {
                format!("{rest_keys} other locations and more")
            } else {
                format!("{rest_keys} other locations")
            },
            rest,
        ));
    }
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, m) in &columns {
        for (r, v) in m {
            *reasons.entry(r.as_str()).or_insert(0) += v;
        }
    }
    let mut rows: Vec<(&str, u64)> = reasons.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let max = columns
        .iter()
        .flat_map(|(_, m)| m.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let (left, top, cw, rh) = (230.0, 180.0, 52.0, 26.0);
    let w = (left + cw * columns.len() as f64 + 20.0).max(600.0) as u32;
    let h = (top + rh * rows.len() as f64 + 20.0) as u32;
    let mut s = open(w, h, title);
    for (j, (loc, _)) in columns.iter().enumerate() {
        let x = left + j as f64 * cw + cw / 2.0;
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" transform=\"rotate(-50 {x:.1} {:.1})\" fill=\"#222\">{}</text>",
            top - 6.0,
            top - 6.0,
            esc(&truncate(loc, 28))
        );
    }
    for (i, (reason, total)) in rows.iter().enumerate() {
        let y = top + i as f64 * rh;
        let _ = write!(
            s,
            "<g class=\"series\" data-reason=\"{}\" data-total=\"{total}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\">{}</text>",
            esc(reason),
            left - 6.0,
            y + rh / 2.0 + 4.0,
            esc(&truncate(reason, 32))
        );
        for (j, (loc, m)) in columns.iter().enumerate() {
            let x = left + j as f64 * cw;
            let Some(n) = m.get(*reason) else {
                let _ = write!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cw}\" height=\"{rh}\" fill=\"#f4f4f4\" stroke=\"#fff\"/>"
                );
                continue;
            };
            let f = ((*n as f64).ln_1p() / (max as f64).ln_1p()).clamp(0.05, 1.0);
            // White to deep red.
            let g = (235.0 * (1.0 - f)) as u8;
            let text = if f > 0.55 { "#fff" } else { "#222" };
            let _ = write!(
                s,
                "<rect class=\"cell\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cw}\" height=\"{rh}\" fill=\"rgb(200,{g},{g})\" stroke=\"#fff\" data-location=\"{}\" data-count=\"{n}\"><title>{} at {}: {n}</title></rect>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{text}\">{}</text>",
                esc(loc),
                esc(reason),
                esc(loc),
                x + cw / 2.0,
                y + rh / 2.0 + 4.0,
                short(*n as f64)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// Rate percentiles: per reason, bars for p50, p90, p99 and max (events/s).
pub fn percentiles(title: &str, rows: &[(String, [u64; 4], f64)], colours: &Colours) -> String {
    if rows.is_empty() {
        return empty_plot(title, "no rates: the input has no timeline");
    }
    let names = ["p50", "p90", "p99", "max"];
    let bar = 13.0;
    let group = bar * 4.0 + 12.0;
    let (left, top) = (260.0, 36.0);
    let w = 1100u32;
    let pw = f64::from(w) - left - 140.0;
    let h = (top + group * rows.len() as f64 + 10.0) as u32;
    let max = rows.iter().map(|r| r.1[3]).max().unwrap_or(1).max(1) as f64;
    let mut s = open(w, h, title);
    for (i, (reason, q, mean)) in rows.iter().enumerate() {
        let y = top + i as f64 * group;
        let _ = write!(
            s,
            "<g class=\"series\" data-reason=\"{}\" data-mean=\"{mean:.3}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\">{}</text>",
            esc(reason),
            left - 40.0,
            y + group / 2.0,
            esc(&truncate(reason, 30))
        );
        for (j, (name, v)) in names.iter().zip(q.iter()).enumerate() {
            let yy = y + j as f64 * bar;
            let bw = (*v as f64 / max * pw).max(0.5);
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\" fill=\"#555\">{name}</text>\
<rect x=\"{left}\" y=\"{yy:.1}\" width=\"{bw:.2}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"{:.2}\" data-quantile=\"{name}\" data-count=\"{v}\"><title>{}: {name} {v} /s</title></rect>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#222\">{v}/s</text>",
                left - 4.0,
                yy + 10.0,
                bar - 2.0,
                colours.of(reason),
                0.45 + 0.18 * j as f64,
                esc(reason),
                left + bw + 4.0,
                yy + 10.0
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}
