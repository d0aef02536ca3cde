//! Classic BPF: arbitrary bytes -> instructions -> `Program::new`; a valid program then runs
//! on arbitrary packet bytes. Nothing may panic, and a valid program must translate.
#![no_main]

use engine::filter::{BpfInsn, Program};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: how many 8-byte instructions; the rest after them is the packet.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len() / 8);
    let (code, pkt) = rest.split_at(n * 8);
    let insns: Vec<BpfInsn> = code
        .chunks_exact(8)
        .map(|c| BpfInsn {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if let Ok(p) = Program::new(insns) {
        let wire = pkt.len() as u32;
        let _ = p.run(pkt, wire);
        let _ = p.run(pkt, wire.wrapping_mul(3));
        let _ = p.run(&pkt[..pkt.len() / 2], wire);
    }
});
