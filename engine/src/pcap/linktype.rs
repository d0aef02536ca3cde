//! Link-layer header type numbers (the `LINKTYPE_*` values stored in pcap and pcapng files),
//! the Linux "cooked" headers the reader strips, and the Ethernet header the writers put in
//! front of raw-IP packets.
//!
//! Values: <https://www.tcpdump.org/linktypes.html>. Header layouts:
//! <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html> and
//! <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html>.
//! Never panics on packet bytes.

use crate::event::LinkType;

pub const NULL: u16 = 0;
pub const ETHERNET: u16 = 1;
pub const LOOP: u16 = 108;
pub const NFLOG: u16 = 239;
pub const RAW: u16 = 101;
pub const LINUX_SLL: u16 = 113;
pub const IPV4: u16 = 228;
pub const IPV6: u16 = 229;
pub const LINUX_SLL2: u16 = 276;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

const SLL_LEN: usize = 16;
const SLL2_LEN: usize = 20;

/// The number a writer stores for `link`.
pub fn to_linktype(link: LinkType) -> u16 {
    match link {
        LinkType::Ethernet => ETHERNET,
        LinkType::RawIp => RAW,
    }
}

/// How the reader turns a file's link type into an event's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// Bytes are used as they are.
    Direct(LinkType),
    /// Strip a Linux cooked header; the payload is raw IP if its protocol says so.
    Sll,
    Sll2,
    /// BSD loopback: a 4-byte address family (NULL: in the capturing host's byte order;
    /// LOOP: big-endian), then the IP packet.
    Null,
    Loop,
    /// Linux NFLOG: a 4-byte header, then type-length-value attributes, one of which
    /// (`NFULA_PAYLOAD`) is the IP packet.
    Nflog,
    /// Not a link type dropscope decodes (its number).
    Unsupported(u16),
}

pub(super) fn framing(linktype: u16) -> Framing {
    match linktype {
        ETHERNET => Framing::Direct(LinkType::Ethernet),
        RAW | IPV4 | IPV6 => Framing::Direct(LinkType::RawIp),
        LINUX_SLL => Framing::Sll,
        LINUX_SLL2 => Framing::Sll2,
        NULL => Framing::Null,
        LOOP => Framing::Loop,
        NFLOG => Framing::Nflog,
        other => Framing::Unsupported(other),
    }
}

/// What the link types dropscope reads are, for messages.
pub const SUPPORTED: &str = "Ethernet (1), raw IP (101, 228, 229), Linux cooked (113, 276), BSD loopback (0, 108), NFLOG (239)";

/// A link type's name (tcpdump.org's list), for messages.
pub fn name(linktype: u16) -> &'static str {
    match linktype {
        NULL => "NULL/Loopback",
        ETHERNET => "Ethernet",
        6 => "IEEE 802.5 Token Ring",
        9 => "PPP",
        RAW => "raw IP",
        105 => "IEEE 802.11",
        LOOP => "OpenBSD loopback",
        LINUX_SLL => "Linux cooked (SLL)",
        127 => "IEEE 802.11 radiotap",
        147..=162 => "user-defined (USER0..15)",
        192 => "PPI",
        195 => "IEEE 802.15.4",
        220 => "Linux USB",
        IPV4 => "IPv4",
        IPV6 => "IPv6",
        NFLOG => "Linux NFLOG",
        253 => "Linux netlink",
        LINUX_SLL2 => "Linux cooked (SLL2)",
        _ => "unknown",
    }
}

/// Where the IP packet is in a BSD loopback frame: after its 4-byte family, when the family
/// is IPv4's or one of the IPv6 values (Linux 10, BSDs 24, 28, 30).
pub(super) fn strip_null(data: &[u8], big_endian: bool) -> Result<usize, CookedError> {
    let b: [u8; 4] = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(CookedError::Truncated)?;
    let family = if big_endian {
        u32::from_be_bytes(b)
    } else {
        // The capturing host's order, unknown here: the family is small, so the order that
        // gives a small number is the one.
        let le = u32::from_le_bytes(b);
        if le <= 0xffff {
            le
        } else {
            u32::from_be_bytes(b)
        }
    };
    match family {
        2 | 10 | 24 | 28 | 30 => Ok(4),
        _ => Err(CookedError::NotIp),
    }
}

/// `NFULA_PAYLOAD`: the attribute of an NFLOG frame that holds the packet.
const NFULA_PAYLOAD: u16 = 9;

/// Where the IP packet is in an NFLOG frame: (offset, length) of its `NFULA_PAYLOAD`
/// attribute's value. Attribute lengths and types are in the capturing host's byte order
/// (libpcap's description): little-endian is tried first, then big-endian.
pub(super) fn strip_nflog(data: &[u8]) -> Result<(usize, usize), CookedError> {
    // Header: address family, version (0), resource id.
    let family = *data.first().ok_or(CookedError::Truncated)?;
    if data.len() < 4 {
        return Err(CookedError::Truncated);
    }
    if family != 2 && family != 10 {
        return Err(CookedError::NotIp);
    }
    let walk = |le: bool| -> Result<(usize, usize), CookedError> {
        let mut at = 4usize;
        loop {
            let h = data.get(at..at + 4).ok_or(CookedError::Truncated)?;
            let [l0, l1, t0, t1] = *h else {
                return Err(CookedError::Truncated);
            };
            let (len, typ) = if le {
                (u16::from_le_bytes([l0, l1]), u16::from_le_bytes([t0, t1]))
            } else {
                (u16::from_be_bytes([l0, l1]), u16::from_be_bytes([t0, t1]))
            };
            let len = usize::from(len);
            if len < 4 || at + len > data.len() {
                return Err(CookedError::Truncated);
            }
            // (The type's top bits are netlink flags.)
            if typ & 0x3fff == NFULA_PAYLOAD {
                return Ok((at + 4, len - 4));
            }
            // Attributes are padded to 4 bytes.
            at += (len + 3) & !3;
        }
    };
    walk(true).or_else(|_| walk(false))
}

/// Why a cooked header could not be stripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CookedError {
    Truncated,
    NotIp,
}

/// What a cooked header told: where the IP header starts and, for SLL2, the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cooked {
    pub header_len: usize,
    pub ifindex: Option<u32>,
}

/// Reads a Linux cooked header (SLL when `v2` is false, else SLL2) at the start of `data`.
pub(super) fn strip_cooked(data: &[u8], v2: bool) -> Result<Cooked, CookedError> {
    let (proto_at, header_len) = if v2 { (0, SLL2_LEN) } else { (14, SLL_LEN) };
    if data.len() < header_len {
        return Err(CookedError::Truncated);
    }
    let proto = be16(data, proto_at).ok_or(CookedError::Truncated)?;
    if proto != ETHERTYPE_IPV4 && proto != ETHERTYPE_IPV6 {
        return Err(CookedError::NotIp);
    }
    let ifindex = if v2 {
        let b = data.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok());
        Some(u32::from_be_bytes(b.ok_or(CookedError::Truncated)?))
    } else {
        None
    };
    Ok(Cooked {
        header_len,
        ifindex,
    })
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(b.try_into().ok()?))
}

const ETH_LEN: usize = 14;

/// A packet as a writer stores it: an optional synthesised Ethernet header, then the data,
/// together cut to the snap length.
pub(super) struct Framed<'a> {
    eth: [u8; ETH_LEN],
    eth_len: usize,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// The snap length cut something off.
    pub truncated: bool,
    /// Raw IP whose version nibble was neither 4 nor 6 (ethertype 0 written).
    pub unknown_version: bool,
}

impl Framed<'_> {
    pub fn prefix(&self) -> &[u8] {
        self.eth.get(..self.eth_len).unwrap_or(&[])
    }

    pub fn cap_len(&self) -> usize {
        self.eth_len + self.data.len()
    }
}

/// Frames `data` (whose link type is `link`) for a file whose interface has link type
/// `to_ethernet ? ETHERNET : to_linktype(link)`; `snap` is at least 1.
pub(super) fn frame(
    data: &[u8],
    orig_len: u32,
    link: LinkType,
    to_ethernet: bool,
    snap: usize,
) -> Framed<'_> {
    let mut f = Framed {
        eth: [0; ETH_LEN],
        eth_len: 0,
        data,
        orig_len,
        truncated: false,
        unknown_version: false,
    };
    if to_ethernet && link == LinkType::RawIp {
        let ethertype = match data.first().map(|b| b >> 4) {
            Some(4) => ETHERTYPE_IPV4,
            Some(6) => ETHERTYPE_IPV6,
            _ => {
                f.unknown_version = true;
                0
            }
        };
        f.eth[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f.eth_len = ETH_LEN.min(snap);
        f.truncated = f.eth_len < ETH_LEN;
        f.orig_len = orig_len.saturating_add(ETH_LEN as u32);
    }
    let room = snap.saturating_sub(f.eth_len);
    if let Some(d) = data.get(..room) {
        if data.len() > room {
            f.data = d;
            f.truncated = true;
        }
    }
    // A packet is never shorter on the wire than what was captured of it.
    f.orig_len = f.orig_len.max(f.cap_len() as u32);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sll() {
        let mut h = [0u8; 16];
        h[14..16].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(
            strip_cooked(&h, false),
            Ok(Cooked {
                header_len: 16,
                ifindex: None
            })
        );
        h[14..16].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(strip_cooked(&h, false), Err(CookedError::NotIp));
        for n in 0..16 {
            assert_eq!(strip_cooked(&h[..n], false), Err(CookedError::Truncated));
        }
    }

    #[test]
    fn sll2() {
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&0x0800u16.to_be_bytes());
        h[4..8].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            strip_cooked(&h, true),
            Ok(Cooked {
                header_len: 20,
                ifindex: Some(7)
            })
        );
        for n in 0..20 {
            assert_eq!(strip_cooked(&h[..n], true), Err(CookedError::Truncated));
        }
    }

    #[test]
    fn frames() {
        let v4 = [0x45u8, 0, 0, 20];
        let f = frame(&v4, 20, LinkType::RawIp, true, 100);
        assert_eq!(f.prefix(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
        assert_eq!(
            (f.data, f.orig_len, f.cap_len(), f.truncated),
            (&v4[..], 34, 18, false)
        );
        let f = frame(&[0x60, 1, 2, 3], 4, LinkType::RawIp, true, 16);
        assert_eq!(f.prefix()[12..], [0x86, 0xdd]);
        assert_eq!(
            (f.data, f.orig_len, f.truncated),
            (&[0x60, 1][..], 18, true)
        );
        let f = frame(&[0x10], 1, LinkType::RawIp, true, 10);
        assert_eq!(
            (
                f.prefix().len(),
                f.data.len(),
                f.truncated,
                f.unknown_version
            ),
            (10, 0, true, true)
        );
        let f = frame(&v4, 2, LinkType::RawIp, false, 3);
        assert_eq!(
            (f.prefix().len(), f.data, f.orig_len, f.truncated),
            (0, &v4[..3], 3, true)
        );
        let f = frame(&v4, 2000, LinkType::Ethernet, true, 100);
        assert_eq!(
            (f.prefix().len(), f.data, f.orig_len, f.truncated),
            (0, &v4[..], 2000, false)
        );
    }

    #[test]
    fn loopback_and_nflog_headers() {
        // NULL in either byte order, LOOP big-endian; IPv6 as Linux and the BSDs number it.
        for (b, be) in [
            ([2u8, 0, 0, 0], false),
            ([0, 0, 0, 2], false),
            ([0, 0, 0, 30], true),
            ([24, 0, 0, 0], false),
            ([0, 0, 0, 10], true),
        ] {
            assert_eq!(strip_null(&b, be), Ok(4), "{b:?}");
        }
        assert_eq!(strip_null(&[7, 0, 0, 0], false), Err(CookedError::NotIp));
        assert_eq!(strip_null(&[0, 0, 0, 2], true), Ok(4));
        assert_eq!(strip_null(&[2, 0, 0, 0], true), Err(CookedError::NotIp));
        assert_eq!(strip_null(&[2, 0], false), Err(CookedError::Truncated));
        // NFLOG: header, a prefix attribute (type 10, 7 bytes padded to 8), the payload.
        let mut f = vec![2u8, 0, 0, 5];
        f.extend_from_slice(&[7, 0, 10, 0, b'a', b'b', b'c', 0]);
        f.extend_from_slice(&[24, 0, 9, 0]);
        f.extend_from_slice(&[0x45; 20]);
        assert_eq!(strip_nflog(&f), Ok((16, 20)));
        // The same, big-endian.
        let mut g = vec![10u8, 0, 0, 5];
        g.extend_from_slice(&[0, 7, 0, 10, b'a', b'b', b'c', 0]);
        g.extend_from_slice(&[0, 24, 0, 9]);
        g.extend_from_slice(&[0x60; 20]);
        assert_eq!(strip_nflog(&g), Ok((16, 20)));
        // No payload attribute, a length past the end, a family that is not IP.
        assert_eq!(strip_nflog(&f[..12]), Err(CookedError::Truncated));
        let mut h = f.clone();
        h[12] = 200;
        assert_eq!(strip_nflog(&h[..16]), Err(CookedError::Truncated));
        assert_eq!(
            strip_nflog(&[7, 0, 0, 0, 8, 0, 9, 0, 1, 2, 3, 4]),
            Err(CookedError::NotIp)
        );
        assert_eq!(name(0), "NULL/Loopback");
        assert_eq!(name(147), "user-defined (USER0..15)");
    }

    #[test]
    fn framings() {
        assert_eq!(framing(1), Framing::Direct(LinkType::Ethernet));
        for t in [101, 228, 229] {
            assert_eq!(framing(t), Framing::Direct(LinkType::RawIp));
        }
        assert_eq!(framing(113), Framing::Sll);
        assert_eq!(framing(276), Framing::Sll2);
        assert_eq!(framing(127), Framing::Unsupported(127));
        assert_eq!(framing(0), Framing::Null);
        assert_eq!(framing(108), Framing::Loop);
        assert_eq!(framing(239), Framing::Nflog);
        assert_eq!(to_linktype(LinkType::RawIp), 101);
    }
}
