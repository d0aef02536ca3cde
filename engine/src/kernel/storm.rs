//! The storm profile: exact drop counts from the kernel flow table, whatever reached the ring.
//!
//! The kernel program counts every drop per [`KFlowKey`] (reason, drop location, namespace,
//! interface, addresses, ports) in a table user space drains about once a second
//! (`kernel::table`). [`KernelFlows`] adds the drained generations up (CPUs merged), and
//! [`StormProfile`] holds what the summary, `--stats-json` and the top lists are made of:
//! top flows x reason, top reason x drop location, top destinations and sources, top
//! namespaces/interfaces, a per-second series of drops per reason, drop-rate percentiles per
//! reason (HdrHistogram over the per-second rates), when each CPU switched to its exemplar
//! budget, and the runs the kernel skipped (`recursion_misses`).
//!
//! Must never: lose a count when the user-space table is full (new keys fold into one row per
//! reason, counted in `overflowed_*`), or sort a whole large table to print its top rows.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use capture_common::{KFlowKey, KFlowValue, KfreeSkbEvent, KEY_HDR_BYTES, KFAMILY_V4, KFAMILY_V6};
use hashbrown::HashMap;

use crate::packet::FlowKey;
use crate::timefmt::ClockOffset;

/// A destination: (family, address, port or 0, IP protocol).
pub type Endpoint = (u8, [u8; 16], u16, u8);

/// Counts of one kernel-table row (all CPUs, all generations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KRow {
    pub packets: u64,
    pub bytes: u64,
    /// Unix time.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Packets of this row copied into the ring (they reach the file unless `-c` ends the
    /// run first).
    pub copied: u64,
}

impl KRow {
    /// Adds another row's counts (times widened to cover both).
    pub fn add(&mut self, o: &KRow) {
        if o.packets == 0 && o.copied == 0 {
            return;
        }
        if self.packets == 0 {
            self.first_ns = o.first_ns;
            self.last_ns = o.last_ns;
        } else {
            self.first_ns = self.first_ns.min(o.first_ns);
            self.last_ns = self.last_ns.max(o.last_ns);
        }
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.copied = self.copied.saturating_add(o.copied);
    }
}

/// The kernel table's rows summed over CPUs and generations, in bounded memory.
#[derive(Clone, Debug)]
pub struct KernelFlows {
    rows: HashMap<KFlowKey, KRow>,
    max_rows: usize,
    overflowed_keys: u64,
    overflowed_packets: u64,
}

impl KernelFlows {
    /// At most `max_rows` rows; further keys are folded into one row per reason.
    pub fn new(max_rows: usize) -> Self {
        KernelFlows {
            rows: HashMap::new(),
            max_rows: max_rows.max(1),
            overflowed_keys: 0,
            overflowed_packets: 0,
        }
    }

    /// The row a key of a full table is folded into: its reason, everything else zero.
    pub fn overflow_key(reason: u32) -> KFlowKey {
        KFlowKey {
            reason,
            ..KFlowKey::default()
        }
    }

    /// Adds one drained kernel entry (of any CPU).
    pub fn add(&mut self, key: &KFlowKey, v: &KFlowValue, clock: ClockOffset) {
        let mut k = *key;
        k.cpu = 0;
        let row = KRow {
            packets: v.packets,
            bytes: v.bytes,
            first_ns: clock.to_unix_ns(v.first_ns),
            last_ns: clock.to_unix_ns(v.last_ns),
            copied: v.copied,
        };
        self.add_row(k, &row);
    }

    fn add_row(&mut self, k: KFlowKey, row: &KRow) {
        if let Some(r) = self.rows.get_mut(&k) {
            r.add(row);
            return;
        }
        if self.rows.len() >= self.max_rows {
            self.overflowed_keys += 1;
            self.overflowed_packets = self.overflowed_packets.saturating_add(row.packets);
            self.rows
                .entry(Self::overflow_key(k.reason))
                .or_default()
                .add(row);
            return;
        }
        self.rows.insert(k, *row);
    }

    /// Adds every row of `other` (rows that do not fit fold per reason as usual).
    pub fn merge(&mut self, other: KernelFlows) {
        self.overflowed_keys += other.overflowed_keys;
        self.overflowed_packets = self
            .overflowed_packets
            .saturating_add(other.overflowed_packets);
        for (k, r) in other.rows {
            self.add_row(k, &r);
        }
    }

    /// Counts one copied drop user space keyed from its record (see [`key_of_record`]).
    pub fn add_record(&mut self, key: KFlowKey, orig_len: u32, unix_ns: u64) {
        self.add_row(
            key,
            &KRow {
                packets: 1,
                bytes: u64::from(orig_len),
                first_ns: unix_ns,
                last_ns: unix_ns,
                copied: 1,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn overflowed_keys(&self) -> u64 {
        self.overflowed_keys
    }

    pub fn overflowed_packets(&self) -> u64 {
        self.overflowed_packets
    }

    pub fn iter(&self) -> impl Iterator<Item = (&KFlowKey, &KRow)> {
        self.rows.iter()
    }

    /// Packets per reason over all rows: what the table counted.
    pub fn per_reason(&self) -> BTreeMap<u32, u64> {
        let mut m = BTreeMap::new();
        for (k, r) in &self.rows {
            *m.entry(k.reason).or_insert(0u64) += r.packets;
        }
        m
    }

    /// Copies into the ring per reason.
    pub fn copied_per_reason(&self) -> BTreeMap<u32, u64> {
        let mut m = BTreeMap::new();
        for (k, r) in &self.rows {
            *m.entry(k.reason).or_insert(0u64) += r.copied;
        }
        m
    }

    /// The `n` rows with most packets (ties: most bytes, then key), most first; all rows
    /// when `n` is `None`. Selects before sorting, so a short top list of a big table costs
    /// one pass.
    pub fn top(&self, n: Option<usize>) -> Vec<(&KFlowKey, &KRow)> {
        let mut v: Vec<(&KFlowKey, &KRow)> = self.rows.iter().collect();
        top_by(&mut v, n, |(k, r)| {
            (Reverse(r.packets), Reverse(r.bytes), **k)
        });
        v
    }
}

/// Private Enterprise Number of the pcapng Custom Block that carries the kernel table in a
/// capture file. 32473 is IANA's number for examples and documentation (RFC 5612): dropscope
/// has none of its own yet; the data also starts with [`BLOCK_MAGIC`].
pub const BLOCK_PEN: u32 = 32473;
/// First bytes of the block's data (then one JSON document, [`TableDoc`]).
pub const BLOCK_MAGIC: &[u8] = b"dropscope.kernel-table/1\n";
/// Rows of the kernel table a capture file keeps (most drops first); the rest are counted
/// in the block as omitted.
pub const BLOCK_MAX_ROWS: usize = 50_000;

/// The kernel table as stored in a capture file: numbers only, addresses in hex.
#[derive(serde::Serialize, serde::Deserialize)]
#[allow(clippy::type_complexity)]
struct TableDoc {
    /// (exemplars, auto_storm, kernel_flows)
    policy: (Option<u32>, Option<u32>, u32),
    generations: u64,
    peak_entries: usize,
    rows_total: usize,
    overflowed_keys: u64,
    overflowed_packets: u64,
    /// reason, ifindex, netns, location, family, l4proto, protocol, saddr, daddr, sport,
    /// dport, packets, bytes, first_ns, last_ns, copied.
    rows: Vec<(
        u32,
        u32,
        u32,
        u64,
        u8,
        u8,
        u16,
        String,
        String,
        u16,
        u16,
        u64,
        u64,
        u64,
        u64,
        u64,
    )>,
    series: Vec<(u64, u64, Vec<(u32, u64)>)>,
    spans: Vec<(u32, u64, Option<u64>, u64)>,
    cpus: Vec<(u32, u64, u64)>,
    recursion_misses: Option<u64>,
}

fn hex16(a: &[u8; 16]) -> String {
    a.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex16(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl StormProfile {
    /// The profile as a capture file's Custom Block data: [`BLOCK_MAGIC`] and a JSON
    /// document with at most `max_rows` rows (most drops first).
    pub fn to_block(&self, max_rows: usize) -> Vec<u8> {
        let rows = self
            .flows
            .top(Some(max_rows))
            .into_iter()
            .map(|(k, r)| {
                (
                    k.reason,
                    k.ifindex,
                    k.netns_ino,
                    k.location,
                    k.family,
                    k.l4proto,
                    k.protocol,
                    hex16(&k.saddr),
                    hex16(&k.daddr),
                    k.sport,
                    k.dport,
                    r.packets,
                    r.bytes,
                    r.first_ns,
                    r.last_ns,
                    r.copied,
                )
            })
            .collect();
        let doc = TableDoc {
            policy: (
                self.policy.exemplars,
                self.policy.auto_storm,
                self.policy.kernel_flows,
            ),
            generations: self.generations,
            peak_entries: self.peak_entries,
            rows_total: self.flows.len(),
            overflowed_keys: self.flows.overflowed_keys(),
            overflowed_packets: self.flows.overflowed_packets(),
            rows,
            series: self
                .series
                .iter()
                .map(|p| (p.t_ns, p.dt_ns, p.drops.clone()))
                .collect(),
            spans: self
                .storm_spans
                .iter()
                .map(|s| (s.cpu, s.start_ns, s.end_ns, s.storms))
                .collect(),
            cpus: self
                .storm_cpus
                .iter()
                .map(|c| (c.cpu, c.storms, c.total_ns))
                .collect(),
            recursion_misses: self.recursion_misses,
        };
        let mut out = BLOCK_MAGIC.to_vec();
        // Serializing numbers and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &doc);
        out
    }

    /// A profile read back from a capture file's block data; `None` when the data is not
    /// ours or does not parse (untrusted: never panics). Rows past `max_rows` fold per
    /// reason. `rows_omitted`: rows the file did not keep.
    pub fn from_block(data: &[u8], max_rows: usize) -> Option<(StormProfile, usize)> {
        let json = data.strip_prefix(BLOCK_MAGIC)?;
        // The writer pads the block to 4 bytes with zeros.
        let end = json.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let doc: TableDoc = serde_json::from_slice(json.get(..end)?).ok()?;
        let mut p = StormProfile::new(
            CopyPolicy {
                exemplars: doc.policy.0,
                auto_storm: doc.policy.1,
                kernel_flows: doc.policy.2,
            },
            max_rows,
        );
        let kept = doc.rows.len();
        for r in doc.rows {
            let key = KFlowKey {
                reason: r.0,
                ifindex: r.1,
                netns_ino: r.2,
                cpu: 0,
                location: r.3,
                family: r.4,
                l4proto: r.5,
                protocol: r.6,
                saddr: unhex16(&r.7)?,
                daddr: unhex16(&r.8)?,
                sport: r.9,
                dport: r.10,
            };
            p.flows.add_row(
                key,
                &KRow {
                    packets: r.11,
                    bytes: r.12,
                    first_ns: r.13,
                    last_ns: r.14,
                    copied: r.15,
                },
            );
        }
        p.flows.overflowed_keys += doc.overflowed_keys;
        p.flows.overflowed_packets = p
            .flows
            .overflowed_packets
            .saturating_add(doc.overflowed_packets);
        p.generations = doc.generations;
        p.peak_entries = doc.peak_entries;
        p.series = doc
            .series
            .into_iter()
            .map(|(t_ns, dt_ns, drops)| SeriesPoint { t_ns, dt_ns, drops })
            .collect();
        p.storm_spans = doc
            .spans
            .into_iter()
            .map(|(cpu, start_ns, end_ns, storms)| StormSpan {
                cpu,
                start_ns,
                end_ns,
                storms,
            })
            .collect();
        p.storm_cpus = doc
            .cpus
            .into_iter()
            .map(|(cpu, storms, total_ns)| StormCpu {
                cpu,
                storms,
                total_ns,
            })
            .collect();
        p.recursion_misses = doc.recursion_misses;
        Some((p, doc.rows_total.saturating_sub(kept)))
    }
}

/// The kernel table key of a copied drop, from its record: the same key the kernel program
/// builds (`key_l3` in capture-ebpf) from the same bytes. The program leaves `FLAG_COUNTED`
/// off only when the copy holds, from `net_off`, every header byte its key would read
/// (`min(linear bytes from the network header, KEY_HDR_BYTES)`), so reading
/// `min(bytes from net_off, KEY_HDR_BYTES)` here gives the kernel's bytes exactly. `cpu` is
/// 0 (rows merge CPUs). Never panics on any bytes.
pub fn key_of_record(ev: &KfreeSkbEvent, data: &[u8]) -> KFlowKey {
    let mut key = KFlowKey {
        reason: ev.reason,
        ifindex: ev.ifindex,
        netns_ino: ev.netns_ino,
        cpu: 0,
        location: ev.location,
        protocol: ev.protocol,
        ..KFlowKey::default()
    };
    let Some(hdr) = data.get(usize::from(ev.net_off)..) else {
        return key;
    };
    let hdr = hdr
        .get(..hdr.len().min(KEY_HDR_BYTES as usize))
        .unwrap_or(hdr);
    let n = hdr.len();
    if n < 20 {
        return key;
    }
    let byte = |i: usize| hdr.get(i).copied().unwrap_or(0);
    let copy = |dst: &mut [u8; 16], from: usize, len: usize| {
        if let (Some(d), Some(s)) = (dst.get_mut(..len), hdr.get(from..from + len)) {
            d.copy_from_slice(s);
        }
    };
    let l4 = match byte(0) >> 4 {
        4 => {
            let ihl = usize::from(byte(0) & 0x0f) * 4;
            if ihl < 20 {
                return key;
            }
            key.family = KFAMILY_V4;
            key.l4proto = byte(9);
            copy(&mut key.saddr, 12, 4);
            copy(&mut key.daddr, 16, 4);
            if (u16::from(byte(6)) << 8 | u16::from(byte(7))) & 0x1fff != 0 {
                return key;
            }
            ihl
        }
        6 if n >= 40 => {
            key.family = KFAMILY_V6;
            key.l4proto = byte(6);
            copy(&mut key.saddr, 8, 16);
            copy(&mut key.daddr, 24, 16);
            40
        }
        _ => return key,
    };
    if l4 + 4 > n {
        return key;
    }
    match key.l4proto {
        6 | 17 | 33 | 132 | 136 => {
            key.sport = u16::from(byte(l4)) << 8 | u16::from(byte(l4 + 1));
            key.dport = u16::from(byte(l4 + 2)) << 8 | u16::from(byte(l4 + 3));
        }
        1 | 58 => {
            key.sport = u16::from(byte(l4));
            key.dport = u16::from(byte(l4 + 1));
        }
        _ => {}
    }
    key
}

/// Keeps the `n` smallest elements of `v` by `key`, sorted (all of them when `n` is `None`).
fn top_by<T, K: Ord>(v: &mut Vec<T>, n: Option<usize>, key: impl Fn(&T) -> K) {
    if let Some(n) = n {
        if n == 0 {
            v.clear();
            return;
        }
        if v.len() > n {
            v.select_nth_unstable_by(n - 1, |a, b| key(a).cmp(&key(b)));
            v.truncate(n);
        }
    }
    v.sort_unstable_by_key(|a| key(a));
}

/// Drops per reason in one interval of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Unix time of the interval's end.
    pub t_ns: u64,
    /// Length of the interval.
    pub dt_ns: u64,
    /// (raw kernel reason, drops in the interval), reasons with drops only.
    pub drops: Vec<(u32, u64)>,
}

/// A span of time one CPU spent in an automatic storm (its exemplar budget on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormSpan {
    pub cpu: u32,
    /// Unix time the first storm of the span began.
    pub start_ns: u64,
    /// Unix time the last storm of the span ended; `None` when it lasted to the end.
    pub end_ns: Option<u64>,
    /// Storms the kernel counted in the span (several when the ring drained and refilled
    /// between two looks).
    pub storms: u64,
}

/// One CPU's storm totals, exact from the kernel's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StormCpu {
    pub cpu: u32,
    pub storms: u64,
    pub total_ns: u64,
}

/// How the kernel program was told to copy packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyPolicy {
    /// `--exemplars N`; `None`: every drop.
    pub exemplars: Option<u32>,
    /// The automatic storm switch's budget; `None` when off.
    pub auto_storm: Option<u32>,
    /// Entries of each kernel table generation (`--kernel-flows`).
    pub kernel_flows: u32,
}

/// Everything the kernel table and its companions said about a run.
#[derive(Clone, Debug)]
pub struct StormProfile {
    pub policy: CopyPolicy,
    pub flows: KernelFlows,
    /// Generations drained (about one per second).
    pub generations: u64,
    /// Most entries one generation held.
    pub peak_entries: usize,
    pub series: Vec<SeriesPoint>,
    pub storm_spans: Vec<StormSpan>,
    pub storm_cpus: Vec<StormCpu>,
    /// Runs the kernel skipped (program already running on the CPU) during the capture;
    /// `None` when this kernel does not report them (before 5.12; raw tracepoint misses are
    /// counted from 6.7).
    pub recursion_misses: Option<u64>,
}

impl StormProfile {
    pub fn new(policy: CopyPolicy, max_rows: usize) -> Self {
        StormProfile {
            policy,
            flows: KernelFlows::new(max_rows),
            generations: 0,
            peak_entries: 0,
            series: Vec::new(),
            storm_spans: Vec::new(),
            storm_cpus: Vec::new(),
            recursion_misses: None,
        }
    }

    /// Per-second drop rate percentiles per reason: (reason, [p50, p90, p99, max], mean),
    /// from the series (intervals shorter than 0.2 s, the last partial one, are left out).
    pub fn rate_percentiles(&self) -> Vec<(u32, [u64; 4], f64)> {
        let mut reasons: BTreeMap<u32, hdrhistogram::Histogram<u64>> = BTreeMap::new();
        let full: Vec<&SeriesPoint> = self
            .series
            .iter()
            .filter(|p| p.dt_ns >= 200_000_000)
            .collect();
        for p in &full {
            for (r, _) in &p.drops {
                reasons.entry(*r).or_insert_with(|| {
                    hdrhistogram::Histogram::new(3).unwrap_or_else(|_| {
                        // 3 significant digits is always valid; keep a usable histogram.
                        hdrhistogram::Histogram::new(2).unwrap_or_else(|_| unreachable!())
                    })
                });
            }
        }
        for (r, h) in reasons.iter_mut() {
            for p in &full {
                let n = p
                    .drops
                    .iter()
                    .find(|(pr, _)| pr == r)
                    .map_or(0, |(_, n)| *n);
                let rate = (n as f64 * 1e9 / p.dt_ns as f64).round() as u64;
                let _ = h.record(rate);
            }
        }
        reasons
            .into_iter()
            .map(|(r, h)| {
                (
                    r,
                    [
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.9),
                        h.value_at_quantile(0.99),
                        h.max(),
                    ],
                    h.mean(),
                )
            })
            .collect()
    }

    /// Top lists by an aggregation of the rows: (label parts, packets) most first.
    fn group<K: Ord + Clone>(&self, f: impl Fn(&KFlowKey) -> K) -> Vec<(K, u64)> {
        let mut m: BTreeMap<K, u64> = BTreeMap::new();
        for (k, r) in self.flows.iter() {
            *m.entry(f(k)).or_insert(0) += r.packets;
        }
        let mut v: Vec<(K, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// (reason, location) -> packets, most first.
    pub fn top_locations(&self) -> Vec<((u32, u64), u64)> {
        self.group(|k| (k.reason, k.location))
    }

    /// (family, daddr, dport, l4proto) -> packets.
    pub fn top_destinations(&self) -> Vec<(Endpoint, u64)> {
        self.group(|k| (k.family, k.daddr, port_of(k, false), k.l4proto))
    }

    /// (family, saddr) -> packets.
    pub fn top_sources(&self) -> Vec<((u8, [u8; 16]), u64)> {
        self.group(|k| (k.family, k.saddr))
    }

    /// (netns, ifindex) -> packets.
    pub fn top_interfaces(&self) -> Vec<((u32, u32), u64)> {
        self.group(|k| (k.netns_ino, k.ifindex))
    }
}

/// The port of a kernel key as shown (0 for ICMP, whose type/code live there).
fn port_of(k: &KFlowKey, src: bool) -> u16 {
    if matches!(k.l4proto, 1 | 58) {
        0
    } else if src {
        k.sport
    } else {
        k.dport
    }
}

pub(crate) fn is_icmp(k: &KFlowKey) -> bool {
    matches!(k.l4proto, 1 | 58) && matches!(k.family, KFAMILY_V4 | KFAMILY_V6)
}

/// The kernel key as the flow key the rest of dropscope prints.
pub fn flow_key_of(k: &KFlowKey) -> FlowKey {
    FlowKey {
        family: k.family,
        proto: k.l4proto,
        vlan: 0,
        src: k.saddr,
        dst: k.daddr,
        sport: port_of(k, true),
        dport: port_of(k, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reason: u32, d: u8, dport: u16, cpu: u32) -> KFlowKey {
        KFlowKey {
            reason,
            ifindex: 2,
            netns_ino: 7,
            cpu,
            location: 0xffff_ffff_8100_0000,
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 4000,
            dport,
            protocol: 0x0008,
            l4proto: 17,
            family: KFAMILY_V4,
        }
    }

    fn val(packets: u64, first: u64, last: u64, copied: u64) -> KFlowValue {
        KFlowValue {
            packets,
            bytes: packets * 60,
            first_ns: first,
            last_ns: last,
            copied,
            budget_used: 0,
            epoch: 0,
        }
    }

    #[test]
    fn cpus_and_generations_merge_exactly() {
        let c = ClockOffset::from_offset(1000);
        let mut t = KernelFlows::new(10);
        t.add(&key(3, 2, 9, 0), &val(5, 100, 200, 2), c);
        t.add(&key(3, 2, 9, 1), &val(7, 50, 150, 1), c);
        t.add(&key(3, 2, 9, 0), &val(1, 300, 300, 0), c);
        t.add(&key(3, 3, 9, 1), &val(4, 10, 20, 4), c);
        assert_eq!(t.len(), 2);
        let top = t.top(None);
        assert_eq!(top[0].0, &key(3, 2, 9, 0));
        assert_eq!(
            *top[0].1,
            KRow {
                packets: 13,
                bytes: 780,
                first_ns: 1050,
                last_ns: 1300,
                copied: 3
            }
        );
        assert_eq!(top[1].1.packets, 4);
        assert_eq!(t.per_reason(), BTreeMap::from([(3, 17)]));
        assert_eq!(t.copied_per_reason(), BTreeMap::from([(3, 7)]));
        assert_eq!(t.top(Some(1)).len(), 1);
        assert_eq!(t.top(Some(0)).len(), 0);
    }

    #[test]
    fn full_table_folds_into_reason_rows_and_keeps_totals() {
        let c = ClockOffset::from_offset(0);
        let mut t = KernelFlows::new(3);
        for d in 0..10u8 {
            t.add(&key(3, d, 9, 0), &val(u64::from(d) + 1, 1, 2, 0), c);
        }
        t.add(&key(5, 1, 9, 0), &val(100, 1, 2, 0), c);
        // 3 rows, then one overflow row per reason.
        assert_eq!(t.len(), 5);
        assert_eq!(t.overflowed_keys(), 8);
        assert_eq!(t.overflowed_packets(), (4..=10).sum::<u64>() + 100);
        assert_eq!(t.per_reason(), BTreeMap::from([(3, 55), (5, 100)]));
        // The top row is the reason-5 overflow row.
        assert_eq!(t.top(Some(1))[0].0, &KernelFlows::overflow_key(5));
    }

    #[test]
    fn top_lists_group_and_rates_have_percentiles() {
        let c = ClockOffset::from_offset(0);
        let mut p = StormProfile::new(CopyPolicy::default(), 100);
        p.flows.add(&key(3, 2, 9, 0), &val(10, 1, 2, 0), c);
        p.flows.add(&key(3, 2, 53, 0), &val(30, 1, 2, 0), c);
        p.flows.add(&key(7, 2, 9, 0), &val(5, 1, 2, 0), c);
        assert_eq!(
            p.top_locations(),
            vec![
                ((3, 0xffff_ffff_8100_0000), 40),
                ((7, 0xffff_ffff_8100_0000), 5)
            ]
        );
        let d = p.top_destinations();
        assert_eq!(d[0].1, 30);
        assert_eq!(d[0].0 .2, 53);
        assert_eq!(d[1], ((KFAMILY_V4, key(3, 2, 9, 0).daddr, 9, 17), 15));
        assert_eq!(p.top_sources()[0].1, 45);
        assert_eq!(p.top_interfaces(), vec![((7, 2), 45)]);
        for (i, n) in [100u64, 200, 300, 400, 1000].iter().enumerate() {
            p.series.push(SeriesPoint {
                t_ns: i as u64,
                dt_ns: 1_000_000_000,
                drops: vec![(3, *n)],
            });
        }
        // A short last interval is left out of the rates.
        p.series.push(SeriesPoint {
            t_ns: 9,
            dt_ns: 1_000,
            drops: vec![(3, 1)],
        });
        let pct = p.rate_percentiles();
        assert_eq!(pct.len(), 1);
        let (r, [p50, _, _, max], mean) = pct[0];
        assert_eq!(r, 3);
        assert_eq!(p50, 300);
        assert_eq!(max, 1000);
        assert!((mean - 400.0).abs() < 1.0, "{mean}");
    }

    fn ev(net_off: u16) -> KfreeSkbEvent {
        KfreeSkbEvent {
            reason: 3,
            ifindex: 2,
            netns_ino: 7,
            location: 0xffff_ffff_8100_0000,
            protocol: 0x0008,
            net_off,
            ..KfreeSkbEvent::default()
        }
    }

    #[test]
    fn record_keys_mirror_the_kernel_parse() {
        // Ethernet + IPv4 (ihl 5) + UDP 4000 -> 9.
        let mut p = vec![0u8; 14];
        p.extend_from_slice(&[
            0x45, 0, 0, 44, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        p.extend_from_slice(&[0x0f, 0xa0, 0, 9, 0, 24, 0, 0]);
        let k = key_of_record(&ev(14), &p);
        assert_eq!(k, key(3, 2, 9, 0));
        // Cut before the ports: addresses only, as the kernel with that many bytes.
        let k = key_of_record(&ev(14), &p[..36]);
        assert_eq!(
            (k.family, k.sport, k.dport, k.l4proto),
            (KFAMILY_V4, 0, 0, 17)
        );
        // A later fragment: no ports.
        let mut frag = p.clone();
        frag[14 + 7] = 1;
        assert_eq!(key_of_record(&ev(14), &frag).sport, 0);
        // IPv4 options (ihl 6): ports after them.
        let mut opt = vec![0u8; 14];
        opt.extend_from_slice(&[
            0x46, 0, 0, 48, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1, 1,
        ]);
        opt.extend_from_slice(&[0, 80, 1, 187]);
        let k = key_of_record(&ev(14), &opt);
        assert_eq!((k.sport, k.dport, k.l4proto), (80, 443, 6));
        // IPv6 ICMPv6 echo at offset 0.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        v6.extend((1..=32).map(|i| i as u8));
        v6.extend_from_slice(&[128, 0, 0, 0]);
        let k = key_of_record(&ev(0), &v6);
        assert_eq!(
            (k.family, k.l4proto, k.sport, k.dport),
            (KFAMILY_V6, 58, 128, 0)
        );
        assert_eq!(k.saddr[0], 1);
        assert_eq!(k.daddr[15], 32);
        // Nonsense never panics and keys by what is known.
        for off in [0u16, 13, 200, u16::MAX] {
            let k = key_of_record(&ev(off), &p[..10]);
            assert_eq!((k.family, k.reason, k.ifindex), (0, 3, 2));
        }
    }

    #[test]
    fn the_file_block_round_trips_and_refuses_garbage() {
        let c = ClockOffset::from_offset(0);
        let mut p = StormProfile::new(
            CopyPolicy {
                exemplars: Some(2),
                auto_storm: None,
                kernel_flows: 64,
            },
            100,
        );
        for d in 1..=5u8 {
            p.flows
                .add(&key(3, d, 9, 0), &val(u64::from(d) * 10, 5, 9, 2), c);
        }
        p.generations = 7;
        p.series.push(SeriesPoint {
            t_ns: 1,
            dt_ns: 2,
            drops: vec![(3, 150)],
        });
        p.storm_cpus.push(StormCpu {
            cpu: 1,
            storms: 2,
            total_ns: 3,
        });
        p.recursion_misses = Some(4);
        let block = p.to_block(3);
        let (q, omitted) = StormProfile::from_block(&block, 100).unwrap();
        assert_eq!(omitted, 2);
        assert_eq!(q.flows.len(), 3);
        let top: Vec<_> = q
            .flows
            .top(None)
            .into_iter()
            .map(|(k, r)| (*k, *r))
            .collect();
        let want: Vec<_> = p
            .flows
            .top(Some(3))
            .into_iter()
            .map(|(k, r)| (*k, *r))
            .collect();
        assert_eq!(top, want);
        assert_eq!((q.generations, q.recursion_misses), (7, Some(4)));
        assert_eq!(q.series, p.series);
        assert_eq!(q.storm_cpus, p.storm_cpus);
        assert_eq!(q.policy, p.policy);
        // Padding zeros are ignored; anything else is not ours.
        let mut padded = block.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert!(StormProfile::from_block(&padded, 100).is_some());
        assert!(StormProfile::from_block(b"other data", 100).is_none());
        let mut bad = block.clone();
        bad.truncate(block.len() - 5);
        assert!(StormProfile::from_block(&bad, 100).is_none());
    }
}
