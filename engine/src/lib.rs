//! dropscope's engine: sources -> decode -> (aggregate, sinks).
//!
//! Data flows one way. Sources (the kernel ring buffer, Cilium's monitor socket, pcap files)
//! produce [`event::Batch`]es of [`event::Event`]s; the decode stage attaches a
//! [`packet::PacketSummary`]; sinks (pcapng/pcap writers, the per-flow aggregator, text and
//! JSON printers) consume them. Every stage that skips or loses something counts it with a
//! reason in [`accounting`].

pub mod cilium_socket;
pub mod event;
pub mod packet;
