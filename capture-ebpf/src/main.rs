//! dropscope's kernel programs: every packet the kernel frees through `skb:kfree_skb` is
//! counted per reason and per flow, and (by policy) copied as one record (a
//! [`KfreeSkbEvent`] followed by up to `snaplen` packet bytes) into the ring of the CPU it
//! was freed on.
//!
//! Two entry points feed one function: `kfree_skb_btf` (`tp_btf/kfree_skb`, typed arguments)
//! and `kfree_skb_tp` (the classic tracepoint, arguments at offsets user space reads from the
//! tracepoint's `format` file). Per drop:
//! 1. the reason counter (`REASON_ARRAY`/`REASON_COUNTS`, per CPU);
//! 2. when every drop is copied (no budget): the copy into the ring first; if it holds the
//!    network-header bytes the flow key is made of, the record goes without `FLAG_COUNTED`
//!    and user space counts the drop per flow from it, with the same key; the kernel table
//!    is not touched. No room in the ring: the reason's `ring_full`, and step 3;
//! 3. otherwise the kernel flow table (`CACHE_<gen>` in front of `FLOWS_<gen>`): a
//!    [`KFlowKey`] built from the skb and up to [`KEY_HDR_BYTES`] of its network header,
//!    holding this CPU's number, so each entry has one writer and counts with plain adds;
//!    no room: the reason's `table_full`;
//! 4. with a budget (`--exemplars`, or the automatic storm switch while this CPU's ring is
//!    more than `storm_on_bytes` full): this CPU's count for the key in this generation,
//!    then the key's shared count in `BUDGET_<gen>` (one atomic add) decide whether to copy
//!    (with `FLAG_COUNTED`); not copied: the reason's `not_copied`.
//!
//! So user space can reconcile exactly, for every reason: `seen == in table + table_full`
//! (the table being the kernel's rows plus the rows user space counted from records) and
//! `seen == not_copied + ring_full + delivered`.
//!
//! Output goes to per-CPU rings in two mmap-able array maps (layout: capture-common,
//! [`RingPos`]) instead of a BPF ring buffer: the program writes the record straight into
//! its own CPU's ring (one copy of the packet, no lock, no cache line shared with other
//! CPUs) and publishes it by storing the new end position; user space polls. Each ring has
//! exactly one writer because the kernel never runs a tracing program nested on one CPU
//! (a nested run is skipped and counted by the kernel in the program's `recursion_misses`;
//! raw tracepoints have that guard in `__bpf_trace_run`, the classic tracepoint path the
//! CPU-wide `bpf_prog_active` one, so neither can run twice at once on a CPU).
//! The publishing store is a plain store after the frame's volatile stores: a release store
//! on x86-64 (TSO), paired with the reader's acquire load of `prod`; user space refuses to
//! load the program on other architectures (they would need the BPF store-release
//! instruction, Linux 6.15+, which this toolchain does not emit).
//!
//! Must never: change what happens to traffic (tracing programs return 0), hard-code a kernel
//! struct offset (they all come from [`ProbeConfig`] in `.rodata`), retry a full ring,
//! write past the reader's position, publish a frame before its bytes are written, or write
//! a flow entry of another CPU.
// Built for bpfel-unknown-none by engine/build.rs. On the host it compiles to a stub
// binary, so workspace-wide `cargo check/clippy/test --workspace` keep working.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The BPF target has no atomic read-modify-write in `core::sync::atomic` (no CAS); the
// exemplar budget's shared counter uses the add intrinsic (BPF_XADD, whose result is unused:
// fetching needs BPF v3, and the object is built for the generic CPU).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
// The filter stub's reserve of instructions is written with `asm!`.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
// Entry points keep the aya-template shape `match try_x(ctx) { Ok(v) => v, Err(_) => 0 }`.
#![allow(clippy::manual_unwrap_or_default, clippy::manual_unwrap_or)]

use core::{
    ffi::c_void,
    mem::size_of,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{
        bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_ns,
        generated::{bpf_probe_read_kernel as read_raw, bpf_skb_load_bytes},
    },
    macros::{btf_tracepoint, classifier, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, TcContext, TracePointContext},
};
use capture_common::{
    CacheSlot, FrameHeader, KFlowKey, KFlowValue, KfreeSkbEvent, PacketEvent, PktCounter, PktKey,
    PodKey, ProbeConfig, ReasonCounter, RecordHeader, RingPos, ABI_VERSION, CACHE_SLOTS,
    DIR_INBOUND, DIR_OUTBOUND, EXEMPLARS_ALL, FILTER_MEM_LEN, FILTER_RESERVE, FILTER_WIRELEN_OFF,
    FLAG_COUNTED, FLAG_L3, FLAG_LINEAR_END, FLAG_READ_FAILED, FRAME_PAD, IFACE_SELECT_ENTRIES,
    KEY_HDR_BYTES, KFAMILY_NONE, KFAMILY_V4, KFAMILY_V6, KIND_KFREE_SKB, KIND_PACKET,
    MAX_KERNEL_SNAPLEN, OFF_ABSENT, PKT_COUNTS_ENTRIES, POD_KEY_DEV, POD_KEY_NETNS, POD_KEY_V4,
    POD_KEY_V6, POD_SELECT_ENTRIES, REASON_ARRAY_ENTRIES, REASON_MAP_ENTRIES,
    REASON_SELECT_ENTRIES, RING_BLOCK, RING_BLOCK_SHIFT, RING_ELEM, SEL_IFINDEX_SET,
    SEL_REASONS_NONE, SEL_REASONS_ONLY, SKB_COPY_MAX, STAT_COUNT, STAT_NESTED, STAT_PKT_MAP_FULL,
    STAT_READ_FAILED, STAT_REASON_MAP_FULL, STAT_RING_FULL,
};

/// Written by user space at load time (`EbpfLoader::override_global`); the default makes
/// every kernel field absent, so an unconfigured program still counts drops safely.
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig::UNCONFIGURED;

/// Puts the ABI types into the object's BTF, where an engine test compares their layout with
/// capture-common's (the maps above are legacy maps, whose value types BTF does not see).
/// Lives in `.rodata` and is never read.
#[repr(C)]
pub struct AbiAnchor {
    pub event: KfreeSkbEvent,
    pub header: RecordHeader,
    pub counter: ReasonCounter,
    pub frame: FrameHeader,
    pub pos: RingPos,
    pub key: KFlowKey,
    pub value: KFlowValue,
    pub slot: CacheSlot,
    pub pod: PodKey,
    pub packet: PacketEvent,
    pub pkt_key: PktKey,
    pub pkt_counter: PktCounter,
}

const ZERO_KEY: KFlowKey = KFlowKey {
    reason: 0,
    ifindex: 0,
    netns_ino: 0,
    cpu: 0,
    location: 0,
    saddr: [0; 16],
    daddr: [0; 16],
    sport: 0,
    dport: 0,
    protocol: 0,
    l4proto: 0,
    family: 0,
};

const ZERO_VALUE: KFlowValue = KFlowValue {
    packets: 0,
    bytes: 0,
    first_ns: 0,
    last_ns: 0,
    copied: 0,
    budget_used: 0,
    epoch: 0,
};

#[no_mangle]
#[used]
static ABI_ANCHOR: AbiAnchor = AbiAnchor {
    event: KfreeSkbEvent {
        hdr: RecordHeader {
            version: 0,
            kind: 0,
            hdr_len: 0,
            cpu: 0,
            ts_ns: 0,
        },
        location: 0,
        reason: 0,
        ifindex: 0,
        netns_ino: 0,
        orig_len: 0,
        cap_len: 0,
        protocol: 0,
        flags: 0,
        _pad: 0,
        net_off: 0,
    },
    header: RecordHeader {
        version: 0,
        kind: 0,
        hdr_len: 0,
        cpu: 0,
        ts_ns: 0,
    },
    counter: ReasonCounter {
        seen: 0,
        ring_full: 0,
        table_full: 0,
        not_copied: 0,
        filtered: 0,
    },
    frame: FrameHeader {
        len: 0,
        _reserved: 0,
    },
    pos: RingPos {
        prod: 0,
        storm_since: 0,
        storm_count: 0,
        storm_total_ns: 0,
        _pad0: [0; 4],
        cons: 0,
        _pad1: [0; 7],
        limit: 0,
        _pad2: [0; 7],
    },
    key: ZERO_KEY,
    value: ZERO_VALUE,
    slot: CacheSlot {
        key: ZERO_KEY,
        val: ZERO_VALUE,
    },
    pod: PodKey { kind: 0, a: [0; 4] },
    packet: PacketEvent {
        hdr: RecordHeader {
            version: 0,
            kind: 0,
            hdr_len: 0,
            cpu: 0,
            ts_ns: 0,
        },
        ifindex: 0,
        netns_ino: 0,
        orig_len: 0,
        cap_len: 0,
        protocol: 0,
        direction: 0,
        flags: 0,
        _pad: 0,
        mark: 0,
    },
    pkt_key: PktKey {
        ifindex: 0,
        netns_ino: 0,
        direction: 0,
    },
    pkt_counter: PktCounter {
        seen: 0,
        filtered: 0,
        ring_full: 0,
        busy: 0,
    },
};

/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h): user space maps the array's values.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The rings' bytes: CPU `c` owns elements `c * ring_blocks ..= c * ring_blocks + ring_blocks
/// - 1`. User space sets the real number of elements at load time.
#[map]
static RING_DATA: Array<[u8; RING_ELEM as usize]> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// The rings' positions, one element per CPU; user space sets the number at load time.
#[map]
static RING_POS: Array<RingPos> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// `STAT_*` counters, per CPU.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Drops per reason for reasons below `REASON_ARRAY_ENTRIES` (all core reasons), per CPU:
/// an array slot costs no hashing.
#[map]
static REASON_ARRAY: PerCpuArray<ReasonCounter> =
    PerCpuArray::with_max_entries(REASON_ARRAY_ENTRIES, 0);

/// Drops per raw reason value for the other reasons (subsystem reasons), per CPU.
#[map]
static REASON_COUNTS: PerCpuHashMap<u32, ReasonCounter> =
    PerCpuHashMap::with_max_entries(REASON_MAP_ENTRIES, 0);

/// The kernel flow table, generation 0 and 1 (see capture-common's `MAP_FLOWS_0`): every
/// drop counted per [`KFlowKey`]. User space sets the size (`--kernel-flows`) at load time.
#[map]
static FLOWS_0: HashMap<KFlowKey, KFlowValue> = HashMap::with_max_entries(1, 0);
#[map]
static FLOWS_1: HashMap<KFlowKey, KFlowValue> = HashMap::with_max_entries(1, 0);

/// Exemplar copies per key (with `cpu` 0) in generation 0 and 1, shared by all CPUs.
#[map]
static BUDGET_0: HashMap<KFlowKey, u64> = HashMap::with_max_entries(1, 0);
#[map]
static BUDGET_1: HashMap<KFlowKey, u64> = HashMap::with_max_entries(1, 0);

/// The table epoch programs count into (element 0; its bit 0 is the generation), set by
/// user space.
#[map]
static FLOW_GEN: Array<u32> = Array::with_max_entries(1, 0);

/// The per-CPU flow caches of generation 0 and 1 (see capture-common's `MAP_CACHE_0`).
#[map]
static CACHE_0: PerCpuArray<CacheSlot> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);
#[map]
static CACHE_1: PerCpuArray<CacheSlot> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);

/// Per-CPU room for the tracepoint program's copy of the `sk_buff` bytes it needs
/// (`Probe::skb_fields`), too big for the 512-byte stack, and for the network-header bytes
/// a drop is keyed by.
#[repr(C)]
pub struct Scratch {
    pub skb: [u8; SKB_COPY_MAX as usize],
    pub hdr: [u8; KEY_HDR_BYTES as usize],
    /// Non-zero while a run of the program is on this CPU (see `on_drop`).
    pub busy: u64,
    /// The jiffy of the last precise clock read on this CPU, and that read (see `tick_now`).
    pub tick_jiffies: u64,
    pub tick_ns: u64,
    /// `netns << 32 | ifindex` of the last drop the pod selection took by its namespace or
    /// interface (0: none yet): the next drop there is taken without a map lookup. Entries
    /// of `POD_SELECT` are never removed, so a hit stays true.
    pub pod_hit: u64,
}

// `flags` and `_pad` end the event and are written as one aligned little-endian u32.
const _: () = assert!(core::mem::offset_of!(KfreeSkbEvent, flags) % 4 == 0);
const _: () =
    assert!(core::mem::offset_of!(KfreeSkbEvent, flags) + 4 == size_of::<KfreeSkbEvent>());
const _: () = assert!(cfg!(target_endian = "little"));

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Reasons `--reason`/`--not-reason` name (reason -> 1), when `sel_reasons` says so.
#[map]
static REASON_SELECT: HashMap<u32, u8> = HashMap::with_max_entries(REASON_SELECT_ENTRIES, 0);

/// The selected pods' namespaces, interfaces and addresses (`PodKey` -> 1), when
/// `sel_pods` says so. User space adds entries as pods appear; the program only reads.
#[map]
static POD_SELECT: HashMap<PodKey, u8> = HashMap::with_max_entries(POD_SELECT_ENTRIES, 0);

/// Packets the tc programs saw, per interface and direction, per CPU (`--packets`).
#[map]
static PKT_COUNTS: PerCpuHashMap<PktKey, PktCounter> =
    PerCpuHashMap::with_max_entries(PKT_COUNTS_ENTRIES, 0);

/// The interfaces `-i` names with `--packets` (`PktKey` with direction 0 -> 1), when
/// `sel_ifindex` is `SEL_IFINDEX_SET`.
#[map]
static IFACE_SELECT: HashMap<PktKey, u8> = HashMap::with_max_entries(IFACE_SELECT_ENTRIES, 0);

/// The filter stub's scratch: classic BPF's memory words and the wire length
/// (`FILTER_MEM_LEN` bytes), and room for the packet bytes when the filter must run before
/// (or without) a copy into the ring.
#[repr(C)]
pub struct FilterBuf {
    pub mem: [u8; FILTER_MEM_LEN as usize],
    pub pkt: [u8; MAX_KERNEL_SNAPLEN as usize],
}

#[map]
static FILTER_BUF: PerCpuArray<FilterBuf> = PerCpuArray::with_max_entries(1, 0);

const _: () = assert!(FILTER_RESERVE == 2048, "the stub's .rept below says 2047");
const _: () = assert!(FILTER_WIRELEN_OFF + 4 <= FILTER_MEM_LEN);

/// The header value meaning "not set" (`(typeof(skb->mac_header))~0U`).
const HEADER_UNSET: u16 = 0xffff;
const EVENT_LEN: u32 = size_of::<KfreeSkbEvent>() as u32;
const FRAME_HDR_LEN: u32 = size_of::<FrameHeader>() as u32;
/// Where the packet bytes start in a frame.
const PACKET_OFF: usize = (FRAME_HDR_LEN + EVENT_LEN) as usize;
const BLOCK: u64 = RING_BLOCK as u64;
const PKT_EVENT_LEN: u32 = size_of::<PacketEvent>() as u32;
/// Where a packet record's bytes start in a frame.
const PKT_OFF: usize = (FRAME_HDR_LEN + PKT_EVENT_LEN) as usize;
// `direction`, `flags` and `_pad` are written as one aligned little-endian u32.
const _: () = assert!(core::mem::offset_of!(PacketEvent, direction) % 4 == 0);
const _: () = assert!(
    core::mem::offset_of!(PacketEvent, direction) + 4 == core::mem::offset_of!(PacketEvent, mark)
);

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf(ctx: BtfTracePointContext) -> i32 {
    match try_kfree_skb_btf(&ctx) {
        Ok(v) => v,
        Err(_) => 0,
    }
}

/// `trace_kfree_skb(skb, location, reason, rx_sk)`.
fn try_kfree_skb_btf(ctx: &BtfTracePointContext) -> Result<i32, i64> {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    on_drop::<Direct>(skb, location, reason);
    Ok(0)
}

#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb_tp(ctx: TracePointContext) -> u32 {
    match try_kfree_skb_tp(&ctx) {
        Ok(v) => v,
        Err(_) => 0,
    }
}

fn try_kfree_skb_tp(ctx: &TracePointContext) -> Result<u32, i64> {
    let off_skb = cfg(addr_of!(CONFIG.tp_off_skbaddr));
    let off_loc = cfg(addr_of!(CONFIG.tp_off_location));
    let off_reason = cfg(addr_of!(CONFIG.tp_off_reason));
    if off_skb == OFF_ABSENT {
        return Err(-1);
    }
    // SAFETY: the offsets come from this tracepoint's format file; the helper checks the read.
    let skb: u64 = unsafe { ctx.read_at(off_skb as usize) }.map_err(i64::from)?;
    let location: u64 = if off_loc == OFF_ABSENT {
        0
    } else {
        // SAFETY: as above.
        unsafe { ctx.read_at(off_loc as usize) }.unwrap_or(0)
    };
    let reason: u32 = if off_reason == OFF_ABSENT {
        0
    } else {
        // SAFETY: as above.
        unsafe { ctx.read_at(off_reason as usize) }.unwrap_or(0)
    };
    on_drop::<Probe>(skb, location, reason);
    Ok(0)
}

/// `--packets`: every packet received on an interface (tc ingress), copied as a
/// [`PacketEvent`] record. Never changes the packet's fate: always `TC_ACT_UNSPEC`
/// (`TCX_NEXT` under tcx), whatever happened here.
#[classifier]
pub fn pkt_ingress(ctx: TcContext) -> i32 {
    on_packet(&ctx, DIR_INBOUND);
    TC_ACT_UNSPEC
}

/// `--packets`: every packet sent on an interface (tc egress); see `pkt_ingress`.
#[classifier]
pub fn pkt_egress(ctx: TcContext) -> i32 {
    on_packet(&ctx, DIR_OUTBOUND);
    TC_ACT_UNSPEC
}

/// One writer per ring, proved: the tc programs and the kfree_skb programs write the same
/// per-CPU ring and scratch, and the kernel's recursion guards cover runs of one tracing
/// program only: a tc program (softirq, or the transmit path with bottom halves off) can
/// interrupt a kfree_skb run in task context on the same CPU, and a kfree_skb in a hard
/// interrupt can interrupt a tc run. Every writer therefore takes this CPU's `busy` flag
/// first, as `on_drop` does. An interrupting run finishes before the interrupted one goes
/// on (interrupts nest, they do not interleave), so the check-then-set below cannot let two
/// runs in: if the interrupted run had not set `busy` yet, the interrupting one does, writes
/// and clears it before the interrupted run resumes; if it had, the interrupting one sees it
/// and turns away. Preemption between two task-context runs cannot happen here: tc programs
/// run with bottom halves disabled, and two kfree_skb runs on one CPU are kept apart by the
/// kernel (`prog->active`, `bpf_prog_active`, or `STAT_NESTED` on old kernels). A packet
/// turned away is counted per interface and direction (`PktCounter::busy`), with its
/// namespace read without the scratch (which is the interrupted run's).
#[inline(always)]
fn on_packet(ctx: &TcContext, dir: u8) {
    let sk = ctx.skb.skb;
    // SAFETY: context field loads, rewritten by the verifier into loads of the sk_buff.
    let (ifindex, wire_len, mark, protocol) = unsafe {
        (
            read_volatile(addr_of!((*sk).ifindex)),
            read_volatile(addr_of!((*sk).len)),
            read_volatile(addr_of!((*sk).mark)),
            read_volatile(addr_of!((*sk).protocol)) as u16,
        )
    };
    // A tc program's context is the kernel's `struct sk_buff` itself (the verifier rewrites
    // `__sk_buff` loads into loads of it): its members are read like the tracepoint's skb.
    let skb = sk as u64;
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch; see above.
    unsafe {
        if read_volatile(addr_of!((*scratch).busy)) != 0 {
            let dev: u64 = Probe::read(skb, cfg(addr_of!(CONFIG.off_skb_dev))).unwrap_or(0);
            let netns = netns_of_dev(dev);
            if let Some(c) = pkt_counter(ifindex, netns, dir) {
                (*c).busy += 1;
            }
            return;
        }
        write_volatile(addr_of_mut!((*scratch).busy), 1);
    }
    on_packet_unguarded(ctx, skb, ifindex, wire_len, mark, protocol, dir, scratch);
    // SAFETY: as above.
    unsafe { write_volatile(addr_of_mut!((*scratch).busy), 0) };
}

/// `cap` (1..=MAX_KERNEL_SNAPLEN) in a form the verifier can bound away from zero: the compiler
/// folds a plain `cap > 0` check into arithmetic that loses the lower bound ("R4 invalid
/// zero-sized read"), so the mask and the increment happen where it cannot see.
#[inline(always)]
fn nonzero_len(cap: u32) -> u32 {
    const _: () = assert!(MAX_KERNEL_SNAPLEN.is_power_of_two());
    #[cfg(target_arch = "bpf")]
    {
        let mut n = u64::from(cap.wrapping_sub(1));
        // SAFETY: arithmetic on one register, nothing else touched.
        unsafe {
            core::arch::asm!(
                "{0} &= 2047",
                "{0} += 1",
                inout(reg) n,
                options(pure, nomem, nostack),
            )
        };
        n as u32
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        cap
    }
}
const _: () = assert!(
    MAX_KERNEL_SNAPLEN - 1 == 2047,
    "nonzero_len's mask says 2047"
);

/// The inode of `dev`'s network namespace, 0 if unreadable.
#[inline(always)]
fn netns_of_dev(dev: u64) -> u32 {
    let net: u64 = Probe::read(dev, cfg(addr_of!(CONFIG.off_dev_nd_net))).unwrap_or(0);
    Probe::read(net, cfg(addr_of!(CONFIG.off_net_inum))).unwrap_or(0)
}

/// This CPU's counters of (interface, namespace, direction), with `seen` counted; `None`
/// (and `STAT_PKT_MAP_FULL`) when the map has no room for a new key.
#[inline(always)]
fn pkt_counter(ifindex: u32, netns_ino: u32, dir: u8) -> Option<*mut PktCounter> {
    let key = PktKey {
        ifindex,
        netns_ino,
        direction: u32::from(dir),
    };
    if let Some(c) = PKT_COUNTS.get_ptr_mut(key) {
        // SAFETY: this CPU's value; one writer (see on_packet).
        unsafe { (*c).seen += 1 };
        return Some(c);
    }
    let first = PktCounter {
        seen: 1,
        filtered: 0,
        ring_full: 0,
        busy: 0,
    };
    insert_counted(&PKT_COUNTS, key, first, STAT_PKT_MAP_FULL, |c| {
        // SAFETY: this CPU's value; one writer (see on_packet).
        unsafe { (*c).seen += 1 }
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn on_packet_unguarded(
    ctx: &TcContext,
    skb: u64,
    ifindex: u32,
    wire_len: u32,
    mark: u32,
    protocol: u16,
    dir: u8,
    scratch: *mut Scratch,
) {
    let f = Probe::skb_fields(skb);
    let netns_ino = netns_of_dev(f.dev);
    let Some(counter) = pkt_counter(ifindex, netns_ino, dir) else {
        return;
    };
    let want = cfg(addr_of!(CONFIG.sel_netns));
    let mut taken = want == 0 || want == netns_ino;
    if taken && cfg(addr_of!(CONFIG.sel_pods)) != 0 {
        let mut key = KFlowKey {
            ifindex,
            netns_ino,
            protocol: f.protocol,
            ..ZERO_KEY
        };
        taken = pod_selected::<Probe>(&mut key, &f, scratch);
    }
    if !taken {
        // SAFETY: this CPU's value; one writer (see on_packet).
        unsafe { (*counter).filtered += 1 };
        return;
    }
    // No MAC header (L3 devices): the bytes start at the network header.
    let l3 = f.mac == HEADER_UNSET || f.mac == f.network;
    let mut flags = if l3 { FLAG_L3 } else { 0 };
    let snaplen = cfg(addr_of!(CONFIG.snaplen));
    let mut cap = if wire_len < snaplen {
        wire_len
    } else {
        snaplen
    };
    if cap > MAX_KERNEL_SNAPLEN {
        cap = MAX_KERNEL_SNAPLEN;
    }
    // SAFETY: a helper call without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let blocks = cfg(addr_of!(CONFIG.ring_blocks));
    let total = (FRAME_HDR_LEN + PKT_EVENT_LEN + cap + 7) & !7;
    let room = match RING_POS.get_ptr_mut(cpu) {
        Some(pos) if blocks != 0 => reserve(pos, cpu, blocks, total).map(|r| (pos, r)),
        _ => None,
    };
    let Some((pos, (frame, end))) = room else {
        // SAFETY: this CPU's value; one writer (see on_packet). Not in STAT_RING_FULL,
        // which counts drops.
        unsafe { (*counter).ring_full += 1 };
        return;
    };
    // SAFETY: the frame lies in this CPU's ring element, with room for MAX_FRAME bytes
    // (see reserve); [frame + PKT_OFF, + cap) with cap <= MAX_KERNEL_SNAPLEN is inside it.
    let pkt = unsafe { frame.add(PKT_OFF) };
    if cap > 0 {
        // SAFETY: as above; the helper checks the offsets against the packet.
        let ret = unsafe {
            bpf_skb_load_bytes(
                ctx.skb.skb as *const c_void,
                0,
                pkt.cast::<c_void>(),
                nonzero_len(cap),
            )
        };
        if ret != 0 {
            // Delivered without bytes, and said in the record (STAT_READ_FAILED counts drops).
            cap = 0;
            flags |= FLAG_READ_FAILED;
        }
    }
    // The filter runs on the copy before anything is published, as for drops: a rejected
    // packet leaves `prod` where it was.
    if filter_rejects(pkt, cap, l3, wire_len) {
        // SAFETY: as above.
        unsafe { (*counter).filtered += 1 };
        return;
    }
    // SAFETY: the frame header and event lie in the element (see reserve); written field by
    // field, volatile, before the publishing store (see emit).
    unsafe {
        write_volatile(
            frame.cast::<FrameHeader>(),
            FrameHeader {
                len: total,
                _reserved: 0,
            },
        );
        let ev = frame.add(FRAME_HDR_LEN as usize).cast::<PacketEvent>();
        write_volatile(
            addr_of_mut!((*ev).hdr),
            RecordHeader {
                version: ABI_VERSION,
                kind: KIND_PACKET,
                hdr_len: PKT_EVENT_LEN as u16,
                cpu,
                ts_ns: bpf_ktime_get_ns(),
            },
        );
        write_volatile(addr_of_mut!((*ev).ifindex), ifindex);
        write_volatile(addr_of_mut!((*ev).netns_ino), netns_ino);
        write_volatile(addr_of_mut!((*ev).orig_len), wire_len);
        write_volatile(addr_of_mut!((*ev).cap_len), cap as u16);
        write_volatile(addr_of_mut!((*ev).protocol), protocol);
        // `direction`, `flags` and `_pad`, in one aligned store.
        write_volatile(
            addr_of_mut!((*ev).direction).cast::<u32>(),
            u32::from(dir) | u32::from(flags) << 8,
        );
        write_volatile(addr_of_mut!((*ev).mark), mark);
        // Publish (see emit).
        write_volatile(addr_of_mut!((*pos).prod), end);
    }
}

#[inline(always)]
fn cfg(field: *const u32) -> u32 {
    // SAFETY: `field` points into the CONFIG static; volatile so the compiler does not fold
    // the compile-time defaults (user space rewrites .rodata before load).
    unsafe { read_volatile(field) }
}

/// The pcap-filter expression: `FILTER_RESERVE` instructions (the marker `call 0xdeadbeef`,
/// then no-ops) that the loader overwrites before load with the translation of the
/// expression's classic BPF (engine/src/filter/translate.rs); the verifier strips the
/// no-ops left over. Contract with the translator: r1 = the packet's bytes (a map value
/// with at least `MAX_KERNEL_SNAPLEN` bytes), r2 = bytes captured (at most `MAX_KERNEL_SNAPLEN`), r4 = 0
/// for the Ethernet program, else the raw-IP one, r5 = `FILTER_MEM_LEN` bytes of scratch
/// (the wire length at `FILTER_WIRELEN_OFF`); r0 = the classic program's verdict (0:
/// reject); r1-r5 clobbered, r6-r10 and the stack untouched. Not `#[no_mangle]`: a static
/// subprogram is verified with its caller's argument types.
#[inline(never)]
fn filter_stub(pkt: *const u8, caplen: u32, raw: u32, mem: *mut u8) -> u32 {
    #[cfg(target_arch = "bpf")]
    {
        let verdict: u64;
        // SAFETY: the patched code reads [pkt, pkt + caplen) and the scratch area only, and
        // writes the scratch area and r0-r5 (all declared clobbered).
        unsafe {
            core::arch::asm!(
                "call 0xdeadbeef",
                ".rept 2047",
                "goto +0",
                ".endr",
                inout("r1") pkt => _,
                inout("r2") u64::from(caplen) => _,
                out("r3") _,
                inout("r4") u64::from(raw) => _,
                inout("r5") mem => _,
                lateout("r0") verdict,
                options(nostack),
            );
        }
        verdict as u32
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        let _ = (pkt, caplen, raw, mem);
        1
    }
}

/// Runs the filter expression (when there is one) on `caplen` bytes at `pkt`: true when it
/// rejects the drop.
#[inline(always)]
fn filter_rejects(pkt: *const u8, caplen: u32, raw: bool, orig_len: u32) -> bool {
    if cfg(addr_of!(CONFIG.filter)) == 0 {
        return false;
    }
    let Some(buf) = FILTER_BUF.get_ptr_mut(0) else {
        return false;
    };
    let caplen = if caplen > MAX_KERNEL_SNAPLEN {
        MAX_KERNEL_SNAPLEN
    } else {
        caplen
    };
    // SAFETY: this CPU's FILTER_BUF value; the offset is inside `mem` (const-asserted).
    unsafe {
        let mem = addr_of_mut!((*buf).mem).cast::<u8>();
        write_volatile(mem.add(FILTER_WIRELEN_OFF as usize).cast::<u32>(), orig_len);
        filter_stub(pkt, caplen, u32::from(raw), mem) == 0
    }
}

/// The filter expression on a drop not (yet) copied: its bytes go into `FILTER_BUF` first.
/// A packet whose bytes cannot be read is judged on no bytes, as a copy of it would be.
#[inline(always)]
fn filter_rejects_uncopied(sp: &Span) -> bool {
    if cfg(addr_of!(CONFIG.filter)) == 0 {
        return false;
    }
    let Some(buf) = FILTER_BUF.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's FILTER_BUF value.
    let pkt = unsafe { addr_of_mut!((*buf).pkt).cast::<u8>() };
    let mut cap = sp.cap;
    if cap > MAX_KERNEL_SNAPLEN {
        cap = MAX_KERNEL_SNAPLEN;
    }
    if sp.read_failed {
        cap = 0;
    }
    if cap > 0 {
        // SAFETY: [pkt, pkt + cap) lies in FILTER_BUF.pkt; the helper checks the source.
        let ret = unsafe { read_raw(pkt.cast::<c_void>(), cap, sp.start as *const c_void) };
        if ret != 0 {
            cap = 0;
        }
    }
    filter_rejects(pkt, cap, sp.flags & FLAG_L3 != 0, sp.orig_len)
}

/// The selectors (`--reason`/`--not-reason`, `-i`, `--netns`): true when they take the drop.
#[inline(always)]
fn selected(reason: u32, ifindex: u32, netns_ino: u32) -> bool {
    let want = cfg(addr_of!(CONFIG.sel_ifindex));
    if want != 0 && want != ifindex {
        if want != SEL_IFINDEX_SET {
            return false;
        }
        let k = PktKey {
            ifindex,
            netns_ino,
            direction: 0,
        };
        // SAFETY: the value is not used, only its presence.
        if unsafe { IFACE_SELECT.get(k) }.is_none() {
            return false;
        }
    }
    let want = cfg(addr_of!(CONFIG.sel_netns));
    if want != 0 && want != netns_ino {
        return false;
    }
    match cfg(addr_of!(CONFIG.sel_reasons)) {
        SEL_REASONS_NONE => true,
        // SAFETY: the value is not used, only its presence.
        SEL_REASONS_ONLY => unsafe { REASON_SELECT.get(reason) }.is_some(),
        // SAFETY: as above.
        _ => unsafe { REASON_SELECT.get(reason) }.is_none(),
    }
}

/// `--pod`, `--namespace`, `--label`: true when the drop is a selected pod's (in its
/// namespace, on its host-side interface, or from or to its address), or cannot be decided
/// here (no readable IP header, or a UDP tunnel port, where the pod's address is in the
/// inner packet: user space decides those). Fills `key`'s L3 fields when it reads them.
#[inline(always)]
fn pod_selected<M: Kmem>(key: &mut KFlowKey, f: &SkbFields, scratch: *mut Scratch) -> bool {
    let hit = |k: &PodKey| -> bool {
        // SAFETY: the value is not used, only its presence.
        unsafe { POD_SELECT.get(k) }.is_some()
    };
    let here = u64::from(key.netns_ino) << 32 | u64::from(key.ifindex);
    // SAFETY: this CPU's scratch, guarded by on_drop against nested runs.
    if unsafe { (*scratch).pod_hit } == here && here != 0 {
        return true;
    }
    let mut k = PodKey {
        kind: POD_KEY_NETNS,
        a: [key.netns_ino, 0, 0, 0],
    };
    let mut taken = hit(&k);
    if !taken {
        k.kind = POD_KEY_DEV;
        k.a = [key.ifindex, key.netns_ino, 0, 0];
        taken = hit(&k);
    }
    if taken {
        // SAFETY: as above.
        unsafe { (*scratch).pod_hit = here };
        return true;
    }
    key_l3::<M>(key, f, scratch);
    let words = |a: &[u8; 16]| -> [u32; 4] {
        // SAFETY: `a` is 8-aligned in `key` (see key_l3); four u32 loads inside it.
        unsafe {
            let p = a.as_ptr().cast::<u32>();
            [p.read(), p.add(1).read(), p.add(2).read(), p.add(3).read()]
        }
    };
    match key.family {
        KFAMILY_V4 => {
            k.kind = POD_KEY_V4;
            k.a = [words(&key.saddr)[0], 0, 0, 0];
            if hit(&k) {
                return true;
            }
            k.a[0] = words(&key.daddr)[0];
        }
        KFAMILY_V6 => {
            k.kind = POD_KEY_V6;
            k.a = words(&key.saddr);
            if hit(&k) {
                return true;
            }
            k.a = words(&key.daddr);
            // An extension header first: user space walks it.
            if matches!(key.l4proto, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140) {
                return true;
            }
        }
        _ => return true,
    }
    if hit(&k) {
        return true;
    }
    // VXLAN (4789, 8472) and Geneve (6081): user space decides on the inner addresses.
    key.l4proto == 17 && matches!(key.dport, 4789 | 8472 | 6081)
}

/// A drop the selectors or the filter turned away: per reason only.
#[inline(always)]
fn count_filtered(counter: Option<*mut ReasonCounter>) {
    if let Some(c) = counter {
        // SAFETY: per-CPU slot; see stat_inc.
        unsafe { (*c).filtered += 1 };
    }
}

#[inline(always)]
fn stat_inc(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; this program does not re-enter on one CPU (the kernel skips
        // nested runs), so a plain add cannot race.
        unsafe { *p += 1 };
    }
}

/// How a program reads kernel struct fields: `T` at `base + off`, `None` when the field is
/// absent on this kernel (`OFF_ABSENT`) or `base` is null.
trait Kmem {
    fn read<T: Copy>(base: u64, off: u32) -> Option<T>;

    /// Whether packet bytes are read with plain loads through `skb->head` instead of
    /// `bpf_probe_read_kernel` (about 40 ns a call here). Only `tp_btf`, and only on
    /// kernels whose verifier types a BTF pointer to bytes as read-only untrusted memory
    /// (`ProbeConfig::direct_packet`).
    #[inline(always)]
    fn direct_packet() -> bool {
        false
    }

    /// The `sk_buff` members the record needs; by default one [`Kmem::read`] each.
    #[inline(always)]
    fn skb_fields(skb: u64) -> SkbFields {
        SkbFields {
            head: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_head))).unwrap_or(0),
            data: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_data))).unwrap_or(0),
            len: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_len))).unwrap_or(0),
            data_len: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_data_len))).unwrap_or(0),
            mac: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_mac_header))).unwrap_or(HEADER_UNSET),
            network: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_network_header)))
                .unwrap_or(HEADER_UNSET),
            protocol: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_protocol))).unwrap_or(0),
            dev: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_dev))).unwrap_or(0),
            iif: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_iif))).unwrap_or(0),
            sk: Self::read(skb, cfg(addr_of!(CONFIG.off_skb_sk))).unwrap_or(0),
        }
    }
}

/// The `sk_buff` members a record is built from; absent or unreadable ones are 0 (the two
/// headers: `HEADER_UNSET`).
struct SkbFields {
    head: u64,
    data: u64,
    len: u32,
    data_len: u32,
    mac: u16,
    network: u16,
    protocol: u16,
    dev: u64,
    iif: u32,
    sk: u64,
}

/// Reads a `T` at `off` (an `sk_buff` offset) from the copy of `sk_buff` bytes
/// `[base, base + len)` in `copy`; `None` if the field is absent or outside the copy.
#[inline(always)]
fn from_copy<T: Copy>(copy: *const u8, base: u32, len: u32, off: u32) -> Option<T> {
    if off == OFF_ABSENT || off < base {
        return None;
    }
    let rel = off - base;
    if rel > SKB_COPY_MAX - size_of::<T>() as u32 || rel + size_of::<T>() as u32 > len {
        return None;
    }
    // SAFETY: `rel + size_of::<T>() <= SKB_COPY_MAX`, the size of the buffer `copy` points
    // to; T is a plain integer, read unaligned.
    Some(unsafe { copy.add(rel as usize).cast::<T>().read_unaligned() })
}

/// `bpf_probe_read_kernel` per field: for the classic tracepoint, whose skb is a plain number.
struct Probe;

impl Kmem for Probe {
    #[inline(always)]
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        if base == 0 || off == OFF_ABSENT {
            return None;
        }
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: bpf_probe_read_kernel checks the source address; the destination is a
        // local of exactly `size_of::<T>()` bytes.
        let ret = unsafe {
            read_raw(
                v.as_mut_ptr().cast::<c_void>(),
                size_of::<T>() as u32,
                (base.wrapping_add(u64::from(off))) as *const c_void,
            )
        };
        if ret == 0 {
            // SAFETY: the helper filled all bytes on success; T is a plain integer.
            Some(unsafe { v.assume_init() })
        } else {
            None
        }
    }

    /// One `bpf_probe_read_kernel` of the `sk_buff` bytes that hold every member needed
    /// (user space computed their span, `skb_copy_off/len`), instead of one call per member;
    /// per member when there is no span (it would not fit the buffer).
    #[inline(always)]
    fn skb_fields(skb: u64) -> SkbFields {
        let base = cfg(addr_of!(CONFIG.skb_copy_off));
        let len = cfg(addr_of!(CONFIG.skb_copy_len));
        if len == 0 || len > SKB_COPY_MAX || skb == 0 {
            return Self::skb_fields_each(skb);
        }
        let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
            return Self::skb_fields_each(skb);
        };
        // SAFETY: `scratch` is this CPU's map value; only the field's address is taken.
        let copy = unsafe { addr_of_mut!((*scratch).skb).cast::<u8>() };
        // SAFETY: `skb` in scratch is SKB_COPY_MAX bytes of this CPU's map value and
        // len <= SKB_COPY_MAX; the helper checks the source address.
        let ret = unsafe {
            read_raw(
                copy.cast::<c_void>(),
                len,
                skb.wrapping_add(u64::from(base)) as *const c_void,
            )
        };
        if ret != 0 {
            return Self::skb_fields_each(skb);
        }
        let copy = copy.cast_const();
        SkbFields {
            head: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_head))).unwrap_or(0),
            data: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_data))).unwrap_or(0),
            len: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_len))).unwrap_or(0),
            data_len: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_data_len)))
                .unwrap_or(0),
            mac: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_mac_header)))
                .unwrap_or(HEADER_UNSET),
            network: from_copy(
                copy,
                base,
                len,
                cfg(addr_of!(CONFIG.off_skb_network_header)),
            )
            .unwrap_or(HEADER_UNSET),
            protocol: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_protocol)))
                .unwrap_or(0),
            dev: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_dev))).unwrap_or(0),
            iif: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_iif))).unwrap_or(0),
            sk: from_copy(copy, base, len, cfg(addr_of!(CONFIG.off_skb_sk))).unwrap_or(0),
        }
    }
}

impl Probe {
    /// The default [`Kmem::skb_fields`]: one helper call per member.
    #[inline(always)]
    fn skb_fields_each(skb: u64) -> SkbFields {
        struct Each;
        impl Kmem for Each {
            #[inline(always)]
            fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
                Probe::read(base, off)
            }
        }
        Each::skb_fields(skb)
    }
}

/// Plain loads through typed pointers: for `tp_btf`, whose skb argument the verifier types
/// as `struct sk_buff *`. The offsets are constants of the frozen `.rodata`, so the verifier
/// knows each one, checks it against the kernel's BTF (member, size) and turns the load into
/// a fault-safe one (a bad pointer reads 0). One instruction per field instead of a helper
/// call; pointers read this way (`dev`, `sk`, `nd_net.net`) stay typed, so the chase goes on.
struct Direct;

impl Kmem for Direct {
    #[inline(always)]
    fn direct_packet() -> bool {
        cfg(addr_of!(CONFIG.direct_packet)) != 0
    }

    #[inline(always)]
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        if base == 0 || off == OFF_ABSENT {
            return None;
        }
        // SAFETY: the verifier checks this load against the kernel's BTF and makes it
        // fault-safe (see above); T is a plain integer of the member's size.
        Some(unsafe { read_volatile(base.wrapping_add(u64::from(off)) as *const T) })
    }
}

/// What one drop's packet looks like from where a capture starts (the MAC header, else the
/// network header, else `skb->data`).
struct Span {
    start: u64,
    orig_len: u32,
    /// Bytes to copy (at most the snap length and the linear data).
    cap: u32,
    flags: u8,
    read_failed: bool,
}

#[inline(always)]
fn span(f: &SkbFields) -> Span {
    let mut flags = 0u8;
    // No MAC header, or an empty one (L3 devices such as tun or wireguard set mac_header
    // equal to network_header): the capture starts at the network header.
    let start = if f.mac != HEADER_UNSET && f.mac != f.network {
        f.head.wrapping_add(u64::from(f.mac))
    } else {
        flags |= FLAG_L3;
        if f.network != HEADER_UNSET {
            f.head.wrapping_add(u64::from(f.network))
        } else {
            f.data
        }
    };
    let snaplen = cfg(addr_of!(CONFIG.snaplen));
    let snaplen = if snaplen > MAX_KERNEL_SNAPLEN {
        MAX_KERNEL_SNAPLEN
    } else {
        snaplen
    };
    let mut orig_len = f.len;
    let mut cap: u32 = 0;
    let mut read_failed = snaplen > 0;
    if f.head != 0 && f.data != 0 {
        // Bytes between the capture start and skb->data (negative when data is before it).
        let lead = (f.data as i64).wrapping_sub(start as i64);
        let orig = lead.wrapping_add(i64::from(f.len));
        orig_len = if orig < 0 {
            0
        } else if orig > i64::from(u32::MAX) {
            u32::MAX
        } else {
            orig as u32
        };
        // Only the linear part can be read with one copy: up to skb->tail.
        let avail = lead.wrapping_add(i64::from(f.len).wrapping_sub(i64::from(f.data_len)));
        let want = if snaplen > orig_len {
            orig_len
        } else {
            snaplen
        };
        if avail > 0 && want > 0 {
            cap = want;
            if avail < i64::from(want) {
                cap = avail as u32;
                flags |= FLAG_LINEAR_END;
            }
        }
        read_failed = want > 0 && cap == 0;
    }
    if cap > MAX_KERNEL_SNAPLEN {
        cap = MAX_KERNEL_SNAPLEN;
    }
    Span {
        start,
        orig_len,
        cap,
        flags,
        read_failed,
    }
}

/// The device's ifindex (else `skb_iif`) and the inode of its network namespace (else the
/// socket's).
#[inline(always)]
fn dev_info<M: Kmem>(f: &SkbFields) -> (u32, u32) {
    let mut ifindex: u32 = 0;
    let mut net: u64 = 0;
    if f.dev != 0 {
        ifindex = M::read(f.dev, cfg(addr_of!(CONFIG.off_dev_ifindex))).unwrap_or(0);
        net = M::read(f.dev, cfg(addr_of!(CONFIG.off_dev_nd_net))).unwrap_or(0);
    }
    if ifindex == 0 {
        ifindex = f.iif;
    }
    if net == 0 {
        net = M::read(f.sk, cfg(addr_of!(CONFIG.off_sk_net))).unwrap_or(0);
    }
    (
        ifindex,
        M::read(net, cfg(addr_of!(CONFIG.off_net_inum))).unwrap_or(0),
    )
}

/// Fills the IP part of `key` (family, addresses, protocol, ports or ICMP type/code) from
/// the network header, as far as the linear data reaches; leaves it zero otherwise.
#[inline(always)]
fn key_l3<M: Kmem>(key: &mut KFlowKey, f: &SkbFields, scratch: *mut Scratch) {
    let Some((net, n)) = key_bytes(f) else {
        return;
    };
    if n < 20 {
        return;
    }
    if M::direct_packet() {
        // Loads straight from the packet (see `Kmem::direct_packet`): only the bytes the
        // key is made of, each at most `n` bytes from the network header.
        parse_l3(key, n, |i| packet_u32(net, i), |i| packet_u64(net, i));
        return;
    }
    // SAFETY: `hdr` is KEY_HDR_BYTES bytes of this CPU's map value.
    let hdr = unsafe { addr_of_mut!((*scratch).hdr).cast::<u8>() };
    // SAFETY: 20 <= n <= KEY_HDR_BYTES, the buffer's size; the helper checks the source.
    if unsafe { read_raw(hdr.cast::<c_void>(), n, net as *const c_void) } != 0 {
        return;
    }
    // Word loads: `hdr` is 8-aligned (it follows 256 bytes in an 8-aligned value), the
    // fields read are at multiples of their size. The masks keep each load inside the
    // buffer for the verifier.
    parse_l3(
        key,
        n,
        // SAFETY: i is a multiple of 4, masked below KEY_HDR_BYTES - 3, inside the buffer.
        |i| unsafe {
            hdr.add((i & (KEY_HDR_BYTES - 4)) as usize)
                .cast::<u32>()
                .read()
        },
        // SAFETY: i is a multiple of 8, masked below KEY_HDR_BYTES - 7, inside the buffer.
        |i| unsafe {
            hdr.add((i & (KEY_HDR_BYTES - 8)) as usize)
                .cast::<u64>()
                .read()
        },
    );
}

/// Loads at `off` bytes from `base`, a pointer into a packet derived from `skb->head` under
/// [`Kmem::direct_packet`]: the verifier types such a pointer as read-only untrusted memory
/// and makes the load fault-safe (a bad address reads 0). The offset is added to the
/// pointer's own register here, so that the compiler cannot form the address some other
/// way (from a scalar the verifier would refuse to load through); any alignment (x86-64
/// loads any).
macro_rules! packet_load {
    ($name:ident, $t:ty, $width:literal) => {
        #[inline(always)]
        fn $name(base: u64, off: u32) -> $t {
            #[cfg(target_arch = "bpf")]
            {
                let v: u64;
                // SAFETY: a read-only load; the kernel checks and fixes up the address.
                unsafe {
                    core::arch::asm!(
                        "{a} += {o}",
                        concat!("{v} = *(", $width, " *)({a} + 0)"),
                        a = inout(reg) base => _, o = in(reg) u64::from(off), v = lateout(reg) v,
                        options(readonly, nostack, preserves_flags)
                    )
                };
                v as $t
            }
            #[cfg(not(target_arch = "bpf"))]
            {
                let _ = (base, off);
                0
            }
        }
    };
}
packet_load!(packet_u32, u32, "u32");
packet_load!(packet_u64, u64, "u64");

/// The IP part of the flow key from the network header's first `n` bytes (20 <= n <=
/// KEY_HDR_BYTES), read through `word32` and `word64` (offsets from the header, multiples
/// of the width; the words little-endian as loaded). The first two 8-byte words hold every
/// IPv4 field but the destination (and IPv6's version and next header): few loads.
#[inline(always)]
fn parse_l3(key: &mut KFlowKey, n: u32, word32: impl Fn(u32) -> u32, word64: impl Fn(u32) -> u64) {
    let saddr = key.saddr.as_mut_ptr();
    let daddr = key.daddr.as_mut_ptr();
    // Bytes 0-7: version and header length, ..., IPv4's flags and fragment offset (6-7) or
    // IPv6's next header (6).
    let w0 = word64(0);
    let b0 = w0 as u8;
    let l4: u32;
    if b0 >> 4 == 4 {
        let ihl = u32::from(b0 & 0x0f) * 4;
        if ihl < 20 {
            return;
        }
        // Bytes 8-15: TTL, protocol (9), checksum, source address (12-15).
        let w1 = word64(8);
        key.family = KFAMILY_V4;
        key.l4proto = (w1 >> 8) as u8;
        // SAFETY: saddr/daddr are 8-aligned 16-byte arrays of `key` (offsets 24 and 40).
        unsafe {
            saddr.cast::<u32>().write((w1 >> 32) as u32);
            daddr.cast::<u32>().write(word32(16));
        }
        // Only the first fragment carries the transport header (flags and offset are
        // big-endian: byte 6 high).
        let frag = u16::from((w0 >> 48) as u8) << 8 | u16::from((w0 >> 56) as u8);
        if frag & 0x1fff != 0 {
            return;
        }
        l4 = ihl;
    } else if b0 >> 4 == 6 && n >= 40 {
        key.family = KFAMILY_V6;
        key.l4proto = (w0 >> 48) as u8;
        // SAFETY: as above.
        unsafe {
            saddr.cast::<u64>().write(word64(8));
            saddr.add(8).cast::<u64>().write(word64(16));
            daddr.cast::<u64>().write(word64(24));
            daddr.add(8).cast::<u64>().write(word64(32));
        }
        l4 = 40;
    } else {
        return;
    }
    if l4 + 4 > n {
        return;
    }
    // The first four transport bytes, as loaded little-endian: ports are big-endian.
    let p = word32(l4);
    match key.l4proto {
        // TCP, UDP, DCCP, SCTP, UDP-Lite: ports.
        6 | 17 | 33 | 132 | 136 => {
            key.sport = u16::swap_bytes(p as u16);
            key.dport = u16::swap_bytes((p >> 16) as u16);
        }
        // ICMP, ICMPv6: type and code.
        1 | 58 => {
            key.sport = u16::from(p as u8);
            key.dport = u16::from((p >> 8) as u8);
        }
        _ => {}
    }
}

/// CLOCK_MONOTONIC at tick resolution: the precise clock (about 40 ns a read here) is read
/// once per jiffy per CPU (`bpf_jiffies64` is a plain load) and reused until the jiffy
/// changes. For the kernel table's first/last times when drops are not all copied.
#[inline(always)]
fn tick_now(scratch: *mut Scratch) -> u64 {
    // SAFETY: helper calls without arguments; `scratch` is this CPU's value, guarded by
    // on_drop against nested runs.
    unsafe {
        let j = bpf_jiffies64();
        if (*scratch).tick_jiffies != j || (*scratch).tick_ns == 0 {
            (*scratch).tick_jiffies = j;
            (*scratch).tick_ns = bpf_ktime_get_ns();
        }
        (*scratch).tick_ns
    }
}

/// A hash of the key's eight words, for the cache's two slots.
#[inline(always)]
fn key_hash(key: &KFlowKey) -> u64 {
    // A sum of the words times distinct odd constants (independent multiplies, no chain),
    // then one mix: placement only, a collision costs a spill, never a wrong count.
    const K: [u64; 8] = [
        0x9e37_79b9_7f4a_7c15,
        0xff51_afd7_ed55_8ccd,
        0xc4ce_b9fe_1a85_ec53,
        0xd6e8_feb8_6659_fd93,
        0xa076_1d64_78bd_642f,
        0xe703_7ed1_a0b4_28db,
        0x8ebc_6af0_9c88_c6e3,
        0x5899_65cc_7537_4cc3,
    ];
    let w = (key as *const KFlowKey).cast::<u64>();
    let mut h: u64 = 0;
    let mut i = 0;
    while i < 8 {
        // SAFETY: KFlowKey is 64 bytes, 8-aligned (it holds a u64): eight u64 words.
        h = h.wrapping_add(unsafe { w.add(i).read() }.wrapping_mul(K[i]));
        i += 1;
    }
    h ^ (h >> 29)
}

#[inline(always)]
fn keys_equal(a: *const KFlowKey, b: &KFlowKey) -> bool {
    let (x, y) = (a.cast::<u64>(), (b as *const KFlowKey).cast::<u64>());
    let mut diff: u64 = 0;
    let mut i = 0;
    while i < 8 {
        // SAFETY: both point to 64-byte, 8-aligned keys (one in a map value, one on the
        // stack).
        diff |= unsafe { x.add(i).read() ^ y.add(i).read() };
        i += 1;
    }
    diff == 0
}

/// This CPU's counter of `reason` (the drop was counted there already).
#[inline(always)]
fn reason_counter(reason: u32) -> Option<*mut ReasonCounter> {
    if reason < REASON_ARRAY_ENTRIES {
        REASON_ARRAY.get_ptr_mut(reason)
    } else {
        REASON_COUNTS.get_ptr_mut(reason)
    }
}

/// Moves a cache slot's counts into its generation's hash (adding to the key's entry there,
/// written by this CPU only); no room: they are counted as table-full under their reason.
#[inline(always)]
fn spill(gen: u32, slot: *mut CacheSlot) {
    // SAFETY: this CPU's cache slot (a per-CPU array value), valid while the program runs.
    let (key, val) = unsafe { (&(*slot).key, (*slot).val) };
    let found = if gen == 0 {
        FLOWS_0.get_ptr_mut(key)
    } else {
        FLOWS_1.get_ptr_mut(key)
    };
    if let Some(v) = found {
        // SAFETY: the entry's key holds this CPU: only this CPU writes it (see flow_entry).
        unsafe {
            (*v).packets += val.packets;
            (*v).bytes += val.bytes;
            if val.first_ns < (*v).first_ns {
                (*v).first_ns = val.first_ns;
            }
            if val.last_ns > (*v).last_ns {
                (*v).last_ns = val.last_ns;
            }
            (*v).copied += val.copied;
        }
        return;
    }
    let inserted = if gen == 0 {
        FLOWS_0.insert(key, val, u64::from(BPF_NOEXIST))
    } else {
        FLOWS_1.insert(key, val, u64::from(BPF_NOEXIST))
    };
    if inserted.is_err() {
        if let Some(c) = reason_counter(key.reason) {
            // SAFETY: per-CPU slot; see stat_inc.
            unsafe { (*c).table_full += val.packets };
        }
    }
}

/// This drop's counts in the current generation: its slot in this CPU's cache (taken when
/// new, spilling the slot's old key into the hash). Never `None` while the cache map
/// exists; a drop whose old slot could not be spilled is counted as table-full then.
#[inline(always)]
fn flow_entry(epoch: u32, key: &KFlowKey, orig_len: u32, now: u64) -> Option<*mut KFlowValue> {
    let gen = epoch & 1;
    let h = key_hash(key);
    let slot = |i: u32| {
        if gen == 0 {
            CACHE_0.get_ptr_mut(i)
        } else {
            CACHE_1.get_ptr_mut(i)
        }
    };
    let a = slot((h as u32) & (CACHE_SLOTS - 1))?;
    let b = slot(((h >> 40) as u32) & (CACHE_SLOTS - 1))?;
    // SAFETY: this CPU's cache slots (per-CPU array values): only this CPU's program writes
    // them, never nested (see on_drop); user space reads a generation only after switching
    // away from it and waiting out every run that could still use it.
    unsafe {
        for s in [a, b] {
            let v = addr_of_mut!((*s).val);
            if (*v).epoch == epoch && (*v).packets != 0 && keys_equal(addr_of!((*s).key), key) {
                (*v).packets += 1;
                (*v).bytes += u64::from(orig_len);
                (*v).last_ns = now;
                return Some(v);
            }
        }
        // A new key: an empty (or stale) slot, else the smaller of the two is spilled.
        let live = |s: *mut CacheSlot| (*s).val.epoch == epoch && (*s).val.packets != 0;
        let victim = if !live(a) {
            a
        } else if !live(b) {
            b
        } else {
            let v = if (*b).val.packets < (*a).val.packets {
                b
            } else {
                a
            };
            spill(gen, v);
            v
        };
        (*victim).key = *key;
        (*victim).val = KFlowValue {
            packets: 1,
            bytes: u64::from(orig_len),
            first_ns: now,
            last_ns: now,
            copied: 0,
            budget_used: 0,
            epoch,
        };
        Some(addr_of_mut!((*victim).val))
    }
}

/// Whether the exemplar budget of `n` copies per key and generation lets this drop be
/// copied. Each CPU first checks its own count for the key (no shared memory touched once
/// it has spent `n`); under that, the key's shared count in `BUDGET_<gen>` decides with one
/// atomic add, so at most `n` copies are made over all CPUs.
#[inline(always)]
fn budget_allows(gen: u32, entry: *mut KFlowValue, key: &KFlowKey, n: u32) -> bool {
    if n == 0 {
        return false;
    }
    // SAFETY: this CPU's entry; see flow_entry.
    let used = unsafe { (*entry).budget_used };
    if used >= n {
        return false;
    }
    // SAFETY: as above.
    unsafe { (*entry).budget_used = used + 1 };
    let mut shared = *key;
    shared.cpu = 0;
    let get = |k: &KFlowKey| {
        if gen == 0 {
            BUDGET_0.get_ptr_mut(k)
        } else {
            BUDGET_1.get_ptr_mut(k)
        }
    };
    let slot = match get(&shared) {
        Some(p) => Some(p),
        None => {
            // Another CPU may insert the key first (EEXIST): then its entry is used.
            let _ = if gen == 0 {
                BUDGET_0.insert(shared, 0u64, u64::from(BPF_NOEXIST))
            } else {
                BUDGET_1.insert(shared, 0u64, u64::from(BPF_NOEXIST))
            };
            get(&shared)
        }
    };
    // No room for the shared count: copying could exceed the budget, so do not copy.
    let Some(slot) = slot else {
        // SAFETY: as above.
        unsafe { (*entry).budget_used = n };
        return false;
    };
    // The count after our add is at least our own position among the adds, so at most `n`
    // drops (over all CPUs) ever see a count <= n. Under contention a CPU may see others'
    // adds too and not copy: fewer than `n` copies, never more.
    let after = add_then_read(slot);
    if after > u64::from(n) {
        // Spent by the other CPUs: stop asking for this generation.
        // SAFETY: as above.
        unsafe { (*entry).budget_used = n };
        return false;
    }
    true
}

/// Atomically adds 1 to `*p` (BPF_XADD), then reads it.
#[cfg(target_arch = "bpf")]
#[inline(always)]
fn add_then_read(p: *mut u64) -> u64 {
    // SAFETY: `p` is an 8-aligned u64 in a map value that lives while this program runs;
    // other CPUs update it with atomic adds only. The add's result is unused (BPF_XADD).
    unsafe {
        let _ = core::intrinsics::atomic_xadd::<
            u64,
            u64,
            { core::intrinsics::AtomicOrdering::Relaxed },
        >(p, 1);
        read_volatile(p)
    }
}

/// The host stub build has no eBPF maps to share; a plain add keeps it compiling.
#[cfg(not(target_arch = "bpf"))]
#[inline(always)]
fn add_then_read(p: *mut u64) -> u64 {
    // SAFETY: as above (never run: the host build is a stub).
    unsafe {
        *p += 1;
        *p
    }
}

/// The automatic storm switch of this CPU's ring: true while the ring holds more than
/// `storm_on_bytes` (from when it passed that until it falls below `storm_off_bytes`).
/// Outside a storm it reads the reader's position only when the cached limit says the ring
/// may be that full.
#[inline(always)]
fn in_storm(pos: *mut RingPos, blocks: u32, now: u64) -> bool {
    let on = cfg(addr_of!(CONFIG.storm_on_bytes));
    if on == 0 || blocks == 0 {
        return false;
    }
    let ring = u64::from(blocks) << RING_BLOCK_SHIFT;
    // SAFETY: this CPU's RING_POS element: only this CPU's program writes prod, limit and
    // the storm fields; user space writes cons (read volatile).
    unsafe {
        let prod = (*pos).prod;
        let since = (*pos).storm_since;
        if since == 0 {
            let cached_cons = (*pos).limit.wrapping_sub(ring);
            if prod.wrapping_sub(cached_cons) <= u64::from(on) {
                return false;
            }
            let cons = read_volatile(addr_of!((*pos).cons));
            (*pos).limit = cons.wrapping_add(ring);
            if prod.wrapping_sub(cons) <= u64::from(on) {
                return false;
            }
            (*pos).storm_since = if now == 0 { 1 } else { now };
            (*pos).storm_count += 1;
            return true;
        }
        let cons = read_volatile(addr_of!((*pos).cons));
        (*pos).limit = cons.wrapping_add(ring);
        if prod.wrapping_sub(cons) >= u64::from(cfg(addr_of!(CONFIG.storm_off_bytes))) {
            return true;
        }
        (*pos).storm_total_ns += now.wrapping_sub(since);
        (*pos).storm_since = 0;
        false
    }
}

/// One run per CPU at a time: the kernel guarantees it for raw tracepoints from Linux 6.1
/// (`prog->active` in `__bpf_trace_run`) and for classic tracepoints always (the CPU-wide
/// `bpf_prog_active`); on older kernels a drop in an interrupt could run the program nested
/// in itself, and two writers would share this CPU's ring, flow entries, counters and
/// scratch. This guard turns the nested run away and counts it (`STAT_NESTED`).
#[inline(always)]
fn on_drop<M: Kmem>(skb: u64, location: u64, reason: u32) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch; a nested run can only start between these instructions
    // and the clear below, and sees `busy` set.
    unsafe {
        if read_volatile(addr_of!((*scratch).busy)) != 0 {
            stat_inc(STAT_NESTED);
            return;
        }
        write_volatile(addr_of_mut!((*scratch).busy), 1);
    }
    on_drop_unguarded::<M>(skb, location, reason, scratch);
    // SAFETY: as above.
    unsafe { write_volatile(addr_of_mut!((*scratch).busy), 0) };
}

/// Counts the drop (per reason, and per flow in the kernel table), decides whether to copy
/// it (everything, or the exemplar budget), and copies it into this CPU's ring.
#[inline(always)]
fn on_drop_unguarded<M: Kmem>(skb: u64, location: u64, reason: u32, scratch: *mut Scratch) {
    let counter = count_seen(reason);
    let f = M::skb_fields(skb);
    let (ifindex, netns_ino) = dev_info::<M>(&f);
    if !selected(reason, ifindex, netns_ino) {
        count_filtered(counter);
        return;
    }
    // SAFETY: helper calls without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let mut key = KFlowKey {
        reason,
        ifindex,
        netns_ino,
        cpu,
        location,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        protocol: f.protocol,
        l4proto: 0,
        family: KFAMILY_NONE,
    };
    if cfg(addr_of!(CONFIG.sel_pods)) != 0 && !pod_selected::<M>(&mut key, &f, scratch) {
        count_filtered(counter);
        return;
    }
    let sp = span(&f);
    let blocks = cfg(addr_of!(CONFIG.ring_blocks));
    let pos = RING_POS.get_ptr_mut(cpu);
    let exemplars = cfg(addr_of!(CONFIG.exemplars));
    // Copying every drop: the record needs the precise clock, and the table takes it too.
    // Otherwise the table's times come from `tick_now` (the precise clock read once per
    // jiffy per CPU), and only an exemplar reads the clock again.
    let copy_all = exemplars == EXEMPLARS_ALL;
    let now = if copy_all {
        // SAFETY: a helper call without arguments.
        unsafe { bpf_ktime_get_ns() }
    } else {
        tick_now(scratch)
    };
    let budget = if !copy_all {
        Some(exemplars)
    } else {
        match pos {
            Some(p) if in_storm(p, blocks, now) => Some(cfg(addr_of!(CONFIG.storm_exemplars))),
            _ => None,
        }
    };

    // Every drop copied: the copy first. When it holds the key's header bytes, user space
    // counts the drop from the record and the kernel table is not touched at all.
    // The filter expression runs on the copy; with a budget, or no room for the copy, on
    // the bytes read into FILTER_BUF before the table counts the drop.
    let mut copied = false;
    let mut judged = false;
    if budget.is_none() {
        match pos.map(|p| emit::<M>(p, cpu, blocks, &sp, &key, now, user_key_span(&f, &sp), true)) {
            Some(Emit::Published) => return,
            Some(Emit::PublishedCounted) => {
                copied = true;
                judged = true;
            }
            Some(Emit::Filtered) => {
                count_filtered(counter);
                return;
            }
            _ => {
                if filter_rejects_uncopied(&sp) {
                    count_filtered(counter);
                    return;
                }
                judged = true;
                count_ring_full(counter);
            }
        }
    }
    if !judged && filter_rejects_uncopied(&sp) {
        count_filtered(counter);
        return;
    }

    if key.family == KFAMILY_NONE {
        // (Read already when the pod selectors looked at the addresses.)
        key_l3::<M>(&mut key, &f, scratch);
    }
    let epoch = match FLOW_GEN.get(0) {
        Some(e) => *e,
        None => 0,
    };
    let gen = epoch & 1;
    let entry = flow_entry(epoch, &key, sp.orig_len, now);
    if entry.is_none() {
        if let Some(c) = counter {
            // SAFETY: per-CPU slot; see stat_inc.
            unsafe { (*c).table_full += 1 };
        }
    }
    let Some(n) = budget else {
        // Copied (or lost in the ring) above.
        if let (true, Some(e)) = (copied, entry) {
            // SAFETY: this CPU's entry; see flow_entry.
            unsafe { (*e).copied += 1 };
        }
        return;
    };
    let copy = match entry {
        Some(e) => budget_allows(gen, e, &key, n),
        None => false,
    };
    if !copy {
        if let Some(c) = counter {
            // SAFETY: per-CPU slot; see stat_inc.
            unsafe { (*c).not_copied += 1 };
        }
        return;
    }
    // An exemplar: its record gets the precise time.
    // SAFETY: a helper call without arguments.
    let ts = unsafe { bpf_ktime_get_ns() };
    let ok = match pos {
        Some(p) => matches!(
            emit::<M>(p, cpu, blocks, &sp, &key, ts, None, false),
            Emit::PublishedCounted
        ),
        None => false,
    };
    if ok {
        if let Some(e) = entry {
            // SAFETY: this CPU's entry; see flow_entry.
            unsafe { (*e).copied += 1 };
        }
    } else {
        count_ring_full(counter);
    }
}

/// Counts one drop of `reason`: in `REASON_ARRAY` when the reason fits, else in
/// `REASON_COUNTS`, else (that map full) in `STAT_REASON_MAP_FULL`; exactly one of the three.
#[inline(always)]
fn count_seen(reason: u32) -> Option<*mut ReasonCounter> {
    if let Some(c) = reason_counter(reason) {
        // SAFETY: per-CPU slot; see stat_inc.
        unsafe { (*c).seen += 1 };
        return Some(c);
    }
    if reason < REASON_ARRAY_ENTRIES {
        // Not reached: every array index exists.
        stat_inc(STAT_REASON_MAP_FULL);
        return None;
    }
    let first = ReasonCounter {
        seen: 1,
        ring_full: 0,
        table_full: 0,
        not_copied: 0,
        filtered: 0,
    };
    insert_counted(&REASON_COUNTS, reason, first, STAT_REASON_MAP_FULL, |c| {
        // SAFETY: per-CPU slot; see stat_inc.
        unsafe { (*c).seen += 1 }
    })
}

/// Counts an event under a key this CPU's slot of `map` does not hold yet: inserts `first`
/// (which counts it), or, when another CPU inserted the key meanwhile (EEXIST), counts it
/// with `bump` in this CPU's slot of that entry. `None`, and the statistic `full_stat`, when
/// the map has no room for the key.
#[inline(always)]
fn insert_counted<K, V>(
    map: &PerCpuHashMap<K, V>,
    key: K,
    first: V,
    full_stat: u32,
    bump: impl Fn(*mut V),
) -> Option<*mut V> {
    if map.insert(&key, &first, u64::from(BPF_NOEXIST)).is_ok() {
        return map.get_ptr_mut(&key);
    }
    if let Some(c) = map.get_ptr_mut(&key) {
        bump(c);
        return Some(c);
    }
    stat_inc(full_stat);
    None
}

/// A copy the ring had no room for: per reason and in total.
#[inline(always)]
fn count_ring_full(counter: Option<*mut ReasonCounter>) {
    if let Some(c) = counter {
        // SAFETY: per-CPU slot; see stat_inc.
        unsafe { (*c).ring_full += 1 };
    }
    stat_inc(STAT_RING_FULL);
}

/// What `emit` did with a drop.
enum Emit {
    /// In the ring; user space counts it per flow from the record.
    Published,
    /// In the ring with `FLAG_COUNTED`: the kernel table counts it.
    PublishedCounted,
    /// Copied, and the filter expression rejected it: its ring space is given back.
    Filtered,
    /// Not put in the ring (no room, or no ring for this CPU).
    NoRoom,
}

/// Room for a frame of `total` bytes (8-aligned, at most `MAX_FRAME`) in this CPU's ring:
/// where to write it and the position that publishes it; `None` when the ring is full.
/// The caller writes the frame, then stores the position in `prod` (its single writer).
/// The same steps as the start of `emit`, which keeps its own copy: written through this
/// function the compiler laid the drop path out differently, and bpf_stats showed it a few
/// percent slower on this noisy host; the drop path stays byte for byte as it was.
#[inline(always)]
fn reserve(pos: *mut RingPos, cpu: u32, blocks: u32, total: u32) -> Option<(*mut u8, u64)> {
    // Room in the ring: the frame goes at `prod`, or at the next block when it would cross
    // this one's end. `limit` is this CPU's cached `cons + ring bytes`; the reader's line is
    // read only when the frame would pass it.
    // SAFETY: `pos` is this CPU's RING_POS element; only this CPU's program writes `prod`
    // and `limit` (no nested runs on one CPU), user space writes `cons` (read volatile).
    let prod = unsafe { read_volatile(addr_of!((*pos).prod)) };
    let off = prod & (BLOCK - 1);
    let at = if off + u64::from(total) > BLOCK {
        prod + (BLOCK - off)
    } else {
        prod
    };
    let end = at + u64::from(total);
    // SAFETY: as above. The acquire side of the reader's release store of `cons`: on x86-64
    // a plain load (TSO), see the module doc.
    unsafe {
        if end > (*pos).limit {
            let cons = read_volatile(addr_of!((*pos).cons));
            (*pos).limit = cons.wrapping_add(u64::from(blocks) << RING_BLOCK_SHIFT);
            if end > (*pos).limit {
                return None;
            }
        }
    }
    let first = u64::from(cpu) * u64::from(blocks);
    let mask = u64::from(blocks) - 1;
    if at != prod {
        // The rest of prod's block stays empty: say so where the reader looks next.
        let block = RING_DATA
            .get_ptr_mut((first + ((prod >> RING_BLOCK_SHIFT) & mask)) as u32)?
            .cast::<u8>();
        // SAFETY: the offset is below RING_BLOCK and 8-aligned, the element RING_ELEM bytes.
        unsafe {
            write_volatile(
                block.add((off & (BLOCK - 8)) as usize).cast::<u32>(),
                FRAME_PAD,
            )
        };
    }
    let block = RING_DATA
        .get_ptr_mut((first + ((at >> RING_BLOCK_SHIFT) & mask)) as u32)?
        .cast::<u8>();
    // SAFETY: the offset is below RING_BLOCK and 8-aligned, and a frame is at most MAX_FRAME
    // bytes: RING_ELEM = RING_BLOCK + MAX_FRAME holds it (the verifier checks this too).
    let frame = unsafe { block.add((at & (BLOCK - 8)) as usize) };
    Some((frame, end))
}

/// Writes the record into this CPU's ring, runs the filter expression on the copy when
/// `filter` says so, and publishes it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn emit<M: Kmem>(
    pos: *mut RingPos,
    cpu: u32,
    blocks: u32,
    sp: &Span,
    key: &KFlowKey,
    ts_ns: u64,
    user_key: Option<(u16, u32)>,
    filter: bool,
) -> Emit {
    if blocks == 0 {
        return Emit::NoRoom;
    }
    let mut cap = sp.cap;
    let mut flags = sp.flags;
    let mut read_failed = sp.read_failed;

    // Room in the ring: the frame goes at `prod`, or at the next block when it would cross
    // this one's end. `limit` is this CPU's cached `cons + ring bytes`; the reader's line is
    // read only when the frame would pass it.
    let total = (FRAME_HDR_LEN + EVENT_LEN + cap + 7) & !7;
    // SAFETY: `pos` is this CPU's RING_POS element; only this CPU's program writes `prod`
    // and `limit` (no nested runs on one CPU), user space writes `cons` (read volatile).
    let prod = unsafe { read_volatile(addr_of!((*pos).prod)) };
    let off = prod & (BLOCK - 1);
    let at = if off + u64::from(total) > BLOCK {
        prod + (BLOCK - off)
    } else {
        prod
    };
    let end = at + u64::from(total);
    // SAFETY: as above. The acquire side of the reader's release store of `cons`: on x86-64
    // a plain load (TSO), see the module doc.
    unsafe {
        if end > (*pos).limit {
            let cons = read_volatile(addr_of!((*pos).cons));
            (*pos).limit = cons.wrapping_add(u64::from(blocks) << RING_BLOCK_SHIFT);
            if end > (*pos).limit {
                return Emit::NoRoom;
            }
        }
    }
    let first = u64::from(cpu) * u64::from(blocks);
    let mask = u64::from(blocks) - 1;
    if at != prod {
        // The rest of prod's block stays empty: say so where the reader looks next.
        let Some(block) =
            RING_DATA.get_ptr_mut((first + ((prod >> RING_BLOCK_SHIFT) & mask)) as u32)
        else {
            return Emit::NoRoom;
        };
        let block = block.cast::<u8>();
        // SAFETY: the offset is below RING_BLOCK and 8-aligned, the element RING_ELEM bytes.
        unsafe {
            write_volatile(
                block.add((off & (BLOCK - 8)) as usize).cast::<u32>(),
                FRAME_PAD,
            )
        };
    }
    let Some(block) = RING_DATA.get_ptr_mut((first + ((at >> RING_BLOCK_SHIFT) & mask)) as u32)
    else {
        return Emit::NoRoom;
    };
    let block = block.cast::<u8>();
    // SAFETY: the offset is below RING_BLOCK and 8-aligned, and a frame is at most MAX_FRAME
    // bytes: RING_ELEM = RING_BLOCK + MAX_FRAME holds it (the verifier checks this too).
    let frame = unsafe { block.add((at & (BLOCK - 8)) as usize) };

    if cap > 0 && M::direct_packet() && cap <= DIRECT_COPY_MAX {
        // SAFETY: [frame + PACKET_OFF, + cap rounded up to 8) lies in the element (see
        // above), 8-aligned.
        copy_direct(unsafe { frame.add(PACKET_OFF) }, sp.start, cap);
    } else if cap > 0 {
        // SAFETY: [frame + PACKET_OFF, + cap) lies in the element (see above); the helper
        // checks the source address.
        let ret = unsafe {
            read_raw(
                frame.add(PACKET_OFF).cast::<c_void>(),
                cap,
                sp.start as *const c_void,
            )
        };
        if ret != 0 {
            cap = 0;
            read_failed = true;
        }
    }
    // The filter runs on the copy before anything is published: a rejected drop leaves
    // `prod` where it was, so its bytes are overwritten by the next record.
    if filter
        && filter_rejects(
            // SAFETY: [frame + PACKET_OFF, + MAX_KERNEL_SNAPLEN) lies in the element (see above).
            unsafe { frame.add(PACKET_OFF) },
            cap,
            flags & FLAG_L3 != 0,
            sp.orig_len,
        )
    {
        return Emit::Filtered;
    }
    if read_failed {
        flags |= FLAG_READ_FAILED;
        flags &= !FLAG_LINEAR_END;
        stat_inc(STAT_READ_FAILED);
    }
    // User space counts the drop from the record when the copy holds the header bytes the
    // key is made of; else the kernel counts it (and says so in the record).
    let (net_off, counted) = match user_key {
        Some((off, need_end)) if !read_failed && need_end <= cap => (off, false),
        _ => (0, true),
    };
    if counted {
        flags |= FLAG_COUNTED;
    }

    // SAFETY: the frame header and event lie in the element (see above); the fields are
    // written one by one, volatile (see the publishing store below), so that no store
    // covers `_pad` alone (a byte array the compiler would clear with a memset call). A
    // failed packet read leaves zeros the frame length still covers; `cap_len` says 0.
    unsafe {
        write_volatile(
            frame.cast::<FrameHeader>(),
            FrameHeader {
                len: total,
                _reserved: 0,
            },
        );
        let ev = frame.add(FRAME_HDR_LEN as usize).cast::<KfreeSkbEvent>();
        write_volatile(
            addr_of_mut!((*ev).hdr),
            RecordHeader {
                version: ABI_VERSION,
                kind: KIND_KFREE_SKB,
                hdr_len: EVENT_LEN as u16,
                cpu,
                ts_ns,
            },
        );
        write_volatile(addr_of_mut!((*ev).location), key.location);
        write_volatile(addr_of_mut!((*ev).reason), key.reason);
        write_volatile(addr_of_mut!((*ev).ifindex), key.ifindex);
        write_volatile(addr_of_mut!((*ev).netns_ino), key.netns_ino);
        write_volatile(addr_of_mut!((*ev).orig_len), sp.orig_len);
        write_volatile(addr_of_mut!((*ev).cap_len), cap as u16);
        write_volatile(addr_of_mut!((*ev).protocol), key.protocol);
        // `flags`, its padding byte and `net_off`, in one aligned store.
        write_volatile(
            addr_of_mut!((*ev).flags).cast::<u32>(),
            u32::from(flags) | u32::from(net_off) << 16,
        );
    }
    // Publish: the release side paired with the reader's acquire load of `prod`
    // (engine/src/kernel/ring.rs). The stores above are volatile, so the compiler keeps
    // them before this one (the packet bytes were written by the helper call before them);
    // x86-64 keeps stores in order (TSO), so a plain store is a release store there. The
    // loader refuses other architectures (see the module doc).
    // SAFETY: this CPU's RING_POS element; see above.
    unsafe { write_volatile(addr_of_mut!((*pos).prod), end) };
    if counted {
        Emit::PublishedCounted
    } else {
        Emit::Published
    }
}

/// Copies at most this many packet bytes (the default snap length) with loads under
/// [`Kmem::direct_packet`]; longer copies call `bpf_probe_read_kernel`, whose one call
/// costs less than a long word loop would (not measured beyond 256 bytes).
const DIRECT_COPY_MAX: u32 = 256;

/// Copies `cap` (at most [`DIRECT_COPY_MAX`]) packet bytes from `src` (a pointer derived
/// from `skb->head`, see [`packet_u64`]) to `dst` in 8-byte words: the last word may carry
/// up to 7 bytes past `cap` (the frame is 8-aligned and `cap_len` says where the packet
/// ends). A fault reads zeros instead of failing the copy, so such a copy is not flagged
/// as a failed read; the packet's own linear data is always mapped.
#[inline(always)]
fn copy_direct(dst: *mut u8, src: u64, cap: u32) {
    let words = cap.div_ceil(8);
    let mut i = 0;
    while i < DIRECT_COPY_MAX / 8 {
        if i >= words {
            break;
        }
        // SAFETY: the caller's destination holds `words` 8-byte words; volatile, so the
        // stores stay before the record's publishing store (see emit).
        unsafe {
            write_volatile(
                dst.add(i as usize * 8).cast::<u64>(),
                packet_u64(src, i * 8),
            )
        };
        i += 1;
    }
}

/// Where the key's header bytes are in a copy made from `sp.start`: (offset of the network
/// header, end of the bytes the key reads: up to `KEY_HDR_BYTES` of linear data from it).
/// `None` when the copy cannot hold them (no network header, or before the start).
#[inline(always)]
fn user_key_span(f: &SkbFields, sp: &Span) -> Option<(u16, u32)> {
    let (net, need) = key_bytes(f)?;
    let off = (net as i64).wrapping_sub(sp.start as i64);
    if !(0..=1024).contains(&off) {
        return None;
    }
    Some((off as u16, off as u32 + need))
}

/// Where the flow key's header bytes are: the network header's address and how many bytes
/// of linear data from it the key reads (at most `KEY_HDR_BYTES`); `None` without a network
/// header. The kernel's parse (`key_l3`) and user space's (from a copy, `user_key_span`)
/// read exactly these bytes.
#[inline(always)]
fn key_bytes(f: &SkbFields) -> Option<(u64, u32)> {
    if f.head == 0 || f.data == 0 || f.network == HEADER_UNSET {
        return None;
    }
    let net = f.head.wrapping_add(u64::from(f.network));
    let linear_end = f
        .data
        .wrapping_add(u64::from(f.len.wrapping_sub(f.data_len)));
    let avail = (linear_end as i64).wrapping_sub(net as i64);
    let n = if avail < 0 {
        0
    } else if avail > KEY_HDR_BYTES as i64 {
        KEY_HDR_BYTES
    } else {
        avail as u32
    };
    Some((net, n))
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("capture-ebpf is an eBPF object: engine/build.rs builds it for bpfel-unknown-none");
    std::process::exit(2);
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
