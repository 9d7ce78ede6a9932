//! Document tests: the cases of AWS's TestJobDocument.cpp (reference aws-device-client.md
//! §2.6), then every validation rule and extension.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

fn plan(v: Value) -> JobPlan {
    JobPlan::from_value(&v).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(v: Value) -> Vec<DocumentError> {
    JobPlan::from_value(&v).unwrap_err().0
}

/// The paths of every error, in order.
fn paths(v: Value) -> Vec<String> {
    errors(v)
        .iter()
        .map(|e| e.path().unwrap_or("-").to_owned())
        .collect()
}

fn handler(name: &str) -> Value {
    json!({"action": {"name": "s", "type": "runHandler", "input": {"handler": name}}})
}

fn command(cmd: &str) -> Value {
    json!({"action": {"name": "c", "type": "runCommand", "input": {"command": cmd}}})
}

fn v1(steps: Vec<Value>) -> Value {
    json!({"version": "1.0", "steps": steps})
}

fn handler_step(name: &str, dir: HandlerPath, args: &[&str]) -> StepKind {
    StepKind::Handler {
        name: name.into(),
        path: dir,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

// ------------------------------------------------------------ AWS TestJobDocument.cpp cases

fn aws_action(name: &str, kind: &str, input: Value) -> Value {
    json!({"action": {"name": name, "type": kind, "input": input, "runAsUser": "user1",
        "allowStdErr": 8, "ignoreStepFailure": "true"}})
}

fn aws_handler_input(handler: &str, args: &[&str]) -> Value {
    json!({"handler": handler, "args": args, "path": "path to handler"})
}

#[test]
fn aws_sample_job_document() {
    let doc = json!({
        "version": "1.0",
        "includeStdOut": "true",
        "conditions": [
            {"key": "operatingSystem", "value": ["ubuntu", "redhat"], "type": "stringEqual"},
            {"key": "OS", "value": ["16.0"], "type": "stringEqual"}],
        "steps": [
            aws_action("downloadJobHandler", "runHandler",
                aws_handler_input("download-file.sh", &["presignedUrl", "/tmp/aws-iot-device-client/"])),
            aws_action("installApplicationAndReboot", "runHandler",
                aws_handler_input("install-app.sh", &["applicationName", "active"])),
            aws_action("displayDirectory", "runCommand", json!({"command": "ls,/tmp"})),
            aws_action("validateAppStatus", "runHandler",
                aws_handler_input("validate-app-status.sh", &["applicationName", "active"]))],
        "finalStep": aws_action("deleteDownloadedHandler", "runHandler",
            aws_handler_input("validate-app-status.sh", &["applicationName", "active"]))
    });
    let p = plan(doc);
    assert_eq!(p.schema, Schema::V1);
    assert!(p.include_stdout);
    assert_eq!(
        p.conditions,
        vec![
            Condition {
                key: "operatingSystem".into(),
                values: vec!["ubuntu".into(), "redhat".into()],
                kind: ConditionType::StringEqual
            },
            Condition {
                key: "OS".into(),
                values: vec!["16.0".into()],
                kind: ConditionType::StringEqual
            },
        ]
    );
    let dir = || HandlerPath::Dir(PathBuf::from("path to handler"));
    let kinds: Vec<_> = p.steps.iter().map(|s| s.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            handler_step(
                "download-file.sh",
                dir(),
                &["presignedUrl", "/tmp/aws-iot-device-client/"]
            ),
            handler_step("install-app.sh", dir(), &["applicationName", "active"]),
            StepKind::Command {
                argv: vec!["ls".into(), "/tmp".into()]
            },
            handler_step(
                "validate-app-status.sh",
                dir(),
                &["applicationName", "active"]
            ),
        ]
    );
    for s in p.all_steps() {
        assert_eq!(s.run_as_user.as_deref(), Some("user1"));
        assert_eq!(s.allow_stderr, Some(8));
        assert!(s.ignore_failure);
        assert_eq!(s.timeout, None);
    }
    let f = p.final_step.unwrap();
    assert_eq!(f.name, "deleteDownloadedHandler");
    assert_eq!(
        f.kind,
        handler_step(
            "validate-app-status.sh",
            dir(),
            &["applicationName", "active"]
        )
    );
}

#[test]
fn aws_missing_required_fields_is_unparseable() {
    // AWS's test puts a `//` comment in the JSON, so what it really checks is that text that
    // is not JSON is invalid.
    let text = br#"{
        //version is missing
        "includeStdOut": "true",
        "steps": [{"action": {"name": "x", "type": "runHandler",
            "input": {"handler": "download-file.sh"}, "allowStdErr": "8"}}]}"#;
    let e = JobPlan::from_slice(text).unwrap_err();
    assert!(matches!(e.first(), DocumentError::NotJson(_)), "{e}");
}

#[test]
fn aws_missing_version_without_comment_is_invalid_too() {
    assert_eq!(
        paths(json!({"includeStdOut": "true", "steps": [handler("a.sh")]})),
        ["version"]
    );
}

#[test]
fn aws_minimum_job_document() {
    let p = plan(v1(vec![
        handler("download-file.sh"),
        handler("install-app.sh"),
        command("ls,/tmp"),
        handler("validate-app-status.sh"),
    ]));
    assert_eq!(p.steps.len(), 4);
    assert!(!p.include_stdout);
    assert!(p.final_step.is_none());
    let s = &p.steps[0];
    assert_eq!(
        s.kind,
        handler_step("download-file.sh", HandlerPath::Default, &[])
    );
    assert_eq!(s.run_as_user, None);
    assert_eq!(s.allow_stderr, None);
    assert!(!s.ignore_failure);
}

#[test]
fn aws_missing_required_fields_value_is_unparseable() {
    let text = br#"{"version": "1.0", "steps": [{"action": {"name": ,
        "type": "runHandler", "input": {"handler": "download-file.sh"}}}]}"#;
    assert!(matches!(
        JobPlan::from_slice(text).unwrap_err().first(),
        DocumentError::NotJson(_)
    ));
}

#[test]
fn aws_command_field_is_empty_is_unparseable() {
    let text = br#"{"version": "1.0", "steps": [{"action": {"name": "c",
        "type": "runCommand", "input": {"command": }}}]}"#;
    assert!(matches!(
        JobPlan::from_slice(text).unwrap_err().first(),
        DocumentError::NotJson(_)
    ));
}

#[test]
fn aws_command_contains_space_characters_is_valid() {
    let p = plan(v1(vec![command(" \n echo \t, Hello World ")]));
    assert_eq!(
        p.steps[0].kind,
        StepKind::Command {
            argv: vec!["echo".into(), "Hello World".into()]
        }
    );
}

#[test]
fn aws_space_within_first_word_of_command_is_invalid() {
    let e = errors(v1(vec![command(" aws iot \t,describe-endpoint")]));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path(), Some("steps[0].action.input.command"));
    assert!(
        e[0].to_string().contains("\"aws iot\" contains whitespace"),
        "{}",
        e[0]
    );
}

#[test]
fn aws_old_job_document_compatibility() {
    let p = plan(json!({"operation": "download-file.sh",
        "args": ["https://github.com/awslabs/aws-iot-device-client/archive/refs/tags/v1.3.tar.gz",
                 "/tmp/Downloaded_File.tar.gz"],
        "path": "default"}));
    assert_eq!(p.schema, Schema::Legacy);
    assert_eq!(p.steps.len(), 1);
    let s = &p.steps[0];
    assert_eq!(s.name, "download-file.sh");
    assert_eq!(
        s.kind,
        handler_step(
            "download-file.sh",
            HandlerPath::Default,
            &[
                "https://github.com/awslabs/aws-iot-device-client/archive/refs/tags/v1.3.tar.gz",
                "/tmp/Downloaded_File.tar.gz"
            ]
        )
    );
    assert_eq!(s.run_as_user, None);
    assert!(!s.ignore_failure);
}

#[test]
fn step_without_input_is_rejected_not_a_crash() {
    // Crashes AWS's client (null Optional), then crash-loops it on every restart.
    let doc = json!({"version":"1.0","steps":[{"action":{"name":"x","type":"runHandler"}}]});
    let e = errors(doc);
    assert_eq!(
        e,
        vec![DocumentError::Missing {
            path: "steps[0].action.input".into()
        }]
    );
    assert_eq!(
        paths(v1(vec![
            json!({"action": {"name": "c", "type": "runCommand"}})
        ])),
        ["steps[0].action.input"]
    );
}

// ------------------------------------------------------------ booleans

#[test]
fn booleans_as_json_booleans_and_strings() {
    for (v, expected) in [
        (json!(true), true),
        (json!("true"), true),
        (json!(false), false),
        (json!("false"), false),
    ] {
        let mut step = handler("a.sh");
        step["action"]["ignoreStepFailure"] = v.clone();
        let p = plan(json!({"version": "1.0", "includeStdOut": v, "steps": [step]}));
        assert_eq!(p.include_stdout, expected);
        assert_eq!(p.steps[0].ignore_failure, expected);
        let legacy = plan(json!({"operation": "a.sh", "includeStdOut": v}));
        assert_eq!(legacy.include_stdout, expected);
    }
}

#[test]
fn other_boolean_spellings_are_rejected_with_their_path() {
    for bad in [json!("yes"), json!("True"), json!(1), json!({})] {
        let mut step = handler("a.sh");
        step["action"]["ignoreStepFailure"] = bad.clone();
        assert_eq!(
            paths(json!({"version": "1.0", "includeStdOut": bad, "steps": [step]})),
            ["includeStdOut", "steps[0].action.ignoreStepFailure"]
        );
    }
}

// ------------------------------------------------------------ structure rules

#[test]
fn document_must_be_an_object() {
    assert_eq!(paths(json!([1])), ["jobDocument"]);
    assert_eq!(paths(json!("x")), ["jobDocument"]);
}

#[test]
fn version_rules() {
    assert_eq!(
        paths(json!({"version": "2.0", "steps": [handler("a")]})),
        ["version"]
    );
    assert_eq!(
        paths(json!({"version": 1.0, "steps": [handler("a")]})),
        ["version"]
    );
    // An empty version means the old schema, as in AWS's client.
    assert_eq!(
        plan(json!({"version": "", "operation": "a.sh"})).schema,
        Schema::Legacy
    );
    assert_eq!(
        plan(json!({"version": null, "operation": "a.sh"})).schema,
        Schema::Legacy
    );
}

#[test]
fn steps_rules() {
    assert_eq!(paths(json!({"version": "1.0"})), ["steps"]);
    assert_eq!(paths(json!({"version": "1.0", "steps": []})), ["steps"]);
    assert_eq!(paths(json!({"version": "1.0", "steps": {}})), ["steps"]);
    // AWS silently skips steps without an action; we say which one.
    assert_eq!(
        paths(v1(vec![handler("a"), json!({"_comment": "x"}), json!(5)])),
        ["steps[1].action", "steps[2]"]
    );
    assert_eq!(
        paths(json!({"version": "1.0", "steps": [handler("a")], "finalStep": {}})),
        ["finalStep.action"]
    );
}

#[test]
fn action_rules() {
    let step = |action: Value| v1(vec![json!({ "action": action })]);
    assert_eq!(
        paths(step(
            json!({"type": "runHandler", "input": {"handler": "a"}})
        )),
        ["steps[0].action.name"]
    );
    assert_eq!(
        paths(step(
            json!({"name": "", "type": "runHandler", "input": {"handler": "a"}})
        )),
        ["steps[0].action.name"]
    );
    assert_eq!(
        paths(step(json!({"name": "n", "input": {"handler": "a"}}))),
        ["steps[0].action.type"]
    );
    let e = errors(step(json!({"name": "n", "type": "runShell", "input": {}})));
    assert_eq!(e[0].path(), Some("steps[0].action.type"));
    assert!(e[0]
        .to_string()
        .contains("\"runHandler\" or \"runCommand\""));
    assert_eq!(
        paths(step(
            json!({"name": "n", "type": "runHandler", "input": "a.sh"})
        )),
        ["steps[0].action.input"]
    );
    assert_eq!(paths(v1(vec![json!({"action": []})])), ["steps[0].action"]);
}

#[test]
fn handler_rules() {
    let with_input = |input: Value| {
        v1(vec![
            json!({"action": {"name": "n", "type": "runHandler", "input": input}}),
        ])
    };
    assert_eq!(
        paths(with_input(json!({}))),
        ["steps[0].action.input.handler"]
    );
    assert_eq!(
        paths(with_input(json!({"handler": ""}))),
        ["steps[0].action.input.handler"]
    );
    // Non-string handlers: AWS's client reads "" and later runs whatever it finds.
    for bad in [json!(5), json!(["a.sh"]), json!(true)] {
        assert_eq!(
            paths(with_input(json!({ "handler": bad }))),
            ["steps[0].action.input.handler"]
        );
    }
    for bad in ["../x.sh", "sub/x.sh", "/bin/sh", "..", ".", "a..b"] {
        for path in [json!("default"), json!(""), Value::Null] {
            let e = errors(with_input(json!({ "handler": bad, "path": path })));
            assert_eq!(e.len(), 1, "{bad}");
            assert_eq!(e[0].path(), Some("steps[0].action.input.handler"));
            assert!(e[0].to_string().contains("no \"/\" or \"..\""));
        }
    }
    // With an explicit directory the sandbox confines the handler; the name may have parts.
    let p = plan(with_input(
        json!({"handler": "sub/x.sh", "path": "/opt/handlers"}),
    ));
    assert_eq!(
        p.steps[0].kind,
        handler_step("sub/x.sh", HandlerPath::Dir("/opt/handlers".into()), &[])
    );
    assert_eq!(
        paths(with_input(json!({"handler": "a", "path": 7}))),
        ["steps[0].action.input.path"]
    );
    assert_eq!(
        paths(with_input(json!({"handler": "a", "args": ["x", 1, null]}))),
        [
            "steps[0].action.input.args[1]",
            "steps[0].action.input.args[2]"
        ]
    );
    assert_eq!(
        paths(with_input(json!({"handler": "a", "args": "x"}))),
        ["steps[0].action.input.args"]
    );
    assert_eq!(
        paths(with_input(
            json!({"handler": "a", "args": ["ok", "nul\u{0}"]})
        )),
        ["steps[0].action.input.args[1]"]
    );
}

#[test]
fn old_schema_rules() {
    assert_eq!(paths(json!({})), ["operation"]);
    assert_eq!(paths(json!({"operation": 3})), ["operation"]);
    assert_eq!(paths(json!({"operation": "../evil.sh"})), ["operation"]);
    assert_eq!(paths(json!({"operation": "a", "args": [1]})), ["args[0]"]);
    let p = plan(json!({"operation": "install-packages.sh", "args": ["lftp"],
        "path": "/opt/h", "allowStdErr": 2, "includeStdOut": "true"}));
    assert!(p.include_stdout);
    assert_eq!(p.steps[0].allow_stderr, Some(2));
    assert_eq!(
        p.steps[0].kind,
        handler_step(
            "install-packages.sh",
            HandlerPath::Dir("/opt/h".into()),
            &["lftp"]
        )
    );
}

#[test]
fn command_rules() {
    let p = plan(v1(vec![command(r"echo,Hello\, I am DC.")]));
    assert_eq!(
        p.steps[0].kind,
        StepKind::Command {
            argv: vec!["echo".into(), "Hello, I am DC.".into()]
        }
    );
    for bad in ["", ",,", " ,echo", "echo hi,x"] {
        assert_eq!(
            paths(v1(vec![command(bad)])),
            ["steps[0].action.input.command"],
            "{bad:?}"
        );
    }
    assert_eq!(
        paths(v1(vec![
            json!({"action": {"name": "c", "type": "runCommand",
            "input": {"command": ["ls"]}}})
        ])),
        ["steps[0].action.input.command"]
    );
    assert_eq!(
        paths(v1(vec![
            json!({"action": {"name": "c", "type": "runCommand", "input": {}}})
        ])),
        ["steps[0].action.input.command"]
    );
}

#[test]
fn run_as_user_and_allow_stderr_rules() {
    let with = |key: &str, v: Value| {
        let mut s = handler("a.sh");
        s["action"][key] = v;
        v1(vec![s])
    };
    assert_eq!(
        plan(with("runAsUser", json!(""))).steps[0].run_as_user,
        None
    );
    assert_eq!(
        plan(with("runAsUser", json!("svc-user"))).steps[0]
            .run_as_user
            .as_deref(),
        Some("svc-user")
    );
    for bad in [json!(0), json!("a b"), json!("a/b"), json!("a\nb")] {
        assert_eq!(paths(with("runAsUser", bad)), ["steps[0].action.runAsUser"]);
    }
    assert_eq!(
        plan(with("allowStdErr", json!("3"))).steps[0].allow_stderr,
        Some(3)
    );
    for bad in [json!(-1), json!(1.5), json!("x"), json!(5_000_000_000u64)] {
        assert_eq!(
            paths(with("allowStdErr", bad)),
            ["steps[0].action.allowStdErr"]
        );
    }
}

#[test]
fn conditions_rules_are_awss() {
    let with = |c: Value| json!({"version": "1.0", "conditions": c, "steps": [handler("a")]});
    assert_eq!(paths(with(json!({}))), ["conditions"]);
    assert_eq!(paths(with(json!([5]))), ["conditions[0]"]);
    assert_eq!(
        paths(with(json!([{"value": ["x"]}]))),
        ["conditions[0].key"]
    );
    assert_eq!(
        paths(with(json!([{"key": "operatingSystem"}]))),
        ["conditions[0].value"]
    );
    assert_eq!(
        paths(with(json!([{"key": "operatingSystem", "value": []}]))),
        ["conditions[0].value"]
    );
    assert_eq!(
        paths(with(json!([{"key": "operatingSystem", "value": "ubuntu"}]))),
        ["conditions[0].value"]
    );
    assert_eq!(
        paths(with(
            json!([{"key": "operatingSystem", "value": ["x"], "type": 3}])
        )),
        ["conditions[0].type"]
    );
    // Unknown keys and types validate (as on AWS) and fail only when evaluated.
    let p = plan(with(
        json!([{"key": "cpu", "value": ["x"], "type": "regex"}]),
    ));
    assert_eq!(p.conditions[0].kind, ConditionType::Other("regex".into()));
}

#[test]
fn conditions_are_evaluated_against_host_facts() {
    let doc = json!({"version": "1.0", "steps": [handler("a")], "conditions": [
        {"key": "operatingSystem", "value": ["ubuntu", "debian"]},
        {"key": "architecture", "value": ["arm64"], "type": "stringEqual"}]});
    let p = plan(doc);
    let host = |os: &str, arch: &str| HostFacts {
        operating_system: Some(os.into()),
        operating_system_version: None,
        architecture: arch.into(),
    };
    assert_eq!(p.check_conditions(&host("debian", "aarch64")), Ok(()));
    let e = p.check_conditions(&host("rhel", "x86_64")).unwrap_err();
    let paths: Vec<_> = e.iter().map(|e| e.path().unwrap()).collect();
    assert_eq!(paths, ["conditions[0]", "conditions[1]"]);
    assert!(e.to_string().starts_with(
        "invalid job document: conditions[0]: condition not met: operatingSystem is \"rhel\""
    ));
}

// ------------------------------------------------------------ extensions

#[test]
fn timeout_seconds_extension() {
    let mut s = handler("a.sh");
    s["timeoutSeconds"] = json!(300);
    assert_eq!(
        plan(v1(vec![s.clone()])).steps[0].timeout,
        Some(Duration::from_secs(300))
    );
    s["timeoutSeconds"] = json!("60");
    assert_eq!(
        plan(v1(vec![s.clone()])).steps[0].timeout,
        Some(Duration::from_secs(60))
    );
    for bad in [
        json!(0),
        json!(-5),
        json!("soon"),
        json!(MAX_STEP_TIMEOUT_SECS + 1),
    ] {
        s["timeoutSeconds"] = bad;
        assert_eq!(paths(v1(vec![s.clone()])), ["steps[0].timeoutSeconds"]);
    }
    let mut inside = handler("a.sh");
    inside["action"]["timeoutSeconds"] = json!(5);
    assert_eq!(paths(v1(vec![inside])), ["steps[0].action.timeoutSeconds"]);
}

#[test]
fn rollback_extension() {
    let mut s = handler("install.sh");
    s["rollback"] = json!({"timeoutSeconds": 30, "action": {"name": "undo", "type": "runCommand",
        "input": {"command": "rm,-f,/tmp/x"}, "runAsUser": "root"}});
    let mut fin = handler("cleanup.sh");
    fin["rollback"] = handler("uncleanup.sh");
    let p = plan(json!({"version": "1.0", "steps": [s, handler("b.sh")], "finalStep": fin}));
    let rb = p.steps[0].rollback.as_deref().unwrap();
    assert_eq!(rb.name, "undo");
    assert_eq!(rb.timeout, Some(Duration::from_secs(30)));
    assert_eq!(rb.run_as_user.as_deref(), Some("root"));
    assert_eq!(
        rb.kind,
        StepKind::Command {
            argv: vec!["rm".into(), "-f".into(), "/tmp/x".into()]
        }
    );
    assert!(p.steps[1].rollback.is_none());
    assert!(p.final_step.unwrap().rollback.is_some());

    let mut nested = handler("a.sh");
    nested["rollback"] = handler("b.sh");
    nested["rollback"]["rollback"] = handler("c.sh");
    assert_eq!(paths(v1(vec![nested])), ["steps[0].rollback.rollback"]);
    let mut bad = handler("a.sh");
    bad["rollback"] = json!({"action": {"name": "u", "type": "runHandler"}});
    assert_eq!(paths(v1(vec![bad])), ["steps[0].rollback.action.input"]);
    let mut inside = handler("a.sh");
    inside["action"]["rollback"] = handler("b.sh");
    assert_eq!(paths(v1(vec![inside])), ["steps[0].action.rollback"]);
}

// ------------------------------------------------------------ size, placeholders, reporting

#[test]
fn documents_over_32_kib_are_rejected() {
    let doc_of_size = |n: usize| {
        let base = serde_json::to_vec(&json!({"operation": "a.sh", "pad": ""}))
            .unwrap()
            .len();
        json!({"operation": "a.sh", "pad": "x".repeat(n - base)})
    };
    let at_limit = doc_of_size(MAX_DOCUMENT_BYTES);
    assert_eq!(serde_json::to_vec(&at_limit).unwrap().len(), 32768);
    assert!(JobPlan::from_value(&at_limit).is_ok());
    let over = doc_of_size(MAX_DOCUMENT_BYTES + 1);
    assert_eq!(
        JobPlan::from_value(&over).unwrap_err().0,
        vec![DocumentError::TooLarge { size: 32769 }]
    );
    let bytes = serde_json::to_vec(&over).unwrap();
    assert!(matches!(
        JobPlan::from_slice(&bytes).unwrap_err().first(),
        DocumentError::TooLarge { size: 32769 }
    ));
}

#[test]
fn unsubstituted_template_parameters_are_rejected() {
    // The AWS-Download-File document used without its template.
    let doc = json!({"version":"1.0","steps":[{"action":{"name":"Download-File","type":"runHandler",
        "input":{"handler":"download-file.sh",
                 "args":["${aws:iot:parameter:downloadUrl}","${aws:iot:parameter:filePath}"],
                 "path":"${aws:iot:parameter:pathToHandler}"},
        "runAsUser":"${aws:iot:parameter:runAsUser}"}}]});
    let e = errors(doc);
    let p: Vec<_> = e.iter().map(|e| e.path().unwrap()).collect();
    assert_eq!(
        p,
        [
            "steps[0].action.input.path",
            "steps[0].action.input.args[0]",
            "steps[0].action.input.args[1]",
            "steps[0].action.runAsUser"
        ]
    );
    assert!(e[1]
        .to_string()
        .contains("${aws:iot:parameter:downloadUrl}"));
    // Substituted with empty optional parameters (managed template defaults) it is valid.
    let ok = json!({"version":"1.0","steps":[{"action":{"name":"Download-File","type":"runHandler",
        "input":{"handler":"download-file.sh","args":["http://x/f","/tmp/f"],"path":""},
        "runAsUser":""}}]});
    let p = plan(ok);
    assert_eq!(
        p.steps[0].kind,
        handler_step(
            "download-file.sh",
            HandlerPath::Default,
            &["http://x/f", "/tmp/f"]
        )
    );
    assert_eq!(p.steps[0].run_as_user, None);
}

#[test]
fn all_errors_are_reported_in_one_reason() {
    let doc = json!({"version": "1.0", "includeStdOut": "maybe", "steps": [
        {"action": {"name": "x", "type": "runHandler"}},
        {"action": {"name": "y", "type": "runHandler", "input": {"handler": 5}}}]});
    let e = JobPlan::from_value(&doc).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid job document: includeStdOut: must be true or false (a JSON boolean or the \
         string \"true\" or \"false\"); steps[0].action.input: is required; \
         steps[1].action.input.handler: must be a string"
    );
}

#[test]
fn unknown_keys_and_nulls_are_ignored_like_aws() {
    let p = plan(
        json!({"version": "1.0", "_comment": "hi", "finalStep": null,
        "steps": [{"action": {"name": "n", "type": "runHandler", "runAsUser": null,
            "input": {"handler": "a.sh", "args": null, "extra": 1}}}]}),
    );
    assert!(p.final_step.is_none());
    assert_eq!(
        p.steps[0].kind,
        handler_step("a.sh", HandlerPath::Default, &[])
    );
}

#[test]
fn plans_serialize_for_the_journal() {
    let p = plan(v1(vec![handler("a.sh"), command("ls,-l")]));
    let back: JobPlan = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}
