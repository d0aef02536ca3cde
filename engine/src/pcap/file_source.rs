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

use super::cursor::{bytes_at, u16_at, u32_at, u64_at, Endian};
use super::linktype::{framing, strip_cooked, strip_nflog, strip_null, CookedError, Framing};
use crate::comment::{parse_comment, ParsedCause};
use crate::event::{Batch, Cause, Event, LinkType};

/// Size of the buffers the file is read into; each batch's events point into one of them.
/// Large enough for few reads, small enough that the batches in flight stay in cache-sized
/// pieces and a buffer is rarely shared by two batches.
const CHUNK: usize = 256 << 10;
/// ... the first buffer: small files (and fuzz inputs) need no large one.
const FIRST_CHUNK: usize = 64 << 10;
/// Buffers kept for reuse once the batches that pointed into them are gone.
const POOL: usize = 32;
/// No sane block or record is larger; a larger length means the file is corrupt.
const MAX_BLOCK: usize = 64 << 20;

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const IDB_TYPE: u32 = 1;
const PB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const NRB_TYPE: u32 = 4;
const ISB_TYPE: u32 = 5;
const EPB_TYPE: u32 = 6;
const DSB_TYPE: u32 = 0x0A;
const CUSTOM_TYPES: [u32; 2] = [0x0BAD, 0x4000_0BAD];

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_TSOFFSET: u16 = 14;

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

/// What the reader saw and skipped. Every packet or block not turned into an event is in one
/// of the counters [`ReadStats::skipped`] lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Events produced.
    pub packets: u64,
    /// Packet bytes in those events.
    pub bytes: u64,
    /// pcapng section header blocks read.
    pub sections: u64,
    /// pcapng interface description blocks read.
    pub interfaces: u64,
    /// Packets whose comment parsed as a kernel drop.
    pub kernel_comments_seen: u64,
    /// Packets whose comment parsed as a Cilium drop.
    pub cilium_comments_seen: u64,
    /// Packets of a link type dropscope does not decode.
    pub skipped_linktype: u64,
    /// The first such link type, and whether others were skipped too.
    pub skipped_linktype_first: Option<u16>,
    pub skipped_linktype_mixed: bool,
    /// Linux cooked (SLL/SLL2) packets whose protocol is not IPv4 or IPv6.
    pub skipped_cooked_not_ip: u64,
    /// Linux cooked packets shorter than their cooked header.
    pub skipped_cooked_truncated: u64,
    /// pcapng packets naming an interface the section did not describe.
    pub skipped_unknown_interface: u64,
    /// pcapng blocks of a type this reader does not know.
    pub blocks_unknown: u64,
    /// pcapng blocks known but carrying no packet (statistics, name resolution, secrets,
    /// custom).
    pub blocks_ignored: u64,
    /// pcapng blocks in a section whose version this reader does not support.
    pub blocks_in_bad_section: u64,
    /// pcapng blocks whose content does not fit their length.
    pub corrupt_block: u64,
    /// pcapng blocks whose trailing length differs from the leading one.
    pub corrupt_trailer: u64,
    /// pcapng option lists that ran past their block (the block was still used).
    pub corrupt_options: u64,
    /// Section headers with a bad byte-order magic (reading stops).
    pub corrupt_section_header: u64,
    /// Block or record lengths that cannot be right (reading stops).
    pub corrupt_length: u64,
    /// The file ended inside a block or record (reading stops).
    pub truncated_file: u64,
}

impl ReadStats {
    /// Everything skipped, by reason.
    pub fn skipped(&self) -> [(&'static str, u64); 13] {
        [
            ("linktype", self.skipped_linktype),
            ("cooked_not_ip", self.skipped_cooked_not_ip),
            ("cooked_truncated", self.skipped_cooked_truncated),
            ("unknown_interface", self.skipped_unknown_interface),
            ("block_unknown", self.blocks_unknown),
            ("block_ignored", self.blocks_ignored),
            ("block_in_bad_section", self.blocks_in_bad_section),
            ("corrupt_block", self.corrupt_block),
            ("corrupt_trailer", self.corrupt_trailer),
            ("corrupt_options", self.corrupt_options),
            ("corrupt_section_header", self.corrupt_section_header),
            ("corrupt_length", self.corrupt_length),
            ("truncated_file", self.truncated_file),
        ]
    }
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

/// A packet found in the buffer, waiting for the batch's bytes to be frozen.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Offset of the packet bytes: from the step's input while in [`Step::Packet`], then
    /// from the batch start.
    off: usize,
    len: usize,
    ts_ns: u64,
    orig_len: u32,
    link: LinkType,
    ifindex: u32,
    netns: u32,
    cause: Cause,
    parsed: Option<ParsedCause>,
    /// A kernel drop's comment, for its drop-site symbol (see `comment::kernel_symbol`):
    /// offset (kept like `off` until the batch, but not moved by link-layer stripping) and
    /// length; 0: none.
    sym_off: usize,
    sym_len: usize,
}

/// What one parse step over the unconsumed bytes found.
enum Step {
    /// At least this many bytes (from the step's input start) are needed.
    Need(usize),
    /// Consume this many bytes, no packet.
    Skip(usize),
    /// Consume this many bytes, one packet.
    Packet(usize, Pending),
    /// Reading cannot go on (counted).
    Stop,
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

struct Pcap {
    endian: Endian,
    nanos: bool,
    record_len: usize,
    framing: Framing,
}

impl Pcap {
    fn step(&mut self, b: &[u8], stats: &mut ReadStats) -> Step {
        let e = self.endian;
        let h = self.record_len;
        let (Some(sec), Some(frac), Some(caplen), Some(orig)) = (
            u32_at(b, 0, e),
            u32_at(b, 4, e),
            u32_at(b, 8, e),
            u32_at(b, 12, e),
        ) else {
            return Step::Need(h);
        };
        let caplen = caplen as usize;
        // Records carry no marker to resync on: a wild length ends the read. (The header's
        // snap length is not trusted either: files exceed it, and it may be anything.)
        if caplen > MAX_BLOCK {
            stats.corrupt_length += 1;
            return Step::Stop;
        }
        let total = h + caplen;
        if b.len() < total {
            return Step::Need(total);
        }
        let ts_ns = u64::from(sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(if self.nanos {
                u64::from(frac)
            } else {
                u64::from(frac).saturating_mul(1000)
            });
        // Kuznetsov's records carry the interface index.
        let ifindex = if h == 24 {
            u32_at(b, 16, e).unwrap_or(0)
        } else {
            0
        };
        let raw = RawPacket {
            off: h,
            len: caplen,
            orig_len: orig,
            ts_ns,
            ifindex,
            netns: 0,
        };
        match make_packet(self.framing, raw, b, None, stats) {
            Some(p) => Step::Packet(total, p),
            None => Step::Skip(total),
        }
    }
}

/// One interface of the current pcapng section.
#[derive(Clone, Copy, Debug)]
struct Iface {
    framing: Framing,
    snaplen: u32,
    resol: TsResol,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
    ifindex: u32,
    netns: u32,
}

#[derive(Default)]
struct Pcapng {
    /// Byte order of the current section; `None` before the first section header.
    endian: Option<Endian>,
    /// The current section's version is one we read.
    supported: bool,
    ifaces: Vec<Iface>,
    /// The data of the last dropscope kernel-table Custom Block (`crate::kernel::storm::BLOCK_PEN`).
    kernel_table: Option<Vec<u8>>,
}

impl Pcapng {
    fn step(&mut self, b: &[u8], stats: &mut ReadStats) -> Step {
        let Some(raw_type) = u32_at(b, 0, Endian::Little) else {
            return Step::Need(12);
        };
        // The section header's type reads the same in both byte orders.
        let e = if raw_type == SHB_TYPE {
            let Some(bom) = u32_at(b, 8, Endian::Little) else {
                return Step::Need(12);
            };
            if bom == BYTE_ORDER_MAGIC {
                Endian::Little
            } else if bom.swap_bytes() == BYTE_ORDER_MAGIC {
                Endian::Big
            } else {
                stats.corrupt_section_header += 1;
                return Step::Stop;
            }
        } else {
            match self.endian {
                Some(e) => e,
                None => {
                    stats.corrupt_section_header += 1;
                    return Step::Stop;
                }
            }
        };
        let Some(block_type) = u32_at(b, 0, e) else {
            return Step::Need(12);
        };
        let Some(total) = u32_at(b, 4, e) else {
            return Step::Need(12);
        };
        let total = total as usize;
        if total < 12 || !total.is_multiple_of(4) || total > MAX_BLOCK {
            stats.corrupt_length += 1;
            return Step::Stop;
        }
        let Some(block) = b.get(..total) else {
            return Step::Need(total);
        };
        if u32_at(block, total - 4, e) != Some(total as u32) {
            stats.corrupt_trailer += 1;
            return Step::Skip(total);
        }
        // The body, between the two lengths; packet offsets below are from the block start.
        let body = block.get(8..total - 4).unwrap_or(&[]);
        if block_type == SHB_TYPE {
            self.section(body, e, stats);
            return Step::Skip(total);
        }
        if !self.supported {
            stats.blocks_in_bad_section += 1;
            return Step::Skip(total);
        }
        let packet = match block_type {
            IDB_TYPE => {
                self.interface(body, e, stats);
                None
            }
            EPB_TYPE => self.enhanced(body, e, stats, false),
            PB_TYPE => self.enhanced(body, e, stats, true),
            SPB_TYPE => self.simple(body, e, stats),
            NRB_TYPE | ISB_TYPE | DSB_TYPE => {
                stats.blocks_ignored += 1;
                None
            }
            t if CUSTOM_TYPES.contains(&t) => {
                match (u32_at(body, 0, e), body.get(4..)) {
                    (Some(crate::kernel::storm::BLOCK_PEN), Some(data))
                        if data.starts_with(crate::kernel::storm::BLOCK_MAGIC) =>
                    {
                        self.kernel_table = Some(data.to_vec());
                    }
                    _ => stats.blocks_ignored += 1,
                }
                None
            }
            _ => {
                stats.blocks_unknown += 1;
                None
            }
        };
        match packet {
            Some(mut p) => {
                p.off += 8;
                p.sym_off += 8;
                Step::Packet(total, p)
            }
            None => Step::Skip(total),
        }
    }

    fn section(&mut self, body: &[u8], e: Endian, stats: &mut ReadStats) {
        self.endian = Some(e);
        self.ifaces.clear();
        match u16_at(body, 4, e) {
            Some(1) => {
                self.supported = true;
                stats.sections += 1;
            }
            Some(_) => {
                // Another major version: its blocks may mean anything.
                self.supported = false;
                stats.blocks_in_bad_section += 1;
            }
            None => {
                self.supported = false;
                stats.corrupt_block += 1;
            }
        }
    }

    fn interface(&mut self, body: &[u8], e: Endian, stats: &mut ReadStats) {
        let (Some(linktype), Some(snaplen)) = (u16_at(body, 0, e), u32_at(body, 4, e)) else {
            // Packets naming this interface will be counted as unknown-interface.
            stats.corrupt_block += 1;
            return;
        };
        let id = self.ifaces.len() as u32;
        let mut iface = Iface {
            framing: framing(linktype),
            snaplen,
            resol: TsResol::MICROS,
            offset_s: 0,
            ifindex: id,
            netns: 0,
        };
        let mut from_description = false;
        let opts = body.get(8..).unwrap_or(&[]);
        let ok = for_each_option(opts, e, |code, value| match code {
            IF_TSRESOL => {
                if let Some(r) = value.first() {
                    iface.resol = TsResol(*r);
                }
            }
            IF_TSOFFSET => {
                if let Some(off) = u64_at(value, 0, e) {
                    iface.offset_s = off as i64;
                }
            }
            IF_NAME if !from_description => {
                if let Some((ifindex, netns)) =
                    std::str::from_utf8(value).ok().and_then(parse_if_name)
                {
                    iface.ifindex = ifindex;
                    iface.netns = netns;
                }
            }
            IF_DESCRIPTION => {
                if let Some((ifindex, netns)) = std::str::from_utf8(value)
                    .ok()
                    .and_then(parse_if_description)
                {
                    iface.ifindex = ifindex;
                    iface.netns = netns;
                    from_description = true;
                }
            }
            _ => {}
        });
        if !ok {
            stats.corrupt_options += 1;
        }
        stats.interfaces += 1;
        self.ifaces.push(iface);
    }

    /// An enhanced packet block, or the obsolete packet block when `obsolete`.
    /// Returns the packet with `off` relative to `body`.
    fn enhanced(
        &self,
        body: &[u8],
        e: Endian,
        stats: &mut ReadStats,
        obsolete: bool,
    ) -> Option<Pending> {
        let id = if obsolete {
            u16_at(body, 0, e).map(u32::from)
        } else {
            u32_at(body, 0, e)
        };
        let (Some(id), Some(hi), Some(lo), Some(caplen), Some(orig)) = (
            id,
            u32_at(body, 4, e),
            u32_at(body, 8, e),
            u32_at(body, 12, e),
            u32_at(body, 16, e),
        ) else {
            stats.corrupt_block += 1;
            return None;
        };
        let caplen = caplen as usize;
        let Some(data_end) = 20usize.checked_add(caplen).filter(|end| *end <= body.len()) else {
            stats.corrupt_block += 1;
            return None;
        };
        let Some(iface) = self.ifaces.get(id as usize) else {
            stats.skipped_unknown_interface += 1;
            return None;
        };
        let opts_at = data_end + super::pcapng_writer::pad4(caplen);
        let opts = body.get(opts_at..).unwrap_or(&[]);
        let mut parsed = None;
        let mut sym = (0usize, 0usize);
        let ok = for_each_option(opts, e, |code, value| {
            if code == OPT_COMMENT && parsed.is_none() {
                parsed = std::str::from_utf8(value).ok().and_then(parse_comment);
                if let Some(ParsedCause::Kernel { .. }) = parsed {
                    // Where the comment is (`value` lies inside `body`): its symbol is read
                    // once per location, when the events are made.
                    let at = value.as_ptr() as usize - body.as_ptr() as usize;
                    sym = (at, value.len());
                }
            }
        });
        if !ok {
            stats.corrupt_options += 1;
        }
        let units = (u64::from(hi) << 32) | u64::from(lo);
        let raw = RawPacket {
            off: 20,
            len: caplen,
            orig_len: orig,
            ts_ns: iface.resol.to_ns(units, iface.offset_s),
            ifindex: iface.ifindex,
            netns: iface.netns,
        };
        let mut p = make_packet(iface.framing, raw, body, parsed, stats)?;
        (p.sym_off, p.sym_len) = sym;
        Some(p)
    }

    fn simple(&self, body: &[u8], e: Endian, stats: &mut ReadStats) -> Option<Pending> {
        let Some(orig) = u32_at(body, 0, e) else {
            stats.corrupt_block += 1;
            return None;
        };
        let Some(iface) = self.ifaces.first() else {
            stats.skipped_unknown_interface += 1;
            return None;
        };
        let mut caplen = (orig as usize).min(body.len().saturating_sub(4));
        if iface.snaplen != 0 {
            caplen = caplen.min(iface.snaplen as usize);
        }
        let raw = RawPacket {
            off: 4,
            len: caplen,
            orig_len: orig,
            ts_ns: 0,
            ifindex: iface.ifindex,
            netns: iface.netns,
        };
        make_packet(iface.framing, raw, body, None, stats)
    }
}

/// Calls `f(code, value)` for each option up to `opt_endofopt`; false when the list ran past
/// the end of `opts`.
fn for_each_option(opts: &[u8], e: Endian, mut f: impl FnMut(u16, &[u8])) -> bool {
    let mut at = 0usize;
    while at < opts.len() {
        let (Some(code), Some(len)) = (u16_at(opts, at, e), u16_at(opts, at + 2, e)) else {
            return false;
        };
        if code == OPT_ENDOFOPT {
            return true;
        }
        let len = usize::from(len);
        let Some(value) = bytes_at(opts, at + 4, len) else {
            return false;
        };
        f(code, value);
        at += 4 + len + super::pcapng_writer::pad4(len);
    }
    true
}

/// A timestamp resolution as `if_tsresol` stores it: bit 7 clear, 10^-n s; set, 2^-n s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TsResol(u8);

impl TsResol {
    const MICROS: TsResol = TsResol(6);

    fn to_ns(self, units: u64, offset_s: i64) -> u64 {
        let exp = u32::from(self.0 & 0x7f);
        let ns: u128 = if self.0 & 0x80 == 0 {
            if exp <= 9 {
                u128::from(units) * 10u128.pow(9 - exp)
            } else {
                match 10u128.checked_pow(exp - 9) {
                    Some(d) => u128::from(units) / d,
                    None => 0,
                }
            }
        } else {
            (u128::from(units) * 1_000_000_000)
                .checked_shr(exp)
                .unwrap_or(0)
        };
        let ns = ns as i128 + i128::from(offset_s) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
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

/// A packet as its block gives it, before link-type handling.
struct RawPacket {
    /// Offset of the packet bytes in the block (or record) slice.
    off: usize,
    len: usize,
    orig_len: u32,
    ts_ns: u64,
    ifindex: u32,
    netns: u32,
}

/// Applies the link type (stripping cooked headers) and the comment's cause; `None` when the
/// packet is skipped (counted).
fn make_packet(
    fr: Framing,
    raw: RawPacket,
    block: &[u8],
    parsed: Option<ParsedCause>,
    stats: &mut ReadStats,
) -> Option<Pending> {
    let mut p = Pending {
        off: raw.off,
        len: raw.len,
        ts_ns: raw.ts_ns,
        orig_len: raw.orig_len,
        link: LinkType::Ethernet,
        ifindex: raw.ifindex,
        netns: raw.netns,
        cause: Cause::Captured,
        parsed,
        sym_off: 0,
        sym_len: 0,
    };
    match fr {
        Framing::Direct(link) => p.link = link,
        Framing::Sll | Framing::Sll2 | Framing::Null | Framing::Loop | Framing::Nflog => {
            // A header before the IP packet: (where the packet starts, its length, its
            // original length, the interface the header names).
            let data = bytes_at(block, raw.off, raw.len).unwrap_or(&[]);
            let stripped = match fr {
                Framing::Nflog => {
                    // NFLOG keeps no original length: the payload is it.
                    strip_nflog(data).map(|(at, len)| (at, len, len as u32, None))
                }
                Framing::Null | Framing::Loop => strip_null(data, fr == Framing::Loop).map(|at| {
                    let len = p.len.saturating_sub(at);
                    (at, len, p.orig_len.saturating_sub(at as u32), None)
                }),
                _ => strip_cooked(data, fr == Framing::Sll2).map(|c| {
                    let at = c.header_len;
                    let len = p.len.saturating_sub(at);
                    (at, len, p.orig_len.saturating_sub(at as u32), c.ifindex)
                }),
            };
            match stripped {
                Ok((at, len, orig_len, ifindex)) => {
                    p.link = LinkType::RawIp;
                    p.off += at;
                    p.len = len;
                    p.orig_len = orig_len;
                    if let Some(i) = ifindex {
                        p.ifindex = i;
                    }
                }
                Err(CookedError::Truncated) => {
                    stats.skipped_cooked_truncated += 1;
                    return None;
                }
                Err(CookedError::NotIp) => {
                    stats.skipped_cooked_not_ip += 1;
                    return None;
                }
            }
        }
        Framing::Unsupported(t) => {
            stats.skipped_linktype += 1;
            match stats.skipped_linktype_first {
                None => stats.skipped_linktype_first = Some(t),
                Some(f) if f != t => stats.skipped_linktype_mixed = true,
                Some(_) => {}
            }
            return None;
        }
    }
    match parsed {
        Some(ParsedCause::Kernel {
            reason,
            location,
            netns,
        }) => {
            stats.kernel_comments_seen += 1;
            p.cause = Cause::Kernel {
                reason,
                location,
                protocol: 0,
            };
            p.netns = netns;
        }
        Some(ParsedCause::Cilium {
            code,
            src_identity,
            dst_identity,
        }) => {
            // Our comment records the reason, identities and ifindex of a Cilium drop; the
            // rest of the notification is not in the file.
            stats.cilium_comments_seen += 1;
            p.cause = Cause::Cilium(crate::cilium_glue::drop_from_comment(
                code,
                src_identity,
                dst_identity,
                p.ifindex,
                p.orig_len,
            ));
        }
        None => {}
    }
    Some(p)
}

/// `if7` or `if7@netns4026532281` (our default names) -> (ifindex, netns).
fn parse_if_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("if")?;
    let (idx, netns) = match rest.split_once("@netns") {
        Some((i, n)) => (i, dec(n)?),
        None => (rest, 0),
    };
    Some((dec(idx)?, netns))
}

/// Our `if_description`: `ifindex 7 netns 4026532281`.
fn parse_if_description(d: &str) -> Option<(u32, u32)> {
    let rest = d.strip_prefix("ifindex ")?;
    let (idx, netns) = rest.split_once(" netns ")?;
    Some((dec(idx)?, dec(netns)?))
}

fn dec(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::testfile::{self, eth_ipv4_udp, ipv4_udp, Ng};
    use super::*;
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

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(TsResol(9).to_ns(5, 0), 5);
        assert_eq!(TsResol(6).to_ns(5, 0), 5000);
        assert_eq!(TsResol(0).to_ns(5, -1), 4_000_000_000);
        assert_eq!(TsResol(12).to_ns(5_000, 0), 5);
        assert_eq!(TsResol(127).to_ns(u64::MAX, 0), 0);
        assert_eq!(TsResol(0x80 | 1).to_ns(3, 0), 1_500_000_000);
        assert_eq!(TsResol(0x80 | 127).to_ns(u64::MAX, 0), 0);
        assert_eq!(TsResol(0).to_ns(u64::MAX, i64::MAX), u64::MAX);
        assert_eq!(TsResol(9).to_ns(1, i64::MIN), 0);
    }

    #[test]
    fn interface_names() {
        assert_eq!(parse_if_name("if7@netns4026532281"), Some((7, 4026532281)));
        assert_eq!(parse_if_name("if12"), Some((12, 0)));
        assert_eq!(parse_if_name("ifb0x"), None);
        assert_eq!(parse_if_name("veth1"), None);
        assert_eq!(parse_if_name("if7@netns"), None);
        assert_eq!(parse_if_description("ifindex 3 netns 9"), Some((3, 9)));
        assert_eq!(parse_if_description("ifindex 3"), None);
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
