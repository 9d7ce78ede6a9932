//! Job operations (reference §4.3): CreateJob, DescribeJob, ListJobs, UpdateJob, CancelJob,
//! DeleteJob, GetJobDocument, AssociateTargetsWithJob.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::document::{self, DocumentRequest};
use super::error::{ApiError, ApiResult};
use super::extract::{flag, Body, P, Q};
use super::page::page;
use super::{shapes, ControlContext};
use crate::local::service::task::Command;
use crate::local::service::{JobFilter, NewJob, UpdateJob};
use crate::local::store::{JobConfigs, JobRecord, TargetSelection};

/// Parses an AWS enum value (`"SNAPSHOT"`, `"IN_PROGRESS"`, ...) named `field`.
fn aws_enum<T: DeserializeOwned>(field: &str, v: &str) -> ApiResult<T> {
    serde_json::from_value(Value::String(v.to_owned()))
        .map_err(|_| ApiError::invalid(format!("{field}: {v:?} is not a valid value")))
}

fn job_reply(ctx: &ControlContext, j: &JobRecord) -> Json<Value> {
    Json(shapes::compact(json!({
        "jobArn": ctx.account.job_arn(&j.job_id),
        "jobId": j.job_id,
        "description": j.description,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJobBody {
    #[serde(default)]
    targets: Vec<String>,
    document: Option<String>,
    document_source: Option<String>,
    description: Option<String>,
    target_selection: Option<String>,
    job_template_arn: Option<String>,
    document_parameters: Option<BTreeMap<String, String>>,
    namespace_id: Option<String>,
    #[serde(flatten)]
    configs: JobConfigs,
}

pub async fn create_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Body(b): Body<CreateJobBody>,
) -> ApiResult<Json<Value>> {
    let target_selection = match &b.target_selection {
        Some(s) => aws_enum("targetSelection", s)?,
        None => TargetSelection::Snapshot,
    };
    let resolved = document::resolve(
        &ctx,
        DocumentRequest {
            document: b.document.as_deref(),
            document_source: b.document_source.as_deref(),
            job_template_arn: b.job_template_arn.as_deref(),
            document_parameters: b.document_parameters.as_ref(),
        },
    )
    .await?;
    let new = NewJob {
        job_id,
        targets: b.targets,
        document: resolved.document,
        document_template: resolved.document_template,
        document_source: resolved.document_source,
        description: b.description.or(resolved.description),
        target_selection,
        job_template_arn: b.job_template_arn,
        document_parameters: b.document_parameters,
        namespace_id: b.namespace_id,
        configs: document::merge_configs(resolved.configs, b.configs),
    };
    let job = ctx
        .service
        .request(|r| Command::CreateJob(Box::new(new), r))
        .await?;
    Ok(job_reply(&ctx, &job))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubstitutionQuery {
    before_substitution: Option<String>,
}

pub async fn describe_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Q(q): Q<SubstitutionQuery>,
) -> ApiResult<Json<Value>> {
    flag(q.before_substitution.as_deref())?;
    let d = ctx
        .service
        .request(|r| Command::DescribeJob(job_id, r))
        .await?;
    Ok(Json(shapes::compact(json!({
        "documentSource": d.job.document_source,
        "job": shapes::job(&ctx.account, &d),
    }))))
}

pub async fn get_job_document(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Q(q): Q<SubstitutionQuery>,
) -> ApiResult<Json<Value>> {
    let before = flag(q.before_substitution.as_deref())?;
    let d = ctx
        .service
        .request(|r| Command::DescribeJob(job_id, r))
        .await?;
    let doc = match (before, d.job.document_template) {
        (true, Some(t)) => t,
        _ => d.job.document,
    };
    Ok(Json(json!({ "document": doc })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJobsQuery {
    status: Option<String>,
    target_selection: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
    thing_group_name: Option<String>,
    thing_group_id: Option<String>,
    namespace_id: Option<String>,
}

pub async fn list_jobs(
    State(ctx): State<ControlContext>,
    Q(q): Q<ListJobsQuery>,
) -> ApiResult<Json<Value>> {
    let mut filter = JobFilter {
        status: q
            .status
            .as_deref()
            .map(|s| aws_enum("status", s))
            .transpose()?,
        target_selection: q
            .target_selection
            .as_deref()
            .map(|s| aws_enum("targetSelection", s))
            .transpose()?,
        thing_group_name: q.thing_group_name,
    };
    if let (None, Some(id)) = (&filter.thing_group_name, &q.thing_group_id) {
        let groups = ctx.service.request(Command::ListThingGroups).await?;
        let g = groups
            .into_iter()
            .find(|g| &g.group_id == id)
            .ok_or_else(|| ApiError::not_found(format!("thing group id {id} does not exist")))?;
        filter.thing_group_name = Some(g.name);
    }
    let jobs: Vec<JobRecord> = ctx
        .service
        .request(|r| Command::ListJobs(filter, r))
        .await?
        .into_iter()
        .filter(|j| {
            q.namespace_id
                .as_ref()
                .is_none_or(|n| j.namespace_id.as_ref() == Some(n))
        })
        .collect();
    let (items, next) = page(jobs, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items
        .iter()
        .map(|j| shapes::job_summary(&ctx.account, j))
        .collect();
    Ok(Json(shapes::compact(
        json!({"jobs": list, "nextToken": next}),
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobBody {
    description: Option<String>,
    #[serde(flatten)]
    configs: JobConfigs,
}

pub async fn update_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Body(b): Body<UpdateJobBody>,
) -> ApiResult<Json<Value>> {
    let update = UpdateJob {
        description: b.description,
        configs: b.configs,
    };
    ctx.service
        .request(|reply| Command::UpdateJob {
            job_id,
            update: Box::new(update),
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForceQuery {
    force: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelJobBody {
    reason_code: Option<String>,
    comment: Option<String>,
}

pub async fn cancel_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Q(q): Q<ForceQuery>,
    Body(b): Body<CancelJobBody>,
) -> ApiResult<Json<Value>> {
    let force = flag(q.force.as_deref())?;
    let job = ctx
        .service
        .request(|reply| Command::CancelJob {
            job_id,
            force,
            reason_code: b.reason_code,
            comment: b.comment,
            reply,
        })
        .await?;
    Ok(job_reply(&ctx, &job))
}

pub async fn delete_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Q(q): Q<ForceQuery>,
) -> ApiResult<Json<Value>> {
    let force = flag(q.force.as_deref())?;
    ctx.service
        .request(|reply| Command::DeleteJob {
            job_id,
            force,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociateBody {
    #[serde(default)]
    targets: Vec<String>,
    comment: Option<String>,
}

pub async fn associate_targets_with_job(
    State(ctx): State<ControlContext>,
    P(job_id): P<String>,
    Body(b): Body<AssociateBody>,
) -> ApiResult<Json<Value>> {
    let id = job_id.clone();
    ctx.service
        .request(|reply| Command::AssociateTargetsWithJob {
            job_id,
            targets: b.targets,
            comment: b.comment,
            reply,
        })
        .await?;
    let d = ctx.service.request(|r| Command::DescribeJob(id, r)).await?;
    Ok(job_reply(&ctx, &d.job))
}
