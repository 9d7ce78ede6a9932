//! Acceptance 1 and 7 with a real `iotjobsd`: `iotjobs-local` in-process on a manual
//! clock (moved through its admin route, as `serve --manual-clock` does), real handler
//! scripts in a temporary handler directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use iotjobs::local::clock::ManualClock;
use iotjobs::local::control::client::ApiClient;
use iotjobs::local::server::{LocalService, ServeOptions};
use serde_json::{json, Value};

use super::core::{t, thing_arn};
use crate::common::device::{
    eventually, gone, read_pid, Device, DeviceOptions, DAEMON_WAIT as WAIT,
};

const THING: &str = "gateway-1";

struct Stack {
    // First: the daemon is killed before the service stops.
    device: Device,
    api: ApiClient,
    service: Option<LocalService>,
}

impl Stack {
    async fn start(now: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let clock = ManualClock::new(t(now));
        let mut opts = ServeOptions::new(root.join("service")).on_free_ports();
        opts.manual_clock = Some(clock.clone());
        let service = LocalService::start(opts).await.unwrap();
        let api = ApiClient::new(&service.endpoint_url()).unwrap();
        api.call("POST", &format!("/things/{THING}"), Some(&json!({})))
            .await
            .unwrap();
        let device = Device::create_in(
            dir,
            &service.pki,
            service.mqtt_tls_addr.unwrap().port(),
            THING,
            &DeviceOptions {
                boot_id: true,
                ..Default::default()
            },
        );
        let mut s = Stack {
            device,
            api,
            service: Some(service),
        };
        s.spawn_daemon().await;
        s
    }

    /// Starts `iotjobsd` and waits until it is connected to the service's broker.
    async fn spawn_daemon(&mut self) {
        let service = self.service.as_ref().expect("the service is stopped");
        let mut events = service.broker_events().unwrap();
        self.device.spawn(None);
        tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(iotjobs::local::broker::BrokerEvent::Connected { client_id }) =
                    events.recv().await
                {
                    if client_id == THING {
                        return;
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the daemon never connected\n{}", self.log()));
    }

    /// SIGKILL, as the end of a reboot does to whatever is still running.
    fn kill_daemon(&mut self) {
        self.device.kill();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.device.path(name)
    }

    fn handler(&self, name: &str, body: &str) {
        self.device.handler(name, body);
    }

    fn log(&self) -> String {
        self.device.log()
    }

    async fn create_job(&self, job_id: &str, body: Value) {
        self.api
            .call("PUT", &format!("/jobs/{job_id}"), Some(&body))
            .await
            .unwrap();
    }

    async fn job(&self, job_id: &str) -> Value {
        self.api.get(&format!("/jobs/{job_id}")).await.unwrap()["job"].clone()
    }

    async fn execution(&self, job_id: &str) -> Value {
        self.api
            .get(&format!("/things/{THING}/jobs/{job_id}"))
            .await
            .unwrap()["execution"]
            .clone()
    }

    /// Moves the manual clock through the admin route (which also runs the scheduler).
    async fn set_time(&self, time: &str) -> Value {
        self.api
            .call(
                "POST",
                "/iotjobs-local/clock",
                Some(&json!({"setTime": time})),
            )
            .await
            .unwrap()
    }

    /// Polls the service until the execution reaches `status`.
    async fn wait_status(&self, job_id: &str, status: &str) -> Value {
        self.wait_execution(job_id, &format!("reached {status}"), |e| {
            e["status"] == status
        })
        .await
    }

    /// Polls the service until the execution is terminal; returns it.
    async fn wait_terminal(&self, job_id: &str) -> Value {
        const TERMINAL: &[&str] = &[
            "SUCCEEDED",
            "FAILED",
            "REJECTED",
            "TIMED_OUT",
            "CANCELED",
            "REMOVED",
        ];
        self.wait_execution(job_id, "ended", |e| {
            TERMINAL.iter().any(|t| e["status"] == *t)
        })
        .await
    }

    /// Polls the service until the execution satisfies `done`; returns it. `what` says
    /// what never happened when it gives up.
    async fn wait_execution(
        &self,
        job_id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let e = self.execution(job_id).await;
            if done(&e) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "{job_id} never {what}: {e}\ndaemon log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        self.kill_daemon();
        if let Some(s) = self.service.take() {
            s.stop().await.unwrap();
        }
    }
}

/// Acceptance 1: the scheduled-reboot walkthrough. `reboot.sh` is replaced by a script
/// that records the job and the boot it ran in and exits 0 (a reboot requested); the
/// test then reboots the device: it kills the daemon and changes the boot id file,
/// which stands in for the kernel's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_aws_reboot_job_waits_for_its_start_time_then_the_device_reboots() {
    let mut s = Stack::start("2030-01-01T09:00").await;
    let ran = s.path("reboot-ran");
    s.handler(
        "reboot.sh",
        &format!(
            "echo \"$IOTJOBS_JOB_ID $(cat \"$IOTJOBS_BOOT_ID_FILE\")\" >> {}",
            ran.display()
        ),
    );
    s.create_job(
        "reboot-at-10",
        json!({
            "targets": [thing_arn(THING)],
            "jobTemplateArn": "arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot:1.0",
            "schedulingConfig": {"startTime": "2030-01-01T10:00", "endTime": "2030-01-01T12:00",
                "endBehavior": "STOP_ROLLOUT"},
        }),
    )
    .await;
    let job = s.job("reboot-at-10").await;
    assert_eq!(job["status"], "SCHEDULED");
    assert_eq!(job["jobProcessDetails"]["numberOfQueuedThings"], 0);

    // One minute before the start: still SCHEDULED, nothing for the device to run.
    let r = s.set_time("2030-01-01T09:59").await;
    assert_eq!(r["tick"]["started"], json!([]));
    assert_eq!(s.job("reboot-at-10").await["status"], "SCHEDULED");
    let pending = s.api.get(&format!("/things/{THING}/jobs")).await.unwrap();
    assert_eq!(pending["executionSummaries"], json!([]));
    assert!(!ran.exists(), "the reboot step ran before the start time");

    // The start time: IN_PROGRESS, and the device is notified and reboots.
    let r = s.set_time("2030-01-01T10:00").await;
    assert_eq!(r["tick"]["started"], json!(["reboot-at-10"]));
    assert_eq!(s.job("reboot-at-10").await["status"], "IN_PROGRESS");
    eventually("the reboot step to run", || ran.exists()).await;
    let e = s.execution("reboot-at-10").await;
    assert_eq!(
        e["startedAt"],
        t("2030-01-01T10:00").secs(),
        "started at the start time"
    );

    // The daemon holds the step until the system goes down: nothing is reported yet.
    eventually("the reboot to be requested", || {
        s.log().contains("reboot requested; waiting")
    })
    .await;
    assert_eq!(s.execution("reboot-at-10").await["status"], "IN_PROGRESS");

    // The reboot: the daemon dies with the system and comes back in a new boot.
    s.kill_daemon();
    std::fs::write(s.path("boot_id"), "boot-2\n").unwrap();
    s.spawn_daemon().await;
    let e = s.wait_terminal("reboot-at-10").await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}\ndaemon log:\n{}", s.log());
    assert_eq!(e["executionNumber"], 1, "no retry: {e}");
    let job = s.job("reboot-at-10").await;
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["jobProcessDetails"]["numberOfSucceededThings"], 1);
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "reboot-at-10 boot-1\n",
        "reboot.sh ran once, before the reboot"
    );
    s.stop().await;
}

/// Acceptance 7 (and the cancellation matrix as the device sees it): CancelJobExecution
/// and CancelJob with force kill the running handler's process group; without force the
/// running execution is left to finish; cancelling IN_PROGRESS without force is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_cancel_kills_the_running_handler_and_ends_canceled() {
    let s = Stack::start("2030-01-01T09:00").await;
    let (main_pid, child_pid) = (s.path("main.pid"), s.path("child.pid"));
    s.handler(
        "long.sh",
        &format!(
            "rm -f {child} {main}\nsleep 1000 &\necho $! > {child}\necho $$ > {main}\nwait",
            child = child_pid.display(),
            main = main_pid.display()
        ),
    );
    let gate = s.path("go");
    s.handler(
        "gated.sh",
        &format!(
            "while [ ! -f {} ]; do sleep 0.1; done\necho done",
            gate.display()
        ),
    );
    let doc = |handler: &str| {
        json!({"version": "1.0", "steps": [{"action": {"name": "Step", "type": "runHandler",
            "input": {"handler": handler, "path": "default"}}}]})
        .to_string()
    };
    let running = |job: &str| json!({"targets": [thing_arn(THING)], "document": doc("long.sh"), "description": job});

    for (job, via_job) in [("cancel-execution", false), ("cancel-job", true)] {
        s.create_job(job, running(job)).await;
        eventually("the handler to start", || {
            child_pid.exists() && main_pid.exists()
        })
        .await;
        let (main, child) = (read_pid(&main_pid), read_pid(&child_pid));
        assert!(!gone(main) && !gone(child));
        s.wait_status(job, "IN_PROGRESS").await;

        // Without force an IN_PROGRESS execution cannot be cancelled.
        let refused = s
            .api
            .call(
                "PUT",
                &format!("/things/{THING}/jobs/{job}/cancel"),
                Some(&json!({})),
            )
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("InvalidStateTransition"),
            "{refused}"
        );

        if via_job {
            s.api
                .call(
                    "PUT",
                    &format!("/jobs/{job}/cancel?force=true"),
                    Some(&json!({"comment": "stop"})),
                )
                .await
                .unwrap();
        } else {
            s.api
                .call(
                    "PUT",
                    &format!("/things/{THING}/jobs/{job}/cancel?force=true"),
                    Some(&json!({})),
                )
                .await
                .unwrap();
        }
        eventually("the handler's process group to end", || {
            gone(main) && gone(child)
        })
        .await;
        let e = s.execution(job).await;
        assert_eq!(e["status"], "CANCELED");
        assert_eq!(e["forceCanceled"], true);
        if via_job {
            let j = s.job(job).await;
            assert_eq!(j["status"], "CANCELED");
            assert_eq!(j["forceCanceled"], true);
        }
        std::fs::remove_file(&main_pid).unwrap();
        std::fs::remove_file(&child_pid).unwrap();
    }
    assert!(
        s.log().contains("revoked"),
        "the daemon says why it stopped"
    );

    // CancelJob without force: the running execution finishes and reports normally.
    s.create_job(
        "soft",
        json!({"targets": [thing_arn(THING)], "document": doc("gated.sh")}),
    )
    .await;
    s.wait_status("soft", "IN_PROGRESS").await;
    s.api
        .call("PUT", "/jobs/soft/cancel", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(s.job("soft").await["status"], "CANCELED");
    std::fs::write(&gate, "").unwrap();
    s.wait_status("soft", "SUCCEEDED").await;
    s.stop().await;
}

/// Acceptance 6 end to end: a step that never finishes times out on the service's
/// in-progress timer; the device is told, stops the handler, and runs the retry (a new
/// executionNumber) until the retries are spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_step_times_out_and_the_device_runs_each_retry() {
    let s = Stack::start("2030-01-01T09:00").await;
    let runs = s.path("runs");
    s.handler(
        "hang.sh",
        &format!(
            "echo \"$IOTJOBS_EXECUTION_NUMBER $$\" >> {}\nexec sleep 1000",
            runs.display()
        ),
    );
    let doc = json!({"version": "1.0", "steps": [{"action": {"name": "Hang", "type": "runHandler",
        "input": {"handler": "hang.sh", "path": "default"}}}]});
    s.create_job(
        "hung",
        json!({"targets": [thing_arn(THING)], "document": doc.to_string(),
            "timeoutConfig": {"inProgressTimeoutInMinutes": 10},
            "jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "TIMED_OUT", "numberOfRetries": 1}]}}),
    )
    .await;
    let lines = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (n, pid) = l.split_once(' ').unwrap();
                (n.parse::<i64>().unwrap(), pid.parse::<i32>().unwrap())
            })
            .collect::<Vec<_>>()
    };
    eventually("the first attempt to run", || lines().len() == 1).await;
    let e = s.wait_status("hung", "IN_PROGRESS").await;
    assert_eq!(e["executionNumber"], 1);
    assert!(e["approximateSecondsBeforeTimedOut"].as_i64().unwrap() <= 600);

    let r = s.set_time("2030-01-01T09:10").await;
    assert_eq!(r["tick"]["timedOut"], 1);
    assert_eq!(r["tick"]["retried"], 1);
    eventually("the retry to run", || lines().len() == 2).await;
    let l = lines();
    assert_eq!((l[0].0, l[1].0), (1, 2), "the retry is execution 2");
    eventually("the timed-out attempt's handler to end", || gone(l[0].1)).await;
    let first = s
        .api
        .get(&format!("/things/{THING}/jobs/hung?executionNumber=1"))
        .await
        .unwrap();
    assert_eq!(first["execution"]["status"], "TIMED_OUT");
    s.wait_status("hung", "IN_PROGRESS").await;

    let r = s.set_time("2030-01-01T09:20").await;
    assert_eq!(
        (r["tick"]["timedOut"].clone(), r["tick"]["retried"].clone()),
        (json!(1), json!(0))
    );
    eventually("the last attempt's handler to end", || gone(l[1].1)).await;
    let e = s.execution("hung").await;
    assert_eq!(
        (e["executionNumber"].clone(), e["status"].clone()),
        (json!(2), json!("TIMED_OUT"))
    );
    assert_eq!(s.job("hung").await["status"], "COMPLETED");
    assert_eq!(lines().len(), 2, "no third attempt");
    s.stop().await;
}
