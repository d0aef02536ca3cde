//! The live view of a run (`dropscope top`): what the capture side hands over while it runs
//! ([`LiveTap`]), the view's own books ([`View`]), and one refresh of it ([`Frame`]), which
//! the terminal view draws and the plain mode prints as text ([`Frame::text`]).
//!
//! Two feeds, never both for one drop:
//! - the kernel flow table's generations (every second, CPUs merged: every kernel drop
//!   counted exactly, whatever the ring and the exemplar budget let through), when the
//!   kernel program decided the whole selection;
//! - the decode stage's processed events, batched per thread and handed over every
//!   [`PUBLISH_EVERY`]: Cilium notifications, file events, `--packets` rows, and kernel
//!   drops when part of the selection runs in user space (the table then counts drops the
//!   selection turns away, so the copies are counted instead).
//!
//! Memory is bounded: the view keeps at most `max_rows` flow rows; when full, the lightest
//! tenth is folded into per-reason totals (counted in [`Frame::folded`]).
//!
//! Nothing lower in the engine imports this module except the pipeline's decode stage and
//! the kernel source's set-up in `sources`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture_common::ReasonCounter;

use crate::aggregate::AggKey;
use crate::event::{Cause, Event, Notice, ReasonKey};
use crate::kernel::source::{GenerationTick, LiveGauges};
use crate::lookup::Names;
use crate::packet::FlowKey;

/// How often the decode stage hands its counts over.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Ticks of history kept per reason (one a refresh).
pub const HISTORY: usize = 60;

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }
}

/// Counts gathered since the view last took them.
#[derive(Debug, Default)]
pub struct Delta {
    pub flows: HashMap<AggKey, Counts>,
    /// Kernel drops per (reason, drop site).
    pub locations: HashMap<(u32, u64), u64>,
    /// The kernel's per-reason counters as last read: totals since the program was loaded.
    pub kernel: Option<BTreeMap<u32, ReasonCounter>>,
    /// Records Cilium's perf ring lost (the agent's notices).
    pub cilium_lost: u64,
    /// Kernel flow table generations drained.
    pub generations: u64,
    /// Drop sites as a replayed file named them (its capture's kernel symbols).
    pub symbols: HashMap<u64, Arc<str>>,
}

impl Delta {
    fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.kernel.is_none() && self.cilium_lost == 0
    }

    fn merge(&mut self, o: Delta) {
        for (k, c) in o.flows {
            self.flows.entry(k).or_default().add(c.packets, c.bytes);
        }
        for (k, n) in o.locations {
            *self.locations.entry(k).or_default() += n;
        }
        if o.kernel.is_some() {
            self.kernel = o.kernel;
        }
        self.cilium_lost += o.cilium_lost;
        self.generations += o.generations;
        self.symbols.extend(o.symbols);
    }
}

/// What the capture side shares with the view.
#[derive(Debug, Default)]
pub struct LiveTap {
    /// Kernel drops are counted from the kernel flow table, not from their copies.
    kernel_from_table: AtomicBool,
    delta: Mutex<Delta>,
    gauges: Mutex<Option<Arc<LiveGauges>>>,
}

impl LiveTap {
    pub fn new() -> Arc<LiveTap> {
        Arc::new(LiveTap::default())
    }

    fn delta(&self) -> std::sync::MutexGuard<'_, Delta> {
        self.delta.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kernel source feeds the tap, with the ring reader's gauges; with `from_table`,
    /// kernel drops are counted from the kernel table ([`LiveTap::kernel_generation`]),
    /// not from their copies.
    pub fn kernel_source(&self, gauges: Arc<LiveGauges>, from_table: bool) {
        self.kernel_from_table.store(from_table, Ordering::Release);
        *self.gauges.lock().unwrap_or_else(|e| e.into_inner()) = Some(gauges);
    }

    /// Whether kernel drops are counted from the kernel table.
    pub fn kernel_from_table(&self) -> bool {
        self.kernel_from_table.load(Ordering::Acquire)
    }

    pub fn gauges(&self) -> Option<Arc<LiveGauges>> {
        self.gauges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The kernel table thread's hand-over of one drained generation.
    pub fn kernel_generation(&self, t: &GenerationTick<'_>) {
        let mut d = self.delta();
        for (k, r) in t.flows.iter() {
            if r.packets == 0 {
                continue;
            }
            d.flows
                .entry(kernel_row_key(k))
                .or_default()
                .add(r.packets, r.bytes);
            *d.locations.entry((k.reason, k.location)).or_default() += r.packets;
        }
        d.kernel = Some(t.reasons.clone());
        d.generations += 1;
    }

    /// The kernel's counters alone (a kernel source whose drops are counted from copies).
    pub fn kernel_counters(&self, reasons: &BTreeMap<u32, ReasonCounter>) {
        self.delta().kernel = Some(reasons.clone());
    }

    /// Takes what was gathered since the last call.
    pub fn take(&self) -> Delta {
        std::mem::take(&mut *self.delta())
    }
}

/// The row of a kernel table key: the flow table's key shape, no identities.
pub fn kernel_row_key(k: &capture_common::KFlowKey) -> AggKey {
    AggKey {
        flow: FlowKey {
            family: k.family,
            proto: k.l4proto,
            vlan: 0,
            src: k.saddr,
            dst: k.daddr,
            sport: k.sport,
            dport: k.dport,
        },
        ifindex: k.ifindex,
        netns: k.netns_ino,
        reason: ReasonKey::Kernel(k.reason),
        src_identity: 0,
        dst_identity: 0,
    }
}

/// The decode stage's side of the tap: counts gathered in the thread, handed over every
/// [`PUBLISH_EVERY`].
pub struct TapWriter<'a> {
    tap: &'a LiveTap,
    local: Delta,
    last: Instant,
    skip_kernel: bool,
}

impl<'a> TapWriter<'a> {
    pub fn new(tap: &'a LiveTap) -> Self {
        TapWriter {
            tap,
            local: Delta::default(),
            last: Instant::now(),
            skip_kernel: tap.kernel_from_table(),
        }
    }

    /// One processed event, under its flow table key.
    #[inline]
    pub fn add(&mut self, e: &Event, key: &AggKey) {
        if let Cause::Kernel {
            reason, location, ..
        } = e.cause
        {
            if self.skip_kernel {
                return;
            }
            *self.local.locations.entry((reason, location)).or_default() += 1;
            if let Some(sym) = e.meta.as_ref().and_then(|m| m.symbol.as_ref()) {
                self.local
                    .symbols
                    .entry(location)
                    .or_insert_with(|| sym.clone());
            }
        }
        self.local
            .flows
            .entry(*key)
            .or_default()
            .add(1, u64::from(e.orig_len));
    }

    /// A batch's notices (Cilium's lost records).
    pub fn notices(&mut self, notices: &[(usize, Notice)]) {
        for (_, n) in notices {
            if let Notice::Lost { count, .. } = n {
                self.local.cilium_lost += count;
            }
        }
    }

    /// Hands the counts over when [`PUBLISH_EVERY`] has passed (after each batch).
    pub fn maybe_publish(&mut self) {
        if self.last.elapsed() >= PUBLISH_EVERY {
            self.publish();
        }
    }

    /// Hands the counts over now.
    pub fn publish(&mut self) {
        self.last = Instant::now();
        // A kernel source may have switched to its table after this writer was made.
        self.skip_kernel = self.tap.kernel_from_table();
        if self.local.is_empty() {
            return;
        }
        let d = std::mem::take(&mut self.local);
        self.tap.delta().merge(d);
    }
}

impl Drop for TapWriter<'_> {
    fn drop(&mut self) {
        self.publish();
    }
}

/// How flow rows are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Packets,
    Rate,
    Bytes,
}

impl SortBy {
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Packets => SortBy::Rate,
            SortBy::Rate => SortBy::Bytes,
            SortBy::Bytes => SortBy::Packets,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Packets => "packets",
            SortBy::Rate => "rate",
            SortBy::Bytes => "bytes",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Row {
    total: Counts,
    /// Packets in the tick `tick`.
    last: u64,
    tick: u64,
}

#[derive(Clone, Debug, Default)]
struct ReasonRow {
    total: Counts,
    history: VecDeque<u64>,
}

/// The view's books: totals since the start, the last tick's counts, a short history.
#[derive(Debug)]
pub struct View {
    rows: HashMap<AggKey, Row>,
    max_rows: usize,
    folded: BTreeMap<ReasonKey, Counts>,
    folded_rows: u64,
    reasons: BTreeMap<ReasonKey, ReasonRow>,
    locations: HashMap<(u32, u64), Row>,
    places: HashMap<(u32, u32), Row>,
    kernel: BTreeMap<u32, ReasonCounter>,
    cilium_lost: u64,
    generations: u64,
    symbols: HashMap<u64, Arc<str>>,
    tick: u64,
    /// Length of the last tick.
    dt: Duration,
    started: Instant,
}

impl View {
    pub fn new(max_rows: usize) -> View {
        View {
            rows: HashMap::new(),
            max_rows: max_rows.max(16),
            folded: BTreeMap::new(),
            folded_rows: 0,
            reasons: BTreeMap::new(),
            locations: HashMap::new(),
            places: HashMap::new(),
            kernel: BTreeMap::new(),
            cilium_lost: 0,
            generations: 0,
            symbols: HashMap::new(),
            tick: 0,
            dt: Duration::from_secs(1),
            started: Instant::now(),
        }
    }

    /// Adds what the tap gathered over the last `dt`, as a new tick of the history.
    pub fn tick(&mut self, d: Delta, dt: Duration) {
        self.tick += 1;
        self.dt = dt;
        self.add(d, false);
    }

    /// Adds the last counts of a run that has ended to the latest tick (a short last
    /// interval would make rates of a few events look like a storm).
    pub fn last_tick(&mut self, d: Delta, dt: Duration) {
        if self.tick == 0 {
            return self.tick(d, dt);
        }
        self.dt += dt;
        self.add(d, true);
    }

    fn add(&mut self, d: Delta, same_tick: bool) {
        let t = self.tick;
        let mut per_reason: BTreeMap<ReasonKey, Counts> = BTreeMap::new();
        for (k, c) in d.flows {
            per_reason
                .entry(k.reason)
                .or_default()
                .add(c.packets, c.bytes);
            bump(self.places.entry((k.netns, k.ifindex)).or_default(), t, c);
            if !self.rows.contains_key(&k) && self.rows.len() >= self.max_rows {
                self.fold();
            }
            bump(self.rows.entry(k).or_default(), t, c);
        }
        for (k, n) in d.locations {
            bump(
                self.locations.entry(k).or_default(),
                t,
                Counts {
                    packets: n,
                    bytes: 0,
                },
            );
        }
        for (k, r) in self.reasons.iter_mut() {
            let c = per_reason.remove(k).unwrap_or_default();
            r.total.add(c.packets, c.bytes);
            match r.history.back_mut() {
                Some(last) if same_tick => *last += c.packets,
                _ => push_history(&mut r.history, c.packets),
            }
        }
        for (k, c) in per_reason {
            let mut r = ReasonRow {
                total: c,
                ..Default::default()
            };
            push_history(&mut r.history, c.packets);
            self.reasons.insert(k, r);
        }
        self.symbols.extend(d.symbols);
        if let Some(k) = d.kernel {
            self.kernel = k;
        }
        self.cilium_lost += d.cilium_lost;
        self.generations += d.generations;
    }

    /// Folds the lightest tenth of the rows into their reasons' totals.
    fn fold(&mut self) {
        let mut by_weight: Vec<(u64, AggKey)> = self
            .rows
            .iter()
            .map(|(k, r)| (r.total.packets, *k))
            .collect();
        let n = (self.rows.len() / 10).max(1);
        by_weight.select_nth_unstable_by_key(n - 1, |(p, _)| *p);
        for (_, k) in by_weight.into_iter().take(n) {
            if let Some(r) = self.rows.remove(&k) {
                self.folded
                    .entry(k.reason)
                    .or_default()
                    .add(r.total.packets, r.total.bytes);
                self.folded_rows += 1;
            }
        }
    }

    /// Total drops (every reason but ordinary packets) and their count in the last tick.
    pub fn totals(&self) -> (u64, u64) {
        let mut total = 0;
        let mut last = 0;
        for (k, r) in &self.reasons {
            if is_drop(*k) {
                total += r.total.packets;
                last += r.history.back().copied().unwrap_or(0);
            }
        }
        (total, last)
    }

    /// Reasons seen, heaviest first (for the reason filter key).
    pub fn reasons_by_weight(&self) -> Vec<ReasonKey> {
        let mut v: Vec<(u64, ReasonKey)> = self
            .reasons
            .iter()
            .map(|(k, r)| (r.total.packets, *k))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, k)| k).collect()
    }

    /// One refresh: `rows` lines per table.
    pub fn frame(&self, names: &Names, o: &FrameOptions) -> Frame {
        let per_s = |n: u64| n as f64 / self.dt.as_secs_f64().max(1e-3);
        let (total, last) = self.totals();
        let keep = |k: ReasonKey| o.reason.is_none_or(|r| r == k);
        let mut reasons: Vec<FrameReason> = self
            .reasons
            .iter()
            .filter(|(k, _)| keep(**k))
            .map(|(k, r)| FrameReason {
                reason: names.reason_name(*k),
                origin: origin(*k),
                total: r.total.packets,
                bytes: r.total.bytes,
                per_s: per_s(r.history.back().copied().unwrap_or(0)),
                history: r.history.iter().copied().collect(),
            })
            .collect();
        reasons.sort_by(|a, b| b.total.cmp(&a.total).then(a.reason.cmp(&b.reason)));

        let mut flows: Vec<(&AggKey, &Row)> =
            self.rows.iter().filter(|(k, _)| keep(k.reason)).collect();
        let last_of = |r: &Row| if r.tick == self.tick { r.last } else { 0 };
        let weight = |r: &Row| match o.sort {
            SortBy::Packets => r.total.packets,
            SortBy::Rate => last_of(r),
            SortBy::Bytes => r.total.bytes,
        };
        let cmp = |a: &(&AggKey, &Row), b: &(&AggKey, &Row)| {
            weight(b.1)
                .cmp(&weight(a.1))
                .then(b.1.total.packets.cmp(&a.1.total.packets))
                .then(a.0.cmp(b.0))
        };
        let rows = o.rows.max(1);
        if flows.len() > rows {
            flows.select_nth_unstable_by(rows - 1, cmp);
            flows.truncate(rows);
        }
        flows.sort_by(cmp);
        let pods = names.pod_snapshot();
        let flows = flows
            .into_iter()
            .map(|(k, r)| {
                let mut pod = String::new();
                if let Some((snap, host)) = &pods {
                    crate::lookup::PodContext::of_row(snap, *host, k).write_text(&mut pod);
                }
                FrameFlow {
                    reason: names.reason_name(k.reason),
                    flow: k.flow.to_string(),
                    place: place_label(names, k.netns, k.ifindex),
                    identities: (k.src_identity != 0 || k.dst_identity != 0)
                        .then(|| format!("{} -> {}", k.src_identity, k.dst_identity)),
                    pod: pod.trim().to_string(),
                    packets: r.total.packets,
                    bytes: r.total.bytes,
                    per_s: per_s(last_of(r)),
                }
            })
            .collect();

        let mut locations: Vec<(&(u32, u64), &Row)> = self
            .locations
            .iter()
            .filter(|((r, _), _)| keep(ReasonKey::Kernel(*r)))
            .collect();
        locations.sort_by(|a, b| b.1.total.packets.cmp(&a.1.total.packets).then(a.0.cmp(b.0)));
        let locations = locations
            .into_iter()
            .take(o.rows)
            .map(|((reason, at), r)| FrameCount {
                label: format!(
                    "{} at {}",
                    names.reason_name(ReasonKey::Kernel(*reason)),
                    location_label(names, &self.symbols, *at)
                ),
                packets: r.total.packets,
                per_s: per_s(last_of(r)),
            })
            .collect();

        let mut places: Vec<(&(u32, u32), &Row)> = self.places.iter().collect();
        places.sort_by(|a, b| b.1.total.packets.cmp(&a.1.total.packets).then(a.0.cmp(b.0)));
        let places = places
            .into_iter()
            .take(o.rows)
            .map(|((netns, ifindex), r)| {
                let mut label = place_label(names, *netns, *ifindex);
                if let Some(p) = pods
                    .as_ref()
                    .and_then(|(s, host)| s.at(*netns, *ifindex, *host))
                {
                    label.push_str("  ");
                    p.write_label(&mut label);
                }
                FrameCount {
                    label,
                    packets: r.total.packets,
                    per_s: per_s(last_of(r)),
                }
            })
            .collect();

        let mut loss = Loss {
            cilium_lost: self.cilium_lost,
            folded_rows: self.folded_rows,
            folded_packets: self.folded.values().map(|c| c.packets).sum(),
            ..Default::default()
        };
        for c in self.kernel.values() {
            loss.kernel_seen += c.seen;
            loss.ring_lost += c.ring_full;
            loss.table_full += c.table_full;
            loss.not_copied += c.not_copied;
            loss.filtered += c.filtered;
        }
        if let Some(g) = &o.gauges {
            let m = g.recursion_misses.load(Ordering::Relaxed);
            loss.recursion_misses = (m != u64::MAX).then_some(m);
            loss.malformed = g.malformed.load(Ordering::Relaxed);
            let bytes = g.ring_bytes.load(Ordering::Relaxed).max(1);
            loss.ring_fill_pct = g
                .ring_used
                .iter()
                .map(|u| u.load(Ordering::Relaxed) * 100 / bytes)
                .max();
        }
        Frame {
            elapsed: self.started.elapsed(),
            total,
            per_s: per_s(last),
            kernel_table: o.kernel_table,
            reasons,
            flows,
            locations,
            places,
            loss,
            sort: o.sort,
            reason_filter: o.reason.map(|r| names.reason_name(r)),
            paused: o.paused,
            finished: o.finished,
            source: o.source.clone(),
        }
    }
}

fn bump(r: &mut Row, tick: u64, c: Counts) {
    r.total.add(c.packets, c.bytes);
    if r.tick == tick {
        r.last += c.packets;
    } else {
        r.tick = tick;
        r.last = c.packets;
    }
}

fn push_history(h: &mut VecDeque<u64>, n: u64) {
    if h.len() == HISTORY {
        h.pop_front();
    }
    h.push_back(n);
}

/// Kernel drops and Cilium drop notifications (not traces, verdicts or ordinary packets).
fn is_drop(k: ReasonKey) -> bool {
    matches!(k, ReasonKey::Kernel(_) | ReasonKey::Cilium(_))
}

fn origin(k: ReasonKey) -> &'static str {
    match k {
        ReasonKey::Kernel(_) => "kernel",
        ReasonKey::Cilium(_) | ReasonKey::CiliumEvent(_) => "cilium",
        ReasonKey::Captured | ReasonKey::Packet { .. } => "packets",
    }
}

fn place_label(names: &Names, netns: u32, ifindex: u32) -> String {
    if netns == 0 && ifindex == 0 {
        "-".to_string()
    } else {
        names.iface_label(ifindex, netns)
    }
}

fn location_label(names: &Names, symbols: &HashMap<u64, Arc<str>>, at: u64) -> String {
    if let Some(s) = symbols.get(&at) {
        return s.to_string();
    }
    match names.symbol(at) {
        Some((sym, off)) => format!("{sym}+{off:#x}"),
        None if at == 0 => "?".to_string(),
        None => format!("{at:#x}"),
    }
}

/// What a refresh shows besides the counts.
#[derive(Clone, Debug)]
pub struct FrameOptions {
    pub rows: usize,
    pub sort: SortBy,
    pub reason: Option<ReasonKey>,
    pub paused: bool,
    pub finished: bool,
    pub kernel_table: bool,
    pub gauges: Option<Arc<LiveGauges>>,
    pub source: String,
}

/// One reason's line.
#[derive(Clone, Debug)]
pub struct FrameReason {
    pub reason: String,
    pub origin: &'static str,
    pub total: u64,
    pub bytes: u64,
    pub per_s: f64,
    /// Packets per tick, oldest first.
    pub history: Vec<u64>,
}

/// One flow × reason line.
#[derive(Clone, Debug)]
pub struct FrameFlow {
    pub reason: String,
    pub flow: String,
    pub place: String,
    pub identities: Option<String>,
    pub pod: String,
    pub packets: u64,
    pub bytes: u64,
    pub per_s: f64,
}

/// A labelled count (drop sites, namespaces and interfaces).
#[derive(Clone, Debug)]
pub struct FrameCount {
    pub label: String,
    pub packets: u64,
    pub per_s: f64,
}

/// What was lost or left out, as the counters say now.
#[derive(Clone, Debug, Default)]
pub struct Loss {
    pub kernel_seen: u64,
    pub ring_lost: u64,
    pub table_full: u64,
    /// Not copied by the exemplar budget (counted, intentional).
    pub not_copied: u64,
    /// Turned away by the selection in the kernel (intentional).
    pub filtered: u64,
    pub recursion_misses: Option<u64>,
    pub malformed: u64,
    pub cilium_lost: u64,
    /// The fullest CPU ring, in percent.
    pub ring_fill_pct: Option<u64>,
    /// Flow rows the view folded into per-reason totals (bounded memory).
    pub folded_rows: u64,
    pub folded_packets: u64,
}

/// One refresh of the view.
#[derive(Clone, Debug)]
pub struct Frame {
    pub elapsed: Duration,
    pub total: u64,
    pub per_s: f64,
    pub kernel_table: bool,
    pub reasons: Vec<FrameReason>,
    pub flows: Vec<FrameFlow>,
    pub locations: Vec<FrameCount>,
    pub places: Vec<FrameCount>,
    pub loss: Loss,
    pub sort: SortBy,
    pub reason_filter: Option<String>,
    pub paused: bool,
    pub finished: bool,
    pub source: String,
}

/// `▁▂▃▄▅▆▇█` scaled to the largest value.
pub fn sparkline(h: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let h = h.get(h.len().saturating_sub(width)..).unwrap_or_default();
    let max = h.iter().copied().max().unwrap_or(0);
    h.iter()
        .map(|&n| {
            if max == 0 || n == 0 {
                ' '
            } else {
                BARS.get(((n * 7) / max) as usize).copied().unwrap_or('█')
            }
        })
        .collect()
}

impl Frame {
    /// The header line.
    pub fn header(&self) -> String {
        let mut s = format!(
            "dropscope top  {}  {:.0}s  drops {} total, {:.0}/s  sort {}",
            self.source,
            self.elapsed.as_secs_f64(),
            self.total,
            self.per_s,
            self.sort.as_str()
        );
        if let Some(r) = &self.reason_filter {
            let _ = write!(s, "  reason {r}");
        }
        if self.paused {
            s.push_str("  [paused]");
        }
        if self.finished {
            s.push_str("  [input finished]");
        }
        s
    }

    /// The loss line.
    pub fn loss_line(&self) -> String {
        let l = &self.loss;
        let mut s = format!(
            "loss: ring {} lost, table full {}, recursion misses {}, malformed {}, cilium lost {}",
            l.ring_lost,
            l.table_full,
            l.recursion_misses
                .map_or_else(|| "n/a".to_string(), |n| n.to_string()),
            l.malformed,
            l.cilium_lost
        );
        if let Some(p) = l.ring_fill_pct {
            let _ = write!(s, "; ring fill {p}%");
        }
        if l.not_copied > 0 || l.filtered > 0 {
            let _ = write!(
                s,
                "; intentional: {} not copied (budget), {} filtered in the kernel",
                l.not_copied, l.filtered
            );
        }
        if l.folded_rows > 0 {
            let _ = write!(
                s,
                "; {} rows ({} drops) folded into their reasons",
                l.folded_rows, l.folded_packets
            );
        }
        s
    }

    /// Where the counts come from.
    pub fn counts_line(&self) -> &'static str {
        if self.kernel_table {
            "counts: kernel drops from the kernel flow table (every drop, exact)"
        } else {
            "counts: processed events"
        }
    }

    /// The whole frame as plain text (stdout not a terminal, and the last frame on exit).
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.header());
        let _ = writeln!(s, "{}", self.counts_line());
        let _ = writeln!(s, "REASONS  {:>12} {:>10}  ORIGIN   REASON", "DROPS", "/S");
        for r in &self.reasons {
            let _ = writeln!(
                s,
                "reason   {:>12} {:>10.0}  {:<7}  {}  {}",
                r.total,
                r.per_s,
                r.origin,
                r.reason,
                sparkline(&r.history, 20).trim_end()
            );
        }
        let _ = writeln!(
            s,
            "FLOWS    {:>12} {:>10} {:>12}  REASON  FLOW  WHERE",
            "DROPS", "/S", "BYTES"
        );
        for f in &self.flows {
            let _ = write!(
                s,
                "flow     {:>12} {:>10.0} {:>12}  {}  {}  {}",
                f.packets, f.per_s, f.bytes, f.reason, f.flow, f.place
            );
            if let Some(i) = &f.identities {
                let _ = write!(s, "  identity {i}");
            }
            if !f.pod.is_empty() {
                let _ = write!(s, "  {}", f.pod);
            }
            s.push('\n');
        }
        let _ = writeln!(s, "LOCATIONS {:>11} {:>10}  REASON AT SITE", "DROPS", "/S");
        for l in &self.locations {
            let _ = writeln!(
                s,
                "location {:>12} {:>10.0}  {}",
                l.packets, l.per_s, l.label
            );
        }
        let _ = writeln!(
            s,
            "WHERE    {:>12} {:>10}  INTERFACE@NETNS  POD",
            "DROPS", "/S"
        );
        for p in &self.places {
            let _ = writeln!(
                s,
                "where    {:>12} {:>10.0}  {}",
                p.packets, p.per_s, p.label
            );
        }
        let _ = writeln!(s, "{}", self.loss_line());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LinkType;

    fn ev(reason: u32, location: u64, len: u32) -> Event {
        Event {
            ts_ns: 1,
            ifindex: 2,
            netns: 3,
            cpu: 0,
            orig_len: len,
            link: LinkType::Ethernet,
            data: bytes::Bytes::new(),
            cause: Cause::Kernel {
                reason,
                location,
                protocol: 0x0800,
            },
            meta: None,
        }
    }

    fn key(reason: u32, dport: u16) -> AggKey {
        AggKey {
            flow: FlowKey {
                family: 4,
                proto: 17,
                vlan: 0,
                src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                sport: 5000,
                dport,
            },
            ifindex: 2,
            netns: 3,
            reason: ReasonKey::Kernel(reason),
            src_identity: 0,
            dst_identity: 0,
        }
    }

    fn opts() -> FrameOptions {
        FrameOptions {
            rows: 10,
            sort: SortBy::Packets,
            reason: None,
            paused: false,
            finished: false,
            kernel_table: false,
            gauges: None,
            source: "test".into(),
        }
    }

    #[test]
    fn counts_reach_the_frame_exactly_with_rates_of_the_last_tick() {
        let tap = LiveTap::new();
        let names = Names::load(true);
        let mut view = View::new(100);
        {
            let mut w = TapWriter::new(&tap);
            for _ in 0..7 {
                w.add(&ev(3, 0x10, 100), &key(3, 9));
            }
            for _ in 0..2 {
                w.add(&ev(2, 0x20, 60), &key(2, 53));
            }
        }
        view.tick(tap.take(), Duration::from_secs(1));
        {
            let mut w = TapWriter::new(&tap);
            w.add(&ev(3, 0x10, 100), &key(3, 9));
        }
        view.tick(tap.take(), Duration::from_millis(500));
        let f = view.frame(&names, &opts());
        assert_eq!(f.total, 10);
        assert_eq!(f.per_s, 2.0);
        assert_eq!(f.flows.len(), 2);
        assert_eq!(f.flows[0].packets, 8);
        assert_eq!(f.flows[0].bytes, 800);
        assert_eq!(f.flows[0].per_s, 2.0);
        assert_eq!(f.flows[0].flow, "10.0.0.1:5000 -> 10.0.0.2:9 udp");
        assert_eq!(f.flows[1].packets, 2);
        assert_eq!(f.flows[1].per_s, 0.0);
        assert_eq!(f.reasons[0].history, vec![7, 1]);
        assert_eq!(f.reasons[1].history, vec![2, 0]);
        assert_eq!(f.locations[0].packets, 8);
        assert_eq!(f.places[0].packets, 10);

        // The reason filter keeps one reason's rows; sorting by bytes is by bytes.
        let o = FrameOptions {
            reason: Some(ReasonKey::Kernel(2)),
            ..opts()
        };
        let f = view.frame(&names, &o);
        assert_eq!(f.flows.len(), 1);
        assert_eq!(f.flows[0].packets, 2);
        assert_eq!(f.reasons.len(), 1);
        assert_eq!(f.locations.len(), 1);
        let text = f.text();
        assert!(
            text.contains("flow                2          0          120"),
            "{text}"
        );
    }

    #[test]
    fn kernel_drops_from_the_table_are_not_counted_again_from_copies() {
        let tap = LiveTap::new();
        tap.kernel_source(Arc::new(LiveGauges::default()), true);
        let mut w = TapWriter::new(&tap);
        w.add(&ev(3, 0x10, 100), &key(3, 9));
        w.publish();
        assert!(tap.take().flows.is_empty());
    }

    #[test]
    fn a_full_view_folds_its_lightest_rows_and_keeps_totals_exact() {
        let tap = LiveTap::new();
        let names = Names::load(true);
        let mut view = View::new(16);
        {
            let mut w = TapWriter::new(&tap);
            for port in 0..40u16 {
                for _ in 0..=port {
                    w.add(&ev(3, 0, 10), &key(3, port));
                }
            }
        }
        view.tick(tap.take(), Duration::from_secs(1));
        let f = view.frame(&names, &opts());
        assert!(view.rows.len() <= 16);
        assert_eq!(f.total, (1..=40).sum::<u64>());
        let kept: u64 = view.rows.values().map(|r| r.total.packets).sum();
        assert_eq!(kept + f.loss.folded_packets, f.total);
        assert!(f.loss.folded_rows > 0);
    }

    #[test]
    fn sparkline_scales_to_the_largest() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 10), " ▁▂▄█");
        assert_eq!(sparkline(&[5, 5], 1), "█");
    }
}
