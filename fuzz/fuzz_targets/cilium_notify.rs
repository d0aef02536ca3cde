//! Cilium datapath notifications: `engine::cilium::decode` on arbitrary ring records, under
//! every layout choice and an extension length taken from the input, then every output form
//! (monitor text at each verbosity, JSON, connection summary). Nothing may panic, and the
//! decoded pieces must add up to the record.
#![no_main]

use engine::cilium::{
    connection_summary, decode, format::Verbosity, tables::CiliumRelease, DecodeOptions, Formatter,
    SummaryOpts,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cfg, rec) = match data.split_first() {
        Some((c, r)) => (*c, r),
        None => return,
    };
    let release = CiliumRelease::ALL[usize::from(cfg & 0x7) % CiliumRelease::ALL.len()];
    let mut opts = DecodeOptions::for_release(release);
    if cfg & 0x08 != 0 {
        opts.layout.drop_v0 = engine::cilium::notify::DropV0Layout::Len32;
    }
    if let Some(&ext) = rec.get(15) {
        opts.ext_lengths.set(ext, u16::from(cfg >> 4) * 4);
    }
    let d = match decode(rec, &opts) {
        Ok(d) => d,
        Err(_) => return,
    };
    assert_eq!(d.header_len + d.packet.len() + d.trailing, rec.len());
    assert_eq!(
        d.packet.len() + d.missing,
        d.notification.cap_len() as usize
    );
    let mut out = String::new();
    for verbosity in [
        Verbosity::Info,
        Verbosity::Debug,
        Verbosity::Verbose,
        Verbosity::Json,
    ] {
        for hex in [false, true] {
            let f = Formatter {
                release,
                numeric_identities: hex,
                verbosity,
                hex,
            };
            out.clear();
            f.write_line(&mut out, Some(u32::from(cfg)), &d.notification, d.packet);
        }
    }
    for flags in 0..16 {
        let _ = connection_summary(d.packet, SummaryOpts::from_cls_flags(flags)).to_string();
    }
});
