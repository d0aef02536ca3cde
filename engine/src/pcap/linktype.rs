//! Link-layer header type numbers (the `LINKTYPE_*` values stored in pcap and pcapng files)
//! and the Linux "cooked" headers the reader strips.
//!
//! Values: <https://www.tcpdump.org/linktypes.html>. Header layouts:
//! <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html> and
//! <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html>.
//! Never panics on packet bytes.

use crate::event::LinkType;

pub const ETHERNET: u16 = 1;
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
    /// Not a link type dropscope decodes.
    Unsupported,
}

pub(super) fn framing(linktype: u16) -> Framing {
    match linktype {
        ETHERNET => Framing::Direct(LinkType::Ethernet),
        RAW | IPV4 | IPV6 => Framing::Direct(LinkType::RawIp),
        LINUX_SLL => Framing::Sll,
        LINUX_SLL2 => Framing::Sll2,
        _ => Framing::Unsupported,
    }
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
    fn framings() {
        assert_eq!(framing(1), Framing::Direct(LinkType::Ethernet));
        for t in [101, 228, 229] {
            assert_eq!(framing(t), Framing::Direct(LinkType::RawIp));
        }
        assert_eq!(framing(113), Framing::Sll);
        assert_eq!(framing(276), Framing::Sll2);
        assert_eq!(framing(127), Framing::Unsupported);
        assert_eq!(to_linktype(LinkType::RawIp), 101);
    }
}
