//! `--source cilium-datapath` end to end, without Cilium: a stand-in for Cilium's datapath
//! is assembled here from raw eBPF instructions (a tc classifier that, for each IPv4 packet,
//! writes a Cilium drop notification, "Policy denied" from identity 4242 to 12345, with the
//! packet's first bytes, into a pinned perf event array, and drops the packet), attached on
//! B's veth ingress. The built `dropscope` reads the pinned array as it would read Cilium's
//! `cilium_events`; every datagram sent must come out as exactly one Cilium drop (and, with
//! the kernel source too, as exactly one kernel TC_INGRESS drop). The program exists only in
//! this test.
//!
//! Also: a capture is refused, with one line and nothing written, while a Unix socket
//! answers at `--cilium-socket` (the agent is up), and a missing map path is named.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::*;
use engine::kernel::testing::raw;

/// Cilium's drop reason "Policy denied" (DROP_POLICY).
const POLICY_DENIED: i32 = 133;
const SRC_IDENTITY: i32 = 4242;
const DST_IDENTITY: i32 = 12345;
/// Bytes of each packet the program appends to its notification, at most.
const CAP_MAX: i32 = 128;
/// Size of the drop notification (version 3, as `DropNotify::decode` reads it).
const NOTIFY_LEN: i32 = 48;

/// One eBPF instruction as the kernel reads it (little-endian).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// The stand-in datapath: for every IPv4 packet, a drop notification on the stack, sent with
/// `bpf_perf_event_output(skb, map, BPF_F_CURRENT_CPU | cap_len << 32, &notify, 48)` (the
/// kernel appends the packet's first `cap_len` bytes, as it does for Cilium), then
/// TC_ACT_SHOT.
fn program(map_fd: i32) -> Vec<u64> {
    // Notification layout (offsets from its start at r10 - 48):
    //  0 type u8 = 1 (drop)     1 subtype u8 = reason   2 source u16   4 hash u32
    //  8 len_orig u32           12 len_cap u16          14 version u8 = 3
    //  15 ext_version u8        16 src_label u32        20 dst_label u32
    //  24 dst_id u32            28 line u16             30 file u8     31 ext_error i8
    //  32 ifindex u32           36 flags u8 (0: Ethernet, IPv4)        40 ip_trace_id u64
    let at = |o: i16| o - NOTIFY_LEN as i16;
    let mut v = vec![
        insn(0xbf, 6, 1, 0, 0),  // r6 = r1 (the skb)
        insn(0x61, 7, 6, 0, 0),  // r7 = skb->len
        insn(0x61, 8, 6, 40, 0), // r8 = skb->ifindex
        // Only IPv4 is dropped: IPv6 neighbour and multicast-listener traffic the link sends
        // by itself passes, so the capture holds exactly the datagrams the test sends.
        insn(0x61, 2, 6, 16, 0), // r2 = skb->protocol (network byte order)
        insn(0x15, 2, 0, 2, 0x0008), // if r2 == htons(ETH_P_IP) goto +2
        insn(0xb7, 0, 0, 0, 0),  // r0 = TC_ACT_OK
        insn(0x95, 0, 0, 0, 0),  // exit
    ];
    for o in (0..NOTIFY_LEN as i16).step_by(8) {
        v.push(insn(0x7a, 10, 0, at(o), 0)); // *(u64 *)(r10 + o - 48) = 0
    }
    v.extend([
        insn(0xbf, 9, 7, 0, 0),                  // r9 = len
        insn(0xb5, 9, 0, 1, CAP_MAX),            // if r9 <= 128 goto +1
        insn(0xb7, 9, 0, 0, CAP_MAX),            // r9 = 128
        insn(0x72, 10, 0, at(0), 1),             // type = 1 (drop)
        insn(0x72, 10, 0, at(1), POLICY_DENIED), // subtype = reason
        insn(0x63, 10, 7, at(8), 0),             // len_orig = skb->len
        insn(0x6b, 10, 9, at(12), 0),            // len_cap = r9
        insn(0x72, 10, 0, at(14), 3),            // version = 3
        insn(0x62, 10, 0, at(16), SRC_IDENTITY), // src_label
        insn(0x62, 10, 0, at(20), DST_IDENTITY), // dst_label
        insn(0x6a, 10, 0, at(28), 77),           // line = 77
        insn(0x63, 10, 8, at(32), 0),            // ifindex = skb->ifindex
        insn(0xbf, 3, 9, 0, 0),                  // r3 = cap_len
        insn(0x67, 3, 0, 0, 32),                 // r3 <<= 32
        insn(0xb4, 1, 0, 0, -1),                 // w1 = 0xffffffff (BPF_F_CURRENT_CPU)
        insn(0x4f, 3, 1, 0, 0),                  // r3 |= r1: the flags
        insn(0xbf, 1, 6, 0, 0),                  // r1 = skb
        insn(0x18, 2, 1, 0, map_fd),             // r2 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
        insn(0x00, 0, 0, 0, 0),                  //      (second half of ld_imm64)
        insn(0xbf, 4, 10, 0, 0),                 // r4 = r10
        insn(0x07, 4, 0, 0, -NOTIFY_LEN),        // r4 += -48: the notification
        insn(0xb7, 5, 0, 0, NOTIFY_LEN),         // r5 = 48
        insn(0x85, 0, 0, 0, 25),                 // call bpf_perf_event_output
        insn(0xb7, 0, 0, 0, 2),                  // r0 = TC_ACT_SHOT
        insn(0x95, 0, 0, 0, 0),                  // exit
    ]);
    v
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-3`).
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

static PIN_SEQ: AtomicU32 = AtomicU32::new(0);

/// The pinned array and program under a test directory in bpffs; removed on drop.
struct Datapath {
    dir: PathBuf,
    map: PathBuf,
    prog: PathBuf,
}

impl Datapath {
    /// Creates and pins the array and the program; `None` (with the reason printed) when
    /// this kernel refuses them.
    fn create() -> Option<Datapath> {
        if !is_bpffs("/sys/fs/bpf") {
            std::fs::create_dir_all("/sys/fs/bpf").expect("mkdir /sys/fs/bpf");
            sh(&["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"]);
        }
        let n = PIN_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/dropscope-test-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir in bpffs");
        let d = Datapath {
            map: dir.join("cilium_events"),
            prog: dir.join("drop_notify"),
            dir,
        };
        let map = match raw::map_create(raw::MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, possible_cpus()) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("SKIPPED: cannot create a perf event array: {e}");
                return None;
            }
        };
        raw::obj_pin(map.as_fd(), &d.map).expect("pin the map");
        let prog = match raw::prog_load(raw::PROG_TYPE_SCHED_CLS, &program(map.as_raw_fd()), c"GPL")
        {
            Ok(p) => p,
            Err(e) => panic!("the stand-in datapath program was refused: {e}"),
        };
        raw::obj_pin(prog.as_fd(), &d.prog).expect("pin the program");
        Some(d)
    }

    /// Attaches the program on `dev`'s ingress in namespace `ns` (the filter goes with the
    /// namespace). tc runs under `nsenter --net`, not `ip netns exec`: the latter mounts a
    /// fresh /sys for the namespace, which hides the bpffs mounted at /sys/fs/bpf and so the
    /// pinned program.
    fn attach(&self, ns: &str, dev: &str) {
        let net = format!("--net=/var/run/netns/{ns}");
        sh(&["nsenter", &net, "tc", "qdisc", "add", "dev", dev, "clsact"]);
        sh(&[
            "nsenter",
            &net,
            "tc",
            "filter",
            "add",
            "dev",
            dev,
            "ingress",
            "bpf",
            "object-pinned",
            self.prog.to_str().unwrap(),
            "direct-action",
        ]);
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.map);
        let _ = std::fs::remove_file(&self.prog);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn is_bpffs(path: &str) -> bool {
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let c = std::ffi::CString::new(path).unwrap();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == 0xcafe4a11
    }
}

/// Runs a capture of `sources` around `provoke`; returns the stats and stderr.
fn capture_around(
    sources: &str,
    d: &Datapath,
    stats: &Path,
    pcapng: &Path,
    provoke: impl FnOnce(),
) -> (serde_json::Value, String) {
    let cap = LiveCapture::start(&[
        "--source",
        sources,
        "--cilium-events-map",
        d.map.to_str().unwrap(),
        "--cilium-socket",
        "/nonexistent.sock",
        "-w",
        pcapng.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    provoke();
    // Let the last samples reach the rings before stopping (the stop drains what is there).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (st, err) = cap.stop();
    assert!(st.success(), "dropscope failed: {err}");
    (read_json(stats), err)
}

/// The rows of one flow, as (origin, reason_name, packets).
fn rows(
    s: &serde_json::Value,
    ns: &NetnsPair,
    sport: u16,
    dport: u16,
) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = flow_rows(
        s,
        &ns.ip4_a.to_string(),
        &ns.ip4_b.to_string(),
        sport,
        dport,
    )
    .iter()
    .map(|f| {
        (
            f["origin"].as_str().unwrap().to_string(),
            f["reason_name"].as_str().unwrap().to_string(),
            f["packets"].as_u64().unwrap(),
        )
    })
    .collect();
    v.sort();
    v
}

#[test]
fn datapath_drops_are_read_from_the_pinned_array_exactly() {
    require_root!();
    let Some(d) = Datapath::create() else { return };
    let ns = NetnsPair::new();
    d.attach(&ns.b, &ns.veth_b);
    let dir = TempDir::new("cdp");
    let (stats, pcapng) = (dir.path("s.json"), dir.path("c.pcapng"));
    const N: usize = 50;
    const M: usize = 30;
    let (s, err) = capture_around("cilium-datapath", &d, &stats, &pcapng, || {
        ns.send_udp(false, 40011, 7011, N, 32);
        ns.send_udp(false, 40012, 7012, M, 32);
    });
    for (sport, dport, n) in [(40011, 7011, N), (40012, 7012, M)] {
        let f = flow_rows(
            &s,
            &ns.ip4_a.to_string(),
            &ns.ip4_b.to_string(),
            sport,
            dport,
        );
        assert_eq!(f.len(), 1, "one row for port {dport}: {f:#?}\n{err}");
        let f = f[0];
        assert_eq!(f["reason_name"], "Policy denied", "{f}");
        assert_eq!(f["origin"], "cilium", "{f}");
        assert_eq!(f["src_identity"], SRC_IDENTITY, "{f}");
        assert_eq!(f["dst_identity"], DST_IDENTITY, "{f}");
        assert_eq!(f["packets"], n as u64, "{f}");
        assert_eq!(f["bytes"], (n * 74) as u64, "{f}");
    }
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    assert_eq!(
        s["accounting"]["stage_losses"]
            .as_array()
            .map_or(0, |a| a.len()),
        0,
        "nothing lost or skipped: {}",
        s["accounting"]["stage_losses"]
    );
    assert!(
        err.contains(&format!("cilium-datapath {}", d.map.display())),
        "the source is described: {err}"
    );
    assert!(
        err.contains(
            "cilium_events was read directly: the Cilium agent must restart to get its reader back"
        ),
        "the restart note: {err}"
    );
    if !tshark_available() {
        eprintln!("SKIPPED (tshark part): tshark not installed");
        return;
    }
    assert_eq!(tshark_count(&pcapng, "frame"), N + M);
    assert_eq!(
        tshark_count(&pcapng, "frame.comment contains \"Policy denied\""),
        N + M
    );
    for (dport, n) in [(7011, N), (7012, M)] {
        let filter = format!(
            "frame.comment contains \"Policy denied\" && ip.src == {} && ip.dst == {} && udp.dstport == {dport}",
            ns.ip4_a, ns.ip4_b
        );
        assert_eq!(tshark_count(&pcapng, &filter), n, "{filter}");
    }
}

#[test]
fn kernel_and_datapath_drops_are_counted_by_both_and_joined_into_one_record() {
    require_root!();
    let Some(d) = Datapath::create() else { return };
    let ns = NetnsPair::new();
    d.attach(&ns.b, &ns.veth_b);
    let dir = TempDir::new("cdpk");
    let (stats, pcapng) = (dir.path("s.json"), dir.path("c.pcapng"));
    const N: usize = 40;
    let (s, err) = capture_around("kernel,cilium-datapath", &d, &stats, &pcapng, || {
        ns.send_udp(false, 40013, 7013, N, 32)
    });
    assert_eq!(
        rows(&s, &ns, 40013, 7013),
        [
            ("cilium".to_string(), "Policy denied".to_string(), N as u64),
            ("kernel".to_string(), "TC_INGRESS".to_string(), N as u64),
        ],
        "{err}"
    );
    assert_eq!(s["accounting"]["reconciled"], true, "{err}");
    // Joined: each packet is one record, the kernel's, with Cilium's reason and identities.
    assert_eq!(s["outputs"]["joined_not_written"], N as u64, "{err}");
    assert!(
        err.contains(&format!("{N} of {N} kernel drops at tc joined")),
        "{err}"
    );
    if tshark_available() {
        let flow = format!("ip.dst == {} && udp.dstport == 7013", ns.ip4_b);
        assert_eq!(tshark_count(&pcapng, &flow), N, "one frame per packet");
        let joined = format!(
            "{flow} && frame.comment contains \"TC_INGRESS\" && frame.comment contains \"← Cilium: Policy denied (133) identity 4242->12345\""
        );
        assert_eq!(tshark_count(&pcapng, &joined), N, "{joined}");
    }
}

#[test]
fn refused_while_the_agent_socket_answers() {
    // No root needed: the refusal comes before the map is opened.
    let dir = TempDir::new("cdpr");
    let sock = dir.path("monitor1_2.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).expect("listen");
    let map = dir.path("cilium_events");
    std::fs::write(&map, b"").unwrap();
    let (stats, pcapng) = (dir.path("s.json"), dir.path("c.pcapng"));
    for sources in ["cilium-datapath", "kernel,cilium-datapath"] {
        fails_with(
            &[
                "capture",
                "--source",
                sources,
                "--cilium-events-map",
                map.to_str().unwrap(),
                "--cilium-socket",
                sock.to_str().unwrap(),
                "-w",
                pcapng.to_str().unwrap(),
                "--stats-json",
                stats.to_str().unwrap(),
            ],
            &[&format!(
                "the Cilium agent's monitor socket {} answers: use --source cilium (reading cilium_events directly would take it from the agent)",
                sock.display()
            )],
        );
        assert!(!stats.exists() && !pcapng.exists(), "nothing is written");
        let mut left: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["cilium_events", "monitor1_2.sock"]);
    }
}

#[test]
fn a_missing_map_is_named() {
    let dir = TempDir::new("cdpm");
    let map = dir.path("no-such-map");
    fails_with(
        &[
            "capture",
            "--source",
            "cilium-datapath",
            "--cilium-events-map",
            map.to_str().unwrap(),
            "--cilium-socket",
            dir.path("none.sock").to_str().unwrap(),
        ],
        &[
            map.to_str().unwrap(),
            "--cilium-events-map",
            "does not exist",
        ],
    );
    fails_with(
        &["capture", "--source", "cilium,cilium-datapath"],
        &["exclude each other"],
    );
}
