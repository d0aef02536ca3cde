//! `dropscope datapath --watch`: snapshots taken one after another, and what changed between
//! two of them: a program attached to or detached from an interface's hook, an interface
//! or map appearing or going, a map's fill crossing a threshold (80, 90, 100% by default)
//! up or down. Each change carries the time it was seen, so it lines up with drops captured
//! at the same time.
//!
//! Must never: report a change that did not happen between two snapshots (equal snapshots
//! give no change), or miss a crossing because a map jumped over several thresholds at once
//! (each threshold crossed is one change).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Options, Snapshot};

/// Default fill thresholds.
pub const DEFAULT_THRESHOLDS: &[f64] = &[0.8, 0.9, 1.0];

/// What changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum ChangeKind {
    Attached {
        netns: u32,
        interface: String,
        ifindex: u32,
        hook: &'static str,
        prog_id: u32,
        prog_name: String,
    },
    Detached {
        netns: u32,
        interface: String,
        ifindex: u32,
        hook: &'static str,
        prog_id: u32,
        prog_name: String,
    },
    /// A map's fill went from below `threshold` to at or above it (`up`), or back.
    MapFill {
        map: String,
        threshold_pct: u32,
        up: bool,
        entries: u64,
        max_entries: u32,
        fill_pct: f64,
    },
    MapAppeared {
        map: String,
    },
    MapGone {
        map: String,
    },
}

/// One change and when it was seen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub at: String,
    /// The same moment, nanoseconds since the Unix epoch.
    #[serde(rename = "at_unix_ns")]
    pub at_ns: u64,
    #[serde(flatten)]
    pub kind: ChangeKind,
}

impl Change {
    /// One line for people.
    pub fn text(&self) -> String {
        let what = match &self.kind {
            ChangeKind::Attached {
                netns,
                interface,
                ifindex,
                hook,
                prog_id,
                prog_name,
            } => format!(
                "attached  {hook} {interface} (ifindex {ifindex}, netns {netns}): {prog_name} id {prog_id}"
            ),
            ChangeKind::Detached {
                netns,
                interface,
                ifindex,
                hook,
                prog_id,
                prog_name,
            } => format!(
                "detached  {hook} {interface} (ifindex {ifindex}, netns {netns}): {prog_name} id {prog_id}"
            ),
            ChangeKind::MapFill {
                map,
                threshold_pct,
                up,
                entries,
                max_entries,
                fill_pct,
            } => format!(
                "map       {map} {} {threshold_pct}%: {entries}/{max_entries} ({fill_pct:.1}%)",
                if *up { "crossed" } else { "fell below" }
            ),
            ChangeKind::MapAppeared { map } => format!("map       {map} appeared"),
            ChangeKind::MapGone { map } => format!("map       {map} is gone"),
        };
        format!("{} {what}", self.at)
    }
}

type AttachKey = (u32, u32, &'static str, u32);

fn attachments(s: &Snapshot) -> BTreeMap<AttachKey, (String, String)> {
    let mut m = BTreeMap::new();
    for i in s.interfaces() {
        for a in &i.attachments {
            m.insert(
                (i.netns, i.ifindex, a.hook.as_str(), a.prog.id),
                (i.name.clone(), a.prog.display_name().to_string()),
            );
        }
    }
    m
}

/// The changes from `old` to `new`, stamped with `new`'s time.
pub fn diff(old: &Snapshot, new: &Snapshot, thresholds: &[f64]) -> Vec<Change> {
    let mut out = Vec::new();
    let at = |kind| Change {
        at: new.taken_at.clone(),
        at_ns: new.taken_ns,
        kind,
    };
    let (a, b) = (attachments(old), attachments(new));
    for (k, (ifname, prog)) in &a {
        if !b.contains_key(k) {
            out.push(at(ChangeKind::Detached {
                netns: k.0,
                interface: ifname.clone(),
                ifindex: k.1,
                hook: k.2,
                prog_id: k.3,
                prog_name: prog.clone(),
            }));
        }
    }
    for (k, (ifname, prog)) in &b {
        if !a.contains_key(k) {
            out.push(at(ChangeKind::Attached {
                netns: k.0,
                interface: ifname.clone(),
                ifindex: k.1,
                hook: k.2,
                prog_id: k.3,
                prog_name: prog.clone(),
            }));
        }
    }
    let old_maps: BTreeMap<&str, &super::MapState> =
        old.maps.iter().map(|m| (m.name.as_str(), m)).collect();
    let new_names: BTreeSet<&str> = new.maps.iter().map(|m| m.name.as_str()).collect();
    for m in &new.maps {
        let before = match old_maps.get(m.name.as_str()) {
            Some(o) => o.fill,
            None => {
                out.push(at(ChangeKind::MapAppeared {
                    map: m.name.clone(),
                }));
                Some(0.0)
            }
        };
        let (Some(f0), Some(f1), Some(n)) = (before, m.fill, m.entries) else {
            continue;
        };
        for &t in thresholds {
            let up = f0 < t && f1 >= t;
            let down = f0 >= t && f1 < t;
            if up || down {
                out.push(at(ChangeKind::MapFill {
                    map: m.name.clone(),
                    threshold_pct: (t * 100.0).round() as u32,
                    up,
                    entries: n,
                    max_entries: m.max_entries,
                    fill_pct: f1 * 100.0,
                }));
            }
        }
    }
    for m in &old.maps {
        if !new_names.contains(m.name.as_str()) {
            out.push(at(ChangeKind::MapGone {
                map: m.name.clone(),
            }));
        }
    }
    out
}

/// Takes snapshots every `interval` until `stop`, calling `on_change` for each change (and
/// `on_start` with the first snapshot). Returns the number of changes seen.
pub fn run(
    o: &Options,
    interval: Duration,
    thresholds: &[f64],
    stop: &AtomicBool,
    on_start: &mut dyn FnMut(&Snapshot),
    on_change: &mut dyn FnMut(&Change) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut prev = super::snapshot(o);
    on_start(&prev);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let cur = super::snapshot(o);
        for c in diff(&prev, &cur, thresholds) {
            on_change(&c)?;
            n += 1;
        }
        prev = cur;
        // Sleep what is left of the interval, in short steps so a stop is prompt.
        while t0.elapsed() < interval && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(interval));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn snap(progs: &[(u32, HookKind)], maps: &[(&str, u64, u32)], ns: u64) -> Snapshot {
        Snapshot {
            taken_at: format!("t{ns}"),
            taken_ns: ns,
            own_netns: 1,
            endpoints_from: "name (lxc*)".into(),
            namespaces: vec![Netns {
                inode: 1,
                path: "self".into(),
                interfaces: vec![Interface {
                    netns: 1,
                    ifindex: 5,
                    name: "lxc1".into(),
                    endpoint: Some(EndpointSource::Name),
                    attachments: progs
                        .iter()
                        .map(|(id, hook)| Attachment {
                            hook: *hook,
                            mode: None,
                            prog: ProgRef {
                                id: *id,
                                name: "p".into(),
                                ..ProgRef::default()
                            },
                        })
                        .collect(),
                    missing_program: progs.is_empty(),
                }],
                errors: vec![],
            }],
            cgroup: vec![],
            maps_dir: "/x".into(),
            maps: maps
                .iter()
                .map(|(name, n, max)| MapState {
                    path: format!("/x/{name}"),
                    name: name.to_string(),
                    id: 1,
                    map_type: "hash".into(),
                    key_size: 4,
                    value_size: 4,
                    max_entries: *max,
                    entries: Some(*n),
                    fill: Some(*n as f64 / f64::from(*max)),
                    method: CountMethod::GetNextKey,
                    approximate: false,
                    count_ms: 0.0,
                    error: None,
                })
                .collect(),
            notes: vec![],
        }
    }

    #[test]
    fn attach_detach_and_every_threshold_crossed() {
        let a = snap(&[(7, HookKind::TcxIngress)], &[("ct", 10, 100)], 1);
        assert!(diff(&a, &a, DEFAULT_THRESHOLDS).is_empty());
        let b = snap(&[(8, HookKind::TcxIngress)], &[("ct", 100, 100)], 2);
        let d = diff(&a, &b, DEFAULT_THRESHOLDS);
        let kinds: Vec<String> = d.iter().map(|c| c.text()).collect();
        assert_eq!(
            kinds,
            [
                "t2 detached  tcx-ingress lxc1 (ifindex 5, netns 1): p id 7",
                "t2 attached  tcx-ingress lxc1 (ifindex 5, netns 1): p id 8",
                "t2 map       ct crossed 80%: 100/100 (100.0%)",
                "t2 map       ct crossed 90%: 100/100 (100.0%)",
                "t2 map       ct crossed 100%: 100/100 (100.0%)",
            ]
        );
        let c = snap(&[(8, HookKind::TcxIngress)], &[("ct", 85, 100)], 3);
        let d: Vec<String> = diff(&b, &c, DEFAULT_THRESHOLDS)
            .iter()
            .map(|c| c.text())
            .collect();
        assert_eq!(
            d,
            [
                "t3 map       ct fell below 90%: 85/100 (85.0%)",
                "t3 map       ct fell below 100%: 85/100 (85.0%)",
            ]
        );
        let e = snap(&[(8, HookKind::TcxIngress)], &[], 4);
        assert_eq!(
            diff(&c, &e, DEFAULT_THRESHOLDS)[0].text(),
            "t4 map       ct is gone"
        );
    }
}
