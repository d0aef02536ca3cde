//! The pipeline: source -> decode -> sinks, as threads joined by bounded channels.
//!
//! ```text
//!  source thread --Batch--> decode thread --Decoded--> sink thread (aggregate, file, printer)
//! ```
//! Channels block when full: a slow sink slows the source, and for the kernel source that
//! pushes loss into the ring, where the kernel program counts it per reason. So no stage in
//! user space drops events; each still counts what it saw, and [`RunReport::ledger`] checks
//! that the counts agree. The sink stage stops the run after `-c COUNT` events; events still
//! in flight after that are counted as `skipped`.
//!
//! Must never: drop an event without counting it; allocate per event on the hot path
//! (batches are allocated, events are not).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::accounting::{Ledger, StageLoss};
use crate::aggregate::{AggKey, FlowTable, ReasonKey};
use crate::event::{Batch, Event};
use crate::packet::{summarize_into, PacketSummary, TunnelHint};
use crate::render::{Names, Renderer};
use crate::sink::{OutputSink, SinkStats};

/// What a source reports when it ends.
#[derive(Debug, Default)]
pub struct SourceReport {
    /// Human description, e.g. "tp_btf/kfree_skb" or "file capture.pcapng".
    pub description: String,
    /// Events the source handed to the pipeline, per reason.
    pub delivered: BTreeMap<ReasonKey, u64>,
    /// Per reason: (observed at the origin, lost before the source could read it). Only for
    /// origins that count (the kernel program).
    pub observed: Option<BTreeMap<ReasonKey, (u64, u64)>>,
    /// Losses that cannot be attributed to a reason.
    pub losses: Vec<StageLoss>,
    /// Extra lines for the summary (attach mode, reconnects, ...).
    pub notes: Vec<String>,
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
}

impl StopCause {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCause::SourceEnded => "source ended",
            StopCause::Count => "count reached",
            StopCause::Duration => "duration elapsed",
            StopCause::Interrupted => "interrupted",
        }
    }
}

/// A batch with the decode stage's result for each event.
struct Decoded {
    batch: Batch,
    summaries: Vec<PacketSummary>,
}

/// The aggregation key of one event.
pub fn agg_key(e: &Event, s: &PacketSummary) -> AggKey {
    let (reason, src_identity, dst_identity) = crate::render::reason_and_identities(e);
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
    let (raw_tx, raw_rx) = bounded::<Batch>(cfg.channel_depth);
    let (dec_tx, dec_rx) = bounded::<Decoded>(cfg.channel_depth);
    let hint = cfg.tunnel_hint;

    // Dropped by the source thread when it returns: wakes the main thread at once.
    let (done_tx, done_rx) = bounded::<()>(0);

    let result = std::thread::scope(|scope| -> Result<(SourceReport, SinkOutcome, StopCause)> {
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
            .spawn_scoped(scope, move || decode_stage(raw_rx, dec_tx, hint))
            .context("starting the decode thread")?;
        let count = cfg.count;
        let max_flows = cfg.max_flows;
        let cr = &count_reached;
        let snk = std::thread::Builder::new()
            .name("dropscope-sink".into())
            .spawn_scoped(scope, move || {
                sink_stage(
                    dec_rx, &mut sink, names, count, max_flows, stop_ref, cr, progress,
                )
                .and_then(|mut o| {
                    o.sink_stats = sink.finish()?;
                    Ok(o)
                })
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
        // If the source failed, the sink still finishes what it got (and the file is closed),
        // then the error is returned.
        let _ = dec.join();
        let outcome = snk
            .join()
            .map_err(|_| anyhow::anyhow!("the sink thread panicked"))??;
        if count_reached.load(Ordering::Relaxed) {
            stopped_by = StopCause::Count;
        }
        Ok((report?, outcome, stopped_by))
    })?;

    let (source_report, outcome, stopped_by) = result;
    let mut ledger = Ledger::default();
    for (k, n) in &source_report.delivered {
        ledger.row(*k).delivered = *n;
    }
    if let Some(obs) = &source_report.observed {
        for (k, (seen, lost)) in obs {
            let r = ledger.row(*k);
            r.observed = Some(*seen);
            r.lost_ring = *lost;
        }
    }
    for (k, c) in &outcome.per_reason {
        let r = ledger.row(*k);
        r.received = c.received;
        r.skipped = c.skipped;
        r.processed = c.processed;
    }
    for l in &source_report.losses {
        ledger.add_loss(&l.stage, &l.kind, l.count);
    }
    Ok(RunReport {
        source: source_report,
        ledger,
        flows: outcome.flows,
        sinks: outcome.sink_stats,
        elapsed: started.elapsed(),
        started_ns,
        stopped_by,
    })
}

fn decode_stage(rx: Receiver<Batch>, tx: Sender<Decoded>, hint: TunnelHint) {
    for batch in rx {
        let mut summaries = vec![PacketSummary::default(); batch.events.len()];
        for (e, s) in batch.events.iter().zip(summaries.iter_mut()) {
            summarize_into(&e.data, e.link, crate::render::tunnel_hint_for(e, hint), s);
        }
        if tx.send(Decoded { batch, summaries }).is_err() {
            // The sink stage ended early (an error): nothing more can be processed.
            return;
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct StageCounts {
    received: u64,
    skipped: u64,
    processed: u64,
}

#[derive(Debug)]
struct SinkOutcome {
    per_reason: BTreeMap<ReasonKey, StageCounts>,
    flows: FlowTable,
    sink_stats: SinkStats,
}

#[allow(clippy::too_many_arguments)]
fn sink_stage(
    rx: Receiver<Decoded>,
    sink: &mut OutputSink,
    names: &Names,
    count: Option<u64>,
    max_flows: usize,
    stop: &AtomicBool,
    count_reached: &AtomicBool,
    progress: &Progress,
) -> Result<SinkOutcome> {
    let mut per_reason: BTreeMap<ReasonKey, StageCounts> = BTreeMap::new();
    let mut flows = FlowTable::new(max_flows);
    let mut renderer = Renderer::new(names);
    let mut processed_total = 0u64;
    // The counts of the reason the last event had: consecutive events mostly share one, so
    // the map is updated once per run of a reason, not per event.
    let mut run: Option<(ReasonKey, StageCounts)> = None;
    let flush = |per_reason: &mut BTreeMap<ReasonKey, StageCounts>,
                 (k, c): (ReasonKey, StageCounts)| {
        let e = per_reason.entry(k).or_default();
        e.received += c.received;
        e.skipped += c.skipped;
        e.processed += c.processed;
    };
    for d in rx {
        let mut bytes = 0u64;
        let mut notices = d.batch.notices.iter().peekable();
        for (i, (e, s)) in d.batch.events.iter().zip(&d.summaries).enumerate() {
            if !d.batch.notices.is_empty() {
                while let Some((_, n)) = notices.next_if(|(at, _)| *at <= i) {
                    sink.write_notice(n, &mut renderer)?;
                }
            }
            let key = agg_key(e, s);
            let c = match &mut run {
                Some((k, c)) if *k == key.reason => c,
                _ => {
                    if let Some(prev) = run.take() {
                        flush(&mut per_reason, prev);
                    }
                    &mut run.insert((key.reason, StageCounts::default())).1
                }
            };
            c.received += 1;
            if count.is_some_and(|n| processed_total >= n) {
                c.skipped += 1;
                continue;
            }
            flows.add(&key, e.orig_len, e.ts_ns);
            sink.write(e, s, &mut renderer)?;
            c.processed += 1;
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
        let n = d.batch.events.len() as u64;
        progress.received.fetch_add(n, Ordering::Relaxed);
        progress.processed.store(processed_total, Ordering::Relaxed);
        progress.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    if let Some(last) = run {
        flush(&mut per_reason, last);
    }
    Ok(SinkOutcome {
        per_reason,
        flows,
        sink_stats: SinkStats::default(),
    })
}
