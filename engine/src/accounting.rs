//! The ledger: what happened to every event, per reason, at every stage, and the check that
//! the numbers add up.
//!
//! For each reason the ledger holds:
//! `observed` (counted where events originate, e.g. the kernel's per-CPU counters)
//! = `filtered` (turned away there by the selectors or the filter expression) + `in_table`
//! (counted in the kernel flow table) + `table_full` (no room there), and
//! `observed` = `filtered` + `not_copied` (the exemplar budget did not copy it) + `lost_ring`
//! (copied, but the ring had no room) + `delivered` (the source handed it to the pipeline);
//! `delivered` = `filtered_user` (turned away by the filter run in user space: sources with
//! no kernel filter, or an expression the kernel would not take) + `received` (the decode
//! stage counted it; channels block, they do not drop);
//! `received` = `skipped` (after `-c COUNT`) + `processed` (aggregated, written, printed). Losses that cannot be attributed to a reason (malformed records, lost-record
//! notices from Cilium's agent) are kept by stage and kind. Nothing here may be hidden from
//! the final summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aggregate::ReasonKey;

/// One reason's row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReasonRow {
    /// Counted at the origin; `None` when the origin keeps no count (a file, a socket).
    pub observed: Option<u64>,
    /// Counted in the kernel flow table; `None` without one.
    pub in_table: Option<u64>,
    /// Turned away at the origin (the kernel program) by the selectors or the expression.
    pub filtered: u64,
    /// Turned away in user space by the selectors or the expression.
    pub filtered_user: u64,
    pub table_full: u64,
    pub not_copied: u64,
    pub lost_ring: u64,
    pub delivered: u64,
    pub received: u64,
    pub skipped: u64,
    pub processed: u64,
}

/// Where in the pipeline something was lost or left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// The kernel program (its counters).
    Kernel,
    /// The kernel source reading the rings.
    Source,
    /// Cilium's agent (its perf ring, before the monitor socket).
    CiliumAgent,
    /// Cilium's perf ring read by dropscope itself (`--source cilium-datapath`).
    CiliumDatapath,
    /// The agent's monitor socket (the gob stream).
    Socket,
    /// Decoding Cilium notifications.
    Decode,
    /// A selection the user asked for (`--type`).
    Filter,
    /// A capture file being read.
    File,
    /// A text input (`cilium monitor`, Hubble, JSON lines) being read.
    Text,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Source => "source",
            Stage::CiliumAgent => "cilium-agent",
            Stage::CiliumDatapath => "cilium-datapath",
            Stage::Socket => "socket",
            Stage::Decode => "decode",
            Stage::Filter => "filter",
            Stage::File => "file",
            Stage::Text => "text",
        }
    }
}

/// What happened to the events a [`StageLoss`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossKind {
    /// Records whose bytes did not decode, by why (`too_short`, `bad_version`, ...).
    Malformed(&'static str),
    /// Drops counted only in the totals: the kernel's per-reason map was full.
    ReasonMapFull,
    /// Program runs the kernel skipped (a tracing program already running on that CPU).
    RecursionMisses,
    /// A run nested in another on one CPU, turned away by the program.
    NestedRunsRefused,
    /// Packets (`--packets`) the tc programs could not copy: the ring was being written.
    PacketsRingBusy,
    /// Packets counted only in the totals: the per-interface map was full.
    PacketMapFull,
    /// Records Cilium's agent lost in its perf ring.
    PerfRingLostRecords,
    /// Records lost in Cilium's perf ring on one CPU (read by dropscope itself).
    PerfRingLostOnCpu(i64),
    /// Notifications that did not decode, by why (`notification_too_short`, ...).
    Undecodable(&'static str),
    /// Connections dropped because their bytes could not be decoded.
    StreamsAbandoned,
    /// A gob message cut off when the connection closed.
    MessageCutAtClose,
    /// Bytes of the stream skipped while resynchronising.
    BytesDiscarded,
    AgentNotificationUndecodable,
    L7RecordUndecodable,
    /// Packets of a link type dropscope does not decode: the type, when all were of one.
    LinkType(Option<u16>),
    /// The file ends inside a block (kill -9, a full disk): read up to it.
    TruncatedFile,
    /// Other packets or blocks of a file skipped, by why (`cooked_not_ip`, `corrupt_block`, ...).
    FileSkip(&'static str),
    /// The kernel-table block of a dropscope file could not be read.
    KernelTableUnreadable,
    /// Lines of a text input that held no record, by why (`not_a_record`, `bad_json`, ...).
    SkippedLines(&'static str),
    /// Events left out by `--type`: selected away, not lost.
    FilteredByType,
}

impl LossKind {
    /// The snake_case name the stats JSON carries (`malformed_too_short`, `linktype_0`, ...).
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::{Borrowed, Owned};
        match *self {
            LossKind::Malformed(why) => Owned(format!("malformed_{why}")),
            LossKind::ReasonMapFull => Borrowed("reason_map_full"),
            LossKind::RecursionMisses => Borrowed("recursion_misses"),
            LossKind::NestedRunsRefused => Borrowed("nested_runs_refused"),
            LossKind::PacketsRingBusy => Borrowed("packets_ring_busy"),
            LossKind::PacketMapFull => Borrowed("packet_map_full"),
            LossKind::PerfRingLostRecords => Borrowed("perf_ring_lost_records"),
            LossKind::PerfRingLostOnCpu(cpu) => Owned(format!("perf_ring_lost_cpu{cpu}")),
            LossKind::Undecodable(why) | LossKind::FileSkip(why) => Borrowed(why),
            LossKind::StreamsAbandoned => Borrowed("streams_abandoned"),
            LossKind::MessageCutAtClose => Borrowed("message_cut_at_close"),
            LossKind::BytesDiscarded => Borrowed("bytes_discarded"),
            LossKind::AgentNotificationUndecodable => Borrowed("agent_notification_undecodable"),
            LossKind::L7RecordUndecodable => Borrowed("l7_record_undecodable"),
            LossKind::LinkType(None) => Borrowed("linktype"),
            LossKind::LinkType(Some(t)) => Owned(format!("linktype_{t}")),
            LossKind::TruncatedFile => Borrowed("truncated_file"),
            LossKind::KernelTableUnreadable => Borrowed("kernel_table_unreadable"),
            LossKind::SkippedLines(why) => Owned(format!("skipped_{why}")),
            LossKind::FilteredByType => Borrowed("filtered_by_type"),
        }
    }

    /// True when the user asked for it (a selection), false when something was lost.
    pub fn intentional(&self) -> bool {
        matches!(self, LossKind::FilteredByType)
    }
}

/// A loss or skip that is not attributable to one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageLoss {
    pub stage: Stage,
    pub kind: LossKind,
    pub count: u64,
}

impl Serialize for StageLoss {
    /// `{"stage": "kernel", "kind": "recursion_misses", "count": 3, "intentional": false}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut m = s.serialize_struct("StageLoss", 4)?;
        m.serialize_field("stage", self.stage.as_str())?;
        m.serialize_field("kind", &self.kind.name())?;
        m.serialize_field("count", &self.count)?;
        m.serialize_field("intentional", &self.kind.intentional())?;
        m.end()
    }
}

impl StageLoss {
    pub fn new(stage: Stage, kind: LossKind, count: u64) -> StageLoss {
        StageLoss { stage, kind, count }
    }

    /// One line in words for the summary: `file: 1 incomplete block at the end ...`.
    pub fn describe(&self) -> String {
        let n = self.count;
        let what = match self.kind {
            LossKind::TruncatedFile => format!(
                "the file ends inside a block ({n} cut off, e.g. by kill -9 or a full disk): everything before it was read"
            ),
            LossKind::LinkType(None) => format!(
                "{n} packets skipped: their link types are not supported; supported: {}",
                crate::pcap::linktype::SUPPORTED
            ),
            LossKind::LinkType(Some(t)) => format!(
                "{n} packets skipped: link type {} ({t}) not supported; supported: {}",
                crate::pcap::linktype::name(t),
                crate::pcap::linktype::SUPPORTED
            ),
            LossKind::ReasonMapFull => format!(
                "{n} drops counted only in the totals (the per-reason map was full)"
            ),
            LossKind::RecursionMisses => format!(
                "{n} drops missed: the kernel skipped the program while it was already running on that CPU"
            ),
            LossKind::NestedRunsRefused => {
                format!("{n} drops missed: a run nested in another on one CPU was turned away")
            }
            LossKind::FilteredByType => {
                format!("{n} events left out by --type (selected away, not lost)")
            }
            LossKind::Malformed(why) => {
                format!("{n} malformed records skipped ({})", why.replace('_', " "))
            }
            other => format!("{n} {}", other.name().replace('_', " ")),
        };
        format!("{}: {what}", self.stage.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub rows: BTreeMap<ReasonKey, ReasonRow>,
    pub stage_losses: Vec<StageLoss>,
}

/// One failed equation, for the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub reason: String,
    pub equation: String,
    pub left: u64,
    pub right: u64,
}

impl Ledger {
    pub fn row(&mut self, r: ReasonKey) -> &mut ReasonRow {
        self.rows.entry(r).or_default()
    }

    /// Adds a stage loss (merging with an existing (stage, kind) entry); zero counts are kept
    /// out so the summary lists only what happened.
    pub fn add_loss(&mut self, stage: Stage, kind: LossKind, count: u64) {
        if count == 0 {
            return;
        }
        if let Some(l) = self
            .stage_losses
            .iter_mut()
            .find(|l| l.stage == stage && l.kind == kind)
        {
            l.count += count;
        } else {
            self.stage_losses.push(StageLoss::new(stage, kind, count));
        }
    }

    /// Every equation of the module doc that does not hold.
    pub fn mismatches(&self, name: &dyn Fn(ReasonKey) -> String) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for (k, r) in &self.rows {
            if let Some(obs) = r.observed {
                let copied = r.filtered + r.not_copied + r.lost_ring + r.delivered;
                if obs != copied {
                    out.push(Mismatch {
                        reason: name(*k),
                        equation: "observed = filtered + not_copied + lost_ring + delivered".into(),
                        left: obs,
                        right: copied,
                    });
                }
                if let Some(t) = r.in_table {
                    if obs != r.filtered + t + r.table_full {
                        out.push(Mismatch {
                            reason: name(*k),
                            equation: "observed = filtered + in_table + table_full".into(),
                            left: obs,
                            right: r.filtered + t + r.table_full,
                        });
                    }
                }
            }
            if r.delivered != r.filtered_user + r.received {
                out.push(Mismatch {
                    reason: name(*k),
                    equation: "delivered = filtered_user + received".into(),
                    left: r.delivered,
                    right: r.filtered_user + r.received,
                });
            }
            if r.received != r.skipped + r.processed {
                out.push(Mismatch {
                    reason: name(*k),
                    equation: "received = skipped + processed".into(),
                    left: r.received,
                    right: r.skipped + r.processed,
                });
            }
        }
        out
    }

    pub fn totals(&self) -> ReasonRow {
        self.totals_where(|_| true)
    }

    /// The totals of the rows whose key `keep` says yes to.
    pub fn totals_where(&self, keep: impl Fn(&ReasonKey) -> bool) -> ReasonRow {
        let mut t = ReasonRow::default();
        for r in self.rows.iter().filter(|(k, _)| keep(k)).map(|(_, r)| r) {
            if let Some(o) = r.observed {
                *t.observed.get_or_insert(0) += o;
            }
            if let Some(o) = r.in_table {
                *t.in_table.get_or_insert(0) += o;
            }
            t.filtered += r.filtered;
            t.filtered_user += r.filtered_user;
            t.table_full += r.table_full;
            t.not_copied += r.not_copied;
            t.lost_ring += r.lost_ring;
            t.delivered += r.delivered;
            t.received += r.received;
            t.skipped += r.skipped;
            t.processed += r.processed;
        }
        t
    }

    /// The ledger as a fixed-width table (one line per reason, a total line, stage losses).
    pub fn render_text(&self, name: &dyn Fn(ReasonKey) -> String) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let names: Vec<String> = self.rows.keys().map(|k| name(*k)).collect();
        let w = names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(6)
            .clamp(6, 48);
        let table = self.rows.values().any(|r| r.in_table.is_some());
        let filtered = self
            .rows
            .values()
            .any(|r| r.filtered > 0 || r.filtered_user > 0);
        let obs = |o: Option<u64>| o.map_or_else(|| "-".to_string(), |v| v.to_string());
        let line = |s: &mut String, n: &str, r: &ReasonRow| {
            let _ = write!(s, "{:<w$} {:>10}", n, obs(r.observed));
            if filtered {
                let _ = write!(s, " {:>10}", r.filtered + r.filtered_user);
            }
            if table {
                let _ = write!(
                    s,
                    " {:>10} {:>10} {:>10}",
                    obs(r.in_table),
                    r.table_full,
                    r.not_copied
                );
            }
            let _ = writeln!(
                s,
                " {:>10} {:>10} {:>10} {:>10} {:>10}",
                r.lost_ring, r.delivered, r.received, r.skipped, r.processed
            );
        };
        let _ = write!(s, "{:<w$} {:>10}", "reason", "observed");
        if filtered {
            let _ = write!(s, " {:>10}", "filtered");
        }
        if table {
            let _ = write!(
                s,
                " {:>10} {:>10} {:>10}",
                "in-table", "table-full", "not-copied"
            );
        }
        let _ = writeln!(
            s,
            " {:>10} {:>10} {:>10} {:>10} {:>10}",
            "ring-lost", "delivered", "received", "skipped", "processed"
        );
        for (r, n) in self.rows.values().zip(&names) {
            line(&mut s, n, r);
        }
        let t = self.totals();
        line(&mut s, "total", &t);
        for l in &self.stage_losses {
            let _ = writeln!(s, "{}", l.describe());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nm(k: ReasonKey) -> String {
        format!("{k:?}")
    }

    #[test]
    fn balanced_ledger_has_no_mismatch_and_unbalanced_one_names_the_equation() {
        let mut l = Ledger::default();
        let r = l.row(ReasonKey::Kernel(3));
        *r = ReasonRow {
            observed: Some(10),
            in_table: Some(9),
            filtered: 0,
            filtered_user: 0,
            table_full: 1,
            not_copied: 0,
            lost_ring: 2,
            delivered: 8,
            received: 8,
            skipped: 1,
            processed: 7,
        };
        assert!(l.mismatches(&nm).is_empty());
        l.row(ReasonKey::Kernel(3)).lost_ring = 1;
        let m = l.mismatches(&nm);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].equation,
            "observed = filtered + not_copied + lost_ring + delivered"
        );
        assert_eq!((m[0].left, m[0].right), (10, 9));
        l.row(ReasonKey::Kernel(3)).not_copied = 1;
        assert!(l.mismatches(&nm).is_empty());
        l.row(ReasonKey::Kernel(3)).in_table = Some(8);
        let m = l.mismatches(&nm);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].equation, "observed = filtered + in_table + table_full");
        assert_eq!((m[0].left, m[0].right), (10, 9));
        l.row(ReasonKey::Kernel(3)).in_table = Some(9);
        let text = l.render_text(&nm);
        assert!(text.contains("in-table"), "{text}");
        let t = l.totals();
        assert_eq!((t.observed, t.delivered, t.processed), (Some(10), 8, 7));
        assert!(!text.contains("filtered"), "{text}");

        // Filtered in the kernel (2 of 12 seen) and in user space (1 of 8 delivered).
        let r = l.row(ReasonKey::Kernel(3));
        r.observed = Some(12);
        r.filtered = 2;
        assert!(l.mismatches(&nm).is_empty());
        l.row(ReasonKey::Kernel(3)).filtered_user = 1;
        let m = l.mismatches(&nm);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].equation, "delivered = filtered_user + received");
        assert_eq!((m[0].left, m[0].right), (8, 9));
        let r = l.row(ReasonKey::Kernel(3));
        r.received = 7;
        r.processed = 6;
        assert!(l.mismatches(&nm).is_empty());
        let text = l.render_text(&nm);
        assert!(text.contains("filtered"), "{text}");
        assert_eq!(l.totals().filtered + l.totals().filtered_user, 3);
    }

    #[test]
    fn stage_losses_merge_and_zero_is_omitted() {
        let mut l = Ledger::default();
        l.add_loss(Stage::Source, LossKind::Malformed("too_short"), 2);
        l.add_loss(Stage::Source, LossKind::Malformed("too_short"), 3);
        l.add_loss(Stage::Source, LossKind::Malformed("bad_kind"), 0);
        assert_eq!(l.stage_losses.len(), 1);
        assert_eq!(l.stage_losses[0].count, 5);
        assert!(l
            .render_text(&nm)
            .contains("source: 5 malformed records skipped (too short)"));
    }

    #[test]
    fn losses_are_named_in_the_stats_json_and_selections_are_not_losses() {
        let cases = [
            (
                Stage::Source,
                LossKind::Malformed("too_short"),
                "source",
                "malformed_too_short",
                false,
            ),
            (
                Stage::File,
                LossKind::LinkType(Some(0)),
                "file",
                "linktype_0",
                false,
            ),
            (
                Stage::File,
                LossKind::LinkType(None),
                "file",
                "linktype",
                false,
            ),
            (
                Stage::CiliumDatapath,
                LossKind::PerfRingLostOnCpu(3),
                "cilium-datapath",
                "perf_ring_lost_cpu3",
                false,
            ),
            (
                Stage::Text,
                LossKind::SkippedLines("bad_json"),
                "text",
                "skipped_bad_json",
                false,
            ),
            (
                Stage::Filter,
                LossKind::FilteredByType,
                "filter",
                "filtered_by_type",
                true,
            ),
        ];
        for (stage, kind, s, k, intentional) in cases {
            let v = serde_json::to_value(StageLoss::new(stage, kind, 4)).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"stage": s, "kind": k, "count": 4, "intentional": intentional})
            );
        }
        assert_eq!(
            StageLoss::new(Stage::File, LossKind::LinkType(Some(0)), 4).describe(),
            format!(
                "file: 4 packets skipped: link type NULL/Loopback (0) not supported; supported: {}",
                crate::pcap::linktype::SUPPORTED
            )
        );
    }
}
