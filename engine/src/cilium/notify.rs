//! Byte-exact decoding of the notifications Cilium's datapath writes to the `cilium_events`
//! perf ring (docs/cilium-formats.md §2–§7): drop, trace, policy verdict, debug, debug
//! capture, socket trace and the removed pcap-recorder capture.
//!
//! Validation follows Cilium's Go decoders (`pkg/monitor/datapath_*.go` at `aeb2d1b68e0e`):
//! the same minimum lengths per type and version, the same version checks, native-endian
//! fields. Where Go is ambiguous or unsafe this decoder differs on purpose, and says so:
//! * the packet is exactly `min(len_cap, bytes present)` after the header; the 0..7 bytes of
//!   perf padding after it are reported as `trailing`, never handed to a dissector;
//! * the layouts that cannot be told apart by their version byte (32-byte drop v0 of
//!   ≤1.12, 32-byte policy verdict of ≤1.18) are chosen by [`Layout`];
//! * a header extension (`ext_version`) that does not fit in the record is an error, where Go
//!   would later panic slicing past the end.
//!
//! Input is an untrusted ring record. Nothing here indexes past the data, unwraps, panics or
//! allocates.

use serde::{Deserialize, Serialize};

use super::summary::IpAddr;
use super::tables::{CiliumRelease, TRACE_REASON_ENCRYPT_MASK};
use crate::wire::Endian;

/// `CILIUM_NOTIFY_*` message types (byte 0 of every sample).
pub const NOTIFY_UNSPEC: u8 = 0;
pub const NOTIFY_DROP: u8 = 1;
pub const NOTIFY_DBG_MSG: u8 = 2;
pub const NOTIFY_DBG_CAPTURE: u8 = 3;
pub const NOTIFY_TRACE: u8 = 4;
pub const NOTIFY_POLICY_VERDICT: u8 = 5;
/// The pcap recorder's `capture_msg`, removed in Cilium 1.19.
pub const NOTIFY_RECORDER_CAPTURE: u8 = 6;
pub const NOTIFY_TRACE_SOCK: u8 = 7;
/// Agent-only types: injected by the agent into the monitor socket, never in the perf ring.
pub const MESSAGE_TYPE_ACCESS_LOG: u8 = 129;
pub const MESSAGE_TYPE_AGENT: u8 = 130;

/// Which notification struct a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Drop,
    Debug,
    DebugCapture,
    Trace,
    PolicyVerdict,
    RecorderCapture,
    TraceSock,
}

impl MessageKind {
    /// Every kind, in type-byte order.
    pub const ALL: [MessageKind; 7] = [
        MessageKind::Drop,
        MessageKind::Debug,
        MessageKind::DebugCapture,
        MessageKind::Trace,
        MessageKind::PolicyVerdict,
        MessageKind::RecorderCapture,
        MessageKind::TraceSock,
    ];

    /// The `cilium monitor -t` name of a type byte (`unknown` for others).
    pub fn name_of_type_byte(t: u8) -> &'static str {
        MessageKind::from_type_byte(t).map_or("unknown", MessageKind::monitor_name)
    }

    /// The Go struct name used in Cilium's error messages.
    pub fn go_name(self) -> &'static str {
        match self {
            MessageKind::Drop => "DropNotify",
            MessageKind::Debug => "DebugMsg",
            MessageKind::DebugCapture => "DebugCapture",
            MessageKind::Trace => "TraceNotify",
            MessageKind::PolicyVerdict => "PolicyVerdictNotify",
            MessageKind::RecorderCapture => "RecorderCapture",
            MessageKind::TraceSock => "TraceSockNotify",
        }
    }

    /// `cilium monitor --type` name.
    pub fn monitor_name(self) -> &'static str {
        match self {
            MessageKind::Drop => "drop",
            MessageKind::Debug => "debug",
            MessageKind::DebugCapture => "capture",
            MessageKind::Trace => "trace",
            MessageKind::PolicyVerdict => "policy-verdict",
            MessageKind::RecorderCapture => "recorder",
            MessageKind::TraceSock => "trace-sock",
        }
    }

    pub fn type_byte(self) -> u8 {
        match self {
            MessageKind::Drop => NOTIFY_DROP,
            MessageKind::Debug => NOTIFY_DBG_MSG,
            MessageKind::DebugCapture => NOTIFY_DBG_CAPTURE,
            MessageKind::Trace => NOTIFY_TRACE,
            MessageKind::PolicyVerdict => NOTIFY_POLICY_VERDICT,
            MessageKind::RecorderCapture => NOTIFY_RECORDER_CAPTURE,
            MessageKind::TraceSock => NOTIFY_TRACE_SOCK,
        }
    }

    pub fn from_type_byte(t: u8) -> Option<MessageKind> {
        Some(match t {
            NOTIFY_DROP => MessageKind::Drop,
            NOTIFY_DBG_MSG => MessageKind::Debug,
            NOTIFY_DBG_CAPTURE => MessageKind::DebugCapture,
            NOTIFY_TRACE => MessageKind::Trace,
            NOTIFY_POLICY_VERDICT => MessageKind::PolicyVerdict,
            NOTIFY_RECORDER_CAPTURE => MessageKind::RecorderCapture,
            NOTIFY_TRACE_SOCK => MessageKind::TraceSock,
            _ => return None,
        })
    }
}

/// `cilium monitor -t` names (`drop`, `policy-verdict`, ...).
impl core::str::FromStr for MessageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MessageKind::ALL
            .into_iter()
            .find(|k| k.monitor_name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = MessageKind::ALL.iter().map(|k| k.monitor_name()).collect();
                format!("{s} is not a Cilium event type: use {}", names.join(", "))
            })
    }
}

impl core::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.go_name())
    }
}

/// Why a record could not be decoded. The texts follow Cilium's Go error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("empty notification record")]
    Empty,
    #[error("unknown notification type {0}")]
    UnknownType(u8),
    #[error("unexpected {kind} data length, expected at least {need} but got {have}")]
    TooShort {
        kind: MessageKind,
        need: usize,
        have: usize,
    },
    #[error("Unrecognized {} event (version {version})", short_name(*.kind))]
    UnknownVersion { kind: MessageKind, version: u8 },
}

fn short_name(k: MessageKind) -> &'static str {
    match k {
        MessageKind::Drop => "drop",
        MessageKind::Trace => "trace",
        other => other.monitor_name(),
    }
}

/// The drop v0 layout in use (`version` is 0 in both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DropV0Layout {
    /// 1.13 – 1.16: `line/file/ext_error` at 28, `ifindex` at 32 (36 bytes).
    #[default]
    Len36,
    /// ≤ 1.12: `unused u32` at 28, 32 bytes.
    Len32,
}

/// The policy-verdict layout in use (same `version` byte in both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyVerdictLayout {
    /// 1.19+: `cookie` at 32, 40 bytes.
    #[default]
    Len40,
    /// ≤ 1.18: 32 bytes, no cookie.
    Len32,
}

/// Choice of the layouts the version byte does not identify (docs/cilium-formats.md §14.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub drop_v0: DropV0Layout,
    pub policy_verdict: PolicyVerdictLayout,
}

impl Layout {
    /// The layouts a given release emits.
    pub fn for_release(r: CiliumRelease) -> Layout {
        let policy_verdict = if r.at_least(CiliumRelease::V1_19) {
            PolicyVerdictLayout::Len40
        } else {
            PolicyVerdictLayout::Len32
        };
        Layout {
            drop_v0: DropV0Layout::Len36,
            policy_verdict,
        }
    }
}

/// `ext_version` -> extra header bytes (`*ExtensionLengthFromVersion` in Go). Upstream only
/// registers `0 -> 0`; an unregistered `ext_version` adds 0 bytes, as Go's map default does,
/// and is flagged in [`Decoded::unknown_ext`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtLengths([Option<u16>; 256]);

impl Default for ExtLengths {
    fn default() -> Self {
        let mut t = [None; 256];
        t[0] = Some(0);
        ExtLengths(t)
    }
}

impl ExtLengths {
    /// Register (or replace) the extension length of `ext_version`.
    pub fn set(&mut self, ext_version: u8, len: u16) -> &mut Self {
        if let Some(slot) = self.0.get_mut(usize::from(ext_version)) {
            *slot = Some(len);
        }
        self
    }

    pub fn get(&self, ext_version: u8) -> Option<u16> {
        self.0.get(usize::from(ext_version)).copied().flatten()
    }
}

/// Decoder configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    pub layout: Layout,
    pub ext_lengths: ExtLengths,
}

impl DecodeOptions {
    pub fn for_release(r: CiliumRelease) -> Self {
        DecodeOptions {
            layout: Layout::for_release(r),
            ext_lengths: ExtLengths::default(),
        }
    }
}

impl Default for DecodeOptions {
    /// The newest release's layouts ([`CiliumRelease::Main`]).
    fn default() -> Self {
        DecodeOptions::for_release(CiliumRelease::default())
    }
}

// ---------------------------------------------------------------------------------------------
// Field access over a validated prefix.

/// The first bytes of a record, zero-padded to a fixed size so that every field read is a
/// constant in-bounds access. Callers validate the length before reading a field.
struct Hdr([u8; 56]);

impl Hdr {
    #[inline(always)]
    fn new(d: &[u8]) -> Hdr {
        if let Some(full) = d.first_chunk::<56>() {
            return Hdr(*full);
        }
        let mut b = [0u8; 56];
        let n = d.len().min(56);
        if let (Some(dst), Some(src)) = (b.get_mut(..n), d.get(..n)) {
            dst.copy_from_slice(src);
        }
        Hdr(b)
    }

    #[inline(always)]
    fn u8(&self, at: usize) -> u8 {
        crate::wire::u8_at(&self.0, at).unwrap_or(0)
    }

    #[inline(always)]
    fn u16(&self, at: usize) -> u16 {
        crate::wire::u16_at(&self.0, at, Endian::Native).unwrap_or(0)
    }

    #[inline(always)]
    fn u32(&self, at: usize) -> u32 {
        crate::wire::u32_at(&self.0, at, Endian::Native).unwrap_or(0)
    }

    #[inline(always)]
    fn u64(&self, at: usize) -> u64 {
        crate::wire::u64_at(&self.0, at, Endian::Native).unwrap_or(0)
    }

    /// `N` bytes at `at` (zeroes past the end).
    #[inline(always)]
    fn arr<const N: usize>(&self, at: usize) -> [u8; N] {
        crate::wire::bytes_at(&self.0, at, N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
}

fn need(kind: MessageKind, need: usize, have: usize) -> Result<(), NotifyError> {
    if have < need {
        Err(NotifyError::TooShort { kind, need, have })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Structs

/// `struct drop_notify` (type 1), any version. Fields a version lacks are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct DropNotify {
    pub msg_type: u8,
    /// The drop reason (`-DROP_*`, or a `REASON_*` code).
    pub subtype: u8,
    /// Endpoint id of the program that dropped (0 outside endpoints).
    pub source: u16,
    /// `skb->hash`.
    pub hash: u32,
    pub orig_len: u32,
    pub cap_len: u16,
    pub version: u8,
    pub ext_version: u8,
    pub src_label: u32,
    pub dst_label: u32,
    pub dst_id: u32,
    pub line: u16,
    /// Source-file id (per-release table).
    pub file: u8,
    pub ext_error: i8,
    pub ifindex: u32,
    /// `CLS_FLAG_*` (version ≥ 2).
    pub flags: u8,
    /// IP-option trace id (version ≥ 3).
    pub ip_trace_id: u64,
    /// Fixed header bytes of the decoded layout: 32, 36, 40 or 48 (without extension).
    pub header_len: u8,
}

impl DropNotify {
    /// Decode a drop header as `DropNotify.Decode` does (byte 0 is not checked).
    pub fn decode(data: &[u8], layout: Layout) -> Result<DropNotify, NotifyError> {
        let k = MessageKind::Drop;
        let have = data.len();
        let short_v0 = layout.drop_v0 == DropV0Layout::Len32;
        // The 32-byte layout still needs the version byte to pick it.
        let min = if short_v0 { 32 } else { 36 };
        need(k, min, have)?;
        let h = Hdr::new(data);
        let version = h.u8(14);
        if version > 3 {
            return Err(NotifyError::UnknownVersion { kind: k, version });
        }
        if short_v0 && version != 0 {
            need(k, 36, have)?;
        }
        let header_len: u8 = match version {
            0 if short_v0 => 32,
            0 | 1 => 36,
            2 => 40,
            _ => 48,
        };
        need(k, usize::from(header_len), have)?;
        let mut n = DropNotify {
            msg_type: h.u8(0),
            subtype: h.u8(1),
            source: h.u16(2),
            hash: h.u32(4),
            orig_len: h.u32(8),
            cap_len: h.u16(12),
            version,
            ext_version: h.u8(15),
            src_label: h.u32(16),
            dst_label: h.u32(20),
            dst_id: h.u32(24),
            header_len,
            ..DropNotify::default()
        };
        if header_len >= 36 {
            n.line = h.u16(28);
            n.file = h.u8(30);
            n.ext_error = h.u8(31) as i8;
            n.ifindex = h.u32(32);
        }
        if version >= 2 {
            n.flags = h.u8(36);
        }
        if version >= 3 {
            n.ip_trace_id = h.u64(40);
        }
        Ok(n)
    }

    pub fn reason(&self) -> u8 {
        self.subtype
    }
    pub fn is_ipv6(&self) -> bool {
        self.flags & 0x01 != 0
    }
    pub fn is_l3_device(&self) -> bool {
        self.flags & 0x02 != 0
    }
    pub fn is_vxlan(&self) -> bool {
        self.flags & 0x04 != 0
    }
    pub fn is_geneve(&self) -> bool {
        self.flags & 0x08 != 0
    }
}

/// `struct trace_notify` (type 4), any version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceNotify {
    pub msg_type: u8,
    /// Observation point (`TRACE_TO_LXC` ...).
    pub obs_point: u8,
    pub source: u16,
    pub hash: u32,
    pub orig_len: u32,
    pub cap_len: u16,
    pub version: u8,
    pub ext_version: u8,
    pub src_label: u32,
    pub dst_label: u32,
    /// Endpoint id (TO_LXC) or proxy port (TO_PROXY), host order.
    pub dst_id: u16,
    /// Trace reason, with the 0x80 encrypt bit.
    pub reason: u8,
    pub flags: u8,
    pub ifindex: u32,
    /// Original source address before reverse NAT (version ≥ 1); IPv4 in bytes 0..4.
    pub orig_ip: [u8; 16],
    /// Version ≥ 2.
    pub ip_trace_id: u64,
    /// 32, 48 or 56.
    pub header_len: u8,
}

impl TraceNotify {
    /// Decode as `TraceNotify.Decode` does (byte 0 is not checked).
    pub fn decode(data: &[u8]) -> Result<TraceNotify, NotifyError> {
        let k = MessageKind::Trace;
        let have = data.len();
        need(k, 32, have)?;
        let h = Hdr::new(data);
        let version = h.u8(14);
        if version > 2 {
            return Err(NotifyError::UnknownVersion { kind: k, version });
        }
        let header_len: u8 = match version {
            0 => 32,
            1 => 48,
            _ => 56,
        };
        need(k, usize::from(header_len), have)?;
        let mut n = TraceNotify {
            msg_type: h.u8(0),
            obs_point: h.u8(1),
            source: h.u16(2),
            hash: h.u32(4),
            orig_len: h.u32(8),
            cap_len: h.u16(12),
            version,
            ext_version: h.u8(15),
            src_label: h.u32(16),
            dst_label: h.u32(20),
            dst_id: h.u16(24),
            reason: h.u8(26),
            flags: h.u8(27),
            ifindex: h.u32(28),
            header_len,
            ..TraceNotify::default()
        };
        if version >= 1 {
            n.orig_ip = h.arr(32);
        }
        if version >= 2 {
            n.ip_trace_id = h.u64(48);
        }
        Ok(n)
    }

    pub fn is_encrypted(&self) -> bool {
        self.reason & TRACE_REASON_ENCRYPT_MASK != 0
    }
    /// The reason without the encrypt bit.
    pub fn trace_reason(&self) -> u8 {
        self.reason & !TRACE_REASON_ENCRYPT_MASK
    }
    pub fn trace_reason_is_known(&self) -> bool {
        self.trace_reason() != 5
    }
    pub fn trace_reason_is_reply(&self) -> bool {
        self.trace_reason() == 2
    }
    pub fn trace_reason_is_encap(&self) -> bool {
        self.trace_reason() == 6
    }
    pub fn trace_reason_is_decap(&self) -> bool {
        self.trace_reason() == 7
    }
    pub fn is_ipv6(&self) -> bool {
        self.flags & 0x01 != 0
    }
    pub fn is_l3_device(&self) -> bool {
        self.flags & 0x02 != 0
    }
    pub fn is_vxlan(&self) -> bool {
        self.flags & 0x04 != 0
    }
    pub fn is_geneve(&self) -> bool {
        self.flags & 0x08 != 0
    }

    /// `OriginalIP()`: 16 bytes if the IPv6 flag is set, else the first 4.
    pub fn original_ip(&self) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(self.orig_ip)
        } else {
            let o = self.orig_ip;
            IpAddr::V4([o[0], o[1], o[2], o[3]])
        }
    }
}

/// `struct policy_verdict_notify` (type 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyVerdictNotify {
    pub msg_type: u8,
    pub subtype: u8,
    pub source: u16,
    pub hash: u32,
    pub orig_len: u32,
    pub cap_len: u16,
    pub version: u8,
    pub ext_version: u8,
    /// Source identity for ingress, destination identity for egress.
    pub remote_label: u32,
    /// < 0: -(drop reason); 0: allowed; > 0: proxy port (network order read natively).
    pub verdict: i32,
    /// Host order.
    pub dst_port: u16,
    pub proto: u8,
    /// Bits: 0-1 direction, 2 ipv6, 3-5 match type, 6 audited, 7 l3.
    pub flags: u8,
    pub auth_type: u8,
    /// Policy-log cookie (40-byte layout only).
    pub cookie: u32,
    /// 32 or 40.
    pub header_len: u8,
}

impl PolicyVerdictNotify {
    /// Decode as `PolicyVerdictNotify.Decode` does (byte 0 and version are not checked).
    pub fn decode(data: &[u8], layout: Layout) -> Result<PolicyVerdictNotify, NotifyError> {
        let header_len: u8 = match layout.policy_verdict {
            PolicyVerdictLayout::Len40 => 40,
            PolicyVerdictLayout::Len32 => 32,
        };
        need(
            MessageKind::PolicyVerdict,
            usize::from(header_len),
            data.len(),
        )?;
        let h = Hdr::new(data);
        Ok(PolicyVerdictNotify {
            msg_type: h.u8(0),
            subtype: h.u8(1),
            source: h.u16(2),
            hash: h.u32(4),
            orig_len: h.u32(8),
            cap_len: h.u16(12),
            version: h.u8(14),
            ext_version: h.u8(15),
            remote_label: h.u32(16),
            verdict: h.u32(20) as i32,
            dst_port: h.u16(24),
            proto: h.u8(26),
            flags: h.u8(27),
            auth_type: h.u8(28),
            cookie: if header_len == 40 { h.u32(32) } else { 0 },
            header_len,
        })
    }

    /// 1 ingress, 2 egress.
    pub fn direction(&self) -> u8 {
        self.flags & 0x03
    }
    pub fn is_ingress(&self) -> bool {
        self.direction() == 1
    }
    pub fn is_ipv6(&self) -> bool {
        self.flags & 0x04 != 0
    }
    pub fn match_type(&self) -> u8 {
        (self.flags & 0x38) >> 3
    }
    pub fn is_audited(&self) -> bool {
        self.flags & 0x40 != 0
    }
    pub fn is_l3(&self) -> bool {
        self.flags & 0x80 != 0
    }
    /// `-verdict` when the verdict is a drop.
    pub fn drop_reason(&self) -> Option<u8> {
        if self.verdict < 0 {
            u8::try_from(self.verdict.unsigned_abs()).ok()
        } else {
            None
        }
    }
}

/// `struct debug_msg` (type 2), 20 bytes, no packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugMsg {
    pub msg_type: u8,
    /// `DBG_*`.
    pub subtype: u8,
    pub source: u16,
    pub hash: u32,
    pub arg1: u32,
    pub arg2: u32,
    pub arg3: u32,
}

impl DebugMsg {
    pub fn decode(data: &[u8]) -> Result<DebugMsg, NotifyError> {
        need(MessageKind::Debug, 20, data.len())?;
        let h = Hdr::new(data);
        Ok(DebugMsg {
            msg_type: h.u8(0),
            subtype: h.u8(1),
            source: h.u16(2),
            hash: h.u32(4),
            arg1: h.u32(8),
            arg2: h.u32(12),
            arg3: h.u32(16),
        })
    }
}

/// `struct debug_capture_msg` (type 3), 24 bytes + packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugCapture {
    pub msg_type: u8,
    /// `DBG_CAPTURE_*`.
    pub subtype: u8,
    pub source: u16,
    pub hash: u32,
    pub orig_len: u32,
    pub cap_len: u16,
    pub version: u8,
    pub ext_version: u8,
    pub arg1: u32,
    pub arg2: u32,
}

impl DebugCapture {
    pub fn decode(data: &[u8]) -> Result<DebugCapture, NotifyError> {
        need(MessageKind::DebugCapture, 24, data.len())?;
        let h = Hdr::new(data);
        Ok(DebugCapture {
            msg_type: h.u8(0),
            subtype: h.u8(1),
            source: h.u16(2),
            hash: h.u32(4),
            orig_len: h.u32(8),
            cap_len: h.u16(12),
            version: h.u8(14),
            ext_version: h.u8(15),
            arg1: h.u32(16),
            arg2: h.u32(20),
        })
    }

    /// The proxy port of `DBG_CAPTURE_PROXY_PRE/POST` as `cilium monitor` reads it
    /// (`ntohs(uint16(arg1))`).
    pub fn proxy_port_monitor(&self) -> u16 {
        (self.arg1 as u16).swap_bytes()
    }

    /// The proxy port as Hubble reads it (`ntohl(arg1)`), see docs/cilium-formats.md §7.2.
    pub fn proxy_port_hubble(&self) -> u32 {
        u32::from_be_bytes(self.arg1.to_ne_bytes())
    }
}

/// `struct trace_sock_notify` (type 7), 40 bytes, no capture header, no packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceSockNotify {
    pub msg_type: u8,
    pub xlate_point: u8,
    /// 0 unknown, 1 TCP, 2 UDP.
    pub l4_proto: u8,
    /// Bit 0: IPv6.
    pub flags: u8,
    /// Host order.
    pub dst_port: u16,
    pub sock_cookie: u64,
    pub cgroup_id: u64,
    pub dst_ip: [u8; 16],
}

impl TraceSockNotify {
    pub fn decode(data: &[u8]) -> Result<TraceSockNotify, NotifyError> {
        need(MessageKind::TraceSock, 40, data.len())?;
        let h = Hdr::new(data);
        Ok(TraceSockNotify {
            msg_type: h.u8(0),
            xlate_point: h.u8(1),
            l4_proto: h.u8(2),
            flags: h.u8(3),
            dst_port: h.u16(4),
            sock_cookie: h.u64(8),
            cgroup_id: h.u64(16),
            dst_ip: h.arr(24),
        })
    }

    pub fn is_ipv6(&self) -> bool {
        self.flags & 0x01 != 0
    }

    pub fn dst(&self) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(self.dst_ip)
        } else {
            let a = self.dst_ip;
            IpAddr::V4([a[0], a[1], a[2], a[3]])
        }
    }
}

/// `struct capture_msg` (type 6) of the removed pcap recorder (≤ 1.18), 24 bytes + packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct RecorderCapture {
    pub msg_type: u8,
    /// 1 ingress, 2 egress.
    pub subtype: u8,
    /// The recorder rule id.
    pub rule_id: u16,
    /// Always zero.
    pub hash: u32,
    /// Boot-time nanoseconds (`bpf_ktime_get_boot_ns`).
    pub tv_boot: u64,
    pub cap_len: u32,
    pub orig_len: u32,
}

impl RecorderCapture {
    pub fn decode(data: &[u8]) -> Result<RecorderCapture, NotifyError> {
        need(MessageKind::RecorderCapture, 24, data.len())?;
        let h = Hdr::new(data);
        Ok(RecorderCapture {
            msg_type: h.u8(0),
            subtype: h.u8(1),
            rule_id: h.u16(2),
            hash: h.u32(4),
            tv_boot: h.u64(8),
            cap_len: h.u32(16),
            orig_len: h.u32(20),
        })
    }
}

/// One decoded notification. `Copy` and heap-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notification {
    Drop(DropNotify),
    Trace(TraceNotify),
    PolicyVerdict(PolicyVerdictNotify),
    Debug(DebugMsg),
    DebugCapture(DebugCapture),
    TraceSock(TraceSockNotify),
    RecorderCapture(RecorderCapture),
}

impl Notification {
    /// The notification in an object of our JSON (`Formatter::write_json`, the `cilium`
    /// member of `--json` lines): the inverse of its `Serialize`; the members that rendering
    /// adds (`cpu`, names, summary) are ignored, missing fields are 0.
    pub fn from_json(m: &serde_json::Map<String, serde_json::Value>) -> Option<Notification> {
        Notification::deserialize(m).ok()
    }

    pub fn kind(&self) -> MessageKind {
        match self {
            Notification::Drop(_) => MessageKind::Drop,
            Notification::Trace(_) => MessageKind::Trace,
            Notification::PolicyVerdict(_) => MessageKind::PolicyVerdict,
            Notification::Debug(_) => MessageKind::Debug,
            Notification::DebugCapture(_) => MessageKind::DebugCapture,
            Notification::TraceSock(_) => MessageKind::TraceSock,
            Notification::RecorderCapture(_) => MessageKind::RecorderCapture,
        }
    }

    /// `len_cap`, for the types that carry a packet.
    pub fn cap_len(&self) -> u32 {
        match self {
            Notification::Drop(n) => u32::from(n.cap_len),
            Notification::Trace(n) => u32::from(n.cap_len),
            Notification::PolicyVerdict(n) => u32::from(n.cap_len),
            Notification::DebugCapture(n) => u32::from(n.cap_len),
            Notification::RecorderCapture(n) => n.cap_len,
            Notification::Debug(_) | Notification::TraceSock(_) => 0,
        }
    }

    /// `len_orig`, for the types that carry a packet.
    pub fn orig_len(&self) -> u32 {
        match self {
            Notification::Drop(n) => n.orig_len,
            Notification::Trace(n) => n.orig_len,
            Notification::PolicyVerdict(n) => n.orig_len,
            Notification::DebugCapture(n) => n.orig_len,
            Notification::RecorderCapture(n) => n.orig_len,
            Notification::Debug(_) | Notification::TraceSock(_) => 0,
        }
    }
}

/// A decoded record and where its packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub notification: Notification,
    /// Exactly `min(len_cap, bytes present after the header)`.
    pub packet: &'a [u8],
    /// Offset of the packet: fixed header + extension (Go's `DataOffset()`).
    pub header_len: usize,
    /// Bytes after the packet that were ignored (perf padding, 0..7 in real records).
    pub trailing: usize,
    /// `len_cap` bytes announced but not present.
    pub missing: usize,
    /// `ext_version` had no registered length (counted as +0 bytes, like Go).
    pub unknown_ext: bool,
}

/// Decode one perf sample (`struct <notify> ‖ packet ‖ padding`), dispatching on byte 0.
pub fn decode<'a>(data: &'a [u8], opts: &DecodeOptions) -> Result<Decoded<'a>, NotifyError> {
    let Some(&t) = data.first() else {
        return Err(NotifyError::Empty);
    };
    let kind = MessageKind::from_type_byte(t).ok_or(NotifyError::UnknownType(t))?;
    let (notification, fixed, ext_version, cap_len) = match kind {
        MessageKind::Drop => {
            let n = DropNotify::decode(data, opts.layout)?;
            (
                Notification::Drop(n),
                n.header_len.into(),
                Some(n.ext_version),
                u32::from(n.cap_len),
            )
        }
        MessageKind::Trace => {
            let n = TraceNotify::decode(data)?;
            (
                Notification::Trace(n),
                n.header_len.into(),
                Some(n.ext_version),
                u32::from(n.cap_len),
            )
        }
        MessageKind::PolicyVerdict => {
            let n = PolicyVerdictNotify::decode(data, opts.layout)?;
            let nt = Notification::PolicyVerdict(n);
            (
                nt,
                n.header_len.into(),
                Some(n.ext_version),
                u32::from(n.cap_len),
            )
        }
        MessageKind::DebugCapture => {
            let n = DebugCapture::decode(data)?;
            (
                Notification::DebugCapture(n),
                24usize,
                Some(n.ext_version),
                u32::from(n.cap_len),
            )
        }
        MessageKind::Debug => (Notification::Debug(DebugMsg::decode(data)?), 20, None, 0),
        MessageKind::TraceSock => (
            Notification::TraceSock(TraceSockNotify::decode(data)?),
            40,
            None,
            0,
        ),
        MessageKind::RecorderCapture => {
            let n = RecorderCapture::decode(data)?;
            (Notification::RecorderCapture(n), 24, None, n.cap_len)
        }
    };
    let (ext_len, unknown_ext) = match ext_version {
        None => (0usize, false),
        Some(e) => match opts.ext_lengths.get(e) {
            Some(l) => (usize::from(l), false),
            None => (0, true),
        },
    };
    let header_len = fixed + ext_len;
    let rest = data.get(header_len..).ok_or(NotifyError::TooShort {
        kind,
        need: header_len,
        have: data.len(),
    })?;
    let cap = usize::try_from(cap_len).unwrap_or(usize::MAX);
    let take = cap.min(rest.len());
    let packet = rest.get(..take).unwrap_or(&[]);
    Ok(Decoded {
        notification,
        packet,
        header_len,
        trailing: rest.len() - take,
        missing: cap - take,
        unknown_ext,
    })
}

/// Counters over many [`decode`] results: what was decoded, what was skipped and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    pub drop: u64,
    pub trace: u64,
    pub policy_verdict: u64,
    pub debug: u64,
    pub debug_capture: u64,
    pub trace_sock: u64,
    pub recorder_capture: u64,
    /// Records skipped: empty.
    pub skipped_empty: u64,
    /// Records skipped: unknown type byte.
    pub skipped_unknown_type: u64,
    /// Records skipped: shorter than their header.
    pub skipped_too_short: u64,
    /// Records skipped: unsupported version.
    pub skipped_unknown_version: u64,
    /// Decoded records whose `ext_version` had no registered length.
    pub unknown_ext: u64,
    /// Decoded records with ignored trailing bytes, and the byte total.
    pub trailing_records: u64,
    pub trailing_bytes: u64,
    /// Decoded records whose packet is shorter than `len_cap`, and the missing byte total.
    pub short_packets: u64,
    pub missing_bytes: u64,
}

impl DecodeStats {
    pub fn record(&mut self, r: &Result<Decoded<'_>, NotifyError>) {
        match r {
            Ok(d) => {
                match d.notification.kind() {
                    MessageKind::Drop => self.drop += 1,
                    MessageKind::Trace => self.trace += 1,
                    MessageKind::PolicyVerdict => self.policy_verdict += 1,
                    MessageKind::Debug => self.debug += 1,
                    MessageKind::DebugCapture => self.debug_capture += 1,
                    MessageKind::TraceSock => self.trace_sock += 1,
                    MessageKind::RecorderCapture => self.recorder_capture += 1,
                }
                self.unknown_ext += u64::from(d.unknown_ext);
                if d.trailing > 0 {
                    self.trailing_records += 1;
                    self.trailing_bytes += d.trailing as u64;
                }
                if d.missing > 0 {
                    self.short_packets += 1;
                    self.missing_bytes += d.missing as u64;
                }
            }
            Err(NotifyError::Empty) => self.skipped_empty += 1,
            Err(NotifyError::UnknownType(_)) => self.skipped_unknown_type += 1,
            Err(NotifyError::TooShort { .. }) => self.skipped_too_short += 1,
            Err(NotifyError::UnknownVersion { .. }) => self.skipped_unknown_version += 1,
        }
    }

    /// `(reason, count)` of skipped records, for `..._skipped_total{reason}` counters.
    pub fn skipped(&self) -> [(&'static str, u64); 4] {
        [
            ("empty", self.skipped_empty),
            ("unknown_type", self.skipped_unknown_type),
            ("too_short", self.skipped_too_short),
            ("unknown_version", self.skipped_unknown_version),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_kinds_round_trip_their_names_and_bytes() {
        for k in MessageKind::ALL {
            assert_eq!(k.monitor_name().parse::<MessageKind>(), Ok(k));
            assert_eq!(MessageKind::from_type_byte(k.type_byte()), Some(k));
            assert_eq!(
                MessageKind::name_of_type_byte(k.type_byte()),
                k.monitor_name()
            );
        }
        assert_eq!(MessageKind::name_of_type_byte(0), "unknown");
        assert!("l7"
            .parse::<MessageKind>()
            .unwrap_err()
            .contains("use drop, debug"));
    }

    use crate::testutil::hex;

    // docs/cilium-vectors.md §1
    const DROP_V1: &str = "00010302070605040b0a0908100e010014131211181716151c1b1a191e1d202125242322000000000000000000000000";
    const DROP_V3: &str = "00010302070605040b0a0908100e030014131211181716151c1b1a191e1d2021252423220f0000009900000000000000";
    const DROP_V2: &str = "00010302070605040b0a0908100e020014131211181716151c1b1a191e1d202125242322000000000000000000000000";
    const DROP_V3_TRACE: &str = "00010302070605040b0a0908100e030014131211181716151c1b1a191e1d202125242322000000009909000000000000";
    const DROP_EXT: &str = "000000000000000000000000000003010000000000000000000000000000000000000000000000000000000000000000eeffc000efbeadde";
    // §2
    const TRACE_V2: &str = "00020403080706050c0b0a090e0d020014131211181716151a191b1c201f1e1d2122232425262728292a2b2c2d2e2f303231302f2e2d2c2b";
    // §3
    const POLICY: &str =
        "00010302070605040b0a09080d0c100014131211181716151a191b1c1d00000021201f1e00000000";
    // §4
    const DBG_CAPTURE: &str = "00010302070605040b0a090800000000100e0d0c14131211";
    const DBG_MSG: &str = "00010302070605040b0a0908100e0d0c14131211";
    // §5
    const SOCK: &str =
        "0001191a141300001817161500000000000000000000000002030405060708090a0b0c0d0e101112";
    // §6
    pub(crate) const REC_6_1: &str = "04070000077c1a39420000004200000001000000000000000000810000000000f68db22d21d9f68db22d21d9080045000034ea1c400040067831c0a83c0b0a10ecb2192bd3ce2aefd21cb498816780100198d89c00000101080a005ab062005ab0610000";
    pub(crate) const REC_6_2: &str = "0405a80b5f16f2b85600000056000000680000000000000000000000000000003333ff00b3e5129106e2221a86dd6000000000203affff0200000000000000000001ff00b3e5f00d0000000000000a100000000091958700507500000000f00d0000000000000a1000000000b3e50101129106e2221a000000000000";
    pub(crate) const REC_6_3: &str = "04070000077c1a3942000000420000000000000000000000000001040000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a801022118270f004690870c000003000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f90000000000000000050022000887f0000";
    const REC_6_4: &str = "04070000077c1a3942000000420000000000000000000000000001080000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a8010217c1270f0046408900006558000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f90000000000000000050022000887f0000";
    const REC_6_5: &str = "04070000077c1a3942000000420000000000000000000000000001040000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a801022118270f004690870c000003000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f9000000000000000005010200088710000";
    // §7
    const H_7_1: &str =
        "01820000000000000000000000000200000000000000000000000000000000000000000000000000";
    const H_7_2: [&str; 4] = [
        "010000000000000000000000000002000000000000000000000000002a0002000000000000000000",
        "0100d2040000000000000000000002000000000000000000000000000c0003000000000000000000",
        "0100d2040000000000000000000002000000000000000000000000002c0004000000000000000000",
        "0100d2040000000000000000000002000000000000000000000000002c0007000000000002000000",
    ];
    const H_7_3: &str = "010000000000000000000000000003007b000000c8010000000000000000010000000000000000000000000000000000";
    const H_7_3_T: &str = "010000000000000000000000000003007b000000c8010000000000000000010000000000000000007856341200000000";
    const H_7_4_FWD: &str =
        "05000c000000000000000000000000002e1600000000000000000012000000000000000000000000";
    const H_7_4_DROP: &str =
        "050000000000000000000000000000002e16000069ffffff00000001000000000000000000000000";
    const H_7_5: [&str; 3] = [
        "0400d20400000000000000000000000000000000000000000000000000000000",
        "040b92100000000000000000000001000000000000000000000000000000000001020304000000000000000000000000",
        "040d92100000000000000000000001000000000000000000000005020000000001020304000000000000000000000000",
    ];
    const H_7_6: [&str; 2] = [
        "030400000000000000000000000000000100000000000000",
        "03090000000000000000000000000000000004d200000000",
    ];
    // §8
    pub(crate) const DBG_8: [&str; 4] = [
        "0201000000000000010000000200000003000000",
        "023ad204a63b082a0a0b00e90200000000000000",
        "020bd2048456d59d810000000000000000000000",
        "02001027785634120a000000140000001e000000",
    ];
    // §9
    const SOCK_9: &str =
        "07010200901f0000eeffc0000000000000000000000000000a0a0a0a000000000000000000000000";

    fn all_vectors() -> Vec<Vec<u8>> {
        let mut v: Vec<&str> = vec![
            DROP_V1,
            DROP_V3,
            DROP_V2,
            DROP_V3_TRACE,
            DROP_EXT,
            TRACE_V2,
            POLICY,
            DBG_CAPTURE,
            DBG_MSG,
            SOCK,
            REC_6_1,
            REC_6_2,
            REC_6_3,
            REC_6_4,
            REC_6_5,
            H_7_1,
            H_7_3,
            H_7_3_T,
            H_7_4_FWD,
            H_7_4_DROP,
            SOCK_9,
        ];
        v.extend(H_7_2);
        v.extend(H_7_5);
        v.extend(H_7_6);
        v.extend(DBG_8);
        v.into_iter().map(hex).collect()
    }

    fn with_type(mut b: Vec<u8>, t: u8) -> Vec<u8> {
        b[0] = t;
        b
    }

    #[test]
    fn drop_v1_all_fields() {
        let b = hex(DROP_V1);
        let n = DropNotify::decode(&b, Layout::default()).unwrap();
        assert_eq!(
            n,
            DropNotify {
                msg_type: 0,
                subtype: 0x01,
                source: 0x0203,
                hash: 0x0405_0607,
                orig_len: 0x0809_0a0b,
                cap_len: 0x0e10,
                version: 1,
                ext_version: 0,
                src_label: 0x1112_1314,
                dst_label: 0x1516_1718,
                dst_id: 0x191a_1b1c,
                line: 0x1d1e,
                file: 0x20,
                ext_error: 0x21,
                ifindex: 0x2223_2425,
                flags: 0,
                ip_trace_id: 0,
                header_len: 36,
            }
        );
        // Through decode(): bytes 36..48 are the packet; len_cap 3600 > 12 present
        // (docs/cilium-formats.md §14 trap).
        let b = with_type(b, NOTIFY_DROP);
        let d = decode(&b, &DecodeOptions::default()).unwrap();
        assert_eq!(d.header_len, 36);
        assert_eq!(d.packet, &b[36..48]);
        assert_eq!(
            (d.trailing, d.missing, d.unknown_ext),
            (0, 3600 - 12, false)
        );
    }

    #[test]
    fn drop_v3_flags_and_trace_id() {
        let n = DropNotify::decode(&hex(DROP_V3), Layout::default()).unwrap();
        assert_eq!(
            (n.version, n.flags, n.ip_trace_id, n.header_len),
            (3, 0x0f, 0x99, 48)
        );
        assert_eq!(
            (n.line, n.file, n.ext_error, n.ifindex),
            (0x1d1e, 0x20, 0x21, 0x2223_2425)
        );
        assert!(n.is_ipv6() && n.is_l3_device() && n.is_vxlan() && n.is_geneve());
        let buf = with_type(hex(DROP_V3), 1);
        let d = decode(&buf, &DecodeOptions::default()).unwrap();
        assert_eq!((d.header_len, d.packet.len(), d.missing), (48, 0, 0x0e10));
    }

    #[test]
    fn drop_data_offset_per_version() {
        let o = DecodeOptions::default();
        let off = |h: &str| decode(&with_type(hex(h), 1), &o).unwrap().header_len;
        assert_eq!(off(DROP_V1), 36);
        assert_eq!(off(DROP_V2), 40);
        assert_eq!(off(DROP_V3_TRACE), 48);
        let n = DropNotify::decode(&hex(DROP_V2), Layout::default()).unwrap();
        assert_eq!((n.flags, n.ip_trace_id), (0, 0));
        let n = DropNotify::decode(&hex(DROP_V3_TRACE), Layout::default()).unwrap();
        assert_eq!(n.ip_trace_id, 0x999);
    }

    #[test]
    fn drop_extension_lengths() {
        let b = with_type(hex(DROP_EXT), 1);
        let mut o = DecodeOptions::default();
        o.ext_lengths.set(1, 4).set(2, 8).set(3, 16);
        let d = decode(&b, &o).unwrap();
        assert_eq!(d.header_len, 52);
        assert_eq!(
            &b[d.header_len..d.header_len + 4],
            &0xDEAD_BEEFu32.to_le_bytes()
        );
        assert!(!d.unknown_ext);
        assert_eq!((d.packet.len(), d.trailing), (0, 4));
        // Upstream tables: ext_version 1 unknown -> +0, flagged and counted.
        let d = decode(&b, &DecodeOptions::default()).unwrap();
        assert_eq!((d.header_len, d.unknown_ext, d.trailing), (48, true, 8));
        let mut stats = DecodeStats::default();
        stats.record(&Ok(d));
        assert_eq!(
            (
                stats.drop,
                stats.unknown_ext,
                stats.trailing_records,
                stats.trailing_bytes
            ),
            (1, 1, 1, 8)
        );
        // An extension longer than the record is an error, not a panic.
        o.ext_lengths.set(1, 100);
        assert_eq!(
            decode(&b, &o),
            Err(NotifyError::TooShort {
                kind: MessageKind::Drop,
                need: 148,
                have: 56
            })
        );
    }

    #[test]
    fn drop_errors() {
        let o = DecodeOptions::default();
        let b = with_type(hex(DROP_V3), 1);
        let e = decode(&b[..35], &o).unwrap_err();
        assert_eq!(
            e,
            NotifyError::TooShort {
                kind: MessageKind::Drop,
                need: 36,
                have: 35
            }
        );
        assert_eq!(
            e.to_string(),
            "unexpected DropNotify data length, expected at least 36 but got 35"
        );
        assert_eq!(
            decode(&b[..47], &o),
            Err(NotifyError::TooShort {
                kind: MessageKind::Drop,
                need: 48,
                have: 47
            })
        );
        let mut v4 = b.clone();
        v4[14] = 4;
        let e = decode(&v4, &o).unwrap_err();
        assert_eq!(
            e,
            NotifyError::UnknownVersion {
                kind: MessageKind::Drop,
                version: 4
            }
        );
        assert_eq!(e.to_string(), "Unrecognized drop event (version 4)");
    }

    #[test]
    fn drop_v0_32_byte_layout() {
        // ≤1.12 drop: 32-byte header, `unused` at 28, then a 4-byte packet (len_cap 4).
        let mut b = vec![0u8; 36];
        b[0] = 1;
        b[1] = 133;
        b[12] = 4; // len_cap
        b[16..20].copy_from_slice(&2u32.to_le_bytes());
        b[20..24].copy_from_slice(&300u32.to_le_bytes());
        b[24..28].copy_from_slice(&7u32.to_le_bytes());
        b[32..36].copy_from_slice(&[0x45, 0x00, 0x00, 0x54]);
        let old = DecodeOptions {
            layout: Layout {
                drop_v0: DropV0Layout::Len32,
                ..Layout::default()
            },
            ..DecodeOptions::default()
        };
        let d = decode(&b, &old).unwrap();
        let Notification::Drop(n) = d.notification else {
            panic!("not a drop")
        };
        assert_eq!(
            (n.header_len, n.subtype, n.src_label, n.dst_label, n.dst_id),
            (32, 133, 2, 300, 7)
        );
        assert_eq!((n.line, n.file, n.ext_error, n.ifindex), (0, 0, 0, 0));
        assert_eq!(d.packet, &[0x45, 0x00, 0x00, 0x54]);
        // The same bytes read with the 36-byte layout take the packet as ifindex
        // (docs/cilium-formats.md §4.6).
        let d = decode(&b, &DecodeOptions::default()).unwrap();
        let Notification::Drop(n) = d.notification else {
            panic!("not a drop")
        };
        assert_eq!((n.header_len, n.ifindex), (36, 0x5400_0045));
        assert_eq!((d.packet.len(), d.missing), (0, 4));
        // 32 bytes suffice for the old layout, not for the new one.
        assert!(decode(&b[..32], &old).is_ok());
        assert_eq!(
            decode(&b[..32], &DecodeOptions::default()),
            Err(NotifyError::TooShort {
                kind: MessageKind::Drop,
                need: 36,
                have: 32
            })
        );
    }

    #[test]
    fn trace_v2_all_fields() {
        let n = TraceNotify::decode(&hex(TRACE_V2)).unwrap();
        let mut ip = [0u8; 16];
        for (i, b) in ip.iter_mut().enumerate() {
            *b = 0x21 + i as u8;
        }
        assert_eq!(
            n,
            TraceNotify {
                msg_type: 0,
                obs_point: 0x02,
                source: 0x0304,
                hash: 0x0506_0708,
                orig_len: 0x090a_0b0c,
                cap_len: 0x0d0e,
                version: 2,
                ext_version: 0,
                src_label: 0x1112_1314,
                dst_label: 0x1516_1718,
                dst_id: 0x191a,
                reason: 0x1b,
                flags: 0x1c,
                ifindex: 0x1d1e_1f20,
                orig_ip: ip,
                ip_trace_id: 0x2b2c_2d2e_2f30_3132,
                header_len: 56,
            }
        );
    }

    #[test]
    fn trace_errors_and_extension() {
        let o = DecodeOptions::default();
        let e = TraceNotify::decode(&[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected TraceNotify data length, expected at least 32 but got 0"
        );
        let mut b = vec![0u8; 48];
        b[14] = 0xff;
        let e = TraceNotify::decode(&b).unwrap_err();
        assert_eq!(e.to_string(), "Unrecognized trace event (version 255)");
        // v1 needs 48, v2 needs 56.
        let mut b = vec![0u8; 47];
        b[0] = 4;
        b[14] = 1;
        assert_eq!(
            decode(&b, &o),
            Err(NotifyError::TooShort {
                kind: MessageKind::Trace,
                need: 48,
                have: 47
            })
        );
        // §2.3: extension scheme with version 2 (header 56).
        let mut b = vec![0u8; 56];
        b[0] = 4;
        b[14] = 2;
        b[15] = 2;
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        b.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        let mut o = DecodeOptions::default();
        o.ext_lengths.set(2, 8);
        let d = decode(&b, &o).unwrap();
        assert_eq!(d.header_len, 64);
        assert_eq!(&b[64..68], &0xDEAD_BEEFu32.to_le_bytes());
    }

    #[test]
    fn trace_reason_helpers() {
        let t = |reason, flags| TraceNotify {
            reason,
            flags,
            ..TraceNotify::default()
        };
        assert!(!t(5, 0).is_encrypted());
        assert_eq!(t(5, 0).trace_reason(), 5);
        assert!(!t(5, 0).trace_reason_is_known());
        assert!(t(0x85, 0).is_encrypted());
        assert_eq!(t(0x85, 0).trace_reason(), 5);
        assert!(t(1, 0).trace_reason_is_known() && t(0x81, 0).trace_reason_is_known());
        assert!(t(2, 0).trace_reason_is_reply() && t(0x82, 0).trace_reason_is_reply());
        assert!(t(6, 0).trace_reason_is_encap());
        assert!(t(7, 0).trace_reason_is_decap());
        let f = t(0, 0x0f);
        assert!(f.is_ipv6() && f.is_l3_device() && f.is_vxlan() && f.is_geneve());
    }

    #[test]
    fn policy_verdict_40() {
        let n = PolicyVerdictNotify::decode(&hex(POLICY), Layout::default()).unwrap();
        assert_eq!(
            n,
            PolicyVerdictNotify {
                msg_type: 0,
                subtype: 0x01,
                source: 0x0203,
                hash: 0x0405_0607,
                orig_len: 0x0809_0a0b,
                cap_len: 0x0c0d,
                version: 0x10,
                ext_version: 0,
                remote_label: 0x1112_1314,
                verdict: 0x1516_1718,
                dst_port: 0x191a,
                proto: 0x1b,
                flags: 0x1c,
                auth_type: 0x1d,
                cookie: 0x1e1f_2021,
                header_len: 40,
            }
        );
        assert_eq!(
            (
                n.direction(),
                n.is_ipv6(),
                n.match_type(),
                n.is_audited(),
                n.is_l3()
            ),
            (0, true, 3, false, false)
        );
        // Extension scheme (header 40).
        let mut b = with_type(hex(POLICY), 5);
        b[15] = 3;
        b[12] = 0;
        b[13] = 0;
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        let mut o = DecodeOptions::default();
        o.ext_lengths.set(3, 16);
        assert_eq!(decode(&b, &o).unwrap().header_len, 56);
        assert_eq!(&b[56..60], &0xDEAD_BEEFu32.to_le_bytes());
        let e = PolicyVerdictNotify::decode(&b[..39], Layout::default()).unwrap_err();
        assert_eq!(
            e,
            NotifyError::TooShort {
                kind: MessageKind::PolicyVerdict,
                need: 40,
                have: 39
            }
        );
    }

    #[test]
    fn policy_verdict_32_byte_layout() {
        // ≤1.18: 32-byte header then the packet; same version byte.
        let mut b = with_type(hex(POLICY)[..32].to_vec(), 5);
        b[12..14].copy_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&[0x45, 0, 0, 0x28, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        let o = DecodeOptions::for_release(CiliumRelease::V1_18);
        assert_eq!(o.layout.policy_verdict, PolicyVerdictLayout::Len32);
        let d = decode(&b, &o).unwrap();
        let Notification::PolicyVerdict(n) = d.notification else {
            panic!("not a verdict")
        };
        assert_eq!(
            (n.header_len, n.cookie, n.remote_label, n.auth_type),
            (32, 0, 0x1112_1314, 0x1d)
        );
        assert_eq!(
            (d.header_len, d.packet, d.trailing),
            (32, &[0x45, 0, 0, 0x28][..], 6)
        );
        // A 1.19+ decoder would swallow 8 packet bytes into the header.
        let d = decode(&b, &DecodeOptions::for_release(CiliumRelease::V1_19)).unwrap();
        assert_eq!(
            (d.header_len, d.packet, d.missing),
            (40, &[0xee, 0xff][..], 2)
        );
        assert_eq!(
            Layout::for_release(CiliumRelease::Main).policy_verdict,
            PolicyVerdictLayout::Len40
        );
    }

    #[test]
    fn debug_capture_and_msg() {
        let c = DebugCapture::decode(&hex(DBG_CAPTURE)).unwrap();
        assert_eq!(
            c,
            DebugCapture {
                msg_type: 0,
                subtype: 1,
                source: 0x0203,
                hash: 0x0405_0607,
                orig_len: 0x0809_0a0b,
                cap_len: 0,
                version: 0,
                ext_version: 0,
                arg1: 0x0c0d_0e10,
                arg2: 0x1112_1314,
            }
        );
        let m = DebugMsg::decode(&hex(DBG_MSG)).unwrap();
        assert_eq!(
            m,
            DebugMsg {
                msg_type: 0,
                subtype: 1,
                source: 0x0203,
                hash: 0x0405_0607,
                arg1: 0x0809_0a0b,
                arg2: 0x0c0d_0e10,
                arg3: 0x1112_1314,
            }
        );
        let e = DebugMsg::decode(&[0, 1, 2]).unwrap_err();
        assert_eq!(
            e,
            NotifyError::TooShort {
                kind: MessageKind::Debug,
                need: 20,
                have: 3
            }
        );
        // §7.6
        let o = DecodeOptions::default();
        let buf = hex(H_7_6[0]);
        let d = decode(&buf, &o).unwrap();
        let Notification::DebugCapture(c) = d.notification else {
            panic!()
        };
        assert_eq!((c.subtype, c.arg1, d.header_len), (4, 1, 24));
        let buf = hex(H_7_6[1]);
        let d = decode(&buf, &o).unwrap();
        let Notification::DebugCapture(c) = d.notification else {
            panic!()
        };
        assert_eq!(
            (c.subtype, c.proxy_port_hubble(), c.proxy_port_monitor()),
            (9, 1234, 0)
        );
    }

    #[test]
    fn trace_sock() {
        let n = TraceSockNotify::decode(&hex(SOCK)).unwrap();
        assert_eq!(
            n,
            TraceSockNotify {
                msg_type: 0,
                xlate_point: 1,
                l4_proto: 0x19,
                flags: 0x1a,
                dst_port: 0x1314,
                sock_cookie: 0x1516_1718,
                cgroup_id: 0,
                dst_ip: [2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb, 0xc, 0xd, 0xe, 0x10, 0x11, 0x12],
            }
        );
        let buf = hex(SOCK_9);
        let d = decode(&buf, &DecodeOptions::default()).unwrap();
        let Notification::TraceSock(s) = d.notification else {
            panic!()
        };
        assert_eq!(
            (s.xlate_point, s.l4_proto, s.dst_port, s.sock_cookie),
            (1, 2, 8080, 0xc0ffee)
        );
        assert_eq!(s.dst(), IpAddr::V4([10, 10, 10, 10]));
        assert_eq!((d.header_len, d.packet.len(), d.trailing), (40, 0, 0));
        assert_eq!(
            decode(&[], &DecodeOptions::default()),
            Err(NotifyError::Empty)
        );
        assert_eq!(
            decode(&[7], &DecodeOptions::default()),
            Err(NotifyError::TooShort {
                kind: MessageKind::TraceSock,
                need: 40,
                have: 1
            })
        );
    }

    #[test]
    fn real_trace_records_padding() {
        let o = DecodeOptions::default();
        // §6.1: 68 bytes follow the header, len_cap 66: 2 bytes of perf padding ignored.
        let b = hex(REC_6_1);
        let d = decode(&b, &o).unwrap();
        let Notification::Trace(t) = d.notification else {
            panic!()
        };
        assert_eq!(
            (t.obs_point, t.source, t.hash, t.orig_len, t.cap_len),
            (7, 0, 0x391a_7c07, 66, 66)
        );
        assert_eq!(
            (
                t.src_label,
                t.dst_label,
                t.dst_id,
                t.reason,
                t.flags,
                t.ifindex
            ),
            (1, 0, 0, 0x81, 0, 0)
        );
        assert!(t.is_encrypted());
        assert_eq!(t.trace_reason(), 1);
        assert_eq!(
            (d.header_len, d.packet.len(), d.trailing, d.missing),
            (32, 66, 2, 0)
        );
        assert_eq!(d.packet, &b[32..98]);
        // §6.2: 6 bytes of padding.
        let buf = hex(REC_6_2);
        let d = decode(&buf, &o).unwrap();
        let Notification::Trace(t) = d.notification else {
            panic!()
        };
        assert_eq!(
            (
                t.obs_point,
                t.source,
                t.hash,
                t.orig_len,
                t.cap_len,
                t.src_label
            ),
            (5, 2984, 0xb8f2_165f, 86, 86, 104)
        );
        assert_eq!((d.packet.len(), d.trailing), (86, 6));
        // §6.3/§6.5 (VXLAN) and §6.4 (Geneve): len_cap 66 of 104 bytes.
        for (h, flags) in [(REC_6_3, 4u8), (REC_6_4, 8), (REC_6_5, 4)] {
            let buf = hex(h);
            let d = decode(&buf, &o).unwrap();
            let Notification::Trace(t) = d.notification else {
                panic!()
            };
            assert_eq!(
                (t.flags, t.reason, d.packet.len(), d.trailing),
                (flags, 1, 66, 38)
            );
        }
        let mut stats = DecodeStats::default();
        for h in [REC_6_1, REC_6_2] {
            stats.record(&decode(&hex(h), &o));
        }
        assert_eq!(
            (stats.trace, stats.trailing_records, stats.trailing_bytes),
            (2, 2, 8)
        );
    }

    #[test]
    fn hubble_header_vectors() {
        let o = DecodeOptions::default();
        let drop = |h: &str| {
            let buf = hex(h);
            let d = decode(&buf, &o).unwrap();
            match d.notification {
                Notification::Drop(n) => (n, d.header_len),
                other => panic!("{other:?}"),
            }
        };
        let (n, off) = drop(H_7_1);
        assert_eq!((n.subtype, n.version, off), (130, 2, 40));
        let want = [
            (0u16, 2u8, 42u16, 0u8),
            (1234, 3, 12, 0),
            (1234, 4, 44, 0),
            (1234, 7, 44, 2),
        ];
        for (h, (source, file, line, flags)) in H_7_2.iter().zip(want) {
            let (n, off) = drop(h);
            assert_eq!(
                (n.source, n.file, n.line, n.flags, off),
                (source, file, line, flags, 40)
            );
        }
        let (n, off) = drop(H_7_3);
        assert_eq!(
            (n.src_label, n.dst_label, n.file, n.ip_trace_id, off),
            (123, 456, 1, 0, 48)
        );
        let (n, _) = drop(H_7_3_T);
        assert_eq!(n.ip_trace_id, 0x1234_5678);

        let pv = |h: &str| match decode(&hex(h), &o).unwrap().notification {
            Notification::PolicyVerdict(p) => p,
            other => panic!("{other:?}"),
        };
        let p = pv(H_7_4_FWD);
        assert_eq!(
            (p.source, p.remote_label, p.verdict, p.flags),
            (12, 5678, 0, 0x12)
        );
        assert_eq!(
            (
                p.direction(),
                p.is_ingress(),
                p.match_type(),
                p.drop_reason()
            ),
            (2, false, 2, None)
        );
        let p = pv(H_7_4_DROP);
        assert_eq!(
            (p.remote_label, p.verdict, p.direction(), p.drop_reason()),
            (5678, -151, 1, Some(151))
        );

        let tr = |h: &str| match decode(&hex(h), &o).unwrap() {
            Decoded {
                notification: Notification::Trace(t),
                header_len,
                ..
            } => (t, header_len),
            other => panic!("{other:?}"),
        };
        let (t, off) = tr(H_7_5[0]);
        assert_eq!((t.source, t.obs_point, t.version, off), (1234, 0, 0, 32));
        let (t, off) = tr(H_7_5[1]);
        assert_eq!((t.source, t.obs_point, t.version, off), (0x1092, 11, 1, 48));
        assert_eq!(t.original_ip(), IpAddr::V4([1, 2, 3, 4]));
        let (t, _) = tr(H_7_5[2]);
        assert_eq!(
            (t.obs_point, t.reason, t.flags, t.is_l3_device()),
            (13, 5, 2, true)
        );
    }

    #[test]
    fn debug_message_vectors_decode() {
        let o = DecodeOptions::default();
        let want = [
            (1u8, 0u16, 0u32, 1u32, 2u32, 3u32),
            (58, 1234, 705_182_630, 3_909_094_154, 2, 0),
            (11, 1234, 0x9dd5_5684, 129, 0, 0),
            (0, 10000, 0x1234_5678, 10, 20, 30),
        ];
        for (h, w) in DBG_8.iter().zip(want) {
            let buf = hex(h);
            let d = decode(&buf, &o).unwrap();
            let Notification::Debug(m) = d.notification else {
                panic!()
            };
            assert_eq!((m.subtype, m.source, m.hash, m.arg1, m.arg2, m.arg3), w);
            assert_eq!((d.header_len, d.packet.len(), d.trailing), (20, 0, 0));
        }
        assert_eq!(
            decode(&[2, 1, 2], &o),
            Err(NotifyError::TooShort {
                kind: MessageKind::Debug,
                need: 20,
                have: 3
            })
        );
    }

    #[test]
    fn recorder_capture_and_unknown_types() {
        let mut b = vec![6u8, 1, 7, 0, 0, 0, 0, 0];
        b.extend_from_slice(&123_456_789u64.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&60u32.to_le_bytes());
        b.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let d = decode(&b, &DecodeOptions::default()).unwrap();
        let Notification::RecorderCapture(r) = d.notification else {
            panic!()
        };
        assert_eq!(
            (r.subtype, r.rule_id, r.tv_boot, r.cap_len, r.orig_len),
            (1, 7, 123_456_789, 3, 60)
        );
        assert_eq!((d.packet, d.trailing), (&[0xaa, 0xbb, 0xcc][..], 1));
        for t in [0u8, 8, 129, 130, 255] {
            assert_eq!(
                decode(&[t; 64], &DecodeOptions::default()),
                Err(NotifyError::UnknownType(t))
            );
        }
    }

    #[test]
    fn every_truncation_of_every_vector() {
        let layouts = [
            DecodeOptions::default(),
            DecodeOptions::for_release(CiliumRelease::V1_16),
            DecodeOptions {
                layout: Layout {
                    drop_v0: DropV0Layout::Len32,
                    policy_verdict: PolicyVerdictLayout::Len32,
                },
                ..DecodeOptions::default()
            },
        ];
        let mut n_ok = 0;
        for v in all_vectors() {
            for t in 1..=7u8 {
                let v = with_type(v.clone(), t);
                for o in &layouts {
                    for n in 0..=v.len() {
                        match decode(&v[..n], o) {
                            Ok(d) => {
                                n_ok += 1;
                                assert_eq!(d.header_len + d.packet.len() + d.trailing, n);
                                assert_eq!(
                                    d.packet.len() + d.missing,
                                    d.notification.cap_len() as usize
                                );
                            }
                            Err(NotifyError::TooShort { have, .. }) => assert_eq!(have, n),
                            Err(NotifyError::Empty) => assert_eq!(n, 0),
                            Err(NotifyError::UnknownVersion { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
        }
        assert!(n_ok > 1000);
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), ext in any::<u8>(), el in 0u16..64, old in any::<bool>()) {
            let mut o = if old { DecodeOptions::for_release(CiliumRelease::V1_16) } else { DecodeOptions::default() };
            o.ext_lengths.set(ext, el);
            if let Ok(d) = decode(&data, &o) {
                prop_assert_eq!(d.header_len + d.packet.len() + d.trailing, data.len());
                prop_assert_eq!(d.packet.len() + d.missing, d.notification.cap_len() as usize);
            }
        }

        #[test]
        fn decode_typed_never_panics(t in 1u8..8, body in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut data = vec![t];
            data.extend_from_slice(&body);
            let mut stats = DecodeStats::default();
            let r = decode(&data, &DecodeOptions::default());
            stats.record(&r);
            let total: u64 = stats.skipped().iter().map(|(_, c)| c).sum::<u64>()
                + stats.drop + stats.trace + stats.policy_verdict + stats.debug
                + stats.debug_capture + stats.trace_sock + stats.recorder_capture;
            prop_assert_eq!(total, 1);
        }
    }
}
