//! `capture --packets`: every packet on an interface beside the drops, in one pcapng. Root
//! tests in network namespaces they create: real tc programs on a real veth, the file read
//! back by tshark, the interface's own counters as the ground truth for what passed.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// The interface's own packet counters (rx, tx), read inside its namespace.
fn if_counters(ns: &str, dev: &str) -> (u64, u64) {
    let read = |what: &str| -> u64 {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/statistics/{what}_packets"),
        ]);
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    (read("rx"), read("tx"))
}

/// No IPv6 on the pair: its autoconfiguration chatter (MLD, router solicitations) would
/// pass the interface too, at times of its own.
fn quiet_pair() -> NetnsPair {
    let p = NetnsPair::new();
    for (ns, dev) in [(&p.a, &p.veth_a), (&p.b, &p.veth_b)] {
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
        ]);
    }
    // Whatever the link's coming up sent is over before a capture starts.
    std::thread::sleep(Duration::from_millis(300));
    p
}

/// (frame number, time, direction flags or "", comment, tshark's summary) of a packet.
type Frame = (u64, f64, String, String, String);

/// Every packet of a file.
fn frames(file: &Path) -> Vec<Frame> {
    let o = sh(&[
        "tshark",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.number",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.packet_flags_direction",
        "-e",
        "frame.comment",
        "-e",
        "_ws.col.Info",
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(5, '|').collect();
            // The trailing custom block (the kernel table) has no frame fields.
            let n = f.first()?.parse().ok()?;
            Some((
                n,
                f.get(1)?.parse().ok()?,
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
                f.get(4)?.to_string(),
            ))
        })
        .collect()
}

fn row<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["accounting"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no ledger row {name}: {}", s["accounting"]))
}

/// A TCP connection that succeeds (a few bytes each way, closed by both), one to a closed
/// port, two UDP datagrams to a closed port: from A to B.
fn conversation(p: &NetnsPair, open: u16, closed: u16, udp_closed: u16) {
    let server = p.in_ns(&p.b.clone(), || {
        TcpListener::bind((p.ip4_b, open)).expect("listen in B")
    });
    std::thread::scope(|s| {
        let srv = s.spawn(|| {
            let (mut c, _) = server.accept().expect("accept");
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).expect("read");
            c.write_all(b"world").expect("write");
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).expect("read to end");
        });
        let dst: SocketAddr = (p.ip4_b, open).into();
        p.in_ns(&p.a.clone(), || {
            let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).expect("connect");
            c.write_all(b"hello").expect("write");
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).expect("read");
            c.shutdown(std::net::Shutdown::Both).expect("shutdown");
        });
        srv.join().expect("server");
    });
    let refused: SocketAddr = (p.ip4_b, closed).into();
    p.in_ns(&p.a.clone(), || {
        assert!(TcpStream::connect_timeout(&refused, Duration::from_secs(2)).is_err());
        let u = UdpSocket::bind((p.ip4_a, 0)).expect("bind");
        for _ in 0..2 {
            u.send_to(b"ping", (p.ip4_b, udp_closed)).expect("send");
            // One at a time: ICMP's rate limit is not tested here.
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // The last FIN/ACK exchange and the ICMP replies are on the wire by now.
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn conversation_and_its_drops_in_one_file() {
    require_root!();
    if !tshark_available() {
        eprintln!("SKIPPED: tshark missing");
        return;
    }
    let p = quiet_pair();
    let dir = TempDir::new("packets");
    let file = dir.path("conv.pcapng");
    let stats = dir.path("stats.json");
    let iface = format!("{}@{}", p.veth_b, p.b);
    let (open, closed, udp_closed) = (7101u16, 7102u16, 7103u16);
    let cap = LiveCapture::start(&[
        "--packets",
        "-i",
        &iface,
        "-w",
        file.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let (rx0, tx0) = if_counters(&p.b, &p.veth_b);
    conversation(&p, open, closed, udp_closed);
    let (rx1, tx1) = if_counters(&p.b, &p.veth_b);
    let (st, err) = cap.stop();
    assert!(st.success(), "{err}");
    assert!(err.contains("tcx links"), "{err}");
    let (rx, tx) = (rx1 - rx0, tx1 - tx0);
    // SYN, ACK, data, ACK(s), FIN...; SYN; 2 UDP.
    assert!(rx >= 7 && tx >= 6, "rx {rx} tx {tx}");

    let f = frames(&file);
    let inbound = f.iter().filter(|x| x.2 == "0x00000001").count() as u64;
    let outbound = f.iter().filter(|x| x.2 == "0x00000002").count() as u64;
    // The drops of the conversation: not the namespace's own IPv6 chatter (an MLD report
    // dropped as IPV6DISABLED while the interface comes up, say), which is no part of it.
    let chatter = |info: &str| {
        [
            "Multicast Listener Report",
            "Neighbor Solicitation",
            "Router Solicitation",
            "Neighbor Advertisement",
        ]
        .iter()
        .any(|c| info.contains(c))
    };
    let drops: Vec<_> = f
        .iter()
        .filter(|x| x.2.is_empty() && !chatter(&x.4))
        .collect();
    // Every packet the interface received and sent, each once, with its direction.
    assert_eq!((inbound, outbound), (rx, tx), "{f:#?}");
    // The three drops (SYN to the closed port, two datagrams), with their reason, and no
    // direction: they are not packets seen passing.
    assert_eq!(drops.len(), 3, "{f:#?}");
    assert!(
        drops.iter().all(|d| d.3.starts_with("NO_SOCKET (3)")),
        "{drops:#?}"
    );
    assert_eq!(f.len() as u64, rx + tx + 3);
    // One clock, time order.
    assert!(f.windows(2).all(|w| w[0].1 <= w[1].1), "{f:#?}");
    let count = |filter: &str| tshark_count(&file, filter);
    let dirf = "frame.packet_flags_direction";
    // The refused connection: SYN in, RST out, and the SYN again as the drop.
    let syn_closed = format!("tcp.dstport == {closed} && tcp.flags.syn == 1");
    assert_eq!(count(&format!("{syn_closed} && {dirf} == 1")), 1);
    assert_eq!(
        count(&format!(
            "tcp.srcport == {closed} && tcp.flags.reset == 1 && {dirf} == 2"
        )),
        1
    );
    assert_eq!(
        count(&format!(
            "{syn_closed} && frame.comment contains \"NO_SOCKET\""
        )),
        1
    );
    // The UDP flow: in twice, dropped twice, and B's port-unreachable replies out.
    let udp = format!("udp.dstport == {udp_closed} && !icmp");
    assert_eq!(count(&format!("{udp} && {dirf} == 1")), 2);
    assert_eq!(
        count(&format!("{udp} && frame.comment contains \"NO_SOCKET\"")),
        2
    );
    assert_eq!(
        count(&format!("icmp.type == 3 && icmp.code == 3 && {dirf} == 2")),
        2
    );
    // The good connection: the handshake both ways, data both ways, no drop.
    assert_eq!(
        count(&format!(
            "tcp.dstport == {open} && tcp.flags.syn == 1 && tcp.flags.ack == 0 && {dirf} == 1"
        )),
        1
    );
    assert_eq!(
        count(&format!(
            "tcp.srcport == {open} && tcp.flags.syn == 1 && tcp.flags.ack == 1 && {dirf} == 2"
        )),
        1
    );
    assert_eq!(
        count(&format!("tcp.port == {open} && tcp.payload && {dirf} == 1")),
        1
    );
    assert_eq!(
        count(&format!("tcp.port == {open} && tcp.payload && {dirf} == 2")),
        1
    );
    assert_eq!(count(&format!("tcp.port == {open} && frame.comment")), 0);
    // The drop comes after the packet passed the interface.
    let at = |pred: &dyn Fn(&Frame) -> bool| f.iter().find(|x| pred(x)).map(|x| x.0).unwrap();
    let closed_s = closed.to_string();
    let syn_in = at(&|x| x.2 == "0x00000001" && x.4.contains(&closed_s) && x.4.contains("[SYN]"));
    let syn_drop = at(&|x| x.2.is_empty() && x.4.contains(&closed_s));
    assert!(syn_in < syn_drop, "{f:#?}");

    // The ledger: per interface and direction, seen = delivered (+ 0 filtered + 0 lost).
    let s = read_json(&stats);
    let name_in = format!("packets {iface} in");
    let name_out = format!("packets {iface} out");
    for (name, n, dir) in [(&name_in, rx, "in"), (&name_out, tx, "out")] {
        let r = row(&s, name);
        assert_eq!(r["observed"], n, "{r}");
        assert_eq!(r["delivered"], n, "{r}");
        assert_eq!(r["processed"], n, "{r}");
        assert_eq!(r["filtered"], 0, "{r}");
        assert_eq!(r["lost_ring"], 0, "{r}");
        assert_eq!(r["direction"], dir, "{r}");
        assert_eq!(r["ifindex"], p.ifindex(&p.b, &p.veth_b), "{r}");
        assert_eq!(r["netns"], p.inode(&p.b), "{r}");
    }
    assert_eq!(row(&s, "NO_SOCKET")["delivered"], 3);
    assert_eq!(s["accounting"]["reconciled"], true);
    // Flows: the good connection, the refused one, the UDP flow, the ICMP replies; the
    // refused connection and the UDP flow had drops.
    assert_eq!(
        s["accounting"]["packet_flows"]["captured"], 4,
        "{}",
        s["accounting"]
    );
    assert_eq!(s["accounting"]["packet_flows"]["with_drops"], 2);
    assert!(
        err.contains("packets: 4 flows captured, 2 of them with drops"),
        "{err}"
    );
    // Interfaces described once: one interface in the file, named as given.
    let o = sh(&["capinfos", "-I", file.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("Number of interfaces in file: 1"), "{info}");
    assert!(info.contains(&iface), "{info}");
}

#[test]
fn filter_and_selectors_apply_to_packets_as_to_drops() {
    require_root!();
    if !tshark_available() {
        eprintln!("SKIPPED: tshark missing");
        return;
    }
    let p = quiet_pair();
    let dir = TempDir::new("packets-filter");
    let (open, closed, udp_closed) = (7201u16, 7202u16, 7203u16);
    let iface = format!("{}@{}", p.veth_b, p.b);
    let udp_file = dir.path("udp.pcapng");
    let udp_stats = dir.path("udp.json");
    let ns_file = dir.path("ns.pcapng");
    let ns_stats = dir.path("ns.json");
    // Two captures at once: an expression, and a namespace selector that names the other
    // side's namespace (nothing on this interface is there).
    let expr = format!("udp port {udp_closed}");
    let by_expr = LiveCapture::start(&[
        "--packets",
        "-i",
        &iface,
        "-w",
        udp_file.to_str().unwrap(),
        "--stats-json",
        udp_stats.to_str().unwrap(),
        &expr,
    ]);
    let other_ns = p.inode(&p.a).to_string();
    let by_ns = LiveCapture::start(&[
        "--packets",
        "-i",
        &iface,
        "--netns",
        &other_ns,
        "-w",
        ns_file.to_str().unwrap(),
        "--stats-json",
        ns_stats.to_str().unwrap(),
    ]);
    let (rx0, tx0) = if_counters(&p.b, &p.veth_b);
    conversation(&p, open, closed, udp_closed);
    let (rx1, tx1) = if_counters(&p.b, &p.veth_b);
    let (rx, tx) = (rx1 - rx0, tx1 - tx0);
    for c in [by_expr, by_ns] {
        let (st, err) = c.stop();
        assert!(st.success(), "{err}");
    }
    let dirf = "frame.packet_flags_direction";
    // The expression keeps the two datagrams in and their two drops; not the ICMP replies
    // (not UDP), not the TCP connections.
    assert_eq!(frames(&udp_file).len(), 4, "{:#?}", frames(&udp_file));
    assert_eq!(
        tshark_count(
            &udp_file,
            &format!("udp.dstport == {udp_closed} && {dirf} == 1")
        ),
        2
    );
    assert_eq!(
        tshark_count(&udp_file, "frame.comment contains \"NO_SOCKET (3)\""),
        2
    );
    let s = read_json(&udp_stats);
    let r_in = row(&s, &format!("packets {iface} in"));
    let r_out = row(&s, &format!("packets {iface} out"));
    assert_eq!(
        (r_in["observed"].as_u64(), r_in["delivered"].as_u64()),
        (Some(rx), Some(2))
    );
    assert_eq!(r_in["filtered"].as_u64(), Some(rx - 2));
    assert_eq!(
        (r_out["observed"].as_u64(), r_out["delivered"].as_u64()),
        (Some(tx), Some(0))
    );
    assert_eq!(r_out["filtered"].as_u64(), Some(tx));
    // The TCP SYN's drop is turned away too, per reason.
    assert_eq!(row(&s, "NO_SOCKET")["filtered"], 1);
    assert_eq!(row(&s, "NO_SOCKET")["delivered"], 2);
    assert_eq!(s["accounting"]["reconciled"], true);

    // --netns of the other namespace: every packet and every drop here is turned away.
    assert_eq!(frames(&ns_file).len(), 0);
    let s = read_json(&ns_stats);
    let r_in = row(&s, &format!("packets {iface} in"));
    let r_out = row(&s, &format!("packets {iface} out"));
    assert_eq!(
        (r_in["observed"].as_u64(), r_in["filtered"].as_u64()),
        (Some(rx), Some(rx))
    );
    assert_eq!(
        (r_out["observed"].as_u64(), r_out["filtered"].as_u64()),
        (Some(tx), Some(tx))
    );
    assert_eq!(s["accounting"]["reconciled"], true);
}

/// Our programs on an interface: tcx links (as the kernel lists them), clsact filters (tc).
fn ours_attached(ns: &str, dev: &str) -> (bool, bool) {
    let iface = engine::kernel::packets::resolve(&format!("{dev}@{ns}")).expect("resolve");
    let tcx = engine::kernel::packets::tcx_programs(&iface)
        .expect("query tcx")
        .iter()
        .any(|n| n.starts_with("pkt_"));
    let mut filters = String::new();
    for at in ["ingress", "egress"] {
        let o = sh(&[
            "ip", "netns", "exec", ns, "tc", "filter", "show", "dev", dev, at,
        ]);
        filters.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    (tcx, filters.contains("pkt_"))
}

#[test]
fn nothing_left_on_the_interface_after_exit_or_kill_9() {
    require_root!();
    let p = quiet_pair();
    let iface = format!("{}@{}", p.veth_b, p.b);
    let start = |extra: &[&str]| {
        let mut args = vec!["--packets", "-i", iface.as_str(), "-q"];
        args.extend_from_slice(extra);
        LiveCapture::start(&args)
    };
    // tcx: removed on a normal exit, and with the process after kill -9.
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let c = start(&[]);
        assert_eq!(ours_attached(&p.b, &p.veth_b), (true, false));
        let (st, err) = c.stop_with(signal);
        if signal == libc::SIGINT {
            assert!(st.success(), "{err}");
        }
        // The kernel releases the links with the last reference to them.
        let mut left = ours_attached(&p.b, &p.veth_b);
        for _ in 0..50 {
            if left == (false, false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = ours_attached(&p.b, &p.veth_b);
        }
        assert_eq!(left, (false, false), "after signal {signal}");
    }
    // clsact (what older kernels get): removed on a normal exit; after kill -9 the filters
    // stay, and the next run removes them and says so.
    let c = start(&["--tc-attach", "clsact"]);
    assert_eq!(ours_attached(&p.b, &p.veth_b), (false, true));
    let (st, err) = c.stop();
    assert!(st.success(), "{err}");
    assert_eq!(ours_attached(&p.b, &p.veth_b), (false, false));
    let c = start(&["--tc-attach", "clsact"]);
    let _ = c.stop_with(libc::SIGKILL);
    assert_eq!(ours_attached(&p.b, &p.veth_b), (false, true));
    let c = start(&["--tc-attach", "clsact"]);
    let (st, err) = c.stop();
    assert!(st.success(), "{err}");
    for at in ["ingress", "egress"] {
        assert!(
            err.contains(&format!(
                "removed the {at} filter pkt_{at} a previous run left on {iface}"
            )),
            "{err}"
        );
    }
    assert_eq!(ours_attached(&p.b, &p.veth_b), (false, false));
}

#[test]
fn bad_interfaces_and_namespaces_are_one_line_and_exit_2() {
    fails_with(
        &["capture", "--packets", "-i", "no-such-if0", "-q"],
        &["-i no-such-if0: no interface no-such-if0 in dropscope's network namespace"],
    );
    fails_with(
        &["capture", "--packets", "-i", "lo@no-such-ns-i12", "-q"],
        &["-i lo@no-such-ns-i12: network namespace", "not found"],
    );
    fails_with(
        &["capture", "--packets", "-q"],
        &["--packets needs -i IFACE"],
    );
    fails_with(
        &["capture", "-i", "lo", "-i", "lo", "-q"],
        &["-i is given 2 times: more than one interface needs `capture --packets`"],
    );
    if is_root() {
        let p = NetnsPair::new();
        let spec = format!("nosuch0@{}", p.b);
        fails_with(
            &["capture", "--packets", "-i", &spec, "-q"],
            &[&format!(
                "no interface nosuch0 in network namespace {}",
                p.b
            )],
        );
    }
}
