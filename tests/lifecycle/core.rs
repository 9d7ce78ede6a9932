//! Acceptance 2–6 on the sans-I/O core: explicit `now` values, `tick(now)` as the
//! scheduler, the device API as the devices.

use iotjobs::jobs::wire::JobExecutionStatus as S;
use iotjobs::local::clock::Timestamp;
use iotjobs::local::lifecycle::schedule::parse_time;
use iotjobs::local::service::{
    JobsService, NewJob, NewThing, NewThingGroup, Outbound, ServiceConfig,
};
use iotjobs::local::store::{JobConfigs, JobStatus, Store, TargetSelection};
use serde_json::{json, Value};

pub fn t(s: &str) -> Timestamp {
    parse_time("t", s).unwrap()
}

fn plus(ts: Timestamp, secs: i64) -> Timestamp {
    Timestamp::from_millis(ts.millis() + secs * 1000)
}

pub struct Fleet {
    pub svc: JobsService,
    pub things: Vec<String>,
}

pub fn thing_arn(thing: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{thing}")
}

pub fn group_arn(g: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thinggroup/{g}")
}

/// A thing with nothing but its name.
fn new_thing(name: &str) -> NewThing {
    NewThing {
        name: name.into(),
        ..Default::default()
    }
}

/// A job `id` for the group `fleet` with `document` and `configs` (the job's
/// scheduling, rollout, abort, timeout and retry settings in AWS's JSON).
fn fleet_job(id: &str, document: &str, configs: Value) -> NewJob {
    NewJob {
        job_id: id.into(),
        targets: vec![group_arn("fleet")],
        document: document.into(),
        configs: serde_json::from_value::<JobConfigs>(configs).unwrap(),
        ..Default::default()
    }
}

/// A continuous job for the group `fleet` (empty document).
fn continuous_job(id: &str, configs: Value) -> NewJob {
    NewJob {
        target_selection: TargetSelection::Continuous,
        ..fleet_job(id, "{}", configs)
    }
}

impl Fleet {
    /// `n` things `t00`, `t01`, ... in the group `fleet`.
    pub fn new(n: usize, now: Timestamp) -> Fleet {
        let mut svc = JobsService::new(Store::open_in_memory().unwrap(), ServiceConfig::default());
        svc.create_thing_group(
            now,
            NewThingGroup {
                name: "fleet".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let things: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
        for th in &things {
            svc.create_thing(now, new_thing(th)).unwrap();
            svc.add_thing_to_thing_group(now, "fleet", th).unwrap();
        }
        Fleet { svc, things }
    }

    /// A fleet of `n` things (see [`Fleet::new`]) with the job `id` created at `now`.
    pub fn with_job(n: usize, now: Timestamp, id: &str, configs: Value) -> Fleet {
        let mut f = Fleet::new(n, now);
        f.create(now, id, configs);
        f
    }

    pub fn create(&mut self, now: Timestamp, id: &str, configs: Value) -> Vec<Outbound> {
        let job = fleet_job(id, &json!({"operation": "x"}).to_string(), configs);
        self.svc.create_job(now, job).unwrap().messages
    }

    pub fn tick(&mut self, now: Timestamp) -> Vec<Outbound> {
        self.svc.tick(now).unwrap().messages
    }

    /// start-next for `thing` (optionally with a step timer); the execution, if any.
    pub fn start_next(&mut self, now: Timestamp, thing: &str, step: Option<i64>) -> Value {
        let mut req = json!({"clientToken": "c"});
        if let Some(m) = step {
            req["stepTimeoutInMinutes"] = m.into();
        }
        let out = self.svc.handle_device_message(
            now,
            &format!("$aws/things/{thing}/jobs/start-next"),
            req.to_string().as_bytes(),
        );
        assert!(out[0].topic.ends_with("/accepted"), "{out:?}");
        out[0].payload["execution"].clone()
    }

    /// An update from `thing`; the reply (accepted or rejected) payload and its topic.
    pub fn update(
        &mut self,
        now: Timestamp,
        thing: &str,
        job: &str,
        status: &str,
    ) -> (String, Value) {
        let out = self.svc.handle_device_message(
            now,
            &format!("$aws/things/{thing}/jobs/{job}/update"),
            json!({"status": status}).to_string().as_bytes(),
        );
        (out[0].topic.clone(), out[0].payload.clone())
    }

    pub fn status(&self, job: &str, thing: &str) -> Option<S> {
        self.svc
            .describe_job_execution(job, thing, None)
            .ok()
            .map(|r| r.status())
    }

    /// Every thing's status for `job`, in the order of `things`.
    pub fn statuses(&self, job: &str) -> Vec<Option<S>> {
        self.things.iter().map(|th| self.status(job, th)).collect()
    }

    pub fn job_status(&self, job: &str) -> JobStatus {
        self.svc.describe_job(job).unwrap().job.status
    }
}

/// Things that received a notify-next naming `job`.
pub fn notified(msgs: &[Outbound], job: &str) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.topic.ends_with("/notify-next"))
        .filter(|m| m.payload["execution"]["jobId"] == job)
        .map(|m| m.topic.split('/').nth(2).unwrap().to_owned())
        .collect()
}

// ---- 2. end time with each end behaviour ----

/// Six things, four executions rolled out (two started, two queued), two still waiting
/// in the rollout queue, then the end time passes.
fn ended_fleet(behavior: &str) -> Fleet {
    let now = t("2030-01-01T09:00");
    let mut f = Fleet::with_job(
        6,
        now,
        "j",
        json!({
            "schedulingConfig": {"startTime": "2030-01-01T10:00", "endTime": "2030-01-01T11:00",
                "endBehavior": behavior},
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 4}
        }),
    );
    f.tick(t("2030-01-01T10:00"));
    for th in ["t00", "t01"] {
        assert_eq!(f.start_next(t("2030-01-01T10:05"), th, None)["jobId"], "j");
    }
    assert_eq!(f.status("j", "t02"), Some(S::Queued));
    assert_eq!(f.status("j", "t04"), None, "still in the rollout queue");
    f.tick(t("2030-01-01T11:00"));
    f
}

#[test]
fn end_behavior_stop_rollout_keeps_queued_and_running_executions() {
    let mut f = ended_fleet("STOP_ROLLOUT");
    let st = f.statuses("j");
    assert_eq!(
        st,
        [
            Some(S::InProgress),
            Some(S::InProgress),
            Some(S::Queued),
            Some(S::Queued),
            None,
            None
        ]
    );
    assert_eq!(f.job_status("j"), JobStatus::InProgress);
    // Nothing more is rolled out after the end, however long we wait.
    f.tick(t("2030-01-02T11:00"));
    assert_eq!(f.status("j", "t05"), None);
    // Devices may still start the queued ones; once all are terminal the job completes.
    for th in ["t00", "t01", "t02", "t03"] {
        let (topic, _) = f.update(t("2030-01-01T11:30"), th, "j", "SUCCEEDED");
        assert!(topic.ends_with("/accepted"), "{th}");
    }
    assert_eq!(f.job_status("j"), JobStatus::Completed);
}

#[test]
fn end_behavior_cancel_cancels_queued_and_lets_running_ones_finish() {
    let mut f = ended_fleet("CANCEL");
    let st = f.statuses("j");
    assert_eq!(
        st,
        [
            Some(S::InProgress),
            Some(S::InProgress),
            Some(S::Canceled),
            Some(S::Canceled),
            None,
            None
        ]
    );
    let d = f.svc.describe_job("j").unwrap();
    assert_eq!(d.job.status, JobStatus::Canceled);
    assert!(!d.job.force_canceled);
    let (topic, _) = f.update(t("2030-01-01T11:10"), "t00", "j", "SUCCEEDED");
    assert!(topic.ends_with("/accepted"), "running devices finish");
}

#[test]
fn end_behavior_force_cancel_cancels_running_executions_too() {
    let mut f = ended_fleet("FORCE_CANCEL");
    let st = f.statuses("j");
    assert_eq!(
        st,
        [
            Some(S::Canceled),
            Some(S::Canceled),
            Some(S::Canceled),
            Some(S::Canceled),
            None,
            None
        ]
    );
    let d = f.svc.describe_job("j").unwrap();
    assert_eq!(d.job.status, JobStatus::Canceled);
    assert!(d.job.force_canceled);
    assert!(
        f.svc
            .describe_job_execution("j", "t00", None)
            .unwrap()
            .force_canceled
    );
    let (topic, reply) = f.update(t("2030-01-01T11:10"), "t00", "j", "SUCCEEDED");
    assert!(topic.ends_with("/rejected"));
    assert_eq!(reply["code"], "InvalidStateTransition");
    assert_eq!(reply["executionState"]["status"], "CANCELED");
}

// ---- 3. maintenance windows ----

#[test]
fn executions_are_only_created_and_started_inside_maintenance_windows() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::new(5, now);
    let created = f.create(
        now,
        "w",
        json!({
            "schedulingConfig": {"maintenanceWindows": [
                {"startTime": "cron(0 2 * * ? *)", "durationInMinutes": 2}]},
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 2}
        }),
    );
    assert!(notified(&created, "w").is_empty());
    assert_eq!(f.job_status("w"), JobStatus::InProgress);
    let d = f.svc.describe_job_at(now, "w").unwrap();
    assert_eq!(
        d.scheduled_rollouts.len(),
        7,
        "scheduledJobRollouts: the next 7 starts"
    );
    assert_eq!(d.scheduled_rollouts[0], t("2030-01-01T02:00"));
    assert_eq!(d.scheduled_rollouts[6], t("2030-01-07T02:00"));
    assert!(f.tick(t("2030-01-01T01:59")).is_empty());
    assert!(
        f.start_next(t("2030-01-01T01:59"), "t00", None).is_null(),
        "nothing to start before the window"
    );
    let mut per_tick = Vec::new();
    for at in [
        "2030-01-01T02:00",
        "2030-01-01T02:01",
        "2030-01-01T02:02",
        "2030-01-01T12:00",
        "2030-01-02T02:00",
    ] {
        per_tick.push(notified(&f.tick(t(at)), "w").len());
    }
    assert_eq!(
        per_tick,
        [2, 2, 0, 0, 1],
        "2/min inside the 2-minute windows only"
    );
    assert_eq!(f.job_status("w"), JobStatus::InProgress);
}

// ---- 4. rollout rates ----

#[test]
fn maximum_per_minute_caps_new_executions_in_every_simulated_minute() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::new(50, now);
    let mut per_minute = vec![notified(
        &f.create(
            now,
            "r",
            json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 10}}),
        ),
        "r",
    )
    .len()];
    // Tick every 10 simulated seconds for 7 minutes.
    for step in 1..=42 {
        let n = notified(&f.tick(plus(now, step * 10)), "r").len();
        let minute = (step * 10 / 60) as usize;
        if per_minute.len() <= minute {
            per_minute.push(0);
        }
        per_minute[minute] += n;
    }
    assert_eq!(per_minute, [10, 10, 10, 10, 10, 0, 0, 0]);
    let d = f.svc.describe_job("r").unwrap();
    assert_eq!(d.counts.number_of_queued_things, 50);
    assert_eq!(d.rollout_remaining, 0);
}

#[test]
fn exponential_rate_grows_by_the_factor_at_each_threshold() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::new(30, now);
    let cfg = json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 100, "exponentialRate": {
        "baseRatePerMinute": 2, "incrementFactor": 2.0,
        "rateIncreaseCriteria": {"numberOfNotifiedThings": 4}}}});
    let mut per_minute = vec![notified(&f.create(now, "x", cfg), "x").len()];
    for m in 1..=5 {
        per_minute.push(notified(&f.tick(plus(now, m * 60)), "x").len());
    }
    // notified 0 → 2/min, 2 → 2/min, 4 → 4/min, 8 → 8/min, 16 → 16/min (14 left).
    assert_eq!(per_minute, [2, 2, 4, 8, 14, 0]);
}

#[test]
fn exponential_rate_on_succeeded_things_waits_for_successes() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::new(10, now);
    let cfg = json!({"jobExecutionsRolloutConfig": {"exponentialRate": {
        "baseRatePerMinute": 1, "incrementFactor": 3.0,
        "rateIncreaseCriteria": {"numberOfSucceededThings": 1}}}});
    assert_eq!(notified(&f.create(now, "s", cfg), "s"), ["t00"]);
    assert_eq!(
        notified(&f.tick(plus(now, 60)), "s"),
        ["t01"],
        "no success yet: rate 1"
    );
    f.start_next(plus(now, 61), "t00", None);
    f.update(plus(now, 62), "t00", "s", "SUCCEEDED");
    assert_eq!(
        notified(&f.tick(plus(now, 120)), "s").len(),
        3,
        "1 success: rate 3"
    );
}

// ---- 5. abort ----

#[test]
fn abort_cancels_the_job_when_failures_cross_the_threshold() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::with_job(
        50,
        now,
        "a",
        json!({"abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
            "thresholdPercentage": 20, "minNumberOfExecutedThings": 10}]}}),
    );
    // Things run one after another; 30% of them fail.
    for (i, th) in f.things.clone().iter().enumerate().take(10) {
        assert_eq!(
            f.job_status("a"),
            JobStatus::InProgress,
            "not aborted before 10 ran"
        );
        let at = plus(now, 10 * i as i64 + 1);
        assert_eq!(f.start_next(at, th, None)["jobId"], "a");
        let status = if i % 10 == 0 || i % 10 == 3 || i % 10 == 6 {
            "FAILED"
        } else {
            "SUCCEEDED"
        };
        f.update(plus(at, 5), th, "a", status);
    }
    let d = f.svc.describe_job("a").unwrap();
    assert_eq!(d.job.status, JobStatus::Canceled);
    assert!(!d.job.force_canceled);
    assert_eq!(d.job.reason_code.as_deref(), Some("JOB_ABORTED"));
    assert!(
        d.job.comment.as_deref().unwrap().contains("3 of 10"),
        "{:?}",
        d.job.comment
    );
    assert_eq!(d.counts.number_of_canceled_things, 40);
    // The rest never run.
    assert!(f.start_next(plus(now, 500), "t10", None).is_null());
    f.tick(plus(now, 3600));
    assert_eq!(f.status("a", "t49"), Some(S::Canceled));
}

// ---- 6. timeout and retry ----

#[test]
fn a_silent_step_times_out_and_is_retried_with_new_execution_numbers() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::with_job(
        1,
        now,
        "tr",
        json!({"timeoutConfig": {"inProgressTimeoutInMinutes": 10},
               "jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "TIMED_OUT", "numberOfRetries": 2}]}}),
    );
    let mut numbers = Vec::new();
    let mut clock = now;
    for attempt in 0..3 {
        let e = f.start_next(clock, "t00", Some(5));
        numbers.push(e["executionNumber"].as_i64().unwrap());
        // The step timer (5 min) is earlier than the in-progress timer (10 min).
        assert_eq!(
            e["approximateSecondsBeforeTimedOut"], 300,
            "attempt {attempt}"
        );
        assert!(f.tick(plus(clock, 299)).is_empty(), "not yet");
        clock = plus(clock, 300);
        let msgs = f.tick(clock);
        let rec = f
            .svc
            .describe_job_execution("tr", "t00", Some(numbers[attempt]))
            .unwrap();
        assert_eq!(rec.status(), S::TimedOut);
        if attempt < 2 {
            // The device is told: the list changed and the next execution is the retry.
            let next = msgs
                .iter()
                .find(|m| m.topic == "$aws/things/t00/jobs/notify-next")
                .expect("notify-next");
            assert_eq!(
                next.payload["execution"]["executionNumber"],
                numbers[attempt] + 1
            );
            assert_eq!(next.payload["execution"]["status"], "QUEUED");
            assert!(msgs
                .iter()
                .any(|m| m.topic == "$aws/things/t00/jobs/notify"));
        } else {
            let next = msgs
                .iter()
                .find(|m| m.topic.ends_with("/notify-next"))
                .unwrap();
            assert!(next.payload.get("execution").is_none(), "no more retries");
        }
    }
    assert_eq!(numbers, [1, 2, 3]);
    let all = f.svc.list_job_executions_for_job("tr", None).unwrap();
    let attempts: Vec<_> = all.iter().map(|e| (e.retry_attempt, e.status())).collect();
    assert_eq!(
        attempts,
        [(0, S::TimedOut), (1, S::TimedOut), (2, S::TimedOut)]
    );
    assert_eq!(f.job_status("tr"), JobStatus::Completed);
}

#[test]
fn the_in_progress_timer_wins_when_it_is_earlier() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::with_job(
        1,
        now,
        "ip",
        json!({"timeoutConfig": {"inProgressTimeoutInMinutes": 3}}),
    );
    let e = f.start_next(now, "t00", Some(60));
    assert_eq!(e["approximateSecondsBeforeTimedOut"], 180);
    f.tick(plus(now, 180));
    assert_eq!(f.status("ip", "t00"), Some(S::TimedOut));
    let (topic, reply) = f.update(plus(now, 181), "t00", "ip", "SUCCEEDED");
    assert!(topic.ends_with("/rejected"));
    assert_eq!(reply["code"], "InvalidStateTransition");
}

#[test]
fn failed_executions_are_retried_and_rejected_ones_are_not() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::with_job(
        2,
        now,
        "rf",
        json!({"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 1}]}}),
    );
    f.start_next(now, "t00", None);
    f.update(now, "t00", "rf", "FAILED");
    f.start_next(now, "t01", None);
    f.update(now, "t01", "rf", "REJECTED");
    assert_eq!(f.status("rf", "t00"), Some(S::Queued));
    let e = f.start_next(plus(now, 1), "t00", None);
    assert_eq!(e["executionNumber"], 2);
    f.update(plus(now, 2), "t00", "rf", "FAILED");
    assert_eq!(f.status("rf", "t00"), Some(S::Failed), "one retry only");
    assert_eq!(f.status("rf", "t01"), Some(S::Rejected));
    assert_eq!(f.job_status("rf"), JobStatus::Completed);
}

// ---- scheduling and continuous targeting ----

#[test]
fn a_scheduled_job_waits_then_starts_and_tick_is_idempotent() {
    let now = t("2030-01-01T09:00");
    let mut f = Fleet::new(2, now);
    assert!(f
        .create(
            now,
            "s",
            json!({"schedulingConfig": {"startTime": "2030-01-01T10:00"}})
        )
        .is_empty());
    assert_eq!(f.job_status("s"), JobStatus::Scheduled);
    assert!(f.start_next(now, "t00", None).is_null());
    assert!(f.tick(t("2030-01-01T09:59")).is_empty());
    let r = f.svc.tick(t("2030-01-01T10:00")).unwrap();
    assert_eq!(r.value.started, ["s"]);
    assert_eq!(r.value.rolled_out, 2);
    assert_eq!(notified(&r.messages, "s"), ["t00", "t01"]);
    assert_eq!(f.job_status("s"), JobStatus::InProgress);
    let again = f.svc.tick(t("2030-01-01T10:00")).unwrap();
    assert!(again.value.is_empty() && again.messages.is_empty());
}

#[test]
fn a_start_time_in_the_past_is_refused_and_the_lead_time_is_configurable() {
    let now = t("2030-01-01T09:00");
    let mut f = Fleet::new(1, now);
    let job = |start: &str| fleet_job("p", "{}", json!({"schedulingConfig": {"startTime": start}}));
    assert!(f.svc.create_job(now, job("2030-01-01T08:59")).is_err());
    let mut strict = JobsService::new(
        Store::open_in_memory().unwrap(),
        ServiceConfig {
            min_schedule_lead_minutes: 30,
            ..Default::default()
        },
    );
    strict.create_thing(now, new_thing("t00")).unwrap();
    let mut j = job("2030-01-01T09:10");
    j.targets = vec![thing_arn("t00")];
    let e = strict.create_job(now, j).unwrap_err();
    assert!(e.to_string().contains("30 minutes"), "{e}");
}

#[test]
fn continuous_jobs_reach_later_members_only_inside_the_schedule() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::new(2, now);
    let job = continuous_job(
        "c",
        json!({
            "schedulingConfig": {"startTime": "2030-01-01T01:00", "endTime": "2030-01-01T05:00",
                "maintenanceWindows": [{"startTime": "cron(0 2 * * ? *)", "durationInMinutes": 60}]},
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 1}}),
    );
    f.svc.create_job(now, job).unwrap();
    let add = |f: &mut Fleet, at: Timestamp, name: &str| {
        f.svc.create_thing(at, new_thing(name)).unwrap();
        f.svc
            .add_thing_to_thing_group(at, "fleet", name)
            .unwrap()
            .messages
    };
    // Joins while SCHEDULED: waits like the rest.
    assert!(notified(&add(&mut f, t("2030-01-01T00:30"), "early"), "c").is_empty());
    f.tick(t("2030-01-01T01:00"));
    assert_eq!(f.job_status("c"), JobStatus::InProgress);
    assert_eq!(f.status("c", "early"), None, "outside the window");
    // The window opens: the initial targets at the rollout rate (1/min).
    assert_eq!(notified(&f.tick(t("2030-01-01T02:00")), "c").len(), 1);
    // Joining inside the window: an execution at once, not paced by the rate.
    assert_eq!(
        notified(&add(&mut f, t("2030-01-01T02:00:30"), "mid"), "c"),
        ["mid"]
    );
    // Joining between windows waits for the next one... which is after the end.
    assert!(notified(&add(&mut f, t("2030-01-01T03:30"), "late"), "c").is_empty());
    f.tick(t("2030-01-01T05:00"));
    assert_eq!(f.status("c", "late"), None);
    assert_eq!(
        f.job_status("c"),
        JobStatus::InProgress,
        "continuous jobs never complete"
    );
    // Leaving the group removes the pending execution.
    f.svc
        .remove_thing_from_thing_group(t("2030-01-01T05:01"), "fleet", "mid")
        .unwrap();
    assert_eq!(f.status("c", "mid"), Some(S::Removed));
}

#[test]
fn cancel_job_drops_the_rollout_queue() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::with_job(
        5,
        now,
        "q",
        json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 2}}),
    );
    f.svc.cancel_job(now, "q", false, None, None).unwrap();
    f.tick(plus(now, 600));
    let d = f.svc.describe_job("q").unwrap();
    assert_eq!(d.rollout_remaining, 0);
    assert_eq!(d.counts.number_of_canceled_things, 2);
    assert_eq!(f.status("q", "t04"), None);
}

#[test]
fn an_abort_cancels_queued_retries_and_makes_no_more() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::with_job(
        4,
        now,
        "ar",
        json!({"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 5}]},
               "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
                   "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}]}}),
    );
    // t00 fails: a retry is queued; 1 thing executed, below the minimum.
    f.start_next(now, "t00", None);
    f.update(now, "t00", "ar", "FAILED");
    assert_eq!(f.status("ar", "t00"), Some(S::Queued));
    assert_eq!(f.job_status("ar"), JobStatus::InProgress);
    f.start_next(now, "t02", None);
    // t01 succeeds: 1 failed of 2 executed = 50% → abort.
    f.start_next(now, "t01", None);
    f.update(now, "t01", "ar", "SUCCEEDED");
    let d = f.svc.describe_job("ar").unwrap();
    assert_eq!(d.job.status, JobStatus::Canceled);
    assert_eq!(
        f.status("ar", "t00"),
        Some(S::Canceled),
        "the queued retry is cancelled"
    );
    assert_eq!(f.status("ar", "t03"), Some(S::Canceled));
    assert_eq!(
        f.status("ar", "t02"),
        Some(S::InProgress),
        "abort never cancels running ones"
    );
    // t02 fails after the abort: no retry any more.
    f.update(plus(now, 1), "t02", "ar", "FAILED");
    assert_eq!(f.status("ar", "t02"), Some(S::Failed));
    let attempts = f.svc.list_job_executions_for_job("ar", None).unwrap();
    assert_eq!(attempts.len(), 5, "t00 twice, t01, t02, t03 once");
}

#[test]
fn leaving_and_rejoining_a_continuous_job_resets_the_retry_count() {
    let now = t("2030-01-01T00:00");
    let mut f = Fleet::new(1, now);
    let job = continuous_job(
        "cr",
        json!({"jobExecutionsRetryConfig": {
            "criteriaList": [{"failureType": "FAILED", "numberOfRetries": 1}]}}),
    );
    f.svc.create_job(now, job).unwrap();
    f.start_next(now, "t00", None);
    f.update(now, "t00", "cr", "FAILED");
    // The retry (execution 2) is pending; leaving the group removes it.
    assert_eq!(f.status("cr", "t00"), Some(S::Queued));
    f.svc
        .remove_thing_from_thing_group(plus(now, 1), "fleet", "t00")
        .unwrap();
    assert_eq!(f.status("cr", "t00"), Some(S::Removed));
    // Rejoining starts a new run: execution 3, retryAttempt 0, with its retry available.
    f.svc
        .add_thing_to_thing_group(plus(now, 2), "fleet", "t00")
        .unwrap();
    let e = f.start_next(plus(now, 3), "t00", None);
    assert_eq!(e["executionNumber"], 3);
    f.update(plus(now, 3), "t00", "cr", "FAILED");
    let latest = f.svc.describe_job_execution("cr", "t00", None).unwrap();
    assert_eq!((latest.exec.execution_number, latest.retry_attempt), (4, 1));
    assert_eq!(latest.status(), S::Queued);
}
