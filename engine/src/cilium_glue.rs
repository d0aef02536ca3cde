//! Where Cilium notifications meet the shared pipeline: turning a raw notification into an
//! [`Event`], and the reason keys, identities, tunnel hints, comments, text and JSON of
//! `Cause::Cilium` events.
//!
//! Must never: panic on any field value (unknown codes print as numbers), or copy packet
//! bytes (events slice the sample's `Bytes`).

use bytes::Bytes;

use crate::cilium::format::{Formatter, Verbosity};
use crate::cilium::notify::{decode, DecodeOptions, Decoded, Notification, NotifyError};
use crate::cilium::tables::{bpf_file_name, drop_reason_str_in, CiliumRelease};
use crate::event::{Cause, Event, LinkType, ReasonKey};
use crate::names::IfNames;
use crate::packet::TunnelHint;

/// Cilium settings shared by every stage.
#[derive(Clone, Copy, Debug)]
pub struct CiliumContext {
    pub release: CiliumRelease,
    pub decode: DecodeOptions,
    pub formatter: Formatter,
}

impl CiliumContext {
    pub fn new(release: CiliumRelease) -> Self {
        CiliumContext {
            release,
            decode: DecodeOptions::for_release(release),
            formatter: Formatter::new(release, Verbosity::Info),
        }
    }
}

impl Default for CiliumContext {
    fn default() -> Self {
        Self::new(CiliumRelease::default())
    }
}

/// Decodes one raw notification (a perf sample as the agent relays it) into an event whose
/// packet bytes are a slice of `sample`.
pub fn event_from_sample(
    sample: &Bytes,
    cpu: u32,
    ts_ns: u64,
    opts: &DecodeOptions,
) -> Result<Event, NotifyError> {
    let Decoded {
        notification,
        packet,
        header_len,
        ..
    } = decode(sample, opts)?;
    let plen = packet.len();
    let data = sample.slice(header_len.min(sample.len())..(header_len + plen).min(sample.len()));
    let (link, ifindex, orig_len) = match &notification {
        Notification::Drop(d) => (link_of(d.is_l3_device()), d.ifindex, d.orig_len),
        Notification::Trace(t) => (link_of(t.is_l3_device()), t.ifindex, t.orig_len),
        Notification::PolicyVerdict(p) => (link_of(p.is_l3()), 0, p.orig_len),
        Notification::DebugCapture(c) => (LinkType::Ethernet, 0, c.orig_len),
        Notification::RecorderCapture(r) => (LinkType::Ethernet, 0, r.orig_len),
        Notification::Debug(_) | Notification::TraceSock(_) => (LinkType::Ethernet, 0, 0),
    };
    Ok(Event {
        meta: None,
        ts_ns,
        ifindex,
        netns: 0,
        cpu,
        orig_len,
        link,
        data,
        cause: Cause::Cilium(notification),
    })
}

fn link_of(l3: bool) -> LinkType {
    if l3 {
        LinkType::RawIp
    } else {
        LinkType::Ethernet
    }
}

/// A synthetic drop notification carrying what a pcapng comment of ours records (replay).
pub fn drop_from_comment(
    code: u8,
    src_identity: u32,
    dst_identity: u32,
    ifindex: u32,
    orig_len: u32,
) -> Notification {
    Notification::Drop(crate::cilium::notify::DropNotify {
        msg_type: 1,
        subtype: code,
        src_label: src_identity,
        dst_label: dst_identity,
        ifindex,
        orig_len,
        version: 3,
        ..Default::default()
    })
}

fn msg_type(n: &Notification) -> u8 {
    match n {
        Notification::Drop(_) => 1,
        Notification::Debug(_) => 2,
        Notification::DebugCapture(_) => 3,
        Notification::Trace(_) => 4,
        Notification::PolicyVerdict(_) => 5,
        Notification::RecorderCapture(_) => 6,
        Notification::TraceSock(_) => 7,
    }
}

/// Monitor name of a Cilium drop code (`Policy denied`) in `release` (`--cilium-release`),
/// `unknown(N)` if it has none there.
pub fn reason_name(code: u8, release: CiliumRelease) -> String {
    drop_reason_str_in(code, release).map_or_else(|| format!("unknown({code})"), str::to_string)
}

/// Name of a non-drop notification type, as `cilium monitor -t` spells it.
pub fn event_type_name(t: u8) -> &'static str {
    crate::cilium::notify::MessageKind::name_of_type_byte(t)
}

/// The code of a policy verdict that denied (`-verdict`), if it did.
fn denied_code(verdict: i32) -> Option<u8> {
    if verdict < 0 {
        u8::try_from(verdict.unsigned_abs()).ok().or(Some(0))
    } else {
        None
    }
}

pub fn reason_and_identities(c: &Cause) -> (ReasonKey, u32, u32) {
    let Cause::Cilium(n) = c else {
        return (ReasonKey::Captured, 0, 0);
    };
    match n {
        Notification::Drop(d) => (ReasonKey::Cilium(d.subtype), d.src_label, d.dst_label),
        Notification::PolicyVerdict(p) => {
            // The remote identity is the source for ingress, the destination for egress.
            let (src, dst) = if p.flags & 0x3 == 2 {
                (0, p.remote_label)
            } else {
                (p.remote_label, 0)
            };
            match denied_code(p.verdict) {
                Some(code) => (ReasonKey::Cilium(code), src, dst),
                None => (ReasonKey::CiliumEvent(5), src, dst),
            }
        }
        Notification::Trace(t) => (ReasonKey::CiliumEvent(4), t.src_label, t.dst_label),
        other => (ReasonKey::CiliumEvent(msg_type(other)), 0, 0),
    }
}

/// Cilium says in its classifier flags whether the packet is a VXLAN/Geneve underlay packet;
/// other packets are not decapsulated by port guesswork.
pub fn tunnel_hint(c: &Cause) -> Option<TunnelHint> {
    let Cause::Cilium(n) = c else { return None };
    let (vxlan, geneve) = match n {
        Notification::Drop(d) => (d.is_vxlan(), d.is_geneve()),
        Notification::Trace(t) => (t.is_vxlan(), t.is_geneve()),
        _ => (false, false),
    };
    Some(if vxlan {
        TunnelHint::Vxlan
    } else if geneve {
        TunnelHint::Geneve
    } else {
        TunnelHint::None
    })
}

/// Which tunnels to decode for this event (Cilium says so in its flags).
pub fn tunnel_hint_for(e: &Event, default: TunnelHint) -> TunnelHint {
    tunnel_hint(&e.cause).unwrap_or(default)
}

/// The pcapng comment: `DROP Policy denied (133) identity 12345->678 ep 0 ifindex 3
/// bpf_lxc.c:1234` for drops and denied verdicts; the monitor line for other types.
pub fn comment(out: &mut String, e: &Event, c: &Cause, ctx: &CiliumContext) {
    let Cause::Cilium(n) = c else { return };
    match n {
        Notification::Drop(d) => {
            let text = drop_reason_str_in(d.subtype, ctx.release)
                .map_or_else(|| format!("unknown({})", d.subtype), str::to_string);
            let file = bpf_file_name(d.file, ctx.release);
            let fname;
            let src = match file {
                Some(f) => Some((f, u32::from(d.line))),
                None if d.file != 0 => {
                    fname = format!("unknown({})", d.file);
                    Some((fname.as_str(), u32::from(d.line)))
                }
                None => None,
            };
            crate::comment::cilium_comment(
                out,
                &text,
                d.subtype,
                d.src_label,
                d.dst_label,
                d.dst_id as u16,
                d.ifindex,
                src,
            );
        }
        Notification::PolicyVerdict(p) if p.verdict < 0 => {
            let (_, src, dst) = reason_and_identities(c);
            let code = denied_code(p.verdict).unwrap_or(0);
            let text = drop_reason_str_in(code, ctx.release)
                .map_or_else(|| format!("unknown({code})"), str::to_string);
            crate::comment::cilium_comment(out, &text, code, src, dst, p.source, e.ifindex, None);
        }
        _ => {
            out.push_str(&event_type_name(msg_type(n)).to_ascii_uppercase());
            out.push_str(": ");
            ctx.formatter.write_line(out, Some(e.cpu), n, &e.data);
            while out.ends_with('\n') {
                out.pop();
            }
        }
    }
}

/// The whole text line of a Cilium event, exactly as `cilium monitor` prints it.
pub fn text_line(
    out: &mut String,
    ctx: &CiliumContext,
    ifnames: &IfNames,
    e: &Event,
    n: &Notification,
) {
    let ifname = |i: u32| ifnames.lookup(i, 0);
    ctx.formatter
        .write_line_with(out, cpu_of(e), n, &e.data, &ifname);
    while out.ends_with('\n') {
        out.pop();
    }
}

fn cpu_of(e: &Event) -> Option<u32> {
    (e.cpu != u32::MAX).then_some(e.cpu)
}

/// Every decoded field of a Cilium event, for JSON lines.
pub fn json_fields(
    m: &mut serde_json::Map<String, serde_json::Value>,
    ctx: &CiliumContext,
    ifnames: &IfNames,
    e: &Event,
    c: &Cause,
) {
    let Cause::Cilium(n) = c else { return };
    let mut s = String::new();
    let ifname = |i: u32| ifnames.lookup(i, 0);
    let mut f = ctx.formatter;
    f.verbosity = Verbosity::Json;
    f.write_json(&mut s, cpu_of(e), n, &e.data, &ifname);
    m.insert("origin".into(), "cilium".into());
    let (rk, src, dst) = reason_and_identities(c);
    if let ReasonKey::Cilium(code) = rk {
        m.insert("reason".into(), code.into());
        m.insert("reason_name".into(), reason_name(code, ctx.release).into());
        m.insert("src_identity".into(), src.into());
        m.insert("dst_identity".into(), dst.into());
    }
    if let Ok(serde_json::Value::Object(o)) =
        serde_json::from_str::<serde_json::Value>(s.trim_end())
    {
        m.insert("cilium".into(), serde_json::Value::Object(o));
    }
}
