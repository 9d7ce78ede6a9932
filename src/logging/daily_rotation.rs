//! A writer that rotates its file daily (UTC): lines go to `iotjobsd.log.YYYY-MM-DD`,
//! `iotjobsd.log` is a symlink to today's file, and only the newest `keep` earlier days
//! are kept. The same file names as tracing-appender's daily appender, which it replaces
//! because that one creates files 0666 less the umask (0644 under the unit's
//! `UMask=0022`); these are created 0640 less the umask, like every log file (job output
//! may be sensitive).
//!
//! It owns the files named `<prefix>.YYYY-MM-DD` in its directory and nothing else:
//! pruning never touches other names (`iotjobsd.log.old`, size-rotated `.1` files).
//! The non-blocking logger hands over one whole line per write, so the day is checked
//! between lines and a line is never split across two files.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::size_rotation::open_append;

/// The time source; the real clock except in tests.
type Clock = Box<dyn Fn() -> SystemTime + Send>;

pub struct DailyRotatingWriter {
    dir: PathBuf,
    prefix: String,
    keep: usize,
    clock: Clock,
    /// Day (since 1970-01-01, UTC) of the open file.
    day: i64,
    file: File,
}

impl std::fmt::Debug for DailyRotatingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DailyRotatingWriter")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("keep", &self.keep)
            .field("day", &self.day)
            .finish()
    }
}

impl DailyRotatingWriter {
    /// Opens (appending to) today's file `dir/prefix.YYYY-MM-DD`, points the symlink
    /// `dir/prefix` at it and removes days beyond the newest `keep` earlier ones.
    pub fn open(dir: impl Into<PathBuf>, prefix: &str, keep: usize) -> io::Result<Self> {
        Self::open_with_clock(dir.into(), prefix, keep, Box::new(SystemTime::now))
    }

    fn open_with_clock(dir: PathBuf, prefix: &str, keep: usize, clock: Clock) -> io::Result<Self> {
        let day = day_of(clock());
        let file = start_day(&dir, prefix, keep, day)?;
        Ok(DailyRotatingWriter {
            dir,
            prefix: prefix.to_string(),
            keep,
            clock,
            day,
            file,
        })
    }
}

impl Write for DailyRotatingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let today = day_of((self.clock)());
        // Only forward: a clock stepped back keeps writing to the newer file.
        if today > self.day {
            self.day = today;
            match start_day(&self.dir, &self.prefix, self.keep, today) {
                Ok(file) => {
                    let _ = self.file.flush();
                    self.file = file;
                }
                // Keep the line in yesterday's file rather than lose it; retried tomorrow.
                Err(e) => eprintln!(
                    "iotjobsd: cannot rotate the log file in {}: {e}",
                    self.dir.display()
                ),
            }
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Opens `day`'s file, repoints the symlink and prunes older days.
fn start_day(dir: &Path, prefix: &str, keep: usize, day: i64) -> io::Result<File> {
    let name = file_name(prefix, day);
    let file = open_append(&dir.join(&name))?;
    link_latest(dir, prefix, &name)?;
    prune(dir, prefix, keep)?;
    Ok(file)
}

/// Replaces the symlink atomically (a new link renamed over the old one), so a reader
/// following `iotjobsd.log` never finds it missing. The target is relative: the
/// directory can be moved or bind-mounted.
fn link_latest(dir: &Path, link: &str, target: &str) -> io::Result<()> {
    let tmp = dir.join(format!(".{link}.link-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, dir.join(link)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Removes this writer's day files beyond today's and the newest `keep` others.
fn prune(dir: &Path, prefix: &str, keep: usize) -> io::Result<()> {
    let mut days: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_day_file(prefix, name))
        .collect();
    // YYYY-MM-DD sorts chronologically; newest first.
    days.sort_unstable_by(|a, b| b.cmp(a));
    for name in days.iter().skip(keep.saturating_add(1)) {
        if let Err(e) = std::fs::remove_file(dir.join(name)) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    Ok(())
}

fn is_day_file(prefix: &str, name: &str) -> bool {
    let Some(date) = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return false;
    };
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn file_name(prefix: &str, day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{prefix}.{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 (UTC); times before the epoch count as day 0.
fn day_of(time: SystemTime) -> i64 {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs / 86_400).unwrap_or(i64::MAX)
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const DAY: u64 = 86_400;
    /// 2026-11-22T23:59:59Z
    const NOV_22_LAST_SECOND: u64 = 1_795_391_999;

    fn clock(secs: &Arc<AtomicU64>) -> Clock {
        let secs = Arc::clone(secs);
        Box::new(move || UNIX_EPOCH + Duration::from_secs(secs.load(Ordering::SeqCst)))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        let name = |secs: u64| file_name("f", day_of(UNIX_EPOCH + Duration::from_secs(secs)));
        assert_eq!(name(0), "f.1970-01-01");
        assert_eq!(name(DAY - 1), "f.1970-01-01");
        assert_eq!(name(951_782_400), "f.2000-02-29");
        assert_eq!(name(951_868_800), "f.2000-03-01");
        assert_eq!(name(1_709_164_800), "f.2024-02-29");
        assert_eq!(name(1_735_689_599), "f.2024-12-31");
        assert_eq!(name(1_735_689_600), "f.2025-01-01");
        assert_eq!(name(NOV_22_LAST_SECOND), "f.2026-11-22");
        assert_eq!(name(NOV_22_LAST_SECOND + 1), "f.2026-11-23");
        assert_eq!(name(4_107_542_400), "f.2100-03-01");
    }

    /// The process umask, read without changing it (tests run in parallel).
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn files_are_created_0640_and_rotate_at_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(NOV_22_LAST_SECOND));
        let mut w = DailyRotatingWriter::open_with_clock(
            dir.path().to_path_buf(),
            "iotjobsd.log",
            7,
            clock(&now),
        )
        .unwrap();
        w.write_all(b"first\n").unwrap();
        now.fetch_add(1, Ordering::SeqCst);
        w.write_all(b"second\n").unwrap();
        w.flush().unwrap();

        assert_eq!(
            names(dir.path()),
            [
                "iotjobsd.log",
                "iotjobsd.log.2026-11-22",
                "iotjobsd.log.2026-11-23"
            ]
        );
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("iotjobsd.log.2026-11-22"), "first\n");
        assert_eq!(read("iotjobsd.log.2026-11-23"), "second\n");
        assert_eq!(read("iotjobsd.log"), "second\n");
        assert_eq!(
            std::fs::read_link(dir.path().join("iotjobsd.log")).unwrap(),
            Path::new("iotjobsd.log.2026-11-23")
        );
        for n in ["iotjobsd.log.2026-11-22", "iotjobsd.log.2026-11-23"] {
            let mode = std::fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640 & !umask(), "{n}: {mode:o}");
        }
    }

    #[test]
    fn keeps_the_newest_days_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        for old in [
            "iotjobsd.log.2026-11-18",
            "iotjobsd.log.2026-11-19",
            "iotjobsd.log.2026-11-20",
            "iotjobsd.log.old",
            "iotjobsd.log.1",
            "other.log.2026-11-01",
        ] {
            std::fs::write(dir.path().join(old), "x\n").unwrap();
        }
        let now = Arc::new(AtomicU64::new(NOV_22_LAST_SECOND));
        let mut w = DailyRotatingWriter::open_with_clock(
            dir.path().to_path_buf(),
            "iotjobsd.log",
            2,
            clock(&now),
        )
        .unwrap();
        // Opening prunes: today plus the two newest earlier days.
        assert_eq!(
            names(dir.path()),
            [
                "iotjobsd.log",
                "iotjobsd.log.1",
                "iotjobsd.log.2026-11-19",
                "iotjobsd.log.2026-11-20",
                "iotjobsd.log.2026-11-22",
                "iotjobsd.log.old",
                "other.log.2026-11-01",
            ]
        );
        now.fetch_add(DAY, Ordering::SeqCst);
        w.write_all(b"next day\n").unwrap();
        assert_eq!(
            names(dir.path()),
            [
                "iotjobsd.log",
                "iotjobsd.log.1",
                "iotjobsd.log.2026-11-20",
                "iotjobsd.log.2026-11-22",
                "iotjobsd.log.2026-11-23",
                "iotjobsd.log.old",
                "other.log.2026-11-01",
            ]
        );
    }

    #[test]
    fn appends_to_todays_existing_file_and_ignores_a_clock_stepped_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("iotjobsd.log.2026-11-22"),
            "before restart\n",
        )
        .unwrap();
        let now = Arc::new(AtomicU64::new(NOV_22_LAST_SECOND - 60));
        let mut w = DailyRotatingWriter::open_with_clock(
            dir.path().to_path_buf(),
            "iotjobsd.log",
            7,
            clock(&now),
        )
        .unwrap();
        w.write_all(b"after restart\n").unwrap();
        now.store(NOV_22_LAST_SECOND - DAY, Ordering::SeqCst);
        w.write_all(b"clock stepped back\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("iotjobsd.log")).unwrap(),
            "before restart\nafter restart\nclock stepped back\n"
        );
        assert_eq!(
            names(dir.path()),
            ["iotjobsd.log", "iotjobsd.log.2026-11-22"]
        );
    }
}
