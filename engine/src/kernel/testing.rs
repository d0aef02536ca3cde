//! Helpers for root tests: run code inside a named network namespace, and attach the
//! `tc_shot` classifier (drops every packet: provokes `TC_INGRESS` drops) to an interface
//! in a namespace.
//!
//! Each helper works on a dedicated thread that enters the namespace with `setns`, so the
//! caller's threads never change namespace. Must never: be used outside tests and tools
//! that mean to drop traffic.

use std::{fs::File, io, os::fd::AsRawFd, path::PathBuf, sync::mpsc, thread::JoinHandle};

use aya::programs::{tc, SchedClassifier, TcAttachType};
use capture_common::{ProbeConfig, PROG_TC_SHOT};

use super::loader::{self, LoadError};

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

fn attach_here(netns: &str, ifname: &str) -> Result<aya::Ebpf, LoadError> {
    enter(netns).map_err(|e| LoadError::Ebpf {
        step: "entering the network namespace",
        message: format!("{}: {e}", netns_path(netns).display()),
    })?;
    let config = ProbeConfig::UNCONFIGURED;
    let mut ebpf = loader::load_object(&config, 1, 1, None, &loader::ACCEPT_ALL)?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROG_TC_SHOT)
        .ok_or(LoadError::Ebpf {
            step: "finding tc_shot",
            message: PROG_TC_SHOT.to_string(),
        })?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| {
            loader::classify("finding tc_shot", PROG_TC_SHOT, &e)
        })?;
    prog.load()
        .map_err(|e| loader::classify("loading tc_shot", PROG_TC_SHOT, &e))?;
    // Kernels before 6.6 attach through netlink and need a clsact qdisc; TCX does not.
    if let Err(e) = tc::qdisc_add_clsact(ifname) {
        log::debug!("clsact on {ifname}: {e} (fine when it exists or TCX is used).");
    }
    prog.attach(ifname, TcAttachType::Ingress)
        .map_err(|e| loader::classify("attaching tc_shot", PROG_TC_SHOT, &e))?;
    Ok(ebpf)
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
