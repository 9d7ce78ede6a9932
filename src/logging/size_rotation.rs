//! A writer that rotates its file by size: `iotjobsd.log` → `iotjobsd.log.1` → … →
//! `iotjobsd.log.N`, the oldest dropped. Rotation happens between writes, and the
//! non-blocking logger hands over one whole line per write, so lines are never split.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of a newly created log file: job output may be sensitive, so not world-readable;
/// group-readable for the `adm` convention.
pub const LOG_FILE_MODE: u32 = 0o640;

pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

#[derive(Debug)]
pub struct SizeRotatingWriter {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    written: u64,
}

impl SizeRotatingWriter {
    /// Opens (appending to) `path`; rotates once it would exceed `max_bytes`, keeping
    /// `keep` rotated files.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let written = file.metadata()?.len();
        Ok(SizeRotatingWriter {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            file,
            written,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&self.numbered(self.keep))?;
            for n in (1..self.keep).rev() {
                rename_if_exists(&self.numbered(n), &self.numbered(n + 1))?;
            }
            rename_if_exists(&self.path, &self.numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Write for SizeRotatingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written.saturating_add(buf.len() as u64) > self.max_bytes {
            if let Err(e) = self.rotate() {
                // Keep logging to the current file rather than losing lines; the error
                // reaches stderr through the non-blocking worker once.
                self.written = 0;
                return Err(e);
            }
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut w = SizeRotatingWriter::open(&path, 20, 2).unwrap();
        for i in 0..10 {
            w.write_all(format!("line {i:02} ........\n").as_bytes())
                .unwrap();
        }
        // Each 17-byte line fills a file: x.log holds the last, .1 and .2 the two before.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line 09 ........\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.log.1")).unwrap(),
            "line 08 ........\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.log.2")).unwrap(),
            "line 07 ........\n"
        );
        assert!(!dir.path().join("x.log.3").exists());
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "0123456789\n").unwrap();
        let mut w = SizeRotatingWriter::open(&path, 15, 1).unwrap();
        w.write_all(b"abcdefghij\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.log.1")).unwrap(),
            "0123456789\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghij\n");
    }
}
