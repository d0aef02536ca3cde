//! Root tests of the kernel drop capture: a fresh pair of network namespaces joined by a
//! veth per test, provoked drops with a known reason, exact counts.
//!
//! Skipped (with the reason printed) when not root, without kernel BTF, or without `ip`.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use engine::netns_rig::NetnsPair;
use engine::{
    event::{Batch, Cause, Event, LinkType},
    kernel::{
        testing::TcShot, AttachMode, Kallsyms, KernelReasons, KernelSource, LoadOptions,
        SourceStats,
    },
};

const PAYLOAD: usize = 100;

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("no /sys/kernel/btf/vmlinux".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no `ip` command".into());
    }
    if engine::kernel::loader::object().is_empty() {
        return Some("built with AYA_BUILD_SKIP (no eBPF object)".into());
    }
    None
}

macro_rules! skip_unless_capable {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// IPv4/UDP 5-tuple of an Ethernet frame: (src, dst, sport, dport), parsed locally.
fn udp4_tuple(data: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, u16)> {
    let ethertype = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
    if ethertype != 0x0800 {
        return None;
    }
    let ip = data.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 || ihl < 20 {
        return None;
    }
    let src = Ipv4Addr::new(*ip.get(12)?, *ip.get(13)?, *ip.get(14)?, *ip.get(15)?);
    let dst = Ipv4Addr::new(*ip.get(16)?, *ip.get(17)?, *ip.get(18)?, *ip.get(19)?);
    let udp = ip.get(ihl..)?;
    Some((
        src,
        dst,
        u16::from_be_bytes([*udp.first()?, *udp.get(1)?]),
        u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]),
    ))
}

struct Capture {
    matching: Vec<Event>,
    stats: SourceStats,
    source: KernelSource,
}

/// Opens the source, runs `provoke`, collects events of `netns` + 5-tuple until `want`
/// arrived (or 10 s), then stops (detach, drain) and collects the rest.
fn capture(
    pair: &NetnsPair,
    netns: u32,
    sport: u16,
    dport: u16,
    want: usize,
    provoke: impl FnOnce(),
) -> Capture {
    let (ip_a, ip_b) = (pair.ip4_a, pair.ip4_b);
    let mut source =
        KernelSource::open(&LoadOptions::default(), 1 << 20).expect("load the kfree_skb program");
    eprintln!("attached with {}", source.mode().as_str());
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(16);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let runner = std::thread::spawn(move || {
        let stats = source.run(&tx, &stop2, 64).expect("run");
        (source, stats)
    });
    provoke();
    let is_match =
        |e: &Event| e.netns == netns && udp4_tuple(&e.data) == Some((ip_a, ip_b, sport, dport));
    let mut matching = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while matching.len() < want && Instant::now() < deadline {
        if let Ok(batch) = rx.recv_timeout(Duration::from_millis(100)) {
            matching.extend(batch.events.into_iter().filter(|e| is_match(e)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Keep receiving while the source drains, then take what is left.
    let mut rest = Vec::new();
    while !runner.is_finished() {
        if let Ok(batch) = rx.recv_timeout(Duration::from_millis(20)) {
            rest.push(batch);
        }
    }
    let (source, stats) = runner.join().unwrap();
    rest.extend(rx.try_iter());
    for batch in rest {
        matching.extend(batch.events.into_iter().filter(|e| is_match(e)));
    }
    Capture {
        matching,
        stats,
        source,
    }
}

/// seen == not_copied + delivered + ring_full and seen == in the flow table + table_full
/// for every reason, and nothing malformed.
fn assert_reconciles(c: &Capture) {
    assert!(!c.source.is_attached());
    let k = c.source.kernel_counters().unwrap();
    let in_table = c.source.profile().flows.per_reason();
    assert_eq!(c.stats.malformed.total(), 0, "{:?}", c.stats.malformed);
    let reasons: std::collections::BTreeSet<u32> = k
        .per_reason
        .keys()
        .chain(c.stats.delivered.keys())
        .copied()
        .collect();
    for r in reasons {
        let counter = k.per_reason.get(&r).copied().unwrap_or_default();
        let delivered = c.stats.delivered.get(&r).copied().unwrap_or(0);
        assert_eq!(
            counter.seen,
            counter.not_copied + delivered + counter.ring_full,
            "reason {r}: {counter:?} delivered {delivered}"
        );
        assert_eq!(
            counter.seen,
            in_table.get(&r).copied().unwrap_or(0) + counter.table_full,
            "reason {r}: {counter:?} in the flow table {:?}",
            in_table.get(&r)
        );
    }
    let per_reason_seen: u64 = k.per_reason.values().map(|c| c.seen).sum();
    assert_eq!(k.seen, per_reason_seen + k.reason_map_full);
    assert_eq!(
        k.ring_full,
        k.per_reason.values().map(|c| c.ring_full).sum::<u64>()
    );
    eprintln!(
        "kernel counters: seen {} ring_full {} read_failed {} reason_map_full {}; delivered {} in {} batches; per reason {:?}",
        k.seen,
        k.ring_full,
        k.read_failed,
        k.reason_map_full,
        c.stats.delivered_total(),
        c.stats.batches,
        k.per_reason.iter().map(|(r, c)| (*r, c.seen)).collect::<BTreeMap<_, _>>()
    );
}

#[test]
fn udp_to_closed_port_gives_exactly_n_no_socket_drops() {
    skip_unless_capable!();
    const N: usize = 200;
    let (sport, dport) = (40001, 9);
    let pair = NetnsPair::new();
    let netns_b = pair.inode(&pair.b);
    let ifindex_b = pair.ifindex(&pair.b, &pair.veth_b);
    let reasons = KernelReasons::load();
    let c = capture(&pair, netns_b, sport, dport, N, || {
        pair.send_udp(false, sport, dport, N, PAYLOAD)
    });

    assert_eq!(c.matching.len(), N);
    let no_socket = reasons.value("NO_SOCKET").unwrap();
    let frame_len = 14 + 20 + 8 + PAYLOAD;
    let ksyms = Kallsyms::load();
    for e in &c.matching {
        let Cause::Kernel {
            reason,
            location,
            protocol,
        } = e.cause
        else {
            panic!("{:?}", e.cause)
        };
        assert_eq!(reasons.name(reason), "NO_SOCKET");
        assert_eq!(reason, no_socket);
        assert_eq!(protocol, 0x0800);
        assert_ne!(location, 0);
        assert_eq!(e.link, LinkType::Ethernet);
        assert_eq!(e.netns, netns_b);
        assert_eq!(e.ifindex, ifindex_b);
        assert_eq!(e.orig_len as usize, frame_len);
        assert_eq!(e.data.len(), frame_len);
        assert_eq!(&e.data[0..6], &pair.mac_b);
        assert_eq!(&e.data[6..12], &pair.mac_a);
        assert!(e.data[42..].iter().all(|&b| b == 0x5a));
    }
    let first = &c.matching[0];
    if let Cause::Kernel { location, .. } = first.cause {
        eprintln!("NO_SOCKET drop location: {}", ksyms.format(location));
    }
    // Timestamps are wall-clock and within the last minute.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        first.ts_ns <= now && now - first.ts_ns < 60_000_000_000,
        "ts {} now {now}",
        first.ts_ns
    );
    let k = c.source.kernel_counters().unwrap();
    assert!(k.per_reason.get(&no_socket).map_or(0, |r| r.seen) >= N as u64);
    assert_reconciles(&c);
}

#[test]
fn tc_shot_gives_exactly_n_tc_ingress_drops() {
    skip_unless_capable!();
    const N: usize = 150;
    let (sport, dport) = (40002, 7);
    let pair = NetnsPair::new();
    let netns_b = pair.inode(&pair.b);
    let reasons = KernelReasons::load();
    let shot = TcShot::attach(&pair.b, &pair.veth_b).expect("attach tc_shot");
    let c = capture(&pair, netns_b, sport, dport, N, || {
        pair.send_udp(false, sport, dport, N, PAYLOAD)
    });
    drop(shot);

    assert_eq!(c.matching.len(), N);
    for e in &c.matching {
        let Cause::Kernel { reason, .. } = e.cause else {
            panic!("{:?}", e.cause)
        };
        assert_eq!(reasons.name(reason), "TC_INGRESS");
        assert_eq!(e.link, LinkType::Ethernet);
        assert_eq!(e.orig_len as usize, 14 + 20 + 8 + PAYLOAD);
    }
    assert_reconciles(&c);
}

#[test]
fn tracepoint_fallback_also_counts_exactly() {
    skip_unless_capable!();
    if !std::path::Path::new("/sys/kernel/tracing/events/skb/kfree_skb/format").exists() {
        eprintln!("skipping: tracefs not mounted");
        return;
    }
    const N: usize = 50;
    let (sport, dport) = (40003, 9);
    let pair = NetnsPair::new();
    let netns_b = pair.inode(&pair.b);
    let opts = LoadOptions {
        attach: AttachMode::Tracepoint,
        ..LoadOptions::default()
    };
    let mut source = KernelSource::open(&opts, 1 << 20).expect("load the tracepoint program");
    assert_eq!(source.mode(), AttachMode::Tracepoint);
    let (tx, rx) = crossbeam_channel::unbounded::<Batch>();
    let stop = AtomicBool::new(false);
    pair.send_udp(false, sport, dport, N, PAYLOAD);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let stats = source.run(&tx, &stop, 32).unwrap();
    let matching: Vec<Event> = rx
        .try_iter()
        .flat_map(|b| b.events)
        .filter(|e| {
            e.netns == netns_b
                && udp4_tuple(&e.data) == Some((pair.ip4_a, pair.ip4_b, sport, dport))
        })
        .collect();
    assert_eq!(matching.len(), N);
    let reasons = KernelReasons::load();
    assert!(matching.iter().all(
        |e| matches!(e.cause, Cause::Kernel { reason, .. } if reasons.name(reason) == "NO_SOCKET")
    ));
    // The same fields as through tp_btf (this program reads the sk_buff with one bulk copy).
    let frame_len = 14 + 20 + 8 + PAYLOAD;
    for e in &matching {
        assert!(
            matches!(e.cause, Cause::Kernel { protocol: 0x0800, location, .. } if location != 0)
        );
        assert_eq!(e.link, LinkType::Ethernet);
        assert_eq!(e.ifindex, pair.ifindex(&pair.b, &pair.veth_b));
        assert_eq!(e.orig_len as usize, frame_len);
        assert_eq!(e.data.len(), frame_len);
    }
    assert_reconciles(&Capture {
        matching,
        stats,
        source,
    });
}

/// A namespace pair, the inode of B's namespace, and whether this kernel takes direct
/// packet loads (so the program's `direct_packet` must say so when asked for them).
fn pair_and_direct_loads() -> (NetnsPair, u32, bool) {
    let pair = NetnsPair::new();
    let netns_b = pair.inode(&pair.b);
    let btf = engine::kernel::btf::Btf::from_sys().unwrap();
    (
        pair,
        netns_b,
        engine::kernel::loader::untrusted_mem_loads(&btf),
    )
}

/// Attaches with `opts` (through tp_btf, direct loads exactly when asked for and
/// `supported`), runs `send`, then stops and drains: the events and the source.
fn capture_while(
    opts: &LoadOptions,
    supported: bool,
    send: impl FnOnce(),
) -> (Vec<Event>, KernelSource) {
    let mut source = KernelSource::open(opts, 1 << 16).unwrap();
    assert_eq!(source.mode(), AttachMode::TpBtf);
    assert_eq!(
        source.config().direct_packet,
        u32::from(opts.direct_packet && supported)
    );
    let (tx, rx) = crossbeam_channel::unbounded::<Batch>();
    send();
    std::thread::sleep(Duration::from_millis(200));
    source.run(&tx, &AtomicBool::new(true), 32).unwrap();
    let events = rx.try_iter().flat_map(|b| b.events).collect();
    (events, source)
}

/// The kernel table's keys when it parses the headers itself (`--exemplars 0`): the same
/// exact flows, addresses, ports and counts whether the program loads the packet bytes
/// directly (kernels that allow it, such as this one from 6.17) or with
/// `bpf_probe_read_kernel`.
#[test]
fn kernel_flow_keys_are_the_same_with_direct_loads_and_probe_reads() {
    skip_unless_capable!();
    use capture_common::{KFAMILY_V4, KFAMILY_V6};
    const N4: u64 = 37;
    const N6: u64 = 23;
    let (sport4, sport6, dport) = (40011, 40012, 9);
    let (pair, netns_b, supported) = pair_and_direct_loads();
    for direct in [true, false] {
        let opts = LoadOptions {
            exemplars: Some(0),
            direct_packet: direct,
            ..LoadOptions::default()
        };
        let (events, mut source) = capture_while(&opts, supported, || {
            pair.send_udp(false, sport4, dport, N4 as usize, PAYLOAD);
            pair.send_udp(true, sport6, dport, N6 as usize, PAYLOAD);
        });
        assert_eq!(events.len(), 0);
        let profile = source.take_profile();
        // (family, source, destination, ports, l4 protocol) -> (packets, bytes)
        type Flow = (u8, [u8; 16], [u8; 16], u16, u16, u8);
        let mut rows: BTreeMap<Flow, (u64, u64)> = BTreeMap::new();
        // (Neighbour discovery may drop a probe or two in B too: UDP rows only.)
        let udp = |k: &&capture_common::KFlowKey| k.netns_ino == netns_b && k.l4proto == 17;
        for (k, r) in profile.flows.iter().filter(|(k, _)| udp(k)) {
            let e = rows
                .entry((k.family, k.saddr, k.daddr, k.sport, k.dport, k.l4proto))
                .or_default();
            e.0 += r.packets;
            e.1 += r.bytes;
        }
        let v4 = |a: Ipv4Addr| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        };
        let frame4 = (14 + 20 + 8 + PAYLOAD) as u64;
        let frame6 = (14 + 40 + 8 + PAYLOAD) as u64;
        let want = BTreeMap::from([
            (
                (
                    KFAMILY_V4,
                    v4(pair.ip4_a),
                    v4(pair.ip4_b),
                    sport4,
                    dport,
                    17,
                ),
                (N4, N4 * frame4),
            ),
            (
                (
                    KFAMILY_V6,
                    pair.ip6_a.octets(),
                    pair.ip6_b.octets(),
                    sport6,
                    dport,
                    17,
                ),
                (N6, N6 * frame6),
            ),
        ]);
        assert_eq!(rows, want, "direct loads: {direct}");
    }
}

/// Every drop copied: the same packet bytes whether the program copies them with loads (up
/// to 256 bytes, on kernels that allow it) or with `bpf_probe_read_kernel` (longer copies,
/// and kernels that do not): the whole frame under the default snap length, the snap
/// length's worth of a longer one.
#[test]
fn copied_packets_are_the_same_with_direct_loads_and_probe_reads() {
    skip_unless_capable!();
    const N: usize = 29;
    const LONG: usize = 1000;
    let (sport, sport_long, dport) = (40013, 40014, 9);
    let (pair, netns_b, supported) = pair_and_direct_loads();
    let mut seen = Vec::new();
    for direct in [true, false] {
        for snaplen in [capture_common::DEFAULT_SNAPLEN, 2048] {
            let opts = LoadOptions {
                direct_packet: direct,
                snaplen,
                ..LoadOptions::default()
            };
            let (events, _source) = capture_while(&opts, supported, || {
                pair.send_udp(false, sport, dport, N, PAYLOAD);
                pair.send_udp(false, sport_long, dport, N, LONG);
            });
            let mut frames: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
            for e in events {
                if let Some((src, dst, sp, 9)) = udp4_tuple(&e.data) {
                    if e.netns == netns_b && (src, dst) == (pair.ip4_a, pair.ip4_b) {
                        frames.entry(sp).or_default().push(e.data.to_vec());
                    }
                }
            }
            for (sp, payload) in [(sport, PAYLOAD), (sport_long, LONG)] {
                let got = frames.remove(&sp).unwrap_or_default();
                assert_eq!(got.len(), N, "direct {direct}, snap {snaplen}, port {sp}");
                let len = (14 + 20 + 8 + payload).min(snaplen as usize);
                for f in &got {
                    assert_eq!(f.len(), len);
                    assert_eq!(&f[..6], &pair.mac_b, "destination MAC");
                    assert_eq!(&f[6..12], &pair.mac_a, "source MAC");
                    assert!(f[42..].iter().all(|b| *b == 0x5a), "payload");
                }
                // Headers but the IP ID and checksum, which change per datagram.
                let mut first = got[0].clone();
                first[18..20].fill(0);
                first[24..26].fill(0);
                seen.push((snaplen, sp, first));
            }
            assert!(frames.is_empty(), "{frames:?}");
        }
    }
    let (with_loads, with_helper) = seen.split_at(seen.len() / 2);
    assert_eq!(with_loads, with_helper);
}

#[test]
fn load_options_snaplen_is_respected() {
    skip_unless_capable!();
    const N: usize = 20;
    let (sport, dport) = (40004, 9);
    let pair = NetnsPair::new();
    let netns_b = pair.inode(&pair.b);
    let opts = LoadOptions {
        snaplen: 40,
        ..LoadOptions::default()
    };
    let mut source = KernelSource::open(&opts, 1 << 20).unwrap();
    assert_eq!(source.config().snaplen, 40);
    let (tx, rx) = crossbeam_channel::unbounded::<Batch>();
    let stop = AtomicBool::new(false);
    pair.send_udp(false, sport, dport, N, PAYLOAD);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    source.run(&tx, &stop, 8).unwrap();
    // With 40 bytes the UDP ports are cut off: match on netns + IP header instead.
    let ips: Vec<u8> = [pair.ip4_a.octets(), pair.ip4_b.octets()].concat();
    let matching: Vec<Event> = rx
        .try_iter()
        .flat_map(|b| b.events)
        .filter(|e| e.netns == netns_b && e.data.get(26..34) == Some(&ips[..]))
        .collect();
    assert_eq!(matching.len(), N);
    for e in &matching {
        assert_eq!(e.data.len(), 40);
        assert_eq!(e.orig_len as usize, 14 + 20 + 8 + PAYLOAD);
    }
}

/// A local netfilter drop on OUTPUT happens before the skb has a MAC header or a device:
/// the capture starts at the IP header (RawIp) and the namespace comes from the socket.
#[test]
fn netfilter_output_drop_is_l3_with_socket_netns() {
    skip_unless_capable!();
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipping: no nft");
        return;
    }
    const N: usize = 30;
    let (sport, dport) = (40005, 9);
    let pair = NetnsPair::new();
    let netns_a = pair.inode(&pair.a);
    let nft = |rule: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &pair.a, "nft", rule])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nft("add table ip dstest");
    nft("add chain ip dstest out { type filter hook output priority 0; }");
    nft("add rule ip dstest out udp dport 9 drop");
    let mut source = KernelSource::open(&LoadOptions::default(), 1 << 20).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<Batch>();
    let stop = AtomicBool::new(false);
    assert_eq!(
        pair.send_udp_lossy(sport, dport, N, PAYLOAD),
        N,
        "every send fails with EPERM"
    );
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let stats = source.run(&tx, &stop, 16).unwrap();
    let l3_tuple = |d: &[u8]| {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(d);
        udp4_tuple(&frame)
    };
    let matching: Vec<Event> = rx
        .try_iter()
        .flat_map(|b| b.events)
        .filter(|e| {
            e.link == LinkType::RawIp
                && l3_tuple(&e.data) == Some((pair.ip4_a, pair.ip4_b, sport, dport))
        })
        .collect();
    assert_eq!(matching.len(), N);
    let reasons = KernelReasons::load();
    for e in &matching {
        let Cause::Kernel {
            reason, protocol, ..
        } = e.cause
        else {
            panic!()
        };
        assert_eq!(reasons.name(reason), "NETFILTER_DROP");
        assert_eq!(protocol, 0x0800);
        assert_eq!(e.netns, netns_a);
        assert_eq!(e.orig_len as usize, 20 + 8 + PAYLOAD);
        assert_eq!(e.data.len(), 20 + 8 + PAYLOAD);
        assert_eq!(e.data[0], 0x45);
    }
    assert_reconciles(&Capture {
        matching,
        stats,
        source,
    });
}

/// Rings too small for the burst (one 64 KiB block per CPU, about 500 records of this
/// test's packets; nobody reads while 2000 drops arrive): the kernel counts what did not fit
/// as ring_full, per reason, and the books still balance exactly.
#[test]
fn ring_full_is_counted_and_reconciles() {
    skip_unless_capable!();
    const N: usize = 2000;
    let (sport, dport) = (40006, 9);
    let pair = NetnsPair::new();
    let netns_b = pair.inode(&pair.b);
    let opts = LoadOptions {
        ring_bytes_per_cpu: 0,
        auto_storm: false,
        ..LoadOptions::default()
    };
    let mut source = KernelSource::open(&opts, 1 << 20).unwrap();
    // Nobody reads the ring while the burst arrives.
    pair.send_udp(false, sport, dport, N, PAYLOAD);
    std::thread::sleep(Duration::from_millis(200));
    let (tx, rx) = crossbeam_channel::unbounded::<Batch>();
    let stop = AtomicBool::new(true);
    let stats = source.run(&tx, &stop, 64).unwrap();
    let delivered_ours = rx
        .try_iter()
        .flat_map(|b| b.events)
        .filter(|e| {
            e.netns == netns_b
                && udp4_tuple(&e.data) == Some((pair.ip4_a, pair.ip4_b, sport, dport))
        })
        .count();
    let k = source.kernel_counters().unwrap();
    let no_socket = KernelReasons::load().value("NO_SOCKET").unwrap();
    let ours = k.per_reason[&no_socket];
    eprintln!("one-block rings: {delivered_ours} of {N} delivered, NO_SOCKET counter {ours:?}");
    assert!(ours.seen >= N as u64);
    assert!(
        ours.ring_full > 0,
        "two 64 KiB rings cannot hold {N} records"
    );
    // Other tests' drops share the ring, so ours may not be the ones that fit.
    assert!(delivered_ours < N);
    assert!(stats.delivered_total() > 0 && stats.delivered_total() < N as u64);
    assert_eq!(
        k.ring_full,
        k.per_reason.values().map(|c| c.ring_full).sum::<u64>()
    );
    assert_reconciles(&Capture {
        matching: Vec::new(),
        stats,
        source,
    });
}

/// Run this binary as an unprivileged user to check the message, e.g.
/// `setpriv --reuid=65534 --regid=65534 --clear-groups target/debug/deps/kernel_live-* unprivileged`.
#[test]
fn unprivileged_load_names_the_capabilities() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipping: running as root");
        return;
    }
    if engine::kernel::loader::object().is_empty() {
        eprintln!("skipping: built with AYA_BUILD_SKIP (no eBPF object)");
        return;
    }
    let err = KernelSource::open(&LoadOptions::default(), 1 << 20)
        .err()
        .expect("loading must fail");
    assert_eq!(
        err.to_string(),
        "loading the eBPF program needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN on kernels before 5.8); run as root or grant them"
    );
}

/// Where tracefs is not mounted (e.g. under `ip netns exec`, which remounts /sys), forcing the
/// tracepoint says how to mount it. Check with
/// `ip netns add t; ip netns exec t target/debug/deps/kernel_live-* tracefs_missing`.
#[test]
fn tracefs_missing_says_how_to_mount_it() {
    skip_unless_capable!();
    if std::path::Path::new("/sys/kernel/tracing/events/skb/kfree_skb/format").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/events/skb/kfree_skb/format").exists()
    {
        eprintln!("skipping: tracefs is mounted");
        return;
    }
    let opts = LoadOptions {
        attach: AttachMode::Tracepoint,
        ..LoadOptions::default()
    };
    let err = KernelSource::open(&opts, 1 << 20)
        .err()
        .expect("must fail without tracefs");
    assert_eq!(
        err.to_string(),
        "tracefs is not mounted, the kfree_skb tracepoint fallback needs it: run `mount -t tracefs nodev /sys/kernel/tracing` (and load from the host network namespace: `ip netns exec` hides tracefs)"
    );
    // tp_btf does not need tracefs.
    let source = KernelSource::open(&LoadOptions::default(), 1 << 20).unwrap();
    assert_eq!(source.mode(), AttachMode::TpBtf);
}
