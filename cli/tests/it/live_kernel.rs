//! Root tests: real drops provoked between network namespaces this test creates, captured
//! by the real eBPF program through the built `dropscope` binary, checked in its stats JSON
//! and, through tshark/tcpdump, in the files it wrote. Skipped (with the reason printed)
//! when not root or the kernel lacks BTF.

use crate::common::*;

/// Captures while `provoke` runs; returns the stats JSON and stderr.
fn capture_around(
    extra: &[&str],
    stats: &std::path::Path,
    provoke: impl FnOnce(),
) -> (serde_json::Value, String) {
    let mut args: Vec<&str> = vec!["-q", "--stats-json", stats.to_str().unwrap()];
    args.extend_from_slice(extra);
    let cap = LiveCapture::start(&args);
    provoke();
    // Let the last drops reach the ring before stopping (stop itself drains what is there).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (st, err) = cap.stop();
    assert!(st.success(), "dropscope failed: {err}");
    (read_json(stats), err)
}

fn one_flow(
    stats: &serde_json::Value,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
) -> serde_json::Value {
    let rows = flow_rows(stats, src, dst, sport, dport);
    assert_eq!(
        rows.len(),
        1,
        "expected one row for {src}:{sport} -> {dst}:{dport}, got {rows:#?}"
    );
    rows[0].clone()
}

#[test]
fn udp_to_closed_port_ipv4_gives_exact_no_socket_drops_in_stats_and_pcapng() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("v4");
    let (pcapng, stats) = (dir.path("d.pcapng"), dir.path("s.json"));
    const N: usize = 300;
    let (s, err) = capture_around(&["-w", pcapng.to_str().unwrap()], &stats, || {
        ns.send_udp(false, 40001, 9, N, 20)
    });
    let f = one_flow(&s, &ns.ip4_a.to_string(), &ns.ip4_b.to_string(), 40001, 9);
    assert_eq!(f["reason_name"], "NO_SOCKET");
    assert_eq!(f["origin"], "kernel");
    assert_eq!(f["packets"], N as u64);
    // Ethernet 14 + IPv4 20 + UDP 8 + 20 bytes of payload.
    assert_eq!(f["bytes"], (N * 62) as u64);
    assert_eq!(f["proto_name"], "udp");
    assert_eq!(
        f["netns"],
        ns.inode(&ns.b) as u64,
        "drop happens in the receiving namespace"
    );
    assert_eq!(f["ifindex"], ns.ifindex(&ns.b, &ns.veth_b) as u64);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    let row = s["accounting"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "NO_SOCKET")
        .unwrap()
        .clone();
    assert!(row["observed"].as_u64().unwrap() >= N as u64);
    assert_eq!(
        row["observed"].as_u64().unwrap(),
        row["lost_ring"].as_u64().unwrap() + row["delivered"].as_u64().unwrap()
    );
    // The file, read by stock tshark: the same packets, with the reason in the comment.
    if tshark_available() {
        let filter = format!(
            "frame.comment contains \"NO_SOCKET\" && ip.src == {} && ip.dst == {} && udp.srcport == 40001 && udp.dstport == 9",
            ns.ip4_a, ns.ip4_b
        );
        assert_eq!(tshark_count(&pcapng, &filter), N);
        assert_eq!(
            tshark_count(
                &pcapng,
                &format!("{filter} && frame.len == 62 && frame.cap_len == 62")
            ),
            N
        );
    }
    assert!(
        !dir.path("d.pcapng.tmp").exists(),
        "temporary file left behind"
    );
}

#[test]
fn udp_to_closed_port_ipv6_gives_exact_no_socket_drops() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("v6");
    let (pcapng, stats) = (dir.path("d.pcapng"), dir.path("s.json"));
    const N: usize = 150;
    let (s, err) = capture_around(&["-w", pcapng.to_str().unwrap()], &stats, || {
        ns.send_udp(true, 40002, 9, N, 20)
    });
    let f = one_flow(&s, &ns.ip6_a.to_string(), &ns.ip6_b.to_string(), 40002, 9);
    assert_eq!(f["reason_name"], "NO_SOCKET");
    assert_eq!(f["family"], "ipv6");
    assert_eq!(f["packets"], N as u64);
    // Ethernet 14 + IPv6 40 + UDP 8 + 20.
    assert_eq!(f["bytes"], (N * 82) as u64);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    if tshark_available() {
        let filter = format!(
            "frame.comment contains \"NO_SOCKET\" && ipv6.src == {} && ipv6.dst == {} && udp.srcport == 40002",
            ns.ip6_a, ns.ip6_b
        );
        assert_eq!(tshark_count(&pcapng, &filter), N);
    }
}

#[test]
fn tc_ingress_drop_is_reported_as_tc_ingress() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("tc");
    let stats = dir.path("s.json");
    let shot = match engine::kernel::testing::TcShot::attach(&ns.b, &ns.veth_b) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: cannot attach the tc program: {e}");
            return;
        }
    };
    const N: usize = 120;
    let (s, err) = capture_around(&[], &stats, || ns.send_udp(false, 40003, 7000, N, 32));
    drop(shot);
    let f = one_flow(
        &s,
        &ns.ip4_a.to_string(),
        &ns.ip4_b.to_string(),
        40003,
        7000,
    );
    assert_eq!(f["reason_name"], "TC_INGRESS");
    assert_eq!(f["packets"], N as u64);
    assert_eq!(f["bytes"], (N * 74) as u64);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
}

#[test]
fn nftables_drop_rule_is_reported_as_netfilter_drop() {
    require_root!();
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: nft not installed");
        return;
    }
    let ns = NetnsPair::new();
    let dir = TempDir::new("nft");
    let stats = dir.path("s.json");
    sh(&[
        "ip", "netns", "exec", &ns.b, "nft",
        "add table inet dstest; add chain inet dstest input { type filter hook input priority 0; }; add rule inet dstest input udp dport 7777 drop",
    ]);
    const N: usize = 90;
    let (s, err) = capture_around(&[], &stats, || ns.send_udp(false, 40004, 7777, N, 10));
    let f = one_flow(
        &s,
        &ns.ip4_a.to_string(),
        &ns.ip4_b.to_string(),
        40004,
        7777,
    );
    assert_eq!(f["reason_name"], "NETFILTER_DROP");
    assert_eq!(f["packets"], N as u64);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
}

/// SIGTERM (how Kubernetes and systemd stop a process) stops a capture as Ctrl-C does: the
/// file and the stats are finished and renamed, nothing is lost.
#[test]
fn sigterm_stops_cleanly_and_finishes_the_file() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("sigterm");
    let (pcapng, stats) = (dir.path("t.pcapng"), dir.path("t.json"));
    let cap = LiveCapture::start(&[
        "-q",
        "-w",
        pcapng.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    const N: usize = 100;
    ns.send_udp(false, 40009, 9, N, 20);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (st, err) = cap.stop_with(libc::SIGTERM);
    assert!(
        st.success(),
        "dropscope did not stop cleanly on SIGTERM ({st}): {err}"
    );
    assert!(err.contains("(interrupted)"), "{err}");
    assert!(!dir.path("t.pcapng.tmp").exists() && !dir.path("t.json.tmp").exists());
    let s = read_json(&stats);
    assert_eq!(s["stopped_by"], "interrupted");
    let f = one_flow(&s, &ns.ip4_a.to_string(), &ns.ip4_b.to_string(), 40009, 9);
    assert_eq!(f["packets"], N as u64);
    assert!(
        s["outputs"]["file"]["packets"].as_u64().unwrap() >= N as u64,
        "{err}"
    );
}

#[test]
fn count_limit_stops_and_replay_of_the_file_reproduces_per_flow_counts() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("replay");
    let (pcapng, stats, pcap) = (dir.path("d.pcapng"), dir.path("s.json"), dir.path("d.pcap"));
    const N: usize = 200;
    let (s, err) = capture_around(&["-w", pcapng.to_str().unwrap()], &stats, || {
        ns.send_udp(false, 40005, 9, N, 20);
        ns.send_udp(true, 40006, 9, N / 2, 20);
    });
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    let v4 = one_flow(&s, &ns.ip4_a.to_string(), &ns.ip4_b.to_string(), 40005, 9);
    let v6 = one_flow(&s, &ns.ip6_a.to_string(), &ns.ip6_b.to_string(), 40006, 9);

    // Replay: the same rows, with the same reasons, interfaces and namespaces.
    let rstats = dir.path("r.json");
    run_ok(dropscope().args([
        "replay",
        pcapng.to_str().unwrap(),
        "-q",
        "--stats-json",
        rstats.to_str().unwrap(),
        "-w",
        pcap.to_str().unwrap(),
    ]));
    let r = read_json(&rstats);
    let mut all_capture: Vec<_> = s["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(strip_times)
        .collect();
    let mut all_replay: Vec<_> = r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(strip_times)
        .collect();
    all_capture.sort_by_key(|v| v.to_string());
    all_replay.sort_by_key(|v| v.to_string());
    assert_eq!(
        all_capture, all_replay,
        "replay must reproduce every per-flow x reason row"
    );
    assert_eq!(
        one_flow(&r, &ns.ip4_a.to_string(), &ns.ip4_b.to_string(), 40005, 9)["packets"],
        v4["packets"]
    );
    assert_eq!(
        one_flow(&r, &ns.ip6_a.to_string(), &ns.ip6_b.to_string(), 40006, 9)["packets"],
        v6["packets"]
    );
    assert_eq!(r["accounting"]["reconciled"], true);

    // The classic pcap written by replay is read by tcpdump with every packet.
    let o = sh(&[
        "tcpdump",
        "-nr",
        pcap.to_str().unwrap(),
        &format!("udp and src host {} and src port 40005", ns.ip4_a),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), N);

    // Each drop's line names its drop site as the capture did (from the file's comments,
    // not this machine's symbols: replay never reads /proc/kallsyms), in text, JSON and
    // the comments of a file the replay writes.
    let o = run_ok(dropscope().args(["replay", pcapng.to_str().unwrap()]));
    let text = String::from_utf8_lossy(&o.stdout);
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("{}:40005 ->", ns.ip4_a)))
        .collect();
    assert_eq!(ours.len(), N);
    let sym = tshark_fields(&pcapng, "frame.comment", "udp.srcport == 40005");
    let sym = sym[0]
        .split(" at ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("symbol in the capture's comment")
        .to_string();
    assert!(sym.contains("+0x"), "{sym}");
    assert!(
        ours.iter()
            .all(|l| l.contains(&format!("xx drop (NO_SOCKET) at {sym}, "))),
        "{}",
        ours[0]
    );
    let o = run_ok(dropscope().args(["replay", pcapng.to_str().unwrap(), "--json"]));
    let json = String::from_utf8_lossy(&o.stdout);
    let j: serde_json::Value = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["sport"] == 40005)
        .unwrap();
    assert_eq!(j["symbol"], sym.as_str());
    let again = dir.path("again.pcapng");
    run_ok(dropscope().args([
        "replay",
        pcapng.to_str().unwrap(),
        "-q",
        "-w",
        again.to_str().unwrap(),
    ]));
    assert!(
        tshark_fields(&again, "frame.comment", "udp.srcport == 40005")
            .iter()
            .all(|c| c.contains(&format!(" at {sym} [0x"))),
        "the rewritten file keeps the symbols"
    );

    // -c: exactly COUNT processed, the rest of what was delivered counted as skipped.
    let c_stats = dir.path("c.json");
    run_ok(dropscope().args([
        "replay",
        pcapng.to_str().unwrap(),
        "-q",
        "-c",
        "50",
        "--stats-json",
        c_stats.to_str().unwrap(),
    ]));
    let c = read_json(&c_stats);
    let t = &c["accounting"]["totals"];
    assert_eq!(t["processed"], 50);
    assert_eq!(
        t["received"].as_u64().unwrap(),
        t["skipped"].as_u64().unwrap() + 50
    );
    assert_eq!(c["stopped_by"], "count reached");
    assert_eq!(c["accounting"]["reconciled"], true);
}

/// A flow row without members that legitimately differ between capture and replay.
fn strip_times(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        // Interface names: a live capture can name devices of its own namespace.
        m.remove("ifname");
    }
    v
}
