//! Loading and attaching the kfree_skb programs: kernel offsets from BTF into `ProbeConfig`,
//! the eBPF object into the kernel, then `tp_btf/kfree_skb`, else `tracepoint/skb/kfree_skb`.
//!
//! Every failure becomes one clear line ([`LoadError`]): missing privileges, a verifier
//! rejection (with the end of the verifier log), missing BTF, tracefs not mounted.
//!
//! Must never: hard-code a kernel struct offset, treat a failed RLIMIT_MEMLOCK raise as an
//! error (kernels since 5.11 charge BPF memory to the cgroup), or leave a program attached
//! when loading fails half-way (dropping the `Ebpf` detaches everything).

use std::{io, path::Path};

use aya::{
    programs::{
        tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId, BtfTracePoint, ProgramError,
        TracePoint,
    },
    Ebpf, EbpfLoader,
};
use capture_common::{
    PodKey, ProbeConfig, DEFAULT_SNAPLEN, EXEMPLARS_ALL, FILTER_MARKER_IMM, FILTER_RESERVE,
    GLOBAL_CONFIG, MAP_BUDGET_0, MAP_BUDGET_1, MAP_FLOWS_0, MAP_FLOWS_1, MAP_POD_SELECT,
    MAP_REASON_SELECT, MAP_RING_DATA, MAP_RING_POS, MAX_KERNEL_SNAPLEN, OFF_ABSENT,
    POD_SELECT_ENTRIES, PROG_TP_BTF, PROG_TRACEPOINT, REASON_SELECT_ENTRIES, SEL_REASONS_EXCEPT,
    SEL_REASONS_NONE, SEL_REASONS_ONLY, SKB_COPY_MAX,
};

use super::btf::{Btf, BtfError, VMLINUX_BTF};
use super::load_error::{classify, one_line};
pub use super::load_error::{kernel_release, log_tail, parse_release, LoadError};

/// The eBPF object built by `engine/build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture-ebpf"))
}

/// Where the kfree_skb tracepoint's format file may be.
pub const KFREE_SKB_FORMAT_PATHS: [&str; 2] = [
    "/sys/kernel/tracing/events/skb/kfree_skb/format",
    "/sys/kernel/debug/tracing/events/skb/kfree_skb/format",
];

/// Largest default size of each CPU's ring (bytes): 4 MiB holds about 25,000 records of a
/// 64-byte UDP packet, i.e. 40 ms of a one-CPU storm at 600,000 drops/s against the reader's
/// 2 ms polls.
pub const DEFAULT_RING_BYTES_PER_CPU: u64 = 4 << 20;
/// Smallest default ring per CPU: four 64 KiB blocks.
pub const MIN_DEFAULT_RING_BYTES_PER_CPU: u64 = 256 << 10;
/// All CPUs' rings together, by default: the per-CPU size is this divided by the CPUs
/// (a power of two, between the two bounds above), so a 128-CPU node pins 32 MiB, not
/// 512 MiB; the kernel flow table carries exact counts when a small ring fills.
pub const DEFAULT_RING_BUDGET_BYTES: u64 = 32 << 20;
/// Default entries of each kernel flow table generation (`--kernel-flows`).
pub const DEFAULT_KERNEL_FLOWS: u32 = 65_536;
/// Most entries `--kernel-flows` accepts.
pub const MAX_KERNEL_FLOWS: u32 = 1 << 24;
/// Exemplar budget of a CPU in an automatic storm (copies per key and table generation).
pub const AUTO_STORM_EXEMPLARS: u32 = 8;
/// Kernel memory of the per-CPU flow caches: two generations of `CACHE_SLOTS` slots of
/// 112 bytes per CPU.
pub fn cache_bytes(cpus: u32) -> u64 {
    2 * u64::from(capture_common::CACHE_SLOTS)
        * std::mem::size_of::<capture_common::CacheSlot>() as u64
        * u64::from(cpus)
}

/// Kernel memory per kernel-flow-table entry, both maps of one generation together: a
/// preallocated hash element (about 48 bytes of overhead, the 64-byte key, the 48-byte flow
/// value or 8-byte budget count, each rounded to 8).
pub const TABLE_BYTES_PER_ENTRY: u64 = (48 + 64 + 48) + (48 + 64 + 8);

/// The default ring size per CPU for `cpus` CPUs (see [`DEFAULT_RING_BUDGET_BYTES`]).
pub fn default_ring_bytes_per_cpu(cpus: u32) -> u64 {
    let share = DEFAULT_RING_BUDGET_BYTES / u64::from(cpus.max(1));
    // The largest power of two not above the share, within the bounds.
    let pow = if share == 0 {
        0
    } else {
        1u64 << (63 - share.leading_zeros())
    };
    pow.clamp(MIN_DEFAULT_RING_BYTES_PER_CPU, DEFAULT_RING_BYTES_PER_CPU)
}

/// Which hook to attach to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// `tp_btf/kfree_skb`, else the tracepoint.
    #[default]
    Auto,
    /// `tp_btf/kfree_skb` only.
    TpBtf,
    /// `tracepoint/skb/kfree_skb` only.
    Tracepoint,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::TpBtf => "tp_btf/kfree_skb",
            AttachMode::Tracepoint => "tracepoint/skb/kfree_skb",
        }
    }
}

/// What the kernel program selects before it copies or counts a drop per flow: the
/// selectors and the translated filter expression. The default selects every drop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelSelect {
    /// Only drops on this ifindex (0: any).
    pub ifindex: u32,
    /// Only drops in the network namespace with this inode (0: any).
    pub netns: u32,
    /// `Some((true, rs))`: only reasons `rs`; `Some((false, rs))`: all but `rs`.
    pub reasons: Option<(bool, Vec<u32>)>,
    /// The filter expression translated for the program's stub
    /// (`crate::filter::translate`), as eBPF instructions.
    pub program: Option<Vec<u64>>,
    /// `--pod`, `--namespace`, `--label`: the selected pods' keys at load time (`Some` even
    /// when none is known yet: then the program selects nothing until some are added to
    /// `POD_SELECT`).
    pub pods: Option<Vec<capture_common::PodKey>>,
    /// `capture --packets -i ...`: only drops on these interfaces (`IFACE_SELECT`).
    pub ifaces: Option<Vec<capture_common::PktKey>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Packet bytes to copy per drop (clamped to `MAX_KERNEL_SNAPLEN`).
    pub snaplen: u32,
    /// Size of each CPU's ring in bytes (rounded up to a power of two of 64 KiB blocks, at
    /// most 256 MiB).
    pub ring_bytes_per_cpu: u64,
    pub attach: AttachMode,
    /// Entries of each kernel flow table generation.
    pub kernel_flows: u32,
    /// Copies per flow x reason key per table generation; `None`: every drop.
    pub exemplars: Option<u32>,
    /// The automatic storm switch (only without an exemplar budget).
    pub auto_storm: bool,
    /// Selectors and filter expression run in the kernel.
    pub select: KernelSelect,
    /// `--packets`: interfaces whose every packet the tc programs copy (empty: none).
    pub packets: Vec<super::packets::PacketIface>,
    /// How the tc programs are attached.
    pub tc_mode: super::packets::TcMode,
    /// Read packet headers with plain loads where the kernel allows it (see
    /// [`untrusted_mem_loads`]); false: always with `bpf_probe_read_kernel` (tests compare
    /// the two).
    pub direct_packet: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            snaplen: DEFAULT_SNAPLEN,
            ring_bytes_per_cpu: DEFAULT_RING_BYTES_PER_CPU,
            attach: AttachMode::Auto,
            kernel_flows: DEFAULT_KERNEL_FLOWS,
            exemplars: None,
            auto_storm: true,
            select: KernelSelect::default(),
            packets: Vec::new(),
            tc_mode: super::packets::TcMode::Auto,
            direct_packet: true,
        }
    }
}

impl LoadOptions {
    /// Writes the copy policy (exemplar budget, storm switch) into `c`, for rings of
    /// `c.ring_blocks` blocks.
    pub fn apply_policy(&self, c: &mut ProbeConfig) {
        c.exemplars = self.exemplars.unwrap_or(EXEMPLARS_ALL);
        let ring = u64::from(c.ring_blocks) << capture_common::RING_BLOCK_SHIFT;
        if self.auto_storm && self.exemplars.is_none() && ring > 0 {
            // Storm above half full, back to full capture below an eighth.
            c.storm_on_bytes = u32::try_from(ring / 2).unwrap_or(u32::MAX);
            c.storm_off_bytes = u32::try_from(ring / 8).unwrap_or(u32::MAX);
            c.storm_exemplars = AUTO_STORM_EXEMPLARS;
        } else {
            c.storm_on_bytes = 0;
            c.storm_off_bytes = 0;
            c.storm_exemplars = 0;
        }
    }
}

/// Offsets of the kfree_skb tracepoint's fields in its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    pub skbaddr: u32,
    pub location: u32,
    /// `OFF_ABSENT` on kernels before 5.17 (no reason field).
    pub reason: u32,
}

/// A program's link, kept to detach it before draining the ring.
#[derive(Debug)]
pub enum Attached {
    TpBtf(BtfTracePointLinkId),
    Tracepoint(TracePointLinkId),
}

impl Attached {
    /// The mode this link was made with.
    pub fn mode(&self) -> AttachMode {
        match self {
            Attached::TpBtf(_) => AttachMode::TpBtf,
            Attached::Tracepoint(_) => AttachMode::Tracepoint,
        }
    }
}

/// A loaded object with one kfree_skb program attached.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub attached: Attached,
    pub config: ProbeConfig,
    /// CPUs the rings were made for.
    pub cpus: u32,
    /// Why the filter expression runs in user space instead of the kernel (the verifier
    /// refused its translation), when it does.
    pub filter_fallback: Option<String>,
    /// The tc programs' links (`--packets`).
    pub packets: Option<super::packets::PacketLinks>,
}

/// Writes `program` over the filter stub's reserve in a copy of the object: the marker
/// `call 0xdeadbeef` followed by `FILTER_RESERVE - 1` no-ops (`ja +0`), which must occur
/// exactly once. What `program` does not cover stays no-ops, which the verifier strips.
pub fn patch_filter_stub(obj: &[u8], program: &[u64]) -> Result<Vec<u64>, LoadError> {
    let fail = |message: String| LoadError::Ebpf {
        step: "patching the filter stub",
        message,
    };
    if program.is_empty() || program.len() > FILTER_RESERVE as usize {
        return Err(fail(format!(
            "the filter expression needs {} eBPF instructions; the kernel program has room for {FILTER_RESERVE}",
            program.len()
        )));
    }
    let marker = {
        let mut m = [0u8; 8];
        m[0] = 0x85; // BPF_JMP | BPF_CALL
        m[4..].copy_from_slice(&FILTER_MARKER_IMM.to_le_bytes());
        m
    };
    let nop = [0x05u8, 0, 0, 0, 0, 0, 0, 0]; // BPF_JMP | BPF_JA, +0
    let reserve = FILTER_RESERVE as usize * 8;
    let found: Vec<usize> = obj
        .windows(8)
        .enumerate()
        .filter(|(i, w)| i % 8 == 0 && *w == marker)
        .map(|(i, _)| i)
        .collect();
    let [at] = found[..] else {
        return Err(fail(format!(
            "the object has {} filter stub markers, not one (rebuild capture-ebpf)",
            found.len()
        )));
    };
    let stub = obj
        .get(at..at + reserve)
        .ok_or_else(|| fail("the filter stub is cut short".into()))?;
    if stub.get(8..).unwrap_or(&[]).chunks(8).any(|c| c != nop) {
        return Err(fail("the filter stub's reserve is not all no-ops".into()));
    }
    // 8-aligned storage: the ELF parser reads the object in place.
    let mut out = vec![0u64; obj.len().div_ceil(8)];
    // SAFETY: `out` holds at least obj.len() bytes; u64 has no invalid bit patterns.
    let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), obj.len()) };
    bytes.copy_from_slice(obj);
    // (`program` fits the reserve, which lies inside the object: checked above.)
    for (slot, insn) in bytes
        .get_mut(at..at + reserve)
        .unwrap_or(&mut [])
        .chunks_exact_mut(8)
        .zip(program)
    {
        slot.copy_from_slice(&insn.to_le_bytes());
    }
    Ok(out)
}

/// `r0 = 1`: the stub's program when there is no expression (never run then: the program
/// checks `ProbeConfig::filter` first; the verifier still needs valid code there).
pub const ACCEPT_ALL: [u64; 1] = [0x0000_0001_0000_00b7];

/// Writes the selectors and whether a filter program is there into `c`.
fn apply_select(s: &KernelSelect, filter: bool, c: &mut ProbeConfig) {
    c.sel_ifindex = s.ifindex;
    c.sel_netns = s.netns;
    c.sel_reasons = match &s.reasons {
        None => SEL_REASONS_NONE,
        Some((true, _)) => SEL_REASONS_ONLY,
        Some((false, _)) => SEL_REASONS_EXCEPT,
    };
    c.filter = u32::from(filter);
    c.sel_pods = u32::from(s.pods.is_some());
    if s.ifaces.is_some() {
        c.sel_ifindex = capture_common::SEL_IFINDEX_SET;
    }
}

/// Parses a tracepoint `format` file into the kfree_skb field offsets.
pub fn parse_tracepoint_format(text: &str) -> Result<TpOffsets, String> {
    let mut skbaddr = None;
    let mut location = None;
    let mut reason = None;
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u32>().ok();
            } else if decl.is_none() && !part.is_empty() {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        let name = decl.rsplit([' ', '*']).next().unwrap_or("");
        match name {
            "skbaddr" if size == 8 => skbaddr = Some(offset),
            "location" if size == 8 => location = Some(offset),
            "reason" if size == 4 => reason = Some(offset),
            _ => {}
        }
    }
    let skbaddr = skbaddr.ok_or("no 8-byte `skbaddr` field")?;
    Ok(TpOffsets {
        skbaddr,
        location: location.unwrap_or(OFF_ABSENT),
        reason: reason.unwrap_or(OFF_ABSENT),
    })
}

/// Reads the tracepoint offsets from tracefs.
pub fn read_tracepoint_offsets() -> Result<TpOffsets, LoadError> {
    for path in KFREE_SKB_FORMAT_PATHS {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return parse_tracepoint_format(&text).map_err(|reason| {
                    LoadError::TracepointFormat {
                        path: path.to_string(),
                        reason,
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(LoadError::TracepointFormat {
                    path: path.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(LoadError::TracefsMissing)
}

/// Fills the kernel offsets of [`ProbeConfig`] from BTF. `head`, `data` and `len` are
/// required; every other field is `OFF_ABSENT` when this kernel lacks it.
pub fn probe_config(
    btf: &Btf,
    snaplen: u32,
    tp: Option<TpOffsets>,
) -> Result<ProbeConfig, LoadError> {
    let required =
        |owner: &str, path: &str, what: &'static str, size: u32| -> Result<u32, LoadError> {
            let off = btf
                .member_offset(owner, path)
                .map_err(|source| LoadError::Layout { what, source })?;
            check_size(btf, owner, path, size)
                .map_err(|source| LoadError::Layout { what, source })?;
            Ok(off)
        };
    let optional = |owner: &str, path: &str, size: u32| -> u32 {
        match btf
            .member_offset(owner, path)
            .and_then(|off| check_size(btf, owner, path, size).map(|()| off))
        {
            Ok(off) => off,
            Err(e) => {
                log::debug!("Kernel field {owner}.{path} unusable ({e}); the program skips it.");
                OFF_ABSENT
            }
        }
    };
    let tp = tp.unwrap_or(TpOffsets {
        skbaddr: OFF_ABSENT,
        location: OFF_ABSENT,
        reason: OFF_ABSENT,
    });
    let mut c = ProbeConfig {
        snaplen: snaplen.min(MAX_KERNEL_SNAPLEN),
        tp_off_skbaddr: tp.skbaddr,
        tp_off_location: tp.location,
        tp_off_reason: tp.reason,
        off_skb_head: required("sk_buff", "head", "sk_buff.head", 8)?,
        off_skb_data: required("sk_buff", "data", "sk_buff.data", 8)?,
        off_skb_len: required("sk_buff", "len", "sk_buff.len", 4)?,
        off_skb_data_len: optional("sk_buff", "data_len", 4),
        off_skb_mac_header: optional("sk_buff", "mac_header", 2),
        off_skb_network_header: optional("sk_buff", "network_header", 2),
        off_skb_protocol: optional("sk_buff", "protocol", 2),
        off_skb_dev: optional("sk_buff", "dev", 8),
        off_skb_iif: optional("sk_buff", "skb_iif", 4),
        off_skb_sk: optional("sk_buff", "sk", 8),
        off_dev_ifindex: optional("net_device", "ifindex", 4),
        off_dev_nd_net: optional("net_device", "nd_net.net", 8),
        off_sk_net: optional("sock", "__sk_common.skc_net.net", 8),
        off_net_inum: optional("net", "ns.inum", 4),
        // Rings, copy policy and selection: set by the loader from the options.
        ..ProbeConfig::UNCONFIGURED
    };
    (c.skb_copy_off, c.skb_copy_len) = skb_copy_span(&c);
    c.direct_packet = u32::from(untrusted_mem_loads(btf));
    Ok(c)
}

/// Whether this kernel's verifier lets a `tp_btf` program load through a BTF pointer to a
/// primitive type (such as `sk_buff.head`, an `unsigned char *`): Linux 6.17 typed such
/// pointers as read-only untrusted memory in the release that added `enum bpf_features`
/// with `BPF_FEAT_RDONLY_CAST_TO_VOID`, which is how a program (or we) can tell.
pub fn untrusted_mem_loads(btf: &Btf) -> bool {
    btf.find_enum("bpf_features").is_some_and(|e| {
        e.values
            .iter()
            .any(|(name, _)| name == "BPF_FEAT_RDONLY_CAST_TO_VOID")
    })
}

/// The `sk_buff` bytes that hold every `off_skb_*` member of `c` (each with its size):
/// `(start, length)`, or `(0, 0)` when they span more than `SKB_COPY_MAX` bytes.
pub fn skb_copy_span(c: &ProbeConfig) -> (u32, u32) {
    let members = [
        (c.off_skb_head, 8),
        (c.off_skb_data, 8),
        (c.off_skb_len, 4),
        (c.off_skb_data_len, 4),
        (c.off_skb_mac_header, 2),
        (c.off_skb_network_header, 2),
        (c.off_skb_protocol, 2),
        (c.off_skb_dev, 8),
        (c.off_skb_iif, 4),
        (c.off_skb_sk, 8),
    ];
    let mut start = u32::MAX;
    let mut end = 0u32;
    for (off, size) in members {
        if off == OFF_ABSENT {
            continue;
        }
        let Some(member_end) = off.checked_add(size) else {
            return (0, 0);
        };
        start = start.min(off);
        end = end.max(member_end);
    }
    match end.checked_sub(start) {
        Some(len) if len > 0 && len <= SKB_COPY_MAX => (start, len),
        _ => (0, 0),
    }
}

fn check_size(btf: &Btf, owner: &str, path: &str, size: u32) -> Result<(), BtfError> {
    let t = btf.member_type(owner, path)?;
    let have = btf.type_size(t)?;
    if have == size {
        Ok(())
    } else {
        Err(BtfError::MemberNotFound {
            owner: owner.to_string(),
            member: format!("{path} of {size} bytes (it has {have})"),
        })
    }
}

/// CPUs the kernel may run the program on (`/sys/devices/system/cpu/possible`): one ring
/// each, since `bpf_get_smp_processor_id()` can be any of them.
pub fn possible_cpus() -> Result<u32, LoadError> {
    let n = aya::util::nr_cpus().map_err(|(path, e)| LoadError::Ebpf {
        step: "counting CPUs",
        message: format!("{path}: {e}"),
    })?;
    u32::try_from(n).map_err(|_| LoadError::Ebpf {
        step: "counting CPUs",
        message: format!("{n} CPUs"),
    })
}

/// Raises RLIMIT_MEMLOCK for kernels before 5.11; failure is expected on newer kernels.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; no other memory is touched.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        log::debug!(
            "Could not raise RLIMIT_MEMLOCK ({}); kernels since 5.11 do not need it.",
            io::Error::last_os_error()
        );
    }
}

/// Loads the object with `config` written into `.rodata` and rings for `cpus` CPUs of
/// `config.ring_blocks` blocks each (0 blocks: one-element maps, and the program counts
/// every drop as ring-full).
pub fn load_object(
    config: &ProbeConfig,
    cpus: u32,
    kernel_flows: u32,
    btf: Option<&aya::Btf>,
    filter: &[u64],
) -> Result<Ebpf, LoadError> {
    if object().is_empty() {
        return Err(LoadError::NoObject);
    }
    let patched = patch_filter_stub(object(), filter)?;
    // SAFETY: the vector holds at least object().len() initialised bytes.
    let obj = unsafe { std::slice::from_raw_parts(patched.as_ptr().cast::<u8>(), object().len()) };
    raise_memlock();
    let mut loader = EbpfLoader::new();
    loader.btf(btf);
    loader.override_global(GLOBAL_CONFIG, config, true);
    let cpus = cpus.max(1);
    loader.map_max_entries(
        MAP_RING_DATA,
        cpus.saturating_mul(config.ring_blocks).max(1),
    );
    loader.map_max_entries(MAP_RING_POS, cpus);
    for name in [MAP_FLOWS_0, MAP_FLOWS_1, MAP_BUDGET_0, MAP_BUDGET_1] {
        loader.map_max_entries(name, kernel_flows.max(1));
    }
    loader
        .load(obj)
        .map_err(|e| classify("loading the eBPF object", PROG_TP_BTF, &e))
}

/// Loads the object and attaches the kfree_skb program per `opts.attach`.
pub fn load_and_attach(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    if object().is_empty() {
        return Err(LoadError::NoObject);
    }
    // The ring's publishing store is a release store only under x86-64's ordering.
    if !cfg!(target_arch = "x86_64") {
        return Err(LoadError::Architecture {
            arch: std::env::consts::ARCH,
        });
    }
    let btf = Btf::from_sys().map_err(|source| LoadError::NoBtf { source })?;
    let tp = match opts.attach {
        AttachMode::TpBtf => None,
        AttachMode::Tracepoint => Some(read_tracepoint_offsets()?),
        AttachMode::Auto => match read_tracepoint_offsets() {
            Ok(t) => Some(t),
            Err(e) => {
                log::debug!("Tracepoint fallback unavailable: {e}.");
                None
            }
        },
    };
    let mut config = probe_config(&btf, opts.snaplen, tp)?;
    drop(btf);
    if !opts.direct_packet {
        config.direct_packet = 0;
    }
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| LoadError::NoBtf {
        source: BtfError::Io {
            path: VMLINUX_BTF.to_string(),
            source: io::Error::other(one_line(&e.to_string())),
        },
    })?;
    config.ring_blocks = super::ring::blocks_for(opts.ring_bytes_per_cpu);
    opts.apply_policy(&mut config);
    config.nest_guard = u32::from(kernel_release().is_none_or(|v| v < (6, 1)));
    let cpus = possible_cpus()?;
    let sel = &opts.select;
    let program = sel.program.as_deref();
    apply_select(sel, program.is_some(), &mut config);
    let attempt = |config: &ProbeConfig| {
        load_select_attach(
            opts,
            config,
            cpus,
            &aya_btf,
            tp,
            program.unwrap_or(&ACCEPT_ALL),
        )
    };
    let mut first = attempt(&config);
    if let (Err(e), true) = (&first, config.direct_packet != 0) {
        // The kernel named the feature but refused the loads: read packets as before.
        log::debug!("Direct packet loads refused ({e}); using bpf_probe_read_kernel.");
        config.direct_packet = 0;
        first = attempt(&config);
    }
    let (ebpf, attached, packets) = match first {
        Err(LoadError::Verifier { log_tail, .. }) if program.is_some() => {
            // The verifier refused the translated expression: the same classic BPF
            // runs in the decode stage instead (the caller is told).
            let why = format!("the kernel verifier refused its translation: {log_tail}");
            apply_select(sel, false, &mut config);
            let (ebpf, attached, packets) =
                load_select_attach(opts, &config, cpus, &aya_btf, tp, &ACCEPT_ALL)?;
            log::debug!("Attached to {}.", attached.mode().as_str());
            return Ok(Loaded {
                ebpf,
                attached,
                config,
                cpus,
                filter_fallback: Some(why),
                packets,
            });
        }
        r => r?,
    };
    log::debug!("Attached to {}.", attached.mode().as_str());
    Ok(Loaded {
        ebpf,
        attached,
        config,
        cpus,
        filter_fallback: None,
        packets,
    })
}

/// Loads the object with `filter` in the stub, fills the reason selection and attaches.
fn load_select_attach(
    opts: &LoadOptions,
    config: &ProbeConfig,
    cpus: u32,
    aya_btf: &aya::Btf,
    tp: Option<TpOffsets>,
    filter: &[u64],
) -> Result<(Ebpf, Attached, Option<super::packets::PacketLinks>), LoadError> {
    let mut ebpf = load_object(config, cpus, opts.kernel_flows, Some(aya_btf), filter)?;
    if let Some(keys) = &opts.select.ifaces {
        fill_iface_select(&mut ebpf, keys)?;
    }
    if let Some((_, reasons)) = &opts.select.reasons {
        fill_reason_select(&mut ebpf, reasons)?;
    }
    if let Some(keys) = &opts.select.pods {
        let map = ebpf.map_mut(MAP_POD_SELECT).ok_or(LoadError::Ebpf {
            step: "filling the pod selection",
            message: format!("no map {MAP_POD_SELECT}"),
        })?;
        let mut sel: aya::maps::HashMap<_, PodKey, u8> = aya::maps::HashMap::try_from(map)
            .map_err(|e| LoadError::Ebpf {
                step: "filling the pod selection",
                message: one_line(&e.to_string()),
            })?;
        let refused = add_pod_keys(&mut sel, keys);
        if refused > 0 {
            return Err(LoadError::Ebpf {
                step: "filling the pod selection",
                message: format!(
                    "{refused} of {} namespaces, interfaces and addresses did not fit (at most {POD_SELECT_ENTRIES}): select fewer pods",
                    keys.len()
                ),
            });
        }
    }
    let attached = match opts.attach {
        AttachMode::TpBtf => attach_tp_btf(&mut ebpf, aya_btf)?,
        AttachMode::Tracepoint => attach_tracepoint(&mut ebpf)?,
        AttachMode::Auto => match attach_tp_btf(&mut ebpf, aya_btf) {
            Ok(a) => a,
            // The caller tries tp_btf again without direct packet loads first.
            Err(first) if config.direct_packet != 0 => return Err(first),
            Err(first) => {
                log::info!(
                    "tp_btf/kfree_skb unavailable ({first}); using the kfree_skb tracepoint."
                );
                if tp.is_none() {
                    return Err(match read_tracepoint_offsets() {
                        Err(e) => e,
                        Ok(_) => first,
                    });
                }
                attach_tracepoint(&mut ebpf)?
            }
        },
    };
    // After the kfree_skb program: a packet that passes and is then dropped shows both.
    let packets = if opts.packets.is_empty() {
        None
    } else {
        Some(super::packets::attach(
            &mut ebpf,
            &opts.packets,
            opts.tc_mode,
        )?)
    };
    Ok((ebpf, attached, packets))
}

/// The interfaces `-i` names (given more than once), into `IFACE_SELECT`.
fn fill_iface_select(ebpf: &mut Ebpf, keys: &[capture_common::PktKey]) -> Result<(), LoadError> {
    let fail = |message: String| LoadError::Ebpf {
        step: "filling the interface selection",
        message,
    };
    if keys.len() > capture_common::IFACE_SELECT_ENTRIES as usize {
        return Err(fail(format!(
            "{} interfaces selected; at most {}",
            keys.len(),
            capture_common::IFACE_SELECT_ENTRIES
        )));
    }
    let map = ebpf
        .map_mut(capture_common::MAP_IFACE_SELECT)
        .ok_or_else(|| fail(format!("no map {}", capture_common::MAP_IFACE_SELECT)))?;
    let mut sel: aya::maps::HashMap<_, capture_common::PktKey, u8> =
        aya::maps::HashMap::try_from(map).map_err(|e| fail(one_line(&e.to_string())))?;
    for k in keys {
        sel.insert(k, 1, 0)
            .map_err(|e| fail(one_line(&e.to_string())))?;
    }
    Ok(())
}

/// Adds `keys` to a `POD_SELECT` map (the kernel program's pod selection, also while it
/// runs); returns how many did not fit.
pub fn add_pod_keys<T: std::borrow::BorrowMut<aya::maps::MapData>>(
    map: &mut aya::maps::HashMap<T, PodKey, u8>,
    keys: &[PodKey],
) -> usize {
    keys.iter()
        .filter(|k| map.insert(*k, 1, 0).is_err())
        .count()
}

/// The reasons `--reason`/`--not-reason` name, into `REASON_SELECT` (before attaching).
fn fill_reason_select(ebpf: &mut Ebpf, reasons: &[u32]) -> Result<(), LoadError> {
    let fail = |message: String| LoadError::Ebpf {
        step: "filling the reason selection",
        message,
    };
    if reasons.len() > REASON_SELECT_ENTRIES as usize {
        return Err(fail(format!(
            "{} reasons selected; at most {REASON_SELECT_ENTRIES}",
            reasons.len()
        )));
    }
    let map = ebpf
        .map_mut(MAP_REASON_SELECT)
        .ok_or_else(|| fail(format!("no map {MAP_REASON_SELECT}")))?;
    let mut sel: aya::maps::HashMap<_, u32, u8> =
        aya::maps::HashMap::try_from(map).map_err(|e| fail(one_line(&e.to_string())))?;
    for r in reasons {
        sel.insert(r, 1, 0)
            .map_err(|e| fail(one_line(&e.to_string())))?;
    }
    Ok(())
}

fn attach_tp_btf(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Attached, LoadError> {
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(PROG_TP_BTF)
        .ok_or(LoadError::Ebpf {
            step: "finding tp_btf program",
            message: PROG_TP_BTF.to_string(),
        })?
        .try_into()
        .map_err(|e: ProgramError| classify("finding tp_btf program", PROG_TP_BTF, &e))?;
    prog.load("kfree_skb", btf)
        .map_err(|e| classify("loading tp_btf/kfree_skb", PROG_TP_BTF, &e))?;
    let link = prog
        .attach()
        .map_err(|e| classify("attaching tp_btf/kfree_skb", PROG_TP_BTF, &e))?;
    Ok(Attached::TpBtf(link))
}

fn attach_tracepoint(ebpf: &mut Ebpf) -> Result<Attached, LoadError> {
    if !KFREE_SKB_FORMAT_PATHS.iter().any(|p| Path::new(p).exists()) {
        return Err(LoadError::TracefsMissing);
    }
    let prog: &mut TracePoint = ebpf
        .program_mut(PROG_TRACEPOINT)
        .ok_or(LoadError::Ebpf {
            step: "finding tracepoint program",
            message: PROG_TRACEPOINT.to_string(),
        })?
        .try_into()
        .map_err(|e: ProgramError| classify("finding tracepoint program", PROG_TRACEPOINT, &e))?;
    prog.load()
        .map_err(|e| classify("loading tracepoint/skb/kfree_skb", PROG_TRACEPOINT, &e))?;
    let link = prog
        .attach("skb", "kfree_skb")
        .map_err(|e| classify("attaching tracepoint/skb/kfree_skb", PROG_TRACEPOINT, &e))?;
    Ok(Attached::Tracepoint(link))
}

#[cfg(test)]
mod tests {
    use super::super::btf::{builder::Builder, kind};
    use super::*;

    const FORMAT_6_18: &str = "name: kfree_skb
ID: 2310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;

print fmt: \"skbaddr=%p\", REC->skbaddr
";

    #[test]
    fn tracepoint_format_6_18() {
        let t = parse_tracepoint_format(FORMAT_6_18).unwrap();
        assert_eq!(
            t,
            TpOffsets {
                skbaddr: 8,
                location: 16,
                reason: 36
            }
        );
    }

    #[test]
    fn tracepoint_format_before_reasons() {
        // 5.10-style layout: no reason field.
        let text = "\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
                    \tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
                    \tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;\n";
        let t = parse_tracepoint_format(text).unwrap();
        assert_eq!(
            t,
            TpOffsets {
                skbaddr: 8,
                location: 16,
                reason: OFF_ABSENT
            }
        );
        assert!(parse_tracepoint_format("field:int x;\toffset:8;\tsize:4;").is_err());
        assert!(parse_tracepoint_format("").is_err());
    }

    fn mini_kernel() -> Btf {
        let mut b = Builder::new();
        let u8t = b.int("unsigned char", 1);
        let u16t = b.int("unsigned short", 2);
        let u32t = b.int("unsigned int", 4);
        let pu8 = b.ptr(u8t);
        let ns = b.composite(kind::STRUCT, "ns_common", 16, &[("inum", u32t, 64)]);
        let net = b.composite(kind::STRUCT, "net", 64, &[("ns", ns, 128)]);
        let pnet = b.ptr(net);
        let possible = b.composite(kind::STRUCT, "", 8, &[("net", pnet, 0)]);
        let dev = b.composite(
            kind::STRUCT,
            "net_device",
            256,
            &[("ifindex", u32t, 256), ("nd_net", possible, 512)],
        );
        let pdev = b.ptr(dev);
        let skc = b.composite(
            kind::STRUCT,
            "sock_common",
            64,
            &[("skc_net", possible, 384)],
        );
        let _sock = b.composite(kind::STRUCT, "sock", 128, &[("__sk_common", skc, 0)]);
        b.composite(
            kind::STRUCT,
            "sk_buff",
            232,
            &[
                ("dev", pdev, 128),
                ("sk", pu8, 192),
                ("len", u32t, 896),
                ("data_len", u32t, 928),
                ("skb_iif", u32t, 1152),
                ("protocol", u16t, 1280),
                ("network_header", u16t, 1312),
                ("mac_header", u16t, 1328),
                ("head", pu8, 1536),
                ("data", pu8, 1600),
            ],
        );
        Btf::parse(b.build()).unwrap()
    }

    #[test]
    fn probe_config_from_btf() {
        let tp = TpOffsets {
            skbaddr: 8,
            location: 16,
            reason: 36,
        };
        let c = probe_config(&mini_kernel(), 100_000, Some(tp)).unwrap();
        assert_eq!(
            c,
            ProbeConfig {
                snaplen: MAX_KERNEL_SNAPLEN,
                tp_off_skbaddr: 8,
                tp_off_location: 16,
                tp_off_reason: 36,
                off_skb_head: 192,
                off_skb_data: 200,
                off_skb_len: 112,
                off_skb_data_len: 116,
                off_skb_mac_header: 166,
                off_skb_network_header: 164,
                off_skb_protocol: 160,
                off_skb_dev: 16,
                off_skb_iif: 144,
                off_skb_sk: 24,
                off_dev_ifindex: 32,
                off_dev_nd_net: 64,
                off_sk_net: 48,
                off_net_inum: 24,
                ring_blocks: 0,
                // dev (16) .. data (200 + 8)
                skb_copy_off: 16,
                skb_copy_len: 192,
                ..ProbeConfig::UNCONFIGURED
            }
        );
    }

    #[test]
    fn skb_copy_span_covers_present_members_only() {
        let mut c = ProbeConfig {
            off_skb_head: 192,
            off_skb_data: 200,
            off_skb_len: 112,
            ..ProbeConfig::default()
        };
        for off in [
            &mut c.off_skb_data_len,
            &mut c.off_skb_mac_header,
            &mut c.off_skb_network_header,
            &mut c.off_skb_protocol,
            &mut c.off_skb_dev,
            &mut c.off_skb_iif,
            &mut c.off_skb_sk,
        ] {
            *off = OFF_ABSENT;
        }
        assert_eq!(skb_copy_span(&c), (112, 96));
        c.off_skb_mac_header = 100;
        assert_eq!(skb_copy_span(&c), (100, 108));
        // Longer than SKB_COPY_MAX: no span, the program reads member by member.
        c.off_skb_sk = 100 + SKB_COPY_MAX - 8 + 1;
        assert_eq!(skb_copy_span(&c), (0, 0));
        c.off_skb_sk = 100 + SKB_COPY_MAX - 8;
        assert_eq!(skb_copy_span(&c), (100, SKB_COPY_MAX));
        // An offset that overflows with its size is never trusted.
        c.off_skb_sk = u32::MAX - 4;
        assert_eq!(skb_copy_span(&c), (0, 0));
    }

    #[test]
    fn probe_config_missing_required_and_optional() {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        b.composite(kind::STRUCT, "sk_buff", 8, &[("len", u32t, 0)]);
        let err = probe_config(&Btf::parse(b.build()).unwrap(), 64, None).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::Layout {
                    what: "sk_buff.head",
                    ..
                }
            ),
            "{err}"
        );

        let mut b = Builder::new();
        let u8t = b.int("unsigned char", 1);
        let u32t = b.int("unsigned int", 4);
        let pu8 = b.ptr(u8t);
        // mac_header has the wrong size: treated as absent, not trusted.
        b.composite(
            kind::STRUCT,
            "sk_buff",
            32,
            &[
                ("head", pu8, 0),
                ("data", pu8, 64),
                ("len", u32t, 128),
                ("mac_header", u32t, 160),
            ],
        );
        let c = probe_config(&Btf::parse(b.build()).unwrap(), 64, None).unwrap();
        assert_eq!((c.off_skb_head, c.off_skb_data, c.off_skb_len), (0, 8, 16));
        assert_eq!(c.off_skb_mac_header, OFF_ABSENT);
        assert_eq!(c.off_net_inum, OFF_ABSENT);
        assert_eq!(c.tp_off_skbaddr, OFF_ABSENT);
        assert_eq!(c.snaplen, 64);
    }

    #[test]
    fn live_kernel_layout_if_present() {
        let Ok(btf) = Btf::from_sys() else {
            eprintln!("skipping: no {VMLINUX_BTF}");
            return;
        };
        let c = probe_config(&btf, 256, None).unwrap();
        for (name, off) in [
            ("data_len", c.off_skb_data_len),
            ("mac_header", c.off_skb_mac_header),
            ("network_header", c.off_skb_network_header),
            ("protocol", c.off_skb_protocol),
            ("dev", c.off_skb_dev),
            ("ifindex", c.off_dev_ifindex),
            ("net_inum", c.off_net_inum),
        ] {
            assert_ne!(off, OFF_ABSENT, "{name}");
        }
        assert_eq!(
            c.off_skb_data,
            c.off_skb_head + 8,
            "head and data are adjacent in sk_buff"
        );
        // The tracepoint program reads all sk_buff members with one copy here.
        assert_ne!(c.skb_copy_len, 0);
        assert_eq!((c.skb_copy_off, c.skb_copy_len), skb_copy_span(&c));
    }

    #[test]
    fn without_an_object_loading_says_how_to_fix_it() {
        if !object().is_empty() {
            eprintln!("skipping: this build has an eBPF object (AYA_BUILD_SKIP unset)");
            return;
        }
        let err = load_and_attach(&LoadOptions::default()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "this build has no eBPF object; rebuild without AYA_BUILD_SKIP"
        );
        let err = load_object(&ProbeConfig::default(), 1, 1, None, &ACCEPT_ALL)
            .err()
            .unwrap();
        assert!(matches!(err, LoadError::NoObject));
    }

    #[test]
    fn possible_cpus_cover_the_online_ones() {
        let possible = possible_cpus().unwrap();
        let online = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert!(possible >= online, "{possible} possible < {online} usable");
    }

    #[test]
    fn default_ring_size_shrinks_with_cpus_within_bounds() {
        assert_eq!(default_ring_bytes_per_cpu(1), 4 << 20);
        assert_eq!(default_ring_bytes_per_cpu(2), 4 << 20);
        assert_eq!(default_ring_bytes_per_cpu(8), 4 << 20);
        assert_eq!(default_ring_bytes_per_cpu(16), 2 << 20);
        assert_eq!(default_ring_bytes_per_cpu(24), 1 << 20);
        assert_eq!(default_ring_bytes_per_cpu(128), 256 << 10);
        assert_eq!(default_ring_bytes_per_cpu(4096), 256 << 10);
        assert_eq!(default_ring_bytes_per_cpu(0), 4 << 20);
        // The total stays within the budget from 8 CPUs up to 128.
        for cpus in 8..=128u32 {
            assert!(
                default_ring_bytes_per_cpu(cpus) * u64::from(cpus) <= DEFAULT_RING_BUDGET_BYTES
            );
        }
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.0-13-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0"), Some((5, 10)));
        assert_eq!(parse_release("6.1"), Some((6, 1)));
        assert_eq!(parse_release("garbage"), None);
        assert!(kernel_release().is_some());
    }

    #[test]
    fn copy_policy_in_the_config() {
        let mut c = ProbeConfig {
            ring_blocks: 16,
            ..ProbeConfig::UNCONFIGURED
        };
        LoadOptions::default().apply_policy(&mut c);
        assert_eq!(c.exemplars, EXEMPLARS_ALL);
        assert_eq!(
            (c.storm_on_bytes, c.storm_off_bytes),
            (512 << 10, 128 << 10)
        );
        assert_eq!(c.storm_exemplars, AUTO_STORM_EXEMPLARS);
        let o = LoadOptions {
            exemplars: Some(2),
            ..LoadOptions::default()
        };
        o.apply_policy(&mut c);
        assert_eq!(
            (c.exemplars, c.storm_on_bytes, c.storm_exemplars),
            (2, 0, 0)
        );
        let o = LoadOptions {
            auto_storm: false,
            ..LoadOptions::default()
        };
        o.apply_policy(&mut c);
        assert_eq!((c.exemplars, c.storm_on_bytes), (EXEMPLARS_ALL, 0));
    }

    #[test]
    fn verifier_log_tail_is_one_line() {
        let log = "0: R1=ctx\n\n1: (85) call bpf_probe_read_kernel#113\nR2 unbounded memory access\nprocessed 10 insns\n";
        assert_eq!(
            log_tail(log, 2),
            "R2 unbounded memory access | processed 10 insns"
        );
        assert_eq!(log_tail("", 3), "no verifier log");
    }

    #[test]
    fn error_messages_are_one_line() {
        let errs = [
            LoadError::NoObject,
            LoadError::Permission,
            LoadError::TracefsMissing,
            LoadError::NoBtf {
                source: BtfError::TooShort { need: 24, have: 0 },
            },
        ];
        for e in errs {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert_eq!(
            LoadError::Permission.to_string(),
            "loading the eBPF program needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN on kernels before 5.8); run as root or grant them"
        );
    }

    #[test]
    fn eperm_in_a_chain_is_permission() {
        let e = ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(libc::EPERM),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        };
        assert!(matches!(
            classify("x", PROG_TP_BTF, &e),
            LoadError::Permission
        ));
        let e = ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new(
                "a\nb\ninvalid access to map value\n".to_string(),
            ),
        };
        match classify("x", PROG_TP_BTF, &e) {
            LoadError::Verifier {
                program, log_tail, ..
            } => {
                assert_eq!(program, PROG_TP_BTF);
                assert_eq!(log_tail, "a | b | invalid access to map value");
            }
            other => panic!("{other}"),
        }
    }
}
