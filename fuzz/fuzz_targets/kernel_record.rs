//! Kernel ring records: `engine::kernel::record::parse_any` on arbitrary bytes (drops and
//! `--packets` records), then the event the source would build from it and the packet
//! summary of its bytes. Nothing may panic, and the packet slice must lie inside the record.
#![no_main]

use engine::kernel::record::{self, Record};
use engine::kernel::source::{packet_event, to_event, ClockOffset};
use engine::packet::{summarize, TunnelHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((rec, pkt)) = record::parse_any(data) {
        assert!(pkt.len() <= data.len());
        let bytes = bytes::Bytes::copy_from_slice(pkt);
        let e = match rec {
            Record::Drop(ev) => {
                assert!(pkt.len() <= usize::from(ev.cap_len));
                to_event(&ev, bytes, ClockOffset::from_offset(0))
            }
            Record::Packet(ev) => {
                assert!(pkt.len() <= usize::from(ev.cap_len));
                packet_event(&ev, bytes, ClockOffset::from_offset(0))
            }
        };
        let _ = summarize(&e.data, e.link, TunnelHint::ByPort);
    }
});
