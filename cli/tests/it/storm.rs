//! Root tests of storm mode: floods between network namespaces this test creates, sent from
//! both CPUs, captured by the real eBPF program through the built binary. Every flow's
//! count must be exact in the kernel flow table (`storm.flows` of the stats JSON), whatever
//! reached the ring; the packets in the file must be exactly the copies the kernel made, and
//! within the exemplar budget; the ledger must reconcile; and the receiving namespace's own
//! `Udp: NoPorts` counter must grow by exactly what was sent.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// Pins the calling thread to one CPU.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity touch only it and
    // this thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What to send: per source port, how many datagrams (split between two sender threads on
/// CPUs 0 and 1, so every flow drops on both CPUs), or for how long.
enum Amount<'a> {
    Count(&'a [(u16, u64)]),
    For(&'a [u16], Duration),
}

/// Floods B:`dport` from A with 16-byte datagrams from two threads pinned to CPUs 0 and 1
/// sharing one socket per source port (so every flow drops on both CPUs); returns per
/// source port what the kernel accepted (a failed send is never counted).
fn flood(ns: &NetnsPair, dport: u16, amount: Amount<'_>) -> BTreeMap<u16, u64> {
    let dst: SocketAddr = (ns.ip4_b, dport).into();
    let ncpu = cpus();
    let ports: Vec<u16> = match &amount {
        Amount::Count(f) => f.iter().map(|(p, _)| *p).collect(),
        Amount::For(p, _) => p.to_vec(),
    };
    let src = ns.ip4_a;
    let socks: Vec<UdpSocket> = ns.in_ns(&ns.a.clone(), move || {
        ports
            .iter()
            .map(|p| UdpSocket::bind((src, *p)).expect("bind"))
            .collect()
    });
    let results: Vec<BTreeMap<u16, u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2usize)
            .map(|t| {
                let (amount, socks) = (&amount, &socks);
                s.spawn(move || {
                    pin(t % ncpu);
                    let buf = [0x5au8; 16];
                    let mut sent = BTreeMap::new();
                    match amount {
                        Amount::Count(flows) => {
                            for (i, (port, n)) in flows.iter().enumerate() {
                                let mine = n / 2 + if t == 0 { n % 2 } else { 0 };
                                let mut ok = 0u64;
                                while ok < mine {
                                    if socks[i].send_to(&buf, dst).is_ok() {
                                        ok += 1;
                                    }
                                }
                                *sent.entry(*port).or_insert(0) += ok;
                            }
                        }
                        Amount::For(ports, d) => {
                            let end = Instant::now() + *d;
                            while Instant::now() < end {
                                for (i, port) in ports.iter().enumerate() {
                                    let mut ok = 0u64;
                                    for _ in 0..64 {
                                        if socks[i].send_to(&buf, dst).is_ok() {
                                            ok += 1;
                                        }
                                    }
                                    *sent.entry(*port).or_insert(0) += ok;
                                }
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("sender")).collect()
    });
    let mut total = BTreeMap::new();
    for r in results {
        for (p, n) in r {
            *total.entry(p).or_insert(0) += n;
        }
    }
    total
}

/// Kernel-table rows of our flows (A -> B:dport), per source port: (drops, copies), over
/// all reasons and drop sites.
fn kernel_rows(s: &serde_json::Value, ns: &NetnsPair, dport: u16) -> BTreeMap<u16, (u64, u64)> {
    let mut m = BTreeMap::new();
    for r in s["storm"]["flows"].as_array().expect("storm.flows") {
        if r["src"] == ns.ip4_a.to_string()
            && r["dst"] == ns.ip4_b.to_string()
            && r["dport"] == dport
        {
            let e = m
                .entry(r["sport"].as_u64().unwrap() as u16)
                .or_insert((0, 0));
            e.0 += r["packets"].as_u64().unwrap();
            e.1 += r["copied"].as_u64().unwrap();
        }
    }
    m
}

/// Packets per source port of UDP from A to B:`dport` in a capture file, as tcpdump reads
/// it (other tests flood other namespaces at the same time).
fn file_counts(file: &Path, ns: &NetnsPair, dport: u16) -> BTreeMap<u16, u64> {
    let o = sh(&[
        "tcpdump",
        "-nqr",
        file.to_str().unwrap(),
        &format!(
            "udp and src host {} and dst host {} and dst port {dport}",
            ns.ip4_a, ns.ip4_b
        ),
    ]);
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        // "12:00:00.000000 IP 10.1.2.1.41001 > 10.1.2.2.9: UDP, length 16"
        let Some(src) = line.split_whitespace().nth(2) else {
            continue;
        };
        if let Some(port) = src.rsplit('.').next().and_then(|p| p.parse::<u16>().ok()) {
            *m.entry(port).or_insert(0) += 1;
        }
    }
    m
}

fn reason_row<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    crate::common::reason_row(s, name).unwrap_or_else(|| panic!("no {name} row"))
}

/// The ledger's per-reason equations, checked here too (not only `reconciled`).
fn assert_books(s: &serde_json::Value, err: &str) {
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    for r in s["accounting"]["reasons"].as_array().unwrap() {
        if r["origin"] != "kernel" {
            continue;
        }
        let g = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert_eq!(
            g("observed"),
            g("filtered") + g("in_table") + g("table_full"),
            "{r}"
        );
        assert_eq!(
            g("observed"),
            g("filtered") + g("not_copied") + g("lost_ring") + g("delivered"),
            "{r}"
        );
        assert_eq!(
            g("delivered"),
            g("filtered_user") + g("skipped") + g("processed"),
            "{r}"
        );
    }
}

/// One capture around one flood: the stats JSON (books checked), stderr, what was sent per
/// source port and in all (checked against B's own NoPorts count), and the directory with
/// the capture file `f.pcapng`.
struct Run {
    s: serde_json::Value,
    err: String,
    sent: BTreeMap<u16, u64>,
    total: u64,
    dir: TempDir,
}

fn run_flood(ns: &NetnsPair, tag: &str, flags: &[&str], amount: Amount<'_>) -> Run {
    let dir = TempDir::new(tag);
    let (file, stats) = (dir.path("f.pcapng"), dir.path("s.json"));
    let before = ns.udp_no_ports();
    let mut args = vec!["-q"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[
        "-w",
        file.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let cap = LiveCapture::start(&args);
    let sent = flood(ns, 9, amount);
    std::thread::sleep(Duration::from_millis(200));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    let total: u64 = sent.values().sum();
    assert_eq!(
        ns.udp_no_ports() - before,
        total,
        "the namespace's own count"
    );
    let s = read_json(&stats);
    assert_books(&s, &err);
    Run {
        s,
        err,
        sent,
        total,
        dir,
    }
}

const FLOWS: [(u16, u64); 6] = [
    (41001, 150_000),
    (41002, 120_000),
    (41003, 90_000),
    (41004, 70_000),
    (41005, 50_000),
    (41006, 30_000),
];

#[test]
fn storm_with_exemplar_budget_counts_every_flow_exactly() {
    require_root!();
    let ns = NetnsPair::new();
    let Run {
        s,
        err,
        sent,
        total,
        dir,
    } = run_flood(
        &ns,
        "storm-ex",
        &["--exemplars", "2", "--ring-size", "1"],
        Amount::Count(&FLOWS),
    );
    let file = dir.path("f.pcapng");
    assert!(total >= 500_000);
    let rows = kernel_rows(&s, &ns, 9);
    let gens = s["storm"]["table"]["generations"].as_u64().unwrap();
    let in_file = file_counts(&file, &ns, 9);
    for (port, n) in &FLOWS {
        let (drops, copied) = rows[port];
        assert_eq!(drops, sent[port], "flow {port}: every drop counted");
        assert_eq!(*n, sent[port]);
        // Within the budget: 2 per generation (about a second), over all CPUs.
        assert!(
            copied >= 1 && copied <= 2 * gens,
            "flow {port}: {copied} copies in {gens} generations"
        );
        assert_eq!(
            in_file.get(port).copied().unwrap_or(0),
            copied,
            "flow {port}: the file holds the copies"
        );
    }
    let ns_row = reason_row(&s, "NO_SOCKET");
    assert!(ns_row["not_copied"].as_u64().unwrap() >= total - 2 * gens * FLOWS.len() as u64);
    // The file carries the kernel table: a replay reports the same exact counts, and stock
    // tshark still reads the file (the block is a copyable pcapng Custom Block).
    let replayed = dir.path("r.json");
    run_ok(dropscope().args([
        "replay",
        file.to_str().unwrap(),
        "-q",
        "--stats-json",
        replayed.to_str().unwrap(),
    ]));
    let r = read_json(&replayed);
    assert_eq!(
        kernel_rows(&r, &ns, 9),
        rows,
        "replay reports the kernel table"
    );
    assert_eq!(r["storm"]["policy"]["exemplars"], 2);
    if tshark_available() {
        let copies: u64 = rows.values().map(|(_, c)| c).sum();
        let filter = format!("ip.src == {} && udp.dstport == 9", ns.ip4_a);
        assert_eq!(tshark_count(&file, &filter) as u64, copies);
    }
    assert_eq!(s["storm"]["policy"]["exemplars"], 2);
    assert!(err.contains("top flows x reason"), "{err}");
}

#[test]
fn storm_at_default_flags_switches_to_exemplars_and_counts_exactly() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("storm-auto");
    let (file, stats) = (dir.path("a.pcapng"), dir.path("a.json"));
    let before = ns.udp_no_ports();
    // Every event is also printed to a pipe this test reads slowly: the reader falls behind,
    // a 1 MiB ring fills past half, and the CPU switches to its exemplar budget.
    let mut cap = LiveCapture::start_to(
        &[
            "--print",
            "--ring-size",
            "1",
            "-w",
            file.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        std::process::Stdio::piped(),
    );
    let mut out = cap.take_stdout();
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let slow2 = slow.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let mut n = 0usize;
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k,
            }
            if slow2.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let sent = flood(&ns, 9, Amount::Count(&FLOWS));
    std::thread::sleep(Duration::from_millis(300));
    slow.store(false, std::sync::atomic::Ordering::Relaxed);
    let (st, err) = cap.stop();
    reader.join().unwrap();
    assert!(st.success(), "{err}");
    let total: u64 = sent.values().sum();
    assert_eq!(ns.udp_no_ports() - before, total);
    let s = read_json(&stats);
    assert_books(&s, &err);
    let rows = kernel_rows(&s, &ns, 9);
    let in_file = file_counts(&file, &ns, 9);
    for (port, _) in &FLOWS {
        let (drops, copied) = rows[port];
        assert_eq!(drops, sent[port], "flow {port}: every drop counted");
        assert!(copied >= 1, "flow {port} has packets in the file");
        assert_eq!(
            in_file.get(port).copied().unwrap_or(0),
            copied,
            "flow {port}"
        );
    }
    let cpus = s["storm"]["storm_switch"]["cpus"].as_array().unwrap();
    let storms: u64 = cpus.iter().map(|c| c["storms"].as_u64().unwrap()).sum();
    assert!(
        storms >= 1,
        "the switch is reported: {}",
        s["storm"]["storm_switch"]
    );
    let spans = s["storm"]["storm_switch"]["spans"].as_array().unwrap();
    assert!(!spans.is_empty());
    assert!(err.contains("storm switch: CPU"), "{err}");
    assert!(reason_row(&s, "NO_SOCKET")["not_copied"].as_u64().unwrap() > 0);
}

#[test]
fn more_flows_than_the_kernel_table_keeps_per_reason_totals_exact() {
    require_root!();
    let ns = NetnsPair::new();
    // 600 flows, each dropped on both CPUs: 1200 keys, more than the two CPUs' caches (256
    // slots each, two-way) and the 8-entry hash together hold.
    let flows: Vec<(u16, u64)> = (0..600).map(|i| (42000 + i, 10)).collect();
    // Counts only: every drop goes through the kernel table (when every drop is copied,
    // user space counts most of them from their records instead).
    let Run { s, total, .. } = run_flood(
        &ns,
        "storm-full",
        &["--exemplars", "0", "--kernel-flows", "8"],
        Amount::Count(&flows),
    );
    assert_eq!(total, 6000);
    let row = reason_row(&s, "NO_SOCKET");
    assert!(row["table_full"].as_u64().unwrap() > 0, "{row}");
    let cache_slots = 256 * cpus() as u64;
    assert!(s["storm"]["table"]["peak_entries"].as_u64().unwrap() <= 8 + cache_slots);
    // Our drops are in the table's rows or in table-full: none lost, none twice.
    let rows: u64 = kernel_rows(&s, &ns, 9).values().map(|(n, _)| n).sum();
    let full = row["table_full"].as_u64().unwrap();
    assert!(
        rows < total && rows + full >= total,
        "{rows} in rows + {full} full vs {total}"
    );
}

#[test]
fn counts_only_over_a_long_run_from_two_cpus_is_exact_and_writes_no_packets() {
    require_root!();
    let ns = NetnsPair::new();
    let ports = [43001u16, 43002, 43003];
    // Five seconds of flooding: the table switches generations about five times while
    // both CPUs write into it.
    let Run { s, sent, dir, .. } = run_flood(
        &ns,
        "storm-zero",
        &["--exemplars", "0"],
        Amount::For(&ports, Duration::from_secs(5)),
    );
    let file = dir.path("f.pcapng");
    assert!(s["storm"]["table"]["generations"].as_u64().unwrap() >= 5);
    let rows = kernel_rows(&s, &ns, 9);
    for p in ports {
        assert_eq!(rows[&p], (sent[&p], 0), "flow {p}: exact, nothing copied");
    }
    // No packet bytes anywhere: the file has no packets, nothing was delivered.
    assert_eq!(s["outputs"]["file"]["packets"], 0);
    assert_eq!(s["accounting"]["totals"]["delivered"], 0);
    assert_eq!(file_counts(&file, &ns, 9).len(), 0);
    let row = reason_row(&s, "NO_SOCKET");
    assert_eq!(row["not_copied"], row["observed"]);
    // The per-second series adds up to what was seen.
    let series: u64 = s["storm"]["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["drops"]["NO_SOCKET"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(series, row["observed"].as_u64().unwrap());
    // This kernel (6.18) reports skipped runs: a number, not null.
    assert!(
        s["storm"]["recursion_misses"].is_u64(),
        "{}",
        s["storm"]["recursion_misses"]
    );
    let pct = s["storm"]["rate_percentiles"].as_array().unwrap();
    assert!(pct
        .iter()
        .any(|p| p["reason_name"] == "NO_SOCKET" && p["max"].as_u64().unwrap() > 0));
}

#[test]
fn bad_storm_flags_fail_in_one_line_before_attaching() {
    require_root!();
    let dir = TempDir::new("storm-bad");
    let file = dir.path("x.pcapng");
    for (args, want) in [
        (vec!["--exemplars", "-1"], "--exemplars"),
        (vec!["--kernel-flows", "0"], "--kernel-flows 0"),
        (
            vec!["--kernel-flows", "99999999"],
            "--kernel-flows 99999999",
        ),
        (vec!["--exemplars", "4000000000"], "--exemplars 4000000000"),
        (vec!["--ring-size", "0"], "--ring-size 0"),
    ] {
        let mut full = vec!["capture"];
        full.extend_from_slice(&args);
        full.extend_from_slice(&["-w", file.to_str().unwrap(), "--duration", "1"]);
        // One line, exit 2, and not the "capturing" line: nothing was attached.
        fails_with(&full, &[want]);
        assert!(
            !file.exists() && !dir.path("x.pcapng.tmp").exists(),
            "{args:?} left a file"
        );
    }
}

/// A memory cgroup (v1 or v2) with a 48 MiB limit, removed on drop; `None` when this
/// machine has no writable memory controller.
struct MemCgroup(std::path::PathBuf);

impl MemCgroup {
    fn new(limit: u64) -> Option<MemCgroup> {
        let self_cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        for line in self_cg.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let (base, file) = if ctrls.split(',').any(|c| c == "memory") {
                (
                    format!("/sys/fs/cgroup/memory{path}"),
                    "memory.limit_in_bytes",
                )
            } else {
                continue;
            };
            let dir = std::path::PathBuf::from(base).join(format!("dstest{}", std::process::id()));
            std::fs::create_dir(&dir).ok()?;
            if std::fs::write(dir.join(file), limit.to_string()).is_err() {
                let _ = std::fs::remove_dir(&dir);
                return None;
            }
            return Some(MemCgroup(dir));
        }
        None
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_memory_limit_smaller_than_the_tables_is_refused_with_one_line() {
    require_root!();
    let Some(cg) = MemCgroup::new(160 << 20) else {
        eprintln!("SKIPPED: no writable cgroup v1 memory controller");
        return;
    };
    let dir = TempDir::new("storm-mem");
    let file = dir.path("m.pcapng");
    // The binary's pages into the page cache now, charged here: read for the first time
    // inside the cgroup (a fresh build), they would count against its limit.
    let _ = std::fs::read(env!("CARGO_BIN_EXE_dropscope")).expect("read the binary");
    // dropscope started inside the cgroup.
    let in_cgroup = |args: &str| {
        let script = format!(
            "echo $$ > {} && exec {} capture {args} -w {} --duration 1",
            cg.0.join("cgroup.procs").display(),
            env!("CARGO_BIN_EXE_dropscope"),
            file.display()
        );
        std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap()
    };
    // 2 x 1M entries (about 560 MiB of table) against a 160 MiB limit.
    let out = in_cgroup("--kernel-flows 1048576");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("lower --ring-size or --kernel-flows"), "{err}");
    assert!(!file.exists());
    // A smaller table fits the same limit (with room for the process itself: a debug
    // build parsing the kernel's BTF takes tens of MiB).
    let out = in_cgroup("-q --kernel-flows 4096 --ring-size 1");
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(file.exists());
}
