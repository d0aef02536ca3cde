//! Code tables of Cilium's datapath notifications: drop reasons, extended drop errors,
//! observation points, trace reasons, policy-verdict enums, debug subtypes, socket
//! translation points, reserved identities and source-file ids per release.
//!
//! The big tables are parsed once, at first use, from copies of the reference TSVs in
//! `engine/data/cilium/` (see its README for provenance; cilium commit `aeb2d1b68e0e`). The
//! small enums are written out here, with their source named next to each. Every lookup takes
//! a raw number and never fails: unknown values render as `unknown(N)` or, where Cilium's own
//! Go code prints something else for unknown values, exactly that.

use core::fmt;
use core::str::FromStr;
use std::sync::OnceLock;

const DROP_REASONS_TSV: &str = include_str!("../../data/cilium/drop_reasons.tsv");
const DROP_REASONS_FULL_TSV: &str = include_str!("../../data/cilium/drop_reasons_full.tsv");
const TRACE_POINTS_TSV: &str = include_str!("../../data/cilium/trace_points.tsv");
const FILES_TSV: &str = include_str!("../../data/cilium/files.tsv");

// ---------------------------------------------------------------------------------------------
// Releases

/// A Cilium release line whose datapath tables differ (files.tsv columns, drop strings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CiliumRelease {
    /// `main` at `aeb2d1b68e0e` (1.20.0-dev).
    #[default]
    Main,
    V1_19,
    V1_18,
    V1_17,
    V1_16,
}

impl CiliumRelease {
    /// Newest first.
    pub const ALL: [CiliumRelease; 5] = [
        CiliumRelease::Main,
        CiliumRelease::V1_19,
        CiliumRelease::V1_18,
        CiliumRelease::V1_17,
        CiliumRelease::V1_16,
    ];

    /// 0 for the oldest supported release, growing with newer ones.
    fn age_rank(self) -> u8 {
        match self {
            CiliumRelease::V1_16 => 0,
            CiliumRelease::V1_17 => 1,
            CiliumRelease::V1_18 => 2,
            CiliumRelease::V1_19 => 3,
            CiliumRelease::Main => 4,
        }
    }

    /// True when `self` is `other` or newer.
    pub fn at_least(self, other: CiliumRelease) -> bool {
        self.age_rank() >= other.age_rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CiliumRelease::Main => "main",
            CiliumRelease::V1_19 => "1.19",
            CiliumRelease::V1_18 => "1.18",
            CiliumRelease::V1_17 => "1.17",
            CiliumRelease::V1_16 => "1.16",
        }
    }

    /// Column of files.tsv (after the id column).
    fn files_column(self) -> usize {
        match self {
            CiliumRelease::Main => 0,
            CiliumRelease::V1_19 => 1,
            CiliumRelease::V1_18 => 2,
            CiliumRelease::V1_17 => 3,
            CiliumRelease::V1_16 => 4,
        }
    }
}

impl fmt::Display for CiliumRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown Cilium release {0:?} (known: main, 1.19, 1.18, 1.17, 1.16)")]
pub struct UnknownRelease(pub String);

impl FromStr for CiliumRelease {
    type Err = UnknownRelease;

    /// Accepts `main`, `1.19`, `v1.19`, `1.19.4` (any patch), likewise for 1.16–1.18.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        if t.eq_ignore_ascii_case("main") || t.starts_with("1.20") {
            return Ok(CiliumRelease::Main);
        }
        let mut parts = t.split('.');
        let (major, minor) = (parts.next(), parts.next());
        match (major, minor) {
            (Some("1"), Some("19")) => Ok(CiliumRelease::V1_19),
            (Some("1"), Some("18")) => Ok(CiliumRelease::V1_18),
            (Some("1"), Some("17")) => Ok(CiliumRelease::V1_17),
            (Some("1"), Some("16")) => Ok(CiliumRelease::V1_16),
            _ => Err(UnknownRelease(s.to_string())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drop reasons

/// One row of drop_reasons.tsv (+ drop_reasons_full.tsv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropReasonInfo {
    pub code: u8,
    /// The C name (`DROP_POLICY`, `REASON_FORWARDED`, `CTX_ACT_DROP`, ...), as in the TSV.
    pub name: &'static str,
    /// `cilium monitor`'s string (`pkg/monitor/api/drop.go`); `None` when Go has none (159).
    pub monitor: Option<&'static str>,
    /// Hubble `flow.proto DropReason` enum name, if any.
    pub hubble: Option<&'static str>,
    /// First release whose `drop.go` has the string.
    pub since: CiliumRelease,
}

struct DropTable {
    by_code: [Option<DropReasonInfo>; 256],
    /// Codes in TSV order.
    order: Vec<u8>,
}

fn parse_since(s: &str) -> CiliumRelease {
    if s.starts_with("<=v1.16") || s.starts_with("v1.16") {
        CiliumRelease::V1_16
    } else if s.starts_with("v1.17") {
        CiliumRelease::V1_17
    } else if s.starts_with("v1.18") {
        CiliumRelease::V1_18
    } else if s.starts_with("v1.19") {
        CiliumRelease::V1_19
    } else {
        CiliumRelease::Main
    }
}

fn drop_table() -> &'static DropTable {
    static T: OnceLock<DropTable> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = DropTable {
            by_code: [None; 256],
            order: Vec::new(),
        };
        for line in DROP_REASONS_TSV.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut cols = line.split('\t');
            let (Some(code), Some(name)) = (cols.next(), cols.next()) else {
                continue;
            };
            let Ok(code) = code.trim().parse::<u8>() else {
                continue;
            };
            let desc = cols.next().unwrap_or("");
            if let Some(slot) = t.by_code.get_mut(usize::from(code)) {
                *slot = Some(DropReasonInfo {
                    code,
                    name,
                    monitor: if desc.is_empty() { None } else { Some(desc) },
                    hubble: None,
                    since: CiliumRelease::V1_16,
                });
                t.order.push(code);
            }
        }
        for line in DROP_REASONS_FULL_TSV.lines().skip(1) {
            let cols: Vec<&'static str> = line.split('\t').collect();
            let Some(Ok(code)) = cols.first().map(|c| c.trim().parse::<u8>()) else {
                continue;
            };
            if let Some(Some(info)) = t.by_code.get_mut(usize::from(code)) {
                info.hubble = cols.get(4).copied().filter(|s| !s.is_empty());
                info.since = cols
                    .get(7)
                    .map(|s| parse_since(s))
                    .unwrap_or(CiliumRelease::V1_16);
            }
        }
        t
    })
}

/// Everything known about a drop reason code.
pub fn drop_reason_info(code: u8) -> Option<&'static DropReasonInfo> {
    drop_table().by_code.get(usize::from(code))?.as_ref()
}

/// The C name of a drop reason, `None` when unknown.
pub fn drop_reason_name(code: u8) -> Option<&'static str> {
    drop_reason_info(code).map(|i| i.name)
}

/// `cilium monitor`'s string for a reason in the newest release (`api.DropReason` map).
pub fn drop_reason_str(code: u8) -> Option<&'static str> {
    drop_reason_info(code).and_then(|i| i.monitor)
}

/// `cilium monitor`'s string as the given release's `drop.go` has it.
pub fn drop_reason_str_in(code: u8, release: CiliumRelease) -> Option<&'static str> {
    drop_reason_info(code)
        .filter(|i| release.at_least(i.since))
        .and_then(|i| i.monitor)
}

/// `(code, NAME, monitor string)` for every row of drop_reasons.tsv, in file order (for
/// `dropscope reasons`). The monitor string is empty where Cilium has none.
pub fn reason_table() -> impl Iterator<Item = (u8, &'static str, &'static str)> {
    let t = drop_table();
    t.order.iter().filter_map(move |c| {
        t.by_code
            .get(usize::from(*c))?
            .as_ref()
            .map(|i| (i.code, i.name, i.monitor.unwrap_or("")))
    })
}

/// A drop reason rendered as its monitor string, or `unknown(N)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropReasonDisplay(pub u8);

impl fmt::Display for DropReasonDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match drop_reason_str(self.0) {
            Some(s) => f.write_str(s),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

/// Go `api.DropReasonExt(reason, extError)` of a release: `"<string>"`, `"<string>, <ext>"`,
/// or for a reason without a string `"<reason>, <ext>"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropReasonExt {
    pub reason: u8,
    pub ext_error: i8,
    pub release: CiliumRelease,
}

impl fmt::Display for DropReasonExt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match drop_reason_str_in(self.reason, self.release) {
            Some(s) if self.ext_error == 0 => f.write_str(s),
            Some(s) => write!(f, "{}, {}", s, self.ext_error),
            None => write!(f, "{}, {}", self.reason, self.ext_error),
        }
    }
}

/// `DROP_NO_FIB`.
pub const DROP_NO_FIB: u8 = 169;
/// `DROP_POLICY_AUTH_REQUIRED`.
pub const DROP_POLICY_AUTH_REQUIRED: u8 = 189;
/// `BPF_FIB_MAP_NO_NEIGH` (`bpf/lib/common.h`).
pub const BPF_FIB_MAP_NO_NEIGH: i8 = 100;

/// What a drop's `ext_error` means for its reason (docs/cilium-formats.md §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtErrorMeaning {
    /// 0: no extended error.
    None,
    /// `DROP_NO_FIB`: a kernel `BPF_FIB_LKUP_RET_*` code or `BPF_FIB_MAP_NO_NEIGH`.
    FibLookup(&'static str),
    /// `DROP_POLICY_AUTH_REQUIRED`: the auth type the policy requires.
    AuthRequired(AuthType),
    /// A negative errno cast to `__s8` (conntrack, NAT, egress gateway, nodeport helpers).
    Errno(&'static str),
    /// Some other producer-specific value.
    Other(i8),
}

impl fmt::Display for ExtErrorMeaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtErrorMeaning::None => f.write_str("none"),
            ExtErrorMeaning::FibLookup(s) | ExtErrorMeaning::Errno(s) => f.write_str(s),
            ExtErrorMeaning::AuthRequired(a) => write!(f, "auth {a}"),
            ExtErrorMeaning::Other(v) => write!(f, "{v}"),
        }
    }
}

/// Interpret `ext_error` for `reason`.
pub fn ext_error_meaning(reason: u8, ext: i8) -> ExtErrorMeaning {
    if ext == 0 {
        return ExtErrorMeaning::None;
    }
    match reason {
        DROP_NO_FIB => match ext {
            1 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_BLACKHOLE"),
            2 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_UNREACHABLE"),
            3 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_PROHIBIT"),
            4 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_NOT_FWDED"),
            5 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_FWD_DISABLED"),
            6 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_UNSUPP_LWT"),
            7 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_NO_NEIGH"),
            8 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_FRAG_NEEDED"),
            9 => ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_NO_SRC_ADDR"),
            BPF_FIB_MAP_NO_NEIGH => ExtErrorMeaning::FibLookup("BPF_FIB_MAP_NO_NEIGH"),
            v => ExtErrorMeaning::Other(v),
        },
        DROP_POLICY_AUTH_REQUIRED => ExtErrorMeaning::AuthRequired(AuthType(ext as u8)),
        _ if ext < 0 => match errno_name(u32::from(ext.unsigned_abs())) {
            Some(n) => ExtErrorMeaning::Errno(n),
            None => ExtErrorMeaning::Other(ext),
        },
        _ => ExtErrorMeaning::Other(ext),
    }
}

/// Linux errno macro names for the values `ext_error` can carry (1..=127).
pub fn errno_name(e: u32) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "",
        "EPERM",
        "ENOENT",
        "ESRCH",
        "EINTR",
        "EIO",
        "ENXIO",
        "E2BIG",
        "ENOEXEC",
        "EBADF",
        "ECHILD",
        "EAGAIN",
        "ENOMEM",
        "EACCES",
        "EFAULT",
        "ENOTBLK",
        "EBUSY",
        "EEXIST",
        "EXDEV",
        "ENODEV",
        "ENOTDIR",
        "EISDIR",
        "EINVAL",
        "ENFILE",
        "EMFILE",
        "ENOTTY",
        "ETXTBSY",
        "EFBIG",
        "ENOSPC",
        "ESPIPE",
        "EROFS",
        "EMLINK",
        "EPIPE",
        "EDOM",
        "ERANGE",
        "EDEADLK",
        "ENAMETOOLONG",
        "ENOLCK",
        "ENOSYS",
        "ENOTEMPTY",
        "ELOOP",
        "",
        "ENOMSG",
        "EIDRM",
        "ECHRNG",
        "EL2NSYNC",
        "EL3HLT",
        "EL3RST",
        "ELNRNG",
        "EUNATCH",
        "ENOCSI",
        "EL2HLT",
        "EBADE",
        "EBADR",
        "EXFULL",
        "ENOANO",
        "EBADRQC",
        "EBADSLT",
        "",
        "EBFONT",
        "ENOSTR",
        "ENODATA",
        "ETIME",
        "ENOSR",
        "ENONET",
        "ENOPKG",
        "EREMOTE",
        "ENOLINK",
        "EADV",
        "ESRMNT",
        "ECOMM",
        "EPROTO",
        "EMULTIHOP",
        "EDOTDOT",
        "EBADMSG",
        "EOVERFLOW",
        "ENOTUNIQ",
        "EBADFD",
        "EREMCHG",
        "ELIBACC",
        "ELIBBAD",
        "ELIBSCN",
        "ELIBMAX",
        "ELIBEXEC",
        "EILSEQ",
        "ERESTART",
        "ESTRPIPE",
        "EUSERS",
        "ENOTSOCK",
        "EDESTADDRREQ",
        "EMSGSIZE",
        "EPROTOTYPE",
        "ENOPROTOOPT",
        "EPROTONOSUPPORT",
        "ESOCKTNOSUPPORT",
        "EOPNOTSUPP",
        "EPFNOSUPPORT",
        "EAFNOSUPPORT",
        "EADDRINUSE",
        "EADDRNOTAVAIL",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "ECONNABORTED",
        "ECONNRESET",
        "ENOBUFS",
        "EISCONN",
        "ENOTCONN",
        "ESHUTDOWN",
        "ETOOMANYREFS",
        "ETIMEDOUT",
        "ECONNREFUSED",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "EALREADY",
        "EINPROGRESS",
        "ESTALE",
        "EUCLEAN",
        "ENOTNAM",
        "ENAVAIL",
        "EISNAM",
        "EREMOTEIO",
        "EDQUOT",
        "ENOMEDIUM",
        "EMEDIUMTYPE",
        "ECANCELED",
        "ENOKEY",
        "EKEYEXPIRED",
        "EKEYREVOKED",
        "EKEYREJECTED",
        "EOWNERDEAD",
        "ENOTRECOVERABLE",
        "ERFKILL",
        "EHWPOISON",
    ];
    NAMES
        .get(usize::try_from(e).ok()?)
        .copied()
        .filter(|s| !s.is_empty())
}

include!("errno_strings.rs");

/// Go `syscall.Errno(e).Error()` on linux.
pub(crate) struct GoErrno(pub u32);

impl fmt::Display for GoErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match GO_ERRNO_STRINGS.binary_search_by_key(&self.0, |(n, _)| *n) {
            Ok(i) => f.write_str(GO_ERRNO_STRINGS.get(i).map_or("", |e| e.1)),
            Err(_) => write!(f, "errno {}", self.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Observation points and trace reasons

/// One row of trace_points.tsv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracePointInfo {
    pub code: u8,
    /// `TRACE_TO_LXC` ...
    pub name: &'static str,
    /// `to-endpoint` ... (`api.TraceObservationPoints`).
    pub monitor: &'static str,
    /// Hubble enum column as in the TSV (e.g. `TO_ENDPOINT(101) [...]`).
    pub hubble: &'static str,
}

fn trace_points() -> &'static [Option<TracePointInfo>; 256] {
    static T: OnceLock<[Option<TracePointInfo>; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [None; 256];
        for line in TRACE_POINTS_TSV.lines() {
            if line.starts_with('#') {
                continue;
            }
            let c: Vec<&'static str> = line.split('\t').collect();
            let Some(Ok(code)) = c.first().map(|s| s.parse::<u8>()) else {
                continue;
            };
            if let Some(slot) = t.get_mut(usize::from(code)) {
                *slot = Some(TracePointInfo {
                    code,
                    name: c.get(1).copied().unwrap_or(""),
                    monitor: c.get(2).copied().unwrap_or(""),
                    hubble: c.get(3).copied().unwrap_or(""),
                });
            }
        }
        t
    })
}

pub fn trace_point_info(code: u8) -> Option<&'static TracePointInfo> {
    trace_points().get(usize::from(code))?.as_ref()
}

/// Go `api.TraceObservationPoint`: the monitor string, or the decimal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObsPointDisplay(pub u8);

impl fmt::Display for ObsPointDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match trace_point_info(self.0) {
            Some(i) => f.write_str(i.monitor),
            None => write!(f, "{}", self.0),
        }
    }
}

/// `TRACE_REASON_ENCRYPTED`: OR-ed into `trace_notify.reason`.
pub const TRACE_REASON_ENCRYPT_MASK: u8 = 0x80;

/// `enum trace_reason` (`bpf/lib/trace.h`): (C name, monitor string).
const TRACE_REASONS: [(&str, &str); 9] = [
    ("TRACE_REASON_POLICY", "new"),
    ("TRACE_REASON_CT_ESTABLISHED", "established"),
    ("TRACE_REASON_CT_REPLY", "reply"),
    ("TRACE_REASON_CT_RELATED", "related"),
    ("TRACE_REASON_RESERVED", "reopened"),
    ("TRACE_REASON_UNKNOWN", "unknown"),
    ("TRACE_REASON_SRV6_ENCAP", "srv6-encap"),
    ("TRACE_REASON_SRV6_DECAP", "srv6-decap"),
    ("TRACE_REASON_RESERVED_2", "encrypt-overlay"),
];

/// Monitor string of a trace reason (encrypt bit already masked off).
pub fn trace_reason_str(reason: u8) -> Option<&'static str> {
    TRACE_REASONS.get(usize::from(reason)).map(|r| r.1)
}

/// C name of a trace reason (encrypt bit already masked off).
pub fn trace_reason_name(reason: u8) -> Option<&'static str> {
    TRACE_REASONS.get(usize::from(reason)).map(|r| r.0)
}

/// `traceReasonString()`: the string of `raw & !0x80`, else the raw byte in decimal (mask
/// included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceReasonDisplay(pub u8);

impl fmt::Display for TraceReasonDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match trace_reason_str(self.0 & !TRACE_REASON_ENCRYPT_MASK) {
            Some(s) => f.write_str(s),
            None => write!(f, "{}", self.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Classifier flags (`bpf/lib/classifiers.h`)

pub const CLS_FLAG_IPV6: u8 = 0x01;
pub const CLS_FLAG_L3_DEV: u8 = 0x02;
pub const CLS_FLAG_VXLAN: u8 = 0x04;
pub const CLS_FLAG_GENEVE: u8 = 0x08;

/// Names of the set classifier flags, `|`-joined (`IPV6|L3_DEV`), `0` when none; unknown
/// bits as hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClsFlagsDisplay(pub u8);

impl fmt::Display for ClsFlagsDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut first = true;
        for (bit, name) in [
            (CLS_FLAG_IPV6, "IPV6"),
            (CLS_FLAG_L3_DEV, "L3_DEV"),
            (CLS_FLAG_VXLAN, "VXLAN"),
            (CLS_FLAG_GENEVE, "GENEVE"),
        ] {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let rest = self.0 & 0xf0;
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Policy verdict enums (`pkg/monitor/api/types.go`, `pkg/policy/types/auth.go`)

pub const POLICY_INGRESS: u8 = 1;
pub const POLICY_EGRESS: u8 = 2;

/// `PolicyMatchType.String()`.
pub fn policy_match_str(m: u8) -> &'static str {
    match m {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}

/// `GetPolicyActionString(verdict, audit)`.
pub fn policy_action_str(verdict: i32, audited: bool) -> &'static str {
    if audited {
        "audit"
    } else if verdict < 0 {
        "deny"
    } else if verdict > 0 {
        "redirect"
    } else {
        "allow"
    }
}

/// `policy.AuthType`; `Display` is Go's `AuthType.String()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthType(pub u8);

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("disabled"),
            1 => f.write_str("spire"),
            2 => f.write_str("test-always-fail"),
            n => write!(f, "Unknown-auth-type-{n}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Debug message subtypes (`bpf/lib/dbg.h`)

/// C names of `DBG_*` (correct numbering, = `flow.proto DebugEventType`).
pub const DEBUG_SUBTYPES: [&str; 69] = [
    "DBG_UNSPEC",
    "DBG_GENERIC",
    "DBG_LOCAL_DELIVERY",
    "DBG_ENCAP",
    "DBG_LXC_FOUND",
    "DBG_POLICY_DENIED",
    "DBG_CT_LOOKUP",
    "DBG_CT_LOOKUP_REV",
    "DBG_CT_MATCH",
    "DBG_CT_CREATED",
    "DBG_CT_CREATED2",
    "DBG_ICMP6_HANDLE",
    "DBG_ICMP6_REQUEST",
    "DBG_ICMP6_NS",
    "DBG_ICMP6_TIME_EXCEEDED",
    "DBG_CT_VERDICT",
    "DBG_DECAP",
    "DBG_PORT_MAP",
    "DBG_ERROR_RET",
    "DBG_TO_HOST",
    "DBG_TO_STACK",
    "DBG_PKT_HASH",
    "DBG_LB6_LOOKUP_FRONTEND",
    "DBG_LB6_LOOKUP_FRONTEND_FAIL",
    "DBG_LB6_LOOKUP_BACKEND_SLOT",
    "DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS",
    "DBG_LB6_LOOKUP_BACKEND_SLOT_V2_FAIL",
    "DBG_LB6_LOOKUP_BACKEND_FAIL",
    "DBG_LB6_REVERSE_NAT_LOOKUP",
    "DBG_LB6_REVERSE_NAT",
    "DBG_LB4_LOOKUP_FRONTEND",
    "DBG_LB4_LOOKUP_FRONTEND_FAIL",
    "DBG_LB4_LOOKUP_BACKEND_SLOT",
    "DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS",
    "DBG_LB4_LOOKUP_BACKEND_SLOT_V2_FAIL",
    "DBG_LB4_LOOKUP_BACKEND_FAIL",
    "DBG_LB4_REVERSE_NAT_LOOKUP",
    "DBG_LB4_REVERSE_NAT",
    "DBG_LB4_LOOPBACK_SNAT",
    "DBG_LB4_LOOPBACK_SNAT_REV",
    "DBG_CT_LOOKUP4",
    "DBG_RR_BACKEND_SLOT_SEL",
    "DBG_REV_PROXY_LOOKUP",
    "DBG_REV_PROXY_FOUND",
    "DBG_REV_PROXY_UPDATE",
    "DBG_L4_POLICY",
    "DBG_NETDEV_IN_CLUSTER",
    "DBG_NETDEV_ENCAP4",
    "DBG_CT_LOOKUP4_1",
    "DBG_CT_LOOKUP4_2",
    "DBG_CT_CREATED4",
    "DBG_CT_LOOKUP6_1",
    "DBG_CT_LOOKUP6_2",
    "DBG_CT_CREATED6",
    "DBG_SKIP_PROXY",
    "DBG_L4_CREATE",
    "DBG_IP_ID_MAP_FAILED4",
    "DBG_IP_ID_MAP_FAILED6",
    "DBG_IP_ID_MAP_SUCCEED4",
    "DBG_IP_ID_MAP_SUCCEED6",
    "DBG_LB_STALE_CT",
    "DBG_INHERIT_IDENTITY",
    "DBG_SK_LOOKUP4",
    "DBG_SK_LOOKUP6",
    "DBG_SK_ASSIGN",
    "DBG_L7_LB",
    "DBG_SKIP_POLICY",
    "DBG_LB6_LOOPBACK_SNAT",
    "DBG_LB6_LOOPBACK_SNAT_REV",
];

/// The correct C name of a debug subtype (`None` past 68).
pub fn debug_subtype_name(subtype: u8) -> Option<&'static str> {
    DEBUG_SUBTYPES.get(usize::from(subtype)).copied()
}

/// What Cilium's Go constants call `subtype`: they omit `DBG_SKIP_POLICY`, so Go's 66 is
/// C's `DBG_LB6_LOOPBACK_SNAT`, Go's 67 is `..._REV`, and Go has no 68
/// (docs/cilium-formats.md §9.6). `cilium monitor`'s debug text follows this numbering.
pub fn debug_subtype_go_name(subtype: u8) -> Option<&'static str> {
    match subtype {
        0..=65 => debug_subtype_name(subtype),
        66 => Some("DBG_LB6_LOOPBACK_SNAT"),
        67 => Some("DBG_LB6_LOOPBACK_SNAT_REV"),
        _ => None,
    }
}

/// `DBG_CAPTURE_*` (= `flow.proto DebugCapturePoint`).
pub const DEBUG_CAPTURE_SUBTYPES: [&str; 12] = [
    "DBG_CAPTURE_UNSPEC",
    "DBG_CAPTURE_FROM_RESERVED1",
    "DBG_CAPTURE_FROM_RESERVED2",
    "DBG_CAPTURE_FROM_RESERVED3",
    "DBG_CAPTURE_DELIVERY",
    "DBG_CAPTURE_FROM_LB",
    "DBG_CAPTURE_AFTER_V46",
    "DBG_CAPTURE_AFTER_V64",
    "DBG_CAPTURE_PROXY_PRE",
    "DBG_CAPTURE_PROXY_POST",
    "DBG_CAPTURE_SNAT_PRE",
    "DBG_CAPTURE_SNAT_POST",
];

pub fn debug_capture_subtype_name(subtype: u8) -> Option<&'static str> {
    DEBUG_CAPTURE_SUBTYPES.get(usize::from(subtype)).copied()
}

// ---------------------------------------------------------------------------------------------
// Socket translation points (`pkg/monitor/datapath_sock_trace.go`)

/// (C-ish name, monitor string) of `trace_sock_notify.xlate_point`.
const XLATE_POINTS: [(&str, &str); 5] = [
    ("XLATE_POINT_UNKNOWN", "unknown"),
    ("PRE_DIRECTION_FWD", "pre-xlate-fwd"),
    ("POST_DIRECTION_FWD", "post-xlate-fwd"),
    ("PRE_DIRECTION_REV", "pre-xlate-rev"),
    ("POST_DIRECTION_REV", "post-xlate-rev"),
];

/// `XlatePointStr()`: unknown values print `unknown`.
pub fn xlate_point_str(p: u8) -> &'static str {
    XLATE_POINTS
        .get(usize::from(p))
        .map(|x| x.1)
        .unwrap_or("unknown")
}

pub fn xlate_point_name(p: u8) -> Option<&'static str> {
    XLATE_POINTS.get(usize::from(p)).map(|x| x.0)
}

/// `L4ProtoStr()` of trace-sock (0 unknown, 1 tcp, 2 udp).
pub fn sock_l4_proto_str(p: u8) -> &'static str {
    match p {
        1 => "tcp",
        2 => "udp",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Identities (`pkg/identity/numericidentity.go`)

/// Reserved identity names, index = identity.
pub const RESERVED_IDENTITIES: [&str; 11] = [
    "unknown",
    "host",
    "world",
    "unmanaged",
    "health",
    "init",
    "remote-node",
    "kube-apiserver",
    "ingress",
    "world-ipv4",
    "world-ipv6",
];

/// A security identity; `Display` is Go's `NumericIdentity.String()` (reserved name or
/// decimal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Identity(pub u32);

impl Identity {
    pub fn reserved_name(self) -> Option<&'static str> {
        RESERVED_IDENTITIES
            .get(usize::try_from(self.0).ok()?)
            .copied()
    }

    /// Top 8 bits: 0 global, 1 local (CIDR), 2 remote node.
    pub fn scope(self) -> u8 {
        (self.0 >> 24) as u8
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reserved_name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Source files (`files.tsv`)

fn files_table() -> &'static [[Option<&'static str>; 5]; 256] {
    static T: OnceLock<[[Option<&'static str>; 5]; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [[None; 5]; 256];
        for line in FILES_TSV.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut cols = line.split('\t');
            let Some(Ok(id)) = cols.next().map(|s| s.trim().parse::<u8>()) else {
                continue;
            };
            for (i, name) in cols.take(5).enumerate() {
                let name = name.trim();
                if name != "-" && !name.is_empty() {
                    if let Some(slot) = t.get_mut(usize::from(id)).and_then(|r| r.get_mut(i)) {
                        *slot = Some(name);
                    }
                }
            }
        }
        t
    })
}

/// `api.BPFFileName(id)` of a release, `None` for an unassigned id.
pub fn bpf_file_name(id: u8, release: CiliumRelease) -> Option<&'static str> {
    *files_table()
        .get(usize::from(id))?
        .get(release.files_column())?
}

/// A source-file id rendered as its name or `unknown(N)` (Go `BPFFileName`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfFileDisplay {
    pub id: u8,
    pub release: CiliumRelease,
}

impl fmt::Display for BpfFileDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match bpf_file_name(self.id, self.release) {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown({})", self.id),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Agent notifications (`pkg/monitor/api/types.go`)

/// `AgentNotifications` names, index = type.
pub const AGENT_NOTIFICATIONS: [&str; 11] = [
    "unspecified",
    "Message",
    "Cilium agent started",
    "Endpoint regenerated",
    "Failed endpoint regeneration",
    "Policy updated",
    "Policy deleted",
    "Endpoint created",
    "Endpoint deleted",
    "IPCache entry upserted",
    "IPCache entry deleted",
];

/// `resolveAgentType`: the name, or the decimal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentTypeDisplay(pub u32);

impl fmt::Display for AgentTypeDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match usize::try_from(self.0)
            .ok()
            .and_then(|i| AGENT_NOTIFICATIONS.get(i))
        {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_row_present() {
        let mut rows = 0;
        for line in DROP_REASONS_TSV.lines().filter(|l| !l.starts_with('#')) {
            let c: Vec<&str> = line.split('\t').collect();
            let code: u8 = c[0].parse().unwrap();
            let info = drop_reason_info(code).unwrap();
            assert_eq!(info.name, c[1]);
            assert_eq!(info.monitor.unwrap_or(""), c[2]);
            rows += 1;
        }
        assert_eq!(rows, 92);
        assert_eq!(reason_table().count(), 92);
        let full_rows = DROP_REASONS_FULL_TSV.lines().skip(1).count();
        assert_eq!(full_rows, 92);
        for line in DROP_REASONS_FULL_TSV.lines().skip(1) {
            let c: Vec<&str> = line.split('\t').collect();
            let code: u8 = c[0].parse().unwrap();
            let info = drop_reason_info(code).unwrap();
            assert_eq!(info.monitor.unwrap_or(""), c[2], "code {code}");
            assert_eq!(info.hubble.unwrap_or(""), c[4], "code {code}");
        }
        assert_eq!(drop_reason_str(133), Some("Policy denied"));
        assert_eq!(drop_reason_name(133), Some("DROP_POLICY"));
        assert_eq!(drop_reason_info(133).unwrap().hubble, Some("POLICY_DENIED"));
        assert_eq!(
            drop_reason_info(136).unwrap().hubble,
            Some("CT_MISSING_TCP_ACK_FLAG")
        );
        assert_eq!(drop_reason_str(159), None);
        assert_eq!(drop_reason_name(159), Some("DROP_UNSUPP_SERVICE_PROTO"));
        assert_eq!(drop_reason_info(159).unwrap().hubble, None);
        assert_eq!(drop_reason_str(1), None);
        assert_eq!(drop_reason_str(207), None);
        assert_eq!(DropReasonDisplay(207).to_string(), "unknown(207)");
        assert_eq!(DropReasonDisplay(159).to_string(), "unknown(159)");
        assert_eq!(
            reason_table().next(),
            Some((0, "REASON_FORWARDED", "Success"))
        );
    }

    #[test]
    fn drop_reason_ext_rendering() {
        let r = |reason, ext| {
            DropReasonExt {
                reason,
                ext_error: ext,
                release: CiliumRelease::Main,
            }
            .to_string()
        };
        assert_eq!(r(133, 0), "Policy denied");
        assert_eq!(r(169, 7), "FIB lookup failed, 7");
        assert_eq!(r(155, -17), "CT: Map insertion failed, -17");
        assert_eq!(r(159, 0), "159, 0");
        assert_eq!(r(250, -3), "250, -3");
        // Release-specific string tables.
        let old = |reason| {
            DropReasonExt {
                reason,
                ext_error: 0,
                release: CiliumRelease::V1_16,
            }
            .to_string()
        };
        assert_eq!(old(204), "204, 0");
        assert_eq!(old(203), "Endpoint policy program not available");
        let v117 = DropReasonExt {
            reason: 204,
            ext_error: 0,
            release: CiliumRelease::V1_17,
        };
        assert_eq!(v117.to_string(), "No Egress IP configured");
        assert_eq!(drop_reason_str_in(15, CiliumRelease::V1_18), None);
        assert_eq!(
            drop_reason_str_in(15, CiliumRelease::V1_19),
            Some("MTU error message")
        );
        assert_eq!(drop_reason_str_in(206, CiliumRelease::V1_19), None);
        assert_eq!(
            drop_reason_str_in(206, CiliumRelease::Main),
            Some("No device")
        );
    }

    #[test]
    fn ext_error_meanings() {
        assert_eq!(
            ext_error_meaning(169, 7),
            ExtErrorMeaning::FibLookup("BPF_FIB_LKUP_RET_NO_NEIGH")
        );
        assert_eq!(
            ext_error_meaning(169, 100),
            ExtErrorMeaning::FibLookup("BPF_FIB_MAP_NO_NEIGH")
        );
        assert_eq!(ext_error_meaning(169, 42), ExtErrorMeaning::Other(42));
        assert_eq!(
            ext_error_meaning(189, 1),
            ExtErrorMeaning::AuthRequired(AuthType(1))
        );
        assert_eq!(ext_error_meaning(189, 1).to_string(), "auth spire");
        assert_eq!(
            ext_error_meaning(155, -17),
            ExtErrorMeaning::Errno("EEXIST")
        );
        assert_eq!(ext_error_meaning(155, -2).to_string(), "ENOENT");
        assert_eq!(ext_error_meaning(155, 0), ExtErrorMeaning::None);
        assert_eq!(ext_error_meaning(155, 5), ExtErrorMeaning::Other(5));
        assert_eq!(
            ext_error_meaning(155, -128),
            ExtErrorMeaning::Errno("EKEYREVOKED")
        );
    }

    #[test]
    fn trace_points_and_reasons() {
        let rows = TRACE_POINTS_TSV
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        assert_eq!(rows, 14);
        for line in TRACE_POINTS_TSV.lines().filter(|l| !l.starts_with('#')) {
            let c: Vec<&str> = line.split('\t').collect();
            let i = trace_point_info(c[0].parse().unwrap()).unwrap();
            assert_eq!((i.name, i.monitor, i.hubble), (c[1], c[2], c[3]));
        }
        assert_eq!(ObsPointDisplay(7).to_string(), "from-host");
        assert_eq!(ObsPointDisplay(13).to_string(), "to-crypto");
        assert_eq!(ObsPointDisplay(14).to_string(), "14");
        assert_eq!(TraceReasonDisplay(0x81).to_string(), "established");
        assert_eq!(TraceReasonDisplay(5).to_string(), "unknown");
        assert_eq!(TraceReasonDisplay(0x89).to_string(), "137");
        assert_eq!(TraceReasonDisplay(9).to_string(), "9");
        assert_eq!(trace_reason_name(4), Some("TRACE_REASON_RESERVED"));
    }

    #[test]
    fn files_per_release() {
        let mut cells = 0;
        for line in FILES_TSV.lines().filter(|l| !l.starts_with('#')) {
            let c: Vec<&str> = line.split('\t').collect();
            let id: u8 = c[0].parse().unwrap();
            for (i, r) in CiliumRelease::ALL.iter().enumerate() {
                let want = if c[i + 1] == "-" {
                    None
                } else {
                    Some(c[i + 1])
                };
                assert_eq!(bpf_file_name(id, *r), want, "id {id} release {r}");
                cells += 1;
            }
        }
        assert_eq!(cells, 24 * 5);
        let d = |id, release| BpfFileDisplay { id, release }.to_string();
        assert_eq!(d(2, CiliumRelease::Main), "bpf_lxc.c");
        assert_eq!(d(101, CiliumRelease::Main), "drop.h");
        assert_eq!(d(101, CiliumRelease::V1_18), "arp.h");
        assert_eq!(d(6, CiliumRelease::Main), "unknown(6)");
        assert_eq!(d(6, CiliumRelease::V1_19), "bpf_network.c");
        assert_eq!(d(116, CiliumRelease::V1_17), "unknown(116)");
        assert_eq!(d(0, CiliumRelease::V1_16), "unknown(0)");
    }

    #[test]
    fn releases_parse() {
        assert_eq!(
            "main".parse::<CiliumRelease>().unwrap(),
            CiliumRelease::Main
        );
        assert_eq!(
            "1.19".parse::<CiliumRelease>().unwrap(),
            CiliumRelease::V1_19
        );
        assert_eq!(
            "v1.18.3".parse::<CiliumRelease>().unwrap(),
            CiliumRelease::V1_18
        );
        assert_eq!(
            "1.17".parse::<CiliumRelease>().unwrap(),
            CiliumRelease::V1_17
        );
        assert_eq!(
            "1.16.0".parse::<CiliumRelease>().unwrap(),
            CiliumRelease::V1_16
        );
        assert!("1.15".parse::<CiliumRelease>().is_err());
        assert_eq!(CiliumRelease::default(), CiliumRelease::Main);
        for r in CiliumRelease::ALL {
            assert_eq!(r.as_str().parse::<CiliumRelease>().unwrap(), r);
        }
        assert!(CiliumRelease::V1_19.at_least(CiliumRelease::V1_17));
        assert!(!CiliumRelease::V1_16.at_least(CiliumRelease::V1_17));
    }

    #[test]
    fn small_enums() {
        assert_eq!(Identity(1).to_string(), "host");
        assert_eq!(Identity(10).to_string(), "world-ipv6");
        assert_eq!(Identity(0).to_string(), "unknown");
        assert_eq!(Identity(11).to_string(), "11");
        assert_eq!(Identity(16_777_217).scope(), 1);
        assert_eq!(policy_match_str(3), "L4-Only");
        assert_eq!(policy_match_str(7), "unknown");
        assert_eq!(policy_action_str(-133, false), "deny");
        assert_eq!(policy_action_str(0, true), "audit");
        assert_eq!(policy_action_str(4000, false), "redirect");
        assert_eq!(policy_action_str(0, false), "allow");
        assert_eq!(AuthType(2).to_string(), "test-always-fail");
        assert_eq!(AuthType(9).to_string(), "Unknown-auth-type-9");
        assert_eq!(debug_subtype_name(66), Some("DBG_SKIP_POLICY"));
        assert_eq!(debug_subtype_go_name(66), Some("DBG_LB6_LOOPBACK_SNAT"));
        assert_eq!(debug_subtype_name(68), Some("DBG_LB6_LOOPBACK_SNAT_REV"));
        assert_eq!(debug_subtype_go_name(68), None);
        assert_eq!(debug_subtype_name(58), Some("DBG_IP_ID_MAP_SUCCEED4"));
        assert_eq!(
            debug_capture_subtype_name(9),
            Some("DBG_CAPTURE_PROXY_POST")
        );
        assert_eq!(xlate_point_str(1), "pre-xlate-fwd");
        assert_eq!(xlate_point_str(9), "unknown");
        assert_eq!(
            ClsFlagsDisplay(0x0f).to_string(),
            "IPV6|L3_DEV|VXLAN|GENEVE"
        );
        assert_eq!(ClsFlagsDisplay(0x12).to_string(), "L3_DEV|0x10");
        assert_eq!(AgentTypeDisplay(2).to_string(), "Cilium agent started");
        assert_eq!(AgentTypeDisplay(99).to_string(), "99");
        assert_eq!(GoErrno(1).to_string(), "operation not permitted");
        assert_eq!(GoErrno(41).to_string(), "errno 41");
        assert_eq!(GoErrno(4_294_967_294).to_string(), "errno 4294967294");
        assert_eq!(errno_name(17), Some("EEXIST"));
        assert_eq!(errno_name(95), Some("EOPNOTSUPP"));
    }
}
