//! The few `bpf(2)` commands dropscope needs that aya 0.14 does not offer: an RCU grace
//! period on demand ([`RcuFence`]), draining a hash map in batches
//! ([`lookup_and_delete_all`]), and a program's `recursion_misses`
//! ([`prog_recursion_misses`]).
//!
//! The grace period: updating a slot of an `ARRAY_OF_MAPS` makes the kernel call
//! `synchronize_rcu()` before the syscall returns (`maybe_wait_bpf_programs()` in
//! kernel/bpf/syscall.c), so every tracing program that was running when the update began
//! (they all run inside `rcu_read_lock()`) has finished. dropscope switches the kernel flow
//! table's generation, then waits this way: afterwards no program can still write the old
//! generation, and its counts are final. The kernel's own selftests use the same fact.
//!
//! Must never: hand the kernel a buffer shorter than the sizes it is told, read a map with
//! key or value types of another size than the map's (checked against the map's info), or
//! treat a partial batch as the whole map.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_map_info, bpf_map_type, bpf_prog_info};

/// The `bpf(2)` system call with `attr` (also used by the filter tests' own loads).
pub(crate) fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-initialised bpf_attr of the size we pass; the command reads and
    // writes only the members of its own variant, which the caller filled.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is a valid value.
    unsafe { zeroed() }
}

/// `BPF_MAP_CREATE` (`inner`: the inner map of a map-in-map).
pub(crate) fn create_map(
    map_type: bpf_map_type,
    key: u32,
    value: u32,
    max: u32,
    inner: Option<BorrowedFd<'_>>,
) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the MAP_CREATE variant of a zeroed union.
    unsafe {
        let c = &mut attr.__bindgen_anon_1;
        c.map_type = map_type as u32;
        c.key_size = key;
        c.value_size = value;
        c.max_entries = max;
        c.inner_map_fd = inner.map_or(0, |f| f.as_raw_fd() as u32);
    }
    let fd = sys_bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for an RCU grace period on demand (see the module doc).
#[derive(Debug)]
pub struct RcuFence {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl RcuFence {
    /// Creates the two tiny maps the fence updates (an array of maps and its one inner array).
    pub fn new() -> io::Result<Self> {
        let inner = create_map(bpf_map_type::BPF_MAP_TYPE_ARRAY, 4, 4, 1, None)?;
        let outer = create_map(
            bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS,
            4,
            4,
            1,
            Some(inner.as_fd()),
        )?;
        Ok(RcuFence { outer, inner })
    }

    /// Returns once every BPF program that was running when it was called has finished.
    pub fn wait(&self) -> io::Result<()> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd() as u32;
        let mut attr = zeroed_attr();
        // SAFETY: the MAP_UPDATE_ELEM variant; key and value point at 4-byte locals that
        // outlive the call, matching the map's key and value sizes.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = self.outer.as_raw_fd() as u32;
            u.key = &key as *const u32 as u64;
            u.__bindgen_anon_1.value = &value as *const u32 as u64;
            u.flags = 0;
        }
        sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }
}

/// Key size, value size and max entries of a map.
pub fn map_geometry(map: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    // SAFETY: bpf_map_info is plain integers and arrays: zero is valid.
    let mut info: bpf_map_info = unsafe { zeroed() };
    let mut attr = zeroed_attr();
    // The INFO variant (writing a union's Copy field is safe); `info` outlives the call
    // and its size is passed.
    attr.info.bpf_fd = map.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_map_info>() as u32;
    attr.info.info = &mut info as *mut bpf_map_info as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok((info.key_size, info.value_size, info.max_entries))
}

/// Reads and deletes every entry of a hash map that no program writes any more, appending
/// them to `out`; returns how many. Uses `BPF_MAP_LOOKUP_AND_DELETE_BATCH` (Linux 5.6+),
/// else one key at a time.
pub fn lookup_and_delete_all<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    out: &mut Vec<(K, V)>,
) -> io::Result<usize> {
    let (ks, vs, _) = map_geometry(map)?;
    if ks as usize != size_of::<K>() || vs as usize != size_of::<V>() {
        return Err(io::Error::other(format!(
            "map has {ks}-byte keys and {vs}-byte values, expected {} and {}",
            size_of::<K>(),
            size_of::<V>()
        )));
    }
    match batch_drain(map, out) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(524) // ENOTSUPP
            ) =>
        {
            one_by_one_drain(map, out)
        }
        r => r,
    }
}

fn batch_drain<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    out: &mut Vec<(K, V)>,
) -> io::Result<usize> {
    let mut chunk: u32 = 1024;
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    // The cursor: a bucket index for hash maps; a key's size is always enough room.
    let mut cursor_in = [0u64; 16];
    let mut cursor_out = [0u64; 16];
    let mut first = true;
    let mut total = 0usize;
    loop {
        keys.resize(chunk as usize, K::default());
        values.resize(chunk as usize, V::default());
        let mut attr = zeroed_attr();
        // SAFETY: the BATCH variant; keys/values hold `chunk` elements of the map's key and
        // value sizes (checked by the caller), the cursors are 128 bytes; all outlive the call.
        unsafe {
            let b = &mut attr.batch;
            b.in_batch = if first {
                0
            } else {
                cursor_in.as_mut_ptr() as u64
            };
            b.out_batch = cursor_out.as_mut_ptr() as u64;
            b.keys = keys.as_mut_ptr() as u64;
            b.values = values.as_mut_ptr() as u64;
            b.count = chunk;
            b.map_fd = map.as_raw_fd() as u32;
        }
        let r = sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr);
        // SAFETY: the kernel wrote back how many elements it copied.
        let n = (unsafe { attr.batch.count } as usize).min(chunk as usize);
        match r {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                out.extend(keys.drain(..n).zip(values.drain(..n)));
                return Ok(total + n);
            }
            // A bucket holds more entries than fit: retry it with more room.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                chunk = chunk.saturating_mul(2);
                if chunk > 1 << 20 {
                    return Err(e);
                }
                continue;
            }
            Err(e) => {
                out.extend(keys.drain(..n).zip(values.drain(..n)));
                return Err(e);
            }
        }
        out.extend(keys.drain(..n).zip(values.drain(..n)));
        total += n;
        cursor_in = cursor_out;
        first = false;
    }
}

fn one_by_one_drain<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    out: &mut Vec<(K, V)>,
) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let mut key = K::default();
        let mut attr = zeroed_attr();
        // SAFETY: GET_NEXT_KEY with a null key gives the first key, written into `key`, a
        // local of the map's key size.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = map.as_raw_fd() as u32;
            u.key = 0;
            u.__bindgen_anon_1.next_key = &mut key as *mut K as u64;
        }
        match sys_bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(n),
            Err(e) => return Err(e),
        }
        let mut value = V::default();
        let mut attr = zeroed_attr();
        // SAFETY: LOOKUP_AND_DELETE_ELEM (hash maps, Linux 5.14+); key and value are locals
        // of the map's sizes.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = map.as_raw_fd() as u32;
            u.key = &key as *const K as u64;
            u.__bindgen_anon_1.value = &mut value as *mut V as u64;
        }
        sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr)?;
        out.push((key, value));
        n += 1;
    }
}

/// Writes `value` at `key` of an array map (the table generation switch).
pub fn array_set_u32(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: the MAP_UPDATE_ELEM variant with 4-byte locals that outlive the call.
    unsafe {
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = map.as_raw_fd() as u32;
        u.key = &key as *const u32 as u64;
        u.__bindgen_anon_1.value = &value as *const u32 as u64;
        u.flags = 0;
    }
    sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// A program's `recursion_misses`: runs the kernel skipped because a program was already
/// running on that CPU. `Ok(None)` when the kernel does not report the field (before 5.12).
pub fn prog_recursion_misses(prog: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    // SAFETY: bpf_prog_info is plain integers: zero is valid.
    let mut info: bpf_prog_info = unsafe { zeroed() };
    let mut attr = zeroed_attr();
    // The INFO variant (writing a union's Copy field is safe); `info` outlives the call
    // and its size is passed.
    attr.info.bpf_fd = prog.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = &mut info as *mut bpf_prog_info as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // SAFETY: the kernel wrote back how many bytes of `info` it filled.
    let filled = unsafe { attr.info.info_len } as usize;
    let end = std::mem::offset_of!(bpf_prog_info, recursion_misses) + size_of::<u64>();
    Ok((filled >= end).then_some(info.recursion_misses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn fence_waits_and_batch_drain_empties_a_hash_map() {
        if !root() {
            eprintln!("SKIPPED: not root");
            return;
        }
        let fence = RcuFence::new().unwrap();
        fence.wait().unwrap();
        fence.wait().unwrap();
        // 3000 entries of 16-byte keys and 8-byte values: more than one batch chunk.
        let map = create_map(bpf_map_type::BPF_MAP_TYPE_HASH, 16, 8, 4096, None).unwrap();
        for i in 0u64..3000 {
            let key = [i, i * 7];
            let value = i * 3;
            let mut attr = zeroed_attr();
            // SAFETY: MAP_UPDATE_ELEM with locals of the map's sizes.
            unsafe {
                let u = &mut attr.__bindgen_anon_2;
                u.map_fd = map.as_raw_fd() as u32;
                u.key = &key as *const [u64; 2] as u64;
                u.__bindgen_anon_1.value = &value as *const u64 as u64;
            }
            sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).unwrap();
        }
        assert_eq!(map_geometry(map.as_fd()).unwrap(), (16, 8, 4096));
        let mut out: Vec<([u64; 2], u64)> = Vec::new();
        assert_eq!(lookup_and_delete_all(map.as_fd(), &mut out).unwrap(), 3000);
        out.sort();
        for (i, (k, v)) in out.iter().enumerate() {
            let i = i as u64;
            assert_eq!((*k, *v), ([i, i * 7], i * 3));
        }
        // Empty now; the one-by-one path agrees.
        out.clear();
        assert_eq!(lookup_and_delete_all(map.as_fd(), &mut out).unwrap(), 0);
        assert_eq!(one_by_one_drain(map.as_fd(), &mut out).unwrap(), 0);
        // A wrong key type is refused, not read.
        let mut wrong: Vec<(u64, u64)> = Vec::new();
        assert!(lookup_and_delete_all(map.as_fd(), &mut wrong).is_err());
    }
}
