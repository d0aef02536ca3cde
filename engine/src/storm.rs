//! The storm profile in words: the summary's storm section and `--stats-json`'s `storm`
//! member, with reason names, drop sites and interface names from the lookup tables. The
//! profile itself (the kernel flow table's counts, drained) is [`crate::kernel::storm`];
//! its types are re-exported here.

use std::fmt::Write as _;

use capture_common::{KFlowKey, KFAMILY_V4, KFAMILY_V6};
use serde::ser::{SerializeMap as _, SerializeSeq as _, Serializer};
use serde::Serialize;

use crate::kernel::storm::is_icmp;
pub use crate::kernel::storm::*;

use crate::event::ReasonKey;
use crate::lookup::Names;
use crate::packet::format::{ip_of, proto_name, write_flow};

impl StormProfile {
    /// The summary's storm section (top `top` of each list).
    pub fn summary_text(&self, names: &Names, top: usize) -> String {
        let mut s = String::new();
        let total: u64 = self.flows.iter().map(|(_, r)| r.packets).sum();
        let copied: u64 = self.flows.iter().map(|(_, r)| r.copied).sum();
        let _ = writeln!(
            s,
            "kernel flow table: {} drops in {} flow x reason rows, {} copied to the ring ({}; {} entries per generation, {} generations, peak {})",
            total,
            self.flows.len(),
            copied,
            self.policy_text(),
            self.policy.kernel_flows,
            self.generations,
            self.peak_entries
        );
        let flows = self.flows.top(Some(top));
        if !flows.is_empty() {
            let _ = writeln!(s, "top flows x reason (exact, kernel table):");
            for (k, r) in flows {
                let mut f = String::new();
                write_kflow(&mut f, k);
                let _ = writeln!(
                    s,
                    "  {:>10} drops {:>8} copied  {:<24} {} on {}",
                    r.packets,
                    r.copied,
                    names.reason_label(ReasonKey::Kernel(k.reason)),
                    f,
                    names.ifnames.display(k.ifindex, k.netns_ino)
                );
            }
        }
        let locs = self.top_locations();
        if !locs.is_empty() {
            let _ = writeln!(s, "top drop locations:");
            for ((reason, loc), n) in locs.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  {:>10} drops  {:<24} at {}",
                    n,
                    names.reason_label(ReasonKey::Kernel(*reason)),
                    location_text(names, *loc)
                );
            }
        }
        let dsts = self.top_destinations();
        if dsts.iter().any(|((fam, ..), _)| *fam != 0) {
            let _ = writeln!(s, "top destinations:");
            for ((fam, addr, port, proto), n) in dsts.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  {:>10} drops  {}",
                    n,
                    endpoint_text(*fam, addr, *port, *proto)
                );
            }
            let _ = writeln!(s, "top sources:");
            for ((fam, addr), n) in self.top_sources().iter().take(top) {
                let a = ip_of(*fam, addr).map_or_else(|| "[no ip]".to_string(), |a| a.to_string());
                let _ = writeln!(s, "  {n:>10} drops  {a}");
            }
        }
        let ifs = self.top_interfaces();
        if !ifs.is_empty() {
            let _ = writeln!(s, "top namespaces/interfaces:");
            for ((netns, ifindex), n) in ifs.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  {:>10} drops  {} (netns {netns})",
                    n,
                    names.ifnames.display(*ifindex, *netns)
                );
            }
        }
        let pct = self.rate_percentiles();
        if !pct.is_empty() {
            let _ = writeln!(s, "drops/s per reason over the run (p50 p90 p99 max):");
            for (r, [p50, p90, p99, max], _) in pct.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  {:<24} {p50} {p90} {p99} {max}",
                    names.reason_label(ReasonKey::Kernel(*r))
                );
            }
        }
        if self.storm_cpus.iter().any(|c| c.storms > 0) {
            for c in self.storm_cpus.iter().filter(|c| c.storms > 0) {
                let _ = writeln!(
                    s,
                    "storm switch: CPU {} copied exemplars only ({} per key per generation) {} times, {:.3}s in all",
                    c.cpu,
                    self.policy.auto_storm.unwrap_or(0),
                    c.storms,
                    c.total_ns as f64 / 1e9
                );
            }
            for sp in self.storm_spans.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  CPU {} from {} to {} ({} storms)",
                    sp.cpu,
                    crate::timefmt::rfc3339_ns(sp.start_ns),
                    sp.end_ns
                        .map_or_else(|| "the end".to_string(), crate::timefmt::rfc3339_ns),
                    sp.storms
                );
            }
        }
        match self.recursion_misses {
            Some(0) => {}
            Some(n) => {
                let _ = writeln!(
                    s,
                    "kernel: {n} drops not seen (the program was already running on that CPU: recursion misses)"
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "kernel: this kernel does not report skipped program runs (recursion misses); drops it skipped are not counted"
                );
            }
        }
        if self.flows.overflowed_keys() > 0 {
            let _ = writeln!(
                s,
                "kernel flow rows full: {} more keys ({} drops) counted per reason only (raise --max-flows)",
                self.flows.overflowed_keys(),
                self.flows.overflowed_packets()
            );
        }
        s
    }

    fn policy_text(&self) -> String {
        match (self.policy.exemplars, self.policy.auto_storm) {
            (Some(0), _) => "counts only, --exemplars 0".to_string(),
            (Some(n), _) => format!("--exemplars {n} per key per generation"),
            (None, Some(n)) => {
                format!("every drop copied, {n} per key per generation in a storm")
            }
            (None, None) => "every drop copied".to_string(),
        }
    }
}

fn write_kflow(out: &mut String, k: &KFlowKey) {
    if matches!(k.family, KFAMILY_V4 | KFAMILY_V6) {
        write_flow(out, &flow_key_of(k));
        if is_icmp(k) {
            let _ = write!(out, " type {} code {}", k.sport, k.dport);
        }
    } else {
        let _ = write!(out, "[no ip] ethertype {:#06x}", u16::from_be(k.protocol));
    }
}

fn endpoint_text(fam: u8, addr: &[u8; 16], port: u16, proto: u8) -> String {
    match ip_of(fam, addr) {
        None => "[no ip]".to_string(),
        Some(std::net::IpAddr::V6(a)) if port != 0 => {
            format!("[{a}]:{port}/{}", proto_name(proto))
        }
        Some(a) if port != 0 => format!("{a}:{port}/{}", proto_name(proto)),
        Some(a) => format!("{a}/{}", proto_name(proto)),
    }
}

fn location_text(names: &Names, loc: u64) -> String {
    match names.symbol(loc) {
        Some((sym, off)) => format!("{sym}+{off:#x}"),
        None => format!("{loc:#x}"),
    }
}

/// `--stats-json`'s `storm` member, serialized as it goes (rows are not collected into
/// `Value`s). `rows`: how many flow rows to write (`None`: all).
pub struct StormJson<'a> {
    pub profile: &'a StormProfile,
    pub names: &'a Names,
    pub rows: Option<usize>,
    pub top: usize,
}

struct FlowRows<'a>(&'a StormJson<'a>);
struct Row<'a> {
    names: &'a Names,
    k: &'a KFlowKey,
    r: &'a KRow,
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (k, r) = (self.k, self.r);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(
            "family",
            match k.family {
                KFAMILY_V4 => "ipv4",
                KFAMILY_V6 => "ipv6",
                _ => "none",
            },
        )?;
        if let (Some(a), Some(b)) = (ip_of(k.family, &k.saddr), ip_of(k.family, &k.daddr)) {
            m.serialize_entry("src", &a.to_string())?;
            m.serialize_entry("dst", &b.to_string())?;
            m.serialize_entry("proto", &k.l4proto)?;
            m.serialize_entry("proto_name", proto_name(k.l4proto))?;
            if is_icmp(k) {
                m.serialize_entry("icmp_type", &k.sport)?;
                m.serialize_entry("icmp_code", &k.dport)?;
            } else {
                m.serialize_entry("sport", &k.sport)?;
                m.serialize_entry("dport", &k.dport)?;
            }
        } else {
            m.serialize_entry("ethertype", &u16::from_be(k.protocol))?;
        }
        m.serialize_entry("ifindex", &k.ifindex)?;
        m.serialize_entry(
            "ifname",
            &self.names.ifnames.display(k.ifindex, k.netns_ino),
        )?;
        m.serialize_entry("netns", &k.netns_ino)?;
        m.serialize_entry("reason", &k.reason)?;
        m.serialize_entry(
            "reason_name",
            &self.names.reason_name(ReasonKey::Kernel(k.reason)),
        )?;
        m.serialize_entry("location", &format!("{:#x}", k.location))?;
        if let Some((sym, off)) = self.names.symbol(k.location) {
            m.serialize_entry("symbol", &format!("{sym}+{off:#x}"))?;
        }
        m.serialize_entry("packets", &r.packets)?;
        m.serialize_entry("bytes", &r.bytes)?;
        m.serialize_entry("copied", &r.copied)?;
        m.serialize_entry("first_ns", &r.first_ns)?;
        m.serialize_entry("last_ns", &r.last_ns)?;
        m.end()
    }
}

impl Serialize for FlowRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = self.0.profile.flows.top(self.0.rows);
        let mut seq = s.serialize_seq(Some(rows.len()))?;
        for (k, r) in rows {
            seq.serialize_element(&Row {
                names: self.0.names,
                k,
                r,
            })?;
        }
        seq.end()
    }
}

impl Serialize for StormJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        let p = self.profile;
        let names = self.names;
        let reason = |r: u32| names.reason_name(ReasonKey::Kernel(r));
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(
            "policy",
            &json!({
                "exemplars": p.policy.exemplars,
                "auto_storm_exemplars": p.policy.auto_storm,
                "kernel_flows": p.policy.kernel_flows,
            }),
        )?;
        let total: u64 = p.flows.iter().map(|(_, r)| r.packets).sum();
        let copied: u64 = p.flows.iter().map(|(_, r)| r.copied).sum();
        let written = self.rows.map_or(p.flows.len(), |n| n.min(p.flows.len()));
        m.serialize_entry(
            "table",
            &json!({
                "rows": p.flows.len(),
                "rows_written": written,
                "rows_omitted": p.flows.len() - written,
                "drops": total,
                "copied": copied,
                "generations": p.generations,
                "peak_entries": p.peak_entries,
                "overflowed_keys": p.flows.overflowed_keys(),
                "overflowed_packets": p.flows.overflowed_packets(),
            }),
        )?;
        m.serialize_entry("flows", &FlowRows(self))?;
        let locs: Vec<_> = p
            .top_locations()
            .into_iter()
            .take(self.top)
            .map(|((r, loc), n)| {
                json!({"reason": r, "reason_name": reason(r), "location": format!("{loc:#x}"),
                       "symbol": names.symbol(loc).map(|(s, o)| format!("{s}+{o:#x}")), "packets": n})
            })
            .collect();
        m.serialize_entry("top_locations", &locs)?;
        let dsts: Vec<_> = p
            .top_destinations()
            .into_iter()
            .take(self.top)
            .map(|((fam, a, port, proto), n)| {
                json!({"dst": ip_of(fam, &a).map(|a| a.to_string()), "dport": port, "proto": proto,
                       "proto_name": proto_name(proto), "packets": n})
            })
            .collect();
        m.serialize_entry("top_destinations", &dsts)?;
        let srcs: Vec<_> = p
            .top_sources()
            .into_iter()
            .take(self.top)
            .map(
                |((fam, a), n)| json!({"src": ip_of(fam, &a).map(|a| a.to_string()), "packets": n}),
            )
            .collect();
        m.serialize_entry("top_sources", &srcs)?;
        let ifs: Vec<_> = p
            .top_interfaces()
            .into_iter()
            .take(self.top)
            .map(|((netns, ifindex), n)| {
                json!({"netns": netns, "ifindex": ifindex,
                       "ifname": names.ifnames.display(ifindex, netns), "packets": n})
            })
            .collect();
        m.serialize_entry("top_interfaces", &ifs)?;
        let series: Vec<_> = p
            .series
            .iter()
            .map(|pt| {
                let drops: serde_json::Map<String, serde_json::Value> = pt
                    .drops
                    .iter()
                    .map(|(r, n)| (reason(*r), (*n).into()))
                    .collect();
                json!({"t_ns": pt.t_ns, "dt_ns": pt.dt_ns, "drops": drops})
            })
            .collect();
        m.serialize_entry("per_second", &series)?;
        let pct: Vec<_> = p
            .rate_percentiles()
            .into_iter()
            .map(|(r, [p50, p90, p99, max], mean)| {
                json!({"reason": r, "reason_name": reason(r), "p50": p50, "p90": p90,
                       "p99": p99, "max": max, "mean": mean})
            })
            .collect();
        m.serialize_entry("rate_percentiles", &pct)?;
        let spans: Vec<_> = p
            .storm_spans
            .iter()
            .map(|sp| {
                json!({"cpu": sp.cpu, "start_ns": sp.start_ns, "end_ns": sp.end_ns,
                       "start": crate::timefmt::rfc3339_ns(sp.start_ns),
                       "end": sp.end_ns.map(crate::timefmt::rfc3339_ns),
                       "storms": sp.storms})
            })
            .collect();
        let cpus: Vec<_> = p
            .storm_cpus
            .iter()
            .map(|c| json!({"cpu": c.cpu, "storms": c.storms, "seconds": c.total_ns as f64 / 1e9}))
            .collect();
        m.serialize_entry("storm_switch", &json!({"cpus": cpus, "spans": spans}))?;
        m.serialize_entry("recursion_misses", &p.recursion_misses)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_keys_show_type_and_code() {
        let mut k = KFlowKey {
            reason: 3,
            ifindex: 2,
            netns_ino: 7,
            location: 0xffff_ffff_8100_0000,
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            protocol: 0x0008,
            family: KFAMILY_V4,
            ..KFlowKey::default()
        };
        k.l4proto = 1;
        k.sport = 3;
        k.dport = 1;
        let mut s = String::new();
        write_kflow(&mut s, &k);
        assert_eq!(s, "10.0.0.1 -> 10.0.0.2 icmp type 3 code 1");
        let fk = flow_key_of(&k);
        assert_eq!((fk.sport, fk.dport), (0, 0));
        let none = KFlowKey {
            protocol: 0x0608,
            ..KFlowKey::default()
        };
        let mut s = String::new();
        write_kflow(&mut s, &none);
        assert_eq!(s, "[no ip] ethertype 0x0806");
    }
}
