//! A streaming decoder for the part of Go's `encoding/gob` wire format that Cilium's monitor
//! socket uses (docs/cilium-formats.md §11.3), plus a tiny encoder for tests, benches and
//! simulators.
//!
//! The socket carries one gob stream per connection: a sequence of messages, each
//! `uint length ‖ int type id ‖ body`. A negative id defines type `-id` (the body is a
//! `wireType`); a positive id carries a value of that type. Type ids are assigned per Go
//! *process*, so nothing here assumes a fixed id: [`GobStream`] records every definition it
//! reads and later values are interpreted through it, fields matched by name by the caller.
//!
//! Everything this module reads is untrusted. It never indexes, slices or unwraps on input
//! bytes, never allocates from a length it has not bounded by the bytes actually present,
//! and never recurses deeper than [`MAX_DEPTH`]. Malformed input is a [`GobError`], never a
//! panic.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

/// Largest message [`GobStream`] accepts unless configured otherwise (Go's own limit is 1 GiB;
/// a monitor payload is at most one perf sample, < 64 KiB).
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;
/// Deepest nesting of values (struct in slice in map ...) accepted before giving up.
pub const MAX_DEPTH: usize = 64;
/// Most type definitions one stream may make.
pub const MAX_TYPES: usize = 4096;
/// Most bytes of type definitions one stream may send (Payload's is 57): bounds the memory
/// the registry holds whatever the input.
pub const MAX_TYPE_DEF_BYTES: usize = 4 << 20;
/// Most nodes one generically decoded value may have: bounds [`Value`] memory (a one-byte
/// wire element becomes a 48-byte node).
pub const MAX_VALUES: usize = 1 << 20;

/// Go's predefined type ids (`encoding/gob/type.go`, `bootstrapType`).
pub mod builtin {
    pub const BOOL: i64 = 1;
    pub const INT: i64 = 2;
    pub const UINT: i64 = 3;
    pub const FLOAT: i64 = 4;
    pub const BYTES: i64 = 5;
    pub const STRING: i64 = 6;
    pub const COMPLEX: i64 = 7;
    pub const INTERFACE: i64 = 8;
}

/// Why a gob message could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GobError {
    #[error("gob message length {len} exceeds the limit of {max} bytes")]
    MessageTooLong { len: u64, max: usize },
    #[error("gob message of length 0")]
    EmptyMessage,
    #[error("invalid gob unsigned integer prefix byte {byte:#04x}")]
    BadUint { byte: u8 },
    #[error("gob data truncated: need {need} bytes, {have} left in the message")]
    Truncated { need: u64, have: usize },
    #[error("gob type id {id} is out of range")]
    BadTypeId { id: i64 },
    #[error("gob type id {id} defined twice")]
    DuplicateType { id: i64 },
    #[error("gob stream defines more than {max} types")]
    TooManyTypes { max: usize },
    #[error("gob stream sends more than {max} bytes of type definitions")]
    TypeDefsTooLarge { max: usize },
    #[error("gob value has more than {max} elements")]
    TooManyValues { max: usize },
    #[error("malformed gob type definition: {what}")]
    BadTypeDef { what: &'static str },
    #[error("gob value uses undefined type id {id}")]
    UnknownType { id: i64 },
    #[error("gob field number {field} out of range for a struct of {fields} fields")]
    FieldOutOfRange { field: u64, fields: usize },
    #[error("gob value nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("gob message has {count} trailing bytes")]
    TrailingBytes { count: usize },
    #[error("gob top-level value with non-zero field delta {delta}")]
    BadSingleton { delta: u64 },
    #[error("gob array of type {id} has {got} elements, its type says {want}")]
    ArrayLength { id: i64, got: u64, want: i64 },
    #[error("gob count {count} exceeds the {have} bytes left in the message")]
    CountTooLarge { count: u64, have: usize },
}

impl GobError {
    /// A short stable name, used as the `reason` label of malformed-message counters.
    pub fn kind(&self) -> &'static str {
        match self {
            GobError::MessageTooLong { .. } => "message_too_long",
            GobError::EmptyMessage => "empty_message",
            GobError::BadUint { .. } => "bad_uint",
            GobError::Truncated { .. } => "truncated",
            GobError::BadTypeId { .. } => "bad_type_id",
            GobError::DuplicateType { .. } => "duplicate_type",
            GobError::TooManyTypes { .. } => "too_many_types",
            GobError::TypeDefsTooLarge { .. } => "type_definitions_too_large",
            GobError::TooManyValues { .. } => "too_many_values",
            GobError::BadTypeDef { .. } => "bad_type_definition",
            GobError::UnknownType { .. } => "unknown_type",
            GobError::FieldOutOfRange { .. } => "field_out_of_range",
            GobError::TooDeep { .. } => "too_deep",
            GobError::TrailingBytes { .. } => "trailing_bytes",
            GobError::BadSingleton { .. } => "bad_singleton",
            GobError::ArrayLength { .. } => "array_length",
            GobError::CountTooLarge { .. } => "count_too_large",
        }
    }
}

type Result<T> = std::result::Result<T, GobError>;

/// A panic-free reader over the bytes of one message. It can move on to the next message
/// of the same input ([`refill`](Self::refill)) because Go splits a value across messages
/// when it defines an interface's concrete type in the middle of it.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// End of the current message (<= buf.len()).
    end: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A cursor on the message body `buf[start..end]`, able to continue into the messages
    /// that follow it in `buf`.
    pub fn spanning(buf: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Cursor {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// End of the current message.
    pub fn message_end(&self) -> usize {
        self.end
    }

    /// At the end of the current message: enter the next one (its length prefix is read
    /// and checked against `max`).
    pub fn refill(&mut self, max: usize) -> Result<()> {
        let rest = self.buf.get(self.end..).unwrap_or(&[]);
        match frame_len(rest, max)? {
            None => Err(GobError::Truncated {
                need: 1,
                have: rest.len(),
            }),
            Some((header, len)) => {
                self.pos = self.end + header;
                self.end = self.pos + len;
                Ok(())
            }
        }
    }

    /// Offset of the next unread byte from the start of the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..self.end).unwrap_or(&[])
    }

    pub fn read_u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .filter(|_| self.pos < self.end)
            .ok_or(GobError::Truncated { need: 1, have: 0 })?;
        self.pos += 1;
        Ok(b)
    }

    /// A gob unsigned integer: one byte below 0x80, else `0x100 - n` then n big-endian bytes.
    pub fn read_uint(&mut self) -> Result<u64> {
        let b = self.read_u8()?;
        if b < 0x80 {
            return Ok(u64::from(b));
        }
        let n = 0u8.wrapping_sub(b);
        if n > 8 {
            return Err(GobError::BadUint { byte: b });
        }
        let bytes = self.read_bytes(u64::from(n))?;
        Ok(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A gob signed integer: bit 0 of the unsigned form is the complement flag.
    pub fn read_int(&mut self) -> Result<i64> {
        let u = self.read_uint()?;
        let v = (u >> 1) as i64;
        Ok(if u & 1 == 1 { !v } else { v })
    }

    pub fn read_bytes(&mut self, n: u64) -> Result<&'a [u8]> {
        let have = self.remaining();
        let end = usize::try_from(n)
            .ok()
            .filter(|&n| n <= have)
            .and_then(|n| self.pos.checked_add(n))
            .ok_or(GobError::Truncated { need: n, have })?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(GobError::Truncated { need: n, have })?;
        self.pos = end;
        Ok(out)
    }

    /// `uint length ‖ bytes` ([]byte, string, GobEncoder payloads).
    pub fn read_len_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.read_uint()?;
        self.read_bytes(n)
    }

    /// An element count. Every encoded element takes at least one byte, so a count larger
    /// than the bytes left is malformed; this bounds all work and allocation by the input.
    pub fn read_count(&mut self) -> Result<usize> {
        let count = self.read_uint()?;
        let have = self.remaining();
        usize::try_from(count)
            .ok()
            .filter(|&c| c <= have)
            .ok_or(GobError::CountTooLarge { count, have })
    }
}

/// Header length and body length of the message at the start of `input`, or `None` while
/// more bytes are needed. Errors are framing errors: the stream cannot be resynchronised.
pub fn frame_len(input: &[u8], max: usize) -> Result<Option<(usize, usize)>> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    let (header, len) = if first < 0x80 {
        (1usize, u64::from(first))
    } else {
        let n = 0u8.wrapping_sub(first);
        if n > 8 {
            return Err(GobError::BadUint { byte: first });
        }
        let header = 1 + usize::from(n);
        let Some(bytes) = input.get(1..header) else {
            return Ok(None);
        };
        let len = bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        (header, len)
    };
    if len == 0 {
        return Err(GobError::EmptyMessage);
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max)
        .ok_or(GobError::MessageTooLong { len, max })?;
    if input.len().saturating_sub(header) < len {
        return Ok(None);
    }
    Ok(Some((header, len)))
}

/// One field of a struct type definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireField {
    pub name: String,
    pub id: i64,
}

/// A type definition read from the stream (Go's `wireType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireType {
    Array {
        name: String,
        elem: i64,
        len: i64,
    },
    Slice {
        name: String,
        elem: i64,
    },
    Struct {
        name: String,
        fields: Vec<WireField>,
    },
    Map {
        name: String,
        key: i64,
        elem: i64,
    },
    /// Types implementing `GobEncoder`; the value is opaque bytes.
    GobEncoder {
        name: String,
    },
    /// Types implementing `encoding.BinaryMarshaler`; opaque bytes.
    BinaryMarshaler {
        name: String,
    },
    /// Types implementing `encoding.TextMarshaler`; opaque bytes.
    TextMarshaler {
        name: String,
    },
}

impl WireType {
    pub fn name(&self) -> &str {
        match self {
            WireType::Array { name, .. }
            | WireType::Slice { name, .. }
            | WireType::Struct { name, .. }
            | WireType::Map { name, .. }
            | WireType::GobEncoder { name }
            | WireType::BinaryMarshaler { name }
            | WireType::TextMarshaler { name } => name,
        }
    }
}

/// Field number after `prev` given a delta, checked against the field count.
pub(crate) fn next_field(prev: i64, delta: u64, fields: usize) -> Result<usize> {
    let out_of_range = GobError::FieldOutOfRange {
        field: delta,
        fields,
    };
    let field = i64::try_from(delta)
        .ok()
        .and_then(|d| prev.checked_add(d))
        .and_then(|f| usize::try_from(f).ok())
        .ok_or(out_of_range.clone())?;
    if field >= fields {
        return Err(GobError::FieldOutOfRange {
            field: field as u64,
            fields,
        });
    }
    Ok(field)
}

/// Walks a struct encoding whose field count is known, calling `f(field, cursor)` for each
/// field present. Like Go, the terminating zero delta may be left out at the end of input.
fn walk_struct<'a>(
    cur: &mut Cursor<'a>,
    fields: usize,
    mut f: impl FnMut(usize, &mut Cursor<'a>) -> Result<()>,
) -> Result<()> {
    let mut field: i64 = -1;
    while !cur.is_empty() {
        let delta = cur.read_uint()?;
        if delta == 0 {
            break;
        }
        let n = next_field(field, delta, fields)?;
        f(n, cur)?;
        field = n as i64;
    }
    Ok(())
}

fn read_type_id(cur: &mut Cursor<'_>) -> Result<i64> {
    let id = cur.read_int()?;
    if id <= 0 || id > i64::from(i32::MAX) {
        return Err(GobError::BadTypeDef {
            what: "type id out of range",
        });
    }
    Ok(id)
}

fn read_name(cur: &mut Cursor<'_>) -> Result<String> {
    Ok(String::from_utf8_lossy(cur.read_len_bytes()?).into_owned())
}

/// `CommonType{Name string; Id typeId}`; returns the name (the id repeats the message's).
fn parse_common(cur: &mut Cursor<'_>) -> Result<String> {
    let mut name = String::new();
    walk_struct(cur, 2, |f, c| {
        match f {
            0 => name = read_name(c)?,
            _ => {
                c.read_int()?;
            }
        }
        Ok(())
    })?;
    Ok(name)
}

/// Parses the body of a type-definition message (a `wireType` struct value).
pub fn parse_wire_type(cur: &mut Cursor<'_>) -> Result<WireType> {
    let mut out: Option<WireType> = None;
    walk_struct(cur, 7, |kind, c| {
        let wt = match kind {
            0 => {
                let (mut name, mut elem, mut len) = (String::new(), 0, 0);
                walk_struct(c, 3, |f, c| {
                    match f {
                        0 => name = parse_common(c)?,
                        1 => elem = read_type_id(c)?,
                        _ => len = c.read_int()?,
                    }
                    Ok(())
                })?;
                if elem == 0 || len < 0 {
                    return Err(GobError::BadTypeDef {
                        what: "array type without element or with negative length",
                    });
                }
                WireType::Array { name, elem, len }
            }
            1 => {
                let (mut name, mut elem) = (String::new(), 0);
                walk_struct(c, 2, |f, c| {
                    match f {
                        0 => name = parse_common(c)?,
                        _ => elem = read_type_id(c)?,
                    }
                    Ok(())
                })?;
                if elem == 0 {
                    return Err(GobError::BadTypeDef {
                        what: "slice type without element type",
                    });
                }
                WireType::Slice { name, elem }
            }
            2 => {
                let (mut name, mut fields) = (String::new(), Vec::new());
                walk_struct(c, 2, |f, c| {
                    match f {
                        0 => name = parse_common(c)?,
                        _ => {
                            let n = c.read_count()?;
                            fields = Vec::with_capacity(n.min(256));
                            for _ in 0..n {
                                let (mut fname, mut id) = (String::new(), 0);
                                walk_struct(c, 2, |f, c| {
                                    match f {
                                        0 => fname = read_name(c)?,
                                        _ => id = read_type_id(c)?,
                                    }
                                    Ok(())
                                })?;
                                if id == 0 {
                                    return Err(GobError::BadTypeDef {
                                        what: "struct field without type",
                                    });
                                }
                                fields.push(WireField { name: fname, id });
                            }
                        }
                    }
                    Ok(())
                })?;
                WireType::Struct { name, fields }
            }
            3 => {
                let (mut name, mut key, mut elem) = (String::new(), 0, 0);
                walk_struct(c, 3, |f, c| {
                    match f {
                        0 => name = parse_common(c)?,
                        1 => key = read_type_id(c)?,
                        _ => elem = read_type_id(c)?,
                    }
                    Ok(())
                })?;
                if key == 0 || elem == 0 {
                    return Err(GobError::BadTypeDef {
                        what: "map type without key or element type",
                    });
                }
                WireType::Map { name, key, elem }
            }
            k => {
                let mut name = String::new();
                walk_struct(c, 1, |_, c| {
                    name = parse_common(c)?;
                    Ok(())
                })?;
                match k {
                    4 => WireType::GobEncoder { name },
                    5 => WireType::BinaryMarshaler { name },
                    _ => WireType::TextMarshaler { name },
                }
            }
        };
        if out.is_some() {
            return Err(GobError::BadTypeDef {
                what: "wireType sets more than one kind",
            });
        }
        out = Some(wt);
        Ok(())
    })?;
    out.ok_or(GobError::BadTypeDef {
        what: "wireType sets no kind",
    })
}

/// The type definitions one stream has made so far.
#[derive(Clone, Debug, Default)]
pub struct TypeRegistry {
    types: HashMap<i64, Arc<WireType>>,
    def_bytes: usize,
}

impl TypeRegistry {
    pub fn get(&self, id: i64) -> Option<&WireType> {
        self.types.get(&id).map(|t| &**t)
    }

    fn get_arc(&self, id: i64) -> Option<Arc<WireType>> {
        self.types.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Ids and definitions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &WireType)> {
        self.types.iter().map(|(&id, t)| (id, &**t))
    }

    /// The id of the first struct type called `name`.
    pub fn find_struct(&self, name: &str) -> Option<i64> {
        self.iter()
            .filter(|(_, t)| matches!(t, WireType::Struct { .. }) && t.name() == name)
            .map(|(id, _)| id)
            .min()
    }

    pub fn clear(&mut self) {
        self.types.clear();
        self.def_bytes = 0;
    }

    /// Records type `id`, whose definition took `wire_bytes` bytes.
    fn define(&mut self, id: i64, wt: WireType, wire_bytes: usize) -> Result<()> {
        self.def_bytes = self.def_bytes.saturating_add(wire_bytes);
        if self.def_bytes > MAX_TYPE_DEF_BYTES {
            return Err(GobError::TypeDefsTooLarge {
                max: MAX_TYPE_DEF_BYTES,
            });
        }
        if id <= builtin::INTERFACE || id > i64::from(i32::MAX) {
            return Err(GobError::BadTypeId { id: -id });
        }
        if self.types.contains_key(&id) {
            return Err(GobError::DuplicateType { id });
        }
        if self.types.len() >= MAX_TYPES {
            return Err(GobError::TooManyTypes { max: MAX_TYPES });
        }
        self.types.insert(id, Arc::new(wt));
        Ok(())
    }
}

/// One message of a gob stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A type definition, now recorded in the stream's registry.
    TypeDef { id: i64 },
    /// A value of `type_id`; `body` starts right after the type id and ends with the message,
    /// `body_offset` is where `body` starts in the input given to [`GobStream::next_frame`].
    Value {
        type_id: i64,
        body: &'a [u8],
        body_offset: usize,
    },
}

/// A decoded value, for the rare messages read generically (agent notifications, L7 records,
/// tests). The monitor payload itself is decoded without building these.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Complex(f64, f64),
    Bytes(Vec<u8>),
    /// Go strings may hold any bytes; invalid UTF-8 is replaced.
    String(String),
    /// `None` is a nil interface; else the registered name of the concrete type and its value.
    Interface(Option<Box<(String, Value)>>),
    /// Fields present on the wire (zero-valued fields are omitted by the encoder).
    Struct {
        name: String,
        fields: Vec<(String, Value)>,
    },
    Slice(Vec<Value>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    /// The bytes of a GobEncoder / BinaryMarshaler / TextMarshaler value.
    Encoded(Vec<u8>),
}

impl Value {
    /// A struct field by name (None when absent, i.e. zero, or when not a struct).
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct { fields, .. } => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// The state of one gob stream: its limits and the types it has defined.
#[derive(Clone, Debug)]
pub struct GobStream {
    types: TypeRegistry,
    max_message: usize,
    /// Nodes the current generic decode may still build.
    value_budget: usize,
}

impl Default for GobStream {
    fn default() -> Self {
        GobStream::new(DEFAULT_MAX_MESSAGE)
    }
}

impl GobStream {
    pub fn new(max_message: usize) -> Self {
        GobStream {
            types: TypeRegistry::default(),
            max_message,
            value_budget: MAX_VALUES,
        }
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    pub fn types(&self) -> &TypeRegistry {
        &self.types
    }

    /// Forgets every type: the next bytes start a new stream (a new connection).
    pub fn reset(&mut self) {
        self.types.clear();
    }

    /// Reads the message at the start of `input`. `Ok(None)` when it is not complete yet;
    /// otherwise the frame and the number of bytes it used. Type definitions are recorded.
    /// An error here means the stream cannot go on.
    pub fn next_frame<'a>(&mut self, input: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>> {
        let Some((header, len)) = frame_len(input, self.max_message)? else {
            return Ok(None);
        };
        let total = header + len;
        let body = input.get(header..total).ok_or(GobError::Truncated {
            need: len as u64,
            have: input.len().saturating_sub(header),
        })?;
        let mut cur = Cursor::new(body);
        let id = cur.read_int()?;
        if id < 0 {
            let id = id.checked_neg().ok_or(GobError::BadTypeId { id })?;
            let wt = parse_wire_type(&mut cur)?;
            if !cur.is_empty() {
                return Err(GobError::TrailingBytes {
                    count: cur.remaining(),
                });
            }
            self.types.define(id, wt, body.len())?;
            return Ok(Some((Frame::TypeDef { id }, total)));
        }
        if id == 0 {
            return Err(GobError::BadTypeId { id });
        }
        let frame = Frame::Value {
            type_id: id,
            body: cur.rest(),
            body_offset: header + cur.position(),
        };
        Ok(Some((frame, total)))
    }

    fn is_struct(&self, id: i64) -> bool {
        matches!(self.types.get(id), Some(WireType::Struct { .. }))
    }

    /// Top-level values of non-struct types are sent as a singleton: a zero delta first.
    fn top_level_prefix(&self, type_id: i64, cur: &mut Cursor<'_>) -> Result<()> {
        if type_id > builtin::INTERFACE && self.types.get(type_id).is_none() {
            return Err(GobError::UnknownType { id: type_id });
        }
        if !self.is_struct(type_id) {
            let delta = cur.read_uint()?;
            if delta != 0 {
                return Err(GobError::BadSingleton { delta });
            }
        }
        Ok(())
    }

    /// Decodes a top-level value whose message body is exactly `body`.
    pub fn decode_value(&mut self, type_id: i64, body: &[u8]) -> Result<Value> {
        self.decode_value_at(type_id, body, 0, body.len())
            .map(|(v, _)| v)
    }

    /// Decodes a top-level value whose first message body is `input[start..end]`, reading
    /// on into the messages after it if the value continues there (Go does that when it
    /// defines an interface's concrete type mid-value). Returns the value and the offset in
    /// `input` just past the last message it used.
    pub fn decode_value_at(
        &mut self,
        type_id: i64,
        input: &[u8],
        start: usize,
        end: usize,
    ) -> Result<(Value, usize)> {
        let mut cur = Cursor::spanning(input, start, end);
        self.top_level_prefix(type_id, &mut cur)?;
        self.value_budget = MAX_VALUES;
        let v = self.decode(type_id, &mut cur, 0)?;
        if !cur.is_empty() {
            return Err(GobError::TrailingBytes {
                count: cur.remaining(),
            });
        }
        Ok((v, cur.message_end()))
    }

    /// Skips (and checks) a top-level value whose message body is exactly `body`.
    pub fn skip_value(&mut self, type_id: i64, body: &[u8]) -> Result<()> {
        self.skip_value_at(type_id, body, 0, body.len()).map(|_| ())
    }

    /// [`decode_value_at`](Self::decode_value_at) without building the value.
    pub fn skip_value_at(
        &mut self,
        type_id: i64,
        input: &[u8],
        start: usize,
        end: usize,
    ) -> Result<usize> {
        let mut cur = Cursor::spanning(input, start, end);
        self.top_level_prefix(type_id, &mut cur)?;
        self.skip(type_id, &mut cur, 0)?;
        if !cur.is_empty() {
            return Err(GobError::TrailingBytes {
                count: cur.remaining(),
            });
        }
        Ok(cur.message_end())
    }

    /// Skips one value of type `id` inside a message (a struct field, an element).
    pub fn skip(&mut self, id: i64, cur: &mut Cursor<'_>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(GobError::TooDeep { max: MAX_DEPTH });
        }
        match id {
            builtin::BOOL | builtin::INT | builtin::UINT | builtin::FLOAT => {
                cur.read_uint()?;
            }
            builtin::COMPLEX => {
                cur.read_uint()?;
                cur.read_uint()?;
            }
            builtin::BYTES | builtin::STRING => {
                cur.read_len_bytes()?;
            }
            builtin::INTERFACE => {
                if let Some((_, concrete)) = self.interface_header(cur)? {
                    self.concrete_prefix(concrete, cur)?;
                    self.skip(concrete, cur, depth + 1)?;
                }
            }
            _ => {
                let wt = self.types.get_arc(id).ok_or(GobError::UnknownType { id })?;
                match &*wt {
                    WireType::Struct { fields, .. } => {
                        let mut field: i64 = -1;
                        while !cur.is_empty() {
                            let delta = cur.read_uint()?;
                            if delta == 0 {
                                break;
                            }
                            let n = next_field(field, delta, fields.len())?;
                            let fid = fields
                                .get(n)
                                .map(|f| f.id)
                                .ok_or(GobError::UnknownType { id })?;
                            self.skip(fid, cur, depth + 1)?;
                            field = n as i64;
                        }
                    }
                    WireType::Slice { elem, .. } => {
                        let n = cur.read_count()?;
                        for _ in 0..n {
                            self.skip(*elem, cur, depth + 1)?;
                        }
                    }
                    WireType::Array { elem, len, .. } => {
                        let n = self.array_count(id, *len, cur)?;
                        for _ in 0..n {
                            self.skip(*elem, cur, depth + 1)?;
                        }
                    }
                    WireType::Map { key, elem, .. } => {
                        let n = cur.read_count()?;
                        for _ in 0..n {
                            self.skip(*key, cur, depth + 1)?;
                            self.skip(*elem, cur, depth + 1)?;
                        }
                    }
                    WireType::GobEncoder { .. }
                    | WireType::BinaryMarshaler { .. }
                    | WireType::TextMarshaler { .. } => {
                        cur.read_len_bytes()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn array_count(&self, id: i64, want: i64, cur: &mut Cursor<'_>) -> Result<usize> {
        let got = cur.read_uint()?;
        if i64::try_from(got).ok() != Some(want) {
            return Err(GobError::ArrayLength { id, got, want });
        }
        let have = cur.remaining();
        usize::try_from(got)
            .ok()
            .filter(|&n| n <= have)
            .ok_or(GobError::CountTooLarge { count: got, have })
    }

    /// Reads an interface value up to its concrete value: `None` for a nil interface, else
    /// the concrete type's registered name and id. Like Go's `decodeTypeSequence`, type
    /// definitions may come first: inline (each followed by a count Go skips) or ending the
    /// message, the value then continuing in the next message.
    fn interface_header(&mut self, cur: &mut Cursor<'_>) -> Result<Option<(String, i64)>> {
        let name = cur.read_len_bytes()?;
        if name.is_empty() {
            return Ok(None);
        }
        let name = String::from_utf8_lossy(name).into_owned();
        loop {
            if cur.is_empty() {
                cur.refill(self.max_message)?;
            }
            let id = cur.read_int()?;
            if id >= 0 {
                return Ok(Some((name, id)));
            }
            let def = id.checked_neg().ok_or(GobError::BadTypeId { id })?;
            let start = cur.position();
            let wt = parse_wire_type(cur)?;
            self.types
                .define(def, wt, cur.position().saturating_sub(start))?;
            if !cur.is_empty() {
                cur.read_uint()?;
            }
        }
    }

    /// After the concrete id: the value's byte count (unused: Go reads the value itself,
    /// and the count does not cover it when interfaces nest), then for non-struct types
    /// the singleton zero delta.
    fn concrete_prefix(&self, concrete: i64, cur: &mut Cursor<'_>) -> Result<()> {
        cur.read_uint()?;
        if concrete > builtin::INTERFACE && self.types.get(concrete).is_none() {
            return Err(GobError::UnknownType { id: concrete });
        }
        if !self.is_struct(concrete) {
            let delta = cur.read_uint()?;
            if delta != 0 {
                return Err(GobError::BadSingleton { delta });
            }
        }
        Ok(())
    }

    fn decode(&mut self, id: i64, cur: &mut Cursor<'_>, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(GobError::TooDeep { max: MAX_DEPTH });
        }
        self.value_budget = self
            .value_budget
            .checked_sub(1)
            .ok_or(GobError::TooManyValues { max: MAX_VALUES })?;
        Ok(match id {
            builtin::BOOL => Value::Bool(cur.read_uint()? != 0),
            builtin::INT => Value::Int(cur.read_int()?),
            builtin::UINT => Value::Uint(cur.read_uint()?),
            builtin::FLOAT => Value::Float(read_float(cur)?),
            builtin::COMPLEX => Value::Complex(read_float(cur)?, read_float(cur)?),
            builtin::BYTES => Value::Bytes(cur.read_len_bytes()?.to_vec()),
            builtin::STRING => {
                Value::String(String::from_utf8_lossy(cur.read_len_bytes()?).into_owned())
            }
            builtin::INTERFACE => match self.interface_header(cur)? {
                None => Value::Interface(None),
                Some((name, concrete)) => {
                    self.concrete_prefix(concrete, cur)?;
                    let v = self.decode(concrete, cur, depth + 1)?;
                    Value::Interface(Some(Box::new((name, v))))
                }
            },
            _ => {
                let wt = self.types.get_arc(id).ok_or(GobError::UnknownType { id })?;
                match &*wt {
                    WireType::Struct { name, fields } => {
                        let mut out = Vec::new();
                        let mut field: i64 = -1;
                        while !cur.is_empty() {
                            let delta = cur.read_uint()?;
                            if delta == 0 {
                                break;
                            }
                            let n = next_field(field, delta, fields.len())?;
                            let f = fields.get(n).ok_or(GobError::UnknownType { id })?;
                            let v = self.decode(f.id, cur, depth + 1)?;
                            out.push((f.name.clone(), v));
                            field = n as i64;
                        }
                        Value::Struct {
                            name: name.clone(),
                            fields: out,
                        }
                    }
                    WireType::Slice { elem, .. } => {
                        let n = cur.read_count()?;
                        let mut out = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            out.push(self.decode(*elem, cur, depth + 1)?);
                        }
                        Value::Slice(out)
                    }
                    WireType::Array { elem, len, .. } => {
                        let n = self.array_count(id, *len, cur)?;
                        let mut out = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            out.push(self.decode(*elem, cur, depth + 1)?);
                        }
                        Value::Array(out)
                    }
                    WireType::Map { key, elem, .. } => {
                        let n = cur.read_count()?;
                        let mut out = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            let k = self.decode(*key, cur, depth + 1)?;
                            let v = self.decode(*elem, cur, depth + 1)?;
                            out.push((k, v));
                        }
                        Value::Map(out)
                    }
                    WireType::GobEncoder { .. }
                    | WireType::BinaryMarshaler { .. }
                    | WireType::TextMarshaler { .. } => {
                        Value::Encoded(cur.read_len_bytes()?.to_vec())
                    }
                }
            }
        })
    }
}

/// Go sends a float64 as the uint of its bits with the bytes reversed.
fn read_float(cur: &mut Cursor<'_>) -> Result<f64> {
    Ok(f64::from_bits(cur.read_uint()?.swap_bytes()))
}

/// Decodes a complete, self-contained gob stream (e.g. the inner stream of an agent
/// notification): every message, type definitions applied, values returned in order.
pub fn decode_stream(input: &[u8], max_message: usize) -> Result<Vec<(i64, Value)>> {
    let mut stream = GobStream::new(max_message);
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < input.len() {
        let rest = input.get(off..).unwrap_or(&[]);
        match stream.next_frame(rest)? {
            None => {
                return Err(GobError::Truncated {
                    need: rest.len() as u64 + 1,
                    have: rest.len(),
                })
            }
            Some((Frame::TypeDef { .. }, n)) => off += n,
            Some((
                Frame::Value {
                    type_id,
                    body,
                    body_offset,
                },
                _,
            )) => {
                let (v, end) =
                    stream.decode_value_at(type_id, rest, body_offset, body_offset + body.len())?;
                out.push((type_id, v));
                off += end;
            }
        }
    }
    Ok(out)
}

/// Minimal gob encoding, enough to produce the streams Cilium's agent writes. For tests,
/// benches and simulators; the decoder never uses it.
pub mod encode {
    /// Appends a gob unsigned integer.
    pub fn put_uint(out: &mut Vec<u8>, v: u64) {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        let bytes = v.to_be_bytes();
        let skip = (v.leading_zeros() / 8) as usize;
        let n = 8 - skip;
        out.push(0u8.wrapping_sub(n as u8));
        out.extend_from_slice(bytes.get(skip..).unwrap_or(&[]));
    }

    /// Appends a gob signed integer.
    pub fn put_int(out: &mut Vec<u8>, v: i64) {
        let u = if v < 0 {
            ((!v as u64) << 1) | 1
        } else {
            (v as u64) << 1
        };
        put_uint(out, u);
    }

    pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
        put_uint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// Appends `uint len(body) ‖ body`.
    pub fn put_message(out: &mut Vec<u8>, body: &[u8]) {
        put_uint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    /// The message defining struct type `id` called `name` with `(field name, type id)`s.
    pub fn struct_def_message(out: &mut Vec<u8>, id: i64, name: &str, fields: &[(&str, i64)]) {
        let mut body = Vec::with_capacity(64);
        put_int(&mut body, -id);
        put_uint(&mut body, 3); // wireType field 2: StructT
        put_uint(&mut body, 1); // structType field 0: CommonType
        put_uint(&mut body, 1); // CommonType.Name
        put_bytes(&mut body, name.as_bytes());
        put_uint(&mut body, 1); // CommonType.Id
        put_int(&mut body, id);
        body.push(0); // end CommonType
        put_uint(&mut body, 1); // structType field 1: Field
        put_uint(&mut body, fields.len() as u64);
        for (fname, fid) in fields {
            put_uint(&mut body, 1);
            put_bytes(&mut body, fname.as_bytes());
            put_uint(&mut body, 1);
            put_int(&mut body, *fid);
            body.push(0);
        }
        body.push(0); // end structType
        body.push(0); // end wireType
        put_message(out, &body);
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;
    use proptest::prelude::*;

    use crate::testutil::hex;

    /// docs/cilium-vectors.md §11.1: Payload{Data:{1,2,3,4}, Lost:5243, CPU:12, Type:9},
    /// fresh encoder.
    const V11_1: &str = "38ff81030101075061796c6f616401ff82000104010444617461010a00010343505501040001044c6f7374010600010454797065010400000011ff82010401020304011801fe147b011200";
    /// docs/cilium-vectors.md §11.3 inner AgentNotify stream (without the 0x82 prefix).
    const V11_3_INNER: &str = "2bff830301010b4167656e744e6f7469667901ff84000102010454797065010600010454657874010c00000026ff840102011f7b2274696d65223a22323032342d30312d30315430303a30303a30305a227d00";

    #[test]
    fn uint_examples_from_go_docs() {
        // encoding/gob doc: 7 -> 07, 256 -> FE 01 00.
        assert_eq!(Cursor::new(&[0x07]).read_uint(), Ok(7));
        assert_eq!(Cursor::new(&[0xfe, 0x01, 0x00]).read_uint(), Ok(256));
        assert_eq!(Cursor::new(&[0xfe, 0x14, 0x7b]).read_uint(), Ok(5243));
        let max = [0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Cursor::new(&max).read_uint(), Ok(u64::MAX));
        assert_eq!(
            Cursor::new(&[0x80]).read_uint(),
            Err(GobError::BadUint { byte: 0x80 })
        );
        assert_eq!(
            Cursor::new(&[0xf7]).read_uint(),
            Err(GobError::BadUint { byte: 0xf7 })
        );
        assert_eq!(
            Cursor::new(&[0xfe, 0x01]).read_uint(),
            Err(GobError::Truncated { need: 2, have: 1 })
        );
    }

    #[test]
    fn int_zigzag() {
        // 12 -> 24 (0x18), 9 -> 18 (0x12), -65 -> ff 81, 65 -> ff 82, -1 -> 01.
        assert_eq!(Cursor::new(&[0x18]).read_int(), Ok(12));
        assert_eq!(Cursor::new(&[0x12]).read_int(), Ok(9));
        assert_eq!(Cursor::new(&[0xff, 0x81]).read_int(), Ok(-65));
        assert_eq!(Cursor::new(&[0xff, 0x82]).read_int(), Ok(65));
        assert_eq!(Cursor::new(&[0x01]).read_int(), Ok(-1));
        let min = [0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Cursor::new(&min).read_int(), Ok(i64::MIN));
    }

    proptest! {
        #[test]
        fn uint_int_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uint(&mut b, u);
            put_int(&mut b, i);
            let mut c = Cursor::new(&b);
            prop_assert_eq!(c.read_uint(), Ok(u));
            prop_assert_eq!(c.read_int(), Ok(i));
            prop_assert!(c.is_empty());
        }

        #[test]
        fn stream_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_stream(&bytes, 1 << 16);
            let mut s = GobStream::new(1 << 16);
            let _ = s.next_frame(&bytes);
            for id in 1..=10 {
                let _ = s.decode_value(id, &bytes);
                let _ = s.skip_value(id, &bytes);
            }
        }

        #[test]
        fn mutated_vector_never_panics(pos in 0usize..75, byte in any::<u8>(), cut in 0usize..76) {
            let mut v = hex(V11_1);
            v[pos] = byte;
            v.truncate(cut);
            let _ = decode_stream(&v, 1 << 16);
        }
    }

    #[test]
    fn frame_len_bounds() {
        assert_eq!(frame_len(&[], 100), Ok(None));
        assert_eq!(frame_len(&[0x05, 1, 2], 100), Ok(None));
        assert_eq!(frame_len(&[0x02, 1, 2, 3], 100), Ok(Some((1, 2))));
        assert_eq!(frame_len(&[0xfe, 0x01], 100), Ok(None));
        assert_eq!(frame_len(&[0x00], 100), Err(GobError::EmptyMessage));
        assert_eq!(
            frame_len(&[0xfd, 0xff, 0xff, 0xff], 1 << 20),
            Err(GobError::MessageTooLong {
                len: 0xff_ffff,
                max: 1 << 20
            })
        );
        assert_eq!(
            frame_len(&[0x90], 100),
            Err(GobError::BadUint { byte: 0x90 })
        );
    }

    #[test]
    fn vector_11_1_type_definition_and_value() {
        let v = hex(V11_1);
        let mut s = GobStream::default();
        let (f, n) = s.next_frame(&v).unwrap().unwrap();
        assert_eq!(f, Frame::TypeDef { id: 65 });
        assert_eq!(n, 57);
        assert_eq!(
            s.types().get(65),
            Some(&WireType::Struct {
                name: "Payload".into(),
                fields: vec![
                    WireField {
                        name: "Data".into(),
                        id: 5
                    },
                    WireField {
                        name: "CPU".into(),
                        id: 2
                    },
                    WireField {
                        name: "Lost".into(),
                        id: 3
                    },
                    WireField {
                        name: "Type".into(),
                        id: 2
                    },
                ],
            })
        );
        assert_eq!(s.types().find_struct("Payload"), Some(65));
        let rest = &v[n..];
        let (f, n2) = s.next_frame(rest).unwrap().unwrap();
        let Frame::Value {
            type_id,
            body,
            body_offset,
        } = f
        else {
            panic!("{f:?}")
        };
        assert_eq!((type_id, body_offset, n2), (65, 3, 18));
        let val = s.decode_value(type_id, body).unwrap();
        assert_eq!(val.field("Data"), Some(&Value::Bytes(vec![1, 2, 3, 4])));
        assert_eq!(val.field("CPU"), Some(&Value::Int(12)));
        assert_eq!(val.field("Lost"), Some(&Value::Uint(5243)));
        assert_eq!(val.field("Type"), Some(&Value::Int(9)));
        s.skip_value(type_id, body).unwrap();
        assert_eq!(n + n2, v.len());
    }

    #[test]
    fn vector_11_3_agent_notify_inner_stream() {
        let vals = decode_stream(&hex(V11_3_INNER), 1 << 16).unwrap();
        assert_eq!(vals.len(), 1);
        let (id, v) = &vals[0];
        assert_eq!(*id, 66);
        assert_eq!(v.field("Type"), Some(&Value::Uint(2)));
        assert_eq!(
            v.field("Text"),
            Some(&Value::String("{\"time\":\"2024-01-01T00:00:00Z\"}".into()))
        );
    }

    #[test]
    fn encoder_reproduces_vector_11_1() {
        let mut out = Vec::new();
        struct_def_message(
            &mut out,
            65,
            "Payload",
            &[("Data", 5), ("CPU", 2), ("Lost", 3), ("Type", 2)],
        );
        let mut body = Vec::new();
        put_int(&mut body, 65);
        body.push(1);
        put_bytes(&mut body, &[1, 2, 3, 4]);
        body.push(1);
        put_int(&mut body, 12);
        body.push(1);
        put_uint(&mut body, 5243);
        body.push(1);
        put_int(&mut body, 9);
        body.push(0);
        put_message(&mut out, &body);
        assert_eq!(out, hex(V11_1));
    }

    /// Bytes written by Go 1.19 for
    /// `Outer{X:1, I:Inner{A:2,B:"b"}, L:[]string{"x",""}, M:map[string]int{"k":0}}` then
    /// `Outer{X:1, I:Inner{A:3}}`, `Outer{I:5}` and a top-level `7` on one encoder
    /// (Inner registered with gob.Register): slices, maps, interfaces with inline type
    /// definitions and singletons.
    const GO_NESTED: &str = concat!(
        "2dff81030101054f7574657201ff8200010401015801040001014901100001014c01ff840001014d01ff8600000016ff83020101085b5d737472696e6701ff8400010c00001eff850401010e6d61705b737472696e675d696e7401ff8600010c010400002fff820102010a6d61696e2e496e6e6572ff8703010105496e6e657201ff88000102010141010400010142010c00000014ff880601040101620001020178000101016b0000",
        "17ff820102010a6d61696e2e496e6e6572ff880301060000",
        "0cff820203696e740402000a00",
        "0304000e"
    );

    #[test]
    fn go_nested_types_interfaces_and_singletons() {
        let vals = decode_stream(&hex(GO_NESTED), 1 << 16).unwrap();
        assert_eq!(vals.len(), 4);
        let inner = |a: i64, b: Option<&str>| {
            let mut fields = vec![("A".to_string(), Value::Int(a))];
            if let Some(b) = b {
                fields.push(("B".to_string(), Value::String(b.into())));
            }
            Value::Interface(Some(Box::new((
                "main.Inner".to_string(),
                Value::Struct {
                    name: "Inner".into(),
                    fields,
                },
            ))))
        };
        let v0 = &vals[0].1;
        assert_eq!(vals[0].0, 65);
        assert_eq!(v0.field("X"), Some(&Value::Int(1)));
        assert_eq!(v0.field("I"), Some(&inner(2, Some("b"))));
        assert_eq!(
            v0.field("L"),
            Some(&Value::Slice(vec![
                Value::String("x".into()),
                Value::String(String::new())
            ]))
        );
        assert_eq!(
            v0.field("M"),
            Some(&Value::Map(vec![(
                Value::String("k".into()),
                Value::Int(0)
            )]))
        );
        assert_eq!(vals[1].1.field("I"), Some(&inner(3, None)));
        assert_eq!(vals[1].1.field("L"), None);
        assert_eq!(
            vals[2].1.field("I"),
            Some(&Value::Interface(Some(Box::new((
                "int".to_string(),
                Value::Int(5)
            )))))
        );
        assert_eq!(vals[3], (2, Value::Int(7)));
        // The skipper walks the same stream without building values.
        let bytes = hex(GO_NESTED);
        let mut s = GobStream::default();
        let mut off = 0;
        let mut skipped = 0;
        while let Some((f, n)) = s.next_frame(&bytes[off..]).unwrap() {
            if let Frame::Value {
                type_id,
                body,
                body_offset,
            } = f
            {
                let end = body_offset + body.len();
                off += s
                    .skip_value_at(type_id, &bytes[off..], body_offset, end)
                    .unwrap();
                skipped += 1;
            } else {
                off += n;
            }
        }
        assert_eq!((skipped, off), (4, bytes.len()));
        // Types: Outer 65, []string 66, map[string]int 67, Inner 68 (defined inline).
        assert_eq!(s.types().len(), 4);
        assert_eq!(
            s.types().get(67),
            Some(&WireType::Map {
                name: "map[string]int".into(),
                key: 6,
                elem: 2
            })
        );
        assert_eq!(s.types().find_struct("Inner"), Some(68));
    }

    /// Go 1.19 bytes for a struct with bool, float64, complex128, [4]byte, time.Time
    /// (GobEncoder), *url.URL (BinaryMarshaler), *C2, an interface holding C1 whose own
    /// interface field holds C2 (nested inline type definitions), int8 and map[int][]string.
    const GO_RICH: &str = "56ff81030101045269636801ff8200010a01014201020001014601080001024378010e0001014101ff840001015401ff860001015501ff880001015001ff8a0001014901100001034e656701040001014d01ff9000000018ff83010101085b345d75696e743801ff840001060108000010ff850501010454696d6501ff860000000aff87060102ff9200000014ff930301010855736572696e666f01ff9400000017ff8903010102433201ff8a00010101015a01ff8c00000013ff8b020101055b5d696e7401ff8c000104000021ff8f040101106d61705b696e745d5b5d737472696e6701ff9000010401ff8e00000cff8d020102ff8e00010c000062ff82010101fef83f0140fef0bf01040a00ffc801010f010000000edd23f78000000000ffff010e687474703a2f2f782f793f7a3d3101010201fe02580001076d61696e2e4331ff9503010102433101ff9600010201014e010c0001014a011000000020ff961401016e01076d61696e2e4332ff8a0401010e0000010501010a01016100";

    #[test]
    fn go_rich_value() {
        let bytes = hex(GO_RICH);
        let vals = decode_stream(&bytes, 1 << 16).unwrap();
        assert_eq!(vals.len(), 1);
        let v = &vals[0].1;
        let c2 = |z: Vec<i64>| Value::Struct {
            name: "C2".into(),
            fields: vec![(
                "Z".into(),
                Value::Slice(z.into_iter().map(Value::Int).collect()),
            )],
        };
        assert_eq!(v.field("B"), Some(&Value::Bool(true)));
        assert_eq!(v.field("F"), Some(&Value::Float(1.5)));
        assert_eq!(v.field("Cx"), Some(&Value::Complex(2.0, -1.0)));
        assert_eq!(
            v.field("A"),
            Some(&Value::Array(vec![
                Value::Uint(10),
                Value::Uint(0),
                Value::Uint(200),
                Value::Uint(1)
            ]))
        );
        assert!(matches!(v.field("T"), Some(Value::Encoded(b)) if b.len() == 15));
        assert_eq!(
            v.field("U"),
            Some(&Value::Encoded(b"http://x/y?z=1".to_vec()))
        );
        assert_eq!(v.field("P"), Some(&c2(vec![-1, 300])));
        let inner = Value::Struct {
            name: "C1".into(),
            fields: vec![
                ("N".into(), Value::String("n".into())),
                (
                    "J".into(),
                    Value::Interface(Some(Box::new(("main.C2".into(), c2(vec![7]))))),
                ),
            ],
        };
        assert_eq!(
            v.field("I"),
            Some(&Value::Interface(Some(Box::new(("main.C1".into(), inner)))))
        );
        assert_eq!(v.field("Neg"), Some(&Value::Int(-3)));
        assert_eq!(
            v.field("M"),
            Some(&Value::Map(vec![(
                Value::Int(5),
                Value::Slice(vec![Value::String("a".into())])
            )]))
        );
        // Skipping walks the same bytes to the same end.
        let mut s = GobStream::default();
        let mut off = 0;
        while let Some((f, n)) = s.next_frame(&bytes[off..]).unwrap() {
            match f {
                Frame::Value {
                    type_id,
                    body,
                    body_offset,
                } => {
                    let end = body_offset + body.len();
                    off += s
                        .skip_value_at(type_id, &bytes[off..], body_offset, end)
                        .unwrap();
                }
                Frame::TypeDef { .. } => off += n,
            }
        }
        assert_eq!(off, bytes.len());
        assert_eq!(s.types().find_struct("C1"), Some(74 + 1));
        assert!(matches!(
            s.types().get(68),
            Some(WireType::BinaryMarshaler { .. })
        ));
        assert!(matches!(
            s.types().get(67),
            Some(WireType::GobEncoder { .. })
        ));
    }

    #[test]
    fn malformed_definitions_and_values() {
        let mut s = GobStream::default();
        // Duplicate definition.
        let mut b = Vec::new();
        struct_def_message(&mut b, 65, "A", &[("X", 2)]);
        let n = b.len();
        struct_def_message(&mut b, 65, "A", &[("X", 2)]);
        assert_eq!(s.next_frame(&b).unwrap().unwrap().1, n);
        assert_eq!(
            s.next_frame(&b[n..]),
            Err(GobError::DuplicateType { id: 65 })
        );
        // Redefining a builtin.
        let mut b = Vec::new();
        struct_def_message(&mut b, 5, "A", &[]);
        assert_eq!(s.next_frame(&b), Err(GobError::BadTypeId { id: -5 }));
        // Value of an undefined type.
        assert_eq!(
            s.decode_value(70, &[1, 2, 0]),
            Err(GobError::UnknownType { id: 70 })
        );
        // Field number out of range: struct 65 has one field.
        assert_eq!(
            s.decode_value(65, &[2, 2, 0]),
            Err(GobError::FieldOutOfRange {
                field: 1,
                fields: 1
            })
        );
        // Trailing bytes after the terminator.
        assert_eq!(
            s.decode_value(65, &[1, 2, 0, 9]),
            Err(GobError::TrailingBytes { count: 1 })
        );
        // Terminator omitted at the end of the message is accepted, like Go.
        assert_eq!(
            s.decode_value(65, &[1, 2]).unwrap().field("X"),
            Some(&Value::Int(1))
        );
        // Singleton with a non-zero delta.
        assert_eq!(
            s.decode_value(builtin::INT, &[1, 2]),
            Err(GobError::BadSingleton { delta: 1 })
        );
        // A wireType with no kind, and one with two.
        let mut c = Cursor::new(&[0]);
        assert_eq!(
            parse_wire_type(&mut c),
            Err(GobError::BadTypeDef {
                what: "wireType sets no kind"
            })
        );
        // Slice count larger than the message.
        let mut b = Vec::new();
        put_int(&mut b, -66);
        b.extend_from_slice(&[2, 1, 0, 1, 6, 0, 0]); // SliceT{CommonType{}, Elem: 3}
        let mut s = GobStream::default();
        let mut m = Vec::new();
        put_message(&mut m, &b);
        assert_eq!(
            s.next_frame(&m).unwrap().unwrap().0,
            Frame::TypeDef { id: 66 }
        );
        assert_eq!(
            s.types().get(66),
            Some(&WireType::Slice {
                name: String::new(),
                elem: 3
            })
        );
        assert_eq!(
            s.decode_value(66, &[0, 0x7f, 1]),
            Err(GobError::CountTooLarge {
                count: 127,
                have: 1
            })
        );
        assert_eq!(
            s.decode_value(66, &[0, 2, 1, 0xfe, 1, 0]),
            Ok(Value::Slice(vec![Value::Uint(1), Value::Uint(256)]))
        );
    }

    #[test]
    fn recursion_is_bounded() {
        // type T []T (id 66): a value nested 10_000 deep must fail cleanly.
        let mut s = GobStream::default();
        let mut b = Vec::new();
        put_int(&mut b, -66);
        b.extend_from_slice(&[2, 1, 0, 1]); // SliceT{CommonType{}, Elem: 66}
        put_int(&mut b, 66);
        b.extend_from_slice(&[0, 0]);
        let mut m = Vec::new();
        put_message(&mut m, &b);
        s.next_frame(&m).unwrap().unwrap();
        let mut v = vec![0u8];
        v.extend(std::iter::repeat_n(1u8, 10_000));
        assert_eq!(
            s.decode_value(66, &v),
            Err(GobError::TooDeep { max: MAX_DEPTH })
        );
        assert_eq!(
            s.skip_value(66, &v),
            Err(GobError::TooDeep { max: MAX_DEPTH })
        );
        // Shallow nesting decodes: [[[]]].
        assert_eq!(
            s.decode_value(66, &[0, 1, 1, 0]),
            Ok(Value::Slice(vec![Value::Slice(vec![Value::Slice(vec![])])]))
        );
    }

    #[test]
    fn memory_is_bounded() {
        // A []bool (id 66) of MAX_VALUES + 1 elements: skipping is fine, building is refused.
        let mut s = GobStream::new(4 << 20);
        let mut m = Vec::new();
        let mut b = Vec::new();
        put_int(&mut b, -66);
        b.extend_from_slice(&[2, 1, 0, 1, 2, 0, 0]); // SliceT{CommonType{}, Elem: bool}
        put_message(&mut m, &b);
        s.next_frame(&m).unwrap().unwrap();
        let mut v = vec![0u8];
        put_uint(&mut v, MAX_VALUES as u64 + 1);
        v.resize(v.len() + MAX_VALUES + 1, 1);
        assert_eq!(s.skip_value(66, &v), Ok(()));
        assert_eq!(
            s.decode_value(66, &v),
            Err(GobError::TooManyValues { max: MAX_VALUES })
        );
        // Type definitions beyond MAX_TYPE_DEF_BYTES in total are refused.
        let mut s = GobStream::new(1 << 20);
        let name = "n".repeat(500 << 10);
        let mut err = None;
        for id in 65..80 {
            let mut m = Vec::new();
            struct_def_message(&mut m, id, &name, &[("X", 2)]);
            if let Err(e) = s.next_frame(&m) {
                err = Some((id, e));
                break;
            }
        }
        assert_eq!(
            err,
            Some((
                73,
                GobError::TypeDefsTooLarge {
                    max: MAX_TYPE_DEF_BYTES
                }
            ))
        );
    }

    #[test]
    fn every_truncation_of_the_vectors_is_an_error_or_prefix() {
        for vec in [hex(V11_1), hex(V11_3_INNER), hex(GO_NESTED), hex(GO_RICH)] {
            let full = decode_stream(&vec, 1 << 16).unwrap();
            for cut in 0..vec.len() {
                match decode_stream(&vec[..cut], 1 << 16) {
                    Ok(vals) => {
                        assert!(vals.len() < full.len(), "cut {cut}");
                        assert_eq!(&full[..vals.len()], &vals[..]);
                    }
                    Err(e) => assert!(matches!(e, GobError::Truncated { .. }), "cut {cut}: {e}"),
                }
            }
        }
    }
}
