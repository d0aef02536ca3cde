//! The file a writer fills: `<path>.tmp` behind a large buffer, renamed to `<path>` on commit.
//!
//! It must never leave a partial file behind: on the first I/O error, or when dropped without
//! [`TmpFile::commit`], it removes the temporary file. A path that exists and is not a
//! regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written directly: renaming a file
//! over a device would replace the device.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::WriteError;

/// Buffer size: large enough that the kernel sees few, big writes.
const BUF_SIZE: usize = 1 << 20;

pub(super) struct TmpFile {
    /// `None` once failed or committed.
    w: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    written: u64,
    /// Writing straight to a device or FIFO: no rename, nothing to remove.
    direct: bool,
}

/// True when `path` exists and is not a regular file (a device, FIFO or socket).
pub fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.file_type().is_file() && !m.is_dir())
}

impl TmpFile {
    pub(super) fn create(path: &Path) -> Result<Self, WriteError> {
        let direct = is_special(path);
        let tmp = if direct {
            path.to_path_buf()
        } else {
            let mut tmp = OsString::from(path.as_os_str());
            tmp.push(".tmp");
            PathBuf::from(tmp)
        };
        let opened = if direct {
            fs::OpenOptions::new().write(true).open(&tmp)
        } else {
            File::create(&tmp)
        };
        let file = opened.map_err(|source| WriteError::Io {
            op: "create",
            path: tmp.clone(),
            source,
        })?;
        Ok(TmpFile {
            w: Some(BufWriter::with_capacity(BUF_SIZE, file)),
            tmp,
            path: path.to_path_buf(),
            written: 0,
            direct,
        })
    }

    /// Appends `bytes`. After the first error every call fails and the file is gone.
    #[inline]
    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let Some(w) = self.w.as_mut() else {
            return Err(WriteError::Failed {
                path: self.path.clone(),
            });
        };
        match w.write_all(bytes) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(source) => Err(self.fail("write", source)),
        }
    }

    /// Bytes handed to [`TmpFile::put`] so far.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and renames `<path>.tmp` to `<path>`; returns the file size.
    pub(super) fn commit(mut self) -> Result<u64, WriteError> {
        let Some(w) = self.w.take() else {
            return Err(WriteError::Failed {
                path: self.path.clone(),
            });
        };
        let file = match w.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let source = e.into_error();
                return Err(self.fail("write", source));
            }
        };
        drop(file);
        if self.direct {
            return Ok(self.written);
        }
        if let Err(source) = fs::rename(&self.tmp, &self.path) {
            return Err(self.fail("rename", source));
        }
        Ok(self.written)
    }

    fn fail(&mut self, op: &'static str, source: std::io::Error) -> WriteError {
        // Dropping the BufWriter would try to flush into the broken file: forget its buffer.
        if let Some(w) = self.w.take() {
            let (_file, _buffer) = w.into_parts();
        }
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

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(w) = self.w.take() {
            let (_file, _buffer) = w.into_parts();
            if !self.direct {
                let _ = fs::remove_file(&self.tmp);
            }
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
