//! The jobs task's durability glue: keeps the [`StepMark`] of the step in progress,
//! decides when the journal must be written (before a side effect) and writes it, and
//! rebuilds the engine from the journal at start.
//!
//! Write policy (the speed of the notify → SUCCEEDED path depends on it): a record is
//! appended, durably (one `pwrite` + `fdatasync`), when a transition's actions include a
//! side effect (a status update published, a step started or stopped) or the transition
//! records a step's result, and only if the record differs from the last one written;
//! the end of a job is journalled after the transition's actions (so the next start-next
//! is not held up). A transition without a side effect (a reply that only bumps the
//! version) is captured by the next write or at shutdown: replaying it after a crash only
//! resends a status, which the service reports as already applied (counted as delivered)
//! or reconciles (`VersionMismatch`). A record with no job in it protects nothing (losing
//! it only brings back the previous record, whose terminal status the service already
//! has), so it is written without `fdatasync`: it survives a crash of the daemon, and the
//! next synced record makes it durable.
//!
//! At start, a step the journal says was running when the daemon died, and which is to
//! run again (or whose job was being revoked), is first killed if it is still running
//! (see `orphans`).
//!
//! Must not perform the actions itself or talk to the network.

mod orphans;

use std::path::{Path, PathBuf};

use crate::jobs::document::StepKind;
use crate::jobs::engine::{Action, Engine, EngineConfig, StepStart};
use crate::jobs::journal::{self, Journal, JournalError, Loaded, RecordRef, StepMark, StepPhase};
use crate::jobs::resume::{self, Resume};
use crate::jobs::runner::StepRequest;
use crate::sandbox::StepOutcome;

/// Handler names whose success is judged by the boot id (AWS-Reboot uses `reboot.sh`).
const REBOOT_HANDLERS: &[&str] = &["reboot.sh"];

/// The journal and what the task tracks beside the engine's state.
pub struct Durability {
    journal: Option<Journal>,
    boot_id_file: PathBuf,
    boot_id: Option<String>,
    mark: Option<StepMark>,
    /// The record last written, to skip identical writes.
    last: Vec<u8>,
}

impl Durability {
    /// Opens the journal in `state_dir`; when that fails the daemon still runs jobs, but
    /// without durability, and says so loudly.
    pub fn open(state_dir: &Path, boot_id_file: &Path) -> Durability {
        let journal = match Journal::open(state_dir) {
            Ok(journal) => {
                if let Err(err) = journal.prepare_self_restart_dir() {
                    tracing::warn!(error = %err, "self-restart markers unavailable");
                }
                Some(journal)
            }
            Err(err) => {
                tracing::error!(error = %err, "no journal: a job interrupted by a crash or reboot will not resume, and statuses not yet delivered are lost on restart");
                None
            }
        };
        let boot_id = journal::read_boot_id(boot_id_file);
        if boot_id.is_none() {
            tracing::warn!(file = %boot_id_file.display(), "cannot read the boot id; reboot steps will fail");
        }
        Durability {
            journal,
            boot_id_file: boot_id_file.to_path_buf(),
            boot_id,
            mark: None,
            last: Vec::new(),
        }
    }

    /// Rebuilds the engine from the journal (a fresh one when there is none or it is
    /// unusable) and says what to do with an interrupted step.
    pub fn restore(&mut self, cfg: EngineConfig) -> (Engine, Resume) {
        let Some(journal) = &mut self.journal else {
            return (Engine::new(cfg), Resume::Nothing);
        };
        let record = match journal.load() {
            Loaded::Empty => return (Engine::new(cfg), Resume::Nothing),
            Loaded::Corrupt { reason, moved_to } => {
                let moved = moved_to
                    .map(|p| format!("moved to {}", p.display()))
                    .unwrap_or_else(|| "deleted (it could not be moved)".into());
                tracing::error!(
                    "the journal {} is unusable ({reason}); {moved}; starting without it: a job in progress is taken up again from the service (start-next) from its first step",
                    journal.path().display()
                );
                return (Engine::new(cfg), Resume::Nothing);
            }
            Loaded::Record { record, discarded } => {
                if discarded > 0 {
                    tracing::warn!(
                        "journal: discarded {discarded} bytes after its last complete record (a write cut short by a crash or power loss; what it announced was not done)"
                    );
                }
                record
            }
        };
        let self_restart_done = record.step.as_ref().is_some_and(|m| {
            journal
                .self_restart_file(&m.job_id, m.execution_number, m.index, m.rollback)
                .exists()
        });
        let decision = resume::decide(
            &record.engine,
            record.step.as_ref(),
            self.boot_id.as_deref(),
            self_restart_done,
        );
        if let (Some(job), Some(mark)) = (&record.engine.job, &record.step) {
            tracing::info!(
                job_id = %job.key.job_id,
                "journal: job {} execution {} was at step '{}' ({:?}, boot id then {}, now {}); {}",
                job.key.job_id,
                job.key.execution_number,
                mark.name,
                mark.phase,
                mark.boot_id,
                self.boot_id.as_deref().unwrap_or("unknown"),
                describe(&decision)
            );
        } else if let Some(job) = &record.engine.job {
            tracing::info!(job_id = %job.key.job_id, "journal: job {} to finish reporting; {}", job.key.job_id, describe(&decision));
        }
        if matches!(decision, Resume::Rerun | Resume::Revoked) {
            if let Some(mark) = &record.step {
                kill_orphaned(journal, self.boot_id.as_deref(), mark);
            }
        }
        self.mark = record.step.clone();
        let engine = Engine::restore(cfg, record.engine);
        (engine, decision)
    }

    /// The environment a step gets from the daemon: the boot id file and its
    /// self-restart marker (any stale marker removed first).
    pub fn step_env(&self, start: &StepStart) -> Vec<(String, String)> {
        let mut env = vec![(
            "IOTJOBS_BOOT_ID_FILE".to_string(),
            self.boot_id_file.to_string_lossy().into_owned(),
        )];
        if let Some(journal) = &self.journal {
            let marker = journal.self_restart_file(
                &start.job_id,
                start.execution_number,
                start.step.at.index,
                start.step.at.rollback,
            );
            let _ = std::fs::remove_file(&marker);
            env.push((
                orphans::STEP_ENV.to_string(),
                marker.to_string_lossy().into_owned(),
            ));
        }
        env
    }

    /// Removes every self-restart marker of `job_id` (when a job is over, its markers
    /// are stale; the next job's, with start-next pipelined, may already matter).
    pub fn clear_self_restart_markers(&self, job_id: &str) {
        if let Some(journal) = &self.journal {
            let dir = journal.self_restart_dir();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if Journal::is_self_restart_marker_of(&name.to_string_lossy(), job_id) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }

    /// Removes the self-restart marker of the step in progress, if any.
    pub fn remove_self_restart_marker(&self) {
        if let (Some(journal), Some(m)) = (&self.journal, &self.mark) {
            let _ = std::fs::remove_file(journal.self_restart_file(
                &m.job_id,
                m.execution_number,
                m.index,
                m.rollback,
            ));
        }
    }

    /// A step ended: its mark records the result (a new step may replace it at once).
    pub fn step_finished(&mut self, outcome: &StepOutcome) {
        if let Some(mark) = &mut self.mark {
            let result = if outcome.succeeded() {
                "succeeded".to_string()
            } else {
                outcome.reason(&mark.name)
            };
            mark.phase = StepPhase::Finished { result };
        }
    }

    /// True when the step in progress is a reboot step.
    pub fn is_reboot_step(&self) -> bool {
        self.mark
            .as_ref()
            .is_some_and(|m| m.reboot && m.phase == StepPhase::Started)
    }

    /// The step due was not started (shutdown): journal that, so a reboot meanwhile
    /// does not count as its success.
    pub fn step_not_started(&mut self, engine: &Engine) {
        if let Some(mark) = &mut self.mark {
            mark.phase = StepPhase::NotStarted;
        }
        self.write(engine);
    }

    /// A reboot step exited 0: the reboot is requested.
    pub fn reboot_requested(&mut self) {
        if let Some(mark) = &mut self.mark {
            mark.phase = StepPhase::RebootRequested;
        }
    }

    /// Journals what is about to happen, when `actions` include a side effect or
    /// `result` (a step's result was just recorded). Errors are logged; the daemon
    /// carries on (it cannot do better than the engine's own state).
    pub fn before(&mut self, engine: &Engine, actions: &[Action], result: bool) {
        for action in actions {
            if let Action::StartStep(start) = action {
                self.mark = Some(self.mark_for(engine, start));
            }
        }
        if engine.current_job().is_none() {
            self.mark = None;
        }
        let side_effect = actions.iter().any(|a| match a {
            Action::Publish { topic, .. } => topic.ends_with("/update"),
            Action::StartStep(_) | Action::KillStep { .. } => true,
            _ => false,
        });
        if side_effect || result {
            self.write(engine);
        }
    }

    /// Writes the journal if anything changed since the last write.
    pub fn write(&mut self, engine: &Engine) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let record = RecordRef {
            boot_id: self.boot_id.as_deref().unwrap_or_default(),
            step: self.mark.as_ref(),
            engine: engine.state(),
        };
        let payload = match record.encode() {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode the journal");
                return;
            }
        };
        if payload == self.last {
            return;
        }
        let sync = engine.state().job.is_some();
        match journal.append(&payload, sync) {
            Ok(()) => self.last = payload,
            Err(err) => log_write_error(&err),
        }
    }

    fn mark_for(&self, engine: &Engine, start: &StepStart) -> StepMark {
        let version = engine
            .state()
            .job
            .as_ref()
            .map(|job| job.version)
            .unwrap_or_default();
        StepMark {
            job_id: start.job_id.clone(),
            execution_number: start.execution_number,
            version_number: version,
            index: start.step.at.index,
            rollback: start.step.at.rollback,
            name: start.step.step.name.clone(),
            reboot: is_reboot(&start.step),
            phase: StepPhase::Started,
            boot_id: self.boot_id.clone().unwrap_or_default(),
            started_at: journal::unix_millis() / 1000,
        }
    }
}

/// Kills what is left of the step `mark` started, when it may still be running: it
/// was started (not merely due) during this boot (a reboot ended everything).
fn kill_orphaned(journal: &Journal, boot_id: Option<&str>, mark: &StepMark) {
    let same_boot = boot_id.is_none_or(|id| id == mark.boot_id);
    if mark.phase != StepPhase::Started || !same_boot {
        return;
    }
    let marker = journal.self_restart_file(
        &mark.job_id,
        mark.execution_number,
        mark.index,
        mark.rollback,
    );
    for pgid in orphans::kill_step_groups(&marker.to_string_lossy()) {
        tracing::warn!(
            job_id = %mark.job_id,
            "step '{}' was still running (process group {pgid}) after the previous iotjobsd stopped; killed it before it runs again",
            mark.name
        );
    }
}

fn is_reboot(step: &StepRequest) -> bool {
    matches!(&step.step.kind, StepKind::Handler { name, .. } if REBOOT_HANDLERS.contains(&name.as_str()))
}

fn describe(decision: &Resume) -> &'static str {
    match decision {
        Resume::Nothing => "its status is sent after connecting",
        Resume::Rerun => "the step runs again once the service confirms the job is still ours",
        Resume::Finish(outcome) if outcome.succeeded() => {
            "the step is complete; the job goes on once the service confirms it is still ours"
        }
        Resume::Finish(_) => {
            "the step failed; reported once the service confirms the job is still ours"
        }
        Resume::Revoked => "it was being revoked; it is dropped",
    }
}

fn log_write_error(err: &JournalError) {
    tracing::error!(error = %err, "cannot write the journal; a crash now could repeat or lose this job's progress");
}
