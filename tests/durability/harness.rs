//! The durability tests' stack: iotjobs-local's Jobs service on the embedded mutual-TLS
//! broker, an observer client counting what the service accepted, and a real `iotjobsd`
//! that tests kill (-9), stop (SIGTERM) and start again over the same state directory.
#![allow(dead_code)] // the soak test and the acceptance tests use different parts

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotjobs::jobs::journal::{Journal, Loaded};
use iotjobs::local::broker::{Broker, BrokerConfig, BrokerHandle};
use iotjobs::local::clock::SystemClock;
use iotjobs::local::pki::{Pki, SERVICE_IDENTITY};
use iotjobs::local::service::task::{self, BrokerConnection, Command as Svc, ServiceHandle};
use iotjobs::local::service::{JobsService, NewJob, NewThing, ServiceConfig};
use iotjobs::local::store::Store;
use nix::fcntl::{Flock, FlockArg};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Generous upper bound for anything a test waits for; never an expected duration.
pub const WAIT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_iotjobsd");
pub const THING: &str = "gateway-1";
pub const TERMINAL: &[&str] = &["SUCCEEDED", "FAILED", "REJECTED"];

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub service: ServiceHandle,
    shutdown: CancellationToken,
    observed: mpsc::UnboundedReceiver<(String, Value)>,
    /// Every update request and reply seen so far: (job id, topic suffix, payload).
    pub seen: Vec<(String, String, Value)>,
    daemon: Option<Child>,
    pki: Pki,
    broker: Option<BrokerHandle>,
    broker_addr: std::net::SocketAddr,
    config: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        self.shutdown.cancel();
    }
}

impl Stack {
    /// Service, broker, observer and the daemon's files (no daemon yet). `jobs` holds
    /// extra lines for the daemon's `[jobs]` section.
    pub async fn start(jobs: &str) -> Stack {
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
        tokio::time::timeout(WAIT, svc.subscribed.wait_for(|s| *s))
            .await
            .expect("service never subscribed")
            .unwrap();
        let service = svc.handle.clone();
        service
            .request(|r| {
                Svc::CreateThing(
                    NewThing {
                        name: THING.into(),
                        ..Default::default()
                    },
                    r,
                )
            })
            .await
            .unwrap();
        let observed = observe(port, tls).await;

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["handlers", "state", "run"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(root.join("boot_id"), "boot-1\n").unwrap();
        let bundle = pki.write_device_bundle(root.join("pki"), THING).unwrap();
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[mqtt]
endpoint = "localhost"
port = {port}
thing_name = "{THING}"
cert = "{cert}"
key = "{key}"
root_ca = "{ca}"
reconnect_min_secs = 1
reconnect_max_secs = 1

[jobs]
handler_dir = "{root}/handlers"
kill_grace_secs = 1
{jobs}

[log]
file = "{root}/iotjobsd.log"
level = "debug"
rotation = "never"

[paths]
state_dir = "{root}/state"
runtime_dir = "{root}/run"
boot_id_file = "{root}/boot_id"
"#,
                cert = bundle.cert_path.display(),
                key = bundle.key_path.display(),
                ca = bundle.root_ca_path.display(),
                root = root.display(),
            ),
        )
        .unwrap();
        Stack {
            dir,
            service,
            shutdown,
            observed,
            seen: Vec::new(),
            daemon: None,
            pki,
            broker: Some(broker),
            broker_addr,
            config,
        }
    }

    /// Starts `iotjobsd`, optionally with a test failpoint.
    pub fn spawn_daemon(&mut self, failpoint: Option<&str>) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .env("IOTJOBSD_CONFIG_DIR", self.root())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .env_remove("IOTJOBS_TEST_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // What a daemon that could not start says (before its log file exists).
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path("daemon.stderr"))
                    .unwrap(),
            );
        if let Some(failpoint) = failpoint {
            cmd.env("IOTJOBS_TEST_FAILPOINT", failpoint);
        }
        self.daemon = Some(cmd.spawn().unwrap());
    }

    /// `kill -9` of the daemon, then what systemd does before a restart: wait until none
    /// of its processes is left. A step being spawned at the kill (forked, not yet
    /// exec'ed) holds a copy of the daemon's descriptors, its single-instance lock among
    /// them, for that moment; a daemon started then would find the lock held and exit.
    pub fn kill_daemon(&mut self) {
        let mut daemon = self.daemon.take().expect("no daemon");
        let _ = daemon.kill();
        let _ = daemon.wait();
        let lock = self.path("run/iotjobsd.lock");
        let deadline = Instant::now() + WAIT;
        loop {
            let Ok(file) = std::fs::File::open(&lock) else {
                return;
            };
            if Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "the instance lock stayed held");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let pid = self.daemon.as_ref().expect("no daemon").id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// SIGTERM; returns the exit status.
    pub async fn stop_daemon(&mut self) -> ExitStatus {
        self.sigterm();
        self.daemon_exit().await
    }

    /// Waits for the daemon to exit on its own (a failpoint, a SIGTERM sent elsewhere).
    pub async fn daemon_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let daemon = self.daemon.as_mut().expect("no daemon");
            if let Some(status) = daemon.try_wait().unwrap() {
                self.daemon = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_broker(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    /// A fresh broker on the same address (no session survives).
    pub async fn restart_broker(&mut self) {
        let mut cfg = BrokerConfig::from_pki(&self.pki).unwrap();
        cfg.tls_addr = Some(self.broker_addr);
        self.broker = Some(Broker::start(cfg).await.unwrap());
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    pub fn handler(&self, name: &str, body: &str) {
        let path = self.root().join("handlers").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `append.sh WORD`: appends WORD to the `runs` file (what ran, in order).
    pub fn append_handler(&self) {
        self.handler(
            "append.sh",
            &format!("echo \"$2\" >> {}", self.path("runs").display()),
        );
    }

    /// Lines of the `runs` file.
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("runs"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub async fn create_job(&self, job_id: &str, document: Value) {
        let job = NewJob {
            job_id: job_id.into(),
            targets: vec![format!("arn:aws:iot:us-east-1:123456789012:thing/{THING}")],
            document: document.to_string(),
            ..Default::default()
        };
        self.service
            .request(|r| Svc::CreateJob(Box::new(job), r))
            .await
            .unwrap();
    }

    /// Moves what the observer saw so far into `seen`.
    pub fn drain(&mut self) {
        let prefix = format!("$aws/things/{THING}/jobs/");
        while let Ok((topic, payload)) = self.observed.try_recv() {
            if let Some((job, suffix)) = topic
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
            {
                self.seen
                    .push((job.to_string(), suffix.to_string(), payload));
            }
        }
    }

    /// Terminal statuses the service accepted for `job_id` (its `update/accepted` replies
    /// carry the execution state).
    pub fn accepted_terminals(&mut self, job_id: &str) -> usize {
        self.drain();
        self.seen
            .iter()
            .filter(|(job, suffix, payload)| {
                job == job_id
                    && suffix == "update/accepted"
                    && payload["executionState"]["status"]
                        .as_str()
                        .is_some_and(|s| TERMINAL.contains(&s))
            })
            .count()
    }

    /// Waits until the service records a terminal status for `job_id`; returns the
    /// execution's status and statusDetails.
    pub async fn wait_terminal(&mut self, job_id: &str) -> (String, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, details) = self.service_execution(job_id).await;
            if TERMINAL.contains(&status.as_str()) {
                // Let the accepted reply reach the observer too.
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.drain();
                return (status, details);
            }
            assert!(
                Instant::now() < deadline,
                "{job_id} never reached a terminal status (now {status}); daemon log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The service's record of the execution: status and statusDetails.
    pub async fn service_execution(&self, job_id: &str) -> (String, Value) {
        let record = self
            .service
            .request(|r| Svc::DescribeJobExecution {
                job_id: job_id.into(),
                thing: THING.into(),
                execution_number: None,
                reply: r,
            })
            .await
            .unwrap();
        (
            record.status().as_str().to_string(),
            serde_json::to_value(&record.exec.status_details).unwrap(),
        )
    }

    /// The last record of the daemon's journal, decoded (None when there is none). Read
    /// as the daemon reads it at start: only while no daemon runs.
    pub fn journal(&self) -> Option<Value> {
        let mut journal = Journal::open(&self.path("state")).unwrap();
        match journal.load() {
            Loaded::Record { record, .. } => Some(serde_json::to_value(&*record).unwrap()),
            Loaded::Empty => None,
            Loaded::Corrupt { reason, .. } => panic!("the journal is corrupt: {reason}"),
        }
    }

    /// The daemon's log file, then what daemons wrote to stderr, if anything.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.path("iotjobsd.log")).unwrap_or_default();
        match std::fs::read_to_string(self.path("daemon.stderr")) {
            Ok(stderr) if !stderr.trim().is_empty() => format!("{log}\n--- stderr:\n{stderr}"),
            _ => log,
        }
    }
}

/// An observer on every update request and reply of the thing; it subscribes again
/// after every reconnect (a restarted broker keeps no session).
async fn observe(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> mpsc::UnboundedReceiver<(String, Value)> {
    let mut opts = MqttOptions::new(format!("{SERVICE_IDENTITY}/observer"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(512 * 1024, 512 * 1024);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let filter = format!("$aws/things/{THING}/jobs/+/update/#");
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
    tokio::time::timeout(WAIT, subscribed_rx)
        .await
        .expect("observer never subscribed")
        .unwrap();
    rx
}

pub fn handler_step(name: &str, handler: &str, args: &[&str]) -> Value {
    json!({"action": {"name": name, "type": "runHandler",
        "input": {"handler": handler, "args": args, "path": "default"}}})
}

pub fn doc(steps: Vec<Value>) -> Value {
    json!({"version": "1.0", "steps": steps})
}

/// Waits until `pred` holds, polling; panics after [`WAIT`].
pub async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
