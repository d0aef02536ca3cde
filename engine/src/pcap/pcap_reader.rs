//! Classic pcap records (both byte orders, microsecond and nanosecond magics, Kuznetsov's
//! "modified" records with their interface index), one step at a time.

use super::linktype::Framing;
use super::read_step::{make_packet, RawPacket, ReadStats, Step, MAX_BLOCK};
use crate::wire::{u32_in, Endian};

/// A record header's fields (16 bytes; Kuznetsov's adds 8: interface index, protocol,
/// packet type).
mod field {
    use crate::wire::Field;
    pub const TS_SEC: Field = 0..4;
    /// Microseconds, or nanoseconds with the nanosecond magic.
    pub const TS_FRAC: Field = 4..8;
    pub const CAPLEN: Field = 8..12;
    pub const ORIG_LEN: Field = 12..16;
    pub const IFINDEX: Field = 16..20;
}

pub(super) struct Pcap {
    pub(super) endian: Endian,
    pub(super) nanos: bool,
    pub(super) record_len: usize,
    pub(super) framing: Framing,
}

impl Pcap {
    pub(super) fn step(&mut self, b: &[u8], stats: &mut ReadStats) -> Step {
        let e = self.endian;
        let h = self.record_len;
        let (Some(sec), Some(frac), Some(caplen), Some(orig)) = (
            u32_in(b, field::TS_SEC, e),
            u32_in(b, field::TS_FRAC, e),
            u32_in(b, field::CAPLEN, e),
            u32_in(b, field::ORIG_LEN, e),
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
            u32_in(b, field::IFINDEX, e).unwrap_or(0)
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
