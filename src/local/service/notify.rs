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

/// What a change is compared against, per thing: the pending executions' keys (sequence
/// number and status, as a set) and the head record, taken before the change. Only
/// keys: a thing with a long queue would otherwise have every row decoded twice per change.
#[derive(Debug, Default)]
pub(super) struct PendingSnapshot(BTreeMap<String, Pending>);

#[derive(Debug, Default)]
struct Pending {
    keys: Vec<(i64, JobExecutionStatus)>,
    head: Option<ExecutionRecord>,
}

impl PendingSnapshot {
    /// The head of `thing`'s pending list (what `$next` returned) when the snapshot was
    /// taken; `None` if nothing was pending or `thing` was not captured.
    pub(super) fn head(&self, thing: &str) -> Option<&ExecutionRecord> {
        self.0.get(thing).and_then(|p| p.head.as_ref())
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
                let keys = self.store.pending_keys(t)?;
                let head = if keys.is_empty() {
                    None
                } else {
                    self.store.pending_head(t, Some(1))?.into_iter().next()
                };
                map.insert(t.to_owned(), Pending { keys, head });
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
            let new = self.store.pending_keys(thing)?;
            let ids = |l: &[(i64, JobExecutionStatus)]| {
                let mut v: Vec<i64> = l.iter().map(|(seq, _)| *seq).collect();
                v.sort_unstable();
                v
            };
            let statuses = |l: &[(i64, JobExecutionStatus)]| {
                let mut v = l.to_vec();
                v.sort_unstable();
                v
            };
            let set_changed = ids(&old.keys) != ids(&new);
            let status_changed = statuses(&old.keys) != statuses(&new);
            let notify = set_changed || (self.cfg.notify_on_start && status_changed);
            // Only what the notifications show is decoded: the listed entries, the head.
            let shown = if notify {
                self.cfg.max_pending_listed.max(1)
            } else {
                1
            };
            let listed = if new.is_empty() {
                Vec::new()
            } else {
                self.store.pending_head(thing, Some(shown))?
            };
            let head_changed = old.head.as_ref().map(|e| e.seq) != listed.first().map(|e| e.seq);
            if !notify && !head_changed {
                continue;
            }
            if notify {
                out.push(Outbound {
                    topic: topics::notify(thing),
                    payload: self.notify_payload(&listed, now),
                });
            }
            if head_changed {
                out.push(Outbound {
                    topic: topics::notify_next(thing),
                    payload: self.notify_next_payload(listed.first(), now, &mut docs)?,
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
