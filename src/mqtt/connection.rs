//! The connection task: the only owner of rumqttc's `EventLoop`. It polls, routes
//! incoming messages, completes publishes and subscribes on their acks, and sleeps
//! between reconnect attempts. It never blocks: callers are answered over oneshot
//! channels and subscribers are fed with `try_send`.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, QoS, Request,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::topic::filter_matches;
use super::tracker::{self, PublishTracker, SubscribeTracker};
use super::{
    describe, ConnectionState, Control, Message, MqttError, MqttEvent, MqttSettings,
    OutgoingPublish, PublishRequest, Reply, DISCONNECT_TIMEOUT, FILTERS_PER_SUBSCRIBE,
    MAX_INFLIGHT,
};

/// Capacity of rumqttc's own request queue. We bound publishes to [`MAX_INFLIGHT`]
/// and SUBSCRIBEs to a handful, so `try_*` into it cannot fail in practice.
const CLIENT_QUEUE: usize = 1024;
/// rumqttc's in-flight window; larger than ours so packet ids never collide while the
/// broker acks in order (MQTT requires it to).
const RUMQTTC_INFLIGHT: u16 = 100;

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

#[derive(Debug)]
enum Link {
    Offline,
    /// ConnAck received, (re)subscribing before announcing `Connected`.
    Subscribing {
        since: Instant,
    },
    Online {
        since: Instant,
    },
}

struct Route {
    filters: Vec<String>,
    sink: mpsc::Sender<Message>,
}

/// A caller's subscribe, or the re-subscription after a ConnAck, may take several
/// SUBSCRIBE packets (AWS allows 8 filters each); the group completes on the last SUBACK.
struct SubGroup {
    remaining: usize,
    refused: Vec<String>,
    kind: GroupKind,
}

enum GroupKind {
    Reconnect { session_present: bool },
    Caller(Reply<()>),
}

pub(crate) struct Connection {
    settings: MqttSettings,
    events: broadcast::Sender<MqttEvent>,
    state: watch::Sender<ConnectionState>,
    routes: Vec<Route>,
    publishes: PublishTracker<OutgoingPublish, Reply<()>>,
    subscribes: SubscribeTracker<(u64, Vec<String>)>,
    groups: HashMap<u64, SubGroup>,
    next_group: u64,
    link: Link,
    backoff: Backoff,
    attempt: u32,
    stopping: Vec<oneshot::Sender<()>>,
    stop_deadline: Option<Instant>,
    /// DISCONNECT handed to rumqttc (stopping waits for the broker's acks first).
    disconnect_sent: bool,
}

impl Connection {
    pub(crate) fn new(
        settings: MqttSettings,
        events: broadcast::Sender<MqttEvent>,
        state: watch::Sender<ConnectionState>,
    ) -> Self {
        let backoff = settings.backoff();
        Connection {
            settings,
            events,
            state,
            routes: Vec::new(),
            publishes: PublishTracker::new(),
            subscribes: SubscribeTracker::new(),
            groups: HashMap::new(),
            next_group: 0,
            link: Link::Offline,
            backoff,
            attempt: 1,
            stopping: Vec::new(),
            stop_deadline: None,
            disconnect_sent: false,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        mut requests: mpsc::Receiver<PublishRequest>,
    ) {
        let mut options = self.settings.mqtt_options();
        options.set_inflight(RUMQTTC_INFLIGHT);
        let (client, mut eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
        eventloop.set_network_options(self.settings.network_options());
        let mut retry_delay: Option<Duration> = None;

        loop {
            if let Some(delay) = retry_delay.take() {
                if self.wait(delay, &mut control).await == Flow::Stop {
                    break;
                }
            }
            if matches!(self.link, Link::Offline) {
                self.set_state(ConnectionState::Connecting {
                    attempt: self.attempt,
                });
            }
            let event = {
                let poll = eventloop.poll();
                tokio::pin!(poll);
                loop {
                    let can_publish = self.can_publish();
                    // Once stopping, nothing more is read (a closed channel would
                    // otherwise be ready forever).
                    let accepting = self.stopping.is_empty();
                    let deadline = self.stop_deadline;
                    tokio::select! {
                        // Kept alive across iterations and dropped only to stop, so
                        // rumqttc is never interrupted mid-write.
                        event = &mut poll => break Some(event),
                        // Cancel-safe: mpsc recv loses nothing when another branch wins.
                        command = control.recv(), if accepting => {
                            self.on_control(command, &client);
                        }
                        // Cancel-safe as above; only read while we may hand it over.
                        Some(request) = requests.recv(), if can_publish => {
                            self.on_publish(request, &client);
                        }
                        _ = sleep_until_opt(deadline), if deadline.is_some() => {
                            warn!("no clean MQTT disconnect within {DISCONNECT_TIMEOUT:?}; closing the socket");
                            break None;
                        }
                    }
                }
            };
            match event {
                None => break,
                Some(Ok(event)) => {
                    if self.on_event(event, &client) == Flow::Stop {
                        break;
                    }
                    self.disconnect_when_settled(&client);
                }
                Some(Err(err)) => {
                    if !self.stopping.is_empty() {
                        break;
                    }
                    retry_delay = Some(self.on_error(&err, &mut eventloop, &client));
                }
            }
        }
        drop(eventloop); // closes the socket
        self.finish(requests);
    }

    fn can_publish(&self) -> bool {
        matches!(self.link, Link::Online { .. })
            && self.stopping.is_empty()
            && self.publishes.len() < MAX_INFLIGHT
    }

    fn is_connected(&self) -> bool {
        !matches!(self.link, Link::Offline)
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    fn emit(&self, event: MqttEvent) {
        // No receiver is fine: nobody is interested yet.
        let _ = self.events.send(event);
    }

    /// Sleeps before the next attempt, still registering subscriptions and honouring
    /// a disconnect request.
    async fn wait(&mut self, delay: Duration, control: &mut mpsc::Receiver<Control>) -> Flow {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Flow::Continue,
                command = control.recv() => {
                    if self.on_control_offline(command) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
            }
        }
    }

    fn on_control_offline(&mut self, command: Option<Control>) -> Flow {
        match command {
            Some(Control::Subscribe {
                filters,
                sink,
                done,
            }) => {
                self.register(filters, sink, None);
                let _ = done.send(Ok(()));
                Flow::Continue
            }
            Some(Control::Disconnect { done }) => {
                self.stopping.push(done);
                Flow::Stop
            }
            Some(Control::Refresh { done }) => {
                // Subscribed on connect anyway.
                let _ = done.send(Ok(()));
                Flow::Continue
            }
            // Already about to connect.
            Some(Control::Reconnect) => Flow::Continue,
            None => Flow::Stop,
        }
    }

    /// Commands while a connection attempt or a connection is under way.
    fn on_control(&mut self, command: Option<Control>, client: &AsyncClient) {
        match command {
            Some(Control::Subscribe {
                filters,
                sink,
                done,
            }) if self.is_connected() => {
                self.register(filters.clone(), sink, Some(client));
                let group = self.new_group(GroupKind::Caller(done));
                if let Err(err) = self.send_subscribes(group, &filters, client) {
                    if let Some(SubGroup {
                        kind: GroupKind::Caller(done),
                        ..
                    }) = self.groups.remove(&group)
                    {
                        let _ = done.send(Err(err));
                    }
                }
            }
            Some(Control::Subscribe {
                filters,
                sink,
                done,
            }) => {
                self.register(filters, sink, Some(client));
                let _ = done.send(Ok(()));
            }
            Some(Control::Refresh { done }) if self.is_connected() => {
                let filters = self.registered_filters();
                let group = self.new_group(GroupKind::Caller(done));
                if let Err(err) = self.send_subscribes(group, &filters, client) {
                    if let Some(SubGroup {
                        kind: GroupKind::Caller(done),
                        ..
                    }) = self.groups.remove(&group)
                    {
                        let _ = done.send(Err(err));
                    }
                } else {
                    self.maybe_complete(group);
                }
            }
            // Connecting: the filters are subscribed when the connection is up.
            Some(Control::Refresh { done }) => {
                let _ = done.send(Ok(()));
            }
            Some(Control::Reconnect) if self.stopping.is_empty() => {
                // The broker answers DISCONNECT by closing the socket; the poll then
                // fails and the usual reconnect path (backoff, resubscribe, resend) runs.
                warn!("reconnecting: the broker acknowledges requests but delivers nothing");
                if let Err(err) = client.try_disconnect() {
                    warn!("cannot send DISCONNECT to reconnect: {err}");
                }
            }
            Some(Control::Reconnect) => {}
            Some(Control::Disconnect { done }) => self.begin_disconnect(done, client),
            None => {
                let (done, _) = oneshot::channel();
                self.begin_disconnect(done, client);
            }
        }
    }

    /// Starts a clean stop. During a connection attempt we let it finish (bounded by
    /// the deadline) so that a broker which already accepted us gets a DISCONNECT
    /// instead of a dropped socket.
    fn begin_disconnect(&mut self, done: oneshot::Sender<()>, client: &AsyncClient) {
        let first = self.stopping.is_empty();
        self.stopping.push(done);
        if first {
            info!("disconnecting from the MQTT broker");
            self.stop_deadline = Some(Instant::now() + DISCONNECT_TIMEOUT);
            self.disconnect_when_settled(client);
        }
    }

    /// Sends DISCONNECT once the broker owes us no reply (bounded by the stop deadline).
    ///
    /// We close the socket right after DISCONNECT, so a SUBACK or PUBACK still on its way
    /// would reach a closed socket and draw a TCP reset. A broker that handles packets in
    /// order then fails writing that reply before it reads our DISCONNECT: mosquitto
    /// (< 2.0.22) drops the client "due to out of memory" and never sees the clean
    /// disconnect. Waiting for the acks also lets in-flight publishes complete.
    fn disconnect_when_settled(&mut self, client: &AsyncClient) {
        let owed = self.publishes.len() > 0 || !self.groups.is_empty();
        if self.stopping.is_empty() || self.disconnect_sent || !self.is_connected() || owed {
            return;
        }
        self.send_disconnect(client);
    }

    fn send_disconnect(&mut self, client: &AsyncClient) {
        self.disconnect_sent = true;
        if client.try_disconnect().is_err() {
            // Cannot queue DISCONNECT: close at once instead of waiting.
            self.stop_deadline = Some(Instant::now());
        }
    }

    fn register(
        &mut self,
        filters: Vec<String>,
        sink: mpsc::Sender<Message>,
        client: Option<&AsyncClient>,
    ) {
        self.prune_routes(client);
        self.routes.push(Route { filters, sink });
    }

    fn new_group(&mut self, kind: GroupKind) -> u64 {
        let id = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            id,
            SubGroup {
                remaining: 0,
                refused: Vec::new(),
                kind,
            },
        );
        id
    }

    fn send_subscribes(
        &mut self,
        group: u64,
        filters: &[String],
        client: &AsyncClient,
    ) -> Result<(), MqttError> {
        for chunk in filters.chunks(FILTERS_PER_SUBSCRIBE) {
            let packet = chunk
                .iter()
                .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
            client
                .try_subscribe_many(packet)
                .map_err(MqttError::Client)?;
            self.subscribes.submitted((group, chunk.to_vec()));
            if let Some(g) = self.groups.get_mut(&group) {
                g.remaining += 1;
            }
        }
        Ok(())
    }

    fn on_publish(&mut self, request: PublishRequest, client: &AsyncClient) {
        let PublishRequest { publish, done } = request;
        match client.try_publish(
            publish.topic.clone(),
            QoS::AtLeastOnce,
            false,
            publish.payload.to_vec(),
        ) {
            Ok(()) => self.publishes.submitted(publish, done),
            Err(err) => {
                let _ = done.send(Err(MqttError::Client(err)));
            }
        }
    }

    fn on_event(&mut self, event: Event, client: &AsyncClient) -> Flow {
        match event {
            Event::Incoming(Incoming::ConnAck(ack)) => self.on_connack(ack.session_present, client),
            Event::Incoming(Incoming::Publish(publish)) => self.route(
                Message {
                    topic: publish.topic,
                    payload: publish.payload,
                },
                client,
            ),
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(done) = self.publishes.acked(ack.pkid) {
                    let _ = done.send(Ok(()));
                }
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure));
                self.on_suback(ack.pkid, refused);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                let outcome = self.publishes.outgoing(pkid);
                log_unexpected(outcome == tracker::Outgoing::Unexpected, "publish", pkid);
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                let attributed = self.subscribes.outgoing(pkid);
                log_unexpected(!attributed, "subscribe", pkid);
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                warn!(
                    pkid,
                    "broker acknowledges out of order; publishing paused until it acks"
                );
            }
            Event::Outgoing(Outgoing::Disconnect) if !self.stopping.is_empty() => {
                return Flow::Stop;
            }
            _ => {}
        }
        Flow::Continue
    }

    fn on_connack(&mut self, session_present: bool, client: &AsyncClient) {
        let s = &self.settings;
        info!(
            "connected to {}:{} as {} (session present: {session_present})",
            s.host, s.port, s.client_id
        );
        self.attempt = 1;
        if !self.stopping.is_empty() {
            // Asked to stop while connecting: leave cleanly, skip the set-up.
            self.link = Link::Online {
                since: Instant::now(),
            };
            self.send_disconnect(client);
            return;
        }
        if !session_present {
            // rumqttc dropped what the broker had not acked: hand it over again.
            for publish in self.publishes.session_lost() {
                if let Err(err) = client.try_publish(
                    publish.topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    publish.payload.to_vec(),
                ) {
                    error!("cannot resend a publish to {}: {err}", publish.topic);
                }
            }
        }
        self.link = Link::Subscribing {
            since: Instant::now(),
        };
        self.prune_routes(Some(client));
        let filters = self.registered_filters();
        let group = self.new_group(GroupKind::Reconnect { session_present });
        if let Err(err) = self.send_subscribes(group, &filters, client) {
            error!("cannot re-subscribe: {err}");
        }
        self.maybe_complete(group);
    }

    fn registered_filters(&self) -> Vec<String> {
        let mut filters: Vec<String> = Vec::new();
        for route in &self.routes {
            for filter in &route.filters {
                if !filters.contains(filter) {
                    filters.push(filter.clone());
                }
            }
        }
        filters
    }

    fn on_suback(&mut self, pkid: u16, refused: bool) {
        let Some((group, filters)) = self.subscribes.acked(pkid) else {
            return;
        };
        if let Some(g) = self.groups.get_mut(&group) {
            g.remaining = g.remaining.saturating_sub(1);
            if refused {
                g.refused.extend(filters);
            }
        }
        self.maybe_complete(group);
    }

    fn maybe_complete(&mut self, group: u64) {
        if self.groups.get(&group).is_none_or(|g| g.remaining > 0) {
            return;
        }
        let Some(g) = self.groups.remove(&group) else {
            return;
        };
        match g.kind {
            GroupKind::Caller(done) => {
                let result = if g.refused.is_empty() {
                    Ok(())
                } else {
                    error!("the broker refused the subscription to {:?}", g.refused);
                    Err(MqttError::SubscribeRefused { filters: g.refused })
                };
                let _ = done.send(result);
            }
            GroupKind::Reconnect { session_present } => {
                if !g.refused.is_empty() {
                    error!(
                        "the broker refused the subscription to {:?}; messages on them will not arrive (check the device policy)",
                        g.refused
                    );
                }
                let since = match self.link {
                    Link::Subscribing { since } => since,
                    _ => Instant::now(),
                };
                self.link = Link::Online { since };
                self.set_state(ConnectionState::Connected);
                self.emit(MqttEvent::Connected { session_present });
            }
        }
    }

    /// Delivers to every subscription with a matching filter, without waiting.
    fn route(&mut self, message: Message, client: &AsyncClient) {
        let mut delivered = false;
        let mut closed = false;
        for route in &self.routes {
            if !route
                .filters
                .iter()
                .any(|f| filter_matches(f, &message.topic))
            {
                continue;
            }
            match route.sink.try_send(message.clone()) {
                Ok(()) => delivered = true,
                Err(mpsc::error::TrySendError::Full(_)) => warn!(
                    topic = %message.topic,
                    "a subscriber is not keeping up ({} messages buffered); message dropped",
                    super::SUBSCRIPTION_BUFFER
                ),
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            self.prune_routes(Some(client));
        }
        if !delivered {
            debug!(topic = %message.topic, "message matched no subscriber");
        }
    }

    /// Forgets dropped subscriptions: their messages stop being routed.
    ///
    /// No UNSUBSCRIBE goes on the wire. The session is persistent (clean_session =
    /// false), and a subscription is dropped mostly when a service stops at shutdown:
    /// unsubscribing then would strip the session of the very filters (notify-next) whose
    /// messages the broker should queue until the daemon is back. It also raced the
    /// DISCONNECT that follows (mosquitto 2.0.11 dropped the client with "Protocol
    /// error" instead of seeing a clean disconnect). A message for a forgotten filter is
    /// simply not delivered to anyone.
    fn prune_routes(&mut self, _client: Option<&AsyncClient>) {
        self.routes.retain(|r| !r.sink.is_closed());
    }

    /// Handles a failed attempt or a dropped link; returns the delay before the next.
    fn on_error(
        &mut self,
        err: &ConnectionError,
        eventloop: &mut EventLoop,
        client: &AsyncClient,
    ) -> Duration {
        // Events rumqttc queued before failing (acks, packet ids) are still true.
        let stale: Vec<Event> = eventloop.state.events.drain(..).collect();
        for event in stale {
            self.on_event(event, client);
        }
        // SUBSCRIBEs are redone from scratch on the next ConnAck.
        eventloop
            .pending
            .retain(|r| matches!(r, Request::Publish(_) | Request::PubRel(_)));
        // rumqttc does not carry a collided publish over to the next connection; put it
        // back as the oldest not-yet-sent request so our queue order still holds.
        if let Some(mut publish) = eventloop.state.collision.take() {
            publish.pkid = 0;
            let at = eventloop
                .pending
                .iter()
                .position(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
                .unwrap_or(eventloop.pending.len());
            eventloop.pending.insert(at, Request::Publish(publish));
        }
        self.subscribes.connection_lost();
        for (_, group) in self.groups.drain() {
            if let GroupKind::Caller(done) = group.kind {
                // Registered: it will be subscribed on the next ConnAck.
                let _ = done.send(Ok(()));
            }
        }

        let reason = describe(err, &self.settings.host, self.settings.port);
        let was_connected = match self.link {
            Link::Offline => None,
            Link::Subscribing { since } | Link::Online { since } => Some(since.elapsed()),
        };
        self.link = Link::Offline;
        if let Some(lasted) = was_connected {
            self.backoff.connection_ended(lasted);
        }
        let delay = self.backoff.next_delay(fastrand::f64());
        match was_connected {
            Some(_) => {
                warn!(
                    "MQTT connection lost: {reason}; reconnecting in {:.1} s",
                    delay.as_secs_f64()
                );
                self.emit(MqttEvent::Disconnected {
                    reason: reason.clone(),
                });
                self.attempt = 1;
            }
            None => {
                error!(
                    "{reason}; retrying in {:.1} s (attempt {})",
                    delay.as_secs_f64(),
                    self.attempt
                );
                self.attempt = self.attempt.saturating_add(1);
            }
        }
        self.set_state(ConnectionState::Waiting {
            retry_in: delay,
            reason,
        });
        delay
    }

    fn finish(mut self, mut requests: mpsc::Receiver<PublishRequest>) {
        if self.is_connected() {
            self.emit(MqttEvent::Disconnected {
                reason: "disconnected (shutdown)".into(),
            });
        }
        requests.close();
        while let Ok(request) = requests.try_recv() {
            let _ = request.done.send(Err(MqttError::Shutdown));
        }
        for done in self.publishes.drain() {
            let _ = done.send(Err(MqttError::Shutdown));
        }
        for (_, group) in self.groups.drain() {
            if let GroupKind::Caller(done) = group.kind {
                let _ = done.send(Err(MqttError::Shutdown));
            }
        }
        self.set_state(ConnectionState::Stopped);
        info!("MQTT connection closed");
        for done in self.stopping.drain(..) {
            let _ = done.send(());
        }
    }
}

fn log_unexpected(unexpected: bool, what: &str, pkid: u16) {
    if unexpected {
        warn!(pkid, "rumqttc sent a {what} we did not queue");
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
