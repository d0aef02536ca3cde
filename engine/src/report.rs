//! The end-of-run summary (text, for people) and `--stats-json` (for programs).
//!
//! The JSON schema is documented in README.md ("Stats JSON"); its `schema` member changes
//! whenever a member is renamed or removed.
//!
//! The document is written straight to its writer ([`write_stats_json`]): rows are taken
//! from the flow table in order, one at a time, and each is written from its members into
//! one reused buffer, in serde_json's pretty format, so a table of a million rows needs no
//! `String` or `Value` per row nor the document in memory (serde_json's serializer took
//! half as long again for the same text: 1.35 s against 0.9 s of CPU for 1M rows, sort
//! included). The text is exactly
//! `serde_json::to_string_pretty(&stats_json(..))`: members sorted by name, as serde_json's
//! map keeps them.
//!
//! Must never: write a document whose text depends on how it was produced, or a `flows[]`
//! that silently leaves rows out (the omitted rows are counted in `flow_table`).

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::aggregate::{AggKey, AggValue, ReasonKey};
use crate::lookup::Names;
use crate::packet::format::{ip_of, proto_name, write_flow};
use crate::packet::{FAMILY_V4, FAMILY_V6};
use crate::pipeline::RunReport;

pub const STATS_SCHEMA: &str = "dropscope.stats/1";

/// How many `flows[]` rows the stats JSON keeps: all (the default), or the `n` with most
/// packets. Rows left out are counted in `flow_table.rows_omitted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowRows {
    #[default]
    All,
    Top(usize),
}

impl FlowRows {
    /// The most rows kept (`usize::MAX` for all).
    pub fn limit(self) -> usize {
        match self {
            FlowRows::All => usize::MAX,
            FlowRows::Top(n) => n,
        }
    }
}

/// Conversations among the ordinary packets (`--packets`; both directions of a flow are one
/// conversation), and how many of them also have drops in the table. Overflow rows (their
/// flow unknown) are left out.
pub fn packet_flows(flows: &crate::aggregate::FlowTable) -> (usize, usize) {
    use std::collections::BTreeSet;
    let conv = |f: &crate::packet::FlowKey| {
        let a = (f.src, f.sport);
        let b = (f.dst, f.dport);
        (f.family, f.proto, f.vlan, a.min(b), a.max(b))
    };
    let mut captured = BTreeSet::new();
    let mut dropped = BTreeSet::new();
    for (k, _) in flows.iter() {
        if k.is_overflow() {
            continue;
        }
        match k.reason {
            ReasonKey::Packet { .. } => {
                captured.insert(conv(&k.flow));
            }
            ReasonKey::Captured => {}
            _ => {
                dropped.insert(conv(&k.flow));
            }
        }
    }
    let with_drops = captured.intersection(&dropped).count();
    (captured.len(), with_drops)
}

fn origin(r: ReasonKey) -> (&'static str, Option<u32>) {
    match r {
        ReasonKey::Kernel(n) => ("kernel", Some(n)),
        ReasonKey::Cilium(c) => ("cilium", Some(u32::from(c))),
        ReasonKey::CiliumEvent(t) => ("cilium", Some(u32::from(t))),
        ReasonKey::Captured => ("capture", None),
        ReasonKey::Packet { .. } => ("packet", None),
    }
}

/// What one `flows[]` entry is written from. The names are JSON string literals (quoted and
/// escaped), made once per run of rows that share them.
struct FlowEntry<'a> {
    k: &'a AggKey,
    v: &'a AggValue,
    /// `names.reason_name(k.reason)` as a JSON string.
    reason_name: &'a str,
    /// `names.ifnames.display(k.ifindex, k.netns)` as a JSON string.
    ifname: &'a str,
    /// The row's pods (where dropped, source, destination) as JSON strings, when known.
    pods: [Option<String>; 3],
}

/// [`FlowEntry::pods`] of a row, from a snapshot taken once per document.
fn row_pod_strings(
    pods: Option<&(std::sync::Arc<crate::pods::Snapshot>, u32)>,
    k: &AggKey,
) -> [Option<String>; 3] {
    let Some((snap, host)) = pods else {
        return [None, None, None];
    };
    let p = crate::lookup::PodContext::of_row(snap, *host, k);
    [p.at, p.src, p.dst].map(|p| p.map(|p| json_str(&p.to_string())))
}

/// `s` as a JSON string literal, escaped as serde_json escapes.
fn json_str(s: &str) -> String {
    // Serializing a `str` cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Appends `n` in decimal, as serde_json writes integers (a third of an entry's time went
/// to `write!` for them).
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    // 20 digits hold any u64.
    while let Some(d) = at.checked_sub(1).and_then(|a| digits.get_mut(a)) {
        at -= 1;
        *d = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    if let Ok(text) = std::str::from_utf8(digits.get(at..).unwrap_or(&[])) {
        out.push_str(text);
    }
}

/// Appends `s` in quotes: for strings that need no escaping.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// Appends one `flows[]` entry as serde_json's pretty printer writes it: members sorted by
/// name (the order of serde_json's map), each on its own line after `pad`, the closing brace
/// after `close_pad`. This is the one definition of an entry: [`flow_entry_json`] parses
/// what it writes, and tests check both against the members as first defined.
fn write_flow_entry(out: &mut String, e: &FlowEntry<'_>, pad: &str, close_pad: &str) {
    let (k, v, f) = (e.k, e.v, &e.k.flow);
    // Addresses only when the packet had an IP header.
    let ips: Option<(IpAddr, IpAddr)> = ip_of(f.family, &f.src).zip(ip_of(f.family, &f.dst));
    let cilium = matches!(k.reason, ReasonKey::Cilium(_));
    let (origin, code) = origin(k.reason);
    let family = match f.family {
        FAMILY_V4 => "ipv4",
        FAMILY_V6 => "ipv6",
        _ => "none",
    };
    let first_time = crate::timefmt::rfc3339_ns(v.first_ns);
    let last_time = if v.last_ns == v.first_ns {
        None
    } else {
        Some(crate::timefmt::rfc3339_ns(v.last_ns))
    };
    let mut first = true;
    let mut key = |out: &mut String, name: &str| {
        out.push_str(if first { "\n" } else { ",\n" });
        first = false;
        out.push_str(pad);
        out.push('"');
        out.push_str(name);
        out.push_str("\": ");
    };
    // Strings below other than the names need no escaping: digits, letters, `.:-`.
    out.push('{');
    key(out, "bytes");
    push_u64(out, v.bytes);
    key(out, "dport");
    push_u64(out, u64::from(f.dport));
    if let Some((_, dst)) = ips {
        key(out, "dst");
        let _ = write!(out, "\"{dst}\"");
    }
    if cilium {
        key(out, "dst_identity");
        push_u64(out, u64::from(k.dst_identity));
    }
    if let Some(p) = &e.pods[2] {
        key(out, "dst_pod");
        out.push_str(p);
    }
    key(out, "family");
    push_quoted(out, family);
    key(out, "first");
    push_quoted(out, &first_time);
    key(out, "first_ns");
    push_u64(out, v.first_ns);
    key(out, "ifindex");
    push_u64(out, u64::from(k.ifindex));
    key(out, "ifname");
    out.push_str(e.ifname);
    key(out, "last");
    push_quoted(out, last_time.as_deref().unwrap_or(&first_time));
    key(out, "last_ns");
    push_u64(out, v.last_ns);
    key(out, "netns");
    push_u64(out, u64::from(k.netns));
    key(out, "origin");
    push_quoted(out, origin);
    key(out, "packets");
    push_u64(out, v.packets);
    if let Some(p) = &e.pods[0] {
        key(out, "pod");
        out.push_str(p);
    }
    key(out, "proto");
    push_u64(out, u64::from(f.proto));
    key(out, "proto_name");
    push_quoted(out, proto_name(f.proto));
    key(out, "reason");
    match code {
        Some(c) => push_u64(out, u64::from(c)),
        None => out.push_str("null"),
    }
    key(out, "reason_name");
    out.push_str(e.reason_name);
    key(out, "sport");
    push_u64(out, u64::from(f.sport));
    if let Some((src, _)) = ips {
        key(out, "src");
        let _ = write!(out, "\"{src}\"");
    }
    if cilium {
        key(out, "src_identity");
        push_u64(out, u64::from(k.src_identity));
    }
    if let Some(p) = &e.pods[1] {
        key(out, "src_pod");
        out.push_str(p);
    }
    if f.vlan != 0 {
        key(out, "vlan");
        push_u64(out, u64::from(f.vlan));
    }
    out.push('\n');
    out.push_str(close_pad);
    out.push('}');
}

/// One `flows[]` entry as a `Value`.
pub fn flow_entry_json(names: &Names, k: &AggKey, v: &AggValue) -> Value {
    let mut text = String::new();
    let entry = FlowEntry {
        k,
        v,
        reason_name: &json_str(&names.reason_name(k.reason)),
        ifname: &json_str(&names.ifnames.display(k.ifindex, k.netns)),
        pods: row_pod_strings(names.pod_snapshot().as_ref(), k),
    };
    write_flow_entry(&mut text, &entry, "  ", "");
    // The text is JSON by construction.
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Writes `flows[]` (the first `n` rows, at depth 1 of the document) to `w`, one entry at a
/// time through one reused buffer.
fn write_flows<W: std::io::Write>(
    w: &mut W,
    names: &Names,
    r: &RunReport,
    n: usize,
) -> std::io::Result<()> {
    let rows = r.flows.top_by_packets(n);
    if rows.len() == 0 {
        return w.write_all(b"[]");
    }
    w.write_all(b"[")?;
    let mut buf = String::with_capacity(1024);
    // Rows in a run mostly share their reason and interface: name them once per run.
    let mut reason: Option<(ReasonKey, String)> = None;
    let mut ifname: Option<((u32, u32), String)> = None;
    let pods = names.pod_snapshot();
    for (i, (k, v)) in rows.enumerate() {
        let reason_name = match &reason {
            Some((r, n)) if *r == k.reason => n,
            _ => {
                let name = json_str(&names.reason_name(k.reason));
                &reason.insert((k.reason, name)).1
            }
        };
        let iface = (k.ifindex, k.netns);
        let ifname = match &ifname {
            Some((i, n)) if *i == iface => n,
            _ => {
                let name = json_str(&names.ifnames.display(k.ifindex, k.netns));
                &ifname.insert((iface, name)).1
            }
        };
        buf.clear();
        buf.push_str(if i == 0 { "\n    " } else { ",\n    " });
        let entry = FlowEntry {
            k,
            v,
            reason_name,
            ifname,
            pods: row_pod_strings(pods.as_ref(), k),
        };
        write_flow_entry(&mut buf, &entry, "      ", "    ");
        w.write_all(buf.as_bytes())?;
    }
    w.write_all(b"\n  ]")
}

/// Top-list length of the storm profile in `--stats-json`.
const STORM_TOP: usize = 20;

/// The `storm` member of the document.
fn storm_json<'a>(
    names: &'a Names,
    profile: &'a crate::storm::StormProfile,
) -> crate::storm::StormJson<'a> {
    crate::storm::StormJson {
        profile,
        names,
        rows: None,
        top: STORM_TOP,
    }
}

/// Writes the `--stats-json` document to `w` as it is made: exactly the text of
/// `serde_json::to_string_pretty(&stats_json_with(names, r, rows))`, but for the members
/// of `storm`, which keep the order `StormJson` writes them in (as the CLI always wrote
/// them; the `Value` sorts them). `w` should be buffered. The members other than `flows`
/// (a few, small) are made as `Value`s; `flows[]` is written row by row.
///
/// Rows come from [`crate::aggregate::FlowTable::top_by_packets`]: call
/// `r.flows.sort_top_by_packets(rows.limit())` first to order the table in place, else a
/// large selection goes through a vector of one reference per row.
pub fn write_stats_json<W: std::io::Write>(
    mut w: W,
    names: &Names,
    r: &RunReport,
    rows: FlowRows,
) -> std::io::Result<()> {
    let n = rows.limit().min(r.flows.len());
    let Value::Object(rest) = stats_doc(names, r, Value::Null, n) else {
        // stats_doc always makes an object.
        return w.write_all(b"{}");
    };
    // The document's own members, at depth 1: two spaces more after each line break (JSON
    // text has line breaks only between tokens, never inside a string).
    w.write_all(b"{")?;
    for (i, (key, value)) in rest.iter().enumerate() {
        w.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
        w.write_all(json_str(key).as_bytes())?;
        w.write_all(b": ")?;
        if key == "flows" {
            write_flows(&mut w, names, r, n)?;
        } else if let (true, Some(p)) = (key == "storm", &r.source.storm) {
            // Serialized as it always was (members in the order it gives them).
            let text = serde_json::to_string_pretty(&storm_json(names, p))?;
            w.write_all(text.replace('\n', "\n  ").as_bytes())?;
        } else {
            let text = serde_json::to_string_pretty(value)?;
            w.write_all(text.replace('\n', "\n  ").as_bytes())?;
        }
    }
    w.write_all(if rest.is_empty() { b"}" } else { b"\n}" })
}

/// `--stats-json` (every row) as pretty-printed text: exactly
/// `to_string_pretty(&stats_json(..))`, written by [`write_stats_json`].
pub fn stats_json_pretty(names: &Names, r: &RunReport) -> serde_json::Result<String> {
    let mut out = Vec::new();
    write_stats_json(&mut out, names, r, FlowRows::All).map_err(serde_json::Error::io)?;
    // Every piece written is UTF-8.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// The whole `--stats-json` document, every row.
pub fn stats_json(names: &Names, r: &RunReport) -> Value {
    stats_json_with(names, r, FlowRows::All)
}

/// The `--stats-json` document with the rows `rows` keeps, as a `Value` (one per row: for
/// tests and small tables; [`write_stats_json`] streams).
pub fn stats_json_with(names: &Names, r: &RunReport, rows: FlowRows) -> Value {
    let n = rows.limit().min(r.flows.len());
    let flows: Vec<Value> = r
        .flows
        .top_by_packets(n)
        .map(|(k, v)| flow_entry_json(names, k, v))
        .collect();
    let mut doc = stats_doc(names, r, Value::Array(flows), n);
    if let (Some(p), Value::Object(m)) = (&r.source.storm, &mut doc) {
        let storm = serde_json::to_value(storm_json(names, p)).unwrap_or(Value::Null);
        m.insert("storm".into(), storm);
    }
    doc
}

/// The document with `flows` as given, which holds the first `rows_written` rows.
fn stats_doc(names: &Names, r: &RunReport, flows: Value, rows_written: usize) -> Value {
    let name = |k: ReasonKey| names.reason_name(k);
    let reasons: Vec<Value> = r
        .ledger
        .rows
        .iter()
        .map(|(k, row)| {
            let (o, code) = origin(*k);
            let mut v = json!({
                "origin": o,
                "reason": code,
                "name": name(*k),
                "observed": row.observed,
                "in_table": row.in_table,
                "table_full": row.table_full,
                "filtered": row.filtered,
                "filtered_user": row.filtered_user,
                "not_copied": row.not_copied,
                "lost_ring": row.lost_ring,
                "delivered": row.delivered,
                "received": row.received,
                "skipped": row.skipped,
                "processed": row.processed,
            });
            if let (
                ReasonKey::Packet {
                    ifindex,
                    netns,
                    dir,
                },
                Some(m),
            ) = (k, v.as_object_mut())
            {
                m.insert("ifindex".into(), (*ifindex).into());
                m.insert("netns".into(), (*netns).into());
                m.insert("direction".into(), dir.as_str().into());
            }
            v
        })
        .collect();
    let mismatches = r.ledger.mismatches(&name);
    let (packet_flows, packet_flows_with_drops) = packet_flows(&r.flows);
    // Where pod names came from (live captures that named pods).
    let pod_names = names.pods.as_ref().map(|p| {
        let snap = p.snapshot();
        json!({
            "sources": snap.answered.iter().collect::<Vec<_>>(),
            "pods": snap.pods().len(),
            "warnings": p.warnings(),
        })
    });
    let mut doc = json!({
        "schema": STATS_SCHEMA,
        "source": r.source.description,
        "started": crate::timefmt::rfc3339_ns(r.started_ns),
        "elapsed_s": r.elapsed.as_secs_f64(),
        "stopped_by": r.stopped_by.as_str(),
        "accounting": {
            "reasons": reasons,
            "totals": r.ledger.totals(),
            "stage_losses": r.ledger.stage_losses,
            "mismatches": mismatches,
            "reconciled": mismatches.is_empty(),
            "packet_flows": {
                "captured": packet_flows,
                "with_drops": packet_flows_with_drops,
            },
        },
        "flows": flows,
        "flow_table": {
            "entries": r.flows.len(),
            "overflowed_keys": r.flows.overflowed_keys(),
            "overflowed_packets": r.flows.overflowed_packets(),
            "rows_written": rows_written,
            "rows_omitted": r.flows.len().saturating_sub(rows_written),
        },
        "outputs": r.sinks,
        "storm": Value::Null,
        "notes": r.source.notes,
        "pod_names": pod_names,
    });
    if let Value::Object(m) = &mut doc {
        m.insert("timeline".into(), timeline_json(names, &r.timeline));
        m.insert(
            "run".into(),
            serde_json::to_value(&r.facts).unwrap_or(Value::Null),
        );
    }
    // The drops joined with the datapath (present only when the run asked for it).
    if let (Some(d), Value::Object(m)) = (&r.datapath, &mut doc) {
        m.insert(
            "datapath".into(),
            serde_json::to_value(d).unwrap_or(Value::Null),
        );
    }
    doc
}

/// The `timeline` member: processed events per reason per bucket of time, and each
/// reason's rate percentiles over the buckets.
fn timeline_json(names: &Names, t: &crate::timeline::Timeline) -> Value {
    let points: Vec<Value> = t
        .points()
        .into_iter()
        .map(|(t_ns, pairs)| {
            let mut counts = serde_json::Map::new();
            for (k, n) in pairs {
                let name = names.reason_name(k);
                let prev = counts.get(&name).and_then(Value::as_u64).unwrap_or(0);
                counts.insert(name, (prev + n).into());
            }
            json!({"t_ns": t_ns, "counts": counts})
        })
        .collect();
    let pct: Vec<Value> = t
        .rate_percentiles()
        .into_iter()
        .map(|(k, [p50, p90, p99, max], mean)| {
            let (o, code) = origin(k);
            json!({"origin": o, "reason": code, "name": names.reason_name(k), "p50": p50,
                   "p90": p90, "p99": p99, "max": max, "mean": mean})
        })
        .collect();
    json!({"bucket_ns": t.bucket_ns(), "points": points, "rate_percentiles": pct})
}

/// The human summary printed on stderr at the end of a run.
pub fn summary_text(names: &Names, r: &RunReport, top: usize) -> String {
    let mut s = String::new();
    // Drops' totals: the packet rows (`--packets`) reconcile apart, below.
    let t = r
        .ledger
        .totals_where(|k| !matches!(k, ReasonKey::Packet { .. }));
    let all = r.ledger.totals();
    let name = |k: ReasonKey| names.reason_label(k);
    let _ = writeln!(
        s,
        "dropscope: {} events processed in {:.1}s from {} ({})",
        all.processed,
        r.elapsed.as_secs_f64(),
        r.source.description,
        r.stopped_by.as_str()
    );
    if let Some(f) = &r.sinks.file {
        let _ = writeln!(
            s,
            "{} packets written to {} ({}, {} interfaces)",
            f.packets, f.path, f.format, f.interfaces
        );
        if let Some(why) = &f.disk_full {
            let _ = writeln!(
                s,
                "{}: the file system filled up ({why}): the file was cut at its last complete block and kept; {} more packets were counted but not written",
                f.path, f.not_written
            );
        }
        if r.sinks.synthesized_not_written > 0 {
            let _ = writeln!(
                s,
                "{} events had no packet bytes in the input and are in the flow table only (--synthesize writes packets built from their headers)",
                r.sinks.synthesized_not_written
            );
        }
    }
    if r.sinks.joined_not_written > 0 {
        let _ = writeln!(
            s,
            "{} Cilium drop notifications were joined into the kernel's drop of the same packet (written and printed once, with both reasons)",
            r.sinks.joined_not_written
        );
    }
    s.push_str(&r.ledger.render_text(&name));
    let mism = r.ledger.mismatches(&name);
    let p = r
        .ledger
        .totals_where(|k| matches!(k, ReasonKey::Packet { .. }));
    let packet_rows = r
        .ledger
        .rows
        .keys()
        .filter(|k| matches!(k, ReasonKey::Packet { .. }))
        .count();
    if packet_rows > 0 && mism.is_empty() {
        let (flows, with_drops) = packet_flows(&r.flows);
        let _ = writeln!(
            s,
            "packets: reconciled over {packet_rows} interface directions: {} seen = {} filtered + {} lost in ring + {} delivered; {} received = {} skipped + {} processed",
            p.observed.unwrap_or(0),
            p.filtered,
            p.lost_ring,
            p.delivered,
            p.received,
            p.skipped,
            p.processed
        );
        let _ = writeln!(
            s,
            "packets: {flows} flows captured, {with_drops} of them with drops"
        );
    }
    if mism.is_empty() && (packet_rows == 0 || t.observed.is_some() || t.delivered > 0) {
        let kf = if t.filtered > 0 {
            format!("{} filtered + ", t.filtered)
        } else {
            String::new()
        };
        let uf = if t.filtered_user > 0 {
            format!(
                "; {} delivered = {} filtered in user space + {} received",
                t.delivered, t.filtered_user, t.received
            )
        } else {
            String::new()
        };
        if let (Some(obs), Some(tab)) = (t.observed, t.in_table) {
            let _ = writeln!(
                s,
                "accounting: reconciled: {obs} observed = {kf}{tab} in the kernel flow table + {} table full = {kf}{} not copied + {} lost in ring + {} delivered{uf}; {} skipped after the count limit",
                t.table_full, t.not_copied, t.lost_ring, t.delivered, t.skipped
            );
        } else if let Some(obs) = t.observed {
            let _ = writeln!(
                s,
                "accounting: reconciled: {obs} observed = {kf}{} not copied + {} lost in ring + {} delivered{uf}; {} skipped after the count limit",
                t.not_copied, t.lost_ring, t.delivered, t.skipped
            );
        } else {
            let _ = writeln!(
                s,
                "accounting: reconciled: {} delivered = {}{} processed + {} skipped",
                t.delivered,
                if t.filtered_user > 0 {
                    format!("{} filtered + ", t.filtered_user)
                } else {
                    String::new()
                },
                t.processed,
                t.skipped
            );
        }
    } else {
        for m in &mism {
            let _ = writeln!(
                s,
                "accounting: MISMATCH for {}: {} ({} != {})",
                m.reason, m.equation, m.left, m.right
            );
        }
    }
    if !r.flows.is_empty() {
        let flows = r.flows.top_by_packets(top);
        let _ = writeln!(s, "{} flows x reasons; top {}:", r.flows.len(), flows.len());
        for (k, v) in flows {
            let mut f = String::new();
            write_flow(&mut f, &k.flow);
            let _ = write!(
                s,
                "  {:>9} pkts {:>11} B  {:<28} {} on {}",
                v.packets,
                v.bytes,
                names.reason_label(k.reason),
                f,
                names.ifnames.display(k.ifindex, k.netns)
            );
            if matches!(k.reason, ReasonKey::Cilium(_)) {
                let _ = write!(s, " identity {}->{}", k.src_identity, k.dst_identity);
            }
            names.row_pods(k).write_text(&mut s);
            s.push('\n');
        }
    }
    if let Some(d) = &r.datapath {
        s.push_str(&d.render_text());
    }
    // Said when there is something to say: pods named, or a source failing.
    if let Some(p) = names
        .pods
        .as_ref()
        .filter(|p| !p.warnings().is_empty() || !p.snapshot().pods().is_empty())
    {
        let snap = p.snapshot();
        let from: Vec<&str> = snap.answered.iter().copied().collect();
        let _ = writeln!(
            s,
            "pod names: {} pods known (from {}){}",
            snap.pods().len(),
            if from.is_empty() {
                "no source".to_string()
            } else {
                from.join(", ")
            },
            p.warnings()
                .iter()
                .map(|w| format!("; {w}"))
                .collect::<String>()
        );
    }
    if r.flows.overflowed_keys() > 0 {
        let _ = writeln!(
            s,
            "flow table full: {} more flows ({} packets) counted per reason only (raise --max-flows)",
            r.flows.overflowed_keys(),
            r.flows.overflowed_packets()
        );
    }
    if let Some(p) = &r.source.storm {
        s.push_str(&p.summary_text(names, top));
    }
    for n in &r.source.notes {
        let _ = writeln!(s, "{n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::FlowTable;
    use crate::packet::format::{flow_members, JsonScalar};
    use crate::packet::FlowKey;
    use crate::pipeline::{SourceReport, StopCause};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A `flows[]` entry as first defined (before entries were streamed): the members, in
    /// no order, put in a map. The streamed text must stay exactly this.
    fn reference_entry(names: &Names, k: &AggKey, v: &AggValue) -> Value {
        let mut m: Vec<(&'static str, JsonScalar)> = Vec::new();
        flow_members(&mut m, &k.flow);
        m.push(("ifindex", JsonScalar::U(k.ifindex.into())));
        m.push((
            "ifname",
            JsonScalar::S(names.ifnames.display(k.ifindex, k.netns)),
        ));
        m.push(("netns", JsonScalar::U(k.netns.into())));
        let (o, code) = origin(k.reason);
        m.push(("origin", JsonScalar::Str(o)));
        m.push((
            "reason",
            code.map_or(JsonScalar::Null, |c| JsonScalar::U(c.into())),
        ));
        m.push(("reason_name", JsonScalar::S(names.reason_name(k.reason))));
        if matches!(k.reason, ReasonKey::Cilium(_)) {
            m.push(("src_identity", JsonScalar::U(k.src_identity.into())));
            m.push(("dst_identity", JsonScalar::U(k.dst_identity.into())));
        }
        m.push(("packets", JsonScalar::U(v.packets)));
        m.push(("bytes", JsonScalar::U(v.bytes)));
        m.push((
            "first",
            JsonScalar::S(crate::timefmt::rfc3339_ns(v.first_ns)),
        ));
        m.push(("last", JsonScalar::S(crate::timefmt::rfc3339_ns(v.last_ns))));
        m.push(("first_ns", JsonScalar::U(v.first_ns)));
        m.push(("last_ns", JsonScalar::U(v.last_ns)));
        let mut map = serde_json::Map::new();
        for (key, x) in m {
            map.insert(key.into(), x.into());
        }
        Value::Object(map)
    }

    /// Rows of every kind (v4, v4 with a VLAN, v6 Cilium with identities, no IP header);
    /// row i gets i + 1 packets, plus `extra` rows of one packet each.
    fn report(extra: u32) -> RunReport {
        let mut flows = FlowTable::with_seed(10_000, 7);
        let v4 = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 1),
            5000,
            Ipv4Addr::new(10, 0, 0, 2),
            9,
            17,
        );
        let v6 = FlowKey::v6(Ipv6Addr::LOCALHOST, 1, "fd00::2".parse().unwrap(), 80, 6);
        let keys = [
            (v4, ReasonKey::Captured, 0, 0),
            (v4.with_vlan(12), ReasonKey::Kernel(3), 0, 0),
            (v6, ReasonKey::Cilium(133), 12345, 678),
            (FlowKey::default(), ReasonKey::CiliumEvent(4), 0, 0),
        ];
        for (i, (flow, reason, s, d)) in keys.iter().enumerate() {
            let key = AggKey {
                flow: *flow,
                ifindex: i as u32,
                netns: 4026531840,
                reason: *reason,
                src_identity: *s,
                dst_identity: *d,
            };
            for j in 0..=i {
                flows.add(&key, 60 + j as u32, 1_700_000_000_000_000_000 + j as u64);
            }
        }
        for n in 0..extra {
            let flow = FlowKey::v4(
                Ipv4Addr::from(0x0a01_0000 + n),
                (n % 50_000) as u16,
                Ipv4Addr::new(10, 2, 0, 1),
                53,
                17,
            );
            let key = AggKey {
                flow,
                ifindex: 7,
                netns: 4026531840,
                reason: ReasonKey::Kernel(3),
                src_identity: 0,
                dst_identity: 0,
            };
            flows.add(&key, 100 + n % 3, 1_700_000_001_000_000_000 + u64::from(n));
        }
        // Nested members of every kind: a reconciled row, a mismatched one, a stage loss,
        // a string that needs escaping.
        let mut ledger = crate::accounting::Ledger::default();
        let row = ledger.row(ReasonKey::Kernel(3));
        row.observed = Some(5);
        (row.delivered, row.received, row.processed) = (5, 5, 5);
        ledger.row(ReasonKey::Captured).delivered = 2;
        ledger.add_loss(
            crate::accounting::Stage::Source,
            crate::accounting::LossKind::Malformed("too_short"),
            1,
        );
        RunReport {
            source: SourceReport {
                description: "test \"quoted\"\tfile".into(),
                notes: vec!["a note".into(), "another\nnote".into()],
                ..Default::default()
            },
            ledger,
            flows,
            sinks: Default::default(),
            elapsed: std::time::Duration::from_millis(1500),
            started_ns: 1_700_000_000_000_000_000,
            stopped_by: StopCause::SourceEnded,
            datapath: None,
            timeline: Default::default(),
            facts: Default::default(),
        }
    }

    fn streamed(names: &Names, r: &RunReport, rows: FlowRows) -> String {
        let mut out = Vec::new();
        write_stats_json(&mut out, names, r, rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pretty_stats_are_the_documents_text() {
        let r = report(0);
        let names = Names::load(true);
        let fast = stats_json_pretty(&names, &r).unwrap();
        let doc = stats_json(&names, &r);
        assert_eq!(fast, serde_json::to_string_pretty(&doc).unwrap());
        assert_eq!(fast, streamed(&names, &r, FlowRows::All));
        let v: Value = serde_json::from_str(&fast).unwrap();
        let f = v["flows"].as_array().unwrap();
        assert_eq!(f.len(), 4);
        // Most packets first: the flow without an IP header (4 packets).
        assert_eq!(f[0]["family"], "none");
        assert_eq!(f[0]["packets"], 4);
        assert!(f[0].get("src").is_none());
        assert_eq!(f[1]["src"], "::1");
        assert_eq!(f[1]["src_identity"], 12345);
        assert_eq!(f[2]["vlan"], 12);
        assert_eq!(f[3]["reason"], Value::Null);
        assert_eq!(f[3]["bytes"], 60);
        // Each entry is the entry as first defined, member for member.
        for ((k, val), got) in r.flows.sorted_by_packets().iter().zip(f) {
            assert_eq!(*got, reference_entry(&names, k, val));
        }
        assert_eq!(
            v["flow_table"],
            json!({"entries": 4, "overflowed_keys": 0, "overflowed_packets": 0,
                   "rows_written": 4, "rows_omitted": 0})
        );
        assert_eq!(v["source"], "test \"quoted\"\tfile");
        assert_eq!(v["accounting"]["reasons"].as_array().unwrap().len(), 2);
        assert_eq!(v["accounting"]["reconciled"], false);
        assert_eq!(v["accounting"]["stage_losses"][0]["count"], 1);
        // Nested members keep serde_json's indentation.
        assert!(fast.contains("\n  \"accounting\": {\n    \"mismatches\": [\n      {\n        \""));
        // No rows: an empty array, as serde_json writes it.
        let empty = RunReport {
            flows: FlowTable::with_seed(10, 1),
            ..report(0)
        };
        let text = streamed(&names, &empty, FlowRows::All);
        assert!(text.contains("\n  \"flows\": [],\n"), "{text}");
        assert_eq!(
            text,
            serde_json::to_string_pretty(&stats_json(&names, &empty)).unwrap()
        );
    }

    #[test]
    fn a_cilium_entry_reads_exactly() {
        let r = report(0);
        let names = Names::load(true);
        let text = streamed(&names, &r, FlowRows::Top(2));
        let want = r#"
    {
      "bytes": 183,
      "dport": 80,
      "dst": "fd00::2",
      "dst_identity": 678,
      "family": "ipv6",
      "first": "2023-11-14T22:13:20.000000000Z",
      "first_ns": 1700000000000000000,
      "ifindex": 2,
      "ifname": "if2@netns4026531840",
      "last": "2023-11-14T22:13:20.000000002Z",
      "last_ns": 1700000000000000002,
      "netns": 4026531840,
      "origin": "cilium",
      "packets": 3,
      "proto": 6,
      "proto_name": "tcp",
      "reason": 133,
      "reason_name": "Policy denied",
      "sport": 1,
      "src": "::1",
      "src_identity": 12345
    }
  ],
  "notes": ["#;
        // Members sorted by name: `flow_table` comes before `flows`.
        let table = r#"
  "flow_table": {
    "entries": 4,
    "overflowed_keys": 0,
    "overflowed_packets": 0,
    "rows_omitted": 2,
    "rows_written": 2
  },
  "flows": [
    {
      "bytes": 246,"#;
        assert!(text.contains(table), "{text}");
        assert!(text.contains(want), "{text}");
    }

    #[test]
    fn top_rows_are_the_first_rows_and_the_rest_are_counted() {
        let names = Names::load(true);
        // 4 rows of 1-4 packets and 3000 of one packet (tied by packets, split by bytes
        // 100/101/102, then by key): every way of picking them.
        let mut r = report(3000);
        let all = stats_json(&names, &r);
        let all_flows = all["flows"].as_array().unwrap().clone();
        assert_eq!(all_flows.len(), 3004);
        assert_eq!(all_flows[4]["bytes"], 102);
        assert_eq!(all_flows[3003]["bytes"], 60);
        for n in [0usize, 1, 3, 4, 5, 150, 187, 188, 1000, 3003, 3004, 5000] {
            for in_place in [false, true] {
                if in_place {
                    r.flows.sort_top_by_packets(n);
                }
                let rows = FlowRows::Top(n);
                let text = streamed(&names, &r, rows);
                assert_eq!(
                    text,
                    serde_json::to_string_pretty(&stats_json_with(&names, &r, rows)).unwrap(),
                    "n = {n}"
                );
                let v: Value = serde_json::from_str(&text).unwrap();
                let kept = n.min(3004);
                assert_eq!(
                    v["flows"].as_array().unwrap()[..],
                    all_flows[..kept],
                    "n = {n}"
                );
                assert_eq!(v["flow_table"]["entries"], 3004);
                assert_eq!(v["flow_table"]["rows_written"], kept);
                assert_eq!(v["flow_table"]["rows_omitted"], 3004 - kept);
            }
        }
        // Arranged in place for all rows: still the same document.
        r.flows.sort_top_by_packets(usize::MAX);
        assert_eq!(
            streamed(&names, &r, FlowRows::All),
            serde_json::to_string_pretty(&all).unwrap()
        );
    }

    #[test]
    fn the_storm_member_is_written_as_before() {
        use crate::storm::{CopyPolicy, SeriesPoint, StormProfile};
        let names = Names::load(true);
        let mut profile = StormProfile::new(CopyPolicy::default(), 10);
        profile.series.push(SeriesPoint {
            t_ns: 1,
            dt_ns: 1_000_000_000,
            drops: vec![(3, 7)],
        });
        let mut r = report(0);
        r.source.storm = Some(profile);
        let text = streamed(&names, &r, FlowRows::All);
        // Its members in the order StormJson gives them, as the CLI always wrote them...
        let storm =
            serde_json::to_string_pretty(&storm_json(&names, r.source.storm.as_ref().unwrap()))
                .unwrap();
        assert!(
            text.contains(&format!(
                ",\n  \"storm\": {},\n  \"timeline\": ",
                storm.replace('\n', "\n  ")
            )),
            "{text}"
        );
        // ... and the same document as the `Value`.
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, stats_json(&names, &r));
        assert!(v["storm"].is_object());
    }

    #[test]
    fn summary_lists_the_top_flows() {
        let r = report(3000);
        let names = Names::load(true);
        let text = summary_text(&names, &r, 2);
        assert!(text.contains("3004 flows x reasons; top 2:\n"), "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(" pkts ")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("          4 pkts         246 B  cilium "),
            "{text}"
        );
        assert!(
            lines[1].contains("3 pkts         183 B  cilium Policy denied (133)"),
            "{text}"
        );
        assert!(lines[1].ends_with("identity 12345->678"), "{text}");
    }

    #[test]
    fn packet_flows_are_conversations_and_count_those_with_drops() {
        use crate::event::Direction;
        let mut flows = FlowTable::with_seed(100, 1);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let pkt = |dir| ReasonKey::Packet {
            ifindex: 3,
            netns: 9,
            dir,
        };
        let add = |flows: &mut FlowTable, flow: FlowKey, reason: ReasonKey| {
            let k = AggKey {
                flow,
                ifindex: 3,
                netns: 9,
                reason,
                src_identity: 0,
                dst_identity: 0,
            };
            flows.add(&k, 60, 1);
        };
        // A TCP conversation both ways, no drop.
        add(
            &mut flows,
            FlowKey::v4(a, 1000, b, 80, 6),
            pkt(Direction::Inbound),
        );
        add(
            &mut flows,
            FlowKey::v4(b, 80, a, 1000, 6),
            pkt(Direction::Outbound),
        );
        // A refused one: SYN in, RST out, the SYN dropped.
        add(
            &mut flows,
            FlowKey::v4(a, 1001, b, 81, 6),
            pkt(Direction::Inbound),
        );
        add(
            &mut flows,
            FlowKey::v4(b, 81, a, 1001, 6),
            pkt(Direction::Outbound),
        );
        add(
            &mut flows,
            FlowKey::v4(a, 1001, b, 81, 6),
            ReasonKey::Kernel(3),
        );
        // A drop of a flow never seen passing is not a captured flow.
        add(
            &mut flows,
            FlowKey::v4(a, 1002, b, 82, 17),
            ReasonKey::Kernel(3),
        );
        assert_eq!(packet_flows(&flows), (2, 1));
        assert_eq!(packet_flows(&FlowTable::new(10)), (0, 0));
    }
}
