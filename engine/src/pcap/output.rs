//! The file a writer fills: `<path>.tmp` behind a large buffer, renamed to `<path>` on commit.
//!
//! It must never leave a partial file behind: on the first I/O error, or when dropped without
//! [`TmpFile::commit`], it removes the temporary file.
//!
//! Writers append whole blocks to the buffer ([`TmpFile::block`] makes room for one, then the
//! writer extends the returned `Vec` directly), so a packet costs a few copies into memory that
//! stays in cache, and the file sees one `write` per buffer.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::WriteError;

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
}

impl TmpFile {
    pub(super) fn create(path: &Path) -> Result<Self, WriteError> {
        let mut tmp = OsString::from(path.as_os_str());
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|source| WriteError::Io {
            op: "create",
            path: tmp.clone(),
            source,
        })?;
        Ok(TmpFile {
            file: Some(file),
            buf: Vec::with_capacity(BUF_SIZE),
            tmp,
            path: path.to_path_buf(),
            written: 0,
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
        if self.buf.len().saturating_add(len) > BUF_SIZE && !self.buf.is_empty() {
            self.flush_buf()?;
        }
        self.written += len as u64;
        Ok(&mut self.buf)
    }

    /// Bytes handed to [`TmpFile::put`] so far.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Writes the buffer to the file.
    fn flush_buf(&mut self) -> Result<(), WriteError> {
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
            Ok(()) => Ok(()),
            Err(source) => Err(self.fail("write", source)),
        }
    }

    /// Flushes and renames `<path>.tmp` to `<path>`; returns the file size.
    pub(super) fn commit(mut self) -> Result<u64, WriteError> {
        self.flush_buf()?;
        let Some(file) = self.file.take() else {
            return Err(WriteError::Failed {
                path: self.path.clone(),
            });
        };
        drop(file);
        if let Err(source) = fs::rename(&self.tmp, &self.path) {
            return Err(self.fail("rename", source));
        }
        Ok(self.written)
    }

    fn fail(&mut self, op: &'static str, source: std::io::Error) -> WriteError {
        // Nothing more goes to the broken file.
        self.file = None;
        self.buf = Vec::new();
        let _ = fs::remove_file(&self.tmp);
        WriteError::Io {
            op,
            path: self.tmp.clone(),
            source,
        }
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
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
    fn write_error_removes_tmp_and_poisons() {
        // /dev/full accepts the open and fails every write with ENOSPC; a symlink named
        // `<path>.tmp` makes the writer open it.
        if !Path::new("/dev/full").exists() {
            eprintln!("skipping: no /dev/full");
            return;
        }
        let d = dir("full");
        let path = d.join("c.pcap");
        std::os::unix::fs::symlink("/dev/full", d.join("c.pcap.tmp")).unwrap();
        let mut t = TmpFile::create(&path).unwrap();
        // Larger than the buffer: reaches the file at once.
        let err = t.put(&vec![0u8; BUF_SIZE + 1]).err().unwrap();
        assert!(matches!(err, WriteError::Io { op: "write", .. }), "{err}");
        assert!(!d.join("c.pcap.tmp").exists());
        assert!(matches!(t.put(b"x"), Err(WriteError::Failed { .. })));
        assert!(matches!(t.commit(), Err(WriteError::Failed { .. })));
        assert!(!path.exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
