//! Packet headers in words: a flow (`10.0.0.1:5000 -> 10.0.0.2:9 udp`), TCP flags, ICMP
//! type and code, the tunnel around a packet; and the same as JSON members.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{FlowKey, PacketSummary, TunnelKind, FAMILY_V4, FAMILY_V6};

pub fn ip_of(family: u8, a: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*a))),
        _ => None,
    }
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        47 => "gre",
        50 => "esp",
        58 => "icmp6",
        132 => "sctp",
        _ => "ip",
    }
}

/// `10.0.0.1:5000 -> 10.0.0.2:9 udp` / `[fd00::1]:5000 -> [fd00::2]:9 udp` / `a -> b icmp`.
pub fn write_flow(out: &mut String, f: &FlowKey) {
    let (Some(src), Some(dst)) = (ip_of(f.family, &f.src), ip_of(f.family, &f.dst)) else {
        out.push_str("[no ip]");
        return;
    };
    let has_ports = matches!(f.proto, 6 | 17 | 132);
    for (i, (ip, port)) in [(src, f.sport), (dst, f.dport)].into_iter().enumerate() {
        if i == 1 {
            out.push_str(" -> ");
        }
        match (ip, has_ports) {
            (IpAddr::V6(v6), true) => {
                let _ = write!(out, "[{v6}]:{port}");
            }
            (ip, true) => {
                let _ = write!(out, "{ip}:{port}");
            }
            (ip, false) => {
                let _ = write!(out, "{ip}");
            }
        }
    }
    let _ = write!(out, " {}", proto_name(f.proto));
    if f.vlan != 0 {
        let _ = write!(out, " vlan {}", f.vlan);
    }
}

pub fn write_tcp_flags(out: &mut String, flags: u8) {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    let mut first = true;
    for (i, n) in NAMES.iter().enumerate() {
        if flags & (1 << i) != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(n);
            first = false;
        }
    }
}

pub fn write_summary(out: &mut String, s: &PacketSummary) {
    write_flow(out, &s.flow);
    if s.flow.proto == 6 {
        out.push(' ');
        write_tcp_flags(out, s.tcp_flags);
    }
    if let Some((t, c)) = s.icmp {
        let _ = write!(out, " type {t} code {c}");
    }
    if let Some(t) = &s.tunnel {
        out.push_str(" [tunnel ");
        write_flow(out, &t.outer);
        let _ = write!(
            out,
            " {} vni {}]",
            match t.kind {
                TunnelKind::Vxlan => "vxlan",
                TunnelKind::Geneve => "geneve",
            },
            t.vni
        );
    }
}

/// A scalar JSON member value, for writers that serialize without building a
/// `serde_json::Value` (and for those that do: `Value::from`).
#[derive(Clone, Debug, PartialEq)]
pub enum JsonScalar {
    U(u64),
    S(String),
    Str(&'static str),
    Null,
}

impl serde::Serialize for JsonScalar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonScalar::U(n) => s.serialize_u64(*n),
            JsonScalar::S(v) => s.serialize_str(v),
            JsonScalar::Str(v) => s.serialize_str(v),
            JsonScalar::Null => s.serialize_unit(),
        }
    }
}

impl From<JsonScalar> for serde_json::Value {
    fn from(v: JsonScalar) -> Self {
        match v {
            JsonScalar::U(n) => n.into(),
            JsonScalar::S(v) => v.into(),
            JsonScalar::Str(v) => v.into(),
            JsonScalar::Null => serde_json::Value::Null,
        }
    }
}

/// The members [`flow_json`] adds, in no particular order.
pub fn flow_members(out: &mut Vec<(&'static str, JsonScalar)>, f: &FlowKey) {
    out.push((
        "family",
        JsonScalar::Str(match f.family {
            FAMILY_V4 => "ipv4",
            FAMILY_V6 => "ipv6",
            _ => "none",
        }),
    ));
    if let (Some(a), Some(b)) = (ip_of(f.family, &f.src), ip_of(f.family, &f.dst)) {
        out.push(("src", JsonScalar::S(a.to_string())));
        out.push(("dst", JsonScalar::S(b.to_string())));
    }
    out.push(("proto", JsonScalar::U(f.proto.into())));
    out.push(("proto_name", JsonScalar::Str(proto_name(f.proto))));
    out.push(("sport", JsonScalar::U(f.sport.into())));
    out.push(("dport", JsonScalar::U(f.dport.into())));
    if f.vlan != 0 {
        out.push(("vlan", JsonScalar::U(f.vlan.into())));
    }
}

pub fn flow_json(m: &mut serde_json::Map<String, serde_json::Value>, f: &FlowKey) {
    let mut members = Vec::with_capacity(8);
    flow_members(&mut members, f);
    for (k, v) in members {
        m.insert(k.into(), v.into());
    }
}

pub fn summary_json(m: &mut serde_json::Map<String, serde_json::Value>, s: &PacketSummary) {
    flow_json(m, &s.flow);
    if s.flow.proto == 6 {
        let mut f = String::new();
        write_tcp_flags(&mut f, s.tcp_flags);
        m.insert("tcp_flags".into(), f.into());
    }
    if let Some((t, c)) = s.icmp {
        m.insert("icmp_type".into(), t.into());
        m.insert("icmp_code".into(), c.into());
    }
    if let Some(t) = &s.tunnel {
        let mut o = serde_json::Map::new();
        o.insert(
            "kind".into(),
            match t.kind {
                TunnelKind::Vxlan => "vxlan",
                TunnelKind::Geneve => "geneve",
            }
            .into(),
        );
        o.insert("vni".into(), t.vni.into());
        flow_json(&mut o, &t.outer);
        m.insert("tunnel".into(), o.into());
    }
    if let Some(stop) = &s.stop {
        m.insert("decode_stop".into(), format!("{stop:?}").into());
    }
}
