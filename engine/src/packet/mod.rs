//! Packet header decoding: a captured snapshot -> [`PacketSummary`] with its [`FlowKey`].
//!
//! Input is untrusted and usually truncated at a snap length. This module never indexes,
//! unwraps or panics: it decodes as far as the bytes go and records where and why it stopped.
//! The decoder is [`summarize`]; this file holds the types it fills and their text forms.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod format;
mod summarize;

pub use summarize::{summarize, summarize_into};

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
    /// A non-first IP fragment: it carries no transport header, so the flow has no ports.
    Fragment,
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

/// IP protocol numbers the decoder and the text forms know.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// Ethertypes the decoder knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag still sent by some switches.
    pub const QINQ_OLD: u16 = 0x9100;
    /// Transparent Ethernet bridging (Geneve's protocol type for an inner Ethernet frame).
    pub const TEB: u16 = 0x6558;
}

impl FlowKey {
    /// An IPv4 flow.
    pub fn v4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            family: FAMILY_V4,
            proto,
            vlan: 0,
            src: v4_bytes(src.octets()),
            dst: v4_bytes(dst.octets()),
            sport,
            dport,
        }
    }

    /// An IPv6 flow.
    pub fn v6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            family: FAMILY_V6,
            proto,
            vlan: 0,
            src: src.octets(),
            dst: dst.octets(),
            sport,
            dport,
        }
    }

    /// The same flow tagged with an outer VLAN id.
    pub fn with_vlan(self, vlan: u16) -> FlowKey {
        FlowKey { vlan, ..self }
    }

    /// Source address, `None` when the packet had no (complete) IP header.
    pub fn src_ip(&self) -> Option<IpAddr> {
        ip_of(self.family, &self.src)
    }

    /// Destination address, `None` when the packet had no (complete) IP header.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        ip_of(self.family, &self.dst)
    }

    /// The flow seen from the other end (source and destination swapped).
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }
}

fn v4_bytes([a, b, c, d]: [u8; 4]) -> [u8; 16] {
    [a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

fn ip_of(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    }
}

/// Lower-case name of an IP protocol (`tcp`, `udp`, `icmpv6` ...), `None` if unnamed.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        ipproto::ICMP => "icmp",
        ipproto::IGMP => "igmp",
        ipproto::TCP => "tcp",
        ipproto::UDP => "udp",
        ipproto::GRE => "gre",
        ipproto::ESP => "esp",
        ipproto::AH => "ah",
        ipproto::ICMPV6 => "icmpv6",
        ipproto::SCTP => "sctp",
        _ => return None,
    })
}

struct Endpoint {
    ip: Option<IpAddr>,
    port: u16,
    ports: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.ports) {
            (Some(IpAddr::V6(a)), true) => write!(f, "[{a}]:{}", self.port),
            (Some(a), true) => write!(f, "{a}:{}", self.port),
            (Some(a), false) => write!(f, "{a}"),
            (None, _) => f.write_str("?"),
        }
    }
}

/// `10.0.0.1:5000 -> 10.0.0.2:9 udp`, `[fd00::1]:5000 -> [fd00::2]:80 tcp`,
/// `1.2.3.4 -> 5.6.7.8 icmp`, with ` vlan N` appended when tagged. Ports are shown when
/// either is non-zero. A key without an IP header prints as `-` (plus its VLAN).
impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.family == FAMILY_NONE {
            f.write_str("-")?;
        } else {
            let ports = self.sport != 0 || self.dport != 0;
            let src = Endpoint {
                ip: self.src_ip(),
                port: self.sport,
                ports,
            };
            let dst = Endpoint {
                ip: self.dst_ip(),
                port: self.dport,
                ports,
            };
            write!(f, "{src} -> {dst}")?;
            match proto_name(self.proto) {
                Some(name) => write!(f, " {name}")?,
                None => write!(f, " proto {}", self.proto)?,
            }
        }
        if self.vlan != 0 {
            write!(f, " vlan {}", self.vlan)?;
        }
        Ok(())
    }
}

impl fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
        })
    }
}

/// `1.1.1.1:8472 -> 2.2.2.2:9999 udp vxlan vni 2`
impl fmt::Display for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} vni {}", self.outer, self.kind, self.vni)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
            Layer::Tunnel => "tunnel",
        })
    }
}

/// `truncated in ipv4`, `malformed tunnel`, `unsupported protocol`, `non-first fragment`.
impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Truncated(l) => write!(f, "truncated in {l}"),
            Stop::Malformed(l) => write!(f, "malformed {l}"),
            Stop::Unsupported => f.write_str("unsupported protocol"),
            Stop::Fragment => f.write_str("non-first fragment"),
        }
    }
}

/// Names of the TCP flags set in `flags`, in wire order, e.g. `SYN, ACK`.
pub struct TcpFlags(pub u8);

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One line, in the spirit of Cilium's connection summary:
/// `1.2.3.4:80 -> 5.6.7.8:443 tcp SYN [tunnel 1.1.1.1:8472 -> 2.2.2.2:9999 udp vxlan vni 2]`,
/// `1.2.3.4 -> 5.6.7.8 icmp 3/1`, followed by `(truncated in tcp)` when decoding stopped.
impl fmt::Display for PacketSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flow.family == FAMILY_NONE && self.flow.vlan == 0 && self.ethertype != 0 {
            write!(f, "ethertype 0x{:04x}", self.ethertype)?;
        } else {
            write!(f, "{}", self.flow)?;
        }
        if self.tcp_flags != 0 {
            write!(f, " {}", TcpFlags(self.tcp_flags))?;
        }
        if let Some((t, c)) = self.icmp {
            write!(f, " {t}/{c}")?;
        }
        if let Some(t) = &self.tunnel {
            write!(f, " [tunnel {t}]")?;
        }
        if let Some(stop) = self.stop {
            write!(f, " ({stop})")?;
        }
        Ok(())
    }
}
