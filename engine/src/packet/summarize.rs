//! The header decoder: packet bytes -> [`PacketSummary`], hand-written for line rate.
//!
//! It must never panic, index past the end, or allocate: every read goes through
//! `split_first_chunk` / `get`, and constant indices are only used on fixed-size arrays
//! that those calls returned. It decodes as far as the bytes go and records the first
//! reason it could not go further in [`PacketSummary::stop`].
//!
//! Which fields are filled, and when:
//! - Ethernet (MACs, ethertype), each VLAN tag and the fixed IPv4/IPv6 header are taken only
//!   when the whole header is present, so a cut header leaves its fields zero.
//! - Transport fields are taken field by field: ports once the first 4 bytes are there, TCP
//!   flags once 14 are, ICMP type and code once 2 are. A header shorter than its fixed part
//!   (TCP 20, UDP 8, ICMP 4) still sets `stop` to `Truncated(..)`.
//! - `proto` of an IPv6 packet is the upper-layer protocol after the extension headers;
//!   it stays 0 when the chain is cut before its end.
//! - A tunnel is decapsulated once (never nested): when its header is complete, every field
//!   describes the inner packet and [`PacketSummary::tunnel`] holds the outer flow.
//!
//! Why hand-written: an etherparse `LaxSlicedPacket` decoder producing the same summary
//! (group `baseline::etherparse` in benches/benches/decode.rs) measured about 6x slower.

use super::{
    ethertype, ipproto, Layer, PacketSummary, Stop, Tunnel, TunnelHint, TunnelKind, FAMILY_V4,
    FAMILY_V6,
};
use crate::event::LinkType;

/// UDP destination ports that mean VXLAN with [`TunnelHint::ByPort`]: IANA's 4789 and the
/// Linux kernel's historic default 8472 (still Cilium's default).
const VXLAN_PORTS: [u16; 2] = [4789, 8472];
const GENEVE_PORT: u16 = 6081;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;

type Step = Result<(), Stop>;

/// Decodes the headers of one packet. `data` starts at the header `link` names and may be
/// cut anywhere; `hint` says which tunnels to look into.
#[inline]
pub fn summarize(data: &[u8], link: LinkType, hint: TunnelHint) -> PacketSummary {
    let mut s = PacketSummary::default();
    summarize_into(data, link, hint, &mut s);
    s
}

/// [`summarize`] into a summary the caller owns (overwritten whole): the decode stage fills
/// its batch's summaries in place, which saves copying each one out of a return value.
pub fn summarize_into(data: &[u8], link: LinkType, hint: TunnelHint, out: &mut PacketSummary) {
    *out = PacketSummary::default();
    let step = match link {
        LinkType::Ethernet => ethernet(data, out, hint),
        LinkType::RawIp => raw_ip(data, out, hint),
    };
    if let Err(stop) = step {
        out.stop = Some(stop);
    }
}

#[inline(always)]
fn take<const N: usize>(d: &[u8], layer: Layer) -> Result<(&[u8; N], &[u8]), Stop> {
    d.split_first_chunk::<N>().ok_or(Stop::Truncated(layer))
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

#[inline(always)]
fn ethernet(d: &[u8], s: &mut PacketSummary, hint: TunnelHint) -> Step {
    let (h, mut rest) = take::<14>(d, Layer::Ethernet)?;
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = *h;
    s.dst_mac = Some([d0, d1, d2, d3, d4, d5]);
    s.src_mac = Some([s0, s1, s2, s3, s4, s5]);
    let mut et = be16(t0, t1);
    let mut tags = 0u8;
    while matches!(et, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD) {
        if tags == 2 {
            // A third tag: nothing on our networks sends one, so do not guess further.
            return Err(Stop::Unsupported);
        }
        let (tag, r) = take::<4>(rest, Layer::Vlan)?;
        let [p0, p1, n0, n1] = *tag;
        if tags == 0 {
            s.flow.vlan = be16(p0, p1) & 0x0fff;
        }
        et = be16(n0, n1);
        rest = r;
        tags += 1;
    }
    s.ethertype = et;
    match et {
        ethertype::IPV4 => ipv4(rest, s, hint),
        ethertype::IPV6 => ipv6(rest, s, hint),
        _ => Err(Stop::Unsupported),
    }
}

fn raw_ip(d: &[u8], s: &mut PacketSummary, hint: TunnelHint) -> Step {
    // Without a link header the version nibble is all there is to go on.
    match d.first().map(|b| b >> 4) {
        None => Err(Stop::Truncated(Layer::Ipv4)),
        Some(4) => {
            s.ethertype = ethertype::IPV4;
            ipv4(d, s, hint)
        }
        Some(6) => {
            s.ethertype = ethertype::IPV6;
            ipv6(d, s, hint)
        }
        Some(_) => Err(Stop::Unsupported),
    }
}

#[inline(always)]
fn ipv4(d: &[u8], s: &mut PacketSummary, hint: TunnelHint) -> Step {
    let (h, _) = take::<20>(d, Layer::Ipv4)?;
    let [vihl, _, _, _, _, _, f0, f1, _, proto, _, _, a0, a1, a2, a3, b0, b1, b2, b3] = *h;
    if vihl >> 4 != 4 {
        return Err(Stop::Malformed(Layer::Ipv4));
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(Stop::Malformed(Layer::Ipv4));
    }
    s.flow.family = FAMILY_V4;
    s.flow.proto = proto;
    s.flow.src = [a0, a1, a2, a3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    s.flow.dst = [b0, b1, b2, b3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    if be16(f0, f1) & 0x1fff != 0 {
        return Err(Stop::Fragment);
    }
    // The total-length field is not used to bound the payload: GSO and BIG TCP skbs carry
    // 0 or a stale value there, and only the transport header is read anyway.
    let l4 = d.get(ihl..).ok_or(Stop::Truncated(Layer::Ipv4))?;
    transport(l4, proto, s, hint)
}

#[inline(always)]
fn ipv6(d: &[u8], s: &mut PacketSummary, hint: TunnelHint) -> Step {
    let (fixed, r) = take::<8>(d, Layer::Ipv6)?;
    let (src, r) = take::<16>(r, Layer::Ipv6)?;
    let (dst, mut rest) = take::<16>(r, Layer::Ipv6)?;
    if fixed[0] >> 4 != 6 {
        return Err(Stop::Malformed(Layer::Ipv6));
    }
    s.flow.family = FAMILY_V6;
    s.flow.src = *src;
    s.flow.dst = *dst;
    let mut next = fixed[6];
    // Every extension header is at least 8 bytes long, so this loop ends within len/8 turns.
    loop {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let (e, _) = take::<2>(rest, Layer::Ipv6)?;
                next = e[0];
                (usize::from(e[1]) + 1) * 8
            }
            ipproto::AH => {
                let (e, _) = take::<2>(rest, Layer::Ipv6)?;
                next = e[0];
                (usize::from(e[1]) + 2) * 4
            }
            IPV6_FRAGMENT => {
                let (e, _) = take::<8>(rest, Layer::Ipv6)?;
                next = e[0];
                if be16(e[2], e[3]) >> 3 != 0 {
                    s.flow.proto = next;
                    return Err(Stop::Fragment);
                }
                8
            }
            _ => break,
        };
        rest = rest.get(len..).ok_or(Stop::Truncated(Layer::Ipv6))?;
    }
    s.flow.proto = next;
    transport(rest, next, s, hint)
}

#[inline(always)]
fn transport(d: &[u8], proto: u8, s: &mut PacketSummary, hint: TunnelHint) -> Step {
    match proto {
        ipproto::TCP => {
            ports(d, s);
            if let Some(&flags) = d.get(13) {
                s.tcp_flags = flags;
            }
            if d.len() < 20 {
                return Err(Stop::Truncated(Layer::Tcp));
            }
            Ok(())
        }
        ipproto::UDP => {
            ports(d, s);
            let (_, payload) = take::<8>(d, Layer::Udp)?;
            tunnel(payload, s, hint)
        }
        ipproto::ICMP | ipproto::ICMPV6 => {
            if let Some(&[t, c]) = d.first_chunk::<2>() {
                s.icmp = Some((t, c));
            }
            if d.len() < 4 {
                return Err(Stop::Truncated(Layer::Icmp));
            }
            Ok(())
        }
        _ => Err(Stop::Unsupported),
    }
}

#[inline(always)]
fn ports(d: &[u8], s: &mut PacketSummary) {
    if let Some(&[a, b, c, e]) = d.first_chunk::<4>() {
        s.flow.sport = be16(a, b);
        s.flow.dport = be16(c, e);
    }
}

/// Looks into the UDP payload `d` for VXLAN or Geneve as `hint` says; on success the summary
/// is reset to describe the inner packet.
#[inline(always)]
fn tunnel(d: &[u8], s: &mut PacketSummary, hint: TunnelHint) -> Step {
    let kind = match hint {
        TunnelHint::None => return Ok(()),
        TunnelHint::Vxlan => TunnelKind::Vxlan,
        TunnelHint::Geneve => TunnelKind::Geneve,
        TunnelHint::ByPort => match s.flow.dport {
            p if VXLAN_PORTS.contains(&p) => TunnelKind::Vxlan,
            GENEVE_PORT => TunnelKind::Geneve,
            _ => return Ok(()),
        },
    };
    decap(d, s, kind)
}

#[inline(never)]
fn decap(d: &[u8], s: &mut PacketSummary, kind: TunnelKind) -> Step {
    let (h, rest) = take::<8>(d, Layer::Tunnel)?;
    let [b0, _, p0, p1, v0, v1, v2, _] = *h;
    let vni = u32::from_be_bytes([0, v0, v1, v2]);
    // VXLAN (RFC 7348) always carries Ethernet; its flags are not checked, as the Linux
    // receive path only checks them when asked to. Geneve (RFC 8926) says what it carries.
    let (inner, proto) = match kind {
        TunnelKind::Vxlan => (rest, ethertype::TEB),
        TunnelKind::Geneve => {
            if b0 >> 6 != 0 {
                return Err(Stop::Malformed(Layer::Tunnel));
            }
            let opt_len = usize::from(b0 & 0x3f) * 4;
            let inner = rest.get(opt_len..).ok_or(Stop::Truncated(Layer::Tunnel))?;
            (inner, be16(p0, p1))
        }
    };
    let outer = s.flow;
    *s = PacketSummary {
        tunnel: Some(Tunnel { kind, vni, outer }),
        ..PacketSummary::default()
    };
    // Inner packets are never decapsulated again: one level is what Cilium builds, and a
    // bound keeps a hostile packet from nesting without end.
    match proto {
        ethertype::TEB => ethernet(inner, s, TunnelHint::None),
        ethertype::IPV4 => {
            s.ethertype = proto;
            ipv4(inner, s, TunnelHint::None)
        }
        ethertype::IPV6 => {
            s.ethertype = proto;
            ipv6(inner, s, TunnelHint::None)
        }
        _ => {
            s.ethertype = proto;
            Err(Stop::Unsupported)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{FlowKey, FAMILY_NONE};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // ---- hand-built headers (checksums are left zero: the decoder never reads them) ----

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    fn eth(et: u16) -> Vec<u8> {
        let mut v = MAC_B.to_vec();
        v.extend_from_slice(&MAC_A);
        v.extend_from_slice(&et.to_be_bytes());
        v
    }

    fn vlan(tpid_next: u16, tci: u16) -> Vec<u8> {
        let mut v = tci.to_be_bytes().to_vec();
        v.extend_from_slice(&tpid_next.to_be_bytes());
        v
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, opts: &[u8], frag: u16) -> Vec<u8> {
        let ihl = 5 + opts.len() / 4;
        let mut v = vec![0x40 | ihl as u8, 0, 0, 0, 0, 1];
        v.extend_from_slice(&frag.to_be_bytes());
        v.extend_from_slice(&[64, proto, 0, 0]);
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(opts);
        v
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v
    }

    /// Hop-by-hop / routing / destination options header of (units+1)*8 bytes.
    fn ext(next: u8, units: u8) -> Vec<u8> {
        let mut v = vec![next, units];
        v.resize((usize::from(units) + 1) * 8, 0);
        v
    }

    fn frag6(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
        let off = (offset_units << 3) | u16::from(more);
        let mut v = vec![next, 0];
        v.extend_from_slice(&off.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 7]);
        v
    }

    /// Authentication header with a 12-byte ICV: payload length field = 4.
    fn ah(next: u8) -> Vec<u8> {
        let mut v = vec![next, 4];
        v.resize(24, 0);
        v
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut v = sport.to_be_bytes().to_vec();
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0x20, 0, 0, 0, 0, 0]);
        v
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut v = sport.to_be_bytes().to_vec();
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&[0, 8, 0, 0]);
        v
    }

    fn icmp(t: u8, c: u8) -> Vec<u8> {
        vec![t, c, 0, 0, 0, 1, 0, 1]
    }

    fn vxlan(vni: u32) -> Vec<u8> {
        let [_, a, b, c] = vni.to_be_bytes();
        vec![0x08, 0, 0, 0, a, b, c, 0]
    }

    fn geneve(vni: u32, opt_words: u8, proto: u16) -> Vec<u8> {
        let [_, a, b, c] = vni.to_be_bytes();
        let [p0, p1] = proto.to_be_bytes();
        let mut v = vec![opt_words & 0x3f, 0, p0, p1, a, b, c, 0];
        // One option TLV header per word group is not needed: the decoder skips opt_len.
        v.resize(8 + usize::from(opt_words) * 4, 0xee);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn v4(a: [u8; 4], sp: u16, b: [u8; 4], dp: u16, proto: u8) -> FlowKey {
        FlowKey::v4(Ipv4Addr::from(a), sp, Ipv4Addr::from(b), dp, proto)
    }

    fn v6(a: &str, sp: u16, b: &str, dp: u16, proto: u8) -> FlowKey {
        FlowKey::v6(a.parse().unwrap(), sp, b.parse().unwrap(), dp, proto)
    }

    const A4: [u8; 4] = [10, 0, 0, 1];
    const B4: [u8; 4] = [10, 0, 0, 2];
    const A6: &str = "fd00::1";
    const B6: &str = "fd00::2";

    fn a6() -> Ipv6Addr {
        A6.parse().unwrap()
    }
    fn b6() -> Ipv6Addr {
        B6.parse().unwrap()
    }

    /// Offsets of one packet (outer or inner) for the truncation checks.
    #[derive(Clone, Copy, Debug)]
    struct Depth {
        /// End of the fixed IP header (addresses known from here on).
        ip: usize,
        /// Start of the transport header, `usize::MAX` if the packet has none.
        l4: usize,
    }

    const NO_L4: usize = usize::MAX;

    struct Case {
        name: &'static str,
        data: Vec<u8>,
        link: LinkType,
        hint: TunnelHint,
        want: PacketSummary,
        /// End offset of each layer, in order; a cut before `end` stops in that layer.
        cuts: Vec<(usize, Layer)>,
        /// Outer packet, then the inner one for tunnels.
        depths: Vec<Depth>,
    }

    fn summary(flow: FlowKey, ethertype: u16) -> PacketSummary {
        PacketSummary {
            flow,
            ethertype,
            src_mac: Some(MAC_A),
            dst_mac: Some(MAC_B),
            ..PacketSummary::default()
        }
    }

    use Layer::{Ethernet, Icmp, Ipv4, Ipv6, Tcp, Udp, Vlan};
    const E4: u16 = ethertype::IPV4;
    const E6: u16 = ethertype::IPV6;

    fn cases() -> Vec<Case> {
        let eth_link = LinkType::Ethernet;
        let by_port = TunnelHint::ByPort;
        let mut v = vec![
            Case {
                name: "eth ipv4 tcp syn",
                data: cat(&[&eth(E4), &ipv4(A4, B4, 6, &[], 0), &tcp(40000, 80, 0x02)]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tcp_flags: 0x02,
                    ..summary(v4(A4, 40000, B4, 80, 6), E4)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4), (54, Tcp)],
                depths: vec![Depth { ip: 34, l4: 34 }],
            },
            Case {
                name: "eth ipv4 udp",
                data: cat(&[&eth(E4), &ipv4(A4, B4, 17, &[], 0), &udp(5000, 9)]),
                link: eth_link,
                hint: by_port,
                want: summary(v4(A4, 5000, B4, 9, 17), E4),
                cuts: vec![(14, Ethernet), (34, Ipv4), (42, Udp)],
                depths: vec![Depth { ip: 34, l4: 34 }],
            },
            Case {
                name: "eth ipv4 icmp echo",
                data: cat(&[&eth(E4), &ipv4(A4, B4, 1, &[], 0), &icmp(8, 0)]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    icmp: Some((8, 0)),
                    ..summary(v4(A4, 0, B4, 0, 1), E4)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4), (38, Icmp)],
                depths: vec![Depth { ip: 34, l4: 34 }],
            },
            Case {
                name: "eth ipv4 with options udp",
                data: cat(&[
                    &eth(E4),
                    &ipv4(A4, B4, 17, &[0x94, 4, 0, 0, 1, 1, 1, 0], 0),
                    &udp(53, 33000),
                ]),
                link: eth_link,
                hint: by_port,
                want: summary(v4(A4, 53, B4, 33000, 17), E4),
                cuts: vec![(14, Ethernet), (42, Ipv4), (50, Udp)],
                depths: vec![Depth { ip: 34, l4: 42 }],
            },
            Case {
                name: "eth ipv4 first fragment (MF, offset 0) keeps ports",
                data: cat(&[&eth(E4), &ipv4(A4, B4, 17, &[], 0x2000), &udp(5000, 9)]),
                link: eth_link,
                hint: by_port,
                want: summary(v4(A4, 5000, B4, 9, 17), E4),
                cuts: vec![(14, Ethernet), (34, Ipv4), (42, Udp)],
                depths: vec![Depth { ip: 34, l4: 34 }],
            },
            Case {
                name: "eth ipv4 non-first fragment has no ports",
                // Offset 185 * 8 = 1480 bytes; the payload looks like ports but is not.
                data: cat(&[&eth(E4), &ipv4(A4, B4, 17, &[], 185), &udp(5000, 9)]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Fragment),
                    ..summary(v4(A4, 0, B4, 0, 17), E4)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4)],
                depths: vec![Depth { ip: 34, l4: NO_L4 }],
            },
            Case {
                name: "eth ipv4 gre is unsupported after the ip header",
                data: cat(&[&eth(E4), &ipv4(A4, B4, 47, &[], 0), &[0, 0, 0x65, 0x58]]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Unsupported),
                    ..summary(v4(A4, 0, B4, 0, 47), E4)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4)],
                depths: vec![Depth { ip: 34, l4: NO_L4 }],
            },
            Case {
                name: "eth ipv6 tcp",
                data: cat(&[&eth(E6), &ipv6(a6(), b6(), 6), &tcp(443, 51000, 0x12)]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tcp_flags: 0x12,
                    ..summary(v6(A6, 443, B6, 51000, 6), E6)
                },
                cuts: vec![(14, Ethernet), (54, Ipv6), (74, Tcp)],
                depths: vec![Depth { ip: 54, l4: 54 }],
            },
            Case {
                name: "eth ipv6 udp",
                data: cat(&[&eth(E6), &ipv6(a6(), b6(), 17), &udp(5000, 9)]),
                link: eth_link,
                hint: by_port,
                want: summary(v6(A6, 5000, B6, 9, 17), E6),
                cuts: vec![(14, Ethernet), (54, Ipv6), (62, Udp)],
                depths: vec![Depth { ip: 54, l4: 54 }],
            },
            Case {
                name: "eth ipv6 icmpv6 echo",
                data: cat(&[&eth(E6), &ipv6(a6(), b6(), 58), &icmp(128, 0)]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    icmp: Some((128, 0)),
                    ..summary(v6(A6, 0, B6, 0, 58), E6)
                },
                cuts: vec![(14, Ethernet), (54, Ipv6), (58, Icmp)],
                depths: vec![Depth { ip: 54, l4: 54 }],
            },
            Case {
                name: "eth ipv6 hop-by-hop, routing, dstopts, ah then udp",
                data: cat(&[
                    &eth(E6),
                    &ipv6(a6(), b6(), 0),
                    &ext(43, 0),
                    &ext(60, 2),
                    &ext(51, 1),
                    &ah(17),
                    &udp(7, 8),
                ]),
                link: eth_link,
                hint: by_port,
                want: summary(v6(A6, 7, B6, 8, 17), E6),
                // 40 + 8 + 24 + 16 + 24 = 112 bytes of IPv6 headers.
                cuts: vec![(14, Ethernet), (126, Ipv6), (134, Udp)],
                depths: vec![Depth { ip: 54, l4: 126 }],
            },
            Case {
                name: "eth ipv6 first fragment keeps ports",
                data: cat(&[
                    &eth(E6),
                    &ipv6(a6(), b6(), 44),
                    &frag6(6, 0, true),
                    &tcp(1, 2, 0x10),
                ]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tcp_flags: 0x10,
                    ..summary(v6(A6, 1, B6, 2, 6), E6)
                },
                cuts: vec![(14, Ethernet), (62, Ipv6), (82, Tcp)],
                depths: vec![Depth { ip: 54, l4: 62 }],
            },
            Case {
                name: "eth ipv6 non-first fragment has no ports",
                data: cat(&[
                    &eth(E6),
                    &ipv6(a6(), b6(), 44),
                    &frag6(17, 100, false),
                    &udp(1, 2),
                ]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Fragment),
                    ..summary(v6(A6, 0, B6, 0, 17), E6)
                },
                cuts: vec![(14, Ethernet), (62, Ipv6)],
                depths: vec![Depth { ip: 54, l4: NO_L4 }],
            },
            Case {
                name: "eth vlan ipv4 udp",
                data: cat(&[
                    &eth(ethertype::VLAN),
                    &vlan(E4, 0xa000 | 100),
                    &ipv4(A4, B4, 17, &[], 0),
                    &udp(5000, 9),
                ]),
                link: eth_link,
                hint: by_port,
                want: summary(v4(A4, 5000, B4, 9, 17).with_vlan(100), E4),
                cuts: vec![(14, Ethernet), (18, Vlan), (38, Ipv4), (46, Udp)],
                depths: vec![Depth { ip: 38, l4: 38 }],
            },
            Case {
                name: "eth qinq (outer 200, inner 100) ipv6 tcp",
                data: cat(&[
                    &eth(ethertype::QINQ),
                    &vlan(ethertype::VLAN, 200),
                    &vlan(E6, 100),
                    &ipv6(a6(), b6(), 6),
                    &tcp(22, 60000, 0x18),
                ]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tcp_flags: 0x18,
                    ..summary(v6(A6, 22, B6, 60000, 6).with_vlan(200), E6)
                },
                cuts: vec![
                    (14, Ethernet),
                    (18, Vlan),
                    (22, Vlan),
                    (62, Ipv6),
                    (82, Tcp),
                ],
                depths: vec![Depth { ip: 62, l4: 62 }],
            },
            Case {
                name: "eth three vlan tags stop as unsupported",
                data: cat(&[
                    &eth(ethertype::QINQ),
                    &vlan(ethertype::VLAN, 300),
                    &vlan(ethertype::VLAN, 200),
                    &vlan(E4, 100),
                    &ipv4(A4, B4, 17, &[], 0),
                ]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Unsupported),
                    ..summary(FlowKey::default().with_vlan(300), 0)
                },
                cuts: vec![(14, Ethernet), (18, Vlan), (22, Vlan)],
                depths: vec![],
            },
            Case {
                name: "eth arp is unsupported",
                data: cat(&[&eth(ethertype::ARP), &[0, 1, 8, 0, 6, 4, 0, 1]]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Unsupported),
                    ..summary(FlowKey::default(), ethertype::ARP)
                },
                cuts: vec![(14, Ethernet)],
                depths: vec![],
            },
            Case {
                name: "ethertype ipv4 carrying version 6 is malformed",
                data: cat(&[&eth(E4), &ipv6(a6(), b6(), 6)]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Malformed(Ipv4)),
                    ..summary(FlowKey::default(), E4)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4)],
                depths: vec![],
            },
            Case {
                name: "raw ipv4 tcp",
                data: cat(&[&ipv4(A4, B4, 6, &[], 0), &tcp(1000, 2000, 0x11)]),
                link: LinkType::RawIp,
                hint: by_port,
                want: PacketSummary {
                    flow: v4(A4, 1000, B4, 2000, 6),
                    ethertype: E4,
                    tcp_flags: 0x11,
                    ..PacketSummary::default()
                },
                cuts: vec![(1, Ipv4), (20, Ipv4), (40, Tcp)],
                depths: vec![Depth { ip: 20, l4: 20 }],
            },
            Case {
                name: "raw ipv6 udp",
                data: cat(&[&ipv6(a6(), b6(), 17), &udp(1000, 2000)]),
                link: LinkType::RawIp,
                hint: by_port,
                want: PacketSummary {
                    flow: v6(A6, 1000, B6, 2000, 17),
                    ethertype: E6,
                    ..PacketSummary::default()
                },
                cuts: vec![(1, Ipv4), (40, Ipv6), (48, Udp)],
                depths: vec![Depth { ip: 40, l4: 40 }],
            },
        ];

        // ---- tunnels ----
        let inner = cat(&[
            &eth(E4),
            &ipv4([10, 1, 0, 1], [10, 1, 0, 2], 6, &[], 0),
            &tcp(54222, 8080, 0x02),
        ]);
        let inner_want = PacketSummary {
            tcp_flags: 0x02,
            ..summary(v4([10, 1, 0, 1], 54222, [10, 1, 0, 2], 8080, 6), E4)
        };
        let outer4 = |dport: u16| {
            cat(&[
                &eth(E4),
                &ipv4([192, 168, 1, 1], [192, 168, 1, 2], 17, &[], 0),
                &udp(33333, dport),
            ])
        };
        let outer4_key = |dport: u16| v4([192, 168, 1, 1], 33333, [192, 168, 1, 2], dport, 17);
        let inner_cuts =
            |base: usize| vec![(base + 14, Ethernet), (base + 34, Ipv4), (base + 54, Tcp)];
        let tunnel_depths = |base: usize| {
            vec![
                Depth { ip: 34, l4: 34 },
                Depth {
                    ip: base + 34,
                    l4: base + 34,
                },
            ]
        };
        for port in [4789u16, 8472] {
            let mut cuts = vec![(14, Ethernet), (34, Ipv4), (42, Udp), (50, Layer::Tunnel)];
            cuts.extend(inner_cuts(50));
            v.push(Case {
                name: "vxlan by port",
                data: cat(&[&outer4(port), &vxlan(0x123456), &inner]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tunnel: Some(Tunnel {
                        kind: TunnelKind::Vxlan,
                        vni: 0x123456,
                        outer: outer4_key(port),
                    }),
                    ..inner_want
                },
                cuts,
                depths: tunnel_depths(50),
            });
        }
        {
            let mut cuts = vec![(14, Ethernet), (34, Ipv4), (42, Udp), (50, Layer::Tunnel)];
            cuts.extend(inner_cuts(50));
            v.push(Case {
                name: "vxlan on any port with hint Vxlan",
                data: cat(&[&outer4(9999), &vxlan(7), &inner]),
                link: eth_link,
                hint: TunnelHint::Vxlan,
                want: PacketSummary {
                    tunnel: Some(Tunnel {
                        kind: TunnelKind::Vxlan,
                        vni: 7,
                        outer: outer4_key(9999),
                    }),
                    ..inner_want
                },
                cuts,
                depths: tunnel_depths(50),
            });
        }
        {
            let mut cuts = vec![(14, Ethernet), (34, Ipv4), (42, Udp), (62, Layer::Tunnel)];
            cuts.extend(inner_cuts(62));
            v.push(Case {
                name: "geneve by port with 12 bytes of options",
                data: cat(&[&outer4(6081), &geneve(99, 3, ethertype::TEB), &inner]),
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tunnel: Some(Tunnel {
                        kind: TunnelKind::Geneve,
                        vni: 99,
                        outer: outer4_key(6081),
                    }),
                    ..inner_want
                },
                cuts,
                depths: tunnel_depths(62),
            });
        }
        {
            // Geneve carrying IPv6 directly (protocol type 0x86dd, no inner Ethernet).
            let inner6 = cat(&[&ipv6(a6(), b6(), 17), &udp(1, 2)]);
            v.push(Case {
                name: "geneve with hint carrying ipv6",
                data: cat(&[&outer4(1234), &geneve(5, 0, E6), &inner6]),
                link: eth_link,
                hint: TunnelHint::Geneve,
                want: PacketSummary {
                    flow: v6(A6, 1, B6, 2, 17),
                    ethertype: E6,
                    tunnel: Some(Tunnel {
                        kind: TunnelKind::Geneve,
                        vni: 5,
                        outer: outer4_key(1234),
                    }),
                    ..PacketSummary::default()
                },
                cuts: vec![
                    (14, Ethernet),
                    (34, Ipv4),
                    (42, Udp),
                    (50, Layer::Tunnel),
                    (90, Ipv6),
                    (98, Udp),
                ],
                depths: vec![Depth { ip: 34, l4: 34 }, Depth { ip: 90, l4: 90 }],
            });
        }
        {
            let cuts = vec![(14, Ethernet), (34, Ipv4), (42, Udp)];
            v.push(Case {
                name: "vxlan port with hint None is plain udp",
                data: cat(&[&outer4(4789), &vxlan(1), &inner]),
                link: eth_link,
                hint: TunnelHint::None,
                want: summary(outer4_key(4789), E4),
                cuts,
                depths: vec![Depth { ip: 34, l4: 34 }],
            });
        }
        {
            // An outer IPv6 + VLAN underlay with a VXLAN-in-VXLAN inner: decapsulated once.
            let inner_udp = cat(&[
                &eth(E4),
                &ipv4([10, 1, 0, 1], [10, 1, 0, 2], 17, &[], 0),
                &udp(1, 4789),
                &vxlan(3),
            ]);
            let data = cat(&[
                &eth(ethertype::VLAN),
                &vlan(E6, 42),
                &ipv6(a6(), b6(), 17),
                &udp(40000, 4789),
                &vxlan(2),
                &inner_udp,
            ]);
            v.push(Case {
                name: "vxlan over vlan ipv6, inner vxlan not decapsulated again",
                data,
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    tunnel: Some(Tunnel {
                        kind: TunnelKind::Vxlan,
                        vni: 2,
                        outer: v6(A6, 40000, B6, 4789, 17).with_vlan(42),
                    }),
                    ..summary(v4([10, 1, 0, 1], 1, [10, 1, 0, 2], 4789, 17), E4)
                },
                cuts: vec![
                    (14, Ethernet),
                    (18, Vlan),
                    (58, Ipv6),
                    (66, Udp),
                    (74, Layer::Tunnel),
                    (88, Ethernet),
                    (108, Ipv4),
                    (116, Udp),
                ],
                depths: vec![Depth { ip: 58, l4: 58 }, Depth { ip: 108, l4: 108 }],
            });
        }
        {
            let mut d = outer4(6081);
            d.extend_from_slice(&[0x40, 0, 0x65, 0x58, 0, 0, 1, 0]);
            d.extend_from_slice(&inner);
            v.push(Case {
                name: "geneve version 1 is malformed",
                data: d,
                link: eth_link,
                hint: by_port,
                want: PacketSummary {
                    stop: Some(Stop::Malformed(Layer::Tunnel)),
                    ..summary(outer4_key(6081), E4)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4), (42, Udp), (50, Layer::Tunnel)],
                depths: vec![Depth { ip: 34, l4: 34 }],
            });
        }
        v.extend(vector_cases());
        v
    }

    /// Real packets from Cilium's own tests (docs/cilium-vectors.md §6, §10).
    fn vector_cases() -> Vec<Case> {
        let mac_a = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab];
        let mac_b = [0x02, 0x33, 0x45, 0x67, 0x89, 0xab];
        let tcp_80_443 = v4([1, 2, 3, 4], 80, [5, 6, 7, 8], 443, 6);
        let plain = |flags: u8| PacketSummary {
            flow: tcp_80_443,
            ethertype: E4,
            tcp_flags: flags,
            src_mac: Some(mac_a),
            dst_mac: Some(mac_b),
            ..PacketSummary::default()
        };
        let tcp_cuts = |b: usize| vec![(b + 14, Ethernet), (b + 34, Ipv4), (b + 54, Tcp)];
        let one = |b: usize| {
            vec![Depth {
                ip: b + 34,
                l4: b + 34,
            }]
        };
        let outer_1111 = v4([1, 1, 1, 1], 8472, [2, 2, 2, 2], 9999, 17);
        let tunnel_cuts = {
            let mut c = vec![(14, Ethernet), (34, Ipv4), (42, Udp), (50, Layer::Tunnel)];
            c.extend(tcp_cuts(50));
            c
        };
        let two = vec![Depth { ip: 34, l4: 34 }, Depth { ip: 84, l4: 84 }];
        let ack = hex("0233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000501020007db60000");
        let vx = hex("11121314151601020304050608004500005a000100004011748d01010101020202022118270f004609e50c000003000002000233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000500220007dc40000");
        let gen = hex("11121314151601020304050608004500005a000100004011748d01010101020202022118270f0046b08f00006558000002000233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000501020007db60000");
        let vx_outer = PacketSummary {
            flow: outer_1111,
            ethertype: E4,
            src_mac: Some([1, 2, 3, 4, 5, 6]),
            dst_mac: Some([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]),
            ..PacketSummary::default()
        };
        let l34 = |h: &str| hex(h).get(32..).unwrap().to_vec();
        let l34_outer = PacketSummary {
            flow: v4([192, 168, 1, 1], 8472, [192, 168, 1, 2], 9999, 17),
            ..vx_outer
        };
        let l34_inner = PacketSummary {
            flow: v4([10, 1, 0, 1], 54222, [10, 1, 0, 2], 8080, 6),
            ethertype: E4,
            tcp_flags: 0x02,
            src_mac: Some(mac_a),
            dst_mac: Some(mac_b),
            ..PacketSummary::default()
        };
        let l34_vx = l34("04070000077c1a3942000000420000000000000000000000000001040000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a801022118270f004690870c000003000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f90000000000000000050022000887f0000");
        let l34_gen = l34("04070000077c1a3942000000420000000000000000000000000001080000000011121314151601020304050608004500005a000100004011f73ec0a80101c0a8010217c1270f0046408900006558000002000233456789ab0123456789ab08004500002800010000400666cb0a0100010a010002d3ce1f90000000000000000050022000887f0000");
        let l34_gen_outer = v4([192, 168, 1, 1], 6081, [192, 168, 1, 2], 9999, 17);
        // §6.1 and §6.2 carry perf padding after len_cap (66 and 86): cut it off.
        let trace_tcp = l34("04070000077c1a39420000004200000001000000000000000000810000000000f68db22d21d9f68db22d21d9080045000034ea1c400040067831c0a83c0b0a10ecb2192bd3ce2aefd21cb498816780100198d89c00000101080a005ab062005ab0610000");
        let trace_ns = l34("0405a80b5f16f2b85600000056000000680000000000000000000000000000003333ff00b3e5129106e2221a86dd6000000000203affff0200000000000000000001ff00b3e5f00d0000000000000a100000000091958700507500000000f00d0000000000000a1000000000b3e50101129106e2221a000000000000");
        let mac_f6 = [0xf6, 0x8d, 0xb2, 0x2d, 0x21, 0xd9];

        vec![
            Case {
                name: "cilium dissect: tcp ACK",
                data: ack.clone(),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: plain(0x10),
                cuts: tcp_cuts(0),
                depths: one(0),
            },
            Case {
                name: "cilium dissect: tcp ACK on an L3 device",
                data: ack.get(14..).unwrap().to_vec(),
                link: LinkType::RawIp,
                hint: TunnelHint::ByPort,
                want: PacketSummary { src_mac: None, dst_mac: None, ..plain(0x10) },
                cuts: vec![(1, Ipv4), (20, Ipv4), (40, Tcp)],
                depths: vec![Depth { ip: 20, l4: 20 }],
            },
            Case {
                name: "cilium dissect: tcp SYN",
                data: hex("0233456789ab0123456789ab0800450000280001000040066abc0102030405060708005001bb0000000000000000500220007dc40000"),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: plain(0x02),
                cuts: tcp_cuts(0),
                depths: one(0),
            },
            Case {
                name: "cilium dissect: vxlan (IsVXLAN), inner SYN",
                data: vx.clone(),
                link: LinkType::Ethernet,
                hint: TunnelHint::Vxlan,
                want: PacketSummary {
                    tunnel: Some(Tunnel { kind: TunnelKind::Vxlan, vni: 2, outer: outer_1111 }),
                    ..plain(0x02)
                },
                cuts: tunnel_cuts.clone(),
                depths: two.clone(),
            },
            Case {
                name: "cilium dissect: vxlan bytes without the flag, by port 9999: outer only",
                data: vx,
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: vx_outer,
                cuts: vec![(14, Ethernet), (34, Ipv4), (42, Udp)],
                depths: one(0),
            },
            Case {
                name: "cilium dissect: geneve (IsGeneve), inner ACK",
                data: gen,
                link: LinkType::Ethernet,
                hint: TunnelHint::Geneve,
                want: PacketSummary {
                    tunnel: Some(Tunnel { kind: TunnelKind::Geneve, vni: 2, outer: outer_1111 }),
                    ..plain(0x10)
                },
                cuts: tunnel_cuts.clone(),
                depths: two.clone(),
            },
            Case {
                name: "cilium dissect: icmp 3/1",
                data: hex("0233456789ab0123456789ab08004500001c0001000040016acd01020304050607080301fcfe00000000"),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: PacketSummary {
                    flow: v4([1, 2, 3, 4], 0, [5, 6, 7, 8], 0, 1),
                    tcp_flags: 0,
                    icmp: Some((3, 1)),
                    ..plain(0)
                },
                cuts: vec![(14, Ethernet), (34, Ipv4), (38, Icmp)],
                depths: one(0),
            },
            Case {
                name: "cilium dissect: igmp is unsupported past ipv4",
                data: hex("01005e0000fb01020304050608004500001c000000000102000001020304e00000fb1600f905e00000fb"),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: PacketSummary {
                    flow: v4([1, 2, 3, 4], 0, [224, 0, 0, 251], 0, 2),
                    ethertype: E4,
                    src_mac: Some([1, 2, 3, 4, 5, 6]),
                    dst_mac: Some([1, 0, 0x5e, 0, 0, 0xfb]),
                    stop: Some(Stop::Unsupported),
                    ..PacketSummary::default()
                },
                cuts: vec![(14, Ethernet), (34, Ipv4)],
                depths: vec![Depth { ip: 34, l4: NO_L4 }],
            },
            Case {
                name: "cilium l34: vxlan overlay (flags 4)",
                data: l34_vx.get(..104).unwrap().to_vec(),
                link: LinkType::Ethernet,
                hint: TunnelHint::Vxlan,
                want: PacketSummary {
                    tunnel: Some(Tunnel { kind: TunnelKind::Vxlan, vni: 2, outer: l34_outer.flow }),
                    ..l34_inner
                },
                cuts: tunnel_cuts.clone(),
                depths: two.clone(),
            },
            Case {
                name: "cilium l34: vxlan overlay with flags cleared: outer udp 8472 -> 9999",
                data: l34_vx.get(..104).unwrap().to_vec(),
                link: LinkType::Ethernet,
                hint: TunnelHint::None,
                want: l34_outer,
                cuts: vec![(14, Ethernet), (34, Ipv4), (42, Udp)],
                depths: one(0),
            },
            Case {
                name: "cilium l34: geneve overlay (flags 8)",
                data: l34_gen.get(..104).unwrap().to_vec(),
                link: LinkType::Ethernet,
                hint: TunnelHint::Geneve,
                want: PacketSummary {
                    tunnel: Some(Tunnel { kind: TunnelKind::Geneve, vni: 2, outer: l34_gen_outer }),
                    ..l34_inner
                },
                cuts: tunnel_cuts,
                depths: two,
            },
            Case {
                name: "cilium l34: geneve by port 6081 (sport) is not decapsulated",
                data: l34_gen.get(..104).unwrap().to_vec(),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: PacketSummary { flow: l34_gen_outer, ..l34_outer },
                cuts: vec![(14, Ethernet), (34, Ipv4), (42, Udp)],
                depths: one(0),
            },
            Case {
                name: "cilium l34: trace of an ipv4 tcp ACK from the host",
                data: trace_tcp.get(..66).unwrap().to_vec(),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: PacketSummary {
                    flow: v4([192, 168, 60, 11], 6443, [10, 16, 236, 178], 54222, 6),
                    ethertype: E4,
                    tcp_flags: 0x10,
                    src_mac: Some(mac_f6),
                    dst_mac: Some(mac_f6),
                    ..PacketSummary::default()
                },
                cuts: tcp_cuts(0),
                depths: one(0),
            },
            Case {
                name: "cilium l34: icmpv6 neighbour solicitation",
                data: trace_ns.get(..86).unwrap().to_vec(),
                link: LinkType::Ethernet,
                hint: TunnelHint::ByPort,
                want: PacketSummary {
                    flow: v6("ff02::1:ff00:b3e5", 0, "f00d::a10:0:0:9195", 0, 58),
                    ethertype: E6,
                    icmp: Some((135, 0)),
                    src_mac: Some([0x12, 0x91, 0x06, 0xe2, 0x22, 0x1a]),
                    dst_mac: Some([0x33, 0x33, 0xff, 0x00, 0xb3, 0xe5]),
                    ..PacketSummary::default()
                },
                cuts: vec![(14, Ethernet), (54, Ipv6), (58, Icmp)],
                depths: one(20),
            },
        ]
    }

    #[test]
    fn table() {
        for c in cases() {
            let got = summarize(&c.data, c.link, c.hint);
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn cilium_connection_summaries() {
        // The text Cilium's dissector prints for §10, in our own format.
        let text: Vec<String> = vector_cases()
            .iter()
            .map(|c| summarize(&c.data, c.link, c.hint).to_string())
            .collect();
        assert_eq!(text[0], "1.2.3.4:80 -> 5.6.7.8:443 tcp ACK");
        assert_eq!(text[1], "1.2.3.4:80 -> 5.6.7.8:443 tcp ACK");
        assert_eq!(text[2], "1.2.3.4:80 -> 5.6.7.8:443 tcp SYN");
        assert_eq!(
            text[3],
            "1.2.3.4:80 -> 5.6.7.8:443 tcp SYN [tunnel 1.1.1.1:8472 -> 2.2.2.2:9999 udp vxlan vni 2]"
        );
        assert_eq!(
            text[5],
            "1.2.3.4:80 -> 5.6.7.8:443 tcp ACK [tunnel 1.1.1.1:8472 -> 2.2.2.2:9999 udp geneve vni 2]"
        );
        assert_eq!(text[6], "1.2.3.4 -> 5.6.7.8 icmp 3/1");
        assert_eq!(
            text[7],
            "1.2.3.4 -> 224.0.0.251 igmp (unsupported protocol)"
        );
        assert_eq!(
            text[13],
            "ff02::1:ff00:b3e5 -> f00d::a10:0:0:9195 icmpv6 135/0"
        );
    }

    /// Cuts every case at every length and checks the summary against the layer map:
    /// where it stops, and that fields appear exactly when their bytes are there.
    #[test]
    fn every_truncation_length() {
        let mut checked = 0;
        for c in cases() {
            let full_stop = c.want.stop;
            let tunnel_end = c
                .cuts
                .iter()
                .find(|(_, l)| *l == Layer::Tunnel)
                .map(|(e, _)| *e);
            for len in 0..=c.data.len() {
                let got = summarize(&c.data[..len], c.link, c.hint);
                let ctx = format!("{} cut at {len}: {got:?}", c.name);
                let want_stop = match c.cuts.iter().find(|(end, _)| len < *end) {
                    Some((_, layer)) => Some(Stop::Truncated(*layer)),
                    None => full_stop,
                };
                assert_eq!(got.stop, want_stop, "{ctx}");

                // Which packet the fields describe: the inner one once the tunnel header is in.
                let inner = c.want.tunnel.is_some() && tunnel_end.is_some_and(|e| len >= e);
                let (depth, ref_flow, ref_summary) = match c.want.tunnel {
                    Some(t) if !inner => (c.depths.first().copied(), t.outer, None),
                    _ => (c.depths.last().copied(), c.want.flow, Some(&c.want)),
                };
                if inner {
                    assert_eq!(got.tunnel, c.want.tunnel, "{ctx}");
                } else {
                    assert_eq!(got.tunnel, None, "{ctx}");
                }
                let Some(d) = depth else {
                    assert_eq!(got.flow.family, FAMILY_NONE, "{ctx}");
                    continue;
                };
                let has_ip = len >= d.ip;
                assert_eq!(got.flow.family != FAMILY_NONE, has_ip, "{ctx}");
                if has_ip {
                    assert_eq!(
                        (got.flow.src, got.flow.dst),
                        (ref_flow.src, ref_flow.dst),
                        "{ctx}"
                    );
                } else {
                    assert_eq!((got.flow.src, got.flow.dst), ([0; 16], [0; 16]), "{ctx}");
                }
                assert_eq!(
                    got.flow.vlan,
                    if got.flow.vlan != 0 { ref_flow.vlan } else { 0 },
                    "{ctx}"
                );
                let l4_at = |n: usize| d.l4 != NO_L4 && len >= d.l4.saturating_add(n);
                if l4_at(4) {
                    assert_eq!(
                        (got.flow.sport, got.flow.dport),
                        (ref_flow.sport, ref_flow.dport),
                        "{ctx}"
                    );
                } else {
                    assert_eq!((got.flow.sport, got.flow.dport), (0, 0), "{ctx}");
                }
                if let Some(r) = ref_summary {
                    let flags = if l4_at(14) { r.tcp_flags } else { 0 };
                    assert_eq!(got.tcp_flags, flags, "{ctx}");
                    let icmp = if l4_at(2) { r.icmp } else { None };
                    assert_eq!(got.icmp, icmp, "{ctx}");
                    if got.stop.is_none() {
                        assert_eq!(&got, r, "{ctx}");
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 2000, "only {checked} prefixes checked");
    }

    #[test]
    fn stop_and_flow_text() {
        let k = v4([10, 0, 0, 1], 5000, [10, 0, 0, 2], 9, 17);
        assert_eq!(k.to_string(), "10.0.0.1:5000 -> 10.0.0.2:9 udp");
        assert_eq!(
            v6("fd00::1", 5000, "fd00::2", 80, 6)
                .with_vlan(7)
                .to_string(),
            "[fd00::1]:5000 -> [fd00::2]:80 tcp vlan 7"
        );
        assert_eq!(
            v4(A4, 0, B4, 0, 99).to_string(),
            "10.0.0.1 -> 10.0.0.2 proto 99"
        );
        assert_eq!(FlowKey::default().to_string(), "-");
        assert_eq!(k.src_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(k.reversed().dst_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(k.reversed().dport, 5000);
        assert_eq!(FlowKey::default().dst_ip(), None);
        assert_eq!(Stop::Truncated(Layer::Tcp).to_string(), "truncated in tcp");
        let s = summarize(&[0u8; 10], LinkType::Ethernet, TunnelHint::ByPort);
        assert_eq!(s.to_string(), "- (truncated in ethernet)");
        let mut arp = eth(ethertype::ARP);
        arp.extend_from_slice(&[0; 28]);
        let s = summarize(&arp, LinkType::Ethernet, TunnelHint::ByPort);
        assert_eq!(s.to_string(), "ethertype 0x0806 (unsupported protocol)");
    }

    #[test]
    fn raw_ip_edge_cases() {
        let s = summarize(&[], LinkType::RawIp, TunnelHint::ByPort);
        assert_eq!(s.stop, Some(Stop::Truncated(Ipv4)));
        assert_eq!(s.ethertype, 0);
        let s = summarize(&[0x50, 0, 0, 0], LinkType::RawIp, TunnelHint::ByPort);
        assert_eq!(s.stop, Some(Stop::Unsupported));
        // IHL 4 (16 bytes) cannot hold an IPv4 header.
        let mut p = ipv4(A4, B4, 6, &[], 0);
        p[0] = 0x44;
        let s = summarize(&p, LinkType::RawIp, TunnelHint::ByPort);
        assert_eq!(
            (s.stop, s.flow.family),
            (Some(Stop::Malformed(Ipv4)), FAMILY_NONE)
        );
    }

    fn hint_strategy() -> impl Strategy<Value = TunnelHint> {
        prop_oneof![
            Just(TunnelHint::ByPort),
            Just(TunnelHint::Vxlan),
            Just(TunnelHint::Geneve),
            Just(TunnelHint::None)
        ]
    }

    fn link_strategy() -> impl Strategy<Value = LinkType> {
        prop_oneof![Just(LinkType::Ethernet), Just(LinkType::RawIp)]
    }

    /// Invariants that hold for any input.
    fn check_invariants(s: &PacketSummary, hint: TunnelHint) {
        if s.flow.family == FAMILY_NONE {
            assert_eq!(
                (s.flow.src, s.flow.dst, s.flow.proto),
                ([0; 16], [0; 16], 0)
            );
            assert_eq!(
                (s.flow.sport, s.flow.dport, s.tcp_flags, s.icmp),
                (0, 0, 0, None)
            );
        }
        if s.flow.family == FAMILY_V4 {
            assert_eq!(s.flow.src[4..], [0; 12]);
            assert_eq!(s.flow.dst[4..], [0; 12]);
        }
        if s.tcp_flags != 0 {
            assert_eq!(s.flow.proto, ipproto::TCP);
        }
        if s.icmp.is_some() {
            assert!(matches!(s.flow.proto, ipproto::ICMP | ipproto::ICMPV6));
        }
        assert!(s.flow.vlan <= 0x0fff);
        if let Some(t) = s.tunnel {
            assert_ne!(hint, TunnelHint::None);
            assert_eq!(t.outer.proto, ipproto::UDP);
            assert!(t.vni < 1 << 24);
        }
    }

    /// Fields of a prefix's summary are either unset or the full packet's.
    fn check_prefix(p: &PacketSummary, full: &PacketSummary) {
        if p.tunnel != full.tunnel {
            // The prefix stopped before the tunnel header was complete.
            assert_eq!(p.tunnel, None);
            return;
        }
        let (a, b) = (&p.flow, &full.flow);
        for (x, y) in [
            (u64::from(a.family), u64::from(b.family)),
            (u64::from(a.proto), u64::from(b.proto)),
            (u64::from(a.vlan), u64::from(b.vlan)),
            (u64::from(a.sport), u64::from(b.sport)),
            (u64::from(a.dport), u64::from(b.dport)),
            (u64::from(p.ethertype), u64::from(full.ethertype)),
            (u64::from(p.tcp_flags), u64::from(full.tcp_flags)),
        ] {
            assert!(x == 0 || x == y, "{p:?} vs {full:?}");
        }
        assert!(a.src == [0; 16] || a.src == b.src);
        assert!(a.dst == [0; 16] || a.dst == b.dst);
        assert!(p.icmp.is_none() || p.icmp == full.icmp);
        assert!(p.src_mac.is_none() || p.src_mac == full.src_mac);
        assert!(p.dst_mac.is_none() || p.dst_mac == full.dst_mac);
        if full.stop.is_some() && p.stop.is_none() {
            panic!("prefix decoded further than the whole packet: {p:?} vs {full:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            link in link_strategy(),
            hint in hint_strategy(),
            cut in any::<prop::sample::Index>(),
        ) {
            let full = summarize(&data, link, hint);
            check_invariants(&full, hint);
            let n = cut.index(data.len() + 1);
            let p = summarize(&data[..n], link, hint);
            check_invariants(&p, hint);
            check_prefix(&p, &full);
        }

        /// Arbitrary bytes behind real headers reach the deeper decoders far more often.
        #[test]
        fn arbitrary_bytes_after_real_headers(
            prefix in 0usize..6,
            tail in proptest::collection::vec(any::<u8>(), 0..120),
            hint in hint_strategy(),
        ) {
            let heads: [Vec<u8>; 6] = [
                eth(E4),
                eth(E6),
                cat(&[&eth(ethertype::VLAN), &vlan(ethertype::VLAN, 5)]),
                cat(&[&eth(E4), &ipv4(A4, B4, 17, &[], 0), &udp(1, 4789)]),
                cat(&[&eth(E4), &ipv4(A4, B4, 17, &[], 0), &udp(1, 6081)]),
                cat(&[&eth(E6), &ipv6(a6(), b6(), 0)]),
            ];
            let data = cat(&[&heads[prefix], &tail]);
            let full = summarize(&data, LinkType::Ethernet, hint);
            check_invariants(&full, hint);
            for n in 0..=data.len() {
                let p = summarize(&data[..n], LinkType::Ethernet, hint);
                check_invariants(&p, hint);
                check_prefix(&p, &full);
            }
        }

        /// Well-formed packets with random fields decode to exactly those fields.
        #[test]
        fn built_packets_round_trip(
            tags in 0usize..3,
            vid in 1u16..4095,
            is_v6 in any::<bool>(),
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            l4 in 0u8..3,
            sport in any::<u16>(),
            dport in any::<u16>(),
            flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            // Keep random UDP ports off the tunnel ports: ByPort would look inside.
            let dport = if [4789, 8472, 6081].contains(&dport) { 1 } else { dport };
            let (proto, l4h) = match l4 {
                0 => (ipproto::TCP, tcp(sport, dport, flags)),
                1 => (ipproto::UDP, udp(sport, dport)),
                _ => (if is_v6 { ipproto::ICMPV6 } else { ipproto::ICMP }, icmp(flags, 3)),
            };
            let et = if is_v6 { E6 } else { E4 };
            let mut data = match tags {
                0 => eth(et),
                1 => cat(&[&eth(ethertype::VLAN), &vlan(et, vid)]),
                _ => cat(&[&eth(ethertype::QINQ), &vlan(ethertype::VLAN, vid), &vlan(et, 3)]),
            };
            let ip = if is_v6 {
                ipv6(Ipv6Addr::from(src), Ipv6Addr::from(dst), proto)
            } else {
                ipv4([src[0], src[1], src[2], src[3]], [dst[0], dst[1], dst[2], dst[3]], proto, &[], 0)
            };
            data.extend_from_slice(&ip);
            data.extend_from_slice(&l4h);
            data.extend_from_slice(&payload);
            let got = summarize(&data, LinkType::Ethernet, TunnelHint::ByPort);
            let mut flow = if is_v6 {
                FlowKey::v6(Ipv6Addr::from(src), 0, Ipv6Addr::from(dst), 0, proto)
            } else {
                FlowKey::v4(Ipv4Addr::new(src[0], src[1], src[2], src[3]), 0, Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]), 0, proto)
            };
            if l4 < 2 {
                flow.sport = sport;
                flow.dport = dport;
            }
            if tags > 0 {
                flow.vlan = vid;
            }
            let want = PacketSummary {
                flow,
                ethertype: et,
                tcp_flags: if l4 == 0 { flags } else { 0 },
                icmp: if l4 == 2 { Some((flags, 3)) } else { None },
                src_mac: Some(MAC_A),
                dst_mac: Some(MAC_B),
                ..PacketSummary::default()
            };
            prop_assert_eq!(got, want);
        }
    }
}
