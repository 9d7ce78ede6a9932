//! Records → AWS JSON shapes (field names as in botocore's `iot` model). Timestamps are
//! epoch seconds (botocore accepts integers and fractions); absent values are omitted,
//! never sent as `null`.

use serde_json::{json, Map, Value};

use crate::jobs::wire::StatusDetails;
use crate::local::clock::Timestamp;
use crate::local::service::{Account, JobDetails};
use crate::local::store::{
    ExecutionRecord, JobRecord, JobTemplateRecord, StatusCounts, ThingGroupRecord, ThingRecord,
};

/// Drops `null` members of objects, recursively.
pub fn compact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, compact(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(compact).collect()),
        other => other,
    }
}

fn ts(t: Timestamp) -> Value {
    json!(t.secs_f64())
}

fn ts_opt(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, ts)
}

pub fn thing(acct: &Account, t: &ThingRecord) -> Value {
    compact(json!({
        "defaultClientId": t.name,
        "thingName": t.name,
        "thingId": t.thing_id,
        "thingArn": acct.thing_arn(&t.name),
        "thingTypeName": t.thing_type,
        "attributes": t.attributes,
        "version": t.version,
    }))
}

pub fn thing_summary(acct: &Account, t: &ThingRecord) -> Value {
    compact(json!({
        "thingName": t.name,
        "thingTypeName": t.thing_type,
        "thingArn": acct.thing_arn(&t.name),
        "attributes": t.attributes,
        "version": t.version,
    }))
}

pub fn group_ref(acct: &Account, name: &str) -> Value {
    json!({"groupName": name, "groupArn": acct.group_arn(name)})
}

pub fn thing_group(acct: &Account, g: &ThingGroupRecord, ancestors: &[String]) -> Value {
    compact(json!({
        "thingGroupName": g.name,
        "thingGroupId": g.group_id,
        "thingGroupArn": acct.group_arn(&g.name),
        "version": g.version,
        "thingGroupProperties": {
            "thingGroupDescription": g.description,
            "attributePayload": {"attributes": g.attributes},
        },
        "thingGroupMetadata": {
            "parentGroupName": g.parent,
            "rootToParentThingGroups":
                ancestors.iter().map(|a| group_ref(acct, a)).collect::<Vec<_>>(),
            "creationDate": ts(g.created_at),
        },
    }))
}

fn counters(c: &StatusCounts) -> Value {
    serde_json::to_value(c).unwrap_or_else(|_| json!({}))
}

pub fn job(acct: &Account, d: &JobDetails) -> Value {
    let j = &d.job;
    let c = &j.configs;
    let status = crate::local::store::name_of(&j.status);
    compact(json!({
        "jobArn": acct.job_arn(&j.job_id),
        "jobId": j.job_id,
        "targetSelection": crate::local::store::name_of(&j.target_selection),
        "status": status,
        "forceCanceled": j.force_canceled,
        "reasonCode": j.reason_code,
        "comment": j.comment,
        "targets": j.targets,
        "description": j.description,
        "presignedUrlConfig": c.presigned_url_config,
        "jobExecutionsRolloutConfig": c.job_executions_rollout_config,
        "abortConfig": c.abort_config,
        "createdAt": ts(j.created_at),
        "lastUpdatedAt": ts(j.last_updated_at),
        "completedAt": ts_opt(j.completed_at),
        "jobProcessDetails": counters(&d.counts),
        "timeoutConfig": c.timeout_config,
        "namespaceId": j.namespace_id,
        "jobTemplateArn": j.job_template_arn,
        "jobExecutionsRetryConfig": c.job_executions_retry_config,
        "documentParameters": j.document_parameters,
        // Cancels apply within the request; rollout is concurrent while targets wait.
        "isConcurrent": j.status == crate::local::store::JobStatus::InProgress
            && d.rollout_remaining > 0,
        "schedulingConfig": c.scheduling_config,
        "scheduledJobRollouts": (!d.scheduled_rollouts.is_empty()).then(|| {
            d.scheduled_rollouts
                .iter()
                .map(|t| json!({"startTime": crate::local::lifecycle::schedule::format_time(*t)}))
                .collect::<Vec<_>>()
        }),
        "destinationPackageVersions": c.destination_package_versions,
    }))
}

pub fn job_summary(acct: &Account, j: &JobRecord) -> Value {
    compact(json!({
        "jobArn": acct.job_arn(&j.job_id),
        "jobId": j.job_id,
        "targetSelection": crate::local::store::name_of(&j.target_selection),
        "status": crate::local::store::name_of(&j.status),
        "createdAt": ts(j.created_at),
        "lastUpdatedAt": ts(j.last_updated_at),
        "completedAt": ts_opt(j.completed_at),
        "isConcurrent": false,
    }))
}

fn details(d: &StatusDetails) -> Value {
    json!({ "detailsMap": d })
}

/// Control-plane `JobExecution` (DescribeJobExecution): statusDetails wrapped in `detailsMap`.
pub fn execution(acct: &Account, e: &ExecutionRecord, now: Timestamp) -> Value {
    let x = &e.exec;
    compact(json!({
        "jobId": e.job_id,
        "status": x.status.as_str(),
        "forceCanceled": e.force_canceled,
        "statusDetails": details(&x.status_details),
        "thingArn": acct.thing_arn(&e.thing_name),
        "queuedAt": x.queued_at,
        "startedAt": x.started_at,
        "lastUpdatedAt": x.last_updated_at,
        "executionNumber": x.execution_number,
        "versionNumber": x.version_number,
        "approximateSecondsBeforeTimedOut": x.seconds_before_timed_out(now.secs()),
    }))
}

/// Control-plane `JobExecutionSummary`.
pub fn execution_summary(e: &ExecutionRecord) -> Value {
    let x = &e.exec;
    compact(json!({
        "status": x.status.as_str(),
        "queuedAt": x.queued_at,
        "startedAt": x.started_at,
        "lastUpdatedAt": x.last_updated_at,
        "executionNumber": x.execution_number,
        "retryAttempt": e.retry_attempt,
    }))
}

pub fn job_template(acct: &Account, t: &JobTemplateRecord) -> Value {
    let c = &t.configs;
    compact(json!({
        "jobTemplateArn": acct.template_arn(&t.template_id),
        "jobTemplateId": t.template_id,
        "description": t.description,
        "documentSource": t.document_source,
        "document": t.document,
        "createdAt": ts(t.created_at),
        "presignedUrlConfig": c.presigned_url_config,
        "jobExecutionsRolloutConfig": c.job_executions_rollout_config,
        "abortConfig": c.abort_config,
        "timeoutConfig": c.timeout_config,
        "jobExecutionsRetryConfig": c.job_executions_retry_config,
        "maintenanceWindows": c.maintenance_windows,
        "destinationPackageVersions": c.destination_package_versions,
    }))
}

pub fn job_template_summary(acct: &Account, t: &JobTemplateRecord) -> Value {
    json!({
        "jobTemplateArn": acct.template_arn(&t.template_id),
        "jobTemplateId": t.template_id,
        "description": t.description,
        "createdAt": ts(t.created_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_drops_nulls_everywhere() {
        let v = compact(json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]}));
        assert_eq!(v, json!({"b": {"d": 1}, "e": [{}]}));
    }
}
