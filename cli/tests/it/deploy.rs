//! The deployment: `deploy/kubernetes/` and `deploy/Dockerfile`.
//!
//! - Every manifest passes `kubernetes-validate --strict` (installed by scripts/setup.sh, at
//!   the version it pins; the test fails, never skips, when it is missing), against the
//!   oldest and the newest Kubernetes schemas the package carries.
//! - The DaemonSet's pod holds least privilege: not privileged, every capability dropped but
//!   the documented ones, no host PID or IPC namespace, every host path read-only but the
//!   output.
//! - The capture loop the DaemonSet runs (its own shell script, taken from the manifest) is
//!   run here with the dropscope built here: every flag it passes must parse (any user); as
//!   root, it captures real drops between two test namespaces (and connects to a Cilium
//!   socket) under exactly the capabilities the manifest grants, rotates its files, and on
//!   SIGTERM finishes the file it is writing.
//! - The image's runtime stage installs the Debian packages the binary links against.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// The capabilities the DaemonSet adds, as the README's Kubernetes section lists them.
const CAPABILITIES: [&str; 3] = ["BPF", "PERFMON", "SYSLOG"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn daemonset_file() -> PathBuf {
    repo().join("deploy/kubernetes/dropscope-daemonset.yaml")
}

/// Every YAML file under deploy/kubernetes, sorted.
fn manifest_files() -> Vec<PathBuf> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(
        files.contains(&daemonset_file()),
        "{} is missing",
        daemonset_file().display()
    );
    files
}

/// The kubernetes-validate version scripts/setup.sh installs.
fn pinned_validator_version() -> String {
    let setup = std::fs::read_to_string(repo().join("scripts/setup.sh")).expect("setup.sh");
    setup
        .lines()
        .find_map(|l| l.trim().strip_prefix("KUBERNETES_VALIDATE_VERSION="))
        .expect("scripts/setup.sh sets KUBERNETES_VALIDATE_VERSION")
        .trim()
        .to_string()
}

/// The `kubernetes-validate` on PATH, checked to be the pinned version. Panics with what
/// to do when it is missing: this test must not pass without it.
fn validator() -> PathBuf {
    let want = pinned_validator_version();
    let path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("kubernetes-validate is not on PATH: run `bash scripts/setup.sh` (it installs version {want})")
        });
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}: run `bash scripts/setup.sh`", path.display()));
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        got,
        want,
        "{} is version {got:?}, scripts/setup.sh pins {want}: run `bash scripts/setup.sh`",
        path.display()
    );
    path
}

/// The Python that runs kubernetes-validate (from its `#!` line): it has PyYAML, a
/// dependency of kubernetes-validate, so parsing YAML needs nothing else.
fn validator_python() -> PathBuf {
    let script = validator();
    let text = std::fs::read(&script).expect("read kubernetes-validate");
    let first =
        String::from_utf8_lossy(text.split(|&b| b == b'\n').next().unwrap_or(&[])).to_string();
    let words: Vec<&str> = first
        .strip_prefix("#!")
        .unwrap_or_else(|| panic!("{}: no #! line: {first:?}", script.display()))
        .split_whitespace()
        .collect();
    match words.as_slice() {
        [env, python, ..] if env.ends_with("/env") => PathBuf::from(python),
        [python, ..] => PathBuf::from(python),
        [] => panic!("{}: empty #! line", script.display()),
    }
}

/// The documents of a YAML file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new(validator_python())
        .args([
            "-c",
            "import json, sys, yaml\njson.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "parsing {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from python");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn document<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in the manifest");
    found[0]
}

/// The DaemonSet and the one container it runs.
fn daemonset() -> (Vec<Value>, Value) {
    let docs = yaml_documents(&daemonset_file());
    let ds = document(&docs, "DaemonSet").clone();
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container expected");
    assert!(
        ds["spec"]["template"]["spec"]["initContainers"].is_null(),
        "an init container would need its own checks here"
    );
    let c = containers[0].clone();
    (docs, c)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The container's environment, name -> value.
fn container_env(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("env name").to_string(),
                e["value"].as_str().expect("env value").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Schema

fn run_validator(files: &[PathBuf], version: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(validator());
    cmd.args(["--strict", "--quiet"]);
    if let Some(v) = version {
        cmd.args(["--kubernetes-version", v]);
    }
    cmd.args(files).output().expect("run kubernetes-validate")
}

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    let files = manifest_files();
    // 1.25: the oldest schemas kubernetes-validate carries; None: its newest (its default).
    for version in [Some("1.25.0"), None] {
        let out = run_validator(&files, version);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict ({version:?}) refused the manifests:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The check has teeth: a misspelt field fails the same run.
    let dir = TempDir::new("deploy-schema");
    let text = std::fs::read_to_string(daemonset_file()).unwrap();
    assert!(text.contains("readOnlyRootFilesystem: true"));
    let bad = dir.path("misspelt.yaml");
    std::fs::write(
        &bad,
        text.replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesytem: true",
        ),
    )
    .unwrap();
    let out = run_validator(&[bad], None);
    assert!(
        !out.status.success(),
        "a misspelt field passed kubernetes-validate --strict"
    );
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("readOnlyRootFilesytem"), "{said}");
}

// ---------------------------------------------------------------------------------------
// Least privilege

#[test]
fn daemonset_pod_holds_least_privilege() {
    let (docs, c) = daemonset();
    let ds = document(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let ns = ds["metadata"]["namespace"].as_str().expect("namespace");
    assert_eq!(document(&docs, "Namespace")["metadata"]["name"], ns);
    let sa = document(&docs, "ServiceAccount");
    assert_eq!(sa["metadata"]["namespace"], ns);
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(sa["automountServiceAccountToken"], false);
    assert_eq!(pod["automountServiceAccountToken"], false);

    // The host's network namespace only (the manifest says why); never its PID or IPC
    // namespace (hostPID with CAP_SYS_PTRACE would let the pod ptrace the node).
    assert_eq!(pod["hostNetwork"], true);
    for host_ns in ["hostPID", "hostIPC"] {
        assert!(
            pod[host_ns].is_null() || pod[host_ns] == false,
            "{host_ns} must be off"
        );
    }
    let sc = &c["securityContext"];
    assert!(
        sc["privileged"].is_null() || sc["privileged"] == false,
        "privileged"
    );
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let added: BTreeSet<String> = strings(&sc["capabilities"]["add"]).into_iter().collect();
    let want: BTreeSet<String> = CAPABILITIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(added, want, "capabilities added");
    let seccomp = if sc["seccompProfile"].is_null() {
        &pod["securityContext"]["seccompProfile"]
    } else {
        &sc["seccompProfile"]
    };
    assert_eq!(seccomp["type"], "RuntimeDefault");

    // Every taint tolerated: control plane nodes too.
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null()),
        "a toleration of every taint (operator: Exists, no key) is missing"
    );
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res} missing"
            );
        }
    }

    // Host paths: read-only, but the output directory the loop writes (DROPSCOPE_DIR).
    let out_dir = container_env(&c)["DROPSCOPE_DIR"].clone();
    let volumes: BTreeMap<String, &Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    let mut writable_host_paths = Vec::new();
    for m in c["volumeMounts"].as_array().expect("volumeMounts") {
        let path = m["mountPath"].as_str().unwrap();
        let vol = volumes[m["name"].as_str().unwrap()];
        if let Some(host) = vol["hostPath"]["path"].as_str() {
            for forbidden in ["containerd", "crio", "docker.sock", "kubelet"] {
                assert!(!host.contains(forbidden), "host path {host} mounted");
            }
            assert!(host != "/" && host != "/proc", "host path {host} mounted");
            if path == out_dir {
                assert!(
                    m["readOnly"].is_null() || m["readOnly"] == false,
                    "the output directory must be writable"
                );
                writable_host_paths.push(path.to_string());
            } else {
                assert_eq!(
                    m["readOnly"], true,
                    "host path {host} at {path} must be read-only"
                );
            }
        } else if path == "/tmp" {
            assert!(vol["emptyDir"].is_object(), "/tmp must be an emptyDir");
        } else {
            panic!("unexpected volume at {path}: {vol}");
        }
    }
    assert_eq!(writable_host_paths, std::slice::from_ref(&out_dir));
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/tmp"),
        "/tmp (an emptyDir) is missing: the root filesystem is read-only"
    );

    // The README lists the same capabilities, each with its reason.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Running on a Kubernetes node")
        .nth(1)
        .expect("README section \"Running on a Kubernetes node\"");
    let section = section.split("\n## ").next().unwrap();
    for cap in CAPABILITIES {
        assert!(
            section.contains(&format!("| CAP_{cap} |")),
            "README's Kubernetes section does not explain CAP_{cap}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The capture loop

/// The DaemonSet's container command line (`/bin/sh -c SCRIPT NAME ARGS...`).
fn loop_argv(c: &Value) -> Vec<String> {
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    assert_eq!(argv[..2], ["/bin/sh", "-c"], "command: {argv:?}");
    argv
}

/// A directory with a `dropscope` first on PATH.
struct Shim {
    dir: TempDir,
    log: PathBuf,
}

impl Shim {
    /// `dropscope` is the binary built here.
    fn real() -> Shim {
        let dir = TempDir::new("deploy-shim");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dropscope"), dir.path("dropscope")).unwrap();
        let log = dir.path("unused.log");
        Shim { dir, log }
    }

    /// `dropscope` logs its arguments, and `capture` only parses them: `--help` is added
    /// after them, so a flag that does not exist or a bad value fails (exit 2), and
    /// nothing is loaded.
    fn parse_only() -> Shim {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new("deploy-shim");
        let log = dir.path("calls.log");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nif [ \"$1\" = capture ]; then exec '{bin}' \"$@\" --help >/dev/null; fi\nexec '{bin}' \"$@\"\n",
            log = log.display(),
            bin = env!("CARGO_BIN_EXE_dropscope")
        );
        let path = dir.path("dropscope");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Shim { dir, log }
    }

    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.dir.0.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A Unix socket where the agent's monitor socket would be; it accepts connections and
/// sends nothing (an agent with no events to report).
fn silent_agent_socket(path: &Path) -> UnixListener {
    let listener = UnixListener::bind(path).expect("bind the socket");
    let l = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    listener
}

/// The loop's command from the manifest, with the manifest's environment and `overrides`.
fn loop_command(prefix: &[String], shim: &Shim, overrides: &[(&str, String)]) -> Command {
    let (_, c) = daemonset();
    let argv = loop_argv(&c);
    let mut words: Vec<String> = prefix.to_vec();
    words.extend(argv);
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    for (k, v) in container_env(&c) {
        cmd.env(k, v);
    }
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    cmd.env("PATH", shim.path_var());
    cmd
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn every_flag_the_loop_passes_parses() {
    let (_, c) = daemonset();
    let args = strings(&c["args"]);
    let dir = TempDir::new("deploy-parse");
    let sock = dir.path("monitor1_2.sock");
    let out_dir = dir.path("out");
    // Without the agent's socket, then with it: both command lines the loop can build.
    for (with_socket, want_source) in [(false, "kernel"), (true, "kernel,cilium")] {
        let shim = Shim::parse_only();
        let _agent = with_socket.then(|| silent_agent_socket(&sock));
        let out = loop_command(
            &[],
            &shim,
            &[
                ("DROPSCOPE_DIR", out_dir.display().to_string()),
                ("DROPSCOPE_CILIUM_SOCKET", sock.display().to_string()),
                ("DROPSCOPE_ROUNDS", "2".into()),
            ],
        )
        .stdin(Stdio::null())
        .output()
        .expect("run the loop");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the loop failed ({}): a flag it passes does not parse?\n{err}",
            out.status
        );
        let calls = shim.calls();
        assert_eq!(
            calls.first().map(String::as_str),
            Some("doctor"),
            "{calls:?}"
        );
        let captures: Vec<&String> = calls.iter().filter(|c| c.starts_with("capture ")).collect();
        assert_eq!(captures.len(), 2, "{calls:?}");
        for call in captures {
            assert!(
                call.starts_with(&format!("capture --source {want_source} ")),
                "{call}"
            );
            assert!(
                call.ends_with(&args.join(" ")),
                "manifest args missing: {call}"
            );
            assert!(
                call.contains(&format!("-w {}/drops-", out_dir.display())),
                "{call}"
            );
        }
        assert!(err.contains("stopped after 2 files"), "{err}");
        if with_socket {
            std::fs::remove_file(&sock).unwrap();
        }
    }
}

/// `setpriv` arguments that leave root exactly the capabilities the manifest adds (as the
/// container runtime does after `drop: [ALL]`), with no_new_privs
/// (`allowPrivilegeEscalation: false`).
fn manifest_capabilities_prefix() -> Vec<String> {
    let (_, c) = daemonset();
    let caps: Vec<String> = strings(&c["securityContext"]["capabilities"]["add"])
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    vec![
        "setpriv".into(),
        "--bounding-set".into(),
        format!("-all,{}", caps.join(",")),
        "--inh-caps".into(),
        "-all".into(),
        "--no-new-privs".into(),
    ]
}

fn setpriv_available() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn loop_captures_rotates_and_reaches_cilium_with_the_manifest_capabilities() {
    require_root!();
    assert!(
        setpriv_available(),
        "setpriv (util-linux) is missing: apt-get install util-linux"
    );
    let ns = NetnsPair::new();
    let dir = TempDir::new("deploy-loop");
    let sock = dir.path("monitor1_2.sock");
    let _agent = silent_agent_socket(&sock);
    let out_dir = dir.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A file left by a killed capture: the loop deletes it at start.
    std::fs::write(
        out_dir.join("drops-19700101T000000.000000000Z.pcapng.tmp"),
        b"x",
    )
    .unwrap();
    let shim = Shim::real();
    let mut child = loop_command(
        &manifest_capabilities_prefix(),
        &shim,
        &[
            ("DROPSCOPE_DIR", out_dir.display().to_string()),
            ("DROPSCOPE_CILIUM_SOCKET", sock.display().to_string()),
            ("DROPSCOPE_FILE_SECONDS", "1".into()),
            ("DROPSCOPE_KEEP_FILES", "2".into()),
            ("DROPSCOPE_ROUNDS", "3".into()),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the loop");
    // Drops to a closed port in B until the loop ends: every file has some.
    let done = AtomicBool::new(false);
    let sent = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut sent = 0;
            while !done.load(Ordering::Relaxed) {
                ns.send_udp(false, 40111, 9, 5, 20);
                sent += 5;
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the loop did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
        done.store(true, Ordering::Relaxed);
        sender.join().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "loop failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(sent > 0);

    // The doctor, under the manifest's capabilities, finds nothing missing.
    for check in ["capabilities", "attach", "btf"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("OK") && l.split_whitespace().nth(1) == Some(check)),
            "doctor's {check} check is not OK:\n{stdout}"
        );
    }
    assert!(
        !stdout.lines().any(|l| l.starts_with("FAIL")),
        "doctor failed:\n{stdout}"
    );

    // Three files written, the oldest deleted, the leftover .tmp too.
    let names = files_in(&out_dir);
    let pcapngs: Vec<&String> = names.iter().filter(|n| n.ends_with(".pcapng")).collect();
    let jsons: Vec<&String> = names.iter().filter(|n| n.ends_with(".json")).collect();
    assert_eq!((pcapngs.len(), jsons.len()), (2, 2), "{names:?}\n{stderr}");
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(
        stderr.matches("dropscope-loop: writing ").count(),
        3,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("dropscope-loop: deleted ").count(),
        2,
        "{stderr}"
    );
    assert!(
        stderr.contains("left by a capture that was killed"),
        "{stderr}"
    );
    assert!(stderr.contains("(kernel,cilium, 1s)"), "{stderr}");

    for json in jsons {
        let s = read_json(&out_dir.join(json));
        assert_eq!(s["schema"], "dropscope.stats/1");
        assert_eq!(s["accounting"]["reconciled"], true, "{json}");
        let source = s["source"].as_str().unwrap();
        assert!(
            source.contains("kfree_skb") && source.contains(" + "),
            "{json}: source {source:?}: kernel and Cilium expected"
        );
        let rows = flow_rows(&s, &ns.ip4_a.to_string(), &ns.ip4_b.to_string(), 40111, 9);
        assert_eq!(rows.len(), 1, "{json}: {rows:?}");
        assert_eq!(rows[0]["reason_name"], "NO_SOCKET");
        assert!(rows[0]["packets"].as_u64().unwrap() > 0);
        let pcapng = out_dir.join(json.replace(".json", ".pcapng"));
        let bytes = std::fs::read(&pcapng).unwrap();
        assert_eq!(bytes[..4], [0x0a, 0x0d, 0x0d, 0x0a], "{}", pcapng.display());
        assert!(
            s["outputs"]["file"]["packets"].as_u64().unwrap() > 0,
            "{json}"
        );
    }
}

#[test]
fn sigterm_makes_the_loop_finish_the_file_and_stop() {
    require_root!();
    assert!(
        setpriv_available(),
        "setpriv (util-linux) is missing: apt-get install util-linux"
    );
    let dir = TempDir::new("deploy-term");
    let out_dir = dir.path("out");
    let shim = Shim::real();
    let mut child = loop_command(
        &manifest_capabilities_prefix(),
        &shim,
        &[
            ("DROPSCOPE_DIR", out_dir.display().to_string()),
            (
                "DROPSCOPE_CILIUM_SOCKET",
                dir.path("absent.sock").display().to_string(),
            ),
            ("DROPSCOPE_FILE_SECONDS", "120".into()),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the loop");
    let mut seen = Vec::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.starts_with("dropscope: capturing drops");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.starts_with("dropscope: capturing")),
        "the capture did not start:\n{}",
        seen.join("\n")
    );
    let sent = Instant::now();
    // SAFETY: kill with the pid of our own child (setpriv exec-ed the shell).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let err = seen.join("\n");
    assert!(status.success(), "{status}:\n{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "slow to stop:\n{err}"
    );
    assert!(err.contains("(interrupted)"), "{err}");
    assert!(err.contains("stopped after 1 files"), "{err}");
    let names = files_in(&out_dir);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let json = names.iter().find(|n| n.ends_with(".json")).unwrap();
    assert_eq!(
        read_json(&out_dir.join(json))["stopped_by"],
        "interrupted",
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The image

/// The Dockerfile's lines from its last `FROM` on (the runtime stage), continuations joined.
fn runtime_stage(dockerfile: &str) -> String {
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM");
    lines[start..].join("\n")
}

#[test]
fn image_matches_this_machine_and_installs_what_the_binary_links() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    // Built on the Debian release the tests run on (when they run on Debian).
    let release = text
        .lines()
        .find_map(|l| l.strip_prefix("ARG DEBIAN_RELEASE="))
        .expect("ARG DEBIAN_RELEASE=")
        .trim();
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if os.lines().any(|l| l == "ID=debian") {
        if let Some(here) = os.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")) {
            assert_eq!(
                release, here,
                "deploy/Dockerfile builds on Debian {release}, the tests run on {here}: set DEBIAN_RELEASE={here}"
            );
        }
    }
    assert!(
        text.contains("RUN bash scripts/setup.sh"),
        "the build stage runs setup.sh"
    );
    assert!(text.contains("cargo build --release --locked -p dropscope"));
    let runtime = runtime_stage(&text);
    assert!(
        runtime.starts_with("FROM debian:${DEBIAN_RELEASE}-slim"),
        "{runtime}"
    );
    assert!(runtime.contains("ENTRYPOINT [\"dropscope\"]"));
    let installed: BTreeSet<String> = runtime
        .lines()
        .filter_map(|l| l.split("apt-get install").nth(1))
        .flat_map(|rest| {
            rest.split("&&")
                .next()
                .unwrap()
                .split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!installed.is_empty(), "the runtime stage installs nothing");

    // Every library the binary needs, but glibc's and libgcc's (in every Debian image),
    // comes from a package the runtime stage installs.
    let out = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_dropscope")])
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success());
    let needed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect();
    // libpcap (its filter compiler) is linked dynamically: the check below has work to do.
    assert!(
        needed.iter().any(|l| l.starts_with("libc.so"))
            && needed.iter().any(|l| l.starts_with("libpcap.so")),
        "{needed:?}"
    );
    let base = [
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ];
    for lib in needed
        .iter()
        .filter(|l| !base.iter().any(|b| l.starts_with(b)))
    {
        let out = Command::new("dpkg")
            .args(["-S", &format!("*/{lib}")])
            .output()
            .expect("dpkg");
        let owners: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').next())
            .map(str::to_string)
            .collect();
        assert!(
            owners.iter().any(|o| installed.contains(o)),
            "the binary needs {lib} (Debian package {owners:?}); the runtime stage installs {installed:?}"
        );
    }

    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for excluded in ["target", "fuzz/artifacts", "fuzz/corpus", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == excluded),
            ".dockerignore does not exclude {excluded}"
        );
    }
}
