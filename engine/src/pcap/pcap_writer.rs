//! The classic pcap sink: nanosecond magic, one Ethernet link type for the whole file.
//!
//! Format: <https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html>. Raw-IP packets get
//! a synthesised Ethernet header (zero MACs, ethertype from the IP version) so both link types
//! share one file. Comments and interfaces cannot be stored: comments are counted as dropped.
//! The packet path must not allocate.

use hashbrown::HashSet;

use super::linktype::{frame, ETHERNET};
use super::output::TmpFile;
use super::{IfaceCache, IfaceKey, OutPacket, PacketWriter, WriteError, WriterStats};

const MAGIC_NS: u32 = 0xa1b2_3c4d;

pub(super) struct PcapWriter {
    out: TmpFile,
    snaplen: u32,
    ifaces: HashSet<IfaceKey>,
    recent: IfaceCache<()>,
    stats: WriterStats,
}

impl PcapWriter {
    pub(super) fn new(mut out: TmpFile, snaplen: u32) -> Result<Self, WriteError> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&u32::from(ETHERNET).to_le_bytes());
        out.put(&h)?;
        Ok(PcapWriter {
            out,
            snaplen,
            ifaces: HashSet::new(),
            recent: IfaceCache::default(),
            stats: WriterStats::default(),
        })
    }

    fn note_iface(&mut self, key: &IfaceKey) {
        if self.recent.get(key).is_none() {
            if self.ifaces.insert(*key) {
                self.stats.ifaces += 1;
            }
            self.recent.put(*key, ());
        }
    }
}

impl PacketWriter for PcapWriter {
    fn write(
        &mut self,
        p: &OutPacket<'_>,
        _iface_name: &dyn Fn(&IfaceKey) -> String,
    ) -> Result<(), WriteError> {
        self.note_iface(&p.iface);
        if p.comment.is_some() {
            self.stats.comments_dropped += 1;
        }
        let f = frame(
            p.data,
            p.orig_len,
            p.iface.link,
            true,
            self.snaplen as usize,
        );
        self.stats.truncated_to_snaplen += u64::from(f.truncated);
        self.stats.raw_unknown_version += u64::from(f.unknown_version);
        // Bounded by MAX_FILE_SNAPLEN.
        let cap = f.cap_len() as u32;
        let secs = (p.ts_ns / 1_000_000_000).min(u64::from(u32::MAX)) as u32;
        let nanos = (p.ts_ns % 1_000_000_000) as u32;

        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&nanos.to_le_bytes());
        h[8..12].copy_from_slice(&cap.to_le_bytes());
        h[12..16].copy_from_slice(&f.orig_len.to_le_bytes());
        let out = self.out.block(h.len() + f.cap_len())?;
        out.extend_from_slice(&h);
        out.extend_from_slice(f.prefix());
        out.extend_from_slice(f.data);
        self.stats.packets += 1;
        self.stats.bytes += u64::from(cap);
        self.out.packet_added(u64::from(cap));
        Ok(())
    }

    fn file_bytes(&self) -> u64 {
        self.out.written()
    }

    fn finish(self: Box<Self>) -> Result<WriterStats, WriteError> {
        let mut stats = self.stats;
        stats.file_bytes = self.out.written();
        self.out.settle(&mut stats);
        self.out.commit()?;
        Ok(stats)
    }

    fn disk_full(&self) -> Option<String> {
        self.out.full()
    }
}
