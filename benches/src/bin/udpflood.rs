//! `udpflood`: sends UDP datagrams as fast as one core can (sendmmsg in batches) for the
//! side-by-side capture benchmark (scripts/bench-flood.sh).
//!
//! It counts exactly what the kernel accepted: the number of messages each `sendmmsg` call
//! reports as sent, per source port. Failed calls are counted by errno, never retried
//! silently, and never counted as sent. It sends only to the address it is given; the
//! benchmark gives it an address inside a network namespace it created itself.
//!
//! Output: one JSON object on stdout, {"sent", "seconds", "pps", ...}.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: udpflood --dst ADDR:PORT (--duration SECS | --count N) [options]
  --dst ADDR:PORT     destination (IPv4 or [IPv6]:port)
  --duration SECS     send for SECS seconds (fractions allowed)
  --count N           send exactly N datagrams
  --size BYTES        UDP payload size (default 64)
  --src ADDR          source address to bind (default: any)
  --sports P1,P2,...  source ports, one socket (one flow) each, used round-robin per batch
                      (default: one socket, port chosen by the kernel)
  --batch N           datagrams per sendmmsg call (default 64, max 1024)
  --netns NAME        enter network namespace /var/run/netns/NAME first
  --rate PPS          at most PPS datagrams a second (paced per batch; default: flat out)
Prints {\"sent\",\"seconds\",\"pps\",...} as JSON on stdout.";

struct Opts {
    dst: SocketAddr,
    duration: Option<Duration>,
    count: Option<u64>,
    size: usize,
    src: Option<std::net::IpAddr>,
    sports: Vec<u16>,
    batch: usize,
    netns: Option<String>,
    rate: Option<f64>,
}

fn die(msg: &str) -> ! {
    eprintln!("udpflood: {msg}");
    exit(2);
}

fn parse_args() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut dst = None;
    let mut duration = None;
    let mut count = None;
    let mut size = 64usize;
    let mut src = None;
    let mut sports = Vec::new();
    let mut batch = 64usize;
    let mut netns = None;
    let mut rate = None;
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let v = args
            .next()
            .unwrap_or_else(|| die(&format!("{a} needs a value\n{USAGE}")));
        let bad = |what: &str| -> ! { die(&format!("{a} {v:?}: {what}")) };
        match a.as_str() {
            "--dst" => {
                dst = Some(
                    v.parse::<SocketAddr>()
                        .unwrap_or_else(|_| bad("not ADDR:PORT")),
                )
            }
            "--duration" => {
                let s: f64 = v.parse().unwrap_or_else(|_| bad("not a number"));
                if !(s.is_finite() && s > 0.0) {
                    bad("must be a positive number of seconds");
                }
                duration = Some(Duration::from_secs_f64(s));
            }
            "--count" => count = Some(v.parse::<u64>().unwrap_or_else(|_| bad("not a count"))),
            "--size" => size = v.parse().unwrap_or_else(|_| bad("not a size")),
            "--src" => src = Some(v.parse().unwrap_or_else(|_| bad("not an IP address"))),
            "--sports" => {
                sports = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse::<u16>()
                            .unwrap_or_else(|_| bad("not a list of ports"))
                    })
                    .collect()
            }
            "--batch" => batch = v.parse().unwrap_or_else(|_| bad("not a number")),
            "--netns" => netns = Some(v),
            "--rate" => {
                rate = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r > 0.0)
                        .unwrap_or_else(|| bad("not a positive rate")),
                )
            }
            _ => die(&format!("unknown option {a}\n{USAGE}")),
        }
    }
    let dst = dst.unwrap_or_else(|| die(&format!("--dst is required\n{USAGE}")));
    if duration.is_none() && count.is_none() {
        die("give --duration or --count (or both: whichever ends first)");
    }
    if count == Some(0) {
        die("--count 0 sends nothing");
    }
    if size > 65_507 {
        die("--size is larger than a UDP datagram can be (65507)");
    }
    if !(1..=1024).contains(&batch) {
        die("--batch must be 1..=1024");
    }
    if sports.contains(&0) {
        die("--sports: port 0 is not a fixed source port");
    }
    Opts {
        dst,
        duration,
        count,
        size,
        src,
        sports,
        batch,
        netns,
        rate,
    }
}

fn enter_netns(name: &str) {
    let path = format!("/var/run/netns/{name}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| die(&format!("open {path}: {e}")));
    // SAFETY: setns with a valid open namespace fd; this process has one thread so far.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        die(&format!(
            "setns {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// The destination as a C socket address (storage + length) for `msg_name`.
fn c_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn errno_name(e: i32) -> String {
    match e {
        libc::ENOBUFS => "ENOBUFS".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::EHOSTUNREACH => "EHOSTUNREACH".into(),
        libc::EPERM => "EPERM".into(),
        libc::EINTR => "EINTR".into(),
        libc::EMSGSIZE => "EMSGSIZE".into(),
        _ => format!("errno{e}"),
    }
}

fn main() {
    let o = parse_args();
    if let Some(ns) = &o.netns {
        enter_netns(ns);
    }
    let src_ip = o.src.unwrap_or(match o.dst {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    });
    let ports = if o.sports.is_empty() {
        vec![0u16]
    } else {
        o.sports.clone()
    };
    // Unconnected sockets: an ICMP port-unreachable reply never turns into ECONNREFUSED on
    // a later send (it would on a connected one), so every call sends the whole batch.
    let socks: Vec<UdpSocket> = ports
        .iter()
        .map(|&p| {
            UdpSocket::bind(SocketAddr::new(src_ip, p))
                .unwrap_or_else(|e| die(&format!("bind {src_ip} port {p}: {e}")))
        })
        .collect();
    let bound: Vec<u16> = socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect();

    let payload: Vec<u8> = (0..o.size).map(|i| (i as u8) ^ 0x5a).collect();
    let (mut dst, dst_len) = c_sockaddr(&o.dst);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is plain data; zeroed then filled field by field below.
    let mut msgs: Vec<libc::mmsghdr> = (0..o.batch)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for m in msgs.iter_mut() {
        m.msg_hdr.msg_name = std::ptr::addr_of_mut!(dst).cast();
        m.msg_hdr.msg_namelen = dst_len;
        m.msg_hdr.msg_iov = std::ptr::addr_of_mut!(iov);
        m.msg_hdr.msg_iovlen = 1;
    }

    let mut per_sock = vec![0u64; socks.len()];
    let mut sent = 0u64;
    let mut calls = 0u64;
    let mut short_calls = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut consecutive_errors = 0u32;
    let mut fatal: Option<String> = None;
    let limit = o.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let deadline = o.duration.map(|d| start + d);
    let mut next = 0usize;
    while sent < limit {
        if let Some(d) = deadline {
            if Instant::now() >= d {
                break;
            }
        }
        if let Some(r) = o.rate {
            // Paced: the next batch goes when the ones before it are due.
            let due = start + Duration::from_secs_f64(sent as f64 / r);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let want = usize::try_from((limit - sent).min(o.batch as u64)).unwrap_or(o.batch);
        let fd = socks[next].as_raw_fd();
        // SAFETY: msgs[..want] point at live buffers (payload, iov, dst) for the whole call.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), want as libc::c_uint, 0) };
        calls += 1;
        if n < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            *errors.entry(errno_name(e)).or_insert(0) += 1;
            consecutive_errors += 1;
            if consecutive_errors >= 10_000 {
                fatal = Some(format!(
                    "10000 failed sendmmsg calls in a row, last {}",
                    errno_name(e)
                ));
                break;
            }
        } else {
            consecutive_errors = 0;
            let n = n as u64;
            if (n as usize) < want {
                short_calls += 1;
            }
            sent += n;
            per_sock[next] += n;
        }
        next += 1;
        if next == socks.len() {
            next = 0;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let flows: Vec<String> = bound
        .iter()
        .zip(&per_sock)
        .map(|(p, n)| format!("{{\"sport\":{p},\"sent\":{n}}}"))
        .collect();
    let errs: Vec<String> = errors.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "{{\"sent\":{sent},\"seconds\":{secs:.6},\"pps\":{:.1},\"payload\":{},\"batch\":{},\"dst\":\"{}\",\"calls\":{calls},\"short_calls\":{short_calls},\"errors\":{{{}}},\"flows\":[{}]}}",
        if secs > 0.0 { sent as f64 / secs } else { 0.0 },
        o.size,
        o.batch,
        o.dst,
        errs.join(","),
        flows.join(",")
    );
    if let Some(f) = fatal {
        die(&f);
    }
}
