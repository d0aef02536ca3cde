//! `ciliumstream`: Cilium monitor streams for measuring the Cilium source, written with the
//! engine's gob encoder (byte for byte what Go's `encoding/gob` writes for `Payload`, see
//! `engine::cilium_socket::payload::PayloadEncoder`).
//!
//! * `gen OUT.gobstream`: a saved socket stream (`--save-stream` format) of N drop
//!   notifications, split into chunks of K gob messages each, as a recording of a live agent
//!   socket is (one chunk per `read`; at ordinary rates a read returns one message).
//! * `serve SOCKET`: plays the agent on a Unix socket at a steady rate, one `write` per
//!   payload as the agent's listener does (one `gob.Encoder.Encode` per payload). Prints a
//!   line when it listens, one when a reader connects (streaming starts) and the summary.
//! * `drain SOCKET`: the floor of any reader: connects, reads and throws the bytes away,
//!   pausing between reads as dropscope's Cilium source does, until the agent closes.
//!
//! Both print one JSON line with what they wrote, so a reader's counts can be checked. The
//! notifications are drop v3 records (48-byte header, Ethernet/IPv4/UDP packet of 64 bytes)
//! over `--flows` flows and four drop reasons; every `--lost-every` samples a lost-records
//! notice follows, and each connection starts with an agent notification. Deterministic.
//! std and the engine only.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::exit;
use std::time::{Duration, Instant};

use engine::cilium_socket::payload::{encode_agent_notify, PayloadEncoder};
use engine::cilium_socket::GobStreamRecorder;

const USAGE: &str = "\
usage: ciliumstream gen OUT.gobstream [--events N] [--per-chunk K] [--connections C]
                                      [--flows F] [--lost-every M]
       ciliumstream serve SOCKET [--events N] [--rate R] [--flows F] [--lost-every M]
       ciliumstream drain SOCKET
  --events N       drop notifications in all (default 2020000)
  --per-chunk K    gob messages per recorded chunk, i.e. per socket read (default 1)
  --connections C  agent connections the recording holds (default 1)
  --flows F        distinct flows (UDP source ports; default 256)
  --lost-every M   a lost-records notice after every M samples (default 100000; 0: none)
  --rate R         serve: payloads per second (default 100000)";

/// Drop reasons cycled through (Cilium codes): Policy denied, Invalid source ip, Stale or
/// unroutable IP, Unsupported L3 protocol.
const REASONS: [u8; 4] = [133, 132, 137, 139];
const PACKET_LEN: usize = 64;

struct Opts {
    events: u64,
    per_chunk: u64,
    connections: u64,
    flows: u64,
    lost_every: u64,
    rate: u64,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts {
        events: 2_020_000,
        per_chunk: 1,
        connections: 1,
        flows: 256,
        lost_every: 100_000,
        rate: 100_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().and_then(|v| v.parse::<u64>().ok());
        let Some(v) = v else {
            eprintln!("ciliumstream: {a} needs a number\n{USAGE}");
            exit(2);
        };
        match a.as_str() {
            "--events" => o.events = v,
            "--per-chunk" => o.per_chunk = v.max(1),
            "--connections" => o.connections = v.max(1),
            "--flows" => o.flows = v.clamp(1, 65_535),
            "--lost-every" => o.lost_every = v,
            "--rate" => o.rate = v.max(1),
            _ => {
                eprintln!("ciliumstream: unknown option {a}\n{USAGE}");
                exit(2);
            }
        }
    }
    o
}

/// Drop notification `i`: flow `i % flows`, reason `REASONS[i % 4]`.
fn drop_sample(i: u64, flows: u64) -> Vec<u8> {
    let flow = (i % flows) as u16;
    let reason = REASONS[(i % REASONS.len() as u64) as usize];
    let mut h = [0u8; 48];
    h[0] = 1; // CILIUM_NOTIFY_DROP
    h[1] = reason;
    h[2..4].copy_from_slice(&42u16.to_le_bytes());
    h[4..8].copy_from_slice(&(i as u32).wrapping_mul(2_654_435_761).to_le_bytes());
    h[8..12].copy_from_slice(&(PACKET_LEN as u32).to_le_bytes());
    h[12..14].copy_from_slice(&(PACKET_LEN as u16).to_le_bytes());
    h[14] = 3; // version
    h[16..20].copy_from_slice(&12345u32.to_le_bytes());
    h[20..24].copy_from_slice(&678u32.to_le_bytes());
    h[28..30].copy_from_slice(&1234u16.to_le_bytes());
    h[30] = 2; // bpf_lxc.c
    h[32..36].copy_from_slice(&3u32.to_le_bytes());
    let mut s = h.to_vec();
    // Ethernet, IPv4 (10.0.0.1 -> 10.0.1.2, UDP), UDP flow-port -> 9, zero payload.
    s.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let ip_len = (PACKET_LEN - 14) as u16;
    s.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 1, 0x40, 0]);
    s.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 1, 2]);
    let sport = 10_000u16.wrapping_add(flow);
    let udp_len = ip_len - 20;
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&[0, 9, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    s.resize(48 + PACKET_LEN, 0);
    s.extend_from_slice(&[0; 4]); // perf padding
    s
}

/// Counts of what was written, printed as JSON.
#[derive(Default)]
struct Summary {
    samples: u64,
    by_reason: [u64; REASONS.len()],
    lost_records: u64,
    lost_total: u64,
    agent: u64,
    chunks: u64,
    bytes: u64,
}

impl Summary {
    fn json(&self, extra: &str) -> String {
        let by_reason: Vec<String> = REASONS
            .iter()
            .zip(self.by_reason)
            .map(|(r, n)| format!("\"{r}\":{n}"))
            .collect();
        format!(
            "{{\"samples\":{},\"by_reason\":{{{}}},\"lost_records\":{},\"lost_total\":{},\"agent\":{},\"chunks\":{},\"bytes\":{}{extra}}}",
            self.samples,
            by_reason.join(","),
            self.lost_records,
            self.lost_total,
            self.agent,
            self.chunks,
            self.bytes
        )
    }
}

/// Yields the payloads of one connection's share of the events, as encoded gob messages
/// (the first carries the type definition), calling `emit` with each.
fn connection(
    o: &Opts,
    range: std::ops::Range<u64>,
    conn: u64,
    sum: &mut Summary,
    emit: &mut dyn FnMut(&[u8]),
) {
    // Another agent process: other type ids, as after a restart.
    let mut enc = PayloadEncoder::new(65 + 3 * conn as i64);
    let mut msg = Vec::with_capacity(256);
    let agent = encode_agent_notify(2, "{\"time\":\"2026-01-01T00:00:00Z\"}", 66);
    enc.encode(&agent, 0, 0, 9, &mut msg);
    emit(&msg);
    sum.agent += 1;
    for i in range {
        msg.clear();
        enc.encode(&drop_sample(i, o.flows), (i % 2) as i64, 0, 9, &mut msg);
        emit(&msg);
        sum.samples += 1;
        sum.by_reason[(i % REASONS.len() as u64) as usize] += 1;
        if o.lost_every > 0 && (i + 1) % o.lost_every == 0 {
            msg.clear();
            let lost = 1 + i % 7;
            enc.encode(&[], (i % 2) as i64, lost, 2, &mut msg);
            emit(&msg);
            sum.lost_records += 1;
            sum.lost_total += lost;
        }
    }
}

fn gen(out: &str, o: &Opts) -> std::io::Result<()> {
    let mut rec = GobStreamRecorder::create(std::path::Path::new(out))?;
    let mut sum = Summary::default();
    let per_conn = o.events.div_ceil(o.connections);
    let mut pending = Vec::with_capacity(64 << 10);
    let mut in_chunk = 0u64;
    let mut err = None;
    for c in 0..o.connections {
        let range = (c * per_conn).min(o.events)..((c + 1) * per_conn).min(o.events);
        rec.begin_connection();
        let mut chunks = 0u64;
        connection(o, range, c, &mut sum, &mut |m| {
            pending.extend_from_slice(m);
            in_chunk += 1;
            if in_chunk == o.per_chunk {
                if let Err(e) = rec.write_chunk(&pending) {
                    err.get_or_insert(e);
                }
                pending.clear();
                in_chunk = 0;
                chunks += 1;
            }
        });
        if !pending.is_empty() {
            rec.write_chunk(&pending)?;
            pending.clear();
            in_chunk = 0;
            chunks += 1;
        }
        sum.chunks += chunks;
    }
    if let Some(e) = err {
        return Err(e);
    }
    rec.flush()?;
    sum.bytes = rec.bytes();
    println!("{}", sum.json(""));
    Ok(())
}

/// One connection at `--rate` payloads/s: every 200 µs the payloads due are written, one
/// `write` each.
fn serve(path: &str, o: &Opts) -> std::io::Result<()> {
    let mut sum = Summary::default();
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    // Encoded up front, so the pacing loop only writes.
    connection(o, 0..o.events, 0, &mut sum, &mut |m| msgs.push(m.to_vec()));
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    println!(
        "{{\"mode\":\"serve\",\"socket\":\"{path}\",\"rate\":{}}}",
        o.rate
    );
    std::io::stdout().flush()?;
    let (mut conn, _) = listener.accept()?;
    println!("{{\"mode\":\"connected\"}}");
    std::io::stdout().flush()?;
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < msgs.len() {
        let due = ((start.elapsed().as_secs_f64() * o.rate as f64) as usize).min(msgs.len());
        while sent < due {
            conn.write_all(&msgs[sent])?;
            sum.bytes += msgs[sent].len() as u64;
            sum.chunks += 1;
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = start.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_file(path);
    println!(
        "{}",
        sum.json(&format!(
            ",\"seconds\":{secs:.3},\"payloads_per_sec\":{:.0}",
            msgs.len() as f64 / secs
        ))
    );
    Ok(())
}

/// Reads `path` until the agent closes, discarding the bytes, paced as dropscope's source is
/// by default (the message count estimated from this generator's message size).
fn drain(path: &str) -> std::io::Result<()> {
    use std::io::Read;
    let mut conn = loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(c) => break c,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let ticks_at_connect = cpu_ticks()?;
    let mut buf = vec![0u8; 256 << 10];
    let (mut total, mut reads) = (0u64, 0u64);
    let mut last = Instant::now();
    let per_message = drop_sample(0, 1).len() + 10;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        reads += 1;
        let now = Instant::now();
        let pause = engine::cilium_socket::socket::pause_after_read(
            engine::cilium_socket::SocketConfig::default().batch_linger,
            n / per_message,
            n,
            now - last,
        );
        last = now;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let ticks = cpu_ticks()?.saturating_sub(ticks_at_connect);
    println!("{{\"bytes\":{total},\"reads\":{reads},\"cpu_ticks\":{ticks}}}");
    Ok(())
}

/// This process's user + system time in clock ticks (`/proc/self/stat` fields 14 and 15).
fn cpu_ticks() -> std::io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    Ok(f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(target)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        exit(2);
    };
    let o = parse(args.get(2..).unwrap_or(&[]));
    let r = match cmd.as_str() {
        "gen" => gen(target, &o),
        "serve" => serve(target, &o),
        "drain" => drain(target),
        _ => {
            eprintln!("{USAGE}");
            exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("ciliumstream: {e}");
        exit(2);
    }
}
