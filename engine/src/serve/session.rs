//! Capture sessions of `dropscope serve`: "the drops of this flow, for 30 seconds", asked
//! over HTTP and served from the program already attached (no second attach).
//!
//! Each session has its own selection (a tcpdump expression, compiled by libpcap, run in
//! user space with the engine's filter code, and the reason, interface and namespace
//! selectors), its own pcapng file (created 0600 in the agent's session directory, written
//! as `<file>.tmp` and renamed when the session ends), a stop condition (duration, count,
//! the byte limit), an optional exemplar budget (packets per flow x reason and second), and
//! a ledger: every event the agent read while the session ran is `offered` to it, and
//! `offered = filtered + over_budget + written` per reason. The kernel's exemplar budget
//! and ring losses happen before that; the session reports the kernel's `not_copied` and
//! `lost_ring` over its lifetime beside it.
//!
//! Limits: sessions running at once, bytes per session, and how long a session's file is
//! kept after it ended (then it is removed, with the session).
//!
//! Must never: write a session's file anywhere but its directory, keep more sessions than
//! the limit, or let a bad request reach the capture (it is refused with a message).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aggregate::ReasonKey;
use crate::event::Event;
use crate::lookup::Names;
use crate::packet::{FlowKey, PacketSummary};
use crate::pcap::{IfaceKey, OutPacket, PacketWriter};
use crate::render::Renderer;
use crate::select::{Reasons, Selection};

/// A session as asked for (`POST /api/v1/captures`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// A tcpdump (pcap-filter) expression.
    #[serde(default)]
    pub filter: Option<String>,
    /// Only these reasons (names or numbers).
    #[serde(default)]
    pub reason: Vec<String>,
    /// None of these reasons.
    #[serde(default)]
    pub not_reason: Vec<String>,
    /// Only drops on this interface: an ifindex, or a name in the agent's namespace.
    #[serde(default)]
    pub interface: Option<String>,
    /// Only drops in this network namespace: an inode, or a path.
    #[serde(default)]
    pub netns: Option<String>,
    /// Seconds to run.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Packets to write.
    #[serde(default)]
    pub count: Option<u64>,
    /// Bytes kept of each packet.
    #[serde(default)]
    pub snaplen: Option<u32>,
    /// Packets per flow x reason and second written (every drop is still counted).
    #[serde(default)]
    pub exemplars: Option<u32>,
    /// A new file once the current one holds more than this many million bytes (`-C`).
    #[serde(default)]
    pub rotate_mb: Option<u64>,
    /// A new file every this many seconds (`-G`).
    #[serde(default)]
    pub rotate_seconds: Option<u64>,
    /// With `rotate_mb`: a ring of this many files, the oldest overwritten; with
    /// `rotate_seconds` alone: the session ends after this many files (`-W`).
    #[serde(default)]
    pub max_files: Option<u32>,
}

impl Request {
    /// The rotation asked for, checked as `capture` checks -C/-G/-W; `None` when none is.
    fn rotation(&self) -> Result<Option<crate::pcap::rotate::Rotation>, String> {
        if self.rotate_mb == Some(0) {
            return Err("rotate_mb 0 would start a new file for every packet".into());
        }
        if self.rotate_seconds == Some(0) {
            return Err("rotate_seconds 0 would start a new file for every packet".into());
        }
        if self.max_files == Some(0) {
            return Err("max_files 0 would keep no file".into());
        }
        if self.rotate_mb.is_none() && self.rotate_seconds.is_none() {
            if self.max_files.is_some() {
                return Err("max_files needs rotate_mb or rotate_seconds".into());
            }
            return Ok(None);
        }
        Ok(Some(crate::pcap::rotate::Rotation {
            size_bytes: self.rotate_mb.map(|m| m.saturating_mul(1_000_000)),
            seconds: self.rotate_seconds,
            files: self.max_files,
        }))
    }
}

/// The agent's limits on sessions.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Sessions running at once.
    pub max_running: usize,
    /// Captured bytes written per session.
    pub max_bytes: u64,
    /// Longest duration a session may ask for (and the duration of one that asks none and
    /// no count).
    pub max_duration: Duration,
    /// How long a session and its file are kept after it ended and was last read.
    pub lifetime: Duration,
    /// The agent's own snap length (sessions get at most this).
    pub snaplen: u32,
}

/// One reason's row of a session's ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub offered: u64,
    pub filtered: u64,
    pub over_budget: u64,
    pub written: u64,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.offered += o.offered;
        self.filtered += o.filtered;
        self.over_budget += o.over_budget;
        self.written += o.written;
    }
}

/// What the kernel did over a session's lifetime (all drops, before any session filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelWindow {
    pub seen: u64,
    pub not_copied: u64,
    pub lost_ring: u64,
    pub table_full: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
}

struct Session {
    id: u64,
    request: Request,
    sel: Selection,
    snaplen: u32,
    state: State,
    stopped_by: Option<&'static str>,
    started: Instant,
    started_ns: u64,
    ended: Option<Instant>,
    ended_ns: Option<u64>,
    last_read: Instant,
    path: PathBuf,
    /// The files of a rotating session, and what went to each.
    files: Option<crate::pcap::rotate::FileLedger>,
    /// Set by a time-rotating writer when it has written `max_files` files.
    files_done: Arc<AtomicBool>,
    writer: Option<Box<dyn PacketWriter>>,
    error: Option<String>,
    rows: BTreeMap<ReasonKey, Row>,
    bytes: u64,
    /// Packets written, over every reason.
    written: u64,
    budget: hashbrown::HashMap<(FlowKey, ReasonKey, u32, u32), u32>,
    budget_second: u64,
    kernel_start: KernelWindow,
    kernel: KernelWindow,
    done: Arc<AtomicBool>,
}

/// What the HTTP side needs to stream a session's file.
pub struct StreamInfo {
    pub path: PathBuf,
    pub tmp: PathBuf,
    pub done: Arc<AtomicBool>,
}

/// Why a request was refused: the HTTP status and one line saying why.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

pub struct Sessions {
    inner: Mutex<Inner>,
    limits: Limits,
    dir: PathBuf,
}

struct Inner {
    map: BTreeMap<u64, Session>,
    next: u64,
    /// The kernel's totals as last read (for sessions' kernel windows).
    kernel_now: KernelWindow,
}

impl Sessions {
    /// Sessions whose files go to `dir` (created 0700 if missing).
    pub fn new(dir: PathBuf, limits: Limits) -> std::io::Result<Sessions> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(Sessions {
            inner: Mutex::new(Inner {
                map: BTreeMap::new(),
                next: 1,
                kernel_now: KernelWindow::default(),
            }),
            limits,
            dir,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Starts a session; returns its id and its status document.
    pub fn start(&self, req: Request, names: &Names) -> Result<serde_json::Value, Refused> {
        let sel = selection(&req, names).map_err(|m| refuse(400, m))?;
        let rotation = req.rotation().map_err(|m| refuse(400, m))?;
        let snaplen = req.snaplen.unwrap_or(self.limits.snaplen);
        if snaplen == 0 || snaplen > self.limits.snaplen {
            return Err(refuse(
                400,
                format!(
                    "snaplen {snaplen} is out of range: this agent copies at most {} bytes per packet",
                    self.limits.snaplen
                ),
            ));
        }
        if let Some(d) = req.duration {
            if !(d.is_finite() && d > 0.0) {
                return Err(refuse(
                    400,
                    format!("duration {d} is not a positive number of seconds"),
                ));
            }
            if d > self.limits.max_duration.as_secs_f64() {
                return Err(refuse(
                    400,
                    format!(
                        "duration {d} is longer than this agent allows ({} s)",
                        self.limits.max_duration.as_secs()
                    ),
                ));
            }
        }
        if req.count == Some(0) {
            return Err(refuse(400, "count 0 would capture nothing"));
        }
        let mut g = self.lock();
        let running = g.map.values().filter(|s| s.state == State::Running).count();
        if running >= self.limits.max_running {
            return Err(refuse(
                429,
                format!(
                    "{running} sessions are running, the most this agent allows: wait for one to end"
                ),
            ));
        }
        let id = g.next;
        g.next += 1;
        let path = self.dir.join(format!("session-{id}.pcapng"));
        let files_done = Arc::new(AtomicBool::new(false));
        let cannot = |e: crate::pcap::WriteError| {
            refuse(500, format!("cannot create the session's file: {e}"))
        };
        let (writer, files): (Box<dyn PacketWriter>, _) = match rotation {
            None => (
                crate::pcap::create(&path, crate::pcap::FileFormat::Pcapng, snaplen)
                    .map_err(cannot)?,
                None,
            ),
            Some(rot) => {
                // Time-rotated files are named by their start (tcpdump's strftime names).
                let pattern = if rot.seconds.is_some() {
                    self.dir.join(format!("session-{id}-%Y%m%d-%H%M%S.pcapng"))
                } else {
                    path.clone()
                };
                let (w, ledger) = crate::pcap::rotate::RotatingWriter::create(
                    &pattern,
                    crate::pcap::FileFormat::Pcapng,
                    snaplen,
                    crate::pcap::WriterOptions::default(),
                    rot,
                    Some(files_done.clone()),
                )
                .map_err(cannot)?;
                (Box::new(w), Some(ledger))
            }
        };
        let now = Instant::now();
        let kernel_start = g.kernel_now;
        let s = Session {
            id,
            request: req,
            sel,
            snaplen,
            state: State::Running,
            stopped_by: None,
            started: now,
            started_ns: crate::timefmt::now_ns(),
            ended: None,
            ended_ns: None,
            last_read: now,
            path,
            files,
            files_done,
            writer: Some(writer),
            error: None,
            rows: BTreeMap::new(),
            bytes: 0,
            written: 0,
            budget: hashbrown::HashMap::new(),
            budget_second: 0,
            kernel_start,
            kernel: KernelWindow::default(),
            done: Arc::new(AtomicBool::new(false)),
        };
        let doc = status(&s, names);
        g.map.insert(id, s);
        Ok(doc)
    }

    /// A session's status document.
    pub fn status(&self, id: u64, names: &Names) -> Option<serde_json::Value> {
        let mut g = self.lock();
        let s = g.map.get_mut(&id)?;
        s.last_read = Instant::now();
        Some(status(s, names))
    }

    /// Every session's status.
    pub fn list(&self, names: &Names) -> Vec<serde_json::Value> {
        self.lock().map.values().map(|s| status(s, names)).collect()
    }

    /// Where a session's file is, to stream it: of a rotating session, file number `file`
    /// (as its status lists them; `None`: the one being written, or the last).
    pub fn stream(&self, id: u64, file: Option<usize>) -> Option<StreamInfo> {
        let mut g = self.lock();
        let s = g.map.get_mut(&id)?;
        s.last_read = Instant::now();
        let Some(ledger) = &s.files else {
            return Some(StreamInfo {
                path: s.path.clone(),
                tmp: crate::atomic::tmp_path(&s.path),
                done: s.done.clone(),
            });
        };
        let entries = ledger.lock().unwrap_or_else(|e| e.into_inner());
        let last = entries.len().checked_sub(1)?;
        let n = file.unwrap_or(last);
        let entry = entries.get(n)?;
        if entry.overwritten {
            return None;
        }
        // Files before the last are complete; the last is done when the session is.
        let done = if n < last {
            Arc::new(AtomicBool::new(true))
        } else {
            s.done.clone()
        };
        Some(StreamInfo {
            path: entry.path.clone(),
            tmp: crate::atomic::tmp_path(&entry.path),
            done,
        })
    }

    /// Ends a session now (`DELETE`); false if there is none.
    pub fn stop(&self, id: u64) -> bool {
        let mut g = self.lock();
        let kernel_now = g.kernel_now;
        match g.map.get_mut(&id) {
            Some(s) => {
                end(s, "stopped", kernel_now);
                true
            }
            None => false,
        }
    }

    /// (running, done) sessions.
    pub fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        let running = g.map.values().filter(|s| s.state == State::Running).count();
        (running, g.map.len() - running)
    }

    /// Whether any session is running (the dispatch thread skips the work otherwise).
    pub fn any_running(&self) -> bool {
        self.lock().map.values().any(|s| s.state == State::Running)
    }

    /// Offers a batch of events to every running session (the dispatch thread).
    pub fn offer(&self, events: &[Event], names: &Names, r: &mut Renderer<'_>) {
        let mut g = self.lock();
        let kernel_now = g.kernel_now;
        let now_sec = crate::timefmt::now_ns() / 1_000_000_000;
        let max_bytes = self.limits.max_bytes;
        let mut running: Vec<&mut Session> = g
            .map
            .values_mut()
            .filter(|s| s.state == State::Running)
            .collect();
        let mut summary = PacketSummary::default();
        let mut comment = String::new();
        for e in events {
            // What every session shares is worked out once per event: its reason, and (once
            // a session keeps it) its headers and comment.
            let (reason, _, _) = crate::aggregate::reason_and_identities(e);
            let (mut summarized, mut commented) = (false, false);
            for s in running.iter_mut() {
                if s.state != State::Running {
                    continue;
                }
                let row = s.rows.entry(reason).or_default();
                row.offered += 1;
                if !s.sel.keep(e) {
                    row.filtered += 1;
                    continue;
                }
                if !summarized {
                    crate::packet::summarize_into(
                        &e.data,
                        e.link,
                        crate::cilium_glue::tunnel_hint_for(e, crate::packet::TunnelHint::ByPort),
                        &mut summary,
                    );
                    summarized = true;
                }
                if let Some(n) = s.request.exemplars {
                    if s.budget_second != now_sec {
                        s.budget.clear();
                        s.budget_second = now_sec;
                    }
                    let used = s
                        .budget
                        .entry((summary.flow, reason, e.ifindex, e.netns))
                        .or_insert(0);
                    if *used >= n {
                        row.over_budget += 1;
                        continue;
                    }
                    *used += 1;
                }
                row.written += 1;
                s.written += 1;
                let cap = e.data.len().min(s.snaplen as usize) as u64;
                s.bytes += cap;
                if let Some(w) = s.writer.as_mut() {
                    if !commented {
                        comment.clear();
                        comment.push_str(r.comment(e, &summary));
                        commented = true;
                    }
                    let p = OutPacket::of_event(e, &comment);
                    if let Err(err) =
                        w.write(&p, &|k: &IfaceKey| names.iface_label(k.ifindex, k.netns))
                    {
                        s.error = Some(err.to_string());
                        end(s, "write error", kernel_now);
                        continue;
                    }
                }
                if s.files_done.load(Ordering::Relaxed) {
                    // The time-rotating writer had written its last file: the session ends
                    // before this packet, which is not in any file.
                    if let Some(row) = s.rows.get_mut(&reason) {
                        row.offered -= 1;
                        row.written -= 1;
                    }
                    s.written -= 1;
                    s.bytes -= cap;
                    end(s, "max_files reached", kernel_now);
                } else if s.request.count.is_some_and(|c| s.written >= c) {
                    end(s, "count reached", kernel_now);
                } else if s.bytes >= max_bytes {
                    end(s, "byte limit reached", kernel_now);
                }
            }
        }
    }

    /// Ends sessions whose time is up and forgets (and removes the files of) sessions past
    /// their lifetime; `kernel` is the kernel's totals now. Called by the dispatch thread.
    pub fn tick(&self, kernel: KernelWindow) {
        let mut g = self.lock();
        g.kernel_now = kernel;
        let max = self.limits.max_duration;
        let lifetime = self.limits.lifetime;
        let mut gone = Vec::new();
        for s in g.map.values_mut() {
            if s.state == State::Running {
                s.kernel = window(s.kernel_start, kernel);
                let limit = s.request.duration.map(Duration::from_secs_f64).unwrap_or(
                    if s.request.count.is_some() {
                        max
                    } else {
                        max.min(Duration::from_secs(60))
                    },
                );
                if s.started.elapsed() >= limit.min(max) {
                    let why = if s.request.duration.is_some() {
                        "duration elapsed"
                    } else {
                        "duration limit"
                    };
                    end(s, why, kernel);
                }
            } else if let Some(ended) = s.ended {
                if ended.elapsed() >= lifetime && s.last_read.elapsed() >= lifetime {
                    gone.push(s.id);
                }
            }
        }
        for id in gone {
            if let Some(s) = g.map.remove(&id) {
                remove_files(&s);
            }
        }
    }

    /// Ends every running session (the agent is stopping); removes every file when
    /// `remove`.
    pub fn shutdown(&self, remove: bool) {
        let mut g = self.lock();
        let kernel_now = g.kernel_now;
        for s in g.map.values_mut() {
            end(s, "agent stopping", kernel_now);
            if remove {
                remove_files(s);
            }
        }
    }
}

fn window(start: KernelWindow, now: KernelWindow) -> KernelWindow {
    KernelWindow {
        seen: now.seen.saturating_sub(start.seen),
        not_copied: now.not_copied.saturating_sub(start.not_copied),
        lost_ring: now.lost_ring.saturating_sub(start.lost_ring),
        table_full: now.table_full.saturating_sub(start.table_full),
    }
}

/// Ends a running session: finishes its file (renamed into place) and marks it done.
/// Removes a session's file, or every file of a rotating session (and any `.tmp`).
fn remove_files(s: &Session) {
    let mut paths = vec![s.path.clone()];
    if let Some(l) = &s.files {
        paths.extend(
            l.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|f| f.path.clone()),
        );
    }
    for p in paths {
        let _ = std::fs::remove_file(crate::atomic::tmp_path(&p));
        let _ = std::fs::remove_file(&p);
    }
}

fn end(s: &mut Session, why: &'static str, kernel_now: KernelWindow) {
    if s.state != State::Running {
        return;
    }
    s.state = State::Done;
    s.stopped_by = Some(why);
    s.ended = Some(Instant::now());
    s.ended_ns = Some(crate::timefmt::now_ns());
    s.kernel = window(s.kernel_start, kernel_now);
    s.budget = hashbrown::HashMap::new();
    if let Some(w) = s.writer.take() {
        if let Err(e) = w.finish() {
            s.error.get_or_insert(e.to_string());
        }
    }
    s.done.store(true, Ordering::Release);
}

fn status(s: &Session, names: &Names) -> serde_json::Value {
    let mut total = Row::default();
    let mut per_reason = serde_json::Map::new();
    for (k, r) in &s.rows {
        total.add(r);
        per_reason.insert(
            names.reason_name(*k),
            serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
        );
    }
    let balanced = s
        .rows
        .values()
        .all(|r| r.offered == r.filtered + r.over_budget + r.written);
    serde_json::json!({
        "id": s.id,
        "state": s.state,
        "stopped_by": s.stopped_by,
        "request": s.request,
        "snaplen": s.snaplen,
        "started_ns": s.started_ns,
        "ended_ns": s.ended_ns,
        "elapsed_s": s.ended.map_or_else(|| s.started.elapsed(), |e| e.duration_since(s.started)).as_secs_f64(),
        "bytes": s.bytes,
        "error": s.error,
        "ledger": {
            "total": total,
            "per_reason": per_reason,
            "balanced": balanced,
            "equation": "offered = filtered + over_budget + written",
        },
        "kernel": s.kernel,
        "pcapng": format!("/api/v1/captures/{}/pcapng", s.id),
        "files": s.files.as_ref().map(|l| {
            let entries = l.lock().unwrap_or_else(|e| e.into_inner());
            entries
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    serde_json::json!({
                        "name": f.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                        "packets": f.packets,
                        "bytes": f.bytes,
                        "overwritten": f.overwritten,
                        "pcapng": format!("/api/v1/captures/{}/pcapng?file={i}", s.id),
                    })
                })
                .collect::<Vec<_>>()
        }),
    })
}

/// The selection a request asks for, checked (reasons known, expression compiled).
pub fn selection(req: &Request, names: &Names) -> Result<Selection, String> {
    let mut sel = Selection::default();
    let resolve = |items: &[String]| -> Result<Option<Reasons>, String> {
        if items.is_empty() {
            return Ok(None);
        }
        Reasons::resolve(items, &names.kernel_reasons).map(Some)
    };
    sel.only = resolve(&req.reason)?;
    sel.except = resolve(&req.not_reason)?;
    if let Some(i) = &req.interface {
        sel.ifindex = Some(match i.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                let c = std::ffi::CString::new(i.as_str())
                    .map_err(|_| format!("interface {i:?} is not an interface name"))?;
                // SAFETY: a valid NUL-terminated string.
                let n = unsafe { libc::if_nametoindex(c.as_ptr()) };
                if n == 0 {
                    return Err(format!("interface {i}: no such interface in the agent's network namespace (give an ifindex with netns for another namespace's)"));
                }
                sel.netns.get_or_insert_with(crate::names::own_netns_inode);
                n
            }
        });
    }
    if let Some(ns) = &req.netns {
        sel.netns = Some(match ns.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                use std::os::unix::fs::MetadataExt as _;
                let m = std::fs::metadata(ns)
                    .map_err(|e| format!("netns {ns}: cannot stat it ({e}): give an inode or a path such as /proc/PID/ns/net"))?;
                u32::try_from(m.ino()).map_err(|_| format!("netns {ns}: inode out of range"))?
            }
        });
    }
    if let Some(text) = req
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let e = crate::filter::Expression::compile(text).map_err(|e| e.to_string())?;
        sel.expr = Some(Arc::new(e));
    }
    Ok(sel)
}
