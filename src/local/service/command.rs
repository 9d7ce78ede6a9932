//! The commands other tasks send to the service task, the handle they send them with, and
//! how each command maps onto a [`JobsService`] method. No I/O here.

use tokio::sync::{mpsc, oneshot};

use super::{
    Changed, JobDetails, JobFilter, JobsService, NewJob, NewThing, NewThingGroup, Outbound,
    ServiceError, TickReport, UpdateJob,
};
use crate::jobs::wire::{JobExecutionStatus, StatusDetails};
use crate::local::clock::Timestamp;
use crate::local::pki::IssuedCert;
use crate::local::store::{
    CertificateRecord, CertificateStatus, ExecutionRecord, JobConfigs, JobRecord,
    JobTemplateRecord, ThingGroupRecord, ThingRecord,
};

/// Where the reply to a command goes.
pub type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

/// Everything other tasks can ask of the service. Operations that change executions
/// publish their notifications before the reply is sent.
#[derive(Debug)]
pub enum Command {
    CreateThing(NewThing, Reply<ThingRecord>),
    DescribeThing(String, Reply<ThingRecord>),
    ListThings(Reply<Vec<ThingRecord>>),
    DeleteThing(String, Reply<()>),
    CreateThingGroup(NewThingGroup, Reply<ThingGroupRecord>),
    /// The group and its ancestors, root first (`rootToParentThingGroups`).
    DescribeThingGroup(String, Reply<(ThingGroupRecord, Vec<String>)>),
    ListThingGroups(Reply<Vec<ThingGroupRecord>>),
    DeleteThingGroup(String, Reply<()>),
    AddThingToThingGroup {
        group: String,
        thing: String,
        reply: Reply<()>,
    },
    RemoveThingFromThingGroup {
        group: String,
        thing: String,
        reply: Reply<()>,
    },
    ListThingsInThingGroup {
        group: String,
        recursive: bool,
        reply: Reply<Vec<String>>,
    },
    ListThingGroupsForThing(String, Reply<Vec<String>>),

    /// Records a certificate CreateKeysAndCertificate issued (attached to `thing` if given).
    RecordCertificate {
        issued: Box<IssuedCert>,
        active: bool,
        thing: Option<String>,
        reply: Reply<CertificateRecord>,
    },
    AttachThingPrincipal {
        thing: String,
        principal: String,
        reply: Reply<()>,
    },
    DetachThingPrincipal {
        thing: String,
        principal: String,
        reply: Reply<()>,
    },
    ListThingPrincipals(String, Reply<Vec<String>>),
    ListPrincipalThings(String, Reply<Vec<String>>),
    DescribeCertificate(String, Reply<CertificateRecord>),
    UpdateCertificate {
        certificate_id: String,
        status: CertificateStatus,
        reply: Reply<()>,
    },

    CreateJob(Box<NewJob>, Reply<JobRecord>),
    UpdateJob {
        job_id: String,
        update: Box<UpdateJob>,
        reply: Reply<JobRecord>,
    },
    CancelJob {
        job_id: String,
        force: bool,
        reason_code: Option<String>,
        comment: Option<String>,
        reply: Reply<JobRecord>,
    },
    DeleteJob {
        job_id: String,
        force: bool,
        reply: Reply<()>,
    },
    DescribeJob(String, Reply<JobDetails>),
    ListJobs(JobFilter, Reply<Vec<JobRecord>>),
    AssociateTargetsWithJob {
        job_id: String,
        targets: Vec<String>,
        comment: Option<String>,
        reply: Reply<()>,
    },

    DescribeJobExecution {
        job_id: String,
        thing: String,
        execution_number: Option<i64>,
        reply: Reply<ExecutionRecord>,
    },
    ListJobExecutionsForJob {
        job_id: String,
        status: Option<JobExecutionStatus>,
        reply: Reply<Vec<ExecutionRecord>>,
    },
    ListJobExecutionsForThing {
        thing: String,
        status: Option<JobExecutionStatus>,
        job_id: Option<String>,
        reply: Reply<Vec<ExecutionRecord>>,
    },
    CancelJobExecution {
        job_id: String,
        thing: String,
        force: bool,
        expected_version: Option<i64>,
        status_details: Option<StatusDetails>,
        reply: Reply<ExecutionRecord>,
    },
    DeleteJobExecution {
        job_id: String,
        thing: String,
        execution_number: i64,
        force: bool,
        reply: Reply<()>,
    },

    CreateJobTemplate {
        template_id: String,
        description: String,
        document: Option<String>,
        document_source: Option<String>,
        configs: Box<JobConfigs>,
        reply: Reply<JobTemplateRecord>,
    },
    DescribeJobTemplate(String, Reply<JobTemplateRecord>),
    ListJobTemplates(Reply<Vec<JobTemplateRecord>>),
    DeleteJobTemplate(String, Reply<()>),

    /// Run the scheduler now (after a manual clock moved): schedules, windows, rollout,
    /// timers, retries, abort.
    Tick(Reply<TickReport>),

    /// A device API request that did not come over MQTT (the HTTP data plane, tests): the
    /// reply is the core's full output; notifications are also published.
    DeviceRequest {
        topic: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Vec<Outbound>>,
    },
}

/// Cheap, cloneable access to the service task.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    pub(super) tx: mpsc::Sender<Command>,
}

impl ServiceHandle {
    /// Sends the command `make(reply)` builds and waits for its result:
    /// `handle.request(|r| Command::DescribeJob(id, r)).await`.
    pub async fn request<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        rx.await.map_err(|_| ServiceError::Unavailable)?
    }

    /// A device request as if published on `topic`; returns the reply and notifications.
    pub async fn device_request(
        &self,
        topic: impl Into<String>,
        payload: Vec<u8>,
    ) -> Result<Vec<Outbound>, ServiceError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::DeviceRequest {
            topic: topic.into(),
            payload,
            reply: tx,
        };
        self.tx
            .send(cmd)
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        rx.await.map_err(|_| ServiceError::Unavailable)
    }
}

pub(super) type Finish = Box<dyn FnOnce() + Send>;

/// Runs a control operation; returns its messages and the deferred reply.
fn reply_with<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<Changed<T>, ServiceError>,
) -> Changed<Finish> {
    let (messages, result) = match result {
        Ok(c) => (c.messages, Ok(c.value)),
        Err(e) => (Vec::new(), Err(e)),
    };
    Changed {
        value: Box::new(move || {
            // The requester may have given up; nothing to do then.
            let _ = reply.send(result);
        }),
        messages,
    }
}

fn plain<T>(r: Result<T, ServiceError>) -> Result<Changed<T>, ServiceError> {
    r.map(|value| Changed {
        value,
        messages: Vec::new(),
    })
}

pub(super) fn dispatch(core: &mut JobsService, now: Timestamp, cmd: Command) -> Changed<Finish> {
    use Command as C;
    match cmd {
        C::CreateThing(new, r) => reply_with(r, plain(core.create_thing(now, new))),
        C::DescribeThing(name, r) => reply_with(r, plain(core.describe_thing(&name))),
        C::ListThings(r) => reply_with(r, plain(core.store().list_things().map_err(Into::into))),
        C::DeleteThing(name, r) => reply_with(r, core.delete_thing(now, &name)),
        C::CreateThingGroup(new, r) => reply_with(r, plain(core.create_thing_group(now, new))),
        C::DescribeThingGroup(name, r) => reply_with(r, plain(core.describe_thing_group(&name))),
        C::ListThingGroups(r) => {
            reply_with(r, plain(core.store().list_groups().map_err(Into::into)))
        }
        C::DeleteThingGroup(name, r) => reply_with(r, core.delete_thing_group(now, &name)),
        C::AddThingToThingGroup {
            group,
            thing,
            reply,
        } => reply_with(reply, core.add_thing_to_thing_group(now, &group, &thing)),
        C::RemoveThingFromThingGroup {
            group,
            thing,
            reply,
        } => reply_with(
            reply,
            core.remove_thing_from_thing_group(now, &group, &thing),
        ),
        C::ListThingsInThingGroup {
            group,
            recursive,
            reply,
        } => reply_with(
            reply,
            plain(core.list_things_in_thing_group(&group, recursive)),
        ),
        C::ListThingGroupsForThing(thing, r) => {
            reply_with(r, plain(core.list_thing_groups_for_thing(&thing)))
        }
        C::RecordCertificate {
            issued,
            active,
            thing,
            reply,
        } => reply_with(
            reply,
            plain(core.record_certificate(now, &issued, active, thing.as_deref())),
        ),
        C::AttachThingPrincipal {
            thing,
            principal,
            reply,
        } => reply_with(
            reply,
            plain(core.attach_thing_principal(now, &thing, &principal)),
        ),
        C::DetachThingPrincipal {
            thing,
            principal,
            reply,
        } => reply_with(
            reply,
            plain(core.detach_thing_principal(&thing, &principal)),
        ),
        C::ListThingPrincipals(thing, r) => {
            reply_with(r, plain(core.list_thing_principals(&thing)))
        }
        C::ListPrincipalThings(p, r) => reply_with(r, plain(core.list_principal_things(&p))),
        C::DescribeCertificate(id, r) => reply_with(r, plain(core.describe_certificate(&id))),
        C::UpdateCertificate {
            certificate_id,
            status,
            reply,
        } => reply_with(
            reply,
            plain(core.update_certificate(now, &certificate_id, status)),
        ),
        C::CreateJob(new, r) => reply_with(r, core.create_job(now, *new)),
        C::UpdateJob {
            job_id,
            update,
            reply,
        } => reply_with(reply, plain(core.update_job(now, &job_id, *update))),
        C::CancelJob {
            job_id,
            force,
            reason_code,
            comment,
            reply,
        } => reply_with(
            reply,
            core.cancel_job(now, &job_id, force, reason_code, comment),
        ),
        C::DeleteJob {
            job_id,
            force,
            reply,
        } => reply_with(reply, core.delete_job(now, &job_id, force)),
        C::DescribeJob(id, r) => reply_with(r, plain(core.describe_job_at(now, &id))),
        C::ListJobs(filter, r) => reply_with(r, plain(core.list_jobs(&filter))),
        C::AssociateTargetsWithJob {
            job_id,
            targets,
            comment,
            reply,
        } => reply_with(
            reply,
            core.associate_targets_with_job(now, &job_id, &targets, comment),
        ),
        C::DescribeJobExecution {
            job_id,
            thing,
            execution_number,
            reply,
        } => reply_with(
            reply,
            plain(core.describe_job_execution(&job_id, &thing, execution_number)),
        ),
        C::ListJobExecutionsForJob {
            job_id,
            status,
            reply,
        } => reply_with(
            reply,
            plain(core.list_job_executions_for_job(&job_id, status)),
        ),
        C::ListJobExecutionsForThing {
            thing,
            status,
            job_id,
            reply,
        } => reply_with(
            reply,
            plain(core.list_job_executions_for_thing(&thing, status, job_id.as_deref())),
        ),
        C::CancelJobExecution {
            job_id,
            thing,
            force,
            expected_version,
            status_details,
            reply,
        } => reply_with(
            reply,
            core.cancel_job_execution(
                now,
                &job_id,
                &thing,
                force,
                expected_version,
                status_details,
            ),
        ),
        C::DeleteJobExecution {
            job_id,
            thing,
            execution_number,
            force,
            reply,
        } => reply_with(
            reply,
            core.delete_job_execution(now, &job_id, &thing, execution_number, force),
        ),
        C::CreateJobTemplate {
            template_id,
            description,
            document,
            document_source,
            configs,
            reply,
        } => reply_with(
            reply,
            plain(core.create_job_template(
                now,
                &template_id,
                description,
                document,
                document_source,
                *configs,
            )),
        ),
        C::DescribeJobTemplate(id, r) => reply_with(r, plain(core.describe_job_template(&id))),
        C::ListJobTemplates(r) => {
            reply_with(r, plain(core.store().list_templates().map_err(Into::into)))
        }
        C::DeleteJobTemplate(id, r) => reply_with(r, plain(core.delete_job_template(&id))),
        C::Tick(r) => reply_with(r, core.tick(now)),
        C::DeviceRequest {
            topic,
            payload,
            reply,
        } => {
            let messages = core.handle_device_message(now, &topic, &payload);
            let copy = messages.clone();
            Changed {
                value: Box::new(move || {
                    let _ = reply.send(copy);
                }),
                messages,
            }
        }
    }
}
