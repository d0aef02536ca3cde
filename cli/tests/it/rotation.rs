//! Rotation of the -w file with tcpdump's flags (-C MB, -G SECS, -W N), live: drops sent
//! between namespaces this test creates, captured by the real eBPF program. Every file left
//! must be valid on its own (capinfos), hold exactly what the rotation ledger says went to
//! it, and the ledger's files together hold every packet the capture processed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// `capinfos -c` packet count of a file (and that capinfos reads it at all).
fn capinfos_count(f: &Path) -> u64 {
    let o = Command::new("capinfos")
        .args(["-c", "-M", f.to_str().unwrap()])
        .output()
        .expect("capinfos");
    assert!(
        o.status.success(),
        "capinfos {}: {}",
        f.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let t = String::from_utf8_lossy(&o.stdout);
    t.lines()
        .find_map(|l| l.strip_prefix("Number of packets:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {t}"))
}

/// The rotation ledger lines of the summary, in order: (path, packets, overwritten).
fn ledger(err: &str) -> Vec<(String, u64, bool)> {
    err.lines()
        .filter(|l| l.starts_with("  /") && l.contains(" packets, "))
        .map(|l| {
            let (path, rest) = l.trim().split_once(": ").unwrap();
            let n: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            (path.to_string(), n, l.ends_with("(overwritten)"))
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| !p.ends_with(".json"))
        .collect();
    v.sort();
    v
}

fn processed(stats: &Path) -> u64 {
    read_json(stats)["accounting"]["totals"]["processed"]
        .as_u64()
        .unwrap()
}

#[test]
fn size_ring_leaves_exactly_n_valid_files_matching_the_ledger() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("rot-c");
    let out = dir.path("files");
    std::fs::create_dir_all(&out).unwrap();
    let stats = dir.path("s.json");
    let w = out.join("r.pcapng");
    let netns = ns.inode(&ns.b).to_string();
    let cap = LiveCapture::start(&[
        "-q",
        "--netns",
        &netns,
        "--ring-size",
        "32",
        "-C",
        "1",
        "-W",
        "3",
        "-w",
        w.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        "udp dst port 9",
    ]);
    // About 200 bytes a block: some 25 files' worth, through a ring of 3.
    ns.send_udp(false, 40100, 9, 25_000, 64);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    let files = files_in(&out);
    let want: Vec<String> = (0..3).map(|i| format!("{}{i}", w.display())).collect();
    assert_eq!(files, want, "{err}");
    let l = ledger(&err);
    assert!(l.len() > 3, "the ring should have turned: {err}");
    // The files kept are the last three written; the earlier ones are marked overwritten.
    let kept: BTreeMap<&str, u64> = l
        .iter()
        .filter(|(_, _, o)| !o)
        .map(|(p, n, _)| (p.as_str(), *n))
        .collect();
    assert_eq!(kept.len(), 3, "{err}");
    assert!(l[..l.len() - 3].iter().all(|(_, _, o)| *o), "{err}");
    for f in &files {
        assert_eq!(capinfos_count(Path::new(f)), kept[f.as_str()], "{f}");
    }
    // Every processed packet went to exactly one file (kept or overwritten).
    let total: u64 = l.iter().map(|(_, n, _)| n).sum();
    assert_eq!(total, processed(&stats), "{err}");
}

#[test]
fn time_rotation_gives_strftime_named_valid_files() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("rot-g");
    let out = dir.path("files");
    std::fs::create_dir_all(&out).unwrap();
    let stats = dir.path("s.json");
    let pattern = out.join("d-%Y%m%d-%H%M%S.pcapng");
    let netns = ns.inode(&ns.b).to_string();
    let cap = LiveCapture::start(&[
        "-q",
        "--netns",
        &netns,
        "-G",
        "1",
        "-w",
        pattern.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        "udp dst port 9",
    ]);
    // Drops in four seconds, so at least three rotations happen (a file opens with a packet).
    for i in 0..8u16 {
        ns.send_udp(false, 40200 + i, 9, 50, 16);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    let files = files_in(&out);
    assert!(files.len() >= 3, "{files:?}\n{err}");
    let l = ledger(&err);
    let mut total = 0;
    for f in &files {
        let name = Path::new(f).file_name().unwrap().to_str().unwrap();
        // d-YYYYMMDD-HHMMSS.pcapng
        assert_eq!(name.len(), "d-20260101-000000.pcapng".len(), "{name}");
        assert!(name[2..10].bytes().all(|b| b.is_ascii_digit()), "{name}");
        assert!(name[11..17].bytes().all(|b| b.is_ascii_digit()), "{name}");
        let n = capinfos_count(Path::new(f));
        let row = l.iter().find(|(p, _, _)| p == f).expect("in the ledger");
        assert_eq!(row.1, n, "{f}");
        total += n;
    }
    assert_eq!(total, 8 * 50, "{err}");
    assert_eq!(processed(&stats), 8 * 50);
}

#[test]
fn rotation_flags_are_checked_before_anything_starts() {
    fails_with(&["capture", "-C", "1"], &["-w FILE"]);
    fails_with(
        &["capture", "-W", "3", "-w", "/tmp/x.pcapng"],
        &["-W needs -C"],
    );
    fails_with(
        &["capture", "-C", "0", "-w", "/tmp/x.pcapng"],
        &["at least 1"],
    );
    fails_with(
        &["replay", "x.pcap", "-G", "1", "-w", "/dev/null"],
        &["not a regular file"],
    );
}
