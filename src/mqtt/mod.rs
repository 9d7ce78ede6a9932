//! The MQTT connection: one task owns rumqttc's event loop (mutual TLS over rustls,
//! ring provider), reconnects with jittered exponential backoff and re-subscribes on
//! every ConnAck. The rest of the daemon talks to it through a cloneable
//! [`MqttHandle`] over bounded channels.
//!
//! It must not interpret payloads: messages are routed to subscribers by topic filter
//! (with our own `$`-aware matcher, see [`topic`]), and publishes are opaque bytes.
//!
//! Semantics the jobs engine relies on:
//! - [`MqttHandle::subscribe`] registers filters for the lifetime of the returned
//!   [`Subscription`]; they are subscribed on every (re)connection *before*
//!   [`MqttEvent::Connected`] is sent, so replies to requests published after that
//!   event cannot be missed.
//! - [`MqttHandle::publish`] is QoS 1 and completes on the broker's PUBACK. While
//!   offline it **waits** (in a bounded queue: at most [`PUBLISH_QUEUE`] queued plus
//!   [`MAX_INFLIGHT`] in flight; beyond that callers wait to enqueue, which is the
//!   back-pressure). Waiting rather than failing fast keeps callers simple (a status
//!   update is delivered as soon as the link is back, after a lost broker session too:
//!   unacknowledged publishes are resent) and the durable outbox above us keeps a copy
//!   across restarts. A caller that must not wait wraps the call in a timeout; the
//!   message may still be delivered later. At shutdown pending publishes fail with
//!   [`MqttError::Shutdown`].
//! - A message is delivered once to every [`Subscription`] with a matching filter. Keep
//!   one client's filters disjoint: MQTT 3.1.1 lets a broker send one copy per matching
//!   subscription (rmqtt does), and each copy is routed.
//! - Connection state changes are broadcast as [`MqttEvent`]s and mirrored in a
//!   [`ConnectionState`] watch (for `STATUS=`).

mod backoff;
mod connection;
mod diagnose;
mod error;
mod settings;
pub mod tls;
pub mod topic;
mod tracker;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use backoff::Backoff;
pub use diagnose::describe;
pub use error::MqttError;
pub use settings::MqttSettings;

/// Publishes handed to rumqttc and not yet acknowledged, at most.
pub const MAX_INFLIGHT: usize = 32;
/// Publish requests waiting for the connection task, at most.
pub const PUBLISH_QUEUE: usize = 64;
/// Messages buffered per [`Subscription`]; when full, new messages for it are dropped
/// (logged) rather than blocking the connection task.
pub const SUBSCRIPTION_BUFFER: usize = 256;
/// AWS IoT accepts at most 8 filters per SUBSCRIBE packet.
pub const FILTERS_PER_SUBSCRIBE: usize = 8;
/// How long `disconnect()` waits for owed acks and for the DISCONNECT packet to be written.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A message received on a subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// The payload, uninterpreted.
    pub payload: Bytes,
}

/// Connection events, broadcast to every [`MqttHandle::events`] receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttEvent {
    /// Connected (after every ConnAck) and every registered filter is subscribed.
    /// `session_present`: the broker resumed our persistent session.
    Connected {
        /// Whether the broker resumed the previous session.
        session_present: bool,
    },
    /// The connection was lost (or closed); the task is reconnecting.
    Disconnected {
        /// Why, as one line.
        reason: String,
    },
}

/// The connection's current state, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting (TCP, TLS, CONNECT) for the `attempt`-th time since the last success.
    Connecting {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Connected, subscriptions (re)established.
    Connected,
    /// The last attempt failed or the link dropped; the next attempt is in `retry_in`.
    Waiting {
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Why the last attempt failed or the link dropped.
        reason: String,
    },
    /// The task has stopped (disconnect or shutdown).
    Stopped,
}

/// A publish request: QoS 1, not retained.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingPublish {
    pub topic: String,
    pub payload: Bytes,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, MqttError>>;

pub(crate) struct PublishRequest {
    pub publish: OutgoingPublish,
    pub done: Reply<()>,
}

pub(crate) enum Control {
    Subscribe {
        filters: Vec<String>,
        sink: mpsc::Sender<Message>,
        done: Reply<()>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
    /// Subscribe every registered filter again (see [`MqttHandle::refresh_subscriptions`]).
    Refresh {
        done: Reply<()>,
    },
    /// Drop the connection and connect again (see [`MqttHandle::reconnect`]).
    Reconnect,
}

/// Receives the messages matching the filters it was created with. Dropping it stops
/// their routing; the broker-side subscription stays with the persistent session.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Message>,
}

impl Subscription {
    /// The next message; `None` once the connection task has stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// A message if one is buffered now.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

/// A cheap, cloneable handle to the connection task.
#[derive(Debug, Clone)]
pub struct MqttHandle {
    control: mpsc::Sender<Control>,
    publishes: mpsc::Sender<PublishRequest>,
    events: broadcast::Sender<MqttEvent>,
    state: watch::Receiver<ConnectionState>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Subscribe { filters, .. } => write!(f, "Subscribe({filters:?})"),
            Control::Disconnect { .. } => f.write_str("Disconnect"),
            Control::Refresh { .. } => f.write_str("Refresh"),
            Control::Reconnect => f.write_str("Reconnect"),
        }
    }
}

impl std::fmt::Debug for PublishRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Publish({})", self.publish.topic)
    }
}

impl MqttHandle {
    /// Registers `filters` and returns the receiver of their messages. Completes once
    /// the broker acknowledged the subscription if connected, or at once if offline
    /// (then the filters are subscribed on connect, before [`MqttEvent::Connected`]).
    pub async fn subscribe<I, S>(&self, filters: I) -> Result<Subscription, MqttError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let filters: Vec<String> = filters.into_iter().map(Into::into).collect();
        if filters.is_empty() {
            return Err(MqttError::InvalidTopic {
                what: "filter",
                value: String::new(),
                reason: "at least one filter is needed",
            });
        }
        for filter in &filters {
            topic::validate_filter(filter)?;
        }
        let (sink, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Subscribe {
                filters,
                sink,
                done,
            })
            .await
            .map_err(|_| MqttError::Shutdown)?;
        result.await.map_err(|_| MqttError::Shutdown)??;
        Ok(Subscription { rx })
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK (see the module docs for
    /// what happens while offline).
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<(), MqttError> {
        self.enqueue(topic, payload).await?.await
    }

    /// Queues a QoS 1 publish, waiting only for queue space, and returns a future that
    /// resolves on its PUBACK. Lets a caller keep working while the publish is in flight.
    pub async fn enqueue(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<impl std::future::Future<Output = Result<(), MqttError>>, MqttError> {
        let topic = topic.into();
        topic::validate_topic(&topic)?;
        let (done, result) = oneshot::channel();
        let request = PublishRequest {
            publish: OutgoingPublish {
                topic,
                payload: payload.into(),
            },
            done,
        };
        self.publishes
            .send(request)
            .await
            .map_err(|_| MqttError::Shutdown)?;
        Ok(async move { result.await.map_err(|_| MqttError::Shutdown)? })
    }

    /// Subscribes every registered filter again and waits for the broker's SUBACKs (at
    /// once when offline: the filters are subscribed on connect anyway). SUBSCRIBE is
    /// idempotent, so this is harmless when the subscriptions are in place; it repairs a
    /// broker that lost them while the connection stayed up (seen with rmqtt when a
    /// restarted client took over its own persistent session: PUBACKs kept coming, no
    /// message was delivered any more).
    pub async fn refresh_subscriptions(&self) -> Result<(), MqttError> {
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Refresh { done })
            .await
            .map_err(|_| MqttError::Shutdown)?;
        result.await.map_err(|_| MqttError::Shutdown)?
    }

    /// Sends DISCONNECT and connects again at once, as after a lost connection (the
    /// filters are subscribed again, unacknowledged publishes resent). For a broker that
    /// acknowledges our requests but stopped delivering to this connection even after
    /// [`Self::refresh_subscriptions`] (seen with rmqtt: a daemon restarted right after
    /// a crash took the client id over from its dead connection and never received a
    /// message; a new connection does).
    pub async fn reconnect(&self) -> Result<(), MqttError> {
        self.control
            .send(Control::Reconnect)
            .await
            .map_err(|_| MqttError::Shutdown)
    }

    /// A receiver of connection events from now on. A `Lagged` error means events were
    /// missed: treat it like a `Connected` (resynchronise) if [`Self::is_connected`].
    pub fn events(&self) -> broadcast::Receiver<MqttEvent> {
        self.events.subscribe()
    }

    /// The current connection state, updated on every change.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Whether the connection is up with its subscriptions in place.
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == ConnectionState::Connected
    }

    /// Sends DISCONNECT (when connected) and stops the connection task. Pending
    /// publishes then fail with [`MqttError::Shutdown`]. Returns when the task is done
    /// with the socket; calling it again, or after the task stopped, is harmless.
    pub async fn disconnect(&self) {
        let (done, finished) = oneshot::channel();
        if self
            .control
            .send(Control::Disconnect { done })
            .await
            .is_ok()
        {
            // An Err means the task ended without answering: it is stopped either way.
            let _ = finished.await;
        }
    }
}

/// Starts the connection task on the current tokio runtime. The first connection
/// attempt starts at once; the returned handle works immediately.
pub fn spawn(settings: MqttSettings) -> (MqttHandle, JoinHandle<()>) {
    let (control_tx, control_rx) = mpsc::channel(16);
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let (events_tx, _) = broadcast::channel(32);
    let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting { attempt: 1 });
    let task = connection::Connection::new(settings, events_tx.clone(), state_tx);
    let join = tokio::spawn(task.run(control_rx, publish_rx));
    let handle = MqttHandle {
        control: control_tx,
        publishes: publish_tx,
        events: events_tx,
        state: state_rx,
    };
    (handle, join)
}
