//! Classic BPF: validation and a user-space interpreter with libpcap's `bpf_filter()`
//! semantics.
//!
//! The instructions are untrusted (they may come from a fuzzer or a file): [`Program::new`]
//! checks them the way the kernel's `bpf_check_classic()` and libpcap's `bpf_validate()` do
//! and decodes them once into a compact [`Op`] list; [`Program::run`] is then a tight loop
//! that never allocates, never indexes out of range and never panics, whatever the packet.
//!
//! Semantics (libpcap `bpf_filter.c`): A and X are u32 starting at 0, the scratch memory
//! M[0..16] starts zeroed, loads are big-endian, a load past the captured bytes rejects the
//! packet (returns 0), `len` is the wire length, division or modulo by X == 0 rejects, and a
//! shift by X uses the count's low 5 bits (as x86 and the kernel's eBPF JIT do).

use super::FilterError;

/// One classic BPF instruction, laid out like libpcap's and the kernel's `struct bpf_insn`
/// / `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BpfInsn {
    /// Opcode: class | size | mode, class | op | src, ...
    pub code: u16,
    /// Jump offset if true (relative to the next instruction).
    pub jt: u8,
    /// Jump offset if false (relative to the next instruction).
    pub jf: u8,
    /// Generic operand.
    pub k: u32,
}

impl BpfInsn {
    /// An instruction from its four fields.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        Self { code, jt, jf, k }
    }
}

/// The longest classic program accepted (the kernel's `BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Words of scratch memory (`BPF_MEMWORDS`).
pub const MEMWORDS: usize = 16;

/// Classic BPF opcode values (`linux/bpf_common.h`, `linux/filter.h`).
pub mod code {
    #![allow(missing_docs)]
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const NEG: u16 = 0x80;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    pub const A: u16 = 0x10;
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
}

/// Access width of a packet load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 4 bytes.
    W,
    /// 2 bytes.
    H,
    /// 1 byte.
    B,
}

impl Size {
    /// Bytes read.
    pub const fn bytes(self) -> u32 {
        match self {
            Size::W => 4,
            Size::H => 2,
            Size::B => 1,
        }
    }
}

/// An ALU operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    #[allow(missing_docs)]
    Add,
    #[allow(missing_docs)]
    Sub,
    #[allow(missing_docs)]
    Mul,
    #[allow(missing_docs)]
    Div,
    #[allow(missing_docs)]
    Mod,
    #[allow(missing_docs)]
    And,
    #[allow(missing_docs)]
    Or,
    #[allow(missing_docs)]
    Xor,
    #[allow(missing_docs)]
    Lsh,
    #[allow(missing_docs)]
    Rsh,
}

/// A conditional jump's comparison (always on A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JmpOp {
    /// A == operand.
    Eq,
    /// A > operand (unsigned).
    Gt,
    /// A >= operand (unsigned).
    Ge,
    /// A & operand != 0.
    Set,
}

/// A validated instruction, decoded once. Jump targets are absolute instruction indices,
/// M[] indices are < 16 and ALU by constant never divides by 0 nor shifts by 32 or more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A = P[k : size].
    LdAbs(Size, u32),
    /// A = P[X + k : size].
    LdInd(Size, u32),
    /// A = k.
    LdImm(u32),
    /// A = M[k].
    LdMem(u8),
    /// A = wire length.
    LdLen,
    /// X = k.
    LdxImm(u32),
    /// X = M[k].
    LdxMem(u8),
    /// X = wire length.
    LdxLen,
    /// X = 4 * (P[k] & 0xf).
    LdxMsh(u32),
    /// M[k] = A.
    St(u8),
    /// M[k] = X.
    Stx(u8),
    /// A = A op k.
    AluK(AluOp, u32),
    /// A = A op X.
    AluX(AluOp),
    /// A = -A.
    Neg,
    /// Jump to an absolute index.
    Ja(u16),
    /// If A op k jump to `t` else `f` (absolute indices).
    JmpK(JmpOp, u32, u16, u16),
    /// If A op X jump to `t` else `f` (absolute indices).
    JmpX(JmpOp, u16, u16),
    /// Return k.
    RetK(u32),
    /// Return A.
    RetA,
    /// X = A.
    Tax,
    /// A = X.
    Txa,
}

impl Op {
    /// Where control can go after this instruction at index `i`: (first, second) successors.
    pub fn successors(self, i: usize) -> (Option<usize>, Option<usize>) {
        match self {
            Op::RetK(_) | Op::RetA => (None, None),
            Op::Ja(t) => (Some(t as usize), None),
            Op::JmpK(_, _, t, f) | Op::JmpX(_, t, f) => (Some(t as usize), Some(f as usize)),
            _ => (Some(i + 1), None),
        }
    }
}

/// A validated classic BPF program, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insns: Vec<BpfInsn>,
    ops: Vec<Op>,
}

fn invalid(index: usize, reason: &'static str) -> FilterError {
    FilterError::Invalid { index, reason }
}

fn decode(i: usize, ins: BpfInsn, len: usize) -> Result<Op, FilterError> {
    use code::*;
    let k = ins.k;
    let mem = |k: u32| -> Result<u8, FilterError> {
        if (k as usize) < MEMWORDS {
            Ok(k as u8)
        } else {
            Err(invalid(i, "scratch memory index is 16 or more"))
        }
    };
    // Targets are relative to the next instruction and may only go forward, in range.
    let target = |off: u64| -> Result<u16, FilterError> {
        let t = i as u64 + 1 + off;
        if t < len as u64 {
            Ok(t as u16)
        } else {
            Err(invalid(i, "jump target out of range"))
        }
    };
    let alu = |op: u16| -> Option<AluOp> {
        Some(match op {
            ADD => AluOp::Add,
            SUB => AluOp::Sub,
            MUL => AluOp::Mul,
            DIV => AluOp::Div,
            MOD => AluOp::Mod,
            AND => AluOp::And,
            OR => AluOp::Or,
            XOR => AluOp::Xor,
            LSH => AluOp::Lsh,
            RSH => AluOp::Rsh,
            _ => return None,
        })
    };
    let jmp = |op: u16| -> Option<JmpOp> {
        Some(match op {
            JEQ => JmpOp::Eq,
            JGT => JmpOp::Gt,
            JGE => JmpOp::Ge,
            JSET => JmpOp::Set,
            _ => return None,
        })
    };
    let c = ins.code;
    let op = match c {
        _ if c == LD | W | ABS => Op::LdAbs(Size::W, k),
        _ if c == LD | H | ABS => Op::LdAbs(Size::H, k),
        _ if c == LD | B | ABS => Op::LdAbs(Size::B, k),
        _ if c == LD | W | IND => Op::LdInd(Size::W, k),
        _ if c == LD | H | IND => Op::LdInd(Size::H, k),
        _ if c == LD | B | IND => Op::LdInd(Size::B, k),
        _ if c == LD | IMM => Op::LdImm(k),
        _ if c == LD | MEM => Op::LdMem(mem(k)?),
        _ if c == LD | W | LEN => Op::LdLen,
        _ if c == LDX | IMM => Op::LdxImm(k),
        _ if c == LDX | MEM => Op::LdxMem(mem(k)?),
        _ if c == LDX | W | LEN => Op::LdxLen,
        _ if c == LDX | B | MSH => Op::LdxMsh(k),
        _ if c == ST => Op::St(mem(k)?),
        _ if c == STX => Op::Stx(mem(k)?),
        _ if c == ALU | NEG => Op::Neg,
        _ if c & 0x07 == ALU && c < 0x100 => {
            let op = alu(c & 0xf0).ok_or_else(|| invalid(i, "unknown opcode"))?;
            if c & X != 0 {
                Op::AluX(op)
            } else {
                match op {
                    AluOp::Div | AluOp::Mod if k == 0 => {
                        return Err(invalid(i, "division by constant zero"))
                    }
                    AluOp::Lsh | AluOp::Rsh if k >= 32 => {
                        return Err(invalid(i, "shift by constant 32 or more"))
                    }
                    _ => Op::AluK(op, k),
                }
            }
        }
        _ if c == JMP | JA => Op::Ja(target(u64::from(k))?),
        _ if c & 0x07 == JMP && c < 0x100 => {
            let op = jmp(c & 0xf0).ok_or_else(|| invalid(i, "unknown opcode"))?;
            let (t, f) = (target(u64::from(ins.jt))?, target(u64::from(ins.jf))?);
            if c & X != 0 {
                Op::JmpX(op, t, f)
            } else {
                Op::JmpK(op, k, t, f)
            }
        }
        _ if c == RET | K => Op::RetK(k),
        _ if c == RET | A => Op::RetA,
        _ if c == MISC | TAX => Op::Tax,
        _ if c == MISC | TXA => Op::Txa,
        _ => return Err(invalid(i, "unknown opcode")),
    };
    Ok(op)
}

/// `P[off..off+N]` as a big-endian number, or `None` past the captured bytes.
#[inline(always)]
fn load<const N: usize>(pkt: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(N)?;
    let b = pkt.get(off..end)?;
    Some(match N {
        4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        2 => u32::from(u16::from_be_bytes([b[0], b[1]])),
        _ => u32::from(b[0]),
    })
}

#[inline(always)]
fn load_size(pkt: &[u8], size: Size, off: usize) -> Option<u32> {
    match size {
        Size::W => load::<4>(pkt, off),
        Size::H => load::<2>(pkt, off),
        Size::B => load::<1>(pkt, off),
    }
}

#[inline(always)]
fn alu(op: AluOp, a: u32, v: u32) -> u32 {
    match op {
        AluOp::Add => a.wrapping_add(v),
        AluOp::Sub => a.wrapping_sub(v),
        AluOp::Mul => a.wrapping_mul(v),
        // Callers rule out v == 0 (validated constant, or checked X).
        AluOp::Div => a.checked_div(v).unwrap_or(0),
        AluOp::Mod => a.checked_rem(v).unwrap_or(0),
        AluOp::And => a & v,
        AluOp::Or => a | v,
        AluOp::Xor => a ^ v,
        AluOp::Lsh => a.wrapping_shl(v),
        AluOp::Rsh => a.wrapping_shr(v),
    }
}

#[inline(always)]
fn cond(op: JmpOp, a: u32, v: u32) -> bool {
    match op {
        JmpOp::Eq => a == v,
        JmpOp::Gt => a > v,
        JmpOp::Ge => a >= v,
        JmpOp::Set => a & v != 0,
    }
}

impl Program {
    /// Validates `insns` (known opcodes, forward in-range jumps, M[] index < 16, no division
    /// or shift by an impossible constant, last instruction a return, 1..=4096 long) and
    /// decodes them for [`Program::run`].
    pub fn new(insns: Vec<BpfInsn>) -> Result<Program, FilterError> {
        let len = insns.len();
        if len == 0 || len > MAX_INSNS {
            return Err(FilterError::Length {
                len,
                max: MAX_INSNS,
            });
        }
        let ops = insns
            .iter()
            .enumerate()
            .map(|(i, &ins)| decode(i, ins, len))
            .collect::<Result<Vec<_>, _>>()?;
        if !matches!(ops.last(), Some(Op::RetK(_) | Op::RetA)) {
            return Err(invalid(len - 1, "program does not end with a return"));
        }
        Ok(Program { insns, ops })
    }

    /// The instructions as given.
    pub fn insns(&self) -> &[BpfInsn] {
        &self.insns
    }

    /// The decoded instructions, one per classic instruction.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Runs the program on the captured bytes `pkt` of a packet `wirelen` bytes long on the
    /// wire and returns its verdict: 0 rejects, anything else accepts (the snap length
    /// asked for). Never panics and never allocates.
    pub fn run(&self, pkt: &[u8], wirelen: u32) -> u32 {
        let ops = self.ops.as_slice();
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut m = [0u32; MEMWORDS];
        let mut pc = 0usize;
        loop {
            let Some(&op) = ops.get(pc) else { return 0 };
            pc += 1;
            match op {
                Op::LdAbs(size, k) => match load_size(pkt, size, k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::LdInd(size, k) => {
                    let off = (x as usize).wrapping_add(k as usize);
                    // On 32-bit targets the sum may wrap: treat that as out of range.
                    if off < k as usize {
                        return 0;
                    }
                    match load_size(pkt, size, off) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                Op::LdImm(k) => a = k,
                Op::LdMem(i) => a = m[usize::from(i) & (MEMWORDS - 1)],
                Op::LdLen => a = wirelen,
                Op::LdxImm(k) => x = k,
                Op::LdxMem(i) => x = m[usize::from(i) & (MEMWORDS - 1)],
                Op::LdxLen => x = wirelen,
                Op::LdxMsh(k) => match load::<1>(pkt, k as usize) {
                    Some(v) => x = (v & 0xf) << 2,
                    None => return 0,
                },
                Op::St(i) => m[usize::from(i) & (MEMWORDS - 1)] = a,
                Op::Stx(i) => m[usize::from(i) & (MEMWORDS - 1)] = x,
                Op::AluK(op, k) => a = alu(op, a, k),
                Op::AluX(op) => {
                    if x == 0 && matches!(op, AluOp::Div | AluOp::Mod) {
                        return 0;
                    }
                    a = alu(op, a, x);
                }
                Op::Neg => a = a.wrapping_neg(),
                Op::Ja(t) => pc = usize::from(t),
                Op::JmpK(op, k, t, f) => pc = usize::from(if cond(op, a, k) { t } else { f }),
                Op::JmpX(op, t, f) => pc = usize::from(if cond(op, a, x) { t } else { f }),
                Op::RetK(k) => return k,
                Op::RetA => return a,
                Op::Tax => x = a,
                Op::Txa => a = x,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::code::*;
    use super::*;

    fn i(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
        BpfInsn::new(code, jt, jf, k)
    }

    fn prog(v: &[BpfInsn]) -> Program {
        Program::new(v.to_vec()).expect("valid program")
    }

    fn reason(v: &[BpfInsn]) -> (usize, &'static str) {
        match Program::new(v.to_vec()) {
            Err(FilterError::Invalid { index, reason }) => (index, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn filter_cbpf_rejects_bad_programs() {
        let ret = i(RET | K, 0, 0, 1);
        assert!(matches!(
            Program::new(vec![]),
            Err(FilterError::Length { len: 0, max: 4096 })
        ));
        assert!(matches!(
            Program::new(vec![ret; 4097]),
            Err(FilterError::Length { len: 4097, .. })
        ));
        assert!(Program::new(vec![ret; 4096]).is_ok());
        assert_eq!(reason(&[i(0xffff, 0, 0, 0), ret]), (0, "unknown opcode"));
        assert_eq!(reason(&[i(RET | X, 0, 0, 0)]), (0, "unknown opcode"));
        assert_eq!(
            reason(&[i(ALU | 0xb0, 0, 0, 0), ret]),
            (0, "unknown opcode")
        );
        assert_eq!(
            reason(&[i(JMP | 0x50, 0, 0, 0), ret]),
            (0, "unknown opcode")
        );
        assert_eq!(
            reason(&[i(LD | IMM, 0, 0, 0)]),
            (0, "program does not end with a return")
        );
        assert_eq!(
            reason(&[i(JMP | JA, 0, 0, 1), ret]),
            (0, "jump target out of range")
        );
        assert_eq!(
            reason(&[i(JMP | JA, 0, 0, u32::MAX), ret]),
            (0, "jump target out of range")
        );
        assert_eq!(
            reason(&[i(JMP | JEQ, 0, 1, 0), ret]),
            (0, "jump target out of range")
        );
        assert_eq!(
            reason(&[ret, i(JMP | JEQ, 1, 0, 0), ret]),
            (1, "jump target out of range")
        );
        assert_eq!(
            reason(&[i(ST, 0, 0, 16), ret]),
            (0, "scratch memory index is 16 or more")
        );
        assert_eq!(
            reason(&[i(LDX | MEM, 0, 0, 99), ret]),
            (0, "scratch memory index is 16 or more")
        );
        assert_eq!(
            reason(&[i(ALU | DIV, 0, 0, 0), ret]),
            (0, "division by constant zero")
        );
        assert_eq!(
            reason(&[i(ALU | MOD, 0, 0, 0), ret]),
            (0, "division by constant zero")
        );
        assert_eq!(
            reason(&[i(ALU | LSH, 0, 0, 32), ret]),
            (0, "shift by constant 32 or more")
        );
    }

    #[test]
    fn filter_cbpf_loads_and_bounds() {
        let pkt = [0x11, 0x22, 0x33, 0x44, 0x55];
        let ld = |code: u16, k: u32| prog(&[i(code, 0, 0, k), i(RET | A, 0, 0, 0)]);
        assert_eq!(ld(LD | W | ABS, 0).run(&pkt, 5), 0x1122_3344);
        assert_eq!(ld(LD | W | ABS, 1).run(&pkt, 5), 0x2233_4455);
        assert_eq!(ld(LD | W | ABS, 2).run(&pkt, 5), 0);
        assert_eq!(ld(LD | W | ABS, u32::MAX).run(&pkt, 5), 0);
        assert_eq!(ld(LD | H | ABS, 3).run(&pkt, 5), 0x4455);
        assert_eq!(ld(LD | H | ABS, 4).run(&pkt, 5), 0);
        assert_eq!(ld(LD | B | ABS, 4).run(&pkt, 5), 0x55);
        assert_eq!(ld(LD | B | ABS, 5).run(&pkt, 5), 0);
        // Out of bounds rejects even when the program would return a constant after.
        let p = prog(&[i(LD | B | ABS, 0, 0, 9), i(RET | K, 0, 0, 7)]);
        assert_eq!(p.run(&pkt, 5), 0);
        assert_eq!(p.run(&[0; 10], 10), 7);
        // IND: X + k.
        let ind = |code: u16, x: u32, k: u32| {
            prog(&[i(LDX | IMM, 0, 0, x), i(code, 0, 0, k), i(RET | A, 0, 0, 0)]).run(&pkt, 5)
        };
        assert_eq!(ind(LD | H | IND, 2, 1), 0x4455);
        assert_eq!(ind(LD | H | IND, 3, 1), 0);
        assert_eq!(ind(LD | B | IND, u32::MAX, 1), 0);
        assert_eq!(ind(LD | W | IND, 1, u32::MAX), 0);
        assert_eq!(ind(LD | W | IND, 0, 1), 0x2233_4455);
        // MSH and LEN.
        let msh = prog(&[
            i(LDX | B | MSH, 0, 0, 0),
            i(MISC | TXA, 0, 0, 0),
            i(RET | A, 0, 0, 0),
        ]);
        assert_eq!(msh.run(&[0x45], 1), 20);
        assert_eq!(msh.run(&[], 0), 0);
        assert_eq!(ld(LD | W | LEN, 0).run(&pkt, 1500), 1500);
        let ldxlen = prog(&[
            i(LDX | W | LEN, 0, 0, 0),
            i(MISC | TXA, 0, 0, 0),
            i(RET | A, 0, 0, 0),
        ]);
        assert_eq!(ldxlen.run(&pkt, 77), 77);
    }

    #[test]
    fn filter_cbpf_alu_jumps_memory() {
        let run_a = |a: u32, code: u16, k: u32, x: u32| {
            prog(&[
                i(LDX | IMM, 0, 0, x),
                i(LD | IMM, 0, 0, a),
                i(code, 0, 0, k),
                i(RET | A, 0, 0, 0),
            ])
            .run(&[], 0)
        };
        assert_eq!(run_a(7, ALU | ADD | K, u32::MAX, 0), 6);
        assert_eq!(run_a(7, ALU | SUB | X, 0, 9), 7u32.wrapping_sub(9));
        assert_eq!(run_a(7, ALU | MUL | K, 6, 0), 42);
        assert_eq!(run_a(100, ALU | DIV | K, 7, 0), 14);
        assert_eq!(run_a(100, ALU | DIV | X, 0, 0), 0);
        assert_eq!(run_a(100, ALU | MOD | X, 0, 7), 2);
        assert_eq!(run_a(100, ALU | MOD | X, 0, 0), 0);
        assert_eq!(run_a(0xf0, ALU | AND | K, 0x3c, 0), 0x30);
        assert_eq!(run_a(0xf0, ALU | OR | X, 0, 0x0f), 0xff);
        assert_eq!(run_a(0xff, ALU | XOR | K, 0x0f, 0), 0xf0);
        assert_eq!(run_a(1, ALU | LSH | K, 31, 0), 0x8000_0000);
        assert_eq!(run_a(1, ALU | LSH | X, 0, 33), 2, "count masked to 5 bits");
        assert_eq!(run_a(0x80, ALU | RSH | X, 0, 36), 8);
        assert_eq!(run_a(5, ALU | NEG, 0, 0), 5u32.wrapping_neg());
        // A division by a zero X rejects even when a constant return follows.
        let p = prog(&[i(ALU | DIV | X, 0, 0, 0), i(RET | K, 0, 0, 9)]);
        assert_eq!(p.run(&[], 0), 0);
        // Jumps: JGT/JGE unsigned, JSET, JA; M[] starts at zero and holds stores.
        let j = |code: u16, a: u32, k: u32| {
            prog(&[
                i(LD | IMM, 0, 0, a),
                i(LDX | IMM, 0, 0, k),
                i(code, 1, 0, k),
                i(RET | K, 0, 0, 10),
                i(RET | K, 0, 0, 20),
            ])
            .run(&[], 0)
        };
        assert_eq!(j(JMP | JEQ | K, 5, 5), 20);
        assert_eq!(j(JMP | JEQ | X, 5, 6), 10);
        assert_eq!(j(JMP | JGT | K, u32::MAX, 1), 20);
        assert_eq!(j(JMP | JGT | X, 1, 1), 10);
        assert_eq!(j(JMP | JGE | K, 1, 1), 20);
        assert_eq!(j(JMP | JGE | X, 0, 1), 10);
        assert_eq!(j(JMP | JSET | K, 6, 2), 20);
        assert_eq!(j(JMP | JSET | X, 6, 1), 10);
        let mem = prog(&[
            i(LD | MEM, 0, 0, 3),
            i(JMP | JEQ | K, 0, 5, 0),
            i(LD | IMM, 0, 0, 41),
            i(ST, 0, 0, 15),
            i(LDX | MEM, 0, 0, 15),
            i(JMP | JA, 0, 0, 1),
            i(RET | K, 0, 0, 0),
            i(STX, 0, 0, 2),
            i(MISC | TXA, 0, 0, 0),
            i(ALU | ADD | K, 0, 0, 1),
            i(MISC | TAX, 0, 0, 0),
            i(LD | MEM, 0, 0, 2),
            i(ALU | ADD | X, 0, 0, 0),
            i(RET | A, 0, 0, 0),
        ]);
        assert_eq!(mem.run(&[], 0), 41 + 42);
    }
}
