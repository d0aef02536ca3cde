//! Helpers for tests and benchmarks of [`super`]: make a bpffs, hash maps filled to a known
//! level, and named programs from raw instructions, as stand-ins for Cilium's. These write
//! to maps the caller created itself; `dropscope datapath` never writes to any map.
//!
//! Must never: be used on maps or programs the caller did not create.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_map_type, bpf_prog_info};

use crate::kernel::bpfsys::sys_bpf;

/// Map types, for [`map`].
pub use aya_obj::generated::bpf_map_type as MapType;

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is a valid value.
    unsafe { zeroed() }
}

/// Mounts a new bpffs at `dir` (which must exist).
pub fn mount_bpffs(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `dir` (lazily: pins still open elsewhere go with their last user).
pub fn umount(dir: &Path) {
    if let Ok(c) = CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: umount2 with a NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A new map of `map_type` with `key_size`-byte keys.
pub fn map(
    map_type: bpf_map_type,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> io::Result<OwnedFd> {
    crate::kernel::bpfsys::create_map(map_type, key_size, value_size, max_entries, None)
}

/// A new hash map of `u32` keys and `value_size`-byte values.
pub fn hash_map(max_entries: u32, value_size: u32) -> io::Result<OwnedFd> {
    map(bpf_map_type::BPF_MAP_TYPE_HASH, 4, value_size, max_entries)
}

/// Inserts keys `from..to` (as `u32`) with zeroed values.
pub fn insert_range(map: BorrowedFd<'_>, from: u32, to: u32) -> io::Result<()> {
    let (_, vs, _) = crate::kernel::bpfsys::map_geometry(map)?;
    let value = vec![0u8; vs as usize];
    for k in from..to {
        let mut attr = zeroed_attr();
        // SAFETY: MAP_UPDATE_ELEM with a 4-byte key and a value of the map's size, both
        // outliving the call.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = map.as_raw_fd() as u32;
            u.key = &k as *const u32 as u64;
            u.__bindgen_anon_1.value = value.as_ptr() as u64;
        }
        sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr)?;
    }
    Ok(())
}

/// Inserts keys `from..to` into a map of any key size: each key is the index as a
/// little-endian `u32`, zero-padded to the key size; values are zeroes.
pub fn insert_range_padded(map: BorrowedFd<'_>, from: u32, to: u32) -> io::Result<()> {
    let (ks, vs, _) = crate::kernel::bpfsys::map_geometry(map)?;
    let value = vec![0u8; vs as usize];
    let mut key = vec![0u8; (ks as usize).max(4)];
    for k in from..to {
        if let Some(at) = key.get_mut(..4) {
            at.copy_from_slice(&k.to_le_bytes());
        }
        let mut attr = zeroed_attr();
        // SAFETY: MAP_UPDATE_ELEM with a key and a value of the map's sizes, both outliving
        // the call.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = map.as_raw_fd() as u32;
            u.key = key.as_ptr() as u64;
            u.__bindgen_anon_1.value = value.as_ptr() as u64;
        }
        sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr)?;
    }
    Ok(())
}

/// Deletes keys `from..to`.
pub fn delete_range(map: BorrowedFd<'_>, from: u32, to: u32) -> io::Result<()> {
    for k in from..to {
        let mut attr = zeroed_attr();
        // SAFETY: MAP_DELETE_ELEM with a 4-byte key that outlives the call.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = map.as_raw_fd() as u32;
            u.key = &k as *const u32 as u64;
        }
        sys_bpf(bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr)?;
    }
    Ok(())
}

/// `BPF_OBJ_PIN`.
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    crate::kernel::testing::raw::obj_pin(fd, path)
}

/// `BPF_PROG_LOAD` of raw instructions with a program name (15 bytes at most); on failure
/// the error holds the end of the verifier's log.
pub fn prog_load(
    prog_type: u32,
    insns: &[u64],
    name: &str,
    license: &CStr,
) -> Result<OwnedFd, String> {
    crate::kernel::testing::raw::prog_load_named(prog_type, insns, name, license)
}

/// A program's id.
pub fn prog_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: bpf_prog_info is plain integers: zero is valid.
    let mut info: bpf_prog_info = unsafe { zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = prog.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = &mut info as *mut bpf_prog_info as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

/// Creates a netkit pair `primary` / `peer` (layer 3, both in the calling thread's
/// namespace) with rtnetlink; Linux 6.7+.
pub fn create_netkit(primary: &str, peer: &str) -> io::Result<()> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
        NLM_F_REQUEST,
    };
    use netlink_packet_route::link::{
        InfoData, InfoKind, InfoNetkit, LinkAttribute, LinkInfo, LinkMessage,
    };
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    let mut peer_msg = LinkMessage::default();
    peer_msg
        .attributes
        .push(LinkAttribute::IfName(peer.to_string()));
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(primary.to_string()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Netkit),
        LinkInfo::Data(InfoData::Netkit(vec![InfoNetkit::Peer(peer_msg)])),
    ]));
    let mut packet = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::NewLink(msg)),
    );
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut req = vec![0; packet.buffer_len()];
    packet.serialize(&mut req);
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    sock.send(&req, 0)?;
    let mut buf = vec![0u8; 8192];
    let n = sock.recv(&mut &mut buf[..], 0)?;
    let m: NetlinkMessage<RouteNetlinkMessage> =
        NetlinkMessage::deserialize(buf.get(..n).unwrap_or(&[]))
            .map_err(|e| io::Error::other(e.to_string()))?;
    match m.payload {
        NetlinkPayload::Error(e) => match e.code {
            Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Attaches `prog` (a SCHED_CLS program) to netkit device `ifindex`'s primary (or `peer`)
/// hook with a BPF link; the attachment lasts as long as the returned link.
pub fn attach_netkit(prog: BorrowedFd<'_>, ifindex: u32, peer: bool) -> io::Result<OwnedFd> {
    use aya_obj::generated::bpf_attach_type as t;
    let mut attr = zeroed_attr();
    // SAFETY: the LINK_CREATE variant with plain integers.
    unsafe {
        let l = &mut attr.link_create;
        l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
        l.__bindgen_anon_2.target_ifindex = ifindex;
        l.attach_type = if peer {
            t::BPF_NETKIT_PEER
        } else {
            t::BPF_NETKIT_PRIMARY
        } as u32;
    }
    let fd = sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: BPF_LINK_CREATE returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
