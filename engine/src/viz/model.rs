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
    /// Rows folded into `other` because `keys` was full.
    pub other_rows: u64,
}

impl Capped {
    fn add(&mut self, key: &str, reason: &str, n: u64) {
        let per = if self.keys.contains_key(key) || self.keys.len() < MAX_KEYS {
            self.keys.entry_ref(key).or_default()
        } else {
            self.other_rows += 1;
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

impl ReadError {
    /// The row a row error is about (`u64::MAX` for other errors).
    fn row(&self) -> u64 {
        match self {
            ReadError::Row { row, .. } => *row,
            _ => u64::MAX,
        }
    }
}

/// Rows for a folder: their bytes, (array, start, end) of each, and the place in its array
/// of the batch's first flow row and first storm row.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize, usize)>,
    flow_base: u64,
    storm_base: u64,
}

/// Parses and folds batches until the channel closes; the first bad row stops it.
type Folded = (Model, BinaryHeap<std::cmp::Reverse<TopFlow>>);
fn fold(
    rx: crossbeam_channel::Receiver<Batch>,
    back: crossbeam_channel::Sender<Batch>,
) -> Result<Folded, ReadError> {
    let mut m = Model::default();
    let mut heap = BinaryHeap::new();
    for batch in rx {
        let (mut fi, mut si) = (batch.flow_base, batch.storm_base);
        for &(which, a, b) in &batch.spans {
            let row = batch.bytes.get(a..b).unwrap_or(&[]);
            let parsed = if which == 0 {
                fi += 1;
                serde_json::from_slice::<FlowRow<'_>>(row)
                    .map(|r| m.add_flow(&r, fi - 1, &mut heap))
            } else {
                si += 1;
                serde_json::from_slice::<StormRow<'_>>(row).map(|r| m.add_storm(&r))
            };
            if let Err(e) = parsed {
                return Err(ReadError::Row {
                    array: if which == 0 { "flows" } else { "storm.flows" },
                    row: if which == 0 { fi - 1 } else { si - 1 },
                    err: e,
                });
            }
        }
        let _ = back.try_send(batch);
    }
    Ok((m, heap))
}

impl Capped {
    /// Adds everything `o` counted (keys beyond the cap go to `other`).
    fn merge(&mut self, o: Capped) {
        for (k, per) in o.keys {
            for (r, n) in per {
                self.add(&k, &r, n);
            }
        }
        for (r, n) in o.other {
            *self.other.entry(r).or_insert(0) += n;
        }
        self.other_rows += o.other_rows;
    }
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
    fn add_flow(
        &mut self,
        r: &FlowRow<'_>,
        index: u64,
        heap: &mut BinaryHeap<std::cmp::Reverse<TopFlow>>,
    ) {
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

    /// Adds the rows another folder read (not its top flows: the caller merges those).
    fn merge(&mut self, o: Model) {
        self.flow_rows += o.flow_rows;
        self.storm_rows += o.storm_rows;
        for (k, (p, b)) in o.reason_totals {
            let t = self.reason_totals.entry(k).or_insert((0, 0));
            t.0 += p;
            t.1 += b;
        }
        self.interfaces.merge(o.interfaces);
        self.pods.merge(o.pods);
        self.locations.merge(o.locations);
    }

    fn add_storm(&mut self, r: &StormRow<'_>) {
        self.storm_rows += 1;
        let loc = r.symbol.as_deref().unwrap_or(&r.location);
        self.locations.add(loc, &r.reason_name, r.packets);
    }

    /// Reads a stats document (`--stats-json`) from `r`.
    pub fn read<R: Read + Send>(r: R) -> Result<Model, ReadError> {
        // This thread finds the rows (scan); FOLDERS threads parse and fold them, in batches
        // of about BATCH bytes (at most DEPTH batches in flight: bounded memory), each
        // batch with the place of its first rows so ties and errors name the document's
        // order; the folds are merged at the end.
        const BATCH: usize = 1 << 21;
        const DEPTH: usize = 4;
        const FOLDERS: usize = 2;
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(DEPTH);
        let (back_tx, back_rx) = crossbeam_channel::bounded::<Batch>(DEPTH + 2 * FOLDERS);
        let (rest, folded) = std::thread::scope(|s| {
            let folders: Vec<_> = (0..FOLDERS)
                .map(|_| {
                    let (rx, back_tx) = (rx.clone(), back_tx.clone());
                    s.spawn(move || fold(rx, back_tx))
                })
                .collect();
            drop(rx);
            let mut cur = Batch::default();
            let (mut flows, mut storms) = (0u64, 0u64);
            let rest = scan(r, &[&["flows"], &["storm", "flows"]], |which, bytes| {
                let a = cur.bytes.len();
                cur.bytes.extend_from_slice(bytes);
                cur.spans.push((which, a, cur.bytes.len()));
                if which == 0 {
                    flows += 1;
                } else {
                    storms += 1;
                }
                if cur.bytes.len() >= BATCH {
                    let mut next = back_rx.try_recv().unwrap_or_default();
                    next.bytes.clear();
                    next.spans.clear();
                    (next.flow_base, next.storm_base) = (flows, storms);
                    let full = std::mem::replace(&mut cur, next);
                    // Every folder stopped (bad rows): their error is the one to report.
                    tx.send(full)
                        .map_err(|_| ScanError::Syntax("a row is not a flow row"))?;
                }
                Ok(())
            });
            if !cur.spans.is_empty() {
                let _ = tx.send(cur);
            }
            drop(tx);
            let mut merged: Result<(Model, Vec<TopFlow>), ReadError> =
                Ok((Model::default(), Vec::new()));
            for f in folders {
                let one = f
                    .join()
                    .unwrap_or_else(|_| Err(ReadError::NotStats("the row parser failed".into())));
                merged = match (merged, one) {
                    (Ok((mut m, mut top)), Ok((o, heap))) => {
                        m.merge(o);
                        top.extend(heap.into_iter().map(|r| r.0));
                        Ok((m, top))
                    }
                    // The first row in the document's order that is bad.
                    (Err(a), Err(b)) => Err(if a.row() <= b.row() { a } else { b }),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            let folded = merged.map(|(mut m, mut top)| {
                top.sort_by(|a, b| b.cmp(a));
                top.truncate(TOP_FLOWS);
                m.top_flows = top;
                m
            });
            (rest, folded)
        });
        let (rest, mut m) = match (rest, folded) {
            (_, Err(e)) => return Err(e),
            (Err(e), _) => return Err(e.into()),
            (Ok(rest), Ok(m)) => (rest, m),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_rows_in_bounded_state_and_keeps_the_top() {
        let mut doc = String::from("{\n  \"schema\": \"dropscope.stats/1\",\n  \"flows\": [");
        for i in 0..30_000u64 {
            if i > 0 {
                doc.push(',');
            }
            // Every row on its own interface: more than MAX_KEYS of them.
            doc.push_str(&format!(
                "\n    {{\"origin\": \"kernel\", \"reason_name\": \"R{}\", \"packets\": {}, \"bytes\": 1, \"ifname\": \"if{i}\", \"src\": \"10.0.0.1\", \"dst\": \"10.0.0.2\", \"sport\": {i}, \"dport\": 9, \"proto_name\": \"udp\"}}",
                i % 2,
                (i * 7919) % 100_000
            ));
        }
        doc.push_str("\n  ],\n  \"storm\": {\"flows\": [{\"reason_name\": \"R0\", \"location\": \"0x1\", \"packets\": 5}]}\n}");
        let m = Model::read(doc.as_bytes()).unwrap();
        assert_eq!(m.flow_rows, 30_000);
        assert_eq!(m.storm_rows, 1);
        assert_eq!(m.top_flows.len(), TOP_FLOWS);
        let mut all: Vec<u64> = (0..30_000u64).map(|i| (i * 7919) % 100_000).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        let top: Vec<u64> = m.top_flows.iter().map(|f| f.packets).collect();
        assert_eq!(top, all[..TOP_FLOWS].to_vec());
        assert_eq!(m.interfaces.keys.len(), MAX_KEYS);
        let kept: u64 = m.interfaces.ranked().iter().map(|r| r.1).sum();
        let other: u64 = m.interfaces.other.values().sum();
        assert_eq!(kept + other, all.iter().sum::<u64>());
        assert_eq!(m.locations.ranked()[0].1, 5);
        assert_eq!(m.doc["flows"], serde_json::json!([]));
    }

    #[test]
    fn bad_documents_are_errors() {
        for doc in [
            "",
            "{}",
            "{\"schema\": \"other/1\"}",
            "{\"schema\": \"dropscope.stats/1\", \"flows\": [{\"packets\": -1}]}",
            "{\"schema\": \"dropscope.stats/1\", \"flows\": [{\"packets\": 1}",
            "[1, 2]",
        ] {
            assert!(Model::read(doc.as_bytes()).is_err(), "{doc}");
        }
        assert!(Model::read("{\"schema\": \"dropscope.stats/1\"}".as_bytes()).is_ok());
    }
}
