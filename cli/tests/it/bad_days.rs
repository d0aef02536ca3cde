//! Root tests: bad days. Signals in the middle of a flood, a reader that goes away
//! (`| head`), `kill -9`, a file system that fills up, and what files and errors look like
//! then. Drops are UDP datagrams to a closed port between namespace pairs the tests create.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Packets in a capture file, as Wireshark's capinfos counts them (and whether it read the
/// file to its end without complaint).
fn capinfos_packets(file: &std::path::Path) -> u64 {
    let o = Command::new("capinfos")
        .args(["-M", "-c"])
        .arg(file)
        .output()
        .expect("capinfos");
    assert!(
        o.status.success(),
        "capinfos {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Number of packets:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("capinfos: {text}"))
}

#[test]
fn signals_mid_flood_leave_a_whole_file_that_matches_the_ledger() {
    require_root!();
    let pair = NetnsPair::new();
    let dir = TempDir::new("signals");
    for (i, sig) in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        .enumerate()
    {
        let file = dir.path(&format!("s{i}.pcapng"));
        let stats = dir.path(&format!("s{i}.json"));
        let cap = LiveCapture::start(&[
            "-w",
            file.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ]);
        std::thread::scope(|s| {
            let sender = s.spawn(|| pair.send_udp(false, 43000 + i as u16, 9, 20_000, 64));
            // Somewhere in the middle of the flood.
            std::thread::sleep(Duration::from_millis(30 + 40 * i as u64));
            let (st, err) = cap.stop_with(sig);
            assert!(st.success(), "signal {sig}: {st}: {err}");
            sender.join().unwrap();
        });
        assert!(!dir.path(&format!("s{i}.pcapng.tmp")).exists());
        let s = read_json(&stats);
        let written = s["outputs"]["file"]["packets"].as_u64().unwrap();
        assert!(written > 0, "signal {sig}: {s:#}");
        assert_eq!(capinfos_packets(&file), written, "signal {sig}");
        assert_eq!(
            s["accounting"]["totals"]["processed"].as_u64().unwrap(),
            written,
            "signal {sig}: {s:#}"
        );
        assert_eq!(s["accounting"]["reconciled"], true, "{s:#}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_run() {
    require_root!();
    let pair = NetnsPair::new();
    // `dropscope capture | head -3`: head's end of the pipe closes after three lines.
    let mut cap = LiveCapture::start_to(&[], Stdio::piped());
    let out = cap.take_stdout();
    let head = Command::new("head")
        .arg("-3")
        .stdin(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("head");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                pair.send_udp(false, 43100, 9, 50, 16);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let lines = head.wait_with_output().expect("head");
        assert_eq!(String::from_utf8_lossy(&lines.stdout).lines().count(), 3);
        // dropscope notices at its next line and stops by itself (no signal sent).
        let deadline = Instant::now() + Duration::from_secs(20);
        let st = loop {
            if let Some(st) = cap.try_wait() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "dropscope kept running after head"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let err = cap.stderr_text();
        assert!(st.success(), "{st}: {err}");
        assert!(err.contains("(standard output closed)"), "{err}");
        assert!(err.contains("accounting: reconciled"), "{err}");
    });
}

#[test]
fn kill_9_leaves_no_program_and_a_readable_tmp_file() {
    require_root!();
    let pair = NetnsPair::new();
    let dir = TempDir::new("kill9");
    let file = dir.path("k.pcapng");
    let cap = LiveCapture::start(&["-w", file.to_str().unwrap()]);
    let progs = cap.prog_ids();
    assert!(!progs.is_empty(), "no BPF program held by dropscope");
    // More than one buffer's worth reaches the file.
    pair.send_udp(false, 43200, 9, 6000, 200);
    std::thread::sleep(Duration::from_millis(500));
    let (st, _) = cap.stop_with(libc::SIGKILL);
    assert!(!st.success());
    // The kernel frees them once their last reference (the dead process's descriptors and
    // links) is gone, after an RCU grace period.
    for id in &progs {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string()])
                .output()
                .expect("bpftool");
            if !o.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "program {id} still loaded 10 s after kill -9"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let tmp = dir.path("k.pcapng.tmp");
    assert!(
        tmp.exists(),
        "kill -9 leaves the file being written as .tmp"
    );
    assert!(!file.exists());
    let in_tmp = capinfos_packets(&tmp);
    assert!(in_tmp > 0);
    // The writer writes whole blocks: everything in the .tmp file reads back.
    let stats = dir.path("r.json");
    let o = run_ok(dropscope().args([
        "replay",
        tmp.to_str().unwrap(),
        "-q",
        "--stats-json",
        stats.to_str().unwrap(),
    ]));
    let s = read_json(&stats);
    assert_eq!(
        s["accounting"]["totals"]["processed"].as_u64().unwrap(),
        in_tmp,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Cut inside a block (as a kill in the middle of a write would leave it): read up to
    // the last complete block, and said in words.
    let bytes = std::fs::read(&tmp).unwrap();
    let cut = dir.path("cut.pcapng");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = run_ok(dropscope().args(["replay", cut.to_str().unwrap(), "-q"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{} events processed", in_tmp - 1)),
        "{err}"
    );
    assert!(
        err.contains("file: the file ends inside a block (1 cut off"),
        "{err}"
    );
}

#[test]
fn a_full_file_system_keeps_the_file_to_its_last_block_and_counts_the_rest() {
    require_root!();
    let pair = NetnsPair::new();
    let dir = TempDir::new("full");
    let mnt = dir.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "dropscope-test",
            mnt.to_str().unwrap(),
        ])
        .output()
        .expect("mount");
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).output();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let file = mnt.join("d.pcapng");
    let stats = dir.path("d.json");
    let cap = LiveCapture::start(&[
        "-w",
        file.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    // About 5 MB of drops at 256 captured bytes each: five times the file system. The
    // receiver's own count of datagrams to no socket is the truth to compare with.
    let no_ports = || pair.udp_no_ports();
    let before = no_ports();
    pair.send_udp(false, 43300, 9, 20_000, 1000);
    std::thread::sleep(Duration::from_millis(300));
    let (st, err) = cap.stop();
    assert_eq!(st.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert_eq!(
        last,
        format!(
            "dropscope: {} is incomplete: its file system is full; free space or write elsewhere (-w)",
            file.display()
        )
    );
    assert!(
        err.contains("the file system filled up (No space left on device"),
        "{err}"
    );
    assert!(!mnt.join("d.pcapng.tmp").exists());
    let s = read_json(&stats);
    let f = &s["outputs"]["file"];
    let (written, not_written) = (
        f["packets"].as_u64().unwrap(),
        f["not_written"].as_u64().unwrap(),
    );
    assert!(written > 0 && not_written > 0, "{f:#}");
    // The file holds exactly what it says, whole; counting went on to the end.
    assert_eq!(capinfos_packets(&file), written);
    let processed = s["accounting"]["totals"]["processed"].as_u64().unwrap();
    assert_eq!(written + not_written, processed, "{s:#}");
    let ours: u64 = flow_rows(
        &s,
        &pair.ip4_a.to_string(),
        &pair.ip4_b.to_string(),
        43300,
        9,
    )
    .iter()
    .filter(|r| r["reason_name"] == "NO_SOCKET")
    .map(|r| r["packets"].as_u64().unwrap())
    .sum();
    let dropped = no_ports() - before;
    assert!(dropped > 10_000, "{dropped}");
    // Every drop counted, exactly, in the kernel table; user space has each one the ring
    // carried (all of them, unless a loaded host made the storm switch copy fewer).
    let in_kernel: u64 = flow_rows(
        &s["storm"],
        &pair.ip4_a.to_string(),
        &pair.ip4_b.to_string(),
        43300,
        9,
    )
    .iter()
    .filter(|r| r["reason_name"] == "NO_SOCKET")
    .map(|r| r["packets"].as_u64().unwrap())
    .sum();
    assert_eq!(in_kernel, dropped, "every drop counted: {s:#}");
    let storms = s["storm"]["storm_switch"]["cpus"]
        .as_array()
        .map_or(0, |c| {
            c.iter().filter_map(|c| c["storms"].as_u64()).sum::<u64>()
        });
    if storms == 0 {
        assert_eq!(ours, dropped, "every drop copied: {s:#}");
    } else {
        assert!(ours <= dropped, "{ours} > {dropped}");
    }
}

#[test]
fn capture_files_are_owner_only_unless_asked() {
    require_root!();
    let dir = TempDir::new("mode");
    for (args, want) in [(vec![], 0o600), (vec!["--file-mode", "0640"], 0o640)] {
        let file = dir.path(&format!("m{want:o}.pcapng"));
        let mut all = vec!["-w", file.to_str().unwrap(), "--duration", "0.2"];
        all.extend(args);
        let o = run_ok(dropscope().arg("capture").args(&all));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{}", String::from_utf8_lossy(&o.stderr));
    }
    fails_with(
        &["capture", "--file-mode", "0999", "-w", "/tmp/x.pcapng"],
        &["not a file mode", "0600"],
    );
}

#[test]
fn a_file_that_cannot_be_created_is_said_once() {
    require_root!();
    let o = dropscope()
        .args([
            "capture",
            "-w",
            "/nonexistent/x.pcapng",
            "--duration",
            "0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "dropscope: cannot create /nonexistent/x.pcapng: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_source_given_twice_is_attached_once() {
    require_root!();
    let once = LiveCapture::start(&["--source", "kernel"]);
    let want = once.prog_ids().len();
    let _ = once.stop();
    let twice = LiveCapture::start(&["--source", "kernel,kernel"]);
    assert_eq!(twice.prog_ids().len(), want);
    let (st, err) = twice.stop();
    assert!(st.success(), "{err}");
    assert_eq!(err.matches("capturing drops").count(), 1, "{err}");
}
