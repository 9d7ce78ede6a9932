//! Interop: the MQTT connection against a real mosquitto with mutual TLS
//! (`require_certificate true`), started by the test on a free loopback port.
//! Skipped with a note when mosquitto is missing, unless IOTJOBS_REQUIRE_MOSQUITTO=1.

mod common;

use common::*;
use iotjobs::mqtt::{self, ConnectionState, MqttEvent, MqttSettings};

const NOTIFY_NEXT: &str = "$aws/things/T/jobs/notify-next";

#[tokio::test(flavor = "current_thread")]
async fn mutual_tls_subscribe_publish_and_reconnect_after_broker_restart() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write_ca(dir.path(), "ca");
    let mut broker = Mosquitto::start(&ca, dir.path(), free_port());

    let device_cfg = device_config(&ca, dir.path(), "T", broker.port, &ca_path);
    let (device, _device_task) = mqtt::spawn(MqttSettings::from_config(&device_cfg).unwrap());
    let mut device_events = device.events();
    let mut notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();

    // The "cloud" side: a second client that publishes to the device's topic.
    let cloud_cfg = device_config(&ca, dir.path(), "jobs-service", broker.port, &ca_path);
    let (cloud, _cloud_task) = mqtt::spawn(MqttSettings::from_config(&cloud_cfg).unwrap());
    let mut cloud_events = cloud.events();

    assert!(
        !connected(&mut device_events).await,
        "fresh broker has no session"
    );
    connected(&mut cloud_events).await;
    broker.wait_for_line("device identity", |l| {
        l.contains("New client connected") && l.contains(" as T ") && l.contains("u'T'")
    });

    cloud
        .publish(NOTIFY_NEXT, &b"{\"execution\":1}"[..])
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, notify.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.topic, NOTIFY_NEXT);
    assert_eq!(&message.payload[..], b"{\"execution\":1}");

    // Broker goes away: the device notices, and a publish made while offline waits.
    broker.kill();
    next_matching(&mut device_events, "Disconnected", |e| {
        matches!(e, MqttEvent::Disconnected { .. })
    })
    .await;
    assert!(!device.is_connected());
    let offline_publish = device
        .enqueue(
            "$aws/things/T/jobs/j1/update",
            &b"{\"status\":\"SUCCEEDED\"}"[..],
        )
        .await
        .unwrap();

    broker.restart();
    // persistence is off, so the restarted broker has no session: the client must
    // re-subscribe by itself for the next message to arrive.
    assert!(!connected(&mut device_events).await);
    connected(&mut cloud_events).await;
    tokio::time::timeout(WAIT, offline_publish)
        .await
        .expect("publish queued while offline completes after reconnect")
        .unwrap();
    broker.wait_for_line("offline publish delivered", |l| {
        l.contains("Received PUBLISH from T") && l.contains("$aws/things/T/jobs/j1/update")
    });

    cloud
        .publish(NOTIFY_NEXT, &b"after restart"[..])
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, notify.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&message.payload[..], b"after restart");

    device.disconnect().await;
    broker.wait_for_line("clean disconnect", |l| l.contains("Client T disconnected."));
    assert_eq!(*device.state().borrow(), ConnectionState::Stopped);
    assert!(matches!(
        device.publish("x/y", &b""[..]).await,
        Err(mqtt::MqttError::Shutdown)
    ));
    cloud.disconnect().await;
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_root_ca_gives_a_clear_error_and_no_connection() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let mut broker = Mosquitto::start(&ca, dir.path(), free_port());
    let other_ca = TestCa::new();
    let wrong = other_ca.write_ca(dir.path(), "wrong-ca");

    let cfg = device_config(&ca, dir.path(), "T-wrong-ca", broker.port, &wrong);
    let (device, _task) = mqtt::spawn(MqttSettings::from_config(&cfg).unwrap());
    let reason = failed_attempt(&device, |r| r.starts_with("TLS")).await;
    assert_eq!(
        reason,
        format!(
            "TLS handshake with localhost:{} failed: invalid peer certificate: UnknownIssuer — \
             the broker's certificate is not signed by a trusted CA; check mqtt.root_ca",
            broker.port
        ),
    );
    assert!(!device.is_connected());
    device.disconnect().await;
    let log = broker.drain().join("\n");
    assert!(
        !log.contains("as T-wrong-ca"),
        "the broker never accepted it:\n{log}"
    );
}
