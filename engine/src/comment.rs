//! The per-packet comment text: written into every pcapng packet we capture, parsed back by
//! `dropscope replay` to recover why a packet was dropped.
//!
//! Two shapes, one line each:
//!
//! ```text
//! kernel:  NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 [0xffffffff81b2c3d4] netns 4026531840
//!          NO_SOCKET (3) at 0xffffffff81b2c3d4 netns 4026531840        (no symbol)
//!          NO_SOCKET (3) netns 4026531840                              (no location)
//! cilium:  DROP Policy denied (133) identity 12345->678 ep 0 ifindex 3 bpf_lxc.c:1234
//! ```
//!
//! The human part (reason name, symbol) comes first so the comment reads well in Wireshark;
//! the raw numbers (reason in parentheses, location in brackets, netns) are there so a parser
//! recovers them without any name table. The formatters sanitise names so the output always
//! parses back to the numbers given. Comments are untrusted input (they come from any pcapng
//! file): the parser never panics, never allocates, and returns `None` for anything that is
//! not exactly one of these shapes.

/// What [`parse_comment`] recovered from a packet comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParsedCause {
    /// A kernel drop (`skb:kfree_skb`).
    Kernel {
        /// Raw `enum skb_drop_reason` value.
        reason: u32,
        /// Kernel address of the drop site, 0 if the comment did not carry it in hex.
        location: u64,
        /// Network-namespace inode, 0 if absent.
        netns: u32,
    },
    /// A Cilium datapath drop notification.
    Cilium {
        /// Cilium's drop reason code (`DROP_*`, 130..).
        code: u8,
        src_identity: u32,
        dst_identity: u32,
    },
}

/// Appends the comment of a kernel drop to `out` (which is not cleared).
///
/// `reason_name` is the kernel's name for `reason` (e.g. `NO_SOCKET`); `sym` is the symbol and
/// offset `location` resolves to, if known. Characters that could break the shape are replaced
/// by `_` so [`parse_comment`] always recovers `reason`, `location` and `netns`.
pub fn kernel_comment(
    out: &mut String,
    reason_name: &str,
    reason: u32,
    sym: Option<(&str, u64)>,
    location: u64,
    netns: u32,
) {
    // Called once per captured packet: formats by hand, core::fmt is several times slower.
    if reason_name.is_empty() {
        out.push_str("UNKNOWN");
    } else {
        push_sanitized(out, reason_name, is_name_char);
    }
    out.push_str(" (");
    push_dec(out, u64::from(reason));
    out.push(')');
    match sym {
        Some((name, off)) => {
            out.push_str(" at ");
            if name.is_empty() {
                out.push('?');
            } else {
                push_sanitized(out, name, is_symbol_char);
            }
            out.push('+');
            push_hex(out, off);
            if location != 0 {
                out.push_str(" [");
                push_hex(out, location);
                out.push(']');
            }
        }
        None if location != 0 => {
            out.push_str(" at ");
            push_hex(out, location);
        }
        None => {}
    }
    out.push_str(" netns ");
    push_dec(out, u64::from(netns));
}

/// Appends the comment of a Cilium drop to `out` (which is not cleared).
///
/// `reason_text` is Cilium's description of `code` (e.g. `Policy denied`); `source` is the
/// datapath file and line that dropped, if known.
#[allow(clippy::too_many_arguments)]
pub fn cilium_comment(
    out: &mut String,
    reason_text: &str,
    code: u8,
    src_identity: u32,
    dst_identity: u32,
    endpoint: u16,
    ifindex: u32,
    source: Option<(&str, u32)>,
) {
    out.push_str("DROP ");
    push_sanitized(out, reason_text, |c| !c.is_control());
    out.push_str(" (");
    push_dec(out, u64::from(code));
    out.push_str(") identity ");
    push_dec(out, u64::from(src_identity));
    out.push_str("->");
    push_dec(out, u64::from(dst_identity));
    out.push_str(" ep ");
    push_dec(out, u64::from(endpoint));
    out.push_str(" ifindex ");
    push_dec(out, u64::from(ifindex));
    if let Some((file, line)) = source {
        out.push(' ');
        if file.is_empty() {
            out.push('?');
        } else {
            push_sanitized(out, file, is_symbol_char);
        }
        out.push(':');
        push_dec(out, u64::from(line));
    }
}

/// Recovers the cause from a comment written by [`kernel_comment`] or [`cilium_comment`]
/// (or anything of the same shape). `None` when the text is neither.
/// Where a kernel drop's comment names its drop site (`sym+0xoff` in `NAME (N) at sym+0xoff
/// [0xADDR] ...`): its byte range in `text`. `None` for every other shape.
pub fn kernel_symbol(text: &str) -> Option<std::ops::Range<usize>> {
    let at = text.find(") at ")? + ") at ".len();
    let rest = text.get(at..)?;
    let end = rest.find(' ').unwrap_or(rest.len());
    let sym = rest.get(..end)?;
    let (name, off) = sym.rsplit_once("+0x")?;
    if name.is_empty() || off.is_empty() || !off.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if !rest[end..].starts_with(" [0x") {
        return None;
    }
    Some(at..at + end)
}

/// `sym+0xoff` -> (sym, off).
pub fn split_symbol(sym: &str) -> Option<(&str, u64)> {
    let (name, off) = sym.rsplit_once("+0x")?;
    Some((name, u64::from_str_radix(off, 16).ok()?))
}

pub fn parse_comment(text: &str) -> Option<ParsedCause> {
    if let Some(rest) = text.strip_prefix("DROP ") {
        if let Some(c) = parse_cilium(rest) {
            return Some(c);
        }
    }
    parse_kernel(text)
}

fn parse_kernel(text: &str) -> Option<ParsedCause> {
    // Runs once per packet on replay: one pass over the bytes, no str machinery.
    let mut t = Words(text.as_bytes());
    let name = t.next()?;
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return None;
    }
    let reason = dec_u32(t.next()?.strip_prefix(b"(")?.strip_suffix(b")")?)?;
    let mut location = 0u64;
    let mut word = t.next()?;
    if word == b"at" {
        let site = t.next()?;
        if let Some(hex) = site.strip_prefix(b"0x") {
            location = hex_u64(hex)?;
        }
        word = t.next()?;
        if let Some(inner) = word.strip_prefix(b"[") {
            location = hex_u64(inner.strip_suffix(b"]")?.strip_prefix(b"0x")?)?;
            word = t.next()?;
        }
    }
    if word != b"netns" {
        return None;
    }
    let netns = dec_u32(t.next()?)?;
    // Later writers may append more "key value" fields; what we know is already parsed.
    Some(ParsedCause::Kernel {
        reason,
        location,
        netns,
    })
}

/// Space-separated words of a byte string (empty words between double spaces included; none
/// after a trailing space).
struct Words<'a>(&'a [u8]);

impl<'a> Iterator for Words<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.iter().position(|b| *b == b' ') {
            Some(i) => {
                let (w, rest) = self.0.split_at(i);
                self.0 = rest.get(1..).unwrap_or(&[]);
                Some(w)
            }
            None => Some(core::mem::take(&mut self.0)),
        }
    }
}

fn dec_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u32, |v, b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        v.checked_mul(10)?.checked_add(u32::from(d))
    })
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        if v >> 60 != 0 {
            return None;
        }
        Some((v << 4) | u64::from(d))
    })
}

/// `rest` is everything after `DROP `: `<text> (<code>) identity <src>-><dst> ...`.
fn parse_cilium(rest: &str) -> Option<ParsedCause> {
    let (head, tail) = rest.rsplit_once(") identity ")?;
    let (_text, code) = head.rsplit_once('(')?;
    let code = parse_dec_u32(code)?;
    let code = u8::try_from(code).ok()?;
    let ids = tail.split(' ').next()?;
    let (src, dst) = ids.split_once("->")?;
    Some(ParsedCause::Cilium {
        code,
        src_identity: parse_dec_u32(src)?,
        dst_identity: parse_dec_u32(dst)?,
    })
}

fn parse_dec_u32(s: &str) -> Option<u32> {
    dec_u32(s.as_bytes())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Kernel symbols look like `__udp4_lib_rcv`, `tcp_v4_rcv.cold`, `foo.isra.0`; datapath files
/// like `bpf_lxc.c`.
fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '-')
}

fn push_sanitized(out: &mut String, s: &str, keep: impl Fn(char) -> bool) {
    if s.chars().all(&keep) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        out.push(if keep(c) { c } else { '_' });
    }
}

fn push_dec(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    // ASCII digits: valid UTF-8, pushed as one string.
    out.push_str(std::str::from_utf8(buf.get(i..).unwrap_or(&[])).unwrap_or(""));
}

/// `0x` and lower-case hex digits, as `{:#x}` writes them.
fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("0x");
    let digits = ((64 - v.leading_zeros()).div_ceil(4)).max(1);
    for k in (0..digits).rev() {
        let nibble = ((v >> (k * 4)) & 0xf) as usize;
        out.push(char::from(DIGITS.get(nibble).copied().unwrap_or(b'0')));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kernel(name: &str, reason: u32, sym: Option<(&str, u64)>, loc: u64, netns: u32) -> String {
        let mut s = String::new();
        kernel_comment(&mut s, name, reason, sym, loc, netns);
        s
    }

    #[test]
    fn numbers() {
        for v in [0u64, 1, 9, 10, 255, 4026531840, u64::MAX] {
            let mut s = String::new();
            push_dec(&mut s, v);
            s.push(' ');
            push_hex(&mut s, v);
            assert_eq!(s, format!("{v} {v:#x}"));
        }
    }

    #[test]
    fn kernel_shapes() {
        assert_eq!(
            kernel(
                "NO_SOCKET",
                3,
                Some(("__udp4_lib_rcv", 0x5b4)),
                0xffffffff81b2c3d4,
                4026531840
            ),
            "NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 [0xffffffff81b2c3d4] netns 4026531840"
        );
        assert_eq!(
            kernel("NO_SOCKET", 3, None, 0xffffffff81b2c3d4, 7),
            "NO_SOCKET (3) at 0xffffffff81b2c3d4 netns 7"
        );
        assert_eq!(kernel("NO_SOCKET", 3, None, 0, 7), "NO_SOCKET (3) netns 7");
        assert_eq!(kernel("", 65538, None, 0, 0), "UNKNOWN (65538) netns 0");
        assert_eq!(
            kernel("BAD NAME(x)", 1, Some(("f oo", 1)), 0, 2),
            "BAD_NAME_x_ (1) at f_oo+0x1 netns 2"
        );
    }

    #[test]
    fn parses_kernel() {
        assert_eq!(
            parse_comment(
                "NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 [0xffffffff81b2c3d4] netns 4026531840"
            ),
            Some(ParsedCause::Kernel {
                reason: 3,
                location: 0xffffffff81b2c3d4,
                netns: 4026531840
            })
        );
        // The documented example without the raw address: location unknown.
        assert_eq!(
            parse_comment("NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 netns 4026531840"),
            Some(ParsedCause::Kernel {
                reason: 3,
                location: 0,
                netns: 4026531840
            })
        );
        assert_eq!(
            parse_comment("NOT_SPECIFIED (2) at 0xffffffff81000000 netns 1 cpu 3"),
            Some(ParsedCause::Kernel {
                reason: 2,
                location: 0xffffffff81000000,
                netns: 1
            })
        );
    }

    #[test]
    fn parses_cilium() {
        assert_eq!(
            parse_comment(
                "DROP Policy denied (133) identity 12345->678 ep 0 ifindex 3 bpf_lxc.c:1234"
            ),
            Some(ParsedCause::Cilium {
                code: 133,
                src_identity: 12345,
                dst_identity: 678
            })
        );
        let mut s = String::new();
        cilium_comment(&mut s, "CT: Unknown (L4) protocol", 137, 2, 4, 9, 11, None);
        assert_eq!(
            s,
            "DROP CT: Unknown (L4) protocol (137) identity 2->4 ep 9 ifindex 11"
        );
        assert_eq!(
            parse_comment(&s),
            Some(ParsedCause::Cilium {
                code: 137,
                src_identity: 2,
                dst_identity: 4
            })
        );
    }

    #[test]
    fn rejects_other_text() {
        for bad in [
            "",
            "hello world",
            "NO_SOCKET",
            "NO_SOCKET (3)",
            "NO_SOCKET (+3) netns 1",
            "NO_SOCKET (3) netns",
            "NO_SOCKET (3) netns -1",
            "NO_SOCKET (3) netns 4294967296",
            "NO_SOCKET (4294967296) netns 1",
            "NO_SOCKET (3) at",
            "NO_SOCKET (3) at 0x netns 1",
            "NO_SOCKET (3) at 0xzz netns 1",
            "NO_SOCKET (3) at 0x10000000000000000 netns 1",
            "NO_SOCKET  (3) netns 1",
            "NO_SOCKET (3) at f+0x1 [0xzz] netns 1",
            "NO_SOCKET (3) at f+0x1 [12] netns 1",
            "NO-SOCKET (3) netns 1",
            "DROP Policy denied (256) identity 1->2",
            "DROP Policy denied (133) identity 1-2",
            "DROP Policy denied (133) identity ->2",
            "DROP Policy denied 133 identity 1->2",
            "é (1) netns 1",
        ] {
            assert_eq!(parse_comment(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn kernel_round_trip(
            name in "\\PC{0,24}",
            reason in any::<u32>(),
            sym in proptest::option::of(("\\PC{0,24}", any::<u64>())),
            location in any::<u64>(),
            netns in any::<u32>(),
        ) {
            let s = kernel(&name, reason, sym.as_ref().map(|(n, o)| (n.as_str(), *o)), location, netns);
            prop_assert_eq!(parse_comment(&s), Some(ParsedCause::Kernel { reason, location, netns }));
        }

        #[test]
        fn cilium_round_trip(
            text in "\\PC{0,40}",
            code in any::<u8>(),
            src in any::<u32>(),
            dst in any::<u32>(),
            ep in any::<u16>(),
            ifindex in any::<u32>(),
            source in proptest::option::of(("\\PC{0,16}", any::<u32>())),
        ) {
            let mut s = String::new();
            cilium_comment(&mut s, &text, code, src, dst, ep, ifindex,
                source.as_ref().map(|(f, l)| (f.as_str(), *l)));
            prop_assert_eq!(parse_comment(&s),
                Some(ParsedCause::Cilium { code, src_identity: src, dst_identity: dst }));
        }

        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let _ = parse_comment(&s);
        }

        /// The byte-level number parsers agree with the standard library's.
        #[test]
        fn numbers_agree_with_std(s in "[0-9a-fA-F+]{0,22}") {
            let std_dec = (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok()).flatten();
            prop_assert_eq!(dec_u32(s.as_bytes()), std_dec);
            let std_hex = (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(&s, 16).ok()).flatten();
            prop_assert_eq!(hex_u64(s.as_bytes()), std_hex);
        }
    }

    #[test]
    fn kernel_symbols_are_found_where_the_comment_names_them() {
        let c = "NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 [0xffffffff81b2c3d4] netns 4026531840";
        let r = kernel_symbol(c).unwrap();
        assert_eq!(&c[r.clone()], "__udp4_lib_rcv+0x5b4");
        assert_eq!(split_symbol(&c[r]), Some(("__udp4_lib_rcv", 0x5b4)));
        for other in [
            "NO_SOCKET (3) at 0xffffffff81b2c3d4 netns 4026531840",
            "NO_SOCKET (3) netns 4026531840",
            "NO_SOCKET (3) at x+0xzz [0x1] netns 1",
            "NO_SOCKET (3) at +0x5 [0x1] netns 1",
            "DROP Policy denied (133) identity 1->2 ep 0 ifindex 3 bpf_lxc.c:1234",
            "",
        ] {
            assert_eq!(kernel_symbol(other), None, "{other}");
        }
    }
}
