//! `FileSource`: reads a pcap or pcapng file (ours or anyone's) into event batches, for
//! `dropscope replay`.
//!
//! Classic pcap: both byte orders, microsecond and nanosecond magics, and Kuznetsov's
//! "modified" variant. pcapng: any number of sections and interfaces, both byte orders,
//! `if_tsresol`/`if_tsoffset`, enhanced, simple and obsolete packet blocks; other blocks are
//! skipped. The drop cause comes back from the packet comment ([`crate::comment`]).
//! An event's ifindex/netns come from our `if_description` (`ifindex N netns M`), else an
//! `ifN[@netnsM]` interface name, else an SLL2 header, else the pcapng interface id; a kernel
//! drop comment's netns wins.
//!
//! The file is untrusted: this module never indexes, unwraps or panics on its bytes. A block
//! whose length is sane but whose content is not is counted by kind and skipped; a length that
//! cannot be right, or the end of the file inside a block, stops the read (counted). The file
//! is read in large chunks into one buffer; each batch's events are [`Bytes`] cut from that
//! buffer, so there is no allocation per packet.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};

use super::linktype::framing;
use super::pcap_reader::Pcap;
use super::pcapng_reader::{Pcapng, BYTE_ORDER_MAGIC, SHB_TYPE};
use super::read_step::{Pending, ReadStats, Step};
use crate::comment::ParsedCause;
use crate::event::{Batch, Cause, Event};
use crate::wire::{u32_at, Endian};

/// Size of the buffers the file is read into; each batch's events point into one of them.
/// Large enough for few reads, small enough that the batches in flight stay in cache-sized
/// pieces and a buffer is rarely shared by two batches.
const CHUNK: usize = 256 << 10;
/// ... the first buffer: small files (and fuzz inputs) need no large one.
const FIRST_CHUNK: usize = 64 << 10;
/// Buffers kept for reuse once the batches that pointed into them are gone.
const POOL: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path} at byte {offset}: {source}")]
    Io {
        path: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} is not a pcap or pcapng file (first bytes {first_bytes})")]
    NotCapture { path: String, first_bytes: String },
    #[error("{path} ends inside its file header ({have} of {need} bytes)")]
    TruncatedHeader {
        path: String,
        need: usize,
        have: usize,
    },
    #[error("{path} is not a pcapng file: its section header has byte-order magic {magic:#010x}")]
    BadByteOrder { path: String, magic: u32 },
}

/// The container format of the file being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    Pcap { nanoseconds: bool, big_endian: bool },
    Pcapng,
}

/// Reads packets from a pcap or pcapng file.
///
/// The file is read into buffers of [`CHUNK`] bytes. Events are cut from the buffer they were
/// parsed in (one reference count per buffer, so a batch's events share it with nothing the
/// sink thread is releasing at the same time), and a buffer goes back to a small pool once the
/// last of its events is dropped: steady state reads into warm memory, with no zeroing and no
/// allocation per batch.
pub struct FileSource {
    path: String,
    src: Box<dyn Read + Send>,
    /// The buffer being parsed while no event points into it: `data[..filled]` holds file
    /// bytes, `data[pos..filled]` the unconsumed ones. Empty while `shared` is set.
    data: Vec<u8>,
    /// The same buffer once events were cut from it: read-only from then on.
    shared: Option<Bytes>,
    filled: usize,
    pos: usize,
    /// File offset of the byte at `pos`.
    buf_offset: u64,
    pool_tx: Sender<Vec<u8>>,
    pool_rx: Receiver<Vec<u8>>,
    eof: bool,
    done: bool,
    parser: Parser,
    pending: Vec<Pending>,
    causes: Vec<Option<ParsedCause>>,
    /// Drop-site symbols the file's comments name, one shared value per location and batch.
    symbols: SymbolCache,
    stats: ReadStats,
}

/// A read buffer lent to the events cut from it; back to the pool when the last one goes.
/// Aligned to two cache lines: `Bytes` keeps each buffer's reference count next to it, and
/// the source thread counts up one buffer's while the sink thread counts down the previous
/// one's; sharing a line made both slow.
#[repr(align(128))]
struct PoolBuf {
    data: Vec<u8>,
    len: usize,
    pool: Sender<Vec<u8>>,
}

impl AsRef<[u8]> for PoolBuf {
    fn as_ref(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or(&[])
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if self.data.len() == CHUNK {
            // A full pool, or a reader gone, just frees it.
            let _ = self.pool.try_send(std::mem::take(&mut self.data));
        }
    }
}

impl FileSource {
    /// Opens `path` and checks its file header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: name.clone(),
            source,
        })?;
        Self::from_reader(&name, Box::new(file))
    }

    /// Reads a capture from any byte stream (`name` is used in messages), e.g. stdin.
    pub fn from_reader(name: &str, src: Box<dyn Read + Send>) -> Result<Self, ReadError> {
        let (pool_tx, pool_rx) = bounded(POOL);
        let mut s = FileSource {
            path: name.to_string(),
            src,
            data: Vec::new(),
            shared: None,
            filled: 0,
            pos: 0,
            buf_offset: 0,
            pool_tx,
            pool_rx,
            eof: false,
            done: false,
            parser: Parser::Pcapng(Pcapng::default()),
            pending: Vec::new(),
            causes: Vec::new(),
            symbols: SymbolCache::default(),
            stats: ReadStats::default(),
        };
        s.fill(24)?;
        s.parser = s.read_file_header()?;
        Ok(s)
    }

    pub fn format(&self) -> SourceFormat {
        match &self.parser {
            Parser::Pcap(p) => SourceFormat::Pcap {
                nanoseconds: p.nanos,
                big_endian: p.endian == Endian::Big,
            },
            Parser::Pcapng(_) => SourceFormat::Pcapng,
        }
    }

    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The data of the kernel-table block a dropscope capture ends with, once read (taken).
    pub fn take_kernel_table(&mut self) -> Option<Vec<u8>> {
        match &mut self.parser {
            Parser::Pcapng(p) => p.kernel_table.take(),
            Parser::Pcap(_) => None,
        }
    }

    /// The cause parsed from each comment of the events the last [`FileSource::next_batch`]
    /// appended, in the same order (`None`: no recognised comment). Cilium causes are only
    /// available here until events can carry them.
    pub fn parsed_causes(&self) -> &[Option<ParsedCause>] {
        &self.causes
    }

    /// Appends up to `max` events to `batch`; returns how many. 0 means the file is done
    /// (or `max` was 0). A batch also ends where its read buffer does, so it may hold fewer
    /// than `max` events before the end of the file.
    pub fn next_batch(&mut self, batch: &mut Batch, max: usize) -> Result<usize, ReadError> {
        self.pending.clear();
        self.causes.clear();
        while !self.done && self.pending.len() < max {
            let bytes: &[u8] = match &self.shared {
                Some(b) => b,
                None => self.data.get(..self.filled).unwrap_or(&[]),
            };
            let rest = bytes.get(self.pos..).unwrap_or(&[]);
            let have = rest.len();
            match self.parser.step(rest, &mut self.stats) {
                Step::Need(n) if n <= have => {
                    // A parser asking for bytes it has would loop: treat as corrupt.
                    self.stats.corrupt_block += 1;
                    self.done = true;
                }
                Step::Need(n) => {
                    if self.eof {
                        if have > 0 {
                            self.stats.truncated_file += 1;
                        }
                        self.done = true;
                    } else if !self.pending.is_empty()
                        && (self.shared.is_some() || self.pos.saturating_add(n) > self.data.len())
                    {
                        // The pending packets point into this buffer and the block does not
                        // fit in what is left of it: the batch ends here.
                        break;
                    } else {
                        self.fill(n)?;
                    }
                }
                Step::Skip(n) => self.consume(n),
                Step::Packet(n, mut p) => {
                    p.off = p.off.saturating_add(self.pos);
                    p.sym_off = p.sym_off.saturating_add(self.pos);
                    self.pending.push(p);
                    self.consume(n);
                }
                Step::Stop => self.done = true,
            }
        }
        let before = batch.events.len();
        if !self.pending.is_empty() {
            let whole = match &self.shared {
                Some(b) => b.clone(),
                None => {
                    let b = Bytes::from_owner(PoolBuf {
                        data: std::mem::take(&mut self.data),
                        len: self.filled,
                        pool: self.pool_tx.clone(),
                    });
                    self.shared = Some(b.clone());
                    b
                }
            };
            batch.events.reserve(self.pending.len());
            // Symbols are shared within a batch only: one value shared by every event of a
            // run would have its count bounced between the pipeline's threads.
            self.symbols = SymbolCache::default();
            for p in &self.pending {
                let Some(end) = p.off.checked_add(p.len).filter(|e| *e <= whole.len()) else {
                    // Offsets come from the parser over these very bytes: cannot happen.
                    self.stats.corrupt_block += 1;
                    continue;
                };
                let meta = match (p.sym_len, p.cause) {
                    (1.., Cause::Kernel { location, .. }) => {
                        symbol_meta(&mut self.symbols, location, &whole, p.sym_off, p.sym_len)
                    }
                    _ => None,
                };
                batch.events.push(Event {
                    meta,
                    ts_ns: p.ts_ns,
                    ifindex: p.ifindex,
                    netns: p.netns,
                    cpu: u32::MAX,
                    orig_len: p.orig_len,
                    link: p.link,
                    data: whole.slice(p.off..end),
                    cause: p.cause,
                });
                self.causes.push(p.parsed);
                self.stats.packets += 1;
                self.stats.bytes += p.len as u64;
            }
        }
        if self.done {
            // Release the buffers (those still lent come back to a pool nobody reads).
            self.shared = None;
            self.data = Vec::new();
            while self.pool_rx.try_recv().is_ok() {}
        }
        Ok(batch.events.len() - before)
    }

    /// Moves past `n` bytes (a step's whole block or record).
    #[inline]
    fn consume(&mut self, n: usize) {
        let n = n.min(self.filled.saturating_sub(self.pos));
        self.pos += n;
        self.buf_offset += n as u64;
    }

    /// A writable buffer of at least `size` bytes: a pooled one for the usual size.
    fn take_buffer(&self, size: usize) -> Vec<u8> {
        if size <= CHUNK {
            if let Ok(b) = self.pool_rx.try_recv() {
                return b;
            }
            if size <= FIRST_CHUNK && self.buf_offset < CHUNK as u64 {
                return vec![0; FIRST_CHUNK];
            }
            return vec![0; CHUNK];
        }
        // A block larger than a buffer (rare): calloc'd, so a corrupt length in a short file
        // costs address space, not memory, until bytes are actually read into it.
        vec![0; size]
    }

    /// Reads until `need` bytes from `pos` are buffered or the input ends. Unconsumed bytes
    /// move to the front of a (new, when events point into this one) buffer when the block
    /// does not fit after them. Callers with pending packets only call this when it fits.
    fn fill(&mut self, need: usize) -> Result<(), ReadError> {
        let have = self.filled.saturating_sub(self.pos);
        if self.shared.is_some() || self.pos.saturating_add(need) > self.data.len() {
            if self.shared.is_none()
                && need <= self.data.len()
                && self.pos <= self.filled
                && self.filled <= self.data.len()
            {
                self.data.copy_within(self.pos..self.filled, 0);
            } else {
                let mut next = self.take_buffer(need);
                let old: &[u8] = match &self.shared {
                    Some(b) => b,
                    None => &self.data,
                };
                if let (Some(dst), Some(src)) =
                    (next.get_mut(..have), old.get(self.pos..self.filled))
                {
                    dst.copy_from_slice(src);
                }
                self.shared = None;
                let old = std::mem::replace(&mut self.data, next);
                if old.len() == CHUNK {
                    let _ = self.pool_tx.try_send(old);
                }
            }
            self.pos = 0;
            self.filled = have;
        }
        let want = self.pos.saturating_add(need);
        while self.filled < want && !self.eof {
            let Some(dst) = self.data.get_mut(self.filled..) else {
                break;
            };
            if dst.is_empty() {
                break;
            }
            match self.src.read(dst) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n.min(dst.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        path: self.path.clone(),
                        offset: self.buf_offset + (self.filled - self.pos) as u64,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn read_file_header(&mut self) -> Result<Parser, ReadError> {
        let b: &[u8] = self.data.get(..self.filled).unwrap_or(&[]);
        let path = || self.path.clone();
        if b.is_empty() {
            return Err(ReadError::Empty { path: path() });
        }
        let magic_le = u32_at(b, 0, Endian::Little);
        let Some(magic) = magic_le else {
            return Err(not_capture(&self.path, b));
        };
        if magic == SHB_TYPE {
            let (Some(bom_le), Some(_)) =
                (u32_at(b, 8, Endian::Little), u32_at(b, 4, Endian::Little))
            else {
                return Err(ReadError::TruncatedHeader {
                    path: path(),
                    need: 12,
                    have: b.len(),
                });
            };
            if bom_le != BYTE_ORDER_MAGIC && bom_le.swap_bytes() != BYTE_ORDER_MAGIC {
                return Err(ReadError::BadByteOrder {
                    path: path(),
                    magic: bom_le,
                });
            }
            return Ok(Parser::Pcapng(Pcapng::default()));
        }
        let (endian, nanos, modified) = match magic {
            0xa1b2_c3d4 => (Endian::Little, false, false),
            0xd4c3_b2a1 => (Endian::Big, false, false),
            0xa1b2_3c4d => (Endian::Little, true, false),
            0x4d3c_b2a1 => (Endian::Big, true, false),
            0xa1b2_cd34 => (Endian::Little, false, true),
            0x34cd_b2a1 => (Endian::Big, false, true),
            _ => return Err(not_capture(&self.path, b)),
        };
        // The header's snap length (bytes 16..20) is not used: files exceed it.
        let Some(linktype) = u32_at(b, 20, endian) else {
            return Err(ReadError::TruncatedHeader {
                path: path(),
                need: 24,
                have: b.len(),
            });
        };
        self.consume(24);
        Ok(Parser::Pcap(Pcap {
            endian,
            nanos,
            record_len: if modified { 24 } else { 16 },
            // Bits 16..32 carry FCS information, not the link type.
            framing: framing((linktype & 0xffff) as u16),
        }))
    }
}

fn not_capture(path: &str, b: &[u8]) -> ReadError {
    let mut first_bytes = String::new();
    for (i, x) in b.iter().take(8).enumerate() {
        if i > 0 {
            first_bytes.push(' ');
        }
        first_bytes.push_str(&format!("{x:02x}"));
    }
    ReadError::NotCapture {
        path: path.to_string(),
        first_bytes,
    }
}

enum Parser {
    Pcap(Pcap),
    Pcapng(Pcapng),
}

impl Parser {
    fn step(&mut self, b: &[u8], stats: &mut ReadStats) -> Step {
        match self {
            Parser::Pcap(p) => p.step(b, stats),
            Parser::Pcapng(p) => p.step(b, stats),
        }
    }
}

/// The meta of a kernel drop at `location` whose comment is `whole[off..off + len]`:
/// the symbol it names, read once per location (and batch), shared by its drops.
fn symbol_meta(
    cache: &mut SymbolCache,
    location: u64,
    whole: &[u8],
    off: usize,
    len: usize,
) -> Option<std::sync::Arc<crate::event::EventMeta>> {
    if let Some((l, m)) = &cache.last {
        if *l == location {
            return m.clone();
        }
    }
    let m = cache
        .by_location
        .entry(location)
        .or_insert_with(|| {
            let comment = std::str::from_utf8(whole.get(off..off.checked_add(len)?)?).ok()?;
            let r = crate::comment::kernel_symbol(comment)?;
            Some(std::sync::Arc::new(crate::event::EventMeta {
                symbol: Some(comment.get(r)?.into()),
                ..Default::default()
            }))
        })
        .clone();
    cache.last = Some((location, m.clone()));
    m
}

/// See [`symbol_meta`].
#[derive(Default)]
struct SymbolCache {
    by_location: hashbrown::HashMap<u64, Option<std::sync::Arc<crate::event::EventMeta>>>,
    last: Option<(u64, Option<std::sync::Arc<crate::event::EventMeta>>)>,
}

#[cfg(test)]
mod tests {
    use super::super::testfile::{self, eth_ipv4_udp, ipv4_udp, Ng};
    use super::*;
    use crate::event::LinkType;
    use proptest::prelude::*;

    fn source(bytes: Vec<u8>) -> FileSource {
        FileSource::from_reader("test", Box::new(io::Cursor::new(bytes))).unwrap()
    }

    /// All events of `bytes`, read `max` at a time.
    fn read_all(bytes: Vec<u8>, max: usize) -> (Vec<Event>, Vec<Option<ParsedCause>>, ReadStats) {
        let mut s = source(bytes);
        let mut batch = Batch::default();
        let mut causes = Vec::new();
        loop {
            let before = batch.events.len();
            let n = s.next_batch(&mut batch, max).unwrap();
            assert_eq!(batch.events.len() - before, n);
            assert_eq!(s.parsed_causes().len(), n);
            causes.extend_from_slice(s.parsed_causes());
            if n == 0 {
                break;
            }
            assert!(n <= max);
        }
        (batch.events, causes, *s.stats())
    }

    const KERNEL: &str =
        "NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 [0xffffffff81b2c3d4] netns 4026531840";
    const CILIUM: &str =
        "DROP Policy denied (133) identity 12345->678 ep 0 ifindex 3 bpf_lxc.c:1234";

    /// Two sections (the second in the other byte order) covering every packet block kind.
    fn two_sections(first: Endian) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let other = if first == Endian::Little {
            Endian::Big
        } else {
            Endian::Little
        };
        let eth = eth_ipv4_udp(60, 1);
        let raw = ipv4_udp(40, 2);
        let mut ng = Ng::new(first);
        ng.shb(1);
        ng.idb(1, 0, &[(2, b"if7@netns99"), (9, &[9])]);
        let off = 10i64.to_le_bytes();
        let off = if first == Endian::Little {
            off
        } else {
            10i64.to_be_bytes()
        };
        ng.idb(101, 0, &[(2, b"tun0"), (14, &off)]);
        ng.epb(
            0,
            1_700_000_000_123_456_789,
            &eth,
            1514,
            &[(1, KERNEL.as_bytes())],
            true,
        );
        ng.block(0x1234, &[1, 2, 3, 4], false); // unknown
        ng.block(5, &[0; 12], false); // interface statistics
        ng.epb(
            1,
            5_000_001,
            &raw,
            40,
            &[(1, CILIUM.as_bytes()), (1, b"second comment")],
            true,
        );
        ng.pb(0, 7, &eth, 60, &[]);
        ng.spb(60, &eth);
        ng.endian(other);
        ng.shb(1);
        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 5, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
        v6.extend_from_slice(&[0; 32]);
        sll2.extend_from_slice(&v6);
        ng.idb(276, 0, &[(9, &[0x80 | 10])]);
        ng.epb(0, 2048, &sll2, 100, &[], true);
        (ng.buf, eth, raw)
    }

    #[test]
    fn pcapng_every_block_kind_both_byte_orders() {
        for first in [Endian::Little, Endian::Big] {
            let (file, eth, raw) = two_sections(first);
            let (ev, causes, st) = read_all(file.clone(), 1000);
            assert_eq!(ev.len(), 5, "{first:?}");
            // EPB with a kernel comment, nanosecond resolution.
            assert_eq!(ev[0].ts_ns, 1_700_000_000_123_456_789);
            assert_eq!((ev[0].ifindex, ev[0].netns), (7, 4026531840));
            assert_eq!(ev[0].link, LinkType::Ethernet);
            assert_eq!(ev[0].orig_len, 1514);
            assert_eq!(&ev[0].data[..], &eth[..]);
            assert_eq!(
                ev[0].cause,
                Cause::Kernel {
                    reason: 3,
                    location: 0xffffffff81b2c3d4,
                    protocol: 0
                }
            );
            assert_eq!(ev[0].cpu, u32::MAX);
            // Raw IP, default microseconds plus a 10 s offset; interface id as ifindex.
            assert_eq!(ev[1].ts_ns, 15_000_001_000);
            assert_eq!((ev[1].ifindex, ev[1].netns), (1, 0));
            assert_eq!(ev[1].link, LinkType::RawIp);
            assert_eq!(&ev[1].data[..], &raw[..]);
            assert_eq!(
                ev[1].cause,
                Cause::Cilium(crate::cilium_glue::drop_from_comment(
                    133,
                    12345,
                    678,
                    ev[1].ifindex,
                    ev[1].orig_len
                ))
            );
            assert_eq!(
                causes[1],
                Some(ParsedCause::Cilium {
                    code: 133,
                    src_identity: 12345,
                    dst_identity: 678
                })
            );
            // Obsolete packet block: interface 0 (ns), no comment.
            assert_eq!(ev[2].ts_ns, 7);
            assert_eq!(ev[2].cause, Cause::Captured);
            assert_eq!(ev[2].ifindex, 7);
            // Simple packet block: no timestamp.
            assert_eq!((ev[3].ts_ns, ev[3].orig_len), (0, 60));
            assert_eq!(&ev[3].data[..], &eth[..]);
            // Second section: SLL2 stripped, 2^-10 s resolution, ifindex from the header.
            assert_eq!(ev[4].ts_ns, 2_000_000_000);
            assert_eq!(ev[4].link, LinkType::RawIp);
            assert_eq!(ev[4].ifindex, 5);
            assert_eq!(ev[4].orig_len, 80);
            assert_eq!(ev[4].data.len(), 40);
            assert_eq!(ev[4].data[0], 0x60);
            assert_eq!(causes, vec![causes[0], causes[1], None, None, None]);
            assert_eq!(
                st,
                ReadStats {
                    packets: 5,
                    bytes: (60 + 40 + 60 + 60 + 40) as u64,
                    sections: 2,
                    interfaces: 3,
                    kernel_comments_seen: 1,
                    cilium_comments_seen: 1,
                    blocks_unknown: 1,
                    blocks_ignored: 1,
                    ..ReadStats::default()
                }
            );
            // Same result one event at a time, and from a reader that returns 7 bytes a read.
            let (ev1, _, st1) = read_all(file.clone(), 1);
            assert_eq!((ev1, st1), (ev.clone(), st));
            let mut s =
                FileSource::from_reader("slow", Box::new(Slow(io::Cursor::new(file)))).unwrap();
            let mut b = Batch::default();
            while s.next_batch(&mut b, 2).unwrap() > 0 {}
            assert_eq!((b.events, *s.stats()), (ev, st));
        }
    }

    struct Slow(io::Cursor<Vec<u8>>);
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn classic_pcap_magics() {
        let eth = eth_ipv4_udp(64, 3);
        for e in [Endian::Little, Endian::Big] {
            for (magic, ts) in [
                (0xa1b2_c3d4u32, 1_000_000_000_000_123_000u64),
                (0xa1b2_3c4d, 1_000_000_000_000_000_123),
                (0xa1b2_cd34, 1_000_000_000_000_123_000),
            ] {
                // 123 µs or 123 ns, by magic.
                let frac = 123;
                let f = testfile::pcap(
                    e,
                    magic,
                    1,
                    &[(1_000_000_000, frac, &eth, 1000), (5, 0, &eth[..20], 64)],
                );
                let mut s = source(f);
                let ns = magic == 0xa1b2_3c4d;
                assert_eq!(
                    s.format(),
                    SourceFormat::Pcap {
                        nanoseconds: ns,
                        big_endian: e == Endian::Big
                    }
                );
                let mut b = Batch::default();
                assert_eq!(s.next_batch(&mut b, 10).unwrap(), 2);
                assert_eq!(s.next_batch(&mut b, 10).unwrap(), 0);
                assert_eq!(b.events[0].ts_ns, ts, "{e:?} {magic:#x}");
                assert_eq!(b.events[0].orig_len, 1000);
                assert_eq!(&b.events[0].data[..], &eth[..]);
                assert_eq!(b.events[0].link, LinkType::Ethernet);
                assert_eq!(
                    b.events[0].ifindex,
                    if magic == 0xa1b2_cd34 { 9 } else { 0 }
                );
                assert_eq!(b.events[1].ts_ns, 5_000_000_000);
                assert_eq!(&b.events[1].data[..], &eth[..20]);
                assert_eq!(
                    *s.stats(),
                    ReadStats {
                        packets: 2,
                        bytes: 84,
                        ..ReadStats::default()
                    }
                );
            }
        }
    }

    #[test]
    fn classic_link_types() {
        let raw = ipv4_udp(30, 1);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&raw);
        let mut arp = sll.clone();
        arp[14..16].copy_from_slice(&[0x08, 0x06]);
        let f = testfile::pcap(
            Endian::Little,
            0xa1b2_c3d4,
            113,
            &[(1, 0, &sll, 46), (2, 0, &arp, 46), (3, 0, &sll[..10], 46)],
        );
        let (ev, _, st) = read_all(f, 10);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].link, ev[0].orig_len), (LinkType::RawIp, 30));
        assert_eq!(&ev[0].data[..], &raw[..]);
        assert_eq!(
            (st.skipped_cooked_not_ip, st.skipped_cooked_truncated),
            (1, 1)
        );
        for lt in [101u32, 228, 229] {
            let (ev, _, _) = read_all(
                testfile::pcap(Endian::Big, 0xa1b2_c3d4, lt, &[(1, 0, &raw, 30)]),
                10,
            );
            assert_eq!(ev[0].link, LinkType::RawIp);
        }
        // FCS bits above the link type are ignored; an unknown link type is skipped, counted.
        let (ev, _, _) = read_all(
            testfile::pcap(
                Endian::Little,
                0xa1b2_c3d4,
                0x1000_0001,
                &[(1, 0, &raw, 30)],
            ),
            10,
        );
        assert_eq!(ev[0].link, LinkType::Ethernet);
        let (ev, _, st) = read_all(
            testfile::pcap(Endian::Little, 0xa1b2_c3d4, 105, &[(1, 0, &raw, 30)]),
            10,
        );
        assert_eq!((ev.len(), st.skipped_linktype), (0, 1));
    }

    #[test]
    fn open_errors() {
        let err = |b: Vec<u8>| {
            FileSource::from_reader("f.bin", Box::new(io::Cursor::new(b)))
                .err()
                .unwrap()
                .to_string()
        };
        assert_eq!(err(vec![]), "f.bin is empty");
        assert_eq!(
            err(b"\x7fELF\x02\x01\x01\x00rest".to_vec()),
            "f.bin is not a pcap or pcapng file (first bytes 7f 45 4c 46 02 01 01 00)"
        );
        assert_eq!(
            err(b"ab".to_vec()),
            "f.bin is not a pcap or pcapng file (first bytes 61 62)"
        );
        assert_eq!(
            err(vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0]),
            "f.bin ends inside its file header (10 of 24 bytes)"
        );
        assert_eq!(
            err(vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4]),
            "f.bin is not a pcapng file: its section header has byte-order magic 0x04030201"
        );
        assert_eq!(
            err(vec![0x0a, 0x0d, 0x0d, 0x0a, 28]),
            "f.bin ends inside its file header (5 of 12 bytes)"
        );
        let missing = FileSource::open(Path::new("/nonexistent/x.pcap"))
            .err()
            .unwrap();
        assert!(matches!(missing, ReadError::Open { .. }), "{missing}");
    }

    /// A section with one Ethernet interface and `n` small packets.
    fn simple_file(n: usize) -> Ng {
        let mut ng = Ng::new(Endian::Little);
        ng.shb(1);
        ng.idb(1, 0, &[(9, &[9])]);
        for i in 0..n {
            ng.epb(
                0,
                i as u64,
                &eth_ipv4_udp(42 + i, i as u8),
                100,
                &[(1, KERNEL.as_bytes())],
                true,
            );
        }
        ng
    }

    #[test]
    fn corrupt_blocks_are_counted_and_skipped() {
        let mut ng = simple_file(1);
        // Trailer disagrees with the header: skipped, reading goes on.
        let mut bad = Vec::new();
        bad.extend_from_slice(&6u32.to_le_bytes());
        bad.extend_from_slice(&16u32.to_le_bytes());
        bad.extend_from_slice(&[0; 4]);
        bad.extend_from_slice(&20u32.to_le_bytes());
        ng.buf.extend_from_slice(&bad);
        // EPB whose captured length runs past the block.
        let mut epb = Vec::new();
        epb.extend_from_slice(&[0; 12]);
        epb.extend_from_slice(&1000u32.to_le_bytes());
        epb.extend_from_slice(&[0; 8]);
        ng.block(6, &epb, false);
        // EPB naming interface 4.
        ng.epb(4, 0, &[1, 2, 3], 3, &[], false);
        // EPB whose options run past the block: still a packet.
        let mut e2 = Vec::new();
        e2.extend_from_slice(&[0; 12]);
        e2.extend_from_slice(&4u32.to_le_bytes());
        e2.extend_from_slice(&4u32.to_le_bytes());
        e2.extend_from_slice(&[9, 9, 9, 9]);
        e2.extend_from_slice(&[1, 0, 200, 0, b'x', 0, 0, 0]);
        ng.block(6, &e2, true);
        // Blocks before an unsupported section version are used; after it, skipped.
        ng.shb(2);
        ng.idb(1, 0, &[]);
        ng.epb(0, 0, &[1, 2, 3, 4], 4, &[], false);
        ng.shb(1);
        ng.epb(0, 0, &[1, 2, 3, 4], 4, &[], false);
        let (ev, _, st) = read_all(ng.buf, 100);
        assert_eq!(ev.len(), 2);
        assert_eq!(&ev[1].data[..], &[9, 9, 9, 9]);
        assert_eq!(
            st,
            ReadStats {
                packets: 2,
                bytes: 42 + 4,
                sections: 2,
                interfaces: 1,
                kernel_comments_seen: 1,
                skipped_unknown_interface: 2,
                blocks_in_bad_section: 3,
                corrupt_block: 1,
                corrupt_trailer: 1,
                corrupt_options: 1,
                ..ReadStats::default()
            }
        );
    }

    #[test]
    fn wild_lengths_stop() {
        for (len, what) in [(8u32, "short"), (14, "unaligned"), (0x7fff_fff0, "huge")] {
            let mut ng = simple_file(2);
            ng.buf.extend_from_slice(&6u32.to_le_bytes());
            ng.buf.extend_from_slice(&len.to_le_bytes());
            ng.buf.extend_from_slice(&[0; 64]);
            let (ev, _, st) = read_all(ng.buf, 100);
            assert_eq!(
                (ev.len(), st.corrupt_length, st.truncated_file),
                (2, 1, 0),
                "{what}"
            );
        }
        let mut f = testfile::pcap(Endian::Little, 0xa1b2_c3d4, 1, &[(1, 0, &[1, 2, 3], 3)]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        // A header snap length of 4 GiB does not make a 2 GiB record acceptable.
        f[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let (ev, _, st) = read_all(f, 100);
        assert_eq!((ev.len(), st.corrupt_length), (1, 1));
        // A sane but large length in a short file: the end of the file inside the block.
        let mut ng = simple_file(1);
        ng.buf.extend_from_slice(&6u32.to_le_bytes());
        ng.buf.extend_from_slice(&(60u32 << 20).to_le_bytes());
        ng.buf.extend_from_slice(&[0; 64]);
        let (ev, _, st) = read_all(ng.buf, 100);
        assert_eq!((ev.len(), st.corrupt_length, st.truncated_file), (1, 0, 1));
    }

    #[test]
    fn every_truncation_of_pcapng() {
        let ng = simple_file(5);
        let header_end = ng.ends[0];
        for n in 12..ng.buf.len() {
            let cut = ng.buf[..n].to_vec();
            let (ev, _, st) = read_all(cut, 3);
            let whole = ng
                .ends
                .iter()
                .zip(&ng.is_packet)
                .filter(|(e, p)| **p && **e <= n)
                .count();
            assert_eq!(ev.len(), whole, "cut at {n}");
            let at_boundary = n == 0 || ng.ends.contains(&n);
            assert_eq!(st.truncated_file, u64::from(!at_boundary), "cut at {n}");
            assert!(n >= header_end || ev.is_empty());
        }
    }

    #[test]
    fn every_truncation_of_pcap() {
        let recs: Vec<Vec<u8>> = (0..4).map(|i| eth_ipv4_udp(40 + i * 3, i as u8)).collect();
        let list: Vec<(u32, u32, &[u8], u32)> = recs
            .iter()
            .map(|r| (1, 2, &r[..], r.len() as u32))
            .collect();
        let f = testfile::pcap(Endian::Big, 0xa1b2_3c4d, 1, &list);
        let mut ends = vec![24usize];
        for r in &recs {
            ends.push(ends.last().unwrap() + 16 + r.len());
        }
        for n in 24..f.len() {
            let (ev, _, st) = read_all(f[..n].to_vec(), 2);
            assert_eq!(
                ev.len(),
                ends.iter().filter(|e| **e <= n).count() - 1,
                "cut at {n}"
            );
            assert_eq!(
                st.truncated_file,
                u64::from(!ends.contains(&n)),
                "cut at {n}"
            );
        }
    }

    #[test]
    fn long_runs_of_skipped_blocks_do_not_pile_up() {
        let mut ng = Ng::new(Endian::Little);
        ng.shb(1);
        ng.idb(105, 0, &[]); // 802.11: not decoded
        let frame = vec![0u8; 4000];
        for i in 0..600 {
            ng.epb(0, i, &frame, 4000, &[], false);
        }
        ng.idb(1, 0, &[(9, &[9])]);
        ng.epb(1, 77, &eth_ipv4_udp(60, 1), 60, &[], true);
        let s_len = ng.buf.len() as u64;
        let mut s = source(ng.buf);
        let mut b = Batch::default();
        assert_eq!(s.next_batch(&mut b, 10).unwrap(), 1);
        // 2.4 MB of skipped packets (more than CHUNK) were dropped mid-batch: the packet
        // after them must still be cut at the right offset.
        assert_eq!(&b.events[0].data[..], &eth_ipv4_udp(60, 1)[..]);
        assert_eq!(s.buf_offset, s_len);
        assert_eq!(b.events[0].ts_ns, 77);
        assert_eq!(s.next_batch(&mut b, 10).unwrap(), 0);
        assert_eq!((s.stats().skipped_linktype, s.stats().packets), (600, 1));
    }

    fn drain(bytes: Vec<u8>) {
        if let Ok(mut s) = FileSource::from_reader("fuzz", Box::new(io::Cursor::new(bytes))) {
            let mut b = Batch::default();
            for _ in 0..10_000 {
                match s.next_batch(&mut b, 4) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => b.events.clear(),
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            drain(bytes);
        }

        #[test]
        fn arbitrary_blocks_after_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
            big in any::<bool>(),
        ) {
            let mut ng = simple_file(1);
            if big {
                ng = Ng::new(Endian::Big);
                ng.shb(1);
                ng.idb(113, 0, &[]);
            }
            ng.buf.extend_from_slice(&tail);
            drain(ng.buf);
            for magic in [0xa1b2_c3d4u32, 0xa1b2_cd34] {
                let mut f = testfile::pcap(Endian::Little, magic, 276, &[]);
                f.extend_from_slice(&tail);
                drain(f);
            }
        }

        #[test]
        fn mutated_files_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            first in prop_oneof![Just(Endian::Little), Just(Endian::Big)],
        ) {
            let (mut f, _, _) = two_sections(first);
            for (at, v) in flips {
                let i = at % f.len();
                f[i] = v;
            }
            drain(f);
        }
    }
}
