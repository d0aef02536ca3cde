//! Recording and replaying what Cilium's monitor socket sent, and files of raw notification
//! records.
//!
//! # `.gobstream`: a raw recording of the socket
//!
//! Exactly the bytes read from the socket, split where connections began so that a replay
//! restarts the gob decoder (new type definitions) at every reconnect:
//!
//! ```text
//! file   = header chunk*
//! header = "DSCILGOB" (8 bytes) ‖ version u16 LE (= 1) ‖ flags u16 LE (= 0) ‖ reserved u32 LE (= 0)
//! chunk  = word u64 LE ‖ bytes
//!          word bit 63   : 1 = these bytes start a new connection (a new gob stream)
//!          word bits 0-62: number of bytes that follow (at most MAX_CHUNK)
//! ```
//!
//! A segment (one connection) is a flagged chunk and the unflagged chunks after it; the
//! first chunk of a file is flagged. Chunks are written as they are read, so a recording can
//! be streamed and a recording cut short by a crash ends inside a chunk: replay feeds the
//! bytes that are present and counts the partial message it could not finish.
//!
//! # `.ciliumraw`: raw notification records
//!
//! The `Data` of `Type` 9 payloads (one perf sample each: notification struct ‖ packet ‖
//! perf padding), without gob:
//!
//! ```text
//! file   = record*            (no header)
//! record = length u32 LE ‖ that many bytes (length at most MAX_RAW_SAMPLE)
//! ```
//!
//! Everything read here is untrusted: no indexing, no unwrap, no allocation from a length
//! before it is checked against its limit.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use bytes::BytesMut;
use thiserror::Error;

use super::payload::{
    classify, MonitorMessage, Payload, PayloadStream, SocketStats, StreamStats, EVENT_SAMPLE,
};

pub const GOBSTREAM_MAGIC: [u8; 8] = *b"DSCILGOB";
pub const GOBSTREAM_VERSION: u16 = 1;
pub const GOBSTREAM_HEADER_LEN: usize = 16;
/// Largest chunk a `.gobstream` may hold.
pub const MAX_CHUNK: u64 = 64 << 20;
const NEW_CONNECTION: u64 = 1 << 63;
/// Largest record a `.ciliumraw` may hold (a perf sample is below 64 KiB).
pub const MAX_RAW_SAMPLE: u32 = 1 << 20;

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("not a .gobstream recording: magic {found:02x?}")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported .gobstream version {version} (this build reads {GOBSTREAM_VERSION})")]
    UnsupportedVersion { version: u16 },
    #[error("recording header truncated: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    #[error("corrupt .gobstream: chunk of {len} bytes at offset {offset} exceeds {max}")]
    ChunkTooLarge { len: u64, max: u64, offset: u64 },
    #[error("corrupt .ciliumraw: record of {len} bytes at offset {offset} exceeds {max}")]
    SampleTooLarge { len: u32, max: u32, offset: u64 },
}

/// Tees socket bytes into a `.gobstream` file.
pub struct GobStreamRecorder {
    out: Box<dyn Write + Send>,
    new_connection: bool,
    bytes: u64,
}

impl std::fmt::Debug for GobStreamRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GobStreamRecorder")
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// A new (or emptied) file only its owner may read: recordings hold packets.
fn owner_only(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

impl GobStreamRecorder {
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::new(BufWriter::with_capacity(1 << 20, owner_only(path)?))
    }

    /// Writes the header to `w`.
    pub fn new(mut w: impl Write + Send + 'static) -> io::Result<Self> {
        let mut header = [0u8; GOBSTREAM_HEADER_LEN];
        header[..8].copy_from_slice(&GOBSTREAM_MAGIC);
        header[8..10].copy_from_slice(&GOBSTREAM_VERSION.to_le_bytes());
        w.write_all(&header)?;
        Ok(GobStreamRecorder {
            out: Box::new(w),
            new_connection: true,
            bytes: 0,
        })
    }

    /// The next chunk starts a new connection.
    pub fn begin_connection(&mut self) {
        self.new_connection = true;
    }

    /// Appends bytes read from the socket.
    pub fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        for part in data.chunks(MAX_CHUNK as usize) {
            let mut word = part.len() as u64;
            if self.new_connection {
                word |= NEW_CONNECTION;
                self.new_connection = false;
            }
            self.out.write_all(&word.to_le_bytes())?;
            self.out.write_all(part)?;
            self.bytes += part.len() as u64;
        }
        Ok(())
    }

    /// Socket bytes recorded so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One chunk of a `.gobstream`.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub new_connection: bool,
    pub data: &'a [u8],
    /// The file ended inside this chunk; `data` is the part present.
    pub truncated: bool,
}

/// A piece of a chunk: as much of it as the reader's buffer holds. A chunk comes as one or
/// more pieces; an empty chunk as one empty piece.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// This is the first piece of a chunk that starts a new connection.
    pub new_connection: bool,
    pub data: &'a [u8],
    /// This is the last piece of its chunk.
    pub ends_chunk: bool,
    /// The file ended inside this chunk (or inside its length word): this empty piece is
    /// its last.
    pub truncated: bool,
}

/// Bytes the reader asks the file for at a time.
const READ_BLOCK: usize = 1 << 20;

/// Reads a `.gobstream` chunk by chunk ([`next_chunk`](Self::next_chunk)), or piece by piece
/// straight out of its read buffer ([`next_piece`](Self::next_piece), no copy).
#[derive(Debug)]
pub struct GobStreamReader<R> {
    r: R,
    /// Read buffer: `buf[start..end]` is read and not yet handed out.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Bytes of the current chunk not yet handed out.
    chunk_left: u64,
    /// The current chunk starts a connection and none of it has been handed out.
    pending_new: bool,
    /// A whole chunk, put together by `next_chunk`.
    whole: Vec<u8>,
    offset: u64,
}

impl GobStreamReader<File> {
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        Self::new(File::open(path)?)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let Some(rest) = buf.get_mut(n..) else { break };
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> GobStreamReader<R> {
    /// Reads and checks the header.
    pub fn new(mut r: R) -> Result<Self, RecordError> {
        let mut header = [0u8; GOBSTREAM_HEADER_LEN];
        let n = read_full(&mut r, &mut header)?;
        if n < GOBSTREAM_HEADER_LEN {
            return Err(RecordError::TooShort {
                need: GOBSTREAM_HEADER_LEN,
                have: n,
            });
        }
        let [m0, m1, m2, m3, m4, m5, m6, m7, v0, v1, ..] = header;
        let magic = [m0, m1, m2, m3, m4, m5, m6, m7];
        if magic != GOBSTREAM_MAGIC {
            return Err(RecordError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([v0, v1]);
        if version != GOBSTREAM_VERSION {
            return Err(RecordError::UnsupportedVersion { version });
        }
        Ok(GobStreamReader {
            r,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
            chunk_left: 0,
            pending_new: false,
            whole: Vec::new(),
            offset: GOBSTREAM_HEADER_LEN as u64,
        })
    }

    /// Reads more of the file behind what is buffered; false at the end of the file.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.end == self.buf.len() && self.buf.len() < READ_BLOCK {
            // Grown as the file turns out to need it: small files stay small.
            let len = (self.buf.len() * 2).clamp(64 << 10, READ_BLOCK);
            self.buf.resize(len, 0);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            let Some(space) = self.buf.get_mut(self.end..) else {
                return Ok(true);
            };
            match self.r.read(space) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next piece of a chunk, or `None` at the end of the file.
    pub fn next_piece(&mut self) -> Result<Option<Piece<'_>>, RecordError> {
        if self.chunk_left == 0 {
            while self.end - self.start < 8 {
                if !self.fill()? {
                    break;
                }
            }
            let have = self.end - self.start;
            if have == 0 {
                return Ok(None);
            }
            let Some(word) = self
                .buf
                .get(self.start..self.end)
                .and_then(|b| b.get(..8))
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
            else {
                // The file ended inside a chunk's length word.
                self.offset += have as u64;
                self.start = self.end;
                return Ok(Some(Piece {
                    new_connection: false,
                    data: &[],
                    ends_chunk: true,
                    truncated: true,
                }));
            };
            let word = u64::from_le_bytes(word);
            let len = word & !NEW_CONNECTION;
            if len > MAX_CHUNK {
                return Err(RecordError::ChunkTooLarge {
                    len,
                    max: MAX_CHUNK,
                    offset: self.offset,
                });
            }
            self.start += 8;
            self.offset += 8;
            self.chunk_left = len;
            self.pending_new = word & NEW_CONNECTION != 0;
            if len == 0 {
                return Ok(Some(Piece {
                    new_connection: std::mem::take(&mut self.pending_new),
                    data: &[],
                    ends_chunk: true,
                    truncated: false,
                }));
            }
        }
        if self.start == self.end && !self.fill()? {
            // The file ended inside this chunk.
            self.chunk_left = 0;
            return Ok(Some(Piece {
                new_connection: std::mem::take(&mut self.pending_new),
                data: &[],
                ends_chunk: true,
                truncated: true,
            }));
        }
        let n = usize::try_from(self.chunk_left)
            .unwrap_or(usize::MAX)
            .min(self.end - self.start);
        let from = self.start;
        self.start += n;
        self.chunk_left -= n as u64;
        self.offset += n as u64;
        Ok(Some(Piece {
            new_connection: std::mem::take(&mut self.pending_new),
            data: self.buf.get(from..from + n).unwrap_or(&[]),
            ends_chunk: self.chunk_left == 0,
            truncated: false,
        }))
    }

    /// The next whole chunk, or `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>, RecordError> {
        let mut whole = std::mem::take(&mut self.whole);
        whole.clear();
        let mut new_connection = false;
        let mut truncated = false;
        let mut any = false;
        while let Some(p) = self.next_piece()? {
            any = true;
            new_connection |= p.new_connection;
            truncated |= p.truncated;
            whole.extend_from_slice(p.data);
            if p.ends_chunk {
                break;
            }
        }
        self.whole = whole;
        if !any {
            return Ok(None);
        }
        Ok(Some(Chunk {
            new_connection,
            data: &self.whole,
            truncated,
        }))
    }
}

/// Bytes of chunks buffered before a replay decodes them: recorded chunks are single socket
/// reads, often one message each, and decoding (and handing on) each alone would cost more
/// than the message.
pub const REPLAY_DECODE_BYTES: usize = 64 << 10;
/// Messages a replay gathers before handing them on: batches this size make the pipeline's
/// per-batch costs (channel hand-offs, thread wake-ups) small beside the per-event work.
pub const REPLAY_BATCH_MESSAGES: usize = 1024;

/// Replays a `.gobstream` through the same decoder the socket source uses, restarting it at
/// every recorded connection. Stats are those the live source would have counted; messages
/// come in stream order, in batches of about [`REPLAY_BATCH_MESSAGES`] (chunks are joined:
/// batches do not follow the recorded reads).
pub fn replay_gobstream<R: Read>(
    reader: &mut GobStreamReader<R>,
    max_message: usize,
    on_batch: &mut dyn FnMut(&[MonitorMessage]),
) -> Result<SocketStats, RecordError> {
    let mut stats = SocketStats::default();
    let mut stream = PayloadStream::new(max_message);
    let mut batch = Vec::with_capacity(REPLAY_BATCH_MESSAGES);
    while let Some(piece) = reader.next_piece()? {
        if piece.new_connection || stats.connections == 0 {
            if stats.connections > 0 {
                // What the old connection left buffered is decoded before its decoder ends.
                decode_into(&mut stream, &mut batch, &mut stats.stream);
                stream.reset(&mut stats.stream);
                stats.reconnects += 1;
            }
            stats.connections += 1;
        }
        stream.push(piece.data, &mut stats.stream);
        if stream.buffered() >= REPLAY_DECODE_BYTES {
            decode_into(&mut stream, &mut batch, &mut stats.stream);
        }
        hand_on_full(&mut batch, on_batch);
    }
    decode_into(&mut stream, &mut batch, &mut stats.stream);
    hand_on_full(&mut batch, on_batch);
    if !batch.is_empty() {
        on_batch(&batch);
    }
    stream.reset(&mut stats.stream);
    Ok(stats)
}

/// Hands on batches of exactly [`REPLAY_BATCH_MESSAGES`] from the front of `batch`, keeping
/// the rest for the next call.
fn hand_on_full(batch: &mut Vec<MonitorMessage>, on_batch: &mut dyn FnMut(&[MonitorMessage])) {
    let full = batch.len() - batch.len() % REPLAY_BATCH_MESSAGES;
    if full == 0 {
        return;
    }
    for part in batch
        .get(..full)
        .unwrap_or(&[])
        .chunks(REPLAY_BATCH_MESSAGES)
    {
        on_batch(part);
    }
    batch.drain(..full);
}

/// Decodes what `stream` holds. A fatal error is counted in the stats and poisons the stream
/// until the next connection, exactly as the live source drops the connection; the bytes
/// after it are counted as discarded whether they were pushed before or after the error was
/// found, so joining chunks changes no count.
fn decode_into(
    stream: &mut PayloadStream,
    batch: &mut Vec<MonitorMessage>,
    stats: &mut StreamStats,
) {
    let _ = stream.decode(batch, stats);
}

/// Writes a `.ciliumraw` file.
#[derive(Debug)]
pub struct RawSampleWriter<W: Write> {
    w: W,
}

impl RawSampleWriter<BufWriter<File>> {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self::new(BufWriter::with_capacity(
            1 << 20,
            owner_only(path)?,
        )))
    }
}

impl<W: Write> RawSampleWriter<W> {
    pub fn new(w: W) -> Self {
        RawSampleWriter { w }
    }

    pub fn write_sample(&mut self, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&l| l <= MAX_RAW_SAMPLE)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "raw sample of {} bytes exceeds {MAX_RAW_SAMPLE}",
                        data.len()
                    ),
                )
            })?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

fn read_u32_le(b: &[u8], at: usize) -> Option<u32> {
    crate::wire::u32_at(b, at, crate::wire::Endian::Little)
}

/// Reads a `.ciliumraw` file in batches; every record becomes the message a `Type` 9
/// payload with that `Data` would (CPU unknown: -1).
#[derive(Debug)]
pub struct RawSampleReader<R> {
    r: R,
    buf: BytesMut,
    read_buf: Vec<u8>,
    offset: u64,
    eof: bool,
}

impl RawSampleReader<File> {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self::new(File::open(path)?))
    }
}

impl<R: Read> RawSampleReader<R> {
    pub fn new(r: R) -> Self {
        RawSampleReader {
            r,
            buf: BytesMut::with_capacity(1 << 20),
            read_buf: vec![0; 256 << 10],
            offset: 0,
            eof: false,
        }
    }

    /// Appends up to `max` messages (at least one if any is left) to `out`; returns how many,
    /// 0 at the end of the file. A record cut short by the end of the file is counted in
    /// `stats.truncated_at_close`.
    pub fn next_batch(
        &mut self,
        out: &mut Vec<MonitorMessage>,
        stats: &mut StreamStats,
        max: usize,
    ) -> Result<usize, RecordError> {
        let max = max.max(1);
        loop {
            // Find the complete records at the front of the buffer.
            let mut end = 0usize;
            let mut count = 0usize;
            while count < max {
                let Some(len) = read_u32_le(&self.buf, end) else {
                    break;
                };
                if len > MAX_RAW_SAMPLE {
                    return Err(RecordError::SampleTooLarge {
                        len,
                        max: MAX_RAW_SAMPLE,
                        offset: self.offset + end as u64,
                    });
                }
                let stop = end + 4 + len as usize;
                if stop > self.buf.len() {
                    break;
                }
                count += 1;
                end = stop;
            }
            if count > 0 {
                let chunk = self.buf.split_to(end).freeze();
                self.offset += end as u64;
                stats.bytes += end as u64;
                let mut pos = 0usize;
                while let Some(len) = read_u32_le(&chunk, pos) {
                    let (a, b) = (pos + 4, pos + 4 + len as usize);
                    if b > chunk.len() {
                        break;
                    }
                    let p = Payload {
                        data: chunk.slice(a..b),
                        cpu: -1,
                        lost: 0,
                        typ: EVENT_SAMPLE,
                    };
                    out.push(classify(p, stats));
                    pos = b;
                }
                return Ok(count);
            }
            if self.eof {
                if !self.buf.is_empty() {
                    stats.truncated_at_close += 1;
                    stats.bytes_discarded += self.buf.len() as u64;
                    stats.bytes += self.buf.len() as u64;
                    self.offset += self.buf.len() as u64;
                    self.buf.clear();
                }
                return Ok(0);
            }
            let n = loop {
                match self.r.read(&mut self.read_buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            };
            if n == 0 {
                self.eof = true;
            } else {
                self.buf.reserve(n.max(1 << 20));
                self.buf
                    .extend_from_slice(self.read_buf.get(..n).unwrap_or(&[]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium_socket::payload::{encode_agent_notify, PayloadEncoder};
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test can read back after the recorder took ownership.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn two_connections() -> (Vec<u8>, Vec<u8>) {
        let mut a = Vec::new();
        let mut enc = PayloadEncoder::new(65);
        enc.encode(&[1, 0xaa, 0xbb], 1, 0, 9, &mut a);
        enc.encode(&[], 2, 1 << 35, 2, &mut a);
        let mut b = Vec::new();
        let mut enc = PayloadEncoder::new(68); // another process: another id
        enc.encode(&encode_agent_notify(2, "{}", 70), 0, 0, 9, &mut b);
        enc.encode(&[4, 1, 2, 3], 3, 0, 9, &mut b);
        (a, b)
    }

    #[test]
    fn gobstream_round_trip_restarts_decoder_per_connection() {
        let (a, b) = two_connections();
        let sink = Shared::default();
        let mut rec = GobStreamRecorder::new(sink.clone()).unwrap();
        rec.begin_connection();
        rec.write_chunk(&a[..5]).unwrap();
        rec.write_chunk(&a[5..]).unwrap();
        rec.begin_connection();
        rec.write_chunk(&b).unwrap();
        rec.flush().unwrap();
        assert_eq!(rec.bytes(), (a.len() + b.len()) as u64);
        let file = sink.0.lock().unwrap().clone();
        assert_eq!(&file[..8], b"DSCILGOB");
        assert_eq!(file.len(), 16 + 3 * 8 + a.len() + b.len());
        // First chunk word: flagged, length 5.
        assert_eq!(file[16..24], (5u64 | 1 << 63).to_le_bytes());

        let mut reader = GobStreamReader::new(&file[..]).unwrap();
        let mut got = Vec::new();
        let stats =
            replay_gobstream(&mut reader, 1 << 20, &mut |m| got.extend_from_slice(m)).unwrap();
        assert_eq!(
            got,
            vec![
                MonitorMessage::Sample {
                    cpu: 1,
                    data: Bytes::from_static(&[1, 0xaa, 0xbb])
                },
                MonitorMessage::Lost {
                    cpu: 2,
                    count: 1 << 35
                },
                MonitorMessage::Agent {
                    kind: 2,
                    text: "{}".into()
                },
                MonitorMessage::Sample {
                    cpu: 3,
                    data: Bytes::from_static(&[4, 1, 2, 3])
                },
            ]
        );
        assert_eq!((stats.connections, stats.reconnects), (2, 1));
        assert_eq!(stats.stream.type_definitions, 2);
        assert_eq!(stats.stream.malformed_total(), 0);
        assert_eq!(stats.stream.truncated_at_close, 0);
    }

    /// Replays `file` chunk by chunk, decoding each chunk alone (what the live source does
    /// per read): the reference the joined replay must match exactly.
    fn replay_chunk_by_chunk(file: &[u8]) -> (Vec<MonitorMessage>, SocketStats) {
        let mut reader = GobStreamReader::new(file).unwrap();
        let mut stats = SocketStats::default();
        let mut stream = PayloadStream::new(1 << 20);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            if chunk.new_connection || stats.connections == 0 {
                if stats.connections > 0 {
                    stream.reset(&mut stats.stream);
                    stats.reconnects += 1;
                }
                stats.connections += 1;
            }
            stream.push(chunk.data, &mut stats.stream);
            let _ = stream.decode(&mut out, &mut stats.stream);
        }
        stream.reset(&mut stats.stream);
        (out, stats)
    }

    /// A recording of three connections with one message per chunk (a live socket read at a
    /// low rate): 3000 samples and lost notices, a message cut at the first reconnect, and a
    /// framing error in the second connection after which its bytes are discarded.
    fn many_small_chunks() -> Vec<u8> {
        let sink = Shared::default();
        let mut rec = GobStreamRecorder::new(sink.clone()).unwrap();
        let mut msg = Vec::new();
        let mut enc = PayloadEncoder::new(65);
        rec.begin_connection();
        for i in 0..3000u32 {
            msg.clear();
            let t = 1 + (i % 7) as u8;
            enc.encode(
                &[t, i as u8, (i >> 8) as u8],
                i64::from(i % 4),
                0,
                9,
                &mut msg,
            );
            if i % 500 == 499 {
                enc.encode(&[], 1, u64::from(i), 2, &mut msg);
            }
            rec.write_chunk(&msg).unwrap();
        }
        msg.clear();
        enc.encode(&[1; 40], 0, 0, 9, &mut msg);
        rec.write_chunk(&msg[..msg.len() / 2]).unwrap();
        rec.begin_connection();
        let mut enc = PayloadEncoder::new(68);
        for i in 0..1500u32 {
            msg.clear();
            enc.encode(&[4, i as u8], 2, 0, 9, &mut msg);
            if i == 1000 {
                msg.extend_from_slice(&[0x90, 0, 0]); // a bad length: the rest is lost
            }
            rec.write_chunk(&msg).unwrap();
        }
        rec.begin_connection();
        let mut enc = PayloadEncoder::new(70);
        for i in 0..700u32 {
            msg.clear();
            enc.encode(&[1, i as u8], 3, 0, 9, &mut msg);
            rec.write_chunk(&msg).unwrap();
        }
        rec.flush().unwrap();
        drop(rec);
        let file = std::mem::take(&mut *sink.0.lock().unwrap());
        file
    }

    #[test]
    fn replay_joins_small_chunks_into_full_batches_with_identical_counts() {
        let file = many_small_chunks();
        let (want, want_stats) = replay_chunk_by_chunk(&file);
        // 3000 samples + 6 lost, 1001 samples before the framing error, 700 samples.
        assert_eq!(want.len(), 3006 + 1001 + 700);
        assert_eq!(want_stats.stream.lost_records, 6);
        assert_eq!(want_stats.stream.truncated_at_close, 1);
        assert_eq!(want_stats.stream.streams_abandoned, 1);
        assert!(want_stats.stream.bytes_discarded > 0);

        let mut reader = GobStreamReader::new(&file[..]).unwrap();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let stats = replay_gobstream(&mut reader, 1 << 20, &mut |m| {
            sizes.push(m.len());
            got.extend_from_slice(m);
        })
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(stats, want_stats);
        assert_eq!((stats.connections, stats.reconnects), (3, 2));
        // Full batches, then the rest: not one batch per recorded chunk.
        let n = REPLAY_BATCH_MESSAGES;
        let mut want_sizes = vec![n; want.len() / n];
        want_sizes.push(want.len() % n);
        assert_eq!(sizes, want_sizes);
        assert!(sizes.len() >= 3);
    }

    #[test]
    fn replay_of_every_cut_of_a_recording_counts_as_chunk_by_chunk() {
        let file = many_small_chunks();
        // Cuts inside the header, chunk words, messages, across the reconnects.
        let cuts = (16..file.len())
            .step_by(997)
            .chain([file.len() - 1, file.len()]);
        for cut in cuts {
            let (want, want_stats) = replay_chunk_by_chunk(&file[..cut]);
            let mut reader = GobStreamReader::new(&file[..cut]).unwrap();
            let mut got = Vec::new();
            let stats =
                replay_gobstream(&mut reader, 1 << 20, &mut |m| got.extend_from_slice(m)).unwrap();
            assert_eq!(got, want, "cut {cut}");
            assert_eq!(stats, want_stats, "cut {cut}");
        }
    }

    /// Hands out at most `max` bytes per `read`.
    struct Trickle<'a> {
        data: &'a [u8],
        max: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn chunks_come_whole_whatever_the_reads_and_pieces_follow_the_buffer() {
        // Chunks of 0, 1, 5 bytes, one larger than the read buffer, and a flagged one.
        let big: Vec<u8> = (0..READ_BLOCK * 2 + 12345).map(|i| i as u8).collect();
        let parts: [(&[u8], bool); 6] = [
            (&[], false),
            (&[7], false),
            (&[1, 2, 3, 4, 5], false),
            (&big, false),
            (&[9, 9], true),
            (&[], true),
        ];
        // Written by hand: the recorder writes no empty chunks, a file may hold them.
        let mut file = GOBSTREAM_MAGIC.to_vec();
        file.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        for (i, (data, new)) in parts.iter().enumerate() {
            let flag = if *new || i == 0 { NEW_CONNECTION } else { 0 };
            file.extend_from_slice(&(data.len() as u64 | flag).to_le_bytes());
            file.extend_from_slice(data);
        }
        for max in [1, 3, 8, 1000, usize::MAX] {
            let mut r = GobStreamReader::new(Trickle { data: &file, max }).unwrap();
            for (i, (data, new)) in parts.iter().enumerate() {
                let c = r.next_chunk().unwrap().unwrap();
                assert_eq!(c.data, *data, "chunk {i}, reads of {max}");
                // The first chunk of a file is flagged.
                assert_eq!(c.new_connection, *new || i == 0, "chunk {i}");
                assert!(!c.truncated);
            }
            assert_eq!(r.next_chunk().unwrap(), None);
        }
        // Pieces: the big chunk comes in pieces no larger than the read buffer, in order.
        let mut r = GobStreamReader::new(&file[..]).unwrap();
        let mut pieces = Vec::new();
        let mut joined = Vec::new();
        while let Some(p) = r.next_piece().unwrap() {
            assert!(p.data.len() <= READ_BLOCK);
            joined.extend_from_slice(p.data);
            pieces.push((p.data.len(), p.new_connection, p.ends_chunk, p.truncated));
        }
        let want: Vec<u8> = parts.iter().flat_map(|(d, _)| d.iter().copied()).collect();
        assert_eq!(joined, want);
        assert_eq!(pieces.iter().filter(|p| p.2).count(), parts.len());
        assert_eq!(pieces.iter().filter(|p| p.1).count(), 3);
        assert!(pieces.len() >= parts.len() + 2, "{pieces:?}");
        assert!(pieces.iter().all(|p| !p.3));
    }

    #[test]
    fn a_file_cut_inside_a_chunk_ends_with_a_truncated_piece() {
        let sink = Shared::default();
        let mut rec = GobStreamRecorder::new(sink.clone()).unwrap();
        rec.write_chunk(&[1, 2, 3, 4]).unwrap();
        drop(rec);
        let file = sink.0.lock().unwrap().clone();
        let mut r = GobStreamReader::new(&file[..file.len() - 1]).unwrap();
        let c = r.next_chunk().unwrap().unwrap();
        assert_eq!(
            (c.data, c.new_connection, c.truncated),
            (&[1u8, 2, 3][..], true, true)
        );
        assert_eq!(r.next_chunk().unwrap(), None);
        // Cut inside the length word: an empty truncated chunk.
        let mut r = GobStreamReader::new(&file[..16 + 5]).unwrap();
        let p = r.next_piece().unwrap().unwrap();
        assert_eq!(
            p,
            Piece {
                new_connection: false,
                data: &[],
                ends_chunk: true,
                truncated: true
            }
        );
        assert_eq!(r.next_piece().unwrap(), None);
    }

    #[test]
    fn without_connection_marks_the_second_stream_would_fail() {
        // Two agent streams recorded as one connection: the second defines type 65 again,
        // which is fatal for that stream (as it would be on a live socket).
        let mut a = Vec::new();
        PayloadEncoder::new(65).encode(&[1], 0, 0, 9, &mut a);
        let rec_bytes = Shared::default();
        let mut rec = GobStreamRecorder::new(rec_bytes.clone()).unwrap();
        rec.write_chunk(&a).unwrap();
        rec.write_chunk(&a).unwrap(); // same connection: duplicate type 65
        drop(rec);
        let file = std::mem::take(&mut *rec_bytes.0.lock().unwrap());
        let mut reader = GobStreamReader::new(&file[..]).unwrap();
        let mut n = 0;
        let stats = replay_gobstream(&mut reader, 1 << 20, &mut |m| n += m.len()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.stream.malformed.get("duplicate_type"), Some(&1));
        assert_eq!(stats.stream.streams_abandoned, 1);
    }

    #[test]
    fn truncated_recording_and_bad_headers() {
        let (a, _) = two_connections();
        let sink = Shared::default();
        let mut rec = GobStreamRecorder::new(sink.clone()).unwrap();
        rec.write_chunk(&a).unwrap();
        let file = sink.0.lock().unwrap().clone();
        for cut in 0..file.len() {
            match GobStreamReader::new(&file[..cut]) {
                Err(RecordError::TooShort { need: 16, have }) => assert_eq!(have, cut),
                Err(e) => panic!("cut {cut}: {e}"),
                Ok(mut r) => {
                    let mut n = 0;
                    let stats = replay_gobstream(&mut r, 1 << 20, &mut |m| n += m.len()).unwrap();
                    assert!(n < 2, "cut {cut}");
                    assert_eq!(stats.stream.payloads, n as u64);
                }
            }
        }
        let mut bad = file.clone();
        bad[0] = b'X';
        assert!(matches!(
            GobStreamReader::new(&bad[..]),
            Err(RecordError::BadMagic { .. })
        ));
        let mut bad = file.clone();
        bad[8] = 2;
        assert!(matches!(
            GobStreamReader::new(&bad[..]),
            Err(RecordError::UnsupportedVersion { version: 2 })
        ));
        let mut bad = file.clone();
        bad[16..24].copy_from_slice(&(MAX_CHUNK + 1).to_le_bytes());
        let mut r = GobStreamReader::new(&bad[..]).unwrap();
        assert!(matches!(
            r.next_chunk(),
            Err(RecordError::ChunkTooLarge { offset: 16, .. })
        ));
    }

    #[test]
    fn ciliumraw_round_trip_in_batches() {
        let samples: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                let t = (i % 9) as u8; // 0 and 8 are not datapath types
                let mut v = vec![t];
                v.extend((0..i % 50).map(|x| x as u8));
                v
            })
            .collect();
        let mut w = RawSampleWriter::new(Vec::new());
        for s in &samples {
            w.write_sample(s).unwrap();
        }
        let file = w.into_inner();
        let mut r = RawSampleReader::new(&file[..]);
        let mut stats = StreamStats::default();
        let mut out = Vec::new();
        let mut batches = 0;
        while r.next_batch(&mut out, &mut stats, 7).unwrap() > 0 {
            batches += 1;
        }
        assert_eq!(batches, 29); // ceil(200 / 7)
        assert_eq!(out.len(), 200);
        for (s, m) in samples.iter().zip(&out) {
            match m {
                MonitorMessage::Sample { cpu: -1, data } => assert_eq!(&data[..], &s[..]),
                MonitorMessage::Unknown {
                    typ: 9,
                    cpu: -1,
                    data,
                    ..
                } => {
                    assert!(s[0] == 0 || s[0] == 8);
                    assert_eq!(&data[..], &s[..]);
                }
                other => panic!("{other:?}"),
            }
        }
        // i % 9 == 0 for 23 values of i, == 8 for 22: those 45 are not datapath types.
        assert_eq!((stats.samples(), stats.unknown), (155, 45));
        assert_eq!(stats.bytes, file.len() as u64);
        assert_eq!(stats.truncated_at_close, 0);
    }

    #[test]
    fn ciliumraw_truncation_and_limits() {
        let mut w = RawSampleWriter::new(Vec::new());
        w.write_sample(&[1, 2, 3]).unwrap();
        w.write_sample(&[4, 5]).unwrap();
        let file = w.into_inner();
        for cut in 0..=file.len() {
            let mut r = RawSampleReader::new(&file[..cut]);
            let mut stats = StreamStats::default();
            let mut out = Vec::new();
            while r.next_batch(&mut out, &mut stats, 100).unwrap() > 0 {}
            let want = if cut == file.len() {
                2
            } else if cut >= 7 {
                1
            } else {
                0
            };
            assert_eq!(out.len(), want, "cut {cut}");
            let partial = cut != 0 && cut != 7 && cut != file.len();
            assert_eq!(stats.truncated_at_close, u64::from(partial), "cut {cut}");
            assert_eq!(stats.bytes, cut as u64);
        }
        let mut bad = Vec::new();
        bad.extend_from_slice(&(MAX_RAW_SAMPLE + 1).to_le_bytes());
        let mut r = RawSampleReader::new(&bad[..]);
        assert!(matches!(
            r.next_batch(&mut Vec::new(), &mut StreamStats::default(), 1),
            Err(RecordError::SampleTooLarge { offset: 0, .. })
        ));
        let mut w = RawSampleWriter::new(Vec::new());
        assert!(w
            .write_sample(&vec![0; MAX_RAW_SAMPLE as usize + 1])
            .is_err());
    }

    proptest::proptest! {
        #[test]
        fn readers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut r = RawSampleReader::new(&bytes[..]);
            let mut stats = StreamStats::default();
            let mut out = Vec::new();
            while let Ok(n) = r.next_batch(&mut out, &mut stats, 16) {
                if n == 0 { break; }
            }
            let mut with_header = GOBSTREAM_MAGIC.to_vec();
            with_header.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            with_header.extend_from_slice(&bytes);
            if let Ok(mut g) = GobStreamReader::new(&with_header[..]) {
                let _ = replay_gobstream(&mut g, 1 << 16, &mut |_| {});
            }
        }
    }
}
