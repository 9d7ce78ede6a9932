//! Test helpers shared by the MQTT, mosquitto and daemon tests: a throw-away PKI made
//! with rcgen, device configuration, and a mosquitto started on a free loopback port.
//! `device` and `jobs_service` run a real `iotjobsd` against iotjobs-local's Jobs service.
#![allow(dead_code)] // each test crate uses a different subset

pub mod device;
pub mod jobs_service;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iotjobs::config::MqttConfig;
use iotjobs::local::pki::{IssuedCert, Pki};
use iotjobs::mqtt::{ConnectionState, MqttEvent, MqttHandle};

/// Generous upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);

/// A certificate authority (the local service's PKI) that writes PEM files for tests.
pub struct TestCa {
    pub pki: Pki,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa {
            pki: Pki::ephemeral().unwrap(),
        }
    }

    /// Writes `server.pem`/`server.key` for localhost, 127.0.0.1 and ::1 into `dir`.
    pub fn write_server(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let issued = self.pki.issue_loopback_server_cert().unwrap();
        write_issued(dir, "server", &issued)
    }

    /// Writes `<thing>.pem`/`<thing>.key` (CN = thing name) into `dir`.
    pub fn write_device(&self, dir: &Path, thing: &str) -> (PathBuf, PathBuf) {
        let issued = self.pki.issue_device_cert(thing).unwrap();
        write_issued(dir, thing, &issued)
    }

    /// Writes the CA certificate as `<name>.pem` into `dir`.
    pub fn write_ca(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.pki.ca_cert_pem()).unwrap();
        path
    }
}

pub fn write_issued(dir: &Path, name: &str, issued: &IssuedCert) -> (PathBuf, PathBuf) {
    write_pair(
        dir,
        name,
        &issued.certificate_pem,
        &issued.key_pair.private_key,
    )
}

fn write_pair(dir: &Path, name: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert_path, key_path)
}

/// A device's `[mqtt]` section for a broker on localhost:`port`, with fast reconnects.
pub fn device_config(
    ca: &TestCa,
    dir: &Path,
    thing: &str,
    port: u16,
    root_ca: &Path,
) -> MqttConfig {
    let (cert, key) = ca.write_device(dir, thing);
    MqttConfig {
        endpoint: Some("localhost".into()),
        port,
        thing_name: Some(thing.into()),
        cert: Some(cert),
        key: Some(key),
        root_ca: Some(root_ca.to_path_buf()),
        keep_alive_secs: 30,
        reconnect_min_secs: 1,
        reconnect_max_secs: 2,
        ..MqttConfig::default()
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the broker to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits for the next broadcast value matching `pred`, failing after [`WAIT`].
pub async fn next_matching<T: Clone, F: FnMut(&T) -> bool>(
    rx: &mut tokio::sync::broadcast::Receiver<T>,
    what: &str,
    mut pred: F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(value)) if pred(&value) => return value,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Waits for the connection's next `Connected` event; whether the session was resumed.
pub async fn connected(events: &mut tokio::sync::broadcast::Receiver<MqttEvent>) -> bool {
    match next_matching(events, "Connected", |e| {
        matches!(e, MqttEvent::Connected { .. })
    })
    .await
    {
        MqttEvent::Connected { session_present } => session_present,
        _ => unreachable!(),
    }
}

/// Waits for a failed connection attempt whose reason `wanted` accepts; that reason.
pub async fn failed_attempt(device: &MqttHandle, wanted: impl Fn(&str) -> bool) -> String {
    let mut state = device.state();
    tokio::time::timeout(WAIT, async {
        loop {
            if let ConnectionState::Waiting { reason, .. } = &*state.borrow_and_update() {
                if wanted(reason) {
                    return reason.clone();
                }
                eprintln!("not the failure waited for yet: {reason}");
            }
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("a failed attempt")
}

pub fn mosquitto_path() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// True if mosquitto tests should run; prints why not otherwise. With
/// IOTJOBS_REQUIRE_MOSQUITTO=1 (CI) a missing mosquitto is a failure.
pub fn have_mosquitto() -> bool {
    if mosquitto_path().is_some() {
        return true;
    }
    if std::env::var("IOTJOBS_REQUIRE_MOSQUITTO").as_deref() == Ok("1") {
        panic!("mosquitto is not installed but IOTJOBS_REQUIRE_MOSQUITTO=1");
    }
    eprintln!("note: mosquitto is not installed; skipping (apt-get install mosquitto)");
    false
}

/// A mosquitto broker with mutual TLS on 127.0.0.1:`port`, logging to a channel.
pub struct Mosquitto {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line seen so far (filled by the wait functions).
    pub seen: Vec<String>,
    pub port: u16,
    conf: PathBuf,
}

impl Mosquitto {
    /// Writes the PKI and config into `dir` and starts the broker.
    pub fn start(ca: &TestCa, dir: &Path, port: u16) -> Mosquitto {
        let (cert, key) = ca.write_server(dir);
        let ca_path = ca.write_ca(dir, "broker-ca");
        let conf = dir.join("mosquitto.conf");
        // `user root`: mosquitto would otherwise drop to user `mosquitto` before reading
        // the key in our private temp dir.
        let text = format!(
            "per_listener_settings true\npersistence false\nset_tcp_nodelay true\n\
             log_dest stderr\nlog_type all\nconnection_messages true\nuser root\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
            ca_path.display(),
            cert.display(),
            key.display()
        );
        std::fs::write(&conf, text).unwrap();
        Self::spawn(conf, port)
    }

    /// Starts mosquitto with an existing config whose listener is on `port`.
    pub fn spawn(conf: PathBuf, port: u16) -> Mosquitto {
        let mut child = Command::new(mosquitto_path().expect("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut broker = Mosquitto {
            child,
            lines,
            seen: Vec::new(),
            port,
            conf,
        };
        // Printed once every listener is open.
        broker.wait_for_line("running", |l| {
            l.contains("mosquitto version") && l.contains("running")
        });
        broker
    }

    /// Blocks until a log line matches (lines seen before count too).
    pub fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "mosquitto: no line for {what} within {WAIT:?}; log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Lines received so far, without waiting.
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Kills the broker (an abrupt stop: clients see the link drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new broker with the same config on the same port.
    pub fn restart(&mut self) {
        self.kill();
        *self = Self::spawn(self.conf.clone(), self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the embedded broker with `ca`'s loopback server certificate on `addr`
/// (`None`: a free port).
pub async fn start_broker(
    ca: &TestCa,
    addr: Option<std::net::SocketAddr>,
) -> iotjobs::local::broker::BrokerHandle {
    use iotjobs::local::broker::{Broker, BrokerConfig};
    let mut config = BrokerConfig::from_pki(&ca.pki).unwrap().on_free_port();
    if let Some(addr) = addr {
        config.tls_addr = Some(addr);
    }
    Broker::start(config).await.unwrap()
}

/// `[mqtt]` for the local service's own identity (it may publish on any thing's topics).
pub fn service_config(ca: &TestCa, dir: &Path, port: u16, root_ca: &Path) -> MqttConfig {
    let issued = ca.pki.issue_service_cert().unwrap();
    let (cert, key) = write_issued(dir, "service", &issued);
    MqttConfig {
        endpoint: Some("localhost".into()),
        port,
        thing_name: Some("jobs-service".into()),
        client_id: Some(iotjobs::local::pki::SERVICE_IDENTITY.into()),
        cert: Some(cert),
        key: Some(key),
        root_ca: Some(root_ca.to_path_buf()),
        reconnect_min_secs: 1,
        reconnect_max_secs: 2,
        ..MqttConfig::default()
    }
}

/// A loopback TCP relay in front of a broker that a test can cut (every relayed
/// connection dropped, as by a network failure, while the broker keeps the session) and
/// whose broker→client direction it can hold (so acks are not delivered yet).
pub struct Relay {
    pub port: u16,
    hold: tokio::sync::watch::Sender<bool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: std::net::SocketAddr) -> Relay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hold, hold_rx) = tokio::sync::watch::channel(false);
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut hold_rx = hold_rx.clone();
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if hold_rx.wait_for(|held| !held).await.is_err() {
                            break;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tasks.lock().unwrap().extend([up, down]);
            }
        });
        Relay {
            port,
            hold,
            connections,
            accept,
        }
    }

    /// Stops (true) or resumes (false) delivering broker→client bytes.
    pub fn hold(&self, held: bool) {
        self.hold.send_replace(held);
    }

    /// Drops every relayed connection; new ones are accepted (and not held).
    pub fn cut(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
        self.hold(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
