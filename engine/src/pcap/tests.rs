//! Cross-checks: files written by our writers, read back by our reader, by the pcap-file crate
//! (an independent parser) and by the real tshark and tcpdump; and files written by
//! Wireshark's tools (testdata/pcap/) read by our reader.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

use super::testfile::{eth_ipv4_udp, ipv4_udp};
use super::*;
use crate::comment::{cilium_comment, kernel_comment, ParsedCause};
use crate::event::{Batch, Cause, Event};

const SNAPLEN: u32 = 200;
const BASE_TS: u64 = 1_700_000_000_000_000_000;

const IF_A: IfaceKey = IfaceKey {
    ifindex: 3,
    netns: 4026531840,
    link: LinkType::Ethernet,
};
const IF_B: IfaceKey = IfaceKey {
    ifindex: 7,
    netns: 4026532281,
    link: LinkType::RawIp,
};
const IF_C: IfaceKey = IfaceKey {
    ifindex: 9,
    netns: 4026532281,
    link: LinkType::Ethernet,
};

fn iface_name(k: &IfaceKey) -> String {
    match *k {
        IF_A => "veth1".to_string(),
        IF_C => "eth0".to_string(),
        _ => default_iface_name(k),
    }
}

/// What the writer is given for one packet.
struct Pkt {
    ts_ns: u64,
    iface: IfaceKey,
    orig_len: u32,
    data: Vec<u8>,
    comment: Option<String>,
}

/// 60 packets over three interfaces, IPv4 and IPv6, some longer than the snap length, with
/// kernel comments (two reasons), Cilium comments and none.
fn fixture() -> Vec<Pkt> {
    (0..60u32)
        .map(|i| {
            let iface = [IF_A, IF_B, IF_C][(i % 3) as usize];
            let len = 40 + (i as usize * 7) % 300;
            let mut data = match iface.link {
                LinkType::Ethernet => eth_ipv4_udp(len, i as u8),
                LinkType::RawIp => ipv4_udp(len, i as u8),
            };
            if i % 5 == 4 && iface.link == LinkType::RawIp {
                data[0] = 0x60; // an IPv6 version nibble
            }
            let mut c = String::new();
            let comment = match i % 4 {
                0 => {
                    kernel_comment(
                        &mut c,
                        "NO_SOCKET",
                        3,
                        Some(("__udp4_lib_rcv", 0x5b4)),
                        0xffffffff81b2c3d4,
                        iface.netns,
                    );
                    Some(c)
                }
                1 => {
                    kernel_comment(
                        &mut c,
                        "NETFILTER_DROP",
                        6,
                        None,
                        0xffffffff81aa0000 + u64::from(i),
                        iface.netns,
                    );
                    Some(c)
                }
                2 => {
                    cilium_comment(
                        &mut c,
                        "Policy denied",
                        133,
                        12345,
                        678 + i,
                        0,
                        iface.ifindex,
                        Some(("bpf_lxc.c", 1234)),
                    );
                    Some(c)
                }
                _ => None,
            };
            Pkt {
                ts_ns: BASE_TS + u64::from(i) * 1_234_567_891 + u64::from(i),
                iface,
                orig_len: data.len() as u32 + (i % 2) * 100,
                data,
                comment,
            }
        })
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dropscope-pcap-tests-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn write_file(
    path: &Path,
    format: FileFormat,
    options: WriterOptions,
    pkts: &[Pkt],
) -> WriterStats {
    let mut w = create_with(path, format, SNAPLEN, options).unwrap();
    for p in pkts {
        let out = OutPacket {
            ts_ns: p.ts_ns,
            iface: p.iface,
            orig_len: p.orig_len,
            data: &p.data,
            comment: p.comment.as_deref(),
            flags: 0,
        };
        w.write(&out, &iface_name).unwrap();
    }
    w.finish().unwrap()
}

/// The bytes and original length the file should hold for `p`.
fn expected(p: &Pkt, synth_eth: bool) -> (Vec<u8>, u32) {
    let mut v = Vec::new();
    let mut orig = p.orig_len;
    if synth_eth && p.iface.link == LinkType::RawIp {
        v.extend_from_slice(&[0; 12]);
        v.extend_from_slice(if p.data[0] >> 4 == 6 {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        orig += 14;
    }
    v.extend_from_slice(&p.data);
    v.truncate(SNAPLEN as usize);
    (v, orig)
}

fn read_ours(path: &Path) -> (Vec<Event>, Vec<Option<ParsedCause>>, ReadStats) {
    let mut s = FileSource::open(path).unwrap();
    let mut b = Batch::default();
    let mut causes = Vec::new();
    while s.next_batch(&mut b, 16).unwrap() > 0 {
        causes.extend_from_slice(s.parsed_causes());
    }
    (b.events, causes, *s.stats())
}

fn tool(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping the {name} checks: {name} is not installed");
    }
    ok
}

/// Runs a tool, returns stdout lines.
fn run(cmd: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn epoch(ts_ns: u64) -> String {
    format!("{}.{:09}", ts_ns / 1_000_000_000, ts_ns % 1_000_000_000)
}

fn expected_stats(pkts: &[Pkt], synth_eth: bool, pcapng: bool) -> WriterStats {
    let mut s = WriterStats {
        packets: pkts.len() as u64,
        ifaces: 3,
        ..WriterStats::default()
    };
    for p in pkts {
        let (bytes, _) = expected(p, synth_eth);
        s.bytes += bytes.len() as u64;
        let full = p.data.len()
            + if synth_eth && p.iface.link == LinkType::RawIp {
                14
            } else {
                0
            };
        s.truncated_to_snaplen += u64::from(full > SNAPLEN as usize);
        if !pcapng && p.comment.is_some() {
            s.comments_dropped += 1;
        }
    }
    s
}

#[test]
fn pcapng_read_back_by_us_pcap_file_tshark_tcpdump() {
    let pkts = fixture();
    let path = tmp("mixed.pcapng");
    let stats = write_file(&path, FileFormat::Pcapng, WriterOptions::default(), &pkts);
    let mut want = expected_stats(&pkts, true, true);
    want.file_bytes = fs::metadata(&path).unwrap().len();
    assert_eq!(stats, want);
    assert!(stats.truncated_to_snaplen > 0 && stats.truncated_to_snaplen < 60);
    assert!(!tmp("mixed.pcapng.tmp").exists());

    // (a) our reader
    let (ev, causes, st) = read_ours(&path);
    assert_eq!(ev.len(), 60);
    for (i, (e, p)) in ev.iter().zip(&pkts).enumerate() {
        let (bytes, orig) = expected(p, true);
        assert_eq!(e.ts_ns, p.ts_ns, "{i}");
        assert_eq!(&e.data[..], &bytes[..], "{i}");
        assert_eq!(e.orig_len, orig, "{i}");
        assert_eq!(e.link, LinkType::Ethernet, "{i}");
        assert_eq!(
            (e.ifindex, e.netns),
            (p.iface.ifindex, p.iface.netns),
            "{i}"
        );
        let want_cause = match i % 4 {
            0 => Cause::Kernel {
                reason: 3,
                location: 0xffffffff81b2c3d4,
                protocol: 0,
            },
            1 => Cause::Kernel {
                reason: 6,
                location: 0xffffffff81aa0000 + i as u64,
                protocol: 0,
            },
            2 => Cause::Cilium(crate::cilium_glue::drop_from_comment(
                133,
                12345,
                678 + i as u32,
                e.ifindex,
                e.orig_len,
            )),
            _ => Cause::Captured,
        };
        assert_eq!(e.cause, want_cause, "{i}");
        let want_parsed = (i % 4 == 2).then_some(ParsedCause::Cilium {
            code: 133,
            src_identity: 12345,
            dst_identity: 678 + i as u32,
        });
        if i % 4 == 2 {
            assert_eq!(causes[i], want_parsed, "{i}");
        }
    }
    assert_eq!((st.packets, st.sections, st.interfaces), (60, 1, 3));
    assert_eq!((st.kernel_comments_seen, st.cilium_comments_seen), (30, 15));
    assert_eq!(st.bytes, stats.bytes);
    assert!(st.skipped().iter().all(|(_, n)| *n == 0), "{st:?}");

    // (b) pcap-file
    let mut r = PcapNgReader::new(fs::File::open(&path).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut n = 0;
    while let Some(block) = r.next_block() {
        match block.unwrap() {
            Block::SectionHeader(shb) => {
                let appl = concat!("dropscope ", env!("CARGO_PKG_VERSION"));
                assert!(shb
                    .options
                    .iter()
                    .any(|o| matches!(o, SectionHeaderOption::UserApplication(a) if a == appl)));
            }
            Block::InterfaceDescription(idb) => {
                assert_eq!(idb.linktype, DataLink::ETHERNET);
                assert_eq!(idb.snaplen, SNAPLEN);
                assert!(idb
                    .options
                    .iter()
                    .any(|o| matches!(o, InterfaceDescriptionOption::IfTsResol(9))));
                for o in &idb.options {
                    if let InterfaceDescriptionOption::IfName(name) = o {
                        names.push(name.to_string());
                    }
                }
            }
            Block::EnhancedPacket(epb) => {
                let p = &pkts[n];
                let (bytes, orig) = expected(p, true);
                assert_eq!(epb.timestamp.as_nanos(), u128::from(p.ts_ns), "{n}");
                assert_eq!(epb.original_len, orig, "{n}");
                assert_eq!(&epb.data[..], &bytes[..], "{n}");
                assert_eq!(
                    names[epb.interface_id as usize],
                    iface_name(&p.iface),
                    "{n}"
                );
                let comments: Vec<&str> = epb
                    .options
                    .iter()
                    .filter_map(|o| match o {
                        EnhancedPacketOption::Comment(c) => Some(c.as_ref()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(
                    comments,
                    p.comment.as_deref().into_iter().collect::<Vec<_>>(),
                    "{n}"
                );
                n += 1;
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    assert_eq!(n, 60);
    assert_eq!(names, ["veth1", "if7@netns4026532281", "eth0"]);

    // (c) tshark and tcpdump
    let file = path.to_str().unwrap();
    if tool("tshark") {
        let lines = run(
            "tshark",
            &[
                "-r",
                file,
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.len",
                "-e",
                "frame.cap_len",
                "-e",
                "frame.interface_name",
                "-e",
                "frame.comment",
            ],
        );
        assert_eq!(lines.len(), 60);
        for (i, (line, p)) in lines.iter().zip(&pkts).enumerate() {
            let (bytes, orig) = expected(p, true);
            let want = format!(
                "{}|{}|{}|{}|{}",
                epoch(p.ts_ns),
                orig,
                bytes.len(),
                iface_name(&p.iface),
                p.comment.as_deref().unwrap_or("")
            );
            assert_eq!(line, &want, "packet {i}");
        }
        let hits = run(
            "tshark",
            &[
                "-r",
                file,
                "-Y",
                "frame.comment contains \"NO_SOCKET\"",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
        );
        let want: Vec<String> = (0..60)
            .filter(|i| i % 4 == 0)
            .map(|i| (i + 1).to_string())
            .collect();
        assert_eq!(hits, want);
        // The raw-IP packets decode as IPv4/IPv6 behind the synthesised header.
        let v6 = run(
            "tshark",
            &[
                "-r",
                file,
                "-Y",
                "ipv6",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
        );
        let want: Vec<String> = (0..60)
            .filter(|i| i % 3 == 1 && i % 5 == 4)
            .map(|i| (i + 1).to_string())
            .collect();
        assert_eq!(v6, want);
    }
    if tool("tcpdump") {
        let lines = run("tcpdump", &["-r", file, "-nn", "-tt", "--nano", "-e"]);
        assert_eq!(lines.len(), 60);
        for (line, p) in lines.iter().zip(&pkts) {
            assert!(line.starts_with(&format!("{} ", epoch(p.ts_ns))), "{line}");
        }
    }
    fs::remove_file(&path).unwrap();
}

#[test]
fn pcapng_with_raw_ip_interfaces() {
    let pkts = fixture();
    let path = tmp("rawif.pcapng");
    let options = WriterOptions {
        raw_ip_interfaces: true,
        ..WriterOptions::default()
    };
    let stats = write_file(&path, FileFormat::Pcapng, options, &pkts);
    assert_eq!(stats.packets, 60);
    assert_eq!(stats.bytes, expected_stats(&pkts, false, true).bytes);
    let (ev, _, _) = read_ours(&path);
    for (e, p) in ev.iter().zip(&pkts) {
        let (bytes, orig) = expected(p, false);
        assert_eq!(
            (e.link, &e.data[..], e.orig_len),
            (p.iface.link, &bytes[..], orig)
        );
    }
    let mut r = PcapNgReader::new(fs::File::open(&path).unwrap()).unwrap();
    let mut links = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::InterfaceDescription(idb) = b.unwrap() {
            links.push(idb.linktype);
        }
    }
    assert_eq!(
        links,
        [DataLink::ETHERNET, DataLink::RAW, DataLink::ETHERNET]
    );
    if tool("tshark") {
        let lines = run(
            "tshark",
            &[
                "-r",
                path.to_str().unwrap(),
                "-T",
                "fields",
                "-e",
                "frame.interface_name",
                "-e",
                "ip.src",
            ],
        );
        assert_eq!(lines.len(), 60);
        assert_eq!(lines[1], "if7@netns4026532281\t10.0.0.1");
    }
    fs::remove_file(&path).unwrap();
}

#[test]
fn pcap_read_back_by_us_pcap_file_tshark_tcpdump() {
    let pkts = fixture();
    let path = tmp("mixed.pcap");
    let stats = write_file(&path, FileFormat::Pcap, WriterOptions::default(), &pkts);
    let mut want = expected_stats(&pkts, true, false);
    want.file_bytes = fs::metadata(&path).unwrap().len();
    assert_eq!(stats, want);
    assert_eq!(stats.comments_dropped, 45);
    assert_eq!(stats.file_bytes, 24 + 16 * 60 + stats.bytes);

    let (ev, _, st) = read_ours(&path);
    assert_eq!(ev.len(), 60);
    for (i, (e, p)) in ev.iter().zip(&pkts).enumerate() {
        let (bytes, orig) = expected(p, true);
        assert_eq!(
            (e.ts_ns, &e.data[..], e.orig_len, e.link),
            (p.ts_ns, &bytes[..], orig, LinkType::Ethernet),
            "{i}"
        );
        assert_eq!(
            (e.ifindex, e.netns, e.cause),
            (0, 0, Cause::Captured),
            "{i}"
        );
    }
    assert_eq!(st.packets, 60);

    let mut r = PcapReader::new(fs::File::open(&path).unwrap()).unwrap();
    let h = r.header();
    assert_eq!(
        (h.datalink, h.snaplen, h.ts_resolution),
        (
            DataLink::ETHERNET,
            SNAPLEN,
            pcap_file::TsResolution::NanoSecond
        )
    );
    let mut n = 0;
    // pcap-file 2.0's next_packet() rejects orig_len > snaplen, which every packet cut to the
    // snap length has (tshark and tcpdump accept it): read the raw records.
    while let Some(pkt) = r.next_raw_packet() {
        let pkt = pkt.unwrap();
        let (bytes, orig) = expected(&pkts[n], true);
        let ts = u64::from(pkt.ts_sec) * 1_000_000_000 + u64::from(pkt.ts_frac);
        assert_eq!(
            (ts, pkt.incl_len as usize, pkt.orig_len, &pkt.data[..]),
            (pkts[n].ts_ns, bytes.len(), orig, &bytes[..])
        );
        n += 1;
    }
    assert_eq!(n, 60);

    let file = path.to_str().unwrap();
    if tool("tshark") {
        let lines = run(
            "tshark",
            &[
                "-r",
                file,
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.len",
                "-e",
                "frame.cap_len",
            ],
        );
        let want: Vec<String> = pkts
            .iter()
            .map(|p| {
                let (bytes, orig) = expected(p, true);
                format!("{}|{}|{}", epoch(p.ts_ns), orig, bytes.len())
            })
            .collect();
        assert_eq!(lines, want);
    }
    if tool("tcpdump") {
        let lines = run("tcpdump", &["-r", file, "-nn", "-tt", "--nano"]);
        assert_eq!(lines.len(), 60);
        assert!(
            lines[0].starts_with(&format!(
                "{} IP 10.0.0.0.4000 > 10.0.1.1.53: ",
                epoch(BASE_TS)
            )),
            "{}",
            lines[0]
        );
    }
    fs::remove_file(&path).unwrap();
}

#[test]
fn unfinished_writer_leaves_nothing() {
    let pkts = fixture();
    for format in [FileFormat::Pcapng, FileFormat::Pcap] {
        let path = tmp(&format!("unfinished-{format:?}"));
        let mut w = create(&path, format, 0).unwrap();
        let p = &pkts[0];
        let out = OutPacket {
            ts_ns: p.ts_ns,
            iface: p.iface,
            orig_len: p.orig_len,
            data: &p.data,
            comment: None,
            flags: 0,
        };
        w.write(&out, &iface_name).unwrap();
        let mut tmp_path = path.clone().into_os_string();
        tmp_path.push(".tmp");
        assert!(Path::new(&tmp_path).exists());
        drop(w);
        assert!(!Path::new(&tmp_path).exists());
        assert!(!path.exists());
    }
}

#[test]
fn empty_and_oversized_inputs() {
    // No packets: a valid empty file. Snap length 0 means the maximum.
    let path = tmp("empty.pcapng");
    let w = create(&path, FileFormat::Pcapng, 0).unwrap();
    let st = w.finish().unwrap();
    assert_eq!(
        (st.packets, st.ifaces, st.file_bytes),
        (0, 0, fs::metadata(&path).unwrap().len())
    );
    let (ev, _, rs) = read_ours(&path);
    assert_eq!((ev.len(), rs.sections), (0, 1));

    // A jumbo packet and a comment over the option limit.
    let big = vec![0xabu8; 300_000];
    let long = "x".repeat(70_000);
    let mut w = create(&path, FileFormat::Pcapng, 0).unwrap();
    let out = OutPacket {
        ts_ns: 1,
        iface: IF_A,
        orig_len: 10,
        data: &big,
        comment: Some(&long),
        flags: 0,
    };
    w.write(&out, &iface_name).unwrap();
    let st = w.finish().unwrap();
    assert_eq!(
        (st.truncated_to_snaplen, st.comments_truncated, st.bytes),
        (1, 1, u64::from(MAX_FILE_SNAPLEN))
    );
    let mut r = PcapNgReader::new(fs::File::open(&path).unwrap()).unwrap();
    let mut seen = 0;
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(epb) = b.unwrap() {
            assert_eq!(
                (epb.data.len(), epb.original_len),
                (MAX_FILE_SNAPLEN as usize, MAX_FILE_SNAPLEN)
            );
            assert!(
                matches!(&epb.options[..], [EnhancedPacketOption::Comment(c)] if c.len() == 65_532)
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 1);
    fs::remove_file(&path).unwrap();
}

/// Every truncation of a file we wrote: the reader returns exactly the whole packets before
/// the cut and counts one truncation when the cut is inside a block.
#[test]
fn every_truncation_of_our_pcapng() {
    let pkts: Vec<Pkt> = fixture().into_iter().take(6).collect();
    let path = tmp("trunc.pcapng");
    write_file(&path, FileFormat::Pcapng, WriterOptions::default(), &pkts);
    let full = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    // Block ends, from the lengths in the file itself.
    let mut ends = Vec::new();
    let mut packet_ends = Vec::new();
    let mut at = 0;
    while at < full.len() {
        let t = u32::from_le_bytes(full[at..at + 4].try_into().unwrap());
        at += u32::from_le_bytes(full[at + 4..at + 8].try_into().unwrap()) as usize;
        ends.push(at);
        if t == 6 {
            packet_ends.push(at);
        }
    }
    assert_eq!(packet_ends.len(), 6);
    for n in ends[0]..full.len() {
        let mut s =
            FileSource::from_reader("cut", Box::new(std::io::Cursor::new(full[..n].to_vec())))
                .unwrap();
        let mut b = Batch::default();
        while s.next_batch(&mut b, 4).unwrap() > 0 {}
        assert_eq!(
            b.events.len(),
            packet_ends.iter().filter(|e| **e <= n).count(),
            "cut at {n}"
        );
        assert_eq!(
            s.stats().truncated_file,
            u64::from(!ends.contains(&n)),
            "cut at {n}"
        );
    }
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/pcap")
        .join(name)
}

/// Files written by Wireshark's tools (testdata/pcap/make.sh). Expected values are what
/// `tshark -T fields -e frame.time_epoch -e frame.len ...` prints for them.
#[test]
fn foreign_files() {
    const TS: [u64; 3] = [
        1_700_000_000_123_456_789,
        1_700_000_001_000_000_001,
        1_700_000_002_500_000_000,
    ];
    const LENS: [usize; 3] = [42, 62, 42];
    let check_eth = |ev: &[Event], ts: [u64; 3]| {
        assert_eq!(ev.len(), 3);
        for (i, e) in ev.iter().enumerate() {
            assert_eq!(
                (e.ts_ns, e.data.len(), e.orig_len as usize, e.link),
                (ts[i], LENS[i], LENS[i], LinkType::Ethernet),
                "{i}"
            );
        }
        assert_eq!(&ev[0].data[12..16], &[0x08, 0x00, 0x45, 0x00]);
        assert_eq!(&ev[1].data[12..15], &[0x86, 0xdd, 0x60]);
        assert_eq!(&ev[2].data[12..14], &[0x08, 0x06]);
    };

    let (ev, causes, st) = read_ours(&testdata("ws-eth-comments.pcapng"));
    check_eth(&ev, TS);
    assert_eq!(
        ev[0].cause,
        Cause::Kernel {
            reason: 3,
            location: 0xffffffff81b2c3d4,
            protocol: 0
        }
    );
    assert_eq!((ev[0].ifindex, ev[0].netns), (0, 4026531840));
    assert_eq!(
        (ev[1].cause, ev[2].cause),
        (
            Cause::Captured,
            Cause::Cilium(crate::cilium_glue::drop_from_comment(
                133,
                2,
                4,
                ev[2].ifindex,
                42
            ))
        )
    );
    assert_eq!(causes[1], None);
    assert_eq!(
        causes[2],
        Some(ParsedCause::Cilium {
            code: 133,
            src_identity: 2,
            dst_identity: 4
        })
    );
    assert_eq!(
        (
            st.sections,
            st.interfaces,
            st.kernel_comments_seen,
            st.cilium_comments_seen
        ),
        (1, 1, 1, 1)
    );

    let s = FileSource::open(&testdata("ws-eth-usec.pcap")).unwrap();
    assert_eq!(
        s.format(),
        SourceFormat::Pcap {
            nanoseconds: false,
            big_endian: false
        }
    );
    let (ev, _, _) = read_ours(&testdata("ws-eth-usec.pcap"));
    check_eth(
        &ev,
        [1_700_000_000_123_456_000, 1_700_000_001_000_000_000, TS[2]],
    );
    let s = FileSource::open(&testdata("ws-eth-nsec.pcap")).unwrap();
    assert_eq!(
        s.format(),
        SourceFormat::Pcap {
            nanoseconds: true,
            big_endian: false
        }
    );
    let (ev, _, _) = read_ours(&testdata("ws-eth-nsec.pcap"));
    check_eth(&ev, TS);

    // Linux cooked v1: the IPv4 packet comes out as raw IP, the ARP one is skipped.
    let (ev, _, st) = read_ours(&testdata("ws-sll.pcap"));
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].ts_ns, ev[0].link, ev[0].data.len(), ev[0].orig_len),
        (1_700_000_010_000_000_000, LinkType::RawIp, 28, 28)
    );
    assert_eq!(ev[0].data[0], 0x45);
    assert_eq!((st.skipped_cooked_not_ip, st.packets), (1, 1));

    // Three interfaces of three link types in one section.
    let (ev, _, st) = read_ours(&testdata("ws-mixed.pcapng"));
    assert_eq!(ev.len(), 5);
    check_eth(&ev[..3], TS);
    assert_eq!(
        (
            ev[3].ts_ns,
            ev[3].link,
            ev[3].ifindex,
            ev[3].data.len(),
            ev[3].orig_len
        ),
        (1_700_000_020_000_000_300, LinkType::RawIp, 5, 48, 48)
    );
    assert_eq!(ev[3].data[0], 0x60);
    assert_eq!(
        (ev[4].ts_ns, ev[4].link, ev[4].ifindex, ev[4].data.len()),
        (1_700_000_030_000_000_400, LinkType::RawIp, 2, 28)
    );
    assert_eq!((st.sections, st.interfaces), (1, 3));

    // Two concatenated sections.
    let (ev, _, st) = read_ours(&testdata("ws-two-sections.pcapng"));
    assert_eq!(ev.len(), 4);
    assert_eq!(
        (ev[3].link, ev[3].ifindex, ev[3].data.len()),
        (LinkType::RawIp, 5, 48)
    );
    assert_eq!((st.sections, st.interfaces), (2, 2));
    assert!(st.skipped().iter().all(|(_, n)| *n == 0), "{st:?}");
}

/// Many interfaces, interleaved: each packet lands on its own interface description (the
/// writers' interface cache must not mix up colliding keys).
#[test]
fn many_interleaved_interfaces() {
    let path = tmp("many.pcapng");
    let data = eth_ipv4_udp(60, 1);
    let key = |i: u32| IfaceKey {
        ifindex: i % 40,
        netns: 1 + i % 3,
        link: LinkType::Ethernet,
    };
    let mut w = create(&path, FileFormat::Pcapng, 0).unwrap();
    for i in 0..400u32 {
        let p = OutPacket {
            ts_ns: u64::from(i),
            iface: key(i),
            orig_len: 60,
            data: &data,
            comment: None,
            flags: 0,
        };
        w.write(&p, &default_iface_name).unwrap();
    }
    let st = w.finish().unwrap();
    // (i % 40, i % 3) repeats every 120 packets.
    assert_eq!((st.packets, st.ifaces), (400, 120));
    let (ev, _, rs) = read_ours(&path);
    assert_eq!((ev.len() as u64, rs.interfaces), (400, 120));
    for (i, e) in ev.iter().enumerate() {
        let k = key(i as u32);
        assert_eq!(
            (e.ifindex, e.netns, e.ts_ns),
            (k.ifindex, k.netns, i as u64)
        );
    }
    if tool("tshark") {
        let names = run(
            "tshark",
            &[
                "-r",
                path.to_str().unwrap(),
                "-T",
                "fields",
                "-e",
                "frame.interface_name",
            ],
        );
        let want: Vec<String> = (0..400).map(|i| default_iface_name(&key(i))).collect();
        assert_eq!(names, want);
    }
    fs::remove_file(&path).unwrap();

    let path = tmp("many.pcap");
    let mut w = create(&path, FileFormat::Pcap, 0).unwrap();
    for i in 0..400u32 {
        let p = OutPacket {
            ts_ns: u64::from(i),
            iface: key(i),
            orig_len: 60,
            data: &data,
            comment: None,
            flags: 0,
        };
        w.write(&p, &default_iface_name).unwrap();
    }
    assert_eq!(w.finish().unwrap().ifaces, 120);
    fs::remove_file(&path).unwrap();
}

/// The writers' exact bytes for a small fixed input are committed (testdata/pcap/ours-*, also
/// fuzz seeds): a format change shows up here. After an intended change (or a version bump,
/// which changes `shb_userappl`), rewrite them with `DROPSCOPE_BLESS=1 cargo test golden`.
#[test]
fn golden_files() {
    let pkts: Vec<Pkt> = fixture().into_iter().take(8).collect();
    let cases = [
        ("ours.pcapng", FileFormat::Pcapng, WriterOptions::default()),
        (
            "ours-rawif.pcapng",
            FileFormat::Pcapng,
            WriterOptions {
                raw_ip_interfaces: true,
                ..WriterOptions::default()
            },
        ),
        ("ours.pcap", FileFormat::Pcap, WriterOptions::default()),
    ];
    for (name, format, options) in cases {
        let path = tmp(name);
        write_file(&path, format, options, &pkts);
        let got = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let golden = testdata(name);
        if std::env::var_os("DROPSCOPE_BLESS").is_some() {
            fs::write(&golden, &got).unwrap();
        }
        let want = fs::read(&golden).unwrap();
        assert!(
            got == want,
            "{name} differs from {}: rerun with DROPSCOPE_BLESS=1 if intended",
            golden.display()
        );
        let (ev, _, st) = read_ours(&golden);
        assert_eq!(
            (ev.len(), st.kernel_comments_seen),
            (8, if format == FileFormat::Pcap { 0 } else { 4 }),
            "{name}"
        );
    }
}

#[test]
fn direction_goes_in_epb_flags_beside_the_comment() {
    let pkts = fixture();
    let p = &pkts[0];
    let path = tmp("flags.pcapng");
    let mut w = create(&path, FileFormat::Pcapng, 0).unwrap();
    let cases: [(u32, Option<&str>); 4] = [
        (1, None),
        (2, Some("odd")),
        (0, Some("NO_SOCKET (3)")),
        (0, None),
    ];
    for (flags, comment) in cases {
        let out = OutPacket {
            ts_ns: p.ts_ns,
            iface: p.iface,
            orig_len: p.orig_len,
            data: &p.data,
            comment,
            flags,
        };
        w.write(&out, &iface_name).unwrap();
    }
    w.finish().unwrap();
    let mut r = PcapNgReader::new(fs::File::open(&path).unwrap()).unwrap();
    let mut got = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(epb) = b.unwrap() {
            assert_eq!(&epb.data[..], &p.data[..]);
            let mut flags = 0;
            let mut comment = None;
            for o in &epb.options {
                match o {
                    EnhancedPacketOption::Flags(f) => flags = *f,
                    EnhancedPacketOption::Comment(c) => comment = Some(c.to_string()),
                    other => panic!("unexpected option {other:?}"),
                }
            }
            got.push((flags, comment));
        }
    }
    let want: Vec<(u32, Option<String>)> = cases
        .iter()
        .map(|(f, c)| (*f, c.map(str::to_string)))
        .collect();
    assert_eq!(got, want);
    fs::remove_file(&path).unwrap();
}
