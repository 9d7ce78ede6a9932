//! Job templates: custom ones (stored by the service) and the eight AWS managed ones
//! (built in, from `jobs::templates`).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::document;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, P, Q};
use super::page::page;
use super::{shapes, ControlContext};
use crate::jobs::templates::{self, ManagedTemplate, TEMPLATE_VERSION};
use crate::local::service::task::Command;
use crate::local::store::JobConfigs;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTemplateBody {
    description: Option<String>,
    job_arn: Option<String>,
    document: Option<String>,
    document_source: Option<String>,
    #[serde(flatten)]
    configs: JobConfigs,
}

pub async fn create_job_template(
    State(ctx): State<ControlContext>,
    P(template_id): P<String>,
    Body(b): Body<CreateTemplateBody>,
) -> ApiResult<Json<Value>> {
    let description = b
        .description
        .ok_or_else(|| ApiError::invalid("description is required"))?;
    let (document, document_source, configs) = match (b.job_arn, b.document, b.document_source) {
        (Some(arn), None, None) => {
            // Copy an existing job's document and configurations.
            let job_id = arn
                .rsplit_once(":job/")
                .map(|(_, id)| id.to_owned())
                .ok_or_else(|| ApiError::invalid(format!("{arn:?} is not a job ARN")))?;
            let d = ctx
                .service
                .request(|r| Command::DescribeJob(job_id, r))
                .await?;
            let configs = document::merge_configs(d.job.configs, b.configs);
            (Some(d.job.document), d.job.document_source, configs)
        }
        (None, Some(doc), None) => (Some(doc), None, b.configs),
        (None, None, Some(src)) => {
            // Checked now so a bad path fails here rather than at CreateJob.
            document::load_source(&src).await?;
            (None, Some(src), b.configs)
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of jobArn, document and documentSource",
            ))
        }
    };
    let t = ctx
        .service
        .request(|reply| Command::CreateJobTemplate {
            template_id,
            description,
            document,
            document_source,
            configs: Box::new(configs),
            reply,
        })
        .await?;
    Ok(Json(json!({
        "jobTemplateArn": ctx.account.template_arn(&t.template_id),
        "jobTemplateId": t.template_id,
    })))
}

pub async fn describe_job_template(
    State(ctx): State<ControlContext>,
    P(id): P<String>,
) -> ApiResult<Json<Value>> {
    let t = ctx
        .service
        .request(|r| Command::DescribeJobTemplate(id, r))
        .await?;
    Ok(Json(shapes::job_template(&ctx.account, &t)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    max_results: Option<usize>,
    next_token: Option<String>,
    template_name: Option<String>,
    template_version: Option<String>,
}

pub async fn list_job_templates(
    State(ctx): State<ControlContext>,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<Value>> {
    let list = ctx.service.request(Command::ListJobTemplates).await?;
    let (items, next) = page(list, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items
        .iter()
        .map(|t| shapes::job_template_summary(&ctx.account, t))
        .collect();
    Ok(Json(shapes::compact(
        json!({"jobTemplates": list, "nextToken": next}),
    )))
}

pub async fn delete_job_template(
    State(ctx): State<ControlContext>,
    P(id): P<String>,
) -> ApiResult<Json<Value>> {
    ctx.service
        .request(|r| Command::DeleteJobTemplate(id, r))
        .await?;
    Ok(Json(json!({})))
}

fn managed_summary(ctx: &ControlContext, t: &ManagedTemplate) -> Value {
    json!({
        "templateArn": templates::arn(&ctx.account.region, t),
        "templateName": t.name,
        "description": t.description,
        "environments": ["LINUX"],
        "templateVersion": TEMPLATE_VERSION,
    })
}

pub async fn list_managed_job_templates(
    State(ctx): State<ControlContext>,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<Value>> {
    let list: Vec<_> = templates::MANAGED_TEMPLATES
        .iter()
        .filter(|t| q.template_name.as_deref().is_none_or(|n| n == t.name))
        .collect();
    let (items, next) = page(list, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items.iter().map(|t| managed_summary(&ctx, t)).collect();
    Ok(Json(shapes::compact(
        json!({"managedJobTemplates": list, "nextToken": next}),
    )))
}

pub async fn describe_managed_job_template(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<Value>> {
    let lookup = match &q.template_version {
        Some(v) => format!("{name}:{v}"),
        None => name.clone(),
    };
    let t = templates::find(&lookup).map_err(|e| ApiError::not_found(e.to_string()))?;
    let params: Vec<_> = t
        .parameters
        .iter()
        .map(|p| {
            json!({
                "key": p.key,
                "description": p.description,
                "regex": p.regex,
                "example": p.example,
                "optional": p.optional,
            })
        })
        .collect();
    let mut v = managed_summary(&ctx, t);
    v["documentParameters"] = json!(params);
    v["document"] = json!(t.document);
    Ok(Json(v))
}
