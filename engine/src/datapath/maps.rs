//! Pinned maps of a bpffs directory (Cilium's `/sys/fs/bpf/tc/globals` by default): type,
//! sizes, max entries and the current number of entries, counted without copying values.
//!
//! Each pin is opened with `BPF_OBJ_GET` and `BPF_F_RDONLY`, so the descriptor cannot
//! write the map even by mistake. Entries are counted by walking keys with
//! `BPF_MAP_GET_NEXT_KEY` (the keys are copied, never the values). For hash maps the
//! kernel's `htab_map_get_next_key()` (kernel/bpf/hashtab.c) runs under RCU and takes no
//! bucket lock, so a walk never makes a datapath program wait. The kernel's own counter
//! (`bpf_map_sum_elem_count`, Linux 6.6+) is only reachable from a BPF iterator program; that
//! path is not implemented here, and the output names the method used for every map.
//!
//! Must never: write, update or delete an entry; read a value; loop forever on a map that
//! changes during the walk (a walk stops after twice the map's capacity and says so).

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};

use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Instant;

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_map_info, bpf_map_type};
use serde::Serialize;

use crate::kernel::bpfsys::sys_bpf;

/// `BPF_F_RDONLY`: the descriptor may read the map, never write it.
const BPF_F_RDONLY: u32 = 1 << 3;

/// How a map's entries were counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountMethod {
    /// The kernel's own per-map counter, read by a BPF iterator (`bpf_map_sum_elem_count`,
    /// Linux 6.6+): neither keys nor values are read.
    KernelCounter,
    /// `BPF_MAP_GET_NEXT_KEY` over every key (no values copied).
    GetNextKey,
    /// An array: every slot exists from creation; there is no "current" count.
    ArraySlots,
    /// Not counted (the type has no meaningful count, or counting was not asked).
    NotCounted,
}

impl CountMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CountMethod::KernelCounter => "kernel-counter",
            CountMethod::GetNextKey => "get-next-key",
            CountMethod::ArraySlots => "array-slots",
            CountMethod::NotCounted => "not-counted",
        }
    }
}

/// One pinned map and its fill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapState {
    pub path: String,
    /// The pin's file name (Cilium's map name; the kernel's own name is cut at 15 bytes).
    pub name: String,
    pub id: u32,
    pub map_type: String,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// Current entries (`None`: not counted, see `method`).
    pub entries: Option<u64>,
    /// entries / max_entries, 0.0 to 1.0.
    pub fill: Option<f64>,
    pub method: CountMethod,
    /// The walk met a changing map (restarted or ran past twice the capacity): approximate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub approximate: bool,
    /// Milliseconds the count took.
    pub count_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MapState {
    /// `1024/1024 (100.0%)`, or what stands in for a count.
    pub fn fill_text(&self) -> String {
        match (self.entries, self.fill) {
            (Some(n), Some(f)) => format!(
                "{n}/{} ({:.1}%){}",
                self.max_entries,
                f * 100.0,
                if self.approximate { " approx." } else { "" }
            ),
            _ if self.method == CountMethod::ArraySlots => {
                format!("{} slots (array: all exist)", self.max_entries)
            }
            _ => format!("max {} (not counted)", self.max_entries),
        }
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of plain integer structs: all zeroes is a valid value.
    unsafe { zeroed() }
}

/// `BPF_OBJ_GET` of a pin, read-only.
pub fn open_pinned_rdonly(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?;
    let mut attr = zeroed_attr();
    // SAFETY: the OBJ_GET variant; `c` is a NUL-terminated string that outlives the call.
    unsafe {
        let o = &mut attr.__bindgen_anon_4;
        o.pathname = c.as_ptr() as u64;
        o.file_flags = BPF_F_RDONLY;
    }
    let fd = sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The kernel's description of a map.
pub fn map_info(fd: BorrowedFd<'_>) -> io::Result<bpf_map_info> {
    // SAFETY: bpf_map_info is plain integers and arrays: zero is valid.
    let mut info: bpf_map_info = unsafe { zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_map_info>() as u32;
    attr.info.info = &mut info as *mut bpf_map_info as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

/// `hash`, `lru_hash`, `lpm_trie`, ... from a `bpf_map_type` number.
pub fn type_name(t: u32) -> String {
    match bpf_map_type::try_from(t) {
        Ok(v) => format!("{v:?}")
            .trim_start_matches("BPF_MAP_TYPE_")
            .to_ascii_lowercase(),
        Err(_) => format!("type-{t}"),
    }
}

/// Types whose keys are exactly their entries (a walk counts them).
fn keyed(t: u32) -> bool {
    use bpf_map_type as m;
    [
        m::BPF_MAP_TYPE_HASH,
        m::BPF_MAP_TYPE_PERCPU_HASH,
        m::BPF_MAP_TYPE_LRU_HASH,
        m::BPF_MAP_TYPE_LRU_PERCPU_HASH,
        m::BPF_MAP_TYPE_LPM_TRIE,
        m::BPF_MAP_TYPE_HASH_OF_MAPS,
        m::BPF_MAP_TYPE_SOCKHASH,
        m::BPF_MAP_TYPE_DEVMAP_HASH,
    ]
    .iter()
    .any(|k| *k as u32 == t)
}

fn array_like(t: u32) -> bool {
    use bpf_map_type as m;
    [
        m::BPF_MAP_TYPE_ARRAY,
        m::BPF_MAP_TYPE_PERCPU_ARRAY,
        m::BPF_MAP_TYPE_ARRAY_OF_MAPS,
        m::BPF_MAP_TYPE_CGROUP_ARRAY,
    ]
    .iter()
    .any(|k| *k as u32 == t)
}

/// Result of a key walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCount {
    pub entries: u64,
    /// The walk stopped at its bound (the map changed under it): a lower bound.
    pub approximate: bool,
}

/// Counts a map's keys with `BPF_MAP_GET_NEXT_KEY`, copying keys only. `bound`: most keys
/// walked before giving up (a map changing under the walk can make it restart).
pub fn count_keys(fd: BorrowedFd<'_>, key_size: u32, bound: u64) -> io::Result<KeyCount> {
    let ks = key_size.max(1) as usize;
    let mut cur = vec![0u8; ks];
    let mut next = vec![0u8; ks];
    let mut n = 0u64;
    let mut first = true;
    loop {
        let mut attr = zeroed_attr();
        // SAFETY: the GET_NEXT_KEY variant; `cur` and `next` are buffers of the map's key
        // size that outlive the call; a null key asks for the first key.
        unsafe {
            let u = &mut attr.__bindgen_anon_2;
            u.map_fd = fd.as_raw_fd() as u32;
            u.key = if first { 0 } else { cur.as_ptr() as u64 };
            u.__bindgen_anon_1.next_key = next.as_mut_ptr() as u64;
        }
        match sys_bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(KeyCount {
                    entries: n,
                    approximate: false,
                })
            }
            Err(e) => return Err(e),
        }
        n += 1;
        if n >= bound {
            return Ok(KeyCount {
                entries: n,
                approximate: true,
            });
        }
        std::mem::swap(&mut cur, &mut next);
        first = false;
    }
}

/// Hash-map types whose kernel counter (`bpf_map_sum_elem_count`) is kept: the hash table
/// code counts every insert and delete of these (kernel/bpf/hashtab.c, Linux 6.6+).
fn kernel_counted(t: u32) -> bool {
    use bpf_map_type as m;
    [
        m::BPF_MAP_TYPE_HASH,
        m::BPF_MAP_TYPE_PERCPU_HASH,
        m::BPF_MAP_TYPE_LRU_HASH,
        m::BPF_MAP_TYPE_LRU_PERCPU_HASH,
    ]
    .iter()
    .any(|k| *k as u32 == t)
}

/// Describes and (if `count` says so for its name) counts the map pinned at `path`, with
/// the kernel's counters when `kernel` has them (map id -> entries), else by walking keys.
/// `Ok(None)`: the pin is not a map (a program, a link).
pub fn read_map(
    path: &Path,
    count: &dyn Fn(&str) -> bool,
    kernel: Option<&std::collections::HashMap<u32, u64>>,
) -> io::Result<Option<MapState>> {
    let fd = open_pinned_rdonly(path)?;
    use std::os::fd::AsFd as _;
    // A pinned program or link opens too (and its info call would fill a map's buffer with
    // a program's fields): the descriptor's kind says what it is.
    let kind = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if kind.as_os_str() != "anon_inode:bpf-map" {
        return Ok(None);
    }
    let info = map_info(fd.as_fd())?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut m = MapState {
        path: path.display().to_string(),
        name: name.clone(),
        id: info.id,
        map_type: type_name(info.type_),
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
        entries: None,
        fill: None,
        method: CountMethod::NotCounted,
        approximate: false,
        count_ms: 0.0,
        error: None,
    };
    if array_like(info.type_) {
        m.method = CountMethod::ArraySlots;
    } else if let (true, true, Some(n)) = (
        kernel_counted(info.type_),
        count(&name),
        kernel.and_then(|k| k.get(&info.id)),
    ) {
        m.entries = Some(*n);
        m.fill = (info.max_entries > 0)
            .then(|| (*n).min(u64::from(info.max_entries)) as f64 / f64::from(info.max_entries));
        m.method = CountMethod::KernelCounter;
    } else if keyed(info.type_) && count(&name) {
        let t0 = Instant::now();
        let bound = u64::from(info.max_entries).saturating_mul(2).max(1024);
        match count_keys(fd.as_fd(), info.key_size, bound) {
            Ok(c) => {
                m.entries = Some(c.entries);
                m.approximate = c.approximate;
                m.fill = (info.max_entries > 0).then(|| {
                    c.entries.min(u64::from(info.max_entries)) as f64 / f64::from(info.max_entries)
                });
                m.method = CountMethod::GetNextKey;
            }
            Err(e) => m.error = Some(format!("counting: {e}")),
        }
        m.count_ms = t0.elapsed().as_secs_f64() * 1e3;
    }
    Ok(Some(m))
}

/// Every pinned map directly under `dir`, by name. `errors` gets one line per pin that could
/// not be read; a missing directory is the `Err`.
pub fn read_dir(
    dir: &Path,
    count: &dyn Fn(&str) -> bool,
    kernel: Option<&std::collections::HashMap<u32, u64>>,
    errors: &mut Vec<String>,
) -> io::Result<Vec<MapState>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut out = Vec::new();
    // Refusals come for every pin alike: one line for all of them.
    let mut denied: Vec<String> = Vec::new();
    for p in names {
        match read_map(&p, count, kernel) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                denied.push(p.display().to_string())
            }
            Err(e) => errors.push(format!("{}: {e}", p.display())),
        }
    }
    if let Some(first) = denied.first() {
        errors.push(format!(
            "{} pins could not be opened (permission denied, first {first}): reading maps needs CAP_BPF or CAP_SYS_ADMIN",
            denied.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd as _;

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(1), "hash");
        assert_eq!(type_name(9), "lru_hash");
        assert_eq!(type_name(11), "lpm_trie");
        assert_eq!(type_name(2), "array");
        assert_eq!(type_name(100_000), "type-100000");
    }

    #[test]
    fn keys_are_counted_exactly_and_a_read_only_fd_cannot_write() {
        if !root() {
            eprintln!("SKIPPED: not root");
            return;
        }
        let m = super::super::testing::hash_map(1000, 64).unwrap();
        super::super::testing::insert_range(m.as_fd(), 0, 777).unwrap();
        assert_eq!(
            count_keys(m.as_fd(), 4, 10_000).unwrap(),
            KeyCount {
                entries: 777,
                approximate: false
            }
        );
        // The bound stops a walk and says it is approximate.
        assert_eq!(
            count_keys(m.as_fd(), 4, 100).unwrap(),
            KeyCount {
                entries: 100,
                approximate: true
            }
        );
        // Pinned, reopened read-only: counted the same, and an update through it is refused.
        let dir = std::env::temp_dir().join(format!("ds-maps-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let bpffs = dir.join("fs");
        let _ = std::fs::create_dir_all(&bpffs);
        super::super::testing::mount_bpffs(&bpffs).unwrap();
        let pin = bpffs.join("cilium_ct4_global");
        super::super::testing::pin(m.as_fd(), &pin).unwrap();
        let st = read_map(&pin, &|_| true, None).unwrap().unwrap();
        assert_eq!(st.entries, Some(777));
        assert_eq!(st.max_entries, 1000);
        assert_eq!(st.map_type, "hash");
        assert_eq!(st.method, CountMethod::GetNextKey);
        assert_eq!(st.fill_text(), "777/1000 (77.7%)");
        // The kernel's counter agrees with the walk, for each hash type it keeps.
        match super::super::iter::MapCounts::load() {
            Ok(it) => {
                for (t, flags_note) in [
                    (bpf_map_type::BPF_MAP_TYPE_HASH, "hash"),
                    (bpf_map_type::BPF_MAP_TYPE_LRU_HASH, "lru_hash"),
                    (bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH, "percpu_hash"),
                    (
                        bpf_map_type::BPF_MAP_TYPE_LRU_PERCPU_HASH,
                        "lru_percpu_hash",
                    ),
                ] {
                    let m2 = super::super::testing::map(t, 4, 8, 1000).unwrap();
                    super::super::testing::insert_range(m2.as_fd(), 0, 321).unwrap();
                    super::super::testing::delete_range(m2.as_fd(), 0, 21).unwrap();
                    let id = map_info(m2.as_fd()).unwrap().id;
                    let counts = it.read().unwrap();
                    assert_eq!(counts.get(&id), Some(&300), "{flags_note}");
                    assert_eq!(count_keys(m2.as_fd(), 4, 10_000).unwrap().entries, 300);
                }
                let counts = it.read().unwrap();
                let st = read_map(&pin, &|_| true, Some(&counts)).unwrap().unwrap();
                assert_eq!(st.entries, Some(777));
                assert_eq!(st.method, CountMethod::KernelCounter);
            }
            Err(e) => eprintln!("kernel counter not available here: {e}"),
        }
        let ro = open_pinned_rdonly(&pin).unwrap();
        let err = super::super::testing::insert_range(ro.as_fd(), 5000, 5001).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        super::super::testing::umount(&bpffs);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
