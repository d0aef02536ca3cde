//! Bad input gets one line on stderr saying what is wrong and what to do, exit status 2, and
//! no half-written output.

use crate::common::*;

#[test]
fn not_a_capture_file() {
    let dir = TempDir::new("err");
    let p = dir.path("notes.txt");
    std::fs::write(&p, b"hello, this is not a capture\n").unwrap();
    fails_with(
        &["replay", p.to_str().unwrap()],
        &["notes.txt", "not a pcap or pcapng file"],
    );
    fails_with(
        &["replay", dir.path("missing.pcap").to_str().unwrap()],
        &["missing.pcap"],
    );
}

#[test]
fn out_of_range_and_contradictory_flags() {
    fails_with(&["capture", "-s", "0"], &["snap length 0", "-s 1..=2048"]);
    fails_with(&["capture", "-s", "100000"], &["snap length 100000"]);
    fails_with(&["capture", "--format", "pcap"], &["--format needs -w"]);
    fails_with(&["capture", "-c", "0"], &["-c 0"]);
    fails_with(&["capture", "--duration", "-1"], &["-1", "--help"]);
    fails_with(&["capture", "--duration", "0"], &["--duration 0"]);
    fails_with(
        &[
            "capture",
            "--source",
            "cilium",
            "--cilium-release",
            "0.9",
            "--cilium-socket",
            "/",
        ],
        &["0.9", "main, 1.19"],
    );
    fails_with(
        &["replay", "x", "-t", "bogus"],
        &["--type bogus is not a Cilium event type: use drop, debug, capture, trace, policy-verdict, recorder, trace-sock"],
    );
}

#[test]
fn unwritable_output_leaves_nothing_behind() {
    let dir = TempDir::new("err2");
    // A tiny valid pcap (no packets) to replay.
    let input = dir.path("in.pcap");
    let mut hdr = vec![0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0];
    hdr.extend_from_slice(&[0; 8]);
    hdr.extend_from_slice(&65535u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&input, &hdr).unwrap();
    let out = dir.path("no/such/dir/out.pcapng");
    fails_with(
        &[
            "replay",
            input.to_str().unwrap(),
            "-w",
            out.to_str().unwrap(),
        ],
        &["out.pcapng"],
    );
    fails_with(
        &[
            "replay",
            input.to_str().unwrap(),
            "--stats-json",
            dir.path("nope/s.json").to_str().unwrap(),
        ],
        &["s.json"],
    );
    assert!(
        std::fs::read_dir(&dir.0).unwrap().count() == 1,
        "only the input remains"
    );
    // The valid empty file replays fine, with a reconciled, empty summary.
    let s = dir.path("s.json");
    run_ok(dropscope().args([
        "replay",
        input.to_str().unwrap(),
        "-q",
        "--stats-json",
        s.to_str().unwrap(),
    ]));
    let v = read_json(&s);
    assert_eq!(v["accounting"]["reconciled"], true);
    assert_eq!(v["flows"].as_array().unwrap().len(), 0);
}

#[test]
fn missing_privileges_name_the_capabilities() {
    if !is_root()
        || std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("SKIPPED: needs root and setpriv to drop privileges");
        return;
    }
    // The build tree may sit below a directory `nobody` cannot enter: run a copy.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("priv");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path("dropscope");
    std::fs::copy(env!("CARGO_BIN_EXE_dropscope"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["capture", "-c", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
}
