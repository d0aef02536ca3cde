//! `--source cilium-datapath`: Cilium's drop notifications read straight from the
//! datapath's perf event array (`cilium_events`), for a node whose agent is down or
//! crash-looping. The datapath keeps dropping packets and keeps writing a notification for
//! each into that array; with no agent, nobody reads them.
//!
//! Taking the array displaces the agent's own reader: opening a ring for a CPU writes our
//! perf event into that CPU's slot of the array, over the agent's. So this source is allowed
//! only when the agent's monitor socket does not answer ([`preflight`]). When we exit, the
//! kernel clears the slots we wrote (they belong to our map file descriptor), and the
//! datapath's notifications go nowhere until the agent restarts and opens its rings again.
//!
//! Samples are decoded exactly as the monitor socket's are ([`CiliumBatcher`]): the agent
//! relays the same perf samples unchanged.
//!
//! Must never: take the array while the agent answers on its monitor socket, panic on a
//! sample's bytes (undecodable samples are counted by kind and skipped), or leave a lost
//! count of the kernel out of the ledger.

use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _, Result};
use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use aya::maps::{Map, MapData, PerfEventArray};
use bytes::BytesMut;
use crossbeam_channel::Sender;

use crate::cilium_socket::payload::{MonitorMessage, StreamStats};
use crate::event::Batch;
use crate::pipeline::{SourceFn, SourceReport};
use crate::sources::{send_batch, CiliumBatcher};

/// Where Cilium pins its perf event array (its `bpf.root` default and `tc/globals`).
pub const DEFAULT_EVENTS_MAP: &str = "/sys/fs/bpf/tc/globals/cilium_events";

/// Pages of each CPU's ring (256 KiB with 4 KiB pages; a power of two, as perf requires).
/// The agent's default is 64 pages too (`--monitor-queue-size` aside).
const RING_PAGES: usize = 64;

/// How long a wait for samples lasts before the stop flag is looked at again.
const POLL_TIMEOUT_MS: libc::c_int = 100;

/// The note every run of this source leaves in the summary.
pub const RESTART_NOTE: &str =
    "cilium_events was read directly: the Cilium agent must restart to get its reader back";

pub struct DatapathOptions {
    /// The pinned `cilium_events` map (`--cilium-events-map`).
    pub map: PathBuf,
    /// The agent's monitor socket (`--cilium-socket`): when it answers, the agent is up and
    /// this source is refused.
    pub agent_socket: PathBuf,
    pub release: crate::cilium::tables::CiliumRelease,
    /// Message-type bits to deliver (see [`crate::sources::cilium_type_bits`]).
    pub types: u8,
}

/// Checks, before anything is loaded or opened, that the array may be taken: the agent's
/// monitor socket must not answer, and the map's path must exist.
pub fn preflight(map: &Path, agent_socket: &Path) -> Result<()> {
    if std::os::unix::net::UnixStream::connect(agent_socket).is_ok() {
        bail!(
            "the Cilium agent's monitor socket {} answers: use --source cilium (reading cilium_events directly would take it from the agent)",
            agent_socket.display()
        );
    }
    match std::fs::metadata(map) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the Cilium events map {} does not exist: give the pinned path of cilium_events with --cilium-events-map PATH (is bpffs mounted at /sys/fs/bpf and Cilium's datapath loaded?)",
            map.display()
        ),
        Err(e) => bail!(
            "cannot use the Cilium events map {}: {e} (give the pinned path of cilium_events with --cilium-events-map PATH)",
            map.display()
        ),
    }
}

/// Opens the pinned array and a ring for every online CPU now (so a missing privilege or a
/// wrong map surfaces before the capture starts); the returned source reads the rings until
/// stopped.
pub fn source(o: &DatapathOptions) -> Result<SourceFn<'static>> {
    preflight(&o.map, &o.agent_socket)?;
    let release = o.release;
    let path = o.map.display().to_string();
    let data = MapData::from_pin(&o.map).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the Cilium events map {path}: {e} (needs CAP_BPF and CAP_SYS_ADMIN, or root; the path must be a pinned map in bpffs)"
        )
    })?;
    let map = Map::from_map_data(data).map_err(|e| {
        anyhow::anyhow!("cannot use the Cilium events map {path}: {e} (--cilium-events-map)")
    })?;
    if !matches!(map, Map::PerfEventArray(_)) {
        bail!(
            "{path} is not a perf event array: give the pinned path of cilium_events with --cilium-events-map PATH"
        );
    }
    let mut array = PerfEventArray::try_from(map)
        .with_context(|| format!("cannot use {path} as a perf event array"))?;
    let cpus = aya::util::online_cpus()
        .map_err(|(what, e)| anyhow::anyhow!("cannot read the online CPUs from {what}: {e}"))?;
    let mut rings = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        let ring = array.open(cpu, Some(RING_PAGES)).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the ring of CPU {cpu} on {path}: {e} (the array must have a slot per possible CPU)"
            )
        })?;
        rings.push((cpu, ring));
    }
    let mut reader = RingReader {
        rings,
        batcher: CiliumBatcher::for_datapath(release, o.types),
        buf: BytesMut::with_capacity(1 << 16),
        msgs: Vec::with_capacity(1024),
    };
    let description = format!("cilium-datapath {path}");
    Ok(Box::new(
        move |tx: &Sender<Batch>, stop: &AtomicBool| -> Result<SourceReport> {
            reader.run(tx, stop)?;
            let mut report = SourceReport {
                description,
                ..Default::default()
            };
            reader.batcher.report(&mut report, &StreamStats::default());
            report.notes.push(format!(
                "cilium-datapath: read {} from {} CPUs",
                path,
                reader.rings.len()
            ));
            report.notes.push(RESTART_NOTE.into());
            // Our rings close here: the kernel clears the slots we wrote.
            drop(reader);
            Ok(report)
        },
    ))
}

/// The per-CPU rings and what turns their samples into batches.
struct RingReader {
    rings: Vec<(u32, PerfEventArrayBuffer<MapData>)>,
    batcher: CiliumBatcher,
    /// Sample bytes are copied out of the ring into this buffer; each event's packet bytes
    /// are a slice of its own frozen piece of it.
    buf: BytesMut,
    msgs: Vec<MonitorMessage>,
}

impl RingReader {
    /// Waits for samples and hands them on until `stop` is set (then drains the rings once
    /// more, so that what the kernel wrote before the stop is not left unread) or the
    /// pipeline has gone.
    fn run(&mut self, tx: &Sender<Batch>, stop: &AtomicBool) -> Result<()> {
        let mut fds: Vec<libc::pollfd> = self
            .rings
            .iter()
            .map(|(_, r)| libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping {
                // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
                let n = unsafe {
                    libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_TIMEOUT_MS)
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e).context("waiting for samples on the rings of cilium_events");
                }
            }
            self.drain();
            if !self.msgs.is_empty() {
                let mut batch = Batch::with_capacity(self.msgs.len());
                self.batcher
                    .push(&self.msgs, &mut batch, crate::timefmt::now_ns());
                if !send_batch(tx, &mut batch) {
                    return Ok(());
                }
            }
            if stopping {
                return Ok(());
            }
        }
    }

    /// Moves every record waiting in the rings into `msgs` (cleared first).
    fn drain(&mut self) {
        self.msgs.clear();
        let (buf, msgs) = (&mut self.buf, &mut self.msgs);
        for (cpu, ring) in &mut self.rings {
            if !ring.readable() {
                continue;
            }
            let cpu = i64::from(*cpu);
            ring.for_each(|ev| match ev {
                PerfEvent::Sample { head, tail } => {
                    buf.reserve(head.len() + tail.len());
                    buf.extend_from_slice(head);
                    buf.extend_from_slice(tail);
                    msgs.push(MonitorMessage::Sample {
                        cpu,
                        data: buf.split().freeze(),
                    });
                }
                PerfEvent::Lost { count } => msgs.push(MonitorMessage::Lost { cpu, count }),
            });
        }
    }
}
