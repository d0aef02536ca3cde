//! dropscope's kernel programs: every packet the kernel frees through `skb:kfree_skb` becomes
//! one ring-buffer record (a [`KfreeSkbEvent`] followed by up to `snaplen` packet bytes).
//!
//! Two entry points feed one function: `kfree_skb_btf` (`tp_btf/kfree_skb`, typed arguments)
//! and `kfree_skb_tp` (the classic tracepoint, arguments at offsets user space reads from the
//! tracepoint's `format` file). Every drop is counted per reason *before* the ring is touched,
//! so user space can reconcile exactly: `seen == delivered + ring_full` for every reason.
//! `tc_shot` is a test helper that drops every packet it sees (tests only).
//!
//! Must never: change what happens to traffic (tracing programs return 0), hard-code a kernel
//! struct offset (they all come from [`ProbeConfig`] in `.rodata`), retry a failed ring
//! output, or emit a record whose length differs from `48 + cap_len`.
// Built for bpfel-unknown-none by engine/build.rs. On the host it compiles to a stub
// binary, so workspace-wide `cargo check/clippy/test --workspace` keep working.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Entry points keep the aya-template shape `match try_x(ctx) { Ok(v) => v, Err(_) => 0 }`.
#![allow(clippy::manual_unwrap_or_default, clippy::manual_unwrap_or)]

use core::{
    ffi::c_void,
    mem::size_of,
    ptr::{addr_of, addr_of_mut, read_volatile},
};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_SHOT},
    helpers::{
        bpf_get_smp_processor_id, bpf_ktime_get_ns, generated::bpf_probe_read_kernel as read_raw,
    },
    macros::{btf_tracepoint, classifier, map, tracepoint},
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePointContext, TcContext, TracePointContext},
};
use capture_common::{
    KfreeSkbEvent, ProbeConfig, ReasonCounter, RecordHeader, ABI_VERSION, DEFAULT_SNAPLEN, FLAG_L3,
    FLAG_LINEAR_END, FLAG_READ_FAILED, KIND_KFREE_SKB, MAX_SNAPLEN, OFF_ABSENT,
    REASON_ARRAY_ENTRIES, REASON_MAP_ENTRIES, SKB_COPY_MAX, STAT_COUNT, STAT_READ_FAILED,
    STAT_REASON_MAP_FULL, STAT_RING_FULL,
};

/// Written by user space at load time (`EbpfLoader::override_global`); these defaults make
/// every kernel field absent, so an unconfigured program still counts drops safely.
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig {
    snaplen: DEFAULT_SNAPLEN,
    tp_off_skbaddr: OFF_ABSENT,
    tp_off_location: OFF_ABSENT,
    tp_off_reason: OFF_ABSENT,
    off_skb_head: OFF_ABSENT,
    off_skb_data: OFF_ABSENT,
    off_skb_len: OFF_ABSENT,
    off_skb_data_len: OFF_ABSENT,
    off_skb_mac_header: OFF_ABSENT,
    off_skb_network_header: OFF_ABSENT,
    off_skb_protocol: OFF_ABSENT,
    off_skb_dev: OFF_ABSENT,
    off_skb_iif: OFF_ABSENT,
    off_skb_sk: OFF_ABSENT,
    off_dev_ifindex: OFF_ABSENT,
    off_dev_nd_net: OFF_ABSENT,
    off_sk_net: OFF_ABSENT,
    off_net_inum: OFF_ABSENT,
    wakeup_bytes: 0,
    skb_copy_off: 0,
    skb_copy_len: 0,
};

/// Puts the ABI types into the object's BTF, where an engine test compares their layout with
/// capture-common's (the maps above are legacy maps, whose value types BTF does not see).
/// Lives in `.rodata` and is never read.
#[repr(C)]
pub struct AbiAnchor {
    pub event: KfreeSkbEvent,
    pub header: RecordHeader,
    pub counter: ReasonCounter,
}

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
        _pad: [0; 3],
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
    },
};

/// `bpf_ringbuf_output` flags and `bpf_ringbuf_query` selector (include/uapi/linux/bpf.h).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Records for user space; user space sets the real size at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

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

/// One record under construction per CPU: too big for the 512-byte stack.
#[repr(C)]
pub struct Scratch {
    pub ev: KfreeSkbEvent,
    pub data: [u8; MAX_SNAPLEN as usize],
    /// Records this CPU still sends before it next asks how much of the ring waits.
    pub until_wakeup_check: u32,
    /// The tracepoint program's copy of the `sk_buff` bytes it needs (`Probe::skb_fields`).
    pub skb: [u8; SKB_COPY_MAX as usize],
}

/// How often (in records, per CPU) the program checks whether to wake the reader.
const WAKEUP_CHECK_EVERY: u32 = 16;

// `flags` and `_pad` end the event and are written as one aligned little-endian u32.
const _: () = assert!(core::mem::offset_of!(KfreeSkbEvent, flags) % 4 == 0);
const _: () =
    assert!(core::mem::offset_of!(KfreeSkbEvent, flags) + 4 == size_of::<KfreeSkbEvent>());
const _: () = assert!(cfg!(target_endian = "little"));

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The header value meaning "not set" (`(typeof(skb->mac_header))~0U`).
const HEADER_UNSET: u16 = 0xffff;
const EVENT_LEN: u32 = size_of::<KfreeSkbEvent>() as u32;

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

/// Test helper: drop every packet (tc `action drop` is not available everywhere).
#[classifier]
pub fn tc_shot(ctx: TcContext) -> i32 {
    match try_tc_shot(&ctx) {
        Ok(v) => v,
        Err(_) => TC_ACT_SHOT,
    }
}

fn try_tc_shot(_ctx: &TcContext) -> Result<i32, i64> {
    Ok(TC_ACT_SHOT)
}

#[inline(always)]
fn cfg(field: *const u32) -> u32 {
    // SAFETY: `field` points into the CONFIG static; volatile so the compiler does not fold
    // the compile-time defaults (user space rewrites .rodata before load).
    unsafe { read_volatile(field) }
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

    /// The `sk_buff` members the record needs; by default one [`Kmem::read`] each.
    #[inline(always)]
    fn skb_fields(skb: u64, _scratch: *mut Scratch) -> SkbFields {
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
    fn skb_fields(skb: u64, scratch: *mut Scratch) -> SkbFields {
        let base = cfg(addr_of!(CONFIG.skb_copy_off));
        let len = cfg(addr_of!(CONFIG.skb_copy_len));
        if len == 0 || len > SKB_COPY_MAX || skb == 0 {
            return Self::skb_fields_each(skb);
        }
        // SAFETY: `skb` in scratch is SKB_COPY_MAX bytes of this CPU's map value and
        // len <= SKB_COPY_MAX; the helper checks the source address.
        let copy = unsafe { addr_of_mut!((*scratch).skb).cast::<u8>() };
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
        Each::skb_fields(skb, core::ptr::null_mut())
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
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        if base == 0 || off == OFF_ABSENT {
            return None;
        }
        // SAFETY: the verifier checks this load against the kernel's BTF and makes it
        // fault-safe (see above); T is a plain integer of the member's size.
        Some(unsafe { read_volatile(base.wrapping_add(u64::from(off)) as *const T) })
    }
}

/// Counts the drop, then tries to deliver it; a delivery failure is counted as ring-full.
#[inline(always)]
fn on_drop<M: Kmem>(skb: u64, location: u64, reason: u32) {
    // The clock first: reading it waits for every load in flight to finish (rdtscp/lfence),
    // so here, before the field loads below, it costs far less than after them.
    // SAFETY: a helper call without arguments.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let counter = count_seen(reason);
    if emit::<M>(skb, location, reason, ts_ns).is_err() {
        if let Some(c) = counter {
            // SAFETY: per-CPU slot of REASON_COUNTS; see stat_inc.
            unsafe { (*c).ring_full += 1 };
        }
        stat_inc(STAT_RING_FULL);
    }
}

/// Counts one drop of `reason`: in `REASON_ARRAY` when the reason fits, else in
/// `REASON_COUNTS`, else (that map full) in `STAT_REASON_MAP_FULL`; exactly one of the three.
#[inline(always)]
fn count_seen(reason: u32) -> Option<*mut ReasonCounter> {
    if reason < REASON_ARRAY_ENTRIES {
        if let Some(c) = REASON_ARRAY.get_ptr_mut(reason) {
            // SAFETY: per-CPU slot; see stat_inc.
            unsafe { (*c).seen += 1 };
            return Some(c);
        }
    }
    if let Some(c) = REASON_COUNTS.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot; see stat_inc.
        unsafe { (*c).seen += 1 };
        return Some(c);
    }
    let first = ReasonCounter {
        seen: 1,
        ring_full: 0,
    };
    if REASON_COUNTS
        .insert(reason, first, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        return REASON_COUNTS.get_ptr_mut(reason);
    }
    // Another CPU may have inserted the key first (EEXIST): count in our slot of its entry.
    if let Some(c) = REASON_COUNTS.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot; see stat_inc.
        unsafe { (*c).seen += 1 };
        return Some(c);
    }
    stat_inc(STAT_REASON_MAP_FULL);
    None
}

/// Builds the record in the per-CPU scratch buffer and copies `48 + cap_len` bytes of it to
/// the ring. `Err` only when the record could not be put in the ring.
#[inline(always)]
fn emit<M: Kmem>(skb: u64, location: u64, reason: u32, ts_ns: u64) -> Result<(), ()> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(())?;

    let SkbFields {
        head,
        data,
        len,
        data_len,
        mac,
        network,
        protocol,
        dev,
        iif,
        sk,
    } = M::skb_fields(skb, scratch);

    let mut flags = 0u8;
    // No MAC header, or an empty one (L3 devices such as tun or wireguard set mac_header
    // equal to network_header): the capture starts at the network header.
    let start = if mac != HEADER_UNSET && mac != network {
        head.wrapping_add(u64::from(mac))
    } else {
        flags |= FLAG_L3;
        if network != HEADER_UNSET {
            head.wrapping_add(u64::from(network))
        } else {
            data
        }
    };

    let snaplen = cfg(addr_of!(CONFIG.snaplen));
    let snaplen = if snaplen > MAX_SNAPLEN {
        MAX_SNAPLEN
    } else {
        snaplen
    };
    let mut orig_len = len;
    let mut cap: u32 = 0;
    let mut read_failed = snaplen > 0;
    if head != 0 && data != 0 {
        // Bytes between the capture start and skb->data (negative when data is before it).
        let lead = (data as i64).wrapping_sub(start as i64);
        let orig = lead.wrapping_add(i64::from(len));
        orig_len = if orig < 0 {
            0
        } else if orig > i64::from(u32::MAX) {
            u32::MAX
        } else {
            orig as u32
        };
        // Only the linear part can be read with one copy: up to skb->tail.
        let avail = lead.wrapping_add(i64::from(len).wrapping_sub(i64::from(data_len)));
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
    if cap > MAX_SNAPLEN {
        cap = MAX_SNAPLEN;
    }
    if cap > 0 {
        // SAFETY: scratch is this CPU's map value; the destination range
        // [data, data + cap) lies inside it because cap <= MAX_SNAPLEN.
        let ret = unsafe {
            read_raw(
                addr_of_mut!((*scratch).data).cast::<c_void>(),
                cap,
                start as *const c_void,
            )
        };
        if ret != 0 {
            cap = 0;
            read_failed = true;
        }
    }
    if read_failed {
        flags |= FLAG_READ_FAILED;
        flags &= !FLAG_LINEAR_END;
        stat_inc(STAT_READ_FAILED);
    }

    let mut ifindex: u32 = 0;
    let mut net: u64 = 0;
    if dev != 0 {
        ifindex = M::read(dev, cfg(addr_of!(CONFIG.off_dev_ifindex))).unwrap_or(0);
        net = M::read(dev, cfg(addr_of!(CONFIG.off_dev_nd_net))).unwrap_or(0);
    }
    if ifindex == 0 {
        ifindex = iif;
    }
    if net == 0 {
        net = M::read(sk, cfg(addr_of!(CONFIG.off_sk_net))).unwrap_or(0);
    }
    let netns_ino: u32 = M::read(net, cfg(addr_of!(CONFIG.off_net_inum))).unwrap_or(0);

    // SAFETY: scratch is this CPU's map value, large enough for the event; the fields are
    // written one by one so that no store covers `_pad` alone (a byte array the compiler
    // would clear with a memset call).
    unsafe {
        let ev = addr_of_mut!((*scratch).ev);
        addr_of_mut!((*ev).hdr).write(RecordHeader {
            version: ABI_VERSION,
            kind: KIND_KFREE_SKB,
            hdr_len: EVENT_LEN as u16,
            cpu: bpf_get_smp_processor_id(),
            ts_ns,
        });
        addr_of_mut!((*ev).location).write(location);
        addr_of_mut!((*ev).reason).write(reason);
        addr_of_mut!((*ev).ifindex).write(ifindex);
        addr_of_mut!((*ev).netns_ino).write(netns_ino);
        addr_of_mut!((*ev).orig_len).write(orig_len);
        addr_of_mut!((*ev).cap_len).write(cap as u16);
        addr_of_mut!((*ev).protocol).write(protocol);
        // `flags` and the three zero padding bytes after it, in one aligned store.
        addr_of_mut!((*ev).flags)
            .cast::<u32>()
            .write(u32::from(flags));
    }

    let total = EVENT_LEN + cap;
    // SAFETY: `total` <= size_of::<Scratch>() because cap <= MAX_SNAPLEN; the slice lives in
    // the map value for the duration of the helper call.
    let record = unsafe { core::slice::from_raw_parts(scratch.cast::<u8>(), total as usize) };
    // Wake the reader only once enough is waiting (see ProbeConfig::wakeup_bytes). Asking the
    // ring how much waits costs a helper call and a read of the consumer's cache line, so each
    // CPU asks only every WAKEUP_CHECK_EVERY records: the reader is woken at most that many
    // records late (it also polls every few milliseconds).
    let wakeup = cfg(addr_of!(CONFIG.wakeup_bytes));
    let flags = if wakeup == 0 {
        0
    } else {
        // SAFETY: this CPU's scratch value; see stat_inc for why a plain update cannot race.
        let left = unsafe { &mut *addr_of_mut!((*scratch).until_wakeup_check) };
        if *left == 0 {
            *left = WAKEUP_CHECK_EVERY - 1;
            if EVENTS.query(BPF_RB_AVAIL_DATA) >= u64::from(wakeup) {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            }
        } else {
            *left -= 1;
            BPF_RB_NO_WAKEUP
        }
    };
    EVENTS.output::<[u8]>(record, flags).map_err(|_| ())
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
