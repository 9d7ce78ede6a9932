//! `notify` and `notify-next` (reference §2.5): the pending list of each affected thing is
//! captured before a change and compared after it.
//!
//! - `notify` fires when the *set* of pending executions changed (one queued, one became
//!   terminal, removed or deleted); with `notify_on_start` also when a member changed status.
//! - `notify-next` fires when the *identity* of the head (what `$next` returns) changed.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{render, JobsService, Outbound};
use crate::jobs::execution;
use crate::jobs::topics;
use crate::jobs::wire::{JobExecutionStatus, NextJobExecutionChangedEvent};
use crate::local::clock::Timestamp;
use crate::local::store::{ExecutionRecord, StoreError};

/// Pending lists of some things, in device order, taken before a change.
#[derive(Debug, Default)]
pub(super) struct PendingSnapshot(BTreeMap<String, Vec<ExecutionRecord>>);

impl PendingSnapshot {
    /// The pending list of `thing` when the snapshot was taken (empty if not captured).
    pub(super) fn pending(&self, thing: &str) -> &[ExecutionRecord] {
        self.0.get(thing).map_or(&[], Vec::as_slice)
    }
}

impl JobsService {
    /// The pending lists of `things` now.
    pub(super) fn snapshot<I, S>(&self, things: I) -> Result<PendingSnapshot, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut map = BTreeMap::new();
        for t in things {
            let t = t.as_ref();
            if !map.contains_key(t) {
                map.insert(t.to_owned(), self.store.pending_for_thing(t)?);
            }
        }
        Ok(PendingSnapshot(map))
    }

    /// Compares each thing's pending list with `before` and returns the notifications
    /// its changes call for, `notify` before `notify-next` per thing.
    pub(super) fn notifications(
        &self,
        now: Timestamp,
        before: &PendingSnapshot,
    ) -> Result<Vec<Outbound>, StoreError> {
        let mut out = Vec::new();
        // A CreateJob notifies up to 100 things of the same job: read its document once.
        let mut docs = HashMap::new();
        for (thing, old) in &before.0 {
            let new = self.store.pending_for_thing(thing)?;
            let ids = |l: &[ExecutionRecord]| {
                let mut v: Vec<i64> = l.iter().map(|e| e.seq).collect();
                v.sort_unstable();
                v
            };
            let statuses = |l: &[ExecutionRecord]| {
                let mut v: Vec<(i64, JobExecutionStatus)> =
                    l.iter().map(|e| (e.seq, e.exec.status)).collect();
                v.sort_unstable();
                v
            };
            let set_changed = ids(old) != ids(&new);
            let status_changed = statuses(old) != statuses(&new);
            if set_changed || (self.cfg.notify_on_start && status_changed) {
                out.push(Outbound {
                    topic: topics::notify(thing),
                    payload: self.notify_payload(&new, now),
                });
            }
            if old.first().map(|e| e.seq) != new.first().map(|e| e.seq) {
                out.push(Outbound {
                    topic: topics::notify_next(thing),
                    payload: self.notify_next_payload(new.first(), now, &mut docs)?,
                });
            }
        }
        Ok(out)
    }

    fn notify_payload(&self, pending: &[ExecutionRecord], now: Timestamp) -> Value {
        let listed = execution::pending_list(
            pending.iter().map(|e| (e.job_id.as_str(), &e.exec)),
            self.cfg.max_pending_listed,
        );
        let ev = execution::jobs_changed_event(&listed, now.secs());
        serde_json::to_value(ev).unwrap_or(Value::Null)
    }

    /// `docs`: device documents already read during this change, by job id.
    fn notify_next_payload(
        &self,
        head: Option<&ExecutionRecord>,
        now: Timestamp,
        docs: &mut HashMap<String, Option<Value>>,
    ) -> Result<Value, StoreError> {
        let execution = match head {
            Some(e) => {
                let doc = match docs.get(&e.job_id) {
                    Some(doc) => doc.clone(),
                    None => {
                        let doc = self
                            .store
                            .get_job_without_targets(&e.job_id)?
                            .map(|j| self.device_document(&j, now));
                        docs.insert(e.job_id.clone(), doc.clone());
                        doc
                    }
                };
                Some(render::execution(e, doc, now))
            }
            None => None,
        };
        let ev = NextJobExecutionChangedEvent {
            execution,
            timestamp: now.secs(),
        };
        Ok(serde_json::to_value(ev).unwrap_or(Value::Null))
    }
}
