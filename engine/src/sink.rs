//! The sink stage's outputs: a capture file, and/or a printer of text or JSON lines.
//!
//! Must never: leave a half-written capture file (the writer writes to a temporary file and
//! renames it on finish), or hide a write error (it ends the run with a clear message).

use std::io::Write;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::event::Event;
use crate::packet::PacketSummary;
use crate::pcap::{IfaceKey, OutPacket, PacketWriter, WriterStats};
use crate::render::Renderer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintMode {
    None,
    Text,
    Json,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SinkStats {
    pub file: Option<WriterStatsOut>,
    pub lines_printed: u64,
    /// Events whose packet was synthesised from headers, not written to the file (no
    /// `--synthesize`).
    pub synthesized_not_written: u64,
    /// Cilium notifications joined into a kernel drop of the same packet: written and
    /// printed once, with the kernel's record.
    pub joined_not_written: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct WriterStatsOut {
    pub path: String,
    pub format: String,
    pub packets: u64,
    pub bytes: u64,
    pub interfaces: u64,
    pub truncated_to_snaplen: u64,
    pub comments_dropped: u64,
    /// The file system filled up (why): the file was kept, cut at its last complete block,
    /// and `not_written` packets offered after were counted but not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_full: Option<String>,
    pub not_written: u64,
}

impl crate::pcap::FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            crate::pcap::FileFormat::Pcapng => "pcapng",
            crate::pcap::FileFormat::Pcap => "pcap",
        }
    }
}

pub use crate::atomic::{check_writable, tmp_path};

pub struct OutputSink {
    writer: Option<(Box<dyn PacketWriter>, String, String)>,
    mode: PrintMode,
    out: Box<dyn Write + Send>,
    line: String,
    lines: u64,
    synthesize: bool,
    synthesized_not_written: u64,
    joined_not_written: u64,
    /// Standard output was a pipe whose reader went away (`| head`).
    stdout_closed: bool,
    /// The datapath's facts for each drop (capture: read when it starts).
    datapath: Option<std::sync::Arc<crate::datapath::explain::EventFacts>>,
}

impl OutputSink {
    pub fn new(
        writer: Option<(Box<dyn PacketWriter>, String, String)>,
        mode: PrintMode,
        out: Box<dyn Write + Send>,
    ) -> Self {
        OutputSink {
            writer,
            mode,
            out,
            line: String::with_capacity(256),
            lines: 0,
            synthesize: false,
            synthesized_not_written: 0,
            joined_not_written: 0,
            stdout_closed: false,
            datapath: None,
        }
    }

    /// Annotates each drop with the datapath's facts that explain it (pcapng comment
    /// ` | datapath: ...`, JSON member `datapath`).
    pub fn with_datapath(
        mut self,
        f: std::sync::Arc<crate::datapath::explain::EventFacts>,
    ) -> Self {
        self.datapath = (!f.is_empty()).then_some(f);
        self
    }

    /// `--synthesize`: also write packets synthesised from headers (text inputs).
    pub fn with_synthesize(mut self, on: bool) -> Self {
        self.synthesize = on;
        self
    }

    /// Whether [`OutputSink::write`] reads its summary argument (only to print): when not,
    /// the pipeline does not carry summaries to the sink.
    pub fn needs_summaries(&self) -> bool {
        self.mode != PrintMode::None
    }

    /// Whether packets go to a capture file (their comments may name pods, from the
    /// packets' addresses: then the summaries are needed too).
    pub fn writes_file(&self) -> bool {
        self.writer.is_some()
    }

    pub fn write(&mut self, e: &Event, s: &PacketSummary, r: &mut Renderer<'_>) -> Result<()> {
        if e.meta
            .as_ref()
            .is_some_and(|m| m.joined == Some(crate::join::Joined::IntoKernel))
        {
            self.joined_not_written += 1;
            return Ok(());
        }
        let unwritten = !self.synthesize && e.meta.as_ref().is_some_and(|m| m.synthesized);
        if unwritten && self.writer.is_some() {
            self.synthesized_not_written += 1;
        }
        let datapath = self.datapath.as_ref().and_then(|f| {
            let (reason, _, _) = crate::aggregate::reason_and_identities(e);
            let own = f.annotate(reason, e.netns, e.ifindex);
            // A kernel drop joined with Cilium's notification of the same packet: Cilium's
            // reason's facts too (a full map behind it).
            let joined = match e.meta.as_ref().and_then(|m| m.joined.as_ref()) {
                Some(crate::join::Joined::Cilium(d)) => f.annotate(
                    crate::aggregate::ReasonKey::Cilium(d.subtype),
                    e.netns,
                    u32::MAX,
                ),
                _ => None,
            };
            match (own, joined) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            }
        });
        if let Some((w, path, _)) = self.writer.as_mut().filter(|_| !unwritten) {
            let names = r.names;
            let comment = r.comment(e, s);
            let annotated;
            let comment = match &datapath {
                Some(d) => {
                    // A word of its own after the comment's fields (readers split on
                    // spaces and ignore fields they do not know).
                    annotated = format!("{comment} | datapath: {d}");
                    annotated.as_str()
                }
                None => comment,
            };
            let p = OutPacket::of_event(e, comment);
            w.write(&p, &|k: &IfaceKey| names.iface_label(k.ifindex, k.netns))
                .with_context(|| format!("writing {path}"))?;
        }
        match self.mode {
            PrintMode::None => {}
            PrintMode::Text => {
                self.line.clear();
                r.text_line(&mut self.line, e, s);
                self.line.push('\n');
                self.emit()?;
            }
            PrintMode::Json => {
                self.line.clear();
                r.json_line(&mut self.line, e, s);
                if let (Some(d), true) = (&datapath, self.line.ends_with('}')) {
                    self.line.pop();
                    self.line.push_str(",\"datapath\":");
                    self.line
                        .push_str(&serde_json::to_string(d).unwrap_or_else(|_| "null".into()));
                    self.line.push('}');
                }
                self.line.push('\n');
                self.emit()?;
            }
        }
        Ok(())
    }

    /// Prints a notice (text: as `cilium monitor`; JSON: one object).
    pub fn write_notice(&mut self, n: &crate::event::Notice, r: &mut Renderer<'_>) -> Result<()> {
        use crate::event::Notice;
        self.line.clear();
        let f = &r.names.cilium.formatter;
        match (self.mode, n) {
            (PrintMode::None, _) => return Ok(()),
            (PrintMode::Text, Notice::Lost { cpu, count }) => f.write_lost(
                &mut self.line,
                (*cpu).clamp(0, i64::from(u32::MAX)) as u32,
                *count,
            ),
            (PrintMode::Text, Notice::Agent { kind, text }) => {
                f.write_agent(&mut self.line, *kind, text)
            }
            (PrintMode::Text, Notice::L7 { cpu }) => self
                .line
                .push_str(&format!("CPU {cpu:02}: L7 access-log record\n")),
            (PrintMode::Text, Notice::Unknown { typ, cpu }) => self
                .line
                .push_str(&format!("Unknown payload type: {typ}, CPU {cpu:02}\n")),
            (PrintMode::Json, n) => {
                let v = match n {
                    Notice::Lost { cpu, count } => {
                        serde_json::json!({"origin": "cilium", "type": "lost", "cpu": cpu, "lost": count})
                    }
                    Notice::Agent { kind, text } => {
                        let msg: serde_json::Value = serde_json::from_str(text)
                            .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
                        serde_json::json!({"origin": "cilium", "type": "agent", "subtype": crate::cilium::tables::AgentTypeDisplay(*kind).to_string(), "message": msg})
                    }
                    Notice::L7 { cpu } => {
                        serde_json::json!({"origin": "cilium", "type": "l7", "cpu": cpu})
                    }
                    Notice::Unknown { typ, cpu } => {
                        serde_json::json!({"origin": "cilium", "type": "unknown", "payload_type": typ, "cpu": cpu})
                    }
                };
                self.line.push_str(&v.to_string());
                self.line.push('\n');
            }
        }
        if !self.line.ends_with('\n') {
            self.line.push('\n');
        }
        self.emit()
    }

    fn emit(&mut self) -> Result<()> {
        self.lines += 1;
        match self.out.write_all(self.line.as_bytes()) {
            Ok(()) => Ok(()),
            // A closed pipe (`| head`) is not an error for the capture: stop printing (and,
            // when printing was all it did, the run: see `OutputSink::nothing_left`).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.mode = PrintMode::None;
                self.stdout_closed = true;
                Ok(())
            }
            Err(e) => Err(e).context("writing to standard output"),
        }
    }

    pub fn end_batch(&mut self) -> Result<()> {
        if self.mode != PrintMode::None {
            if let Err(e) = self.out.flush() {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    self.mode = PrintMode::None;
                    self.stdout_closed = true;
                } else {
                    return Err(e).context("writing to standard output");
                }
            }
        }
        Ok(())
    }

    /// True when standard output's reader went away and there is no file to write: the run
    /// has nothing left to produce but its summary (as tcpdump stops at `| head`).
    pub fn nothing_left(&self) -> bool {
        self.stdout_closed && self.writer.is_none()
    }

    /// Appends an application data block to the file (pcapng only); false when nothing was
    /// written (no file, or classic pcap).
    pub fn write_custom(&mut self, pen: u32, data: &[u8]) -> Result<bool> {
        match &mut self.writer {
            Some((w, path, _)) => Ok(w
                .write_custom(pen, data)
                .with_context(|| format!("writing to {path}"))?),
            None => Ok(false),
        }
    }

    pub fn finish(self) -> Result<SinkStats> {
        let mut out = self.out;
        let _ = out.flush();
        let file = match self.writer {
            Some((w, path, format)) => {
                let disk_full = w.disk_full();
                let st: WriterStats = w.finish().with_context(|| format!("finishing {path}"))?;
                Some(WriterStatsOut {
                    path,
                    format,
                    packets: st.packets,
                    bytes: st.bytes,
                    interfaces: st.ifaces,
                    truncated_to_snaplen: st.truncated_to_snaplen,
                    comments_dropped: st.comments_dropped,
                    disk_full,
                    not_written: st.not_written,
                })
            }
            None => None,
        };
        Ok(SinkStats {
            file,
            lines_printed: self.lines,
            synthesized_not_written: self.synthesized_not_written,
            joined_not_written: self.joined_not_written,
        })
    }
}
