//! `dropscope serve` end to end, with the real eBPF program, in network namespaces this test
//! creates: a real Prometheus server scrapes it during a flood and its query API returns the
//! exact number of drops sent; `promtool check metrics` passes on the exposition; capture
//! sessions over HTTP (two at once, and one through `capture --remote`) get exactly their
//! flow's drops (tshark) with a balanced ledger; the series bound holds and folds exactly;
//! and the security rules (loopback or a token, 401, 413, 400).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `dropscope serve`, stopped (SIGTERM) on drop.
struct Serve {
    child: Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    _dir: TempDir,
}

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        use std::io::BufRead as _;
        let dir = TempDir::new("serve");
        let port = free_port();
        let mut child = dropscope()
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--session-dir", dir.path("sessions").to_str().unwrap()])
            .arg("--no-names")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dropscope serve");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains("serving on") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("serve exited early: {st}");
                    }
                    assert!(Instant::now() < deadline, "serve did not start");
                }
            }
        }
        Serve {
            child,
            port,
            lines: rx,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = http(self.port, "GET", path, &[], b"");
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (s, _, b) = http(self.port, method, path, &[], body.as_bytes());
        (
            s,
            serde_json::from_slice(&b).unwrap_or_else(|e| {
                panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&b))
            }),
        )
    }

    /// Stops with SIGTERM; returns (exit code, stderr after the start line).
    fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: kill with the pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        let mut text = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            text.push(l);
        }
        (st.code(), text.join("\n"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request (Connection: close); returns (status, head, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head: {}", String::from_utf8_lossy(&out)));
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut rest = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rest = dechunk(&rest);
    }
    (status, head, rest)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// The value of the sample `name{labels}` whose labels contain every `want` pair.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .collect()
}

/// Polls `f` until it returns Some, or panics with `what` after `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn non_loopback_listen_without_token_is_refused() {
    fails_with(
        &["serve", "--listen", "0.0.0.0:0"],
        &["not a loopback address", "--token-file"],
    );
    let dir = TempDir::new("serve-token");
    let empty = dir.path("token");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            empty.to_str().unwrap(),
        ],
        &["must hold one token"],
    );
}

/// Prometheus (the Debian package's server, on loopback, 1 s scrapes, its own storage)
/// scrapes `serve` while drops are sent; its query API must return exactly what was sent.
#[test]
fn prometheus_scrapes_exact_drops_and_promtool_passes() {
    require_root!();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: prometheus is not installed (scripts/setup.sh installs it)");
        return;
    }
    let ns = NetnsPair::new();
    let serve = Serve::start(&["--exemplars", "8"]);
    let dir = TempDir::new("prometheus");
    let prom_port = free_port();
    std::fs::write(
        dir.path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: dropscope\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            serve.port
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    struct KillOnDrop<'a>(&'a mut Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let prom = KillOnDrop(&mut prom);
    let iface = format!(
        "if{}@netns{}",
        ns.ifindex(&ns.b, &ns.veth_b),
        ns.inode(&ns.b)
    );
    // The flood: three rounds, scraped in between.
    let per_round = 20_000usize;
    for round in 0..3u16 {
        ns.send_udp(false, 40_000 + round, 9, per_round, 16);
        std::thread::sleep(Duration::from_millis(700));
    }
    let sent = 3 * per_round as u64;
    let query = format!(
        "sum(dropscope_interface_drops_total{{reason=\"NO_SOCKET\",interface=\"{iface}\"}})"
    );
    let url_query: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let got = wait_for(30, "Prometheus to hold the exact count", || {
        let (s, _, b) = http(
            prom_port,
            "GET",
            &format!("/api/v1/query?query={url_query}"),
            &[],
            b"",
        );
        if s != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        let val: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (val as u64 == sent).then_some(val)
    });
    assert_eq!(got as u64, sent);
    drop(prom);

    // The exposition itself: promtool's linter, and OpenMetrics when asked.
    let (s, text) = serve.get("/metrics");
    assert_eq!(s, 200);
    assert_eq!(
        sample(
            &text,
            "dropscope_interface_drops_total",
            &[("reason", "NO_SOCKET"), ("interface", &iface)]
        ),
        Some(sent as f64),
        "{text}"
    );
    assert!(
        sample(&text, "dropscope_drops_total", &[("reason", "NO_SOCKET")]).unwrap() >= sent as f64
    );
    for name in [
        "dropscope_build_info",
        "dropscope_ring_fill_ratio",
        "dropscope_flow_table_entries",
        "dropscope_flow_table_capacity",
    ] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} missing:\n{text}"
        );
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, head, body) = http(
        serve.port,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
        b"",
    );
    assert_eq!(s, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let om = String::from_utf8(body).unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE dropscope_drops counter\n"));

    // The heavy hitters of B's namespace: the three flows, exact.
    let (s, v) = serve.json(
        "GET",
        &format!(
            "/api/v1/flows?top=10&reason=NO_SOCKET&netns={}",
            ns.inode(&ns.b)
        ),
        "",
    );
    assert_eq!(s, 200, "{v}");
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 3, "{v}");
    for f in flows {
        assert_eq!(f["packets"], per_round as u64, "{f}");
        assert_eq!(f["dport"], 9);
        assert_eq!(f["src"], ns.ip4_a.to_string());
    }
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("every program detached"), "{err}");
}

/// Two sessions at once, each with its own filter, and a third through `capture --remote`:
/// each file holds exactly its flow's drops, and each ledger balances.
#[test]
fn capture_sessions_get_exactly_their_flows() {
    require_root!();
    if !tshark_available() {
        eprintln!("SKIPPED: tshark missing");
        return;
    }
    let ns = NetnsPair::new();
    let serve = Serve::start(&["--exemplars", "100000"]);
    let netns = ns.inode(&ns.b).to_string();
    let start = |port: u16| -> u64 {
        let body = format!(
            "{{\"filter\": \"udp src port {port}\", \"netns\": \"{netns}\", \"duration\": 5}}"
        );
        let (s, v) = serve.json("POST", "/api/v1/captures", &body);
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["state"], "running");
        v["id"].as_u64().unwrap()
    };
    let s1 = start(4001);
    let s2 = start(4002);
    let dir = TempDir::new("sessions");
    let remote_file = dir.path("remote.pcapng");
    let remote = dropscope()
        .args([
            "capture",
            "--remote",
            &format!("http://127.0.0.1:{}", serve.port),
        ])
        .args([
            "--duration",
            "5",
            "--netns",
            &netns,
            "-w",
            remote_file.to_str().unwrap(),
        ])
        .arg("udp src port 4003")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the remote session runs.
    wait_for(20, "the remote session", || {
        let (_, v) = serve.json("GET", "/api/v1/captures", "");
        (v["captures"].as_array().unwrap().len() == 3).then_some(())
    });
    ns.send_udp(false, 4001, 9, 300, 16);
    ns.send_udp(false, 4002, 9, 200, 24);
    ns.send_udp(false, 4003, 9, 100, 32);
    ns.send_udp(false, 4004, 9, 50, 16);
    for (id, port, n) in [(s1, 4001u16, 300u64), (s2, 4002, 200)] {
        let v = wait_for(20, "the session to end", || {
            let (_, v) = serve.json("GET", &format!("/api/v1/captures/{id}"), "");
            (v["state"] == "done").then_some(v)
        });
        let l = &v["ledger"];
        assert_eq!(l["balanced"], true, "{v}");
        assert_eq!(l["per_reason"]["NO_SOCKET"]["written"], n, "{v}");
        let t = &l["total"];
        assert_eq!(
            t["offered"].as_u64().unwrap(),
            t["filtered"].as_u64().unwrap()
                + t["over_budget"].as_u64().unwrap()
                + t["written"].as_u64().unwrap()
        );
        let (s, _, body) = http(
            serve.port,
            "GET",
            &format!("/api/v1/captures/{id}/pcapng"),
            &[],
            b"",
        );
        assert_eq!(s, 200);
        let f = dir.path(&format!("s{id}.pcapng"));
        std::fs::write(&f, body).unwrap();
        assert_eq!(tshark_count(&f, "frame"), n as usize);
        assert_eq!(
            tshark_count(
                &f,
                &format!("udp.srcport == {port} && frame.comment contains \"NO_SOCKET\"")
            ),
            n as usize
        );
    }
    let out = remote.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("100 packets written"), "{err}");
    assert!(err.contains("(balanced)"), "{err}");
    // The summary a local capture prints: the flow x reason row of the session's flow.
    let row = err
        .lines()
        .find(|l| l.contains(&format!("{}:4003 -> {}:9 udp", ns.ip4_a, ns.ip4_b)))
        .unwrap_or_else(|| panic!("no flow row for port 4003 in:\n{err}"));
    assert!(
        row.contains("NO_SOCKET") && row.split_whitespace().any(|w| w == "100"),
        "{row}"
    );
    assert_eq!(tshark_count(&remote_file, "udp.srcport == 4003"), 100);
    assert_eq!(tshark_count(&remote_file, "frame"), 100);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&remote_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A token on every request (401 without it), request bodies limited (413), bad JSON and
/// bad filters refused with a message (400).
#[test]
fn token_body_limit_and_bad_requests() {
    require_root!();
    let dir = TempDir::new("serve-sec");
    let token = dir.path("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let serve = Serve::start(&[
        "--token-file",
        token.to_str().unwrap(),
        "--max-body",
        "1024",
    ]);
    let p = serve.port;
    assert_eq!(http(p, "GET", "/metrics", &[], b"").0, 401);
    assert_eq!(
        http(
            p,
            "GET",
            "/metrics",
            &[("Authorization", "Bearer wrong")],
            b""
        )
        .0,
        401
    );
    let auth = [("Authorization", "Bearer s3cret-token")];
    assert_eq!(http(p, "GET", "/metrics", &auth, b"").0, 200);
    assert_eq!(http(p, "GET", "/api/v1/flows", &[], b"").0, 401);
    let big = vec![b' '; 4096];
    assert_eq!(http(p, "POST", "/api/v1/captures", &auth, &big).0, 413);
    let (s, _, b) = http(p, "POST", "/api/v1/captures", &auth, b"{not json");
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("bad JSON"));
    let (s, _, b) = http(
        p,
        "POST",
        "/api/v1/captures",
        &auth,
        br#"{"filter": "udp port"}"#,
    );
    assert_eq!(s, 400);
    assert!(
        String::from_utf8_lossy(&b).contains("syntax error"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    let (s, _, b) = http(
        p,
        "POST",
        "/api/v1/captures",
        &auth,
        br#"{"filter": "udp", "bogus": 1}"#,
    );
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("unknown field"));
    let (s, _, _) = http(
        p,
        "POST",
        "/api/v1/captures",
        &auth,
        br#"{"reason": ["NO_SUCH_REASON"]}"#,
    );
    assert_eq!(s, 400);
    assert_eq!(http(p, "GET", "/api/v1/captures/99", &auth, b"").0, 404);
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// More reasons x interfaces than --metrics-max-series: at most that many series, the rest
/// in `other`, and every drop in one of them.
#[test]
fn series_bound_folds_into_other_exactly() {
    require_root!();
    let pairs: Vec<NetnsPair> = (0..4).map(|_| NetnsPair::new()).collect();
    let serve = Serve::start(&["--metrics-max-series", "2"]);
    let mut ours = Vec::new();
    for (i, ns) in pairs.iter().enumerate() {
        let n = 100 * (i + 1);
        ns.send_udp(false, 5000, 9, n, 16);
        ours.push((
            format!(
                "if{}@netns{}",
                ns.ifindex(&ns.b, &ns.veth_b),
                ns.inode(&ns.b)
            ),
            n as f64,
        ));
    }
    // Every drop of ours is counted once the table is drained: in its own series or in other.
    let text = wait_for(20, "the drops to be counted", || {
        let (_, text) = serve.get("/metrics");
        let own: f64 = ours
            .iter()
            .filter_map(|(iface, _)| {
                sample(
                    &text,
                    "dropscope_interface_drops_total",
                    &[("interface", iface), ("reason", "NO_SOCKET")],
                )
            })
            .sum();
        let other = sample(
            &text,
            "dropscope_interface_drops_total",
            &[("interface", "other")],
        )
        .unwrap_or(0.0);
        (own + other >= 1000.0).then_some(text)
    });
    let series = samples(&text, "dropscope_interface_drops_total");
    assert!(series.len() <= 3, "{series:?}");
    assert_eq!(
        sample(&text, "dropscope_metrics_max_series", &[]),
        Some(2.0)
    );
    let other = sample(
        &text,
        "dropscope_interface_drops_total",
        &[("origin", "other"), ("interface", "other")],
    )
    .expect("other series");
    assert_eq!(
        sample(&text, "dropscope_metrics_folded_drops_total", &[]),
        Some(other)
    );
    let mut folded_ours = 0.0;
    for (iface, n) in &ours {
        // Our drops' series (the namespaces' own IPv6 chatter may have series of its own
        // on the same interfaces).
        match sample(
            &text,
            "dropscope_interface_drops_total",
            &[("interface", iface), ("reason", "NO_SOCKET")],
        ) {
            Some(v) => assert_eq!(v, *n, "{iface}"),
            None => folded_ours += n,
        }
    }
    // At most two series exist: at least two of our four interfaces are folded.
    assert!(folded_ours >= 300.0, "{text}");
    assert!(other >= folded_ours, "{other} < {folded_ours}");
    // Exact: every kernel drop is in a series or in other (once nothing more is in flight).
    wait_for(20, "series total = drops total", || {
        let (_, t) = serve.get("/metrics");
        let sum = |name: &str, origin: &str| -> f64 {
            samples(&t, name)
                .iter()
                .filter(|l| l.contains(&format!("origin=\"{origin}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let total = sum("dropscope_drops_total", "kernel");
        let in_series = sum("dropscope_interface_drops_total", "kernel")
            + sum("dropscope_interface_drops_total", "other");
        (total == in_series).then_some(())
    });
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// The systemd unit runs `serve` and passes `systemd-analyze verify` (with ExecStart
/// pointed at the binary under test).
#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/systemd/dropscope.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/dropscope serve "),
        "{exec}"
    );
    // Its flags are serve's.
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let out = dropscope().args(&args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze missing");
        return;
    }
    let dir = TempDir::new("unit");
    let f = dir.path("dropscope.service");
    std::fs::write(
        &f,
        unit.replace("/usr/local/bin/dropscope", env!("CARGO_BIN_EXE_dropscope")),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Cilium's monitor socket, read by `serve` beside the kernel: a real Go program writes the
/// agent's gob stream, restarting once (a reconnect); the drop notifications, the agent's
/// lost records and the reconnect are in the metrics, exactly.
#[test]
fn cilium_socket_drops_lost_records_and_reconnects_are_exported() {
    use std::io::BufRead as _;
    require_root!();
    let dir = TempDir::new("serve-cilium");
    let sim = match engine::cilium_socket::agent_sim::build(&dir.0) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let sock = dir.path("monitor1_2.sock");
    // serve starts before the agent: it reads the socket once the agent creates it.
    let serve = Serve::start(&["--cilium-socket", sock.to_str().unwrap()]);
    let (_, t) = serve.get("/metrics");
    assert_eq!(
        sample(&t, "dropscope_cilium_socket_read", &[]),
        Some(0.0),
        "{t}"
    );
    let mut agent = Command::new(&sim)
        .arg("-socket")
        .arg(&sock)
        .args(["-phases", "2", "-drops", "300", "-each", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start simulator");
    let mut line = String::new();
    std::io::BufReader::new(agent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let want: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(agent.wait().unwrap().success());
    let drops = want["samples"]["1"].as_u64().unwrap() as f64;
    let text = wait_for(20, "the Cilium drops", || {
        let (_, t) = serve.get("/metrics");
        let n: f64 = samples(&t, "dropscope_drops_total")
            .iter()
            .filter(|l| l.contains("origin=\"cilium\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (n == drops).then_some(t)
    });
    assert_eq!(
        sample(&text, "dropscope_cilium_socket_read", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "dropscope_cilium_reconnects_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "dropscope_cilium_lost_records_total", &[]),
        Some(want["lost_total"].as_u64().unwrap() as f64),
        "{text}"
    );
    let in_series: f64 = samples(&text, "dropscope_interface_drops_total")
        .iter()
        .filter(|l| l.contains("origin=\"cilium\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(in_series, drops);
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A session with `rotate_mb` and `max_files` (tcpdump's -C and -W): a ring of complete
/// files, each downloaded by number holds exactly the packets its status says, the files
/// hold every written packet (the overwritten ones counted as such), and an overwritten
/// file is gone (404).
#[test]
fn a_rotating_session_keeps_a_ring_of_complete_files() {
    require_root!();
    if !tshark_available() {
        eprintln!("SKIPPED: tshark missing");
        return;
    }
    let ns = NetnsPair::new();
    let serve = Serve::start(&["--exemplars", "100000"]);
    let netns = ns.inode(&ns.b).to_string();
    let body = format!(
        "{{\"filter\": \"udp src port 4011\", \"netns\": \"{netns}\", \"duration\": 4, \
         \"rotate_mb\": 1, \"max_files\": 3}}"
    );
    let (s, v) = serve.json("POST", "/api/v1/captures", &body);
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    const N: u64 = 12_000;
    ns.send_udp(false, 4011, 9, N as usize, 200);
    let v = wait_for(20, "the session to end", || {
        let (_, v) = serve.json("GET", &format!("/api/v1/captures/{id}"), "");
        (v["state"] == "done").then_some(v)
    });
    assert_eq!(v["ledger"]["balanced"], true, "{v}");
    assert_eq!(v["ledger"]["per_reason"]["NO_SOCKET"]["written"], N, "{v}");
    let files = v["files"].as_array().unwrap();
    assert!(
        files.len() > 3,
        "12,000 packets of ~250 bytes fill more than 3 MB: {v}"
    );
    let in_files: u64 = files.iter().map(|f| f["packets"].as_u64().unwrap()).sum();
    assert_eq!(in_files, N, "every written packet went to a file: {v}");
    let kept: Vec<(usize, &serde_json::Value)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f["overwritten"] == false)
        .collect();
    assert_eq!(kept.len(), 3, "{v}");
    let dir = TempDir::new("rotsession");
    for (i, f) in &kept {
        let (s, _, body) = http(
            serve.port,
            "GET",
            &format!("/api/v1/captures/{id}/pcapng?file={i}"),
            &[],
            b"",
        );
        assert_eq!(s, 200, "file {i}");
        let p = dir.path(&format!("f{i}.pcapng"));
        std::fs::write(&p, body).unwrap();
        assert_eq!(
            tshark_count(
                &p,
                "udp.srcport == 4011 && frame.comment contains \"NO_SOCKET\""
            ),
            f["packets"].as_u64().unwrap() as usize,
            "file {i}"
        );
    }
    let gone = files.iter().position(|f| f["overwritten"] == true).unwrap();
    let (s, _, _) = http(
        serve.port,
        "GET",
        &format!("/api/v1/captures/{id}/pcapng?file={gone}"),
        &[],
        b"",
    );
    assert_eq!(s, 404);
    let (s, v) = serve.json("POST", "/api/v1/captures", "{\"max_files\": 2}");
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("max_files needs rotate_mb"),
        "{v}"
    );
}
