//! `dropscope replay` of text users already have: `cilium-dbg monitor -vv` text (here our own,
//! from the Go agent's gob stream), dropscope's `--json` lines, a ticket paste with prompts,
//! wrapped lines and colour codes, and Hubble flows; read from files and from standard input.
//! The packets, reasons and flow table must come back as the original capture had them, and
//! tshark must read the file and filter on the reasons.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

fn build_sim(dir: &Path) -> Option<PathBuf> {
    engine::cilium_socket::agent_sim::build(dir)
        .map_err(|why| eprintln!("SKIPPED: {why}"))
        .ok()
}

/// The flow table of a stats JSON as (src, dst, sport, dport, proto, reason, identities) ->
/// packets.
fn flows(s: &serde_json::Value) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for f in s["flows"].as_array().expect("flows") {
        let k = format!(
            "{} {} {} {} {} {} {} {}",
            f["src"],
            f["dst"],
            f["sport"],
            f["dport"],
            f["proto"],
            f["reason_name"],
            f["src_identity"],
            f["dst_identity"]
        );
        *m.entry(k).or_insert(0) += f["packets"].as_u64().unwrap();
    }
    m
}

/// `dropscope replay FILE --json`: its lines, each parsed (the run must succeed).
fn replay_json_lines(file: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(dropscope().arg("replay").arg(file).arg("--json"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

/// Each packet of a capture file: captured length, addresses and source port. (Not the wire
/// length: for a drop on an L3 device without packet bytes the text does not say the device
/// had no MAC header, which the original's file shows as 14 bytes more.)
fn packets(file: &Path) -> Vec<String> {
    let o = sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.cap_len",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "tcp.srcport",
        "-e",
        "udp.srcport",
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        // Records without packet bytes: the original file gives an L3 device's record the
        // 14-byte fake MAC header of its interface type, which the text cannot tell.
        .filter(|l| l.split('\t').nth(1).is_some_and(|ip| !ip.is_empty()))
        .map(str::to_string)
        .collect()
}

/// A live capture of the Go agent's stream, printed as `-vv` text and as JSON lines, with
/// its own pcapng and stats; then each text replayed (from a file and from stdin).
#[test]
fn monitor_vv_text_and_json_lines_give_back_the_capture() {
    if !tshark_available() {
        eprintln!("SKIPPED: no tshark");
        return;
    }
    let dir = TempDir::new("text-roundtrip");
    let Some(sim) = build_sim(&dir.0) else { return };
    let sock = dir.path("monitor1_2.sock");
    let stream = dir.path("s.gobstream");
    let mut agent = Command::new(&sim)
        .arg("-socket")
        .arg(&sock)
        .args(["-phases", "1", "-drops", "200", "-each", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start simulator");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(agent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let cap = LiveCapture::start(&[
        "--source",
        "cilium",
        "--cilium-socket",
        sock.to_str().unwrap(),
        "-q",
        "--save-stream",
        stream.to_str().unwrap(),
    ]);
    assert!(agent.wait().unwrap().success(), "simulator failed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");

    // The original: the saved stream replayed to pcapng + stats, drops only (-t drop), and
    // printed as -vv text and as JSON lines.
    let replay = |args: &[&str], stdout: Option<&Path>| -> String {
        let mut c = dropscope();
        c.arg("replay").args(args);
        if let Some(p) = stdout {
            c.stdout(std::fs::File::create(p).unwrap());
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {err}");
        err
    };
    let (orig_w, orig_s) = (dir.path("orig.pcapng"), dir.path("orig.json"));
    let s = stream.to_str().unwrap();
    replay(
        &[
            "-t",
            "drop",
            "-q",
            s,
            "-w",
            orig_w.to_str().unwrap(),
            "--stats-json",
            orig_s.to_str().unwrap(),
        ],
        None,
    );
    let text = dir.path("mon.txt");
    replay(&["-t", "drop", "-vv", s], Some(&text));
    let json = dir.path("ev.jsonl");
    replay(&["-t", "drop", "--json", s], Some(&json));
    let orig = read_json(&orig_s);
    let drops = orig["accounting"]["totals"]["processed"].as_u64().unwrap();
    assert!(drops >= 200, "{drops}");

    for (tag, input) in [("text", &text), ("json", &json)] {
        let (w, j) = (
            dir.path(&format!("{tag}.pcapng")),
            dir.path(&format!("{tag}.json")),
        );
        let err = replay(
            &[
                input.to_str().unwrap(),
                "-q",
                "-w",
                w.to_str().unwrap(),
                "--stats-json",
                j.to_str().unwrap(),
            ],
            None,
        );
        let back = read_json(&j);
        assert_eq!(back["accounting"]["reconciled"], true, "{tag}: {err}");
        assert_eq!(
            back["accounting"]["totals"]["processed"], drops,
            "{tag}: {err}"
        );
        assert_eq!(flows(&back), flows(&orig), "{tag}: {err}");
        assert_eq!(
            packets(&w),
            packets(&orig_w),
            "{tag}: packets differ: {err}"
        );
        for reason in ["Policy denied", "Invalid source ip"] {
            let filter = format!("frame.comment contains \"{reason}\"");
            assert_eq!(
                tshark_count(&w, &filter),
                tshark_count(&orig_w, &filter),
                "{tag}: {reason}"
            );
        }
    }
    // The text from standard input, as a kubectl exec pipe gives it.
    let j = dir.path("stdin.json");
    run_ok(
        dropscope()
            .args(["replay", "-", "-q", "--stats-json", j.to_str().unwrap()])
            .stdin(std::fs::File::open(&text).unwrap()),
    );
    assert_eq!(flows(&read_json(&j)), flows(&orig));
}

/// A 10,000-line ticket paste: prompts, banners, wrapped lines, colour codes and cut hex
/// dumps around monitor -vv records. Every whole record is recovered, every other line
/// counted, exit 0.
#[test]
fn a_messy_paste_recovers_every_record_and_counts_the_rest() {
    let dir = TempDir::new("text-paste");
    let gen = env!("CARGO_BIN_EXE_dropscope");
    let _ = gen;
    // 1,000 -vv drop records (7 lines each) from the bench generator's shape, written here.
    let mut paste = String::new();
    paste.push_str("$ kubectl -n kube-system exec ds/cilium -- cilium-dbg monitor -t drop -vv\n");
    paste.push_str("Listening for events on 2 CPUs with 64x4096 of shared memory\n");
    paste.push_str("Press Ctrl-C to quit\n");
    let mut good = 0u64;
    let mut noise = 0u64;
    let mut i = 0u32;
    while paste.lines().count() < 10_000 {
        i += 1;
        let colour = i.is_multiple_of(7);
        let sep = "------------------------------------------------------------------------------";
        let header = format!(
            "CPU 01: MARK {:#x} FROM 42 DROP: 54 bytes, reason Policy denied, identity 12345->world",
            i
        );
        let hex = [
            "00000000  02 33 45 67 89 ab 01 23  45 67 89 ab 08 00 45 00  |.3Eg...#Eg....E.|",
            "00000010  00 28 00 01 00 00 40 06  6a bc 01 02 03 04 05 06  |.(....@.j.......|",
            "00000020  07 08 00 50 01 bb 00 00  00 00 00 00 00 00 50 10  |...P..........P.|",
            "00000030  20 00 7d b6 00 00                                 | .}...|",
        ];
        paste.push_str(sep);
        paste.push('\n');
        if colour {
            paste.push_str(&format!("\x1b[1;31m{header}\x1b[0m\n"));
        } else {
            paste.push_str(&header);
            paste.push('\n');
        }
        for h in hex {
            paste.push_str(h);
            paste.push('\n');
        }
        good += 1;
        if i.is_multiple_of(10) {
            paste.push_str("user@laptop:~$ # and then it happened again\n");
            noise += 1;
        }
        if i.is_multiple_of(25) {
            paste.push_str("Received an interrupt, disconnecting from monitor...\n");
            noise += 1;
        }
    }
    let file = dir.path("paste.txt");
    std::fs::write(&file, &paste).unwrap();
    let j = dir.path("s.json");
    let w = dir.path("p.pcapng");
    let out = dropscope()
        .args([
            "replay",
            "-q",
            "-w",
            w.to_str().unwrap(),
            "--stats-json",
            j.to_str().unwrap(),
        ])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let s = read_json(&j);
    assert_eq!(s["accounting"]["totals"]["processed"], good, "{err}");
    let skipped: u64 = s["accounting"]["stage_losses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stage"] == "text")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    // The three banner lines and the noise lines.
    assert_eq!(skipped, noise + 3, "{err}");
    assert_eq!(
        tshark_count(&w, "frame.comment contains \"Policy denied\""),
        good as usize
    );
    let _ = std::io::stdout().flush();
}

/// A Hubble flow's endpoint labels go into its JSON line (as a live capture's identity labels
/// do) when the node's names do not know the identity; a flow without labels has none.
#[test]
fn hubble_labels_go_into_json_lines() {
    let lines = replay_json_lines(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/hubble/mixed.jsonl"),
    );
    let labelled: Vec<_> = lines
        .iter()
        .filter(|l| l.get("src_labels").is_some())
        .collect();
    assert_eq!(labelled.len(), 1, "{lines:?}");
    let l = labelled[0];
    assert_eq!(l["src_pod"], "shop/web-0");
    assert_eq!(
        l["src_labels"],
        serde_json::json!(["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"])
    );
    assert_eq!(l["dst_labels"], serde_json::json!(["k8s:app=pg"]));
    assert!(lines
        .iter()
        .all(|l| l.get("dst_labels").is_none() || l["src_pod"] == "shop/web-0"));
}

/// Hubble's exporter line (Cilium's documentation example): no packet bytes, so the flow
/// table only, unless --synthesize writes a packet built from its headers; the pods and the
/// node go into the comment, the time is the flow's.
#[test]
fn hubble_flows_go_to_the_table_and_with_synthesize_to_the_file() {
    if !tshark_available() {
        eprintln!("SKIPPED: no tshark");
        return;
    }
    let dir = TempDir::new("text-hubble");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/hubble/export-doc.jsonl");
    let run = |extra: &[&str], tag: &str| -> (serde_json::Value, PathBuf, String) {
        let (w, j) = (
            dir.path(&format!("{tag}.pcapng")),
            dir.path(&format!("{tag}.json")),
        );
        let out = dropscope()
            .arg("replay")
            .arg(&input)
            .args([
                "-q",
                "-w",
                w.to_str().unwrap(),
                "--stats-json",
                j.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (read_json(&j), w, err)
    };
    let (s, w, err) = run(&[], "plain");
    assert_eq!(s["accounting"]["totals"]["processed"], 1, "{err}");
    let f = &s["flows"][0];
    assert_eq!(
        (
            &f["src"],
            &f["dst"],
            &f["sport"],
            &f["dport"],
            &f["reason_name"]
        ),
        (
            &serde_json::json!("10.244.1.60"),
            &serde_json::json!("10.244.1.5"),
            &serde_json::json!(44916),
            &serde_json::json!(80),
            &serde_json::json!("Policy denied")
        ),
        "{err}"
    );
    assert_eq!(s["outputs"]["file"]["packets"], 0, "{err}");
    assert_eq!(s["outputs"]["synthesized_not_written"], 1, "{err}");
    assert!(err.contains("flow table only"), "{err}");

    // JSON lines carry the names Hubble gave.
    let lines = replay_json_lines(&input);
    let line = lines.first().expect("a JSON line");
    assert_eq!(line["src_pod"], "default/xwing");
    assert_eq!(line["dst_pod"], "default/deathstar-7848d6c4d5-th9v2");
    assert_eq!(line["node"], "kind-kind/kind-worker");

    let (s, w2, err) = run(&["--synthesize"], "synth");
    assert_eq!(s["outputs"]["file"]["packets"], 1, "{err}");
    let o = sh(&[
        "tshark",
        "-r",
        w2.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "tcp.flags.syn",
        "-e",
        "frame.comment",
    ]);
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    assert!(line.starts_with("1692619938.510175415"), "{line}");
    assert!(line.contains("Policy denied"), "{line}");
    assert!(
        line.contains("pods default/xwing->default/deathstar-7848d6c4d5-th9v2"),
        "{line}"
    );
    assert!(line.contains("node kind-kind/kind-worker"), "{line}");
    assert!(line.contains("synthesised"), "{line}");
    let _ = w;
}

/// The `THP_enabled` line of a running `dropscope replay -` (standard input held open), with
/// `DROPSCOPE_THP` set to `thp` when given; the replay then reads one Hubble flow and ends.
fn thp_line_of_a_running_replay(thp: Option<&str>) -> String {
    let mut cmd = dropscope();
    cmd.args(["replay", "-", "--input-format", "hubble", "-q"])
        .env_remove("DROPSCOPE_THP")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(v) = thp {
        cmd.env("DROPSCOPE_THP", v);
    }
    let mut child = cmd.spawn().unwrap();
    // Once the replay has started its threads, the program has long been loaded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        let s = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let threads = s
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if threads > 1 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replay never started:\n{s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            br#"{"flow":{"time":"2026-11-30T12:00:00Z","verdict":"DROPPED","IP":{"source":"10.0.0.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":1000,"destination_port":53}},"drop_reason_desc":"POLICY_DENIED"}}
"#,
        )
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 lines, 1 records"), "{err}");
    status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line in /proc/PID/status:\n{status}"))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// dropscope turns transparent huge pages off for itself as it loads (each thread's heap
/// would otherwise start with a zeroed 2 MiB page), unless `DROPSCOPE_THP=1`.
#[test]
fn the_process_runs_without_huge_pages_unless_asked() {
    assert_eq!(thp_line_of_a_running_replay(None), "0");
    assert_eq!(thp_line_of_a_running_replay(Some("0")), "0");
    assert_eq!(thp_line_of_a_running_replay(Some("1")), "1");
}
