//! The write-ahead journal: `<state_dir>/journal.bin`, an append-only log of records,
//! each a complete snapshot of what the jobs task must not forget: the engine's
//! [`EngineState`] (so the durable outbox is the engine's outbox plus its in-flight
//! update: a status is on disk before it is published and leaves the journal only when
//! the engine drops it, on `update/accepted` or a rejection that makes it moot) and a
//! [`StepMark`] for the step in progress (which step, its phase, the boot id when it
//! started). The last complete record wins, so there is nothing to replay.
//!
//! File format (version [`FORMAT`]; integers little-endian):
//!
//! ```text
//! header   8 bytes  magic "IOTJWAL\0"
//!          u32      format version (2)
//!          u32      reserved, 0
//! record   u32      payload length, > 0
//!          u32      CRC-32 (IEEE) of the 4 length bytes and the payload
//!          [u8]     payload: one JournalRecord as JSON
//! record   ...      the next one follows at once, no padding
//! zeros    ...      the rest of the file, preallocated; a length of 0 ends the log
//! ```
//!
//! Writing a record costs one `pwrite` into the preallocated zeros and one `fdatasync`:
//! the blocks are already allocated and written (zeros, not `fallocate`'s unwritten
//! extents) and the size does not change, so the file system has no metadata to commit.
//! When a record does not fit, the file is rotated: a fresh file (header, that record,
//! zeros) is written as `journal.bin.tmp`, fsynced, renamed over the journal and the
//! directory fsynced; the only time those are paid. The first write after a start that
//! found bytes after the last complete record, or after a failed write, rotates too, so
//! a record is only ever appended after a clean end.
//!
//! Reading scans from the start; the log ends at a zero length or at the first frame
//! that does not fit in the file or fails its checksum. A torn record at the end is not
//! corruption: the side effect it announced never happened, because side effects wait
//! for `fdatasync` to return. A file with another magic or format version, with no
//! complete record, or whose last record does not decode is moved aside
//! (`journal.bin.corrupt-<unix seconds>`). A record can also be written without
//! `fdatasync` ([`Journal::append`] with `sync = false`) when losing it to a power cut is
//! harmless; the next synced record, or the kernel's writeback, makes it durable.
//!
//! Format 1 (`journal.json`, one JSON record rewritten whole) is read once at start when
//! there is no `journal.bin`; the first write replaces it.
//!
//! Owns: the file format, crash-safe writes, reading back, moving a corrupt file aside,
//! the boot id and the per-step self-restart marker paths. Must not decide anything
//! about jobs (see `jobs::resume`) or talk to the network.

mod frame;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::jobs::engine::EngineState;

/// Version of the on-disk format; a file with another version is moved aside.
pub const FORMAT: u32 = 2;
/// The journal's file name inside the state directory.
pub const FILE_NAME: &str = "journal.bin";
/// Format 1's file, read when there is no [`FILE_NAME`] (an upgrade mid-job).
pub const LEGACY_FILE_NAME: &str = "journal.json";
/// Directory (inside the state directory) of the self-restart markers.
pub const SELF_RESTART_DIR: &str = "self-restart";
/// Size of a fresh journal file: about 130 one-step jobs of ~2.5 KB records before a
/// rotation. A larger record gets a file that holds at least 8 of it.
pub const CAPACITY: usize = 1 << 20;

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
    #[error("a journal record of {0} bytes cannot be framed")]
    Frame(usize),
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

/// One journal record: the payload of a frame (format 2) without the format version,
/// which the file header carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Boot id of the process that wrote the record.
    pub boot_id: String,
    pub step: Option<StepMark>,
    pub engine: EngineState,
}

/// A record to write, borrowed (the engine's state is not cloned for each write).
#[derive(Serialize)]
pub struct RecordRef<'a> {
    pub boot_id: &'a str,
    pub step: Option<&'a StepMark>,
    pub engine: &'a EngineState,
}

impl RecordRef<'_> {
    /// The record's payload bytes.
    pub fn encode(&self) -> Result<Vec<u8>, JournalError> {
        Ok(serde_json::to_vec(self)?)
    }
}

/// Format 1's record (`journal.json`).
#[derive(Deserialize)]
struct LegacyRecord {
    format: u32,
    boot_id: String,
    step: Option<StepMark>,
    engine: EngineState,
}

/// What [`Journal::load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// No journal: a first start.
    Empty,
    Record {
        record: Box<JournalRecord>,
        /// Non-zero bytes after the last complete record: a record torn by a crash or
        /// power cut (its side effect never happened), discarded.
        discarded: usize,
    },
    /// The file could not be read or decoded; it was moved to `moved_to` (or could not
    /// be moved, `None`), and the daemon starts afresh.
    Corrupt {
        reason: String,
        moved_to: Option<PathBuf>,
    },
}

/// The file appended to, and where the next record goes.
#[derive(Debug)]
struct Tail {
    file: File,
    end: usize,
    len: usize,
}

/// The journal of one state directory.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    legacy: PathBuf,
    /// `None` until a load found a clean end, or after a failed write: the next write
    /// rotates.
    tail: Option<Tail>,
}

impl Journal {
    /// The journal in `state_dir` (created if missing).
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        create_dir(state_dir)?;
        Ok(Journal {
            dir: state_dir.to_path_buf(),
            path: state_dir.join(FILE_NAME),
            tmp: state_dir.join(format!("{FILE_NAME}.tmp")),
            legacy: state_dir.join(LEGACY_FILE_NAME),
            tail: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the journal's last complete record. Never fails: an unreadable or
    /// undecodable file is moved aside so the daemon can carry on.
    pub fn load(&mut self) -> Loaded {
        self.tail = None;
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.load_legacy(),
            Err(e) => return move_aside(&self.path, format!("cannot read it: {e}")),
        };
        // A format-1 file left by a rotation that crashed before removing it.
        let _ = std::fs::remove_file(&self.legacy);
        match frame::check_header(&bytes, FORMAT) {
            Ok(()) => {}
            Err(frame::BadHeader::NotAJournal) => {
                return move_aside(&self.path, "it is not an iotjobsd journal".into())
            }
            Err(frame::BadHeader::Format(found)) => {
                return move_aside(
                    &self.path,
                    format!("unknown format {found} (this iotjobsd writes {FORMAT})"),
                )
            }
        }
        let scan = frame::scan(&bytes);
        let Some(last) = scan.last.clone() else {
            return move_aside(&self.path, "it holds no complete record".into());
        };
        let record = match serde_json::from_slice::<JournalRecord>(&bytes[last]) {
            Ok(record) => record,
            Err(e) => return move_aside(&self.path, format!("cannot decode it: {e}")),
        };
        if scan.garbage == 0 {
            // Append after the last record; on failure the next write rotates.
            self.tail = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .ok()
                .map(|file| Tail {
                    file,
                    end: scan.end,
                    len: bytes.len(),
                });
        }
        Loaded::Record {
            record: Box::new(record),
            discarded: scan.garbage,
        }
    }

    fn load_legacy(&self) -> Loaded {
        let bytes = match std::fs::read(&self.legacy) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Empty,
            Err(e) => return move_aside(&self.legacy, format!("cannot read it: {e}")),
        };
        match serde_json::from_slice::<LegacyRecord>(&bytes) {
            Ok(old) if old.format == 1 => Loaded::Record {
                record: Box::new(JournalRecord {
                    boot_id: old.boot_id,
                    step: old.step,
                    engine: old.engine,
                }),
                discarded: 0,
            },
            Ok(old) => move_aside(
                &self.legacy,
                format!(
                    "unknown format {} (this iotjobsd writes {FORMAT})",
                    old.format
                ),
            ),
            Err(e) => move_aside(&self.legacy, format!("cannot decode it: {e}")),
        }
    }

    /// Appends `payload` (a [`RecordRef::encode`]d record). With `sync`, it survives a
    /// crash or power cut when this returns; without, it survives a crash of the process
    /// and is made durable by the next synced write. A crash during the call leaves the
    /// previous record as the last one.
    pub fn append(&mut self, payload: &[u8], sync: bool) -> Result<(), JournalError> {
        let mut record = Vec::with_capacity(frame::FRAME_LEN + payload.len());
        frame::push_record(&mut record, payload).ok_or(JournalError::Frame(payload.len()))?;
        let tail = match &mut self.tail {
            Some(tail) if tail.end + record.len() <= tail.len => tail,
            _ => return self.rotate(&record),
        };
        let result = tail
            .file
            .write_all_at(&record, tail.end as u64)
            .and_then(|()| if sync { tail.file.sync_data() } else { Ok(()) });
        match result {
            Ok(()) => {
                tail.end += record.len();
                Ok(())
            }
            Err(source) => {
                // What reached the file is unknown (and after a failed fdatasync, so is
                // what reached the disk): start afresh at the next write.
                self.tail = None;
                Err(self.write_error(source))
            }
        }
    }

    /// Writes a fresh file holding `record` and zeros, then puts it in place: temp file,
    /// fsync, rename, directory fsync.
    fn rotate(&mut self, record: &[u8]) -> Result<(), JournalError> {
        self.tail = None;
        let end = frame::HEADER_LEN + record.len();
        let len = CAPACITY.max((frame::HEADER_LEN + 8 * record.len()).next_multiple_of(4096));
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&frame::header(FORMAT));
        bytes.extend_from_slice(record);
        bytes.resize(len, 0);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.tmp)?;
            file.write_all(&bytes)?;
            // fsync, not fdatasync: the new file's size and blocks must be durable.
            file.sync_all()?;
            std::fs::rename(&self.tmp, &self.path)?;
            sync_dir(&self.dir)?;
            Ok(file)
        })();
        let file = result.map_err(|e| self.write_error(e))?;
        // The journal now supersedes a format-1 file; a crash before this removal
        // leaves both, and the next load prefers the new one.
        match std::fs::remove_file(&self.legacy) {
            Ok(()) => {
                let _ = sync_dir(&self.dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %self.legacy.display(), error = %e, "cannot remove the old journal")
            }
        }
        self.tail = Some(Tail { file, end, len });
        Ok(())
    }

    fn write_error(&self, source: std::io::Error) -> JournalError {
        JournalError::Write {
            path: self.path.clone(),
            source,
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
        let safe = marker_stem(job_id);
        let kind = if rollback { "rollback" } else { "step" };
        self.dir
            .join(SELF_RESTART_DIR)
            .join(format!("{safe}.{execution_number}.{kind}-{index}"))
    }

    /// Whether `file_name` is one of `job_id`'s self-restart markers.
    pub fn is_self_restart_marker_of(file_name: &str, job_id: &str) -> bool {
        file_name.split('.').next() == Some(marker_stem(job_id).as_str())
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

/// Moves an unusable journal file aside (`<name>.corrupt-<unix seconds>`), or deletes it
/// when it cannot be moved, so it is not read again.
fn move_aside(path: &Path, reason: String) -> Loaded {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = path.with_file_name(format!("{name}.corrupt-{}", unix_millis() / 1000));
    let moved_to = std::fs::rename(path, &target).ok().map(|()| target);
    if moved_to.is_none() {
        let _ = std::fs::remove_file(path);
    }
    Loaded::Corrupt { reason, moved_to }
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

/// A job id as it appears in marker file names (anything but `[A-Za-z0-9_-]` becomes `_`,
/// so the name has no dot of its own and no path separator).
fn marker_stem(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::document::HostFacts;
    use crate::jobs::engine::{Engine, EngineConfig};
    use std::os::unix::fs::MetadataExt;

    fn mark(name: &str) -> StepMark {
        StepMark {
            job_id: "j".into(),
            execution_number: 2,
            version_number: 3,
            index: 1,
            rollback: false,
            name: name.into(),
            reboot: false,
            phase: StepPhase::Started,
            boot_id: "b1".into(),
            started_at: 5,
        }
    }

    fn payload(name: &str) -> Vec<u8> {
        let engine = Engine::new(EngineConfig::new("t", HostFacts::default(), 1));
        let step = mark(name);
        RecordRef {
            boot_id: "b1",
            step: Some(&step),
            engine: engine.state(),
        }
        .encode()
        .unwrap()
    }

    /// The step name of the last record, read by a fresh journal (as after a restart).
    fn reload(dir: &Path) -> (String, usize) {
        let mut journal = Journal::open(dir).unwrap();
        match journal.load() {
            Loaded::Record { record, discarded } => (record.step.unwrap().name, discarded),
            other => panic!("no record: {other:?}"),
        }
    }

    fn inode(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(FILE_NAME)).unwrap().ino()
    }

    #[test]
    fn appended_records_read_back_last_first_in_a_preallocated_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut journal = Journal::open(&state).unwrap();
        assert!(matches!(journal.load(), Loaded::Empty));
        journal.append(&payload("one"), true).unwrap();
        let ino = inode(&state);
        journal.append(&payload("two"), true).unwrap();
        journal.append(&payload("three"), false).unwrap();
        assert_eq!(reload(&state), ("three".into(), 0));
        assert_eq!(
            std::fs::metadata(journal.path()).unwrap().len(),
            CAPACITY as u64
        );
        assert!(!state.join("journal.bin.tmp").exists());
        // A restarted daemon appends to the same file.
        let mut again = Journal::open(&state).unwrap();
        let _ = again.load();
        again.append(&payload("four"), true).unwrap();
        assert_eq!(reload(&state).0, "four");
        assert_eq!(inode(&state), ino, "appended, not rotated");
    }

    #[test]
    fn a_full_file_is_rotated_and_the_newest_record_survives() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(&payload("first"), true).unwrap();
        let first = inode(dir.path());
        let per_file = CAPACITY / (payload("n-0").len() + frame::FRAME_LEN);
        for i in 0..per_file + 1 {
            journal.append(&payload(&format!("n-{i}")), false).unwrap();
        }
        assert_ne!(inode(dir.path()), first, "rotated");
        assert_eq!(reload(dir.path()).0, format!("n-{per_file}"));
    }

    #[test]
    fn a_torn_last_record_is_discarded_and_the_next_write_starts_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(&payload("done"), true).unwrap();
        // A crash in the middle of the next write: half of its frame reached the disk.
        let end = frame::HEADER_LEN + frame::FRAME_LEN + payload("done").len();
        let mut torn = Vec::new();
        frame::push_record(&mut torn, &payload("never")).unwrap();
        let file = OpenOptions::new().write(true).open(journal.path()).unwrap();
        file.write_all_at(&torn[..torn.len() / 2], end as u64)
            .unwrap();
        let before = inode(dir.path());

        let mut restarted = Journal::open(dir.path()).unwrap();
        let Loaded::Record { record, discarded } = restarted.load() else {
            panic!("no record");
        };
        assert_eq!(record.step.unwrap().name, "done");
        assert!(discarded > 0);
        restarted.append(&payload("next"), true).unwrap();
        assert_ne!(
            inode(dir.path()),
            before,
            "rotated, not appended after the torn bytes"
        );
        assert_eq!(reload(dir.path()), ("next".into(), 0));
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_moved_aside_and_the_next_load_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        std::fs::write(journal.path(), b"{not json").unwrap();
        let Loaded::Corrupt { reason, moved_to } = journal.load() else {
            panic!("not reported as corrupt");
        };
        assert!(reason.contains("not an iotjobsd journal"), "{reason}");
        let moved_to = moved_to.unwrap();
        assert!(moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("journal.bin.corrupt-"));
        assert_eq!(std::fs::read(&moved_to).unwrap(), b"{not json");
        assert!(matches!(journal.load(), Loaded::Empty));
    }

    #[test]
    fn another_format_no_complete_record_or_an_undecodable_one_is_corrupt() {
        let cases: [(Vec<u8>, &str); 3] = [
            (
                {
                    let mut f = frame::header(FORMAT + 1).to_vec();
                    frame::push_record(&mut f, &payload("x")).unwrap();
                    f
                },
                "unknown format 3",
            ),
            (frame::header(FORMAT).to_vec(), "no complete record"),
            (
                {
                    let mut f = frame::header(FORMAT).to_vec();
                    frame::push_record(&mut f, b"{\"boot_id\":").unwrap();
                    f
                },
                "cannot decode",
            ),
        ];
        for (bytes, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let mut journal = Journal::open(dir.path()).unwrap();
            std::fs::write(journal.path(), &bytes).unwrap();
            match journal.load() {
                Loaded::Corrupt { reason, moved_to } => {
                    assert!(reason.contains(expected), "{reason}");
                    assert!(moved_to.is_some());
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_format_1_journal_is_taken_up_and_replaced_by_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut record: serde_json::Value = serde_json::from_slice(&payload("old")).unwrap();
        record["format"] = 1.into();
        record["written_at_ms"] = 1.into();
        let legacy = dir.path().join(LEGACY_FILE_NAME);
        std::fs::write(&legacy, record.to_string()).unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        let Loaded::Record { record, .. } = journal.load() else {
            panic!("format 1 not read");
        };
        assert_eq!(record.step.unwrap().name, "old");
        journal.append(&payload("new"), true).unwrap();
        assert!(!legacy.exists());
        assert_eq!(reload(dir.path()).0, "new");

        std::fs::write(&legacy, b"{\"format\":1,\"trunc").unwrap();
        std::fs::remove_file(journal.path()).unwrap();
        assert!(
            matches!(journal.load(), Loaded::Corrupt { moved_to: Some(p), .. }
                if p.to_string_lossy().contains("journal.json.corrupt-"))
        );
    }

    #[test]
    fn a_record_larger_than_the_default_file_gets_a_larger_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        let big = vec![b' '; CAPACITY];
        journal.append(&big, true).unwrap();
        journal.append(&payload("after"), true).unwrap();
        assert!(std::fs::metadata(journal.path()).unwrap().len() >= 8 * CAPACITY as u64);
        assert_eq!(reload(dir.path()).0, "after");
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
