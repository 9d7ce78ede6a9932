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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::command::dispatch;
pub use super::command::{Command, Reply, ServiceHandle};
use super::device::is_service_output;
use super::{JobsService, Outbound};
use crate::jobs::topics;
use crate::jobs::wire;
use crate::local::clock::{Clock, Timestamp};

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
/// Device requests waiting for the service task; beyond it they get `RequestThrottled`.
/// A thing has one request in flight at a time, so a fleet's burst (every thing answering
/// the same CreateJob's notifications) fits: a rejected request costs a reply and a
/// retry, more work than waiting its turn.
const INCOMING_QUEUE: usize = 16_384;
const CLIENT_QUEUE: usize = 4096;
/// QoS 1 publishes awaiting the broker's PUBACK (rumqttc's default is 100): replies and
/// notifications to many things go out in bursts, and the service task waits while the
/// window is full.
const INFLIGHT: u16 = 1024;
/// How often the scheduler runs on its own (a manual clock also runs it at each move).
const TICK_INTERVAL: Duration = Duration::from_secs(1);

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
            let (client, mut eventloop) = AsyncClient::new(options(&b), CLIENT_QUEUE);
            // Without TCP_NODELAY every reply waits for Nagle + delayed ACK (~40 ms).
            let mut network = rumqttc::NetworkOptions::new();
            network.set_tcp_nodelay(true);
            eventloop.set_network_options(network);
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
    o.set_inflight(INFLIGHT);
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
                // The embedded broker does not echo the service's own replies and
                // notifications back to it; an external one does (MQTT 3.1.1 has no
                // No Local). They are no requests: never let them take the queue's room.
                if is_service_output(&p.topic) {
                    continue;
                }
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
    // The scheduler (reference §5): time-driven changes are applied once a second.
    let mut ticker = tokio::time::interval(TICK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => match core.tick(clock.now()) {
                Ok(out) => {
                    if !out.value.is_empty() {
                        tracing::info!(report = ?out.value, "scheduler");
                    }
                    publish(mqtt.as_ref(), &online, out.messages).await;
                }
                Err(e) => tracing::error!(error = %e, "scheduler tick failed"),
            },
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
