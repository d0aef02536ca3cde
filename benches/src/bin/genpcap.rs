//! `genpcap`: writes a deterministic classic pcap (nanosecond timestamps, Ethernet) of
//! realistic small packets for the replay benchmark (scripts/bench-replay.sh), and a sidecar
//! JSON with the totals a correct reader must find in it.
//!
//! The traffic: N conversations (IPv4/IPv6 x UDP/TCP), both directions, frames of 60–200
//! bytes, packets spread over conversations with a skew (a few heavy, many light), valid IP
//! header and UDP/TCP checksums. Addresses come from the documentation ranges (198.51.100.0/24,
//! 203.0.113.0/24, 2001:db8::/32) and, beyond 30000 conversations, the benchmarking range
//! 198.18.0.0/15; it is only a file. The same arguments always give the same bytes. std only.
//!
//! `--flows N` makes a file with (at least) N distinct directional flows, for the flow table's
//! memory and the stats JSON of a large table: the first N packets go to N different flows
//! (both directions of N/2 conversations, in order), the rest are skewed as usual.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::exit;

const USAGE: &str = "\
usage: genpcap OUT.pcap [--packets N] [--conversations N] [--flows N] [--seed S] [--meta FILE]
  --packets N         packets to write (default 1000000)
  --conversations N   bidirectional conversations, ~2 directional flows each (default 500)
  --flows N           every one of N directional flows (N/2 conversations, rounded up) gets
                      one of the first N packets; needs N <= packets (sets --conversations)
  --seed S            PRNG seed (default 1)
  --meta FILE         sidecar JSON with the expected totals (default OUT.pcap.json)";

/// UDP server ports; none of them is a tunnel port (4789, 8472, 6081) a decoder would open.
const UDP_PORTS: [u16; 8] = [53, 123, 443, 514, 1812, 3478, 5353, 8125];
const TCP_PORTS: [u16; 8] = [22, 25, 80, 443, 3306, 5432, 6379, 8080];
const MIN_FRAME: usize = 60;
const MAX_FRAME: usize = 200;

/// Conversations per client address block: client ports are 32768 + (i % this).
const CONVS_PER_BLOCK: usize = 30000;
/// Conversations at most: 512 client blocks (block 0 in 198.51.100.0/24 as always, the
/// others in 198.18.0.0/15).
const MAX_CONVERSATIONS: usize = 512 * CONVS_PER_BLOCK;

/// A directional flow: (IPv6?, src, dst, protocol, source port, destination port).
type FlowTuple = (bool, [u8; 16], [u8; 16], u8, u16, u16);

struct Rng(u64);

impl Rng {
    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    V4Udp,
    V4Tcp,
    V6Udp,
    V6Tcp,
}

impl Kind {
    fn v6(self) -> bool {
        matches!(self, Kind::V6Udp | Kind::V6Tcp)
    }
    fn tcp(self) -> bool {
        matches!(self, Kind::V4Tcp | Kind::V6Tcp)
    }
    fn name(self) -> &'static str {
        match self {
            Kind::V4Udp => "ipv4_udp",
            Kind::V4Tcp => "ipv4_tcp",
            Kind::V6Udp => "ipv6_udp",
            Kind::V6Tcp => "ipv6_tcp",
        }
    }
}

struct Conv {
    kind: Kind,
    client: [u8; 16],
    server: [u8; 16],
    cport: u16,
    sport: u16,
    /// Next TCP sequence number, per direction (0 = client to server).
    seq: [u32; 2],
    /// Whether a direction has sent its first (SYN / SYN-ACK) segment.
    opened: [bool; 2],
}

fn make_convs(n: usize, rng: &mut Rng) -> Vec<Conv> {
    (0..n)
        .map(|i| {
            // 40% IPv4 UDP, 30% IPv4 TCP, 15% IPv6 UDP, 15% IPv6 TCP.
            let kind = match i % 20 {
                0..=7 => Kind::V4Udp,
                8..=13 => Kind::V4Tcp,
                14..=16 => Kind::V6Udp,
                _ => Kind::V6Tcp,
            };
            let mut client = [0u8; 16];
            let mut server = [0u8; 16];
            let host = (i % 250) as u8 + 1;
            // Block 0 keeps the addresses of files made before blocks existed.
            let block = i / CONVS_PER_BLOCK;
            let [block_hi, block_lo] = (block as u16).to_be_bytes();
            let srv = rng.below(16) as u8 + 1;
            if kind.v6() {
                let c: [u8; 16] = [
                    0x20,
                    0x01,
                    0x0d,
                    0xb8,
                    0,
                    1,
                    block_hi,
                    block_lo,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (i >> 8) as u8,
                    host,
                ];
                let s: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, srv];
                client = c;
                server = s;
            } else {
                client[..4].copy_from_slice(&if block == 0 {
                    [198, 51, 100, host]
                } else {
                    [198, 18 + (block_hi & 1), block_lo, host]
                });
                server[..4].copy_from_slice(&[203, 0, 113, srv]);
            }
            let ports = if kind.tcp() { &TCP_PORTS } else { &UDP_PORTS };
            let sport = ports[rng.below(ports.len() as u64) as usize];
            // Unique per conversation, so every directional 5-tuple is distinct.
            let cport = 32768 + (i % CONVS_PER_BLOCK) as u16;
            let seq = [rng.next() as u32, rng.next() as u32];
            Conv {
                kind,
                client,
                server,
                cport,
                sport,
                seq,
                opened: [false; 2],
            }
        })
        .collect()
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds one Ethernet frame of exactly `len` bytes (or the headers' minimum) into `buf`.
fn build_frame(
    buf: &mut Vec<u8>,
    c: &mut Conv,
    to_server: bool,
    len: usize,
    ip_id: u16,
    rng: &mut Rng,
) {
    buf.clear();
    let (src, dst, sp, dp) = if to_server {
        (c.client, c.server, c.cport, c.sport)
    } else {
        (c.server, c.client, c.sport, c.cport)
    };
    let l4_hdr = if c.kind.tcp() { 20 } else { 8 };
    let l3_hdr = if c.kind.v6() { 40 } else { 20 };
    // A direction's first TCP segment (SYN / SYN-ACK) carries no payload.
    let syn = c.kind.tcp() && !c.opened[usize::from(!to_server)];
    let len = if syn {
        14 + l3_hdr + l4_hdr
    } else {
        len.max(14 + l3_hdr + l4_hdr)
    };
    let l4_len = len - 14 - l3_hdr;
    let payload = l4_len - l4_hdr;

    // Ethernet: locally administered MACs derived from the last address byte.
    let mac = |a: &[u8; 16], v6: bool| -> [u8; 6] {
        [
            0x02,
            0,
            0,
            0,
            if v6 { 6 } else { 4 },
            a[if v6 { 15 } else { 3 }],
        ]
    };
    buf.extend_from_slice(&mac(&dst, c.kind.v6()));
    buf.extend_from_slice(&mac(&src, c.kind.v6()));
    buf.extend_from_slice(&(if c.kind.v6() { 0x86ddu16 } else { 0x0800 }).to_be_bytes());

    let proto: u8 = if c.kind.tcp() { 6 } else { 17 };
    // Pseudo-header sum for the L4 checksum.
    let mut pseudo = 0u32;
    if c.kind.v6() {
        buf.extend_from_slice(&0x6000_0000u32.to_be_bytes());
        buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
        buf.push(proto);
        buf.push(64);
        buf.extend_from_slice(&src);
        buf.extend_from_slice(&dst);
        pseudo = csum_add(pseudo, &src);
        pseudo = csum_add(pseudo, &dst);
        pseudo += l4_len as u32 + u32::from(proto);
    } else {
        let ip_start = buf.len();
        buf.push(0x45);
        buf.push(0);
        buf.extend_from_slice(&((l3_hdr + l4_len) as u16).to_be_bytes());
        buf.extend_from_slice(&ip_id.to_be_bytes());
        buf.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
        buf.push(64);
        buf.push(proto);
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&src[..4]);
        buf.extend_from_slice(&dst[..4]);
        let ck = csum_fold(csum_add(0, &buf[ip_start..]));
        buf[ip_start + 10..ip_start + 12].copy_from_slice(&ck.to_be_bytes());
        pseudo = csum_add(pseudo, &src[..4]);
        pseudo = csum_add(pseudo, &dst[..4]);
        pseudo += l4_len as u32 + u32::from(proto);
    }

    let l4_start = buf.len();
    buf.extend_from_slice(&sp.to_be_bytes());
    buf.extend_from_slice(&dp.to_be_bytes());
    let ck_at;
    if c.kind.tcp() {
        let d = usize::from(!to_server);
        let (flags, adv) = if !c.opened[d] {
            c.opened[d] = true;
            (if to_server { 0x02u8 } else { 0x12 }, 1u32) // SYN / SYN-ACK
        } else {
            (if payload > 0 { 0x18 } else { 0x10 }, payload as u32) // PSH|ACK / ACK
        };
        let seq = c.seq[d];
        c.seq[d] = seq.wrapping_add(adv);
        let ack = if flags == 0x02 { 0 } else { c.seq[1 - d] };
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&ack.to_be_bytes());
        buf.push(5 << 4);
        buf.push(flags);
        buf.extend_from_slice(&64240u16.to_be_bytes());
        ck_at = buf.len();
        buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    } else {
        buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
        ck_at = buf.len();
        buf.extend_from_slice(&[0, 0]);
    }
    let fill = rng.next();
    buf.extend((0..payload).map(|i| (fill >> ((i % 8) * 8)) as u8));
    let mut ck = csum_fold(csum_add(pseudo, &buf[l4_start..]));
    if !c.kind.tcp() && ck == 0 {
        ck = 0xffff;
    }
    buf[ck_at..ck_at + 2].copy_from_slice(&ck.to_be_bytes());
    // Ethernet pads short frames to 60 bytes; the IP length excludes the padding.
    if buf.len() < MIN_FRAME {
        buf.resize(MIN_FRAME, 0);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out: Option<String> = None;
    let mut packets: u64 = 1_000_000;
    let mut nconv: usize = 500;
    let mut seed: u64 = 1;
    let mut meta: Option<String> = None;
    let mut nflows: Option<u64> = None;
    while let Some(a) = args.next() {
        let mut val = |what: &str| -> String {
            args.next().unwrap_or_else(|| {
                eprintln!("genpcap: {a} needs {what}\n{USAGE}");
                exit(2)
            })
        };
        let num = |s: String| -> u64 {
            s.parse().unwrap_or_else(|_| {
                eprintln!("genpcap: {s:?} is not a number");
                exit(2)
            })
        };
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            "--packets" => packets = num(val("a count")),
            "--conversations" => nconv = num(val("a count")) as usize,
            "--flows" => nflows = Some(num(val("a count"))),
            "--seed" => seed = num(val("a number")),
            "--meta" => meta = Some(val("a file")),
            _ if a.starts_with('-') => {
                eprintln!("genpcap: unknown option {a}\n{USAGE}");
                exit(2)
            }
            _ => out = Some(a),
        }
    }
    let Some(out) = out else {
        eprintln!("{USAGE}");
        exit(2)
    };
    if let Some(n) = nflows {
        if n == 0 || n > packets {
            eprintln!("genpcap: --flows must be 1..=packets ({packets})");
            exit(2);
        }
        nconv = n.div_ceil(2) as usize;
    }
    if !(1..=MAX_CONVERSATIONS).contains(&nconv) {
        eprintln!(
            "genpcap: --conversations must be 1..={MAX_CONVERSATIONS} (--flows up to twice that)"
        );
        exit(2);
    }
    let meta = meta.unwrap_or_else(|| format!("{out}.json"));
    if let Err(e) = generate(&out, &meta, packets, nconv, nflows.unwrap_or(0), seed) {
        eprintln!("genpcap: {e}");
        exit(1);
    }
}

/// `sweep`: the first `sweep` packets go to directional flows 0, 1, 2, ... (conversation
/// j / 2, to the server when j is even); the rest are skewed.
fn generate(
    out: &str,
    meta: &str,
    packets: u64,
    nconv: usize,
    sweep: u64,
    seed: u64,
) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    let mut convs = make_convs(nconv, &mut rng);
    // Written to a temporary name and renamed, so a cached file is always complete.
    let tmp = format!("{out}.tmp");
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    // Classic pcap, nanosecond magic, little-endian, version 2.4, snaplen 65535, Ethernet.
    w.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0u8; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut file_bytes = 24u64;

    let mut flows: HashSet<FlowTuple> = HashSet::new();
    let mut used_convs: HashSet<usize> = HashSet::new();
    let mut by_kind: [(Kind, u64, u64); 4] = [
        (Kind::V4Udp, 0, 0),
        (Kind::V4Tcp, 0, 0),
        (Kind::V6Udp, 0, 0),
        (Kind::V6Tcp, 0, 0),
    ];
    let mut bytes = 0u64;
    let (mut min_len, mut max_len) = (usize::MAX, 0usize);
    let mut t_ns: u64 = 1_700_000_000 * 1_000_000_000;
    let first_ns = t_ns;
    let mut buf = Vec::with_capacity(MAX_FRAME);
    for n in 0..packets {
        // Skewed choice: conversation k is picked with probability ~ (2k+1)/C^2 reversed,
        // so the first ones are heavy and the last still get ~packets/(2C) packets.
        let (k, to_server) = if n < sweep {
            ((n / 2) as usize, n % 2 == 0)
        } else {
            let u = rng.unit();
            let k = ((u * u) * nconv as f64) as usize;
            (k.min(nconv - 1), rng.below(100) < 55)
        };
        let len = MIN_FRAME + rng.below((MAX_FRAME - MIN_FRAME + 1) as u64) as usize;
        let c = &mut convs[k];
        build_frame(&mut buf, c, to_server, len, n as u16, &mut rng);
        t_ns += 1 + rng.below(2000);
        let caplen = buf.len() as u32;
        w.write_all(&((t_ns / 1_000_000_000) as u32).to_le_bytes())?;
        w.write_all(&((t_ns % 1_000_000_000) as u32).to_le_bytes())?;
        w.write_all(&caplen.to_le_bytes())?;
        w.write_all(&caplen.to_le_bytes())?;
        w.write_all(&buf)?;
        file_bytes += 16 + u64::from(caplen);
        bytes += u64::from(caplen);
        min_len = min_len.min(buf.len());
        max_len = max_len.max(buf.len());
        let (src, dst, sp, dp) = if to_server {
            (c.client, c.server, c.cport, c.sport)
        } else {
            (c.server, c.client, c.sport, c.cport)
        };
        flows.insert((
            c.kind.v6(),
            src,
            dst,
            if c.kind.tcp() { 6 } else { 17 },
            sp,
            dp,
        ));
        used_convs.insert(k);
        let kind = c.kind;
        if let Some(e) = by_kind.iter_mut().find(|e| e.0 == kind) {
            e.1 += 1;
            e.2 += u64::from(caplen);
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;

    let conv_kind = |tcp: bool| {
        used_convs
            .iter()
            .filter(|&&k| convs[k].kind.tcp() == tcp)
            .count()
    };
    let flows_proto = |p: u8| flows.iter().filter(|f| f.3 == p).count();
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(k, p, b)| format!("\"{}\":{{\"packets\":{p},\"bytes\":{b}}}", k.name()))
        .collect();
    let doc = format!(
        "{{\n  \"generator\": \"genpcap\",\n  \"file\": \"{out}\",\n  \"format\": \"pcap (nanosecond, Ethernet)\",\n  \"seed\": {seed},\n  \"packets\": {packets},\n  \"bytes\": {bytes},\n  \"file_bytes\": {file_bytes},\n  \"flows\": {},\n  \"flows_udp\": {},\n  \"flows_tcp\": {},\n  \"conversations\": {},\n  \"udp_conversations\": {},\n  \"tcp_conversations\": {},\n  \"min_frame\": {},\n  \"max_frame\": {max_len},\n  \"first_ns\": {first_ns},\n  \"last_ns\": {t_ns},\n  \"by_kind\": {{{}}}\n}}\n",
        flows.len(),
        flows_proto(17),
        flows_proto(6),
        used_convs.len(),
        conv_kind(false),
        conv_kind(true),
        if packets == 0 { 0 } else { min_len },
        kinds.join(",")
    );
    std::fs::write(meta, doc)?;
    println!("{}", std::fs::read_to_string(meta)?.trim_end());
    Ok(())
}
