//! engine::cilium::decode: v3 drop notifications (48-byte header + a 128-byte
//! Ethernet/IPv4/TCP packet + perf padding), decode alone and decode + connection summary.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::cilium::{connection_summary, decode, DecodeOptions, Notification, SummaryOpts};

const BATCH: usize = 1024;

/// One drop record: DROP_POLICY at bpf_lxc.c:1234, 128 packet bytes, 4 bytes of padding.
fn drop_record(i: u32) -> Vec<u8> {
    let mut pkt = vec![0u8; 128];
    pkt[..14].copy_from_slice(&[
        2, 0x33, 0x45, 0x67, 0x89, 0xab, 1, 0x23, 0x45, 0x67, 0x89, 0xab, 8, 0,
    ]);
    // IPv4, total length 114, TCP.
    pkt[14..34].copy_from_slice(&[
        0x45, 0, 0, 114, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 1, 2,
    ]);
    pkt[26..30].copy_from_slice(&[10, 0, (i >> 8) as u8, i as u8]);
    // TCP 40000 -> 443, data offset 5, SYN.
    pkt[34..54].copy_from_slice(&[
        0x9c, 0x40, 1, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    let mut b = vec![0u8; 48];
    b[0] = 1;
    b[1] = 133;
    b[2..4].copy_from_slice(&42u16.to_ne_bytes());
    b[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_ne_bytes());
    b[8..12].copy_from_slice(&1500u32.to_ne_bytes());
    b[12..14].copy_from_slice(&128u16.to_ne_bytes());
    b[14] = 3;
    b[16..20].copy_from_slice(&12345u32.to_ne_bytes());
    b[20..24].copy_from_slice(&2u32.to_ne_bytes());
    b[28..30].copy_from_slice(&1234u16.to_ne_bytes());
    b[30] = 2;
    b[32..36].copy_from_slice(&7u32.to_ne_bytes());
    b.extend_from_slice(&pkt);
    b.extend_from_slice(&[0; 4]);
    b
}

fn bench(c: &mut Criterion) {
    // One contiguous buffer, like a batch read from the perf ring.
    let mut ring = Vec::new();
    let mut spans = Vec::with_capacity(BATCH);
    for i in 0..BATCH as u32 {
        let r = drop_record(i);
        spans.push((ring.len(), r.len()));
        ring.extend_from_slice(&r);
    }
    let records: Vec<&[u8]> = spans.iter().map(|&(o, l)| &ring[o..o + l]).collect();
    let opts = DecodeOptions::default();
    let mut g = c.benchmark_group("engine::cilium::decode");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("drop_v3_decode", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for r in &records {
                if let Ok(d) = decode(black_box(*r), &opts) {
                    if let Notification::Drop(n) = d.notification {
                        acc = acc.wrapping_add(u64::from(n.subtype) + d.packet.len() as u64);
                    }
                }
            }
            acc
        })
    });
    g.bench_function("drop_v3_decode_summary", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for r in &records {
                if let Ok(d) = decode(black_box(*r), &opts) {
                    if let Notification::Drop(n) = d.notification {
                        let s = connection_summary(d.packet, SummaryOpts::from_cls_flags(n.flags));
                        acc = acc.wrapping_add(matches!(
                            s,
                            engine::cilium::ConnectionSummary::Conn { .. }
                        ) as u64);
                    }
                }
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
