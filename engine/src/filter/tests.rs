//! Differential tests: the interpreter against libpcap's `bpf_filter()` (the reference for
//! classic semantics), and the eBPF translation against the interpreter in the running
//! kernel (root only; skipped with a printed reason otherwise).

use super::cbpf::code as c;
use super::pcap_ffi::libpcap_run;
use super::translate::{check_shape, EbpfInsn, PKT_MAX};
use super::*;

/// At least 40 expressions, covering every classic opcode libpcap emits for them.
pub(super) const EXPRESSIONS: &[&str] = &[
    "vlan",
    "ip6",
    "tcp[tcpflags] & tcp-syn != 0",
    "net 10.0.0.0/8",
    "not port 22",
    "len > 100",
    "udp port 53",
    "host 10.0.1.7 and tcp port 443",
    "icmp",
    "icmp6",
    "ip proto 47",
    "tcp[13] = 18",
    "ip[2:2] > 576",
    "ether host 02:00:00:00:00:01",
    "vlan 100 and udp",
    "ip6 and tcp dst port 80",
    "portrange 1000-2000",
    "greater 200",
    "less 64",
    "ip and not ip multicast",
    "ip[2:2] / 4 > 10",
    "ip[2:2] % 7 = 1",
    "(tcp[2:2] >> 4) & 3 = 1",
    "tcp port 443 and host 10.0.1.7",
    "udp",
    "tcp",
    "arp",
    "ip",
    "ip6 and udp port 53",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
    "ip[6:2] & 0x1fff != 0",
    "ip[8] < 10",
    "ether src 02:00:00:00:00:0a",
    "ether broadcast",
    "src net 192.168.0.0/16 or dst host 8.8.8.8",
    "tcp dst portrange 440-450 and not src host 10.0.1.7",
    "vlan and ip6",
    "ip[0] & 0xf > 5",
    "len - 14 >= 60 and udp",
    "ip[2:2] * 2 - 40 > 100",
    "(ip[9] << 2) | 1 = 25",
    "tcp[0:4] ^ 0xffffffff != 0",
    "udp[8:2] = 0xabcd or tcp[20:2] = 0xabcd",
    "ip6[6] = 17 or ip6[6] = 58",
    "ip[16] >= 224 or (ip6 and ip6[24] = 0xff)",
    "-(ip[8]) + 300 > 250",
    "ip[2:2] - len + 14 = 0",
];

// ---- a tiny deterministic PRNG (xorshift64*) ----

pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---- packet builders ----

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_BCAST: [u8; 6] = [0xff; 6];

fn eth(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, et: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = dst.to_vec();
    v.extend_from_slice(&src);
    if let Some(id) = vlan {
        v.extend_from_slice(&0x8100u16.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
    }
    v.extend_from_slice(&et.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, opts: usize, frag: u16, payload: &[u8]) -> Vec<u8> {
    let hl = 20 + opts;
    let total = (hl + payload.len()) as u16;
    let mut v = vec![0x40 | (hl / 4) as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend(std::iter::repeat_n(1u8, opts));
    v.extend_from_slice(payload);
    v
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

fn tcp(sport: u16, dport: u16, flags: u8, data: usize) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v.extend((0..data).map(payload_byte));
    v
}

fn udp(sport: u16, dport: u16, data: usize) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + data) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend((0..data).map(payload_byte));
    v
}

fn payload_byte(i: usize) -> u8 {
    match i {
        0 => 0xab,
        1 => 0xcd,
        _ => i as u8,
    }
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[15] = last;
    a
}

/// A packet: bytes as captured, length on the wire.
#[derive(Clone, Debug)]
pub(super) struct Pkt {
    pub(super) bytes: Vec<u8>,
    pub(super) wirelen: u32,
}

/// Whole IP packets (the raw-IP corpus; also wrapped in Ethernet below).
fn ip_packets() -> Vec<Vec<u8>> {
    let h7 = [10, 0, 1, 7];
    let h9 = [10, 0, 1, 9];
    let g = [8, 8, 8, 8];
    let lan = [192, 168, 1, 20];
    let mc = [224, 0, 0, 5];
    let mut mcast6 = v6(1);
    mcast6[0] = 0xff;
    let mut low_ttl = ipv4(h9, mc, 17, 0, 0, &udp(1000, 2000, 2));
    low_ttl[8] = 1;
    vec![
        low_ttl,
        ipv4(h9, h7, 6, 0, 0x4000, &tcp(51000, 443, 0x02, 0)),
        ipv4(h7, h9, 6, 0, 0x4000, &tcp(443, 51000, 0x12, 0)),
        ipv4(h7, g, 6, 0, 0, &tcp(1500, 22, 0x10, 300)),
        ipv4(lan, g, 6, 4, 0, &tcp(445, 80, 0x18, 40)),
        ipv4(lan, h7, 17, 0, 0, &udp(5353, 53, 30)),
        ipv4(h7, g, 17, 0, 0, &udp(53, 1999, 600)),
        ipv4(h9, mc, 17, 0, 0, &udp(1000, 2000, 2)),
        ipv4(lan, h7, 1, 0, 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
        ipv4(g, lan, 47, 0, 0, &[0, 0, 0x08, 0, 1, 2, 3, 4]),
        ipv4(h9, h7, 6, 0, 0x2010, &tcp(80, 443, 0x02, 10)),
        ipv4(
            [172, 16, 0, 1],
            mc,
            2,
            4,
            0,
            &[0x11, 0x64, 0, 0, 0, 0, 0, 0],
        ),
        ipv6(v6(1), v6(2), 6, &tcp(40000, 80, 0x02, 0)),
        ipv6(v6(2), v6(1), 6, &tcp(80, 40000, 0x12, 1200)),
        ipv6(v6(3), v6(4), 17, &udp(33000, 53, 45)),
        ipv6(v6(5), mcast6, 58, &[135, 0, 0, 0, 0, 0, 0, 0]),
        ipv6(v6(6), v6(7), 17, &udp(1200, 1800, 8)),
    ]
}

/// The Ethernet corpus: real-looking frames, VLAN-tagged copies, ARP, truncated copies at
/// random lengths (wire length kept) and random bytes.
pub(super) fn eth_packets(rng: &mut Rng) -> Vec<Pkt> {
    let mut whole = Vec::new();
    for (n, ip) in ip_packets().iter().enumerate() {
        let et = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
        let (dst, src) = match n % 3 {
            0 => (MAC_A, MAC_B),
            1 => (MAC_B, MAC_A),
            _ => (MAC_BCAST, [0x02, 0, 0, 0, 0, 0x33]),
        };
        whole.push(eth(dst, src, None, et, ip));
        whole.push(eth(
            dst,
            src,
            Some(if n % 2 == 0 { 100 } else { 200 }),
            et,
            ip,
        ));
    }
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 1, 7, 0, 0, 0, 0, 0, 0, 10, 0, 1, 9,
    ];
    whole.push(eth(MAC_BCAST, MAC_A, None, 0x0806, &arp));
    let mut out: Vec<Pkt> = whole
        .iter()
        .map(|b| Pkt {
            bytes: b.clone(),
            wirelen: b.len() as u32,
        })
        .collect();
    for b in &whole {
        for _ in 0..4 {
            let cut = rng.below(b.len() + 1);
            out.push(Pkt {
                bytes: b[..cut].to_vec(),
                wirelen: b.len() as u32,
            });
        }
    }
    for _ in 0..40 {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let wirelen = (len + rng.below(300)) as u32;
        out.push(Pkt { bytes, wirelen });
    }
    out
}

/// The raw-IP corpus: the IP packets, truncated copies, random bytes.
pub(super) fn raw_packets(rng: &mut Rng) -> Vec<Pkt> {
    let whole = ip_packets();
    let mut out: Vec<Pkt> = whole
        .iter()
        .map(|b| Pkt {
            bytes: b.clone(),
            wirelen: b.len() as u32,
        })
        .collect();
    for b in &whole {
        for _ in 0..4 {
            let cut = rng.below(b.len() + 1);
            out.push(Pkt {
                bytes: b[..cut].to_vec(),
                wirelen: b.len() as u32,
            });
        }
    }
    for _ in 0..30 {
        let len = rng.below(100);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(b) = bytes.first_mut() {
            *b = (*b & 0x0f) | if rng.below(2) == 0 { 0x40 } else { 0x60 };
        }
        out.push(Pkt {
            bytes,
            wirelen: len as u32,
        });
    }
    out
}

pub(super) fn expressions() -> Vec<Expression> {
    EXPRESSIONS
        .iter()
        .map(|e| Expression::compile(e).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect()
}

/// A random valid classic program (without shifts by X when `no_x_shifts`: libpcap and the
/// kernel disagree on counts of 32 or more) of `n` instructions: every opcode, jumps forward in
/// range, loads mostly near the packet so they sometimes succeed.
pub(super) fn random_program(rng: &mut Rng, n: usize, no_x_shifts: bool) -> Vec<BpfInsn> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n - 1 {
        let left = (n - 2 - v.len()) as u32; // instructions after the next one
        let near = (rng.below(80)) as u32;
        let k = match rng.below(4) {
            0 => rng.next() as u32,
            1 => near,
            2 => rng.below(40) as u32,
            _ => 2040 + rng.below(20) as u32,
        };
        let mem = rng.below(16) as u32;
        let jt = (rng.below(left as usize + 1)).min(255) as u8;
        let jf = (rng.below(left as usize + 1)).min(255) as u8;
        let ins = match rng.below(30) {
            0 => BpfInsn::new(c::LD | c::W | c::ABS, 0, 0, near),
            1 => BpfInsn::new(
                c::LD | c::H | c::ABS,
                0,
                0,
                if rng.below(8) == 0 { k } else { near },
            ),
            2 => BpfInsn::new(c::LD | c::B | c::ABS, 0, 0, near),
            3 => BpfInsn::new(c::LD | c::W | c::IND, 0, 0, rng.below(30) as u32),
            4 => BpfInsn::new(
                c::LD | c::H | c::IND,
                0,
                0,
                if rng.below(8) == 0 { k } else { near },
            ),
            5 => BpfInsn::new(c::LD | c::B | c::IND, 0, 0, rng.below(30) as u32),
            6 => BpfInsn::new(c::LD | c::IMM, 0, 0, k),
            7 => BpfInsn::new(c::LD | c::MEM, 0, 0, mem),
            8 => BpfInsn::new(c::LD | c::W | c::LEN, 0, 0, 0),
            9 => BpfInsn::new(
                c::LDX | c::IMM,
                0,
                0,
                if rng.below(2) == 0 { near } else { k },
            ),
            10 => BpfInsn::new(c::LDX | c::MEM, 0, 0, mem),
            11 => BpfInsn::new(c::LDX | c::W | c::LEN, 0, 0, 0),
            12 => BpfInsn::new(
                c::LDX | c::B | c::MSH,
                0,
                0,
                if rng.below(8) == 0 { k } else { near },
            ),
            13 => BpfInsn::new(c::ST, 0, 0, mem),
            14 => BpfInsn::new(c::STX, 0, 0, mem),
            15..=18 => {
                let ops = [
                    c::ADD,
                    c::SUB,
                    c::MUL,
                    c::DIV,
                    c::MOD,
                    c::AND,
                    c::OR,
                    c::XOR,
                    c::LSH,
                    c::RSH,
                ];
                let o = ops[rng.below(ops.len())];
                let x_shift = o == c::LSH || o == c::RSH;
                if rng.below(2) == 0 && !(no_x_shifts && x_shift) {
                    BpfInsn::new(c::ALU | o | c::X, 0, 0, 0)
                } else {
                    let k = match o {
                        c::DIV | c::MOD => k.max(1),
                        c::LSH | c::RSH => k % 32,
                        _ => k,
                    };
                    BpfInsn::new(c::ALU | o | c::K, 0, 0, k)
                }
            }
            19 => BpfInsn::new(c::ALU | c::NEG, 0, 0, 0),
            20 => BpfInsn::new(c::JMP | c::JA, 0, 0, rng.below(left as usize + 1) as u32),
            21..=25 => {
                let ops = [c::JEQ, c::JGT, c::JGE, c::JSET];
                let o = ops[rng.below(ops.len())];
                let src = if rng.below(3) == 0 { c::X } else { c::K };
                let k = if rng.below(2) == 0 {
                    rng.below(4) as u32
                } else {
                    k
                };
                BpfInsn::new(c::JMP | o | src, jt, jf, k)
            }
            26 => BpfInsn::new(c::MISC | c::TAX, 0, 0, 0),
            27 => BpfInsn::new(c::MISC | c::TXA, 0, 0, 0),
            28 => BpfInsn::new(c::RET | c::K, 0, 0, if rng.below(2) == 0 { 0 } else { k }),
            _ => BpfInsn::new(c::RET | c::A, 0, 0, 0),
        };
        if v.len() < n - 1 {
            v.push(ins);
        }
    }
    v.push(if rng.below(2) == 0 {
        BpfInsn::new(c::RET | c::A, 0, 0, 0)
    } else {
        BpfInsn::new(c::RET | c::K, 0, 0, 1)
    });
    v
}

#[test]
fn filter_expression_errors_are_one_line() {
    let e = Expression::compile("tcp port foo").unwrap_err().to_string();
    assert!(
        e.starts_with("bad filter expression \"tcp port foo\": libpcap: "),
        "{e}"
    );
    assert!(e.contains("'foo'") || e.contains("foo"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = Expression::compile("tcp\nport foo")
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(matches!(
        Expression::compile("  \t "),
        Err(FilterError::Empty)
    ));
    assert_eq!(FilterError::Empty.to_string(), "empty filter expression");
}

#[test]
fn filter_expression_exact_verdicts() {
    let f = Expression::compile("tcp port 443 and host 10.0.1.7").unwrap();
    let ip = ipv4(
        [10, 0, 1, 9],
        [10, 0, 1, 7],
        6,
        0,
        0,
        &tcp(51000, 443, 2, 0),
    );
    let frame = eth(MAC_A, MAC_B, None, 0x0800, &ip);
    assert!(f.matches(false, &frame, frame.len() as u32));
    assert!(f.matches(true, &ip, ip.len() as u32));
    // The raw program on an Ethernet frame (and vice versa) does not match.
    assert!(!f.matches(true, &frame, frame.len() as u32));
    assert!(!f.matches(false, &ip, ip.len() as u32));
    let other = ipv4(
        [10, 0, 1, 9],
        [10, 0, 1, 8],
        6,
        0,
        0,
        &tcp(51000, 443, 2, 0),
    );
    assert!(!f.matches(true, &other, other.len() as u32));
    let port = ipv4(
        [10, 0, 1, 9],
        [10, 0, 1, 7],
        6,
        0,
        0,
        &tcp(51000, 444, 2, 0),
    );
    assert!(!f.matches(true, &port, port.len() as u32));
    // Cut before the port: a load past the captured bytes rejects.
    assert!(!f.matches(false, &frame[..36], frame.len() as u32));
    assert!(f.matches(false, &frame[..38], frame.len() as u32));
    // Accept returns tcpdump's snap length.
    assert_eq!(f.eth.run(&frame, frame.len() as u32), 262_144);
    let len = Expression::compile("greater 200").unwrap();
    assert!(!len.matches(false, &frame[..20], 199));
    assert!(len.matches(false, &frame[..20], 200));
}

#[test]
fn filter_interpreter_matches_libpcap_on_expressions() {
    let mut rng = Rng::new(0x5eed);
    let eth = eth_packets(&mut rng);
    let raw = raw_packets(&mut rng);
    let mut uncovered = Vec::new();
    for x in expressions() {
        let (mut acc, mut rej) = (0, 0);
        for p in &eth {
            let ours = x.eth.run(&p.bytes, p.wirelen);
            assert_eq!(
                ours,
                libpcap_run(&x.eth, &p.bytes, p.wirelen),
                "{} on {p:?}",
                x.text
            );
            if ours != 0 {
                acc += 1
            } else {
                rej += 1
            }
        }
        for p in &raw {
            let ours = x.raw.run(&p.bytes, p.wirelen);
            assert_eq!(
                ours,
                libpcap_run(&x.raw, &p.bytes, p.wirelen),
                "raw {} on {p:?}",
                x.text
            );
        }
        if acc == 0 || rej == 0 {
            uncovered.push(format!("{} ({acc} accepted, {rej} rejected)", x.text));
        }
    }
    assert!(
        uncovered.is_empty(),
        "expressions without both verdicts: {uncovered:?}"
    );
}

#[test]
fn filter_shift_by_x_of_32_or_more_follows_the_kernel() {
    // A = 1 << X, X = 33: the kernel (interpreter and JITs) masks the count to 5 bits.
    let p = Program::new(vec![
        BpfInsn::new(c::LD | c::IMM, 0, 0, 1),
        BpfInsn::new(c::LDX | c::IMM, 0, 0, 33),
        BpfInsn::new(c::ALU | c::LSH | c::X, 0, 0, 0),
        BpfInsn::new(c::RET | c::A, 0, 0, 0),
    ])
    .unwrap();
    assert_eq!(p.run(&[], 0), 2);
    // libpcap's bpf_filter() zeroes A instead; dropscope follows the kernel it runs in.
    assert_eq!(libpcap_run(&p, &[], 0), 0);
}

#[test]
fn filter_interpreter_matches_libpcap_on_random_programs() {
    let mut rng = Rng::new(42);
    let pkts = eth_packets(&mut rng);
    let mut accepted = 0;
    for round in 0..3000 {
        let n = 2 + rng.below(40);
        // libpcap leaves M[] uninitialised: store A (still 0) into every word first.
        let mut insns: Vec<BpfInsn> = (0..16).map(|m| BpfInsn::new(c::ST, 0, 0, m)).collect();
        insns.extend(random_program(&mut rng, n, true));
        let p = Program::new(insns.clone()).unwrap_or_else(|e| panic!("{e}: {insns:?}"));
        for pk in pkts.iter().skip(round % 7).step_by(7) {
            let ours = p.run(&pk.bytes, pk.wirelen);
            let theirs = libpcap_run(&p, &pk.bytes, pk.wirelen);
            assert_eq!(ours, theirs, "program {insns:?} packet {pk:?}");
            accepted += usize::from(ours != 0);
        }
    }
    assert!(
        accepted > 100,
        "random programs almost never accept: {accepted}"
    );
}

#[test]
fn filter_translations_have_the_contract_shape() {
    for x in expressions() {
        let t = x
            .translate(4000)
            .unwrap_or_else(|e| panic!("{}: {e}", x.text));
        check_shape(&t).unwrap_or_else(|e| panic!("{}: {e}", x.text));
        assert!(t.len() < 400, "{}: {} instructions", x.text, t.len());
    }
    let mut rng = Rng::new(7);
    for _ in 0..2000 {
        let a = Program::new({
            let n = 2 + rng.below(60);
            random_program(&mut rng, n, false)
        })
        .unwrap();
        let b = Program::new({
            let n = 2 + rng.below(60);
            random_program(&mut rng, n, false)
        })
        .unwrap();
        let t = translate(&a, &b, 4000).unwrap();
        check_shape(&t).unwrap();
    }
}

// ---- the kernel differential test (root) ----

mod kernel {
    use super::*;
    use crate::kernel::bpfsys::sys_bpf;
    use aya_obj::generated::{bpf_attr, bpf_cmd};
    use std::mem::{size_of, zeroed};
    use std::os::fd::{AsRawFd, OwnedFd};

    const SENTINEL: u32 = 0xdead_beef;
    const VALUE_SIZE: u32 = PKT_MAX + 72;
    const CB0: i16 = 48; // __sk_buff.cb[0]: wire length
    const CB1: i16 = 52; // cb[1]: captured length
    const CB2: i16 = 56; // cb[2]: 0 = Ethernet program, 1 = raw-IP program

    pub(super) fn map_create() -> std::io::Result<OwnedFd> {
        // BPF_MAP_TYPE_ARRAY, one slot.
        crate::kernel::testing::raw::map_create(2, 4, VALUE_SIZE, 1)
    }

    fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
        EbpfInsn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Harness + translation + exit + failure tail, as raw instructions.
    pub(super) fn harness(map_fd: i32, body: &[EbpfInsn]) -> Vec<u64> {
        let mut v = vec![
            i(0xbf, 6, 1, 0, 0),                   // r6 = ctx
            i(0x18, 7, 2, 0, map_fd),              // r7 = &map value (BPF_PSEUDO_MAP_VALUE)
            i(0x00, 0, 0, 0, 0),                   //     offset 0
            i(0x61, 8, 6, CB0, 0),                 // r8 = cb[0] (wire length)
            i(0x63, 7, 8, PKT_MAX as i16 + 64, 0), // scratch.wirelen = r8
            i(0x61, 9, 6, CB1, 0),                 // r9 = cb[1] (caplen)
            i(0x25, 9, 0, 0, PKT_MAX as i32),      // if r9 > 2048 goto fail (patched)
            i(0x15, 9, 0, 0, 0),                   // if r9 == 0 goto skip (patched)
            i(0xbf, 1, 6, 0, 0),                   // r1 = ctx
            i(0xb7, 2, 0, 0, 0),                   // r2 = 0 (offset)
            i(0xbf, 3, 7, 0, 0),                   // r3 = buffer
            i(0xbf, 4, 9, 0, 0),                   // r4 = len
            i(0xb7, 5, 0, 0, 1),                   // r5 = BPF_HDR_START_NET
            i(0x85, 0, 0, 0, 68),                  // call bpf_skb_load_bytes_relative
            i(0x55, 0, 0, 0, 0),                   // if r0 != 0 goto fail (patched)
        ];
        let skip = v.len();
        v.extend([
            i(0xbf, 1, 7, 0, 0),   // r1 = packet
            i(0xbf, 2, 9, 0, 0),   // r2 = caplen
            i(0x61, 4, 6, CB2, 0), // r4 = mode
            i(0xbf, 5, 7, 0, 0),   // r5 = scratch
            i(0x07, 5, 0, 0, PKT_MAX as i32),
        ]);
        v.extend_from_slice(body);
        v.push(i(0x95, 0, 0, 0, 0)); // exit: the instruction just after the run
        let fail = v.len();
        v.push(i(0xb4, 0, 0, 0, SENTINEL as i32));
        v.push(i(0x95, 0, 0, 0, 0));
        v[6].off = (fail - 7) as i16;
        v[7].off = (skip - 8) as i16;
        v[14].off = (fail - 15) as i16;
        v.into_iter().map(EbpfInsn::to_u64).collect()
    }

    pub(super) fn prog_load(insns: &[u64]) -> Result<OwnedFd, String> {
        // BPF_PROG_TYPE_SOCKET_FILTER: runs under BPF_PROG_TEST_RUN with an skb context.
        crate::kernel::testing::raw::prog_load(1, insns, c"GPL")
    }

    /// Runs the loaded program once on `data` with the context's cb[0..3] set.
    pub(super) fn test_run(prog: &OwnedFd, data: &[u8], cb: [u32; 3]) -> std::io::Result<u32> {
        let mut ctx = [0u32; 17]; // __sk_buff up to and including cb[4]
        ctx[12] = cb[0];
        ctx[13] = cb[1];
        ctx[14] = cb[2];
        // SAFETY: bpf_attr is plain integers: all zeroes is valid.
        let mut attr: bpf_attr = unsafe { zeroed() };
        // SAFETY: writing integers and pointers (to live buffers) into the TEST_RUN member.
        unsafe {
            let t = &mut attr.test;
            t.prog_fd = prog.as_raw_fd() as u32;
            t.data_in = data.as_ptr() as u64;
            t.data_size_in = data.len() as u32;
            t.ctx_in = ctx.as_ptr() as u64;
            t.ctx_size_in = size_of::<[u32; 17]>() as u32;
            t.repeat = 1;
        }
        sys_bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr)?;
        // SAFETY: reading the integer the kernel wrote back.
        Ok(unsafe { attr.test.retval })
    }

    /// Why the kernel tests cannot run here, if they cannot.
    pub(super) fn skip_reason() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root".into());
        }
        match map_create() {
            Ok(_) => None,
            Err(e) => Some(format!("bpf(BPF_MAP_CREATE) failed: {e}")),
        }
    }

    /// The kernel's input for a packet: the bytes behind a made-up Ethernet header of an
    /// unassigned ethertype (0x88b5, local experimental), so the test run neither parses
    /// nor checks them; the harness copies `caplen` bytes from the network header, which is
    /// where the test run of a socket filter leaves `skb->data` (after `eth_type_trans`).
    pub(super) fn kernel_input(raw_ip: bool, p: &Pkt) -> (Vec<u8>, [u32; 3]) {
        let d = eth(MAC_A, MAC_B, None, 0x88b5, &p.bytes);
        (d, [p.wirelen, p.bytes.len() as u32, u32::from(raw_ip)])
    }
}

fn kernel_or_skip(test: &str) -> Option<OwnedFdAlias> {
    if let Some(why) = kernel::skip_reason() {
        eprintln!("{test}: skipped: {why}");
        return None;
    }
    kernel::map_create().ok()
}

type OwnedFdAlias = std::os::fd::OwnedFd;

#[test]
fn filter_kernel_verifier_accepts_all_translations() {
    use std::os::fd::AsRawFd;
    let Some(map) = kernel_or_skip("filter_kernel_verifier_accepts_all_translations") else {
        return;
    };
    for x in expressions() {
        let t = x.translate(4000).unwrap();
        kernel::prog_load(&kernel::harness(map.as_raw_fd(), &t))
            .unwrap_or_else(|e| panic!("verifier refused {:?}: {e}", x.text));
    }
    kernel::prog_load(&kernel::harness(map.as_raw_fd(), &accept_all())).expect("accept_all");
}

#[test]
fn filter_kernel_verdicts_match_interpreter() {
    use std::os::fd::AsRawFd;
    let Some(map) = kernel_or_skip("filter_kernel_verdicts_match_interpreter") else {
        return;
    };
    let mut rng = Rng::new(0xfeed);
    let eth = eth_packets(&mut rng);
    let raw = raw_packets(&mut rng);
    let mut uncovered = Vec::new();
    for x in expressions() {
        let t = x.translate(4000).unwrap();
        let prog = kernel::prog_load(&kernel::harness(map.as_raw_fd(), &t))
            .unwrap_or_else(|e| panic!("verifier refused {:?}: {e}", x.text));
        for (raw_ip, set, p) in [(false, &eth, &x.eth), (true, &raw, &x.raw)] {
            let (mut acc, mut rej) = (0, 0);
            for pk in set.iter() {
                let want = p.run(&pk.bytes, pk.wirelen);
                let (data, cb) = kernel::kernel_input(raw_ip, pk);
                let got = kernel::test_run(&prog, &data, cb)
                    .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN {cb:?} {data:?}: {e}"));
                assert_eq!(got, want, "{:?} raw_ip={raw_ip} on {pk:?}", x.text);
                if want != 0 {
                    acc += 1
                } else {
                    rej += 1
                }
            }
            if !raw_ip && (acc == 0 || rej == 0) {
                uncovered.push(x.text.clone());
            }
        }
    }
    assert!(uncovered.is_empty(), "without both verdicts: {uncovered:?}");
}

#[test]
fn filter_kernel_random_programs_match_interpreter() {
    use std::os::fd::AsRawFd;
    let Some(map) = kernel_or_skip("filter_kernel_random_programs_match_interpreter") else {
        return;
    };
    let mut rng = Rng::new(99);
    let eth = eth_packets(&mut rng);
    let raw = raw_packets(&mut rng);
    for round in 0..150 {
        let a = Program::new({
            let n = 2 + rng.below(50);
            random_program(&mut rng, n, false)
        })
        .unwrap();
        let b = Program::new({
            let n = 2 + rng.below(50);
            random_program(&mut rng, n, false)
        })
        .unwrap();
        let t = translate(&a, &b, 4000).unwrap();
        let prog = kernel::prog_load(&kernel::harness(map.as_raw_fd(), &t))
            .unwrap_or_else(|e| panic!("verifier refused {:?} / {:?}: {e}", a.insns(), b.insns()));
        for (raw_ip, set, p) in [(false, &eth, &a), (true, &raw, &b)] {
            for pk in set.iter().skip(round % 5).step_by(5) {
                let want = p.run(&pk.bytes, pk.wirelen);
                let (data, cb) = kernel::kernel_input(raw_ip, pk);
                let got = kernel::test_run(&prog, &data, cb).expect("BPF_PROG_TEST_RUN");
                assert_eq!(got, want, "{:?} raw_ip={raw_ip} on {pk:?}", p.insns());
            }
        }
    }
}
