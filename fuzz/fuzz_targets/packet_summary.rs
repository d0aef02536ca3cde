//! Packet headers: `engine::packet::summarize` on arbitrary bytes for both link types and
//! every tunnel hint. Nothing may panic; a prefix never decodes to more layers than the whole.
#![no_main]

use engine::event::LinkType;
use engine::packet::{summarize, TunnelHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cfg, pkt)) = data.split_first() else { return };
    let link = if cfg & 1 == 0 { LinkType::Ethernet } else { LinkType::RawIp };
    let hint = match (cfg >> 1) & 3 {
        0 => TunnelHint::ByPort,
        1 => TunnelHint::Vxlan,
        2 => TunnelHint::Geneve,
        _ => TunnelHint::None,
    };
    let whole = summarize(pkt, link, hint);
    if whole.stop.is_none() && !pkt.is_empty() {
        let part = summarize(&pkt[..pkt.len() - 1], link, hint);
        assert!(part.flow.family == 0 || part.flow.family == whole.flow.family);
    }
});
