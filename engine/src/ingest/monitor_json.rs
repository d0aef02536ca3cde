//! `cilium monitor -j` lines, and the JSON lines of dropscope's own
//! [`crate::cilium::format::Formatter`] with [`crate::cilium::format::Verbosity::Json`].
//!
//! Two dialects, told apart per object:
//! * Cilium's (`pkg/monitor/datapath_*.go` `*Verbose` structs, docs/cilium-formats.md §12):
//!   `type` is `drop` / `trace` / `debug` / `capture` / `agent`, `cpu` is the `"CPU 01:"`
//!   prefix, `mark` is `%#x` of the hash; drops carry `reason` (the `DropReasonExt` text),
//!   `source`, `bytes` (orig length), `srcLabel`, `dstLabel`, `dstID`, `Line`, `File`,
//!   `ExtError`, `Ifindex`, `IPTraceID`; traces `state`, `observationPoint`, `ifindex` (a
//!   name or number), `dstID`, `IpTraceID`; `summary` is a `DissectSummary` object (gopacket
//!   layer strings and `l3`/`l4` flows) for drops and traces, the connection-summary string
//!   for captures. `bytes` of a capture is its captured length.
//! * dropscope's: `type` is `drop` / `trace` / `policy_verdict` / `debug` / `debug_capture` /
//!   `trace_sock` / `recorder_capture`, every struct field under its Rust name (`msg_type`
//!   marks the dialect), `cpu` a number or null, `summary` the connection-summary string.
//!
//! No packet bytes in either: `headers` come from the summary. Lines that are not JSON objects
//! (Cilium prints lost events, and policy verdicts and socket traces, as text even with `-j`)
//! go to a [`MonitorTextParser`]. Skip kinds: those of the text parser, plus `bad_json` (a
//! `{` line that does not parse, e.g. cut), `not_a_record` (an object of another shape or an
//! unknown type), `json_error` (Cilium's `*_error` objects).

use serde_json::{Map, Value};

use super::monitor_text::{
    parse_capture_message, parse_debug_message, parse_obs_point, parse_summary, parse_trace_reason,
    MonitorTextParser, Reverse,
};
use super::{FlowHeaders, Item, LineParser, Record, Skips};
use crate::cilium::notify::{DebugCapture, DebugMsg, DropNotify, Notification, TraceNotify};
use crate::cilium::tables::CiliumRelease;
use crate::event::{Cause, LinkType, Notice};

/// `cilium monitor -j` (and dropscope's JSON rendering of notifications) -> records.
pub struct MonitorJsonParser {
    rv: Reverse,
    text: MonitorTextParser,
}

impl MonitorJsonParser {
    pub fn new(release: CiliumRelease) -> Self {
        MonitorJsonParser {
            rv: Reverse::new(release),
            text: MonitorTextParser::new(release),
        }
    }
}

type Obj = Map<String, Value>;

/// A number (or numeric / `0x` string) as u64; negative numbers are refused.
fn u(m: &Obj, k: &str) -> Option<u64> {
    match m.get(k)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

fn i(m: &Obj, k: &str) -> Option<i64> {
    match m.get(k)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn s<'a>(m: &'a Obj, k: &str) -> Option<&'a str> {
    m.get(k)?.as_str()
}

macro_rules! num {
    ($m:expr, $k:expr, $t:ty) => {
        u($m, $k).and_then(|v| <$t>::try_from(v).ok()).unwrap_or(0)
    };
}

/// `cpu`: a number, or Cilium's `"CPU 01:"` prefix.
fn cpu(m: &Obj) -> Option<u32> {
    match m.get("cpu")? {
        Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        Value::String(s) => s.strip_prefix("CPU ")?.trim_end_matches(':').parse().ok(),
        _ => None,
    }
}

/// `summary`: a connection-summary string, or a `DissectSummary` object.
fn summary(m: &Obj) -> Option<FlowHeaders> {
    match m.get("summary")? {
        Value::String(t) => parse_summary(t).ok().flatten(),
        Value::Object(d) => {
            let mut h = FlowHeaders::default();
            for k in ["ipv4", "ipv6", "tcp", "udp", "icmpv4", "icmpv6"] {
                if let Some(l) = s(d, k) {
                    super::monitor_text::apply_layer_line(l, &mut h);
                }
            }
            let flow = |k: &str| -> Option<(String, String)> {
                let f = d.get(k)?.as_object()?;
                Some((s(f, "src")?.to_string(), s(f, "dst")?.to_string()))
            };
            if h.src.is_none() {
                if let Some((a, b)) = flow("l3") {
                    h.src = a.parse().ok();
                    h.dst = b.parse().ok();
                }
            }
            if h.sport == 0 && h.dport == 0 {
                if let Some((a, b)) = flow("l4") {
                    h.sport = a.parse().unwrap_or(0);
                    h.dport = b.parse().unwrap_or(0);
                }
            }
            (h.src.is_some() || h.proto != 0).then_some(h)
        }
        _ => None,
    }
}

fn record(n: Notification, cpu: Option<u32>, headers: Option<FlowHeaders>) -> Record {
    let (link, ifindex, orig_len) = match &n {
        Notification::Drop(d) => (d.is_l3_device(), d.ifindex, d.orig_len),
        Notification::Trace(t) => (t.is_l3_device(), t.ifindex, t.orig_len),
        Notification::PolicyVerdict(p) => (p.is_l3(), 0, p.orig_len),
        Notification::DebugCapture(c) => (false, 0, c.orig_len),
        Notification::RecorderCapture(r) => (false, 0, r.orig_len),
        Notification::Debug(_) | Notification::TraceSock(_) => (false, 0, 0),
    };
    Record {
        ts_ns: None,
        cpu,
        cause: Cause::Cilium(n),
        packet: None,
        link: if link {
            LinkType::RawIp
        } else {
            LinkType::Ethernet
        },
        orig_len,
        ifindex,
        netns: 0,
        headers,
        meta: None,
    }
}

/// Cilium's `-j` objects.
fn cilium(rv: &Reverse, m: &Obj) -> Option<Item> {
    let hash = s(m, "mark")
        .and_then(super::monitor_text::parse_hex_u32)
        .unwrap_or(0);
    let n = match s(m, "type")? {
        "drop" => {
            let (subtype, ext) = rv.reason(s(m, "reason")?)?;
            Notification::Drop(DropNotify {
                msg_type: 1,
                subtype,
                source: num!(m, "source", u16),
                hash,
                orig_len: num!(m, "bytes", u32),
                src_label: num!(m, "srcLabel", u32),
                dst_label: num!(m, "dstLabel", u32),
                dst_id: num!(m, "dstID", u32),
                line: num!(m, "Line", u16),
                file: num!(m, "File", u8),
                ext_error: i(m, "ExtError")
                    .and_then(|v| i8::try_from(v).ok())
                    .unwrap_or(ext),
                ifindex: num!(m, "Ifindex", u32),
                ip_trace_id: u(m, "IPTraceID").unwrap_or(0),
                ..DropNotify::default()
            })
        }
        "trace" => Notification::Trace(TraceNotify {
            msg_type: 4,
            obs_point: s(m, "observationPoint").and_then(parse_obs_point)?,
            source: num!(m, "source", u16),
            hash,
            orig_len: num!(m, "bytes", u32),
            src_label: num!(m, "srcLabel", u32),
            dst_label: num!(m, "dstLabel", u32),
            dst_id: num!(m, "dstID", u16),
            reason: s(m, "state").and_then(parse_trace_reason).unwrap_or(0),
            ifindex: num!(m, "ifindex", u32),
            ip_trace_id: u(m, "IpTraceID").unwrap_or(0),
            ..TraceNotify::default()
        }),
        "debug" => {
            let mut d = DebugMsg {
                msg_type: 2,
                ..DebugMsg::default()
            };
            parse_debug_message(s(m, "message").unwrap_or(""), &mut d);
            Notification::Debug(d)
        }
        "capture" => {
            let (subtype, arg1, _) =
                parse_capture_message(s(m, "message").unwrap_or("")).unwrap_or((0, 0, ""));
            Notification::DebugCapture(DebugCapture {
                msg_type: 3,
                subtype,
                source: num!(m, "source", u16),
                hash,
                cap_len: num!(m, "bytes", u16),
                arg1,
                ..DebugCapture::default()
            })
        }
        "agent" => {
            let kind = s(m, "subtype").and_then(super::monitor_text::parse_agent_kind)?;
            let text = match m.get("message") {
                Some(Value::String(t)) => t.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            return Some(Item::Notice(Notice::Agent { kind, text }));
        }
        _ => return None,
    };
    Some(Item::Record(record(n, cpu(m), summary(m))))
}

impl LineParser for MonitorJsonParser {
    fn line(&mut self, line: &str, out: &mut Vec<Item>, skips: &mut Skips) {
        let t = line.trim();
        if !t.starts_with('{') {
            self.text.line(line, out, skips);
            return;
        }
        // Items stay in input order: what the text parser holds completes first.
        self.text.finish(out, skips);
        let m = match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => m,
            _ => {
                skips.add("bad_json");
                return;
            }
        };
        if s(&m, "type").is_some_and(|x| x.ends_with("_error")) {
            skips.add("json_error");
            return;
        }
        if m.contains_key("origin") || m.contains_key("flow") {
            skips.add("not_a_record");
            return;
        }
        let item = if m.contains_key("msg_type") {
            Notification::from_json(&m).map(|n| Item::Record(record(n, cpu(&m), summary(&m))))
        } else {
            cilium(&self.rv, &m)
        };
        match item {
            Some(i) => out.push(i),
            None => skips.add("not_a_record"),
        }
    }

    fn finish(&mut self, out: &mut Vec<Item>, skips: &mut Skips) {
        self.text.finish(out, skips);
    }

    fn is_idle(&self) -> bool {
        self.text.is_idle()
    }
}

/// Content sniffing: do the first non-empty lines look like `cilium monitor -j` output?
pub fn looks_like_monitor_json(lines: &[&str]) -> bool {
    let mut seen = 0;
    let mut good = 0;
    for l in lines.iter().map(|l| super::clean_line(l)) {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        seen += 1;
        if seen > 20 {
            break;
        }
        if !l.starts_with('{') {
            if super::monitor_text::parse_lost(l).is_some() {
                good += 1;
            }
            continue;
        }
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if m.contains_key("origin") || m.contains_key("flow") || m.contains_key("time") {
            continue;
        }
        let hit = match s(&m, "type") {
            Some("drop" | "trace" | "debug" | "capture") => {
                m.contains_key("mark") || m.contains_key("msg_type") || m.contains_key("message")
            }
            Some("agent") => m.contains_key("subtype"),
            Some("policy_verdict" | "debug_capture" | "trace_sock" | "recorder_capture") => {
                m.contains_key("msg_type")
            }
            _ => false,
        };
        if hit {
            good += 1;
        }
    }
    good > 0 && good * 2 >= seen.min(20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::format::{Formatter, Verbosity};
    use crate::cilium::notify::{decode, DecodeOptions};
    use crate::ingest::monitor_text::tests::*;
    use crate::testutil::hex;

    fn parse_all(text: &str) -> (Vec<Item>, Skips) {
        crate::ingest::parse_all_with(&mut MonitorJsonParser::new(CiliumRelease::Main), text)
    }

    /// Every message type through our own JSON and back: the notification is recovered whole.
    #[test]
    fn own_json_round_trip_every_type() {
        let j = Formatter::new(CiliumRelease::Main, Verbosity::Json);
        let mut vectors = vec![
            drop_record(7, 77),
            hex(REC_6_1),
            hex(REC_6_2),
            hex(VXLAN_6_3),
            hex(PV_FWD),
            hex(PV_DROP),
            hex(CAP_DELIVERY),
            hex(CAP_PROXY),
            hex(SOCK),
        ];
        vectors.extend(DBG.iter().map(|h| hex(h)));
        // An L3-device drop (flags 2): link RawIp.
        let mut l3 = drop_record(0, 0);
        l3[36] = 2;
        vectors.push(l3);
        for (k, v) in vectors.iter().enumerate() {
            let d = decode(v, &DecodeOptions::default()).unwrap();
            let cpu = Some(u32::try_from(k).unwrap());
            let text = render(&j, cpu, v);
            let (items, skips) = parse_all(&text);
            assert_eq!(skips.total(), 0, "{text}");
            let [Item::Record(r)] = &items[..] else {
                panic!("{text} -> {items:?}")
            };
            assert_eq!(r.cause, Cause::Cilium(d.notification), "{text}");
            assert_eq!(r.cpu, cpu);
            assert_eq!(r.orig_len, d.notification.orig_len());
            assert_eq!(r.packet, None);
            let summ = serde_json::from_str::<Value>(&text).unwrap()["summary"]
                .as_str()
                .map(|s| parse_summary(s).unwrap());
            assert_eq!(r.headers, summ.flatten(), "{text}");
            let l3 = matches!(d.notification, Notification::Drop(x) if x.flags & 2 != 0);
            assert_eq!(r.link == LinkType::RawIp, l3);
        }
    }

    #[test]
    fn cilium_json_lines() {
        let text = r#"{"cpu":"CPU 01:","type":"drop","mark":"0x1234abcd","reason":"Policy denied","source":321,"bytes":60,"srcLabel":12345,"dstLabel":2,"dstID":77,"Line":1234,"File":2,"ExtError":-17,"Ifindex":5,"IPTraceID":9,"summary":{"ethernet":"Ethernet\t{Contents=[..14..] Payload=[..40..] SrcMAC=01:23:45:67:89:ab DstMAC=02:33:45:67:89:ab EthernetType=IPv4 Length=0}","ipv4":"IPv4\t{Contents=[..20..] Payload=[..20..] Version=4 IHL=5 TOS=0 Length=40 Id=1 Flags= FragOffset=0 TTL=64 Protocol=TCP Checksum=27324 SrcIP=1.2.3.4 DstIP=5.6.7.8 Options=[] Padding=[]}","tcp":"TCP\t{Contents=[..20..] Payload=[] SrcPort=80(http) DstPort=443(https) Seq=0 Ack=0 DataOffset=5 FIN=false SYN=true RST=false PSH=false ACK=false URG=false ECE=false CWR=false NS=false Window=8192 Checksum=32196 Urgent=0 Options=[] Padding=[]}","l2":{"src":"01:23:45:67:89:ab","dst":"02:33:45:67:89:ab"},"l3":{"src":"1.2.3.4","dst":"5.6.7.8"},"l4":{"src":"80","dst":"443"}}}
{"cpu":"CPU 00:","type":"trace","mark":"0x391a7c07","ifindex":"4","state":"established","observationPoint":"from-host","traceSummary":"<- host","source":0,"bytes":66,"srcLabel":1,"dstLabel":0,"dstID":0,"summary":{"l3":{"src":"192.168.60.11","dst":"10.16.236.178"},"l4":{"src":"6443","dst":"54222"}}}
{"cpu":"CPU 02:","type":"debug","message":"Successfully mapped addr=10.11.0.233 to identity=2"}
{"cpu":"CPU 02:","type":"capture","mark":"0x3","message":"Delivery to ifindex 1","prefix":"-> 1","source":0,"bytes":54,"summary":"1.2.3.4:80 -> 5.6.7.8:443 tcp SYN"}
{"type":"agent","subtype":"Cilium agent started","message":{"time":"2024-01-01T00:00:00Z"}}
{"type":"debug_capture_error","message":"bad"}
{"cpu":"CPU 01:","type":"drop","mark":"0x0","reas
CPU 03: Lost 7 events
Policy verdict log: flow 0x0 local EP ID 12, remote ID 5678, proto 0, egress, action allow, auth: disabled, match L3-L4, [unknown]
{"flow":{"verdict":"DROPPED"}}
"#;
        let (items, skips) = parse_all(text);
        assert_eq!(skips.0.get("bad_json"), Some(&1));
        assert_eq!(skips.0.get("json_error"), Some(&1));
        assert_eq!(skips.0.get("not_a_record"), Some(&1));
        assert_eq!(skips.total(), 3, "{skips:?}");
        assert_eq!(items.len(), 7, "{items:#?}");
        let Item::Record(r) = &items[0] else { panic!() };
        let want = DropNotify {
            msg_type: 1,
            subtype: 133,
            source: 321,
            hash: 0x1234_abcd,
            orig_len: 60,
            src_label: 12345,
            dst_label: 2,
            dst_id: 77,
            line: 1234,
            file: 2,
            ext_error: -17,
            ifindex: 5,
            ip_trace_id: 9,
            ..DropNotify::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::Drop(want)));
        assert_eq!((r.cpu, r.orig_len, r.ifindex), (Some(1), 60, 5));
        let h = r.headers.clone().unwrap();
        assert_eq!(
            (h.proto, h.sport, h.dport, h.tcp_flags),
            (6, 80, 443, Some(2))
        );
        assert_eq!(h.src, Some("1.2.3.4".parse().unwrap()));
        let Item::Record(r) = &items[1] else { panic!() };
        let want = TraceNotify {
            msg_type: 4,
            obs_point: 7,
            hash: 0x391a_7c07,
            orig_len: 66,
            src_label: 1,
            reason: 1,
            ifindex: 4,
            ..TraceNotify::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::Trace(want)));
        let h = r.headers.clone().unwrap();
        assert_eq!(
            (h.src, h.sport, h.dport, h.proto),
            (Some("192.168.60.11".parse().unwrap()), 6443, 54222, 0)
        );
        let Item::Record(r) = &items[2] else { panic!() };
        let Cause::Cilium(Notification::Debug(d)) = r.cause else {
            panic!()
        };
        assert_eq!((d.subtype, r.cpu), (58, Some(2)));
        let Item::Record(r) = &items[3] else { panic!() };
        let want = DebugCapture {
            msg_type: 3,
            subtype: 4,
            hash: 3,
            cap_len: 54,
            arg1: 1,
            ..DebugCapture::default()
        };
        assert_eq!(r.cause, Cause::Cilium(Notification::DebugCapture(want)));
        assert_eq!(r.headers.as_ref().map(|h| h.dport), Some(443));
        assert_eq!(
            items[4],
            Item::Notice(Notice::Agent {
                kind: 2,
                text: r#"{"time":"2024-01-01T00:00:00Z"}"#.into()
            })
        );
        assert_eq!(items[5], Item::Notice(Notice::Lost { cpu: 3, count: 7 }));
        assert!(
            matches!(&items[6], Item::Record(r) if matches!(r.cause, Cause::Cilium(Notification::PolicyVerdict(_))))
        );
    }

    #[test]
    fn sniffing() {
        let j = Formatter::new(CiliumRelease::Main, Verbosity::Json);
        let ours = render(&j, Some(1), &drop_record(0, 0));
        assert!(looks_like_monitor_json(&[ours.trim_end()]));
        assert!(looks_like_monitor_json(&[
            r#"{"cpu":"CPU 00:","type":"debug","message":"x"}"#,
            "CPU 01: Lost 3 events",
        ]));
        assert!(!looks_like_monitor_json(&[
            r#"{"flow":{"verdict":"DROPPED"},"node_name":"k8s1","time":"2023-08-21T12:12:18Z"}"#
        ]));
        assert!(!looks_like_monitor_json(&[
            r#"{"origin":"cilium","type":"lost","cpu":1,"lost":2}"#
        ]));
        assert!(!looks_like_monitor_json(&[
            "xx drop (Policy denied) flow 0x0"
        ]));
        assert!(!super::super::monitor_text::looks_like_monitor_text(&[
            ours.trim_end()
        ]));
    }

    proptest::proptest! {
        #[test]
        fn garbled_json_never_panics(lines in proptest::collection::vec(
            proptest::prop_oneof![
                "\\PC{0,80}",
                "\\{\"type\":\"(drop|trace|debug|capture|agent|policy_verdict|trace_sock)\",\"(mark|msg_type|cpu|summary|reason|message|subtype|orig_ip)\":(\"[^\"]{0,10}\"|-?[0-9]{1,25}|\\[[0-9,]{0,20}\\]|\\{\\}|null)\\}",
            ], 0..30))
        {
            let mut p = MonitorJsonParser::new(CiliumRelease::V1_17);
            let (mut out, mut skips) = (Vec::new(), Skips::default());
            for l in &lines {
                p.line(l, &mut out, &mut skips);
            }
            p.finish(&mut out, &mut skips);
            let _ = looks_like_monitor_json(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
