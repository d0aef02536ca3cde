//! Cilium's monitor `Payload` and what it carries (docs/cilium-formats.md §11.3–11.4): an
//! incremental decoder from gob stream bytes to [`MonitorMessage`]s, with counters for
//! everything.
//!
//! [`PayloadStream`] is fed raw socket (or recording) bytes in chunks of any size; it keeps
//! an incomplete message until the rest arrives and cuts every sample's bytes out of the
//! shared buffer as a [`Bytes`] (no copy, no allocation per message). Input is untrusted:
//! nothing here indexes, unwraps or panics on it. A malformed value is counted and skipped
//! (message boundaries are still known); a framing or type-definition error poisons the
//! stream, which the caller then drops (a new connection starts a new stream).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::gob::{self, builtin, frame_len, Cursor, Frame, GobError, GobStream, Value, WireType};

/// `Payload.Type` of a perf sample (`PERF_RECORD_SAMPLE`).
pub const EVENT_SAMPLE: i64 = 9;
/// `Payload.Type` of a lost-records notice (`PERF_RECORD_LOST`).
pub const RECORD_LOST: i64 = 2;
/// `Data[0]` of an L7 access-log record (`0x81 ‖ gob(accesslog.LogRecord)`).
/// (Cilium's `MessageTypeAccessLog`: one value, defined with the other message types.)
pub use crate::cilium::notify::MESSAGE_TYPE_ACCESS_LOG as MESSAGE_TYPE_L7;
/// `Data[0]` of an agent notification (`0x82 ‖ gob(api.AgentNotify)`).
pub const MESSAGE_TYPE_AGENT: u8 = 130;

/// Go's `payload.Payload{Data []byte; CPU int; Lost uint64; Type int}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    pub data: Bytes,
    pub cpu: i64,
    pub lost: u64,
    pub typ: i64,
}

/// One decoded monitor payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorMessage {
    /// `Type` 9 with `Data[0]` in 1..=7: a raw datapath notification
    /// (docs/cilium-formats.md §2–§7), possibly with up to 7 bytes of perf padding at the end.
    Sample { cpu: i64, data: Bytes },
    /// `Type` 2: the perf ring of `cpu` lost `count` records.
    Lost { cpu: i64, count: u64 },
    /// `Data[0]` 130: an agent notification; `kind` per [`agent_notification_name`], `text`
    /// is the JSON the agent sent.
    Agent { kind: u32, text: String },
    /// `Data[0]` 129: an L7 proxy access-log record (`data` includes the 0x81 byte).
    L7 { cpu: i64, data: Bytes },
    /// Anything else (unknown payload type, unknown or empty message type, or an agent
    /// notification that could not be decoded).
    Unknown {
        typ: i64,
        cpu: i64,
        lost: u64,
        data: Bytes,
    },
}

impl MonitorMessage {
    /// Classifies a payload without counting it.
    pub fn from_payload(p: Payload) -> Self {
        classify(p, &mut StreamStats::default())
    }

    /// `Data[0]` of a datapath sample.
    pub fn sample_type(&self) -> Option<u8> {
        match self {
            MonitorMessage::Sample { data, .. } => data.first().copied(),
            _ => None,
        }
    }
}

/// Cilium's name for `Data[0]` (`pkg/monitor/api/types.go`).
pub fn message_type_name(t: u8) -> &'static str {
    match t {
        MESSAGE_TYPE_L7 => "l7",
        MESSAGE_TYPE_AGENT => "agent",
        _ => crate::cilium::notify::MessageKind::name_of_type_byte(t),
    }
}

/// Cilium's name for an agent notification type (`pkg/monitor/api/types.go` notifyTable);
/// `None` for numbers it does not know (Cilium prints the number).
pub fn agent_notification_name(kind: u32) -> Option<&'static str> {
    Some(match kind {
        0 => "unspecified",
        1 => "Message",
        2 => "Cilium agent started",
        3 => "Endpoint regenerated",
        4 => "Failed endpoint regeneration",
        5 => "Policy updated",
        6 => "Policy deleted",
        7 => "Endpoint created",
        8 => "Endpoint deleted",
        9 => "IPCache entry upserted",
        10 => "IPCache entry deleted",
        _ => return None,
    })
}

/// Why one payload (or an inner agent / L7 stream) could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PayloadError {
    #[error(transparent)]
    Gob(#[from] GobError),
    #[error("gob value of type {id} is not a monitor Payload (no Data/CPU/Lost/Type field)")]
    NotPayload { id: i64 },
    #[error("Payload field {field} has wire type {id}, expected {want}")]
    FieldType {
        field: &'static str,
        id: i64,
        want: &'static str,
    },
    #[error("gob stream of {len} bytes holds no value")]
    NoValue { len: usize },
    #[error("agent notification is not a struct with Type/Text fields")]
    NotAgentNotify,
    #[error("agent notification type {value} does not fit in 32 bits")]
    AgentType { value: u64 },
}

impl PayloadError {
    /// A short stable name, used as the `reason` label of malformed-message counters.
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadError::Gob(e) => e.kind(),
            PayloadError::NotPayload { .. } => "not_payload",
            PayloadError::FieldType { .. } => "payload_field_type",
            PayloadError::NoValue { .. } => "no_value",
            PayloadError::NotAgentNotify => "not_agent_notify",
            PayloadError::AgentType { .. } => "agent_type_range",
        }
    }
}

/// Counters of one or more gob streams. Every payload increments exactly one of
/// `samples_by_type[1..=7]`, `lost_records`, `agent`, `agent_undecodable`, `l7`, `unknown`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes fed in.
    pub bytes: u64,
    /// Complete gob messages read (type definitions and values).
    pub messages: u64,
    pub type_definitions: u64,
    /// Payload values decoded.
    pub payloads: u64,
    /// Payloads with `Type` 9 (perf samples, including agent and L7 records).
    pub event_samples: u64,
    /// Payloads with a `Type` other than 9 and 2 (also counted in `unknown`).
    pub other_payload_types: u64,
    /// Samples by `Data[0]` (index 1..=7; index 0 unused).
    pub samples_by_type: [u64; 8],
    pub lost_records: u64,
    /// Sum of `Lost` over lost records (saturating).
    pub lost_total: u64,
    pub agent: u64,
    /// Agent notifications whose inner gob could not be decoded (passed on as `Unknown`).
    pub agent_undecodable: u64,
    pub l7: u64,
    /// L7 records whose inner gob is malformed (still passed on as `L7`; subset of `l7`).
    pub l7_undecodable: u64,
    pub unknown: u64,
    /// Messages skipped or streams abandoned, by reason ([`PayloadError::kind`]).
    pub malformed: BTreeMap<&'static str, u64>,
    /// Streams abandoned after an error that makes the rest unreadable.
    pub streams_abandoned: u64,
    /// Streams that ended (connection closed, file ended) inside a message.
    pub truncated_at_close: u64,
    /// Bytes thrown away: partial messages at close, input after a fatal error.
    pub bytes_discarded: u64,
}

impl StreamStats {
    pub fn samples(&self) -> u64 {
        self.samples_by_type.iter().sum()
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &StreamStats) {
        self.bytes += other.bytes;
        self.messages += other.messages;
        self.type_definitions += other.type_definitions;
        self.payloads += other.payloads;
        self.event_samples += other.event_samples;
        self.other_payload_types += other.other_payload_types;
        for (a, b) in self.samples_by_type.iter_mut().zip(other.samples_by_type) {
            *a += b;
        }
        self.lost_records += other.lost_records;
        self.lost_total = self.lost_total.saturating_add(other.lost_total);
        self.agent += other.agent;
        self.agent_undecodable += other.agent_undecodable;
        self.l7 += other.l7;
        self.l7_undecodable += other.l7_undecodable;
        self.unknown += other.unknown;
        for (k, v) in &other.malformed {
            *self.malformed.entry(k).or_default() += v;
        }
        self.streams_abandoned += other.streams_abandoned;
        self.truncated_at_close += other.truncated_at_close;
        self.bytes_discarded += other.bytes_discarded;
    }

    fn count_malformed(&mut self, kind: &'static str) {
        *self.malformed.entry(kind).or_default() += 1;
    }
}

/// Turns a decoded payload into a message, counting it.
pub fn classify(p: Payload, stats: &mut StreamStats) -> MonitorMessage {
    stats.payloads += 1;
    let Payload {
        data,
        cpu,
        lost,
        typ,
    } = p;
    if typ == EVENT_SAMPLE {
        stats.event_samples += 1;
    }
    match typ {
        EVENT_SAMPLE => match data.first().copied() {
            Some(t @ 1..=7) => {
                if let Some(c) = stats.samples_by_type.get_mut(usize::from(t)) {
                    *c += 1;
                }
                MonitorMessage::Sample { cpu, data }
            }
            Some(MESSAGE_TYPE_L7) => {
                stats.l7 += 1;
                if validate_l7(data.get(1..).unwrap_or(&[])).is_err() {
                    stats.l7_undecodable += 1;
                }
                MonitorMessage::L7 { cpu, data }
            }
            Some(MESSAGE_TYPE_AGENT) => match decode_agent_notify(data.get(1..).unwrap_or(&[])) {
                Ok((kind, text)) => {
                    stats.agent += 1;
                    MonitorMessage::Agent { kind, text }
                }
                Err(_) => {
                    stats.agent_undecodable += 1;
                    MonitorMessage::Unknown {
                        typ,
                        cpu,
                        lost,
                        data,
                    }
                }
            },
            _ => {
                stats.unknown += 1;
                MonitorMessage::Unknown {
                    typ,
                    cpu,
                    lost,
                    data,
                }
            }
        },
        RECORD_LOST => {
            stats.lost_records += 1;
            stats.lost_total = stats.lost_total.saturating_add(lost);
            MonitorMessage::Lost { cpu, count: lost }
        }
        _ => {
            stats.unknown += 1;
            stats.other_payload_types += 1;
            MonitorMessage::Unknown {
                typ,
                cpu,
                lost,
                data,
            }
        }
    }
}

/// Finds the first value of a self-contained gob stream (after its type definitions) and
/// hands it to `read` as (type id, input, start, end).
fn at_first_value<R>(
    stream: &[u8],
    read: impl FnOnce(&mut GobStream, i64, &[u8], usize, usize) -> Result<R, super::gob::GobError>,
) -> Result<R, PayloadError> {
    let mut gob = GobStream::new(stream.len().max(1));
    let mut off = 0usize;
    loop {
        let rest = stream.get(off..).unwrap_or(&[]);
        match gob.next_frame(rest)? {
            None => return Err(PayloadError::NoValue { len: stream.len() }),
            Some((Frame::TypeDef { .. }, n)) => off += n,
            Some((
                Frame::Value {
                    type_id,
                    body,
                    body_offset,
                },
                _,
            )) => {
                let end = body_offset + body.len();
                return Ok(read(&mut gob, type_id, rest, body_offset, end)?);
            }
        }
    }
}

/// The first value of a self-contained gob stream, decoded generically.
fn first_value(stream: &[u8]) -> Result<Value, PayloadError> {
    at_first_value(stream, |gob, t, input, start, end| {
        gob.decode_value_at(t, input, start, end).map(|(v, _)| v)
    })
}

/// Decodes `api.AgentNotify{Type uint32; Text string}` from the bytes after the 0x82 type
/// byte (a fresh gob stream with its own type definition). Fields are found by name; an
/// absent field is zero, as gob omits zero values.
pub fn decode_agent_notify(stream: &[u8]) -> Result<(u32, String), PayloadError> {
    let v = first_value(stream)?;
    if !matches!(v, Value::Struct { .. }) {
        return Err(PayloadError::NotAgentNotify);
    }
    let kind = match v.field("Type") {
        None => 0,
        Some(Value::Uint(u)) => {
            u32::try_from(*u).map_err(|_| PayloadError::AgentType { value: *u })?
        }
        Some(_) => return Err(PayloadError::NotAgentNotify),
    };
    let text = match v.field("Text") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(_) => return Err(PayloadError::NotAgentNotify),
    };
    Ok((kind, text))
}

/// Checks that the bytes after the 0x81 type byte are a well-formed gob stream holding a
/// value, without building it.
pub fn validate_l7(stream: &[u8]) -> Result<(), PayloadError> {
    at_first_value(stream, |gob, t, input, start, end| {
        gob.skip_value_at(t, input, start, end).map(|_| ())
    })
}

/// Decodes an L7 record's `accesslog.LogRecord` generically (bytes after the 0x81 byte).
pub fn decode_l7(stream: &[u8]) -> Result<Value, PayloadError> {
    first_value(stream)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Data,
    Cpu,
    Lost,
    Type,
    Skip(i64),
}

/// How to read the values of one wire struct type as a Payload: wire field index -> slot.
#[derive(Clone, Debug)]
struct PayloadPlan {
    type_id: i64,
    slots: Vec<Slot>,
}

impl PayloadPlan {
    fn build(stream: &GobStream, id: i64) -> Result<Self, PayloadError> {
        let wt = stream.types().get(id).ok_or(GobError::UnknownType { id })?;
        let WireType::Struct { fields, .. } = wt else {
            return Err(PayloadError::NotPayload { id });
        };
        let check = |field: &'static str, got: i64, ok: &[i64], want: &'static str, slot| {
            if ok.contains(&got) {
                Ok(slot)
            } else {
                Err(PayloadError::FieldType {
                    field,
                    id: got,
                    want,
                })
            }
        };
        let mut slots = Vec::with_capacity(fields.len());
        let mut matched = 0;
        for f in fields {
            let slot = match f.name.as_str() {
                "Data" => check(
                    "Data",
                    f.id,
                    &[builtin::BYTES, builtin::STRING],
                    "[]byte",
                    Slot::Data,
                )?,
                "CPU" => check("CPU", f.id, &[builtin::INT], "int", Slot::Cpu)?,
                "Lost" => check("Lost", f.id, &[builtin::UINT], "uint", Slot::Lost)?,
                "Type" => check("Type", f.id, &[builtin::INT], "int", Slot::Type)?,
                _ => Slot::Skip(f.id),
            };
            if !matches!(slot, Slot::Skip(_)) {
                matched += 1;
            }
            slots.push(slot);
        }
        if matched == 0 {
            return Err(PayloadError::NotPayload { id });
        }
        Ok(PayloadPlan { type_id: id, slots })
    }
}

/// A payload as read from a message body; `data` is a range of the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RawPayload {
    data: Option<(usize, usize)>,
    cpu: i64,
    lost: u64,
    typ: i64,
}

fn decode_with(
    plan: &PayloadPlan,
    gob: &mut GobStream,
    body: &[u8],
) -> Result<RawPayload, PayloadError> {
    let mut cur = Cursor::new(body);
    let mut raw = RawPayload::default();
    let mut field: i64 = -1;
    while !cur.is_empty() {
        let delta = cur.read_uint()?;
        if delta == 0 {
            break;
        }
        let n = gob::next_field(field, delta, plan.slots.len())?;
        match plan.slots.get(n).copied() {
            Some(Slot::Data) => {
                let b = cur.read_len_bytes()?;
                let end = cur.position();
                raw.data = Some((end - b.len(), end));
            }
            Some(Slot::Cpu) => raw.cpu = cur.read_int()?,
            Some(Slot::Lost) => raw.lost = cur.read_uint()?,
            Some(Slot::Type) => raw.typ = cur.read_int()?,
            Some(Slot::Skip(id)) => gob.skip(id, &mut cur, 1)?,
            None => {
                return Err(GobError::FieldOutOfRange {
                    field: n as u64,
                    fields: plan.slots.len(),
                }
                .into())
            }
        }
        field = n as i64;
    }
    if !cur.is_empty() {
        return Err(GobError::TrailingBytes {
            count: cur.remaining(),
        }
        .into());
    }
    Ok(raw)
}

/// Size of a stream buffer: messages are cut out of it without a copy, so it lives as long as
/// the last of them.
const BUFFER: usize = 512 << 10;
/// Stream buffers kept for reuse: more than the messages a pipeline holds in flight (a few
/// batches of a thousand) fill, so a long stream reuses warm memory instead of faulting in
/// fresh pages for every buffer.
const MAX_SPARE_BUFFERS: usize = 16;

/// Incremental decoder of one monitor gob stream (one connection).
///
/// A value split over several messages (Go does that only for an interface-typed field
/// whose concrete type it defines mid-value; `Payload` has none) is not followed here: its
/// first message is counted as malformed.
#[derive(Debug)]
pub struct PayloadStream {
    buf: BytesMut,
    /// Earlier buffers, oldest first: messages cut from them may still be alive; each is
    /// reused once none is (`try_reclaim`).
    spares: VecDeque<BytesMut>,
    /// Buffers allocated so far (the first included).
    buffers_allocated: u64,
    gob: GobStream,
    plan: Option<PayloadPlan>,
    poisoned: bool,
}

impl Default for PayloadStream {
    fn default() -> Self {
        PayloadStream::new(gob::DEFAULT_MAX_MESSAGE)
    }
}

impl PayloadStream {
    /// `max_message` bounds one gob message (and so the buffering of an incomplete one).
    pub fn new(max_message: usize) -> Self {
        PayloadStream {
            buf: BytesMut::with_capacity(BUFFER),
            spares: VecDeque::new(),
            buffers_allocated: 1,
            gob: GobStream::new(max_message),
            plan: None,
            poisoned: false,
        }
    }

    /// The stream's type definitions so far.
    pub fn gob(&self) -> &GobStream {
        &self.gob
    }

    /// Stream buffers allocated so far; a long stream whose messages are dropped as it goes
    /// reuses a few.
    pub fn buffers_allocated(&self) -> u64 {
        self.buffers_allocated
    }

    /// Bytes held back waiting for the rest of a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True after an error the stream cannot recover from, until [`reset`](Self::reset).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Starts a new stream (a new connection): forgets the types and any partial message,
    /// counting a partial message as truncated.
    pub fn reset(&mut self, stats: &mut StreamStats) {
        if !self.buf.is_empty() {
            stats.truncated_at_close += 1;
            stats.bytes_discarded += self.buf.len() as u64;
            self.buf.clear();
        }
        self.gob.reset();
        self.plan = None;
        self.poisoned = false;
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8], stats: &mut StreamStats) {
        stats.bytes += bytes.len() as u64;
        if self.poisoned {
            stats.bytes_discarded += bytes.len() as u64;
            return;
        }
        if self.buf.capacity() - self.buf.len() < bytes.len() {
            self.grow(bytes.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Moves to a buffer with room for the bytes not yet decoded (they move along) and
    /// `additional` more: the oldest spare if no message uses it any more, else a new one of
    /// [`BUFFER`] bytes (more if that is too small). The current buffer becomes a spare.
    fn grow(&mut self, additional: usize) {
        let required = self.buf.len().saturating_add(additional);
        let free = self
            .spares
            .front_mut()
            .is_some_and(|s| s.try_reclaim(required));
        let reused = if free { self.spares.pop_front() } else { None };
        let mut next = reused.unwrap_or_else(|| {
            self.buffers_allocated += 1;
            BytesMut::with_capacity(required.max(BUFFER))
        });
        next.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, next);
        old.clear();
        if self.spares.len() < MAX_SPARE_BUFFERS {
            self.spares.push_back(old);
        }
    }

    /// Decodes every complete message buffered, appending messages to `out`. A malformed
    /// value is counted in `stats.malformed` and skipped. `Err` means the stream cannot go
    /// on: it is poisoned (later input is discarded) until [`reset`](Self::reset).
    pub fn decode(
        &mut self,
        out: &mut Vec<MonitorMessage>,
        stats: &mut StreamStats,
    ) -> Result<(), PayloadError> {
        if self.poisoned {
            return Ok(());
        }
        let max = self.gob.max_message();
        let mut end = 0usize;
        let mut fatal: Option<GobError> = None;
        loop {
            match frame_len(self.buf.get(end..).unwrap_or(&[]), max) {
                Ok(Some((header, len))) => end += header + len,
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if end > 0 {
            let chunk = self.buf.split_to(end).freeze();
            let mut off = 0usize;
            while off < chunk.len() {
                let rest = chunk.get(off..).unwrap_or(&[]);
                let (frame, used) = match self.gob.next_frame(rest) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                };
                stats.messages += 1;
                match frame {
                    Frame::TypeDef { .. } => stats.type_definitions += 1,
                    Frame::Value {
                        type_id,
                        body,
                        body_offset,
                    } => match self.decode_payload(type_id, body) {
                        Ok(raw) => {
                            let base = off + body_offset;
                            let data = match raw.data {
                                None => Bytes::new(),
                                Some((a, b)) => match slice_checked(&chunk, base + a, base + b) {
                                    Some(d) => d,
                                    None => {
                                        stats.count_malformed("internal_range");
                                        off += used;
                                        continue;
                                    }
                                },
                            };
                            let p = Payload {
                                data,
                                cpu: raw.cpu,
                                lost: raw.lost,
                                typ: raw.typ,
                            };
                            out.push(classify(p, stats));
                        }
                        Err(e) => stats.count_malformed(e.kind()),
                    },
                }
                off += used;
            }
            if fatal.is_some() {
                let rest = chunk.len().saturating_sub(off);
                stats.bytes_discarded += rest as u64;
            }
        }
        match fatal {
            None => Ok(()),
            Some(e) => {
                stats.count_malformed(e.kind());
                stats.streams_abandoned += 1;
                stats.bytes_discarded += self.buf.len() as u64;
                self.buf.clear();
                self.poisoned = true;
                Err(e.into())
            }
        }
    }

    fn decode_payload(&mut self, type_id: i64, body: &[u8]) -> Result<RawPayload, PayloadError> {
        let plan = match self.plan.take() {
            Some(p) if p.type_id == type_id => p,
            _ => PayloadPlan::build(&self.gob, type_id)?,
        };
        let r = decode_with(&plan, &mut self.gob, body);
        self.plan = Some(plan);
        r
    }
}

fn slice_checked(b: &Bytes, start: usize, end: usize) -> Option<Bytes> {
    (start <= end && end <= b.len()).then(|| b.slice(start..end))
}

/// Writes a monitor gob stream the way the agent does (one encoder: the Payload type
/// definition once, then values with zero fields omitted). For tests, benches, simulators.
#[derive(Debug)]
pub struct PayloadEncoder {
    type_id: i64,
    defined: bool,
    body: Vec<u8>,
}

impl PayloadEncoder {
    /// `type_id` is the id Go would have given `Payload` (65 in a fresh process).
    pub fn new(type_id: i64) -> Self {
        PayloadEncoder {
            type_id,
            defined: false,
            body: Vec::with_capacity(256),
        }
    }

    pub fn encode(&mut self, data: &[u8], cpu: i64, lost: u64, typ: i64, out: &mut Vec<u8>) {
        use gob::encode::*;
        if !self.defined {
            struct_def_message(
                out,
                self.type_id,
                "Payload",
                &[
                    ("Data", builtin::BYTES),
                    ("CPU", builtin::INT),
                    ("Lost", builtin::UINT),
                    ("Type", builtin::INT),
                ],
            );
            self.defined = true;
        }
        let b = &mut self.body;
        b.clear();
        put_int(b, self.type_id);
        let mut last = -1i64;
        let mut delta = |b: &mut Vec<u8>, field: i64| {
            put_uint(b, (field - last) as u64);
            last = field;
        };
        if !data.is_empty() {
            delta(b, 0);
            put_bytes(b, data);
        }
        if cpu != 0 {
            delta(b, 1);
            put_int(b, cpu);
        }
        if lost != 0 {
            delta(b, 2);
            put_uint(b, lost);
        }
        if typ != 0 {
            delta(b, 3);
            put_int(b, typ);
        }
        b.push(0);
        put_message(out, b);
    }
}

/// `Data` of an agent notification: `0x82 ‖` a fresh gob stream of
/// `AgentNotify{Type, Text}` whose type has id `type_id`.
pub fn encode_agent_notify(kind: u32, text: &str, type_id: i64) -> Vec<u8> {
    use gob::encode::*;
    let mut out = vec![MESSAGE_TYPE_AGENT];
    struct_def_message(
        &mut out,
        type_id,
        "AgentNotify",
        &[("Type", builtin::UINT), ("Text", builtin::STRING)],
    );
    let mut body = Vec::new();
    put_int(&mut body, type_id);
    let mut last = -1i64;
    if kind != 0 {
        put_uint(&mut body, 1);
        put_uint(&mut body, u64::from(kind));
        last = 0;
    }
    if !text.is_empty() {
        put_uint(&mut body, (1 - last) as u64);
        put_bytes(&mut body, text.as_bytes());
    }
    body.push(0);
    put_message(&mut out, &body);
    out
}

/// Counters of a [`CiliumSocketSource`](super::socket::CiliumSocketSource) run (or a replay).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Successful connections.
    pub connections: u64,
    /// Connections after the first.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections closed by the agent (EOF) or by a read error.
    pub disconnects: u64,
    /// What the streams contained; `stream.streams_abandoned` counts connections dropped
    /// because their bytes could not be decoded.
    pub stream: StreamStats,
}

impl std::fmt::Display for SocketStats {
    /// One line: connections, then what the streams held, then what was lost or skipped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stream;
        write!(
            f,
            "{} connection(s), {} reconnect(s), {} failed attempt(s); {} payloads: samples",
            self.connections, self.reconnects, self.connect_failures, s.payloads
        )?;
        for (t, n) in s.samples_by_type.iter().enumerate().skip(1) {
            if *n > 0 {
                let name = message_type_name(t as u8);
                write!(f, " {name}={n}")?;
            }
        }
        write!(
            f,
            ", agent {}, l7 {}, unknown {}; perf ring lost {} record(s) in {} notice(s)",
            s.agent + s.agent_undecodable,
            s.l7,
            s.unknown,
            s.lost_total,
            s.lost_records
        )?;
        if s.malformed_total() > 0 {
            write!(
                f,
                "; malformed {:?}, {} stream(s) abandoned",
                s.malformed, s.streams_abandoned
            )?;
        }
        if s.truncated_at_close > 0 {
            write!(f, "; {} message(s) cut short", s.truncated_at_close)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::testutil::hex;

    const V11_1: &str = "38ff81030101075061796c6f616401ff82000104010444617461010a00010343505501040001044c6f7374010600010454797065010400000011ff82010401020304011801fe147b011200";
    const V11_2: &str = "38ff81030101075061796c6f616401ff82000104010444617461010a00010343505501040001044c6f737401060001045479706501040000000dff82010401020304011802120009ff8202060107010400";
    const V11_3_DATA: &str = "822bff830301010b4167656e744e6f7469667901ff84000102010454797065010600010454657874010c00000026ff840102011f7b2274696d65223a22323032342d30312d30315430303a30303a30305a227d00";
    const V11_3_WRAPPED: &str = "38ff81030101075061796c6f616401ff82000104010444617461010a00010343505501040001044c6f737401060001045479706501040000005bff820154822bff830301010b4167656e744e6f7469667901ff84000102010454797065010600010454657874010c00000026ff840102011f7b2274696d65223a22323032342d30312d30315430303a30303a30305a227d00031200";
    const V11_4_META: &str = "d204000000000000000000000000000000000000000000000000000000000000";

    fn decode_all(bytes: &[u8]) -> (Vec<MonitorMessage>, StreamStats, Result<(), PayloadError>) {
        let mut s = PayloadStream::default();
        let mut stats = StreamStats::default();
        let mut out = Vec::new();
        s.push(bytes, &mut stats);
        let r = s.decode(&mut out, &mut stats);
        (out, stats, r)
    }

    /// Payloads decoded from the raw gob (not classified), for exact field checks.
    fn raw_payloads(bytes: &[u8]) -> Vec<RawPayload> {
        let mut s = PayloadStream::default();
        let mut off = 0;
        let mut out = Vec::new();
        while let Some((f, n)) = s.gob.next_frame(&bytes[off..]).unwrap() {
            if let Frame::Value { type_id, body, .. } = f {
                out.push(s.decode_payload(type_id, body).unwrap());
            }
            off += n;
        }
        out
    }

    #[test]
    fn vector_11_1_fields() {
        let v = hex(V11_1);
        let raw = raw_payloads(&v);
        assert_eq!(raw.len(), 1);
        assert_eq!((raw[0].cpu, raw[0].lost, raw[0].typ), (12, 5243, 9));
        let (out, stats, r) = decode_all(&v);
        r.unwrap();
        // Data[0] = 1: a (tiny) drop sample.
        assert_eq!(
            out,
            vec![MonitorMessage::Sample {
                cpu: 12,
                data: Bytes::from_static(&[1, 2, 3, 4])
            }]
        );
        assert_eq!(stats.samples_by_type, [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            (stats.messages, stats.type_definitions, stats.payloads),
            (2, 1, 1)
        );
        assert_eq!(stats.bytes, 75);
    }

    #[test]
    fn vector_11_2_sample_then_lost() {
        let v = hex(V11_2);
        let raw = raw_payloads(&v);
        assert_eq!(
            raw.iter()
                .map(|r| (r.cpu, r.lost, r.typ))
                .collect::<Vec<_>>(),
            vec![(12, 0, 9), (3, 7, 2)]
        );
        assert_eq!(raw[1].data, None);
        let (out, stats, r) = decode_all(&v);
        r.unwrap();
        assert_eq!(
            out,
            vec![
                MonitorMessage::Sample {
                    cpu: 12,
                    data: Bytes::from_static(&[1, 2, 3, 4])
                },
                MonitorMessage::Lost { cpu: 3, count: 7 },
            ]
        );
        assert_eq!((stats.lost_records, stats.lost_total), (1, 7));
    }

    #[test]
    fn vector_11_3_agent_notification() {
        let data = hex(V11_3_DATA);
        assert_eq!(
            decode_agent_notify(&data[1..]),
            Ok((2, "{\"time\":\"2024-01-01T00:00:00Z\"}".to_string()))
        );
        assert_eq!(agent_notification_name(2), Some("Cilium agent started"));
        let (out, stats, r) = decode_all(&hex(V11_3_WRAPPED));
        r.unwrap();
        assert_eq!(
            out,
            vec![MonitorMessage::Agent {
                kind: 2,
                text: "{\"time\":\"2024-01-01T00:00:00Z\"}".into()
            }]
        );
        assert_eq!((stats.agent, stats.payloads), (1, 1));
        // Our encoder writes the same bytes Go did (AgentNotify id 66 there).
        assert_eq!(
            encode_agent_notify(2, "{\"time\":\"2024-01-01T00:00:00Z\"}", 66),
            data
        );
    }

    #[test]
    fn vector_11_4_legacy_meta_is_a_framing_error() {
        // The 1.0 protocol's 32-byte Meta header is not a gob stream: first byte 0xd2 is an
        // invalid uint prefix (n = 46 bytes).
        let (out, stats, r) = decode_all(&hex(V11_4_META));
        assert!(out.is_empty());
        assert_eq!(r, Err(PayloadError::Gob(GobError::BadUint { byte: 0xd2 })));
        assert_eq!(stats.streams_abandoned, 1);
        assert_eq!(stats.malformed.get("bad_uint"), Some(&1));
        assert_eq!(stats.bytes_discarded, 32);
    }

    #[test]
    fn encoder_matches_vectors() {
        let mut enc = PayloadEncoder::new(65);
        let mut out = Vec::new();
        enc.encode(&[1, 2, 3, 4], 12, 0, 9, &mut out);
        enc.encode(&[], 3, 7, 2, &mut out);
        assert_eq!(out, hex(V11_2));
        let mut enc = PayloadEncoder::new(65);
        let mut out = Vec::new();
        enc.encode(&hex(V11_3_DATA), 0, 0, 9, &mut out);
        assert_eq!(out, hex(V11_3_WRAPPED));
    }

    /// A stream with every kind of message, and the messages it must decode to.
    fn mixed_stream() -> (Vec<u8>, Vec<MonitorMessage>) {
        let mut enc = PayloadEncoder::new(70);
        let mut out = Vec::new();
        let mut want = Vec::new();
        for t in 1u8..=7 {
            let data: Vec<u8> = (0..(t as usize * 13))
                .map(|i| if i == 0 { t } else { i as u8 })
                .collect();
            enc.encode(&data, i64::from(t), 0, 9, &mut out);
            want.push(MonitorMessage::Sample {
                cpu: i64::from(t),
                data: Bytes::from(data),
            });
        }
        enc.encode(&[], 5, 1 << 40, 2, &mut out);
        want.push(MonitorMessage::Lost {
            cpu: 5,
            count: 1 << 40,
        });
        enc.encode(&[], 0, 0, 2, &mut out);
        want.push(MonitorMessage::Lost { cpu: 0, count: 0 });
        let agent = encode_agent_notify(9, "{\"a\":1}", 80);
        enc.encode(&agent, 0, 0, 9, &mut out);
        want.push(MonitorMessage::Agent {
            kind: 9,
            text: "{\"a\":1}".into(),
        });
        let agent0 = encode_agent_notify(0, "", 65);
        enc.encode(&agent0, 0, 0, 9, &mut out);
        want.push(MonitorMessage::Agent {
            kind: 0,
            text: String::new(),
        });
        enc.encode(&[0, 1, 2], -1, 0, 9, &mut out);
        want.push(MonitorMessage::Unknown {
            typ: 9,
            cpu: -1,
            lost: 0,
            data: Bytes::from_static(&[0, 1, 2]),
        });
        enc.encode(&[], 2, 3, 77, &mut out);
        want.push(MonitorMessage::Unknown {
            typ: 77,
            cpu: 2,
            lost: 3,
            data: Bytes::new(),
        });
        enc.encode(&[], 0, 0, 9, &mut out);
        want.push(MonitorMessage::Unknown {
            typ: 9,
            cpu: 0,
            lost: 0,
            data: Bytes::new(),
        });
        (out, want)
    }

    #[test]
    fn mixed_stream_decodes_and_counts() {
        let (bytes, want) = mixed_stream();
        let (out, stats, r) = decode_all(&bytes);
        r.unwrap();
        assert_eq!(out, want);
        assert_eq!(stats.samples_by_type, [0, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!((stats.lost_records, stats.lost_total), (2, 1 << 40));
        assert_eq!(
            (stats.agent, stats.agent_undecodable, stats.unknown),
            (2, 0, 3)
        );
        assert_eq!(stats.payloads, 14);
        assert_eq!((stats.event_samples, stats.other_payload_types), (11, 1));
        assert_eq!(stats.malformed_total(), 0);
    }

    #[test]
    fn split_at_every_byte_boundary_gives_identical_results() {
        let (bytes, want) = mixed_stream();
        for split in 0..=bytes.len() {
            let mut s = PayloadStream::default();
            let mut stats = StreamStats::default();
            let mut out = Vec::new();
            s.push(&bytes[..split], &mut stats);
            s.decode(&mut out, &mut stats).unwrap();
            s.push(&bytes[split..], &mut stats);
            s.decode(&mut out, &mut stats).unwrap();
            assert_eq!(out, want, "split at {split}");
            assert_eq!(s.buffered(), 0);
        }
        // And one byte at a time.
        let mut s = PayloadStream::default();
        let mut stats = StreamStats::default();
        let mut out = Vec::new();
        for b in &bytes {
            s.push(std::slice::from_ref(b), &mut stats);
            s.decode(&mut out, &mut stats).unwrap();
        }
        assert_eq!(out, want);
        assert_eq!(stats.bytes, bytes.len() as u64);
    }

    #[test]
    fn buffers_are_reused_once_their_messages_are_dropped() {
        // 40 MiB of 1000-byte samples pushed one by one (as a replay pushes recorded reads)
        // and decoded every 64 pushes, so undecoded bytes move along to each new buffer; the
        // last 3000 messages are kept alive (a pipeline's batches in flight), older ones
        // dropped.
        let mut enc = PayloadEncoder::new(65);
        let mut one = Vec::new();
        let mut s = PayloadStream::default();
        let mut stats = StreamStats::default();
        let mut live: VecDeque<MonitorMessage> = VecDeque::new();
        let mut out = Vec::new();
        let n = 40_000u32;
        let mut next = 0u32;
        for i in 0..n {
            let mut data = vec![1u8; 1000];
            data[1..5].copy_from_slice(&i.to_le_bytes());
            one.clear();
            enc.encode(&data, 0, 0, 9, &mut one);
            // Cut messages too: a piece ends 7 bytes into the next message.
            let cut = one.len() - 7;
            if i % 2 == 0 {
                s.push(&one, &mut stats);
            } else {
                s.push(&one[..cut], &mut stats);
                s.push(&one[cut..], &mut stats);
            }
            if i % 64 != 63 && i != n - 1 {
                continue;
            }
            s.decode(&mut out, &mut stats).unwrap();
            for m in out.drain(..) {
                let MonitorMessage::Sample { data, .. } = &m else {
                    panic!("{m:?}")
                };
                // Every message intact, in order, whatever buffer it was cut from.
                assert_eq!(data.len(), 1000);
                assert_eq!(data[1..5], next.to_le_bytes());
                next += 1;
                live.push_back(m);
            }
            while live.len() > 3000 {
                live.pop_front();
            }
        }
        assert_eq!((stats.payloads, next), (u64::from(n), n));
        // 3000 live messages (3 MB) span 6 or 7 buffers of 512 KiB: a few more than that are
        // allocated, not one per buffer's worth of the 40 MiB (80).
        let in_flight = (3000 * 1010 / BUFFER) as u64 + 1;
        assert!(
            (in_flight..=in_flight + 3).contains(&s.buffers_allocated()),
            "{} buffers",
            s.buffers_allocated()
        );
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn truncated_stream_counts_partial_message_on_reset() {
        let (bytes, want) = mixed_stream();
        let mut s = PayloadStream::default();
        let mut stats = StreamStats::default();
        let mut out = Vec::new();
        s.push(&bytes[..bytes.len() - 1], &mut stats);
        s.decode(&mut out, &mut stats).unwrap();
        assert_eq!(out, want[..want.len() - 1]);
        assert_eq!(s.buffered(), 5);
        s.reset(&mut stats);
        assert_eq!((stats.truncated_at_close, stats.bytes_discarded), (1, 5));
        // After reset, the same bytes decode again from scratch (types re-sent).
        out.clear();
        s.push(&bytes, &mut stats);
        s.decode(&mut out, &mut stats).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn malformed_value_is_skipped_and_stream_continues() {
        let mut enc = PayloadEncoder::new(65);
        let mut bytes = Vec::new();
        enc.encode(&[1, 9], 1, 0, 9, &mut bytes);
        // A value whose field delta is out of range (Payload has 4 fields).
        gob::encode::put_message(&mut bytes, &[0xff, 0x82, 0x09, 0x00]);
        // A value of an undefined type.
        gob::encode::put_message(&mut bytes, &[0xff, 0x90, 0x00]);
        enc.encode(&[4, 9], 2, 0, 9, &mut bytes);
        let (out, stats, r) = decode_all(&bytes);
        r.unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(stats.malformed.get("field_out_of_range"), Some(&1));
        assert_eq!(stats.malformed.get("unknown_type"), Some(&1));
        assert_eq!(stats.streams_abandoned, 0);
        assert_eq!(stats.samples_by_type[1] + stats.samples_by_type[4], 2);
    }

    #[test]
    fn oversized_message_poisons_until_reset() {
        let mut s = PayloadStream::new(1024);
        let mut stats = StreamStats::default();
        let mut out = Vec::new();
        let mut bytes = Vec::new();
        PayloadEncoder::new(65).encode(&[1; 10], 0, 0, 9, &mut bytes);
        bytes.extend_from_slice(&[0xfd, 0x10, 0x00, 0x00, 1, 2, 3]); // length 1 MiB
        s.push(&bytes, &mut stats);
        let r = s.decode(&mut out, &mut stats);
        assert_eq!(
            r,
            Err(PayloadError::Gob(GobError::MessageTooLong {
                len: 1 << 20,
                max: 1024
            }))
        );
        assert_eq!(out.len(), 1);
        assert!(s.is_poisoned());
        s.push(&[1, 2, 3], &mut stats);
        assert_eq!(s.decode(&mut out, &mut stats), Ok(()));
        assert_eq!(stats.bytes_discarded, 7 + 3);
        s.reset(&mut stats);
        assert!(!s.is_poisoned());
        assert_eq!(stats.truncated_at_close, 0);
    }

    #[test]
    fn payload_field_type_mismatch_and_foreign_struct() {
        use gob::encode::*;
        let mut bytes = Vec::new();
        struct_def_message(&mut bytes, 65, "Payload", &[("Data", 5), ("CPU", 3)]);
        put_message(&mut bytes, &[0xff, 0x82, 0x02, 0x01, 0x00]);
        struct_def_message(&mut bytes, 66, "Other", &[("X", 2)]);
        put_message(&mut bytes, &[0xff, 0x84, 0x01, 0x02, 0x00]);
        // An extra unknown field of a nested struct type is skipped.
        struct_def_message(
            &mut bytes,
            67,
            "Payload",
            &[("Extra", 66), ("Type", 2), ("Data", 5)],
        );
        put_message(
            &mut bytes,
            &[
                0xff, 0x86, 0x01, 0x01, 0x04, 0x00, 0x01, 0xff, 0x9a, 0x01, 0x01, 0x02, 0x00,
            ],
        );
        let (out, stats, r) = decode_all(&bytes);
        r.unwrap();
        assert_eq!(stats.malformed.get("payload_field_type"), Some(&1));
        assert_eq!(stats.malformed.get("not_payload"), Some(&1));
        assert_eq!(
            out,
            vec![MonitorMessage::Unknown {
                typ: 77,
                cpu: 0,
                lost: 0,
                data: Bytes::from_static(&[2])
            }]
        );
    }

    #[test]
    fn agent_notify_errors() {
        assert_eq!(
            decode_agent_notify(&[]),
            Err(PayloadError::NoValue { len: 0 })
        );
        // Type too large for u32.
        use gob::encode::*;
        let mut b = Vec::new();
        struct_def_message(&mut b, 65, "AgentNotify", &[("Type", 3), ("Text", 6)]);
        let mut body = Vec::new();
        put_int(&mut body, 65);
        body.push(1);
        put_uint(&mut body, 1 << 33);
        body.push(0);
        put_message(&mut b, &body);
        assert_eq!(
            decode_agent_notify(&b),
            Err(PayloadError::AgentType { value: 1 << 33 })
        );
        // Undecodable agent payloads are passed on as Unknown and counted.
        let mut stats = StreamStats::default();
        let m = classify(
            Payload {
                data: Bytes::from_static(&[130, 5, 1]),
                cpu: 1,
                lost: 0,
                typ: 9,
            },
            &mut stats,
        );
        assert!(matches!(m, MonitorMessage::Unknown { typ: 9, cpu: 1, .. }));
        assert_eq!(
            (stats.agent_undecodable, stats.unknown, stats.payloads),
            (1, 0, 1)
        );
    }

    #[test]
    fn l7_records_are_counted_and_validated() {
        use gob::encode::*;
        let mut inner = vec![MESSAGE_TYPE_L7];
        struct_def_message(&mut inner, 65, "LogRecord", &[("Type", 6), ("Code", 2)]);
        put_message(
            &mut inner,
            &[0xff, 0x82, 0x01, 0x03, b'r', b'e', b'q', 0x01, 0x04, 0x00],
        );
        let mut stats = StreamStats::default();
        let data = Bytes::from(inner.clone());
        let m = classify(
            Payload {
                data: data.clone(),
                cpu: 3,
                lost: 0,
                typ: 9,
            },
            &mut stats,
        );
        assert_eq!(m, MonitorMessage::L7 { cpu: 3, data });
        assert_eq!((stats.l7, stats.l7_undecodable), (1, 0));
        let v = decode_l7(&inner[1..]).unwrap();
        assert_eq!(v.field("Type"), Some(&Value::String("req".into())));
        assert_eq!(v.field("Code"), Some(&Value::Int(2)));
        let bad = Bytes::from_static(&[129, 3, 0xff, 0x82, 0x01]);
        classify(
            Payload {
                data: bad,
                cpu: 0,
                lost: 0,
                typ: 9,
            },
            &mut stats,
        );
        assert_eq!((stats.l7, stats.l7_undecodable), (2, 1));
    }

    #[test]
    fn names() {
        assert_eq!(agent_notification_name(0), Some("unspecified"));
        assert_eq!(agent_notification_name(1), Some("Message"));
        assert_eq!(agent_notification_name(10), Some("IPCache entry deleted"));
        assert_eq!(agent_notification_name(11), None);
        assert_eq!(message_type_name(1), "drop");
        assert_eq!(message_type_name(7), "trace-sock");
        assert_eq!(message_type_name(129), "l7");
        assert_eq!(message_type_name(200), "unknown");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)
        ) {
            let mut s = PayloadStream::new(4096);
            let mut stats = StreamStats::default();
            let mut out = Vec::new();
            for c in &chunks {
                s.push(c, &mut stats);
                if s.decode(&mut out, &mut stats).is_err() {
                    s.reset(&mut stats);
                }
            }
            prop_assert_eq!(stats.payloads, out.len() as u64);
        }

        #[test]
        fn mutated_stream_never_panics(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
            let (mut bytes, _) = mixed_stream();
            let p = pos % bytes.len();
            bytes[p] = byte;
            bytes.truncate(cut.min(bytes.len()));
            let (out, stats, _) = decode_all(&bytes);
            prop_assert_eq!(stats.payloads, out.len() as u64);
        }

        #[test]
        fn encode_decode_round_trip(
            items in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..64), any::<i64>(), any::<u64>(), any::<i64>()),
                0..20),
            split in any::<prop::sample::Index>(),
        ) {
            let mut enc = PayloadEncoder::new(65);
            let mut bytes = Vec::new();
            for (d, c, l, t) in &items {
                enc.encode(d, *c, *l, *t, &mut bytes);
            }
            let at = if bytes.is_empty() { 0 } else { split.index(bytes.len()) };
            let mut s = PayloadStream::default();
            let mut stats = StreamStats::default();
            let mut out = Vec::new();
            s.push(&bytes[..at], &mut stats);
            s.decode(&mut out, &mut stats).unwrap();
            s.push(&bytes[at..], &mut stats);
            s.decode(&mut out, &mut stats).unwrap();
            prop_assert_eq!(out.len(), items.len());
            for ((d, c, l, t), m) in items.iter().zip(&out) {
                let want = MonitorMessage::from_payload(Payload {
                    data: Bytes::from(d.clone()), cpu: *c, lost: *l, typ: *t,
                });
                prop_assert_eq!(m, &want);
            }
        }
    }
}
