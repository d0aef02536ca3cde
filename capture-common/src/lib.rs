//! The event ABI shared by dropscope's eBPF programs (capture-ebpf) and user space (engine).
//!
//! Rules (see docs/engineering.md): fields are fixed-width integers and byte arrays only,
//! padding is explicit, every size and offset is asserted at compile time, and a test in
//! engine compares these layouts with the BTF of the built eBPF object. User space never
//! trusts a length in a record: it reads `min(cap_len, bytes present)`.
//!
//! Must never: depend on std, contain pointers, `bool`, enums or `usize`.
#![no_std]

use core::mem::{offset_of, size_of};

/// Version of the record layout below; bumped on any change.
pub const ABI_VERSION: u8 = 5;

/// `RecordHeader::kind` of a [`KfreeSkbEvent`]: a packet freed through `skb:kfree_skb`.
pub const KIND_KFREE_SKB: u8 = 1;
/// `RecordHeader::kind` of a [`PacketEvent`]: an ordinary packet seen by the tc programs
/// (`--packets`), not a drop.
pub const KIND_PACKET: u8 = 2;

/// `PacketEvent::direction`: received on the interface (tc ingress). The values are the
/// pcapng `epb_flags` direction bits (01 inbound, 10 outbound).
pub const DIR_INBOUND: u8 = 1;
/// `PacketEvent::direction`: sent on the interface (tc egress).
pub const DIR_OUTBOUND: u8 = 2;

/// Largest snap length the kernel program copies (bytes of packet after the fixed body).
pub const MAX_KERNEL_SNAPLEN: u32 = 2048;
/// Snap length used when the user does not choose one.
pub const DEFAULT_SNAPLEN: u32 = 256;

/// `KfreeSkbEvent::flags`: the packet bytes start at the network header (no MAC header).
pub const FLAG_L3: u8 = 1 << 0;
/// `KfreeSkbEvent::flags`: the packet bytes could not be read (cap_len is 0).
pub const FLAG_READ_FAILED: u8 = 1 << 1;
/// `KfreeSkbEvent::flags`: the capture was cut at the end of the linear data, before snaplen.
pub const FLAG_LINEAR_END: u8 = 1 << 2;
/// `KfreeSkbEvent::flags`: this drop is counted in the kernel flow table; user space must
/// not count it again. Without it (every drop copied, and the copy holds the network header
/// bytes the key needs from `net_off` on), user space counts the drop from the record with
/// the same key the kernel would have used (`engine::storm::key_of_record`), and the kernel
/// skips its table: a copied drop costs no table work in the kernel.
pub const FLAG_COUNTED: u8 = 1 << 3;

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
/// Drops turned away because the program was already running on that CPU (a nested run:
/// possible on kernels before 6.1, which lack the raw tracepoint recursion guard). They are
/// not counted per reason: the nested run must not touch the outer run's counters.
pub const STAT_NESTED: u32 = 3;
/// Packets the tc programs could not count per interface (`PKT_COUNTS` full): counted here
/// only.
pub const STAT_PKT_MAP_FULL: u32 = 4;
/// Number of entries of `STATS`.
pub const STAT_COUNT: u32 = 5;

/// `ProbeConfig::exemplars` meaning "no budget: copy every drop" (the default capture).
pub const EXEMPLARS_ALL: u32 = u32::MAX;

/// The kernel flow table ([`KFlowKey`] -> [`KFlowValue`]) has two generations, `FLOWS_0` and
/// `FLOWS_1` (with their exemplar budgets `BUDGET_0`/`BUDGET_1`): the program counts into the
/// one `FLOW_GEN[0] & 1` names; user space switches to the other, waits until no program
/// can still be using the old one (an RCU grace period), then drains it. Nothing is lost and
/// the drained counts are final.
pub const MAP_FLOWS_0: &str = "FLOWS_0";
pub const MAP_FLOWS_1: &str = "FLOWS_1";
pub const MAP_BUDGET_0: &str = "BUDGET_0";
pub const MAP_BUDGET_1: &str = "BUDGET_1";
pub const MAP_FLOW_GEN: &str = "FLOW_GEN";
/// Reasons the `--reason`/`--not-reason` selectors name.
pub const MAP_REASON_SELECT: &str = "REASON_SELECT";
/// In front of each generation's hash, a per-CPU cache of [`CACHE_SLOTS`] [`CacheSlot`]s
/// (two-way, by a hash of the key): a hit counts with plain adds and no helper call; a new
/// key takes a slot and spills the slot's old entry into the hash. A slot belongs to the
/// table epoch in its value (`KFlowValue::epoch`); slots of other epochs are empty.
pub const MAP_CACHE_0: &str = "CACHE_0";
pub const MAP_CACHE_1: &str = "CACHE_1";
/// Slots of each CPU's cache per generation (a power of two).
pub const CACHE_SLOTS: u32 = 256;

/// `KFlowKey::family` values.
pub const KFAMILY_NONE: u8 = 0;
pub const KFAMILY_V4: u8 = 4;
pub const KFAMILY_V6: u8 = 6;
/// Network-header bytes the program reads to key a drop (IPv4 with options: 60 + 4 port
/// bytes; IPv6: 40 + 4).
pub const KEY_HDR_BYTES: u32 = 64;

/// Reasons below this bound (every core `enum skb_drop_reason` value: 128 on Linux 6.18) are
/// counted in the per-CPU array `REASON_ARRAY`, indexed by reason: no hashing per drop.
pub const REASON_ARRAY_ENTRIES: u32 = 512;
/// Maximum number of distinct other reasons (subsystem reasons, upper 16 bits set) that
/// the per-CPU hash `REASON_COUNTS` tracks.
pub const REASON_MAP_ENTRIES: u32 = 1024;

/// Name of the eBPF programs and maps, shared so user space and kernel agree.
pub const PROG_TP_BTF: &str = "kfree_skb_btf";
pub const PROG_TRACEPOINT: &str = "kfree_skb_tp";
/// The `--packets` classifiers: every packet on an interface, received and sent.
pub const PROG_PKT_INGRESS: &str = "pkt_ingress";
pub const PROG_PKT_EGRESS: &str = "pkt_egress";
/// Packets seen by the tc programs, per [`PktKey`] (per CPU); user space puts in a key for
/// every interface and direction it attaches to, the program adds others it meets.
pub const MAP_PKT_COUNTS: &str = "PKT_COUNTS";
/// Entries of `PKT_COUNTS`.
pub const PKT_COUNTS_ENTRIES: u32 = 1024;
/// Interfaces whose drops `-i` selects with `--packets` (`PktKey` with `direction` 0 -> 1),
/// when `ProbeConfig::sel_ifindex` is [`SEL_IFINDEX_SET`].
pub const MAP_IFACE_SELECT: &str = "IFACE_SELECT";
pub const IFACE_SELECT_ENTRIES: u32 = 256;
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
    pub _pad: u8,
    /// Offset of the network header in the packet bytes (meaningful without
    /// `FLAG_COUNTED`).
    pub net_off: u16,
}

/// One ordinary packet seen at tc (`--packets`); `cap_len` packet bytes follow it, from
/// the MAC header (the network header on L3 devices: `FLAG_L3`). Never longer than a
/// [`KfreeSkbEvent`], so a ring's largest frame stays [`MAX_FRAME`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketEvent {
    pub hdr: RecordHeader,
    /// The interface the program is attached to (`skb->dev->ifindex`).
    pub ifindex: u32,
    /// Inode of that interface's network namespace, 0 if unknown.
    pub netns_ino: u32,
    /// Length of the packet from its first captured byte.
    pub orig_len: u32,
    /// Packet bytes that follow this struct.
    pub cap_len: u16,
    /// `skb->protocol` as stored (network byte order).
    pub protocol: u16,
    /// [`DIR_INBOUND`] or [`DIR_OUTBOUND`].
    pub direction: u8,
    /// `FLAG_L3`, `FLAG_READ_FAILED`.
    pub flags: u8,
    pub _pad: u16,
    /// `skb->mark`.
    pub mark: u32,
}

/// A key of `PKT_COUNTS` (and, with `direction` 0, of `IFACE_SELECT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PktKey {
    pub ifindex: u32,
    pub netns_ino: u32,
    /// [`DIR_INBOUND`] or [`DIR_OUTBOUND`] (0 in `IFACE_SELECT`).
    pub direction: u32,
}

/// What the tc programs did with the packets of one [`PktKey`] (per CPU):
/// `seen == filtered + ring_full + busy + delivered`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PktCounter {
    pub seen: u64,
    /// Turned away by the selectors (`--netns`, pods) or the filter expression.
    pub filtered: u64,
    /// No room in this CPU's ring.
    pub ring_full: u64,
    /// This CPU's ring was being written by a program this one interrupted (a kfree_skb
    /// run in task context): not copied, so the ring keeps one writer.
    pub busy: u64,
}

/// Load-time configuration, written into the program's `.rodata` by user space.
///
/// All `off_*` fields are byte offsets read from the running kernel's BTF; a value of
/// [`OFF_ABSENT`] means the field does not exist on this kernel and the program skips it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Bytes of packet to copy, at most [`MAX_KERNEL_SNAPLEN`].
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
    /// Packets copied per flow x reason key per table generation (about one second):
    /// [`EXEMPLARS_ALL`] copies every drop; 0 copies none (counts only).
    pub exemplars: u32,
    /// Automatic storm switch: 0 off; else a CPU whose ring holds more than `storm_on_bytes`
    /// switches to a budget of `storm_exemplars` until its ring is below `storm_off_bytes`.
    pub storm_on_bytes: u32,
    pub storm_off_bytes: u32,
    pub storm_exemplars: u32,
    /// Non-zero: the program turns away a run nested in another on the same CPU (kernels
    /// before 6.1, whose raw tracepoints lack that guard; see `STAT_NESTED`).
    pub nest_guard: u32,
    /// Selectors, checked before anything is copied or counted per flow; a drop they turn
    /// away is counted per reason as `filtered`. 0 selects every drop.
    /// Only drops on this interface (ifindex).
    pub sel_ifindex: u32,
    /// Only drops in this network namespace (inode of `/proc/PID/ns/net`).
    pub sel_netns: u32,
    /// [`SEL_REASONS_NONE`], [`SEL_REASONS_ONLY`] (only reasons in `REASON_SELECT`) or
    /// [`SEL_REASONS_EXCEPT`] (every reason but those).
    pub sel_reasons: u32,
    /// Non-zero: the filter stub holds a translated pcap-filter expression, run on the
    /// packet's bytes before a copy is published (or, counting in the table, before that).
    pub filter: u32,
    /// Non-zero: only drops of the pods in `POD_SELECT` (`--pod`, `--namespace`, `--label`):
    /// in one of their network namespaces, on one of their host-side interfaces, or from
    /// or to one of their addresses. A packet whose addresses cannot be read, or whose pod
    /// address would be inside a tunnel, is taken (user space decides it).
    pub sel_pods: u32,
    /// Non-zero: the `tp_btf` program reads the packet's header bytes with plain loads
    /// through `skb->head` (kernels whose verifier types a BTF pointer to a primitive type,
    /// such as `head`, as read-only untrusted memory: Linux 6.17 on, told by
    /// `BPF_FEAT_RDONLY_CAST_TO_VOID` in its BTF); else with `bpf_probe_read_kernel`.
    pub direct_packet: u32,
}

/// `ProbeConfig::sel_ifindex` meaning "only drops on the interfaces in `IFACE_SELECT`"
/// (`capture --packets -i ...`): the set is looked up only when a selection is on, so
/// the drop path of a capture without one runs no extra instruction.
pub const SEL_IFINDEX_SET: u32 = u32::MAX;

/// `ProbeConfig::sel_reasons`: no reason selection.
pub const SEL_REASONS_NONE: u32 = 0;
/// `ProbeConfig::sel_reasons`: only the reasons in `REASON_SELECT`.
pub const SEL_REASONS_ONLY: u32 = 1;
/// `ProbeConfig::sel_reasons`: every reason except those in `REASON_SELECT`.
pub const SEL_REASONS_EXCEPT: u32 = 2;
/// Entries of the `REASON_SELECT` hash (reason -> 1).
pub const REASON_SELECT_ENTRIES: u32 = 256;
/// The selected pods (`ProbeConfig::sel_pods`): [`PodKey`] -> 1.
pub const MAP_POD_SELECT: &str = "POD_SELECT";
/// Entries of `POD_SELECT`: a pod takes one per namespace, two per host-side interface and
/// one per address (about 5), so some 3000 selected pods.
pub const POD_SELECT_ENTRIES: u32 = 16384;
/// `PodKey::kind`: a network namespace (`a[0]`: its inode).
pub const POD_KEY_NETNS: u32 = 1;
/// `PodKey::kind`: an interface (`a[0]`: ifindex, `a[1]`: the inode of its namespace, or 0
/// for a drop whose namespace was not known).
pub const POD_KEY_DEV: u32 = 2;
/// `PodKey::kind`: an IPv4 address (`a[0]`: its 4 bytes as they are in the packet).
pub const POD_KEY_V4: u32 = 4;
/// `PodKey::kind`: an IPv6 address (`a`: its 16 bytes as they are in the packet).
pub const POD_KEY_V6: u32 = 6;

/// A key of `POD_SELECT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub kind: u32,
    pub a: [u32; 4],
}
/// Byte offset of the packet's wire length in the filter stub's scratch area, after the 16
/// words of classic BPF memory; the area is `FILTER_MEM_LEN` bytes.
pub const FILTER_WIRELEN_OFF: u32 = 64;
pub const FILTER_MEM_LEN: u32 = 72;
/// Instructions reserved in the kernel program's filter stub (`filter_stub`): a marker and
/// `FILTER_RESERVE - 1` no-ops, overwritten by the loader with the translated expression.
pub const FILTER_RESERVE: u32 = 2048;
/// The marker instruction's immediate (`call 0xdeadbeef`, an invalid helper the verifier
/// refuses: the stub must be patched before load).
pub const FILTER_MARKER_IMM: u32 = 0xdead_beef;

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
/// Largest frame: header, event and `MAX_KERNEL_SNAPLEN` packet bytes, 8-aligned.
pub const MAX_FRAME: u32 =
    (size_of::<FrameHeader>() as u32 + size_of::<KfreeSkbEvent>() as u32 + MAX_KERNEL_SNAPLEN + 7)
        & !7;
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
    /// Automatic storm switch state of this CPU, written by its program only: the time
    /// (`bpf_ktime_get_ns`) the current storm began, 0 when there is none; how many storms
    /// began; nanoseconds spent in storms that ended.
    pub storm_since: u64,
    pub storm_count: u64,
    pub storm_total_ns: u64,
    pub _pad0: [u64; 4],
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
        exemplars: EXEMPLARS_ALL,
        storm_on_bytes: 0,
        storm_off_bytes: 0,
        storm_exemplars: 0,
        nest_guard: 1,
        sel_ifindex: 0,
        sel_netns: 0,
        sel_reasons: SEL_REASONS_NONE,
        filter: 0,
        sel_pods: 0,
        direct_packet: 0,
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
    /// Of those, how many found no room in the kernel flow table (counted here only).
    pub table_full: u64,
    /// Of those, how many were not copied because their key's exemplar budget was spent
    /// (or the budget is 0): counted, never copied.
    pub not_copied: u64,
    /// Of those, how many the selectors or the filter expression turned away: counted here
    /// only (neither copied nor in the flow table).
    pub filtered: u64,
}

/// A key of the kernel flow table: one drop site of one flow on one CPU. Fields a packet
/// does not reach are 0. ICMP and ICMPv6 put the type in `sport` and the code in `dport`.
/// `cpu` keeps every entry written by one CPU only, so counters need no atomics; user space
/// adds the CPUs up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KFlowKey {
    pub reason: u32,
    pub ifindex: u32,
    pub netns_ino: u32,
    pub cpu: u32,
    pub location: u64,
    /// IPv4 addresses use the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// `skb->protocol` as stored (network byte order).
    pub protocol: u16,
    /// IP protocol number (IPv6: the first next-header), 0 without an IP header.
    pub l4proto: u8,
    /// `KFAMILY_*`.
    pub family: u8,
}

/// Counts of one [`KFlowKey`] in one table generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KFlowValue {
    pub packets: u64,
    /// Sum of original lengths (from where a capture would start).
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the first and last drop.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Records of this key written into the ring.
    pub copied: u64,
    /// Exemplar decisions this CPU made for the key in this generation (the local gate in
    /// front of the shared budget).
    pub budget_used: u32,
    /// The table epoch (`FLOW_GEN[0]`) a cache slot's counts belong to.
    pub epoch: u32,
}

/// One slot of the per-CPU flow cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheSlot {
    pub key: KFlowKey,
    pub val: KFlowValue,
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
const _: () = assert!(offset_of!(KfreeSkbEvent, net_off) == 46);
const _: () = assert!(size_of::<ProbeConfig>() == 128);
const _: () = assert!(size_of::<PacketEvent>() == 40);
const _: () = assert!(size_of::<PacketEvent>() <= size_of::<KfreeSkbEvent>());
const _: () = assert!(offset_of!(PacketEvent, ifindex) == 16);
const _: () = assert!(offset_of!(PacketEvent, orig_len) == 24);
const _: () = assert!(offset_of!(PacketEvent, cap_len) == 28);
const _: () = assert!(offset_of!(PacketEvent, direction) == 32);
const _: () = assert!(offset_of!(PacketEvent, flags) == 33);
const _: () = assert!(offset_of!(PacketEvent, mark) == 36);
const _: () = assert!(size_of::<PktKey>() == 12);
const _: () = assert!(size_of::<PktCounter>() == 32);
const _: () = assert!(offset_of!(ProbeConfig, exemplars) == 84);
const _: () = assert!(offset_of!(ProbeConfig, storm_exemplars) == 96);
const _: () = assert!(size_of::<KFlowKey>() == 64);
const _: () = assert!(size_of::<PodKey>() == 20);
const _: () = assert!(offset_of!(KFlowKey, location) == 16);
const _: () = assert!(offset_of!(KFlowKey, saddr) == 24);
const _: () = assert!(offset_of!(KFlowKey, daddr) == 40);
const _: () = assert!(offset_of!(KFlowKey, sport) == 56);
const _: () = assert!(offset_of!(KFlowKey, protocol) == 60);
const _: () = assert!(offset_of!(KFlowKey, l4proto) == 62);
const _: () = assert!(offset_of!(KFlowKey, family) == 63);
const _: () = assert!(size_of::<KFlowValue>() == 48);
const _: () = assert!(offset_of!(KFlowValue, copied) == 32);
const _: () = assert!(offset_of!(KFlowValue, budget_used) == 40);
const _: () = assert!(offset_of!(KFlowValue, epoch) == 44);
const _: () = assert!(size_of::<CacheSlot>() == 112);
const _: () = assert!(CACHE_SLOTS.is_power_of_two());
const _: () = assert!(offset_of!(ProbeConfig, off_skb_head) == 16);
const _: () = assert!(offset_of!(ProbeConfig, off_net_inum) == 68);
const _: () = assert!(offset_of!(ProbeConfig, ring_blocks) == 72);
const _: () = assert!(offset_of!(ProbeConfig, skb_copy_off) == 76);
const _: () = assert!(offset_of!(ProbeConfig, skb_copy_len) == 80);
const _: () = assert!(size_of::<ReasonCounter>() == 40);
const _: () = assert!(offset_of!(RingPos, storm_since) == 8);
const _: () = assert!(offset_of!(RingPos, storm_total_ns) == 24);
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
            ("net_off", offset_of!(KfreeSkbEvent, net_off)),
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
            ("exemplars", offset_of!(ProbeConfig, exemplars)),
            ("storm_on_bytes", offset_of!(ProbeConfig, storm_on_bytes)),
            ("storm_off_bytes", offset_of!(ProbeConfig, storm_off_bytes)),
            ("storm_exemplars", offset_of!(ProbeConfig, storm_exemplars)),
            ("nest_guard", offset_of!(ProbeConfig, nest_guard)),
            ("sel_ifindex", offset_of!(ProbeConfig, sel_ifindex)),
            ("sel_netns", offset_of!(ProbeConfig, sel_netns)),
            ("sel_reasons", offset_of!(ProbeConfig, sel_reasons)),
            ("filter", offset_of!(ProbeConfig, filter)),
            ("sel_pods", offset_of!(ProbeConfig, sel_pods)),
        ],
    ),
    (
        "PacketEvent",
        size_of::<PacketEvent>(),
        &[
            ("hdr", offset_of!(PacketEvent, hdr)),
            ("ifindex", offset_of!(PacketEvent, ifindex)),
            ("netns_ino", offset_of!(PacketEvent, netns_ino)),
            ("orig_len", offset_of!(PacketEvent, orig_len)),
            ("cap_len", offset_of!(PacketEvent, cap_len)),
            ("protocol", offset_of!(PacketEvent, protocol)),
            ("direction", offset_of!(PacketEvent, direction)),
            ("flags", offset_of!(PacketEvent, flags)),
            ("mark", offset_of!(PacketEvent, mark)),
        ],
    ),
    (
        "PktKey",
        size_of::<PktKey>(),
        &[
            ("ifindex", offset_of!(PktKey, ifindex)),
            ("netns_ino", offset_of!(PktKey, netns_ino)),
            ("direction", offset_of!(PktKey, direction)),
        ],
    ),
    (
        "PktCounter",
        size_of::<PktCounter>(),
        &[
            ("seen", offset_of!(PktCounter, seen)),
            ("filtered", offset_of!(PktCounter, filtered)),
            ("ring_full", offset_of!(PktCounter, ring_full)),
            ("busy", offset_of!(PktCounter, busy)),
        ],
    ),
    (
        "PodKey",
        size_of::<PodKey>(),
        &[
            ("kind", offset_of!(PodKey, kind)),
            ("a", offset_of!(PodKey, a)),
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
            ("storm_since", offset_of!(RingPos, storm_since)),
            ("storm_count", offset_of!(RingPos, storm_count)),
            ("storm_total_ns", offset_of!(RingPos, storm_total_ns)),
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
            ("table_full", offset_of!(ReasonCounter, table_full)),
            ("not_copied", offset_of!(ReasonCounter, not_copied)),
            ("filtered", offset_of!(ReasonCounter, filtered)),
        ],
    ),
    (
        "KFlowKey",
        size_of::<KFlowKey>(),
        &[
            ("reason", offset_of!(KFlowKey, reason)),
            ("ifindex", offset_of!(KFlowKey, ifindex)),
            ("netns_ino", offset_of!(KFlowKey, netns_ino)),
            ("cpu", offset_of!(KFlowKey, cpu)),
            ("location", offset_of!(KFlowKey, location)),
            ("saddr", offset_of!(KFlowKey, saddr)),
            ("daddr", offset_of!(KFlowKey, daddr)),
            ("sport", offset_of!(KFlowKey, sport)),
            ("dport", offset_of!(KFlowKey, dport)),
            ("protocol", offset_of!(KFlowKey, protocol)),
            ("l4proto", offset_of!(KFlowKey, l4proto)),
            ("family", offset_of!(KFlowKey, family)),
        ],
    ),
    (
        "KFlowValue",
        size_of::<KFlowValue>(),
        &[
            ("packets", offset_of!(KFlowValue, packets)),
            ("bytes", offset_of!(KFlowValue, bytes)),
            ("first_ns", offset_of!(KFlowValue, first_ns)),
            ("last_ns", offset_of!(KFlowValue, last_ns)),
            ("copied", offset_of!(KFlowValue, copied)),
            ("budget_used", offset_of!(KFlowValue, budget_used)),
            ("epoch", offset_of!(KFlowValue, epoch)),
        ],
    ),
    (
        "CacheSlot",
        size_of::<CacheSlot>(),
        &[
            ("key", offset_of!(CacheSlot, key)),
            ("val", offset_of!(CacheSlot, val)),
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
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KFlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KFlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CacheSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PodKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PacketEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PktKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PktCounter {}
}
