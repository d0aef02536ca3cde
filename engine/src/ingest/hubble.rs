//! Hubble flow JSON lines: `hubble observe -o jsonpb` (`{"flow":{…},"node_name":…,"time":…}`,
//! a `GetFlowsResponse`), `hubble observe -o json` (the `Flow` object itself), and the
//! exporter's `events.log` (`observer.ExportEvent`: `{"flow":…}`, `{"lost_events":…}`,
//! `{"agent_event":…}`, `{"debug_event":…}`), docs/cilium-formats.md §13.
//!
//! Hubble writes protojson with proto field names (`drop_reason_desc`, `event_type`,
//! `node_name`); the lowerCamel names protojson uses without `UseProtoNames`
//! (`dropReasonDesc`, `eventType`, `nodeName`, …) are accepted too, as are enums written as
//! numbers and uint64 written as strings or numbers.
//!
//! Mapping a flow to a Cilium notification (docs/cilium-formats.md §13.2, read backwards):
//! * `event_type.type` 1, or no event type and verdict `DROPPED` → [`DropNotify`]: the reason
//!   from `drop_reason_desc` (the `flow.proto DropReason` name mapped back to its code with
//!   the proto column of drop_reasons_full.tsv, or a bare number), else `drop_reason`, else
//!   `event_type.sub_type`; identities; `file {name,line}` (the id of that name in the
//!   configured release's files table, 0 when the name is not in it); `interface.index`;
//!   `ip_trace_id.trace_id`.
//! * type 4, or no event type and verdict `FORWARDED`/`TRACED`/`TRANSLATED`/`REDIRECTED` →
//!   [`TraceNotify`]: observation point from `trace_observation_point` (`TO_ENDPOINT` is the
//!   datapath's 0), else `event_type.sub_type`; the trace reason mapped back
//!   (`NEW`→0 … `REOPENED`→4, `TRACE_REASON_UNKNOWN`→5) with the encrypt bit from
//!   `IP.encrypted`; `proxy_port` as `dst_id` at `TO_PROXY`.
//! * type 5, or no event type and verdict `AUDIT` → [`PolicyVerdictNotify`]: `-reason` for
//!   `DROPPED`, the proxy port for `REDIRECTED`, else 0; direction, match type, audit, IPv6 and
//!   auth type in their fields; the remote identity is the source's for ingress, the
//!   destination's otherwise.
//! * type 129 (L7) → [`Notice::L7`]. Anything else (debug capture, socket trace, `ERROR` or
//!   `VERDICT_UNKNOWN` without an event type) is skipped as `unsupported_flow`.
//!
//! `lost_events` → [`Notice::Lost`] (cpu −1 when Hubble gives none, e.g. observer-queue
//! loss); `agent_event` → [`Notice::Agent`] with Cilium's `AgentNotification` number (Hubble
//! renumbers them, docs/cilium-formats.md §11) and the event's JSON as text; `debug_event` → a
//! [`DebugMsg`] record when its type has a `DBG_*` name, else [`Notice::Unknown`].
//!
//! Skips, by kind: `empty`, `not_a_record` (no `{`: prompts, the tail of a wrapped line),
//! `cut_record` (JSON that ends too early), `bad_json`, `not_a_flow` (valid JSON of another
//! shape, e.g. `node_status`), `unsupported_flow`. Must never panic or invent a value: what
//! a line does not give stays 0/None.

use hashbrown::HashMap;
use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use sonic_rs::{JsonContainerTrait as _, JsonValueTrait as _, Object, Value};

use super::{FlowHeaders, Item, LineParser, Names, Record, Skips};

mod scan;
use crate::cilium::notify::{DebugMsg, DropNotify, Notification, PolicyVerdictNotify, TraceNotify};
use crate::cilium::tables::{
    bpf_file_name, drop_reason_info, trace_point_info, CiliumRelease, DEBUG_SUBTYPES,
};
use crate::event::{Cause, EventMeta, LinkType, Notice};

/// Parser of Hubble JSON lines.
#[derive(Clone, Debug, Default)]
pub struct HubbleParser {
    /// Release whose source-file table maps `file.name` to an id.
    pub release: CiliumRelease,
    names: NameCache,
    /// The member names of the last line the scanner read.
    memo: scan::Memo,
    /// The minute the last time started with (its first 17 bytes) and its seconds from the
    /// epoch: flows of one minute share it, and only the rest is read.
    minute: Option<([u8; 17], i64)>,
    /// The last `drop_reason_desc` name and its code.
    last_reason: Option<(&'static str, u8)>,
}

/// Entries a [`NameCache`] table holds before it is emptied (a log of more distinct names
/// than this costs what it cost without the cache).
const NAME_CACHE_MAX: usize = 4096;

/// Pod, namespace and node names and label sets already made into shared strings: a flow
/// log names the same pods in flow after flow, and each name is then made once, not once
/// per flow (and freed in another thread).
#[derive(Clone, Debug, Default)]
struct NameCache {
    /// The last name of each field (source and destination pod and namespace, node): a
    /// flow log repeats them line after line, and this check costs less than a hash.
    last: [Option<Arc<str>>; 5],
    texts: hashbrown::HashSet<Arc<str>>,
    labels: hashbrown::HashTable<Arc<[String]>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl NameCache {
    /// [`NameCache::text`] for field `at`, checking that field's last name first.
    fn text_at(&mut self, at: usize, s: &str) -> Arc<str> {
        if let Some(Some(a)) = self.last.get(at) {
            if **a == *s {
                return a.clone();
            }
        }
        let a = self.text(s);
        if let Some(slot) = self.last.get_mut(at) {
            *slot = Some(a.clone());
        }
        a
    }

    fn text(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.texts.get(s) {
            return a.clone();
        }
        if self.texts.len() >= NAME_CACHE_MAX {
            self.texts.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.texts.insert(a.clone());
        a
    }

    /// The label set `l`, `None` when empty. (A `[String]` hashes as the `[&str]` of its
    /// strings: slices hash their length, then each element, and a `String` as its `str`.)
    fn labels(&mut self, l: &[&str]) -> Option<Arc<[String]>> {
        if l.is_empty() {
            return None;
        }
        let hasher = &self.hasher;
        let h = hasher.hash_one(l);
        let same = |e: &Arc<[String]>| e.len() == l.len() && e.iter().zip(l).all(|(a, b)| a == b);
        if let Some(e) = self.labels.find(h, same) {
            return Some(e.clone());
        }
        if self.labels.len() >= NAME_CACHE_MAX {
            self.labels.clear();
        }
        let a: Arc<[String]> = l.iter().map(|s| (*s).to_string()).collect();
        self.labels
            .insert_unique(h, a.clone(), |e| hasher.hash_one(&**e));
        Some(a)
    }
}

impl HubbleParser {
    pub fn new(release: CiliumRelease) -> Self {
        HubbleParser {
            release,
            names: NameCache::default(),
            memo: scan::Memo::default(),
            minute: None,
            last_reason: None,
        }
    }

    fn parse(&mut self, o: &Object) -> Result<Item, &'static str> {
        let outer_node = str_of(o, "node_name", "nodeName");
        let outer_time = str_of(o, "time", "time");
        if let Some(f) = obj(field(o, "flow", "flow")) {
            return self.flow(&mut Fields::of_sonic(f), outer_node, outer_time);
        }
        if let Some(l) = obj(field(o, "lost_events", "lostEvents")) {
            let count = u64_of(sc(field(l, "num_events_lost", "numEventsLost"))).unwrap_or(0);
            let cpu = wrapped(field(l, "cpu", "cpu"))
                .and_then(|v| v.as_i64())
                .unwrap_or(-1);
            return Ok(Item::Notice(Notice::Lost { cpu, count }));
        }
        if let Some(a) = obj(field(o, "agent_event", "agentEvent")) {
            let kind = agent_kind(sc(field(a, "type", "type")));
            let body = a
                .iter()
                .find(|(k, _)| *k != "type")
                .map_or_else(|| a.clone().into_value(), |(_, v)| v.clone());
            return Ok(Item::Notice(Notice::Agent {
                kind,
                text: agent_text(&body),
            }));
        }
        if let Some(d) = obj(field(o, "debug_event", "debugEvent")) {
            return Ok(debug_event(d, outer_node, outer_time));
        }
        if is_flow_object(o) {
            return self.flow(&mut Fields::of_sonic(o), None, None);
        }
        Err("not_a_flow")
    }

    fn flow(
        &mut self,
        f: &mut Fields<'_>,
        outer_node: Option<&str>,
        outer_time: Option<&str>,
    ) -> Result<Item, &'static str> {
        let verdict = verdict_of(f.verdict);
        let et = f
            .event_type
            .map(|(typ, sub)| (u64_of(typ).unwrap_or(0), u64_of(sub)));
        let kind = match (et.map(|e| e.0), verdict) {
            (Some(1), _) | (None, Verdict::Dropped) => 1,
            (Some(4), _)
            | (
                None,
                Verdict::Forwarded | Verdict::Traced | Verdict::Translated | Verdict::Redirected,
            ) => 4,
            (Some(5), _) | (None, Verdict::Audit) => 5,
            (Some(129), _) => {
                return Ok(Item::Notice(Notice::L7 { cpu: -1 }));
            }
            _ => return Err("unsupported_flow"),
        };
        let sub_type = et.and_then(|e| e.1);
        let (src, dst) = (
            std::mem::take(&mut f.source),
            std::mem::take(&mut f.destination),
        );
        let headers = headers(f.ip.as_ref(), f.l4.as_ref(), f.summary);
        let iface = u32_of(f.iface_index).unwrap_or(0);
        let trace_id = u64_of(f.trace_id).unwrap_or(0);
        let ipv6 = matches!(
            headers.as_ref().and_then(|h| h.src.or(h.dst)),
            Some(IpAddr::V6(_))
        );
        let notification = match kind {
            1 => {
                let reason = self
                    .reason_of(f.drop_reason_desc)
                    .or_else(|| u8_of(f.drop_reason))
                    .or_else(|| sub_type.and_then(|s| u8::try_from(s).ok()))
                    .unwrap_or(0);
                let (file, line) = match f.file {
                    Some((name, line)) => (
                        as_str(name).and_then(|n| self.file_id(n)).unwrap_or(0),
                        u64_of(line)
                            .and_then(|l| u16::try_from(l).ok())
                            .unwrap_or(0),
                    ),
                    None => (0, 0),
                };
                Notification::Drop(DropNotify {
                    msg_type: 1,
                    subtype: reason,
                    src_label: src.identity,
                    dst_label: dst.identity,
                    line,
                    file,
                    ifindex: iface,
                    ip_trace_id: trace_id,
                    ..Default::default()
                })
            }
            4 => {
                let obs = obs_point_of(f.trace_observation_point)
                    .or_else(|| sub_type.and_then(|s| u8::try_from(s).ok()))
                    .unwrap_or(0);
                let mut reason = trace_reason_of(f.trace_reason);
                let encrypted =
                    f.ip.as_ref()
                        .is_some_and(|ip| ip.encrypted == Some(Sc::Bool(true)));
                if encrypted {
                    reason |= 0x80;
                }
                let dst_id = if obs == 1 {
                    u32_of(f.proxy_port)
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                Notification::Trace(TraceNotify {
                    msg_type: 4,
                    obs_point: obs,
                    src_label: src.identity,
                    dst_label: dst.identity,
                    dst_id,
                    reason,
                    ifindex: iface,
                    ip_trace_id: trace_id,
                    ..Default::default()
                })
            }
            _ => {
                let dir = match f.traffic_direction {
                    Some(Sc::Str(s)) => match s {
                        "INGRESS" => 1,
                        "EGRESS" => 2,
                        _ => 0,
                    },
                    v => u8_of(v).unwrap_or(0) & 0x03,
                };
                let match_type = u8_of(f.policy_match_type).unwrap_or(0) & 0x07;
                let mut flags = dir | (match_type << 3);
                if ipv6 {
                    flags |= 0x04;
                }
                if verdict == Verdict::Audit {
                    flags |= 0x40;
                }
                let verdict_num = match verdict {
                    Verdict::Dropped => {
                        let r = self
                            .reason_of(f.drop_reason_desc)
                            .or_else(|| u8_of(f.drop_reason))
                            .unwrap_or(0);
                        -i32::from(r)
                    }
                    Verdict::Redirected => u32_of(f.proxy_port)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                    _ => 0,
                };
                let auth_type = match f.auth_type {
                    Some(Sc::Str(s)) => match s {
                        "SPIRE" => 1,
                        "TEST_ALWAYS_FAIL" => 2,
                        _ => 0,
                    },
                    v => u8_of(v).unwrap_or(0),
                };
                let h = headers.clone().unwrap_or_default();
                Notification::PolicyVerdict(PolicyVerdictNotify {
                    msg_type: 5,
                    subtype: sub_type.and_then(|s| u8::try_from(s).ok()).unwrap_or(0),
                    remote_label: if dir == 2 { dst.identity } else { src.identity },
                    verdict: verdict_num,
                    dst_port: h.dport,
                    proto: h.proto,
                    flags,
                    auth_type,
                    ..Default::default()
                })
            }
        };
        let node = as_str(f.node_name).or(outer_node);
        let c = &mut self.names;
        let names = Names {
            src_pod: src.pod.map(|t| c.text_at(0, t)),
            src_namespace: src.namespace.map(|t| c.text_at(1, t)),
            src_labels: c.labels(&src.labels),
            dst_pod: dst.pod.map(|t| c.text_at(2, t)),
            dst_namespace: dst.namespace.map(|t| c.text_at(3, t)),
            dst_labels: c.labels(&dst.labels),
            node: node.filter(|n| !n.is_empty()).map(|t| c.text_at(4, t)),
        };
        let ts_ns = as_str(f.time).or(outer_time).and_then(|t| self.time_of(t));
        Ok(Item::Record(Record {
            ts_ns,
            cpu: None,
            cause: Cause::Cilium(notification),
            packet: None,
            link: LinkType::Ethernet,
            orig_len: 0,
            ifindex: iface,
            netns: 0,
            headers,
            meta: (names != Names::default()).then(|| EventMeta::with_names(names)),
        }))
    }

    /// [`reason_of`], with the last name remembered (a flow log repeats few reasons).
    fn reason_of(&mut self, v: Option<Sc<'_>>) -> Option<u8> {
        if let Some(Sc::Str(s)) = v {
            if let Some((_, code)) = self.last_reason.filter(|(name, _)| *name == s) {
                return Some(code);
            }
            if let Some((name, code)) = drop_reason_codes().get_key_value(s) {
                self.last_reason = Some((name, *code));
                return Some(*code);
            }
        }
        reason_of(v)
    }

    /// [`parse_rfc3339`], with the minute of the last time remembered.
    fn time_of(&mut self, t: &str) -> Option<u64> {
        let b = t.as_bytes();
        let head: [u8; 17] = b.get(..17)?.try_into().ok()?;
        let minute = match self.minute {
            Some((h, m)) if h == head => m,
            _ => {
                let m = rfc3339_minute(b)?;
                self.minute = Some((head, m));
                m
            }
        };
        rfc3339_after_minute(b, minute)
    }

    /// The id `name` has in this release's files table.
    fn file_id(&self, name: &str) -> Option<u8> {
        (1..=255u8).find(|&id| bpf_file_name(id, self.release) == Some(name))
    }
}

impl LineParser for HubbleParser {
    fn line(&mut self, line: &str, out: &mut Vec<Item>, skips: &mut Skips) {
        // The common flow lines straight from their text; the rest through a parsed value.
        let t = line.trim();
        if t.starts_with('{') {
            let mut f = Fields::default();
            if let Ok(outer) = scan::line(t, &mut f, &mut self.memo) {
                match self.flow(&mut f, outer.node, outer.time) {
                    Ok(item) => out.push(item),
                    Err(kind) => skips.add(kind),
                }
                return;
            }
        }
        self.line_parsed(line, out, skips);
    }

    fn finish(&mut self, _out: &mut Vec<Item>, _skips: &mut Skips) {}

    fn is_idle(&self) -> bool {
        true
    }
}

impl HubbleParser {
    /// [`LineParser::line`] through sonic-rs's parsed value (the reference reading).
    fn line_parsed(&mut self, line: &str, out: &mut Vec<Item>, skips: &mut Skips) {
        let Some(o) = sonic_object(line, skips) else {
            return;
        };
        match self.parse(&o) {
            Ok(item) => out.push(item),
            Err(kind) => skips.add(kind),
        }
    }
}

/// Parses a line that should hold one JSON object, counting it in `skips` when it does not.
/// Shared by the JSON-lines parsers of this module.
pub(crate) fn json_object(
    line: &str,
    skips: &mut Skips,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    json_object_with(line, skips, |t| match serde_json::from_str(t) {
        Ok(serde_json::Value::Object(o)) => Ok(Some(o)),
        Ok(_) => Ok(None),
        Err(e) => Err(e.is_eof()),
    })
}

/// [`json_object`] parsed by sonic-rs (this module's parser: its arena-backed value is
/// several times faster to build than serde_json's map of maps).
fn sonic_object(line: &str, skips: &mut Skips) -> Option<Object> {
    json_object_with(line, skips, parse_sonic)
}

fn parse_sonic(t: &str) -> Result<Option<Object>, bool> {
    match sonic_rs::from_str::<Value>(t) {
        Ok(v) => Ok(v.into_object()),
        // sonic-rs calls some cut texts malformed: serde_json tells the two apart (only on
        // this rare path), as for the other JSON formats.
        Err(_) => Err(serde_json::from_str::<serde::de::IgnoredAny>(t).is_err_and(|e| e.is_eof())),
    }
}

/// The shared part of [`json_object`]: what is not a JSON object is counted by kind.
/// `parse` gives the object, `Ok(None)` for JSON of another type, `Err(true)` when the text
/// ends too early.
fn json_object_with<T>(
    line: &str,
    skips: &mut Skips,
    parse: impl FnOnce(&str) -> Result<Option<T>, bool>,
) -> Option<T> {
    let t = line.trim();
    if t.is_empty() {
        skips.add("empty");
        return None;
    }
    if !t.starts_with('{') {
        skips.add("not_a_record");
        return None;
    }
    match parse(t) {
        Ok(Some(o)) => Some(o),
        Ok(None) => {
            skips.add("not_a_flow");
            None
        }
        Err(true) => {
            skips.add("cut_record");
            None
        }
        Err(false) => {
            skips.add("bad_json");
            None
        }
    }
}

/// True when the first few non-empty lines are Hubble JSON (and more of them are Hubble's
/// than of any other JSON shape). `cilium monitor -j` lines (`"type":"drop"`, `srcLabel`, …)
/// and our own lines (`origin`) are not.
pub fn looks_like_hubble(lines: &[&str]) -> bool {
    super::most_json_objects_are(lines, |t| parse_sonic(t).ok().flatten(), is_hubble_object)
}

fn is_hubble_object(o: &Object) -> bool {
    if o.contains_key(&"type") || o.contains_key(&"origin") {
        return false;
    }
    [
        ("flow", "flow"),
        ("lost_events", "lostEvents"),
        ("agent_event", "agentEvent"),
        ("debug_event", "debugEvent"),
        ("node_status", "nodeStatus"),
    ]
    .iter()
    .any(|(a, b)| obj(field(o, a, b)).is_some())
        || is_flow_object(o)
}

/// A bare `Flow` (`hubble observe -o json`): it has one of the members only flows have.
fn is_flow_object(o: &Object) -> bool {
    !o.contains_key(&"type")
        && !o.contains_key(&"origin")
        && [
            ("verdict", "verdict"),
            ("event_type", "eventType"),
            ("drop_reason_desc", "dropReasonDesc"),
            ("trace_observation_point", "traceObservationPoint"),
            ("Type", "Type"),
            ("l4", "l4"),
            ("IP", "IP"),
        ]
        .iter()
        .any(|(a, b)| field(o, a, b).is_some())
}

// ---------------------------------------------------------------------------------------------
// Members

/// A member's value as the mapping reads it: a string, an unsigned integer, a boolean, or
/// anything else (an object, an array, a negative or fractional number). A null member is
/// absent (`None`) wherever the mapping reads one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sc<'a> {
    Str(&'a str),
    U64(u64),
    Bool(bool),
    Other,
}

/// A sonic value as a [`Sc`]; null is `None`.
fn sc(v: Option<&Value>) -> Option<Sc<'_>> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    Some(if let Some(s) = v.as_str() {
        Sc::Str(s)
    } else if let Some(n) = v.as_u64() {
        Sc::U64(n)
    } else if let Some(b) = v.as_bool() {
        Sc::Bool(b)
    } else {
        Sc::Other
    })
}

fn as_str(v: Option<Sc<'_>>) -> Option<&str> {
    match v {
        Some(Sc::Str(s)) => Some(s),
        _ => None,
    }
}

/// The members of a flow the mapping reads, with the precedence of [`FlowView`] (a proto
/// name wins over its lowerCamel twin; a null member is absent). Filled from a parsed value
/// ([`Fields::of_sonic`]) or by the line scanner ([`scan`]).
#[derive(Debug, Default)]
struct Fields<'a> {
    pub verdict: Option<Sc<'a>>,
    /// `event_type` when it is an object: its `type` and `sub_type`.
    pub event_type: Option<(Option<Sc<'a>>, Option<Sc<'a>>)>,
    pub source: Endpoint<'a>,
    pub destination: Endpoint<'a>,
    /// `IP` when it is an object.
    pub ip: Option<IpF<'a>>,
    /// The first protocol member (`TCP`, `UDP`, …) of `l4` that is an object.
    pub l4: Option<L4F<'a>>,
    /// `interface.index`.
    pub iface_index: Option<Sc<'a>>,
    /// `ip_trace_id.trace_id`.
    pub trace_id: Option<Sc<'a>>,
    pub drop_reason_desc: Option<Sc<'a>>,
    pub drop_reason: Option<Sc<'a>>,
    /// `file` when it is an object: its `name` and `line`.
    pub file: Option<(Option<Sc<'a>>, Option<Sc<'a>>)>,
    pub trace_observation_point: Option<Sc<'a>>,
    pub trace_reason: Option<Sc<'a>>,
    pub proxy_port: Option<Sc<'a>>,
    pub traffic_direction: Option<Sc<'a>>,
    pub policy_match_type: Option<Sc<'a>>,
    pub auth_type: Option<Sc<'a>>,
    pub node_name: Option<Sc<'a>>,
    pub time: Option<Sc<'a>>,
    pub summary: Option<Sc<'a>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IpF<'a> {
    pub source: Option<Sc<'a>>,
    pub destination: Option<Sc<'a>>,
    pub encrypted: Option<Sc<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L4Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp4,
    Icmp6,
}

impl L4Proto {
    fn of(name: &str) -> Option<L4Proto> {
        Some(match name {
            "TCP" => L4Proto::Tcp,
            "UDP" => L4Proto::Udp,
            "SCTP" => L4Proto::Sctp,
            "ICMPv4" => L4Proto::Icmp4,
            "ICMPv6" => L4Proto::Icmp6,
            _ => return None,
        })
    }

    /// The proto whose `as u32` is `class` (the scanner's class of an `l4` member name).
    fn from_class(class: u32) -> Option<L4Proto> {
        [
            L4Proto::Tcp,
            L4Proto::Udp,
            L4Proto::Sctp,
            L4Proto::Icmp4,
            L4Proto::Icmp6,
        ]
        .into_iter()
        .find(|p| *p as u32 == class)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct L4F<'a> {
    pub proto: L4Proto,
    pub sport: Option<Sc<'a>>,
    pub dport: Option<Sc<'a>>,
    /// The flags byte of a `flags` object, `None` without one.
    pub flags: Option<u8>,
    pub icmp_type: Option<Sc<'a>>,
    pub icmp_code: Option<Sc<'a>>,
}

impl<'a> Fields<'a> {
    fn of_sonic(f: &'a Object) -> Fields<'a> {
        let f = FlowView::of(f);
        Fields {
            verdict: sc(f[F::Verdict]),
            event_type: obj(f[F::EventType])
                .map(|e| (sc(e.get(&"type")), sc(field(e, "sub_type", "subType")))),
            source: endpoint(f[F::Source]),
            destination: endpoint(f[F::Destination]),
            ip: obj(f[F::Ip]).map(|ip| IpF {
                source: sc(ip.get(&"source")),
                destination: sc(ip.get(&"destination")),
                encrypted: sc(ip.get(&"encrypted")),
            }),
            l4: obj(f[F::L4]).and_then(|l4| {
                l4.iter().find_map(|(k, v)| {
                    let p = v.as_object()?;
                    Some(L4F {
                        proto: L4Proto::of(k)?,
                        sport: sc(field(p, "source_port", "sourcePort")),
                        dport: sc(field(p, "destination_port", "destinationPort")),
                        flags: p.get(&"flags").and_then(|v| v.as_object()).map(|fl| {
                            fl.iter().fold(0u8, |acc, (name, v)| match tcp_flag(name) {
                                Some(bit) if v.as_bool() == Some(true) => acc | bit,
                                _ => acc,
                            })
                        }),
                        icmp_type: sc(p.get(&"type")),
                        icmp_code: sc(p.get(&"code")),
                    })
                })
            }),
            iface_index: obj(f[F::Interface]).and_then(|i| sc(i.get(&"index"))),
            trace_id: obj(f[F::IpTraceId]).and_then(|t| sc(field(t, "trace_id", "traceId"))),
            drop_reason_desc: sc(f[F::DropReasonDesc]),
            drop_reason: sc(f[F::DropReason]),
            file: obj(f[F::File]).map(|fl| (sc(fl.get(&"name")), sc(fl.get(&"line")))),
            trace_observation_point: sc(f[F::TraceObservationPoint]),
            trace_reason: sc(f[F::TraceReason]),
            proxy_port: sc(f[F::ProxyPort]),
            traffic_direction: sc(f[F::TrafficDirection]),
            policy_match_type: sc(f[F::PolicyMatchType]),
            auth_type: sc(f[F::AuthType]),
            node_name: sc(f[F::NodeName]),
            time: sc(f[F::Time]),
            summary: sc(f[F::Summary]),
        }
    }
}

/// The members of a flow object that the mapping reads, found in one pass over it (looking
/// each up by both of its names costs a scan of the object per absent name). A proto name
/// wins over its lowerCamel twin; a null member counts as absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum F {
    Verdict,
    EventType,
    Source,
    Destination,
    Ip,
    L4,
    Interface,
    IpTraceId,
    DropReasonDesc,
    DropReason,
    File,
    TraceObservationPoint,
    TraceReason,
    ProxyPort,
    TrafficDirection,
    PolicyMatchType,
    AuthType,
    NodeName,
    Time,
    Summary,
}

const FLOW_MEMBERS: usize = F::Summary as usize + 1;

struct FlowView<'a> {
    value: [Option<&'a Value>; FLOW_MEMBERS],
    by_proto_name: [bool; FLOW_MEMBERS],
}

impl<'a> FlowView<'a> {
    fn of(f: &'a Object) -> Self {
        let mut view = FlowView {
            value: [None; FLOW_MEMBERS],
            by_proto_name: [false; FLOW_MEMBERS],
        };
        for (k, v) in f.iter() {
            let Some((slot, proto)) = flow_member(k) else {
                continue;
            };
            let i = slot as usize;
            let (Some(value), Some(by_proto)) =
                (view.value.get_mut(i), view.by_proto_name.get_mut(i))
            else {
                continue;
            };
            if v.is_null() || (*by_proto && !proto) {
                continue;
            }
            *value = Some(v);
            *by_proto = proto;
        }
        view
    }
}

/// The member a flow's key names, and whether by its proto name.
fn flow_member(k: &str) -> Option<(F, bool)> {
    Some(match k {
        "verdict" => (F::Verdict, true),
        "event_type" => (F::EventType, true),
        "eventType" => (F::EventType, false),
        "source" => (F::Source, true),
        "destination" => (F::Destination, true),
        "IP" => (F::Ip, true),
        "l4" => (F::L4, true),
        "interface" => (F::Interface, true),
        "ip_trace_id" => (F::IpTraceId, true),
        "ipTraceId" => (F::IpTraceId, false),
        "drop_reason_desc" => (F::DropReasonDesc, true),
        "dropReasonDesc" => (F::DropReasonDesc, false),
        "drop_reason" => (F::DropReason, true),
        "dropReason" => (F::DropReason, false),
        "file" => (F::File, true),
        "trace_observation_point" => (F::TraceObservationPoint, true),
        "traceObservationPoint" => (F::TraceObservationPoint, false),
        "trace_reason" => (F::TraceReason, true),
        "traceReason" => (F::TraceReason, false),
        "proxy_port" => (F::ProxyPort, true),
        "proxyPort" => (F::ProxyPort, false),
        "traffic_direction" => (F::TrafficDirection, true),
        "trafficDirection" => (F::TrafficDirection, false),
        "policy_match_type" => (F::PolicyMatchType, true),
        "policyMatchType" => (F::PolicyMatchType, false),
        "auth_type" => (F::AuthType, true),
        "authType" => (F::AuthType, false),
        "node_name" => (F::NodeName, true),
        "nodeName" => (F::NodeName, false),
        "time" => (F::Time, true),
        "Summary" => (F::Summary, true),
        _ => return None,
    })
}

impl<'a> std::ops::Index<F> for FlowView<'a> {
    type Output = Option<&'a Value>;
    fn index(&self, i: F) -> &Option<&'a Value> {
        self.value.get(i as usize).unwrap_or(&None)
    }
}

fn field<'a>(o: &'a Object, proto: &str, camel: &str) -> Option<&'a Value> {
    o.get(&proto)
        .or_else(|| o.get(&camel))
        .filter(|v| !v.is_null())
}

fn obj(v: Option<&Value>) -> Option<&Object> {
    v?.as_object()
}

/// The value of a string member of `o` (a [`JsonValueTrait::as_str`] view).
fn str_of<'a>(o: &'a Object, proto: &str, camel: &str) -> Option<&'a str> {
    field(o, proto, camel).and_then(|v| v.as_str())
}

/// An agent event's body as JSON text, members in name order (as Cilium's Go maps print).
fn agent_text(v: &Value) -> String {
    // Rare (agent events), so the detour through serde_json's sorted map costs nothing.
    serde_json::from_str::<serde_json::Value>(&v.to_string())
        .map_or_else(|_| v.to_string(), |s| s.to_string())
}

/// A uint64 as protojson writes it (a string) or as a number.
fn u64_of(v: Option<Sc<'_>>) -> Option<u64> {
    match v? {
        Sc::Str(s) => s.trim().parse().ok(),
        Sc::U64(n) => Some(n),
        Sc::Bool(_) | Sc::Other => None,
    }
}

fn u32_of(v: Option<Sc<'_>>) -> Option<u32> {
    u64_of(v).and_then(|n| u32::try_from(n).ok())
}

fn u8_of(v: Option<Sc<'_>>) -> Option<u8> {
    u64_of(v).and_then(|n| u8::try_from(n).ok())
}

/// A wrapper type (`Int32Value`): protojson writes the plain value; `{"value":n}` also read.
fn wrapped(v: Option<&Value>) -> Option<&Value> {
    let v = v?;
    match v.as_object() {
        Some(o) => o.get(&"value"),
        None => Some(v),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Unknown,
    Forwarded,
    Dropped,
    Error,
    Audit,
    Redirected,
    Traced,
    Translated,
}

fn verdict_of(v: Option<Sc<'_>>) -> Verdict {
    let n = match v {
        Some(Sc::Str(s)) => match s {
            "FORWARDED" => 1,
            "DROPPED" => 2,
            "ERROR" => 3,
            "AUDIT" => 4,
            "REDIRECTED" => 5,
            "TRACED" => 6,
            "TRANSLATED" => 7,
            _ => 0,
        },
        v => u64_of(v).unwrap_or(0),
    };
    match n {
        1 => Verdict::Forwarded,
        2 => Verdict::Dropped,
        3 => Verdict::Error,
        4 => Verdict::Audit,
        5 => Verdict::Redirected,
        6 => Verdict::Traced,
        7 => Verdict::Translated,
        _ => Verdict::Unknown,
    }
}

/// `flow.proto DropReason` name → code, from the proto column of drop_reasons_full.tsv
/// (every code 0–255 that has a proto name there: 0 `DROP_REASON_UNKNOWN`, 130–205 but 159;
/// note 136/161 carry proto names that disagree with the datapath's meaning,
/// docs/cilium-formats.md §9.1 — the code is still the one Hubble wrote).
fn drop_reason_codes() -> &'static HashMap<&'static str, u8> {
    static T: OnceLock<HashMap<&'static str, u8>> = OnceLock::new();
    T.get_or_init(|| {
        (0..=255u8)
            .filter_map(|c| drop_reason_info(c).and_then(|i| i.hubble).map(|n| (n, c)))
            .collect()
    })
}

/// A `drop_reason_desc` value: an enum name, or a bare number (values without a name).
fn reason_of(v: Option<Sc<'_>>) -> Option<u8> {
    match v? {
        Sc::Str(s) => drop_reason_codes()
            .get(s)
            .copied()
            .or_else(|| s.parse().ok()),
        v => u8_of(Some(v)),
    }
}

/// `TraceObservationPoint` name → the datapath's `obs_point` (`TO_ENDPOINT` 101 → 0).
fn obs_point_of(v: Option<Sc<'_>>) -> Option<u8> {
    let n = match v? {
        Sc::Str(s) => {
            if s == "TO_ENDPOINT" {
                return Some(0);
            }
            return (1..=255u8).find(|&c| {
                trace_point_info(c).is_some_and(|i| i.hubble.split('(').next() == Some(s))
            });
        }
        v => u64_of(Some(v))?,
    };
    match n {
        101 => Some(0),
        0 => None,
        n => u8::try_from(n).ok(),
    }
}

/// Hubble `TraceReason` → the datapath's reason (docs/cilium-formats.md §9.3 backwards:
/// Hubble adds 1 below 5 and writes 5 as 0). protojson omits a zero enum, so an absent reason
/// is `TRACE_REASON_UNKNOWN`, the datapath's 5.
fn trace_reason_of(v: Option<Sc<'_>>) -> u8 {
    let n = match v {
        Some(Sc::Str(s)) => match s {
            "TRACE_REASON_UNKNOWN" => 0,
            "NEW" => 1,
            "ESTABLISHED" => 2,
            "REPLY" => 3,
            "RELATED" => 4,
            "REOPENED" => 5,
            "SRV6_ENCAP" => 6,
            "SRV6_DECAP" => 7,
            "ENCRYPT_OVERLAY" => 8,
            _ => 0,
        },
        v => u8_of(v).unwrap_or(0),
    };
    match n {
        0 => 5,
        1..=5 => n - 1,
        n => n,
    }
}

/// Hubble `AgentEventType` → Cilium's `AgentNotification` number (docs/cilium-formats.md
/// §11.4: Hubble renumbers: POLICY_UPDATED 3 is Cilium's 5, ENDPOINT_REGENERATE_SUCCESS 5 is
/// Cilium's 3…).
fn agent_kind(v: Option<Sc<'_>>) -> u32 {
    let hubble = match v {
        Some(Sc::Str(s)) => match s {
            "AGENT_STARTED" => 2,
            "POLICY_UPDATED" => 3,
            "POLICY_DELETED" => 4,
            "ENDPOINT_REGENERATE_SUCCESS" => 5,
            "ENDPOINT_REGENERATE_FAILURE" => 6,
            "ENDPOINT_CREATED" => 7,
            "ENDPOINT_DELETED" => 8,
            "IPCACHE_UPSERTED" => 9,
            "IPCACHE_DELETED" => 10,
            "SERVICE_UPSERTED" => 11,
            "SERVICE_DELETED" => 12,
            _ => 0,
        },
        v => u32_of(v).unwrap_or(0),
    };
    match hubble {
        3 => 5,
        4 => 6,
        5 => 3,
        6 => 4,
        n => n,
    }
}

fn debug_event(d: &Object, node: Option<&str>, time: Option<&str>) -> Item {
    let cpu = wrapped(field(d, "cpu", "cpu")).and_then(|v| v.as_i64());
    let t = field(d, "type", "type");
    let subtype = match t.and_then(|v| v.as_str()) {
        Some("DBG_EVENT_UNKNOWN") => Some(0),
        Some(s) => DEBUG_SUBTYPES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| u8::try_from(i).ok()),
        None => u8_of(sc(t)),
    };
    let Some(subtype) = subtype else {
        return Item::Notice(Notice::Unknown {
            typ: 2,
            cpu: cpu.unwrap_or(-1),
        });
    };
    let source = obj(field(d, "source", "source"))
        .and_then(|e| u32_of(sc(e.get(&"ID"))))
        .and_then(|id| u16::try_from(id).ok())
        .unwrap_or(0);
    let arg = |k: &str| u32_of(sc(d.get(&k))).unwrap_or(0);
    let names = Names {
        node: node.filter(|n| !n.is_empty()).map(Into::into),
        ..Default::default()
    };
    Item::Record(Record {
        ts_ns: time.and_then(parse_rfc3339),
        cpu: cpu.and_then(|c| u32::try_from(c).ok()),
        cause: Cause::Cilium(Notification::Debug(DebugMsg {
            msg_type: 2,
            subtype,
            source,
            hash: arg("hash"),
            arg1: arg("arg1"),
            arg2: arg("arg2"),
            arg3: arg("arg3"),
        })),
        packet: None,
        link: LinkType::Ethernet,
        orig_len: 0,
        ifindex: 0,
        netns: 0,
        headers: None,
        meta: (names != Names::default()).then(|| EventMeta::with_names(names)),
    })
}

#[derive(Debug, Default)]
struct Endpoint<'a> {
    identity: u32,
    pod: Option<&'a str>,
    namespace: Option<&'a str>,
    labels: Vec<&'a str>,
}

impl<'a> Endpoint<'a> {
    /// From its members: `pod` is `pod_name` when present, else `podName`.
    fn of(
        identity: Option<Sc<'a>>,
        pod: Option<Sc<'a>>,
        namespace: Option<Sc<'a>>,
        labels: Vec<&'a str>,
    ) -> Endpoint<'a> {
        let text = |v: Option<Sc<'a>>| as_str(v).filter(|s| !s.is_empty());
        Endpoint {
            identity: u32_of(identity).unwrap_or(0),
            pod: text(pod),
            namespace: text(namespace),
            labels,
        }
    }
}

fn endpoint(e: Option<&Value>) -> Endpoint<'_> {
    let Some(e) = obj(e) else {
        return Endpoint::default();
    };
    // One pass over the members (as for the flow: absent names cost a scan each).
    let (mut identity, mut pod, mut pod_camel, mut namespace, mut labels) =
        (None, None, None, None, None);
    for (k, v) in e.iter() {
        if v.is_null() {
            continue;
        }
        match k {
            "identity" => identity = Some(v),
            "pod_name" => pod = Some(v),
            "podName" => pod_camel = Some(v),
            "namespace" => namespace = Some(v),
            "labels" => labels = Some(v),
            _ => {}
        }
    }
    Endpoint::of(
        sc(identity),
        sc(pod.or(pod_camel)),
        sc(namespace),
        match labels.and_then(|v| v.as_array()) {
            Some(a) => a.iter().filter_map(|l| l.as_str()).collect(),
            None => Vec::new(),
        },
    )
}

const TCP_FLAGS: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

/// The bit of a TCP flag's name.
fn tcp_flag(name: &str) -> Option<u8> {
    TCP_FLAGS.iter().position(|n| *n == name).map(|i| 1 << i)
}

/// The flags byte of a `Summary` of the form `TCP Flags: SYN, ACK`.
fn summary_flags(s: Option<&str>) -> Option<u8> {
    let rest = s?.strip_prefix("TCP Flags: ")?;
    let mut flags = 0u8;
    for name in rest.split(',').map(str::trim) {
        flags |= tcp_flag(name)?;
    }
    Some(flags)
}

/// The headers `IP` and `l4` name; `None` when the flow has neither.
fn headers(
    ip: Option<&IpF<'_>>,
    l4: Option<&L4F<'_>>,
    summary: Option<Sc<'_>>,
) -> Option<FlowHeaders> {
    let mut h = FlowHeaders::default();
    let mut any = false;
    if let Some(ip) = ip {
        h.src = as_str(ip.source).and_then(parse_ip);
        h.dst = as_str(ip.destination).and_then(parse_ip);
        any = true;
    }
    if let Some(p) = l4 {
        let port = |v: Option<Sc<'_>>| u32_of(v).and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
        match p.proto {
            L4Proto::Tcp | L4Proto::Udp | L4Proto::Sctp => {
                h.proto = match p.proto {
                    L4Proto::Tcp => 6,
                    L4Proto::Udp => 17,
                    _ => 132,
                };
                h.sport = port(p.sport);
                h.dport = port(p.dport);
                if p.proto == L4Proto::Tcp {
                    // No `flags` member: Hubble's own summary (`TCP Flags: SYN, ACK`) says.
                    h.tcp_flags = p.flags.or_else(|| summary_flags(as_str(summary)));
                }
            }
            L4Proto::Icmp4 | L4Proto::Icmp6 => {
                h.proto = if p.proto == L4Proto::Icmp4 { 1 } else { 58 };
                h.icmp = Some((
                    u8_of(p.icmp_type).unwrap_or(0),
                    u8_of(p.icmp_code).unwrap_or(0),
                ));
            }
        }
        any = true;
    }
    any.then_some(h)
}

/// An address as `IpAddr`'s parser reads it.
fn parse_ip(s: &str) -> Option<IpAddr> {
    dotted_quad(s.as_bytes())
        .map(|a| IpAddr::V4(std::net::Ipv4Addr::from(a)))
        .or_else(|| s.parse().ok())
}

/// The plain form of an IPv4 address (four decimal octets, no leading zeros), read in one
/// pass; `None` for anything else, which [`parse_ip`] leaves to the standard parser. What
/// this accepts, the standard parser reads the same (checked by a proptest).
fn dotted_quad(b: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    // The octet being read (its value and digits so far), then the octets before it.
    let (mut n, mut digits, mut at) = (0u16, 0usize, 0usize);
    for &c in b {
        if c == b'.' {
            *out.get_mut(at)? = u8::try_from(n).ok().filter(|_| digits > 0)?;
            (n, digits, at) = (0, 0, at + 1);
        } else if c.is_ascii_digit() && digits < 3 && !(digits == 1 && n == 0) {
            n = n * 10 + u16::from(c - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if at != 3 || digits == 0 {
        return None;
    }
    *out.get_mut(3)? = u8::try_from(n).ok()?;
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Time

/// Days from 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 (`2023-08-21T12:12:18.510175415Z`, any offset, up to 9 fraction digits used) →
/// nanoseconds since the epoch; `None` for anything else or a time before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    rfc3339_after_minute(b, rfc3339_minute(b)?)
}

/// Digits `r` of `b` as a number; `None` for anything that is not a digit.
fn digits(b: &[u8], r: std::ops::Range<usize>) -> Option<i64> {
    let d = b.get(r)?;
    let mut n = 0i64;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

/// Seconds from the epoch to the minute an RFC 3339 time starts with (its first 17 bytes,
/// `2023-08-21T12:12:`), before its offset.
fn rfc3339_minute(b: &[u8]) -> Option<i64> {
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (y, mo, d) = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    let (h, mi) = (digits(b, 11..13)?, digits(b, 14..16)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60)
}

/// The time whose first 17 bytes gave `minute` ([`rfc3339_minute`]): its seconds, fraction
/// and offset read from the rest.
fn rfc3339_after_minute(b: &[u8], minute: i64) -> Option<u64> {
    let sec = digits(b, 17..19)?;
    if sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let o = digits(b, i + 1..i + 3)? * 3600 + digits(b, i + 4..i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = minute + sec - offset;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    u64::try_from(ns).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The names a record's input gave.
    fn names_of(r: &Record) -> Option<&Names> {
        r.meta.as_ref().and_then(|m| m.names.as_ref())
    }

    const PRINTER: &str = include_str!("../../../testdata/hubble/printer-jsonpb.jsonl");
    const EXPORT: &str = include_str!("../../../testdata/hubble/export-doc.jsonl");
    const MIXED: &str = include_str!("../../../testdata/hubble/mixed.jsonl");

    fn run(lines: &[&str]) -> (Vec<Item>, Skips) {
        let mut p = HubbleParser::default();
        let (mut out, mut skips) = (Vec::new(), Skips::default());
        for l in lines {
            p.line(&super::super::clean_line(l), &mut out, &mut skips);
        }
        p.finish(&mut out, &mut skips);
        (out, skips)
    }

    fn one(line: &str) -> Record {
        let (items, skips) = run(&[line]);
        assert_eq!(skips.total(), 0, "{skips:?}");
        match items.as_slice() {
            [Item::Record(r)] => r.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn ip4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }
    fn ip6(s: &str) -> Option<IpAddr> {
        Some(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()))
    }

    #[test]
    fn printer_vector() {
        let r = one(PRINTER.trim_end());
        assert_eq!(r.ts_ns, Some(1_234_567_800_000));
        assert_eq!(
            r.cause,
            Cause::Cilium(Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 133,
                src_label: 4,
                dst_label: 12345,
                ..Default::default()
            }))
        );
        assert_eq!(
            r.headers,
            Some(FlowHeaders {
                src: ip4(1, 1, 1, 1),
                dst: ip4(2, 2, 2, 2),
                proto: 6,
                sport: 31793,
                dport: 8080,
                icmp: None,
                tcp_flags: Some(0x02),
            })
        );
        assert_eq!(
            names_of(&r),
            Some(&Names {
                node: Some("k8s1".into()),
                ..Default::default()
            })
        );
        assert_eq!((r.packet, r.orig_len, r.cpu, r.ifindex), (None, 0, None, 0));
    }

    #[test]
    fn exporter_doc_vector() {
        let r = one(EXPORT.trim_end());
        assert_eq!(r.ts_ns, Some(1_692_619_938_510_175_415));
        assert_eq!(
            r.cause,
            Cause::Cilium(Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 133,
                ..Default::default()
            }))
        );
        assert_eq!(
            r.headers,
            Some(FlowHeaders {
                src: ip4(10, 244, 1, 60),
                dst: ip4(10, 244, 1, 5),
                proto: 6,
                sport: 44916,
                dport: 80,
                icmp: None,
                tcp_flags: Some(0x02),
            })
        );
        assert_eq!(
            names_of(&r),
            Some(&Names {
                src_pod: Some("xwing".into()),
                src_namespace: Some("default".into()),
                dst_pod: Some("deathstar-7848d6c4d5-th9v2".into()),
                dst_namespace: Some("default".into()),
                node: Some("kind-kind/kind-worker".into()),
                ..Default::default()
            })
        );
    }

    fn cilium(r: &Record) -> Notification {
        match r.cause {
            Cause::Cilium(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_mixed_line() {
        let lines: Vec<&str> = MIXED.lines().collect();
        let (items, skips) = run(&lines);
        assert_eq!(skips.0.get("unsupported_flow"), Some(&2));
        assert_eq!(skips.0.get("not_a_flow"), Some(&1));
        assert_eq!(skips.total(), 3);
        let recs: Vec<&Record> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record(r) => Some(r),
                _ => None,
            })
            .collect();
        let notices: Vec<&Notice> = items
            .iter()
            .filter_map(|i| match i {
                Item::Notice(n) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(recs.len(), 11);
        assert_eq!(
            notices,
            [
                &Notice::L7 { cpu: -1 },
                &Notice::Lost { cpu: 3, count: 42 },
                &Notice::Lost { cpu: -1, count: 7 },
                &Notice::Agent {
                    kind: 5,
                    text: r#"{"labels":["k8s:a=b"],"revision":"3","rule_count":1}"#.into()
                },
                &Notice::Unknown { typ: 2, cpu: 2 },
            ]
        );
        // 1: a drop with everything.
        let r = recs[0];
        assert_eq!(r.ts_ns, Some(1_714_557_600_000_000_001));
        assert_eq!(
            cilium(r),
            Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 181,
                src_label: 1001,
                dst_label: 1002,
                line: 1234,
                file: 2,
                ifindex: 7,
                ip_trace_id: 99,
                ..Default::default()
            })
        );
        assert_eq!(r.ifindex, 7);
        assert_eq!(r.headers.as_ref().unwrap().tcp_flags, Some(0x12));
        assert_eq!(
            names_of(r),
            Some(&Names {
                src_pod: Some("web-0".into()),
                src_namespace: Some("shop".into()),
                src_labels: Some(
                    vec![
                        "k8s:app=web".to_string(),
                        "k8s:io.kubernetes.pod.namespace=shop".to_string()
                    ]
                    .into()
                ),
                dst_pod: Some("pg-1".into()),
                dst_namespace: Some("db".into()),
                dst_labels: Some(vec!["k8s:app=pg".to_string()].into()),
                node: Some("node-a".into()),
            })
        );
        // 2: `-o json`, IPv6 UDP, a bare-number reason.
        let r = recs[1];
        assert_eq!(r.ts_ns, Some(1_714_557_601_000_000_000));
        assert_eq!(
            cilium(r),
            Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 159,
                src_label: 2,
                dst_label: 3,
                ..Default::default()
            })
        );
        assert_eq!(
            r.headers,
            Some(FlowHeaders {
                src: ip6("fd00::1"),
                dst: ip6("fd00::2"),
                proto: 17,
                sport: 5353,
                dport: 53,
                ..Default::default()
            })
        );
        assert_eq!(names_of(r).unwrap().node.as_deref(), Some("node-b"));
        // 3: forwarded ICMPv4, to-endpoint, established + encrypted.
        let r = recs[2];
        assert_eq!(r.ts_ns, Some(1_714_557_602_500_000_000));
        assert_eq!(
            cilium(r),
            Notification::Trace(TraceNotify {
                msg_type: 4,
                obs_point: 0,
                src_label: 1,
                dst_label: 7,
                reason: 0x81,
                ifindex: 3,
                ..Default::default()
            })
        );
        assert_eq!(r.headers.as_ref().unwrap().icmp, Some((8, 0)));
        assert_eq!(r.headers.as_ref().unwrap().proto, 1);
        // 4: traced ICMPv6 to the proxy.
        let r = recs[3];
        assert_eq!(
            cilium(r),
            Notification::Trace(TraceNotify {
                msg_type: 4,
                obs_point: 1,
                src_label: 8,
                dst_label: 9,
                dst_id: 15001,
                reason: 5,
                ..Default::default()
            })
        );
        assert_eq!(r.headers.as_ref().unwrap().icmp, Some((128, 0)));
        assert_eq!(r.headers.as_ref().unwrap().proto, 58);
        // 5: translated SCTP, no event type.
        let r = recs[4];
        assert_eq!(
            cilium(r),
            Notification::Trace(TraceNotify {
                msg_type: 4,
                obs_point: 10,
                reason: 0,
                ..Default::default()
            })
        );
        let h = r.headers.as_ref().unwrap();
        assert_eq!((h.proto, h.sport, h.dport), (132, 36412, 2905));
        assert_eq!(names_of(r).unwrap().src_pod, None);
        // 6: redirected policy verdict, egress.
        assert_eq!(
            cilium(recs[5]),
            Notification::PolicyVerdict(PolicyVerdictNotify {
                msg_type: 5,
                remote_label: 400,
                verdict: 15001,
                dst_port: 80,
                proto: 6,
                flags: 0x12,
                auth_type: 1,
                ..Default::default()
            })
        );
        // 7: audit, ingress, IPv6.
        assert_eq!(
            cilium(recs[6]),
            Notification::PolicyVerdict(PolicyVerdictNotify {
                msg_type: 5,
                remote_label: 500,
                verdict: 0,
                dst_port: 2000,
                proto: 17,
                flags: 0x45,
                ..Default::default()
            })
        );
        // 8: denied policy verdict.
        assert_eq!(
            cilium(recs[7]),
            Notification::PolicyVerdict(PolicyVerdictNotify {
                msg_type: 5,
                remote_label: 700,
                verdict: -133,
                dst_port: 22,
                proto: 6,
                flags: 0x09,
                ..Default::default()
            })
        );
        // 11: lowerCamel names; 136's proto name disagrees with its meaning, the code stands.
        let r = recs[8];
        assert_eq!(
            cilium(r),
            Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 136,
                src_label: 11,
                dst_label: 12,
                ..Default::default()
            })
        );
        let h = r.headers.as_ref().unwrap();
        assert_eq!((h.sport, h.dport, h.tcp_flags), (1, 2, Some(0x10)));
        let n = names_of(r).unwrap();
        assert_eq!(n.src_pod.as_deref(), Some("a"));
        assert_eq!(n.node.as_deref(), Some("node-c"));
        // 15: a debug event.
        let r = recs[9];
        assert_eq!(r.cpu, Some(1));
        assert_eq!(r.ts_ns, Some(1_714_557_614_000_000_000));
        assert_eq!(
            cilium(r),
            Notification::Debug(DebugMsg {
                msg_type: 2,
                subtype: 15,
                source: 1234,
                hash: 305_419_896,
                arg1: 1,
                arg2: 2,
                arg3: 3,
            })
        );
        assert_eq!(r.headers, None);
        // 19: `-o json` trace, from-endpoint, reply.
        let r = recs[10];
        assert_eq!(
            cilium(r),
            Notification::Trace(TraceNotify {
                msg_type: 4,
                obs_point: 5,
                src_label: 13,
                dst_label: 14,
                reason: 2,
                ..Default::default()
            })
        );
        assert_eq!(r.headers.as_ref().unwrap().tcp_flags, Some(0x11));
        assert_eq!(r.headers.as_ref().unwrap().src, ip6("fd00::7"));
    }

    /// The mixed file with 1,000 lines of rubbish between its lines: prompts, lines cut
    /// short, lines wrapped in two, bad JSON, blank lines and JSON of other shapes.
    #[test]
    fn garbage_is_counted_by_kind() {
        let real: Vec<&str> = MIXED.lines().collect();
        let mut garbage: Vec<String> = Vec::new();
        let mut seed = 0x2545_f491_u32;
        let mut rnd = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize % n
        };
        for i in 0..100 {
            // Wrapped: the head is cut JSON, the tail does not start with `{`.
            let l = real[i % real.len()];
            let mut k = 1 + rnd(l.len() - 2);
            while l.as_bytes()[k] == b'{' || l[k..].trim().is_empty() {
                k += 1;
            }
            garbage.push(l[..k].to_string());
            garbage.push(l[k..].to_string());
        }
        for i in 0..160 {
            garbage.push(format!(
                "root@node-{i}:~# hubble observe -o jsonpb --last {i}"
            ));
            let l = real[(i * 7) % real.len()];
            garbage.push(l[..1 + rnd(l.len() - 2)].to_string());
            garbage.push(format!("{{\"flow\": nope{i}}}"));
            garbage.push(" \t ".repeat(i % 3));
            garbage.push(format!("{{\"hello\":\"world\",\"n\":{i}}}"));
        }
        assert_eq!(garbage.len(), 1000);
        let mut all: Vec<&str> = Vec::new();
        let mut g = garbage.iter();
        for l in &real {
            for _ in 0..52 {
                if let Some(x) = g.next() {
                    all.push(x);
                }
            }
            all.push(l);
        }
        all.extend(g.map(String::as_str));
        assert_eq!(all.len(), 1000 + real.len());
        let (items, skips) = run(&all);
        let records = items
            .iter()
            .filter(|i| matches!(i, Item::Record(_)))
            .count();
        assert_eq!(records, 11);
        assert_eq!(items.len() - records, 5);
        let want: Vec<(&str, u64)> = vec![
            ("bad_json", 160),
            ("cut_record", 260),
            ("empty", 160),
            ("not_a_flow", 161),
            ("not_a_record", 260),
            ("unsupported_flow", 2),
        ];
        assert_eq!(skips.0.into_iter().collect::<Vec<_>>(), want);
        // Nothing lost: every line is a record, a notice or a skip.
    }

    #[test]
    fn reason_names_map_back() {
        assert_eq!(
            reason_of(sc(Some(&Value::from("POLICY_DENIED")))),
            Some(133)
        );
        assert_eq!(
            reason_of(sc(Some(&Value::from("DROP_EP_NOT_READY")))),
            Some(203)
        );
        assert_eq!(
            reason_of(sc(Some(&Value::from("FAILED_TO_INSERT_INTO_PROXYMAP")))),
            Some(161)
        );
        assert_eq!(
            reason_of(sc(Some(&Value::from("DROP_REASON_UNKNOWN")))),
            Some(0)
        );
        assert_eq!(reason_of(sc(Some(&Value::from("159")))), Some(159));
        assert_eq!(reason_of(sc(Some(&Value::from(205)))), Some(205));
        assert_eq!(reason_of(sc(Some(&Value::from("NO_SUCH_REASON")))), None);
        assert_eq!(reason_of(sc(Some(&Value::from(300)))), None);
        // Every proto name of the table maps to its own code.
        for c in 0..=255u8 {
            if let Some(n) = drop_reason_info(c).and_then(|i| i.hubble) {
                assert_eq!(reason_of(sc(Some(&Value::from(n)))), Some(c), "{n}");
            }
        }
        assert_eq!(obs_point_of(sc(Some(&Value::from("TO_CRYPTO")))), Some(13));
        assert_eq!(obs_point_of(sc(Some(&Value::from("TO_ENDPOINT")))), Some(0));
        assert_eq!(obs_point_of(sc(Some(&Value::from(101)))), Some(0));
        assert_eq!(obs_point_of(sc(Some(&Value::from("UNKNOWN_POINT")))), None);
        assert_eq!(
            agent_kind(sc(Some(&Value::from("ENDPOINT_REGENERATE_SUCCESS")))),
            3
        );
        assert_eq!(agent_kind(sc(Some(&Value::from("IPCACHE_DELETED")))), 10);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2023-08-21T12:12:18.510175415Z"),
            Some(1_692_619_938_510_175_415)
        );
        assert_eq!(
            parse_rfc3339("2023-08-21T14:12:18.5101754159+02:00"),
            Some(1_692_619_938_510_175_415)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00.1Z"),
            Some(1_709_164_800_100_000_000)
        );
        for bad in [
            "",
            "2023-08-21",
            "2023-08-21T12:12:18",
            "2023-13-21T12:12:18Z",
            "2023-08-21T12:12:18.Z",
            "1969-12-31T23:59:59Z",
            "2023-08-21T12:12:18Zjunk",
            "2023-08-21T12:1a:18Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Times read one after another by one parser (which remembers the last minute) read as
    /// each alone: the same minute with other seconds, fractions and offsets, other minutes,
    /// and bad times that start like a good one.
    #[test]
    fn times_in_a_row_read_as_alone() {
        let times = [
            "2023-08-21T12:12:18.510175415Z",
            "2023-08-21T12:12:19Z",
            "2023-08-21T12:12:19+02:00",
            "2023-08-21T12:12:61Z",
            "2023-08-21T12:12:1xZ",
            "2023-08-21T12:12:",
            "2023-08-21T12:12x19Z",
            "2023-08-21T12:12:59.999999999-01:30",
            "2023-08-21T12:13:00Z",
            "2023-08-21t12:13:00Z",
            "2023-13-21T12:13:00Z",
            "2023-13-21T12:13:01Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1969-12-31T23:59:59+01:00",
            "2023-08-21T12:13:00Z",
        ];
        let mut p = HubbleParser::default();
        let got: Vec<Option<u64>> = times.iter().map(|t| p.time_of(t)).collect();
        let alone: Vec<Option<u64>> = times.iter().map(|t| parse_rfc3339(t)).collect();
        assert_eq!(got, alone);
        assert_eq!(alone.iter().filter(|t| t.is_some()).count(), 8);
    }

    /// Names and reasons taken from what was remembered are the ones a fresh lookup gives.
    #[test]
    fn remembered_names_and_reasons_are_the_looked_up_ones() {
        let mut p = HubbleParser::default();
        for s in ["a", "a", "b", "a", "", ""] {
            assert_eq!(&*p.names.text_at(0, s), s);
            assert_eq!(&*p.names.text_at(4, s), s);
        }
        for d in [
            "POLICY_DENIED",
            "POLICY_DENIED",
            "CT_MAP_INSERTION_FAILED",
            "POLICY_DENIED",
            "181",
            "POLICY_DENIED",
            "NOT_A_REASON",
        ] {
            let v = Some(Sc::Str(d));
            assert_eq!(p.reason_of(v), reason_of(v), "{d}");
        }
        assert_eq!(p.reason_of(Some(Sc::Str("POLICY_DENIED"))), Some(133));
    }

    type Read = (Vec<Item>, Skips);

    /// A line through the scanner, when it reads it, and through the parsed value. The
    /// scanner reads the line twice with one memo (the second time with the member names
    /// the first remembered) and must read it the same both times.
    fn scanned_and_parsed(line: &str) -> (Option<Read>, Read) {
        let mut p = HubbleParser::default();
        let t = line.trim();
        let mut memo = super::scan::Memo::default();
        let mut f = Fields::default();
        let first = super::scan::line(t, &mut f, &mut memo)
            .ok()
            .map(|o| (o.node, o.time));
        let mut f = Fields::default();
        let fast = super::scan::line(t, &mut f, &mut memo).ok().map(|o| {
            assert_eq!(first, Some((o.node, o.time)), "{line}");
            let (mut out, mut skips) = (Vec::new(), Skips::default());
            match p.flow(&mut f, o.node, o.time) {
                Ok(item) => out.push(item),
                Err(kind) => skips.add(kind),
            }
            (out, skips)
        });
        let (mut out, mut skips) = (Vec::new(), Skips::default());
        p.line_parsed(line, &mut out, &mut skips);
        (fast, (out, skips))
    }

    /// The scanner reads Hubble's flow lines and reads them as the parsed value does; what
    /// it cannot be sure of it leaves to the parsed value.
    #[test]
    fn scanner_reads_as_the_parsed_value() {
        let flow = r#""time":"2024-05-01T10:00:00Z","verdict":"DROPPED","IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"TCP":{"source_port":1,"destination_port":2}}"#;
        let read = [
            format!(r#"{{"flow":{{{flow}}},"node_name":"n","time":"2024-05-01T10:00:00Z"}}"#),
            format!(r#"{{{flow},"node_name":"n"}}"#),
            format!(r#"{{"flow":{{{flow},"eventType":{{"type":4}},"event_type":{{"type":1,"subType":"133"}}}}}}"#),
            format!(r#"{{"flow":{{{flow},"event_type":{{"type":1,"sub_type":133}},"eventType":{{"type":4}}}}}}"#),
            format!(r#"{{"flow":{{{flow},"event_type":"x","eventType":{{"type":4}}}}}}"#),
            format!(r#"{{"flow":{{{flow},"dropReasonDesc":"AUTH_REQUIRED","drop_reason_desc":"POLICY_DENIED"}}}}"#),
            format!(r#"{{"flow":{{{flow},"x":[1.5,-2,"a\"b\u00e9",{{}},[],true,false,null]}}}}"#),
            format!(r#"{{"flow":{{{flow},"source":{{"identity":"7","labels":["a",1,"b"],"podName":"p","namespace":""}}}}}}"#),
            format!(r#"{{"flow":{{{flow},"source":{{"identity":7,"pod_name":"q","podName":"p","labels":"x"}}}}}}"#),
            r#"{"flow":{"verdict":2,"l4":{"X":{},"TCP":1,"UDP":{"sourcePort":5,"destination_port":6},"TCP":{}}}}"#.to_string(),
            r#"{"flow":{"verdict":"DROPPED","l4":{"TCP":{"flags":{"SYN":true,"ACK":false,"FOO":true,"RST":1}}},"Summary":"TCP Flags: FIN"}}"#.to_string(),
            r#"{"flow":{"verdict":"DROPPED","l4":{"TCP":{"flags":"x"}},"Summary":"TCP Flags: FIN"}}"#.to_string(),
            r#"{"flow":{"verdict":"AUDIT","trafficDirection":"EGRESS","policy_match_type":3,"auth_type":"SPIRE","IP":{"source":"fd00::1"}}}"#.to_string(),
            r#"{"flow":{"verdict":"REDIRECTED","event_type":{"type":5},"proxy_port":"8080","traffic_direction":1}}"#.to_string(),
            r#"{"flow":{"verdict":"TRACED","trace_observation_point":"TO_PROXY","proxyPort":15001,"trace_reason":"REPLY","IP":{"encrypted":true}}}"#.to_string(),
            r#"{"flow":{"verdict":"DROPPED","file":{"name":"bpf_lxc.c","line":1234},"interface":{"index":7},"ipTraceId":{"traceId":"99"}}}"#.to_string(),
            r#"{"flow":{"verdict":"ERROR"}}"#.to_string(),
            r#"{"flow":{"event_type":{"type":129}}}"#.to_string(),
            r#"{"Type":"L3_L4"}"#.to_string(),
            r#"{"nodeName":"a","flow":{"verdict":"DROPPED"},"node_name":"b"}"#.to_string(),
            r#"{"flow":{"verdict":"DROPPED","node_name":""},"nodeName":"c","extra":1}"#.to_string(),
            r#"{"time":"2024-05-01T10:00:00Z","verdict":"DROPPED","node_name":"d"}"#.to_string(),
            r#" { "flow" : { "verdict" : "DROPPED" } , "time" : "2024-05-01T10:00:00+02:00" } "#.to_string(),
        ];
        let left = [
            r#"{"flow":{"verdict":null,"event_type":{"type":1}}}"#,
            r#"{"flow":{"verdict":"DROPPED","verdict":"FORWARDED"}}"#,
            r#"{"flow":{"verdict":"DROP\u0050ED"}}"#,
            r#"{"flow":{"verdict":"DROPPED","x":"\ud800"}}"#,
            r#"{"flow":{"verdict":"DROPPED","drop_reason":1.0}}"#,
            r#"{"flow":{"verdict":"DROPPED","drop_reason":-1}}"#,
            r#"{"flow":{"verdict":"DROPPED","x":1e5}}"#,
            r#"{"flow":{"verdict":"DROPPED"}} x"#,
            r#"{"flow":{"verdict":"DROPPED"}"#,
            r#"{"flow":"x","verdict":"DROPPED"}"#,
            r#"{"verdict":"DROPPED","type":"drop"}"#,
            r#"{"verdict":"DROPPED","lost_events":{}}"#,
            r#"{"node_status":{}}"#,
            r#"{"flow":{"verdict":"DROPPED","x":01}}"#,
            r#"{"flow":{"verdict":"DROPPED","x":[1,]}}"#,
            r#"{"flow":{"verdict":"DROPPED","source":{"identity":1,"identity":2}}}"#,
        ];
        for l in read.iter().map(String::as_str).chain(
            MIXED
                .lines()
                .chain(PRINTER.lines())
                .chain(EXPORT.lines())
                .filter(|l| l.contains(r#""flow":"#)),
        ) {
            let (fast, parsed) = scanned_and_parsed(l);
            assert_eq!(fast.as_ref(), Some(&parsed), "{l}");
        }
        for l in left {
            let (fast, _) = scanned_and_parsed(l);
            assert_eq!(fast, None, "{l}");
        }
    }

    /// Every line alone, through a parser of its own (nothing remembered from another line).
    fn each_alone(lines: &[String]) -> Read {
        let (mut out, mut skips) = (Vec::new(), Skips::default());
        for l in lines {
            HubbleParser::default().line(l, &mut out, &mut skips);
        }
        (out, skips)
    }

    /// Every line through one parser, which remembers member names from line to line.
    fn one_parser(lines: &[String]) -> Read {
        let (mut out, mut skips) = (Vec::new(), Skips::default());
        let mut p = HubbleParser::default();
        for l in lines {
            p.line(l, &mut out, &mut skips);
        }
        (out, skips)
    }

    /// Lines whose member names change from one line to the next (in order, in spelling, in
    /// length, one name the prefix of another, a name of 31 and of 33 bytes) read through one
    /// parser as each reads alone: a remembered name is used only where the text has it.
    #[test]
    fn remembered_names_read_as_fresh_ones() {
        let ip = r#""IP":{"source":"10.0.0.1","destination":"10.0.0.2"}"#;
        let lines: Vec<String> = [
            format!(r#"{{"flow":{{"verdict":"DROPPED",{ip},"l4":{{"TCP":{{"source_port":1,"destination_port":2,"flags":{{"SYN":true}}}}}},"source":{{"identity":5,"pod_name":"a","namespace":"n"}}}},"node_name":"x","time":"2024-05-01T10:00:00Z"}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED",{ip},"l4":{{"UDP":{{"source_port":3,"destination_port":4}}}},"source":{{"identity":6,"podName":"b"}}}},"node_name":"x","time":"2024-05-01T10:00:01Z"}}"#),
            format!(r#"{{"flow":{{"verdictX":"DROPPED",{ip},"l4":{{"TCP":{{"sourcePort":7,"destination_port":8,"flags":{{"ACK":true,"SYN":true}}}}}}}},"time":"2024-05-01T10:00:02Z"}}"#),
            r#"{"flow":{"verdict":"DROPPED","IP":{"destination":"10.0.0.3","source":"10.0.0.4"},"l4":{"TCP":{"source_port":9,"destination_port":10}}}}"#.to_string(),
            format!(r#"{{"flow":{{"verdict":"FORWARDED","drop_reason_desc":"POLICY_DENIED",{ip},"event_type":{{"type":1,"sub_type":133}}}}}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED","drop_reason_descX":"POLICY_DENIED",{ip},"event_type":{{"type":1,"subType":181}}}}}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED","aaaaaaaaaaaaaaaaaaaaaaaaaaaaa":1,{ip}}}}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED","aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":1,{ip}}}}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED","aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":1,{ip}}}}}"#),
            format!(r#"{{"time":"2024-05-01T10:00:03Z","verdict":"DROPPED",{ip}}}"#),
            format!(r#"{{"time":"2024-05-01T10:00:03Z","verdict":"DROPPED",{ip},"type":"x"}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED",{ip}}},"node_name":"x","time":"2024-05-01T10:00:04Z"}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED",{ip}}},"nodeName":"y","time":"2024-05-01T10:00:05Z"}}"#),
            format!(r#"{{"flow":{{"verdict":"DROPPED",{ip}}},"node_name":"x","time":"2024-05-01T10:00:06Z"}}"#),
        ]
        .to_vec();
        let alone = each_alone(&lines);
        // The `verdictX` line has neither verdict nor event type; the `type` line is
        // another kind of line.
        assert_eq!(alone.0.len(), 12, "{:?}", alone.1);
        assert_eq!(
            alone.1 .0,
            [("not_a_flow", 1), ("unsupported_flow", 1)]
                .into_iter()
                .collect()
        );
        assert_eq!(one_parser(&lines), alone);
        // And in the other order, and each line twice.
        let back: Vec<String> = lines.iter().rev().cloned().collect();
        assert_eq!(one_parser(&back), each_alone(&back));
        let twice: Vec<String> = lines.iter().flat_map(|l| [l.clone(), l.clone()]).collect();
        assert_eq!(one_parser(&twice), each_alone(&twice));
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_hubble(&[PRINTER.trim_end()]));
        assert!(looks_like_hubble(&[
            "",
            "$ hubble observe",
            EXPORT.trim_end()
        ]));
        assert!(looks_like_hubble(&MIXED.lines().collect::<Vec<_>>()));
        // cilium monitor -j (docs/cilium-formats.md §12 keys) and our own lines are not Hubble's.
        let monitor = r#"{"cpu":"CPU 01","type":"drop","mark":"0x0","reason":"Policy denied","source":0,"bytes":54,"srcLabel":12345,"dstLabel":680,"dstID":0,"Line":0,"File":0,"ExtError":0,"Ifindex":9}"#;
        assert!(!looks_like_hubble(&[monitor, monitor]));
        let own =
            r#"{"origin":"kernel","reason":3,"time":"2023-11-14T22:13:20.000000000Z","ts_ns":1}"#;
        assert!(!looks_like_hubble(&[own]));
        assert!(!looks_like_hubble(&["", "hello", "{\"cut"]));
    }

    mod never_panics {
        use super::super::super::own_json::{looks_like_own_json, OwnJsonParser};
        use super::super::super::synth::synthesize;
        use super::*;
        use proptest::prelude::*;

        /// Real lines with bytes replaced, cut or doubled.
        fn garbled() -> impl Strategy<Value = String> {
            let real: Vec<&'static str> = MIXED
                .lines()
                .chain(PRINTER.lines())
                .chain(EXPORT.lines())
                .collect();
            (
                prop::sample::select(real),
                prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..6),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(l, edits, cut)| {
                    let mut c: Vec<char> = l.chars().collect();
                    for (i, ch) in edits {
                        let at = i.index(c.len());
                        c[at] = ch;
                    }
                    let n = cut.index(c.len() + 1);
                    c.truncate(n.max(c.len() / 2));
                    c.into_iter().collect()
                })
        }

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![garbled(), ".*", "\\{[\"a-z_:0-9,\\[\\]{}.-]{0,80}\\}",]
        }

        proptest! {
            /// The one-pass IPv4 reader agrees with the standard parser on every string it
            /// accepts, and accepts every plain dotted quad.
            #[test]
            fn dotted_quads_read_as_std_reads_them(
                s in prop_oneof![
                    "[0-9.]{0,17}",
                    "(0|[1-9][0-9]{0,3})\\.(0|[0-9]{1,3})\\.[0-9]{1,3}\\.[0-9]{1,3}x?",
                    any::<[u8; 4]>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string()),
                ]
            ) {
                let std = s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.octets());
                match dotted_quad(s.as_bytes()) {
                    Some(a) => prop_assert_eq!(Some(a), std, "{}", s),
                    None => prop_assert_eq!(std, None, "{}", s),
                }
                prop_assert_eq!(parse_ip(&s), s.parse::<IpAddr>().ok(), "{}", s);
            }

            /// Lines read one after another by one parser (which remembers member names)
            /// read as each line does through a parser of its own.
            #[test]
            fn lines_read_in_a_row_read_as_alone(lines in prop::collection::vec(garbled(), 1..16)) {
                prop_assert_eq!(one_parser(&lines), each_alone(&lines));
            }

            #[test]
            fn parsers_never_panic(lines in prop::collection::vec(line(), 1..12)) {
                let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                let _ = looks_like_hubble(&refs);
                let _ = looks_like_own_json(&refs);
                let (mut out, mut skips) = (Vec::new(), Skips::default());
                let mut h = HubbleParser::default();
                let mut o = OwnJsonParser::new();
                for l in &refs {
                    let l = crate::ingest::clean_line(l);
                    let before = out.len() as u64 + skips.total();
                    h.line(&l, &mut out, &mut skips);
                    prop_assert_eq!(out.len() as u64 + skips.total(), before + 1);
                    o.line(&l, &mut out, &mut skips);
                    prop_assert_eq!(out.len() as u64 + skips.total(), before + 2);
                }
                h.finish(&mut out, &mut skips);
                o.finish(&mut out, &mut skips);
                for item in &out {
                    if let Item::Record(Record { headers: Some(h), .. }) = item {
                        let _ = synthesize(h, 0);
                    }
                }
            }

            #[test]
            fn scanner_reads_garbled_lines_as_the_parsed_value(l in line()) {
                let (fast, parsed) = scanned_and_parsed(&l);
                if let Some(fast) = fast {
                    prop_assert_eq!(fast, parsed, "{}", l);
                }
            }

            #[test]
            fn synthesize_never_panics(
                a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), v4 in any::<bool>(),
                proto in any::<u8>(), sport in any::<u16>(), dport in any::<u16>(),
                icmp in any::<Option<(u8, u8)>>(), flags in any::<Option<u8>>(),
            ) {
                let ip = |x: [u8; 16]| if v4 {
                    IpAddr::from([x[0], x[1], x[2], x[3]])
                } else {
                    IpAddr::from(x)
                };
                let h = FlowHeaders { src: Some(ip(a)), dst: Some(ip(b)), proto, sport, dport, icmp, tcp_flags: flags };
                let (p, _) = synthesize(&h, 0).unwrap();
                let s = crate::packet::summarize(&p, LinkType::Ethernet, crate::packet::TunnelHint::None);
                if matches!(proto, 6 | 17) {
                    prop_assert_eq!((s.flow.sport, s.flow.dport), (sport, dport));
                }
            }
        }
    }
}
