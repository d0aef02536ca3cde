//! Kernel text addresses -> `symbol+offset`, from `/proc/kallsyms`.
//!
//! Used to name a drop's `location` (e.g. `__udp4_lib_rcv+0x8d3`). When `kptr_restrict`
//! hides addresses (all read as zero) the table is empty and every lookup returns `None`.
//!
//! Must never: panic on a malformed line (such lines are skipped and counted), or allocate
//! per symbol (names live in one shared string).

use std::path::Path;

pub const KALLSYMS: &str = "/proc/kallsyms";

/// One text symbol: start address and where its name lives in [`Kallsyms::names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sym {
    addr: u64,
    name_start: u32,
    name_len: u32,
}

/// A sorted table of kernel text symbols.
#[derive(Clone, Debug, Default)]
pub struct Kallsyms {
    syms: Vec<Sym>,
    names: String,
    /// Lines that could not be parsed.
    malformed: u64,
    /// Text symbols whose address read as zero (hidden by kptr_restrict).
    zeroed: u64,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`; an unreadable file gives an empty table.
    pub fn load() -> Self {
        Kallsyms::load_from(Path::new(KALLSYMS))
    }

    pub fn load_from(path: &Path) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) => Kallsyms::parse(&text),
            Err(e) => {
                log::debug!(
                    "Cannot read {}: {e}; drop locations stay numeric.",
                    path.display()
                );
                Kallsyms::default()
            }
        }
    }

    /// Parses kallsyms text (`addr type name [module]` per line); keeps text symbols only.
    pub fn parse(text: &str) -> Self {
        let mut k = Kallsyms::default();
        for line in text.lines() {
            let mut parts = line.split_ascii_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                if !line.trim().is_empty() {
                    k.malformed += 1;
                }
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                k.malformed += 1;
                continue;
            };
            if !matches!(ty, "t" | "T" | "w" | "W") {
                continue;
            }
            if addr == 0 {
                k.zeroed += 1;
                continue;
            }
            let (Ok(name_start), Ok(name_len)) =
                (u32::try_from(k.names.len()), u32::try_from(name.len()))
            else {
                k.malformed += 1;
                continue;
            };
            k.names.push_str(name);
            k.syms.push(Sym {
                addr,
                name_start,
                name_len,
            });
        }
        // Stable: among aliases at one address the first listed wins.
        k.syms.sort_by_key(|s| s.addr);
        k
    }

    /// The symbol containing `addr` and the offset into it. `None` for 0, for addresses
    /// below the first symbol, or when addresses are hidden.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        if addr == 0 {
            return None;
        }
        let idx = self
            .syms
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        let sym = self.syms.get(idx)?;
        // Aliases share an address: report the first one listed.
        let first = self.syms.partition_point(|s| s.addr < sym.addr);
        let sym = self.syms.get(first).unwrap_or(sym);
        let start = sym.name_start as usize;
        let name = self.names.get(start..start + sym.name_len as usize)?;
        Some((name, addr - sym.addr))
    }

    /// `name+0xoff`, or the address in hex when it cannot be resolved.
    pub fn format(&self, addr: u64) -> String {
        match self.resolve(addr) {
            Some((name, off)) => format!("{name}+{off:#x}"),
            None => format!("{addr:#x}"),
        }
    }

    /// Number of text symbols loaded.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// Lines that could not be parsed.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// True when text symbols were present but their addresses were hidden (kptr_restrict).
    pub fn addresses_hidden(&self) -> bool {
        self.syms.is_empty() && self.zeroed > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000100 t helper
ffffffff81002000 D some_data
ffffffff81001000 T __udp4_lib_rcv
garbage
zzzz T bad_addr
ffffffffc0001000 t mod_fn\t[veth]
";

    #[test]
    fn resolves_symbol_and_offset() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.len(), 5);
        assert_eq!(k.malformed(), 2);
        assert_eq!(k.resolve(0xffffffff81000000), Some(("_stext", 0)));
        assert_eq!(k.resolve(0xffffffff810000ff), Some(("_stext", 0xff)));
        assert_eq!(k.resolve(0xffffffff81000105), Some(("helper", 5)));
        // Data symbols are not used: the address resolves to the preceding text symbol.
        assert_eq!(
            k.resolve(0xffffffff81002010),
            Some(("__udp4_lib_rcv", 0x1010))
        );
        assert_eq!(k.resolve(0xffffffffc0001008), Some(("mod_fn", 8)));
        assert_eq!(k.resolve(0xffffffff80000000), None);
        assert_eq!(k.resolve(0), None);
        assert_eq!(k.format(0xffffffff81001040), "__udp4_lib_rcv+0x40");
        assert_eq!(k.format(0x10), "0x10");
    }

    #[test]
    fn zeroed_addresses_mean_an_empty_table() {
        let k = Kallsyms::parse("0000000000000000 T _stext\n0000000000000000 t x\n");
        assert!(k.is_empty());
        assert!(k.addresses_hidden());
        assert_eq!(k.resolve(0xffffffff81000000), None);
        assert!(!Kallsyms::parse("").addresses_hidden());
    }

    #[test]
    fn live_kallsyms_if_readable() {
        let k = Kallsyms::load();
        if k.is_empty() {
            eprintln!("skipping: no readable kernel text addresses");
            return;
        }
        let (name, off) = k.resolve(k.syms[k.len() / 2].addr).unwrap();
        assert!(!name.is_empty());
        assert_eq!(off, 0);
    }

    proptest! {
        #[test]
        fn never_panics(text in "[0-9a-fTtWwD \\n\\[\\]_x]{0,400}", addr in any::<u64>()) {
            let k = Kallsyms::parse(&text);
            let _ = k.resolve(addr);
            let _ = k.format(addr);
        }
    }
}
