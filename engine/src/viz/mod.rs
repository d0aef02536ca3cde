//! `dropscope report`: a stats document (`--stats-json`) drawn as one self-contained HTML
//! page (inline SVG and CSS, no script, no external asset) and as separate SVG files.
//!
//! [`model::Model::read`] folds the document's rows as they stream past (bounded memory);
//! [`plots`] draws each plot ([`svg`], hand-written SVG); [`html`] puts them on a page with
//! the ledger and the capture facts. Nothing below `viz` imports it.

pub mod model;
pub mod scan;
pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use model::Model;
use svg::{esc, Colours, Point};

/// One plot: its file name stem (`--svg DIR` writes `STEM.svg`), heading, and SVG text.
#[derive(Debug)]
pub struct Plot {
    pub stem: &'static str,
    pub heading: &'static str,
    pub note: String,
    pub svg: String,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Reads a timeline's points: `points[]` of `{t_ns, <member>: {name: n}}`.
fn points(v: Option<&Value>, member: &str, time: &str) -> Vec<Point> {
    let mut out = Vec::new();
    for p in v
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let t = p.get(time).map(u).unwrap_or(0);
        let pairs: Vec<(String, u64)> = p
            .get(member)
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), u(v))).collect())
            .unwrap_or_default();
        out.push((t, pairs));
    }
    out.sort_by_key(|p| p.0);
    out
}

fn pct_rows(v: Option<&Value>, name: &str) -> Vec<(String, [u64; 4], f64)> {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            let g = |k: &str| r.get(k).map(u).unwrap_or(0);
            (
                r.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
                [g("p50"), g("p90"), g("p99"), g("max")],
                r.get("mean").and_then(Value::as_f64).unwrap_or(0.0),
            )
        })
        .collect()
}

/// Reasons by how much they weigh (observed, else processed, from the ledger; then the
/// rows'), most first: the order that takes the palette.
fn reason_order(m: &Model) -> Vec<String> {
    let mut w: BTreeMap<String, u64> = BTreeMap::new();
    for r in ledger_rows(&m.doc) {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("?");
        let n = r
            .get("observed")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| r.get("processed").map(u).unwrap_or(0));
        *w.entry(name.to_string()).or_insert(0) += n;
    }
    for ((_, r), (p, _)) in &m.reason_totals {
        w.entry(r.clone()).or_insert(*p);
    }
    for (_, _, per) in m.locations.ranked() {
        for (r, n) in per {
            w.entry(r.clone()).or_insert(*n);
        }
    }
    let mut v: Vec<(String, u64)> = w.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|(r, _)| r).collect()
}

fn ledger_rows(doc: &Value) -> &[Value] {
    doc.pointer("/accounting/reasons")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Every plot of the report, in page order.
pub fn plots(m: &Model) -> Vec<Plot> {
    let colours = Colours::new(reason_order(m));
    let doc = &m.doc;
    let mut out = Vec::new();
    let tl = points(doc.pointer("/timeline/points"), "counts", "t_ns");
    let bucket = doc
        .pointer("/timeline/bucket_ns")
        .and_then(Value::as_u64)
        .unwrap_or(1_000_000_000);
    out.push(Plot {
        stem: "timeline",
        heading: "Events per second by reason",
        note: "Every event dropscope processed (the rows of the flow table), stacked by reason, per bucket of time (the document's timeline)."
            .into(),
        svg: svg::timeline("Events per second by reason", &tl, bucket, &colours),
    });
    let storm = doc.get("storm").filter(|s| s.is_object());
    if let Some(s) = storm {
        // The kernel table's series: intervals of about a second each, ending at t_ns;
        // each is drawn from its start (t_ns - dt_ns).
        let mut pts: Vec<Point> = Vec::new();
        for p in s
            .get("per_second")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let end = p.get("t_ns").map(u).unwrap_or(0);
            let start = end.saturating_sub(p.get("dt_ns").map(u).unwrap_or(0));
            let one = points(Some(&Value::Array(vec![p.clone()])), "drops", "t_ns");
            pts.extend(one.into_iter().map(|(_, pairs)| (start, pairs)));
        }
        pts.sort_by_key(|p| p.0);
        out.push(Plot {
            stem: "kernel-timeline",
            heading: "Kernel drops per second by reason (kernel flow table)",
            note: "Every drop the kernel program counted in its flow table, copied or not (storm.per_second: one point per table generation, about a second, drawn from its start)."
                .into(),
            svg: svg::timeline(
                "Kernel drops per second by reason (kernel flow table)",
                &pts,
                1_000_000_000,
                &colours,
            ),
        });
    }
    let flows: Vec<(String, String, u64, String)> = m
        .top_flows
        .iter()
        .map(|f| {
            (
                format!("{} [{}]", f.label, f.reason),
                f.reason.clone(),
                f.packets,
                format!(
                    "{} {} {}: {} packets, {} bytes",
                    f.label, f.origin, f.reason, f.packets, f.bytes
                ),
            )
        })
        .collect();
    out.push(Plot {
        stem: "top-flows",
        heading: "Top flows x reason",
        note: format!(
            "The {} rows of flows[] with most packets (of {} rows read).",
            m.top_flows.len(),
            m.flow_rows
        ),
        svg: svg::bars(
            "Top flows x reason (packets)",
            "pkts",
            &flows,
            &colours,
            "no flow rows in this input",
        ),
    });
    out.push(Plot {
        stem: "heatmap",
        heading: "Reason x drop location",
        note: if m.storm_rows > 0 {
            format!(
                "Drops per reason and drop location (function+offset) from the kernel flow table's {} rows (storm.flows).",
                m.storm_rows
            )
        } else {
            "Drop locations come from the kernel flow table (storm.flows): this input has none (not a kernel capture, or a file without dropscope's kernel table).".into()
        },
        svg: svg::heatmap(
            "Reason x drop location (kernel drops)",
            &m.locations,
            18,
            "no drop locations in this input (they come from the kernel flow table)",
        ),
    });
    out.push(Plot {
        stem: "interfaces",
        heading: "Interfaces and namespaces",
        note: "Packets of flows[] per interface (named with its network namespace), stacked by reason.".into(),
        svg: svg::stacked_bars(
            "Packets per interface / namespace",
            &m.interfaces,
            20,
            &colours,
            "no flow rows in this input",
        ),
    });
    if !m.pods.is_empty() {
        out.push(Plot {
            stem: "pods",
            heading: "Pods",
            note: "Packets of flows[] per pod where dropped, stacked by reason.".into(),
            svg: svg::stacked_bars("Packets per pod", &m.pods, 20, &colours, ""),
        });
    }
    out.push(Plot {
        stem: "percentiles",
        heading: "Rate percentiles",
        note: "Events per second per reason over the timeline's buckets, from the first to the last (a bucket without the reason counts 0/s).".into(),
        svg: svg::percentiles(
            "Rate percentiles (events/s)",
            &pct_rows(doc.pointer("/timeline/rate_percentiles"), "name"),
            &colours,
        ),
    });
    if let Some(s) = storm {
        out.push(Plot {
            stem: "kernel-percentiles",
            heading: "Kernel drop rate percentiles",
            note: "Drops per second per reason over the kernel table's generations (storm.rate_percentiles).".into(),
            svg: svg::percentiles(
                "Kernel drop rate percentiles (drops/s)",
                &pct_rows(s.get("rate_percentiles"), "reason_name"),
                &colours,
            ),
        });
    }
    out
}

fn fact(s: &mut String, k: &str, v: &str) {
    let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

const CSS: &str = "body{font-family:sans-serif;margin:24px;color:#222;background:#fff;max-width:1160px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:12px;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}\
th{background:#f3f3f3}table.facts th,table.facts td{text-align:left}.note{color:#555;font-size:12px}\
.ok{color:#1a7f37;font-weight:bold}.bad{color:#c62828;font-weight:bold}figure{margin:8px 0}";

/// The whole page.
pub fn html(m: &Model, plots: &[Plot], input: &str) -> String {
    let doc = &m.doc;
    let mut s = String::with_capacity(1 << 16);
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dropscope report: {}</title><style>{CSS}</style></head><body>",
        esc(input)
    );
    let _ = write!(
        s,
        "<h1>dropscope report</h1><p class=\"note\">from {}</p>",
        esc(input)
    );
    // Facts.
    s.push_str("<h2>Capture</h2><table class=\"facts\">");
    let run = doc.get("run");
    let g = |p: &str| text_of(doc.pointer(p));
    fact(&mut s, "source", &g("/source"));
    fact(&mut s, "command", &g("/run/command"));
    fact(&mut s, "input", &g("/run/input"));
    fact(&mut s, "started", &g("/started"));
    fact(
        &mut s,
        "duration",
        &format!(
            "{:.3} s",
            doc.get("elapsed_s").and_then(Value::as_f64).unwrap_or(0.0)
        ),
    );
    fact(&mut s, "stopped by", &g("/stopped_by"));
    fact(&mut s, "filter expression", &g("/run/expression"));
    let sel = run
        .and_then(|r| r.get("selectors"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "-".into());
    fact(&mut s, "selectors", &sel);
    fact(&mut s, "kernel", &g("/run/kernel"));
    fact(&mut s, "host", &g("/run/hostname"));
    fact(
        &mut s,
        "flow rows",
        &format!("{} (stats document)", m.flow_rows),
    );
    fact(&mut s, "schema", &g("/schema"));
    s.push_str("</table>");
    // Loss status.
    let reconciled = doc
        .pointer("/accounting/reconciled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let t = doc.pointer("/accounting/totals");
    let tot = |k: &str| t.and_then(|t| t.get(k)).map(u).unwrap_or(0);
    let _ = write!(
        s,
        "<h2>Loss status</h2><p>books {}; ring lost {}; table full {}; not copied (storm budget) {}; recursion misses {}</p>",
        if reconciled {
            "<span class=\"ok\">reconciled</span>"
        } else {
            "<span class=\"bad\">NOT reconciled</span>"
        },
        tot("lost_ring"),
        tot("table_full"),
        tot("not_copied"),
        text_of(doc.pointer("/storm/recursion_misses")),
    );
    let losses = doc
        .pointer("/accounting/stage_losses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !losses.is_empty() {
        s.push_str("<table><tr><th>stage</th><th>kind</th><th>count</th></tr>");
        for l in losses {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text_of(l.get("stage"))),
                esc(&text_of(l.get("kind"))),
                esc(&text_of(l.get("count")))
            );
        }
        s.push_str("</table>");
    }
    for mm in doc
        .pointer("/accounting/mismatches")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let _ = write!(s, "<p class=\"bad\">{}</p>", esc(&text_of(Some(mm))));
    }
    // Plots.
    for p in plots {
        let _ = write!(
            s,
            "<h2 id=\"{}\">{}</h2><p class=\"note\">{}</p><figure>{}</figure>",
            p.stem,
            esc(p.heading),
            esc(&p.note),
            p.svg
        );
    }
    // Ledger.
    s.push_str("<h2 id=\"ledger\">Ledger</h2><table class=\"ledger\"><tr><th>origin</th><th>reason</th><th>observed</th><th>filtered</th><th>in table</th><th>table full</th><th>not copied</th><th>ring lost</th><th>delivered</th><th>filtered (user)</th><th>received</th><th>skipped</th><th>processed</th></tr>");
    let cols = [
        "observed",
        "filtered",
        "in_table",
        "table_full",
        "not_copied",
        "lost_ring",
        "delivered",
        "filtered_user",
        "received",
        "skipped",
        "processed",
    ];
    let mut rows: Vec<&Value> = ledger_rows(doc).iter().collect();
    rows.push(doc.pointer("/accounting/totals").unwrap_or(&Value::Null));
    for (i, r) in rows.iter().enumerate() {
        let last = i + 1 == rows.len();
        let _ = write!(
            s,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td>",
            if last {
                "total".to_string()
            } else {
                esc(&text_of(r.get("origin")))
            },
            if last {
                String::new()
            } else {
                esc(&text_of(r.get("name")))
            }
        );
        for c in cols {
            let _ = write!(s, "<td>{}</td>", esc(&text_of(r.get(c))));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    let notes = doc
        .get("notes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !notes.is_empty() {
        s.push_str("<h2>Notes</h2><ul>");
        for n in notes {
            let _ = write!(s, "<li>{}</li>", esc(&text_of(Some(n))));
        }
        s.push_str("</ul>");
    }
    s.push_str("</body></html>\n");
    s
}
