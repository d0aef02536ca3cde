//! The end-of-run summary (text, for people) and `--stats-json` (for programs).
//!
//! The JSON schema is documented in README.md ("Stats JSON"); its `schema` member changes
//! whenever a member is renamed or removed.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::aggregate::{AggKey, AggValue, ReasonKey};
use crate::pipeline::RunReport;
use crate::render::{flow_json, write_flow, Names};

pub const STATS_SCHEMA: &str = "dropscope.stats/1";

fn origin(r: ReasonKey) -> (&'static str, Option<u32>) {
    match r {
        ReasonKey::Kernel(n) => ("kernel", Some(n)),
        ReasonKey::Cilium(c) => ("cilium", Some(u32::from(c))),
        ReasonKey::CiliumEvent(t) => ("cilium", Some(u32::from(t))),
        ReasonKey::Captured => ("capture", None),
    }
}

pub fn flow_entry_json(names: &Names, k: &AggKey, v: &AggValue) -> Value {
    let mut m = serde_json::Map::new();
    flow_json(&mut m, &k.flow);
    m.insert("ifindex".into(), k.ifindex.into());
    m.insert(
        "ifname".into(),
        names.ifnames.display(k.ifindex, k.netns).into(),
    );
    m.insert("netns".into(), k.netns.into());
    let (o, code) = origin(k.reason);
    m.insert("origin".into(), o.into());
    m.insert("reason".into(), code.map_or(Value::Null, Value::from));
    m.insert("reason_name".into(), names.reason_name(k.reason).into());
    if matches!(k.reason, ReasonKey::Cilium(_)) {
        m.insert("src_identity".into(), k.src_identity.into());
        m.insert("dst_identity".into(), k.dst_identity.into());
    }
    m.insert("packets".into(), v.packets.into());
    m.insert("bytes".into(), v.bytes.into());
    m.insert(
        "first".into(),
        crate::timefmt::rfc3339_ns(v.first_ns).into(),
    );
    m.insert("last".into(), crate::timefmt::rfc3339_ns(v.last_ns).into());
    m.insert("first_ns".into(), v.first_ns.into());
    m.insert("last_ns".into(), v.last_ns.into());
    Value::Object(m)
}

/// The whole `--stats-json` document.
pub fn stats_json(names: &Names, r: &RunReport) -> Value {
    let name = |k: ReasonKey| names.reason_name(k);
    let reasons: Vec<Value> = r
        .ledger
        .rows
        .iter()
        .map(|(k, row)| {
            let (o, code) = origin(*k);
            json!({
                "origin": o,
                "reason": code,
                "name": name(*k),
                "observed": row.observed,
                "lost_ring": row.lost_ring,
                "delivered": row.delivered,
                "received": row.received,
                "skipped": row.skipped,
                "processed": row.processed,
            })
        })
        .collect();
    let mismatches = r.ledger.mismatches(&name);
    let flows: Vec<Value> = r
        .flows
        .sorted_by_packets()
        .iter()
        .map(|(k, v)| flow_entry_json(names, k, v))
        .collect();
    json!({
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
        },
        "flows": flows,
        "flow_table": {
            "entries": r.flows.len(),
            "overflowed_keys": r.flows.overflowed_keys(),
            "overflowed_packets": r.flows.overflowed_packets(),
        },
        "outputs": r.sinks,
        "notes": r.source.notes,
    })
}

/// The human summary printed on stderr at the end of a run.
pub fn summary_text(names: &Names, r: &RunReport, top: usize) -> String {
    let mut s = String::new();
    let t = r.ledger.totals();
    let name = |k: ReasonKey| names.reason_label(k);
    let _ = writeln!(
        s,
        "dropscope: {} events processed in {:.1}s from {} ({})",
        t.processed,
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
    }
    s.push_str(&r.ledger.render_text(&name));
    let mism = r.ledger.mismatches(&name);
    if mism.is_empty() {
        if let Some(obs) = t.observed {
            let _ = writeln!(
                s,
                "accounting: reconciled: {obs} observed = {} lost in ring + {} delivered; {} skipped after the count limit",
                t.lost_ring, t.delivered, t.skipped
            );
        } else {
            let _ = writeln!(
                s,
                "accounting: reconciled: {} delivered = {} processed + {} skipped",
                t.delivered, t.processed, t.skipped
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
    let flows = r.flows.sorted_by_packets();
    if !flows.is_empty() {
        let _ = writeln!(
            s,
            "{} flows x reasons; top {}:",
            flows.len(),
            top.min(flows.len())
        );
        for (k, v) in flows.iter().take(top) {
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
            s.push('\n');
        }
    }
    if r.flows.overflowed_keys() > 0 {
        let _ = writeln!(
            s,
            "flow table full: {} more flows ({} packets) counted per reason only (raise --max-flows)",
            r.flows.overflowed_keys(),
            r.flows.overflowed_packets()
        );
    }
    for n in &r.source.notes {
        let _ = writeln!(s, "{n}");
    }
    s
}
