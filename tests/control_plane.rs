//! The control plane over real HTTP: `iotjobs-local`'s service (embedded broker, Jobs task,
//! SQLite in a temp data dir) on free loopback ports, driven through the HTTP client the
//! CLI uses. Checks what an `aws iot` user would see: routes, JSON shapes, counters, error
//! shapes (status, `x-amzn-ErrorType`, `message`), managed templates, persistence, and the
//! provisioning flow (certificates attached to things) with a real TLS device connecting.
#![cfg(feature = "local")]

use iotjobs::local::control::client::{ApiClient, ClientError};
use iotjobs::local::server::{LocalService, ServeOptions};
use serde_json::{json, Value};

const ACCOUNT: &str = "arn:aws:iot:us-east-1:123456789012";

fn thing_arn(t: &str) -> String {
    format!("{ACCOUNT}:thing/{t}")
}

fn group_arn(g: &str) -> String {
    format!("{ACCOUNT}:thinggroup/{g}")
}

async fn start(dir: &std::path::Path) -> (LocalService, ApiClient) {
    let svc = LocalService::start(ServeOptions::new(dir).on_free_ports())
        .await
        .unwrap();
    let api = ApiClient::new(&svc.endpoint_url()).unwrap();
    (svc, api)
}

async fn call(api: &ApiClient, method: &str, path: &str, body: Value) -> Value {
    let body = (method != "GET" && method != "DELETE").then_some(&body);
    match api.call(method, path, body).await {
        Ok(v) => v,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// The AWS error of a request that must fail: (status, x-amzn-ErrorType, message).
async fn fail(
    api: &ApiClient,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, String) {
    let resp = api.send(method, path, body.as_ref()).await.unwrap();
    assert!(
        resp.status >= 400,
        "{method} {path} unexpectedly gave {}",
        resp.status
    );
    let kind = resp
        .header("x-amzn-errortype")
        .unwrap_or_default()
        .to_owned();
    let msg = resp.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!msg.is_empty(), "{method} {path}: error without message");
    (resp.status, kind, msg)
}

async fn fleet(api: &ApiClient) {
    for t in ["t1", "t2", "t3"] {
        let r = call(api, "POST", &format!("/things/{t}"), json!({})).await;
        assert_eq!(r["thingArn"], thing_arn(t));
    }
    call(api, "POST", "/thing-groups/fleet", json!({})).await;
    let r = call(
        api,
        "POST",
        "/thing-groups/fleet-a",
        json!({"parentGroupName": "fleet",
               "thingGroupProperties": {"thingGroupDescription": "first rack"}}),
    )
    .await;
    assert_eq!(r["thingGroupArn"], group_arn("fleet-a"));
    for (g, t) in [("fleet-a", "t1"), ("fleet-a", "t2"), ("fleet", "t3")] {
        call(
            api,
            "PUT",
            "/thing-groups/addThingToThingGroup",
            json!({"thingGroupName": g, "thingName": t}),
        )
        .await;
    }
}

fn statuses(list: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = list["executionSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["thingArn"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                e["jobExecutionSummary"]["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn things_groups_and_a_group_job_queue_executions() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    fleet(&api).await;

    let d = call(&api, "GET", "/things/t1", json!({})).await;
    assert_eq!(
        (d["thingName"].as_str(), d["defaultClientId"].as_str()),
        (Some("t1"), Some("t1"))
    );
    let list = call(&api, "GET", "/things", json!({})).await;
    assert_eq!(list["things"].as_array().unwrap().len(), 3);
    let page = call(&api, "GET", "/things?maxResults=2", json!({})).await;
    assert_eq!(page["things"].as_array().unwrap().len(), 2);
    let token = page["nextToken"].as_str().unwrap();
    let rest = call(
        &api,
        "GET",
        &format!("/things?maxResults=2&nextToken={token}"),
        json!({}),
    )
    .await;
    assert_eq!(rest["things"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextToken").is_none());

    let g = call(&api, "GET", "/thing-groups/fleet-a", json!({})).await;
    assert_eq!(g["thingGroupMetadata"]["parentGroupName"], "fleet");
    assert_eq!(
        g["thingGroupMetadata"]["rootToParentThingGroups"][0]["groupName"],
        "fleet"
    );
    assert_eq!(
        g["thingGroupProperties"]["thingGroupDescription"],
        "first rack"
    );
    let kids = call(&api, "GET", "/thing-groups?parentGroup=fleet", json!({})).await;
    assert_eq!(
        kids["thingGroups"],
        json!([{"groupName": "fleet-a", "groupArn": group_arn("fleet-a")}])
    );
    let members = call(
        &api,
        "GET",
        "/thing-groups/fleet/things?recursive=true",
        json!({}),
    )
    .await;
    let mut m: Vec<_> = members["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    m.sort();
    assert_eq!(m, ["t1", "t2", "t3"]);
    let direct = call(&api, "GET", "/thing-groups/fleet/things", json!({})).await;
    assert_eq!(direct["things"], json!(["t3"]));

    // A job on the parent group reaches the things of its child group too.
    let r = call(
        &api,
        "PUT",
        "/jobs/job1",
        json!({"targets": [group_arn("fleet")], "document": "{\"operation\":\"x\"}",
               "description": "first job"}),
    )
    .await;
    assert_eq!(
        r,
        json!({"jobArn": format!("{ACCOUNT}:job/job1"), "jobId": "job1", "description": "first job"})
    );
    let execs = call(&api, "GET", "/jobs/job1/things", json!({})).await;
    assert_eq!(
        statuses(&execs),
        pairs(&[("t1", "QUEUED"), ("t2", "QUEUED"), ("t3", "QUEUED")])
    );

    let d = call(&api, "GET", "/jobs/job1", json!({})).await;
    let job = &d["job"];
    assert_eq!(job["status"], "IN_PROGRESS");
    assert_eq!(job["targetSelection"], "SNAPSHOT");
    assert_eq!(job["targets"], json!([group_arn("fleet")]));
    assert_eq!(job["jobProcessDetails"]["numberOfQueuedThings"], 3);
    assert_eq!(job["jobProcessDetails"]["numberOfSucceededThings"], 0);
    assert!(job["createdAt"].as_f64().unwrap() > 1.6e9);

    let e = call(&api, "GET", "/things/t1/jobs/job1", json!({})).await;
    let ex = &e["execution"];
    assert_eq!(
        (
            ex["status"].as_str(),
            ex["executionNumber"].as_i64(),
            ex["versionNumber"].as_i64()
        ),
        (Some("QUEUED"), Some(1), Some(1))
    );
    assert_eq!(ex["thingArn"], thing_arn("t1"));
    let for_thing = call(&api, "GET", "/things/t3/jobs", json!({})).await;
    assert_eq!(for_thing["executionSummaries"][0]["jobId"], "job1");

    let jobs = call(&api, "GET", "/jobs?status=IN_PROGRESS", json!({})).await;
    assert_eq!(jobs["jobs"][0]["jobId"], "job1");
    let none = call(&api, "GET", "/jobs?status=COMPLETED", json!({})).await;
    assert_eq!(none["jobs"], json!([]));
    let by_group = call(&api, "GET", "/jobs?thingGroupName=fleet", json!({})).await;
    assert_eq!(by_group["jobs"].as_array().unwrap().len(), 1);

    // UpdateJob changes the description and stores a config as given.
    call(
        &api,
        "PATCH",
        "/jobs/job1",
        json!({"description": "renamed",
        "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
            "thresholdPercentage": 50.0, "minNumberOfExecutedThings": 2}]}}),
    )
    .await;
    let d = call(&api, "GET", "/jobs/job1", json!({})).await;
    assert_eq!(d["job"]["description"], "renamed");
    assert_eq!(
        d["job"]["abortConfig"]["criteriaList"][0]["minNumberOfExecutedThings"],
        2
    );

    // Removing a thing from a group and deleting things.
    call(
        &api,
        "PUT",
        "/thing-groups/removeThingFromThingGroup",
        json!({"thingGroupArn": group_arn("fleet"), "thingArn": thing_arn("t3")}),
    )
    .await;
    let direct = call(&api, "GET", "/thing-groups/fleet/things", json!({})).await;
    assert_eq!(direct["things"], json!([]));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_and_delete_jobs_and_executions() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    fleet(&api).await;
    let doc = json!({"targets": [group_arn("fleet")], "document": "{\"operation\":\"x\"}"});
    call(&api, "PUT", "/jobs/j1", doc.clone()).await;
    call(&api, "PUT", "/jobs/j2", doc).await;

    // t1 starts j1 through the device API (as its daemon would over MQTT).
    let out = svc
        .handle()
        .device_request("$aws/things/t1/jobs/start-next", b"{}".to_vec())
        .await
        .unwrap();
    assert!(out.iter().any(|m| m.topic.ends_with("start-next/accepted")));

    // CancelJobExecution of an IN_PROGRESS execution needs force.
    let (status, kind, _) = fail(&api, "PUT", "/things/t1/jobs/j1/cancel", Some(json!({}))).await;
    assert_eq!(
        (status, kind.as_str()),
        (409, "InvalidStateTransitionException")
    );
    call(
        &api,
        "PUT",
        "/things/t2/jobs/j1/cancel",
        json!({"statusDetails": {"why": "test"}}),
    )
    .await;
    let e = call(&api, "GET", "/things/t2/jobs/j1", json!({})).await;
    assert_eq!(e["execution"]["status"], "CANCELED");
    assert_eq!(e["execution"]["statusDetails"]["detailsMap"]["why"], "test");

    // CancelJob without force: queued → CANCELED, the running one is left alone.
    let r = call(
        &api,
        "PUT",
        "/jobs/j1/cancel",
        json!({"reasonCode": "OPERATOR", "comment": "stop"}),
    )
    .await;
    assert_eq!(r["jobId"], "j1");
    let d = call(&api, "GET", "/jobs/j1", json!({})).await;
    assert_eq!(d["job"]["status"], "CANCELED");
    assert_eq!(d["job"]["reasonCode"], "OPERATOR");
    assert_eq!(d["job"]["comment"], "stop");
    assert_eq!(d["job"]["forceCanceled"], false);
    let c = &d["job"]["jobProcessDetails"];
    assert_eq!(
        (
            c["numberOfInProgressThings"].as_i64(),
            c["numberOfCanceledThings"].as_i64()
        ),
        (Some(1), Some(2))
    );

    // With force the running execution is cancelled too.
    call(&api, "PUT", "/jobs/j1/cancel?force=true", json!({})).await;
    let e = call(&api, "GET", "/things/t1/jobs/j1", json!({})).await;
    assert_eq!(
        (
            e["execution"]["status"].as_str(),
            e["execution"]["forceCanceled"].as_bool()
        ),
        (Some("CANCELED"), Some(true))
    );
    let d = call(&api, "GET", "/jobs/j1", json!({})).await;
    assert_eq!(d["job"]["forceCanceled"], true);

    // DeleteJob of a running job needs force; a cancelled one goes.
    let (status, kind, _) = fail(&api, "DELETE", "/jobs/j2", None).await;
    assert_eq!(
        (status, kind.as_str()),
        (409, "InvalidStateTransitionException")
    );
    call(&api, "DELETE", "/jobs/j1", json!({})).await;
    let (status, kind, _) = fail(&api, "GET", "/jobs/j1", None).await;
    assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));

    // DeleteJobExecution needs a terminal execution unless forced.
    let (status, _, _) = fail(&api, "DELETE", "/things/t3/jobs/j2/executionNumber/1", None).await;
    assert_eq!(status, 409);
    call(
        &api,
        "DELETE",
        "/things/t3/jobs/j2/executionNumber/1?force=true",
        json!({}),
    )
    .await;
    let execs = call(&api, "GET", "/jobs/j2/things", json!({})).await;
    assert_eq!(
        statuses(&execs),
        pairs(&[("t1", "QUEUED"), ("t2", "QUEUED")])
    );
    call(&api, "DELETE", "/jobs/j2?force=true", json!({})).await;
    let jobs = call(&api, "GET", "/jobs", json!({})).await;
    assert_eq!(jobs["jobs"], json!([]));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn errors_have_the_aws_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    fleet(&api).await;

    let (status, kind, msg) = fail(&api, "GET", "/things/nope", None).await;
    assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));
    assert!(msg.contains("nope"), "{msg}");
    let (status, kind, _) = fail(&api, "GET", "/things/t1/jobs/nojob", None).await;
    assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));

    let job = json!({"targets": [thing_arn("t1")], "document": "{}"});
    call(&api, "PUT", "/jobs/dup", job.clone()).await;
    let resp = api.send("PUT", "/jobs/dup", Some(&job)).await.unwrap();
    assert_eq!(resp.status, 409);
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("ResourceAlreadyExistsException")
    );
    assert_eq!(resp.json()["resourceId"], "dup");

    let (status, kind, _) = fail(
        &api,
        "POST",
        "/things/t1",
        Some(json!({"thingTypeName": "other"})),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (409, "ResourceAlreadyExistsException")
    );
    // The same configuration again is fine.
    call(&api, "POST", "/things/t1", json!({})).await;

    for (body, why) in [
        (json!({"document": "{}"}), "no targets"),
        (json!({"targets": [thing_arn("t1")]}), "no document"),
        (
            json!({"targets": ["t1"], "document": "{}"}),
            "target is not an ARN",
        ),
        (
            json!({"targets": [thing_arn("t1")], "document": "not json"}),
            "document is not JSON",
        ),
        (
            json!({"targets": [thing_arn("t1")], "document": "{}", "documentSource": "/x"}),
            "both",
        ),
        (
            json!({"targets": [thing_arn("t1")], "document": "{}", "targetSelection": "SOMETIMES"}),
            "bad enum",
        ),
        (
            json!({"targets": [thing_arn("t1")], "document": "{}", "documentParameters": {"a": "b"}}),
            "params without template",
        ),
        (
            json!({"targets": [thing_arn("t1")], "documentSource": "https://s3.amazonaws.com/b/k"}),
            "S3 source",
        ),
        (json!({"targets": 5}), "malformed body"),
    ] {
        let (status, kind, _) = fail(&api, "PUT", "/jobs/bad", Some(body)).await;
        assert_eq!(
            (status, kind.as_str()),
            (400, "InvalidRequestException"),
            "{why}"
        );
    }
    let (status, kind, _) = fail(
        &api,
        "PUT",
        "/jobs/bad",
        Some(json!({"targets": [thing_arn("ghost")], "document": "{}"})),
    )
    .await;
    assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));
    let (status, kind, _) = fail(&api, "GET", "/jobs?maxResults=0", None).await;
    assert_eq!((status, kind.as_str()), (400, "InvalidRequestException"));
    let (status, kind, _) =
        fail(&api, "PUT", "/jobs/dup/cancel?force=maybe", Some(json!({}))).await;
    assert_eq!((status, kind.as_str()), (400, "InvalidRequestException"));
    let (status, kind, _) = fail(&api, "GET", "/no/such/route", None).await;
    assert_eq!((status, kind.as_str()), (404, "UnknownOperationException"));

    // A SigV4-signed request is accepted as is (the signature is not checked).
    let resp = api
        .send_with(
            "GET",
            "/things/t1",
            &[("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/iot/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123"),
              ("X-Amz-Date", "20260101T000000Z")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);

    // The client surfaces the exception name.
    match api.get("/jobs/none").await {
        Err(ClientError::Api {
            status: 404, kind, ..
        }) => assert_eq!(kind, "ResourceNotFoundException"),
        other => panic!("{other:?}"),
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn managed_templates_and_parameter_substitution() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    fleet(&api).await;

    let list = call(&api, "GET", "/managed-job-templates", json!({})).await;
    let names: Vec<_> = list["managedJobTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["templateName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 8);
    assert!(
        names.contains(&"AWS-Download-File".to_owned())
            && names.contains(&"AWS-Run-Command".to_owned())
    );
    let t = call(
        &api,
        "GET",
        "/managed-job-templates/AWS-Download-File",
        json!({}),
    )
    .await;
    assert_eq!(
        t["templateArn"],
        "arn:aws:iot:us-east-1::jobtemplate/AWS-Download-File:1.0"
    );
    assert_eq!(t["templateVersion"], "1.0");
    assert_eq!(t["environments"], json!(["LINUX"]));
    let keys: Vec<_> = t["documentParameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["downloadUrl", "filePath", "runAsUser", "pathToHandler"]
    );
    assert!(t["document"]
        .as_str()
        .unwrap()
        .contains("${aws:iot:parameter:downloadUrl}"));
    let (status, kind, _) = fail(&api, "GET", "/managed-job-templates/AWS-Nope", None).await;
    assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));

    let arn = "arn:aws:iot:us-east-1::jobtemplate/AWS-Download-File:1.0";
    call(&api, "PUT", "/jobs/dl", json!({
        "targets": [group_arn("fleet-a")],
        "jobTemplateArn": arn,
        "documentParameters": {"downloadUrl": "file:///srv/a \"b\".txt", "filePath": "/tmp/out"},
    })).await;
    let doc = call(&api, "GET", "/jobs/dl/job-document", json!({})).await;
    let doc: Value = serde_json::from_str(doc["document"].as_str().unwrap()).unwrap();
    let action = &doc["steps"][0]["action"];
    assert_eq!(
        action["input"]["args"],
        json!(["file:///srv/a \"b\".txt", "/tmp/out"])
    );
    assert_eq!(action["input"]["handler"], "download-file.sh");
    assert_eq!(action["runAsUser"], "");
    let raw = call(
        &api,
        "GET",
        "/jobs/dl/job-document?beforeSubstitution=true",
        json!({}),
    )
    .await;
    assert!(raw["document"]
        .as_str()
        .unwrap()
        .contains("${aws:iot:parameter:filePath}"));
    let d = call(&api, "GET", "/jobs/dl", json!({})).await;
    assert_eq!(d["job"]["jobTemplateArn"], arn);
    assert_eq!(d["job"]["documentParameters"]["filePath"], "/tmp/out");
    assert_eq!(
        d["job"]["description"],
        "A managed job template for downloading a file."
    );
    assert_eq!(d["job"]["jobProcessDetails"]["numberOfQueuedThings"], 2);

    for (params, why) in [
        (json!({"downloadUrl": "x"}), "missing filePath"),
        (
            json!({"downloadUrl": "x", "filePath": "y", "color": "red"}),
            "unknown parameter",
        ),
    ] {
        let (status, kind, msg) = fail(
            &api,
            "PUT",
            "/jobs/bad",
            Some(json!({
            "targets": [thing_arn("t1")], "jobTemplateArn": arn, "documentParameters": params})),
        )
        .await;
        assert_eq!(
            (status, kind.as_str()),
            (400, "InvalidRequestException"),
            "{why}: {msg}"
        );
    }
    let (status, _, _) = fail(
        &api,
        "PUT",
        "/jobs/bad",
        Some(json!({
        "targets": [thing_arn("t1")], "jobTemplateArn": arn, "document": "{}",
        "documentParameters": {"downloadUrl": "x", "filePath": "y"}})),
    )
    .await;
    assert_eq!(status, 400);

    // AWS-Run-Command: a command with an escaped comma survives substitution.
    call(
        &api,
        "PUT",
        "/jobs/run",
        json!({
            "targets": [thing_arn("t3")],
            "jobTemplateArn": "arn:aws:iot:us-east-1::jobtemplate/AWS-Run-Command:1.0",
            "documentParameters": {"command": "echo,a\\,b"},
        }),
    )
    .await;
    let doc = call(&api, "GET", "/jobs/run/job-document", json!({})).await;
    let doc: Value = serde_json::from_str(doc["document"].as_str().unwrap()).unwrap();
    assert_eq!(doc["steps"][0]["action"]["input"]["command"], "echo,a\\,b");
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn document_source_files_and_custom_templates() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(&dir.path().join("data")).await;
    fleet(&api).await;
    let file = dir.path().join("job.json");
    std::fs::write(&file, r#"{"operation":"from-file"}"#).unwrap();
    let url = format!("file://{}", file.display());
    call(
        &api,
        "PUT",
        "/jobs/f1",
        json!({"targets": [thing_arn("t1")], "documentSource": url}),
    )
    .await;
    // Read once at creation, as AWS reads its S3 object once.
    std::fs::write(&file, r#"{"operation":"changed"}"#).unwrap();
    let doc = call(&api, "GET", "/jobs/f1/job-document", json!({})).await;
    assert_eq!(doc["document"], r#"{"operation":"from-file"}"#);
    let d = call(&api, "GET", "/jobs/f1", json!({})).await;
    assert_eq!(d["documentSource"], url);
    let (status, _, msg) = fail(
        &api,
        "PUT",
        "/jobs/f2",
        Some(json!({"targets": [thing_arn("t1")],
        "documentSource": dir.path().join("missing.json").display().to_string()})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(msg.contains("missing.json"), "{msg}");

    // A custom template: its document and configs are the job's defaults.
    let r = call(
        &api,
        "PUT",
        "/job-templates/tpl",
        json!({
        "description": "my template", "document": "{\"operation\":\"tpl\"}",
        "timeoutConfig": {"inProgressTimeoutInMinutes": 30}}),
    )
    .await;
    assert_eq!(r["jobTemplateArn"], format!("{ACCOUNT}:jobtemplate/tpl"));
    let (status, kind, _) = fail(
        &api,
        "PUT",
        "/job-templates/tpl",
        Some(json!({"description": "again", "document": "{}"})),
    )
    .await;
    assert_eq!((status, kind.as_str()), (409, "ConflictException"));
    let t = call(&api, "GET", "/job-templates/tpl", json!({})).await;
    assert_eq!(t["timeoutConfig"]["inProgressTimeoutInMinutes"], 30);
    let l = call(&api, "GET", "/job-templates", json!({})).await;
    assert_eq!(l["jobTemplates"][0]["jobTemplateId"], "tpl");
    call(
        &api,
        "PUT",
        "/jobs/from-tpl",
        json!({"targets": [thing_arn("t2")],
        "jobTemplateArn": format!("{ACCOUNT}:jobtemplate/tpl")}),
    )
    .await;
    let d = call(&api, "GET", "/jobs/from-tpl", json!({})).await;
    assert_eq!(d["job"]["timeoutConfig"]["inProgressTimeoutInMinutes"], 30);
    assert_eq!(d["job"]["description"], "my template");
    let doc = call(&api, "GET", "/jobs/from-tpl/job-document", json!({})).await;
    assert_eq!(doc["document"], "{\"operation\":\"tpl\"}");
    // A template copied from a job.
    call(
        &api,
        "PUT",
        "/job-templates/copy",
        json!({"description": "copy",
        "jobArn": format!("{ACCOUNT}:job/from-tpl")}),
    )
    .await;
    let t = call(&api, "GET", "/job-templates/copy", json!({})).await;
    assert_eq!(t["document"], "{\"operation\":\"tpl\"}");
    call(&api, "DELETE", "/job-templates/tpl", json!({})).await;
    let (status, _, _) = fail(&api, "GET", "/job-templates/tpl", None).await;
    assert_eq!(status, 404);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn keys_and_certificate_for_a_thing() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    call(&api, "POST", "/things/dev1", json!({})).await;
    let c = call(
        &api,
        "POST",
        "/keys-and-certificate?setAsActive=true&thingName=dev1",
        json!({}),
    )
    .await;
    assert!(c["certificatePem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(c["keyPair"]["PrivateKey"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    let id = c["certificateId"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    // The thingName extension issues the certificate attached and ACTIVE.
    let l = call(&api, "GET", "/things/dev1/principals", json!({})).await;
    assert_eq!(l["principals"], json!([c["certificateArn"]]));
    let d = call(&api, "GET", &format!("/certificates/{id}"), json!({})).await;
    assert_eq!(d["certificateDescription"]["status"], "ACTIVE");
    // The device connects with its thing name, as before.
    let mut dev = Device::connect(&svc, "dev1", &c).await.unwrap();
    dev.jobs_get().await;
    let (status, _, _) = fail(
        &api,
        "POST",
        "/keys-and-certificate?thingName=ghost",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
    svc.stop().await.unwrap();
}

/// A device of the control-plane tests: a real rumqttc client over mutual TLS with the
/// certificate and key the control plane returned.
struct Device {
    client: rumqttc::AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Packet, String>>,
    thing: String,
}

/// Generous upper bound for anything a test waits for; never an expected duration.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Device {
    /// Connects as `client_id` with `cert` (a CreateKeysAndCertificate response); the
    /// CONNACK, or the error that ended the connection.
    async fn connect(svc: &LocalService, client_id: &str, cert: &Value) -> Result<Device, String> {
        use rumqttc::{AsyncClient, Event, MqttOptions, TlsConfiguration, Transport};
        let tls = iotjobs::local::pki::client_tls_config(
            svc.pki.ca_cert_pem(),
            Some((
                cert["certificatePem"].as_str().unwrap(),
                cert["keyPair"]["PrivateKey"].as_str().unwrap(),
            )),
        )
        .unwrap();
        let addr = svc.mqtt_tls_addr.unwrap();
        let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(std::time::Duration::from_secs(30));
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
            Some(Ok(rumqttc::Packet::ConnAck(_))) => Ok(Device {
                client,
                rx,
                thing: client_id.to_owned(),
            }),
            Some(Ok(other)) => panic!("expected CONNACK, got {other:?}"),
            Some(Err(e)) => Err(e),
            None => Err("event loop gone".into()),
        }
    }

    /// GetPendingJobExecutions over MQTT: the service's accepted reply arrives.
    async fn jobs_get(&mut self) {
        use rumqttc::{Packet, QoS};
        let base = format!("$aws/things/{}/jobs/get", self.thing);
        self.client
            .subscribe(format!("{base}/accepted"), QoS::AtLeastOnce)
            .await
            .unwrap();
        self.client
            .publish(
                &base,
                QoS::AtLeastOnce,
                false,
                b"{\"clientToken\":\"ct\"}".to_vec(),
            )
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv()).await.unwrap() {
                Some(Ok(Packet::Publish(p))) => {
                    assert_eq!(p.topic, format!("{base}/accepted"));
                    let v: Value = serde_json::from_slice(&p.payload).unwrap();
                    assert_eq!(v["clientToken"], "ct");
                    return;
                }
                Some(Ok(_)) => continue,
                other => panic!("expected the jobs/get reply, got {other:?}"),
            }
        }
    }
}

/// Connecting as `client_id` with `cert` is refused; returns the broker's reason (what
/// the broker's log line says).
async fn refused(svc: &LocalService, client_id: &str, cert: &Value) -> String {
    use iotjobs::local::broker::BrokerEvent;
    let mut events = svc.broker_events().unwrap();
    let e = match Device::connect(svc, client_id, cert).await {
        Ok(_) => panic!("{client_id} connected but must be refused"),
        Err(e) => e,
    };
    assert!(e.contains("NotAuthorized"), "{e}");
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            Ok(BrokerEvent::ConnectRefused {
                client_id: c,
                reason,
            }) if c == client_id => return reason,
            Ok(_) => continue,
            Err(e) => panic!("broker events: {e}"),
        }
    }
}

/// The AWS provisioning flow: create-thing, create-keys-and-certificate (no thing),
/// attach-thing-principal, the device connects as the thing; then detach, deactivate.
#[tokio::test]
async fn provisioning_flow_binds_a_certificate_to_a_thing() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    for t in ["gw1", "gw2"] {
        call(&api, "POST", &format!("/things/{t}"), json!({})).await;
    }
    let c = call(
        &api,
        "POST",
        "/keys-and-certificate?setAsActive=true",
        json!({}),
    )
    .await;
    let id = c["certificateId"].as_str().unwrap().to_owned();
    let arn = c["certificateArn"].as_str().unwrap().to_owned();
    assert_eq!(arn, format!("{ACCOUNT}:cert/{id}"));
    let d = call(&api, "GET", &format!("/certificates/{id}"), json!({})).await;
    let desc = &d["certificateDescription"];
    assert_eq!(desc["certificateId"], id.as_str());
    assert_eq!(desc["certificateArn"], arn.as_str());
    assert_eq!(desc["status"], "ACTIVE");
    assert_eq!(desc["certificatePem"], c["certificatePem"]);
    assert_eq!(desc["ownedBy"], "123456789012");
    assert!(desc["creationDate"].as_f64().unwrap() > 0.0);

    // Not attached yet: refused.
    let reason = refused(&svc, "gw1", &c).await;
    assert!(reason.contains("not attached"), "{reason}");
    assert!(reason.contains(&id), "{reason}");

    let principal = [("x-amzn-principal", arn.as_str())];
    let attach = api
        .send_with("PUT", "/things/gw1/principals", &principal, None)
        .await
        .unwrap();
    assert_eq!(attach.status, 200);
    let l = call(&api, "GET", "/things/gw1/principals", json!({})).await;
    assert_eq!(l["principals"], json!([arn]));
    let things = api
        .send_with("GET", "/principals/things", &principal, None)
        .await
        .unwrap();
    assert_eq!(things.json()["things"], json!(["gw1"]));

    // Attached: the device connects as gw1 and talks to the Jobs service; not as gw2.
    let mut dev = Device::connect(&svc, "gw1", &c).await.unwrap();
    dev.jobs_get().await;
    let reason = refused(&svc, "gw2", &c).await;
    assert!(reason.contains("not attached to thing \"gw2\""), "{reason}");

    // Detached: new connections are refused; the open one is not dropped (as on AWS).
    let detach = api
        .send_with("DELETE", "/things/gw1/principals", &principal, None)
        .await
        .unwrap();
    assert_eq!(detach.status, 200);
    let l = call(&api, "GET", "/things/gw1/principals", json!({})).await;
    assert_eq!(l["principals"], json!([]));
    refused(&svc, "gw1", &c).await;
    dev.jobs_get().await;

    // Attached again but INACTIVE: refused; ACTIVE again: connects.
    api.send_with("PUT", "/things/gw1/principals", &principal, None)
        .await
        .unwrap();
    let r = api
        .send(
            "PUT",
            &format!("/certificates/{id}?newStatus=INACTIVE"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let d = call(&api, "GET", &format!("/certificates/{id}"), json!({})).await;
    assert_eq!(d["certificateDescription"]["status"], "INACTIVE");
    let reason = refused(&svc, "gw1", &c).await;
    assert!(reason.contains("INACTIVE"), "{reason}");
    call(
        &api,
        "PUT",
        &format!("/certificates/{id}?newStatus=ACTIVE"),
        json!({}),
    )
    .await;
    Device::connect(&svc, "gw1", &c).await.unwrap();

    // Without setAsActive a certificate starts INACTIVE, as on AWS.
    let inactive = call(&api, "POST", "/keys-and-certificate", json!({})).await;
    let iarn = inactive["certificateArn"].as_str().unwrap();
    api.send_with(
        "PUT",
        "/things/gw2/principals",
        &[("x-amzn-principal", iarn)],
        None,
    )
    .await
    .unwrap();
    let reason = refused(&svc, "gw2", &inactive).await;
    assert!(reason.contains("INACTIVE"), "{reason}");

    // The bindings survive a restart on the same data directory.
    drop(dev);
    svc.stop().await.unwrap();
    let (svc, api) = start(dir.path()).await;
    let l = call(&api, "GET", "/things/gw1/principals", json!({})).await;
    assert_eq!(l["principals"], json!([arn]));
    Device::connect(&svc, "gw1", &c).await.unwrap();
    // Deleting the thing detaches its certificate.
    call(&api, "DELETE", "/things/gw1", json!({})).await;
    refused(&svc, "gw1", &c).await;
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn principal_and_certificate_errors_have_aws_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    call(&api, "POST", "/things/t1", json!({})).await;
    let c = call(
        &api,
        "POST",
        "/keys-and-certificate?setAsActive=true",
        json!({}),
    )
    .await;
    let arn = c["certificateArn"].as_str().unwrap();
    let unknown = format!("{ACCOUNT}:cert/{}", "0".repeat(64));

    /// (status, x-amzn-ErrorType) of a request that must fail.
    async fn err(
        api: &ApiClient,
        method: &str,
        path: &str,
        principal: Option<&str>,
    ) -> (u16, String) {
        let headers: Vec<(&str, &str)> = principal
            .map(|p| ("x-amzn-principal", p))
            .into_iter()
            .collect();
        let r = api.send_with(method, path, &headers, None).await.unwrap();
        let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(!msg.is_empty(), "{method} {path}: no message");
        (
            r.status,
            r.header("x-amzn-errortype").unwrap_or_default().to_owned(),
        )
    }
    let not_found = (404, "ResourceNotFoundException".to_owned());
    let invalid = (400, "InvalidRequestException".to_owned());
    for (method, path, principal, want) in [
        ("PUT", "/things/ghost/principals", Some(arn), &not_found),
        (
            "PUT",
            "/things/t1/principals",
            Some(unknown.as_str()),
            &not_found,
        ),
        ("DELETE", "/things/ghost/principals", Some(arn), &not_found),
        ("GET", "/things/ghost/principals", None, &not_found),
        (
            "GET",
            "/principals/things",
            Some(unknown.as_str()),
            &not_found,
        ),
        ("PUT", "/things/t1/principals", None, &invalid),
        ("PUT", "/things/t1/principals", Some("not-an-arn"), &invalid),
        ("GET", "/principals/things", None, &invalid),
        ("GET", "/certificates/nothex", None, &invalid),
        (
            "PUT",
            "/things/t1/principals?thingPrincipalType=SOMETIMES",
            Some(arn),
            &invalid,
        ),
    ] {
        assert_eq!(
            &err(&api, method, path, principal).await,
            want,
            "{method} {path}"
        );
    }
    let missing = "0".repeat(64);
    assert_eq!(
        err(&api, "GET", &format!("/certificates/{missing}"), None).await,
        not_found
    );
    assert_eq!(
        err(
            &api,
            "PUT",
            &format!("/certificates/{missing}?newStatus=ACTIVE"),
            None
        )
        .await,
        not_found
    );
    let id = c["certificateId"].as_str().unwrap();
    for q in ["", "?newStatus=BROKEN", "?newStatus=REVOKED"] {
        assert_eq!(
            err(&api, "PUT", &format!("/certificates/{id}{q}"), None).await,
            invalid,
            "{q}"
        );
    }
    // Attaching twice and detaching what is not attached are no errors, as on AWS.
    for method in ["PUT", "PUT", "DELETE", "DELETE"] {
        let r = api
            .send_with(
                method,
                "/things/t1/principals",
                &[("x-amzn-principal", arn)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{method}");
    }
    // An unbound certificate never connects on its CN: it is no thing name.
    let reason = refused(&svc, "t1", &c).await;
    assert!(reason.contains("not attached"), "{reason}");
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn state_survives_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, api) = start(dir.path()).await;
    fleet(&api).await;
    call(
        &api,
        "PUT",
        "/jobs/keep",
        json!({"targets": [group_arn("fleet")], "document": "{\"k\":1}"}),
    )
    .await;
    let h = svc.handle();
    h.device_request("$aws/things/t1/jobs/start-next", b"{}".to_vec())
        .await
        .unwrap();
    h.device_request(
        "$aws/things/t1/jobs/keep/update",
        json!({"status": "SUCCEEDED", "statusDetails": {"step": "done"}, "expectedVersion": 2})
            .to_string()
            .into_bytes(),
    )
    .await
    .unwrap();
    svc.stop().await.unwrap();

    let (svc, api) = start(dir.path()).await;
    let d = call(&api, "GET", "/jobs/keep", json!({})).await;
    let c = &d["job"]["jobProcessDetails"];
    assert_eq!(
        (
            c["numberOfSucceededThings"].as_i64(),
            c["numberOfQueuedThings"].as_i64()
        ),
        (Some(1), Some(2))
    );
    let e = call(&api, "GET", "/things/t1/jobs/keep", json!({})).await;
    assert_eq!(e["execution"]["status"], "SUCCEEDED");
    assert_eq!(
        e["execution"]["statusDetails"]["detailsMap"]["step"],
        "done"
    );
    let g = call(&api, "GET", "/thing-groups/fleet-a", json!({})).await;
    assert_eq!(g["thingGroupMetadata"]["parentGroupName"], "fleet");
    svc.stop().await.unwrap();
}

/// Runs a client verb of the real binary against `endpoint`.
fn verb(endpoint: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_iotjobs-local"))
        .args(args)
        .env("IOTJOBS_LOCAL_ENDPOINT", endpoint)
        .output()
        .unwrap()
}

fn ok_stdout(endpoint: &str, args: &[&str]) -> String {
    let out = verb(endpoint, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The binary end to end: `serve` on free ports, the AWS-CLI-like verbs, `create-thing --out`,
/// `watch`, and SIGTERM → exit 0.
#[test]
fn cli_serve_and_client_verbs() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().unwrap();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_iotjobs-local"))
        .args([
            "serve",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let (mut endpoint, mut mqtt) = (None, None);
    while endpoint.is_none() || mqtt.is_none() {
        let line = lines
            .next()
            .expect("serve exited before printing its addresses")
            .unwrap();
        if let Some(u) = line.trim().strip_prefix("control plane") {
            endpoint = Some(u.trim().to_owned());
        }
        if let Some(u) = line.trim().strip_prefix("MQTT (mTLS)") {
            mqtt = Some(u.trim().trim_start_matches("mqtts://").to_owned());
        }
    }
    let ep = endpoint.unwrap();
    let mqtt_port: u16 = mqtt.unwrap().rsplit(':').next().unwrap().parse().unwrap();

    ok_stdout(&ep, &["create-thing-group", "--thing-group-name", "g"]);
    let dev = tmp.path().join("dev1");
    let out = ok_stdout(
        &ep,
        &["create-thing", "dev1", "--out", dev.to_str().unwrap()],
    );
    assert!(out.contains("config.toml"), "{out}");
    let key_mode = std::fs::metadata(dev.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let cfg: iotjobs::config::Config =
        toml::from_str(&std::fs::read_to_string(dev.join("config.toml")).unwrap()).unwrap();
    assert_eq!(cfg.mqtt.thing_name.as_deref(), Some("dev1"));
    assert_eq!(cfg.mqtt.port, mqtt_port);
    assert_eq!(cfg.mqtt.key.as_deref(), Some(dev.join("key.pem").as_path()));
    assert!(std::fs::read_to_string(dev.join("root-ca.pem"))
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    // The AWS provisioning verbs: an unbound certificate, attached, listed, detached.
    let issued: Value = serde_json::from_str(&ok_stdout(
        &ep,
        &[
            "create-keys-and-certificate",
            "--set-as-active",
            "--output",
            "json",
        ],
    ))
    .unwrap();
    let arn = issued["certificateArn"].as_str().unwrap().to_owned();
    let principals = |ep: &str| ok_stdout(ep, &["list-thing-principals", "--thing-name", "dev1"]);
    assert!(!principals(&ep).contains(&arn), "not attached yet");
    ok_stdout(
        &ep,
        &[
            "attach-thing-principal",
            "--thing-name",
            "dev1",
            "--principal",
            &arn,
        ],
    );
    let listed = principals(&ep);
    assert!(
        listed.starts_with("PRINCIPAL") && listed.contains(&arn),
        "{listed}"
    );
    ok_stdout(
        &ep,
        &[
            "detach-thing-principal",
            "--thing-name",
            "dev1",
            "--principal",
            &arn,
        ],
    );
    assert!(!principals(&ep).contains(&arn), "detached");
    let refused = verb(
        &ep,
        &[
            "attach-thing-principal",
            "--thing-name",
            "nobody",
            "--principal",
            &arn,
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ResourceNotFoundException"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    ok_stdout(
        &ep,
        &[
            "add-thing-to-thing-group",
            "--thing-group-name",
            "g",
            "--thing-name",
            "dev1",
        ],
    );
    let doc = tmp.path().join("job.json");
    std::fs::write(&doc, r#"{"operation":"hello"}"#).unwrap();
    let file_arg = format!("file://{}", doc.display());
    ok_stdout(
        &ep,
        &[
            "create-job",
            "--job-id",
            "j1",
            "--targets",
            "thinggroup/g",
            "--document",
            &file_arg,
        ],
    );
    let table = ok_stdout(&ep, &["list-job-executions-for-job", "--job-id", "j1"]);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("dev1") && row.contains("QUEUED"), "{table}");
    let json: Value = serde_json::from_str(&ok_stdout(
        &ep,
        &["describe-job", "--job-id", "j1", "--output", "json"],
    ))
    .unwrap();
    assert_eq!(json["job"]["jobProcessDetails"]["numberOfQueuedThings"], 1);

    ok_stdout(
        &ep,
        &[
            "create-job",
            "--job-id",
            "j2",
            "--targets",
            "thing/dev1",
            "--job-template-arn",
            "arn:aws:iot:us-east-1::jobtemplate/AWS-Run-Command:1.0",
            "--document-parameters",
            "command=echo,hello",
        ],
    );
    let d = ok_stdout(&ep, &["get-job-document", "--job-id", "j2"]);
    assert!(d.contains(r#""command":"echo,hello""#), "{d}");

    let out = verb(&ep, &["describe-job", "--job-id", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ResourceNotFoundException"));

    // watch ends when the job is cancelled; only an all-SUCCEEDED job exits 0.
    ok_stdout(&ep, &["cancel-job", "--job-id", "j1"]);
    let out = verb(&ep, &["watch", "j1", "--interval", "0.1"]);
    assert_eq!(out.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("CANCELED 1"), "{shown}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serve.wait().unwrap().success());
}
