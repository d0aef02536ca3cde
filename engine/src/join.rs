//! Kernel ↔ Cilium join: a kernel drop made at tc (`TC_INGRESS`, `TC_EGRESS`) is the same
//! packet as the Cilium drop notification its datapath program sent just before returning
//! `TC_ACT_SHOT`. The kernel says only where; Cilium says why. Both are joined when they
//! have the same interface and the same network and transport headers (the first 40 bytes
//! from the network header on, which include the IP ID, checksums and ports) within a short
//! window of arrival: the kernel drop carries the Cilium reason and identities
//! ([`Joined::Cilium`]), and the notification is marked as joined into it
//! ([`Joined::IntoKernel`]) so that files and printed lines hold the packet once. Both are
//! still counted by their own reason (the flow table and the books are unchanged).
//!
//! Events wait at most the window for their twin, then go on alone. Must never: drop or
//! reorder an event that is not a candidate, or join packets whose headers differ.

use std::collections::VecDeque;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cilium::notify::{DropNotify, Notification};
use crate::event::{Cause, Event, EventMeta, LinkType};

pub use crate::event::Joined;

/// What the joiner saw: kernel drops at tc, Cilium drops, and the pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinStats {
    pub tc_drops: u64,
    pub cilium_drops: u64,
    pub joined: u64,
}

/// Bytes of network and transport header a match compares.
const FINGERPRINT_BYTES: usize = 40;

/// (interface, hash of the headers), or `None` when the packet has no network header.
fn key(e: &Event) -> Option<(u32, u64)> {
    let d = &e.data;
    let mut l3 = 0usize;
    if e.link == LinkType::Ethernet {
        l3 = 12;
        loop {
            let et = u16::from_be_bytes([*d.get(l3)?, *d.get(l3 + 1)?]);
            if et == 0x8100 || et == 0x88a8 {
                l3 += 4;
                continue;
            }
            l3 += 2;
            if et != 0x0800 && et != 0x86dd {
                return None;
            }
            break;
        }
    }
    let hdr = d.get(l3..)?;
    if hdr.len() < 20 {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hdr.get(..hdr.len().min(FINGERPRINT_BYTES))
        .unwrap_or(hdr)
        .hash(&mut h);
    Some((e.ifindex, h.finish()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Kernel,
    Cilium,
}

struct Held {
    at: Instant,
    side: Side,
    key: (u32, u64),
    event: Event,
}

/// The join of one run. `tc_reasons`: the kernel's values of `TC_INGRESS` and `TC_EGRESS`.
pub struct Joiner {
    window: Duration,
    tc_reasons: Vec<u32>,
    held: VecDeque<Held>,
    pub stats: JoinStats,
}

fn with_join(e: &mut Event, j: Joined) {
    let mut m = e.meta.as_deref().cloned().unwrap_or_default();
    m.joined = Some(j);
    e.meta = Some(Arc::new(m));
}

impl Joiner {
    pub fn new(window: Duration, tc_reasons: Vec<u32>) -> Joiner {
        Joiner {
            window,
            tc_reasons,
            held: VecDeque::new(),
            stats: JoinStats::default(),
        }
    }

    fn side(&self, e: &Event) -> Option<Side> {
        match &e.cause {
            Cause::Kernel { reason, .. } if self.tc_reasons.contains(reason) => Some(Side::Kernel),
            Cause::Cilium(Notification::Drop(_)) => Some(Side::Cilium),
            _ => None,
        }
    }

    /// Takes one event at `now`; pushes onto `out` what can go on.
    pub fn push(&mut self, mut e: Event, now: Instant, out: &mut Vec<Event>) {
        let Some(side) = self.side(&e) else {
            out.push(e);
            return;
        };
        match side {
            Side::Kernel => self.stats.tc_drops += 1,
            Side::Cilium => self.stats.cilium_drops += 1,
        }
        let Some(k) = key(&e) else {
            out.push(e);
            return;
        };
        let twin = self.held.iter().position(|h| h.side != side && h.key == k);
        match twin {
            Some(i) => {
                let Some(mut other) = self.held.remove(i).map(|h| h.event) else {
                    out.push(e);
                    return;
                };
                let (kernel, cilium) = match side {
                    Side::Kernel => (&mut e, &mut other),
                    Side::Cilium => (&mut other, &mut e),
                };
                if let Cause::Cilium(Notification::Drop(d)) = &cilium.cause {
                    with_join(kernel, Joined::Cilium(*d));
                }
                with_join(cilium, Joined::IntoKernel);
                self.stats.joined += 1;
                // The kernel's record first: it carries the packet from now on.
                match side {
                    Side::Kernel => {
                        out.push(e);
                        out.push(other);
                    }
                    Side::Cilium => {
                        out.push(other);
                        out.push(e);
                    }
                }
            }
            None => self.held.push_back(Held {
                at: now,
                side,
                key: k,
                event: e,
            }),
        }
    }

    /// Lets go of what waited longer than the window (all of it with `flush`).
    pub fn expire(&mut self, now: Instant, flush: bool, out: &mut Vec<Event>) {
        while let Some(h) = self.held.front() {
            if !flush && now.duration_since(h.at) < self.window {
                break;
            }
            if let Some(h) = self.held.pop_front() {
                out.push(h.event);
            }
        }
    }

    pub fn waiting(&self) -> usize {
        self.held.len()
    }

    /// The summary's line.
    pub fn note(&self) -> String {
        let s = self.stats;
        let share = if s.tc_drops > 0 {
            format!(" ({:.1}%)", 100.0 * s.joined as f64 / s.tc_drops as f64)
        } else {
            String::new()
        };
        format!(
            "kernel <-> Cilium join: {} of {} kernel drops at tc joined to a Cilium drop notification{share} ({} Cilium drops seen)",
            s.joined, s.tc_drops, s.cilium_drops
        )
    }
}

/// The metadata of a joined pair's kernel record says so in its comment.
pub fn meta_joined(m: &EventMeta) -> Option<&DropNotify> {
    match &m.joined {
        Some(Joined::Cilium(d)) => Some(d),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const TC_INGRESS: u32 = 73;

    fn packet(ip_id: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[12..14].copy_from_slice(&[0x08, 0x00]);
        p[14] = 0x45;
        p[18..20].copy_from_slice(&ip_id.to_be_bytes());
        p[23] = 17;
        p[36..38].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn kernel(ifindex: u32, p: Vec<u8>) -> Event {
        Event {
            ts_ns: 1,
            ifindex,
            netns: 5,
            cpu: 0,
            orig_len: p.len() as u32,
            link: LinkType::Ethernet,
            data: Bytes::from(p),
            cause: Cause::Kernel {
                reason: TC_INGRESS,
                location: 0,
                protocol: 0x0800,
            },
            meta: None,
        }
    }

    fn cilium(ifindex: u32, p: Vec<u8>) -> Event {
        let d = DropNotify {
            msg_type: 1,
            subtype: 133,
            src_label: 4242,
            dst_label: 12345,
            ifindex,
            ..Default::default()
        };
        Event {
            cause: Cause::Cilium(Notification::Drop(d)),
            ..kernel(ifindex, p)
        }
    }

    fn joined(e: &Event) -> Option<&Joined> {
        e.meta.as_ref().and_then(|m| m.joined.as_ref())
    }

    #[test]
    fn twins_join_in_either_order_and_others_pass() {
        let mut j = Joiner::new(Duration::from_millis(100), vec![TC_INGRESS]);
        let t = Instant::now();
        let mut out = Vec::new();
        // Cilium first (as the datapath sends it), then the kernel's drop.
        j.push(cilium(7, packet(1, 80)), t, &mut out);
        assert!(out.is_empty());
        j.push(kernel(7, packet(1, 80)), t, &mut out);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0].cause, Cause::Kernel { .. }));
        match joined(&out[0]) {
            Some(Joined::Cilium(d)) => {
                assert_eq!((d.subtype, d.src_label, d.dst_label), (133, 4242, 12345))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(joined(&out[1]), Some(&Joined::IntoKernel));
        // Kernel first.
        out.clear();
        j.push(kernel(7, packet(2, 80)), t, &mut out);
        j.push(cilium(7, packet(2, 80)), t, &mut out);
        assert_eq!(out.len(), 2);
        assert!(matches!(joined(&out[0]), Some(Joined::Cilium(_))));
        // Another IP ID, another interface, another port: no join.
        out.clear();
        j.push(kernel(7, packet(3, 80)), t, &mut out);
        j.push(cilium(7, packet(4, 80)), t, &mut out);
        j.push(cilium(8, packet(3, 80)), t, &mut out);
        j.push(cilium(7, packet(3, 81)), t, &mut out);
        assert!(out.is_empty());
        assert_eq!(j.waiting(), 4);
        // A kernel drop elsewhere than tc passes at once.
        let mut other = kernel(7, packet(3, 80));
        other.cause = Cause::Kernel {
            reason: 2,
            location: 0,
            protocol: 0,
        };
        j.push(other, t, &mut out);
        assert_eq!(out.len(), 1);
        assert!(joined(&out[0]).is_none());
        // After the window, the singles go on, unjoined and in arrival order.
        out.clear();
        j.expire(t + Duration::from_millis(50), false, &mut out);
        assert!(out.is_empty());
        j.expire(t + Duration::from_millis(150), false, &mut out);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|e| joined(e).is_none()));
        assert_eq!(
            j.stats,
            JoinStats {
                tc_drops: 3,
                cilium_drops: 5,
                joined: 2
            }
        );
        assert!(
            j.note().contains("2 of 3 kernel drops at tc joined"),
            "{}",
            j.note()
        );
    }

    #[test]
    fn packets_without_a_network_header_pass_unjoined() {
        let mut j = Joiner::new(Duration::from_millis(100), vec![TC_INGRESS]);
        let mut out = Vec::new();
        let mut arp = packet(1, 80);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        j.push(cilium(7, arp.clone()), Instant::now(), &mut out);
        j.push(kernel(7, arp), Instant::now(), &mut out);
        j.push(kernel(7, vec![0u8; 10]), Instant::now(), &mut out);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|e| joined(e).is_none()));
    }
}
