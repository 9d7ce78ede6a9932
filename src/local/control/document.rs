//! Where a new job's document comes from: inline `document`, a `documentSource` file on this
//! machine (a path or `file://` URL, read once at creation as AWS reads its S3 object once),
//! a custom job template, or an AWS managed template rendered with `documentParameters`
//! (reference §7.1, §8). Also the default configurations a custom template provides.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{ApiError, ApiResult};
use super::ControlContext;
use crate::jobs::templates::{self, TemplateError};
use crate::local::service::task::Command;
use crate::local::store::JobConfigs;

/// Largest job document AWS accepts.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024;

/// What a template (or nothing) contributes to a new job.
#[derive(Debug, Default)]
pub struct Resolved {
    pub document: String,
    /// The managed template's document before substitution.
    pub document_template: Option<String>,
    pub document_source: Option<String>,
    /// The template's description, used when the request has none.
    pub description: Option<String>,
    /// The custom template's configurations, which the request's own override.
    pub configs: JobConfigs,
}

/// The request fields that decide the document.
#[derive(Debug, Default)]
pub struct DocumentRequest<'a> {
    pub document: Option<&'a str>,
    pub document_source: Option<&'a str>,
    pub job_template_arn: Option<&'a str>,
    pub document_parameters: Option<&'a BTreeMap<String, String>>,
}

/// The local file a `documentSource` names: an absolute path or a `file://` URL.
pub fn source_path(src: &str) -> ApiResult<PathBuf> {
    let path = match src.strip_prefix("file://") {
        Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
        None if src.contains("://") => {
            return Err(ApiError::invalid(format!(
                "documentSource {src:?}: iotjobs-local reads job documents from local files only \
                 (an absolute path or a file:// URL); put the document in a file or pass it as document"
            )))
        }
        None => src,
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(ApiError::invalid(format!(
            "documentSource {src:?} must be an absolute path (the service does not share your working directory)"
        )));
    }
    Ok(path)
}

/// Reads a `documentSource` file (at most 32 KB of UTF-8).
pub async fn load_source(src: &str) -> ApiResult<String> {
    let path = source_path(src)?;
    let bad = |why: String| ApiError::invalid(format!("documentSource {}: {why}", path.display()));
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(bad(format!(
            "{} bytes; a job document may have at most {MAX_DOCUMENT_BYTES}",
            meta.len()
        )));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| bad(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))
}

/// `Some(template id)` for a custom template ARN, `None` for an AWS managed one (whose ARN
/// has an empty account field).
fn custom_template_id(arn: &str) -> ApiResult<Option<String>> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [a, _, service, _region, account, resource] = parts.as_slice() else {
        return Err(ApiError::invalid(format!(
            "{arn:?} is not a job template ARN"
        )));
    };
    let Some(id) = resource.strip_prefix("jobtemplate/") else {
        return Err(ApiError::invalid(format!(
            "{arn:?} is not a job template ARN"
        )));
    };
    if *a != "arn" || *service != "iot" || id.is_empty() {
        return Err(ApiError::invalid(format!(
            "{arn:?} is not a job template ARN"
        )));
    }
    Ok((!account.is_empty()).then(|| id.to_owned()))
}

fn template_error(e: TemplateError) -> ApiError {
    match e {
        TemplateError::UnknownTemplate(_) => ApiError::not_found(e.to_string()),
        _ => ApiError::invalid(e.to_string()),
    }
}

/// Works out the document (and template defaults) of a CreateJob request.
pub async fn resolve(ctx: &ControlContext, req: DocumentRequest<'_>) -> ApiResult<Resolved> {
    let Some(arn) = req.job_template_arn else {
        if req.document_parameters.is_some() {
            return Err(ApiError::invalid(
                "documentParameters can only be used with an AWS managed template (jobTemplateArn)",
            ));
        }
        return inline(req.document, req.document_source).await;
    };
    match custom_template_id(arn)? {
        None => {
            if req.document.is_some() || req.document_source.is_some() {
                return Err(ApiError::invalid(
                    "an AWS managed template supplies the document: leave out document and documentSource",
                ));
            }
            let t = templates::find(arn).map_err(template_error)?;
            let empty = BTreeMap::new();
            let params = req.document_parameters.unwrap_or(&empty);
            Ok(Resolved {
                document: t.render(params).map_err(template_error)?,
                document_template: Some(t.document.to_owned()),
                document_source: None,
                description: Some(t.description.to_owned()),
                configs: JobConfigs::default(),
            })
        }
        Some(id) => {
            if req.document_parameters.is_some() {
                return Err(ApiError::invalid(
                    "documentParameters can only be used with an AWS managed template, not a custom one",
                ));
            }
            let t = ctx
                .service
                .request(|r| Command::DescribeJobTemplate(id, r))
                .await?;
            let mut resolved = if req.document.is_some() || req.document_source.is_some() {
                inline(req.document, req.document_source).await?
            } else {
                match (&t.document, &t.document_source) {
                    (Some(d), _) => Resolved {
                        document: d.clone(),
                        ..Default::default()
                    },
                    (None, Some(src)) => Resolved {
                        document: load_source(src).await?,
                        document_source: Some(src.clone()),
                        ..Default::default()
                    },
                    (None, None) => {
                        return Err(ApiError::invalid(format!(
                            "job template {} has no document",
                            t.template_id
                        )))
                    }
                }
            };
            resolved.description = Some(t.description.clone());
            resolved.configs = t.configs.clone();
            Ok(resolved)
        }
    }
}

async fn inline(document: Option<&str>, source: Option<&str>) -> ApiResult<Resolved> {
    match (document, source) {
        (Some(d), None) => Ok(Resolved {
            document: d.to_owned(),
            ..Default::default()
        }),
        (None, Some(src)) => Ok(Resolved {
            document: load_source(src).await?,
            document_source: Some(src.to_owned()),
            ..Default::default()
        }),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "give either document or documentSource, not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "a job needs a document, a documentSource or a jobTemplateArn",
        )),
    }
}

/// `over`'s configurations where set, else `base`'s.
pub fn merge_configs(base: JobConfigs, over: JobConfigs) -> JobConfigs {
    JobConfigs {
        presigned_url_config: over.presigned_url_config.or(base.presigned_url_config),
        job_executions_rollout_config: over
            .job_executions_rollout_config
            .or(base.job_executions_rollout_config),
        abort_config: over.abort_config.or(base.abort_config),
        timeout_config: over.timeout_config.or(base.timeout_config),
        job_executions_retry_config: over
            .job_executions_retry_config
            .or(base.job_executions_retry_config),
        scheduling_config: over.scheduling_config.or(base.scheduling_config),
        // A template's maintenance windows become the job's schedule windows; keep both.
        maintenance_windows: over.maintenance_windows.or(base.maintenance_windows),
        destination_package_versions: over
            .destination_package_versions
            .or(base.destination_package_versions),
        tags: over.tags.or(base.tags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths() {
        assert_eq!(
            source_path("file:///tmp/j.json").unwrap(),
            PathBuf::from("/tmp/j.json")
        );
        assert_eq!(
            source_path("file://localhost/tmp/j.json").unwrap(),
            PathBuf::from("/tmp/j.json")
        );
        assert_eq!(source_path("/a/b").unwrap(), PathBuf::from("/a/b"));
        assert!(source_path("https://s3.amazonaws.com/b/k").is_err());
        assert!(source_path("file://j.json").is_err());
        assert!(source_path("j.json").is_err());
    }

    #[test]
    fn template_arns() {
        assert_eq!(
            custom_template_id("arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot:1.0").unwrap(),
            None
        );
        assert_eq!(
            custom_template_id("arn:aws:iot:us-east-1:123456789012:jobtemplate/mine").unwrap(),
            Some("mine".into())
        );
        assert!(custom_template_id("arn:aws:iot:us-east-1:1:job/x").is_err());
        assert!(custom_template_id("AWS-Reboot").is_err());
    }
}
