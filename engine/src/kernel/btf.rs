//! A small BTF reader: enough of the BPF Type Format to find a struct member's byte offset
//! (through anonymous struct/union members and typedef/const/volatile/pointer chains) and
//! to list enums with their values.
//!
//! It reads the kernel's `/sys/kernel/btf/vmlinux`, module BTF (split BTF on top of vmlinux)
//! and the `.BTF` section of our own eBPF object. The format is described in the kernel's
//! [Documentation/bpf/btf.rst](https://github.com/torvalds/linux/blob/v6.18/Documentation/bpf/btf.rst).
//!
//! Input is untrusted: this module never indexes, slices or unwraps on the blob; every read
//! is a checked `get`, every offset addition is checked, and a malformed type section is an
//! error, never a panic. Member lookups recurse at most [`MAX_DEPTH`] levels.

use std::{collections::HashMap, path::Path, sync::Arc};

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// How deep member lookups and type resolution may recurse (cycles in hostile input).
pub const MAX_DEPTH: usize = 32;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_LEN: usize = 12;

/// BTF kinds (`BTF_KIND_*`).
pub mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;
}

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF from {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF blob too short: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    #[error("bad BTF magic {magic:#06x} (want 0xeb9f)")]
    BadMagic { magic: u16 },
    #[error("BTF version {version} is not supported (want 1)")]
    BadVersion { version: u8 },
    #[error("BTF {section} section [{start}, +{len}) lies outside the {have}-byte blob")]
    SectionOutOfBounds {
        section: &'static str,
        start: u64,
        len: u64,
        have: usize,
    },
    #[error("BTF type {id} at byte {offset}: unknown kind {kind}")]
    BadKind { id: u32, offset: usize, kind: u8 },
    #[error("BTF type {id} at byte {offset} runs past the end of the type section")]
    TruncatedType { id: u32, offset: usize },
    #[error("BTF type {id} does not exist ({count} types)")]
    NoSuchType { id: u32, count: u32 },
    #[error("BTF has no struct or union named `{name}`")]
    StructNotFound { name: String },
    #[error("struct `{owner}` has no member `{member}`")]
    MemberNotFound { owner: String, member: String },
    #[error("member `{member}` of `{owner}` is a bitfield or not byte aligned (bit {bit})")]
    NotByteAligned {
        owner: String,
        member: String,
        bit: u32,
    },
    #[error("member `{member}`: its type {id} is not a struct or union")]
    NotAComposite { member: String, id: u32 },
    #[error("type chain of {id} is deeper than {max} levels (cycle?)")]
    TooDeep { id: u32, max: usize },
}

/// One type entry as read from the blob (kind-specific data is read on demand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TypeEntry {
    /// Offset of the kind-specific data following the 12-byte common header, in the blob.
    extra: u32,
    name_off: u32,
    kind: u8,
    kind_flag: bool,
    vlen: u16,
    size_or_type: u32,
}

/// A member of a struct or union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    /// Offset from the start of the containing struct, in bits.
    pub bit_offset: u32,
    /// Bitfield size in bits (0 when not a bitfield).
    pub bitfield_size: u32,
}

/// An enum (`BTF_KIND_ENUM` or `BTF_KIND_ENUM64`) with its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumInfo {
    /// Empty for anonymous enums.
    pub name: String,
    /// `(name, value)`; values of signed 32-bit enums are sign-extended.
    pub values: Vec<(String, i64)>,
}

/// A parsed BTF blob (base BTF such as vmlinux, or split BTF such as a module's).
#[derive(Clone, Debug)]
pub struct Btf {
    data: Vec<u8>,
    big_endian: bool,
    /// Type ids of this blob start here (1 for base BTF).
    first_id: u32,
    types: Vec<TypeEntry>,
    strings: Arc<[u8]>,
    /// Strings of the base BTF (split BTF only): offsets below its length refer to it.
    base_strings: Option<Arc<[u8]>>,
    /// Struct/union ids by name (first definition with members wins).
    composites: HashMap<String, u32>,
}

impl Btf {
    /// Reads and parses the running kernel's BTF.
    pub fn from_sys() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Btf::parse(data)
    }

    /// Parses a base (standalone) BTF blob.
    pub fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        Btf::parse_inner(data, None)
    }

    /// Parses split BTF (e.g. `/sys/kernel/btf/<module>`) whose ids and strings continue
    /// those of `base`. Only this blob's own types are visible through the result.
    pub fn parse_split(data: Vec<u8>, base: &Btf) -> Result<Btf, BtfError> {
        Btf::parse_inner(data, Some(base))
    }

    fn parse_inner(data: Vec<u8>, base: Option<&Btf>) -> Result<Btf, BtfError> {
        let have = data.len();
        let head = data.get(..HEADER_LEN).ok_or(BtfError::TooShort {
            need: HEADER_LEN,
            have,
        })?;
        let magic_le = u16::from_le_bytes([byte(head, 0), byte(head, 1)]);
        let big_endian = match magic_le {
            MAGIC => false,
            m if m.swap_bytes() == MAGIC => true,
            magic => return Err(BtfError::BadMagic { magic }),
        };
        let version = byte(head, 2);
        if version != 1 {
            return Err(BtfError::BadVersion { version });
        }
        let rd = |at: usize| read_u32(head, at, big_endian).unwrap_or(0);
        let hdr_len = rd(4) as usize;
        let (type_off, type_len, str_off, str_len) = (rd(8), rd(12), rd(16), rd(20));
        if hdr_len < HEADER_LEN {
            return Err(BtfError::TooShort {
                need: HEADER_LEN,
                have: hdr_len,
            });
        }
        let section = |name, off: u32, len: u32| -> Result<(usize, usize), BtfError> {
            let start = (hdr_len as u64) + u64::from(off);
            let end = start + u64::from(len);
            if end > have as u64 {
                return Err(BtfError::SectionOutOfBounds {
                    section: name,
                    start,
                    len: u64::from(len),
                    have,
                });
            }
            Ok((start as usize, end as usize))
        };
        let (t_start, t_end) = section("type", type_off, type_len)?;
        let (s_start, s_end) = section("string", str_off, str_len)?;
        let strings: Arc<[u8]> = Arc::from(data.get(s_start..s_end).unwrap_or_default());

        let first_id = match base {
            Some(b) => b.first_id.saturating_add(b.types.len() as u32),
            None => 1,
        };
        let mut btf = Btf {
            data,
            big_endian,
            first_id,
            types: Vec::new(),
            strings,
            base_strings: base.map(|b| Arc::clone(&b.strings)),
            composites: HashMap::new(),
        };
        btf.types = btf.scan_types(t_start, t_end)?;
        btf.index_composites();
        Ok(btf)
    }

    fn scan_types(&self, start: usize, end: usize) -> Result<Vec<TypeEntry>, BtfError> {
        let mut types = Vec::new();
        let mut pos = start;
        while pos < end {
            let id = self.first_id.saturating_add(types.len() as u32);
            let truncated = BtfError::TruncatedType { id, offset: pos };
            if pos + TYPE_LEN > end {
                return Err(truncated);
            }
            let name_off = self.u32_at(pos).ok_or(BtfError::TooShort {
                need: pos + 4,
                have: end,
            })?;
            let info = self.u32_at(pos + 4).unwrap_or(0);
            let size_or_type = self.u32_at(pos + 8).unwrap_or(0);
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as u16;
            let n = usize::from(vlen);
            let extra_len = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * n,
                kind::ENUM | kind::FUNC_PROTO => 8 * n,
                other => {
                    return Err(BtfError::BadKind {
                        id,
                        offset: pos,
                        kind: other,
                    })
                }
            };
            let next = pos + TYPE_LEN + extra_len;
            if next > end {
                return Err(truncated);
            }
            types.push(TypeEntry {
                extra: (pos + TYPE_LEN) as u32,
                name_off,
                kind,
                kind_flag: info >> 31 == 1,
                vlen,
                size_or_type,
            });
            pos = next;
        }
        Ok(types)
    }

    fn index_composites(&mut self) {
        let mut map = HashMap::new();
        for (i, t) in self.types.iter().enumerate() {
            if !matches!(t.kind, kind::STRUCT | kind::UNION) || t.name_off == 0 {
                continue;
            }
            let Some(name) = self.str_at(t.name_off) else {
                continue;
            };
            let id = self.first_id.saturating_add(i as u32);
            match map.get(name) {
                // Keep the first definition that has members (empty ones are placeholders).
                Some(&old) if self.entry(old).is_some_and(|e| e.vlen > 0) => {}
                _ => {
                    map.insert(name.to_string(), id);
                }
            }
        }
        self.composites = map;
    }

    /// Length of this blob's own string section.
    pub fn strings_len(&self) -> usize {
        self.strings.len()
    }

    /// Number of types in this blob (not counting a base).
    pub fn type_count(&self) -> u32 {
        self.types.len() as u32
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        read_u32(&self.data, at, self.big_endian)
    }

    fn entry(&self, id: u32) -> Option<TypeEntry> {
        let idx = id.checked_sub(self.first_id)?;
        self.types.get(idx as usize).copied()
    }

    fn entry_or_err(&self, id: u32) -> Result<TypeEntry, BtfError> {
        self.entry(id).ok_or(BtfError::NoSuchType {
            id,
            count: self.type_count(),
        })
    }

    /// The NUL-terminated string at `off` (in the base's strings first, for split BTF).
    fn str_at(&self, off: u32) -> Option<&str> {
        let (table, off) = match &self.base_strings {
            Some(base) if (off as usize) < base.len() => (base, off as usize),
            Some(base) => (&self.strings, off as usize - base.len()),
            None => (&self.strings, off as usize),
        };
        let rest = table.get(off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(rest.get(..end)?).ok()
    }

    fn name_of(&self, t: &TypeEntry) -> &str {
        self.str_at(t.name_off).unwrap_or("")
    }

    /// The id of the struct or union called `name`.
    pub fn find_struct(&self, name: &str) -> Option<u32> {
        self.composites.get(name).copied()
    }

    /// The name and kind of type `id`.
    pub fn type_name(&self, id: u32) -> Option<(&str, u8)> {
        let t = self.entry(id)?;
        Some((self.name_of(&t), t.kind))
    }

    /// Byte size of a struct, union, int, enum or float type (after resolving typedefs).
    pub fn type_size(&self, id: u32) -> Result<u32, BtfError> {
        let mut id = id;
        let mut count: u32 = 1;
        for _ in 0..MAX_DEPTH {
            id = self.skip_modifiers(id)?;
            let t = self.entry_or_err(id)?;
            match t.kind {
                kind::PTR => return Ok(count.saturating_mul(8)),
                kind::ARRAY => {
                    id = self.u32_at(t.extra as usize).unwrap_or(0);
                    let n = self.u32_at(t.extra as usize + 8).unwrap_or(0);
                    count = count.saturating_mul(n);
                }
                _ => return Ok(count.saturating_mul(t.size_or_type)),
            }
        }
        Err(BtfError::TooDeep { id, max: MAX_DEPTH })
    }

    /// The members of struct/union `id`, in declaration order.
    pub fn members(&self, id: u32) -> Result<Vec<Member>, BtfError> {
        let t = self.entry_or_err(id)?;
        if !matches!(t.kind, kind::STRUCT | kind::UNION) {
            return Err(BtfError::NotAComposite {
                member: self.name_of(&t).to_string(),
                id,
            });
        }
        let mut out = Vec::with_capacity(usize::from(t.vlen));
        for i in 0..usize::from(t.vlen) {
            let at = t.extra as usize + 12 * i;
            let (Some(name_off), Some(type_id), Some(raw)) =
                (self.u32_at(at), self.u32_at(at + 4), self.u32_at(at + 8))
            else {
                break;
            };
            let (bit_offset, bitfield_size) = if t.kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            out.push(Member {
                name: self.str_at(name_off).unwrap_or("").to_string(),
                type_id,
                bit_offset,
                bitfield_size,
            });
        }
        Ok(out)
    }

    /// Follows typedef, const, volatile, restrict and type-tag links to the underlying type.
    pub fn skip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            let t = self.entry_or_err(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::TooDeep { id, max: MAX_DEPTH })
    }

    /// If `id` is (through modifiers) a pointer, the type it points to (modifiers skipped).
    pub fn pointee(&self, id: u32) -> Result<Option<u32>, BtfError> {
        let id = self.skip_modifiers(id)?;
        let t = self.entry_or_err(id)?;
        if t.kind != kind::PTR {
            return Ok(None);
        }
        if t.size_or_type == 0 {
            return Ok(Some(0)); // void *
        }
        Ok(Some(self.skip_modifiers(t.size_or_type)?))
    }

    /// Finds `member` in struct/union `id`, looking through anonymous struct/union members.
    /// Returns the member and its bit offset from the start of `id`.
    pub fn find_member(&self, id: u32, member: &str) -> Result<Option<(Member, u32)>, BtfError> {
        self.find_member_depth(id, member, 0)
    }

    fn find_member_depth(
        &self,
        id: u32,
        member: &str,
        depth: usize,
    ) -> Result<Option<(Member, u32)>, BtfError> {
        if depth >= MAX_DEPTH {
            return Err(BtfError::TooDeep { id, max: MAX_DEPTH });
        }
        let members = self.members(id)?;
        for m in &members {
            if m.name == member {
                return Ok(Some((m.clone(), m.bit_offset)));
            }
        }
        for m in &members {
            if !m.name.is_empty() {
                continue;
            }
            let inner = self.skip_modifiers(m.type_id)?;
            let is_composite = self
                .entry(inner)
                .is_some_and(|t| matches!(t.kind, kind::STRUCT | kind::UNION));
            if !is_composite {
                continue;
            }
            if let Some((found, off)) = self.find_member_depth(inner, member, depth + 1)? {
                return Ok(Some((found, off.saturating_add(m.bit_offset))));
            }
        }
        Ok(None)
    }

    /// Byte offset of a member path such as `"nd_net.net"` or `"__sk_common.skc_net.net"`
    /// from the start of struct `owner`. Every segment but the last must be a struct or union
    /// member (embedded, not a pointer); anonymous members are searched transparently.
    pub fn member_offset(&self, owner: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self
            .find_struct(owner)
            .ok_or_else(|| BtfError::StructNotFound {
                name: owner.to_string(),
            })?;
        let mut bits: u32 = 0;
        let mut segments = path.split('.').peekable();
        while let Some(seg) = segments.next() {
            let (m, off) = self
                .find_member(id, seg)?
                .ok_or_else(|| BtfError::MemberNotFound {
                    owner: owner.to_string(),
                    member: path.to_string(),
                })?;
            if m.bitfield_size != 0 || off % 8 != 0 {
                return Err(BtfError::NotByteAligned {
                    owner: owner.to_string(),
                    member: path.to_string(),
                    bit: off,
                });
            }
            bits = bits.saturating_add(off);
            if segments.peek().is_some() {
                id = self.skip_modifiers(m.type_id)?;
                let is_composite = self
                    .entry(id)
                    .is_some_and(|t| matches!(t.kind, kind::STRUCT | kind::UNION));
                if !is_composite {
                    return Err(BtfError::NotAComposite {
                        member: seg.to_string(),
                        id,
                    });
                }
            }
        }
        Ok(bits / 8)
    }

    /// The type of a member path (see [`Btf::member_offset`]), modifiers skipped.
    pub fn member_type(&self, owner: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self
            .find_struct(owner)
            .ok_or_else(|| BtfError::StructNotFound {
                name: owner.to_string(),
            })?;
        for seg in path.split('.') {
            let (m, _) = self
                .find_member(id, seg)?
                .ok_or_else(|| BtfError::MemberNotFound {
                    owner: owner.to_string(),
                    member: path.to_string(),
                })?;
            id = self.skip_modifiers(m.type_id)?;
        }
        Ok(id)
    }

    /// All enums (32- and 64-bit) of this blob.
    pub fn enums(&self) -> impl Iterator<Item = EnumInfo> + '_ {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, kind::ENUM | kind::ENUM64))
            .map(|t| self.enum_info(t))
    }

    /// The first enum called `name`.
    pub fn find_enum(&self, name: &str) -> Option<EnumInfo> {
        self.types
            .iter()
            .find(|t| matches!(t.kind, kind::ENUM | kind::ENUM64) && self.name_of(t) == name)
            .map(|t| self.enum_info(t))
    }

    fn enum_info(&self, t: &TypeEntry) -> EnumInfo {
        let wide = t.kind == kind::ENUM64;
        let stride = if wide { 12 } else { 8 };
        let mut values = Vec::with_capacity(usize::from(t.vlen));
        for i in 0..usize::from(t.vlen) {
            let at = t.extra as usize + stride * i;
            let (Some(name_off), Some(lo)) = (self.u32_at(at), self.u32_at(at + 4)) else {
                break;
            };
            let value = if wide {
                let hi = self.u32_at(at + 8).unwrap_or(0);
                ((u64::from(hi) << 32) | u64::from(lo)) as i64
            } else if t.kind_flag {
                // kind_flag set: signed enum.
                i64::from(lo as i32)
            } else {
                i64::from(lo)
            };
            values.push((self.str_at(name_off).unwrap_or("").to_string(), value));
        }
        EnumInfo {
            name: self.name_of(t).to_string(),
            values,
        }
    }
}

fn byte(b: &[u8], at: usize) -> u8 {
    crate::wire::u8_at(b, at).unwrap_or(0)
}

fn read_u32(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    use crate::wire::Endian;
    crate::wire::u32_at(
        b,
        at,
        if big_endian {
            Endian::Big
        } else {
            Endian::Little
        },
    )
}

/// Builds synthetic BTF blobs for tests (little-endian).
#[cfg(test)]
pub(crate) mod builder {
    use super::kind;

    #[derive(Default)]
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        /// For split BTF: the base's type count and string length.
        base_types: u32,
        base_str_len: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Builder {
                strings: vec![0],
                next_id: 1,
                ..Default::default()
            }
        }

        pub fn split(base_types: u32, base_str_len: u32) -> Self {
            Builder {
                strings: Vec::new(),
                next_id: base_types + 1,
                base_types,
                base_str_len,
                ..Default::default()
            }
        }

        pub fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() && self.base_types == 0 {
                return 0;
            }
            let off = self.strings.len() as u32 + self.base_str_len;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn head(&mut self, name: &str, k: u8, vlen: u16, kflag: bool, size_or_type: u32) -> u32 {
            let name_off = if name.is_empty() { 0 } else { self.str(name) };
            let info = (u32::from(k) << 24) | u32::from(vlen) | if kflag { 1 << 31 } else { 0 };
            for v in [name_off, info, size_or_type] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn u32s(&mut self, vals: &[u32]) {
            for v in vals {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
        }

        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.head(name, kind::INT, 0, false, size);
            self.u32s(&[size * 8]);
            id
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.head("", kind::PTR, 0, false, to)
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.head(name, kind::TYPEDEF, 0, false, to)
        }

        pub fn modifier(&mut self, k: u8, to: u32) -> u32 {
            self.head("", k, 0, false, to)
        }

        pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            let id = self.head("", kind::ARRAY, 0, false, 0);
            self.u32s(&[elem, index, n]);
            id
        }

        /// `members`: (name, type, bit offset).
        pub fn composite(
            &mut self,
            k: u8,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.head(name, k, members.len() as u16, false, size);
            for (n, t, off) in members {
                let no = if n.is_empty() { 0 } else { self.str(n) };
                self.u32s(&[no, *t, *off]);
            }
            id
        }

        /// A struct with kind_flag set and one bitfield member per entry: (name, type, bit off, bits).
        pub fn bitfield_struct(
            &mut self,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let id = self.head(name, kind::STRUCT, members.len() as u16, true, size);
            for (n, t, off, bits) in members {
                let no = self.str(n);
                self.u32s(&[no, *t, (bits << 24) | off]);
            }
            id
        }

        pub fn enum32(&mut self, name: &str, signed: bool, values: &[(&str, i32)]) -> u32 {
            let id = self.head(name, kind::ENUM, values.len() as u16, signed, 4);
            for (n, v) in values {
                let no = self.str(n);
                self.u32s(&[no, *v as u32]);
            }
            id
        }

        pub fn enum64(&mut self, name: &str, values: &[(&str, u64)]) -> u32 {
            let id = self.head(name, kind::ENUM64, values.len() as u16, false, 8);
            for (n, v) in values {
                let no = self.str(n);
                self.u32s(&[no, *v as u32, (*v >> 32) as u32]);
            }
            id
        }

        pub fn func_proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let id = self.head("", kind::FUNC_PROTO, params.len() as u16, false, ret);
            for p in params {
                self.u32s(&[0, *p]);
            }
            id
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1);
            out.push(0);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::builder::Builder;
    use super::*;
    use proptest::prelude::*;

    /// A miniature of the kernel layout: sk_buff with members inside anonymous unions and a
    /// struct_group-like anonymous struct, net_device with possible_net_t, net with ns.inum.
    fn kernel_like() -> Vec<u8> {
        let mut b = Builder::new();
        let u8t = b.int("unsigned char", 1);
        let u16t = b.int("unsigned short", 2);
        let u32t = b.int("unsigned int", 4);
        let be16 = b.typedef("__be16", u16t);
        let vol_u32 = b.modifier(kind::VOLATILE, u32t);
        let c_u32 = b.modifier(kind::CONST, vol_u32);
        // Forward declaration first: must not shadow the real struct.
        let _fwd_like = b.composite(kind::STRUCT, "net", 0, &[]);
        let ns_common = b.composite(
            kind::STRUCT,
            "ns_common",
            16,
            &[("stashed", u32t, 0), ("inum", c_u32, 64)],
        );
        let net = b.composite(
            kind::STRUCT,
            "net",
            128,
            &[("refcnt", u32t, 0), ("ns", ns_common, 512)],
        );
        let pnet = b.ptr(net);
        let possible = b.composite(kind::STRUCT, "", 8, &[("net", pnet, 0)]);
        let possible_t = b.typedef("possible_net_t", possible);
        let dev = b.composite(
            kind::STRUCT,
            "net_device",
            2048,
            &[
                ("name", u8t, 0),
                ("ifindex", u32t, 1728),
                ("nd_net", possible_t, 2816),
            ],
        );
        let pdev = b.ptr(dev);
        let pu8 = b.ptr(u8t);
        let dev_union = b.composite(
            kind::UNION,
            "",
            8,
            &[("dev", pdev, 0), ("dev_scratch", u32t, 0)],
        );
        let headers = b.composite(
            kind::STRUCT,
            "",
            8,
            &[
                ("protocol", be16, 0),
                ("transport_header", u16t, 16),
                ("network_header", u16t, 32),
                ("mac_header", u16t, 48),
            ],
        );
        let group = b.composite(
            kind::UNION,
            "",
            8,
            &[("", headers, 0), ("headers", headers, 0)],
        );
        let _skb = b.composite(
            kind::STRUCT,
            "sk_buff",
            232,
            &[
                ("next", pu8, 0),
                ("", dev_union, 128),
                ("len", u32t, 896),
                ("", group, 1280),
                ("head", pu8, 1536),
                ("data", pu8, 1600),
            ],
        );
        let arr = b.array(u32t, u32t, 6);
        b.composite(kind::STRUCT, "with_array", 24, &[("a", arr, 0)]);
        b.func_proto(u32t, &[pu8, u32t]);
        b.enum32(
            "skb_drop_reason",
            false,
            &[("SKB_NOT_DROPPED_YET", 0), ("SKB_DROP_REASON_NO_SOCKET", 3)],
        );
        b.enum64("big", &[("BIG_ONE", 1u64 << 40)]);
        b.enum32("signed_e", true, &[("NEG", -2)]);
        b.build()
    }

    #[test]
    fn member_offsets_through_anonymous_members() {
        let btf = Btf::parse(kernel_like()).unwrap();
        assert_eq!(btf.member_offset("sk_buff", "len").unwrap(), 112);
        assert_eq!(btf.member_offset("sk_buff", "dev").unwrap(), 16);
        assert_eq!(btf.member_offset("sk_buff", "protocol").unwrap(), 160);
        assert_eq!(btf.member_offset("sk_buff", "network_header").unwrap(), 164);
        assert_eq!(btf.member_offset("sk_buff", "mac_header").unwrap(), 166);
        assert_eq!(btf.member_offset("sk_buff", "head").unwrap(), 192);
        assert_eq!(btf.member_offset("sk_buff", "data").unwrap(), 200);
        assert_eq!(btf.member_offset("net_device", "ifindex").unwrap(), 216);
        // possible_net_t is a typedef of an anonymous struct: the path follows it.
        assert_eq!(btf.member_offset("net_device", "nd_net.net").unwrap(), 352);
        assert_eq!(btf.member_offset("net", "ns.inum").unwrap(), 72);
    }

    #[test]
    fn member_types_follow_typedefs_and_pointers() {
        let btf = Btf::parse(kernel_like()).unwrap();
        let net = btf.find_struct("net").unwrap();
        assert_eq!(btf.type_size(net).unwrap(), 128);
        let t = btf.member_type("net_device", "nd_net.net").unwrap();
        assert_eq!(btf.pointee(t).unwrap(), Some(net));
        let dev_t = btf.member_type("sk_buff", "dev").unwrap();
        let dev = btf.pointee(dev_t).unwrap().unwrap();
        assert_eq!(btf.type_name(dev), Some(("net_device", kind::STRUCT)));
        // const volatile u32 resolves to the int.
        let inum = btf.member_type("net", "ns.inum").unwrap();
        assert_eq!(btf.type_name(inum), Some(("unsigned int", kind::INT)));
        assert_eq!(btf.type_size(inum).unwrap(), 4);
        assert_eq!(btf.pointee(inum).unwrap(), None);
        let arr = btf.member_type("with_array", "a").unwrap();
        assert_eq!(btf.type_size(arr).unwrap(), 24);
        let proto = btf.member_type("sk_buff", "protocol").unwrap();
        assert_eq!(btf.type_size(proto).unwrap(), 2);
    }

    #[test]
    fn missing_things_are_errors() {
        let btf = Btf::parse(kernel_like()).unwrap();
        assert!(matches!(
            btf.member_offset("nope", "x"),
            Err(BtfError::StructNotFound { .. })
        ));
        assert!(matches!(
            btf.member_offset("sk_buff", "nope"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(matches!(
            btf.member_offset("sk_buff", "len.x"),
            Err(BtfError::NotAComposite { .. })
        ));
        assert!(matches!(
            btf.type_size(9999),
            Err(BtfError::NoSuchType { id: 9999, .. })
        ));
    }

    #[test]
    fn bitfields_are_rejected() {
        let mut b = Builder::new();
        let u8t = b.int("u8", 1);
        b.bitfield_struct("flags", 1, &[("a", u8t, 0, 1), ("b", u8t, 8, 8)]);
        let btf = Btf::parse(b.build()).unwrap();
        assert!(matches!(
            btf.member_offset("flags", "a"),
            Err(BtfError::NotByteAligned { .. })
        ));
        // A kind_flag member with an 8-bit size is still reported as a bitfield.
        let members = btf.members(btf.find_struct("flags").unwrap()).unwrap();
        assert_eq!(members[1].bit_offset, 8);
        assert_eq!(members[1].bitfield_size, 8);
    }

    #[test]
    fn enums_and_values() {
        let btf = Btf::parse(kernel_like()).unwrap();
        let e = btf.find_enum("skb_drop_reason").unwrap();
        assert_eq!(
            e.values,
            vec![
                ("SKB_NOT_DROPPED_YET".to_string(), 0),
                ("SKB_DROP_REASON_NO_SOCKET".to_string(), 3)
            ]
        );
        assert_eq!(
            btf.find_enum("big").unwrap().values,
            vec![("BIG_ONE".to_string(), 1i64 << 40)]
        );
        assert_eq!(
            btf.find_enum("signed_e").unwrap().values,
            vec![("NEG".to_string(), -2)]
        );
        assert_eq!(btf.enums().count(), 3);
    }

    #[test]
    fn split_btf_sees_its_enums_with_base_strings() {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        b.composite(kind::STRUCT, "base_s", 4, &[("x", u32t, 0)]);
        let base_blob = b.build();
        let base = Btf::parse(base_blob).unwrap();
        let base_str_len = base.strings.len() as u32;
        let mut s = Builder::split(base.type_count(), base_str_len);
        let e = s.enum32(
            "mac80211_drop_reason",
            false,
            &[("RX_DROP_U_MIC_FAIL", 0x10001)],
        );
        assert_eq!(e, 3);
        let split = Btf::parse_split(s.build(), &base).unwrap();
        assert_eq!(split.first_id, 3);
        assert_eq!(
            split.find_enum("mac80211_drop_reason").unwrap().values,
            vec![("RX_DROP_U_MIC_FAIL".to_string(), 0x10001)]
        );
        // A name offset into the base's strings resolves there.
        assert_eq!(split.str_at(1), Some("unsigned int"));
    }

    #[test]
    fn big_endian_blobs_parse() {
        let mut b = Builder::new();
        let u32t = b.int("u32", 4);
        b.composite(kind::STRUCT, "s", 8, &[("a", u32t, 0), ("b", u32t, 32)]);
        let le = b.build();
        // Byte-swap every u32 of header (after magic/version/flags) and body.
        let mut be = Vec::new();
        be.extend_from_slice(&0xeb9fu16.to_be_bytes());
        be.extend_from_slice(&le[2..4]);
        let str_start = le.len() - b_strings_len(&le);
        for chunk in le[4..str_start].chunks(4) {
            let v = u32::from_le_bytes(chunk.try_into().unwrap());
            be.extend_from_slice(&v.to_be_bytes());
        }
        be.extend_from_slice(&le[str_start..]);
        let btf = Btf::parse(be).unwrap();
        assert_eq!(btf.member_offset("s", "b").unwrap(), 4);
    }

    fn b_strings_len(blob: &[u8]) -> usize {
        u32::from_le_bytes(blob[20..24].try_into().unwrap()) as usize
    }

    #[test]
    fn malformed_headers() {
        assert!(matches!(
            Btf::parse(vec![0; 10]),
            Err(BtfError::TooShort { need: 24, have: 10 })
        ));
        let mut blob = kernel_like();
        blob[0] = 0;
        assert!(matches!(Btf::parse(blob), Err(BtfError::BadMagic { .. })));
        let mut blob = kernel_like();
        blob[2] = 2;
        assert!(matches!(
            Btf::parse(blob),
            Err(BtfError::BadVersion { version: 2 })
        ));
        let mut blob = kernel_like();
        blob[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Btf::parse(blob),
            Err(BtfError::SectionOutOfBounds {
                section: "string",
                ..
            })
        ));
    }

    #[test]
    fn unknown_kind_and_truncated_type() {
        let mut b = Builder::new();
        b.int("x", 4);
        let mut blob = b.build();
        // info of type 1: kind 31.
        blob[24 + 7] = 31;
        assert!(matches!(
            Btf::parse(blob),
            Err(BtfError::BadKind {
                id: 1,
                kind: 31,
                ..
            })
        ));
        let mut b = Builder::new();
        b.int("x", 4);
        let mut blob = b.build();
        // Type section one byte shorter than the INT entry.
        blob[12..16].copy_from_slice(&15u32.to_le_bytes());
        assert!(matches!(
            Btf::parse(blob),
            Err(BtfError::TruncatedType { id: 1, .. })
        ));
    }

    #[test]
    fn typedef_cycles_are_bounded() {
        let mut b = Builder::new();
        // Type 1 is a typedef of type 2, type 2 a typedef of type 1.
        b.typedef("a", 2);
        b.typedef("b", 1);
        b.composite(kind::STRUCT, "s", 8, &[("m", 1, 0)]);
        let btf = Btf::parse(b.build()).unwrap();
        assert!(matches!(
            btf.skip_modifiers(1),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_offset("s", "m.x"),
            Err(BtfError::TooDeep { .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_valid_blob_is_an_error_not_a_panic() {
        let blob = kernel_like();
        for n in 0..blob.len() {
            assert!(Btf::parse(blob[..n].to_vec()).is_err(), "length {n}");
        }
        assert!(Btf::parse(blob).is_ok());
    }

    #[test]
    fn sys_vmlinux_if_present() {
        let Ok(btf) = Btf::from_sys() else {
            eprintln!("skipping: {VMLINUX_BTF} not readable");
            return;
        };
        // These exist in every kernel with skb drop reasons (5.17+).
        let off = btf.member_offset("sk_buff", "len").unwrap();
        assert!(off > 0 && off < 512, "sk_buff.len at {off}");
        assert!(btf.find_enum("skb_drop_reason").is_some());
    }

    fn exercise(btf: &Btf) {
        for name in ["sk_buff", "net", "s", ""] {
            let _ = btf.member_offset(name, "a.b");
            let _ = btf.member_type(name, "x");
        }
        for id in 0..btf.type_count() + 3 {
            let _ = btf.type_size(id);
            let _ = btf.members(id);
            let _ = btf.pointee(id);
            let _ = btf.find_member(id, "");
        }
        let _ = btf.enums().count();
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(btf) = Btf::parse(data) {
                exercise(&btf);
            }
        }

        #[test]
        fn never_panics_on_mutated_blobs(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)
        ) {
            let mut blob = kernel_like();
            for (i, v) in edits {
                let at = i.index(blob.len());
                blob[at] = v;
            }
            if let Ok(btf) = Btf::parse(blob) {
                exercise(&btf);
            }
        }
    }
}
