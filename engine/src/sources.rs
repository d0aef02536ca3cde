//! The sources the CLI can run, each wrapped as a [`SourceFn`] that reports what it
//! delivered and what it lost, per reason, to the pipeline's ledger.
//!
//! Must never: let a source error pass silently (it ends the run with a one-line message) or
//! report a count it did not take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use crossbeam_channel::Sender;

use crate::accounting::StageLoss;
use crate::aggregate::ReasonKey;
use crate::event::{Batch, Cause};
use crate::kernel::loader::{AttachMode, LoadOptions};
use crate::kernel::source::KernelSource;
use crate::pcap::FileSource;
use crate::pipeline::{SourceFn, SourceReport};

pub struct KernelOptions {
    pub snaplen: u32,
    pub ring_bytes: u32,
}

fn loss(stage: &str, kind: &str, count: u64) -> StageLoss {
    StageLoss {
        stage: stage.into(),
        kind: kind.into(),
        count,
    }
}

/// Loads and attaches the kernel program now (so privilege and verifier errors surface
/// before anything else starts); the returned source reads its ring until stopped.
pub fn kernel(o: &KernelOptions) -> Result<SourceFn<'static>> {
    let mut src = KernelSource::open(&LoadOptions {
        snaplen: o.snaplen,
        ring_bytes: o.ring_bytes,
        attach: AttachMode::Auto,
    })?;
    let mode = src.mode();
    Ok(Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let stats = src
                .run(tx, stop, 256)
                .context("reading the kernel ring buffer")?;
            let counters = src
                .kernel_counters()
                .context("reading the kernel program's counters")?;
            let mut report = SourceReport {
                description: mode.as_str().to_string(),
                ..Default::default()
            };
            for (r, n) in &stats.delivered {
                report.delivered.insert(ReasonKey::Kernel(*r), *n);
            }
            let mut observed = BTreeMap::new();
            for (r, c) in &counters.per_reason {
                observed.insert(ReasonKey::Kernel(*r), (c.seen, c.ring_full));
            }
            // Reasons that found no slot in the kernel's per-reason map are only in the totals.
            report.observed = Some(observed);
            let m = stats.malformed;
            report
                .losses
                .push(loss("source", "malformed_too_short", m.too_short));
            report
                .losses
                .push(loss("source", "malformed_bad_version", m.bad_version));
            report
                .losses
                .push(loss("source", "malformed_bad_kind", m.bad_kind));
            report
                .losses
                .push(loss("source", "malformed_bad_header_len", m.bad_header_len));
            report
                .losses
                .push(loss("kernel", "reason_map_full", counters.reason_map_full));
            report.notes.push(format!(
                "kernel: {} drops seen, {} lost in the ring, {} without packet bytes (unreadable)",
                counters.seen, counters.ring_full, counters.read_failed
            ));
            report.losses.retain(|l| l.count > 0);
            Ok(report)
        },
    ))
}

/// Replays a capture file (pcap or pcapng).
pub fn file(
    path: &Path,
    input_format: Option<&str>,
    _cilium_release: Option<&str>,
) -> Result<SourceFn<'static>> {
    if let Some(f) = input_format {
        if f != "pcap" && f != "pcapng" {
            anyhow::bail!("--input-format {f} is not known: use pcap or pcapng");
        }
    }
    let mut src = FileSource::open(path)?;
    let description = format!("file {}", path.display());
    Ok(Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let mut report = SourceReport {
                description,
                ..Default::default()
            };
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut batch = Batch::with_capacity(1024);
                let n = src.next_batch(&mut batch, 1024)?;
                if n == 0 {
                    break;
                }
                for e in &batch.events {
                    let k = match e.cause {
                        Cause::Kernel { reason, .. } => ReasonKey::Kernel(reason),
                        _ => crate::render::reason_and_identities(e).0,
                    };
                    *report.delivered.entry(k).or_default() += 1;
                }
                if tx.send(batch).is_err() {
                    break;
                }
            }
            for (kind, n) in src.stats().skipped() {
                report.losses.push(loss("file", kind, n));
            }
            report.losses.retain(|l| l.count > 0);
            Ok(report)
        },
    ))
}

pub struct CiliumSocketOptions {
    pub path: PathBuf,
    pub save_stream: Option<PathBuf>,
    pub release: String,
}

/// Placeholder until the Cilium socket source is merged.
pub fn cilium_socket(_o: &CiliumSocketOptions) -> Result<SourceFn<'static>> {
    anyhow::bail!("the Cilium socket source is not built yet")
}

/// `dropscope reasons`: the running kernel's drop reasons (from BTF) and Cilium's.
pub fn reasons_table(kernel_only: bool, cilium_only: bool, json: bool) -> Result<String> {
    use std::fmt::Write as _;
    let k = crate::kernel::reasons::KernelReasons::load();
    let mut out = String::new();
    if json {
        let mut rows = Vec::new();
        if !cilium_only {
            for (v, n) in k.iter() {
                rows.push(serde_json::json!({"origin": "kernel", "code": v, "name": n, "source": k.source()}));
            }
        }
        out = serde_json::to_string_pretty(&rows)?;
        out.push('\n');
        return Ok(out);
    }
    if !cilium_only {
        let _ = writeln!(
            out,
            "kernel drop reasons (enum skb_drop_reason, from {}):",
            k.source()
        );
        for (v, n) in k.iter() {
            let _ = writeln!(out, "  {v:>10}  {n}");
        }
    }
    let _ = kernel_only;
    Ok(out)
}
