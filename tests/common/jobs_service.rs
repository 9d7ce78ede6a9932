//! iotjobs-local's Jobs service in-process on the embedded mutual-TLS broker, for tests
//! that run a real `iotjobsd` against it: one thing registered, an observer client (the
//! service identity may subscribe to everything) on the thing's update requests and
//! replies, and the broker stopped and restarted on the same address.
//!
//! The service's own record of an execution is read back through its command channel.

use std::sync::Arc;
use std::time::Duration;

use iotjobs::local::broker::{Broker, BrokerConfig, BrokerHandle};
use iotjobs::local::clock::SystemClock;
use iotjobs::local::pki::{Pki, SERVICE_IDENTITY};
use iotjobs::local::service::task::{self, BrokerConnection, Command as Svc, ServiceHandle};
use iotjobs::local::service::{JobsService, NewJob, NewThing, ServiceConfig};
use iotjobs::local::store::{ExecutionRecord, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::device::DAEMON_WAIT;

pub struct InProcessService {
    pub pki: Pki,
    pub service: ServiceHandle,
    /// (topic, payload) of every update request and reply for the thing, in order.
    pub observed: mpsc::UnboundedReceiver<(String, Value)>,
    pub thing: String,
    shutdown: CancellationToken,
    broker: Option<BrokerHandle>,
    broker_addr: std::net::SocketAddr,
}

impl Drop for InProcessService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl InProcessService {
    /// Broker, service (subscribed), `thing` registered, observer subscribed.
    pub async fn start(thing: &str) -> InProcessService {
        let pki = Pki::ephemeral().unwrap();
        let broker = Broker::start(BrokerConfig::from_pki(&pki).unwrap().on_free_port())
            .await
            .unwrap();
        let broker_addr = broker.tls_addr().unwrap();
        let port = broker_addr.port();
        let shutdown = CancellationToken::new();
        let tls = pki
            .client_tls_config(&pki.issue_service_cert().unwrap())
            .unwrap();
        let mut svc = task::spawn(
            JobsService::new(Store::open_in_memory().unwrap(), ServiceConfig::default()),
            Arc::new(SystemClock),
            Some(BrokerConnection {
                host: "127.0.0.1".into(),
                port,
                client_id: SERVICE_IDENTITY.into(),
                tls: Some(tls.clone()),
            }),
            shutdown.clone(),
        );
        tokio::time::timeout(DAEMON_WAIT, svc.subscribed.wait_for(|s| *s))
            .await
            .expect("service never subscribed")
            .unwrap();
        let service = svc.handle.clone();
        service
            .request(|r| {
                Svc::CreateThing(
                    NewThing {
                        name: thing.into(),
                        ..Default::default()
                    },
                    r,
                )
            })
            .await
            .unwrap();
        let observed = observe(port, tls, thing).await;
        InProcessService {
            pki,
            service,
            observed,
            thing: thing.into(),
            shutdown,
            broker: Some(broker),
            broker_addr,
        }
    }

    /// The broker's TLS port (for the device's configuration).
    pub fn port(&self) -> u16 {
        self.broker_addr.port()
    }

    pub async fn stop_broker(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    /// Starts a fresh broker on the same address (no session survives).
    pub async fn restart_broker(&mut self) {
        let mut cfg = BrokerConfig::from_pki(&self.pki).unwrap();
        cfg.tls_addr = Some(self.broker_addr);
        self.broker = Some(Broker::start(cfg).await.unwrap());
    }

    /// Creates a job for the thing.
    pub async fn create_job(&self, job_id: &str, document: Value) {
        let job = NewJob {
            job_id: job_id.into(),
            targets: vec![format!(
                "arn:aws:iot:us-east-1:123456789012:thing/{}",
                self.thing
            )],
            document: document.to_string(),
            ..Default::default()
        };
        self.service
            .request(|r| Svc::CreateJob(Box::new(job), r))
            .await
            .unwrap();
    }

    /// The service's record of the thing's (latest) execution of `job_id`.
    pub async fn execution(&self, job_id: &str) -> ExecutionRecord {
        self.service
            .request(|r| Svc::DescribeJobExecution {
                job_id: job_id.into(),
                thing: self.thing.clone(),
                execution_number: None,
                reply: r,
            })
            .await
            .unwrap()
    }
}

/// An observer on every update request and reply of the thing; it subscribes again
/// after every reconnect (a restarted broker keeps no session).
async fn observe(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    thing: &str,
) -> mpsc::UnboundedReceiver<(String, Value)> {
    let mut opts = MqttOptions::new(format!("{SERVICE_IDENTITY}/observer"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(512 * 1024, 512 * 1024);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let filter = format!("$aws/things/{thing}/jobs/+/update/#");
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let payload = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send((p.topic, payload)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(DAEMON_WAIT, subscribed_rx)
        .await
        .expect("observer never subscribed")
        .unwrap();
    rx
}

/// A `runHandler` step.
pub fn handler_step(name: &str, handler: &str, args: &[&str]) -> Value {
    json!({"action": {"name": name, "type": "runHandler",
        "input": {"handler": handler, "args": args, "path": "default"}}})
}

/// A job document of `steps`.
pub fn doc(steps: Vec<Value>) -> Value {
    json!({"version": "1.0", "steps": steps})
}
