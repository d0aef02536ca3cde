//! Checks that the eBPF object and user space agree on the event ABI: every struct in
//! `capture_common::LAYOUTS` must have the same size and field offsets in the object's own
//! BTF (the `.BTF` section the compiler emitted for the kernel side).
//!
//! Must never: panic on a malformed object (the ELF and BTF readers are checked).

use object::{Object, ObjectSection};

use super::btf::Btf;

/// (struct name, size, [(field, offset)]), as in `capture_common::LAYOUTS`.
pub type Layout = (&'static str, usize, &'static [(&'static str, usize)]);

#[derive(Debug, thiserror::Error)]
pub enum AbiError {
    #[error("the eBPF object is not a readable ELF file: {0}")]
    Elf(String),
    #[error("the eBPF object has no .BTF section")]
    NoBtf,
    #[error("the eBPF object's BTF is malformed: {0}")]
    Btf(#[from] super::btf::BtfError),
    #[error("ABI mismatch between the eBPF object and user space: {}", .0.join("; "))]
    Mismatch(Vec<String>),
}

/// The `.BTF` section of an ELF object, parsed.
pub fn object_btf(elf: &[u8]) -> Result<Btf, AbiError> {
    let file = object::File::parse(elf).map_err(|e| AbiError::Elf(e.to_string()))?;
    let section = file.section_by_name(".BTF").ok_or(AbiError::NoBtf)?;
    let data = section.data().map_err(|e| AbiError::Elf(e.to_string()))?;
    Ok(Btf::parse(data.to_vec())?)
}

/// Compares `layouts` with the structs of the same names in `btf`.
pub fn check_layouts(btf: &Btf, layouts: &[Layout]) -> Result<(), AbiError> {
    let mut problems = Vec::new();
    for (name, size, fields) in layouts {
        let Some(id) = btf.find_struct(name) else {
            problems.push(format!("struct {name} missing from the object's BTF"));
            continue;
        };
        match btf.type_size(id) {
            Ok(s) if s as usize == *size => {}
            Ok(s) => problems.push(format!("{name} is {s} bytes in BTF, {size} in user space")),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
        for (field, offset) in fields.iter() {
            match btf.find_member(id, field) {
                Ok(Some((m, bits)))
                    if m.bitfield_size == 0 && bits % 8 == 0 && (bits / 8) as usize == *offset => {}
                Ok(Some((_, bits))) => problems.push(format!(
                    "{name}.{field} at bit {bits} in BTF, byte {offset} in user space"
                )),
                Ok(None) => problems.push(format!("{name}.{field} missing from the object's BTF")),
                Err(e) => problems.push(format!("{name}.{field}: {e}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AbiError::Mismatch(problems))
    }
}

/// Checks the built object against `capture_common::LAYOUTS`.
pub fn check_object(elf: &[u8]) -> Result<(), AbiError> {
    check_layouts(&object_btf(elf)?, capture_common::LAYOUTS)
}

#[cfg(test)]
mod tests {
    use super::super::btf::{builder::Builder, kind};
    use super::*;

    fn btf_with(reason_off_bits: u32, size: u32) -> Btf {
        let mut b = Builder::new();
        let u64t = b.int("u64", 8);
        b.composite(
            kind::STRUCT,
            "ReasonCounter",
            size,
            &[("seen", u64t, 0), ("ring_full", u64t, reason_off_bits)],
        );
        Btf::parse(b.build()).unwrap()
    }

    const LAYOUT: &[Layout] = &[("ReasonCounter", 16, &[("seen", 0), ("ring_full", 8)])];

    #[test]
    fn matching_layout_passes() {
        check_layouts(&btf_with(64, 16), LAYOUT).unwrap();
    }

    #[test]
    fn mismatches_are_listed() {
        let err = check_layouts(&btf_with(96, 24), LAYOUT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ABI mismatch between the eBPF object and user space: ReasonCounter is 24 bytes in BTF, 16 in user space; ReasonCounter.ring_full at bit 96 in BTF, byte 8 in user space"
        );
        let err = check_layouts(&btf_with(64, 16), &[("Nope", 1, &[])]).unwrap_err();
        assert_eq!(err.to_string(), "ABI mismatch between the eBPF object and user space: struct Nope missing from the object's BTF");
    }

    #[test]
    fn not_an_elf() {
        assert!(matches!(object_btf(b"not an elf"), Err(AbiError::Elf(_))));
    }
}
