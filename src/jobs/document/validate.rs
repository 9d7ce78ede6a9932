//! The schema rules: a document (JSON value) becomes a [`JobPlan`] or the list of everything
//! wrong with it. AWS's rules (aws-device-client.md §2.5) plus ours: no wrong types, no step
//! without `input`, handler names that cannot leave the handler directory, no unsubstituted
//! template parameters, nothing `exec` cannot take (NUL bytes), well-formed extensions.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::command::{is_aws_space, split_command};
use super::conditions;
use super::parse::{index, invalid, wrong_type, Errors, Obj};
use super::{
    DocumentError, HandlerPath, JobPlan, PlannedStep, Schema, StepKind, MAX_STEP_TIMEOUT_SECS,
};

const PARAMETER_PLACEHOLDER: &str = "${aws:iot:parameter:";
/// Our extensions live on the step, next to `action`.
const STEP_EXTENSIONS: [&str; 2] = ["timeoutSeconds", "rollback"];

pub(super) fn plan(doc: &Value) -> Result<JobPlan, Errors> {
    let Value::Object(map) = doc else {
        return Err(vec![wrong_type("jobDocument".into(), "a JSON object")]);
    };
    let root = Obj { map, path: "" };
    let mut errs = Errors::new();
    let plan = match root.get("version") {
        // AWS's client treats a missing or empty version as the old schema.
        None => legacy(root, &mut errs),
        Some(Value::String(v)) if v.is_empty() => legacy(root, &mut errs),
        Some(Value::String(v)) if v == "1.0" => v1(root, &mut errs),
        Some(Value::String(v)) => {
            errs.push(invalid(
                "version".into(),
                format!("unsupported version {v:?}; this daemon runs \"1.0\" (or the old schema without version)"),
            ));
            None
        }
        Some(_) => {
            errs.push(wrong_type("version".into(), "the string \"1.0\""));
            None
        }
    };
    match plan {
        Some(plan) if errs.is_empty() => Ok(plan),
        _ if errs.is_empty() => Err(vec![invalid(
            "jobDocument".into(),
            "could not be read".to_owned(),
        )]),
        _ => Err(errs),
    }
}

fn v1(root: Obj<'_>, errs: &mut Errors) -> Option<JobPlan> {
    let include_stdout = root.flag("includeStdOut", errs);
    let conditions = conditions::parse(root, errs);
    let mut steps = Vec::new();
    if !root.has("steps") {
        errs.push(DocumentError::Missing {
            path: "steps".into(),
        });
    } else if let Some(list) = root.opt_array("steps", errs) {
        if list.is_empty() {
            errs.push(invalid("steps".into(), "must contain at least one step"));
        }
        for (i, item) in list.iter().enumerate() {
            if let Some(step) = step_value(item, &index("steps", i), true, errs) {
                steps.push(step);
            }
        }
    }
    let final_step = root
        .get("finalStep")
        .and_then(|v| step_value(v, "finalStep", true, errs));
    Some(JobPlan {
        schema: Schema::V1,
        include_stdout,
        conditions,
        steps,
        final_step,
    })
}

/// The old schema: `{operation, args, path, allowStdErr, includeStdOut}`, one handler step
/// named after its handler. `runAsUser` is not part of it (AWS passes `""`).
fn legacy(root: Obj<'_>, errs: &mut Errors) -> Option<JobPlan> {
    if root.has("steps") && !root.has("operation") {
        errs.push(invalid(
            "version".into(),
            "is required when the document has steps: add \"version\": \"1.0\"",
        ));
        return None;
    }
    let include_stdout = root.flag("includeStdOut", errs);
    let handler = root.req_str("operation", errs);
    if let Some(h) = handler {
        check_text("operation", h, errs);
    }
    let path = handler_path(root, errs);
    if let (Some(h), Some(HandlerPath::Default)) = (handler, &path) {
        check_handler_name("operation", h, errs);
    }
    let args = root.string_list("args", errs).unwrap_or_default();
    check_args(root, &args, errs);
    let allow_stderr = allow_stderr(root, errs);
    let (handler, path) = (handler?, path?);
    Some(JobPlan {
        schema: Schema::Legacy,
        include_stdout,
        conditions: Vec::new(),
        steps: vec![PlannedStep {
            name: handler.to_owned(),
            kind: StepKind::Handler {
                name: handler.to_owned(),
                path,
                args,
            },
            run_as_user: None,
            allow_stderr,
            ignore_failure: false,
            timeout: None,
            rollback: None,
        }],
        final_step: None,
    })
}

/// A step object `{action, timeoutSeconds?, rollback?}` at `path`.
fn step_value(
    v: &Value,
    path: &str,
    allow_rollback: bool,
    errs: &mut Errors,
) -> Option<PlannedStep> {
    let Value::Object(map) = v else {
        errs.push(wrong_type(path.into(), "an object with an action"));
        return None;
    };
    let step = Obj { map, path };
    let timeout = step.opt_uint("timeoutSeconds", errs).and_then(|secs| {
        if (1..=MAX_STEP_TIMEOUT_SECS).contains(&secs) {
            Some(Duration::from_secs(secs))
        } else {
            errs.push(invalid(
                step.path_of("timeoutSeconds"),
                format!("must be between 1 and {MAX_STEP_TIMEOUT_SECS} seconds"),
            ));
            None
        }
    });
    let rollback = match step.get("rollback") {
        None => None,
        Some(_) if !allow_rollback => {
            errs.push(invalid(
                step.path_of("rollback"),
                "a rollback step cannot have its own rollback",
            ));
            None
        }
        Some(r) => step_value(r, &step.path_of("rollback"), false, errs).map(Box::new),
    };
    let action_path = step.path_of("action");
    let action = step.req_obj("action", errs)?;
    let mut planned = action_plan(
        Obj {
            map: action,
            path: &action_path,
        },
        errs,
    )?;
    planned.timeout = timeout;
    planned.rollback = rollback;
    Some(planned)
}

fn action_plan(action: Obj<'_>, errs: &mut Errors) -> Option<PlannedStep> {
    for key in STEP_EXTENSIONS {
        if action.has(key) {
            errs.push(invalid(
                action.path_of(key),
                format!("{key} belongs to the step, next to \"action\", not inside it"),
            ));
        }
    }
    let name = action.req_str("name", errs);
    let kind_name = action.req_str("type", errs);
    let input_path = action.path_of("input");
    let input = action.req_obj("input", errs);
    let kind = match (kind_name, input) {
        (Some("runHandler"), Some(map)) => handler_kind(
            Obj {
                map,
                path: &input_path,
            },
            errs,
        ),
        (Some("runCommand"), Some(map)) => command_kind(
            Obj {
                map,
                path: &input_path,
            },
            errs,
        ),
        (Some("runHandler" | "runCommand"), None) | (None, _) => None,
        (Some(other), _) => {
            errs.push(invalid(
                action.path_of("type"),
                format!("must be \"runHandler\" or \"runCommand\", not {other:?}"),
            ));
            None
        }
    };
    let run_as_user = run_as_user(action, errs);
    let allow_stderr = allow_stderr(action, errs);
    let ignore_failure = action.flag("ignoreStepFailure", errs);
    Some(PlannedStep {
        name: name?.to_owned(),
        kind: kind?,
        run_as_user: run_as_user?,
        allow_stderr,
        ignore_failure,
        timeout: None,
        rollback: None,
    })
}

fn handler_kind(input: Obj<'_>, errs: &mut Errors) -> Option<StepKind> {
    let name = input.req_str("handler", errs);
    if let Some(n) = name {
        check_text(&input.path_of("handler"), n, errs);
    }
    let path = handler_path(input, errs);
    if let (Some(n), Some(HandlerPath::Default)) = (name, &path) {
        check_handler_name(&input.path_of("handler"), n, errs);
    }
    let args = input.string_list("args", errs).unwrap_or_default();
    check_args(input, &args, errs);
    Some(StepKind::Handler {
        name: name?.to_owned(),
        path: path?,
        args,
    })
}

/// `path`: absent, `""` or `"default"` is the handler directory; anything else a directory.
fn handler_path(obj: Obj<'_>, errs: &mut Errors) -> Option<HandlerPath> {
    let before = errs.len();
    let p = obj.opt_str("path", errs);
    if errs.len() > before {
        return None;
    }
    match p {
        None | Some("") | Some("default") => Some(HandlerPath::Default),
        Some(dir) => {
            let before = errs.len();
            check_text(&obj.path_of("path"), dir, errs);
            (errs.len() == before).then(|| HandlerPath::Dir(PathBuf::from(dir)))
        }
    }
}

/// In the handler directory a handler is a plain file name: no way out of the directory.
fn check_handler_name(path: &str, name: &str, errs: &mut Errors) {
    if name.contains('/') || name.contains("..") || name == "." {
        errs.push(invalid(
            path.into(),
            format!("{name:?} must be a file name in the handler directory (no \"/\" or \"..\")"),
        ));
    }
}

fn check_args(obj: Obj<'_>, args: &[String], errs: &mut Errors) {
    let base = obj.path_of("args");
    for (i, a) in args.iter().enumerate() {
        check_text(&index(&base, i), a, errs);
    }
}

fn command_kind(input: Obj<'_>, errs: &mut Errors) -> Option<StepKind> {
    let path = input.path_of("command");
    let command = input.req_str("command", errs)?;
    let before = errs.len();
    check_text(&path, command, errs);
    if errs.len() > before {
        return None;
    }
    let argv = split_command(command);
    let Some(first) = argv.first() else {
        errs.push(invalid(
            path,
            "has no words (words are separated by commas)",
        ));
        return None;
    };
    if first.is_empty() {
        errs.push(invalid(path, "the first word (the program) is empty"));
        return None;
    }
    if first.chars().any(is_aws_space) {
        errs.push(invalid(
            path,
            format!("the first word {first:?} contains whitespace; separate arguments with commas"),
        ));
        return None;
    }
    Some(StepKind::Command { argv })
}

fn run_as_user(action: Obj<'_>, errs: &mut Errors) -> Option<Option<String>> {
    let before = errs.len();
    let user = action.opt_str("runAsUser", errs);
    if errs.len() > before {
        return None;
    }
    match user {
        None | Some("") => Some(None),
        Some(u) => {
            let path = action.path_of("runAsUser");
            check_text(&path, u, errs);
            if errs.len() > before {
                return None;
            }
            if u.len() > 256
                || u.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ':')
            {
                errs.push(invalid(path, format!("{u:?} is not a valid user name")));
                return None;
            }
            Some(Some(u.to_owned()))
        }
    }
}

fn allow_stderr(obj: Obj<'_>, errs: &mut Errors) -> Option<u32> {
    let n = obj.opt_uint("allowStdErr", errs)?;
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            errs.push(invalid(obj.path_of("allowStdErr"), "is too large"));
            None
        }
    }
}

/// Strings that reach `exec`: no NUL byte, no template placeholder left unsubstituted.
fn check_text(path: &str, s: &str, errs: &mut Errors) {
    if s.contains('\0') {
        errs.push(invalid(path.into(), "contains a NUL character"));
    }
    if let Some(start) = s.find(PARAMETER_PLACEHOLDER) {
        let rest = &s[start..];
        let shown = rest.find('}').map_or(rest, |end| &rest[..=end]);
        errs.push(invalid(
            path.into(),
            format!(
                "contains the unsubstituted template parameter {shown}; create the job from its template with documentParameters"
            ),
        ));
    }
}
