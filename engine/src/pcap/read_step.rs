//! What a format's parser hands the file source: one step over the unread bytes (need
//! more, skip, a packet, stop), the packet as its block gives it, and the link-type and
//! comment handling every format shares ([`make_packet`]); the counters of a read.
//!
//! The bytes are untrusted: nothing here indexes, unwraps or panics on them.

use super::linktype::{strip_cooked, strip_nflog, strip_null, CookedError, Framing};
use crate::comment::ParsedCause;
use crate::event::{Cause, LinkType};
use crate::wire::bytes_at;

/// No sane block or record is larger; a larger length means the file is corrupt.
pub(super) const MAX_BLOCK: usize = 64 << 20;

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

/// A packet found in the buffer, waiting for the batch's bytes to be frozen.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    /// Offset of the packet bytes: from the step's input while in [`Step::Packet`], then
    /// from the batch start.
    pub(super) off: usize,
    pub(super) len: usize,
    pub(super) ts_ns: u64,
    pub(super) orig_len: u32,
    pub(super) link: LinkType,
    pub(super) ifindex: u32,
    pub(super) netns: u32,
    pub(super) cause: Cause,
    pub(super) parsed: Option<ParsedCause>,
    /// A kernel drop's comment, for its drop-site symbol (see `comment::kernel_symbol`):
    /// offset (kept like `off` until the batch, but not moved by link-layer stripping) and
    /// length; 0: none.
    pub(super) sym_off: usize,
    pub(super) sym_len: usize,
}

/// What one parse step over the unconsumed bytes found.
pub(super) enum Step {
    /// At least this many bytes (from the step's input start) are needed.
    Need(usize),
    /// Consume this many bytes, no packet.
    Skip(usize),
    /// Consume this many bytes, one packet.
    Packet(usize, Pending),
    /// Reading cannot go on (counted).
    Stop,
}

/// A packet as its block gives it, before link-type handling.
pub(super) struct RawPacket {
    /// Offset of the packet bytes in the block (or record) slice.
    pub(super) off: usize,
    pub(super) len: usize,
    pub(super) orig_len: u32,
    pub(super) ts_ns: u64,
    pub(super) ifindex: u32,
    pub(super) netns: u32,
}

/// Applies the link type (stripping cooked headers) and the comment's cause; `None` when the
/// packet is skipped (counted).
pub(super) fn make_packet(
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
