//! Entry counts of every hash map at once, from the kernel's own per-map counter: a BPF
//! iterator program (`iter/bpf_map`, Linux 5.8+) that calls the `bpf_map_sum_elem_count`
//! kfunc (Linux 6.6+, kernel/bpf/map_iter.c) for each map and writes `(map id, count)` to
//! its seq file. The counter is kept by the hash map code on every insert and delete
//! (per CPU, summed here), so a count costs a few loads per CPU whatever the map's size, and
//! neither keys nor values are read.
//!
//! The program is assembled here (ten instructions) with the ids of the two kernel
//! functions taken from the running kernel's BTF. Kernels that refuse it (older than 6.6, no
//! BTF, lockdown rules that refuse tracing programs) make [`MapCounts::load`] fail; the
//! caller then walks keys instead and says so.
//!
//! Must never: write to a map (the program only reads the counter), or trust the seq file's
//! bytes beyond whole 16-byte records.

use std::collections::HashMap;
use std::io::{self, Read as _};
use std::mem::zeroed;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use aya_obj::generated::{
    bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type, BPF_PSEUDO_KFUNC_CALL,
};

use crate::kernel::bpfsys::sys_bpf;
use crate::kernel::btf::Btf;

/// `BTF_KIND_FUNC`.
const KIND_FUNC: u8 = 12;

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is a valid value.
    unsafe { zeroed() }
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// The loaded iterator (its link); each [`MapCounts::read`] runs it once over every map.
#[derive(Debug)]
pub struct MapCounts {
    link: OwnedFd,
    _prog: OwnedFd,
}

fn func_id(btf: &Btf, name: &str) -> Option<u32> {
    (1..=btf.type_count()).find(|&id| btf.type_name(id) == Some((name, KIND_FUNC)))
}

impl MapCounts {
    /// The process's one iterator, loaded on first use (a watch reads it every tick: the
    /// load, verification and BTF parse happen once). `Err`: why this kernel refuses it.
    pub fn shared() -> io::Result<&'static MapCounts> {
        static ONE: std::sync::OnceLock<Result<MapCounts, (io::ErrorKind, String)>> =
            std::sync::OnceLock::new();
        ONE.get_or_init(|| MapCounts::load().map_err(|e| (e.kind(), e.to_string())))
            .as_ref()
            .map_err(|(k, e)| io::Error::new(*k, e.clone()))
    }

    /// Loads and links the iterator program; `Err` says why this kernel refuses it.
    pub fn load() -> io::Result<MapCounts> {
        let btf = Btf::from_sys().map_err(|e| io::Error::other(format!("vmlinux BTF: {e}")))?;
        let target = func_id(&btf, "bpf_iter_bpf_map")
            .ok_or_else(|| io::Error::other("no bpf_map iterator in this kernel's BTF"))?;
        let kfunc = func_id(&btf, "bpf_map_sum_elem_count").ok_or_else(|| {
            io::Error::other("no bpf_map_sum_elem_count kfunc (Linux 6.6+) in this kernel's BTF")
        })?;
        let id_off = btf
            .member_offset("bpf_map", "id")
            .map_err(|e| io::Error::other(format!("struct bpf_map: {e}")))?;
        let id_off = i16::try_from(id_off).map_err(|_| io::Error::other("bpf_map.id offset"))?;
        let insns = [
            insn(0x79, 6, 1, 0, 0),                                      // r6 = ctx->meta
            insn(0x79, 7, 1, 8, 0),                                      // r7 = ctx->map
            insn(0x15, 7, 0, 9, 0),                                      // if r7 == NULL goto out
            insn(0xbf, 1, 7, 0, 0),                                      // r1 = map
            insn(0x85, 0, BPF_PSEUDO_KFUNC_CALL as u8, 0, kfunc as i32), // bpf_map_sum_elem_count
            insn(0x7b, 10, 0, -8, 0),                                    // *(u64 *)(fp - 8) = count
            insn(0x61, 1, 7, id_off, 0),                                 // r1 = map->id
            insn(0x7b, 10, 1, -16, 0),                                   // *(u64 *)(fp - 16) = id
            insn(0x79, 1, 6, 0, 0),                                      // r1 = meta->seq
            insn(0xbf, 2, 10, 0, 0),                                     // r2 = fp
            insn(0x07, 2, 0, 0, -16),                                    // r2 = fp - 16
            insn(0xb7, 3, 0, 0, 16),                                     // r3 = 16
            insn(0x85, 0, 0, 0, 127),                                    // bpf_seq_write
            insn(0xb7, 0, 0, 0, 0),                                      // out: r0 = 0
            insn(0x95, 0, 0, 0, 0),                                      // exit
        ];
        // Fix the forward jump: from insn 2 to "out" (index 13): offset 13 - 3 = 10.
        let mut insns = insns;
        insns[2] = insn(0x15, 7, 0, 10, 0);
        let license = c"GPL";
        let mut log = vec![0u8; 64 << 10];
        let mut attr = zeroed_attr();
        // SAFETY: the PROG_LOAD variant: pointers to live buffers with their true sizes.
        unsafe {
            let p = &mut attr.__bindgen_anon_3;
            p.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
            p.expected_attach_type = bpf_attach_type::BPF_TRACE_ITER as u32;
            p.attach_btf_id = target;
            p.insn_cnt = insns.len() as u32;
            p.insns = insns.as_ptr() as u64;
            p.license = license.as_ptr() as u64;
            p.log_level = 1;
            p.log_buf = log.as_mut_ptr() as u64;
            p.log_size = log.len() as u32;
            for (d, s) in p.prog_name.iter_mut().zip(b"ds_map_count") {
                *d = *s as libc::c_char;
            }
        }
        let prog = match sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) {
            // SAFETY: BPF_PROG_LOAD returned a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[]));
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                return Err(io::Error::new(
                    e.kind(),
                    match last {
                        Some(l) => format!("the map-count iterator was refused: {e} ({l})"),
                        None => format!("the map-count iterator was refused: {e}"),
                    },
                ));
            }
        };
        let mut attr = zeroed_attr();
        // SAFETY: the LINK_CREATE variant with plain integers.
        unsafe {
            let l = &mut attr.link_create;
            l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
            l.attach_type = bpf_attach_type::BPF_TRACE_ITER as u32;
        }
        let link = sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr).map_err(|e| {
            io::Error::new(e.kind(), format!("linking the map-count iterator: {e}"))
        })?;
        Ok(MapCounts {
            // SAFETY: BPF_LINK_CREATE returned a new descriptor that nothing else owns.
            link: unsafe { OwnedFd::from_raw_fd(link as i32) },
            _prog: prog,
        })
    }

    /// Map id -> current entries, for every map of the system.
    pub fn read(&self) -> io::Result<HashMap<u32, u64>> {
        let mut attr = zeroed_attr();
        attr.iter_create.link_fd = self.link.as_raw_fd() as u32;
        let fd = sys_bpf(bpf_cmd::BPF_ITER_CREATE, &mut attr)?;
        // SAFETY: BPF_ITER_CREATE returned a new descriptor that nothing else owns.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(parse(&buf))
    }
}

/// `(id u64, count u64)` records (native endian); a cut record at the end is ignored.
fn parse(buf: &[u8]) -> HashMap<u32, u64> {
    buf.chunks_exact(16)
        .filter_map(|r| {
            let id = u64::from_ne_bytes(r.get(..8)?.try_into().ok()?);
            let n = u64::from_ne_bytes(r.get(8..16)?.try_into().ok()?);
            Some((u32::try_from(id).ok()?, n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_whole_or_ignored() {
        let mut b = Vec::new();
        b.extend(7u64.to_ne_bytes());
        b.extend(42u64.to_ne_bytes());
        b.extend(9u64.to_ne_bytes());
        b.extend([1, 2, 3]);
        let m = parse(&b);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&7], 42);
        assert!(parse(&[]).is_empty());
    }
}
