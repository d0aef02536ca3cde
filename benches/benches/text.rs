//! The text formats' line parsers alone, one thread, over lines in memory (issue 9: monitor
//! `-vv` text and Hubble lines read 10x faster than text2pcap): per record, what
//! `dropscope replay` spends in each worker before a record becomes an event. The whole
//! replay, threads and all, is scripts/bench-text-replay.sh.
//!
//! * `hubble_line`: 10,000 Hubble flow lines through `HubbleParser`;
//! * `monitor_vv`: 10,000 `cilium-dbg monitor -vv` drops (header, hex dump, separator:
//!   six lines each) through `MonitorTextParser`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dropscope_benches::textgen::{hubble_line, MonitorVv};
use engine::cilium::tables::CiliumRelease;
use engine::ingest::hubble::HubbleParser;
use engine::ingest::monitor_text::MonitorTextParser;
use engine::ingest::{Item, LineParser, Skips};

const RECORDS: usize = 10_000;

/// Every line of `text` through `parser`; the records it made (checked by the caller).
fn parse_all(parser: &mut dyn LineParser, text: &str, items: &mut Vec<Item>) -> usize {
    items.clear();
    let mut skips = Skips::default();
    for line in text.lines() {
        parser.line(line, items, &mut skips);
    }
    parser.finish(items, &mut skips);
    items.len()
}

fn text(c: &mut Criterion) {
    let mut hubble = String::new();
    let mut monitor = String::new();
    let vv = MonitorVv::default();
    for i in 0..RECORDS {
        hubble_line(&mut hubble, i);
        vv.record(&mut monitor, i);
    }
    let mut items = Vec::with_capacity(RECORDS);
    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, input, parser) in [
        (
            "hubble_line",
            &hubble,
            Box::new(HubbleParser::new(CiliumRelease::default())) as Box<dyn LineParser>,
        ),
        (
            "monitor_vv",
            &monitor,
            Box::new(MonitorTextParser::new(CiliumRelease::default())),
        ),
    ] {
        let mut parser = parser;
        assert_eq!(
            parse_all(&mut *parser, input, &mut items),
            RECORDS,
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| parse_all(&mut *parser, input, &mut items))
        });
    }
    g.finish();
}

criterion_group!(benches, text);
criterion_main!(benches);
