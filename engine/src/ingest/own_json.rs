//! dropscope's own `--json` lines read back (`render.rs` `json_line` for events, `sink.rs`
//! `write_notice` for notices): one object per line.
//!
//! * `"origin":"kernel"` → `Cause::Kernel` (`reason`, `location` and `skb_protocol` from
//!   their hex strings); `"origin":"capture"` → `Cause::Captured`;
//! * `"origin":"cilium"` with a `cilium` member → `Cause::Cilium`, rebuilt field by field from
//!   that member (our JSON serialises every field of the notification structs, tagged by
//!   `type`); `"type":"lost"|"agent"|"l7"|"unknown"` → the [`Notice`] it was written from;
//! * `ts_ns`, `cpu`, `len` (the wire length), `ifindex`, `netns`; the headers of the packet
//!   summary (`src`, `dst`, `proto`, `sport`, `dport`, `tcp_flags`, `icmp_type`/`icmp_code`)
//!   as [`FlowHeaders`]. Lines written since the `packet` member was added carry the
//!   captured bytes (hex) and `link`; older lines carry only `caplen`: `packet` is `None`
//!   then, and the headers key the flow (what [`super::synth::synthesize`] builds from).
//!
//! Skips, by kind: `empty`, `not_a_record`, `cut_record`, `bad_json`, `not_a_flow` (JSON
//! without our `origin`), `unsupported` (an origin or Cilium type this reader does not know).
//! Must never panic; a field the line lacks stays 0/None.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::hubble::json_object;
use super::{FlowHeaders, Item, LineParser, Record, Skips};
use crate::cilium::notify::Notification;
use crate::cilium::tables::AGENT_NOTIFICATIONS;
use crate::event::{Cause, LinkType, Notice};

/// Parser of dropscope `--json` lines.
#[derive(Clone, Debug, Default)]
pub struct OwnJsonParser;

impl OwnJsonParser {
    pub fn new() -> Self {
        OwnJsonParser
    }
}

impl LineParser for OwnJsonParser {
    fn line(&mut self, line: &str, out: &mut Vec<Item>, skips: &mut Skips) {
        let Some(o) = json_object(line, skips) else {
            return;
        };
        match parse(&o) {
            Ok(item) => out.push(item),
            Err(kind) => skips.add(kind),
        }
    }

    fn finish(&mut self, _out: &mut Vec<Item>, _skips: &mut Skips) {}

    fn is_idle(&self) -> bool {
        true
    }
}

/// True when the first few non-empty lines are ours: objects with an `origin` of ours and a
/// `ts_ns` (events) or a notice `type`. `cilium monitor -j` and Hubble lines have no `origin`.
pub fn looks_like_own_json(lines: &[&str]) -> bool {
    super::most_json_objects_are(lines, super::serde_object, |o| {
        let origin = o.get("origin").and_then(Value::as_str);
        let event =
            matches!(origin, Some("kernel" | "capture" | "cilium")) && o.contains_key("ts_ns");
        let notice = origin == Some("cilium")
            && matches!(
                o.get("type").and_then(Value::as_str),
                Some("lost" | "agent" | "l7" | "unknown")
            );
        event || notice
    })
}

fn parse(o: &Map<String, Value>) -> Result<Item, &'static str> {
    let origin = o
        .get("origin")
        .and_then(Value::as_str)
        .ok_or("not_a_flow")?;
    if origin == "cilium" && !o.contains_key("ts_ns") {
        return notice(o).map(Item::Notice);
    }
    let cause = match origin {
        "kernel" => Cause::Kernel {
            reason: num(o, "reason"),
            location: hex(o.get("location")).unwrap_or(0),
            protocol: hex(o.get("skb_protocol"))
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
        },
        "capture" => Cause::Captured,
        // `capture --packets`: an ordinary packet and its direction.
        "packet" => Cause::Packet {
            dir: match o.get("direction").and_then(Value::as_str) {
                Some("in") => crate::event::Direction::Inbound,
                Some("out") => crate::event::Direction::Outbound,
                _ => return Err("unsupported"),
            },
        },
        "cilium" => match o.get("cilium") {
            Some(Value::Object(c)) => {
                Cause::Cilium(Notification::from_json(c).ok_or("unsupported")?)
            }
            _ => return Err("unsupported"),
        },
        _ => return Err("unsupported"),
    };
    Ok(Item::Record(Record {
        ts_ns: o.get("ts_ns").and_then(Value::as_u64),
        cpu: o
            .get("cpu")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok()),
        cause,
        packet: o.get("packet").and_then(Value::as_str).and_then(unhex),
        link: match o.get("link").and_then(Value::as_str) {
            Some("raw_ip") => LinkType::RawIp,
            _ => LinkType::Ethernet,
        },
        orig_len: num(o, "len"),
        ifindex: num(o, "ifindex"),
        netns: num(o, "netns"),
        headers: headers(o),
        meta: None,
    }))
}

/// Lower- or upper-case hex, two digits a byte; `None` on anything else (or odd length).
fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| match *p {
            [hi, lo] => Some(nib(hi)? << 4 | nib(lo)?),
            _ => None,
        })
        .collect()
}

fn notice(o: &Map<String, Value>) -> Result<Notice, &'static str> {
    let cpu = o.get("cpu").and_then(Value::as_i64).unwrap_or(-1);
    Ok(match o.get("type").and_then(Value::as_str) {
        Some("lost") => Notice::Lost {
            cpu,
            count: o.get("lost").and_then(Value::as_u64).unwrap_or(0),
        },
        Some("agent") => {
            // `subtype` is the AgentNotification name, or its number when it has none.
            let sub = o.get("subtype").and_then(Value::as_str).unwrap_or("");
            let kind = AGENT_NOTIFICATIONS
                .iter()
                .position(|n| *n == sub)
                .and_then(|i| u32::try_from(i).ok())
                .or_else(|| sub.parse().ok())
                .unwrap_or(0);
            // The text was JSON (written as it was) or not (written as a string).
            let text = match o.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            Notice::Agent { kind, text }
        }
        Some("l7") => Notice::L7 { cpu },
        Some("unknown") => Notice::Unknown {
            typ: o.get("payload_type").and_then(Value::as_i64).unwrap_or(0),
            cpu,
        },
        _ => return Err("unsupported"),
    })
}

/// An unsigned member converted to `T`, 0 when absent or out of range.
fn num<T: TryFrom<u64> + Default>(o: &Map<String, Value>, k: &str) -> T {
    o.get(k)
        .and_then(Value::as_u64)
        .and_then(|n| T::try_from(n).ok())
        .unwrap_or_default()
}

/// `0x…` as written by `{:#x}`.
fn hex(v: Option<&Value>) -> Option<u64> {
    let s = v?.as_str()?;
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u64::from_str_radix(digits, 16).ok()
}

/// The summary's headers (`render.rs` `summary_json`); `None` without addresses and protocol.
fn headers(o: &Map<String, Value>) -> Option<FlowHeaders> {
    let ip = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IpAddr>().ok())
    };
    let h = FlowHeaders {
        src: ip("src"),
        dst: ip("dst"),
        proto: num(o, "proto"),
        sport: num(o, "sport"),
        dport: num(o, "dport"),
        icmp: match (o.get("icmp_type"), o.get("icmp_code")) {
            (Some(t), Some(c)) => t
                .as_u64()
                .and_then(|t| u8::try_from(t).ok())
                .zip(c.as_u64().and_then(|c| u8::try_from(c).ok())),
            _ => None,
        },
        tcp_flags: o.get("tcp_flags").and_then(Value::as_str).map(|s| {
            const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
            s.split(',')
                .filter_map(|n| NAMES.iter().position(|x| *x == n))
                .fold(0u8, |acc, i| acc | (1 << i))
        }),
    };
    (h.src.is_some() || h.dst.is_some() || h.proto != 0).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::notify::{
        DebugCapture, DebugMsg, DropNotify, PolicyVerdictNotify, RecorderCapture, TraceNotify,
        TraceSockNotify,
    };
    use crate::event::Event;
    use crate::ingest::synth::synthesize;
    use crate::lookup::Names;
    use crate::packet::{summarize, TunnelHint};
    use crate::render::Renderer;
    use crate::sink::{OutputSink, PrintMode};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn flows() -> Vec<FlowHeaders> {
        let p = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        vec![
            FlowHeaders {
                src: p("10.0.0.1"),
                dst: p("10.0.1.1"),
                proto: 17,
                sport: 4000,
                dport: 53,
                icmp: None,
                tcp_flags: None,
            },
            FlowHeaders {
                src: p("fd00::1"),
                dst: p("fd00::2"),
                proto: 6,
                sport: 443,
                dport: 50000,
                icmp: None,
                tcp_flags: Some(0x12),
            },
            FlowHeaders {
                src: p("10.0.0.3"),
                dst: p("10.0.0.4"),
                proto: 1,
                icmp: Some((3, 4)),
                ..Default::default()
            },
            FlowHeaders {
                src: p("fd00::3"),
                dst: p("fd00::4"),
                proto: 58,
                icmp: Some((135, 0)),
                ..Default::default()
            },
        ]
    }

    fn causes() -> Vec<Cause> {
        vec![
            Cause::Kernel {
                reason: 3,
                location: 0xffff_ffff_81b2_c3d4,
                protocol: 0x0800,
            },
            Cause::Kernel {
                reason: 0x0003_0002,
                location: 0,
                protocol: 0x86dd,
            },
            Cause::Captured,
            Cause::Packet {
                dir: crate::event::Direction::Inbound,
            },
            Cause::Packet {
                dir: crate::event::Direction::Outbound,
            },
            Cause::Cilium(Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 133,
                source: 77,
                hash: 0xdead_beef,
                orig_len: 1500,
                cap_len: 128,
                version: 3,
                ext_version: 0,
                src_label: 12345,
                dst_label: 680,
                dst_id: 9,
                line: 1234,
                file: 2,
                ext_error: -3,
                ifindex: 9,
                flags: 0x01,
                ip_trace_id: u64::MAX,
                header_len: 48,
            })),
            Cause::Cilium(Notification::Trace(TraceNotify {
                msg_type: 4,
                obs_point: 1,
                source: 3,
                hash: 7,
                orig_len: 90,
                cap_len: 90,
                version: 2,
                src_label: 1,
                dst_label: 2,
                dst_id: 15001,
                reason: 0x81,
                flags: 0x02,
                ifindex: 4,
                orig_ip: [10, 9, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ip_trace_id: 5,
                header_len: 56,
                ..Default::default()
            })),
            Cause::Cilium(Notification::PolicyVerdict(PolicyVerdictNotify {
                msg_type: 5,
                source: 8,
                orig_len: 60,
                cap_len: 60,
                version: 1,
                remote_label: 2,
                verdict: -181,
                dst_port: 80,
                proto: 6,
                flags: 0x4a,
                auth_type: 1,
                cookie: 42,
                header_len: 40,
                ..Default::default()
            })),
            Cause::Cilium(Notification::Debug(DebugMsg {
                msg_type: 2,
                subtype: 15,
                source: 1,
                hash: 2,
                arg1: 3,
                arg2: 4,
                arg3: 5,
            })),
            Cause::Cilium(Notification::DebugCapture(DebugCapture {
                msg_type: 3,
                subtype: 8,
                source: 1,
                hash: 2,
                orig_len: 70,
                cap_len: 70,
                version: 1,
                ext_version: 0,
                arg1: 3,
                arg2: 4,
            })),
            Cause::Cilium(Notification::TraceSock(TraceSockNotify {
                msg_type: 7,
                xlate_point: 2,
                l4_proto: 1,
                flags: 1,
                dst_port: 8080,
                sock_cookie: 1 << 60,
                cgroup_id: 99,
                dst_ip: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            })),
            Cause::Cilium(Notification::RecorderCapture(RecorderCapture {
                msg_type: 6,
                subtype: 1,
                rule_id: 3,
                hash: 0,
                tv_boot: 123_456_789,
                cap_len: 40,
                orig_len: 40,
            })),
        ]
    }

    #[test]
    fn round_trip_through_our_json_writer() {
        let names = Names::load(true);
        let mut r = Renderer::new(&names);
        let buf = Shared::default();
        let mut sink = OutputSink::new(None, PrintMode::Json, Box::new(buf.clone()));
        let mut want = Vec::new();
        let flows = flows();
        for (i, cause) in causes().into_iter().enumerate() {
            let h = &flows[i % flows.len()];
            let (bytes, link) = synthesize(h, 0).unwrap();
            let e = Event {
                meta: None,
                ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1_234_567_891,
                ifindex: 3 + i as u32,
                netns: 4_026_531_840 + i as u32,
                cpu: if i == 2 { u32::MAX } else { i as u32 },
                orig_len: 1000 + i as u32,
                link,
                data: bytes.into(),
                cause,
            };
            let s = summarize(&e.data, e.link, TunnelHint::None);
            sink.write(&e, &s, &mut r).unwrap();
            let mut hh = h.clone();
            if hh.proto == 6 {
                hh.tcp_flags = Some(hh.tcp_flags.unwrap_or(0));
            }
            want.push(Item::Record(Record {
                ts_ns: Some(e.ts_ns),
                cpu: (e.cpu != u32::MAX).then_some(e.cpu),
                cause,
                packet: Some(e.data.to_vec()),
                link: e.link,
                orig_len: e.orig_len,
                ifindex: e.ifindex,
                netns: e.netns,
                headers: Some(hh),
                meta: None,
            }));
        }
        let notices = [
            Notice::Lost { cpu: 3, count: 9 },
            Notice::Agent {
                kind: 5,
                text: r#"{"labels":["a"],"revision":3}"#.into(),
            },
            Notice::Agent {
                kind: 1,
                text: "hello, not JSON".into(),
            },
            Notice::Agent {
                kind: 77,
                text: "7".into(),
            },
            Notice::L7 { cpu: 2 },
            Notice::Unknown { typ: 200, cpu: 1 },
        ];
        for n in &notices {
            sink.write_notice(n, &mut r).unwrap();
            want.push(Item::Notice(n.clone()));
        }
        drop(sink);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), want.len());
        assert!(looks_like_own_json(&lines));
        assert!(!super::super::hubble::looks_like_hubble(&lines));
        let mut p = OwnJsonParser::new();
        let (mut out, mut skips) = (Vec::new(), Skips::default());
        for l in &lines {
            p.line(l, &mut out, &mut skips);
        }
        p.finish(&mut out, &mut skips);
        assert_eq!(skips.total(), 0, "{skips:?}");
        for (i, (got, want)) in out.iter().zip(&want).enumerate() {
            assert_eq!(got, want, "line {i}: {}", lines[i]);
        }
        assert_eq!(out.len(), want.len());
    }

    #[test]
    fn replay_output_and_rubbish() {
        // The first lines `dropscope replay testdata/pcap/ours.pcapng --json` prints.
        let lines = [
            r#"{"caplen":42,"dport":53,"dst":"10.0.1.1","family":"ipv4","ifindex":3,"len":42,"location":"0xffffffff81b2c3d4","netns":4026531840,"origin":"kernel","proto":17,"proto_name":"udp","reason":3,"reason_name":"NO_SOCKET","skb_protocol":"0x0000","sport":4000,"src":"10.0.0.0","time":"2023-11-14T22:13:20.000000000Z","ts_ns":1700000000000000000}"#,
            r#"{"caplen":54,"cilium":{"cap_len":0,"cpu":null,"dst_id":0,"dst_identity":"680","dst_label":680,"ext_error":0,"ext_version":0,"file":0,"file_name":"unknown(0)","flags":0,"hash":0,"header_len":0,"ifindex":9,"ip_trace_id":0,"line":0,"msg_type":1,"orig_len":54,"packet_len":54,"reason_desc":"Policy denied","reason_name":"DROP_POLICY","source":0,"src_identity":"12345","src_label":12345,"subtype":133,"summary":"10.0.0.2:4000 -> 10.0.1.1:53 udp","type":"drop","version":3},"dport":53,"dst":"10.0.1.1","dst_identity":680,"family":"ipv4","ifindex":9,"len":54,"netns":4026532281,"origin":"cilium","proto":17,"proto_name":"udp","reason":133,"reason_name":"Policy denied","sport":4000,"src":"10.0.0.2","src_identity":12345,"time":"2023-11-14T22:13:22.469135784Z","ts_ns":1700000002469135784}"#,
            r#"{"caplen":82,"decode_stop":"Truncated(Ipv6)","dport":0,"dst":"30:0:2021:2223:2425:2627:2829:2a2b","family":"ipv6","ifindex":7,"len":82,"location":"0xffffffff81b2c3d4","netns":4026532281,"origin":"kernel","proto":0,"proto_name":"ip","reason":3,"reason_name":"NO_SOCKET","skb_protocol":"0x0000","sport":0,"src":"4011:0:a00:4:a00:101:fa0:35","time":"2023-11-14T22:13:24.938271568Z","ts_ns":1700000004938271568}"#,
            "$ dropscope replay x --json",
            r#"{"caplen":42,"dport":53,"dst":"10.0"#,
            r#"{"type":"drop","srcLabel":1}"#,
            r#"{"origin":"martian","ts_ns":1}"#,
            r#"{"origin":"cilium","ts_ns":1,"cilium":{"type":"warp"}}"#,
            "",
            "{nope}",
        ];
        assert!(looks_like_own_json(&lines));
        let mut p = OwnJsonParser::new();
        let (mut out, mut skips) = (Vec::new(), Skips::default());
        for l in lines {
            p.line(l, &mut out, &mut skips);
        }
        assert_eq!(out.len(), 3);
        let Item::Record(r) = &out[1] else { panic!() };
        assert_eq!(
            r.cause,
            Cause::Cilium(Notification::Drop(DropNotify {
                msg_type: 1,
                subtype: 133,
                orig_len: 54,
                version: 3,
                src_label: 12345,
                dst_label: 680,
                ifindex: 9,
                ..Default::default()
            }))
        );
        assert_eq!((r.ifindex, r.netns, r.orig_len), (9, 4_026_532_281, 54));
        let Item::Record(r) = &out[0] else { panic!() };
        assert_eq!(
            r.cause,
            Cause::Kernel {
                reason: 3,
                location: 0xffff_ffff_81b2_c3d4,
                protocol: 0
            }
        );
        assert_eq!(r.ts_ns, Some(1_700_000_000_000_000_000));
        assert_eq!(r.cpu, None);
        let h = r.headers.as_ref().unwrap();
        assert_eq!(
            (h.proto, h.sport, h.dport, h.tcp_flags),
            (17, 4000, 53, None)
        );
        let Item::Record(r) = &out[2] else { panic!() };
        assert_eq!(r.headers.as_ref().unwrap().proto, 0);
        let want: Vec<(&str, u64)> = vec![
            ("bad_json", 1),
            ("cut_record", 1),
            ("empty", 1),
            ("not_a_flow", 1),
            ("not_a_record", 1),
            ("unsupported", 2),
        ];
        assert_eq!(skips.0.into_iter().collect::<Vec<_>>(), want);
        // Not ours: cilium monitor -j and Hubble.
        assert!(!looks_like_own_json(&[
            r#"{"cpu":"CPU 01","type":"drop","mark":"0x0","reason":"Policy denied","source":0,"bytes":54,"srcLabel":12345,"dstLabel":680}"#
        ]));
        assert!(!looks_like_own_json(&[include_str!(
            "../../../testdata/hubble/printer-jsonpb.jsonl"
        )
        .trim_end()]));
    }
}
