//! Root tests: pod and namespace names on real kernel drops, and `--pod`, `--namespace`,
//! `--label` selecting exactly their drops.
//!
//! A "pod" here is what the node shows of one: a process in a network namespace this test
//! creates, in a `kubepods…pod<UID>.slice` cgroup, with the `/etc/hostname` (the pod's name)
//! and service-account namespace file the kubelet would mount, in a private mount namespace.
//! The Cilium agent's REST API is a stand-in (python3 on a unix socket, answering
//! `GET /v1/endpoint` and `GET /v1/identity` in the shapes of Cilium's OpenAPI spec). Drops
//! are UDP datagrams to closed ports (NO_SOCKET) between namespace pairs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Where to make the pod's cgroup: the cgroup2 mount, else the v1 `pids` hierarchy.
fn cgroup_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    let find = |pred: &dyn Fn(&[&str]) -> bool| {
        mounts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 3 && pred(f))
            .map(|f| PathBuf::from(f[1]))
    };
    find(&|f| f[2] == "cgroup2")
        .or_else(|| find(&|f| f[2] == "cgroup" && f[3].split(',').any(|o| o == "pids")))
        .expect("no cgroup2 or v1 pids hierarchy mounted")
}

/// A process that looks like a pod's to /proc (see the module doc).
struct FakePod {
    child: Child,
    cgroups: Vec<PathBuf>,
}

impl FakePod {
    fn start(netns: &str, namespace: &str, name: &str, uid: &str) -> FakePod {
        let root = cgroup_root();
        let qos = root.join("kubepods.slice/kubepods-besteffort.slice");
        let leaf = qos.join(format!(
            "kubepods-besteffort-pod{}.slice",
            uid.replace('-', "_")
        ));
        std::fs::create_dir_all(&leaf).expect("mkdir cgroup");
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /run; \
             mkdir -p /run/secrets/kubernetes.io/serviceaccount; \
             echo {namespace} > /run/secrets/kubernetes.io/serviceaccount/namespace; \
             echo {name} > /run/pod-hostname; mount --bind /run/pod-hostname /etc/hostname; \
             exec sleep 600"
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn fake pod");
        // `ip netns exec` mounts its own /sys, without the cgroup file systems: the process
        // is moved from here (`ip netns exec`, `unshare` and `sh` exec, so the pid stays).
        let pid = child.id();
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string()).expect("join cgroup");
        let pod = FakePod {
            child,
            cgroups: vec![leaf, qos.clone(), root.join("kubepods.slice")],
        };
        // Ready when the process sits in its cgroup and shows the pod's hostname.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let host = std::fs::read_to_string(format!("/proc/{pid}/root/etc/hostname"))
                .unwrap_or_default();
            if cg.contains("kubepods-besteffort-pod") && host.trim() == name {
                return pod;
            }
            assert!(
                Instant::now() < deadline,
                "fake pod did not start: {cg:?} {host:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for c in &self.cgroups {
            let _ = std::fs::remove_dir(c);
        }
    }
}

/// A stand-in for the Cilium agent's REST API on `sock`: one endpoint (pod `shop/db-0`,
/// identity 4242 with `k8s:app=db`, address `ip`).
struct FakeAgentApi {
    child: Child,
    sock: PathBuf,
}

impl FakeAgentApi {
    fn start(sock: PathBuf, ip: &str) -> FakeAgentApi {
        let endpoints = serde_json::json!([{
            "id": 1234,
            "spec": {},
            "status": {
                "state": "ready",
                "external-identifiers": {
                    "container-id": "0123456789abcdef",
                    "k8s-namespace": "shop",
                    "k8s-pod-name": "db-0",
                    "pod-name": "shop/db-0"
                },
                "identity": {
                    "id": 4242,
                    "labels": ["k8s:app=db", "k8s:io.kubernetes.pod.namespace=shop"],
                    "labelsSHA256": "00"
                },
                "networking": {
                    "addressing": [{"ipv4": ip}],
                    "interface-index": 0,
                    "interface-name": "lxc0",
                    "mac": "02:00:00:00:00:01",
                    "host-mac": "02:00:00:00:00:02"
                }
            }
        }]);
        let identities = serde_json::json!([{
            "id": 4242,
            "labels": ["k8s:app=db", "k8s:io.kubernetes.pod.namespace=shop"],
            "labelsSHA256": "00"
        }]);
        let program = r#"
import http.server, socketserver, sys, os
sock, endpoints, identities = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
class H(http.server.BaseHTTPRequestHandler):
    def address_string(self): return "unix"
    def log_message(self, *a): pass
    def do_GET(self):
        body = {"/v1/endpoint": endpoints, "/v1/identity": identities}.get(self.path)
        if body is None:
            self.send_response(404); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
try: os.unlink(sock)
except FileNotFoundError: pass
S(sock, H).serve_forever()
"#;
        let child = Command::new("python3")
            .args(["-c", program, sock.to_str().unwrap()])
            .arg(endpoints.to_string())
            .arg(identities.to_string())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "stand-in API did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        FakeAgentApi { child, sock }
    }
}

impl FakeAgentApi {
    fn kill_keep_socket(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Forget the socket so Drop leaves it.
        self.sock = PathBuf::new();
    }
}

impl Drop for FakeAgentApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }
}

/// Runs a capture with `args` while `provoke` runs; (stats JSON, JSON lines, stderr).
fn capture(
    args: &[&str],
    dir: &TempDir,
    provoke: impl FnOnce(),
) -> (serde_json::Value, Vec<serde_json::Value>, String) {
    let stats = dir.path("s.json");
    let out = std::fs::File::create(dir.path("lines.json")).expect("create");
    let mut all: Vec<&str> = vec!["--json", "--stats-json", stats.to_str().unwrap()];
    all.extend_from_slice(args);
    let cap = LiveCapture::start_to(&all, Stdio::from(out));
    provoke();
    std::thread::sleep(Duration::from_millis(200));
    let (st, err) = cap.stop();
    assert!(st.success(), "dropscope failed: {err}");
    let lines = std::fs::read_to_string(dir.path("lines.json"))
        .expect("lines")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (read_json(&stats), lines, err)
}

/// JSON lines of UDP drops to `dst`:`dport`.
fn lines_to<'a>(
    lines: &'a [serde_json::Value],
    dst: &str,
    dport: u16,
) -> Vec<&'a serde_json::Value> {
    lines
        .iter()
        .filter(|l| l["dst"] == dst && l["dport"] == dport)
        .collect()
}

#[test]
fn proc_names_pods_and_pod_selectors_select_exactly_theirs() {
    require_root!();
    let web = NetnsPair::new();
    let other = NetnsPair::new();
    let _pod = FakePod::start(
        &web.b,
        "shop",
        "web-0",
        "3f1c2a4e-8b7d-4c21-9a0e-5d6f7a8b9c0d",
    );
    let dir = TempDir::new("pods");
    let pcapng = dir.path("d.pcapng");
    // A file that is not a socket: the API "does not answer" (a missing path is no agent,
    // and says nothing).
    let not_a_socket = dir.path("cilium.sock");
    std::fs::write(&not_a_socket, b"").unwrap();
    let no_api = ["--cilium-api", not_a_socket.to_str().unwrap()];
    let (web_b, other_b) = (web.ip4_b.to_string(), other.ip4_b.to_string());
    let provoke = || {
        web.send_udp(false, 41001, 9, 5, 16);
        other.send_udp(false, 41002, 9, 7, 16);
    };

    // No selector: both flows, the pod's named in every output.
    let mut args = vec!["-w", pcapng.to_str().unwrap()];
    args.extend_from_slice(&no_api);
    let (s, lines, err) = capture(&args, &dir, provoke);
    assert!(
        err.contains(&format!(
            "pod names: cilium-api: {}",
            not_a_socket.display()
        )),
        "{err}"
    );
    let f = flow_rows(&s, &web.ip4_a.to_string(), &web_b, 41001, 9);
    assert_eq!(f.len(), 1, "{s:#}");
    assert_eq!(f[0]["packets"], 5);
    assert_eq!(f[0]["pod"], "shop/web-0");
    let g = flow_rows(&s, &other.ip4_a.to_string(), &other_b, 41002, 9);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["packets"], 7);
    assert!(g[0].get("pod").is_none(), "{:#}", g[0]);
    assert_eq!(s["pod_names"]["sources"], serde_json::json!(["proc"]));
    assert!(
        s["pod_names"]["pods"].as_u64().unwrap() >= 1,
        "{:#}",
        s["pod_names"]
    );
    assert!(s["pod_names"]["warnings"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("cilium-api: {}", not_a_socket.display())));
    let w = lines_to(&lines, &web_b, 9);
    assert_eq!(w.len(), 5);
    assert!(w.iter().all(|l| l["pod"] == "shop/web-0"), "{w:#?}");
    let o = lines_to(&lines, &other_b, 9);
    assert_eq!(o.len(), 7);
    assert!(o.iter().all(|l| l.get("pod").is_none()));
    if tshark_available() {
        // (The pod's namespace may drop packets of its own too, e.g. IPv6 neighbour
        // discovery: only the test's flow is counted.)
        let flow = format!("ip.dst == {web_b} && udp.dstport == 9");
        assert_eq!(tshark_count(&pcapng, &flow), 5);
        assert_eq!(
            tshark_count(
                &pcapng,
                &format!(r#"{flow} && frame.comment contains "pod shop/web-0""#)
            ),
            5
        );
        assert_eq!(
            tshark_count(&pcapng, &format!("ip.dst == {other_b} && udp.dstport == 9")),
            7
        );
    }
    assert!(err.contains("pods known (from proc)"), "{err}");

    // Text lines too (tcpdump-style lines on stdout, no --json).
    let text_out = dir.path("lines.txt");
    let args = no_api.to_vec();
    let cap = LiveCapture::start_to(
        &args,
        Stdio::from(std::fs::File::create(&text_out).unwrap()),
    );
    web.send_udp(false, 41003, 9, 3, 16);
    std::thread::sleep(Duration::from_millis(200));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    let text = std::fs::read_to_string(&text_out).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("{}:41003 -> {web_b}:9 udp", web.ip4_a)))
        .collect();
    assert_eq!(ours.len(), 3, "{text}");
    assert!(
        ours.iter().all(|l| l.contains(" pod shop/web-0")),
        "{ours:#?}"
    );

    // The doctor finds the pod too.
    let out = dropscope()
        .args(["doctor", "--no-attach"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("OK    pod-names") && l.contains("pods named (from proc)")),
        "{text}"
    );

    // --pod, --namespace: exactly the pod's drops; another namespace: none of ours.
    for sel in [
        vec!["--pod", "shop/web-0"],
        vec!["--namespace", "shop"],
        vec!["--namespace", "default"],
    ] {
        let mut args = sel.clone();
        args.extend_from_slice(&no_api);
        let (s, lines, err) = capture(&args, &dir, provoke);
        let want = if sel[1] == "default" { 0 } else { 5 };
        assert_eq!(lines_to(&lines, &web_b, 9).len(), want, "{sel:?}: {err}");
        assert_eq!(lines_to(&lines, &other_b, 9).len(), 0, "{sel:?}");
        let f = flow_rows(&s, &web.ip4_a.to_string(), &web_b, 41001, 9);
        assert_eq!(
            f.iter()
                .map(|r| r["packets"].as_u64().unwrap())
                .sum::<u64>(),
            want as u64,
            "{sel:?}"
        );
        assert!(flow_rows(&s, &other.ip4_a.to_string(), &other_b, 41002, 9).is_empty());
        // The kernel program turned the other drops away (its pod selection), counted in
        // the ledger; they never reached user space.
        let t = &s["accounting"]["totals"];
        let filtered = t["filtered"].as_u64().expect("filtered");
        assert!(
            filtered >= 12 - want as u64,
            "{sel:?}: {filtered} filtered in the kernel: {s:#}"
        );
        // None of the provoked drops (NO_SOCKET, all with IP headers) reached user space
        // to be filtered there. (Drops without an IP header, such as the machine's own
        // SOCKET_CLOSE drops of unix sockets, are left to user space: not counted here.)
        assert_eq!(
            reason_field(&s, "NO_SOCKET", "filtered_user"),
            0,
            "{sel:?}: {s:#}"
        );
        assert!(
            reason_field(&s, "NO_SOCKET", "filtered") >= 12 - want as u64,
            "{sel:?}: {s:#}"
        );
    }

    // A pod that appears during the capture: the kernel's selection learns it at the next
    // refresh of the names, and its drops are captured from then on.
    let late = NetnsPair::new();
    let late_b = late.ip4_b.to_string();
    let mut args = vec!["--pod", "shop/late-0", "--names-refresh-ms", "100"];
    args.extend_from_slice(&no_api);
    let (s, lines, err) = capture(&args, &dir, || {
        late.send_udp(false, 41004, 9, 2, 16);
        let _late_pod = FakePod::start(
            &late.b,
            "shop",
            "late-0",
            "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        );
        std::thread::sleep(Duration::from_millis(500));
        late.send_udp(false, 41004, 9, 6, 16);
        std::thread::sleep(Duration::from_millis(200));
    });
    let l = lines_to(&lines, &late_b, 9);
    assert_eq!(l.len(), 6, "{err}");
    assert!(l.iter().all(|l| l["pod"] == "shop/late-0"), "{l:#?}");
    assert!(
        s["accounting"]["totals"]["filtered"].as_u64().unwrap() >= 2,
        "{s:#}"
    );
}

#[test]
fn agent_api_names_endpoints_by_address_and_labels_select_them() {
    require_root!();
    let db = NetnsPair::new();
    let other = NetnsPair::new();
    let dir = TempDir::new("api");
    let sock = dir.path("cilium.sock");
    let db_b = db.ip4_b.to_string();
    let _api = FakeAgentApi::start(sock.clone(), &db_b);
    let api = ["--cilium-api", sock.to_str().unwrap()];
    let provoke = || {
        db.send_udp(false, 42001, 9, 4, 16);
        other.send_udp(false, 42002, 9, 6, 16);
    };
    let (s, lines, err) = capture(&api, &dir, provoke);
    assert!(!err.contains("pod names: cilium-api"), "{err}");
    let f = flow_rows(&s, &db.ip4_a.to_string(), &db_b, 42001, 9);
    assert_eq!(f.len(), 1, "{s:#}");
    assert_eq!(f[0]["packets"], 4);
    assert_eq!(f[0]["dst_pod"], "shop/db-0");
    assert!(f[0].get("src_pod").is_none());
    let d = lines_to(&lines, &db_b, 9);
    assert_eq!(d.len(), 4);
    assert!(d.iter().all(|l| l["dst_pod"] == "shop/db-0"), "{d:#?}");
    assert!(lines_to(&lines, &other.ip4_b.to_string(), 9)
        .iter()
        .all(|l| l.get("dst_pod").is_none()));
    assert!(err.contains("pods known (from cilium-api, proc)"), "{err}");

    // The API goes away mid-capture: no drop is lost, the pod keeps its name, one warning.
    let api_proc = std::cell::RefCell::new(Some(_api));
    let mut args = vec!["--names-refresh-ms", "100"];
    args.extend_from_slice(&api);
    let (s, lines, err) = capture(&args, &dir, || {
        db.send_udp(false, 42003, 9, 3, 16);
        // Killed, its socket left behind (as an agent that crashed): connections refused.
        if let Some(api) = api_proc.borrow_mut().take() {
            api.kill_keep_socket();
        }
        std::thread::sleep(Duration::from_millis(400));
        db.send_udp(false, 42003, 9, 5, 16);
    });
    let f = flow_rows(&s, &db.ip4_a.to_string(), &db_b, 42003, 9);
    assert_eq!(f.len(), 1, "{s:#}");
    assert_eq!(f[0]["packets"], 8);
    assert_eq!(f[0]["dst_pod"], "shop/db-0");
    let d: Vec<_> = lines.iter().filter(|l| l["sport"] == 42003).collect();
    assert_eq!(d.len(), 8);
    assert!(d.iter().all(|l| l["dst_pod"] == "shop/db-0"), "{d:#?}");
    assert_eq!(
        err.matches("cilium-api: ").count(),
        2,
        "one warning, once in the summary: {err}"
    );
    let _api = FakeAgentApi::start(sock.clone(), &db_b);

    for sel in [["--label", "app=db"], ["--pod", "shop/db-0"]] {
        let mut args = sel.to_vec();
        args.extend_from_slice(&api);
        let (_, lines, err) = capture(&args, &dir, provoke);
        assert_eq!(lines_to(&lines, &db_b, 9).len(), 4, "{sel:?}: {err}");
        assert_eq!(
            lines_to(&lines, &other.ip4_b.to_string(), 9).len(),
            0,
            "{sel:?}"
        );
    }
    // By address in the kernel too: the endpoint's pod has no namespace or interface known
    // here, only its address; the other pair's drops stop in the kernel.
    let (s, lines, err) = capture(
        &["--pod", "shop/db-0", "--cilium-api", sock.to_str().unwrap()],
        &dir,
        provoke,
    );
    assert_eq!(lines_to(&lines, &db_b, 9).len(), 4, "{err}");
    let t = &s["accounting"]["totals"];
    assert!(t["filtered"].as_u64().unwrap() >= 6, "{s:#}");
    assert_eq!(reason_field(&s, "NO_SOCKET", "filtered_user"), 0, "{s:#}");
}

#[test]
fn pod_selector_errors_are_one_line_with_the_fix() {
    fails_with(&["capture", "--pod", "web-0"], &["NAMESPACE/NAME"]);
    fails_with(&["capture", "--label", "app"], &["KEY=VALUE"]);
    fails_with(
        &["capture", "--no-names", "--namespace", "shop"],
        &["--no-names"],
    );
}

// ---------------------------------------------------------------------------------------------
// A stand-in CRI server (runtime.v1.RuntimeService: ListPodSandbox, PodSandboxStatus) on a
// unix socket, answering with the messages of engine::pods::cri (the fields of cri-api's
// api.proto dropscope reads).

mod fake_cri {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use engine::pods::cri::*;
    use tonic::codegen::{http, BoxFuture};

    /// One sandbox: its listing and its verbose status.
    #[derive(Clone)]
    pub struct Sandbox {
        pub listed: PodSandbox,
        pub status: PodSandboxStatusResponse,
    }

    #[derive(Clone)]
    pub struct FakeCri(pub Arc<Vec<Sandbox>>);

    impl tonic::server::NamedService for FakeCri {
        const NAME: &'static str = "runtime.v1.RuntimeService";
    }

    struct List(Arc<Vec<Sandbox>>);
    impl tonic::server::UnaryService<ListPodSandboxRequest> for List {
        type Response = ListPodSandboxResponse;
        type Future = Pin<
            Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>,
        >;
        fn call(&mut self, _: tonic::Request<ListPodSandboxRequest>) -> Self::Future {
            let items = self.0.iter().map(|s| s.listed.clone()).collect();
            Box::pin(async move { Ok(tonic::Response::new(ListPodSandboxResponse { items })) })
        }
    }

    struct Status(Arc<Vec<Sandbox>>);
    impl tonic::server::UnaryService<PodSandboxStatusRequest> for Status {
        type Response = PodSandboxStatusResponse;
        type Future = Pin<
            Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>,
        >;
        fn call(&mut self, r: tonic::Request<PodSandboxStatusRequest>) -> Self::Future {
            let r = r.into_inner();
            let found = self
                .0
                .iter()
                .find(|s| s.listed.id == r.pod_sandbox_id)
                .cloned();
            Box::pin(async move {
                match found {
                    Some(s) if r.verbose => Ok(tonic::Response::new(s.status)),
                    Some(mut s) => {
                        s.status.info.clear();
                        Ok(tonic::Response::new(s.status))
                    }
                    None => Err(tonic::Status::not_found("no such sandbox")),
                }
            })
        }
    }

    impl tower::Service<http::Request<tonic::body::BoxBody>> for FakeCri {
        type Response = http::Response<tonic::body::BoxBody>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<tonic::body::BoxBody>) -> Self::Future {
            let pods = self.0.clone();
            Box::pin(async move {
                Ok(match req.uri().path() {
                    LIST_POD_SANDBOX => {
                        tonic::server::Grpc::new(tonic::codec::ProstCodec::default())
                            .unary(List(pods), req)
                            .await
                    }
                    POD_SANDBOX_STATUS => {
                        tonic::server::Grpc::new(tonic::codec::ProstCodec::default())
                            .unary(Status(pods), req)
                            .await
                    }
                    _ => tonic::Status::unimplemented("not in the stand-in").into_http(),
                })
            })
        }
    }

    /// Serves `pods` on `sock` from a thread of its own, until the process ends.
    pub fn serve(sock: std::path::PathBuf, pods: Vec<Sandbox>) {
        let _ = std::fs::remove_file(&sock);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&sock).expect("bind CRI socket");
                ready_tx.send(()).expect("ready");
                tonic::transport::Server::builder()
                    .add_service(FakeCri(Arc::new(pods)))
                    .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                    .await
                    .expect("serve");
            });
        });
        ready_rx.recv().expect("CRI server started");
    }
}

#[test]
fn cri_names_pods_by_namespace_and_address_and_labels_select_them() {
    use engine::pods::cri::*;
    require_root!();
    let pair = NetnsPair::new();
    let other = NetnsPair::new();
    let dir = TempDir::new("cri");
    let sock = dir.path("cri.sock");
    let netns_path = format!("/var/run/netns/{}", pair.b);
    let sandbox = |id: &str, name: &str, ip: &str, info: String| fake_cri::Sandbox {
        listed: PodSandbox {
            id: id.into(),
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("{id}-uid"),
                namespace: "shop".into(),
                attempt: 0,
            }),
            state: SANDBOX_READY,
            created_at: 1,
            labels: [(
                "app".to_string(),
                name.split('-').next().unwrap().to_string(),
            )]
            .into(),
        },
        status: PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                id: id.into(),
                metadata: None,
                state: SANDBOX_READY,
                network: Some(PodSandboxNetworkStatus {
                    ip: ip.into(),
                    additional_ips: vec![],
                }),
            }),
            info: [("info".to_string(), info)].into(),
        },
    };
    fake_cri::serve(
        sock.clone(),
        vec![
            // containerd's shape: the namespace's path in the runtime spec.
            sandbox(
                "sb1",
                "cart-0",
                &pair.ip4_b.to_string(),
                format!(
                    r#"{{"pid":0,"runtimeSpec":{{"linux":{{"namespaces":[{{"type":"network","path":"{netns_path}"}}]}}}}}}"#
                ),
            ),
            // A sandbox that is not ready is not named.
            {
                let mut s = sandbox("sb2", "gone-0", &other.ip4_b.to_string(), "{}".into());
                s.listed.state = 1;
                s
            },
        ],
    );
    let cri = ["--cri-socket", sock.to_str().unwrap()];
    let (b, ob) = (pair.ip4_b.to_string(), other.ip4_b.to_string());
    let provoke = || {
        pair.send_udp(false, 43001, 9, 6, 16);
        other.send_udp(false, 43002, 9, 4, 16);
    };
    let (s, lines, err) = capture(&cri, &dir, provoke);
    let f = flow_rows(&s, &pair.ip4_a.to_string(), &b, 43001, 9);
    assert_eq!(f.len(), 1, "{err}");
    assert_eq!(f[0]["packets"], 6);
    // Dropped in the sandbox's namespace, and addressed to its IP.
    assert_eq!(f[0]["pod"], "shop/cart-0");
    assert_eq!(f[0]["dst_pod"], "shop/cart-0");
    let g = flow_rows(&s, &other.ip4_a.to_string(), &ob, 43002, 9);
    assert_eq!(g[0]["packets"], 4);
    assert!(
        g[0].get("pod").is_none() && g[0].get("dst_pod").is_none(),
        "{:#}",
        g[0]
    );
    assert_eq!(lines_to(&lines, &b, 9).len(), 6);
    assert!(s["pod_names"]["sources"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("cri")));
    // The sandbox's labels select it.
    let mut args = vec!["--label", "app=cart"];
    args.extend_from_slice(&cri);
    let (_, lines, err) = capture(&args, &dir, provoke);
    assert_eq!(lines_to(&lines, &b, 9).len(), 6, "{err}");
    assert_eq!(lines_to(&lines, &ob, 9).len(), 0);
}
