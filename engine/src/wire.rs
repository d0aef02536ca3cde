//! The one reader of untrusted bytes: checked reads of fixed-size integers in a given byte
//! order, at an offset or over a named field range, in the style of smoltcp's `wire`
//! modules (each format names its fields: `const CAPLEN: Field = 8..12;`).
//!
//! Capture files, BTF, Cilium notifications and raw Cilium records read through it (the gob
//! decoder's cursor reads gob's own variable-length integers over the same bytes). Every
//! read returns `None` when the bytes are not there; nothing here indexes or panics.

/// A field's bytes within its header or record.
pub type Field = core::ops::Range<usize>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
    /// The host's order (Cilium's notifications are written by the datapath in it).
    Native,
}

/// `f`'s bytes, if present.
#[inline]
pub fn field(b: &[u8], f: Field) -> Option<&[u8]> {
    b.get(f)
}

#[inline]
pub fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// `len` bytes at `at`, if present.
#[inline]
pub fn bytes_at(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

#[inline]
pub fn u16_at(b: &[u8], at: usize, e: Endian) -> Option<u16> {
    let a: [u8; 2] = bytes_at(b, at, 2)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u16::from_le_bytes(a),
        Endian::Big => u16::from_be_bytes(a),
        Endian::Native => u16::from_ne_bytes(a),
    })
}

/// The u16 in field `f` (which is 2 bytes long).
#[inline]
pub fn u16_in(b: &[u8], f: Field, e: Endian) -> Option<u16> {
    debug_assert_eq!(f.len(), 2);
    u16_at(b, f.start, e)
}

#[inline]
pub fn u32_at(b: &[u8], at: usize, e: Endian) -> Option<u32> {
    let a: [u8; 4] = bytes_at(b, at, 4)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u32::from_le_bytes(a),
        Endian::Big => u32::from_be_bytes(a),
        Endian::Native => u32::from_ne_bytes(a),
    })
}

/// The u32 in field `f` (which is 4 bytes long).
#[inline]
pub fn u32_in(b: &[u8], f: Field, e: Endian) -> Option<u32> {
    debug_assert_eq!(f.len(), 4);
    u32_at(b, f.start, e)
}

#[inline]
pub fn u64_at(b: &[u8], at: usize, e: Endian) -> Option<u64> {
    let a: [u8; 8] = bytes_at(b, at, 8)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u64::from_le_bytes(a),
        Endian::Big => u64::from_be_bytes(a),
        Endian::Native => u64::from_ne_bytes(a),
    })
}

/// The u64 in field `f` (which is 8 bytes long).
#[inline]
pub fn u64_in(b: &[u8], f: Field, e: Endian) -> Option<u64> {
    debug_assert_eq!(f.len(), 8);
    u64_at(b, f.start, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 0, Endian::Little), Some(0x0201));
        assert_eq!(u16_at(&b, 0, Endian::Big), Some(0x0102));
        assert_eq!(u32_at(&b, 4, Endian::Big), Some(0x05060708));
        assert_eq!(u64_at(&b, 0, Endian::Little), Some(0x0807060504030201));
        assert_eq!(u32_at(&b, 5, Endian::Big), None);
        assert_eq!(u16_at(&b, usize::MAX, Endian::Big), None);
        assert_eq!(bytes_at(&b, 8, 0), Some(&[][..]));
        assert_eq!(bytes_at(&b, 9, 0), None);
        assert_eq!(u32_in(&b, 4..8, Endian::Big), Some(0x05060708));
        assert_eq!(u32_in(&b, 6..10, Endian::Big), None);
        assert_eq!(
            u16_at(&b, 0, Endian::Native),
            Some(u16::from_ne_bytes([1, 2]))
        );
        assert_eq!((u8_at(&b, 7), u8_at(&b, 8)), (Some(8), None));
        assert_eq!(field(&b, 2..4), Some(&[3u8, 4][..]));
    }
}
