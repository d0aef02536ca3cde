//! `dropscope datapath` and the join of drops with the datapath, on a stand-in for a Cilium
//! node that each test builds and removes: two namespaces, "pods" (A) and "host" (B), joined
//! by three veth pairs whose B ends are named like Cilium's endpoint devices (`lxc...`):
//!
//! * `lxc..0` has dropscope's `tc_shot` on its tcx ingress (drops everything: TC_INGRESS);
//! * `lxc..1` has a classic tc (cls_bpf) program assembled here, "ct_standin", that tries to
//!   insert each IPv4 packet's connection into the pinned `cilium_ct4_global` (a hash map
//!   filled to its max, so the insert fails), then does what Cilium's `ct_create4()` does on
//!   that failure: a "CT: Map insertion failed" drop notification into the pinned
//!   `cilium_events`, and TC_ACT_SHOT;
//! * `lxc..2` has no program (UDP to a closed port there: NO_SOCKET drops).
//!
//! A's end of pair 0 has an XDP program (generic mode). The bpffs is a fresh mount in a
//! temporary directory, with maps named like Cilium's filled to known levels.

use std::io::BufRead as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use engine::datapath::testing as dt;
use engine::kernel::testing::{raw, TcShot};

const PROG_TYPE_XDP: u32 = 6;
/// Cilium's DROP_CT_CREATE_FAILED.
const CT_CREATE_FAILED: i32 = 155;
const NOTIFY_LEN: i32 = 48;
const CAP_MAX: i32 = 128;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// The conntrack stand-in (see the module doc): map_update_elem(ct, &0x7fffffff, &0) and, if
/// it fails, a version-3 drop notification with reason 155 and the packet's first bytes.
fn ct_standin(ct_fd: i32, events_fd: i32) -> Vec<u64> {
    let at = |o: i16| o - NOTIFY_LEN as i16;
    let mut v = vec![
        insn(0xbf, 6, 1, 0, 0),              // r6 = skb
        insn(0x61, 2, 6, 16, 0),             // r2 = skb->protocol
        insn(0x15, 2, 0, 2, 0x0008),         // if r2 == htons(ETH_P_IP) goto +2
        insn(0xb7, 0, 0, 0, 0),              // r0 = TC_ACT_OK
        insn(0x95, 0, 0, 0, 0),              // exit
        insn(0x62, 10, 0, -56, 0x7fff_ffff), // key (u32) at fp-56: never in the map
        insn(0x7a, 10, 0, -64, 0),           // value (u64) at fp-64 = 0
        insn(0x18, 1, 1, 0, ct_fd),          // r1 = ct map
        insn(0x00, 0, 0, 0, 0),
        insn(0xbf, 2, 10, 0, 0),  // r2 = fp
        insn(0x07, 2, 0, 0, -56), // r2 = &key
        insn(0xbf, 3, 10, 0, 0),  // r3 = fp
        insn(0x07, 3, 0, 0, -64), // r3 = &value
        insn(0xb7, 4, 0, 0, 0),   // r4 = BPF_ANY
        insn(0x85, 0, 0, 0, 2),   // call bpf_map_update_elem
        insn(0x55, 0, 0, 2, 0),   // if r0 != 0 goto +2 (insert failed)
        insn(0xb7, 0, 0, 0, 0),   // r0 = TC_ACT_OK
        insn(0x95, 0, 0, 0, 0),   // exit
        insn(0x61, 7, 6, 0, 0),   // r7 = skb->len
        insn(0x61, 8, 6, 40, 0),  // r8 = skb->ifindex
    ];
    for o in (0..NOTIFY_LEN as i16).step_by(8) {
        v.push(insn(0x7a, 10, 0, at(o), 0));
    }
    v.extend([
        insn(0xbf, 9, 7, 0, 0),
        insn(0xb5, 9, 0, 1, CAP_MAX),
        insn(0xb7, 9, 0, 0, CAP_MAX),
        insn(0x72, 10, 0, at(0), 1),                // type = drop
        insn(0x72, 10, 0, at(1), CT_CREATE_FAILED), // subtype = reason
        insn(0x63, 10, 7, at(8), 0),                // len_orig
        insn(0x6b, 10, 9, at(12), 0),               // len_cap
        insn(0x72, 10, 0, at(14), 3),               // version 3
        insn(0x62, 10, 0, at(16), 4242),            // src_label
        insn(0x62, 10, 0, at(20), 12345),           // dst_label
        insn(0x6a, 10, 0, at(28), 77),              // line
        insn(0x63, 10, 8, at(32), 0),               // ifindex
        insn(0xbf, 3, 9, 0, 0),
        insn(0x67, 3, 0, 0, 32),
        insn(0xb4, 1, 0, 0, -1),
        insn(0x4f, 3, 1, 0, 0), // r3 = cap_len << 32 | BPF_F_CURRENT_CPU
        insn(0xbf, 1, 6, 0, 0),
        insn(0x18, 2, 1, 0, events_fd),
        insn(0x00, 0, 0, 0, 0),
        insn(0xbf, 4, 10, 0, 0),
        insn(0x07, 4, 0, 0, -NOTIFY_LEN),
        insn(0xb7, 5, 0, 0, NOTIFY_LEN),
        insn(0x85, 0, 0, 0, 25), // bpf_perf_event_output
        insn(0xb7, 0, 0, 0, 2),  // TC_ACT_SHOT
        insn(0x95, 0, 0, 0, 0),
    ]);
    v
}

fn possible_cpus() -> u32 {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").expect("possible");
    text.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((_, hi)) => hi.parse::<u32>().expect("cpu") + 1,
            None => r.parse::<u32>().expect("cpu") + 1,
        })
        .max()
        .expect("a cpu")
}

/// A bpffs mounted in a temporary directory, with `tc/globals` made; unmounted on drop.
struct Bpffs {
    _dir: TempDir,
    fs: PathBuf,
    globals: PathBuf,
}

impl Bpffs {
    fn new(tag: &str) -> Bpffs {
        let dir = TempDir::new(tag);
        let fs = dir.path("fs");
        std::fs::create_dir(&fs).unwrap();
        dt::mount_bpffs(&fs).expect("mount bpffs");
        let globals = fs.join("tc/globals");
        std::fs::create_dir_all(&globals).unwrap();
        Bpffs {
            _dir: dir,
            fs,
            globals,
        }
    }

    /// A hash map pinned as `name`, `fill` of `max` entries.
    fn hash(&self, name: &str, max: u32, fill: u32) -> OwnedFd {
        let m = dt::hash_map(max, 8).expect("hash map");
        dt::insert_range(m.as_fd(), 0, fill).expect("fill");
        dt::pin(m.as_fd(), &self.globals.join(name)).expect("pin");
        m
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        dt::umount(&self.fs);
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Namespaces A ("pods") and B ("host"), three veth pairs A:vp{id}{i} <-> B:lxc{id}{i},
/// 10.99.{i}.1 (A) - 10.99.{i}.2 (B), static neighbours, no IPv6 (no stray packets).
struct Lab {
    _area: engine::netns_rig::AreaGuard,
    a: String,
    b: String,
    pods: Vec<String>,
    eps: Vec<String>,
}

impl Lab {
    fn new() -> Lab {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let lab = Lab {
            _area: engine::netns_rig::area_guard(),
            a: format!("dpa{id}"),
            b: format!("dpb{id}"),
            pods: (0..3).map(|i| format!("vp{id}{i}")).collect(),
            eps: (0..3).map(|i| format!("lxc{id}{i}")).collect(),
        };
        for ns in [&lab.a, &lab.b] {
            sh(&["ip", "netns", "add", ns]);
            for k in ["all", "default"] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
                ]);
            }
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for i in 0..3 {
            let (p, e) = (&lab.pods[i], &lab.eps[i]);
            sh(&[
                "ip", "link", "add", p, "netns", &lab.a, "type", "veth", "peer", "name", e,
                "netns", &lab.b,
            ]);
            for (ns, dev, ip) in [(&lab.a, p, lab.ip_a(i)), (&lab.b, e, lab.ip_b(i))] {
                sh(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    dev,
                ]);
                sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
            let mac = |ns: &str, dev: &str| -> String {
                let o = sh(&["ip", "-n", ns, "-o", "link", "show", dev]);
                let s = String::from_utf8_lossy(&o.stdout).to_string();
                let at = s.find("link/ether ").expect("mac") + 11;
                s[at..at + 17].to_string()
            };
            let (ma, mb) = (mac(&lab.a, p), mac(&lab.b, e));
            sh(&[
                "ip",
                "-n",
                &lab.a,
                "neigh",
                "replace",
                &lab.ip_b(i).to_string(),
                "lladdr",
                &mb,
                "dev",
                p,
            ]);
            sh(&[
                "ip",
                "-n",
                &lab.b,
                "neigh",
                "replace",
                &lab.ip_a(i).to_string(),
                "lladdr",
                &ma,
                "dev",
                e,
            ]);
        }
        lab
    }

    fn ip_a(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, i as u8, 1)
    }

    fn ip_b(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, i as u8, 2)
    }

    fn inode(&self, ns: &str) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/run/netns/{ns}"))
            .or_else(|_| std::fs::metadata(format!("/var/run/netns/{ns}")))
            .expect("netns")
            .ino()
    }

    /// `n` UDP datagrams from A over pair `i` to B:`dport`.
    fn send(&self, i: usize, dport: u16, n: usize) {
        let (src, dst): (SocketAddr, SocketAddr) =
            ((self.ip_a(i), 0).into(), (self.ip_b(i), dport).into());
        let path = PathBuf::from(format!("/run/netns/{}", self.a));
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("netns");
            // SAFETY: setns on a valid namespace fd; it changes only this thread's netns.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let s = UdpSocket::bind(src).expect("bind");
            for _ in 0..n {
                s.send_to(&[0x5a; 32], dst).expect("send");
            }
        })
        .join()
        .expect("sender");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.a])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.b])
            .output();
    }
}

/// Everything of the module doc, set up.
struct Node {
    lab: Lab,
    fs: Bpffs,
    _maps: Vec<OwnedFd>,
    _shot: TcShot,
    ct_prog_id: u32,
    xdp_prog_id: u32,
}

impl Node {
    fn new(tag: &str) -> Option<Node> {
        let fs = Bpffs::new(tag);
        let lab = Lab::new();
        let ct = fs.hash("cilium_ct4_global", 64, 64);
        let policy = fs.hash("cilium_policy_v2_01234", 100, 37);
        let snat = fs.hash("cilium_snat_v4_external", 1000, 850);
        let array = dt::map(dt::MapType::BPF_MAP_TYPE_ARRAY, 4, 8, 16).expect("array");
        dt::pin(array.as_fd(), &fs.globals.join("cilium_runtime_config")).unwrap();
        let events = raw::map_create(raw::MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, possible_cpus())
            .expect("perf event array");
        dt::pin(events.as_fd(), &fs.globals.join("cilium_events")).unwrap();
        let prog = dt::prog_load(
            raw::PROG_TYPE_SCHED_CLS,
            &ct_standin(ct.as_raw_fd(), events.as_raw_fd()),
            "ct_standin",
            c"GPL",
        )
        .unwrap_or_else(|e| panic!("ct_standin refused: {e}"));
        let ct_prog_id = dt::prog_id(prog.as_fd()).unwrap();
        // Pinned beside the maps: `datapath` must skip it (not a map).
        let prog_pin = fs.globals.join("ct_standin");
        dt::pin(prog.as_fd(), &prog_pin).unwrap();
        let xdp = dt::prog_load(
            PROG_TYPE_XDP,
            &[insn(0xb7, 0, 0, 0, 2), insn(0x95, 0, 0, 0, 0)], // XDP_PASS
            "xdp_pass",
            c"GPL",
        )
        .expect("xdp program");
        let xdp_prog_id = dt::prog_id(xdp.as_fd()).unwrap();
        let xdp_pin = fs.fs.join("xdp_pass");
        dt::pin(xdp.as_fd(), &xdp_pin).unwrap();
        let shot = match TcShot::attach(&lab.b, &lab.eps[0]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIPPED: tc_shot cannot be attached here: {e}");
                return None;
            }
        };
        sh(&[
            "tc",
            "-n",
            &lab.b,
            "qdisc",
            "add",
            "dev",
            &lab.eps[1],
            "clsact",
        ]);
        sh(&[
            "tc",
            "-n",
            &lab.b,
            "filter",
            "add",
            "dev",
            &lab.eps[1],
            "ingress",
            "bpf",
            "object-pinned",
            prog_pin.to_str().unwrap(),
            "direct-action",
        ]);
        sh(&[
            "ip",
            "-n",
            &lab.a,
            "link",
            "set",
            "dev",
            &lab.pods[0],
            "xdpgeneric",
            "pinned",
            xdp_pin.to_str().unwrap(),
        ]);
        Some(Node {
            lab,
            fs,
            _maps: vec![ct, policy, snat, array, events],
            _shot: shot,
            ct_prog_id,
            xdp_prog_id,
        })
    }

    fn globals(&self) -> &str {
        self.fs.globals.to_str().unwrap()
    }
}

/// The namespace of a snapshot's JSON whose inode is `ino`.
fn netns(s: &serde_json::Value, ino: u64) -> &serde_json::Value {
    s["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inode"] == ino)
        .unwrap_or_else(|| panic!("netns {ino} not in {s:#}"))
}

fn iface<'a>(ns: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    ns["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {ns:#}"))
}

/// (hook, program name, program id) of an interface.
fn hooks(i: &serde_json::Value) -> Vec<(String, String, u64)> {
    i["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["hook"].as_str().unwrap().to_string(),
                a["prog"]["name"].as_str().unwrap().to_string(),
                a["prog"]["id"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn datapath_reports_programs_per_interface_and_the_exact_fill_of_each_map() {
    require_root!();
    let Some(node) = Node::new("dpr") else { return };
    let lab = &node.lab;
    let out = run_ok(dropscope().args([
        "datapath",
        "--json",
        "--maps-dir",
        node.globals(),
        "--cilium-api",
        "/nonexistent/cilium.sock",
    ]));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let b = netns(&s, lab.inode(&lab.b));
    let tc_shot = hooks(iface(b, &lab.eps[0]));
    assert_eq!(tc_shot.len(), 1, "{tc_shot:?}");
    assert_eq!(
        (tc_shot[0].0.as_str(), tc_shot[0].1.as_str()),
        ("tcx-ingress", "tc_shot")
    );
    assert_eq!(
        hooks(iface(b, &lab.eps[1])),
        [(
            "tc-ingress".to_string(),
            "ct_standin".to_string(),
            u64::from(node.ct_prog_id)
        )]
    );
    assert_eq!(hooks(iface(b, &lab.eps[2])), []);
    for (i, missing) in [(0, false), (1, false), (2, true)] {
        let f = iface(b, &lab.eps[i]);
        assert_eq!(f["endpoint"], "name", "{f}");
        assert_eq!(f["missing_program"], missing, "{f}");
    }
    let missing: Vec<&str> = b["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["missing_program"] == true)
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(missing, [lab.eps[2].as_str()]);
    let a = netns(&s, lab.inode(&lab.a));
    let xdp = iface(a, &lab.pods[0]);
    assert_eq!(
        hooks(xdp),
        [(
            "xdp".to_string(),
            "xdp_pass".to_string(),
            u64::from(node.xdp_prog_id)
        )]
    );
    assert_eq!(xdp["attachments"][0]["mode"], "generic");
    assert!(xdp.get("endpoint").is_none(), "not an endpoint: {xdp}");
    // Maps: exactly the pinned maps (not the program pinned beside them), exact fills, by
    // the kernel's counter where this kernel allows the iterator, and by walking keys.
    let counter = if s["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("kernel counters unavailable"))
    {
        "get-next-key"
    } else {
        "kernel-counter"
    };
    assert_maps(&s, counter);
    let walked = run_ok(dropscope().args([
        "datapath",
        "--json",
        "--walk-keys",
        "--own-netns",
        "--maps-dir",
        node.globals(),
        "--cilium-api",
        "/nonexistent/cilium.sock",
    ]));
    assert_maps(
        &serde_json::from_slice(&walked.stdout).expect("json"),
        "get-next-key",
    );
    let notes: Vec<&str> = s["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n
                .starts_with("cilium: the agent's API /nonexistent/cilium.sock does not answer")),
        "{notes:?}"
    );
    // Text: the missing program is named under its interface; fills as counted.
    let out = run_ok(dropscope().args([
        "datapath",
        "--maps-dir",
        node.globals(),
        "--cilium-api",
        "/nonexistent/cilium.sock",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text
        .find(&format!("  {} (ifindex", lab.eps[2]))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        text[at..]
            .lines()
            .nth(1)
            .is_some_and(|l| l == "    MISSING: no tc, tcx or netkit program attached"),
        "{text}"
    );
    assert!(text.contains("64/64 (100.0%)"), "{text}");
    assert!(text.contains("850/1000 (85.0%)"), "{text}");
    // The doctor's datapath section says the same, as warnings.
    let out = dropscope()
        .args([
            "doctor",
            "--json",
            "--no-attach",
            "--maps-dir",
            node.globals(),
            "--cilium-api",
            "/nonexistent/cilium.sock",
        ])
        .output()
        .unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor json");
    let check = |name: &str| -> serde_json::Value {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {checks:#}"))
            .clone()
    };
    let progs = check("datapath-progs");
    assert_eq!(progs["status"], "warn", "{progs}");
    assert!(
        progs["detail"].as_str().unwrap().contains(&format!(
            "{}@netns{}",
            lab.eps[2],
            lab.inode(&lab.b)
        )),
        "{progs}"
    );
    let maps = check("datapath-maps");
    assert_eq!(maps["status"], "warn", "{maps}");
    assert_eq!(
        maps["detail"],
        "1 of 5 maps at least 90% full: cilium_ct4_global 64/64 (100.0%)"
    );
    // A missing maps directory is one note; the rest is still reported.
    let out = run_ok(dropscope().args([
        "datapath",
        "--maps-dir",
        "/nonexistent/globals",
        "--cilium-api",
        "/nonexistent/cilium.sock",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("note: maps: /nonexistent/globals"))
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("MISSING: no tc, tcx or netkit program attached"),
        "{text}"
    );
}

/// The maps of a `datapath --json` document: exactly the test's, filled as made, hash maps
/// counted by `how`.
fn assert_maps(s: &serde_json::Value, how: &str) {
    let maps: Vec<(String, String, Option<u64>, u64, String)> = s["maps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["map_type"].as_str().unwrap().to_string(),
                m["entries"].as_u64(),
                m["max_entries"].as_u64().unwrap(),
                m["method"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |n: &str, t: &str, e: Option<u64>, max: u64, how: &str| {
        (n.to_string(), t.to_string(), e, max, how.to_string())
    };
    assert_eq!(
        maps,
        [
            row("cilium_ct4_global", "hash", Some(64), 64, how),
            row(
                "cilium_events",
                "perf_event_array",
                None,
                u64::from(possible_cpus()),
                "not-counted"
            ),
            row("cilium_policy_v2_01234", "hash", Some(37), 100, how),
            row("cilium_runtime_config", "array", None, 16, "array-slots"),
            row("cilium_snat_v4_external", "hash", Some(850), 1000, how),
        ]
    );
    let fill = |n: &str| {
        s["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == n)
            .unwrap()["fill"]
            .as_f64()
    };
    assert_eq!(fill("cilium_ct4_global"), Some(1.0));
    assert_eq!(fill("cilium_policy_v2_01234"), Some(0.37));
    assert_eq!(fill("cilium_snat_v4_external"), Some(0.85));
}

/// The explanation of `reason` in a stats document.
fn explanation<'a>(s: &'a serde_json::Value, reason: &str) -> &'a serde_json::Value {
    s["datapath"]["explanations"]
        .as_array()
        .expect("datapath.explanations")
        .iter()
        .find(|x| x["reason"] == reason)
        .unwrap_or_else(|| panic!("{reason} not in {:#}", s["datapath"]))
}

fn on<'a>(x: &'a serde_json::Value, ifname: &str) -> &'a serde_json::Value {
    x["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == ifname)
        .unwrap_or_else(|| panic!("{ifname} not in {x:#}"))
}

#[test]
fn a_capture_joins_each_drop_to_its_datapath_explanation() {
    require_root!();
    let Some(node) = Node::new("dpj") else { return };
    let lab = &node.lab;
    let dir = TempDir::new("dpjc");
    let stats = dir.path("s.json");
    let pcapng = dir.path("c.pcapng");
    let events = node.fs.globals.join("cilium_events");
    let mut cap = LiveCapture::start_to(
        &[
            "--source",
            "kernel,cilium-datapath",
            "--cilium-events-map",
            events.to_str().unwrap(),
            "--cilium-socket",
            "/nonexistent/monitor.sock",
            "--cilium-api",
            "/nonexistent/cilium.sock",
            "--no-names",
            "--datapath-maps-dir",
            node.globals(),
            "--stats-json",
            stats.to_str().unwrap(),
            "-w",
            pcapng.to_str().unwrap(),
            "--json",
        ],
        std::process::Stdio::piped(),
    );
    let stdout = cap.take_stdout();
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    const N0: u64 = 20;
    const N1: u64 = 30;
    const N2: u64 = 25;
    lab.send(0, 7100, N0 as usize);
    lab.send(1, 7101, N1 as usize);
    lab.send(2, 7102, N2 as usize);
    std::thread::sleep(Duration::from_millis(300));
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    // Each JSON line carries the same facts as the comments (member `datapath`).
    let json: Vec<serde_json::Value> = lines
        .join()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let with = |dport: u64, text: &str| {
        json.iter()
            .filter(|v| v["dport"] == dport)
            .filter(|v| v["datapath"].as_str().is_some_and(|d| d.contains(text)))
            .count() as u64
    };
    assert_eq!(
        with(
            7101,
            "cilium_ct4_global is full (64/64 (100.0%)): inserts fail"
        ),
        N1
    );
    assert_eq!(with(7100, " ingress: tc_shot id "), N0);
    assert_eq!(
        with(
            7102,
            " is a Cilium endpoint interface with no tc, tcx or netkit program attached"
        ),
        N2
    );
    let s = read_json(&stats);
    // The full CT map explains Cilium's "CT: Map insertion failed".
    let ct = explanation(&s, "CT: Map insertion failed");
    assert_eq!(ct["origin"], "cilium");
    assert_eq!(ct["packets"], N1, "{ct:#}");
    assert_eq!(ct["points"], "maps");
    let m = ct["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "cilium_ct4_global")
        .expect("cilium_ct4_global");
    assert_eq!(
        (&m["entries"], &m["max_entries"], &m["full"]),
        (
            &serde_json::json!(64),
            &serde_json::json!(64),
            &serde_json::json!(true),
        )
    );
    assert_eq!(
        ct["verdict"],
        "cilium_ct4_global is full (64/64 (100.0%)): inserts fail"
    );
    assert!(ct["source"]
        .as_str()
        .unwrap()
        .contains("bpf/lib/conntrack.h"));
    // The kernel's TC_INGRESS drops: each interface's tc program named.
    let tc = explanation(&s, "TC_INGRESS");
    let e0 = on(tc, &lab.eps[0]);
    assert_eq!(e0["packets"], N0, "{e0}");
    assert_eq!(e0["programs"].as_array().unwrap().len(), 1, "{e0}");
    assert!(
        e0["programs"][0]
            .as_str()
            .unwrap()
            .starts_with("tc_shot id ")
            && e0["programs"][0]
                .as_str()
                .unwrap()
                .ends_with(" (tcx-ingress)"),
        "{e0}"
    );
    let e1 = on(tc, &lab.eps[1]);
    assert_eq!(e1["packets"], N1, "{e1}");
    assert_eq!(
        e1["programs"],
        serde_json::json!([format!("ct_standin id {} (tc-ingress)", node.ct_prog_id)])
    );
    // NO_SOCKET on the endpoint interface that has no program: that fact beside it.
    let ns = explanation(&s, "NO_SOCKET");
    let e2 = on(ns, &lab.eps[2]);
    assert_eq!(e2["packets"], N2, "{e2}");
    assert_eq!(e2["endpoint"], true);
    assert_eq!(e2["no_tc_program"], true);
    assert_eq!(
        ns["verdict"],
        format!(
            "{} is a Cilium endpoint interface with no tc, tcx or netkit program attached",
            lab.eps[2]
        )
    );
    assert!(
        err.contains(&format!(
            "datapath: cilium CT: Map insertion failed ({N1} pkts): cilium_ct4_global is full (64/64 (100.0%)): inserts fail"
        )),
        "{err}"
    );
    // Each packet's comment carries the facts that explain its drop (read at the start).
    if tshark_available() {
        let full = "frame.comment contains \"datapath: \" && frame.comment contains \"cilium_ct4_global is full (64/64 (100.0%)): inserts fail\" && udp.dstport == 7101";
        assert_eq!(tshark_count(&pcapng, full), N1 as usize, "{full}");
        let tc = format!(
            "frame.comment contains \"datapath: {} ingress: tc_shot id \" && udp.dstport == 7100",
            lab.eps[0]
        );
        assert_eq!(tshark_count(&pcapng, &tc), N0 as usize, "{tc}");
        let missing = format!(
            "frame.comment contains \"datapath: {} is a Cilium endpoint interface with no tc, tcx or netkit program attached\" && udp.dstport == 7102",
            lab.eps[2]
        );
        assert_eq!(tshark_count(&pcapng, &missing), N2 as usize, "{missing}");
    } else {
        eprintln!("SKIPPED (comment part): tshark not installed");
    }
    // The annotated file replays with the same reasons (the annotation does not confuse the
    // comment reader), and the replay names what the reasons point at (no live state).
    let replayed = dir.path("r.json");
    run_ok(dropscope().args([
        "replay",
        pcapng.to_str().unwrap(),
        "-q",
        "--stats-json",
        replayed.to_str().unwrap(),
    ]));
    let r = read_json(&replayed);
    for (i, dport, reason, n) in [
        (0, 7100, "TC_INGRESS", N0),
        (1, 7101, "TC_INGRESS", N1),
        (2, 7102, "NO_SOCKET", N2),
    ] {
        let got: Vec<(&str, u64)> = r["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["dst"] == lab.ip_b(i).to_string() && f["dport"] == dport)
            .map(|f| {
                (
                    f["reason_name"].as_str().unwrap(),
                    f["packets"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(reason, n)], "port {dport}");
    }
    assert!(
        r["datapath"].get("taken_at").is_none(),
        "{:#}",
        r["datapath"]
    );
    assert_eq!(explanation(&r, "NO_SOCKET")["points"], "no-map");
    assert!(
        err.lines()
            .any(|l| l.starts_with("datapath: kernel NO_SOCKET (")
                && l.contains(&format!(
                    "{} is a Cilium endpoint interface with no tc, tcx or netkit program attached",
                    lab.eps[2]
                ))),
        "{err}"
    );
}

/// Reads `--watch --json` lines until one satisfies `pick` (10 s at most).
fn wait_for(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(100)) {
            seen.push(l.clone());
            let v: serde_json::Value = serde_json::from_str(&l).expect("a JSON line");
            if pick(&v) {
                return v;
            }
        }
    }
    panic!("not reported; seen:\n{}", seen.join("\n"));
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The change was stamped after the action began and within a second of it.
fn within_a_second(change: &serde_json::Value, action_ns: u64) {
    let at = change["at_unix_ns"].as_u64().expect("at_unix_ns");
    assert!(
        at >= action_ns && at - action_ns <= 1_000_000_000,
        "{change}: {} ms after the action",
        (at as i64 - action_ns as i64) / 1_000_000
    );
}

#[test]
fn watch_reports_an_attach_a_detach_and_a_map_crossing_90_percent_within_a_second() {
    require_root!();
    let fs = Bpffs::new("dpw");
    let lab = Lab::new();
    let ct = fs.hash("cilium_ct_any4_global", 100, 85);
    let mut child = dropscope()
        .args([
            "datapath",
            "--watch",
            "--json",
            "--interval",
            "0.1",
            "--maps-dir",
            fs.globals.to_str().unwrap(),
            "--cilium-api",
            "/nonexistent/cilium.sock",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut err_lines = stderr.lines();
    let first = err_lines.next().expect("a line").expect("stderr");
    assert!(
        first.starts_with("dropscope: watching the datapath ("),
        "{first}"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ep = lab.eps[2].clone();
    let t = now_ns();
    let shot = match TcShot::attach(&lab.b, &ep) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("SKIPPED: tc_shot cannot be attached here: {e}");
            return;
        }
    };
    let c = wait_for(&rx, &mut seen, |v| {
        v["change"] == "attached" && v["interface"] == ep.as_str() && v["hook"] == "tcx-ingress"
    });
    assert_eq!(c["prog_name"], "tc_shot");
    within_a_second(&c, t);
    let t = now_ns();
    drop(shot);
    let c = wait_for(&rx, &mut seen, |v| {
        v["change"] == "detached" && v["interface"] == ep.as_str()
    });
    within_a_second(&c, t);
    let t = now_ns();
    dt::insert_range(ct.as_fd(), 85, 95).unwrap();
    let c = wait_for(&rx, &mut seen, |v| v["change"] == "map-fill");
    assert_eq!(c["map"], "cilium_ct_any4_global", "{c}");
    assert_eq!(c["threshold_pct"], 90, "{c}");
    assert_eq!(c["up"], true, "{c}");
    assert_eq!(c["entries"], 95, "{c}");
    within_a_second(&c, t);
    // SAFETY: kill with our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}");
    let rest: Vec<String> = err_lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.ends_with(" changes seen")),
        "{rest:?}"
    );
    // Nothing else crossed: 85 -> 95 passes 90% only (80% was already behind, 100% ahead).
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(l);
    }
    let fills: Vec<&String> = seen.iter().filter(|l| l.contains("\"map-fill\"")).collect();
    assert_eq!(fills.len(), 1, "{fills:?}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    fails_with(
        &["datapath", "--interval", "0"],
        &["--interval 0 is not a positive number of seconds"],
    );
    fails_with(
        &["datapath", "--duration", "3"],
        &["--duration needs --watch"],
    );
    fails_with(
        &["datapath", "--watch", "--thresholds", "80,150"],
        &["--thresholds 150", "at most 100"],
    );
    fails_with(&["datapath", "--interval", "x"], &["--interval"]);
}

#[test]
fn without_privileges_each_missing_part_is_one_note_and_the_rest_is_reported() {
    require_root!();
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no setpriv");
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_dropscope"))
        .args([
            "datapath",
            "--json",
            "--cilium-api",
            "/nonexistent/cilium.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let notes: Vec<&str> = s["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let one = |prefix: &str, cap: &str| {
        let hits: Vec<&&str> = notes.iter().filter(|n| n.starts_with(prefix)).collect();
        assert_eq!(hits.len(), 1, "{prefix}: {notes:#?}");
        assert!(hits[0].contains(cap), "{cap} in {}", hits[0]);
    };
    one("programs: cannot list loaded programs", "CAP_BPF");
    one("cgroup: ", "CAP_NET_ADMIN");
    one(
        "cilium: the agent's API /nonexistent/cilium.sock",
        "by name",
    );
    // Our own namespace's interfaces are still listed (netlink needs no privilege).
    let own = &s["namespaces"][0];
    assert_eq!(own["path"], "/proc/self/ns/net");
    assert!(
        own["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "lo"),
        "{own}"
    );
}

/// A stand-in for the agent's REST API: every request gets `body` as `/v1/endpoint` would.
fn agent(sock: &std::path::Path, body: String) -> std::thread::JoinHandle<()> {
    use std::io::{Read as _, Write as _};
    let l = std::os::unix::net::UnixListener::bind(sock).expect("bind");
    std::thread::spawn(move || {
        // One run asks once; a few more connections are answered in case it asks again.
        for c in l.incoming().take(4) {
            let Ok(mut c) = c else { return };
            // The request may come in pieces: read to the end of its header.
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let (status, b) = if text.starts_with("GET /v1/endpoint ") {
                ("200 OK", body.as_str())
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(
                c,
                "HTTP/1.0 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
    })
}

#[test]
fn endpoints_come_from_the_agent_when_it_answers() {
    require_root!();
    let lab = Lab::new();
    let dir = TempDir::new("dpa");
    let sock = dir.path("cilium.sock");
    // The agent lists one endpoint: lxc..1 (by its ifindex in B, where dropscope runs).
    let ifindex: u32 = String::from_utf8_lossy(
        &sh(&[
            "ip",
            "netns",
            "exec",
            &lab.b,
            "cat",
            &format!("/sys/class/net/{}/ifindex", lab.eps[1]),
        ])
        .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    let body = format!(
        r#"[{{"id": 7, "status": {{"networking": {{"interface-name": "{}", "interface-index": {ifindex}}}}}}},
            {{"id": 1, "status": {{"networking": {{"interface-name": "cilium_host"}}}}}}]"#,
        lab.eps[1]
    );
    let server = agent(&sock, body);
    let out = run_ok(std::process::Command::new("ip").args([
        "netns",
        "exec",
        &lab.b,
        env!("CARGO_BIN_EXE_dropscope"),
        "datapath",
        "--json",
        "--own-netns",
        "--maps-dir",
        "/nonexistent/globals",
        "--cilium-api",
        sock.to_str().unwrap(),
    ]));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(s["endpoints_from"], "agent", "{:#}", s["notes"]);
    let ns = &s["namespaces"][0];
    let ep = iface(ns, &lab.eps[1]);
    assert_eq!(ep["endpoint"], "agent", "{ep}");
    assert_eq!(ep["missing_program"], true, "{ep}");
    // Named like endpoints but not the agent's: not flagged.
    for i in [0, 2] {
        let f = iface(ns, &lab.eps[i]);
        assert!(f.get("endpoint").is_none(), "{f}");
        assert_eq!(f["missing_program"], false, "{f}");
    }
    // The stand-in's thread ends with the test process (it waits for more connections).
    drop(server);
}

#[test]
fn netkit_programs_are_an_endpoint_s_programs() {
    require_root!();
    let lab = Lab::new();
    let with = format!("{}k", lab.eps[0]);
    let without = format!("{}k", lab.eps[1]);
    let peers = [format!("{}k", lab.pods[0]), format!("{}k", lab.pods[1])];
    let path = PathBuf::from(format!("/run/netns/{}", lab.b));
    let (w, wo, pr) = (with.clone(), without.clone(), peers.clone());
    // Made and attached inside B; the program and its link live while their fds do.
    let made = std::thread::spawn(move || -> Result<(OwnedFd, OwnedFd, u32), String> {
        let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        // SAFETY: setns on a valid namespace fd; it changes only this thread's netns.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        // Only a kernel without netkit (CONFIG_NETKIT, Linux 6.7+) is a reason to skip.
        match dt::create_netkit(&w, &pr[0]) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                return Err(format!("SKIP: {e}"))
            }
            r => r.map_err(|e| format!("netkit: {e}"))?,
        }
        dt::create_netkit(&wo, &pr[1]).map_err(|e| format!("netkit: {e}"))?;
        let prog = dt::prog_load(
            raw::PROG_TYPE_SCHED_CLS,
            &[insn(0xb7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)],
            "nk_pass",
            c"GPL",
        )?;
        let c = std::ffi::CString::new(w.as_str()).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
        let link = dt::attach_netkit(prog.as_fd(), ifindex, false)
            .map_err(|e| format!("attaching to netkit: {e}"))?;
        let id = dt::prog_id(prog.as_fd()).map_err(|e| e.to_string())?;
        Ok((prog, link, id))
    })
    .join()
    .expect("netkit thread");
    let (_prog, _link, id) = match made {
        Ok(m) => m,
        Err(e) if e.starts_with("SKIP: ") => {
            eprintln!("SKIPPED: no netkit in this kernel (CONFIG_NETKIT, Linux 6.7+): {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let out = run_ok(dropscope().args([
        "datapath",
        "--json",
        "--maps-dir",
        "/nonexistent/globals",
        "--cilium-api",
        "/nonexistent/cilium.sock",
    ]));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let b = netns(&s, lab.inode(&lab.b));
    let nk = iface(b, &with);
    assert_eq!(
        hooks(nk),
        [(
            "netkit-primary".to_string(),
            "nk_pass".to_string(),
            u64::from(id)
        )]
    );
    assert_eq!(nk["missing_program"], false, "{nk}");
    let bare = iface(b, &without);
    assert_eq!(hooks(bare), []);
    assert_eq!(bare["missing_program"], true, "{bare}");
    for p in &peers {
        assert!(iface(b, p).get("endpoint").is_none());
    }
}
