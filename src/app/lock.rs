//! The single-instance lock: `<runtime_dir>/iotjobsd.lock`, held with `flock` for the
//! daemon's lifetime and holding its PID, so a second instance fails with a message
//! naming the one already running. The kernel drops the lock when the process dies,
//! so a stale file never blocks a restart.
//!
//! One wrinkle: a step being spawned when the daemon dies (forked, not yet exec'ed)
//! holds a copy of the lock's descriptor for that moment, so a daemon restarted right
//! after a `kill -9` outside systemd (which empties the cgroup first) can find the lock
//! held by a process that is not the PID in the file. When that PID is dead the lock is
//! retried for a short while instead of refusing to start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// The lock file's name inside the runtime directory.
pub const LOCK_FILE: &str = "iotjobsd.lock";

/// How long a lock held while its recorded PID is dead is retried: far longer than a
/// fork-to-exec window, short enough not to delay a start noticeably.
const ORPHANED_LOCK_RETRY: Duration = Duration::from_secs(2);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("another iotjobsd is already running ({}); lock file {}", holder(*.pid), path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The PID written by the holder, if readable.
        pid: Option<u32>,
    },
    /// The runtime directory or lock file could not be created or locked.
    #[error("cannot use lock file {}: {source}", path.display())]
    Io {
        /// The lock file (or its directory).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("PID {pid}"),
        None => "PID unknown".to_string(),
    }
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct InstanceLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock in `runtime_dir` (created if missing) and writes our PID into it.
    pub fn acquire(runtime_dir: &Path) -> Result<InstanceLock, LockError> {
        Self::acquire_within(runtime_dir, ORPHANED_LOCK_RETRY)
    }

    fn acquire_within(runtime_dir: &Path, retry: Duration) -> Result<InstanceLock, LockError> {
        let path = runtime_dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(runtime_dir)
            .map_err(io_err)?;
        // No truncation on open: the file may belong to a running instance.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_err)?;
        let deadline = Instant::now() + retry;
        let mut file = file;
        let mut file = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => break locked,
                Err((mut unlocked, Errno::EWOULDBLOCK)) => {
                    let pid = read_pid(&mut unlocked);
                    if holder_alive(pid) || Instant::now() >= deadline {
                        return Err(LockError::Held { pid, path });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    file = unlocked;
                }
                Err((_, errno)) => return Err(io_err(errno.into())),
            }
        };
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()
        };
        write_pid(&mut file).map_err(io_err)?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether the process that wrote the lock file still exists (an unreadable PID counts
/// as alive: refuse rather than wait on something unknown).
fn holder_alive(pid: Option<u32>) -> bool {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return true;
    };
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    // Read from the start: the same description may be read again while retrying.
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run/iotjobsd");
        let first = InstanceLock::acquire(&runtime).unwrap();
        let content = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(content, format!("{}\n", std::process::id()));

        // flock locks belong to the open file description, so a second open in the
        // same process conflicts just like another process would.
        let err = InstanceLock::acquire(&runtime).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("already running (PID {})", std::process::id())),
            "{message}"
        );
        drop(first);
        let again = InstanceLock::acquire(&runtime).unwrap();
        drop(again);
    }

    #[test]
    fn stale_content_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let lock = InstanceLock::acquire(dir.path()).unwrap();
        let content = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(content.trim(), std::process::id().to_string());
    }

    /// The PID of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_lock_left_to_a_dead_daemons_child_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), format!("{}\n", dead_pid())).unwrap();
        // Another open file description holds the lock, as a forked step does for a
        // moment after the daemon that wrote the PID died; it lets go a little later.
        let held = Flock::lock(
            File::open(dir.path().join(LOCK_FILE)).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        let lock = InstanceLock::acquire_within(dir.path(), Duration::from_secs(60)).unwrap();
        release.join().unwrap();
        let content = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(content.trim(), std::process::id().to_string());
    }

    #[test]
    fn a_lock_held_past_the_retry_names_the_dead_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dead_pid();
        std::fs::write(dir.path().join(LOCK_FILE), format!("{pid}\n")).unwrap();
        let _held = Flock::lock(
            File::open(dir.path().join(LOCK_FILE)).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let err = InstanceLock::acquire_within(dir.path(), Duration::ZERO).unwrap_err();
        assert!(
            matches!(err, LockError::Held { pid: Some(p), .. } if p == pid),
            "{err}"
        );
    }

    #[test]
    fn unusable_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let err = InstanceLock::acquire(&file.join("sub")).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
    }
}
