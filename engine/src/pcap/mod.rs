//! Capture files: the pcapng and classic pcap sinks (`dropscope capture -w`) and the reader
//! behind `dropscope replay`.
//!
//! Writers take one [`OutPacket`] at a time and never allocate per packet: block headers are
//! built on the stack and copied into one large buffer. Output goes to `<path>.tmp` and is
//! renamed to `<path>` only by [`PacketWriter::finish`], so a crash or an error never leaves a
//! half-written file under the final name.
//!
//! The reader ([`FileSource`]) treats the file as untrusted: it never indexes or unwraps on
//! file bytes and never panics; a bad block is counted by kind in [`ReadStats`] and skipped.

mod file_source;
pub mod linktype;
mod output;
mod pcap_reader;
mod pcapng_reader;
mod read_step;
pub use output::is_special as output_is_special;
mod pcap_writer;
mod pcapng_writer;
pub mod rotate;

#[cfg(test)]
mod testfile;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use crate::event::LinkType;
pub use file_source::{FileSource, ReadError, SourceFormat};
pub use read_step::ReadStats;

/// The largest snap length the writers use; 0 (or anything larger) given to [`create`] means
/// this. It is what tcpdump and libpcap accept for Ethernet.
pub const MAX_FILE_SNAPLEN: u32 = 262_144;

/// The interface a packet was seen on. The pcapng writer makes one interface description per
/// distinct key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub netns: u32,
    pub link: LinkType,
}

/// One packet handed to a writer.
#[derive(Clone, Copy, Debug)]
pub struct OutPacket<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub iface: IfaceKey,
    /// Length of the whole packet on the wire (`data` may be shorter).
    pub orig_len: u32,
    /// Captured bytes, starting at the header `iface.link` names.
    pub data: &'a [u8],
    /// Text for the packet's `opt_comment` (see [`crate::comment`]).
    pub comment: Option<&'a str>,
    /// The pcapng `epb_flags` word (0: none written): the direction of an ordinary packet
    /// (01 inbound, 10 outbound). pcap files have no place for it.
    pub flags: u32,
}

impl<'a> OutPacket<'a> {
    /// An event as a file's packet, with its comment (none when empty) and, for an ordinary
    /// packet, its direction.
    pub fn of_event(e: &'a crate::event::Event, comment: &'a str) -> OutPacket<'a> {
        OutPacket {
            ts_ns: e.ts_ns,
            iface: IfaceKey {
                ifindex: e.ifindex,
                netns: e.netns,
                link: e.link,
            },
            orig_len: e.orig_len,
            data: &e.data,
            comment: (!comment.is_empty()).then_some(comment),
            flags: match e.cause {
                crate::event::Cause::Packet { dir } => dir.epb_flags(),
                _ => 0,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Pcapng,
    /// Classic libpcap format, nanosecond timestamps, Ethernet link type.
    Pcap,
}

/// What a writer did, returned by [`PacketWriter::finish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Packets written.
    pub packets: u64,
    /// Captured packet bytes written (after snap-length clamping, including any synthesised
    /// Ethernet headers).
    pub bytes: u64,
    /// Distinct interfaces seen (pcapng: interface description blocks written).
    pub ifaces: u64,
    /// Packets whose captured bytes were cut to the snap length.
    pub truncated_to_snaplen: u64,
    /// Comments not written because the format cannot carry them (classic pcap).
    pub comments_dropped: u64,
    /// Comments cut to the 65 532 bytes a pcapng option can hold.
    pub comments_truncated: u64,
    /// Raw-IP packets given an Ethernet header whose first nibble was neither 4 nor 6
    /// (ethertype 0 written).
    pub raw_unknown_version: u64,
    /// Bytes in the file.
    pub file_bytes: u64,
    /// Packets offered after the file system filled up (not in the file; `packets` counts
    /// only those in it).
    pub not_written: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// (The I/O error is part of the message, not a separate cause: said once.)
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the writer for {path} failed earlier and wrote nothing more")]
    Failed { path: PathBuf },
}

/// A capture-file sink. `iface_name` is called once per new interface to name it.
pub trait PacketWriter: Send {
    fn write(
        &mut self,
        p: &OutPacket<'_>,
        iface_name: &dyn Fn(&IfaceKey) -> String,
    ) -> Result<(), WriteError>;

    /// Appends an application's own data block (pcapng: a copyable Custom Block under
    /// `pen`); false when the format has no place for one (classic pcap).
    fn write_custom(&mut self, _pen: u32, _data: &[u8]) -> Result<bool, WriteError> {
        Ok(false)
    }

    /// Flushes, syncs nothing, and renames `<path>.tmp` to `<path>`.
    fn finish(self: Box<Self>) -> Result<WriterStats, WriteError>;

    /// Why the file stopped growing when its file system filled up (it is then kept, cut at
    /// its last complete block; see [`WriterStats::not_written`]).
    fn disk_full(&self) -> Option<String> {
        None
    }

    /// Bytes of the file so far (written or buffered): what `-C` rotation compares, as
    /// tcpdump compares `pcap_dump_ftell`. 0 when the writer does not say.
    fn file_bytes(&self) -> u64 {
        0
    }
}

/// Writer settings beyond format and snap length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Permission bits of a new file (before the umask): [`FILE_MODE`] unless `--file-mode`.
    pub mode: u32,
    /// pcapng: describe raw-IP interfaces as `LINKTYPE_RAW` and store raw-IP packets as they
    /// are. Off by default: tcpdump cannot read a pcapng file whose interfaces mix link types,
    /// so raw-IP packets get a synthesised 14-byte Ethernet header (zero MACs, ethertype from
    /// the IP version, `orig_len` + 14), as in classic pcap. Wireshark reads both.
    pub raw_ip_interfaces: bool,
}

/// Capture files hold other people's packets: owner-only unless asked otherwise.
pub const FILE_MODE: u32 = 0o600;

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            mode: FILE_MODE,
            raw_ip_interfaces: false,
        }
    }
}

/// Creates a writer for `path` (written as `<path>.tmp` until [`PacketWriter::finish`]), with
/// default [`WriterOptions`]. `snaplen` 0 means [`MAX_FILE_SNAPLEN`].
pub fn create(
    path: &Path,
    format: FileFormat,
    snaplen: u32,
) -> Result<Box<dyn PacketWriter>, WriteError> {
    create_with(path, format, snaplen, WriterOptions::default())
}

/// [`create`] with explicit options.
pub fn create_with(
    path: &Path,
    format: FileFormat,
    snaplen: u32,
    options: WriterOptions,
) -> Result<Box<dyn PacketWriter>, WriteError> {
    let out = output::TmpFile::create_with_mode(path, options.mode)?;
    let snaplen = effective_snaplen(snaplen);
    Ok(match format {
        FileFormat::Pcapng => Box::new(pcapng_writer::PcapngWriter::new(
            out,
            snaplen,
            options.raw_ip_interfaces,
        )?),
        FileFormat::Pcap => Box::new(pcap_writer::PcapWriter::new(out, snaplen)?),
    })
}

/// The default name of an interface in our files: `if7@netns4026532281` (or `if7` when the
/// namespace is unknown). [`FileSource`] parses it back.
pub fn default_iface_name(key: &IfaceKey) -> String {
    if key.netns == 0 {
        format!("if{}", key.ifindex)
    } else {
        format!("if{}@netns{}", key.ifindex, key.netns)
    }
}

/// A small direct-mapped cache in front of the writers' interface maps: drops interleave a
/// few interfaces, and a hash-map probe per packet showed in profiles.
struct IfaceCache<T: Copy> {
    slots: [Option<(IfaceKey, T)>; 16],
}

impl<T: Copy> Default for IfaceCache<T> {
    fn default() -> Self {
        IfaceCache { slots: [None; 16] }
    }
}

impl<T: Copy> IfaceCache<T> {
    fn slot(key: &IfaceKey) -> usize {
        (key.ifindex ^ key.netns.rotate_left(5) ^ key.link as u32) as usize % 16
    }

    #[inline]
    fn get(&self, key: &IfaceKey) -> Option<T> {
        match self.slots.get(Self::slot(key)) {
            Some(Some((k, v))) if k == key => Some(*v),
            _ => None,
        }
    }

    #[inline]
    fn put(&mut self, key: IfaceKey, v: T) {
        if let Some(s) = self.slots.get_mut(Self::slot(&key)) {
            *s = Some((key, v));
        }
    }
}

fn effective_snaplen(snaplen: u32) -> u32 {
    if snaplen == 0 {
        MAX_FILE_SNAPLEN
    } else {
        snaplen.min(MAX_FILE_SNAPLEN)
    }
}
