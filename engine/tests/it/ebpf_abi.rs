//! The built eBPF object and capture-common agree on the event ABI: every struct of
//! `capture_common::LAYOUTS` has the same size and field offsets in the object's BTF.

use engine::kernel::{abi, loader};

#[test]
fn object_btf_matches_capture_common_layouts() {
    let obj = loader::object();
    if obj.is_empty() {
        eprintln!("skipping: built with AYA_BUILD_SKIP (no eBPF object)");
        return;
    }
    let btf = abi::object_btf(obj).unwrap();
    abi::check_layouts(&btf, capture_common::LAYOUTS).unwrap();
    // Every struct of LAYOUTS was found and compared (not vacuously true).
    for (name, size, _) in capture_common::LAYOUTS {
        let id = btf.find_struct(name).unwrap();
        assert_eq!(btf.type_size(id).unwrap() as usize, *size, "{name}");
    }
    assert_eq!(capture_common::LAYOUTS.len(), 13);
    // The whole event, field by field (LAYOUTS lists only some ProbeConfig fields).
    let ev = btf.find_struct("KfreeSkbEvent").unwrap();
    let names: Vec<String> = btf
        .members(ev)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        [
            "hdr",
            "location",
            "reason",
            "ifindex",
            "netns_ino",
            "orig_len",
            "cap_len",
            "protocol",
            "flags",
            "_pad",
            "net_off"
        ]
    );
    // The packet record (`--packets`), field by field.
    let pe = btf.find_struct("PacketEvent").unwrap();
    let names: Vec<String> = btf
        .members(pe)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        [
            "hdr",
            "ifindex",
            "netns_ino",
            "orig_len",
            "cap_len",
            "protocol",
            "direction",
            "flags",
            "_pad",
            "mark"
        ]
    );
}
