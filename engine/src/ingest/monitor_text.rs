//! `cilium monitor` / `cilium-dbg monitor` text, at every verbosity: the inverse of
//! [`crate::cilium::format::Formatter`] (and of Go's `pkg/monitor/datapath_*.go`,
//! docs/cilium-formats.md §12).
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

use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use super::{FlowHeaders, Item, LineParser, Names, Record, Skips};
use crate::cilium::format::write_debug_message;
use crate::cilium::notify::{
    decode, DebugCapture, DebugMsg, DecodeOptions, DropNotify, Notification, PolicyVerdictNotify,
    TraceNotify, TraceSockNotify,
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
    #[allow(dead_code)]
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
        let (a, b) = rsplit(s, ", ")?;
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
    // A number (the common case) is no reserved name: no need to compare it with each.
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return s.parse().ok();
    }
    if let Some(i) = RESERVED_IDENTITIES.iter().position(|n| *n == s) {
        return u32::try_from(i).ok();
    }
    s.parse().ok()
}

/// `A->B`.
pub(crate) fn parse_identity_pair(s: &str) -> Option<(u32, u32)> {
    let i = find(s, "->")?;
    Some((
        parse_identity(s.get(..i)?)?,
        parse_identity(s.get(i + 2..)?)?,
    ))
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
    let map = icmp_names().get(usize::from(v6))?;
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
        && s.split(':')
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
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
    let colon = memchr::memchr(b':', r.as_bytes())?;
    let (n, rest) = (r.get(..colon)?, r.get(colon + 1..)?);
    let cpu = if n == "--" {
        None
    } else {
        Some(n.parse().ok()?)
    };
    Some((cpu, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// Takes the text before `pat` and advances past it.
fn take<'a>(s: &mut &'a str, pat: &str) -> Option<&'a str> {
    let i = find(s, pat)?;
    let (a, b) = (s.get(..i)?, s.get(i + pat.len()..)?);
    *s = b;
    Some(a)
}

/// Where `pat` first occurs in `s`: its first byte found by memchr, then compared. For the
/// short patterns of these lines this beats `str::find`, whose searcher is built per call.
fn find(s: &str, pat: &str) -> Option<usize> {
    let (h, p) = (s.as_bytes(), pat.as_bytes());
    let (&first, _) = p.split_first()?;
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, h.get(from..)?) {
        let at = from + i;
        if h.get(at..at + p.len())? == p {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `s.rsplit_once(pat)`, found as [`find`] finds (the last `pat`'s first byte by memrchr, then
/// compared): `str::rsplit_once` builds a two-way searcher per call.
fn rsplit<'a>(s: &'a str, pat: &str) -> Option<(&'a str, &'a str)> {
    let (h, p) = (s.as_bytes(), pat.as_bytes());
    let (&first, _) = p.split_first()?;
    let mut end = h.len();
    while let Some(at) = memchr::memrchr(first, h.get(..end)?) {
        if h.get(at..at + p.len()) == Some(p) {
            return Some((s.get(..at)?, s.get(at + p.len()..)?));
        }
        end = at;
    }
    None
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
            let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
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
        out.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
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
        let num = |s: &str| {
            s.split(' ')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0)
        };
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
        let (digits, _) = split_glued_digits(r)?;
        Some((digits.parse().ok()?, digits.len()))
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
pub(crate) fn apply_layer_line(line: &str, h: &mut FlowHeaders) -> bool {
    let line = line.trim_start();
    // Every layer name starts with a capital letter (a separator or hex line does not).
    if !line.as_bytes().first().is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let Some((layer, body)) = line.split_once(['\t', ' ']) else {
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
        Some(4) => p.first().is_some_and(|b| b & 0x0f >= 5) && be16(2) == Some(orig_len),
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
        meta: None,
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
    b.get(..8)
        .is_some_and(|d| d.iter().all(|c| hex_val(*c).is_some()))
        && b.get(8..10) == Some(b"  ")
}

/// Eight bytes of a full hex line from `at`, as a little-endian word: one load.
#[inline(always)]
fn word_at(b: &[u8; 78], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map_or(0, u64::from_le_bytes)
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// Per byte of `w`: 0x80 where the byte is a hex digit (`0-9a-fA-F`), else 0. Range tests
/// on the low seven bits (an add cannot carry out of a byte below 0x80), ASCII only.
#[inline(always)]
fn hex_digits_in(w: u64) -> u64 {
    let x = w & !HIGH;
    // High bit of `x + (0x80 - lo)`: x >= lo; of `x + (0x7f - hi)`: x > hi.
    let within = |x: u64, lo: u64, hi: u64| {
        x.wrapping_add((0x80 - lo) * ONES) & !x.wrapping_add((0x7f - hi) * ONES) & HIGH
    };
    // `| 0x20` folds A-F onto a-f; only those two ranges land in 0x61..=0x66.
    (within(x, 0x30, 0x39) | within(x | (0x20 * ONES), 0x61, 0x66)) & !w & HIGH
}

/// Per byte of `w`: its value as a hex digit (meaningful where [`hex_digits_in`] says so).
/// Letters have bit 6 set and their low nibble 1..6: nine more gives 10..15.
#[inline(always)]
fn hex_nibbles(w: u64) -> u64 {
    (w & (0x0f * ONES)) + ((w >> 6) & ONES) * 9
}

/// Byte masks of the digit places of a hex line's group of eight `hh ` slots, as three
/// words (the byte at place p of the group is byte p % 8 of word p / 8): "hh hh hh" |
/// " hh hh h" | "h hh hh ", the pattern repeating every three bytes.
const GROUP_DIGITS: [u64; 3] = [
    0xffff_00ff_ff00_ffff,
    0xff00_ffff_00ff_ff00,
    0x00ff_ff00_ffff_00ff,
];

/// The eight bytes of a group from its three words of digit values (`hex_nibbles`; each
/// below 16 where the digits are valid, and the bytes are only used then), as a word:
/// byte i is digit 3i (high nibble) and digit 3i + 1 (low). Within a word,
/// `(n << 4) | (n >> 8)` puts each digit's value next to its successor's in one byte; the
/// one pair that spans two words (digits 15 and 16) is put together alone.
#[inline(always)]
fn group_bytes([n0, n1, n2]: [u64; 3]) -> u64 {
    let pairs = |n: u64| (n << 4) | (n >> 8);
    let (q0, q1, q2) = (pairs(n0), pairs(n1), pairs(n2));
    let byte = |q: u64, k: u32| (q >> (8 * k)) & 0xff;
    let spanning = ((n1 >> 52) & 0xf0) | (n2 & 0x0f);
    byte(q0, 0)
        | byte(q0, 3) << 8
        | byte(q0, 6) << 16
        | byte(q1, 1) << 24
        | byte(q1, 4) << 32
        | spanning << 40
        | byte(q2, 2) << 48
        | byte(q2, 5) << 56
}

/// A full 16-byte `hex.Dump` line (78 characters), decoded eight bytes at a time; `None`
/// when the line is anything else (then the general parser decides). The digits of each
/// group of eight bytes (three words of "hh hh …") are tested and valued per word, the
/// separators compared per word, and the ASCII column against the bytes per word.
fn parse_full_hex_line(b: &[u8]) -> Option<HexLine> {
    let b: &[u8; 78] = b.try_into().ok()?;
    const SPACES: u64 = 0x20 * ONES;
    // Offset: eight digits, then two spaces.
    let ow = word_at(b, 0);
    let mut bad = !hex_digits_in(ow) & HIGH;
    let on = hex_nibbles(ow).to_le_bytes();
    let offset = on
        .iter()
        .fold(0usize, |o, n| (o << 4) | usize::from(*n & 0x0f));
    // Groups at 10 and 35 (byte 34, the space between them, is not looked at): each one
    // word of eight bytes.
    let mut seps = 0u64;
    let mut values = [0u64; 2];
    for (base, out) in [10usize, 35].into_iter().zip(values.iter_mut()) {
        let mut n = [0u64; 3];
        for ((k, mask), n) in GROUP_DIGITS.iter().enumerate().zip(n.iter_mut()) {
            let w = word_at(b, base + 8 * k);
            bad |= !hex_digits_in(w) & HIGH & mask;
            seps |= (w ^ SPACES) & !mask;
            *n = hex_nibbles(w);
        }
        *out = group_bytes(n);
    }
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let frame =
        (at(8) ^ b' ') | (at(9) ^ b' ') | (at(59) ^ b' ') | (at(60) ^ b'|') | (at(77) ^ b'|');
    if bad != 0 || seps != 0 || frame != 0 {
        return None;
    }
    // The ASCII column: printable bytes (0x20..=0x7e) as themselves, others as '.'.
    let mut shown_diff = 0u64;
    for (v, col) in values.into_iter().zip([61usize, 69]) {
        let x = v & !HIGH;
        let printable = x.wrapping_add(0x60 * ONES) & !x.wrapping_add(ONES) & !v & HIGH;
        let keep = (printable >> 7) * 0xff;
        let shown = (v & keep) | ((u64::from(b'.') * ONES) & !keep);
        shown_diff |= shown ^ word_at(b, col);
    }
    let mut bytes = [0u8; 16];
    let (lo, hi) = bytes.split_at_mut(8);
    lo.copy_from_slice(&values[0].to_le_bytes());
    hi.copy_from_slice(&values[1].to_le_bytes());
    Some(HexLine {
        offset,
        bytes,
        n: 16,
        complete: shown_diff == 0,
    })
}

fn parse_hex_line(s: &str) -> Option<HexLine> {
    if let Some(h) = parse_full_hex_line(s.as_bytes()) {
        return Some(h);
    }
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
                    if let Some(slot) = out.bytes.get_mut(i) {
                        *slot = (h << 4) | l;
                    }
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
    /// Boxed: an open record is the largest thing a parser keeps, and a box moves it once.
    Verbose(Box<Open>),
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
        // The stated length, as far as a dump of it is likely: one allocation, not a doubling
        // per line.
        let want = cap.unwrap_or(rec.orig_len).min(2048) as usize;
        Open {
            rec,
            cap,
            expect,
            is_drop,
            bytes: Vec::with_capacity(if expect { want } else { 0 }),
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
                    if h.n == h.bytes.len() {
                        // A whole line: a copy of known length, inlined (no memcpy call).
                        self.bytes.extend_from_slice(&h.bytes);
                    } else {
                        self.bytes
                            .extend_from_slice(h.bytes.get(..h.n).unwrap_or(&[]));
                    }
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

    fn finish(mut self: Box<Self>, out: &mut Vec<Item>, skips: &mut Skips) {
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
    let (ids, pods) = split_pods(take(&mut r, ": ")?);
    let (src_label, dst_label) = parse_identity_pair(ids)?;
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
    rec.meta = pods.map(crate::event::EventMeta::with_names);
    Some(rec)
}

/// `A->B pod NS/NAME pods NS/SRC->NS/DST` (the pods dropscope adds to a drop's line, each
/// part optional) -> (`A->B`, the source and destination pods).
fn split_pods(s: &str) -> (&str, Option<Names>) {
    let Some((ids, _)) = s.split_once(" pod") else {
        return (s, None);
    };
    let tail = &s[ids.len()..];
    let Some(i) = tail.find(" pods ") else {
        return (ids, None);
    };
    let Some((src, dst)) = tail[i + 6..].split_once("->") else {
        return (ids, None);
    };
    let side = |p: &str| -> (Option<std::sync::Arc<str>>, Option<std::sync::Arc<str>>) {
        match p.split_once('/') {
            _ if p == "-" || p.is_empty() => (None, None),
            Some((ns, name)) => (Some(ns.into()), Some(name.into())),
            None => (None, Some(p.into())),
        }
    };
    let (src_namespace, src_pod) = side(src.trim());
    let (dst_namespace, dst_pod) = side(dst.trim());
    let names = Names {
        src_pod,
        src_namespace,
        dst_pod,
        dst_namespace,
        ..Names::default()
    };
    (ids, Some(names))
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
        if let Some((a, b)) = rsplit(r, ", to endpoint ") {
            dst_id = b.parse().ok()?;
            r = a;
        }
        let (reason, ids) = match rsplit(r, ", identity ") {
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
        return Some(Parsed::Verbose(Box::new(Open::new(rec, None, true))));
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
                let mut open = Box::new(Open::new(rec, Some(u32::from(cap)), false));
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
    Some(Parsed::Verbose(Box::new(Open::new(
        rec,
        Some(u32::from(cap_len)),
        false,
    ))))
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

/// How the lines of records begin (the formats of docs/cilium-formats.md §12).
const RECORD_PREFIXES: [&str; 10] = [
    "xx drop (",
    "Policy verdict log: ",
    "CPU ",
    "-> ",
    "<- ",
    "== v",
    ">> ",
    "unknown trace flow ",
    "Unknown payload type: ",
    "cannot decode message type ",
];

/// Lines `cilium monitor` and kubectl print around the records.
const BANNER_PREFIXES: [&str; 6] = [
    "Listening for events on ",
    "Press Ctrl-C to quit",
    "level=",
    "time=",
    "Defaulted container",
    "Unable to ",
];

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
    // Record lines before the prompt checks: those search the whole line.
    if RECORD_PREFIXES.iter().any(|p| s.starts_with(p)) {
        return Kind::Candidate;
    }
    if BANNER_PREFIXES.iter().any(|p| t.starts_with(p)) {
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

/// Leading decimal digits of `r`, and the rest; when a hex dump's first line (`00000000  `)
/// is glued onto the number (Go's missing newlines), its offset is not part of the number.
fn split_glued_digits(r: &str) -> Option<(&str, &str)> {
    let n = r.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = (r.get(..n)?, r.get(n..)?);
    if n > 8 && digits.ends_with("00000000") && rest.starts_with("  ") {
        let cut = n - 8;
        let tail = r.get(cut..)?;
        if parse_hex_line(tail).is_some_and(|h| h.n > 0) {
            return Some((digits.get(..cut)?, tail));
        }
    }
    if n == 0 {
        return None;
    }
    Some((digits, rest))
}

/// Drop IP-TRACE-ID line of `-vv` (` [ IP-TRACE-ID=N` then maybe the dump or dissection
/// glued on). Returns (id, glued tail).
fn parse_drop_trace_id(s: &str) -> Option<(u64, &str)> {
    let r = s.strip_prefix(" [ IP-TRACE-ID=")?;
    let (digits, tail) = split_glued_digits(r)?;
    Some((digits.parse().ok()?, tail))
}

// ---------------------------------------------------------------------------------------------
// The parser

/// `cilium monitor` text (INFO, `-v`, `-vv`, `--hex`) -> records and notices.
pub struct MonitorTextParser {
    rv: Reverse,
    /// A record line held until the next line (it may have been wrapped).
    pending: Option<String>,
    /// The buffer of the last pending line, for the next one: a header line per record.
    spare: String,
    /// A `-vv` record collecting its dump.
    open: Option<Box<Open>>,
}

impl MonitorTextParser {
    pub fn new(release: CiliumRelease) -> Self {
        MonitorTextParser {
            rv: Reverse::new(release),
            pending: None,
            spare: String::new(),
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
            self.spare = p;
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
                let second_ok =
                    matches!(kind, Kind::Candidate) && parse_candidate(&self.rv, line).is_some();
                let try_join =
                    !second_ok && (!is_free_text(&p) || parse_candidate(&self.rv, &p).is_none());
                if try_join {
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
            self.spare = p;
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
            Kind::Candidate => {
                let mut p = std::mem::take(&mut self.spare);
                p.clear();
                p.push_str(line);
                self.pending = Some(p);
            }
            Kind::Other => skips.add("not_a_record"),
        }
    }

    fn finish(&mut self, out: &mut Vec<Item>, skips: &mut Skips) {
        self.flush_pending(out, skips);
        self.close_open(out, skips);
    }

    fn is_idle(&self) -> bool {
        self.pending.is_none() && self.open.is_none()
    }
}

/// A debug message line (its text is free, it parses with anything appended).
fn is_free_text(s: &str) -> bool {
    strip_cpu(s).is_some_and(|(_, r)| {
        r.starts_with("MARK ")
            && r.split_once(" DEBUG: ").is_some_and(|(_, m)| {
                m.split_once(" bytes, ")
                    .is_none_or(|(n, _)| n.parse::<u32>().is_err())
            })
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
            Kind::Banner => {
                let t = l.trim_start();
                t.starts_with("Listening for events on ") || t.starts_with("Press Ctrl-C")
            }
            Kind::Prompt => l.contains("cilium monitor") || l.contains("cilium-dbg monitor"),
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
pub(crate) mod tests {
    use super::*;
    use crate::cilium::format::{Formatter, Verbosity, MSG_SEPARATOR};
    use crate::ingest::clean_line;
    use crate::testutil::hex;

    pub(crate) const TCP_SYN: &str = "0233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000500220007dc40000";
    pub(crate) const REC_6_1: &str = "04070000077c1a39420000004200000001000000000000000000810000000000f68db22d21d9f68db22d21d9080045000034ea1c400040067831c0a83c0b0a10ecb2192bd3ce2aefd21cb498816780100198d89c00000101080a005ab062005ab0610000";
    pub(crate) const REC_6_2: &str = "0405a80b5f16f2b85600000056000000680000000000000000000000000000003333ff00b3e5129106e2221a86dd6000000000203affff0200000000000000000001ff00b3e5f00d0000000000000a100000000091958700507500000000f00d0000000000000a1000000000b3e50101129106e2221a000000000000";
    pub(crate) const VXLAN_6_3: &str = "04070000077c1a3942000000420000000000000000000000000001040000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a801022118270f004690870c000003000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f90000000000000000050022000887f0000";
    pub(crate) const PV_FWD: &str =
        "05000c000000000000000000000000002e1600000000000000000012000000000000000000000000";
    pub(crate) const PV_DROP: &str =
        "050000000000000000000000000000002e16000069ffffff00000001000000000000000000000000";
    pub(crate) const DBG: [&str; 4] = [
        "0201000000000000010000000200000003000000",
        "023ad204a63b082a0a0b00e90200000000000000",
        "020bd2048456d59d810000000000000000000000",
        "02001027785634120a000000140000001e000000",
    ];
    pub(crate) const CAP_DELIVERY: &str = "030400000000000000000000000000000100000000000000";
    pub(crate) const CAP_PROXY: &str = "03090000000000000000000000000000000004d200000000";
    pub(crate) const SOCK: &str =
        "07010200901f0000eeffc0000000000000000000000000000a0a0a0a000000000000000000000000";

    /// A v3 drop (Policy denied, bpf_lxc.c:1234, ifindex 5, identity 12345->world, dst_id
    /// 77, source 321, ip trace id) with the 54-byte TCP SYN and 2 padding bytes.
    pub(crate) fn drop_record(ip_trace_id: u64, dst_id: u32) -> Vec<u8> {
        let pkt = hex(TCP_SYN);
        let mut b = vec![0u8; 48];
        b[0] = 1;
        b[1] = 133;
        b[2..4].copy_from_slice(&321u16.to_le_bytes());
        b[4..8].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        b[8..12].copy_from_slice(&60u32.to_le_bytes());
        b[12..14].copy_from_slice(&(pkt.len() as u16).to_le_bytes());
        b[14] = 3;
        b[16..20].copy_from_slice(&12345u32.to_le_bytes());
        b[20..24].copy_from_slice(&2u32.to_le_bytes());
        b[24..28].copy_from_slice(&dst_id.to_le_bytes());
        b[28..30].copy_from_slice(&1234u16.to_le_bytes());
        b[30] = 2;
        b[31] = (-17i8) as u8;
        b[32..36].copy_from_slice(&5u32.to_le_bytes());
        b[40..48].copy_from_slice(&ip_trace_id.to_le_bytes());
        b.extend_from_slice(&pkt);
        b.extend_from_slice(&[0xde, 0xad]);
        b
    }

    pub(crate) fn render(f: &Formatter, cpu: Option<u32>, rec: &[u8]) -> String {
        let d = decode(rec, &DecodeOptions::default()).unwrap();
        let mut s = String::new();
        f.write_line(&mut s, cpu, &d.notification, d.packet);
        s
    }

    pub(crate) fn parse_all(text: &str) -> (Vec<Item>, Skips) {
        crate::ingest::parse_all_with(&mut MonitorTextParser::new(CiliumRelease::Main), text)
    }

    fn one(text: &str) -> Record {
        let (items, skips) = parse_all(text);
        assert_eq!(skips.total(), 0, "{text:?} -> {skips:?}");
        assert_eq!(items.len(), 1, "{text:?} -> {items:?}");
        match items.into_iter().next().unwrap() {
            Item::Record(r) => r,
            i => panic!("{i:?}"),
        }
    }

    fn vf(v: Verbosity) -> Formatter {
        Formatter::new(CiliumRelease::Main, v)
    }

    fn syn_headers() -> FlowHeaders {
        FlowHeaders {
            src: Some("1.2.3.4".parse().unwrap()),
            dst: Some("5.6.7.8".parse().unwrap()),
            proto: 6,
            sport: 80,
            dport: 443,
            icmp: None,
            tcp_flags: Some(0x02),
        }
    }

    /// dropscope's own drop lines carry the pods (after the identities); the reader takes
    /// the line back whole, with the source and destination pods as names.
    #[test]
    fn drop_lines_with_pods_round_trip() {
        use crate::pods::{Pod, PodNames, Snapshot};
        use std::sync::Arc;
        let rec = drop_record(0, 77);
        let d = decode(&rec, &DecodeOptions::default()).unwrap();
        let e = crate::event::Event {
            ts_ns: 0,
            ifindex: 5,
            netns: 0,
            cpu: 3,
            orig_len: 60,
            link: LinkType::Ethernet,
            data: bytes::Bytes::copy_from_slice(d.packet),
            cause: Cause::Cilium(d.notification),
            meta: None,
        };
        let pod = |ns: &str, name: &str| {
            Arc::new(Pod {
                namespace: Some(ns.into()),
                name: name.into(),
                ..Pod::default()
            })
        };
        let mut snap = Snapshot::default();
        snap.by_ifindex.insert(5, pod("shop", "web-0"));
        snap.by_ip
            .insert("5.6.7.8".parse().unwrap(), pod("shop", "db-0"));
        let mut names = crate::lookup::Names::load(true);
        names.pods = Some(PodNames::fixed(snap, 1));
        let s = crate::packet::summarize(&e.data, e.link, Default::default());
        let mut r = crate::render::Renderer::new(&names);
        let mut line = String::new();
        r.text_line(&mut line, &e, &s);
        let plain = render(&vf(Verbosity::Info), Some(3), &rec);
        let plain = plain.trim_end();
        let (head, tail) = plain.split_once("12345->world: ").unwrap();
        assert_eq!(
            line,
            format!("{head}12345->world pod shop/web-0 pods -->shop/db-0: {tail}")
        );
        let back = one(&line);
        let mut want = one(plain);
        assert_eq!(back.cause, want.cause);
        want.meta = Some(crate::event::EventMeta::with_names(Names {
            dst_namespace: Some("shop".into()),
            dst_pod: Some("db-0".into()),
            ..Names::default()
        }));
        assert_eq!(back, want);
        // Traces keep cilium monitor's format exactly.
        let mut t = e.clone();
        let raw = hex(REC_6_1);
        let trace = decode(&raw, &DecodeOptions::default()).unwrap();
        t.cause = Cause::Cilium(trace.notification);
        let mut tl = String::new();
        r.text_line(&mut tl, &t, &s);
        assert!(!tl.contains(" pod"), "{tl}");
    }

    #[test]
    fn drop_round_trip_info_debug_verbose() {
        for v in [Verbosity::Info, Verbosity::Debug] {
            for tid in [0u64, 7] {
                let text = render(&vf(v), Some(3), &drop_record(tid, 77));
                let r = one(&text);
                let want = DropNotify {
                    msg_type: 1,
                    subtype: 133,
                    hash: 0x1234_abcd,
                    src_label: 12345,
                    dst_label: 2,
                    dst_id: 77,
                    line: 1234,
                    file: 2,
                    ext_error: -17,
                    ifindex: 5,
                    ip_trace_id: tid,
                    ..DropNotify::default()
                };
                assert_eq!(
                    r,
                    Record {
                        ts_ns: None,
                        cpu: None,
                        cause: Cause::Cilium(Notification::Drop(want)),
                        packet: None,
                        link: LinkType::Ethernet,
                        orig_len: 0,
                        ifindex: 5,
                        netns: 0,
                        headers: Some(syn_headers()),
                        meta: None,
                    }
                );
            }
        }
        // -vv: hex dump, exact bytes; with and without trace id (glued onto the dump).
        for tid in [0u64, 9, 100] {
            let text = render(&vf(Verbosity::Verbose), Some(12), &drop_record(tid, 77));
            let r = one(&text);
            let want = DropNotify {
                msg_type: 1,
                subtype: 133,
                source: 321,
                hash: 0x1234_abcd,
                orig_len: 60,
                cap_len: 54,
                src_label: 12345,
                dst_label: 2,
                dst_id: 77,
                ext_error: -17,
                ip_trace_id: tid,
                ..DropNotify::default()
            };
            assert_eq!(r.cause, Cause::Cilium(Notification::Drop(want)), "{text}");
            assert_eq!(r.packet.as_deref(), Some(&hex(TCP_SYN)[..]));
            assert_eq!(
                (r.cpu, r.orig_len, r.link),
                (Some(12), 60, LinkType::Ethernet)
            );
            assert_eq!(r.headers, None);
        }
        // -vv --hex: the dissection line gives the headers.
        let f = Formatter {
            hex: true,
            ..vf(Verbosity::Verbose)
        };
        for tid in [0u64, 9] {
            let r = one(&render(&f, Some(1), &drop_record(tid, 0)));
            assert_eq!(r.packet, None);
            assert_eq!(r.headers, Some(syn_headers()));
            let Cause::Cilium(Notification::Drop(d)) = r.cause else {
                panic!()
            };
            assert_eq!((d.ip_trace_id, d.dst_id, d.cap_len), (tid, 0, 0));
        }
    }

    #[test]
    fn trace_round_trip() {
        let fmt_all = [Verbosity::Info, Verbosity::Debug, Verbosity::Verbose];
        for h in [REC_6_1, REC_6_2, VXLAN_6_3] {
            let raw = hex(h);
            let d = decode(&raw, &DecodeOptions::default()).unwrap();
            let Notification::Trace(t) = d.notification else {
                panic!()
            };
            for v in fmt_all {
                for hexdump in [false, true] {
                    let f = Formatter {
                        hex: hexdump,
                        ..vf(v)
                    };
                    let text = render(&f, Some(1), &hex(h));
                    let r = one(&text);
                    let Cause::Cilium(Notification::Trace(got)) = r.cause else {
                        panic!("{text}")
                    };
                    let mut want = TraceNotify {
                        msg_type: 4,
                        obs_point: t.obs_point,
                        hash: t.hash,
                        src_label: t.src_label,
                        dst_label: t.dst_label,
                        dst_id: t.dst_id,
                        ifindex: t.ifindex,
                        ..TraceNotify::default()
                    };
                    if v == Verbosity::Verbose {
                        want.source = t.source;
                        want.orig_len = t.orig_len;
                        want.cap_len = t.cap_len;
                        want.reason = t.reason & 0x7f;
                        assert_eq!((r.cpu, r.orig_len), (Some(1), t.orig_len));
                    } else {
                        want.reason = t.reason;
                        // `<- endpoint N` names the source.
                        if t.obs_point == 5 {
                            want.source = t.source;
                        }
                        assert_eq!((r.cpu, r.orig_len), (None, 0));
                    }
                    assert_eq!(got, want, "{text}");
                    if v == Verbosity::Verbose && hexdump {
                        assert_eq!(r.packet.as_deref(), Some(d.packet), "{text}");
                        assert_eq!(r.headers, None);
                    } else {
                        assert_eq!(r.packet, None);
                        let summ = crate::cilium::summary::connection_summary(
                            d.packet,
                            crate::cilium::summary::SummaryOpts::from_cls_flags(t.flags),
                        )
                        .to_string();
                        assert_eq!(r.headers, parse_summary(&summ).unwrap(), "{summ}");
                        assert_eq!(r.headers.is_some(), h != VXLAN_6_3, "{summ}");
                    }
                }
            }
        }
        // IPv6 orig-ip, proxy port, trace id, unknown reason (encrypt bit set).
        let t = TraceNotify {
            msg_type: 4,
            obs_point: 1,
            dst_id: 15001,
            hash: 1,
            flags: 1,
            orig_ip: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            ip_trace_id: 42,
            reason: 0x89,
            ..TraceNotify::default()
        };
        for v in fmt_all {
            let mut s = String::new();
            vf(v).write_line(&mut s, None, &Notification::Trace(t), &[]);
            let r = one(&s);
            assert_eq!(r.cause, Cause::Cilium(Notification::Trace(t)), "{s}");
            assert_eq!(r.headers, None);
        }
    }

    #[test]
    fn policy_verdict_debug_capture_sock_round_trip() {
        let r = one(&render(&vf(Verbosity::Info), None, &hex(PV_FWD)));
        let want = PolicyVerdictNotify {
            msg_type: 5,
            source: 12,
            remote_label: 5678,
            flags: 0x12,
            ..PolicyVerdictNotify::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::PolicyVerdict(want)));
        let r = one(&render(&vf(Verbosity::Verbose), None, &hex(PV_DROP)));
        let want = PolicyVerdictNotify {
            msg_type: 5,
            remote_label: 5678,
            verdict: -1,
            flags: 0x01,
            ..PolicyVerdictNotify::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::PolicyVerdict(want)));
        let mut pv = hex(PV_FWD);
        pv[4..8].copy_from_slice(&0xabcdu32.to_le_bytes());
        pv[12] = 54;
        pv[16..20].copy_from_slice(&2u32.to_le_bytes());
        pv[26] = 6;
        pv[27] = 0x12 | 0x40;
        pv[28] = 1;
        pv.extend_from_slice(&hex(TCP_SYN));
        let r = one(&render(&vf(Verbosity::Debug), None, &pv));
        let want = PolicyVerdictNotify {
            msg_type: 5,
            source: 12,
            hash: 0xabcd,
            remote_label: 2,
            proto: 6,
            flags: 0x52,
            auth_type: 1,
            ..PolicyVerdictNotify::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::PolicyVerdict(want)));
        assert_eq!(r.headers, Some(syn_headers()));

        // Debug messages: -v and -vv; nothing at INFO.
        let subtypes = [1u8, 58, 11, 0];
        for (h, st) in DBG.iter().zip(subtypes) {
            let raw = hex(h);
            let d = decode(&raw, &DecodeOptions::default()).unwrap();
            let Notification::Debug(m) = d.notification else {
                panic!()
            };
            for v in [Verbosity::Debug, Verbosity::Verbose] {
                let r = one(&render(&vf(v), Some(2), &hex(h)));
                let mut want = DebugMsg {
                    msg_type: 2,
                    subtype: st,
                    source: m.source,
                    hash: m.hash,
                    ..DebugMsg::default()
                };
                if st == 1 || st == 0 {
                    (want.arg1, want.arg2) = (m.arg1, m.arg2);
                }
                if st == 1 {
                    want.arg3 = m.arg3;
                }
                assert_eq!(r.cause, Cause::Cilium(Notification::Debug(want)));
                assert_eq!(r.cpu, Some(2));
            }
            assert_eq!(
                parse_all(&render(&vf(Verbosity::Info), Some(2), &hex(h))).0,
                vec![]
            );
        }
        // Debug captures: INFO prefixes; -vv glued message + dump / dissection.
        let r = one(&render(&vf(Verbosity::Info), Some(0), &hex(CAP_DELIVERY)));
        let want = DebugCapture {
            msg_type: 3,
            subtype: 4,
            arg1: 1,
            ..DebugCapture::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::DebugCapture(want)));
        let r = one(&render(&vf(Verbosity::Info), Some(0), &hex(CAP_PROXY)));
        let want = DebugCapture {
            msg_type: 3,
            subtype: 9,
            // Only the low 16 bits of arg1 are printed (`proxy port 0`).
            arg1: 0,
            ..DebugCapture::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::DebugCapture(want)));
        let mut cap = hex(CAP_DELIVERY);
        cap[4] = 3;
        cap[8] = 54;
        cap[12] = 54;
        cap.extend_from_slice(&hex(TCP_SYN));
        for hexdump in [true, false] {
            let f = Formatter {
                hex: hexdump,
                ..vf(Verbosity::Verbose)
            };
            let text = render(&f, Some(2), &cap);
            let r = one(&text);
            let want = DebugCapture {
                msg_type: 3,
                subtype: 4,
                arg1: 1,
                hash: 3,
                cap_len: 54,
                ..DebugCapture::default()
            };
            assert_eq!(
                r.cause,
                Cause::Cilium(Notification::DebugCapture(want)),
                "{text}"
            );
            if hexdump {
                assert_eq!(r.packet, Some(hex(TCP_SYN)));
            } else {
                assert_eq!(r.headers, Some(syn_headers()));
            }
        }
        // Trace-sock with -v only.
        let raw = hex(SOCK);
        let d = decode(&raw, &DecodeOptions::default()).unwrap();
        let r = one(&render(&vf(Verbosity::Debug), Some(0), &hex(SOCK)));
        assert_eq!(r.cause, Cause::Cilium(d.notification));
        assert_eq!(r.cpu, Some(0));
    }

    #[test]
    fn notices_and_unknown_events() {
        let f = vf(Verbosity::Info);
        let mut s = String::new();
        f.write_lost(&mut s, 3, 7);
        f.write_unknown_payload(&mut s, 5, 1, 0);
        f.write_agent(&mut s, 5, "{\"x\":1}");
        f.write_unknown_event(&mut s, Some(1), &hex(DBG[1]));
        s.push_str("cannot decode message type '4': Unrecognized trace event (version 255)\n");
        let (items, skips) = parse_all(&s);
        assert_eq!(skips.0.get("decode_error"), Some(&1));
        assert_eq!(skips.total(), 1);
        let raw = hex(DBG[1]);
        let d = decode(&raw, &DecodeOptions::default()).unwrap();
        assert_eq!(
            items,
            vec![
                Item::Notice(Notice::Lost { cpu: 3, count: 7 }),
                Item::Notice(Notice::Unknown { typ: 5, cpu: 1 }),
                Item::Notice(Notice::Agent {
                    kind: 5,
                    text: "{\"x\":1}".into()
                }),
                Item::Record(new_record(d.notification, Some(1))),
            ]
        );
    }

    #[test]
    fn summaries() {
        let h = |s: &str| parse_summary(s).unwrap().unwrap();
        let i = h("1.2.3.4 -> 5.6.7.8 icmp DestinationUnreachable(Host)");
        assert_eq!((i.proto, i.icmp), (1, Some((3, 1))));
        let i = h("ff02::1:ff00:b3e5 -> f00d::a10:0:0:9195 icmp NeighborSolicitation");
        assert_eq!((i.proto, i.icmp), (58, Some((135, 0))));
        assert_eq!(
            h("1.2.3.4 -> 5.6.7.8 icmp EchoRequest(Code: 3)").icmp,
            Some((8, 3))
        );
        assert_eq!(h("1.2.3.4 -> 5.6.7.8 icmp 200(4)").icmp, Some((200, 4)));
        let t = h("[f00d::1]:80 -> [f00d::2]:443 tcp SYN, ACK");
        assert_eq!((t.sport, t.dport, t.tcp_flags), (80, 443, Some(0x12)));
        assert_eq!(h("1.2.3.4:5 -> 5.6.7.8:6 udp").proto, 17);
        assert_eq!(
            h("1.2.3.4 -> 224.0.0.251 igmp IGMPv2 Membership Report 224.0.0.251").proto,
            2
        );
        assert_eq!(
            h("1.2.3.4:80 -> 5.6.7.8:443 tcp SYN [tunnel 1.1.1.1:8472 -> 2.2.2.2:9999 vxlan]"),
            syn_headers()
        );
        assert_eq!(parse_summary("[unknown]"), Ok(None));
        assert_eq!(parse_summary("[error]"), Ok(None));
        assert_eq!(
            parse_summary("01:02:03:04:05:06 -> 11:12:13:14:15:16 ARP"),
            Ok(None)
        );
        assert!(parse_summary("1.2.3.4:80 -> 5.6.").is_err());
        assert!(parse_summary("1.2.3.4:80 -> 5.6.7.8:443 tcp SYNfoo").is_err());
        // gopacket layer lines (real -vv trace dissection).
        let mut f = FlowHeaders::default();
        assert!(apply_layer_line("IPv4\t{Contents=[..20..] Payload=[..32..] Version=4 IHL=5 TOS=0 Length=52 Id=0 Flags=DF FragOffset=0 TTL=64 Protocol=TCP Checksum=0 SrcIP=10.0.0.1 DstIP=10.0.0.2 Options=[] Padding=[]}", &mut f));
        assert!(apply_layer_line("TCP\t{Contents=[..32..] Payload=[] SrcPort=443(https) DstPort=36000 Seq=1 Ack=0 DataOffset=8 FIN=false SYN=true RST=false PSH=false ACK=true URG=false ECE=false CWR=false NS=false Window=1 Checksum=0 Urgent=0 Options=[] Padding=[]}", &mut f));
        assert_eq!(
            (f.proto, f.sport, f.dport, f.tcp_flags),
            (6, 443, 36000, Some(0x12))
        );
        assert_eq!(f.dst, Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/monitor/");
        let read = |n: &str| std::fs::read_to_string(format!("{dir}{n}")).unwrap();
        // INFO paste from a ticket.
        let (items, skips) = parse_all(&read("info_paste.txt"));
        let recs: Vec<&Record> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(recs.len(), 6, "{items:#?}");
        assert_eq!(skips.0.get("prompt"), Some(&1));
        assert_eq!(skips.0.get("banner"), Some(&2));
        assert_eq!(skips.0.get("blank"), Some(&1));
        assert_eq!(skips.total(), 4, "{skips:?}");
        let Cause::Cilium(Notification::Drop(d)) = recs[0].cause else {
            panic!()
        };
        assert_eq!(
            (d.subtype, d.src_label, d.dst_label, d.file, d.line),
            (133, 12345, 2, 2, 1234)
        );
        assert!(items.contains(&Item::Notice(Notice::Lost { cpu: 1, count: 12 })));
        // -vv --hex paste: traces with dumps (one cut), a dissected drop, a dump-less header.
        let (items, skips) = parse_all(&read("vv_paste.txt"));
        let recs: Vec<&Record> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(recs.len(), 4, "{items:#?}");
        assert_eq!(recs[0].packet, Some(hex(TCP_SYN)));
        assert_eq!(
            (recs[0].ifindex, recs[0].cpu, recs[0].orig_len),
            (17, Some(1), 54)
        );
        assert_eq!(recs[1].packet.as_deref(), Some(&hex(REC_6_1)[32..72]));
        assert_eq!(recs[2].packet, None);
        assert_eq!(recs[2].headers, Some(syn_headers()));
        let Cause::Cilium(Notification::Drop(d)) = recs[2].cause else {
            panic!()
        };
        assert_eq!(
            (d.subtype, d.source, d.src_label, d.dst_label, d.dst_id),
            (151, 7, 2, 1, 12)
        );
        assert_eq!(recs[3].packet, None);
        // The cut line and the two after it (out of sequence).
        assert_eq!(skips.0.get("bad_hex_dump"), Some(&3), "{skips:?}");
        assert_eq!(skips.0.get("hex_dump_length"), Some(&1));
        assert_eq!(skips.0.get("missing_hex_dump"), Some(&1));
        assert_eq!(skips.total(), 8, "{skips:?}");
        assert_eq!(skips.0.get("prompt"), Some(&1));
        assert_eq!(skips.0.get("banner"), Some(&2));
    }

    /// A 10,000-line paste at one verbosity with noise mixed in: exact counts.
    pub(crate) fn paste(verbose: bool) -> (String, usize, BTreeMapCounts) {
        let f = if verbose {
            vf(Verbosity::Verbose)
        } else {
            vf(Verbosity::Info)
        };
        let mut text = String::from(
            "\x1b]0;node\x07$ kubectl -n kube-system exec ds/cilium -- cilium-dbg monitor -vv\r\nListening for events on 2 CPUs with 64x4096 of shared memory\nPress Ctrl-C to quit\n",
        );
        let mut want = BTreeMapCounts::default();
        want.add("prompt", 1);
        want.add("banner", 2);
        let mut good = 0usize;
        let mut i = 0u32;
        let mut lines = 3usize;
        while lines < 10_000 {
            i += 1;
            let rec = render(&f, Some(i % 4), &drop_record(u64::from(i % 3), i % 5));
            let n = rec.lines().count();
            match i % 10 {
                // A colourised record.
                0 => {
                    for l in rec.lines() {
                        text.push_str(&format!("\x1b[1;31m{l}\x1b[0m\r\n"));
                    }
                    good += 1;
                }
                // The header or INFO line wrapped at 50 columns.
                1 => {
                    for l in rec.lines() {
                        if l.len() > 60 && (l.starts_with("CPU ") || l.starts_with("xx drop")) {
                            text.push_str(&l[..50]);
                            text.push('\n');
                            text.push_str(&l[50..]);
                            text.push('\n');
                            lines += 1;
                        } else {
                            text.push_str(l);
                            text.push('\n');
                        }
                    }
                    good += 1;
                }
                // A cut hex dump (verbose) / a cut line (INFO).
                2 => {
                    let ls: Vec<&str> = rec.lines().collect();
                    if verbose {
                        let last = ls.len() - 1;
                        for (k, l) in ls.iter().enumerate() {
                            if k == last - 1 {
                                text.push_str(&l[..30]);
                            } else {
                                text.push_str(l);
                            }
                            text.push('\n');
                        }
                        // The line after the cut one is out of sequence.
                        want.add("bad_hex_dump", 2);
                        good += 1;
                    } else {
                        text.push_str(&ls[0][..40]);
                        text.push_str("\n\n");
                        want.add("cut_record", 1);
                        want.add("blank", 1);
                        lines += 1;
                    }
                }
                // Blank lines and a prompt between records.
                3 => {
                    text.push_str(&rec);
                    text.push_str("\n$ \nsome unrelated output\n");
                    want.add("blank", 1);
                    want.add("prompt", 1);
                    want.add("not_a_record", 1);
                    lines += 3;
                    good += 1;
                }
                _ => {
                    text.push_str(&rec);
                    good += 1;
                }
            }
            lines += n;
        }
        (text, good, want)
    }

    #[derive(Default, Debug, PartialEq)]
    pub(crate) struct BTreeMapCounts(std::collections::BTreeMap<&'static str, u64>);
    impl BTreeMapCounts {
        fn add(&mut self, k: &'static str, n: u64) {
            *self.0.entry(k).or_insert(0) += n;
        }
    }

    #[test]
    fn ten_thousand_line_pastes() {
        for verbose in [false, true] {
            let (text, good, want) = paste(verbose);
            assert!(text.lines().count() >= 10_000);
            let (items, skips) = parse_all(&text);
            let recs = items
                .iter()
                .filter(|i| matches!(i, Item::Record(_)))
                .count();
            assert_eq!(recs, good, "verbose={verbose}");
            assert_eq!(skips.0, want.0, "verbose={verbose}");
            for it in &items {
                let Item::Record(r) = it else { panic!() };
                let Cause::Cilium(Notification::Drop(d)) = r.cause else {
                    panic!()
                };
                assert_eq!((d.subtype, d.src_label, d.dst_label), (133, 12345, 2));
                if verbose {
                    let p = r.packet.as_deref().unwrap();
                    assert!(hex(TCP_SYN).starts_with(p), "{p:?}");
                } else {
                    assert_eq!(r.headers, Some(syn_headers()));
                }
            }
        }
    }

    /// The byte-at-a-time decoder [`parse_full_hex_line`] replaced: what it must agree with.
    fn reference_full_hex_line(b: &[u8]) -> Option<HexLine> {
        let b: &[u8; 78] = b.try_into().ok()?;
        // Positions below 78 on a 78-byte array: the compiler drops these checks.
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let digit = |c: u8| hex_val(c).unwrap_or(0xff);
        // Not-a-digit bits (a digit's value is below 16), separator and ASCII-column mismatches.
        let (mut bad, mut seps, mut shown_diff) = (0u8, 0u8, 0u8);
        let mut offset = 0usize;
        for i in 0..8 {
            let v = digit(at(i));
            bad |= v;
            offset = (offset << 4) | usize::from(v & 0x0f);
        }
        let mut bytes = [0u8; 16];
        for (i, out) in bytes.iter_mut().enumerate() {
            let pos = 10 + 3 * i + usize::from(i >= 8);
            let (h, l) = (digit(at(pos)), digit(at(pos + 1)));
            bad |= h | l;
            seps |= at(pos + 2) ^ b' ';
            let v = (h << 4) | (l & 0x0f);
            *out = v;
            let shown = if (32..=126).contains(&v) { v } else { b'.' };
            shown_diff |= at(61 + i) ^ shown;
        }
        let frame =
            (at(8) ^ b' ') | (at(9) ^ b' ') | (at(59) ^ b' ') | (at(60) ^ b'|') | (at(77) ^ b'|');
        if bad & 0xf0 != 0 || seps != 0 || frame != 0 {
            return None;
        }
        Some(HexLine {
            offset,
            bytes,
            n: 16,
            complete: shown_diff == 0,
        })
    }

    /// The dump line of `bytes` as the monitor's own writer makes it, at `offset`.
    fn hex_dump_line(offset: u32, bytes: &[u8; 16]) -> Vec<u8> {
        let mut l = String::new();
        crate::cilium::format::write_hex_dump(&mut l, bytes);
        let l = l.strip_suffix('\n').unwrap();
        format!("{offset:08x}{}", &l[8..]).into_bytes()
    }

    fn same(a: Option<HexLine>, b: Option<HexLine>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                (a.offset, a.bytes, a.n, a.complete) == (b.offset, b.bytes, b.n, b.complete)
            }
            _ => false,
        }
    }

    #[test]
    fn group_digit_masks_follow_the_slots() {
        for (k, mask) in GROUP_DIGITS.iter().enumerate() {
            for (i, byte) in mask.to_le_bytes().iter().enumerate() {
                let digit = (8 * k + i) % 3 != 2;
                assert_eq!(*byte, if digit { 0xff } else { 0 }, "word {k} byte {i}");
            }
        }
    }

    #[test]
    fn full_hex_lines_decode() {
        let bytes: [u8; 16] = *b"\x02\x00E\x00 ~\x7f\x80\xffAZaz09|";
        let line = hex_dump_line(0x30, &bytes);
        assert_eq!(line.len(), 78);
        let h = parse_full_hex_line(&line).unwrap();
        assert_eq!(
            (h.offset, h.bytes, h.n, h.complete),
            (0x30, bytes, 16, true)
        );
        let upper = String::from_utf8(line.clone()).unwrap().replace("ff", "FF");
        assert!(parse_full_hex_line(upper.as_bytes()).unwrap().complete);
        let mut wrong_ascii = line.clone();
        wrong_ascii[62] = b'x';
        assert!(!parse_full_hex_line(&wrong_ascii).unwrap().complete);
        let mut not_hex = line.clone();
        not_hex[11] = b'g';
        assert!(parse_full_hex_line(&not_hex).is_none());
    }

    proptest::proptest! {
        /// Valid lines, then up to four bytes changed to anything (hex digits of both
        /// cases, separators, bytes above 0x7f and below 0x20 among the likelier values).
        #[test]
        fn full_hex_lines_agree_with_the_bytewise_decoder(
            offset in proptest::prelude::any::<u32>(),
            bytes in proptest::prelude::any::<[u8; 16]>(),
            edits in proptest::collection::vec((0usize..78, proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                proptest::sample::select(b"0123456789abcdefABCDEFgG :|.\x10\x1f\x7f\x80\xc0/@`".to_vec()),
            ]), 0..4),
        ) {
            let mut line = hex_dump_line(offset, &bytes);
            proptest::prop_assert!(same(
                parse_full_hex_line(&line),
                reference_full_hex_line(&line)
            ));
            for (at, v) in edits {
                line[at] = v;
                proptest::prop_assert!(same(
                    parse_full_hex_line(&line),
                    reference_full_hex_line(&line)
                ));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn garbled_lines_never_panic(lines in proptest::collection::vec(
            proptest::prop_oneof![
                "\\PC{0,120}",
                "(CPU [0-9-]{2}: |xx drop \\(|-> |<- |Policy verdict log: |00000000  |>> )\\PC{0,100}",
                "[0-9a-f]{8}  ([0-9a-f]{2} ){0,16} \\|.{0,16}\\|",
            ], 0..40),
            cut in 0usize..200)
        {
            let mut p = MonitorTextParser::new(CiliumRelease::V1_16);
            let (mut out, mut skips) = (Vec::new(), Skips::default());
            let good = render(&vf(Verbosity::Verbose), Some(1), &drop_record(5, 3));
            for l in good.lines().chain(lines.iter().map(String::as_str)) {
                let l = l.get(..cut.min(l.len())).unwrap_or(l);
                p.line(&clean_line(l), &mut out, &mut skips);
            }
            p.finish(&mut out, &mut skips);
            let _ = looks_like_monitor_text(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    proptest::proptest! {
        #[test]
        fn find_and_rsplit_agree_with_str(h in "[a, ]{0,24}(é)?[a, ]{0,8}", p in "[a, ]{1,4}") {
            proptest::prop_assert_eq!(find(&h, &p), h.find(p.as_str()));
            proptest::prop_assert_eq!(rsplit(&h, &p), h.rsplit_once(p.as_str()));
        }
    }

    #[test]
    fn sniffing() {
        let info = render(&vf(Verbosity::Info), None, &drop_record(0, 0));
        let vv = render(&vf(Verbosity::Verbose), Some(1), &drop_record(0, 0));
        assert!(looks_like_monitor_text(&info.lines().collect::<Vec<_>>()));
        assert!(looks_like_monitor_text(&vv.lines().collect::<Vec<_>>()));
        assert!(looks_like_monitor_text(&[
            "$ cilium-dbg monitor",
            "Listening for events on 2 CPUs with 64x4096 of shared memory",
            "Press Ctrl-C to quit",
        ]));
        assert!(!looks_like_monitor_text(&[
            "{\"flow\":{}}",
            "{\"flow\":{}}"
        ]));
        assert!(!looks_like_monitor_text(&["hello", "world"]));
        assert!(!looks_like_monitor_text(&[]));
        let _ = MSG_SEPARATOR;
    }
}
