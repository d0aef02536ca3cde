//! The end-of-run summary (text, for people) and `--stats-json` (for programs).
//!
//! The JSON schema is documented in README.md ("Stats JSON"); its `schema` member changes
//! whenever a member is renamed or removed.

use std::fmt::Write as _;

use serde::ser::{SerializeMap as _, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::aggregate::{AggKey, AggValue, ReasonKey};
use crate::pipeline::RunReport;
use crate::render::{flow_members, write_flow, JsonScalar, Names};

pub const STATS_SCHEMA: &str = "dropscope.stats/1";

fn origin(r: ReasonKey) -> (&'static str, Option<u32>) {
    match r {
        ReasonKey::Kernel(n) => ("kernel", Some(n)),
        ReasonKey::Cilium(c) => ("cilium", Some(u32::from(c))),
        ReasonKey::CiliumEvent(t) => ("cilium", Some(u32::from(t))),
        ReasonKey::Captured => ("capture", None),
    }
}

/// The members of one `flows[]` entry, in no particular order.
fn flow_entry_members(names: &Names, k: &AggKey, v: &AggValue) -> Vec<(&'static str, JsonScalar)> {
    let mut m = Vec::with_capacity(24);
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
    m
}

pub fn flow_entry_json(names: &Names, k: &AggKey, v: &AggValue) -> Value {
    let mut m = serde_json::Map::new();
    for (key, x) in flow_entry_members(names, k, v) {
        m.insert(key.into(), x.into());
    }
    Value::Object(m)
}

/// A `flows[]` entry serialized straight from its members, sorted by name as serde_json's
/// map keeps them: the same text as [`flow_entry_json`], without building the `Value`.
struct FlowEntry<'a> {
    names: &'a Names,
    k: &'a AggKey,
    v: &'a AggValue,
}

impl Serialize for FlowEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut members = flow_entry_members(self.names, self.k, self.v);
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut m = s.serialize_map(Some(members.len()))?;
        for (k, v) in &members {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The document of [`stats_json`] with `flows` serialized by [`FlowEntry`].
struct StatsDoc<'a> {
    rest: serde_json::Map<String, Value>,
    names: &'a Names,
    flows: Vec<(AggKey, AggValue)>,
    storm: Option<&'a crate::storm::StormProfile>,
}

/// Top-list length of the storm profile in `--stats-json`.
const STORM_TOP: usize = 20;

impl Serialize for StatsDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.rest.len()))?;
        for (k, v) in &self.rest {
            if k == "flows" {
                m.serialize_entry(k, &FlowsSer(self))?;
            } else if k == "storm" && self.storm.is_some() {
                if let Some(p) = self.storm {
                    m.serialize_entry(
                        k,
                        &crate::storm::StormJson {
                            profile: p,
                            names: self.names,
                            rows: None,
                            top: STORM_TOP,
                        },
                    )?;
                }
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

struct FlowsSer<'a, 'b>(&'a StatsDoc<'b>);

impl Serialize for FlowsSer<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        s.collect_seq(d.flows.iter().map(|(k, v)| FlowEntry {
            names: d.names,
            k,
            v,
        }))
    }
}

/// `--stats-json` as pretty-printed text: exactly `to_string_pretty(&stats_json(..))`, in a
/// fraction of the time for large flow tables (no `Value` per flow).
pub fn stats_json_pretty(names: &Names, r: &RunReport) -> serde_json::Result<String> {
    let Value::Object(rest) = stats_doc(names, r, Value::Null) else {
        return serde_json::to_string_pretty(&stats_json(names, r));
    };
    serde_json::to_string_pretty(&StatsDoc {
        rest,
        names,
        flows: r.flows.sorted_by_packets(),
        storm: r.source.storm.as_ref(),
    })
}

/// The whole `--stats-json` document.
pub fn stats_json(names: &Names, r: &RunReport) -> Value {
    let flows: Vec<Value> = r
        .flows
        .sorted_by_packets()
        .iter()
        .map(|(k, v)| flow_entry_json(names, k, v))
        .collect();
    let mut doc = stats_doc(names, r, Value::Array(flows));
    if let (Some(p), Value::Object(m)) = (&r.source.storm, &mut doc) {
        let storm = serde_json::to_value(crate::storm::StormJson {
            profile: p,
            names,
            rows: None,
            top: STORM_TOP,
        })
        .unwrap_or(Value::Null);
        m.insert("storm".into(), storm);
    }
    doc
}

/// The document with `flows` as given.
fn stats_doc(names: &Names, r: &RunReport, flows: Value) -> Value {
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
                "in_table": row.in_table,
                "table_full": row.table_full,
                "not_copied": row.not_copied,
                "lost_ring": row.lost_ring,
                "delivered": row.delivered,
                "received": row.received,
                "skipped": row.skipped,
                "processed": row.processed,
            })
        })
        .collect();
    let mismatches = r.ledger.mismatches(&name);
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
        "storm": Value::Null,
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
        if let (Some(obs), Some(tab)) = (t.observed, t.in_table) {
            let _ = writeln!(
                s,
                "accounting: reconciled: {obs} observed = {tab} in the kernel flow table + {} table full = {} not copied + {} lost in ring + {} delivered; {} skipped after the count limit",
                t.table_full, t.not_copied, t.lost_ring, t.delivered, t.skipped
            );
        } else if let Some(obs) = t.observed {
            let _ = writeln!(
                s,
                "accounting: reconciled: {obs} observed = {} not copied + {} lost in ring + {} delivered; {} skipped after the count limit",
                t.not_copied, t.lost_ring, t.delivered, t.skipped
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
    use crate::packet::FlowKey;
    use crate::pipeline::{SourceReport, StopCause};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn pretty_stats_are_the_documents_text() {
        let mut flows = FlowTable::with_seed(100, 7);
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
        let r = RunReport {
            source: SourceReport {
                description: "test".into(),
                notes: vec!["a note".into()],
                ..Default::default()
            },
            ledger: Default::default(),
            flows,
            sinks: Default::default(),
            elapsed: std::time::Duration::from_millis(1500),
            started_ns: 1_700_000_000_000_000_000,
            stopped_by: StopCause::SourceEnded,
        };
        let names = Names::load(true);
        let fast = stats_json_pretty(&names, &r).unwrap();
        assert_eq!(
            fast,
            serde_json::to_string_pretty(&stats_json(&names, &r)).unwrap()
        );
        let v: Value = serde_json::from_str(&fast).unwrap();
        let f = v["flows"].as_array().unwrap();
        assert_eq!(f.len(), 4);
        // Most packets first: the flow without an IP header (4 packets).
        assert_eq!(f[0]["family"], "none");
        assert_eq!(f[0]["packets"], 4);
        assert_eq!(f[1]["src"], "::1");
        assert_eq!(f[1]["src_identity"], 12345);
        assert_eq!(f[2]["vlan"], 12);
        assert_eq!(f[3]["reason"], Value::Null);
        assert_eq!(f[3]["bytes"], 60);
    }
}
