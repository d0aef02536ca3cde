//! Classic BPF -> eBPF: valid programs built from arbitrary bytes (opcodes drawn from the
//! valid set, jumps kept in range) translate without panicking, and the output keeps the
//! stub contract's shape: jumps land inside the run or just after it, no `exit`, no helper
//! call, registers r0-r5 only.
#![no_main]

use engine::filter::translate::{check_shape, translate};
use engine::filter::{BpfInsn, Program};
use libfuzzer_sys::fuzz_target;

const CODES: &[u16] = &[
    0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x00, 0x60, 0x80, 0x01, 0x61, 0x81, 0xb1, 0x02, 0x03, 0x04,
    0x14, 0x24, 0x34, 0x94, 0x44, 0x54, 0xa4, 0x64, 0x74, 0x0c, 0x1c, 0x2c, 0x3c, 0x9c, 0x4c, 0x5c,
    0xac, 0x6c, 0x7c, 0x84, 0x05, 0x15, 0x25, 0x35, 0x45, 0x1d, 0x2d, 0x3d, 0x4d, 0x06, 0x16, 0x07,
    0x87,
];

fn program(bytes: &[u8]) -> Option<Program> {
    let n = bytes.len() / 8;
    let mut v: Vec<BpfInsn> = Vec::with_capacity(n + 1);
    for (i, c) in bytes.chunks_exact(8).enumerate() {
        let left = (n - i) as u32; // instructions after this one, counting the final ret
        let code = CODES[usize::from(c[0]) % CODES.len()];
        let mut k = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        match code {
            0x60 | 0x61 | 0x02 | 0x03 => k %= 16,
            0x34 | 0x94 => k = k.max(1),
            0x64 | 0x74 => k %= 32,
            0x05 => k %= left,
            _ => {}
        }
        let jt = (u32::from(c[2]) % left) as u8;
        let jf = (u32::from(c[3]) % left) as u8;
        v.push(BpfInsn { code, jt, jf, k });
    }
    v.push(BpfInsn {
        code: 0x16,
        jt: 0,
        jf: 0,
        k: 0,
    });
    Program::new(v).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = (usize::from(split) * 8).min(rest.len() / 8 * 8);
    let (a, b) = rest.split_at(cut);
    let (Some(eth), Some(raw)) = (program(a), program(b)) else {
        return;
    };
    match translate(&eth, &raw, 4000) {
        Ok(out) => {
            if let Err(e) = check_shape(&out) {
                panic!("{e}");
            }
            assert!(out.len() <= 4000);
        }
        Err(e) => assert!(e.to_string().contains("more than")),
    }
});
