//! Cilium agent's monitor socket: the gob stream of `payload.Payload` the agent writes to
//! every listener of `/var/run/cilium/monitor1_2.sock` (docs/cilium-formats.md §11), decoded into
//! [`MonitorMessage`]s; raw recordings of that stream and their replay; files of raw
//! notification records.
//!
//! * [`gob`]: the gob wire format (streaming, panic-free, bounded).
//! * [`payload`]: `Payload` → [`MonitorMessage`], incremental [`PayloadStream`], counters.
//! * [`socket`]: [`CiliumSocketSource`], connect / read / reconnect with back-off.
//! * [`record`]: `.gobstream` recordings and replay, `.ciliumraw` raw records.
//!
//! Decoding the notifications inside samples (drop, trace, ...) is not done here.

#[cfg(any(test, feature = "test-support"))]
pub mod agent_sim;
pub mod gob;
pub mod payload;
pub mod record;
pub mod socket;

pub use payload::{
    agent_notification_name, message_type_name, MonitorMessage, Payload, PayloadStream, StreamStats,
};
pub use record::{GobStreamReader, GobStreamRecorder, RawSampleReader, RawSampleWriter};
pub use socket::{
    CiliumSocketSource, MessageSink, SocketConfig, SocketError, SocketStats, DEFAULT_SOCKET_PATH,
};
