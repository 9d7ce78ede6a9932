//! The Jobs device API over MQTT (reference §2): a request topic and payload in, the
//! accepted/rejected reply and any notifications out.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{render, JobsService, Outbound, ServiceError, TickReport};
use crate::jobs::execution::{self, Rejection};
use crate::jobs::status_details;
use crate::jobs::topics::{self, JobRef, Operation, TopicKind};
use crate::jobs::wire::{
    self, DescribeJobExecutionRequest, DescribeJobExecutionResponse, ErrorCode,
    GetPendingJobExecutionsRequest, StartNextPendingJobExecutionRequest,
    StartNextPendingJobExecutionResponse, UpdateJobExecutionRequest, UpdateJobExecutionResponse,
};
use crate::local::clock::Timestamp;
use crate::local::store::StoreError;

/// Why a device request failed: a protocol rejection, or the store broke (→ `InternalError`,
/// which clients retry).
enum OpError {
    Reject(Rejection),
    Store(StoreError),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl From<Rejection> for OpError {
    fn from(r: Rejection) -> Self {
        OpError::Reject(r)
    }
}

fn reject(code: ErrorCode, message: impl Into<String>) -> OpError {
    OpError::Reject(Rejection {
        code,
        message: message.into(),
        execution_state: None,
    })
}

/// Accepted payload plus notifications.
type OpResult = Result<(Value, Vec<Outbound>), OpError>;

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Replies and notifications arrive back on the service's own `$aws/things/+/jobs/#`
/// subscription (from a broker without No Local for it); these last levels are never
/// requests, so they are never answered (an `InvalidTopic` reply to a reply would loop
/// forever).
pub(super) fn is_service_output(topic: &str) -> bool {
    matches!(
        topic.rsplit('/').next(),
        Some("accepted" | "rejected" | "notify" | "notify-next")
    )
}

impl JobsService {
    /// Handles one message published under `$aws/things/+/jobs/#`. Returns the reply (on
    /// `<topic>/accepted` or `<topic>/rejected`) followed by the notifications the request
    /// caused; nothing for the service's own publications.
    pub fn handle_device_message(
        &mut self,
        now: Timestamp,
        topic: &str,
        payload: &[u8],
    ) -> Vec<Outbound> {
        let op = match topics::parse(topic) {
            Some(t) => match t.kind {
                TopicKind::Request(op) => Some((t.thing_name, op)),
                _ => return Vec::new(),
            },
            None => None,
        };
        let Some((thing, op)) = op else {
            if topics::jobs_thing(topic).is_none() || is_service_output(topic) {
                return Vec::new();
            }
            let token = wire::decode_request::<GetPendingJobExecutionsRequest>(payload)
                .ok()
                .and_then(|r| r.client_token);
            let err = Rejection {
                code: ErrorCode::InvalidTopic,
                message: format!("{topic} is not a Jobs API topic"),
                execution_state: None,
            };
            return vec![rejected(topic, &err, token, now)];
        };
        let (token, result) = match op {
            Operation::GetPending => self.run(payload, |s, r| s.get_pending(now, &thing, r)),
            Operation::StartNext => self.run(payload, |s, r| s.start_next(now, &thing, r)),
            Operation::Describe(job) => self.run(payload, |s, r| s.describe(now, &thing, &job, r)),
            Operation::Update(job) => self.run(payload, |s, r| s.update(now, &thing, &job, r)),
        };
        match result {
            Ok((mut reply, notes)) => {
                if let Value::Object(m) = &mut reply {
                    m.insert("timestamp".into(), now.secs().into());
                    if let Some(t) = token {
                        m.insert("clientToken".into(), t.into());
                    }
                }
                let mut out = vec![Outbound {
                    topic: topics::accepted(topic),
                    payload: reply,
                }];
                out.extend(notes);
                out
            }
            Err(OpError::Reject(r)) => vec![rejected(topic, &r, token, now)],
            Err(OpError::Store(e)) => {
                tracing::error!(%topic, error = %e, "store failure while serving a device request");
                let r = Rejection {
                    code: ErrorCode::InternalError,
                    message: "internal error; retry later".to_owned(),
                    execution_state: None,
                };
                vec![rejected(topic, &r, token, now)]
            }
        }
    }

    /// Decodes the request, then runs `op` atomically (a failed request changes nothing).
    fn run<Req, F>(&mut self, payload: &[u8], op: F) -> (Option<String>, OpResult)
    where
        Req: DeserializeOwned + HasToken,
        F: FnOnce(&Self, Req) -> OpResult,
    {
        let req: Req = match wire::decode_request(payload) {
            Ok(r) => r,
            Err(e) => {
                let token = e.client_token.clone();
                return (token, Err(reject(e.code, e.message)));
            }
        };
        let token = req.token();
        let result = self.store.atomic(|_| op(self, req));
        (token, result)
    }

    fn get_pending(
        &self,
        _now: Timestamp,
        thing: &str,
        _req: GetPendingJobExecutionsRequest,
    ) -> OpResult {
        // The store returns creation order within equal keys, which `pending_list` keeps.
        let records = self
            .store
            .pending_head(thing, Some(self.cfg.max_pending_listed))?;
        let pending = execution::pending_list(
            records.iter().map(|e| (e.job_id.as_str(), &e.exec)),
            self.cfg.max_pending_listed,
        );
        // timestamp and clientToken are filled in by the caller, like every reply.
        let reply = execution::get_pending_response(&pending, None, 0);
        Ok((to_value(&reply), Vec::new()))
    }

    fn start_next(
        &self,
        now: Timestamp,
        thing: &str,
        req: StartNextPendingJobExecutionRequest,
    ) -> OpResult {
        // Bad input is refused even when nothing is pending.
        if let Some(d) = &req.status_details {
            status_details::validate(d).map_err(Rejection::from)?;
        }
        if let Some(m) = req.step_timeout_in_minutes {
            execution::validate_step_timeout(m, false)?;
        }
        let before = self.snapshot([thing])?;
        let mut reply = StartNextPendingJobExecutionResponse::default();
        // The snapshot is the pending list now: its head is what start-next starts.
        if let Some(mut head) = before.head(thing).cloned() {
            let applied = execution::apply_start_next(&head.exec, &req, now.secs())?;
            if applied.record != head.exec {
                head.exec = applied.record;
                self.store.update_execution(&head)?;
            }
            let doc = self
                .store
                .get_job_without_targets(&head.job_id)?
                .map(|j| self.device_document(&j, now));
            reply.execution = Some(render::execution(&head, doc, now));
        }
        let notes = self.notifications(now, &before)?;
        Ok((to_value(&reply), notes))
    }

    fn describe(
        &self,
        now: Timestamp,
        thing: &str,
        job: &JobRef,
        req: DescribeJobExecutionRequest,
    ) -> OpResult {
        let rec = match job {
            JobRef::Next => self.store.pending_head(thing, Some(1))?.into_iter().next(),
            JobRef::Id(id) => {
                let rec = self
                    .store
                    .get_execution(id, thing, req.execution_number)?
                    .ok_or_else(|| not_found(id, thing, req.execution_number))?;
                if rec.exec.status.is_terminal() && self.cfg.describe_terminal_rejected {
                    return Err(reject(
                        ErrorCode::TerminalStateReached,
                        format!(
                            "job execution {id} on {thing} is {} (terminal)",
                            rec.exec.status
                        ),
                    ));
                }
                Some(rec)
            }
        };
        let mut reply = DescribeJobExecutionResponse::default();
        if let Some(rec) = rec {
            let doc = if req.include_job_document.unwrap_or(true) {
                self.store
                    .get_job_without_targets(&rec.job_id)?
                    .map(|j| self.device_document(&j, now))
            } else {
                None
            };
            reply.execution = Some(render::execution(&rec, doc, now));
        }
        Ok((to_value(&reply), Vec::new()))
    }

    fn update(
        &self,
        now: Timestamp,
        thing: &str,
        job_id: &str,
        req: UpdateJobExecutionRequest,
    ) -> OpResult {
        let mut rec = self
            .store
            .get_execution(job_id, thing, req.execution_number)?
            .ok_or_else(|| not_found(job_id, thing, req.execution_number))?;
        let before = self.snapshot([thing])?;
        let applied = execution::apply_update(&rec.exec, &req, now.secs())?;
        let became_terminal = applied.became_terminal();
        rec.exec = applied.record;
        self.store.update_execution(&rec)?;
        let mut others = Vec::new();
        if became_terminal {
            // Retry, completion, abort (reference §5.4).
            others = self
                .after_terminal(now, &rec, &mut TickReport::default())
                .map_err(|e| match e {
                    ServiceError::Store(s) => OpError::Store(s),
                    other => reject(ErrorCode::InternalError, other.to_string()),
                })?;
        }
        let mut notes = self.notifications(now, &before)?;
        notes.extend(others);
        let mut reply = UpdateJobExecutionResponse::default();
        if req.include_job_execution_state.unwrap_or(false) {
            reply.execution_state = Some(rec.exec.state());
        }
        if req.include_job_document.unwrap_or(false) {
            reply.job_document = self
                .store
                .get_job_without_targets(job_id)?
                .map(|j| self.device_document(&j, now));
        }
        Ok((to_value(&reply), notes))
    }
}

fn not_found(job_id: &str, thing: &str, number: Option<i64>) -> OpError {
    let which = number.map_or(String::new(), |n| format!(" number {n}"));
    reject(
        ErrorCode::ResourceNotFound,
        format!("no execution{which} of job {job_id} for thing {thing}"),
    )
}

fn rejected(topic: &str, r: &Rejection, token: Option<String>, now: Timestamp) -> Outbound {
    Outbound {
        topic: topics::rejected(topic),
        payload: to_value(&r.to_response(token, now.secs())),
    }
}

/// Requests that carry a `clientToken` to echo.
trait HasToken {
    fn token(&self) -> Option<String>;
}

macro_rules! has_token {
    ($($t:ty),*) => {$(
        impl HasToken for $t {
            fn token(&self) -> Option<String> {
                self.client_token.clone()
            }
        }
    )*};
}
has_token!(
    GetPendingJobExecutionsRequest,
    StartNextPendingJobExecutionRequest,
    DescribeJobExecutionRequest,
    UpdateJobExecutionRequest
);
