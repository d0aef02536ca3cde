//! The pcapng sink: one section, one interface description per [`IfaceKey`], one enhanced
//! packet block per packet with nanosecond timestamps and the drop cause in `opt_comment`.
//!
//! Format: <https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html>. Blocks are
//! written little-endian (the section header's byte-order magic says so). The packet path
//! must not allocate: each block header is built on the stack.
//!
//! libpcap (so tcpdump) refuses a pcapng file whose interfaces have different link types
//! ("an interface has a type 1 different from the type of the first interface", libpcap
//! 1.10). Unless [`super::WriterOptions::raw_ip_interfaces`] is set, raw-IP packets therefore
//! get a synthesised Ethernet header and every interface is Ethernet.

use hashbrown::HashMap;

use super::linktype::{frame, to_linktype, ETHERNET};
use super::output::TmpFile;
use super::{IfaceCache, IfaceKey, OutPacket, PacketWriter, WriteError, WriterStats};

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 0x0000_0001;
const EPB_TYPE: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
/// `epb_flags`: a 32-bit word whose low two bits are the direction (01 in, 10 out).
const EPB_FLAGS: u16 = 2;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;

/// Longest option value we write: the option length is 16 bits and the value is padded to 4.
pub(super) const MAX_OPTION_LEN: usize = 65_532;

const EPB_HEADER_LEN: usize = 28;
/// A Custom Block that may be copied to new files (pcapng spec, section 4.8).
const CUSTOM_COPYABLE_TYPE: u32 = 0x0000_0BAD;
const ZEROS: [u8; 4] = [0; 4];

pub(super) struct PcapngWriter {
    out: TmpFile,
    snaplen: u32,
    raw_ip_interfaces: bool,
    ifaces: HashMap<IfaceKey, u32>,
    /// Recently used interfaces, direct-mapped: most packets skip the hash map.
    recent: IfaceCache<u32>,
    stats: WriterStats,
}

impl PcapngWriter {
    pub(super) fn new(
        mut out: TmpFile,
        snaplen: u32,
        raw_ip_interfaces: bool,
    ) -> Result<Self, WriteError> {
        let appl = concat!("dropscope ", env!("CARGO_PKG_VERSION"));
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        // Section length unknown.
        body.extend_from_slice(&(-1i64).to_le_bytes());
        push_option(&mut body, SHB_USERAPPL, appl.as_bytes());
        push_option(&mut body, OPT_ENDOFOPT, &[]);
        out.put(&block(SHB_TYPE, &body))?;
        Ok(PcapngWriter {
            out,
            snaplen,
            raw_ip_interfaces,
            ifaces: HashMap::new(),
            recent: IfaceCache::default(),
            stats: WriterStats::default(),
        })
    }

    fn iface_id(
        &mut self,
        key: &IfaceKey,
        iface_name: &dyn Fn(&IfaceKey) -> String,
    ) -> Result<u32, WriteError> {
        if let Some(id) = self.recent.get(key) {
            return Ok(id);
        }
        let id = match self.ifaces.get(key) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.ifaces.len()).unwrap_or(u32::MAX);
                self.write_idb(key, &iface_name(key))?;
                self.ifaces.insert(*key, id);
                self.stats.ifaces += 1;
                id
            }
        };
        self.recent.put(*key, id);
        Ok(id)
    }

    fn write_idb(&mut self, key: &IfaceKey, name: &str) -> Result<(), WriteError> {
        let mut body = Vec::with_capacity(96);
        let linktype = if self.raw_ip_interfaces {
            to_linktype(key.link)
        } else {
            ETHERNET
        };
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&self.snaplen.to_le_bytes());
        push_option(
            &mut body,
            IF_NAME,
            truncate_utf8(name, MAX_OPTION_LEN).as_bytes(),
        );
        // The reader recovers ifindex and netns from this even when the name is a device name.
        let desc = format!("ifindex {} netns {}", key.ifindex, key.netns);
        push_option(&mut body, IF_DESCRIPTION, desc.as_bytes());
        push_option(&mut body, IF_TSRESOL, &[9]);
        push_option(&mut body, OPT_ENDOFOPT, &[]);
        self.out.put(&block(IDB_TYPE, &body))
    }
}

impl PacketWriter for PcapngWriter {
    fn write(
        &mut self,
        p: &OutPacket<'_>,
        iface_name: &dyn Fn(&IfaceKey) -> String,
    ) -> Result<(), WriteError> {
        let id = self.iface_id(&p.iface, iface_name)?;
        let f = frame(
            p.data,
            p.orig_len,
            p.iface.link,
            !self.raw_ip_interfaces,
            self.snaplen as usize,
        );
        self.stats.truncated_to_snaplen += u64::from(f.truncated);
        self.stats.raw_unknown_version += u64::from(f.unknown_version);
        let cap_len = f.cap_len();
        // Bounded by MAX_FILE_SNAPLEN.
        let cap = cap_len as u32;
        let comment = match p.comment {
            Some(c) if c.len() > MAX_OPTION_LEN => {
                self.stats.comments_truncated += 1;
                Some(truncate_utf8(c, MAX_OPTION_LEN))
            }
            c => c,
        };
        let data_pad = pad4(cap_len);
        let flags_len = if p.flags != 0 { 8 } else { 0 };
        let comment_len = comment.map_or(0, |c| 4 + c.len() + pad4(c.len()));
        let opts_len = if flags_len + comment_len > 0 {
            // the options + opt_endofopt
            flags_len + comment_len + 4
        } else {
            0
        };
        // At most 28 + 262144 + 3 + 8 + 65540 + 4: fits in u32.
        let total = (EPB_HEADER_LEN + cap_len + data_pad + opts_len + 4) as u32;

        let mut h = [0u8; EPB_HEADER_LEN];
        put_u32(&mut h, 0, EPB_TYPE);
        put_u32(&mut h, 4, total);
        put_u32(&mut h, 8, id);
        put_u32(&mut h, 12, (p.ts_ns >> 32) as u32);
        put_u32(&mut h, 16, p.ts_ns as u32);
        put_u32(&mut h, 20, cap);
        put_u32(&mut h, 24, f.orig_len);
        // The whole block, appended to the output buffer in place.
        let out = self.out.block(total as usize)?;
        out.extend_from_slice(&h);
        out.extend_from_slice(f.prefix());
        out.extend_from_slice(f.data);
        out.extend_from_slice(ZEROS.get(..data_pad).unwrap_or(&[]));
        if p.flags != 0 {
            let mut o = [0u8; 8];
            o[..2].copy_from_slice(&EPB_FLAGS.to_le_bytes());
            o[2..4].copy_from_slice(&4u16.to_le_bytes());
            o[4..].copy_from_slice(&p.flags.to_le_bytes());
            out.extend_from_slice(&o);
        }
        if let Some(c) = comment {
            let mut oh = [0u8; 4];
            oh[..2].copy_from_slice(&OPT_COMMENT.to_le_bytes());
            oh[2..].copy_from_slice(&(c.len() as u16).to_le_bytes());
            out.extend_from_slice(&oh);
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(ZEROS.get(..pad4(c.len())).unwrap_or(&[]));
        }
        if opts_len > 0 {
            // opt_endofopt
            out.extend_from_slice(&ZEROS);
        }
        out.extend_from_slice(&total.to_le_bytes());
        self.stats.packets += 1;
        self.stats.bytes += u64::from(cap);
        self.out.packet_added(u64::from(cap));
        Ok(())
    }

    fn write_custom(&mut self, pen: u32, data: &[u8]) -> Result<bool, WriteError> {
        if data.len() > (64 << 20) - 64 {
            return Ok(false);
        }
        let mut body = Vec::with_capacity(8 + data.len());
        body.extend_from_slice(&pen.to_le_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(ZEROS.get(..pad4(data.len())).unwrap_or(&[]));
        // 0x00000BAD: a Custom Block that rewriters may copy.
        self.out.put(&block(CUSTOM_COPYABLE_TYPE, &body))?;
        Ok(true)
    }

    fn file_bytes(&self) -> u64 {
        self.out.written()
    }

    fn finish(mut self: Box<Self>) -> Result<WriterStats, WriteError> {
        if self.ifaces.is_empty() {
            // A file without packets still gets one interface: tcpdump (libpcap) refuses a
            // pcapng file that has no Interface Description Block at all.
            let none = IfaceKey {
                ifindex: 0,
                netns: 0,
                link: crate::event::LinkType::Ethernet,
            };
            self.write_idb(&none, "none")?;
        }
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

/// Writes `v` little-endian at `at`; callers pass offsets inside `buf`.
#[inline]
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

#[inline]
pub(super) fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

fn push_option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = value.get(..MAX_OPTION_LEN).unwrap_or(value);
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    body.extend_from_slice(ZEROS.get(..pad4(value.len())).unwrap_or(&[]));
}

/// A whole block: type, total length, `body` (already padded), total length.
fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut b = Vec::with_capacity(12 + body.len());
    b.extend_from_slice(&block_type.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_truncation() {
        assert_eq!(
            [pad4(0), pad4(1), pad4(2), pad4(3), pad4(4)],
            [0, 3, 2, 1, 0]
        );
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 3), "abc");
    }

    #[test]
    fn option_layout() {
        let mut b = Vec::new();
        push_option(&mut b, 2, b"veth1");
        assert_eq!(b, [2, 0, 5, 0, b'v', b'e', b't', b'h', b'1', 0, 0, 0]);
        let blk = block(1, &b);
        assert_eq!(blk.len(), 24);
        assert_eq!(blk[4..8], 24u32.to_le_bytes());
        assert_eq!(blk[20..24], 24u32.to_le_bytes());
    }
}
