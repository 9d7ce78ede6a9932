//! The service task: the one owner of the [`JobsService`] core (and so of the database).
//!
//! Other tasks (the HTTP control plane, the CLI's `serve`, tests) send [`Command`]s over a
//! channel and get the result on a oneshot; device requests arrive from the broker, to which
//! a second task holds the MQTT connection as the privileged service client (subscribed to
//! `$aws/things/+/jobs/#`). Everything the core returns is published at QoS 1. This module
//! is a thin shell: no Jobs rule lives here.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    Changed, JobDetails, JobFilter, JobsService, NewJob, NewThing, NewThingGroup, Outbound,
    ServiceError, UpdateJob,
};
use crate::jobs::topics;
use crate::jobs::wire::{self, JobExecutionStatus, StatusDetails};
use crate::local::clock::{Clock, Timestamp};
use crate::local::store::{
    ExecutionRecord, JobConfigs, JobRecord, JobTemplateRecord, ThingGroupRecord, ThingRecord,
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
    tx: mpsc::Sender<Command>,
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

/// How the service reaches the broker (embedded or external).
#[derive(Debug, Clone)]
pub struct BrokerConnection {
    pub host: String,
    pub port: u16,
    /// The privileged service identity, e.g. `iotjobs-local/service`.
    pub client_id: String,
    /// Mutual TLS (ring provider); `None` for plain TCP (tests, a local external broker).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Errors that end the service task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the MQTT connection task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A running service.
#[derive(Debug)]
pub struct RunningService {
    pub handle: ServiceHandle,
    /// True while the service is subscribed to the device topics (false before the first
    /// SUBACK and after a disconnect); always false without a broker.
    pub subscribed: watch::Receiver<bool>,
    /// Ends after `shutdown` is cancelled (or every handle is dropped); gives the core back.
    pub task: JoinHandle<Result<JobsService, TaskError>>,
}

/// Largest MQTT packet in either direction: a 32 KB document inside a reply, with room.
const MAX_PACKET: usize = 256 * 1024;
const COMMAND_QUEUE: usize = 256;
const INCOMING_QUEUE: usize = 4096;
const CLIENT_QUEUE: usize = 4096;

/// Starts the service task (and, with `broker`, its MQTT connection task).
pub fn spawn(
    core: JobsService,
    clock: Arc<dyn Clock>,
    broker: Option<BrokerConnection>,
    shutdown: CancellationToken,
) -> RunningService {
    let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (sub_tx, subscribed) = watch::channel(false);
    let online = subscribed.clone();
    let (mqtt, incoming, conn_task) = match broker {
        Some(b) => {
            let (client, eventloop) = AsyncClient::new(options(&b), CLIENT_QUEUE);
            let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
            let t = tokio::spawn(connection(
                client.clone(),
                eventloop,
                in_tx,
                sub_tx,
                clock.clone(),
                shutdown.clone(),
            ));
            (Some(client), Some(in_rx), Some(t))
        }
        None => (None, None, None),
    };
    let task = tokio::spawn(async move {
        let core = serve(
            core,
            clock,
            commands,
            incoming,
            mqtt.clone(),
            online,
            shutdown,
        )
        .await;
        if let Some(c) = &mqtt {
            // Best effort: the broker drops the session either way.
            let _ = c.try_disconnect();
        }
        if let Some(t) = conn_task {
            t.await?;
        }
        Ok(core)
    });
    RunningService {
        handle: ServiceHandle { tx },
        subscribed,
        task,
    }
}

fn options(b: &BrokerConnection) -> MqttOptions {
    let mut o = MqttOptions::new(&b.client_id, &b.host, b.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    // A fresh session each time: the service resubscribes on every CONNACK and the
    // devices resynchronise themselves (they never rely on missed notifications).
    o.set_clean_session(true);
    if let Some(tls) = &b.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    o
}

/// Owns the MQTT event loop: (re)subscribes after every CONNACK and forwards publishes.
async fn connection(
    client: AsyncClient,
    mut eventloop: EventLoop,
    incoming: mpsc::Sender<(String, bytes::Bytes)>,
    subscribed: watch::Sender<bool>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                if let Err(e) = client.try_subscribe(topics::SERVICE_FILTER, QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "cannot queue the service subscription");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let ok = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                if !ok {
                    tracing::error!(
                        filter = topics::SERVICE_FILTER,
                        "the broker refused the service subscription"
                    );
                }
                subscribed.send_replace(ok);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // Never block the event loop (the service task may be waiting for it to
                // drain publishes): when the service is saturated, refuse the request with
                // the retryable RequestThrottled instead.
                if let Err(mpsc::error::TrySendError::Full((topic, payload))) =
                    incoming.try_send((p.topic, p.payload))
                {
                    tracing::warn!(%topic, "device request throttled: service busy");
                    if let Some(reply) = throttled(&topic, &payload, clock.now()) {
                        let bytes = reply.payload_bytes();
                        let _ = client.try_publish(reply.topic, QoS::AtLeastOnce, false, bytes);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                subscribed.send_replace(false);
                tracing::warn!(error = %e, retry_in = ?backoff, "broker connection lost");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The `RequestThrottled` rejection of a device request the service had no room for;
/// `None` for anything that is not a request (the service's own output echoed back).
fn throttled(topic: &str, payload: &[u8], now: Timestamp) -> Option<Outbound> {
    let parsed = topics::parse(topic)?;
    if !matches!(parsed.kind, topics::TopicKind::Request(_)) {
        return None;
    }
    let client_token = wire::decode_request::<wire::GetPendingJobExecutionsRequest>(payload)
        .ok()
        .and_then(|r| r.client_token);
    let reply = wire::ErrorResponse {
        code: wire::ErrorCode::RequestThrottled,
        message: "the service is busy; retry with backoff".to_owned(),
        client_token,
        timestamp: now.secs(),
        execution_state: None,
    };
    Some(Outbound {
        topic: topics::rejected(topic),
        payload: serde_json::to_value(reply).unwrap_or_default(),
    })
}

/// The service loop: one command or device request at a time, then publish its output.
async fn serve(
    mut core: JobsService,
    clock: Arc<dyn Clock>,
    mut commands: mpsc::Receiver<Command>,
    mut incoming: Option<mpsc::Receiver<(String, bytes::Bytes)>>,
    mqtt: Option<AsyncClient>,
    online: watch::Receiver<bool>,
    shutdown: CancellationToken,
) -> JobsService {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            cmd = commands.recv() => match cmd {
                Some(cmd) => {
                    let out = dispatch(&mut core, clock.now(), cmd);
                    publish(mqtt.as_ref(), &online, out.messages).await;
                    // Reply only once the notifications are queued for the broker.
                    (out.value)();
                }
                None => break,
            },
            msg = recv(&mut incoming) => match msg {
                Some((topic, payload)) => {
                    let out = core.handle_device_message(clock.now(), &topic, &payload);
                    publish(mqtt.as_ref(), &online, out).await;
                }
                // The connection task is gone (shutting down): stop polling it.
                None => incoming = None,
            },
        }
    }
    core
}

async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes at QoS 1. While the broker is reachable this waits for room in the client's
/// queue (back-pressure); while it is not, messages that do not fit are dropped with a
/// warning instead of stalling every command: notifications are advisory, and devices
/// resynchronise with `start-next`/`get` when they reconnect.
async fn publish(
    mqtt: Option<&AsyncClient>,
    online: &watch::Receiver<bool>,
    messages: Vec<Outbound>,
) {
    let Some(client) = mqtt else { return };
    for m in messages {
        let bytes = m.payload_bytes();
        let result = if *online.borrow() {
            client
                .publish(m.topic.as_str(), QoS::AtLeastOnce, false, bytes)
                .await
        } else {
            client.try_publish(m.topic.as_str(), QoS::AtLeastOnce, false, bytes)
        };
        if let Err(e) = result {
            tracing::warn!(topic = %m.topic, error = %e, "message not published");
        }
    }
}

type Finish = Box<dyn FnOnce() + Send>;

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

fn dispatch(
    core: &mut JobsService,
    now: crate::local::clock::Timestamp,
    cmd: Command,
) -> Changed<Finish> {
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
        C::DescribeJob(id, r) => reply_with(r, plain(core.describe_job(&id))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_replies_only_to_requests_and_echoes_the_token() {
        let now = Timestamp::from_secs(1_700_000_000);
        let r = throttled(
            "$aws/things/t1/jobs/j/update",
            br#"{"clientToken":"k"}"#,
            now,
        )
        .unwrap();
        assert_eq!(r.topic, "$aws/things/t1/jobs/j/update/rejected");
        assert_eq!(r.payload["code"], "RequestThrottled");
        assert_eq!(r.payload["clientToken"], "k");
        assert_eq!(r.payload["timestamp"], 1_700_000_000);
        assert!(throttled("$aws/things/t1/jobs/notify", b"{}", now).is_none());
        assert!(throttled("$aws/things/t1/jobs/get/accepted", b"{}", now).is_none());
    }
}
