//! dropscope's engine: sources -> decode -> (aggregate, sinks).
//!
//! Data flows one way. Sources (the kernel ring buffer, Cilium's monitor socket, pcap files)
//! produce [`event::Batch`]es of [`event::Event`]s; the decode stage attaches a
//! [`packet::PacketSummary`]; sinks (pcapng/pcap writers, the per-flow aggregator, text and
//! JSON printers) consume them. Every stage that skips or loses something counts it with a
//! reason in [`accounting`].
//!
//! Modules import one way too (a test, `tests/it/layering.rs`, keeps it so), roughly from the
//! bottom: byte readers and small facts ([`wire`], [`timefmt`], [`paths`], [`names`]); the
//! event types with their keys and names ([`event`]); decoders ([`packet`], [`cilium`],
//! [`kernel`]'s records and tables); the flow table ([`aggregate`]) and the Cilium glue;
//! the shared lookup tables ([`lookup`]); sources and their accounting; the words
//! ([`render`], a dispatcher to each kind's own formatting, [`storm`], [`report`]); the
//! pipeline and its sinks. Nothing below the renderer calls it.

// Much of the engine reads untrusted bytes (files, sockets, packets, kernel records, API
// answers): nothing in it may index, unwrap or panic outside tests; it counts and skips
// what it cannot read. (Tests may; so may the test-support modules, which say so.)
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod accounting;
pub mod aggregate;
pub mod atomic;
pub mod cilium;
pub mod cilium_datapath;
pub mod cilium_glue;
pub mod cilium_socket;
pub mod comment;
pub mod datapath;
pub mod doctor;
pub mod event;
pub mod facts;
pub mod filter;
pub mod ingest;
pub mod join;
pub mod kernel;
pub mod live;
pub mod lookup;
pub mod memory;
pub mod names;
#[cfg(any(test, feature = "test-support"))]
pub mod netns_rig;
pub mod packet;
pub mod paths;
pub mod pcap;
pub mod pipeline;
pub mod pods;
pub mod render;
pub mod report;
pub mod select;
pub mod serve;
pub mod sink;
pub mod sources;
pub mod storm;
#[cfg(test)]
mod testutil;
pub mod timefmt;
pub mod timeline;
pub mod viz;
pub mod wire;

pub use capture_common::{DEFAULT_SNAPLEN, MAX_KERNEL_SNAPLEN};
/// Snap length of files written by `replay`: whatever the input holds, as tcpdump allows.
pub const MAX_REPLAY_SNAPLEN: u32 = pcap::MAX_FILE_SNAPLEN;
