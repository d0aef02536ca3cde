//! Kernel ring records: `engine::kernel::record::parse` on arbitrary bytes, then the event the
//! source would build from it and the packet summary of its bytes. Nothing may panic, and the
//! packet slice must lie inside the record.
#![no_main]

use engine::kernel::record;
use engine::kernel::source::{to_event, ClockOffset};
use engine::packet::{summarize, TunnelHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((ev, pkt)) = record::parse(data) {
        assert!(pkt.len() <= data.len());
        assert!(pkt.len() <= usize::from(ev.cap_len));
        let e = to_event(&ev, bytes::Bytes::copy_from_slice(pkt), ClockOffset::from_offset(0));
        let _ = summarize(&e.data, e.link, TunnelHint::ByPort);
    }
});
