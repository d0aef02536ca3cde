//! `cilium monitor` text for decoded notifications, and JSON lines.
//!
//! The text reproduces the Go format strings of `pkg/monitor/datapath_*.go` and
//! `pkg/monitor/format/format.go` at cilium `aeb2d1b68e0e` character for character, quirks
//! included: the `, , identity` double comma of drops, `%#x` of 0 printing `0x0`, the two
//! spaces after `encrypted`, the missing newline of verbose debug captures, Go's off-by-one
//! debug subtypes 66–68, and `-vv` hex-dumping drop packets unless `--hex` is given.
//!
//! Differences, on purpose: the packet handed to the summary and the hex dump is the one
//! [`super::notify::decode`] returns (exactly `len_cap` bytes, no perf padding); gopacket's
//! `LayerString` dissection (`-vv` for traces, `-vv --hex` for drops) is not reproduced, one
//! `  <summary>` line stands in for it; with no CPU number the prefix is `CPU --:`.
//!
//! [`Verbosity::Json`] does not imitate `cilium monitor -j`: it writes one JSON object per
//! notification with every decoded field (see [`Formatter::write_json`] for the field names).
//!
//! Formatting allocates (this is the presentation path); decoding does not. Nothing here
//! panics on any field value.

use core::fmt::{self, Write};

use serde_json::{Map, Value};

use super::notify::{
    DebugCapture, DebugMsg, DropNotify, Notification, NotifyError, PolicyVerdictNotify,
    RecorderCapture, TraceNotify, TraceSockNotify,
};
use super::summary::{connection_summary, write_netip6, write_v4, IpAddr, SummaryOpts};
use super::tables::{
    debug_capture_subtype_name, debug_subtype_name, drop_reason_name, policy_action_str,
    policy_match_str, sock_l4_proto_str, trace_point_info, xlate_point_str, AgentTypeDisplay,
    AuthType, BpfFileDisplay, CiliumRelease, DropReasonExt, GoErrno, Identity, ObsPointDisplay,
    TraceReasonDisplay,
};

/// `cilium monitor` verbosity: default, `-v`, `-vv`, `-j`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verbosity {
    #[default]
    Info,
    Debug,
    Verbose,
    Json,
}

/// The separator `-vv` prints before drops, traces and debug captures.
pub const MSG_SEPARATOR: &str =
    "------------------------------------------------------------------------------";

/// Renders notifications like `cilium monitor` of a given release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Formatter {
    /// Selects the source-file table and the drop-reason strings.
    pub release: CiliumRelease,
    /// `-n`: identities as numbers instead of reserved names.
    pub numeric_identities: bool,
    pub verbosity: Verbosity,
    /// `--hex`.
    pub hex: bool,
}

/// No link cache: interface names print as the ifindex (Go's cache-miss behaviour).
fn no_names(_: u32) -> Option<String> {
    None
}

struct Prefix(Option<u32>);

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "CPU {c:02}:"),
            None => f.write_str("CPU --:"),
        }
    }
}

/// An identity as `-n` or `NumericIdentity.String()` prints it.
struct Ident(u32, bool);

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}", Identity(self.0))
        }
    }
}

/// `linkMonitor.Name(ifindex)`: the resolved name or the decimal ifindex.
struct IfName<'r>(u32, &'r dyn Fn(u32) -> Option<String>);

impl fmt::Display for IfName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.1)(self.0) {
            Some(n) => f.write_str(&n),
            None => write!(f, "{}", self.0),
        }
    }
}

/// `netip.Addr.String()` of an address built with `AddrFrom4` / `AddrFrom16`.
struct NetIp(IpAddr);

impl fmt::Display for NetIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write_v4(f, &a),
            IpAddr::V6(a) => write_netip6(f, &a),
            IpAddr::None => f.write_str("invalid IP"),
        }
    }
}

/// Go `ip4Str(arg)`: the u32's native-endian bytes as an IPv4 address.
struct Ip4Arg(u32);

impl fmt::Display for Ip4Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_v4(f, &self.0.to_ne_bytes())
    }
}

/// Go `ip6Str(arg)`: `ntohl(arg)` as `%x:%x` of its halves.
struct Ip6Arg(u32);

impl fmt::Display for Ip6Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = u32::from_be_bytes(self.0.to_ne_bytes());
        write!(f, "{:x}:{:x}", v >> 16, v & 0xffff)
    }
}

/// `byteorder.NetworkToHost16(uint16(x))` on a little-endian host.
fn ntohs(x: u32) -> u16 {
    u16::from_be_bytes((x as u16).to_ne_bytes())
}

/// Go `hex.Dump(data)`.
pub fn write_hex_dump(out: &mut String, data: &[u8]) {
    for (line, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", line * 16);
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        for b in chunk {
            out.push(if (32..=126).contains(b) {
                char::from(*b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
}

impl Formatter {
    pub fn new(release: CiliumRelease, verbosity: Verbosity) -> Self {
        Formatter {
            release,
            verbosity,
            ..Formatter::default()
        }
    }

    /// Append what `cilium monitor` prints for one notification (possibly nothing, possibly
    /// several lines), interface names printed as numbers.
    pub fn write_line(&self, out: &mut String, cpu: Option<u32>, n: &Notification, packet: &[u8]) {
        self.write_line_with(out, cpu, n, packet, &no_names);
    }

    /// [`Formatter::write_line`] with an ifindex -> name resolver (Go's link cache).
    pub fn write_line_with(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        n: &Notification,
        packet: &[u8],
        ifname: &dyn Fn(u32) -> Option<String>,
    ) {
        if self.verbosity == Verbosity::Json {
            self.write_json(out, cpu, n, packet, ifname);
            return;
        }
        // Writing to a String cannot fail.
        let _ = match n {
            Notification::Drop(d) => self.drop(out, cpu, d, packet),
            Notification::Trace(t) => self.trace(out, cpu, t, packet, ifname),
            Notification::PolicyVerdict(p) => self.policy_verdict(out, p, packet),
            Notification::Debug(d) => self.debug(out, cpu, d, ifname),
            Notification::DebugCapture(d) => self.debug_capture(out, cpu, d, packet, ifname),
            Notification::TraceSock(t) => self.trace_sock(out, cpu, t),
            Notification::RecorderCapture(r) => self.recorder(out, cpu, r, packet),
        };
    }

    /// `CPU %02d: Lost %d events`.
    pub fn write_lost(&self, out: &mut String, cpu: u32, lost: u64) {
        let _ = writeln!(out, "CPU {cpu:02}: Lost {lost} events");
    }

    /// A monitor payload of a type other than sample/lost.
    pub fn write_unknown_payload(&self, out: &mut String, typ: i64, cpu: u32, lost: u64) {
        let _ = writeln!(
            out,
            "Unknown payload type: {typ}, CPU {cpu:02}: Lost {lost} events"
        );
    }

    /// A sample whose first byte is no known type: `%s Unknown event: %+v` (Go prints the
    /// bytes as a decimal list).
    pub fn write_unknown_event(&self, out: &mut String, cpu: Option<u32>, raw: &[u8]) {
        let _ = write!(out, "{} Unknown event: [", Prefix(cpu));
        for (i, b) in raw.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{b}");
        }
        out.push_str("]\n");
    }

    /// A sample that failed to decode: `cannot decode message type '%d': %v`.
    pub fn write_decode_error(&self, out: &mut String, msg_type: u8, err: &NotifyError) {
        let _ = writeln!(out, "cannot decode message type '{msg_type}': {err}");
    }

    /// An agent notification (type 130): with [`Verbosity::Json`]
    /// `{"type":"agent","subtype":"<name>","message":<text>}` (text inserted verbatim, it is
    /// JSON already), else `>> <name>: <text>`.
    pub fn write_agent(&self, out: &mut String, agent_type: u32, text: &str) {
        let name = AgentTypeDisplay(agent_type);
        let _ = if self.verbosity == Verbosity::Json {
            writeln!(
                out,
                r#"{{"type":"agent","subtype":"{name}","message":{text}}}"#
            )
        } else {
            writeln!(out, ">> {name}: {text}")
        };
    }

    fn ident(&self, id: u32) -> Ident {
        Ident(id, self.numeric_identities)
    }

    /// Go's `Dissect(buf, dissect, data)`: a hex dump, or (not reproduced) gopacket's layer
    /// dump, for which the summary line stands in.
    fn dissect(&self, out: &mut String, dissect: bool, packet: &[u8], opts: SummaryOpts) {
        if dissect {
            let _ = writeln!(out, "  {}", connection_summary(packet, opts));
        } else {
            write_hex_dump(out, packet);
        }
    }

    fn drop(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        d: &DropNotify,
        packet: &[u8],
    ) -> fmt::Result {
        let reason = DropReasonExt {
            reason: d.subtype,
            ext_error: d.ext_error,
            release: self.release,
        };
        let opts = SummaryOpts::from_cls_flags(d.flags);
        match self.verbosity {
            Verbosity::Info | Verbosity::Debug => {
                write!(
                    out,
                    "xx drop ({}) flow {:#x} to endpoint {}, ifindex {}, file {}:{}, ",
                    reason,
                    d.hash,
                    d.dst_id,
                    d.ifindex,
                    BpfFileDisplay {
                        id: d.file,
                        release: self.release
                    },
                    d.line
                )?;
                if d.ip_trace_id > 0 {
                    write!(out, " [ ip-trace-id = {} ]", d.ip_trace_id)?;
                }
                write!(
                    out,
                    ", identity {}->{}",
                    self.ident(d.src_label),
                    self.ident(d.dst_label)
                )?;
                writeln!(out, ": {}", connection_summary(packet, opts))
            }
            _ => {
                writeln!(out, "{MSG_SEPARATOR}")?;
                write!(
                    out,
                    "{} MARK {:#x} FROM {} DROP: {} bytes, reason {}",
                    Prefix(cpu),
                    d.hash,
                    d.source,
                    d.orig_len,
                    reason
                )?;
                if d.src_label != 0 || d.dst_label != 0 {
                    write!(
                        out,
                        ", identity {}->{}",
                        self.ident(d.src_label),
                        self.ident(d.dst_label)
                    )?;
                }
                if d.dst_id != 0 {
                    writeln!(out, ", to endpoint {}", d.dst_id)?;
                } else {
                    out.push('\n');
                }
                if d.ip_trace_id > 0 {
                    write!(out, " [ IP-TRACE-ID={}", d.ip_trace_id)?;
                }
                if d.cap_len > 0 && !packet.is_empty() {
                    // DropNotify.Dump passes !args.Dissect: the --hex switch is inverted.
                    self.dissect(out, self.hex, packet, opts);
                }
                Ok(())
            }
        }
    }

    /// `traceSummary()`.
    fn trace_summary(out: &mut String, t: &TraceNotify) -> fmt::Result {
        match t.obs_point {
            0 => write!(out, "-> endpoint {}", t.dst_id),
            1 if t.dst_id != 0 => write!(out, "-> proxy port {}", t.dst_id),
            1 => out.write_str("-> proxy"),
            2 => out.write_str("-> host from"),
            3 => out.write_str("-> stack"),
            4 => out.write_str("-> overlay"),
            11 => out.write_str("-> network"),
            5 => write!(out, "<- endpoint {}", t.source),
            6 => out.write_str("<- proxy"),
            7 => out.write_str("<- host"),
            8 => out.write_str("<- stack"),
            9 => out.write_str("<- overlay"),
            10 => out.write_str("<- network"),
            12 => out.write_str("<- crypto"),
            13 => out.write_str("-> crypto"),
            _ => out.write_str("unknown trace"),
        }
    }

    fn trace(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        t: &TraceNotify,
        packet: &[u8],
        ifname: &dyn Fn(u32) -> Option<String>,
    ) -> fmt::Result {
        let opts = SummaryOpts::from_cls_flags(t.flags);
        let ident = |out: &mut String| {
            write!(
                out,
                ", identity {}->{}",
                self.ident(t.src_label),
                self.ident(t.dst_label)
            )
        };
        match self.verbosity {
            Verbosity::Info | Verbosity::Debug => {
                Self::trace_summary(out, t)?;
                if t.is_encrypted() {
                    write!(out, " encrypted  flow {:#x} ", t.hash)?;
                } else {
                    write!(out, " flow {:#x} ", t.hash)?;
                }
                ident(out)?;
                if t.ip_trace_id > 0 {
                    write!(out, " [ ip-trace-id = {} ]", t.ip_trace_id)?;
                }
                writeln!(
                    out,
                    " state {} ifindex {} orig-ip {}: {}",
                    TraceReasonDisplay(t.reason),
                    IfName(t.ifindex, ifname),
                    NetIp(t.original_ip()),
                    connection_summary(packet, opts)
                )
            }
            _ => {
                writeln!(out, "{MSG_SEPARATOR}")?;
                write!(out, "{} MARK {:#x}", Prefix(cpu), t.hash)?;
                if t.ip_trace_id > 0 {
                    write!(out, " [ IP-TRACE-ID = {} ]", t.ip_trace_id)?;
                }
                write!(
                    out,
                    " FROM {} {}: {} bytes ({} captured), state {}",
                    t.source,
                    ObsPointDisplay(t.obs_point),
                    t.orig_len,
                    t.cap_len,
                    TraceReasonDisplay(t.reason)
                )?;
                if t.ifindex != 0 {
                    write!(out, ", interface {}", IfName(t.ifindex, ifname))?;
                }
                if t.src_label != 0 || t.dst_label != 0 {
                    out.push_str(", ");
                    ident(out)?;
                }
                write!(out, ", orig-ip {}", NetIp(t.original_ip()))?;
                if t.dst_id != 0 {
                    let dst = if t.obs_point == 1 {
                        "proxy-port"
                    } else {
                        "endpoint"
                    };
                    writeln!(out, ", to {} {}", dst, t.dst_id)?;
                } else {
                    out.push('\n');
                }
                if t.cap_len > 0 && !packet.is_empty() {
                    self.dissect(out, !self.hex, packet, opts);
                }
                Ok(())
            }
        }
    }

    fn policy_verdict(
        &self,
        out: &mut String,
        p: &PolicyVerdictNotify,
        packet: &[u8],
    ) -> fmt::Result {
        let dir = if p.is_ingress() { "ingress" } else { "egress" };
        let opts = SummaryOpts {
            l3_device: p.is_l3(),
            ipv6: p.is_ipv6(),
            ..Default::default()
        };
        writeln!(
            out,
            "Policy verdict log: flow {:#x} local EP ID {}, remote ID {}, proto {}, {}, action {}, auth: {}, match {}, {}",
            p.hash,
            p.source,
            self.ident(p.remote_label),
            p.proto,
            dir,
            policy_action_str(p.verdict, p.is_audited()),
            AuthType(p.auth_type),
            policy_match_str(p.match_type()),
            connection_summary(packet, opts)
        )
    }

    fn debug(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        d: &DebugMsg,
        ifname: &dyn Fn(u32) -> Option<String>,
    ) -> fmt::Result {
        if self.verbosity == Verbosity::Info {
            return Ok(());
        }
        write!(
            out,
            "{} MARK {:#x} FROM {} DEBUG: ",
            Prefix(cpu),
            d.hash,
            d.source
        )?;
        write_debug_message(out, d, self.release, ifname)?;
        out.push('\n');
        Ok(())
    }

    /// `DebugCapture.infoPrefix`; false when the subtype prints nothing.
    fn capture_prefix(
        out: &mut String,
        d: &DebugCapture,
        ifname: &dyn Fn(u32) -> Option<String>,
    ) -> Result<bool, fmt::Error> {
        match d.subtype {
            4 => write!(out, "-> {}", IfName(d.arg1, ifname))?,
            5 => write!(out, "<- load-balancer {}", IfName(d.arg1, ifname))?,
            6 => write!(out, "== v4->v6 {}", d.arg1)?,
            7 => write!(out, "== v6->v4 {}", d.arg1)?,
            9 => write!(out, "-> proxy port {}", d.proxy_port_monitor())?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `DebugCapture.subTypeString`.
    fn capture_message(out: &mut String, d: &DebugCapture) -> fmt::Result {
        match d.subtype {
            4 => write!(out, "Delivery to ifindex {}", d.arg1),
            5 => write!(
                out,
                "Incoming packet to load balancer on ifindex {}",
                d.arg1
            ),
            6 => write!(out, "Packet after nat46 ifindex {}", d.arg1),
            7 => write!(out, "Packet after nat64 ifindex {}", d.arg1),
            8 => write!(out, "Packet to proxy port {} (Pre)", d.proxy_port_monitor()),
            9 => write!(
                out,
                "Packet to proxy port {} (Post)",
                d.proxy_port_monitor()
            ),
            10 => write!(out, "Packet going into snat engine on ifindex {}", d.arg1),
            11 => write!(out, "Packet coming from snat engine on ifindex {}", d.arg1),
            _ => write!(out, "Unknown message type={} arg1={}", d.subtype, d.arg1),
        }
    }

    fn debug_capture(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        d: &DebugCapture,
        packet: &[u8],
        ifname: &dyn Fn(u32) -> Option<String>,
    ) -> fmt::Result {
        match self.verbosity {
            Verbosity::Info | Verbosity::Debug => {
                let mark = out.len();
                if Self::capture_prefix(out, d, ifname)? {
                    writeln!(
                        out,
                        ": {}",
                        connection_summary(packet, SummaryOpts::default())
                    )?;
                } else {
                    out.truncate(mark);
                }
                Ok(())
            }
            _ => {
                writeln!(out, "{MSG_SEPARATOR}")?;
                write!(
                    out,
                    "{} MARK {:#x} FROM {} DEBUG: {} bytes, ",
                    Prefix(cpu),
                    d.hash,
                    d.source,
                    d.cap_len
                )?;
                Self::capture_message(out, d)?;
                // Go prints no newline here.
                if d.cap_len > 0 && !packet.is_empty() {
                    self.dissect(out, !self.hex, packet, SummaryOpts::default());
                }
                Ok(())
            }
        }
    }

    fn trace_sock(&self, out: &mut String, cpu: Option<u32>, t: &TraceSockNotify) -> fmt::Result {
        if self.verbosity != Verbosity::Debug {
            return Ok(());
        }
        writeln!(
            out,
            "{} [{}] cgroup_id: {} sock_cookie: {}, dst [{}]:{} {} ",
            Prefix(cpu),
            xlate_point_str(t.xlate_point),
            t.cgroup_id,
            t.sock_cookie,
            NetIp(t.dst()),
            t.dst_port,
            sock_l4_proto_str(t.l4_proto)
        )
    }

    /// Current Cilium has no decoder for type 6 and prints the raw record; this prints the
    /// decoded header instead.
    fn recorder(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        r: &RecorderCapture,
        packet: &[u8],
    ) -> fmt::Result {
        let dir = match r.subtype {
            1 => "ingress",
            2 => "egress",
            _ => "unknown",
        };
        writeln!(
            out,
            "{} RECORDER: rule {} {} {} bytes ({} captured): {}",
            Prefix(cpu),
            r.rule_id,
            dir,
            r.orig_len,
            r.cap_len,
            connection_summary(packet, SummaryOpts::default())
        )
    }

    /// One JSON object (+ `\n`) with every decoded field. Keys:
    /// * always: `type` (`drop`, `trace`, `policy_verdict`, `debug`, `debug_capture`,
    ///   `trace_sock`, `recorder_capture`), `cpu` (number or null), every struct field under
    ///   its Rust name (`msg_type`, `subtype`, `source`, `hash`, `orig_len`, `cap_len`,
    ///   `version`, `ext_version`, ...; `orig_ip`/`dst_ip` as 16-number arrays), and for
    ///   packet-carrying types `packet_len` and `summary` (the connection summary text);
    /// * drop: `reason_name` (C name or null), `reason_desc` (DropReasonExt text),
    ///   `file_name`, `src_identity`, `dst_identity`;
    /// * trace: `observation_point`, `trace_reason` (monitor text), `encrypted`, `orig_ip_str`,
    ///   `ifname`, `src_identity`, `dst_identity`;
    /// * policy verdict: `direction` (`ingress`/`egress`), `action`, `match`, `auth`,
    ///   `audited`, `ipv6`, `l3`, `remote_identity`, `drop_reason_desc` (when verdict < 0);
    /// * debug: `subtype_name` (correct C name), `message` (Go's monitor text);
    /// * debug capture: `subtype_name`, `message`;
    /// * trace sock: `xlate_point_str`, `l4_proto_str`, `dst_ip_str`.
    pub fn write_json(
        &self,
        out: &mut String,
        cpu: Option<u32>,
        n: &Notification,
        packet: &[u8],
        ifname: &dyn Fn(u32) -> Option<String>,
    ) {
        let mut m = match serde_json::to_value(n) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        m.insert("cpu".into(), cpu.map_or(Value::Null, Value::from));
        let s = |v: &dyn fmt::Display| Value::String(v.to_string());
        let ident = |id: u32| s(&Identity(id));
        let with_packet = |m: &mut Map<String, Value>, opts: SummaryOpts| {
            m.insert("packet_len".into(), Value::from(packet.len()));
            m.insert("summary".into(), s(&connection_summary(packet, opts)));
        };
        match n {
            Notification::Drop(d) => {
                let r = DropReasonExt {
                    reason: d.subtype,
                    ext_error: d.ext_error,
                    release: self.release,
                };
                m.insert(
                    "reason_name".into(),
                    drop_reason_name(d.subtype).map_or(Value::Null, Value::from),
                );
                m.insert("reason_desc".into(), s(&r));
                m.insert(
                    "file_name".into(),
                    s(&BpfFileDisplay {
                        id: d.file,
                        release: self.release,
                    }),
                );
                m.insert("src_identity".into(), ident(d.src_label));
                m.insert("dst_identity".into(), ident(d.dst_label));
                with_packet(&mut m, SummaryOpts::from_cls_flags(d.flags));
            }
            Notification::Trace(t) => {
                m.insert("observation_point".into(), s(&ObsPointDisplay(t.obs_point)));
                m.insert("trace_reason".into(), s(&TraceReasonDisplay(t.reason)));
                m.insert("encrypted".into(), Value::Bool(t.is_encrypted()));
                m.insert("orig_ip_str".into(), s(&NetIp(t.original_ip())));
                m.insert("ifname".into(), s(&IfName(t.ifindex, ifname)));
                m.insert("src_identity".into(), ident(t.src_label));
                m.insert("dst_identity".into(), ident(t.dst_label));
                let _ = trace_point_info(t.obs_point);
                with_packet(&mut m, SummaryOpts::from_cls_flags(t.flags));
            }
            Notification::PolicyVerdict(p) => {
                let dir = if p.is_ingress() { "ingress" } else { "egress" };
                m.insert("direction".into(), Value::from(dir));
                m.insert(
                    "action".into(),
                    Value::from(policy_action_str(p.verdict, p.is_audited())),
                );
                m.insert(
                    "match".into(),
                    Value::from(policy_match_str(p.match_type())),
                );
                m.insert("auth".into(), s(&AuthType(p.auth_type)));
                m.insert("audited".into(), Value::Bool(p.is_audited()));
                m.insert("ipv6".into(), Value::Bool(p.is_ipv6()));
                m.insert("l3".into(), Value::Bool(p.is_l3()));
                m.insert("remote_identity".into(), ident(p.remote_label));
                if let Some(r) = p.drop_reason() {
                    let r = DropReasonExt {
                        reason: r,
                        ext_error: 0,
                        release: self.release,
                    };
                    m.insert("drop_reason_desc".into(), s(&r));
                }
                let opts = SummaryOpts {
                    l3_device: p.is_l3(),
                    ipv6: p.is_ipv6(),
                    ..Default::default()
                };
                with_packet(&mut m, opts);
            }
            Notification::Debug(d) => {
                m.insert(
                    "subtype_name".into(),
                    debug_subtype_name(d.subtype).map_or(Value::Null, Value::from),
                );
                let mut msg = String::new();
                let _ = write_debug_message(&mut msg, d, self.release, ifname);
                m.insert("message".into(), Value::String(msg));
            }
            Notification::DebugCapture(d) => {
                let name = debug_capture_subtype_name(d.subtype);
                m.insert("subtype_name".into(), name.map_or(Value::Null, Value::from));
                let mut msg = String::new();
                let _ = Self::capture_message(&mut msg, d);
                m.insert("message".into(), Value::String(msg));
                with_packet(&mut m, SummaryOpts::default());
            }
            Notification::TraceSock(t) => {
                m.insert(
                    "xlate_point_str".into(),
                    Value::from(xlate_point_str(t.xlate_point)),
                );
                m.insert(
                    "l4_proto_str".into(),
                    Value::from(sock_l4_proto_str(t.l4_proto)),
                );
                m.insert("dst_ip_str".into(), s(&NetIp(t.dst())));
            }
            Notification::RecorderCapture(_) => with_packet(&mut m, SummaryOpts::default()),
        }
        if let Ok(line) = serde_json::to_string(&Value::Object(m)) {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

/// `DebugMsg.Message()`: Go's text for a debug message, with Go's subtype numbering (66 and
/// 67 are Go's LB6 loopback SNAT messages, 68 is unknown to Go).
pub fn write_debug_message(
    out: &mut dyn Write,
    n: &DebugMsg,
    release: CiliumRelease,
    ifname: &dyn Fn(u32) -> Option<String>,
) -> fmt::Result {
    let (a1, a2, a3) = (n.arg1, n.arg2, n.arg3);
    let ct_info = |out: &mut dyn Write, x: u32, y: u32| -> fmt::Result {
        write!(
            out,
            "sport={} dport={} nexthdr={} flags=",
            x >> 16,
            x & 0xffff,
            y >> 8
        )?;
        // Go iterates a map here (random order); flags 1 = OUT, 2 = RELATED.
        let f = y & 0xff;
        let mut first = true;
        for (bit, name) in [(1u32, "OUT"), (2, "RELATED")] {
            if f & bit != 0 {
                if !first {
                    out.write_str(", ")?;
                }
                out.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    };
    let lookup4_1 = |out: &mut dyn Write| {
        write!(
            out,
            "src={}:{} dst={}:{}",
            Ip4Arg(a1),
            a3 & 0xffff,
            Ip4Arg(a2),
            a3 >> 16
        )
    };
    let lookup4_2 = |out: &mut dyn Write| {
        write!(
            out,
            "nexthdr={} flags={} dir={} scope={}",
            a1 >> 8,
            a1 & 0xff,
            a2,
            a3
        )
    };
    let lookup6_1 = |out: &mut dyn Write| {
        write!(
            out,
            "src=[::{}]:{} dst=[::{}]:{}",
            Ip6Arg(a1),
            a3 & 0xffff,
            Ip6Arg(a2),
            a3 >> 16
        )
    };
    let verdict_info = |out: &mut dyn Write, x: u32| write!(out, "revnat={}", ntohs(x & 0xffff));
    let proxy_info = |out: &mut dyn Write| {
        write!(
            out,
            "sport={} dport={} saddr={}",
            ntohs(a1 >> 16),
            ntohs(a1 & 0xffff),
            Ip4Arg(a2)
        )
    };
    match n.subtype {
        1 => write!(
            out,
            "No message, arg1={a1} ({a1:#x}) arg2={a2} ({a2:#x}) arg3={a3} ({a3:#x})"
        ),
        2 => write!(
            out,
            "Attempting local delivery for container id {a1} from seclabel {a2}"
        ),
        3 => write!(
            out,
            "Encapsulating to node {a1} ({a1:#x}) from seclabel {a2}"
        ),
        4 => write!(
            out,
            "Local container found ifindex {} seclabel {}",
            IfName(a1, ifname),
            ntohs(a2)
        ),
        5 => write!(out, "Policy evaluation would deny packet from {a1} to {a2}"),
        6 => {
            out.write_str("CT lookup: ")?;
            ct_info(out, a1, a2)
        }
        7 => {
            out.write_str("CT reverse lookup: ")?;
            ct_info(out, a1, a2)
        }
        40 => write!(out, "CT lookup address: {}", Ip4Arg(a1)),
        8 => {
            write!(out, "CT entry found lifetime={a1}, ")?;
            verdict_info(out, a2)
        }
        9 => {
            out.write_str("CT created 1/2: ")?;
            ct_info(out, a1, a2)?;
            out.write_str(" ")?;
            verdict_info(out, a3)
        }
        10 => write!(out, "CT created 2/2: {} revnat={}", Ip4Arg(a1), ntohs(a2)),
        15 => {
            out.write_str("CT verdict: ")?;
            match a1 {
                0 => out.write_str("New")?,
                1 => out.write_str("Established")?,
                2 => out.write_str("Reply")?,
                3 => out.write_str("Related")?,
                s => write!(
                    out,
                    "{}",
                    DropReasonExt {
                        reason: s as u8,
                        ext_error: 0,
                        release
                    }
                )?,
            }
            out.write_str(", ")?;
            verdict_info(out, a2)
        }
        11 => write!(out, "Handling ICMPv6 type={a1}"),
        12 => write!(out, "ICMPv6 echo request for router offset={a1}"),
        13 => write!(
            out,
            "ICMPv6 neighbour soliciation for address {a1:x}:{a2:x}"
        ),
        14 => out.write_str("Sending ICMPv6 time exceeded"),
        16 => write!(out, "Tunnel decap: id={a1} flowlabel={a2:x}"),
        17 => write!(out, "Mapping port from={a1} to={a2}"),
        18 => write!(out, "BPF function {a1} returned error {a2}"),
        19 => write!(out, "Going to host, policy-skip={a1}"),
        20 => write!(out, "Going to the stack, policy-skip={a1}"),
        21 => write!(out, "Packet hash={a1} ({a1:#x}), selected_service={a2}"),
        41 => write!(
            out,
            "RR backend slot selection hash={a1} ({a1:#x}), selected_service={a2}"
        ),
        22 => write!(
            out,
            "Frontend service lookup, addr.p4={a1:x} key.dport={}",
            ntohs(a2)
        ),
        23 => write!(
            out,
            "Frontend service lookup failed, addr.p2={a1:x} addr.p3={a2:x}"
        ),
        24 | 32 => write!(
            out,
            "Service backend slot lookup: slot={a1}, dport={}",
            ntohs(a2)
        ),
        26 | 34 => write!(
            out,
            "Service backend slot lookup failed: slot={a1}, dport={}",
            ntohs(a2)
        ),
        27 | 35 => write!(out, "Backend service lookup failed: backend_id={a1}"),
        25 => write!(
            out,
            "Service backend slot lookup result: target.p4={a1:x} port={}",
            ntohs(a2)
        ),
        28 | 36 => write!(out, "Reverse NAT lookup, index={}", ntohs(a1)),
        29 => write!(
            out,
            "Performing reverse NAT, address.p4={a1:x} port={}",
            ntohs(a2)
        ),
        // Go's DbgLb6LoopbackSnat / DbgLb6LoopbackSnatRev are 66 / 67 (C: 67 / 68).
        66 => write!(out, "Loopback SNAT from.p4={a1:x} to.p4={a2:x}"),
        67 => write!(out, "Loopback reverse SNAT from.p4={a1:x} to.p4={a2:x}"),
        30 => write!(
            out,
            "Frontend service lookup, addr={} key.dport={}",
            Ip4Arg(a1),
            ntohs(a2)
        ),
        31 => out.write_str("Frontend service lookup failed"),
        33 => write!(
            out,
            "Service backend slot lookup result: target={} port={}",
            Ip4Arg(a1),
            ntohs(a2)
        ),
        37 => write!(
            out,
            "Performing reverse NAT, address={} port={}",
            Ip4Arg(a1),
            ntohs(a2)
        ),
        38 => write!(out, "Loopback SNAT from={} to={}", Ip4Arg(a1), Ip4Arg(a2)),
        39 => write!(
            out,
            "Loopback reverse SNAT from={} to={}",
            Ip4Arg(a1),
            Ip4Arg(a2)
        ),
        42 => {
            out.write_str("Reverse proxy lookup ")?;
            proxy_info(out)?;
            write!(out, " nexthdr={a3}")
        }
        43 => write!(
            out,
            "Reverse proxy entry found, orig-daddr={} orig-dport={a2}",
            Ip4Arg(a1)
        ),
        44 => {
            out.write_str("Reverse proxy updated ")?;
            proxy_info(out)?;
            write!(out, " nexthdr={a3}")
        }
        45 => {
            let dir = match a2 {
                0 => "egress",
                1 => "ingress",
                _ => "",
            };
            write!(out, "Resolved L4 policy to: {} / {}", ntohs(a1), dir)
        }
        46 => write!(
            out,
            "Destination is inside cluster prefix, source identity: {a1}"
        ),
        47 => write!(
            out,
            "Attempting encapsulation, lookup key: {}, identity: {a2}",
            Ip4Arg(a1)
        ),
        48 => {
            out.write_str("Conntrack lookup 1/2: ")?;
            lookup4_1(out)
        }
        49 | 52 => {
            out.write_str("Conntrack lookup 2/2: ")?;
            lookup4_2(out)
        }
        50 => write!(
            out,
            "Conntrack create: proxy-port={} revnat={} src-identity={} lb={}",
            a1 >> 16,
            ntohs(a1 & 0xffff),
            a2,
            Ip4Arg(a3)
        ),
        51 => {
            out.write_str("Conntrack lookup 1/2: ")?;
            lookup6_1(out)
        }
        53 => write!(
            out,
            "Conntrack create: proxy-port={} revnat={} src-identity={}",
            a1 >> 16,
            ntohs(a1 & 0xffff),
            a2
        ),
        54 => write!(out, "Skipping proxy, tc_index is set={a1:x}"),
        55 => write!(
            out,
            "Matched L4 policy; creating conntrack src={a1} dst={a2} dport={} proto={}",
            ntohs(a3 >> 16),
            a3 & 0xff
        ),
        56 => write!(out, "Failed to map addr={} to identity", Ip4Arg(a1)),
        57 => write!(out, "Failed to map addr.p4=[::{}] to identity", Ip6Arg(a1)),
        58 => write!(
            out,
            "Successfully mapped addr={} to identity={a2}",
            Ip4Arg(a1)
        ),
        59 => write!(
            out,
            "Successfully mapped addr.p4=[::{}] to identity={a2}",
            Ip6Arg(a1)
        ),
        60 => write!(
            out,
            "Stale CT entry found stale_ct.rev_nat_id={a2}, svc.rev_nat_id={a1}"
        ),
        61 => write!(out, "Inheriting identity={a1} from stack"),
        62 => {
            out.write_str("Socket lookup: ")?;
            lookup4_1(out)
        }
        63 => {
            out.write_str("Socket lookup: ")?;
            lookup6_1(out)
        }
        64 => {
            if a1 == 0 {
                out.write_str("Socket assign: Success")
            } else {
                write!(out, "Socket assign: {}", GoErrno(a1))
            }
        }
        65 => write!(
            out,
            "L7 LB from {} to {}: proxy port {a3}",
            Ip4Arg(a1),
            Ip4Arg(a2)
        ),
        s => write!(out, "Unknown message type={s} arg1={a1} arg2={a2}"),
    }
}
