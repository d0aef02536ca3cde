//! pcapng blocks: sections in both byte orders, interfaces (`if_tsresol`, `if_tsoffset`, our
//! `if_description` and `ifN@netnsM` names), enhanced, simple and obsolete packet blocks,
//! dropscope's kernel-table Custom Block; other blocks are skipped and counted.

use super::linktype::{framing, Framing};
use super::read_step::{make_packet, Pending, RawPacket, ReadStats, Step, MAX_BLOCK};
use crate::comment::{parse_comment, ParsedCause};
use crate::wire::{bytes_at, u16_at, u32_at, u64_at, Endian};

pub(super) const SHB_TYPE: u32 = 0x0A0D_0D0A;
pub(super) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
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

/// One interface of the current pcapng section.
#[derive(Clone, Copy, Debug)]
pub(super) struct Iface {
    pub(super) framing: Framing,
    pub(super) snaplen: u32,
    pub(super) resol: TsResol,
    /// Seconds added to every timestamp (`if_tsoffset`).
    pub(super) offset_s: i64,
    pub(super) ifindex: u32,
    pub(super) netns: u32,
}

#[derive(Default)]
pub(super) struct Pcapng {
    /// Byte order of the current section; `None` before the first section header.
    pub(super) endian: Option<Endian>,
    /// The current section's version is one we read.
    pub(super) supported: bool,
    pub(super) ifaces: Vec<Iface>,
    /// The data of the last dropscope kernel-table Custom Block (`crate::kernel::storm::BLOCK_PEN`).
    pub(super) kernel_table: Option<Vec<u8>>,
}

impl Pcapng {
    pub(super) fn step(&mut self, b: &[u8], stats: &mut ReadStats) -> Step {
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
pub(super) struct TsResol(u8);

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

/// `if7` or `if7@netns4026532281` (our default names) -> (ifindex, netns).
pub(super) fn parse_if_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("if")?;
    let (idx, netns) = match rest.split_once("@netns") {
        Some((i, n)) => (i, dec(n)?),
        None => (rest, 0),
    };
    Some((dec(idx)?, netns))
}

/// Our `if_description`: `ifindex 7 netns 4026532281`.
pub(super) fn parse_if_description(d: &str) -> Option<(u32, u32)> {
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
    use super::*;

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
}
