//! The replay source for text inputs: lines in, cleaned (colour codes, `\r`), through the
//! format's [`LineParser`], records out as pipeline events, in batches.
//!
//! A record without packet bytes gets a packet synthesised from the headers it names, so
//! the flow table keys it like any other; the event says so (`EventMeta::synthesized`) and
//! the file sink writes it only with `--synthesize`. Records without a time are stamped in
//! line order (1 µs apart from the epoch) and the summary says times are unknown.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use crossbeam_channel::Sender;

use super::{clean_line, Item, LineParser, Record, Skips};
use crate::accounting::{LossKind, Stage, StageLoss};
use crate::aggregate::ReasonKey;
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
    lines: u64,
    invalid_utf8: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.synthesized += o.synthesized;
        self.no_headers += o.no_headers;
        self.untimed += o.untimed;
        self.lines += o.lines;
        self.invalid_utf8 += o.invalid_utf8;
    }
}

/// Bytes a chunk of input holds at least (it ends at a line end, see [`split_point`]).
const CHUNK_BYTES: usize = 256 << 10;

/// Turns a record into an event. A record without a time gets 0 here and is counted: its
/// time in line order is set once the chunk's place in the input is known.
fn event_of(r: Record, counts: &mut Counts) -> Event {
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
    let ts_ns = r.ts_ns.unwrap_or_else(|| {
        counts.untimed += 1;
        0
    });
    let orig_len = if r.orig_len > 0 {
        r.orig_len
    } else {
        data.len() as u32
    };
    let meta = match r.meta {
        Some(mut m) => {
            if synthesized {
                Arc::make_mut(&mut m).synthesized = true;
            }
            Some(m)
        }
        None => synthesized.then(|| {
            Arc::new(EventMeta {
                synthesized,
                ..EventMeta::default()
            })
        }),
    };
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

/// What one chunk of lines gave: its events (in input order, notices placed among them),
/// the positions of events without a time of their own (stamped when the chunk's place in
/// the input is known), skips, counts and events per reason.
struct Parsed {
    batch: Batch,
    untimed: Vec<usize>,
    skips: Skips,
    counts: Counts,
    delivered: BTreeMap<ReasonKey, u64>,
}

/// Feeds the lines of `chunk` to `parser` (without finishing it, unless `last`). What each
/// line gives becomes events at once, while its record is still in cache (collecting a
/// chunk's records first and converting them after moved every record out of cache and
/// back). `hint` is the number of events the worker's last chunk gave: the batch gets room
/// for a few more (one more than its room would double the vector and copy it).
fn parse_chunk(
    parser: &mut dyn LineParser,
    chunk: &[u8],
    last: bool,
    items: &mut Vec<Item>,
    hint: &mut usize,
) -> Parsed {
    items.clear();
    let mut out = Collect {
        parsed: Parsed {
            batch: Batch::with_capacity(*hint + *hint / 8 + 8),
            untimed: Vec::new(),
            skips: Skips::default(),
            counts: Counts::default(),
            delivered: BTreeMap::new(),
        },
        run: None,
    };
    // One UTF-8 check for the chunk (SIMD: a third of std's instructions per byte here); per
    // line only when it fails.
    let whole = simdutf8::basic::from_utf8(chunk).ok();
    // One look for escape sequences too: without any, cleaning a line only drops its `\r`.
    let escapes = memchr::memchr(0x1b, chunk).is_some();
    let mut rest = chunk;
    while !rest.is_empty() {
        let (raw, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (
                rest.get(..i).unwrap_or(rest),
                rest.get(i + 1..).unwrap_or(&[]),
            ),
            None => (rest, &[][..]),
        };
        rest = next;
        let p = &mut out.parsed;
        p.counts.lines += 1;
        let text = match whole {
            // The chunk is valid UTF-8 and a '\n' is a character boundary.
            Some(w) => {
                let at = raw.as_ptr() as usize - chunk.as_ptr() as usize;
                std::borrow::Cow::Borrowed(&w[at..at + raw.len()])
            }
            None => match std::str::from_utf8(raw) {
                Ok(t) => std::borrow::Cow::Borrowed(t),
                Err(_) => {
                    p.counts.invalid_utf8 += 1;
                    String::from_utf8_lossy(raw)
                }
            },
        };
        if escapes {
            parser.line(&clean_line(&text), items, &mut p.skips);
        } else {
            parser.line(
                text.strip_suffix('\r').unwrap_or(&text),
                items,
                &mut p.skips,
            );
        }
        if !items.is_empty() {
            out.take(items);
        }
    }
    if last {
        parser.finish(items, &mut out.parsed.skips);
        out.take(items);
    }
    let mut parsed = out.parsed;
    if let Some((k, n)) = out.run {
        *parsed.delivered.entry(k).or_insert(0) += n;
    }
    *hint = parsed.batch.events.len();
    parsed
}

/// A chunk's events as its lines give them, and its events per reason: counted a run of
/// one reason at a time (neighbours mostly share one).
struct Collect {
    parsed: Parsed,
    run: Option<(ReasonKey, u64)>,
}

impl Collect {
    /// Makes `items` (what the last line gave) into events and notices.
    fn take(&mut self, items: &mut Vec<Item>) {
        let p = &mut self.parsed;
        for item in items.drain(..) {
            match item {
                Item::Record(r) => {
                    if r.ts_ns.is_none() {
                        p.untimed.push(p.batch.events.len());
                    }
                    p.counts.records += 1;
                    let e = event_of(r, &mut p.counts);
                    let (reason, _, _) = crate::aggregate::reason_and_identities(&e);
                    match &mut self.run {
                        Some((k, n)) if *k == reason => *n += 1,
                        _ => {
                            if let Some((k, n)) = self.run.replace((reason, 1)) {
                                *p.delivered.entry(k).or_insert(0) += n;
                            }
                        }
                    }
                    p.batch.events.push(e);
                }
                Item::Notice(n) => p.batch.notices.push((p.batch.events.len(), n)),
            }
        }
    }
}

/// Where to end a chunk within `buf` (a line end), preferring, within the last eighth of it,
/// the end of a monitor separator line (`-----…`): a monitor parser is idle after one, so
/// the next chunk parses the same alone as after this one (see [`LineParser::is_idle`]).
fn split_point(buf: &[u8]) -> Option<usize> {
    let last_nl = memchr::memrchr(b'\n', buf)?;
    let floor = buf.len() - buf.len() / 8;
    let mut end = last_nl;
    while end > floor {
        let Some(prev) = memchr::memrchr(b'\n', buf.get(..end).unwrap_or(&[])) else {
            break;
        };
        let line = buf.get(prev + 1..end).unwrap_or(&[]);
        if line.len() >= 10 && line.iter().all(|b| *b == b'-') {
            return Some(end + 1);
        }
        end = prev;
    }
    Some(last_nl + 1)
}

/// A chunk of input: its place, its bytes (whole lines: `bytes[..len]`), and whether it is
/// the last. `bytes` past `len` is spare room already written once: a recycled buffer is
/// read into again without being zeroed first.
struct Chunk {
    index: usize,
    bytes: Vec<u8>,
    len: usize,
    last: bool,
}

impl Chunk {
    fn text(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }
}

/// Reads `reader` in chunks of whole lines onto `work`, until its end or a stop.
fn read_chunks(
    reader: &mut dyn BufRead,
    chunk_bytes: usize,
    work: &crossbeam_channel::Sender<Chunk>,
    spent: &crossbeam_channel::Receiver<Vec<u8>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut index = 0;
    // The start of the next chunk: the part line the last chunk ended with.
    let mut carry: Vec<u8> = Vec::new();
    // A buffer whose `filled` bytes hold a line longer than a chunk: read on past it.
    let mut long: Option<(Vec<u8>, usize)> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (mut buf, mut filled, want) = match long.take() {
            Some((buf, filled)) => (buf, filled, filled + chunk_bytes),
            None => {
                // A spent chunk's buffer when there is one: fresh memory costs page faults,
                // and its length is memory already written, which the reads below reuse.
                let mut buf = spent.try_recv().unwrap_or_default();
                if buf.len() < carry.len() {
                    buf.resize(carry.len(), 0);
                }
                if let Some(head) = buf.get_mut(..carry.len()) {
                    head.copy_from_slice(&carry);
                }
                let filled = carry.len();
                carry.clear();
                (buf, filled, chunk_bytes)
            }
        };
        let mut eof = false;
        while filled < want {
            // Straight into the chunk (a BufReader with nothing buffered passes a read this
            // large through): one copy from the kernel, not two. Only room never written
            // before is zeroed.
            let room = filled.max(want) + chunk_bytes / 8;
            if buf.len() < room {
                buf.resize(room, 0);
            }
            let got = match reader.read(buf.get_mut(filled..).unwrap_or(&mut [])) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if got == 0 {
                eof = true;
                break;
            }
            filled += got;
        }
        let mut len = filled;
        if !eof {
            match split_point(buf.get(..filled).unwrap_or(&[])) {
                Some(cut) => {
                    carry.extend_from_slice(buf.get(cut..filled).unwrap_or(&[]));
                    len = cut;
                }
                // No line end in a whole chunk: keep reading (one long line).
                None => {
                    long = Some((buf, filled));
                    continue;
                }
            }
        }
        let chunk = Chunk {
            index,
            bytes: buf,
            len,
            last: eof,
        };
        index += 1;
        if work.send(chunk).is_err() || eof {
            return Ok(());
        }
    }
}

/// A source reading `reader` as `format` to its end (or until stopped).
///
/// The input is cut into chunks of whole lines that worker threads parse at once, each
/// with a fresh parser; chunks are put back in input order before they go on. A chunk's
/// result stands when the parser of the chunk before it ended idle (between records), and
/// is otherwise parsed again in order with that parser, so the records are those of one
/// parser reading the input from start to end.
pub fn text_source(
    reader: Box<dyn BufRead + Send>,
    format: TextFormat,
    release: CiliumRelease,
    description: String,
) -> SourceFn<'static> {
    text_source_chunked(reader, format, release, description, CHUNK_BYTES)
}

fn text_source_chunked(
    reader: Box<dyn BufRead + Send>,
    format: TextFormat,
    release: CiliumRelease,
    description: String,
    chunk_bytes: usize,
) -> SourceFn<'static> {
    let mut reader = reader;
    Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let workers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 8);
            let mut report = SourceReport {
                description: format!("{} {description}", format.as_str()),
                ..Default::default()
            };
            let mut skips = Skips::default();
            let mut counts = Counts::default();
            let (work_tx, work_rx) = crossbeam_channel::bounded::<Chunk>(workers * 2);
            // A worker's parser travels with its chunk only when it ended inside a record.
            type Done = (Chunk, Parsed, Option<Box<dyn LineParser + Send>>);
            let (done_tx, done_rx) = crossbeam_channel::bounded::<Done>(workers * 2);
            let (spent_tx, spent_rx) = crossbeam_channel::bounded::<Vec<u8>>(workers * 4);
            let read_result = std::thread::scope(|scope| {
                let reading = std::thread::Builder::new()
                    .name("dropscope-text-read".into())
                    .spawn_scoped(scope, move || {
                        read_chunks(&mut *reader, chunk_bytes, &work_tx, &spent_rx, stop)
                    })
                    .context("starting the text reader thread")?;
                for i in 0..workers {
                    let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
                    std::thread::Builder::new()
                        .name(format!("dropscope-text-{i}"))
                        .spawn_scoped(scope, move || {
                            let mut parser = format.parser(release);
                            let (mut items, mut hint) = (Vec::new(), 0);
                            for chunk in work_rx.iter() {
                                let parsed = parse_chunk(
                                    &mut *parser,
                                    chunk.text(),
                                    chunk.last,
                                    &mut items,
                                    &mut hint,
                                );
                                let open = (!parser.is_idle()).then(|| {
                                    std::mem::replace(&mut parser, format.parser(release))
                                });
                                if done_tx.send((chunk, parsed, open)).is_err() {
                                    break;
                                }
                            }
                        })
                        .context("starting a text parser thread")?;
                }
                drop((work_rx, done_tx));
                // In order: chunks that came early wait in `early`. `open` is the parser of
                // the chunk before when it ended inside a record.
                let mut early = std::collections::HashMap::new();
                let mut next = 0usize;
                let mut open: Option<Box<dyn LineParser + Send>> = None;
                let (mut items, mut hint) = (Vec::new(), 0);
                let mut downstream_gone = false;
                for got in done_rx.iter() {
                    early.insert(got.0.index, got);
                    while let Some((chunk, parsed, chunk_open)) = early.remove(&next) {
                        next += 1;
                        if downstream_gone || stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let mut parsed = match open.take() {
                            Some(mut before) => {
                                let again = parse_chunk(
                                    &mut *before,
                                    chunk.text(),
                                    chunk.last,
                                    &mut items,
                                    &mut hint,
                                );
                                open = (!before.is_idle()).then_some(before);
                                again
                            }
                            None => {
                                open = chunk_open;
                                parsed
                            }
                        };
                        let _ = spent_tx.try_send(chunk.bytes);
                        // Times in line order for records without one (1-based, as before).
                        for i in &parsed.untimed {
                            if let Some(e) = parsed.batch.events.get_mut(*i) {
                                e.ts_ns = (counts.records + *i as u64 + 1).saturating_mul(1_000);
                            }
                        }
                        counts.add(&parsed.counts);
                        for (k, n) in parsed.skips.0 {
                            *skips.0.entry(k).or_insert(0) += n;
                        }
                        for (k, n) in parsed.delivered {
                            *report.delivered.entry(k).or_insert(0) += n;
                        }
                        let b = parsed.batch;
                        if !(b.events.is_empty() && b.notices.is_empty()) && tx.send(b).is_err() {
                            downstream_gone = true;
                        }
                    }
                    if downstream_gone {
                        // Stop the reader: it sees the stop flag or a closed work queue.
                        break;
                    }
                }
                drop(done_rx);
                reading
                    .join()
                    .map_err(|_| anyhow::anyhow!("the text reader thread panicked"))
            })?;
            read_result.with_context(|| format!("reading {description}"))?;
            for (kind, count) in &skips.0 {
                report.losses.push(StageLoss::new(
                    Stage::Text,
                    LossKind::SkippedLines(kind),
                    *count,
                ));
            }
            report.notes.push(format!(
                "{}: {} lines, {} records, {} lines skipped{}",
                format.as_str(),
                counts.lines,
                counts.records,
                skips.total(),
                if counts.invalid_utf8 > 0 {
                    format!(" ({} not UTF-8, read lossily)", counts.invalid_utf8)
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
    use crate::event::Notice;

    /// The whole input through one parser, line by line: what chunked reading must equal.
    fn one_parser(format: TextFormat, text: &str) -> (Vec<Event>, Vec<Notice>, Skips) {
        let mut parser = format.parser(CiliumRelease::default());
        let (mut items, mut skips) = (Vec::new(), Skips::default());
        for l in text.split_inclusive('\n') {
            let l = l.strip_suffix('\n').unwrap_or(l);
            parser.line(&clean_line(l), &mut items, &mut skips);
        }
        parser.finish(&mut items, &mut skips);
        let (mut events, mut notices, mut counts) = (Vec::new(), Vec::new(), Counts::default());
        for item in items {
            match item {
                Item::Record(r) => {
                    counts.records += 1;
                    let untimed = r.ts_ns.is_none();
                    let mut e = event_of(r, &mut counts);
                    if untimed {
                        // Line order, 1 µs apart, 1-based (as the source stamps them).
                        e.ts_ns = counts.records * 1_000;
                    }
                    events.push(e);
                }
                Item::Notice(n) => notices.push(n),
            }
        }
        (events, notices, skips)
    }

    fn chunked(
        format: TextFormat,
        text: &str,
        chunk_bytes: usize,
    ) -> (Vec<Event>, Vec<Notice>, SourceReport) {
        let source = text_source_chunked(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            format,
            CiliumRelease::default(),
            "test".into(),
            chunk_bytes,
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let report = source(&tx, &AtomicBool::new(false)).expect("text source");
        drop(tx);
        let (mut events, mut notices) = (Vec::new(), Vec::new());
        for b in rx.iter() {
            events.extend(b.events);
            notices.extend(b.notices.into_iter().map(|(_, n)| n));
        }
        (events, notices, report)
    }

    /// Chunks parsed apart on worker threads give exactly what one parser gives: chunks
    /// small enough to end inside records (then parsed again in order) and between them,
    /// ticket pastes with wrapped, cut and coloured lines, and Hubble lines.
    #[test]
    fn chunks_read_as_one_parser() {
        let (vv, _, _) = crate::ingest::monitor_text::tests::paste(true);
        let (info, _, _) = crate::ingest::monitor_text::tests::paste(false);
        let hubble = [
            include_str!("../../../testdata/hubble/printer-jsonpb.jsonl"),
            include_str!("../../../testdata/hubble/export-doc.jsonl"),
        ]
        .concat()
        .repeat(100);
        for (format, text) in [
            (TextFormat::MonitorText, &vv),
            (TextFormat::MonitorText, &info),
            (TextFormat::Hubble, &hubble),
        ] {
            let (events, notices, skips) = one_parser(format, text);
            assert!(events.len() > 100, "{format:?}: {} records", events.len());
            for chunk_bytes in [300, 4096, CHUNK_BYTES] {
                let (got, got_notices, report) = chunked(format, text, chunk_bytes);
                assert_eq!(
                    got.len(),
                    events.len(),
                    "{format:?} chunks of {chunk_bytes}"
                );
                for (i, (a, b)) in got.iter().zip(&events).enumerate() {
                    assert_eq!(a, b, "{format:?} chunks of {chunk_bytes}: record {i}");
                }
                assert_eq!(got_notices, notices, "{format:?} chunks of {chunk_bytes}");
                let got_skips: Vec<(String, u64)> = report
                    .losses
                    .iter()
                    .map(|l| (l.kind.name().into_owned(), l.count))
                    .collect();
                let want_skips: Vec<(String, u64)> = skips
                    .0
                    .iter()
                    .map(|(k, n)| (format!("skipped_{k}"), *n))
                    .collect();
                assert_eq!(got_skips, want_skips, "{format:?} chunks of {chunk_bytes}");
                let delivered: u64 = report.delivered.values().sum();
                assert_eq!(delivered, events.len() as u64);
                let lines = text.split_inclusive('\n').count();
                assert!(
                    report.notes[0].contains(&format!(" {lines} lines, {} records", events.len())),
                    "{}",
                    report.notes[0]
                );
            }
        }
    }

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
