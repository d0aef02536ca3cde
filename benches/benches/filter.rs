//! Filter throughput: `engine::filter::Program::run` (the classic BPF interpreter) on
//! libpcap-compiled expressions, matching and non-matching packets, in packets per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::filter::Expression;

fn frame(dst_ip: [u8; 4], proto: u8, dport: u16) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00];
    let l4_len = if proto == 6 { 20 } else { 8 };
    let total = (20 + l4_len + 64) as u16;
    v.extend_from_slice(&[0x45, 0]);
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 1, 9]);
    v.extend_from_slice(&dst_ip);
    v.extend_from_slice(&51000u16.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        v.extend_from_slice(&[0, 72, 0, 0]);
    }
    v.extend(std::iter::repeat_n(0u8, 64));
    v
}

fn bench_filter(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine::filter::run");
    g.throughput(Throughput::Elements(1));
    let hit = frame([10, 0, 1, 7], 6, 443);
    let miss_port = frame([10, 0, 1, 7], 6, 80);
    let miss_udp = frame([10, 0, 1, 7], 17, 53);
    let typical = Expression::compile("tcp port 443 and host 10.0.1.7").unwrap();
    let udp = Expression::compile("udp").unwrap();
    let long = Expression::compile(
        "(tcp dst portrange 440-450 or udp port 53) and net 10.0.0.0/8 and not host 10.9.9.9 \
         and ip[8] > 1",
    )
    .unwrap();
    eprintln!(
        "filter bench: typical {} insns, udp {} insns, long {} insns",
        typical.eth.insns().len(),
        udp.eth.insns().len(),
        long.eth.insns().len()
    );
    let cases: [(&str, &Expression, &Vec<u8>, bool); 6] = [
        ("typical_match", &typical, &hit, true),
        ("typical_miss_port", &typical, &miss_port, false),
        ("typical_miss_udp", &typical, &miss_udp, false),
        ("udp_match", &udp, &miss_udp, true),
        ("udp_miss", &udp, &hit, false),
        ("long_match", &long, &hit, true),
    ];
    for (name, x, pkt, want) in cases {
        assert_eq!(x.matches(false, pkt, pkt.len() as u32), want, "{name}");
        let wire = pkt.len() as u32;
        g.bench_function(name, |b| {
            b.iter(|| black_box(&x.eth).run(black_box(pkt.as_slice()), black_box(wire)))
        });
    }
    // The peer: libpcap's own classic BPF interpreter (bpf_filter), same program and packets.
    for (name, x, pkt) in [
        ("libpcap_typical_match", &typical, &hit),
        ("libpcap_typical_miss_port", &typical, &miss_port),
        ("libpcap_udp_match", &udp, &miss_udp),
    ] {
        let wire = pkt.len() as u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                engine::filter::pcap_ffi::libpcap_run(
                    black_box(&x.eth),
                    black_box(pkt.as_slice()),
                    black_box(wire),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_filter);
criterion_main!(benches);
