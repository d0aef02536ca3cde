//! Reading what users already have: `cilium monitor` text (INFO, `-v`, `-vv` with hex dumps)
//! and `-j` JSON, Hubble flow JSON lines (`hubble observe -o jsonpb|json`, the exporter's
//! `events.log`), and dropscope's own `--json` lines. Each format has a line parser that
//! turns lines into [`Item`]s (records and notices); a line that is not part of a record
//! (a shell prompt, a wrapped or cut line, colour codes left over) is skipped and counted
//! by kind in [`Skips`], never fatal.
//!
//! A record carries what the input says: a Cilium notification (or a kernel drop, from our
//! own JSON) as the [`Cause`], the packet's bytes when the input has them (a `-vv` hex dump),
//! else the headers it names ([`FlowHeaders`]), from which [`synth::synthesize`] builds a
//! packet so the flow table can key it (written to a file only with `--synthesize`, and
//! then marked as synthesised).
//!
//! Must never: panic on any line, invent a value the input does not give (unknown fields
//! stay 0/None), or drop a line without counting it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::event::{Cause, LinkType, Notice};

pub mod hubble;
pub mod monitor_json;
pub mod monitor_text;
pub mod own_json;
pub mod source;
pub mod synth;

/// L3/L4 headers a record names when it carries no packet bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowHeaders {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP), 0 unknown.
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// ICMP/ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40,
    /// CWR 0x80).
    pub tcp_flags: Option<u8>,
}

/// Names the input gives (Hubble); the type lives with the events that carry it.
pub use crate::event::InputNames as Names;

/// One record recovered from a text input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch, when the input has a time (Hubble `time`).
    pub ts_ns: Option<u64>,
    pub cpu: Option<u32>,
    /// What happened: `Cause::Cilium(notification)` with the fields the input gives (the
    /// others 0), or `Cause::Kernel` (our own JSON), or `Cause::Captured`.
    pub cause: Cause,
    /// The packet's captured bytes, when the input has them (hex dumps, our JSON's bytes).
    pub packet: Option<Vec<u8>>,
    /// What `packet` (or the synthesised packet) starts with.
    pub link: LinkType,
    /// Length on the wire, 0 when unknown.
    pub orig_len: u32,
    pub ifindex: u32,
    pub netns: u32,
    /// Headers named by the input, when `packet` is `None`.
    pub headers: Option<FlowHeaders>,
    /// What the input says beyond the packet (Hubble's names), already the event's meta:
    /// only Hubble lines have it, and made here it is allocated once and never copied again
    /// on its way to the event (a record moves several times).
    pub meta: Option<std::sync::Arc<crate::event::EventMeta>>,
}

/// What a parser produces. Records are by far the common item and live only until the
/// source turns them into events: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Record(Record),
    Notice(Notice),
}

/// Lines skipped, by kind (`not_a_record`, `bad_hex_dump`, `bad_json`, `cut_record`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skips(pub BTreeMap<&'static str, u64>);

impl Skips {
    pub fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_insert(0) += 1;
    }
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// A line-oriented parser of one input format. Lines come without their line ending; the
/// caller has already removed ANSI escape sequences and a trailing `\r` ([`clean_line`]).
pub trait LineParser {
    /// Feeds one line; pushes onto `out` what it completes (a multi-line record completes
    /// when the line after it arrives, or at [`LineParser::finish`]).
    fn line(&mut self, line: &str, out: &mut Vec<Item>, skips: &mut Skips);
    /// End of input: completes or counts what is still open.
    fn finish(&mut self, out: &mut Vec<Item>, skips: &mut Skips);
    /// True when nothing is open (no record waiting for more lines): the next line is then
    /// read exactly as by a new parser, which is what lets chunks be parsed apart.
    fn is_idle(&self) -> bool;
}

/// Content sniffing for the JSON formats: among the JSON objects of the first 8 non-empty
/// lines, true when some are `mine` and at least as many are as not.
pub(crate) fn most_json_objects_are<T>(
    lines: &[&str],
    parse: impl Fn(&str) -> Option<T>,
    mine: impl Fn(&T) -> bool,
) -> bool {
    let (mut yes, mut no) = (0, 0);
    for l in lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .take(8)
    {
        if let Some(o) = parse(l) {
            if mine(&o) {
                yes += 1;
            } else {
                no += 1;
            }
        }
    }
    yes > 0 && yes >= no
}

/// A JSON object parsed by serde_json, for [`most_json_objects_are`].
pub(crate) fn serde_object(line: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(o)) => Some(o),
        _ => None,
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`, `ESC ] ... BEL`) and a trailing `\r`;
/// borrows when there is nothing to remove.
pub fn clean_line(line: &str) -> std::borrow::Cow<'_, str> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !line.contains('\x1b') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                for c in chars.by_ref() {
                    if c == '\x07' {
                        break;
                    }
                }
            }
            _ => {
                chars.next();
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Test helper: every line of `text` through `p`, then its end.
#[cfg(test)]
pub(crate) fn parse_all_with(p: &mut dyn LineParser, text: &str) -> (Vec<Item>, Skips) {
    let (mut out, mut skips) = (Vec::new(), Skips::default());
    for l in text.lines() {
        p.line(&clean_line(l), &mut out, &mut skips);
    }
    p.finish(&mut out, &mut skips);
    (out, skips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_and_carriage_returns_go() {
        assert_eq!(clean_line("plain"), "plain");
        assert!(matches!(clean_line("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            clean_line("\x1b[1;31mxx drop\x1b[0m (Policy denied)\r"),
            "xx drop (Policy denied)"
        );
        assert_eq!(clean_line("\x1b]0;title\x07$ cilium"), "$ cilium");
        assert_eq!(clean_line("cut\x1b"), "cut");
        let mut s = Skips::default();
        s.add("not_a_record");
        s.add("not_a_record");
        s.add("bad_json");
        assert_eq!(s.total(), 3);
        assert_eq!(s.0["not_a_record"], 2);
    }
}
