//! Header decoding throughput: `engine::packet::summarize` on a realistic mix of drops, each
//! packet kind alone, and an etherparse `LaxSlicedPacket` decoder doing the same job as the
//! baseline it was chosen over.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::event::LinkType;
use engine::packet::{
    summarize, summarize_into, FlowKey, Layer, PacketSummary, Stop, Tunnel, TunnelHint, TunnelKind,
};
use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use std::net::Ipv6Addr;

// ---- packet builders (valid lengths, zero checksums) ----

fn eth(et: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a];
    if let Some(id) = vlan {
        v.extend_from_slice(&0x8100u16.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
    }
    v.extend_from_slice(&et.to_be_bytes());
    v
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(payload);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0x20, 0, 0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

/// The packet kinds of the mix, each cut at a 128-byte snap length like a drop capture.
fn kinds() -> Vec<(&'static str, Vec<u8>)> {
    const SNAP: usize = 128;
    let a6: Ipv6Addr = "fd00::1".parse().unwrap();
    let b6: Ipv6Addr = "fd00::2".parse().unwrap();
    let mut out = Vec::new();
    let payload = [0xabu8; 512];

    let mut p = eth(0x0800, None);
    p.extend(ipv4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        17,
        &udp(5000, 53, &payload[..64]),
    ));
    out.push(("eth_ipv4_udp", p));

    let mut p = eth(0x86dd, Some(100));
    p.extend(ipv6(a6, b6, 6, &tcp(443, 51000, 0x18, &payload)));
    out.push(("eth_vlan_ipv6_tcp", p));

    let mut inner = eth(0x0800, None);
    inner.extend(ipv4(
        [10, 1, 0, 1],
        [10, 1, 0, 2],
        6,
        &tcp(54222, 8080, 0x02, &payload),
    ));
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 2, 0];
    vx.extend(inner);
    let mut p = eth(0x0800, None);
    p.extend(ipv4(
        [192, 168, 1, 1],
        [192, 168, 1, 2],
        17,
        &udp(40000, 8472, &vx),
    ));
    out.push(("vxlan_inner_tcp", p));

    // A snapshot cut inside the TCP header (the snap length of a tiny capture).
    let mut p = eth(0x0800, None);
    p.extend(ipv4(
        [10, 0, 0, 3],
        [10, 0, 0, 4],
        6,
        &tcp(1, 2, 0x10, &payload),
    ));
    p.truncate(40);
    out.push(("truncated", p));

    for (_, p) in &mut out {
        p.truncate(SNAP);
    }
    out
}

/// 1024 packets: 50% eth/ipv4/udp, 25% eth/vlan/ipv6/tcp, 15% vxlan, 10% truncated,
/// interleaved so the branch predictor cannot learn one path.
fn mix() -> Vec<Vec<u8>> {
    let k = kinds();
    let pattern = [0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 2, 0, 1, 0, 3];
    (0..1024)
        .map(|i| {
            let mut p = k[pattern[i % pattern.len()]].1.clone();
            // Vary the addresses a little so nothing is constant-folded.
            if let Some(b) = p.get_mut(29) {
                *b = i as u8;
            }
            p
        })
        .collect()
}

// ---- the etherparse baseline: same output, built on LaxSlicedPacket ----

fn lax_fill(p: &LaxSlicedPacket<'_>, s: &mut PacketSummary) {
    if let Some(LinkSlice::Ethernet2(e)) = &p.link {
        s.src_mac = Some(e.source());
        s.dst_mac = Some(e.destination());
    }
    if let Some(id) = p.vlan_ids().first() {
        s.flow.vlan = id.value();
    }
    match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            s.flow = FlowKey::v4(
                h.source_addr(),
                0,
                h.destination_addr(),
                0,
                ip.payload().ip_number.0,
            )
            .with_vlan(s.flow.vlan);
            s.ethertype = 0x0800;
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            s.flow = FlowKey::v6(
                h.source_addr(),
                0,
                h.destination_addr(),
                0,
                ip.payload().ip_number.0,
            )
            .with_vlan(s.flow.vlan);
            s.ethertype = 0x86dd;
        }
        _ => {}
    }
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            s.flow.sport = t.source_port();
            s.flow.dport = t.destination_port();
            s.tcp_flags = t.slice().get(13).copied().unwrap_or(0);
        }
        Some(TransportSlice::Udp(u)) => {
            s.flow.sport = u.source_port();
            s.flow.dport = u.destination_port();
        }
        Some(TransportSlice::Icmpv4(i)) => s.icmp = Some((i.type_u8(), i.code_u8())),
        Some(TransportSlice::Icmpv6(i)) => s.icmp = Some((i.type_u8(), i.code_u8())),
        _ => {}
    }
    if let Some((_, layer)) = &p.stop_err {
        use etherparse::err::Layer as L;
        s.stop = Some(Stop::Truncated(match layer {
            L::Ethernet2Header => Layer::Ethernet,
            L::VlanHeader => Layer::Vlan,
            L::Ipv4Header => Layer::Ipv4,
            L::TcpHeader => Layer::Tcp,
            L::UdpHeader => Layer::Udp,
            _ => Layer::Ipv6,
        }));
    }
}

fn lax_summarize(data: &[u8]) -> PacketSummary {
    let mut s = PacketSummary::default();
    let Ok(p) = LaxSlicedPacket::from_ethernet(data) else {
        s.stop = Some(Stop::Truncated(Layer::Ethernet));
        return s;
    };
    lax_fill(&p, &mut s);
    if let Some(TransportSlice::Udp(u)) = &p.transport {
        if matches!(u.destination_port(), 4789 | 8472) {
            if let Some((vx, inner)) = u.payload().split_first_chunk::<8>() {
                let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
                let outer = s.flow;
                s = PacketSummary {
                    tunnel: Some(Tunnel {
                        kind: TunnelKind::Vxlan,
                        vni,
                        outer,
                    }),
                    ..PacketSummary::default()
                };
                if let Ok(inner) = LaxSlicedPacket::from_ethernet(inner) {
                    lax_fill(&inner, &mut s);
                }
            }
        }
    }
    s
}

fn checksum(s: &PacketSummary) -> u64 {
    u64::from(s.flow.sport)
        ^ u64::from(s.flow.dst[3])
        ^ u64::from(s.tcp_flags)
        ^ u64::from(s.tunnel.is_some())
}

fn decode(c: &mut Criterion) {
    let mix = mix();
    // The two decoders must agree on the flows of the mix before their speed is compared
    // (on cut headers they differ by design: etherparse drops a partial TCP header whole).
    for p in &mix {
        let a = summarize(p, LinkType::Ethernet, TunnelHint::ByPort);
        let b = lax_summarize(p);
        if b.stop.is_some() {
            continue;
        }
        assert_eq!(
            (a.flow, a.tunnel, a.tcp_flags),
            (b.flow, b.tunnel, b.tcp_flags),
            "{a} vs {b}"
        );
    }

    let mut g = c.benchmark_group("engine::packet::summarize");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("mix", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for p in &mix {
                acc ^= checksum(&summarize(
                    black_box(p),
                    LinkType::Ethernet,
                    TunnelHint::ByPort,
                ));
            }
            acc
        })
    });
    g.bench_function("mix_into", |b| {
        let mut out = vec![PacketSummary::default(); mix.len()];
        b.iter(|| {
            for (p, o) in mix.iter().zip(out.iter_mut()) {
                summarize_into(black_box(p), LinkType::Ethernet, TunnelHint::ByPort, o);
            }
            out.iter().fold(0, |acc, s| acc ^ checksum(s))
        })
    });
    for (name, p) in kinds() {
        let batch: Vec<Vec<u8>> = (0..1024).map(|_| p.clone()).collect();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut acc = 0u64;
                for p in &batch {
                    acc ^= checksum(&summarize(
                        black_box(p),
                        LinkType::Ethernet,
                        TunnelHint::ByPort,
                    ));
                }
                acc
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("baseline::etherparse::LaxSlicedPacket");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("mix", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for p in &mix {
                acc ^= checksum(&lax_summarize(black_box(p)));
            }
            acc
        })
    });
    let udp4 = kinds().swap_remove(0).1;
    let batch: Vec<Vec<u8>> = (0..1024).map(|_| udp4.clone()).collect();
    g.bench_function("eth_ipv4_udp", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for p in &batch {
                acc ^= checksum(&lax_summarize(black_box(p)));
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
