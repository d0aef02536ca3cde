//! The fast reader of Hubble flow lines: one pass over the bytes of a line that fills the
//! flow's [`Fields`] straight from the text (no tree of values), for the shapes Hubble
//! writes: `{"flow":{…},"node_name":…,"time":…}` and a bare `Flow` object.
//!
//! It reads a line only when it is sure to read it as the full parser would
//! (the parent module's sonic path, the reference); anything else it gives up on
//! ([`Bail`]) and the full parser reads the line, including every line that is not valid
//! JSON (so skips are counted by the same kinds). It gives up on: a string it needs that
//! has escapes, a `\u` surrogate anywhere, a number it needs that is not a plain unsigned
//! integer, a number with an exponent or more than 18 characters anywhere, a null or a
//! repeated name among the members it reads, a `flow` that is not an object, a line
//! without `flow` that has `type`, `origin`, `lost_events`, `agent_event`, `debug_event` (or
//! their lowerCamel twins) or none of the members that make a bare flow, nesting deeper
//! than [`MAX_DEPTH`], and anything after the object.

use super::{tcp_flag, Endpoint, Fields, IpF, L4Proto, Sc, L4F};

/// The line is left to the full parser.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Bail;

type R<T> = Result<T, Bail>;

/// Deepest nesting read here.
const MAX_DEPTH: usize = 64;

/// Reads `t` (a trimmed line starting with `{`) into `flow` (default when called); gives
/// the outer `node_name` and `time` of a `GetFlowsResponse`.
pub(super) fn line<'a>(t: &'a str, flow: &mut Fields<'a>, memo: &mut Memo) -> R<Outer<'a>> {
    if let Some(outer) = wrapper(t, flow, memo)? {
        return Ok(outer);
    }
    *flow = Fields::default();
    let mut s = Scan { s: t, i: 0, memo };
    let mut top = Fields::default();
    let got = s.flow(0, &mut top, Some(flow))?;
    s.ws();
    if s.i != t.len() {
        return Err(Bail);
    }
    if got.inner {
        return Ok(Outer {
            node: str_of(top.node_name),
            time: str_of(top.time),
        });
    }
    let bare = got.has_type
        || top.verdict.is_some()
        || got.event_type
        || top.drop_reason_desc.is_some()
        || top.trace_observation_point.is_some()
        || got.l4
        || got.ip;
    if got.other_kind || !bare {
        return Err(Bail);
    }
    *flow = top;
    Ok(Outer {
        node: None,
        time: None,
    })
}

/// A `GetFlowsResponse` of only `flow`, `node_name` (or `nodeName`) and `time`, the common
/// line, read without a second set of fields for its top level; `None` for any other shape
/// (then read again by [`line`]'s general reading).
fn wrapper<'a>(t: &'a str, flow: &mut Fields<'a>, memo: &mut Memo) -> R<Option<Outer<'a>>> {
    let mut s = Scan { s: t, i: 0, memo };
    let (mut mask, mut other) = (0u64, false);
    let (mut node, mut node_camel, mut time) = (None, None, None);
    let classify = |key: &str| match key {
        "flow" => 0,
        "node_name" => 1,
        "nodeName" => 2,
        "time" => 3,
        _ => NONE,
    };
    s.object(0, Some(Kind::Wrapper), classify, |s, _, bit| {
        if bit == NONE {
            other = true;
            return Err(Bail);
        }
        seen(&mut mask, bit)?;
        match bit {
            0 => {
                s.ws();
                if s.peek() != Some(b'{') {
                    return Err(Bail);
                }
                s.flow(1, flow, None).map(|_| ())
            }
            1 => s.scalar(1).map(|v| node = Some(v)),
            2 => s.scalar(1).map(|v| node_camel = Some(v)),
            _ => s.scalar(1).map(|v| time = Some(v)),
        }
    })
    .or_else(|b| if other { Ok(()) } else { Err(b) })?;
    s.ws();
    if other || mask & 1 == 0 {
        return Ok(None);
    }
    if s.i != t.len() {
        return Err(Bail);
    }
    Ok(Some(Outer {
        node: str_of(node.or(node_camel)),
        time: str_of(time),
    }))
}

/// The outer `node_name` and `time` of a `GetFlowsResponse`.
#[derive(Debug)]
pub(super) struct Outer<'a> {
    pub node: Option<&'a str>,
    pub time: Option<&'a str>,
}

fn str_of(v: Option<Sc<'_>>) -> Option<&str> {
    match v {
        Some(Sc::Str(s)) => Some(s),
        _ => None,
    }
}

/// A member that is an object where an object is read.
enum Obj<T> {
    Yes(T),
    No,
}

impl<T> Obj<T> {
    fn get(self) -> Option<T> {
        match self {
            Obj::Yes(t) => Some(t),
            Obj::No => None,
        }
    }
}

/// What one object read as a flow had besides its fields.
#[derive(Default)]
struct Got {
    /// The `flow` member, read (top level only).
    inner: bool,
    /// `Type`, `event_type`, `l4`, `IP` (or a twin), of any type.
    has_type: bool,
    event_type: bool,
    l4: bool,
    ip: bool,
    /// `type`, `origin`, `lost_events`, `agent_event`, `debug_event` or a twin (top level).
    other_kind: bool,
}

/// The bit of a top-level member that tells another kind of line (`type`, `lost_events`, …).
const OTHER_KIND: u32 = 63;

/// The bit of a flow's member and whether it is a proto name; `flow` and the names of other
/// kinds ([`OTHER_KIND`]) only at the top level. By length first: a `match` of many strings
/// compares them one after another.
fn flow_key(key: &str, top: bool) -> Option<(u32, bool)> {
    let k = match key.len() {
        2 => match key {
            "IP" => (5, true),
            "l4" => (6, true),
            _ => return None,
        },
        4 => match key {
            "time" => (29, true),
            "Type" => (31, true),
            "file" => (14, true),
            "flow" if top => (32, true),
            "type" if top => (OTHER_KIND, true),
            _ => return None,
        },
        6 => match key {
            "source" => (3, true),
            "origin" if top => (OTHER_KIND, true),
            _ => return None,
        },
        7 => match key {
            "verdict" => (0, true),
            "Summary" => (30, true),
            _ => return None,
        },
        8 => match key {
            "nodeName" => (28, false),
            "authType" => (26, false),
            _ => return None,
        },
        9 => match key {
            "eventType" => (2, false),
            "interface" => (7, true),
            "ipTraceId" => (9, false),
            "node_name" => (27, true),
            "proxyPort" => (20, false),
            "auth_type" => (25, true),
            _ => return None,
        },
        10 => match key {
            "event_type" => (1, true),
            "dropReason" => (13, false),
            "proxy_port" => (19, true),
            "agentEvent" => (OTHER_KIND, false),
            "debugEvent" => (OTHER_KIND, false),
            "lostEvents" => (OTHER_KIND, false),
            _ => return None,
        },
        11 => match key {
            "destination" => (4, true),
            "ip_trace_id" => (8, true),
            "drop_reason" => (12, true),
            "traceReason" => (18, false),
            "agent_event" => (OTHER_KIND, true),
            "debug_event" => (OTHER_KIND, true),
            "lost_events" => (OTHER_KIND, true),
            _ => return None,
        },
        12 => match key {
            "trace_reason" => (17, true),
            _ => return None,
        },
        14 => match key {
            "dropReasonDesc" => (11, false),
            _ => return None,
        },
        15 => match key {
            "policyMatchType" => (24, false),
            _ => return None,
        },
        16 => match key {
            "drop_reason_desc" => (10, true),
            "trafficDirection" => (22, false),
            _ => return None,
        },
        17 => match key {
            "traffic_direction" => (21, true),
            "policy_match_type" => (23, true),
            _ => return None,
        },
        21 => match key {
            "traceObservationPoint" => (16, false),
            _ => return None,
        },
        23 => match key {
            "trace_observation_point" => (15, true),
            _ => return None,
        },
        _ => return None,
    };
    (k.0 != OTHER_KIND || top).then_some(k)
}

/// [`flow_key`] as a class: the bit, and 0x100 for a proto name; [`NONE`] for others.
fn flow_class<const TOP: bool>(key: &str) -> u32 {
    flow_key(key, TOP).map_or(NONE, |(bit, proto)| bit | if proto { 0x100 } else { 0 })
}

/// Names of members read in some object, for finding repeats: their bit.
fn seen(mask: &mut u64, bit: u32) -> R<()> {
    let b = 1u64 << bit;
    if *mask & b != 0 {
        return Err(Bail);
    }
    *mask |= b;
    Ok(())
}

/// No member of interest: what a member name that the reader does not use is classed as.
const NONE: u32 = u32::MAX;

/// The objects whose member names are remembered from one line to the next: each its own
/// list, as its members come in different orders and with different names.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Wrapper,
    FlowTop,
    Flow,
    EventType,
    Interface,
    TraceId,
    File,
    Ip,
    Source,
    Destination,
    L4,
    L4Proto,
    TcpFlags,
}

/// [`Kind`]s there are.
const KINDS: usize = 13;

/// Members remembered per object (names past this many are read as they come).
const MEMO_MEMBERS: usize = 48;

/// The member names of the last line, per [`Kind`] and place, and what each was classed as.
///
/// Hubble writes the members of its flows in one order, line after line. A name is first
/// compared, as it stands in the text with its quotes (and its `:`), with the two names
/// last seen at the same place of the same kind of object (four 8-byte words, masked);
/// when equal it is the same plain string, so its class is the same, and neither the string
/// scan nor the name dispatch runs. Any other name is read as before and becomes the newer
/// of that place's two. Only whole matches are used, so what is remembered changes how fast
/// a line is read, never what is read (tests and the `text_lines` fuzz target compare a
/// parser that read other lines before with a fresh one).
#[derive(Clone, Debug, Default)]
pub(super) struct Memo {
    /// Per kind and place, the two names seen last there (the newer first): Hubble's `l4`
    /// alternates between `TCP` and `UDP`, an endpoint between having a pod or not.
    kinds: [Vec<[Name; 2]>; KINDS],
}

/// A remembered member name: `"name"` (and the `:` after it, when it came straight after)
/// as bytes in little-endian words, the bytes that count (`len`; `quoted` of them are the
/// name with its quotes), and its class. `len` 0 never matches (names longer than the words
/// hold).
#[derive(Clone, Copy, Debug)]
struct Name {
    words: [u64; 4],
    masks: [u64; 4],
    len: usize,
    quoted: usize,
    class: u32,
}

impl Name {
    /// A name that matches nothing.
    const NEVER: Name = Name {
        words: [0; 4],
        masks: [0; 4],
        len: 0,
        quoted: 0,
        class: NONE,
    };

    fn of(key: &str, class: u32, colon: bool) -> Name {
        let mut name = Name::NEVER;
        name.class = class;
        let quoted = key.len() + 2;
        if quoted > 32 {
            return name;
        }
        let mut bytes = [0u8; 32];
        let Some(inner) = bytes.get_mut(1..quoted - 1) else {
            return name;
        };
        inner.copy_from_slice(key.as_bytes());
        for at in [0, quoted - 1] {
            if let Some(q) = bytes.get_mut(at) {
                *q = b'"';
            }
        }
        let len = match bytes.get_mut(quoted) {
            Some(c) if colon => {
                *c = b':';
                quoted + 1
            }
            _ => quoted,
        };
        for (k, (w, m)) in name.words.iter_mut().zip(name.masks.iter_mut()).enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(bytes.get(k * 8..k * 8 + 8).unwrap_or(&[0; 8]));
            *w = u64::from_le_bytes(x);
            let n = len.saturating_sub(k * 8).min(8);
            *m = if n == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * n)) - 1
            };
        }
        (name.len, name.quoted) = (len, quoted);
        name
    }

    /// Whether `w` (the 32 bytes at a name's opening quote) starts with this name.
    #[inline(always)]
    fn is_at(&self, w: &[u8; 32]) -> bool {
        let mut diff = 0u64;
        for (k, (n, m)) in self.words.iter().zip(&self.masks).enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(w.get(k * 8..k * 8 + 8).unwrap_or(&[0; 8]));
            diff |= (u64::from_le_bytes(x) ^ n) & m;
        }
        self.len != 0 && diff == 0
    }
}

/// The index of the first byte at or after `j` that ends a run of plain string bytes (`"`,
/// `\` or a control character), or `b.len()`. Eight bytes at a time (the "has a zero byte"
/// and "has a byte less than n" word tests): a borrow only runs towards higher bytes, so
/// the lowest flagged byte of a word is exactly the first that ends the run.
fn plain_run(b: &[u8], mut j: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_le_bytes([b'\\'; 8]);
    const SPACE: u64 = u64::from_le_bytes([0x20; 8]);
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    while let Some(w) = b.get(j..j + 8) {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        let ends =
            zero_in(v ^ QUOTE) | zero_in(v ^ BACKSLASH) | (v.wrapping_sub(SPACE) & !v & HIGH);
        if ends != 0 {
            return j + (ends.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while let Some(&c) = b.get(j) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        j += 1;
    }
    j
}

struct Scan<'a, 'm> {
    s: &'a str,
    i: usize,
    memo: &'m mut Memo,
}

impl<'a> Scan<'a, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> R<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// A string without escapes, at its opening quote: its text.
    fn plain_str(&mut self) -> R<&'a str> {
        let b = self.s.as_bytes();
        if b.get(self.i) != Some(&b'"') {
            return Err(Bail);
        }
        let start = self.i + 1;
        let j = plain_run(b, start);
        if b.get(j) != Some(&b'"') {
            return Err(Bail);
        }
        self.i = j + 1;
        self.s.get(start..j).ok_or(Bail)
    }

    /// Skips a string (escapes allowed but for `\u` surrogates), at its opening quote.
    fn skip_str(&mut self) -> R<()> {
        let b = self.s.as_bytes();
        if b.get(self.i) != Some(&b'"') {
            return Err(Bail);
        }
        let mut j = self.i + 1;
        loop {
            j = plain_run(b, j);
            match b.get(j) {
                Some(b'"') => {
                    self.i = j + 1;
                    return Ok(());
                }
                Some(b'\\') => match b.get(j + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                    Some(b'u') => {
                        let Some(&[h0, h1, h2, h3]) = b.get(j + 2..j + 6) else {
                            return Err(Bail);
                        };
                        if ![h0, h1, h2, h3].iter().all(u8::is_ascii_hexdigit)
                            || (matches!(h0, b'd' | b'D')
                                && matches!(h1, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
                        {
                            return Err(Bail);
                        }
                        j += 6;
                    }
                    _ => return Err(Bail),
                },
                // A control character, or the end of the line.
                _ => return Err(Bail),
            }
        }
    }

    /// A number: `Some(n)` for a plain unsigned integer, `None` for another valid one.
    #[inline]
    fn number(&mut self) -> R<Option<u64>> {
        // The common number first: digits (no leading zero, at most 18) read as they come,
        // followed by neither a fraction nor an exponent.
        let b = self.s.as_bytes();
        let (start, mut j, mut n) = (self.i, self.i, 0u64);
        while let Some(d) = b.get(j).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
            j += 1;
        }
        let digits = j - start;
        if (1..=18).contains(&digits)
            && !(digits > 1 && b.get(start) == Some(&b'0'))
            && !matches!(b.get(j), Some(b'.' | b'e' | b'E'))
        {
            self.i = j;
            return Ok(Some(n));
        }
        self.any_number()
    }

    /// [`Scan::number`] of any form.
    #[cold]
    fn any_number(&mut self) -> R<Option<u64>> {
        let b = self.s.as_bytes();
        let start = self.i;
        let mut j = start;
        let neg = b.get(j) == Some(&b'-');
        if neg {
            j += 1;
        }
        let int = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j == int || (j - int > 1 && b.get(int) == Some(&b'0')) {
            return Err(Bail);
        }
        let mut plain = !neg;
        if b.get(j) == Some(&b'.') {
            plain = false;
            j += 1;
            let frac = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if j == frac {
                return Err(Bail);
            }
        }
        if matches!(b.get(j), Some(b'e' | b'E')) || j - start > 18 {
            return Err(Bail);
        }
        self.i = j;
        if !plain {
            return Ok(None);
        }
        let mut n = 0u64;
        for c in b.get(start..j).ok_or(Bail)? {
            n = n * 10 + u64::from(c - b'0');
        }
        Ok(Some(n))
    }

    fn literal(&mut self, word: &str) -> R<()> {
        let end = self.i + word.len();
        if self.s.as_bytes().get(self.i..end) == Some(word.as_bytes()) {
            self.i = end;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Skips any value.
    fn skip(&mut self, depth: usize) -> R<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.skip_str(),
            Some(b'{') => self.object(depth, None, |_| NONE, |s, _, _| s.skip(depth + 1)),
            Some(b'[') => self.array(depth, |s| s.skip(depth + 1)),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(Bail),
        }
    }

    /// A member the mapping reads as a scalar: a null gives up (the full parser tells a null
    /// from an absent member in places).
    fn scalar(&mut self, depth: usize) -> R<Sc<'a>> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.plain_str().map(Sc::Str),
            Some(b't') => self.literal("true").map(|_| Sc::Bool(true)),
            Some(b'f') => self.literal("false").map(|_| Sc::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number()?.map(Sc::U64).ok_or(Bail),
            Some(b'{' | b'[') => self.skip(depth).map(|_| Sc::Other),
            _ => Err(Bail),
        }
    }

    /// The members of an object, at its `{`: `member` reads each value, given its name and
    /// the name's class (`classify` of the name or, for an object of a `kind`, the class
    /// remembered for the same name at the same place: see [`Memo`]).
    fn object(
        &mut self,
        depth: usize,
        kind: Option<Kind>,
        classify: impl Fn(&str) -> u32,
        mut member: impl FnMut(&mut Self, &'a str, u32) -> R<()>,
    ) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(Bail);
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut at = 0usize;
        loop {
            self.ws();
            let (key, class) = match kind.and_then(|k| self.remembered(k, at)) {
                Some((key, class, true)) => (key, class),
                Some((key, class, false)) => {
                    self.eat(b':')?;
                    (key, class)
                }
                None => {
                    let key = self.plain_str()?;
                    let class = classify(key);
                    if let Some(k) = kind {
                        self.remember(k, at, key, class);
                    }
                    self.eat(b':')?;
                    (key, class)
                }
            };
            at += 1;
            // Every `member` starts by skipping white space itself.
            member(self, key, class)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    /// The name at `i`, its class, and whether its `:` was read with it, when it is the one
    /// remembered at place `at`.
    #[inline(always)]
    fn remembered(&mut self, kind: Kind, at: usize) -> Option<(&'a str, u32, bool)> {
        let w: &[u8; 32] = self
            .s
            .as_bytes()
            .get(self.i..self.i + 32)?
            .try_into()
            .ok()?;
        // By reference: a pair of names is 176 bytes.
        let pair = self.memo.kinds.get(kind as usize)?.get(at)?;
        let name = pair.iter().find(|n| n.is_at(w))?;
        let (len, quoted, class) = (name.len, name.quoted, name.class);
        let key = self.s.get(self.i + 1..self.i + quoted - 1)?;
        self.i += len;
        Some((key, class, len > quoted))
    }

    #[cold]
    fn remember(&mut self, kind: Kind, at: usize, key: &str, class: u32) {
        // Right after `plain_str`: a `:` straight after the name is remembered with it.
        let name = Name::of(key, class, self.peek() == Some(b':'));
        let Some(names) = self.memo.kinds.get_mut(kind as usize) else {
            return;
        };
        let len = names.len();
        if let Some(pair) = names.get_mut(at) {
            let [newer, _] = *pair;
            *pair = [name, newer];
        } else if at == len && at < MEMO_MEMBERS {
            names.push([name, Name::NEVER]);
        }
    }

    /// The elements of an array, at its `[`.
    fn array(&mut self, depth: usize, mut element: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(Bail);
        }
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    /// A member read as an object: `read` reads it when it is one; another value is
    /// skipped, a null gives up.
    fn obj_member<T>(
        &mut self,
        depth: usize,
        read: impl FnOnce(&mut Self, usize) -> R<T>,
    ) -> R<Obj<T>> {
        self.ws();
        match self.peek() {
            Some(b'{') => read(self, depth).map(Obj::Yes),
            Some(b'n') => Err(Bail),
            _ => self.skip(depth).map(|_| Obj::No),
        }
    }

    /// Reads an object as a flow (at the top level also the `flow` member and what tells a
    /// bare flow).
    fn flow(
        &mut self,
        depth: usize,
        out: &mut Fields<'a>,
        mut inner: Option<&mut Fields<'a>>,
    ) -> R<Got> {
        let top = inner.is_some();
        let mut got = Got::default();
        let mut mask = 0u64;
        let (kind, classify) = if top {
            (Kind::FlowTop, flow_class::<true> as fn(&str) -> u32)
        } else {
            (Kind::Flow, flow_class::<false> as fn(&str) -> u32)
        };
        self.object(depth, Some(kind), classify, |s, _, class| {
            let d = depth + 1;
            if class == NONE {
                return s.skip(d);
            }
            let (bit, proto) = (class & 0xff, class & 0x100 != 0);
            if bit == OTHER_KIND {
                got.other_kind = true;
                return s.skip(d);
            }
            seen(&mut mask, bit)?;
            // Written straight into `out` with the precedence of the parent module's `FlowView` (a
            // proto name wins over its lowerCamel twin): a twin's bit is its proto name's plus
            // one, and it is kept only while that name is unread.
            let wins = proto || mask & (1u64 << bit.saturating_sub(1)) == 0;
            match bit {
                0 => out.verdict = Some(s.scalar(d)?),
                1 | 2 => {
                    let v = s.obj_member(d, |s, d| s.event_type(d))?.get();
                    if wins {
                        out.event_type = v;
                    }
                }
                3 => {
                    if let Obj::Yes(e) = s.obj_member(d, |s, d| s.endpoint(d, Kind::Source))? {
                        out.source = e;
                    }
                }
                4 => {
                    if let Obj::Yes(e) = s.obj_member(d, |s, d| s.endpoint(d, Kind::Destination))? {
                        out.destination = e;
                    }
                }
                5 => out.ip = s.obj_member(d, |s, d| s.ip(d))?.get(),
                6 => out.l4 = s.obj_member(d, |s, d| s.l4(d))?.get().flatten(),
                7 => {
                    out.iface_index = s
                        .obj_member(d, |s, d| s.one_of(d, Kind::Interface, "index", "index"))?
                        .get()
                        .flatten();
                }
                8 | 9 => {
                    let v = s
                        .obj_member(d, |s, d| s.one_of(d, Kind::TraceId, "trace_id", "traceId"))?
                        .get()
                        .flatten();
                    if wins {
                        out.trace_id = v;
                    }
                }
                14 => out.file = s.obj_member(d, |s, d| s.file(d))?.get(),
                10..=13 | 15..=28 => {
                    let v = Some(s.scalar(d)?);
                    if wins {
                        let slot = match bit {
                            10 | 11 => &mut out.drop_reason_desc,
                            12 | 13 => &mut out.drop_reason,
                            15 | 16 => &mut out.trace_observation_point,
                            17 | 18 => &mut out.trace_reason,
                            19 | 20 => &mut out.proxy_port,
                            21 | 22 => &mut out.traffic_direction,
                            23 | 24 => &mut out.policy_match_type,
                            25 | 26 => &mut out.auth_type,
                            _ => &mut out.node_name,
                        };
                        *slot = v;
                    }
                }
                29 => out.time = Some(s.scalar(d)?),
                30 => out.summary = Some(s.scalar(d)?),
                31 => {
                    s.ws();
                    if s.peek() == Some(b'n') {
                        return Err(Bail);
                    }
                    got.has_type = true;
                    s.skip(d)?;
                }
                _ => {
                    s.ws();
                    match (s.peek(), inner.as_deref_mut()) {
                        (Some(b'{'), Some(f)) => {
                            s.flow(d, f, None)?;
                            got.inner = true;
                        }
                        _ => return Err(Bail),
                    }
                }
            }
            Ok(())
        })?;
        got.event_type = mask & 0b110 != 0;
        got.ip = mask & (1 << 5) != 0;
        got.l4 = mask & (1 << 6) != 0;
        Ok(got)
    }

    /// Reads scalar members of an object by name (each at most once, never null) into
    /// `out`, skipping the others.
    fn members<const N: usize>(
        &mut self,
        depth: usize,
        kind: Kind,
        names: [&str; N],
        out: &mut [Option<Sc<'a>>; N],
    ) -> R<()> {
        let mut mask = 0u64;
        let classify = |key: &str| {
            names
                .iter()
                .position(|n| *n == key)
                .map_or(NONE, |i| i as u32)
        };
        self.object(depth, Some(kind), classify, |s, _, i| {
            if i == NONE {
                return s.skip(depth + 1);
            }
            seen(&mut mask, i)?;
            let v = s.scalar(depth + 1)?;
            if let Some(slot) = out.get_mut(i as usize) {
                *slot = Some(v);
            }
            Ok(())
        })
    }

    /// `field(o, proto, camel)` of an object.
    fn one_of(&mut self, depth: usize, kind: Kind, proto: &str, camel: &str) -> R<Option<Sc<'a>>> {
        let mut v = [None, None];
        self.members(depth, kind, [proto, camel], &mut v)?;
        let [p, c] = v;
        Ok(p.or(c))
    }

    fn event_type(&mut self, depth: usize) -> R<(Option<Sc<'a>>, Option<Sc<'a>>)> {
        let mut v = [None, None, None];
        self.members(
            depth,
            Kind::EventType,
            ["type", "sub_type", "subType"],
            &mut v,
        )?;
        let [t, sub, sub_camel] = v;
        Ok((t, sub.or(sub_camel)))
    }

    fn file(&mut self, depth: usize) -> R<(Option<Sc<'a>>, Option<Sc<'a>>)> {
        let mut v = [None, None];
        self.members(depth, Kind::File, ["name", "line"], &mut v)?;
        let [name, line] = v;
        Ok((name, line))
    }

    fn ip(&mut self, depth: usize) -> R<IpF<'a>> {
        let mut v = [None, None, None];
        self.members(
            depth,
            Kind::Ip,
            ["source", "destination", "encrypted"],
            &mut v,
        )?;
        let [source, destination, encrypted] = v;
        Ok(IpF {
            source,
            destination,
            encrypted,
        })
    }

    fn endpoint(&mut self, depth: usize, kind: Kind) -> R<Endpoint<'a>> {
        let mut mask = 0u64;
        let (mut identity, mut pod, mut pod_camel, mut namespace) = (None, None, None, None);
        let mut labels = Vec::new();
        let classify = |key: &str| match key {
            "identity" => 0,
            "pod_name" => 1,
            "podName" => 2,
            "namespace" => 3,
            "labels" => 4,
            _ => NONE,
        };
        self.object(depth, Some(kind), classify, |s, _, bit| {
            let d = depth + 1;
            if bit == NONE {
                return s.skip(d);
            }
            seen(&mut mask, bit)?;
            match bit {
                0 => identity = Some(s.scalar(d)?),
                1 => pod = Some(s.scalar(d)?),
                2 => pod_camel = Some(s.scalar(d)?),
                3 => namespace = Some(s.scalar(d)?),
                _ => {
                    s.ws();
                    match s.peek() {
                        Some(b'[') => s.array(d, |s| {
                            s.ws();
                            if s.peek() == Some(b'"') {
                                labels.push(s.plain_str()?);
                                Ok(())
                            } else {
                                s.skip(d + 1)
                            }
                        })?,
                        Some(b'n') => return Err(Bail),
                        _ => s.skip(d)?,
                    }
                }
            }
            Ok(())
        })?;
        Ok(Endpoint::of(identity, pod.or(pod_camel), namespace, labels))
    }

    /// `l4`: its first protocol member that is an object.
    fn l4(&mut self, depth: usize) -> R<Option<L4F<'a>>> {
        let mut found = None;
        let classify = |key: &str| L4Proto::of(key).map_or(NONE, |p| p as u32);
        self.object(depth, Some(Kind::L4), classify, |s, _, class| {
            let d = depth + 1;
            s.ws();
            match L4Proto::from_class(class) {
                Some(proto) if found.is_none() && s.peek() == Some(b'{') => {
                    found = Some(s.l4_proto(d, proto)?);
                    Ok(())
                }
                _ => s.skip(d),
            }
        })?;
        Ok(found)
    }

    fn l4_proto(&mut self, depth: usize, proto: L4Proto) -> R<L4F<'a>> {
        let mut mask = 0u64;
        let mut v: [Option<Sc<'a>>; 6] = [None; 6];
        let mut flags = None;
        let classify = |key: &str| match key {
            "source_port" => 0,
            "sourcePort" => 1,
            "destination_port" => 2,
            "destinationPort" => 3,
            "type" => 4,
            "code" => 5,
            "flags" => 6,
            _ => NONE,
        };
        self.object(depth, Some(Kind::L4Proto), classify, |s, _, bit| {
            let d = depth + 1;
            if bit == NONE {
                return s.skip(d);
            }
            seen(&mut mask, bit)?;
            if bit == 6 {
                flags = s.obj_member(d, |s, d| s.tcp_flags(d))?.get();
            } else if let Some(slot) = v.get_mut(bit as usize) {
                *slot = Some(s.scalar(d)?);
            }
            Ok(())
        })?;
        let [sport, sport_camel, dport, dport_camel, icmp_type, icmp_code] = v;
        Ok(L4F {
            proto,
            sport: sport.or(sport_camel),
            dport: dport.or(dport_camel),
            flags,
            icmp_type,
            icmp_code,
        })
    }

    fn tcp_flags(&mut self, depth: usize) -> R<u8> {
        let mut flags = 0u8;
        let classify = |key: &str| u32::from(tcp_flag(key).unwrap_or(0));
        self.object(depth, Some(Kind::TcpFlags), classify, |s, _, flag| {
            s.ws();
            if s.peek() == Some(b't') {
                s.literal("true")?;
                flags |= u8::try_from(flag).unwrap_or(0);
                Ok(())
            } else {
                s.skip(depth + 1)
            }
        })?;
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The common-number path reads what the general one reads, and stops where it stops.
    #[test]
    fn numbers_read_as_any_number_reads_them() {
        let mut cases: Vec<String> = [
            "0",
            "7",
            "10000",
            "32768",
            "01",
            "00",
            "0.5",
            "1.5",
            "-1",
            "-0",
            "1e5",
            "1E5",
            "2.",
            "999999999999999999",
            "1000000000000000000",
            "12345678901234567890",
            "5,",
            "5}",
            "5x",
            "",
            "-",
            ".5",
            "18446744073709551615",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.extend((0..200u64).map(|i| (i * 7919 % 100_003).to_string()));
        // A number at the start of `s`, by the common path or the general one, and where the
        // reading stopped.
        let read = |s: &str, general: bool| {
            let mut memo = Memo::default();
            let mut scan = Scan {
                s,
                i: 0,
                memo: &mut memo,
            };
            let n = if general {
                scan.any_number()
            } else {
                scan.number()
            };
            (n, scan.i)
        };
        for c in &cases {
            let (got, fast_i) = read(c, false);
            let (want, general_i) = read(c, true);
            assert_eq!(got, want, "{c:?}");
            if want.is_ok() {
                assert_eq!(fast_i, general_i, "{c:?}");
            }
        }
        assert_eq!(read("10000,", false), (Ok(Some(10000)), 5));
    }

    /// The word test finds the same end as a byte-by-byte look, at every offset.
    #[test]
    fn plain_runs_end_where_bytes_say() {
        let text: Vec<u8> = (0u8..=255)
            .chain(b"abcdefgh\"ijklmnop\\qrstuvwxyz\x1fzz".iter().copied())
            .collect();
        for start in 0..text.len() {
            for end in start..=text.len().min(start + 40) {
                let b = &text[..end];
                let want = (start..end)
                    .find(|&i| matches!(b[i], b'"' | b'\\' | 0..=0x1f))
                    .unwrap_or(end);
                assert_eq!(plain_run(b, start), want, "{start}..{end}");
            }
        }
        let plain: Vec<u8> = (0x20u8..=0xff)
            .filter(|c| *c != b'"' && *c != b'\\')
            .collect();
        assert_eq!(plain_run(&plain, 0), plain.len());
    }
}
