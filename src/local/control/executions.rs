//! Job execution operations of the control plane: DescribeJobExecution,
//! ListJobExecutionsForJob/ForThing, CancelJobExecution, DeleteJobExecution.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{flag, Body, P, Q};
use super::page::page;
use super::{shapes, ControlContext};
use crate::jobs::wire::{JobExecutionStatus, StatusDetails};
use crate::local::service::task::Command;

fn status_filter(s: Option<&str>) -> ApiResult<Option<JobExecutionStatus>> {
    s.map(|s| {
        s.parse::<JobExecutionStatus>()
            .map_err(|_| ApiError::invalid(format!("status: {s:?} is not a job execution status")))
    })
    .transpose()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    status: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
    job_id: Option<String>,
    namespace_id: Option<String>,
}

pub async fn list_job_executions_for_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = status_filter(q.status.as_deref())?;
    let execs = ctx
        .service
        .request(|reply| Command::ListJobExecutionsForJob {
            job_id,
            status,
            reply,
        })
        .await?;
    let (items, next) = page(execs, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items
        .iter()
        .map(|e| {
            json!({
                "thingArn": ctx.account.thing_arn(&e.thing_name),
                "jobExecutionSummary": shapes::execution_summary(e),
            })
        })
        .collect();
    Ok(Json(shapes::compact(
        json!({"executionSummaries": list, "nextToken": next}),
    )))
}

pub async fn list_job_executions_for_thing(
    State(ctx): State<ControlContext>,
    P(thing): P<String>,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = status_filter(q.status.as_deref())?;
    let execs = ctx
        .service
        .request(|reply| Command::ListJobExecutionsForThing {
            thing,
            status,
            job_id: q.job_id,
            reply,
        })
        .await?;
    // Namespaced jobs are only listed when their namespace is asked for (AWS's rule).
    let mut listed = Vec::with_capacity(execs.len());
    for e in execs {
        let id = e.job_id.clone();
        let d = ctx.service.request(|r| Command::DescribeJob(id, r)).await?;
        if d.job.namespace_id == q.namespace_id {
            listed.push(e);
        }
    }
    let (items, next) = page(listed, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items
        .iter()
        .map(|e| {
            json!({
                "jobId": e.job_id,
                "jobExecutionSummary": shapes::execution_summary(e),
            })
        })
        .collect();
    Ok(Json(shapes::compact(
        json!({"executionSummaries": list, "nextToken": next}),
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeQuery {
    execution_number: Option<i64>,
}

pub async fn describe_job_execution(
    State(ctx): State<ControlContext>,
    P((thing, job_id)): P<(String, String)>,
    Q(q): Q<DescribeQuery>,
) -> ApiResult<Json<Value>> {
    let e = ctx
        .service
        .request(|reply| Command::DescribeJobExecution {
            job_id,
            thing,
            execution_number: q.execution_number,
            reply,
        })
        .await?;
    Ok(Json(json!({
        "execution": shapes::execution(&ctx.account, &e, ctx.clock.now()),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForceQuery {
    force: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelBody {
    expected_version: Option<i64>,
    status_details: Option<StatusDetails>,
}

pub async fn cancel_job_execution(
    State(ctx): State<ControlContext>,
    P((thing, job_id)): P<(String, String)>,
    Q(q): Q<ForceQuery>,
    Body(b): Body<CancelBody>,
) -> ApiResult<Json<Value>> {
    let force = flag(q.force.as_deref())?;
    ctx.service
        .request(|reply| Command::CancelJobExecution {
            job_id,
            thing,
            force,
            expected_version: b.expected_version,
            status_details: b.status_details,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_job_execution(
    State(ctx): State<ControlContext>,
    P((thing, job_id, execution_number)): P<(String, String, i64)>,
    Q(q): Q<ForceQuery>,
) -> ApiResult<Json<Value>> {
    let force = flag(q.force.as_deref())?;
    ctx.service
        .request(|reply| Command::DeleteJobExecution {
            job_id,
            thing,
            execution_number,
            force,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}
