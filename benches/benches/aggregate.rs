//! Per-flow x reason aggregation throughput: `engine::aggregate::FlowTable::add` over 1M
//! events, against the same job done by hashbrown's default map (foldhash over the derived
//! `Hash`) and std's `HashMap` (SipHash), which is how its hash was chosen.
//!
//! Then the report's orderings of a table of 1M rows: the top 100 (a bounded heap), all rows
//! in place (`sort_top_by_packets`), all rows through references (`top_by_packets` on a
//! table not ordered in place), and a sorted copy (`sorted_by_packets`, what reports did
//! before).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::aggregate::{AggKey, AggValue, FlowTable, ReasonKey};
use engine::packet::FlowKey;
use std::net::Ipv4Addr;

const EVENTS: usize = 1_000_000;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const REASONS: [ReasonKey; 3] = [
    ReasonKey::Kernel(2),
    ReasonKey::Kernel(77),
    ReasonKey::Cilium(133),
];

fn flow_key(n: u32, reason: ReasonKey) -> AggKey {
    let [_, b, c, d] = n.to_be_bytes();
    AggKey {
        flow: FlowKey::v4(
            Ipv4Addr::new(10, b, c, d),
            30000 + (n % 20000) as u16,
            Ipv4Addr::new(10, 96, 0, 10),
            53,
            17,
        ),
        ifindex: 2 + n % 4,
        netns: 4026531840,
        reason,
        src_identity: 1000 + n % 50,
        dst_identity: 2000,
    }
}

/// `EVENTS` events spread uniformly over `flows` flows, each with one of `reasons` reasons.
fn events(flows: u32, per_flow_reasons: bool) -> Vec<(AggKey, u32, u64)> {
    let mut rng = Lcg(42);
    let mut ts = 1_700_000_000_000_000_000u64;
    (0..EVENTS)
        .map(|_| {
            let n = (rng.next() % u64::from(flows)) as u32;
            let reason = if per_flow_reasons {
                REASONS[(rng.next() % 3) as usize]
            } else {
                REASONS[(n % 3) as usize]
            };
            ts += rng.next() % 2000;
            (flow_key(n, reason), 64 + (rng.next() % 1400) as u32, ts)
        })
        .collect()
}

fn bump(v: &mut AggValue, len: u32, ts: u64) {
    v.packets += 1;
    v.bytes += u64::from(len);
    v.first_ns = v.first_ns.min(ts);
    v.last_ns = v.last_ns.max(ts);
}

fn aggregate(c: &mut Criterion) {
    let cases = [
        ("1k_flows_x3_reasons", events(1000, true), 1 << 20),
        ("100k_flows", events(100_000, false), 1 << 20),
        ("100k_flows_capped_at_10k", events(100_000, false), 10_000),
        // ~632k distinct keys in 1M events: the table grows through every size.
        ("1M_flows", events(1_000_000, false), 1 << 20),
    ];
    let mut g = c.benchmark_group("engine::aggregate::FlowTable::add");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    for (name, ev, max) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut t = FlowTable::new(*max);
                for (k, len, ts) in ev {
                    t.add(black_box(k), *len, *ts);
                }
                t.len()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("baseline::hashbrown::HashMap(foldhash)");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    for (name, ev, _) in cases.iter().take(2) {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut t: hashbrown::HashMap<AggKey, AggValue> = hashbrown::HashMap::new();
                for (k, len, ts) in ev {
                    match t.get_mut(black_box(k)) {
                        Some(v) => bump(v, *len, *ts),
                        None => {
                            t.insert(*k, AggValue::one(*len, *ts));
                        }
                    }
                }
                t.len()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("baseline::std::HashMap(siphash)");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    for (name, ev, _) in cases.iter().take(2) {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut t: std::collections::HashMap<AggKey, AggValue> =
                    std::collections::HashMap::new();
                for (k, len, ts) in ev {
                    match t.get_mut(black_box(k)) {
                        Some(v) => bump(v, *len, *ts),
                        None => {
                            t.insert(*k, AggValue::one(*len, *ts));
                        }
                    }
                }
                t.len()
            })
        });
    }
    g.finish();
}

/// A table of 1M rows of 1-4 packets of 64-1463 bytes (many rows tie on packets).
fn million_rows() -> FlowTable {
    let mut rng = Lcg(7);
    let mut t = FlowTable::new(1 << 20);
    for n in 0..1_000_000u32 {
        let k = flow_key(n, REASONS[(n % 3) as usize]);
        for _ in 0..=rng.next() % 4 {
            t.add(&k, 64 + (rng.next() % 1400) as u32, u64::from(n));
        }
    }
    t
}

fn order(c: &mut Criterion) {
    let table = million_rows();
    let mut g = c.benchmark_group("engine::aggregate::FlowTable::order");
    g.throughput(Throughput::Elements(table.len() as u64));
    g.sample_size(10);
    g.bench_function("top_by_packets_100", |b| {
        b.iter(|| table.top_by_packets(black_box(100)).count())
    });
    g.bench_function("sort_top_by_packets_all_in_place", |b| {
        b.iter_batched(
            || table.clone(),
            |mut t| {
                t.sort_top_by_packets(usize::MAX);
                t.top_by_packets(usize::MAX).count()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("top_by_packets_all_unsorted", |b| {
        b.iter(|| table.top_by_packets(usize::MAX).count())
    });
    g.bench_function("sorted_by_packets_copy", |b| {
        b.iter(|| table.sorted_by_packets().len())
    });
    g.finish();
}

criterion_group!(benches, aggregate, order);
criterion_main!(benches);
