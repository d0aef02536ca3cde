//! End to end against a real Go program playing Cilium's agent
//! (testdata/cilium-agent-sim/main.go, built here with the system's `go`, no network):
//! it writes the monitor socket with Go's own `encoding/gob`, restarts as a new process
//! (new stream, other type ids) after cutting a message in half, and prints the exact
//! summary of what it sent, which the decoded stream must match exactly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use engine::cilium_socket::gob::{Frame, GobStream, Value};
use engine::cilium_socket::payload::decode_l7;
use engine::cilium_socket::record::{replay_gobstream, GobStreamReader};
use engine::cilium_socket::{
    CiliumSocketSource, GobStreamRecorder, MonitorMessage, SocketConfig, SocketStats,
};

fn tmp_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cilium-agent-sim");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds the simulator once; `None` (with the reason printed) when `go` is missing.
fn sim_binary() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        engine::cilium_socket::agent_sim::build(&tmp_dir())
            .map_err(|why| eprintln!("skipping: {why}"))
            .ok()
    })
    .as_deref()
}

/// Runs `source` until `want` payloads arrived (or 60 s passed), collecting them.
fn collect(source: &mut CiliumSocketSource, want: u64) -> (Vec<MonitorMessage>, SocketStats) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::Relaxed) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut msgs: Vec<MonitorMessage> = Vec::new();
    let stats = source
        .run(
            &mut |batch| {
                msgs.extend_from_slice(batch);
                if msgs.len() as u64 >= want {
                    stop.store(true, Ordering::Relaxed);
                }
            },
            &stop,
        )
        .unwrap();
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    (msgs, stats)
}

fn u(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no {key}: {v}"))
}

#[test]
fn go_agent_sim_two_processes_exact_counts_and_replay() {
    let Some(bin) = sim_binary() else { return };
    let dir = tmp_dir();
    let sock = dir.join(format!("monitor-{}.sock", std::process::id()));
    let rec_path = dir.join(format!("session-{}.gobstream", std::process::id()));
    let mut child = Command::new(bin)
        .arg("-socket")
        .arg(&sock)
        .args([
            "-phases",
            "2",
            "-drops",
            "3000",
            "-each",
            "6",
            "-cut-partial",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let want: serde_json::Value = serde_json::from_str(&line).expect("summary JSON");
    let payloads = u(&want, "payloads");

    let mut cfg = SocketConfig::new(&sock);
    cfg.backoff_initial = Duration::from_millis(50);
    let mut source =
        CiliumSocketSource::new(cfg).with_recorder(GobStreamRecorder::create(&rec_path).unwrap());
    let (msgs, stats) = collect(&mut source, payloads);
    let status = child.wait().unwrap();
    assert!(status.success(), "simulator exited with {status}");

    // Connections: the agent "restarted" once.
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.disconnects, 1);
    let s = &stats.stream;
    assert_eq!(s.payloads, payloads);
    assert_eq!(msgs.len() as u64, payloads);
    // Samples per message type, and their exact byte totals.
    let mut bytes_by_type = [0u64; 8];
    for m in &msgs {
        if let MonitorMessage::Sample { data, .. } = m {
            bytes_by_type[usize::from(data[0])] += data.len() as u64;
        }
    }
    for (t, (&count, &bytes)) in s
        .samples_by_type
        .iter()
        .zip(&bytes_by_type)
        .enumerate()
        .skip(1)
    {
        let key = t.to_string();
        assert_eq!(count, want["samples"][&key].as_u64().unwrap(), "type {t}");
        assert_eq!(
            bytes,
            want["sample_bytes"][&key].as_u64().unwrap(),
            "type {t}"
        );
    }
    assert_eq!(s.samples_by_type[1], 6000);
    // Lost records, including counts above 2^32 and an all-zero one.
    assert_eq!(s.lost_records, u(&want, "lost_records"));
    assert_eq!(s.lost_records, 10);
    assert_eq!(s.lost_total, u(&want, "lost_total"));
    assert_eq!(
        s.lost_total,
        2 * (1 + 7 + (1u64 << 33) + 5 + 0xFFFF_FFFF_FFFF)
    );
    // Agent notifications, in order, with type and text.
    let agents: Vec<(u64, String)> = msgs
        .iter()
        .filter_map(|m| match m {
            MonitorMessage::Agent { kind, text } => Some((u64::from(*kind), text.clone())),
            _ => None,
        })
        .collect();
    let want_agents: Vec<(u64, String)> = want["agent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["type"].as_u64().unwrap(),
                a["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(agents, want_agents);
    assert_eq!(s.agent, 11);
    assert_eq!(s.agent_undecodable, 0);
    assert!(agents.contains(&(1, "{\"message\":\"héllo\"}".to_string())));
    // L7 records: counted, and their inner gob (nested structs, a map, *url.URL, an
    // interface with an inline type definition) decodes.
    assert_eq!(s.l7, u(&want, "l7"));
    assert_eq!(s.l7_undecodable, 0);
    let l7 = msgs
        .iter()
        .find_map(|m| match m {
            MonitorMessage::L7 { data, .. } => Some(data.clone()),
            _ => None,
        })
        .unwrap();
    let rec = decode_l7(&l7[1..]).unwrap();
    assert_eq!(rec.field("Verdict"), Some(&Value::String("Denied".into())));
    let http = rec.field("HTTP").unwrap();
    assert_eq!(http.field("Code"), Some(&Value::Int(403)));
    assert_eq!(
        http.field("URL"),
        Some(&Value::Encoded(b"http://svc.default:8080/api?x=0".to_vec()))
    );
    match rec.field("Meta") {
        Some(Value::Interface(Some(b))) => assert_eq!(b.0, "main.L7Meta"),
        other => panic!("Meta: {other:?}"),
    }
    assert_eq!(s.unknown, u(&want, "unknown"));
    assert_eq!(s.unknown, 8);
    // By Payload.Type: 9 for samples/agent/L7, 2 for lost, one Type 99 per phase.
    assert_eq!(s.other_payload_types, 2);
    assert_eq!(s.event_samples, payloads - s.lost_records - 2);
    eprintln!("{stats}");
    // Nothing malformed; the message cut in half at the restart is counted as truncated.
    assert_eq!(s.malformed_total(), 0, "{:?}", s.malformed);
    assert_eq!(s.streams_abandoned, 0);
    assert_eq!(s.truncated_at_close, u(&want, "cut_partial"));
    assert_eq!(s.truncated_at_close, 1);

    // The recording replays to the very same messages and counters.
    let mut reader = GobStreamReader::open(&rec_path).unwrap();
    let mut replayed: Vec<MonitorMessage> = Vec::new();
    let rstats = replay_gobstream(&mut reader, 16 << 20, &mut |b| {
        replayed.extend_from_slice(b)
    })
    .unwrap();
    assert_eq!(replayed, msgs);
    assert_eq!(rstats.stream, stats.stream);
    assert_eq!((rstats.connections, rstats.reconnects), (2, 1));

    // Each connection defined Payload under the id its process gave it (65, then 68).
    let mut reader = GobStreamReader::open(&rec_path).unwrap();
    let mut conns: Vec<Vec<u8>> = Vec::new();
    while let Some(c) = reader.next_chunk().unwrap() {
        if c.new_connection || conns.is_empty() {
            conns.push(Vec::new());
        }
        conns.last_mut().unwrap().extend_from_slice(c.data);
    }
    let ids: Vec<u64> = conns
        .iter()
        .map(|bytes| {
            let mut g = GobStream::default();
            let mut off = 0;
            while let Ok(Some((f, n))) = g.next_frame(&bytes[off..]) {
                off += n;
                if matches!(f, Frame::Value { .. }) {
                    break;
                }
            }
            g.types().find_struct("Payload").unwrap() as u64
        })
        .collect();
    let want_ids: Vec<u64> = want["payload_type_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, want_ids);
    assert_eq!(ids, vec![65, 68]);
    let _ = std::fs::remove_file(&rec_path);
}

#[test]
fn go_agent_sim_flood_decodes_every_payload() {
    let Some(bin) = sim_binary() else { return };
    let dir = tmp_dir();
    let sock = dir.join(format!("flood-{}.sock", std::process::id()));
    let n = 50_000u64;
    let mut child = Command::new(bin)
        .arg("-socket")
        .arg(&sock)
        .args(["-flood", &n.to_string(), "-sample-len", "100"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("\"mode\":\"flood\""), "{line}");
    let mut cfg = SocketConfig::new(&sock);
    cfg.quiet = true;
    let mut source = CiliumSocketSource::new(cfg);
    let (msgs, stats) = collect(&mut source, n);
    line.clear();
    out.read_line(&mut line).unwrap();
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(u(&report, "payloads"), n);
    assert_eq!(stats.stream.payloads, n);
    assert_eq!(stats.stream.samples_by_type[1], n);
    assert_eq!(stats.stream.bytes, u(&report, "bytes"));
    assert!(msgs
        .iter()
        .all(|m| matches!(m, MonitorMessage::Sample { data, .. } if data.len() == 100)));
    eprintln!(
        "go sim flood: {:.0} payloads/s sent (with this test's debug-build reader)",
        report["payloads_per_sec"].as_f64().unwrap_or(0.0)
    );
}
