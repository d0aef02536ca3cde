//! `KernelSource`: the kernel drop capture as a pipeline source. It owns the loaded eBPF
//! object, reads the per-CPU rings ([`super::ring`]), decodes records into [`Event`]s and
//! sends them in [`Batch`]es, each sorted by time (the rings are read one CPU after another).
//!
//! Accounting is exact: the kernel counts every drop per reason before it touches the ring,
//! and per flow in its flow table ([`super::table`], drained about once a second by a thread
//! of this source); on stop this source detaches the program first, waits for an RCU grace
//! period (no run still in flight), then drains the rings and both table generations
//! completely, so afterwards `seen == not_copied + ring_full + delivered` and
//! `seen == in table + table_full` for every reason ([`KernelCounters`], [`SourceStats`],
//! [`crate::kernel::storm::StormProfile`]). Sending blocks when the pipeline is slow: the ring,
//! which the kernel counts, is the only place a copied event can be lost.
//!
//! Must never: panic on a ring record (records are decoded by the panic-free
//! [`super::record`]), allocate per event (packet bytes of a batch share one buffer), or
//! drop a malformed record without counting it.

use std::{
    collections::BTreeMap,
    os::fd::AsFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::{
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, TracePoint},
    Ebpf,
};
use bytes::BytesMut;
use capture_common::{
    KfreeSkbEvent, PacketEvent, PktCounter, PktKey, ProbeConfig, ReasonCounter, DIR_OUTBOUND,
    FLAG_COUNTED, FLAG_L3, MAP_BUDGET_0, MAP_BUDGET_1, MAP_CACHE_0, MAP_CACHE_1, MAP_FLOWS_0,
    MAP_FLOWS_1, MAP_FLOW_GEN, MAP_PKT_COUNTS, MAP_REASON_ARRAY, MAP_REASON_COUNTS, MAP_RING_DATA,
    MAP_RING_POS, MAP_STATS, PROG_TP_BTF, PROG_TRACEPOINT, STAT_NESTED, STAT_PKT_MAP_FULL,
    STAT_READ_FAILED, STAT_REASON_MAP_FULL, STAT_RING_FULL,
};
use crossbeam_channel::Sender;

use super::{
    bpfsys::{self, RcuFence},
    loader::{self, AttachMode, Attached, LoadError, LoadOptions},
    packets::PacketLinks,
    record::{self, Record, RecordError},
    ring::PerCpuRings,
    table::KernelTable,
};
use crate::event::{Batch, Cause, Direction, Event, LinkType};
use crate::kernel::storm::{CopyPolicy, SeriesPoint, StormCpu, StormProfile, StormSpan};
pub use crate::timefmt::ClockOffset;

/// Pause after a pass over the rings that found little: the kernel program never wakes the
/// reader (that would cost the dropping CPU an IPI), so the reader polls. 2 ms keeps the
/// delay short and costs a few hundred wakeups a second when idle.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// A pass that consumed at least this many bytes is followed by another at once.
const BUSY_PASS_BYTES: u64 = 256 << 10;
/// How often the kernel flow table switches generations (and the per-second series gets a
/// point).
const TABLE_INTERVAL: Duration = Duration::from_secs(1);
/// Empty passes in a row after which [`KernelSource::idle_poll`]'s pause applies (100 ms
/// of quiet at [`POLL_INTERVAL`]).
const IDLE_PASSES: u32 = 50;
/// How often the ring reader updates a live consumer's gauges.
const GAUGE_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the eBPF object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("reading map {name} failed: {message}")]
    Map { name: &'static str, message: String },
    #[error("mapping the per-CPU rings failed: {0}")]
    Mmap(std::io::Error),
    #[error("detaching the capture programs failed: {0}")]
    Detach(String),
    #[error("the event receiver hung up after {delivered} events")]
    ReceiverGone { delivered: u64 },
    #[error("draining the kernel flow table failed: {0}")]
    Table(std::io::Error),
}

/// Malformed ring records, by kind (each one was skipped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MalformedCounts {
    pub too_short: u64,
    pub bad_version: u64,
    pub bad_kind: u64,
    pub bad_header_len: u64,
    /// Ring frames with an impossible length (the rest of their block was skipped, so the
    /// records in it are missing from `delivered`: the reconciliation shows them).
    pub bad_frame: u64,
}

impl MalformedCounts {
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// Each count with its name in the ledger's stage losses (`malformed_<kind>`).
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("too_short", self.too_short),
            ("bad_version", self.bad_version),
            ("bad_kind", self.bad_kind),
            ("bad_header_len", self.bad_header_len),
            ("bad_frame", self.bad_frame),
        ]
    }

    fn count(&mut self, e: RecordError) {
        match e {
            RecordError::TooShort { .. } => self.too_short += 1,
            RecordError::BadVersion { .. } => self.bad_version += 1,
            RecordError::BadKind { .. } => self.bad_kind += 1,
            RecordError::BadHeaderLen { .. } => self.bad_header_len += 1,
        }
    }
}

/// What this source did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Records delivered downstream, per raw reason.
    pub delivered: BTreeMap<u32, u64>,
    /// Packet records (`--packets`) delivered downstream, per interface and direction.
    pub packets_delivered: BTreeMap<PktKey, u64>,
    pub malformed: MalformedCounts,
    /// Batches sent.
    pub batches: u64,
}

impl SourceStats {
    pub fn delivered_total(&self) -> u64 {
        self.delivered.values().sum()
    }
}

/// The kernel program's own counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Runs the kernel skipped during the capture (`recursion_misses` at the end minus at
    /// the start); `None` when the kernel does not report them.
    pub recursion_misses: Option<u64>,
    /// Reasons with at least one drop (from the kernel's reason array and reason hash).
    pub per_reason: BTreeMap<u32, ReasonCounter>,
    /// Every drop the program saw: the per-reason counts plus `reason_map_full` (the kernel
    /// counts each drop exactly once, in one of those).
    pub seen: u64,
    pub ring_full: u64,
    pub read_failed: u64,
    pub reason_map_full: u64,
    /// Nested runs the program's own guard turned away (not in `seen`).
    pub nested: u64,
    /// The tc programs' counts (`--packets`), per interface and direction.
    pub packets: BTreeMap<PktKey, PktCounter>,
    /// Packets not counted per interface (`PKT_COUNTS` full).
    pub packet_map_full: u64,
}

/// Builds the event for one record; `data` holds exactly the captured bytes.
pub fn to_event(ev: &KfreeSkbEvent, data: bytes::Bytes, clock: ClockOffset) -> Event {
    let cause = Cause::Kernel {
        reason: ev.reason,
        location: ev.location,
        protocol: u16::from_be(ev.protocol),
    };
    let where_ = (ev.ifindex, ev.netns_ino, ev.orig_len, ev.flags);
    record_event(&ev.hdr, where_, data, clock, cause)
}

/// Builds the event for one packet record (`--packets`).
pub fn packet_event(ev: &PacketEvent, data: bytes::Bytes, clock: ClockOffset) -> Event {
    let dir = if ev.direction == DIR_OUTBOUND {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let where_ = (ev.ifindex, ev.netns_ino, ev.orig_len, ev.flags);
    record_event(&ev.hdr, where_, data, clock, Cause::Packet { dir })
}

/// What both record kinds share: header, (ifindex, netns, original length, flags).
#[inline]
fn record_event(
    hdr: &capture_common::RecordHeader,
    (ifindex, netns, orig_len, flags): (u32, u32, u32, u8),
    data: bytes::Bytes,
    clock: ClockOffset,
    cause: Cause,
) -> Event {
    Event {
        meta: None,
        ts_ns: clock.to_unix_ns(hdr.ts_ns),
        ifindex,
        netns,
        cpu: hdr.cpu,
        orig_len: orig_len.max(data.len() as u32),
        link: if flags & FLAG_L3 != 0 {
            LinkType::RawIp
        } else {
            LinkType::Ethernet
        },
        data,
        cause,
    }
}

/// The (interface, namespace, direction) key of a packet record.
pub fn packet_key(ev: &PacketEvent) -> PktKey {
    PktKey {
        ifindex: ev.ifindex,
        netns_ino: ev.netns_ino,
        direction: u32::from(ev.direction),
    }
}

/// One decoded record waiting for its batch's shared buffer.
struct Pending {
    ev: Record,
    start: usize,
    len: usize,
}

/// Accumulates records into batches: packet bytes go into one `BytesMut` per batch. Drops
/// the kernel left to user space to count (no `FLAG_COUNTED`) are counted here, per kernel
/// table key, in `flows`.
pub struct BatchBuilder {
    pending: Vec<Pending>,
    buf: BytesMut,
    max: usize,
    clock: ClockOffset,
    pub stats: SourceStats,
    pub flows: crate::kernel::storm::KernelFlows,
}

impl BatchBuilder {
    pub fn new(max: usize, clock: ClockOffset) -> Self {
        Self::with_rows(max, clock, 1 << 20)
    }

    /// Like [`BatchBuilder::new`], keeping at most `rows` user-counted table rows.
    pub fn with_rows(max: usize, clock: ClockOffset, rows: usize) -> Self {
        let max = max.max(1);
        BatchBuilder {
            pending: Vec::with_capacity(max),
            buf: BytesMut::new(),
            max,
            clock,
            stats: SourceStats::default(),
            flows: crate::kernel::storm::KernelFlows::new(rows),
        }
    }

    /// Decodes one record; malformed ones are counted and skipped. Returns true when the
    /// batch is full.
    pub fn push(&mut self, rec: &[u8]) -> bool {
        match record::parse_any(rec) {
            Ok((Record::Packet(p), packet)) => {
                let start = self.buf.len();
                self.buf.extend_from_slice(packet);
                self.pending.push(Pending {
                    ev: Record::Packet(p),
                    start,
                    len: packet.len(),
                });
            }
            Ok((Record::Drop(ev), packet)) => {
                if ev.flags & FLAG_COUNTED == 0 {
                    self.flows.add_record(
                        crate::kernel::storm::key_of_record(&ev, packet),
                        ev.orig_len,
                        self.clock.to_unix_ns(ev.hdr.ts_ns),
                    );
                }
                let start = self.buf.len();
                self.buf.extend_from_slice(packet);
                self.pending.push(Pending {
                    ev: Record::Drop(ev),
                    start,
                    len: packet.len(),
                });
            }
            Err(e) => self.stats.malformed.count(e),
        }
        self.pending.len() >= self.max
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Turns the pending records into a batch (one shared buffer, sliced per event), in time
    /// order: the per-CPU rings come in one CPU after another.
    pub fn take(&mut self) -> Batch {
        // Stable and run-aware: already-sorted runs (one per CPU) merge in linear time.
        self.pending.sort_by_key(|p| p.ev.header().ts_ns);
        // The next batch likely needs about as many bytes: allocate them once, up front.
        let next = BytesMut::with_capacity(self.buf.len());
        let bytes = std::mem::replace(&mut self.buf, next).freeze();
        let mut batch = Batch::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            let data = bytes.slice(p.start..p.start + p.len);
            match &p.ev {
                Record::Drop(ev) => {
                    *self.stats.delivered.entry(ev.reason).or_insert(0) += 1;
                    batch.events.push(to_event(ev, data, self.clock));
                }
                Record::Packet(ev) => {
                    *self
                        .stats
                        .packets_delivered
                        .entry(packet_key(ev))
                        .or_insert(0) += 1;
                    batch.events.push(packet_event(ev, data, self.clock));
                }
            }
        }
        self.stats.batches += 1;
        batch
    }
}

/// The kernel drop source.
pub struct KernelSource {
    // Field order matters: the mappings go before the maps whose fds they came from.
    rings: PerCpuRings,
    _ring_maps: (MapData, MapData),
    table: KernelTable,
    ring_fence: RcuFence,
    ebpf: Ebpf,
    attached: Option<Attached>,
    mode: AttachMode,
    config: ProbeConfig,
    misses_at_start: Option<u64>,
    misses_at_end: Option<u64>,
    profile: StormProfile,
    clock: ClockOffset,
    max_rows: usize,
    filter_fallback: Option<String>,
    /// The tc programs' links (`--packets`), removed on stop before the last drain.
    packets: Option<PacketLinks>,
    /// Every (interface, direction) the tc programs were attached to, for the ledger.
    packet_keys: Vec<PktKey>,
    /// A live consumer of each drained generation (`dropscope serve`), and its gauges.
    live: Option<(GenerationHook, std::sync::Arc<LiveGauges>)>,
    /// The pause between passes once the rings have been empty for [`IDLE_PASSES`] passes
    /// ([`KernelSource::idle_poll`]); `None`: always [`POLL_INTERVAL`].
    idle_poll: Option<Duration>,
}

/// What the table thread hands a live consumer after each drain of a generation.
pub struct GenerationTick<'a> {
    /// The generation just drained (CPUs merged): its counts, and only its.
    pub flows: &'a crate::kernel::storm::KernelFlows,
    /// The kernel's per-reason counters, totals since the program was loaded.
    pub reasons: &'a BTreeMap<u32, ReasonCounter>,
    /// Entries the drained generation held.
    pub entries: usize,
}

/// Called by the table thread after every drain ([`KernelSource::live`]).
pub type GenerationHook = Box<dyn FnMut(&GenerationTick<'_>) + Send>;

/// Gauges the ring reader keeps up to date while a live consumer is set.
#[derive(Debug, Default)]
pub struct LiveGauges {
    /// Per CPU: bytes in the ring not yet read.
    pub ring_used: Vec<std::sync::atomic::AtomicU64>,
    /// Bytes of each CPU's ring.
    pub ring_bytes: std::sync::atomic::AtomicU64,
    /// Runs the kernel skipped since the load (`u64::MAX`: the kernel does not say).
    pub recursion_misses: std::sync::atomic::AtomicU64,
    /// Malformed records skipped.
    pub malformed: std::sync::atomic::AtomicU64,
}

/// Takes a map of any of the kinds the program defines out of the object.
fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, SourceError> {
    match ebpf.take_map(name) {
        Some(Map::Array(d))
        | Some(Map::HashMap(d))
        | Some(Map::PerCpuArray(d))
        | Some(Map::PerCpuHashMap(d)) => Ok(d),
        Some(_) => Err(SourceError::Map {
            name,
            message: "not a map of the expected kind".to_string(),
        }),
        None => Err(SourceError::MissingMap { name }),
    }
}

/// Takes a map out of the object as it is (for aya's typed wrappers over `&Map`).
fn take_any(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, SourceError> {
    ebpf.take_map(name).ok_or(SourceError::MissingMap { name })
}

/// The attached program's `recursion_misses`, if the kernel reports it.
fn recursion_misses(ebpf: &Ebpf, mode: AttachMode) -> Option<u64> {
    let name = match mode {
        AttachMode::Tracepoint => PROG_TRACEPOINT,
        _ => PROG_TP_BTF,
    };
    let prog = ebpf.program(name)?;
    let fd = prog.fd().ok()?;
    match bpfsys::prog_recursion_misses(fd.as_fd()) {
        Ok(m) => m,
        Err(e) => {
            log::debug!("Reading {name}'s recursion_misses failed: {e}.");
            None
        }
    }
}

/// Follows each CPU's storm switch from its ring positions (looked at on every pass over
/// the rings) and turns it into spans of time.
struct StormWatch {
    /// Per CPU: (last storm_since seen, last storm_count seen, open span index).
    cpus: Vec<(u64, u64, Option<usize>)>,
    spans: Vec<StormSpan>,
    /// Spans not kept (the list is bounded); their storms are still in the CPU totals.
    dropped_spans: u64,
}

/// Most spans kept in the profile.
const MAX_STORM_SPANS: usize = 10_000;

impl StormWatch {
    fn new(cpus: u32) -> Self {
        StormWatch {
            cpus: vec![(0, 0, None); cpus as usize],
            spans: Vec::new(),
            dropped_spans: 0,
        }
    }

    fn look(&mut self, rings: &PerCpuRings, clock: ClockOffset) {
        for (cpu, st) in self.cpus.iter_mut().enumerate() {
            let (since, count, _) = rings.storm_state(cpu as u32);
            let (last_since, last_count, open) = *st;
            if since == last_since && count == last_count {
                continue;
            }
            let began = count.saturating_sub(last_count);
            match open {
                Some(i) => {
                    if let Some(sp) = self.spans.get_mut(i) {
                        sp.storms += began;
                        if since == 0 {
                            sp.end_ns = Some(clock.to_unix_ns(mono_now()));
                            st.2 = None;
                        }
                    }
                }
                None if began > 0 || since != 0 => {
                    let start = if since != 0 { since } else { mono_now() };
                    let span = StormSpan {
                        cpu: cpu as u32,
                        start_ns: clock.to_unix_ns(start),
                        end_ns: (since == 0).then(|| clock.to_unix_ns(mono_now())),
                        storms: began.max(1),
                    };
                    if self.spans.len() < MAX_STORM_SPANS {
                        self.spans.push(span);
                        if since != 0 {
                            st.2 = Some(self.spans.len() - 1);
                        }
                    } else {
                        self.dropped_spans += 1;
                    }
                }
                None => {}
            }
            st.0 = since;
            st.1 = count;
        }
    }
}

fn mono_now() -> u64 {
    u64::try_from(crate::timefmt::clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

impl KernelSource {
    /// Loads and attaches the kfree_skb program. `max_rows`: rows the user-space copy of the
    /// kernel flow table keeps before folding new keys per reason.
    pub fn open(opts: &LoadOptions, max_rows: usize) -> Result<Self, SourceError> {
        let loader::Loaded {
            mut ebpf,
            attached,
            config,
            cpus,
            filter_fallback,
            packets,
        } = loader::load_and_attach(opts)?;
        let packet_keys = packets
            .as_ref()
            .map(|p| {
                p.ifaces()
                    .map(|(i, dir)| PktKey {
                        ifindex: i.ifindex,
                        netns_ino: i.netns_ino,
                        direction: u32::from(dir),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let data = take_map(&mut ebpf, MAP_RING_DATA)?;
        let pos = take_map(&mut ebpf, MAP_RING_POS)?;
        // SAFETY: these are the program's RING_DATA and RING_POS maps, created by
        // load_object with `cpus * ring_blocks` and `cpus` elements; they live in this
        // struct after the mapping (field order), so they outlive it.
        let rings = unsafe {
            PerCpuRings::map(
                data.fd().as_fd(),
                pos.fd().as_fd(),
                cpus,
                config.ring_blocks,
            )
        }
        .map_err(SourceError::Mmap)?;
        let table = KernelTable::new(
            [
                take_map(&mut ebpf, MAP_FLOWS_0)?,
                take_map(&mut ebpf, MAP_FLOWS_1)?,
            ],
            [
                take_any(&mut ebpf, MAP_CACHE_0)?,
                take_any(&mut ebpf, MAP_CACHE_1)?,
            ],
            [
                take_map(&mut ebpf, MAP_BUDGET_0)?,
                take_map(&mut ebpf, MAP_BUDGET_1)?,
            ],
            take_map(&mut ebpf, MAP_FLOW_GEN)?,
            take_any(&mut ebpf, MAP_REASON_ARRAY)?,
            take_any(&mut ebpf, MAP_REASON_COUNTS)?,
        )
        .map_err(SourceError::Table)?;
        let ring_fence = RcuFence::new().map_err(SourceError::Table)?;
        let mode = attached.mode();
        let misses_at_start = recursion_misses(&ebpf, mode);
        let policy = CopyPolicy {
            exemplars: opts.exemplars,
            auto_storm: (config.storm_on_bytes != 0).then_some(config.storm_exemplars),
            kernel_flows: opts.kernel_flows,
        };
        Ok(KernelSource {
            rings,
            _ring_maps: (data, pos),
            table,
            ring_fence,
            ebpf,
            attached: Some(attached),
            mode,
            config,
            misses_at_start,
            misses_at_end: None,
            profile: StormProfile::new(policy, max_rows),
            clock: ClockOffset::now(),
            max_rows,
            filter_fallback,
            packets,
            packet_keys,
            live: None,
            idle_poll: None,
        })
    }

    /// Once the rings have been empty for [`IDLE_PASSES`] passes in a row, polls them every
    /// `every` instead of every [`POLL_INTERVAL`] (back at once when a pass finds records):
    /// a long-running agent (`dropscope serve`) on a quiet node then wakes up far less.
    pub fn idle_poll(&mut self, every: Duration) {
        self.idle_poll = Some(every);
    }

    /// Hands every drained generation of the kernel flow table to `hook` (on the table
    /// thread) instead of adding it to [`KernelSource::profile`], and keeps no per-second
    /// series: memory stays bounded however long [`KernelSource::run`] goes on (`dropscope
    /// serve`). Returns the gauges the ring reader keeps up to date.
    pub fn live(&mut self, hook: GenerationHook) -> std::sync::Arc<LiveGauges> {
        let g = std::sync::Arc::new(LiveGauges {
            ring_used: (0..self.rings.cpus())
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            ring_bytes: std::sync::atomic::AtomicU64::new(self.rings.bytes_per_cpu()),
            recursion_misses: std::sync::atomic::AtomicU64::new(u64::MAX),
            malformed: std::sync::atomic::AtomicU64::new(0),
        });
        self.live = Some((hook, g.clone()));
        g
    }

    /// The tc programs' links (`--packets`), while attached.
    pub fn packet_links(&self) -> Option<&PacketLinks> {
        self.packets.as_ref()
    }

    /// Every (interface, direction) the tc programs were attached to.
    pub fn packet_keys(&self) -> &[PktKey] {
        &self.packet_keys
    }

    /// The program's pod selection (`POD_SELECT`), to add pods to while it runs; taken once.
    pub fn take_pod_map(
        &mut self,
    ) -> Result<aya::maps::HashMap<MapData, capture_common::PodKey, u8>, SourceError> {
        let name = capture_common::MAP_POD_SELECT;
        let data = take_map(&mut self.ebpf, name)?;
        aya::maps::HashMap::try_from(Map::HashMap(data)).map_err(|e| SourceError::Map {
            name,
            message: e.to_string(),
        })
    }

    /// The hook actually used (`TpBtf` or `Tracepoint`).
    /// Why the filter expression runs in user space, when the kernel refused it.
    pub fn filter_fallback(&self) -> Option<&str> {
        self.filter_fallback.as_deref()
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The configuration written into the program.
    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// Whether the program is still attached.
    pub fn is_attached(&self) -> bool {
        self.attached.is_some()
    }

    /// The storm profile gathered by [`KernelSource::run`].
    pub fn profile(&self) -> &StormProfile {
        &self.profile
    }

    /// The storm profile gathered by [`KernelSource::run`] (taken: a second call gets an
    /// empty one).
    pub fn take_profile(&mut self) -> StormProfile {
        let empty = StormProfile::new(self.profile.policy, 1);
        std::mem::replace(&mut self.profile, empty)
    }

    /// Reads the rings until `stop` is set, sending batches of at most `batch_max` events,
    /// while a second thread switches and drains the kernel flow table every second.
    /// On stop: detaches the program, waits until no run is in flight, drains the rings and
    /// both table generations completely, then returns.
    pub fn run(
        &mut self,
        tx: &Sender<Batch>,
        stop: &AtomicBool,
        batch_max: usize,
    ) -> Result<SourceStats, SourceError> {
        let clock = self.clock;
        let max_rows = self.max_rows;
        let mut builder = BatchBuilder::with_rows(batch_max, clock, max_rows);
        let detached = AtomicBool::new(false);
        let KernelSource {
            rings,
            table,
            ring_fence,
            ebpf,
            attached,
            profile,
            misses_at_end,
            mode,
            packets,
            live,
            misses_at_start,
            idle_poll,
            ..
        } = self;
        let (hook, gauges) = match live.as_mut() {
            Some((h, g)) => (Some(h), Some(g.clone())),
            None => (None, None),
        };
        let mut gauges_at = Instant::now();
        let idle_poll = *idle_poll;
        let mut idle_passes = 0u32;
        let mut watch = StormWatch::new(rings.cpus());
        // A live consumer gets the drops user space counted from their copies (those the
        // kernel left uncounted: no `FLAG_COUNTED`) with each generation, not at the end.
        let user_counted = hook
            .is_some()
            .then(|| std::sync::Mutex::new(crate::kernel::storm::KernelFlows::new(usize::MAX)));
        let hand_over = |builder: &mut BatchBuilder| {
            if let Some(u) = &user_counted {
                if !builder.flows.is_empty() {
                    let f = std::mem::replace(
                        &mut builder.flows,
                        crate::kernel::storm::KernelFlows::new(max_rows),
                    );
                    u.lock().unwrap_or_else(|e| e.into_inner()).merge(f);
                }
            }
        };
        let (ring_result, table_result) = std::thread::scope(|s| {
            let det = &detached;
            let flows = &mut profile.flows;
            let series = &mut profile.series;
            let uc = user_counted.as_ref();
            let th = std::thread::Builder::new()
                .name("dropscope-table".into())
                .spawn_scoped(s, move || {
                    table_loop(table, flows, series, det, clock, hook, uc)
                });
            let r = (|| -> Result<(), SourceError> {
                loop {
                    watch.look(rings, clock);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(g) = gauges
                        .as_ref()
                        .filter(|_| gauges_at.elapsed() >= GAUGE_INTERVAL)
                    {
                        gauges_at = Instant::now();
                        for (cpu, u) in g.ring_used.iter().enumerate() {
                            u.store(rings.used(cpu as u32), Ordering::Relaxed);
                        }
                        let misses = match (*misses_at_start, recursion_misses(ebpf, *mode)) {
                            (Some(a), Some(b)) => b.saturating_sub(a),
                            _ => u64::MAX,
                        };
                        g.recursion_misses.store(misses, Ordering::Relaxed);
                        g.malformed
                            .store(builder.stats.malformed.total(), Ordering::Relaxed);
                    }
                    let consumed = drain(rings, &mut builder, tx)?;
                    hand_over(&mut builder);
                    idle_passes = if consumed == 0 {
                        idle_passes.saturating_add(1)
                    } else {
                        0
                    };
                    if consumed < BUSY_PASS_BYTES {
                        std::thread::sleep(match idle_poll {
                            Some(p) if idle_passes >= IDLE_PASSES => p,
                            _ => POLL_INTERVAL,
                        });
                    }
                }
                Ok(())
            })();
            // Detach on every path, so the table's final drain is exact.
            let d = detach(ebpf, attached).and(detach_packets(ebpf, packets));
            *misses_at_end = recursion_misses(ebpf, *mode);
            let r = r.and(d).and_then(|()| {
                ring_fence.wait().map_err(SourceError::Table)?;
                drain(rings, &mut builder, tx).map(|_| ())
            });
            hand_over(&mut builder);
            watch.look(rings, clock);
            detached.store(true, Ordering::Release);
            let t = match th {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the table thread panicked"))),
                Err(e) => Err(e),
            };
            (r, t)
        });
        ring_result?;
        let (generations, peak) = table_result.map_err(SourceError::Table)?;
        let counted_here = std::mem::replace(
            &mut builder.flows,
            crate::kernel::storm::KernelFlows::new(1),
        );
        self.profile.flows.merge(counted_here);
        self.profile.generations = generations;
        self.profile.peak_entries = peak;
        self.profile.storm_spans = watch.spans;
        let end = mono_now();
        self.profile.storm_cpus = (0..self.rings.cpus())
            .map(|cpu| {
                let (since, storms, total) = self.rings.storm_state(cpu);
                StormCpu {
                    cpu,
                    storms,
                    // A storm still on when the program was detached lasted to then.
                    total_ns: total
                        + if since != 0 {
                            end.saturating_sub(since)
                        } else {
                            0
                        },
                }
            })
            .collect();
        for sp in &mut self.profile.storm_spans {
            if sp.end_ns.is_none() {
                sp.end_ns = Some(clock.to_unix_ns(end));
            }
        }
        self.profile.recursion_misses = match (self.misses_at_start, self.misses_at_end) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Ok(builder.stats)
    }

    /// Detaches the kfree_skb program and the tc programs (idempotent).
    pub fn detach(&mut self) -> Result<(), SourceError> {
        detach(&mut self.ebpf, &mut self.attached)
            .and(detach_packets(&mut self.ebpf, &mut self.packets))
    }

    /// The kernel program's counters, summed over CPUs.
    pub fn kernel_counters(&self) -> Result<KernelCounters, SourceError> {
        let mut out = KernelCounters::default();
        let stats_map = self
            .ebpf
            .map(MAP_STATS)
            .ok_or(SourceError::MissingMap { name: MAP_STATS })?;
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(stats_map).map_err(|e| SourceError::Map {
                name: MAP_STATS,
                message: e.to_string(),
            })?;
        let stat = |i: u32| -> Result<u64, SourceError> {
            let values = stats.get(&i, 0).map_err(|e| SourceError::Map {
                name: MAP_STATS,
                message: e.to_string(),
            })?;
            Ok(values.iter().sum())
        };
        out.ring_full = stat(STAT_RING_FULL)?;
        out.read_failed = stat(STAT_READ_FAILED)?;
        out.reason_map_full = stat(STAT_REASON_MAP_FULL)?;
        out.nested = stat(STAT_NESTED)?;
        out.packet_map_full = stat(STAT_PKT_MAP_FULL)?;
        if let Some(map) = self.ebpf.map(MAP_PKT_COUNTS) {
            let fail = |e: aya::maps::MapError| SourceError::Map {
                name: MAP_PKT_COUNTS,
                message: e.to_string(),
            };
            let counts: PerCpuHashMap<&MapData, PktKey, PktCounter> =
                PerCpuHashMap::try_from(map).map_err(fail)?;
            for item in counts.iter() {
                let (k, per_cpu) = item.map_err(fail)?;
                let mut sum = PktCounter::default();
                for c in per_cpu.iter() {
                    sum.seen += c.seen;
                    sum.filtered += c.filtered;
                    sum.ring_full += c.ring_full;
                    sum.busy += c.busy;
                }
                out.packets.insert(k, sum);
            }
        }
        out.per_reason = self.table.reason_counters().map_err(|e| SourceError::Map {
            name: MAP_REASON_ARRAY,
            message: e.to_string(),
        })?;
        out.seen = out
            .per_reason
            .values()
            .fold(out.reason_map_full, |acc, c| acc.saturating_add(c.seen));
        out.recursion_misses = self.profile.recursion_misses;
        Ok(out)
    }
}

/// Detaches the kfree_skb program (idempotent).
fn detach(ebpf: &mut Ebpf, attached: &mut Option<Attached>) -> Result<(), SourceError> {
    let Some(a) = attached.take() else {
        return Ok(());
    };
    let res = match a {
        Attached::TpBtf(link) => {
            let prog: Result<&mut BtfTracePoint, _> = ebpf
                .program_mut(PROG_TP_BTF)
                .ok_or_else(|| "program missing".to_string())
                .and_then(|p| {
                    p.try_into()
                        .map_err(|e: aya::programs::ProgramError| e.to_string())
                });
            prog.and_then(|p| p.detach(link).map_err(|e| e.to_string()))
        }
        Attached::Tracepoint(link) => {
            let prog: Result<&mut TracePoint, _> = ebpf
                .program_mut(PROG_TRACEPOINT)
                .ok_or_else(|| "program missing".to_string())
                .and_then(|p| {
                    p.try_into()
                        .map_err(|e: aya::programs::ProgramError| e.to_string())
                });
            prog.and_then(|p| p.detach(link).map_err(|e| e.to_string()))
        }
    };
    res.map_err(SourceError::Detach)
}

/// Removes the tc programs' links (idempotent).
fn detach_packets(ebpf: &mut Ebpf, packets: &mut Option<PacketLinks>) -> Result<(), SourceError> {
    match packets.as_mut() {
        Some(links) => super::packets::detach(ebpf, links).map_err(SourceError::Detach),
        None => Ok(()),
    }
}

/// Reads every record now in the rings, sending full batches and then the remainder;
/// returns the bytes consumed.
fn drain(
    rings: &mut PerCpuRings,
    builder: &mut BatchBuilder,
    tx: &Sender<Batch>,
) -> Result<u64, SourceError> {
    let mut sent: Result<(), SourceError> = Ok(());
    let bad_before = rings.stats().bad_frames;
    let consumed = rings.drain(|rec| {
        if builder.push(rec) && sent.is_ok() {
            sent = send(builder, tx);
        }
    });
    builder.stats.malformed.bad_frame += rings.stats().bad_frames - bad_before;
    sent?;
    if !builder.is_empty() {
        send(builder, tx)?;
    }
    Ok(consumed)
}

/// The table thread: every [`TABLE_INTERVAL`] switches generations, drains the old one and
/// adds a point to the per-second series; after `detached`, drains both generations for the
/// last time. Returns (generations drained, most entries in one).
fn table_loop(
    table: &mut KernelTable,
    flows: &mut crate::kernel::storm::KernelFlows,
    series: &mut Vec<SeriesPoint>,
    detached: &AtomicBool,
    clock: ClockOffset,
    mut hook: Option<&mut GenerationHook>,
    user_counted: Option<&std::sync::Mutex<crate::kernel::storm::KernelFlows>>,
) -> std::io::Result<(u64, usize)> {
    if let Some(h) = hook.as_mut() {
        return live_table_loop(table, detached, clock, h, user_counted);
    }
    let mut prev: BTreeMap<u32, u64> = BTreeMap::new();
    let mut last = Instant::now();
    let mut sample = |table: &KernelTable, last: &mut Instant| -> std::io::Result<()> {
        let now = Instant::now();
        let counts = table.reason_counters()?;
        let mut drops = Vec::new();
        for (r, c) in &counts {
            let before = prev.get(r).copied().unwrap_or(0);
            if c.seen > before {
                drops.push((*r, c.seen - before));
            }
            prev.insert(*r, c.seen);
        }
        series.push(SeriesPoint {
            t_ns: clock.to_unix_ns(mono_now()),
            dt_ns: u64::try_from(now.duration_since(*last).as_nanos()).unwrap_or(u64::MAX),
            drops,
        });
        *last = now;
        Ok(())
    };
    loop {
        while last.elapsed() < TABLE_INTERVAL && !detached.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if detached.load(Ordering::Acquire) {
            break;
        }
        table.rotate(flows, clock)?;
        sample(table, &mut last)?;
    }
    table.finish(flows, clock)?;
    sample(table, &mut last)?;
    Ok((table.generations, table.peak_entries))
}

/// [`table_loop`] for a live consumer: each drained generation goes to `hook`, nothing is
/// kept here.
fn live_table_loop(
    table: &mut KernelTable,
    detached: &AtomicBool,
    clock: ClockOffset,
    hook: &mut GenerationHook,
    user_counted: Option<&std::sync::Mutex<crate::kernel::storm::KernelFlows>>,
) -> std::io::Result<(u64, usize)> {
    let mut last = Instant::now();
    let mut hand = |table: &mut KernelTable, last_drain: bool| -> std::io::Result<()> {
        let mut gen = crate::kernel::storm::KernelFlows::new(usize::MAX);
        let entries = if last_drain {
            table.finish(&mut gen, clock)?
        } else {
            table.rotate(&mut gen, clock)?
        };
        if let Some(u) = user_counted {
            let counted = std::mem::replace(
                &mut *u.lock().unwrap_or_else(|e| e.into_inner()),
                crate::kernel::storm::KernelFlows::new(usize::MAX),
            );
            gen.merge(counted);
        }
        let reasons = table.reason_counters()?;
        hook(&GenerationTick {
            flows: &gen,
            reasons: &reasons,
            entries,
        });
        Ok(())
    };
    loop {
        while last.elapsed() < TABLE_INTERVAL && !detached.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if detached.load(Ordering::Acquire) {
            break;
        }
        last = Instant::now();
        hand(table, false)?;
    }
    hand(table, true)?;
    Ok((table.generations, table.peak_entries))
}

fn send(builder: &mut BatchBuilder, tx: &Sender<Batch>) -> Result<(), SourceError> {
    let batch = builder.take();
    tx.send(batch).map_err(|_| SourceError::ReceiverGone {
        delivered: builder.stats.delivered_total(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_common::{RecordHeader, ABI_VERSION, FLAG_L3, KIND_KFREE_SKB};

    fn ev(reason: u32, cap: u16, flags: u8) -> KfreeSkbEvent {
        KfreeSkbEvent {
            hdr: RecordHeader {
                version: ABI_VERSION,
                kind: KIND_KFREE_SKB,
                hdr_len: 48,
                cpu: 3,
                ts_ns: 1_000,
            },
            location: 0xffff_ffff_8100_0010,
            reason,
            ifindex: 4,
            netns_ino: 4026532000,
            orig_len: 1500,
            cap_len: cap,
            protocol: 0x0008, // ETH_P_IP as stored (big endian) on a little-endian host
            flags,
            _pad: 0,
            net_off: 0,
        }
    }

    fn rec(e: &KfreeSkbEvent, pkt: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        record::encode(e, pkt, &mut v);
        v
    }

    #[test]
    fn events_share_one_buffer_and_keep_their_bytes() {
        let mut b = BatchBuilder::new(10, ClockOffset::from_offset(5_000));
        assert!(!b.push(&rec(&ev(3, 3, 0), &[1, 2, 3])));
        assert!(!b.push(&rec(&ev(73, 2, FLAG_L3), &[9, 8])));
        assert!(!b.push(&[1, 2, 3])); // too short: counted, skipped
        let batch = b.take();
        assert_eq!(batch.events.len(), 2);
        let e0 = &batch.events[0];
        assert_eq!(&e0.data[..], &[1, 2, 3]);
        assert_eq!(e0.ts_ns, 6_000);
        assert_eq!(e0.link, LinkType::Ethernet);
        assert_eq!(e0.cpu, 3);
        assert_eq!(e0.ifindex, 4);
        assert_eq!(e0.netns, 4026532000);
        assert_eq!(e0.orig_len, 1500);
        assert_eq!(
            e0.cause,
            Cause::Kernel {
                reason: 3,
                location: 0xffff_ffff_8100_0010,
                protocol: 0x0800
            }
        );
        let e1 = &batch.events[1];
        assert_eq!(&e1.data[..], &[9, 8]);
        assert_eq!(e1.link, LinkType::RawIp);
        // Both slices point into one allocation.
        assert_eq!(e0.data.as_ptr().wrapping_add(3), e1.data.as_ptr());
        assert_eq!(b.stats.delivered, BTreeMap::from([(3, 1), (73, 1)]));
        assert_eq!(
            b.stats.malformed,
            MalformedCounts {
                too_short: 1,
                ..Default::default()
            }
        );
        assert_eq!(b.stats.batches, 1);
    }

    #[test]
    fn batch_fills_at_max() {
        let mut b = BatchBuilder::new(2, ClockOffset::from_offset(0));
        assert!(!b.push(&rec(&ev(3, 0, 0), &[])));
        assert!(b.push(&rec(&ev(3, 0, 0), &[])));
        assert_eq!(b.take().events.len(), 2);
        assert!(b.is_empty());
    }

    #[test]
    fn malformed_kinds_are_counted() {
        let mut b = BatchBuilder::new(8, ClockOffset::from_offset(0));
        let mut bad_version = rec(&ev(3, 0, 0), &[]);
        bad_version[0] = ABI_VERSION + 1;
        let mut bad_kind = rec(&ev(3, 0, 0), &[]);
        bad_kind[1] = 9;
        let mut bad_hdr = rec(&ev(3, 0, 0), &[]);
        bad_hdr[2] = 1;
        let short = rec(&ev(3, 0, 0), &[]);
        for r in [&bad_version[..], &bad_kind[..], &bad_hdr[..], &short[..20]] {
            b.push(r);
        }
        assert!(b.is_empty());
        assert_eq!(
            b.stats.malformed,
            MalformedCounts {
                too_short: 1,
                bad_version: 1,
                bad_kind: 1,
                bad_header_len: 1,
                bad_frame: 0,
            }
        );
        assert_eq!(b.stats.malformed.total(), 4);
    }

    #[test]
    fn orig_len_never_below_captured() {
        let mut e = ev(3, 4, 0);
        e.orig_len = 1;
        let event = to_event(
            &e,
            bytes::Bytes::from_static(&[1, 2, 3, 4]),
            ClockOffset::from_offset(0),
        );
        assert_eq!(event.orig_len, 4);
    }

    #[test]
    fn clock_offset_saturates() {
        assert_eq!(ClockOffset::from_offset(-10).to_unix_ns(5), 0);
        assert_eq!(
            ClockOffset::from_offset(i128::from(u64::MAX)).to_unix_ns(5),
            u64::MAX
        );
        let now = ClockOffset::now();
        // Unix time now is after 2020 and the monotonic clock is smaller than it.
        assert!(
            now.to_unix_ns(crate::timefmt::clock_ns(libc::CLOCK_MONOTONIC) as u64)
                > 1_577_836_800_000_000_000
        );
    }
}
