//! The MQTT connection against the embedded rmqtt broker (in-process, port 0) over
//! mutual TLS with certificates made by the local PKI: routing of `$aws` topics,
//! publish completion, policy refusals, a wrong CA, clean disconnect, and reconnection
//! with working subscriptions after the broker restarts on the same port.

mod common;

use common::*;
use iotjobs::local::broker::BrokerEvent;
use iotjobs::mqtt::{self, ConnectionState, MqttError, MqttEvent, MqttHandle, MqttSettings};

const NOTIFY_NEXT: &str = "$aws/things/T/jobs/notify-next";

async fn connected(events: &mut tokio::sync::broadcast::Receiver<MqttEvent>) -> bool {
    match next_matching(events, "Connected", |e| {
        matches!(e, MqttEvent::Connected { .. })
    })
    .await
    {
        MqttEvent::Connected { session_present } => session_present,
        _ => unreachable!(),
    }
}

struct Setup {
    dir: tempfile::TempDir,
    ca: TestCa,
    ca_path: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_path = ca.write_ca(dir.path(), "ca");
        Setup { dir, ca, ca_path }
    }

    fn device(&self, thing: &str, port: u16) -> MqttHandle {
        let cfg = device_config(&self.ca, self.dir.path(), thing, port, &self.ca_path);
        mqtt::spawn(MqttSettings::from_config(&cfg).unwrap()).0
    }

    fn service(&self, port: u16) -> MqttHandle {
        let cfg = service_config(&self.ca, self.dir.path(), port, &self.ca_path);
        mqtt::spawn(MqttSettings::from_config(&cfg).unwrap()).0
    }
}

#[tokio::test]
async fn reconnects_and_resubscribes_after_the_broker_restarts_on_the_same_port() {
    let s = Setup::new();
    let broker = start_broker(&s.ca, None).await;
    let addr = broker.tls_addr().unwrap();

    let device = s.device("T", addr.port());
    let mut device_events = device.events();
    // Registered before the connection exists: subscribed on connect, before Connected.
    let mut notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    let cloud = s.service(addr.port());
    let mut cloud_events = cloud.events();
    assert!(!connected(&mut device_events).await);
    connected(&mut cloud_events).await;

    cloud.publish(NOTIFY_NEXT, &b"before"[..]).await.unwrap();
    let message = tokio::time::timeout(WAIT, notify.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (message.topic.as_str(), &message.payload[..]),
        (NOTIFY_NEXT, &b"before"[..])
    );

    broker.shutdown().await;
    next_matching(&mut device_events, "Disconnected", |e| {
        matches!(e, MqttEvent::Disconnected { .. })
    })
    .await;
    let offline = device
        .enqueue("$aws/things/T/jobs/j1/update", &b"{}"[..])
        .await
        .unwrap();

    let broker = start_broker(&s.ca, Some(addr)).await;
    let mut broker_events = broker.events();
    assert!(
        !connected(&mut device_events).await,
        "the restarted broker has no session: subscriptions must be redone by the client"
    );
    connected(&mut cloud_events).await;
    tokio::time::timeout(WAIT, offline)
        .await
        .expect("publish made while offline completes once reconnected")
        .unwrap();

    cloud.publish(NOTIFY_NEXT, &b"after"[..]).await.unwrap();
    let message = tokio::time::timeout(WAIT, notify.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&message.payload[..], b"after");

    device.disconnect().await;
    let event = next_matching(
        &mut broker_events,
        "device disconnect",
        |e| matches!(e, BrokerEvent::Disconnected { client_id, .. } if client_id == "T"),
    )
    .await;
    assert_eq!(
        event,
        BrokerEvent::Disconnected {
            client_id: "T".into(),
            clean: true
        }
    );
    assert_eq!(*device.state().borrow(), ConnectionState::Stopped);
    cloud.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcard_filters_route_dollar_topics_and_refusals_are_reported() {
    let s = Setup::new();
    let broker = start_broker(&s.ca, None).await;
    let port = broker.tls_addr().unwrap().port();
    let device = s.device("T", port);
    let mut events = device.events();
    connected(&mut events).await;

    // Non-overlapping filters: with overlapping ones MQTT lets a broker deliver one copy
    // per matching subscription (rmqtt does), and each copy reaches every match.
    let mut replies = device
        .subscribe(["$aws/things/T/jobs/+/get/#", "$aws/things/T/jobs/notify"])
        .await
        .unwrap();
    let mut next = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    let cloud = s.service(port);
    let mut cloud_events = cloud.events();
    connected(&mut cloud_events).await;

    for topic in [
        NOTIFY_NEXT,
        "$aws/things/T/jobs/j1/get/accepted",
        "$aws/things/T/jobs/notify",
        "$aws/things/T/jobs/j1/update/accepted",
    ] {
        cloud
            .publish(topic, topic.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(WAIT, replies.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(WAIT, replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.topic, "$aws/things/T/jobs/j1/get/accepted");
    assert_eq!(&first.payload[..], first.topic.as_bytes());
    assert_eq!(second.topic, "$aws/things/T/jobs/notify");
    let only = tokio::time::timeout(WAIT, next.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only.topic, NOTIFY_NEXT);
    // Messages are routed in order, so once a later message is through, nothing else
    // can be pending for these subscriptions.
    let mut probe = device
        .subscribe(["$aws/things/T/jobs/probe"])
        .await
        .unwrap();
    cloud
        .publish("$aws/things/T/jobs/probe", &b"p"[..])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, probe.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        replies.try_recv().is_none(),
        "update/accepted matched no filter"
    );
    assert!(next.try_recv().is_none());

    // The broker's per-thing policy refuses another thing's topics (SUBACK failure).
    let refused = device
        .subscribe(["$aws/things/OTHER/jobs/notify-next"])
        .await;
    assert!(
        matches!(&refused, Err(MqttError::SubscribeRefused { filters }) if filters == &["$aws/things/OTHER/jobs/notify-next"]),
        "{refused:?}"
    );
    assert!(device.is_connected());
    // Invalid input is rejected before it reaches the broker.
    assert!(matches!(
        device.publish("a/+/b", &b""[..]).await,
        Err(MqttError::InvalidTopic { .. })
    ));
    device.disconnect().await;
    cloud.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn wrong_root_ca_is_reported_and_never_connects() {
    let s = Setup::new();
    let broker = start_broker(&s.ca, None).await;
    let mut broker_events = broker.events();
    let port = broker.tls_addr().unwrap().port();
    let other = TestCa::new();
    let wrong_ca = other.write_ca(s.dir.path(), "other-ca");
    let cfg = device_config(&s.ca, s.dir.path(), "T", port, &wrong_ca);
    let (device, _task) = mqtt::spawn(MqttSettings::from_config(&cfg).unwrap());

    let mut state = device.state();
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            if let ConnectionState::Waiting { reason, .. } = &*state.borrow_and_update() {
                return reason.clone();
            }
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("a failed attempt");
    assert_eq!(
        reason,
        format!(
            "TLS handshake with localhost:{port} failed: invalid peer certificate: UnknownIssuer — \
             the broker's certificate is not signed by a trusted CA; check mqtt.root_ca"
        )
    );
    assert!(!device.is_connected());
    device.disconnect().await;
    assert!(
        broker_events.try_recv().is_err(),
        "the broker saw no connection from the client"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_device_certificate_from_another_ca_is_refused_by_the_broker() {
    let s = Setup::new();
    let broker = start_broker(&s.ca, None).await;
    let port = broker.tls_addr().unwrap().port();
    // Trusts the right CA, but its own certificate comes from a CA the broker does not know.
    let rogue = TestCa::new();
    let cfg = device_config(&rogue, s.dir.path(), "T", port, &s.ca_path);
    let (device, _task) = mqtt::spawn(MqttSettings::from_config(&cfg).unwrap());
    let mut state = device.state();
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            if let ConnectionState::Waiting { reason, .. } = &*state.borrow_and_update() {
                return reason.clone();
            }
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("a failed attempt");
    eprintln!("reported: {reason}");
    assert!(
        reason.contains(&format!("localhost:{port}")) && reason.contains("mqtt.cert"),
        "{reason}"
    );
    assert!(!device.is_connected());
    device.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn dropping_every_handle_disconnects_cleanly() {
    let s = Setup::new();
    let broker = start_broker(&s.ca, None).await;
    let mut broker_events = broker.events();
    let port = broker.tls_addr().unwrap().port();
    let cfg = device_config(&s.ca, s.dir.path(), "T", port, &s.ca_path);
    let (device, task) = mqtt::spawn(MqttSettings::from_config(&cfg).unwrap());
    let mut events = device.events();
    let mut notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    connected(&mut events).await;
    drop(device);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    let event = next_matching(&mut broker_events, "disconnect", |e| {
        matches!(e, BrokerEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        event,
        BrokerEvent::Disconnected {
            client_id: "T".into(),
            clean: true
        }
    );
    assert_eq!(notify.recv().await, None, "subscriptions end with the task");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_resumed_session_completes_the_unacked_publish_and_delivers_queued_messages() {
    let s = Setup::new();
    let broker = start_broker(&s.ca, None).await;
    let relay = Relay::start(broker.tls_addr().unwrap()).await;
    let device = s.device("T", relay.port);
    let mut device_events = device.events();
    let mut notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    assert!(!connected(&mut device_events).await);

    let cloud = s.service(broker.tls_addr().unwrap().port());
    let mut cloud_events = cloud.events();
    let mut updates = cloud
        .subscribe(["$aws/things/+/jobs/+/update"])
        .await
        .unwrap();
    connected(&mut cloud_events).await;

    // The broker's PUBACK is held back, then the link dies: the publish is unacked.
    relay.hold(true);
    let pending = device
        .enqueue("$aws/things/T/jobs/j1/update", &b"final status"[..])
        .await
        .unwrap();
    let delivered = tokio::time::timeout(WAIT, updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&delivered.payload[..], b"final status");
    relay.cut();
    next_matching(&mut device_events, "Disconnected", |e| {
        matches!(e, MqttEvent::Disconnected { .. })
    })
    .await;
    // Published while the device is away: queued in its persistent session.
    cloud
        .publish(NOTIFY_NEXT, &b"while away"[..])
        .await
        .unwrap();

    assert!(
        connected(&mut device_events).await,
        "the broker kept the session"
    );
    tokio::time::timeout(WAIT, pending)
        .await
        .expect("the resent publish is acknowledged")
        .unwrap();
    let message = tokio::time::timeout(WAIT, notify.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&message.payload[..], b"while away");

    // The publish path still pairs acks correctly afterwards.
    device
        .publish("$aws/things/T/jobs/j2/update", &b"next"[..])
        .await
        .unwrap();
    device.disconnect().await;
    cloud.disconnect().await;
    broker.shutdown().await;
}
