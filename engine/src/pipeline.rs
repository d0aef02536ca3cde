//! The pipeline: source -> decode -> sinks, as threads joined by bounded channels.
//!
//! ```text
//!  source thread --Batch--> decode thread --Decoded--> sink thread (file, printer)
//!                           (decode, aggregate) <--spent batches--'
//! ```
//! Channels block when full: a slow sink slows the source, and for the kernel source that
//! pushes loss into the ring, where the kernel program counts it per reason. So no stage in
//! user space drops events; each still counts what it saw, and [`RunReport::ledger`] checks
//! that the counts agree. With `-c COUNT` the first COUNT events are processed: the decode
//! stage adds them to the flow table and the sink writes them (both go by event order, so they
//! pick the same ones), then the sink stops the run; events still in flight after that are
//! counted as `skipped`.
//!
//! The decode stage aggregates because it has just decoded the packet (its summary is in
//! cache there) and because the sink, which copies every packet into the output, is the
//! busiest stage. For the same reason the sink hands spent batches back to the decode thread,
//! which frees them (dropping a batch releases each event's packet bytes).
//!
//! Must never: drop an event without counting it; allocate per event on the hot path
//! (batches are allocated, events are not).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::accounting::{Ledger, StageLoss};
use crate::aggregate::{AggKey, FlowTable, ReasonKey};
use crate::event::{Batch, Event};
use crate::lookup::Names;
use crate::packet::{summarize_into, PacketSummary, TunnelHint};
use crate::render::Renderer;
use crate::select::Selection;
use crate::sink::{OutputSink, SinkStats};

/// What a source reports when it ends.
#[derive(Debug, Default)]
pub struct SourceReport {
    /// Human description, e.g. "tp_btf/kfree_skb" or "file capture.pcapng".
    pub description: String,
    /// Events the source handed to the pipeline, per reason.
    pub delivered: BTreeMap<ReasonKey, u64>,
    /// Per reason, what the origin counted (the kernel program); `None` for origins that
    /// keep no count.
    pub observed: Option<BTreeMap<ReasonKey, Observed>>,
    /// The kernel flow table's profile of the run (kernel source only).
    pub storm: Option<crate::storm::StormProfile>,
    /// Losses that cannot be attributed to a reason.
    pub losses: Vec<StageLoss>,
    /// Extra lines for the summary (attach mode, reconnects, ...).
    pub notes: Vec<String>,
}

/// One reason's counts at the origin (the kernel program).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Drops seen.
    pub seen: u64,
    /// Of those, copies the ring had no room for.
    pub lost_ring: u64,
    /// Of those, drops the exemplar budget did not copy.
    pub not_copied: u64,
    /// Of those, drops the kernel flow table had no room for.
    pub table_full: u64,
    /// Drops the kernel flow table counted (`None` without a table).
    pub in_table: Option<u64>,
    /// Of those seen, drops the selectors or the filter expression turned away.
    pub filtered: u64,
}

impl Observed {
    /// Adds `o` (the same reason from another source).
    pub fn add(&mut self, o: &Observed) {
        self.seen += o.seen;
        self.lost_ring += o.lost_ring;
        self.not_copied += o.not_copied;
        self.table_full += o.table_full;
        self.filtered += o.filtered;
        self.in_table = match (self.in_table, o.in_table) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    }
}

/// A source: runs until `stop` is set or it has nothing more, sending batches to `tx`.
pub type SourceFn<'a> =
    Box<dyn FnOnce(&Sender<Batch>, &AtomicBool) -> Result<SourceReport> + Send + 'a>;

/// Live counters the progress line reads.
#[derive(Debug, Default)]
pub struct Progress {
    pub received: AtomicU64,
    pub processed: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Stop after this many events (tcpdump -c).
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Events per batch the source aims for.
    pub batch_max: usize,
    /// Batches in flight per channel.
    pub channel_depth: usize,
    /// Distinct (flow, reason) keys before folding into per-reason overflow buckets.
    pub max_flows: usize,
    pub tunnel_hint: TunnelHint,
    /// Selectors and expression run in the decode stage (what no kernel program ran).
    pub select: Option<Arc<Selection>>,
    /// A live view's tap (`dropscope top`): the decode stage hands it the processed events'
    /// counts.
    pub tap: Option<Arc<crate::live::LiveTap>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            count: None,
            duration: None,
            batch_max: 256,
            channel_depth: 64,
            max_flows: 1 << 20,
            tunnel_hint: TunnelHint::ByPort,
            select: None,
            tap: None,
        }
    }
}

/// Everything a run produced, for the summary and `--stats-json`.
#[derive(Debug)]
pub struct RunReport {
    pub source: SourceReport,
    pub ledger: Ledger,
    pub flows: FlowTable,
    pub sinks: SinkStats,
    pub elapsed: Duration,
    pub started_ns: u64,
    pub stopped_by: StopCause,
    /// The run's drops joined with the datapath's state (filled in by the caller after the
    /// run: `capture` reads the live datapath, `replay` only the reason table).
    pub datapath: Option<crate::datapath::explain::Join>,
    /// Processed events per reason over time (the flow table's events).
    pub timeline: crate::timeline::Timeline,
    /// What the run was asked to do (set by the command after the run).
    pub facts: crate::facts::RunFacts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The source ended (end of file).
    SourceEnded,
    /// `-c COUNT` reached.
    Count,
    /// `--duration` elapsed.
    Duration,
    /// Ctrl-C / SIGTERM.
    Interrupted,
    /// Standard output's reader went away (`| head`) and nothing else was being written.
    OutputClosed,
}

impl StopCause {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCause::SourceEnded => "source ended",
            StopCause::Count => "count reached",
            StopCause::Duration => "duration elapsed",
            StopCause::Interrupted => "interrupted",
            StopCause::OutputClosed => "standard output closed",
        }
    }
}

/// A batch with the decode stage's result for each event (none when the sink does not print:
/// the summaries then stay in the decode thread).
struct Decoded {
    batch: Batch,
    summaries: Vec<PacketSummary>,
}

/// The aggregation key of one event.
pub fn agg_key(e: &Event, s: &PacketSummary) -> AggKey {
    let (reason, src_identity, dst_identity) = crate::aggregate::reason_and_identities(e);
    AggKey {
        flow: s.flow,
        ifindex: e.ifindex,
        netns: e.netns,
        reason,
        src_identity,
        dst_identity,
    }
}

/// Runs one capture or replay to its end.
///
/// `interrupt` is set by the caller's signal handler. `sink` receives every processed event.
pub fn run(
    cfg: &PipelineConfig,
    source: SourceFn<'_>,
    mut sink: OutputSink,
    names: &Names,
    interrupt: &AtomicBool,
    progress: &Progress,
    mut on_tick: impl FnMut(&Progress, Duration),
) -> Result<RunReport> {
    let started = Instant::now();
    let started_ns = crate::timefmt::now_ns();
    let stop = AtomicBool::new(false);
    let count_reached = AtomicBool::new(false);
    let output_closed = AtomicBool::new(false);
    let (raw_tx, raw_rx) = bounded::<Batch>(cfg.channel_depth);
    let (dec_tx, dec_rx) = bounded::<Decoded>(cfg.channel_depth);
    // Never waited on: the sink drops a spent batch itself when this is full.
    let (spent_tx, spent_rx) = bounded::<Decoded>(cfg.channel_depth.saturating_mul(2).max(2));
    let hint = cfg.tunnel_hint;
    let count = cfg.count;
    let max_flows = cfg.max_flows;
    // Pod names of packets' addresses come from their summaries.
    let keep_summaries = sink.needs_summaries() || (names.pods.is_some() && sink.writes_file());
    let select = cfg.select.clone();
    let tap = cfg.tap.clone();

    // Dropped by the source thread when it returns: wakes the main thread at once.
    let (done_tx, done_rx) = bounded::<()>(0);
    // The kernel table's profile, for the file's trailing block: sent by the main thread once
    // the source has ended, read by the sink thread before it closes the file.
    let (trailer_tx, trailer_rx) = bounded::<Option<Vec<u8>>>(1);

    let result = std::thread::scope(
        |scope| -> Result<(SourceReport, AggOutcome, SinkStats, StopCause)> {
            // Owned here: dropped on every early return, so the sink never waits for it.
            let trailer_tx = trailer_tx;
            let stop_ref = &stop;
            let src = std::thread::Builder::new()
                .name("dropscope-source".into())
                .spawn_scoped(scope, move || {
                    let r = source(&raw_tx, stop_ref);
                    drop(raw_tx);
                    drop(done_tx);
                    r
                })
                .context("starting the source thread")?;
            let dec = std::thread::Builder::new()
                .name("dropscope-decode".into())
                .spawn_scoped(scope, move || {
                    let agg = Aggregator::new(count, max_flows);
                    let tap = tap.as_deref().map(crate::live::TapWriter::new);
                    decode_stage(
                        raw_rx,
                        dec_tx,
                        spent_rx,
                        hint,
                        keep_summaries,
                        select.as_deref(),
                        agg,
                        tap,
                    )
                })
                .context("starting the decode thread")?;
            let cr = &count_reached;
            let oc = &output_closed;
            let snk = std::thread::Builder::new()
                .name("dropscope-sink".into())
                .spawn_scoped(scope, move || {
                    sink_stage(
                        dec_rx, spent_tx, &mut sink, names, count, stop_ref, cr, oc, progress,
                    )?;
                    if let Ok(Some(t)) = trailer_rx.recv() {
                        sink.write_custom(crate::storm::BLOCK_PEN, &t)?;
                    }
                    sink.finish()
                })
                .context("starting the sink thread")?;

            // The main thread watches the clock and the interrupt flag.
            let mut stopped_by = StopCause::SourceEnded;
            let mut last_tick = Instant::now();
            loop {
                // Returns early (disconnected) when the source ends; else every 20 ms.
                if let Err(RecvTimeoutError::Disconnected) =
                    done_rx.recv_timeout(Duration::from_millis(20))
                {
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if interrupt.load(Ordering::Relaxed) {
                    stopped_by = StopCause::Interrupted;
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                if cfg.duration.is_some_and(|d| started.elapsed() >= d) {
                    stopped_by = StopCause::Duration;
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                if last_tick.elapsed() >= Duration::from_secs(1) {
                    last_tick = Instant::now();
                    on_tick(progress, started.elapsed());
                }
            }
            let report = src
                .join()
                .map_err(|_| anyhow::anyhow!("the source thread panicked"))?;
            let trailer = report
                .as_ref()
                .ok()
                .and_then(|r| r.storm.as_ref())
                .map(|p| p.to_block(crate::storm::BLOCK_MAX_ROWS));
            let _ = trailer_tx.send(trailer);
            // If the source failed, the sink still finishes what it got (and the file is closed),
            // then the error is returned.
            let agg = dec.join();
            let sink_stats = snk
                .join()
                .map_err(|_| anyhow::anyhow!("the sink thread panicked"))??;
            let agg = agg.map_err(|_| anyhow::anyhow!("the decode thread panicked"))?;
            if count_reached.load(Ordering::Relaxed) {
                stopped_by = StopCause::Count;
            } else if output_closed.load(Ordering::Relaxed) {
                stopped_by = StopCause::OutputClosed;
            }
            Ok((report?, agg, sink_stats, stopped_by))
        },
    )?;

    let (source_report, outcome, sink_stats, stopped_by) = result;
    let mut ledger = Ledger::default();
    for (k, n) in &source_report.delivered {
        ledger.row(*k).delivered = *n;
    }
    if let Some(obs) = &source_report.observed {
        for (k, o) in obs {
            let r = ledger.row(*k);
            r.observed = Some(o.seen);
            r.lost_ring = o.lost_ring;
            r.not_copied = o.not_copied;
            r.table_full = o.table_full;
            r.in_table = o.in_table;
            r.filtered = o.filtered;
        }
    }
    for (k, c) in &outcome.per_reason {
        let r = ledger.row(*k);
        r.received = c.received;
        r.filtered_user = c.filtered;
        r.skipped = c.skipped;
        r.processed = c.processed;
    }
    for l in &source_report.losses {
        ledger.add_loss(l.stage, l.kind, l.count);
    }
    Ok(RunReport {
        source: source_report,
        ledger,
        flows: outcome.flows,
        sinks: sink_stats,
        elapsed: started.elapsed(),
        started_ns,
        stopped_by,
        datapath: None,
        timeline: outcome.timeline,
        facts: crate::facts::RunFacts::default(),
    })
}

/// Decodes each event, counts it per reason and adds the first `count` events to the flow
/// table (the sink writes the same ones), then passes the batch on, with the summaries when
/// `keep_summaries`. Spent batches coming back from the sink are freed here; their summaries'
/// memory is reused.
#[allow(clippy::too_many_arguments)]
fn decode_stage(
    rx: Receiver<Batch>,
    tx: Sender<Decoded>,
    spent: Receiver<Decoded>,
    hint: TunnelHint,
    keep_summaries: bool,
    select: Option<&Selection>,
    mut agg: Aggregator,
    mut tap: Option<crate::live::TapWriter<'_>>,
) -> AggOutcome {
    let mut spare: Vec<Vec<PacketSummary>> = Vec::new();
    let mut scratch = PacketSummary::default();
    let mut kept_before: Vec<usize> = Vec::new();
    for mut batch in rx {
        if let Some(sel) = select {
            apply_selection(&mut batch, sel, &mut agg, &mut kept_before);
        }
        while let Ok(d) = spent.try_recv() {
            let Decoded {
                batch: done,
                mut summaries,
            } = d;
            drop(done);
            summaries.clear();
            if spare.len() < 4 {
                spare.push(summaries);
            }
        }
        let mut summaries = spare.pop().unwrap_or_default();
        if keep_summaries {
            summaries.resize(batch.events.len(), PacketSummary::default());
            for (e, s) in batch.events.iter().zip(summaries.iter_mut()) {
                summarize_into(
                    &e.data,
                    e.link,
                    crate::cilium_glue::tunnel_hint_for(e, hint),
                    s,
                );
                let key = agg.add(e, s);
                if let (Some(t), Some(k)) = (tap.as_mut(), key) {
                    t.add(e, &k);
                }
            }
        } else {
            for e in &batch.events {
                let s = &mut scratch;
                summarize_into(
                    &e.data,
                    e.link,
                    crate::cilium_glue::tunnel_hint_for(e, hint),
                    s,
                );
                let key = agg.add(e, s);
                if let (Some(t), Some(k)) = (tap.as_mut(), key) {
                    t.add(e, &k);
                }
            }
        }
        if let Some(t) = tap.as_mut() {
            t.notices(&batch.notices);
            t.maybe_publish();
        }
        if tx.send(Decoded { batch, summaries }).is_err() {
            // The sink stage ended early (an error): nothing more can be processed.
            break;
        }
    }
    agg.finish()
}

/// Drops the events `sel` does not select from `batch`, counting them per reason, and
/// moves each notice to the same place among the events kept.
fn apply_selection(
    batch: &mut Batch,
    sel: &Selection,
    agg: &mut Aggregator,
    kept_before: &mut Vec<usize>,
) {
    kept_before.clear();
    let mut kept = 0usize;
    batch.events.retain(|e| {
        kept_before.push(kept);
        if sel.keep(e) {
            kept += 1;
            true
        } else {
            let (reason, _, _) = crate::aggregate::reason_and_identities(e);
            agg.per_reason.entry(reason).or_default().filtered += 1;
            false
        }
    });
    kept_before.push(kept);
    for (at, _) in &mut batch.notices {
        *at = kept_before
            .get(*at)
            .or(kept_before.last())
            .copied()
            .unwrap_or(0);
    }
}

/// Reasons [`Aggregator`] counts in its short list before they go into its map.
const RECENT_REASONS: usize = 16;

/// The decode stage's books: per-reason counts and the flow table of the first `count`
/// events.
struct Aggregator {
    count: Option<u64>,
    per_reason: BTreeMap<ReasonKey, StageCounts>,
    flows: FlowTable,
    processed: u64,
    /// Counts of the reasons seen lately, not yet in `per_reason` (at most
    /// [`RECENT_REASONS`]): a storm's few reasons interleave event by event, and a short list
    /// looked through is cheaper per event than a map (a lone cached reason was flushed into
    /// the map at every change).
    recent: Vec<(ReasonKey, StageCounts)>,
    timeline: crate::timeline::Timeline,
}

impl Aggregator {
    fn new(count: Option<u64>, max_flows: usize) -> Self {
        // Room for every row up front: address space only until rows are written, and a
        // table that fills never copies itself (200k distinct flows from a replay spent a
        // tenth of the run in regrowth and its page faults).
        let mut flows = FlowTable::new(max_flows);
        flows.reserve(max_flows);
        Aggregator {
            count,
            per_reason: BTreeMap::new(),
            flows,
            processed: 0,
            recent: Vec::with_capacity(RECENT_REASONS),
            timeline: crate::timeline::Timeline::default(),
        }
    }

    /// Counts `e`; returns its flow table key when it was processed (not skipped after the
    /// count limit).
    #[inline]
    fn add(&mut self, e: &Event, s: &PacketSummary) -> Option<AggKey> {
        let key = agg_key(e, s);
        let skip = self.count.is_some_and(|n| self.processed >= n);
        let c = self.recent_counts(key.reason);
        c.received += 1;
        if skip {
            c.skipped += 1;
            return None;
        }
        c.processed += 1;
        self.processed += 1;
        self.flows.add(&key, e.orig_len, e.ts_ns);
        self.timeline.add(key.reason, e.ts_ns);
        Some(key)
    }

    /// The counts of `reason` in `recent`, which is emptied into `per_reason` when full.
    #[inline]
    fn recent_counts(&mut self, reason: ReasonKey) -> &mut StageCounts {
        let at = match self.recent.iter().position(|(k, _)| *k == reason) {
            Some(at) => at,
            None => {
                if self.recent.len() >= RECENT_REASONS {
                    for r in self.recent.drain(..) {
                        add_counts(&mut self.per_reason, r);
                    }
                }
                self.recent.push((reason, StageCounts::default()));
                self.recent.len() - 1
            }
        };
        // In bounds: found there, or just pushed last (else the map counts it).
        match self.recent.get_mut(at) {
            Some((_, c)) => c,
            None => self.per_reason.entry(reason).or_default(),
        }
    }

    fn finish(mut self) -> AggOutcome {
        for r in self.recent.drain(..) {
            add_counts(&mut self.per_reason, r);
        }
        AggOutcome {
            per_reason: self.per_reason,
            flows: self.flows,
            timeline: self.timeline,
        }
    }
}

fn add_counts(per_reason: &mut BTreeMap<ReasonKey, StageCounts>, (k, c): (ReasonKey, StageCounts)) {
    let e = per_reason.entry(k).or_default();
    e.received += c.received;
    e.filtered += c.filtered;
    e.skipped += c.skipped;
    e.processed += c.processed;
}

#[derive(Debug, Default, Clone, Copy)]
struct StageCounts {
    /// Turned away by the selection before `received`.
    filtered: u64,
    received: u64,
    skipped: u64,
    processed: u64,
}

#[derive(Debug)]
struct AggOutcome {
    per_reason: BTreeMap<ReasonKey, StageCounts>,
    flows: FlowTable,
    timeline: crate::timeline::Timeline,
}

/// Writes the first `count` events (all without a count) to the outputs, in order with the
/// notices, and stops the run when `count` is reached. Spent batches go back on `spent`.
#[allow(clippy::too_many_arguments)]
fn sink_stage(
    rx: Receiver<Decoded>,
    spent: Sender<Decoded>,
    sink: &mut OutputSink,
    names: &Names,
    count: Option<u64>,
    stop: &AtomicBool,
    count_reached: &AtomicBool,
    output_closed: &AtomicBool,
    progress: &Progress,
) -> Result<()> {
    let mut renderer = Renderer::new(names);
    let mut processed_total = 0u64;
    // What `sink.write` gets when the summaries stayed in the decode thread (it does not
    // read it then).
    let none = PacketSummary::default();
    for d in rx {
        let mut bytes = 0u64;
        let mut notices = d.batch.notices.iter().peekable();
        for (i, e) in d.batch.events.iter().enumerate() {
            let s = d.summaries.get(i).unwrap_or(&none);
            if !d.batch.notices.is_empty() {
                while let Some((_, n)) = notices.next_if(|(at, _)| *at <= i) {
                    sink.write_notice(n, &mut renderer)?;
                }
            }
            if count.is_some_and(|n| processed_total >= n) {
                continue;
            }
            sink.write(e, s, &mut renderer)?;
            processed_total += 1;
            bytes += u64::from(e.orig_len);
            if count.is_some_and(|n| processed_total >= n) {
                count_reached.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
        }
        for (_, n) in notices {
            sink.write_notice(n, &mut renderer)?;
        }
        sink.end_batch()?;
        if sink.nothing_left() && !output_closed.load(Ordering::Relaxed) {
            output_closed.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        }
        let n = d.batch.events.len() as u64;
        progress.received.fetch_add(n, Ordering::Relaxed);
        progress.processed.store(processed_total, Ordering::Relaxed);
        progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        // Freed by the decode thread; by this one when that cannot take it.
        if let Err(e) = spent.try_send(d) {
            drop(e.into_inner());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Cause, LinkType};
    use crate::sink::PrintMode;
    use bytes::Bytes;

    /// Ethernet + IPv4 + UDP, 10.0.0.1:`sport` -> 10.0.0.2:9.
    fn frame(sport: u16) -> Bytes {
        let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        p.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&[0, 9, 0, 8, 0, 0]);
        Bytes::from(p)
    }

    const KERNEL: Cause = Cause::Kernel {
        reason: 3,
        location: 0,
        protocol: 0,
    };

    fn batch(events: &[(u16, Cause)], ts: u64) -> Batch {
        let mut b = Batch::with_capacity(events.len());
        for (i, (sport, cause)) in events.iter().enumerate() {
            b.events.push(Event {
                meta: None,
                ts_ns: ts + i as u64,
                ifindex: 1,
                netns: 0,
                cpu: 0,
                orig_len: 42,
                link: LinkType::Ethernet,
                data: frame(*sport),
                cause: *cause,
            });
        }
        b
    }

    /// Two batches: 7 captured packets of flow :1000 and 5 kernel drops of flow :2000, mixed.
    fn batches() -> Vec<Batch> {
        let c = Cause::Captured;
        vec![
            batch(
                &[
                    (1000, c),
                    (1000, c),
                    (1000, c),
                    (2000, KERNEL),
                    (2000, KERNEL),
                ],
                100,
            ),
            batch(
                &[
                    (1000, c),
                    (1000, c),
                    (1000, c),
                    (1000, c),
                    (2000, KERNEL),
                    (2000, KERNEL),
                    (2000, KERNEL),
                ],
                200,
            ),
        ]
    }

    /// More reasons than the aggregator's short list, interleaved event by event, with a
    /// count limit reached halfway: each reason's received, processed and skipped counts equal
    /// a plain count of the same events.
    #[test]
    fn interleaved_reasons_past_the_short_list_count_exactly() {
        let reasons = RECENT_REASONS as u32 + 7;
        let events = 10_000u64;
        let limit = 6_001u64;
        let mut agg = Aggregator::new(Some(limit), 100);
        let mut want: BTreeMap<ReasonKey, (u64, u64, u64)> = BTreeMap::new();
        for i in 0..events {
            let reason = (i * 7 % u64::from(reasons)) as u32 + 1;
            let mut b = batch(
                &[(
                    1000,
                    Cause::Kernel {
                        reason,
                        location: 0,
                        protocol: 0,
                    },
                )],
                i,
            );
            let e = b.events.pop().unwrap();
            let mut s = PacketSummary::default();
            summarize_into(&e.data, e.link, TunnelHint::default(), &mut s);
            let processed = agg.add(&e, &s).is_some();
            assert_eq!(processed, i < limit, "event {i}");
            let w = want.entry(ReasonKey::Kernel(reason)).or_default();
            w.0 += 1;
            if processed {
                w.1 += 1;
            } else {
                w.2 += 1;
            }
        }
        let out = agg.finish();
        let got: BTreeMap<ReasonKey, (u64, u64, u64)> = out
            .per_reason
            .iter()
            .map(|(k, c)| (*k, (c.received, c.processed, c.skipped)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), reasons as usize);
        let rows: u64 = out.flows.iter().map(|(_, v)| v.packets).sum();
        assert_eq!(rows, limit);
        assert_eq!(out.timeline.totals().values().sum::<u64>(), limit);
    }

    /// Standard output for tests: shared so the test can read what the sink printed.
    #[derive(Clone, Default)]
    struct Printed(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Printed {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run_on(name: &str, count: Option<u64>) -> (RunReport, Vec<u8>) {
        run_printing(name, count, PrintMode::None).0
    }

    fn run_printing(
        name: &str,
        count: Option<u64>,
        mode: PrintMode,
    ) -> ((RunReport, Vec<u8>), String) {
        let dir =
            std::env::temp_dir().join(format!("dropscope-pipeline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.pcapng");
        let names = Names::load(true);
        let writer = crate::pcap::create(&path, crate::pcap::FileFormat::Pcapng, 0).unwrap();
        let printed = Printed::default();
        let sink = OutputSink::new(
            Some((writer, path.display().to_string(), "pcapng".into())),
            mode,
            Box::new(printed.clone()),
        );
        let input = batches();
        let source: SourceFn<'_> = Box::new(move |tx, _stop| {
            let mut report = SourceReport::default();
            for b in input {
                for e in &b.events {
                    let k = crate::aggregate::reason_and_identities(e).0;
                    *report.delivered.entry(k).or_default() += 1;
                }
                if tx.send(b).is_err() {
                    break;
                }
            }
            Ok(report)
        });
        let cfg = PipelineConfig {
            count,
            channel_depth: 1,
            ..PipelineConfig::default()
        };
        let report = run(
            &cfg,
            source,
            sink,
            &names,
            &AtomicBool::new(false),
            &Progress::default(),
            |_, _| {},
        )
        .unwrap();
        let file = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = String::from_utf8(printed.0.lock().unwrap().clone()).unwrap();
        ((report, file), text)
    }

    fn flow_packets(r: &RunReport) -> Vec<(u16, ReasonKey, u64)> {
        let mut v: Vec<_> = r
            .flows
            .sorted_by_packets()
            .iter()
            .map(|(k, v)| (k.flow.sport, k.reason, v.packets))
            .collect();
        v.sort();
        v
    }

    fn row(r: &RunReport, k: ReasonKey) -> (u64, u64, u64, u64) {
        let row = r.ledger.rows.get(&k).cloned().unwrap_or_default();
        (row.delivered, row.received, row.skipped, row.processed)
    }

    #[test]
    fn every_event_is_counted_aggregated_and_written() {
        let (r, file) = run_on("all", None);
        assert_eq!(r.stopped_by, StopCause::SourceEnded);
        assert_eq!(row(&r, ReasonKey::Captured), (7, 7, 0, 7));
        assert_eq!(row(&r, ReasonKey::Kernel(3)), (5, 5, 0, 5));
        assert_eq!(
            flow_packets(&r),
            [
                (1000, ReasonKey::Captured, 7),
                (2000, ReasonKey::Kernel(3), 5)
            ]
        );
        let f = r.sinks.file.as_ref().unwrap();
        assert_eq!((f.packets, f.bytes), (12, 12 * 42));
        // Every enhanced packet block is in the file (type 6, little-endian).
        assert_eq!(count_epbs(&file), 12);
        assert!(r.ledger.mismatches(&|k| format!("{k:?}")).is_empty());
    }

    #[test]
    fn count_limit_processes_the_first_events_in_order() {
        let (r, file) = run_on("count", Some(5));
        assert_eq!(r.stopped_by, StopCause::Count);
        // The first five: three captured, two kernel; the other seven are skipped.
        assert_eq!(row(&r, ReasonKey::Captured), (7, 7, 4, 3));
        assert_eq!(row(&r, ReasonKey::Kernel(3)), (5, 5, 3, 2));
        assert_eq!(
            flow_packets(&r),
            [
                (1000, ReasonKey::Captured, 3),
                (2000, ReasonKey::Kernel(3), 2)
            ]
        );
        assert_eq!(r.sinks.file.as_ref().unwrap().packets, 5);
        assert_eq!(count_epbs(&file), 5);
        assert!(r.ledger.mismatches(&|k| format!("{k:?}")).is_empty());
    }

    #[test]
    fn printed_lines_carry_each_packets_decoded_flow() {
        let ((r, file), text) = run_printing("print", Some(6), PrintMode::Json);
        assert_eq!(r.sinks.file.as_ref().unwrap().packets, 6);
        assert_eq!(count_epbs(&file), 6);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        let ports: Vec<u64> = lines.iter().map(|v| v["sport"].as_u64().unwrap()).collect();
        assert_eq!(ports, [1000, 1000, 1000, 2000, 2000, 1000]);
        assert!(lines
            .iter()
            .all(|v| v["dport"] == 9 && v["src"] == "10.0.0.1"));
    }

    /// Enhanced packet blocks in a little-endian pcapng file.
    fn count_epbs(file: &[u8]) -> usize {
        let mut at = 0;
        let mut n = 0;
        while let Some(h) = file.get(at..at + 8) {
            let t = u32::from_le_bytes(h[..4].try_into().unwrap());
            let len = u32::from_le_bytes(h[4..].try_into().unwrap()) as usize;
            n += usize::from(t == 6);
            at += len.max(12);
        }
        n
    }
}
