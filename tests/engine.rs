//! The real `iotjobsd` binary running jobs end to end: iotjobs-local's Jobs service on the
//! embedded mutual-TLS broker, real handler scripts in a temporary handler directory.
//!
//! What the daemon publishes is watched by an observer client (the service identity may
//! subscribe to everything) on `$aws/things/<thing>/jobs/+/update/#`; the service's own
//! record of each execution is read back through its command channel.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotjobs::local::broker::{Broker, BrokerConfig, BrokerHandle};
use iotjobs::local::clock::SystemClock;
use iotjobs::local::pki::{Pki, SERVICE_IDENTITY};
use iotjobs::local::service::task::{self, BrokerConnection, Command as Svc, ServiceHandle};
use iotjobs::local::service::{JobsService, NewJob, NewThing, ServiceConfig};
use iotjobs::local::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Generous upper bound for anything a test waits for; never an expected duration.
const WAIT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_iotjobsd");
const THING: &str = "gateway-1";

/// Extra settings for one test's daemon.
#[derive(Default)]
struct Options {
    /// Log level of the daemon's log file (default debug).
    log_level: Option<&'static str>,
    /// Extra lines for the `[jobs]` section.
    jobs: String,
}

struct Stack {
    dir: tempfile::TempDir,
    service: ServiceHandle,
    shutdown: CancellationToken,
    /// (topic, payload) of every update request and reply for the thing, in order.
    observed: mpsc::UnboundedReceiver<(String, Value)>,
    /// Update requests seen so far, per job id, in order.
    updates: Vec<(String, Value)>,
    daemon: Child,
    pki: Pki,
    broker: Option<BrokerHandle>,
    broker_addr: std::net::SocketAddr,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        self.shutdown.cancel();
    }
}

impl Stack {
    async fn start(opts: Options) -> Stack {
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
        // Steps may run as an unprivileged user: they must reach the handler directory.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["handlers", "state", "run"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
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
reconnect_max_secs = 2

[jobs]
handler_dir = "{root}/handlers"
kill_grace_secs = 1
{jobs}

[log]
file = "{root}/iotjobsd.log"
level = "{level}"

[paths]
state_dir = "{root}/state"
runtime_dir = "{root}/run"
"#,
                cert = bundle.cert_path.display(),
                key = bundle.key_path.display(),
                ca = bundle.root_ca_path.display(),
                root = root.display(),
                jobs = opts.jobs,
                level = opts.log_level.unwrap_or("debug"),
            ),
        )
        .unwrap();
        let daemon = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("IOTJOBSD_CONFIG_DIR", root)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Stack {
            dir,
            service,
            shutdown,
            observed,
            updates: Vec::new(),
            daemon,
            pki,
            broker: Some(broker),
            broker_addr,
        }
    }

    async fn stop_broker(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    /// Starts a fresh broker on the same address (no session survives).
    async fn restart_broker(&mut self) {
        let mut cfg = BrokerConfig::from_pki(&self.pki).unwrap();
        cfg.tls_addr = Some(self.broker_addr);
        self.broker = Some(Broker::start(cfg).await.unwrap());
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    fn handler(&self, name: &str, body: &str) -> PathBuf {
        let path = self.root().join("handlers").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn create_job(&self, job_id: &str, document: Value) {
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

    /// Waits for the daemon's terminal update of `job_id` to be accepted; returns it.
    async fn terminal(&mut self, job_id: &str) -> Value {
        let topic = format!("$aws/things/{THING}/jobs/{job_id}/update");
        let deadline = Instant::now() + WAIT;
        let mut terminal: Option<Value> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.observed.recv()).await;
            let Ok(Some((t, payload))) = next else {
                panic!(
                    "no accepted terminal status for {job_id}; seen {:#?}\ndaemon log:\n{}",
                    self.updates,
                    self.log()
                );
            };
            if t == topic {
                self.updates.push((job_id.to_string(), payload.clone()));
                if payload["status"] != "IN_PROGRESS" {
                    terminal = Some(payload);
                }
            } else if let Some(job) = t
                .strip_prefix(&format!("$aws/things/{THING}/jobs/"))
                .and_then(|rest| rest.strip_suffix("/update"))
            {
                self.updates.push((job.to_string(), payload));
            } else if t == format!("{topic}/accepted") {
                if let Some(sent) = &terminal {
                    if payload["clientToken"] == sent["clientToken"] {
                        return sent.clone();
                    }
                }
            }
        }
    }

    /// Statuses of the update requests seen for `job_id`, in order.
    fn statuses(&self, job_id: &str) -> Vec<String> {
        self.updates
            .iter()
            .filter(|(job, _)| job == job_id)
            .map(|(_, u)| u["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The service's record of the execution's status.
    async fn service_status(&self, job_id: &str) -> String {
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
        record.status().as_str().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("iotjobsd.log")).unwrap_or_default()
    }
}

/// An observer on every update request and reply of the thing.
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
    client
        .subscribe(
            format!("$aws/things/{THING}/jobs/+/update/#"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        // Keep the client alive with its event loop.
        let _client = client;
        loop {
            match eventloop.poll().await {
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
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed_rx)
        .await
        .expect("observer never subscribed")
        .unwrap();
    rx
}

fn handler_step(name: &str, handler: &str, args: &[&str]) -> Value {
    json!({"action": {"name": name, "type": "runHandler",
        "input": {"handler": handler, "args": args, "path": "default"}}})
}

fn doc(steps: Vec<Value>) -> Value {
    json!({"version": "1.0", "steps": steps})
}

/// Waits until `pred` holds, polling; panics after [`WAIT`].
async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when no process with this pid is alive (a zombie waiting for init counts as gone).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_step_job_reports_in_progress_then_succeeded_with_the_stdout_tail() {
    let mut s = Stack::start(Options {
        jobs: "step_timeout_minutes = 5".into(),
        ..Default::default()
    })
    .await;
    s.handler(
        "step.sh",
        "shift; echo \"step $1 as '$IOTJOBS_STEP' for $IOTJOBS_THING_NAME\"",
    );
    let mut document = doc(vec![
        handler_step("Download", "step.sh", &["one"]),
        handler_step("Install", "step.sh", &["two"]),
        handler_step("Verify", "step.sh", &["three"]),
    ]);
    document["includeStdOut"] = json!("true");
    s.create_job("three-steps", document).await;
    let terminal = s.terminal("three-steps").await;
    assert_eq!(terminal["status"], "SUCCEEDED");
    let details = &terminal["statusDetails"];
    assert_eq!(details["reason"], "all 3 steps succeeded");
    assert_eq!(
        details["stdout"],
        format!(
            "step one as 'Download' for {THING} step two as 'Install' for {THING} step three as 'Verify' for {THING}"
        )
    );
    let statuses = s.statuses("three-steps");
    assert_eq!(statuses.first().map(String::as_str), Some("IN_PROGRESS"));
    assert_eq!(statuses.last().map(String::as_str), Some("SUCCEEDED"));
    let first = &s.updates[0].1;
    assert_eq!(first["statusDetails"]["step"], "1/3 Download");
    assert!(first["expectedVersion"].is_i64());
    assert_eq!(
        first["stepTimeoutInMinutes"], 5,
        "the service's step timer is refreshed"
    );
    assert_eq!(s.service_status("three-steps").await, "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_reports_failed_with_reason_and_stderr_tail() {
    let mut s = Stack::start(Options::default()).await;
    s.handler("ok.sh", "echo fine");
    s.handler(
        "install.sh",
        "echo 'E: Unable to locate package nosuch' >&2; exit 2",
    );
    s.create_job(
        "failing",
        doc(vec![
            handler_step("Prepare", "ok.sh", &[]),
            handler_step("Install", "install.sh", &["nosuch"]),
            handler_step("Never", "ok.sh", &[]),
        ]),
    )
    .await;
    let terminal = s.terminal("failing").await;
    assert_eq!(terminal["status"], "FAILED");
    assert_eq!(
        terminal["statusDetails"]["reason"],
        "step 'Install' exited with status 2"
    );
    assert_eq!(
        terminal["statusDetails"]["stderr"],
        "E: Unable to locate package nosuch"
    );
    assert!(terminal["statusDetails"].get("stdout").is_none());
    assert_eq!(s.service_status("failing").await, "FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_step_failure_lets_the_job_go_on() {
    let mut s = Stack::start(Options::default()).await;
    let marker = s.path("after");
    s.handler("fail.sh", "exit 5");
    s.handler("mark.sh", &format!("touch {}", marker.display()));
    let mut flaky = handler_step("Flaky", "fail.sh", &[]);
    flaky["action"]["ignoreStepFailure"] = json!("true");
    s.create_job(
        "ignored",
        doc(vec![flaky, handler_step("After", "mark.sh", &[])]),
    )
    .await;
    let terminal = s.terminal("ignored").await;
    assert_eq!(terminal["status"], "SUCCEEDED");
    assert_eq!(
        terminal["statusDetails"]["reason"],
        "2 steps ran; ignored failures: step 'Flaky' exited with status 5"
    );
    assert!(marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_step_runs_only_after_every_step_succeeded() {
    let mut s = Stack::start(Options::default()).await;
    let log = s.path("final.log");
    s.handler("ok.sh", "exit 0");
    s.handler("fail.sh", "exit 1");
    s.handler(
        "final.sh",
        &format!("echo \"$IOTJOBS_JOB_ID\" >> {}", log.display()),
    );
    let final_step = handler_step("Cleanup", "final.sh", &[]);
    let mut good = doc(vec![handler_step("Work", "ok.sh", &[])]);
    good["finalStep"] = final_step.clone();
    let mut bad = doc(vec![handler_step("Work", "fail.sh", &[])]);
    bad["finalStep"] = final_step;
    s.create_job("final-good", good).await;
    s.create_job("final-bad", bad).await;
    assert_eq!(s.terminal("final-good").await["status"], "SUCCEEDED");
    let terminal = s.terminal("final-bad").await;
    assert_eq!(terminal["status"], "FAILED");
    assert_eq!(
        terminal["statusDetails"]["reason"],
        "step 'Work' exited with status 1"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "final-good\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_steps_run_in_reverse_order_on_failure() {
    let mut s = Stack::start(Options::default()).await;
    let log = s.path("order.log");
    s.handler(
        "log.sh",
        &format!("shift; echo \"$1\" >> {}", log.display()),
    );
    s.handler("fail.sh", &format!("echo C >> {}; exit 3", log.display()));
    let mut a = handler_step("A", "log.sh", &["A"]);
    a["rollback"] = handler_step("Undo A", "log.sh", &["undo-A"]);
    let mut b = handler_step("B", "log.sh", &["B"]);
    b["rollback"] = handler_step("Undo B", "log.sh", &["undo-B"]);
    s.create_job(
        "rollback",
        doc(vec![
            a,
            b,
            handler_step("C", "fail.sh", &[]),
            handler_step("D", "log.sh", &["D"]),
        ]),
    )
    .await;
    let terminal = s.terminal("rollback").await;
    assert_eq!(terminal["status"], "FAILED");
    assert_eq!(
        terminal["statusDetails"]["reason"],
        "step 'C' exited with status 3"
    );
    assert_eq!(
        terminal["statusDetails"]["rollback"],
        "2 rollback steps succeeded"
    );
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["A", "B", "C", "undo-B", "undo-A"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_times_out_fails_and_leaves_no_process_behind() {
    let mut s = Stack::start(Options::default()).await;
    let (main_pid, child_pid) = (s.path("main.pid"), s.path("child.pid"));
    s.handler(
        "hang.sh",
        &format!(
            "sleep 1000 &\necho $! > {child}\necho $$ > {main}\nsleep 1000",
            child = child_pid.display(),
            main = main_pid.display()
        ),
    );
    let mut step = handler_step("Hang", "hang.sh", &[]);
    step["timeoutSeconds"] = json!(2);
    s.create_job("hang", doc(vec![step])).await;
    let terminal = s.terminal("hang").await;
    assert_eq!(terminal["status"], "FAILED");
    assert_eq!(
        terminal["statusDetails"]["reason"],
        "step 'Hang' timed out after 2 s"
    );
    for pid in [read_pid(&main_pid), read_pid(&child_pid)] {
        assert!(gone(pid), "process {pid} of the timed-out step survived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_job_has_its_handler_killed_and_the_next_job_runs() {
    let mut s = Stack::start(Options::default()).await;
    let (main_pid, child_pid) = (s.path("main.pid"), s.path("child.pid"));
    s.handler(
        "long.sh",
        &format!(
            "sleep 1000 &\necho $! > {child}\necho $$ > {main}\nwait",
            child = child_pid.display(),
            main = main_pid.display()
        ),
    );
    s.handler("ok.sh", "echo next");
    s.create_job("revoked", doc(vec![handler_step("Long", "long.sh", &[])]))
        .await;
    eventually("the handler to start", || {
        child_pid.exists() && main_pid.exists()
    })
    .await;
    let (main, child) = (read_pid(&main_pid), read_pid(&child_pid));
    assert!(!gone(main) && !gone(child));

    s.service
        .request(|r| Svc::CancelJob {
            job_id: "revoked".into(),
            force: true,
            reason_code: None,
            comment: None,
            reply: r,
        })
        .await
        .unwrap();
    eventually("the revoked job's processes to end", || {
        gone(main) && gone(child)
    })
    .await;

    s.create_job(
        "after-revoke",
        doc(vec![handler_step("Next", "ok.sh", &[])]),
    )
    .await;
    assert_eq!(s.terminal("after-revoke").await["status"], "SUCCEEDED");
    // Nothing but progress was ever sent for the revoked job.
    let sent = s.statuses("revoked");
    assert!(sent.iter().all(|st| st == "IN_PROGRESS"), "{sent:?}");
    assert_eq!(s.service_status("revoked").await, "CANCELED");
    assert!(s.log().contains("revoked"), "the daemon says why");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_handlers_are_refused_and_the_next_job_still_runs() {
    let mut s = Stack::start(Options::default()).await;
    let ran = s.path("outside-ran");
    let outside = s.path("outside.sh");
    std::fs::write(&outside, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&outside, s.root().join("handlers/link.sh")).unwrap();
    let writable = s.handler("writable.sh", &format!("touch {}", ran.display()));
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
    s.handler("ok.sh", "echo fine");

    s.create_job(
        "dotdot",
        doc(vec![handler_step("Escape", "../outside.sh", &[])]),
    )
    .await;
    s.create_job("symlink", doc(vec![handler_step("Link", "link.sh", &[])]))
        .await;
    s.create_job(
        "writable",
        doc(vec![handler_step("Writable", "writable.sh", &[])]),
    )
    .await;
    s.create_job("fine", doc(vec![handler_step("Fine", "ok.sh", &[])]))
        .await;

    let dotdot = s.terminal("dotdot").await;
    assert_eq!(dotdot["status"], "REJECTED");
    assert!(
        dotdot["statusDetails"]["reason"]
            .as_str()
            .unwrap()
            .contains("steps[0].action.input.handler"),
        "{dotdot}"
    );
    for job in ["symlink", "writable"] {
        let terminal = s.terminal(job).await;
        assert_eq!(terminal["status"], "FAILED", "{terminal}");
        let reason = terminal["statusDetails"]["reason"].as_str().unwrap();
        assert!(reason.contains("could not be started"), "{reason}");
    }
    assert_eq!(s.terminal("fine").await["status"], "SUCCEEDED");
    assert!(!ran.exists(), "a refused handler ran");
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_printing_100_mb_completes_with_bounded_daemon_memory() {
    // Output lines are logged at info; keep 100 MB out of the test's log file.
    let mut s = Stack::start(Options {
        log_level: Some("warn"),
        ..Default::default()
    })
    .await;
    s.handler(
        "flood.sh",
        "yes 'a fairly long line of output that repeats and repeats and repeats' | head -c 104857600\necho LAST",
    );
    let mut document = doc(vec![handler_step("Flood", "flood.sh", &[])]);
    document["includeStdOut"] = json!(true);
    s.create_job("flood", document).await;
    let terminal = s.terminal("flood").await;
    assert_eq!(terminal["status"], "SUCCEEDED", "{terminal}");
    let stdout = terminal["statusDetails"]["stdout"].as_str().unwrap();
    assert!(
        stdout.ends_with("LAST"),
        "the tail is the end of the output"
    );
    assert!(stdout.chars().count() <= 1024);
    let hwm = vm_hwm_kib(s.daemon.id());
    eprintln!("daemon VmHWM: {hwm} KiB");
    assert!(
        hwm < 64 * 1024,
        "the daemon's peak RSS grew to {hwm} KiB while a step printed 100 MB"
    );
}

/// A system user created for the test and removed afterwards.
struct TestUser(String);

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_user_switches_to_an_unprivileged_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching users needs root (CI runs as root)");
        return;
    }
    let name = format!("iotj{}", std::process::id());
    let created = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            &name,
        ])
        .status()
        .unwrap();
    assert!(created.success(), "useradd failed");
    let _user = TestUser(name.clone());

    let mut s = Stack::start(Options {
        jobs: format!("allowed_users = [\"root\", \"{name}\"]"),
        ..Default::default()
    })
    .await;
    s.handler("whoami.sh", "echo \"user=$(id -un) arg=$1 home=$HOME\"");
    let mut step = handler_step("Who", "whoami.sh", &[]);
    step["action"]["runAsUser"] = json!(name);
    let mut document = doc(vec![step]);
    document["includeStdOut"] = json!("true");
    s.create_job("as-user", document).await;
    let terminal = s.terminal("as-user").await;
    assert_eq!(terminal["status"], "SUCCEEDED", "{terminal}");
    let stdout = terminal["statusDetails"]["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with(&format!("user={name} arg={name} ")),
        "{stdout}"
    );

    // A user outside jobs.allowed_users is refused.
    let mut step = handler_step("Who", "whoami.sh", &[]);
    step["action"]["runAsUser"] = json!("daemon");
    s.create_job("not-allowed", doc(vec![step])).await;
    let terminal = s.terminal("not-allowed").await;
    assert_eq!(terminal["status"], "FAILED", "{terminal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finishing_while_offline_is_reported_after_reconnecting() {
    let mut s = Stack::start(Options::default()).await;
    let (started, go) = (s.path("started"), s.path("go"));
    s.handler(
        "wait.sh",
        &format!(
            "touch {started}\nwhile [ ! -e {go} ]; do sleep 0.1; done\necho finished offline",
            started = started.display(),
            go = go.display()
        ),
    );
    let mut document = doc(vec![handler_step("Wait", "wait.sh", &[])]);
    document["includeStdOut"] = json!("true");
    s.create_job("offline", document).await;
    eventually("the step to start", || started.exists()).await;

    s.stop_broker().await;
    std::fs::write(&go, "").unwrap();
    // The step ends while the daemon has no connection; it keeps the status for later.
    eventually("the job to finish offline", || {
        s.log().contains("job offline SUCCEEDED")
    })
    .await;
    s.restart_broker().await;

    let deadline = Instant::now() + WAIT;
    while s.service_status("offline").await != "SUCCEEDED" {
        assert!(
            Instant::now() < deadline,
            "the final status never arrived; daemon log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record = s
        .service
        .request(|r| Svc::DescribeJobExecution {
            job_id: "offline".into(),
            thing: THING.into(),
            execution_number: None,
            reply: r,
        })
        .await
        .unwrap();
    assert_eq!(record.exec.status_details["stdout"], "finished offline");
}
