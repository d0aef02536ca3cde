//! [`CiliumSocketSource`]: reads Cilium agent's monitor socket (protocol 1.2, FORMAT.md §11.2)
//! and hands decoded [`MonitorMessage`]s on in batches.
//!
//! Each connection is one gob stream with its own type definitions, so the decoder is reset
//! on every connection. When the agent closes the socket (restart, upgrade) or sends bytes
//! that cannot be decoded, the source drops the connection, counts why, and reconnects with
//! exponential back-off until told to stop, saying so in one sentence on stderr each time.
//! The socket's bytes are untrusted: decoding never panics and never trusts a length beyond
//! its limit (see [`super::gob`]).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::gob::DEFAULT_MAX_MESSAGE;
use super::payload::{MonitorMessage, PayloadError, PayloadStream, StreamStats};
use super::record::GobStreamRecorder;

/// `defaults.MonitorSockPath1_2` (`pkg/defaults/defaults.go`).
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/cilium/monitor1_2.sock";

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

/// Counters of a [`CiliumSocketSource`] run (or a replay).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Successful connections.
    pub connections: u64,
    /// Connections after the first.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections closed by the agent (EOF) or by a read error.
    pub disconnects: u64,
    /// What the streams contained; `stream.streams_abandoned` counts connections dropped
    /// because their bytes could not be decoded.
    pub stream: StreamStats,
}

impl std::fmt::Display for SocketStats {
    /// One line: connections, then what the streams held, then what was lost or skipped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stream;
        write!(
            f,
            "{} connection(s), {} reconnect(s), {} failed attempt(s); {} payloads: samples",
            self.connections, self.reconnects, self.connect_failures, s.payloads
        )?;
        for (t, n) in s.samples_by_type.iter().enumerate().skip(1) {
            if *n > 0 {
                let name = super::payload::message_type_name(t as u8);
                write!(f, " {name}={n}")?;
            }
        }
        write!(
            f,
            ", agent {}, l7 {}, unknown {}; perf ring lost {} record(s) in {} notice(s)",
            s.agent + s.agent_undecodable,
            s.l7,
            s.unknown,
            s.lost_total,
            s.lost_records
        )?;
        if s.malformed_total() > 0 {
            write!(
                f,
                "; malformed {:?}, {} stream(s) abandoned",
                s.malformed, s.streams_abandoned
            )?;
        }
        if s.truncated_at_close > 0 {
            write!(f, "; {} message(s) cut short", s.truncated_at_close)?;
        }
        Ok(())
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

/// Pushes bytes into `stream` and hands any complete messages to `on_batch`.
pub(crate) fn feed(
    stream: &mut PayloadStream,
    bytes: &[u8],
    batch: &mut Vec<MonitorMessage>,
    stats: &mut StreamStats,
    on_batch: &mut dyn FnMut(&[MonitorMessage]),
) -> Result<(), PayloadError> {
    stream.push(bytes, stats);
    let r = stream.decode(batch, stats);
    if !batch.is_empty() {
        on_batch(batch);
        batch.clear();
    }
    r
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
                self.say(&format!(
                    "reconnected to cilium monitor socket {}",
                    path.display()
                ));
            }
            let payloads_before = self.stats.stream.payloads;
            let ended = self.read_connection(conn, on_batch, stop);
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
        on_batch: &mut dyn FnMut(&[MonitorMessage]),
        stop: &AtomicBool,
    ) -> Result<Ended, SocketError> {
        if let Err(e) = conn.set_read_timeout(Some(self.config.poll_interval)) {
            self.stats.disconnects += 1;
            return Ok(Ended::Closed(format!("cannot set read timeout: {e}")));
        }
        if let Some(r) = self.recorder.as_mut() {
            r.begin_connection();
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
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
                    continue
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
            if let Err(e) = feed(
                &mut self.stream,
                bytes,
                &mut self.batch,
                &mut self.stats.stream,
                on_batch,
            ) {
                return Ok(Ended::Closed(format!("undecodable stream: {e}")));
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
