//! The replay source for text inputs: lines in, cleaned (colour codes, `\r`), through the
//! format's [`LineParser`], records out as pipeline events, in batches.
//!
//! A record without packet bytes gets a packet synthesised from the headers it names, so
//! the flow table keys it like any other; the event says so (`EventMeta::synthesized`) and
//! the file sink writes it only with `--synthesize`. Records without a time are stamped in
//! line order (1 µs apart from the epoch) and the summary says times are unknown.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use crossbeam_channel::Sender;

use super::{clean_line, Item, LineParser, Record, Skips};
use crate::accounting::StageLoss;
use crate::cilium::tables::CiliumRelease;
use crate::event::{Batch, Event, EventMeta, LinkType};
use crate::pipeline::{SourceFn, SourceReport};

/// The text formats `replay` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// `cilium monitor` / `cilium-dbg monitor` text, any verbosity.
    MonitorText,
    /// `cilium monitor -j`.
    MonitorJson,
    /// Hubble flows: `hubble observe -o json|jsonpb`, the exporter's `events.log`.
    Hubble,
    /// dropscope's own `--json` lines.
    OwnJson,
}

impl TextFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TextFormat::MonitorText => "cilium monitor text",
            TextFormat::MonitorJson => "cilium monitor JSON",
            TextFormat::Hubble => "Hubble flows",
            TextFormat::OwnJson => "dropscope JSON lines",
        }
    }

    /// `--input-format` names.
    pub fn from_name(s: &str) -> Option<TextFormat> {
        Some(match s {
            "monitor" | "monitor-text" => TextFormat::MonitorText,
            "monitor-json" => TextFormat::MonitorJson,
            "hubble" => TextFormat::Hubble,
            "json" | "dropscope-json" => TextFormat::OwnJson,
            _ => return None,
        })
    }

    fn parser(self, release: CiliumRelease) -> Box<dyn LineParser + Send> {
        match self {
            TextFormat::MonitorText => {
                Box::new(super::monitor_text::MonitorTextParser::new(release))
            }
            TextFormat::MonitorJson => {
                Box::new(super::monitor_json::MonitorJsonParser::new(release))
            }
            TextFormat::Hubble => Box::new(super::hubble::HubbleParser::new(release)),
            TextFormat::OwnJson => Box::new(super::own_json::OwnJsonParser::new()),
        }
    }
}

/// Lines looked at to tell the format.
const SNIFF_LINES: usize = 200;

/// The text format of an input that starts with `head`, if it is one: JSON kinds first (they
/// are unambiguous), then monitor text.
pub fn sniff(head: &[u8]) -> Option<TextFormat> {
    let text = String::from_utf8_lossy(head);
    let cleaned: Vec<String> = text
        .lines()
        .map(|l| clean_line(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .take(SNIFF_LINES)
        .collect();
    let lines: Vec<&str> = cleaned.iter().map(String::as_str).collect();
    if lines.is_empty() {
        return None;
    }
    if super::hubble::looks_like_hubble(&lines) {
        Some(TextFormat::Hubble)
    } else if super::own_json::looks_like_own_json(&lines) {
        Some(TextFormat::OwnJson)
    } else if super::monitor_json::looks_like_monitor_json(&lines) {
        Some(TextFormat::MonitorJson)
    } else if super::monitor_text::looks_like_monitor_text(&lines) {
        Some(TextFormat::MonitorText)
    } else {
        None
    }
}

/// Counters of one text replay, for the summary.
#[derive(Debug, Default)]
struct Counts {
    records: u64,
    synthesized: u64,
    no_headers: u64,
    untimed: u64,
}

/// Events a text batch holds at most.
const BATCH_EVENTS: usize = 1024;

/// Turns a record into an event (`seq`: its position, the time when the input has none).
fn event_of(r: Record, seq: u64, counts: &mut Counts) -> Event {
    let mut synthesized = false;
    let (data, link) = match r.packet {
        Some(p) => (Bytes::from(p), r.link),
        None => match r
            .headers
            .as_ref()
            .and_then(|h| super::synth::synthesize(h, r.orig_len))
        {
            Some((p, link)) => {
                synthesized = true;
                counts.synthesized += 1;
                (Bytes::from(p), link)
            }
            None => {
                counts.no_headers += 1;
                (Bytes::new(), r.link)
            }
        },
    };
    let ts_ns = match r.ts_ns {
        Some(t) => t,
        None => {
            counts.untimed += 1;
            seq.saturating_mul(1_000)
        }
    };
    let orig_len = if r.orig_len > 0 {
        r.orig_len
    } else {
        data.len() as u32
    };
    let meta = (synthesized || r.names.is_some()).then(|| {
        Arc::new(EventMeta {
            names: r.names,
            synthesized,
        })
    });
    Event {
        ts_ns,
        ifindex: r.ifindex,
        netns: r.netns,
        cpu: r.cpu.unwrap_or(u32::MAX),
        orig_len,
        link: if data.is_empty() {
            LinkType::Ethernet
        } else {
            link
        },
        data,
        cause: r.cause,
        meta,
    }
}

/// A source reading `reader` as `format` to its end (or until stopped).
pub fn text_source(
    reader: Box<dyn BufRead + Send>,
    format: TextFormat,
    release: CiliumRelease,
    description: String,
) -> SourceFn<'static> {
    let mut reader = reader;
    Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let mut parser = format.parser(release);
            let mut skips = Skips::default();
            let mut items: Vec<Item> = Vec::new();
            let mut counts = Counts::default();
            let mut report = SourceReport {
                description: format!("{} {description}", format.as_str()),
                ..Default::default()
            };
            let mut batch = Batch::with_capacity(BATCH_EVENTS);
            let mut raw = Vec::with_capacity(4096);
            let mut lines = 0u64;
            let mut invalid_utf8 = 0u64;
            let mut done = false;
            while !done {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                raw.clear();
                let n = reader
                    .read_until(b'\n', &mut raw)
                    .with_context(|| format!("reading {description}"))?;
                if n == 0 {
                    parser.finish(&mut items, &mut skips);
                    done = true;
                } else {
                    lines += 1;
                    while raw.last().is_some_and(|b| *b == b'\n') {
                        raw.pop();
                    }
                    let text = match std::str::from_utf8(&raw) {
                        Ok(t) => std::borrow::Cow::Borrowed(t),
                        Err(_) => {
                            invalid_utf8 += 1;
                            String::from_utf8_lossy(&raw)
                        }
                    };
                    let line = clean_line(&text);
                    parser.line(&line, &mut items, &mut skips);
                }
                for item in items.drain(..) {
                    match item {
                        Item::Record(r) => {
                            counts.records += 1;
                            let e = event_of(r, counts.records, &mut counts);
                            let (reason, _, _) = crate::render::reason_and_identities(&e);
                            *report.delivered.entry(reason).or_insert(0) += 1;
                            batch.events.push(e);
                        }
                        Item::Notice(n) => batch.notices.push((batch.events.len(), n)),
                    }
                }
                if batch.events.len() >= BATCH_EVENTS {
                    let full = std::mem::replace(&mut batch, Batch::with_capacity(BATCH_EVENTS));
                    if tx.send(full).is_err() {
                        break;
                    }
                }
            }
            // What is gathered goes on, also when stopped: it is counted as delivered.
            if !(batch.events.is_empty() && batch.notices.is_empty()) {
                let _ = tx.send(batch);
            }
            for (kind, count) in &skips.0 {
                report.losses.push(StageLoss {
                    stage: "text".into(),
                    kind: format!("skipped_{kind}"),
                    count: *count,
                });
            }
            report.notes.push(format!(
                "{}: {lines} lines, {} records, {} lines skipped{}",
                format.as_str(),
                counts.records,
                skips.total(),
                if invalid_utf8 > 0 {
                    format!(" ({invalid_utf8} not UTF-8, read lossily)")
                } else {
                    String::new()
                }
            ));
            if counts.synthesized > 0 || counts.no_headers > 0 {
                report.notes.push(format!(
                    "{} records had no packet bytes: {} keyed by the headers the input names (packets written to a file only with --synthesize, marked as synthesised), {} without headers (flow table by reason only)",
                    counts.synthesized + counts.no_headers,
                    counts.synthesized,
                    counts.no_headers
                ));
            }
            if counts.untimed > 0 {
                report.notes.push(format!(
                    "{} records have no time in the input: they are stamped in line order, 1 µs apart from 1970-01-01",
                    counts.untimed
                ));
            }
            Ok(report)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!(TextFormat::from_name("hubble"), Some(TextFormat::Hubble));
        assert_eq!(
            TextFormat::from_name("monitor"),
            Some(TextFormat::MonitorText)
        );
        assert_eq!(TextFormat::from_name("pcap"), None);
        assert_eq!(sniff(b"\n\n"), None);
    }
}
