//! Packet header decoding: a captured snapshot -> [`PacketSummary`] with its [`FlowKey`].
//!
//! Input is untrusted and usually truncated at a snap length. This module never indexes,
//! unwraps or panics: it decodes as far as the bytes go and records where and why it stopped.

use crate::event::LinkType;

/// Address family of a [`FlowKey`].
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// The 5-tuple (plus VLAN) a packet belongs to. IPv4 addresses use the first 4 bytes.
/// Fields the packet did not reach are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub family: u8,
    pub proto: u8,
    pub vlan: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
}

/// The outer headers of an encapsulated packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub vni: u32,
    pub outer: FlowKey,
}

/// Which tunnels to look into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TunnelHint {
    /// Decode VXLAN on UDP 4789/8472 and Geneve on UDP 6081.
    #[default]
    ByPort,
    /// The producer says this is VXLAN (Cilium's CLS_FLAG_VXLAN): decode the outer UDP
    /// payload as VXLAN whatever the port.
    Vxlan,
    /// Likewise for Geneve.
    Geneve,
    /// Never decapsulate.
    None,
}

/// Where decoding stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stop {
    /// The bytes ran out inside the named layer.
    Truncated(Layer),
    /// The named layer's header was malformed (bad version, bad length ...).
    Malformed(Layer),
    /// The ethertype / IP protocol is one this decoder does not look into.
    Unsupported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Ethernet,
    Vlan,
    Ipv4,
    Ipv6,
    Tcp,
    Udp,
    Icmp,
    Tunnel,
}

/// What the decoder found in one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketSummary {
    /// The flow of the innermost packet decoded (the inner one for tunnels).
    pub flow: FlowKey,
    pub tunnel: Option<Tunnel>,
    /// Ethertype of the (inner) L3 header, 0 if none.
    pub ethertype: u16,
    /// TCP flags byte (FIN=0x01 ... CWR=0x80), 0 if not TCP.
    pub tcp_flags: u8,
    /// ICMP / ICMPv6 (type, code).
    pub icmp: Option<(u8, u8)>,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    /// Set when decoding stopped before the transport header.
    pub stop: Option<Stop>,
}
