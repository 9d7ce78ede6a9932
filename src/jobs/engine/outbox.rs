//! The engine's in-memory status outbox for the current job.
//!
//! Status updates are serialised (one in flight at a time, because each carries the
//! `expectedVersion` the previous one produced). Waiting updates are coalesced: only the
//! newest progress update is worth sending, and once a terminal status exists it supersedes
//! any progress. Issue 4's durable outbox persists exactly this structure.

use serde::{Deserialize, Serialize};

use crate::jobs::wire::{JobExecutionStatus, StatusDetails};

/// One UpdateJobExecution the engine wants the service to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub status: JobExecutionStatus,
    pub details: StatusDetails,
    /// `stepTimeoutInMinutes` to (re)start the service's step timer with this update.
    pub step_timeout_minutes: Option<i64>,
}

impl StatusUpdate {
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// Updates waiting to be sent (the one in flight lives in the engine's update slot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub progress: Option<StatusUpdate>,
    pub terminal: Option<StatusUpdate>,
}

impl Outbox {
    /// Queues `update`, replacing whatever it supersedes.
    pub fn push(&mut self, update: StatusUpdate) {
        if update.is_terminal() {
            self.progress = None;
            self.terminal = Some(update);
        } else if self.terminal.is_none() {
            self.progress = Some(update);
        }
    }

    /// True when something queued makes an in-flight `sent` update pointless to resend.
    pub fn supersedes(&self, sent: &StatusUpdate) -> bool {
        !sent.is_terminal() && (self.terminal.is_some() || self.progress.is_some())
    }

    /// The next update to send: a terminal status first; progress only when allowed.
    pub fn take_next(&mut self, progress_allowed: bool) -> Option<StatusUpdate> {
        if let Some(terminal) = self.terminal.take() {
            self.progress = None;
            return Some(terminal);
        }
        if progress_allowed {
            self.progress.take()
        } else {
            None
        }
    }

    pub fn is_empty(&self) -> bool {
        self.progress.is_none() && self.terminal.is_none()
    }

    pub fn clear(&mut self) {
        self.progress = None;
        self.terminal = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(status: JobExecutionStatus, step: &str) -> StatusUpdate {
        StatusUpdate {
            status,
            details: [("step".to_string(), step.to_string())].into(),
            step_timeout_minutes: None,
        }
    }

    #[test]
    fn newest_progress_wins_and_terminal_supersedes_it() {
        let mut outbox = Outbox::default();
        outbox.push(update(JobExecutionStatus::InProgress, "1/2"));
        outbox.push(update(JobExecutionStatus::InProgress, "2/2"));
        assert_eq!(outbox.progress.as_ref().unwrap().details["step"], "2/2");
        assert_eq!(
            outbox.take_next(false),
            None,
            "progress waits for the cooldown"
        );
        outbox.push(update(JobExecutionStatus::Succeeded, "done"));
        outbox.push(update(JobExecutionStatus::InProgress, "late"));
        let next = outbox.take_next(false).unwrap();
        assert_eq!(next.status, JobExecutionStatus::Succeeded);
        assert!(outbox.is_empty());
    }

    #[test]
    fn an_in_flight_progress_is_superseded_by_anything_newer() {
        let mut outbox = Outbox::default();
        let sent = update(JobExecutionStatus::InProgress, "1/2");
        assert!(!outbox.supersedes(&sent));
        outbox.push(update(JobExecutionStatus::InProgress, "2/2"));
        assert!(outbox.supersedes(&sent));
        let terminal = update(JobExecutionStatus::Failed, "x");
        assert!(!outbox.supersedes(&terminal));
    }
}
