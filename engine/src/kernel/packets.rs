//! `--packets`: the tc programs `pkt_ingress`/`pkt_egress` on the interfaces `-i` names,
//! each possibly in another network namespace (`IFACE@NETNS`).
//!
//! Attachment is tcx where the kernel has it (Linux 6.6+): a BPF link whose only reference
//! is our file descriptor, so the kernel removes it when the process exits, even after
//! `kill -9`. Elsewhere (or with [`TcMode::Clsact`]) the programs go on a clsact qdisc as
//! netlink filters, which outlive the process: before attaching, a filter of ours (by
//! program name) that a previous run left is removed, and said.
//!
//! Work inside another namespace runs on a thread that entered it with `setns` (interface
//! names and netlink sockets are per namespace); the caller's threads never move.
//!
//! Must never: change what happens to traffic (the programs return `TC_ACT_UNSPEC`), touch
//! a tc filter that is not ours, or leave a link behind on a normal exit.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::{
    programs::{
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use capture_common::{PktKey, DIR_INBOUND, DIR_OUTBOUND, PROG_PKT_EGRESS, PROG_PKT_INGRESS};

use super::load_error::{classify, LoadError};

/// How the tc programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcMode {
    /// tcx on Linux 6.6 and later, clsact before.
    #[default]
    Auto,
    /// tcx links only.
    Tcx,
    /// Netlink filters on a clsact qdisc (what kernels before 6.6 offer).
    Clsact,
}

impl TcMode {
    /// The mode `Auto` means on this kernel.
    pub fn resolve(self) -> TcMode {
        match self {
            TcMode::Auto => {
                if super::load_error::kernel_release().is_some_and(|v| v >= (6, 6)) {
                    TcMode::Tcx
                } else {
                    TcMode::Clsact
                }
            }
            m => m,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TcMode::Auto => "auto",
            TcMode::Tcx => "tcx",
            TcMode::Clsact => "clsact",
        }
    }
}

/// One interface `-i` names for `--packets`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketIface {
    /// As the user wrote it.
    pub spec: String,
    /// Its name in its namespace.
    pub name: String,
    pub ifindex: u32,
    /// The namespace to enter (`None`: dropscope's own).
    pub netns_path: Option<PathBuf>,
    /// Inode of its namespace.
    pub netns_ino: u32,
}

impl PacketIface {
    /// `name` or `name@netns`, for interface descriptions.
    pub fn label(&self) -> String {
        match &self.netns_path {
            None => self.name.clone(),
            Some(p) => format!(
                "{}@{}",
                self.name,
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.display().to_string())
            ),
        }
    }

    /// The key its drops are selected by (`IFACE_SELECT`).
    pub fn select_key(&self) -> PktKey {
        PktKey {
            ifindex: self.ifindex,
            netns_ino: self.netns_ino,
            direction: 0,
        }
    }
}

/// The path of a namespace named on the command line: a path as it is, else a name under
/// /run/netns (`ip netns add`).
pub fn netns_path(ns: &str) -> PathBuf {
    if ns.contains('/') {
        return PathBuf::from(ns);
    }
    let run = Path::new("/run/netns").join(ns);
    if run.exists() {
        run
    } else {
        Path::new("/var/run/netns").join(ns)
    }
}

/// Runs `f` on a new thread, inside the namespace at `ns` when given.
pub fn in_netns<R, F>(ns: Option<&Path>, f: F) -> io::Result<R>
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<R> {
            if let Some(p) = ns {
                let file = File::open(p)?;
                // SAFETY: setns on a valid open fd; CLONE_NEWNET moves this thread only.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("the namespace helper thread panicked"))?
    })
}

/// Resolves `IFACE`, `IFACE@NETNS`, `IFINDEX` or `IFINDEX@NETNS`: one line saying what is
/// wrong when the namespace or the interface does not exist.
pub fn resolve(spec: &str) -> Result<PacketIface, String> {
    use std::os::unix::fs::MetadataExt as _;
    let (iface, ns) = match spec.rsplit_once('@') {
        Some((i, n)) if !n.is_empty() => (i, Some(n)),
        Some(_) => return Err(format!("-i {spec}: no namespace after `@`")),
        None => (spec, None),
    };
    if iface.is_empty() {
        return Err(format!("-i {spec}: no interface name"));
    }
    let path = ns.map(netns_path);
    let ino_of = |p: &Path| -> Result<u32, String> {
        let m = std::fs::metadata(p).map_err(|e| {
            format!(
                "-i {spec}: network namespace {} not found ({e}): give a name `ip netns list` shows or a path such as /proc/PID/ns/net",
                p.display()
            )
        })?;
        u32::try_from(m.ino()).map_err(|_| format!("-i {spec}: namespace inode out of range"))
    };
    let netns_ino = match &path {
        Some(p) => ino_of(p)?,
        None => ino_of(Path::new("/proc/self/ns/net"))?,
    };
    let iface_owned = iface.to_string();
    let found = in_netns(path.as_deref(), move || -> Option<(String, u32)> {
        match iface_owned.parse::<u32>() {
            Ok(n) if n > 0 => index_to_name(n).map(|name| (name, n)),
            _ => name_to_index(&iface_owned).map(|n| (iface_owned.clone(), n)),
        }
    })
    .map_err(|e| format!("-i {spec}: cannot enter the network namespace: {e}"))?;
    let where_ = match ns {
        Some(n) => format!("network namespace {n}"),
        None => "dropscope's network namespace".to_string(),
    };
    let (name, ifindex) = found.ok_or_else(|| {
        format!("-i {spec}: no interface {iface} in {where_} (`ip link` lists them; IFACE@NETNS names one in another namespace)")
    })?;
    Ok(PacketIface {
        spec: spec.to_string(),
        name,
        ifindex,
        netns_path: path,
        netns_ino,
    })
}

fn name_to_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let n = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (n != 0).then_some(n)
}

fn index_to_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(c.to_string_lossy().into_owned())
}

/// The tc programs' links, one per interface and direction.
#[derive(Debug)]
pub struct PacketLinks {
    pub mode: TcMode,
    /// (interface, direction, link).
    links: Vec<(PacketIface, u8, SchedClassifierLinkId)>,
    /// What was cleaned up before attaching (clsact filters a previous run left), to say.
    pub cleaned: Vec<String>,
}

impl PacketLinks {
    pub fn ifaces(&self) -> impl Iterator<Item = (&PacketIface, u8)> {
        self.links.iter().map(|(i, d, _)| (i, *d))
    }
}

fn program_name(dir: u8) -> &'static str {
    if dir == DIR_INBOUND {
        PROG_PKT_INGRESS
    } else {
        PROG_PKT_EGRESS
    }
}

fn attach_type(dir: u8) -> TcAttachType {
    if dir == DIR_INBOUND {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    }
}

fn prog_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, LoadError> {
    ebpf.program_mut(name)
        .ok_or(LoadError::Ebpf {
            step: "finding the tc program",
            message: name.to_string(),
        })?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| classify("finding the tc program", name, &e))
}

/// Loads both tc programs and attaches them to ingress and egress of every interface.
/// On an error, what was attached stays in `ebpf` (dropping it removes it).
pub fn attach(
    ebpf: &mut Ebpf,
    ifaces: &[PacketIface],
    mode: TcMode,
) -> Result<PacketLinks, LoadError> {
    let mode = mode.resolve();
    for name in [PROG_PKT_INGRESS, PROG_PKT_EGRESS] {
        prog_mut(ebpf, name)?
            .load()
            .map_err(|e| classify("loading the tc program", name, &e))?;
    }
    let mut out = PacketLinks {
        mode,
        links: Vec::new(),
        cleaned: Vec::new(),
    };
    for iface in ifaces {
        for dir in [DIR_INBOUND, DIR_OUTBOUND] {
            let name = program_name(dir);
            let prog = prog_mut(ebpf, name)?;
            let ifname = iface.name.clone();
            let res = in_netns(
                iface.netns_path.as_deref(),
                || -> Result<(SchedClassifierLinkId, Option<String>), LoadError> {
                    let at = attach_type(dir);
                    let fail = |e: &(dyn std::error::Error + 'static)| no_tc(iface, at, e);
                    match mode {
                        TcMode::Clsact => {
                            let cleaned = match tc::qdisc_detach_program(&ifname, at, name) {
                                Ok(()) => Some(format!(
                                    "removed the {} filter {name} a previous run left on {}",
                                    dir_word(dir),
                                    iface.label()
                                )),
                                Err(_) => None,
                            };
                            if let Err(e) = tc::qdisc_add_clsact(&ifname) {
                                log::debug!("clsact on {ifname}: {e} (fine when it exists).");
                            }
                            let id = prog
                                .attach_with_options(
                                    &ifname,
                                    at,
                                    TcAttachOptions::Netlink(NlOptions::default()),
                                )
                                .map_err(|e| fail(&e))?;
                            Ok((id, cleaned))
                        }
                        _ => {
                            let id = prog
                                .attach_with_options(
                                    &ifname,
                                    at,
                                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                                )
                                .map_err(|e| fail(&e))?;
                            Ok((id, None))
                        }
                    }
                },
            )
            .map_err(|e| LoadError::Ebpf {
                step: "entering the interface's network namespace",
                message: format!("{}: {e}", iface.spec),
            })??;
            out.cleaned.extend(res.1);
            out.links.push((iface.clone(), dir, res.0));
        }
    }
    Ok(out)
}

fn dir_word(dir: u8) -> &'static str {
    if dir == DIR_INBOUND {
        "ingress"
    } else {
        "egress"
    }
}

/// An attach failure as one line: privileges, or a kernel that cannot run tc BPF there.
fn no_tc(
    iface: &PacketIface,
    at: TcAttachType,
    e: &(dyn std::error::Error + 'static),
) -> LoadError {
    match classify("attaching the tc program", PROG_PKT_INGRESS, e) {
        LoadError::Ebpf { message, .. } => LoadError::Ebpf {
            step: "attaching the tc program",
            message: format!(
                "{} {at:?}: {message}; --packets needs tc BPF (tcx on Linux 6.6+, else cls_bpf with the clsact qdisc) and CAP_NET_ADMIN",
                iface.label()
            ),
        },
        other => other,
    }
}

/// Removes every link (idempotent: the list is emptied). Each detach runs in its
/// interface's namespace (netlink filters are found by a socket there). Returns the first
/// failure, after trying them all.
pub fn detach(ebpf: &mut Ebpf, links: &mut PacketLinks) -> Result<(), String> {
    let mut first = None;
    for (iface, dir, id) in links.links.drain(..) {
        let name = program_name(dir);
        let r = match prog_mut(ebpf, name) {
            Ok(prog) => in_netns(iface.netns_path.as_deref(), || {
                prog.detach(id).map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())
            .and_then(|r| r),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = r {
            first.get_or_insert(format!("{} {}: {e}", iface.label(), dir_word(dir)));
        }
    }
    match first {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// The names of the programs tcx runs on an interface (ingress, then egress), as the kernel
/// lists them: for checks and tests that nothing of ours is left.
pub fn tcx_programs(iface: &PacketIface) -> io::Result<Vec<String>> {
    let name = iface.name.clone();
    in_netns(
        iface.netns_path.as_deref(),
        move || -> io::Result<Vec<String>> {
            let mut out = Vec::new();
            for at in [TcAttachType::Ingress, TcAttachType::Egress] {
                let (_, progs) = SchedClassifier::query_tcx(&name, at)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                out.extend(
                    progs
                        .iter()
                        .map(|p| p.name_as_str().unwrap_or("?").to_string()),
                );
            }
            Ok(out)
        },
    )?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_that_cannot_resolve_say_why() {
        let e = resolve("no-such-if0").unwrap_err();
        assert!(
            e.contains("no interface no-such-if0 in dropscope's network namespace"),
            "{e}"
        );
        let e = resolve("lo@no-such-ns-i12").unwrap_err();
        assert!(
            e.contains("network namespace /run/netns/no-such-ns-i12 not found")
                || e.contains("/var/run/netns/no-such-ns-i12"),
            "{e}"
        );
        assert!(resolve("lo@").unwrap_err().contains("no namespace after"));
        assert!(resolve("@x").unwrap_err().contains("no interface name"));
    }

    #[test]
    fn loopback_resolves_by_name_and_index() {
        let lo = resolve("lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.netns_path, None);
        assert_eq!(lo.netns_ino, crate::names::own_netns_inode());
        let by_index = resolve("1").unwrap();
        assert_eq!(by_index.name, "lo");
        assert_eq!(lo.label(), "lo");
        let ns = PacketIface {
            netns_path: Some(PathBuf::from("/run/netns/a")),
            ..lo
        };
        assert_eq!(ns.label(), "lo@a");
    }
}
