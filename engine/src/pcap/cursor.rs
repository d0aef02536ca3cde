//! Checked reads of fixed-size integers from capture-file bytes in either byte order.
//!
//! Every read returns `None` when the bytes are not there; nothing here indexes or panics.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endian {
    Little,
    Big,
}

/// `len` bytes at `at`, if present.
#[inline]
pub(super) fn bytes_at(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

#[inline]
pub(super) fn u16_at(b: &[u8], at: usize, e: Endian) -> Option<u16> {
    let a: [u8; 2] = bytes_at(b, at, 2)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u16::from_le_bytes(a),
        Endian::Big => u16::from_be_bytes(a),
    })
}

#[inline]
pub(super) fn u32_at(b: &[u8], at: usize, e: Endian) -> Option<u32> {
    let a: [u8; 4] = bytes_at(b, at, 4)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u32::from_le_bytes(a),
        Endian::Big => u32::from_be_bytes(a),
    })
}

#[inline]
pub(super) fn u64_at(b: &[u8], at: usize, e: Endian) -> Option<u64> {
    let a: [u8; 8] = bytes_at(b, at, 8)?.try_into().ok()?;
    Some(match e {
        Endian::Little => u64::from_le_bytes(a),
        Endian::Big => u64::from_be_bytes(a),
    })
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
    }
}
