//! The local Jobs service: the device API and notifications on the sans-I/O core
//! (reference §2, §3, §10.3), persistence across a restart, and one end-to-end run over
//! the embedded broker with mutual TLS.
#![cfg(feature = "local")]

use iotjobs::jobs::wire::JobExecutionStatus;
use iotjobs::local::clock::Timestamp;
use iotjobs::local::service::{
    JobsService, NewJob, NewThing, NewThingGroup, Outbound, ServiceConfig,
};
use iotjobs::local::store::{JobStatus, Store, TargetSelection};
use serde_json::{json, Value};

const T0: i64 = 1_700_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_secs(T0 + s)
}

fn service() -> JobsService {
    JobsService::new(Store::open_in_memory().unwrap(), ServiceConfig::default())
}

fn thing_arn(t: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{t}")
}

fn add_thing(svc: &mut JobsService, name: &str) {
    svc.create_thing(
        at(0),
        NewThing {
            name: name.into(),
            ..Default::default()
        },
    )
    .unwrap();
}

fn new_job(id: &str, targets: &[String]) -> NewJob {
    NewJob {
        job_id: id.into(),
        targets: targets.to_vec(),
        document: json!({"operation": id}).to_string(),
        ..Default::default()
    }
}

fn create_job(svc: &mut JobsService, s: i64, id: &str, thing: &str) -> Vec<Outbound> {
    svc.create_job(at(s), new_job(id, &[thing_arn(thing)]))
        .unwrap()
        .messages
}

fn device(svc: &mut JobsService, s: i64, topic: &str, payload: Value) -> Vec<Outbound> {
    svc.handle_device_message(at(s), topic, payload.to_string().as_bytes())
}

fn topics(msgs: &[Outbound]) -> Vec<&str> {
    msgs.iter().map(|m| m.topic.as_str()).collect()
}

/// `jobs` of a notify payload as (status, [jobId...]) pairs, in key order.
fn notify_jobs(v: &Value) -> Vec<(String, Vec<String>)> {
    v["jobs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, list)| {
            let ids = list
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["jobId"].as_str().unwrap().to_owned())
                .collect();
            (k.clone(), ids)
        })
        .collect()
}

fn j(status: &str, ids: &[&str]) -> (String, Vec<String>) {
    (
        status.to_owned(),
        ids.iter().map(|s| s.to_string()).collect(),
    )
}

const NOTIFY: &str = "$aws/things/t1/jobs/notify";
const NEXT: &str = "$aws/things/t1/jobs/notify-next";

/// Reference §2.5 walkthrough, step by step: exactly which notifications each change sends.
#[test]
fn notify_walkthrough() {
    let mut svc = service();
    add_thing(&mut svc, "t1");

    // 1. create job1 → notify{QUEUED:[job1]} + notify-next(job1)
    let m = create_job(&mut svc, 10, "job1", "t1");
    assert_eq!(topics(&m), [NOTIFY, NEXT]);
    assert_eq!(notify_jobs(&m[0].payload), [j("QUEUED", &["job1"])]);
    assert_eq!(m[0].payload["timestamp"], T0 + 10);
    let ex = &m[1].payload["execution"];
    assert_eq!(ex["jobId"], "job1");
    assert_eq!(ex["status"], "QUEUED");
    assert_eq!(ex["versionNumber"], 1);
    assert_eq!(ex["executionNumber"], 1);
    assert_eq!(ex["queuedAt"], T0 + 10);
    assert_eq!(ex["jobDocument"], json!({"operation": "job1"}));

    // 2. create job2 → notify{QUEUED:[job1,job2]}, no notify-next
    let m = create_job(&mut svc, 20, "job2", "t1");
    assert_eq!(topics(&m), [NOTIFY]);
    assert_eq!(notify_jobs(&m[0].payload), [j("QUEUED", &["job1", "job2"])]);

    // 3. device starts job1 → only the reply
    let m = device(&mut svc, 30, "$aws/things/t1/jobs/start-next", json!({}));
    assert_eq!(topics(&m), ["$aws/things/t1/jobs/start-next/accepted"]);
    assert_eq!(m[0].payload["execution"]["jobId"], "job1");
    assert_eq!(m[0].payload["execution"]["status"], "IN_PROGRESS");

    // 4. create job3 → notify{IN_PROGRESS:[job1], QUEUED:[job2,job3]}
    let m = create_job(&mut svc, 40, "job3", "t1");
    assert_eq!(topics(&m), [NOTIFY]);
    let mut got = notify_jobs(&m[0].payload);
    got.sort();
    assert_eq!(
        got,
        [j("IN_PROGRESS", &["job1"]), j("QUEUED", &["job2", "job3"])]
    );

    // 5. job1 SUCCEEDED → notify{QUEUED:[job2,job3]} + notify-next(job2)
    let m = device(
        &mut svc,
        50,
        "$aws/things/t1/jobs/job1/update",
        json!({"status": "SUCCEEDED"}),
    );
    assert_eq!(
        topics(&m),
        ["$aws/things/t1/jobs/job1/update/accepted", NOTIFY, NEXT]
    );
    assert_eq!(notify_jobs(&m[1].payload), [j("QUEUED", &["job2", "job3"])]);
    assert_eq!(m[2].payload["execution"]["jobId"], "job2");
    assert_eq!(m[2].payload["execution"]["status"], "QUEUED");

    // 6. job3 set IN_PROGRESS directly → notify-next(job3, IN_PROGRESS, startedAt) only
    let m = device(
        &mut svc,
        60,
        "$aws/things/t1/jobs/job3/update",
        json!({"status": "IN_PROGRESS"}),
    );
    assert_eq!(
        topics(&m),
        ["$aws/things/t1/jobs/job3/update/accepted", NEXT]
    );
    let ex = &m[1].payload["execution"];
    assert_eq!(ex["jobId"], "job3");
    assert_eq!(ex["status"], "IN_PROGRESS");
    assert_eq!(ex["startedAt"], T0 + 60);
    assert_eq!(ex["versionNumber"], 2);

    // 7. job2 REJECTED → notify{IN_PROGRESS:[job3]}, head unchanged
    let m = device(
        &mut svc,
        70,
        "$aws/things/t1/jobs/job2/update",
        json!({"status": "REJECTED"}),
    );
    assert_eq!(
        topics(&m),
        ["$aws/things/t1/jobs/job2/update/accepted", NOTIFY]
    );
    assert_eq!(notify_jobs(&m[1].payload), [j("IN_PROGRESS", &["job3"])]);

    // 8. job3 force-deleted → notify{"jobs":{}} + notify-next without execution
    let m = svc.delete_job(at(80), "job3", true).unwrap().messages;
    assert_eq!(topics(&m), [NOTIFY, NEXT]);
    assert_eq!(m[0].payload, json!({"jobs": {}, "timestamp": T0 + 80}));
    assert_eq!(m[1].payload, json!({"timestamp": T0 + 80}));
}

// ---------------------------------------------------------------- state matrix

const ALL: [JobExecutionStatus; 8] = JobExecutionStatus::ALL;

/// Brings a fresh execution of `job` on t1 into `status` the way it happens in the service:
/// device updates, control-plane cancel and thing deletion; TIMED_OUT (whose timer belongs to
/// the scheduler) is written through the store as that timer would.
fn execution_in(svc: &mut JobsService, job: &str, status: JobExecutionStatus) {
    use JobExecutionStatus as S;
    create_job(svc, 1, job, "t1");
    let upd = format!("$aws/things/t1/jobs/{job}/update");
    let ok = |m: Vec<Outbound>| assert!(m[0].topic.ends_with("/accepted"), "{m:?}");
    match status {
        S::Queued => {}
        S::InProgress | S::Succeeded | S::Failed | S::Rejected => {
            ok(device(svc, 2, &upd, json!({"status": status.as_str()})))
        }
        S::Canceled => {
            svc.cancel_job_execution(at(2), job, "t1", false, None, None)
                .unwrap();
        }
        S::TimedOut => {
            ok(device(svc, 2, &upd, json!({"status": "IN_PROGRESS"})));
            let mut rec = svc.describe_job_execution(job, "t1", None).unwrap();
            rec.exec.status = S::TimedOut;
            rec.exec.version_number += 1;
            svc.store().update_execution(&rec).unwrap();
        }
        S::Removed => {
            // A deleted thing's pending executions are REMOVED; the records stay.
            svc.delete_thing(at(2), "t1").unwrap();
        }
    }
    let rec = svc.describe_job_execution(job, "t1", None).unwrap();
    assert_eq!(rec.exec.status, status);
}

/// Reference §3.2: every (from, to) pair through UpdateJobExecution.
#[test]
fn state_transition_matrix() {
    use JobExecutionStatus as S;
    for from in ALL {
        for to in ALL {
            let mut svc = service();
            add_thing(&mut svc, "t1");
            execution_in(&mut svc, "j", from);
            let before = svc.describe_job_execution("j", "t1", None).unwrap();
            let m = device(
                &mut svc,
                10,
                "$aws/things/t1/jobs/j/update",
                json!({"status": to.as_str(), "clientToken": "tok"}),
            );
            let after = svc.describe_job_execution("j", "t1", None).unwrap();
            let device_settable =
                matches!(to, S::InProgress | S::Succeeded | S::Failed | S::Rejected);
            let case = format!("{from} -> {to}");
            if from.is_terminal() {
                assert_eq!(
                    m[0].topic, "$aws/things/t1/jobs/j/update/rejected",
                    "{case}"
                );
                assert_eq!(m[0].payload["code"], "InvalidStateTransition", "{case}");
                assert_eq!(
                    m[0].payload["executionState"]["status"],
                    from.as_str(),
                    "{case}"
                );
                assert_eq!(
                    m[0].payload["executionState"]["versionNumber"], before.exec.version_number,
                    "{case}"
                );
                assert_eq!(after, before, "{case}: a rejection changes nothing");
            } else if !device_settable {
                assert_eq!(m[0].payload["code"], "InvalidRequest", "{case}");
                assert!(m[0].payload.get("executionState").is_none(), "{case}");
                assert_eq!(after, before, "{case}");
            } else {
                assert_eq!(
                    m[0].topic, "$aws/things/t1/jobs/j/update/accepted",
                    "{case}"
                );
                assert_eq!(m[0].payload["clientToken"], "tok", "{case}");
                assert_eq!(after.exec.status, to, "{case}");
                assert_eq!(
                    after.exec.version_number,
                    before.exec.version_number + 1,
                    "{case}"
                );
                assert_eq!(after.exec.last_updated_at, T0 + 10, "{case}");
                let started = if from == S::Queued && to == S::InProgress {
                    Some(T0 + 10)
                } else {
                    before.exec.started_at
                };
                assert_eq!(after.exec.started_at, started, "{case}");
            }
        }
    }
}

// ---------------------------------------------------------------- versions and errors

#[test]
fn expected_version_and_version_mismatch() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    let upd = "$aws/things/t1/jobs/j/update";

    let m = device(
        &mut svc,
        2,
        upd,
        json!({"status": "IN_PROGRESS", "expectedVersion": 1,
               "statusDetails": {"step": "1"}, "includeJobExecutionState": true}),
    );
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/j/update/accepted");
    assert_eq!(
        m[0].payload["executionState"],
        json!({"status": "IN_PROGRESS", "statusDetails": {"step": "1"}, "versionNumber": 2})
    );

    // A stale version is refused with the current state, and nothing changes.
    let m = device(
        &mut svc,
        3,
        upd,
        json!({"status": "SUCCEEDED", "expectedVersion": 1, "clientToken": "c-7"}),
    );
    assert_eq!(topics(&m), ["$aws/things/t1/jobs/j/update/rejected"]);
    let p = &m[0].payload;
    assert_eq!(p["code"], "VersionMismatch");
    assert_eq!(p["clientToken"], "c-7");
    assert_eq!(p["timestamp"], T0 + 3);
    assert!(p["message"].as_str().unwrap().contains("expectedVersion"));
    assert_eq!(
        p["executionState"],
        json!({"status": "IN_PROGRESS", "statusDetails": {"step": "1"}, "versionNumber": 2})
    );
    let rec = svc.describe_job_execution("j", "t1", None).unwrap();
    assert_eq!(rec.exec.status, JobExecutionStatus::InProgress);
    assert_eq!(rec.exec.version_number, 2);

    // The matching version goes through; statusDetails absent = unchanged.
    let m = device(
        &mut svc,
        4,
        upd,
        json!({"status": "IN_PROGRESS", "expectedVersion": 2, "includeJobExecutionState": true}),
    );
    assert_eq!(m[0].payload["executionState"]["versionNumber"], 3);
    assert_eq!(
        m[0].payload["executionState"]["statusDetails"],
        json!({"step": "1"})
    );
}

/// The rejected payload in both shapes: with `executionState` (InvalidStateTransition,
/// VersionMismatch) and without (every other code), always with code, message, timestamp
/// and the request's clientToken when it could be read.
#[test]
fn both_error_shapes() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    device(
        &mut svc,
        2,
        "$aws/things/t1/jobs/j/update",
        json!({"status": "SUCCEEDED"}),
    );

    // With executionState.
    let m = device(
        &mut svc,
        3,
        "$aws/things/t1/jobs/j/update",
        json!({"status": "IN_PROGRESS", "clientToken": "a"}),
    );
    let p = m[0].payload.as_object().unwrap();
    let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "clientToken",
            "code",
            "executionState",
            "message",
            "timestamp"
        ]
    );
    assert_eq!(p["code"], "InvalidStateTransition");
    assert_eq!(
        p["executionState"],
        json!({"status": "SUCCEEDED", "versionNumber": 2})
    );

    // Without executionState: unknown job.
    let m = device(
        &mut svc,
        3,
        "$aws/things/t1/jobs/nope/update",
        json!({"status": "IN_PROGRESS", "clientToken": "b"}),
    );
    let p = m[0].payload.as_object().unwrap();
    let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["clientToken", "code", "message", "timestamp"]);
    assert_eq!(p["code"], "ResourceNotFound");
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/nope/update/rejected");

    // Not JSON: InvalidJson, no token to echo.
    let m = svc.handle_device_message(at(4), "$aws/things/t1/jobs/get", b"{not json");
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/get/rejected");
    assert_eq!(m[0].payload["code"], "InvalidJson");
    assert!(m[0].payload.get("clientToken").is_none());

    // Bad field values: InvalidRequest, token echoed.
    for (topic, body) in [
        (
            "$aws/things/t1/jobs/j/update",
            json!({"status": "BOGUS", "clientToken": "c"}),
        ),
        ("$aws/things/t1/jobs/j/update", json!({"clientToken": "c"})),
        (
            "$aws/things/t1/jobs/start-next",
            json!({"stepTimeoutInMinutes": 0, "clientToken": "c"}),
        ),
        (
            "$aws/things/t1/jobs/start-next",
            json!({"stepTimeoutInMinutes": -1, "clientToken": "c"}),
        ),
        (
            "$aws/things/t1/jobs/start-next",
            json!({"statusDetails": {"bad key!": "v"}, "clientToken": "c"}),
        ),
        (
            "$aws/things/t1/jobs/start-next",
            json!({"statusDetails": {"k": "line\nbreak"}, "clientToken": "c"}),
        ),
    ] {
        let m = device(&mut svc, 5, topic, body.clone());
        assert_eq!(m.len(), 1, "{body}");
        assert_eq!(m[0].payload["code"], "InvalidRequest", "{body}");
        assert_eq!(m[0].payload["clientToken"], "c", "{body}");
        assert!(m[0].payload.get("executionState").is_none(), "{body}");
    }

    // A topic under jobs/ that is no operation: InvalidTopic on <topic>/rejected.
    let m = device(
        &mut svc,
        6,
        "$aws/things/t1/jobs/j/frobnicate",
        json!({"clientToken": "d"}),
    );
    assert_eq!(topics(&m), ["$aws/things/t1/jobs/j/frobnicate/rejected"]);
    assert_eq!(m[0].payload["code"], "InvalidTopic");
    assert_eq!(m[0].payload["clientToken"], "d");
    // ... and that reply, seen again on the service's own subscription, is not answered.
    assert!(device(&mut svc, 6, &m[0].topic, m[0].payload.clone()).is_empty());
}

#[test]
fn client_token_echo_on_every_operation() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    let cases = [
        ("$aws/things/t1/jobs/get", json!({})),
        ("$aws/things/t1/jobs/$next/get", json!({})),
        ("$aws/things/t1/jobs/j/get", json!({})),
        ("$aws/things/t1/jobs/start-next", json!({})),
        (
            "$aws/things/t1/jobs/j/update",
            json!({"status": "IN_PROGRESS"}),
        ),
        ("$aws/things/t1/jobs/zz/get", json!({})), // rejected: unknown job
    ];
    for (i, (topic, mut body)) in cases.into_iter().enumerate() {
        let token = format!("8a0c4f4e-{i}");
        body["clientToken"] = json!(token);
        let m = device(&mut svc, 2, topic, body);
        assert!(
            m[0].topic == format!("{topic}/accepted") || m[0].topic == format!("{topic}/rejected"),
            "{topic}: {:?}",
            m[0].topic
        );
        assert_eq!(m[0].payload["clientToken"], json!(token), "{topic}");
        assert_eq!(m[0].payload["timestamp"], T0 + 2, "{topic}");
        // Without a token, no clientToken key at all.
        let m = device(&mut svc, 2, topic, json!({"status": "IN_PROGRESS"}));
        assert!(m[0].payload.get("clientToken").is_none(), "{topic}");
    }
}

#[test]
fn describe_terminal_execution_is_terminal_state_reached() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    device(
        &mut svc,
        2,
        "$aws/things/t1/jobs/j/update",
        json!({"status": "FAILED"}),
    );
    let m = device(
        &mut svc,
        3,
        "$aws/things/t1/jobs/j/get",
        json!({"clientToken": "x"}),
    );
    assert_eq!(topics(&m), ["$aws/things/t1/jobs/j/get/rejected"]);
    assert_eq!(m[0].payload["code"], "TerminalStateReached");
    assert_eq!(m[0].payload["clientToken"], "x");

    // With the switch off, the terminal record is returned instead.
    let store = svc.into_store();
    let cfg = ServiceConfig {
        describe_terminal_rejected: false,
        ..Default::default()
    };
    let mut svc = JobsService::new(store, cfg);
    let m = device(&mut svc, 3, "$aws/things/t1/jobs/j/get", json!({}));
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/j/get/accepted");
    assert_eq!(m[0].payload["execution"]["status"], "FAILED");
}

// ---------------------------------------------------------------- device API details

#[test]
fn get_pending_lists_in_progress_first_in_queue_order_and_caps_at_ten() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    for i in 0..12 {
        create_job(&mut svc, i, &format!("job{i:02}"), "t1");
    }
    // job05 started by the device: it moves to the front.
    device(
        &mut svc,
        20,
        "$aws/things/t1/jobs/job05/update",
        json!({"status": "IN_PROGRESS"}),
    );
    let m = device(
        &mut svc,
        21,
        "$aws/things/t1/jobs/get",
        json!({"clientToken": "g"}),
    );
    assert_eq!(topics(&m), ["$aws/things/t1/jobs/get/accepted"]);
    let p = &m[0].payload;
    let ids = |k: &str| -> Vec<String> {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|e| e["jobId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("inProgressJobs"), ["job05"]);
    assert_eq!(
        ids("queuedJobs"),
        ["job00", "job01", "job02", "job03", "job04", "job06", "job07", "job08", "job09"]
    );
    let first = &p["inProgressJobs"][0];
    assert_eq!(first["startedAt"], T0 + 20);
    assert_eq!(first["versionNumber"], 2);
    assert_eq!(first["executionNumber"], 1);
    assert!(first.get("status").is_none() && first.get("jobDocument").is_none());
    assert!(p["queuedJobs"][0].get("startedAt").is_none());

    // Unknown thing: two empty lists.
    let m = device(&mut svc, 22, "$aws/things/ghost/jobs/get", json!({}));
    assert_eq!(m[0].payload["inProgressJobs"], json!([]));
    assert_eq!(m[0].payload["queuedJobs"], json!([]));
}

#[test]
fn start_next_and_describe_next() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    // Nothing pending: accepted without `execution`.
    let m = device(
        &mut svc,
        1,
        "$aws/things/t1/jobs/start-next",
        json!({"clientToken": "s"}),
    );
    assert_eq!(
        m[0].payload,
        json!({"timestamp": T0 + 1, "clientToken": "s"})
    );
    let m = device(&mut svc, 1, "$aws/things/t1/jobs/$next/get", json!({}));
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/$next/get/accepted");
    assert_eq!(m[0].payload, json!({"timestamp": T0 + 1}));

    create_job(&mut svc, 2, "a", "t1");
    create_job(&mut svc, 3, "b", "t1");
    // $next describes the head without changing it.
    let m = device(&mut svc, 4, "$aws/things/t1/jobs/$next/get", json!({}));
    assert_eq!(m[0].payload["execution"]["jobId"], "a");
    assert_eq!(m[0].payload["execution"]["status"], "QUEUED");
    assert_eq!(
        m[0].payload["execution"]["jobDocument"],
        json!({"operation": "a"})
    );

    let m = device(
        &mut svc,
        5,
        "$aws/things/t1/jobs/start-next",
        json!({"statusDetails": {"phase": "download"}, "stepTimeoutInMinutes": 5}),
    );
    assert_eq!(
        m.len(),
        1,
        "starting the head changes no notification: {m:?}"
    );
    let ex = &m[0].payload["execution"];
    assert_eq!(ex["jobId"], "a");
    assert_eq!(ex["thingName"], "t1");
    assert_eq!(ex["status"], "IN_PROGRESS");
    assert_eq!(ex["statusDetails"], json!({"phase": "download"}));
    assert_eq!(ex["startedAt"], T0 + 5);
    assert_eq!(ex["versionNumber"], 2);
    assert_eq!(ex["approximateSecondsBeforeTimedOut"], 300);
    assert_eq!(ex["jobDocument"], json!({"operation": "a"}));

    // start-next again returns the same IN_PROGRESS execution, unchanged.
    let m = device(
        &mut svc,
        65,
        "$aws/things/t1/jobs/start-next",
        json!({"statusDetails": {"phase": "other"}}),
    );
    let ex = &m[0].payload["execution"];
    assert_eq!(ex["jobId"], "a");
    assert_eq!(ex["versionNumber"], 2);
    assert_eq!(ex["statusDetails"], json!({"phase": "download"}));
    assert_eq!(ex["approximateSecondsBeforeTimedOut"], 240);

    // Describe by id, without the document.
    let m = device(
        &mut svc,
        66,
        "$aws/things/t1/jobs/b/get",
        json!({"includeJobDocument": false, "executionNumber": 1}),
    );
    assert_eq!(m[0].payload["execution"]["jobId"], "b");
    assert!(m[0].payload["execution"].get("jobDocument").is_none());
    let m = device(
        &mut svc,
        66,
        "$aws/things/t1/jobs/b/get",
        json!({"executionNumber": 2}),
    );
    assert_eq!(m[0].payload["code"], "ResourceNotFound");
}

/// Step timer replaced, capped by the in-progress timer, cancelled with -1 (reference §3.7).
#[test]
fn timers_and_approximate_seconds_before_timed_out() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    let mut job = new_job("j", &[thing_arn("t1")]);
    job.configs.timeout_config = Some(json!({"inProgressTimeoutInMinutes": 20}));
    svc.create_job(at(0), job).unwrap();
    let upd = "$aws/things/t1/jobs/j/update";
    let describe = |svc: &mut JobsService, s: i64| {
        let m = device(svc, s, "$aws/things/t1/jobs/j/get", json!({}));
        m[0].payload["execution"]["approximateSecondsBeforeTimedOut"].clone()
    };
    // No timer while QUEUED.
    assert_eq!(describe(&mut svc, 0), Value::Null);
    // 12:00 start: in-progress deadline 12:20.
    device(&mut svc, 0, upd, json!({"status": "IN_PROGRESS"}));
    assert_eq!(describe(&mut svc, 0), 1200);
    // 12:05 step 7 → 12:12.
    device(
        &mut svc,
        300,
        upd,
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 7}),
    );
    assert_eq!(describe(&mut svc, 300), 420);
    // 12:10 step 5 → 12:15 (replaces, counting from now).
    device(
        &mut svc,
        600,
        upd,
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 5}),
    );
    assert_eq!(describe(&mut svc, 600), 300);
    // 12:13 step 9 → capped at 12:20.
    device(
        &mut svc,
        780,
        upd,
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 9}),
    );
    assert_eq!(describe(&mut svc, 780), 420);
    let rec = svc.describe_job_execution("j", "t1", None).unwrap();
    assert_eq!(rec.exec.step_deadline, Some(T0 + 780 + 540));
    assert_eq!(rec.exec.in_progress_deadline, Some(T0 + 1200));
    // -1 cancels the step timer; the in-progress one stays.
    device(
        &mut svc,
        800,
        upd,
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": -1}),
    );
    assert_eq!(describe(&mut svc, 800), 400);
    // Terminal: timers stop, nothing reported.
    device(&mut svc, 900, upd, json!({"status": "SUCCEEDED"}));
    let rec = svc.describe_job_execution("j", "t1", None).unwrap();
    assert_eq!(rec.exec.step_deadline, None);
    assert_eq!(rec.exec.in_progress_deadline, None);
}

#[test]
fn update_accepted_optional_parts() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    let m = device(
        &mut svc,
        2,
        "$aws/things/t1/jobs/j/update",
        json!({"status": "IN_PROGRESS"}),
    );
    assert_eq!(m[0].payload, json!({"timestamp": T0 + 2}));
    let m = device(
        &mut svc,
        3,
        "$aws/things/t1/jobs/j/update",
        json!({"status": "IN_PROGRESS", "includeJobDocument": true, "includeJobExecutionState": true,
               "statusDetails": {"a": "b"}}),
    );
    assert_eq!(
        m[0].payload,
        json!({"timestamp": T0 + 3, "jobDocument": {"operation": "j"},
               "executionState": {"status": "IN_PROGRESS", "statusDetails": {"a": "b"}, "versionNumber": 3}})
    );
}

// ---------------------------------------------------------------- control operations

fn add_group(svc: &mut JobsService, name: &str, parent: Option<&str>) {
    svc.create_thing_group(
        at(0),
        NewThingGroup {
            name: name.into(),
            parent: parent.map(Into::into),
            ..Default::default()
        },
    )
    .unwrap();
}

fn group_arn(g: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thinggroup/{g}")
}

/// Reference §3.9: cancel without force leaves IN_PROGRESS alone (the device finishes);
/// with force the running device is told through notify/notify-next and its next update
/// is refused with the CANCELED state.
#[test]
fn cancel_job_with_and_without_force() {
    let mut svc = service();
    for t in ["t1", "t2"] {
        add_thing(&mut svc, t);
    }
    let targets = [thing_arn("t1"), thing_arn("t2")];
    svc.create_job(at(1), new_job("soft", &targets)).unwrap();
    device(
        &mut svc,
        2,
        "$aws/things/t1/jobs/soft/update",
        json!({"status": "IN_PROGRESS"}),
    );

    let c = svc
        .cancel_job(
            at(3),
            "soft",
            false,
            Some("OPERATOR".into()),
            Some("stop".into()),
        )
        .unwrap();
    assert_eq!(c.value.status, JobStatus::Canceled);
    assert!(!c.value.force_canceled);
    // t2's QUEUED execution is canceled: its list empties; t1 is untouched.
    assert_eq!(
        topics(&c.messages),
        [
            "$aws/things/t2/jobs/notify",
            "$aws/things/t2/jobs/notify-next"
        ]
    );
    assert_eq!(c.messages[0].payload["jobs"], json!({}));
    let t2 = svc.describe_job_execution("soft", "t2", None).unwrap();
    assert_eq!(t2.exec.status, JobExecutionStatus::Canceled);
    assert_eq!(t2.exec.version_number, 2);
    // The IN_PROGRESS device can still finish.
    let m = device(
        &mut svc,
        4,
        "$aws/things/t1/jobs/soft/update",
        json!({"status": "SUCCEEDED"}),
    );
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/soft/update/accepted");
    let d = svc.describe_job("soft").unwrap();
    assert_eq!(d.job.reason_code.as_deref(), Some("OPERATOR"));
    assert_eq!(d.counts.number_of_succeeded_things, 1);
    assert_eq!(d.counts.number_of_canceled_things, 1);

    // Force: the running execution is canceled under the device.
    svc.create_job(at(5), new_job("hard", &targets)).unwrap();
    create_job(&mut svc, 6, "later", "t1");
    device(&mut svc, 7, "$aws/things/t1/jobs/start-next", json!({}));
    let c = svc.cancel_job(at(8), "hard", true, None, None).unwrap();
    assert!(c.value.force_canceled);
    let t1: Vec<&Outbound> = c
        .messages
        .iter()
        .filter(|m| m.topic.contains("/t1/"))
        .collect();
    assert_eq!(t1.len(), 2);
    assert_eq!(notify_jobs(&t1[0].payload), [j("QUEUED", &["later"])]);
    assert_eq!(t1[1].payload["execution"]["jobId"], "later");
    let rec = svc.describe_job_execution("hard", "t1", None).unwrap();
    assert_eq!(rec.exec.status, JobExecutionStatus::Canceled);
    assert!(rec.force_canceled);
    let m = device(
        &mut svc,
        9,
        "$aws/things/t1/jobs/hard/update",
        json!({"status": "SUCCEEDED", "expectedVersion": 2}),
    );
    assert_eq!(m[0].payload["code"], "InvalidStateTransition");
    assert_eq!(m[0].payload["executionState"]["status"], "CANCELED");
    let m = device(&mut svc, 9, "$aws/things/t1/jobs/hard/get", json!({}));
    assert_eq!(m[0].payload["code"], "TerminalStateReached");
}

#[test]
fn cancel_and_delete_job_execution_rules() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    device(
        &mut svc,
        2,
        "$aws/things/t1/jobs/j/update",
        json!({"status": "IN_PROGRESS"}),
    );

    let e = svc
        .cancel_job_execution(at(3), "j", "t1", false, None, None)
        .unwrap_err();
    assert_eq!(e.aws_error_type(), "InvalidStateTransitionException");
    assert_eq!(e.http_status(), 409);
    let e = svc
        .cancel_job_execution(at(3), "j", "t1", true, Some(1), None)
        .unwrap_err();
    assert_eq!(e.aws_error_type(), "VersionConflictException");
    let e = svc
        .cancel_job_execution(at(3), "j", "ghost", true, None, None)
        .unwrap_err();
    assert_eq!(e.aws_error_type(), "ResourceNotFoundException");

    let details = [("reason".to_owned(), "operator".to_owned())].into();
    let c = svc
        .cancel_job_execution(at(4), "j", "t1", true, Some(2), Some(details))
        .unwrap();
    assert_eq!(c.value.exec.status, JobExecutionStatus::Canceled);
    assert_eq!(c.value.exec.status_details["reason"], "operator");
    assert_eq!(topics(&c.messages), [NOTIFY, NEXT]);
    // Its only execution is terminal: the snapshot job is COMPLETED.
    assert_eq!(
        svc.describe_job("j").unwrap().job.status,
        JobStatus::Completed
    );
    let e = svc
        .cancel_job_execution(at(5), "j", "t1", true, None, None)
        .unwrap_err();
    assert_eq!(e.aws_error_type(), "InvalidStateTransitionException");

    // Delete: a pending execution needs force; a terminal one does not.
    create_job(&mut svc, 6, "k", "t1");
    let e = svc
        .delete_job_execution(at(7), "k", "t1", 1, false)
        .unwrap_err();
    assert_eq!(e.aws_error_type(), "InvalidStateTransitionException");
    let d = svc.delete_job_execution(at(7), "k", "t1", 1, true).unwrap();
    assert_eq!(topics(&d.messages), [NOTIFY, NEXT]);
    let m = device(
        &mut svc,
        8,
        "$aws/things/t1/jobs/k/update",
        json!({"status": "SUCCEEDED"}),
    );
    assert_eq!(m[0].payload["code"], "ResourceNotFound");
    svc.delete_job_execution(at(9), "j", "t1", 1, false)
        .unwrap();
    assert!(svc
        .list_job_executions_for_job("j", None)
        .unwrap()
        .is_empty());

    // DeleteJob: an IN_PROGRESS job needs force; afterwards devices get ResourceNotFound.
    create_job(&mut svc, 10, "m", "t1");
    let e = svc.delete_job(at(11), "m", false).unwrap_err();
    assert_eq!(e.aws_error_type(), "InvalidStateTransitionException");
    svc.delete_job(at(11), "m", true).unwrap();
    let m = device(&mut svc, 12, "$aws/things/t1/jobs/m/get", json!({}));
    assert_eq!(m[0].payload["code"], "ResourceNotFound");
    assert_eq!(
        svc.describe_job("m").unwrap_err().aws_error_type(),
        "ResourceNotFoundException"
    );
    // A deleted job id can be reused.
    create_job(&mut svc, 13, "m", "t1");
}

#[test]
fn create_job_validation() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    let ok = new_job("j", &[thing_arn("t1")]);
    let cases: Vec<(NewJob, &str)> = vec![
        (
            NewJob {
                job_id: "bad id".into(),
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
        (
            NewJob {
                targets: vec![],
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
        (
            NewJob {
                targets: vec!["t1".into()],
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
        (
            NewJob {
                targets: vec![thing_arn("ghost")],
                ..ok.clone()
            },
            "ResourceNotFoundException",
        ),
        (
            NewJob {
                targets: vec![group_arn("ghost")],
                ..ok.clone()
            },
            "ResourceNotFoundException",
        ),
        (
            NewJob {
                document: "[1,2]".into(),
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
        (
            NewJob {
                document: "{oops".into(),
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
        (
            NewJob {
                document: format!(r#"{{"x":"{}"}}"#, "a".repeat(32_768)),
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
        (
            NewJob {
                description: Some("a\u{7}b".into()),
                ..ok.clone()
            },
            "InvalidRequestException",
        ),
    ];
    for (job, want) in cases {
        let e = svc.create_job(at(1), job.clone()).unwrap_err();
        assert_eq!(e.aws_error_type(), want, "{job:?}");
    }
    assert!(svc.list_jobs(&Default::default()).unwrap().is_empty());
    svc.create_job(at(1), ok.clone()).unwrap();
    let e = svc.create_job(at(1), ok).unwrap_err();
    assert_eq!(e.aws_error_type(), "ResourceAlreadyExistsException");
}

/// SNAPSHOT takes the group members at creation; CONTINUOUS also reaches things that join
/// later (nested groups included) and REMOVEs pending executions of things that leave.
#[test]
fn snapshot_and_continuous_group_targets() {
    let mut svc = service();
    add_group(&mut svc, "fleet", None);
    add_group(&mut svc, "fleet-eu", Some("fleet"));
    for t in ["a", "b", "c"] {
        add_thing(&mut svc, t);
    }
    svc.add_thing_to_thing_group(at(0), "fleet", "a").unwrap();
    svc.add_thing_to_thing_group(at(0), "fleet-eu", "b")
        .unwrap();

    let mut snap = new_job("snap", &[group_arn("fleet")]);
    snap.target_selection = TargetSelection::Snapshot;
    let c = svc.create_job(at(1), snap).unwrap();
    assert_eq!(
        topics(&c.messages),
        [
            "$aws/things/a/jobs/notify",
            "$aws/things/a/jobs/notify-next",
            "$aws/things/b/jobs/notify",
            "$aws/things/b/jobs/notify-next"
        ]
    );
    let mut cont = new_job("cont", &[group_arn("fleet")]);
    cont.target_selection = TargetSelection::Continuous;
    svc.create_job(at(2), cont).unwrap();

    // c joins the child group: only the continuous job reaches it.
    let c = svc
        .add_thing_to_thing_group(at(3), "fleet-eu", "c")
        .unwrap();
    assert_eq!(
        topics(&c.messages),
        [
            "$aws/things/c/jobs/notify",
            "$aws/things/c/jobs/notify-next"
        ]
    );
    assert_eq!(
        notify_jobs(&c.messages[0].payload),
        [j("QUEUED", &["cont"])]
    );
    assert!(svc.describe_job_execution("snap", "c", None).is_err());
    // Joining another targeted group changes nothing.
    let c = svc.add_thing_to_thing_group(at(3), "fleet", "c").unwrap();
    assert!(c.messages.is_empty());

    // a leaves: its pending continuous execution is REMOVED, the snapshot one stays.
    let c = svc
        .remove_thing_from_thing_group(at(4), "fleet", "a")
        .unwrap();
    assert_eq!(topics(&c.messages), ["$aws/things/a/jobs/notify"]);
    assert_eq!(
        notify_jobs(&c.messages[0].payload),
        [j("QUEUED", &["snap"])]
    );
    let rec = svc.describe_job_execution("cont", "a", None).unwrap();
    assert_eq!(rec.exec.status, JobExecutionStatus::Removed);

    // a rejoins: a new execution with the next executionNumber.
    svc.add_thing_to_thing_group(at(5), "fleet", "a").unwrap();
    let rec = svc.describe_job_execution("cont", "a", None).unwrap();
    assert_eq!(rec.exec.status, JobExecutionStatus::Queued);
    assert_eq!(rec.exec.execution_number, 2);
    assert_eq!(
        svc.list_job_executions_for_job("cont", None).unwrap().len(),
        4
    );

    // Counters over the latest execution per thing.
    let d = svc.describe_job("cont").unwrap();
    assert_eq!(d.counts.number_of_queued_things, 3);
    assert_eq!(d.counts.number_of_removed_things, 0);
    assert_eq!(d.job.targets, [group_arn("fleet")]);

    // The snapshot job completes when its executions are terminal; continuous never does.
    for t in ["a", "b"] {
        let topic = format!("$aws/things/{t}/jobs/snap/update");
        device(&mut svc, 6, &topic, json!({"status": "SUCCEEDED"}));
    }
    let d = svc.describe_job("snap").unwrap();
    assert_eq!(d.job.status, JobStatus::Completed);
    assert_eq!(d.job.completed_at, Some(at(6)));
    assert_eq!(d.counts.number_of_succeeded_things, 2);
    for t in ["a", "b", "c"] {
        let topic = format!("$aws/things/{t}/jobs/cont/update");
        device(&mut svc, 7, &topic, json!({"status": "SUCCEEDED"}));
    }
    assert_eq!(
        svc.describe_job("cont").unwrap().job.status,
        JobStatus::InProgress
    );
}

// ---------------------------------------------------------------- persistence

/// Jobs, executions and their statuses, details and versions survive closing and
/// reopening the database (a restart of iotjobs-local).
#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("iotjobs-local.db");
    {
        let mut svc = JobsService::new(Store::open(&db).unwrap(), ServiceConfig::default());
        add_group(&mut svc, "g", None);
        for t in ["t1", "t2", "t3"] {
            add_thing(&mut svc, t);
            svc.add_thing_to_thing_group(at(0), "g", t).unwrap();
        }
        let mut job = new_job("fw", &[group_arn("g")]);
        job.description = Some("firmware 2".into());
        job.configs.timeout_config = Some(json!({"inProgressTimeoutInMinutes": 30}));
        job.configs.job_executions_retry_config =
            Some(json!({"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 2}]}));
        svc.create_job(at(1), job).unwrap();
        device(
            &mut svc,
            2,
            "$aws/things/t1/jobs/fw/update",
            json!({"status": "SUCCEEDED", "statusDetails": {"result": "ok"}}),
        );
        device(
            &mut svc,
            3,
            "$aws/things/t2/jobs/start-next",
            json!({"statusDetails": {"step": "2"}, "stepTimeoutInMinutes": 10}),
        );
        create_job(&mut svc, 4, "other", "t3");
        svc.cancel_job(at(5), "other", false, Some("NOPE".into()), None)
            .unwrap();
    } // the service and its connection are dropped: the process "stops"

    let mut svc = JobsService::new(Store::open(&db).unwrap(), ServiceConfig::default());
    let d = svc.describe_job("fw").unwrap();
    assert_eq!(d.job.status, JobStatus::InProgress);
    assert_eq!(d.job.description.as_deref(), Some("firmware 2"));
    assert_eq!(d.job.targets, [group_arn("g")]);
    assert_eq!(d.job.created_at, at(1));
    assert_eq!(d.job.configs.in_progress_timeout_minutes(), Some(30));
    assert_eq!(
        d.job.configs.job_executions_retry_config,
        Some(json!({"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 2}]}))
    );
    assert_eq!(
        (
            d.counts.number_of_succeeded_things,
            d.counts.number_of_in_progress_things,
            d.counts.number_of_queued_things
        ),
        (1, 1, 1)
    );
    let t1 = svc.describe_job_execution("fw", "t1", None).unwrap();
    assert_eq!(t1.exec.status, JobExecutionStatus::Succeeded);
    assert_eq!(t1.exec.status_details["result"], "ok");
    assert_eq!(t1.exec.version_number, 2);
    let t2 = svc.describe_job_execution("fw", "t2", None).unwrap();
    assert_eq!(t2.exec.status, JobExecutionStatus::InProgress);
    assert_eq!(t2.exec.started_at, Some(T0 + 3));
    assert_eq!(t2.exec.step_deadline, Some(T0 + 3 + 600));
    assert_eq!(t2.exec.in_progress_deadline, Some(T0 + 3 + 1800));
    let other = svc.describe_job("other").unwrap();
    assert_eq!(other.job.status, JobStatus::Canceled);
    assert_eq!(other.job.reason_code.as_deref(), Some("NOPE"));
    assert_eq!(
        svc.describe_job_execution("other", "t3", None)
            .unwrap()
            .exec
            .status,
        JobExecutionStatus::Canceled
    );
    assert_eq!(
        svc.store().things_in_group("g", false).unwrap(),
        ["t1", "t2", "t3"]
    );

    // The device resumes where it was: start-next returns its IN_PROGRESS execution, and
    // the version sequence continues.
    let m = device(&mut svc, 100, "$aws/things/t2/jobs/start-next", json!({}));
    let ex = &m[0].payload["execution"];
    assert_eq!(ex["jobId"], "fw");
    assert_eq!(ex["status"], "IN_PROGRESS");
    assert_eq!(ex["statusDetails"], json!({"step": "2"}));
    assert_eq!(ex["approximateSecondsBeforeTimedOut"], 503);
    let m = device(
        &mut svc,
        101,
        "$aws/things/t2/jobs/fw/update",
        json!({"status": "SUCCEEDED", "expectedVersion": 2}),
    );
    assert_eq!(m[0].topic, "$aws/things/t2/jobs/fw/update/accepted");
}

// ---------------------------------------------------------------- end to end

mod e2e {
    use std::sync::Arc;
    use std::time::Duration;

    use iotjobs::jobs::topics;
    use iotjobs::local::broker::{Broker, BrokerConfig};
    use iotjobs::local::clock::{ManualClock, Timestamp};
    use iotjobs::local::pki::{Pki, SERVICE_IDENTITY};
    use iotjobs::local::service::task::{self, BrokerConnection, Command};
    use iotjobs::local::service::{JobsService, NewJob, NewThing, ServiceConfig};
    use iotjobs::local::store::{JobStatus, Store};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    use serde_json::{json, Value};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    /// Upper bound for anything awaited; never an expected duration.
    const WAIT: Duration = Duration::from_secs(30);
    const T0: i64 = 1_700_000_000;

    enum Ev {
        SubAck,
        Publish(String, Value),
    }

    /// A device: rumqttc over mutual TLS with its own certificate, as iotjobsd connects.
    struct Device {
        client: AsyncClient,
        rx: mpsc::UnboundedReceiver<Ev>,
    }

    impl Device {
        async fn connect(pki: &Pki, port: u16, thing: &str) -> Device {
            let tls = pki
                .client_tls_config(&pki.issue_device_cert(thing).unwrap())
                .unwrap();
            let mut opts = MqttOptions::new(thing, "127.0.0.1", port);
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
            opts.set_max_packet_size(256 * 1024, 256 * 1024);
            let (client, mut eventloop) = AsyncClient::new(opts, 16);
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                loop {
                    let ev = match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::SubAck(_))) => Ev::SubAck,
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            Ev::Publish(p.topic, serde_json::from_slice(&p.payload).unwrap())
                        }
                        Ok(_) => continue,
                        Err(e) => panic!("device connection failed: {e}"),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            });
            Device { client, rx }
        }

        async fn next(&mut self) -> Ev {
            tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("timed out waiting for the broker")
                .expect("device event loop ended")
        }

        async fn subscribe_all(&mut self, thing: &str) {
            for f in topics::device_filters(thing) {
                self.client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
                while !matches!(self.next().await, Ev::SubAck) {}
            }
        }

        /// The next message on `topic` (others are collected into `seen`).
        async fn on(&mut self, topic: &str, seen: &mut Vec<(String, Value)>) -> Value {
            loop {
                if let Ev::Publish(t, v) = self.next().await {
                    if t == topic {
                        return v;
                    }
                    seen.push((t, v));
                }
            }
        }

        async fn publish(&self, topic: &str, v: Value) {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, v.to_string().into_bytes())
                .await
                .unwrap();
        }
    }

    /// Acceptance 1+4 over the real stack: embedded broker with mutual TLS, the service as
    /// the privileged client, a device with its own certificate; the outcome is read back
    /// from the database after the service stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn device_runs_a_job_over_the_embedded_broker() {
        let pki = Pki::ephemeral().unwrap();
        let broker = Broker::start(BrokerConfig::from_pki(&pki).unwrap().on_free_port())
            .await
            .unwrap();
        let port = broker.tls_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("local.db");

        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let shutdown = CancellationToken::new();
        let mut svc = task::spawn(
            JobsService::new(Store::open(&db).unwrap(), ServiceConfig::default()),
            Arc::new(clock.clone()),
            Some(service_connection(&pki, port)),
            shutdown.clone(),
        );
        tokio::time::timeout(WAIT, svc.subscribed.wait_for(|s| *s))
            .await
            .expect("service never subscribed")
            .unwrap();
        let h = svc.handle.clone();
        h.request(|r| {
            Command::CreateThing(
                NewThing {
                    name: "dev1".into(),
                    ..Default::default()
                },
                r,
            )
        })
        .await
        .unwrap();

        let mut dev = Device::connect(&pki, port, "dev1").await;
        dev.subscribe_all("dev1").await;
        let mut seen = Vec::new();

        clock.set(Timestamp::from_secs(T0 + 10));
        let job = NewJob {
            job_id: "hello".into(),
            targets: vec!["arn:aws:iot:us-east-1:123456789012:thing/dev1".into()],
            document: json!({"version": "1.0", "steps": []}).to_string(),
            ..Default::default()
        };
        h.request(|r| Command::CreateJob(Box::new(job), r))
            .await
            .unwrap();
        let next = dev.on("$aws/things/dev1/jobs/notify-next", &mut seen).await;
        assert_eq!(next["execution"]["jobId"], "hello");
        assert_eq!(next["execution"]["status"], "QUEUED");
        assert_eq!(next["execution"]["executionNumber"], 1);
        assert_eq!(next["execution"]["jobDocument"]["version"], "1.0");
        assert_eq!(next["timestamp"], T0 + 10);

        clock.set(Timestamp::from_secs(T0 + 20));
        dev.publish(
            "$aws/things/dev1/jobs/start-next",
            json!({"clientToken": "tok-1", "stepTimeoutInMinutes": 5}),
        )
        .await;
        let acc = dev
            .on("$aws/things/dev1/jobs/start-next/accepted", &mut seen)
            .await;
        assert_eq!(acc["clientToken"], "tok-1");
        assert_eq!(acc["execution"]["status"], "IN_PROGRESS");
        assert_eq!(acc["execution"]["versionNumber"], 2);
        assert_eq!(acc["execution"]["approximateSecondsBeforeTimedOut"], 300);

        clock.set(Timestamp::from_secs(T0 + 30));
        dev.publish(
            "$aws/things/dev1/jobs/hello/update",
            json!({"status": "SUCCEEDED", "expectedVersion": 2, "clientToken": "tok-2",
                   "statusDetails": {"reason": "done"}}),
        )
        .await;
        let acc = dev
            .on("$aws/things/dev1/jobs/hello/update/accepted", &mut seen)
            .await;
        assert_eq!(acc, json!({"timestamp": T0 + 30, "clientToken": "tok-2"}));
        let next = dev.on("$aws/things/dev1/jobs/notify-next", &mut seen).await;
        assert_eq!(next, json!({"timestamp": T0 + 30}));
        // The notify that went with creation arrived too (before its notify-next).
        assert!(seen.iter().any(|(t, v)| t == "$aws/things/dev1/jobs/notify"
            && v["jobs"]["QUEUED"][0]["jobId"] == "hello"));

        let job = h
            .request(|r| Command::DescribeJob("hello".into(), r))
            .await
            .unwrap();
        assert_eq!(job.job.status, JobStatus::Completed);

        shutdown.cancel();
        let core = tokio::time::timeout(WAIT, svc.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        drop(core);
        broker.shutdown().await;

        // What the store holds after the service is gone.
        let store = Store::open(&db).unwrap();
        let rec = store.get_execution("hello", "dev1", None).unwrap().unwrap();
        assert_eq!(rec.exec.status.as_str(), "SUCCEEDED");
        assert_eq!(rec.exec.version_number, 3);
        assert_eq!(rec.exec.status_details["reason"], "done");
        assert_eq!(rec.exec.started_at, Some(T0 + 20));
        assert_eq!(rec.exec.last_updated_at, T0 + 30);
        assert_eq!(
            store.get_job("hello").unwrap().unwrap().status,
            JobStatus::Completed
        );
    }

    fn service_connection(pki: &Pki, port: u16) -> BrokerConnection {
        BrokerConnection {
            host: "127.0.0.1".into(),
            port,
            client_id: SERVICE_IDENTITY.into(),
            tls: Some(
                pki.client_tls_config(&pki.issue_service_cert().unwrap())
                    .unwrap(),
            ),
        }
    }

    /// The service reconnects and subscribes again after the broker went away and came back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn service_resubscribes_after_a_broker_restart() {
        let pki = Pki::ephemeral().unwrap();
        let mut cfg = BrokerConfig::from_pki(&pki).unwrap().on_free_port();
        let broker = Broker::start(cfg.clone()).await.unwrap();
        let addr = broker.tls_addr().unwrap();
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let shutdown = CancellationToken::new();
        let core = JobsService::new(Store::open_in_memory().unwrap(), ServiceConfig::default());
        let mut svc = task::spawn(
            core,
            Arc::new(clock.clone()),
            Some(service_connection(&pki, addr.port())),
            shutdown.clone(),
        );
        let wait = |rx: &mut tokio::sync::watch::Receiver<bool>, want: bool| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(WAIT, rx.wait_for(|s| *s == want))
                    .await
                    .expect("subscription state never changed")
                    .unwrap();
            }
        };
        wait(&mut svc.subscribed, true).await;
        broker.shutdown().await;
        wait(&mut svc.subscribed, false).await;
        cfg.tls_addr = Some(addr);
        let broker = Broker::start(cfg).await.unwrap();
        wait(&mut svc.subscribed, true).await;

        let mut dev = Device::connect(&pki, addr.port(), "t9").await;
        dev.subscribe_all("t9").await;
        dev.publish("$aws/things/t9/jobs/get", json!({"clientToken": "after"}))
            .await;
        let acc = dev
            .on("$aws/things/t9/jobs/get/accepted", &mut Vec::new())
            .await;
        assert_eq!(
            acc,
            json!({"inProgressJobs": [], "queuedJobs": [], "timestamp": T0, "clientToken": "after"})
        );
        shutdown.cancel();
        tokio::time::timeout(WAIT, svc.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        broker.shutdown().await;
    }

    /// Without a broker the task still serves commands and device requests (the HTTP data
    /// plane path), and gives the core back on shutdown.
    #[tokio::test]
    async fn commands_without_a_broker() {
        let shutdown = CancellationToken::new();
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let core = JobsService::new(Store::open_in_memory().unwrap(), ServiceConfig::default());
        let svc = task::spawn(core, Arc::new(clock), None, shutdown.clone());
        let h = svc.handle.clone();
        let thing = NewThing {
            name: "t1".into(),
            ..Default::default()
        };
        h.request(|r| Command::CreateThing(thing, r)).await.unwrap();
        let job = NewJob {
            job_id: "j".into(),
            targets: vec!["arn:aws:iot:us-east-1:123456789012:thing/t1".into()],
            document: "{}".into(),
            ..Default::default()
        };
        h.request(|r| Command::CreateJob(Box::new(job), r))
            .await
            .unwrap();
        let e = h
            .request(|r| Command::DescribeJob("nope".into(), r))
            .await
            .unwrap_err();
        assert_eq!(e.aws_error_type(), "ResourceNotFoundException");
        let out = h
            .device_request("$aws/things/t1/jobs/start-next", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(out[0].payload["execution"]["status"], "IN_PROGRESS");
        let execs = h
            .request(|r| Command::ListJobExecutionsForThing {
                thing: "t1".into(),
                status: None,
                job_id: None,
                reply: r,
            })
            .await
            .unwrap();
        assert_eq!(execs.len(), 1);
        assert_eq!(execs[0].exec.version_number, 2);

        shutdown.cancel();
        let core = svc.task.await.unwrap().unwrap();
        assert!(core.describe_job("j").is_ok());
        // The task is gone: requests fail instead of hanging.
        let e = h.request(Command::ListThings).await.unwrap_err();
        assert_eq!(e.aws_error_type(), "ServiceUnavailableException");
    }
}

/// Presigned-S3 placeholders are resolved only when the document goes to a device.
#[test]
fn presigned_placeholders_resolved_on_mqtt_only() {
    let cfg = ServiceConfig {
        presigned_url_base: Some("http://127.0.0.1:8080/s3".into()),
        ..Default::default()
    };
    let mut svc = JobsService::new(Store::open_in_memory().unwrap(), cfg);
    add_thing(&mut svc, "t1");
    let placeholder = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/bucket/fw/v2.bin}";
    let mut job = new_job("fw", &[thing_arn("t1")]);
    job.document = json!({"url": placeholder}).to_string();
    job.configs.presigned_url_config =
        Some(json!({"roleArn": "arn:aws:iam::123456789012:role/R", "expiresInSec": 600}));
    let c = svc.create_job(at(1), job).unwrap();
    assert_eq!(
        c.messages[1].payload["execution"]["jobDocument"]["url"],
        format!(
            "http://127.0.0.1:8080/s3/bucket/fw/v2.bin?X-Expires={}",
            T0 + 601
        )
    );
    let m = device(&mut svc, 10, "$aws/things/t1/jobs/start-next", json!({}));
    assert_eq!(
        m[0].payload["execution"]["jobDocument"]["url"],
        format!(
            "http://127.0.0.1:8080/s3/bucket/fw/v2.bin?X-Expires={}",
            T0 + 610
        )
    );
    // The control plane sees the stored document, placeholder intact.
    let stored: Value =
        serde_json::from_str(&svc.describe_job("fw").unwrap().job.document).unwrap();
    assert_eq!(stored["url"], placeholder);
}

#[test]
fn document_parameters_need_a_managed_template() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    let mut job = new_job("j", &[thing_arn("t1")]);
    job.document_parameters = Some([("a".to_owned(), "b".to_owned())].into());
    let e = svc.create_job(at(1), job.clone()).unwrap_err();
    assert_eq!(e.aws_error_type(), "InvalidRequestException");
    job.job_template_arn = Some("arn:aws:iot:us-east-1:123456789012:jobtemplate/mine".into());
    assert!(svc.create_job(at(1), job.clone()).is_err());
    job.job_template_arn = Some("arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot:1.0".into());
    let j = svc.create_job(at(1), job).unwrap().value;
    assert_eq!(j.document_parameters.unwrap()["a"], "b");
}

#[test]
fn empty_payload_is_an_empty_request_and_own_output_is_ignored() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    create_job(&mut svc, 1, "j", "t1");
    let m = svc.handle_device_message(at(2), "$aws/things/t1/jobs/start-next", b"");
    assert_eq!(m[0].topic, "$aws/things/t1/jobs/start-next/accepted");
    assert_eq!(m[0].payload["execution"]["jobId"], "j");
    // Replies and notifications come back on the service's own subscription: no answer.
    for topic in [
        "$aws/things/t1/jobs/start-next/accepted",
        "$aws/things/t1/jobs/j/update/rejected",
        "$aws/things/t1/jobs/notify",
        "$aws/things/t1/jobs/notify-next",
    ] {
        assert!(
            svc.handle_device_message(at(3), topic, b"{}").is_empty(),
            "{topic}"
        );
    }
}

#[test]
fn a_thing_joins_at_most_ten_groups() {
    let mut svc = service();
    add_thing(&mut svc, "t1");
    for i in 0..11 {
        add_group(&mut svc, &format!("g{i}"), None);
    }
    for i in 0..10 {
        svc.add_thing_to_thing_group(at(1), &format!("g{i}"), "t1")
            .unwrap();
    }
    let e = svc
        .add_thing_to_thing_group(at(1), "g10", "t1")
        .unwrap_err();
    assert_eq!(e.aws_error_type(), "InvalidRequestException");
    // Re-adding to a group it is already in is fine.
    svc.add_thing_to_thing_group(at(1), "g3", "t1").unwrap();
}
