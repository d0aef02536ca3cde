//! Turning events into words: reason names, pcapng comments, text lines and JSON lines.
//!
//! One [`Renderer`] per sink thread keeps its scratch buffers, so rendering allocates nothing
//! per event beyond what the output itself needs. Must never fail on odd values: every
//! number without a name is printed as a number.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::aggregate::ReasonKey;
use crate::cilium::tables::CiliumRelease;
use crate::event::{Cause, Event};
use crate::kernel::kallsyms::Kallsyms;
use crate::kernel::reasons::KernelReasons;
use crate::names::IfNames;
use crate::packet::{FlowKey, PacketSummary, TunnelHint, TunnelKind, FAMILY_V4, FAMILY_V6};

/// Kernel drop-reason names, read from the running kernel when first used. Reading them
/// (BTF) costs milliseconds that replaying a capture of ordinary packets never needs.
pub struct LazyKernelReasons(std::sync::OnceLock<KernelReasons>);

impl LazyKernelReasons {
    /// Loads on first use ([`KernelReasons::load`]).
    pub fn new() -> Self {
        LazyKernelReasons(std::sync::OnceLock::new())
    }
}

impl Default for LazyKernelReasons {
    fn default() -> Self {
        Self::new()
    }
}

impl From<KernelReasons> for LazyKernelReasons {
    /// Already loaded.
    fn from(r: KernelReasons) -> Self {
        LazyKernelReasons(std::sync::OnceLock::from(r))
    }
}

impl std::ops::Deref for LazyKernelReasons {
    type Target = KernelReasons;

    fn deref(&self) -> &KernelReasons {
        self.0.get_or_init(KernelReasons::load)
    }
}

/// Lookup tables shared by every stage (read-only).
pub struct Names {
    pub kernel_reasons: LazyKernelReasons,
    pub kallsyms: Option<Kallsyms>,
    pub ifnames: IfNames,
    pub cilium: crate::cilium_glue::CiliumContext,
    /// Pod and namespace names on this node (live captures that ask for them).
    pub pods: Option<std::sync::Arc<crate::pods::PodNames>>,
}

impl Names {
    /// Reason names from the running kernel's BTF, symbols from /proc/kallsyms, interface
    /// names of our namespace (none when `offline`: the events come from elsewhere). Offline,
    /// reason names are read on first use only (most replayed packets have no kernel reason).
    pub fn load(offline: bool) -> Names {
        Names {
            kernel_reasons: if offline {
                LazyKernelReasons::new()
            } else {
                KernelReasons::load().into()
            },
            kallsyms: if offline {
                None
            } else {
                Some(Kallsyms::load())
            },
            ifnames: if offline {
                IfNames::offline()
            } else {
                IfNames::new()
            },
            cilium: crate::cilium_glue::CiliumContext::default(),
            pods: None,
        }
    }

    /// An interface's display name, with the pod it belongs to when known (pcapng
    /// interface names).
    pub fn iface_label(&self, ifindex: u32, netns: u32) -> String {
        let mut n = self.ifnames.display(ifindex, netns);
        if let Some(p) = &self.pods {
            if let Some(pod) = p.snapshot().at(netns, ifindex, p.host_netns()) {
                let _ = write!(n, " (pod {pod})");
            }
        }
        n
    }

    /// The pods of a flow-table row: where it was dropped, and of its addresses.
    pub fn row_pods(&self, k: &crate::aggregate::AggKey) -> PodContext {
        self.pod_snapshot()
            .map(|(snap, host)| PodContext::of_row(&snap, host, k))
            .unwrap_or_default()
    }

    /// The latest pod names and the host's namespace, to look many rows up in.
    pub fn pod_snapshot(&self) -> Option<(std::sync::Arc<crate::pods::Snapshot>, u32)> {
        self.pods.as_ref().map(|p| (p.snapshot(), p.host_netns()))
    }

    pub fn reason_name(&self, r: ReasonKey) -> String {
        match r {
            ReasonKey::Kernel(n) => self.kernel_reasons.name(n).into_owned(),
            ReasonKey::Cilium(c) => crate::cilium_glue::reason_name(c, self.cilium.release),
            ReasonKey::CiliumEvent(t) => {
                format!("cilium {}", crate::cilium_glue::event_type_name(t))
            }
            ReasonKey::Captured => "captured".to_string(),
            ReasonKey::Packet {
                ifindex,
                netns,
                dir,
            } => {
                format!(
                    "packets {} {}",
                    self.iface_label(ifindex, netns),
                    dir.as_str()
                )
            }
        }
    }

    /// `NAME (n)` for kernel reasons, `Policy denied (133)` for Cilium ones.
    pub fn reason_label(&self, r: ReasonKey) -> String {
        match r {
            ReasonKey::Kernel(n) => format!("{} ({n})", self.kernel_reasons.name(n)),
            ReasonKey::Cilium(c) => format!(
                "cilium {} ({c})",
                crate::cilium_glue::reason_name(c, self.cilium.release)
            ),
            ReasonKey::CiliumEvent(t) => {
                format!("cilium {}", crate::cilium_glue::event_type_name(t))
            }
            ReasonKey::Captured => "captured".to_string(),
            ReasonKey::Packet { .. } => self.reason_name(r),
        }
    }

    pub fn symbol(&self, addr: u64) -> Option<(&str, u64)> {
        self.kallsyms.as_ref().and_then(|k| k.resolve(addr))
    }
}

/// The pods an event or row involves, as far as they are known.
#[derive(Clone, Debug, Default)]
pub struct PodContext {
    /// Where it was dropped: the pod's network namespace, or its host-side interface.
    pub at: Option<std::sync::Arc<crate::pods::Pod>>,
    /// The pods of the packet's source and destination addresses.
    pub src: Option<std::sync::Arc<crate::pods::Pod>>,
    pub dst: Option<std::sync::Arc<crate::pods::Pod>>,
}

impl PodContext {
    /// The pods of a flow-table row in `snap`.
    pub fn of_row(
        snap: &crate::pods::Snapshot,
        host_netns: u32,
        k: &crate::aggregate::AggKey,
    ) -> Self {
        let f = &k.flow;
        PodContext {
            at: snap.at(k.netns, k.ifindex, host_netns).cloned(),
            src: snap.by_ip(ip_of(f.family, &f.src)).cloned(),
            dst: snap.by_ip(ip_of(f.family, &f.dst)).cloned(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_none() && self.src.is_none() && self.dst.is_none()
    }

    /// ` pod NS/NAME pods SRC->DST` (what is known), for comments and text lines.
    pub fn write_text(&self, out: &mut String) {
        if let Some(p) = &self.at {
            out.push_str(" pod ");
            p.write_label(out);
        }
        if self.src.is_some() || self.dst.is_some() {
            let side = |out: &mut String, p: &Option<std::sync::Arc<crate::pods::Pod>>| match p {
                Some(p) => p.write_label(out),
                None => out.push('-'),
            };
            out.push_str(" pods ");
            side(out, &self.src);
            out.push_str("->");
            side(out, &self.dst);
        }
    }
}

/// The drop site a replayed file's comment named (`sym+0xoff`), when this machine's
/// symbols do not resolve it.
fn file_symbol(e: &Event) -> Option<&str> {
    e.meta.as_deref().and_then(|m| m.symbol.as_deref())
}

/// Puts the pods of a Cilium drop into its `cilium monitor` line (from `start` in `out`),
/// after its identities: `..., identity 12345->678 pod shop/web-0 pods shop/web-0->-: ...`.
/// Other lines (traces, verdicts, the verbose formats) stay exactly `cilium monitor`'s.
/// The text reader takes the names back (`ingest::monitor_text`).
fn insert_drop_pods(out: &mut String, start: usize, pods: &PodContext) {
    let line = &out[start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    if !line.starts_with("xx drop (") {
        return;
    }
    let Some(at) = line
        .find(", identity ")
        .and_then(|i| line[i..].find(": ").map(|j| start + i + j))
    else {
        return;
    };
    let mut t = String::new();
    pods.write_text(&mut t);
    out.insert_str(at, &t);
}

/// The aggregation reason and (source, destination) identities of an event.
pub fn reason_and_identities(e: &Event) -> (ReasonKey, u32, u32) {
    match &e.cause {
        Cause::Kernel { reason, .. } => (ReasonKey::Kernel(*reason), 0, 0),
        Cause::Captured => (ReasonKey::Captured, 0, 0),
        Cause::Packet { dir } => (
            ReasonKey::Packet {
                ifindex: e.ifindex,
                netns: e.netns,
                dir: *dir,
            },
            0,
            0,
        ),
        other @ Cause::Cilium(_) => crate::cilium_glue::reason_and_identities(other),
    }
}

/// What a text input added: ` from NS/POD to NS/POD` (Hubble's names), ` on node N`, and
/// `; synthesised from headers (no packet bytes in the input)`.
pub fn meta_comment(out: &mut String, m: &crate::event::EventMeta, release: CiliumRelease) {
    use std::fmt::Write as _;
    if let Some(d) = crate::join::meta_joined(m) {
        write_joined(out, d, release);
    }
    if let Some(n) = &m.names {
        let side = |ns: &Option<String>, pod: &Option<String>| match (ns, pod) {
            (Some(ns), Some(p)) => Some(format!("{ns}/{p}")),
            (None, Some(p)) => Some(p.clone()),
            (Some(ns), None) => Some(format!("{ns}/-")),
            (None, None) => None,
        };
        let (src, dst) = (
            side(&n.src_namespace, &n.src_pod),
            side(&n.dst_namespace, &n.dst_pod),
        );
        if src.is_some() || dst.is_some() {
            let _ = write!(
                out,
                " pods {}->{}",
                src.as_deref().unwrap_or("-"),
                dst.as_deref().unwrap_or("-")
            );
        }
        if let Some(node) = &n.node {
            let _ = write!(out, " node {node}");
        }
    }
    if m.synthesized {
        out.push_str("; synthesised from headers (no packet bytes in the input)");
    }
}

/// ` ← Cilium: REASON (CODE) identity A->B`: the Cilium notification joined to a kernel drop.
pub fn write_joined(
    out: &mut String,
    d: &crate::cilium::notify::DropNotify,
    release: CiliumRelease,
) {
    let _ = write!(
        out,
        " ← Cilium: {} ({}) identity {}->{}",
        crate::cilium_glue::reason_name(d.subtype, release),
        d.subtype,
        d.src_label,
        d.dst_label
    );
}

/// Which tunnels to decode for this event (Cilium says so in its flags).
pub fn tunnel_hint_for(e: &Event, default: TunnelHint) -> TunnelHint {
    crate::cilium_glue::tunnel_hint(&e.cause).unwrap_or(default)
}

pub fn ip_of(family: u8, a: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*a))),
        _ => None,
    }
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        47 => "gre",
        50 => "esp",
        58 => "icmp6",
        132 => "sctp",
        _ => "ip",
    }
}

/// `10.0.0.1:5000 -> 10.0.0.2:9 udp` / `[fd00::1]:5000 -> [fd00::2]:9 udp` / `a -> b icmp`.
pub fn write_flow(out: &mut String, f: &FlowKey) {
    let (Some(src), Some(dst)) = (ip_of(f.family, &f.src), ip_of(f.family, &f.dst)) else {
        out.push_str("[no ip]");
        return;
    };
    let has_ports = matches!(f.proto, 6 | 17 | 132);
    for (i, (ip, port)) in [(src, f.sport), (dst, f.dport)].into_iter().enumerate() {
        if i == 1 {
            out.push_str(" -> ");
        }
        match (ip, has_ports) {
            (IpAddr::V6(v6), true) => {
                let _ = write!(out, "[{v6}]:{port}");
            }
            (ip, true) => {
                let _ = write!(out, "{ip}:{port}");
            }
            (ip, false) => {
                let _ = write!(out, "{ip}");
            }
        }
    }
    let _ = write!(out, " {}", proto_name(f.proto));
    if f.vlan != 0 {
        let _ = write!(out, " vlan {}", f.vlan);
    }
}

pub fn write_tcp_flags(out: &mut String, flags: u8) {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    let mut first = true;
    for (i, n) in NAMES.iter().enumerate() {
        if flags & (1 << i) != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(n);
            first = false;
        }
    }
}

/// Per-thread scratch buffers.
pub struct Renderer<'n> {
    pub names: &'n Names,
    pub scratch: String,
    /// The last location resolved: consecutive drops mostly share their drop site, and a
    /// kallsyms lookup per event was a large part of the sink's time.
    last_symbol: Option<(u64, Option<(&'n str, u64)>)>,
    /// The pod names snapshot in use, and its generation.
    pods: Option<(u64, std::sync::Arc<crate::pods::Snapshot>)>,
    /// The pods of the event rendered last (keyed by its bytes' address, time, namespace
    /// and interface): the comment and the printed line of one event look them up once.
    last_pods: Option<((usize, u64, u32, u32), PodContext)>,
}

impl<'n> Renderer<'n> {
    /// `names.symbol(addr)`, remembering the last answer.
    pub fn symbol(&mut self, addr: u64) -> Option<(&'n str, u64)> {
        if let Some((a, sym)) = self.last_symbol {
            if a == addr {
                return sym;
            }
        }
        let names: &'n Names = self.names;
        let sym = names.symbol(addr);
        self.last_symbol = Some((addr, sym));
        sym
    }

    pub fn new(names: &'n Names) -> Self {
        Renderer {
            names,
            scratch: String::with_capacity(256),
            last_symbol: None,
            pods: None,
            last_pods: None,
        }
    }

    /// Fills `last_pods` with the pods of `e` (nothing when names are off): a lookup in the
    /// latest snapshot, taken again only when a refresh replaced it. The comment and the line
    /// of one event share it.
    fn look_up_pods(&mut self, e: &Event, s: &PacketSummary) {
        let Some(names) = &self.names.pods else {
            return;
        };
        let generation = names.generation();
        if self.pods.as_ref().is_none_or(|(g, _)| *g != generation) {
            self.pods = Some((generation, names.snapshot()));
        }
        let Some((_, snap)) = &self.pods else {
            return;
        };
        let id = (e.data.as_ptr() as usize, e.ts_ns, e.netns, e.ifindex);
        if self.last_pods.as_ref().is_some_and(|(k, _)| *k == id) {
            return;
        }
        let f = &s.flow;
        let c = PodContext {
            at: snap.at(e.netns, e.ifindex, names.host_netns()).cloned(),
            src: snap.by_ip(ip_of(f.family, &f.src)).cloned(),
            dst: snap.by_ip(ip_of(f.family, &f.dst)).cloned(),
        };
        self.last_pods = Some((id, c));
    }

    /// Cilium identity labels from the names snapshot.
    fn identity_labels(&self, id: u32) -> Option<std::sync::Arc<[String]>> {
        self.pods.as_ref().and_then(|(_, s)| s.labels(id).cloned())
    }

    /// The pcapng comment of an event (empty for ordinary captured packets).
    pub fn comment(&mut self, e: &Event, s: &PacketSummary) -> &str {
        self.scratch.clear();
        match &e.cause {
            Cause::Kernel {
                reason, location, ..
            } => {
                let sym = self
                    .symbol(*location)
                    .or_else(|| file_symbol(e).and_then(crate::comment::split_symbol));
                let name = self.names.kernel_reasons.name(*reason);
                crate::comment::kernel_comment(
                    &mut self.scratch,
                    &name,
                    *reason,
                    sym,
                    *location,
                    e.netns,
                );
            }
            // The direction is in the packet's flags; no comment, as for a capture file.
            Cause::Captured | Cause::Packet { .. } => {}
            other @ Cause::Cilium(_) => {
                crate::cilium_glue::comment(&mut self.scratch, e, other, &self.names.cilium)
            }
        }
        if let Some(m) = &e.meta {
            meta_comment(&mut self.scratch, m, self.names.cilium.release);
        }
        self.look_up_pods(e, s);
        if let Some((_, pods)) = &self.last_pods {
            pods.write_text(&mut self.scratch);
        }
        &self.scratch
    }

    /// One text line (no newline), in the spirit of `cilium monitor --type drop`, prefixed
    /// with the time as tcpdump does.
    pub fn text_line(&mut self, out: &mut String, e: &Event, s: &PacketSummary) {
        if let Cause::Cilium(n) = &e.cause {
            let start = out.len();
            crate::cilium_glue::text_line(out, self.names, e, n);
            self.look_up_pods(e, s);
            if let Some((_, pods)) = &self.last_pods {
                insert_drop_pods(out, start, pods);
            }
            return;
        }
        out.push_str(&crate::timefmt::clock_us(e.ts_ns));
        out.push(' ');
        match &e.cause {
            Cause::Kernel {
                reason, location, ..
            } => {
                let _ = write!(
                    out,
                    "xx drop ({}) at ",
                    self.names.kernel_reasons.name(*reason)
                );
                match (self.symbol(*location), file_symbol(e)) {
                    (Some((sym, off)), _) => {
                        let _ = write!(out, "{sym}+{off:#x}");
                    }
                    (None, Some(sym)) => out.push_str(sym),
                    (None, None) => {
                        let _ = write!(out, "{location:#x}");
                    }
                }
                let _ = write!(out, ", ifindex {}", e.ifindex);
                if let Some(n) = self.names.ifnames.lookup(e.ifindex, e.netns) {
                    let _ = write!(out, " ({n})");
                }
                let _ = write!(out, ", netns {}", e.netns);
                if let Some(d) = e.meta.as_deref().and_then(crate::join::meta_joined) {
                    write_joined(out, d, self.names.cilium.release);
                }
                self.look_up_pods(e, s);
                if let Some((_, pods)) = &self.last_pods {
                    pods.write_text(out);
                }
                out.push_str(": ");
            }
            Cause::Captured => {
                let _ = write!(out, "{} ", self.names.ifnames.display(e.ifindex, e.netns));
            }
            Cause::Packet { dir } => {
                let _ = write!(
                    out,
                    "{} {} ",
                    self.names.iface_label(e.ifindex, e.netns),
                    match dir {
                        crate::event::Direction::Inbound => "In",
                        crate::event::Direction::Outbound => "Out",
                    }
                );
            }
            Cause::Cilium(_) => {}
        }
        write_summary(out, s);
        let _ = write!(out, ", length {}", e.orig_len);
    }

    /// One JSON object (no newline) with every field of the event.
    pub fn json_line(&mut self, out: &mut String, e: &Event, s: &PacketSummary) {
        let mut m = serde_json::Map::new();
        m.insert("time".into(), crate::timefmt::rfc3339_ns(e.ts_ns).into());
        m.insert("ts_ns".into(), e.ts_ns.into());
        match &e.cause {
            Cause::Kernel {
                reason,
                location,
                protocol,
            } => {
                m.insert("origin".into(), "kernel".into());
                m.insert("reason".into(), (*reason).into());
                m.insert(
                    "reason_name".into(),
                    self.names.kernel_reasons.name(*reason).into_owned().into(),
                );
                m.insert("location".into(), format!("{location:#x}").into());
                if let Some((sym, off)) = self.symbol(*location) {
                    m.insert("symbol".into(), format!("{sym}+{off:#x}").into());
                } else if let Some(sym) = file_symbol(e) {
                    m.insert("symbol".into(), sym.into());
                }
                m.insert("skb_protocol".into(), format!("{protocol:#06x}").into());
            }
            Cause::Captured => {
                m.insert("origin".into(), "capture".into());
            }
            Cause::Packet { dir } => {
                m.insert("origin".into(), "packet".into());
                m.insert("direction".into(), dir.as_str().into());
            }
            other @ Cause::Cilium(_) => {
                crate::cilium_glue::json_fields(&mut m, self.names, e, other)
            }
        }
        m.insert("ifindex".into(), e.ifindex.into());
        if let Some(n) = self.names.ifnames.lookup(e.ifindex, e.netns) {
            m.insert("ifname".into(), n.into());
        }
        m.insert("netns".into(), e.netns.into());
        self.look_up_pods(e, s);
        let none = PodContext::default();
        let pods = self.last_pods.as_ref().map_or(&none, |(_, c)| c);
        for (k, p) in [
            ("pod", &pods.at),
            ("src_pod", &pods.src),
            ("dst_pod", &pods.dst),
        ] {
            if let Some(p) = p {
                let mut label = String::new();
                p.write_label(&mut label);
                m.insert(k.into(), label.into());
            }
        }
        if let Some(d) = e.meta.as_deref().and_then(crate::join::meta_joined) {
            m.insert(
                "cilium_drop".into(),
                serde_json::json!({
                    "reason": d.subtype,
                    "reason_name": crate::cilium_glue::reason_name(d.subtype, self.names.cilium.release),
                    "src_identity": d.src_label,
                    "dst_identity": d.dst_label,
                }),
            );
        }
        // Names a text input brought (Hubble), where the node's own do not say.
        if let Some(n) = e.meta.as_ref().and_then(|m| m.names.as_ref()) {
            for (k, ns, pod) in [
                ("src_pod", &n.src_namespace, &n.src_pod),
                ("dst_pod", &n.dst_namespace, &n.dst_pod),
            ] {
                if let (Some(p), false) = (pod, m.contains_key(k)) {
                    let v = match ns {
                        Some(ns) => format!("{ns}/{p}"),
                        None => p.clone(),
                    };
                    m.insert(k.into(), v.into());
                }
            }
            if let Some(node) = &n.node {
                m.insert("node".into(), node.clone().into());
            }
        }
        if let Cause::Cilium(_) = &e.cause {
            let (_, src, dst) = reason_and_identities(e);
            for (k, id) in [("src_labels", src), ("dst_labels", dst)] {
                if let Some(l) = self.identity_labels(id) {
                    m.insert(k.into(), l.iter().cloned().collect::<Vec<_>>().into());
                }
            }
        }
        if e.cpu != u32::MAX {
            m.insert("cpu".into(), e.cpu.into());
        }
        m.insert("len".into(), e.orig_len.into());
        m.insert("caplen".into(), (e.data.len() as u64).into());
        // The captured bytes (hex) and what they start with: `dropscope replay` reads the
        // lines back into packets.
        m.insert(
            "link".into(),
            match e.link {
                crate::event::LinkType::Ethernet => "ethernet",
                crate::event::LinkType::RawIp => "raw_ip",
            }
            .into(),
        );
        let mut hex = String::with_capacity(e.data.len() * 2);
        for b in e.data.iter() {
            let _ = write!(hex, "{b:02x}");
        }
        m.insert("packet".into(), hex.into());
        summary_json(&mut m, s);
        out.push_str(&serde_json::Value::Object(m).to_string());
    }
}

pub fn write_summary(out: &mut String, s: &PacketSummary) {
    write_flow(out, &s.flow);
    if s.flow.proto == 6 {
        out.push(' ');
        write_tcp_flags(out, s.tcp_flags);
    }
    if let Some((t, c)) = s.icmp {
        let _ = write!(out, " type {t} code {c}");
    }
    if let Some(t) = &s.tunnel {
        out.push_str(" [tunnel ");
        write_flow(out, &t.outer);
        let _ = write!(
            out,
            " {} vni {}]",
            match t.kind {
                TunnelKind::Vxlan => "vxlan",
                TunnelKind::Geneve => "geneve",
            },
            t.vni
        );
    }
}

/// A scalar JSON member value, for writers that serialize without building a
/// `serde_json::Value` (and for those that do: `Value::from`).
#[derive(Clone, Debug, PartialEq)]
pub enum JsonScalar {
    U(u64),
    S(String),
    Str(&'static str),
    Null,
}

impl serde::Serialize for JsonScalar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonScalar::U(n) => s.serialize_u64(*n),
            JsonScalar::S(v) => s.serialize_str(v),
            JsonScalar::Str(v) => s.serialize_str(v),
            JsonScalar::Null => s.serialize_unit(),
        }
    }
}

impl From<JsonScalar> for serde_json::Value {
    fn from(v: JsonScalar) -> Self {
        match v {
            JsonScalar::U(n) => n.into(),
            JsonScalar::S(v) => v.into(),
            JsonScalar::Str(v) => v.into(),
            JsonScalar::Null => serde_json::Value::Null,
        }
    }
}

/// The members [`flow_json`] adds, in no particular order.
pub fn flow_members(out: &mut Vec<(&'static str, JsonScalar)>, f: &FlowKey) {
    out.push((
        "family",
        JsonScalar::Str(match f.family {
            FAMILY_V4 => "ipv4",
            FAMILY_V6 => "ipv6",
            _ => "none",
        }),
    ));
    if let (Some(a), Some(b)) = (ip_of(f.family, &f.src), ip_of(f.family, &f.dst)) {
        out.push(("src", JsonScalar::S(a.to_string())));
        out.push(("dst", JsonScalar::S(b.to_string())));
    }
    out.push(("proto", JsonScalar::U(f.proto.into())));
    out.push(("proto_name", JsonScalar::Str(proto_name(f.proto))));
    out.push(("sport", JsonScalar::U(f.sport.into())));
    out.push(("dport", JsonScalar::U(f.dport.into())));
    if f.vlan != 0 {
        out.push(("vlan", JsonScalar::U(f.vlan.into())));
    }
}

pub fn flow_json(m: &mut serde_json::Map<String, serde_json::Value>, f: &FlowKey) {
    let mut members = Vec::with_capacity(8);
    flow_members(&mut members, f);
    for (k, v) in members {
        m.insert(k.into(), v.into());
    }
}

fn summary_json(m: &mut serde_json::Map<String, serde_json::Value>, s: &PacketSummary) {
    flow_json(m, &s.flow);
    if s.flow.proto == 6 {
        let mut f = String::new();
        write_tcp_flags(&mut f, s.tcp_flags);
        m.insert("tcp_flags".into(), f.into());
    }
    if let Some((t, c)) = s.icmp {
        m.insert("icmp_type".into(), t.into());
        m.insert("icmp_code".into(), c.into());
    }
    if let Some(t) = &s.tunnel {
        let mut o = serde_json::Map::new();
        o.insert(
            "kind".into(),
            match t.kind {
                TunnelKind::Vxlan => "vxlan",
                TunnelKind::Geneve => "geneve",
            }
            .into(),
        );
        o.insert("vni".into(), t.vni.into());
        flow_json(&mut o, &t.outer);
        m.insert("tunnel".into(), o.into());
    }
    if let Some(stop) = &s.stop {
        m.insert("decode_stop".into(), format!("{stop:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--cilium-release` names reasons in summaries and JSON as in comments: a code its
    /// release's `drop.go` does not have is `unknown(N)` there.
    #[test]
    fn cilium_reason_names_follow_the_release() {
        let mut names = Names::load(true);
        names.cilium = crate::cilium_glue::CiliumContext::new(CiliumRelease::Main);
        assert_eq!(names.reason_name(ReasonKey::Cilium(205)), "Punt to proxy");
        assert_eq!(
            names.reason_label(ReasonKey::Cilium(205)),
            "cilium Punt to proxy (205)"
        );
        names.cilium = crate::cilium_glue::CiliumContext::new(CiliumRelease::V1_16);
        assert_eq!(names.reason_name(ReasonKey::Cilium(205)), "unknown(205)");
        assert_eq!(names.reason_name(ReasonKey::Cilium(133)), "Policy denied");
    }
}
