//! `dropscope serve`: the long-running agent. The kernel program is attached once, in storm
//! mode (every drop counted per flow in the kernel, an exemplar budget on what is copied);
//! Cilium's monitor socket is read too when it is there. The counts are kept in bounded
//! memory for the metrics ([`State::metrics`]: exact totals per reason, per-label series
//! bounded by `--metrics-max-series`) and the heavy hitters ([`flows::HeavyHitters`]), and
//! the events read are offered to the capture sessions ([`session`]).
//!
//! Threads: the kernel source's ring reader and table drainer, the Cilium socket reader,
//! and [`run`]'s dispatch loop (sessions, Cilium counts) are the capture side; the HTTP
//! server (in the CLI) only reads [`State`] under its locks, never blocking the capture for
//! longer than a snapshot copy.
//!
//! Nothing lower in the engine imports this module.

pub mod expo;
pub mod flows;
pub mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use capture_common::{KFlowKey, ReasonCounter};
use crossbeam_channel::{bounded, RecvTimeoutError};

use crate::aggregate::ReasonKey;
use crate::event::{Batch, Cause, Notice};
use crate::kernel::loader::{AttachMode, KernelSelect, LoadOptions};
use crate::kernel::source::{GenerationTick, KernelSource, LiveGauges};
use crate::lookup::Names;
use crate::render::Renderer;
use expo::{Family, Kind};
use flows::{HeavyHitters, Series, SeriesKey};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub snaplen: u32,
    pub ring_bytes_per_cpu: u64,
    pub kernel_flows: u32,
    /// Packets per flow x reason x site and second copied to the ring.
    pub exemplars: u32,
    /// Heavy-hitter rows kept.
    pub max_flows: usize,
    /// Series of the per-interface drop counters.
    pub max_series: usize,
    /// Cilium's monitor socket, read when it exists.
    pub cilium_socket: Option<PathBuf>,
    pub cilium_release: crate::cilium::tables::CiliumRelease,
}

/// Everything the HTTP side reads.
pub struct State {
    pub names: Arc<Names>,
    pub options: ServeOptions,
    pub sessions: session::Sessions,
    metrics: Mutex<Metrics>,
    flows: Mutex<HeavyHitters>,
    gauges: Mutex<Option<Arc<LiveGauges>>>,
    started: Instant,
}

#[derive(Debug)]
struct Metrics {
    /// The kernel's per-reason counters as last read (totals since the load).
    kernel: BTreeMap<u32, ReasonCounter>,
    /// Bytes per reason from the drained table (drops the table had no room for are not in
    /// it).
    kernel_bytes: BTreeMap<u32, u64>,
    /// `table_full` per reason already added to the series.
    table_full_seen: BTreeMap<u32, u64>,
    /// Cilium drop notifications per code: (drops, bytes).
    cilium: BTreeMap<u8, (u64, u64)>,
    cilium_lost: u64,
    cilium_connected: bool,
    cilium_reconnects: Arc<std::sync::atomic::AtomicU64>,
    series: Series,
    table_entries: usize,
    generations: u64,
    events_read: u64,
}

impl State {
    pub fn new(names: Arc<Names>, options: ServeOptions, sessions: session::Sessions) -> State {
        State {
            metrics: Mutex::new(Metrics {
                kernel: BTreeMap::new(),
                kernel_bytes: BTreeMap::new(),
                table_full_seen: BTreeMap::new(),
                cilium: BTreeMap::new(),
                cilium_lost: 0,
                cilium_connected: false,
                cilium_reconnects: Arc::new(std::sync::atomic::AtomicU64::new(0)),
                series: Series::new(options.max_series),
                table_entries: 0,
                generations: 0,
                events_read: 0,
            }),
            flows: Mutex::new(HeavyHitters::new(options.max_flows)),
            gauges: Mutex::new(None),
            started: Instant::now(),
            names,
            options,
            sessions,
        }
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heavy(&self) -> std::sync::MutexGuard<'_, HeavyHitters> {
        self.flows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn iface_label(&self, ifindex: u32, netns: u32) -> String {
        self.names.ifnames.display(ifindex, netns)
    }

    fn pod_label(&self, ifindex: u32, netns: u32) -> String {
        match &self.names.pods {
            Some(p) => p
                .snapshot()
                .at(netns, ifindex, p.host_netns())
                .map(|pod| pod.to_string())
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// One drained generation of the kernel table (the table thread).
    fn on_generation(&self, t: &GenerationTick<'_>) {
        // Labels first, outside the locks: one lookup per (interface, namespace).
        let mut labels: BTreeMap<(u32, u32), (String, String)> = BTreeMap::new();
        let mut adds: BTreeMap<(u32, u32, u32), (u64, u64)> = BTreeMap::new();
        for (k, r) in t.flows.iter() {
            labels.entry((k.ifindex, k.netns_ino)).or_insert_with(|| {
                (
                    self.iface_label(k.ifindex, k.netns_ino),
                    self.pod_label(k.ifindex, k.netns_ino),
                )
            });
            let a = adds.entry((k.reason, k.ifindex, k.netns_ino)).or_default();
            a.0 += r.packets;
            a.1 += r.bytes;
        }
        {
            let mut m = self.metrics();
            for ((reason, ifindex, netns), (drops, bytes)) in &adds {
                let name = self.names.reason_name(ReasonKey::Kernel(*reason));
                let (iface, pod) = labels.get(&(*ifindex, *netns)).cloned().unwrap_or_default();
                m.series.add(
                    SeriesKey {
                        origin: "kernel",
                        reason: name,
                        interface: iface,
                        pod,
                    },
                    *drops,
                    *bytes,
                );
                *m.kernel_bytes.entry(*reason).or_default() += bytes;
            }
            // Drops the table had no room for: counted per reason only, interface unknown.
            for (r, c) in t.reasons {
                let before = m.table_full_seen.get(r).copied().unwrap_or(0);
                if c.table_full > before {
                    let name = self.names.reason_name(ReasonKey::Kernel(*r));
                    m.series.add(
                        SeriesKey {
                            origin: "kernel",
                            reason: name,
                            interface: "unknown".into(),
                            pod: String::new(),
                        },
                        c.table_full - before,
                        0,
                    );
                    m.table_full_seen.insert(*r, c.table_full);
                }
            }
            m.kernel = t.reasons.clone();
            m.table_entries = t.entries;
            m.generations += 1;
        }
        self.heavy().add_generation(t.flows);
    }

    /// The kernel's totals now, for sessions' windows.
    fn kernel_window(&self) -> session::KernelWindow {
        let m = self.metrics();
        let mut w = session::KernelWindow::default();
        for c in m.kernel.values() {
            w.seen += c.seen;
            w.not_copied += c.not_copied;
            w.lost_ring += c.ring_full;
            w.table_full += c.table_full;
        }
        w
    }

    /// Counts the Cilium drops and lost-record notices of a batch (the dispatch thread).
    fn count_cilium(&self, b: &Batch) {
        let mut m = self.metrics();
        m.events_read += b.events.len() as u64;
        for (_, n) in &b.notices {
            if let Notice::Lost { count, .. } = n {
                m.cilium_lost += count;
            }
        }
        for e in &b.events {
            if let Cause::Cilium(_) = &e.cause {
                if let (ReasonKey::Cilium(code), _, _) = crate::aggregate::reason_and_identities(e)
                {
                    let c = m.cilium.entry(code).or_default();
                    c.0 += 1;
                    c.1 += u64::from(e.orig_len);
                    let name = self.names.reason_name(ReasonKey::Cilium(code));
                    let iface = if e.ifindex == 0 {
                        "unknown".to_string()
                    } else {
                        self.iface_label(e.ifindex, e.netns)
                    };
                    m.series.add(
                        SeriesKey {
                            origin: "cilium",
                            reason: name,
                            interface: iface,
                            pod: String::new(),
                        },
                        1,
                        u64::from(e.orig_len),
                    );
                }
            }
        }
    }

    /// The metrics exposition.
    pub fn render_metrics(&self, format: expo::Format) -> String {
        let names = &self.names;
        let mut fams = Vec::new();
        let mut info = Family::new(
            "dropscope_build_info",
            Kind::Gauge,
            "dropscope's version; always 1.",
        );
        info.push(
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        );
        fams.push(info);
        let mut up = Family::new(
            "dropscope_uptime_seconds",
            Kind::Gauge,
            "Seconds since the agent started.",
        );
        up.push(vec![], self.started.elapsed().as_secs_f64());
        fams.push(up);
        let m = self.metrics();
        let mut drops = Family::new("dropscope_drops", Kind::Counter, "Drops per origin and reason: kernel drops as the kernel program counted them (exact), Cilium drop notifications read from the agent's monitor socket.");
        let mut bytes = Family::new("dropscope_dropped_bytes", Kind::Counter, "Bytes (original lengths) of the drops per origin and reason; kernel drops the flow table had no room for (dropscope_table_full_total) are not in it.");
        let mut lost = Family::new(
            "dropscope_ring_lost",
            Kind::Counter,
            "Kernel drops counted but whose copy found the ring full, per reason.",
        );
        let mut filtered = Family::new(
            "dropscope_filtered",
            Kind::Counter,
            "Kernel drops turned away by the agent's selectors, per reason.",
        );
        let mut table_full = Family::new("dropscope_table_full", Kind::Counter, "Kernel drops the in-kernel flow table had no room for (counted per reason only), per reason.");
        let mut not_copied = Family::new(
            "dropscope_not_copied",
            Kind::Counter,
            "Kernel drops counted but not copied (beyond the exemplar budget), per reason.",
        );
        for (r, c) in &m.kernel {
            let l = || {
                vec![
                    ("origin", "kernel".to_string()),
                    ("reason", names.reason_name(ReasonKey::Kernel(*r))),
                ]
            };
            drops.count(l(), c.seen);
            bytes.count(l(), m.kernel_bytes.get(r).copied().unwrap_or(0));
            lost.count(l(), c.ring_full);
            filtered.count(l(), c.filtered);
            table_full.count(l(), c.table_full);
            not_copied.count(l(), c.not_copied);
        }
        for (code, (n, b)) in &m.cilium {
            let l = || {
                vec![
                    ("origin", "cilium".to_string()),
                    ("reason", names.reason_name(ReasonKey::Cilium(*code))),
                ]
            };
            drops.count(l(), *n);
            bytes.count(l(), *b);
        }
        fams.extend([drops, bytes, lost, filtered, table_full, not_copied]);
        let mut idrops = Family::new("dropscope_interface_drops", Kind::Counter, "Drops per origin, reason, interface and pod (updated once a second from the kernel flow table). At most --metrics-max-series label sets; the drops of any other are in the series whose labels are all \"other\".");
        let mut ibytes = Family::new(
            "dropscope_interface_dropped_bytes",
            Kind::Counter,
            "Bytes of dropscope_interface_drops_total, same labels.",
        );
        let series = m.series.sorted();
        let n_series = series.len();
        for (k, (d, b)) in series {
            let l = || {
                vec![
                    ("origin", k.origin.to_string()),
                    ("reason", k.reason.clone()),
                    ("interface", k.interface.clone()),
                    ("pod", k.pod.clone()),
                ]
            };
            idrops.count(l(), d);
            ibytes.count(l(), b);
        }
        if m.series.other != (0, 0) {
            let l = || {
                ["origin", "reason", "interface", "pod"]
                    .into_iter()
                    .map(|n| (n, "other".to_string()))
                    .collect::<Vec<_>>()
            };
            idrops.count(l(), m.series.other.0);
            ibytes.count(l(), m.series.other.1);
        }
        fams.extend([idrops, ibytes]);
        let mut folded = Family::new("dropscope_metrics_folded_drops", Kind::Counter, "Drops counted in the \"other\" series of dropscope_interface_drops_total because their label set found no room (--metrics-max-series).");
        folded.count(vec![], m.series.other.0);
        let mut nser = Family::new(
            "dropscope_metrics_series",
            Kind::Gauge,
            "Label sets of dropscope_interface_drops_total with a series of their own.",
        );
        nser.count(vec![], n_series as u64);
        let mut maxser = Family::new(
            "dropscope_metrics_max_series",
            Kind::Gauge,
            "The bound on those label sets (--metrics-max-series).",
        );
        maxser.count(vec![], m.series.max() as u64);
        fams.extend([folded, nser, maxser]);
        let mut clost = Family::new(
            "dropscope_cilium_lost_records",
            Kind::Counter,
            "Records Cilium's agent reported lost (its perf ring was full).",
        );
        let mut cconn = Family::new(
            "dropscope_cilium_socket_read",
            Kind::Gauge,
            "1 when the agent reads Cilium's monitor socket, else 0.",
        );
        clost.count(vec![], m.cilium_lost);
        cconn.count(vec![], u64::from(m.cilium_connected));
        let mut crec = Family::new(
            "dropscope_cilium_reconnects",
            Kind::Counter,
            "Reconnections to Cilium's monitor socket (the agent restarted or closed it).",
        );
        if m.cilium_connected {
            crec.count(vec![], m.cilium_reconnects.load(Ordering::Relaxed));
        }
        fams.extend([clost, cconn, crec]);
        let mut entries = Family::new(
            "dropscope_flow_table_entries",
            Kind::Gauge,
            "Entries the last drained generation of the kernel flow table held.",
        );
        entries.count(vec![], m.table_entries as u64);
        let mut cap = Family::new(
            "dropscope_flow_table_capacity",
            Kind::Gauge,
            "Hash entries of each generation of the kernel flow table (--kernel-flows).",
        );
        cap.count(vec![], u64::from(self.options.kernel_flows));
        let mut usage = Family::new(
            "dropscope_flow_table_usage_ratio",
            Kind::Gauge,
            "dropscope_flow_table_entries / dropscope_flow_table_capacity.",
        );
        usage.push(
            vec![],
            m.table_entries as f64 / f64::from(self.options.kernel_flows.max(1)),
        );
        let mut gens = Family::new(
            "dropscope_flow_table_generations",
            Kind::Counter,
            "Generations of the kernel flow table drained.",
        );
        gens.count(vec![], m.generations);
        drop(m);
        fams.extend([entries, cap, usage, gens]);
        {
            let h = self.heavy();
            let mut rows = Family::new(
                "dropscope_flows_tracked",
                Kind::Gauge,
                "Heavy-hitter flow rows kept (at most --max-flows).",
            );
            rows.count(vec![], h.len() as u64);
            let mut f = Family::new("dropscope_flows_folded_drops", Kind::Counter, "Drops of flow rows folded out of the heavy-hitter table (lightest rows, when it was full), per reason.");
            for (r, x) in h.folded() {
                f.count(
                    vec![("reason", names.reason_name(ReasonKey::Kernel(*r)))],
                    x.packets,
                );
            }
            fams.extend([rows, f]);
        }
        if let Some(g) = self
            .gauges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            let size = g.ring_bytes.load(Ordering::Relaxed).max(1) as f64;
            let mut fill = Family::new(
                "dropscope_ring_fill_ratio",
                Kind::Gauge,
                "Fill of each CPU's ring (bytes not yet read / ring size).",
            );
            for (cpu, u) in g.ring_used.iter().enumerate() {
                fill.push(
                    vec![("cpu", cpu.to_string())],
                    u.load(Ordering::Relaxed) as f64 / size,
                );
            }
            fams.push(fill);
            let misses = g.recursion_misses.load(Ordering::Relaxed);
            if misses != u64::MAX {
                let mut r = Family::new("dropscope_recursion_misses", Kind::Counter, "Runs of the kernel program the kernel skipped because a tracing program was already running on that CPU (drops not seen).");
                r.count(vec![], misses);
                fams.push(r);
            }
            let mut mal = Family::new(
                "dropscope_malformed_records",
                Kind::Counter,
                "Ring records that could not be read (skipped).",
            );
            mal.count(vec![], g.malformed.load(Ordering::Relaxed));
            fams.push(mal);
        }
        let (running, done) = self.sessions.counts();
        let mut s = Family::new(
            "dropscope_capture_sessions",
            Kind::Gauge,
            "Capture sessions by state.",
        );
        s.count(vec![("state", "running".into())], running as u64);
        s.count(vec![("state", "done".into())], done as u64);
        fams.push(s);
        expo::render(&fams, format)
    }

    /// `GET /api/v1/flows`: the `top` heavy hitters (of `reason`, in `netns`), exact.
    pub fn flows_json(
        &self,
        top: usize,
        reason: Option<&str>,
        netns: Option<u32>,
    ) -> Result<serde_json::Value, String> {
        let reason = match reason {
            Some(r) => {
                let rs =
                    crate::select::Reasons::resolve(&[r.to_string()], &self.names.kernel_reasons)?;
                Some(rs.kernel)
            }
            None => None,
        };
        let h = self.heavy();
        let rows = h.top(top, |k: &KFlowKey| {
            reason.as_ref().is_none_or(|rs| rs.contains(&k.reason))
                && netns.is_none_or(|n| n == k.netns_ino)
        });
        let folded: serde_json::Map<String, serde_json::Value> = h
            .folded()
            .iter()
            .map(|(r, f)| {
                (
                    self.names.reason_name(ReasonKey::Kernel(*r)),
                    serde_json::json!(f),
                )
            })
            .collect();
        let tracked = h.len();
        drop(h);
        let flows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, r)| {
                let f = crate::storm::flow_key_of(k);
                let addr = |a: &[u8; 16]| -> String {
                    match k.family {
                        capture_common::KFAMILY_V4 => {
                            std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
                        }
                        capture_common::KFAMILY_V6 => std::net::Ipv6Addr::from(*a).to_string(),
                        _ => String::new(),
                    }
                };
                serde_json::json!({
                    "origin": "kernel",
                    "reason": self.names.reason_name(ReasonKey::Kernel(k.reason)),
                    "reason_code": k.reason,
                    "location": match self.names.symbol(k.location) {
                        Some((sym, off)) => format!("{sym}+{off:#x}"),
                        None => format!("{:#x}", k.location),
                    },
                    "netns": k.netns_ino,
                    "ifindex": k.ifindex,
                    "interface": self.iface_label(k.ifindex, k.netns_ino),
                    "protocol": crate::packet::format::proto_name(f.proto),
                    "l4proto": k.l4proto,
                    "src": addr(&k.saddr),
                    "dst": addr(&k.daddr),
                    "sport": k.sport,
                    "dport": k.dport,
                    "packets": r.packets,
                    "bytes": r.bytes,
                    "copied": r.copied,
                    "first_ns": r.first_ns,
                    "last_ns": r.last_ns,
                })
            })
            .collect();
        Ok(serde_json::json!({
            "flows": flows,
            "tracked": tracked,
            "max_flows": self.options.max_flows,
            "folded": folded,
        }))
    }
}

/// What the agent did, for its last lines on stderr.
#[derive(Debug, Default)]
pub struct ServeReport {
    pub notes: Vec<String>,
}

/// Loads and attaches the kernel program (errors surface before anything else starts).
pub fn open_kernel(o: &ServeOptions) -> Result<KernelSource> {
    let src = KernelSource::open(
        &LoadOptions {
            snaplen: o.snaplen,
            ring_bytes_per_cpu: o.ring_bytes_per_cpu,
            attach: AttachMode::Auto,
            kernel_flows: o.kernel_flows,
            exemplars: Some(o.exemplars),
            auto_storm: true,
            select: KernelSelect::default(),
            packets: Vec::new(),
            tc_mode: crate::kernel::packets::TcMode::Auto,
            ..LoadOptions::default()
        },
        1,
    )?;
    Ok(src)
}

/// Runs the capture side until `stop` is set: the kernel source (attached by
/// [`open_kernel`]), Cilium's socket when there, and the dispatch loop. On return every
/// program is detached and every session's file finished.
pub fn run(state: Arc<State>, mut kernel: KernelSource, stop: &AtomicBool) -> Result<ServeReport> {
    let st = state.clone();
    let gauges = kernel.live(Box::new(move |t: &GenerationTick<'_>| st.on_generation(t)));
    // On a quiet node the rings are looked at every 20 ms instead of 2 ms (idle CPU): the
    // first 20 ms of a burst after a quiet spell must fit in the ring, which the exemplar
    // budget helps (N copies per flow and second); what does not fit is counted as
    // ring-lost, and the counts per reason and flow are the kernel's, whole either way.
    kernel.idle_poll(Duration::from_millis(20));
    *state.gauges.lock().unwrap_or_else(|e| e.into_inner()) = Some(gauges);
    // Cilium's monitor socket is read once it is there: at start, or when the agent creates
    // it later (looked for every second); then reconnecting as the socket source does.
    let open_cilium = |p: &std::path::Path| -> Result<crate::pipeline::SourceFn<'static>> {
        let reconnects = state.metrics().cilium_reconnects.clone();
        let f = crate::sources::cilium_socket_counted(
            &crate::sources::CiliumSocketOptions {
                path: p.to_path_buf(),
                save_stream: None,
                release: state.options.cilium_release,
                types: crate::sources::cilium_type_bits(&[
                    crate::cilium::notify::MessageKind::Drop,
                ]),
            },
            Some(reconnects),
        )?;
        state.metrics().cilium_connected = true;
        Ok(f)
    };
    let cilium_path = state.options.cilium_socket.clone();
    let (tx, rx) = bounded::<Batch>(64);
    let src_stop = AtomicBool::new(false);
    let mut report = ServeReport::default();
    let names = state.names.clone();
    std::thread::scope(|s| -> Result<()> {
        let ktx = tx.clone();
        let stop_ref = &src_stop;
        let k = std::thread::Builder::new()
            .name("dropscope-kernel".into())
            .spawn_scoped(s, move || {
                let r = kernel.run(&ktx, stop_ref, 256);
                drop(ktx);
                r.map(|stats| (stats, kernel))
            })
            .context("starting the kernel reader")?;
        let c = match cilium_path {
            Some(p) => {
                let ctx = tx.clone();
                let open_cilium = &open_cilium;
                Some(
                    std::thread::Builder::new()
                        .name("dropscope-cilium".into())
                        .spawn_scoped(s, move || {
                            while !p.exists() {
                                if stop_ref.load(Ordering::Relaxed) {
                                    return Ok(crate::pipeline::SourceReport::default());
                                }
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            open_cilium(&p)?(&ctx, stop_ref)
                        })
                        .context("starting the Cilium reader")?,
                )
            }
            None => None,
        };
        drop(tx);
        let mut renderer = Renderer::new(&names);
        let mut last_tick = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => {
                    state.count_cilium(&b);
                    if state.sessions.any_running() {
                        state.sessions.offer(&b.events, &names, &mut renderer);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                state.sessions.tick(state.kernel_window());
            }
            if stop.load(Ordering::Relaxed) && !src_stop.load(Ordering::Relaxed) {
                src_stop.store(true, Ordering::Relaxed);
            }
        }
        match k.join() {
            Ok(Ok((stats, kernel))) => {
                report.notes.push(format!(
                    "kernel: {} copies read, program {}",
                    stats.delivered_total(),
                    if kernel.is_attached() {
                        "still attached"
                    } else {
                        "detached"
                    }
                ));
            }
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context("reading the kernel rings")),
            Err(_) => anyhow::bail!("the kernel reader panicked"),
        }
        if let Some(c) = c {
            match c.join() {
                Ok(Ok(r)) => report.notes.extend(r.notes),
                Ok(Err(e)) => report.notes.push(format!("cilium: {e}")),
                Err(_) => report.notes.push("cilium: the reader panicked".into()),
            }
        }
        Ok(())
    })?;
    state.sessions.tick(state.kernel_window());
    state.sessions.shutdown(false);
    Ok(report)
}
