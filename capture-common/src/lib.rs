//! The event ABI shared by dropscope's eBPF programs (capture-ebpf) and user space (engine).
//!
//! Rules (see shared/docs/design.md): fields are fixed-width integers and byte arrays only,
//! padding is explicit, every size and offset is asserted at compile time, and a test in
//! engine compares these layouts with the BTF of the built eBPF object. User space never
//! trusts a length in a record: it reads `min(cap_len, bytes present)`.
//!
//! Must never: depend on std, contain pointers, `bool`, enums or `usize`.
#![no_std]

use core::mem::{offset_of, size_of};

/// Version of the record layout below; bumped on any change.
pub const ABI_VERSION: u8 = 2;

/// `RecordHeader::kind` of a [`KfreeSkbEvent`]: a packet freed through `skb:kfree_skb`.
pub const KIND_KFREE_SKB: u8 = 1;

/// Largest snap length the kernel program copies (bytes of packet after the fixed body).
pub const MAX_SNAPLEN: u32 = 2048;
/// Snap length used when the user does not choose one.
pub const DEFAULT_SNAPLEN: u32 = 256;

/// `KfreeSkbEvent::flags`: the packet bytes start at the network header (no MAC header).
pub const FLAG_L3: u8 = 1 << 0;
/// `KfreeSkbEvent::flags`: the packet bytes could not be read (cap_len is 0).
pub const FLAG_READ_FAILED: u8 = 1 << 1;
/// `KfreeSkbEvent::flags`: the capture was cut at the end of the linear data, before snaplen.
pub const FLAG_LINEAR_END: u8 = 1 << 2;

/// Indices of the per-CPU `STATS` array (u64 counters). There is no "seen" total: every drop
/// is counted once, per reason, in `REASON_ARRAY` or `REASON_COUNTS`, else in
/// `STAT_REASON_MAP_FULL`, so seen = the sum of those (one counter per drop is cheaper).
///
/// Events this CPU's ring had no room for (ring full): counted, never retried.
pub const STAT_RING_FULL: u32 = 0;
/// Events whose packet bytes could not be read (still delivered, with `FLAG_READ_FAILED`).
pub const STAT_READ_FAILED: u32 = 1;
/// Events whose reason could not get a slot in `REASON_COUNTS` (map full): counted here only.
pub const STAT_REASON_MAP_FULL: u32 = 2;
/// Number of entries of `STATS`.
pub const STAT_COUNT: u32 = 3;

/// Reasons below this bound (every core `enum skb_drop_reason` value: 128 on Linux 6.18) are
/// counted in the per-CPU array `REASON_ARRAY`, indexed by reason: no hashing per drop.
pub const REASON_ARRAY_ENTRIES: u32 = 512;
/// Maximum number of distinct other reasons (subsystem reasons, upper 16 bits set) that
/// the per-CPU hash `REASON_COUNTS` tracks.
pub const REASON_MAP_ENTRIES: u32 = 1024;

/// Name of the eBPF programs and maps, shared so user space and kernel agree.
pub const PROG_TP_BTF: &str = "kfree_skb_btf";
pub const PROG_TRACEPOINT: &str = "kfree_skb_tp";
pub const PROG_TC_SHOT: &str = "tc_shot";
/// The per-CPU rings' bytes: [`RING_ELEM`]-byte blocks, `ring_blocks` per CPU (see [`RingPos`]).
pub const MAP_RING_DATA: &str = "RING_DATA";
/// The per-CPU rings' positions: one [`RingPos`] per CPU.
pub const MAP_RING_POS: &str = "RING_POS";
pub const MAP_STATS: &str = "STATS";
pub const MAP_REASON_ARRAY: &str = "REASON_ARRAY";
pub const MAP_REASON_COUNTS: &str = "REASON_COUNTS";
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// First bytes of every ring record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// [`ABI_VERSION`].
    pub version: u8,
    /// `KIND_*`.
    pub kind: u8,
    /// Length of the fixed part (header + body): packet bytes start here.
    pub hdr_len: u16,
    /// CPU the event was produced on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event was produced.
    pub ts_ns: u64,
}

/// One `skb:kfree_skb` event; `cap_len` packet bytes follow it in the ring record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfreeSkbEvent {
    pub hdr: RecordHeader,
    /// Kernel address the skb was freed from (`location` argument).
    pub location: u64,
    /// Raw `enum skb_drop_reason` value; subsystem reasons keep their upper 16 bits.
    pub reason: u32,
    /// `skb->dev->ifindex`, else `skb->skb_iif`, else 0.
    pub ifindex: u32,
    /// Inode of the network namespace of `skb->dev` (else of `skb->sk`), 0 if unknown.
    pub netns_ino: u32,
    /// Length of the packet from where the capture starts (MAC or network header).
    pub orig_len: u32,
    /// Packet bytes that follow this struct.
    pub cap_len: u16,
    /// `skb->protocol` exactly as stored (network byte order).
    pub protocol: u16,
    /// `FLAG_*`.
    pub flags: u8,
    pub _pad: [u8; 3],
}

/// Load-time configuration, written into the program's `.rodata` by user space.
///
/// All `off_*` fields are byte offsets read from the running kernel's BTF; a value of
/// [`OFF_ABSENT`] means the field does not exist on this kernel and the program skips it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Bytes of packet to copy, at most [`MAX_SNAPLEN`].
    pub snaplen: u32,
    /// For the `tracepoint/skb/kfree_skb` fallback: offsets of the tracepoint's fields in
    /// its record (from the tracepoint's `format` file).
    pub tp_off_skbaddr: u32,
    pub tp_off_location: u32,
    pub tp_off_reason: u32,
    /// `struct sk_buff` members.
    pub off_skb_head: u32,
    pub off_skb_data: u32,
    pub off_skb_len: u32,
    pub off_skb_data_len: u32,
    pub off_skb_mac_header: u32,
    pub off_skb_network_header: u32,
    pub off_skb_protocol: u32,
    pub off_skb_dev: u32,
    pub off_skb_iif: u32,
    pub off_skb_sk: u32,
    /// `struct net_device` members.
    pub off_dev_ifindex: u32,
    /// `dev->nd_net.net` (a `struct net *`).
    pub off_dev_nd_net: u32,
    /// `sk->__sk_common.skc_net.net` (a `struct net *`).
    pub off_sk_net: u32,
    /// `net->ns.inum`.
    pub off_net_inum: u32,
    /// Blocks of [`RING_BLOCK`] bytes in each CPU's ring: a power of two, at least 1 (0: the
    /// program has no ring and counts every drop as ring-full).
    pub ring_blocks: u32,
    /// `sk_buff` bytes `[skb_copy_off, skb_copy_off + skb_copy_len)` hold every `off_skb_*`
    /// member above: the tracepoint program reads them with one `bpf_probe_read_kernel`
    /// instead of one per member. `skb_copy_len` is 0 when the span is longer than
    /// [`SKB_COPY_MAX`] (the program then reads member by member).
    pub skb_copy_off: u32,
    pub skb_copy_len: u32,
}

/// Each CPU has its own ring, written only by the kernel program on that CPU and read by
/// user space through `mmap`: no lock, no shared cache line between CPUs, no wake-ups (the
/// reader polls). A ring is `ring_blocks` blocks of `RING_BLOCK` bytes, addressed by a
/// 64-bit byte position that only grows: block `(pos >> RING_BLOCK_SHIFT) % ring_blocks`,
/// offset `pos % RING_BLOCK`. Each record is a [`FrameHeader`] and its payload, 8-aligned,
/// and never crosses a block: when it would not fit, the program writes a frame of length
/// [`FRAME_PAD`] ("the rest of this block is unused") and starts at the next block.
///
/// Bytes per block.
pub const RING_BLOCK: u32 = 1 << RING_BLOCK_SHIFT;
pub const RING_BLOCK_SHIFT: u32 = 16;
/// Largest frame: header, event and `MAX_SNAPLEN` packet bytes, 8-aligned.
pub const MAX_FRAME: u32 =
    (size_of::<FrameHeader>() as u32 + size_of::<KfreeSkbEvent>() as u32 + MAX_SNAPLEN + 7) & !7;
/// Size of one `RING_DATA` element: a block plus room for one largest frame past its end, so
/// the verifier can prove every write in bounds from `offset < RING_BLOCK` alone. The slack
/// is never used for data (frames never cross `RING_BLOCK`).
pub const RING_ELEM: u32 = RING_BLOCK + MAX_FRAME;
/// `FrameHeader::len` of a padding frame: the rest of the block holds no record.
pub const FRAME_PAD: u32 = u32::MAX;

/// Starts every frame in a per-CPU ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of the frame including this header, a multiple of 8; or [`FRAME_PAD`].
    pub len: u32,
    pub _reserved: u32,
}

/// One CPU's ring positions (a `RING_POS` element). Each written field has its own cache
/// line, so the reader's stores never touch the line the producer writes on every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingPos {
    /// End of the last published frame; written by the kernel program (after the frame's
    /// bytes), read by user space.
    pub prod: u64,
    pub _pad0: [u64; 7],
    /// Everything before this position has been read; written by user space.
    pub cons: u64,
    pub _pad1: [u64; 7],
    /// The producer's own copy of `cons + ring bytes`: it reads `cons` (the reader's cache
    /// line) only when a frame would pass this limit. Never read by user space.
    pub limit: u64,
    pub _pad2: [u64; 7],
}

impl ProbeConfig {
    /// A configuration with every kernel field absent and no rings: the program counts drops
    /// (all as ring-full) and reads nothing. The object's `.rodata` default, and what test
    /// loads that never attach the kfree_skb program use.
    pub const UNCONFIGURED: ProbeConfig = ProbeConfig {
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
        ring_blocks: 0,
        skb_copy_off: 0,
        skb_copy_len: 0,
    };
}

/// Longest `sk_buff` span the tracepoint program copies at once (`ProbeConfig::skb_copy_len`).
pub const SKB_COPY_MAX: u32 = 256;

/// Offset value meaning "this kernel has no such field".
pub const OFF_ABSENT: u32 = u32::MAX;

/// Per-reason counters kept by the kernel program (per CPU) before it touches the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonCounter {
    /// Drops seen with this reason.
    pub seen: u64,
    /// Of those, how many could not be put in the ring (ring full).
    pub ring_full: u64,
}

const _: () = assert!(size_of::<RecordHeader>() == 16);
const _: () = assert!(offset_of!(RecordHeader, hdr_len) == 2);
const _: () = assert!(offset_of!(RecordHeader, cpu) == 4);
const _: () = assert!(offset_of!(RecordHeader, ts_ns) == 8);
const _: () = assert!(size_of::<KfreeSkbEvent>() == 48);
const _: () = assert!(offset_of!(KfreeSkbEvent, location) == 16);
const _: () = assert!(offset_of!(KfreeSkbEvent, reason) == 24);
const _: () = assert!(offset_of!(KfreeSkbEvent, ifindex) == 28);
const _: () = assert!(offset_of!(KfreeSkbEvent, netns_ino) == 32);
const _: () = assert!(offset_of!(KfreeSkbEvent, orig_len) == 36);
const _: () = assert!(offset_of!(KfreeSkbEvent, cap_len) == 40);
const _: () = assert!(offset_of!(KfreeSkbEvent, protocol) == 42);
const _: () = assert!(offset_of!(KfreeSkbEvent, flags) == 44);
const _: () = assert!(size_of::<ProbeConfig>() == 84);
const _: () = assert!(offset_of!(ProbeConfig, off_skb_head) == 16);
const _: () = assert!(offset_of!(ProbeConfig, off_net_inum) == 68);
const _: () = assert!(offset_of!(ProbeConfig, ring_blocks) == 72);
const _: () = assert!(offset_of!(ProbeConfig, skb_copy_off) == 76);
const _: () = assert!(offset_of!(ProbeConfig, skb_copy_len) == 80);
const _: () = assert!(size_of::<ReasonCounter>() == 16);
const _: () = assert!(size_of::<FrameHeader>() == 8);
const _: () = assert!(size_of::<RingPos>() == 192);
const _: () = assert!(offset_of!(RingPos, cons) == 64);
const _: () = assert!(offset_of!(RingPos, limit) == 128);
const _: () = assert!(MAX_FRAME.is_multiple_of(8) && RING_ELEM.is_multiple_of(8));

/// One struct's layout: (name, size, [(field, offset)]).
pub type Layout = (&'static str, usize, &'static [(&'static str, usize)]);

/// Layout facts user space checks against the BTF of the built object.
pub const LAYOUTS: &[Layout] = &[
    (
        "RecordHeader",
        size_of::<RecordHeader>(),
        &[
            ("version", offset_of!(RecordHeader, version)),
            ("kind", offset_of!(RecordHeader, kind)),
            ("hdr_len", offset_of!(RecordHeader, hdr_len)),
            ("cpu", offset_of!(RecordHeader, cpu)),
            ("ts_ns", offset_of!(RecordHeader, ts_ns)),
        ],
    ),
    (
        "KfreeSkbEvent",
        size_of::<KfreeSkbEvent>(),
        &[
            ("hdr", offset_of!(KfreeSkbEvent, hdr)),
            ("location", offset_of!(KfreeSkbEvent, location)),
            ("reason", offset_of!(KfreeSkbEvent, reason)),
            ("ifindex", offset_of!(KfreeSkbEvent, ifindex)),
            ("netns_ino", offset_of!(KfreeSkbEvent, netns_ino)),
            ("orig_len", offset_of!(KfreeSkbEvent, orig_len)),
            ("cap_len", offset_of!(KfreeSkbEvent, cap_len)),
            ("protocol", offset_of!(KfreeSkbEvent, protocol)),
            ("flags", offset_of!(KfreeSkbEvent, flags)),
        ],
    ),
    (
        "ProbeConfig",
        size_of::<ProbeConfig>(),
        &[
            ("snaplen", offset_of!(ProbeConfig, snaplen)),
            ("tp_off_skbaddr", offset_of!(ProbeConfig, tp_off_skbaddr)),
            ("off_skb_head", offset_of!(ProbeConfig, off_skb_head)),
            ("off_dev_ifindex", offset_of!(ProbeConfig, off_dev_ifindex)),
            ("off_net_inum", offset_of!(ProbeConfig, off_net_inum)),
            ("ring_blocks", offset_of!(ProbeConfig, ring_blocks)),
            ("skb_copy_off", offset_of!(ProbeConfig, skb_copy_off)),
            ("skb_copy_len", offset_of!(ProbeConfig, skb_copy_len)),
        ],
    ),
    (
        "FrameHeader",
        size_of::<FrameHeader>(),
        &[
            ("len", offset_of!(FrameHeader, len)),
            ("_reserved", offset_of!(FrameHeader, _reserved)),
        ],
    ),
    (
        "RingPos",
        size_of::<RingPos>(),
        &[
            ("prod", offset_of!(RingPos, prod)),
            ("cons", offset_of!(RingPos, cons)),
            ("limit", offset_of!(RingPos, limit)),
        ],
    ),
    (
        "ReasonCounter",
        size_of::<ReasonCounter>(),
        &[
            ("seen", offset_of!(ReasonCounter, seen)),
            ("ring_full", offset_of!(ReasonCounter, ring_full)),
        ],
    ),
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these types are repr(C), contain only integers and byte arrays, and have
    // no implicit padding (asserted above), so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::RecordHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KfreeSkbEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReasonCounter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FrameHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RingPos {}
}
