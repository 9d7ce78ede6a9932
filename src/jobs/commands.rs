//! `validate-job` and `run-job`: local commands for handler authors (the binary's edge).
//!
//! Both read a job document file (or, when no such file exists, the name of an AWS
//! managed template such as `AWS-Run-Command`), apply `--param` substitution, and validate
//! it exactly as the daemon does. `run-job` then runs it through the same runner
//! (`jobs::runner`) and sandbox as the daemon, with no cloud: each step's output is
//! printed live (stdout lines on stdout, stderr lines on stderr, prefixed with the step
//! name), then the terminal status the daemon would publish, as one JSON line on stdout.
//!
//! Exit codes: 0 valid / SUCCEEDED, 1 FAILED, 2 invalid document (the daemon would
//! report REJECTED), 130 interrupted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::jobs::document::{HandlerPath, HostFacts, JobPlan, PlannedStep, StepKind};
use crate::jobs::runner::{self, Next, Verdict};
use crate::jobs::templates;
use crate::jobs::wire::JobExecutionStatus;
use crate::sandbox::{LineSink, OutputLine, Sandbox, SandboxConfig, Stream};

/// The job id steps see (`IOTJOBS_JOB_ID`) under run-job.
const LOCAL_JOB_ID: &str = "run-job";
/// The thing name steps see when the configuration names none.
const LOCAL_THING: &str = "local";

const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

pub fn validate_job(global: &GlobalArgs, file: &Path) -> anyhow::Result<ExitCode> {
    // Placeholders are left in place: they sit inside JSON strings, so the document's
    // structure can be validated before any parameter is known.
    let text = load_document(file, None)?;
    let plan = match JobPlan::from_slice(text.as_bytes()) {
        Ok(plan) => plan,
        Err(errors) => {
            for err in errors.iter() {
                eprintln!("error: {err}");
            }
            eprintln!(
                "{}: invalid; the daemon would report REJECTED",
                file.display()
            );
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    println!("{}: valid", file.display());
    print_plan(&plan);
    if let Err(unmet) = plan.check_conditions(&HostFacts::read()) {
        println!("note: on this host the job would be REJECTED: {unmet}");
    }
    // Handler checks need the daemon's configuration; without it the document is still
    // valid, so only say why they were skipped.
    match crate::config::load(global) {
        Ok(config) => check_programs(&plan, &config),
        Err(err) => println!("note: handlers not checked (configuration: {err})"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_job(global: &GlobalArgs, file: &Path, params: &[String]) -> anyhow::Result<ExitCode> {
    let text = load_document(file, Some(params))?;
    let plan = match JobPlan::from_slice(text.as_bytes())
        .and_then(|plan| plan.check_conditions(&HostFacts::read()).map(|()| plan))
    {
        Ok(plan) => plan,
        Err(errors) => {
            let details = runner::terminal_details([("reason", errors.to_string().as_str())]);
            eprintln!("error: {errors}");
            print_status(JobExecutionStatus::Rejected, &details);
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let config = crate::config::load(global).context("loading the configuration")?;
    if global.verbose > 0 {
        init_stderr_logging(global.verbose);
    }
    let work_root = std::env::temp_dir().join(format!("iotjobsd-run-job-{}", std::process::id()));
    let mut sandbox_config = SandboxConfig::from_config(&config.jobs, &config.paths);
    // run-job must not touch the daemon's state directory: steps work in a private one.
    sandbox_config.work_root = work_root.clone();
    let sandbox = Sandbox::new(sandbox_config);
    let thing = config
        .mqtt
        .thing_name
        .clone()
        .unwrap_or_else(|| LOCAL_THING.to_string());
    let default_timeout = Duration::from_secs(config.jobs.default_step_timeout_secs);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run_plan(&plan, &sandbox, &thing, default_timeout));
    if let Err(err) = std::fs::remove_dir_all(&work_root) {
        if err.kind() != std::io::ErrorKind::NotFound {
            eprintln!("warning: cannot remove {}: {err}", work_root.display());
        }
    }
    let (verdict, interrupted) = result;
    print_status(verdict.status, &verdict.details);
    Ok(match (interrupted, verdict.status) {
        (true, _) => ExitCode::from(EXIT_INTERRUPTED),
        (false, JobExecutionStatus::Succeeded) => ExitCode::SUCCESS,
        (false, _) => ExitCode::from(EXIT_FAILED),
    })
}

/// Runs the plan step by step; true with the verdict when Ctrl-C stopped it.
async fn run_plan(
    plan: &JobPlan,
    sandbox: &Sandbox,
    thing: &str,
    default_timeout: Duration,
) -> (Verdict, bool) {
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping the running step");
            on_interrupt.cancel();
        }
    });
    let (mut state, mut next) = runner::start(plan);
    let verdict = loop {
        let request = match next {
            Next::Run(request) => request,
            Next::Done(verdict) => break verdict,
        };
        eprintln!("==> step {}: {}", request.label, describe(&request.step));
        let step = runner::sandbox_request(&request, LOCAL_JOB_ID, 1, thing, default_timeout);
        let outcome = sandbox
            .run_step(&step, Some(printer(&request.step.name)), &cancel)
            .await;
        let (report, following) = runner::step_finished(plan, &mut state, &outcome);
        eprintln!("<== {}", report.message);
        next = following;
        if cancel.is_cancelled() {
            // Stop here: no further step and no rollback after an interrupt.
            let details =
                runner::terminal_details([("reason", outcome.reason(&request.step.name).as_str())]);
            interrupt.abort();
            let verdict = Verdict {
                status: JobExecutionStatus::Failed,
                details,
                summary: "interrupted".into(),
            };
            return (verdict, true);
        }
    };
    interrupt.abort();
    (verdict, false)
}

/// Prints each output line as it comes, prefixed with the step's name.
fn printer(step: &str) -> LineSink {
    let prefix = format!("[{step}]");
    Arc::new(move |line: OutputLine<'_>| {
        let end = if line.complete { "\n" } else { "" };
        match line.stream {
            Stream::Stdout => print!("{prefix} {}{end}", line.text),
            Stream::Stderr => eprint!("{prefix} {}{end}", line.text),
        }
    })
}

/// The document's text: the file, or a managed template by name; with `params`,
/// `${aws:iot:parameter:NAME}` placeholders are substituted (every one must be given).
fn load_document(file: &Path, params: Option<&[String]>) -> anyhow::Result<String> {
    if !file.exists() {
        if let Ok(template) = templates::find(&file.to_string_lossy()) {
            return match params {
                Some(params) => template
                    .render(&parse_params(params)?)
                    .with_context(|| format!("rendering managed template {}", template.name)),
                None => Ok(template.document.to_string()),
            };
        }
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading job document {}", file.display()))?;
    match params {
        Some(params) => templates::substitute(&text, &parse_params(params)?)
            .with_context(|| format!("substituting parameters into {}", file.display())),
        None => Ok(text),
    }
}

fn parse_params(params: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            bail!("--param {param:?}: expected NAME=VALUE");
        };
        if name.is_empty() {
            bail!("--param {param:?}: the name is empty");
        }
        if map.insert(name.to_string(), value.to_string()).is_some() {
            bail!("--param {name} is given twice");
        }
    }
    Ok(map)
}

fn print_status(status: JobExecutionStatus, details: &BTreeMap<String, String>) {
    println!("{}", json!({"status": status, "statusDetails": details}));
}

fn print_plan(plan: &JobPlan) {
    println!("includeStdOut: {}", plan.include_stdout);
    for condition in &plan.conditions {
        println!(
            "condition: {} {:?} {}",
            condition.key,
            condition.kind,
            condition.values.join(" | ")
        );
    }
    let total = plan.steps.len() + usize::from(plan.final_step.is_some());
    for (i, step) in plan.all_steps().enumerate() {
        let final_mark = if i == plan.steps.len() {
            " (finalStep)"
        } else {
            ""
        };
        println!("step {}/{total}{final_mark}: {}", i + 1, describe(step));
        if let Some(rollback) = &step.rollback {
            println!("  rollback: {}", describe(rollback));
        }
    }
}

/// One line: name, what runs, and the options that change its semantics.
fn describe(step: &PlannedStep) -> String {
    let what = match &step.kind {
        StepKind::Handler { name, path, args } => {
            let dir = match path {
                HandlerPath::Default => "handler directory".to_string(),
                HandlerPath::Dir(dir) => dir.display().to_string(),
            };
            format!("handler {name} in {dir} {}", quote_args(args))
        }
        StepKind::Command { argv } => format!("command {}", quote_args(argv)),
    };
    let mut line = format!("'{}' runs {}", step.name, what.trim_end());
    if let Some(user) = &step.run_as_user {
        line.push_str(&format!(", as {user}"));
    }
    if step.ignore_failure {
        line.push_str(", failure ignored");
    }
    if let Some(allowed) = step.allow_stderr {
        line.push_str(&format!(", at most {allowed} stderr lines"));
    }
    if let Some(timeout) = step.timeout {
        line.push_str(&format!(", timeout {} s", timeout.as_secs()));
    }
    line
}

fn quote_args(args: &[String]) -> String {
    args.iter()
        .map(|a| Value::String(a.clone()).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reports how the sandbox would resolve each step's program under this configuration.
fn check_programs(plan: &JobPlan, config: &Config) {
    let sandbox = Sandbox::new(SandboxConfig::from_config(&config.jobs, &config.paths));
    let steps = plan
        .all_steps()
        .flat_map(|s| std::iter::once(s).chain(s.rollback.as_deref()));
    for step in steps {
        let (program, _) = runner::program(step);
        match sandbox.resolve(&program) {
            Ok(path) => println!("'{}': runs {}", step.name, path.display()),
            Err(err) => println!("note: '{}' would fail here: {err}", step.name),
        }
    }
}

fn init_stderr_logging(verbose: u8) {
    let level = if verbose > 1 {
        tracing::Level::TRACE
    } else {
        tracing::Level::DEBUG
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .try_init();
}
