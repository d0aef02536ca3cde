//! `cilium monitor` / `cilium-dbg monitor` text, at every verbosity: the inverse of
//! [`crate::cilium::format::Formatter`] (and of Go's `pkg/monitor/datapath_*.go`, FORMAT.md
//! §12).
//!
//! * INFO (default) and DEBUG (`-v`): one line per drop / trace / policy verdict / debug
//!   capture, `CPU xx: MARK ... DEBUG:` debug messages and `CPU xx: [..] cgroup_id:` socket
//!   traces (`-v`). No packet bytes: the connection summary at the end of the line becomes
//!   [`Record::headers`].
//! * VERBOSE (`-vv`): a `------` separator, a header line, then `hex.Dump` lines of the packet
//!   (drops by default, traces and debug captures with `--hex`) which become
//!   [`Record::packet`], or a dissection (`  <summary>` as dropscope writes it, or gopacket's
//!   `Ethernet\t{...}` / `IPv4\t{...}` / `TCP\t{...}` layer lines as Cilium writes them) which
//!   becomes [`Record::headers`].
//! * `CPU %02d: Lost %d events`, `Unknown payload type: ...`, `>> <agent event>: <json>` become
//!   [`Item::Notice`]s; `CPU xx: Unknown event: [b b b]` is decoded as the raw sample it is.
//!
//! What the text does not carry stays 0: the drop's version/flags/cap_len (cap_len is set to
//! the number of hex-dumped bytes), a trace's version, a debug message's arguments (except the
//! generic/unknown messages that print them in decimal). Where the text is ambiguous the parser
//! says so here: a policy verdict's `deny` / `redirect` becomes verdict `-1` / `1` (the text
//! gives only the sign); `Invalid packet` (codes 2 and 134) maps to 134; an interface printed
//! as a name leaves ifindex 0. Encryption of a `-vv` trace is not printed by Go and stays
//! unset. The link type of a hex dump is Ethernet unless the bytes start with an IPv4 or IPv6
//! header whose length field matches the header's `%d bytes` (Cilium prints no L3-device flag).
//!
//! Lines that are not part of a record are counted in [`Skips`] by kind: `blank`, `prompt`
//! (shell prompts and the `cilium monitor` command line), `banner` (`Listening for events
//! ...`, `Press Ctrl-C to quit`, log lines), `not_a_record`, `cut_record` (a record line that
//! does not parse, or hex-dump lines whose header is missing), `bad_hex_dump` (a hex line cut
//! short, garbled, or out of sequence: the bytes before it are kept), `decode_error`
//! (`cannot decode message type`). Anomalies of a record that is still produced are counted
//! too: `missing_hex_dump` (a `-vv` header says bytes were captured but no dump or dissection
//! follows) and `hex_dump_length` (the dump's byte count differs from the captured count the
//! header states). The `------` separators are framing and are not counted. A long line
//! wrapped in two is rejoined when the joined text parses and the second half alone does not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use super::{FlowHeaders, Item, LineParser, Record, Skips};
use crate::cilium::format::write_debug_message;
use crate::cilium::notify::{
    decode, DebugCapture, DebugMsg, DecodeOptions, DropNotify, Notification,
    PolicyVerdictNotify, TraceNotify, TraceSockNotify,
};
use crate::cilium::summary::write_icmp_type_code;
use crate::cilium::tables::{
    bpf_file_name, drop_reason_str_in, policy_match_str, trace_point_info, trace_reason_str,
    CiliumRelease, AGENT_NOTIFICATIONS, RESERVED_IDENTITIES,
};
use crate::event::{Cause, LinkType, Notice};

// ---------------------------------------------------------------------------------------------
// Shared reverse tables and small parsers (also used by monitor_json)

/// Reverse maps of the release-specific strings.
#[derive(Clone, Debug)]
pub(crate) struct Reverse {
    pub release: CiliumRelease,
    reasons: HashMap<&'static str, u8>,
    files: HashMap<&'static str, u8>,
}

impl Reverse {
    pub fn new(release: CiliumRelease) -> Self {
        let mut reasons = HashMap::new();
        let mut files = HashMap::new();
        for code in 0..=255u8 {
            // Later codes win: "Invalid packet" (2 and 134) maps to 134 (DROP_INVALID).
            if let Some(s) = drop_reason_str_in(code, release) {
                reasons.insert(s, code);
            }
            if let Some(f) = bpf_file_name(code, release) {
                files.entry(f).or_insert(code);
            }
        }
        Reverse {
            release,
            reasons,
            files,
        }
    }

    /// `DropReasonExt` text -> (reason, ext_error).
    pub fn reason(&self, s: &str) -> Option<(u8, i8)> {
        let s = s.trim();
        if let Some(c) = self.reasons.get(s) {
            return Some((*c, 0));
        }
        let (a, b) = s.rsplit_once(", ")?;
        let ext: i8 = b.trim().parse().ok()?;
        if let Some(c) = self.reasons.get(a) {
            return Some((*c, ext));
        }
        Some((a.trim().parse().ok()?, ext))
    }

    /// `BPFFileName` text (`bpf_lxc.c`, `unknown(101)`) -> id.
    pub fn file(&self, s: &str) -> Option<u8> {
        if let Some(n) = s.strip_prefix("unknown(").and_then(|r| r.strip_suffix(')')) {
            return n.parse().ok();
        }
        self.files.get(s).copied()
    }
}

/// `NumericIdentity.String()` (reserved name or decimal) -> number.
pub(crate) fn parse_identity(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(i) = RESERVED_IDENTITIES.iter().position(|n| *n == s) {
        return u32::try_from(i).ok();
    }
    s.parse().ok()
}

/// `A->B`.
pub(crate) fn parse_identity_pair(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once("->")?;
    Some((parse_identity(a)?, parse_identity(b)?))
}

/// `%#x` (`0x0`, `0x1234abcd`).
pub(crate) fn parse_hex_u32(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().strip_prefix("0x")?, 16).ok()
}

/// Observation point monitor string (`from-host`) or decimal -> code.
pub(crate) fn parse_obs_point(s: &str) -> Option<u8> {
    for c in 0..=255u8 {
        if let Some(i) = trace_point_info(c) {
            if i.monitor == s {
                return Some(c);
            }
        }
    }
    s.parse().ok()
}

/// Trace reason string (`established`) or raw decimal -> reason byte.
pub(crate) fn parse_trace_reason(s: &str) -> Option<u8> {
    (0..=8u8)
        .find(|r| trace_reason_str(*r) == Some(s))
        .or_else(|| s.parse().ok())
}

fn icmp_names() -> &'static [HashMap<String, (u8, u8)>; 2] {
    static T: OnceLock<[HashMap<String, (u8, u8)>; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let mut maps = [HashMap::new(), HashMap::new()];
        for (v6, map) in [false, true].into_iter().zip(maps.iter_mut()) {
            for typ in 0..=255u8 {
                for code in 0..=15u8 {
                    let mut s = String::new();
                    let _ = write_icmp_type_code(&mut s, v6, typ, code);
                    if s.starts_with(|c: char| c.is_ascii_digit()) {
                        break;
                    }
                    if code == 0 {
                        // The bare type name, for `Name(Code: N)`.
                        let name = s.split('(').next().unwrap_or("").to_string();
                        map.entry(format!("{name}\0")).or_insert((typ, 0));
                    }
                    map.entry(s).or_insert((typ, code));
                }
            }
        }
        maps
    })
}

/// gopacket `ICMPv4TypeCode.String()` / `ICMPv6TypeCode.String()` -> (type, code).
pub(crate) fn parse_icmp_type_code(s: &str, v6: bool) -> Option<(u8, u8)> {
    let map = &icmp_names()[usize::from(v6)];
    if let Some(tc) = map.get(s) {
        return Some(*tc);
    }
    let (name, rest) = s.split_once('(')?;
    let inner = rest.strip_suffix(')')?;
    if let Some(code) = inner.strip_prefix("Code: ") {
        let (typ, _) = map.get(&format!("{name}\0"))?;
        return Some((*typ, code.parse().ok()?));
    }
    Some((name.parse().ok()?, inner.parse().ok()?))
}

/// `ip`, `ip:port` or `[ip6]:port`.
fn parse_host_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(r) = s.strip_prefix('[') {
        let (ip, port) = r.split_once("]:")?;
        return Some((IpAddr::V6(ip.parse().ok()?), Some(port.parse().ok()?)));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (ip, port) = s.rsplit_once(':')?;
    Some((IpAddr::V4(ip.parse().ok()?), Some(port.parse().ok()?)))
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':').all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

/// A connection summary (`GetConnectionSummary`) -> headers. `Ok(None)` for summaries that
/// name no IP flow (`[unknown]`, `[error]`, MAC-only); `Err` when the text is not a summary.
pub(crate) fn parse_summary(s: &str) -> Result<Option<FlowHeaders>, ()> {
    let mut s = s.trim_end();
    if s == "[unknown]" || s == "[error]" {
        return Ok(None);
    }
    if s.ends_with(" vxlan]") || s.ends_with(" geneve]") {
        let (inner, tunnel) = s.rsplit_once(" [tunnel ").ok_or(())?;
        let t = tunnel.rsplit_once(' ').ok_or(())?.0;
        let (a, b) = t.split_once(" -> ").ok_or(())?;
        parse_host_port(a).ok_or(())?;
        parse_host_port(b).ok_or(())?;
        s = inner;
    }
    let (lhs, rhs) = s.split_once(" -> ").ok_or(())?;
    let (dst, rest) = match rhs.split_once(' ') {
        Some((d, r)) => (d, Some(r)),
        None => (rhs, None),
    };
    if is_mac(lhs) {
        return if is_mac(dst) && rest.is_some() {
            Ok(None)
        } else {
            Err(())
        };
    }
    let (src, sport) = parse_host_port(lhs).ok_or(())?;
    let (dst, dport) = parse_host_port(dst).ok_or(())?;
    let mut h = FlowHeaders {
        src: Some(src),
        dst: Some(dst),
        ..FlowHeaders::default()
    };
    let ported = |h: &mut FlowHeaders, proto: u8| -> Result<(), ()> {
        h.proto = proto;
        h.sport = sport.ok_or(())?;
        h.dport = dport.ok_or(())?;
        Ok(())
    };
    let no_ports = sport.is_none() && dport.is_none();
    match rest.map(|r| r.split_once(' ').unwrap_or((r, ""))) {
        None if no_ports => {}
        Some(("tcp", flags)) => {
            ported(&mut h, 6)?;
            let mut f = 0u8;
            for name in flags.split(", ").filter(|x| !x.is_empty()) {
                f |= match name {
                    "SYN" => 0x02,
                    "ACK" => 0x10,
                    "RST" => 0x04,
                    "FIN" => 0x01,
                    _ => return Err(()),
                };
            }
            h.tcp_flags = Some(f);
        }
        Some(("udp", "")) => ported(&mut h, 17)?,
        Some(("sctp", "")) => ported(&mut h, 132)?,
        Some(("icmp", tc)) if no_ports => {
            let v6 = matches!(dst, IpAddr::V6(_));
            h.proto = if v6 { 58 } else { 1 };
            h.icmp = Some(parse_icmp_type_code(tc, v6).ok_or(())?);
        }
        Some(("igmp", _)) if no_ports => h.proto = 2,
        Some(("vrrp", _)) if no_ports => h.proto = 112,
        _ => return Err(()),
    }
    Ok(Some(h))
}

/// `CPU 01:` / `CPU --:` prefix -> (cpu, rest after the colon and one space).
fn strip_cpu(s: &str) -> Option<(Option<u32>, &str)> {
    let r = s.strip_prefix("CPU ")?;
    let (n, rest) = r.split_once(':')?;
    let cpu = if n == "--" { None } else { Some(n.parse().ok()?) };
    Some((cpu, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// Takes the text before `pat` and advances past it.
fn take<'a>(s: &mut &'a str, pat: &str) -> Option<&'a str> {
    let (a, b) = s.split_once(pat)?;
    *s = b;
    Some(a)
}

fn lit(s: &mut &str, pat: &str) -> Option<()> {
    *s = s.strip_prefix(pat)?;
    Some(())
}

/// Debug message literal prefixes, from rendering each subtype (Go numbering) twice with
/// different arguments: (prefix, subtype), longest first; prefixes shared by several subtypes
/// are dropped (ambiguous).
fn debug_prefixes() -> &'static [(String, u8)] {
    static T: OnceLock<Vec<(String, u8)>> = OnceLock::new();
    T.get_or_init(|| {
        let none = |_: u32| None;
        let render = |st: u8, a: u32| {
            let m = DebugMsg {
                msg_type: 2,
                subtype: st,
                arg1: a,
                arg2: a.wrapping_add(1),
                arg3: a.wrapping_add(2),
                ..DebugMsg::default()
            };
            let mut s = String::new();
            let _ = write_debug_message(&mut s, &m, CiliumRelease::Main, &none);
            s
        };
        let mut v: Vec<(String, u8)> = Vec::new();
        for st in 1..=67u8 {
            let (a, b) = (render(st, 0), render(st, 0x0a0b_0c0d));
            let n = a
                .bytes()
                .zip(b.bytes())
                .take_while(|(x, y)| x == y)
                .count();
            let p = a.get(..n).unwrap_or("").to_string();
            if p.starts_with("Unknown message type=") || p.is_empty() {
                continue;
            }
            v.push((p, st));
        }
        let mut out: Vec<(String, u8)> = Vec::new();
        for (p, st) in &v {
            if v.iter().filter(|(q, _)| q == p).count() == 1 {
                out.push((p.clone(), *st));
            }
        }
        out.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        out
    })
}

/// A debug message text -> DebugMsg fields it reveals (subtype; args of the generic and the
/// unknown message).
pub(crate) fn parse_debug_message(msg: &str, d: &mut DebugMsg) {
    if let Some(r) = msg.strip_prefix("Unknown message type=") {
        let mut r = r;
        if let (Some(t), Some(_)) = (take(&mut r, " arg1="), Some(())) {
            if let (Ok(t), Some((a1, a2))) = (t.parse(), r.split_once(" arg2=")) {
                d.subtype = t;
                d.arg1 = a1.parse().unwrap_or(0);
                d.arg2 = a2.parse().unwrap_or(0);
            }
        }
        return;
    }
    if let Some(r) = msg.strip_prefix("No message, arg1=") {
        d.subtype = 1;
        let num = |s: &str| s.split(' ').next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let mut r = r;
        d.arg1 = num(r);
        if take(&mut r, "arg2=").is_some() {
            d.arg2 = num(r);
        }
        if take(&mut r, "arg3=").is_some() {
            d.arg3 = num(r);
        }
        return;
    }
    for (p, st) in debug_prefixes() {
        if msg.starts_with(p.as_str()) {
            d.subtype = *st;
            return;
        }
    }
}

/// `DebugCapture.subTypeString` at the start of `s` -> (subtype, arg1, rest of the line).
pub(crate) fn parse_capture_message(s: &str) -> Option<(u8, u32, &str)> {
    let num_then = |r: &str| -> Option<(u32, usize)> {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        Some((r.get(..n)?.parse().ok()?, n))
    };
    const IFX: [(&str, u8); 6] = [
        ("Delivery to ifindex ", 4),
        ("Incoming packet to load balancer on ifindex ", 5),
        ("Packet after nat46 ifindex ", 6),
        ("Packet after nat64 ifindex ", 7),
        ("Packet going into snat engine on ifindex ", 10),
        ("Packet coming from snat engine on ifindex ", 11),
    ];
    for (p, st) in IFX {
        if let Some(r) = s.strip_prefix(p) {
            let (n, len) = num_then(r)?;
            return Some((st, n, r.get(len..)?));
        }
    }
    if let Some(r) = s.strip_prefix("Packet to proxy port ") {
        let (port, len) = num_then(r)?;
        let r = r.get(len..)?;
        let port = u16::try_from(port).ok()?;
        let arg1 = u32::from(port.swap_bytes());
        if let Some(r) = r.strip_prefix(" (Pre)") {
            return Some((8, arg1, r));
        }
        return Some((9, arg1, r.strip_prefix(" (Post)")?));
    }
    let r = s.strip_prefix("Unknown message type=")?;
    let (st, len) = num_then(r)?;
    let r = r.get(len..)?.strip_prefix(" arg1=")?;
    let (a1, len) = num_then(r)?;
    Some((u8::try_from(st).ok()?, a1, r.get(len..)?))
}

/// gopacket `LayerString` lines (`IPv4\t{... SrcIP=1.2.3.4 DstIP=...}`) folded into headers.
fn apply_layer_line(line: &str, h: &mut FlowHeaders) -> bool {
    let line = line.trim_start();
    let Some((layer, body)) = line.split_once(|c: char| c == '\t' || c == ' ') else {
        return false;
    };
    let body = body.trim_start();
    if !body.starts_with('{') {
        return false;
    }
    let field = |name: &str| -> Option<&str> {
        let key = format!(" {name}=");
        let i = body.find(&key)?;
        let r = body.get(i + key.len()..)?;
        Some(r.split([' ', '}']).next().unwrap_or(""))
    };
    let port = |name: &str| -> u16 {
        field(name)
            .map(|v| v.split('(').next().unwrap_or(""))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    match layer {
        "Ethernet" => {}
        "IPv4" | "IPv6" => {
            h.src = field("SrcIP").and_then(|v| v.parse().ok());
            h.dst = field("DstIP").and_then(|v| v.parse().ok());
            h.proto = 0;
        }
        "TCP" => {
            h.proto = 6;
            h.sport = port("SrcPort");
            h.dport = port("DstPort");
            let mut f = 0u8;
            for (n, b) in [
                ("FIN", 0x01u8),
                ("SYN", 0x02),
                ("RST", 0x04),
                ("PSH", 0x08),
                ("ACK", 0x10),
                ("URG", 0x20),
                ("ECE", 0x40),
                ("CWR", 0x80),
            ] {
                if field(n) == Some("true") {
                    f |= b;
                }
            }
            h.tcp_flags = Some(f);
        }
        "UDP" | "SCTP" => {
            h.proto = if layer == "UDP" { 17 } else { 132 };
            h.sport = port("SrcPort");
            h.dport = port("DstPort");
        }
        "ICMPv4" | "ICMPv6" => {
            let v6 = layer == "ICMPv6";
            h.proto = if v6 { 58 } else { 1 };
            h.icmp = field("TypeCode").and_then(|tc| parse_icmp_type_code(tc, v6));
        }
        "VXLAN" | "Geneve" => {
            // The inner packet follows; its layers override the outer ones.
        }
        _ => return false,
    }
    true
}

/// What `link` a hex-dumped packet starts with (see the module doc).
fn sniff_link(p: &[u8], orig_len: u32) -> LinkType {
    let be16 = |i: usize| -> Option<u32> {
        Some(u32::from(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?])))
    };
    let raw = match p.first().map(|b| b >> 4) {
        Some(4) => p[0] & 0x0f >= 5 && be16(2) == Some(orig_len),
        Some(6) => be16(4).map(|l| l + 40) == Some(orig_len),
        _ => false,
    };
    if raw && orig_len > 0 {
        LinkType::RawIp
    } else {
        LinkType::Ethernet
    }
}

fn new_record(n: Notification, cpu: Option<u32>) -> Record {
    let (ifindex, orig_len) = match &n {
        Notification::Drop(d) => (d.ifindex, d.orig_len),
        Notification::Trace(t) => (t.ifindex, t.orig_len),
        Notification::PolicyVerdict(p) => (0, p.orig_len),
        Notification::DebugCapture(c) => (0, c.orig_len),
        Notification::RecorderCapture(r) => (0, r.orig_len),
        Notification::Debug(_) | Notification::TraceSock(_) => (0, 0),
    };
    Record {
        ts_ns: None,
        cpu,
        cause: Cause::Cilium(n),
        packet: None,
        link: LinkType::Ethernet,
        orig_len,
        ifindex,
        netns: 0,
        headers: None,
        names: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Hex dump lines

/// One `hex.Dump` line: its offset, bytes, and whether it is complete (the ASCII column is
/// present and agrees with the bytes).
struct HexLine {
    offset: usize,
    bytes: [u8; 16],
    n: usize,
    complete: bool,
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Does the line start like a hex dump line (8 hex digits, two spaces)?
fn looks_like_hex_line(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10 && b[..8].iter().all(|c| hex_val(*c).is_some()) && &b[8..10] == b"  "
}

fn parse_hex_line(s: &str) -> Option<HexLine> {
    if !looks_like_hex_line(s) {
        return None;
    }
    let b = s.as_bytes();
    let offset = usize::from_str_radix(s.get(..8)?, 16).ok()?;
    let mut out = HexLine {
        offset,
        bytes: [0; 16],
        n: 0,
        complete: false,
    };
    let mut ended = false;
    for i in 0..16 {
        let pos = 10 + 3 * i + usize::from(i >= 8);
        let slot = (b.get(pos), b.get(pos + 1), b.get(pos + 2));
        match slot {
            (Some(h), Some(l), sep) if !ended => match (hex_val(*h), hex_val(*l)) {
                (Some(h), Some(l)) if matches!(sep, Some(b' ') | None) => {
                    out.bytes[i] = (h << 4) | l;
                    out.n += 1;
                    if sep.is_none() {
                        return Some(out);
                    }
                }
                _ if *h == b' ' && *l == b' ' => ended = true,
                _ => return Some(out),
            },
            (Some(b' '), Some(b' '), _) if ended => {}
            (None, _, _) | (Some(_), None, _) => return Some(out),
            _ => return Some(out),
        }
    }
    // After the 16 slots: " |" + ASCII + "|" (the 8th slot's extra space is inside the area).
    let ascii = s.get(59..)?.strip_prefix(" |")?.strip_suffix('|')?;
    let want = out.bytes.get(..out.n)?;
    let ok = ascii.len() == out.n
        && ascii.bytes().zip(want).all(|(a, b)| {
            let p = if (32..=126).contains(b) { *b } else { b'.' };
            a == p
        });
    out.complete = ok;
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Record lines

/// What a header line starts.
enum Parsed {
    /// A complete one-line record.
    Record(Record),
    /// A `-vv` header: dump or dissection lines may follow. `tail` is text glued to the
    /// header by Go's missing newline (debug captures, drop IP-TRACE-ID).
    Verbose(Open),
    Notice(Notice),
    /// A line that is recognised and ends nothing (`cannot decode message type`).
    Skip(&'static str),
}

struct Open {
    rec: Record,
    /// Captured bytes the header states (traces, debug captures).
    cap: Option<u32>,
    /// Whether a dump is expected (a drop with a length, a stated non-zero capture).
    expect: bool,
    is_drop: bool,
    bytes: Vec<u8>,
    broken: bool,
    dissected: Option<FlowHeaders>,
    saw_body: bool,
    tail: Option<String>,
}

impl Open {
    fn new(rec: Record, cap: Option<u32>, is_drop: bool) -> Open {
        let expect = match cap {
            Some(c) => c > 0,
            None => is_drop && rec.orig_len > 0,
        };
        Open {
            rec,
            cap,
            expect,
            is_drop,
            bytes: Vec::new(),
            broken: false,
            dissected: None,
            saw_body: false,
            tail: None,
        }
    }

    /// Takes a body line; false when the line is not part of this record.
    fn body_line(&mut self, line: &str, skips: &mut Skips) -> bool {
        if looks_like_hex_line(line) {
            self.saw_body = true;
            match parse_hex_line(line) {
                Some(h) if !self.broken && h.offset == self.bytes.len() && h.n > 0 => {
                    self.bytes.extend_from_slice(&h.bytes[..h.n]);
                    if !h.complete {
                        self.broken = true;
                        skips.add("bad_hex_dump");
                    }
                }
                _ => {
                    self.broken = true;
                    skips.add("bad_hex_dump");
                }
            }
            return true;
        }
        if let Some(s) = line.strip_prefix("  ") {
            if s == "Packet has been truncated" || s.starts_with("Failed to decode layer") {
                self.saw_body = true;
                return true;
            }
            if let Ok(h) = parse_summary(s) {
                self.saw_body = true;
                self.dissected = h;
                return true;
            }
        }
        let mut h = self.dissected.clone().unwrap_or_default();
        if apply_layer_line(line, &mut h) {
            self.saw_body = true;
            self.dissected = Some(h).filter(|h| h.src.is_some() || h.proto != 0);
            return true;
        }
        false
    }

    fn finish(mut self, out: &mut Vec<Item>, skips: &mut Skips) {
        if !self.bytes.is_empty() {
            let n = self.bytes.len();
            if let Some(c) = self.cap {
                if usize::try_from(c).ok() != Some(n) {
                    skips.add("hex_dump_length");
                }
            }
            if self.is_drop {
                if let Cause::Cilium(Notification::Drop(d)) = &mut self.rec.cause {
                    d.cap_len = u16::try_from(n).unwrap_or(u16::MAX);
                }
            }
            self.rec.link = match &self.rec.cause {
                Cause::Cilium(Notification::DebugCapture(_)) => LinkType::Ethernet,
                _ => sniff_link(&self.bytes, self.rec.orig_len),
            };
            self.rec.packet = Some(self.bytes);
        } else if self.dissected.is_some() {
            self.rec.headers = self.dissected;
        } else if self.expect && !self.saw_body {
            skips.add("missing_hex_dump");
        }
        out.push(Item::Record(self.rec));
    }
}

/// `xx drop (...) flow 0x.. to endpoint N, ifindex N, file F:L, [ [ ip-trace-id = N ]], identity A->B: summary`
fn parse_drop_info(rv: &Reverse, s: &str) -> Option<Record> {
    let mut r = s.strip_prefix("xx drop (")?;
    let reason = take(&mut r, ") flow ")?;
    let (subtype, ext_error) = rv.reason(reason)?;
    let hash = parse_hex_u32(take(&mut r, " to endpoint ")?)?;
    let dst_id = take(&mut r, ", ifindex ")?.parse().ok()?;
    let ifindex = take(&mut r, ", file ")?.parse().ok()?;
    let fl = take(&mut r, ", ")?;
    let (f, l) = fl.rsplit_once(':')?;
    let file = rv.file(f)?;
    let line = l.parse().ok()?;
    let mut ip_trace_id = 0;
    if let Some(rest) = r.strip_prefix(" [ ip-trace-id = ") {
        r = rest;
        ip_trace_id = take(&mut r, " ]")?.parse().ok()?;
    }
    lit(&mut r, ", identity ")?;
    let (src_label, dst_label) = parse_identity_pair(take(&mut r, ": ")?)?;
    let headers = parse_summary(r).ok()?;
    let d = DropNotify {
        msg_type: 1,
        subtype,
        hash,
        dst_id,
        ifindex,
        file,
        line,
        ext_error,
        ip_trace_id,
        src_label,
        dst_label,
        ..DropNotify::default()
    };
    let mut rec = new_record(Notification::Drop(d), None);
    rec.headers = headers;
    Some(rec)
}

/// `traceSummary()` -> (obs_point, dst_id, source).
fn parse_trace_summary(s: &str) -> Option<(u8, u16, u16)> {
    let num = |x: &str| x.parse::<u16>().ok();
    Some(match s {
        "-> proxy" => (1, 0, 0),
        "-> host from" => (2, 0, 0),
        "-> stack" => (3, 0, 0),
        "-> overlay" => (4, 0, 0),
        "-> network" => (11, 0, 0),
        "<- proxy" => (6, 0, 0),
        "<- host" => (7, 0, 0),
        "<- stack" => (8, 0, 0),
        "<- overlay" => (9, 0, 0),
        "<- network" => (10, 0, 0),
        "<- crypto" => (12, 0, 0),
        "-> crypto" => (13, 0, 0),
        "unknown trace" => (255, 0, 0),
        _ => {
            if let Some(n) = s.strip_prefix("-> endpoint ") {
                (0, num(n)?, 0)
            } else if let Some(n) = s.strip_prefix("-> proxy port ") {
                (1, num(n)?, 0)
            } else {
                (5, 0, num(s.strip_prefix("<- endpoint ")?)?)
            }
        }
    })
}

/// Sets `orig_ip` and the IPv6 flag from the printed original IP.
fn set_orig_ip(t: &mut TraceNotify, s: &str) -> Option<()> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => t.orig_ip[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            t.orig_ip = a.octets();
            t.flags |= 1;
        }
    }
    Some(())
}

/// `<summary> [encrypted ] flow 0x.. , identity A->B[ [ ip-trace-id = N ]] state S ifindex I orig-ip IP: summary`
fn parse_trace_info(s: &str) -> Option<Record> {
    let (head, mut r) = s.split_once(" flow 0x")?;
    let (head, enc) = match head.strip_suffix(" encrypted ") {
        Some(h) => (h, true),
        None => (head, false),
    };
    let (obs_point, dst_id, source) = parse_trace_summary(head)?;
    let hash = u32::from_str_radix(take(&mut r, " ")?, 16).ok()?;
    lit(&mut r, ", identity ")?;
    let ids = take(&mut r, " ")?;
    let (src_label, dst_label) = parse_identity_pair(ids)?;
    let mut ip_trace_id = 0;
    if let Some(rest) = r.strip_prefix("[ ip-trace-id = ") {
        r = rest;
        ip_trace_id = take(&mut r, " ] ")?.parse().ok()?;
    }
    lit(&mut r, "state ")?;
    let mut reason = parse_trace_reason(take(&mut r, " ifindex ")?)?;
    if enc {
        reason |= 0x80;
    }
    let ifx = take(&mut r, " orig-ip ")?;
    let orig = take(&mut r, ": ")?;
    let headers = parse_summary(r).ok()?;
    let mut t = TraceNotify {
        msg_type: 4,
        obs_point,
        source,
        hash,
        src_label,
        dst_label,
        dst_id,
        reason,
        ifindex: ifx.parse().unwrap_or(0),
        ip_trace_id,
        ..TraceNotify::default()
    };
    set_orig_ip(&mut t, orig)?;
    let mut rec = new_record(Notification::Trace(t), None);
    rec.headers = headers;
    Some(rec)
}

/// `Policy verdict log: flow 0x.. local EP ID N, remote ID X, proto N, dir, action A, auth: T, match M, summary`
fn parse_policy_verdict(s: &str) -> Option<Record> {
    let mut r = s.strip_prefix("Policy verdict log: flow ")?;
    let hash = parse_hex_u32(take(&mut r, " local EP ID ")?)?;
    let source = take(&mut r, ", remote ID ")?.parse().ok()?;
    let remote_label = parse_identity(take(&mut r, ", proto ")?)?;
    let proto = take(&mut r, ", ")?.parse().ok()?;
    let dir: u8 = match take(&mut r, ", action ")? {
        "ingress" => 1,
        "egress" => 2,
        _ => return None,
    };
    let (verdict, audited) = match take(&mut r, ", auth: ")? {
        "allow" => (0, false),
        "deny" => (-1, false),
        "redirect" => (1, false),
        "audit" => (0, true),
        _ => return None,
    };
    let auth_type = match take(&mut r, ", match ")? {
        "disabled" => 0,
        "spire" => 1,
        "test-always-fail" => 2,
        a => a.strip_prefix("Unknown-auth-type-")?.parse().ok()?,
    };
    let m = take(&mut r, ", ")?;
    let match_type = (0..=6u8).find(|c| policy_match_str(*c) == m).unwrap_or(0);
    let headers = parse_summary(r).ok()?;
    let p = PolicyVerdictNotify {
        msg_type: 5,
        source,
        hash,
        remote_label,
        verdict,
        proto,
        flags: dir | (match_type << 3) | if audited { 0x40 } else { 0 },
        auth_type,
        ..PolicyVerdictNotify::default()
    };
    let mut rec = new_record(Notification::PolicyVerdict(p), None);
    rec.headers = headers;
    Some(rec)
}

/// Debug capture INFO: `-> ifname: summary`, `<- load-balancer ifname: `, `== v4->v6 N: `,
/// `== v6->v4 N: `, `-> proxy port N: `.
fn parse_capture_info(s: &str) -> Option<Record> {
    let (prefix, summary) = s.split_once(": ")?;
    let (subtype, arg1) = if let Some(p) = prefix.strip_prefix("-> proxy port ") {
        (9, u32::from(p.parse::<u16>().ok()?.swap_bytes()))
    } else if let Some(i) = prefix.strip_prefix("<- load-balancer ") {
        (5, i.parse().unwrap_or(0))
    } else if let Some(n) = prefix.strip_prefix("== v4->v6 ") {
        (6, n.parse().ok()?)
    } else if let Some(n) = prefix.strip_prefix("== v6->v4 ") {
        (7, n.parse().ok()?)
    } else {
        let i = prefix.strip_prefix("-> ")?;
        if i.contains(' ') {
            return None;
        }
        (4, i.parse().unwrap_or(0))
    };
    let headers = parse_summary(summary).ok()?;
    let c = DebugCapture {
        msg_type: 3,
        subtype,
        arg1,
        ..DebugCapture::default()
    };
    let mut rec = new_record(Notification::DebugCapture(c), None);
    rec.headers = headers;
    Some(rec)
}

/// `CPU xx: MARK 0x.. ...` lines (verbose drop/trace/debug capture headers, debug messages).
fn parse_mark_line(rv: &Reverse, cpu: Option<u32>, s: &str) -> Option<Parsed> {
    let mut r = s.strip_prefix("MARK ")?;
    let hash_end = r.find(' ').unwrap_or(r.len());
    let hash = parse_hex_u32(r.get(..hash_end)?)?;
    r = r.get(hash_end..)?;
    let mut ip_trace_id = 0;
    if let Some(rest) = r.strip_prefix(" [ IP-TRACE-ID = ") {
        r = rest;
        ip_trace_id = take(&mut r, " ]")?.parse().ok()?;
    }
    lit(&mut r, " FROM ")?;
    let source: u16 = take(&mut r, " ")?.parse().ok()?;
    if let Some(mut r) = r.strip_prefix("DROP: ") {
        let orig_len = take(&mut r, " bytes, reason ")?.parse().ok()?;
        let mut dst_id = 0;
        if let Some((a, b)) = r.rsplit_once(", to endpoint ") {
            dst_id = b.parse().ok()?;
            r = a;
        }
        let (reason, ids) = match r.rsplit_once(", identity ") {
            Some((a, b)) => (a, Some(parse_identity_pair(b)?)),
            None => (r, None),
        };
        let (subtype, ext_error) = rv.reason(reason)?;
        let (src_label, dst_label) = ids.unwrap_or((0, 0));
        let d = DropNotify {
            msg_type: 1,
            subtype,
            source,
            hash,
            orig_len,
            src_label,
            dst_label,
            dst_id,
            ext_error,
            ..DropNotify::default()
        };
        let rec = new_record(Notification::Drop(d), cpu);
        return Some(Parsed::Verbose(Open::new(rec, None, true)));
    }
    if let Some(msg) = r.strip_prefix("DEBUG: ") {
        // A debug capture: `%d bytes, <message>` and maybe the dump glued on.
        if let Some((n, rest)) = msg.split_once(" bytes, ") {
            if let (Ok(cap), Some((subtype, arg1, tail))) =
                (n.parse::<u16>(), parse_capture_message(rest))
            {
                let c = DebugCapture {
                    msg_type: 3,
                    subtype,
                    source,
                    hash,
                    cap_len: cap,
                    arg1,
                    ..DebugCapture::default()
                };
                let rec = new_record(Notification::DebugCapture(c), cpu);
                let mut open = Open::new(rec, Some(u32::from(cap)), false);
                open.tail = Some(tail.to_string()).filter(|t| !t.is_empty());
                return Some(Parsed::Verbose(open));
            }
        }
        let mut d = DebugMsg {
            msg_type: 2,
            source,
            hash,
            ..DebugMsg::default()
        };
        parse_debug_message(msg, &mut d);
        return Some(Parsed::Record(new_record(Notification::Debug(d), cpu)));
    }
    // A verbose trace: `<obs>: N bytes (N captured), state S[, interface I][, , identity A->B], orig-ip IP[, to endpoint|proxy-port N]`
    let obs_point = parse_obs_point(take(&mut r, ": ")?)?;
    let orig_len = take(&mut r, " bytes (")?.parse().ok()?;
    let cap_len: u16 = take(&mut r, " captured), state ")?.parse().ok()?;
    let mut parts = r.split(", ");
    let reason = parse_trace_reason(parts.next()?)?;
    let mut t = TraceNotify {
        msg_type: 4,
        obs_point,
        source,
        hash,
        orig_len,
        cap_len,
        reason,
        ip_trace_id,
        ..TraceNotify::default()
    };
    let mut seen_orig = false;
    for p in parts {
        if let Some(i) = p.strip_prefix("interface ") {
            t.ifindex = i.parse().unwrap_or(0);
        } else if let Some(ids) = p.strip_prefix("identity ") {
            (t.src_label, t.dst_label) = parse_identity_pair(ids)?;
        } else if let Some(ip) = p.strip_prefix("orig-ip ") {
            set_orig_ip(&mut t, ip)?;
            seen_orig = true;
        } else if let Some(n) = p
            .strip_prefix("to endpoint ")
            .or_else(|| p.strip_prefix("to proxy-port "))
        {
            t.dst_id = n.parse().ok()?;
        } else if !p.is_empty() {
            return None;
        }
    }
    if !seen_orig {
        return None;
    }
    let rec = new_record(Notification::Trace(t), cpu);
    Some(Parsed::Verbose(Open::new(rec, Some(u32::from(cap_len)), false)))
}

/// `CPU xx: [xlate] cgroup_id: N sock_cookie: N, dst [IP]:PORT proto `
fn parse_trace_sock(cpu: Option<u32>, s: &str) -> Option<Record> {
    let mut r = s.strip_prefix('[')?;
    let xp = take(&mut r, "] cgroup_id: ")?;
    let xlate_point = [
        "unknown",
        "pre-xlate-fwd",
        "post-xlate-fwd",
        "pre-xlate-rev",
        "post-xlate-rev",
    ]
    .iter()
    .position(|x| *x == xp)?;
    let cgroup_id = take(&mut r, " sock_cookie: ")?.parse().ok()?;
    let sock_cookie = take(&mut r, ", dst [")?.parse().ok()?;
    let ip: IpAddr = take(&mut r, "]:")?.parse().ok()?;
    let dst_port = take(&mut r, " ")?.parse().ok()?;
    let l4_proto = match r.trim_end() {
        "tcp" => 1,
        "udp" => 2,
        "unknown" => 0,
        _ => return None,
    };
    let mut t = TraceSockNotify {
        msg_type: 7,
        xlate_point: u8::try_from(xlate_point).ok()?,
        l4_proto,
        dst_port,
        sock_cookie,
        cgroup_id,
        ..TraceSockNotify::default()
    };
    match ip {
        IpAddr::V4(a) => t.dst_ip[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            t.dst_ip = a.octets();
            t.flags = 1;
        }
    }
    Some(new_record(Notification::TraceSock(t), cpu))
}

/// `CPU xx: Unknown event: [1 2 3]`: the raw sample, decoded.
fn parse_unknown_event(cpu: Option<u32>, s: &str) -> Option<Record> {
    let list = s.strip_prefix("Unknown event: [")?.strip_suffix(']')?;
    let bytes: Vec<u8> = list
        .split(' ')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let d = decode(&bytes, &DecodeOptions::default()).ok()?;
    let mut rec = new_record(d.notification, cpu);
    if !d.packet.is_empty() {
        let l3 = match &d.notification {
            Notification::Drop(x) => x.is_l3_device(),
            Notification::Trace(x) => x.is_l3_device(),
            Notification::PolicyVerdict(x) => x.is_l3(),
            _ => false,
        };
        rec.link = if l3 {
            LinkType::RawIp
        } else {
            LinkType::Ethernet
        };
        rec.packet = Some(d.packet.to_vec());
    }
    Some(rec)
}

/// `CPU %02d: Lost %d events`.
pub(crate) fn parse_lost(s: &str) -> Option<Notice> {
    let (cpu, r) = strip_cpu(s)?;
    let n = r.strip_prefix("Lost ")?.strip_suffix(" events")?;
    Some(Notice::Lost {
        cpu: i64::from(cpu?),
        count: n.parse().ok()?,
    })
}

/// `Unknown payload type: %d, CPU %02d: Lost %d events`.
pub(crate) fn parse_unknown_payload(s: &str) -> Option<Notice> {
    let mut r = s.strip_prefix("Unknown payload type: ")?;
    let typ = take(&mut r, ", ")?.parse().ok()?;
    let (cpu, r) = strip_cpu(r)?;
    r.strip_prefix("Lost ")?
        .strip_suffix(" events")?
        .parse::<u64>()
        .ok()?;
    Some(Notice::Unknown {
        typ,
        cpu: i64::from(cpu?),
    })
}

/// Agent notification name (`Policy updated`) or decimal -> type.
pub(crate) fn parse_agent_kind(s: &str) -> Option<u32> {
    AGENT_NOTIFICATIONS
        .iter()
        .position(|n| *n == s)
        .and_then(|i| u32::try_from(i).ok())
        .or_else(|| s.parse().ok())
}

/// `>> <name>: <text>`.
fn parse_agent(s: &str) -> Option<Notice> {
    let r = s.strip_prefix(">> ")?;
    let (name, text) = r.split_once(": ")?;
    Some(Notice::Agent {
        kind: parse_agent_kind(name)?,
        text: text.to_string(),
    })
}

/// What a line that is not part of an open record is.
enum Kind {
    Blank,
    Separator,
    Banner,
    Prompt,
    Hex,
    /// Starts like a record or notice: try to parse it (maybe joined with the next line).
    Candidate,
    Other,
}

fn classify(s: &str) -> Kind {
    let t = s.trim();
    if t.is_empty() {
        return Kind::Blank;
    }
    if t.len() >= 10 && t.bytes().all(|b| b == b'-') {
        return Kind::Separator;
    }
    if looks_like_hex_line(s) {
        return Kind::Hex;
    }
    if t.starts_with("Listening for events on ")
        || t.starts_with("Press Ctrl-C to quit")
        || t.starts_with("level=")
        || t.starts_with("time=")
        || t.starts_with("Defaulted container")
        || t.starts_with("Unable to ")
    {
        return Kind::Banner;
    }
    if t.starts_with("$ ")
        || t == "$"
        || t.starts_with("# ")
        || t.starts_with("> ")
        || t.starts_with("kubectl ")
        || t.contains("cilium monitor")
        || t.contains("cilium-dbg monitor")
        || (t.contains('@') && (t.contains("$ ") || t.contains("# ")))
    {
        return Kind::Prompt;
    }
    if s.starts_with("xx drop (")
        || s.starts_with("Policy verdict log: ")
        || s.starts_with("CPU ")
        || s.starts_with("-> ")
        || s.starts_with("<- ")
        || s.starts_with("== v")
        || s.starts_with(">> ")
        || s.starts_with("unknown trace flow ")
        || s.starts_with("Unknown payload type: ")
        || s.starts_with("cannot decode message type ")
    {
        return Kind::Candidate;
    }
    Kind::Other
}

fn parse_candidate(rv: &Reverse, s: &str) -> Option<Parsed> {
    let s = s.trim_end();
    if s.starts_with("xx drop (") {
        return parse_drop_info(rv, s).map(Parsed::Record);
    }
    if s.starts_with("Policy verdict log: ") {
        return parse_policy_verdict(s).map(Parsed::Record);
    }
    if s.starts_with(">> ") {
        return parse_agent(s).map(Parsed::Notice);
    }
    if s.starts_with("Unknown payload type: ") {
        return parse_unknown_payload(s).map(Parsed::Notice);
    }
    if s.starts_with("cannot decode message type ") {
        return Some(Parsed::Skip("decode_error"));
    }
    if let Some((cpu, r)) = strip_cpu(s) {
        if r.starts_with("MARK ") {
            return parse_mark_line(rv, cpu, r);
        }
        if r.starts_with('[') {
            return parse_trace_sock(cpu, r).map(Parsed::Record);
        }
        if r.starts_with("Unknown event: ") {
            return parse_unknown_event(cpu, r).map(Parsed::Record);
        }
        return parse_lost(s).map(Parsed::Notice);
    }
    if s.contains(" flow 0x") {
        return parse_trace_info(s).map(Parsed::Record);
    }
    parse_capture_info(s).map(Parsed::Record)
}

/// Drop IP-TRACE-ID line of `-vv` (` [ IP-TRACE-ID=N` then maybe the dump or dissection
/// glued on). Returns (id, glued tail).
fn parse_drop_trace_id(s: &str) -> Option<(u64, &str)> {
    let r = s.strip_prefix(" [ IP-TRACE-ID=")?;
    let n = r.bytes().take_while(u8::is_ascii_digit).count();
    let digits = r.get(..n)?;
    let rest = r.get(n..)?;
    if rest.is_empty() {
        return Some((digits.parse().ok()?, ""));
    }
    // A glued hex dump: the digits end with the dump's `00000000` offset.
    if n > 8 && digits.ends_with("00000000") && rest.starts_with("  ") {
        let cut = n - 8;
        let tail = r.get(cut..)?;
        if parse_hex_line(tail).is_some_and(|h| h.n > 0) {
            return Some((digits.get(..cut)?.parse().ok()?, tail));
        }
    }
    Some((digits.parse().ok()?, rest))
}

// ---------------------------------------------------------------------------------------------
// The parser

/// `cilium monitor` text (INFO, `-v`, `-vv`, `--hex`) -> records and notices.
pub struct MonitorTextParser {
    rv: Reverse,
    /// A record line held until the next line (it may have been wrapped).
    pending: Option<String>,
    /// A `-vv` record collecting its dump.
    open: Option<Open>,
}

impl MonitorTextParser {
    pub fn new(release: CiliumRelease) -> Self {
        MonitorTextParser {
            rv: Reverse::new(release),
            pending: None,
            open: None,
        }
    }

    fn close_open(&mut self, out: &mut Vec<Item>, skips: &mut Skips) {
        if let Some(o) = self.open.take() {
            o.finish(out, skips);
        }
    }

    /// Acts on a parsed candidate; false when it did not parse.
    fn accept(&mut self, text: &str, out: &mut Vec<Item>, skips: &mut Skips) -> bool {
        match parse_candidate(&self.rv, text) {
            Some(Parsed::Record(r)) => out.push(Item::Record(r)),
            Some(Parsed::Notice(n)) => out.push(Item::Notice(n)),
            Some(Parsed::Skip(k)) => skips.add(k),
            Some(Parsed::Verbose(mut o)) => {
                if let Some(t) = o.tail.take() {
                    if !o.body_line(&t, skips) {
                        skips.add("bad_hex_dump");
                        o.broken = true;
                    }
                }
                self.open = Some(o);
            }
            None => return false,
        }
        true
    }

    fn flush_pending(&mut self, out: &mut Vec<Item>, skips: &mut Skips) {
        if let Some(p) = self.pending.take() {
            if !self.accept(&p, out, skips) {
                skips.add("cut_record");
            }
        }
    }
}

impl LineParser for MonitorTextParser {
    fn line(&mut self, line: &str, out: &mut Vec<Item>, skips: &mut Skips) {
        if let Some(p) = self.pending.take() {
            let kind = classify(line);
            if matches!(kind, Kind::Other | Kind::Candidate) {
                // Maybe a wrapped line: join when the halves do not stand alone (a debug
                // message is free text and parses whatever follows, so it is only joined when
                // it does not parse alone).
                let second_ok = matches!(kind, Kind::Candidate)
                    && parse_candidate(&self.rv, line).is_some();
                let first_ok = parse_candidate(&self.rv, &p).is_some();
                let free_text = is_free_text(&p);
                if !second_ok && (!first_ok || !free_text) {
                    for joined in [format!("{p}{line}"), format!("{p} {line}")] {
                        if parse_candidate(&self.rv, &joined).is_some() {
                            self.accept(&joined, out, skips);
                            return;
                        }
                    }
                }
            }
            if !self.accept(&p, out, skips) {
                skips.add("cut_record");
            }
        }
        // A -vv record takes its body lines.
        if let Some(o) = self.open.as_mut() {
            if let Some((id, tail)) = parse_drop_trace_id(line) {
                if let Cause::Cilium(Notification::Drop(d)) = &mut o.rec.cause {
                    if d.ip_trace_id == 0 && !o.saw_body {
                        d.ip_trace_id = id;
                        if !tail.is_empty() && !o.body_line(tail, skips) {
                            skips.add("bad_hex_dump");
                            o.broken = true;
                        }
                        return;
                    }
                }
            }
            if o.body_line(line, skips) {
                return;
            }
            self.close_open(out, skips);
        }
        match classify(line) {
            Kind::Blank => skips.add("blank"),
            Kind::Separator => {}
            Kind::Banner => skips.add("banner"),
            Kind::Prompt => skips.add("prompt"),
            Kind::Hex => skips.add("cut_record"),
            Kind::Candidate => self.pending = Some(line.to_string()),
            Kind::Other => skips.add("not_a_record"),
        }
    }

    fn finish(&mut self, out: &mut Vec<Item>, skips: &mut Skips) {
        self.flush_pending(out, skips);
        self.close_open(out, skips);
    }
}

/// A debug message line (its text is free, it parses with anything appended).
fn is_free_text(s: &str) -> bool {
    strip_cpu(s).is_some_and(|(_, r)| {
        r.starts_with("MARK ")
            && r.split_once(" DEBUG: ")
                .is_some_and(|(_, m)| !m.split_once(" bytes, ").is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
    })
}

/// Content sniffing: do the first non-empty lines look like `cilium monitor` text?
pub fn looks_like_monitor_text(lines: &[&str]) -> bool {
    let rv = Reverse::new(CiliumRelease::Main);
    let mut seen = 0;
    let mut good = 0;
    for l in lines.iter().map(|l| super::clean_line(l)) {
        let l = l.as_ref();
        if l.trim().is_empty() {
            continue;
        }
        seen += 1;
        if seen > 20 {
            break;
        }
        let hit = match classify(l) {
            Kind::Separator | Kind::Hex => true,
            Kind::Banner => l.trim_start().starts_with("Listening for events on "),
            Kind::Candidate => parse_candidate(&rv, l).is_some(),
            _ => false,
        };
        if hit {
            good += 1;
        }
    }
    good > 0 && good * 2 >= seen.min(20)
}

#[cfg(test)]
mod tests {
}
