//! The external-broker mode against a real mosquitto, set up as a user would:
//! `iotjobs-local mosquitto-config` writes mosquitto's configuration from the local CA,
//! mosquitto runs it on a free loopback port, `LocalService` (what `serve --broker` runs)
//! connects to it as the service identity, `create-thing --out`'s provisioning points a real
//! `iotjobsd` at it, and a job runs to SUCCEEDED. The generated ACL must confine each device
//! to its own `$aws/things/<thing>/` topics, like the embedded broker.
//!
//! Skipped with a note when mosquitto is missing, unless IOTJOBS_REQUIRE_MOSQUITTO=1 (CI).
#![cfg(feature = "local")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, have_mosquitto, Mosquitto, WAIT};
use iotjobs::local::control::client::ApiClient;
use iotjobs::local::external::ExternalBroker;
use iotjobs::local::pki::{self, Pki, SERVICE_IDENTITY};
use iotjobs::local::provision::{write_device_dir, DeviceFiles};
use iotjobs::local::server::{pki_dir, LocalService, ServeOptions};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{json, Value};

const LOCAL: &str = env!("CARGO_BIN_EXE_iotjobs-local");
const IOTJOBSD: &str = env!("CARGO_BIN_EXE_iotjobsd");
const ACCOUNT: &str = "arn:aws:iot:us-east-1:123456789012";

/// mosquitto configured by `iotjobs-local mosquitto-config`, and the service on it.
struct Stack {
    tmp: tempfile::TempDir,
    broker: Mosquitto,
    svc: Option<LocalService>,
    api: ApiClient,
}

impl Stack {
    async fn start() -> Stack {
        Self::start_with(|_, _| {}).await
    }

    /// [`Self::start`], with `adjust(dir, broker)` run after `mosquitto-config` wrote its
    /// files into `dir` and before mosquitto and the service start.
    async fn start_with(adjust: impl FnOnce(&Path, &mut ExternalBroker)) -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let port = free_port();
        let out = Command::new(LOCAL)
            .arg("mosquitto-config")
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join("mosquitto"))
            .arg("--port")
            .arg(port.to_string())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "mosquitto-config failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("--broker mqtts://localhost:{port}")),
            "{stdout}"
        );
        let mut external = ExternalBroker::parse(&format!("mqtts://localhost:{port}")).unwrap();
        adjust(&tmp.path().join("mosquitto"), &mut external);
        let conf = tmp.path().join("mosquitto/mosquitto.conf");
        let mut broker = Mosquitto::spawn(conf, port);

        let mut opts = ServeOptions::new(&data).on_free_ports();
        opts.external_broker = Some(external);
        let svc = LocalService::start(opts).await.unwrap();
        assert!(svc.broker_events().is_none(), "no embedded broker");
        assert_eq!(svc.mqtt_tls_addr, None);
        assert_eq!(
            svc.external_broker.as_deref(),
            Some(format!("mqtts://localhost:{port}").as_str())
        );
        wait_line(&mut broker, "the service's connection", |l| {
            l.contains(&format!("as {SERVICE_IDENTITY} ")) && l.contains("u'iotjobs-local/service'")
        });
        let api = ApiClient::new(&svc.endpoint_url()).unwrap();
        Stack {
            tmp,
            broker,
            svc: Some(svc),
            api,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method != "GET").then_some(&body);
        match self.api.call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// CreateThing, then provision its device directory as `create-thing --out` does.
    async fn thing(&self, name: &str, handlers: Option<&Path>) -> DeviceFiles {
        self.call("POST", &format!("/things/{name}"), json!({}))
            .await;
        write_device_dir(&self.api, name, &self.path(name), handlers)
            .await
            .unwrap()
    }

    async fn create_job(&self, job_id: &str, thing: &str, document: Value) {
        self.call(
            "PUT",
            &format!("/jobs/{job_id}"),
            json!({
                "targets": [format!("{ACCOUNT}:thing/{thing}")],
                "document": document.to_string(),
            }),
        )
        .await;
    }

    /// Polls DescribeJobExecution (what a user checks) until the execution is terminal,
    /// and asserts it SUCCEEDED.
    async fn assert_succeeded(&self, job: &str, thing: &str, files: &DeviceFiles) {
        let log = || std::fs::read_to_string(&files.log_file).unwrap_or_default();
        let deadline = Instant::now() + WAIT;
        let execution = loop {
            let e = self
                .call("GET", &format!("/things/{thing}/jobs/{job}"), json!({}))
                .await;
            let status = e["execution"]["status"].as_str().unwrap_or_default();
            if !matches!(status, "QUEUED" | "IN_PROGRESS") {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "{job} still {status}; daemon log:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            execution["execution"]["status"],
            "SUCCEEDED",
            "{execution:#}\ndaemon log:\n{}",
            log()
        );
    }

    async fn stop(mut self) {
        if let Some(svc) = self.svc.take() {
            svc.stop().await.unwrap();
        }
    }
}

fn wait_line(broker: &mut Mosquitto, what: &str, pred: impl Fn(&str) -> bool) -> String {
    tokio::task::block_in_place(|| broker.wait_for_line(what, pred))
}

/// The daemon, killed if the test fails before it stops it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iotjobsd_runs_a_job_to_succeeded_through_mosquitto() {
    if !have_mosquitto() {
        return;
    }
    let mut stack = Stack::start().await;
    let port = stack.broker.port;

    let handlers = stack.path("handlers");
    std::fs::create_dir(&handlers).unwrap();
    std::fs::set_permissions(&handlers, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = stack.path("handler-ran");
    let script = handlers.join("hello.sh");
    std::fs::write(
        &script,
        format!(
            // $1 is runAsUser (AWS's handler convention), then the job's arguments.
            "#!/bin/sh\nshift\necho \"hello $*\"\nprintf '%s\\n' \"$@\" > '{}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let files = stack.thing("gateway-1", Some(&handlers)).await;
    // The device is pointed at mosquitto and trusts the CA that signed mosquitto's cert.
    let config = std::fs::read_to_string(&files.config).unwrap();
    assert!(config.contains("endpoint = \"localhost\""), "{config}");
    assert!(config.contains(&format!("port = {port}")), "{config}");
    assert_eq!(
        std::fs::read_to_string(&files.root_ca).unwrap(),
        std::fs::read_to_string(stack.path("mosquitto/ca.pem")).unwrap()
    );

    let mut cmd = Command::new(IOTJOBSD);
    cmd.arg("--config")
        .arg(&files.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IOTJOBSD_") || k == "NOTIFY_SOCKET" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("IOTJOBSD_CONFIG_DIR", &files.dir);
    let mut daemon = Daemon(cmd.spawn().unwrap());
    wait_line(&mut stack.broker, "the device's connection", |l| {
        l.contains(" as gateway-1 ") && l.contains("u'gateway-1'")
    });

    stack
        .create_job(
            "hello-1",
            "gateway-1",
            json!({"version": "1.0", "steps": [{"action": {
                "name": "say-hello", "type": "runHandler",
                "input": {"handler": "hello.sh", "args": ["through", "mosquitto"], "path": "default"}
            }}]}),
        )
        .await;

    stack.assert_succeeded("hello-1", "gateway-1", &files).await;
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "through\nmosquitto\n",
        "the handler ran with the job's arguments"
    );
    let job = stack.call("GET", "/jobs/hello-1", json!({})).await;
    assert_eq!(
        job["job"]["jobProcessDetails"]["numberOfSucceededThings"],
        1
    );

    // mosquitto restarts (no persistence): the service and the daemon reconnect and
    // resubscribe by themselves, and the next job runs.
    tokio::task::block_in_place(|| stack.broker.restart());
    wait_line(&mut stack.broker, "the service's reconnection", |l| {
        l.contains(&format!("as {SERVICE_IDENTITY} "))
    });
    let mut subscribed = stack.svc.as_ref().unwrap().broker_subscribed();
    tokio::time::timeout(WAIT, subscribed.wait_for(|s| *s))
        .await
        .expect("the service resubscribes")
        .unwrap();
    wait_line(&mut stack.broker, "the device's reconnection", |l| {
        l.contains(" as gateway-1 ")
    });
    stack
        .create_job(
            "hello-2",
            "gateway-1",
            json!({"version": "1.0", "steps": [{"action": {
                "name": "say-hello", "type": "runHandler",
                "input": {"handler": "hello.sh", "args": ["after", "restart"], "path": "default"}
            }}]}),
        )
        .await;
    stack.assert_succeeded("hello-2", "gateway-1", &files).await;
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "after\nrestart\n"
    );

    // SIGTERM: the daemon leaves mosquitto cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::block_in_place(|| daemon.0.wait()).unwrap();
    assert!(status.success(), "iotjobsd exited with {status}");
    wait_line(&mut stack.broker, "the device's clean disconnect", |l| {
        l.contains("Client gateway-1 disconnected.")
    });
    stack.stop().await;
}

/// A rumqttc client of mosquitto with a certificate; returns after CONNACK.
async fn client(
    port: u16,
    client_id: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> (AsyncClient, EventLoop) {
    let tls = pki::client_tls_config(ca_pem, Some((cert_pem, key_pem))).unwrap();
    let mut o = MqttOptions::new(client_id, "localhost", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (c, mut ev) = AsyncClient::new(o, 64);
    match next(&mut ev, "CONNACK", |p| matches!(p, Packet::ConnAck(_))).await {
        Packet::ConnAck(_) => (c, ev),
        _ => unreachable!(),
    }
}

/// Polls the event loop until an incoming packet matches; every packet before it is
/// returned too (in order), for the caller to check what must not have arrived.
async fn next_seen(
    ev: &mut EventLoop,
    what: &str,
    pred: impl Fn(&Packet) -> bool,
) -> (Packet, Vec<Packet>) {
    let mut before = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(p)) if pred(&p) => return p,
                Ok(Event::Incoming(p)) => before.push(p),
                Ok(Event::Outgoing(_)) => {}
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"));
    (found, before)
}

async fn next(ev: &mut EventLoop, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
    next_seen(ev, what, pred).await.0
}

fn is_publish_on(p: &Packet, topic: &str) -> bool {
    matches!(p, Packet::Publish(m) if m.topic == topic)
}

fn publishes(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(m) => Some(m.topic.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_acl_confines_each_device_to_its_own_topics() {
    if !have_mosquitto() {
        return;
    }
    let mut stack = Stack::start().await;
    let port = stack.broker.port;
    let a = stack.thing("dev-a", None).await;
    let b = stack.thing("dev-b", None).await;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let ca = read(&b.root_ca);

    // dev-b, with its own certificate, subscribes to dev-a's topic as well as its own.
    let (dev_b, mut b_ev) = client(port, "dev-b", &ca, &read(&b.cert), &read(&b.key)).await;
    for t in [
        "$aws/things/dev-a/jobs/notify-next",
        "$aws/things/dev-b/jobs/notify-next",
    ] {
        dev_b.subscribe(t, QoS::AtLeastOnce).await.unwrap();
        next(&mut b_ev, "dev-b's SUBACK", |p| {
            matches!(p, Packet::SubAck(_))
        })
        .await;
    }

    // dev-a claims dev-b's client id: mosquitto names it after its certificate instead,
    // so dev-b's session is not taken over.
    let (dev_a, mut a_ev) = client(port, "dev-b", &ca, &read(&a.cert), &read(&a.key)).await;
    wait_line(&mut stack.broker, "dev-a's connection", |l| {
        l.contains(" as dev-a ") && l.contains("u'dev-a'")
    });
    for t in [
        "$aws/things/dev-a/jobs/start-next/+",
        "$aws/things/dev-a/jobs/notify-next",
    ] {
        dev_a.subscribe(t, QoS::AtLeastOnce).await.unwrap();
        next(&mut a_ev, "dev-a's SUBACK", |p| {
            matches!(p, Packet::SubAck(_))
        })
        .await;
    }

    // dev-b publishes a request on dev-a's topic; its PUBACK also shows it is still
    // connected. mosquitto queues a publish for subscribers before it acknowledges it, so
    // had this one passed the ACL, the service would answer it before dev-a's own request.
    dev_b
        .publish(
            "$aws/things/dev-a/jobs/start-next",
            QoS::AtLeastOnce,
            false,
            r#"{"clientToken":"forbidden"}"#,
        )
        .await
        .unwrap();
    next(&mut b_ev, "dev-b's PUBACK", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
    dev_a
        .publish(
            "$aws/things/dev-a/jobs/start-next",
            QoS::AtLeastOnce,
            false,
            r#"{"clientToken":"mine"}"#,
        )
        .await
        .unwrap();
    let (found, before) = next_seen(&mut a_ev, "dev-a's start-next reply", |p| {
        is_publish_on(p, "$aws/things/dev-a/jobs/start-next/accepted")
    })
    .await;
    let Packet::Publish(reply) = found else {
        unreachable!()
    };
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["clientToken"], "mine");
    assert_eq!(
        publishes(&before),
        Vec::<String>::new(),
        "the service answered dev-b's request on dev-a's topic"
    );

    // The service notifies dev-a first, then dev-b, over one connection: mosquitto delivers
    // them to dev-b in that order, so dev-a's would arrive first if the ACL let dev-b read
    // it (mosquitto grants the SUBACK and filters on delivery).
    let doc = json!({"version": "1.0", "steps": [{"action": {
        "name": "n", "type": "runCommand", "input": {"command": "true"}}}]});
    stack.create_job("job-a", "dev-a", doc.clone()).await;
    stack.create_job("job-b", "dev-b", doc).await;
    let (found, before) = next_seen(&mut b_ev, "dev-b's notify-next", |p| {
        is_publish_on(p, "$aws/things/dev-b/jobs/notify-next")
    })
    .await;
    let Packet::Publish(m) = found else {
        unreachable!()
    };
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["execution"]["jobId"], "job-b");
    assert_eq!(
        publishes(&before),
        Vec::<String>::new(),
        "dev-b received another thing's messages"
    );
    // dev-a does get its own notification.
    let Packet::Publish(m) = next(&mut a_ev, "dev-a's notify-next", |p| {
        is_publish_on(p, "$aws/things/dev-a/jobs/notify-next")
    })
    .await
    else {
        unreachable!()
    };
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["execution"]["jobId"], "job-a");

    // A certificate from another CA gets no connection at all.
    let stranger = Pki::ephemeral()
        .unwrap()
        .issue_device_cert("dev-a")
        .unwrap();
    let tls = pki::client_tls_config(
        &ca,
        Some((&stranger.certificate_pem, &stranger.key_pair.private_key)),
    )
    .unwrap();
    let mut o = MqttOptions::new("dev-a", "localhost", port);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (_c, mut ev) = AsyncClient::new(o, 8);
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return Err(a),
                Ok(_) => {}
                Err(e) => return Ok(e),
            }
        }
    })
    .await
    .expect("the stranger's attempt ends");
    assert!(
        refused.is_ok(),
        "mosquitto accepted a foreign certificate: {refused:?}"
    );

    stack.stop().await;
}

/// A broker whose server certificate comes from another CA (a site's own broker), and
/// explicit service credentials: `--broker-ca`, `--broker-cert`, `--broker-key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_its_own_ca_and_explicit_service_credentials() {
    if !have_mosquitto() {
        return;
    }
    let site_ca = Pki::ephemeral().unwrap();
    let site_ca_pem = site_ca.ca_cert_pem().to_owned();
    let stack = Stack::start_with(|dir, external| {
        // mosquitto keeps verifying clients against the local CA (its cafile) but presents
        // a certificate from the site's CA.
        let server = site_ca.issue_loopback_server_cert().unwrap();
        std::fs::write(dir.join("server.pem"), &server.certificate_pem).unwrap();
        std::fs::write(dir.join("server.key"), &server.key_pair.private_key).unwrap();
        std::fs::write(dir.join("site-ca.pem"), site_ca.ca_cert_pem()).unwrap();
        // The service's own credentials, issued by the local CA beforehand.
        let local = Pki::load_or_create(pki_dir(&dir.parent().unwrap().join("data"))).unwrap();
        let svc = local.issue_service_cert().unwrap();
        std::fs::write(dir.join("svc.pem"), &svc.certificate_pem).unwrap();
        std::fs::write(dir.join("svc.key"), &svc.key_pair.private_key).unwrap();
        external.ca = Some(dir.join("site-ca.pem"));
        external.cert = Some(dir.join("svc.pem"));
        external.key = Some(dir.join("svc.key"));
    })
    .await;
    let port = stack.broker.port;

    // Provisioned devices trust the site's CA for the broker; their certificate is local.
    let files = stack.thing("site-dev", None).await;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&files.root_ca), site_ca_pem);
    let (dev, mut ev) = client(
        port,
        "site-dev",
        &read(&files.root_ca),
        &read(&files.cert),
        &read(&files.key),
    )
    .await;
    dev.subscribe("$aws/things/site-dev/jobs/notify-next", QoS::AtLeastOnce)
        .await
        .unwrap();
    next(&mut ev, "SUBACK", |p| matches!(p, Packet::SubAck(_))).await;
    let doc = json!({"version": "1.0", "steps": [{"action": {
        "name": "n", "type": "runCommand", "input": {"command": "true"}}}]});
    stack.create_job("site-job", "site-dev", doc).await;
    let Packet::Publish(m) = next(&mut ev, "notify-next", |p| {
        is_publish_on(p, "$aws/things/site-dev/jobs/notify-next")
    })
    .await
    else {
        unreachable!()
    };
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["execution"]["jobId"], "site-job");
    stack.stop().await;
}

#[test]
fn serve_refuses_a_plaintext_broker_url_and_mixing_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(LOCAL)
            .arg("serve")
            .arg("--data-dir")
            .arg(tmp.path())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = run(&["--broker", "mqtt://localhost:1883"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the broker must use TLS"), "{err}");

    let out = run(&[
        "--broker",
        "mqtts://localhost",
        "--mqtt-tcp-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");

    let out = run(&["--broker-ca", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--broker"), "{err}");
}
