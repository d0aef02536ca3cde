//! Exact per-flow x reason drop counts in bounded memory: the [`FlowTable`].
//!
//! Every packet added is counted exactly once, whatever the table's size: when the table
//! holds `max_entries` keys, a packet with a new key is folded into its reason's overflow
//! row ([`AggKey::overflow`]) and counted in [`FlowTable::overflowed_packets`], so totals and
//! per-reason totals stay exact and only the per-flow split of the excess is lost. The table
//! never allocates per packet once a key is known, and never panics.
//!
//! Keys come from packets an attacker may craft, so the hash is seeded at random once per
//! process (all tables of a process share it, which lets [`FlowTable::merge`] combine their
//! overflow sketches). It is a folded-multiply hash over the key packed into eight words:
//! measured in benches/benches/aggregate.rs against hashbrown's default (foldhash over the
//! derived `Hash`) and std's SipHash.
//!
//! Memory: rows live packed in one `Vec` (96 bytes each) and the hash table holds only their
//! positions and 32 bits of hash (12 bytes a bucket). A table of rows in place would be half
//! empty after each doubling and copy every row at each resize: 1M rows took 200 MB and
//! peaked near 300 MB while resizing; packed, they take about 125 MB (96 MB of rows, 27 MB
//! of index). Reports need the rows in order: the largest few are picked with a bounded heap
//! ([`FlowTable::top_by_packets`]), and a whole ordering is done in place
//! ([`FlowTable::sort_top_by_packets`]), never on a copy.
//!
//! Must never: lose or double-count a packet, allocate per packet for a known key, or panic.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;

use crate::event::{Cause, Event};
use crate::packet::FlowKey;

pub use crate::event::ReasonKey;

/// What a row counts: one flow on one interface for one reason, between two identities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggKey {
    pub flow: FlowKey,
    pub ifindex: u32,
    pub netns: u32,
    pub reason: ReasonKey,
    /// Cilium security identities, 0 when unknown.
    pub src_identity: u32,
    pub dst_identity: u32,
}

impl AggKey {
    /// The row that collects a reason's packets once the table is full: every other field
    /// is zero. A real packet with no flow, interface or identity lands in the same row.
    pub fn overflow(reason: ReasonKey) -> AggKey {
        AggKey {
            flow: FlowKey::default(),
            ifindex: 0,
            netns: 0,
            reason,
            src_identity: 0,
            dst_identity: 0,
        }
    }

    pub fn is_overflow(&self) -> bool {
        *self == AggKey::overflow(self.reason)
    }
}

/// Counts of one row. `first_ns`/`last_ns` are the smallest and largest timestamps added,
/// whatever order they came in (per-CPU rings interleave).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggValue {
    pub packets: u64,
    /// Sum of the packets' original lengths.
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl AggValue {
    pub fn one(orig_len: u32, ts_ns: u64) -> AggValue {
        AggValue {
            packets: 1,
            bytes: u64::from(orig_len),
            first_ns: ts_ns,
            last_ns: ts_ns,
        }
    }

    #[inline(always)]
    fn add(&mut self, orig_len: u32, ts_ns: u64) {
        self.packets = self.packets.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(u64::from(orig_len));
        self.first_ns = self.first_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }

    /// Adds `other`'s counts; an empty value (no packets) has no time range to take.
    pub fn merge(&mut self, other: &AggValue) {
        if other.packets == 0 {
            return;
        }
        if self.packets == 0 {
            *self = *other;
            return;
        }
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.first_ns = self.first_ns.min(other.first_ns);
        self.last_ns = self.last_ns.max(other.last_ns);
    }
}

/// Bits of the overflow sketch (linear counting): 128 KiB, allocated at the first overflow.
const SKETCH_BITS_LOG2: u32 = 20;
const SKETCH_WORDS: usize = (1 << SKETCH_BITS_LOG2) / 64;

/// The per-flow x reason table. See the module documentation for its guarantees.
#[derive(Clone)]
pub struct FlowTable {
    /// Every row, in the order they were inserted (or as last arranged by
    /// [`FlowTable::sort_top_by_packets`]). Rows are never removed.
    rows: Vec<(AggKey, AggValue)>,
    /// Where each key's row is. Empty while stale: after `rows` were reordered it is
    /// rebuilt on the next lookup ([`FlowTable::reindex`]).
    index: HashTable<Slot>,
    /// How many leading `rows` are known to be in [`by_packets`] order and ahead of every
    /// other row. Any change of a count makes it 0.
    sorted_prefix: usize,
    hasher: KeyHasher,
    max_entries: usize,
    overflowed_packets: u64,
    /// One bit per hash of a key that was folded into an overflow row.
    overflow_sketch: Option<Box<[u64]>>,
    /// Estimated distinct overflowed keys of merged tables whose sketch could not be
    /// combined with ours (another hash seed).
    overflowed_keys_extra: u64,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.rows.len())
            .field("max_entries", &self.max_entries)
            .field("overflowed_packets", &self.overflowed_packets)
            .field("overflowed_keys", &self.overflowed_keys())
            .finish()
    }
}

impl FlowTable {
    /// A table of at most `max_entries` flow rows (plus one overflow row per reason that
    /// overflowed), hashing with the process-wide random seed.
    pub fn new(max_entries: usize) -> FlowTable {
        FlowTable::with_hasher(max_entries, KeyHasher::process())
    }

    /// Like [`FlowTable::new`] with a fixed hash seed, for reproducible tests and benches.
    pub fn with_seed(max_entries: usize, seed: u64) -> FlowTable {
        FlowTable::with_hasher(max_entries, KeyHasher::from_seed(seed))
    }

    fn with_hasher(max_entries: usize, hasher: KeyHasher) -> FlowTable {
        FlowTable {
            rows: Vec::new(),
            index: HashTable::new(),
            sorted_prefix: 0,
            hasher,
            max_entries,
            overflowed_packets: 0,
            overflow_sketch: None,
            overflowed_keys_extra: 0,
        }
    }

    /// Makes room for `rows` rows at once (at most the table's size): growing by doubling
    /// copies every row and faults fresh pages each time. The index still grows as it
    /// fills (a table sized for all rows at once spreads its few entries over all of it).
    pub fn reserve(&mut self, rows: usize) {
        let n = rows.min(self.max_entries).saturating_sub(self.rows.len());
        self.rows.reserve(n);
    }

    /// Counts one packet of `orig_len` bytes seen at `ts_ns`.
    #[inline]
    pub fn add(&mut self, key: &AggKey, orig_len: u32, ts_ns: u64) {
        self.sorted_prefix = 0;
        if self.index.len() != self.rows.len() {
            self.reindex();
        }
        let hash = self.hasher.hash(key);
        if let Some(v) = self.find_mut(hash, key) {
            v.add(orig_len, ts_ns);
            return;
        }
        self.insert(hash, key, &AggValue::one(orig_len, ts_ns));
    }

    /// Adds `value` under a key not found at `hash`, or under the overflow row when full.
    #[cold]
    #[inline(never)]
    fn insert(&mut self, hash: u64, key: &AggKey, value: &AggValue) {
        if self.rows.len() < self.max_entries || key.is_overflow() {
            self.push_row(hash, key, value);
            return;
        }
        self.overflowed_packets = self.overflowed_packets.wrapping_add(value.packets);
        self.sketch_mark(hash);
        let okey = AggKey::overflow(key.reason);
        let ohash = self.hasher.hash(&okey);
        if let Some(v) = self.find_mut(ohash, &okey) {
            v.merge(value);
        } else {
            self.push_row(ohash, &okey, value);
        }
    }

    /// Appends a row whose key (hashed to `hash`) is not in the table.
    fn push_row(&mut self, hash: u64, key: &AggKey, value: &AggValue) {
        let slot = Slot::new(hash, self.rows.len());
        self.index
            .insert_unique(slot.table_hash(), slot, |s| s.table_hash());
        self.rows.push((*key, *value));
    }

    /// The value of `key` (already hashed to `hash`), if it has a row.
    #[inline(always)]
    fn find_mut(&mut self, hash: u64, key: &AggKey) -> Option<&mut AggValue> {
        let probe = Slot::new(hash, 0);
        let rows = &mut self.rows;
        let slot = *self.index.find(probe.table_hash(), |s| {
            s.hash == probe.hash && rows.get(s.row()).is_some_and(|(k, _)| k == key)
        })?;
        rows.get_mut(slot.row()).map(|(_, v)| v)
    }

    /// Rebuilds the index from `rows` (after they were reordered).
    #[cold]
    #[inline(never)]
    fn reindex(&mut self) {
        self.index.clear();
        self.index.reserve(self.rows.len(), |s| s.table_hash());
        for (i, (k, _)) in self.rows.iter().enumerate() {
            let slot = Slot::new(self.hasher.hash(k), i);
            self.index
                .insert_unique(slot.table_hash(), slot, |s| s.table_hash());
        }
    }

    /// Adds a whole row's counts (the merge path).
    fn upsert(&mut self, key: &AggKey, value: &AggValue) {
        self.sorted_prefix = 0;
        if self.index.len() != self.rows.len() {
            self.reindex();
        }
        let hash = self.hasher.hash(key);
        if let Some(v) = self.find_mut(hash, key) {
            v.merge(value);
        } else {
            self.insert(hash, key, value);
        }
    }

    fn sketch_mark(&mut self, hash: u64) {
        let sketch = self
            .overflow_sketch
            .get_or_insert_with(|| vec![0u64; SKETCH_WORDS].into_boxed_slice());
        // The top bits: hashbrown picks buckets with the low bits and tags with the top 7,
        // and this only needs the bits to be uniform.
        let bit = (hash >> (64 - SKETCH_BITS_LOG2)) as usize;
        if let Some(w) = sketch.get_mut(bit / 64) {
            *w |= 1 << (bit % 64);
        }
    }

    /// Rows, overflow rows included.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Packets folded into overflow rows because the table was full.
    pub fn overflowed_packets(&self) -> u64 {
        self.overflowed_packets
    }

    /// Distinct keys folded into overflow rows: an estimate (linear counting over 2^20
    /// bits), exact in practice for a few dozen keys, within 0.1% up to a million, and
    /// saturating near 14 million.
    pub fn overflowed_keys(&self) -> u64 {
        let Some(sketch) = &self.overflow_sketch else {
            return self.overflowed_keys_extra;
        };
        let m = (1u64 << SKETCH_BITS_LOG2) as f64;
        let set: u64 = sketch.iter().map(|w| u64::from(w.count_ones())).sum();
        let zero = (m - set as f64).max(1.0);
        let estimate = (m * (m / zero).ln()).round() as u64;
        estimate.saturating_add(self.overflowed_keys_extra)
    }

    /// All rows, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&AggKey, &AggValue)> + '_ {
        self.rows.iter().map(|(k, v)| (k, v))
    }

    /// All rows, most packets first (then most bytes, then by key, so the order is total):
    /// a sorted copy of the whole table. Reports walk [`FlowTable::top_by_packets`] instead.
    pub fn sorted_by_packets(&self) -> Vec<(AggKey, AggValue)> {
        let mut v = self.rows.clone();
        if self.sorted_prefix < v.len() {
            v.sort_unstable_by(by_packets);
        }
        v
    }

    /// The `n` rows with most packets (all rows when `n` is at least [`FlowTable::len`]), in
    /// [`FlowTable::sorted_by_packets`]'s order, without copying a row.
    ///
    /// Rows already arranged by [`FlowTable::sort_top_by_packets`] are walked as they lie.
    /// Otherwise a few rows (`n` up to [`HEAP_PICK_MAX`] and a sixteenth of the table) are
    /// picked with a heap of `n` entries in one pass; more are selected and sorted through a
    /// vector of 24 bytes per row (their counts and a reference), which is slower than
    /// ordering the rows in place when keys decide many ties.
    pub fn top_by_packets(&self, n: usize) -> TopRows<'_> {
        let n = n.min(self.rows.len());
        let inner = if n <= self.sorted_prefix {
            TopInner::Sorted(self.rows.get(..n).unwrap_or_default().iter())
        } else if uses_heap(n, self.rows.len()) {
            TopInner::Picked(pick_top(&self.rows, n).into_iter())
        } else {
            let mut counted: Vec<Counted<'_>> = self.rows.iter().map(Counted::new).collect();
            select_top(&mut counted, n, Counted::order);
            counted.truncate(n);
            TopInner::Counted(counted.into_iter())
        };
        TopRows { inner }
    }

    /// Arranges the rows in place so that the `n` with most packets come first, in order
    /// (all rows when `n` is at least [`FlowTable::len`]), unless so few are asked for that
    /// [`FlowTable::top_by_packets`] picks them faster with its heap. No row is copied and
    /// no memory is allocated; the index is rebuilt on the next [`FlowTable::add`] or
    /// [`FlowTable::merge`]. Counts are unchanged.
    pub fn sort_top_by_packets(&mut self, n: usize) {
        let n = n.min(self.rows.len());
        if n <= self.sorted_prefix || uses_heap(n, self.rows.len()) {
            return;
        }
        select_top(&mut self.rows, n, by_packets);
        self.sorted_prefix = n;
        // The rows moved: the index is stale (rebuilt when next needed).
        self.index.clear();
    }

    /// Adds every row of `other` into this table (rows that do not fit overflow as usual).
    pub fn merge(&mut self, other: FlowTable) {
        self.overflowed_packets = self
            .overflowed_packets
            .wrapping_add(other.overflowed_packets);
        if other.hasher == self.hasher {
            if let Some(theirs) = &other.overflow_sketch {
                let ours = self
                    .overflow_sketch
                    .get_or_insert_with(|| vec![0u64; SKETCH_WORDS].into_boxed_slice());
                for (a, b) in ours.iter_mut().zip(theirs.iter()) {
                    *a |= *b;
                }
            }
            self.overflowed_keys_extra = self
                .overflowed_keys_extra
                .saturating_add(other.overflowed_keys_extra);
        } else {
            // Sketches of different seeds cannot be united: add the estimates (keys that
            // overflowed in both tables are then counted twice).
            self.overflowed_keys_extra = self
                .overflowed_keys_extra
                .saturating_add(other.overflowed_keys());
        }
        for (k, v) in other.rows {
            self.upsert(&k, &v);
        }
    }

    /// The sum of all rows: every packet ever added, exactly.
    pub fn totals(&self) -> AggValue {
        let mut t = AggValue::default();
        for (_, v) in &self.rows {
            t.merge(v);
        }
        t
    }

    /// The sum of all rows per reason, exactly.
    pub fn per_reason_totals(&self) -> BTreeMap<ReasonKey, AggValue> {
        let mut m: BTreeMap<ReasonKey, AggValue> = BTreeMap::new();
        for (k, v) in &self.rows {
            m.entry(k.reason).or_default().merge(v);
        }
        m
    }
}

/// An index entry: a row's position in [`FlowTable`]'s rows and 32 bits of its key's hash.
/// The index moves its entries by these bits when it grows, without reading a row (rows
/// are far apart in memory: reading them made growing the index a third of the run time
/// for a million flows). 12 bytes: a 64-bit position split in two words keeps the
/// alignment at 4.
#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u32,
    row_lo: u32,
    row_hi: u32,
}

impl Slot {
    #[inline(always)]
    fn new(key_hash: u64, row: usize) -> Slot {
        let row = row as u64;
        Slot {
            hash: key_hash as u32,
            row_lo: row as u32,
            row_hi: (row >> 32) as u32,
        }
    }

    #[inline(always)]
    fn row(self) -> usize {
        (u64::from(self.row_hi) << 32 | u64::from(self.row_lo)) as usize
    }

    /// The hash the index uses: the 32 bits spread over 64 by an odd multiplier, so the low
    /// bits (which pick the bucket) and the top 7 (the tag) both vary.
    #[inline(always)]
    fn table_hash(self) -> u64 {
        u64::from(self.hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// The order of reports: most packets first, then most bytes, then by key (a total order:
/// keys are unique in a table).
fn by_packets((ka, a): &(AggKey, AggValue), (kb, b): &(AggKey, AggValue)) -> Ordering {
    b.packets
        .cmp(&a.packets)
        .then(b.bytes.cmp(&a.bytes))
        .then(ka.cmp(kb))
}

/// At most this many rows are picked with a heap ([`FlowTable::top_by_packets`]).
pub const HEAP_PICK_MAX: usize = 1 << 16;

/// Whether picking `n` of `len` rows with a heap is cheaper than ordering them in place:
/// the heap costs one pass plus `log n` per row that enters it, and memory for `n` entries.
fn uses_heap(n: usize, len: usize) -> bool {
    n < len && n <= HEAP_PICK_MAX && n.saturating_mul(16) <= len
}

/// The first `n` of `v` in `cmp` order, sorted, at the front of `v` (the rest in any order).
fn select_top<T>(v: &mut [T], n: usize, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if n == 0 {
        return;
    }
    if n < v.len() {
        v.select_nth_unstable_by(n - 1, &mut cmp);
    }
    if let Some(head) = v.get_mut(..n) {
        head.sort_unstable_by(cmp);
    }
}

/// A row in the heap of [`pick_top`]: ordered as [`by_packets`], so the heap's greatest is
/// the row that would come last of those kept.
struct Ranked<'a>(&'a (AggKey, AggValue));

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        by_packets(self.0, other.0) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        by_packets(self.0, other.0)
    }
}

/// The `n` first rows in [`by_packets`] order, sorted, in one pass with a heap of `n`.
fn pick_top(rows: &[(AggKey, AggValue)], n: usize) -> Vec<&(AggKey, AggValue)> {
    if n == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Ranked<'_>> = BinaryHeap::with_capacity(n);
    for row in rows {
        if heap.len() < n {
            heap.push(Ranked(row));
        } else if let Some(mut last) = heap.peek_mut() {
            if by_packets(row, last.0) == Ordering::Less {
                *last = Ranked(row);
            }
        }
    }
    heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
}

/// A row with its counts beside it, so that ordering compares nearby memory and reads the
/// row only to break a tie by key.
struct Counted<'a> {
    packets: u64,
    bytes: u64,
    row: &'a (AggKey, AggValue),
}

impl<'a> Counted<'a> {
    fn new(row: &'a (AggKey, AggValue)) -> Self {
        Counted {
            packets: row.1.packets,
            bytes: row.1.bytes,
            row,
        }
    }

    /// [`by_packets`].
    fn order(a: &Counted<'_>, b: &Counted<'_>) -> Ordering {
        (b.packets, b.bytes)
            .cmp(&(a.packets, a.bytes))
            .then_with(|| a.row.0.cmp(&b.row.0))
    }
}

/// Rows in report order, from [`FlowTable::top_by_packets`].
pub struct TopRows<'a> {
    inner: TopInner<'a>,
}

enum TopInner<'a> {
    /// A prefix of rows already in order.
    Sorted(std::slice::Iter<'a, (AggKey, AggValue)>),
    /// Rows picked into a vector of references.
    Picked(std::vec::IntoIter<&'a (AggKey, AggValue)>),
    /// Rows selected with their counts.
    Counted(std::vec::IntoIter<Counted<'a>>),
}

impl<'a> Iterator for TopRows<'a> {
    type Item = (&'a AggKey, &'a AggValue);

    fn next(&mut self) -> Option<Self::Item> {
        let row = match &mut self.inner {
            TopInner::Sorted(it) => it.next(),
            TopInner::Picked(it) => it.next(),
            TopInner::Counted(it) => it.next().map(|c| c.row),
        }?;
        Some((&row.0, &row.1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            TopInner::Sorted(it) => it.size_hint(),
            TopInner::Picked(it) => it.size_hint(),
            TopInner::Counted(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for TopRows<'_> {}

/// Folded-multiply hash of an [`AggKey`] packed into eight words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyHasher {
    seeds: [u64; 9],
}

impl KeyHasher {
    fn process() -> KeyHasher {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x6472_6f70_7363_6f70u64));
        KeyHasher::from_seed(seed)
    }

    fn from_seed(seed: u64) -> KeyHasher {
        // splitmix64 spreads one seed over all the words.
        let mut x = seed;
        let mut seeds = [0u64; 9];
        for s in &mut seeds {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *s = z ^ (z >> 31);
        }
        KeyHasher { seeds }
    }

    #[inline(always)]
    fn hash(&self, k: &AggKey) -> u64 {
        let f = &k.flow;
        let [s0, s1, s2, s3, s4, s5, s6, s7, s8] = self.seeds;
        let (src_lo, src_hi) = halves(&f.src);
        let (dst_lo, dst_hi) = halves(&f.dst);
        let w0 = u64::from(f.family)
            | u64::from(f.proto) << 8
            | u64::from(f.vlan) << 16
            | u64::from(f.sport) << 32
            | u64::from(f.dport) << 48;
        let reason = match k.reason {
            ReasonKey::Kernel(r) => 1 << 32 | u64::from(r),
            ReasonKey::Cilium(r) => 2 << 32 | u64::from(r),
            ReasonKey::Captured => 3 << 32,
            ReasonKey::CiliumEvent(t) => 4 << 32 | u64::from(t),
            ReasonKey::Packet { dir, .. } => 5 << 32 | dir.epb_flags() as u64,
        };
        let w5 = u64::from(k.ifindex) | u64::from(k.netns) << 32;
        let w7 = u64::from(k.src_identity) | u64::from(k.dst_identity) << 32;
        let a = fold_mul(w0 ^ s0, src_lo ^ s1);
        let b = fold_mul(src_hi ^ s2, dst_lo ^ s3);
        let c = fold_mul(dst_hi ^ s4, w5 ^ s5);
        let d = fold_mul(reason ^ s6, w7 ^ s7);
        fold_mul(a ^ c.rotate_left(32), b ^ d.rotate_left(32) ^ s8)
    }
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = *a;
    (
        u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
    )
}

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The aggregation reason and (source, destination) identities of an event.
pub fn reason_and_identities(e: &Event) -> (ReasonKey, u32, u32) {
    match &e.cause {
        Cause::Kernel { reason, .. } => (ReasonKey::Kernel(*reason), 0, 0),
        Cause::Captured => (ReasonKey::Captured, 0, 0),
        Cause::Packet { dir } => (
            ReasonKey::Packet {
                ifindex: e.ifindex,
                netns: e.netns,
                dir: *dir,
            },
            0,
            0,
        ),
        other @ Cause::Cilium(_) => crate::cilium_glue::reason_and_identities(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn key(n: u8, reason: ReasonKey) -> AggKey {
        AggKey {
            flow: FlowKey::v4(
                Ipv4Addr::new(10, 0, 0, n),
                1000 + u16::from(n),
                Ipv4Addr::new(10, 0, 1, 1),
                80,
                6,
            ),
            ifindex: 2,
            netns: 4026531840,
            reason,
            src_identity: 100,
            dst_identity: 200,
        }
    }

    const K: ReasonKey = ReasonKey::Kernel(2);
    const C: ReasonKey = ReasonKey::Cilium(133);

    fn row(t: &FlowTable, k: &AggKey) -> Option<AggValue> {
        t.iter().find(|(kk, _)| *kk == k).map(|(_, v)| *v)
    }

    fn val(packets: u64, bytes: u64, first_ns: u64, last_ns: u64) -> AggValue {
        AggValue {
            packets,
            bytes,
            first_ns,
            last_ns,
        }
    }

    #[test]
    fn interleaved_counts_are_exact() {
        let mut t = FlowTable::with_seed(100, 1);
        let (a, b, c) = (key(1, K), key(2, K), key(1, C));
        // Timestamps out of order, as per-CPU rings deliver them.
        t.add(&a, 100, 50);
        t.add(&b, 60, 40);
        t.add(&a, 1500, 30);
        t.add(&c, 70, 45);
        t.add(&a, 40, 90);
        t.add(&b, 60, 41);
        assert_eq!(t.len(), 3);
        assert_eq!(row(&t, &a), Some(val(3, 1640, 30, 90)));
        assert_eq!(row(&t, &b), Some(val(2, 120, 40, 41)));
        assert_eq!(row(&t, &c), Some(val(1, 70, 45, 45)));
        assert_eq!(t.totals(), val(6, 1830, 30, 90));
        let per = t.per_reason_totals();
        assert_eq!(per.len(), 2);
        assert_eq!(per[&K], val(5, 1760, 30, 90));
        assert_eq!(per[&C], val(1, 70, 45, 45));
        assert_eq!((t.overflowed_packets(), t.overflowed_keys()), (0, 0));
        let sorted: Vec<AggKey> = t.sorted_by_packets().into_iter().map(|(k, _)| k).collect();
        assert_eq!(sorted, vec![a, b, c]);
    }

    #[test]
    fn overflow_folds_new_keys_per_reason() {
        let mut t = FlowTable::with_seed(2, 7);
        t.add(&key(1, K), 100, 10);
        t.add(&key(2, C), 200, 20);
        // Full: these three keys (two kernel, one cilium) go to their reasons' overflow rows.
        t.add(&key(3, K), 300, 30);
        t.add(&key(4, K), 400, 5);
        t.add(&key(3, K), 300, 35);
        t.add(&key(5, C), 500, 40);
        // Known keys still count in their own rows.
        t.add(&key(1, K), 100, 50);
        assert_eq!(t.len(), 4);
        assert_eq!(row(&t, &key(1, K)), Some(val(2, 200, 10, 50)));
        assert_eq!(row(&t, &key(2, C)), Some(val(1, 200, 20, 20)));
        assert_eq!(row(&t, &key(3, K)), None);
        assert_eq!(row(&t, &AggKey::overflow(K)), Some(val(3, 1000, 5, 35)));
        assert_eq!(row(&t, &AggKey::overflow(C)), Some(val(1, 500, 40, 40)));
        assert_eq!(t.overflowed_packets(), 4);
        assert_eq!(t.overflowed_keys(), 3);
        assert_eq!(t.per_reason_totals()[&K], val(5, 1200, 5, 50));
        assert_eq!(t.totals(), val(7, 1900, 5, 50));
        assert!(AggKey::overflow(K).is_overflow());
        assert!(!key(1, K).is_overflow());
    }

    #[test]
    fn zero_entries_puts_everything_in_overflow_rows() {
        let mut t = FlowTable::with_seed(0, 3);
        t.add(&key(1, ReasonKey::Captured), 10, 1);
        t.add(&key(2, ReasonKey::Captured), 20, 2);
        assert_eq!(t.len(), 1);
        assert_eq!(
            row(&t, &AggKey::overflow(ReasonKey::Captured)),
            Some(val(2, 30, 1, 2))
        );
        assert_eq!((t.overflowed_packets(), t.overflowed_keys()), (2, 2));
    }

    #[test]
    fn merge_adds_rows_counters_and_sketches() {
        let mut a = FlowTable::with_seed(2, 9);
        let mut b = FlowTable::with_seed(10, 9);
        a.add(&key(1, K), 10, 100);
        a.add(&key(2, K), 10, 100);
        a.add(&key(3, K), 10, 100); // overflows in a
        b.add(&key(1, K), 5, 50);
        b.add(&key(3, K), 5, 300);
        b.add(&key(4, C), 7, 70);
        a.merge(b);
        assert_eq!(row(&a, &key(1, K)), Some(val(2, 15, 50, 100)));
        assert_eq!(row(&a, &key(2, K)), Some(val(1, 10, 100, 100)));
        // key 3 and key 4 do not fit in a: both overflow there.
        assert_eq!(row(&a, &AggKey::overflow(K)), Some(val(2, 15, 100, 300)));
        assert_eq!(row(&a, &AggKey::overflow(C)), Some(val(1, 7, 70, 70)));
        assert_eq!(a.overflowed_packets(), 3);
        assert_eq!(a.overflowed_keys(), 2);
        assert_eq!(a.totals(), val(6, 47, 50, 300));

        // Tables of different seeds add their overflow estimates instead.
        let mut c = FlowTable::with_seed(0, 1);
        let mut d = FlowTable::with_seed(0, 2);
        c.add(&key(1, K), 1, 1);
        d.add(&key(1, K), 1, 1);
        d.add(&key(2, K), 1, 1);
        c.merge(d);
        assert_eq!((c.overflowed_packets(), c.overflowed_keys()), (3, 3));
        assert_eq!(row(&c, &AggKey::overflow(K)), Some(val(3, 3, 1, 1)));
    }

    #[test]
    fn process_seed_tables_agree() {
        let mut a = FlowTable::new(1);
        let mut b = FlowTable::new(1);
        a.add(&key(1, K), 1, 1);
        b.add(&key(1, K), 1, 1);
        b.add(&key(2, K), 1, 1);
        a.merge(b);
        assert_eq!(row(&a, &key(1, K)), Some(val(2, 2, 1, 1)));
        assert_eq!((a.overflowed_packets(), a.overflowed_keys()), (1, 1));
    }

    #[test]
    fn sketch_estimate_is_close_for_many_keys() {
        let mut t = FlowTable::with_seed(0, 5);
        let n = 200_000u32;
        for i in 0..n {
            let mut k = key(0, K);
            k.src_identity = i;
            t.add(&k, 1, 1);
        }
        let est = t.overflowed_keys() as f64;
        assert!(
            (est - f64::from(n)).abs() / f64::from(n) < 0.01,
            "estimate {est}"
        );
        assert_eq!(t.overflowed_packets(), u64::from(n));
    }

    /// The reference order: every row copied and sorted by the documented rule.
    fn reference_order(t: &FlowTable) -> Vec<(AggKey, AggValue)> {
        let mut v: Vec<(AggKey, AggValue)> = t.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by(|(ka, a), (kb, b)| {
            (b.packets, b.bytes)
                .cmp(&(a.packets, a.bytes))
                .then(ka.cmp(kb))
        });
        v
    }

    fn top(t: &FlowTable, n: usize) -> Vec<(AggKey, AggValue)> {
        t.top_by_packets(n).map(|(k, v)| (*k, *v)).collect()
    }

    /// 300 rows over 3 reasons: packets 1..=5 and two lengths, so many rows tie on packets
    /// and bytes and the key decides.
    fn tied_table() -> FlowTable {
        let mut t = FlowTable::with_seed(1000, 13);
        for i in 0..300u32 {
            let mut k = key(
                (i % 100) as u8,
                [K, C, ReasonKey::Captured][(i / 100) as usize],
            );
            k.src_identity = i % 7;
            for _ in 0..=(i * 7919) % 5 {
                t.add(&k, 60 + 40 * (i % 2), u64::from(i));
            }
        }
        t
    }

    #[test]
    fn top_rows_are_the_sorted_prefix_for_every_n() {
        let t = tied_table();
        let want = reference_order(&t);
        assert_eq!(want.len(), 300);
        // Ties exist on (packets, bytes): the key decides them.
        assert!(want
            .windows(2)
            .any(|w| (w[0].1.packets, w[0].1.bytes) == (w[1].1.packets, w[1].1.bytes)));
        assert_eq!(want.first().map(|r| r.1.packets), Some(5));
        assert_eq!(want.last().map(|r| r.1.packets), Some(1));
        assert_eq!(t.sorted_by_packets(), want);
        for n in 0..=305 {
            // n <= 18 picks with the heap (a sixteenth of 300), larger n select and sort.
            let got = top(&t, n);
            assert_eq!(got.len(), n.min(300), "n = {n}");
            assert_eq!(got[..], want[..n.min(300)], "n = {n}");
            assert_eq!(t.top_by_packets(n).len(), n.min(300));
        }
    }

    #[test]
    fn sorting_in_place_keeps_every_count_and_the_table_usable() {
        for n in [0, 5, 19, 150, 300, 1000] {
            let mut t = tied_table();
            let want = reference_order(&t);
            let totals = t.totals();
            t.sort_top_by_packets(n);
            assert_eq!(top(&t, n), want[..n.min(300)], "n = {n}");
            assert_eq!(t.sorted_by_packets(), want, "n = {n}");
            assert_eq!(t.len(), 300);
            assert_eq!(t.totals(), totals);
            if n >= 150 {
                // Arranged in place: the first n rows, as they lie, are the top n.
                let head: Vec<(AggKey, AggValue)> =
                    t.iter().take(n).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(head, want[..n.min(300)], "n = {n}");
            }
            // Counting again after the rows moved: known keys find their rows, the order
            // is recomputed.
            let last = want[299].0;
            for _ in 0..10 {
                t.add(&last, 1, 1000);
            }
            t.add(&key(200, K), 5, 2000);
            assert_eq!(t.len(), 301);
            assert_eq!(row(&t, &last).map(|v| v.packets), Some(11));
            assert_eq!(row(&t, &key(200, K)), Some(val(1, 5, 2000, 2000)));
            assert_eq!(top(&t, 1), vec![(last, row(&t, &last).unwrap())]);
            assert_eq!(t.sorted_by_packets(), reference_order(&t));
            assert_eq!(t.totals().packets, totals.packets + 11);
        }
    }

    #[test]
    fn merging_into_a_sorted_table_finds_its_rows() {
        let mut a = tied_table();
        a.sort_top_by_packets(usize::MAX);
        let b = tied_table();
        let want: Vec<(AggKey, u64)> = reference_order(&b)
            .into_iter()
            .map(|(k, v)| (k, v.packets * 2))
            .collect();
        a.merge(b);
        assert_eq!(a.len(), 300);
        let got: Vec<(AggKey, u64)> = a
            .sorted_by_packets()
            .into_iter()
            .map(|(k, v)| (k, v.packets))
            .collect();
        assert_eq!(got, want);
    }

    // ---- properties ----

    type Input = (u8, u8, u32, u32, u64);

    fn input_key((flow, reason, _, _, _): &Input) -> AggKey {
        let r = match reason % 3 {
            0 => ReasonKey::Kernel(u32::from(*reason)),
            1 => ReasonKey::Cilium(*reason),
            _ => ReasonKey::Captured,
        };
        // Flow 1..=16, never the overflow row's zero flow.
        key(flow % 16 + 1, r)
    }

    fn exact(inputs: &[Input]) -> BTreeMap<AggKey, AggValue> {
        let mut m: BTreeMap<AggKey, AggValue> = BTreeMap::new();
        for i in inputs {
            m.entry(input_key(i))
                .or_default()
                .merge(&AggValue::one(i.2, i.4));
        }
        m
    }

    fn sum_by_reason(m: &BTreeMap<AggKey, AggValue>) -> BTreeMap<ReasonKey, AggValue> {
        let mut r: BTreeMap<ReasonKey, AggValue> = BTreeMap::new();
        for (k, v) in m {
            r.entry(k.reason).or_default().merge(v);
        }
        r
    }

    fn inputs() -> impl Strategy<Value = Vec<Input>> {
        proptest::collection::vec(
            (
                any::<u8>(),
                0u8..9,
                0u32..70000,
                any::<u32>(),
                0u64..1_000_000,
            ),
            0..300,
        )
    }

    fn fill(t: &mut FlowTable, inputs: &[Input]) {
        for i in inputs {
            t.add(&input_key(i), i.2, i.4);
        }
    }

    proptest! {
        #[test]
        fn totals_are_exact_for_any_size(ins in inputs(), max in 0usize..40, seed in any::<u64>()) {
            let mut t = FlowTable::with_seed(max, seed);
            fill(&mut t, &ins);
            let want = exact(&ins);
            let want_total = want.values().fold(AggValue::default(), |mut a, v| { a.merge(v); a });
            prop_assert_eq!(t.totals(), want_total);
            prop_assert_eq!(t.per_reason_totals(), sum_by_reason(&want));
            prop_assert!(t.iter().filter(|(k, _)| !k.is_overflow()).count() <= max);
            // A key's own row is exact; the rest of its reason is in the overflow row.
            let mut folded: BTreeMap<AggKey, AggValue> = BTreeMap::new();
            for (k, v) in &want {
                match row(&t, k) {
                    Some(got) => prop_assert_eq!(got, *v),
                    None => {
                        folded.entry(AggKey::overflow(k.reason)).or_default().merge(v);
                    }
                }
            }
            let overflow_rows: BTreeMap<AggKey, AggValue> =
                t.iter().filter(|(k, _)| k.is_overflow()).map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(&overflow_rows, &folded);
            prop_assert_eq!(t.overflowed_packets(), folded.values().map(|v| v.packets).sum::<u64>());
        }

        #[test]
        fn top_rows_agree_with_a_full_sort(ins in inputs(), n in 0usize..60, max in 1usize..40, in_place in any::<bool>()) {
            let mut t = FlowTable::with_seed(max, 21);
            fill(&mut t, &ins);
            let want = reference_order(&t);
            if in_place {
                t.sort_top_by_packets(n);
            }
            prop_assert_eq!(&top(&t, n)[..], &want[..n.min(want.len())]);
            prop_assert_eq!(t.sorted_by_packets(), want);
            // Still exact when counting goes on.
            fill(&mut t, &ins);
            let twice: Vec<Input> = ins.iter().chain(ins.iter()).copied().collect();
            let exact_twice = exact(&twice);
            let want_total = exact_twice.values().fold(AggValue::default(), |mut a, v| { a.merge(v); a });
            prop_assert_eq!(t.totals(), want_total);
            prop_assert_eq!(t.sorted_by_packets(), reference_order(&t));
        }

        #[test]
        fn merge_is_the_sum(ins in inputs(), split in any::<prop::sample::Index>(), ma in 0usize..20, mb in 0usize..20) {
            let n = split.index(ins.len() + 1);
            let (x, y) = ins.split_at(n);
            let mut a = FlowTable::with_seed(ma, 11);
            let mut b = FlowTable::with_seed(mb, 11);
            fill(&mut a, x);
            fill(&mut b, y);
            let overflowed = a.overflowed_packets() + b.overflowed_packets();
            a.merge(b);
            let want = exact(&ins);
            let want_total = want.values().fold(AggValue::default(), |mut s, v| { s.merge(v); s });
            prop_assert_eq!(a.totals(), want_total);
            prop_assert_eq!(a.per_reason_totals(), sum_by_reason(&want));
            prop_assert!(a.overflowed_packets() >= overflowed);

            // Without overflow, merging two halves gives the same rows as one table.
            let mut big_a = FlowTable::with_seed(1000, 3);
            let mut big_b = FlowTable::with_seed(1000, 3);
            fill(&mut big_a, x);
            fill(&mut big_b, y);
            big_a.merge(big_b);
            let mut one = FlowTable::with_seed(1000, 3);
            fill(&mut one, &ins);
            prop_assert_eq!(big_a.sorted_by_packets(), one.sorted_by_packets());
            let rows: BTreeMap<AggKey, AggValue> = one.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(rows, want);
        }
    }
}
