//! `dropscope replay FILE EXPRESSION` against `tcpdump -r FILE -w OUT EXPRESSION`: on a
//! generated capture of many kinds of packets and on the fixtures, for 48 expressions, the
//! packets kept (bytes and times, as `tcpdump -xx` prints them) must be identical. Also the
//! bad-expression contract: one line with libpcap's message, exit 2, no file left.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// A tiny deterministic generator (xorshift), so the capture is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const PORTS: [u16; 10] = [22, 53, 80, 443, 1000, 1500, 2000, 2001, 8080, 33434];

/// One frame: Ethernet (maybe VLAN-tagged), IPv4 or IPv6 (or ARP), then TCP, UDP, ICMP,
/// ICMPv6 or GRE, with a payload of random length.
fn frame(r: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    let dst_mac = if r.below(4) == 0 {
        [2, 0, 0, 0, 0, 1]
    } else {
        [2, 0, 0, 0, 0, 2]
    };
    p.extend_from_slice(&dst_mac);
    p.extend_from_slice(&[2, 0, 0, 0, 0, 3 + r.below(2) as u8]);
    if r.below(5) == 0 {
        p.extend_from_slice(&[0x81, 0x00]);
        let vid: u16 = r.pick(&[100, 200]);
        p.extend_from_slice(&vid.to_be_bytes());
    }
    let kind = r.below(10);
    if kind == 9 {
        // ARP request.
        p.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 3]);
        p.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        return p;
    }
    let v6 = kind >= 6;
    let l4: u8 = match r.below(10) {
        0..=3 => 6,
        4..=7 => 17,
        8 => {
            if v6 {
                58
            } else {
                1
            }
        }
        _ => 47,
    };
    let mut l4b = Vec::new();
    match l4 {
        6 | 17 => {
            l4b.extend_from_slice(&r.pick(&PORTS).to_be_bytes());
            l4b.extend_from_slice(&r.pick(&PORTS).to_be_bytes());
            if l4 == 6 {
                l4b.extend_from_slice(&(r.next() as u32).to_be_bytes());
                l4b.extend_from_slice(&(r.next() as u32).to_be_bytes());
                let flags: u8 = r.pick(&[0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14]);
                l4b.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            } else {
                l4b.extend_from_slice(&[0, 8, 0, 0]);
            }
        }
        1 | 58 => {
            let t: u8 = r.pick(&[0, 3, 8, 11, 128, 129, 135]);
            l4b.extend_from_slice(&[t, r.below(4) as u8, 0, 0, 0, 1, 0, 1]);
        }
        _ => l4b.extend_from_slice(&[0, 0, 0x08, 0x00]),
    }
    let payload = r.below(300) as usize;
    l4b.extend((0..payload).map(|i| (i as u8).wrapping_mul(7)));
    let nets4: [[u8; 4]; 5] = [
        [10, 0, 1, 7],
        [10, 2, 3, 4],
        [192, 168, 1, 1],
        [172, 16, 0, 9],
        [224, 0, 0, 251],
    ];
    if v6 {
        p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        p.extend_from_slice(&(l4b.len() as u16).to_be_bytes());
        p.extend_from_slice(&[l4, 64]);
        for _ in 0..2 {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[15] = r.below(4) as u8 + 1;
            if r.below(6) == 0 {
                a[0] = 0xff;
                a[1] = 0x02;
            }
            p.extend_from_slice(&a);
        }
    } else {
        let opts = r.below(6) == 0;
        let ihl: u8 = if opts { 6 } else { 5 };
        p.extend_from_slice(&[0x08, 0x00, 0x40 | ihl, 0]);
        let total = u16::from(ihl) * 4 + l4b.len() as u16;
        p.extend_from_slice(&total.to_be_bytes());
        let frag: u16 = if r.below(8) == 0 { 0x2000 | 5 } else { 0x4000 };
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[r.pick(&[1, 64, 255]), l4, 0, 0]);
        let s = nets4[r.below(4) as usize];
        let d = nets4[r.below(5) as usize];
        p.extend_from_slice(&s);
        p.extend_from_slice(&d);
        if opts {
            p.extend_from_slice(&[1, 1, 1, 0]);
        }
    }
    p.extend_from_slice(&l4b);
    p
}

/// A classic pcap (microseconds, Ethernet) of `n` generated frames; every 7th is cut short
/// (incl_len < orig_len), as a snap length would.
fn write_capture(path: &Path, n: usize) {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n {
        let f = frame(&mut r);
        let incl = if i % 7 == 3 {
            f.len().min(14 + r.below(40) as usize)
        } else {
            f.len()
        };
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&((i as u32 * 7919) % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(incl as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f[..incl]);
    }
    std::fs::write(path, out).unwrap();
}

const EXPRESSIONS: [&str; 48] = [
    "udp",
    "tcp",
    "icmp",
    "icmp6",
    "ip6",
    "ip",
    "arp",
    "vlan",
    "vlan 100",
    "vlan 200 and udp",
    "vlan and ip6",
    "not vlan",
    "udp port 53",
    "tcp port 443",
    "port 22",
    "not port 22",
    "tcp dst port 80",
    "udp src port 2000",
    "portrange 1000-2000",
    "tcp portrange 1000-2000",
    "host 10.0.1.7",
    "src host 10.2.3.4",
    "dst host 192.168.1.1",
    "host 10.0.1.7 and tcp port 443",
    "net 10.0.0.0/8",
    "not net 10.0.0.0/8",
    "net 172.16.0.0/12 or net 192.168.0.0/16",
    "ip multicast",
    "ip and not ip multicast",
    "ip6 multicast",
    "ip6 and tcp dst port 80",
    "ip6 host fd00::1",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:04",
    "ether broadcast or ether multicast",
    "ip proto 47",
    "ip[8] = 1",
    "ip[6:2] & 0x1fff != 0",
    "ip[2:2] > 200",
    "ip[0] & 0xf > 5",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
    "tcp[13] = 18",
    "tcp[tcpflags] & tcp-rst != 0",
    "len > 100",
    "greater 200",
    "less 64",
    "ip[2:2] / 4 > 10 and ip[2:2] % 7 = 1 or (tcp[2:2] >> 4) & 3 = 1",
];

/// `tcpdump -nn -tt -xx -r FILE`: every packet's time and bytes, one text.
fn dump(file: &Path) -> String {
    let o = Command::new("tcpdump")
        .args(["-nn", "-tt", "-xx", "-r"])
        .arg(file)
        .output()
        .expect("run tcpdump");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tcpdump_available() -> bool {
    Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn replay_with_an_expression_keeps_what_tcpdump_keeps() {
    if !tcpdump_available() {
        eprintln!("SKIPPED: no tcpdump");
        return;
    }
    let dir = TempDir::new("filter-replay");
    let gen = dir.path("gen.pcap");
    write_capture(&gen, 600);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap");
    let files = [
        gen,
        root.join("ws-eth-usec.pcap"),
        root.join("ours.pcap"),
        root.join("ws-eth-comments.pcapng"),
    ];
    let mut kept_total = 0usize;
    let mut differing_verdicts = 0usize;
    for file in &files {
        let all = dump(file).lines().filter(|l| !l.starts_with('\t')).count();
        for expr in EXPRESSIONS {
            let ours = dir.path("ours.pcap");
            let theirs = dir.path("theirs.pcap");
            let out = run_ok(
                dropscope()
                    .args(["replay", "-q", "-w"])
                    .arg(&ours)
                    .arg(file)
                    .arg(expr),
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("accounting: reconciled"), "{expr}: {err}");
            run_ok(
                Command::new("tcpdump")
                    .arg("-r")
                    .arg(file)
                    .arg("-w")
                    .arg(&theirs)
                    .arg(expr),
            );
            let (a, b) = (dump(&ours), dump(&theirs));
            assert_eq!(
                a,
                b,
                "{}: {expr:?}: dropscope and tcpdump keep different packets",
                file.display()
            );
            let kept = a.lines().filter(|l| !l.starts_with('\t')).count();
            kept_total += kept;
            if kept > 0 && kept < all {
                differing_verdicts += 1;
            }
        }
    }
    // The generated capture makes most expressions keep some packets and drop others.
    assert!(kept_total > 1000, "{kept_total}");
    assert!(differing_verdicts >= 50, "{differing_verdicts}");
}

#[test]
fn a_bad_expression_is_one_line_exit_2_and_no_file() {
    let dir = TempDir::new("filter-bad");
    let out = dir.path("out.pcapng");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap/ours.pcap");
    let o = out.to_str().unwrap();
    let f = file.to_str().unwrap();
    fails_with(
        &["replay", "-w", o, f, "tcp", "port", "foo"],
        &["tcp port foo", "libpcap"],
    );
    assert!(!out.exists());
    fails_with(&["replay", "-w", o, f, "udp and"], &["udp and", "libpcap"]);
    assert!(!out.exists());
    fails_with(
        &["capture", "-w", o, "host", "999.1.1.1"],
        &["host 999.1.1.1", "libpcap"],
    );
    assert!(!out.exists());
    fails_with(
        &["capture", "-w", o, "--reason", "NO_SUCH_THING"],
        &["NO_SUCH_THING", "dropscope reasons"],
    );
    assert!(!out.exists());
    fails_with(
        &["capture", "-w", o, "-i", "no-such-if0"],
        &["no-such-if0", "no such interface"],
    );
    fails_with(
        &["capture", "-w", o, "--netns", "no-such-ns-x"],
        &["no-such-ns-x", "ip netns list"],
    );
    fails_with(
        &["capture", "-w", o, "--identity", "7"],
        &["--source cilium"],
    );
    assert!(!out.exists());
}
