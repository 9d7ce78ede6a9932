//! `iotjobs-local serve` as a child process (so its memory is its own), its control plane
//! client, and an observer: an MQTT client with the service identity (which may subscribe
//! to every thing's topics) that timestamps what it sees on the broker.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use iotjobs::local::control::client::{enc, ApiClient};
use iotjobs::local::pki::{Pki, SERVICE_IDENTITY};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Upper bound for anything the harness waits for.
pub const WAIT: Duration = Duration::from_secs(120);

pub struct Service {
    child: Child,
    pub pid: u32,
    pub api: ApiClient,
    pub mqtt: SocketAddr,
    pub pki: Pki,
}

impl Service {
    /// Starts `iotjobs-local serve` on free loopback ports with its data in `dir`.
    pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<Service> {
        let log = std::fs::File::create(dir.join("service.log"))?;
        let data = dir.join("service");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("service exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut mqtt) = (None, None);
        let banner = async {
            while let Some(line) = lines.next_line().await? {
                let line = line.trim();
                if let Some(url) = line.strip_prefix("control plane") {
                    http = Some(url.trim().to_owned());
                } else if let Some(url) = line.strip_prefix("MQTT (mTLS)") {
                    let addr = url.trim().trim_start_matches("mqtts://");
                    mqtt = Some(addr.parse::<SocketAddr>()?);
                } else if line.starts_with("data") {
                    break;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(WAIT, banner)
            .await
            .context("the service did not start")??;
        // Keep draining stdout so the service never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (Some(http), Some(mqtt)) = (http, mqtt) else {
            bail!(
                "the service did not print its addresses (see {})",
                dir.join("service.log").display()
            );
        };
        let pki = Pki::load_or_create(data.join("pki"))?;
        Ok(Service {
            child,
            pid,
            api: ApiClient::new(&http)?,
            mqtt,
            pki,
        })
    }

    /// CreateThing; returns the thing's ARN.
    pub async fn create_thing(&self, name: &str) -> anyhow::Result<String> {
        let r = self
            .api
            .call("POST", &format!("/things/{}", enc(name)), Some(&json!({})))
            .await?;
        r["thingArn"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no thingArn"))
    }

    pub async fn create_job(
        &self,
        id: &str,
        targets: &[String],
        document: &Value,
    ) -> anyhow::Result<()> {
        let body = json!({"targets": targets, "document": document.to_string()});
        self.api
            .call("PUT", &format!("/jobs/{}", enc(id)), Some(&body))
            .await?;
        Ok(())
    }

    /// The service's status of `thing`'s execution of `job`.
    pub async fn execution_status(&self, thing: &str, job: &str) -> anyhow::Result<String> {
        let r = self
            .api
            .get(&format!("/things/{}/jobs/{}", enc(thing), enc(job)))
            .await?;
        Ok(r["execution"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub fn service_tls(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        Ok(self
            .pki
            .client_tls_config(&self.pki.issue_service_cert()?)?)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child).await
    }
}

/// SIGTERM, then SIGKILL if the process is still there after 10 s.
pub async fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return Ok(());
        }
        child.kill().await?;
    }
    Ok(())
}

/// One message seen on the broker.
#[derive(Debug)]
pub struct Seen {
    pub at: Instant,
    pub topic: String,
    pub payload: Value,
}

pub struct Observer {
    rx: mpsc::UnboundedReceiver<Seen>,
    _client: AsyncClient,
}

impl Observer {
    /// Connects with the service identity and subscribes to `filter`; returns once subscribed.
    pub async fn start(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        filter: &str,
    ) -> anyhow::Result<Observer> {
        let mut opts = MqttOptions::new(
            format!("{SERVICE_IDENTITY}/bench"),
            addr.ip().to_string(),
            addr.port(),
        );
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        eventloop.set_network_options(net);
        client.subscribe(filter, QoS::AtLeastOnce).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let payload = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        if tx
                            .send(Seen {
                                at,
                                topic: p.topic,
                                payload,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx)
            .await
            .context("the observer never subscribed")??;
        Ok(Observer {
            rx,
            _client: client,
        })
    }

    /// Forgets everything seen so far.
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// The next message for which `pred` holds (others are dropped).
    pub async fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Seen) -> bool,
    ) -> anyhow::Result<Seen> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| anyhow!("timed out waiting for {what}"))?
                .ok_or_else(|| anyhow!("observer gone while waiting for {what}"))?;
            if pred(&seen) {
                return Ok(seen);
            }
        }
    }
}

/// A job document with one `runCommand` step.
pub fn command_job(command: &str) -> Value {
    json!({"version": "1.0", "steps": [
        {"action": {"name": "run", "type": "runCommand", "input": {"command": command}}}
    ]})
}

/// Where a harness-owned temporary path lives.
pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
