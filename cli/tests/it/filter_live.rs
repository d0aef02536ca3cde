//! Root tests of capture expressions and selectors on live drops, in network namespaces the
//! tests create: the real eBPF program decides in the kernel (and, for comparison, the same
//! classic BPF runs in user space); the capture file must hold exactly the selected flows'
//! packets, and the books must say what was turned away, per reason.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// Packets in a capture file per (destination address, protocol, destination port).
fn packets_by_dst(file: &Path) -> BTreeMap<(String, String, u16), u64> {
    let o = sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "ip.dst",
        "-e",
        "ipv6.dst",
        "-e",
        "udp.dstport",
        "-e",
        "tcp.dstport",
    ]);
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let f: Vec<&str> = l.split(',').collect();
        // The file's trailing custom block (the kernel table) is a record with no fields.
        if f.len() < 4 || f.iter().all(|x| x.is_empty()) {
            continue;
        }
        let dst = if f[0].is_empty() { f[1] } else { f[0] };
        let (proto, port) = if f[2].is_empty() {
            ("tcp", f[3])
        } else {
            ("udp", f[2])
        };
        let port: u16 = port.parse().unwrap_or(0);
        *m.entry((dst.to_string(), proto.to_string(), port))
            .or_insert(0) += 1;
    }
    m
}

/// `n` TCP connections from A to B:`port` (closed: each SYN is dropped, NO_SOCKET, and
/// answered with a reset).
fn tcp_refused(ns: &NetnsPair, port: u16, n: usize) {
    let dst: SocketAddr = (ns.ip4_b, port).into();
    ns.in_ns(&ns.a.clone(), move || {
        for _ in 0..n {
            let r = TcpStream::connect_timeout(&dst, Duration::from_secs(2));
            assert!(r.is_err(), "port {port} is open in B");
        }
    });
}

/// A mix of flows dropped in B (all NO_SOCKET): IPv4 and IPv6, UDP and TCP, several ports.
/// The expression selects 15 of the 30 drops; the kernel (and, in a second capture at the
/// same time, user space) decides.
#[test]
fn an_expression_keeps_exactly_its_flows_in_the_kernel_and_in_user_space() {
    require_root!();
    if !tshark_available() {
        eprintln!("SKIPPED: no tshark");
        return;
    }
    let ns = NetnsPair::new();
    let dir = TempDir::new("filter-live");
    let expr = "(udp and dst port 2000) or (ip6 and udp port 1000) or tcp dst port 4000";
    // The same selection with 300 more hosts that match nothing: too long for the kernel
    // program's reserve, so the translator refuses it and it runs in user space.
    let hosts: Vec<String> = (0..300)
        .map(|i| format!("ip host 198.18.{}.{}", i / 200, i % 200 + 1))
        .collect();
    let long = format!("{expr} or {}", hosts.join(" or "));
    let start = |tag: &str, extra: &[&str]| {
        let w = dir.path(&format!("{tag}.pcapng"));
        let j = dir.path(&format!("{tag}.json"));
        let mut args: Vec<String> = vec![
            "-q".into(),
            "--netns".into(),
            ns.b.clone(),
            "-w".into(),
            w.to_str().unwrap().into(),
            "--stats-json".into(),
            j.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--long") {
            args.push(expr.into());
        } else {
            args.retain(|a| a != "--long");
            args.push(long.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        (LiveCapture::start(&refs), w, j)
    };
    let (kernel, kw, kj) = start("k", &[]);
    let (user, uw, uj) = start("u", &["--user-space-filter"]);
    let (too_long, lw, lj) = start("l", &["--long"]);

    ns.send_udp(false, 40001, 1000, 5, 20);
    ns.send_udp(false, 40002, 2000, 6, 20);
    ns.send_udp(false, 40003, 3000, 7, 20);
    ns.send_udp(true, 40004, 1000, 3, 20);
    ns.send_udp(true, 40005, 2000, 4, 20);
    tcp_refused(&ns, 4000, 2);
    tcp_refused(&ns, 5000, 3);
    std::thread::sleep(Duration::from_millis(300));

    let (st, kerr) = kernel.stop();
    assert!(st.success(), "{kerr}");
    let (st, uerr) = user.stop();
    assert!(st.success(), "{uerr}");
    assert!(!kerr.contains("runs in user space"), "{kerr}");
    assert!(uerr.contains("runs in user space"), "{uerr}");
    let (st, lerr) = too_long.stop();
    assert!(st.success(), "{lerr}");
    assert!(
        lerr.contains("runs in user space") && lerr.contains("instructions"),
        "{lerr}"
    );

    let b4 = ns.ip4_b.to_string();
    let b6 = ns.ip6_b.to_string();
    let want = BTreeMap::from([
        ((b4.clone(), "tcp".to_string(), 4000), 2),
        ((b4.clone(), "udp".to_string(), 2000), 6),
        ((b6.clone(), "udp".to_string(), 1000), 3),
        ((b6.clone(), "udp".to_string(), 2000), 4),
    ]);
    assert_eq!(packets_by_dst(&kw), want, "kernel path: {kerr}");
    assert_eq!(packets_by_dst(&uw), want, "user-space path: {uerr}");
    assert_eq!(packets_by_dst(&lw), want, "too long for the kernel: {lerr}");

    let k = read_json(&kj);
    let u = read_json(&uj);
    assert_eq!(k["accounting"]["reconciled"], true, "{kerr}");
    assert_eq!(u["accounting"]["reconciled"], true, "{uerr}");
    // Kernel: 15 delivered; the other 15 of B's drops are among those it turned away (with
    // every drop outside B, which --netns turns away too).
    assert_eq!(reason_field(&k, "NO_SOCKET", "delivered"), 15, "{kerr}");
    assert_eq!(
        reason_field(&k, "NO_SOCKET", "observed") - reason_field(&k, "NO_SOCKET", "filtered"),
        15,
        "{kerr}"
    );
    assert!(reason_field(&k, "NO_SOCKET", "filtered") >= 15, "{kerr}");
    assert_eq!(reason_field(&k, "NO_SOCKET", "filtered_user"), 0, "{kerr}");
    // User space: the kernel selected B's 30 drops, the expression turned 15 away.
    assert_eq!(reason_field(&u, "NO_SOCKET", "delivered"), 30, "{uerr}");
    assert_eq!(reason_field(&u, "NO_SOCKET", "filtered_user"), 15, "{uerr}");
    assert_eq!(reason_field(&u, "NO_SOCKET", "processed"), 15, "{uerr}");
    let l = read_json(&lj);
    assert_eq!(l["accounting"]["reconciled"], true, "{lerr}");
    assert_eq!(reason_field(&l, "NO_SOCKET", "filtered_user"), 15, "{lerr}");
    assert_eq!(reason_field(&l, "NO_SOCKET", "processed"), 15, "{lerr}");
}

/// Reason, namespace and interface selectors, each in its own capture at the same time:
/// drops happen in both namespaces (A -> B and B -> A to closed ports).
#[test]
fn selectors_pick_reason_namespace_and_interface() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("filter-sel");
    let if_b = ns.ifindex(&ns.b, &ns.veth_b).to_string();
    let run = |tag: &str, args: &[&str]| {
        let j = dir.path(&format!("{tag}.json"));
        let mut a: Vec<&str> = vec!["-q", "--stats-json", j.to_str().unwrap()];
        a.extend_from_slice(args);
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        (LiveCapture::start(&refs), j)
    };
    let only_a = run("a", &["--netns", &ns.a]);
    let b_not_nosock = run("bnot", &["--netns", &ns.b, "--not-reason", "NO_SOCKET"]);
    let b_iface = run(
        "bif",
        &["--netns", &ns.b, "--reason", "no_socket", "-i", &if_b],
    );
    let b_other_if = run("boif", &["--netns", &ns.b, "-i", "999999"]);
    // `-i lo` names our own loopback: B's loopback has the same ifindex (1) but is not it.
    let our_lo = run("ourlo", &["-i", "lo", "udp dst port 3333"]);
    let b_lo = run("blo", &["--netns", &ns.b, "-i", "1", "udp dst port 3333"]);

    ns.send_udp(false, 41001, 1111, 4, 10);
    // B -> A: three drops in A.
    let dst: SocketAddr = (ns.ip4_a, 2222).into();
    let src: SocketAddr = (ns.ip4_b, 41002).into();
    ns.in_ns(&ns.b.clone(), move || {
        let s = std::net::UdpSocket::bind(src).unwrap();
        for _ in 0..3 {
            s.send_to(&[1u8; 10], dst).unwrap();
        }
        // Two drops on B's loopback.
        let lo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..2 {
            lo.send_to(&[2u8; 10], "127.0.0.1:3333").unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let mut got = BTreeMap::new();
    for (tag, (cap, j)) in [
        ("a", only_a),
        ("bnot", b_not_nosock),
        ("bif", b_iface),
        ("boif", b_other_if),
        ("ourlo", our_lo),
        ("blo", b_lo),
    ] {
        let (st, err) = cap.stop();
        assert!(st.success(), "{tag}: {err}");
        let s = read_json(&j);
        assert_eq!(s["accounting"]["reconciled"], true, "{tag}: {err}");
        got.insert(tag, (reason_field(&s, "NO_SOCKET", "delivered"), err));
    }
    assert_eq!(got["a"].0, 3, "{}", got["a"].1);
    assert_eq!(got["bnot"].0, 0, "{}", got["bnot"].1);
    assert_eq!(got["bif"].0, 4, "{}", got["bif"].1);
    assert_eq!(got["boif"].0, 0, "{}", got["boif"].1);
    assert_eq!(got["ourlo"].0, 0, "{}", got["ourlo"].1);
    assert_eq!(got["blo"].0, 2, "{}", got["blo"].1);
}

/// Storm mode (`--exemplars 2`, and counts only) with an expression: the kernel table counts
/// only the drops the expression selects, exactly, and copies at most the budget of them.
#[test]
fn an_expression_selects_what_the_kernel_table_counts() {
    require_root!();
    let ns = NetnsPair::new();
    let dir = TempDir::new("filter-storm");
    let expr = "udp dst port 2000 or udp dst port 3000";
    let start = |tag: &str, n: &str| {
        let w = dir.path(&format!("{tag}.pcapng"));
        let j = dir.path(&format!("{tag}.json"));
        let args = [
            "-q",
            "--netns",
            ns.b.as_str(),
            "--exemplars",
            n,
            "-w",
            w.to_str().unwrap(),
            "--stats-json",
            j.to_str().unwrap(),
            expr,
        ];
        (LiveCapture::start(&args), j)
    };
    let (two, two_j) = start("two", "2");
    let (zero, zero_j) = start("zero", "0");
    ns.send_udp(false, 42001, 1000, 5, 20);
    ns.send_udp(false, 42002, 2000, 6, 20);
    ns.send_udp(false, 42003, 3000, 7, 20);
    std::thread::sleep(Duration::from_millis(300));
    for (cap, j, budget) in [(two, two_j, 2u64), (zero, zero_j, 0)] {
        let (st, err) = cap.stop();
        assert!(st.success(), "{err}");
        let s = read_json(&j);
        assert_eq!(s["accounting"]["reconciled"], true, "{err}");
        let mut rows = BTreeMap::new();
        for r in s["storm"]["flows"].as_array().expect("storm.flows") {
            if r["dst"] == ns.ip4_b.to_string() {
                let e = rows
                    .entry(r["dport"].as_u64().unwrap())
                    .or_insert((0u64, 0u64));
                e.0 += r["packets"].as_u64().unwrap();
                e.1 += r["copied"].as_u64().unwrap();
            }
        }
        let drops: BTreeMap<u64, u64> = rows.iter().map(|(p, (n, _))| (*p, *n)).collect();
        assert_eq!(drops, BTreeMap::from([(2000, 6), (3000, 7)]), "{err}");
        for (port, (_, copied)) in &rows {
            assert!(
                *copied <= budget,
                "port {port}: {copied} copies, budget {budget}"
            );
        }
        assert_eq!(reason_field(&s, "NO_SOCKET", "in_table"), 13, "{err}");
        assert_eq!(
            reason_field(&s, "NO_SOCKET", "delivered"),
            rows.values().map(|(_, c)| c).sum::<u64>(),
            "{err}"
        );
    }
}
