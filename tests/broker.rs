//! The embedded broker seen from real MQTT clients (rumqttc over mutual TLS with the ring
//! provider, as the daemon connects): routing of AWS Jobs topics including `$next`, the
//! per-thing policy, certificate checks, persistent sessions and restart on the same port.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iotjobs::local::broker::{Broker, BrokerConfig, BrokerError, BrokerEvent, BrokerHandle};
use iotjobs::local::pki::{client_tls_config, Pki, SERVICE_IDENTITY};
use rumqttc::{
    AsyncClient, Event, MqttOptions, NetworkOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use tokio::sync::{broadcast, mpsc};

/// Generous upper bound for anything we wait for; never a expected duration.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Ev {
    ConnAck {
        session_present: bool,
    },
    SubAck(Vec<SubscribeReasonCode>),
    PubAck,
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    /// The event loop ended with this error (no reconnect is attempted).
    Closed(String),
}

struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Ev>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Drops the connection without an MQTT DISCONNECT, like a crashed or unplugged device.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn next(&mut self) -> Ev {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("timed out waiting for a client event")
            .expect("event loop gone")
    }

    /// Waits for the CONNACK; panics on anything else.
    async fn connected(&mut self) -> bool {
        match self.next().await {
            Ev::ConnAck { session_present } => session_present,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match self.next().await {
                Ev::SubAck(codes) => return codes[0],
                Ev::Publish { .. } | Ev::PubAck => continue,
                other => panic!("expected SUBACK for {filter}, got {other:?}"),
            }
        }
    }

    async fn publish(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
        loop {
            match self.next().await {
                Ev::PubAck => return,
                Ev::Publish { .. } => continue,
                other => panic!("expected PUBACK for {topic}, got {other:?}"),
            }
        }
    }

    async fn message(&mut self) -> (String, String) {
        loop {
            match self.next().await {
                Ev::Publish { topic, payload } => {
                    return (topic, String::from_utf8(payload).unwrap())
                }
                Ev::PubAck | Ev::SubAck(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    async fn closed(&mut self) -> String {
        loop {
            match self.next().await {
                Ev::Closed(e) => return e,
                Ev::ConnAck { .. } => panic!("expected the connection to be refused, got CONNACK"),
                _ => continue,
            }
        }
    }
}

fn connect(
    port: u16,
    client_id: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    clean_session: bool,
) -> Client {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(clean_session);
    if let Some(cfg) = tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(cfg)));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let ev = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => Ev::ConnAck {
                    session_present: c.session_present,
                },
                Ok(Event::Incoming(Packet::SubAck(s))) => Ev::SubAck(s.return_codes),
                Ok(Event::Incoming(Packet::PubAck(_))) => Ev::PubAck,
                Ok(Event::Incoming(Packet::Publish(p))) => Ev::Publish {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                },
                // Like a real client: after DISCONNECT, stop and close the socket.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let _ = tx.send(Ev::Closed("disconnected".into()));
                    return;
                }
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(Ev::Closed(e.to_string()));
                    return;
                }
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
    Client { client, rx, task }
}

struct Setup {
    pki: Pki,
    broker: BrokerHandle,
    port: u16,
}

impl Setup {
    async fn new() -> Setup {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
            .try_init();
        let pki = Pki::ephemeral().unwrap();
        let broker = Broker::start(BrokerConfig::from_pki(&pki).unwrap().on_free_port())
            .await
            .unwrap();
        let port = broker.tls_addr().unwrap().port();
        Setup { pki, broker, port }
    }

    async fn device(&self, thing: &str) -> Client {
        self.device_with(thing, true).await
    }

    async fn device_with(&self, thing: &str, clean: bool) -> Client {
        let tls = self
            .pki
            .client_tls_config(&self.pki.issue_device_cert(thing).unwrap())
            .unwrap();
        let mut c = connect(self.port, thing, Some(tls), clean);
        c.connected().await;
        c
    }

    async fn service(&self) -> Client {
        self.connect_service(SERVICE_IDENTITY).await
    }

    /// A further session of the service identity (`iotjobs-local/service/<suffix>`).
    async fn service_as(&self, suffix: &str) -> Client {
        self.connect_service(&format!("{SERVICE_IDENTITY}/{suffix}"))
            .await
    }

    async fn connect_service(&self, client_id: &str) -> Client {
        let tls = self
            .pki
            .client_tls_config(&self.pki.issue_service_cert().unwrap())
            .unwrap();
        let mut c = connect(self.port, client_id, Some(tls), true);
        c.connected().await;
        c
    }
}

async fn broker_event(
    rx: &mut broadcast::Receiver<BrokerEvent>,
    want: impl Fn(&BrokerEvent) -> bool,
) -> BrokerEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let ev = rx.recv().await.expect("broker event stream");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("timed out waiting for a broker event")
}

#[tokio::test]
async fn jobs_topics_with_and_without_next_route_to_exact_and_wildcard_subscribers() {
    let s = Setup::new().await;
    let mut device = s.device("t1").await;
    let mut service = s.service().await;
    // Another session of the service identity (like the benchmark's observer).
    let mut observer = s.service_as("observer").await;

    for c in [&mut service, &mut observer] {
        assert_eq!(
            c.subscribe("$aws/things/+/jobs/#").await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
    }
    for filter in [
        "$aws/things/t1/jobs/notify-next",
        "$aws/things/t1/jobs/$next/get/accepted",
        "$aws/things/t1/jobs/+/update/accepted",
    ] {
        assert_eq!(
            device.subscribe(filter).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            "{filter}"
        );
    }

    // Service -> device: exact filters, one of them with `$next`, and a `+` that matches `$next`.
    for (topic, payload) in [
        ("$aws/things/t1/jobs/notify-next", "n1"),
        ("$aws/things/t1/jobs/$next/get/accepted", "g1"),
        ("$aws/things/t1/jobs/$next/update/accepted", "u1"),
    ] {
        service.publish(topic, payload).await;
        assert_eq!(
            device.message().await,
            (topic.to_string(), payload.to_string())
        );
        // Another wildcard subscriber sees it too, under the original topic.
        assert_eq!(
            observer.message().await,
            (topic.to_string(), payload.to_string())
        );
    }

    // Device -> service through `$aws/things/+/jobs/#`, including a `$next` level. The
    // service's own publications above matched its wildcard too, but were not delivered
    // back to it (No Local for the service's sessions): the first thing it receives is
    // the device's request.
    for topic in [
        "$aws/things/t1/jobs/$next/get",
        "$aws/things/t1/jobs/start-next",
        "$aws/things/t1/jobs/job-1/update",
    ] {
        device.publish(topic, "{}").await;
        assert_eq!(
            service.message().await,
            (topic.to_string(), "{}".to_string())
        );
    }

    // The broker needed no process-wide rustls provider: our clients name ring explicitly.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
}

#[tokio::test]
async fn a_thing_cannot_subscribe_to_or_publish_on_another_things_topics() {
    let s = Setup::new().await;
    let mut events = s.broker.events();
    let mut b = s.device("thing-b").await;
    assert_eq!(
        b.subscribe("$aws/things/thing-b/jobs/notify-next").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let mut a = s.device("thing-a").await;

    for filter in [
        "$aws/things/thing-b/jobs/notify-next",
        "$aws/things/+/jobs/notify-next",
        "$aws/things/#",
        "#",
        "$aws/things/thing-a\u{E000}/jobs/notify-next",
    ] {
        assert_eq!(
            a.subscribe(filter).await,
            SubscribeReasonCode::Failure,
            "{filter}"
        );
        let ev = broker_event(&mut events, |e| {
            matches!(e, BrokerEvent::SubscribeDenied { .. })
        })
        .await;
        assert_eq!(
            ev,
            BrokerEvent::SubscribeDenied {
                client_id: "thing-a".into(),
                topic_filter: filter.into()
            }
        );
    }
    // Its own topics still work after the refusals.
    assert_eq!(
        a.subscribe("$aws/things/thing-a/jobs/notify-next").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    // Publishing on B's topic: dropped, and A is disconnected (as AWS IoT Core does).
    a.client
        .publish(
            "$aws/things/thing-b/jobs/notify-next",
            QoS::AtLeastOnce,
            false,
            b"forged".to_vec(),
        )
        .await
        .unwrap();
    a.closed().await;
    let ev = broker_event(&mut events, |e| {
        matches!(e, BrokerEvent::PublishDenied { .. })
    })
    .await;
    assert_eq!(
        ev,
        BrokerEvent::PublishDenied {
            client_id: "thing-a".into(),
            topic: "$aws/things/thing-b/jobs/notify-next".into()
        }
    );

    // A later, legitimate message is the first thing B receives: the forged one never came.
    let mut service = s.service().await;
    service
        .publish("$aws/things/thing-b/jobs/notify-next", "genuine")
        .await;
    assert_eq!(
        b.message().await,
        (
            "$aws/things/thing-b/jobs/notify-next".to_string(),
            "genuine".to_string()
        )
    );
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused() {
    let s = Setup::new().await;
    let mut events = s.broker.events();

    // TLS without a client certificate.
    let no_cert = client_tls_config(s.pki.ca_cert_pem(), None).unwrap();
    let e = connect(s.port, "t1", Some(no_cert), true).closed().await;
    assert!(!e.is_empty());

    // A certificate for the same thing name from another CA.
    let other = Pki::ephemeral().unwrap();
    let foreign = other.issue_device_cert("t1").unwrap();
    let cfg = client_tls_config(
        s.pki.ca_cert_pem(),
        Some((&foreign.certificate_pem, &foreign.key_pair.private_key)),
    )
    .unwrap();
    connect(s.port, "t1", Some(cfg), true).closed().await;

    // Plain MQTT on the TLS port.
    connect(s.port, "t1", None, true).closed().await;

    // A valid certificate, but the client id is another thing's.
    let cfg = s
        .pki
        .client_tls_config(&s.pki.issue_device_cert("t1").unwrap())
        .unwrap();
    let e = connect(s.port, "t2", Some(cfg.clone()), true)
        .closed()
        .await;
    assert!(e.contains("NotAuthorized"), "{e}");
    let ev = broker_event(&mut events, |e| {
        matches!(e, BrokerEvent::ConnectRefused { .. })
    })
    .await;
    assert!(
        matches!(ev, BrokerEvent::ConnectRefused { ref client_id, .. } if client_id == "t2"),
        "{ev:?}"
    );

    // Nor may a device certificate claim the service's client id.
    let e = connect(s.port, SERVICE_IDENTITY, Some(cfg.clone()), true)
        .closed()
        .await;
    assert!(e.contains("NotAuthorized"), "{e}");

    // None of the refused clients got a session; the right client id connects fine.
    let mut ok = connect(s.port, "t1", Some(cfg), true);
    ok.connected().await;
    assert_eq!(s.broker.session_count().await, 1);
}

#[tokio::test]
async fn persistent_session_gets_qos1_messages_published_while_offline() {
    let s = Setup::new().await;
    let mut events = s.broker.events();
    let topic = "$aws/things/t1/jobs/notify-next";

    let mut device = s.device_with("t1", false).await;
    device.subscribe(topic).await;
    device.client.disconnect().await.unwrap();
    let ev = broker_event(&mut events, |e| {
        matches!(e, BrokerEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        ev,
        BrokerEvent::Disconnected {
            client_id: "t1".into(),
            clean: true
        }
    );

    let mut service = s.service().await;
    service.publish(topic, "while-offline").await;

    let tls = s
        .pki
        .client_tls_config(&s.pki.issue_device_cert("t1").unwrap())
        .unwrap();
    let mut device = connect(s.port, "t1", Some(tls), false);
    assert!(device.connected().await, "session_present");
    assert_eq!(
        device.message().await,
        (topic.to_string(), "while-offline".to_string())
    );
}

#[tokio::test]
async fn a_ca_reloaded_from_disk_issues_bundles_the_broker_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path().join("pki")).unwrap();
    let broker = Broker::start(BrokerConfig::from_pki(&pki).unwrap().on_free_port())
        .await
        .unwrap();
    let port = broker.tls_addr().unwrap().port();

    // Another process (e.g. `iotjobs-local create-thing`) loads the same CA and writes files.
    let reloaded = Pki::load_or_create(tmp.path().join("pki")).unwrap();
    let bundle = reloaded
        .write_device_bundle(tmp.path().join("t1"), "t1")
        .unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let (ca, cert, key) = (
        read(&bundle.root_ca_path),
        read(&bundle.cert_path),
        read(&bundle.key_path),
    );
    let tls = client_tls_config(&ca, Some((&cert, &key))).unwrap();
    let mut device = connect(port, "t1", Some(tls), true);
    device.connected().await;
    assert_eq!(
        device.subscribe("$aws/things/t1/jobs/notify-next").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn a_client_offering_aws_alpn_connects() {
    // iotjobsd on port 443 offers ALPN `x-amzn-mqtt-ca`, as the AWS IoT Device Client does;
    // the local broker selects no protocol, which TLS allows.
    let s = Setup::new().await;
    let cfg = s
        .pki
        .client_tls_config(&s.pki.issue_device_cert("t1").unwrap())
        .unwrap();
    let mut cfg = (*cfg).clone();
    cfg.alpn_protocols = vec![b"x-amzn-mqtt-ca".to_vec()];
    let mut device = connect(s.port, "t1", Some(Arc::new(cfg)), true);
    device.connected().await;
}

#[tokio::test]
async fn abrupt_disconnect_is_reported_as_not_clean() {
    let s = Setup::new().await;
    let mut events = s.broker.events();
    let device = s.device("t1").await;
    broker_event(&mut events, |e| matches!(e, BrokerEvent::Connected { .. })).await;
    device.kill().await;
    let ev = broker_event(&mut events, |e| {
        matches!(e, BrokerEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        ev,
        BrokerEvent::Disconnected {
            client_id: "t1".into(),
            clean: false
        }
    );
}

#[tokio::test]
async fn broker_stops_and_restarts_on_the_same_port() {
    let pki = Pki::ephemeral().unwrap();
    let broker = Broker::start(BrokerConfig::from_pki(&pki).unwrap().on_free_port())
        .await
        .unwrap();
    let addr = broker.tls_addr().unwrap();
    let tls = pki
        .client_tls_config(&pki.issue_device_cert("t1").unwrap())
        .unwrap();
    let mut device = connect(addr.port(), "t1", Some(tls.clone()), true);
    device.connected().await;

    broker.shutdown().await;
    // The open connection is closed by the shutdown...
    device.closed().await;
    // ...and nobody listens on the port any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let mut cfg = BrokerConfig::from_pki(&pki).unwrap();
    cfg.tls_addr = Some(addr);
    let broker = Broker::start(cfg).await.unwrap();
    assert_eq!(broker.tls_addr(), Some(addr));
    let mut device = connect(addr.port(), "t1", Some(tls), true);
    assert!(
        !device.connected().await,
        "a fresh broker has no old session"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn plain_tcp_listener_applies_the_same_policy_by_client_id() {
    let pki = Pki::ephemeral().unwrap();
    let mut cfg = BrokerConfig::from_pki(&pki).unwrap();
    cfg.tls_addr = None;
    cfg.tcp_addr = Some("127.0.0.1:0".parse().unwrap());
    let broker = Broker::start(cfg).await.unwrap();
    assert_eq!(broker.tls_addr(), None);
    let port = broker.tcp_addr().unwrap().port();

    let mut device = connect(port, "t1", None, true);
    device.connected().await;
    assert_eq!(
        device
            .subscribe("$aws/things/t1/jobs/$next/get/accepted")
            .await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        device.subscribe("$aws/things/t2/jobs/notify-next").await,
        SubscribeReasonCode::Failure
    );

    let mut service = connect(port, &format!("{SERVICE_IDENTITY}/tests"), None, true);
    service.connected().await;
    service
        .publish("$aws/things/t1/jobs/$next/get/accepted", "x")
        .await;
    assert_eq!(
        device.message().await,
        (
            "$aws/things/t1/jobs/$next/get/accepted".to_string(),
            "x".to_string()
        )
    );

    assert!(connect(port, "not/a/thing", None, true)
        .closed()
        .await
        .contains("NotAuthorized"));
}

#[tokio::test]
async fn start_reports_configuration_errors() {
    let pki = Pki::ephemeral().unwrap();
    let mut cfg = BrokerConfig::from_pki(&pki).unwrap();
    cfg.tls_addr = None;
    assert!(matches!(
        Broker::start(cfg).await,
        Err(BrokerError::NoListener)
    ));

    // A key that does not belong to the certificate.
    let mut cfg = BrokerConfig::from_pki(&pki).unwrap().on_free_port();
    cfg.server_key_pem = pki.issue_device_cert("t1").unwrap().key_pair.private_key;
    assert!(matches!(
        Broker::start(cfg).await,
        Err(BrokerError::Listen { .. })
    ));

    // A port that is taken.
    let running = Broker::start(BrokerConfig::from_pki(&pki).unwrap().on_free_port())
        .await
        .unwrap();
    let mut cfg = BrokerConfig::from_pki(&pki).unwrap();
    cfg.tls_addr = running.tls_addr();
    let err = Broker::start(cfg)
        .await
        .err()
        .expect("second bind must fail");
    assert!(
        err.to_string()
            .contains(&running.tls_addr().unwrap().to_string()),
        "{err}"
    );
}

/// rmqtt 0.24 still refuses `$` at a level after the first, so `router::EscapingRouter` is
/// still needed. If this fails after an rmqtt upgrade, the wrapper may be removable.
#[tokio::test]
async fn stock_rmqtt_still_refuses_dollar_levels_after_the_first() {
    use rmqtt::router::{DefaultRouter, Router};
    use rmqtt::types::{Id, SubscriptionOptions};

    let next = "$aws/things/t1/jobs/$next/get/accepted";
    assert!(rmqtt::topic::Topic::from_str(next).is_err());
    assert!(rmqtt::topic::Topic::from_str("$aws/things/t1/jobs/notify-next").is_ok());

    let id = Id::new(1, 1, None, None, "t1".into(), None);
    let stock = DefaultRouter::new(None);
    assert!(stock
        .add(next, id.clone(), SubscriptionOptions::default())
        .await
        .is_err());
    let escaping = iotjobs::local::broker::router::EscapingRouter(DefaultRouter::new(None));
    escaping
        .add(next, id.clone(), SubscriptionOptions::default())
        .await
        .unwrap();
    let matched = escaping.matches(id, &next.into()).await.unwrap();
    assert_eq!(matched.values().map(|rels| rels.len()).sum::<usize>(), 1);
}

#[tokio::test]
async fn a_burst_of_requests_waits_for_a_busy_service_instead_of_being_dropped() {
    // More than a device session's queue (1,000) plus its in-flight window (16): requests
    // the service has not read yet must wait in the broker, not be dropped.
    const BURST: usize = 3000;
    let s = Setup::new().await;
    let mut device = s.device("t1").await;
    let tls = s
        .pki
        .client_tls_config(&s.pki.issue_service_cert().unwrap())
        .unwrap();
    let mut opts = MqttOptions::new(SERVICE_IDENTITY, "127.0.0.1", s.port);
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (service, mut eventloop) = AsyncClient::new(opts, 16);
    service
        .subscribe("$aws/things/+/jobs/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                return;
            }
        }
    })
    .await
    .expect("no SUBACK");

    // The service reads nothing while the burst arrives (each publish is PUBACKed by the
    // broker, so all of them are in the broker's hands before the service reads one).
    for i in 0..BURST {
        device
            .publish("$aws/things/t1/jobs/start-next", &format!("{i}"))
            .await;
    }
    let mut got = Vec::with_capacity(BURST);
    tokio::time::timeout(WAIT, async {
        while got.len() < BURST {
            if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await.unwrap() {
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the service got {} of {BURST} requests", got.len()));
    let want: Vec<String> = (0..BURST).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every request, in order");
}
