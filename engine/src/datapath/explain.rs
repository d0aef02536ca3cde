//! Which map or hook each drop reason points at, written down once ([`TABLE`]), each row
//! citing where the source says so; and the join of a run's drops with a datapath
//! [`Snapshot`]: map-full reasons beside the fill of the maps that feed them, drops at tc
//! beside the interface's tc programs, and drops on a Cilium endpoint interface without a
//! program beside that fact.
//!
//! Cilium rows cite cilium/cilium at the reference commit of
//! `docs/cilium-formats.md` (main `aeb2d1b68e0e`), kernel rows cite Linux 6.18.
//! Map names are Cilium's pin names (`pkg/maps/*`); a `*` ends a prefix.
//!
//! Must never: claim a cause for a reason the table does not list, or say a map explains a
//! drop when it is not full (fills are shown, and only a full map is called the cause).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{HookKind, Interface, Snapshot};
use crate::aggregate::{AggKey, AggValue, ReasonKey};
use crate::lookup::Names;

/// What a reason points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Points {
    /// Maps whose fill or content decides the drop (names in `maps`).
    Maps,
    /// The BPF programs on the interface's tc/tcx hook (the drop is their verdict).
    TcHook,
    /// A program that should be in a program array (tail call) is missing.
    TailCall,
    /// Nothing BPF: the kernel's own state (sockets, neighbours, netfilter, routes).
    NoMap,
}

/// One row of the reason table.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Row {
    /// `cilium` or `kernel`.
    pub origin: &'static str,
    /// Cilium's drop code (kernel rows: none; kernel numbers differ between versions).
    pub code: Option<u8>,
    /// Cilium's monitor string, or the kernel reason's name without `SKB_DROP_REASON_`.
    pub reason: &'static str,
    pub points: Points,
    /// Pin names (`*` ends a prefix) of the maps the reason points at.
    pub maps: &'static [&'static str],
    /// What the source says happens.
    pub what: &'static str,
    /// Where it says so.
    pub source: &'static str,
}

const CT_MAPS: &[&str] = &[
    "cilium_ct4_global",
    "cilium_ct_any4_global",
    "cilium_ct6_global",
    "cilium_ct_any6_global",
];

/// The reason table.
pub const TABLE: &[Row] = &[
    Row {
        origin: "cilium",
        code: Some(155),
        reason: "CT: Map insertion failed",
        points: Points::Maps,
        maps: CT_MAPS,
        what: "a new connection's entry could not be written to the conntrack map (map_update_elem failed: a full map refuses inserts)",
        source: "bpf/lib/conntrack.h ct_create4()/ct_create6(): map_update_elem(map_main|map_related) < 0 -> send_signal_ct_fill_up(), return DROP_CT_CREATE_FAILED",
    },
    Row {
        origin: "cilium",
        code: Some(190),
        reason: "No conntrack map found",
        points: Points::Maps,
        maps: &["cilium_per_cluster_ct_*"],
        what: "the per-cluster conntrack map (map in map) has no inner map for the packet's cluster",
        source: "bpf/lib/drop_reasons.h DROP_CT_NO_MAP_FOUND; bpf/lib/conntrack.h per-cluster CT map lookup",
    },
    Row {
        origin: "cilium",
        code: Some(167),
        reason: "No mapping for NAT masquerade",
        points: Points::Maps,
        maps: &["cilium_snat_v4_external", "cilium_snat_v6_external"],
        what: "no free source port could be reserved in the SNAT map within the retries (a full map refuses the reverse entry)",
        source: "bpf/lib/nat.h snat_v4_new_mapping()/snat_v6_new_mapping(): retries exhausted -> ret = DROP_NAT_NO_MAPPING",
    },
    Row {
        origin: "cilium",
        code: Some(191),
        reason: "No nat map found",
        points: Points::Maps,
        maps: &["cilium_per_cluster_snat_*"],
        what: "the per-cluster SNAT map (map in map) has no inner map for the packet's cluster",
        source: "bpf/lib/drop_reasons.h DROP_SNAT_NO_MAP_FOUND; bpf/lib/nat.h per-cluster SNAT map lookup",
    },
    Row {
        origin: "cilium",
        code: Some(133),
        reason: "Policy denied",
        points: Points::Maps,
        maps: &["cilium_policy*"],
        what: "the endpoint's policy map held no entry allowing the packet (an allow entry the agent could not write is missing too)",
        source: "bpf/lib/policy.h __policy_can_access(): policy map lookups miss -> DROP_POLICY",
    },
    Row {
        origin: "cilium",
        code: Some(181),
        reason: "Policy denied by denylist",
        points: Points::Maps,
        maps: &["cilium_policy*"],
        what: "a deny entry of the endpoint's policy map matched",
        source: "bpf/lib/policy.h __policy_can_access(): deny entry -> DROP_POLICY_DENY",
    },
    Row {
        origin: "cilium",
        code: Some(189),
        reason: "Authentication required",
        points: Points::Maps,
        maps: &["cilium_auth_map"],
        what: "the policy requires authentication and the auth map has no valid entry for the identity pair",
        source: "bpf/lib/auth.h auth_lookup(): no entry in cilium_auth_map -> DROP_POLICY_AUTH_REQUIRED",
    },
    Row {
        origin: "cilium",
        code: Some(158),
        reason: "Service backend not found",
        points: Points::Maps,
        maps: &[
            "cilium_lb4_services_v2",
            "cilium_lb4_backends_*",
            "cilium_lb6_services_v2",
            "cilium_lb6_backends_*",
        ],
        what: "the service has no backend entry (the load-balancer maps hold none for the chosen slot)",
        source: "bpf/lib/lb.h lb4_local()/lb6_local(): backend lookup fails -> DROP_NO_SERVICE",
    },
    Row {
        origin: "cilium",
        code: Some(140),
        reason: "Missed tail call",
        points: Points::TailCall,
        maps: &["cilium_calls_*"],
        what: "a tail call found no program in the program array: the datapath was not (fully) loaded",
        source: "bpf/lib/tailcall.h tail_call_static()/tail_call_dynamic() fall through -> DROP_MISSED_TAIL_CALL",
    },
    Row {
        origin: "cilium",
        code: Some(203),
        reason: "Endpoint policy program not available",
        points: Points::TailCall,
        maps: &["cilium_call_policy"],
        what: "the endpoint's slot of the policy program array is empty (endpoint not regenerated yet)",
        source: "bpf/lib/local_delivery.h tail_call_policy(): tail_call_dynamic(&cilium_call_policy, ep id) returns -> DROP_EP_NOT_READY",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "TC_INGRESS",
        points: Points::TcHook,
        maps: &[],
        what: "a tc/tcx program on the interface's ingress returned TC_ACT_SHOT",
        source: "Linux 6.18 net/core/dev.c sch_handle_ingress(): a tc/tcx program's TC_ACT_SHOT frees the skb with SKB_DROP_REASON_TC_INGRESS (include/net/dropreason-core.h)",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "TC_EGRESS",
        points: Points::TcHook,
        maps: &[],
        what: "a tc/tcx program on the interface's egress returned TC_ACT_SHOT",
        source: "Linux 6.18 net/core/dev.c sch_handle_egress(): a tc/tcx program's TC_ACT_SHOT frees the skb with SKB_DROP_REASON_TC_EGRESS (include/net/dropreason-core.h)",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "NETFILTER_DROP",
        points: Points::NoMap,
        maps: &[],
        what: "an iptables/nftables rule dropped the packet: no BPF map or hook",
        source: "Linux 6.18 include/net/dropreason-core.h SKB_DROP_REASON_NETFILTER_DROP",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "NO_SOCKET",
        points: Points::NoMap,
        maps: &[],
        what: "no socket listens on the destination port: no BPF map or hook",
        source: "Linux 6.18 include/net/dropreason-core.h SKB_DROP_REASON_NO_SOCKET",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "NEIGH_FAILED",
        points: Points::NoMap,
        maps: &[],
        what: "neighbour resolution failed: the kernel's neighbour table, no BPF map",
        source: "Linux 6.18 include/net/dropreason-core.h SKB_DROP_REASON_NEIGH_FAILED",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "NEIGH_QUEUEFULL",
        points: Points::NoMap,
        maps: &[],
        what: "the neighbour's queue of packets awaiting resolution is full: no BPF map",
        source: "Linux 6.18 include/net/dropreason-core.h SKB_DROP_REASON_NEIGH_QUEUEFULL",
    },
    Row {
        origin: "kernel",
        code: None,
        reason: "IP_NOROUTE",
        points: Points::NoMap,
        maps: &[],
        what: "no route to the destination: the routing table, no BPF map",
        source: "Linux 6.18 include/net/dropreason-core.h SKB_DROP_REASON_IP_NOROUTE",
    },
];

/// The table's row for a reason, if it has one.
pub fn row_for(reason: ReasonKey, names: &Names) -> Option<&'static Row> {
    match reason {
        ReasonKey::Cilium(c) => TABLE.iter().find(|r| r.code == Some(c)),
        ReasonKey::Kernel(_) => {
            let n = names.reason_name(reason);
            TABLE.iter().find(|r| r.origin == "kernel" && r.reason == n)
        }
        _ => None,
    }
}

/// `name` matches a table pattern (`*` at the end: a prefix).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(p) => name.starts_with(p),
        None => name == pattern,
    }
}

/// The map names (patterns) a set of reasons points at: what a join needs counted.
pub fn maps_for(reasons: &[ReasonKey], names: &Names) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = reasons
        .iter()
        .filter_map(|r| row_for(*r, names))
        .flat_map(|r| r.maps.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A map's fill, as a join shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapFact {
    pub name: String,
    pub map_type: String,
    pub entries: Option<u64>,
    pub max_entries: u32,
    pub fill: Option<f64>,
    pub full: bool,
    pub method: &'static str,
}

/// A fact about an interface drops were seen on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceFact {
    pub interface: String,
    pub netns: u32,
    pub ifindex: u32,
    /// The drops of this reason on it.
    pub packets: u64,
    /// Cilium endpoint interface (by the agent's list or by name).
    pub endpoint: bool,
    /// No program on any tc/tcx hook of it.
    pub no_tc_program: bool,
    /// Programs on the tc/tcx hooks of the drop's direction (TC_* reasons) or all hooks.
    pub programs: Vec<String>,
}

/// One reason of a run and what the datapath says about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub origin: &'static str,
    pub reason: String,
    pub packets: u64,
    /// The table row's kind, what and source (none: the table has no row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Points>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    pub maps: Vec<MapFact>,
    pub interfaces: Vec<InterfaceFact>,
    /// One sentence: what the datapath state says, e.g. `cilium_ct4_global is full
    /// (1024/1024)`; none when the state shows nothing for this reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// The join: every drop reason of `rows` (flow-table rows), with its table row, the fill of
/// the maps it points at and the state of the interfaces it was seen on, from `snap`
/// (`None`: no live state, e.g. a replay: table rows only).
pub fn explain<'a>(
    rows: impl Iterator<Item = (&'a AggKey, &'a AggValue)>,
    names: &Names,
    snap: Option<&Snapshot>,
) -> Vec<Explanation> {
    // reason -> (packets, (netns, ifindex) -> packets)
    type PerInterface = BTreeMap<(u32, u32), u64>;
    let mut by_reason: BTreeMap<ReasonKey, (u64, PerInterface)> = BTreeMap::new();
    for (k, v) in rows {
        if !matches!(k.reason, ReasonKey::Kernel(_) | ReasonKey::Cilium(_)) {
            continue;
        }
        let e = by_reason.entry(k.reason).or_default();
        e.0 += v.packets;
        if k.ifindex != 0 {
            *e.1.entry((k.netns, k.ifindex)).or_default() += v.packets;
        }
    }
    let own = snap.map_or_else(crate::names::own_netns_inode, |s| s.own_netns);
    let mut out = Vec::new();
    for (reason, (packets, ifaces)) in by_reason {
        let row = row_for(reason, names);
        let mut x = Explanation {
            origin: if matches!(reason, ReasonKey::Cilium(_)) {
                "cilium"
            } else {
                "kernel"
            },
            reason: names.reason_name(reason),
            packets,
            points: row.map(|r| r.points),
            what: row.map(|r| r.what),
            source: row.map(|r| r.source),
            maps: Vec::new(),
            interfaces: Vec::new(),
            verdict: None,
        };
        let mut verdicts: Vec<String> = Vec::new();
        if let (Some(s), Some(r)) = (snap, row) {
            for m in s
                .maps
                .iter()
                .filter(|m| r.maps.iter().any(|p| name_matches(p, &m.name)))
            {
                let full = m.entries.is_some_and(|n| n >= u64::from(m.max_entries));
                if full && r.points == Points::Maps {
                    verdicts.push(format!(
                        "{} is full ({}): inserts fail",
                        m.name,
                        m.fill_text()
                    ));
                }
                x.maps.push(MapFact {
                    name: m.name.clone(),
                    map_type: m.map_type.clone(),
                    entries: m.entries,
                    max_entries: m.max_entries,
                    fill: m.fill,
                    full,
                    method: m.method.as_str(),
                });
            }
        }
        if let Some(s) = snap {
            let dir = match (row.map(|r| r.reason), x.origin) {
                (Some("TC_INGRESS"), _) => Some(true),
                (Some("TC_EGRESS"), _) => Some(false),
                _ => None,
            };
            for ((netns, ifindex), n) in ifaces {
                // Cilium notifications carry no namespace: their ifindex is the host's.
                let netns = if netns == 0 { own } else { netns };
                let Some(i) = s.interface(netns, ifindex) else {
                    continue;
                };
                let programs = programs_of(i, dir);
                let no_tc = i.missing_program;
                if i.endpoint.is_some() && no_tc {
                    verdicts.push(format!(
                        "{} is a Cilium endpoint interface with no tc, tcx or netkit program attached",
                        i.name
                    ));
                }
                if dir.is_some() && !programs.is_empty() {
                    verdicts.push(format!(
                        "{} {}: {}",
                        i.name,
                        if dir == Some(true) {
                            "ingress"
                        } else {
                            "egress"
                        },
                        programs.join(", ")
                    ));
                }
                x.interfaces.push(InterfaceFact {
                    interface: i.name.clone(),
                    netns,
                    ifindex,
                    packets: n,
                    endpoint: i.endpoint.is_some(),
                    no_tc_program: no_tc,
                    programs,
                });
            }
        }
        if !verdicts.is_empty() {
            x.verdict = Some(verdicts.join("; "));
        }
        out.push(x);
    }
    out
}

/// `tc_shot id 42 (tcx-ingress)` for the hooks of one direction (`None`: every hook).
fn programs_of(i: &Interface, ingress: Option<bool>) -> Vec<String> {
    i.attachments
        .iter()
        .filter(|a| match ingress {
            Some(true) => matches!(a.hook, HookKind::TcIngress | HookKind::TcxIngress),
            Some(false) => matches!(a.hook, HookKind::TcEgress | HookKind::TcxEgress),
            None => true,
        })
        .map(|a| {
            format!(
                "{} id {} ({})",
                a.prog.display_name(),
                a.prog.id,
                a.hook.as_str()
            )
        })
        .collect()
}

/// Every map pattern the table names (what a start-of-run snapshot counts).
pub fn all_table_maps() -> Vec<String> {
    let mut v: Vec<String> = TABLE
        .iter()
        .flat_map(|r| r.maps.iter().map(|m| m.to_string()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Per-event annotations from a snapshot taken when a run starts: for a drop's reason and
/// interface, the datapath facts that explain it (a full map its reason points at, its
/// interface's tc programs for `TC_*`, an endpoint interface without a program). Looked up
/// per event; built once.
#[derive(Clone, Debug, Default)]
pub struct EventFacts {
    own_netns: u32,
    /// Reasons whose maps are full -> `cilium_ct4_global is full (..): inserts fail`.
    full_maps: BTreeMap<ReasonKey, String>,
    /// (netns, ifindex) -> the endpoint-without-program sentence.
    missing: std::collections::HashMap<(u32, u32), String>,
    /// (netns, ifindex) -> (ingress programs, egress programs), for `TC_*` reasons.
    tc: std::collections::HashMap<(u32, u32), (String, String)>,
    tc_ingress: Option<u32>,
    tc_egress: Option<u32>,
}

impl EventFacts {
    pub fn from_snapshot(s: &Snapshot, names: &Names) -> EventFacts {
        let mut f = EventFacts {
            own_netns: s.own_netns,
            tc_ingress: names.kernel_reasons.value("TC_INGRESS"),
            tc_egress: names.kernel_reasons.value("TC_EGRESS"),
            ..EventFacts::default()
        };
        for r in TABLE.iter().filter(|r| r.points == Points::Maps) {
            let full: Vec<String> = s
                .maps
                .iter()
                .filter(|m| r.maps.iter().any(|p| name_matches(p, &m.name)))
                .filter(|m| m.entries.is_some_and(|n| n >= u64::from(m.max_entries)))
                .map(|m| format!("{} is full ({}): inserts fail", m.name, m.fill_text()))
                .collect();
            if full.is_empty() {
                continue;
            }
            let key = match (r.code, r.origin) {
                (Some(c), _) => Some(ReasonKey::Cilium(c)),
                (None, _) => names.kernel_reasons.value(r.reason).map(ReasonKey::Kernel),
            };
            if let Some(k) = key {
                f.full_maps.insert(k, full.join("; "));
            }
        }
        for i in s.interfaces() {
            let key = (i.netns, i.ifindex);
            if i.endpoint.is_some() && i.missing_program {
                f.missing.insert(
                    key,
                    format!(
                        "{} is a Cilium endpoint interface with no tc, tcx or netkit program attached",
                        i.name
                    ),
                );
            }
            let (ing, eg) = (programs_of(i, Some(true)), programs_of(i, Some(false)));
            if !ing.is_empty() || !eg.is_empty() {
                f.tc.insert(
                    key,
                    (
                        format!("{} ingress: {}", i.name, ing.join(", ")),
                        format!("{} egress: {}", i.name, eg.join(", ")),
                    ),
                );
            }
        }
        f
    }

    /// Whether any event can get an annotation.
    pub fn is_empty(&self) -> bool {
        self.full_maps.is_empty() && self.missing.is_empty() && self.tc.is_empty()
    }

    /// The facts for one drop (`None`: nothing to say).
    pub fn annotate(&self, reason: ReasonKey, netns: u32, ifindex: u32) -> Option<String> {
        let key = (if netns == 0 { self.own_netns } else { netns }, ifindex);
        let mut parts: Vec<&str> = Vec::new();
        if let Some(m) = self.full_maps.get(&reason) {
            parts.push(m);
        }
        if let ReasonKey::Kernel(n) = reason {
            if let Some((ing, eg)) = self.tc.get(&key) {
                if Some(n) == self.tc_ingress {
                    parts.push(ing);
                } else if Some(n) == self.tc_egress {
                    parts.push(eg);
                }
            }
        }
        if let Some(m) = self.missing.get(&key) {
            parts.push(m);
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// A run's drops joined with the datapath: what `capture` puts in its summary and in
/// `--stats-json` (member `datapath`), and what a server or report can reuse.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Join {
    /// When the datapath was read (none: no live state, the table only, e.g. a replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maps_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints_from: Option<String>,
    pub explanations: Vec<Explanation>,
    /// What could not be read, one line each.
    pub notes: Vec<String>,
}

impl Join {
    /// Reads the datapath now (counting only the maps the run's reasons point at) and joins
    /// `flows` with it.
    pub fn live(flows: &crate::aggregate::FlowTable, names: &Names, base: &super::Options) -> Join {
        let reasons: Vec<ReasonKey> = {
            let mut v: Vec<ReasonKey> = flows.iter().map(|(k, _)| k.reason).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let snap = super::snapshot(&super::options_for_join(base, &reasons, names));
        Join {
            taken_at: Some(snap.taken_at.clone()),
            maps_dir: Some(snap.maps_dir.clone()),
            endpoints_from: Some(snap.endpoints_from.clone()),
            explanations: explain(flows.iter(), names, Some(&snap)),
            notes: snap.notes,
        }
    }

    /// The reason table only (no live state: the datapath now says nothing about a file).
    pub fn table_only(flows: &crate::aggregate::FlowTable, names: &Names) -> Join {
        Join {
            taken_at: None,
            maps_dir: None,
            endpoints_from: None,
            explanations: explain(flows.iter(), names, None),
            notes: Vec::new(),
        }
    }

    /// Summary lines (`datapath: ...`); empty when no reason has a row or a fact.
    pub fn render_text(&self) -> String {
        let mut s = render_text(&self.explanations);
        if !s.is_empty() {
            if let Some(t) = &self.taken_at {
                s.insert_str(0, &format!("datapath (read at {t}):\n"));
            }
            // What could not be read matters where map state was needed (the JSON has all).
            if self
                .explanations
                .iter()
                .any(|x| matches!(x.points, Some(Points::Maps | Points::TailCall)))
            {
                for n in &self.notes {
                    s.push_str(&format!("datapath: note: {n}\n"));
                }
            }
        }
        s
    }
}

/// The join as text lines for a run's summary (`datapath: ...`), only reasons the table or
/// the state says something about.
pub fn render_text(ex: &[Explanation]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for x in ex.iter().filter(|x| x.points.is_some()) {
        let _ = write!(
            s,
            "datapath: {} {} ({} pkts)",
            x.origin, x.reason, x.packets
        );
        match &x.verdict {
            Some(v) => {
                let _ = write!(s, ": {v}");
            }
            None => {
                if let Some(w) = x.what {
                    let _ = write!(s, ": points at {w}");
                }
            }
        }
        let fills: Vec<String> = x
            .maps
            .iter()
            .filter(|m| !m.full)
            .filter_map(|m| m.fill.map(|f| format!("{} {:.1}%", m.name, f * 100.0)))
            .collect();
        if !fills.is_empty() {
            let _ = write!(s, " [{}]", fills.join(", "));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_cites_a_source_and_cilium_codes_are_unique() {
        let mut codes: Vec<u8> = TABLE.iter().filter_map(|r| r.code).collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for r in TABLE {
            assert!(!r.source.is_empty() && !r.what.is_empty(), "{r:?}");
            assert_eq!(r.origin == "cilium", r.code.is_some(), "{r:?}");
            assert_eq!(
                r.points == Points::Maps || r.points == Points::TailCall,
                !r.maps.is_empty(),
                "{r:?}"
            );
        }
    }

    #[test]
    fn cilium_rows_name_cilium_s_own_strings() {
        for r in TABLE.iter().filter(|r| r.origin == "cilium") {
            let code = r.code.unwrap_or(0);
            assert_eq!(
                crate::cilium_glue::reason_name(code, Default::default()),
                r.reason,
                "{code}"
            );
        }
    }

    #[test]
    fn each_drop_gets_the_facts_of_its_reason_and_interface() {
        use super::super::*;
        let names = Names::load(true);
        let tc_ingress = names.kernel_reasons.value("TC_INGRESS").unwrap();
        let no_socket = names.kernel_reasons.value("NO_SOCKET").unwrap();
        let iface = |ifindex: u32, name: &str, hooks: &[(HookKind, u32)]| Interface {
            netns: 7,
            ifindex,
            name: name.into(),
            endpoint: Some(EndpointSource::Name),
            attachments: hooks
                .iter()
                .map(|(hook, id)| Attachment {
                    hook: *hook,
                    mode: None,
                    prog: ProgRef {
                        id: *id,
                        name: "p".into(),
                        ..ProgRef::default()
                    },
                })
                .collect(),
            missing_program: hooks.is_empty(),
        };
        let map = |name: &str, n: u64, max: u32| MapState {
            path: String::new(),
            name: name.into(),
            id: 1,
            map_type: "hash".into(),
            key_size: 4,
            value_size: 8,
            max_entries: max,
            entries: Some(n),
            fill: Some(n as f64 / f64::from(max)),
            method: CountMethod::KernelCounter,
            approximate: false,
            count_ms: 0.0,
            error: None,
        };
        let snap = Snapshot {
            taken_at: String::new(),
            taken_ns: 0,
            own_netns: 7,
            endpoints_from: String::new(),
            namespaces: vec![Netns {
                inode: 7,
                path: String::new(),
                interfaces: vec![
                    iface(
                        3,
                        "lxca",
                        &[(HookKind::TcxIngress, 11), (HookKind::TcEgress, 12)],
                    ),
                    iface(4, "lxcb", &[]),
                ],
                errors: vec![],
            }],
            cgroup: vec![],
            maps_dir: String::new(),
            maps: vec![
                map("cilium_ct4_global", 10, 10),
                map("cilium_snat_v4_external", 5, 10),
            ],
            notes: vec![],
        };
        let f = EventFacts::from_snapshot(&snap, &names);
        assert_eq!(
            f.annotate(ReasonKey::Cilium(155), 0, 99).as_deref(),
            Some("cilium_ct4_global is full (10/10 (100.0%)): inserts fail")
        );
        // Not full: nothing said.
        assert_eq!(f.annotate(ReasonKey::Cilium(167), 0, 99), None);
        assert_eq!(
            f.annotate(ReasonKey::Kernel(tc_ingress), 7, 3).as_deref(),
            Some("lxca ingress: p id 11 (tcx-ingress)")
        );
        assert_eq!(f.annotate(ReasonKey::Kernel(no_socket), 7, 3), None);
        assert_eq!(
            f.annotate(ReasonKey::Kernel(no_socket), 0, 4).as_deref(),
            Some("lxcb is a Cilium endpoint interface with no tc, tcx or netkit program attached")
        );
        // Another namespace's ifindex 4 is another interface.
        assert_eq!(f.annotate(ReasonKey::Kernel(no_socket), 8, 4), None);
    }

    #[test]
    fn patterns() {
        assert!(name_matches("cilium_policy*", "cilium_policy_v2_01234"));
        assert!(name_matches("cilium_ct4_global", "cilium_ct4_global"));
        assert!(!name_matches("cilium_ct4_global", "cilium_ct4_globalx"));
        assert!(!name_matches("cilium_calls_*", "cilium_call_policy"));
    }
}
