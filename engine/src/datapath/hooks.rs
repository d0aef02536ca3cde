//! Which BPF programs are attached to each interface of the calling thread's network
//! namespace: XDP (rtnetlink `IFLA_XDP` of `RTM_GETLINK`), classic tc `cls_bpf` filters on
//! the clsact hooks (`RTM_GETTFILTER` with parent `ffff:fff2` / `ffff:fff3`, `TCA_BPF_ID`),
//! and tcx (Linux 6.6+: `BPF_PROG_QUERY` with `BPF_TCX_INGRESS` / `BPF_TCX_EGRESS`, through
//! aya); and the cgroup programs of a cgroup (`BPF_PROG_QUERY` on its directory).
//!
//! Netlink replies are parsed by `netlink-packet-route`, which returns errors (never panics)
//! on malformed bytes; a message it cannot parse ends that dump with an error line, the rest
//! of the report stands. Must never: send anything but `GET` requests, or attach, detach or
//! change a program.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd as _;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached};
use netlink_packet_route::tc::{
    TcAttribute, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{Attachment, HookKind, ProgRef};

/// One interface of a namespace and what is attached to it.
#[derive(Clone, Debug, Default)]
pub struct LinkHooks {
    pub ifindex: u32,
    pub name: String,
    pub attachments: Vec<Attachment>,
}

/// A route netlink socket of the calling thread's network namespace (sockets keep the
/// namespace they were made in).
struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    fn new() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    /// Sends a dump request and returns every message of the answer.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut req = vec![0; packet.buffer_len()];
        packet.serialize(&mut req);
        self.sock.send(&req, 0)?;
        let mut out = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut at = 0usize;
            while at < n {
                let bytes = self.buf.get(at..n).unwrap_or(&[]);
                let m: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(bytes)
                    .map_err(|e| io::Error::other(format!("malformed netlink reply: {e}")))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::Error(e) => {
                            return Err(match e.code {
                                Some(c) => io::Error::from_raw_os_error(-c.get()),
                                None => io::Error::other("netlink error without a code"),
                            });
                        }
                        NetlinkPayload::InnerMessage(i) => out.push(i),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                at = at.saturating_add(nlmsg_align(len));
            }
        }
    }
}

fn nlmsg_align(len: usize) -> usize {
    (len + 3) & !3
}

/// Program details by id (name, tag, type, load time), from the kernel's list of loaded
/// programs (read once per snapshot through aya).
pub type ProgTable = HashMap<u32, ProgRef>;

/// Every loaded program (ids the caller may not read are left out; they show by id).
pub fn prog_table() -> io::Result<ProgTable> {
    let mut t = HashMap::new();
    let mut first_err = None;
    for p in aya::programs::loaded_programs() {
        match p {
            Ok(info) => {
                t.insert(info.id(), ProgRef::from_info(&info));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (t.is_empty(), first_err) {
        (true, Some(e)) => Err(io::Error::other(e.to_string())),
        _ => Ok(t),
    }
}

fn prog_of(table: &ProgTable, id: u32) -> ProgRef {
    table.get(&id).cloned().unwrap_or(ProgRef {
        id,
        ..ProgRef::default()
    })
}

/// Interfaces of the calling thread's namespace with their XDP, tc and tcx programs.
/// `errors` collects what could not be read (one line each); what could is returned.
pub fn namespace_hooks(table: &ProgTable, errors: &mut Vec<String>) -> io::Result<Vec<LinkHooks>> {
    let mut nl = Rtnl::new()?;
    let mut links: Vec<LinkHooks> = Vec::new();
    for m in nl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        let mut h = LinkHooks {
            ifindex: l.header.index,
            ..LinkHooks::default()
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => h.name = n.clone(),
                LinkAttribute::Xdp(x) => xdp_attachments(x, table, &mut h.attachments),
                _ => {}
            }
        }
        links.push(h);
    }
    let mut tcx_denied = false;
    for h in &mut links {
        for (hook, minor) in [
            (HookKind::TcIngress, TcHandle::MIN_INGRESS),
            (HookKind::TcEgress, TcHandle::MIN_EGRESS),
        ] {
            match tc_filters(&mut nl, h.ifindex, minor, table) {
                Ok(progs) => h
                    .attachments
                    .extend(progs.into_iter().map(|prog| Attachment {
                        hook,
                        mode: None,
                        prog,
                    })),
                // No clsact qdisc: no filters there (not an error).
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {}
                Err(e) => errors.push(format!("{} {}: {e}", h.name, hook.as_str())),
            }
        }
        if !tcx_denied {
            match netkit_programs(h.ifindex, table) {
                Ok(v) => h.attachments.extend(v),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                    tcx_denied = true;
                    errors.push(
                        "tcx: BPF_PROG_QUERY refused (Operation not permitted): tcx and netkit programs are not listed (needs CAP_NET_ADMIN)"
                            .to_string(),
                    );
                }
                Err(e) => errors.push(format!("{} netkit: {e}", h.name)),
            }
        }
        for (hook, at) in [
            (HookKind::TcxIngress, aya::programs::TcAttachType::Ingress),
            (HookKind::TcxEgress, aya::programs::TcAttachType::Egress),
        ] {
            if tcx_denied {
                continue;
            }
            match aya::programs::SchedClassifier::query_tcx(&h.name, at) {
                Ok((_, progs)) => h.attachments.extend(progs.iter().map(|p| Attachment {
                    hook,
                    mode: None,
                    prog: ProgRef::from_info(p),
                })),
                Err(e) => match errno_of(&e) {
                    // Kernels before 6.6 have no tcx: the query is refused with EINVAL.
                    Some(libc::EINVAL | libc::ENODEV) => {}
                    Some(libc::EPERM | libc::EACCES) => {
                        tcx_denied = true;
                        errors.push(
                            "tcx: BPF_PROG_QUERY refused (Operation not permitted): tcx programs are not listed (needs CAP_NET_ADMIN)"
                                .to_string(),
                        );
                    }
                    _ => errors.push(format!("{} {}: {}", h.name, hook.as_str(), chain(&e))),
                },
            }
        }
    }
    Ok(links)
}

/// The programs on a netkit device's primary and peer hooks (`BPF_PROG_QUERY` by ifindex,
/// Linux 6.7+). Other devices (and older kernels) refuse the query: no programs.
fn netkit_programs(ifindex: u32, table: &ProgTable) -> io::Result<Vec<Attachment>> {
    use aya_obj::generated::{bpf_attach_type as t, bpf_attr, bpf_cmd};
    let mut out = Vec::new();
    for (ty, hook) in [
        (t::BPF_NETKIT_PRIMARY, HookKind::NetkitPrimary),
        (t::BPF_NETKIT_PEER, HookKind::NetkitPeer),
    ] {
        let mut ids = [0u32; 64];
        // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is valid.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: the PROG_QUERY variant; `ids` outlives the call and its length is passed.
        unsafe {
            let q = &mut attr.query;
            q.__bindgen_anon_1.target_ifindex = ifindex;
            q.attach_type = ty as u32;
            q.prog_ids = ids.as_mut_ptr() as u64;
            q.__bindgen_anon_2.prog_cnt = ids.len() as u32;
        }
        match crate::kernel::bpfsys::sys_bpf(bpf_cmd::BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                // SAFETY: the kernel wrote back how many ids it stored.
                let n = unsafe { attr.query.__bindgen_anon_2.prog_cnt } as usize;
                for id in ids.iter().take(n.min(ids.len())) {
                    out.push(Attachment {
                        hook,
                        mode: None,
                        prog: prog_of(table, *id),
                    });
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                return Err(e)
            }
            // Not a netkit device (ENXIO), or no netkit in this kernel (EINVAL).
            Err(_) => return Ok(out),
        }
    }
    Ok(out)
}

/// The system error under an aya error, if any.
fn errno_of(e: &aya::programs::ProgramError) -> Option<i32> {
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        src = s.source();
    }
    None
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn xdp_attachments(x: &[LinkXdp], table: &ProgTable, out: &mut Vec<Attachment>) {
    let mut mode = None;
    let mut ids: Vec<(u32, Option<&'static str>)> = Vec::new();
    for a in x {
        match a {
            LinkXdp::Attached(m) => {
                mode = match m {
                    XdpAttached::Driver => Some("driver"),
                    XdpAttached::SocketBuffer => Some("generic"),
                    XdpAttached::Hardware => Some("offload"),
                    XdpAttached::Multiple => Some("multiple"),
                    _ => None,
                }
            }
            LinkXdp::ProgId(id) if *id != 0 => ids.push((*id, None)),
            LinkXdp::DrvProgId(id) if *id != 0 => ids.push((*id, Some("driver"))),
            LinkXdp::SkbProgId(id) if *id != 0 => ids.push((*id, Some("generic"))),
            LinkXdp::HwProgId(id) if *id != 0 => ids.push((*id, Some("offload"))),
            _ => {}
        }
    }
    // With one mode the kernel sends PROG_ID (and the mode's own id); several: per mode.
    let per_mode: Vec<_> = ids.iter().filter(|(_, m)| m.is_some()).collect();
    if per_mode.is_empty() {
        for (id, _) in &ids {
            out.push(Attachment {
                hook: HookKind::Xdp,
                mode: mode.map(str::to_string),
                prog: prog_of(table, *id),
            });
        }
    } else {
        for (id, m) in per_mode {
            out.push(Attachment {
                hook: HookKind::Xdp,
                mode: m.map(str::to_string),
                prog: prog_of(table, *id),
            });
        }
    }
}

/// The BPF programs of the cls_bpf filters at clsact parent `ffff:minor` of `ifindex`.
fn tc_filters(
    nl: &mut Rtnl,
    ifindex: u32,
    minor: u16,
    table: &ProgTable,
) -> io::Result<Vec<ProgRef>> {
    let mut req = TcMessage::default();
    req.header = TcHeader {
        index: i32::try_from(ifindex).map_err(|_| io::Error::other("ifindex out of range"))?,
        parent: TcHandle {
            major: 0xffff,
            minor,
        },
        ..TcHeader::default()
    };
    let mut out = Vec::new();
    for m in nl.dump(RouteNetlinkMessage::GetTrafficFilter(req))? {
        let RouteNetlinkMessage::NewTrafficFilter(f) = m else {
            continue;
        };
        let mut id = None;
        let mut name = None;
        for a in &f.attributes {
            if let TcAttribute::Options(opts) = a {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => id = Some(*i),
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                        _ => {}
                    }
                }
            }
        }
        if let Some(id) = id {
            let mut p = prog_of(table, id);
            if p.name.is_empty() {
                // The filter's own name (`tc` sets it to the object and section).
                p.name = name.unwrap_or_default();
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// A cgroup's attached programs, per attach type: `(attach type name, program)`.
/// Queries every cgroup attach type the kernel knows; types it refuses are skipped.
pub fn cgroup_hooks(
    cgroup: &std::path::Path,
    table: &ProgTable,
) -> io::Result<Vec<(String, ProgRef)>> {
    use aya_obj::generated::{bpf_attach_type as t, bpf_attr, bpf_cmd};
    let dir = std::fs::File::open(cgroup)?;
    let types = [
        (t::BPF_CGROUP_INET_INGRESS, "cgroup_skb/ingress"),
        (t::BPF_CGROUP_INET_EGRESS, "cgroup_skb/egress"),
        (t::BPF_CGROUP_INET_SOCK_CREATE, "sock_create"),
        (t::BPF_CGROUP_INET_SOCK_RELEASE, "sock_release"),
        (t::BPF_CGROUP_SOCK_OPS, "sock_ops"),
        (t::BPF_CGROUP_INET4_BIND, "bind4"),
        (t::BPF_CGROUP_INET6_BIND, "bind6"),
        (t::BPF_CGROUP_INET4_CONNECT, "connect4"),
        (t::BPF_CGROUP_INET6_CONNECT, "connect6"),
        (t::BPF_CGROUP_INET4_POST_BIND, "post_bind4"),
        (t::BPF_CGROUP_INET6_POST_BIND, "post_bind6"),
        (t::BPF_CGROUP_UDP4_SENDMSG, "sendmsg4"),
        (t::BPF_CGROUP_UDP6_SENDMSG, "sendmsg6"),
        (t::BPF_CGROUP_UDP4_RECVMSG, "recvmsg4"),
        (t::BPF_CGROUP_UDP6_RECVMSG, "recvmsg6"),
        (t::BPF_CGROUP_INET4_GETPEERNAME, "getpeername4"),
        (t::BPF_CGROUP_INET6_GETPEERNAME, "getpeername6"),
        (t::BPF_CGROUP_INET4_GETSOCKNAME, "getsockname4"),
        (t::BPF_CGROUP_INET6_GETSOCKNAME, "getsockname6"),
        (t::BPF_CGROUP_DEVICE, "device"),
        (t::BPF_CGROUP_SYSCTL, "sysctl"),
        (t::BPF_CGROUP_GETSOCKOPT, "getsockopt"),
        (t::BPF_CGROUP_SETSOCKOPT, "setsockopt"),
    ];
    let mut out = Vec::new();
    for (ty, name) in types {
        let mut ids = [0u32; 64];
        // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is valid.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: the PROG_QUERY variant; `ids` outlives the call and its length is passed.
        unsafe {
            let q = &mut attr.query;
            q.__bindgen_anon_1.target_fd = dir.as_raw_fd() as u32;
            q.attach_type = ty as u32;
            q.prog_ids = ids.as_mut_ptr() as u64;
            q.__bindgen_anon_2.prog_cnt = ids.len() as u32;
        }
        match crate::kernel::bpfsys::sys_bpf(bpf_cmd::BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                // SAFETY: the kernel wrote back how many ids it stored.
                let n = unsafe { attr.query.__bindgen_anon_2.prog_cnt } as usize;
                for id in ids.iter().take(n.min(ids.len())) {
                    out.push((name.to_string(), prog_of(table, *id)));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(out)
}
