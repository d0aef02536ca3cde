//! Helpers for the CLI's end-to-end tests: run the built binary, make network namespaces.
//!
//! Network traffic in tests goes only between namespaces and veth pairs created here, and
//! everything created is removed on drop, also when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn dropscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dropscope"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `dropscope ARGS` and checks the bad-input contract: exit 2, nothing on stdout, one
/// line on stderr holding every needle.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = dropscope().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line expected, got:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Why a root test cannot run here, if it cannot.
pub fn root_skip_reason() -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("kernel has no BTF".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 missing".into());
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = $crate::common::root_skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub use engine::netns_rig::{sh, NetnsPair};

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("dropscope-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `dropscope capture` running in the background until [`LiveCapture::stop`].
pub struct LiveCapture {
    _area: engine::netns_rig::AreaGuard,
    child: std::process::Child,
    stderr_lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LiveCapture {
    /// Starts `dropscope capture ARGS` and waits until it says it is capturing.
    pub fn start(args: &[&str]) -> LiveCapture {
        Self::start_to(args, std::process::Stdio::null())
    }

    /// [`LiveCapture::start`] with stdout sent to `stdout`.
    pub fn start_to(args: &[&str], stdout: std::process::Stdio) -> LiveCapture {
        Self::start_command("capture", args, stdout)
    }

    /// `dropscope COMMAND ARGS` (a command that captures: capture, top), as
    /// [`LiveCapture::start_to`].
    pub fn start_command(command: &str, args: &[&str], stdout: std::process::Stdio) -> LiveCapture {
        use std::io::BufRead as _;
        let mut child = dropscope()
            .arg(command)
            .args(args)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn dropscope");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cap = LiveCapture {
            _area: engine::netns_rig::area_guard(),
            child,
            stderr_lines: rx,
            seen: Vec::new(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match cap
                .stderr_lines
                .recv_timeout(std::time::Duration::from_millis(200))
            {
                Ok(l) => {
                    let ready = l.contains("capturing");
                    cap.seen.push(l);
                    if ready {
                        return cap;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = cap.child.try_wait() {
                        panic!("dropscope exited early ({st}): {}", cap.seen.join("\n"));
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "dropscope did not start: {}",
                        cap.seen.join("\n")
                    );
                }
                Err(_) => panic!("dropscope stderr closed: {}", cap.seen.join("\n")),
            }
        }
    }

    /// The capture's stdout (when started with a piped stdout).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout was piped")
    }

    /// The exit status, if it has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// All of stderr so far (after it ended: all of it).
    pub fn stderr_text(&mut self) -> String {
        while let Ok(l) = self
            .stderr_lines
            .recv_timeout(std::time::Duration::from_millis(500))
        {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// Ids of the BPF programs the process holds open.
    pub fn prog_ids(&self) -> Vec<u32> {
        let dir = format!("/proc/{}/fdinfo", self.child.id());
        let mut ids: Vec<u32> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|t| {
                        t.lines()
                            .find_map(|l| l.strip_prefix("prog_id:"))
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Sends SIGINT, waits, and returns (exit status, all of stderr).
    pub fn stop(self) -> (std::process::ExitStatus, String) {
        self.stop_with(libc::SIGINT)
    }

    /// Sends `signal`, waits, and returns (exit status, all of stderr).
    pub fn stop_with(mut self, signal: libc::c_int) -> (std::process::ExitStatus, String) {
        // SAFETY: kill with a valid pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let st = self.child.wait().expect("wait");
        while let Ok(l) = self
            .stderr_lines
            .recv_timeout(std::time::Duration::from_millis(500))
        {
            self.seen.push(l);
        }
        (st, self.seen.join("\n"))
    }
}

impl Drop for LiveCapture {
    /// A test that fails while a capture runs must not leave it attached to the kernel.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `flows[]` rows of a stats JSON that match a 5-tuple.
pub fn flow_rows<'a>(
    stats: &'a serde_json::Value,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
) -> Vec<&'a serde_json::Value> {
    stats["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| {
            f["src"] == src && f["dst"] == dst && f["sport"] == sport && f["dport"] == dport
        })
        .collect()
}

/// One reason's row of a summary's accounting (`--stats-json`), if the reason was seen.
pub fn reason_row<'a>(s: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    s["accounting"]["reasons"]
        .as_array()
        .expect("accounting.reasons")
        .iter()
        .find(|r| r["name"] == name)
}

/// One counter of one reason's accounting row; 0 when the reason was not seen.
pub fn reason_field(s: &serde_json::Value, name: &str, k: &str) -> u64 {
    reason_row(s, name).map_or(0, |r| r[k].as_u64().unwrap_or(0))
}

pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("json")
}

/// `tshark -r FILE -Y FILTER` packet count.
pub fn tshark_count(file: &Path, filter: &str) -> usize {
    tshark_fields(file, "frame.number", filter).len()
}

/// `tshark -r FILE -Y FILTER -T fields -e FIELD`: one value per packet.
pub fn tshark_fields(file: &Path, field: &str, filter: &str) -> Vec<String> {
    let o = sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        field,
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The last block of plain output (blocks are separated by a blank line).
pub fn last_block(out: &str) -> &str {
    out.trim_end().rsplit("\n\n").next().expect("a block")
}

/// Drops of each reason line: reason name -> drops.
pub fn reason_lines(block: &str) -> std::collections::BTreeMap<String, u64> {
    block
        .lines()
        .filter(|l| l.starts_with("reason "))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            // reason DROPS /S ORIGIN NAME... [sparkline]
            let name: Vec<&str> = t[4..]
                .iter()
                .copied()
                .filter(|w| !w.chars().all(|c| ('▁'..='█').contains(&c)))
                .collect();
            (name.join(" "), t[1].parse().unwrap())
        })
        .collect()
}

/// Runs `dropscope top --plain ARGS` around `provoke`; returns its standard output.
pub fn plain_top(args: &[&str], provoke: impl FnOnce()) -> String {
    let mut full = vec![
        "--plain",
        "--interval",
        "200",
        "--no-names",
        "--no-datapath",
    ];
    full.extend_from_slice(args);
    let mut cap = LiveCapture::start_command("top", &full, std::process::Stdio::piped());
    let mut stdout = cap.take_stdout();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    provoke();
    // A few refreshes after it (the stop drains the kernel table's last counts).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, err) = cap.stop();
    assert!(st.success(), "top failed: {err}");
    reader.join().unwrap()
}
