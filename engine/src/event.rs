//! The decoded event every source produces and every sink consumes.
//!
//! An event is small and owns its packet bytes through [`bytes::Bytes`], which sources cut
//! out of one shared buffer per batch: no allocation per event on the hot path.

use bytes::Bytes;
use std::sync::Arc;

/// What the first byte of [`Event::data`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// An Ethernet header (possibly followed by VLAN tags).
    Ethernet,
    /// An IPv4 or IPv6 header directly (L3 devices, skbs without a MAC header).
    RawIp,
}

/// Why this packet is here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Freed through `skb:kfree_skb`.
    Kernel {
        /// Raw `enum skb_drop_reason` value (subsystem in the upper 16 bits).
        reason: u32,
        /// Kernel address of the drop site.
        location: u64,
        /// `skb->protocol` in host order.
        protocol: u16,
    },
    /// A notification from Cilium's datapath (drop, trace, policy verdict, debug, ...).
    Cilium(crate::cilium::notify::Notification),
    /// Not a drop: an ordinary packet from a capture source or a pcap file.
    Captured,
    /// Not a drop: an ordinary packet the tc programs saw pass the interface
    /// (`capture --packets`), in one direction.
    Packet { dir: Direction },
}

/// Which way an ordinary packet crossed its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received (tc ingress).
    Inbound,
    /// Sent (tc egress).
    Outbound,
}

impl Direction {
    /// "in" or "out".
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }

    /// The pcapng `epb_flags` direction bits (01 inbound, 10 outbound).
    pub fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        }
    }
}

/// Why the packets of a row were dropped (or that they were merely captured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKey {
    /// Raw `enum skb_drop_reason` value.
    Kernel(u32),
    /// Cilium drop notification sub-type (its `DROP_*` code).
    Cilium(u8),
    /// A Cilium notification that is not a drop (trace, allowed policy verdict, debug, ...),
    /// keyed by its message type (byte 0).
    CiliumEvent(u8),
    /// Not a drop.
    Captured,
    /// Not a drop: packets the tc programs copied on one interface in one direction
    /// (`--packets`); the ledger keeps a row for each.
    Packet {
        ifindex: u32,
        netns: u32,
        dir: Direction,
    },
}

/// One packet event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Interface index (in the namespace `netns`), 0 if unknown.
    pub ifindex: u32,
    /// Network-namespace inode, 0 if unknown.
    pub netns: u32,
    /// CPU the event came from (u32::MAX if unknown).
    pub cpu: u32,
    /// Length of the whole packet; `data` may be shorter (snap length).
    pub orig_len: u32,
    pub link: LinkType,
    /// Captured bytes, starting at the header `link` names.
    pub data: Bytes,
    pub cause: Cause,
    /// What a text input said beyond the packet (`dropscope replay` of Hubble or monitor
    /// text); `None` for every live and capture-file event.
    pub meta: Option<std::sync::Arc<EventMeta>>,
}

/// What a text input said about an event beyond its packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// Pods, namespaces, labels and node, as Hubble names them.
    pub names: Option<InputNames>,
    /// `data` was built from the headers the input names (it had no packet bytes).
    pub synthesized: bool,
    /// Joined to its twin from the other source (kernel drop at tc ↔ Cilium notification).
    pub joined: Option<Joined>,
    /// The drop site as the capture named it (`sym+0xoff`, from a dropscope file's comment),
    /// for a replay on a machine whose kernel symbols are not that capture's.
    pub symbol: Option<std::sync::Arc<str>>,
}

impl EventMeta {
    /// The meta of an event whose input named pods, namespaces, labels or a node, and said
    /// nothing else: shared, as events hold it.
    pub fn with_names(names: InputNames) -> std::sync::Arc<EventMeta> {
        std::sync::Arc::new(EventMeta {
            names: Some(names),
            ..EventMeta::default()
        })
    }
}

/// Names the input gives (Hubble): pods, namespaces, labels, node. Shared strings: a log
/// names the same few pods in flow after flow, and its reader makes each name once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputNames {
    pub src_pod: Option<Arc<str>>,
    pub src_namespace: Option<Arc<str>>,
    /// The endpoint's labels, `None` when the input gives none.
    pub src_labels: Option<Arc<[String]>>,
    pub dst_pod: Option<Arc<str>>,
    pub dst_namespace: Option<Arc<str>>,
    pub dst_labels: Option<Arc<[String]>>,
    pub node: Option<Arc<str>>,
}

/// How an event was joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Joined {
    /// A kernel drop, with the Cilium notification of the same packet.
    Cilium(crate::cilium::notify::DropNotify),
    /// A Cilium notification whose packet is a kernel drop's (written and printed there).
    IntoKernel,
}

/// Something a source reports that is not a packet (Cilium's lost-record and agent
/// notices), to be printed in order with the events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The agent's perf ring for `cpu` lost `count` records.
    Lost { cpu: i64, count: u64 },
    /// An agent notification (`kind` per Cilium's AgentNotification, `text` its JSON).
    Agent { kind: u32, text: String },
    /// An L7 proxy access-log record.
    L7 { cpu: i64 },
    /// A payload of an unknown type.
    Unknown { typ: i64, cpu: i64 },
}

/// A group of events moved between pipeline stages together.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// Notices, each with the index of the event it came before (`events.len()` = after all).
    pub notices: Vec<(usize, Notice)>,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            events: Vec::with_capacity(n),
            notices: Vec::new(),
        }
    }
}
