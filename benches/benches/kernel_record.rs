//! Ring record decoding and batching (engine::kernel::record, engine::kernel::source), and the
//! per-CPU ring reader (engine::kernel::ring) on rings in ordinary memory.

use capture_common::{KfreeSkbEvent, RecordHeader, ABI_VERSION, KIND_KFREE_SKB};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::kernel::{
    record,
    ring::TestRings,
    source::{BatchBuilder, ClockOffset},
};

fn records(n: usize, pkt_len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let ev = KfreeSkbEvent {
                hdr: RecordHeader {
                    version: ABI_VERSION,
                    kind: KIND_KFREE_SKB,
                    hdr_len: 48,
                    cpu: 0,
                    ts_ns: i as u64,
                },
                location: 0xffff_ffff_8100_0000,
                reason: 3,
                ifindex: 2,
                netns_ino: 4026531840,
                orig_len: pkt_len as u32,
                cap_len: pkt_len as u16,
                protocol: 0x0008,
                flags: 0,
                _pad: 0,
                net_off: 0,
            };
            let mut v = Vec::new();
            record::encode(&ev, &vec![0x5a; pkt_len], &mut v);
            v
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let recs = records(256, 142);
    let mut g = c.benchmark_group("kernel::record");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("parse_142B", |b| {
        b.iter(|| {
            for r in &recs {
                black_box(record::parse(black_box(r)).ok());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("kernel::source");
    for (name, len) in [("batch_64_of_142B", 142usize), ("batch_64_of_1514B", 1514)] {
        let recs = records(64, len);
        g.throughput(Throughput::Elements(recs.len() as u64));
        let mut builder = BatchBuilder::new(64, ClockOffset::from_offset(0));
        g.bench_function(name, |b| {
            b.iter(|| {
                for r in &recs {
                    builder.push(r);
                }
                black_box(builder.take())
            })
        });
    }
    g.finish();

    // The reader's whole path for 2 x 1024 records of a 106-byte packet (the flood's 64-byte
    // UDP datagram): walk two CPUs' rings, decode, batch (sorted by time). Producing the
    // records is in the measured loop too (a memcpy each, as the kernel program's writes).
    let mut g = c.benchmark_group("kernel::ring");
    let recs = records(1024, 106);
    g.throughput(Throughput::Elements(2 * recs.len() as u64));
    let mut rings = TestRings::new(2, 8).unwrap();
    let mut builder = BatchBuilder::new(256, ClockOffset::from_offset(0));
    g.bench_function("produce_and_drain_2cpu_106B", |b| {
        b.iter(|| {
            for r in &recs {
                assert!(rings.produce(0, r) && rings.produce(1, r));
            }
            let mut n = 0usize;
            rings.drain(|rec| {
                if builder.push(rec) {
                    n += builder.take().events.len();
                }
            });
            n += builder.take().events.len();
            assert_eq!(n, 2 * recs.len());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
