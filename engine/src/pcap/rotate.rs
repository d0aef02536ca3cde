//! Rotating capture files, with tcpdump's flags: `-C MB` (a new file once the current one
//! holds more than MB million bytes), `-G SECS` (a new file every SECS seconds, the `-w`
//! name passed through strftime), `-W N` (with `-C`: a ring of N files, the oldest
//! overwritten; with `-G` alone: stop after N files). Names follow tcpdump: with `-C`, files
//! after the first get a number (`FILE`, `FILE1`, `FILE2`, ...); with `-W`, every file gets
//! one, zero-padded to the digits of N-1 (`FILE0` .. `FILE2` for `-W 3`); with `-G`, the
//! strftime name, plus the number when `-C` is given too.
//!
//! Every file is a whole capture file of its own (header, interfaces, packets), written as
//! `<file>.tmp` and renamed when complete; a file the ring overwrites is replaced only when
//! its successor is complete. The ledger ([`FileLedger`]) says what went to each file, and
//! which files were overwritten (their packets are gone, and counted so).
//!
//! Must never: leave a file incomplete under its final name, or lose a packet's count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{
    create_with, FileFormat, IfaceKey, OutPacket, PacketWriter, WriteError, WriterOptions,
    WriterStats,
};

/// The rotation asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `-C`: bytes (MB x 1,000,000).
    pub size_bytes: Option<u64>,
    /// `-G`: seconds.
    pub seconds: Option<u64>,
    /// `-W`: files.
    pub files: Option<u32>,
}

/// One file written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileEntry {
    pub path: PathBuf,
    pub packets: u64,
    /// Captured bytes of its packets.
    pub bytes: u64,
    /// The ring overwrote it later: its packets are not on disk any more.
    pub overwritten: bool,
}

/// What went to each file, shared with whoever reports it.
pub type FileLedger = Arc<Mutex<Vec<FileEntry>>>;

pub struct RotatingWriter {
    pattern: PathBuf,
    format: FileFormat,
    snaplen: u32,
    options: WriterOptions,
    rot: Rotation,
    cur: Option<Box<dyn PacketWriter>>,
    opened: Instant,
    /// tcpdump's `Cflag_count`: the number of the current file in its time slice.
    count: u32,
    /// Files opened in all (for `-G` with `-W`).
    files: u32,
    /// The strftime name of the current time slice (`-G`).
    slice_name: PathBuf,
    ledger: FileLedger,
    stats: WriterStats,
    /// `-G` with `-W`: set when the last file is complete, to end the run.
    stop: Option<Arc<AtomicBool>>,
    done: bool,
}

/// tcpdump's digits for `-W N`: those of N-1.
fn w_chars(n: u32) -> usize {
    let mut x = n.saturating_sub(1);
    let mut c = 0;
    while x > 0 {
        c += 1;
        x /= 10;
    }
    c
}

/// `base` with `count` appended, zero-padded to `chars` (tcpdump's MakeFilename).
pub fn numbered(base: &Path, count: u32, chars: usize) -> PathBuf {
    if count == 0 && chars == 0 {
        return base.to_path_buf();
    }
    let mut s = base.as_os_str().to_owned();
    s.push(format!("{count:0chars$}"));
    PathBuf::from(s)
}

/// `pattern` through strftime(3) at Unix time `t`, in local time (as tcpdump names `-G`
/// files); the pattern itself when it cannot be formatted.
pub fn strftime(pattern: &Path, t: i64) -> PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(pattern.as_os_str().as_bytes()) else {
        return pattern.to_path_buf();
    };
    let time: libc::time_t = t;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer);
    // localtime_r fills it from `time`, both owned here.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live values of the right types.
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return pattern.to_path_buf();
    }
    let mut buf = vec![0u8; pattern.as_os_str().len() * 8 + 256];
    // SAFETY: `buf` has `buf.len()` writable bytes; `c` is NUL-terminated; strftime writes
    // at most that many bytes and returns how many (0 if they did not fit).
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c.as_ptr(), &tm) };
    if n == 0 {
        return pattern.to_path_buf();
    }
    buf.truncate(n);
    PathBuf::from(std::ffi::OsStr::from_bytes(&buf))
}

fn now_secs() -> i64 {
    i64::try_from(crate::timefmt::now_ns() / 1_000_000_000).unwrap_or(0)
}

impl RotatingWriter {
    /// A rotating writer on the `-w` name `pattern`; the first file is created now. `stop`
    /// is set when `-G` with `-W` has written its last file.
    pub fn create(
        pattern: &Path,
        format: FileFormat,
        snaplen: u32,
        options: WriterOptions,
        rot: Rotation,
        stop: Option<Arc<AtomicBool>>,
    ) -> Result<(RotatingWriter, FileLedger), WriteError> {
        let ledger: FileLedger = Arc::new(Mutex::new(Vec::new()));
        let mut w = RotatingWriter {
            pattern: pattern.to_path_buf(),
            format,
            snaplen,
            options,
            rot,
            cur: None,
            opened: Instant::now(),
            count: 0,
            files: 0,
            slice_name: pattern.to_path_buf(),
            ledger: ledger.clone(),
            stats: WriterStats::default(),
            stop,
            done: false,
        };
        if rot.seconds.is_some() {
            w.slice_name = strftime(pattern, now_secs());
        }
        w.open()?;
        Ok((w, ledger))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<FileEntry>> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the file the current slice and count name.
    fn open(&mut self) -> Result<(), WriteError> {
        let chars = match (self.rot.size_bytes, self.rot.files) {
            (Some(_), Some(n)) => w_chars(n),
            _ => 0,
        };
        let path = if self.rot.size_bytes.is_some() {
            numbered(&self.slice_name, self.count, chars)
        } else {
            self.slice_name.clone()
        };
        let w = create_with(&path, self.format, self.snaplen, self.options)?;
        {
            let mut e = self.entries();
            for old in e.iter_mut().filter(|f| f.path == path) {
                old.overwritten = true;
            }
            e.push(FileEntry {
                path,
                ..Default::default()
            });
        }
        self.cur = Some(w);
        self.opened = Instant::now();
        self.files += 1;
        Ok(())
    }

    /// Finishes the current file (renamed into place) and adds its counts.
    fn close(&mut self) -> Result<(), WriteError> {
        if let Some(w) = self.cur.take() {
            let st = w.finish()?;
            let s = &mut self.stats;
            s.packets += st.packets;
            s.bytes += st.bytes;
            s.ifaces = s.ifaces.max(st.ifaces);
            s.truncated_to_snaplen += st.truncated_to_snaplen;
            s.comments_dropped += st.comments_dropped;
            s.comments_truncated += st.comments_truncated;
            s.raw_unknown_version += st.raw_unknown_version;
            s.file_bytes += st.file_bytes;
            s.not_written += st.not_written;
            if let Some(last) = self.entries().last_mut() {
                // What the file holds (a full disk cuts it short).
                last.packets = st.packets;
                last.bytes = st.bytes;
            }
        }
        Ok(())
    }

    /// Rotates if the time or size says so (before a packet is written, as tcpdump).
    fn maybe_rotate(&mut self) -> Result<(), WriteError> {
        let timed = self
            .rot
            .seconds
            .is_some_and(|g| self.opened.elapsed().as_secs() >= g);
        let sized = self
            .rot
            .size_bytes
            .is_some_and(|c| self.cur.as_ref().is_some_and(|w| w.file_bytes() > c));
        if !(timed || sized) {
            return Ok(());
        }
        self.close()?;
        if timed {
            if let (Some(n), None) = (self.rot.files, self.rot.size_bytes) {
                if self.files >= n {
                    self.done = true;
                    if let Some(s) = &self.stop {
                        s.store(true, Ordering::Relaxed);
                    }
                    return Ok(());
                }
            }
            self.slice_name = strftime(&self.pattern, now_secs());
            self.count = 0;
        } else {
            self.count += 1;
            if self.rot.files.is_some_and(|n| self.count >= n) {
                self.count = 0;
            }
        }
        self.open()
    }
}

impl PacketWriter for RotatingWriter {
    fn write(
        &mut self,
        p: &OutPacket<'_>,
        iface_name: &dyn Fn(&IfaceKey) -> String,
    ) -> Result<(), WriteError> {
        if !self.done {
            self.maybe_rotate()?;
        }
        match self.cur.as_mut() {
            Some(w) if !self.done => w.write(p, iface_name),
            _ => {
                self.stats.not_written += 1;
                Ok(())
            }
        }
    }

    fn write_custom(&mut self, pen: u32, data: &[u8]) -> Result<bool, WriteError> {
        match self.cur.as_mut() {
            Some(w) => w.write_custom(pen, data),
            None => Ok(false),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<WriterStats, WriteError> {
        self.close()?;
        Ok(self.stats)
    }

    fn disk_full(&self) -> Option<String> {
        self.cur.as_ref().and_then(|w| w.disk_full())
    }

    fn file_bytes(&self) -> u64 {
        self.cur.as_ref().map_or(0, |w| w.file_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_tcpdump() {
        assert_eq!(w_chars(3), 1);
        assert_eq!(w_chars(10), 1);
        assert_eq!(w_chars(11), 2);
        assert_eq!(w_chars(1), 0);
        let b = Path::new("/x/drops.pcapng");
        assert_eq!(numbered(b, 0, 0), b);
        assert_eq!(numbered(b, 2, 0), Path::new("/x/drops.pcapng2"));
        assert_eq!(numbered(b, 0, 1), Path::new("/x/drops.pcapng0"));
        assert_eq!(numbered(b, 7, 2), Path::new("/x/drops.pcapng07"));
        // 2001-09-09 01:46:40 UTC; the hour depends on the local zone, the rest does not.
        let n = strftime(Path::new("d-%Y%m%d-%M%S.pcap"), 1_000_000_000);
        assert!(
            n.to_str().unwrap().starts_with("d-20010909-4640")
                || n.to_str().unwrap().starts_with("d-2001090"),
            "{n:?}"
        );
        assert_eq!(strftime(Path::new("plain"), 0), Path::new("plain"));
    }

    fn packet(data: &[u8]) -> OutPacket<'_> {
        OutPacket {
            ts_ns: 1,
            iface: IfaceKey {
                ifindex: 1,
                netns: 0,
                link: crate::event::LinkType::Ethernet,
            },
            orig_len: data.len() as u32,
            data,
            comment: None,
            flags: 0,
        }
    }

    #[test]
    fn size_ring_keeps_n_complete_files_and_counts_every_packet() {
        let dir = std::env::temp_dir().join(format!("dropscope-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("r.pcapng");
        let (w, ledger) = RotatingWriter::create(
            &base,
            FileFormat::Pcapng,
            2048,
            WriterOptions::default(),
            Rotation {
                size_bytes: Some(10_000),
                seconds: None,
                files: Some(3),
            },
            None,
        )
        .unwrap();
        let mut w: Box<dyn PacketWriter> = Box::new(w);
        let data = vec![0u8; 1000];
        for _ in 0..100 {
            w.write(&packet(&data), &|_| "x".into()).unwrap();
        }
        let st = w.finish().unwrap();
        assert_eq!(st.packets, 100);
        let e = ledger.lock().unwrap().clone();
        assert_eq!(e.iter().map(|f| f.packets).sum::<u64>(), 100);
        let kept: Vec<_> = e.iter().filter(|f| !f.overwritten).collect();
        assert_eq!(kept.len(), 3);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["r.pcapng0", "r.pcapng1", "r.pcapng2"]);
        for f in kept {
            let bytes = std::fs::read(&f.path).unwrap();
            let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
            let mut n = 0;
            while let Some(b) = r.next_block() {
                if matches!(b.unwrap(), pcap_file::pcapng::Block::EnhancedPacket(_)) {
                    n += 1;
                }
            }
            assert_eq!(n, f.packets);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
