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
    exec: Vec<Exec>,
}

/// The interpreter's form of an [`Op`]: one flat enum (one dispatch per instruction), plus
/// "load then jeq" fused, the most common pair in libpcap output (`ldh [12]; jeq #0x800`).
/// `exec[i]` stands for instruction i; a fused entry also does i + 1's jump, and
/// `exec[i + 1]` stays as it is for jumps that land there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exec {
    LdW(u32),
    LdH(u32),
    LdB(u32),
    LdIndW(u32),
    LdIndH(u32),
    LdIndB(u32),
    LdImm(u32),
    LdMem(u8),
    LdLen,
    LdxImm(u32),
    LdxMem(u8),
    LdxLen,
    LdxMsh(u32),
    St(u8),
    Stx(u8),
    AddK(u32),
    SubK(u32),
    MulK(u32),
    DivK(u32),
    ModK(u32),
    AndK(u32),
    OrK(u32),
    XorK(u32),
    LshK(u32),
    RshK(u32),
    AddX,
    SubX,
    MulX,
    DivX,
    ModX,
    AndX,
    OrX,
    XorX,
    LshX,
    RshX,
    Neg,
    Ja(u16),
    JeqK(u32, u16, u16),
    JgtK(u32, u16, u16),
    JgeK(u32, u16, u16),
    JsetK(u32, u16, u16),
    JeqX(u16, u16),
    JgtX(u16, u16),
    JgeX(u16, u16),
    JsetX(u16, u16),
    RetK(u32),
    RetA,
    Tax,
    Txa,
    /// ldh [off]; jeq #k, t, f
    LdHJeq(u16, u32, u16, u16),
    /// ldb [off]; jeq #k, t, f
    LdBJeq(u16, u32, u16, u16),
    /// ld [off]; jeq #k, t, f
    LdWJeq(u16, u32, u16, u16),
    /// ldh [x + off]; jeq #k, t, f
    LdIndHJeq(u16, u32, u16, u16),
    /// ldh [off]; jset #k, t, f
    LdHJset(u16, u32, u16, u16),
}

fn lower(op: Op) -> Exec {
    match op {
        Op::LdAbs(Size::W, k) => Exec::LdW(k),
        Op::LdAbs(Size::H, k) => Exec::LdH(k),
        Op::LdAbs(Size::B, k) => Exec::LdB(k),
        Op::LdInd(Size::W, k) => Exec::LdIndW(k),
        Op::LdInd(Size::H, k) => Exec::LdIndH(k),
        Op::LdInd(Size::B, k) => Exec::LdIndB(k),
        Op::LdImm(k) => Exec::LdImm(k),
        Op::LdMem(i) => Exec::LdMem(i),
        Op::LdLen => Exec::LdLen,
        Op::LdxImm(k) => Exec::LdxImm(k),
        Op::LdxMem(i) => Exec::LdxMem(i),
        Op::LdxLen => Exec::LdxLen,
        Op::LdxMsh(k) => Exec::LdxMsh(k),
        Op::St(i) => Exec::St(i),
        Op::Stx(i) => Exec::Stx(i),
        Op::AluK(o, k) => match o {
            AluOp::Add => Exec::AddK(k),
            AluOp::Sub => Exec::SubK(k),
            AluOp::Mul => Exec::MulK(k),
            AluOp::Div => Exec::DivK(k),
            AluOp::Mod => Exec::ModK(k),
            AluOp::And => Exec::AndK(k),
            AluOp::Or => Exec::OrK(k),
            AluOp::Xor => Exec::XorK(k),
            AluOp::Lsh => Exec::LshK(k),
            AluOp::Rsh => Exec::RshK(k),
        },
        Op::AluX(o) => match o {
            AluOp::Add => Exec::AddX,
            AluOp::Sub => Exec::SubX,
            AluOp::Mul => Exec::MulX,
            AluOp::Div => Exec::DivX,
            AluOp::Mod => Exec::ModX,
            AluOp::And => Exec::AndX,
            AluOp::Or => Exec::OrX,
            AluOp::Xor => Exec::XorX,
            AluOp::Lsh => Exec::LshX,
            AluOp::Rsh => Exec::RshX,
        },
        Op::Neg => Exec::Neg,
        Op::Ja(t) => Exec::Ja(t),
        Op::JmpK(j, k, t, f) => match j {
            JmpOp::Eq => Exec::JeqK(k, t, f),
            JmpOp::Gt => Exec::JgtK(k, t, f),
            JmpOp::Ge => Exec::JgeK(k, t, f),
            JmpOp::Set => Exec::JsetK(k, t, f),
        },
        Op::JmpX(j, t, f) => match j {
            JmpOp::Eq => Exec::JeqX(t, f),
            JmpOp::Gt => Exec::JgtX(t, f),
            JmpOp::Ge => Exec::JgeX(t, f),
            JmpOp::Set => Exec::JsetX(t, f),
        },
        Op::RetK(k) => Exec::RetK(k),
        Op::RetA => Exec::RetA,
        Op::Tax => Exec::Tax,
        Op::Txa => Exec::Txa,
    }
}

fn lower_all(ops: &[Op]) -> Vec<Exec> {
    let mut exec: Vec<Exec> = ops.iter().map(|&o| lower(o)).collect();
    for (i, pair) in ops.windows(2).enumerate() {
        let [load, Op::JmpK(j, k, t, f)] = *pair else {
            continue;
        };
        let (Op::LdAbs(_, off) | Op::LdInd(_, off)) = load else {
            continue;
        };
        let Ok(off) = u16::try_from(off) else {
            continue;
        };
        let Some(slot) = exec.get_mut(i) else {
            continue;
        };
        *slot = match (load, j) {
            (Op::LdAbs(Size::H, _), JmpOp::Eq) => Exec::LdHJeq(off, k, t, f),
            (Op::LdAbs(Size::B, _), JmpOp::Eq) => Exec::LdBJeq(off, k, t, f),
            (Op::LdAbs(Size::W, _), JmpOp::Eq) => Exec::LdWJeq(off, k, t, f),
            (Op::LdInd(Size::H, _), JmpOp::Eq) => Exec::LdIndHJeq(off, k, t, f),
            (Op::LdAbs(Size::H, _), JmpOp::Set) => Exec::LdHJset(off, k, t, f),
            _ => continue,
        };
    }
    exec
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

/// `t` when `c`, else `f`, as a conditional branch, not a select: a select makes every
/// step's instruction fetch wait for the previous comparison (a chain of dependent loads
/// through the whole program), while a predicted branch lets the CPU run ahead. The empty
/// `asm!` in one arm keeps the compiler from turning the two arms into a select.
#[inline(always)]
fn branch(c: bool, t: u16, f: u16) -> usize {
    if c {
        usize::from(t)
    } else {
        // SAFETY: an empty instruction sequence: touches no memory, stack or flags.
        unsafe { core::arch::asm!("", options(nomem, nostack, preserves_flags)) };
        usize::from(f)
    }
}

/// `P[off..off+N]` as a big-endian number, or `None` past the captured bytes.
#[inline(always)]
fn load<const N: usize>(pkt: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(N)?;
    let b = pkt.get(off..end)?;
    Some(match *b {
        [b0, b1, b2, b3] => u32::from_be_bytes([b0, b1, b2, b3]),
        [b0, b1] => u32::from(u16::from_be_bytes([b0, b1])),
        [b0] => u32::from(b0),
        _ => return None,
    })
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
        let exec = lower_all(&ops);
        Ok(Program { insns, ops, exec })
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
        let code = self.exec.as_slice();
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut m = [0u32; MEMWORDS];
        let mut pc = 0usize;
        // Out of the captured bytes (or a zero divisor): reject.
        macro_rules! get {
            ($e:expr) => {
                match $e {
                    Some(v) => v,
                    None => return 0,
                }
            };
        }
        let ind = |x: u32, k: u32| (x as usize).checked_add(k as usize);
        loop {
            // SAFETY: `Program::new` checked that every jump lands inside the program and
            // that the last instruction returns, so `pc` never passes the end: each step
            // either returns, jumps to a checked index, or goes to the next instruction of
            // one that is not the last.
            let op = unsafe { *code.get_unchecked(pc) };
            pc += 1;
            match op {
                Exec::LdW(k) => a = get!(load::<4>(pkt, k as usize)),
                Exec::LdH(k) => a = get!(load::<2>(pkt, k as usize)),
                Exec::LdB(k) => a = get!(load::<1>(pkt, k as usize)),
                Exec::LdIndW(k) => a = get!(load::<4>(pkt, get!(ind(x, k)))),
                Exec::LdIndH(k) => a = get!(load::<2>(pkt, get!(ind(x, k)))),
                Exec::LdIndB(k) => a = get!(load::<1>(pkt, get!(ind(x, k)))),
                Exec::LdImm(k) => a = k,
                // (Masked: always inside `m`.)
                Exec::LdMem(i) => a = m.get(usize::from(i) & (MEMWORDS - 1)).copied().unwrap_or(0),
                Exec::LdLen => a = wirelen,
                Exec::LdxImm(k) => x = k,
                Exec::LdxMem(i) => x = m.get(usize::from(i) & (MEMWORDS - 1)).copied().unwrap_or(0),
                Exec::LdxLen => x = wirelen,
                Exec::LdxMsh(k) => x = (get!(load::<1>(pkt, k as usize)) & 0xf) << 2,
                Exec::St(i) => {
                    if let Some(w) = m.get_mut(usize::from(i) & (MEMWORDS - 1)) {
                        *w = a;
                    }
                }
                Exec::Stx(i) => {
                    if let Some(w) = m.get_mut(usize::from(i) & (MEMWORDS - 1)) {
                        *w = x;
                    }
                }
                Exec::AddK(k) => a = a.wrapping_add(k),
                Exec::SubK(k) => a = a.wrapping_sub(k),
                Exec::MulK(k) => a = a.wrapping_mul(k),
                Exec::DivK(k) => a = get!(a.checked_div(k)),
                Exec::ModK(k) => a = get!(a.checked_rem(k)),
                Exec::AndK(k) => a &= k,
                Exec::OrK(k) => a |= k,
                Exec::XorK(k) => a ^= k,
                Exec::LshK(k) => a = a.wrapping_shl(k),
                Exec::RshK(k) => a = a.wrapping_shr(k),
                Exec::AddX => a = a.wrapping_add(x),
                Exec::SubX => a = a.wrapping_sub(x),
                Exec::MulX => a = a.wrapping_mul(x),
                Exec::DivX => a = get!(a.checked_div(x)),
                Exec::ModX => a = get!(a.checked_rem(x)),
                Exec::AndX => a &= x,
                Exec::OrX => a |= x,
                Exec::XorX => a ^= x,
                Exec::LshX => a = a.wrapping_shl(x),
                Exec::RshX => a = a.wrapping_shr(x),
                Exec::Neg => a = a.wrapping_neg(),
                Exec::Ja(t) => pc = usize::from(t),
                Exec::JeqK(k, t, f) => pc = branch(a == k, t, f),
                Exec::JgtK(k, t, f) => pc = branch(a > k, t, f),
                Exec::JgeK(k, t, f) => pc = branch(a >= k, t, f),
                Exec::JsetK(k, t, f) => pc = branch(a & k != 0, t, f),
                Exec::JeqX(t, f) => pc = branch(a == x, t, f),
                Exec::JgtX(t, f) => pc = branch(a > x, t, f),
                Exec::JgeX(t, f) => pc = branch(a >= x, t, f),
                Exec::JsetX(t, f) => pc = branch(a & x != 0, t, f),
                Exec::RetK(k) => return k,
                Exec::RetA => return a,
                Exec::Tax => x = a,
                Exec::Txa => a = x,
                Exec::LdHJeq(off, k, t, f) => {
                    a = get!(load::<2>(pkt, usize::from(off)));
                    pc = branch(a == k, t, f);
                }
                Exec::LdBJeq(off, k, t, f) => {
                    a = get!(load::<1>(pkt, usize::from(off)));
                    pc = branch(a == k, t, f);
                }
                Exec::LdWJeq(off, k, t, f) => {
                    a = get!(load::<4>(pkt, usize::from(off)));
                    pc = branch(a == k, t, f);
                }
                Exec::LdIndHJeq(off, k, t, f) => {
                    a = get!(load::<2>(pkt, get!(ind(x, u32::from(off)))));
                    pc = branch(a == k, t, f);
                }
                Exec::LdHJset(off, k, t, f) => {
                    a = get!(load::<2>(pkt, usize::from(off)));
                    pc = branch(a & k != 0, t, f);
                }
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
