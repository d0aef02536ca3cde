//! `dropscope top`: a file replayed into the plain view gives the counts `replay` gives; as
//! root, a known flood between namespaces this test creates shows its exact counts in the
//! plain view (with every drop copied, and with counts only), and in the full-screen view
//! driven in tmux, whose keys change the view and whose `q` gives the terminal back.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// (drops, bytes) of the plain flow line of `flow` (`A:P -> B:Q udp`), if there is one.
fn flow_line(block: &str, flow: &str) -> Option<(u64, u64)> {
    block
        .lines()
        .find(|l| l.starts_with("flow ") && l.contains(&format!("  {flow}  ")))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t[1].parse().unwrap(), t[3].parse().unwrap())
        })
}

/// Sum of the first number of the lines starting with `tag`.
fn sum_of(block: &str, tag: &str) -> u64 {
    block
        .lines()
        .filter(|l| l.starts_with(tag))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_replayed_file_shows_the_counts_replay_gives() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap/ours.pcapng");
    let out = run_ok(dropscope().args([
        "top",
        "-r",
        file.to_str().unwrap(),
        "--speed",
        "0",
        "--plain",
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = last_block(&text);
    assert!(last.contains("[input finished]"), "{text}");
    // 8 packets: 6 drops and 2 ordinary packets (not drops, not in the total).
    assert!(last.contains("drops 6 total"), "{last}");
    let reasons = reason_lines(last);
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("NO_SOCKET".to_string(), 2),
            ("Policy denied".to_string(), 2),
            ("SOCKET_RCVBUFF".to_string(), 2),
            ("captured".to_string(), 2),
        ]),
        "{last}"
    );
    // The drop site as the file's capture named it (this machine's symbols differ).
    assert!(
        last.lines().any(|l| l.starts_with("location ")
            && l.ends_with("NO_SOCKET at __udp4_lib_rcv+0x5b4")
            && l.split_whitespace().nth(1) == Some("2")),
        "{last}"
    );
    // Every IPv4 row of replay's stats JSON is a flow line with the same drops and bytes.
    let dir = TempDir::new("top-replay");
    let stats = dir.path("s.json");
    run_ok(dropscope().args([
        "replay",
        file.to_str().unwrap(),
        "-q",
        "--stats-json",
        stats.to_str().unwrap(),
    ]));
    let s = read_json(&stats);
    let mut checked = 0;
    for r in s["flows"].as_array().unwrap() {
        if r["family"] != "ipv4" {
            continue;
        }
        let flow = format!(
            "{}:{} -> {}:{} {}",
            r["src"].as_str().unwrap(),
            r["sport"],
            r["dst"].as_str().unwrap(),
            r["dport"],
            r["proto_name"].as_str().unwrap()
        );
        assert_eq!(
            flow_line(last, &flow),
            Some((r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())),
            "{flow}: {last}"
        );
        checked += 1;
    }
    assert_eq!(checked, 7, "{s:#}");
}

#[test]
fn bad_top_flags_are_one_line_with_the_fix() {
    fails_with(&["top", "--json"], &["leave out --json"]);
    fails_with(
        &["top", "--stats-json", "/tmp/x.json"],
        &["leave out --stats-json"],
    );
    fails_with(&["top", "-r", "x.pcap", "--speed", "-1"], &["--speed -1"]);
    fails_with(&["top", "--rows", "0"], &["at least 1"]);
    fails_with(&["top", "--format", "pcap"], &["--format needs -w FILE"]);
}

#[test]
fn plain_view_counts_a_live_flood_exactly() {
    require_root!();
    let ns = NetnsPair::new();
    let (a, b) = (ns.ip4_a.to_string(), ns.ip4_b.to_string());
    let dir = TempDir::new("top-live");
    let file = dir.path("top.pcapng");
    // Every drop copied (user space counts the copies), then counts only (the kernel table
    // counts every drop, nothing is copied).
    for extra in [&[][..], &["--exemplars", "0"][..]] {
        let before = ns.udp_no_ports();
        let mut args = vec!["--netns", ns.b.as_str()];
        args.extend_from_slice(extra);
        if extra.is_empty() {
            args.extend_from_slice(&["-w", file.to_str().unwrap()]);
        }
        // The namespaces' own IPv6 chatter (neighbour solicitations) stays out.
        args.push("udp");
        let out = plain_top(&args, || {
            ns.send_udp(false, 41001, 9, 300, 20);
            ns.send_udp(false, 41002, 9, 200, 20);
        });
        assert_eq!(ns.udp_no_ports() - before, 500, "{extra:?}");
        let last = last_block(&out);
        assert!(last.contains("drops 500 total"), "{extra:?}: {out}");
        assert!(
            last.contains("counts: kernel drops from the kernel flow table (every drop, exact)"),
            "{last}"
        );
        // Ethernet 14 + IPv4 20 + UDP 8 + 20 bytes.
        assert_eq!(
            flow_line(last, &format!("{a}:41001 -> {b}:9 udp")),
            Some((300, 300 * 62)),
            "{extra:?}: {last}"
        );
        assert_eq!(
            flow_line(last, &format!("{a}:41002 -> {b}:9 udp")),
            Some((200, 200 * 62)),
            "{last}"
        );
        assert_eq!(
            reason_lines(last),
            BTreeMap::from([("NO_SOCKET".to_string(), 500)]),
            "{last}"
        );
        assert_eq!(sum_of(last, "location "), 500, "{last}");
        assert_eq!(sum_of(last, "where "), 500, "{last}");
        assert!(last.contains("loss: ring 0 lost, table full 0"), "{last}");
        // A block a refresh while it ran, each header's total never going down.
        let totals: Vec<u64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("dropscope top "))
            .map(|l| {
                let t = l.split("drops ").nth(1).unwrap();
                t.split_whitespace().next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(totals.len() >= 2, "{out}");
        assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    }
    // The file top wrote while it watched holds every copy, and replays to the same flows.
    let stats = dir.path("s.json");
    run_ok(dropscope().args([
        "replay",
        file.to_str().unwrap(),
        "-q",
        "--stats-json",
        stats.to_str().unwrap(),
    ]));
    let s = read_json(&stats);
    assert_eq!(s["accounting"]["reconciled"], true, "{s:#}");
    for (sport, n) in [(41001, 300u64), (41002, 200)] {
        let rows = flow_rows(&s, &a, &b, sport, 9);
        assert_eq!(rows.len(), 1, "{s:#}");
        assert_eq!(rows[0]["packets"], n);
    }
}

/// A tmux session removed on drop.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux (scripts/setup.sh installs it)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn pane(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-200", "-t", &self.0])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.0.as_str()];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until the screen satisfies `ok`; panics with the screen after 30 s.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let p = self.pane();
            if ok(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "waiting for {what}:\n{p}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// Waits for the `stty -a` the shell wrote after top ended: canonical mode and echo back on.
fn assert_line_discipline_restored(stty: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stty.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let modes = std::fs::read_to_string(stty).unwrap_or_default();
    let words: Vec<&str> = modes.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "{modes}"
    );
}

/// The header line of the screen.
fn header(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| l.starts_with("dropscope top "))
        .unwrap_or("")
}

#[test]
fn full_screen_view_in_tmux_shows_exact_counts_keys_work_and_q_restores_the_terminal() {
    require_root!();
    let _area = engine::netns_rig::area_guard();
    let ns = NetnsPair::new();
    let dir = TempDir::new("top-tmux");
    let stty = dir.path("stty.txt");
    let err = dir.path("err.txt");
    let bin = env!("CARGO_BIN_EXE_dropscope");
    let t = Tmux(format!("dstop{}", std::process::id()));
    t.run(&[
        "new-session",
        "-d",
        "-s",
        &t.0,
        "-x",
        "200",
        "-y",
        "60",
        "bash --norc --noprofile",
    ]);
    t.keys(&[
        &format!(
            "PS1='$ '; {bin} top --no-names --no-datapath --interval 200 --netns {} udp 2>{}; echo TOP-EXIT=$?; stty -a > {}",
            ns.b,
            err.display(),
            stty.display()
        ),
        "Enter",
    ]);
    t.wait_for("the view", |p| p.contains("drops per reason"));
    assert_eq!(
        t.run(&["display", "-p", "-t", &t.0, "#{alternate_on}"])
            .trim(),
        "1"
    );
    ns.send_udp(false, 41003, 9, 250, 20);
    let flow = format!("{}:41003 -> {}:9 udp", ns.ip4_a, ns.ip4_b);
    // The flow's row: DROPS first, then /S and BYTES.
    let screen = t.wait_for("the flood's exact count", |p| {
        p.lines().any(|l| {
            l.contains(&flow)
                && l.trim_start_matches('│').split_whitespace().next() == Some("250")
                && l.contains("15500")
        })
    });
    assert!(header(&screen).contains("drops 250 total"), "{screen}");
    // Keys: sort, reason filter, all reasons, pause.
    t.keys(&["s"]);
    t.wait_for("sort by rate", |p| header(p).contains("sort rate"));
    t.keys(&["s"]);
    t.wait_for("sort by bytes", |p| header(p).contains("sort bytes"));
    t.keys(&["r"]);
    t.wait_for("one reason", |p| header(p).contains("reason NO_SOCKET"));
    t.keys(&["a"]);
    t.wait_for("all reasons", |p| !header(p).contains("reason NO_SOCKET"));
    t.keys(&["p"]);
    t.wait_for("paused", |p| header(p).contains("[paused]"));
    t.keys(&["p"]);
    t.wait_for("running", |p| !header(p).contains("[paused]"));
    t.keys(&["q"]);
    let screen = t.wait_for("the shell again", |p| p.contains("TOP-EXIT=0"));
    // The terminal is given back: main screen, cursor shown, line discipline restored.
    assert_eq!(
        t.run(&["display", "-p", "-t", &t.0, "#{alternate_on}"])
            .trim(),
        "0"
    );
    assert_eq!(
        t.run(&["display", "-p", "-t", &t.0, "#{cursor_flag}"])
            .trim(),
        "1"
    );
    assert_line_discipline_restored(&stty);
    // The last frame is left on the terminal as text, with the same count.
    assert_eq!(flow_line(&screen, &flow), Some((250, 250 * 62)), "{screen}");
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(stderr.contains("capturing drops"), "{stderr}");

    // SIGTERM (how systemd and Kubernetes stop a process) gives the terminal back too.
    std::fs::remove_file(&stty).unwrap();
    t.keys(&["clear", "Enter"]);
    t.keys(&[
        &format!(
            "{bin} top --no-names --no-datapath --rows 11 --netns {} udp 2>/dev/null; echo TERM-EXIT=$?; stty -a > {}",
            ns.b,
            stty.display()
        ),
        "Enter",
    ]);
    t.wait_for("the view", |p| p.contains("drops per reason"));
    let pid = sh(&[
        "pgrep",
        "-n",
        "-f",
        "top --no-names --no-datapath --rows 11",
    ]);
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no pid");
    sh(&["kill", "-TERM", &pid]);
    t.wait_for("the shell after SIGTERM", |p| p.contains("TERM-EXIT=0"));
    assert_eq!(
        t.run(&["display", "-p", "-t", &t.0, "#{alternate_on}"])
            .trim(),
        "0"
    );
    assert_line_discipline_restored(&stty);
}
