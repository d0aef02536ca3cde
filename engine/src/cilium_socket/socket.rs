//! [`CiliumSocketSource`]: reads Cilium agent's monitor socket (protocol 1.2,
//! docs/cilium-formats.md §11.2) and hands decoded [`MonitorMessage`]s on in batches.
//!
//! Each connection is one gob stream with its own type definitions, so the decoder is reset
//! on every connection. When the agent closes the socket (restart, upgrade) or sends bytes
//! that cannot be decoded, the source drops the connection, counts why, and reconnects with
//! exponential back-off until told to stop, saying so in one sentence on stderr each time.
//! The socket's bytes are untrusted: decoding never panics and never trusts a length beyond
//! its limit (see [`super::gob`]).
//!
//! The agent writes one message per `write`. Reading each as it comes would cost a wake-up,
//! a read and a pipeline batch per message or two; instead, after a read that brought few
//! messages the source pauses until about a hundred more should have arrived (at most
//! [`SocketConfig::batch_linger`], see [`pause_after_read`]), and a [`MessageSink`] may gather
//! several reads into one batch until told to flush ([`SocketConfig::batch_hold`]).
//!
//! Must never: hold the agent up (a pause lets at most about half of its socket buffer fill,
//! and shrinks to nothing as the rate grows), keep messages back longer than about
//! `batch_hold` once the socket goes quiet, or reorder messages.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::gob::DEFAULT_MAX_MESSAGE;
pub use super::payload::SocketStats;
use super::payload::{MonitorMessage, PayloadError, PayloadStream, StreamStats};
use super::record::GobStreamRecorder;

/// `defaults.MonitorSockPath1_2` (`pkg/defaults/defaults.go`).
pub const DEFAULT_SOCKET_PATH: &str = crate::paths::CILIUM_MONITOR_SOCKET;

/// How to connect, read and reconnect.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// Bytes read per `read` call.
    pub read_buffer: usize,
    /// Largest gob message accepted (bounds buffering of a partial message).
    pub max_message: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How often a blocked read wakes up to look at the stop flag.
    pub poll_interval: Duration,
    /// Keep retrying when the very first connection fails (default: fail with a clear error).
    pub wait_for_socket: bool,
    /// Do not print reconnect sentences on stderr.
    pub quiet: bool,
    /// Longest pause after a read that brought few messages, letting the agent's next ones
    /// gather in the socket so that the next read takes them together (see
    /// [`pause_after_read`]); zero reads as soon as bytes arrive.
    pub batch_linger: Duration,
    /// How long a [`MessageSink`] may hold messages back before it is told to
    /// [`flush`](MessageSink::flush) (also when the socket stays quiet that long); zero
    /// flushes after every read.
    pub batch_hold: Duration,
    /// Also counted here as they happen (reconnections), for a live reader (`serve`).
    pub reconnects_live: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            path: PathBuf::from(DEFAULT_SOCKET_PATH),
            read_buffer: 256 << 10,
            max_message: DEFAULT_MAX_MESSAGE,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            wait_for_socket: false,
            quiet: false,
            batch_linger: Duration::from_millis(1),
            batch_hold: Duration::from_millis(10),
            reconnects_live: None,
        }
    }
}

impl SocketConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SocketConfig {
            path: path.into(),
            ..SocketConfig::default()
        }
    }
}

#[derive(Debug, Error)]
pub enum SocketError {
    #[error("cilium monitor socket {} does not exist: is cilium-agent running? use --cilium-socket PATH", path.display())]
    NotFound { path: PathBuf },
    #[error("permission denied on cilium monitor socket {} (run as root?): is cilium-agent running? use --cilium-socket PATH", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to cilium monitor socket {}: {source}: is cilium-agent running? use --cilium-socket PATH", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("writing the socket recording failed: {0}")]
    Record(#[source] io::Error),
}

fn connect_error(path: &Path, e: io::Error) -> SocketError {
    match e.kind() {
        io::ErrorKind::NotFound => SocketError::NotFound {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => SocketError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => SocketError::Connect {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// "400ms", "1.6s".
fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Where a [`CiliumSocketSource`] hands its messages.
pub trait MessageSink {
    /// The messages of one read, in stream order (never empty).
    fn messages(&mut self, msgs: &[MonitorMessage]);

    /// Hand on whatever was held back: called once messages have been held for
    /// [`SocketConfig::batch_hold`], when the socket stays quiet that long, when a
    /// connection ends and before the source returns.
    fn flush(&mut self) {}
}

/// A closure as a sink that holds nothing back.
struct EachRead<'a>(&'a mut dyn FnMut(&[MonitorMessage]));

impl MessageSink for EachRead<'_> {
    fn messages(&mut self, msgs: &[MonitorMessage]) {
        (self.0)(msgs)
    }
}

/// Pushes bytes into `stream` and hands any complete messages to `sink`; returns how many
/// there were.
fn feed(
    stream: &mut PayloadStream,
    bytes: &[u8],
    batch: &mut Vec<MonitorMessage>,
    stats: &mut StreamStats,
    sink: &mut dyn MessageSink,
) -> Result<usize, PayloadError> {
    stream.push(bytes, stats);
    let r = stream.decode(batch, stats);
    let n = batch.len();
    if n > 0 {
        sink.messages(batch);
        batch.clear();
    }
    r.map(|()| n)
}

/// Messages a read should find waiting: about half of what the agent's socket holds before
/// its writes block (the default 208 KiB send buffer takes about 280 small writes, each
/// `Encode` being one write), so pausing for them never holds the agent up.
const GATHER_MESSAGES: u32 = 128;
/// Bytes a read should find waiting: under a third of that send buffer, for large messages.
const GATHER_BYTES: u32 = 64 << 10;
/// Shorter pauses are not worth a sleep (the timer's slack alone is 50 µs).
const MIN_PAUSE: Duration = Duration::from_micros(50);

/// How long to pause before the next read, given that the last one brought `messages`
/// messages and `bytes` bytes that had arrived over `interval` (since the read before).
///
/// Reading as soon as bytes arrive costs a wake-up, a read and a pipeline batch for every few
/// messages: at ordinary rates the agent writes one message at a time. Pausing until about
/// 128 messages (or 64 KiB) have arrived at the rate just seen, at most
/// `linger`, makes those costs per hundred messages instead. At high rates the pause shrinks
/// to nothing (reads then find full batches anyway); a read that found the socket full gives
/// a rate too low, so the next pause is shorter still and the estimate catches up.
pub fn pause_after_read(
    linger: Duration,
    messages: usize,
    bytes: usize,
    interval: Duration,
) -> Duration {
    // interval x target / got, in nanoseconds (at most 2^64 x 2^32: no overflow in u128).
    let at_rate = |target: u32, got: usize| match u128::try_from(got) {
        Ok(0) => linger,
        Ok(got) => {
            let ns = interval.as_nanos().saturating_mul(u128::from(target)) / got;
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        }
        Err(_) => Duration::ZERO,
    };
    let pause = at_rate(GATHER_MESSAGES, messages)
        .min(at_rate(GATHER_BYTES, bytes))
        .min(linger);
    if pause < MIN_PAUSE {
        Duration::ZERO
    } else {
        pause
    }
}

/// Why a connection ended.
enum Ended {
    Stopped,
    Closed(String),
}

/// Reads the monitor socket; see the module doc.
#[derive(Debug)]
pub struct CiliumSocketSource {
    config: SocketConfig,
    stream: PayloadStream,
    recorder: Option<GobStreamRecorder>,
    read_buf: Vec<u8>,
    batch: Vec<MonitorMessage>,
    stats: SocketStats,
}

impl CiliumSocketSource {
    pub fn new(config: SocketConfig) -> Self {
        CiliumSocketSource {
            stream: PayloadStream::new(config.max_message),
            read_buf: vec![0; config.read_buffer.max(4096)],
            batch: Vec::with_capacity(1024),
            recorder: None,
            stats: SocketStats::default(),
            config,
        }
    }

    /// Also writes every byte read to a `.gobstream` recording.
    pub fn with_recorder(mut self, recorder: GobStreamRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }

    /// Connects, reads and decodes until `stop` is set, calling `on_batch` with the messages
    /// of each read. Returns the counters. Errors: the first connection failed (unless
    /// `wait_for_socket`), or the recording could not be written.
    pub fn run(
        &mut self,
        on_batch: &mut dyn FnMut(&[MonitorMessage]),
        stop: &AtomicBool,
    ) -> Result<SocketStats, SocketError> {
        self.run_into(&mut EachRead(on_batch), stop)
    }

    /// [`run`](Self::run), handing the messages of each read to `sink`, which may hold
    /// them back until told to flush (see [`MessageSink::flush`]).
    pub fn run_into(
        &mut self,
        sink: &mut dyn MessageSink,
        stop: &AtomicBool,
    ) -> Result<SocketStats, SocketError> {
        let r = self.connect_and_read(sink, stop);
        sink.flush();
        r
    }

    fn connect_and_read(
        &mut self,
        sink: &mut dyn MessageSink,
        stop: &AtomicBool,
    ) -> Result<SocketStats, SocketError> {
        let path = self.config.path.clone();
        let mut backoff = self.config.backoff_initial;
        while !stop.load(Ordering::Relaxed) {
            let conn = match UnixStream::connect(&path) {
                Ok(c) => c,
                Err(e) => {
                    self.stats.connect_failures += 1;
                    if self.stats.connections == 0 && !self.config.wait_for_socket {
                        return Err(connect_error(&path, e));
                    }
                    self.say(&format!(
                        "cilium monitor socket {} unavailable ({e}); retrying in {}",
                        path.display(),
                        fmt_duration(backoff)
                    ));
                    self.sleep(backoff, stop);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    continue;
                }
            };
            self.stats.connections += 1;
            if self.stats.connections > 1 {
                self.stats.reconnects += 1;
                if let Some(c) = &self.config.reconnects_live {
                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.say(&format!(
                    "reconnected to cilium monitor socket {}",
                    path.display()
                ));
            }
            let payloads_before = self.stats.stream.payloads;
            let ended = self.read_connection(conn, sink, stop);
            sink.flush();
            self.stream.reset(&mut self.stats.stream);
            if let Some(r) = self.recorder.as_mut() {
                r.flush().map_err(SocketError::Record)?;
            }
            match ended? {
                Ended::Stopped => break,
                Ended::Closed(reason) => {
                    // A connection that delivered something resets the back-off; one the agent
                    // closes straight away (crash loop) keeps doubling it.
                    if self.stats.stream.payloads > payloads_before {
                        backoff = self.config.backoff_initial;
                    }
                    self.say(&format!(
                        "cilium monitor socket {} closed ({reason}); reconnecting in {}",
                        path.display(),
                        fmt_duration(backoff)
                    ));
                    self.sleep(backoff, stop);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                }
            }
        }
        if let Some(r) = self.recorder.as_mut() {
            r.flush().map_err(SocketError::Record)?;
        }
        Ok(self.stats.clone())
    }

    fn read_connection(
        &mut self,
        mut conn: UnixStream,
        sink: &mut dyn MessageSink,
        stop: &AtomicBool,
    ) -> Result<Ended, SocketError> {
        // While the sink holds messages a read waits at most `batch_hold` (then the sink is
        // told to flush), else `poll_interval` (then the stop flag is looked at).
        let hold = self.config.batch_hold;
        let idle_timeout = self.config.poll_interval;
        let held_timeout = hold.clamp(Duration::from_millis(1), idle_timeout);
        let mut timeout = idle_timeout;
        if let Err(e) = conn.set_read_timeout(Some(timeout)) {
            self.stats.disconnects += 1;
            return Ok(Ended::Closed(format!("cannot set read timeout: {e}")));
        }
        if let Some(r) = self.recorder.as_mut() {
            r.begin_connection();
        }
        let mut last_read = Instant::now();
        let mut held_since: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
            }
            let want = if held_since.is_some() {
                held_timeout
            } else {
                idle_timeout
            };
            if want != timeout && conn.set_read_timeout(Some(want)).is_ok() {
                timeout = want;
            }
            let n = match conn.read(&mut self.read_buf) {
                Ok(0) => {
                    self.stats.disconnects += 1;
                    return Ok(Ended::Closed("closed by the agent".into()));
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if held_since.take().is_some() {
                        sink.flush();
                    }
                    continue;
                }
                Err(e) => {
                    self.stats.disconnects += 1;
                    return Ok(Ended::Closed(e.to_string()));
                }
            };
            let bytes = self.read_buf.get(..n).unwrap_or(&[]);
            if let Some(r) = self.recorder.as_mut() {
                r.write_chunk(bytes).map_err(SocketError::Record)?;
            }
            let messages = match feed(
                &mut self.stream,
                bytes,
                &mut self.batch,
                &mut self.stats.stream,
                sink,
            ) {
                Ok(m) => m,
                Err(e) => return Ok(Ended::Closed(format!("undecodable stream: {e}"))),
            };
            let now = Instant::now();
            if messages > 0 {
                held_since.get_or_insert(now);
            }
            if held_since.is_some_and(|t| now.saturating_duration_since(t) >= hold) {
                sink.flush();
                held_since = None;
            }
            let pause = pause_after_read(
                self.config.batch_linger,
                messages,
                n,
                now.saturating_duration_since(last_read),
            );
            last_read = now;
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }

    fn say(&self, sentence: &str) {
        if !self.config.quiet {
            eprintln!("{sentence}");
        }
    }

    /// Sleeps `d`, waking early when `stop` is set.
    fn sleep(&self, d: Duration, stop: &AtomicBool) {
        let end = Instant::now() + d;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium_socket::payload::{encode_agent_notify, PayloadEncoder};
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;

    fn temp_socket(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("dropscope-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn missing_socket_is_a_clear_error() {
        let path = temp_socket("missing");
        let mut src = CiliumSocketSource::new(SocketConfig::new(&path));
        let err = src.run(&mut |_| {}, &AtomicBool::new(false)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SocketError::NotFound { .. }));
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
        assert!(
            msg.contains("is cilium-agent running? use --cilium-socket PATH"),
            "{msg}"
        );
        assert_eq!(src.stats().connect_failures, 1);
    }

    #[test]
    fn regular_file_is_a_connect_error() {
        let path = temp_socket("regular");
        std::fs::write(&path, b"x").unwrap();
        let mut src = CiliumSocketSource::new(SocketConfig::new(&path));
        let err = src.run(&mut |_| {}, &AtomicBool::new(false)).unwrap_err();
        assert!(matches!(err, SocketError::Connect { .. }), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn durations_print_short() {
        assert_eq!(fmt_duration(Duration::from_millis(400)), "400ms");
        assert_eq!(fmt_duration(Duration::from_millis(1600)), "1.6s");
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5.0s");
    }

    #[test]
    fn pauses_gather_about_128_messages_at_most_linger() {
        let ms = Duration::from_millis(1);
        let us = Duration::from_micros;
        let linger = ms;
        // No pausing when linger is zero.
        assert_eq!(pause_after_read(Duration::ZERO, 1, 100, ms), Duration::ZERO);
        // A read that completed no message: the full linger.
        assert_eq!(pause_after_read(linger, 0, 10, ms), linger);
        // 100 messages over 1 ms (100k/s): 128 need 1.28 ms, capped at linger.
        assert_eq!(pause_after_read(linger, 100, 12_500, ms), linger);
        assert_eq!(
            pause_after_read(Duration::from_millis(5), 100, 12_500, ms),
            us(1280)
        );
        // 1000 messages over 1 ms (1M/s): 128 arrive in 128 µs.
        assert_eq!(pause_after_read(linger, 1000, 125_000, ms), us(128));
        // 10M/s: 12.8 µs is not worth a sleep.
        assert_eq!(
            pause_after_read(linger, 10_000, 1_250_000, ms),
            Duration::ZERO
        );
        // Large messages: 64 KiB arrive first (10 x 64 KiB over 1 ms: 100 µs).
        assert_eq!(pause_after_read(linger, 10, 640 << 10, ms), us(100));
        // A full socket (a rate too low) shortens the next pause, and it shrinks from there.
        let first = pause_after_read(linger, 280, 280 * 125, ms);
        assert_eq!(first, ms * 128 / 280);
        let second = pause_after_read(linger, 280, 280 * 125, first);
        assert!(second < first / 2, "{second:?}");
        // Absurd counts: no pause.
        assert_eq!(
            pause_after_read(linger, usize::MAX, usize::MAX, ms),
            Duration::ZERO
        );
        assert_eq!(pause_after_read(linger, 1, 1, Duration::MAX), linger);
    }

    /// What a sink was told, in order.
    #[derive(Debug, PartialEq, Eq)]
    enum Told {
        Messages(usize),
        Flush,
    }

    struct Recorder {
        told: Vec<(Told, Instant)>,
        msgs: Vec<MonitorMessage>,
    }

    impl MessageSink for Recorder {
        fn messages(&mut self, msgs: &[MonitorMessage]) {
            self.msgs.extend_from_slice(msgs);
            self.told.push((Told::Messages(msgs.len()), Instant::now()));
        }
        fn flush(&mut self) {
            self.told.push((Told::Flush, Instant::now()));
        }
    }

    /// Messages in three bursts 400 ms apart on one connection that stays open: each burst
    /// is held (its reads are not flushed one by one) and flushed once, within
    /// the hold time after it while the connection is still open; the source flushes once
    /// more when it stops.
    #[test]
    fn held_messages_are_flushed_when_the_socket_goes_quiet() {
        let path = temp_socket("hold");
        let listener = UnixListener::bind(&path).unwrap();
        let (sent_tx, sent_rx) = std::sync::mpsc::channel::<Instant>();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut enc = PayloadEncoder::new(65);
            for burst in 0..3u8 {
                // Ten messages over 45 ms: several reads.
                for i in 0..10u8 {
                    let mut b = Vec::new();
                    enc.encode(&[1, burst, i], 0, 0, 9, &mut b);
                    c.write_all(&b).unwrap();
                    if i < 9 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                sent_tx.send(Instant::now()).unwrap();
                std::thread::sleep(Duration::from_millis(400));
            }
            // Hold the connection until the client, stopped, closes it.
            let _ = std::io::Read::read(&mut c, &mut [0u8; 1]);
        });
        let mut cfg = SocketConfig::new(&path);
        cfg.quiet = true;
        cfg.batch_hold = Duration::from_millis(100);
        let mut src = CiliumSocketSource::new(cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let mut sink = Recorder {
            told: Vec::new(),
            msgs: Vec::new(),
        };
        let stats = src.run_into(&mut sink, &stop).unwrap();
        stopper.join().unwrap();
        server.join().unwrap();
        let sent: Vec<Instant> = sent_rx.try_iter().collect();
        assert_eq!(sent.len(), 3);
        assert_eq!(stats.stream.payloads, 30);
        let order: Vec<(u8, u8)> = sink
            .msgs
            .iter()
            .map(|m| match m {
                MonitorMessage::Sample { data, .. } => (data[1], data[2]),
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<(u8, u8)> = (0..3).flat_map(|b| (0..10).map(move |i| (b, i))).collect();
        assert_eq!(order, want);
        // After each burst's last message: a flush within the hold time (and a little), long
        // before the next burst (400 ms later); no flush inside a burst.
        let mut delivered = 0;
        let mut flushed_at = Vec::new();
        for (k, &at) in sent.iter().enumerate() {
            let last_msg = sink
                .told
                .iter()
                .position(|(t, _)| {
                    if let Told::Messages(n) = t {
                        delivered += n;
                    }
                    delivered >= 10 * (k + 1)
                })
                .unwrap();
            delivered = 0;
            let flush = last_msg
                + sink.told[last_msg..]
                    .iter()
                    .position(|(t, _)| *t == Told::Flush)
                    .unwrap();
            let lag = sink.told[flush].1.saturating_duration_since(at);
            assert!(
                lag < Duration::from_millis(300),
                "burst {k}: flushed {lag:?} after"
            );
            flushed_at.push(flush);
        }
        let flushes_before = |i: usize| {
            sink.told[..i]
                .iter()
                .filter(|(t, _)| *t == Told::Flush)
                .count()
        };
        assert_eq!(
            flushed_at
                .iter()
                .map(|&i| flushes_before(i))
                .collect::<Vec<_>>(),
            [0, 1, 2],
            "{:?}",
            sink.told.iter().map(|(t, _)| t).collect::<Vec<_>>()
        );
        // Every connection end and the return flush too.
        assert_eq!(sink.told.last().map(|(t, _)| t), Some(&Told::Flush));
        let _ = std::fs::remove_file(&path);
    }

    /// Two connections served by a thread, the first cut inside a message, the second
    /// ending with bytes that are not gob: counts reconnects, truncation and the abandoned
    /// stream, and the messages of both streams.
    #[test]
    fn reconnects_and_counts() {
        let path = temp_socket("reconnect");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // Connection 1: type id 65, a drop sample, a lost record, then half a message.
            let (mut c, _) = listener.accept().unwrap();
            let mut enc = PayloadEncoder::new(65);
            let mut b = Vec::new();
            enc.encode(&[1, 2, 3], 0, 0, 9, &mut b);
            enc.encode(&[], 1, 1 << 40, 2, &mut b);
            let mut partial = Vec::new();
            enc.encode(&[4; 50], 1, 0, 9, &mut partial);
            b.extend_from_slice(&partial[..20]);
            c.write_all(&b).unwrap();
            drop(c);
            // Connection 2: a new process (type id 67): an agent notice, then garbage.
            let (mut c, _) = listener.accept().unwrap();
            let mut enc = PayloadEncoder::new(67);
            let mut b = Vec::new();
            enc.encode(&encode_agent_notify(7, "{\"id\":1}", 68), 0, 0, 9, &mut b);
            b.extend_from_slice(&[0x90, 0, 0]);
            c.write_all(&b).unwrap();
            // Connection 3: one trace sample; stays open until the client stops.
            let (mut c, _) = listener.accept().unwrap();
            let mut b = Vec::new();
            PayloadEncoder::new(65).encode(&[4, 0, 0], 5, 0, 9, &mut b);
            c.write_all(&b).unwrap();
            // Hold the connection until the client, stopped, closes it.
            let _ = std::io::Read::read(&mut c, &mut [0u8; 1]);
        });
        let mut cfg = SocketConfig::new(&path);
        cfg.backoff_initial = Duration::from_millis(10);
        cfg.quiet = true;
        let mut src = CiliumSocketSource::new(cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let mut got = Vec::new();
        let stop2 = stop.clone();
        let stats = src
            .run(
                &mut |m| {
                    got.extend_from_slice(m);
                    if got.len() == 4 {
                        stop2.store(true, Ordering::Relaxed);
                    }
                },
                &stop,
            )
            .unwrap();
        server.join().unwrap();
        assert_eq!(
            got,
            vec![
                MonitorMessage::Sample {
                    cpu: 0,
                    data: bytes::Bytes::from_static(&[1, 2, 3])
                },
                MonitorMessage::Lost {
                    cpu: 1,
                    count: 1 << 40
                },
                MonitorMessage::Agent {
                    kind: 7,
                    text: "{\"id\":1}".into()
                },
                MonitorMessage::Sample {
                    cpu: 5,
                    data: bytes::Bytes::from_static(&[4, 0, 0])
                },
            ]
        );
        assert_eq!((stats.connections, stats.reconnects), (3, 2));
        assert_eq!(stats.disconnects, 1);
        assert_eq!(stats.stream.truncated_at_close, 1);
        assert_eq!(stats.stream.streams_abandoned, 1);
        assert_eq!(stats.stream.malformed.get("bad_uint"), Some(&1));
        assert_eq!(stats.stream.lost_total, 1 << 40);
        assert_eq!(stats.stream.payloads, 4);
        assert_eq!(
            stats.to_string(),
            "3 connection(s), 2 reconnect(s), 0 failed attempt(s); 4 payloads: samples drop=1 \
             trace=1, agent 1, l7 0, unknown 0; perf ring lost 1099511627776 record(s) in 1 \
             notice(s); malformed {\"bad_uint\": 1}, 1 stream(s) abandoned; 1 message(s) cut short"
        );
        let _ = std::fs::remove_file(&path);
    }
}
