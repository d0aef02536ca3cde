//! Capture-file sinks and the replay reader: records per second for 1M 100-byte packets.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::comment::{kernel_comment, parse_comment};
use engine::event::{Batch, LinkType};
use engine::pcap::{create, FileFormat, FileSource, IfaceKey, OutPacket};

const N: u64 = 1_000_000;

fn packet() -> Vec<u8> {
    let mut p = vec![0u8; 100];
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    p[14] = 0x45;
    p
}

fn path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dropscope-bench-{}-{name}", std::process::id()))
}

fn name(k: &IfaceKey) -> String {
    format!("if{}", k.ifindex)
}

/// Writes N packets over 4 interfaces; `comment` formats a kernel-drop comment per packet.
fn write(path: &Path, format: FileFormat, comment: bool) {
    let data = packet();
    let mut text = String::with_capacity(128);
    let mut w = create(path, format, 0).unwrap();
    for i in 0..N {
        let iface = IfaceKey {
            ifindex: (i % 4) as u32 + 1,
            netns: 4026531840,
            link: LinkType::Ethernet,
        };
        let c = if comment {
            text.clear();
            kernel_comment(
                &mut text,
                "NO_SOCKET",
                3,
                Some(("__udp4_lib_rcv", 0x5b4)),
                0xffffffff81b2c3d4,
                4026531840,
            );
            Some(text.as_str())
        } else {
            None
        };
        let p = OutPacket {
            ts_ns: 1_700_000_000_000_000_000 + i,
            iface,
            orig_len: 100,
            data: &data,
            comment: c,
            flags: 0,
        };
        w.write(&p, &name).unwrap();
    }
    let st = w.finish().unwrap();
    assert_eq!(st.packets, N);
}

fn read(path: &Path) -> u64 {
    let mut s = FileSource::open(path).unwrap();
    let mut b = Batch::with_capacity(1024);
    let mut n = 0u64;
    loop {
        b.events.clear();
        let got = s.next_batch(&mut b, 1024).unwrap();
        if got == 0 {
            break;
        }
        n += got as u64;
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine::pcap::write");
    g.throughput(Throughput::Elements(N)).sample_size(10);
    let p = path("w.pcapng");
    g.bench_function("pcapng", |b| {
        b.iter(|| write(&p, FileFormat::Pcapng, false))
    });
    g.bench_function("pcapng_kernel_comment", |b| {
        b.iter(|| write(&p, FileFormat::Pcapng, true))
    });
    let q = path("w.pcap");
    g.bench_function("pcap", |b| b.iter(|| write(&q, FileFormat::Pcap, false)));
    g.finish();

    let mut g = c.benchmark_group("engine::pcap::read");
    g.throughput(Throughput::Elements(N)).sample_size(10);
    write(&p, FileFormat::Pcapng, true);
    g.bench_function("pcapng_kernel_comment", |b| {
        b.iter(|| assert_eq!(read(&p), N))
    });
    write(&q, FileFormat::Pcap, false);
    g.bench_function("pcap", |b| b.iter(|| assert_eq!(read(&q), N)));
    g.finish();
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_file(&q);

    let mut g = c.benchmark_group("engine::comment");
    g.throughput(Throughput::Elements(1));
    let mut text = String::with_capacity(128);
    g.bench_function("kernel_comment", |b| {
        b.iter(|| {
            text.clear();
            kernel_comment(
                &mut text,
                "NO_SOCKET",
                3,
                Some(("__udp4_lib_rcv", 0x5b4)),
                0xffffffff81b2c3d4,
                4026531840,
            );
            text.len()
        })
    });
    g.bench_function("parse_comment", |b| {
        b.iter(|| parse_comment(std::hint::black_box(&text)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
