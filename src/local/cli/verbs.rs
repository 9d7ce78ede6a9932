//! The client verbs: AWS CLI names and arguments (`aws iot create-job --job-id ...`) turned
//! into requests to the control plane, printed as tables or as the service's JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::output::{self, Format};
use super::Global;
use crate::local::control::client::{enc, query, ApiClient};

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// CreateThing; with --out also a certificate, key, CA and a ready iotjobsd config.toml.
    CreateThing(CreateThing),
    DescribeThing(ThingName),
    ListThings,
    DeleteThing(ThingName),
    CreateThingGroup(CreateThingGroup),
    DescribeThingGroup(GroupName),
    ListThingGroups {
        #[arg(long)]
        parent_group: Option<String>,
        #[arg(long)]
        recursive: bool,
    },
    DeleteThingGroup(GroupName),
    AddThingToThingGroup(Membership),
    RemoveThingFromThingGroup(Membership),
    ListThingsInThingGroup {
        #[arg(long)]
        thing_group_name: String,
        #[arg(long)]
        recursive: bool,
    },
    /// CreateKeysAndCertificate: unbound, as on AWS (attach it with attach-thing-principal),
    /// or with `--thing-name` (a local extension) issued for and attached to that thing.
    CreateKeysAndCertificate {
        #[arg(long)]
        thing_name: Option<String>,
        #[arg(long)]
        set_as_active: bool,
    },
    AttachThingPrincipal(ThingPrincipal),
    DetachThingPrincipal(ThingPrincipal),
    ListThingPrincipals {
        #[arg(long)]
        thing_name: String,
    },
    CreateJob(Box<CreateJob>),
    DescribeJob(JobId),
    ListJobs {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        target_selection: Option<String>,
        #[arg(long)]
        thing_group_name: Option<String>,
    },
    UpdateJob(UpdateJob),
    CancelJob(CancelJob),
    DeleteJob {
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        force: bool,
    },
    GetJobDocument {
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        before_substitution: bool,
    },
    ListJobExecutionsForJob {
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        status: Option<String>,
    },
    ListJobExecutionsForThing {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        status: Option<String>,
    },
    DescribeJobExecution {
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        execution_number: Option<i64>,
    },
    CancelJobExecution {
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        expected_version: Option<i64>,
    },
    DeleteJobExecution {
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        execution_number: i64,
        #[arg(long)]
        force: bool,
    },
    CreateJobTemplate(CreateJobTemplate),
    DescribeJobTemplate(TemplateId),
    ListJobTemplates,
    DeleteJobTemplate(TemplateId),
    ListManagedJobTemplates {
        #[arg(long)]
        template_name: Option<String>,
    },
    DescribeManagedJobTemplate {
        #[arg(long)]
        template_name: String,
        #[arg(long)]
        template_version: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ThingName {
    #[arg(long)]
    thing_name: String,
}

#[derive(Debug, Args)]
pub struct GroupName {
    #[arg(long)]
    thing_group_name: String,
}

#[derive(Debug, Args)]
pub struct JobId {
    #[arg(long)]
    job_id: String,
}

#[derive(Debug, Args)]
pub struct TemplateId {
    #[arg(long)]
    job_template_id: String,
}

#[derive(Debug, Args)]
pub struct CreateThing {
    /// The thing name (or --thing-name).
    #[arg(required_unless_present = "thing_name", conflicts_with = "thing_name")]
    name: Option<String>,
    #[arg(long)]
    thing_name: Option<String>,
    /// Attributes, `k=v,k2=v2` or JSON.
    #[arg(long, value_name = "ATTRS")]
    attributes: Option<String>,
    /// Write cert.pem, key.pem (0600), root-ca.pem and config.toml for iotjobsd into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Handler directory written into the generated config.toml.
    #[arg(long, value_name = "DIR", requires = "out")]
    handler_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CreateThingGroup {
    #[arg(long)]
    thing_group_name: String,
    #[arg(long)]
    parent_group_name: Option<String>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Args)]
pub struct ThingPrincipal {
    #[arg(long)]
    thing_name: String,
    /// The certificate's ARN.
    #[arg(long)]
    principal: String,
}

/// AttachThingPrincipal (PUT) or DetachThingPrincipal (DELETE): the principal travels in
/// the `x-amzn-principal` header, as the AWS CLI sends it.
async fn thing_principal(
    api: &ApiClient,
    f: Format,
    method: &str,
    a: ThingPrincipal,
) -> anyhow::Result<()> {
    let path = format!("/things/{}/principals", enc(&a.thing_name));
    let v = api
        .call_with(method, &path, &[("x-amzn-principal", &a.principal)], None)
        .await?;
    print(f, &v, View::Done);
    Ok(())
}

#[derive(Debug, Args)]
pub struct Membership {
    #[arg(long, required_unless_present = "thing_group_arn")]
    thing_group_name: Option<String>,
    #[arg(long)]
    thing_group_arn: Option<String>,
    #[arg(long, required_unless_present = "thing_arn")]
    thing_name: Option<String>,
    #[arg(long)]
    thing_arn: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateJob {
    #[arg(long)]
    job_id: String,
    /// Thing or thing-group ARNs (`thing/NAME` and `thinggroup/NAME` are accepted too).
    #[arg(long, num_args = 1.., required = true)]
    targets: Vec<String>,
    /// The job document: `file://PATH` or the JSON text.
    #[arg(long)]
    document: Option<String>,
    /// A job document file the service reads (a path or file:// URL).
    #[arg(long)]
    document_source: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// A custom or AWS managed template ARN, e.g. arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot:1.0.
    #[arg(long)]
    job_template_arn: Option<String>,
    /// Managed template parameters: `k=v,k2=v2` or JSON.
    #[arg(long, value_name = "PARAMS")]
    document_parameters: Option<String>,
    /// SNAPSHOT (default) or CONTINUOUS.
    #[arg(long)]
    target_selection: Option<String>,
    #[arg(long)]
    namespace_id: Option<String>,
    #[command(flatten)]
    configs: Configs,
}

/// Job configurations, as JSON text or `file://PATH` (stored as given).
#[derive(Debug, Args)]
pub struct Configs {
    #[arg(long, value_name = "JSON")]
    timeout_config: Option<String>,
    #[arg(long, value_name = "JSON")]
    job_executions_rollout_config: Option<String>,
    #[arg(long, value_name = "JSON")]
    abort_config: Option<String>,
    #[arg(long, value_name = "JSON")]
    job_executions_retry_config: Option<String>,
    #[arg(long, value_name = "JSON")]
    presigned_url_config: Option<String>,
    #[arg(long, value_name = "JSON")]
    scheduling_config: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateJob {
    #[arg(long)]
    job_id: String,
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    configs: Configs,
}

#[derive(Debug, Args)]
pub struct CancelJob {
    #[arg(long)]
    job_id: String,
    #[arg(long)]
    force: bool,
    #[arg(long)]
    reason_code: Option<String>,
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateJobTemplate {
    #[arg(long)]
    job_template_id: String,
    #[arg(long)]
    description: String,
    #[arg(long)]
    document: Option<String>,
    #[arg(long)]
    document_source: Option<String>,
    #[arg(long)]
    job_arn: Option<String>,
    #[command(flatten)]
    configs: Configs,
}

/// `file://PATH` → the file's text; anything else as is (like the AWS CLI).
fn text_arg(v: &str) -> anyhow::Result<String> {
    match v.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}")),
        None => Ok(v.to_owned()),
    }
}

/// JSON, or for flat objects the AWS CLI's shorthand `k=v,k2=v2` (numbers become JSON
/// numbers): `--scheduling-config startTime=2030-01-01T10:00,endBehavior=CANCEL`.
fn json_arg(name: &str, v: &str) -> anyhow::Result<Value> {
    let text = text_arg(v)?;
    let t = text.trim_start();
    if !t.starts_with('{') && !t.starts_with('[') && t.contains('=') {
        let pairs = key_values(&text).with_context(|| format!("--{name}"))?;
        return Ok(Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let n = v
                        .parse::<i64>()
                        .map(Value::from)
                        .or_else(|_| v.parse::<f64>().map(Value::from));
                    (k, n.unwrap_or(Value::String(v)))
                })
                .collect(),
        ));
    }
    serde_json::from_str(&text).with_context(|| format!("--{name} is not valid JSON"))
}

/// `k=v,k2=v2` (a piece without `=` continues the previous value, so commas may appear in
/// values, as AWS-Run-Command's `command` needs) or a JSON object.
pub fn key_values(v: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let text = text_arg(v)?;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text).context("expected a JSON object of strings");
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in text.split(',') {
        let starts_pair = piece.split_once('=').filter(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        match (starts_pair, out.last_mut()) {
            (Some((k, val)), _) => out.push((k.to_owned(), val.to_owned())),
            (None, Some((_, last))) => {
                last.push(',');
                last.push_str(piece);
            }
            (None, None) => bail!("expected KEY=VALUE[,KEY=VALUE...], got {text:?}"),
        }
    }
    Ok(out.into_iter().collect())
}

/// Full ARNs for `thing/NAME` and `thinggroup/NAME` shorthands (the service ignores region
/// and account in target ARNs).
fn target_arn(t: &str) -> String {
    if t.starts_with("arn:") {
        t.to_owned()
    } else {
        format!("arn:aws:iot:us-east-1:123456789012:{t}")
    }
}

/// A `documentSource` the service can open: absolute, since it may run elsewhere.
fn absolute_source(src: &str) -> anyhow::Result<String> {
    if src.contains("://") && !src.starts_with("file://") {
        return Ok(src.to_owned());
    }
    let path = Path::new(src.strip_prefix("file://").unwrap_or(src));
    let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    Ok(format!("file://{}", abs.display()))
}

fn configs_json(c: &Configs, body: &mut Map<String, Value>) -> anyhow::Result<()> {
    for (key, flag, v) in [
        ("timeoutConfig", "timeout-config", &c.timeout_config),
        (
            "jobExecutionsRolloutConfig",
            "job-executions-rollout-config",
            &c.job_executions_rollout_config,
        ),
        ("abortConfig", "abort-config", &c.abort_config),
        (
            "jobExecutionsRetryConfig",
            "job-executions-retry-config",
            &c.job_executions_retry_config,
        ),
        (
            "presignedUrlConfig",
            "presigned-url-config",
            &c.presigned_url_config,
        ),
        (
            "schedulingConfig",
            "scheduling-config",
            &c.scheduling_config,
        ),
    ] {
        if let Some(v) = v {
            body.insert(key.to_owned(), json_arg(flag, v)?);
        }
    }
    Ok(())
}

fn set(body: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        body.insert(key.to_owned(), json!(v));
    }
}

fn tf(b: bool) -> Option<String> {
    b.then(|| "true".to_owned())
}

/// What to print for a response in table mode.
enum View {
    /// `FIELD VALUE` lines of the object under this pointer ("" = all).
    Fields(&'static str),
    /// A list under `key` with (header, pointer) columns.
    List(&'static str, &'static [(&'static str, &'static str)]),
    /// A raw string under this pointer (documents).
    Raw(&'static str),
    /// Nothing but "ok".
    Done,
}

fn print(format: Format, v: &Value, view: View) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        );
        return;
    }
    match view {
        View::Fields(ptr) => print!("{}", output::fields(v.pointer(ptr).unwrap_or(v))),
        View::List(key, cols) => {
            let items = v[key].as_array().cloned().unwrap_or_default();
            let headers: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
            let ptrs: Vec<&str> = cols.iter().map(|(_, p)| *p).collect();
            print!("{}", output::table(&headers, &output::rows(&items, &ptrs)));
        }
        View::Raw(ptr) => match v.pointer(ptr) {
            Some(Value::String(s)) => println!("{s}"),
            _ => println!("{v}"),
        },
        View::Done => println!("ok"),
    }
}

/// `GET` of every page, wrapped back as `{key: [...]}`.
async fn list(api: &ApiClient, path: &str, key: &str) -> anyhow::Result<Value> {
    let items = api.get_all(path, key).await?;
    Ok(json!({ key: items }))
}

pub async fn run(verb: Verb, global: &Global) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&global.endpoint_url)?;
    let f = global.output;
    use View::*;
    const EXECS_FOR_JOB: &[(&str, &str)] = &[
        ("THING", "/thingArn"),
        ("STATUS", "/jobExecutionSummary/status"),
        ("EXEC", "/jobExecutionSummary/executionNumber"),
        ("QUEUED", "/jobExecutionSummary/queuedAt"),
        ("STARTED", "/jobExecutionSummary/startedAt"),
        ("UPDATED", "/jobExecutionSummary/lastUpdatedAt"),
    ];
    const EXECS_FOR_THING: &[(&str, &str)] = &[
        ("JOB", "/jobId"),
        ("STATUS", "/jobExecutionSummary/status"),
        ("EXEC", "/jobExecutionSummary/executionNumber"),
        ("QUEUED", "/jobExecutionSummary/queuedAt"),
        ("UPDATED", "/jobExecutionSummary/lastUpdatedAt"),
    ];
    match verb {
        Verb::CreateThing(a) => return create_thing(&api, f, a).await,
        Verb::DescribeThing(a) => {
            let v = api.get(&format!("/things/{}", enc(&a.thing_name))).await?;
            print(f, &v, Fields(""));
        }
        Verb::ListThings => {
            let v = list(&api, "/things", "things").await?;
            print(
                f,
                &v,
                List(
                    "things",
                    &[
                        ("NAME", "/thingName"),
                        ("TYPE", "/thingTypeName"),
                        ("VERSION", "/version"),
                    ],
                ),
            );
        }
        Verb::DeleteThing(a) => {
            let v = api
                .call("DELETE", &format!("/things/{}", enc(&a.thing_name)), None)
                .await?;
            print(f, &v, Done);
        }
        Verb::CreateThingGroup(a) => {
            let mut body = Map::new();
            set(&mut body, "parentGroupName", &a.parent_group_name);
            if let Some(d) = &a.description {
                body.insert(
                    "thingGroupProperties".into(),
                    json!({"thingGroupDescription": d}),
                );
            }
            let path = format!("/thing-groups/{}", enc(&a.thing_group_name));
            let v = api.call("POST", &path, Some(&Value::Object(body))).await?;
            print(f, &v, Fields(""));
        }
        Verb::DescribeThingGroup(a) => {
            let v = api
                .get(&format!("/thing-groups/{}", enc(&a.thing_group_name)))
                .await?;
            print(f, &v, Fields(""));
        }
        Verb::ListThingGroups {
            parent_group,
            recursive,
        } => {
            let q = query(&[("parentGroup", parent_group), ("recursive", tf(recursive))]);
            let v = list(&api, &format!("/thing-groups{q}"), "thingGroups").await?;
            print(
                f,
                &v,
                List(
                    "thingGroups",
                    &[("NAME", "/groupName"), ("ARN", "/groupArn")],
                ),
            );
        }
        Verb::DeleteThingGroup(a) => {
            let path = format!("/thing-groups/{}", enc(&a.thing_group_name));
            let v = api.call("DELETE", &path, None).await?;
            print(f, &v, Done);
        }
        Verb::AddThingToThingGroup(m) => {
            let v = api
                .call(
                    "PUT",
                    "/thing-groups/addThingToThingGroup",
                    Some(&membership(&m)),
                )
                .await?;
            print(f, &v, Done);
        }
        Verb::RemoveThingFromThingGroup(m) => {
            let v = api
                .call(
                    "PUT",
                    "/thing-groups/removeThingFromThingGroup",
                    Some(&membership(&m)),
                )
                .await?;
            print(f, &v, Done);
        }
        Verb::ListThingsInThingGroup {
            thing_group_name,
            recursive,
        } => {
            let q = query(&[("recursive", tf(recursive))]);
            let path = format!("/thing-groups/{}/things{q}", enc(&thing_group_name));
            let v = list(&api, &path, "things").await?;
            if f == Format::Json {
                print(f, &v, Done);
            } else {
                println!("THING");
                for t in v["things"].as_array().into_iter().flatten() {
                    println!("{}", t.as_str().unwrap_or_default());
                }
            }
        }
        Verb::AttachThingPrincipal(a) => thing_principal(&api, f, "PUT", a).await?,
        Verb::DetachThingPrincipal(a) => thing_principal(&api, f, "DELETE", a).await?,
        Verb::ListThingPrincipals { thing_name } => {
            let path = format!("/things/{}/principals", enc(&thing_name));
            let v = list(&api, &path, "principals").await?;
            if f == Format::Json {
                print(f, &v, Done);
            } else {
                println!("PRINCIPAL");
                for p in v["principals"].as_array().into_iter().flatten() {
                    println!("{}", p.as_str().unwrap_or_default());
                }
            }
        }
        Verb::CreateKeysAndCertificate {
            thing_name,
            set_as_active,
        } => {
            let q = query(&[
                ("setAsActive", Some(set_as_active.to_string())),
                ("thingName", thing_name),
            ]);
            let v = api
                .call(
                    "POST",
                    &format!("/keys-and-certificate{q}"),
                    Some(&json!({})),
                )
                .await?;
            print(f, &v, Fields(""));
        }
        Verb::CreateJob(a) => {
            let v = create_job(&api, *a).await?;
            print(f, &v, Fields(""));
        }
        Verb::DescribeJob(a) => {
            let v = api.get(&format!("/jobs/{}", enc(&a.job_id))).await?;
            print(f, &v, Fields("/job"));
        }
        Verb::ListJobs {
            status,
            target_selection,
            thing_group_name,
        } => {
            let q = query(&[
                ("status", status),
                ("targetSelection", target_selection),
                ("thingGroupName", thing_group_name),
            ]);
            let v = list(&api, &format!("/jobs{q}"), "jobs").await?;
            print(
                f,
                &v,
                List(
                    "jobs",
                    &[
                        ("JOB", "/jobId"),
                        ("STATUS", "/status"),
                        ("SELECTION", "/targetSelection"),
                        ("CREATED", "/createdAt"),
                        ("COMPLETED", "/completedAt"),
                    ],
                ),
            );
        }
        Verb::UpdateJob(a) => {
            let mut body = Map::new();
            set(&mut body, "description", &a.description);
            configs_json(&a.configs, &mut body)?;
            let v = api
                .call(
                    "PATCH",
                    &format!("/jobs/{}", enc(&a.job_id)),
                    Some(&Value::Object(body)),
                )
                .await?;
            print(f, &v, Done);
        }
        Verb::CancelJob(a) => {
            let mut body = Map::new();
            set(&mut body, "reasonCode", &a.reason_code);
            set(&mut body, "comment", &a.comment);
            let path = format!(
                "/jobs/{}/cancel{}",
                enc(&a.job_id),
                query(&[("force", tf(a.force))])
            );
            let v = api.call("PUT", &path, Some(&Value::Object(body))).await?;
            print(f, &v, Fields(""));
        }
        Verb::DeleteJob { job_id, force } => {
            let path = format!("/jobs/{}{}", enc(&job_id), query(&[("force", tf(force))]));
            let v = api.call("DELETE", &path, None).await?;
            print(f, &v, Done);
        }
        Verb::GetJobDocument {
            job_id,
            before_substitution,
        } => {
            let q = query(&[("beforeSubstitution", tf(before_substitution))]);
            let v = api
                .get(&format!("/jobs/{}/job-document{q}", enc(&job_id)))
                .await?;
            print(f, &v, Raw("/document"));
        }
        Verb::ListJobExecutionsForJob { job_id, status } => {
            let path = format!(
                "/jobs/{}/things{}",
                enc(&job_id),
                query(&[("status", status)])
            );
            let v = list(&api, &path, "executionSummaries").await?;
            print(f, &v, List("executionSummaries", EXECS_FOR_JOB));
        }
        Verb::ListJobExecutionsForThing { thing_name, status } => {
            let path = format!(
                "/things/{}/jobs{}",
                enc(&thing_name),
                query(&[("status", status)])
            );
            let v = list(&api, &path, "executionSummaries").await?;
            print(f, &v, List("executionSummaries", EXECS_FOR_THING));
        }
        Verb::DescribeJobExecution {
            job_id,
            thing_name,
            execution_number,
        } => {
            let q = query(&[("executionNumber", execution_number.map(|n| n.to_string()))]);
            let v = api
                .get(&format!(
                    "/things/{}/jobs/{}{q}",
                    enc(&thing_name),
                    enc(&job_id)
                ))
                .await?;
            print(f, &v, Fields("/execution"));
        }
        Verb::CancelJobExecution {
            job_id,
            thing_name,
            force,
            expected_version,
        } => {
            let mut body = Map::new();
            if let Some(v) = expected_version {
                body.insert("expectedVersion".into(), json!(v));
            }
            let path = format!(
                "/things/{}/jobs/{}/cancel{}",
                enc(&thing_name),
                enc(&job_id),
                query(&[("force", tf(force))])
            );
            let v = api.call("PUT", &path, Some(&Value::Object(body))).await?;
            print(f, &v, Done);
        }
        Verb::DeleteJobExecution {
            job_id,
            thing_name,
            execution_number,
            force,
        } => {
            let path = format!(
                "/things/{}/jobs/{}/executionNumber/{execution_number}{}",
                enc(&thing_name),
                enc(&job_id),
                query(&[("force", tf(force))])
            );
            let v = api.call("DELETE", &path, None).await?;
            print(f, &v, Done);
        }
        Verb::CreateJobTemplate(a) => {
            let mut body = Map::new();
            body.insert("description".into(), json!(a.description));
            if let Some(d) = &a.document {
                body.insert("document".into(), json!(text_arg(d)?));
            }
            if let Some(s) = &a.document_source {
                body.insert("documentSource".into(), json!(absolute_source(s)?));
            }
            set(&mut body, "jobArn", &a.job_arn);
            configs_json(&a.configs, &mut body)?;
            let path = format!("/job-templates/{}", enc(&a.job_template_id));
            let v = api.call("PUT", &path, Some(&Value::Object(body))).await?;
            print(f, &v, Fields(""));
        }
        Verb::DescribeJobTemplate(a) => {
            let v = api
                .get(&format!("/job-templates/{}", enc(&a.job_template_id)))
                .await?;
            print(f, &v, Fields(""));
        }
        Verb::ListJobTemplates => {
            let v = list(&api, "/job-templates", "jobTemplates").await?;
            print(
                f,
                &v,
                List(
                    "jobTemplates",
                    &[
                        ("TEMPLATE", "/jobTemplateId"),
                        ("CREATED", "/createdAt"),
                        ("DESCRIPTION", "/description"),
                    ],
                ),
            );
        }
        Verb::DeleteJobTemplate(a) => {
            let v = api
                .call(
                    "DELETE",
                    &format!("/job-templates/{}", enc(&a.job_template_id)),
                    None,
                )
                .await?;
            print(f, &v, Done);
        }
        Verb::ListManagedJobTemplates { template_name } => {
            let q = query(&[("templateName", template_name)]);
            let v = list(
                &api,
                &format!("/managed-job-templates{q}"),
                "managedJobTemplates",
            )
            .await?;
            print(
                f,
                &v,
                List(
                    "managedJobTemplates",
                    &[
                        ("TEMPLATE", "/templateName"),
                        ("VERSION", "/templateVersion"),
                        ("ARN", "/templateArn"),
                        ("DESCRIPTION", "/description"),
                    ],
                ),
            );
        }
        Verb::DescribeManagedJobTemplate {
            template_name,
            template_version,
        } => {
            let q = query(&[("templateVersion", template_version)]);
            let v = api
                .get(&format!(
                    "/managed-job-templates/{}{q}",
                    enc(&template_name)
                ))
                .await?;
            print(f, &v, Fields(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn membership(m: &Membership) -> Value {
    let mut body = Map::new();
    set(&mut body, "thingGroupName", &m.thing_group_name);
    set(&mut body, "thingGroupArn", &m.thing_group_arn);
    set(&mut body, "thingName", &m.thing_name);
    set(&mut body, "thingArn", &m.thing_arn);
    Value::Object(body)
}

/// The CreateJob request body of the `create-job` arguments.
async fn create_job(api: &ApiClient, a: CreateJob) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert(
        "targets".into(),
        json!(a.targets.iter().map(|t| target_arn(t)).collect::<Vec<_>>()),
    );
    if let Some(d) = &a.document {
        body.insert("document".into(), json!(text_arg(d)?));
    }
    if let Some(s) = &a.document_source {
        body.insert("documentSource".into(), json!(absolute_source(s)?));
    }
    set(&mut body, "description", &a.description);
    set(&mut body, "jobTemplateArn", &a.job_template_arn);
    if let Some(p) = &a.document_parameters {
        body.insert("documentParameters".into(), json!(key_values(p)?));
    }
    set(&mut body, "targetSelection", &a.target_selection);
    set(&mut body, "namespaceId", &a.namespace_id);
    configs_json(&a.configs, &mut body)?;
    let path = format!("/jobs/{}", enc(&a.job_id));
    Ok(api.call("PUT", &path, Some(&Value::Object(body))).await?)
}

async fn create_thing(api: &ApiClient, f: Format, a: CreateThing) -> anyhow::Result<ExitCode> {
    let Some(name) = a.name.or(a.thing_name) else {
        bail!("a thing name is required");
    };
    let mut body = Map::new();
    if let Some(attrs) = &a.attributes {
        body.insert(
            "attributePayload".into(),
            json!({"attributes": key_values(attrs)?}),
        );
    }
    let v = api
        .call(
            "POST",
            &format!("/things/{}", enc(&name)),
            Some(&Value::Object(body)),
        )
        .await?;
    match &a.out {
        None => print(f, &v, View::Fields("")),
        Some(dir) => {
            let files = crate::local::provision::write_device_dir(
                api,
                &name,
                dir,
                a.handler_dir.as_deref(),
            )
            .await?;
            if f == Format::Json {
                print(f, &v, View::Done);
            } else {
                print(f, &v, View::Fields(""));
                println!();
                println!("wrote {}", files.dir.display());
                println!("  certificate  {}", files.cert.display());
                println!("  private key  {} (0600)", files.key.display());
                println!("  root CA      {}", files.root_ca.display());
                println!("  config       {}", files.config.display());
                println!(
                    "run the device: iotjobsd --config {}",
                    files.config.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_shorthand() {
        let m = key_values("downloadUrl=file:///a,filePath=/tmp/x").unwrap();
        assert_eq!(m["downloadUrl"], "file:///a");
        assert_eq!(m["filePath"], "/tmp/x");
        // Commas inside a value (AWS-Run-Command) stay in it.
        let m = key_values("command=echo,hello,world").unwrap();
        assert_eq!(m["command"], "echo,hello,world");
        let m = key_values(r#"{"a":"b,c"}"#).unwrap();
        assert_eq!(m["a"], "b,c");
        assert!(key_values("nokey").is_err());
    }

    #[test]
    fn flat_configs_in_shorthand() {
        let v = json_arg(
            "scheduling-config",
            "startTime=2030-01-01T10:00,endTime=2030-01-01T11:00,endBehavior=CANCEL",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"startTime": "2030-01-01T10:00", "endTime": "2030-01-01T11:00",
                "endBehavior": "CANCEL"})
        );
        let v = json_arg("timeout-config", "inProgressTimeoutInMinutes=10").unwrap();
        assert_eq!(v, serde_json::json!({"inProgressTimeoutInMinutes": 10}));
        assert!(json_arg("abort-config", "{bad").is_err());
    }

    #[test]
    fn target_shorthands() {
        assert_eq!(
            target_arn("thinggroup/g"),
            "arn:aws:iot:us-east-1:123456789012:thinggroup/g"
        );
        assert_eq!(
            target_arn("arn:aws:iot:x:1:thing/t"),
            "arn:aws:iot:x:1:thing/t"
        );
    }
}
