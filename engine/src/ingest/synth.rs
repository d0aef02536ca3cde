//! Building a minimal, valid packet from the headers a text record names ([`FlowHeaders`]),
//! so that records without packet bytes (Hubble flows, our own JSON) can be keyed in the flow
//! table and, with `--synthesize`, written to a capture file.
//!
//! The packet is Ethernet + IPv4/IPv6 + the transport header, with no payload:
//! * Ethernet: source `02:00:00:00:00:01`, destination `02:00:00:00:00:02` — locally
//!   administered unicast addresses (bit 1 of the first octet set), which no vendor owns, so
//!   nobody mistakes them for a real NIC.
//! * IPv4: IHL 5, DF, TTL 64, identification 0, a correct header checksum. IPv6: hop limit
//!   64, flow label 0. An unknown protocol (0) over IPv6 is written as 59 (No Next Header),
//!   because 0 there means a Hop-by-Hop header that is not present.
//! * TCP: the ports, sequence and acknowledgement 0, data offset 5, the flags byte, window 0.
//!   UDP: the ports, length 8. SCTP: the common header (ports, verification tag 0, CRC32c).
//!   ICMP/ICMPv6: type and code, rest of header 0 (only when the record names them; without
//!   them the IP header is written alone). TCP, UDP and ICMPv6 carry a correct checksum over
//!   the pseudo-header; ICMPv4 over its header.
//!
//! Every length field describes the bytes written, never `orig_len` (the wire length stays the
//! caller's, in the capture record). Must never: panic, or write a packet whose headers
//! disagree with each other.

use std::net::IpAddr;

use super::FlowHeaders;
use crate::event::LinkType;

/// Source MAC of every synthesised frame (locally administered).
pub const SYNTH_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of every synthesised frame (locally administered).
pub const SYNTH_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

const TTL: u8 = 64;

/// A packet with the headers `h` names, starting at Ethernet; `None` when `h` lacks either
/// address or the two are of different families. `orig_len` is not written anywhere: lengths
/// in the headers describe the bytes returned.
pub fn synthesize(h: &FlowHeaders, orig_len: u32) -> Option<(Vec<u8>, LinkType)> {
    let _ = orig_len;
    let (src, dst) = (h.src?, h.dst?);
    let l4 = transport(h, src, dst)?;
    // Exactly the packet's length: a vector with room to spare becomes `Bytes` through a
    // shared header, one allocation more per event.
    let ip_len = if src.is_ipv4() { 20 } else { 40 };
    let mut p = Vec::with_capacity(14 + ip_len + l4.len);
    p.extend_from_slice(&SYNTH_DST_MAC);
    p.extend_from_slice(&SYNTH_SRC_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = u16::try_from(20 + l4.len).ok()?;
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = TTL;
            ip[9] = h.proto;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&0x86ddu16.to_be_bytes());
            let plen = u16::try_from(l4.len).ok()?;
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&plen.to_be_bytes());
            ip[6] = if h.proto == 0 { 59 } else { h.proto };
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            p.extend_from_slice(&ip);
        }
        _ => return None,
    }
    p.extend_from_slice(l4.as_slice());
    Some((p, LinkType::Ethernet))
}

/// A transport header built in place: at most TCP's 20 bytes, no allocation.
struct L4 {
    bytes: [u8; 20],
    len: usize,
}

impl L4 {
    fn new() -> L4 {
        L4 {
            bytes: [0; 20],
            len: 0,
        }
    }

    fn push(&mut self, b: &[u8]) {
        if let Some(to) = self.bytes.get_mut(self.len..self.len + b.len()) {
            to.copy_from_slice(b);
            self.len += b.len();
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.bytes.get_mut(..self.len).unwrap_or(&mut [])
    }
}

/// The transport header (checksums filled in); empty when there is nothing to write.
fn transport(h: &FlowHeaders, src: IpAddr, dst: IpAddr) -> Option<L4> {
    let mut l4 = L4::new();
    let [s0, s1] = h.sport.to_be_bytes();
    let [d0, d1] = h.dport.to_be_bytes();
    let csum_at = match h.proto {
        6 => {
            let flags = h.tcp_flags.unwrap_or(0);
            l4.push(&[s0, s1, d0, d1, 0, 0, 0, 0, 0, 0, 0, 0]);
            l4.push(&[5 << 4, flags, 0, 0, 0, 0, 0, 0]);
            Some(16)
        }
        17 => {
            l4.push(&[s0, s1, d0, d1, 0, 8, 0, 0]);
            Some(6)
        }
        132 => {
            l4.push(&[s0, s1, d0, d1, 0, 0, 0, 0, 0, 0, 0, 0]);
            // SCTP's checksum is CRC32c, stored little-endian (RFC 4960 appendix B / RFC 3309).
            let crc = crc32c(l4.as_slice());
            l4.len = 8;
            l4.push(&crc.to_le_bytes());
            None
        }
        1 | 58 => match h.icmp {
            Some((t, c)) => {
                l4.push(&[t, c, 0, 0, 0, 0, 0, 0]);
                if h.proto == 1 && src.is_ipv4() {
                    let cs = checksum(&[l4.as_slice()]);
                    if let Some(at) = l4.as_mut_slice().get_mut(2..4) {
                        at.copy_from_slice(&cs.to_be_bytes());
                    }
                    None
                } else {
                    Some(2)
                }
            }
            None => None,
        },
        _ => None,
    };
    if let Some(at) = csum_at {
        let len = u32::try_from(l4.len).ok()?;
        let c = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut ph = [0u8; 12];
                ph[0..4].copy_from_slice(&s.octets());
                ph[4..8].copy_from_slice(&d.octets());
                ph[9] = h.proto;
                ph[10..12].copy_from_slice(&(len as u16).to_be_bytes());
                checksum(&[&ph, l4.as_slice()])
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ph = [0u8; 40];
                ph[0..16].copy_from_slice(&s.octets());
                ph[16..32].copy_from_slice(&d.octets());
                ph[32..36].copy_from_slice(&len.to_be_bytes());
                ph[39] = h.proto;
                checksum(&[&ph, l4.as_slice()])
            }
            _ => return None,
        };
        // UDP sends a computed 0 as all ones (0 means "no checksum").
        let c = if h.proto == 17 && c == 0 { 0xffff } else { c };
        if let Some(slot) = l4.as_mut_slice().get_mut(at..at + 2) {
            slot.copy_from_slice(&c.to_be_bytes());
        }
    }
    Some(l4)
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even length
/// except possibly the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            if let [hi, lo] = *c {
                sum += u32::from(u16::from_be_bytes([hi, lo]));
            }
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), bitwise: a few bytes per packet.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{summarize_into, PacketSummary, TunnelHint, FAMILY_V4, FAMILY_V6};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: [u8; 4]) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    }
    fn v6(s: &str) -> Option<IpAddr> {
        Some(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()))
    }

    fn cases() -> Vec<FlowHeaders> {
        let mut v = Vec::new();
        for (src, dst) in [
            (v4([10, 0, 0, 1]), v4([192, 168, 1, 2])),
            (v6("fd00::1"), v6("2001:db8::ff")),
        ] {
            let six = matches!(src, Some(IpAddr::V6(_)));
            v.push(FlowHeaders {
                src,
                dst,
                proto: 6,
                sport: 31793,
                dport: 8080,
                icmp: None,
                tcp_flags: Some(0x02),
            });
            v.push(FlowHeaders {
                src,
                dst,
                proto: 6,
                sport: 443,
                dport: 50000,
                icmp: None,
                tcp_flags: Some(0x12 | 0x01 | 0x80),
            });
            v.push(FlowHeaders {
                src,
                dst,
                proto: 17,
                sport: 5353,
                dport: 53,
                ..Default::default()
            });
            v.push(FlowHeaders {
                src,
                dst,
                proto: 132,
                sport: 36412,
                dport: 2905,
                ..Default::default()
            });
            v.push(FlowHeaders {
                src,
                dst,
                proto: if six { 58 } else { 1 },
                icmp: Some(if six { (128, 0) } else { (3, 13) }),
                ..Default::default()
            });
        }
        v
    }

    #[test]
    fn summary_reads_back_the_headers() {
        for h in cases() {
            let (p, link) = synthesize(&h, 1500).unwrap();
            assert_eq!(link, LinkType::Ethernet);
            let mut s = PacketSummary::default();
            summarize_into(&p, link, TunnelHint::None, &mut s);
            // The engine's summary does not read SCTP ports (yet): it stops there.
            let sctp = h.proto == 132;
            let want_stop = sctp.then_some(crate::packet::Stop::Unsupported);
            assert_eq!(s.stop, want_stop, "{h:?}");
            let (fam, src, dst) = match (h.src.unwrap(), h.dst.unwrap()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
                    x[..4].copy_from_slice(&a.octets());
                    y[..4].copy_from_slice(&b.octets());
                    (FAMILY_V4, x, y)
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => (FAMILY_V6, a.octets(), b.octets()),
                _ => unreachable!(),
            };
            assert_eq!(s.flow.family, fam);
            assert_eq!(s.flow.src, src);
            assert_eq!(s.flow.dst, dst);
            assert_eq!(s.flow.proto, h.proto);
            let want_ports = if sctp { (0, 0) } else { (h.sport, h.dport) };
            assert_eq!((s.flow.sport, s.flow.dport), want_ports, "{h:?}");
            assert_eq!(s.tcp_flags, h.tcp_flags.unwrap_or(0));
            assert_eq!(s.icmp, h.icmp);
            assert_eq!(s.src_mac, Some(SYNTH_SRC_MAC));
            assert_eq!(s.dst_mac, Some(SYNTH_DST_MAC));
        }
    }

    #[test]
    fn lengths_and_checksums_are_consistent() {
        let h = &cases()[0];
        let (p, _) = synthesize(h, 9000).unwrap();
        assert_eq!(p.len(), 14 + 20 + 20);
        assert_eq!(&p[16..18], &40u16.to_be_bytes());
        assert_eq!(checksum(&[&p[14..34]]), 0, "IPv4 header checksum");
        let udp6 = &cases()[7];
        assert_eq!(udp6.proto, 17);
        let (p, _) = synthesize(udp6, 0).unwrap();
        assert_eq!(p.len(), 14 + 40 + 8);
        assert_eq!(&p[18..20], &8u16.to_be_bytes(), "payload length");
        assert_eq!(&p[58..60], &8u16.to_be_bytes(), "UDP length");
        let mut ph = Vec::new();
        ph.extend_from_slice(&p[22..54]);
        ph.extend_from_slice(&8u32.to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(checksum(&[&ph, &p[54..]]), 0, "UDP checksum");
        // CRC32c check value of "123456789" (RFC 3720 B.4).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn no_address_no_packet() {
        let mut h = cases()[0].clone();
        h.dst = None;
        assert_eq!(synthesize(&h, 0), None);
        let mut h = cases()[0].clone();
        h.src = None;
        assert_eq!(synthesize(&h, 0), None);
        let mut h = cases()[0].clone();
        h.dst = v6("::1");
        assert_eq!(synthesize(&h, 0), None, "mixed families");
        assert_eq!(synthesize(&FlowHeaders::default(), 0), None);
        // Unknown protocol: the IP header alone (v6: No Next Header).
        let h = FlowHeaders {
            src: v6("fd00::1"),
            dst: v6("fd00::2"),
            ..Default::default()
        };
        let (p, _) = synthesize(&h, 0).unwrap();
        assert_eq!(p.len(), 54);
        assert_eq!(p[20], 59);
    }

    /// A classic pcap (microseconds, LINKTYPE_ETHERNET) of `packets`.
    fn pcap(packets: &[Vec<u8>]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for (i, p) in packets.iter().enumerate() {
            f.extend_from_slice(&(i as u32).to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(p);
        }
        f
    }

    #[test]
    fn tshark_reads_the_same_headers() {
        if std::process::Command::new("tshark")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: tshark is not installed");
            return;
        }
        let cases = cases();
        let packets: Vec<Vec<u8>> = cases.iter().map(|h| synthesize(h, 0).unwrap().0).collect();
        let dir = std::env::temp_dir().join(format!("dropscope-synth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("synth.pcap");
        std::fs::write(&file, pcap(&packets)).unwrap();
        let out = std::process::Command::new("tshark")
            .args([
                "-n",
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
            ])
            .arg("-r")
            .arg(&file)
            .args([
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "ip.src",
                "-e",
                "ipv6.src",
            ])
            .args([
                "-e",
                "ip.dst",
                "-e",
                "ipv6.dst",
                "-e",
                "tcp.srcport",
                "-e",
                "udp.srcport",
            ])
            .args([
                "-e",
                "sctp.srcport",
                "-e",
                "tcp.dstport",
                "-e",
                "udp.dstport",
            ])
            .args([
                "-e",
                "sctp.dstport",
                "-e",
                "tcp.flags",
                "-e",
                "icmp.type",
                "-e",
                "icmpv6.type",
            ])
            .args([
                "-e",
                "icmp.code",
                "-e",
                "icmpv6.code",
                "-e",
                "_ws.expert.severity",
            ])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), cases.len(), "{text}");
        for (h, line) in cases.iter().zip(lines) {
            let f: Vec<&str> = line.split('|').collect();
            let pick = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_string()
                } else {
                    a.to_string()
                }
            };
            let src: IpAddr = pick(f[0], f[1]).parse().unwrap();
            let dst: IpAddr = pick(f[2], f[3]).parse().unwrap();
            assert_eq!((Some(src), Some(dst)), (h.src, h.dst), "{line}");
            let ports = |a: &str, b: &str, c: &str| format!("{a}{b}{c}");
            match h.proto {
                6 | 17 | 132 => {
                    assert_eq!(ports(f[4], f[5], f[6]), h.sport.to_string(), "{line}");
                    assert_eq!(ports(f[7], f[8], f[9]), h.dport.to_string(), "{line}");
                }
                _ => {
                    let (t, c) = h.icmp.unwrap();
                    assert_eq!(pick(f[11], f[12]), t.to_string(), "{line}");
                    assert_eq!(pick(f[13], f[14]), c.to_string(), "{line}");
                }
            }
            if h.proto == 6 {
                assert_eq!(f[10], format!("0x{:04x}", h.tcp_flags.unwrap()), "{line}");
            }
            // No expert info of error severity (bad checksums, malformed lengths).
            assert!(!f[15].contains("8388608"), "expert error: {line}");
        }
    }
}
