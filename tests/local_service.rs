//! The local Jobs service: the device API and notifications on the sans-I/O core
//! (reference §2, §3, §10.3), persistence across a restart, and one end-to-end run over
//! the embedded broker with mutual TLS.
#![cfg(feature = "local")]

use iotjobs::local::clock::Timestamp;
use iotjobs::local::service::{JobsService, NewJob, NewThing, Outbound, ServiceConfig};
use iotjobs::local::store::Store;
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
