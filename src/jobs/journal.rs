//! The write-ahead journal: one small file, `<state_dir>/journal.json`, rewritten whole
//! (temp file, fsync, rename, fsync of the directory) before every side effect the jobs
//! task performs (a status publish, a step start or kill) and after every result.
//!
//! It holds the engine's complete [`EngineState`] (so the durable outbox is the engine's
//! outbox plus its in-flight update: a status is on disk before it is published and
//! leaves the file only when the engine drops it, on `update/accepted` or a rejection
//! that makes it moot) and a [`StepMark`] for the step in progress: which step, its
//! phase, the boot id when it started. One file per transition keeps the write path to
//! one `write` + two `fsync`s, and there is never a log to replay or compact.
//!
//! Owns: the file format, crash-safe writes, reading back, moving a corrupt file aside,
//! the boot id and the per-step self-restart marker paths. Must not decide anything
//! about jobs (see `jobs::resume`) or talk to the network.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::jobs::engine::EngineState;

/// Version of the on-disk format; a file with another version is moved aside.
pub const FORMAT: u32 = 1;
/// The journal's file name inside the state directory.
pub const FILE_NAME: &str = "journal.json";
/// Directory (inside the state directory) of the self-restart markers.
pub const SELF_RESTART_DIR: &str = "self-restart";

/// Errors of the journal's file operations.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the state directory '{}': {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the journal '{}': {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the journal: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where the step in progress stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    /// Journalled before the process is spawned; stays so while it runs.
    Started,
    /// Due, but not started because the daemon was shutting down.
    NotStarted,
    /// A reboot step exited 0: the reboot is requested, the system should go down.
    RebootRequested,
    /// The step ended; its result is in the engine state of the same record.
    Finished { result: String },
}

/// The step in progress (or the last one that ended), as journalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMark {
    pub job_id: String,
    pub execution_number: i64,
    /// The execution's `versionNumber` known when the step started.
    pub version_number: i64,
    /// Position in execution order (`steps`, then `finalStep`).
    pub index: usize,
    pub rollback: bool,
    pub name: String,
    /// True for a `reboot.sh` step: its success is judged by the boot id.
    pub reboot: bool,
    pub phase: StepPhase,
    /// Boot id when the step started; empty when it could not be read.
    pub boot_id: String,
    /// Unix seconds when the step started (for humans; never compared).
    pub started_at: u64,
}

/// One journal file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalRecord {
    pub format: u32,
    /// Unix milliseconds of the write (for humans; never compared).
    pub written_at_ms: u64,
    /// Boot id of the process that wrote the record.
    pub boot_id: String,
    pub step: Option<StepMark>,
    pub engine: EngineState,
}

/// What [`Journal::load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// No journal: a first start, or the last job ended cleanly.
    Empty,
    Record(Box<JournalRecord>),
    /// The file could not be read or decoded; it was moved to `moved_to` (or could not
    /// be moved, `None`), and the daemon starts afresh.
    Corrupt {
        reason: String,
        moved_to: Option<PathBuf>,
    },
}

/// The journal file of one state directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
}

impl Journal {
    /// The journal in `state_dir` (created, mode 0700 for a new directory, if missing).
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        create_dir(state_dir)?;
        Ok(Journal {
            dir: state_dir.to_path_buf(),
            path: state_dir.join(FILE_NAME),
            tmp: state_dir.join(format!("{FILE_NAME}.tmp")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the journal. Never fails: an unreadable or undecodable file is moved aside
    /// (`journal.json.corrupt-<unix seconds>`) so the daemon can carry on.
    pub fn load(&self) -> Loaded {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Empty,
            Err(e) => return self.move_aside(format!("cannot read it: {e}")),
        };
        match serde_json::from_slice::<JournalRecord>(&bytes) {
            Ok(record) if record.format == FORMAT => Loaded::Record(Box::new(record)),
            Ok(record) => self.move_aside(format!(
                "unknown format {} (this iotjobsd writes {FORMAT})",
                record.format
            )),
            Err(e) => self.move_aside(format!("cannot decode it: {e}")),
        }
    }

    fn move_aside(&self, reason: String) -> Loaded {
        let target = self
            .dir
            .join(format!("{FILE_NAME}.corrupt-{}", unix_millis() / 1000));
        let moved_to = std::fs::rename(&self.path, &target).ok().map(|()| target);
        if moved_to.is_none() {
            // Could not move it: at least stop it from being read again.
            let _ = std::fs::remove_file(&self.path);
        }
        Loaded::Corrupt { reason, moved_to }
    }

    /// Replaces the journal with `record`, durably: when this returns, the new content
    /// survives a crash or power loss, and a crash during the call leaves the old one.
    pub fn write(&self, record: &JournalRecord) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(record)?;
        self.write_bytes(&bytes)
    }

    /// [`Journal::write`] with an already encoded record.
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp)
            .map_err(err)?;
        file.write_all(bytes).map_err(err)?;
        // fdatasync: the size and data matter, not the timestamps.
        file.sync_data().map_err(err)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(err)?;
        sync_dir(&self.dir).map_err(err)
    }

    /// Deletes the journal (nothing in progress). Durable like a write.
    pub fn clear(&self) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        match std::fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&self.dir).map_err(err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// The marker a step that restarts iotjobsd writes before asking for the restart
    /// (`IOTJOBS_SELF_RESTART_FILE`): one per job, execution and step, so a marker left
    /// by another step never counts.
    pub fn self_restart_file(
        &self,
        job_id: &str,
        execution_number: i64,
        index: usize,
        rollback: bool,
    ) -> PathBuf {
        let safe: String = job_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let kind = if rollback { "rollback" } else { "step" };
        self.dir
            .join(SELF_RESTART_DIR)
            .join(format!("{safe}.{execution_number}.{kind}-{index}"))
    }

    /// The directory of the self-restart markers.
    pub fn self_restart_dir(&self) -> PathBuf {
        self.dir.join(SELF_RESTART_DIR)
    }

    /// Creates the directory of the self-restart markers.
    pub fn prepare_self_restart_dir(&self) -> Result<(), JournalError> {
        create_dir(&self.dir.join(SELF_RESTART_DIR))
    }
}

fn create_dir(path: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|source| JournalError::CreateDir {
            path: path.to_path_buf(),
            source,
        })
}

/// fsync of a directory makes a rename or unlink in it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The current boot id from `path` (`/proc/sys/kernel/random/boot_id`, or a test file);
/// `None` when unreadable or empty.
pub fn read_boot_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::document::HostFacts;
    use crate::jobs::engine::{Engine, EngineConfig};

    fn record() -> JournalRecord {
        let engine = Engine::new(EngineConfig::new("t", HostFacts::default(), 1));
        JournalRecord {
            format: FORMAT,
            written_at_ms: 1,
            boot_id: "b1".into(),
            step: Some(StepMark {
                job_id: "j".into(),
                execution_number: 2,
                version_number: 3,
                index: 1,
                rollback: false,
                name: "Install".into(),
                reboot: false,
                phase: StepPhase::Started,
                boot_id: "b1".into(),
                started_at: 5,
            }),
            engine: engine.state().clone(),
        }
    }

    #[test]
    fn a_written_record_reads_back_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("state")).unwrap();
        assert!(matches!(journal.load(), Loaded::Empty));
        journal.write(&record()).unwrap();
        let Loaded::Record(back) = journal.load() else {
            panic!("no record");
        };
        assert_eq!(back.step, record().step);
        assert!(!dir.path().join("state/journal.json.tmp").exists());
        journal.clear().unwrap();
        assert!(matches!(journal.load(), Loaded::Empty));
    }

    #[test]
    fn a_corrupt_journal_is_moved_aside_and_the_next_load_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        std::fs::write(journal.path(), b"{\"format\":1,\"trunc").unwrap();
        let Loaded::Corrupt { reason, moved_to } = journal.load() else {
            panic!("not reported as corrupt");
        };
        assert!(reason.contains("cannot decode"), "{reason}");
        let moved_to = moved_to.unwrap();
        assert!(moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("journal.json.corrupt-"));
        assert_eq!(std::fs::read(&moved_to).unwrap(), b"{\"format\":1,\"trunc");
        assert!(matches!(journal.load(), Loaded::Empty));
    }

    #[test]
    fn a_journal_of_another_format_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let mut future = record();
        future.format = FORMAT + 1;
        journal.write(&future).unwrap();
        assert!(
            matches!(journal.load(), Loaded::Corrupt { reason, .. } if reason.contains("unknown format"))
        );
    }

    #[test]
    fn self_restart_markers_are_per_step_and_stay_in_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let a = journal.self_restart_file("job/../x", 1, 2, false);
        let b = journal.self_restart_file("job/../x", 1, 2, true);
        assert_ne!(a, b);
        assert_eq!(a.parent().unwrap().file_name().unwrap(), SELF_RESTART_DIR);
        assert_eq!(a.file_name().unwrap(), "job____x.1.step-2");
    }

    #[test]
    fn boot_id_is_trimmed_and_empty_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot_id");
        std::fs::write(&path, "abc-123\n").unwrap();
        assert_eq!(read_boot_id(&path).as_deref(), Some("abc-123"));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read_boot_id(&path), None);
        assert_eq!(read_boot_id(&dir.path().join("missing")), None);
    }
}
