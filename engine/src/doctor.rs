//! `dropscope doctor`: what this node offers a capture, one check a line (OK, WARN, FAIL),
//! each with what to do about it. FAIL means a kernel capture will not work; WARN means a
//! part of dropscope will be missing (a fallback, Cilium, pod names) but capture works.
//!
//! The decisive check loads and attaches the real kfree_skb program (with small rings) and
//! detaches it again: every other check explains why that one might fail.
//!
//! Must never: change the node (it only reads, and the attach test detaches before it
//! returns), or stall on a socket that does not answer (connects and reads time out).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check: what was looked at, what was found, and (unless OK) what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: &'static str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        name,
        status,
        detail,
        fix: fix.map(str::to_string),
    }
}

pub use crate::paths::CILIUM_API_SOCKET;

/// Where the doctor looks (tests point them at their own files and sockets).
#[derive(Clone, Debug)]
pub struct Paths {
    pub btf: String,
    pub lockdown: String,
    pub tracefs_format: Vec<String>,
    pub bpffs: String,
    pub cilium_monitor: String,
    pub cilium_api: String,
    pub cri: Vec<String>,
    /// The proc file system scanned for pods' processes.
    pub proc: String,
    /// Cilium's pinned maps (`dropscope datapath --maps-dir`).
    pub maps_dir: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            btf: crate::kernel::btf::VMLINUX_BTF.to_string(),
            lockdown: "/sys/kernel/security/lockdown".into(),
            tracefs_format: crate::kernel::loader::KFREE_SKB_FORMAT_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            bpffs: "/sys/fs/bpf".into(),
            cilium_monitor: crate::paths::CILIUM_MONITOR_SOCKET.into(),
            cilium_api: CILIUM_API_SOCKET.into(),
            cri: crate::paths::CRI_SOCKETS.map(String::from).to_vec(),
            proc: "/proc".into(),
            maps_dir: crate::datapath::DEFAULT_MAPS_DIR.into(),
        }
    }
}

/// Capability bits dropscope's kernel source needs. CAP_NET_ADMIN is not among them: it
/// gates network program types (tc, XDP), not the tracing programs dropscope loads; a
/// capture with only CAP_BPF and CAP_PERFMON was measured on Linux 6.18.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process (`CapEff` in /proc/self/status).
pub fn effective_caps() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// The capabilities missing for a kernel capture, by name (empty: none missing). Before
/// Linux 5.8 (no CAP_BPF/CAP_PERFMON) CAP_SYS_ADMIN stands for both.
pub fn missing_caps(eff: u64, release: Option<(u32, u32)>) -> Vec<&'static str> {
    let has = |c: u32| eff & (1u64 << c) != 0;
    let mut missing = Vec::new();
    let new_caps = release.is_none_or(|r| r >= (5, 8));
    if new_caps {
        if !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
            missing.push("CAP_BPF");
        }
        if !(has(CAP_PERFMON) || has(CAP_SYS_ADMIN)) {
            missing.push("CAP_PERFMON");
        }
    } else if !has(CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN");
    }
    missing
}

fn kernel_check() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    match crate::kernel::loader::parse_release(&release) {
        Some(v) if v >= (5, 5) => check("kernel", Status::Ok, format!("Linux {release}"), None),
        Some(v) if v >= (4, 18) => check(
            "kernel",
            Status::Warn,
            format!("Linux {release}: no tp_btf before 5.5, drop reasons from 5.17"),
            Some("dropscope falls back to the kfree_skb tracepoint; reasons show as NOT_SPECIFIED before 5.17"),
        ),
        _ => check(
            "kernel",
            Status::Fail,
            format!("Linux {release:?}: too old or unknown"),
            Some("dropscope needs Linux 4.18 or later (5.17+ for drop reasons)"),
        ),
    }
}

fn btf_check(p: &Paths) -> Check {
    match std::fs::metadata(&p.btf) {
        Ok(m) => check(
            "btf",
            Status::Ok,
            format!("{} ({} KiB)", p.btf, m.len() / 1024),
            None,
        ),
        Err(e) => check(
            "btf",
            Status::Fail,
            format!("{}: {e}", p.btf),
            Some("the kernel needs CONFIG_DEBUG_INFO_BTF=y: dropscope reads every sk_buff offset from it"),
        ),
    }
}

fn lockdown_check(p: &Paths) -> Check {
    match std::fs::read_to_string(&p.lockdown) {
        Ok(s) => {
            // "[none] integrity confidentiality": the bracketed word is the mode.
            let mode = s
                .split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or_else(|| s.trim().to_string());
            let status = if mode == "none" {
                Status::Ok
            } else {
                Status::Warn
            };
            check(
                "lockdown",
                status,
                format!("mode {mode}"),
                (status != Status::Ok).then_some(
                    "kprobes and fentry are refused; dropscope uses tp_btf and the tracepoint, which lockdown allows",
                ),
            )
        }
        Err(_) => check(
            "lockdown",
            Status::Ok,
            format!(
                "{} not readable: no lockdown LSM, or securityfs not mounted",
                p.lockdown
            ),
            None,
        ),
    }
}

fn caps_check() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| crate::kernel::loader::parse_release(r.trim()));
    match effective_caps() {
        Some(eff) => {
            let missing = missing_caps(eff, release);
            if missing.is_empty() {
                check("capabilities", Status::Ok, format!("CapEff {eff:#x}"), None)
            } else {
                check(
                    "capabilities",
                    Status::Fail,
                    format!("missing {}", missing.join(", ")),
                    Some("run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8), e.g. with setcap or the pod's securityContext.capabilities.add"),
                )
            }
        }
        None => check(
            "capabilities",
            Status::Warn,
            "cannot read CapEff from /proc/self/status".into(),
            Some("the attach check below decides"),
        ),
    }
}

fn tracefs_check(p: &Paths) -> Check {
    match p.tracefs_format.iter().find(|f| Path::new(f).exists()) {
        Some(f) => check("tracefs", Status::Ok, f.clone(), None),
        None => check(
            "tracefs",
            Status::Warn,
            "the kfree_skb tracepoint's format file is not visible".into(),
            Some("the tracepoint fallback (kernels without tp_btf) needs it: mount -t tracefs nodev /sys/kernel/tracing"),
        ),
    }
}

/// Loads and attaches the real program with small rings, then detaches it.
fn attach_check() -> Check {
    let opts = crate::kernel::loader::LoadOptions {
        ring_bytes_per_cpu: 64 << 10,
        kernel_flows: 1024,
        ..Default::default()
    };
    match crate::kernel::KernelSource::open(&opts, 1024) {
        Ok(src) => {
            let mode = src.mode().as_str();
            drop(src);
            check(
                "attach",
                Status::Ok,
                format!("loaded and attached {mode}, rings mmap-ed, detached again"),
                None,
            )
        }
        Err(e) => check(
            "attach",
            Status::Fail,
            crate::kernel::loader::log_tail(&e.to_string(), 1),
            Some("a kernel capture will not work: see the checks above"),
        ),
    }
}

fn bpffs_check(p: &Paths) -> Check {
    // BPF_FS_MAGIC.
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = std::ffi::CString::new(p.bpffs.as_str()) else {
        return check("bpffs", Status::Warn, "bad path".into(), None);
    };
    // SAFETY: a zeroed statfs is a valid out-parameter; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        check("bpffs", Status::Ok, format!("{} mounted", p.bpffs), None)
    } else {
        check(
            "bpffs",
            Status::Warn,
            format!("{} is not a bpf filesystem", p.bpffs),
            Some("only Cilium's pinned maps need it (mount -t bpf bpffs /sys/fs/bpf); capture does not"),
        )
    }
}

/// Connects to a unix socket with a timeout: `Ok` when something listens.
fn connect(path: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

fn cilium_monitor_check(p: &Paths) -> Check {
    match connect(&p.cilium_monitor) {
        Ok(_) => check(
            "cilium-monitor",
            Status::Ok,
            format!("{} answers (--source cilium)", p.cilium_monitor),
            None,
        ),
        Err(e) => check(
            "cilium-monitor",
            Status::Warn,
            format!("{}: {e}", p.cilium_monitor),
            Some("no Cilium agent here (or it is down): --source cilium will not work; kernel drops still do"),
        ),
    }
}

/// `GET /v1/healthz` on the agent's REST socket: the HTTP status line and, if the body is
/// JSON with one, the agent's version.
fn cilium_api_check(p: &Paths) -> Check {
    let asked = crate::pods::api_request(
        std::path::Path::new(&p.cilium_api),
        "/v1/healthz",
        Duration::from_secs(2),
    );
    match asked {
        Ok((status_line, body)) => {
            let ok = status_line.split_whitespace().nth(1) == Some("200");
            let version = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/cilium/msg")
                        .or_else(|| v.pointer("/cilium/state"))
                        .map(|m| m.to_string())
                });
            check(
                "cilium-api",
                if ok { Status::Ok } else { Status::Warn },
                format!(
                    "{}: {status_line}{}",
                    p.cilium_api,
                    version.map(|v| format!(", cilium {v}")).unwrap_or_default()
                ),
                (!ok).then_some(
                    "the agent's API answers but is not healthy: `cilium-dbg status` says why",
                ),
            )
        }
        Err(e) => check(
            "cilium-api",
            Status::Warn,
            format!("{}: {e}", p.cilium_api),
            Some("no Cilium agent API here: identities stay numbers"),
        ),
    }
}

fn cri_check(p: &Paths) -> Check {
    match p.cri.iter().find(|s| connect(s).is_ok()) {
        Some(s) => check("cri", Status::Ok, format!("{s} answers"), None),
        None => check(
            "cri",
            Status::Warn,
            format!("no container runtime socket answers ({})", p.cri.join(", ")),
            Some("not a Kubernetes node, or the runtime's socket is not mounted: drops carry namespaces and interfaces, not pod names"),
        ),
    }
}

/// Pod names as a capture would find them (the agent's API and /proc).
fn pod_names_check(p: &Paths) -> Check {
    let (snap, failures) = crate::pods::collect(&crate::pods::Sources {
        cilium_api: Some(p.cilium_api.clone().into()),
        cri: p.cri.iter().map(Into::into).collect(),
        proc_root: Some(p.proc.clone().into()),
        host_netns: crate::names::own_netns_inode(),
        timeout: Duration::from_secs(2),
    });
    let pods = snap.pods().len();
    let from: Vec<&str> = snap.answered.iter().copied().collect();
    if pods > 0 {
        return check(
            "pod-names",
            Status::Ok,
            format!("{pods} pods named (from {})", from.join(", ")),
            None,
        );
    }
    check(
        "pod-names",
        Status::Warn,
        if from.is_empty() {
            format!("no source of pod names answers: {}", failures.join("; "))
        } else {
            format!("no pods found (asked {})", from.join(", "))
        },
        Some("not a Kubernetes node, or dropscope cannot read the node's processes (run it with hostPID and CAP_SYS_PTRACE, which other processes' /proc/PID/ns and /proc/PID/root need, or give --cilium-api or --cri-socket): drops carry namespaces and interfaces, not pod names"),
    )
}

/// The datapath section (`dropscope datapath` in two lines): Cilium endpoint interfaces
/// without a program, and pinned maps that are nearly full. Only WARN, never FAIL: neither
/// stops a capture.
fn datapath_checks(p: &Paths) -> Vec<Check> {
    let snap = crate::datapath::snapshot(&crate::datapath::Options {
        maps_dir: p.maps_dir.clone().into(),
        cilium_api: p.cilium_api.clone().into(),
        ..Default::default()
    });
    let with_progs = snap
        .interfaces()
        .filter(|i| !i.attachments.is_empty())
        .count();
    let missing: Vec<String> = snap
        .missing()
        .map(|i| format!("{}@netns{}", i.name, i.netns))
        .collect();
    let progs = if missing.is_empty() {
        check(
            "datapath-progs",
            Status::Ok,
            format!(
                "{with_progs} interfaces with XDP/tc/tcx programs in {} namespaces; no endpoint interface (by {}) without one",
                snap.namespaces.len(),
                snap.endpoints_from
            ),
            None,
        )
    } else {
        check(
            "datapath-progs",
            Status::Warn,
            format!(
                "{} Cilium endpoint interfaces (by {}) have no tc, tcx or netkit program: {}",
                missing.len(),
                snap.endpoints_from,
                missing.join(", ")
            ),
            Some("their pods' traffic bypasses Cilium's datapath: `cilium-dbg endpoint list` shows whether they are regenerating; `dropscope datapath` lists every hook"),
        )
    };
    let full: Vec<String> = snap
        .maps
        .iter()
        .filter(|m| m.fill.is_some_and(|f| f >= 0.9))
        .map(|m| format!("{} {}", m.name, m.fill_text()))
        .collect();
    let maps = if snap.maps.is_empty() {
        check(
            "datapath-maps",
            Status::Warn,
            format!("no pinned maps in {}", p.maps_dir),
            Some("no Cilium here (or another bpffs directory: dropscope datapath --maps-dir): map fills cannot be shown"),
        )
    } else if full.is_empty() {
        check(
            "datapath-maps",
            Status::Ok,
            format!("{} maps in {}, none 90% full", snap.maps.len(), p.maps_dir),
            None,
        )
    } else {
        check(
            "datapath-maps",
            Status::Warn,
            format!("{} of {} maps at least 90% full: {}", full.len(), snap.maps.len(), full.join(", ")),
            Some("a full map refuses inserts (conntrack, NAT: \"CT: Map insertion failed\", \"No mapping for NAT masquerade\"): raise Cilium's map sizes (--bpf-ct-global-*-max, --bpf-nat-global-max, --bpf-map-dynamic-size-ratio) or find what fills them"),
        )
    };
    vec![progs, maps]
}

/// Every check, in order. `attach`: also load and attach the program (needs privileges).
pub fn run(p: &Paths, attach: bool) -> Vec<Check> {
    let mut v = vec![
        kernel_check(),
        btf_check(p),
        lockdown_check(p),
        caps_check(),
        tracefs_check(p),
    ];
    if attach {
        v.push(attach_check());
    }
    v.push(bpffs_check(p));
    v.push(cilium_monitor_check(p));
    v.push(cilium_api_check(p));
    v.push(cri_check(p));
    v.push(pod_names_check(p));
    v.extend(datapath_checks(p));
    v
}

/// The report as text: `STATUS  name          detail` and, indented, what to do.
pub fn render(checks: &[Check]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for c in checks {
        let _ = writeln!(s, "{:<4}  {:<14} {}", c.status.as_str(), c.name, c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(s, "      {:<14} -> {f}", "");
        }
    }
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    let _ = writeln!(
        s,
        "{}: {fails} failed, {warns} warnings",
        if fails == 0 {
            "kernel capture will work"
        } else {
            "kernel capture will NOT work"
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn capability_sets() {
        let bit = |c: u32| 1u64 << c;
        assert!(missing_caps(bit(CAP_BPF) | bit(CAP_PERFMON), Some((6, 1))).is_empty());
        assert!(missing_caps(bit(CAP_SYS_ADMIN), Some((6, 1))).is_empty());
        assert!(missing_caps(bit(CAP_SYS_ADMIN), Some((5, 4))).is_empty());
        // CAP_NET_ADMIN (12) alone is not enough, and not needed with the other two.
        assert_eq!(
            missing_caps(bit(12), Some((6, 1))),
            vec!["CAP_BPF", "CAP_PERFMON"]
        );
        assert_eq!(
            missing_caps(bit(CAP_BPF), Some((6, 1))),
            vec!["CAP_PERFMON"]
        );
        assert_eq!(
            missing_caps(bit(CAP_BPF) | bit(CAP_PERFMON), Some((5, 4))),
            vec!["CAP_SYS_ADMIN"]
        );
        assert_eq!(missing_caps(0, None), vec!["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn missing_files_and_sockets_warn_or_fail_with_a_fix() {
        let dir = std::env::temp_dir().join(format!("dropscope-doctor-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let lock = dir.join("lockdown");
        std::fs::write(&lock, "none [integrity] confidentiality\n").unwrap();
        let p = Paths {
            btf: dir.join("no-btf").display().to_string(),
            lockdown: lock.display().to_string(),
            tracefs_format: vec![dir.join("no-format").display().to_string()],
            bpffs: dir.display().to_string(),
            cilium_monitor: dir.join("no.sock").display().to_string(),
            cilium_api: dir.join("no-api.sock").display().to_string(),
            cri: vec![dir.join("no-cri.sock").display().to_string()],
            proc: dir.join("no-proc").display().to_string(),
            maps_dir: dir.join("no-maps").display().to_string(),
        };
        let checks = run(&p, false);
        let get = |n: &str| checks.iter().find(|c| c.name == n).unwrap().clone();
        assert_eq!(get("btf").status, Status::Fail);
        assert!(get("btf").fix.unwrap().contains("CONFIG_DEBUG_INFO_BTF"));
        assert_eq!(get("lockdown").status, Status::Warn);
        assert_eq!(get("lockdown").detail, "mode integrity");
        assert_eq!(get("tracefs").status, Status::Warn);
        assert_eq!(get("bpffs").status, Status::Warn);
        assert_eq!(get("cilium-monitor").status, Status::Warn);
        assert_eq!(get("cilium-api").status, Status::Warn);
        assert_eq!(get("cri").status, Status::Warn);
        assert_eq!(get("pod-names").status, Status::Warn);
        assert_eq!(get("datapath-maps").status, Status::Warn);
        assert!(get("datapath-maps")
            .detail
            .starts_with("no pinned maps in "));
        assert_ne!(get("datapath-progs").status, Status::Fail);
        assert!(
            get("pod-names")
                .detail
                .starts_with("no source of pod names answers: proc: "),
            "{:?}",
            get("pod-names")
        );
        let text = render(&checks);
        assert!(text.contains("kernel capture will NOT work"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("FAIL  btf")), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_healthy_agent_api_and_runtime_socket_are_ok() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("dropscope-doctor-ok-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let api = dir.join("cilium.sock");
        let cri = dir.join("cri.sock");
        let _ = std::fs::remove_file(&api);
        let _ = std::fs::remove_file(&cri);
        let l = UnixListener::bind(&api).unwrap();
        let _cri = UnixListener::bind(&cri).unwrap();
        // A stand-in for the agent's REST API: one answer in the shape of /v1/healthz.
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let body = r#"{"cilium":{"state":"Ok","msg":"Ok   1.18.2 (v1.18.2-5f8f7b3)"}}"#;
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        });
        let p = Paths {
            cilium_api: api.display().to_string(),
            cri: vec![cri.display().to_string()],
            ..Paths::default()
        };
        let c = cilium_api_check(&p);
        server.join().unwrap();
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("HTTP/1.0 200 OK"), "{c:?}");
        assert!(c.detail.contains("1.18.2"), "{c:?}");
        assert_eq!(cri_check(&p).status, Status::Ok);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
