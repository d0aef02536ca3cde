//! `dropscope datapath`: the BPF side of a node's datapath, next to its drops. For every
//! interface of every network namespace dropscope may enter, the programs attached to it
//! (XDP, tc and tcx ingress and egress) with their ids, names, tags and load times, and
//! which Cilium endpoint interfaces have none; the cgroup programs of the root cgroup; and
//! the fill of the maps pinned in Cilium's bpffs directory ([`maps`]). [`explain`] joins a
//! run's drops with this state; [`watch`] reports its changes as they happen.
//!
//! Namespaces are entered with `setns` on a dedicated thread each (the caller's threads
//! never change namespace). Whatever cannot be read (no bpffs, no privileges, no Cilium
//! agent, a namespace that went away) is one line in [`Snapshot::notes`]; the rest is still
//! reported.
//!
//! Must never: write to a map, load, attach or detach a program (maps are opened
//! read-only; netlink and bpf(2) are only asked questions), or panic on what the agent's API
//! or netlink answer.

pub mod explain;
pub mod hooks;
pub mod iter;
pub mod maps;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use maps::{CountMethod, MapState};

/// Cilium's bpffs directory of pinned global maps.
pub const DEFAULT_MAPS_DIR: &str = "/sys/fs/bpf/tc/globals";
/// Where cgroup programs are looked for (Cilium mounts its own cgroup2 at /run/cilium/cgroupv2;
/// both are the same root cgroup on a cgroup2 node).
pub const DEFAULT_CGROUP: &str = "/sys/fs/cgroup";
/// Name prefixes of Cilium's endpoint interfaces (the host side of each pod's veth).
pub const ENDPOINT_PREFIXES: &[&str] = &["lxc"];

/// A program as the kernel describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProgRef {
    pub id: u32,
    /// The kernel's name (15 bytes at most); empty when the program could not be read.
    pub name: String,
    /// The tag (SHA of the instructions), 16 hex digits.
    pub tag: String,
    pub prog_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
}

impl ProgRef {
    pub fn from_info(p: &aya::programs::ProgramInfo) -> ProgRef {
        ProgRef {
            id: p.id(),
            name: p.name_as_str().unwrap_or("").to_string(),
            tag: format!("{:016x}", p.tag()),
            prog_type: format!("{:?}", p.program_type())
                .trim_start_matches("BPF_PROG_TYPE_")
                .to_ascii_lowercase(),
            loaded_at: p.loaded_at().and_then(|t| {
                let ns = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
                Some(crate::timefmt::rfc3339_ns(u64::try_from(ns).ok()?))
            }),
        }
    }

    /// The name, or `prog` when the kernel gave none.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            "prog"
        } else {
            &self.name
        }
    }
}

/// Where a program is attached on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    Xdp,
    TcIngress,
    TcEgress,
    TcxIngress,
    TcxEgress,
    /// A netkit device's own side (Linux 6.7+; Cilium's endpoints in netkit mode).
    NetkitPrimary,
    /// A netkit device's peer side, programmed from the primary.
    NetkitPeer,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Xdp => "xdp",
            HookKind::TcIngress => "tc-ingress",
            HookKind::TcEgress => "tc-egress",
            HookKind::TcxIngress => "tcx-ingress",
            HookKind::TcxEgress => "tcx-egress",
            HookKind::NetkitPrimary => "netkit-primary",
            HookKind::NetkitPeer => "netkit-peer",
        }
    }

    /// A hook where Cilium puts an endpoint's program: tc, tcx or netkit (not XDP).
    pub fn is_tc(self) -> bool {
        !matches!(self, HookKind::Xdp)
    }
}

/// One program on one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub hook: HookKind,
    /// XDP: driver, generic, offload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub prog: ProgRef,
}

/// How an interface is known to be a Cilium endpoint's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointSource {
    /// Listed by the agent's `/v1/endpoint`.
    Agent,
    /// Named like one (`lxc*`), the agent not answering.
    Name,
}

/// An interface and its programs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub netns: u32,
    pub ifindex: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointSource>,
    pub attachments: Vec<Attachment>,
    /// A Cilium endpoint interface with no program on any tc, tcx or netkit hook (Cilium
    /// attaches its `cil_from_container` there).
    pub missing_program: bool,
}

/// A network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Netns {
    pub inode: u32,
    /// How it was found: `/run/netns/NAME`, `/proc/PID/ns/net`, or `self`.
    pub path: String,
    pub interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A cgroup program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupHook {
    pub cgroup: String,
    pub attach_type: String,
    pub prog: ProgRef,
}

/// Everything `dropscope datapath` reports, at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub taken_at: String,
    #[serde(skip)]
    pub taken_ns: u64,
    /// Inode of dropscope's own namespace (Cilium's ifindexes are this one's).
    pub own_netns: u32,
    /// Where endpoint interfaces came from: `agent` or `name (lxc*)`.
    pub endpoints_from: String,
    pub namespaces: Vec<Netns>,
    pub cgroup: Vec<CgroupHook>,
    pub maps_dir: String,
    pub maps: Vec<MapState>,
    /// What could not be read, one line each.
    pub notes: Vec<String>,
}

impl Snapshot {
    pub fn interface(&self, netns: u32, ifindex: u32) -> Option<&Interface> {
        self.namespaces
            .iter()
            .find(|n| n.inode == netns)?
            .interfaces
            .iter()
            .find(|i| i.ifindex == ifindex)
    }

    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.namespaces.iter().flat_map(|n| n.interfaces.iter())
    }

    /// Endpoint interfaces without a program.
    pub fn missing(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces().filter(|i| i.missing_program)
    }
}

/// Which maps to count.
#[derive(Clone, Debug)]
pub enum CountMaps {
    /// Every hash-like map.
    All,
    /// Only maps whose names match these patterns (`*` ends a prefix).
    Only(Vec<String>),
    /// None (types and sizes only).
    None,
}

/// What a snapshot reads.
#[derive(Clone, Debug)]
pub struct Options {
    pub maps_dir: PathBuf,
    pub cilium_api: PathBuf,
    pub cgroup: PathBuf,
    pub count: CountMaps,
    /// Other namespaces than dropscope's own (`/run/netns/*`, `/proc/*/ns/net`).
    pub all_namespaces: bool,
    /// Count by walking keys even where the kernel's counter could be read.
    pub walk_keys: bool,
    pub api_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            maps_dir: DEFAULT_MAPS_DIR.into(),
            cilium_api: crate::paths::CILIUM_API_SOCKET.into(),
            cgroup: DEFAULT_CGROUP.into(),
            count: CountMaps::All,
            all_namespaces: true,
            walk_keys: false,
            api_timeout: Duration::from_secs(2),
        }
    }
}

/// Every network namespace visible here, by inode (one path each): our own first, then
/// `/run/netns` names, then processes'.
pub fn namespaces(errors: &mut Vec<String>) -> Vec<(u32, PathBuf)> {
    use std::os::unix::fs::MetadataExt as _;
    let own = crate::names::own_netns_inode();
    let mut seen: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut order = vec![(own, PathBuf::from("/proc/self/ns/net"))];
    seen.insert(own, PathBuf::from("/proc/self/ns/net"));
    let mut add = |p: PathBuf, order: &mut Vec<(u32, PathBuf)>| {
        if let Ok(m) = std::fs::metadata(&p) {
            let ino = m.ino() as u32;
            if let std::collections::btree_map::Entry::Vacant(e) = seen.entry(ino) {
                e.insert(p.clone());
                order.push((ino, p));
            }
        }
    };
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut v: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            v.sort();
            for p in v {
                add(p, &mut order);
            }
        }
    }
    match std::fs::read_dir("/proc") {
        Ok(rd) => {
            let mut pids: Vec<u32> = rd
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            pids.sort_unstable();
            for pid in pids {
                add(PathBuf::from(format!("/proc/{pid}/ns/net")), &mut order);
            }
        }
        Err(e) => errors.push(format!("/proc: {e}: only named namespaces are listed")),
    }
    order
}

/// Runs `f` on a new thread in the namespace at `path` (`/proc/self/ns/net`: no setns).
fn in_netns<R: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<R> {
    let path = path.to_path_buf();
    std::thread::spawn(move || -> std::io::Result<R> {
        if path != Path::new("/proc/self/ns/net") {
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns on a valid namespace fd; it changes only this thread's netns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(f())
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Endpoint interfaces the agent lists: host-side ifindex -> name (in dropscope's own
/// namespace). `Err`: the agent did not answer (or answered nonsense).
pub fn agent_endpoints(sock: &Path, timeout: Duration) -> std::io::Result<HashMap<u32, String>> {
    let body = crate::pods::api_get(sock, "/v1/endpoint", timeout)?;
    parse_endpoints(&body)
}

/// `/v1/endpoint` JSON -> ifindex -> interface name; endpoints without an interface (the
/// host endpoint, health) are left out. Never panics on malformed JSON.
pub fn parse_endpoints(body: &[u8]) -> std::io::Result<HashMap<u32, String>> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| std::io::Error::other(format!("GET /v1/endpoint: {e}")))?;
    let arr = v
        .as_array()
        .ok_or_else(|| std::io::Error::other("GET /v1/endpoint: not a JSON array"))?;
    let mut out = HashMap::new();
    for ep in arr {
        let net = ep.pointer("/status/networking");
        let idx = net
            .and_then(|n| n.get("interface-index"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n != 0);
        let name = net
            .and_then(|n| n.get("interface-name"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if let (Some(i), Some(n)) = (idx, name) {
            out.insert(i, n.to_string());
        }
    }
    Ok(out)
}

fn named_like_endpoint(name: &str) -> bool {
    ENDPOINT_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Interface name -> whether the agent was asked successfully, and the endpoints.
struct Endpoints {
    from_agent: Option<HashMap<u32, String>>,
}

impl Endpoints {
    fn source(&self, own: bool, ifindex: u32, name: &str) -> Option<EndpointSource> {
        match &self.from_agent {
            Some(m) if own => m.contains_key(&ifindex).then_some(EndpointSource::Agent),
            // The agent lists host-side interfaces of our namespace; elsewhere, by name.
            _ => named_like_endpoint(name).then_some(EndpointSource::Name),
        }
    }
}

/// Takes a snapshot of the datapath: programs per interface in every namespace, cgroup
/// programs, pinned maps with their fill.
pub fn snapshot(o: &Options) -> Snapshot {
    let mut notes = Vec::new();
    let own = crate::names::own_netns_inode();
    let table = match hooks::prog_table() {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!(
                "programs: cannot list loaded programs ({e}): names and tags are missing; CAP_BPF or CAP_SYS_ADMIN is needed"
            ));
            HashMap::new()
        }
    };
    let endpoints = Endpoints {
        from_agent: match agent_endpoints(&o.cilium_api, o.api_timeout) {
            Ok(m) => Some(m),
            Err(e) => {
                notes.push(format!(
                    "cilium: the agent's API {} does not answer ({e}): endpoint interfaces are found by name (lxc*)",
                    o.cilium_api.display()
                ));
                None
            }
        },
    };
    let endpoints_from = if endpoints.from_agent.is_some() {
        "agent".to_string()
    } else {
        "name (lxc*)".to_string()
    };
    let nss = if o.all_namespaces {
        namespaces(&mut notes)
    } else {
        vec![(own, PathBuf::from("/proc/self/ns/net"))]
    };
    let table = std::sync::Arc::new(table);
    let mut namespaces_out = Vec::new();
    let mut refused = 0usize;
    for (inode, path) in nss {
        let t = table.clone();
        let r = in_netns(&path, move || {
            let mut errs = Vec::new();
            let links = hooks::namespace_hooks(&t, &mut errs);
            (links, errs)
        });
        let (links, errors) = match r {
            Ok((Ok(l), e)) => (l, e),
            Ok((Err(e), mut errs)) => {
                errs.insert(0, format!("netlink: {e}"));
                (Vec::new(), errs)
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM)) => {
                refused += 1;
                continue;
            }
            // Gone between listing and entering (a process ended): not worth a line.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => continue,
            Err(e) => (
                Vec::new(),
                vec![format!("entering {}: {e}", path.display())],
            ),
        };
        let interfaces = links
            .into_iter()
            .map(|l| {
                let endpoint = endpoints.source(inode == own, l.ifindex, &l.name);
                let mut attachments = l.attachments;
                attachments.sort_by_key(|a| (a.hook, a.prog.id));
                let missing_program =
                    endpoint.is_some() && !attachments.iter().any(|a| a.hook.is_tc());
                Interface {
                    netns: inode,
                    ifindex: l.ifindex,
                    name: l.name,
                    endpoint,
                    attachments,
                    missing_program,
                }
            })
            .collect();
        namespaces_out.push(Netns {
            inode,
            path: path.display().to_string(),
            interfaces,
            errors,
        });
    }
    if refused > 0 {
        notes.push(format!(
            "namespaces: {refused} could not be entered (setns needs CAP_SYS_ADMIN): their interfaces are not listed"
        ));
    }
    let mut cgroup = Vec::new();
    match hooks::cgroup_hooks(&o.cgroup, &table) {
        Ok(v) => {
            for (attach_type, prog) in v {
                cgroup.push(CgroupHook {
                    cgroup: o.cgroup.display().to_string(),
                    attach_type,
                    prog,
                });
            }
        }
        Err(e) => notes.push(format!(
            "cgroup: {}: {e}: cgroup programs are not listed (needs CAP_NET_ADMIN or CAP_SYS_ADMIN)",
            o.cgroup.display()
        )),
    }
    let count = |name: &str| match &o.count {
        CountMaps::All => true,
        CountMaps::None => false,
        CountMaps::Only(p) => p.iter().any(|p| explain::name_matches(p, name)),
    };
    let mut map_errors = Vec::new();
    // The kernel's own counters when this kernel allows the iterator (else keys are walked;
    // each map says which).
    let kernel_counts = if o.walk_keys || matches!(o.count, CountMaps::None) || !o.maps_dir.is_dir()
    {
        None
    } else {
        let t0 = std::time::Instant::now();
        match iter::MapCounts::shared().and_then(|it| it.read()) {
            Ok(c) => Some((c, t0.elapsed().as_secs_f64() * 1e3)),
            Err(e) => {
                notes.push(format!(
                    "maps: kernel counters unavailable ({e}): entries are counted by walking keys (the iterator needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
                ));
                None
            }
        }
    };
    let maps = match maps::read_dir(
        &o.maps_dir,
        &count,
        kernel_counts.as_ref().map(|(c, _)| c),
        &mut map_errors,
    ) {
        // A kernel count's time is the iterator's (one run counts every map).
        Ok(mut m) => {
            if let Some((_, ms)) = &kernel_counts {
                for x in m
                    .iter_mut()
                    .filter(|x| x.method == CountMethod::KernelCounter)
                {
                    x.count_ms = *ms;
                }
            }
            m
        }
        Err(e) => {
            notes.push(format!(
                "maps: {}: {e}: no pinned maps to report (is bpffs mounted and Cilium running? `mount -t bpf bpf /sys/fs/bpf`)",
                o.maps_dir.display()
            ));
            Vec::new()
        }
    };
    for e in map_errors {
        notes.push(format!("maps: {e}"));
    }
    let taken_ns = crate::timefmt::now_ns();
    Snapshot {
        taken_at: crate::timefmt::rfc3339_ns(taken_ns),
        taken_ns,
        own_netns: own,
        endpoints_from,
        namespaces: namespaces_out,
        cgroup,
        maps_dir: o.maps_dir.display().to_string(),
        maps,
        notes,
    }
}

/// Options for a join at the end of a run: only the maps `reasons` point at are counted.
pub fn options_for_join(
    base: &Options,
    reasons: &[crate::aggregate::ReasonKey],
    names: &crate::lookup::Names,
) -> Options {
    Options {
        count: CountMaps::Only(
            explain::maps_for(reasons, names)
                .into_iter()
                .map(str::to_string)
                .collect(),
        ),
        ..base.clone()
    }
}

/// The report for people. `verbose`: also interfaces without any program.
pub fn render_text(s: &Snapshot, verbose: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "datapath at {} (endpoint interfaces by {})",
        s.taken_at, s.endpoints_from
    );
    let missing: Vec<&Interface> = s.missing().collect();
    for ns in &s.namespaces {
        let shown: Vec<&Interface> = ns
            .interfaces
            .iter()
            .filter(|i| verbose || !i.attachments.is_empty() || i.endpoint.is_some())
            .collect();
        if shown.is_empty() && ns.errors.is_empty() {
            continue;
        }
        let _ = writeln!(out, "netns {} ({})", ns.inode, ns.path);
        for i in shown {
            let ep = match i.endpoint {
                Some(EndpointSource::Agent) => " [cilium endpoint]",
                Some(EndpointSource::Name) => " [cilium endpoint by name]",
                None => "",
            };
            let _ = writeln!(out, "  {} (ifindex {}){ep}", i.name, i.ifindex);
            if i.missing_program {
                let _ = writeln!(out, "    MISSING: no tc, tcx or netkit program attached");
            }
            for a in &i.attachments {
                let _ = writeln!(
                    out,
                    "    {:<12} {} id {} tag {} loaded {}{}",
                    a.hook.as_str(),
                    a.prog.display_name(),
                    a.prog.id,
                    a.prog.tag,
                    a.prog.loaded_at.as_deref().unwrap_or("?"),
                    a.mode
                        .as_deref()
                        .map(|m| format!(" mode {m}"))
                        .unwrap_or_default()
                );
            }
        }
        for e in &ns.errors {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    if let Some(first) = s.cgroup.first() {
        let _ = writeln!(out, "cgroup {}", first.cgroup);
        for c in &s.cgroup {
            let _ = writeln!(
                out,
                "  {:<14} {} id {} tag {}",
                c.attach_type,
                c.prog.display_name(),
                c.prog.id,
                c.prog.tag
            );
        }
    }
    let _ = writeln!(out, "maps in {}", s.maps_dir);
    for m in &s.maps {
        let _ = writeln!(
            out,
            "  {:<32} {:<14} {:<24} {}{}",
            m.name,
            m.map_type,
            m.fill_text(),
            m.method.as_str(),
            m.error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        );
    }
    let full = s
        .maps
        .iter()
        .filter(|m| m.entries.is_some_and(|n| n >= u64::from(m.max_entries)))
        .count();
    let _ = writeln!(
        out,
        "summary: {} endpoint interfaces without a program{}{}; {} maps, {full} full",
        missing.len(),
        if missing.is_empty() { "" } else { ": " },
        missing
            .iter()
            .map(|i| format!("{}@netns{}", i.name, i.netns))
            .collect::<Vec<_>>()
            .join(", "),
        s.maps.len()
    );
    for n in &s.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_the_agent_json() {
        let body = br#"[
          {"id": 1, "status": {"networking": {"interface-name": "lxc1234", "interface-index": 17}}},
          {"id": 2, "status": {"networking": {"interface-name": "", "interface-index": 0}}},
          {"id": 3, "status": {"networking": {"interface-index": "x"}}},
          {"id": 4},
          {"id": 5, "status": {"networking": {"interface-name": "lxcabc", "interface-index": 99999999999}}}
        ]"#;
        let m = parse_endpoints(body).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&17).map(String::as_str), Some("lxc1234"));
        for bad in [&b""[..], b"{}", b"[1,2", b"null", b"\xff\xfe"] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The agent's answer is untrusted: any bytes give a map or an error, never a panic.
        #[test]
        fn agent_answers_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_endpoints(&body);
        }

        /// Any JSON array of endpoint-shaped objects: only positive u32 indexes with names.
        #[test]
        fn endpoint_indexes_are_kept_only_when_valid(idx in proptest::num::i64::ANY, name in "[a-z0-9]{0,15}") {
            let body = format!(
                r#"[{{"status": {{"networking": {{"interface-name": "{name}", "interface-index": {idx}}}}}}}]"#
            );
            let m = parse_endpoints(body.as_bytes()).unwrap();
            let valid = idx > 0 && idx <= i64::from(u32::MAX) && !name.is_empty();
            proptest::prop_assert_eq!(m.len(), usize::from(valid));
        }
    }

    #[test]
    fn names_like_endpoints() {
        assert!(named_like_endpoint("lxc12ab34cd56ef"));
        assert!(!named_like_endpoint("eth0"));
        assert!(!named_like_endpoint("cilium_host"));
    }
}
