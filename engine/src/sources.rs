//! The sources the CLI can run, each wrapped as a [`SourceFn`] that reports what it
//! delivered and what it lost, per reason, to the pipeline's ledger.
//!
//! Must never: let a source error pass silently (it ends the run with a one-line message) or
//! report a count it did not take.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use crossbeam_channel::Sender;

use crate::accounting::{LossKind, Stage, StageLoss};
use crate::aggregate::ReasonKey;
use crate::cilium_socket::MessageSink as _;
use crate::event::{Batch, Cause};
use crate::kernel::loader::{AttachMode, LoadOptions};
use crate::kernel::source::KernelSource;
use crate::pcap::FileSource;
use crate::pipeline::{Observed, SourceFn, SourceReport};

pub struct KernelOptions {
    pub snaplen: u32,
    /// Bytes of each CPU's ring.
    pub ring_bytes_per_cpu: u64,
    /// Entries of each kernel flow table generation.
    pub kernel_flows: u32,
    /// Copies per flow x reason key and second; `None`: every drop.
    pub exemplars: Option<u32>,
    pub auto_storm: bool,
    /// Rows of the user-space copy of the kernel table (`--max-flows`).
    pub max_rows: usize,
    /// Selectors and the translated expression, run in the kernel.
    pub select: crate::kernel::loader::KernelSelect,
    /// `--pod`, `--namespace`, `--label`: the kernel program checks the selected pods'
    /// namespaces, interfaces and addresses, kept up to date as pods appear.
    pub pods: Option<(crate::pods::PodSelector, Arc<crate::pods::PodNames>)>,
    /// `--packets`: the interfaces whose every packet is captured too.
    pub packets: Vec<crate::kernel::packets::PacketIface>,
    pub tc_mode: crate::kernel::packets::TcMode,
    /// A live view (`dropscope top`): the kernel table's generations and counters go to it
    /// as they are drained, and no profile is kept for the summary.
    pub tap: Option<Arc<crate::live::LiveTap>>,
    /// The kernel program decides the whole selection (nothing of it runs in user space):
    /// the live view may count kernel drops from the kernel table.
    pub tap_from_table: bool,
}

/// Adds the pods that appear later to the kernel program's selection, after every refresh
/// of `names` (entries are never removed: names only grow). Keys that do not fit are said
/// once, as the names' warnings are.
fn keep_pods_selected(
    map: aya::maps::HashMap<aya::maps::MapData, capture_common::PodKey, u8>,
    sel: crate::pods::PodSelector,
    names: &Arc<crate::pods::PodNames>,
) {
    let host = names.host_netns();
    let state = std::sync::Mutex::new((map, BTreeSet::new()));
    let weak = Arc::downgrade(names);
    let sync = move |snap: &crate::pods::Snapshot| {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let (map, added) = &mut *st;
        let new: Vec<_> = sel
            .kernel_keys(snap, host)
            .into_iter()
            .filter(|k| !added.contains(k))
            .collect();
        if new.is_empty() {
            return;
        }
        let refused = crate::kernel::loader::add_pod_keys(map, &new);
        added.extend(new.iter().copied());
        if refused > 0 {
            if let Some(n) = weak.upgrade() {
                n.report(format!(
                    "kernel pod selection: {refused} namespaces, interfaces or addresses of selected pods did not fit (at most {}): drops there are not captured; select fewer pods",
                    capture_common::POD_SELECT_ENTRIES
                ));
            }
        }
    };
    // Once now: a refresh may have come between the load's keys and this hook.
    sync(&names.snapshot());
    names.on_refresh(Box::new(sync));
}

fn loss(stage: Stage, kind: LossKind, count: u64) -> StageLoss {
    StageLoss::new(stage, kind, count)
}

/// Loads and attaches the kernel program now (so privilege and verifier errors surface
/// before anything else starts); the returned source reads its ring until stopped. Also
/// returns why the filter expression does not run in the kernel, when the verifier refused
/// its translation (the caller then runs it in user space).
pub fn kernel(o: &KernelOptions) -> Result<(SourceFn<'static>, Option<String>, Vec<String>)> {
    let mut select = o.select.clone();
    if let Some((sel, names)) = &o.pods {
        let keys = sel.kernel_keys(&names.snapshot(), names.host_netns());
        select.pods = Some(keys.into_iter().collect());
    }
    let mut src = KernelSource::open(
        &LoadOptions {
            snaplen: o.snaplen,
            ring_bytes_per_cpu: o.ring_bytes_per_cpu,
            attach: AttachMode::Auto,
            kernel_flows: o.kernel_flows,
            exemplars: o.exemplars,
            auto_storm: o.auto_storm,
            select,
            packets: o.packets.clone(),
            tc_mode: o.tc_mode,
            ..LoadOptions::default()
        },
        o.max_rows,
    )?;
    let mut notices = Vec::new();
    if let Some(links) = src.packet_links() {
        notices.extend(links.cleaned.iter().cloned());
        let names: Vec<String> = o.packets.iter().map(|i| i.label()).collect();
        notices.push(match links.mode {
            crate::kernel::packets::TcMode::Clsact => format!(
                "capturing every packet on {} (tc clsact filters, removed at exit; after a kill -9 the next --packets run on the interface removes them)",
                names.join(", ")
            ),
            _ => format!(
                "capturing every packet on {} (tcx links, removed at exit, also when the process is killed)",
                names.join(", ")
            ),
        });
    }
    let packet_keys = src.packet_keys().to_vec();
    if let Some((sel, names)) = &o.pods {
        keep_pods_selected(src.take_pod_map()?, sel.clone(), names);
    }
    let mode = src.mode();
    let refused = src.filter_fallback().map(str::to_string);
    let tap_live = o.tap.is_some();
    if let Some(tap) = &o.tap {
        let from_table = o.tap_from_table && refused.is_none();
        let t = tap.clone();
        let gauges = src.live(Box::new(move |g| {
            if from_table {
                t.kernel_generation(g)
            } else {
                t.kernel_counters(g.reasons)
            }
        }));
        tap.kernel_source(gauges, from_table);
    }
    Ok((
        Box::new(
            move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
                let stats = src.run(tx, stop, 256).context("reading the kernel rings")?;
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
                let profile = src.take_profile();
                let in_table = profile.flows.per_reason();
                let mut observed = BTreeMap::new();
                for (r, c) in &counters.per_reason {
                    observed.insert(
                        ReasonKey::Kernel(*r),
                        Observed {
                            seen: c.seen,
                            lost_ring: c.ring_full,
                            not_copied: c.not_copied,
                            table_full: c.table_full,
                            filtered: c.filtered,
                            in_table: Some(in_table.get(r).copied().unwrap_or(0)),
                        },
                    );
                }
                // Drops the table counted under a reason the per-reason counters have no row for
                // (their map full) still show, as a mismatch.
                for (r, n) in &in_table {
                    observed.entry(ReasonKey::Kernel(*r)).or_insert(Observed {
                        in_table: Some(*n),
                        ..Default::default()
                    });
                }
                // Packets (`--packets`): a row per interface and direction, attached ones
                // even when nothing passed.
                let mut busy = 0;
                let mut pkt_rows: BTreeMap<capture_common::PktKey, capture_common::PktCounter> =
                    packet_keys
                        .iter()
                        .map(|k| (*k, Default::default()))
                        .collect();
                for (k, c) in &counters.packets {
                    *pkt_rows.entry(*k).or_default() = *c;
                }
                for (k, c) in &pkt_rows {
                    let key = packet_reason(k);
                    busy += c.busy;
                    observed.insert(
                        key,
                        Observed {
                            seen: c.seen,
                            lost_ring: c.ring_full + c.busy,
                            filtered: c.filtered,
                            ..Default::default()
                        },
                    );
                    report
                        .delivered
                        .insert(key, stats.packets_delivered.get(k).copied().unwrap_or(0));
                }
                // Reasons that found no slot in the kernel's per-reason map are only in the totals.
                report.observed = Some(observed);
                for (kind, n) in stats.malformed.by_kind() {
                    report
                        .losses
                        .push(loss(Stage::Source, LossKind::Malformed(kind), n));
                }
                // Packets the ring was busy for are in the packet rows' lost_ring too; said
                // apart here with their cause. Recursion misses: when the kernel reports them.
                let kernel_losses = [
                    (LossKind::ReasonMapFull, Some(counters.reason_map_full)),
                    (LossKind::RecursionMisses, counters.recursion_misses),
                    (LossKind::NestedRunsRefused, Some(counters.nested)),
                    (LossKind::PacketsRingBusy, Some(busy)),
                    (LossKind::PacketMapFull, Some(counters.packet_map_full)),
                ];
                for (kind, n) in kernel_losses {
                    if let Some(n) = n {
                        report.losses.push(loss(Stage::Kernel, kind, n));
                    }
                }
                report.notes.push(format!(
                "kernel: {} drops seen, {} lost in the ring, {} without packet bytes (unreadable)",
                counters.seen, counters.ring_full, counters.read_failed
            ));
                report.losses.retain(|l| l.count > 0);
                // A live view took the table's generations as they came: no profile was kept
                // (nor a trailing block of it written to the file).
                report.storm = (!tap_live).then_some(profile);
                Ok(report)
            },
        ) as SourceFn<'static>,
        refused,
        notices,
    ))
}

/// The ledger row of packets of one interface and direction.
pub fn packet_reason(k: &capture_common::PktKey) -> ReasonKey {
    ReasonKey::Packet {
        ifindex: k.ifindex,
        netns: k.netns_ino,
        dir: if k.direction == u32::from(capture_common::DIR_OUTBOUND) {
            crate::event::Direction::Outbound
        } else {
            crate::event::Direction::Inbound
        },
    }
}

/// What `replay` can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// pcap or pcapng (told apart by their magic numbers).
    Capture,
    /// A saved Cilium monitor socket stream (`--save-stream`).
    GobStream,
    /// Raw Cilium notification records (u32 LE length + perf sample each).
    CiliumRaw,
    /// Lines of text: `cilium monitor` output, Hubble flows, our own JSON.
    Text(crate::ingest::source::TextFormat),
}

/// Bytes read to tell an input's format.
const HEAD_BYTES: usize = 64 << 10;

/// The format of an input that starts with `head` (`ciliumraw`: the name says so).
fn format_of_head(head: &[u8], ciliumraw: bool) -> InputFormat {
    const CAPTURE_MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    if head.get(..8) == Some(&crate::cilium_socket::record::GOBSTREAM_MAGIC[..]) {
        return InputFormat::GobStream;
    }
    if ciliumraw {
        return InputFormat::CiliumRaw;
    }
    if CAPTURE_MAGICS.iter().any(|m| head.get(..4) == Some(&m[..])) {
        return InputFormat::Capture;
    }
    match crate::ingest::source::sniff(head) {
        Some(t) => InputFormat::Text(t),
        None => InputFormat::Capture,
    }
}

/// The input format: forced by `--input-format`, else by the first bytes (gob streams start
/// with `DSCILGOB`), else by the `.ciliumraw` extension, else a capture file.
pub fn detect_format(path: &Path, forced: Option<InputFormat>) -> Result<InputFormat> {
    if let Some(f) = forced {
        return Ok(f);
    }
    let mut head = Vec::with_capacity(HEAD_BYTES);
    {
        use std::io::Read as _;
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.take(HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(format_of_head(
        &head,
        path.extension().is_some_and(|e| e == "ciliumraw"),
    ))
}

/// `--input-format` names: pcap (or pcapng), gobstream, ciliumraw, monitor, monitor-json,
/// hubble, json.
impl std::str::FromStr for InputFormat {
    type Err = String;

    fn from_str(f: &str) -> std::result::Result<Self, String> {
        Ok(match f {
            "pcap" | "pcapng" => InputFormat::Capture,
            "gobstream" => InputFormat::GobStream,
            "ciliumraw" => InputFormat::CiliumRaw,
            f => match crate::ingest::source::TextFormat::from_name(f) {
                Some(t) => InputFormat::Text(t),
                None => {
                    return Err(
                        "is not known: use pcap, gobstream, ciliumraw, monitor, monitor-json, hubble or json"
                            .into(),
                    )
                }
            },
        })
    }
}

/// Standard input as a replay input: text is read as it comes; a capture file or a saved
/// stream is first copied to an unlinked temporary file (their readers seek). Returns the
/// source, or the temporary file's path to replay as a file.
fn stdin_input(
    forced: Option<InputFormat>,
    release: crate::cilium::tables::CiliumRelease,
) -> Result<std::result::Result<SourceFn<'static>, (tempfile_path::TempPath, InputFormat)>> {
    use std::io::Read as _;
    let mut stdin = std::io::stdin().lock();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut stdin)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .context("reading standard input")?;
    let format = forced.unwrap_or_else(|| format_of_head(&head, false));
    if let InputFormat::Text(t) = format {
        let reader = std::io::BufReader::with_capacity(
            1 << 16,
            std::io::Cursor::new(head).chain(std::io::stdin()),
        );
        return Ok(Ok(crate::ingest::source::text_source(
            Box::new(reader),
            t,
            release,
            "standard input".into(),
        )));
    }
    let tmp = tempfile_path::TempPath::new("stdin")?;
    {
        let mut f = std::fs::File::create(tmp.path())
            .with_context(|| format!("cannot create {}", tmp.path().display()))?;
        std::io::Write::write_all(&mut f, &head)?;
        std::io::copy(&mut stdin, &mut f).context("copying standard input")?;
    }
    Ok(Err((tmp, format)))
}

/// A temporary file removed on drop (no crate for it: one file, one name).
mod tempfile_path {
    use std::path::{Path, PathBuf};

    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn new(tag: &str) -> anyhow::Result<TempPath> {
            let p = std::env::temp_dir().join(format!(
                "dropscope-{tag}-{}-{}",
                std::process::id(),
                crate::timefmt::now_ns()
            ));
            Ok(TempPath(p))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Replays a file: pcap/pcapng, a saved Cilium socket stream, or raw Cilium records.
pub fn file(
    path: &Path,
    input_format: Option<InputFormat>,
    release: crate::cilium::tables::CiliumRelease,
    types: u8,
    max_rows: usize,
) -> Result<SourceFn<'static>> {
    if path == Path::new("-") {
        return match stdin_input(input_format, release)? {
            Ok(src) => Ok(src),
            Err((tmp, format)) => {
                let inner = file_of_format(tmp.path(), format, release, types, max_rows)?;
                // The temporary copy lives until the source has read it.
                Ok(Box::new(
                    move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
                        let r = inner(tx, stop);
                        drop(tmp);
                        r
                    },
                ))
            }
        };
    }
    let format = detect_format(path, input_format)?;
    file_of_format(path, format, release, types, max_rows)
}

fn file_of_format(
    path: &Path,
    format: InputFormat,
    release: crate::cilium::tables::CiliumRelease,
    types: u8,
    max_rows: usize,
) -> Result<SourceFn<'static>> {
    match format {
        InputFormat::Text(t) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Ok(crate::ingest::source::text_source(
                Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
                t,
                release,
                path.display().to_string(),
            ))
        }
        InputFormat::Capture => capture_file(path, max_rows),
        InputFormat::GobStream => {
            let mut reader = crate::cilium_socket::record::GobStreamReader::open(path)
                .with_context(|| {
                    format!("cannot read {} as a saved Cilium stream", path.display())
                })?;
            let mut batcher = CiliumBatcher::new(release, types);
            let description = format!("saved cilium stream {}", path.display());
            Ok(Box::new(
                move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
                    let mut gone = false;
                    let mut on_batch =
                        |msgs: &[crate::cilium_socket::payload::MonitorMessage]| {
                            if gone || stop.load(Ordering::Relaxed) {
                                gone = true;
                                return;
                            }
                            let mut batch = Batch::with_capacity(msgs.len());
                            batcher.push(msgs, &mut batch, crate::timefmt::now_ns());
                            gone = !send_batch(tx, &mut batch);
                        };
                    let stats = crate::cilium_socket::record::replay_gobstream(
                        &mut reader,
                        16 << 20,
                        &mut on_batch,
                    )?;
                    let mut report = SourceReport {
                        description,
                        ..Default::default()
                    };
                    batcher.report(&mut report, &stats.stream);
                    report.notes.push(format!("cilium stream: {stats}"));
                    Ok(report)
                },
            ))
        }
        InputFormat::CiliumRaw => {
            let mut reader = crate::cilium_socket::record::RawSampleReader::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut batcher = CiliumBatcher::new(release, types);
            let description = format!("cilium records {}", path.display());
            Ok(Box::new(
                move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
                    let mut stream = crate::cilium_socket::payload::StreamStats::default();
                    let mut msgs = Vec::with_capacity(1024);
                    while !stop.load(Ordering::Relaxed) {
                        msgs.clear();
                        let n = reader.next_batch(&mut msgs, &mut stream, 1024)?;
                        if n == 0 {
                            break;
                        }
                        let mut batch = Batch::with_capacity(msgs.len());
                        batcher.push(&msgs, &mut batch, crate::timefmt::now_ns());
                        if !send_batch(tx, &mut batch) {
                            break;
                        }
                    }
                    let mut report = SourceReport {
                        description,
                        ..Default::default()
                    };
                    batcher.report(&mut report, &stream);
                    Ok(report)
                },
            ))
        }
    }
}

/// Replays a capture file (pcap or pcapng); `max_rows`: rows of a kernel table it carries.
fn capture_file(path: &Path, max_rows: usize) -> Result<SourceFn<'static>> {
    let mut src = FileSource::open(path)?;
    let description = format!("file {}", path.display());
    Ok(Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let mut report = SourceReport {
                description,
                ..Default::default()
            };
            // A batch ends at its read buffer's end (a few thousand small packets) or here.
            const MAX_EVENTS: usize = 8192;
            let mut capacity = 1024;
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut batch = Batch::with_capacity(capacity);
                let n = src.next_batch(&mut batch, MAX_EVENTS)?;
                if n == 0 {
                    break;
                }
                capacity = n.next_power_of_two().clamp(64, MAX_EVENTS);
                // Runs of one reason are counted together: one map update per run.
                let mut run: Option<(ReasonKey, u64)> = None;
                for e in &batch.events {
                    let k = match e.cause {
                        Cause::Kernel { reason, .. } => ReasonKey::Kernel(reason),
                        Cause::Captured => ReasonKey::Captured,
                        _ => crate::aggregate::reason_and_identities(e).0,
                    };
                    match &mut run {
                        Some((rk, n)) if *rk == k => *n += 1,
                        _ => {
                            if let Some((rk, n)) = run.replace((k, 1)) {
                                *report.delivered.entry(rk).or_default() += n;
                            }
                        }
                    }
                }
                if let Some((rk, n)) = run {
                    *report.delivered.entry(rk).or_default() += n;
                }
                if tx.send(batch).is_err() {
                    break;
                }
            }
            let st = src.stats();
            for (kind, n) in st.skipped() {
                let kind = match kind {
                    // Named by its number when all were of one link type.
                    "linktype" => LossKind::LinkType(
                        st.skipped_linktype_first
                            .filter(|_| !st.skipped_linktype_mixed),
                    ),
                    "truncated_file" => LossKind::TruncatedFile,
                    other => LossKind::FileSkip(other),
                };
                report.losses.push(loss(Stage::File, kind, n));
            }
            // A dropscope capture carries its kernel table: the replay reports its exact
            // counts too.
            if let Some(block) = src.take_kernel_table() {
                match crate::storm::StormProfile::from_block(&block, max_rows) {
                    Some((p, omitted)) => {
                        if omitted > 0 {
                            report.notes.push(format!(
                                "kernel table from the file: its {omitted} smallest rows were not kept in it"
                            ));
                        }
                        report.storm = Some(p);
                    }
                    None => {
                        report
                            .losses
                            .push(loss(Stage::File, LossKind::KernelTableUnreadable, 1))
                    }
                }
            }
            report.losses.retain(|l| l.count > 0);
            Ok(report)
        },
    ))
}

pub struct CiliumSocketOptions {
    pub path: PathBuf,
    pub save_stream: Option<PathBuf>,
    pub release: crate::cilium::tables::CiliumRelease,
    /// Message-type bits to deliver (see [`cilium_type_bits`]).
    pub types: u8,
}

/// Turns Cilium monitor messages into pipeline batches and keeps the books: what was
/// delivered per reason, what could not be decoded (by kind), what the agent reported lost.
pub struct CiliumBatcher {
    opts: crate::cilium::notify::DecodeOptions,
    /// Bit `t` set: deliver notifications of message type `t` (1..=7).
    types: u8,
    delivered: DeliveredCounts,
    decode_errors: BTreeMap<&'static str, u64>,
    filtered: u64,
    lost_records: u64,
    lost_total: u64,
    /// `Some`: the perf ring is read by us (`--source cilium-datapath`), and its losses are
    /// the kernel's, kept per CPU; `None`: the agent relays them.
    lost_per_cpu: Option<BTreeMap<i64, u64>>,
    agent: u64,
    l7: u64,
    unknown: u64,
}

/// Events delivered per reason, counted per event without a map look-up: Cilium's reason
/// keys are a code or a message type (one byte each), so two tables cover them.
#[derive(Clone, Debug)]
struct DeliveredCounts {
    /// By `ReasonKey::Cilium(code)`.
    drops: [u64; 256],
    /// By `ReasonKey::CiliumEvent(type)`.
    events: [u64; 256],
    /// Any other key (none comes from Cilium today).
    other: BTreeMap<ReasonKey, u64>,
}

impl Default for DeliveredCounts {
    fn default() -> Self {
        DeliveredCounts {
            drops: [0; 256],
            events: [0; 256],
            other: BTreeMap::new(),
        }
    }
}

impl DeliveredCounts {
    #[inline]
    fn add(&mut self, k: ReasonKey) {
        let slot = match k {
            ReasonKey::Cilium(c) => self.drops.get_mut(usize::from(c)),
            ReasonKey::CiliumEvent(t) => self.events.get_mut(usize::from(t)),
            ReasonKey::Kernel(_) | ReasonKey::Captured | ReasonKey::Packet { .. } => None,
        };
        match slot {
            Some(n) => *n += 1,
            None => *self.other.entry(k).or_default() += 1,
        }
    }

    /// The counts as the report keeps them (reasons with no event left out).
    fn to_map(&self) -> BTreeMap<ReasonKey, u64> {
        let mut m = self.other.clone();
        let tables = [
            (&self.drops, ReasonKey::Cilium as fn(u8) -> ReasonKey),
            (&self.events, ReasonKey::CiliumEvent as fn(u8) -> ReasonKey),
        ];
        for (table, key) in tables {
            for (b, &n) in (0..=u8::MAX).zip(table.iter()) {
                if n > 0 {
                    *m.entry(key(b)).or_default() += n;
                }
            }
        }
        m
    }
}

/// Message-type bits for `--type` names, as `cilium monitor -t` spells them.
pub fn cilium_type_bits(kinds: &[crate::cilium::notify::MessageKind]) -> u8 {
    if kinds.is_empty() {
        return 0xff;
    }
    kinds.iter().fold(0u8, |bits, k| bits | 1 << k.type_byte())
}

impl CiliumBatcher {
    pub fn new(release: crate::cilium::tables::CiliumRelease, types: u8) -> Self {
        CiliumBatcher {
            opts: crate::cilium::notify::DecodeOptions::for_release(release),
            types,
            delivered: DeliveredCounts::default(),
            decode_errors: BTreeMap::new(),
            filtered: 0,
            lost_records: 0,
            lost_total: 0,
            lost_per_cpu: None,
            agent: 0,
            l7: 0,
            unknown: 0,
        }
    }

    /// A batcher for samples read straight from the datapath's perf ring: lost records are
    /// the kernel's, reported per CPU under the stage `cilium-datapath`.
    pub fn for_datapath(release: crate::cilium::tables::CiliumRelease, types: u8) -> Self {
        CiliumBatcher {
            lost_per_cpu: Some(BTreeMap::new()),
            ..Self::new(release, types)
        }
    }

    /// Appends the events and notices of `msgs` to `batch`; events are stamped `ts_ns`
    /// (Cilium's notifications carry no time: like Hubble, the receive time is used).
    pub fn push(
        &mut self,
        msgs: &[crate::cilium_socket::payload::MonitorMessage],
        batch: &mut Batch,
        ts_ns: u64,
    ) {
        use crate::cilium::notify::NotifyError;
        use crate::cilium_socket::payload::MonitorMessage as M;
        use crate::event::Notice;
        for m in msgs {
            match m {
                M::Sample { cpu, data } => {
                    let t = data.first().copied().unwrap_or(0);
                    if t < 8 && self.types & (1 << t) == 0 {
                        self.filtered += 1;
                        continue;
                    }
                    let cpu = u32::try_from(*cpu).unwrap_or(u32::MAX);
                    match crate::cilium_glue::event_from_sample(data, cpu, ts_ns, &self.opts) {
                        Ok(e) => {
                            let (k, _, _) = crate::aggregate::reason_and_identities(&e);
                            self.delivered.add(k);
                            batch.events.push(e);
                        }
                        Err(err) => {
                            let kind = match err {
                                NotifyError::Empty => "notification_empty",
                                NotifyError::UnknownType(_) => "notification_unknown_type",
                                NotifyError::TooShort { .. } => "notification_too_short",
                                NotifyError::UnknownVersion { .. } => {
                                    "notification_unknown_version"
                                }
                            };
                            *self.decode_errors.entry(kind).or_default() += 1;
                        }
                    }
                }
                M::Lost { cpu, count } => {
                    self.lost_records += 1;
                    self.lost_total = self.lost_total.saturating_add(*count);
                    if let Some(m) = &mut self.lost_per_cpu {
                        let n = m.entry(*cpu).or_default();
                        *n = n.saturating_add(*count);
                    }
                    batch.notices.push((
                        batch.events.len(),
                        Notice::Lost {
                            cpu: *cpu,
                            count: *count,
                        },
                    ));
                }
                M::Agent { kind, text } => {
                    self.agent += 1;
                    batch.notices.push((
                        batch.events.len(),
                        Notice::Agent {
                            kind: *kind,
                            text: text.clone(),
                        },
                    ));
                }
                M::L7 { cpu, .. } => {
                    self.l7 += 1;
                    batch
                        .notices
                        .push((batch.events.len(), Notice::L7 { cpu: *cpu }));
                }
                M::Unknown { typ, cpu, .. } => {
                    self.unknown += 1;
                    batch.notices.push((
                        batch.events.len(),
                        Notice::Unknown {
                            typ: *typ,
                            cpu: *cpu,
                        },
                    ));
                }
            }
        }
    }

    /// Moves the books into a source report.
    pub fn report(
        &self,
        report: &mut SourceReport,
        stream: &crate::cilium_socket::payload::StreamStats,
    ) {
        report.delivered = self.delivered.to_map();
        match &self.lost_per_cpu {
            Some(m) => {
                for (cpu, n) in m {
                    report.losses.push(loss(
                        Stage::CiliumDatapath,
                        LossKind::PerfRingLostOnCpu(*cpu),
                        *n,
                    ));
                }
            }
            None => report.losses.push(loss(
                Stage::CiliumAgent,
                LossKind::PerfRingLostRecords,
                self.lost_total,
            )),
        }
        for (k, n) in &self.decode_errors {
            report
                .losses
                .push(loss(Stage::Decode, LossKind::Undecodable(k), *n));
        }
        report
            .losses
            .push(loss(Stage::Filter, LossKind::FilteredByType, self.filtered));
        for (k, n) in &stream.malformed {
            report
                .losses
                .push(loss(Stage::Socket, LossKind::Malformed(k), *n));
        }
        let socket_losses = [
            (LossKind::StreamsAbandoned, stream.streams_abandoned),
            (LossKind::MessageCutAtClose, stream.truncated_at_close),
            (LossKind::BytesDiscarded, stream.bytes_discarded),
            (
                LossKind::AgentNotificationUndecodable,
                stream.agent_undecodable,
            ),
            (LossKind::L7RecordUndecodable, stream.l7_undecodable),
        ];
        for (kind, n) in socket_losses {
            report.losses.push(loss(Stage::Socket, kind, n));
        }
        report.losses.retain(|l| l.count > 0);
        if self.lost_per_cpu.is_some() {
            report.notes.push(format!(
                "cilium: {} lost-record notices ({} records lost in the perf ring of cilium_events)",
                self.lost_records, self.lost_total
            ));
        } else {
            report.notes.push(format!(
                "cilium: {} lost-record notices ({} records lost in the agent's perf ring), {} agent notifications, {} L7 records, {} unknown payloads",
                self.lost_records, self.lost_total, self.agent, self.l7, self.unknown
            ));
        }
    }
}

/// Sends a batch unless it is empty; false when the pipeline has gone.
pub(crate) fn send_batch(tx: &Sender<Batch>, batch: &mut Batch) -> bool {
    if batch.events.is_empty() && batch.notices.is_empty() {
        return true;
    }
    tx.send(std::mem::take(batch)).is_ok()
}

/// Events a live Cilium batch holds at most before it is sent on.
const SOCKET_BATCH_EVENTS: usize = 1024;

/// Gathers the messages of several socket reads into one pipeline batch, so that at ordinary
/// rates (a read every millisecond or so, each with a hundred messages or fewer) the pipeline
/// is handed a batch every [`SocketConfig::batch_hold`](crate::cilium_socket::SocketConfig)
/// instead of one per read. Events are stamped when their read is, and notices keep their
/// place among the events.
struct SocketBatches<'a> {
    batcher: &'a mut CiliumBatcher,
    tx: &'a Sender<Batch>,
    stop: &'a AtomicBool,
    pending: Batch,
    /// Events of the last batch sent: the next one is sized after it.
    last_len: usize,
    /// The pipeline has gone: nothing more is taken (or counted).
    gone: bool,
}

impl crate::cilium_socket::MessageSink for SocketBatches<'_> {
    fn messages(&mut self, msgs: &[crate::cilium_socket::payload::MonitorMessage]) {
        if self.gone {
            return;
        }
        if self.pending.events.capacity() == 0 {
            let n = self
                .last_len
                .next_power_of_two()
                .clamp(64, SOCKET_BATCH_EVENTS);
            self.pending.events.reserve(n);
        }
        self.batcher
            .push(msgs, &mut self.pending, crate::timefmt::now_ns());
        if self.pending.events.len() >= SOCKET_BATCH_EVENTS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.gone {
            return;
        }
        let len = self.pending.events.len();
        if !send_batch(self.tx, &mut self.pending) {
            self.gone = true;
            self.stop.store(true, Ordering::Relaxed);
        } else if len > 0 {
            self.last_len = len;
        }
    }
}

/// The live Cilium source: the agent's monitor socket (one gob stream per connection),
/// reconnecting with back-off when the agent restarts.
pub fn cilium_socket(o: &CiliumSocketOptions) -> Result<SourceFn<'static>> {
    cilium_socket_counted(o, None)
}

/// [`cilium_socket`], counting reconnections into `reconnects` as they happen.
pub fn cilium_socket_counted(
    o: &CiliumSocketOptions,
    reconnects: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> Result<SourceFn<'static>> {
    use std::os::unix::fs::FileTypeExt as _;
    let release = o.release;
    match std::fs::metadata(&o.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "the Cilium monitor socket {} does not exist: is cilium-agent running? use --cilium-socket PATH",
            o.path.display()
        ),
        Err(e) => anyhow::bail!("cannot use the Cilium monitor socket {}: {e}", o.path.display()),
        Ok(m) if !m.file_type().is_socket() => {
            anyhow::bail!("{} is not a Unix socket: give the agent's monitor socket with --cilium-socket PATH", o.path.display())
        }
        Ok(_) => {}
    }
    let mut cfg = crate::cilium_socket::socket::SocketConfig::new(&o.path);
    cfg.quiet = false;
    cfg.reconnects_live = reconnects;
    let mut src = crate::cilium_socket::socket::CiliumSocketSource::new(cfg);
    if let Some(p) = &o.save_stream {
        let rec = crate::cilium_socket::record::GobStreamRecorder::create(p)
            .with_context(|| format!("cannot create {}", p.display()))?;
        src = src.with_recorder(rec);
    }
    let mut batcher = CiliumBatcher::new(release, o.types);
    let description = format!("cilium monitor socket {}", o.path.display());
    Ok(Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let mut sink = SocketBatches {
                batcher: &mut batcher,
                tx,
                stop,
                pending: Batch::default(),
                last_len: 0,
                gone: false,
            };
            let stats = src.run_into(&mut sink, stop);
            sink.flush();
            let stats = stats?;
            let mut report = SourceReport {
                description,
                ..Default::default()
            };
            batcher.report(&mut report, &stats.stream);
            report.notes.push(format!("cilium socket: {stats}"));
            report.notes.push("cilium: the agent drops events silently when its per-listener queue is full (not reported to clients)".into());
            Ok(report)
        },
    ))
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
        if !kernel_only {
            for (code, name, monitor) in crate::cilium::tables::reason_table() {
                let info = crate::cilium::tables::drop_reason_info(code);
                rows.push(serde_json::json!({
                    "origin": "cilium", "code": code, "name": name,
                    "monitor": if monitor.is_empty() { serde_json::Value::Null } else { monitor.into() },
                    "hubble": info.and_then(|i| i.hubble),
                }));
            }
        }
        out = serde_json::to_string_pretty(&rows)?;
        out.push('\n');
        return Ok(out);
    }
    if !cilium_only {
        let _ = writeln!(
            out,
            "kernel drop reasons (enum skb_drop_reason, names from {}):",
            k.source()
        );
        for (v, n) in k.iter() {
            let _ = writeln!(out, "  {v:>10}  {n}");
        }
    }
    if !kernel_only {
        if !cilium_only {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "cilium drop reasons (drop notification sub-type; monitor text, C name):"
        );
        for (code, name, monitor) in crate::cilium::tables::reason_table() {
            let m = if monitor.is_empty() {
                "(no monitor text)"
            } else {
                monitor
            };
            let _ = writeln!(out, "  {code:>10}  {m:<58} {name}");
        }
    }
    Ok(out)
}

/// Runs several sources at once into one pipeline (e.g. kernel and Cilium drops in one
/// stream, one file, one flow table). The first error stops the others and is returned;
/// the reports are merged (per-reason counts of different origins never collide).
/// [`merge`], with kernel drops at tc joined to the Cilium drop notifications of the same
/// packets ([`crate::join`]): `tc_reasons` are the kernel's `TC_INGRESS`/`TC_EGRESS` values.
pub fn merge_joined(
    sources: Vec<SourceFn<'static>>,
    tc_reasons: Vec<u32>,
    window: std::time::Duration,
) -> SourceFn<'static> {
    let inner = merge(sources);
    Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let (itx, irx) = crossbeam_channel::bounded::<Batch>(64);
            std::thread::scope(|s| {
                let joiner = s.spawn(move || {
                    let mut j = crate::join::Joiner::new(window, tc_reasons);
                    let mut out = Vec::new();
                    let mut downstream = true;
                    loop {
                        let (batch, done) = match irx.recv_timeout(window / 2) {
                            Ok(b) => (Some(b), false),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => (None, false),
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => (None, true),
                        };
                        let now = std::time::Instant::now();
                        let mut nb = Batch::default();
                        if let Some(b) = batch {
                            // Notices stay before the event they came before (or at the end).
                            let mut notices = b.notices.into_iter().peekable();
                            for (i, e) in b.events.into_iter().enumerate() {
                                while let Some((_, n)) = notices.next_if(|(at, _)| *at <= i) {
                                    nb.notices.push((nb.events.len(), n));
                                }
                                j.push(e, now, &mut out);
                                nb.events.append(&mut out);
                            }
                            for (_, n) in notices {
                                nb.notices.push((nb.events.len(), n));
                            }
                        }
                        j.expire(now, done, &mut out);
                        nb.events.append(&mut out);
                        if downstream
                            && !(nb.events.is_empty() && nb.notices.is_empty())
                            && tx.send(nb).is_err()
                        {
                            // Keep draining so the sources are never blocked.
                            downstream = false;
                        }
                        if done {
                            return j.note();
                        }
                    }
                });
                let r = inner(&itx, stop);
                drop(itx);
                let note = joiner
                    .join()
                    .map_err(|_| anyhow::anyhow!("the join thread panicked"))?;
                r.map(|mut rep| {
                    rep.notes.push(note);
                    rep
                })
            })
        },
    )
}

/// Hands `inner`'s events on at the pace of their timestamps, `speed` times as fast
/// (`dropscope top -r`): an event `t` after the first goes on `t / speed` after the start.
/// Batches are cut where an event is not due yet. Once `stop` is set the rest goes on at
/// once, so nothing read is left uncounted.
pub fn paced(inner: SourceFn<'static>, speed: f64) -> SourceFn<'static> {
    Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let (itx, irx) = crossbeam_channel::bounded::<Batch>(4);
            std::thread::scope(|s| {
                let reader = std::thread::Builder::new()
                    .name("dropscope-paced".into())
                    .spawn_scoped(s, move || {
                        let r = inner(&itx, stop);
                        drop(itx);
                        r
                    })
                    .context("starting the file reader thread")?;
                let start = std::time::Instant::now();
                let mut first: Option<u64> = None;
                let mut downstream = true;
                for mut batch in irx {
                    loop {
                        let now = start.elapsed();
                        let not_due = (!stop.load(Ordering::Relaxed))
                            .then(|| {
                                batch.events.iter().enumerate().find_map(|(i, e)| {
                                    let f = *first.get_or_insert(e.ts_ns);
                                    let due = std::time::Duration::from_secs_f64(
                                        e.ts_ns.saturating_sub(f) as f64 / 1e9 / speed,
                                    );
                                    (due > now + std::time::Duration::from_millis(5))
                                        .then_some((i, due))
                                })
                            })
                            .flatten();
                        let Some((i, due)) = not_due else {
                            downstream = downstream && tx.send(batch).is_ok();
                            break;
                        };
                        if i > 0 {
                            let front = split_front(&mut batch, i);
                            downstream = downstream && tx.send(front).is_ok();
                        }
                        while !stop.load(Ordering::Relaxed) {
                            let left = due.saturating_sub(start.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
                        }
                    }
                }
                reader
                    .join()
                    .map_err(|_| anyhow::anyhow!("the file reader thread panicked"))?
            })
        },
    )
}

/// Cuts the first `i` events off `batch` (with the notices that came before them).
fn split_front(batch: &mut Batch, i: usize) -> Batch {
    let back = batch.events.split_off(i);
    let front = std::mem::replace(&mut batch.events, back);
    let (before, after): (Vec<_>, Vec<_>) = batch.notices.drain(..).partition(|(at, _)| *at < i);
    batch.notices = after.into_iter().map(|(at, n)| (at - i, n)).collect();
    Batch {
        events: front,
        notices: before,
    }
}

pub fn merge(sources: Vec<SourceFn<'static>>) -> SourceFn<'static> {
    Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            let results: Vec<Result<SourceReport>> = std::thread::scope(|s| {
                let handles: Vec<_> = sources
                    .into_iter()
                    .map(|src| {
                        s.spawn(move || {
                            let r = src(tx, stop);
                            if r.is_err() {
                                stop.store(true, Ordering::Relaxed);
                            }
                            r
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("a source thread panicked")))
                    })
                    .collect()
            });
            let mut merged = SourceReport::default();
            let mut descriptions = Vec::new();
            for r in results {
                let r = r?;
                descriptions.push(r.description);
                for (k, n) in r.delivered {
                    *merged.delivered.entry(k).or_default() += n;
                }
                if let Some(obs) = r.observed {
                    let m = merged.observed.get_or_insert_with(BTreeMap::new);
                    for (k, o) in obs {
                        m.entry(k).or_default().add(&o);
                    }
                }
                if r.storm.is_some() {
                    merged.storm = r.storm;
                }
                merged.losses.extend(r.losses);
                merged.notes.extend(r.notes);
            }
            merged.description = descriptions.join(" + ");
            Ok(merged)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cilium_socket::payload::{MonitorMessage as M, StreamStats};
    use crate::event::Notice;
    use bytes::Bytes;

    /// A report's stage losses as (stage, kind, count).
    fn losses(report: &SourceReport) -> Vec<(Stage, LossKind, u64)> {
        report
            .losses
            .iter()
            .map(|l| (l.stage, l.kind, l.count))
            .collect()
    }

    /// A drop notification v3 with Cilium code `code` and a 42-byte Ethernet/IPv4/UDP packet.
    fn drop_v3(code: u8) -> Bytes {
        let mut s = vec![0u8; 48];
        s[0] = 1;
        s[1] = code;
        s[8] = 42; // orig_len
        s[12] = 42; // cap_len
        s[14] = 3; // version
        s[16..20].copy_from_slice(&12345u32.to_le_bytes());
        s.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
        s.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        s.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0, 9, 0, 8, 0, 0]);
        Bytes::from(s)
    }

    fn at(ts_ns: u64) -> crate::event::Event {
        crate::event::Event {
            ts_ns,
            ifindex: 1,
            netns: 1,
            cpu: 0,
            orig_len: 60,
            link: crate::event::LinkType::Ethernet,
            data: Bytes::new(),
            cause: Cause::Captured,
            meta: None,
        }
    }

    /// One batch of three events 500 ms apart, a notice before the second, played by
    /// [`paced`] at `speed` (with `stop` already set when `stopped`).
    fn play(speed: f64, stopped: bool) -> Vec<Batch> {
        let batch = Batch {
            events: vec![at(10_000_000_000), at(10_500_000_000), at(11_000_000_000)],
            notices: vec![(1, Notice::Lost { cpu: 0, count: 7 })],
        };
        let inner: SourceFn<'static> = Box::new(move |tx: &Sender<Batch>, _stop: &AtomicBool| {
            tx.send(batch).map_err(|_| anyhow::anyhow!("gone"))?;
            Ok(SourceReport::default())
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = AtomicBool::new(stopped);
        paced(inner, speed)(&tx, &stop).expect("paced");
        drop(tx);
        rx.iter().collect()
    }

    #[test]
    fn paced_cuts_batches_where_events_are_not_due_and_keeps_notices_in_place() {
        let got = play(1.0, false);
        let ts: Vec<Vec<u64>> = got
            .iter()
            .map(|b| b.events.iter().map(|e| e.ts_ns).collect())
            .collect();
        assert_eq!(
            ts,
            vec![
                vec![10_000_000_000],
                vec![10_500_000_000],
                vec![11_000_000_000]
            ]
        );
        assert!(got[0].notices.is_empty());
        assert_eq!(got[1].notices, vec![(0, Notice::Lost { cpu: 0, count: 7 })]);
        assert!(got[2].notices.is_empty());
    }

    #[test]
    fn paced_hands_the_rest_on_at_once_after_stop() {
        let got = play(1.0, true);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].events.len(), 3);
        assert_eq!(got[0].notices, vec![(1, Notice::Lost { cpu: 0, count: 7 })]);
    }

    fn sample(data: Bytes) -> M {
        M::Sample { cpu: 1, data }
    }

    /// What the report must say: the events of the batch counted one by one in a map.
    fn counted(batch: &Batch) -> BTreeMap<ReasonKey, u64> {
        let mut m = BTreeMap::new();
        for e in &batch.events {
            *m.entry(crate::aggregate::reason_and_identities(e).0)
                .or_default() += 1;
        }
        m
    }

    #[test]
    fn batcher_counts_every_reason_and_keeps_notices_in_place() {
        // Debug captures (type 3) filtered out.
        let mut b = CiliumBatcher::new(Default::default(), !(1 << 3));
        let mut debug = vec![0u8; 20];
        debug[0] = 2;
        let msgs = vec![
            M::Agent {
                kind: 2,
                text: "{}".into(),
            },
            sample(drop_v3(133)),
            M::Lost { cpu: 3, count: 9 },
            sample(drop_v3(133)),
            sample(Bytes::from(debug)),
            sample(Bytes::from_static(&[3; 30])),
            sample(drop_v3(0)),
            sample(Bytes::from_static(&[1, 133, 0, 0])), // too short
            M::L7 {
                cpu: 0,
                data: Bytes::from_static(&[129]),
            },
            sample(drop_v3(255)),
            M::Lost { cpu: 0, count: 1 },
            M::Unknown {
                typ: 77,
                cpu: 0,
                lost: 0,
                data: Bytes::new(),
            },
        ];
        let mut batch = Batch::default();
        b.push(&msgs, &mut batch, 7);
        // Pushing in two calls counts the same as one.
        let mut batch2 = Batch::default();
        b.push(&msgs[..4], &mut batch2, 8);
        b.push(&msgs[4..], &mut batch2, 8);
        assert_eq!(batch.events.len(), 5);
        assert!(batch.events.iter().all(|e| e.ts_ns == 7));
        let at: Vec<(usize, &Notice)> = batch.notices.iter().map(|(i, n)| (*i, n)).collect();
        assert_eq!(
            at,
            [
                (
                    0,
                    &Notice::Agent {
                        kind: 2,
                        text: "{}".into()
                    }
                ),
                (1, &Notice::Lost { cpu: 3, count: 9 }),
                (4, &Notice::L7 { cpu: 0 }),
                (5, &Notice::Lost { cpu: 0, count: 1 }),
                (5, &Notice::Unknown { typ: 77, cpu: 0 }),
            ]
        );
        let mut report = SourceReport::default();
        b.report(&mut report, &StreamStats::default());
        let mut want = counted(&batch);
        for v in want.values_mut() {
            *v *= 2;
        }
        assert_eq!(report.delivered, want);
        assert_eq!(
            report.delivered,
            BTreeMap::from([
                (ReasonKey::Cilium(0), 2),
                (ReasonKey::Cilium(133), 4),
                (ReasonKey::Cilium(255), 2),
                (ReasonKey::CiliumEvent(2), 2),
            ])
        );
        assert_eq!(
            losses(&report),
            [
                (Stage::CiliumAgent, LossKind::PerfRingLostRecords, 20),
                (
                    Stage::Decode,
                    LossKind::Undecodable("notification_too_short"),
                    2
                ),
                (Stage::Filter, LossKind::FilteredByType, 2),
            ]
        );
    }

    #[test]
    fn socket_reads_are_gathered_into_batches_in_order() {
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(16);
        let stop = AtomicBool::new(false);
        let mut batcher = CiliumBatcher::new(Default::default(), 0xff);
        let mut sink = SocketBatches {
            batcher: &mut batcher,
            tx: &tx,
            stop: &stop,
            pending: Batch::default(),
            last_len: 0,
            gone: false,
        };
        // Three reads: 2 events, a lost notice and 1 event, 1 event.
        sink.messages(&[sample(drop_v3(133)), sample(drop_v3(130))]);
        sink.messages(&[M::Lost { cpu: 1, count: 4 }, sample(drop_v3(133))]);
        sink.messages(&[sample(drop_v3(1))]);
        assert!(rx.try_recv().is_err(), "held until flushed");
        sink.flush();
        sink.flush(); // nothing held: nothing sent
        let b = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        let codes: Vec<ReasonKey> = b
            .events
            .iter()
            .map(|e| crate::aggregate::reason_and_identities(e).0)
            .collect();
        assert_eq!(
            codes,
            [133, 130, 133, 1].map(ReasonKey::Cilium).to_vec(),
            "events in stream order"
        );
        assert_eq!(b.notices, [(2, Notice::Lost { cpu: 1, count: 4 })]);
        assert!(b.events.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
        // A full batch goes on at once, the rest waits for the flush.
        let many: Vec<M> = (0..SOCKET_BATCH_EVENTS + 5)
            .map(|_| sample(drop_v3(133)))
            .collect();
        sink.messages(&many[..1000]);
        assert!(rx.try_recv().is_err());
        sink.messages(&many[1000..]);
        assert_eq!(rx.try_recv().unwrap().events.len(), SOCKET_BATCH_EVENTS + 5);
        sink.messages(&many[..3]);
        sink.flush();
        assert_eq!(rx.try_recv().unwrap().events.len(), 3);
        // The pipeline gone: the run is stopped and nothing more is taken or counted.
        drop(rx);
        sink.messages(&many[..2]);
        sink.flush();
        assert!(stop.load(Ordering::Relaxed));
        sink.messages(&many[..7]);
        sink.flush();
        let mut report = SourceReport::default();
        batcher.report(&mut report, &StreamStats::default());
        assert_eq!(
            report.delivered,
            BTreeMap::from([
                (ReasonKey::Cilium(1), 1),
                (ReasonKey::Cilium(130), 1),
                (
                    ReasonKey::Cilium(133),
                    2 + SOCKET_BATCH_EVENTS as u64 + 5 + 3 + 2
                ),
            ])
        );
    }

    #[test]
    fn datapath_batcher_reports_the_kernels_losses_per_cpu() {
        let mut b = CiliumBatcher::for_datapath(Default::default(), 0xff);
        let msgs = vec![
            sample(drop_v3(133)),
            M::Lost { cpu: 1, count: 4 },
            M::Lost { cpu: 0, count: 2 },
            M::Lost { cpu: 1, count: 3 },
            sample(Bytes::new()),
            sample(Bytes::from_static(&[1, 133, 0])),
        ];
        let mut batch = Batch::default();
        b.push(&msgs, &mut batch, 1);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(
            batch.notices.len(),
            3,
            "each lost record is a notice in place"
        );
        let mut report = SourceReport::default();
        b.report(&mut report, &StreamStats::default());
        assert_eq!(
            losses(&report),
            [
                (Stage::CiliumDatapath, LossKind::PerfRingLostOnCpu(0), 2),
                (Stage::CiliumDatapath, LossKind::PerfRingLostOnCpu(1), 7),
                (
                    Stage::Decode,
                    LossKind::Undecodable("notification_empty"),
                    1
                ),
                (
                    Stage::Decode,
                    LossKind::Undecodable("notification_too_short"),
                    1
                ),
            ]
        );
        assert_eq!(
            report.delivered,
            BTreeMap::from([(ReasonKey::Cilium(133), 1)])
        );
    }

    #[test]
    fn batcher_counts_each_of_the_256_drop_codes() {
        let mut b = CiliumBatcher::new(Default::default(), 0xff);
        let msgs: Vec<M> = (0..=255u8)
            .flat_map(|c| (0..=u32::from(c) % 3).map(move |_| sample(drop_v3(c))))
            .collect();
        let mut batch = Batch::default();
        b.push(&msgs, &mut batch, 1);
        let mut report = SourceReport::default();
        b.report(&mut report, &StreamStats::default());
        assert_eq!(report.delivered.len(), 256);
        assert_eq!(report.delivered, counted(&batch));
        assert_eq!(report.delivered.get(&ReasonKey::Cilium(255)), Some(&1));
        assert_eq!(report.delivered.get(&ReasonKey::Cilium(254)), Some(&3));
        assert_eq!(report.delivered.values().sum::<u64>(), msgs.len() as u64);
    }
}
