//! Kernel drop capture: our eBPF program on `skb:kfree_skb` -> ring buffer -> [`Event`]s.
//!
//! [`loader`] fills the program's configuration from the kernel's BTF ([`btf`]) and
//! attaches it; [`source::KernelSource`] reads and decodes the ring ([`record`]);
//! [`reasons`] and [`kallsyms`] name drop reasons and drop locations; [`testing`] holds
//! helpers for root tests (a tc program that drops everything, running code in a netns).
//!
//! Must never: change what happens to traffic (except [`testing::TcShot`], which tests
//! attach on purpose), or lose an event without a counter saying so.
//!
//! [`Event`]: crate::event::Event

pub mod abi;
pub mod bpfsys;
pub mod btf;
pub mod kallsyms;
pub mod load_error;
pub mod loader;
pub mod packets;
pub mod reasons;
pub mod record;
pub mod ring;
pub mod source;
pub mod storm;
pub mod table;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod text;

pub use kallsyms::Kallsyms;
pub use loader::{AttachMode, LoadError, LoadOptions};
pub use reasons::KernelReasons;
pub use source::{KernelCounters, KernelSource, MalformedCounts, SourceError, SourceStats};
