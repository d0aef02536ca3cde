//! Events per reason over time, exact, for every source: the `timeline` member of the stats
//! JSON (what `dropscope report` plots as drops/s per reason, and its rate percentiles).
//!
//! The decode stage adds each processed event (the ones in the flow table) by its
//! timestamp into a bucket of `bucket_ns` (one second to begin with). Memory is bounded: when
//! more than [`MAX_BUCKETS`] buckets hold events, the width doubles and neighbouring buckets
//! merge, so the counts stay exact whatever the timestamps are (a file spanning years, or
//! times out of order). The sum of a reason's points is the reason's `processed` count.
//!
//! Must never: lose or double-count an event when buckets merge.

use std::collections::BTreeMap;

use crate::aggregate::ReasonKey;

/// Most buckets kept before the width doubles.
pub const MAX_BUCKETS: usize = 4096;

/// Width the timeline starts with: one second.
pub const START_BUCKET_NS: u64 = 1_000_000_000;

/// Events per reason per bucket of time.
#[derive(Clone, Debug)]
pub struct Timeline {
    bucket_ns: u64,
    /// Bucket number (`ts / bucket_ns`) -> (reason, events) pairs, few per bucket.
    buckets: BTreeMap<u64, Vec<(ReasonKey, u64)>>,
    /// The bucket added to last, whose (reason, events) pairs in `open` are not yet in
    /// `buckets`: consecutive events mostly share a bucket, and a storm's few reasons
    /// interleave event by event (a single cached reason went into the map at each change).
    open_bucket: Option<u64>,
    /// At most [`OPEN_PAIRS`].
    open: Vec<(ReasonKey, u64)>,
}

/// Reasons the open bucket keeps before it goes into the map.
const OPEN_PAIRS: usize = 16;

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            bucket_ns: START_BUCKET_NS,
            buckets: BTreeMap::new(),
            open_bucket: None,
            open: Vec::new(),
        }
    }
}

impl Timeline {
    /// Counts one event of `reason` at Unix time `ts_ns`.
    #[inline]
    pub fn add(&mut self, reason: ReasonKey, ts_ns: u64) {
        let b = ts_ns / self.bucket_ns;
        if self.open_bucket == Some(b) && add_pair(&mut self.open, reason, 1, OPEN_PAIRS) {
            return;
        }
        self.flush();
        self.open_bucket = Some(b);
        self.open.push((reason, 1));
    }

    fn flush(&mut self) {
        let Some(b) = self.open_bucket.take() else {
            return;
        };
        for (r, n) in self.open.drain(..) {
            add_to(&mut self.buckets, b, r, n);
        }
        while self.buckets.len() > MAX_BUCKETS {
            self.coarsen();
        }
    }

    /// Doubles the width: buckets 2k and 2k+1 become bucket k.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        self.bucket_ns = self.bucket_ns.saturating_mul(2);
        for (b, pairs) in old {
            for (r, n) in pairs {
                add_to(&mut self.buckets, b / 2, r, n);
            }
        }
    }

    /// The buckets with the pending run added (a copy: at most [`MAX_BUCKETS`] + 1).
    fn settled(&self) -> Timeline {
        let mut t = self.clone();
        t.flush();
        t
    }

    /// Width of each bucket.
    pub fn bucket_ns(&self) -> u64 {
        self.settled().bucket_ns
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Timeline) {
        let other = other.settled();
        self.flush();
        while self.bucket_ns < other.bucket_ns {
            self.coarsen();
        }
        let factor = (self.bucket_ns / other.bucket_ns.max(1)).max(1);
        for (b, pairs) in other.buckets {
            for (r, n) in pairs {
                add_to(&mut self.buckets, b / factor, r, n);
            }
        }
        while self.buckets.len() > MAX_BUCKETS {
            self.coarsen();
        }
    }

    /// The points in time order: (bucket start in Unix ns, (reason, events) pairs sorted by
    /// reason).
    pub fn points(&self) -> Vec<(u64, Vec<(ReasonKey, u64)>)> {
        let t = self.settled();
        let w = t.bucket_ns;
        t.buckets
            .into_iter()
            .map(|(b, mut p)| {
                p.sort_unstable_by_key(|(r, _)| *r);
                (b.saturating_mul(w), p)
            })
            .collect()
    }

    /// Events per reason over the whole timeline.
    pub fn totals(&self) -> BTreeMap<ReasonKey, u64> {
        let mut t = BTreeMap::new();
        for (_, pairs) in self.points() {
            for (r, n) in pairs {
                *t.entry(r).or_insert(0) += n;
            }
        }
        t
    }

    /// Per reason, rates in events per second over every bucket from the first to the last
    /// (buckets without the reason count as 0/s): ([p50, p90, p99, max], mean), from an
    /// HDR histogram (3 significant digits).
    pub fn rate_percentiles(&self) -> Vec<(ReasonKey, [u64; 4], f64)> {
        let t = self.settled();
        let (Some(first), Some(last)) = (
            t.buckets.keys().next().copied(),
            t.buckets.keys().next_back().copied(),
        ) else {
            return Vec::new();
        };
        let span = last - first + 1;
        let secs = t.bucket_ns as f64 / 1e9;
        let mut per: BTreeMap<ReasonKey, Option<hdrhistogram::Histogram<u64>>> = BTreeMap::new();
        let mut seen: BTreeMap<ReasonKey, u64> = BTreeMap::new();
        for pairs in t.buckets.values() {
            for (r, n) in pairs {
                let h = per
                    .entry(*r)
                    .or_insert_with(|| hdrhistogram::Histogram::new(3).ok());
                if let Some(h) = h {
                    let _ = h.record((*n as f64 / secs).round() as u64);
                }
                *seen.entry(*r).or_insert(0) += 1;
            }
        }
        per.into_iter()
            .filter_map(|(r, h)| {
                let mut h = h?;
                let zeros = span.saturating_sub(seen.get(&r).copied().unwrap_or(0));
                if zeros > 0 {
                    let _ = h.record_n(0, zeros);
                }
                Some((
                    r,
                    [
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.9),
                        h.value_at_quantile(0.99),
                        h.max(),
                    ],
                    h.mean(),
                ))
            })
            .collect()
    }
}

fn add_to(buckets: &mut BTreeMap<u64, Vec<(ReasonKey, u64)>>, b: u64, r: ReasonKey, n: u64) {
    add_pair(buckets.entry(b).or_default(), r, n, usize::MAX);
}

/// Adds `n` to `r`'s pair in `pairs`, or a new pair while `pairs` holds fewer than `cap`;
/// false when it could not (full, `r` not among them).
fn add_pair(pairs: &mut Vec<(ReasonKey, u64)>, r: ReasonKey, n: u64, cap: usize) -> bool {
    if let Some((_, c)) = pairs.iter_mut().find(|(pr, _)| *pr == r) {
        *c += n;
        return true;
    }
    if pairs.len() >= cap {
        return false;
    }
    pairs.push((r, n));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_second_and_reason_exactly() {
        let mut t = Timeline::default();
        for i in 0..10u64 {
            t.add(ReasonKey::Kernel(3), 5_000_000_000 + i * 100_000_000);
        }
        t.add(ReasonKey::Kernel(2), 5_500_000_000);
        t.add(ReasonKey::Kernel(3), 7_100_000_000);
        let p = t.points();
        assert_eq!(
            p,
            vec![
                (
                    5_000_000_000,
                    vec![(ReasonKey::Kernel(2), 1), (ReasonKey::Kernel(3), 10)]
                ),
                (7_000_000_000, vec![(ReasonKey::Kernel(3), 1)]),
            ]
        );
        let pct = t.rate_percentiles();
        // Reason 2: 1/s in one second of three, 0 in the others.
        assert_eq!(pct[0].0, ReasonKey::Kernel(2));
        assert_eq!(pct[0].1, [0, 1, 1, 1]);
        assert_eq!(pct[1].1[3], 10);
    }

    /// More reasons than the open bucket keeps, interleaved event by event across bucket
    /// changes: every (second, reason) count equals a plain count of the same events.
    #[test]
    fn interleaved_reasons_past_the_open_list_count_exactly() {
        let mut t = Timeline::default();
        let mut want: BTreeMap<(u64, ReasonKey), u64> = BTreeMap::new();
        let reasons = OPEN_PAIRS as u32 + 5;
        for i in 0..50_000u64 {
            // Reasons cycle fastest; seconds 0..3 alternate every 1,000 events, back and forth.
            let r = ReasonKey::Kernel((i % u64::from(reasons)) as u32 + 1);
            let second = (i / 1_000) % 4;
            let ts = second * START_BUCKET_NS + i;
            t.add(r, ts);
            *want.entry((second * START_BUCKET_NS, r)).or_insert(0) += 1;
        }
        let got: BTreeMap<(u64, ReasonKey), u64> = t
            .points()
            .into_iter()
            .flat_map(|(at, pairs)| pairs.into_iter().map(move |(r, n)| ((at, r), n)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), 4 * reasons as usize);
    }

    #[test]
    fn bounded_and_exact_when_times_are_spread() {
        let mut t = Timeline::default();
        let mut n = 0u64;
        // Times all over the range, out of order, two reasons.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = if i % 3 == 0 {
                ReasonKey::Kernel(3)
            } else {
                ReasonKey::Captured
            };
            t.add(r, x);
            n += 1;
        }
        t.add(ReasonKey::Kernel(3), u64::MAX);
        t.add(ReasonKey::Kernel(3), 0);
        n += 2;
        let points = t.points();
        assert!(points.len() <= MAX_BUCKETS);
        let total: u64 = t.totals().values().sum();
        assert_eq!(total, n);
        assert_eq!(t.totals()[&ReasonKey::Kernel(3)], 33_334 + 2);
        let mut other = Timeline::default();
        other.add(ReasonKey::Kernel(3), 1_000_000_000);
        t.merge(&other);
        assert_eq!(t.totals()[&ReasonKey::Kernel(3)], 33_337);
    }
}
