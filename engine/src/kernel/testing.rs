//! Helpers for root tests: run code inside a named network namespace, attach the
//! `tc_shot` classifier (drops every packet: provokes `TC_INGRESS` drops; two instructions
//! the test loads itself, so the shipped eBPF object holds no program that drops) to an
//! interface in a namespace, and ([`raw`]) create maps, load programs a test assembled itself and pin
//! them with bpf(2).
//!
//! Each helper works on a dedicated thread that enters the namespace with `setns`, so the
//! caller's threads never change namespace. Must never: be used outside tests and tools
//! that mean to drop traffic.

use std::{fs::File, io, os::fd::AsRawFd, path::PathBuf, sync::mpsc, thread::JoinHandle};

use aya::programs::{tc, SchedClassifier, TcAttachType};

use super::load_error;
use super::loader::LoadError;

/// The test classifier's name, as bpftool and `dropscope datapath` show it.
pub const PROG_TC_SHOT: &str = "tc_shot";

/// `r0 = TC_ACT_SHOT (2); exit`.
const TC_SHOT_INSNS: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];

/// Path of the bind mount `ip netns add NAME` creates.
pub fn netns_path(name: &str) -> PathBuf {
    let run = PathBuf::from("/run/netns").join(name);
    if run.exists() {
        run
    } else {
        PathBuf::from("/var/run/netns").join(name)
    }
}

/// Enters network namespace `name` on the current thread.
fn enter(name: &str) -> io::Result<()> {
    let f = File::open(netns_path(name))?;
    // SAFETY: setns takes a valid open fd; CLONE_NEWNET affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside network namespace `name` and returns its result.
pub fn run_in_netns<R, F>(name: &str, f: F) -> io::Result<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let name = name.to_string();
    std::thread::spawn(move || -> io::Result<R> {
        enter(&name)?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("netns helper thread panicked"))?
}

/// `tc_shot` attached to the ingress of an interface in a namespace; detached on drop.
pub struct TcShot {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TcShot {
    /// Loads `tc_shot` and attaches it to `ifname`'s ingress inside namespace `netns`.
    pub fn attach(netns: &str, ifname: &str) -> Result<TcShot, LoadError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LoadError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let netns = netns.to_string();
        let ifname = ifname.to_string();
        let thread = std::thread::spawn(move || {
            // The program (and for old kernels the netlink filter) lives and dies in the
            // namespace: this thread holds it until told to stop.
            let attached = attach_here(&netns, &ifname);
            match attached {
                Ok(ebpf) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.recv();
                    drop(ebpf);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        let res = ready_rx.recv().unwrap_or_else(|_| {
            Err(LoadError::Ebpf {
                step: "attaching tc_shot",
                message: "helper thread died".to_string(),
            })
        });
        let mut shot = TcShot {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match res {
            Ok(()) => Ok(shot),
            Err(e) => {
                shot.stop.take();
                if let Some(t) = shot.thread.take() {
                    let _ = t.join();
                }
                Err(e)
            }
        }
    }
}

fn attach_here(netns: &str, ifname: &str) -> Result<SchedClassifier, LoadError> {
    enter(netns).map_err(|e| LoadError::Ebpf {
        step: "entering the network namespace",
        message: format!("{}: {e}", netns_path(netns).display()),
    })?;
    let mut prog = load_tc_shot()?;
    // Kernels before 6.6 attach through netlink and need a clsact qdisc; TCX does not.
    if let Err(e) = tc::qdisc_add_clsact(ifname) {
        log::debug!("clsact on {ifname}: {e} (fine when it exists or TCX is used).");
    }
    prog.attach(ifname, TcAttachType::Ingress)
        .map_err(|e| load_error::classify("attaching tc_shot", PROG_TC_SHOT, &e))?;
    Ok(prog)
}

/// Loads the two-instruction classifier and hands it to aya (through a pin in bpffs,
/// removed at once: aya takes programs it did not load only from a pin).
fn load_tc_shot() -> Result<SchedClassifier, LoadError> {
    let fail = |step: &'static str, message: String| LoadError::Ebpf { step, message };
    let fd = raw::prog_load_named(
        raw::PROG_TYPE_SCHED_CLS,
        &TC_SHOT_INSNS,
        PROG_TC_SHOT,
        c"GPL",
    )
    .map_err(|m| fail("loading tc_shot", m))?;
    static PINS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/dropscope-test-tc-shot-{}-{}",
        std::process::id(),
        PINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    use std::os::fd::AsFd as _;
    raw::obj_pin(fd.as_fd(), &pin).map_err(|e| {
        fail(
            "pinning tc_shot",
            format!("{}: {e} (is bpffs mounted on /sys/fs/bpf?)", pin.display()),
        )
    })?;
    let prog = SchedClassifier::from_pin(&pin)
        .map_err(|e| load_error::classify("taking tc_shot from its pin", PROG_TC_SHOT, &e));
    let _ = std::fs::remove_file(&pin);
    prog
}

impl Drop for TcShot {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// bpf(2) for tests that assemble their own programs from raw instructions (a stand-in for
/// Cilium's datapath, say): create a map, load a program (with the verifier's log on
/// failure), pin either in bpffs. Through the same system call wrapper as the engine's own
/// commands ([`super::bpfsys`]).
pub mod raw {
    use std::ffi::{CStr, CString};
    use std::io;
    use std::mem::zeroed;
    use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::Path;

    use aya_obj::generated::{bpf_attr, bpf_cmd};

    use crate::kernel::bpfsys::sys_bpf;

    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    pub const MAP_TYPE_PERF_EVENT_ARRAY: u32 = 4;
    /// `BPF_PROG_TYPE_SCHED_CLS`.
    pub const PROG_TYPE_SCHED_CLS: u32 = 3;

    fn zeroed_attr() -> bpf_attr {
        // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is a valid value.
        unsafe { zeroed() }
    }

    /// `BPF_MAP_CREATE` of a map of `map_type` with the given key and value sizes.
    pub fn map_create(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> io::Result<OwnedFd> {
        let mut attr = zeroed_attr();
        // SAFETY: writing plain integers into the MAP_CREATE variant of a zeroed union.
        unsafe {
            let c = &mut attr.__bindgen_anon_1;
            c.map_type = map_type;
            c.key_size = key_size;
            c.value_size = value_size;
            c.max_entries = max_entries;
        }
        let fd = sys_bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr)?;
        // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// `BPF_PROG_LOAD` of `insns` (raw 8-byte instructions); on failure the error holds the
    /// end of the verifier's log.
    pub fn prog_load(prog_type: u32, insns: &[u64], license: &CStr) -> Result<OwnedFd, String> {
        prog_load_named(prog_type, insns, "", license)
    }

    /// [`prog_load`] with a program name (15 bytes at most).
    pub fn prog_load_named(
        prog_type: u32,
        insns: &[u64],
        name: &str,
        license: &CStr,
    ) -> Result<OwnedFd, String> {
        let mut log = vec![0u8; 1 << 20];
        let mut load = |log_level: u32| {
            let mut attr = zeroed_attr();
            // SAFETY: integers and pointers to live buffers (`insns`, `license`, `log`, with
            // their true sizes) written into the PROG_LOAD variant of a zeroed union.
            unsafe {
                let p = &mut attr.__bindgen_anon_3;
                p.prog_type = prog_type;
                p.insn_cnt = insns.len() as u32;
                p.insns = insns.as_ptr() as u64;
                p.license = license.as_ptr() as u64;
                for (d, s) in p.prog_name.iter_mut().zip(name.bytes().take(15)) {
                    *d = s as libc::c_char;
                }
                p.log_level = log_level;
                if log_level > 0 {
                    p.log_buf = log.as_mut_ptr() as u64;
                    p.log_size = log.len() as u32;
                }
            }
            sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
        };
        match load(0) {
            // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
            Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            Err(e) => {
                let _ = load(1);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[]));
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                Err(format!(
                    "{e}; verifier log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ))
            }
        }
    }

    /// `BPF_OBJ_PIN`: pins a map or program at `path` (in a mounted bpffs).
    pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the pin path"))?;
        let mut attr = zeroed_attr();
        // SAFETY: the OBJ_PIN variant; `c` is a NUL-terminated string that outlives the call.
        unsafe {
            let o = &mut attr.__bindgen_anon_4;
            o.pathname = c.as_ptr() as u64;
            o.bpf_fd = fd.as_raw_fd() as u32;
        }
        sys_bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).map(|_| ())
    }
}
