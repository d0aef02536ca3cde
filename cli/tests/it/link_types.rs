//! Replay of captures of other link types: BSD loopback (NULL, LOOP), Linux NFLOG (a real
//! capture by tcpdump on an `nflog:` device, root), and a link type dropscope does not read,
//! named in words in the summary.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A classic pcap file (microseconds, little-endian) of `linktype` holding `frames`.
fn pcap(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&linktype.to_le_bytes());
    for (i, fr) in frames.iter().enumerate() {
        f.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        f.extend_from_slice(fr);
    }
    f
}

/// An IPv4 UDP datagram 10.9.0.1:sport -> 10.9.0.2:53 with 8 payload bytes.
fn udp4(sport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 36];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&36u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 9, 0, 1]);
    p[16..20].copy_from_slice(&[10, 9, 0, 2]);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[24..26].copy_from_slice(&16u16.to_be_bytes());
    p
}

/// An IPv6 UDP datagram fd00::1:sport -> fd00::2:53 with 8 payload bytes.
fn udp6(sport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 56];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&16u16.to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
    p[40..42].copy_from_slice(&sport.to_be_bytes());
    p[42..44].copy_from_slice(&53u16.to_be_bytes());
    p[44..46].copy_from_slice(&16u16.to_be_bytes());
    p
}

fn with_family(family: [u8; 4], ip: Vec<u8>) -> Vec<u8> {
    let mut f = family.to_vec();
    f.extend(ip);
    f
}

/// `dropscope replay FILE --json`: (JSON lines, stderr).
fn replay(file: &std::path::Path) -> (Vec<serde_json::Value>, String) {
    let o = run_ok(dropscope().args(["replay", file.to_str().unwrap(), "--json"]));
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn bsd_loopback_files_are_read() {
    let dir = TempDir::new("linktypes");
    // NULL, written on a little-endian host: IPv4 (2) and IPv6 as FreeBSD numbers it (28);
    // LOOP: big-endian, IPv4 and OpenBSD's IPv6 (24); one frame of an unknown family.
    let null = dir.path("null.pcap");
    std::fs::write(
        &null,
        pcap(
            0,
            &[
                with_family([2, 0, 0, 0], udp4(1000)),
                with_family([28, 0, 0, 0], udp6(1001)),
                with_family([99, 0, 0, 0], udp4(1002)),
            ],
        ),
    )
    .unwrap();
    let lo = dir.path("loop.pcap");
    std::fs::write(
        &lo,
        pcap(
            108,
            &[
                with_family([0, 0, 0, 2], udp4(2000)),
                with_family([0, 0, 0, 24], udp6(2001)),
            ],
        ),
    )
    .unwrap();
    for (file, want) in [
        (&null, vec![("10.9.0.1", 1000), ("fd00::1", 1001)]),
        (&lo, vec![("10.9.0.1", 2000), ("fd00::1", 2001)]),
    ] {
        let (lines, err) = replay(file);
        let got: Vec<(String, u64)> = lines
            .iter()
            .map(|l| {
                assert_eq!(l["dport"], 53, "{l}");
                assert_eq!(l["len"], if l["family"] == "ipv4" { 36 } else { 56 });
                (
                    l["src"].as_str().unwrap().to_string(),
                    l["sport"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = want.iter().map(|(a, p)| (a.to_string(), *p)).collect();
        assert_eq!(got, want, "{err}");
        assert!(err.contains("accounting: reconciled"), "{err}");
    }
    let (_, err) = replay(&null);
    assert!(
        err.contains("file: 1 cooked not ip"),
        "the frame of an unknown family is counted: {err}"
    );
}

#[test]
fn an_unsupported_link_type_is_named_in_words() {
    let dir = TempDir::new("linktypes");
    let f = dir.path("user0.pcap");
    std::fs::write(&f, pcap(147, &[udp4(1), udp4(2), udp4(3), udp4(4)])).unwrap();
    let (lines, err) = replay(&f);
    assert!(lines.is_empty());
    assert!(
        err.contains(
            "file: 4 packets skipped: link type user-defined (USER0..15) (147) not supported; supported: Ethernet (1), raw IP (101, 228, 229), Linux cooked (113, 276), BSD loopback (0, 108), NFLOG (239)"
        ),
        "{err}"
    );
}

#[test]
fn a_real_nflog_capture_is_read() {
    require_root!();
    let pair = NetnsPair::new();
    let dir = TempDir::new("nflog");
    let file = dir.path("nflog.pcap");
    // B logs UDP to port 9 to NFLOG group 7; tcpdump in B captures that group.
    let nft = |args: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &pair.b, "nft"])
            .args(args.split(' '))
            .output()
            .expect("nft");
        assert!(
            o.status.success(),
            "nft {args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    nft("add table ip dstest");
    nft("add chain ip dstest in { type filter hook input priority 0 ; }");
    nft("add rule ip dstest in udp dport 9 log group 7");
    let mut tcpdump = Command::new("ip")
        .args([
            "netns", "exec", &pair.b, "tcpdump", "-i", "nflog:7", "-U", "-c", "5", "-w",
        ])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // tcpdump says "listening on" when it is ready.
    let mut err = tcpdump.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        let n = std::io::Read::read(&mut err, &mut buf).expect("tcpdump stderr");
        assert!(n > 0, "tcpdump: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    pair.send_udp(false, 45000, 9, 5, 32);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tcpdump.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "tcpdump did not get 5 packets"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = Command::new("capinfos")
        .args(["-E"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("NFLOG"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let (lines, err) = replay(&file);
    assert_eq!(lines.len(), 5, "{err}");
    for l in &lines {
        assert_eq!(
            (
                l["src"].as_str(),
                l["dst"].as_str(),
                l["sport"].as_u64(),
                l["dport"].as_u64()
            ),
            (
                Some(pair.ip4_a.to_string().as_str()),
                Some(pair.ip4_b.to_string().as_str()),
                Some(45000),
                Some(9)
            ),
            "{l}"
        );
        assert_eq!(l["len"], 60, "20 + 8 + 32 bytes of IP: {l}");
    }
}
