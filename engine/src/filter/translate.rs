//! Classic BPF -> eBPF: one instruction run that the kernel program's reserved stub is
//! patched with, so a filter runs in the kernel with the interpreter's exact verdicts.
//!
//! The contract with the kernel side (the stub's caller):
//! - On entry r1 points to the packet bytes (a map value with at least [`PKT_MAX`] readable
//!   bytes), r2 is the captured length (u32, known to the verifier to be <= [`PKT_MAX`]), r3 is
//!   free, r4 is 0 to run the Ethernet program and non-zero to run the raw-IP one, r5 points to
//!   a [`SCRATCH_LEN`]-byte scratch area: M[0..16] as u32 at offsets 0, 4, .., 60 and the wire
//!   length (u32) at offset [`WIRELEN_OFF`].
//! - On exit r0 holds the classic return value (0 rejects) and control reaches the
//!   instruction just after the run (every path jumps there or falls through to it).
//! - Registers: A = r0, X = r4 (after the dispatch), r3 is a temporary; r1, r2, r5 are never
//!   written; r6-r10 and the stack are never touched; no helper calls, no `exit`.
//!
//! Must never: emit an instruction the verifier cannot reach (only reachable classic
//! instructions are translated, an always-failing load has no successor, and the reject tail
//! exists only when something jumps to it), or a load it cannot prove in bounds (every load
//! is guarded by a constant compare against [`PKT_MAX`] and a compare against r2).

use super::cbpf::{AluOp, JmpOp, Op, Program, Size, MEMWORDS};
use super::FilterError;

/// Bytes readable from r1, and the largest captured length.
pub const PKT_MAX: u32 = 2048;
/// Offset of the wire length in the scratch area.
pub const WIRELEN_OFF: i16 = 64;
/// Size of the scratch area r5 points to.
pub const SCRATCH_LEN: usize = 72;

/// One eBPF instruction (`struct bpf_insn` of `linux/bpf.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EbpfInsn {
    /// Opcode.
    pub code: u8,
    /// Destination register (0..=10).
    pub dst: u8,
    /// Source register (0..=10).
    pub src: u8,
    /// Signed offset: memory displacement, or jump distance from the next instruction.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl EbpfInsn {
    /// The kernel's 8-byte little-endian encoding: code, dst (low nibble) | src (high
    /// nibble), off, imm.
    pub fn to_bytes(self) -> [u8; 8] {
        self.to_u64().to_le_bytes()
    }

    /// The encoding as one little-endian u64 (byte 0 in the low bits).
    pub fn to_u64(self) -> u64 {
        u64::from(self.code)
            | u64::from((self.dst & 0xf) | (self.src << 4)) << 8
            | u64::from(self.off as u16) << 16
            | u64::from(self.imm as u32) << 32
    }

    /// Decodes [`EbpfInsn::to_u64`]'s form.
    pub fn from_u64(v: u64) -> Self {
        EbpfInsn {
            code: v as u8,
            dst: (v >> 8) as u8 & 0xf,
            src: (v >> 12) as u8 & 0xf,
            off: (v >> 16) as u16 as i16,
            imm: (v >> 32) as u32 as i32,
        }
    }
}

/// eBPF opcode values (`linux/bpf.h`).
pub mod op {
    #![allow(missing_docs)]
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const MEM: u8 = 0x60;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;
    pub const TO_BE: u8 = 0x08;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// The translation for "no filter": r0 = 1, fall through.
pub fn accept_all() -> Vec<EbpfInsn> {
    vec![ins(op::ALU | op::MOV | op::K, R0, 0, 0, 1)]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// First eBPF instruction of classic instruction `.1` of program `.0`.
    Insn(usize, usize),
    /// The shared "r0 = 0; go to end" tail of a program.
    Reject(usize),
    /// Start of the raw-IP program.
    RawStart,
    /// Just after the whole run.
    End,
}

struct Emitter {
    out: Vec<(EbpfInsn, Option<Label>)>,
    /// (label, position) for every placed label.
    placed: Vec<(Label, usize)>,
}

impl Emitter {
    fn push(&mut self, i: EbpfInsn) {
        self.out.push((i, None));
    }
    fn jump(&mut self, i: EbpfInsn, to: Label) {
        self.out.push((i, Some(to)));
    }
    fn place(&mut self, l: Label) {
        self.placed.push((l, self.out.len()));
    }
}

/// Whether a load can never succeed within [`PKT_MAX`] bytes.
fn always_fails(o: Op) -> bool {
    let too_far = |k: u32, n: u32| u64::from(k) + u64::from(n) > u64::from(PKT_MAX);
    match o {
        Op::LdAbs(s, k) | Op::LdInd(s, k) => too_far(k, s.bytes()),
        Op::LdxMsh(k) => too_far(k, 1),
        _ => false,
    }
}

/// Classic instructions reachable from the first, in the translation's control flow (an
/// always-failing load leads nowhere but the reject tail).
fn reachable(ops: &[Op]) -> Vec<bool> {
    let mut seen = vec![false; ops.len()];
    if let Some(s) = seen.first_mut() {
        *s = true;
    }
    // Jumps only go forward, so one pass in order suffices.
    for (i, &o) in ops.iter().enumerate() {
        if !seen.get(i).copied().unwrap_or(false) || always_fails(o) {
            continue;
        }
        let (a, b) = o.successors(i);
        for t in [a, b].into_iter().flatten() {
            if let Some(s) = seen.get_mut(t) {
                *s = true;
            }
        }
    }
    seen
}

fn size_code(s: Size) -> u8 {
    match s {
        Size::W => op::W,
        Size::H => op::H,
        Size::B => op::B,
    }
}

fn alu_code(o: AluOp) -> u8 {
    match o {
        AluOp::Add => op::ADD,
        AluOp::Sub => op::SUB,
        AluOp::Mul => op::MUL,
        AluOp::Div => op::DIV,
        AluOp::Mod => op::MOD,
        AluOp::And => op::AND,
        AluOp::Or => op::OR,
        AluOp::Xor => op::XOR,
        AluOp::Lsh => op::LSH,
        AluOp::Rsh => op::RSH,
    }
}

/// (jump-if-true opcode, its negation if eBPF has one).
fn jmp_codes(o: JmpOp) -> (u8, Option<u8>) {
    match o {
        JmpOp::Eq => (op::JEQ, Some(op::JNE)),
        JmpOp::Gt => (op::JGT, Some(op::JLE)),
        JmpOp::Ge => (op::JGE, Some(op::JLT)),
        JmpOp::Set => (op::JSET, None),
    }
}

/// Byte-swaps r0 after a big-endian load of `s`.
fn emit_be(e: &mut Emitter, s: Size) {
    match s {
        Size::W => e.push(ins(op::ALU | op::END | op::TO_BE, R0, 0, 0, 32)),
        Size::H => e.push(ins(op::ALU | op::END | op::TO_BE, R0, 0, 0, 16)),
        Size::B => {}
    }
}

fn mem_off(i: u8) -> i16 {
    i16::from(i) * 4
}

fn emit_program(e: &mut Emitter, p: usize, prog: &Program) -> bool {
    let ops = prog.ops();
    let live = reachable(ops);
    let reject = Label::Reject(p);
    let mut rejects = false;
    // A = 0 (and X = 0 on the raw path; the Ethernet path enters with r4 == 0).
    e.push(ins(op::ALU | op::MOV | op::K, R0, 0, 0, 0));
    if p != 0 {
        e.push(ins(op::ALU | op::MOV | op::K, R4, 0, 0, 0));
    }
    // M[] starts zeroed: clear the words this program reads.
    let mut read = [false; MEMWORDS];
    for (o, _) in ops.iter().zip(&live).filter(|(_, l)| **l) {
        if let Op::LdMem(i) | Op::LdxMem(i) = *o {
            if let Some(r) = read.get_mut(usize::from(i) % MEMWORDS) {
                *r = true;
            }
        }
    }
    for (i, _) in read.iter().enumerate().filter(|(_, r)| **r) {
        e.push(ins(op::ST | op::MEM | op::W, R5, 0, mem_off(i as u8), 0));
    }
    let live_idx: Vec<usize> = (0..ops.len())
        .filter(|&i| live.get(i).copied().unwrap_or(false))
        .collect();
    for (n, &i) in live_idx.iter().enumerate() {
        let next = live_idx.get(n + 1).copied();
        e.place(Label::Insn(p, i));
        let Some(&o) = ops.get(i) else {
            continue;
        };
        if always_fails(o) {
            e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), reject);
            rejects = true;
            continue;
        }
        let to = |t: u16| Label::Insn(p, usize::from(t));
        match o {
            Op::LdAbs(s, k) => {
                let end = (k + s.bytes()) as i32; // <= PKT_MAX: checked by always_fails
                e.jump(ins(op::JMP | op::JLT | op::K, R2, 0, 0, end), reject);
                e.push(ins(op::LDX | op::MEM | size_code(s), R0, R1, k as i16, 0));
                emit_be(e, s);
                rejects = true;
            }
            Op::LdInd(s, k) => {
                let end = (k + s.bytes()) as i32;
                e.push(ins(op::ALU64 | op::MOV | op::X, R3, R4, 0, 0));
                e.push(ins(op::ALU64 | op::ADD | op::K, R3, 0, 0, end));
                e.jump(
                    ins(op::JMP | op::JGT | op::K, R3, 0, 0, PKT_MAX as i32),
                    reject,
                );
                e.jump(ins(op::JMP | op::JGT | op::X, R3, R2, 0, 0), reject);
                e.push(ins(op::ALU64 | op::ADD | op::X, R3, R1, 0, 0));
                let back = -(s.bytes() as i16);
                e.push(ins(op::LDX | op::MEM | size_code(s), R0, R3, back, 0));
                emit_be(e, s);
                rejects = true;
            }
            Op::LdxMsh(k) => {
                e.jump(
                    ins(op::JMP | op::JLT | op::K, R2, 0, 0, k as i32 + 1),
                    reject,
                );
                e.push(ins(op::LDX | op::MEM | op::B, R4, R1, k as i16, 0));
                e.push(ins(op::ALU | op::AND | op::K, R4, 0, 0, 0xf));
                e.push(ins(op::ALU | op::LSH | op::K, R4, 0, 0, 2));
                rejects = true;
            }
            Op::LdImm(k) => e.push(ins(op::ALU | op::MOV | op::K, R0, 0, 0, k as i32)),
            Op::LdxImm(k) => e.push(ins(op::ALU | op::MOV | op::K, R4, 0, 0, k as i32)),
            Op::LdMem(m) => e.push(ins(op::LDX | op::MEM | op::W, R0, R5, mem_off(m), 0)),
            Op::LdxMem(m) => e.push(ins(op::LDX | op::MEM | op::W, R4, R5, mem_off(m), 0)),
            Op::LdLen => e.push(ins(op::LDX | op::MEM | op::W, R0, R5, WIRELEN_OFF, 0)),
            Op::LdxLen => e.push(ins(op::LDX | op::MEM | op::W, R4, R5, WIRELEN_OFF, 0)),
            Op::St(m) => e.push(ins(op::STX | op::MEM | op::W, R5, R0, mem_off(m), 0)),
            Op::Stx(m) => e.push(ins(op::STX | op::MEM | op::W, R5, R4, mem_off(m), 0)),
            Op::AluK(a, k) => e.push(ins(op::ALU | alu_code(a) | op::K, R0, 0, 0, k as i32)),
            Op::AluX(a) => {
                if matches!(a, AluOp::Div | AluOp::Mod) {
                    e.jump(ins(op::JMP32 | op::JEQ | op::K, R4, 0, 0, 0), reject);
                    rejects = true;
                }
                e.push(ins(op::ALU | alu_code(a) | op::X, R0, R4, 0, 0));
            }
            Op::Neg => e.push(ins(op::ALU | op::NEG, R0, 0, 0, 0)),
            Op::Tax => e.push(ins(op::ALU | op::MOV | op::X, R4, R0, 0, 0)),
            Op::Txa => e.push(ins(op::ALU | op::MOV | op::X, R0, R4, 0, 0)),
            Op::RetK(k) => {
                e.push(ins(op::ALU | op::MOV | op::K, R0, 0, 0, k as i32));
                e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), Label::End);
            }
            Op::RetA => e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), Label::End),
            Op::Ja(t) => {
                if Some(usize::from(t)) != next {
                    e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), to(t));
                }
            }
            Op::JmpK(_, _, t, f) | Op::JmpX(_, t, f) if t == f => {
                if Some(usize::from(t)) != next {
                    e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), to(t));
                }
            }
            Op::JmpK(j, _, t, f) | Op::JmpX(j, t, f) => {
                let (src, reg, imm) = match o {
                    Op::JmpK(_, k, _, _) => (op::K, 0, k as i32),
                    _ => (op::X, R4, 0),
                };
                let (yes, no) = jmp_codes(j);
                match no {
                    Some(no) if Some(usize::from(t)) == next => {
                        e.jump(ins(op::JMP32 | no | src, R0, reg, 0, imm), to(f));
                    }
                    _ => {
                        e.jump(ins(op::JMP32 | yes | src, R0, reg, 0, imm), to(t));
                        if Some(usize::from(f)) != next {
                            e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), to(f));
                        }
                    }
                }
            }
        }
    }
    rejects
}

fn emit_reject(e: &mut Emitter, p: usize) {
    e.place(Label::Reject(p));
    e.push(ins(op::ALU | op::MOV | op::K, R0, 0, 0, 0));
    e.jump(ins(op::JMP | op::JA, 0, 0, 0, 0), Label::End);
}

/// Translates the Ethernet and raw-IP programs into one eBPF run per the module's contract,
/// at most `max_insns` long.
pub fn translate(
    eth: &Program,
    raw: &Program,
    max_insns: usize,
) -> Result<Vec<EbpfInsn>, FilterError> {
    let mut e = Emitter {
        out: Vec::new(),
        placed: Vec::new(),
    };
    e.jump(ins(op::JMP | op::JNE | op::K, R4, 0, 0, 0), Label::RawStart);
    if emit_program(&mut e, 0, eth) {
        emit_reject(&mut e, 0);
    }
    e.place(Label::RawStart);
    if emit_program(&mut e, 1, raw) {
        emit_reject(&mut e, 1);
    }
    let len = e.out.len();
    // Jump distances are s16; keep well inside.
    if len > max_insns || len > i16::MAX as usize {
        return Err(FilterError::TooLong {
            need: len,
            max: max_insns,
        });
    }
    e.placed.push((Label::End, len));
    let find = |l: Label| e.placed.iter().find(|(p, _)| *p == l).map(|&(_, at)| at);
    let mut out = Vec::with_capacity(len);
    for (at, (mut i, target)) in e.out.iter().copied().enumerate() {
        if let Some(l) = target {
            // Every label jumped to is placed: instructions are only targeted when live.
            let to = find(l).unwrap_or(len);
            i.off = (to as i64 - at as i64 - 1) as i16;
        }
        out.push(i);
    }
    Ok(out)
}

/// Structural checks the kernel side relies on: every jump lands inside the run or just
/// after it, no `exit`, no helper call, only r0-r5 used. Returns what is wrong.
pub fn check_shape(insns: &[EbpfInsn]) -> Result<(), String> {
    for (at, i) in insns.iter().enumerate() {
        let class = i.code & 0x07;
        if i.dst > R5 || i.src > R5 {
            return Err(format!("instruction {at} uses a register above r5: {i:?}"));
        }
        if class == op::JMP || class == op::JMP32 {
            let o = i.code & 0xf0;
            if o == op::EXIT || o == op::CALL {
                return Err(format!("instruction {at} is exit or call: {i:?}"));
            }
            let to = at as i64 + 1 + i64::from(i.off);
            if to < 0 || to > insns.len() as i64 {
                return Err(format!("instruction {at} jumps out of range to {to}"));
            }
        }
        if i.code == 0x18 {
            return Err(format!("instruction {at} is a 64-bit immediate load"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::cbpf::code as c;
    use super::super::BpfInsn;
    use super::*;

    fn prog(v: &[BpfInsn]) -> Program {
        Program::new(v.to_vec()).expect("valid")
    }

    #[test]
    fn filter_translate_encoding_round_trips() {
        let i = ins(op::LDX | op::MEM | op::H, R0, R3, -2, 0x1234_5678);
        assert_eq!(
            i.to_bytes(),
            [0x69, 0x30, 0xfe, 0xff, 0x78, 0x56, 0x34, 0x12]
        );
        assert_eq!(EbpfInsn::from_u64(i.to_u64()), i);
        assert_eq!(accept_all(), vec![ins(0xb4, 0, 0, 0, 1)]);
    }

    #[test]
    fn filter_translate_small_program_exact() {
        // ldh [12]; jeq #0x800 jt 0 jf 1; ret #1; ret #0
        let eth = prog(&[
            BpfInsn::new(c::LD | c::H | c::ABS, 0, 0, 12),
            BpfInsn::new(c::JMP | c::JEQ, 0, 1, 0x800),
            BpfInsn::new(c::RET, 0, 0, 1),
            BpfInsn::new(c::RET, 0, 0, 0),
        ]);
        let raw = prog(&[BpfInsn::new(c::RET, 0, 0, 7)]);
        let out = translate(&eth, &raw, 100).unwrap();
        check_shape(&out).unwrap();
        let expect = vec![
            ins(0x55, R4, 0, 11, 0),    // 0: if r4 != 0 goto 12 (raw start)
            ins(0xb4, R0, 0, 0, 0),     // 1: w0 = 0
            ins(0xa5, R2, 0, 7, 14),    // 2: if r2 < 14 goto 10 (reject)
            ins(0x69, R0, R1, 12, 0),   // 3: r0 = *(u16 *)(r1 + 12)
            ins(0xdc, R0, 0, 0, 16),    // 4: be16 r0
            ins(0x56, R0, 0, 2, 0x800), // 5: if w0 != 0x800 goto 8
            ins(0xb4, R0, 0, 0, 1),     // 6: w0 = 1
            ins(0x05, 0, 0, 8, 0),      // 7: goto end (16)
            ins(0xb4, R0, 0, 0, 0),     // 8: w0 = 0
            ins(0x05, 0, 0, 6, 0),      // 9: goto end
            ins(0xb4, R0, 0, 0, 0),     // 10: reject: w0 = 0
            ins(0x05, 0, 0, 4, 0),      // 11: goto end
            ins(0xb4, R0, 0, 0, 0),     // 12: raw: w0 = 0
            ins(0xb4, R4, 0, 0, 0),     // 13: w4 = 0
            ins(0xb4, R0, 0, 0, 7),     // 14: w0 = 7
            ins(0x05, 0, 0, 0, 0),      // 15: goto end
        ];
        assert_eq!(out, expect);
        assert!(matches!(
            translate(&eth, &raw, 15),
            Err(FilterError::TooLong { need: 16, max: 15 })
        ));
    }

    #[test]
    fn filter_translate_skips_unreachable_and_impossible_loads() {
        // ld [5000] can never succeed: it becomes a jump to the reject tail and what follows
        // it (reachable only through it) is not translated.
        let eth = prog(&[
            BpfInsn::new(c::LD | c::W | c::ABS, 0, 0, 5000),
            BpfInsn::new(c::RET, 0, 0, 1),
        ]);
        let raw = prog(&[
            BpfInsn::new(c::JMP | c::JA, 0, 0, 1),
            BpfInsn::new(c::RET, 0, 0, 5),
            BpfInsn::new(c::RET | c::A, 0, 0, 0),
        ]);
        let out = translate(&eth, &raw, 100).unwrap();
        check_shape(&out).unwrap();
        let expect = vec![
            ins(0x55, R4, 0, 4, 0), // -> raw start (5)
            ins(0xb4, R0, 0, 0, 0),
            ins(0x05, 0, 0, 0, 0), // ld [5000]: goto reject (3)
            ins(0xb4, R0, 0, 0, 0),
            ins(0x05, 0, 0, 3, 0), // goto end (8)
            ins(0xb4, R0, 0, 0, 0),
            ins(0xb4, R4, 0, 0, 0),
            ins(0x05, 0, 0, 0, 0), // ret a: goto end
        ];
        assert_eq!(out, expect);
    }
}
