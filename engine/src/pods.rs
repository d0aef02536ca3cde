//! Pod, namespace and Cilium identity names for drops, from what the node itself can tell:
//!
//! * the Cilium agent's REST API on its unix socket (`GET /v1/endpoint`, `GET /v1/identity`,
//!   shapes of Cilium's `api/v1/openapi.yaml`): each endpoint's pod and namespace, its
//!   host-side interface index, its addresses and its identity with labels;
//! * the container runtime's CRI API ([`cri`], containerd's or CRI-O's socket): every ready
//!   pod sandbox with its name, namespace, labels, addresses and network namespace;
//! * `/proc`: each network namespace other than the host's ↔ its processes ↔ their cgroup
//!   (`kubepods…pod<UID>…`), the pod's name (its `/etc/hostname`, which the kubelet writes)
//!   and namespace (the service-account mount), for nodes without the agent.
//!
//! A [`PodNames`] holds the latest [`Snapshot`] and refreshes it in the background: lookups
//! read the snapshot and never wait on a source. A pod that goes away keeps its name for the
//! rest of the run (its drops may still be in the flow table). A source that fails leaves
//! names missing and says why once.
//!
//! Must never: block or fail a capture, panic on an answer (an API, a /proc file), or name a
//! drop with a pod it cannot tie to the drop's namespace, interface, address or identity.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use hashbrown::HashMap;

pub mod cri;
use serde_json::Value;

/// One pod (or a Cilium endpoint that names one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    /// Cilium identity of the pod's endpoint, 0 when not known.
    pub identity: u32,
    /// `k8s:`-style labels of that identity (`k8s:app=web`), when known.
    pub labels: Arc<[String]>,
}

impl Pod {
    /// Appends `namespace/name` (or the name alone) to `out`, without the formatting
    /// machinery: this runs per rendered drop.
    pub fn write_label(&self, out: &mut String) {
        if let Some(ns) = &self.namespace {
            out.push_str(ns);
            out.push('/');
        }
        out.push_str(&self.name);
    }
}

impl std::fmt::Display for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_label(&mut s);
        f.write_str(&s)
    }
}

/// What the sources said at one refresh (merged over the previous ones).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Network namespace inode → pod.
    pub by_netns: HashMap<u32, Arc<Pod>>,
    /// Interface index in the host namespace (a Cilium endpoint's `lxc` device) → pod.
    pub by_ifindex: HashMap<u32, Arc<Pod>>,
    /// Pod address → pod.
    pub by_ip: HashMap<IpAddr, Arc<Pod>>,
    /// Cilium identity → its labels.
    pub identity_labels: HashMap<u32, Arc<[String]>>,
    /// Which sources answered at the last refresh (`cilium-api`, `proc`).
    pub answered: BTreeSet<&'static str>,
}

impl Snapshot {
    /// The pod a drop happened in: by its namespace, else (host namespace) by the interface.
    pub fn at(&self, netns: u32, ifindex: u32, host_netns: u32) -> Option<&Arc<Pod>> {
        if netns != 0 && netns != host_netns {
            if let Some(p) = self.by_netns.get(&netns) {
                return Some(p);
            }
        }
        if ifindex != 0 && (netns == 0 || netns == host_netns) {
            return self.by_ifindex.get(&ifindex);
        }
        None
    }

    pub fn by_ip(&self, ip: Option<IpAddr>) -> Option<&Arc<Pod>> {
        self.by_ip.get(&ip?)
    }

    pub fn labels(&self, identity: u32) -> Option<&Arc<[String]>> {
        if identity == 0 {
            return None;
        }
        self.identity_labels.get(&identity)
    }

    fn merge_from(&mut self, old: &Snapshot) {
        for (k, v) in &old.by_netns {
            self.by_netns.entry(*k).or_insert_with(|| v.clone());
        }
        for (k, v) in &old.by_ifindex {
            self.by_ifindex.entry(*k).or_insert_with(|| v.clone());
        }
        for (k, v) in &old.by_ip {
            self.by_ip.entry(*k).or_insert_with(|| v.clone());
        }
        for (k, v) in &old.identity_labels {
            self.identity_labels.entry(*k).or_insert_with(|| v.clone());
        }
    }

    /// Every pod the snapshot knows, once each (by namespace/name).
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        let mut seen = BTreeSet::new();
        self.by_netns
            .values()
            .chain(self.by_ifindex.values())
            .chain(self.by_ip.values())
            .filter(|p| seen.insert((p.namespace.clone(), p.name.clone())))
            .cloned()
            .collect()
    }
}

/// Where names come from.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The agent's REST socket (`/var/run/cilium/cilium.sock`); `None`: not asked.
    pub cilium_api: Option<PathBuf>,
    /// CRI sockets to ask (the first that exists is asked).
    pub cri: Vec<PathBuf>,
    /// The proc file system to scan (`/proc`); `None`: not scanned.
    pub proc_root: Option<PathBuf>,
    /// Inode of the host's (our) network namespace: its processes are not pods.
    pub host_netns: u32,
    /// How long one API request may take.
    pub timeout: Duration,
}

impl Sources {
    /// The node's defaults: the agent's socket and /proc.
    pub fn node() -> Sources {
        Sources {
            cilium_api: Some(PathBuf::from(crate::paths::CILIUM_API_SOCKET)),
            cri: crate::paths::CRI_SOCKETS.map(PathBuf::from).to_vec(),
            proc_root: Some(PathBuf::from("/proc")),
            host_netns: crate::names::own_netns_inode(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Names refreshed in the background; see the module doc.
pub struct PodNames {
    current: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
    host_netns: u32,
    /// What failed, each said once (`cilium-api: connection refused`).
    warned: Mutex<BTreeSet<String>>,
    warnings: Mutex<Vec<String>>,
    /// Whether a new failure is logged as it happens (after [`PodNames::announce`]; before,
    /// the caller prints [`PodNames::warnings`] where it fits, e.g. after its start line).
    announce: std::sync::atomic::AtomicBool,
    /// Run after every refresh with the new snapshot (the kernel's pod selection).
    hooks: Mutex<Vec<RefreshHook>>,
}

/// See [`PodNames::on_refresh`].
pub type RefreshHook = Box<dyn Fn(&Snapshot) + Send + Sync>;

impl std::fmt::Debug for PodNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("PodNames")
            .field("generation", &self.generation())
            .field("netns", &s.by_netns.len())
            .field("interfaces", &s.by_ifindex.len())
            .field("addresses", &s.by_ip.len())
            .finish()
    }
}

impl PodNames {
    /// Collects once now (so names are there from the first drop), then every `interval` on
    /// a background thread for as long as the returned value lives.
    pub fn start(sources: Sources, interval: Duration) -> Arc<PodNames> {
        let names = Arc::new(PodNames {
            current: RwLock::new(Arc::new(Snapshot::default())),
            generation: AtomicU64::new(0),
            host_netns: sources.host_netns,
            warned: Mutex::new(BTreeSet::new()),
            warnings: Mutex::new(Vec::new()),
            announce: std::sync::atomic::AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
        });
        names.refresh(&sources);
        let weak: Weak<PodNames> = Arc::downgrade(&names);
        let _ = std::thread::Builder::new()
            .name("dropscope-names".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                match weak.upgrade() {
                    Some(n) => n.refresh(&sources),
                    None => return,
                }
            });
        names
    }

    /// Names fixed once (tests, replays that bring their own).
    pub fn fixed(s: Snapshot, host_netns: u32) -> Arc<PodNames> {
        Arc::new(PodNames {
            current: RwLock::new(Arc::new(s)),
            generation: AtomicU64::new(1),
            host_netns,
            warned: Mutex::new(BTreeSet::new()),
            warnings: Mutex::new(Vec::new()),
            announce: std::sync::atomic::AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// Runs `hook` after every later refresh, on the refreshing thread, with the new
    /// snapshot (which only grows: names are merged over the previous ones).
    pub fn on_refresh(&self, hook: RefreshHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Reports a failure the way a source's is (said once, after the start line).
    pub fn report(&self, what: String) {
        self.warn(what);
    }

    pub fn host_netns(&self) -> u32 {
        self.host_netns
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bumped at every refresh: a reader holding a snapshot takes a new one when it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What failed so far, one line each (for the summary).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From now on a new failure is logged when it happens; returns the ones so far.
    pub fn announce(&self) -> Vec<String> {
        self.announce.store(true, Ordering::Release);
        self.warnings()
    }

    fn warn(&self, what: String) {
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        // Said once per source and kind of failure (not per refresh).
        let key = what.split(':').next().unwrap_or("").to_string();
        if w.insert(key) {
            if self.announce.load(Ordering::Acquire) {
                log::warn!("pod names: {what}");
            }
            self.warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(what);
        }
    }

    /// One collection from every source, merged over the previous snapshot.
    pub fn refresh(&self, sources: &Sources) {
        let (mut snap, failures) = collect(sources);
        for f in failures {
            self.warn(f);
        }
        let old = self.snapshot();
        snap.merge_from(&old);
        let snap = Arc::new(snap);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        self.generation.fetch_add(1, Ordering::AcqRel);
        for h in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h(&snap);
        }
    }
}

/// Reads every source once: the snapshot and what failed.
pub fn collect(sources: &Sources) -> (Snapshot, Vec<String>) {
    let mut snap = Snapshot::default();
    let mut failures = Vec::new();
    // No socket file: no agent on this node, nothing to say. A socket that does not answer
    // (or answers wrongly) is worth a warning.
    if let Some(sock) = sources.cilium_api.as_ref().filter(|s| s.exists()) {
        match cilium_snapshot(sock, sources.timeout) {
            Ok(s) => {
                snap = s;
                snap.answered.insert("cilium-api");
            }
            Err(e) => failures.push(format!(
                "cilium-api: {}: {e} (no pod names from the Cilium agent)",
                sock.display()
            )),
        }
    }
    if let Some(sock) = sources.cri.iter().find(|s| s.exists()) {
        let proc_root = sources
            .proc_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc"));
        match cri::sandboxes(sock, sources.timeout, &proc_root) {
            Ok(list) => {
                snap.answered.insert("cri");
                for sb in list {
                    let known = snap
                        .by_ifindex
                        .values()
                        .chain(snap.by_ip.values())
                        .find(|p| {
                            p.name == sb.name && p.namespace.as_deref() == Some(&sb.namespace)
                        })
                        .cloned();
                    let pod = known.unwrap_or_else(|| {
                        Arc::new(Pod {
                            namespace: Some(sb.namespace.clone()),
                            name: sb.name.clone(),
                            uid: Some(sb.uid.clone()),
                            identity: 0,
                            labels: Arc::from(sb.labels.clone()),
                        })
                    });
                    if let Some(n) = sb.netns.filter(|n| *n != sources.host_netns) {
                        snap.by_netns.entry(n).or_insert_with(|| pod.clone());
                    }
                    for ip in &sb.ips {
                        snap.by_ip.entry(*ip).or_insert_with(|| pod.clone());
                    }
                }
            }
            Err(e) => failures.push(format!(
                "cri: {}: {e} (no pod names from the container runtime)",
                sock.display()
            )),
        }
    }
    if let Some(root) = &sources.proc_root {
        match proc_pods(root, sources.host_netns) {
            Ok(pods) => {
                snap.answered.insert("proc");
                for (netns, pod) in pods {
                    // The agent's or runtime's view (identity, labels) wins where both know it.
                    let known = snap
                        .by_ifindex
                        .values()
                        .chain(snap.by_ip.values())
                        .find(|p| p.name == pod.name && p.namespace == pod.namespace)
                        .cloned();
                    snap.by_netns
                        .entry(netns)
                        .or_insert_with(|| known.unwrap_or_else(|| Arc::new(pod)));
                }
            }
            Err(e) => failures.push(format!("proc: {}: {e}", root.display())),
        }
    }
    (snap, failures)
}

// ---------------------------------------------------------------------------------------------
// The Cilium agent's API

/// `GET path` on the agent's REST socket (HTTP/1.0, so the body ends with the connection):
/// the status line (`HTTP/1.0 200 OK`) and the body, whatever the status.
pub fn api_request(
    sock: &Path,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(String, Vec<u8>)> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.take(64 << 20).read_to_end(&mut buf)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header in the answer"))?;
    let status = String::from_utf8_lossy(buf.get(..end).unwrap_or(&[]))
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((status, buf.split_off(end + 4)))
}

/// [`api_request`], the body only when the status is 200.
pub fn api_get(sock: &Path, path: &str, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let (status, body) = api_request(sock, path, timeout)?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("GET {path}: {status}")));
    }
    Ok(body)
}

fn cilium_snapshot(sock: &Path, timeout: Duration) -> std::io::Result<Snapshot> {
    let endpoints = api_get(sock, "/v1/endpoint", timeout)?;
    let endpoints: Value = serde_json::from_slice(&endpoints)
        .map_err(|e| std::io::Error::other(format!("GET /v1/endpoint: {e}")))?;
    let mut snap = Snapshot::default();
    // Identities are optional: endpoints alone give names.
    if let Ok(ids) = api_get(sock, "/v1/identity", timeout) {
        if let Ok(Value::Array(ids)) = serde_json::from_slice::<Value>(&ids) {
            for id in &ids {
                if let (Some(n), Some(labels)) = (id_of(id.get("id")), labels_of(id.get("labels")))
                {
                    snap.identity_labels.insert(n, labels);
                }
            }
        }
    }
    for ep in endpoints.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Some(status) = ep.get("status") else {
            continue;
        };
        let ext = status.get("external-identifiers");
        let text = |k: &str| {
            ext.and_then(|x| x.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        // `pod-name` is `namespace/name` (deprecated, still filled); the k8s ones are newer.
        let (namespace, name) = match (text("k8s-namespace"), text("k8s-pod-name")) {
            (ns, Some(n)) => (ns, n),
            (ns, None) => match text("pod-name") {
                Some(p) => match p.split_once('/') {
                    Some((a, b)) => (Some(a.to_string()), b.to_string()),
                    None => (ns, p),
                },
                None => continue,
            },
        };
        let identity = status.get("identity");
        let id = id_of(identity.and_then(|i| i.get("id"))).unwrap_or(0);
        let labels = labels_of(identity.and_then(|i| i.get("labels")))
            .or_else(|| snap.identity_labels.get(&id).cloned())
            .unwrap_or_else(|| Arc::from(Vec::new()));
        if id != 0 && !labels.is_empty() {
            snap.identity_labels
                .entry(id)
                .or_insert_with(|| labels.clone());
        }
        let pod = Arc::new(Pod {
            namespace,
            name,
            uid: None,
            identity: id,
            labels,
        });
        let net = status.get("networking");
        if let Some(i) = id_of(net.and_then(|n| n.get("interface-index"))).filter(|i| *i != 0) {
            snap.by_ifindex.insert(i, pod.clone());
        }
        for a in net
            .and_then(|n| n.get("addressing"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            for fam in ["ipv4", "ipv6"] {
                if let Some(ip) = a
                    .get(fam)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                {
                    snap.by_ip.insert(ip, pod.clone());
                }
            }
        }
    }
    Ok(snap)
}

fn id_of(v: Option<&Value>) -> Option<u32> {
    v?.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn labels_of(v: Option<&Value>) -> Option<Arc<[String]>> {
    let a = v?.as_array()?;
    Some(
        a.iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect::<Vec<_>>()
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// /proc

/// The pod UID (dashes, as Kubernetes writes it) in a `/proc/PID/cgroup` text: systemd
/// (`kubepods-burstable-pod1234_5678….slice`) or cgroupfs (`/kubepods/burstable/pod1234-…/`).
pub fn pod_uid_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        let path = line.rsplit(':').next().unwrap_or("");
        if !path.contains("kubepods") {
            continue;
        }
        for part in path.split('/') {
            let part = part.strip_suffix(".slice").unwrap_or(part);
            let Some(i) = part.rfind("pod") else {
                continue;
            };
            let uid = &part[i + 3..];
            let ok = uid.len() == 36
                && uid
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_');
            if ok {
                return Some(uid.replace('_', "-"));
            }
        }
    }
    None
}

fn netns_inode(link: &Path) -> Option<u32> {
    let t = std::fs::read_link(link).ok()?;
    let t = t.to_str()?;
    t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// A short regular file's trimmed text. A container owns these files: a FIFO must not block
/// the refresh and a huge file must not be read whole.
fn read_trimmed(p: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(p)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::with_capacity(256);
    f.take(512).read_to_end(&mut buf).ok()?;
    let s = std::str::from_utf8(&buf).ok()?.trim();
    (!s.is_empty() && s.len() <= 253).then(|| s.to_string())
}

/// Pods by network namespace, from the processes under `root` (`/proc`).
pub fn proc_pods(root: &Path, host_netns: u32) -> std::io::Result<Vec<(u32, Pod)>> {
    let mut by_netns: HashMap<u32, Pod> = HashMap::new();
    for entry in std::fs::read_dir(root)?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = root.join(pid);
        let Some(netns) = netns_inode(&dir.join("ns/net")) else {
            continue;
        };
        if netns == host_netns || by_netns.get(&netns).is_some_and(|p| p.namespace.is_some()) {
            continue;
        }
        let Some(uid) = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|c| pod_uid_from_cgroup(&c))
        else {
            continue;
        };
        // The kubelet writes the pod's name to the /etc/hostname it mounts in every
        // container, and the namespace to the service-account mount.
        let proc_root = dir.join("root");
        let Some(pod_name) = read_trimmed(&proc_root.join("etc/hostname")) else {
            continue;
        };
        let namespace =
            read_trimmed(&proc_root.join("var/run/secrets/kubernetes.io/serviceaccount/namespace"))
                .or_else(|| {
                    read_trimmed(
                        &proc_root.join("run/secrets/kubernetes.io/serviceaccount/namespace"),
                    )
                });
        by_netns.insert(
            netns,
            Pod {
                namespace,
                name: pod_name,
                uid: Some(uid),
                identity: 0,
                labels: Arc::from(Vec::new()),
            },
        );
    }
    Ok(by_netns.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// Selectors

/// `--pod NAMESPACE/NAME`, `--namespace NS`, `--label K=V`: a drop is selected when the pod
/// it happened in, or the pod of its source or destination address, or (Cilium events) of
/// its source or destination identity matches one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSelector {
    pub pods: Vec<(String, String)>,
    pub namespaces: Vec<String>,
    /// (key, value): matches a `k8s:key=value` (or any `source:key=value`) identity label.
    pub labels: Vec<(String, String)>,
}

impl PodSelector {
    /// Parses the command line's values; an error says what is wrong.
    pub fn parse(
        pods: &[String],
        namespaces: &[String],
        labels: &[String],
    ) -> Result<PodSelector, String> {
        let mut s = PodSelector {
            namespaces: namespaces.to_vec(),
            ..Default::default()
        };
        for p in pods {
            match p.split_once('/') {
                Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => {
                    s.pods.push((ns.to_string(), n.to_string()))
                }
                _ => {
                    return Err(format!(
                        "--pod {p:?}: give it as NAMESPACE/NAME (e.g. --pod default/web-0)"
                    ))
                }
            }
        }
        for l in labels {
            match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => s.labels.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(format!(
                        "--label {l:?}: give it as KEY=VALUE (e.g. --label app=web)"
                    ))
                }
            }
        }
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.namespaces.is_empty() && self.labels.is_empty()
    }

    /// Does `pod` match (any of the selectors)?
    pub fn matches(&self, pod: &Pod) -> bool {
        let ns = pod.namespace.as_deref();
        self.pods
            .iter()
            .any(|(n, p)| ns == Some(n.as_str()) && pod.name == *p)
            || self.namespaces.iter().any(|n| ns == Some(n.as_str()))
            || self.labels_match(&pod.labels)
    }

    /// What the kernel program checks for this selection in `snap` (see
    /// `capture_common::PodKey`): the namespaces, host-side interfaces and addresses of the
    /// pods it matches, as [`Snapshot::at`] and [`Snapshot::by_ip`] would find them.
    pub fn kernel_keys(
        &self,
        snap: &Snapshot,
        host_netns: u32,
    ) -> BTreeSet<capture_common::PodKey> {
        use capture_common::{PodKey, POD_KEY_DEV, POD_KEY_NETNS, POD_KEY_V4, POD_KEY_V6};
        let mut keys = BTreeSet::new();
        for (ino, pod) in &snap.by_netns {
            if *ino != 0 && *ino != host_netns && self.matches(pod) {
                keys.insert(PodKey {
                    kind: POD_KEY_NETNS,
                    a: [*ino, 0, 0, 0],
                });
            }
        }
        for (ifindex, pod) in &snap.by_ifindex {
            if *ifindex != 0 && self.matches(pod) {
                for ns in [host_netns, 0] {
                    keys.insert(PodKey {
                        kind: POD_KEY_DEV,
                        a: [*ifindex, ns, 0, 0],
                    });
                }
            }
        }
        // Addresses as the program loads them: words of the packet's bytes, native order.
        let word = |b: &[u8]| match *b {
            [a, b, c, d, ..] => u32::from_ne_bytes([a, b, c, d]),
            _ => 0,
        };
        for (ip, pod) in &snap.by_ip {
            if !self.matches(pod) {
                continue;
            }
            keys.insert(match ip {
                IpAddr::V4(a) => PodKey {
                    kind: POD_KEY_V4,
                    a: [word(&a.octets()), 0, 0, 0],
                },
                IpAddr::V6(a) => {
                    let o = a.octets();
                    PodKey {
                        kind: POD_KEY_V6,
                        a: [word(&o[0..]), word(&o[4..]), word(&o[8..]), word(&o[12..])],
                    }
                }
            });
        }
        keys
    }

    /// Do identity labels match a `--label`?
    pub fn labels_match(&self, labels: &[String]) -> bool {
        self.labels.iter().any(|(k, v)| {
            labels.iter().any(|l| {
                // `k8s:app=web`: the source prefix is optional on the command line.
                let l = l.split_once(':').map_or(l.as_str(), |(_, r)| r);
                l.split_once('=').is_some_and(|(lk, lv)| lk == k && lv == v)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_keys_are_the_selected_pods_places_as_the_program_reads_them() {
        use capture_common::{PodKey, POD_KEY_DEV, POD_KEY_NETNS, POD_KEY_V4, POD_KEY_V6};
        let pod = |ns: &str, name: &str, labels: &[&str]| {
            Arc::new(Pod {
                namespace: Some(ns.into()),
                name: name.into(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                ..Pod::default()
            })
        };
        let web = pod("shop", "web-0", &["k8s:app=web"]);
        let db = pod("shop", "db-0", &["k8s:app=db"]);
        let dns = pod("kube-system", "coredns-1", &[]);
        let host = 4026531840;
        let mut s = Snapshot::default();
        s.by_netns.insert(4026532001, web.clone());
        s.by_netns.insert(4026532002, dns.clone());
        // The host's own namespace never stands for a pod.
        s.by_netns.insert(host, web.clone());
        s.by_ifindex.insert(17, web.clone());
        s.by_ifindex.insert(18, db.clone());
        s.by_ip.insert("10.0.1.7".parse().unwrap(), web.clone());
        s.by_ip.insert("fd00::1:7".parse().unwrap(), web.clone());
        s.by_ip.insert("10.0.1.8".parse().unwrap(), db.clone());
        let sel = PodSelector::parse(&["shop/web-0".into()], &[], &[]).unwrap();
        let keys: Vec<PodKey> = sel.kernel_keys(&s, host).into_iter().collect();
        let v6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7];
        let w = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let mut want = vec![
            PodKey {
                kind: POD_KEY_NETNS,
                a: [4026532001, 0, 0, 0],
            },
            PodKey {
                kind: POD_KEY_DEV,
                a: [17, host, 0, 0],
            },
            PodKey {
                kind: POD_KEY_DEV,
                a: [17, 0, 0, 0],
            },
            PodKey {
                kind: POD_KEY_V4,
                a: [w(&[10, 0, 1, 7]), 0, 0, 0],
            },
            PodKey {
                kind: POD_KEY_V6,
                a: [w(&v6[0..]), w(&v6[4..]), w(&v6[8..]), w(&v6[12..])],
            },
        ];
        want.sort();
        assert_eq!(keys, want);
        // A namespace selector takes both shop pods; a label only the db's.
        let ns = PodSelector::parse(&[], &["shop".into()], &[]).unwrap();
        assert_eq!(ns.kernel_keys(&s, host).len(), 5 + 3);
        let label = PodSelector::parse(&[], &[], &["app=db".into()]).unwrap();
        let db_keys: Vec<PodKey> = label.kernel_keys(&s, host).into_iter().collect();
        assert_eq!(
            db_keys,
            vec![
                PodKey {
                    kind: POD_KEY_DEV,
                    a: [18, 0, 0, 0]
                },
                PodKey {
                    kind: POD_KEY_DEV,
                    a: [18, host, 0, 0]
                },
                PodKey {
                    kind: POD_KEY_V4,
                    a: [w(&[10, 0, 1, 8]), 0, 0, 0]
                },
            ]
        );
        let none = PodSelector::parse(&[], &["default".into()], &[]).unwrap();
        assert!(none.kernel_keys(&s, host).is_empty());
    }

    #[test]
    fn cgroup_paths() {
        let systemd = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_8b7d_4c21_9a0e_5d6f7a8b9c0d.slice/cri-containerd-0123abcd.scope\n";
        assert_eq!(
            pod_uid_from_cgroup(systemd).as_deref(),
            Some("3f1c2a4e-8b7d-4c21-9a0e-5d6f7a8b9c0d")
        );
        let cgroupfs = "12:memory:/kubepods/besteffort/pod3f1c2a4e-8b7d-4c21-9a0e-5d6f7a8b9c0d/0123abcd\n0::/\n";
        assert_eq!(
            pod_uid_from_cgroup(cgroupfs).as_deref(),
            Some("3f1c2a4e-8b7d-4c21-9a0e-5d6f7a8b9c0d")
        );
        assert_eq!(
            pod_uid_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
        assert_eq!(
            pod_uid_from_cgroup("0::/kubepods.slice/kubepods-podnotauid.slice\n"),
            None
        );
        assert_eq!(pod_uid_from_cgroup(""), None);
    }

    #[test]
    fn container_files_are_read_short_and_never_block() {
        let dir = std::env::temp_dir().join(format!("dropscope-pods-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_trimmed(&fifo), None);
        let big = dir.join("big");
        std::fs::write(&big, "x".repeat(100_000)).unwrap();
        assert_eq!(read_trimmed(&big), None);
        let name = dir.join("hostname");
        std::fs::write(&name, "web-0\n").unwrap();
        assert_eq!(read_trimmed(&name).as_deref(), Some("web-0"));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&name, &link).unwrap();
        assert_eq!(read_trimmed(&link), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn selectors() {
        let p = Pod {
            namespace: Some("shop".into()),
            name: "web-0".into(),
            labels: Arc::from(vec![
                "k8s:app=web".to_string(),
                "k8s:io.kubernetes.pod.namespace=shop".to_string(),
            ]),
            ..Default::default()
        };
        let s = |pods: &[&str], nss: &[&str], labels: &[&str]| {
            let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            PodSelector::parse(&v(pods), &v(nss), &v(labels)).unwrap()
        };
        assert!(s(&["shop/web-0"], &[], &[]).matches(&p));
        assert!(!s(&["shop/web-1"], &[], &[]).matches(&p));
        assert!(!s(&["other/web-0"], &[], &[]).matches(&p));
        assert!(s(&[], &["shop"], &[]).matches(&p));
        assert!(!s(&[], &["default"], &[]).matches(&p));
        assert!(s(&[], &[], &["app=web"]).matches(&p));
        assert!(s(&[], &[], &["io.kubernetes.pod.namespace=shop"]).matches(&p));
        assert!(!s(&[], &[], &["app=db"]).matches(&p));
        let err = PodSelector::parse(&["web-0".into()], &[], &[]).unwrap_err();
        assert!(err.contains("NAMESPACE/NAME"), "{err}");
        let err = PodSelector::parse(&[], &[], &["app".into()]).unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn lookups_prefer_namespace_then_host_interface() {
        let web = Arc::new(Pod {
            namespace: Some("shop".into()),
            name: "web-0".into(),
            ..Default::default()
        });
        let mut s = Snapshot::default();
        s.by_netns.insert(7, web.clone());
        s.by_ifindex.insert(12, web.clone());
        let host = 1;
        assert_eq!(s.at(7, 3, host).map(|p| p.name.as_str()), Some("web-0"));
        // The host-side device of the pod, seen in the host namespace.
        assert_eq!(s.at(host, 12, host).map(|p| p.name.as_str()), Some("web-0"));
        assert_eq!(s.at(0, 12, host).map(|p| p.name.as_str()), Some("web-0"));
        // Ifindex 12 of another namespace is another device.
        assert!(s.at(9, 12, host).is_none());
        assert!(s.at(host, 13, host).is_none());
    }
}
