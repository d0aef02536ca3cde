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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::notify::{decode, DecodeOptions};

    use crate::testutil::hex;

    const TCP_SYN: &str = "0233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000500220007dc40000";
    const REC_6_1: &str = "04070000077c1a39420000004200000001000000000000000000810000000000f68db22d21d9f68db22d21d9080045000034ea1c400040067831c0a83c0b0a10ecb2192bd3ce2aefd21cb498816780100198d89c00000101080a005ab062005ab0610000";
    const REC_6_2: &str = "0405a80b5f16f2b85600000056000000680000000000000000000000000000003333ff00b3e5129106e2221a86dd6000000000203affff0200000000000000000001ff00b3e5f00d0000000000000a100000000091958700507500000000f00d0000000000000a1000000000b3e50101129106e2221a000000000000";

    /// A v3 drop (Policy denied, bpf_lxc.c:1234) with the 54-byte TCP SYN and 2 padding bytes.
    fn drop_record(ip_trace_id: u64) -> Vec<u8> {
        let pkt = hex(TCP_SYN);
        let mut b = vec![0u8; 48];
        b[0] = 1;
        b[1] = 133;
        b[2..4].copy_from_slice(&0u16.to_le_bytes());
        b[4..8].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        b[8..12].copy_from_slice(&(pkt.len() as u32).to_le_bytes());
        b[12..14].copy_from_slice(&(pkt.len() as u16).to_le_bytes());
        b[14] = 3;
        b[16..20].copy_from_slice(&12345u32.to_le_bytes());
        b[20..24].copy_from_slice(&2u32.to_le_bytes());
        b[28..30].copy_from_slice(&1234u16.to_le_bytes());
        b[30] = 2;
        b[32..36].copy_from_slice(&5u32.to_le_bytes());
        b[40..48].copy_from_slice(&ip_trace_id.to_le_bytes());
        b.extend_from_slice(&pkt);
        b.extend_from_slice(&[0xde, 0xad]);
        b
    }

    fn line(f: &Formatter, cpu: Option<u32>, rec: &[u8]) -> String {
        let d = decode(rec, &DecodeOptions::default()).unwrap();
        let mut s = String::new();
        f.write_line(&mut s, cpu, &d.notification, d.packet);
        s
    }

    const HEX_SYN: &str = "00000000  02 33 45 67 89 ab 01 23  45 67 89 ab 08 00 45 00  |.3Eg...#Eg....E.|\n00000010  00 28 00 01 00 00 40 06  6a bc 01 02 03 04 05 06  |.(....@.j.......|\n00000020  07 08 00 50 01 bb 00 00  00 00 00 00 00 00 50 02  |...P..........P.|\n00000030  20 00 7d c4 00 00                                 | .}...|\n";

    #[test]
    fn hex_dump_matches_go() {
        let mut s = String::new();
        write_hex_dump(&mut s, &hex(TCP_SYN));
        assert_eq!(s, HEX_SYN);
        s.clear();
        write_hex_dump(&mut s, &hex(TCP_SYN)[..7]);
        assert_eq!(
            s,
            "00000000  02 33 45 67 89 ab 01                              |.3Eg...|\n"
        );
        s.clear();
        write_hex_dump(&mut s, &[]);
        assert_eq!(s, "");
    }

    #[test]
    fn drop_info_line() {
        let f = Formatter::default();
        assert_eq!(
            line(&f, Some(3), &drop_record(0)),
            "xx drop (Policy denied) flow 0x1234abcd to endpoint 0, ifindex 5, file bpf_lxc.c:1234, , identity 12345->world: 1.2.3.4:80 -> 5.6.7.8:443 tcp SYN\n"
        );
        assert_eq!(
            line(&f, Some(3), &drop_record(7)),
            "xx drop (Policy denied) flow 0x1234abcd to endpoint 0, ifindex 5, file bpf_lxc.c:1234,  [ ip-trace-id = 7 ], identity 12345->world: 1.2.3.4:80 -> 5.6.7.8:443 tcp SYN\n"
        );
        let n = Formatter {
            numeric_identities: true,
            verbosity: Verbosity::Debug,
            ..Formatter::default()
        };
        assert!(line(&n, None, &drop_record(0)).contains(", , identity 12345->2: "));
        // Release-specific file table and reason strings, ext_error, hash 0.
        let mut b = drop_record(0);
        b[1] = 204;
        b[4..8].copy_from_slice(&[0; 4]);
        b[30] = 101;
        b[31] = (-17i8) as u8;
        let old = Formatter::new(CiliumRelease::V1_16, Verbosity::Info);
        assert!(line(&old, None, &b).starts_with(
            "xx drop (204, -17) flow 0x0 to endpoint 0, ifindex 5, file arp.h:1234, , identity"
        ));
        assert!(line(&f, None, &b).starts_with("xx drop (No Egress IP configured, -17) flow 0x0 to endpoint 0, ifindex 5, file drop.h:1234, , identity"));
    }

    #[test]
    fn drop_verbose_lines() {
        let vv = Formatter {
            verbosity: Verbosity::Verbose,
            ..Formatter::default()
        };
        let want = format!(
            "{MSG_SEPARATOR}\nCPU 03: MARK 0x1234abcd FROM 0 DROP: 54 bytes, reason Policy denied, identity 12345->world\n{HEX_SYN}"
        );
        assert_eq!(line(&vv, Some(3), &drop_record(0)), want);
        // --hex inverts to dissection; ip trace id without closing bracket; to endpoint.
        let mut b = drop_record(9);
        b[24..28].copy_from_slice(&77u32.to_le_bytes());
        let vvh = Formatter { hex: true, ..vv };
        assert_eq!(
            line(&vvh, Some(12), &b),
            format!("{MSG_SEPARATOR}\nCPU 12: MARK 0x1234abcd FROM 0 DROP: 54 bytes, reason Policy denied, identity 12345->world, to endpoint 77\n [ IP-TRACE-ID=9  1.2.3.4:80 -> 5.6.7.8:443 tcp SYN\n")
        );
    }

    #[test]
    fn trace_lines() {
        let f = Formatter::default();
        assert_eq!(
            line(&f, Some(0), &hex(REC_6_1)),
            "<- host encrypted  flow 0x391a7c07 , identity host->unknown state established ifindex 0 orig-ip 0.0.0.0: 192.168.60.11:6443 -> 10.16.236.178:54222 tcp ACK\n"
        );
        assert_eq!(
            line(&f, Some(0), &hex(REC_6_2)),
            "<- endpoint 2984 flow 0xb8f2165f , identity 104->unknown state new ifindex 0 orig-ip 0.0.0.0: ff02::1:ff00:b3e5 -> f00d::a10:0:0:9195 icmp NeighborSolicitation\n"
        );
        // Verbose, with a link cache.
        let mut b = hex(REC_6_1);
        b[28] = 4; // ifindex 4
        let d = decode(&b, &DecodeOptions::default()).unwrap();
        let vv = Formatter {
            verbosity: Verbosity::Verbose,
            ..Formatter::default()
        };
        let names = |i: u32| (i == 4).then(|| "eth0".to_string());
        let mut s = String::new();
        vv.write_line_with(&mut s, Some(1), &d.notification, d.packet, &names);
        assert_eq!(
            s,
            format!("{MSG_SEPARATOR}\nCPU 01: MARK 0x391a7c07 FROM 0 from-host: 66 bytes (66 captured), state established, interface eth0, , identity host->unknown, orig-ip 0.0.0.0\n  192.168.60.11:6443 -> 10.16.236.178:54222 tcp ACK\n")
        );
        s.clear();
        f.write_line_with(&mut s, Some(1), &d.notification, d.packet, &names);
        assert!(s.contains(" state established ifindex eth0 orig-ip 0.0.0.0: "));
        // to-proxy with a port, IPv6 orig-ip, trace id.
        let t = TraceNotify {
            obs_point: 1,
            dst_id: 15001,
            hash: 1,
            version: 2,
            flags: 1,
            orig_ip: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            ip_trace_id: 42,
            reason: 0x89,
            ..TraceNotify::default()
        };
        s.clear();
        f.write_line(&mut s, None, &Notification::Trace(t), &[]);
        assert_eq!(s, "-> proxy port 15001 encrypted  flow 0x1 , identity unknown->unknown [ ip-trace-id = 42 ] state 137 ifindex 0 orig-ip fd00::9: [unknown]\n");
        s.clear();
        vv.write_line(&mut s, None, &Notification::Trace(t), &[]);
        assert_eq!(s, format!("{MSG_SEPARATOR}\nCPU --: MARK 0x1 [ IP-TRACE-ID = 42 ] FROM 0 to-proxy: 0 bytes (0 captured), state 137, orig-ip fd00::9, to proxy-port 15001\n"));
    }

    #[test]
    fn policy_verdict_lines() {
        let f = Formatter::default();
        let fwd =
            hex("05000c000000000000000000000000002e1600000000000000000012000000000000000000000000");
        assert_eq!(
            line(&f, None, &fwd),
            "Policy verdict log: flow 0x0 local EP ID 12, remote ID 5678, proto 0, egress, action allow, auth: disabled, match L3-L4, [unknown]\n"
        );
        let drop =
            hex("050000000000000000000000000000002e16000069ffffff00000001000000000000000000000000");
        assert_eq!(
            line(&f, None, &drop),
            "Policy verdict log: flow 0x0 local EP ID 0, remote ID 5678, proto 0, ingress, action deny, auth: disabled, match none, [unknown]\n"
        );
        let mut with_pkt = fwd.clone();
        with_pkt[4..8].copy_from_slice(&0xabcdu32.to_le_bytes());
        with_pkt[12] = 54;
        with_pkt[16..20].copy_from_slice(&2u32.to_le_bytes());
        with_pkt[26] = 6;
        with_pkt[27] = 0x12 | 0x40; // audited
        with_pkt[28] = 1;
        with_pkt.extend_from_slice(&hex(TCP_SYN));
        assert_eq!(
            line(&f, None, &with_pkt),
            "Policy verdict log: flow 0xabcd local EP ID 12, remote ID world, proto 6, egress, action audit, auth: spire, match L3-L4, 1.2.3.4:80 -> 5.6.7.8:443 tcp SYN\n"
        );
    }

    #[test]
    fn lost_agent_unknown_and_errors() {
        let f = Formatter::default();
        let mut s = String::new();
        f.write_lost(&mut s, 3, 7);
        assert_eq!(s, "CPU 03: Lost 7 events\n");
        s.clear();
        f.write_unknown_payload(&mut s, 5, 1, 0);
        assert_eq!(s, "Unknown payload type: 5, CPU 01: Lost 0 events\n");
        s.clear();
        let j = Formatter {
            verbosity: Verbosity::Json,
            ..f
        };
        j.write_agent(&mut s, 2, r#"{"time":"2024-01-01T00:00:00Z"}"#);
        assert_eq!(s, "{\"type\":\"agent\",\"subtype\":\"Cilium agent started\",\"message\":{\"time\":\"2024-01-01T00:00:00Z\"}}\n");
        s.clear();
        f.write_agent(&mut s, 5, "{}");
        assert_eq!(s, ">> Policy updated: {}\n");
        s.clear();
        f.write_unknown_event(&mut s, Some(1), &[8, 1, 2]);
        assert_eq!(s, "CPU 01: Unknown event: [8 1 2]\n");
        s.clear();
        let mut b = vec![0u8; 48];
        b[0] = 4;
        b[14] = 0xff;
        let e = decode(&b, &DecodeOptions::default()).unwrap_err();
        f.write_decode_error(&mut s, 4, &e);
        assert_eq!(
            s,
            "cannot decode message type '4': Unrecognized trace event (version 255)\n"
        );
    }

    #[test]
    fn debug_messages_section_8() {
        let dbg = Formatter {
            verbosity: Verbosity::Debug,
            ..Formatter::default()
        };
        let vecs = [
            ("0201000000000000010000000200000003000000", 0, "CPU 00: MARK 0x0 FROM 0 DEBUG: No message, arg1=1 (0x1) arg2=2 (0x2) arg3=3 (0x3)\n"),
            ("023ad204a63b082a0a0b00e90200000000000000", 2, "CPU 02: MARK 0x2a083ba6 FROM 1234 DEBUG: Successfully mapped addr=10.11.0.233 to identity=2\n"),
            ("020bd2048456d59d810000000000000000000000", 3, "CPU 03: MARK 0x9dd55684 FROM 1234 DEBUG: Handling ICMPv6 type=129\n"),
            ("02001027785634120a000000140000001e000000", 1, "CPU 01: MARK 0x12345678 FROM 10000 DEBUG: Unknown message type=0 arg1=10 arg2=20\n"),
        ];
        for (h, cpu, want) in vecs {
            assert_eq!(line(&dbg, Some(cpu), &hex(h)), want);
            assert_eq!(line(&Formatter::default(), Some(cpu), &hex(h)), "");
        }
        let msg = |subtype: u8, a1: u32, a2: u32, a3: u32| {
            let m = DebugMsg {
                msg_type: 2,
                subtype,
                arg1: a1,
                arg2: a2,
                arg3: a3,
                ..DebugMsg::default()
            };
            let mut s = String::new();
            write_debug_message(&mut s, &m, CiliumRelease::Main, &no_names).unwrap();
            s
        };
        // Go's numbering for 66..68 (C: SKIP_POLICY, LB6_LOOPBACK_SNAT, ..._REV).
        assert_eq!(msg(66, 0xa, 0xb, 0), "Loopback SNAT from.p4=a to.p4=b");
        assert_eq!(
            msg(67, 0xa, 0xb, 0),
            "Loopback reverse SNAT from.p4=a to.p4=b"
        );
        assert_eq!(msg(68, 1, 2, 3), "Unknown message type=68 arg1=1 arg2=2");
        assert_eq!(
            msg(6, (1234 << 16) | 80, (6 << 8) | 3, 0),
            "CT lookup: sport=1234 dport=80 nexthdr=6 flags=OUT, RELATED"
        );
        assert_eq!(
            msg(15, 133, 0x0100, 0),
            "CT verdict: Policy denied, revnat=1"
        );
        assert_eq!(msg(15, 1, 0, 0), "CT verdict: Established, revnat=0");
        assert_eq!(msg(64, 0, 0, 0), "Socket assign: Success");
        assert_eq!(msg(64, 2, 0, 0), "Socket assign: no such file or directory");
        assert_eq!(
            msg(64, (-2i32) as u32, 0, 0),
            "Socket assign: errno 4294967294"
        );
        assert_eq!(
            msg(57, u32::from_ne_bytes([0, 0, 0x12, 0x34]), 0, 0),
            "Failed to map addr.p4=[::0:1234] to identity"
        );
        assert_eq!(
            msg(45, u32::from(8080u16.swap_bytes()), 1, 0),
            "Resolved L4 policy to: 8080 / ingress"
        );
        assert_eq!(msg(45, 0, 7, 0), "Resolved L4 policy to: 0 / ");
        assert_eq!(
            msg(13, 0xab, 0xcd, 0),
            "ICMPv6 neighbour soliciation for address ab:cd"
        );
    }

    #[test]
    fn debug_capture_and_trace_sock_lines() {
        let f = Formatter::default();
        let names = |i: u32| (i == 1).then(|| "lo".to_string());
        let rec = hex("030400000000000000000000000000000100000000000000");
        let d = decode(&rec, &DecodeOptions::default()).unwrap();
        let mut s = String::new();
        f.write_line_with(&mut s, Some(0), &d.notification, d.packet, &names);
        assert_eq!(s, "-> lo: [unknown]\n");
        let rec = hex("03090000000000000000000000000000000004d200000000");
        let d = decode(&rec, &DecodeOptions::default()).unwrap();
        s.clear();
        f.write_line(&mut s, Some(0), &d.notification, d.packet);
        assert_eq!(s, "-> proxy port 0: [unknown]\n");
        // Subtypes without an INFO prefix print nothing.
        let c = DebugCapture {
            subtype: 10,
            ..DebugCapture::default()
        };
        s.clear();
        f.write_line(&mut s, Some(0), &Notification::DebugCapture(c), &[]);
        assert_eq!(s, "");
        // Verbose: no newline after the message (Go), then the dissection when a packet exists.
        let vv = Formatter {
            verbosity: Verbosity::Verbose,
            hex: true,
            ..f
        };
        let c = DebugCapture {
            subtype: 4,
            arg1: 1,
            cap_len: 7,
            hash: 3,
            ..DebugCapture::default()
        };
        s.clear();
        vv.write_line(
            &mut s,
            Some(2),
            &Notification::DebugCapture(c),
            &hex(TCP_SYN)[..7],
        );
        let want = "CPU 02: MARK 0x3 FROM 0 DEBUG: 7 bytes, Delivery to ifindex 1\
                    00000000  02 33 45 67 89 ab 01                              |.3Eg...|\n";
        assert_eq!(s, format!("{MSG_SEPARATOR}\n{want}"));

        let sock =
            hex("07010200901f0000eeffc0000000000000000000000000000a0a0a0a000000000000000000000000");
        let dbg = Formatter {
            verbosity: Verbosity::Debug,
            ..f
        };
        assert_eq!(line(&dbg, Some(0), &sock), "CPU 00: [pre-xlate-fwd] cgroup_id: 0 sock_cookie: 12648430, dst [10.10.10.10]:8080 udp \n");
        assert_eq!(line(&f, Some(0), &sock), "");
        assert_eq!(line(&vv, Some(0), &sock), "");
    }

    #[test]
    fn json_lines_carry_all_fields() {
        let j = Formatter {
            verbosity: Verbosity::Json,
            ..Formatter::default()
        };
        let s = line(&j, Some(3), &drop_record(7));
        assert!(s.ends_with('\n'));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "drop");
        assert_eq!(v["cpu"], 3);
        assert_eq!(v["subtype"], 133);
        assert_eq!(v["hash"], 0x1234_abcd);
        assert_eq!(v["src_label"], 12345);
        assert_eq!(v["dst_label"], 2);
        assert_eq!(v["line"], 1234);
        assert_eq!(v["file"], 2);
        assert_eq!(v["ifindex"], 5);
        assert_eq!(v["ip_trace_id"], 7);
        assert_eq!(v["version"], 3);
        assert_eq!(v["header_len"], 48);
        assert_eq!(v["reason_name"], "DROP_POLICY");
        assert_eq!(v["reason_desc"], "Policy denied");
        assert_eq!(v["file_name"], "bpf_lxc.c");
        assert_eq!(v["src_identity"], "12345");
        assert_eq!(v["dst_identity"], "world");
        assert_eq!(v["packet_len"], 54);
        assert_eq!(v["summary"], "1.2.3.4:80 -> 5.6.7.8:443 tcp SYN");
        let v: Value = serde_json::from_str(&line(&j, None, &hex(REC_6_1))).unwrap();
        assert_eq!(v["type"], "trace");
        assert_eq!(v["cpu"], Value::Null);
        assert_eq!(v["encrypted"], true);
        assert_eq!(v["trace_reason"], "established");
        assert_eq!(v["observation_point"], "from-host");
        assert_eq!(v["orig_ip_str"], "0.0.0.0");
        let v: Value = serde_json::from_str(&line(
            &j,
            None,
            &hex("023ad204a63b082a0a0b00e90200000000000000"),
        ))
        .unwrap();
        assert_eq!(v["type"], "debug");
        assert_eq!(v["subtype_name"], "DBG_IP_ID_MAP_SUCCEED4");
        assert_eq!(
            v["message"],
            "Successfully mapped addr=10.11.0.233 to identity=2"
        );
        let v: Value = serde_json::from_str(&line(
            &j,
            None,
            &hex(
                "050000000000000000000000000000002e16000069ffffff00000001000000000000000000000000",
            ),
        ))
        .unwrap();
        assert_eq!(v["type"], "policy_verdict");
        assert_eq!(v["verdict"], -151);
        assert_eq!(v["drop_reason_desc"], "Stale or unroutable IP");
        assert_eq!(v["direction"], "ingress");
    }
}
