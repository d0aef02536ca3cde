//! Turning events into words: reason names, pcapng comments, text lines and JSON lines.
//!
//! One [`Renderer`] per sink thread keeps its scratch buffers, so rendering allocates nothing
//! per event beyond what the output itself needs. Must never fail on odd values: every
//! number without a name is printed as a number.

use std::fmt::Write as _;

use crate::cilium::tables::CiliumRelease;
use crate::event::{Cause, Event};
use crate::kernel::text::KernelDrop;
use crate::lookup::{Names, PodContext};
use crate::packet::format::{ip_of, summary_json, write_summary};
use crate::packet::PacketSummary;

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

/// What a text input added: ` from NS/POD to NS/POD` (Hubble's names), ` on node N`, and
/// `; synthesised from headers (no packet bytes in the input)`.
pub fn meta_comment(out: &mut String, m: &crate::event::EventMeta, release: CiliumRelease) {
    use std::fmt::Write as _;
    if let Some(d) = crate::join::meta_joined(m) {
        write_joined(out, d, release);
    }
    if let Some(n) = &m.names {
        let side =
            |ns: &Option<std::sync::Arc<str>>, pod: &Option<std::sync::Arc<str>>| match (ns, pod) {
                (Some(ns), Some(p)) => Some(format!("{ns}/{p}")),
                (None, Some(p)) => Some(p.to_string()),
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

    /// A kernel drop as it is shown (reason name, drop site as well as it is known), for `f`.
    fn kernel_drop<R>(
        &mut self,
        e: &Event,
        reason: u32,
        location: u64,
        protocol: u16,
        f: impl FnOnce(&KernelDrop<'_>) -> R,
    ) -> R {
        let names: &'n Names = self.names;
        let name = names.kernel_reasons.name(reason);
        let symbol = self.symbol(location);
        f(&KernelDrop {
            reason,
            reason_name: &name,
            location,
            symbol,
            file_symbol: file_symbol(e),
            protocol,
        })
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
            crate::cilium_glue::text_line(out, &self.names.cilium, &self.names.ifnames, e, n);
            self.look_up_pods(e, s);
            if let Some((_, pods)) = &self.last_pods {
                insert_drop_pods(out, start, pods);
            }
            return;
        }
        out.push_str(&crate::timefmt::clock_us(e.ts_ns));
        out.push(' ');
        match &e.cause {
            &Cause::Kernel {
                reason,
                location,
                protocol,
            } => {
                let ifname = self.names.ifnames.lookup(e.ifindex, e.netns);
                self.kernel_drop(e, reason, location, protocol, |d| {
                    d.write_line_head(out, e.ifindex, ifname.as_deref(), e.netns)
                });
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
            &Cause::Kernel {
                reason,
                location,
                protocol,
            } => self.kernel_drop(e, reason, location, protocol, |d| d.json_fields(&mut m)),
            Cause::Captured => {
                m.insert("origin".into(), "capture".into());
            }
            Cause::Packet { dir } => {
                m.insert("origin".into(), "packet".into());
                m.insert("direction".into(), dir.as_str().into());
            }
            other @ Cause::Cilium(_) => crate::cilium_glue::json_fields(
                &mut m,
                &self.names.cilium,
                &self.names.ifnames,
                e,
                other,
            ),
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
                        None => p.to_string(),
                    };
                    m.insert(k.into(), v.into());
                }
            }
            if let Some(node) = &n.node {
                m.insert("node".into(), node.to_string().into());
            }
        }
        if let Cause::Cilium(_) = &e.cause {
            let (_, src, dst) = crate::aggregate::reason_and_identities(e);
            let given = e.meta.as_ref().and_then(|m| m.names.as_ref());
            for (k, id, input) in [
                ("src_labels", src, given.and_then(|n| n.src_labels.clone())),
                ("dst_labels", dst, given.and_then(|n| n.dst_labels.clone())),
            ] {
                // The node's own labels of the identity, else those the input gave (Hubble).
                if let Some(l) = self.identity_labels(id).or(input) {
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
