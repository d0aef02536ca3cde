//! Cilium datapath notifications: the binary records Cilium's eBPF programs write to the
//! `cilium_events` perf ring (drops, traces, policy verdicts, debug messages, socket
//! traces), decoded byte-exactly, with their code tables and `cilium monitor`-compatible text.
//!
//! * [`notify`] – plain structs and [`notify::decode`] (allocation-free, panic-free);
//! * [`tables`] – drop reasons, observation points, debug subtypes, identities, file ids per
//!   [`tables::CiliumRelease`];
//! * [`summary`] – the one-line connection summary (`GetConnectionSummary`);
//! * [`format`] – `cilium monitor` text lines and JSON lines.
//!
//! The reference is `docs/cilium-formats.md` (cilium `aeb2d1b68e0e`). Nothing in this
//! module panics on untrusted bytes.

pub mod format;
pub mod notify;
pub mod summary;
pub mod tables;

pub use format::{Formatter, Verbosity};
pub use notify::{
    decode, DebugCapture, DebugMsg, DecodeOptions, DecodeStats, Decoded, DropNotify, Layout,
    MessageKind, Notification, NotifyError, PolicyVerdictNotify, RecorderCapture, TraceNotify,
    TraceSockNotify,
};
pub use summary::{connection_summary, ConnectionSummary, SummaryOpts};
pub use tables::{reason_table, CiliumRelease};
