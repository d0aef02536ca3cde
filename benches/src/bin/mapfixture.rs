//! `mapfixture`: a stand-in for Cilium's conntrack map under load, for
//! scripts/bench-datapath.sh. Mounts a bpffs at DIR, pins there a hash map
//! `cilium_ct4_global` of 16-byte keys and 56-byte values (the sizes of Cilium's IPv4 tuple,
//! rounded, and entry) filled with N entries, and a tc program `ct_touch` that, for every
//! packet, rewrites the entry of key `skb->hash % N` (map_update_elem with BPF_EXIST: the
//! bucket lock a conntrack update takes). The script attaches the program to a veth it made
//! and floods it. Prints `ready` on stdout, then waits until stdin closes, then unmounts.
//!
//! It writes only to the map it created; dropscope never writes to any map.

use std::io::Read as _;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::PathBuf;

use engine::datapath::testing as dt;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// key (16 bytes) at fp-16 = { skb->hash & mask, 0, 0, 0 }; value (56 bytes) at fp-72 = 0;
/// map_update_elem(map, key, value, BPF_EXIST); return TC_ACT_OK.
fn ct_touch(map_fd: i32, mask: i32) -> Vec<u64> {
    let mut v = vec![
        insn(0x61, 2, 1, 68, 0),   // r2 = skb->hash
        insn(0x57, 2, 0, 0, mask), // r2 &= mask
        insn(0x63, 10, 2, -16, 0), // key[0..4] = r2
        insn(0x62, 10, 0, -12, 0), // key[4..8] = 0
        insn(0x7a, 10, 0, -8, 0),  // key[8..16] = 0
    ];
    for o in (-72..-16).step_by(8) {
        v.push(insn(0x7a, 10, 0, o, 0)); // value = 0
    }
    v.extend([
        insn(0x18, 1, 1, 0, map_fd),
        insn(0x00, 0, 0, 0, 0),
        insn(0xbf, 2, 10, 0, 0),
        insn(0x07, 2, 0, 0, -16),
        insn(0xbf, 3, 10, 0, 0),
        insn(0x07, 3, 0, 0, -72),
        insn(0xb7, 4, 0, 0, 2), // BPF_EXIST
        insn(0x85, 0, 0, 0, 2), // map_update_elem
        insn(0xb7, 0, 0, 0, 0), // TC_ACT_OK
        insn(0x95, 0, 0, 0, 0),
    ]);
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: mapfixture DIR ENTRIES (ENTRIES a power of two)");
        std::process::exit(2);
    };
    if !n.is_power_of_two() {
        eprintln!("mapfixture: ENTRIES must be a power of two");
        std::process::exit(2);
    }
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dt::mount_bpffs(&dir).expect("mount bpffs");
    let run = || -> Result<(), String> {
        let map = dt::map(dt::MapType::BPF_MAP_TYPE_HASH, 16, 56, n).map_err(|e| e.to_string())?;
        let t = std::time::Instant::now();
        dt::insert_range_padded(map.as_fd(), 0, n).map_err(|e| e.to_string())?;
        eprintln!(
            "mapfixture: {n} entries in {:.2}s",
            t.elapsed().as_secs_f64()
        );
        dt::pin(map.as_fd(), &dir.join("cilium_ct4_global")).map_err(|e| e.to_string())?;
        let prog = dt::prog_load(
            3, // BPF_PROG_TYPE_SCHED_CLS
            &ct_touch(map.as_raw_fd(), (n - 1) as i32),
            "ct_touch",
            c"GPL",
        )?;
        dt::pin(prog.as_fd(), &dir.join("ct_touch")).map_err(|e| e.to_string())?;
        println!("ready");
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        Ok(())
    };
    let r = run();
    dt::umount(&dir);
    if let Err(e) = r {
        eprintln!("mapfixture: {e}");
        std::process::exit(1);
    }
}
