//! The durability tests' stack: iotjobs-local's Jobs service on the embedded mutual-TLS
//! broker, an observer client counting what the service accepted, and a real `iotjobsd`
//! that tests kill (-9), stop (SIGTERM) and start again over the same state directory.
#![allow(dead_code)] // the soak test and the acceptance tests use different parts

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::device::{Device, DeviceOptions, DAEMON_WAIT};
use common::jobs_service::InProcessService;
use iotjobs::jobs::journal::{Journal, Loaded};
use iotjobs::local::service::task::ServiceHandle;
use serde_json::Value;

pub use common::device::{eventually, gated_script};
pub use common::jobs_service::{doc, handler_step};

/// Generous upper bound for anything a test waits for; never an expected duration.
pub const WAIT: Duration = DAEMON_WAIT;
pub const THING: &str = "gateway-1";
pub const TERMINAL: &[&str] = &["SUCCEEDED", "FAILED", "REJECTED"];

pub struct Stack {
    device: Device,
    jobs: InProcessService,
    pub service: ServiceHandle,
    /// Every update request and reply seen so far: (job id, topic suffix, payload).
    pub seen: Vec<(String, String, Value)>,
}

impl Stack {
    /// Service, broker, observer and the daemon's files (no daemon yet). `jobs` holds
    /// extra lines for the daemon's `[jobs]` section.
    pub async fn start(jobs: &str) -> Stack {
        let service = InProcessService::start(THING).await;
        let device = Device::create(
            &service.pki,
            service.port(),
            THING,
            &DeviceOptions {
                reconnect_max_secs: 1,
                jobs: jobs.into(),
                log_rotation: Some("never"),
                boot_id: true,
                ..Default::default()
            },
        );
        Stack {
            device,
            service: service.service.clone(),
            jobs: service,
            seen: Vec::new(),
        }
    }

    /// Starts `iotjobsd`, optionally with a test failpoint.
    pub fn spawn_daemon(&mut self, failpoint: Option<&str>) {
        self.device.spawn(failpoint);
    }

    /// `kill -9` of the daemon, then what systemd does before a restart: wait until none
    /// of its processes is left. A step being spawned at the kill (forked, not yet
    /// exec'ed) holds a copy of the daemon's descriptors, its single-instance lock among
    /// them, for that moment; a daemon started then would find the lock held and exit.
    pub fn kill_daemon(&mut self) {
        assert!(self.device.is_running(), "no daemon");
        self.device.kill();
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        self.device.sigterm();
    }

    /// SIGTERM; returns the exit status.
    pub async fn stop_daemon(&mut self) -> ExitStatus {
        self.sigterm();
        self.daemon_exit().await
    }

    /// Waits for the daemon to exit on its own (a failpoint, a SIGTERM sent elsewhere).
    pub async fn daemon_exit(&mut self) -> ExitStatus {
        self.device.wait_exit().await
    }

    pub async fn stop_broker(&mut self) {
        self.jobs.stop_broker().await;
    }

    /// A fresh broker on the same address (no session survives).
    pub async fn restart_broker(&mut self) {
        self.jobs.restart_broker().await;
    }

    pub fn root(&self) -> &Path {
        self.device.root()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.device.path(name)
    }

    pub fn handler(&self, name: &str, body: &str) {
        self.device.handler(name, body);
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
        self.jobs.create_job(job_id, document).await;
    }

    /// Moves what the observer saw so far into `seen`.
    pub fn drain(&mut self) {
        let prefix = format!("$aws/things/{THING}/jobs/");
        while let Ok((topic, payload)) = self.jobs.observed.try_recv() {
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
        let record = self.jobs.execution(job_id).await;
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
        self.device.log()
    }
}
