//! Decoding one ring-buffer record: a [`KfreeSkbEvent`] followed by packet bytes.
//!
//! The record is untrusted. This module never creates a reference to a struct over ring
//! memory (one `read_unaligned` after a length check), never indexes or slices without a
//! bound check, and trusts neither `hdr_len` nor `cap_len`: the packet is the bytes present
//! after the fixed part, cut to `cap_len`.

use std::mem::size_of;

use capture_common::{KfreeSkbEvent, RecordHeader, ABI_VERSION, KIND_KFREE_SKB};

/// Size of the fixed part of a kfree_skb record.
pub const EVENT_LEN: usize = size_of::<KfreeSkbEvent>();
const HEADER_LEN: usize = size_of::<RecordHeader>();

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record too short: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    #[error("record has ABI version {version}, this build reads version {ABI_VERSION}")]
    BadVersion { version: u8 },
    #[error("record has unknown kind {kind}")]
    BadKind { kind: u8 },
    #[error("record header length {hdr_len} is shorter than the {EVENT_LEN}-byte event")]
    BadHeaderLen { hdr_len: u16 },
}

/// Splits a record into its event and its packet bytes.
pub fn parse(buf: &[u8]) -> Result<(KfreeSkbEvent, &[u8]), RecordError> {
    let have = buf.len();
    if have < HEADER_LEN {
        return Err(RecordError::TooShort {
            need: HEADER_LEN,
            have,
        });
    }
    let hdr: RecordHeader = read(buf).ok_or(RecordError::TooShort {
        need: HEADER_LEN,
        have,
    })?;
    if hdr.version != ABI_VERSION {
        return Err(RecordError::BadVersion {
            version: hdr.version,
        });
    }
    if hdr.kind != KIND_KFREE_SKB {
        return Err(RecordError::BadKind { kind: hdr.kind });
    }
    let ev: KfreeSkbEvent = read(buf).ok_or(RecordError::TooShort {
        need: EVENT_LEN,
        have,
    })?;
    let start = usize::from(ev.hdr.hdr_len);
    if start < EVENT_LEN {
        return Err(RecordError::BadHeaderLen {
            hdr_len: ev.hdr.hdr_len,
        });
    }
    let rest = buf.get(start..).unwrap_or_default();
    let n = rest.len().min(usize::from(ev.cap_len));
    Ok((ev, rest.get(..n).unwrap_or_default()))
}

/// Reads a plain-integer ABI struct from the start of `buf`, `None` if `buf` is shorter.
fn read<T: aya::Pod>(buf: &[u8]) -> Option<T> {
    if buf.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: `buf` holds at least size_of::<T>() bytes (checked above); read_unaligned has
    // no alignment requirement; T is Pod (only integers and byte arrays, no padding), so
    // every bit pattern is a valid T.
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// Encodes a record the way the kernel program does (tests and benches).
#[cfg(any(test, feature = "test-support"))]
pub fn encode(ev: &KfreeSkbEvent, packet: &[u8], out: &mut Vec<u8>) {
    // SAFETY: KfreeSkbEvent is repr(C) Pod without padding; viewing it as bytes is sound.
    let bytes =
        unsafe { std::slice::from_raw_parts((ev as *const KfreeSkbEvent).cast::<u8>(), EVENT_LEN) };
    out.extend_from_slice(bytes);
    out.extend_from_slice(packet);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(cap: u16) -> KfreeSkbEvent {
        KfreeSkbEvent {
            hdr: RecordHeader {
                version: ABI_VERSION,
                kind: KIND_KFREE_SKB,
                hdr_len: 48,
                cpu: 1,
                ts_ns: 99,
            },
            location: 0xffff_ffff_8100_1234,
            reason: 3,
            ifindex: 7,
            netns_ino: 4026531840,
            orig_len: 60,
            cap_len: cap,
            protocol: 0x0008,
            flags: 0,
            _pad: 0,
            net_off: 0,
        }
    }

    #[test]
    fn round_trip() {
        let pkt: Vec<u8> = (0..10).collect();
        let mut buf = Vec::new();
        encode(&sample(10), &pkt, &mut buf);
        assert_eq!(buf.len(), 58);
        let (ev, data) = parse(&buf).unwrap();
        assert_eq!(ev, sample(10));
        assert_eq!(data, &pkt[..]);
    }

    #[test]
    fn cap_len_larger_than_present_is_cut() {
        let mut buf = Vec::new();
        encode(&sample(500), &[1, 2, 3], &mut buf);
        let (ev, data) = parse(&buf).unwrap();
        assert_eq!(ev.cap_len, 500);
        assert_eq!(data, &[1, 2, 3]);
    }

    #[test]
    fn cap_len_smaller_than_present_wins() {
        let mut buf = Vec::new();
        encode(&sample(2), &[1, 2, 3], &mut buf);
        assert_eq!(parse(&buf).unwrap().1, &[1, 2]);
    }

    #[test]
    fn larger_hdr_len_skips_unknown_fixed_fields() {
        let mut ev = sample(2);
        ev.hdr.hdr_len = 52;
        let mut buf = Vec::new();
        encode(&ev, &[9, 9, 9, 9, 1, 2], &mut buf);
        assert_eq!(parse(&buf).unwrap().1, &[1, 2]);
        ev.hdr.hdr_len = 4000;
        let mut buf = Vec::new();
        encode(&ev, &[1, 2], &mut buf);
        assert_eq!(parse(&buf).unwrap().1, &[] as &[u8]);
    }

    #[test]
    fn malformed_records() {
        let mut buf = Vec::new();
        encode(&sample(0), &[], &mut buf);
        let mut bad = buf.clone();
        bad[0] = 9;
        assert_eq!(parse(&bad), Err(RecordError::BadVersion { version: 9 }));
        let mut bad = buf.clone();
        bad[1] = 7;
        assert_eq!(parse(&bad), Err(RecordError::BadKind { kind: 7 }));
        let mut bad = buf.clone();
        bad[2] = 20;
        assert_eq!(parse(&bad), Err(RecordError::BadHeaderLen { hdr_len: 20 }));
        assert_eq!(
            parse(&buf[..10]),
            Err(RecordError::TooShort { need: 16, have: 10 })
        );
        assert_eq!(
            parse(&buf[..30]),
            Err(RecordError::TooShort { need: 48, have: 30 })
        );
    }

    #[test]
    fn every_truncation_length() {
        let mut buf = Vec::new();
        encode(&sample(5), &[1, 2, 3, 4, 5], &mut buf);
        for n in 0..buf.len() {
            let r = parse(&buf[..n]);
            if n < 16 {
                assert_eq!(r, Err(RecordError::TooShort { need: 16, have: n }));
            } else if n < 48 {
                assert_eq!(r, Err(RecordError::TooShort { need: 48, have: n }));
            } else {
                let (_, data) = r.unwrap();
                assert_eq!(data, &[1, 2, 3, 4, 5][..n - 48]);
            }
        }
    }

    #[test]
    fn unaligned_input() {
        let mut buf = vec![0u8];
        encode(&sample(1), &[42], &mut buf);
        let (ev, data) = parse(&buf[1..]).unwrap();
        assert_eq!(ev.location, 0xffff_ffff_8100_1234);
        assert_eq!(data, &[42]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((ev, pkt)) = parse(&data) {
                prop_assert!(pkt.len() <= usize::from(ev.cap_len));
                prop_assert!(pkt.len() + EVENT_LEN <= data.len());
            }
        }

        #[test]
        fn valid_header_arbitrary_rest(rest in proptest::collection::vec(any::<u8>(), 0..100), cap in any::<u16>()) {
            let mut buf = Vec::new();
            encode(&sample(cap), &rest, &mut buf);
            let (_, pkt) = parse(&buf).unwrap();
            prop_assert_eq!(pkt.len(), rest.len().min(usize::from(cap)));
        }
    }
}
