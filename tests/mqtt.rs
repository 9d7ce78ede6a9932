//! The MQTT connection against the embedded rmqtt broker (in-process, port 0) over
//! mutual TLS with certificates made by the local PKI: routing of `$aws` topics,
//! publish completion, policy refusals, a wrong CA, clean disconnect, and reconnection
//! with working subscriptions after the broker restarts on the same port.

mod common;

use common::*;
use iotjobs::local::broker::BrokerEvent;
use iotjobs::mqtt::{self, ConnectionState, MqttError, MqttEvent, MqttHandle, MqttSettings};

const NOTIFY_NEXT: &str = "$aws/things/T/jobs/notify-next";

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

    let reason = failed_attempt(&device, |_| true).await;
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
    let reason = failed_attempt(&device, |_| true).await;
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

/// A one-connection MQTT 3.1.1 broker over TLS that follows a script, on a std thread,
/// so a test can order what the broker sends relative to the client's DISCONNECT.
mod scripted {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    use rustls::{ServerConfig, ServerConnection, StreamOwned};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::{TestCa, WAIT};

    pub type Tls = StreamOwned<ServerConnection, TcpStream>;

    pub fn listen(ca: &TestCa) -> (TcpListener, Arc<ServerConfig>) {
        let issued = ca.pki.issue_loopback_server_cert().unwrap();
        let certs = CertificateDer::pem_slice_iter(issued.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(issued.key_pair.private_key.as_bytes()).unwrap();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        (listener, Arc::new(config))
    }

    pub fn accept(listener: &TcpListener, config: Arc<ServerConfig>) -> Tls {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        StreamOwned::new(ServerConnection::new(config).unwrap(), tcp)
    }

    /// One packet: (first header byte, body).
    pub fn read_packet(tls: &mut Tls) -> (u8, Vec<u8>) {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).unwrap();
        let header = byte[0];
        let (mut len, mut shift) = (0usize, 0);
        loop {
            tls.read_exact(&mut byte).unwrap();
            len |= usize::from(byte[0] & 0x7f) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        tls.read_exact(&mut body).unwrap();
        (header, body)
    }

    /// The SUBACK (every filter granted QoS 1) for a SUBSCRIBE body.
    pub fn suback_for(subscribe: &[u8]) -> Vec<u8> {
        let mut filters = 0u8;
        let mut at = 2;
        while at < subscribe.len() {
            let len = usize::from(u16::from_be_bytes([subscribe[at], subscribe[at + 1]]));
            at += 2 + len + 1;
            filters += 1;
        }
        let mut packet = vec![0x90, 2 + filters, subscribe[0], subscribe[1]];
        packet.extend(std::iter::repeat_n(1u8, usize::from(filters)));
        packet
    }

    /// What the client still sent (raw TCP) until it closed, and the socket error (a
    /// reset) if it did not close in order.
    pub fn read_to_end(tls: Tls) -> (Vec<u8>, Option<std::io::Error>) {
        let mut tcp = tls.sock;
        let mut rest = Vec::new();
        let mut buf = [0u8; 4096];
        let error = loop {
            match tcp.read(&mut buf) {
                Ok(0) => break socket_error(&tcp),
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(err) => break Some(err),
            }
        };
        (rest, error)
    }

    /// A reset that arrived after the peer's FIN is not reported by read(); SO_ERROR has it.
    fn socket_error(tcp: &TcpStream) -> Option<std::io::Error> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket fd and an int-sized out buffer, as SO_ERROR requires.
        let rc = unsafe {
            libc::getsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        (value != 0).then(|| std::io::Error::from_raw_os_error(value))
    }
}

/// A log writer that signals `tx` for every line containing `needle`: a test waits for
/// what a task did (it logs it) instead of guessing when it ran.
#[derive(Clone)]
struct LogSignal {
    needle: &'static str,
    tx: std::sync::mpsc::Sender<()>,
}

impl std::io::Write for LogSignal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer writes each event as one line in one call.
        if String::from_utf8_lossy(buf).contains(self.needle) {
            let _ = self.tx.send(());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSignal {
    type Writer = LogSignal;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Regression: the daemon sent DISCONNECT and closed its socket while the broker still
/// owed it a SUBACK (SIGTERM during the subscription made on connect). The SUBACK then
/// hit a closed socket and drew a TCP reset, and mosquitto < 2.0.22, which fails that
/// write before reading the DISCONNECT, dropped the client "due to out of memory" (1 run
/// in 3 of `sigterm_gives_mosquitto_a_clean_disconnect`). The client must wait for the
/// acks it is owed, then send DISCONNECT, and close without a reset.
#[tokio::test]
async fn disconnect_waits_for_owed_acks_so_the_broker_sees_a_clean_close() {
    let s = Setup::new();
    let (listener, config) = scripted::listen(&s.ca);
    let port = listener.local_addr().unwrap().port();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let broker = std::thread::spawn(move || {
        use std::io::Write;
        let mut tls = scripted::accept(&listener, config);
        let (connect, _) = scripted::read_packet(&mut tls);
        assert_eq!(connect >> 4, 1, "CONNECT first");
        tls.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
        tls.flush().unwrap();
        let (subscribe, body) = scripted::read_packet(&mut tls);
        assert_eq!(subscribe, 0x82, "SUBSCRIBE after CONNACK");
        subscribed_tx.send(()).unwrap();
        // The SUBACK is held back until the client has taken the request to stop.
        go.recv_timeout(WAIT)
            .expect("the client never logged that it is disconnecting");
        let sent = tls
            .write_all(&scripted::suback_for(&body))
            .and_then(|()| tls.flush());
        let (next, _) = scripted::read_packet(&mut tls);
        let (after, error) = scripted::read_to_end(tls);
        (sent.err(), next, after, error)
    });

    let device = s.device("T", port);
    let _notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    tokio::time::timeout(WAIT, subscribed)
        .await
        .unwrap()
        .unwrap();
    // The broker sends the SUBACK only once the connection task has taken the stop
    // request (it logs that it is disconnecting), so the request is always pending
    // with a SUBACK owed. The test runtime has one thread: the task logs on this one.
    let logs = tracing_subscriber::fmt()
        .with_writer(LogSignal {
            needle: "disconnecting from the MQTT broker",
            tx: go_tx,
        })
        .with_ansi(false)
        .finish();
    let _logs = tracing::subscriber::set_default(logs);
    tokio::time::timeout(WAIT, device.disconnect())
        .await
        .unwrap();
    let (suback_error, next, after, error) = tokio::task::spawn_blocking(move || broker.join())
        .await
        .unwrap()
        .unwrap();
    assert!(
        suback_error.is_none(),
        "the client was gone before its SUBACK: {suback_error:?}"
    );
    assert_eq!(next, 0xe0, "DISCONNECT after the SUBACK");
    assert_eq!(after, b"", "the client sent bytes after DISCONNECT");
    assert!(
        error.is_none(),
        "the client reset the connection instead of closing it: {error:?}"
    );
}

/// A broker can lose a client's subscriptions while the connection stays up (seen with
/// rmqtt when a restarted daemon took over its own persistent session: PUBACKs kept
/// coming, nothing was delivered). `refresh_subscriptions` sends every registered filter
/// again on the live connection and completes on the SUBACK.
#[tokio::test]
async fn refresh_subscriptions_resends_every_registered_filter_on_the_live_connection() {
    let s = Setup::new();
    let (listener, config) = scripted::listen(&s.ca);
    let port = listener.local_addr().unwrap().port();
    let broker = std::thread::spawn(move || {
        use std::io::Write;
        let mut tls = scripted::accept(&listener, config);
        let (connect, _) = scripted::read_packet(&mut tls);
        assert_eq!(connect >> 4, 1, "CONNECT first");
        tls.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
        tls.flush().unwrap();
        let mut subscribes = Vec::new();
        for _ in 0..2 {
            let (kind, body) = scripted::read_packet(&mut tls);
            assert_eq!(kind, 0x82, "SUBSCRIBE");
            tls.write_all(&scripted::suback_for(&body)).unwrap();
            tls.flush().unwrap();
            subscribes.push(body);
        }
        let (next, _) = scripted::read_packet(&mut tls);
        assert_eq!(next, 0xe0, "DISCONNECT");
        subscribes
    });

    let device = s.device("T", port);
    let mut events = device.events();
    let _notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    assert!(!connected(&mut events).await);
    tokio::time::timeout(WAIT, device.refresh_subscriptions())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, device.disconnect())
        .await
        .unwrap();
    let subscribes = tokio::task::spawn_blocking(move || broker.join())
        .await
        .unwrap()
        .unwrap();
    // The same filter both times: on connect, then on refresh (packet ids differ).
    let filter = |body: &[u8]| String::from_utf8_lossy(&body[2..]).into_owned();
    assert!(filter(&subscribes[0]).contains(NOTIFY_NEXT));
    assert_eq!(filter(&subscribes[0]), filter(&subscribes[1]));
}

/// `reconnect` replaces a connection whose broker acknowledges but no longer delivers:
/// DISCONNECT on the live connection, then a new CONNECT with the filters subscribed
/// again.
#[tokio::test]
async fn reconnect_sends_disconnect_then_connects_and_subscribes_again() {
    let s = Setup::new();
    let (listener, config) = scripted::listen(&s.ca);
    let port = listener.local_addr().unwrap().port();
    let broker = std::thread::spawn(move || {
        use std::io::Write;
        let mut seen = Vec::new();
        for _ in 0..2 {
            let mut tls = scripted::accept(&listener, config.clone());
            let (connect, _) = scripted::read_packet(&mut tls);
            assert_eq!(connect >> 4, 1, "CONNECT first");
            tls.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
            tls.flush().unwrap();
            let (kind, body) = scripted::read_packet(&mut tls);
            assert_eq!(kind, 0x82, "SUBSCRIBE");
            tls.write_all(&scripted::suback_for(&body)).unwrap();
            tls.flush().unwrap();
            let (next, _) = scripted::read_packet(&mut tls);
            seen.push(next);
            // The broker closes the socket after DISCONNECT, as MQTT says.
        }
        seen
    });

    let device = s.device("T", port);
    let mut events = device.events();
    let _notify = device.subscribe([NOTIFY_NEXT]).await.unwrap();
    assert!(!connected(&mut events).await);
    device.reconnect().await.unwrap();
    // Connected again, with the subscription made again on the new connection.
    connected(&mut events).await;
    tokio::time::timeout(WAIT, device.disconnect())
        .await
        .unwrap();
    let seen = tokio::task::spawn_blocking(move || broker.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, [0xe0, 0xe0], "DISCONNECT ends each connection");
}
