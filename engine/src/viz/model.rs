//! What `dropscope report` draws, read from a stats document in bounded memory: the rows
//! of `flows[]` and `storm.flows[]` are folded as they stream past (top flows, interfaces,
//! pods, reason x drop location), the rest of the document is kept as a `Value`.
//!
//! Must never: hold a row per flow (memory is bounded by the caps below, whatever the
//! number of rows); lose a packet count (what does not fit a capped map is counted as
//! "other").

use std::borrow::Cow;
use std::collections::{BTreeMap, BinaryHeap};

use hashbrown::HashMap;
use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use super::scan::{scan, ScanError};

/// Flows listed in the top-flows plot.
pub const TOP_FLOWS: usize = 20;
/// Distinct interfaces, pods or (reason, location) pairs kept; more are counted as other.
pub const MAX_KEYS: usize = 10_000;

/// One `flows[]` row, the members the report uses (strings borrowed where unescaped).
#[derive(Deserialize)]
struct FlowRow<'a> {
    #[serde(borrow, default)]
    origin: Cow<'a, str>,
    #[serde(borrow, default)]
    reason_name: Cow<'a, str>,
    #[serde(default)]
    packets: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(borrow, default)]
    src: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dst: Option<Cow<'a, str>>,
    #[serde(default)]
    sport: Option<u64>,
    #[serde(default)]
    dport: Option<u64>,
    #[serde(borrow, default)]
    proto_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ifname: Option<Cow<'a, str>>,
    #[serde(default)]
    netns: Option<u64>,
    #[serde(borrow, default)]
    pod: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_pod: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dst_pod: Option<Cow<'a, str>>,
    #[serde(default)]
    src_identity: Option<u64>,
    #[serde(default)]
    dst_identity: Option<u64>,
}

/// One `storm.flows[]` row: what the heatmap needs.
#[derive(Deserialize)]
struct StormRow<'a> {
    #[serde(borrow, default)]
    reason_name: Cow<'a, str>,
    #[serde(borrow, default)]
    location: Cow<'a, str>,
    #[serde(borrow, default)]
    symbol: Option<Cow<'a, str>>,
    #[serde(default)]
    packets: u64,
}

/// A flow of the top list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopFlow {
    pub label: String,
    pub origin: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
    /// Place in `flows[]` (ties keep the document's order).
    pub index: u64,
}

impl Ord for TopFlow {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Most packets, then most bytes, then first in the document: "greatest".
        self.packets
            .cmp(&o.packets)
            .then(self.bytes.cmp(&o.bytes))
            .then(o.index.cmp(&self.index))
    }
}
impl PartialOrd for TopFlow {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Packets per key and reason, at most [`MAX_KEYS`] keys; the rest in `other`.
#[derive(Debug, Default)]
pub struct Capped {
    pub keys: HashMap<String, BTreeMap<String, u64>>,
    pub other: BTreeMap<String, u64>,
    pub other_keys: u64,
}

impl Capped {
    fn add(&mut self, key: &str, reason: &str, n: u64) {
        let per = if self.keys.contains_key(key) || self.keys.len() < MAX_KEYS {
            self.keys.entry_ref(key).or_default()
        } else {
            self.other_keys += 1;
            &mut self.other
        };
        match per.get_mut(reason) {
            Some(c) => *c += n,
            None => {
                per.insert(reason.to_string(), n);
            }
        }
    }

    /// Keys by total packets, most first (then by name): (key, total, per reason).
    pub fn ranked(&self) -> Vec<(&str, u64, &BTreeMap<String, u64>)> {
        let mut v: Vec<_> = self
            .keys
            .iter()
            .map(|(k, m)| (k.as_str(), m.values().sum::<u64>(), m))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Everything the report draws.
#[derive(Debug, Default)]
pub struct Model {
    /// The document without its row arrays.
    pub doc: Value,
    /// Rows read from `flows[]`.
    pub flow_rows: u64,
    /// Packets and bytes of `flows[]`, per (origin, reason name).
    pub reason_totals: BTreeMap<(String, String), (u64, u64)>,
    /// The heaviest flows, most packets first.
    pub top_flows: Vec<TopFlow>,
    /// Packets per interface (`ifname`, which names its namespace) and reason.
    pub interfaces: Capped,
    /// Packets per pod where dropped (`pod`), per reason.
    pub pods: Capped,
    /// Rows read from `storm.flows[]`.
    pub storm_rows: u64,
    /// Kernel flow table packets per drop location (`symbol`, else `location`) and reason.
    pub locations: Capped,
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("row {row} of {array}[] is not a flow row: {err}")]
    Row {
        array: &'static str,
        row: u64,
        err: serde_json::Error,
    },
    #[error("not a dropscope stats document: {0}")]
    NotStats(String),
}

fn flow_label(r: &FlowRow<'_>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let port = |p: Option<u64>| p.filter(|p| *p != 0);
    match (&r.src, &r.dst) {
        (Some(a), Some(b)) => {
            let v6 = a.contains(':');
            let ep = |s: &mut String, addr: &str, p: Option<u64>| match (port(p), v6) {
                (Some(p), true) => {
                    let _ = write!(s, "[{addr}]:{p}");
                }
                (Some(p), false) => {
                    let _ = write!(s, "{addr}:{p}");
                }
                (None, _) => s.push_str(addr),
            };
            ep(&mut s, a, r.sport);
            s.push_str(" > ");
            ep(&mut s, b, r.dport);
            if let Some(p) = &r.proto_name {
                let _ = write!(s, " {p}");
            }
        }
        _ => s.push_str("[no ip]"),
    }
    if let Some(i) = &r.ifname {
        let _ = write!(s, " on {i}");
    }
    if let (Some(a), Some(b)) = (r.src_identity, r.dst_identity) {
        let _ = write!(s, " identity {a}->{b}");
    }
    match (&r.src_pod, &r.dst_pod, &r.pod) {
        (Some(a), Some(b), _) => {
            let _ = write!(s, " pods {a}->{b}");
        }
        (_, _, Some(p)) => {
            let _ = write!(s, " pod {p}");
        }
        (Some(a), None, _) => {
            let _ = write!(s, " pods {a}->?");
        }
        (None, Some(b), _) => {
            let _ = write!(s, " pods ?->{b}");
        }
        _ => {}
    }
    s
}

impl Model {
    fn add_flow(&mut self, r: &FlowRow<'_>, heap: &mut BinaryHeap<std::cmp::Reverse<TopFlow>>) {
        let index = self.flow_rows;
        self.flow_rows += 1;
        let reason = r.reason_name.as_ref();
        match self
            .reason_totals
            .get_mut(&(r.origin.to_string(), reason.to_string()))
        {
            Some(t) => {
                t.0 += r.packets;
                t.1 += r.bytes;
            }
            None => {
                self.reason_totals.insert(
                    (r.origin.to_string(), reason.to_string()),
                    (r.packets, r.bytes),
                );
            }
        }
        let iface = match (&r.ifname, r.netns) {
            (Some(i), _) => i.to_string(),
            (None, Some(n)) => format!("netns {n}"),
            (None, None) => "?".to_string(),
        };
        self.interfaces.add(&iface, reason, r.packets);
        if let Some(p) = &r.pod {
            self.pods.add(p, reason, r.packets);
        }
        // Top flows: a bounded min-heap; a row smaller than its smallest is not labelled.
        let full = heap.len() >= TOP_FLOWS;
        if full {
            if let Some(min) = heap.peek() {
                let m = &min.0;
                if (r.packets, r.bytes) <= (m.packets, m.bytes) {
                    return;
                }
            }
        }
        let item = TopFlow {
            label: flow_label(r),
            origin: r.origin.to_string(),
            reason: reason.to_string(),
            packets: r.packets,
            bytes: r.bytes,
            index,
        };
        heap.push(std::cmp::Reverse(item));
        if heap.len() > TOP_FLOWS {
            heap.pop();
        }
    }

    fn add_storm(&mut self, r: &StormRow<'_>) {
        self.storm_rows += 1;
        let loc = r.symbol.as_deref().unwrap_or(&r.location);
        self.locations.add(loc, &r.reason_name, r.packets);
    }

    /// Reads a stats document (`--stats-json`) from `r`.
    pub fn read<R: Read + Send>(r: R) -> Result<Model, ReadError> {
        // Two threads: this one finds the rows (scan), a second one parses and folds them,
        // in batches of about BATCH bytes (at most DEPTH batches in flight: bounded memory).
        const BATCH: usize = 1 << 21;
        const DEPTH: usize = 4;
        type Batch = (Vec<u8>, Vec<(usize, usize, usize)>);
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(DEPTH);
        let (back_tx, back_rx) = crossbeam_channel::bounded::<Batch>(DEPTH + 2);
        let (rest, folded) = std::thread::scope(|s| {
            let folder = s.spawn(move || -> Result<Model, ReadError> {
                let mut m = Model::default();
                let mut heap = BinaryHeap::new();
                for (bytes, spans) in rx {
                    for &(which, a, b) in &spans {
                        let row = bytes.get(a..b).unwrap_or(&[]);
                        let parsed = if which == 0 {
                            serde_json::from_slice::<FlowRow<'_>>(row)
                                .map(|row| m.add_flow(&row, &mut heap))
                        } else {
                            serde_json::from_slice::<StormRow<'_>>(row).map(|row| m.add_storm(&row))
                        };
                        if let Err(e) = parsed {
                            return Err(ReadError::Row {
                                array: if which == 0 { "flows" } else { "storm.flows" },
                                row: if which == 0 {
                                    m.flow_rows
                                } else {
                                    m.storm_rows
                                },
                                err: e,
                            });
                        }
                    }
                    let _ = back_tx.try_send((bytes, spans));
                }
                let mut top: Vec<TopFlow> = heap.into_iter().map(|r| r.0).collect();
                top.sort_by(|a, b| b.cmp(a));
                m.top_flows = top;
                Ok(m)
            });
            let mut cur: Batch = (Vec::with_capacity(BATCH + 4096), Vec::new());
            let rest = scan(r, &[&["flows"], &["storm", "flows"]], |which, bytes| {
                let a = cur.0.len();
                cur.0.extend_from_slice(bytes);
                cur.1.push((which, a, cur.0.len()));
                if cur.0.len() >= BATCH {
                    let mut next = back_rx.try_recv().unwrap_or_default();
                    next.0.clear();
                    next.1.clear();
                    let full = std::mem::replace(&mut cur, next);
                    // The folder stopped (a bad row): its error is the one to report.
                    tx.send(full)
                        .map_err(|_| ScanError::Syntax("a row is not a flow row"))?;
                }
                Ok(())
            });
            if !cur.1.is_empty() {
                let _ = tx.send(cur);
            }
            drop(tx);
            let folded = folder
                .join()
                .unwrap_or_else(|_| Err(ReadError::NotStats("the row parser failed".into())));
            (rest, folded)
        });
        let mut m = match (rest, folded) {
            (_, Err(e)) => return Err(e),
            (Err(e), _) => return Err(e.into()),
            (Ok(rest), Ok(m)) => (rest, m),
        };
        let rest = std::mem::take(&mut m.0);
        let mut m = m.1;
        let doc: Value = serde_json::from_slice(&rest)
            .map_err(|e| ReadError::NotStats(format!("not JSON ({e})")))?;
        match doc.get("schema").and_then(Value::as_str) {
            Some(s) if s.starts_with("dropscope.stats/") => {}
            Some(s) => return Err(ReadError::NotStats(format!("its schema is {s:?}"))),
            None => return Err(ReadError::NotStats("it has no `schema` member".into())),
        }
        m.doc = doc;
        Ok(m)
    }
}
