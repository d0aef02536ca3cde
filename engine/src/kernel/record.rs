//! Decoding one ring-buffer record: a [`KfreeSkbEvent`] (a drop) or a [`PacketEvent`] (an
//! ordinary packet, `--packets`) followed by packet bytes.
//!
//! The record is untrusted. This module never creates a reference to a struct over ring
//! memory (one `read_unaligned` after a length check), never indexes or slices without a
//! bound check, and trusts neither `hdr_len` nor `cap_len`: the packet is the bytes present
//! after the fixed part, cut to `cap_len`.

use std::mem::size_of;

use capture_common::{
    KfreeSkbEvent, PacketEvent, RecordHeader, ABI_VERSION, KIND_KFREE_SKB, KIND_PACKET,
};

/// Size of the fixed part of a kfree_skb record.
pub const EVENT_LEN: usize = size_of::<KfreeSkbEvent>();
/// Size of the fixed part of a packet record.
pub const PACKET_EVENT_LEN: usize = size_of::<PacketEvent>();

/// One decoded record's fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Drop(KfreeSkbEvent),
    Packet(PacketEvent),
}

impl Record {
    pub fn header(&self) -> &RecordHeader {
        match self {
            Record::Drop(e) => &e.hdr,
            Record::Packet(p) => &p.hdr,
        }
    }
}
const HEADER_LEN: usize = size_of::<RecordHeader>();

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record too short: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    #[error("record has ABI version {version}, this build reads version {ABI_VERSION}")]
    BadVersion { version: u8 },
    #[error("record has unknown kind {kind}")]
    BadKind { kind: u8 },
    #[error("record header length {hdr_len} is shorter than its {need}-byte event")]
    BadHeaderLen { hdr_len: u16, need: usize },
}

/// Splits a kfree_skb record into its event and its packet bytes (any other kind is
/// `BadKind`).
pub fn parse(buf: &[u8]) -> Result<(KfreeSkbEvent, &[u8]), RecordError> {
    match parse_any(buf)? {
        (Record::Drop(ev), data) => Ok((ev, data)),
        (Record::Packet(p), _) => Err(RecordError::BadKind { kind: p.hdr.kind }),
    }
}

/// Splits a record of either kind into its fixed part and its packet bytes.
pub fn parse_any(buf: &[u8]) -> Result<(Record, &[u8]), RecordError> {
    let have = buf.len();
    let hdr: RecordHeader = read(buf).ok_or(RecordError::TooShort {
        need: HEADER_LEN,
        have,
    })?;
    if hdr.version != ABI_VERSION {
        return Err(RecordError::BadVersion {
            version: hdr.version,
        });
    }
    let (rec, need, cap_len) = match hdr.kind {
        KIND_KFREE_SKB => {
            let ev: KfreeSkbEvent = read(buf).ok_or(RecordError::TooShort {
                need: EVENT_LEN,
                have,
            })?;
            (Record::Drop(ev), EVENT_LEN, ev.cap_len)
        }
        KIND_PACKET => {
            let ev: PacketEvent = read(buf).ok_or(RecordError::TooShort {
                need: PACKET_EVENT_LEN,
                have,
            })?;
            (Record::Packet(ev), PACKET_EVENT_LEN, ev.cap_len)
        }
        kind => return Err(RecordError::BadKind { kind }),
    };
    let start = usize::from(hdr.hdr_len);
    if start < need {
        return Err(RecordError::BadHeaderLen {
            hdr_len: hdr.hdr_len,
            need,
        });
    }
    let rest = buf.get(start..).unwrap_or_default();
    let n = rest.len().min(usize::from(cap_len));
    Ok((rec, rest.get(..n).unwrap_or_default()))
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

/// Encodes a packet record the way the tc programs do (tests).
pub fn encode_packet(ev: &PacketEvent, packet: &[u8], out: &mut Vec<u8>) {
    // SAFETY: PacketEvent is repr(C) Pod without padding; viewing it as bytes is sound.
    let bytes = unsafe {
        std::slice::from_raw_parts((ev as *const PacketEvent).cast::<u8>(), PACKET_EVENT_LEN)
    };
    out.extend_from_slice(bytes);
    out.extend_from_slice(packet);
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
        assert_eq!(
            parse(&bad),
            Err(RecordError::BadHeaderLen {
                hdr_len: 20,
                need: 48
            })
        );
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

    fn packet(cap: u16) -> PacketEvent {
        PacketEvent {
            hdr: RecordHeader {
                version: ABI_VERSION,
                kind: KIND_PACKET,
                hdr_len: 40,
                cpu: 0,
                ts_ns: 7,
            },
            ifindex: 3,
            netns_ino: 4026532001,
            orig_len: 74,
            cap_len: cap,
            protocol: 0x0008,
            direction: capture_common::DIR_OUTBOUND,
            flags: 0,
            _pad: 0,
            mark: 0,
        }
    }

    #[test]
    fn packet_records_round_trip_and_every_truncation_fails_cleanly() {
        let mut buf = Vec::new();
        encode_packet(&packet(3), &[1, 2, 3], &mut buf);
        assert_eq!(buf.len(), 43);
        assert_eq!(
            parse_any(&buf),
            Ok((Record::Packet(packet(3)), &[1u8, 2, 3][..]))
        );
        // Not a drop.
        assert_eq!(parse(&buf), Err(RecordError::BadKind { kind: KIND_PACKET }));
        for n in 0..buf.len() {
            let r = parse_any(&buf[..n]);
            if n < 16 {
                assert_eq!(r, Err(RecordError::TooShort { need: 16, have: n }));
            } else if n < 40 {
                assert_eq!(r, Err(RecordError::TooShort { need: 40, have: n }));
            } else {
                assert_eq!(r.unwrap().1, &[1, 2, 3][..n - 40]);
            }
        }
        let mut bad = buf.clone();
        bad[2] = 39;
        assert_eq!(
            parse_any(&bad),
            Err(RecordError::BadHeaderLen {
                hdr_len: 39,
                need: 40
            })
        );
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
