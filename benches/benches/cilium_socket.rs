//! Cilium monitor socket decoding: a pre-recorded gob stream of 1M payloads carrying 100-byte
//! drop samples, decoded from memory, replayed from a `.gobstream` recorded one message per
//! read, and end to end over a real unix socket; and, when `go`
//! is installed, the Go agent simulator flooding the socket (its own send rate is printed so
//! the two can be compared: we must decode faster than the agent can send).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::cilium_socket::payload::{PayloadEncoder, PayloadStream, StreamStats};
use engine::cilium_socket::record::{replay_gobstream, GobStreamReader};
use engine::cilium_socket::{CiliumSocketSource, GobStreamRecorder, SocketConfig};

const N: usize = 1_000_000;

/// A 100-byte drop_notify v3 record (48-byte header, 52 packet bytes).
fn drop_sample(i: usize) -> Vec<u8> {
    let mut s = vec![0u8; 100];
    s[0] = 1;
    s[1] = 133;
    s[8] = 52;
    s[12] = 52;
    s[14] = 3;
    s[4..8].copy_from_slice(&(i as u32).to_le_bytes());
    s
}

/// The bytes the agent's encoder would write for `n` payloads.
fn gob_stream(n: usize) -> Vec<u8> {
    let mut enc = PayloadEncoder::new(65);
    let mut out = Vec::with_capacity(n * 110);
    for i in 0..n {
        enc.encode(&drop_sample(i % 64), (i % 8) as i64, 0, 9, &mut out);
    }
    out
}

fn decode_in_memory(c: &mut Criterion) {
    let stream = gob_stream(N);
    let mut g = c.benchmark_group("cilium_socket/decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("gob_stream_1M_drop100", |b| {
        b.iter(|| {
            let mut s = PayloadStream::default();
            let mut stats = StreamStats::default();
            let mut batch = Vec::with_capacity(4096);
            let mut count = 0usize;
            for chunk in stream.chunks(256 << 10) {
                s.push(chunk, &mut stats);
                s.decode(&mut batch, &mut stats).unwrap();
                count += batch.len();
                batch.clear();
            }
            assert_eq!(count, N);
        })
    });
    g.finish();
}

/// A `.gobstream` recording of `n` payloads, one message per chunk (one socket read each,
/// as an agent at an ordinary rate is recorded).
fn recording_one_per_chunk(n: usize) -> Vec<u8> {
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(n * 120)));
    let mut rec = GobStreamRecorder::new(Shared(out.clone())).unwrap();
    let mut enc = PayloadEncoder::new(65);
    let mut msg = Vec::new();
    for i in 0..n {
        msg.clear();
        enc.encode(&drop_sample(i % 64), (i % 8) as i64, 0, 9, &mut msg);
        rec.write_chunk(&msg).unwrap();
    }
    drop(rec);
    let v = std::mem::take(&mut *out.lock().unwrap());
    v
}

/// Replay of a recording whose chunks hold one message each: the messages come out in
/// batches however the stream was recorded.
fn replay_small_chunks(c: &mut Criterion) {
    let file = recording_one_per_chunk(N);
    let mut g = c.benchmark_group("cilium_socket/replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("gobstream_1M_one_message_per_chunk", |b| {
        b.iter(|| {
            let mut reader = GobStreamReader::new(&file[..]).unwrap();
            let (mut count, mut batches) = (0usize, 0usize);
            replay_gobstream(&mut reader, 16 << 20, &mut |m| {
                count += m.len();
                batches += 1;
            })
            .unwrap();
            assert_eq!(count, N);
            assert!(batches <= N / 1000 + 1, "{batches} batches");
        })
    });
    g.finish();
}

fn sock_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "dropscope-bench-{name}-{}.sock",
        std::process::id()
    ))
}

/// Runs a source on `path` until `n` payloads arrived.
fn read_n(path: &Path, n: usize) {
    let mut cfg = SocketConfig::new(path);
    cfg.quiet = true;
    cfg.wait_for_socket = true;
    cfg.backoff_initial = Duration::from_millis(5);
    let mut src = CiliumSocketSource::new(cfg);
    let stop = AtomicBool::new(false);
    let mut count = 0usize;
    src.run(
        &mut |b| {
            count += b.len();
            if count >= n {
                stop.store(true, Ordering::Relaxed);
            }
        },
        &stop,
    )
    .unwrap();
    assert_eq!(count, n);
}

fn end_to_end_unix_socket(c: &mut Criterion) {
    let stream = Arc::new(gob_stream(N));
    let mut g = c.benchmark_group("cilium_socket/end_to_end");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("unix_socket_1M_drop100", |b| {
        b.iter(|| {
            let path = sock_path("e2e");
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            let bytes = stream.clone();
            let writer = std::thread::spawn(move || {
                let (mut c, _) = listener.accept().unwrap();
                for chunk in bytes.chunks(64 << 10) {
                    c.write_all(chunk).unwrap();
                }
            });
            read_n(&path, N);
            writer.join().unwrap();
            let _ = std::fs::remove_file(&path);
        })
    });
    g.finish();
}

fn go_sim() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join("dropscope-bench-gosim");
    std::fs::create_dir_all(&dir).ok()?;
    engine::cilium_socket::agent_sim::build(&dir)
        .map_err(|why| eprintln!("cilium_socket/go_sim: skipped, {why}"))
        .ok()
}

/// The Go simulator writes as fast as Go's gob encoder and the socket allow, one `Encode`
/// (one write) per payload like the agent; we read and decode. Prints the sim's own rate.
fn go_sim_flood(c: &mut Criterion) {
    let Some(bin) = go_sim() else { return };
    let n = 500_000usize;
    let mut g = c.benchmark_group("cilium_socket/go_sim");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    let mut rates = Vec::new();
    g.bench_function("flood_500k_drop100", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let path = sock_path("gosim");
                let mut child = Command::new(&bin)
                    .arg("-socket")
                    .arg(&path)
                    .args(["-flood", &n.to_string(), "-sample-len", "100"])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut out = BufReader::new(child.stdout.take().unwrap());
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                let start = Instant::now();
                read_n(&path, n);
                total += start.elapsed();
                line.clear();
                out.read_line(&mut line).unwrap();
                if let Some(r) = line
                    .split("\"payloads_per_sec\":")
                    .nth(1)
                    .and_then(|s| s.split([',', '}']).next())
                    .and_then(|s| s.trim().parse::<f64>().ok())
                {
                    rates.push(r);
                }
                child.wait().unwrap();
            }
            total
        })
    });
    g.finish();
    if !rates.is_empty() {
        rates.sort_by(|a, b| a.total_cmp(b));
        eprintln!(
            "cilium_socket/go_sim: the Go simulator sent {:.0} payloads/s (median of {})",
            rates[rates.len() / 2],
            rates.len()
        );
    }
}

criterion_group!(
    benches,
    decode_in_memory,
    replay_small_chunks,
    end_to_end_unix_socket,
    go_sim_flood
);
criterion_main!(benches);
