//! The manual clock through the control plane, as `serve --manual-clock` exposes it:
//! moving it runs the scheduler at once; the system clock refuses to move.

use iotjobs::local::clock::ManualClock;
use iotjobs::local::control::client::{ApiClient, ClientError};
use iotjobs::local::server::{LocalService, ServeOptions};
use serde_json::{json, Value};

use super::core::{t, thing_arn};

async fn service(manual: bool) -> (tempfile::TempDir, LocalService, ApiClient) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(dir.path().join("svc")).on_free_ports();
    if manual {
        opts.manual_clock = Some(ManualClock::new(t("2030-01-01T00:00")));
    }
    let svc = LocalService::start(opts).await.unwrap();
    let api = ApiClient::new(&svc.endpoint_url()).unwrap();
    (dir, svc, api)
}

/// Moves the service's clock as `iotjobs-local clock` does; the service's reply.
async fn move_clock(api: &ApiClient, body: Value) -> Result<Value, ClientError> {
    api.call("POST", "/iotjobs-local/clock", Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advancing_the_manual_clock_rolls_out_at_the_configured_rate() {
    let (_dir, svc, api) = service(true).await;
    let mut targets = Vec::new();
    for i in 0..25 {
        let name = format!("d{i:02}");
        api.call("POST", &format!("/things/{name}"), Some(&json!({})))
            .await
            .unwrap();
        targets.push(thing_arn(&name));
    }
    api.call(
        "PUT",
        "/jobs/paced",
        Some(&json!({"targets": targets, "document": "{\"op\":\"x\"}",
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 10}})),
    )
    .await
    .unwrap();
    let queued = |v: &Value| v["job"]["jobProcessDetails"]["numberOfQueuedThings"].clone();
    let job = api.get("/jobs/paced").await.unwrap();
    assert_eq!(queued(&job), 10);
    assert_eq!(job["job"]["isConcurrent"], true);
    let clock = api.get("/iotjobs-local/clock").await.unwrap();
    assert_eq!(clock["manual"], true);
    assert_eq!(clock["time"], "2030-01-01T00:00");

    let moved = move_clock(&api, json!({"advanceSeconds": 30}))
        .await
        .unwrap();
    assert_eq!(
        moved["tick"]["rolledOut"], 0,
        "still inside the first minute"
    );
    let moved = move_clock(&api, json!({"advanceSeconds": 30}))
        .await
        .unwrap();
    assert_eq!(moved["time"], "2030-01-01T00:01");
    assert_eq!(moved["tick"]["rolledOut"], 10);
    move_clock(&api, json!({"set": t("2030-01-01T00:02").secs()}))
        .await
        .unwrap();
    let job = api.get("/jobs/paced").await.unwrap();
    assert_eq!(queued(&job), 25);
    assert_eq!(job["job"]["isConcurrent"], false);

    let back = move_clock(&api, json!({"setTime": "2029-12-31T00:00"}))
        .await
        .unwrap_err();
    assert!(back.to_string().contains("backwards"), "{back}");
    let bad = move_clock(&api, json!({"advanceSeconds": 1, "set": 5}))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("InvalidRequestException"), "{bad}");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_clock_cannot_be_moved() {
    let (_dir, svc, api) = service(false).await;
    assert_eq!(
        api.get("/iotjobs-local/clock").await.unwrap()["manual"],
        false
    );
    let e = move_clock(&api, json!({"advanceSeconds": 60}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--manual-clock"), "{e}");
    svc.stop().await.unwrap();
}
