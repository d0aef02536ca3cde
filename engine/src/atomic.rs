//! Files that appear whole or not at all: written as `<path>.tmp`, renamed over `<path>`
//! when complete, the `.tmp` removed on failure. A path that exists and is not a regular
//! file (`/dev/stdout`, `/dev/null`, a FIFO) is written in place: renaming over it would
//! replace the device. The capture writers (`pcap::output`) and the JSON documents
//! (`--stats-json`) share these rules.

use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// Where a file is written before it is complete: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// True when `path` exists and is not a regular file (a device, FIFO or socket): it is
/// written in place.
pub fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.file_type().is_file() && !m.is_dir())
}

/// Writes `path` through `write`, buffered, via `<path>.tmp` renamed at the end (in place
/// for a special file); a failure leaves nothing behind. `write` gets the buffered file
/// itself (not a `dyn Write`): serializers write many small pieces, each then a copy into
/// the buffer.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let buffered = |file: File| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 18, file);
        write(&mut w)?;
        w.flush()
    };
    if is_special(path) {
        return buffered(File::create(path)?);
    }
    let tmp = tmp_path(path);
    let r = File::create(&tmp)
        .and_then(buffered)
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Fails early, with the path in the message, when `path` cannot be created.
pub fn check_writable(path: &Path) -> Result<()> {
    if is_special(path) {
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(());
    }
    let tmp = tmp_path(path);
    fs::write(&tmp, b"").with_context(|| format!("cannot write {}", path.display()))?;
    let _ = fs::remove_file(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_or_nothing() {
        let d = std::env::temp_dir().join(format!("dropscope-atomic-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("doc.json");
        write_atomically(&p, |w| w.write_all(b"{}")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        assert!(!tmp_path(&p).exists());
        // A failing writer leaves the old file and no .tmp.
        let e = write_atomically(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(e.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        assert!(!tmp_path(&p).exists());
        assert!(check_writable(&d.join("new.json")).is_ok());
        assert!(!d.join("new.json.tmp").exists());
        assert!(check_writable(&d.join("no/such/x.json")).is_err());
        assert!(is_special(Path::new("/dev/null")) && !is_special(&p));
        fs::remove_dir_all(&d).unwrap();
    }
}
