//! Bounded per-flow counts for a long-running agent: the heavy hitters of the kernel flow
//! table, and the per-label series of the metrics.
//!
//! [`HeavyHitters`] adds every drained generation of the kernel flow table. It keeps at most
//! `max` rows; when a new key finds it full, the lightest tenth of the rows (fewest packets)
//! is folded into per-reason totals (`folded`), so memory stays bounded however many flows
//! pass and nothing is lost: per reason, the rows plus the folded count are exactly what
//! the kernel counted. A row's counts are exact from its `first_ns` on (a key folded away
//! and met again starts a new row).
//!
//! [`Series`] is the same idea for metric label sets: the first `max` label sets get their
//! own series, the counts of any other go to one `other` series, exactly.
//!
//! Must never: grow past its bound, or drop a count (what does not fit is folded, counted).

use std::collections::BTreeMap;

use capture_common::KFlowKey;
use hashbrown::HashMap;

use crate::storm::{KRow, KernelFlows};

/// What was folded out of the table for one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Folded {
    /// Rows folded.
    pub rows: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct HeavyHitters {
    rows: HashMap<KFlowKey, KRow>,
    max: usize,
    folded: BTreeMap<u32, Folded>,
}

impl HeavyHitters {
    pub fn new(max: usize) -> Self {
        HeavyHitters {
            rows: HashMap::new(),
            max: max.max(1),
            folded: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn folded(&self) -> &BTreeMap<u32, Folded> {
        &self.folded
    }

    /// Adds one drained generation.
    pub fn add_generation(&mut self, gen: &KernelFlows) {
        for (k, r) in gen.iter() {
            self.add(k, r);
        }
    }

    /// Adds one row's counts.
    pub fn add(&mut self, k: &KFlowKey, r: &KRow) {
        if let Some(row) = self.rows.get_mut(k) {
            row.add(r);
            return;
        }
        if self.rows.len() >= self.max {
            self.fold_lightest();
        }
        self.rows.insert(*k, *r);
    }

    /// Folds the lightest tenth of the rows (at least one) into the per-reason totals.
    fn fold_lightest(&mut self) {
        let n = (self.rows.len() / 10).max(1);
        let mut v: Vec<(u64, KFlowKey)> = self.rows.iter().map(|(k, r)| (r.packets, *k)).collect();
        if n < v.len() {
            v.select_nth_unstable(n);
            v.truncate(n);
        }
        for (_, k) in v {
            if let Some(r) = self.rows.remove(&k) {
                let f = self.folded.entry(k.reason).or_default();
                f.rows += 1;
                f.packets = f.packets.saturating_add(r.packets);
                f.bytes = f.bytes.saturating_add(r.bytes);
            }
        }
    }

    /// The `n` rows with most packets (ties: most bytes, then key) that `keep` selects.
    pub fn top(&self, n: usize, keep: impl Fn(&KFlowKey) -> bool) -> Vec<(KFlowKey, KRow)> {
        let mut v: Vec<(KFlowKey, KRow)> = self
            .rows
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, r)| (*k, *r))
            .collect();
        let order = |a: &(KFlowKey, KRow)| {
            (
                std::cmp::Reverse(a.1.packets),
                std::cmp::Reverse(a.1.bytes),
                a.0,
            )
        };
        if n < v.len() {
            v.select_nth_unstable_by_key(n, order);
            v.truncate(n);
        }
        v.sort_unstable_by_key(order);
        v
    }

    /// Packets per reason over the rows kept.
    pub fn per_reason(&self) -> BTreeMap<u32, u64> {
        let mut m = BTreeMap::new();
        for (k, r) in &self.rows {
            *m.entry(k.reason).or_insert(0u64) += r.packets;
        }
        m
    }
}

/// The labels of one drops series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub origin: &'static str,
    pub reason: String,
    pub interface: String,
    pub pod: String,
}

/// Drops and bytes per label set, at most `max` label sets; the rest in `other`.
#[derive(Debug)]
pub struct Series {
    map: HashMap<SeriesKey, (u64, u64)>,
    max: usize,
    /// Drops and bytes of label sets that found no room.
    pub other: (u64, u64),
}

impl Series {
    pub fn new(max: usize) -> Self {
        Series {
            map: HashMap::new(),
            max,
            other: (0, 0),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn add(&mut self, k: SeriesKey, drops: u64, bytes: u64) {
        if drops == 0 && bytes == 0 {
            return;
        }
        let slot = if let Some(s) = self.map.get_mut(&k) {
            s
        } else if self.map.len() < self.max {
            self.map.entry(k).or_default()
        } else {
            &mut self.other
        };
        slot.0 = slot.0.saturating_add(drops);
        slot.1 = slot.1.saturating_add(bytes);
    }

    /// The series, sorted by labels.
    pub fn sorted(&self) -> Vec<(&SeriesKey, (u64, u64))> {
        let mut v: Vec<_> = self.map.iter().map(|(k, v)| (k, *v)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reason: u32, sport: u16) -> KFlowKey {
        KFlowKey {
            reason,
            sport,
            family: 4,
            ..Default::default()
        }
    }

    fn row(packets: u64) -> KRow {
        KRow {
            packets,
            bytes: packets * 10,
            first_ns: 1,
            last_ns: 2,
            copied: 0,
        }
    }

    #[test]
    fn heavy_hitters_stay_bounded_and_fold_exactly() {
        let mut h = HeavyHitters::new(20);
        let mut sent: BTreeMap<u32, u64> = BTreeMap::new();
        for round in 0..50u64 {
            for p in 0..40u16 {
                let r = u32::from(p % 3);
                // Ports below 5 are the heavy flows.
                let n = if p < 5 { 100 } else { 1 + round % 2 };
                h.add(&key(r, p), &row(n));
                *sent.entry(r).or_default() += n;
                assert!(h.len() <= 20);
            }
        }
        let kept = h.per_reason();
        for (r, n) in &sent {
            let f = h.folded().get(r).copied().unwrap_or_default();
            assert_eq!(
                kept.get(r).copied().unwrap_or(0) + f.packets,
                *n,
                "reason {r}"
            );
        }
        let top = h.top(5, |_| true);
        assert_eq!(top.len(), 5);
        assert!(top.iter().all(|(k, r)| k.sport < 5 && r.packets == 5000));
        let only = h.top(100, |k| k.reason == 1);
        assert!(only.iter().all(|(k, _)| k.reason == 1));
    }

    #[test]
    fn series_fold_into_other_exactly() {
        let mut s = Series::new(2);
        let k = |i: u32| SeriesKey {
            origin: "kernel",
            reason: "NO_SOCKET".into(),
            interface: format!("if{i}"),
            pod: String::new(),
        };
        for i in 0..5 {
            s.add(k(i), u64::from(i) + 1, 10);
        }
        s.add(k(0), 100, 0);
        s.add(k(4), 1000, 0);
        let v = s.sorted();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, (101, 10));
        assert_eq!(v[1].1, (2, 10));
        assert_eq!(s.other, (3 + 4 + 5 + 1000, 30));
    }
}
