//! The file a writer fills: `<path>.tmp` behind a large buffer, renamed to `<path>` on commit.
//!
//! It must never leave a partial file behind: on the first I/O error, or when dropped without
//! [`TmpFile::commit`], it removes the temporary file. The one exception is a file system
//! that fills up (ENOSPC, EDQUOT, EFBIG): the file is cut back to its last complete block
//! (writes are whole blocks), kept and committed as it is, and what comes after is counted
//! instead of written ([`TmpFile::full`]), so a capture on a full disk keeps what it got. A path that exists and is not a
//! regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written directly: renaming a file
//! over a device would replace the device.
//!
//! Writers append whole blocks to the buffer ([`TmpFile::block`] makes room for one, then the
//! writer extends the returned `Vec` directly), so a packet costs a few copies into memory that
//! stays in cache, and the file sees one `write` per buffer.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::WriteError;

/// Once this much more has been written, the flusher is asked to start writing it back.
const KICK_BYTES: u64 = 4 << 20;

/// Starts writeback of the temporary file as it grows, on its own thread, when the file will
/// replace an existing one.
///
/// Renaming over an existing file makes ext4 (`auto_da_alloc`, the default) write the renamed
/// file back before `rename` returns, so that a crash leaves the old or the new contents,
/// never an empty file. For a large capture that `rename` then waits on the disk for the
/// whole file (block-layer writeback throttling holds it: 100 ms for 165 MB here), at the very
/// end of the run. Writing back as we go overlaps that I/O with the run and leaves `rename`
/// little to do. `sync_file_range(SYNC_FILE_RANGE_WRITE)` only starts writeback; it waits for
/// nothing but the block layer, and on its own thread nobody waits for it. A new file is
/// left to the kernel's background writeback, as before.
///
/// The same thread first drops the file being replaced from the page cache
/// (`POSIX_FADV_DONTNEED`: its contents stay on disk, whole, until the rename): `rename`
/// would otherwise free all its cached pages itself at the end of the run, and the pages freed
/// early are reused, warm, for the new file.
struct Flusher {
    tx: Option<crossbeam_channel::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// File offset up to which writeback was requested.
    kicked: u64,
}

impl Flusher {
    fn start(file: &File, replaced: &Path) -> Option<Flusher> {
        use std::os::fd::AsRawFd as _;
        let file = file.try_clone().ok()?;
        let replaced = replaced.to_path_buf();
        let (tx, rx) = crossbeam_channel::bounded::<u64>(64);
        let thread = std::thread::Builder::new()
            .name("dropscope-flush".into())
            .spawn(move || {
                if let Ok(old) = File::open(&replaced) {
                    // SAFETY: a plain system call on a descriptor this thread owns.
                    let _ = unsafe {
                        libc::posix_fadvise(old.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                    };
                }
                let mut from = 0u64;
                for to in rx {
                    let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
                        break;
                    };
                    // SAFETY: a plain system call on a descriptor this thread owns.
                    let r = unsafe {
                        libc::sync_file_range(
                            file.as_raw_fd(),
                            off,
                            len,
                            libc::SYNC_FILE_RANGE_WRITE,
                        )
                    };
                    if r != 0 {
                        // Only a hint (e.g. a file system without it): stop asking.
                        break;
                    }
                    from = to;
                }
            })
            .ok()?;
        Some(Flusher {
            tx: Some(tx),
            thread: Some(thread),
            kicked: 0,
        })
    }

    /// `end` bytes are in the file.
    #[inline]
    fn written(&mut self, end: u64) {
        if end.saturating_sub(self.kicked) >= KICK_BYTES {
            if let Some(tx) = &self.tx {
                // Full: the thread is behind, ask again later.
                if tx.try_send(end).is_ok() {
                    self.kicked = end;
                }
            }
        }
    }

    /// Stops the thread (after the range it is on).
    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Buffer size. Large enough that the kernel sees few writes; not much larger: on this size
/// of write the kernel allocates page-cache folios as large as the write, and large fresh
/// folios measured slower to fill (benches/README.md, bench-replay) than 256 KiB ones.
const BUF_SIZE: usize = 256 << 10;

pub(super) struct TmpFile {
    /// `None` once failed or committed.
    file: Option<File>,
    /// Bytes not yet handed to `file`.
    buf: Vec<u8>,
    tmp: PathBuf,
    path: PathBuf,
    written: u64,
    /// Bytes handed to `file`.
    in_file: u64,
    flusher: Option<Flusher>,
    /// Writing straight to a device or FIFO: no rename, nothing to remove.
    direct: bool,
    /// Packets whose blocks are in `buf`, and in the file.
    pending_packets: u64,
    in_file_packets: u64,
    /// Their captured bytes.
    pending_bytes: u64,
    in_file_bytes: u64,
    /// The file system ran out of room: the file was cut back to its last complete block,
    /// is kept, and nothing more is written (the packets offered are counted instead).
    full: Option<std::io::Error>,
    not_written: u64,
}

pub use crate::atomic::is_special;

impl TmpFile {
    #[cfg(test)]
    pub(super) fn create(path: &Path) -> Result<Self, WriteError> {
        Self::create_with_mode(path, super::FILE_MODE)
    }

    /// Creates `<path>.tmp` with permission bits `mode` (before the umask).
    pub(super) fn create_with_mode(path: &Path, mode: u32) -> Result<Self, WriteError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let direct = is_special(path);
        let tmp = if direct {
            path.to_path_buf()
        } else {
            crate::atomic::tmp_path(path)
        };
        let opened = if direct {
            fs::OpenOptions::new().write(true).open(&tmp)
        } else {
            // A `.tmp` left by an earlier run may have other bits: it is made anew.
            let _ = fs::remove_file(&tmp);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
        };
        // Named as the user gave it: the `.tmp` name is this module's business.
        let file = opened.map_err(|source| WriteError::Io {
            op: "create",
            path: path.to_path_buf(),
            source,
        })?;
        let replacing = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        let flusher = if replacing && !direct {
            Flusher::start(&file, path)
        } else {
            None
        };
        Ok(TmpFile {
            file: Some(file),
            buf: Vec::with_capacity(BUF_SIZE),
            tmp,
            path: path.to_path_buf(),
            written: 0,
            in_file: 0,
            flusher,
            direct,
            pending_packets: 0,
            in_file_packets: 0,
            pending_bytes: 0,
            in_file_bytes: 0,
            full: None,
            not_written: 0,
        })
    }

    /// Appends `bytes`. After the first error every call fails and the file is gone.
    #[inline]
    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        if bytes.len() >= BUF_SIZE {
            // Larger than the buffer: straight to the file, after what is buffered.
            self.flush_buf()?;
            self.written += bytes.len() as u64;
            return self.write_file(bytes);
        }
        self.block(bytes.len())?.extend_from_slice(bytes);
        Ok(())
    }

    /// Room for a block of `len` bytes: the caller appends exactly `len` bytes to the
    /// returned buffer (fewer or more would miscount [`TmpFile::written`]).
    #[inline]
    pub(super) fn block(&mut self, len: usize) -> Result<&mut Vec<u8>, WriteError> {
        if self.file.is_none() {
            return Err(WriteError::Failed {
                path: self.path.clone(),
            });
        }
        if self.full.is_some() {
            // Filled and thrown away: the file has no room.
            self.buf.clear();
            return Ok(&mut self.buf);
        }
        if self.buf.len().saturating_add(len) > BUF_SIZE && !self.buf.is_empty() {
            self.flush_buf()?;
        }
        self.written += len as u64;
        Ok(&mut self.buf)
    }

    /// The block just appended held a packet of `cap` captured bytes.
    #[inline]
    pub(super) fn packet_added(&mut self, cap: u64) {
        if self.full.is_some() {
            self.not_written += 1;
        } else {
            self.pending_packets += 1;
            self.pending_bytes += cap;
        }
    }

    /// Why the file system took no more, if it filled up.
    pub(super) fn full(&self) -> Option<String> {
        self.full.as_ref().map(|e| e.to_string())
    }

    /// Corrects a writer's counts to what the file holds, when the file system filled up.
    pub(super) fn settle(&self, stats: &mut super::WriterStats) {
        if self.full.is_some() {
            stats.packets = self.in_file_packets;
            stats.bytes = self.in_file_bytes;
            stats.not_written = self.not_written;
        }
    }

    /// Bytes handed to [`TmpFile::put`] so far.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Writes the buffer to the file.
    fn flush_buf(&mut self) -> Result<(), WriteError> {
        if self.full.is_some() {
            self.buf.clear();
            return Ok(());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.write_file(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    fn write_file(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let Some(file) = self.file.as_mut() else {
            return Err(WriteError::Failed {
                path: self.path.clone(),
            });
        };
        match file.write_all(bytes) {
            Ok(()) => {
                self.in_file += bytes.len() as u64;
                self.in_file_packets += std::mem::take(&mut self.pending_packets);
                self.in_file_bytes += std::mem::take(&mut self.pending_bytes);
                if let Some(f) = &mut self.flusher {
                    f.written(self.in_file);
                }
                Ok(())
            }
            Err(e) if is_no_room(&e) && !self.direct => {
                // What went in whole stays (writes are whole blocks, so `in_file` ends one):
                // the rest of this write is cut off, and the file is kept that way.
                if let Err(source) = file.set_len(self.in_file) {
                    return Err(self.fail("truncate", source));
                }
                self.not_written += std::mem::take(&mut self.pending_packets);
                self.pending_bytes = 0;
                self.written = self.in_file;
                self.full = Some(e);
                Ok(())
            }
            Err(source) => Err(self.fail("write", source)),
        }
    }

    /// Flushes and renames `<path>.tmp` to `<path>` (also a file cut short by a full disk:
    /// see [`TmpFile::full`]); returns the file size.
    pub(super) fn commit(mut self) -> Result<u64, WriteError> {
        self.flush_buf()?;
        let Some(file) = self.file.take() else {
            return Err(WriteError::Failed {
                path: self.path.clone(),
            });
        };
        drop(file);
        if let Some(mut f) = self.flusher.take() {
            f.stop();
        }
        if self.direct {
            return Ok(self.written);
        }
        if let Err(source) = fs::rename(&self.tmp, &self.path) {
            return Err(self.fail("rename", source));
        }
        Ok(self.written)
    }

    fn fail(&mut self, op: &'static str, source: std::io::Error) -> WriteError {
        // Nothing more goes to the broken file.
        self.file = None;
        self.flusher = None;
        self.buf = Vec::new();
        if !self.direct {
            let _ = fs::remove_file(&self.tmp);
        }
        WriteError::Io {
            op,
            path: self.tmp.clone(),
            source,
        }
    }
}

/// The file system has no room left for the file (as opposed to a broken disk or file).
fn is_no_room(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.file.take().is_some() && !self.direct {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("dropscope-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn devices_are_written_in_place_never_replaced() {
        use std::os::unix::fs::FileTypeExt as _;
        let dev = Path::new("/dev/null");
        let mut t = TmpFile::create(dev).unwrap();
        t.put(b"abc").unwrap();
        assert_eq!(t.commit().unwrap(), 3);
        assert!(fs::metadata(dev).unwrap().file_type().is_char_device());
        assert!(!Path::new("/dev/null.tmp").exists());
        // Dropped without commit: the device is not removed either.
        let mut t = TmpFile::create(dev).unwrap();
        t.put(b"x").unwrap();
        drop(t);
        assert!(fs::metadata(dev).unwrap().file_type().is_char_device());
    }

    #[test]
    fn commit_renames() {
        let d = dir("commit");
        let path = d.join("a.pcapng");
        let mut t = TmpFile::create(&path).unwrap();
        t.put(b"abc").unwrap();
        t.put(b"de").unwrap();
        assert!(d.join("a.pcapng.tmp").exists());
        assert!(!path.exists());
        assert_eq!(t.commit().unwrap(), 5);
        assert_eq!(fs::read(&path).unwrap(), b"abcde");
        assert!(!d.join("a.pcapng.tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replacing_a_file_writes_back_as_it_goes() {
        let d = dir("replace");
        let path = d.join("r.pcapng");
        fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let mut t = TmpFile::create(&path).unwrap();
        assert!(t.flusher.is_some());
        // 10 MiB in odd-sized blocks: the flusher is asked twice (every 4 MiB).
        let block: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..10_486 {
            t.put(&block).unwrap();
        }
        // The old file is untouched until the rename.
        assert_eq!(fs::read(&path).unwrap(), vec![7u8; 1 << 20]);
        assert_eq!(t.commit().unwrap(), 10_486_000);
        let got = fs::read(&path).unwrap();
        assert_eq!(got.len(), 10_486_000);
        assert_eq!(&got[..1000], &block[..]);
        assert_eq!(&got[got.len() - 1000..], &block[..]);
        assert!(!d.join("r.pcapng.tmp").exists());
        // A new file gets no flusher.
        let t = TmpFile::create(&d.join("new.pcapng")).unwrap();
        assert!(t.flusher.is_none());
        drop(t);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn drop_removes_tmp() {
        let d = dir("drop");
        let path = d.join("b.pcap");
        let mut t = TmpFile::create(&path).unwrap();
        t.put(&[0u8; 3 << 20]).unwrap();
        assert!(d.join("b.pcap.tmp").exists());
        drop(t);
        assert!(!d.join("b.pcap.tmp").exists());
        assert!(!path.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_in_missing_dir_fails() {
        let d = dir("missing");
        let err = TmpFile::create(&d.join("no/such/x.pcap")).err().unwrap();
        assert!(matches!(err, WriteError::Io { op: "create", .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn write_error_poisons() {
        // /dev/full fails every write with ENOSPC; as a device it is written in place, where
        // a full disk cannot be cut back: the writer fails, and every later call too. (A full
        // file system under a regular file: cli/tests/it/bad_days.rs.)
        if !Path::new("/dev/full").exists() {
            eprintln!("skipping: no /dev/full");
            return;
        }
        let mut t = TmpFile::create(Path::new("/dev/full")).unwrap();
        // Larger than the buffer: reaches the file at once.
        let err = t.put(&vec![0u8; BUF_SIZE + 1]).err().unwrap();
        assert!(matches!(err, WriteError::Io { op: "write", .. }), "{err}");
        assert!(matches!(t.put(b"x"), Err(WriteError::Failed { .. })));
        assert!(matches!(t.commit(), Err(WriteError::Failed { .. })));
    }
}
