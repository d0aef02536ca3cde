//! The Wireshark plugin (contrib/wireshark/dropscope.lua) with stock tshark: a live
//! capture of a known flood between namespaces this test creates (NO_SOCKET: UDP to a
//! closed port; NETFILTER_DROP: an nft drop rule), whose field filters select exactly the
//! drops of a reason and of a namespace, every field of every packet matching the capture's
//! own `--json` line for it and the stats JSON; a replayed fixture with Cilium identities
//! and pods; and the profile (contrib/wireshark/profile) loaded by tshark: columns and
//! colouring rules per drop family.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/wireshark/dropscope.lua")
}

const FIELDS: [&str; 21] = [
    "dropscope.origin",
    "dropscope.reason",
    "dropscope.code",
    "dropscope.family",
    "dropscope.location",
    "dropscope.address",
    "dropscope.netns",
    "dropscope.ifindex",
    "dropscope.src_identity",
    "dropscope.dst_identity",
    "dropscope.source",
    "dropscope.pod",
    "dropscope.src_pod",
    "dropscope.dst_pod",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "frame.comment",
];

/// tshark with the plugin: one map of FIELDS per packet that `filter` selects.
fn lua_rows(file: &Path, filter: &str) -> Vec<BTreeMap<&'static str, String>> {
    let mut args: Vec<String> = vec![
        "-X".into(),
        format!("lua_script:{}", plugin().display()),
        "-r".into(),
        file.display().to_string(),
        "-T".into(),
        "fields".into(),
        "-E".into(),
        "separator=|".into(),
        "-E".into(),
        "occurrence=f".into(),
    ];
    // Packets only (a file's custom blocks are records too).
    args.push("-Y".into());
    args.push(if filter.is_empty() {
        "frame.interface_id".into()
    } else {
        format!("frame.interface_id && ({filter})")
    });
    for f in FIELDS {
        args.push("-e".into());
        args.push(f.into());
    }
    let out = std::process::Command::new("tshark")
        .args(&args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark {args:?}: {err}");
    assert!(!err.contains("Lua: Error"), "{err}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            FIELDS
                .iter()
                .copied()
                .zip(l.split('|').map(str::to_string))
                .collect()
        })
        .collect()
}

/// Checks one packet's fields against its JSON line (from --json, same order as the file).
fn same_packet(row: &BTreeMap<&str, String>, j: &Value) {
    let s = |k: &str| row[k].as_str();
    let origin = j["origin"].as_str().unwrap();
    assert_eq!(s("dropscope.origin"), origin, "{row:?} {j}");
    assert_eq!(
        s("dropscope.reason"),
        j["reason_name"].as_str().unwrap(),
        "{row:?} {j}"
    );
    assert_eq!(s("dropscope.code"), j["reason"].to_string(), "{row:?} {j}");
    assert_eq!(
        s("dropscope.ifindex"),
        j["ifindex"].to_string(),
        "{row:?} {j}"
    );
    let v6 = j["family"] == "ipv6";
    let (src, dst) = if v6 {
        (s("ipv6.src"), s("ipv6.dst"))
    } else {
        (s("ip.src"), s("ip.dst"))
    };
    assert_eq!(src, j["src"].as_str().unwrap_or(""), "{row:?} {j}");
    assert_eq!(dst, j["dst"].as_str().unwrap_or(""), "{row:?} {j}");
    if j["proto"] == 17 && !s("udp.srcport").is_empty() {
        assert_eq!(s("udp.srcport"), j["sport"].to_string());
        assert_eq!(s("udp.dstport"), j["dport"].to_string());
    }
    if origin == "kernel" {
        assert_eq!(s("dropscope.netns"), j["netns"].to_string(), "{row:?} {j}");
        let loc = j["location"].as_str().unwrap();
        // The location as the comment names it: the symbol when known, else the address.
        let want = j["symbol"].as_str().unwrap_or(loc);
        assert_eq!(s("dropscope.location"), want, "{row:?} {j}");
        assert_eq!(
            u64::from_str_radix(s("dropscope.address").trim_start_matches("0x"), 16).unwrap(),
            u64::from_str_radix(loc.trim_start_matches("0x"), 16).unwrap(),
            "{row:?} {j}"
        );
        assert_eq!(s("dropscope.src_identity"), "");
    } else {
        assert_eq!(s("dropscope.src_identity"), j["src_identity"].to_string());
        assert_eq!(s("dropscope.dst_identity"), j["dst_identity"].to_string());
    }
    for (field, member) in [
        ("dropscope.pod", "pod"),
        ("dropscope.src_pod", "src_pod"),
        ("dropscope.dst_pod", "dst_pod"),
    ] {
        assert_eq!(
            s(field),
            j[member].as_str().unwrap_or(""),
            "{field}: {row:?} {j}"
        );
    }
}

#[test]
fn field_filters_select_exactly_the_live_drops_of_a_reason() {
    require_root!();
    if !tshark_available() {
        eprintln!("SKIPPED: tshark not installed");
        return;
    }
    let ns = NetnsPair::new();
    let dir = TempDir::new("lua");
    let (pcapng, stats) = (dir.path("d.pcapng"), dir.path("s.json"));
    sh(&[
        "ip", "netns", "exec", &ns.b, "nft",
        "add table inet dsluatest; add chain inet dsluatest input { type filter hook input priority 0; }; add rule inet dsluatest input udp dport 7777 drop",
    ]);
    let netns_b = ns.inode(&ns.b);
    let mut cap = LiveCapture::start_to(
        &[
            "-w",
            pcapng.to_str().unwrap(),
            "--json",
            "--stats-json",
            stats.to_str().unwrap(),
            "--netns",
            &netns_b.to_string(),
            "udp",
        ],
        std::process::Stdio::piped(),
    );
    let mut stdout = cap.take_stdout();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    const N_SOCK: usize = 150;
    const N_NFT: usize = 90;
    ns.send_udp(false, 41001, 9, N_SOCK, 16);
    ns.send_udp(false, 41002, 7777, N_NFT, 24);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    let lines: Vec<Value> = reader
        .join()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let s = read_json(&stats);
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    let (a, b) = (ns.ip4_a.to_string(), ns.ip4_b.to_string());
    let sock = flow_rows(&s, &a, &b, 41001, 9);
    let nft = flow_rows(&s, &a, &b, 41002, 7777);
    assert_eq!(sock.len(), 1);
    assert_eq!(nft.len(), 1);
    assert_eq!(sock[0]["reason_name"], "NO_SOCKET");
    assert_eq!(sock[0]["packets"], N_SOCK as u64);
    assert_eq!(nft[0]["reason_name"], "NETFILTER_DROP");
    assert_eq!(nft[0]["packets"], N_NFT as u64);

    // Every packet of the file: its fields are its --json line's (same order).
    let all = lua_rows(&pcapng, "");
    assert_eq!(
        all.len(),
        lines.len(),
        "{:#?}\n{:#?}",
        &all[all.len().saturating_sub(2)..],
        &lines[lines.len().saturating_sub(2)..]
    );
    for (row, j) in all.iter().zip(&lines) {
        same_packet(row, j);
    }
    // Per reason, exactly the stats JSON's packets of that reason (all in namespace B).
    let mut per_reason: BTreeMap<String, u64> = BTreeMap::new();
    for f in s["flows"].as_array().unwrap() {
        *per_reason
            .entry(f["reason_name"].as_str().unwrap().to_string())
            .or_default() += f["packets"].as_u64().unwrap();
    }
    for (reason, n) in &per_reason {
        let rows = lua_rows(&pcapng, &format!("dropscope.reason == \"{reason}\""));
        assert_eq!(rows.len() as u64, *n, "{reason}");
        assert!(rows.iter().all(|r| r["dropscope.reason"] == *reason));
    }
    let sock_rows = lua_rows(
        &pcapng,
        "dropscope.reason == \"NO_SOCKET\" && udp.srcport == 41001",
    );
    assert_eq!(sock_rows.len(), N_SOCK);
    assert!(sock_rows.iter().all(|r| r["dropscope.family"] == "socket"
        && r["dropscope.netns"] == netns_b.to_string()
        && r["dropscope.ifindex"] == ns.ifindex(&ns.b, &ns.veth_b).to_string()));
    let nft_rows = lua_rows(&pcapng, "dropscope.reason == \"NETFILTER_DROP\"");
    assert_eq!(nft_rows.len() as u64, per_reason["NETFILTER_DROP"]);
    assert!(
        nft_rows
            .iter()
            .filter(|r| r["udp.srcport"] == "41002")
            .count()
            == N_NFT
    );
    assert!(nft_rows
        .iter()
        .all(|r| r["dropscope.family"] == "netfilter"));
    // By namespace: every drop of the file (the capture selected namespace B), none else.
    let total: u64 = per_reason.values().sum();
    assert_eq!(
        lua_rows(&pcapng, &format!("dropscope.netns == {netns_b}")).len() as u64,
        total
    );
    assert_eq!(
        lua_rows(&pcapng, &format!("dropscope.netns != {netns_b}")).len(),
        0
    );
    // The code filters as a number.
    let code = sock[0]["reason"].as_u64().unwrap();
    assert_eq!(
        lua_rows(&pcapng, &format!("dropscope.code == {code}")).len() as u64,
        per_reason["NO_SOCKET"]
    );
}

/// A fixture with Cilium drops (identities) and kernel drops, replayed: the identity
/// filters select exactly the drops the replay's --json names, field for field.
#[test]
fn identity_and_pod_fields_of_replayed_fixtures() {
    if !tshark_available() {
        eprintln!("SKIPPED: tshark not installed");
        return;
    }
    let dir = TempDir::new("lua-replay");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap/ours.pcapng");
    // Written again by this machine's dropscope: comments with this kernel's reason names.
    let again = dir.path("again.pcapng");
    let out = run_ok(
        dropscope()
            .arg("replay")
            .arg(&fixture)
            .arg("--json")
            .arg("--print")
            .arg("-w")
            .arg(&again),
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows = lua_rows(&again, "");
    assert_eq!(rows.len(), lines.len());
    for (row, j) in rows.iter().zip(&lines) {
        if j.get("reason_name").is_some() && j["reason"].is_number() {
            same_packet(row, j);
        } else {
            assert_eq!(row["dropscope.origin"], "", "{row:?}");
        }
    }
    let cilium: Vec<&Value> = lines.iter().filter(|j| j["origin"] == "cilium").collect();
    assert!(!cilium.is_empty());
    let by = |pred: &dyn Fn(&Value) -> bool| cilium.iter().filter(|j| pred(j)).count();
    assert_eq!(
        lua_rows(&again, "dropscope.src_identity == 12345").len(),
        by(&|j| j["src_identity"] == 12345)
    );
    assert_eq!(
        lua_rows(&again, "dropscope.dst_identity == 680").len(),
        by(&|j| j["dst_identity"] == 680)
    );
    assert!(by(&|j| j["dst_identity"] == 680) > 0);
    assert_eq!(
        lua_rows(&again, "dropscope.origin == \"cilium\"").len(),
        cilium.len()
    );
    assert!(lua_rows(&again, "dropscope.origin == \"cilium\"")
        .iter()
        .all(|r| r["dropscope.family"] == "policy"));
    // The fixture as written elsewhere names the datapath's source file and line.
    let orig = lua_rows(&fixture, "dropscope.origin == \"cilium\"");
    assert_eq!(orig.len(), cilium.len());
    assert!(orig
        .iter()
        .all(|r| r["dropscope.source"] == "bpf_lxc.c:1234"));

    // Pods (Hubble's flows name them): the fields hold the --json line's pods.
    let hubble = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/hubble/export-doc.jsonl");
    let hx = dir.path("hubble.pcapng");
    let out = run_ok(
        dropscope()
            .arg("replay")
            .arg(&hubble)
            .arg("--synthesize")
            .arg("--json")
            .arg("--print")
            .arg("-w")
            .arg(&hx),
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows = lua_rows(&hx, "dropscope.dst_pod");
    assert_eq!(
        rows.len(),
        lines.iter().filter(|j| j["dst_pod"].is_string()).count()
    );
    assert!(!rows.is_empty());
    for (row, j) in lua_rows(&hx, "").iter().zip(&lines) {
        assert_eq!(
            row["dropscope.src_pod"],
            j["src_pod"].as_str().unwrap_or("")
        );
        assert_eq!(
            row["dropscope.dst_pod"],
            j["dst_pod"].as_str().unwrap_or("")
        );
    }
}

/// The profile, as tshark loads it from a configuration directory: custom columns show the
/// plugin's fields, the colouring rules name the drop family.
#[test]
fn the_profile_gives_columns_and_colours_per_family() {
    if !tshark_available() {
        eprintln!("SKIPPED: tshark not installed");
        return;
    }
    let dir = TempDir::new("lua-profile");
    let profiles = dir.path("cfg/wireshark/profiles/dropscope");
    std::fs::create_dir_all(&profiles).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/wireshark/profile");
    for f in ["preferences", "colorfilters"] {
        std::fs::copy(src.join(f), profiles.join(f)).unwrap();
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap/ours.pcapng");
    let again = dir.path("again.pcapng");
    run_ok(
        dropscope()
            .arg("replay")
            .arg(&fixture)
            .arg("-q")
            .arg("-w")
            .arg(&again),
    );
    let out = std::process::Command::new("tshark")
        .env("XDG_CONFIG_HOME", dir.path("cfg"))
        .args(["-C", "dropscope", "--color", "-X"])
        .arg(format!("lua_script:{}", plugin().display()))
        .arg("-r")
        .arg(&again)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.coloring_rule.name",
            "-e",
            "_ws.col.Reason",
            "-e",
            "_ws.col.Ifindex",
            "-e",
            "dropscope.family",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("rror"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut families = 0;
    for l in text.lines() {
        let c: Vec<&str> = l.split('|').collect();
        if c[3].is_empty() {
            continue;
        }
        families += 1;
        // The rule of the packet's family, and the columns hold its fields.
        assert!(c[0].starts_with("dropscope: "), "{l}");
        assert!(!c[1].is_empty(), "{l}");
        assert!(!c[2].is_empty(), "{l}");
        let want = match c[3] {
            "policy" => "dropscope: Cilium policy",
            "socket" => "dropscope: no socket",
            "netfilter" => "dropscope: netfilter",
            _ => c[0],
        };
        assert_eq!(c[0], want, "{l}");
    }
    assert!(families >= 4, "{text}");
}
