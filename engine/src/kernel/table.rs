//! The user-space side of the kernel flow table: switching generations and draining them
//! without losing an increment, and reading the per-reason counters.
//!
//! The program counts into epoch `FLOW_GEN[0]`, generation `epoch & 1`: its per-CPU cache
//! `CACHE_<g>` (slots tagged with the epoch) backed by the hash `FLOWS_<g>`, with the budget
//! `BUDGET_<g>`. Once a second [`KernelTable::rotate`]: writes the next epoch into
//! `FLOW_GEN`, waits for an RCU grace period ([`RcuFence`]: every program run that could
//! have read the old value has finished), then reads the old epoch's cache slots and reads
//! and deletes every entry of its hash. No program writes either after the grace period, so
//! the drained counts are final and nothing is counted twice (slots of older epochs are
//! skipped) or lost; deleting only after the grace period also means no program ever holds a
//! pointer to a deleted (and reused) element. At the end, after the program is detached,
//! [`KernelTable::finish`] waits once more and drains the current epoch.
//!
//! Must never: delete from the generation programs count into, or read a drained value
//! before the grace period after the switch.

use std::{collections::BTreeMap, io, os::fd::AsFd};

use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap};
use capture_common::{CacheSlot, KFlowKey, KFlowValue, ReasonCounter};

use super::bpfsys::{self, RcuFence};
use super::source::ClockOffset;
use crate::kernel::storm::KernelFlows;

/// The maps of the kernel flow table and the per-reason counters, taken out of the loaded
/// object so a thread of their own can drain them.
pub struct KernelTable {
    pub(crate) flows: [MapData; 2],
    pub(crate) caches: [Map; 2],
    pub(crate) budget: [MapData; 2],
    pub(crate) gen_map: MapData,
    pub(crate) reason_array: Map,
    pub(crate) reason_counts: Map,
    pub(crate) fence: RcuFence,
    epoch: u32,
    scratch: Vec<(KFlowKey, KFlowValue)>,
    budget_scratch: Vec<(KFlowKey, u64)>,
    /// Generations drained.
    pub generations: u64,
    /// Most entries one generation held.
    pub peak_entries: usize,
}

impl KernelTable {
    pub(crate) fn new(
        flows: [MapData; 2],
        caches: [Map; 2],
        budget: [MapData; 2],
        gen_map: MapData,
        reason_array: Map,
        reason_counts: Map,
    ) -> io::Result<Self> {
        let fence = RcuFence::new()?;
        bpfsys::array_set_u32(gen_map.fd().as_fd(), 0, 0)?;
        Ok(KernelTable {
            flows,
            caches,
            budget,
            gen_map,
            reason_array,
            reason_counts,
            fence,
            epoch: 0,
            scratch: Vec::new(),
            budget_scratch: Vec::new(),
            generations: 0,
            peak_entries: 0,
        })
    }

    /// Switches programs to the other generation, waits until none can still write the old
    /// one, and adds the old one's entries into `into`; returns how many there were.
    pub fn rotate(&mut self, into: &mut KernelFlows, clock: ClockOffset) -> io::Result<usize> {
        let old = self.epoch;
        let new = old.wrapping_add(1);
        bpfsys::array_set_u32(self.gen_map.fd().as_fd(), 0, new)?;
        self.fence.wait()?;
        self.epoch = new;
        self.drain(old, into, clock)
    }

    /// After the program is detached: waits out runs still in flight, then drains the
    /// current epoch (it holds the last counts).
    pub fn finish(&mut self, into: &mut KernelFlows, clock: ClockOffset) -> io::Result<usize> {
        self.fence.wait()?;
        let cur = self.epoch;
        self.drain(cur, into, clock)
    }

    /// Adds epoch `epoch`'s cache slots and hash entries into `into` (emptying the hash);
    /// returns how many there were.
    fn drain(
        &mut self,
        epoch: u32,
        into: &mut KernelFlows,
        clock: ClockOffset,
    ) -> io::Result<usize> {
        let g = (epoch & 1) as usize;
        let [flows_0, flows_1] = &self.flows;
        let [caches_0, caches_1] = &self.caches;
        let [budget_0, budget_1] = &self.budget;
        let (flows, caches, budget) = if g == 0 {
            (flows_0, caches_0, budget_0)
        } else {
            (flows_1, caches_1, budget_1)
        };
        self.scratch.clear();
        let mut n = bpfsys::lookup_and_delete_all(flows.fd().as_fd(), &mut self.scratch)?;
        for (k, v) in &self.scratch {
            into.add(k, v, clock);
        }
        let cache: PerCpuArray<&MapData, CacheSlot> =
            PerCpuArray::try_from(caches).map_err(io::Error::other)?;
        for slots in cache.iter() {
            let slots = slots.map_err(io::Error::other)?;
            for s in slots.iter() {
                if s.val.epoch == epoch && s.val.packets != 0 {
                    into.add(&s.key, &s.val, clock);
                    n += 1;
                }
            }
        }
        self.budget_scratch.clear();
        bpfsys::lookup_and_delete_all(budget.fd().as_fd(), &mut self.budget_scratch)?;
        self.generations += 1;
        self.peak_entries = self.peak_entries.max(n);
        Ok(n)
    }

    /// The per-reason counters summed over CPUs (reasons with a count only).
    pub fn reason_counters(&self) -> io::Result<BTreeMap<u32, ReasonCounter>> {
        let mut out = BTreeMap::new();
        let array: PerCpuArray<&MapData, ReasonCounter> =
            PerCpuArray::try_from(&self.reason_array).map_err(io::Error::other)?;
        for (reason, values) in array.iter().enumerate() {
            let values = values.map_err(io::Error::other)?;
            add_reason(&mut out, reason as u32, values.iter());
        }
        let hash: PerCpuHashMap<&MapData, u32, ReasonCounter> =
            PerCpuHashMap::try_from(&self.reason_counts).map_err(io::Error::other)?;
        for item in hash.iter() {
            let (reason, values) = item.map_err(io::Error::other)?;
            add_reason(&mut out, reason, values.iter());
        }
        Ok(out)
    }
}

/// Adds one reason's per-CPU counters into `per_reason`; a reason never seen stays absent.
/// A reason is in the kernel's array or its hash, not both, but adding keeps either case exact.
pub(crate) fn add_reason<'a>(
    per_reason: &mut BTreeMap<u32, ReasonCounter>,
    reason: u32,
    per_cpu: impl Iterator<Item = &'a ReasonCounter>,
) {
    let mut sum = ReasonCounter::default();
    for v in per_cpu {
        sum.seen = sum.seen.saturating_add(v.seen);
        sum.ring_full = sum.ring_full.saturating_add(v.ring_full);
        sum.table_full = sum.table_full.saturating_add(v.table_full);
        sum.not_copied = sum.not_copied.saturating_add(v.not_copied);
        sum.filtered = sum.filtered.saturating_add(v.filtered);
    }
    if sum == ReasonCounter::default() {
        return;
    }
    let slot = per_reason.entry(reason).or_default();
    slot.seen = slot.seen.saturating_add(sum.seen);
    slot.ring_full = slot.ring_full.saturating_add(sum.ring_full);
    slot.table_full = slot.table_full.saturating_add(sum.table_full);
    slot.not_copied = slot.not_copied.saturating_add(sum.not_copied);
    slot.filtered = slot.filtered.saturating_add(sum.filtered);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_counts_sum_cpus_skip_zero_and_merge() {
        let rc = |seen, ring_full, table_full, not_copied| ReasonCounter {
            seen,
            ring_full,
            table_full,
            not_copied,
            filtered: not_copied * 2,
        };
        let mut per_reason = BTreeMap::new();
        // An array slot no CPU touched stays absent.
        add_reason(&mut per_reason, 0, [rc(0, 0, 0, 0), rc(0, 0, 0, 0)].iter());
        add_reason(&mut per_reason, 2, [rc(3, 1, 0, 1), rc(4, 0, 2, 0)].iter());
        add_reason(&mut per_reason, 0x0003_0001, [rc(1, 0, 0, 0)].iter());
        // The same reason from both maps adds up (not expected, but never lost).
        add_reason(&mut per_reason, 2, [rc(1, 1, 1, 1)].iter());
        add_reason(
            &mut per_reason,
            7,
            [rc(u64::MAX, 0, 0, 0), rc(5, 0, 0, 0)].iter(),
        );
        assert_eq!(
            per_reason,
            BTreeMap::from([
                (2, rc(8, 2, 3, 2)),
                (7, rc(u64::MAX, 0, 0, 0)),
                (0x0003_0001, rc(1, 0, 0, 0))
            ])
        );
    }
}
