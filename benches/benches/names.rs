//! Pod names cost on the pipeline (issue 10: "name lookups never on the per-drop hot path"),
//! over 200,000 kernel drops from 1,000 pod namespaces, with names off and with a snapshot
//! naming all 1,000 pods (by namespace and address):
//!
//! * `decode`: the decode stage alone (summaries, flow table; nothing rendered);
//! * `pcapng`: and a pcapng file with each packet's comment (which names its pods);
//! * `pcapng_json`: and a JSON line per packet (which carries them as fields too).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::event::{Batch, Cause, Event, LinkType};
use engine::lookup::Names;
use engine::pipeline::{run, PipelineConfig, Progress, SourceFn, SourceReport};
use engine::pods::{Pod, PodNames, Snapshot};
use engine::sink::{OutputSink, PrintMode};

const EVENTS: usize = 200_000;
const PODS: u32 = 1_000;
const NETNS0: u32 = 4_026_532_000;

fn udp_packet(i: u32) -> Vec<u8> {
    let mut p = vec![0u8; 62];
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    p[14] = 0x45;
    p[16..18].copy_from_slice(&48u16.to_be_bytes());
    p[23] = 17;
    let (src, dst) = (pod_ip(i % PODS), pod_ip((i + 1) % PODS));
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
        p[26..30].copy_from_slice(&s.octets());
        p[30..34].copy_from_slice(&d.octets());
    }
    p[34..36].copy_from_slice(&(40_000 + (i % 7) as u16).to_be_bytes());
    p[36..38].copy_from_slice(&9u16.to_be_bytes());
    p
}

fn pod_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, (i / 250) as u8, (i % 250) as u8 + 1))
}

fn batches() -> Vec<Batch> {
    let mut out = Vec::new();
    let mut b = Batch::with_capacity(256);
    for i in 0..EVENTS as u32 {
        b.events.push(Event {
            ts_ns: 1_700_000_000_000_000_000 + u64::from(i),
            ifindex: 2,
            netns: NETNS0 + i % PODS,
            cpu: i % 2,
            orig_len: 62,
            link: LinkType::Ethernet,
            data: Bytes::from(udp_packet(i)),
            cause: Cause::Kernel {
                reason: 3,
                location: 0xffff_ffff_81b2_c3d4,
                protocol: 0x0800,
            },
            meta: None,
        });
        if b.events.len() == 256 {
            out.push(std::mem::replace(&mut b, Batch::with_capacity(256)));
        }
    }
    out.push(b);
    out
}

fn pods() -> Arc<PodNames> {
    let mut s = Snapshot::default();
    for i in 0..PODS {
        let p = Arc::new(Pod {
            namespace: Some(format!("ns-{}", i % 20)),
            name: format!("pod-{i}"),
            ..Default::default()
        });
        s.by_netns.insert(NETNS0 + i, p.clone());
        s.by_ip.insert(pod_ip(i), p);
    }
    PodNames::fixed(s, 1)
}

#[derive(Clone, Copy)]
enum Out {
    Decode,
    Pcapng,
    PcapngJson,
}

fn pipeline(names: &Names, batches: &[Batch], out: Out) -> u64 {
    let dir = std::env::temp_dir().join(format!("dropscope-bench-names-{}", std::process::id()));
    let file = dir.with_extension("pcapng");
    let writer = match out {
        Out::Decode => None,
        Out::Pcapng | Out::PcapngJson => Some((
            engine::pcap::create(&file, engine::pcap::FileFormat::Pcapng, 262_144).unwrap(),
            file.display().to_string(),
            "pcapng".into(),
        )),
    };
    let mode = match out {
        Out::PcapngJson => PrintMode::Json,
        _ => PrintMode::None,
    };
    let sink = OutputSink::new(writer, mode, Box::new(std::io::sink()));
    let batches: Vec<Batch> = batches
        .iter()
        .map(|b| Batch {
            events: b.events.clone(),
            notices: Vec::new(),
        })
        .collect();
    let source: SourceFn<'_> = Box::new(move |tx, _stop| {
        for b in batches {
            tx.send(b)?;
        }
        Ok(SourceReport::default())
    });
    let report = run(
        &PipelineConfig::default(),
        source,
        sink,
        names,
        &AtomicBool::new(false),
        &Progress::default(),
        |_, _| {},
    )
    .unwrap();
    let _ = std::fs::remove_file(&file);
    report.ledger.totals().processed
}

fn bench(c: &mut Criterion) {
    let b = batches();
    let off = Names::load(true);
    let mut on = Names::load(true);
    on.pods = Some(pods());
    let mut g = c.benchmark_group("names");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS as u64));
    for (name, out) in [
        ("decode", Out::Decode),
        ("pcapng", Out::Pcapng),
        ("pcapng_json", Out::PcapngJson),
    ] {
        // Off then on, for each output.
        g.bench_function(format!("{name}_names_off"), |x| {
            x.iter(|| assert_eq!(pipeline(&off, &b, out), EVENTS as u64))
        });
        g.bench_function(format!("{name}_names_on"), |x| {
            x.iter(|| assert_eq!(pipeline(&on, &b, out), EVENTS as u64))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
