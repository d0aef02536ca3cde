//! The root tests' network: two fresh namespaces joined by a veth pair, addresses on both
//! (IPv4 and IPv6), neighbours fixed, removed on drop (also when a test fails). The engine's
//! and the CLI's tests share it.
//!
//! Network traffic in tests goes only between namespaces and veth pairs made here.
// Test support: it may unwrap and panic (a failed set-up is a failed test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    // Making a pair creates namespaces: not something `Default` should do.
    clippy::new_without_default
)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};

/// Runs a command; panics with its stderr when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth pair: A (10.x.y.1, fd00:x:y::1) <-> B (.2, ::2).
pub struct NetnsPair {
    /// Held while the pair lives (dropped after the namespaces are deleted).
    _area: AreaGuard,
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub ip4_a: Ipv4Addr,
    pub ip4_b: Ipv4Addr,
    pub ip6_a: Ipv6Addr,
    pub ip6_b: Ipv6Addr,
    /// The veths' MAC addresses, fixed at creation: 02:00:0a:X:Y:01 (A) and :02 (B).
    pub mac_a: [u8; 6],
    pub mac_b: [u8; 6],
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl NetnsPair {
    pub fn new() -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let x = (std::process::id() % 200) as u8 + 20;
        let y = (n % 250) as u8 + 1;
        let p = NetnsPair {
            _area: area_guard(),
            a: format!("dsa{id}"),
            b: format!("dsb{id}"),
            veth_a: format!("dva{id}"),
            veth_b: format!("dvb{id}"),
            ip4_a: Ipv4Addr::new(10, x, y, 1),
            ip4_b: Ipv4Addr::new(10, x, y, 2),
            ip6_a: format!("fd00:{x}:{y}::1").parse().unwrap(),
            ip6_b: format!("fd00:{x}:{y}::2").parse().unwrap(),
            mac_a: [0x02, 0x00, 0x0a, x, y, 0x01],
            mac_b: [0x02, 0x00, 0x0a, x, y, 0x02],
        };
        sh(&["ip", "netns", "add", &p.a]);
        sh(&["ip", "netns", "add", &p.b]);
        sh(&[
            "ip",
            "link",
            "add",
            &p.veth_a,
            "address",
            &mac_text(&p.mac_a),
            "netns",
            &p.a,
            "type",
            "veth",
            "peer",
            "name",
            &p.veth_b,
            "address",
            &mac_text(&p.mac_b),
            "netns",
            &p.b,
        ]);
        for (ns, dev, v4, v6) in [
            (&p.a, &p.veth_a, p.ip4_a, p.ip6_a),
            (&p.b, &p.veth_b, p.ip4_b, p.ip6_b),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                dev,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Neighbours fixed so no ARP/ND traffic or delay interferes with exact counts.
        let (ma, mb) = (mac_text(&p.mac_a), mac_text(&p.mac_b));
        for (ns, dev, peer_ip, peer_mac) in [
            (&p.a, &p.veth_a, p.ip4_b.to_string(), &mb),
            (&p.a, &p.veth_a, p.ip6_b.to_string(), &mb),
            (&p.b, &p.veth_b, p.ip4_a.to_string(), &ma),
            (&p.b, &p.veth_b, p.ip6_a.to_string(), &ma),
        ] {
            sh(&[
                "ip", "-n", ns, "neigh", "replace", &peer_ip, "lladdr", peer_mac, "dev", dev,
            ]);
        }
        p
    }

    /// Inode of a namespace, as the kernel reports it in drops.
    pub fn inode(&self, ns: &str) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(crate::kernel::testing::netns_path(ns))
            .expect("netns file")
            .ino() as u32
    }

    /// B's `Udp: NoPorts` counter (/proc/net/snmp seen from inside B): datagrams it had no
    /// socket for, the receiver's own count of what a test sends to a closed port.
    pub fn udp_no_ports(&self) -> u64 {
        let o = sh(&["ip", "netns", "exec", &self.b, "cat", "/proc/net/snmp"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
        let i = names
            .split_whitespace()
            .position(|n| n == "NoPorts")
            .expect("Udp: NoPorts in /proc/net/snmp");
        values
            .split_whitespace()
            .nth(i)
            .and_then(|n| n.parse().ok())
            .expect("Udp: NoPorts value")
    }

    /// ifindex of a device inside a namespace.
    pub fn ifindex(&self, ns: &str, dev: &str) -> u32 {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/ifindex"),
        ]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("ifindex")
    }

    /// Runs `f` on a thread that has entered namespace `ns`.
    pub fn in_ns<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = crate::kernel::testing::netns_path(ns);
        std::thread::scope(|s| {
            s.spawn(move || {
                let fd = std::fs::File::open(&path).expect("open netns");
                // SAFETY: setns on a valid namespace fd; it changes only this thread's netns.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    /// Sends `n` UDP datagrams like [`NetnsPair::send_udp`], ignoring send errors (a local
    /// netfilter drop makes sendto fail with EPERM). Returns how many sends failed.
    pub fn send_udp_lossy(&self, sport: u16, dport: u16, n: usize, payload: usize) -> usize {
        let (src, dst): (SocketAddr, SocketAddr) =
            ((self.ip4_a, sport).into(), (self.ip4_b, dport).into());
        self.in_ns(&self.a.clone(), move || {
            let s = UdpSocket::bind(src).expect("bind");
            let buf = vec![0x5au8; payload];
            (0..n).filter(|_| s.send_to(&buf, dst).is_err()).count()
        })
    }

    /// Sends `n` UDP datagrams of `payload` bytes from A (source port `sport`) to B:`dport`.
    pub fn send_udp(&self, v6: bool, sport: u16, dport: u16, n: usize, payload: usize) {
        let (src, dst): (SocketAddr, SocketAddr) = if v6 {
            ((self.ip6_a, sport).into(), (self.ip6_b, dport).into())
        } else {
            ((self.ip4_a, sport).into(), (self.ip4_b, dport).into())
        };
        self.in_ns(&self.a.clone(), move || {
            let s = UdpSocket::bind(src).expect("bind");
            let buf = vec![0x5au8; payload];
            for _ in 0..n {
                // ICMP port-unreachable replies may make a later send fail with
                // ECONNREFUSED on a connected socket; send_to on an unconnected one does not.
                s.send_to(&buf, dst).expect("send");
            }
        });
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

/// `02:00:0a:14:01:02`.
fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The area a test belongs to: the first part of its name (`storm::x` -> `storm`), which
/// libtest gives the thread that runs it.
fn test_area() -> Option<String> {
    let t = std::thread::current();
    let name = t.name()?;
    // Not a test's own thread (a thread a test spawned, or `main` with one test thread):
    // nothing to tell apart.
    if name == "main" || !name.contains("::") {
        return None;
    }
    name.split("::").next().map(str::to_string)
}

static AREA: Mutex<(Option<String>, usize)> = Mutex::new((None, 0));
static AREA_FREE: Condvar = Condvar::new();

/// While held, root tests of other areas wait. Each integration-test binary holds many
/// areas (modules); their live tests count drops kernel-wide (a filter's `filtered`, a
/// reason's total), so two areas must not provoke drops at once. Tests of one area may, as
/// they were written to (they ran together when each area was its own binary).
pub struct AreaGuard(bool);

/// Waits until no other area's test holds the network, then holds it for this test's area.
pub fn area_guard() -> AreaGuard {
    let Some(area) = test_area() else {
        return AreaGuard(false);
    };
    let mut st = AREA.lock().unwrap_or_else(|e| e.into_inner());
    while st.0.as_ref().is_some_and(|a| *a != area) {
        st = AREA_FREE.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    st.0 = Some(area);
    st.1 += 1;
    AreaGuard(true)
}

impl Drop for AreaGuard {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        let mut st = AREA.lock().unwrap_or_else(|e| e.into_inner());
        st.1 = st.1.saturating_sub(1);
        if st.1 == 0 {
            st.0 = None;
            AREA_FREE.notify_all();
        }
    }
}
