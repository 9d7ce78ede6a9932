//! The real `iotjobsd` binary running jobs end to end: iotjobs-local's Jobs service on the
//! embedded mutual-TLS broker, real handler scripts in a temporary handler directory.
//!
//! What the daemon publishes is watched by an observer client (the service identity may
//! subscribe to everything) on `$aws/things/<thing>/jobs/+/update/#`; the service's own
//! record of each execution is read back through its command channel.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::device::{
    eventually, gated_script, gone, read_pid, Device, DeviceOptions, DAEMON_WAIT as WAIT,
};
use common::jobs_service::{doc, handler_step, InProcessService};
use iotjobs::local::service::task::{Command as Svc, ServiceHandle};
use serde_json::{json, Value};

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
    daemon: Device,
    jobs: InProcessService,
    service: ServiceHandle,
    /// Update requests seen so far, per job id, in order.
    updates: Vec<(String, Value)>,
}

impl Stack {
    async fn start(opts: Options) -> Stack {
        let jobs = InProcessService::start(THING).await;
        let mut daemon = Device::create(
            &jobs.pki,
            jobs.port(),
            THING,
            &DeviceOptions {
                jobs: opts.jobs,
                log_level: opts.log_level.unwrap_or("debug"),
                ..Default::default()
            },
        );
        daemon.spawn(None);
        Stack {
            daemon,
            service: jobs.service.clone(),
            jobs,
            updates: Vec::new(),
        }
    }

    async fn stop_broker(&mut self) {
        self.jobs.stop_broker().await;
    }

    /// Starts a fresh broker on the same address (no session survives).
    async fn restart_broker(&mut self) {
        self.jobs.restart_broker().await;
    }

    fn root(&self) -> &Path {
        self.daemon.root()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.daemon.path(name)
    }

    fn handler(&self, name: &str, body: &str) -> PathBuf {
        self.daemon.handler(name, body)
    }

    async fn create_job(&self, job_id: &str, document: Value) {
        self.jobs.create_job(job_id, document).await;
    }

    /// Waits for the daemon's terminal update of `job_id` to be accepted; returns it.
    async fn terminal(&mut self, job_id: &str) -> Value {
        let topic = format!("$aws/things/{THING}/jobs/{job_id}/update");
        let deadline = Instant::now() + WAIT;
        let mut terminal: Option<Value> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.jobs.observed.recv()).await;
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
        self.jobs
            .execution(job_id)
            .await
            .status()
            .as_str()
            .to_string()
    }

    fn log(&self) -> String {
        self.daemon.log()
    }
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
async fn a_finished_job_leaves_no_working_directory_behind() {
    let mut s = Stack::start(Options::default()).await;
    // argv: the handler path, then the file to record the working directory in.
    s.handler("cwd.sh", "shift; pwd > \"$1\"");
    let record = s.path("cwd-of-step");
    let record_arg = record.to_str().unwrap();
    s.create_job(
        "tidy",
        doc(vec![handler_step("Where", "cwd.sh", &[record_arg])]),
    )
    .await;
    assert_eq!(s.terminal("tidy").await["status"], "SUCCEEDED");
    let cwd = PathBuf::from(std::fs::read_to_string(&record).unwrap().trim());
    assert!(
        cwd.starts_with(s.path("state")),
        "the step ran in its job's directory under the state directory: {}",
        cwd.display()
    );
    // Removed once the service has accepted the terminal status.
    eventually("the job's working directory to be removed", || {
        !cwd.exists()
    })
    .await;
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
        &gated_script(
            &format!("touch {}", started.display()),
            &go,
            "echo finished offline",
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
