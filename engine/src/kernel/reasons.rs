//! Names of kernel drop reasons (`enum skb_drop_reason` values such as 3 = `NO_SOCKET`).
//!
//! Sources, best first: the running kernel's BTF (`enum skb_drop_reason`, plus subsystem
//! enums whose values carry the subsystem id in the upper 16 bits, e.g. mac80211 and
//! openvswitch, also from module BTF); the `skb:kfree_skb` tracepoint's `print fmt` (the
//! kernel's own number -> name table); a built-in table of Linux 6.18's names; and finally
//! `unknown(N)`. Numbers change between kernel versions, so the built-in table is a last
//! resort and [`KernelReasons::source`] says which source was used.
//!
//! Must never: panic on a malformed BTF blob or format file (both are parsed by panic-free
//! code), or invent a name for a number no source knows.

use std::{borrow::Cow, collections::BTreeMap, path::Path};

use super::btf::{Btf, EnumInfo};

/// `SKB_DROP_REASON_SUBSYS_SHIFT`: subsystem reasons keep their subsystem id above this bit.
pub const SUBSYS_SHIFT: u32 = 16;

const CORE_ENUM: &str = "skb_drop_reason";
const SUBSYS_ENUM: &str = "skb_drop_reason_subsys";
const PREFIX: &str = "SKB_DROP_REASON_";
const BTF_DIR: &str = "/sys/kernel/btf";

/// Where the names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonSource {
    Btf,
    Tracefs,
    Builtin,
}

impl ReasonSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonSource::Btf => "btf",
            ReasonSource::Tracefs => "tracefs",
            ReasonSource::Builtin => "builtin",
        }
    }
}

/// Number -> name table of kernel drop reasons.
#[derive(Clone, Debug)]
pub struct KernelReasons {
    names: BTreeMap<u32, String>,
    source: ReasonSource,
}

impl KernelReasons {
    /// Loads names from the running kernel (BTF, then tracefs), else the built-in table.
    pub fn load() -> Self {
        if let Ok(vmlinux) = Btf::from_sys() {
            let modules = load_module_btf(&vmlinux);
            if let Some(r) = KernelReasons::from_btf(&vmlinux, &modules) {
                return r;
            }
        }
        for path in super::loader::KFREE_SKB_FORMAT_PATHS {
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Some(r) = KernelReasons::from_tracepoint_format(&text) {
                    return r;
                }
            }
        }
        KernelReasons::builtin()
    }

    /// From `enum skb_drop_reason` in `vmlinux` and `*_drop_reason` subsystem enums found in
    /// `vmlinux` or `modules`. `None` when `vmlinux` has no `enum skb_drop_reason`.
    pub fn from_btf(vmlinux: &Btf, modules: &[Btf]) -> Option<Self> {
        let core = vmlinux.find_enum(CORE_ENUM)?;
        let mut names = BTreeMap::new();
        for (name, value) in &core.values {
            let Ok(v) = u32::try_from(*value) else {
                continue;
            };
            let short = name
                .strip_prefix(PREFIX)
                .or_else(|| name.strip_prefix("SKB_"))
                .unwrap_or(name);
            // Core reasons live in the low 16 bits; SUBSYS_MASK and the like are not reasons.
            if short == "MAX" || v >> SUBSYS_SHIFT != 0 {
                continue;
            }
            names.insert(v, short.to_string());
        }
        // Subsystem ids (1 = mac80211 unusable, ...); absent on kernels without subsystems.
        let subsystems: Vec<i64> = vmlinux
            .find_enum(SUBSYS_ENUM)
            .map(|e| {
                e.values
                    .iter()
                    .filter(|(n, v)| *v > 0 && !n.ends_with("_NUM"))
                    .map(|(_, v)| *v)
                    .collect()
            })
            .unwrap_or_default();
        let all = vmlinux
            .enums()
            .chain(modules.iter().flat_map(|m| m.enums()));
        for e in all {
            add_subsystem_enum(&mut names, &e, &subsystems);
        }
        Some(KernelReasons {
            names,
            source: ReasonSource::Btf,
        })
    }

    /// From the `skb:kfree_skb` format file's `__print_symbolic(REC->reason, { N, "NAME" }, ...)`.
    pub fn from_tracepoint_format(text: &str) -> Option<Self> {
        let start = text.find("__print_symbolic(REC->reason")?;
        let mut rest = text.get(start..)?;
        let mut names = BTreeMap::new();
        while let Some(open) = rest.find('{') {
            rest = rest.get(open + 1..)?;
            let Some(close) = rest.find('}') else { break };
            let entry = rest.get(..close)?;
            rest = rest.get(close + 1..)?;
            let Some((num, name)) = entry.split_once(',') else {
                continue;
            };
            let Ok(v) = num.trim().parse::<u32>() else {
                continue;
            };
            let name = name.trim().trim_matches('"');
            if name.is_empty() || name == "MAX" {
                continue;
            }
            names.insert(v, name.to_string());
        }
        if names.is_empty() {
            return None;
        }
        Some(KernelReasons {
            names,
            source: ReasonSource::Tracefs,
        })
    }

    /// The built-in table (Linux 6.18 numbering).
    pub fn builtin() -> Self {
        let names = BUILTIN
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u32, (*n).to_string()))
            .collect();
        KernelReasons {
            names,
            source: ReasonSource::Builtin,
        }
    }

    /// The name of `reason`, or `unknown(N)`.
    pub fn name(&self, reason: u32) -> Cow<'_, str> {
        match self.names.get(&reason) {
            Some(n) => Cow::Borrowed(n.as_str()),
            None => Cow::Owned(format!("unknown({reason})")),
        }
    }

    /// The number of a name (`NO_SOCKET`, also accepted with the `SKB_DROP_REASON_` prefix).
    pub fn value(&self, name: &str) -> Option<u32> {
        let short = name.strip_prefix(PREFIX).unwrap_or(name);
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == short)
            .map(|(v, _)| *v)
    }

    /// All known `(value, name)` pairs in value order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.names.iter().map(|(v, n)| (*v, n.as_str()))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `"btf"`, `"tracefs"` or `"builtin"`.
    pub fn source(&self) -> &'static str {
        self.source.as_str()
    }
}

/// Adds the values of a subsystem enum (`enum mac80211_drop_reason`, `enum ovs_drop_reason`
/// ...): an enum named `*_drop_reason` whose values carry a known subsystem id (or, when the
/// kernel has no subsystem enum, any non-zero id) in their upper 16 bits.
fn add_subsystem_enum(names: &mut BTreeMap<u32, String>, e: &EnumInfo, subsystems: &[i64]) {
    if e.name == CORE_ENUM || e.name == SUBSYS_ENUM || !e.name.ends_with("_drop_reason") {
        return;
    }
    for (name, value) in &e.values {
        let Ok(v) = u32::try_from(*value) else {
            continue;
        };
        let subsys = i64::from(v >> SUBSYS_SHIFT);
        let known = if subsystems.is_empty() {
            subsys != 0
        } else {
            subsystems.contains(&subsys)
        };
        if !known || name.starts_with("__") || name.is_empty() {
            continue;
        }
        names.entry(v).or_insert_with(|| name.clone());
    }
}

/// Split BTF of loaded modules (`/sys/kernel/btf/<module>`); unreadable ones are skipped.
fn load_module_btf(vmlinux: &Btf) -> Vec<Btf> {
    let Ok(dir) = std::fs::read_dir(Path::new(BTF_DIR)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        if entry.file_name() == "vmlinux" {
            continue;
        }
        // Only modules that define drop reasons matter; they are few and small.
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        match Btf::parse_split(bytes, vmlinux) {
            Ok(b) if b.enums().any(|e| e.name.ends_with("_drop_reason")) => out.push(b),
            Ok(_) => {}
            Err(e) => log::debug!("Skipping module BTF {}: {e}.", entry.path().display()),
        }
    }
    out
}

/// `enum skb_drop_reason` of Linux 6.18 (include/net/dropreason-core.h), index = value.
const BUILTIN: &[&str] = &[
    "NOT_DROPPED_YET",
    "CONSUMED",
    "NOT_SPECIFIED",
    "NO_SOCKET",
    "SOCKET_CLOSE",
    "SOCKET_FILTER",
    "SOCKET_RCVBUFF",
    "UNIX_DISCONNECT",
    "UNIX_SKIP_OOB",
    "PKT_TOO_SMALL",
    "TCP_CSUM",
    "UDP_CSUM",
    "NETFILTER_DROP",
    "OTHERHOST",
    "IP_CSUM",
    "IP_INHDR",
    "IP_RPFILTER",
    "UNICAST_IN_L2_MULTICAST",
    "XFRM_POLICY",
    "IP_NOPROTO",
    "PROTO_MEM",
    "TCP_AUTH_HDR",
    "TCP_MD5NOTFOUND",
    "TCP_MD5UNEXPECTED",
    "TCP_MD5FAILURE",
    "TCP_AONOTFOUND",
    "TCP_AOUNEXPECTED",
    "TCP_AOKEYNOTFOUND",
    "TCP_AOFAILURE",
    "SOCKET_BACKLOG",
    "TCP_FLAGS",
    "TCP_ABORT_ON_DATA",
    "TCP_ZEROWINDOW",
    "TCP_OLD_DATA",
    "TCP_OVERWINDOW",
    "TCP_OFOMERGE",
    "TCP_RFC7323_PAWS",
    "TCP_RFC7323_PAWS_ACK",
    "TCP_RFC7323_TW_PAWS",
    "TCP_RFC7323_TSECR",
    "TCP_LISTEN_OVERFLOW",
    "TCP_OLD_SEQUENCE",
    "TCP_INVALID_SEQUENCE",
    "TCP_INVALID_END_SEQUENCE",
    "TCP_INVALID_ACK_SEQUENCE",
    "TCP_RESET",
    "TCP_INVALID_SYN",
    "TCP_CLOSE",
    "TCP_FASTOPEN",
    "TCP_OLD_ACK",
    "TCP_TOO_OLD_ACK",
    "TCP_ACK_UNSENT_DATA",
    "TCP_OFO_QUEUE_PRUNE",
    "TCP_OFO_DROP",
    "IP_OUTNOROUTES",
    "BPF_CGROUP_EGRESS",
    "IPV6DISABLED",
    "NEIGH_CREATEFAIL",
    "NEIGH_FAILED",
    "NEIGH_QUEUEFULL",
    "NEIGH_DEAD",
    "NEIGH_HH_FILLFAIL",
    "TC_EGRESS",
    "SECURITY_HOOK",
    "QDISC_DROP",
    "QDISC_OVERLIMIT",
    "QDISC_CONGESTED",
    "CAKE_FLOOD",
    "FQ_BAND_LIMIT",
    "FQ_HORIZON_LIMIT",
    "FQ_FLOW_LIMIT",
    "CPU_BACKLOG",
    "XDP",
    "TC_INGRESS",
    "UNHANDLED_PROTO",
    "SKB_CSUM",
    "SKB_GSO_SEG",
    "SKB_UCOPY_FAULT",
    "DEV_HDR",
    "DEV_READY",
    "FULL_RING",
    "NOMEM",
    "HDR_TRUNC",
    "TAP_FILTER",
    "TAP_TXFILTER",
    "ICMP_CSUM",
    "INVALID_PROTO",
    "IP_INADDRERRORS",
    "IP_INNOROUTES",
    "IP_LOCAL_SOURCE",
    "IP_INVALID_SOURCE",
    "IP_LOCALNET",
    "IP_INVALID_DEST",
    "PKT_TOO_BIG",
    "DUP_FRAG",
    "FRAG_REASM_TIMEOUT",
    "FRAG_TOO_FAR",
    "TCP_MINTTL",
    "IPV6_BAD_EXTHDR",
    "IPV6_NDISC_FRAG",
    "IPV6_NDISC_HOP_LIMIT",
    "IPV6_NDISC_BAD_CODE",
    "IPV6_NDISC_BAD_OPTIONS",
    "IPV6_NDISC_NS_OTHERHOST",
    "QUEUE_PURGE",
    "TC_COOKIE_ERROR",
    "PACKET_SOCK_ERROR",
    "TC_CHAIN_NOTFOUND",
    "TC_RECLASSIFY_LOOP",
    "VXLAN_INVALID_HDR",
    "VXLAN_VNI_NOT_FOUND",
    "MAC_INVALID_SOURCE",
    "VXLAN_ENTRY_EXISTS",
    "NO_TX_TARGET",
    "IP_TUNNEL_ECN",
    "TUNNEL_TXINFO",
    "LOCAL_MAC",
    "ARP_PVLAN_DISABLE",
    "MAC_IEEE_MAC_CONTROL",
    "BRIDGE_INGRESS_STP_STATE",
    "CAN_RX_INVALID_FRAME",
    "CANFD_RX_INVALID_FRAME",
    "CANXL_RX_INVALID_FRAME",
    "PFMEMALLOC",
    "DUALPI2_STEP_DROP",
    "PSP_INPUT",
    "PSP_OUTPUT",
    "RECURSION_LIMIT",
];

#[cfg(test)]
mod tests {
    use super::super::btf::{builder::Builder, kind};
    use super::*;

    fn vmlinux_with_subsys() -> Btf {
        let mut b = Builder::new();
        b.int("int", 4);
        b.enum32(
            "skb_drop_reason",
            false,
            &[
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_CONSUMED", 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
                ("SKB_DROP_REASON_MAX", 4),
                ("SKB_DROP_REASON_SUBSYS_MASK", -65536),
            ],
        );
        b.enum32(
            "skb_drop_reason_subsys",
            false,
            &[
                ("SKB_DROP_REASON_SUBSYS_CORE", 0),
                ("SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1),
                ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 3),
                ("SKB_DROP_REASON_SUBSYS_NUM", 4),
            ],
        );
        b.enum32(
            "ovs_drop_reason",
            false,
            &[
                ("__OVS_DROP_REASON", 0x30000),
                ("OVS_DROP_LAST_ACTION", 0x30001),
                ("OVS_DROP_ACTION_ERROR", 0x30002),
            ],
        );
        // Upper bits name an unknown subsystem (5): ignored.
        b.enum32("other_drop_reason", false, &[("OTHER_X", 0x50001)]);
        // Not a *_drop_reason enum: ignored even with upper bits set.
        b.enum32("flags", false, &[("FLAG_HIGH", 0x10001)]);
        let _ = kind::ENUM;
        Btf::parse(b.build()).unwrap()
    }

    #[test]
    fn btf_names_strip_the_prefix_and_skip_max() {
        let r = KernelReasons::from_btf(&vmlinux_with_subsys(), &[]).unwrap();
        assert_eq!(r.source(), "btf");
        assert_eq!(r.name(0), "NOT_DROPPED_YET");
        assert_eq!(r.name(1), "CONSUMED");
        assert_eq!(r.name(3), "NO_SOCKET");
        assert_eq!(r.name(4), "unknown(4)");
        assert_eq!(r.value("NO_SOCKET"), Some(3));
        assert_eq!(r.value("SKB_DROP_REASON_NO_SOCKET"), Some(3));
    }

    #[test]
    fn subsystem_enums_from_vmlinux_and_modules() {
        let vmlinux = vmlinux_with_subsys();
        let mut m = Builder::split(vmlinux.type_count(), vmlinux_str_len(&vmlinux));
        m.enum32(
            "mac80211_drop_reason",
            false,
            &[
                ("RX_DROP_U_MIC_FAIL", 0x10001),
                ("RX_DROP_U_REPLAY", 0x10002),
            ],
        );
        let module = Btf::parse_split(m.build(), &vmlinux).unwrap();
        let r = KernelReasons::from_btf(&vmlinux, &[module]).unwrap();
        assert_eq!(r.name(0x30001), "OVS_DROP_LAST_ACTION");
        assert_eq!(r.name(0x30002), "OVS_DROP_ACTION_ERROR");
        assert_eq!(r.name(0x30000), "unknown(196608)");
        assert_eq!(r.name(0x10001), "RX_DROP_U_MIC_FAIL");
        assert_eq!(r.name(0x10002), "RX_DROP_U_REPLAY");
        assert_eq!(r.name(0x50001), "unknown(327681)");
        let all: Vec<(u32, &str)> = r.iter().collect();
        assert_eq!(
            all,
            vec![
                (0, "NOT_DROPPED_YET"),
                (1, "CONSUMED"),
                (2, "NOT_SPECIFIED"),
                (3, "NO_SOCKET"),
                (0x10001, "RX_DROP_U_MIC_FAIL"),
                (0x10002, "RX_DROP_U_REPLAY"),
                (0x30001, "OVS_DROP_LAST_ACTION"),
                (0x30002, "OVS_DROP_ACTION_ERROR"),
            ]
        );
    }

    fn vmlinux_str_len(b: &Btf) -> u32 {
        b.strings_len() as u32
    }

    #[test]
    fn no_core_enum_means_no_btf_table() {
        let mut b = Builder::new();
        b.int("int", 4);
        assert!(KernelReasons::from_btf(&Btf::parse(b.build()).unwrap(), &[]).is_none());
    }

    #[test]
    fn tracepoint_format_table() {
        let text = r#"name: kfree_skb
print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 73, "TC_INGRESS" }, { 128, "MAX" })
"#;
        let r = KernelReasons::from_tracepoint_format(text).unwrap();
        assert_eq!(r.source(), "tracefs");
        assert_eq!(r.len(), 3);
        assert_eq!(r.name(3), "NO_SOCKET");
        assert_eq!(r.name(73), "TC_INGRESS");
        assert_eq!(r.name(128), "unknown(128)");
        assert!(KernelReasons::from_tracepoint_format("print fmt: \"x\"").is_none());
        // Malformed entries are skipped, never a panic.
        let r = KernelReasons::from_tracepoint_format(
            "__print_symbolic(REC->reason, { x, \"A\" }, { 5 }, { 6, \"B\" }, {",
        )
        .unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(6, "B")]);
    }

    #[test]
    fn builtin_table_matches_6_18_numbering() {
        let r = KernelReasons::builtin();
        assert_eq!(r.source(), "builtin");
        assert_eq!(r.name(2), "NOT_SPECIFIED");
        assert_eq!(r.name(3), "NO_SOCKET");
        assert_eq!(r.name(12), "NETFILTER_DROP");
        assert_eq!(r.name(73), "TC_INGRESS");
        assert_eq!(r.name(127), "RECURSION_LIMIT");
        assert_eq!(r.name(128), "unknown(128)");
        assert_eq!(r.len(), 128);
    }

    #[test]
    fn load_never_fails() {
        let r = KernelReasons::load();
        assert!(!r.is_empty());
        if r.source() != "builtin" {
            // Every kernel with drop reasons has NO_SOCKET (added in 5.17 as value 3... the
            // number may differ, the name does not).
            assert!(r.value("NO_SOCKET").is_some());
        }
    }

    #[test]
    fn live_btf_and_tracefs_tables_agree() {
        let (Ok(vmlinux), Some(text)) = (
            Btf::from_sys(),
            crate::kernel::loader::KFREE_SKB_FORMAT_PATHS
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok()),
        ) else {
            eprintln!("skipping: needs both kernel BTF and tracefs");
            return;
        };
        let btf = KernelReasons::from_btf(&vmlinux, &[]).unwrap();
        let tracefs = KernelReasons::from_tracepoint_format(&text).unwrap();
        assert!(tracefs.len() > 10);
        for (v, name) in tracefs.iter() {
            assert_eq!(btf.name(v), name, "reason {v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn format_parser_never_panics(s in ".{0,300}") {
            let _ = KernelReasons::from_tracepoint_format(&format!("__print_symbolic(REC->reason, {s}"));
        }
    }
}
