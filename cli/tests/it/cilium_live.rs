//! The Cilium source end to end: a real Go program writes Cilium's `Payload` stream with
//! Go's own `encoding/gob` to a Unix socket, as the agent does (two agent processes, i.e. a
//! restart mid-session, with different gob type ids); the built `dropscope` binary decodes
//! it. Every event, lost record and agent notice must be accounted for exactly, in the JSON
//! lines, the stats, the pcapng (read by tshark) and the replays of the saved stream and of
//! the pcapng. Skipped (with the reason printed) when `go` is not installed.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

fn build_sim(dir: &Path) -> Option<PathBuf> {
    engine::cilium_socket::agent_sim::build(dir)
        .map_err(|why| eprintln!("SKIPPED: {why}"))
        .ok()
}

/// Starts the simulated agent on `sock`; returns it and the summary it prints once listening.
fn start_agent(sim: &Path, sock: &Path, args: &[&str]) -> (std::process::Child, serde_json::Value) {
    let mut agent = Command::new(sim)
        .arg("-socket")
        .arg(sock)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start simulator");
    let mut line = String::new();
    std::io::BufReader::new(agent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (
        agent,
        serde_json::from_str(&line).expect("simulator summary"),
    )
}

fn rows_by_reason(stats: &serde_json::Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = stats["accounting"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["delivered"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn go_gob_agent_stream_is_decoded_and_accounted_exactly() {
    let dir = TempDir::new("cilium");
    let Some(sim) = build_sim(&dir.0) else { return };
    let sock = dir.path("monitor1_2.sock");
    let (mut agent, want) = start_agent(
        &sim,
        &sock,
        &["-phases", "2", "-drops", "400", "-each", "5"],
    );
    let samples: u64 = want["samples"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let drops = want["samples"]["1"].as_u64().unwrap();

    let (stats, pcapng, stream, lines) = (
        dir.path("s.json"),
        dir.path("c.pcapng"),
        dir.path("c.gobstream"),
        dir.path("events.jsonl"),
    );
    let cap = LiveCapture::start_to(
        &[
            "--source",
            "cilium",
            "--cilium-socket",
            sock.to_str().unwrap(),
            "--json",
            "--stats-json",
            stats.to_str().unwrap(),
            "-w",
            pcapng.to_str().unwrap(),
            "--save-stream",
            stream.to_str().unwrap(),
        ],
        Stdio::from(std::fs::File::create(&lines).unwrap()),
    );
    assert!(agent.wait().unwrap().success(), "simulator failed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    assert!(
        err.contains("reconnect"),
        "a restart of the agent must be said on stderr: {err}"
    );

    // JSON lines: every sample as an event of its type, every notice in the stream.
    let text = std::fs::read_to_string(&lines).unwrap();
    let objs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let count =
        |f: &dyn Fn(&serde_json::Value) -> bool| objs.iter().filter(|o| f(o)).count() as u64;
    for (t, name) in [
        (1, "drop"),
        (2, "debug"),
        (3, "debug_capture"),
        (4, "trace"),
        (5, "policy_verdict"),
        (6, "recorder_capture"),
        (7, "trace_sock"),
    ] {
        let n = count(&|o| o["origin"] == "cilium" && o["cilium"]["type"] == name);
        assert_eq!(
            n,
            want["samples"][t.to_string()].as_u64().unwrap(),
            "events of type {name}"
        );
    }
    let lost: Vec<&serde_json::Value> = objs.iter().filter(|o| o["type"] == "lost").collect();
    assert_eq!(lost.len() as u64, want["lost_records"].as_u64().unwrap());
    assert_eq!(
        lost.iter()
            .map(|o| o["lost"].as_u64().unwrap())
            .sum::<u64>(),
        want["lost_total"].as_u64().unwrap()
    );
    assert_eq!(
        count(&|o| o["type"] == "agent"),
        want["agent"].as_array().unwrap().len() as u64
    );
    assert_eq!(count(&|o| o["type"] == "l7"), want["l7"].as_u64().unwrap());
    assert_eq!(
        count(&|o| o["type"] == "unknown"),
        want["unknown"].as_u64().unwrap()
    );

    // Stats: everything delivered was processed, the agent's lost records are in the ledger.
    let s = read_json(&stats);
    assert_eq!(s["accounting"]["reconciled"], true);
    assert_eq!(s["accounting"]["totals"]["delivered"], samples);
    assert_eq!(s["accounting"]["totals"]["processed"], samples);
    let agent_lost = s["accounting"]["stage_losses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "perf_ring_lost_records")
        .expect("lost records in the ledger")["count"]
        .clone();
    assert_eq!(agent_lost, want["lost_total"]);
    let denied: u64 = s["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["reason_name"] == "Policy denied")
        .map(|f| f["packets"].as_u64().unwrap())
        .sum();
    assert!(denied > 0, "the drop samples include Policy denied (133)");
    assert!(s["flows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["reason_name"] == "Policy denied" && f["src_identity"] == 12345));

    // pcapng: one packet per event, the drop comment on every drop, read by stock tshark.
    if tshark_available() {
        assert_eq!(tshark_count(&pcapng, "frame"), samples as usize);
        assert_eq!(
            tshark_count(
                &pcapng,
                "frame.comment contains \"DROP Policy denied (133) identity 12345->\""
            ),
            denied as usize
        );
        assert!(tshark_count(&pcapng, "frame.comment contains \"DROP \"") as u64 >= drops);
    }

    // Replaying the saved socket stream gives the same ledger and the same flow table.
    let rs = dir.path("r.json");
    run_ok(dropscope().args([
        "replay",
        stream.to_str().unwrap(),
        "-q",
        "--stats-json",
        rs.to_str().unwrap(),
    ]));
    let r = read_json(&rs);
    assert_eq!(rows_by_reason(&r), rows_by_reason(&s));
    assert_eq!(
        r["accounting"]["stage_losses"],
        s["accounting"]["stage_losses"]
    );
    let key = |f: &serde_json::Value| {
        format!(
            "{} {} {} {}",
            f["reason_name"], f["src"], f["src_identity"], f["packets"]
        )
    };
    let mut a: Vec<String> = s["flows"].as_array().unwrap().iter().map(key).collect();
    let mut b: Vec<String> = r["flows"].as_array().unwrap().iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Replaying the pcapng recovers the Cilium drops (reason and identities) from the comments.
    let rp = dir.path("p.json");
    run_ok(dropscope().args([
        "replay",
        pcapng.to_str().unwrap(),
        "-q",
        "--stats-json",
        rp.to_str().unwrap(),
    ]));
    let p = read_json(&rp);
    let denied_replayed: u64 = p["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["reason_name"] == "Policy denied" && f["origin"] == "cilium")
        .map(|f| f["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(denied_replayed, denied);
}

#[test]
fn missing_socket_is_one_clear_error() {
    let out = dropscope()
        .args([
            "capture",
            "--source",
            "cilium",
            "--cilium-socket",
            "/nonexistent/monitor.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/monitor.sock") && err.contains("--cilium-socket"),
        "{err}"
    );
}

#[test]
fn kernel_and_cilium_drops_in_one_capture_one_file_one_table() {
    require_root!();
    let dir = TempDir::new("joint");
    let Some(sim) = build_sim(&dir.0) else { return };
    let sock = dir.path("monitor1_2.sock");
    let (mut agent, want) = start_agent(
        &sim,
        &sock,
        &["-phases", "1", "-drops", "300", "-each", "2"],
    );
    let samples: u64 = want["samples"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();

    let ns = NetnsPair::new();
    let (stats, pcapng) = (dir.path("s.json"), dir.path("j.pcapng"));
    let cap = LiveCapture::start(&[
        "--source",
        "kernel,cilium",
        "--cilium-socket",
        sock.to_str().unwrap(),
        "-q",
        "--stats-json",
        stats.to_str().unwrap(),
        "-w",
        pcapng.to_str().unwrap(),
    ]);
    const N: usize = 250;
    ns.send_udp(false, 40007, 9, N, 20);
    assert!(agent.wait().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");

    let s = read_json(&stats);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    let k = flow_rows(&s, &ns.ip4_a.to_string(), &ns.ip4_b.to_string(), 40007, 9);
    assert_eq!(k.len(), 1);
    assert_eq!(
        (
            k[0]["origin"].as_str(),
            k[0]["reason_name"].as_str(),
            k[0]["packets"].as_u64()
        ),
        (Some("kernel"), Some("NO_SOCKET"), Some(N as u64))
    );
    let cilium_delivered: u64 = s["accounting"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["origin"] == "cilium")
        .map(|r| r["delivered"].as_u64().unwrap())
        .sum();
    assert_eq!(cilium_delivered, samples);
    assert!(
        s["source"].as_str().unwrap().contains(" + "),
        "{}",
        s["source"]
    );
    if tshark_available() {
        let kf = format!(
            "frame.comment contains \"NO_SOCKET\" && udp.srcport == 40007 && ip.src == {}",
            ns.ip4_a
        );
        assert_eq!(tshark_count(&pcapng, &kf), N);
        assert!(tshark_count(&pcapng, "frame.comment contains \"DROP Policy denied\"") > 0);
    }
}

/// Selectors and an expression on Cilium events (the Go agent's stream): live with
/// `--from-identity`, and replays of the saved stream with `--reason` and an expression,
/// each against the unselected replay's flow table.
#[test]
fn identity_reason_and_expression_select_cilium_events() {
    let dir = TempDir::new("cilium-select");
    let Some(sim) = build_sim(&dir.0) else { return };
    let sock = dir.path("monitor1_2.sock");
    let (mut agent, _) = start_agent(
        &sim,
        &sock,
        &["-phases", "1", "-drops", "300", "-each", "3"],
    );
    let (live, stream) = (dir.path("live.json"), dir.path("s.gobstream"));
    let cap = LiveCapture::start(&[
        "--source",
        "cilium",
        "--cilium-socket",
        sock.to_str().unwrap(),
        "-q",
        "--stats-json",
        live.to_str().unwrap(),
        "--save-stream",
        stream.to_str().unwrap(),
        "--from-identity",
        "12345",
    ]);
    assert!(agent.wait().unwrap().success(), "simulator failed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");

    let replay = |tag: &str, args: &[&str]| -> serde_json::Value {
        let j = dir.path(&format!("{tag}.json"));
        run_ok(
            dropscope()
                .args(["replay", "-q", "--stats-json"])
                .arg(&j)
                .arg(&stream)
                .args(args),
        );
        read_json(&j)
    };
    let all = replay("all", &[]);
    let packets = |s: &serde_json::Value, f: &dyn Fn(&serde_json::Value) -> bool| -> u64 {
        s["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| f(r))
            .map(|r| r["packets"].as_u64().unwrap())
            .sum()
    };
    let total = packets(&all, &|_| true);
    let from = packets(&all, &|r| r["src_identity"] == 12345);
    assert!(
        from > 0 && from < total,
        "{from} of {total}: {}",
        all["flows"]
    );

    let s = read_json(&live);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    assert_eq!(packets(&s, &|_| true), from, "{err}");
    assert_eq!(packets(&s, &|r| r["src_identity"] != 12345), 0);
    assert_eq!(s["accounting"]["totals"]["filtered_user"], total - from);

    let icmp = packets(&all, &|r| {
        r["reason_name"] != "Policy denied" && r["proto_name"] == "icmp"
    });
    let denied = packets(&all, &|r| r["reason_name"] == "Policy denied");
    assert!(icmp > 0 && denied > 0, "{icmp} {denied}");
    let e = replay("e", &["--not-reason", "policy denied", "icmp"]);
    assert_eq!(e["accounting"]["reconciled"], true);
    assert_eq!(packets(&e, &|_| true), icmp);
    assert_eq!(e["accounting"]["totals"]["filtered_user"], total - icmp);
    let not = replay("not", &["--not-reason", "DROP_POLICY"]);
    assert_eq!(packets(&not, &|_| true), total - denied);
    let to = replay("to", &["--to-identity", "12345"]);
    assert_eq!(
        packets(&to, &|_| true),
        packets(&all, &|r| r["dst_identity"] == 12345)
    );
}

#[test]
fn top_counts_the_agents_events_as_capture_does_and_its_lost_records() {
    let dir = TempDir::new("cilium-top");
    let Some(sim) = build_sim(&dir.0) else { return };
    let args = ["-phases", "1", "-drops", "300", "-each", "3"];
    // The same stream twice: once into capture's stats, once into top.
    let sock = dir.path("monitor1_2.sock");
    let stats = dir.path("s.json");
    let (mut agent, want) = start_agent(&sim, &sock, &args);
    let cap = LiveCapture::start(&[
        "-q",
        "--no-names",
        "--no-datapath",
        "--source",
        "cilium",
        "--cilium-socket",
        sock.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert!(agent.wait().unwrap().success(), "simulator failed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    let s = read_json(&stats);
    let _ = std::fs::remove_file(&sock);

    let (mut agent, _) = start_agent(&sim, &sock, &args);
    let out = plain_top(
        &[
            "--source",
            "cilium",
            "--cilium-socket",
            sock.to_str().unwrap(),
        ],
        || assert!(agent.wait().unwrap().success(), "simulator failed"),
    );
    let last = last_block(&out);

    // Every reason's count is the one capture's ledger processed.
    let ledger: std::collections::BTreeMap<String, u64> = s["accounting"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap();
            // The ledger names Cilium drop codes "cilium NAME (CODE)"; top says NAME.
            let short = name
                .strip_prefix("cilium ")
                .filter(|n| n.ends_with(')'))
                .and_then(|n| n.rsplit_once(" ("))
                .map_or(name.to_string(), |(n, _)| n.to_string());
            (short, r["processed"].as_u64().unwrap())
        })
        .collect();
    let top = reason_lines(last);
    assert_eq!(top, ledger, "{last}\n{s:#}");
    // Drops are the drop notifications' reasons (not traces, verdicts, ...).
    let drops: u64 = top
        .iter()
        .filter(|(n, _)| !n.starts_with("cilium "))
        .map(|(_, c)| c)
        .sum();
    assert!(drops >= want["samples"]["1"].as_u64().unwrap());
    assert!(last.contains(&format!("drops {drops} total")), "{last}");
    assert!(
        last.contains(&format!("cilium lost {}", want["lost_total"])),
        "{want}: {last}"
    );
}
