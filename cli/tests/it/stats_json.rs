//! `--stats-json` and `--stats-flows` end to end, offline (no privileges): which rows the
//! document keeps and in what order, how many it says it left out, where it is written, and
//! the one-line errors.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// (UDP source port, packets, frame length): most packets first, then most bytes, then by
/// key (here the source port) gives 1006, 1002, 1001, 1004, 1000, 1005, 1007, 1003.
const FLOWS: [(u16, u32, usize); 8] = [
    (1000, 3, 60),
    (1001, 5, 60),
    (1002, 5, 70),
    (1003, 1, 60),
    (1004, 5, 60),
    (1005, 2, 100),
    (1006, 7, 60),
    (1007, 2, 100),
];
const ORDER: [u64; 8] = [1006, 1002, 1001, 1004, 1000, 1005, 1007, 1003];

/// An Ethernet + IPv4 + UDP frame of `len` bytes from 10.0.0.1:`sport` to 10.0.0.2:9.
fn frame(sport: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(len, 0);
    f
}

/// A classic pcap (microseconds, Ethernet) of `FLOWS`, their packets interleaved so that
/// rows are not created in report order.
fn write_pcap(path: &Path) {
    let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut t = 0u32;
    for round in 0..7 {
        for (sport, packets, len) in FLOWS {
            if round < packets {
                t += 1;
                out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
                out.extend_from_slice(&t.to_le_bytes());
                out.extend_from_slice(&(len as u32).to_le_bytes());
                out.extend_from_slice(&(len as u32).to_le_bytes());
                out.extend_from_slice(&frame(sport, len));
            }
        }
    }
    std::fs::write(path, out).unwrap();
}

fn input(dir: &TempDir) -> PathBuf {
    let p = dir.path("in.pcap");
    write_pcap(&p);
    p
}

fn replay_stats(input: &Path, out: &Path, extra: &[&str]) -> Value {
    run_ok(
        dropscope()
            .arg("replay")
            .arg(input)
            .args(["-q", "--stats-json"])
            .arg(out)
            .args(extra),
    );
    read_json(out)
}

fn sports(v: &Value) -> Vec<u64> {
    v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["sport"].as_u64().unwrap())
        .collect()
}

#[test]
fn stats_flows_keeps_the_top_rows_in_order_and_counts_the_rest() {
    let dir = TempDir::new("statsflows");
    let input = input(&dir);
    let all = replay_stats(&input, &dir.path("all.json"), &[]);
    assert_eq!(sports(&all), ORDER);
    let packets: Vec<u64> = all["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(packets, [7, 5, 5, 5, 3, 2, 2, 1]);
    assert_eq!(all["flows"][1]["bytes"], 350);
    assert_eq!(all["flows"][2]["bytes"], 300);
    assert_eq!(
        all["flow_table"],
        serde_json::json!({"entries": 8, "overflowed_keys": 0, "overflowed_packets": 0,
                           "rows_written": 8, "rows_omitted": 0})
    );
    assert_eq!(all["accounting"]["totals"]["processed"], 30);

    let top3 = replay_stats(&input, &dir.path("top3.json"), &["--stats-flows", "3"]);
    assert_eq!(
        top3["flows"].as_array().unwrap()[..],
        all["flows"].as_array().unwrap()[..3]
    );
    assert_eq!(top3["flow_table"]["entries"], 8);
    assert_eq!(top3["flow_table"]["rows_written"], 3);
    assert_eq!(top3["flow_table"]["rows_omitted"], 5);
    // Leaving rows out of the document changes no count.
    assert_eq!(top3["accounting"], all["accounting"]);

    let none = replay_stats(&input, &dir.path("none.json"), &["--stats-flows", "0"]);
    assert_eq!(none["flows"], serde_json::json!([]));
    assert_eq!(none["flow_table"]["rows_written"], 0);
    assert_eq!(none["flow_table"]["rows_omitted"], 8);

    for n in ["all", "8", "100"] {
        let v = replay_stats(&input, &dir.path("n.json"), &["--stats-flows", n]);
        assert_eq!(v["flows"], all["flows"], "--stats-flows {n}");
        assert_eq!(v["flow_table"], all["flow_table"], "--stats-flows {n}");
    }
    // Only the documents remain: no FILE.tmp.
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["all.json", "in.pcap", "n.json", "none.json", "top3.json"]
    );
}

#[test]
fn stats_json_to_stdout_is_written_in_place() {
    let dir = TempDir::new("statsstdout");
    let input = input(&dir);
    let out = run_ok(dropscope().arg("replay").arg(&input).args([
        "-q",
        "--stats-json",
        "/dev/stdout",
        "--stats-flows",
        "2",
    ]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sports(&v), ORDER[..2]);
    assert_eq!(v["flow_table"]["rows_omitted"], 6);
    // The summary still goes to stderr, with the top flows.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("8 flows x reasons; top 8:"), "{err}");
}

#[test]
fn stats_json_into_a_fifo_keeps_the_fifo() {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = TempDir::new("statsfifo");
    let input = input(&dir);
    let fifo = dir.path("stats.fifo");
    sh(&["mkfifo", fifo.to_str().unwrap()]);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    run_ok(
        dropscope()
            .arg("replay")
            .arg(&input)
            .args(["-q", "--stats-json"])
            .arg(&fifo),
    );
    let v: Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert_eq!(sports(&v), ORDER);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(!dir.path("stats.fifo.tmp").exists());
}

#[test]
fn bad_stats_flows_values_are_one_line_errors() {
    let dir = TempDir::new("statsbad");
    let input = input(&dir);
    let inp = input.to_str().unwrap();
    let out = dir.path("s.json");
    let out = out.to_str().unwrap();
    for bad in [
        "abc",
        "-1",
        "1.5",
        "+3",
        "",
        "ALL",
        "99999999999999999999999",
    ] {
        fails_with(
            &["replay", inp, "--stats-json", out, "--stats-flows", bad],
            &["--stats-flows"],
        );
    }
    fails_with(
        &["replay", inp, "--stats-json", out, "--stats-flows", "x"],
        &["a number of rows (0 or more) or `all`"],
    );
    fails_with(
        &[
            "replay",
            inp,
            "--stats-json",
            out,
            "--stats-flows",
            "99999999999999999999999",
        ],
        &["too many rows"],
    );
    fails_with(
        &["replay", inp, "--stats-flows", "5"],
        &["--stats-flows needs --stats-json"],
    );
    fails_with(
        &["capture", "--stats-flows", "5"],
        &["--stats-flows needs --stats-json"],
    );
    assert!(!dir.path("s.json").exists());
    assert!(!dir.path("s.json.tmp").exists());
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = TempDir::new("statsfail");
    let input = input(&dir);
    let inp = input.to_str().unwrap();
    // Written in place (a device) and full: the error is reported, in one line.
    if Path::new("/dev/full").exists() {
        fails_with(
            &["replay", inp, "-q", "--stats-json", "/dev/full"],
            &["writing /dev/full", "No space left"],
        );
    }
    // The temporary file is written, then cannot be renamed over a directory: it is removed.
    let target = dir.path("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    fails_with(
        &[
            "replay",
            inp,
            "-q",
            "--stats-json",
            target.to_str().unwrap(),
        ],
        &["writing", "taken"],
    );
    assert!(!dir.path("taken.tmp").exists());
    assert!(target.join("keep").exists());
}
