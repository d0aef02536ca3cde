//! Helpers for the CLI's end-to-end tests: run the built binary, make network namespaces.
//!
//! Network traffic in tests goes only between namespaces and veth pairs created here, and
//! everything created is removed on drop, also when a test fails.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

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

pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = common::root_skip_reason() {
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

/// Two namespaces joined by a veth pair: A (10.x.y.1, fd00:x:y::1) <-> B (.2, ::2).
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub ip4_a: Ipv4Addr,
    pub ip4_b: Ipv4Addr,
    pub ip6_a: Ipv6Addr,
    pub ip6_b: Ipv6Addr,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl NetnsPair {
    pub fn new() -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let x = (std::process::id() % 200) as u8 + 20;
        let y = (n % 250) as u8 + 1;
        let p = NetnsPair {
            a: format!("dsa{id}"),
            b: format!("dsb{id}"),
            veth_a: format!("dva{id}"),
            veth_b: format!("dvb{id}"),
            ip4_a: Ipv4Addr::new(10, x, y, 1),
            ip4_b: Ipv4Addr::new(10, x, y, 2),
            ip6_a: format!("fd00:{x}:{y}::1").parse().unwrap(),
            ip6_b: format!("fd00:{x}:{y}::2").parse().unwrap(),
        };
        sh(&["ip", "netns", "add", &p.a]);
        sh(&["ip", "netns", "add", &p.b]);
        sh(&[
            "ip", "link", "add", &p.veth_a, "netns", &p.a, "type", "veth", "peer", "name",
            &p.veth_b, "netns", &p.b,
        ]);
        for (ns, dev, v4, v6) in [
            (&p.a, &p.veth_a, p.ip4_a, p.ip6_a),
            (&p.b, &p.veth_b, p.ip4_b, p.ip6_b),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                dev,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Neighbours fixed so no ARP/ND traffic or delay interferes with exact counts.
        let mac = |ns: &str, dev: &str| -> String {
            let o = sh(&["ip", "-n", ns, "-o", "link", "show", dev]);
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            let i = s.find("link/ether ").expect("mac") + 11;
            s[i..i + 17].to_string()
        };
        let (ma, mb) = (mac(&p.a, &p.veth_a), mac(&p.b, &p.veth_b));
        sh(&[
            "ip",
            "-n",
            &p.a,
            "neigh",
            "replace",
            &p.ip4_b.to_string(),
            "lladdr",
            &mb,
            "dev",
            &p.veth_a,
        ]);
        sh(&[
            "ip",
            "-n",
            &p.a,
            "neigh",
            "replace",
            &p.ip6_b.to_string(),
            "lladdr",
            &mb,
            "dev",
            &p.veth_a,
        ]);
        sh(&[
            "ip",
            "-n",
            &p.b,
            "neigh",
            "replace",
            &p.ip4_a.to_string(),
            "lladdr",
            &ma,
            "dev",
            &p.veth_b,
        ]);
        sh(&[
            "ip",
            "-n",
            &p.b,
            "neigh",
            "replace",
            &p.ip6_a.to_string(),
            "lladdr",
            &ma,
            "dev",
            &p.veth_b,
        ]);
        p
    }

    /// Inode of a namespace, as the kernel reports it in drops.
    pub fn inode(&self, ns: &str) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/var/run/netns/{ns}"))
            .expect("netns file")
            .ino() as u32
    }

    /// ifindex of a device inside a namespace.
    pub fn ifindex(&self, ns: &str, dev: &str) -> u32 {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/ifindex"),
        ]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("ifindex")
    }

    /// Runs `f` on a thread that has entered namespace `ns`.
    pub fn in_ns<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = PathBuf::from(format!("/var/run/netns/{ns}"));
        std::thread::scope(|s| {
            s.spawn(move || {
                let fd = std::fs::File::open(&path).expect("open netns");
                // SAFETY: setns on a valid namespace fd; it changes only this thread's netns.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    /// Sends `n` UDP datagrams of `payload` bytes from A (source port `sport`) to B:`dport`.
    pub fn send_udp(&self, v6: bool, sport: u16, dport: u16, n: usize, payload: usize) {
        let (src, dst): (SocketAddr, SocketAddr) = if v6 {
            ((self.ip6_a, sport).into(), (self.ip6_b, dport).into())
        } else {
            ((self.ip4_a, sport).into(), (self.ip4_b, dport).into())
        };
        self.in_ns(&self.a.clone(), move || {
            let s = UdpSocket::bind(src).expect("bind");
            let buf = vec![0x5au8; payload];
            for _ in 0..n {
                // ICMP port-unreachable replies may make a later send fail with
                // ECONNREFUSED on a connected socket; send_to on an unconnected one does not.
                s.send_to(&buf, dst).expect("send");
            }
        });
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

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
        use std::io::BufRead as _;
        let mut child = dropscope()
            .arg("capture")
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
