//! Deterministic text inputs for the text-replay benchmarks (`gentext`,
//! scripts/bench-text-replay.sh, benches/text.rs): `cilium-dbg monitor -vv` output of drop
//! notifications, each with the hex dump of its packet (dropscope's own monitor formatter
//! writes it, as the agent's CLI would), and Hubble flow lines (`hubble observe -o jsonpb`
//! shape). Records `i` below 250,000 are distinct flows (source address and port).

use std::fmt::Write as _;

use engine::cilium::format::{Formatter, Verbosity};
use engine::cilium::notify::{DropNotify, Notification};
use engine::cilium::tables::CiliumRelease;

const REASONS: [u8; 6] = [133, 130, 181, 153, 132, 139];

/// Ethernet + IPv4 + TCP (even i) or UDP, 10.0.(i/250).(i%250) -> 10.1.0.2, 64 bytes.
pub fn packet(i: usize) -> Vec<u8> {
    let tcp = i.is_multiple_of(2);
    let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    let l4 = if tcp { 20 } else { 8 };
    let total = (20 + l4 + 10) as u16;
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, if tcp { 6 } else { 17 }, 0, 0]);
    p.extend_from_slice(&[10, 0, (i / 250 % 250) as u8, (i % 250) as u8, 10, 1, 0, 2]);
    p.extend_from_slice(&(32768 + (i % 20000) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 80]);
    if tcp {
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        p.extend_from_slice(&(8u16 + 10).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
    }
    p.extend_from_slice(&[0x5a; 10]);
    p
}

/// A monitor `-vv` text writer (one formatter for many records).
pub struct MonitorVv(Formatter);

impl Default for MonitorVv {
    fn default() -> Self {
        MonitorVv(Formatter::new(CiliumRelease::default(), Verbosity::Verbose))
    }
}

impl MonitorVv {
    /// Appends record `i`: the separator, the drop's header line and its hex dump.
    pub fn record(&self, out: &mut String, i: usize) {
        let p = packet(i);
        let d = DropNotify {
            msg_type: 1,
            subtype: REASONS[i % REASONS.len()],
            source: (i % 4000) as u16,
            hash: i as u32,
            orig_len: p.len() as u32,
            cap_len: p.len() as u16,
            version: 3,
            src_label: 10000 + (i % 50) as u32,
            dst_label: 2,
            dst_id: 0,
            line: 1234,
            file: 1,
            ifindex: 3 + (i % 4) as u32,
            header_len: 48,
            ..Default::default()
        };
        self.0
            .write_line(out, Some((i % 2) as u32), &Notification::Drop(d), &p);
    }
}

/// Appends Hubble flow line `i` (with its newline).
pub fn hubble_line(out: &mut String, i: usize) {
    let tcp = i.is_multiple_of(2);
    let l4 = if tcp {
        format!(
            r#"{{"TCP":{{"source_port":{},"destination_port":80,"flags":{{"SYN":true}}}}}}"#,
            32768 + i % 20000
        )
    } else {
        format!(
            r#"{{"UDP":{{"source_port":{},"destination_port":53}}}}"#,
            32768 + i % 20000
        )
    };
    let _ = writeln!(
        out,
        r#"{{"flow":{{"time":"2026-11-30T12:00:{:02}.{:09}Z","verdict":"DROPPED","IP":{{"source":"10.0.{}.{}","destination":"10.1.0.2","ipVersion":"IPv4"}},"l4":{l4},"source":{{"identity":{},"namespace":"default","pod_name":"client-{}"}},"destination":{{"identity":2}},"Type":"L3_L4","node_name":"kind-worker","event_type":{{"type":1,"sub_type":133}},"drop_reason_desc":"POLICY_DENIED","Summary":"TCP Flags: SYN"}},"node_name":"kind-worker","time":"2026-11-30T12:00:{:02}.{:09}Z"}}"#,
        i / 1_000_000 % 60,
        i % 1_000_000 * 1000,
        i / 250 % 250,
        i % 250,
        10000 + i % 50,
        i % 50,
        i / 1_000_000 % 60,
        i % 1_000_000 * 1000,
    );
}
