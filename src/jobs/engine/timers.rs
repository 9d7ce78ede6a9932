//! Timer bookkeeping for the engine. The engine never reads a clock: it asks its task to
//! arm a timer and later receives `TimerFired`. Every arming gets a fresh generation so a
//! firing that raced with a cancel (both in flight on the task's channels) is recognised
//! as stale and ignored.

use serde::{Deserialize, Serialize};

/// The request slots the engine keeps (at most one request of each kind in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Slot {
    StartNext,
    Update,
    Describe,
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// No reply to the slot's request in time: re-send it with a new client token.
    Reply(Slot),
    /// Backing off after `RequestThrottled`/`InternalError`: re-send when it fires.
    Backoff(Slot),
    /// Refresh `stepTimeoutInMinutes` with an IN_PROGRESS update while a long step runs.
    Heartbeat,
    /// Minimum spacing between IN_PROGRESS progress updates.
    ProgressCooldown,
    /// Idle poll with start-next, in case a notification was lost while connected.
    Poll,
}

/// A timer identity as seen by the task: kind plus generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimerId {
    pub kind: TimerKind,
    pub generation: u64,
}

/// The set of armed timers (one per kind at most).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timers {
    next_generation: u64,
    /// (kind, generation) of every armed timer; a list because JSON maps need string keys.
    armed: Vec<(TimerKind, u64)>,
}

impl Timers {
    /// Arms (or re-arms) `kind`; returns the id to hand to the task.
    pub fn arm(&mut self, kind: TimerKind) -> TimerId {
        self.next_generation += 1;
        self.armed.retain(|(k, _)| *k != kind);
        self.armed.push((kind, self.next_generation));
        TimerId {
            kind,
            generation: self.next_generation,
        }
    }

    /// Disarms `kind`; returns the id to cancel when it was armed.
    pub fn disarm(&mut self, kind: TimerKind) -> Option<TimerId> {
        let id = self.armed_id(kind)?;
        self.armed.retain(|(k, _)| *k != kind);
        Some(id)
    }

    pub fn is_armed(&self, kind: TimerKind) -> bool {
        self.armed_id(kind).is_some()
    }

    /// The id of the armed timer of `kind`, if any.
    pub fn armed_id(&self, kind: TimerKind) -> Option<TimerId> {
        self.armed
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|&(kind, generation)| TimerId { kind, generation })
    }

    /// Every armed timer (to re-arm them after a restore).
    pub fn armed(&self) -> impl Iterator<Item = TimerId> + '_ {
        self.armed
            .iter()
            .map(|&(kind, generation)| TimerId { kind, generation })
    }

    /// Accepts a firing: true (and disarmed) when it is the current arming of its kind.
    pub fn fire(&mut self, id: TimerId) -> bool {
        if self.armed_id(id.kind) == Some(id) {
            self.armed.retain(|(k, _)| *k != id.kind);
            true
        } else {
            false
        }
    }

    /// Forgets every armed timer (after a restore from disk the task has none).
    pub fn clear(&mut self) {
        self.armed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_is_ignored() {
        let mut timers = Timers::default();
        let first = timers.arm(TimerKind::Heartbeat);
        let second = timers.arm(TimerKind::Heartbeat);
        assert!(!timers.fire(first));
        assert!(timers.fire(second));
        assert!(!timers.fire(second), "a timer fires once");
    }

    #[test]
    fn disarmed_timer_does_not_fire() {
        let mut timers = Timers::default();
        let id = timers.arm(TimerKind::Reply(Slot::Update));
        assert_eq!(timers.disarm(TimerKind::Reply(Slot::Update)), Some(id));
        assert!(!timers.fire(id));
        assert_eq!(timers.disarm(TimerKind::Reply(Slot::Update)), None);
    }
}
